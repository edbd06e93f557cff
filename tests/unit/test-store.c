/*
 * test-store.c: the object store conformance suite, one source for both
 * backends.  Every STORE_TEST(x) body runs twice, as the tests sqlite_x
 * and rados_x, each on a fresh namespace: a new database file for sqlite,
 * a new RADOS namespace in $TANDEM_CEPH_POOL_A for rados.  The rados
 * tests report SKIPPED with $TANDEM_CEPH_SKIP (or "TANDEM_CEPH_CONF not
 * set") when there is no cluster; the sqlite ones always run.
 *
 *   ./test-store                 both backends
 *   ./test-store sqlite_cas ...  named tests only
 */
#include <pthread.h>
#include <rados/librados.h>
#include <sys/stat.h>

#include "store.h"
#include "tt.h"

/* ------------------------------------------------------------ harness -- */

struct tctx {
    int rados;
    char ns[128];   /* rados namespace of this test */
    char path[512]; /* sqlite database of this test */
    st_store *st;
};

static struct tctx T;

static int open_store(st_store **out)
{
    struct st_config cfg = {0};
    if (T.rados) {
        cfg.backend = "rados";
        cfg.ceph_conf = getenv("TANDEM_CEPH_CONF");
        cfg.keyring = getenv("TANDEM_CEPH_KEYRING");
        cfg.client_id = getenv("TANDEM_CEPH_CLIENT");
        cfg.pool = getenv("TANDEM_CEPH_POOL_A");
        cfg.rados_ns = T.ns;
        cfg.op_timeout_s = 30;
    } else {
        cfg.backend = "sqlite";
        cfg.db_path = T.path;
    }
    return st_open(&cfg, out);
}

static int rm_cb(const char *oid, void *arg)
{
    st_remove(arg, oid);
    return 0;
}

static void setup(int rados, const char *name)
{
    memset(&T, 0, sizeof T);
    T.rados = rados;
    if (rados) {
        const char *skip = getenv("TANDEM_CEPH_SKIP");
        if (skip && *skip) TT_SKIP("%s", skip);
        if (!getenv("TANDEM_CEPH_CONF")) TT_SKIP("TANDEM_CEPH_CONF not set");
        if (!getenv("TANDEM_CEPH_POOL_A"))
            TT_SKIP("TANDEM_CEPH_POOL_A not set");
        snprintf(T.ns, sizeof T.ns, "test-store-%s-%d-%ld", name, (int)getpid(),
                 (long)time(NULL));
    } else {
        const char *tmp = getenv("TANDEM_TEST_TMP");
        snprintf(T.path, sizeof T.path, "%s/test-store-%s-%d.db",
                 tmp && *tmp ? tmp : "/tmp", name, (int)getpid());
    }
    ASSERT_OK(open_store(&T.st));
    ASSERT_STREQ(st_backend(T.st), rados ? "rados" : "sqlite");
}

static void teardown(void)
{
    if (T.rados) {
        ASSERT_OK(st_list(T.st, "", rm_cb, T.st));
    }
    st_close(T.st);
    if (!T.rados) {
        char p[600];
        unlink(T.path);
        snprintf(p, sizeof p, "%s-wal", T.path);
        unlink(p);
        snprintf(p, sizeof p, "%s-shm", T.path);
        unlink(p);
    }
}

#define STORE_TEST(name)                                                       \
    static void body_##name(st_store *st);                                     \
    TEST(sqlite_##name)                                                        \
    {                                                                          \
        setup(0, #name);                                                       \
        body_##name(T.st);                                                     \
        teardown();                                                            \
    }                                                                          \
    TEST(rados_##name)                                                         \
    {                                                                          \
        setup(1, #name);                                                       \
        body_##name(T.st);                                                     \
        teardown();                                                            \
    }                                                                          \
    static void body_##name(st_store *st)

static void fill(void *buf, size_t len, unsigned seed)
{
    unsigned char *p = buf;
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (unsigned char)x;
    }
}

static int is_zero(const void *buf, size_t len)
{
    const unsigned char *p = buf;
    for (size_t i = 0; i < len; i++)
        if (p[i]) return 0;
    return 1;
}

static uint64_t size_of(st_store *st, const char *oid)
{
    uint64_t size = 0;
    ASSERT_OK(st_stat(st, oid, &size, NULL));
    return size;
}

/* Children of the multi-process tests run as fresh processes (tt_spawn:
 * the parent holds a store handle, on rados with librados threads, which
 * a bare fork would copy mid-flight).  Their argument names the store of
 * the test and the child's index: "<rados 0|1> <index> <ns or path>". */
static pid_t spawn_store_child(const char *name, int index)
{
    char arg[700];
    snprintf(arg, sizeof arg, "%d %d %s", T.rados, index,
             T.rados ? T.ns : T.path);
    pid_t pid = tt_spawn(name, arg);
    ASSERT(pid >= 0);
    return pid;
}

/* In a child: set T up from the argument; returns the index. */
static int child_store_arg(const char *arg)
{
    int rados = 0, index = 0, n = 0;
    memset(&T, 0, sizeof T);
    if (sscanf(arg, "%d %d %n", &rados, &index, &n) < 2 || !arg[n]) _exit(125);
    T.rados = rados;
    snprintf(rados ? T.ns : T.path, rados ? sizeof T.ns : sizeof T.path, "%s",
             arg + n);
    return index;
}

/* Wait for a forked child; it must exit 0. */
static void wait_ok(pid_t pid)
{
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        ASSERT_EQ(errno, EINTR);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        TT_FAIL("child %d failed (status 0x%x)", (int)pid, status);
}

/* -------------------------------------------------------------- bytes -- */

STORE_TEST(basic)
{
    char w[10000], r[20000];
    uint64_t size;
    int64_t mtime;
    fill(w, sizeof w, 1);

    ASSERT_OK(st_ping(st));
    ASSERT_EQ(st_read(st, "missing", 0, r, 10), -ENOENT);
    ASSERT_EQ(st_stat(st, "missing", &size, &mtime), -ENOENT);

    ASSERT_OK(st_write(st, "o", 0, w, sizeof w));
    ASSERT_OK(st_stat(st, "o", &size, &mtime));
    ASSERT_UEQ(size, sizeof w);
    ASSERT_LE(llabs((long long)(mtime - time(NULL))), 60);
    ASSERT_EQ(st_read(st, "o", 0, r, sizeof r), (ssize_t)sizeof w);
    ASSERT_MEMEQ(r, w, sizeof w);
    /* Partial, past-the-end and at-the-end reads. */
    ASSERT_EQ(st_read(st, "o", 9000, r, 5000), 1000);
    ASSERT_MEMEQ(r, w + 9000, 1000);
    ASSERT_EQ(st_read(st, "o", sizeof w, r, 10), 0);
    ASSERT_EQ(st_read(st, "o", 1 << 20, r, 10), 0);
    ASSERT_EQ(st_read(st, "o", 0, r, 0), 0);

    /* write_full replaces, shrinking. */
    ASSERT_OK(st_write_full(st, "o", "abc", 3));
    ASSERT_UEQ(size_of(st, "o"), 3);
    memset(r, 'x', 10);
    ASSERT_EQ(st_read(st, "o", 0, r, 10), 3);
    ASSERT_MEMEQ(r, "abc", 3);
    /* Append. */
    ASSERT_OK(st_append(st, "o", "defg", 4));
    ASSERT_OK(st_append(st, "o", "", 0));
    ASSERT_EQ(st_read(st, "o", 0, r, 10), 7);
    ASSERT_MEMEQ(r, "abcdefg", 7);
    /* Append creates. */
    ASSERT_OK(st_append(st, "p", "xy", 2));
    ASSERT_UEQ(size_of(st, "p"), 2);

    /* Empty objects exist. */
    ASSERT_OK(st_write_full(st, "empty", NULL, 0));
    ASSERT_UEQ(size_of(st, "empty"), 0);
    ASSERT_EQ(st_read(st, "empty", 0, r, 10), 0);
    ASSERT_OK(st_write_full(st, "o", "", 0));
    ASSERT_UEQ(size_of(st, "o"), 0);

    /* Remove. */
    ASSERT_OK(st_remove(st, "o"));
    ASSERT_EQ(st_remove(st, "o"), -ENOENT);
    ASSERT_EQ(st_read(st, "o", 0, r, 10), -ENOENT);
    ASSERT_OK(st_write(st, "o", 5, "z", 1)); /* re-created, fresh */
    ASSERT_EQ(st_read(st, "o", 0, r, 10), 6);
    ASSERT(is_zero(r, 5));
    ASSERT_EQ(r[5], 'z');
}

/* st_counts: every call that reaches the backend counts once, as a read
 * or a write (single-item calls, write ops, aio alike); refused calls do
 * not count (issue 12: what benches and the CSI count). */
static void counts_aio_cb(int r, void *arg)
{
    __atomic_store_n((int *)arg, r == 0 ? 1 : -1, __ATOMIC_RELEASE);
}

STORE_TEST(counts)
{
    struct st_counts a, b;
    char buf[16], *v = NULL;
    st_counts_get(st, &a);
    ASSERT_OK(st_write(st, "c", 0, "abcd", 4));
    ASSERT_OK(st_omap_set(st, "c", "k", "v", 1));
    st_wop *op = st_wop_create();
    st_wop_omap_set(op, "k2", "v", 1);
    st_wop_write(op, 4, "ef", 2);
    ASSERT_OK(st_wop_operate(st, "c", op));
    st_wop_destroy(op);
    ASSERT_EQ(st_wop_operate(st, "", NULL), -EINVAL); /* refused */
    ASSERT_EQ(st_read(st, "c", 0, buf, sizeof buf), 6);
    ASSERT_OK(st_stat(st, "c", NULL, NULL));
    ASSERT_OK(st_omap_get(st, "c", "k", &v, NULL));
    free(v);
    ASSERT_EQ(st_stat(st, "missing", NULL, NULL), -ENOENT); /* counts */
    st_counts_get(st, &b);
    ASSERT_EQ(b.writes - a.writes, 3);
    ASSERT_EQ(b.reads - a.reads, 4);
    int done = 0;
    op = st_wop_create();
    st_wop_append(op, "gh", 2);
    ASSERT_OK(st_aio_operate(st, "c", op, counts_aio_cb, &done));
    st_aio_wait(st);
    ASSERT_EQ(__atomic_load_n(&done, __ATOMIC_ACQUIRE), 1);
    st_counts_get(st, &a);
    ASSERT_EQ(a.writes - b.writes, 1);
    ASSERT_EQ(a.reads, b.reads);
}

STORE_TEST(sparse)
{
    enum { N = 300000 };
    char *w = malloc(N), *r = malloc(2 << 20);
    fill(w, N, 2);
    /* A write far past the end: the hole reads as zeros. */
    ASSERT_OK(st_write(st, "s", 1 << 20, w, 100));
    ASSERT_UEQ(size_of(st, "s"), (1 << 20) + 100);
    ASSERT_EQ(st_read(st, "s", 0, r, (1 << 20) + 200), (1 << 20) + 100);
    ASSERT(is_zero(r, 1 << 20));
    ASSERT_MEMEQ(r + (1 << 20), w, 100);
    /* Unaligned writes across many 64 KiB boundaries, then overwrites. */
    ASSERT_OK(st_write(st, "u", 12345, w, N));
    ASSERT_OK(st_write(st, "u", 70000, w + 5, 100000));
    ASSERT_EQ(st_read(st, "u", 0, r, 2 * N), 12345 + N);
    ASSERT(is_zero(r, 12345));
    ASSERT_MEMEQ(r + 12345, w, 70000 - 12345);
    ASSERT_MEMEQ(r + 70000, w + 5, 100000);
    ASSERT_MEMEQ(r + 170000, w + 170000 - 12345, 12345 + N - 170000);
    /* The largest object; one byte past it is refused. */
    ASSERT_OK(st_write(st, "big", ST_MAX_OBJECT - 1, "e", 1));
    ASSERT_UEQ(size_of(st, "big"), ST_MAX_OBJECT);
    ASSERT_EQ(st_append(st, "big", "f", 1), -EFBIG);
    ASSERT_EQ(st_read(st, "big", ST_MAX_OBJECT - 2, r, 10), 2);
    ASSERT_EQ(r[0], 0);
    ASSERT_EQ(r[1], 'e');
    free(w);
    free(r);
}

/* Random operations against a model in memory; both backends must agree
 * with it byte for byte. */
STORE_TEST(model)
{
    enum { CAP = 600000 };
    unsigned char *m = calloc(1, CAP), *r = malloc(CAP), *w = malloc(CAP);
    uint64_t size = 0;
    int exists = 0;
    uint32_t x = 12345;
#define RND(n) ((x = x * 1103515245u + 12345u), (x >> 8) % (n))
    for (int i = 0; i < 250; i++) {
        int kind = (int)RND(7);
        uint64_t off = RND(CAP / 2), len = RND(70000) + 1;
        if (RND(4) == 0) off = (off / 65536) * 65536; /* chunk aligned */
        fill(w, len, (unsigned)i);
        switch (kind) {
        case 0:
        case 1: /* write */
            ASSERT_OK(st_write(st, "m", off, w, len));
            memcpy(m + off, w, len);
            if (off + len > size) size = off + len;
            exists = 1;
            break;
        case 2: /* append */
            if (size + len > CAP) break;
            ASSERT_OK(st_append(st, "m", w, len));
            memcpy(m + size, w, len);
            size += len;
            exists = 1;
            break;
        case 3: /* truncate */
            ASSERT_OK(st_truncate(st, "m", off));
            if (!exists) break;
            if (off < size) memset(m + off, 0, size - off);
            size = off;
            break;
        case 4: /* zero: reaching the end truncates */
            ASSERT_OK(st_zero(st, "m", off, len));
            if (!exists || off >= size) break;
            if (off + len >= size) {
                memset(m + off, 0, size - off);
                size = off;
            } else {
                memset(m + off, 0, len);
            }
            break;
        case 5: /* write_full */
            if (RND(3)) break;
            ASSERT_OK(st_write_full(st, "m", w, len));
            memset(m, 0, CAP);
            memcpy(m, w, len);
            size = len;
            exists = 1;
            break;
        case 6: { /* read a random range */
            if (!exists) break;
            ssize_t n = st_read(st, "m", off, r, len);
            uint64_t want =
                off >= size ? 0 : (size - off < len ? size - off : len);
            ASSERT_EQ(n, (ssize_t)want);
            ASSERT_MEMEQ(r, m + off, want);
            break;
        }
        }
        if (exists) ASSERT_UEQ(size_of(st, "m"), size);
    }
#undef RND
    ASSERT_EQ(st_read(st, "m", 0, r, CAP), (ssize_t)size);
    ASSERT_MEMEQ(r, m, size);
    free(m);
    free(r);
    free(w);
}

STORE_TEST(truncate_zero)
{
    char w[200000], r[200000];
    fill(w, sizeof w, 3);
    ASSERT_OK(st_write(st, "t", 0, w, sizeof w));
    /* Shrink into the middle of a chunk, then grow: the tail reads zero. */
    ASSERT_OK(st_truncate(st, "t", 70000));
    ASSERT_UEQ(size_of(st, "t"), 70000);
    ASSERT_OK(st_truncate(st, "t", 150000));
    ASSERT_EQ(st_read(st, "t", 0, r, sizeof r), 150000);
    ASSERT_MEMEQ(r, w, 70000);
    ASSERT(is_zero(r + 70000, 80000));
    /* Growing by a write past the end after a shrink. */
    ASSERT_OK(st_truncate(st, "t", 10));
    ASSERT_OK(st_write(st, "t", 100, "q", 1));
    ASSERT_EQ(st_read(st, "t", 0, r, sizeof r), 101);
    ASSERT_MEMEQ(r, w, 10);
    ASSERT(is_zero(r + 10, 90));
    ASSERT_OK(st_truncate(st, "t", 0));
    ASSERT_UEQ(size_of(st, "t"), 0);
    /* truncate does not create a missing object (RADOS). */
    ASSERT_OK(st_truncate(st, "t2", 5000));
    ASSERT_EQ(st_stat(st, "t2", NULL, NULL), -ENOENT);
    ASSERT_OK(st_write(st, "t2", 0, "x", 1));
    ASSERT_OK(st_truncate(st, "t2", 5000));
    ASSERT_UEQ(size_of(st, "t2"), 5000);
    ASSERT_EQ(st_read(st, "t2", 0, r, 6000), 5000);
    ASSERT_EQ(r[0], 'x');
    ASSERT(is_zero(r + 1, 4999));
    /* An empty write past the end extends the object. */
    ASSERT_OK(st_write(st, "t2", 6000, "", 0));
    ASSERT_UEQ(size_of(st, "t2"), 6000);
    ASSERT_OK(st_write(st, "t2", 10, "", 0));
    ASSERT_UEQ(size_of(st, "t2"), 6000);

    /* zero: a hole in the middle keeps the size. */
    ASSERT_OK(st_write_full(st, "z", w, sizeof w));
    ASSERT_OK(st_zero(st, "z", 1000, 100000));
    ASSERT_UEQ(size_of(st, "z"), sizeof w);
    ASSERT_EQ(st_read(st, "z", 0, r, sizeof r), (ssize_t)sizeof w);
    ASSERT_MEMEQ(r, w, 1000);
    ASSERT(is_zero(r + 1000, 100000));
    ASSERT_MEMEQ(r + 101000, w + 101000, sizeof w - 101000);
    /* A zero range that reaches the end cuts the object there (RADOS:
     * zero [off, end) is a truncate to off). */
    ASSERT_OK(st_zero(st, "z", 190000, 50000));
    ASSERT_UEQ(size_of(st, "z"), 190000);
    ASSERT_OK(st_zero(st, "z", 180000, 10000));
    ASSERT_UEQ(size_of(st, "z"), 180000);
    ASSERT_OK(st_zero(st, "z", 170000, 9999));
    ASSERT_UEQ(size_of(st, "z"), 180000);
    ASSERT_EQ(st_read(st, "z", 160000, r, 30000), 20000);
    ASSERT_MEMEQ(r, w + 160000, 10000);
    ASSERT(is_zero(r + 10000, 9999));
    ASSERT_EQ(r[19999], w[179999]);
    /* Zero at or past the end, empty, or on a missing object: no-op. */
    ASSERT_OK(st_zero(st, "z", 180000, 10));
    ASSERT_OK(st_zero(st, "z", 300000, 10));
    ASSERT_OK(st_zero(st, "z", 100, 0));
    ASSERT_UEQ(size_of(st, "z"), 180000);
    ASSERT_OK(st_zero(st, "nothing", 0, 10));
    ASSERT_EQ(st_stat(st, "nothing", NULL, NULL), -ENOENT);
    st_wop *op = st_wop_create();
    st_wop_zero(op, 0, 0);
    ASSERT_OK(st_wop_operate(st, "z", op));
    st_wop_destroy(op);
    ASSERT_UEQ(size_of(st, "z"), 180000);
}

/* --------------------------------------------------------------- list -- */

struct names {
    int n, stop_at;
    char seen[400];
};

static int list_cb(const char *oid, void *arg)
{
    struct names *s = arg;
    int i = -1;
    if (sscanf(oid, "a/%d", &i) == 1 && i >= 0 && i < 400) s->seen[i]++;
    s->n++;
    if (s->stop_at && s->n == s->stop_at) return 42;
    return 0;
}

STORE_TEST(list)
{
    char oid[64];
    struct names s;
    for (int i = 0; i < 300; i++) {
        snprintf(oid, sizeof oid, "a/%d", i);
        ASSERT_OK(st_write_full(st, oid, "x", 1));
    }
    ASSERT_OK(st_write_full(st, "a", "", 0));
    ASSERT_OK(st_write_full(st, "a0", "", 0));
    ASSERT_OK(st_write_full(st, "b/1", "", 0));
    ASSERT_OK(st_omap_set(st, "a/omap-only", "k", "v", 1));
    ASSERT_OK(st_write_full(st, "a/\xff\xfe", "", 0));

    memset(&s, 0, sizeof s);
    ASSERT_OK(st_list(st, "a/", list_cb, &s));
    ASSERT_EQ(s.n, 302);
    for (int i = 0; i < 300; i++)
        ASSERT_EQ(s.seen[i], 1);
    memset(&s, 0, sizeof s);
    ASSERT_OK(st_list(st, "", list_cb, &s));
    ASSERT_EQ(s.n, 305);
    memset(&s, 0, sizeof s);
    ASSERT_OK(st_list(st, NULL, list_cb, &s));
    ASSERT_EQ(s.n, 305);
    memset(&s, 0, sizeof s);
    ASSERT_OK(st_list(st, "a/\xff", list_cb, &s));
    ASSERT_EQ(s.n, 1);
    memset(&s, 0, sizeof s);
    ASSERT_OK(st_list(st, "zz", list_cb, &s));
    ASSERT_EQ(s.n, 0);
    /* A callback's non-zero result stops the walk and is returned. */
    memset(&s, 0, sizeof s);
    s.stop_at = 10;
    ASSERT_EQ(st_list(st, "a/", list_cb, &s), 42);
    ASSERT_EQ(s.n, 10);
    /* Removed objects disappear from the listing. */
    ASSERT_OK(st_remove(st, "a/7"));
    memset(&s, 0, sizeof s);
    ASSERT_OK(st_list(st, "a/", list_cb, &s));
    ASSERT_EQ(s.n, 301);
    ASSERT_EQ(s.seen[7], 0);
}

/* --------------------------------------------------------------- omap -- */

struct kvs {
    int n;
    char keys[64][32];
    char vals[64][32];
    int stop_at;
};

static int kv_cb(const char *key, const char *val, size_t len, void *arg)
{
    struct kvs *k = arg;
    ASSERT(k->n < 64);
    ASSERT(len < 32);
    ASSERT_EQ(val[len], '\0');
    snprintf(k->keys[k->n], 32, "%s", key);
    memcpy(k->vals[k->n], val, len + 1);
    k->n++;
    return k->stop_at && k->n == k->stop_at ? 7 : 0;
}

STORE_TEST(omap)
{
    char *v = NULL;
    size_t len = 99;
    struct kvs k;

    ASSERT_EQ(st_omap_get(st, "h", "x", &v, &len), -ENOENT);
    ASSERT(v == NULL);
    ASSERT_EQ(st_omap_rm(st, "h", "x"), -ENOENT);
    ASSERT_EQ(st_omap_iter(st, "h", "", NULL, 0, kv_cb, &k), -ENOENT);

    /* omap_set creates the object, with no bytes. */
    ASSERT_OK(st_omap_set(st, "h", "epoch", "7", 1));
    ASSERT_UEQ(size_of(st, "h"), 0);
    ASSERT_OK(st_omap_get(st, "h", "epoch", &v, &len));
    ASSERT_EQ(len, 1);
    ASSERT_STREQ(v, "7");
    free(v);
    ASSERT_EQ(st_omap_get(st, "h", "nokey", &v, &len), -ENOENT);
    /* Binary values with NULs, and empty values. */
    ASSERT_OK(st_omap_set(st, "h", "bin", "a\0b\0", 4));
    ASSERT_OK(st_omap_get(st, "h", "bin", &v, &len));
    ASSERT_EQ(len, 4);
    ASSERT_MEMEQ(v, "a\0b\0", 4);
    free(v);
    ASSERT_OK(st_omap_set(st, "h", "empty", NULL, 0));
    ASSERT_OK(st_omap_get(st, "h", "empty", &v, &len));
    ASSERT_EQ(len, 0);
    ASSERT_STREQ(v, "");
    free(v);
    /* Overwrite; remove; removing a missing key is fine. */
    ASSERT_OK(st_omap_set(st, "h", "epoch", "10", 2));
    ASSERT_OK(st_omap_get(st, "h", "epoch", &v, &len));
    ASSERT_STREQ(v, "10");
    free(v);
    ASSERT_OK(st_omap_rm(st, "h", "epoch"));
    ASSERT_OK(st_omap_rm(st, "h", "epoch"));
    ASSERT_EQ(st_omap_get(st, "h", "epoch", &v, &len), -ENOENT);

    /* Bytes and omap are independent. */
    ASSERT_OK(st_append(st, "h", "data", 4));
    ASSERT_OK(st_omap_get(st, "h", "bin", &v, &len));
    free(v);

    /* Iteration: key order, prefix, after, max. */
    ASSERT_OK(st_omap_rm(st, "h", "bin"));
    ASSERT_OK(st_omap_rm(st, "h", "empty"));
    const char *keys[] = {"p.b", "p.a", "q", "p.c", "o", "p.", "p/x"};
    for (int i = 0; i < 7; i++)
        ASSERT_OK(st_omap_set(st, "h", keys[i], keys[i], strlen(keys[i])));
    memset(&k, 0, sizeof k);
    ASSERT_OK(st_omap_iter(st, "h", "", NULL, 0, kv_cb, &k));
    ASSERT_EQ(k.n, 7);
    const char *sorted[] = {"o", "p.", "p.a", "p.b", "p.c", "p/x", "q"};
    for (int i = 0; i < 7; i++) {
        ASSERT_STREQ(k.keys[i], sorted[i]);
        ASSERT_STREQ(k.vals[i], sorted[i]);
    }
    memset(&k, 0, sizeof k);
    ASSERT_OK(st_omap_iter(st, "h", "p.", NULL, 0, kv_cb, &k));
    ASSERT_EQ(k.n, 4);
    ASSERT_STREQ(k.keys[0], "p.");
    ASSERT_STREQ(k.keys[3], "p.c");
    memset(&k, 0, sizeof k);
    ASSERT_OK(st_omap_iter(st, "h", "p.", "p.a", 0, kv_cb, &k));
    ASSERT_EQ(k.n, 2);
    ASSERT_STREQ(k.keys[0], "p.b");
    memset(&k, 0, sizeof k);
    ASSERT_OK(st_omap_iter(st, "h", "p.", "p.", 2, kv_cb, &k));
    ASSERT_EQ(k.n, 2);
    ASSERT_STREQ(k.keys[0], "p.a");
    ASSERT_STREQ(k.keys[1], "p.b");
    memset(&k, 0, sizeof k);
    ASSERT_OK(st_omap_iter(st, "h", "", "p.c", 0, kv_cb, &k));
    ASSERT_EQ(k.n, 2);
    ASSERT_STREQ(k.keys[0], "p/x");
    memset(&k, 0, sizeof k);
    ASSERT_OK(st_omap_iter(st, "h", "", "a", 1, kv_cb, &k));
    ASSERT_EQ(k.n, 1);
    ASSERT_STREQ(k.keys[0], "o");
    memset(&k, 0, sizeof k);
    ASSERT_OK(st_omap_iter(st, "h", "zz", NULL, 0, kv_cb, &k));
    ASSERT_EQ(k.n, 0);
    memset(&k, 0, sizeof k);
    k.stop_at = 3;
    ASSERT_EQ(st_omap_iter(st, "h", "", NULL, 0, kv_cb, &k), 7);
    ASSERT_EQ(k.n, 3);

    /* remove drops the omap too. */
    ASSERT_OK(st_remove(st, "h"));
    ASSERT_OK(st_omap_set(st, "h", "new", "1", 1));
    memset(&k, 0, sizeof k);
    ASSERT_OK(st_omap_iter(st, "h", "", NULL, 0, kv_cb, &k));
    ASSERT_EQ(k.n, 1);
    ASSERT_UEQ(size_of(st, "h"), 0);
}

struct count {
    int n;
    char last[64];
    int ordered;
};

static int count_cb(const char *key, const char *val, size_t len, void *arg)
{
    struct count *c = arg;
    if (c->n && strcmp(c->last, key) >= 0) c->ordered = 0;
    snprintf(c->last, sizeof c->last, "%s", key);
    ASSERT_EQ(len, strlen(key));
    ASSERT_STREQ(val, key);
    c->n++;
    return 0;
}

/* More keys than one backend round trip returns (rados pages). */
STORE_TEST(omap_many)
{
    enum { N = 1500 };
    st_wop *op = st_wop_create();
    char key[32];
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "k%05d", i);
        st_wop_omap_set(op, key, key, strlen(key));
    }
    ASSERT_OK(st_wop_operate(st, "many", op));
    st_wop_destroy(op);
    struct count c = {.ordered = 1};
    ASSERT_OK(st_omap_iter(st, "many", "k", NULL, 0, count_cb, &c));
    ASSERT_EQ(c.n, N);
    ASSERT(c.ordered);
    memset(&c, 0, sizeof c);
    c.ordered = 1;
    ASSERT_OK(st_omap_iter(st, "many", "k0", "k00100", 1200, count_cb, &c));
    ASSERT_EQ(c.n, 1200);
    ASSERT_STREQ(c.last, "k01300");
    memset(&c, 0, sizeof c);
    c.ordered = 1;
    ASSERT_OK(st_omap_iter(st, "many", "k001", NULL, 0, count_cb, &c));
    ASSERT_EQ(c.n, 100);
}

/* ------------------------------------------------------------- limits -- */

STORE_TEST(limits)
{
    char oid[ST_MAX_OID + 2], key[ST_MAX_KEY + 2], *v = NULL;
    size_t len;
    memset(oid, 'o', sizeof oid);
    oid[ST_MAX_OID] = '\0';
    ASSERT_OK(st_write_full(st, oid, "x", 1)); /* the longest oid */
    ASSERT_UEQ(size_of(st, oid), 1);
    oid[ST_MAX_OID] = 'o';
    oid[ST_MAX_OID + 1] = '\0';
    ASSERT_EQ(st_write_full(st, oid, "x", 1), -ENAMETOOLONG);
    ASSERT_EQ(st_read(st, oid, 0, key, 1), -ENAMETOOLONG);
    ASSERT_EQ(st_stat(st, oid, NULL, NULL), -ENAMETOOLONG);
    ASSERT_EQ(st_omap_set(st, oid, "k", "v", 1), -ENAMETOOLONG);
    ASSERT_OK(st_write_full(st, "o", "x", 1));
    ASSERT_EQ(st_write_full(st, "", "x", 1), -EINVAL);
    ASSERT_EQ(st_write_full(st, NULL, "x", 1), -EINVAL);
    ASSERT_EQ(st_write_full(st, "o", NULL, 1), -EINVAL);
    ASSERT_EQ(st_read(st, "o", 0, NULL, 1), -EINVAL);

    memset(key, 'k', sizeof key);
    key[ST_MAX_KEY] = '\0';
    ASSERT_OK(st_omap_set(st, "o", key, "v", 1)); /* the longest key */
    ASSERT_OK(st_omap_get(st, "o", key, &v, &len));
    free(v);
    key[ST_MAX_KEY] = 'k';
    key[ST_MAX_KEY + 1] = '\0';
    ASSERT_EQ(st_omap_set(st, "o", key, "v", 1), -ENAMETOOLONG);
    ASSERT_EQ(st_omap_get(st, "o", key, &v, &len), -ENAMETOOLONG);
    ASSERT_EQ(st_omap_rm(st, "o", key), -ENAMETOOLONG);
    ASSERT_EQ(st_omap_cas(st, "o", key, NULL, 0, "v", 1), -ENAMETOOLONG);
    ASSERT_EQ(st_omap_set(st, "o", "", "v", 1), -EINVAL);

    char *big = calloc(1, ST_MAX_VALUE + 1);
    ASSERT_OK(st_omap_set(st, "o", "big", big, ST_MAX_VALUE));
    ASSERT_OK(st_omap_get(st, "o", "big", &v, &len));
    ASSERT_UEQ(len, ST_MAX_VALUE);
    free(v);
    ASSERT_EQ(st_omap_set(st, "o", "big", big, ST_MAX_VALUE + 1), -EFBIG);
    ASSERT_EQ(st_omap_cas(st, "o", "big", NULL, 0, big, ST_MAX_VALUE + 1),
              -EFBIG);
    free(big);
    ASSERT_EQ(st_write(st, "o", ST_MAX_OBJECT, "x", 1), -EFBIG);
    ASSERT_EQ(st_write(st, "o", UINT64_MAX, "x", 1), -EFBIG);
    ASSERT_EQ(st_truncate(st, "o", ST_MAX_OBJECT + 1), -EFBIG);
    ASSERT_EQ(st_zero(st, "o", UINT64_MAX - 1, 10), -EFBIG);
    ASSERT_UEQ(size_of(st, "o"), 1);

    /* A bad item poisons the op: operate applies nothing. */
    st_wop *op = st_wop_create();
    st_wop_write(op, 0, "yy", 2);
    st_wop_omap_set(op, key, "v", 1);
    ASSERT_EQ(st_wop_operate(st, "o", op), -ENAMETOOLONG);
    st_wop_destroy(op);
    char r[4];
    ASSERT_EQ(st_read(st, "o", 0, r, 4), 1);
    ASSERT_EQ(r[0], 'x');

    ASSERT(st_strerror(-ECANCELED) != NULL);
    ASSERT(strlen(st_strerror(-EINTR)) > 0);
}

/* ------------------------------------------------------ write ops, CAS -- */

STORE_TEST(wop)
{
    char r[16], *v = NULL;
    size_t len;
    /* All applied together. */
    st_wop *op = st_wop_create();
    st_wop_create_excl(op);
    st_wop_write(op, 0, "hello", 5);
    st_wop_append(op, "!", 1);
    st_wop_omap_set(op, "a", "1", 1);
    st_wop_omap_set(op, "b", "2", 1);
    ASSERT_OK(st_wop_operate(st, "w", op));
    /* The same op again: the exclusive create fails, nothing applied. */
    ASSERT_EQ(st_wop_operate(st, "w", op), -EEXIST);
    st_wop_destroy(op);
    ASSERT_EQ(st_read(st, "w", 0, r, sizeof r), 6);
    ASSERT_MEMEQ(r, "hello!", 6);

    /* A failing guard after mutations: nothing applied. */
    op = st_wop_create();
    st_wop_write(op, 0, "HELLO", 5);
    st_wop_omap_set(op, "a", "X", 1);
    st_wop_omap_rm(op, "b");
    st_wop_omap_cmp(op, "a", "wrong", 5);
    ASSERT_EQ(st_wop_operate(st, "w", op), -ECANCELED);
    st_wop_destroy(op);
    ASSERT_EQ(st_read(st, "w", 0, r, sizeof r), 6);
    ASSERT_MEMEQ(r, "hello!", 6);
    ASSERT_OK(st_omap_get(st, "w", "a", &v, &len));
    ASSERT_STREQ(v, "1");
    free(v);
    ASSERT_OK(st_omap_get(st, "w", "b", &v, &len));
    free(v);

    /* assert_exists on a missing object: -ENOENT, nothing created. */
    op = st_wop_create();
    st_wop_assert_exists(op);
    st_wop_write(op, 0, "x", 1);
    ASSERT_EQ(st_wop_operate(st, "nope", op), -ENOENT);
    ASSERT_EQ(st_stat(st, "nope", NULL, NULL), -ENOENT);
    ASSERT_OK(st_wop_operate(st, "w", op));
    st_wop_destroy(op);

    /* Guards that pass, then every mutation kind. */
    op = st_wop_create();
    st_wop_assert_exists(op);
    st_wop_omap_cmp(op, "a", "1", 1);
    st_wop_omap_cmp(op, "zz", NULL, 0);
    st_wop_write_full(op, "0123456789", 10);
    st_wop_zero(op, 2, 3);
    st_wop_truncate(op, 8);
    st_wop_append(op, "AB", 2);
    st_wop_omap_set(op, "a", "2", 1);
    st_wop_omap_rm(op, "b");
    ASSERT_OK(st_wop_operate(st, "w", op));
    st_wop_destroy(op);
    ASSERT_EQ(st_read(st, "w", 0, r, sizeof r), 10);
    ASSERT_MEMEQ(r,
                 "01\0\0\0"
                 "567AB",
                 10);
    ASSERT_OK(st_omap_get(st, "w", "a", &v, &len));
    ASSERT_STREQ(v, "2");
    free(v);
    ASSERT_EQ(st_omap_get(st, "w", "b", &v, &len), -ENOENT);

    /* remove in an op, guarded. */
    op = st_wop_create();
    st_wop_omap_cmp(op, "a", "2", 1);
    st_wop_remove(op);
    ASSERT_OK(st_wop_operate(st, "w", op));
    ASSERT_EQ(st_stat(st, "w", NULL, NULL), -ENOENT);
    ASSERT_EQ(st_wop_operate(st, "w", op), -ECANCELED);
    st_wop_destroy(op);

    /* Guards on a missing object: every key is absent there, so an
     * absent-guard passes (creating the object), a value guard fails. */
    op = st_wop_create();
    st_wop_omap_cmp(op, "k", NULL, 0);
    st_wop_write(op, 0, "n", 1);
    ASSERT_OK(st_wop_operate(st, "g1", op));
    ASSERT_OK(st_wop_operate(st, "g1", op)); /* still absent on g1 */
    st_wop_destroy(op);
    ASSERT_UEQ(size_of(st, "g1"), 1);
    op = st_wop_create();
    st_wop_omap_cmp(op, "k", NULL, 0);
    ASSERT_OK(st_wop_operate(st, "g2", op));
    st_wop_destroy(op);
    ASSERT_UEQ(size_of(st, "g2"), 0);
    op = st_wop_create();
    st_wop_assert_exists(op);
    st_wop_omap_cmp(op, "k", NULL, 0);
    ASSERT_EQ(st_wop_operate(st, "g3", op), -ENOENT);
    st_wop_destroy(op);
    op = st_wop_create();
    st_wop_omap_cmp(op, "k", NULL, 0);
    st_wop_omap_cmp(op, "j", "v", 1);
    st_wop_omap_set(op, "k", "v", 1);
    ASSERT_EQ(st_wop_operate(st, "g3", op), -ECANCELED);
    st_wop_destroy(op);
    op = st_wop_create();
    st_wop_omap_cmp(op, "k", NULL, 0);
    st_wop_create_excl(op); /* the guard created it: documented */
    ASSERT_EQ(st_wop_operate(st, "g3", op), -EEXIST);
    st_wop_destroy(op);
    op = st_wop_create();
    st_wop_omap_rm(op, "k");
    st_wop_omap_cmp(op, "k", NULL, 0);
    ASSERT_EQ(st_wop_operate(st, "g3", op), -ENOENT);
    st_wop_destroy(op);
    ASSERT_EQ(st_stat(st, "g3", NULL, NULL), -ENOENT);

    /* An empty op does nothing; destroy(NULL) is fine. */
    op = st_wop_create();
    ASSERT_OK(st_wop_operate(st, "w", op));
    st_wop_destroy(op);
    st_wop_destroy(NULL);
    ASSERT_EQ(st_stat(st, "w", NULL, NULL), -ENOENT);
}

STORE_TEST(cas)
{
    char *v = NULL;
    size_t len;
    /* expect == NULL on a missing object creates it. */
    ASSERT_OK(st_omap_cas(st, "c", "epoch", NULL, 0, "1", 1));
    ASSERT_OK(st_omap_get(st, "c", "epoch", &v, &len));
    ASSERT_STREQ(v, "1");
    free(v);
    ASSERT_EQ(st_omap_cas(st, "c", "epoch", NULL, 0, "9", 1), -ECANCELED);
    ASSERT_EQ(st_omap_cas(st, "c", "epoch", "2", 1, "9", 1), -ECANCELED);
    ASSERT_EQ(st_omap_cas(st, "c", "epoch", "", 0, "9", 1), -ECANCELED);
    ASSERT_EQ(st_omap_cas(st, "c", "epoch", "11", 2, "9", 1), -ECANCELED);
    ASSERT_OK(st_omap_cas(st, "c", "epoch", "1", 1, "2", 1));
    ASSERT_OK(st_omap_get(st, "c", "epoch", &v, &len));
    ASSERT_STREQ(v, "2");
    free(v);
    /* An absent key on an existing object. */
    ASSERT_OK(st_omap_cas(st, "c", "lease", NULL, 0, "", 0));
    /* An EMPTY value is not absent (RADOS compares an absent key as an
     * empty value: the backend must tell them apart). */
    ASSERT_EQ(st_omap_cas(st, "c", "lease", NULL, 0, "x", 1), -ECANCELED);
    ASSERT_OK(st_omap_cas(st, "c", "lease", "", 0, "x", 1));
    ASSERT_EQ(st_omap_cas(st, "c", "other", "", 0, "x", 1), -ECANCELED);
    ASSERT_EQ(st_omap_get(st, "c", "other", &v, &len), -ENOENT);
    /* A value comparison on a missing object fails and creates nothing. */
    ASSERT_EQ(st_omap_cas(st, "c2", "k", "1", 1, "2", 1), -ECANCELED);
    ASSERT_EQ(st_omap_cas(st, "c2", "k", "", 0, "2", 1), -ECANCELED);
    ASSERT_EQ(st_stat(st, "c2", NULL, NULL), -ENOENT);
    /* Binary values compare exactly. */
    ASSERT_OK(st_omap_set(st, "c", "bin", "a\0b", 3));
    ASSERT_EQ(st_omap_cas(st, "c", "bin", "a", 1, "z", 1), -ECANCELED);
    ASSERT_EQ(st_omap_cas(st, "c", "bin", "a\0c", 3, "z", 1), -ECANCELED);
    ASSERT_OK(st_omap_cas(st, "c", "bin", "a\0b", 3, "z", 1));
    /* Values read back by iteration are the user's values. */
    struct kvs k;
    memset(&k, 0, sizeof k);
    ASSERT_OK(st_omap_iter(st, "c", "", NULL, 0, kv_cb, &k));
    ASSERT_EQ(k.n, 3);
    ASSERT_STREQ(k.keys[0], "bin");
    ASSERT_STREQ(k.vals[0], "z");
    ASSERT_STREQ(k.vals[1], "2");
    ASSERT_STREQ(k.vals[2], "x");
}

/* Many processes increment one counter by compare-and-set; the result is
 * exact only if no two CAS on the same old value both succeeded.  The
 * key starts absent, so the first increments race on "absent" too. */
enum { CAS_PROCS = 4, CAS_INCS = 40 };
TT_CHILD(cas_race)
{
    child_store_arg(arg);
    st_store *s2 = NULL;
    if (open_store(&s2)) return 2;
    for (int i = 0; i < CAS_INCS;) {
        char *v = NULL, nv[32];
        size_t len = 0;
        int r = st_omap_get(s2, "counter", "n", &v, &len);
        if (r && r != -ENOENT) return 3;
        long cur = r == 0 ? atol(v) : 0;
        int n = snprintf(nv, sizeof nv, "%ld", cur + 1);
        r = st_omap_cas(s2, "counter", "n", r == 0 ? v : NULL, len, nv,
                        (size_t)n);
        free(v);
        if (r == 0)
            i++;
        else if (r != -ECANCELED) {
            fprintf(stderr, "cas: %d\n", r);
            return 4;
        }
    }
    st_close(s2);
    return 0;
}

STORE_TEST(cas_race)
{
    enum { PROCS = CAS_PROCS, INCS = CAS_INCS };
    pid_t pids[PROCS];
    for (int p = 0; p < PROCS; p++)
        pids[p] = spawn_store_child("cas_race", p);
    for (int p = 0; p < PROCS; p++)
        wait_ok(pids[p]);
    char *v = NULL;
    size_t len;
    ASSERT_OK(st_omap_get(st, "counter", "n", &v, &len));
    ASSERT_EQ(atol(v), PROCS * INCS);
    free(v);
}

/* Fencing (store.h): the guard on another object's key (sqlite: atomic
 * with the op; rados: not evaluated, st_fence stops the client instead),
 * and st_fence itself (rados: the fenced handle's every later op fails
 * with -ESHUTDOWN, the fencer goes on; sqlite: no identity to fence). */
struct fence_aio {
    int result;
};
static void fence_aio_cb(int result, void *arg)
{
    ((struct fence_aio *)arg)->result = result;
}

STORE_TEST(fence)
{
    char id[512], id2[512], r[8];
    ASSERT_OK(st_fence_id(st, id, sizeof id));
    ASSERT_EQ(st_fence_id(st, id, 1), -ERANGE);
    ASSERT_OK(st_fence_id(st, id, sizeof id));
    ASSERT(strchr(id, ' ') == NULL);
    ASSERT_OK(st_omap_set(st, "hdr", "gen", "7", 1));
    st_wop *op = st_wop_create();
    st_wop_fence_guard(op, "hdr", "gen", "6", 1);
    st_wop_write(op, 0, "stale", 5);
    int rc = st_wop_operate(st, "data", op);
    st_wop_destroy(op);
    if (T.rados) {
        ASSERT_EQ(rc, 0); /* not evaluated there (store.h) */
        ASSERT_OK(st_remove(st, "data"));
    } else {
        ASSERT_EQ(rc, -ECANCELED);
        ASSERT_EQ(st_stat(st, "data", NULL, NULL), -ENOENT);
        /* A missing guard object or key fails the guard as well. */
        op = st_wop_create();
        st_wop_fence_guard(op, "nohdr", "gen", "7", 1);
        st_wop_write(op, 0, "x", 1);
        ASSERT_EQ(st_wop_operate(st, "data", op), -ECANCELED);
        st_wop_destroy(op);
        op = st_wop_create();
        st_wop_fence_guard(op, "hdr", "nokey", "7", 1);
        st_wop_write(op, 0, "x", 1);
        ASSERT_EQ(st_wop_operate(st, "data", op), -ECANCELED);
        st_wop_destroy(op);
    }
    op = st_wop_create();
    st_wop_fence_guard(op, "hdr", "gen", "7", 1);
    st_wop_write(op, 0, "fresh", 5);
    ASSERT_OK(st_wop_operate(st, "data", op));
    /* The same op through aio. */
    ASSERT_OK(st_omap_set(st, "hdr", "gen", "8", 1));
    struct fence_aio ar = {1};
    ASSERT_OK(st_aio_operate(st, "data", op, fence_aio_cb, &ar)); /* consumed */
    st_aio_wait(st);
    ASSERT_EQ(ar.result, T.rados ? 0 : -ECANCELED);
    ASSERT_EQ(st_read(st, "data", 0, r, 5), 5);
    ASSERT_MEMEQ(r, "fresh", 5);
    /* Bad arguments are the op's error. */
    op = st_wop_create();
    st_wop_fence_guard(op, "hdr", "gen", NULL, 0);
    ASSERT_EQ(st_wop_operate(st, "data", op), -EINVAL);
    st_wop_destroy(op);

    ASSERT_EQ(st_fence(st, "-", 0), -EINVAL);
    ASSERT_EQ(st_fence(st, "a b", 0), -EINVAL);
    if (!T.rados) {
        ASSERT_STREQ(id, "-");
        ASSERT_EQ(st_fence(st, "127.0.0.1:0/1", 0), -EOPNOTSUPP);
        return;
    }
    ASSERT_EQ(st_fence(st, id, 0), -EINVAL); /* never ourselves */
    st_store *st2 = NULL;
    ASSERT_OK(open_store(&st2));
    ASSERT_OK(st_fence_id(st2, id2, sizeof id2));
    ASSERT(strcmp(id, id2) != 0); /* one identity per handle */
    ASSERT_OK(st_write(st2, "victim", 0, "ok", 2));
    ASSERT_OK(st_fence(st, id2, 60));
    /* Ordered after our next op on an object: an OSD serves it only once
     * it has the map that refuses st2 (an op st2 got in before that,
     * at an OSD without the map yet, would be overwritten by ours). */
    ASSERT_OK(st_write(st, "victim", 0, "go", 2));
    ASSERT_OK(st_omap_set(st, "hdr", "gen", "8", 1));
    ASSERT_EQ(st_write(st2, "victim", 0, "no", 2), -ESHUTDOWN);
    ASSERT_EQ(st_read(st2, "victim", 0, r, 2), -ESHUTDOWN);
    ASSERT_EQ(st_omap_set(st2, "hdr", "gen", "9", 1), -ESHUTDOWN);
    st_close(st2); /* closing a fenced handle works */
    /* A fork(2) child's first handle and its parent's next one have
     * different identities (Ceph draws the address nonce from a
     * thread-local engine the child would share: store_rados.c). */
    int pfd[2];
    ASSERT_OK(pipe(pfd));
    /* The parent's handles are closed first (their librados threads
     * stopped: a fork copies a lock such a thread may hold, and the child
     * could hang on it); what this checks, the thread-local engine the
     * parent's handles initialised, stays. */
    st_close(st);
    T.st = st = NULL;
    pid_t pid = (fork)(); /* a bare fork on purpose: this is the case */
    ASSERT(pid >= 0);
    if (pid == 0) {
        st_store *c = NULL;
        char cid[512] = "";
        if (open_store(&c) == 0) st_fence_id(c, cid, sizeof cid);
        if (write(pfd[1], cid, sizeof cid) != (ssize_t)sizeof cid) _exit(3);
        st_close(c);
        _exit(0);
    }
    char cid[512];
    ASSERT_EQ(read(pfd[0], cid, sizeof cid), (ssize_t)sizeof cid);
    wait_ok(pid);
    ASSERT_OK(open_store(&st2));
    ASSERT_OK(st_fence_id(st2, id2, sizeof id2));
    st_close(st2);
    ASSERT(cid[0] != 0);
    if (strcmp(cid, id2) == 0) TT_FAIL("child and parent share %s", cid);
    close(pfd[0]);
    close(pfd[1]);
    ASSERT_OK(open_store(&T.st));
    st = T.st;
    ASSERT_EQ(st_read(st, "victim", 0, r, 2), 2);
    ASSERT_MEMEQ(r, "go", 2);
}

/* ------------------------------------------------------- concurrency -- */

/* Two processes write interleaved 4 KiB blocks of one object and append
 * records to another; every block and record must come out whole. */
TT_CHILD(two_writers)
{
    enum { BLOCKS = 64, BS = 4096, RECS = 100, RS = 300 };
    int p = child_store_arg(arg);
    st_store *s2 = NULL;
    char b[BS];
    if (open_store(&s2)) return 2;
    for (int i = 0; i < BLOCKS; i++) {
        if (i % 2 != p) continue;
        memset(b, 'A' + (i % 26), sizeof b);
        if (st_write(s2, "blocks", (uint64_t)i * BS, b, BS)) return 3;
    }
    for (int i = 0; i < RECS; i++) {
        memset(b, p ? 'q' : 'p', RS);
        snprintf(b, 32, "%d:%04d", p, i);
        if (st_append(s2, "log", b, RS)) return 4;
    }
    st_close(s2);
    return 0;
}

STORE_TEST(two_writers)
{
    enum { BLOCKS = 64, BS = 4096, RECS = 100, RS = 300 };
    pid_t pids[2];
    for (int p = 0; p < 2; p++)
        pids[p] = spawn_store_child("two_writers", p);
    for (int p = 0; p < 2; p++)
        wait_ok(pids[p]);

    char *buf = malloc(BLOCKS * BS);
    ASSERT_EQ(st_read(st, "blocks", 0, buf, BLOCKS * BS), BLOCKS * BS);
    for (int i = 0; i < BLOCKS; i++)
        for (int j = 0; j < BS; j++)
            ASSERT_EQ(buf[i * BS + j], 'A' + (i % 26));
    ASSERT_UEQ(size_of(st, "log"), 2 * RECS * RS);
    ASSERT_EQ(st_read(st, "log", 0, buf, 2 * RECS * RS), 2 * RECS * RS);
    int next[2] = {0, 0};
    for (int i = 0; i < 2 * RECS; i++) {
        char *rec = buf + i * RS;
        int p = -1, n = -1;
        ASSERT_EQ(sscanf(rec, "%d:%d", &p, &n), 2);
        ASSERT(p == 0 || p == 1);
        ASSERT_EQ(n, next[p]); /* each writer's records in its order */
        next[p]++;
        for (int j = (int)strlen(rec) + 1; j < RS; j++)
            ASSERT_EQ(rec[j], p ? 'q' : 'p');
    }
    free(buf);
}

struct thr {
    st_store *st;
    int id, err;
};

static void *thr_main(void *arg)
{
    struct thr *t = arg;
    char oid[32], b[8192], r[8192];
    snprintf(oid, sizeof oid, "thr-%d", t->id);
    for (int i = 0; i < 40 && !t->err; i++) {
        fill(b, sizeof b, (unsigned)(t->id * 1000 + i));
        if (st_write(t->st, oid, (uint64_t)(i % 8) * sizeof b, b, sizeof b) ||
            st_read(t->st, oid, (uint64_t)(i % 8) * sizeof b, r, sizeof r) !=
                (ssize_t)sizeof r ||
            memcmp(b, r, sizeof b) || st_append(t->st, "thr-shared", b, 64))
            t->err = 1;
    }
    return NULL;
}

/* One handle shared by several threads. */
STORE_TEST(threads)
{
    enum { N = 6 };
    pthread_t th[N];
    struct thr t[N];
    for (int i = 0; i < N; i++) {
        t[i] = (struct thr){st, i, 0};
        ASSERT_EQ(pthread_create(&th[i], NULL, thr_main, &t[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        ASSERT_EQ(t[i].err, 0);
    }
    ASSERT_UEQ(size_of(st, "thr-shared"), N * 40 * 64);
}

static void *cas_thr(void *arg)
{
    struct thr *t = arg;
    for (int i = 0; i < 25 && !t->err;) {
        char *v = NULL, nv[32];
        size_t len = 0;
        int r = st_omap_get(t->st, "tcounter", "n", &v, &len);
        if (r && r != -ENOENT) {
            t->err = r;
            break;
        }
        int n = snprintf(nv, sizeof nv, "%ld", (r == 0 ? atol(v) : 0) + 1);
        r = st_omap_cas(t->st, "tcounter", "n", r == 0 ? v : NULL, len, nv,
                        (size_t)n);
        free(v);
        if (r == 0)
            i++;
        else if (r != -ECANCELED)
            t->err = r;
    }
    return NULL;
}

/* Threads of one process racing on one counter by compare-and-set: with
 * sqlite's group commit, conflicting CAS land in the same transaction and
 * each must still see the one before it. */
STORE_TEST(threads_cas)
{
    enum { N = 8 };
    pthread_t th[N];
    struct thr t[N];
    for (int i = 0; i < N; i++) {
        t[i] = (struct thr){st, i, 0};
        ASSERT_EQ(pthread_create(&th[i], NULL, cas_thr, &t[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        ASSERT_EQ(t[i].err, 0);
    }
    char *v = NULL;
    size_t len;
    ASSERT_OK(st_omap_get(st, "tcounter", "n", &v, &len));
    ASSERT_EQ(atol(v), N * 25);
    free(v);
}

struct aio_state {
    pthread_mutex_t mu;
    int done, failed, canceled;
};

static void aio_cb(int result, void *arg)
{
    struct aio_state *a = arg;
    pthread_mutex_lock(&a->mu);
    a->done++;
    if (result == -ECANCELED)
        a->canceled++;
    else if (result < 0)
        a->failed++;
    pthread_mutex_unlock(&a->mu);
}

STORE_TEST(aio)
{
    enum { N = 64, BS = 4096 };
    struct aio_state a = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0};
    char b[BS], r[BS];
    for (int i = 0; i < N; i++) {
        st_wop *op = st_wop_create();
        fill(b, BS, (unsigned)i);
        st_wop_write(op, (uint64_t)i * BS, b, BS);
        st_wop_omap_set(op, "last", "x", 1);
        ASSERT_OK(
            st_aio_operate(st, i % 2 ? "aio-a" : "aio-b", op, aio_cb, &a));
    }
    /* Ops whose guard fails report it through the callback. */
    for (int i = 0; i < 4; i++) {
        st_wop *op = st_wop_create();
        st_wop_omap_cmp(op, "last", "y", 1);
        st_wop_write(op, 0, "zzzz", 4);
        ASSERT_OK(st_aio_operate(st, "aio-a", op, aio_cb, &a));
    }
    /* A value guard on a missing object: -ECANCELED, nothing created. */
    st_wop *miss = st_wop_create();
    st_wop_omap_cmp(miss, "last", "x", 1);
    st_wop_write(miss, 0, "zzzz", 4);
    ASSERT_OK(st_aio_operate(st, "aio-missing", miss, aio_cb, &a));
    /* An absent-guard op completes through the callback as well. */
    st_wop *abs = st_wop_create();
    st_wop_omap_cmp(abs, "k", NULL, 0);
    st_wop_omap_set(abs, "k", "1", 1);
    ASSERT_OK(st_aio_operate(st, "aio-abs", abs, aio_cb, &a));
    /* A poisoned op is refused at once and its callback never runs. */
    st_wop *bad = st_wop_create();
    st_wop_write(bad, UINT64_MAX, "x", 1);
    ASSERT_EQ(st_aio_operate(st, "aio-a", bad, aio_cb, &a), -EFBIG);
    st_aio_wait(st);
    pthread_mutex_lock(&a.mu);
    ASSERT_EQ(a.done, N + 6);
    ASSERT_EQ(a.failed, 0);
    ASSERT_EQ(a.canceled, 5);
    pthread_mutex_unlock(&a.mu);
    ASSERT_EQ(st_stat(st, "aio-missing", NULL, NULL), -ENOENT);
    char *v = NULL;
    size_t vlen;
    ASSERT_OK(st_omap_get(st, "aio-abs", "k", &v, &vlen));
    ASSERT_STREQ(v, "1");
    free(v);
    for (int i = 0; i < N; i++) {
        fill(b, BS, (unsigned)i);
        ASSERT_EQ(
            st_read(st, i % 2 ? "aio-a" : "aio-b", (uint64_t)i * BS, r, BS),
            BS);
        ASSERT_MEMEQ(r, b, BS);
    }
    st_aio_wait(st); /* nothing in flight: returns at once */
}

/* st_close waits for the aio still in flight. */
STORE_TEST(aio_close)
{
    struct aio_state a = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0};
    char b[4096];
    for (int i = 0; i < 16; i++) {
        st_wop *op = st_wop_create();
        fill(b, sizeof b, (unsigned)i);
        st_wop_write(op, (uint64_t)i * sizeof b, b, sizeof b);
        ASSERT_OK(st_aio_operate(st, "closing", op, aio_cb, &a));
    }
    st_close(st);
    ASSERT_EQ(a.done, 16);
    ASSERT_EQ(a.failed, 0);
    ASSERT_OK(open_store(&T.st));
    st = T.st;
    ASSERT_UEQ(size_of(st, "closing"), 16 * sizeof b);
    char r[4096];
    ASSERT_EQ(st_read(st, "closing", 15 * sizeof b, r, sizeof r), 4096);
    fill(b, sizeof b, 15);
    ASSERT_MEMEQ(r, b, sizeof b);
}

/* Data survives closing and reopening the store. */
STORE_TEST(reopen)
{
    char r[8];
    ASSERT_OK(st_write_full(st, "keep", "persist", 7));
    ASSERT_OK(st_omap_set(st, "keep", "k", "v", 1));
    st_close(st);
    ASSERT_OK(open_store(&T.st));
    st = T.st;
    ASSERT_EQ(st_read(st, "keep", 0, r, sizeof r), 7);
    ASSERT_MEMEQ(r, "persist", 7);
    char *v = NULL;
    size_t len;
    ASSERT_OK(st_omap_get(st, "keep", "k", &v, &len));
    ASSERT_STREQ(v, "v");
    free(v);
}

TEST(config_errors)
{
    st_store *st = (st_store *)1;
    struct st_config cfg = {.backend = "nosuch"};
    ASSERT_EQ(st_open(&cfg, &st), -EINVAL);
    ASSERT(st == NULL);
    ASSERT_EQ(st_open(NULL, &st), -EINVAL);
    cfg.backend = "sqlite";
    ASSERT_EQ(st_open(&cfg, &st), -EINVAL); /* no db_path */
    cfg.db_path = "/nonexistent-dir/x/y.db";
    ASSERT_EQ(st_open(&cfg, &st), -ENOENT);
    cfg.backend = "rados";
    ASSERT_EQ(st_open(&cfg, &st), -EINVAL); /* no pool */
    st_close(NULL);
}

/* rados only: what opening reports, and values not written by us. */
TEST(rados_open_errors)
{
    setup(1, "open_errors");
    st_store *st2 = NULL;
    struct st_config cfg = {.backend = "rados",
                            .ceph_conf = getenv("TANDEM_CEPH_CONF"),
                            .keyring = getenv("TANDEM_CEPH_KEYRING"),
                            .client_id = getenv("TANDEM_CEPH_CLIENT"),
                            .pool = "tandem-no-such-pool",
                            .op_timeout_s = 5};
    ASSERT_EQ(st_open(&cfg, &st2), -ENOENT);
    cfg.pool = getenv("TANDEM_CEPH_POOL_A");
    cfg.keyring = "/nonexistent/keyring";
    ASSERT(st_open(&cfg, &st2) < 0);
    cfg.keyring = getenv("TANDEM_CEPH_KEYRING");
    cfg.client_id = "client.admin"; /* the long form works too */
    ASSERT_OK(st_open(&cfg, &st2));
    ASSERT_OK(st_ping(st2));
    st_close(st2);

    /* No monitor listening: a bounded failure, not a hang. */
    char conf[600];
    snprintf(conf, sizeof conf, "%s/test-store-nomon-%d.conf",
             getenv("TANDEM_TEST_TMP") ? getenv("TANDEM_TEST_TMP") : "/tmp",
             (int)getpid());
    FILE *f = fopen(conf, "w");
    ASSERT(f != NULL);
    fprintf(f, "[global]\nmon host = 127.0.0.1:9\nauth client required = "
               "none\nlog file = /dev/null\n");
    fclose(f);
    cfg.ceph_conf = conf;
    cfg.keyring = NULL;
    cfg.op_timeout_s = 2;
    time_t t0 = time(NULL);
    int r = st_open(&cfg, &st2);
    unlink(conf);
    ASSERT(r < 0);
    ASSERT_LE(time(NULL) - t0, 20);

    /* An omap value written without the store's tag (by another tool) is
     * refused, not misread. */
    rados_t cl;
    rados_ioctx_t io;
    ASSERT_OK(rados_create2(&cl, "ceph", "client.admin", 0));
    ASSERT_OK(rados_conf_read_file(cl, getenv("TANDEM_CEPH_CONF")));
    ASSERT_OK(rados_conf_set(cl, "keyring", getenv("TANDEM_CEPH_KEYRING")));
    ASSERT_OK(rados_connect(cl));
    ASSERT_OK(rados_ioctx_create(cl, getenv("TANDEM_CEPH_POOL_A"), &io));
    rados_ioctx_set_namespace(io, T.ns);
    rados_write_op_t w = rados_create_write_op();
    const char *k = "raw", *v = "plain";
    size_t vl = 5;
    rados_write_op_omap_set(w, &k, &v, &vl, 1);
    ASSERT_OK(rados_write_op_operate(w, io, "foreign", NULL, 0));
    rados_release_write_op(w);
    rados_ioctx_destroy(io);
    rados_shutdown(cl);
    char *val = NULL;
    size_t len;
    ASSERT_EQ(st_omap_get(T.st, "foreign", "raw", &val, &len), -EIO);
    ASSERT(val == NULL);
    teardown();
}

TT_MAIN()
