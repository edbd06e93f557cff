/*
 * store_rados.c: the RADOS backend (librados), one pool per region and
 * optionally a RADOS namespace inside it.
 *
 * Mapping: an st_wop becomes one rados_write_op (the OSD applies it
 * atomically, in order, stopping at the first failing op); reads are
 * rados_read/rados_stat and read ops for the omap; listing walks the pool
 * with rados_nobjects_list (it lists our namespace only) and filters the
 * prefix on the client.
 *
 * Omap values: RADOS's omap_cmp compares an ABSENT key as an empty value
 * (checked on Ceph 16.2.15: cmp EQ "" passes on a missing key), so "absent"
 * and "empty" cannot be told apart by the OSD.  Every value is therefore
 * stored as the tag byte ST_RA_TAG followed by the user's bytes: an absent
 * key compares as "" and any present value is at least one byte long.  A
 * value without the tag was not written through this API and reads as -EIO.
 *
 * Guards on a missing object: omap_cmp fails with -ENOENT there.  The store
 * contract says every key of a missing object is absent, so when an op
 * with an absent-guard fails with -ENOENT and replaying it on a missing
 * object shows that guard decides (missing_walk), we run the op again
 * with that guard replaced by an exclusive create (which holds exactly
 * when the object is still missing); -EEXIST from that create means
 * someone created it meanwhile, and we start over (bounded).  A value
 * guard on a missing object is -ECANCELED.
 *
 * Asynchronous ops: rados_aio_write_op_operate with a completion whose
 * callback records the result, calls the user's callback, and counts the
 * op out; st_aio_wait sleeps on that count.  An op with an absent-guard
 * may need the retry above, so it runs synchronously instead (still
 * calling the callback exactly once).
 *
 * Timeouts: rados_osd_op_timeout / rados_mon_op_timeout / client mount
 * timeout are set from op_timeout_s, so a dead cluster gives -ETIMEDOUT
 * instead of a hang.
 */
#include <errno.h>
#include <pthread.h>
#include <rados/librados.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_int.h"
#include "tlog.h"

#define ST_RA_TAG 0x01        /* first byte of every stored omap value */
#define ST_RA_OMAP_PAGE 128   /* omap entries per read op */
#define ST_RA_GUARD_RETRIES 4 /* create races before giving up */

struct ra_store {
    st_store base;
    rados_t cluster;
    rados_ioctx_t io;
    char *pool;
    pthread_mutex_t mu;  /* guards inflight */
    pthread_cond_t idle; /* signalled when inflight drops to 0 */
    unsigned inflight;   /* aio ops submitted, callback not yet returned */
};

/* One operation in flight: what its completion callback needs. */
struct ra_aio {
    struct ra_store *s;
    rados_write_op_t w;
    st_wop *op; /* owned: destroyed after the callback */
    st_aio_cb cb;
    void *arg;
    int *prvals; /* one per item, written by the OSD reply */
};

static struct ra_store *RA(st_store *st)
{
    return ST_CONTAINER(st, struct ra_store, base);
}

/* Log what is not an ordinary outcome of the contract. */
static int ra_err(const char *what, const char *oid, int r)
{
    if (r < 0 && r != -ENOENT && r != -EEXIST && r != -ECANCELED) {
        char q[ST_MAX_OID + 8];
        tlog_warn("store.rados.error", "op=%s oid=%s err=%d msg=\"%s\"", what,
                  tlog_q(q, sizeof q, oid ? oid : ""), r, strerror(-r));
    }
    return r;
}

/* ------------------------------------------------------ write ops -- */

/* Tagged copy of an omap value (ST_RA_TAG + bytes). */
static char *tag_value(const void *data, size_t len)
{
    char *t = malloc(len + 1);
    if (!t) return NULL;
    t[0] = ST_RA_TAG;
    if (len) memcpy(t + 1, data, len);
    return t;
}

/* Translate op into w.  skip: index of an absent-guard to replace by an
 * exclusive create (-1: none).  prvals[i] receives item i's result where
 * librados reports one (omap_cmp).  librados copies every buffer when an
 * action is added, so nothing needs to outlive this call but prvals. */
static int ra_build(rados_write_op_t w, const struct st_wop *op,
                    ssize_t create_at, int *prvals)
{
    for (size_t i = 0; i < op->n; i++) {
        const struct st_wop_item *it = &op->items[i];
        char *t;
        size_t tlen;
        prvals[i] = 1; /* "not run": the OSD stopped before this item */
        switch (it->kind) {
        case ST_WOP_ASSERT_EXISTS:
            rados_write_op_assert_exists(w);
            break;
        case ST_WOP_CREATE_EXCL:
            rados_write_op_create(w, LIBRADOS_CREATE_EXCLUSIVE, NULL);
            break;
        case ST_WOP_OMAP_CMP:
            if ((ssize_t)i == create_at) {
                rados_write_op_create(w, LIBRADOS_CREATE_EXCLUSIVE, NULL);
                break;
            }
            if (it->absent) {
                rados_write_op_omap_cmp(w, it->key, LIBRADOS_CMPXATTR_OP_EQ, "",
                                        0, &prvals[i]);
                break;
            }
            if (!(t = tag_value(it->data, it->dlen))) return -ENOMEM;
            rados_write_op_omap_cmp(w, it->key, LIBRADOS_CMPXATTR_OP_EQ, t,
                                    it->dlen + 1, &prvals[i]);
            free(t);
            break;
        case ST_WOP_FENCE_GUARD:
            /* Not evaluated here (store.h): a fenced client is stopped
             * by st_fence's blocklist, before its ops reach an OSD. */
            break;
        case ST_WOP_WRITE:
            rados_write_op_write(w, it->data, it->dlen, it->off);
            break;
        case ST_WOP_WRITE_FULL:
            rados_write_op_write_full(w, it->data, it->dlen);
            break;
        case ST_WOP_APPEND:
            rados_write_op_append(w, it->data, it->dlen);
            break;
        case ST_WOP_ZERO:
            /* store.c drops empty zeros: the OSD asserts on them. */
            if (it->len) rados_write_op_zero(w, it->off, it->len);
            break;
        case ST_WOP_TRUNCATE:
            rados_write_op_truncate(w, it->off);
            break;
        case ST_WOP_OMAP_SET: {
            if (!(t = tag_value(it->data, it->dlen))) return -ENOMEM;
            const char *k = it->key, *v = t;
            tlen = it->dlen + 1;
            rados_write_op_omap_set(w, &k, &v, &tlen, 1);
            free(t);
            break;
        }
        case ST_WOP_OMAP_RM: {
            const char *k = it->key;
            rados_write_op_omap_rm_keys(w, &k, 1);
            break;
        }
        case ST_WOP_REMOVE:
            rados_write_op_remove(w);
            break;
        }
    }
    return 0;
}

static int has_absent_guard(const struct st_wop *op)
{
    for (size_t i = 0; i < op->n; i++)
        if (op->items[i].kind == ST_WOP_OMAP_CMP && op->items[i].absent)
            return 1;
    return 0;
}

/* The op failed with -ENOENT: some item met a missing object.  Replay the
 * op on a missing object, in order, as the contract defines it, to find
 * the item that decides: returns -ENOENT or -ECANCELED (the op's result),
 * or the index (>= 0) of an absent-guard, which the op must replace by an
 * exclusive create.  (The OSD reports per-item results through prval, but
 * not reliably: ops queued behind another op on the same missing object
 * come back -ENOENT with prval 0, seen on Ceph 16.2.15.) */
static ssize_t missing_walk(const struct st_wop *op)
{
    int exists = 0;
    for (size_t i = 0; i < op->n; i++) {
        const struct st_wop_item *it = &op->items[i];
        switch (it->kind) {
        case ST_WOP_ASSERT_EXISTS:
        case ST_WOP_OMAP_RM:
            if (!exists) return -ENOENT;
            break;
        case ST_WOP_REMOVE:
            if (!exists) return -ENOENT;
            exists = 0;
            break;
        case ST_WOP_OMAP_CMP:
            if (!exists) return it->absent ? (ssize_t)i : -ECANCELED;
            break;
        case ST_WOP_CREATE_EXCL:
        case ST_WOP_WRITE:
        case ST_WOP_WRITE_FULL:
        case ST_WOP_APPEND:
        case ST_WOP_OMAP_SET:
            exists = 1;
            break;
        case ST_WOP_ZERO:
        case ST_WOP_TRUNCATE:
        case ST_WOP_FENCE_GUARD:
            break; /* no-ops on a missing object (the guard: not here) */
        }
    }
    return -ENOENT;
}

static int ra_operate1(struct ra_store *s, const char *oid,
                       const struct st_wop *op, ssize_t create_at, int *prvals)
{
    rados_write_op_t w = rados_create_write_op();
    if (!w) return -ENOMEM;
    int r = ra_build(w, op, create_at, prvals);
    if (r == 0) r = rados_write_op_operate(w, s->io, oid, NULL, 0);
    rados_release_write_op(w);
    return r;
}

static int ra_operate(st_store *st, const char *oid, const struct st_wop *op)
{
    struct ra_store *s = RA(st);
    int *prvals = malloc(op->n * sizeof *prvals), r = -ENOMEM;
    if (!prvals) return -ENOMEM;
    for (int attempt = 0; attempt < ST_RA_GUARD_RETRIES; attempt++) {
        r = ra_operate1(s, oid, op, -1, prvals);
        if (r != -ENOENT) break;
        ssize_t at = missing_walk(op);
        if (at < 0) {
            r = (int)at;
            break;
        }
        r = ra_operate1(s, oid, op, at, prvals);
        if (r != -EEXIST) break;
        /* -EEXIST: created under us (go again: the guard now sees the
         * object), or a later create_excl of the op itself (then every
         * attempt ends here and -EEXIST is the right answer). */
    }
    free(prvals);
    return ra_err("operate", oid, r);
}

static void ra_aio_done(rados_completion_t c, void *arg)
{
    struct ra_aio *a = arg;
    struct ra_store *s = a->s;
    int r = rados_aio_get_return_value(c);
    rados_aio_release(c);
    rados_release_write_op(a->w);
    /* The op has no absent-guard (those run synchronously), so the walk
     * tells -ENOENT from a value guard on a missing object. */
    if (r == -ENOENT) r = (int)missing_walk(a->op);
    a->cb(r, a->arg);
    st_wop_destroy(a->op);
    free(a->prvals);
    free(a);
    pthread_mutex_lock(&s->mu);
    if (--s->inflight == 0) pthread_cond_broadcast(&s->idle);
    pthread_mutex_unlock(&s->mu);
}

static int ra_aio_operate(st_store *st, const char *oid, st_wop *op,
                          st_aio_cb cb, void *arg)
{
    struct ra_store *s = RA(st);
    rados_completion_t c = NULL;
    int r;
    if (has_absent_guard(op)) {
        /* May need the create retry (file comment): run it here. */
        r = ra_operate(st, oid, op);
        st_wop_destroy(op);
        cb(r, arg);
        return 0;
    }
    struct ra_aio *a = calloc(1, sizeof *a);
    if (!a || !(a->prvals = malloc(op->n * sizeof *a->prvals))) {
        r = -ENOMEM;
        goto fail;
    }
    a->s = s;
    a->op = op;
    a->cb = cb;
    a->arg = arg;
    if (!(a->w = rados_create_write_op())) {
        r = -ENOMEM;
        goto fail;
    }
    if ((r = ra_build(a->w, op, -1, a->prvals))) goto fail;
    if ((r = rados_aio_create_completion2(a, ra_aio_done, &c))) goto fail;
    pthread_mutex_lock(&s->mu);
    s->inflight++;
    pthread_mutex_unlock(&s->mu);
    r = rados_aio_write_op_operate(a->w, s->io, c, oid, NULL, 0);
    if (r < 0) {
        pthread_mutex_lock(&s->mu);
        if (--s->inflight == 0) pthread_cond_broadcast(&s->idle);
        pthread_mutex_unlock(&s->mu);
        goto fail;
    }
    return 0;
fail:
    if (c) rados_aio_release(c);
    if (a) {
        if (a->w) rados_release_write_op(a->w);
        free(a->prvals);
        free(a);
    }
    st_wop_destroy(op);
    return ra_err("aio_operate", oid, r);
}

static void ra_aio_wait(st_store *st)
{
    struct ra_store *s = RA(st);
    pthread_mutex_lock(&s->mu);
    while (s->inflight)
        pthread_cond_wait(&s->idle, &s->mu);
    pthread_mutex_unlock(&s->mu);
}

/* ----------------------------------------------------------- reads -- */

static ssize_t ra_read(st_store *st, const char *oid, uint64_t off, void *buf,
                       size_t len)
{
    if (len == 0) {
        /* rados_read of 0 bytes would read the whole object. */
        uint64_t size;
        time_t mtime;
        int r = rados_stat(RA(st)->io, oid, &size, &mtime);
        return r < 0 ? ra_err("stat", oid, r) : 0;
    }
    int r = rados_read(RA(st)->io, oid, buf, len, off);
    return r < 0 ? ra_err("read", oid, r) : r;
}

static int ra_stat(st_store *st, const char *oid, uint64_t *size,
                   int64_t *mtime_s)
{
    time_t mtime = 0;
    int r = rados_stat(RA(st)->io, oid, size, &mtime);
    if (r < 0) return ra_err("stat", oid, r);
    *mtime_s = (int64_t)mtime;
    return 0;
}

static int ra_list(st_store *st, const char *prefix, st_list_cb cb, void *arg)
{
    rados_list_ctx_t ctx = NULL;
    size_t plen = strlen(prefix);
    int r = rados_nobjects_list_open(RA(st)->io, &ctx);
    if (r < 0) return ra_err("list", NULL, r);
    for (;;) {
        const char *entry = NULL;
        size_t elen = 0;
        char name[ST_MAX_OID + 1];
        r = rados_nobjects_list_next2(ctx, &entry, NULL, NULL, &elen, NULL,
                                      NULL);
        if (r == -ENOENT) {
            r = 0;
            break;
        }
        if (r < 0) {
            ra_err("list", NULL, r);
            break;
        }
        /* Names longer than ours or holding a NUL were not made here. */
        if (elen < plen || elen > ST_MAX_OID || memchr(entry, 0, elen) ||
            memcmp(entry, prefix, plen))
            continue;
        memcpy(name, entry, elen);
        name[elen] = '\0';
        if ((r = cb(name, arg))) break;
    }
    rados_nobjects_list_close(ctx);
    return r;
}

/* Strip the tag of a stored value into a malloc'd NUL-terminated copy. */
static int untag(const char *oid, const char *key, const char *v, size_t vlen,
                 char **out, size_t *len)
{
    if (vlen < 1 || v[0] != ST_RA_TAG) {
        char q[ST_MAX_OID + 8];
        tlog_error("store.rados.bad_value", "oid=%s len=%zu key_len=%zu",
                   tlog_q(q, sizeof q, oid), vlen, strlen(key));
        return -EIO;
    }
    char *c = malloc(vlen);
    if (!c) return -ENOMEM;
    memcpy(c, v + 1, vlen - 1);
    c[vlen - 1] = '\0';
    *out = c;
    *len = vlen - 1;
    return 0;
}

static int ra_omap_get(st_store *st, const char *oid, const char *key,
                       char **val, size_t *len)
{
    rados_read_op_t rop = rados_create_read_op();
    rados_omap_iter_t iter = NULL;
    int prval = 0, r;
    if (!rop) return -ENOMEM;
    const char *keys[1] = {key};
    size_t klens[1] = {strlen(key)};
    rados_read_op_omap_get_vals_by_keys2(rop, keys, 1, klens, &iter, &prval);
    r = rados_read_op_operate(rop, RA(st)->io, oid, 0);
    if (r == 0) r = prval;
    if (r == 0) {
        char *k = NULL, *v = NULL;
        size_t kl = 0, vl = 0;
        r = rados_omap_get_next2(iter, &k, &v, &kl, &vl);
        if (r == 0 && !k) r = -ENOENT;
        if (r == 0) r = untag(oid, key, v, vl, val, len);
    }
    if (iter) rados_omap_get_end(iter);
    rados_release_read_op(rop);
    return ra_err("omap_get", oid, r);
}

static int ra_omap_iter(st_store *st, const char *oid, const char *prefix,
                        const char *after, unsigned max, st_omap_cb cb,
                        void *arg)
{
    char start[ST_MAX_KEY + 1];
    unsigned seen = 0;
    unsigned char more = 1;
    int r = 0;
    snprintf(start, sizeof start, "%s", after ? after : "");
    while (more && (max == 0 || seen < max)) {
        rados_read_op_t rop = rados_create_read_op();
        rados_omap_iter_t iter = NULL;
        int prval = 0;
        unsigned page = ST_RA_OMAP_PAGE;
        if (!rop) return -ENOMEM;
        if (max && max - seen < page) page = max - seen;
        more = 0;
        rados_read_op_omap_get_vals2(rop, start, prefix, page, &iter, &more,
                                     &prval);
        r = rados_read_op_operate(rop, RA(st)->io, oid, 0);
        if (r == 0) r = prval;
        unsigned got = 0;
        while (r == 0) {
            char *k = NULL, *v = NULL, *val = NULL;
            size_t kl = 0, vl = 0, len = 0;
            if ((r = rados_omap_get_next2(iter, &k, &v, &kl, &vl)) || !k) break;
            got++;
            if (kl > ST_MAX_KEY || memchr(k, 0, kl)) continue; /* not ours */
            memcpy(start, k, kl);
            start[kl] = '\0';
            if ((r = untag(oid, start, v, vl, &val, &len))) break;
            r = cb(start, val, len, arg);
            free(val);
            seen++;
        }
        if (iter) rados_omap_get_end(iter);
        rados_release_read_op(rop);
        if (r) break;
        if (got == 0) break; /* an empty page ends the walk whatever "more" */
    }
    return r < 0 ? ra_err("omap_iter", oid, r) : r;
}

static int ra_ping(st_store *st)
{
    /* A stat goes to the OSD that owns the name: -ENOENT means it answered. */
    uint64_t size;
    time_t mtime;
    int r = rados_stat(RA(st)->io, "tandem.ping", &size, &mtime);
    return r == -ENOENT ? 0 : ra_err("ping", NULL, r);
}

/* --------------------------------------------------------- fencing -- */

static int ra_fence_id(st_store *st, char *buf, size_t n)
{
    char *addrs = NULL;
    int r = rados_getaddrs(RA(st)->cluster, &addrs);
    if (r < 0) return ra_err("getaddrs", NULL, r);
    size_t len = strlen(addrs);
    if (len + 1 > n) r = -ERANGE;
    else if (len == 0 || strchr(addrs, ' ')) r = -EIO; /* not an address */
    else memcpy(buf, addrs, len + 1);
    free(addrs); /* strdup'ed by librados */
    return r;
}

/* Blocklist the client at id, then wait until this client has the OSD map
 * holding that entry: our later ops carry its epoch, and an OSD processes
 * them only once it has that map too, when it already refuses the fenced
 * client (how librbd breaks an exclusive lock). */
static int ra_fence(st_store *st, const char *id, uint32_t expire_s)
{
    struct ra_store *s = RA(st);
    char own[512], q[600], *a;
    if (ra_fence_id(st, own, sizeof own) == 0 && strcmp(own, id) == 0)
        return -EINVAL; /* that would fence ourselves */
    if (!(a = strdup(id))) return -ENOMEM;
    int r = rados_blocklist_add(s->cluster, a, expire_s);
    free(a);
    if (r == 0) r = rados_wait_for_latest_osdmap(s->cluster);
    if (r < 0) {
        tlog_error("store.rados.fence_failed", "client=%s err=%d msg=\"%s\"",
                   tlog_q(q, sizeof q, id), r, strerror(-r));
        return r;
    }
    tlog_info("store.rados.fenced", "client=%s expire_s=%u",
              tlog_q(q, sizeof q, id), expire_s);
    return 0;
}

/* ------------------------------------------------------ open/close -- */

static void ra_close(st_store *st)
{
    struct ra_store *s = RA(st);
    if (s->io) {
        ra_aio_wait(st);
        rados_aio_flush(s->io);
        rados_ioctx_destroy(s->io);
    }
    if (s->cluster) rados_shutdown(s->cluster);
    pthread_cond_destroy(&s->idle);
    pthread_mutex_destroy(&s->mu);
    free(s->pool);
    free(s);
}

/* rados_connect on a thread of its own.  Ceph draws the client's address
 * nonce from a thread-local random engine: a fork(2) child inherits its
 * parent thread's engine state, so the child's first client and the
 * parent's next one would get the same address, and fencing one
 * (st_fence, a blocklist by address) would fence the other.  A new
 * thread seeds a new engine. */
struct ra_conn {
    rados_t cluster;
    int r;
};

static void *ra_connect_main(void *arg)
{
    struct ra_conn *c = arg;
    c->r = rados_connect(c->cluster);
    return NULL;
}

static int ra_connect(rados_t cluster)
{
    struct ra_conn c = {cluster, 0};
    pthread_t t;
    if (pthread_create(&t, NULL, ra_connect_main, &c) != 0)
        return rados_connect(cluster); /* no thread: connect here */
    pthread_join(t, NULL);
    return c.r;
}

static int ra_open(const struct st_config *cfg, st_store **out)
{
    char name[256], tmo[32], q[512];
    const char *id =
        cfg->client_id && *cfg->client_id ? cfg->client_id : "admin";
    int r = -ENOMEM;
    struct ra_store *s = calloc(1, sizeof *s);
    if (!s) return -ENOMEM;
    s->base.ops = &st__rados_ops;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->idle, NULL);
    if (!(s->pool = strdup(cfg->pool))) goto fail;

    /* "admin" and "client.admin" both name client.admin. */
    snprintf(name, sizeof name, "%s%s",
             strncmp(id, "client.", 7) ? "client." : "", id);
    if ((r = rados_create2(&s->cluster, "ceph", name, 0)) < 0) {
        s->cluster = NULL;
        goto fail;
    }
    /* NULL: librados's default search ($CEPH_CONF, /etc/ceph/ceph.conf). */
    if ((r = rados_conf_read_file(s->cluster, cfg->ceph_conf)) < 0) {
        tlog_error("store.rados.conf", "path=%s err=%d",
                   tlog_q(q, sizeof q, cfg->ceph_conf ? cfg->ceph_conf : ""),
                   r);
        goto fail;
    }
    if (cfg->keyring && *cfg->keyring &&
        (r = rados_conf_set(s->cluster, "keyring", cfg->keyring)) < 0)
        goto fail;
    /* Bound every wait: connecting, mon commands and OSD ops. */
    snprintf(tmo, sizeof tmo, "%d",
             cfg->op_timeout_s > 0 ? cfg->op_timeout_s : 30);
    if ((r = rados_conf_set(s->cluster, "client_mount_timeout", tmo)) < 0 ||
        (r = rados_conf_set(s->cluster, "rados_mon_op_timeout", tmo)) < 0 ||
        (r = rados_conf_set(s->cluster, "rados_osd_op_timeout", tmo)) < 0)
        goto fail;
    if ((r = ra_connect(s->cluster)) < 0) {
        tlog_error("store.rados.connect", "client=%s err=%d msg=\"%s\"", name,
                   r, strerror(-r));
        goto fail;
    }
    if ((r = rados_ioctx_create(s->cluster, cfg->pool, &s->io)) < 0) {
        s->io = NULL;
        tlog_error("store.rados.pool", "pool=%s err=%d msg=\"%s\"",
                   tlog_q(q, sizeof q, cfg->pool), r, strerror(-r));
        goto fail;
    }
    /* Set once, before any other thread can see the ioctx (changing it
     * later is not thread-safe). */
    rados_ioctx_set_namespace(s->io, cfg->rados_ns ? cfg->rados_ns : "");
    *out = &s->base;
    return 0;
fail:
    ra_close(&s->base);
    return r < 0 ? r : -EIO;
}

const struct st_ops st__rados_ops = {
    .name = "rados",
    .open = ra_open,
    .close = ra_close,
    .ping = ra_ping,
    .operate = ra_operate,
    .aio_operate = ra_aio_operate,
    .aio_wait = ra_aio_wait,
    .read = ra_read,
    .stat = ra_stat,
    .list = ra_list,
    .omap_get = ra_omap_get,
    .omap_iter = ra_omap_iter,
    .fence_id = ra_fence_id,
    .fence = ra_fence,
};
