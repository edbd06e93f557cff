/*
 * bench-snap.c: the cost of snapshots (issue 10): taking one, whether that
 * cost grows with the data a volume holds, and what copy-on-write costs
 * the writes after one.
 *
 * Figures (JSON lines appended to ${TANDEM_BENCH_OUT:-build/bench.jsonl},
 * a table on stdout), per backend (sqlite; rados when TANDEM_CEPH_CONF):
 *   snap.create_p50_ms.<backend>        jr_snap_create on a volume no
 *                                       writer holds (opens it for the
 *                                       call), median of the samples
 *   ratio.snap_create.big_vs_small.<backend>
 *                                       the same volume size with 8x more
 *                                       data written: time(big) /
 *                                       time(small), goal <= 1.2
 *   ratio.write_after_snapshot_vs_before.randwrite4k.<backend>
 *                                       4 KiB random writes (qd 1, counted
 *                                       until the volume is closed, so the
 *                                       applier's copies are included) on
 *                                       a volume after a snapshot / on its
 *                                       twin without one: the first
 *                                       overwrite pass (every object
 *                                       copied up) and .second_pass (goal
 *                                       >= 0.9)
 * Each ratio is the median of bench_stats.h's samples (5; QUICK 3;
 * TANDEM_BENCH_SAMPLES) interleaved, printed and written with min and max
 * (also as name.min, name.max).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench_stats.h"
#include "jr.h"
#include "store.h"
#include "tbase.h"
#include "tlog.h"

#define OBJ_SIZE (4u << 20)
#define VOL_SIZE (64ull << 20)
#define SMALL_DATA (8ull << 20) /* the big volume has 8x: all 64 MiB */
#define PASS_WRITES 1500

static double median(double *v, int n)
{
    return bs_median(v, n, NULL, NULL);
}

static int mkvol(st_store *st, const char *vol, uint64_t data,
                 const uint8_t *pool)
{
    struct jr_create_opts o = {.size = VOL_SIZE, .object_size = OBJ_SIZE,
                               .region = "bench"};
    int r = jr_volume_create(st, vol, &o);
    if (r < 0) return r;
    jr_volume *v;
    if ((r = jr_open(st, vol, JR_OPEN_WRITE, "bench", &v)) < 0) return r;
    for (uint64_t off = 0; r == 0 && off < data; off += 1 << 20)
        r = jr_write(v, off, pool + off % (32u << 20), 1 << 20);
    int rc = jr_close(v);
    return r < 0 ? r : rc;
}

static double time_create(st_store *st, const char *vol, const char *snap)
{
    double t0 = tb_mono_s();
    int r = jr_snap_create(st, vol, snap, NULL, 10000, NULL);
    double t = tb_mono_s() - t0;
    if (r < 0) {
        fprintf(stderr, "bench-snap: jr_snap_create %s: %s\n", vol,
                jr_strerror(r));
        return -1;
    }
    return t;
}

/* PASS_WRITES random 4 KiB writes, qd 1, until closed: ops/s. */
static double randwrite_pass(st_store *st, const char *vol, unsigned *seed,
                             const uint8_t *pool)
{
    jr_volume *v;
    int r = jr_open(st, vol, JR_OPEN_WRITE, "bench", &v);
    if (r < 0) return -1;
    double t0 = tb_mono_s();
    for (int i = 0; r == 0 && i < PASS_WRITES; i++) {
        uint64_t blk = ((uint64_t)rand_r(seed) << 16 ^ (uint64_t)rand_r(seed)) %
                       (VOL_SIZE / 4096);
        r = jr_write(v, blk * 4096, pool + (size_t)(rand_r(seed) % 4096) * 4096,
                     4096);
    }
    int rc = jr_close(v);
    double t = tb_mono_s() - t0;
    if (r < 0 || rc < 0) {
        fprintf(stderr, "bench-snap: write pass: %s\n",
                jr_strerror(r < 0 ? r : rc));
        return -1;
    }
    return PASS_WRITES / t;
}

static void bench_backend(const struct st_config *cfg, const char *backend,
                          const uint8_t *pool)
{
    st_store *st;
    int r = st_open(cfg, &st);
    if (r < 0) {
        fprintf(stderr, "bench-snap: %s: st_open: %s\n", backend,
                st_strerror(r));
        return;
    }
    char small[64], big[64], name[200];
    snprintf(small, sizeof small, "bsnap-small-%d", (int)getpid());
    snprintf(big, sizeof big, "bsnap-big-%d", (int)getpid());
    if ((r = mkvol(st, small, SMALL_DATA, pool)) < 0 ||
        (r = mkvol(st, big, 8 * SMALL_DATA, pool)) < 0) {
        fprintf(stderr, "bench-snap: %s: volumes: %s\n", backend,
                jr_strerror(r));
        goto out;
    }
    /* Taking snapshots: small and big interleaved; each sample the
     * median of 3 creates per volume. */
    double creates[64], ratios[16];
    int nc = 0, nr = 0;
    for (int s = 0; s < bs_samples() && nr < 16; s++) {
        double ts[3], tb[3];
        for (int k = 0; k < 3; k++) {
            char id[32];
            snprintf(id, sizeof id, "s%d-%d", s, k);
            /* Alternate which goes first: no order bias. */
            if ((s + k) % 2) {
                tb[k] = time_create(st, big, id);
                ts[k] = time_create(st, small, id);
            } else {
                ts[k] = time_create(st, small, id);
                tb[k] = time_create(st, big, id);
            }
            if (ts[k] < 0 || tb[k] < 0) goto out;
            if (nc < 62) {
                creates[nc++] = ts[k];
                creates[nc++] = tb[k];
            }
        }
        ratios[nr++] = median(tb, 3) / median(ts, 3);
    }
    double p50 = median(creates, nc) * 1000;
    printf("%-64s %8.2f ms (%d creates)\n", "snap.create_p50_ms", p50, nc);
    snprintf(name, sizeof name, "snap.create_p50_ms.%s", backend);
    bs_emit(name, p50, "ms");
    snprintf(name, sizeof name, "ratio.snap_create.big_vs_small.%s", backend);
    bs_emit_ratio(name, ratios, nr, "x", "<= 1.2");

    /* Writes after a snapshot vs before it: two full volumes, one that
     * takes a new snapshot before each sample ("after") and its twin that
     * never has one ("before": the same writes on the same layout), their
     * passes interleaved so that load from elsewhere hits both alike.
     * Per sample: snapshot; twin pass, snap pass (the first overwrite
     * pass: every object copied up); twin pass, snap pass (second). */
    double first[16], second[16];
    int nw = 0;
    char va[64], vb[64];
    snprintf(va, sizeof va, "bsnap-after-%d", (int)getpid());
    snprintf(vb, sizeof vb, "bsnap-before-%d", (int)getpid());
    if ((r = mkvol(st, va, VOL_SIZE, pool)) < 0 ||
        (r = mkvol(st, vb, VOL_SIZE, pool)) < 0)
        goto out2;
    unsigned seed_a = 1234u, seed_b = 1234u;
    for (int s = 0; s < bs_samples() && nw < 16; s++) {
        char id[16];
        snprintf(id, sizeof id, "w%d", s);
        if ((r = jr_snap_create(st, va, id, NULL, 10000, NULL)) < 0) break;
        double b1 = randwrite_pass(st, vb, &seed_b, pool);
        double p1 = randwrite_pass(st, va, &seed_a, pool);
        double b2 = randwrite_pass(st, vb, &seed_b, pool);
        double p2 = randwrite_pass(st, va, &seed_a, pool);
        if (b1 <= 0 || p1 <= 0 || b2 <= 0 || p2 <= 0) break;
        printf("  sample %d: first pass %.0f vs %.0f ops/s, second %.0f vs "
               "%.0f\n", s, p1, b1, p2, b2);
        first[nw] = p1 / b1;
        second[nw++] = p2 / b2;
    }
    if (nw < 3) goto out2;
    snprintf(name, sizeof name,
             "ratio.write_after_snapshot_vs_before.randwrite4k.%s", backend);
    bs_emit_ratio(name, first, nw, "x", NULL);
    snprintf(name, sizeof name,
             "ratio.write_after_snapshot_vs_before.randwrite4k.second_pass.%s",
             backend);
    bs_emit_ratio(name, second, nw, "x", ">= 0.9");
out2:
    jr_volume_delete(st, va);
    jr_volume_delete(st, vb);
out:
    jr_volume_delete(st, small);
    jr_volume_delete(st, big);
    st_close(st);
}

int main(void)
{
    tlog_init("bench-snap", TLOG_WARN);
    bs_init("bench-snap");
    uint8_t *pool = malloc(32u << 20);
    if (!pool) return 1;
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < (32u << 20); i += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(pool + i, &x, 8);
    }
    const char *tmp = getenv("TANDEM_TEST_TMP");
    char dir[256], db[300];
    snprintf(dir, sizeof dir, "%s/bench-snap.XXXXXX", tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(db, sizeof db, "%s/bench.db", dir);
    struct st_config sq = {.backend = "sqlite", .db_path = db};
    bench_backend(&sq, "sqlite", pool);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "bench-snap: cleanup failed\n");
    if (getenv("TANDEM_CEPH_CONF") && !getenv("TANDEM_CEPH_SKIP")) {
        char ns[64];
        snprintf(ns, sizeof ns, "bench-snap-%d", (int)getpid());
        struct st_config rc = {
            .backend = "rados", .ceph_conf = getenv("TANDEM_CEPH_CONF"),
            .keyring = getenv("TANDEM_CEPH_KEYRING"),
            .client_id = getenv("TANDEM_CEPH_CLIENT"),
            .pool = getenv("TANDEM_CEPH_POOL_A") ? getenv("TANDEM_CEPH_POOL_A")
                                                 : "tandem-a",
            .rados_ns = ns};
        bench_backend(&rc, "rados", pool);
    } else {
        printf("rados: SKIPPED: %s\n", getenv("TANDEM_CEPH_SKIP")
                                           ? getenv("TANDEM_CEPH_SKIP")
                                           : "TANDEM_CEPH_CONF not set");
    }
    free(pool);
    bs_close();
    return 0;
}
