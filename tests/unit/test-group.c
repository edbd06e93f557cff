/*
 * test-group.c: consistency groups (journal/jr_group.c, FORMAT.md §6) on
 * both backends, through the real store: membership; consistency points
 * across three members written through three store handles (each its own
 * lease and fencing identity, as three exporter processes would be)
 * while a writer issues globally numbered records, each only after the
 * previous one was acknowledged; shipping to replicas in another store
 * with the image gated at the newest complete cut; then "region loss" at
 * random points (each member's replica holding a random prefix of its
 * journal) and the failover cut, after which the records found on the
 * replicas must be exactly a prefix of the global order.  The control:
 * the same prefixes applied without groups (each replica to its own
 * head) must find violations, or this test could not fail.  And a member
 * whose writer never marks: the point is abandoned within its bound and
 * the other members' writes go on.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>

#include "jr_int.h"
#include "store_int.h"
#include "tbase.h"
#include "tt.h"

__attribute__((constructor)) static void quiet_logs(void)
{
    tlog_init("test-group", getenv("TT_DEBUG") ? TLOG_INFO : TLOG_ERROR);
}

struct fx {
    struct st_config cfg;
    char dir[256];
    char db[300];
    char ns[64];
};

static void fx_config(struct fx *f, const char *backend, const char *name)
{
    memset(f, 0, sizeof *f);
    if (strcmp(backend, "sqlite") == 0) {
        const char *tmp = getenv("TANDEM_TEST_TMP");
        snprintf(f->dir, sizeof f->dir, "%s/tgrp.XXXXXX", tmp ? tmp : "/tmp");
        ASSERT(mkdtemp(f->dir) != NULL);
        snprintf(f->db, sizeof f->db, "%s/%s.db", f->dir, name);
        f->cfg.backend = "sqlite";
        f->cfg.db_path = f->db;
    } else {
        const char *skip = getenv("TANDEM_CEPH_SKIP");
        if (skip && *skip) TT_SKIP("Ceph: %s", skip);
        if (!getenv("TANDEM_CEPH_CONF"))
            TT_SKIP("Ceph: TANDEM_CEPH_CONF not set");
        f->cfg.backend = "rados";
        f->cfg.ceph_conf = getenv("TANDEM_CEPH_CONF");
        f->cfg.keyring = getenv("TANDEM_CEPH_KEYRING");
        f->cfg.client_id = getenv("TANDEM_CEPH_CLIENT");
        f->cfg.pool = getenv("TANDEM_CEPH_POOL_A");
        if (!f->cfg.pool) f->cfg.pool = "tandem-a";
        snprintf(f->ns, sizeof f->ns, "tgrp-%s-%d-%ld", name, (int)getpid(),
                 (long)time(NULL));
        f->cfg.rados_ns = f->ns;
    }
}

static st_store *fx_store(struct fx *f)
{
    st_store *st = NULL;
    ASSERT_OK(st_open(&f->cfg, &st));
    return st;
}

static int rm_cb(const char *oid, void *arg)
{
    st_remove(arg, oid);
    return 0;
}

static void fx_cleanup(struct fx *f)
{
    if (strcmp(f->cfg.backend, "rados") == 0) {
        st_store *st = fx_store(f);
        st_list(st, "", rm_cb, st);
        st_close(st);
    }
    if (f->dir[0]) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
        if (system(cmd) != 0) fprintf(stderr, "cleanup of %s failed\n", f->dir);
    }
}

static void mkvol(st_store *st, const char *id, uint64_t size, int role)
{
    struct jr_create_opts o = {.size = size, .object_size = 64 << 10,
                               .role = role, .region = "a"};
    ASSERT_OK(jr_volume_create(st, id, &o));
}

/* ---- membership ---- */

struct seen {
    char vol[8][JR_MAX_ID + 1];
    uint32_t idx[8];
    int n;
};

static int seen_cb(const char *v, uint32_t i, void *arg)
{
    struct seen *s = arg;
    if (s->n < 8) {
        snprintf(s->vol[s->n], sizeof s->vol[0], "%s", v);
        s->idx[s->n] = i;
    }
    s->n++;
    return 0;
}

static int glist_cb(const char *g, void *arg)
{
    (*(int *)arg)++;
    return strcmp(g, "db") == 0 ? 0 : 0;
}

static void membership_on(const char *backend)
{
    struct fx f;
    fx_config(&f, backend, "m");
    st_store *st = fx_store(&f);
    mkvol(st, "m0", 1 << 20, 0);
    mkvol(st, "m1", 1 << 20, 0);
    mkvol(st, "m2", 1 << 20, 0);
    uint32_t i0, i1, i2, again;
    ASSERT_OK(jr_group_join(st, "db", "m0", &i0));
    ASSERT_OK(jr_group_join(st, "db", "m1", &i1));
    ASSERT_EQ(i0, 0u);
    ASSERT_EQ(i1, 1u);
    ASSERT_OK(jr_group_join(st, "db", "m0", &again)); /* idempotent */
    ASSERT_EQ(again, 0u);
    ASSERT_EQ(jr_group_join(st, "other", "m0", NULL), -EBUSY);
    ASSERT_EQ(jr_group_join(st, "db", "nope", NULL), -ENOENT);
    ASSERT_EQ(jr_group_join(st, "bad.id", "m2", NULL), -EINVAL);
    char g[JR_MAX_GROUP_ID + 1];
    uint32_t gi;
    ASSERT_OK(jr_group_of(st, "m1", g, sizeof g, &gi));
    ASSERT_STREQ(g, "db");
    ASSERT_EQ(gi, 1u);
    ASSERT_EQ(jr_group_of(st, "m2", g, sizeof g, &gi), -ENOENT);
    /* Leaving frees the index for the next member. */
    ASSERT_OK(jr_group_leave(st, "db", "m0"));
    ASSERT_EQ(jr_group_of(st, "m0", g, sizeof g, &gi), -ENOENT);
    ASSERT_OK(jr_group_join(st, "db", "m2", &i2));
    ASSERT_EQ(i2, 0u);
    struct seen s = {0};
    ASSERT_OK(jr_group_members(st, "db", seen_cb, &s));
    ASSERT_EQ(s.n, 2);
    int ng = 0;
    ASSERT_OK(jr_group_list(st, glist_cb, &ng));
    ASSERT_EQ(ng, 1);
    ASSERT_EQ(jr_group_delete(st, "db"), -ENOTEMPTY);
    ASSERT_OK(jr_group_leave(st, "db", "m1"));
    ASSERT_OK(jr_group_leave(st, "db", "m2"));
    ASSERT_OK(jr_group_leave(st, "db", "m2")); /* idempotent */
    ASSERT_OK(jr_group_delete(st, "db"));
    /* A volume whose header carries a membership (a replica promoted by
     * a failover) joins under that index. */
    ASSERT_OK(jr_meta_set(st, "m1", "group", "db 5"));
    ASSERT_OK(jr_group_join(st, "db", "m1", &again));
    ASSERT_EQ(again, 5u);
    struct seen s2 = {0};
    ASSERT_OK(jr_group_members(st, "db", seen_cb, &s2));
    ASSERT_EQ(s2.n, 1);
    ASSERT_EQ(s2.idx[0], 5u);
    ASSERT_OK(jr_group_leave(st, "db", "m1"));
    ASSERT_OK(jr_group_delete(st, "db"));
    ng = 0;
    ASSERT_OK(jr_group_list(st, glist_cb, &ng));
    ASSERT_EQ(ng, 0);
    /* A group entry's payload and member field are checked. */
    ASSERT_EQ(jr__group_payload_ok((const uint8_t *)"x db 1", 6), 0);
    ASSERT_EQ(jr__group_payload_ok((const uint8_t *)"c db 1", 6), 1);
    st_close(st);
    fx_cleanup(&f);
}

TEST(group_membership_sqlite) { membership_on("sqlite"); }
TEST(group_membership_rados) { membership_on("rados"); }

/* ---- points, shipping, failover ---- */

#define NM 3
#define REC 4096
static const char *const VOLS[NM] = {"g0", "g1", "g2"};

struct run {
    st_store *sta[NM];  /* one store handle per member: its own writer */
    st_store *coord;    /* the coordinator's */
    jr_volume *v[NM];
    atomic_int stop;
    atomic_int stop_coord;
    uint64_t records;   /* acknowledged */
    uint64_t cuts, complete;
    int64_t pause_max_ns;
    int hold_ms;
};

static void rec_fill(uint8_t *b, uint64_t k)
{
    for (size_t i = 0; i < REC; i += 8) memcpy(b + i, &k, 8);
}

static void *writer_main(void *arg)
{
    struct run *r = arg;
    uint8_t b[REC];
    /* Record k (from 1): member k % NM, block k / NM.  Each is issued
     * only after the previous one was acknowledged. */
    for (uint64_t k = 1; !atomic_load(&r->stop); k++) {
        rec_fill(b, k);
        int rc = jr_write(r->v[k % NM], (k / NM) * REC, b, REC);
        if (rc < 0) {
            fprintf(stderr, "write %" PRIu64 ": %s\n", k, jr_strerror(rc));
            break;
        }
        r->records = k;
    }
    return NULL;
}

static void *coord_main(void *arg)
{
    struct run *r = arg;
    while (!atomic_load(&r->stop_coord)) {
        struct jr_cut_result c;
        int rc = jr_group_cut(r->coord, "grp", r->hold_ms, &c);
        if (rc == 0) {
            r->cuts++;
            r->complete += c.complete;
            if (c.pause_ns > r->pause_max_ns) r->pause_max_ns = c.pause_ns;
        }
        usleep(20000);
    }
    return NULL;
}

/* Ship member i's journal [from, to] to the replica, journal only, the
 * image gated at limit. */
static void ship(st_store *a, st_store *b, const char *vol, uint64_t from,
                 uint64_t to, uint64_t limit)
{
    while (from <= to) {
        struct jr_batch bt;
        ASSERT_OK(jr_tail_read(a, vol, from, 64 << 10, &bt));
        if (!bt.n_entries) {
            jr_batch_free(&bt);
            break;
        }
        /* Cut the batch at `to`: whole entries only. */
        size_t len = 0;
        uint64_t seq = bt.first_seq;
        while (len < bt.len && seq <= to) {
            len += JR_HDR_SIZE + jr__get32(bt.data + len + 40);
            seq++;
        }
        uint64_t head = 0;
        ASSERT_OK(jr_apply_limit(b, vol, bt.data, len, 0, limit, &head));
        ASSERT_EQ(head, seq - 1);
        from = seq;
        jr_batch_free(&bt);
    }
}

/* Which records does the replica side hold?  found[k] = 1. */
static void scan_records(st_store *b, uint64_t nrec, uint8_t *found)
{
    uint8_t blk[REC];
    for (uint64_t k = 1; k <= nrec; k++) {
        ASSERT_OK(jr_image_read(b, VOLS[k % NM], (k / NM) * REC, blk, REC));
        uint64_t got;
        memcpy(&got, blk, 8);
        /* A later record never lands on this block (blocks are unique
         * per record), so it holds k or nothing. */
        found[k] = got == k;
    }
}

/* 1 when the found records are exactly 1..K for some K. */
static int is_prefix(const uint8_t *found, uint64_t nrec, uint64_t *k_out)
{
    uint64_t k = 0;
    while (k < nrec && found[k + 1]) k++;
    for (uint64_t j = k + 1; j <= nrec; j++)
        if (found[j]) {
            *k_out = k;
            return 0;
        }
    *k_out = k;
    return 1;
}

static void points_on(const char *backend)
{
    struct fx fa, fb;
    fx_config(&fa, backend, "a");
    fx_config(&fb, backend, "b");
    if (fb.dir[0]) { /* sqlite: both stores in one folder */
        rmdir(fb.dir);
        snprintf(fb.dir, sizeof fb.dir, "%s", "");
        snprintf(fb.db, sizeof fb.db, "%s/b.db", fa.dir);
        fb.cfg.db_path = fb.db;
    }
    setenv("TANDEM_JR_CP_POLL_MS", "2", 1);
    st_store *a = fx_store(&fa);
    const uint64_t SZ = 64ull << 20;
    for (int i = 0; i < NM; i++) {
        mkvol(a, VOLS[i], SZ, 0);
        ASSERT_OK(jr_group_join(a, "grp", VOLS[i], NULL));
    }
    struct run r;
    memset(&r, 0, sizeof r);
    r.hold_ms = 500;
    r.coord = fx_store(&fa);
    for (int i = 0; i < NM; i++) {
        r.sta[i] = fx_store(&fa);
        ASSERT_OK(jr_open(r.sta[i], VOLS[i], JR_OPEN_WRITE, "t", &r.v[i]));
    }
    pthread_t w, c;
    ASSERT_OK(pthread_create(&c, NULL, coord_main, &r));
    ASSERT_OK(pthread_create(&w, NULL, writer_main, &r));
    /* Live: ship with the image gated at the newest complete cut, as the
     * peer's replicator does. */
    st_store *b = fx_store(&fb);
    for (int i = 0; i < NM; i++) {
        mkvol(b, VOLS[i], SZ, JR_ROLE_SECONDARY);
        char mv[64];
        snprintf(mv, sizeof mv, "grp %d", i);
        ASSERT_OK(jr_meta_set(b, VOLS[i], "group", mv));
    }
    uint64_t shipped[NM] = {0}, gated_cuts = 0;
    int64_t t_end = tb_mono_ms() + 1500;
    uint32_t idx[NM] = {0, 1, 2};
    mkvol(b, "g3", SZ, JR_ROLE_SECONDARY);
    ASSERT_OK(jr_meta_set(b, "g3", "group", "grp 3"));
    const char *v4[4] = {VOLS[0], VOLS[1], VOLS[2], "g3"};
    uint32_t i4[4] = {0, 1, 2, 3};
    int left_seen = 0;
    uint64_t last_cut = 0;
    while (tb_mono_ms() < t_end) {
        uint64_t cut = 0, pos[NM], c4 = 0, p4[4];
        ASSERT_OK(jr_group_find_cut(b, NM, VOLS, idx, &cut, pos, NULL));
        for (int i = 0; i < NM; i++) {
            struct jr_info in;
            ASSERT_OK(jr_volume_stat(a, VOLS[i], &in));
            ship(a, b, VOLS[i], shipped[i] + 1, in.head, pos[i]);
            shipped[i] = in.head;
        }
        ASSERT_OK(jr_group_find_cut(b, 4, v4, i4, &c4, p4, NULL));
        if (c4 > last_cut) { /* a new cut: g3 is not in it */
            ASSERT_EQ(p4[3], JR_GROUP_LEFT);
            left_seen++;
        }
        ASSERT_OK(jr_group_find_cut(b, NM, VOLS, idx, &cut, pos, NULL));
        if (cut > last_cut) {
            last_cut = cut;
            for (int i = 0; i < NM; i++)
                ASSERT_OK(jr_replica_apply_to(b, VOLS[i], pos[i]));
            ASSERT_OK(jr_group_cut_applied(b, NM, VOLS, cut, pos));
            gated_cuts++;
        }
        usleep(30000);
    }
    /* A replica whose volume left the group (the points no longer name
     * it, g3 below) neither blocks the cuts nor is cut. */
    ASSERT(left_seen > 0);
    /* The image never runs ahead of the applied cut. */
    for (int i = 0; i < NM; i++) {
        struct jr_info in;
        ASSERT_OK(jr_volume_stat(b, VOLS[i], &in));
        ASSERT(in.applied <= in.head);
    }
    atomic_store(&r.stop, 1);
    pthread_join(w, NULL);
    atomic_store(&r.stop_coord, 1);
    pthread_join(c, NULL);
    fprintf(stderr, "  %s: records=%" PRIu64 " points=%" PRIu64
            " complete=%" PRIu64 " pause_max=%.1f ms gated_cuts=%" PRIu64 "\n",
            backend, r.records, r.cuts, r.complete, r.pause_max_ns / 1e6,
            gated_cuts);
    ASSERT(r.records > 30);
    ASSERT(r.complete >= 3);
    ASSERT(gated_cuts >= 1);
    uint64_t heads[NM];
    for (int i = 0; i < NM; i++) {
        ASSERT_OK(jr_close(r.v[i]));
        struct jr_info in;
        ASSERT_OK(jr_volume_stat(a, VOLS[i], &in));
        heads[i] = in.head;
    }
    /* Region loss at random points: each member's replica ends at a
     * random position at or past what it had, then the failover cut.
     * And the control, in a second set of replicas: each to its head. */
    uint64_t nrec = r.records;
    uint8_t *found = calloc(nrec + 2, 1);
    ASSERT(found != NULL);
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    fprintf(stderr, "  seed=%u\n", seed);
    int trials = strcmp(backend, "rados") == 0 ? 3 : 6, violations = 0;
    /* Each trial rebuilds the replicas under the members' own ids in a
     * fresh store. */
    st_close(b);
    fx_cleanup(&fb);
    for (int t = 0; t < trials; t++) {
        uint64_t to[NM];
        for (int i = 0; i < NM; i++)
            to[i] = (uint64_t)rand_r(&seed) % (heads[i] + 1);
        for (int mode = 0; mode < 2; mode++) { /* 0 groups, 1 control */
            struct fx ft;
            char nm[16];
            snprintf(nm, sizeof nm, "t%d%d", t, mode);
            fx_config(&ft, backend, nm);
            st_store *s = fx_store(&ft);
            for (int i = 0; i < NM; i++) {
                mkvol(s, VOLS[i], SZ, JR_ROLE_SECONDARY);
                char mv[64];
                snprintf(mv, sizeof mv, "grp %d", i);
                ASSERT_OK(jr_meta_set(s, VOLS[i], "group", mv));
                if (to[i]) ship(a, s, VOLS[i], 1, to[i], 0);
            }
            if (mode == 0) {
                uint64_t cut = 0, pos[NM];
                ASSERT_OK(jr_group_find_cut(s, NM, VOLS, idx, &cut, pos, NULL));
                for (int i = 0; i < NM; i++)
                    ASSERT_OK(jr_replica_cut(s, VOLS[i], pos[i]));
            } else {
                for (int i = 0; i < NM; i++)
                    ASSERT_OK(jr_replica_apply_to(s, VOLS[i], to[i]));
            }
            memset(found, 0, nrec + 2);
            scan_records(s, nrec, found);
            uint64_t k = 0;
            int ok = is_prefix(found, nrec, &k);
            fprintf(stderr, "  trial %d %s: to=%" PRIu64 "/%" PRIu64
                    "/%" PRIu64 " prefix=%s K=%" PRIu64 "\n", t,
                    mode ? "no-groups" : "groups", to[0], to[1], to[2],
                    ok ? "yes" : "NO", k);
            if (mode == 0) ASSERT(ok);
            else violations += !ok;
            st_close(s);
            fx_cleanup(&ft);
        }
    }
    /* The control must be able to fail: most random prefixes break it. */
    ASSERT(violations >= 1);
    free(found);
    st_close(r.coord);
    for (int i = 0; i < NM; i++) st_close(r.sta[i]);
    st_close(a);
    fx_cleanup(&fa);
}

TEST(group_points_failover_sqlite) { points_on("sqlite"); }
TEST(group_points_failover_rados) { points_on("rados"); }

/* ---- a member that never marks: abandoned within the bound ---- */

static void stalled_on(const char *backend)
{
    struct fx f;
    fx_config(&f, backend, "s");
    st_store *st = fx_store(&f);
    for (int i = 0; i < 2; i++) {
        mkvol(st, VOLS[i], 1 << 20, 0);
        ASSERT_OK(jr_group_join(st, "grp", VOLS[i], NULL));
    }
    st_store *s0 = fx_store(&f), *s1 = fx_store(&f);
    jr_volume *v0, *v1;
    setenv("TANDEM_JR_CP_POLL_MS", "2", 1);
    ASSERT_OK(jr_open(s0, VOLS[0], JR_OPEN_WRITE, "t0", &v0));
    /* The second member's server polls once a minute: alive (its lease
     * is renewed) but it never marks in time, like a stalled writer. */
    setenv("TANDEM_JR_CP_POLL_MS", "60000", 1);
    ASSERT_OK(jr_open(s1, VOLS[1], JR_OPEN_WRITE, "t1", &v1));
    struct jr_cut_result c;
    int64_t t0 = tb_mono_ms();
    ASSERT_OK(jr_group_cut(st, "grp", 200, &c));
    int64_t took = tb_mono_ms() - t0;
    ASSERT_EQ(c.complete, 0);
    ASSERT_EQ(c.participants, 2u);
    ASSERT(took < 1000);
    /* The member that marked was released (no commit): it writes. */
    uint8_t b[512] = {1};
    t0 = tb_mono_ms();
    ASSERT_OK(jr_write(v0, 0, b, sizeof b));
    ASSERT(tb_mono_ms() - t0 < 500);
    /* With the stalled member closed, the next point counts it idle and
     * completes at once. */
    ASSERT_OK(jr_close(v1));
    ASSERT_OK(jr_group_cut(st, "grp", 200, &c));
    ASSERT_EQ(c.complete, 1);
    ASSERT_EQ(c.participants, 1u);
    ASSERT_EQ(c.idle, 1u);
    ASSERT_OK(jr_close(v0));
    st_close(s0);
    st_close(s1);
    st_close(st);
    fx_cleanup(&f);
}

TEST(group_stalled_member_sqlite) { stalled_on("sqlite"); }

/* ---- a writer staged during a point that counted it idle (R-72) ---- */

static void opener_on(const char *backend)
{
    struct fx f;
    fx_config(&f, backend, "o");
    st_store *st = fx_store(&f);
    mkvol(st, "o0", 1 << 20, 0);
    mkvol(st, "o1", 1 << 20, 0);
    uint32_t i0, i1;
    ASSERT_OK(jr_group_join(st, "og", "o0", &i0));
    ASSERT_OK(jr_group_join(st, "og", "o1", &i1));
    /* A point in its hold that counts o0 only (o1 idle), whose
     * coordinator died: o1's writer waits, then abandons it. */
    const char *cp = "7 hold 0000000000000001 1:0";
    ASSERT_OK(st_omap_set(st, "cg/og", "cp", cp, strlen(cp)));
    jr_volume *v;
    int64_t t0 = tb_mono_ms();
    ASSERT_OK(jr_open(st, "o1", JR_OPEN_WRITE, "t", &v));
    int64_t waited = tb_mono_ms() - t0;
    ASSERT(waited >= 900);
    char *val = NULL;
    ASSERT_OK(st_omap_get(st, "cg/og", "cp", &val, NULL));
    ASSERT(strncmp(val, "7 abandon ", 10) == 0);
    free(val);
    ASSERT_OK(jr_close(v));
    /* A point that counts it: no wait (its server takes part). */
    cp = "8 hold 0000000000000002 0:0";
    ASSERT_OK(st_omap_set(st, "cg/og", "cp", cp, strlen(cp)));
    t0 = tb_mono_ms();
    ASSERT_OK(jr_open(st, "o1", JR_OPEN_WRITE, "t", &v));
    ASSERT(tb_mono_ms() - t0 < 900);
    ASSERT_OK(jr_close(v));
    st_close(st);
    fx_cleanup(&f);
}

TEST(group_opener_waits_sqlite) { opener_on("sqlite"); }
TEST(group_opener_waits_rados) { opener_on("rados"); }
TEST(group_stalled_member_rados) { stalled_on("rados"); }

TT_MAIN()
