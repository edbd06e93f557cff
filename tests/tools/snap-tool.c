/*
 * snap-tool.c: the pieces of tests/e2e/t0240-csi-snapshots.sh that a shell
 * cannot do well.
 *
 *   snap-tool writer DEV LOG           write numbered 4 KiB blocks to DEV
 *                                      (O_DIRECT|O_DSYNC, block i at i*4K,
 *                                      wrapping never: stops at the end or
 *                                      on SIGTERM); LOG gets one line per
 *                                      block "i issue_ns ack_ns" (realtime)
 *   snap-tool snap EP NAME VOL         CreateSnapshot over the CSI socket:
 *                                      prints "t0_ns t1_ns snapshot_id"
 *                                      (realtime around the call)
 *   snap-tool check CONF REGION VOL LOG T0 T1
 *                                      read volume VOL (a restore) from the
 *                                      store and check every block of LOG
 *                                      acked before T0 is in it and none
 *                                      issued after T1 is; prints counts
 *   snap-tool call EP METHOD KEY=VAL...  one CSI call, fields by name:
 *        restore NAME SNAPSHOT_ID   delete-snapshot ID   get-volume ID
 *        stats VOL PATH   (prints code=..., abnormal=..., message=...,
 *        ms=... of the call)
 *   snap-tool meta-set CONF REGION VOL KEY VALUE
 *   snap-tool meta-get CONF REGION VOL KEY   (exit 1 when absent)
 *   snap-tool fill CONF REGION VOL OFF LEN   incompressible data, journaled
 *   snap-tool hold|release CONF REGION VOL SNAP HOLDER
 *
 * Exit status: 0 good, 1 a failed check or call (one line on stderr),
 * 2 usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "csi.pb-c.h"
#include "jr.h"
#include "regions.h"
#include "rpc.h"

#define BLK 4096
#define MAGIC 0x534e4150424c4b31ull /* "SNAPBLK1" */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static volatile sig_atomic_t stop;
static void on_term(int sig) { (void)sig; stop = 1; }

static void fill_block(uint8_t *b, uint64_t i)
{
    for (size_t k = 0; k < BLK; k += 16) {
        uint64_t m = MAGIC, v = i;
        memcpy(b + k, &m, 8);
        memcpy(b + k + 8, &v, 8);
    }
}

static int cmd_writer(const char *dev, const char *logp)
{
    int fd = open(dev, O_WRONLY | O_DIRECT | O_DSYNC | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "snap-tool: open %s: %s\n", dev, strerror(errno));
        return 1;
    }
    FILE *log = fopen(logp, "we");
    if (!log) {
        fprintf(stderr, "snap-tool: %s: %s\n", logp, strerror(errno));
        return 1;
    }
    off_t end = lseek(fd, 0, SEEK_END);
    void *b;
    if (posix_memalign(&b, BLK, BLK)) return 1;
    struct sigaction sa = {.sa_handler = on_term};
    sigaction(SIGTERM, &sa, NULL);
    for (uint64_t i = 0; !stop && (off_t)((i + 1) * BLK) <= end; i++) {
        fill_block(b, i);
        int64_t t0 = now_ns();
        ssize_t n = pwrite(fd, b, BLK, (off_t)(i * BLK));
        int64_t t1 = now_ns();
        if (n != BLK) {
            if (stop) break;
            fprintf(stderr, "snap-tool: write block %" PRIu64 ": %s\n", i,
                    n < 0 ? strerror(errno) : "short");
            return 1;
        }
        fprintf(log, "%" PRIu64 " %" PRId64 " %" PRId64 "\n", i, t0, t1);
        fflush(log);
    }
    fclose(log);
    close(fd);
    free(b);
    return 0;
}

static st_store *open_store(const char *conf, const char *region,
                            struct rg_config **cfg)
{
    char err[256];
    st_store *st = NULL;
    if (rg_load(conf, cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "snap-tool: %s: %s\n", conf, err);
        exit(1);
    }
    const struct rg_region *r = rg_find(*cfg, region);
    if (!r || rg_open_store(r, &st) < 0) {
        fprintf(stderr, "snap-tool: region %s: cannot open its store\n",
                region);
        exit(1);
    }
    return st;
}

static int cmd_check(const char *conf, const char *region, const char *vol,
                     const char *logp, int64_t t0, int64_t t1)
{
    struct rg_config *cfg;
    st_store *st = open_store(conf, region, &cfg);
    jr_volume *v = NULL;
    int rc = jr_open(st, vol, 0, NULL, &v);
    if (rc < 0) {
        fprintf(stderr, "snap-tool: open %s: %s\n", vol, jr_strerror(rc));
        return 1;
    }
    FILE *log = fopen(logp, "re");
    if (!log) return 1;
    uint8_t b[BLK], want[BLK];
    uint64_t i;
    int64_t is, ak;
    unsigned before = 0, after = 0, between = 0, bad = 0;
    while (fscanf(log, "%" SCNu64 " %" SCNd64 " %" SCNd64, &i, &is, &ak) == 3) {
        if ((rc = jr_read(v, i * BLK, b, BLK)) < 0) {
            fprintf(stderr, "snap-tool: read block %" PRIu64 ": %s\n", i,
                    jr_strerror(rc));
            return 1;
        }
        fill_block(want, i);
        int has = !memcmp(b, want, BLK);
        if (ak < t0) {
            before++;
            if (!has) {
                fprintf(stderr, "snap-tool: block %" PRIu64 " acknowledged "
                        "%.3f ms before the call is not in the snapshot\n",
                        i, (double)(t0 - ak) / 1e6);
                bad++;
            }
        } else if (is > t1) {
            after++;
            if (has) {
                fprintf(stderr, "snap-tool: block %" PRIu64 " issued %.3f ms "
                        "after the call returned is in the snapshot\n", i,
                        (double)(is - t1) / 1e6);
                bad++;
            }
        } else {
            between++;
        }
    }
    fclose(log);
    jr_close(v);
    st_close(st);
    rg_free(cfg);
    printf("before=%u during=%u after=%u bad=%u\n", before, between, after,
           bad);
    return bad ? 1 : 0;
}

static int call(const char *ep, const char *method, ProtobufCMessage *req,
                const ProtobufCMessageDescriptor *rd, ProtobufCMessage **resp,
                char *msg, size_t len)
{
    rpc_client *c = NULL;
    if (rpc_client_create(ep, NULL, &c) < 0) {
        fprintf(stderr, "snap-tool: cannot reach %s\n", ep);
        exit(1);
    }
    int rc = rpc_client_call(c, method, req, rd, resp, 60000, 1, msg, len);
    rpc_client_destroy(c);
    return rc;
}

static int cmd_snap(const char *ep, const char *name, const char *vol)
{
    Csi__V1__CreateSnapshotRequest q = CSI__V1__CREATE_SNAPSHOT_REQUEST__INIT;
    Csi__V1__CreateSnapshotResponse *r = NULL;
    char msg[512];
    q.name = (char *)name;
    q.source_volume_id = (char *)vol;
    int64_t t0 = now_ns();
    int rc = call(ep, "/csi.v1.Controller/CreateSnapshot", &q.base,
                  &csi__v1__create_snapshot_response__descriptor,
                  (ProtobufCMessage **)&r, msg, sizeof(msg));
    int64_t t1 = now_ns();
    if (rc != RPC_OK) {
        fprintf(stderr, "snap-tool: CreateSnapshot: %s: %s\n",
                rpc_code_name(rc), msg);
        return 1;
    }
    printf("%" PRId64 " %" PRId64 " %s %d\n", t0, t1, r->snapshot->snapshot_id,
           r->snapshot->ready_to_use);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return 0;
}

static int cmd_call(const char *ep, int argc, char **argv)
{
    char msg[1024] = "";
    ProtobufCMessage *resp = NULL;
    int rc;
    int64_t t0 = now_ns();
    const char *what = argv[0];
    if (!strcmp(what, "restore") && argc == 3) {
        Csi__V1__CreateVolumeRequest q = CSI__V1__CREATE_VOLUME_REQUEST__INIT;
        Csi__V1__VolumeCapability c = CSI__V1__VOLUME_CAPABILITY__INIT;
        Csi__V1__VolumeCapability__BlockVolume bv =
            CSI__V1__VOLUME_CAPABILITY__BLOCK_VOLUME__INIT;
        Csi__V1__VolumeCapability__AccessMode am =
            CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__INIT;
        Csi__V1__VolumeCapability *pc = &c;
        Csi__V1__VolumeContentSource src = CSI__V1__VOLUME_CONTENT_SOURCE__INIT;
        Csi__V1__VolumeContentSource__SnapshotSource ss =
            CSI__V1__VOLUME_CONTENT_SOURCE__SNAPSHOT_SOURCE__INIT;
        am.mode = CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_WRITER;
        c.access_mode = &am;
        c.access_type_case = CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_BLOCK;
        c.block = &bv;
        q.name = argv[1];
        q.n_volume_capabilities = 1;
        q.volume_capabilities = &pc;
        ss.snapshot_id = argv[2];
        src.type_case = CSI__V1__VOLUME_CONTENT_SOURCE__TYPE_SNAPSHOT;
        src.snapshot = &ss;
        q.volume_content_source = &src;
        rc = call(ep, "/csi.v1.Controller/CreateVolume", &q.base,
                  &csi__v1__create_volume_response__descriptor, &resp, msg,
                  sizeof(msg));
        if (rc == RPC_OK)
            printf("volume_id=%s\n",
                   ((Csi__V1__CreateVolumeResponse *)resp)->volume->volume_id);
    } else if (!strcmp(what, "delete-snapshot") && argc == 2) {
        Csi__V1__DeleteSnapshotRequest q = CSI__V1__DELETE_SNAPSHOT_REQUEST__INIT;
        q.snapshot_id = argv[1];
        rc = call(ep, "/csi.v1.Controller/DeleteSnapshot", &q.base,
                  &csi__v1__delete_snapshot_response__descriptor, &resp, msg,
                  sizeof(msg));
    } else if (!strcmp(what, "get-volume") && argc == 2) {
        Csi__V1__ControllerGetVolumeRequest q =
            CSI__V1__CONTROLLER_GET_VOLUME_REQUEST__INIT;
        q.volume_id = argv[1];
        rc = call(ep, "/csi.v1.Controller/ControllerGetVolume", &q.base,
                  &csi__v1__controller_get_volume_response__descriptor, &resp,
                  msg, sizeof(msg));
        if (rc == RPC_OK) {
            Csi__V1__VolumeCondition *vc =
                ((Csi__V1__ControllerGetVolumeResponse *)resp)
                    ->status->volume_condition;
            printf("abnormal=%d\nmessage=%s\n", vc->abnormal, vc->message);
        }
    } else if (!strcmp(what, "stats") && argc == 3) {
        Csi__V1__NodeGetVolumeStatsRequest q =
            CSI__V1__NODE_GET_VOLUME_STATS_REQUEST__INIT;
        q.volume_id = argv[1];
        q.volume_path = argv[2];
        rc = call(ep, "/csi.v1.Node/NodeGetVolumeStats", &q.base,
                  &csi__v1__node_get_volume_stats_response__descriptor, &resp,
                  msg, sizeof(msg));
        if (rc == RPC_OK) {
            Csi__V1__VolumeCondition *vc =
                ((Csi__V1__NodeGetVolumeStatsResponse *)resp)->volume_condition;
            printf("abnormal=%d\nmessage=%s\n", vc->abnormal, vc->message);
        }
    } else {
        fprintf(stderr, "snap-tool: call %s: unknown or wrong arguments\n",
                what);
        return 2;
    }
    printf("code=%s\nms=%" PRId64 "\n", rpc_code_name(rc),
           (now_ns() - t0) / 1000000);
    if (rc != RPC_OK) printf("error=%s\n", msg);
    if (resp) protobuf_c_message_free_unpacked(resp, NULL);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "writer"))
        return cmd_writer(argv[2], argv[3]);
    if (argc == 5 && !strcmp(argv[1], "snap"))
        return cmd_snap(argv[2], argv[3], argv[4]);
    if (argc == 8 && !strcmp(argv[1], "check"))
        return cmd_check(argv[2], argv[3], argv[4], argv[5],
                         strtoll(argv[6], NULL, 10),
                         strtoll(argv[7], NULL, 10));
    if (argc >= 4 && !strcmp(argv[1], "call"))
        return cmd_call(argv[2], argc - 3, argv + 3);
    if (argc == 7 && !strcmp(argv[1], "meta-set")) {
        struct rg_config *cfg;
        st_store *st = open_store(argv[2], argv[3], &cfg);
        int rc = jr_meta_set(st, argv[4], argv[5], argv[6]);
        st_close(st);
        rg_free(cfg);
        if (rc < 0) fprintf(stderr, "snap-tool: meta-set: %s\n", jr_strerror(rc));
        return rc < 0;
    }
    if (argc == 6 && !strcmp(argv[1], "meta-get")) {
        struct rg_config *cfg;
        st_store *st = open_store(argv[2], argv[3], &cfg);
        char *v = NULL;
        int rc = jr_meta_get(st, argv[4], argv[5], &v);
        if (rc == 0) printf("%s\n", v);
        free(v);
        st_close(st);
        rg_free(cfg);
        return rc < 0;
    }
    if (argc == 7 && !strcmp(argv[1], "fill")) {
        /* Incompressible data at [OFF, OFF + LEN) through the journal, in
         * 4 MiB writes. */
        struct rg_config *cfg;
        st_store *st = open_store(argv[2], argv[3], &cfg);
        uint64_t off = strtoull(argv[5], NULL, 0), len = strtoull(argv[6], NULL, 0);
        jr_volume *v = NULL;
        uint8_t *b = malloc(4 << 20);
        uint64_t x = 0x2545f4914f6cdd1dull;
        int rc = b ? jr_open(st, argv[4], JR_OPEN_WRITE, "snap-tool", &v) : -ENOMEM;
        for (uint64_t o = 0; rc == 0 && o < len; o += 4 << 20) {
            for (size_t i = 0; i < (4u << 20); i++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                b[i] = (uint8_t)x;
            }
            size_t n = len - o < (4u << 20) ? (size_t)(len - o) : (4u << 20);
            rc = jr_write(v, off + o, b, n);
        }
        if (v) {
            int rc2 = jr_close(v);
            if (rc == 0) rc = rc2;
        }
        free(b);
        st_close(st);
        rg_free(cfg);
        if (rc < 0) fprintf(stderr, "snap-tool: fill: %s\n", jr_strerror(rc));
        return rc < 0;
    }
    if (argc == 7 && (!strcmp(argv[1], "hold") || !strcmp(argv[1], "release"))) {
        struct rg_config *cfg;
        st_store *st = open_store(argv[2], argv[3], &cfg);
        int rc = !strcmp(argv[1], "hold")
                     ? jr_snap_hold(st, argv[4], argv[5], argv[6])
                     : jr_snap_release(st, argv[4], argv[5], argv[6]);
        st_close(st);
        rg_free(cfg);
        if (rc < 0) fprintf(stderr, "snap-tool: %s: %s\n", argv[1], jr_strerror(rc));
        return rc < 0;
    }
    fprintf(stderr, "usage: see tests/tools/snap-tool.c\n");
    return 2;
}
