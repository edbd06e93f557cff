/*
 * test-snap.c: snapshots of the journal engine (jr.h "snapshots",
 * FORMAT.md §5) on a real store (sqlite always; rados when a test Ceph is
 * configured): create/list/get/read/delete, ids, holds, deletes of a
 * middle snapshot, sparse volumes and resizes; crash consistency under a
 * live writer (another store handle takes snapshots through requests);
 * replay after a crash between a copy-up and the live write, and after a
 * writer killed with snapshots pending; replication through jr_tail_read
 * and jr_apply; and the cost property (taking one touches no data
 * object).
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>

#include "jr_int.h"
#include "store_int.h"
#include "tbase.h"
#include "tt.h"

__attribute__((constructor)) static void quiet_logs(void)
{
    tlog_init("test-snap", TLOG_WARN);
}

/* ---- fixture (as test-journal.c) ---- */

struct fx {
    st_store *st;
    struct st_config cfg;
    char dir[256];
    char db[300];
    char ns[64];
};

static void fx_config(struct fx *f, const char *backend)
{
    memset(f, 0, sizeof *f);
    if (strcmp(backend, "sqlite") == 0) {
        const char *tmp = getenv("TANDEM_TEST_TMP");
        snprintf(f->dir, sizeof f->dir, "%s/tsnap.XXXXXX", tmp ? tmp : "/tmp");
        ASSERT(mkdtemp(f->dir) != NULL);
        snprintf(f->db, sizeof f->db, "%s/a.db", f->dir);
        f->cfg.backend = "sqlite";
        f->cfg.db_path = f->db;
    } else {
        const char *skip = getenv("TANDEM_CEPH_SKIP");
        if (skip && *skip) TT_SKIP("%s", skip);
        if (!getenv("TANDEM_CEPH_CONF")) TT_SKIP("TANDEM_CEPH_CONF not set");
        f->cfg.backend = "rados";
        f->cfg.ceph_conf = getenv("TANDEM_CEPH_CONF");
        f->cfg.keyring = getenv("TANDEM_CEPH_KEYRING");
        f->cfg.client_id = getenv("TANDEM_CEPH_CLIENT");
        f->cfg.pool = getenv("TANDEM_CEPH_POOL_A");
        if (!f->cfg.pool) f->cfg.pool = "tandem-a";
        /* A namespace per test run keeps tests apart in one pool. */
        snprintf(f->ns, sizeof f->ns, "tsnap-%d-%ld", (int)getpid(),
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

static void fx_open(struct fx *f, const char *backend)
{
    fx_config(f, backend);
    f->st = fx_store(f);
}

static int rm_cb(const char *oid, void *arg)
{
    st_remove(arg, oid);
    return 0;
}

static void fx_close(struct fx *f)
{
    if (f->st && strcmp(f->cfg.backend, "rados") == 0)
        st_list(f->st, "", rm_cb, f->st);
    st_close(f->st);
    f->st = NULL;
    if (f->dir[0]) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
        if (system(cmd) != 0) fprintf(stderr, "cleanup of %s failed\n", f->dir);
    }
}

static void mkvol(st_store *st, const char *id, uint64_t size, uint32_t objsz,
                  int role)
{
    struct jr_create_opts o = {.size = size, .object_size = objsz,
                               .role = role, .region = "a"};
    ASSERT_EQ(jr_volume_create(st, id, &o), 0);
}

static void fill(uint8_t *b, size_t n, uint64_t seed)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b[i] = (uint8_t)x;
    }
}

static void wr(st_store *st, const char *vol, uint64_t off, const void *b,
               size_t n)
{
    jr_volume *v;
    ASSERT_OK(jr_open(st, vol, JR_OPEN_WRITE, "t", &v));
    ASSERT_OK(jr_write(v, off, b, n));
    ASSERT_OK(jr_close(v));
}

static void expect_snap(st_store *st, const char *vol, const char *snap,
                        uint64_t off, const uint8_t *want, size_t n)
{
    uint8_t *got = malloc(n);
    ASSERT(got != NULL);
    ASSERT_OK(jr_snap_read(st, vol, snap, off, got, n));
    for (size_t i = 0; i < n; i++)
        if (got[i] != want[i]) {
            fprintf(stderr, "snap %s differs at %" PRIu64 ": %02x != %02x\n",
                    snap, off + i, got[i], want[i]);
            ASSERT(0);
        }
    free(got);
}

struct names {
    char id[16][JR_MAX_SNAP_ID + 1];
    uint64_t seq[16];
    int n;
};

static int list_cb(const struct jr_snap *s, void *arg)
{
    struct names *l = arg;
    if (l->n < 16) {
        snprintf(l->id[l->n], sizeof l->id[0], "%s", s->snap_id);
        l->seq[l->n] = s->seq;
    }
    l->n++;
    return 0;
}

static int hold_cb(const char *holder, void *arg)
{
    (*(int *)arg)++;
    return 0;
}

/* ---- the API (FORMAT.md R-60..R-62, R-67) ---- */

static void basics_on(const char *backend)
{
    struct fx f;
    fx_open(&f, backend);
    const uint32_t OS = 64 << 10;
    const size_t SZ = 1 << 20;
    mkvol(f.st, "v", SZ, OS, 0);
    uint8_t *a = malloc(SZ), *b = malloc(SZ), *c = malloc(SZ), *z = calloc(1, SZ);
    ASSERT(a && b && c && z);
    fill(a, SZ, 1);
    /* Sparse: only the first half written before s1. */
    wr(f.st, "v", 0, a, SZ / 2);
    memcpy(b, a, SZ);
    memset(b + SZ / 2, 0, SZ / 2);
    struct jr_snap s1, s1b, s2, g;
    ASSERT_OK(jr_snap_create(f.st, "v", "s1", "ns/snap-one", 1000, &s1));
    ASSERT_STREQ(s1.snap_id, "s1");
    ASSERT_STREQ(s1.label, "ns/snap-one");
    ASSERT_EQ(s1.size, SZ);
    ASSERT(s1.seq >= 1);
    ASSERT(s1.ts_ns > 0);
    /* Idempotent: the same record, label unchanged. */
    ASSERT_OK(jr_snap_create(f.st, "v", "s1", "other", 1000, &s1b));
    ASSERT_EQ(s1b.seq, s1.seq);
    ASSERT_STREQ(s1b.label, "ns/snap-one");
    ASSERT_OK(jr_snap_get(f.st, "v", "s1", &g));
    ASSERT_EQ(g.seq, s1.seq);
    /* Writes after it: the whole image (holes too). */
    jr_volume *v;
    ASSERT_OK(jr_open(f.st, "v", JR_OPEN_WRITE, "t", &v));
    fill(c, SZ, 2);
    ASSERT_OK(jr_write(v, 0, c, SZ));
    ASSERT_OK(jr_snapshot(v, "s2", NULL, &s2));
    ASSERT(s2.seq > s1.seq);
    ASSERT_STREQ(s2.label, "");
    ASSERT_OK(jr_discard(v, 0, SZ / 4));
    ASSERT_OK(jr_write(v, SZ / 2, a, SZ / 4));
    /* jr_snapshot idempotent on the open volume too. */
    struct jr_snap s2b;
    ASSERT_OK(jr_snapshot(v, "s2", "x", &s2b));
    ASSERT_EQ(s2b.seq, s2.seq);
    ASSERT_EQ(jr_snapshot(v, "bad.id", NULL, NULL), -EINVAL);
    ASSERT_OK(jr_close(v));
    expect_snap(f.st, "v", "s1", 0, b, SZ);
    expect_snap(f.st, "v", "s2", 0, c, SZ);
    expect_snap(f.st, "v", "s2", 12345, c + 12345, 70000);
    /* list in seq order */
    struct names l = {0};
    ASSERT_OK(jr_snap_list(f.st, "v", list_cb, &l));
    ASSERT_EQ(l.n, 2);
    ASSERT_STREQ(l.id[0], "s1");
    ASSERT_STREQ(l.id[1], "s2");
    /* bad ids, labels, ranges; absent things */
    char long_id[JR_MAX_SNAP_ID + 2];
    memset(long_id, 'a', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = 0;
    ASSERT_EQ(jr_snap_create(f.st, "v", "a.b", NULL, 0, NULL), -EINVAL);
    ASSERT_EQ(jr_snap_create(f.st, "v", "", NULL, 0, NULL), -EINVAL);
    ASSERT_EQ(jr_snap_create(f.st, "v", long_id, NULL, 0, NULL), -EINVAL);
    ASSERT_EQ(jr_snap_create(f.st, "v", "ok", "line\nbreak", 0, NULL), -EINVAL);
    ASSERT_EQ(jr_snap_create(f.st, "nope", "s", NULL, 0, NULL), -ENOENT);
    ASSERT_EQ(jr_snap_get(f.st, "v", "s9", &g), -ENOENT);
    ASSERT_EQ(jr_snap_get(f.st, "nope", "s1", &g), -ENOENT);
    ASSERT_EQ(jr_snap_list(f.st, "nope", list_cb, &l), -ENOENT);
    ASSERT_EQ(jr_snap_read(f.st, "v", "s9", 0, c, 10), -ENOENT);
    ASSERT_EQ(jr_snap_read(f.st, "v", "s1", SZ - 4, c, 10), -EINVAL);
    ASSERT_EQ(jr_snap_hold(f.st, "v", "s9", "h"), -ENOENT);
    /* holds */
    ASSERT_OK(jr_snap_hold(f.st, "v", "s1", "clone-1"));
    ASSERT_OK(jr_snap_hold(f.st, "v", "s1", "clone-1"));
    ASSERT_OK(jr_snap_hold(f.st, "v", "s1", "clone.2"));
    int nh = 0;
    ASSERT_OK(jr_snap_holds(f.st, "v", "s1", hold_cb, &nh));
    ASSERT_EQ(nh, 2);
    ASSERT_EQ(jr_snap_delete(f.st, "v", "s1", 1000), -EBUSY);
    ASSERT_OK(jr_snap_release(f.st, "v", "s1", "clone-1"));
    ASSERT_OK(jr_snap_release(f.st, "v", "s1", "clone-1"));
    ASSERT_EQ(jr_snap_delete(f.st, "v", "s1", 1000), -EBUSY);
    ASSERT_OK(jr_snap_release(f.st, "v", "s1", "clone.2"));
    ASSERT_OK(jr_snap_delete(f.st, "v", "s1", 1000));
    ASSERT_OK(jr_snap_delete(f.st, "v", "s1", 1000)); /* again: 0 */
    ASSERT_EQ(jr_snap_get(f.st, "v", "s1", &g), -ENOENT);
    expect_snap(f.st, "v", "s2", 0, c, SZ);
    /* the oldest one's copies are gone with it */
    int left = 0;
    ASSERT_OK(st_list(f.st, "vol/v/s/s1/", (st_list_cb)hold_cb, &left));
    ASSERT_EQ(left, 0);
    /* a secondary refuses */
    mkvol(f.st, "sec", SZ, OS, JR_ROLE_SECONDARY);
    ASSERT_EQ(jr_snap_create(f.st, "sec", "s", NULL, 0, NULL), JR_EROLE);
    ASSERT_EQ(jr_snap_delete(f.st, "sec", "s", 0), JR_EROLE);
    /* the volume's deletion takes the copies along */
    ASSERT_OK(jr_volume_delete(f.st, "v"));
    left = 0;
    ASSERT_OK(st_list(f.st, "vol/v/", (st_list_cb)hold_cb, &left));
    ASSERT_EQ(left, 0);
    free(a);
    free(b);
    free(c);
    free(z);
    fx_close(&f);
}

TEST(snap_basics_sqlite) { basics_on("sqlite"); }

/* A hold that slipped in after a delete's check goes with the snapshot
 * a later snapshot of the same id is not held by it. */
TEST(snap_hold_dropped_with_snapshot)
{
    struct fx f;
    fx_open(&f, "sqlite");
    mkvol(f.st, "h", 1 << 20, 64 << 10, 0);
    jr_volume *v;
    ASSERT_OK(jr_open(f.st, "h", JR_OPEN_WRITE, "t", &v));
    ASSERT_OK(jr_snapshot(v, "s", NULL, NULL));
    ASSERT_OK(jr_snap_hold(f.st, "h", "s", "late"));
    ASSERT_OK(jr__vol_snap_delete(v, "s")); /* the writer's side: no check */
    ASSERT_EQ(jr_snap_get(f.st, "h", "s", NULL), -ENOENT);
    int nh = 0;
    ASSERT_OK(jr_snap_holds(f.st, "h", "s", hold_cb, &nh));
    ASSERT_EQ(nh, 0);
    ASSERT_OK(jr_snapshot(v, "s", NULL, NULL));
    ASSERT_OK(jr_close(v));
    ASSERT_OK(jr_snap_delete(f.st, "h", "s", 1000));
    fx_close(&f);
}
TEST(snap_basics_rados) { basics_on("rados"); }

/* Three snapshots with writes between them; deleting the middle one
 * keeps the others byte-exact; then shrink and grow (R-63: a
 * shrink's removals and truncations are changes too). */
static void middle_and_resize_on(const char *backend)
{
    struct fx f;
    fx_open(&f, backend);
    const uint32_t OS = 64 << 10;
    const size_t SZ = 1 << 20;
    mkvol(f.st, "m", SZ, OS, 0);
    uint8_t *img[4];
    for (int i = 0; i < 4; i++) ASSERT((img[i] = calloc(1, SZ)) != NULL);
    uint8_t blk[40000];
    jr_volume *v;
    ASSERT_OK(jr_open(f.st, "m", JR_OPEN_WRITE, "t", &v));
    const char *ids[3] = {"a", "b", "c"};
    for (int s = 0; s < 3; s++) {
        /* writes, some straddling objects, then a snapshot */
        for (int k = 0; k < 8; k++) {
            uint64_t off = (uint64_t)((s * 131 + k * 977) % 24) * 40000;
            fill(blk, sizeof blk, (uint64_t)(s * 100 + k));
            ASSERT_OK(jr_write(v, off, blk, sizeof blk));
            memcpy(img[3] + off, blk, sizeof blk);
        }
        ASSERT_OK(jr_snapshot(v, ids[s], NULL, NULL));
        memcpy(img[s], img[3], SZ);
    }
    fill(blk, sizeof blk, 999);
    ASSERT_OK(jr_write(v, 3 * 40000, blk, sizeof blk));
    memcpy(img[3] + 3 * 40000, blk, sizeof blk);
    ASSERT_OK(jr_close(v));
    for (int s = 0; s < 3; s++) expect_snap(f.st, "m", ids[s], 0, img[s], SZ);
    ASSERT_OK(jr_snap_delete(f.st, "m", "b", 1000));
    expect_snap(f.st, "m", "a", 0, img[0], SZ);
    expect_snap(f.st, "m", "c", 0, img[2], SZ);
    /* shrink to a third (inside an object), grow back */
    ASSERT_OK(jr_open(f.st, "m", JR_OPEN_WRITE, "t", &v));
    ASSERT_OK(jr_resize(v, SZ / 3));
    struct jr_snap sm;
    ASSERT_OK(jr_snapshot(v, "small", NULL, &sm));
    ASSERT_EQ(sm.size, SZ / 3);
    ASSERT_OK(jr_resize(v, SZ));
    uint8_t *back = malloc(SZ);
    ASSERT(back != NULL);
    ASSERT_OK(jr_read(v, 0, back, SZ));
    ASSERT_OK(jr_close(v));
    memset(img[3] + SZ / 3, 0, SZ - SZ / 3);
    ASSERT(memcmp(back, img[3], SZ) == 0);
    expect_snap(f.st, "m", "small", 0, img[3], SZ / 3);
    expect_snap(f.st, "m", "a", 0, img[0], SZ);
    expect_snap(f.st, "m", "c", 0, img[2], SZ);
    ASSERT_EQ(jr_snap_read(f.st, "m", "small", SZ / 3, back, 1), -EINVAL);
    struct names l = {0};
    ASSERT_OK(jr_snap_list(f.st, "m", list_cb, &l));
    ASSERT_EQ(l.n, 3);
    ASSERT_STREQ(l.id[0], "a");
    ASSERT_STREQ(l.id[1], "c");
    ASSERT_STREQ(l.id[2], "small");
    /* delete the newest and the oldest: c still exact */
    ASSERT_OK(jr_snap_delete(f.st, "m", "small", 1000));
    ASSERT_OK(jr_snap_delete(f.st, "m", "a", 1000));
    expect_snap(f.st, "m", "c", 0, img[2], SZ);
    free(back);
    for (int i = 0; i < 4; i++) free(img[i]);
    fx_close(&f);
}

TEST(snap_middle_delete_resize_sqlite) { middle_and_resize_on("sqlite"); }
TEST(snap_middle_delete_resize_rados) { middle_and_resize_on("rados"); }

/* ---- a store wrapper: counts data-object operations, fails some ---- */

struct wst {
    st_store base;
    st_store *in;
    atomic_int data_ops; /* operations on vol/<id>/d/ and vol/<id>/s/ */
    atomic_int fail;     /* 1: live data object updates fail (EIO);
                            2: recording "applied" fails */
};
#define WS(st) ST_CONTAINER(st, struct wst, base)
static int is_data(const char *oid)
{
    return strstr(oid, "/d/") != NULL || strstr(oid, "/s/") != NULL;
}
static int ws_open(const struct st_config *c, st_store **o) { return -ENOTSUP; }
static void ws_close(st_store *st) { st_close(WS(st)->in); free(WS(st)); }
static int ws_ping(st_store *st) { return st_ping(WS(st)->in); }
static int ws_check(st_store *st, const char *oid, const struct st_wop *op)
{
    struct wst *w = WS(st);
    if (is_data(oid)) atomic_fetch_add(&w->data_ops, 1);
    int f = atomic_load(&w->fail);
    if (f == 1 && strstr(oid, "/d/")) return -EIO;
    for (size_t i = 0; f == 2 && i < op->n; i++)
        if (op->items[i].kind == ST_WOP_OMAP_SET &&
            strcmp(op->items[i].key, "applied") == 0)
            return -EIO;
    return 0;
}
static int ws_operate(st_store *st, const char *oid, const struct st_wop *op)
{
    int r = ws_check(st, oid, op);
    return r ? r : WS(st)->in->ops->operate(WS(st)->in, oid, op);
}
static int ws_aio(st_store *st, const char *oid, st_wop *op, st_aio_cb cb,
                  void *arg)
{
    int r = ws_check(st, oid, op);
    if (r) {
        st_wop_destroy(op);
        cb(r, arg);
        return 0;
    }
    return WS(st)->in->ops->aio_operate(WS(st)->in, oid, op, cb, arg);
}
static void ws_aio_wait(st_store *st) { st_aio_wait(WS(st)->in); }
static ssize_t ws_read(st_store *st, const char *oid, uint64_t off, void *b,
                       size_t len)
{
    if (is_data(oid)) atomic_fetch_add(&WS(st)->data_ops, 1);
    return st_read(WS(st)->in, oid, off, b, len);
}
static int ws_stat(st_store *st, const char *oid, uint64_t *sz, int64_t *mt)
{
    if (is_data(oid)) atomic_fetch_add(&WS(st)->data_ops, 1);
    return st_stat(WS(st)->in, oid, sz, mt);
}
static int ws_list(st_store *st, const char *pfx, st_list_cb cb, void *arg)
{
    return st_list(WS(st)->in, pfx, cb, arg);
}
static int ws_omap_get(st_store *st, const char *oid, const char *key,
                       char **val, size_t *len)
{
    return st_omap_get(WS(st)->in, oid, key, val, len);
}
static int ws_omap_iter(st_store *st, const char *oid, const char *pfx,
                        const char *after, unsigned max, st_omap_cb cb,
                        void *arg)
{
    return st_omap_iter(WS(st)->in, oid, pfx, after, max, cb, arg);
}
static int ws_fence_id(st_store *st, char *buf, size_t n)
{
    return st_fence_id(WS(st)->in, buf, n);
}
static int ws_fence(st_store *st, const char *id, uint32_t expire_s)
{
    return st_fence(WS(st)->in, id, expire_s);
}
static const struct st_ops ws_ops = {
    "wrap", ws_open, ws_close, ws_ping, ws_operate, ws_aio, ws_aio_wait,
    ws_read, ws_stat, ws_list, ws_omap_get, ws_omap_iter, ws_fence_id,
    ws_fence};

static st_store *wrap(struct fx *f, struct wst **out)
{
    struct wst *w = calloc(1, sizeof *w);
    ASSERT(w != NULL);
    w->base.ops = &ws_ops;
    w->in = fx_store(f);
    *out = w;
    return &w->base;
}

/* ---- the cost of taking one (R-61: no data; R-63: the cache) ---- */

static int taking_costs_no_data_op(st_store *st, struct wst *w,
                                   const char *vol, const char *snap)
{
    atomic_store(&w->data_ops, 0);
    ASSERT_OK(jr_snap_create(st, vol, snap, NULL, 1000, NULL));
    return atomic_load(&w->data_ops);
}

static void cost_on(const char *backend)
{
    struct fx f;
    fx_open(&f, backend);
    struct wst *w;
    st_store *st = wrap(&f, &w);
    const uint32_t OS = 64 << 10;
    mkvol(f.st, "small", 8 << 20, OS, 0);
    mkvol(f.st, "big", 8 << 20, OS, 0);
    uint8_t *b = malloc(8 << 20);
    ASSERT(b != NULL);
    fill(b, 8 << 20, 5);
    wr(f.st, "small", 0, b, 1 << 20);
    wr(f.st, "big", 0, b, 8 << 20); /* 8x the data, 128 objects */
    /* Through jr_snap_create (open for the call: replay, entry, close). */
    ASSERT_EQ(taking_costs_no_data_op(st, w, "small", "a"), 0);
    ASSERT_EQ(taking_costs_no_data_op(st, w, "big", "a"), 0);
    ASSERT_EQ(taking_costs_no_data_op(st, w, "big", "b"), 0);
    /* On an open volume: no write since, nothing copied. */
    jr_volume *v;
    ASSERT_OK(jr_open(st, "big", JR_OPEN_WRITE, "t", &v));
    atomic_store(&w->data_ops, 0);
    ASSERT_OK(jr_snapshot(v, "c", NULL, NULL));
    ASSERT_EQ(atomic_load(&w->data_ops), 0);
    /* The first write after it copies one object up; writes to the same
     * object after that cost nothing more than the write itself. */
    ASSERT_OK(jr_write(v, 0, b + 4096, 4096));
    ASSERT_OK(jr_close(v));
    fill(b + 8192, 4096, 77);
    ASSERT_OK(jr_open(st, "big", JR_OPEN_WRITE, "t", &v));
    atomic_store(&w->data_ops, 0);
    for (int i = 0; i < 4; i++) {
        ASSERT_OK(jr_write(v, 8192, b + 8192, 4096));
        ASSERT_OK(jr_flush(v));
    }
    ASSERT_OK(jr_close(v));
    /* at most: one stat of the copy (cached from then on) and one image
     * write per applier batch */
    ASSERT_LE(atomic_load(&w->data_ops), 1 + 4);
    st_close(st);
    free(b);
    fx_close(&f);
}

TEST(snap_cost_sqlite) { cost_on("sqlite"); }
TEST(snap_cost_rados) { cost_on("rados"); }

/* ---- crash consistency under a live writer (R-61, R-64, R-66) ---- */

#define LW_BLOCKS 3000
#define LW_SNAPS 8

struct lw {
    jr_volume *v;
    int64_t issue[LW_BLOCKS], ack[LW_BLOCKS];
    atomic_int acked; /* blocks acknowledged so far */
    atomic_int stop;
    int err;
};

static void block_fill(uint8_t *b, uint32_t i)
{
    for (size_t k = 0; k < 4096; k += 4) memcpy(b + k, &(uint32_t){i + 1}, 4);
}

static void *lw_writer(void *arg)
{
    struct lw *w = arg;
    uint8_t b[4096];
    for (int i = 0; i < LW_BLOCKS && !atomic_load(&w->stop); i++) {
        block_fill(b, (uint32_t)i);
        w->issue[i] = tb_mono_ns();
        int r = jr_write(w->v, (uint64_t)i * 4096, b, sizeof b);
        if (r) {
            w->err = r;
            break;
        }
        w->ack[i] = tb_mono_ns();
        atomic_store(&w->acked, i + 1);
    }
    return NULL;
}

/* A snapshot holds exactly blocks [0, m): acknowledged before t0 are in,
 * issued after t1 are not. */
static void check_prefix(st_store *st, const char *vol, const char *snap,
                         struct lw *w, int64_t t0, int64_t t1)
{
    uint8_t *img = malloc((size_t)LW_BLOCKS * 4096), want[4096], zero[4096];
    ASSERT(img != NULL);
    memset(zero, 0, sizeof zero);
    ASSERT_OK(jr_snap_read(st, vol, snap, 0, img, (size_t)LW_BLOCKS * 4096));
    int m = 0;
    while (m < LW_BLOCKS) {
        block_fill(want, (uint32_t)m);
        if (memcmp(img + (size_t)m * 4096, want, 4096) != 0) break;
        m++;
    }
    for (int j = m; j < LW_BLOCKS; j++)
        if (memcmp(img + (size_t)j * 4096, zero, 4096) != 0) {
            fprintf(stderr, "%s: block %d after the prefix (%d) not empty\n",
                    snap, j, m);
            ASSERT(0);
        }
    int acked = atomic_load(&w->acked);
    for (int j = 0; j < acked; j++) {
        if (w->ack[j] < t0) ASSERT_LT(j, m);
        if (w->issue[j] > t1) ASSERT_GE(j, m);
    }
    free(img);
}

static void live_writer_on(const char *backend)
{
    struct fx f;
    fx_open(&f, backend);
    setenv("TANDEM_JR_SNAPREQ_POLL_MS", "20", 1);
    mkvol(f.st, "lw", (uint64_t)LW_BLOCKS * 4096, 64 << 10, 0);
    struct lw *w = calloc(1, sizeof *w);
    ASSERT(w != NULL);
    ASSERT_OK(jr_open(f.st, "lw", JR_OPEN_WRITE, "writer", &w->v));
    st_store *other = fx_store(&f); /* as another process would */
    pthread_t th;
    ASSERT_OK(pthread_create(&th, NULL, lw_writer, w));
    int64_t t0[LW_SNAPS], t1[LW_SNAPS];
    char ids[LW_SNAPS][16];
    for (int s = 0; s < LW_SNAPS; s++) {
        /* Let the writer move on by some blocks (an event, polled). */
        int at = atomic_load(&w->acked);
        while (atomic_load(&w->acked) < at + 25 && !w->err &&
               atomic_load(&w->acked) < LW_BLOCKS)
            usleep(1000);
        snprintf(ids[s], sizeof ids[s], "lw%d", s);
        t0[s] = tb_mono_ns();
        if (s % 2 == 0) /* through the request to the live writer */
            ASSERT_OK(jr_snap_create(other, "lw", ids[s], NULL, 20000, NULL));
        else /* on the open volume, from another thread */
            ASSERT_OK(jr_snapshot(w->v, ids[s], NULL, NULL));
        t1[s] = tb_mono_ns();
    }
    atomic_store(&w->stop, 1);
    pthread_join(th, NULL);
    ASSERT_EQ(w->err, 0);
    ASSERT_OK(jr_close(w->v));
    for (int s = 0; s < LW_SNAPS; s++)
        check_prefix(f.st, "lw", ids[s], w, t0[s], t1[s]);
    /* and a request while the writer is open but idle is served too */
    ASSERT_OK(jr_open(f.st, "lw", JR_OPEN_WRITE, "writer", &w->v));
    ASSERT_OK(jr_snap_delete(other, "lw", "lw3", 20000));
    ASSERT_EQ(jr_snap_get(f.st, "lw", "lw3", NULL), -ENOENT);
    ASSERT_OK(jr_close(w->v));
    for (int s = 0; s < LW_SNAPS; s++)
        if (s != 3) check_prefix(f.st, "lw", ids[s], w, t0[s], t1[s]);
    /* the requests are gone */
    char *val = NULL;
    size_t len;
    ASSERT_EQ(st_omap_get(f.st, "vol/lw", "snapreq.lw0", &val, &len), -ENOENT);
    ASSERT_EQ(st_omap_get(f.st, "vol/lw", "snapreq.lw3", &val, &len), -ENOENT);
    st_close(other);
    free(w);
    fx_close(&f);
}

TEST(snap_live_writer_sqlite) { live_writer_on("sqlite"); }
TEST(snap_live_writer_rados) { live_writer_on("rados"); }

/* ---- reads racing with copy-ups and deletes (R-64) ---- */

#define RR_SZ (1u << 20)
struct rr {
    pthread_mutex_t mu;
    char p[16], d[16];  /* the snapshots being read ("" : none yet) */
    uint8_t *want;      /* their image */
    atomic_int stop;
    atomic_int reads;
    int bad;            /* a read that returned wrong bytes */
    st_store *st;
};

static void *rr_reader(void *arg)
{
    struct rr *x = arg;
    uint8_t *got = malloc(RR_SZ), *want = malloc(RR_SZ);
    char p[16], d[16];
    while (got && want && !atomic_load(&x->stop)) {
        pthread_mutex_lock(&x->mu);
        snprintf(p, sizeof p, "%s", x->p);
        snprintf(d, sizeof d, "%s", x->d);
        memcpy(want, x->want, RR_SZ);
        pthread_mutex_unlock(&x->mu);
        if (!p[0]) continue;
        const char *ids[2] = {p, d};
        for (int i = 0; i < 2; i++) {
            int r = jr_snap_read(x->st, "rr", ids[i], 0, got, RR_SZ);
            if (r == -ENOENT && i == 1) continue; /* d deleted meanwhile */
            if (r != 0 || memcmp(got, want, RR_SZ) != 0) {
                fprintf(stderr, "read of %s: r=%d, bytes %s\n", ids[i], r,
                        r ? "-" : "differ");
                x->bad = 1;
            }
            atomic_fetch_add(&x->reads, 1);
        }
    }
    free(got);
    free(want);
    return NULL;
}

/* Round i: snapshots p_i and d_i back to back (the same image), writes
 * over every object (the applier copies them up for d_i), then d_i is
 * deleted (every copy moves down to p_i, which has none).  A reader
 * thread reads both the whole time: never a byte that is not the
 * snapshot's. */
static void read_races_on(const char *backend)
{
    struct fx f;
    fx_open(&f, backend);
    mkvol(f.st, "rr", RR_SZ, 64 << 10, 0);
    struct rr *x = calloc(1, sizeof *x);
    uint8_t *img = malloc(RR_SZ), blk[4096];
    ASSERT(x && img);
    x->want = calloc(1, RR_SZ);
    ASSERT(x->want != NULL);
    pthread_mutex_init(&x->mu, NULL);
    fill(img, RR_SZ, 1);
    wr(f.st, "rr", 0, img, RR_SZ);
    x->st = fx_store(&f);
    jr_volume *v;
    ASSERT_OK(jr_open(f.st, "rr", JR_OPEN_WRITE, "t", &v));
    pthread_t th;
    ASSERT_OK(pthread_create(&th, NULL, rr_reader, x));
    for (int i = 0; i < 5; i++) {
        char p[16], d[16];
        snprintf(p, sizeof p, "p%d", i);
        snprintf(d, sizeof d, "d%d", i);
        ASSERT_OK(jr_snapshot(v, p, NULL, NULL));
        ASSERT_OK(jr_snapshot(v, d, NULL, NULL));
        pthread_mutex_lock(&x->mu);
        snprintf(x->p, sizeof x->p, "%s", p);
        snprintf(x->d, sizeof x->d, "%s", d);
        memcpy(x->want, img, RR_SZ);
        pthread_mutex_unlock(&x->mu);
        int r0 = atomic_load(&x->reads);
        for (int k = 0; k < 48; k++) {
            uint64_t off = ((uint64_t)(k % 16) * (64 << 10)) +
                           (uint64_t)((k * 7 + i) % 16) * 4096;
            fill(blk, sizeof blk, (uint64_t)(i * 100 + k + 7));
            ASSERT_OK(jr_write(v, off, blk, sizeof blk));
            memcpy(img + off, blk, sizeof blk);
            if (k % 16 == 15) ASSERT_OK(jr_flush(v));
        }
        /* let some reads overlap the copy-ups (an event, polled) */
        while (atomic_load(&x->reads) < r0 + 4) usleep(1000);
        ASSERT_OK(jr__vol_snap_delete(v, d));
        r0 = atomic_load(&x->reads);
        while (atomic_load(&x->reads) < r0 + 2) usleep(1000);
    }
    atomic_store(&x->stop, 1);
    pthread_join(th, NULL);
    ASSERT_OK(jr_close(v));
    ASSERT_EQ(x->bad, 0);
    ASSERT_GT(atomic_load(&x->reads), 10);
    st_close(x->st);
    free(x->want);
    free(x);
    free(img);
    fx_close(&f);
}

TEST(snap_read_races_sqlite) { read_races_on("sqlite"); }
TEST(snap_read_races_rados) { read_races_on("rados"); }

/* ---- replay (R-63, R-65: FORMAT.md §5's argument) ---- */

/* A crash between the copy-up and the live write: the live data object
 * writes fail (the applier stops: its entries stay in the journal); then
 * a writer opens the volume again and replays.  And a crash after the
 * live writes before applied was recorded: replay applies entries before
 * the snapshot again over objects already changed after it. */
static void replay_on(const char *backend)
{
    struct fx f;
    fx_open(&f, backend);
    setenv("TANDEM_JR_LEASE_TTL_MS", "600", 1);
    const size_t SZ = 512 << 10;
    mkvol(f.st, "r", SZ, 64 << 10, 0);
    uint8_t *a = malloc(SZ), *b = malloc(SZ), *c = malloc(SZ);
    ASSERT(a && b && c);
    fill(a, SZ, 1);
    fill(b, SZ, 2);
    fill(c, SZ, 3);
    wr(f.st, "r", 0, a, SZ);
    ASSERT_OK(jr_snap_create(f.st, "r", "s1", NULL, 1000, NULL));
    struct wst *w;
    st_store *st = wrap(&f, &w);
    jr_volume *v;
    ASSERT_OK(jr_open(st, "r", JR_OPEN_WRITE, "t", &v));
    atomic_store(&w->fail, 1);
    ASSERT_OK(jr_write(v, 0, b, SZ)); /* durable; applying it fails */
    ASSERT(jr_close(v) < 0);
    atomic_store(&w->fail, 0);
    /* the copies were made, the live objects not changed */
    int copies = 0;
    ASSERT_OK(st_list(f.st, "vol/r/s/s1/", (st_list_cb)hold_cb, &copies));
    ASSERT_EQ(copies, (int)(SZ / (64 << 10)));
    ASSERT_OK(jr_image_read(f.st, "r", 0, c, SZ));
    ASSERT(memcmp(c, a, SZ) == 0);
    ASSERT_OK(jr_open(f.st, "r", JR_OPEN_WRITE | JR_OPEN_FORCE, "t2", &v));
    ASSERT_OK(jr_close(v));
    expect_snap(f.st, "r", "s1", 0, a, SZ);
    ASSERT_OK(jr_image_read(f.st, "r", 0, c, SZ));
    ASSERT(memcmp(c, b, SZ) == 0);

    /* applied not recorded: entries before s2 (b -> x) and after it
     * (-> c) are all applied again by the next open */
    uint8_t *x = malloc(SZ);
    ASSERT(x != NULL);
    memcpy(x, b, SZ);
    fill(x + 100000, 200000, 9);
    ASSERT_OK(jr_open(st, "r", JR_OPEN_WRITE, "t", &v));
    atomic_store(&w->fail, 2);
    ASSERT_OK(jr_write(v, 100000, x + 100000, 200000));
    ASSERT_OK(jr_snapshot(v, "s2", NULL, NULL));
    ASSERT_OK(jr_write(v, 0, c, SZ));
    jr_close(v); /* persisting applied fails */
    atomic_store(&w->fail, 0);
    expect_snap(f.st, "r", "s2", 0, x, SZ);
    ASSERT_OK(jr_open(f.st, "r", JR_OPEN_WRITE | JR_OPEN_FORCE, "t3", &v));
    ASSERT_OK(jr_close(v));
    expect_snap(f.st, "r", "s1", 0, a, SZ);
    expect_snap(f.st, "r", "s2", 0, x, SZ);
    ASSERT_OK(jr_image_read(f.st, "r", 0, b, SZ));
    ASSERT(memcmp(b, c, SZ) == 0);
    st_close(st);
    free(a);
    free(b);
    free(c);
    free(x);
    fx_close(&f);
}

TEST(snap_replay_after_crash_sqlite) { replay_on("sqlite"); }

/* An id taken, deleted and taken again, all replayed from before the
 * first (applied never recorded): the old delete entry must not delete
 * the new snapshot, and both states read back right. */
TEST(snap_id_reused_then_replayed)
{
    struct fx f;
    fx_open(&f, "sqlite");
    setenv("TANDEM_JR_LEASE_TTL_MS", "600", 1);
    const size_t SZ = 256 << 10;
    mkvol(f.st, "u", SZ, 64 << 10, 0);
    uint8_t *a = malloc(SZ), *b = malloc(SZ), *c = malloc(SZ);
    ASSERT(a && b && c);
    fill(a, SZ, 1);
    fill(b, SZ, 2);
    fill(c, SZ, 3);
    struct wst *w;
    st_store *st = wrap(&f, &w);
    atomic_store(&w->fail, 2); /* "applied" is never recorded */
    jr_volume *v;
    struct jr_snap first, second, got;
    ASSERT_OK(jr_open(st, "u", JR_OPEN_WRITE, "t", &v));
    ASSERT_OK(jr_write(v, 0, a, SZ));
    ASSERT_OK(jr_snapshot(v, "s1", "one", &first));
    ASSERT_OK(jr_write(v, 0, b, SZ));
    ASSERT_OK(jr__vol_snap_delete(v, "s1"));
    ASSERT_EQ(jr_snap_get(st, "u", "s1", NULL), -ENOENT);
    ASSERT_OK(jr_snapshot(v, "s1", "two", &second));
    ASSERT_GT(second.seq, first.seq);
    ASSERT_OK(jr_write(v, 0, c, SZ));
    jr_close(v); /* fails to persist applied */
    atomic_store(&w->fail, 0);
    expect_snap(f.st, "u", "s1", 0, b, SZ);
    ASSERT_OK(jr_open(f.st, "u", JR_OPEN_WRITE | JR_OPEN_FORCE, "t2", &v));
    ASSERT_OK(jr_close(v));
    ASSERT_OK(jr_snap_get(f.st, "u", "s1", &got));
    ASSERT_UEQ(got.seq, second.seq);
    ASSERT_STREQ(got.label, "two");
    expect_snap(f.st, "u", "s1", 0, b, SZ);
    uint8_t *live = malloc(SZ);
    ASSERT(live != NULL);
    ASSERT_OK(jr_image_read(f.st, "u", 0, live, SZ));
    ASSERT_MEMEQ(live, c, SZ);
    st_close(st);
    free(a);
    free(b);
    free(c);
    free(live);
    fx_close(&f);
}
TEST(snap_replay_after_crash_rados) { replay_on("rados"); }

/* A writer process killed while it writes numbered blocks and takes
 * snapshots: after the next open every snapshot it was told about holds
 * exactly the blocks acknowledged before it, and so does any it took
 * without telling. */
static void kill_on(const char *backend)
{
    struct fx f;
    fx_open(&f, backend);
    setenv("TANDEM_JR_LEASE_TTL_MS", "600", 1);
    mkvol(f.st, "k", (uint64_t)LW_BLOCKS * 4096, 64 << 10, 0);
    int pfd[2];
    ASSERT_OK(pipe(pfd));
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        close(pfd[0]);
        st_store *st = fx_store(&f);
        jr_volume *v;
        uint8_t b[4096];
        /* A slow applier: snapshot entries stay durable but unapplied
         * (pending) for a while, and so do the writes around them. */
        setenv("TANDEM_JR_APPLY_DELAY_MS", "20", 1);
        if (jr_open(st, "k", JR_OPEN_WRITE, "doomed", &v)) _exit(2);
        for (uint32_t i = 0; i < LW_BLOCKS; i++) {
            block_fill(b, i);
            if (jr_write(v, (uint64_t)i * 4096, b, sizeof b)) _exit(3);
            if (i % 40 == 39) {
                char id[16];
                uint32_t n = i + 1, about = n | 0x80000000u;
                snprintf(id, sizeof id, "k%u", n);
                if (write(pfd[1], &about, 4) != 4) _exit(5);
                if (jr_snapshot(v, id, NULL, NULL)) _exit(4);
                if (write(pfd[1], &n, 4) != 4) _exit(5);
            }
        }
        pause();
        _exit(6);
    }
    close(pfd[1]);
    uint32_t told[64], m;
    int nt = 0;
    for (;;) {
        ASSERT_EQ(read(pfd[0], &m, 4), 4);
        if (!(m & 0x80000000u)) {
            told[nt++] = m;
            continue;
        }
        if (nt >= 6) break; /* a 7th snapshot is being taken: kill now */
    }
    usleep(2000); /* lets it reach the journal, most of the time */
    ASSERT_OK(kill(pid, SIGKILL));
    int status;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    close(pfd[0]);
    jr_volume *v;
    ASSERT_OK(jr_open(f.st, "k", JR_OPEN_WRITE, "after", &v));
    ASSERT_OK(jr_close(v));
    struct lw *w = calloc(1, sizeof *w); /* no times: prefix checks only */
    ASSERT(w != NULL);
    for (int i = 0; i < nt; i++) {
        char id[16];
        snprintf(id, sizeof id, "k%u", told[i]);
        struct jr_snap s;
        ASSERT_OK(jr_snap_get(f.st, "k", id, &s));
        check_prefix(f.st, "k", id, w, 0, 0);
        /* exactly the blocks before it */
        uint8_t want[4096], got[4096];
        block_fill(want, told[i] - 1);
        ASSERT_OK(jr_snap_read(f.st, "k", id, (uint64_t)(told[i] - 1) * 4096,
                               got, 4096));
        ASSERT_MEMEQ(got, want, 4096);
        ASSERT_OK(jr_snap_read(f.st, "k", id, (uint64_t)told[i] * 4096, got,
                               4096));
        memset(want, 0, sizeof want);
        ASSERT_MEMEQ(got, want, 4096);
    }
    /* Every snapshot there (the pending one too, if its entry became
     * durable) holds exactly the blocks written before it. */
    struct names l = {0};
    ASSERT_OK(jr_snap_list(f.st, "k", list_cb, &l));
    ASSERT_GE(l.n, nt);
    ASSERT_LE(l.n, nt + 1);
    for (int i = 0; i < l.n; i++) {
        uint32_t n = (uint32_t)atoi(l.id[i] + 1);
        uint8_t want[4096], got[4096];
        check_prefix(f.st, "k", l.id[i], w, 0, 0);
        block_fill(want, n - 1);
        ASSERT_OK(jr_snap_read(f.st, "k", l.id[i], (uint64_t)(n - 1) * 4096,
                               got, 4096));
        ASSERT_MEMEQ(got, want, 4096);
        memset(want, 0, sizeof want);
        ASSERT_OK(jr_snap_read(f.st, "k", l.id[i], (uint64_t)n * 4096, got,
                               4096));
        ASSERT_MEMEQ(got, want, 4096);
    }
    if (l.n > nt)
        fprintf(stderr, "  (the pending snapshot %s survived the kill)\n",
                l.id[l.n - 1]);
    free(w);
    fx_close(&f);
}

TEST(snap_writer_killed_sqlite) { kill_on("sqlite"); }
TEST(snap_writer_killed_rados) { kill_on("rados"); }

/* ---- replication (R-61, R-65 applied by jr_apply) ---- */

static void ship(st_store *st, const char *from, const char *to,
                 uint64_t *pos)
{
    for (;;) {
        struct jr_batch b;
        ASSERT_OK(jr_tail_read(st, from, *pos + 1, 256 << 10, &b));
        if (b.n_entries == 0) {
            jr_batch_free(&b);
            return;
        }
        uint64_t applied = 0;
        ASSERT_OK(jr_apply(st, to, b.data, b.len, &applied));
        ASSERT_UEQ(applied, b.last_seq);
        *pos = applied;
        jr_batch_free(&b);
    }
}

static void same_snaps(st_store *st, const char *p, const char *r, size_t sz)
{
    struct names lp = {0}, lr = {0};
    ASSERT_OK(jr_snap_list(st, p, list_cb, &lp));
    ASSERT_OK(jr_snap_list(st, r, list_cb, &lr));
    ASSERT_EQ(lp.n, lr.n);
    uint8_t *a = malloc(sz), *b = malloc(sz);
    ASSERT(a && b);
    for (int i = 0; i < lp.n; i++) {
        struct jr_snap sp, sr;
        ASSERT_STREQ(lp.id[i], lr.id[i]);
        ASSERT_OK(jr_snap_get(st, p, lp.id[i], &sp));
        ASSERT_OK(jr_snap_get(st, r, lr.id[i], &sr));
        ASSERT_UEQ(sp.seq, sr.seq);
        ASSERT_UEQ(sp.size, sr.size);
        ASSERT_EQ(sp.ts_ns, sr.ts_ns);
        ASSERT_STREQ(sp.label, sr.label);
        ASSERT_OK(jr_snap_read(st, p, lp.id[i], 0, a, sp.size));
        ASSERT_OK(jr_snap_read(st, r, lr.id[i], 0, b, sr.size));
        ASSERT_MEMEQ(a, b, sp.size);
    }
    free(a);
    free(b);
}

static void replica_on(const char *backend)
{
    struct fx f;
    fx_open(&f, backend);
    const size_t SZ = 1 << 20;
    mkvol(f.st, "p", SZ, 64 << 10, 0);
    mkvol(f.st, "r", SZ, 64 << 10, JR_ROLE_SECONDARY);
    uint8_t *b = malloc(SZ);
    ASSERT(b != NULL);
    jr_volume *v;
    ASSERT_OK(jr_open(f.st, "p", JR_OPEN_WRITE, "t", &v));
    for (int s = 0; s < 4; s++) {
        fill(b, SZ, (uint64_t)s + 10);
        uint64_t off = (uint64_t)s * 150000;
        ASSERT_OK(jr_write(v, off, b, 300000));
        char id[16], label[32];
        snprintf(id, sizeof id, "r%d", s);
        snprintf(label, sizeof label, "ns/snap %d", s);
        ASSERT_OK(jr_snapshot(v, id, label, NULL));
    }
    ASSERT_OK(jr_resize(v, SZ / 2));
    ASSERT_OK(jr_snapshot(v, "half", NULL, NULL));
    ASSERT_OK(jr_resize(v, SZ));
    ASSERT_OK(jr_write(v, 0, b, SZ));
    ASSERT_OK(jr_close(v));
    ASSERT_OK(jr_snap_delete(f.st, "p", "r1", 1000));
    uint64_t pos = 0;
    ship(f.st, "p", "r", &pos);
    same_snaps(f.st, "p", "r", SZ);
    ASSERT_EQ(jr_snap_get(f.st, "r", "r1", NULL), -ENOENT);
    /* deletes replicate too, and a replica refuses its own */
    ASSERT_OK(jr_snap_delete(f.st, "p", "r2", 1000));
    ASSERT_OK(jr_snap_delete(f.st, "p", "half", 1000));
    ASSERT_EQ(jr_snap_delete(f.st, "r", "r3", 1000), JR_EROLE);
    ship(f.st, "p", "r", &pos);
    same_snaps(f.st, "p", "r", SZ);
    struct names l = {0};
    ASSERT_OK(jr_snap_list(f.st, "r", list_cb, &l));
    ASSERT_EQ(l.n, 2);
    /* jr_apply of the same batch again is harmless */
    struct jr_batch bt;
    ASSERT_OK(jr_tail_read(f.st, "p", 1, 64 << 20, &bt));
    ASSERT_OK(jr_apply(f.st, "r", bt.data, bt.len, NULL));
    jr_batch_free(&bt);
    same_snaps(f.st, "p", "r", SZ);
    free(b);
    fx_close(&f);
}

TEST(snap_replica_sqlite) { replica_on("sqlite"); }
TEST(snap_replica_rados) { replica_on("rados"); }

TT_MAIN()
