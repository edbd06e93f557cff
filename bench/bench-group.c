/*
 * bench-group.c: what consistency groups cost (issue 11, DESIGN.md
 * "Consistency groups").
 *
 * Three member volumes, each written through its own store handle (its
 * own writer lease, as three exporter processes have), 4 KiB random
 * writes at queue depth 1 per member; a coordinator thread takes a
 * consistency point every 250 ms (jr_group_cut, as the replicator does).
 *
 * Figures (JSON lines appended to ${TANDEM_BENCH_OUT:-build/bench.jsonl},
 * a table on stdout), per backend (sqlite; rados when TANDEM_CEPH_CONF):
 *   group.pause_p99_ms.<backend>   how long a point holds writes: each
 *                                  member's write gate closed (from its
 *                                  mark until it saw the release,
 *                                  jr_cp_holds), p99 over every hold of
 *                                  every member in the run (.p50 too)
 *   group.point_p99_ms.<backend>   the coordinator's view: hold
 *                                  published to release published
 *   ratio.group_vs_single.randwrite4k.<backend>
 *                                  write throughput (all three members)
 *                                  grouped with points / the same three
 *                                  volumes ungrouped; goal >= 0.95
 *   group.rpo_p99_s.<backend>      at 50% of the ungrouped throughput: a
 *                                  peer (a second store, in process: no
 *                                  network) ships every member's new
 *                                  entries and moves the gate every 50 ms
 *                                  as the replicator's receiver does;
 *                                  sampled every 50 ms, the RPO is the
 *                                  newest primary head's timestamp minus
 *                                  the timestamp of the newest cut the
 *                                  peer applied; p99, goal < 1 s
 * Each ratio is the median of TANDEM_BENCH_SAMPLES (default 5, at least
 * 3) interleaved samples, with min and max (name.min, name.max).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jr.h"
#include "store.h"
#include "tbase.h"
#include "tlog.h"

#define NM 3
#define VOL_SIZE (256ull << 20)
#define SAMPLE_S 3.0
#define INTERVAL_MS 250

static FILE *out;
static int samples = 5;

static void emit(const char *name, double value, const char *unit)
{
    if (out) {
        fprintf(out, "{\"name\": \"%s\", \"value\": %.4f, \"unit\": \"%s\"}\n",
                name, value, unit);
        fflush(out);
    }
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double quantile(double *v, int n, double q)
{
    qsort(v, (size_t)n, sizeof *v, cmpd);
    return v[(int)(q * (n - 1) + 0.5)];
}

static void emit_stat(const char *name, double *v, int n, const char *unit)
{
    double mn = v[0], mx = v[0];
    for (int i = 0; i < n; i++) {
        if (v[i] < mn) mn = v[i];
        if (v[i] > mx) mx = v[i];
    }
    double med = quantile(v, n, 0.5);
    if (n % 2 == 0) med = (v[n / 2 - 1] + v[n / 2]) / 2;
    char nm[200];
    printf("%-56s %9.3f %s (min %.3f, max %.3f, %d samples)\n", name, med,
           unit, mn, mx, n);
    emit(name, med, unit);
    snprintf(nm, sizeof nm, "%s.min", name);
    emit(nm, mn, unit);
    snprintf(nm, sizeof nm, "%s.max", name);
    emit(nm, mx, unit);
}

struct load {
    st_store *st;
    jr_volume *v;
    double rate;        /* ops/s (0: as fast as it goes) */
    atomic_int *stop;
    uint64_t ops;
    unsigned seed;
    int err;
};

static void *load_main(void *arg)
{
    struct load *l = arg;
    uint8_t b[4096];
    double t0 = tb_mono_s();
    while (!atomic_load(l->stop)) {
        for (size_t i = 0; i < sizeof b; i += 8) {
            uint64_t x = ((uint64_t)rand_r(&l->seed) << 32) ^ l->ops;
            memcpy(b + i, &x, 8);
        }
        uint64_t off = ((uint64_t)rand_r(&l->seed) % (VOL_SIZE / 4096)) * 4096;
        int r = jr_write(l->v, off, b, sizeof b);
        if (r < 0) {
            l->err = r;
            break;
        }
        l->ops++;
        if (l->rate > 0) {
            double due = t0 + (double)l->ops / l->rate, now = tb_mono_s();
            if (due > now) usleep((useconds_t)((due - now) * 1e6));
        }
    }
    return NULL;
}

struct coord {
    st_store *st;
    const char *group;
    atomic_int stop;
    double pauses[8192];    /* writer side: each member's gate closed */
    int np;
    double pts[8192];       /* coordinator: hold published -> release */
    int npt;
    uint64_t points, complete;
};

static void *coord_main(void *arg)
{
    struct coord *c = arg;
    while (!atomic_load(&c->stop)) {
        int64_t t0 = tb_mono_ms();
        struct jr_cut_result r;
        if (jr_group_cut(c->st, c->group, 200, &r) == 0) {
            c->points++;
            c->complete += r.complete;
            if (r.complete && r.participants && c->npt < 8192)
                c->pts[c->npt++] = (double)r.pause_ns / 1e6;
        }
        int64_t left = INTERVAL_MS - (tb_mono_ms() - t0);
        if (left > 0) usleep((useconds_t)left * 1000);
    }
    return NULL;
}

struct peer {
    st_store *a, *b;
    const char *const *vols;
    atomic_int stop;
    double rpo[8192];
    int nr;
    uint64_t shipped[NM], gate[NM];
    int err;
};

/* Ship new entries of every member (journal only past the gate), move
 * the gate to the newest complete cut, sample the RPO. */
static void *peer_main(void *arg)
{
    struct peer *p = arg;
    uint32_t idx[NM] = {0, 1, 2};
    int64_t cut_ts_applied = 0;
    while (!atomic_load(&p->stop)) {
        int64_t head_ts = 0;
        int news = 0;
        for (int i = 0; i < NM && !p->err; i++) {
            struct jr_info in;
            if ((p->err = jr_volume_stat(p->a, p->vols[i], &in)) < 0) break;
            if (in.head_ts_ns > head_ts) head_ts = in.head_ts_ns;
            while (p->shipped[i] < in.head) {
                struct jr_batch bt;
                p->err = jr_tail_read(p->a, p->vols[i], p->shipped[i] + 1,
                                      8u << 20, &bt);
                if (p->err < 0 || !bt.n_entries) {
                    jr_batch_free(&bt);
                    break;
                }
                uint64_t h = 0;
                p->err = jr_apply_limit(p->b, p->vols[i], bt.data, bt.len, 0,
                                        p->gate[i], &h);
                if (p->err == 0 && jr_batch_group_commits(bt.data, bt.len) > 0)
                    news = 1;
                jr_batch_free(&bt);
                if (p->err < 0) break;
                p->shipped[i] = h;
            }
        }
        if (p->err < 0) break;
        uint64_t cut = 0, pos[NM];
        int64_t cts = 0;
        /* As the replicator: look for a cut only when a commit came. */
        if (news)
            p->err = jr_group_find_cut(p->b, NM, p->vols, idx, &cut, pos, &cts);
        if (p->err < 0) break;
        if (cut && cts) {
            for (int i = 0; i < NM; i++) {
                if ((p->err = jr_replica_apply_to(p->b, p->vols[i], pos[i])) < 0)
                    break;
                p->gate[i] = pos[i];
            }
            jr_group_cut_applied(p->b, NM, p->vols, cut, pos);
            cut_ts_applied = cts;
        }
        if (cut_ts_applied && head_ts && p->nr < 8192)
            p->rpo[p->nr++] = head_ts > cut_ts_applied
                                  ? (double)(head_ts - cut_ts_applied) / 1e9
                                  : 0;
        usleep(50000);
    }
    return NULL;
}

/* One run: three members (grouped or not) under load for secs; returns
 * total ops/s (0 on error).  With c: points run meanwhile; with p: the
 * peer too. */
static double run(const struct st_config *cfg, const char *const *vols,
                  double rate, double secs, struct coord *c, struct peer *p)
{
    st_store *sts[NM] = {0};
    struct load l[NM];
    pthread_t th[NM], ct, pt;
    atomic_int stop = 0;
    double res = 0;
    int n = 0;
    memset(l, 0, sizeof l);
    for (; n < NM; n++) {
        if (st_open(cfg, &sts[n]) < 0) goto out;
        l[n] = (struct load){.st = sts[n], .rate = rate, .stop = &stop,
                             .seed = 77u + (unsigned)n};
        int r = jr_open(sts[n], vols[n], JR_OPEN_WRITE, "bench", &l[n].v);
        if (r < 0) {
            fprintf(stderr, "bench-group: open %s: %s\n", vols[n],
                    jr_strerror(r));
            st_close(sts[n]);
            goto out;
        }
    }
    if (c) pthread_create(&ct, NULL, coord_main, c);
    if (p) pthread_create(&pt, NULL, peer_main, p);
    double t0 = tb_mono_s();
    for (int i = 0; i < NM; i++) pthread_create(&th[i], NULL, load_main, &l[i]);
    usleep((useconds_t)(secs * 1e6));
    atomic_store(&stop, 1);
    uint64_t ops = 0;
    int err = 0;
    for (int i = 0; i < NM; i++) {
        pthread_join(th[i], NULL);
        ops += l[i].ops;
        if (l[i].err) err = l[i].err;
    }
    double el = tb_mono_s() - t0;
    if (c) {
        atomic_store(&c->stop, 1);
        pthread_join(ct, NULL);
    }
    if (p) {
        atomic_store(&p->stop, 1);
        pthread_join(pt, NULL);
    }
    if (err) fprintf(stderr, "bench-group: write: %s\n", jr_strerror(err));
    else res = (double)ops / el;
out:
    for (int i = 0; i < n; i++) {
        if (c) { /* what the writers were held, from their own clocks */
            int64_t h[256];
            size_t k = jr_cp_holds(l[i].v, h, 256);
            for (size_t j = 0; j < k && c->np < 8192; j++)
                c->pauses[c->np++] = (double)h[j] / 1e6;
        }
        jr_close(l[i].v);
        st_close(sts[i]);
    }
    return res;
}

static void bench_backend(const struct st_config *ca, const struct st_config *cb,
                          const char *backend)
{
    st_store *st = NULL, *stb = NULL;
    if (st_open(ca, &st) < 0 || st_open(cb, &stb) < 0) {
        printf("%s: SKIPPED: cannot open the stores\n", backend);
        st_close(st);
        return;
    }
    char gv[NM][64], sv[NM][64], rv[NM][64], group[64], rgroup[64],
        name[160];
    const char *gvp[NM], *svp[NM], *rvp[NM];
    snprintf(group, sizeof group, "bgrp%d", (int)getpid());
    /* The RPO runs use a group of their own, so that the peer does not
     * start them with the throughput runs' backlog. */
    snprintf(rgroup, sizeof rgroup, "bgrpr%d", (int)getpid());
    for (int i = 0; i < NM; i++) {
        snprintf(gv[i], sizeof gv[i], "bg-%d-%d", (int)getpid(), i);
        snprintf(sv[i], sizeof sv[i], "bs-%d-%d", (int)getpid(), i);
        snprintf(rv[i], sizeof rv[i], "br-%d-%d", (int)getpid(), i);
        gvp[i] = gv[i];
        svp[i] = sv[i];
        rvp[i] = rv[i];
        struct jr_create_opts o = {.size = VOL_SIZE, .region = "bench"};
        if (jr_volume_create(st, gv[i], &o) < 0 ||
            jr_volume_create(st, sv[i], &o) < 0 ||
            jr_volume_create(st, rv[i], &o) < 0 ||
            jr_group_join(st, group, gv[i], NULL) < 0 ||
            jr_group_join(st, rgroup, rv[i], NULL) < 0) {
            printf("%s: SKIPPED: cannot create volumes\n", backend);
            goto out;
        }
        struct jr_create_opts so = {.size = VOL_SIZE, .region = "peer",
                                    .role = JR_ROLE_SECONDARY};
        char mv[96];
        snprintf(mv, sizeof mv, "%s %d", rgroup, i);
        if (jr_volume_create(stb, rv[i], &so) < 0 ||
            jr_meta_set(stb, rv[i], "group", mv) < 0) {
            printf("%s: SKIPPED: cannot create replicas\n", backend);
            goto out;
        }
    }
    /* Throughput: grouped (points every 250 ms) vs ungrouped,
     * interleaved; every point's pause collected. */
    double ratios[16], pauses[8192 * 2], points[8192 * 2];
    int nrat = 0, npause = 0, npoint = 0;
    double single_max = 0;
    for (int s = 0; s < samples && s < 16; s++) {
        struct coord *c = calloc(1, sizeof *c);
        if (!c) break;
        c->st = st;
        c->group = group;
        double one = run(ca, svp, 0, SAMPLE_S, NULL, NULL);
        double grp = run(ca, gvp, 0, SAMPLE_S, c, NULL);
        if (one <= 0 || grp <= 0) {
            free(c);
            break;
        }
        printf("  sample %d: grouped %.0f ops/s (%" PRIu64 " points, %" PRIu64
               " complete) vs single %.0f ops/s\n", s, grp, c->points,
               c->complete, one);
        ratios[nrat++] = grp / one;
        if (one > single_max) single_max = one;
        for (int i = 0; i < c->np && npause < 8192 * 2; i++)
            pauses[npause++] = c->pauses[i];
        for (int i = 0; i < c->npt && npoint < 8192 * 2; i++)
            points[npoint++] = c->pts[i];
        free(c);
    }
    if (nrat >= 3) {
        snprintf(name, sizeof name, "ratio.group_vs_single.randwrite4k.%s",
                 backend);
        emit_stat(name, ratios, nrat, "x");
    }
    if (npause) {
        double p99 = quantile(pauses, npause, 0.99);
        double p50 = quantile(pauses, npause, 0.5);
        snprintf(name, sizeof name, "group.pause_p99_ms.%s", backend);
        printf("%-56s %9.3f ms (p50 %.3f, max %.3f, %d points)\n", name, p99,
               p50, pauses[npause - 1], npause);
        emit(name, p99, "ms");
        snprintf(name, sizeof name, "group.pause_p50_ms.%s", backend);
        emit(name, p50, "ms");
    }
    if (npoint) {
        double p99 = quantile(points, npoint, 0.99);
        snprintf(name, sizeof name, "group.point_p99_ms.%s", backend);
        printf("%-56s %9.3f ms (p50 %.3f, %d points)\n", name, p99,
               quantile(points, npoint, 0.5), npoint);
        emit(name, p99, "ms");
    }
    /* RPO at 50% load: per sample a run with the peer; p99 per sample,
     * the median of those reported. */
    double rpos[16];
    int nrpo = 0;
    for (int s = 0; s < samples && s < 16 && single_max > 0; s++) {
        struct coord *c = calloc(1, sizeof *c);
        struct peer *p = calloc(1, sizeof *p);
        if (!c || !p) {
            free(c);
            free(p);
            break;
        }
        c->st = st;
        c->group = rgroup;
        p->a = st;
        p->b = stb;
        p->vols = rvp;
        /* Continue where the last sample's peer left off. */
        for (int i = 0; i < NM; i++) {
            struct jr_info in;
            if (jr_volume_stat(stb, rv[i], &in) == 0) {
                p->shipped[i] = in.head;
                p->gate[i] = in.applied;
            }
        }
        double got = run(ca, rvp, single_max / 2 / NM, 5.0, c, p);
        if (got <= 0 || p->err < 0 || p->nr < 5) {
            fprintf(stderr, "bench-group: rpo run failed (%s, %d samples)\n",
                    jr_strerror(p->err), p->nr);
            free(c);
            free(p);
            break;
        }
        double q = quantile(p->rpo, p->nr, 0.99);
        printf("  rpo sample %d: %.0f ops/s, p99 %.3f s over %d samples\n", s,
               got, q, p->nr);
        rpos[nrpo++] = q;
        free(c);
        free(p);
    }
    if (nrpo >= 3) {
        snprintf(name, sizeof name, "group.rpo_p99_s.%s", backend);
        emit_stat(name, rpos, nrpo, "s");
    }
out:
    for (int i = 0; i < NM; i++) {
        jr_group_leave(st, group, gv[i]);
        jr_group_leave(st, rgroup, rv[i]);
        jr_volume_delete(st, gv[i]);
        jr_volume_delete(st, sv[i]);
        jr_volume_delete(st, rv[i]);
        jr_volume_delete(stb, rv[i]);
    }
    jr_group_delete(st, group);
    jr_group_delete(st, rgroup);
    st_close(stb);
    st_close(st);
}

int main(void)
{
    tlog_init("bench-group", TLOG_ERROR);
    const char *s = getenv("TANDEM_BENCH_SAMPLES");
    if (s && atoi(s) >= 3) samples = atoi(s);
    const char *path = getenv("TANDEM_BENCH_OUT");
    if (!path) path = "build/bench.jsonl";
    out = fopen(path, "a");
    if (!out) fprintf(stderr, "bench-group: cannot append to %s\n", path);
    const char *tmp = getenv("TANDEM_TEST_TMP");
    char dir[256], dba[300], dbb[300];
    snprintf(dir, sizeof dir, "%s/bench-group.XXXXXX", tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(dba, sizeof dba, "%s/a.db", dir);
    snprintf(dbb, sizeof dbb, "%s/b.db", dir);
    struct st_config sa = {.backend = "sqlite", .db_path = dba};
    struct st_config sb = {.backend = "sqlite", .db_path = dbb};
    bench_backend(&sa, &sb, "sqlite");
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "bench-group: cleanup failed\n");
    if (getenv("TANDEM_CEPH_CONF") && !getenv("TANDEM_CEPH_SKIP")) {
        char ns[64], nsb[64];
        snprintf(ns, sizeof ns, "bench-group-%d", (int)getpid());
        snprintf(nsb, sizeof nsb, "bench-group-b-%d", (int)getpid());
        struct st_config ra = {
            .backend = "rados", .ceph_conf = getenv("TANDEM_CEPH_CONF"),
            .keyring = getenv("TANDEM_CEPH_KEYRING"),
            .client_id = getenv("TANDEM_CEPH_CLIENT"),
            .pool = getenv("TANDEM_CEPH_POOL_A") ? getenv("TANDEM_CEPH_POOL_A")
                                                 : "tandem-a",
            .rados_ns = ns};
        struct st_config rb = ra;
        rb.pool = getenv("TANDEM_CEPH_POOL_B") ? getenv("TANDEM_CEPH_POOL_B")
                                               : "tandem-b";
        rb.rados_ns = nsb;
        bench_backend(&ra, &rb, "rados");
    } else {
        printf("rados: SKIPPED: %s\n", getenv("TANDEM_CEPH_SKIP")
                                           ? getenv("TANDEM_CEPH_SKIP")
                                           : "TANDEM_CEPH_CONF not set");
    }
    if (out) fclose(out);
    return 0;
}
