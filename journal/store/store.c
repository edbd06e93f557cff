/*
 * store.c: the object store's front end.  It picks the backend named in
 * the configuration, checks every argument once (so both backends reject
 * the same inputs with the same errors), builds batched write ops, and
 * turns the single-object calls (write, append, truncate, ...) into
 * one-item ops on the stack that borrow the caller's buffer.
 */
#include "store.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store_int.h"

/* ------------------------------------------------------------ checks -- */

static int check_name(const char *s, size_t max)
{
    if (!s) return -EINVAL;
    size_t n = strnlen(s, max + 1);
    if (n == 0) return -EINVAL;
    if (n > max) return -ENAMETOOLONG;
    return 0;
}

static int check_oid(const char *oid)
{
    return check_name(oid, ST_MAX_OID);
}
static int check_key(const char *key)
{
    return check_name(key, ST_MAX_KEY);
}

/* A byte range [off, off+len) must lie within ST_MAX_OBJECT. */
static int check_extent(uint64_t off, uint64_t len)
{
    if (off > ST_MAX_OBJECT || len > ST_MAX_OBJECT - off) return -EFBIG;
    return 0;
}

static int check_buf(const void *buf, size_t len)
{
    return (len > 0 && !buf) ? -EINVAL : 0;
}

int st__prefix_end(const char *prefix, char *out, size_t cap)
{
    size_t n = strlen(prefix);
    if (n + 1 > cap) return -1;
    memcpy(out, prefix, n);
    /* Drop trailing 0xff bytes (nothing follows them), then increment the
     * last byte: "ab" -> "ac", "a\xff" -> "b". */
    while (n > 0 && (unsigned char)out[n - 1] == 0xff)
        n--;
    if (n == 0) return -1;
    out[n - 1] = (char)((unsigned char)out[n - 1] + 1);
    out[n] = '\0';
    return (int)n;
}

/* ------------------------------------------------------------- store -- */

int st_open(const struct st_config *cfg, st_store **out)
{
    if (!cfg || !out || !cfg->backend) return -EINVAL;
    *out = NULL;
    int r = -EINVAL;
    if (!strcmp(cfg->backend, "sqlite")) {
        if (!cfg->db_path || !*cfg->db_path) return -EINVAL;
        r = st__sqlite_ops.open(cfg, out);
    } else if (!strcmp(cfg->backend, "rados")) {
        if (!cfg->pool || !*cfg->pool) return -EINVAL;
        r = st__rados_ops.open(cfg, out);
    }
    if (r == 0) (*out)->n_reads = (*out)->n_writes = 0;
    return r;
}

#define COUNT(st, f) __atomic_fetch_add(&(st)->f, 1, __ATOMIC_RELAXED)

void st_counts_get(const st_store *st, struct st_counts *out)
{
    if (!out) return;
    out->reads = st ? __atomic_load_n(&st->n_reads, __ATOMIC_RELAXED) : 0;
    out->writes = st ? __atomic_load_n(&st->n_writes, __ATOMIC_RELAXED) : 0;
}

void st_close(st_store *st)
{
    if (st) st->ops->close(st);
}

const char *st_backend(const st_store *st)
{
    return st->ops->name;
}

int st_ping(st_store *st)
{
    if (!st) return -EINVAL;
    return st->ops->ping(st);
}

/* Apply one item to oid. */
static int operate1(st_store *st, const char *oid, struct st_wop_item *it)
{
    struct st_wop op = {.items = it, .n = 1, .cap = 1};
    int r;
    if (!st) return -EINVAL;
    if ((r = check_oid(oid))) return r;
    COUNT(st, n_writes);
    return st->ops->operate(st, oid, &op);
}

int st_write(st_store *st, const char *oid, uint64_t off, const void *buf,
             size_t len)
{
    int r;
    if ((r = check_buf(buf, len)) || (r = check_extent(off, len))) return r;
    struct st_wop_item it = {
        .kind = ST_WOP_WRITE, .off = off, .data = buf, .dlen = len};
    return operate1(st, oid, &it);
}

int st_write_full(st_store *st, const char *oid, const void *buf, size_t len)
{
    int r;
    if ((r = check_buf(buf, len)) || (r = check_extent(0, len))) return r;
    struct st_wop_item it = {
        .kind = ST_WOP_WRITE_FULL, .data = buf, .dlen = len};
    return operate1(st, oid, &it);
}

int st_append(st_store *st, const char *oid, const void *buf, size_t len)
{
    int r;
    if ((r = check_buf(buf, len)) || (r = check_extent(0, len))) return r;
    struct st_wop_item it = {.kind = ST_WOP_APPEND, .data = buf, .dlen = len};
    return operate1(st, oid, &it);
}

ssize_t st_read(st_store *st, const char *oid, uint64_t off, void *buf,
                size_t len)
{
    int r;
    if (!st) return -EINVAL;
    if ((r = check_oid(oid)) || (r = check_buf(buf, len))) return r;
    /* Nothing lies beyond ST_MAX_OBJECT; a shorter request keeps the
     * backends' arithmetic far from overflow. */
    if (len > ST_MAX_OBJECT) len = ST_MAX_OBJECT;
    if (off > ST_MAX_OBJECT) off = ST_MAX_OBJECT;
    COUNT(st, n_reads);
    return st->ops->read(st, oid, off, buf, len);
}

int st_stat(st_store *st, const char *oid, uint64_t *size, int64_t *mtime_s)
{
    int r;
    if (!st) return -EINVAL;
    if ((r = check_oid(oid))) return r;
    uint64_t s;
    int64_t m;
    COUNT(st, n_reads);
    return st->ops->stat(st, oid, size ? size : &s, mtime_s ? mtime_s : &m);
}

int st_truncate(st_store *st, const char *oid, uint64_t size)
{
    int r;
    if ((r = check_extent(size, 0))) return r;
    struct st_wop_item it = {.kind = ST_WOP_TRUNCATE, .off = size};
    return operate1(st, oid, &it);
}

int st_zero(st_store *st, const char *oid, uint64_t off, uint64_t len)
{
    int r;
    if ((r = check_extent(off, len))) return r;
    /* Never send an empty zero: a Ceph 16 OSD aborts on it
     * (ceph_assert(op.extent.length) in PrimaryLogPG::do_osd_ops). */
    if (len == 0) return st ? check_oid(oid) : -EINVAL;
    struct st_wop_item it = {.kind = ST_WOP_ZERO, .off = off, .len = len};
    return operate1(st, oid, &it);
}

int st_remove(st_store *st, const char *oid)
{
    struct st_wop_item it = {.kind = ST_WOP_REMOVE};
    return operate1(st, oid, &it);
}

int st_list(st_store *st, const char *prefix, st_list_cb cb, void *arg)
{
    if (!st || !cb) return -EINVAL;
    if (!prefix) prefix = "";
    if (strnlen(prefix, ST_MAX_OID + 1) > ST_MAX_OID) return -ENAMETOOLONG;
    COUNT(st, n_reads);
    return st->ops->list(st, prefix, cb, arg);
}

/* -------------------------------------------------------------- omap -- */

int st_omap_get(st_store *st, const char *oid, const char *key, char **val,
                size_t *len)
{
    int r;
    if (!st || !val) return -EINVAL;
    *val = NULL;
    if ((r = check_oid(oid)) || (r = check_key(key))) return r;
    size_t l;
    COUNT(st, n_reads);
    return st->ops->omap_get(st, oid, key, val, len ? len : &l);
}

int st_omap_iter(st_store *st, const char *oid, const char *prefix,
                 const char *after, unsigned max, st_omap_cb cb, void *arg)
{
    int r;
    if (!st || !cb) return -EINVAL;
    if ((r = check_oid(oid))) return r;
    if (!prefix) prefix = "";
    if (strnlen(prefix, ST_MAX_KEY + 1) > ST_MAX_KEY) return -ENAMETOOLONG;
    if (after && !*after) after = NULL;
    if (after && strnlen(after, ST_MAX_KEY + 1) > ST_MAX_KEY)
        return -ENAMETOOLONG;
    COUNT(st, n_reads);
    return st->ops->omap_iter(st, oid, prefix, after, max, cb, arg);
}

int st_omap_set(st_store *st, const char *oid, const char *key, const void *val,
                size_t len)
{
    int r;
    if ((r = check_key(key)) || (r = check_buf(val, len))) return r;
    if (len > ST_MAX_VALUE) return -EFBIG;
    struct st_wop_item it = {
        .kind = ST_WOP_OMAP_SET, .key = key, .data = val, .dlen = len};
    return operate1(st, oid, &it);
}

int st_omap_rm(st_store *st, const char *oid, const char *key)
{
    int r;
    if ((r = check_key(key))) return r;
    struct st_wop_item it = {.kind = ST_WOP_OMAP_RM, .key = key};
    return operate1(st, oid, &it);
}

int st_omap_cas(st_store *st, const char *oid, const char *key,
                const void *expect, size_t expect_len, const void *newval,
                size_t new_len)
{
    int r;
    if ((r = check_key(key)) || (r = check_buf(newval, new_len))) return r;
    if (expect && expect_len > ST_MAX_VALUE) return -EFBIG;
    if (new_len > ST_MAX_VALUE) return -EFBIG;
    struct st_wop_item it[2] = {
        {.kind = ST_WOP_OMAP_CMP,
         .key = key,
         .data = expect,
         .dlen = expect ? expect_len : 0,
         .absent = !expect},
        {.kind = ST_WOP_OMAP_SET, .key = key, .data = newval, .dlen = new_len},
    };
    struct st_wop op = {.items = it, .n = 2, .cap = 2};
    if (!st) return -EINVAL;
    if ((r = check_oid(oid))) return r;
    COUNT(st, n_writes);
    return st->ops->operate(st, oid, &op);
}

/* ---------------------------------------------------------- write ops -- */

st_wop *st_wop_create(void)
{
    st_wop *op = calloc(1, sizeof *op);
    if (op) op->owned = 1;
    return op;
}

void st_wop_destroy(st_wop *op)
{
    if (!op) return;
    if (op->owned) {
        for (size_t i = 0; i < op->n; i++) {
            free((void *)op->items[i].key);
            free((void *)op->items[i].goid);
            free((void *)op->items[i].data);
        }
    }
    free(op->items);
    free(op);
}

/* Append an item, copying key and data; errors are kept in op->err for
 * st_wop_operate to return (the st_wop_* builders return void). */
static void wop_add(st_wop *op, enum st_wop_kind kind, uint64_t off,
                    uint64_t len, const char *key, const void *data,
                    size_t dlen, int absent)
{
    struct st_wop_item it = {
        .kind = kind, .off = off, .len = len, .dlen = dlen, .absent = absent};
    if (!op || op->err) return;
    if (key) {
        int r = check_key(key);
        if (r) {
            op->err = r;
            return;
        }
    }
    if (data == NULL && dlen > 0) {
        op->err = -EINVAL;
        return;
    }
    if (op->n == op->cap) {
        size_t cap = op->cap ? op->cap * 2 : 4;
        struct st_wop_item *p = realloc(op->items, cap * sizeof *p);
        if (!p) goto enomem;
        op->items = p;
        op->cap = cap;
    }
    if (key && !(it.key = strdup(key))) goto enomem;
    if (dlen > 0) {
        void *d = malloc(dlen);
        if (!d) {
            free((void *)it.key);
            goto enomem;
        }
        memcpy(d, data, dlen);
        it.data = d;
    }
    op->items[op->n++] = it;
    return;
enomem:
    op->err = -ENOMEM;
}

static void wop_fail(st_wop *op, int err)
{
    if (op && !op->err) op->err = err;
}

void st_wop_assert_exists(st_wop *op)
{
    wop_add(op, ST_WOP_ASSERT_EXISTS, 0, 0, NULL, NULL, 0, 0);
}

void st_wop_create_excl(st_wop *op)
{
    wop_add(op, ST_WOP_CREATE_EXCL, 0, 0, NULL, NULL, 0, 0);
}

void st_wop_omap_cmp(st_wop *op, const char *key, const void *expect,
                     size_t expect_len)
{
    if (!key) {
        wop_fail(op, -EINVAL);
        return;
    }
    if (expect && expect_len > ST_MAX_VALUE) {
        wop_fail(op, -EFBIG);
        return;
    }
    wop_add(op, ST_WOP_OMAP_CMP, 0, 0, key, expect, expect ? expect_len : 0,
            !expect);
}

void st_wop_fence_guard(st_wop *op, const char *oid, const char *key,
                        const void *expect, size_t expect_len)
{
    int r;
    if (!op || op->err) return;
    if (!expect || !key) {
        wop_fail(op, -EINVAL);
        return;
    }
    if ((r = check_oid(oid))) {
        wop_fail(op, r);
        return;
    }
    if (expect_len > ST_MAX_VALUE) {
        wop_fail(op, -EFBIG);
        return;
    }
    char *g = strdup(oid);
    if (!g) {
        wop_fail(op, -ENOMEM);
        return;
    }
    size_t n = op->n;
    wop_add(op, ST_WOP_FENCE_GUARD, 0, 0, key, expect, expect_len, 0);
    if (op->n == n) { /* not added: wop_add recorded why */
        free(g);
        return;
    }
    op->items[n].goid = g;
}

void st_wop_write(st_wop *op, uint64_t off, const void *buf, size_t len)
{
    int r = check_extent(off, len);
    if (r) {
        wop_fail(op, r);
        return;
    }
    wop_add(op, ST_WOP_WRITE, off, 0, NULL, buf, len, 0);
}

void st_wop_write_full(st_wop *op, const void *buf, size_t len)
{
    int r = check_extent(0, len);
    if (r) {
        wop_fail(op, r);
        return;
    }
    wop_add(op, ST_WOP_WRITE_FULL, 0, 0, NULL, buf, len, 0);
}

void st_wop_append(st_wop *op, const void *buf, size_t len)
{
    int r = check_extent(0, len);
    if (r) {
        wop_fail(op, r);
        return;
    }
    wop_add(op, ST_WOP_APPEND, 0, 0, NULL, buf, len, 0);
}

void st_wop_zero(st_wop *op, uint64_t off, uint64_t len)
{
    int r = check_extent(off, len);
    if (r) {
        wop_fail(op, r);
        return;
    }
    if (len == 0) return; /* see st_zero */
    wop_add(op, ST_WOP_ZERO, off, len, NULL, NULL, 0, 0);
}

void st_wop_truncate(st_wop *op, uint64_t size)
{
    int r = check_extent(size, 0);
    if (r) {
        wop_fail(op, r);
        return;
    }
    wop_add(op, ST_WOP_TRUNCATE, size, 0, NULL, NULL, 0, 0);
}

void st_wop_omap_set(st_wop *op, const char *key, const void *val, size_t len)
{
    if (!key) {
        wop_fail(op, -EINVAL);
        return;
    }
    if (len > ST_MAX_VALUE) {
        wop_fail(op, -EFBIG);
        return;
    }
    wop_add(op, ST_WOP_OMAP_SET, 0, 0, key, val, len, 0);
}

void st_wop_omap_rm(st_wop *op, const char *key)
{
    if (!key) {
        wop_fail(op, -EINVAL);
        return;
    }
    wop_add(op, ST_WOP_OMAP_RM, 0, 0, key, NULL, 0, 0);
}

void st_wop_remove(st_wop *op)
{
    wop_add(op, ST_WOP_REMOVE, 0, 0, NULL, NULL, 0, 0);
}

int st_wop_operate(st_store *st, const char *oid, st_wop *op)
{
    int r;
    if (!st || !op) return -EINVAL;
    if ((r = check_oid(oid))) return r;
    if (op->err) return op->err;
    if (op->n == 0) return 0;
    COUNT(st, n_writes);
    return st->ops->operate(st, oid, op);
}

/* --------------------------------------------------------------- aio -- */

int st_aio_operate(st_store *st, const char *oid, st_wop *op, st_aio_cb cb,
                   void *arg)
{
    int r;
    if (!st || !op || !cb) {
        r = -EINVAL;
        goto fail;
    }
    if ((r = check_oid(oid))) goto fail;
    if ((r = op->err)) goto fail;
    if (op->n == 0) {
        /* Nothing to send: complete at once, as the contract promises. */
        st_wop_destroy(op);
        cb(0, arg);
        return 0;
    }
    COUNT(st, n_writes);
    return st->ops->aio_operate(st, oid, op, cb, arg);
fail:
    st_wop_destroy(op);
    return r;
}

void st_aio_wait(st_store *st)
{
    if (st) st->ops->aio_wait(st);
}

/* ----------------------------------------------------------- fencing -- */

int st_fence_id(st_store *st, char *buf, size_t n)
{
    if (!st || !buf || n == 0) return -EINVAL;
    if (!st->ops->fence_id) {
        if (n < 2) return -ERANGE;
        memcpy(buf, "-", 2);
        return 0;
    }
    return st->ops->fence_id(st, buf, n);
}

int st_fence(st_store *st, const char *id, uint32_t expire_s)
{
    if (!st || !id || !*id || !strcmp(id, "-") || strchr(id, ' '))
        return -EINVAL;
    if (!st->ops->fence) return -EOPNOTSUPP;
    return st->ops->fence(st, id, expire_s);
}

/* ------------------------------------------------------------ errors -- */

const char *st_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
    case -ENOENT:
        return "no such object or key";
    case -EEXIST:
        return "object exists";
    case -ECANCELED:
        return "compare-and-set mismatch";
    case -ENAMETOOLONG:
        return "object name or key too long";
    case -EFBIG:
        return "object or value too large";
    case -EINVAL:
        return "invalid argument";
    case -ENOMEM:
        return "out of memory";
    case -EIO:
        return "store I/O error";
    case -ETIMEDOUT:
        return "store timed out";
    case -ENOTCONN:
        return "store not connected";
    case -EBUSY:
        return "store busy";
    case -ENOSPC:
        return "store full";
    case -ESHUTDOWN:
        return "store client fenced (blocklisted): reopen the store";
    default:
        return err < 0 ? strerror(-err) : "unknown store result";
    }
}
