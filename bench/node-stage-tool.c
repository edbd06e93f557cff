/*
 * node-stage-tool.c: drive the node data path by hand, for benchmarks and
 * debugging (what NodeStageVolume/NodeUnstageVolume do, without gRPC).
 *
 *   node-stage-tool create  CONFIG REGION VOL SIZE_BYTES
 *   node-stage-tool attach  CONFIG REGION VOL RUN_DIR [ro]     → prints dev
 *   node-stage-tool stage   CONFIG REGION VOL RUN_DIR TARGET FSTYPE [MKFS_OPTS]
 *   node-stage-tool unstage RUN_DIR [TARGET]
 *   node-stage-tool find    RUN_DIR
 *   node-stage-tool resize  RUN_DIR SIZE_BYTES
 *   node-stage-tool delete  CONFIG REGION VOL
 *
 * The exporter is found next to this program's directory's parent
 * ($(B)/tandem-volfuse when this is $(B)/bench/node-stage-tool) or through
 * $TANDEM_VOLFUSE.  Each step prints its duration to stderr.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "csi/datapath/blockdev.h"
#include "csi/datapath/mounter.h"
#include "jr.h"
#include "regions.h"
#include "tbase.h"
#include "tlog.h"

static void exporter_path(char *out, size_t len)
{
    const char *env = getenv("TANDEM_VOLFUSE");
    if (env && *env) {
        snprintf(out, len, "%s", env);
        return;
    }
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        snprintf(out, len, "tandem-volfuse");
        return;
    }
    self[n] = 0;
    char *sl = strrchr(self, '/');
    if (sl) *sl = 0;
    sl = strrchr(self, '/');
    if (sl) *sl = 0;
    if ((size_t)snprintf(out, len, "%s/tandem-volfuse", self) >= len)
        snprintf(out, len, "tandem-volfuse");
}

static int open_store(const char *cfgp, const char *region, st_store **st)
{
    struct rg_config *cfg = NULL;
    char err[256];
    int rc = rg_load(cfgp, &cfg, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "config: %s\n", err);
        return rc;
    }
    const struct rg_region *r = rg_find(cfg, region);
    rc = r ? rg_open_store(r, st) : -ENOENT;
    rg_free(cfg);
    return rc;
}

static int do_attach(char **a, int ro, char *dev, size_t devlen)
{
    char exe[PATH_MAX], err[512] = "";
    exporter_path(exe, sizeof exe);
    struct bd_attach_opts o = {
        .config_path = a[0], .region = a[1], .vol_id = a[2], .run_dir = a[3],
        .read_only = ro, .exporter_path = exe,
    };
    double t0 = tb_mono_s();
    int rc = bd_attach(&o, dev, devlen, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "attach: %d %s\n", rc, err);
        return rc;
    }
    fprintf(stderr, "attach: %s %.3f s\n", dev, tb_mono_s() - t0);
    return 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: see the header of bench/node-stage-tool.c\n");
    return 2;
}

int main(int argc, char **argv)
{
    char dev[64], err[512] = "";
    int rc;
    tlog_init("stage-tool", TLOG_WARN);
    if (argc < 2) return usage();
    const char *cmd = argv[1];
    char **a = argv + 2;
    int n = argc - 2;
    if (!strcmp(cmd, "create") && n == 4) {
        st_store *st = NULL;
        if ((rc = open_store(a[0], a[1], &st)) < 0) return 1;
        struct jr_create_opts o = {.size = strtoull(a[3], NULL, 0),
                                   .region = a[1]};
        rc = jr_volume_create(st, a[2], &o);
        st_close(st);
        if (rc < 0) fprintf(stderr, "create: %s\n", jr_strerror(rc));
        return rc < 0;
    }
    if (!strcmp(cmd, "delete") && n == 3) {
        st_store *st = NULL;
        if ((rc = open_store(a[0], a[1], &st)) < 0) return 1;
        rc = jr_volume_delete(st, a[2]);
        st_close(st);
        if (rc < 0) fprintf(stderr, "delete: %s\n", jr_strerror(rc));
        return rc < 0;
    }
    if (!strcmp(cmd, "attach") && (n == 4 || n == 5)) {
        if (do_attach(a, n == 5 && !strcmp(a[4], "ro"), dev, sizeof dev) < 0)
            return 1;
        printf("%s\n", dev);
        return 0;
    }
    if (!strcmp(cmd, "stage") && (n == 6 || n == 7)) {
        if (do_attach(a, 0, dev, sizeof dev) < 0) return 1;
        double t0 = tb_mono_s();
        int formatted = 0;
        rc = mnt_format_if_blank(dev, a[5], n == 7 ? a[6] : NULL, &formatted,
                                 err, sizeof err);
        if (rc < 0) {
            fprintf(stderr, "format: %d %s\n", rc, err);
            return 1;
        }
        fprintf(stderr, "format: formatted=%d %.3f s\n", formatted, tb_mono_s() - t0);
        t0 = tb_mono_s();
        rc = mnt_mount(dev, a[4], a[5], 0, NULL, 0, err, sizeof err);
        if (rc < 0) {
            fprintf(stderr, "mount: %d %s\n", rc, err);
            return 1;
        }
        fprintf(stderr, "mount: %.3f s\n", tb_mono_s() - t0);
        printf("%s\n", dev);
        return 0;
    }
    if (!strcmp(cmd, "unstage") && (n == 1 || n == 2)) {
        double t0 = tb_mono_s();
        if (n == 2 && (rc = mnt_umount(a[1], err, sizeof err)) < 0) {
            fprintf(stderr, "umount: %d %s\n", rc, err);
            return 1;
        }
        fprintf(stderr, "umount: %.3f s\n", tb_mono_s() - t0);
        t0 = tb_mono_s();
        if ((rc = bd_detach(a[0], err, sizeof err)) < 0) {
            fprintf(stderr, "detach: %d %s\n", rc, err);
            return 1;
        }
        fprintf(stderr, "detach: %.3f s\n", tb_mono_s() - t0);
        return 0;
    }
    if (!strcmp(cmd, "find") && n == 1) {
        rc = bd_find(a[0], dev, sizeof dev);
        printf("%s %d\n", dev[0] ? dev : "-", rc);
        return rc < 0;
    }
    if (!strcmp(cmd, "resize") && n == 2) {
        rc = bd_resize(a[0], strtoull(a[1], NULL, 0), err, sizeof err);
        if (rc < 0) fprintf(stderr, "resize: %d %s\n", rc, err);
        return rc < 0;
    }
    return usage();
}
