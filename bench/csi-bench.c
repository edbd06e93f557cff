/*
 * csi-bench.c: CreateVolume and DeleteVolume through a real tandem-csi
 * (controller mode) over its unix socket: N volumes (default 1000,
 * $TANDEM_BENCH_CSI_N) created one after the other, then deleted; rate and
 * p50/p99 latency per backend (sqlite always; rados when
 * $TANDEM_CEPH_CONF is set, in a fresh RADOS namespace of
 * $TANDEM_CEPH_POOL_A).  The baseline of the same run is a GetPluginInfo
 * round trip (the RPC floor), so the ratios show what the volume work
 * costs on top of gRPC.
 *
 * Clones: a 256 MiB source volume with 64 MiB of incompressible data in
 * 16 of its 64 objects (written straight into its store), cloned
 * ($TANDEM_BENCH_CLONE_N times, default 5) through CreateVolume with the
 * volume as content source: a clone is a copy (csi_snap.c says why), so
 * its time grows with the data in the source, and the figure comes with
 * that size and the copy rate.
 *
 * Figures appended to $TANDEM_BENCH_OUT (default build/bench.jsonl):
 *   csi.createvolume_per_s.<b>, csi.createvolume_p50_ms.<b>,
 *   csi.createvolume_p99_ms.<b>, csi.deletevolume_per_s.<b>,
 *   csi.deletevolume_p50_ms.<b>, csi.deletevolume_p99_ms.<b>,
 *   csi.rpc_floor_p50_ms.<b>, ratio.createvolume_vs_rpc_p50.<b>,
 *   clone.create_p50_ms.<b>, clone.data_mib.<b>, clone.copy_mib_per_s.<b>
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "csi.pb-c.h"
#include "jr.h"
#include "regions.h"
#include "rpc.h"
#include "tbase.h"
#include "tsig.h"

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, int n, double p)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_d);
    int i = (int)(p * (n - 1) + 0.5);
    return v[i];
}

static FILE *out;

static void emit(const char *name, const char *backend, double v,
                 const char *unit)
{
    printf("  %-34s %12.3f %s\n", name, v, unit);
    if (out)
        fprintf(out, "{\"name\": \"%s.%s\", \"value\": %.4f, \"unit\": \"%s\"}\n",
                name, backend, v, unit);
}

struct plugin {
    pid_t pid;
    char dir[256];
    rpc_client *cli;
};

static int plugin_start(struct plugin *p, const char *backend_cfg)
{
    char self[512], bin[700], cfg[400], sock[400], logp[400];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n < 0) return -errno;
    self[n] = 0;
    const char *env = getenv("TANDEM_CSI");
    snprintf(bin, sizeof(bin), "%s", env && env[0] ? env : "");
    if (!bin[0]) snprintf(bin, sizeof(bin), "%s/../tandem-csi", dirname(self));
    const char *tmp = getenv("TANDEM_TEST_TMP");
    snprintf(p->dir, sizeof(p->dir), "%s/csi-bench.XXXXXX",
             tmp && tmp[0] ? tmp : "/tmp");
    if (!mkdtemp(p->dir)) return -errno;
    snprintf(cfg, sizeof(cfg), "%s/regions.conf", p->dir);
    snprintf(sock, sizeof(sock), "unix://%s/csi.sock", p->dir);
    snprintf(logp, sizeof(logp), "%s/csi.log", p->dir);
    FILE *f = fopen(cfg, "w");
    if (!f) return -errno;
    fprintf(f, "[tandem]\ndefault_region = x\n[region x]\n");
    fprintf(f, backend_cfg, p->dir);
    fclose(f);
    p->pid = fork();
    if (p->pid == 0) {
        int fd = open(logp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) dup2(fd, 2);
        execl(bin, bin, "--endpoint", sock, "--mode", "controller",
              "--config", cfg, "--log-level", "warn", (char *)NULL);
        _exit(127);
    }
    if (rpc_client_create(sock, NULL, &p->cli) < 0) return -EIO;
    Csi__V1__ProbeRequest q = CSI__V1__PROBE_REQUEST__INIT;
    ProtobufCMessage *r = NULL;
    char msg[256];
    int rc = rpc_client_call(p->cli, "/csi.v1.Identity/Probe", &q.base,
                             &csi__v1__probe_response__descriptor, &r, 15000,
                             1, msg, sizeof(msg));
    if (r) protobuf_c_message_free_unpacked(r, NULL);
    if (rc != RPC_OK) {
        fprintf(stderr, "csi-bench: plugin not ready: %s %s\n",
                rpc_code_name(rc), msg);
        return -EIO;
    }
    return 0;
}

static void plugin_stop(struct plugin *p)
{
    int st;
    char cmd[400];
    rpc_client_destroy(p->cli);
    if (p->pid > 0) {
        kill(p->pid, SIGTERM);
        waitpid(p->pid, &st, 0);
    }
    snprintf(cmd, sizeof(cmd), "rm -rf %s", p->dir);
    if (system(cmd)) {}
}

#define CLONE_SRC_SIZE (256ull << 20)
#define CLONE_DATA (64ull << 20)

/* Clone figures: see the top comment.  0 or -EIO. */
static int run_clones(struct plugin *p, const char *backend, int n)
{
    char cfgp[400], err[256], msg[512], name[64];
    struct rg_config *cfg = NULL;
    st_store *st = NULL;
    jr_volume *v = NULL;
    uint8_t *buf = NULL;
    double *lat = calloc((size_t)n, sizeof(double));
    int rc = -EIO;
    snprintf(cfgp, sizeof(cfgp), "%s/regions.conf", p->dir);
    if (!lat || rg_load(cfgp, &cfg, err, sizeof(err)) < 0 ||
        rg_open_store(rg_find(cfg, "x"), &st) < 0) {
        fprintf(stderr, "csi-bench %s: clone set-up: %s\n", backend, err);
        goto out;
    }
    Csi__V1__VolumeCapability__MountVolume mv =
        CSI__V1__VOLUME_CAPABILITY__MOUNT_VOLUME__INIT;
    Csi__V1__VolumeCapability__AccessMode am =
        CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__INIT;
    Csi__V1__VolumeCapability cap = CSI__V1__VOLUME_CAPABILITY__INIT;
    Csi__V1__VolumeCapability *pc = &cap;
    Csi__V1__CapacityRange cr = CSI__V1__CAPACITY_RANGE__INIT;
    am.mode = CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_WRITER;
    cap.access_mode = &am;
    cap.access_type_case = CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_MOUNT;
    cap.mount = &mv;
    cr.required_bytes = (int64_t)CLONE_SRC_SIZE;
    Csi__V1__CreateVolumeRequest q = CSI__V1__CREATE_VOLUME_REQUEST__INIT;
    ProtobufCMessage *r = NULL;
    q.name = "pvc-bench-clone-src";
    q.capacity_range = &cr;
    q.n_volume_capabilities = 1;
    q.volume_capabilities = &pc;
    int code = rpc_client_call(p->cli, "/csi.v1.Controller/CreateVolume",
                               &q.base,
                               &csi__v1__create_volume_response__descriptor,
                               &r, 30000, 0, msg, sizeof(msg));
    if (r) protobuf_c_message_free_unpacked(r, NULL);
    if (code != RPC_OK) goto rpcfail;
    /* 4 MiB of data every 16 MiB: 16 of 64 objects hold data. */
    buf = malloc(4 << 20);
    if (!buf) goto out;
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < (4u << 20); i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        buf[i] = (uint8_t)x;
    }
    if (jr_open(st, "pvc-bench-clone-src", JR_OPEN_WRITE, "csi-bench", &v) < 0)
        goto out;
    for (uint64_t off = 0; off < CLONE_SRC_SIZE; off += 16 << 20)
        if (jr_write(v, off, buf, 4 << 20) < 0) goto out;
    if (jr_close(v) < 0) {
        v = NULL;
        goto out;
    }
    v = NULL;
    Csi__V1__VolumeContentSource src = CSI__V1__VOLUME_CONTENT_SOURCE__INIT;
    Csi__V1__VolumeContentSource__VolumeSource vs =
        CSI__V1__VOLUME_CONTENT_SOURCE__VOLUME_SOURCE__INIT;
    vs.volume_id = "pvc-bench-clone-src";
    src.type_case = CSI__V1__VOLUME_CONTENT_SOURCE__TYPE_VOLUME;
    src.volume = &vs;
    q.capacity_range = NULL;
    q.volume_content_source = &src;
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "pvc-bench-clone-%03d", i);
        q.name = name;
        double t0 = tb_mono_s() * 1e3;
        code = rpc_client_call(p->cli, "/csi.v1.Controller/CreateVolume",
                               &q.base,
                               &csi__v1__create_volume_response__descriptor,
                               &r, 120000, 0, msg, sizeof(msg));
        lat[i] = tb_mono_s() * 1e3 - t0;
        if (r) protobuf_c_message_free_unpacked(r, NULL);
        r = NULL;
        if (code != RPC_OK) goto rpcfail;
    }
    double c50 = pct(lat, n, 0.5);
    printf("%s: %d clones of a %llu MiB volume holding %llu MiB of data\n",
           backend, n, CLONE_SRC_SIZE >> 20, CLONE_DATA >> 20);
    emit("clone.create_p50_ms", backend, c50, "ms");
    emit("clone.data_mib", backend, (double)(CLONE_DATA >> 20), "MiB");
    emit("clone.copy_mib_per_s", backend,
         (double)(CLONE_DATA >> 20) / (c50 / 1e3), "MiB/s");
    rc = 0;
    goto out;
rpcfail:
    fprintf(stderr, "csi-bench %s clones: %s: %s\n", backend,
            rpc_code_name(code), msg);
out:
    if (v) jr_close(v);
    free(buf);
    free(lat);
    st_close(st);
    rg_free(cfg);
    return rc;
}

static int run(const char *backend, const char *backend_cfg, int n,
               int nclones)
{
    struct plugin p = {0};
    double *lat = calloc((size_t)n, sizeof(double));
    char msg[512], name[64];
    int rc = plugin_start(&p, backend_cfg);
    if (rc < 0 || !lat) goto out;

    /* Baseline: the RPC floor. */
    for (int i = 0; i < n; i++) {
        Csi__V1__GetPluginInfoRequest q = CSI__V1__GET_PLUGIN_INFO_REQUEST__INIT;
        ProtobufCMessage *r = NULL;
        double t0 = tb_mono_s() * 1e3;
        rc = rpc_client_call(p.cli, "/csi.v1.Identity/GetPluginInfo", &q.base,
                             &csi__v1__get_plugin_info_response__descriptor,
                             &r, 10000, 0, msg, sizeof(msg));
        lat[i] = tb_mono_s() * 1e3 - t0;
        if (r) protobuf_c_message_free_unpacked(r, NULL);
        if (rc != RPC_OK) goto fail;
    }
    double floor50 = pct(lat, n, 0.5);

    Csi__V1__VolumeCapability__MountVolume mv =
        CSI__V1__VOLUME_CAPABILITY__MOUNT_VOLUME__INIT;
    Csi__V1__VolumeCapability__AccessMode am =
        CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__INIT;
    Csi__V1__VolumeCapability cap = CSI__V1__VOLUME_CAPABILITY__INIT;
    Csi__V1__VolumeCapability *pc = &cap;
    Csi__V1__CapacityRange cr = CSI__V1__CAPACITY_RANGE__INIT;
    am.mode = CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_WRITER;
    cap.access_mode = &am;
    cap.access_type_case = CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_MOUNT;
    cap.mount = &mv;
    cr.required_bytes = 1ll << 30;
    double t_all = tb_mono_s() * 1e3;
    for (int i = 0; i < n; i++) {
        Csi__V1__CreateVolumeRequest q = CSI__V1__CREATE_VOLUME_REQUEST__INIT;
        ProtobufCMessage *r = NULL;
        snprintf(name, sizeof(name), "pvc-bench-%06d", i);
        q.name = name;
        q.capacity_range = &cr;
        q.n_volume_capabilities = 1;
        q.volume_capabilities = &pc;
        double t0 = tb_mono_s() * 1e3;
        rc = rpc_client_call(p.cli, "/csi.v1.Controller/CreateVolume", &q.base,
                             &csi__v1__create_volume_response__descriptor, &r,
                             30000, 0, msg, sizeof(msg));
        lat[i] = tb_mono_s() * 1e3 - t0;
        if (r) protobuf_c_message_free_unpacked(r, NULL);
        if (rc != RPC_OK) goto fail;
    }
    double create_s = (tb_mono_s() * 1e3 - t_all) / 1e3;
    printf("%s: %d volumes\n", backend, n);
    emit("csi.createvolume_per_s", backend, n / create_s, "ops/s");
    double c50 = pct(lat, n, 0.5);
    emit("csi.createvolume_p50_ms", backend, c50, "ms");
    emit("csi.createvolume_p99_ms", backend, pct(lat, n, 0.99), "ms");
    emit("csi.rpc_floor_p50_ms", backend, floor50, "ms");
    emit("ratio.createvolume_vs_rpc_p50", backend, c50 / floor50, "x");

    t_all = tb_mono_s() * 1e3;
    for (int i = 0; i < n; i++) {
        Csi__V1__DeleteVolumeRequest q = CSI__V1__DELETE_VOLUME_REQUEST__INIT;
        ProtobufCMessage *r = NULL;
        snprintf(name, sizeof(name), "pvc-bench-%06d", i);
        q.volume_id = name;
        double t0 = tb_mono_s() * 1e3;
        rc = rpc_client_call(p.cli, "/csi.v1.Controller/DeleteVolume", &q.base,
                             &csi__v1__delete_volume_response__descriptor, &r,
                             30000, 0, msg, sizeof(msg));
        lat[i] = tb_mono_s() * 1e3 - t0;
        if (r) protobuf_c_message_free_unpacked(r, NULL);
        if (rc != RPC_OK) goto fail;
    }
    double del_s = (tb_mono_s() * 1e3 - t_all) / 1e3;
    emit("csi.deletevolume_per_s", backend, n / del_s, "ops/s");
    emit("csi.deletevolume_p50_ms", backend, pct(lat, n, 0.5), "ms");
    emit("csi.deletevolume_p99_ms", backend, pct(lat, n, 0.99), "ms");
    rc = nclones > 0 ? run_clones(&p, backend, nclones) : 0;
    goto out;
fail:
    fprintf(stderr, "csi-bench %s: %s: %s\n", backend, rpc_code_name(rc), msg);
    rc = -EIO;
out:
    plugin_stop(&p);
    free(lat);
    return rc;
}

int main(void)
{
    const char *o = getenv("TANDEM_BENCH_OUT");
    const char *ns = getenv("TANDEM_BENCH_CSI_N");
    const char *cs = getenv("TANDEM_BENCH_CLONE_N");
    int n = ns && atoi(ns) > 0 ? atoi(ns) : 1000, rc = 0;
    int nc = cs && atoi(cs) >= 0 && cs[0] ? atoi(cs) : 5;
    tb_signals_block();
    out = fopen(o && o[0] ? o : "build/bench.jsonl", "a");
    if (!out) fprintf(stderr, "csi-bench: cannot append figures: %s\n",
                      strerror(errno));
    if (run("sqlite", "backend = sqlite\ndb_path = %s/x.db\n", n, nc) < 0) rc = 1;
    const char *conf = getenv("TANDEM_CEPH_CONF");
    if (conf && conf[0]) {
        char cfg[2048];
        const char *kr = getenv("TANDEM_CEPH_KEYRING");
        const char *cl = getenv("TANDEM_CEPH_CLIENT");
        const char *pool = getenv("TANDEM_CEPH_POOL_A");
        /* %%s: the plugin dir is not needed for rados. */
        snprintf(cfg, sizeof(cfg),
                 "backend = rados\nceph_conf = %s\nclient_id = %s\n%s%s%s"
                 "pool = %s\nrados_namespace = csi-bench-%d\n# %%s\n",
                 conf, cl && cl[0] ? cl : "admin", kr && kr[0] ? "keyring = " : "",
                 kr && kr[0] ? kr : "", kr && kr[0] ? "\n" : "",
                 pool && pool[0] ? pool : "tandem-a", (int)getpid());
        if (run("rados", cfg, n, nc) < 0) rc = 1;
    } else {
        printf("rados: SKIPPED (%s)\n", getenv("TANDEM_CEPH_SKIP")
                                             ? getenv("TANDEM_CEPH_SKIP")
                                             : "TANDEM_CEPH_CONF not set");
    }
    if (out) fclose(out);
    return rc;
}
