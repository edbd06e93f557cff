/*
 * rep-bench.c: replication figures for `make bench` (owner: replicator
 * helper).  Two regions in one process: two rep_ctx (replicator/rep.h)
 * over mutual TLS on loopback, stores per backend (sqlite always; rados
 * when TANDEM_CEPH_CONF names a cluster and TANDEM_CEPH_SKIP is unset).
 *
 * Figures per backend, appended as JSON lines to
 * ${TANDEM_BENCH_OUT:-build/bench.jsonl}:
 *   write_MBps.journal.<b>          journaled write throughput (1 MiB writes)
 *   replication_MBps.<b>            sustained: the replica's apply rate
 *                                   over the last 2/3 of that write phase
 *   ratio.replication_vs_journal.<b>  the two above (goal >= 1.0: keeps up)
 *   replication_MBps_until_applied.<b>, ratio.replication_until_applied_
 *   vs_journal.<b>                  the written bytes over the time until
 *                                   the replica applied the last of them:
 *                                   tw/(tw+drain), below 1.0 always
 *   replication_drain_s.<b>         time from the last write's ack until
 *                                   the replica applied it
 *   lag.p50_s.<b>, lag.p99_s.<b>    per write: time from its ack on the
 *                                   primary to its apply on the replica, at
 *                                   50% of the measured write rate (64 KiB)
 *   catchup_s.<b>                   after a 10 s outage of the peer (writes
 *                                   going on at 50%): time from the peer's
 *                                   return until it applied the head of
 *                                   that moment (includes the sender's
 *                                   reconnect backoff, capped at 2 s)
 *   wire_bytes_per_written_byte.compressible.<b>  2:1 compressible data
 *   failover_s.1vol.<b>, failover_s.100vols.<b>   admin Promote --force of
 *                                   one volume / admin Failover of 100
 *                                   volumes (region a gone), via the
 *                                   replicator's admin socket
 * The throughput figures (phase 1) are the medians of bench_stats.h's
 * samples (5; QUICK 3) of secs/2 each, with min and max.
 * TANDEM_BENCH_SECS scales the timed phases (default 6 s; QUICK 4);
 * REP_BENCH_BATCH sets the replicators' --batch-bytes (default 8 MiB).
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench_stats.h"
#include "jr.h"
#include "regions.h"
#include "replicator/rep.h"
#include "replicator/rep_int.h"
#include "rpc.h"
#include "tandem_admin.pb-c.h"
#include "tbase.h"
#include "tlog.h"
#include "tsig.h"
#include "tests/unit/tt-port.h"

static double secs = 6;

static void emit(const char *name, const char *backend, double v,
                 const char *unit)
{
    char nm[200];
    printf("  %-48s %12.4f %s\n", name, v, unit);
    snprintf(nm, sizeof(nm), "%s.%s", name, backend);
    bs_emit(nm, v, unit);
}

/* A figure of samples (bench_stats.h); ratio: also name.min/.max. */
static void emit_samples(const char *name, const char *backend,
                         const double *v, int n, const char *unit,
                         const char *goal, int ratio)
{
    char nm[200];
    snprintf(nm, sizeof(nm), "%s.%s", name, backend);
    if (ratio) bs_emit_ratio(nm, v, n, unit, goal);
    else bs_emit_samples(nm, v, n, unit, goal);
}

static int free_port(void)
{
    int port = tt_free_port();
    if (port < 0) {
        fprintf(stderr, "rep-bench: no free TCP port in 20000-32000\n");
        exit(1);
    }
    return port;
}

struct bench {
    const char *backend;
    char dir[256], conf[320], pki[300];
    rep_ctx *a, *b;
    st_store *sa, *sb;
    struct rg_config *cfg;
    char ns[32];
};

static rep_ctx *start(struct bench *x, const char *r, const char *p)
{
    char cert[400], key[400], ca[400], sock[400], err[512];
    snprintf(ca, sizeof(ca), "%s/ca.pem", x->pki);
    snprintf(cert, sizeof(cert), "%s/%s.pem", x->pki, r);
    snprintf(key, sizeof(key), "%s/%s.key", x->pki, r);
    snprintf(sock, sizeof(sock), "unix://%s/%s.sock", x->dir, r);
    struct rep_opts o = {.config_path = x->conf, .region = r,
                         .peer_region = p, .admin_addr = sock,
                         .tls_ca = ca, .tls_cert = cert, .tls_key = key};
    if (getenv("REP_BENCH_BATCH"))
        o.batch_bytes = strtoull(getenv("REP_BENCH_BATCH"), NULL, 0);
    rep_ctx *c;
    if (rep_create(&o, &c, err, sizeof(err)) < 0 ||
        rep_start(c, err, sizeof(err)) < 0) {
        fprintf(stderr, "rep-bench: replicator %s: %s\n", r, err);
        exit(1);
    }
    return c;
}

static int setup(struct bench *x, const char *backend)
{
    memset(x, 0, sizeof(*x));
    x->backend = backend;
    const char *tmp = getenv("TANDEM_TEST_TMP");
    snprintf(x->dir, sizeof(x->dir), "%s/rep-bench.XXXXXX", tmp ? tmp : "/tmp");
    if (!mkdtemp(x->dir)) return -errno;
    snprintf(x->pki, sizeof(x->pki), "%s/pki", x->dir);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "scripts/gen-certs.sh %s a b >/dev/null", x->pki);
    if (system(cmd) != 0) {
        fprintf(stderr, "rep-bench: gen-certs failed\n");
        return -EIO;
    }
    snprintf(x->conf, sizeof(x->conf), "%s/conf.ini", x->dir);
    snprintf(x->ns, sizeof(x->ns), "rb%d", (int)getpid());
    FILE *f = fopen(x->conf, "w");
    if (!f) return -errno;
    fprintf(f, "[tandem]\ndefault_region = a\n");
    for (int i = 0; i < 2; i++) {
        const char *r = i ? "b" : "a";
        fprintf(f, "[region %s]\n", r);
        if (!strcmp(backend, "sqlite")) {
            fprintf(f, "backend = sqlite\ndb_path = %s/%s.db\n", x->dir, r);
        } else {
            const char *pool = getenv(i ? "TANDEM_CEPH_POOL_B" : "TANDEM_CEPH_POOL_A");
            const char *cl = getenv("TANDEM_CEPH_CLIENT");
            fprintf(f, "backend = rados\nceph_conf = %s\nclient_id = %s\n"
                    "keyring = %s\npool = %s\nrados_namespace = %s\n",
                    getenv("TANDEM_CEPH_CONF"), cl ? cl : "admin",
                    getenv("TANDEM_CEPH_KEYRING"), pool ? pool : "", x->ns);
        }
        fprintf(f, "replicator = 127.0.0.1:%d\n", free_port());
    }
    fclose(f);
    char err[512];
    if (rg_load(x->conf, &x->cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "rep-bench: %s\n", err);
        return -EINVAL;
    }
    if (rg_open_store(rg_find(x->cfg, "a"), &x->sa) < 0 ||
        rg_open_store(rg_find(x->cfg, "b"), &x->sb) < 0) {
        fprintf(stderr, "rep-bench: cannot open the %s stores\n", backend);
        return -EIO;
    }
    x->a = start(x, "a", "b");
    x->b = start(x, "b", "a");
    return 0;
}

static void create(struct bench *x, const char *vol, uint64_t size,
                   uint32_t objsz)
{
    struct jr_kv kv[] = {{"csi.replication", "async"},
                         {"csi.peer_region", "b"}};
    struct jr_create_opts o = {.size = size, .object_size = objsz,
                               .role = JR_ROLE_PRIMARY, .region = "a",
                               .meta = kv, .n_meta = 2};
    int rc = jr_volume_create(x->sa, vol, &o);
    if (rc < 0) {
        fprintf(stderr, "rep-bench: create %s: %s\n", vol, jr_strerror(rc));
        exit(1);
    }
}

/* Wait until b applied at least seq; returns the time it happened or
 * -1 after timeout. */
static double wait_applied(struct bench *x, const char *vol, uint64_t seq,
                           double timeout)
{
    double t0 = tb_mono_s();
    struct jr_info i;
    while (tb_mono_s() - t0 < timeout) {
        if (jr_volume_stat(x->sb, vol, &i) == 0 && i.applied >= seq)
            return tb_mono_s();
        usleep(1000);
    }
    return -1;
}

/* ---- per-write lag: the writer records (seq, ack time); a sampler
 * records when b's applied passes each seq. */
struct lagrec {
    uint64_t *seq;
    double *t;
    size_t n, cap;
};

static void lag_add(struct lagrec *l, uint64_t seq, double t)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 4096;
        l->seq = realloc(l->seq, l->cap * sizeof(*l->seq));
        l->t = realloc(l->t, l->cap * sizeof(*l->t));
    }
    l->seq[l->n] = seq;
    l->t[l->n] = t;
    l->n++;
}

struct sampler {
    struct bench *x;
    const char *vol;
    volatile int stop;
    struct lagrec applied; /* (applied seq, first time seen) */
};

static void *sampler_main(void *arg)
{
    struct sampler *s = arg;
    uint64_t last = 0;
    while (!s->stop) {
        struct jr_info i;
        if (jr_volume_stat(s->x->sb, s->vol, &i) == 0 && i.applied > last) {
            last = i.applied;
            lag_add(&s->applied, last, tb_mono_s());
        }
        usleep(500);
    }
    return NULL;
}

static uint8_t *pool_rand, *pool_comp;
#define POOL (8u << 20)

/* Write for `dur` seconds (or `total` bytes) at `rate` bytes/s (0: max),
 * `wsz`-byte writes.  Records each write's seq and ack time in rec
 * (may be NULL).  Returns bytes written; *el the elapsed time. */
static uint64_t writer(struct bench *x, const char *vol, double dur,
                       uint64_t total, double rate, size_t wsz, int comp,
                       struct lagrec *rec, double *el, uint64_t *head,
                       double outage_at, double outage_len,
                       double *restored_at, uint64_t *head_at_restore)
{
    jr_volume *v;
    int rc = jr_open(x->sa, vol, JR_OPEN_WRITE, "rep-bench", &v);
    if (rc < 0) {
        fprintf(stderr, "rep-bench: open %s: %s\n", vol, jr_strerror(rc));
        exit(1);
    }
    struct jr_info info;
    jr_get_info(v, &info);
    uint64_t bytes = 0, off = 0, n = 0;
    double t0 = tb_mono_s();
    int down = 0;
    while ((dur > 0 && tb_mono_s() - t0 < dur) || (total && bytes < total)) {
        if (off + wsz > info.size) off = 0;
        const uint8_t *src = (comp ? pool_comp : pool_rand) +
                             (n * 4096 * 7) % (POOL - wsz);
        if ((rc = jr_write(v, off, src, wsz)) < 0) {
            fprintf(stderr, "rep-bench: write: %s\n", jr_strerror(rc));
            exit(1);
        }
        double t = tb_mono_s();
        if (rec || head) {
            struct jr_info i;
            jr_get_info(v, &i);
            if (rec) lag_add(rec, i.head, t);
            if (head) *head = i.head;
        }
        bytes += wsz;
        off += wsz;
        n++;
        if (outage_len > 0 && !down && t - t0 >= outage_at) {
            rep_destroy(x->b);
            x->b = NULL;
            down = 1;
        }
        if (down == 1 && t - t0 >= outage_at + outage_len) {
            x->b = start(x, "b", "a");
            struct jr_info i;
            jr_get_info(v, &i);
            *restored_at = tb_mono_s();
            *head_at_restore = i.head;
            down = 2;
        }
        if (rate > 0) {
            double due = t0 + (double)bytes / rate;
            double d = due - tb_mono_s();
            if (d > 0) usleep((useconds_t)(d * 1e6));
        }
    }
    *el = tb_mono_s() - t0;
    jr_close(v);
    return bytes;
}

/* The replica exists and its sender runs: one 4 KiB write, applied.  The
 * primary's volume is created before a timed phase starts, so the
 * secondary's first contact (found by the replicator's scan, created on
 * the peer) is kept out of it too. */
static void warm(struct bench *x, const char *vol)
{
    double el;
    uint64_t head = 0;
    writer(x, vol, 0, 4096, 0, 4096, 0, NULL, &el, &head, 0, 0, NULL, NULL);
    if (wait_applied(x, vol, head, 60) < 0) {
        fprintf(stderr, "rep-bench: %s never replicated\n", vol);
        exit(1);
    }
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int run_backend(const char *backend)
{
    struct bench x;
    printf("== replication (%s, mTLS on loopback)\n", backend);
    if (setup(&x, backend) < 0) return 1;
    double el;
    uint64_t head = 0;

    /* 1. Throughput: max-rate 1 MiB writes; replication of the same bytes. */
    create(&x, "tput", 64u << 20, 4u << 20);
    warm(&x, "tput");
    /* bench_stats.h's samples of secs/2 each: the journal's and the
     * replica's rates are measured over the same phase, so every sample
     * sees the same load on both sides. */
    int ns = bs_samples();
    double jv[BS_MAX], sv[BS_MAX], rv[BS_MAX], rj[BS_MAX], ru[BS_MAX],
        dv[BS_MAX], t0 = 0;
    for (int k = 0; k < ns; k++) {
        struct jr_info i0;
        jr_volume_stat(x.sb, "tput", &i0);
        struct sampler sp = {.x = &x, .vol = "tput"};
        pthread_t spt;
        pthread_create(&spt, NULL, sampler_main, &sp);
        t0 = tb_mono_s();
        uint64_t bytes = writer(&x, "tput", secs / 2, 0, 0, 1u << 20, 0,
                                NULL, &el, &head, 0, 0, NULL, NULL);
        double tw = tb_mono_s() - t0;
        double ts = wait_applied(&x, "tput", head, 120);
        sp.stop = 1;
        pthread_join(spt, NULL);
        if (ts < 0) {
            fprintf(stderr, "rep-bench: replica never caught up\n");
            return 1;
        }
        double jmb = bytes / tw / 1e6, rmb = bytes / (ts - t0) / 1e6;
        /* Sustained: the replica's apply rate over the last two thirds of
         * the write phase (the first third fills the pipeline), in the
         * same bytes per entry as the writer's.  1.0: it keeps up. */
        double bpe = head > i0.applied
                         ? (double)bytes / (double)(head - i0.applied)
                         : 0;
        size_t ka = 0, kb = 0;
        for (size_t q = 0; q < sp.applied.n; q++) {
            if (sp.applied.t[q] <= t0 + tw / 3) ka = q;
            if (sp.applied.t[q] <= t0 + tw) kb = q;
        }
        double smb = 0;
        if (kb > ka)
            smb = (double)(sp.applied.seq[kb] - sp.applied.seq[ka]) * bpe /
                  (sp.applied.t[kb] - sp.applied.t[ka]) / 1e6;
        free(sp.applied.seq);
        free(sp.applied.t);
        jv[k] = jmb;
        sv[k] = smb;
        rv[k] = rmb;
        rj[k] = smb / jmb;
        ru[k] = rmb / jmb;
        dv[k] = ts - t0 - tw;
        printf("  sample %d: journal %.1f MB/s, replica %.1f MB/s (%.3f), "
               "drained in %.2f s\n", k, jmb, smb, rj[k], dv[k]);
    }
    emit_samples("write_MBps.journal", backend, jv, ns, "MB/s", NULL, 0);
    emit_samples("replication_MBps", backend, sv, ns, "MB/s", NULL, 0);
    emit_samples("ratio.replication_vs_journal", backend, rj, ns, "ratio",
                 ">= 1.0", 1);
    /* Until the replica applied the last write: tw / (tw + drain), below
     * 1.0 even for a replica that keeps up (it applies the last batch only
     * after the last write); the drain time shows how far behind it was. */
    emit_samples("replication_MBps_until_applied", backend, rv, ns, "MB/s",
                 NULL, 0);
    emit_samples("ratio.replication_until_applied_vs_journal", backend, ru,
                 ns, "ratio", NULL, 1);
    emit_samples("replication_drain_s", backend, dv, ns, "s", NULL, 0);
    char names[100][16];
    for (int i = 0; i < 100; i++)
        snprintf(names[i], sizeof(names[i]), "fo-%03d", i);
    /* REP_BENCH_TPUT_ONLY: phase 1 only (quick iterations while tuning). */
    if (getenv("REP_BENCH_TPUT_ONLY")) {
        rep_destroy(x.a);
        x.a = NULL;
        goto done;
    }

    /* 2. Lag at 50% of the maximum rate of 64 KiB writes (measured here,
     * on its own volume, while the replica follows). */
    create(&x, "lagmax", 64u << 20, 4u << 20);
    double el64;
    uint64_t b64 = writer(&x, "lagmax", secs / 2, 0, 0, 64u << 10, 0, NULL,
                          &el64, &head, 0, 0, NULL, NULL);
    wait_applied(&x, "lagmax", head, 120);
    double rate64 = b64 / el64;
    emit("write_MBps.journal_64k", backend, rate64 / 1e6, "MB/s");
    create(&x, "lag", 64u << 20, 4u << 20);
    warm(&x, "lag");
    struct lagrec w = {0};
    struct sampler s = {.x = &x, .vol = "lag"};
    pthread_t th;
    pthread_create(&th, NULL, sampler_main, &s);
    writer(&x, "lag", secs, 0, 0.5 * rate64, 64u << 10, 0, &w, &el,
           &head, 0, 0, NULL, NULL);
    wait_applied(&x, "lag", head, 60);
    usleep(5000);
    s.stop = 1;
    pthread_join(th, NULL);
    double *lags = malloc((w.n + 1) * sizeof(double));
    size_t nl = 0, j = 0;
    for (size_t i = 0; i < w.n; i++) {
        while (j < s.applied.n && s.applied.seq[j] < w.seq[i]) j++;
        if (j == s.applied.n) break;
        double l = s.applied.t[j] - w.t[i];
        lags[nl++] = l > 0 ? l : 0;
    }
    qsort(lags, nl, sizeof(double), cmp_d);
    if (nl) {
        emit("lag.p50_s", backend, lags[nl / 2], "s");
        emit("lag.p99_s", backend, lags[(size_t)(nl * 0.99)], "s");
    }
    free(lags);

    /* 3. Catch-up after a 10 s outage of the peer, writes going on. */
    create(&x, "catchup", 256u << 20, 4u << 20);
    double restored = 0;
    uint64_t hr = 0;
    writer(&x, "catchup", 11.5, 0, 0.5 * rate64, 64u << 10, 0, NULL,
           &el, &head, 1.0, 10.0, &restored, &hr);
    double tc = wait_applied(&x, "catchup", hr, 120);
    if (tc > 0) emit("catchup_s", backend, tc - restored, "s");

    /* 4. Wire bytes per written byte, 2:1 compressible data. */
    create(&x, "comp", 64u << 20, 4u << 20);
    uint64_t cb = writer(&x, "comp", 0, 32u << 20, 0, 64u << 10, 1, NULL,
                         &el, &head, 0, 0, NULL, NULL);
    wait_applied(&x, "comp", head, 60);
    struct rep_vstat vs;
    rep__vol_status(x.a, "comp", &vs);
    emit("wire_bytes_per_written_byte.compressible", backend,
         (double)vs.wire_bytes / (double)cb, "ratio");

    /* 5. Failover: 1 volume (Promote --force), then 100 (Failover --all),
     * region a gone. */
    char vol[32];
    create(&x, "fo-one", 1u << 20, 64u << 10);
    for (int i = 0; i < 100; i++) {
        snprintf(vol, sizeof(vol), "fo-%03d", i);
        create(&x, vol, 1u << 20, 64u << 10);
    }
    for (int i = -1; i < 100; i++) {
        if (i < 0) snprintf(vol, sizeof(vol), "fo-one");
        else snprintf(vol, sizeof(vol), "fo-%03d", i);
        writer(&x, vol, 0, 4096, 0, 4096, 0, NULL, &el, &head, 0, 0, NULL,
               NULL);
    }
    for (int i = -1; i < 100; i++) {
        if (i < 0) snprintf(vol, sizeof(vol), "fo-one");
        else snprintf(vol, sizeof(vol), "fo-%03d", i);
        if (wait_applied(&x, vol, 1, 60) < 0) {
            fprintf(stderr, "rep-bench: %s never replicated\n", vol);
            return 1;
        }
    }
    rep_destroy(x.a); /* region a is lost */
    x.a = NULL;
    char sock[400], msg[512];
    snprintf(sock, sizeof(sock), "unix://%s/b.sock", x.dir);
    rpc_client *c;
    rpc_client_create(sock, NULL, &c);
    Tandem__Admin__V1__PromoteRequest pq = TANDEM__ADMIN__V1__PROMOTE_REQUEST__INIT;
    pq.volume_id = "fo-one";
    pq.force = 1;
    ProtobufCMessage *o = NULL;
    t0 = tb_mono_s();
    int code = rpc_client_call(c, "/tandem.admin.v1.Admin/Promote", &pq.base,
                               &tandem__admin__v1__promote_response__descriptor,
                               &o, 60000, 1, msg, sizeof(msg));
    double t1 = tb_mono_s();
    if (o) protobuf_c_message_free_unpacked(o, NULL);
    if (code == RPC_OK) emit("failover_s.1vol", backend, t1 - t0, "s");
    else fprintf(stderr, "rep-bench: promote: %s\n", msg);
    Tandem__Admin__V1__FailoverRequest fq = TANDEM__ADMIN__V1__FAILOVER_REQUEST__INIT;
    char *ids[100];
    for (int i = 0; i < 100; i++) ids[i] = names[i];
    fq.volume_ids = ids;
    fq.n_volume_ids = 100;
    fq.to_region = "b";
    o = NULL;
    t0 = tb_mono_s();
    code = rpc_client_call(c, "/tandem.admin.v1.Admin/Failover", &fq.base,
                           &tandem__admin__v1__failover_response__descriptor,
                           &o, 120000, 1, msg, sizeof(msg));
    t1 = tb_mono_s();
    size_t okn = 0;
    if (code == RPC_OK) {
        Tandem__Admin__V1__FailoverResponse *fr = (void *)o;
        for (size_t i = 0; i < fr->n_results; i++) okn += fr->results[i]->ok;
    }
    if (o) protobuf_c_message_free_unpacked(o, NULL);
    if (code == RPC_OK && okn == 100)
        emit("failover_s.100vols", backend, t1 - t0, "s");
    else
        fprintf(stderr, "rep-bench: failover: %s ok=%zu\n", msg, okn);
    rpc_client_destroy(c);

done:
    rep_destroy(x.b);
    /* Leave no volumes behind in a shared cluster. */
    if (strcmp(backend, "sqlite")) {
        const char *vols[] = {"tput", "lagmax", "lag", "catchup", "comp",
                              "fo-one"};
        for (int i = 0; i < 6; i++) {
            jr_volume_delete(x.sa, vols[i]);
            jr_volume_delete(x.sb, vols[i]);
        }
        for (int i = 0; i < 100; i++) {
            jr_volume_delete(x.sa, names[i]);
            jr_volume_delete(x.sb, names[i]);
        }
    }
    st_close(x.sa);
    st_close(x.sb);
    rg_free(x.cfg);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", x.dir);
    if (system(cmd) != 0) fprintf(stderr, "rep-bench: cleanup failed\n");
    return 0;
}

int main(void)
{
    tb_signals_block();
    tlog_init("rep-bench", getenv("REP_TIMING") ? TLOG_INFO : TLOG_ERROR);
    bs_init("rep-bench");
    if (bs_quick()) secs = 4;
    const char *e = getenv("TANDEM_BENCH_SECS");
    if (e && atof(e) > 0) secs = atof(e);
    pool_rand = malloc(POOL);
    pool_comp = malloc(POOL);
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < POOL; i += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(pool_rand + i, &x, 8);
    }
    for (size_t i = 0; i < POOL; i += 256) {
        memcpy(pool_comp + i, pool_rand + i, 128);
        memset(pool_comp + i + 128, 0, 128);
    }
    int rc = run_backend("sqlite");
    if (getenv("TANDEM_CEPH_CONF") && !getenv("TANDEM_CEPH_SKIP"))
        rc |= run_backend("rados");
    else
        printf("== replication (rados): SKIPPED: %s\n",
               getenv("TANDEM_CEPH_SKIP") ? getenv("TANDEM_CEPH_SKIP")
                                          : "TANDEM_CEPH_CONF not set");
    bs_close();
    return rc;
}
