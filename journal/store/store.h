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
 *    backends apply it all-or-nothing, item by item in order, stopping at
 *    the first failing item.  Guards (cmpxattr-like omap compare,
 *    exclusive create) make it fail with -ECANCELED / -EEXIST and apply
 *    nothing.  Put guards first: RADOS evaluates an omap compare against
 *    the omap as it was before the op, sqlite against the op's progress.
 *  - Where RADOS has odd corners (zero reaching the end truncates,
 *    truncating a missing object is a no-op, ...) the sqlite backend
 *    copies them, so code tested on one backend behaves the same on the
 *    other; tests/unit/test-store.c pins each of them on both.
 *
 * Errors: 0 (or a byte count where stated) on success, a negative errno:
 *   -ENOENT missing object/key, -EEXIST exclusive create of an existing
 *   object, -ECANCELED compare-and-set mismatch, -ENAMETOOLONG oid or key
 *   too long, -EFBIG object or value too large, -EINVAL bad argument,
 *   -EIO/-ETIMEDOUT/-ENOTCONN backend trouble (message logged via tlog),
 *   -ESHUTDOWN this handle was fenced (st_fence: rados blocklisted its
 *   client); every later operation fails the same way.
 *
 * Threads: an st_store is safe to use from many threads at once, and many
 * processes may open the same namespace concurrently (sqlite: WAL and a
 * busy timeout; rados: natively).  After fork(2) a child must open its
 * own st_store and never touch its parent's.  Callbacks of asynchronous
 * operations run on a backend thread: record the result and return, never
 * block there.  sqlite commits the writes of concurrent threads of one
 * process together (one fsync per batch; each op still atomic alone).
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

/* ---- bytes ----
 * Offsets and sizes: off + len must stay within ST_MAX_OBJECT (-EFBIG).
 * Writes, appends and write_full create a missing object; a write of 0
 * bytes past the end extends the object to off (RADOS does the same). */
int st_write(st_store *st, const char *oid, uint64_t off, const void *buf,
             size_t len);
/* Replace the whole content (the object then has exactly len bytes). */
int st_write_full(st_store *st, const char *oid, const void *buf, size_t len);
/* Append at the current end, atomically with respect to other appenders.
 * -EFBIG if the object would exceed ST_MAX_OBJECT (rados: enforced by the
 * cluster's osd_max_object_size, which tests/ceph/ceph-up.sh sets to
 * ST_MAX_OBJECT; Ceph's default is 128 MiB). */
int st_append(st_store *st, const char *oid, const void *buf, size_t len);
/* Read up to len bytes at off: returns bytes read (>= 0) or -errno. */
ssize_t st_read(st_store *st, const char *oid, uint64_t off, void *buf,
                size_t len);
int st_stat(st_store *st, const char *oid, uint64_t *size, int64_t *mtime_s);
/* Shrink or extend (zero-filled) to size.  A missing object stays
 * missing (0 returned), as in RADOS. */
int st_truncate(st_store *st, const char *oid, uint64_t size);
/* Zero [off, off+len) with RADOS semantics (checked on Ceph 16): a range
 * inside the object punches a hole (size unchanged); a range that reaches
 * or passes the end cuts the object at off (a truncate); off at or past
 * the end, len == 0 or a missing object: nothing happens (0). */
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
/* Set creates a missing object (with no bytes).  rm: 0 whether or not the
 * key was there; -ENOENT when the object is missing (RADOS). */
int st_omap_set(st_store *st, const char *oid, const char *key, const void *val,
                size_t len);
int st_omap_rm(st_store *st, const char *oid, const char *key);
/* Compare-and-set one key: set key=newval only if its current value is
 * exactly expect (expect==NULL: only if the key is absent; an EMPTY value
 * is not absent).  -ECANCELED on mismatch; on a missing object with
 * expect==NULL the object is created, with expect!=NULL it is -ECANCELED.
 * (rados: RADOS compares an absent key as an empty value, so that backend
 * stores every omap value behind a one-byte tag, 0x01, which makes
 * "absent" and "empty" differ; read the omap through this API only.) */
int st_omap_cas(st_store *st, const char *oid, const char *key,
                const void *expect, size_t expect_len, const void *newval,
                size_t new_len);

/* ---- batched write ops on one object (atomic) ---- */
st_wop *st_wop_create(void);
void st_wop_destroy(st_wop *op);
/* Guards, checked before anything is applied. */
void st_wop_assert_exists(st_wop *op);
void st_wop_create_excl(st_wop *op); /* -EEXIST if it exists */
/* -ECANCELED if key != expect (expect==NULL: unless the key is absent).
 * On a missing object every key is absent: an absent-guard passes (and
 * the object is then created by the op, even if nothing else would), a
 * value guard fails with -ECANCELED. */
void st_wop_omap_cmp(st_wop *op, const char *key, const void *expect,
                     size_t expect_len);
/* The fencing guard: -ECANCELED (nothing applied) unless key of ANOTHER
 * object, oid (e.g. a volume header holding a writer's lease generation),
 * is exactly expect (a value is required).  A writer puts it in every op
 * on objects whose updates must stop once it has been fenced (jr.h's
 * writer lease, DESIGN.md "Fencing").  Backends fence differently:
 *  - sqlite: checked inside the op's own transaction (atomic with it; a
 *    missing oid fails the guard);
 *  - rados: NOT evaluated (RADOS has no atomic compare across objects);
 *    there the new writer fences the old one with st_fence (blocklist),
 *    after which none of the old client's ops reach an OSD at all. */
void st_wop_fence_guard(st_wop *op, const char *oid, const char *key,
                        const void *expect, size_t expect_len);
/* Mutations, applied in order.  Buffers are copied into the op.  Any
 * item may fail alone (a missing object for omap_rm/remove: -ENOENT),
 * which cancels the whole op.  A builder given a bad argument (key too
 * long, NULL buffer, extent beyond ST_MAX_OBJECT, out of memory) records
 * the error: st_wop_operate then returns it and applies nothing. */
void st_wop_write(st_wop *op, uint64_t off, const void *buf, size_t len);
void st_wop_write_full(st_wop *op, const void *buf, size_t len);
void st_wop_append(st_wop *op, const void *buf, size_t len);
void st_wop_zero(st_wop *op, uint64_t off, uint64_t len);
void st_wop_truncate(st_wop *op, uint64_t size);
void st_wop_omap_set(st_wop *op, const char *key, const void *val, size_t len);
void st_wop_omap_rm(st_wop *op, const char *key);
void st_wop_remove(st_wop *op);
/* Apply the op to oid (the op may be reused afterwards for the same set of
 * mutations; destroy it when done). */
int st_wop_operate(st_store *st, const char *oid, st_wop *op);

/* ---- asynchronous operations ----
 * These return at once and call cb(result, arg) later on a backend thread
 * (rados: a librados thread; sqlite: the store's aio thread, which commits
 * every op queued so far in one transaction).  Order: aio ops on one
 * object issued by one thread are applied in that order; an operation
 * issued after an aio op is ordered after it only once its callback ran
 * (or st_aio_wait returned).  The op is consumed (destroyed) by the call.
 * Exception: the rados backend runs an op holding an absent-guard
 * (st_wop_omap_cmp with expect==NULL) synchronously, since it may need a
 * second round trip; its callback has then run on the caller's thread
 * before st_aio_operate returns, so never hold a lock the callback takes
 * while calling it.
 * Returns 0 when the op was submitted (cb then runs exactly once), or a
 * negative errno when it was not (bad arguments, an op holding a builder
 * error): cb is NOT called then.
 * st_aio_wait() waits until every aio issued on st so far has completed
 * (their callbacks have returned). */
typedef void (*st_aio_cb)(int result, void *arg);
int st_aio_operate(st_store *st, const char *oid, st_wop *op, st_aio_cb cb,
                   void *arg);
void st_aio_wait(st_store *st);

/* ---- fencing a client (writer leases, jr.h) ----
 * st_fence_id: the identity under which this handle's operations reach
 * the store, for a writer to publish with its lease: rados: the client's
 * address (rados_getaddrs, e.g. "127.0.0.1:0/3257952049", unique per
 * st_open); sqlite: "-" (no fencing by identity: writers there guard
 * their ops with st_wop_fence_guard).  The text has no spaces.  0, or
 * -ERANGE when n is too small.
 * st_fence: make sure that no operation of the client `id` (another
 * handle's st_fence_id) is applied to an object after an operation this
 * handle issues on it once st_fence returned.  rados: blocklists the
 * address for expire_s seconds (0: the cluster's default,
 * mon_osd_blocklist_default_expire, 1 hour), then waits for the latest
 * OSD map: this handle's later ops carry its epoch, an OSD serves them
 * only once it has that map, and from then on it refuses the fenced
 * client (an op of the fenced client may still land at an OSD that had
 * not seen the map yet: before ours, which then overwrite it).  The
 * fenced handle's ops fail with -ESHUTDOWN once it learns (for good: that
 * process must st_open a new handle).  Needs the mon capability to
 * blocklist (`profile rbd` has it).  -EINVAL when id is this handle's own
 * identity or "-"; sqlite: -EOPNOTSUPP. */
int st_fence_id(st_store *st, char *buf, size_t n);
int st_fence(st_store *st, const char *id, uint32_t expire_s);

/* ---- counters (cost accounting: benches and tests) ----
 * Every call that reaches the backend counts once, on the handle it was
 * made on: `reads` (read, stat, list, omap_get, omap_iter: one round trip
 * each on rados, except that list and omap_iter page through big results
 * in several; no commit on sqlite) and `writes` (every write op,
 * single-item call or st_wop, sync or aio: one OSD round trip on rados,
 * one durable commit on sqlite, where commits of concurrent threads may
 * share one fsync).  A call refused before it reaches the backend
 * (invalid argument) is not counted.  Thread-safe (atomic); cheap enough
 * to stay on.  Counters only grow; take differences. */
struct st_counts {
    uint64_t reads;
    uint64_t writes;
};
void st_counts_get(const st_store *st, struct st_counts *out);

/* Human text for a store error code (negative errno). */
const char *st_strerror(int err);

#endif /* TANDEM_STORE_H */
