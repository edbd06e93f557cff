/*
 * test-journal.c: the volume image and change journal engine on a real
 * store (sqlite always; rados when a test Ceph is configured): volume
 * lifecycle, group commit with many writers, replay after a writer killed
 * at random points, trimming, the journal cap with the dirty-map
 * fallback, tail/apply idempotence and refusal of gaps and corruption,
 * the writer lease and demotion fencing, and a randomized model test.
 */
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>

#include "jr_int.h"
#include "store_int.h"
#include "tbase.h"
#include "tt.h"

/* ---- fixture ---- */

/* Warnings and errors only (TANDEM_LOG_LEVEL overrides): the refusals
 * these tests provoke are logged, the routine events are not. */
__attribute__((constructor)) static void quiet_logs(void)
{
    tlog_init("test-journal", TLOG_WARN);
}

struct fx {
    st_store *st;
    struct st_config cfg;
    char dir[256];
    char db[300];
    char ns[64];
};

static void fx_skip_no_ceph(void)
{
    const char *skip = getenv("TANDEM_CEPH_SKIP");
    if (skip && *skip) TT_SKIP("%s", skip);
    if (!getenv("TANDEM_CEPH_CONF")) TT_SKIP("TANDEM_CEPH_CONF not set");
}

static void fx_config(struct fx *f, const char *backend)
{
    memset(f, 0, sizeof *f);
    if (strcmp(backend, "sqlite") == 0) {
        const char *tmp = getenv("TANDEM_TEST_TMP");
        snprintf(f->dir, sizeof f->dir, "%s/tjr.XXXXXX", tmp ? tmp : "/tmp");
        ASSERT(mkdtemp(f->dir) != NULL);
        snprintf(f->db, sizeof f->db, "%s/a.db", f->dir);
        f->cfg.backend = "sqlite";
        f->cfg.db_path = f->db;
    } else {
        fx_skip_no_ceph();
        f->cfg.backend = "rados";
        f->cfg.ceph_conf = getenv("TANDEM_CEPH_CONF");
        f->cfg.keyring = getenv("TANDEM_CEPH_KEYRING");
        f->cfg.client_id = getenv("TANDEM_CEPH_CLIENT");
        f->cfg.pool = getenv("TANDEM_CEPH_POOL_A");
        if (!f->cfg.pool) f->cfg.pool = "tandem-a";
        /* A namespace per test run keeps tests apart in one pool. */
        snprintf(f->ns, sizeof f->ns, "tjr-%d-%ld", (int)getpid(),
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
                  int role, uint64_t start_seq, uint64_t cap)
{
    struct jr_create_opts o = {.size = size, .object_size = objsz,
                               .role = role, .region = "a",
                               .start_seq = start_seq, .journal_cap = cap};
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

/* ---- lifecycle ---- */

static int count_cb(const char *id, void *arg)
{
    (*(int *)arg)++;
    return 0;
}

static void volume_lifecycle_on(const char *backend)
{
    struct fx f;
    fx_open(&f, backend);
    struct jr_kv meta[] = {{"pvc", "data-0"}, {"ns", "db"}};
    struct jr_create_opts o = {.size = 10 << 20, .region = "a",
                               .meta = meta, .n_meta = 2};
    ASSERT_EQ(jr_volume_create(f.st, "v1", &o), 0);
    ASSERT_EQ(jr_volume_create(f.st, "v1", &o), -EEXIST);
    ASSERT_EQ(jr_volume_create(f.st, "bad/id", &o), -EINVAL);
    o.object_size = 3000;
    ASSERT_EQ(jr_volume_create(f.st, "v2", &o), -EINVAL);
    o.object_size = 0;
    o.role = JR_ROLE_SECONDARY;
    ASSERT_EQ(jr_volume_create(f.st, "v1.d", &o), 0);
    int n = 0;
    ASSERT_EQ(jr_volume_list(f.st, count_cb, &n), 0);
    ASSERT_EQ(n, 2);
    struct jr_info in;
    ASSERT_EQ(jr_volume_stat(f.st, "v1", &in), 0);
    ASSERT_UEQ(in.size, 10 << 20);
    ASSERT_EQ(in.object_size, JR_DEFAULT_OBJECT_SIZE);
    ASSERT_EQ(in.role, JR_ROLE_PRIMARY);
    ASSERT_UEQ(in.epoch, 1);
    ASSERT_STREQ(in.region, "a");
    ASSERT_UEQ(in.head, 0);
    ASSERT_UEQ(in.tail, 1);
    char *v = NULL;
    ASSERT_EQ(jr_meta_get(f.st, "v1", "pvc", &v), 0);
    ASSERT_STREQ(v, "data-0");
    free(v);
    ASSERT_EQ(jr_meta_set(f.st, "v1", "pvc", "data-1"), 0);
    ASSERT_EQ(jr_meta_get(f.st, "v1", "pvc", &v), 0);
    ASSERT_STREQ(v, "data-1");
    free(v);
    ASSERT_EQ(jr_meta_get(f.st, "v1", "nope", &v), -ENOENT);
    ASSERT_EQ(jr_meta_set(f.st, "nosuch", "k", "v"), -ENOENT);

    /* Write something so there are data and journal objects to delete. */
    jr_volume *vol;
    ASSERT_EQ(jr_open(f.st, "v1", JR_OPEN_WRITE, "t", &vol), 0);
    uint8_t buf[8192];
    fill(buf, sizeof buf, 1);
    ASSERT_EQ(jr_write(vol, 4 << 20, buf, sizeof buf), 0);
    ASSERT_EQ(jr_volume_delete(f.st, "v1"), JR_ELOCKED);
    ASSERT_EQ(jr_close(vol), 0);
    ASSERT_EQ(jr_volume_stat(f.st, "v1", &in), 0);
    ASSERT_UEQ(in.head, 1);
    ASSERT_UEQ(in.applied, 1);
    ASSERT_EQ(jr_volume_delete(f.st, "v1"), 0);
    ASSERT_EQ(jr_volume_stat(f.st, "v1", &in), -ENOENT);
    ASSERT_EQ(jr_volume_delete(f.st, "v1"), -ENOENT);
    n = 0;
    ASSERT_EQ(jr_volume_list(f.st, count_cb, &n), 0);
    ASSERT_EQ(n, 1);
    int left = 0;
    ASSERT_EQ(st_list(f.st, "vol/v1/", (st_list_cb)count_cb, &left), 0);
    ASSERT_EQ(left, 0);

    /* The directory: a create interrupted after its key is listed
     * but absent, and the delete a caller then tries tidies it up. */
    ASSERT_EQ(st_omap_set(f.st, "vols", "half", "", 0), 0);
    n = 0;
    ASSERT_EQ(jr_volume_list(f.st, count_cb, &n), 0);
    ASSERT_EQ(n, 2);
    ASSERT_EQ(jr_volume_stat(f.st, "half", &in), -ENOENT);
    ASSERT_EQ(jr_volume_delete(f.st, "half"), -ENOENT);
    n = 0;
    ASSERT_EQ(jr_volume_list(f.st, count_cb, &n), 0);
    ASSERT_EQ(n, 1);
    /* A store from before the directory: built once by listing. */
    ASSERT_EQ(st_remove(f.st, "vols"), 0);
    ASSERT_EQ(st_stat(f.st, "vols", NULL, NULL), -ENOENT);
    n = 0;
    ASSERT_EQ(jr_volume_list(f.st, count_cb, &n), 0);
    ASSERT_EQ(n, 1);
    char *mk = NULL;
    size_t mkl;
    ASSERT_EQ(st_omap_get(f.st, "vols", "=directory", &mk, &mkl), 0);
    free(mk);
    ASSERT_EQ(jr_volume_delete(f.st, "v1.d"), 0);
    n = 0;
    ASSERT_EQ(jr_volume_list(f.st, count_cb, &n), 0);
    ASSERT_EQ(n, 0);
    fx_close(&f);
}

TEST(volume_lifecycle_sqlite)
{
    volume_lifecycle_on("sqlite");
}

TEST(volume_lifecycle_rados)
{
    volume_lifecycle_on("rados");
}

/* Tombstones: a deleted primary with a peer leaves one, a volume
 * without peers or a secondary does not; listing skips values that do
 * not parse; removal is final. */
static int tomb_cb(const struct jr_tomb *t, void *arg)
{
    struct jr_tomb *out = arg;
    if (!strcmp(t->vol_id, "rep")) *out = *t;
    return 0;
}

static void tombstones_on(const char *backend)
{
    struct fx f;
    fx_open(&f, backend);
    struct jr_tomb t, seen = {0};
    ASSERT_EQ(jr_tomb_list(f.st, tomb_cb, &seen), 0); /* none yet */
    mkvol(f.st, "rep", 1 << 20, 0, JR_ROLE_PRIMARY, 0, 0);
    mkvol(f.st, "solo", 1 << 20, 0, JR_ROLE_PRIMARY, 0, 0);
    mkvol(f.st, "sec", 1 << 20, 0, JR_ROLE_SECONDARY, 0, 0);
    ASSERT_EQ(jr_peer_ack_set(f.st, "rep", "b", 0), 0);
    ASSERT_EQ(jr_peer_ack_set(f.st, "sec", "b", 3), 0);
    ASSERT_EQ(jr_role_set(f.st, "rep", JR_ROLE_PRIMARY, 4), 0);
    ASSERT_EQ(jr_volume_delete(f.st, "rep"), 0);
    ASSERT_EQ(jr_volume_delete(f.st, "solo"), 0);
    ASSERT_EQ(jr_volume_delete(f.st, "sec"), 0);
    ASSERT_EQ(jr_tomb_get(f.st, "rep", &t), 0);
    ASSERT_UEQ(t.epoch, 4);
    ASSERT_EQ(t.n_peers, 1);
    ASSERT_STREQ(t.peers[0], "b");
    ASSERT_GT(t.deleted_at, 0);
    ASSERT_EQ(jr_tomb_get(f.st, "solo", &t), -ENOENT);
    ASSERT_EQ(jr_tomb_get(f.st, "sec", &t), -ENOENT);
    /* A value that does not parse is reported, skipped, never acted on. */
    ASSERT_EQ(st_omap_set(f.st, "tombs", "junk", "x y", 3), 0);
    ASSERT_EQ(jr_tomb_get(f.st, "junk", &t), JR_ECORRUPT);
    ASSERT_EQ(jr_tomb_list(f.st, tomb_cb, &seen), 0);
    ASSERT_STREQ(seen.vol_id, "rep");
    ASSERT_UEQ(seen.epoch, 4);
    ASSERT_EQ(jr_tomb_remove(f.st, "rep"), 0);
    ASSERT_EQ(jr_tomb_remove(f.st, "rep"), -ENOENT);
    ASSERT_EQ(jr_tomb_get(f.st, "rep", &t), -ENOENT);
    fx_close(&f);
}

TEST(tombstones_sqlite)
{
    tombstones_on("sqlite");
}

TEST(tombstones_rados)
{
    tombstones_on("rados");
}

TEST(write_read_reopen_sparse)
{
    struct fx f;
    fx_open(&f, "sqlite");
    mkvol(f.st, "v", 3 << 20, 64 << 10, 0, 0, 0);
    jr_volume *v;
    ASSERT_EQ(jr_open(f.st, "v", JR_OPEN_WRITE, "t", &v), 0);
    uint8_t *w = malloc(200000), *r = malloc(3 << 20), *z = calloc(1, 3 << 20);
    fill(w, 200000, 2);
    ASSERT_EQ(jr_read(v, 0, r, 3 << 20), 0);
    ASSERT_MEMEQ(r, z, 3 << 20); /* sparse: zeros */
    ASSERT_EQ(jr_write(v, 100000, w, 200000), 0); /* spans objects */
    ASSERT_EQ(jr_read(v, 100000, r, 200000), 0);   /* overlay or image */
    ASSERT_MEMEQ(r, w, 200000);
    ASSERT_EQ(jr_write(v, (3 << 20) - 10, w, 11), -EINVAL);
    ASSERT_EQ(jr_read(v, (3 << 20) - 10, r, 11), -EINVAL);
    ASSERT_EQ(jr_discard(v, 150000, 1000), 0);
    ASSERT_EQ(jr_flush(v), 0);
    ASSERT_EQ(jr_read(v, 150000, r, 1000), 0);
    ASSERT_MEMEQ(r, z, 1000);
    ASSERT_EQ(jr_close(v), 0);
    /* Read-only reopen sees it all. */
    ASSERT_EQ(jr_open(f.st, "v", 0, NULL, &v), 0);
    ASSERT_EQ(jr_read(v, 100000, r, 50000), 0);
    ASSERT_MEMEQ(r, w, 50000);
    ASSERT_EQ(jr_read(v, 150000, r, 1000), 0);
    ASSERT_MEMEQ(r, z, 1000);
    ASSERT_EQ(jr_read(v, 151000, r, 149000), 0);
    ASSERT_MEMEQ(r, w + 51000, 149000);
    ASSERT_EQ(jr_write(v, 0, w, 10), -EROFS);
    ASSERT_EQ(jr_close(v), 0);
    free(w);
    free(r);
    free(z);
    fx_close(&f);
}

/* ---- roles, epochs, acks, lease ---- */

TEST(roles_epochs_acks)
{
    struct fx f;
    fx_open(&f, "sqlite");
    mkvol(f.st, "v", 1 << 20, 0, 0, 0, 0);
    ASSERT_EQ(jr_role_set(f.st, "v", JR_ROLE_SECONDARY, 1), 0);
    ASSERT_EQ(jr_role_set(f.st, "v", JR_ROLE_SECONDARY, 1), 0); /* no-op */
    ASSERT_EQ(jr_role_set(f.st, "v", JR_ROLE_PRIMARY, 3), 0);
    ASSERT_EQ(jr_role_set(f.st, "v", JR_ROLE_SECONDARY, 2), JR_ESTALE);
    struct jr_info in;
    ASSERT_EQ(jr_volume_stat(f.st, "v", &in), 0);
    ASSERT_EQ(in.role, JR_ROLE_PRIMARY);
    ASSERT_UEQ(in.epoch, 3);
    uint64_t a = 0;
    ASSERT_EQ(jr_peer_ack_get(f.st, "v", "b", &a), -ENOENT);
    ASSERT_EQ(jr_peer_ack_set(f.st, "v", "b", 5), 0);
    ASSERT_EQ(jr_peer_ack_set(f.st, "v", "b", 3), 0); /* ignored */
    ASSERT_EQ(jr_peer_ack_get(f.st, "v", "b", &a), 0);
    ASSERT_UEQ(a, 5);
    ASSERT_EQ(jr_peer_ack_set(f.st, "nosuch", "b", 3), -ENOENT);
    /* A secondary cannot be opened writable. */
    ASSERT_EQ(jr_role_set(f.st, "v", JR_ROLE_SECONDARY, 3), 0);
    jr_volume *vol;
    ASSERT_EQ(jr_open(f.st, "v", JR_OPEN_WRITE, "t", &vol), JR_EROLE);
    fx_close(&f);
}

static void lease_and_fencing_on(const char *backend)
{
    struct fx f;
    fx_open(&f, backend);
    /* node-b is another client (on rados a holder using the same handle
     * cannot be fenced: JR_ELOCKED, checked below). */
    st_store *sb = fx_store(&f);
    mkvol(f.st, "v", 1 << 20, 0, 0, 0, 0);
    jr_volume *a, *b;
    uint8_t buf[4096] = {1};
    ASSERT_EQ(jr_open(f.st, "v", JR_OPEN_WRITE, "node-a", &a), 0);
    ASSERT_EQ(jr_write(a, 0, buf, sizeof buf), 0);
    /* A live holder is seen renewing: refused within a renewal or two. */
    int64_t t0 = tb_mono_ms();
    ASSERT_EQ(jr_open(sb, "v", JR_OPEN_WRITE, "node-b", &b), JR_ELOCKED);
    ASSERT_LT(tb_mono_ms() - t0, 10000);
    if (strcmp(backend, "rados") == 0)
        ASSERT_EQ(jr_open(f.st, "v", JR_OPEN_WRITE | JR_OPEN_FORCE, "node-b",
                          &b), JR_ELOCKED);
    /* Forced takeover (the holder is presumed dead): the old writer is
     * fenced at its next append and never corrupts the journal. */
    ASSERT_EQ(jr_open(sb, "v", JR_OPEN_WRITE | JR_OPEN_FORCE, "node-b", &b),
              0);
    buf[0] = 2;
    ASSERT_EQ(jr_write(a, 4096, buf, sizeof buf), JR_ELOCKED);
    ASSERT_EQ(jr_volume_error(a), JR_ELOCKED);
    buf[0] = 3;
    ASSERT_EQ(jr_write(b, 4096, buf, sizeof buf), 0);
    ASSERT_EQ(jr_close(a), JR_ELOCKED);
    /* Demotion fences the open writer. */
    ASSERT_EQ(jr_role_set(sb, "v", JR_ROLE_SECONDARY, 2), 0);
    ASSERT_EQ(jr_write(b, 8192, buf, sizeof buf), JR_EROLE);
    jr_close(b);
    struct jr_info in;
    ASSERT_EQ(jr_volume_stat(sb, "v", &in), 0);
    ASSERT_UEQ(in.head, 2);
    jr_volume *r;
    ASSERT_EQ(jr_open(sb, "v", 0, NULL, &r), 0);
    uint8_t got[4096];
    ASSERT_EQ(jr_read(r, 4096, got, 4096), 0);
    ASSERT_EQ(got[0], 3);
    jr_close(r);
    st_close(f.st); /* fenced on rados: the cleanup goes through sb */
    f.st = sb;
    fx_close(&f);
}

TEST(lease_and_fencing_sqlite)
{
    lease_and_fencing_on("sqlite");
}

TEST(lease_and_fencing_rados)
{
    lease_and_fencing_on("rados");
}

/* Issue 8: writer 1's applier is stalled (a paused or partitioned node)
 * holding a durable, acknowledged entry it has not applied; writer 2, on
 * another client, takes the volume over, replays that entry, writes its
 * own and gets the acknowledgement.  Writer 1's applier then wakes with
 * its stale entry: it must not reach the image (before the fencing it did,
 * and writer 2 and every later open read writer 1's older data), writer 1
 * learns it lost the volume, and "applied" does not move back. */
static void fenced_writer_stale_applier_on(const char *backend)
{
    struct fx f;
    fx_open(&f, backend);
    st_store *s2 = fx_store(&f); /* writer 2's node */
    mkvol(f.st, "v", 1 << 20, 64 << 10, 0, 0, 0);
    uint8_t A[4096], B[4096], C[4096], got[4096], zero[4096] = {0};
    memset(A, 'A', sizeof A);
    memset(B, 'B', sizeof B);
    memset(C, 'C', sizeof C);
    jr_volume *w1, *w2, *r;
    setenv("TANDEM_JR_APPLY_DELAY_MS", "1500", 1); /* writer 1 only */
    ASSERT_OK(jr_open(f.st, "v", JR_OPEN_WRITE, "node-1", &w1));
    unsetenv("TANDEM_JR_APPLY_DELAY_MS");
    ASSERT_OK(jr_write(w1, 0, A, sizeof A)); /* acknowledged */
    usleep(200 * 1000); /* its applier took A and stalls */
    int64_t t0 = tb_mono_ms();
    ASSERT_OK(jr_open(s2, "v", JR_OPEN_WRITE | JR_OPEN_FORCE, "node-2", &w2));
    /* Writer 1's acknowledged entry was replayed before writer 2 wrote. */
    ASSERT_OK(jr_read(w2, 0, got, sizeof got));
    ASSERT_MEMEQ(got, A, sizeof got);
    ASSERT_OK(jr_write(w2, 0, B, sizeof B)); /* acknowledged */
    /* Writer 1's applier wakes (~1.5 s) with A and is refused. */
    while (jr_volume_error(w1) == 0 && tb_mono_ms() - t0 < 4000)
        usleep(20 * 1000);
    usleep(300 * 1000); /* whatever it still does, let it do it */
    ASSERT_OK(jr_write(w2, 8192, C, sizeof C));
    ASSERT_OK(jr_read(w2, 0, got, sizeof got));
    ASSERT_MEMEQ(got, B, sizeof got); /* not A */
    /* Writer 1 knows: its next write and its close fail, never acked. */
    ASSERT_EQ(jr_volume_error(w1), JR_ELOCKED);
    ASSERT_EQ(jr_write(w1, 4096, A, sizeof A), JR_ELOCKED);
    ASSERT_EQ(jr_read(w1, 0, got, sizeof got), JR_ELOCKED);
    ASSERT_EQ(jr_close(w1), JR_ELOCKED);
    ASSERT_OK(jr_close(w2));
    struct jr_info in;
    ASSERT_OK(jr_volume_stat(s2, "v", &in));
    ASSERT_UEQ(in.head, 3);
    ASSERT_UEQ(in.applied, 3); /* writer 1's stale "applied" never landed */
    /* Every later open reads writer 2's data. */
    for (int mode = 0; mode < 2; mode++) {
        ASSERT_OK(jr_open(s2, "v", mode ? JR_OPEN_WRITE : 0, "node-3", &r));
        ASSERT_OK(jr_read(r, 0, got, sizeof got));
        ASSERT_MEMEQ(got, B, sizeof got);
        ASSERT_OK(jr_read(r, 4096, got, sizeof got));
        ASSERT_MEMEQ(got, zero, sizeof got); /* writer 1's refused write */
        ASSERT_OK(jr_read(r, 8192, got, sizeof got));
        ASSERT_MEMEQ(got, C, sizeof got);
        ASSERT_OK(jr_close(r));
    }
    if (strcmp(backend, "rados") == 0) {
        /* Writer 1's client is blocklisted for good: its process must
         * open a new store handle (RUNBOOK "A fenced writer"). */
        ASSERT_EQ(st_write(f.st, "probe", 0, "x", 1), -ESHUTDOWN);
    } else {
        ASSERT_OK(jr_open(f.st, "v", 0, NULL, &r));
        ASSERT_OK(jr_read(r, 0, got, sizeof got));
        ASSERT_MEMEQ(got, B, sizeof got);
        jr_close(r);
    }
    st_close(f.st);
    f.st = s2;
    fx_close(&f);
}

TEST(fenced_writer_stale_applier_sqlite)
{
    fenced_writer_stale_applier_on("sqlite");
}

TEST(fenced_writer_stale_applier_rados)
{
    fenced_writer_stale_applier_on("rados");
}

/* A paused writer (SIGSTOP: a frozen VM, a long GC pause) with an entry
 * its applier has not applied.  Without JR_OPEN_FORCE, another process
 * takes the lease only after watching it unchanged for a whole TTL on its
 * own monotonic clock (a short one here, TANDEM_JR_LEASE_TTL_MS); while
 * the holder ran, the same open was refused.  Resumed, the paused writer
 * applies nothing, and its writes and close fail. */
static void paused_writer_expires_on(const char *backend)
{
    setenv("TANDEM_JR_LEASE_TTL_MS", "1500", 1); /* renewals every 100 ms */
    struct fx f;
    fx_open(&f, backend);
    mkvol(f.st, "v", 1 << 20, 64 << 10, 0, 0, 0);
    uint8_t A[4096], B[4096], got[4096], zero[4096] = {0};
    memset(A, 'A', sizeof A);
    memset(B, 'B', sizeof B);
    int up[2], go[2];
    ASSERT_OK(pipe(up));
    ASSERT_OK(pipe(go));
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        char c;
        st_store *st = fx_store(&f);
        jr_volume *v;
        setenv("TANDEM_JR_APPLY_DELAY_MS", "2500", 1);
        if (jr_open(st, "v", JR_OPEN_WRITE, "paused", &v)) _exit(2);
        if (write(up[1], "o", 1) != 1 || read(go[0], &c, 1) != 1) _exit(3);
        if (jr_write(v, 0, A, sizeof A)) _exit(4); /* acknowledged */
        usleep(100 * 1000); /* the applier holds A (sleeping) */
        if (write(up[1], "w", 1) != 1) _exit(5);
        raise(SIGSTOP);
        /* Resumed long after: the stale batch gets its chance. */
        usleep(1000 * 1000);
        int e1 = jr_write(v, 4096, A, sizeof A);
        int e2 = jr_close(v);
        _exit(e1 == JR_ELOCKED && e2 == JR_ELOCKED ? 0 : 10);
    }
    char c;
    ASSERT_EQ(read(up[0], &c, 1), 1);
    st_store *s2 = fx_store(&f);
    jr_volume *w2;
    /* The holder runs and renews: refused quickly. */
    int64_t t0 = tb_mono_ms();
    ASSERT_EQ(jr_open(s2, "v", JR_OPEN_WRITE, "node-2", &w2), JR_ELOCKED);
    ASSERT_LT(tb_mono_ms() - t0, 1400);
    ASSERT_EQ(write(go[1], "g", 1), 1);
    ASSERT_EQ(read(up[0], &c, 1), 1);
    int status;
    ASSERT_EQ(waitpid(pid, &status, WUNTRACED), pid);
    ASSERT(WIFSTOPPED(status));
    /* Paused: no renewal for a whole TTL, seen by us alone. */
    t0 = tb_mono_ms();
    ASSERT_OK(jr_open(s2, "v", JR_OPEN_WRITE, "node-2", &w2));
    ASSERT_GE(tb_mono_ms() - t0, 1400);
    ASSERT_OK(jr_read(w2, 0, got, sizeof got));
    ASSERT_MEMEQ(got, A, sizeof got); /* its acknowledged write: replayed */
    ASSERT_OK(jr_write(w2, 0, B, sizeof B));
    ASSERT_OK(kill(pid, SIGCONT));
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);
    ASSERT_OK(jr_read(w2, 0, got, sizeof got));
    ASSERT_MEMEQ(got, B, sizeof got);
    ASSERT_OK(jr_close(w2));
    jr_volume *r;
    ASSERT_OK(jr_open(s2, "v", 0, NULL, &r));
    ASSERT_OK(jr_read(r, 0, got, sizeof got));
    ASSERT_MEMEQ(got, B, sizeof got);
    ASSERT_OK(jr_read(r, 4096, got, sizeof got));
    ASSERT_MEMEQ(got, zero, sizeof got);
    jr_close(r);
    st_close(s2);
    fx_close(&f);
    unsetenv("TANDEM_JR_LEASE_TTL_MS");
}

TEST(paused_writer_expires_sqlite)
{
    paused_writer_expires_on("sqlite");
}

TEST(paused_writer_expires_rados)
{
    paused_writer_expires_on("rados");
}

/* "applied" never moves back: a stale compare-and-set is dropped
 * when the recorded position is already further; a guard that fails is
 * reported (-ECANCELED), nothing written. */
TEST(applied_never_moves_back)
{
    struct fx f;
    fx_open(&f, "sqlite");
    mkvol(f.st, "v", 1 << 20, 64 << 10, 0, 0, 0);
    char hoid[JR_OID_MAX], raw[64], *val = NULL;
    size_t len;
    jr__oid_header(hoid, sizeof hoid, "v");
    ASSERT_OK(jr__applied_set(f.st, "v", NULL, "0 1048576", 5, 1048576, 0, raw,
                              sizeof raw));
    ASSERT_STREQ(raw, "5 1048576");
    /* A writer that saw "0 ..." and wants 3: dropped, 5 stays. */
    ASSERT_OK(jr__applied_set(f.st, "v", NULL, "0 1048576", 3, 1048576, 0, raw,
                              sizeof raw));
    ASSERT_STREQ(raw, "5 1048576");
    ASSERT_OK(st_omap_get(f.st, hoid, "applied", &val, &len));
    ASSERT_STREQ(val, "5 1048576");
    free(val);
    /* A stale view, but a later position: recorded. */
    ASSERT_OK(jr__applied_set(f.st, "v", NULL, "0 1048576", 7, 1048576, 0, raw,
                              sizeof raw));
    ASSERT_STREQ(raw, "7 1048576");
    /* Fenced: nothing written. */
    ASSERT_OK(st_omap_set(f.st, hoid, "fence", "2 tok", 5));
    struct jr__guard g = {"fence", "1 old"};
    ASSERT_EQ(jr__applied_set(f.st, "v", &g, "7 1048576", 9, 1048576, 0, NULL,
                              0), -ECANCELED);
    ASSERT_OK(st_omap_get(f.st, hoid, "applied", &val, &len));
    ASSERT_STREQ(val, "7 1048576");
    free(val);
    fx_close(&f);
}

/* ---- group commit ---- */

struct gc_arg {
    jr_volume *v;
    int id;
    int n;
};

static void *gc_writer(void *p)
{
    struct gc_arg *a = p;
    uint8_t buf[4096];
    for (int i = 0; i < a->n; i++) {
        fill(buf, sizeof buf, (uint64_t)a->id * 100000 + (uint64_t)i);
        uint64_t off = ((uint64_t)a->id * a->n + (uint64_t)i) * 4096;
        if (jr_write(a->v, off, buf, sizeof buf) != 0) return (void *)1;
        /* Read-your-write, through the overlay or the image. */
        uint8_t got[4096];
        if (jr_read(a->v, off, got, sizeof got) != 0 ||
            memcmp(got, buf, sizeof buf) != 0)
            return (void *)2;
    }
    return NULL;
}

static void group_commit_many_writers_on(const char *backend)
{
    struct fx f;
    fx_open(&f, backend);
    enum { T = 32, N = 40 };
    mkvol(f.st, "v", (uint64_t)T * N * 4096, 256 << 10, 0, 0, 0);
    jr_volume *v;
    ASSERT_EQ(jr_open(f.st, "v", JR_OPEN_WRITE, "t", &v), 0);
    pthread_t th[T];
    struct gc_arg args[T];
    for (int i = 0; i < T; i++) {
        args[i] = (struct gc_arg){v, i, N};
        ASSERT_EQ(pthread_create(&th[i], NULL, gc_writer, &args[i]), 0);
    }
    for (int i = 0; i < T; i++) {
        void *rv;
        pthread_join(th[i], &rv);
        ASSERT_EQ((long)rv, 0);
    }
    struct jr_stats s;
    ASSERT_EQ(jr_get_stats(v, &s), 0);
    printf("  entries=%" PRIu64 " commits=%" PRIu64 " apply_batches=%" PRIu64
           "\n", s.entries, s.commits, s.apply_batches);
    ASSERT_UEQ(s.entries, T * N);
    ASSERT_LT(s.commits, s.entries); /* writers shared appends */
    ASSERT_EQ(jr_close(v), 0);
    ASSERT_EQ(jr_open(f.st, "v", 0, NULL, &v), 0);
    uint8_t buf[4096], got[4096];
    for (int id = 0; id < T; id++)
        for (int i = 0; i < N; i++) {
            fill(buf, sizeof buf, (uint64_t)id * 100000 + (uint64_t)i);
            ASSERT_EQ(jr_read(v, ((uint64_t)id * N + (uint64_t)i) * 4096, got,
                              4096), 0);
            ASSERT_MEMEQ(got, buf, 4096);
        }
    jr_close(v);
    fx_close(&f);
}

TEST(group_commit_many_writers_sqlite)
{
    group_commit_many_writers_on("sqlite");
}

TEST(group_commit_many_writers_rados)
{
    group_commit_many_writers_on("rados");
}

/* ---- crash between journal and image ---- */

/* Child: writers on disjoint blocks, each writes versions 1, 2, ... of
 * its blocks and reports every acknowledged (block, version) on the pipe. */
struct cr_arg {
    jr_volume *v;
    int fd;
    int id;
    pthread_mutex_t *mu;
};

enum { CR_T = 8, CR_BLOCKS = 64, CR_BS = 8192 };

static void cr_pattern(uint8_t *b, uint32_t block, uint32_t version)
{
    fill(b, CR_BS, (uint64_t)block << 32 | version);
    memcpy(b, &block, 4);
    memcpy(b + 4, &version, 4);
}

static void *cr_writer(void *p)
{
    struct cr_arg *a = p;
    uint8_t buf[CR_BS];
    uint32_t ver[CR_BLOCKS / CR_T] = {0};
    unsigned seed = (unsigned)a->id * 7919u + (unsigned)getpid();
    for (;;) {
        uint32_t k = (uint32_t)rand_r(&seed) % (CR_BLOCKS / CR_T);
        uint32_t block = (uint32_t)a->id * (CR_BLOCKS / CR_T) + k;
        uint32_t version = ++ver[k];
        cr_pattern(buf, block, version);
        if (jr_write(a->v, (uint64_t)block * CR_BS, buf, CR_BS) != 0) _exit(3);
        uint32_t msg[2] = {block, version};
        pthread_mutex_lock(a->mu);
        if (write(a->fd, msg, sizeof msg) != sizeof msg) _exit(4);
        pthread_mutex_unlock(a->mu);
    }
    return NULL;
}

static void crash_round(struct fx *f, int round, uint32_t *acked)
{
    int pfd[2];
    ASSERT_EQ(pipe(pfd), 0);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        close(pfd[0]);
        st_store *st = fx_store(f);
        jr_volume *v;
        if (jr_open(st, "v", JR_OPEN_WRITE | JR_OPEN_FORCE, "child", &v) != 0)
            _exit(2);
        pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
        pthread_t th[CR_T];
        struct cr_arg args[CR_T];
        for (int i = 0; i < CR_T; i++) {
            args[i] = (struct cr_arg){v, pfd[1], i, &mu};
            pthread_create(&th[i], NULL, cr_writer, &args[i]);
        }
        for (;;) pause();
    }
    close(pfd[1]);
    /* Kill after a random number of acknowledgements (0..~600), i.e. at a
     * random point of the commit/apply pipeline. */
    srand((unsigned)(round * 31 + 7));
    int target = rand() % 600;
    int got = 0;
    uint32_t msg[2];
    while (got < target && read(pfd[0], msg, sizeof msg) == sizeof msg) {
        if (msg[1] > acked[msg[0]]) acked[msg[0]] = msg[1];
        got++;
    }
    kill(pid, SIGKILL);
    while (read(pfd[0], msg, sizeof msg) == sizeof msg)
        if (msg[1] > acked[msg[0]]) acked[msg[0]] = msg[1];
    close(pfd[0]);
    int status;
    waitpid(pid, &status, 0);
    ASSERT(WIFSIGNALED(status));
}

static void crash_check(st_store *st, const uint32_t *acked, uint32_t *seen)
{
    jr_volume *v;
    ASSERT_EQ(jr_open(st, "v", JR_OPEN_WRITE | JR_OPEN_FORCE, "parent", &v), 0);
    uint8_t buf[CR_BS], want[CR_BS];
    for (uint32_t b = 0; b < CR_BLOCKS; b++) {
        ASSERT_EQ(jr_read(v, (uint64_t)b * CR_BS, buf, CR_BS), 0);
        uint32_t ver;
        memcpy(&ver, buf + 4, 4);
        /* Every acknowledged write is there; at most the one write that
         * was in flight for this block may be newer. */
        if (acked[b] == 0 && ver == 0) continue;
        if (ver != acked[b] && ver != acked[b] + 1)
            TT_FAIL("block %u: version %u, acked %u", b, ver, acked[b]);
        cr_pattern(want, b, ver);
        ASSERT_MEMEQ(buf, want, CR_BS);
        seen[b] = ver;
    }
    ASSERT_EQ(jr_close(v), 0);
}

static void replay_after_kill_on(const char *backend, int rounds)
{
    struct fx f;
    fx_config(&f, backend);
    st_store *st = fx_store(&f);
    mkvol(st, "v", CR_BLOCKS * CR_BS, 64 << 10, 0, 0, 0);
    st_close(st);
    uint32_t acked[CR_BLOCKS] = {0}, seen[CR_BLOCKS] = {0};
    for (int round = 0; round < rounds; round++) {
        crash_round(&f, round, acked);
        st = fx_store(&f);
        crash_check(st, acked, seen);
        st_close(st);
        /* The next child starts from what survived (per block, the
         * version it found); the child's counters restart at 1, so carry
         * on with fresh blocks' semantics: reset the volume. */
        st = fx_store(&f);
        ASSERT_EQ(jr_volume_delete(st, "v"), 0);
        mkvol(st, "v", CR_BLOCKS * CR_BS, 64 << 10, 0, 0, 0);
        st_close(st);
        memset(acked, 0, sizeof acked);
    }
    f.st = fx_store(&f);
    fx_close(&f);
}

TEST(replay_after_kill_at_random_points_sqlite)
{
    replay_after_kill_on("sqlite", 6);
}

TEST(replay_after_kill_at_random_points_rados)
{
    replay_after_kill_on("rados", 3);
}

/* ---- tail, apply, trim, cap ---- */

static void copy_volume(st_store *src, const char *sid, st_store *dst,
                        const char *did, uint64_t from, uint64_t *applied)
{
    for (;;) {
        struct jr_batch b;
        ASSERT_EQ(jr_tail_read(src, sid, from, 256 << 10, &b), 0);
        if (b.n_entries == 0) break;
        ASSERT_UEQ(b.first_seq, from);
        ASSERT_EQ(jr_batch_verify(b.data, b.len, NULL, NULL, NULL), 0);
        ASSERT_EQ(jr_apply(dst, did, b.data, b.len, applied), 0);
        ASSERT_UEQ(*applied, b.last_seq);
        /* Applying the same batch again changes nothing. */
        ASSERT_EQ(jr_apply(dst, did, b.data, b.len, applied), 0);
        ASSERT_UEQ(*applied, b.last_seq);
        from = b.last_seq + 1;
        jr_batch_free(&b);
    }
}

static void same_image(st_store *a, const char *ia, st_store *b,
                       const char *ib, uint64_t size)
{
    uint8_t *x = malloc(size), *y = malloc(size);
    jr_volume *va, *vb;
    ASSERT_EQ(jr_open(a, ia, 0, NULL, &va), 0);
    ASSERT_EQ(jr_open(b, ib, 0, NULL, &vb), 0);
    ASSERT_EQ(jr_read(va, 0, x, size), 0);
    ASSERT_EQ(jr_read(vb, 0, y, size), 0);
    ASSERT_MEMEQ(x, y, size);
    jr_close(va);
    jr_close(vb);
    free(x);
    free(y);
}

struct ranges {
    uint64_t off[256], len[256];
    int n;
};

static int range_cb(uint64_t off, uint64_t len, void *arg)
{
    struct ranges *r = arg;
    if (r->n < 256) {
        r->off[r->n] = off;
        r->len[r->n] = len;
    }
    r->n++;
    return 0;
}

static void tail_apply_idempotent_and_refusals_on(const char *backend)
{
    struct fx f;
    fx_open(&f, backend);
    mkvol(f.st, "p", 4 << 20, 64 << 10, 0, 0, 0);
    mkvol(f.st, "s", 4 << 20, 64 << 10, JR_ROLE_SECONDARY, 1, 0);
    jr_volume *v;
    ASSERT_EQ(jr_open(f.st, "p", JR_OPEN_WRITE, "t", &v), 0);
    uint8_t buf[65536];
    for (int i = 0; i < 40; i++) {
        fill(buf, sizeof buf, (uint64_t)i);
        if (i % 2) memset(buf + 1000, 0, 30000); /* compressible */
        ASSERT_EQ(jr_write(v, (uint64_t)(i * 37 % 60) * 65536 + 1000, buf,
                           sizeof buf), 0);
        if (i % 7 == 0) ASSERT_EQ(jr_discard(v, (uint64_t)i * 50000, 70000), 0);
    }
    ASSERT_EQ(jr_resize(v, 3 << 20), 0);
    ASSERT_EQ(jr_resize(v, 5 << 20), 0);
    ASSERT_EQ(jr_flush(v), 0);
    ASSERT_EQ(jr_close(v), 0);
    uint64_t applied = 0;
    copy_volume(f.st, "p", f.st, "s", 1, &applied);
    struct jr_info pi, si;
    ASSERT_EQ(jr_volume_stat(f.st, "p", &pi), 0);
    ASSERT_EQ(jr_volume_stat(f.st, "s", &si), 0);
    ASSERT_UEQ(applied, pi.head);
    ASSERT_UEQ(si.head, pi.head);
    ASSERT_UEQ(si.applied, pi.head);
    ASSERT_UEQ(si.size, 5 << 20);
    same_image(f.st, "p", f.st, "s", 5 << 20);

    /* Refusals: nothing of a refused batch is applied. */
    struct jr_batch b;
    ASSERT_EQ(jr_tail_read(f.st, "p", 3, 1 << 20, &b), 0);
    ASSERT_EQ(jr_apply(f.st, "p", b.data, b.len, &applied), JR_EROLE);
    mkvol(f.st, "s2", 4 << 20, 64 << 10, JR_ROLE_SECONDARY, 1, 0);
    ASSERT_EQ(jr_apply(f.st, "s2", b.data, b.len, &applied), JR_EGAP);
    jr_batch_free(&b);
    ASSERT_EQ(jr_tail_read(f.st, "p", 1, 1 << 20, &b), 0);
    ASSERT_GT(b.n_entries, 3);
    /* The ranges a batch touches, from its own bytes: the first entry is
     * the first write; a flipped byte is refused, nothing reported. */
    struct ranges rg = {0};
    ASSERT_EQ(jr_batch_regions(b.data, b.len, range_cb, &rg), 0);
    ASSERT_GT(rg.n, 1);
    ASSERT_UEQ(rg.off[0], 1000);
    ASSERT_UEQ(rg.len[0], 65536);
    uint8_t *flip = malloc(b.len);
    memcpy(flip, b.data, b.len);
    flip[70] ^= 1;
    struct ranges rg2 = {0};
    ASSERT_EQ(jr_batch_regions(flip, b.len, range_cb, &rg2), JR_ECORRUPT);
    ASSERT_EQ(rg2.n, 0);
    free(flip);
    uint8_t *bad = malloc(b.len);
    memcpy(bad, b.data, b.len);
    bad[b.len - 5] ^= 1; /* last entry's payload or header */
    ASSERT(jr_apply(f.st, "s2", bad, b.len, &applied) == JR_ECORRUPT);
    ASSERT_EQ(jr_volume_stat(f.st, "s2", &si), 0);
    ASSERT_UEQ(si.head, 0);
    ASSERT_UEQ(si.applied, 0);
    /* An entry dropped from the middle: a gap. */
    struct jr_entry e;
    size_t used;
    ASSERT_EQ(jr__entry_decode(b.data, b.len, &e, &used, NULL), 0);
    size_t used2;
    ASSERT_EQ(jr__entry_decode(b.data + used, b.len - used, &e, &used2, NULL),
              0);
    memcpy(bad, b.data, used);
    memcpy(bad + used, b.data + used + used2, b.len - used - used2);
    ASSERT_EQ(jr_apply(f.st, "s2", bad, b.len - used2, &applied), JR_EGAP);
    ASSERT_EQ(jr_volume_stat(f.st, "s2", &si), 0);
    ASSERT_UEQ(si.head, 0);
    /* Stale epoch: the replica moved to epoch 5, entries carry 1. */
    ASSERT_EQ(jr_role_set(f.st, "s2", JR_ROLE_SECONDARY, 5), 0);
    ASSERT_EQ(jr_apply(f.st, "s2", b.data, b.len, &applied), JR_ESTALE);
    /* ... unless they are history from before the primary's promotion
     * a history position one short still refuses the last. */
    ASSERT_EQ(jr_apply_history(f.st, "s2", b.data, b.len, b.last_seq - 1,
                               &applied), JR_ESTALE);
    ASSERT_EQ(jr_volume_stat(f.st, "s2", &si), 0);
    ASSERT_UEQ(si.head, 0);
    ASSERT_EQ(jr_apply_history(f.st, "s2", b.data, b.len, b.last_seq,
                               &applied), 0);
    ASSERT_UEQ(applied, b.last_seq);
    free(bad);
    jr_batch_free(&b);
    fx_close(&f);
}

TEST(tail_apply_idempotent_and_refusals_sqlite)
{
    tail_apply_idempotent_and_refusals_on("sqlite");
}

TEST(tail_apply_idempotent_and_refusals_rados)
{
    tail_apply_idempotent_and_refusals_on("rados");
}

TEST(corrupt_journal_object_stops_reader_and_open)
{
    struct fx f;
    fx_open(&f, "sqlite");
    mkvol(f.st, "p", 1 << 20, 64 << 10, 0, 0, 0);
    jr_volume *v;
    ASSERT_EQ(jr_open(f.st, "p", JR_OPEN_WRITE, "t", &v), 0);
    uint8_t buf[4096];
    for (int i = 0; i < 10; i++) {
        fill(buf, sizeof buf, (uint64_t)i + 100);
        ASSERT_EQ(jr_write(v, (uint64_t)i * 4096, buf, sizeof buf), 0);
    }
    ASSERT_EQ(jr_close(v), 0);
    /* Flip one payload byte of entry 6 in the stored journal object. */
    char oid[JR_OID_MAX];
    jr__oid_journal(oid, sizeof oid, "p", 0);
    uint8_t c;
    uint64_t at = 5 * (64 + 4096) + 64 + 10;
    ASSERT_EQ(st_read(f.st, oid, at, &c, 1), 1);
    c ^= 0x80;
    ASSERT_EQ(st_write(f.st, oid, at, &c, 1), 0);
    struct jr_batch b;
    ASSERT_EQ(jr_tail_read(f.st, "p", 1, 1 << 20, &b), 0);
    ASSERT_UEQ(b.first_seq, 1);
    ASSERT_UEQ(b.last_seq, 5); /* stops before the bad entry */
    jr_batch_free(&b);
    ASSERT_EQ(jr_tail_read(f.st, "p", 6, 1 << 20, &b), JR_ECORRUPT);
    /* Replay refuses too (applied lags only if a crash happened; force
     * it back to show the engine stops rather than skip). */
    char hoid[JR_OID_MAX];
    jr__oid_header(hoid, sizeof hoid, "p");
    ASSERT_EQ(st_omap_set(f.st, hoid, "applied", "2 1048576", 9), 0);
    ASSERT_EQ(jr_open(f.st, "p", JR_OPEN_WRITE, "t", &v), JR_ECORRUPT);
    fx_close(&f);
}

/* ---- a damaged journal tail (R-37) ---- */

/* A writer killed before its applier applied anything: the journal holds
 * entries 1..n (4 KiB at block i, fill(seed + i)), the image none. */
static void journal_only(struct fx *f, const char *vol, int n, uint64_t seed)
{
    /* The dead writer's lease stays behind: the next writable open waits
     * a whole TTL before it takes it, 0.6 s here, not 30 s. */
    setenv("TANDEM_JR_LEASE_TTL_MS", "600", 1);
    int pfd[2];
    ASSERT_OK(pipe(pfd));
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        st_store *st = fx_store(f);
        jr_volume *v;
        uint8_t b[4096];
        setenv("TANDEM_JR_APPLY_DELAY_MS", "60000", 1);
        if (jr_open(st, vol, JR_OPEN_WRITE | JR_OPEN_FORCE, "doomed", &v))
            _exit(2);
        for (int i = 0; i < n; i++) {
            fill(b, sizeof b, seed + (uint64_t)i);
            if (jr_write(v, (uint64_t)i * 4096, b, sizeof b)) _exit(3);
        }
        if (write(pfd[1], "x", 1) != 1) _exit(4);
        pause();
        _exit(5);
    }
    char c;
    ASSERT_EQ(read(pfd[0], &c, 1), 1);
    ASSERT_OK(kill(pid, SIGKILL));
    int status;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    close(pfd[0]);
    close(pfd[1]);
}

/* Flip one byte of a journal object through the store API. */
static void flip(st_store *st, const char *vol, uint64_t jno, uint64_t at)
{
    char oid[JR_OID_MAX];
    uint8_t c;
    jr__oid_journal(oid, sizeof oid, vol, jno);
    ASSERT_EQ(st_read(st, oid, at, &c, 1), 1);
    c ^= 0x10;
    ASSERT_OK(st_write(st, oid, at, &c, 1));
}

#define ENT (64 + 4096) /* an entry of 4 KiB of incompressible data */

static void damaged_tail_on(const char *backend)
{
    struct fx f;
    fx_open(&f, backend);
    mkvol(f.st, "d", 1 << 20, 64 << 10, 0, 0, 0);
    journal_only(&f, "d", 10, 300);
    st_store *st = fx_store(&f); /* a new client: the child's was fenced */
    st_close(f.st);
    f.st = st;
    flip(st, "d", 0, 5 * ENT + 64 + 100); /* entry 6's payload */
    struct jr_damage dm;
    ASSERT_EQ(jr_journal_check(st, "d", &dm), JR_ECORRUPT);
    ASSERT_UEQ(dm.seq, 6);
    ASSERT_UEQ(dm.object, 0);
    ASSERT_UEQ(dm.offset, 5 * ENT);
    ASSERT_UEQ(dm.applied, 0);
    ASSERT_UEQ(dm.head, 10);
    ASSERT(strstr(dm.why, "R-19") != NULL);
    /* Writable open: the valid prefix is applied and recorded, the
     * damage reported and recorded, the open refused. */
    jr_volume *v;
    ASSERT_EQ(jr_open(st, "d", JR_OPEN_WRITE, "t", &v), JR_ECORRUPT);
    struct jr_info in;
    ASSERT_OK(jr_volume_stat(st, "d", &in));
    ASSERT_UEQ(in.applied, 5);
    ASSERT_UEQ(in.head, 10);
    ASSERT_UEQ(in.damaged_seq, 6);
    ASSERT_UEQ(in.damaged_object, 0);
    ASSERT_UEQ(in.damaged_offset, 5 * ENT);
    ASSERT_EQ(jr_open(st, "d", JR_OPEN_WRITE, "t", &v), JR_ECORRUPT);
    /* Readable: the prefix, nothing of the damaged tail. */
    uint8_t b[4096], got[4096], zero[4096] = {0};
    ASSERT_OK(jr_open(st, "d", 0, NULL, &v));
    for (int i = 0; i < 10; i++) {
        fill(b, sizeof b, 300 + (uint64_t)i);
        ASSERT_OK(jr_read(v, (uint64_t)i * 4096, got, sizeof got));
        ASSERT_MEMEQ(got, i < 5 ? b : zero, sizeof got);
    }
    ASSERT_OK(jr_get_info(v, &in));
    ASSERT_UEQ(in.damaged_seq, 6);
    ASSERT_UEQ(in.head, 5);
    jr_close(v);
    /* Only the confirmed seq discards; nothing changes otherwise. */
    ASSERT_EQ(jr_journal_discard(st, "d", 0), -EINVAL);
    ASSERT_EQ(jr_journal_discard(st, "d", 7), JR_ESTALE);
    ASSERT_EQ(jr_journal_discard(st, "d", 5), JR_ESTALE);
    ASSERT_OK(jr_volume_stat(st, "d", &in));
    ASSERT_UEQ(in.head, 10);
    ASSERT_OK(jr_journal_discard(st, "d", 6));
    ASSERT_OK(jr_volume_stat(st, "d", &in));
    ASSERT_UEQ(in.head, 5);
    ASSERT_UEQ(in.applied, 5);
    ASSERT_UEQ(in.damaged_seq, 0);
    ASSERT_OK(jr_journal_check(st, "d", &dm));
    ASSERT_UEQ(dm.seq, 0);
    ASSERT_EQ(jr_journal_discard(st, "d", 6), JR_ESTALE); /* sound now */
    /* Writable again; new writes continue at seq 6. */
    ASSERT_OK(jr_open(st, "d", JR_OPEN_WRITE, "t", &v));
    fill(b, sizeof b, 999);
    ASSERT_OK(jr_write(v, 7 * 4096, b, sizeof b));
    ASSERT_OK(jr_close(v));
    ASSERT_OK(jr_volume_stat(st, "d", &in));
    ASSERT_UEQ(in.head, 6);
    ASSERT_UEQ(in.applied, 6);
    ASSERT_OK(jr_open(st, "d", 0, NULL, &v));
    for (int i = 0; i < 10; i++) {
        fill(b, sizeof b, i == 7 ? 999 : 300 + (uint64_t)i);
        ASSERT_OK(jr_read(v, (uint64_t)i * 4096, got, sizeof got));
        ASSERT_MEMEQ(got, i < 5 || i == 7 ? b : zero, sizeof got);
    }
    jr_close(v);
    /* The journal reads back whole (what the replicator ships). */
    struct jr_batch bt;
    ASSERT_OK(jr_tail_read(st, "d", 1, 1 << 20, &bt));
    ASSERT_UEQ(bt.first_seq, 1);
    ASSERT_UEQ(bt.last_seq, 6);
    jr_batch_free(&bt);
    fx_close(&f);
}

TEST(damaged_tail_sqlite)
{
    damaged_tail_on("sqlite");
}

TEST(damaged_tail_rados)
{
    damaged_tail_on("rados");
}

/* The other shapes of damage (sqlite): a damaged entry in a later journal
 * object (objects after it are dropped too), a header flip (the entry's
 * length cannot be trusted), a peer that already has entries past the
 * damage (refused), and a secondary's journal (discarded, then shipped
 * again by the primary). */
TEST(damaged_tail_shapes)
{
    struct fx f;
    fx_open(&f, "sqlite");
    jr_volume *v;
    struct jr_info in;
    struct jr_damage dm;
    uint8_t *big = malloc(1 << 20);
    /* 1. Several journal objects: 1 MiB entries roll them every 4. */
    mkvol(f.st, "m", 16 << 20, 1 << 20, 0, 0, 0);
    ASSERT_OK(jr_open(f.st, "m", JR_OPEN_WRITE, "t", &v));
    for (int i = 0; i < 12; i++) {
        fill(big, 1 << 20, 500 + (uint64_t)i);
        ASSERT_OK(jr_write(v, (uint64_t)i << 20, big, 1 << 20));
    }
    ASSERT_OK(jr_close(v));
    char hoid[JR_OID_MAX];
    jr__oid_header(hoid, sizeof hoid, "m");
    /* As if the writer died before recording applied past 2. */
    ASSERT_OK(st_omap_set(f.st, hoid, "applied", "2 16777216", 10));
    ASSERT_EQ(jr_journal_check(f.st, "m", &dm), 0);
    struct jr__hdr h;
    ASSERT_OK(jr__hdr_load(f.st, "m", &h));
    ASSERT_GE(h.nj, 3);
    uint64_t jno = h.j[1].n, first = h.j[1].first;
    jr__hdr_free(&h);
    flip(f.st, "m", jno, 20); /* the header of the object's 1st entry */
    ASSERT_EQ(jr_journal_check(f.st, "m", &dm), JR_ECORRUPT);
    ASSERT_UEQ(dm.seq, first);
    ASSERT_UEQ(dm.object, jno);
    ASSERT_UEQ(dm.offset, 0);
    ASSERT(strstr(dm.why, "R-12") != NULL);
    ASSERT_EQ(jr_open(f.st, "m", JR_OPEN_WRITE, "t", &v), JR_ECORRUPT);
    ASSERT_OK(jr_volume_stat(f.st, "m", &in));
    ASSERT_UEQ(in.applied, first - 1);
    ASSERT_OK(jr_journal_discard(f.st, "m", first));
    ASSERT_OK(jr_volume_stat(f.st, "m", &in));
    ASSERT_UEQ(in.head, first - 1);
    char joid[JR_OID_MAX];
    jr__oid_journal(joid, sizeof joid, "m", jno + 1);
    ASSERT_EQ(st_stat(f.st, joid, NULL, NULL), -ENOENT); /* dropped */
    ASSERT_OK(jr_open(f.st, "m", JR_OPEN_WRITE, "t", &v));
    fill(big, 1 << 20, 777);
    ASSERT_OK(jr_write(v, 0, big, 1 << 20));
    ASSERT_OK(jr_close(v));
    ASSERT_OK(jr_volume_stat(f.st, "m", &in));
    ASSERT_UEQ(in.head, first);
    ASSERT_OK(jr_journal_check(f.st, "m", &dm));

    /* 2. A peer acknowledged past the damage: refused, nothing changed. */
    mkvol(f.st, "p", 1 << 20, 64 << 10, 0, 0, 0);
    journal_only(&f, "p", 8, 40);
    ASSERT_OK(jr_peer_ack_set(f.st, "p", "b", 6));
    flip(f.st, "p", 0, 3 * ENT + 64 + 7); /* entry 4 */
    ASSERT_EQ(jr_open(f.st, "p", JR_OPEN_WRITE, "t", &v), JR_ECORRUPT);
    ASSERT_EQ(jr_journal_discard(f.st, "p", 4), JR_EDIVERGED);
    ASSERT_OK(jr_volume_stat(f.st, "p", &in));
    ASSERT_UEQ(in.head, 8);
    ASSERT_UEQ(in.damaged_seq, 4);

    /* 3. A secondary: its own journal is damaged between its journal
     * append and its image writes (a crash); the primary ships again. */
    mkvol(f.st, "sp", 1 << 20, 64 << 10, 0, 0, 0);
    mkvol(f.st, "ss", 1 << 20, 64 << 10, JR_ROLE_SECONDARY, 0, 0);
    ASSERT_OK(jr_open(f.st, "sp", JR_OPEN_WRITE, "t", &v));
    uint8_t b[4096];
    for (int i = 0; i < 8; i++) {
        fill(b, sizeof b, 60 + (uint64_t)i);
        ASSERT_OK(jr_write(v, (uint64_t)i * 4096, b, sizeof b));
    }
    ASSERT_OK(jr_close(v));
    struct jr_batch bt;
    uint64_t applied = 0;
    ASSERT_OK(jr_tail_read(f.st, "sp", 1, 1 << 20, &bt));
    ASSERT_OK(jr_apply(f.st, "ss", bt.data, bt.len, &applied));
    ASSERT_UEQ(applied, 8);
    jr__oid_header(hoid, sizeof hoid, "ss");
    ASSERT_OK(st_omap_set(f.st, hoid, "applied", "2 1048576", 9));
    flip(f.st, "ss", 0, 4 * ENT + 64 + 1); /* entry 5 */
    ASSERT_EQ(jr_apply(f.st, "ss", bt.data, bt.len, &applied), JR_ECORRUPT);
    ASSERT_OK(jr_volume_stat(f.st, "ss", &in));
    ASSERT_UEQ(in.applied, 4);
    ASSERT_UEQ(in.damaged_seq, 5);
    ASSERT_OK(jr_journal_discard(f.st, "ss", 5));
    ASSERT_OK(jr_apply(f.st, "ss", bt.data, bt.len, &applied));
    ASSERT_UEQ(applied, 8);
    jr_batch_free(&bt);
    same_image(f.st, "sp", f.st, "ss", 1 << 20);

    /* 4. A journal that ends before its recorded head (entries 5, 6 cut
     * off the object): the first missing entry is the damage. */
    mkvol(f.st, "t", 1 << 20, 64 << 10, 0, 0, 0);
    journal_only(&f, "t", 6, 70);
    char toid[JR_OID_MAX];
    jr__oid_journal(toid, sizeof toid, "t", 0);
    ASSERT_OK(st_truncate(f.st, toid, 4 * ENT));
    ASSERT_EQ(jr_journal_check(f.st, "t", &dm), JR_ECORRUPT);
    ASSERT_UEQ(dm.seq, 5);
    ASSERT_UEQ(dm.offset, 4 * ENT);
    ASSERT(strstr(dm.why, "missing") != NULL);
    ASSERT_OK(jr_open(f.st, "t", 0, NULL, &v)); /* readable up to 4 */
    ASSERT_OK(jr_get_info(v, &in));
    ASSERT_UEQ(in.head, 4);
    ASSERT_UEQ(in.damaged_seq, 5);
    ASSERT_UEQ(in.damaged_offset, 4 * ENT);
    jr_close(v);
    ASSERT_EQ(jr_open(f.st, "t", JR_OPEN_WRITE, "t", &v), JR_ECORRUPT);
    ASSERT_OK(jr_journal_discard(f.st, "t", 5));
    ASSERT_OK(jr_open(f.st, "t", JR_OPEN_WRITE, "t", &v));
    ASSERT_OK(jr_get_info(v, &in));
    ASSERT_UEQ(in.head, 4);
    ASSERT_UEQ(in.damaged_seq, 0);
    ASSERT_OK(jr_close(v));
    free(big);
    fx_close(&f);
}

/* jr_volume_delete and a writer lease: refused while the holder
 * renews it; a dead holder's lease is watched for a TTL (0.6 s here), taken
 * away and its holder fenced, then the volume goes. */
static void delete_with_lease_on(const char *backend)
{
    struct fx f;
    fx_open(&f, backend);
    mkvol(f.st, "x", 1 << 20, 64 << 10, 0, 0, 0);
    journal_only(&f, "x", 3, 1); /* sets the 0.6 s TTL; kills the writer */
    st_store *st = fx_store(&f);
    st_close(f.st);
    f.st = st;
    jr_volume *v;
    ASSERT_OK(jr_open(st, "x", JR_OPEN_WRITE, "live", &v)); /* after 0.6 s */
    st_store *s2 = fx_store(&f);
    ASSERT_EQ(jr_volume_delete(s2, "x"), JR_ELOCKED); /* it renews */
    ASSERT_OK(jr_close(v));
    mkvol(st, "y", 1 << 20, 64 << 10, 0, 0, 0);
    journal_only(&f, "y", 3, 2); /* a dead holder's lease stays behind */
    int64_t t0 = tb_mono_ms();
    ASSERT_OK(jr_volume_delete(s2, "y"));
    ASSERT_GE(tb_mono_ms() - t0, 500);
    struct jr_info in;
    ASSERT_EQ(jr_volume_stat(s2, "y", &in), -ENOENT);
    ASSERT_OK(jr_volume_delete(s2, "x"));
    st_close(s2);
    fx_close(&f);
}

TEST(delete_with_lease_sqlite)
{
    delete_with_lease_on("sqlite");
}

TEST(delete_with_lease_rados)
{
    delete_with_lease_on("rados");
}

static void trim_and_tail_bounds_on(const char *backend)
{
    struct fx f;
    fx_open(&f, backend);
    mkvol(f.st, "p", 64 << 20, 0, 0, 0, 0);
    ASSERT_EQ(jr_peer_ack_set(f.st, "p", "b", 0), 0);
    jr_volume *v;
    ASSERT_EQ(jr_open(f.st, "p", JR_OPEN_WRITE, "t", &v), 0);
    uint8_t *buf = malloc(1 << 20);
    for (int i = 0; i < 20; i++) { /* ~20 MiB: several journal objects */
        fill(buf, 1 << 20, (uint64_t)i);
        ASSERT_EQ(jr_write(v, (uint64_t)i << 20, buf, 1 << 20), 0);
    }
    ASSERT_EQ(jr_close(v), 0);
    struct jr_info in;
    ASSERT_EQ(jr_volume_stat(f.st, "p", &in), 0);
    ASSERT_UEQ(in.tail, 1); /* the peer acked nothing: all kept */
    ASSERT_GT(in.journal_bytes, 20 << 20);
    ASSERT_EQ(jr_peer_ack_set(f.st, "p", "b", 12), 0);
    ASSERT_EQ(jr_trim(f.st, "p"), 0);
    ASSERT_EQ(jr_volume_stat(f.st, "p", &in), 0);
    ASSERT_GT(in.tail, 1);
    ASSERT_LE(in.tail, 13);
    ASSERT_LT(in.journal_bytes, 20 << 20);
    struct jr_batch b;
    ASSERT_EQ(jr_tail_read(f.st, "p", 1, 1 << 20, &b), JR_ETRIMMED);
    ASSERT_EQ(jr_tail_read(f.st, "p", 13, 100, &b), 0);
    ASSERT_EQ(b.n_entries, 1); /* at least one entry past max_bytes */
    ASSERT_UEQ(b.first_seq, 13);
    jr_batch_free(&b);
    ASSERT_EQ(jr_tail_read(f.st, "p", in.head + 1, 1 << 20, &b), 0);
    ASSERT_EQ(b.n_entries, 0);
    ASSERT_EQ(jr_peer_ack_set(f.st, "p", "b", in.head), 0);
    ASSERT_EQ(jr_trim(f.st, "p"), 0);
    ASSERT_EQ(jr_volume_stat(f.st, "p", &in), 0);
    ASSERT_LT(in.journal_bytes, 10 << 20); /* only the last object stays */
    free(buf);
    fx_close(&f);
}

TEST(trim_and_tail_bounds_sqlite)
{
    trim_and_tail_bounds_on("sqlite");
}

TEST(trim_and_tail_bounds_rados)
{
    trim_and_tail_bounds_on("rados");
}

static int dirty_cb(uint64_t off, uint64_t len, void *arg)
{
    uint8_t *map = arg; /* one byte per MiB */
    for (uint64_t m = off >> 20; m < (off + len + (1 << 20) - 1) >> 20; m++)
        map[m] = 1;
    return 0;
}

static void journal_cap_dirty_fallback_on(const char *backend)
{
    struct fx f;
    fx_open(&f, backend);
    mkvol(f.st, "p", 64 << 20, 0, 0, 0, 8 << 20);
    ASSERT_EQ(jr_peer_ack_set(f.st, "p", "b", 0), 0);
    jr_volume *v;
    ASSERT_EQ(jr_open(f.st, "p", JR_OPEN_WRITE, "t", &v), 0);
    uint8_t *buf = malloc(1 << 20);
    int written[64] = {0};
    for (int i = 0; i < 24; i++) { /* three times the cap */
        int mib = (i * 7) % 64;
        written[mib] = 1;
        fill(buf, 1 << 20, (uint64_t)i);
        ASSERT_EQ(jr_write(v, (uint64_t)mib << 20, buf, 1 << 20), 0);
    }
    ASSERT_EQ(jr_close(v), 0); /* close persists applied and trims */
    ASSERT_EQ(jr_trim(f.st, "p"), 0);
    struct jr_info in;
    ASSERT_EQ(jr_volume_stat(f.st, "p", &in), 0);
    ASSERT_EQ(in.dirty_tracking, 1);
    ASSERT_LT(in.journal_bytes, 16 << 20);
    struct jr_batch b;
    ASSERT_EQ(jr_tail_read(f.st, "p", 1, 1 << 20, &b), JR_ETRIMMED);
    /* Every trimmed write's region is dirty; together with the entries
     * still kept, everything written is covered. */
    uint8_t map[64] = {0};
    uint64_t gen = 0;
    ASSERT_EQ(jr_dirty_iter_gen(f.st, "p", &gen, dirty_cb, map), 0);
    ASSERT_EQ(jr_journal_regions(f.st, "p", in.tail, in.head, dirty_cb, map),
              0);
    for (int m = 0; m < 64; m++)
        if (written[m] && !map[m]) TT_FAIL("MiB %d written but not covered", m);
    ASSERT_EQ(jr_dirty_clear_gen(f.st, "p", in.tail, gen + 1), -EAGAIN);
    ASSERT_EQ(jr_dirty_clear_gen(f.st, "p", in.tail - 1, gen), JR_ETRIMMED);
    ASSERT_EQ(jr_dirty_clear_gen(f.st, "p", in.tail, gen), 0);
    ASSERT_EQ(jr_volume_stat(f.st, "p", &in), 0);
    ASSERT_EQ(in.dirty_tracking, 0);
    memset(map, 0, sizeof map);
    ASSERT_EQ(jr_dirty_iter(f.st, "p", dirty_cb, map), 0);
    for (int m = 0; m < 64; m++) ASSERT_EQ(map[m], 0);

    /* A demoted primary that is dirty again, rebased as a replica:
     * journal and dirty map gone, positions at seq, in one update. */
    ASSERT_EQ(jr_open(f.st, "p", JR_OPEN_WRITE, "t", &v), 0);
    for (int i = 0; i < 24; i++) {
        fill(buf, 1 << 20, 100 + (uint64_t)i);
        ASSERT_EQ(jr_write(v, (uint64_t)((i * 5) % 64) << 20, buf, 1 << 20),
                  0);
    }
    ASSERT_EQ(jr_close(v), 0);
    ASSERT_EQ(jr_trim(f.st, "p"), 0);
    ASSERT_EQ(jr_volume_stat(f.st, "p", &in), 0);
    ASSERT_EQ(in.dirty_tracking, 1);
    ASSERT_EQ(jr_replica_rebase(f.st, "p", in.head, in.size), JR_EROLE);
    ASSERT_EQ(jr_role_set(f.st, "p", JR_ROLE_SECONDARY, 2), 0);
    ASSERT_EQ(jr_replica_rebase(f.st, "p", in.head + 7, in.size), 0);
    struct jr_info rb;
    ASSERT_EQ(jr_volume_stat(f.st, "p", &rb), 0);
    ASSERT_EQ(rb.dirty_tracking, 0);
    ASSERT_UEQ(rb.applied, in.head + 7);
    ASSERT_UEQ(rb.head, in.head + 7);
    ASSERT_UEQ(rb.tail, in.head + 8);
    ASSERT_UEQ(rb.journal_bytes, 0);
    memset(map, 0, sizeof map);
    ASSERT_EQ(jr_dirty_iter(f.st, "p", dirty_cb, map), 0);
    for (int m = 0; m < 64; m++) ASSERT_EQ(map[m], 0);
    int left = 0;
    ASSERT_EQ(st_list(f.st, "vol/p/j/", count_cb, &left), 0);
    ASSERT_EQ(left, 0);
    free(buf);
    fx_close(&f);
}

TEST(journal_cap_dirty_fallback_sqlite)
{
    journal_cap_dirty_fallback_on("sqlite");
}

TEST(journal_cap_dirty_fallback_rados)
{
    journal_cap_dirty_fallback_on("rados");
}

/* ---- the replicator's flows: catch-up past the cap, then failover ---- */

static void write_mib(jr_volume *v, int mib, uint64_t seed);

static int jsize_cb(const char *oid, void *arg)
{
    uint64_t sz = 0;
    struct fx *f = arg;
    ASSERT_EQ(st_stat(f->st, oid, &sz, NULL), 0);
    ASSERT_LE(sz, 16 << 20);
    return 0;
}

static void big_batch_on(const char *backend)
{
    struct fx f;
    fx_open(&f, backend);
    mkvol(f.st, "p", 32 << 20, 0, 0, 0, 0);
    mkvol(f.st, "s", 32 << 20, 0, JR_ROLE_SECONDARY, 1, 0);
    jr_volume *v;
    ASSERT_EQ(jr_open(f.st, "p", JR_OPEN_WRITE, "t", &v), 0);
    for (int i = 0; i < 24; i++) write_mib(v, i, 50 + (uint64_t)i);
    ASSERT_EQ(jr_close(v), 0);
    struct jr_batch b;
    ASSERT_EQ(jr_tail_read(f.st, "p", 1, 64 << 20, &b), 0);
    ASSERT_EQ(b.n_entries, 24);
    ASSERT_GT(b.len, 24 << 20);
    uint64_t ap = 0;
    ASSERT_EQ(jr_apply(f.st, "s", b.data, b.len, &ap), 0);
    ASSERT_UEQ(ap, 24);
    jr_batch_free(&b);
    ASSERT_EQ(st_list(f.st, "vol/s/j/", jsize_cb, &f), 0);
    same_image(f.st, "p", f.st, "s", 32 << 20);
    fx_close(&f);
}

TEST(apply_big_batch_sqlite)
{
    big_batch_on("sqlite");
}

TEST(apply_big_batch_rados)
{
    big_batch_on("rados");
}



struct copyarg {
    st_store *st;
    int n;
};

static int region_copy_cb(uint64_t off, uint64_t len, void *arg)
{
    struct copyarg *c = arg;
    uint8_t *b = malloc(len);
    ASSERT_EQ(jr_image_read(c->st, "p", off, b, len), 0);
    ASSERT_EQ(jr_image_write(c->st, "s", off, b, len), 0);
    free(b);
    c->n++;
    return 0;
}

/* jr_apply journals a big batch in chunks and writes the image of chunk
 * k while chunk k+1 is journaled: overwrites of one range across chunks,
 * a discard and a shrink-and-grow between them must still land in seq
 * order, and the replica's journal must hold the batch exactly. */
static void pipelined_apply_on(const char *backend)
{
    struct fx f;
    fx_open(&f, backend);
    mkvol(f.st, "p", 8 << 20, 1 << 20, 0, 0, 0);
    mkvol(f.st, "s", 8 << 20, 1 << 20, JR_ROLE_SECONDARY, 1, 0);
    jr_volume *v;
    ASSERT_EQ(jr_open(f.st, "p", JR_OPEN_WRITE, "t", &v), 0);
    for (int i = 0; i < 16; i++) {
        write_mib(v, i % 3, 900 + (uint64_t)i); /* MiB 0..2, again and again */
        if (i == 7) ASSERT_EQ(jr_discard(v, 512 << 10, 1 << 20), 0);
        if (i == 10) {
            ASSERT_EQ(jr_resize(v, 1 << 20), 0);
            ASSERT_EQ(jr_resize(v, 8 << 20), 0);
        }
    }
    ASSERT_EQ(jr_close(v), 0);
    struct jr_batch b;
    ASSERT_EQ(jr_tail_read(f.st, "p", 1, 64 << 20, &b), 0);
    ASSERT_EQ(b.n_entries, 19);
    uint64_t ap = 0;
    ASSERT_EQ(jr_apply(f.st, "s", b.data, b.len, &ap), 0);
    ASSERT_UEQ(ap, 19);
    same_image(f.st, "p", f.st, "s", 8 << 20);
    struct jr_batch c;
    ASSERT_EQ(jr_tail_read(f.st, "s", 1, 64 << 20, &c), 0);
    ASSERT_EQ(c.n_entries, 19);
    ASSERT_EQ(c.len, b.len);
    ASSERT(memcmp(c.data, b.data, b.len) == 0);
    /* 19 MiB of entries: the chunks rolled the 4 MiB journal objects. */
    struct jr_info i;
    ASSERT_EQ(jr_volume_stat(f.st, "s", &i), 0);
    ASSERT_UEQ(i.applied, 19);
    ASSERT_UEQ(i.head, 19);
    jr_batch_free(&c);
    jr_batch_free(&b);
    fx_close(&f);
}

TEST(apply_pipelined_in_order_sqlite)
{
    pipelined_apply_on("sqlite");
}

TEST(apply_pipelined_in_order_rados)
{
    pipelined_apply_on("rados");
}

static void write_mib(jr_volume *v, int mib, uint64_t seed)
{
    uint8_t *b = malloc(1 << 20);
    fill(b, 1 << 20, seed);
    ASSERT_EQ(jr_write(v, (uint64_t)mib << 20, b, 1 << 20), 0);
    free(b);
}

static void catch_up_then_failover_on(const char *backend)
{
    struct fx f;
    fx_open(&f, backend);
    enum { SZ = 32 << 20 };
    mkvol(f.st, "p", SZ, 1 << 20, 0, 0, 6 << 20);
    mkvol(f.st, "s", SZ, 1 << 20, JR_ROLE_SECONDARY, 1, 0);
    ASSERT_EQ(jr_peer_ack_set(f.st, "p", "b", 0), 0);
    jr_volume *v;
    ASSERT_EQ(jr_open(f.st, "p", JR_OPEN_WRITE, "t", &v), 0);
    for (int i = 0; i < 3; i++) write_mib(v, i, 1000 + (uint64_t)i);
    uint64_t applied = 0;
    copy_volume(f.st, "p", f.st, "s", 1, &applied);
    ASSERT_EQ(jr_peer_ack_set(f.st, "p", "b", applied), 0);
    /* The peer goes away; writes go on past the cap. */
    for (int i = 0; i < 20; i++) write_mib(v, (i * 5) % 32, 2000 + (uint64_t)i);
    ASSERT_EQ(jr_close(v), 0);
    ASSERT_EQ(jr_trim(f.st, "p"), 0);
    struct jr_info pi;
    ASSERT_EQ(jr_volume_stat(f.st, "p", &pi), 0);
    ASSERT_EQ(pi.dirty_tracking, 1);
    struct jr_batch b;
    ASSERT_EQ(jr_tail_read(f.st, "p", applied + 1, 1 << 20, &b), JR_ETRIMMED);
    /* Catch-up protocol of jr.h, with writes (and trims) going on during
     * the first copy, which then has to start over. */
    uint64_t T = 0, gen = 0;
    struct copyarg ca = {f.st, 0};
    int rounds = 0, rc;
    do {
        ASSERT_LT(rounds, 5);
        ASSERT_EQ(jr_volume_stat(f.st, "p", &pi), 0);
        T = pi.tail;
        uint8_t map[32] = {0};
        ASSERT_EQ(jr_dirty_iter_gen(f.st, "p", &gen, dirty_cb, map), 0);
        if (rounds == 0) ASSERT_EQ(jr_open(f.st, "p", JR_OPEN_WRITE, "t", &v), 0);
        ca.n = 0;
        for (int m = 0; m < 32; m++) {
            if (!map[m]) continue;
            ASSERT_EQ(region_copy_cb((uint64_t)m << 20, 1 << 20, &ca), 0);
            if (rounds == 0 && ca.n <= 6) /* under the copy's feet */
                write_mib(v, m, 4000 + (uint64_t)ca.n);
        }
        ASSERT_GT(ca.n, 0);
        if (rounds == 0) ASSERT_EQ(jr_close(v), 0);
        if (rounds == 0) ASSERT_EQ(jr_trim(f.st, "p"), 0);
        rc = jr_dirty_clear_gen(f.st, "p", T, gen);
        ASSERT(rc == 0 || rc == -EAGAIN || rc == JR_ETRIMMED);
        rounds++;
    } while (rc != 0);
    ASSERT_GT(rounds, 1); /* the first round was overtaken by trims */
    ASSERT_EQ(jr_dirty_clear_gen(f.st, "p", T, gen), -EAGAIN); /* gen moved */
    ca.n = 0;
    ASSERT_EQ(jr_dirty_iter(f.st, "p", region_copy_cb, &ca), 0);
    ASSERT_EQ(ca.n, 0); /* cleared */
    ASSERT_EQ(jr_replica_rebase(f.st, "s", T - 1, pi.size), 0);
    ASSERT_EQ(jr_replica_rebase(f.st, "p", T - 1, pi.size), JR_EROLE);
    copy_volume(f.st, "p", f.st, "s", T, &applied);
    ASSERT_EQ(jr_volume_stat(f.st, "p", &pi), 0);
    ASSERT_UEQ(applied, pi.head);
    ASSERT_EQ(jr_peer_ack_set(f.st, "p", "b", applied), 0);
    same_image(f.st, "p", f.st, "s", SZ);

    /* Failover: promote the replica with a new epoch; it continues the
     * sequence, and its journal names what changed since the common
     * position (for a later resync of the old primary). */
    uint64_t common = applied;
    ASSERT_EQ(jr_role_set(f.st, "p", JR_ROLE_SECONDARY, 2), 0);
    ASSERT_EQ(jr_role_set(f.st, "s", JR_ROLE_PRIMARY, 2), 0);
    ASSERT_EQ(jr_open(f.st, "s", JR_OPEN_WRITE, "t", &v), 0);
    write_mib(v, 7, 3000);
    ASSERT_EQ(jr_discard(v, 9 << 20, 4096), 0);
    ASSERT_EQ(jr_close(v), 0);
    struct jr_info si;
    ASSERT_EQ(jr_volume_stat(f.st, "s", &si), 0);
    ASSERT_UEQ(si.head, common + 2);
    ASSERT_UEQ(si.epoch, 2);
    ASSERT_EQ(jr_tail_read(f.st, "s", common + 1, 4 << 20, &b), 0);
    ASSERT_EQ(b.n_entries, 2);
    struct jr_entry e;
    size_t used;
    ASSERT_EQ(jr__entry_decode(b.data, b.len, &e, &used, NULL), 0);
    ASSERT_UEQ(e.epoch, 2);
    /* The demoted old primary accepts the new primary's entries. */
    uint64_t ap = 0;
    ASSERT_EQ(jr_apply(f.st, "p", b.data, b.len, &ap), 0);
    ASSERT_UEQ(ap, common + 2);
    jr_batch_free(&b);
    uint8_t map[32] = {0};
    ASSERT_EQ(jr_journal_regions(f.st, "s", common + 1, si.head, dirty_cb,
                                 map),
              0);
    for (int m = 0; m < 32; m++) ASSERT_EQ(map[m], m == 7 || m == 9);
    same_image(f.st, "p", f.st, "s", SZ);
    fx_close(&f);
}

static void divergence_on(const char *backend)
{
    struct fx f;
    fx_open(&f, backend);
    mkvol(f.st, "p", 8 << 20, 0, 0, 0, 0);
    mkvol(f.st, "s", 8 << 20, 0, JR_ROLE_SECONDARY, 1, 0);
    jr_volume *v;
    uint8_t buf[4096];
    ASSERT_EQ(jr_open(f.st, "p", JR_OPEN_WRITE, "t", &v), 0);
    for (int i = 0; i < 5; i++) {
        fill(buf, sizeof buf, (uint64_t)i);
        ASSERT_EQ(jr_write(v, (uint64_t)i * 4096, buf, sizeof buf), 0);
    }
    uint64_t ap = 0;
    copy_volume(f.st, "p", f.st, "s", 1, &ap);
    ASSERT_UEQ(ap, 5);
    ASSERT_EQ(jr_peer_ack_set(f.st, "p", "b", 5), 0);
    fill(buf, sizeof buf, 99); /* written on p, never shipped */
    ASSERT_EQ(jr_write(v, 0, buf, sizeof buf), 0);
    ASSERT_EQ(jr_close(v), 0);
    /* Region p is lost; s is promoted and writes its own entry 6. */
    ASSERT_EQ(jr_role_set(f.st, "s", JR_ROLE_PRIMARY, 2), 0);
    ASSERT_EQ(jr_open(f.st, "s", JR_OPEN_WRITE, "t", &v), 0);
    fill(buf, sizeof buf, 100);
    ASSERT_EQ(jr_write(v, 8192, buf, sizeof buf), 0);
    ASSERT_EQ(jr_close(v), 0);
    /* p comes back, is demoted: s's entry 6 must not be skipped as if p
     * had it already. */
    ASSERT_EQ(jr_role_set(f.st, "p", JR_ROLE_SECONDARY, 2), 0);
    ASSERT_EQ(jr_trim(f.st, "p"), 0); /* keeps what b never acked */
    struct jr_batch b;
    ASSERT_EQ(jr_tail_read(f.st, "s", 6, 1 << 20, &b), 0);
    ASSERT_EQ(jr_apply(f.st, "p", b.data, b.len, &ap), JR_EDIVERGED);
    jr_batch_free(&b);
    /* What p wrote on its own is still listed for the resync. */
    uint8_t map[8] = {0};
    ASSERT_EQ(jr_journal_regions(f.st, "p", 6, 6, dirty_cb, map), 0);
    ASSERT_EQ(map[0], 1);
    fx_close(&f);
}

TEST(divergence_detected_sqlite)
{
    divergence_on("sqlite");
}

TEST(divergence_detected_rados)
{
    divergence_on("rados");
}

TEST(catch_up_then_failover_sqlite)
{
    catch_up_then_failover_on("sqlite");
}

TEST(catch_up_then_failover_rados)
{
    catch_up_then_failover_on("rados");
}

/* ---- randomized model test ---- */

static void model_run(const char *backend, int ops, unsigned seed)
{
    struct fx f;
    fx_open(&f, backend);
    enum { MAXSZ = 12 << 20 };
    uint64_t size = 6 << 20;
    mkvol(f.st, "m", size, 64 << 10, 0, 0, 0);
    uint8_t *ref = calloc(1, MAXSZ), *buf = malloc(MAXSZ);
    jr_volume *v;
    ASSERT_EQ(jr_open(f.st, "m", JR_OPEN_WRITE, "t", &v), 0);
    srand(seed);
    int n_w = 0, n_d = 0, n_r = 0, n_z = 0, n_o = 0;
    for (int i = 0; i < ops; i++) {
        int k = rand() % 100;
        uint64_t off = (uint64_t)rand() % size;
        uint64_t len = 1 + (uint64_t)rand() % (k < 5 ? 400000 : 20000);
        if (off + len > size) len = size - off;
        if (k < 55) {
            fill(buf, len, (uint64_t)i);
            if (rand() % 3 == 0) memset(buf, 'z', len / 2);
            ASSERT_EQ(jr_write(v, off, buf, len), 0);
            memcpy(ref + off, buf, len);
            n_w++;
        } else if (k < 65) {
            ASSERT_EQ(jr_discard(v, off, len), 0);
            memset(ref + off, 0, len);
            n_d++;
        } else if (k < 88) {
            ASSERT_EQ(jr_read(v, off, buf, len), 0);
            if (memcmp(buf, ref + off, len) != 0)
                TT_FAIL("op %d: read %" PRIu64 "+%" PRIu64 " differs", i, off,
                        len);
            n_r++;
        } else if (k < 91) {
            uint64_t ns = 1 + (uint64_t)rand() % MAXSZ;
            ASSERT_EQ(jr_resize(v, ns), 0);
            if (ns < size) memset(ref + ns, 0, size - ns);
            size = ns;
            n_z++;
        } else if (k < 93) {
            ASSERT_EQ(jr_flush(v), 0);
        } else if (k < 95) {
            /* Reopen; sometimes read-only in between. */
            ASSERT_EQ(jr_close(v), 0);
            if (rand() % 2) {
                ASSERT_EQ(jr_open(f.st, "m", 0, NULL, &v), 0);
                ASSERT_EQ(jr_read(v, 0, buf, size), 0);
                ASSERT_MEMEQ(buf, ref, size);
                ASSERT_EQ(jr_close(v), 0);
            }
            ASSERT_EQ(jr_open(f.st, "m", JR_OPEN_WRITE, "t", &v), 0);
            struct jr_info in;
            ASSERT_EQ(jr_get_info(v, &in), 0);
            ASSERT_UEQ(in.size, size);
            n_o++;
        } else {
            ASSERT_EQ(jr_read(v, 0, buf, size), 0);
            ASSERT_MEMEQ(buf, ref, size);
        }
    }
    ASSERT_EQ(jr_close(v), 0);
    ASSERT_EQ(jr_open(f.st, "m", 0, NULL, &v), 0);
    ASSERT_EQ(jr_read(v, 0, buf, size), 0);
    ASSERT_MEMEQ(buf, ref, size);
    jr_close(v);
    /* The replica built from the journal equals the model too. */
    mkvol(f.st, "r", 6 << 20, 64 << 10, JR_ROLE_SECONDARY, 1, 0);
    uint64_t applied = 0;
    copy_volume(f.st, "m", f.st, "r", 1, &applied);
    same_image(f.st, "m", f.st, "r", size);
    printf("  %s: writes=%d discards=%d reads=%d resizes=%d reopens=%d\n",
           backend, n_w, n_d, n_r, n_z, n_o);
    free(ref);
    free(buf);
    fx_close(&f);
}

TEST(model_random_ops_sqlite)
{
    model_run("sqlite", 3000, 12345);
}

TEST(model_random_ops_rados)
{
    model_run("rados", 1500, 54321);
}

TEST(model_random_ops_slow_applier_sqlite)
{
    /* The applier lags far behind: reads are served from the overlay of
     * entries not yet applied (writes, discards, resizes over each other),
     * and every reopen replays a long tail. */
    setenv("TANDEM_JR_APPLY_DELAY_MS", "40", 1);
    model_run("sqlite", 1500, 777);
}

/* ---- close while the store refuses the applied position ---- */

/* A store that forwards to a real one but fails every write of the
 * header's "applied" key once armed: jr_close must still return (the
 * entries are durable in the journal; replay on open applies them)
 * instead of retrying the persist in a loop. */
struct failst {
    st_store base;
    st_store *in;
    int armed;
};
#define FS(st) ST_CONTAINER(st, struct failst, base)
static int fs_open(const struct st_config *c, st_store **o) { return -ENOTSUP; }
static void fs_close(st_store *st) { st_close(FS(st)->in); free(FS(st)); }
static int fs_ping(st_store *st) { return st_ping(FS(st)->in); }
static int fs_operate(st_store *st, const char *oid, const struct st_wop *op)
{
    int armed = __atomic_load_n(&FS(st)->armed, __ATOMIC_SEQ_CST);
    for (size_t i = 0; armed && i < op->n; i++) {
        /* 3: journal appends fail. */
        if (armed == 3 && op->items[i].kind == ST_WOP_APPEND) return -EIO;
        if (op->items[i].kind != ST_WOP_OMAP_SET) continue;
        if (armed == 1 && strcmp(op->items[i].key, "applied") == 0)
            return -EIO;
        /* 2: another writer takes the lease (moves the fence, R-36)
         * just before the header's size is written. */
        if (armed == 2 && strcmp(op->items[i].key, "size") == 0) {
            const char *l =
                "0123456789abcdef0123456789abcdef 9999999999 99 0 - other";
            int r = st_omap_set(FS(st)->in, oid, "lease", l, strlen(l));
            if (!r) r = st_omap_set(FS(st)->in, oid, "fence", "99 x", 4);
            if (r) return r;
        }
    }
    return FS(st)->in->ops->operate(FS(st)->in, oid, op);
}
static int fs_aio(st_store *st, const char *oid, st_wop *op, st_aio_cb cb,
                  void *arg)
{
    return FS(st)->in->ops->aio_operate(FS(st)->in, oid, op, cb, arg);
}
static void fs_aio_wait(st_store *st) { st_aio_wait(FS(st)->in); }
static ssize_t fs_read(st_store *st, const char *oid, uint64_t off, void *b,
                       size_t len)
{
    return st_read(FS(st)->in, oid, off, b, len);
}
static int fs_stat(st_store *st, const char *oid, uint64_t *sz, int64_t *mt)
{
    return st_stat(FS(st)->in, oid, sz, mt);
}
static int fs_list(st_store *st, const char *pfx, st_list_cb cb, void *arg)
{
    return st_list(FS(st)->in, pfx, cb, arg);
}
static int fs_omap_get(st_store *st, const char *oid, const char *key,
                       char **val, size_t *len)
{
    return st_omap_get(FS(st)->in, oid, key, val, len);
}
static int fs_omap_iter(st_store *st, const char *oid, const char *pfx,
                        const char *after, unsigned max, st_omap_cb cb,
                        void *arg)
{
    return st_omap_iter(FS(st)->in, oid, pfx, after, max, cb, arg);
}
static const struct st_ops fs_ops = {
    "failwrap", fs_open, fs_close, fs_ping, fs_operate, fs_aio, fs_aio_wait,
    fs_read, fs_stat, fs_list, fs_omap_get, fs_omap_iter};

TEST(close_returns_when_applied_persist_fails)
{
    struct fx f;
    fx_open(&f, "sqlite");
    struct failst *w = calloc(1, sizeof *w);
    ASSERT(w != NULL);
    w->base.ops = &fs_ops;
    w->in = f.st;
    f.st = &w->base;
    mkvol(f.st, "pf", 8 << 20, 1 << 20, JR_ROLE_PRIMARY, 1, 0);
    jr_volume *v;
    ASSERT_OK(jr_open(f.st, "pf", JR_OPEN_WRITE, "t", &v));
    uint8_t b[8192];
    fill(b, sizeof b, 7);
    ASSERT_OK(jr_write(v, 4096, b, sizeof b));
    __atomic_store_n(&w->armed, 1, __ATOMIC_SEQ_CST);
    alarm(30); /* the bug this guards against is a hang in jr_close */
    jr_close(v);
    alarm(0);
    __atomic_store_n(&w->armed, 0, __ATOMIC_SEQ_CST);
    /* Nothing was lost: replay on open applies the entries. */
    ASSERT_OK(jr_open(f.st, "pf", 0, "t", &v));
    uint8_t r[8192];
    ASSERT_OK(jr_read(v, 4096, r, sizeof r));
    ASSERT(memcmp(r, b, sizeof b) == 0);
    jr_close(v);
    fx_close(&f);
}

/* Header values from the store are checked before use: a journal index
 * entry starting at seq 0 (jr__head would wrap first - 1) and sizes past
 * 2^60 (range checks assume R-17's bound) are corruption. */
static int hb_count_cb(uint64_t off, uint64_t len, void *arg)
{
    (*(int *)arg)++;
    return 0;
}

TEST(header_values_bounded)
{
    struct fx f;
    fx_open(&f, "sqlite");
    mkvol(f.st, "hb", 8 << 20, 1 << 20, JR_ROLE_PRIMARY, 1, 0);
    jr_volume *v;
    ASSERT_OK(jr_open(f.st, "hb", JR_OPEN_WRITE, "t", &v));
    ASSERT_OK(jr_close(v));
    char hoid[JR_OID_MAX];
    jr__oid_header(hoid, sizeof hoid, "hb");
    ASSERT_OK(jr_open(f.st, "hb", 0, "t", &v));
    jr_close(v);
    ASSERT_OK(st_omap_set(f.st, hoid, "jidx.0000000000000000", "0", 1));
    ASSERT_EQ(jr_open(f.st, "hb", 0, "t", &v), JR_ECORRUPT);
    ASSERT_OK(st_omap_set(f.st, hoid, "jidx.0000000000000000", "1", 1));
    ASSERT_OK(jr_open(f.st, "hb", 0, "t", &v));
    jr_close(v);
    /* A dirty chunk whose number times bits times grain wraps to 0 (2^29
     * * 32768 * 1 MiB = 2^64) is past the image, not at its start. */
    static uint8_t bits[JR_DIRTY_CHUNK_BYTES];
    memset(bits, 0xff, sizeof bits);
    ASSERT_OK(st_omap_set(f.st, hoid, "dirty.0000000020000000", bits,
                          sizeof bits));
    int n = 0;
    ASSERT_OK(jr_dirty_iter(f.st, "hb", hb_count_cb, &n));
    ASSERT_EQ(n, 0);
    ASSERT_OK(st_omap_set(f.st, hoid, "dirty_grain", "2199023255552", 13));
    ASSERT_EQ(jr_open(f.st, "hb", 0, "t", &v), JR_ECORRUPT);
    ASSERT_OK(st_omap_set(f.st, hoid, "dirty_grain", "1048576", 7));
    ASSERT_OK(st_omap_set(f.st, hoid, "size", "2305843009213693952", 19));
    ASSERT_EQ(jr_open(f.st, "hb", 0, "t", &v), JR_ECORRUPT);
    ASSERT_OK(st_omap_set(f.st, hoid, "size", "8388608", 7));
    /* u64 values up to 2^64 - 1 parse back (they used to stop short of
     * it); one past is corruption, never a wrapped value. */
    struct jr_info in;
    ASSERT_OK(st_omap_set(f.st, hoid, "epoch", "18446744073709551615", 20));
    ASSERT_OK(st_omap_set(f.st, hoid, "journal_cap", "18446744073709551610",
                          20));
    ASSERT_OK(jr_volume_stat(f.st, "hb", &in));
    ASSERT_UEQ(in.epoch, UINT64_MAX);
    struct jr__hdr h;
    ASSERT_OK(jr__hdr_load(f.st, "hb", &h));
    ASSERT_UEQ(h.cap, UINT64_MAX - 5);
    jr__hdr_free(&h);
    ASSERT_OK(st_omap_set(f.st, hoid, "epoch", "18446744073709551616", 20));
    ASSERT_EQ(jr_volume_stat(f.st, "hb", &in), JR_ECORRUPT);
    ASSERT_OK(st_omap_set(f.st, hoid, "epoch", " 7", 2));
    ASSERT_EQ(jr_volume_stat(f.st, "hb", &in), JR_ECORRUPT);
    fx_close(&f);
}

/* The size a writer records in the header after a resize is guarded by
 * its lease: once another writer holds the lease, it is not written. */
TEST(resize_header_update_fenced)
{
    struct fx f;
    fx_open(&f, "sqlite");
    struct failst *w = calloc(1, sizeof *w);
    ASSERT(w != NULL);
    w->base.ops = &fs_ops;
    w->in = f.st;
    f.st = &w->base;
    mkvol(f.st, "rz", 8 << 20, 1 << 20, JR_ROLE_PRIMARY, 1, 0);
    jr_volume *v;
    ASSERT_OK(jr_open(f.st, "rz", JR_OPEN_WRITE, "t", &v));
    __atomic_store_n(&w->armed, 2, __ATOMIC_SEQ_CST);
    ASSERT_EQ(jr_resize(v, 16 << 20), JR_ELOCKED);
    __atomic_store_n(&w->armed, 0, __ATOMIC_SEQ_CST);
    struct jr_info si;
    ASSERT_OK(jr_volume_stat(f.st, "rz", &si));
    ASSERT_EQ(si.size, (uint64_t)8 << 20);
    jr_close(v);
    fx_close(&f);
}

/* A write whose journal append failed is not acknowledged, and reads do
 * not show it either (it stays queued, never durable). */
TEST(failed_write_not_read_back)
{
    struct fx f;
    fx_open(&f, "sqlite");
    struct failst *w = calloc(1, sizeof *w);
    ASSERT(w != NULL);
    w->base.ops = &fs_ops;
    w->in = f.st;
    f.st = &w->base;
    mkvol(f.st, "fw", 8 << 20, 1 << 20, JR_ROLE_PRIMARY, 1, 0);
    jr_volume *v;
    ASSERT_OK(jr_open(f.st, "fw", JR_OPEN_WRITE, "t", &v));
    uint8_t a[4096], b[4096], r[4096];
    fill(a, sizeof a, 1);
    fill(b, sizeof b, 2);
    ASSERT_OK(jr_write(v, 0, a, sizeof a));
    __atomic_store_n(&w->armed, 3, __ATOMIC_SEQ_CST);
    ASSERT(jr_write(v, 0, b, sizeof b) < 0);
    ASSERT(jr_volume_error(v) < 0);
    ASSERT_OK(jr_read(v, 0, r, sizeof r));
    ASSERT(memcmp(r, a, sizeof a) == 0);
    __atomic_store_n(&w->armed, 0, __ATOMIC_SEQ_CST);
    jr_close(v);
    fx_close(&f);
}

TT_MAIN()
