/*
 * store_int.h: what the object store's front end (store.c) and its two
 * backends (store_sqlite.c, store_rados.c) share, and nothing else may use.
 *
 *  - struct st_store: the first member of each backend's own handle, so
 *    the backend gets back its struct with ST_CONTAINER().
 *  - struct st_wop: the list of operations of a batched write, built by
 *    the st_wop_* calls (or on the stack by the single-operation calls of
 *    store.c, which borrow the caller's buffer instead of copying it).
 *  - struct st_ops: the table of operations a backend fills.  store.c has
 *    validated every argument (lengths, sizes, NULLs) before it calls one,
 *    so backends only deal with the state of the store.
 */
#ifndef TANDEM_STORE_INT_H
#define TANDEM_STORE_INT_H

#include <stddef.h>

#include "store.h"

#define ST_CONTAINER(ptr, type, member)                                        \
    ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

struct st_store {
    const struct st_ops *ops; /* the backend */
    uint64_t n_reads, n_writes; /* st_counts_get; __atomic, set by store.c */
};

enum st_wop_kind {
    ST_WOP_ASSERT_EXISTS, /* guard: -ENOENT if the object is missing */
    ST_WOP_CREATE_EXCL,   /* guard: -EEXIST if it exists; else create it */
    ST_WOP_OMAP_CMP,      /* guard: key == data (absent: key absent) */
    ST_WOP_FENCE_GUARD,   /* guard: key of object goid == data (sqlite
                             only; store.h st_wop_fence_guard) */
    ST_WOP_WRITE,         /* data at off */
    ST_WOP_WRITE_FULL,    /* replace the content with data */
    ST_WOP_APPEND,        /* data at the current end */
    ST_WOP_ZERO,          /* zero [off, off+len) */
    ST_WOP_TRUNCATE,      /* set the size to off */
    ST_WOP_OMAP_SET,      /* key = data */
    ST_WOP_OMAP_RM,       /* remove key */
    ST_WOP_REMOVE,        /* remove the object */
};

struct st_wop_item {
    enum st_wop_kind kind;
    uint64_t off;     /* WRITE, ZERO: offset; TRUNCATE: the new size */
    uint64_t len;     /* ZERO: length */
    const char *key;  /* OMAP_*, FENCE_GUARD: NUL-terminated key */
    const char *goid; /* FENCE_GUARD: the object holding key */
    const void *data; /* WRITE*, APPEND, OMAP_SET, *_CMP, FENCE_GUARD */
    size_t dlen;      /* length of data */
    int absent;       /* OMAP_CMP: expect the key to be absent */
};

struct st_wop {
    struct st_wop_item *items; /* in the order they were added */
    size_t n, cap;
    int err;   /* first error of an st_wop_* call (they return void):
                  st_wop_operate returns it and applies nothing */
    int owned; /* items' key/data are malloc'd copies (st_wop_create) */
};

/* Every backend operation gets validated arguments: oid non-empty and at
 * most ST_MAX_OID bytes, keys likewise, buffers non-NULL when len > 0,
 * offsets+lengths within ST_MAX_OBJECT.  Return 0 / byte counts / -errno
 * as the public function of the same name. */
struct st_ops {
    const char *name;
    int (*open)(const struct st_config *cfg, st_store **out);
    void (*close)(st_store *st);
    int (*ping)(st_store *st);
    /* Apply op (n >= 1 items) to oid atomically. */
    int (*operate)(st_store *st, const char *oid, const struct st_wop *op);
    /* As operate, then cb(result, arg); takes ownership of op (destroy it
     * with st_wop_destroy).  Returns <0 only when cb will not be called. */
    int (*aio_operate)(st_store *st, const char *oid, st_wop *op, st_aio_cb cb,
                       void *arg);
    void (*aio_wait)(st_store *st);
    ssize_t (*read)(st_store *st, const char *oid, uint64_t off, void *buf,
                    size_t len);
    int (*stat)(st_store *st, const char *oid, uint64_t *size,
                int64_t *mtime_s);
    int (*list)(st_store *st, const char *prefix, st_list_cb cb, void *arg);
    int (*omap_get)(st_store *st, const char *oid, const char *key, char **val,
                    size_t *len);
    int (*omap_iter)(st_store *st, const char *oid, const char *prefix,
                     const char *after, unsigned max, st_omap_cb cb, void *arg);
    /* Fencing (store.h).  NULL: the backend has no identity ("-") and
     * st_fence is -EOPNOTSUPP. */
    int (*fence_id)(st_store *st, char *buf, size_t n);
    int (*fence)(st_store *st, const char *id, uint32_t expire_s);
};

extern const struct st_ops st__sqlite_ops;
extern const struct st_ops st__rados_ops;

/* Smallest byte string greater than every string starting with prefix
 * (for range scans): written to out (cap >= strlen(prefix)+1); returns its
 * length, or -1 when there is none (prefix empty or all 0xff bytes). */
int st__prefix_end(const char *prefix, char *out, size_t cap);

#endif /* TANDEM_STORE_INT_H */
