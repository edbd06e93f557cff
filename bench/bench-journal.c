/*
 * bench-journal.c: journaled write throughput and latency next to the raw
 * store, measured in the same run on the same store (issue 3, item 8).
 *
 * Cases (each first raw: st_write to data objects striped like an image,
 * then journaled: jr_write on an open volume; both start from nothing:
 * the raw objects are removed after each raw run, the volume is new):
 *   randwrite4k_qd1, randwrite4k_qd32   4 KiB random writes, 1 / 32 threads
 *   seqwrite1m_incompressible           1 MiB sequential writes, qd 1
 *   seqwrite1m_compressible             the same with 2:1 compressible data
 * Journaled throughput counts until the volume is closed (every entry
 * applied to the image), so the applier's cost is included.
 *
 * Output: a table on stdout and JSON lines appended to
 * ${TANDEM_BENCH_OUT:-build/bench.jsonl}:
 *   journal.<case>.<backend>.{raw,journal}_{iops,mibps,p50_us,p99_us}
 *   ratio.journal_vs_raw.<case>.<backend>          throughput ratio
 *   ratio.journal_vs_raw.<case>_p50_latency.<backend>  latency ratio
 * Each case is bench_stats.h's samples (5; QUICK 3), raw and journaled
 * runs interleaved (raw, journal, raw, journal, ...); every figure is the
 * median of its samples, the ratios are the median of the per-sample
 * ratios, printed and written with min and max.
 * Backends: sqlite (a fresh database under $TANDEM_TEST_TMP or /tmp),
 * rados when TANDEM_CEPH_CONF is set.  TANDEM_BENCH_SECS (default 1.0;
 * QUICK 0.5) is the duration of each run; TANDEM_BENCH_CASES (a list of
 * case names) limits the run to those cases; TANDEM_BENCH_BACKENDS
 * ("sqlite", "rados") to those backends.  TANDEM_BENCH_ONCE=1: one
 * journaled run per case and backend, printed as "once <case> <backend>
 * <iops> <MiB/s>" and not written (bench-fio.sh's interleaved baseline).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench_stats.h"
#include "jr.h"
#include "store.h"
#include "tbase.h"
#include "tlog.h"

#define VOL_SIZE (256ull << 20)
#define OBJ_SIZE (4u << 20)
#define POOL_SIZE (64u << 20)

static double secs_per_case = 1.0;
static int once; /* TANDEM_BENCH_ONCE: see the top comment */
static uint8_t *pool_rand, *pool_comp;


struct ccase {
    const char *name;
    size_t bs;
    int threads;
    int seq;
    int compressible;
};

struct run {
    const struct ccase *c;
    st_store *st;
    jr_volume *v; /* NULL: raw */
    double deadline;
    pthread_mutex_t mu;
    uint64_t seq_next;
    uint64_t ops;
    double *lat;
    size_t nlat, caplat;
    int err;
};

struct worker {
    struct run *r;
    unsigned seed;
};

static int raw_write(st_store *st, uint64_t off, const uint8_t *buf,
                     size_t len)
{
    while (len > 0) {
        char oid[64];
        uint64_t objno = off / OBJ_SIZE, in = off % OBJ_SIZE;
        size_t n = OBJ_SIZE - in < len ? OBJ_SIZE - in : len;
        snprintf(oid, sizeof oid, "raw/%016" PRIx64, objno);
        int r = st_write(st, oid, in, buf, n);
        if (r < 0) return r;
        off += n;
        buf += n;
        len -= n;
    }
    return 0;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct run *r = w->r;
    const struct ccase *c = r->c;
    const uint8_t *pool = c->compressible ? pool_comp : pool_rand;
    double *lat = malloc(sizeof(double) * 65536);
    size_t nlat = 0;
    uint64_t ops = 0;
    int err = 0;
    while (!err && tb_mono_s() < r->deadline) {
        uint64_t off;
        if (c->seq) {
            pthread_mutex_lock(&r->mu);
            off = r->seq_next;
            r->seq_next = (r->seq_next + c->bs) % VOL_SIZE;
            pthread_mutex_unlock(&r->mu);
        } else {
            off = ((uint64_t)rand_r(&w->seed) << 16 ^ (uint64_t)rand_r(&w->seed)) %
                  (VOL_SIZE / c->bs) * c->bs;
        }
        size_t po = ((size_t)rand_r(&w->seed) % (POOL_SIZE / c->bs - 1)) * c->bs;
        double t0 = tb_mono_s();
        err = r->v ? jr_write(r->v, off, pool + po, c->bs)
                   : raw_write(r->st, off, pool + po, c->bs);
        double dt = tb_mono_s() - t0;
        if (nlat < 65536) lat[nlat++] = dt;
        ops++;
    }
    pthread_mutex_lock(&r->mu);
    r->ops += ops;
    if (err && !r->err) r->err = err;
    if (r->nlat + nlat > r->caplat) {
        r->caplat = (r->nlat + nlat) * 2;
        r->lat = realloc(r->lat, r->caplat * sizeof(double));
    }
    memcpy(r->lat + r->nlat, lat, nlat * sizeof(double));
    r->nlat += nlat;
    pthread_mutex_unlock(&r->mu);
    free(lat);
    return NULL;
}

/* I/O and CPU of this process (TANDEM_BENCH_VERBOSE): bytes passed to
 * write(2)/read(2) and user+system seconds. */
struct iocpu {
    double wchar, rchar, cpu;
};

static void iocpu_now(struct iocpu *x)
{
    memset(x, 0, sizeof *x);
    FILE *f = fopen("/proc/self/io", "r");
    char line[128];
    while (f && fgets(line, sizeof line, f)) {
        unsigned long long v;
        if (sscanf(line, "wchar: %llu", &v) == 1) x->wchar = (double)v;
        if (sscanf(line, "rchar: %llu", &v) == 1) x->rchar = (double)v;
    }
    if (f) fclose(f);
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    x->cpu = t.tv_sec + t.tv_nsec / 1e9;
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

struct result {
    double iops, mibps, p50_us, p99_us;
    uint64_t ops;
};

static int run_case(const struct ccase *c, st_store *st, jr_volume *v,
                    const char *vol_id, struct result *res)
{
    struct run r = {.c = c, .st = st, .v = v};
    pthread_mutex_init(&r.mu, NULL);
    pthread_t th[64];
    struct worker w[64];
    struct iocpu io0, io1;
    iocpu_now(&io0);
    double t0 = tb_mono_s();
    r.deadline = t0 + secs_per_case;
    for (int i = 0; i < c->threads; i++) {
        w[i] = (struct worker){&r, (unsigned)(i * 7919 + 17)};
        pthread_create(&th[i], NULL, worker_main, &w[i]);
    }
    for (int i = 0; i < c->threads; i++) pthread_join(th[i], NULL);
    if (v) {
        struct jr_stats js;
        jr_get_stats(v, &js);
        if (getenv("TANDEM_BENCH_VERBOSE"))
            fprintf(stderr,
                    "  %s: entries=%" PRIu64 " commits=%" PRIu64
                    " apply_batches=%" PRIu64 " commit_ms=%.0f apply_ms=%.0f"
                    " trim_ms=%.0f journal_MiB=%.1f\n",
                    c->name, js.entries, js.commits, js.apply_batches,
                    js.commit_ns / 1e6, js.apply_ns / 1e6, js.trim_ns / 1e6,
                    js.journal_bytes / 1048576.0);
        /* Count the time to apply everything acknowledged. */
        int rc = jr_close(v);
        if (rc < 0 && !r.err) r.err = rc;
    }
    double el = tb_mono_s() - t0;
    iocpu_now(&io1);
    if (getenv("TANDEM_BENCH_VERBOSE") && r.ops)
        fprintf(stderr,
                "  %s %s: ops=%" PRIu64 " per op: written=%.1f KiB"
                " read=%.1f KiB cpu=%.0f us\n",
                c->name, v ? "journal" : "raw", r.ops,
                (io1.wchar - io0.wchar) / r.ops / 1024,
                (io1.rchar - io0.rchar) / r.ops / 1024,
                (io1.cpu - io0.cpu) / r.ops * 1e6);
    if (r.err) {
        fprintf(stderr, "bench-journal: %s: %s\n", c->name,
                jr_strerror(r.err));
        free(r.lat);
        return r.err;
    }
    qsort(r.lat, r.nlat, sizeof(double), cmpd);
    res->ops = r.ops;
    res->iops = r.ops / el;
    res->mibps = r.ops * (double)c->bs / el / 1048576.0;
    res->p50_us = r.nlat ? r.lat[r.nlat / 2] * 1e6 : 0;
    res->p99_us = r.nlat ? r.lat[r.nlat * 99 / 100] * 1e6 : 0;
    free(r.lat);
    (void)vol_id;
    return 0;
}

/* Drop the raw objects, so that each raw run starts from no objects, as
 * each journaled run starts from a new volume (a raw run writing into
 * rows an earlier case left behind would rewrite in place where the
 * journaled one creates them). */
static void drop_raw(st_store *st)
{
    for (uint64_t o = 0; o < VOL_SIZE / OBJ_SIZE; o++) {
        char oid[64];
        snprintf(oid, sizeof oid, "raw/%016" PRIx64, o);
        st_remove(st, oid);
    }
}

static void bench_backend(const struct st_config *cfg, const char *backend)
{
    static const struct ccase cases[] = {
        {"randwrite4k_qd1", 4096, 1, 0, 0},
        {"randwrite4k_qd32", 4096, 32, 0, 0},
        {"seqwrite1m_incompressible", 1 << 20, 1, 1, 0},
        {"seqwrite1m_compressible", 1 << 20, 1, 1, 1},
    };
    st_store *st;
    int rc = st_open(cfg, &st);
    if (rc < 0) {
        fprintf(stderr, "bench-journal: %s: st_open: %s\n", backend,
                st_strerror(rc));
        return;
    }
    if (!once)
    printf("%-28s %-7s %10s %10s %10s %10s %10s %10s %7s %7s\n", "case",
           "backend", "raw_iops", "jr_iops", "raw_MiB/s", "jr_MiB/s",
           "raw_p50us", "jr_p50us", "ratio", "p50x");
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const struct ccase *c = &cases[i];
        const char *only = getenv("TANDEM_BENCH_CASES");
        if (only && !strstr(only, c->name)) continue;
        if (once) {
            /* One journaled run, no figures written: bench-fio.sh's
             * baseline, interleaved with its own samples. */
            struct result jr1 = {0};
            char vol[64];
            snprintf(vol, sizeof vol, "bench-%d-%zu-once", (int)getpid(), i);
            struct jr_create_opts o = {.size = VOL_SIZE,
                                       .object_size = OBJ_SIZE,
                                       .region = "bench"};
            jr_volume *v = NULL;
            if ((rc = jr_volume_create(st, vol, &o)) < 0 ||
                (rc = jr_open(st, vol, JR_OPEN_WRITE, "bench", &v)) < 0) {
                fprintf(stderr, "bench-journal: %s\n", jr_strerror(rc));
                continue;
            }
            jr_peer_ack_set(st, vol, "peer", UINT64_MAX / 2);
            rc = run_case(c, st, v, vol, &jr1);
            jr_volume_delete(st, vol);
            if (rc == 0)
                printf("once %s %s %.1f %.2f\n", c->name, backend, jr1.iops,
                       jr1.mibps);
            continue;
        }
        int ns = bs_samples(), k, bad = 0;
        struct result raw[BS_MAX], jr[BS_MAX];
        double ratio[BS_MAX], p50x[BS_MAX];
        /* Raw, journaled, raw, journaled, ...: load from elsewhere on
         * the machine hits both sides alike. */
        for (k = 0; k < ns && !bad; k++) {
            char vol[64];
            snprintf(vol, sizeof vol, "bench-%d-%zu-%d", (int)getpid(), i, k);
            memset(&raw[k], 0, sizeof raw[k]);
            memset(&jr[k], 0, sizeof jr[k]);
            rc = run_case(c, st, NULL, NULL, &raw[k]);
            drop_raw(st);
            if (rc < 0) {
                bad = 1;
                break;
            }
            struct jr_create_opts o = {.size = VOL_SIZE,
                                       .object_size = OBJ_SIZE,
                                       .region = "bench"};
            jr_volume *v = NULL;
            if ((rc = jr_volume_create(st, vol, &o)) < 0 ||
                (rc = jr_open(st, vol, JR_OPEN_WRITE, "bench", &v)) < 0) {
                fprintf(stderr, "bench-journal: %s\n", jr_strerror(rc));
                bad = 1;
                break;
            }
            /* A peer that keeps up, so trimming runs as in service. */
            jr_peer_ack_set(st, vol, "peer", UINT64_MAX / 2);
            rc = run_case(c, st, v, vol, &jr[k]);
            jr_volume_delete(st, vol);
            if (rc < 0) {
                bad = 1;
                break;
            }
            ratio[k] = jr[k].mibps / raw[k].mibps;
            p50x[k] = jr[k].p50_us / raw[k].p50_us;
            printf("%-28s %-7s %10.0f %10.0f %10.1f %10.1f %10.0f %10.0f "
                   "%7.2f %7.2f\n", c->name, backend, raw[k].iops,
                   jr[k].iops, raw[k].mibps, jr[k].mibps, raw[k].p50_us,
                   jr[k].p50_us, ratio[k], p50x[k]);
        }
        if (bad || k < 3) continue;
        char name[160];
        double v[BS_MAX];
#define EMIT(kind, field, unit)                                               \
    do {                                                                      \
        for (int j = 0; j < k; j++)                                           \
            v[j] = kind[0] == 'r' ? raw[j].field : jr[j].field;               \
        snprintf(name, sizeof name, "journal.%s.%s.%s_" #field, c->name,      \
                 backend, kind);                                              \
        bs_emit(name, bs_median(v, k, NULL, NULL), unit);                     \
    } while (0)
        EMIT("raw", iops, "ops/s");
        EMIT("journal", iops, "ops/s");
        EMIT("raw", mibps, "MiB/s");
        EMIT("journal", mibps, "MiB/s");
        EMIT("raw", p50_us, "us");
        EMIT("journal", p50_us, "us");
        EMIT("raw", p99_us, "us");
        EMIT("journal", p99_us, "us");
#undef EMIT
        /* The goals (issue 12). */
        const char *goal = !strcmp(c->name, "randwrite4k_qd32") ? ">= 0.85"
                           : !strcmp(c->name, "seqwrite1m_incompressible") &&
                                   !strcmp(backend, "sqlite")
                               ? ">= 0.6"
                               : NULL;
        snprintf(name, sizeof name, "ratio.journal_vs_raw.%s.%s", c->name,
                 backend);
        bs_emit_ratio(name, ratio, k, "x", goal);
        snprintf(name, sizeof name, "ratio.journal_vs_raw.%s_p50_latency.%s",
                 c->name, backend);
        bs_emit_ratio(name, p50x, k, "x (lower is better)", NULL);
    }
    st_close(st);
}

int main(void)
{
    tlog_init("bench-journal", TLOG_WARN);
    once = getenv("TANDEM_BENCH_ONCE") && atoi(getenv("TANDEM_BENCH_ONCE"));
    const char *bes = getenv("TANDEM_BENCH_BACKENDS");
    if (!once) bs_init("bench-journal");
    if (bs_quick()) secs_per_case = 0.5;
    const char *s = getenv("TANDEM_BENCH_SECS");
    if (s && atof(s) > 0) secs_per_case = atof(s);
    pool_rand = malloc(POOL_SIZE);
    pool_comp = malloc(POOL_SIZE);
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < POOL_SIZE; i += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(pool_rand + i, &x, 8);
    }
    /* 2:1 compressible: every 256-byte block is 128 random bytes then
     * 128 zeros (LZ4 gets about 0.5 out of it). */
    for (size_t i = 0; i < POOL_SIZE; i += 256) {
        memcpy(pool_comp + i, pool_rand + i, 128);
        memset(pool_comp + i + 128, 0, 128);
    }

    const char *tmp = getenv("TANDEM_TEST_TMP");
    char dir[256], db[300];
    snprintf(dir, sizeof dir, "%s/bench-journal.XXXXXX", tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(db, sizeof db, "%s/bench.db", dir);
    struct st_config sq = {.backend = "sqlite", .db_path = db};
    if (!bes || strstr(bes, "sqlite")) bench_backend(&sq, "sqlite");
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "bench-journal: cleanup failed\n");

    if (bes && !strstr(bes, "rados")) {
        /* not asked for */
    } else if (getenv("TANDEM_CEPH_CONF") && !getenv("TANDEM_CEPH_SKIP")) {
        char ns[64];
        snprintf(ns, sizeof ns, "bench-journal-%d", (int)getpid());
        struct st_config rc = {
            .backend = "rados", .ceph_conf = getenv("TANDEM_CEPH_CONF"),
            .keyring = getenv("TANDEM_CEPH_KEYRING"),
            .client_id = getenv("TANDEM_CEPH_CLIENT"),
            .pool = getenv("TANDEM_CEPH_POOL_A") ? getenv("TANDEM_CEPH_POOL_A")
                                                 : "tandem-a",
            .rados_ns = ns};
        bench_backend(&rc, "rados");
    } else {
        printf("rados: SKIPPED: %s\n", getenv("TANDEM_CEPH_SKIP")
                                           ? getenv("TANDEM_CEPH_SKIP")
                                           : "TANDEM_CEPH_CONF not set");
    }
    free(pool_rand);
    free(pool_comp);
    bs_close();
    return 0;
}
