/*
 * store.h: the object store contract, with two backends behind one table
 * of operations (st_ops): sqlite (embedded default, one database file per
 * region) and rados (librados, one pool per region).
 *
 * Model (RADOS semantics, which the sqlite backend reproduces):
 *  - A store handle is bound to one namespace (one per region).  Objects
 *    are named by string (1..ST_MAX_OID bytes, no NUL) and hold bytes (size
 *    0..ST_MAX_OBJECT) plus a small key/value map ("omap": keys
 *    1..ST_MAX_KEY bytes, values 0..ST_MAX_VALUE bytes).
 *  - An object exists once any write, append, write_full, create or omap
 *    set touched it; it is gone after remove.  Reading or stat'ing a
 *    missing object is -ENOENT; reading past the end returns fewer bytes
 *    (0 at or beyond the end); writing past the end zero-fills the hole.
 *  - Every operation is atomic and durable when it returns 0 (sqlite:
 *    WAL with synchronous=FULL; rados: acked by the OSDs).
 *  - A write op (st_wop) groups several mutations of ONE object; both
 *    backends apply it all-or-nothing.  Guards (cmpxattr-like omap compare,
 *    exclusive create) make it fail with -ECANCELED / -EEXIST and apply
 *    nothing.
 *
 * Errors: 0 (or a byte count where stated) on success, a negative errno:
 *   -ENOENT missing object/key, -EEXIST exclusive create of an existing
 *   object, -ECANCELED compare-and-set mismatch, -ENAMETOOLONG oid or key
 *   too long, -EFBIG object or value too large, -EINVAL bad argument,
 *   -EIO/-ETIMEDOUT/-ENOTCONN backend trouble (message logged via tlog).
 *
 * Threads: an st_store is safe to use from many threads at once, and many
 * processes may open the same namespace concurrently (sqlite: WAL and a
 * busy timeout; rados: natively).  Callbacks of asynchronous operations run
 * on a backend thread: record the result and return, never block there.
 *
 * Ownership: buffers passed in are borrowed for the call (for aio: until
 * its callback ran).  Buffers returned through out-pointers are malloc'd
 * and owned by the caller (free(3)).
 */
#ifndef TANDEM_STORE_H
#define TANDEM_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define ST_MAX_OID 512
#define ST_MAX_KEY 1024
#define ST_MAX_VALUE (1u << 20)
#define ST_MAX_OBJECT (64ull << 20)

typedef struct st_store st_store;
typedef struct st_wop st_wop;

/* Which backend and where.  Strings are copied by st_open. */
struct st_config {
    const char *backend; /* "sqlite" or "rados" */
    /* sqlite */
    const char *db_path; /* database file; created if missing */
    /* rados */
    const char *ceph_conf; /* ceph.conf path (NULL: librados default) */
    const char *client_id; /* e.g. "admin" (NULL: "admin") */
    const char *keyring;   /* keyring path (NULL: from ceph.conf) */
    const char *pool;      /* pool of this region; must exist */
    const char *rados_ns;  /* optional RADOS namespace inside the pool */
    int op_timeout_s;      /* rados op timeout (0: 30 s) */
};

/* Open a store.  On success *out owns the handle; close with st_close. */
int st_open(const struct st_config *cfg, st_store **out);
/* Waits for pending aio, then releases everything.  NULL is a no-op. */
void st_close(st_store *st);
/* "sqlite" or "rados". */
const char *st_backend(const st_store *st);
/* Cheap liveness check (CSI Probe): 0 if the backend answers. */
int st_ping(st_store *st);

/* ---- bytes ---- */
int st_write(st_store *st, const char *oid, uint64_t off, const void *buf,
             size_t len);
/* Replace the whole content (the object then has exactly len bytes). */
int st_write_full(st_store *st, const char *oid, const void *buf, size_t len);
/* Append at the current end, atomically with respect to other appenders. */
int st_append(st_store *st, const char *oid, const void *buf, size_t len);
/* Read up to len bytes at off: returns bytes read (>= 0) or -errno. */
ssize_t st_read(st_store *st, const char *oid, uint64_t off, void *buf,
                size_t len);
int st_stat(st_store *st, const char *oid, uint64_t *size, int64_t *mtime_s);
/* Shrink or extend (zero-filled) to size. */
int st_truncate(st_store *st, const char *oid, uint64_t size);
/* Punch a zero-filled hole (RADOS zero); the size does not change unless
 * the range reaches past the end. */
int st_zero(st_store *st, const char *oid, uint64_t off, uint64_t len);
/* Remove an object (bytes and omap). -ENOENT if missing. */
int st_remove(st_store *st, const char *oid);

/* List objects whose name starts with prefix ("" = all), in no particular
 * order.  cb returns 0 to go on, non-zero to stop (that value is returned). */
typedef int (*st_list_cb)(const char *oid, void *arg);
int st_list(st_store *st, const char *prefix, st_list_cb cb, void *arg);

/* ---- omap ---- */
/* Get one value: *val is malloc'd (NUL-terminated for convenience, the
 * terminator is not counted in *len).  -ENOENT: no object or no key. */
int st_omap_get(st_store *st, const char *oid, const char *key, char **val,
                size_t *len);
/* Visit keys starting with prefix, in key order, starting strictly after
 * `after` (NULL: from the start), at most max (0: all).  cb as st_list. */
typedef int (*st_omap_cb)(const char *key, const char *val, size_t len,
                          void *arg);
int st_omap_iter(st_store *st, const char *oid, const char *prefix,
                 const char *after, unsigned max, st_omap_cb cb, void *arg);
int st_omap_set(st_store *st, const char *oid, const char *key,
                const void *val, size_t len);
int st_omap_rm(st_store *st, const char *oid, const char *key);
/* Compare-and-set one key: set key=newval only if its current value is
 * exactly expect (expect==NULL: only if the key is absent).  -ECANCELED on
 * mismatch; on a missing object with expect==NULL the object is created. */
int st_omap_cas(st_store *st, const char *oid, const char *key,
                const void *expect, size_t expect_len, const void *newval,
                size_t new_len);

/* ---- batched write ops on one object (atomic) ---- */
st_wop *st_wop_create(void);
void st_wop_destroy(st_wop *op);
/* Guards, checked before anything is applied. */
void st_wop_assert_exists(st_wop *op);
void st_wop_create_excl(st_wop *op);  /* -EEXIST if it exists */
void st_wop_omap_cmp(st_wop *op, const char *key, const void *expect,
                     size_t expect_len); /* -ECANCELED if key != expect;
                                            expect==NULL: key absent */
/* Mutations, applied in order.  Buffers are copied into the op. */
void st_wop_write(st_wop *op, uint64_t off, const void *buf, size_t len);
void st_wop_write_full(st_wop *op, const void *buf, size_t len);
void st_wop_append(st_wop *op, const void *buf, size_t len);
void st_wop_zero(st_wop *op, uint64_t off, uint64_t len);
void st_wop_truncate(st_wop *op, uint64_t size);
void st_wop_omap_set(st_wop *op, const char *key, const void *val,
                     size_t len);
void st_wop_omap_rm(st_wop *op, const char *key);
void st_wop_remove(st_wop *op);
/* Apply the op to oid (the op may be reused afterwards for the same set of
 * mutations; destroy it when done). */
int st_wop_operate(st_store *st, const char *oid, st_wop *op);

/* ---- asynchronous operations ----
 * Where the backend can overlap I/O (rados) these return at once and call
 * cb(result, arg) later on a backend thread; sqlite runs them inline and
 * calls cb before returning.  The op is consumed (destroyed) by the call.
 * st_aio_wait() waits until every aio issued on st so far has completed. */
typedef void (*st_aio_cb)(int result, void *arg);
int st_aio_operate(st_store *st, const char *oid, st_wop *op, st_aio_cb cb,
                   void *arg);
void st_aio_wait(st_store *st);

/* Human text for a store error code (negative errno). */
const char *st_strerror(int err);

#endif /* TANDEM_STORE_H */
