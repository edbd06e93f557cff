/*
 * store_sqlite.c: the embedded object store backend, one SQLite database
 * file per region.
 * One unit (as SQLite's os_unix.c is one VFS): every op of store.h relies on
 * the same row layout, its zero-tail invariant and this file's transactions.
 *
 * Layout (schema version 1, in table meta):
 *   objects(id, oid, size, mtime)   one row per object; oid is a BLOB so any
 *                                   byte string compares with memcmp order
 *   chunks(k, data)                 object bytes in chunks of ST_SQ_CHUNK:
 *                                   k = id * ST_SQ_CHUNKS + chunk index
 *   omap(obj, key, val)             the per-object key/value map
 *
 * Why chunks: the journal engine writes 4 KiB into 4 MiB objects and
 * appends to journal objects all the time.  Rewriting one blob per object
 * would cost 4 MiB per 4 KiB write.  A chunk row may be shorter than
 * ST_SQ_CHUNK (its tail then reads as zeros) and a missing row reads as
 * zeros, so objects are sparse.  A write that fits inside a row's stored
 * length changes it in place with sqlite3_blob_write, which dirties only
 * the pages it touches; one that extends a row rewrites it, at least
 * doubling its stored length so that appends cost O(1) amortised.
 * Invariant: every stored byte at or beyond the object's size is zero, so
 * a later extension (truncate up, write past the end) reads zeros there.
 *
 * Durability: journal_mode=WAL with synchronous=FULL, so every commit
 * fsyncs the WAL before COMMIT returns.  (In WAL mode synchronous=NORMAL
 * syncs only at checkpoints: a commit survives a process crash but may be
 * lost on power failure, which the contract does not allow.)
 *
 * Concurrency: writes run in BEGIN IMMEDIATE transactions, so a writer
 * takes the database write lock before it reads anything and never has to
 * upgrade (no SQLITE_BUSY deadlocks between two read-then-write
 * transactions).  Other processes wait up to ST_SQ_BUSY_MS (busy timeout);
 * a transaction that still fails with SQLITE_BUSY is retried until the
 * same deadline.  Threads: a pool of connections, each used by one thread
 * at a time and holding its prepared statements, so readers run in
 * parallel (WAL) and no call re-prepares SQL.
 *
 * Group commit: an fsync per commit bounds a writer to a few thousand
 * commits a second, so the write ops of concurrent threads (and every aio
 * op queued so far) are committed together, each in a savepoint of its
 * own (see sq_submit).  Asynchronous ops run on a thread of the store,
 * started by the first one.
 */
#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store_int.h"
#include "tbase.h"
#include "tlog.h"

#define ST_SQ_CHUNK (64u * 1024)                   /* bytes per row */
#define ST_SQ_CHUNKS (ST_MAX_OBJECT / ST_SQ_CHUNK) /* rows per object */
#define ST_SQ_BUSY_MS 10000 /* wait this long for another writer */
#define ST_SQ_MAX_IDLE 16   /* connections kept open in the pool */
#define ST_SQ_SCHEMA 1

_Static_assert(ST_MAX_OBJECT % ST_SQ_CHUNK == 0, "chunks tile an object");

/* The SQL every connection prepares (lazily, once). */
enum sq_sid {
    Q_BEGIN_R,
    Q_BEGIN_W,
    Q_COMMIT,
    Q_ROLLBACK,
    Q_OBJ_GET,
    Q_OBJ_INS,
    Q_OBJ_UPD,
    Q_OBJ_DEL,
    Q_CH_LEN,
    Q_CH_RANGE,
    Q_CH_PUT,
    Q_CH_DEL,
    Q_OM_GET,
    Q_OM_SET,
    Q_OM_RM,
    Q_OM_CLEAR,
    Q_OM_ITER,
    Q_LIST,
    Q_PING,
    Q_SAVEPOINT,
    Q_SP_ROLLBACK,
    Q_SP_RELEASE,
    Q_COUNT
};

static const char *const sq_sql[Q_COUNT] = {
    [Q_BEGIN_R] = "BEGIN",
    [Q_BEGIN_W] = "BEGIN IMMEDIATE",
    [Q_COMMIT] = "COMMIT",
    [Q_ROLLBACK] = "ROLLBACK",
    [Q_OBJ_GET] = "SELECT id, size, mtime FROM objects WHERE oid = ?1",
    [Q_OBJ_INS] = "INSERT INTO objects(oid, size, mtime) VALUES(?1, 0, ?2)",
    [Q_OBJ_UPD] = "UPDATE objects SET size = ?2, mtime = ?3 WHERE id = ?1",
    [Q_OBJ_DEL] = "DELETE FROM objects WHERE id = ?1",
    /* length() of a blob does not load its content. */
    [Q_CH_LEN] = "SELECT length(data) FROM chunks WHERE k = ?1",
    [Q_CH_RANGE] = "SELECT k, length(data) FROM chunks WHERE k >= ?1 AND "
                   "k < ?2 ORDER BY k",
    [Q_CH_PUT] = "INSERT INTO chunks(k, data) VALUES(?1, ?2) "
                 "ON CONFLICT(k) DO UPDATE SET data = excluded.data",
    [Q_CH_DEL] = "DELETE FROM chunks WHERE k >= ?1 AND k < ?2",
    [Q_OM_GET] = "SELECT val FROM omap WHERE obj = ?1 AND key = ?2",
    [Q_OM_SET] = "INSERT INTO omap(obj, key, val) VALUES(?1, ?2, ?3) "
                 "ON CONFLICT(obj, key) DO UPDATE SET val = excluded.val",
    [Q_OM_RM] = "DELETE FROM omap WHERE obj = ?1 AND key = ?2",
    [Q_OM_CLEAR] = "DELETE FROM omap WHERE obj = ?1",
    /* ?2: strictly after this key; ?3..?4: the prefix range ([?3, ?4),
     * ?4 being a sentinel above every key when the prefix has no end). */
    [Q_OM_ITER] = "SELECT key, val FROM omap WHERE obj = ?1 AND key > ?2 "
                  "AND key >= ?3 AND key < ?4 ORDER BY key LIMIT ?5",
    [Q_LIST] = "SELECT oid FROM objects WHERE oid >= ?1 AND oid < ?2",
    [Q_PING] = "SELECT count(*) FROM meta",
    [Q_SAVEPOINT] = "SAVEPOINT op",
    [Q_SP_ROLLBACK] = "ROLLBACK TO op",
    [Q_SP_RELEASE] = "RELEASE op",
};

static const char sq_schema[] =
    "CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v);"
    "CREATE TABLE IF NOT EXISTS objects(id INTEGER PRIMARY KEY, "
    "  oid BLOB NOT NULL UNIQUE, size INTEGER NOT NULL, "
    "  mtime INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS chunks(k INTEGER PRIMARY KEY, "
    "  data BLOB NOT NULL);"
    "CREATE TABLE IF NOT EXISTS omap(obj INTEGER NOT NULL, key BLOB NOT NULL,"
    "  val BLOB NOT NULL, PRIMARY KEY(obj, key)) WITHOUT ROWID;"
    "INSERT OR IGNORE INTO meta(k, v) VALUES('schema', 1);";

struct sq_conn {
    sqlite3 *db;
    sqlite3_stmt *stmt[Q_COUNT]; /* prepared on first use */
    unsigned char *scratch;      /* ST_SQ_CHUNK bytes for rewrites */
    struct sq_conn *next;        /* in the idle list */
};

struct sq_aio;

/* A write op waiting for a group commit. */
struct sq_req {
    const char *oid;
    const struct st_wop *op;
    int result;
    int done;
    struct sq_req *next;
};

struct sq_store {
    st_store base;
    char *path;
    pthread_mutex_t mu;   /* guards idle, nidle */
    struct sq_conn *idle; /* connections not in use by a thread */
    unsigned nidle;
    pthread_mutex_t wmu;  /* guards the write queue below */
    pthread_cond_t wcv;   /* a batch finished, or the leader left */
    struct sq_req *qhead; /* write ops waiting, in arrival order */
    struct sq_req **qtail;
    int leader;           /* a thread is committing a batch */
    pthread_mutex_t amu;  /* guards the aio fields below */
    pthread_cond_t awork; /* aio queued, or stop */
    pthread_cond_t aidle; /* apending dropped to 0 */
    struct sq_aio *ahead; /* aio ops not yet taken by the aio thread */
    struct sq_aio **atail;
    unsigned apending; /* aio ops whose callback has not returned */
    int athread_on, astop;
    pthread_t athread; /* started on the first aio op */
};

/* What a write transaction knows about its object. */
struct sq_obj {
    int exists;
    int64_t id;
    uint64_t size;
    int dirty; /* size/mtime must be written back */
};

/* Internal result: SQLite's "busy" after the busy timeout, retried by the
 * caller until the deadline. */
#define SQ_BUSY (-EBUSY)

/* ----------------------------------------------------------- helpers -- */

static int sq_map(sqlite3 *db, int rc, const char *what)
{
    int prim = rc & 0xff;
    if (prim == SQLITE_BUSY || prim == SQLITE_LOCKED) return SQ_BUSY;
    int err;
    switch (prim) {
    case SQLITE_NOMEM:
        err = -ENOMEM;
        break;
    case SQLITE_FULL:
        err = -ENOSPC;
        break;
    case SQLITE_READONLY:
        err = -EROFS;
        break;
    case SQLITE_PERM:
    case SQLITE_AUTH:
        err = -EACCES;
        break;
    case SQLITE_TOOBIG:
        err = -EFBIG;
        break;
    case SQLITE_CANTOPEN:
    case SQLITE_IOERR:
        /* The system call's errno says more (ENOENT, EACCES, ENOSPC). */
        err = db && sqlite3_system_errno(db) > 0 ? -sqlite3_system_errno(db)
                                                 : -EIO;
        break;
    default:
        err = -EIO;
        break;
    }
    tlog_error("store.sqlite.error", "op=%s rc=%d err=\"%s\"", what, rc,
               db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    return err;
}

/* The prepared statement id, reset and unbound, or NULL (*err set). */
static sqlite3_stmt *sq_stmt(struct sq_conn *c, enum sq_sid id, int *err)
{
    sqlite3_stmt *s = c->stmt[id];
    if (s) return s;
    int rc = sqlite3_prepare_v3(c->db, sq_sql[id], -1,
                                SQLITE_PREPARE_PERSISTENT, &s, NULL);
    if (rc != SQLITE_OK) {
        *err = sq_map(c->db, rc, sq_sql[id]);
        return NULL;
    }
    c->stmt[id] = s;
    return s;
}

/* Finish with a statement: reset it (keeping bindings is harmless, each
 * use binds every parameter again) so it holds no read lock. */
static void sq_done(sqlite3_stmt *s)
{
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
}

/* Run a statement without result rows (already bound). */
static int sq_run(struct sq_conn *c, sqlite3_stmt *s, const char *what)
{
    int rc = sqlite3_step(s);
    sq_done(s);
    if (rc == SQLITE_DONE || rc == SQLITE_ROW) return 0;
    return sq_map(c->db, rc, what);
}

static int sq_simple(struct sq_conn *c, enum sq_sid id)
{
    int err = 0;
    sqlite3_stmt *s = sq_stmt(c, id, &err);
    if (!s) return err;
    return sq_run(c, s, sq_sql[id]);
}

static void sq_conn_close(struct sq_conn *c)
{
    if (!c) return;
    for (int i = 0; i < Q_COUNT; i++)
        sqlite3_finalize(c->stmt[i]);
    sqlite3_close_v2(c->db);
    free(c->scratch);
    free(c);
}

static int sq_conn_open(struct sq_store *s, struct sq_conn **out)
{
    int rc, err = -ENOMEM;
    struct sq_conn *c = calloc(1, sizeof *c);
    if (!c) goto fail;
    if (!(c->scratch = malloc(ST_SQ_CHUNK))) goto fail;
    /* NOMUTEX: a connection is used by one thread at a time (the pool). */
    rc = sqlite3_open_v2(
        s->path, &c->db,
        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        err = sq_map(c->db, rc, "open");
        if (err == SQ_BUSY) err = -EIO;
        goto fail;
    }
    sqlite3_extended_result_codes(c->db, 1);
    sqlite3_busy_timeout(c->db, ST_SQ_BUSY_MS);
    /* synchronous=FULL: see the file comment (NORMAL is not durable in
     * WAL mode).  These settings are per connection.  Checkpoint every
     * 16 MiB of WAL rather than 4: 4 MiB object writes would otherwise
     * checkpoint on every commit; the WAL file is cut back to 64 MiB
     * after a checkpoint.  secure_delete=OFF: Debian builds SQLite with
     * SECURE_DELETE on, which zeroes every freed page and writes it to
     * the WAL, so removing a 4 MiB journal object cost more than writing
     * it (16 ms vs 12 ms here; 0.7 ms with OFF), and every chunk row
     * rewrite paid for zeroing the row it replaced.  Freed pages keep old
     * bytes until reused, as freed extents do on a disk or in RADOS. */
    rc = sqlite3_exec(c->db,
                      "PRAGMA synchronous=FULL; PRAGMA cache_size=-16384;"
                      "PRAGMA wal_autocheckpoint=4096;"
                      "PRAGMA journal_size_limit=67108864;"
                      "PRAGMA secure_delete=OFF;",
                      NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        err = sq_map(c->db, rc, "pragma");
        goto fail;
    }
    *out = c;
    return 0;
fail:
    sq_conn_close(c);
    return err;
}

/* Take a connection from the pool, or open one. */
static int sq_get(struct sq_store *s, struct sq_conn **out)
{
    pthread_mutex_lock(&s->mu);
    struct sq_conn *c = s->idle;
    if (c) {
        s->idle = c->next;
        s->nidle--;
    }
    pthread_mutex_unlock(&s->mu);
    if (c) {
        *out = c;
        return 0;
    }
    return sq_conn_open(s, out);
}

static void sq_put(struct sq_store *s, struct sq_conn *c)
{
    /* Never pool a connection inside a transaction (an error path that
     * could not roll back): close it, which rolls back. */
    if (!sqlite3_get_autocommit(c->db)) {
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
        if (!sqlite3_get_autocommit(c->db)) {
            sq_conn_close(c);
            return;
        }
    }
    pthread_mutex_lock(&s->mu);
    if (s->nidle < ST_SQ_MAX_IDLE) {
        c->next = s->idle;
        s->idle = c;
        s->nidle++;
        c = NULL;
    }
    pthread_mutex_unlock(&s->mu);
    sq_conn_close(c);
}

/* Wall-clock seconds since the epoch, for the objects' mtime column. */
static int64_t now_s(void)
{
    return tb_wall_ms() / 1000;
}

/* Run fn(c, ctx) in a transaction (write: BEGIN IMMEDIATE), retrying on
 * SQLITE_BUSY until ST_SQ_BUSY_MS passed.  fn returns >= 0 to commit. */
typedef int (*sq_txn_fn)(struct sq_conn *c, void *ctx);

static int sq_txn(struct sq_store *s, int write, sq_txn_fn fn, void *ctx)
{
    struct sq_conn *c = NULL;
    int64_t deadline = tb_mono_ms() + ST_SQ_BUSY_MS;
    unsigned backoff_us = 1000;
    int r = sq_get(s, &c);
    if (r < 0) return r;
    for (;;) {
        r = sq_simple(c, write ? Q_BEGIN_W : Q_BEGIN_R);
        if (r >= 0) {
            r = fn(c, ctx);
            if (r >= 0) {
                int rc = sq_simple(c, Q_COMMIT);
                if (rc < 0) r = rc;
            }
            if (r < 0) sq_simple(c, Q_ROLLBACK);
        }
        if (r != SQ_BUSY || tb_mono_ms() >= deadline) break;
        usleep(backoff_us);
        if (backoff_us < 50000) backoff_us *= 2;
    }
    sq_put(s, c);
    if (r == SQ_BUSY) {
        tlog_error("store.sqlite.busy", "path=%s waited_ms=%d", s->path,
                   ST_SQ_BUSY_MS);
        r = -ETIMEDOUT;
    }
    return r;
}

/* --------------------------------------------------------- objects -- */

static int obj_load(struct sq_conn *c, const char *oid, struct sq_obj *o,
                    int64_t *mtime)
{
    int err = 0;
    sqlite3_stmt *s = sq_stmt(c, Q_OBJ_GET, &err);
    if (!s) return err;
    sqlite3_bind_blob(s, 1, oid, (int)strlen(oid), SQLITE_STATIC);
    int rc = sqlite3_step(s);
    memset(o, 0, sizeof *o);
    if (rc == SQLITE_ROW) {
        o->exists = 1;
        o->id = sqlite3_column_int64(s, 0);
        o->size = (uint64_t)sqlite3_column_int64(s, 1);
        if (mtime) *mtime = sqlite3_column_int64(s, 2);
        rc = SQLITE_DONE;
    }
    sq_done(s);
    return rc == SQLITE_DONE ? 0 : sq_map(c->db, rc, "obj_load");
}

static int obj_create(struct sq_conn *c, const char *oid, struct sq_obj *o)
{
    int err = 0;
    sqlite3_stmt *s = sq_stmt(c, Q_OBJ_INS, &err);
    if (!s) return err;
    sqlite3_bind_blob(s, 1, oid, (int)strlen(oid), SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, now_s());
    if ((err = sq_run(c, s, "obj_create"))) return err;
    o->exists = 1;
    o->id = sqlite3_last_insert_rowid(c->db);
    o->size = 0;
    o->dirty = 1;
    return 0;
}

static int64_t chunk_key(const struct sq_obj *o, uint64_t idx)
{
    return o->id * (int64_t)ST_SQ_CHUNKS + (int64_t)idx;
}

/* Stored length of a chunk, -1 if it has no row. */
static int chunk_len(struct sq_conn *c, int64_t k, int64_t *len)
{
    int err = 0;
    sqlite3_stmt *s = sq_stmt(c, Q_CH_LEN, &err);
    if (!s) return err;
    sqlite3_bind_int64(s, 1, k);
    int rc = sqlite3_step(s);
    *len = -1;
    if (rc == SQLITE_ROW) {
        *len = sqlite3_column_int64(s, 0);
        rc = SQLITE_DONE;
    }
    sq_done(s);
    return rc == SQLITE_DONE ? 0 : sq_map(c->db, rc, "chunk_len");
}

static int chunk_del(struct sq_conn *c, int64_t from, int64_t to)
{
    int err = 0;
    sqlite3_stmt *s = sq_stmt(c, Q_CH_DEL, &err);
    if (!s) return err;
    sqlite3_bind_int64(s, 1, from);
    sqlite3_bind_int64(s, 2, to);
    return sq_run(c, s, "chunk_del");
}

static int chunk_put(struct sq_conn *c, int64_t k, const void *data, size_t len)
{
    int err = 0;
    sqlite3_stmt *s = sq_stmt(c, Q_CH_PUT, &err);
    if (!s) return err;
    sqlite3_bind_int64(s, 1, k);
    sqlite3_bind_blob(s, 2, data, (int)len, SQLITE_STATIC);
    return sq_run(c, s, "chunk_put");
}

/* Read or write [off, off+len) of chunk row k in place. */
static int chunk_io(struct sq_conn *c, int64_t k, int write, void *buf,
                    size_t len, size_t off)
{
    sqlite3_blob *b = NULL;
    int rc = sqlite3_blob_open(c->db, "main", "chunks", "data", k, write, &b);
    if (rc == SQLITE_OK)
        rc = write ? sqlite3_blob_write(b, buf, (int)len, (int)off)
                   : sqlite3_blob_read(b, buf, (int)len, (int)off);
    int rc2 = sqlite3_blob_close(b);
    if (rc == SQLITE_OK) rc = rc2;
    return rc == SQLITE_OK ? 0 : sq_map(c->db, rc, "chunk_io");
}

/* Write data into [a, b) of chunk idx (b <= ST_SQ_CHUNK). */
static int chunk_write(struct sq_conn *c, const struct sq_obj *o, uint64_t idx,
                       size_t a, size_t b, const void *data)
{
    int64_t k = chunk_key(o, idx), have;
    int r = chunk_len(c, k, &have);
    if (r) return r;
    if (have >= (int64_t)b) /* inside the stored bytes: in place */
        return chunk_io(c, k, 1, (void *)data, b - a, a);
    if (a == 0) /* replaces every stored byte */
        return chunk_put(c, k, data, b);
    /* Extend the row: keep the old bytes, zero the gap, and at least
     * double the stored length so a run of appends rewrites O(1) bytes
     * per byte appended. */
    size_t newlen = have > 0 ? (size_t)have * 2 : 0;
    if (newlen > ST_SQ_CHUNK) newlen = ST_SQ_CHUNK;
    if (newlen < b) newlen = b;
    memset(c->scratch, 0, newlen);
    if (have > 0 && (r = chunk_io(c, k, 0, c->scratch, (size_t)have, 0)))
        return r;
    memcpy(c->scratch + a, data, b - a);
    return chunk_put(c, k, c->scratch, newlen);
}

/* Zero [a, b) of chunk idx: drop the row when it is all covered. */
static int chunk_zero(struct sq_conn *c, const struct sq_obj *o, uint64_t idx,
                      size_t a, size_t b)
{
    int64_t k = chunk_key(o, idx), have;
    int r = chunk_len(c, k, &have);
    if (r || have <= (int64_t)a) return r;
    if (a == 0 && (int64_t)b >= have) return chunk_del(c, k, k + 1);
    if ((int64_t)b > have) b = (size_t)have;
    memset(c->scratch, 0, b - a);
    return chunk_io(c, k, 1, c->scratch, b - a, a);
}

static int obj_write(struct sq_conn *c, struct sq_obj *o, uint64_t off,
                     const unsigned char *data, size_t len)
{
    if (off + len > ST_MAX_OBJECT) return -EFBIG; /* appends */
    if (len == 0) {
        /* As in RADOS, an empty write past the end extends the object. */
        if (off > o->size) {
            o->size = off;
            o->dirty = 1;
        }
        return 0;
    }
    uint64_t end = off + len;
    for (uint64_t idx = off / ST_SQ_CHUNK; idx * ST_SQ_CHUNK < end; idx++) {
        uint64_t base = idx * ST_SQ_CHUNK;
        size_t a = off > base ? (size_t)(off - base) : 0;
        size_t b =
            end - base < ST_SQ_CHUNK ? (size_t)(end - base) : ST_SQ_CHUNK;
        int r = chunk_write(c, o, idx, a, b, data + (base + a - off));
        if (r) return r;
    }
    if (end > o->size) o->size = end;
    o->dirty = 1;
    return 0;
}

static int obj_zero(struct sq_conn *c, struct sq_obj *o, uint64_t off,
                    uint64_t len)
{
    uint64_t end = off + len;
    if (end > o->size) end = o->size; /* nothing is stored past the end */
    for (uint64_t idx = off / ST_SQ_CHUNK; off < end && idx * ST_SQ_CHUNK < end;
         idx++) {
        uint64_t base = idx * ST_SQ_CHUNK;
        size_t a = off > base ? (size_t)(off - base) : 0;
        size_t b =
            end - base < ST_SQ_CHUNK ? (size_t)(end - base) : ST_SQ_CHUNK;
        int r = chunk_zero(c, o, idx, a, b);
        if (r) return r;
    }
    o->dirty = 1;
    return 0;
}

static int obj_truncate(struct sq_conn *c, struct sq_obj *o, uint64_t size)
{
    if (size < o->size) {
        /* Drop whole chunks past the end, then cut the last one so the
         * zero-past-the-end invariant holds. */
        uint64_t keep = (size + ST_SQ_CHUNK - 1) / ST_SQ_CHUNK;
        int r = chunk_del(c, chunk_key(o, keep), chunk_key(o, ST_SQ_CHUNKS));
        if (r) return r;
        size_t tail = (size_t)(size % ST_SQ_CHUNK);
        if (tail) {
            int64_t k = chunk_key(o, size / ST_SQ_CHUNK), have;
            if ((r = chunk_len(c, k, &have))) return r;
            if (have > (int64_t)tail) {
                if ((r = chunk_io(c, k, 0, c->scratch, tail, 0))) return r;
                if ((r = chunk_put(c, k, c->scratch, tail))) return r;
            }
        }
    }
    o->size = size;
    o->dirty = 1;
    return 0;
}

static int obj_write_full(struct sq_conn *c, struct sq_obj *o,
                          const unsigned char *data, size_t len)
{
    int r = chunk_del(c, chunk_key(o, 0), chunk_key(o, ST_SQ_CHUNKS));
    if (r) return r;
    for (size_t off = 0; off < len; off += ST_SQ_CHUNK) {
        size_t n = len - off < ST_SQ_CHUNK ? len - off : ST_SQ_CHUNK;
        if ((r = chunk_put(c, chunk_key(o, off / ST_SQ_CHUNK), data + off, n)))
            return r;
    }
    o->size = len;
    o->dirty = 1;
    return 0;
}

static int obj_remove(struct sq_conn *c, struct sq_obj *o)
{
    int err = 0, r;
    if ((r = chunk_del(c, chunk_key(o, 0), chunk_key(o, ST_SQ_CHUNKS))))
        return r;
    sqlite3_stmt *s = sq_stmt(c, Q_OM_CLEAR, &err);
    if (!s) return err;
    sqlite3_bind_int64(s, 1, o->id);
    if ((r = sq_run(c, s, "omap_clear"))) return r;
    if (!(s = sq_stmt(c, Q_OBJ_DEL, &err))) return err;
    sqlite3_bind_int64(s, 1, o->id);
    if ((r = sq_run(c, s, "obj_del"))) return r;
    memset(o, 0, sizeof *o);
    return 0;
}

/* omap value of key into *val (malloc'd, NUL-terminated): -ENOENT if
 * absent.  val NULL: only report presence. */
static int omap_get1(struct sq_conn *c, int64_t id, const char *key, char **val,
                     size_t *len)
{
    int err = 0;
    sqlite3_stmt *s = sq_stmt(c, Q_OM_GET, &err);
    if (!s) return err;
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_blob(s, 2, key, (int)strlen(key), SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        const void *p = sqlite3_column_blob(s, 0);
        size_t n = (size_t)sqlite3_column_bytes(s, 0);
        err = 0;
        if (val) {
            char *v = malloc(n + 1);
            if (!v) {
                err = -ENOMEM;
            } else {
                if (n) memcpy(v, p, n);
                v[n] = '\0';
                *val = v;
                *len = n;
            }
        }
        sq_done(s);
        return err;
    }
    sq_done(s);
    return rc == SQLITE_DONE ? -ENOENT : sq_map(c->db, rc, "omap_get");
}

/* ---------------------------------------------------------- operate -- */

struct op_ctx {
    const char *oid;
    const struct st_wop *op;
};

static int do_operate(struct sq_conn *c, void *arg)
{
    struct op_ctx *x = arg;
    struct sq_obj o;
    int r = obj_load(c, x->oid, &o, NULL), err = 0;
    if (r) return r;
    /* Items run in order and the first failure rolls everything back,
     * exactly as RADOS runs the ops of one write op. */
    for (size_t i = 0; i < x->op->n; i++) {
        const struct st_wop_item *it = &x->op->items[i];
        sqlite3_stmt *s;
        switch (it->kind) {
        case ST_WOP_ASSERT_EXISTS:
            if (!o.exists) return -ENOENT;
            break;
        case ST_WOP_CREATE_EXCL:
            if (o.exists) return -EEXIST;
            if ((r = obj_create(c, x->oid, &o))) return r;
            break;
        case ST_WOP_OMAP_CMP: {
            char *v = NULL;
            size_t n = 0;
            if (!o.exists) {
                /* A missing object has no keys: "absent" holds (and the
                 * object is created here, as the rados backend must do),
                 * any value comparison fails.  See store.h. */
                if (!it->absent) return -ECANCELED;
                if ((r = obj_create(c, x->oid, &o))) return r;
                break;
            }
            r = omap_get1(c, o.id, it->key, it->absent ? NULL : &v, &n);
            if (r && r != -ENOENT) return r;
            int ok = it->absent ? r == -ENOENT
                                : (r == 0 && n == it->dlen &&
                                   (n == 0 || !memcmp(v, it->data, n)));
            free(v);
            if (!ok) return -ECANCELED;
            break;
        }
        case ST_WOP_FENCE_GUARD: {
            /* Another object's key, read in this same transaction: the
             * op and the guard are one atomic step (store.h). */
            struct sq_obj g;
            char *v = NULL;
            size_t n = 0;
            if ((r = obj_load(c, it->goid, &g, NULL))) return r;
            if (!g.exists) return -ECANCELED;
            r = omap_get1(c, g.id, it->key, &v, &n);
            if (r && r != -ENOENT) return r;
            int ok = r == 0 && n == it->dlen &&
                     (n == 0 || !memcmp(v, it->data, n));
            free(v);
            if (!ok) return -ECANCELED;
            break;
        }
        case ST_WOP_WRITE:
        case ST_WOP_APPEND:
            if (!o.exists && (r = obj_create(c, x->oid, &o))) return r;
            r = obj_write(c, &o, it->kind == ST_WOP_APPEND ? o.size : it->off,
                          it->data, it->dlen);
            if (r) return r;
            break;
        case ST_WOP_WRITE_FULL:
            if (!o.exists && (r = obj_create(c, x->oid, &o))) return r;
            if ((r = obj_write_full(c, &o, it->data, it->dlen))) return r;
            break;
        case ST_WOP_ZERO:
            /* RADOS semantics (Ceph 16, checked against a cluster): a
             * missing object or a range at or past the end is a no-op; a
             * range that reaches the end cuts the object at off. */
            if (!o.exists || it->len == 0 || it->off >= o.size) break;
            if (it->off + it->len >= o.size)
                r = obj_truncate(c, &o, it->off);
            else
                r = obj_zero(c, &o, it->off, it->len);
            if (r) return r;
            break;
        case ST_WOP_TRUNCATE:
            /* Truncating a missing object does not create it (RADOS). */
            if (o.exists && (r = obj_truncate(c, &o, it->off))) return r;
            break;
        case ST_WOP_OMAP_SET:
            if (!o.exists && (r = obj_create(c, x->oid, &o))) return r;
            if (!(s = sq_stmt(c, Q_OM_SET, &err))) return err;
            sqlite3_bind_int64(s, 1, o.id);
            sqlite3_bind_blob(s, 2, it->key, (int)strlen(it->key),
                              SQLITE_STATIC);
            /* zeroblob(0) for an empty value: a NULL pointer would bind
             * SQL NULL, which the NOT NULL column refuses. */
            if (it->dlen)
                sqlite3_bind_blob(s, 3, it->data, (int)it->dlen, SQLITE_STATIC);
            else
                sqlite3_bind_zeroblob(s, 3, 0);
            if ((r = sq_run(c, s, "omap_set"))) return r;
            o.dirty = 1;
            break;
        case ST_WOP_OMAP_RM:
            if (!o.exists) return -ENOENT;
            if (!(s = sq_stmt(c, Q_OM_RM, &err))) return err;
            sqlite3_bind_int64(s, 1, o.id);
            sqlite3_bind_blob(s, 2, it->key, (int)strlen(it->key),
                              SQLITE_STATIC);
            if ((r = sq_run(c, s, "omap_rm"))) return r;
            o.dirty = 1;
            break;
        case ST_WOP_REMOVE:
            if (!o.exists) return -ENOENT;
            if ((r = obj_remove(c, &o))) return r;
            break;
        }
    }
    if (o.exists && o.dirty) {
        sqlite3_stmt *s = sq_stmt(c, Q_OBJ_UPD, &err);
        if (!s) return err;
        sqlite3_bind_int64(s, 1, o.id);
        sqlite3_bind_int64(s, 2, (int64_t)o.size);
        sqlite3_bind_int64(s, 3, now_s());
        if ((r = sq_run(c, s, "obj_update"))) return r;
    }
    return 0;
}

/* Group commit.  Every commit costs an fsync, so write ops of concurrent
 * threads are queued and one of them (the leader) applies the whole queue
 * in one transaction, each op inside its own savepoint so that an op that
 * fails (a guard, -ENOENT, ...) is rolled back alone.  A failure of the
 * transaction itself (I/O error, busy timeout) falls back to one
 * transaction per op, so each op gets its own result.  Other processes
 * are not batched with us: they take the database lock in turn. */
#define SQ_BATCH_MAX 64

struct batch_ctx {
    struct sq_req *reqs;
};

/* An op's own failure (kept inside its savepoint), as opposed to one of
 * the database (which ends the batch). */
static int op_level_error(int r)
{
    return r == -ENOENT || r == -EEXIST || r == -ECANCELED || r == -EFBIG ||
           r == -EINVAL || r == -ENAMETOOLONG;
}

static int do_batch(struct sq_conn *c, void *arg)
{
    struct batch_ctx *b = arg;
    for (struct sq_req *q = b->reqs; q; q = q->next) {
        struct op_ctx x = {q->oid, q->op};
        int r = sq_simple(c, Q_SAVEPOINT);
        if (r < 0) return r;
        q->result = do_operate(c, &x);
        if (q->result < 0) {
            if (!op_level_error(q->result)) return q->result;
            if ((r = sq_simple(c, Q_SP_ROLLBACK)) < 0) return r;
        }
        if ((r = sq_simple(c, Q_SP_RELEASE)) < 0) return r;
    }
    return 0;
}

static void run_batch(struct sq_store *s, struct sq_req *reqs)
{
    struct batch_ctx b = {reqs};
    if (!reqs->next) {
        struct op_ctx x = {reqs->oid, reqs->op};
        reqs->result = sq_txn(s, 1, do_operate, &x);
        return;
    }
    if (sq_txn(s, 1, do_batch, &b) == 0) return;
    for (struct sq_req *q = reqs; q; q = q->next) {
        struct op_ctx x = {q->oid, q->op};
        q->result = sq_txn(s, 1, do_operate, &x);
    }
}

/* Queue reqs[0..n) for the group commit and return when all are done:
 * lead (commit batches from the queue) while no other thread does.  The
 * queue is served in order, one batch at a time, so the last of reqs is
 * done only once all of them are. */
static void sq_submit(struct sq_store *s, struct sq_req *reqs, size_t n)
{
    struct sq_req *last = &reqs[n - 1];
    pthread_mutex_lock(&s->wmu);
    for (size_t i = 0; i < n; i++) {
        reqs[i].next = NULL;
        *s->qtail = &reqs[i];
        s->qtail = &reqs[i].next;
    }
    while (!last->done && s->leader)
        pthread_cond_wait(&s->wcv, &s->wmu);
    if (!last->done) {
        s->leader = 1;
        while (!last->done) {
            struct sq_req *batch = s->qhead, **tail = &s->qhead;
            int k = 0;
            while (*tail && k < SQ_BATCH_MAX) {
                tail = &(*tail)->next;
                k++;
            }
            s->qhead = *tail;
            *tail = NULL;
            if (!s->qhead) s->qtail = &s->qhead;
            pthread_mutex_unlock(&s->wmu);
            run_batch(s, batch);
            pthread_mutex_lock(&s->wmu);
            for (struct sq_req *q = batch, *next; q; q = next) {
                next = q->next; /* q dies once its owner sees done */
                q->done = 1;
            }
            pthread_cond_broadcast(&s->wcv);
        }
        /* Hand over: a waiter whose op is still queued takes the lead. */
        s->leader = 0;
        pthread_cond_broadcast(&s->wcv);
    }
    pthread_mutex_unlock(&s->wmu);
}

static int sq_operate(st_store *st, const char *oid, const struct st_wop *op)
{
    struct sq_store *s = ST_CONTAINER(st, struct sq_store, base);
    struct sq_req rq = {oid, op, 0, 0, NULL};
    sq_submit(s, &rq, 1);
    return rq.result;
}

/* Asynchronous ops: queued for the store's aio thread, which hands
 * everything queued so far to the group commit at once (so a burst of aio
 * ops costs one fsync, not one each) and then calls the callbacks. */
struct sq_aio {
    char *oid;
    st_wop *op;
    st_aio_cb cb;
    void *arg;
    struct sq_aio *next;
};

static void *sq_aio_main(void *arg)
{
    struct sq_store *s = arg;
    struct sq_req reqs[SQ_BATCH_MAX];
    struct sq_aio *take[SQ_BATCH_MAX];
    pthread_mutex_lock(&s->amu);
    for (;;) {
        while (!s->ahead && !s->astop)
            pthread_cond_wait(&s->awork, &s->amu);
        if (!s->ahead) break; /* stopping, nothing left */
        size_t n = 0;
        while (s->ahead && n < SQ_BATCH_MAX) {
            take[n++] = s->ahead;
            s->ahead = s->ahead->next;
        }
        if (!s->ahead) s->atail = &s->ahead;
        pthread_mutex_unlock(&s->amu);
        for (size_t i = 0; i < n; i++)
            reqs[i] = (struct sq_req){take[i]->oid, take[i]->op, 0, 0, NULL};
        sq_submit(s, reqs, n);
        for (size_t i = 0; i < n; i++) {
            take[i]->cb(reqs[i].result, take[i]->arg);
            st_wop_destroy(take[i]->op);
            free(take[i]->oid);
            free(take[i]);
        }
        pthread_mutex_lock(&s->amu);
        s->apending -= (unsigned)n;
        if (s->apending == 0) pthread_cond_broadcast(&s->aidle);
    }
    pthread_mutex_unlock(&s->amu);
    return NULL;
}

static int sq_aio_operate(st_store *st, const char *oid, st_wop *op,
                          st_aio_cb cb, void *arg)
{
    struct sq_store *s = ST_CONTAINER(st, struct sq_store, base);
    struct sq_aio *a = calloc(1, sizeof *a);
    if (!a || !(a->oid = strdup(oid))) {
        free(a);
        st_wop_destroy(op);
        return -ENOMEM;
    }
    a->op = op;
    a->cb = cb;
    a->arg = arg;
    pthread_mutex_lock(&s->amu);
    if (!s->athread_on) {
        if (pthread_create(&s->athread, NULL, sq_aio_main, s) != 0) {
            pthread_mutex_unlock(&s->amu);
            /* No thread: run it here, which the contract allows too. */
            int r = sq_operate(st, oid, op);
            st_wop_destroy(op);
            free(a->oid);
            free(a);
            cb(r, arg);
            return 0;
        }
        s->athread_on = 1;
    }
    *s->atail = a;
    s->atail = &a->next;
    s->apending++;
    pthread_cond_signal(&s->awork);
    pthread_mutex_unlock(&s->amu);
    return 0;
}

static void sq_aio_wait(st_store *st)
{
    struct sq_store *s = ST_CONTAINER(st, struct sq_store, base);
    pthread_mutex_lock(&s->amu);
    while (s->apending)
        pthread_cond_wait(&s->aidle, &s->amu);
    pthread_mutex_unlock(&s->amu);
}

/* ------------------------------------------------------------- reads -- */

struct read_ctx {
    const char *oid;
    uint64_t off;
    unsigned char *buf;
    size_t len;
    uint64_t size;
    int64_t mtime;
};

static int do_read(struct sq_conn *c, void *arg)
{
    struct read_ctx *x = arg;
    struct sq_obj o;
    int r = obj_load(c, x->oid, &o, NULL), err = 0;
    if (r) return r;
    if (!o.exists) return -ENOENT;
    if (x->off >= o.size || x->len == 0) return 0;
    size_t n = o.size - x->off < x->len ? (size_t)(o.size - x->off) : x->len;
    uint64_t end = x->off + n;
    /* Holes (missing rows, short rows) read as zeros. */
    memset(x->buf, 0, n);
    sqlite3_stmt *s = sq_stmt(c, Q_CH_RANGE, &err);
    if (!s) return err;
    sqlite3_bind_int64(s, 1, chunk_key(&o, x->off / ST_SQ_CHUNK));
    sqlite3_bind_int64(s, 2, chunk_key(&o, (end - 1) / ST_SQ_CHUNK + 1));
    int rc;
    r = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int64_t k = sqlite3_column_int64(s, 0);
        uint64_t have = (uint64_t)sqlite3_column_int64(s, 1);
        uint64_t base = (uint64_t)(k - chunk_key(&o, 0)) * ST_SQ_CHUNK;
        uint64_t a = x->off > base ? x->off : base;
        uint64_t b = base + have < end ? base + have : end;
        if (a >= b) continue;
        if ((r = chunk_io(c, k, 0, x->buf + (a - x->off), (size_t)(b - a),
                          (size_t)(a - base))))
            break;
    }
    sq_done(s);
    if (r) return r;
    if (rc != SQLITE_DONE) return sq_map(c->db, rc, "read");
    return (int)n;
}

static ssize_t sq_read(st_store *st, const char *oid, uint64_t off, void *buf,
                       size_t len)
{
    struct sq_store *s = ST_CONTAINER(st, struct sq_store, base);
    struct read_ctx x = {.oid = oid, .off = off, .buf = buf, .len = len};
    return sq_txn(s, 0, do_read, &x);
}

static int do_stat(struct sq_conn *c, void *arg)
{
    struct read_ctx *x = arg;
    struct sq_obj o;
    int r = obj_load(c, x->oid, &o, &x->mtime);
    if (r) return r;
    if (!o.exists) return -ENOENT;
    x->size = o.size;
    return 0;
}

static int sq_stat(st_store *st, const char *oid, uint64_t *size,
                   int64_t *mtime_s)
{
    struct sq_store *s = ST_CONTAINER(st, struct sq_store, base);
    struct read_ctx x = {.oid = oid};
    /* One statement would be a snapshot by itself; sq_txn adds the busy
     * retry. */
    int r = sq_txn(s, 0, do_stat, &x);
    if (r == 0) {
        *size = x.size;
        *mtime_s = x.mtime;
    }
    return r;
}

/* Results of list/iter are collected first and handed to the callback
 * after the transaction ended, so a callback may call into the store
 * (e.g. remove what it is shown) without holding a snapshot open. */
struct kv {
    char *key;
    char *val; /* NUL-terminated */
    size_t len;
};

struct kv_list {
    struct kv *v;
    size_t n, cap;
};

static void kv_free(struct kv_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].key);
        free(l->v[i].val);
    }
    free(l->v);
    memset(l, 0, sizeof *l);
}

static int kv_push(struct kv_list *l, const void *k, size_t klen, const void *v,
                   size_t vlen, int with_val)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        struct kv *p = realloc(l->v, cap * sizeof *p);
        if (!p) return -ENOMEM;
        l->v = p;
        l->cap = cap;
    }
    struct kv e = {0};
    if (!(e.key = malloc(klen + 1))) return -ENOMEM;
    memcpy(e.key, k, klen);
    e.key[klen] = '\0';
    if (with_val) {
        if (!(e.val = malloc(vlen + 1))) {
            free(e.key);
            return -ENOMEM;
        }
        if (vlen) memcpy(e.val, v, vlen);
        e.val[vlen] = '\0';
        e.len = vlen;
    }
    l->v[l->n++] = e;
    return 0;
}

/* Bind the range [prefix, end of prefix) to parameters lo and hi. */
static char sq_top[ST_MAX_KEY + 2]; /* above every key and oid: see init */
static pthread_once_t sq_top_once = PTHREAD_ONCE_INIT;
static void sq_top_init(void)
{
    memset(sq_top, 0xff, sizeof sq_top - 1);
}

static void bind_prefix(sqlite3_stmt *s, int lo, int hi, const char *prefix,
                        char *endbuf, size_t cap)
{
    int n = st__prefix_end(prefix, endbuf, cap);
    sqlite3_bind_blob(s, lo, prefix, (int)strlen(prefix), SQLITE_STATIC);
    /* Keys are at most ST_MAX_KEY bytes, so ST_MAX_KEY+1 0xff bytes
     * compare above all of them. */
    if (n >= 0)
        sqlite3_bind_blob(s, hi, endbuf, n, SQLITE_STATIC);
    else
        sqlite3_bind_blob(s, hi, sq_top, ST_MAX_KEY + 1, SQLITE_STATIC);
}

struct list_ctx {
    const char *oid;
    const char *prefix;
    const char *after;
    unsigned max;
    struct kv_list out;
};

static int do_list(struct sq_conn *c, void *arg)
{
    struct list_ctx *x = arg;
    char end[ST_MAX_KEY + 2];
    int err = 0, rc, r = 0;
    kv_free(&x->out); /* a retried transaction starts over */
    sqlite3_stmt *s = sq_stmt(c, Q_LIST, &err);
    if (!s) return err;
    bind_prefix(s, 1, 2, x->prefix, end, sizeof end);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if ((r = kv_push(&x->out, sqlite3_column_blob(s, 0),
                         (size_t)sqlite3_column_bytes(s, 0), NULL, 0, 0)))
            break;
    }
    sq_done(s);
    if (r) return r;
    return rc == SQLITE_DONE ? 0 : sq_map(c->db, rc, "list");
}

static int sq_list(st_store *st, const char *prefix, st_list_cb cb, void *arg)
{
    struct sq_store *s = ST_CONTAINER(st, struct sq_store, base);
    struct list_ctx x = {.prefix = prefix};
    pthread_once(&sq_top_once, sq_top_init);
    int r = sq_txn(s, 0, do_list, &x);
    for (size_t i = 0; r == 0 && i < x.out.n; i++)
        r = cb(x.out.v[i].key, arg);
    kv_free(&x.out);
    return r;
}

static int do_omap_iter(struct sq_conn *c, void *arg)
{
    struct list_ctx *x = arg;
    struct sq_obj o;
    char end[ST_MAX_KEY + 2];
    int err = 0, rc, r;
    kv_free(&x->out);
    if ((r = obj_load(c, x->oid, &o, NULL))) return r;
    if (!o.exists) return -ENOENT;
    sqlite3_stmt *s = sq_stmt(c, Q_OM_ITER, &err);
    if (!s) return err;
    sqlite3_bind_int64(s, 1, o.id);
    if (x->after)
        sqlite3_bind_blob(s, 2, x->after, (int)strlen(x->after), SQLITE_STATIC);
    else
        sqlite3_bind_zeroblob(s, 2, 0); /* every key is > "" */
    bind_prefix(s, 3, 4, x->prefix, end, sizeof end);
    sqlite3_bind_int64(s, 5, x->max ? (int64_t)x->max : -1);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if ((r = kv_push(&x->out, sqlite3_column_blob(s, 0),
                         (size_t)sqlite3_column_bytes(s, 0),
                         sqlite3_column_blob(s, 1),
                         (size_t)sqlite3_column_bytes(s, 1), 1)))
            break;
    }
    sq_done(s);
    if (r) return r;
    return rc == SQLITE_DONE ? 0 : sq_map(c->db, rc, "omap_iter");
}

static int sq_omap_iter(st_store *st, const char *oid, const char *prefix,
                        const char *after, unsigned max, st_omap_cb cb,
                        void *arg)
{
    struct sq_store *s = ST_CONTAINER(st, struct sq_store, base);
    struct list_ctx x = {
        .oid = oid, .prefix = prefix, .after = after, .max = max};
    pthread_once(&sq_top_once, sq_top_init);
    int r = sq_txn(s, 0, do_omap_iter, &x);
    for (size_t i = 0; r == 0 && i < x.out.n; i++)
        r = cb(x.out.v[i].key, x.out.v[i].val, x.out.v[i].len, arg);
    kv_free(&x.out);
    return r;
}

struct get_ctx {
    const char *oid, *key;
    char *val;
    size_t len;
};

static int do_omap_get(struct sq_conn *c, void *arg)
{
    struct get_ctx *x = arg;
    struct sq_obj o;
    int r = obj_load(c, x->oid, &o, NULL);
    if (r) return r;
    if (!o.exists) return -ENOENT;
    return omap_get1(c, o.id, x->key, &x->val, &x->len);
}

static int sq_omap_get(st_store *st, const char *oid, const char *key,
                       char **val, size_t *len)
{
    struct sq_store *s = ST_CONTAINER(st, struct sq_store, base);
    struct get_ctx x = {.oid = oid, .key = key};
    int r = sq_txn(s, 0, do_omap_get, &x);
    if (r == 0) {
        *val = x.val;
        *len = x.len;
    }
    return r;
}

static int do_ping(struct sq_conn *c, void *arg)
{
    (void)arg;
    return sq_simple(c, Q_PING);
}

static int sq_ping(st_store *st)
{
    return sq_txn(ST_CONTAINER(st, struct sq_store, base), 0, do_ping, NULL);
}

/* ------------------------------------------------------- open/close -- */

static int do_schema(struct sq_conn *c, void *arg)
{
    (void)arg;
    int rc = sqlite3_exec(c->db, sq_schema, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : sq_map(c->db, rc, "schema");
}

static void sq_close(st_store *st)
{
    struct sq_store *s = ST_CONTAINER(st, struct sq_store, base);
    if (s->athread_on) {
        sq_aio_wait(st);
        pthread_mutex_lock(&s->amu);
        s->astop = 1;
        pthread_cond_signal(&s->awork);
        pthread_mutex_unlock(&s->amu);
        pthread_join(s->athread, NULL);
    }
    while (s->idle) {
        struct sq_conn *c = s->idle;
        s->idle = c->next;
        sq_conn_close(c);
    }
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->wmu);
    pthread_cond_destroy(&s->wcv);
    pthread_mutex_destroy(&s->amu);
    pthread_cond_destroy(&s->awork);
    pthread_cond_destroy(&s->aidle);
    free(s->path);
    free(s);
}

static int sq_open(const struct st_config *cfg, st_store **out)
{
    struct sq_conn *c = NULL;
    int r = -ENOMEM;
    struct sq_store *s = calloc(1, sizeof *s);
    if (!s) return -ENOMEM;
    s->base.ops = &st__sqlite_ops;
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->wmu, NULL);
    pthread_cond_init(&s->wcv, NULL);
    s->qtail = &s->qhead;
    pthread_mutex_init(&s->amu, NULL);
    pthread_cond_init(&s->awork, NULL);
    pthread_cond_init(&s->aidle, NULL);
    s->atail = &s->ahead;
    if (!(s->path = strdup(cfg->db_path))) goto fail;

    /* WAL is a property of the database file: set once, kept by SQLite.
     * Switching needs a moment without other connections, so retry while
     * another process holds the file. */
    if ((r = sq_conn_open(s, &c))) goto fail;
    int64_t deadline = tb_mono_ms() + ST_SQ_BUSY_MS;
    for (;;) {
        sqlite3_stmt *q = NULL;
        int rc =
            sqlite3_prepare_v2(c->db, "PRAGMA journal_mode=WAL", -1, &q, NULL);
        if (rc == SQLITE_OK) rc = sqlite3_step(q);
        const char *mode =
            rc == SQLITE_ROW ? (const char *)sqlite3_column_text(q, 0) : NULL;
        int wal = mode && !strcmp(mode, "wal");
        sqlite3_finalize(q);
        if (wal) break;
        if (rc == SQLITE_ROW) rc = SQLITE_BUSY; /* mode not switched yet */
        r = sq_map(c->db, rc, "journal_mode");
        if (r != SQ_BUSY) goto fail;
        if (tb_mono_ms() >= deadline) {
            r = -ETIMEDOUT;
            goto fail;
        }
        usleep(10000);
    }
    sq_put(s, c);
    c = NULL;
    if ((r = sq_txn(s, 1, do_schema, NULL))) goto fail;
    *out = &s->base;
    return 0;
fail:
    tlog_error("store.sqlite.open_failed", "path=%s err=%d", cfg->db_path, r);
    sq_conn_close(c);
    sq_close(&s->base);
    return r;
}

const struct st_ops st__sqlite_ops = {
    .name = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .ping = sq_ping,
    .operate = sq_operate,
    .aio_operate = sq_aio_operate,
    .aio_wait = sq_aio_wait,
    .read = sq_read,
    .stat = sq_stat,
    .list = sq_list,
    .omap_get = sq_omap_get,
    .omap_iter = sq_omap_iter,
};
