/*
 * bench-store.c: raw object store figures for `make bench`, the baseline
 * every later benchmark is divided by.  For each backend (sqlite always;
 * rados on the cluster $TANDEM_CEPH_CONF names, or else on a throwaway one
 * this program starts with tests/ceph/ceph-up.sh and stops at the end):
 *
 *   write_full_4m   4 MiB whole-object writes, cycling over 8 objects
 *   write_4k_qd1    4 KiB writes at random 4 KiB-aligned offsets of 8
 *                   4 MiB objects, one at a time
 *   write_4k_qd32   the same with 32 asynchronous ops in flight on one
 *                   handle (st_aio_operate)
 *   write_4k_32thr  the same from 32 threads doing synchronous writes
 *   append_4k       4 KiB appends to one object (a journal)
 *   read_4k         4 KiB reads at random offsets of the 4 MiB objects
 *   read_1m         1 MiB reads at random 1 MiB-aligned offsets
 *
 * Each case runs for $TANDEM_BENCH_SECS seconds (default 2; QUICK 1: no
 * ratios here, so no samples either) and reports
 * ops/s, MiB/s and the p50/p99 latency of one operation.  The table goes
 * to stdout; each figure is appended as a JSON line
 *   {"name":"store.<case>.<backend>.<metric>","value":...,"unit":...}
 * to $TANDEM_BENCH_OUT (default $B/bench.jsonl, B defaulting to build).
 * Data goes to a scratch directory under $B (a real disk: /tmp may be a
 * tmpfs, where fsync costs nothing).  Run from the repository root.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "store.h"
#include "tbase.h"
#include "tlog.h"

#define KIB 1024u
#define MIB (1024u * 1024u)
#define NOBJ 8
#define QD 32
#define MAX_SAMPLES (1u << 20)

static double g_secs = 2.0;
static FILE *g_out;
static char g_tmp[512];      /* scratch directory */
static char g_ceph_dir[600]; /* a cluster we started, or "" */

static unsigned rnd(unsigned *seed)
{
    *seed = *seed * 1103515245u + 12345u;
    return *seed >> 8;
}

/* Latency samples of one case (seconds), shared by threads/callbacks. */
struct samples {
    pthread_mutex_t mu;
    double *v;
    size_t n;
    uint64_t ops, errors;
};

static void sample_add(struct samples *s, double lat, int err)
{
    pthread_mutex_lock(&s->mu);
    if (err)
        s->errors++;
    else {
        s->ops++;
        if (s->n < MAX_SAMPLES) s->v[s->n++] = lat;
    }
    pthread_mutex_unlock(&s->mu);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void emit(const char *cs, const char *be, const char *metric, double v,
                 const char *unit)
{
    if (g_out) {
        fprintf(
            g_out,
            "{\"name\":\"store.%s.%s.%s\",\"value\":%.3f,\"unit\":\"%s\"}\n",
            cs, be, metric, v, unit);
        fflush(g_out);
    }
}

/* Print one table row and its JSON lines. */
static void report(const char *cs, const char *be, const char *mode,
                   struct samples *s, double secs, size_t op_bytes)
{
    double p50 = 0, p99 = 0;
    if (s->n) {
        qsort(s->v, s->n, sizeof *s->v, cmp_d);
        p50 = s->v[s->n / 2] * 1e6;
        p99 = s->v[(size_t)((double)(s->n - 1) * 0.99)] * 1e6;
    }
    double iops = (double)s->ops / secs;
    double mibs = iops * (double)op_bytes / MIB;
    printf("  %-14s %-7s %-8s %10.0f %9.1f %10.0f %10.0f %6llu\n", cs, be, mode,
           iops, mibs, p50, p99, (unsigned long long)s->errors);
    fflush(stdout);
    emit(cs, be, "ops_per_s", iops, "ops/s");
    emit(cs, be, "mib_per_s", mibs, "MiB/s");
    emit(cs, be, "p50_us", p50, "us");
    emit(cs, be, "p99_us", p99, "us");
}

/* ------------------------------------------------------------ cases -- */

struct job {
    st_store *st;
    struct samples *s;
    const char *kind; /* which case */
    unsigned seed;
    double deadline;
    const char *buf;
    char *rbuf;
};

/* One synchronous operation of the case; returns <0 on error. */
static int one_op(struct job *j, uint64_t i)
{
    char oid[64];
    unsigned r = rnd(&j->seed);
    if (!strcmp(j->kind, "write_full_4m")) {
        snprintf(oid, sizeof oid, "full-%u", (unsigned)(i % NOBJ));
        return st_write_full(j->st, oid, j->buf, 4 * MIB);
    }
    if (!strcmp(j->kind, "write_4k")) {
        snprintf(oid, sizeof oid, "w4k-%u", r % NOBJ);
        return st_write(j->st, oid, (uint64_t)(rnd(&j->seed) % 1024) * 4 * KIB,
                        j->buf, 4 * KIB);
    }
    if (!strcmp(j->kind, "append_4k")) {
        /* Roll to a new journal object every 16 MiB, as a journal does. */
        snprintf(oid, sizeof oid, "journal-%llu",
                 (unsigned long long)(i / 4096));
        return st_append(j->st, oid, j->buf, 4 * KIB);
    }
    if (!strcmp(j->kind, "read_4k")) {
        snprintf(oid, sizeof oid, "full-%u", r % NOBJ);
        ssize_t n =
            st_read(j->st, oid, (uint64_t)(rnd(&j->seed) % 1024) * 4 * KIB,
                    j->rbuf, 4 * KIB);
        return n == 4 * KIB ? 0 : -EIO;
    }
    if (!strcmp(j->kind, "read_1m")) {
        snprintf(oid, sizeof oid, "full-%u", r % NOBJ);
        ssize_t n = st_read(j->st, oid, (uint64_t)(rnd(&j->seed) % 4) * MIB,
                            j->rbuf, MIB);
        return n == MIB ? 0 : -EIO;
    }
    return -EINVAL;
}

static void *sync_loop(void *arg)
{
    struct job *j = arg;
    for (uint64_t i = 0; tb_mono_s() < j->deadline; i++) {
        double t0 = tb_mono_s();
        int r = one_op(j, i);
        sample_add(j->s, tb_mono_s() - t0, r < 0);
        if (r < 0 && j->s->errors == 1)
            fprintf(stderr, "bench-store: %s: %s\n", j->kind, st_strerror(r));
    }
    return NULL;
}

/* Run a case with `threads` synchronous threads. */
static void run_sync(st_store *st, const char *be, const char *cs,
                     const char *kind, int threads, size_t op_bytes,
                     const char *buf)
{
    struct samples s = {PTHREAD_MUTEX_INITIALIZER,
                        malloc(MAX_SAMPLES * sizeof(double)), 0, 0, 0};
    struct job j[QD];
    pthread_t th[QD];
    double t0 = tb_mono_s();
    for (int i = 0; i < threads; i++) {
        j[i] = (struct job){
            st,          &s,  kind,           777u + (unsigned)i * 31u,
            t0 + g_secs, buf, malloc(4 * MIB)};
        pthread_create(&th[i], NULL, sync_loop, &j[i]);
    }
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        free(j[i].rbuf);
    }
    report(cs, be, threads > 1 ? "32thr" : "qd1", &s, tb_mono_s() - t0, op_bytes);
    free(s.v);
}

/* 4 KiB random writes with QD asynchronous ops in flight. */
struct aio_slot {
    struct aio_state *a;
    double t0;
};

struct aio_state {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int inflight;
    struct samples *s;
    struct aio_slot slots[QD];
    int free_slots[QD], nfree;
};

static void aio_done(int result, void *arg)
{
    struct aio_slot *sl = arg;
    struct aio_state *a = sl->a;
    sample_add(a->s, tb_mono_s() - sl->t0, result < 0);
    pthread_mutex_lock(&a->mu);
    a->free_slots[a->nfree++] = (int)(sl - a->slots);
    a->inflight--;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

static void run_aio(st_store *st, const char *be, const char *buf)
{
    struct samples s = {PTHREAD_MUTEX_INITIALIZER,
                        malloc(MAX_SAMPLES * sizeof(double)), 0, 0, 0};
    struct aio_state a = {PTHREAD_MUTEX_INITIALIZER,
                          PTHREAD_COND_INITIALIZER,
                          0,
                          &s,
                          {{0}},
                          {0},
                          QD};
    unsigned seed = 4242;
    char oid[64];
    for (int i = 0; i < QD; i++) {
        a.slots[i].a = &a;
        a.free_slots[i] = i;
    }
    double t0 = tb_mono_s(), deadline = t0 + g_secs;
    while (tb_mono_s() < deadline) {
        pthread_mutex_lock(&a.mu);
        while (a.nfree == 0)
            pthread_cond_wait(&a.cv, &a.mu);
        struct aio_slot *sl = &a.slots[a.free_slots[--a.nfree]];
        a.inflight++;
        pthread_mutex_unlock(&a.mu);
        st_wop *op = st_wop_create();
        st_wop_write(op, (uint64_t)(rnd(&seed) % 1024) * 4 * KIB, buf, 4 * KIB);
        snprintf(oid, sizeof oid, "w4k-%u", rnd(&seed) % NOBJ);
        sl->t0 = tb_mono_s();
        int r = st_aio_operate(st, oid, op, aio_done, sl);
        if (r < 0) aio_done(r, sl);
    }
    st_aio_wait(st);
    report("write_4k_qd32", be, "aio32", &s, tb_mono_s() - t0, 4 * KIB);
    free(s.v);
}

static int rm_cb(const char *oid, void *arg)
{
    st_remove(arg, oid);
    return 0;
}

static void bench_backend(const struct st_config *cfg, const char *be)
{
    st_store *st = NULL;
    int r = st_open(cfg, &st);
    if (r < 0) {
        printf("  %-14s %-7s SKIPPED: open failed: %s\n", "*", be,
               st_strerror(r));
        return;
    }
    char *buf = malloc(4 * MIB);
    for (size_t i = 0; i < 4 * MIB; i++)
        buf[i] = (char)(i * 131 + 7);

    run_sync(st, be, "write_full_4m", "write_full_4m", 1, 4 * MIB, buf);
    /* Make sure every object read below exists at full size. */
    for (int i = 0; i < NOBJ; i++) {
        char oid[32];
        snprintf(oid, sizeof oid, "full-%d", i);
        st_write_full(st, oid, buf, 4 * MIB);
    }
    run_sync(st, be, "write_4k_qd1", "write_4k", 1, 4 * KIB, buf);
    run_aio(st, be, buf);
    run_sync(st, be, "write_4k_32thr", "write_4k", QD, 4 * KIB, buf);
    run_sync(st, be, "append_4k", "append_4k", 1, 4 * KIB, buf);
    run_sync(st, be, "read_4k", "read_4k", 1, 4 * KIB, buf);
    run_sync(st, be, "read_1m", "read_1m", 1, MIB, buf);

    st_list(st, "", rm_cb, st);
    st_close(st);
    free(buf);
}

/* ------------------------------------------------------------- ceph -- */

/* Start a throwaway cluster with tests/ceph/ceph-up.sh and export what it
 * prints.  Returns 0, or -1 with the reason in why. */
static int ceph_start(char *why, size_t whylen)
{
    char cmd[1400], line[1024], log[700];
    snprintf(g_ceph_dir, sizeof g_ceph_dir, "%s/ceph", g_tmp);
    snprintf(log, sizeof log, "%s/ceph-up.log", g_tmp);
    snprintf(cmd, sizeof cmd, "tests/ceph/ceph-up.sh %s 2>%s", g_ceph_dir, log);
    fprintf(stderr, "bench-store: starting a throwaway Ceph in %s\n",
            g_ceph_dir);
    FILE *p = popen(cmd, "r");
    if (!p) {
        snprintf(why, whylen, "popen: %s", strerror(errno));
        g_ceph_dir[0] = '\0';
        return -1;
    }
    while (fgets(line, sizeof line, p)) {
        line[strcspn(line, "\n")] = '\0';
        char *eq = strchr(line, '=');
        if (!eq || strncmp(line, "TANDEM_CEPH_", 12)) continue;
        *eq = '\0';
        setenv(line, eq + 1, 1);
    }
    int st = pclose(p);
    if (st != 0 || !getenv("TANDEM_CEPH_CONF")) {
        /* The reason is the last line of ceph-up's stderr. */
        FILE *f = fopen(log, "r");
        snprintf(why, whylen, "ceph-up.sh failed");
        while (f && fgets(line, sizeof line, f)) {
            line[strcspn(line, "\n")] = '\0';
            snprintf(why, whylen, "%.400s", line);
        }
        if (f) fclose(f);
        return -1;
    }
    return 0;
}

static void ceph_stop(void)
{
    if (!g_ceph_dir[0]) return;
    char cmd[800];
    snprintf(cmd, sizeof cmd, "tests/ceph/ceph-down.sh %s >/dev/null 2>&1",
             g_ceph_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "bench-store: ceph-down.sh %s failed\n", g_ceph_dir);
    g_ceph_dir[0] = '\0';
}

static void rm_tmp(void)
{
    char cmd[700];
    if (!g_tmp[0]) return;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "bench-store: cannot remove %s\n", g_tmp);
}

int main(void)
{
    const char *b = getenv("B") && *getenv("B") ? getenv("B") : "build";
    char path[800], out[600];
    tlog_init("bench-store", TLOG_WARN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* `make bench QUICK=1`: shorter cases (bench_stats.h's knob). */
    const char *quick = getenv("TANDEM_BENCH_QUICK");
    if (quick && quick[0] && strcmp(quick, "0")) g_secs = 1.0;
    if (getenv("TANDEM_BENCH_SECS")) g_secs = atof(getenv("TANDEM_BENCH_SECS"));
    if (g_secs <= 0) g_secs = 2.0;

    snprintf(out, sizeof out, "%s/bench.jsonl", b);
    const char *outp =
        getenv("TANDEM_BENCH_OUT") ? getenv("TANDEM_BENCH_OUT") : out;
    if (!(g_out = fopen(outp, "a")))
        fprintf(stderr, "bench-store: cannot append to %s: %s\n", outp,
                strerror(errno));

    /* A real-disk scratch directory under $B, absolute for ceph-up.sh. */
    char cwd[400];
    if (!getcwd(cwd, sizeof cwd)) return 1;
    mkdir(b, 0755);
    snprintf(g_tmp, sizeof g_tmp, "%s%s%s/bench-store.XXXXXX",
             b[0] == '/' ? "" : cwd, b[0] == '/' ? "" : "/", b);
    if (!mkdtemp(g_tmp)) {
        fprintf(stderr, "bench-store: mkdtemp %s: %s\n", g_tmp,
                strerror(errno));
        return 1;
    }

    printf("store bench: %.1f s per case; latencies in microseconds\n", g_secs);
    printf("  %-14s %-7s %-8s %10s %9s %10s %10s %6s\n", "case", "backend",
           "mode", "ops/s", "MiB/s", "p50", "p99", "errors");

    snprintf(path, sizeof path, "%s/store.db", g_tmp);
    struct st_config sq = {.backend = "sqlite", .db_path = path};
    bench_backend(&sq, "sqlite");

    char why[512] = "";
    int have_ceph = getenv("TANDEM_CEPH_CONF") != NULL;
    if (!have_ceph && getenv("TANDEM_CEPH_SKIP"))
        snprintf(why, sizeof why, "%s", getenv("TANDEM_CEPH_SKIP"));
    else if (!have_ceph)
        have_ceph = ceph_start(why, sizeof why) == 0;
    if (have_ceph) {
        char ns[64];
        snprintf(ns, sizeof ns, "bench-store-%d", (int)getpid());
        struct st_config ra = {.backend = "rados",
                               .ceph_conf = getenv("TANDEM_CEPH_CONF"),
                               .keyring = getenv("TANDEM_CEPH_KEYRING"),
                               .client_id = getenv("TANDEM_CEPH_CLIENT"),
                               .pool = getenv("TANDEM_CEPH_POOL_A"),
                               .rados_ns = ns};
        bench_backend(&ra, "rados");
    } else {
        printf("  %-14s %-7s SKIPPED: %s\n", "*", "rados", why);
    }
    ceph_stop();
    rm_tmp();
    if (g_out) fclose(g_out);
    printf("figures appended to %s\n", outp);
    return 0;
}
