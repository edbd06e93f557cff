/*
 * jr_volume.c: volume calls that work on the store directly, from any
 * process: create/stat/delete/list, metadata, roles and epochs, peer
 * acknowledgements, trimming with the journal cap and the dirty map
 * (FORMAT.md R-8), the regions journal entries touched (resync), and
 * direct image access for region copies.  A delete writes the volume's
 * tombstone first (jr_tomb.c) and breaks a lease in its way
 * (jr_lease.c).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jr_int.h"

#define HDR_OID(buf, vol)                                                     \
    char buf[JR_OID_MAX];                                                     \
    jr__oid_header(buf, sizeof buf, vol)

static int set_u64(st_wop *op, const char *key, uint64_t v)
{
    char b[32];
    int n = snprintf(b, sizeof b, "%" PRIu64, v);
    st_wop_omap_set(op, key, b, (size_t)n);
    return 0;
}

int jr_volume_create(st_store *st, const char *vol_id,
                     const struct jr_create_opts *o)
{
    if (!st || !o || !jr__valid_id(vol_id)) return -EINVAL;
    uint32_t objsz = o->object_size ? o->object_size : JR_DEFAULT_OBJECT_SIZE;
    int role = o->role ? o->role : JR_ROLE_PRIMARY;
    uint64_t epoch = o->epoch ? o->epoch : 1;
    if (o->size == 0 || o->size > JR_MAX_OFFSET) return -EINVAL;
    if (objsz < (64u << 10) || objsz > (64u << 20) || (objsz & (objsz - 1)))
        return -EINVAL;
    if (role != JR_ROLE_PRIMARY && role != JR_ROLE_SECONDARY) return -EINVAL;
    if (o->region && strlen(o->region) > JR_MAX_REGION) return -EINVAL;
    uint64_t base = o->start_seq ? o->start_seq - 1 : 0;
    int r;
    HDR_OID(oid, vol_id);
    st_wop *op = st_wop_create();
    if (!op) return -ENOMEM;
    st_wop_create_excl(op);
    st_wop_omap_set(op, "format", "1", 1);
    set_u64(op, "size", o->size);
    set_u64(op, "object_size", objsz);
    const char *rn = jr_role_name(role);
    st_wop_omap_set(op, "role", rn, strlen(rn));
    set_u64(op, "epoch", epoch);
    const char *region = o->region ? o->region : "";
    st_wop_omap_set(op, "region", region, strlen(region));
    set_u64(op, "created", (uint64_t)time(NULL));
    set_u64(op, "journal_cap", o->journal_cap ? o->journal_cap : (1ull << 30));
    set_u64(op, "base", base);
    char b[64];
    int n = snprintf(b, sizeof b, "%" PRIu64 " %" PRIu64, base, o->size);
    st_wop_omap_set(op, "applied", b, (size_t)n);
    set_u64(op, "tail", base + 1);
    set_u64(op, "dirty_grain", JR_DIRTY_GRAIN);
    for (size_t i = 0; i < o->n_meta; i++) {
        char key[ST_MAX_KEY];
        if (!o->meta[i].key || !o->meta[i].value ||
            snprintf(key, sizeof key, "meta.%s", o->meta[i].key) >=
                (int)sizeof key) {
            st_wop_destroy(op);
            return -EINVAL;
        }
        st_wop_omap_set(op, key, o->meta[i].value, strlen(o->meta[i].value));
    }
    /* Directory first: a crash before the header leaves a key that
     * names no volume, never a volume that no listing finds. */
    if ((r = st_omap_set(st, JR_DIR_OID, vol_id, "", 0)) < 0) {
        st_wop_destroy(op);
        return r;
    }
    r = st_wop_operate(st, oid, op);
    st_wop_destroy(op);
    if (r < 0 && r != -EEXIST) st_omap_rm(st, JR_DIR_OID, vol_id);
    if (r == 0)
        tlog_info("volume.created",
                  "vol=%s size=%" PRIu64 " object_size=%u role=%s epoch=%"
                  PRIu64 " base=%" PRIu64,
                  vol_id, o->size, objsz, rn, epoch, base);
    return r;
}

static int names_cb(const char *oid, void *arg)
{
    struct jr__names *l = arg;
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 64;
        char **nv = realloc(l->v, nc * sizeof *nv);
        if (!nv) return -ENOMEM;
        l->v = nv;
        l->cap = nc;
    }
    if (!(l->v[l->n] = strdup(oid))) return -ENOMEM;
    l->n++;
    return 0;
}

int jr__names_list(st_store *st, const char *prefix, struct jr__names *l)
{
    return st_list(st, prefix, names_cb, l);
}

void jr__names_free(struct jr__names *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof(*l));
}

int jr_volume_delete(st_store *st, const char *vol_id)
{
    struct jr__hdr h;
    int r = jr__hdr_load(st, vol_id, &h);
    if (r == JR_ECORRUPT || r == JR_EVERSION) {
        r = 0; /* delete anyway */
    } else if (r == -ENOENT) {
        st_omap_rm(st, JR_DIR_OID, vol_id); /* an interrupted delete */
        return r;
    } else if (r < 0) {
        return r;
    }
    int primary = h.role == JR_ROLE_PRIMARY;
    uint64_t epoch = h.epoch;
    int leased = h.lease != NULL;
    jr__hdr_free(&h);
    if (leased && (r = jr__lease_break(st, vol_id)) < 0) return r;
    /* Before anything is removed: a crash mid-delete still leaves it. */
    if (primary && (r = jr__tomb_write(st, vol_id, epoch)) < 0) return r;
    char prefix[JR_OID_MAX];
    snprintf(prefix, sizeof prefix, "vol/%s/", vol_id);
    struct jr__names l = {0};
    r = jr__names_list(st, prefix, &l);
    for (size_t i = 0; r == 0 && i < l.n; i++) {
        r = st_remove(st, l.v[i]);
        if (r == -ENOENT) r = 0;
    }
    jr__names_free(&l);
    if (r < 0) return r;
    HDR_OID(oid, vol_id);
    r = st_remove(st, oid);
    if (r == 0 || r == -ENOENT) {
        int rr = st_omap_rm(st, JR_DIR_OID, vol_id);
        if (rr < 0 && rr != -ENOENT && r == 0) r = rr;
    }
    if (r == 0) tlog_info("volume.deleted", "vol=%s", vol_id);
    return r;
}

struct listarg {
    int (*cb)(const char *, void *);
    void *arg;
    size_t keys; /* every key seen, the marker included */
};

static int list_cb(const char *key, const char *val, size_t len, void *arg)
{
    (void)val;
    (void)len;
    struct listarg *a = arg;
    a->keys++;
    if (!jr__valid_id(key)) return 0; /* JR_DIR_MARKER */
    return a->cb(key, a->arg);
}

/* A store from before the directory: index its headers once (a
 * prefix listing: on RADOS a walk of the pool), then leave the marker so
 * this never runs again, even in a store without volumes. */
static int dir_add_cb(const char *oid, void *arg)
{
    st_store *st = arg;
    const char *id = oid + 4; /* "vol/<id>" with no further '/' */
    if (strchr(id, '/') || !jr__valid_id(id)) return 0;
    return st_omap_set(st, JR_DIR_OID, id, "", 0);
}

static int dir_build(st_store *st)
{
    int r = st_list(st, "vol/", dir_add_cb, st);
    if (r == 0) r = st_omap_set(st, JR_DIR_OID, JR_DIR_MARKER, "", 0);
    if (r == 0) tlog_info("volume.directory_built", "object=%s", JR_DIR_OID);
    return r;
}

int jr_volume_list(st_store *st, int (*cb)(const char *vol_id, void *arg),
                   void *arg)
{
    if (!st || !cb) return -EINVAL;
    struct listarg a = {cb, arg, 0};
    int r = st_omap_iter(st, JR_DIR_OID, NULL, NULL, 0, list_cb, &a);
    if (r == -ENOENT) r = 0;
    if (r != 0 || a.keys) return r;
    if ((r = st_stat(st, JR_DIR_OID, NULL, NULL)) != -ENOENT) return r;
    if ((r = dir_build(st)) < 0) return r;
    return st_omap_iter(st, JR_DIR_OID, NULL, NULL, 0, list_cb, &a);
}

static int journal_bytes(st_store *st, const char *vol,
                         const struct jr__hdr *h, uint64_t *out)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < h->nj; i++) {
        if (h->j[i].closed) {
            sum += h->j[i].bytes;
            continue;
        }
        char oid[JR_OID_MAX];
        jr__oid_journal(oid, sizeof oid, vol, h->j[i].n);
        uint64_t sz = 0;
        int r = st_stat(st, oid, &sz, NULL);
        if (r < 0 && r != -ENOENT) return r;
        sum += sz;
    }
    *out = sum;
    return 0;
}

int jr_volume_stat(st_store *st, const char *vol_id, struct jr_info *out)
{
    if (!st || !out) return -EINVAL;
    struct jr__hdr h;
    int r = jr__hdr_load(st, vol_id, &h);
    if (r < 0) return r;
    memset(out, 0, sizeof *out);
    snprintf(out->vol_id, sizeof out->vol_id, "%s", vol_id);
    out->size = h.size;
    out->object_size = h.objsz;
    out->role = h.role;
    out->epoch = h.epoch;
    snprintf(out->region, sizeof out->region, "%s", h.region);
    out->created_s = h.created;
    r = jr__head(st, vol_id, &h, &out->head, &out->head_ts_ns);
    if (r == 0) r = journal_bytes(st, vol_id, &h, &out->journal_bytes);
    out->applied = h.applied;
    out->tail = h.nj ? h.j[0].first : out->head + 1;
    if (out->tail > out->head + 1) out->tail = out->head + 1;
    out->dirty_tracking = h.dirty;
    if (h.damage) { /* "<seq> <object hex> <offset> <why>" */
        unsigned long long a = 0, b = 0, c = 0;
        if (sscanf(h.damage, "%llu %llx %llu", &a, &b, &c) == 3) {
            out->damaged_seq = a;
            out->damaged_object = b;
            out->damaged_offset = c;
        }
    }
    jr__hdr_free(&h);
    return r;
}

/* ---- metadata ---- */

int jr_meta_get(st_store *st, const char *vol_id, const char *key,
                char **val)
{
    if (!st || !key || !val || !jr__valid_id(vol_id)) return -EINVAL;
    HDR_OID(oid, vol_id);
    char k[ST_MAX_KEY];
    if (snprintf(k, sizeof k, "meta.%s", key) >= (int)sizeof k)
        return -ENAMETOOLONG;
    size_t len;
    return st_omap_get(st, oid, k, val, &len);
}

int jr_meta_set(st_store *st, const char *vol_id, const char *key,
                const char *val)
{
    if (!st || !key || !*key || !val || !jr__valid_id(vol_id)) return -EINVAL;
    HDR_OID(oid, vol_id);
    char k[ST_MAX_KEY];
    if (snprintf(k, sizeof k, "meta.%s", key) >= (int)sizeof k)
        return -ENAMETOOLONG;
    st_wop *op = st_wop_create();
    if (!op) return -ENOMEM;
    st_wop_omap_cmp(op, "format", "1", 1); /* the volume must exist */
    st_wop_omap_set(op, k, val, strlen(val));
    int r = st_wop_operate(st, oid, op);
    st_wop_destroy(op);
    if (r == -ECANCELED) r = -ENOENT;
    return r;
}

int jr_meta_rm(st_store *st, const char *vol_id, const char *key)
{
    if (!st || !key || !*key || !jr__valid_id(vol_id)) return -EINVAL;
    HDR_OID(oid, vol_id);
    char k[ST_MAX_KEY];
    if (snprintf(k, sizeof k, "meta.%s", key) >= (int)sizeof k)
        return -ENAMETOOLONG;
    st_wop *op = st_wop_create();
    if (!op) return -ENOMEM;
    st_wop_omap_cmp(op, "format", "1", 1); /* the volume must exist */
    st_wop_omap_rm(op, k);
    int r = st_wop_operate(st, oid, op);
    st_wop_destroy(op);
    if (r == -ECANCELED) r = -ENOENT;
    return r;
}

struct metaarg {
    int (*cb)(const char *, const char *, void *);
    void *arg;
};

static int meta_cb(const char *key, const char *val, size_t len, void *arg)
{
    struct metaarg *m = arg;
    return m->cb(key + 5, val, m->arg);
}

int jr_meta_iter(st_store *st, const char *vol_id,
                 int (*cb)(const char *key, const char *val, void *arg),
                 void *arg)
{
    if (!st || !cb || !jr__valid_id(vol_id)) return -EINVAL;
    HDR_OID(oid, vol_id);
    char *v = NULL;
    size_t len;
    int r = st_omap_get(st, oid, "format", &v, &len);
    free(v);
    if (r < 0) return r;
    struct metaarg m = {cb, arg};
    return st_omap_iter(st, oid, "meta.", NULL, 0, meta_cb, &m);
}

/* ---- roles and epochs ---- */

int jr_role_set(st_store *st, const char *vol_id, int role, uint64_t epoch)
{
    if (!st || (role != JR_ROLE_PRIMARY && role != JR_ROLE_SECONDARY) ||
        epoch == 0)
        return -EINVAL;
    HDR_OID(oid, vol_id);
    for (int tries = 0; tries < 20; tries++) {
        struct jr__hdr h;
        int r = jr__hdr_load(st, vol_id, &h);
        if (r < 0) return r;
        if (epoch < h.epoch) {
            jr__hdr_free(&h);
            return JR_ESTALE;
        }
        int was = h.role;
        uint64_t last_j = h.nj ? h.j[h.nj - 1].n : 0;
        int have_j = h.nj > 0;
        if (was == role && h.epoch == epoch) {
            jr__hdr_free(&h);
            return 0; /* idempotent */
        }
        char eb[32];
        snprintf(eb, sizeof eb, "%" PRIu64, h.epoch);
        const char *rn = jr_role_name(was);
        jr__hdr_free(&h);
        st_wop *op = st_wop_create();
        if (!op) return -ENOMEM;
        st_wop_omap_cmp(op, "epoch", eb, strlen(eb));
        st_wop_omap_cmp(op, "role", rn, strlen(rn));
        rn = jr_role_name(role);
        st_wop_omap_set(op, "role", rn, strlen(rn));
        set_u64(op, "epoch", epoch);
        r = st_wop_operate(st, oid, op);
        st_wop_destroy(op);
        if (r == -ECANCELED) continue; /* raced another change: re-read */
        if (r < 0) return r;
        if (was == JR_ROLE_PRIMARY && role == JR_ROLE_SECONDARY && have_j) {
            /* Fence a writer that still has the volume open: its
             * next append fails.  New journal objects need role=primary. */
            char joid[JR_OID_MAX];
            jr__oid_journal(joid, sizeof joid, vol_id, last_j);
            r = st_omap_set(st, joid, "w", "demoted", 7);
            if (r < 0) return r;
        }
        tlog_info("volume.role_set", "vol=%s role=%s epoch=%" PRIu64, vol_id,
                  rn, epoch);
        return 0;
    }
    return -EAGAIN;
}

/* ---- peers ---- */

int jr_peer_ack_get(st_store *st, const char *vol_id, const char *peer,
                    uint64_t *seq)
{
    if (!st || !seq || !jr__valid_peer(peer) || !jr__valid_id(vol_id))
        return -EINVAL;
    HDR_OID(oid, vol_id);
    char key[JR_MAX_REGION + 8];
    snprintf(key, sizeof key, "ack.%s", peer);
    char *v = NULL;
    size_t len;
    int r = st_omap_get(st, oid, key, &v, &len);
    if (r < 0) return r;
    r = jr__parse_u64(v, seq);
    free(v);
    return r < 0 ? JR_ECORRUPT : 0;
}

int jr_peer_ack_set(st_store *st, const char *vol_id, const char *peer,
                    uint64_t seq)
{
    if (!st || !jr__valid_peer(peer) || !jr__valid_id(vol_id)) return -EINVAL;
    HDR_OID(oid, vol_id);
    char key[JR_MAX_REGION + 8];
    snprintf(key, sizeof key, "ack.%s", peer);
    for (int tries = 0; tries < 50; tries++) {
        char *v = NULL;
        size_t len = 0;
        int r = st_omap_get(st, oid, key, &v, &len);
        if (r < 0 && r != -ENOENT) return r;
        if (r == -ENOENT) { /* no ack yet, or no volume at all? */
            char *fmt = NULL;
            size_t fl;
            int rr = st_omap_get(st, oid, "format", &fmt, &fl);
            free(fmt);
            if (rr < 0) return rr;
        }
        if (r == 0) {
            uint64_t cur = 0;
            if (jr__parse_u64(v, &cur) == 0 && seq <= cur) {
                free(v);
                return 0; /* monotonic: never goes back */
            }
        }
        st_wop *op = st_wop_create();
        if (!op) {
            free(v);
            return -ENOMEM;
        }
        st_wop_omap_cmp(op, "format", "1", 1);
        st_wop_omap_cmp(op, key, v, v ? len : 0);
        set_u64(op, key, seq);
        r = st_wop_operate(st, oid, op);
        st_wop_destroy(op);
        free(v);
        if (r != -ECANCELED) return r;
    }
    return -EAGAIN;
}

/* ---- trimming and the dirty map ---- */

static int mark_range(struct jr__hdr *h, uint64_t off, uint64_t len,
                      int *changed)
{
    if (len == 0) return 0;
    uint64_t g0 = off / h->grain, g1 = (off + len - 1) / h->grain;
    for (uint64_t g = g0; g <= g1; g++) {
        uint64_t c = g / JR_DIRTY_CHUNK_BITS, bit = g % JR_DIRTY_CHUNK_BITS;
        size_t i = 0;
        while (i < h->nch && h->ch[i].c < c) i++;
        if (i == h->nch || h->ch[i].c != c) {
            struct jr__chunk *nc = realloc(h->ch, (h->nch + 1) * sizeof *nc);
            if (!nc) return -ENOMEM;
            h->ch = nc;
            memmove(&h->ch[i + 1], &h->ch[i], (h->nch - i) * sizeof *nc);
            h->ch[i].c = c;
            h->ch[i].bits = calloc(1, JR_DIRTY_CHUNK_BYTES);
            h->nch++;
            if (!h->ch[i].bits) return -ENOMEM;
        }
        uint8_t *b = &h->ch[i].bits[bit / 8];
        if (!(*b & (1u << (bit % 8)))) {
            *b |= (uint8_t)(1u << (bit % 8));
            *changed = 1;
        }
    }
    return 0;
}

struct markarg {
    struct jr__hdr *h;
    uint64_t keep_from; /* entries >= this were not acked by every peer */
    uint64_t size;      /* size as of the entry, to mark shrinks */
    int changed;
};

static int mark_cb(const struct jr_entry *e, const uint8_t *raw, size_t rl,
                   void *arg)
{
    struct markarg *m = arg;
    if (e->seq < m->keep_from) return 0;
    if (e->kind == JR_K_WRITE || e->kind == JR_K_ZERO)
        return mark_range(m->h, e->off, e->len, &m->changed);
    if (e->kind == JR_K_RESIZE) {
        /* The peer must learn the size too: mark the changed span. */
        uint64_t lo = e->off < m->size ? e->off : m->size;
        uint64_t hi = e->off < m->size ? m->size : e->off;
        m->size = e->off;
        return mark_range(m->h, lo, hi - lo, &m->changed);
    }
    return 0;
}

/* Trim's removals: every object in flight at once (one round trip on
 * rados instead of one per object; one group commit on sqlite), then
 * wait.  The index entries are gone already, so an object left behind by
 * a failure is only garbage. */
static int remove_jobjs(st_store *st, const char *vol, const struct jr__hdr *h,
                        size_t k)
{
    struct jr__aio w;
    jr__aio_init(&w, -ENOENT);
    int r = 0;
    for (size_t i = 0; i < k; i++) {
        char joid[JR_OID_MAX];
        jr__oid_journal(joid, sizeof joid, vol, h->j[i].n);
        st_wop *op = st_wop_create();
        if (op) {
            st_wop_remove(op);
            if (jr__aio_submit(&w, st, joid, op) == 0) continue;
        }
        int rr = st_remove(st, joid); /* could not go async: do it here */
        if (rr < 0 && rr != -ENOENT && !r) r = rr;
    }
    int rw = jr__aio_wait(&w);
    return r ? r : rw;
}

int jr__trim(st_store *st, const char *vol)
{
    HDR_OID(oid, vol);
    for (int tries = 0; tries < 10; tries++) {
        struct jr__hdr h;
        int r = jr__hdr_load(st, vol, &h);
        if (r < 0) return r;
        uint64_t jbytes = 0;
        r = journal_bytes(st, vol, &h, &jbytes);
        if (r < 0) {
            jr__hdr_free(&h);
            return r;
        }
        /* with no peer registered, keep everything for the first.
         * A secondary without peers keeps nothing for them: its journal
         * only protects its own image.  A demoted primary still has its
         * peers' acks, which keep what it wrote but never shipped (a
         * resync needs those regions). */
        uint64_t peers = h.n_acks                      ? h.min_ack
                         : h.role == JR_ROLE_SECONDARY ? h.applied
                                                       : h.base;
        uint64_t limit = h.applied < peers ? h.applied : peers;
        int over = h.dirty || jbytes > h.cap;
        size_t k = 0; /* objects [0, k) go */
        uint64_t freed = 0;
        while (k + 1 < h.nj && h.j[k].closed) {
            uint64_t last = h.j[k].last;
            if (last <= limit ||
                (over && last <= h.applied && jbytes - freed > 0)) {
                freed += h.j[k].bytes;
                k++;
                continue;
            }
            break;
        }
        if (k == 0) {
            jr__hdr_free(&h);
            return 0;
        }
        struct markarg m = {&h, peers + 1, h.applied_size, 0};
        if (h.j[k - 1].last > peers) {
            /* Entries a peer still needs are dropped: record their regions
             * (the cap was reached).  The size as of the first dropped
             * entry is unknown here; marking resizes from the current size
             * covers the span either way. */
            m.size = h.size;
            r = jr__journal_iter(st, vol, &h, peers + 1, h.j[k - 1].last,
                                 mark_cb, &m);
            if (r < 0) {
                jr__hdr_free(&h);
                return r;
            }
        }
        st_wop *op = st_wop_create();
        if (!op) {
            jr__hdr_free(&h);
            return -ENOMEM;
        }
        st_wop_omap_cmp(op, "tail", h.tail_raw,
                        h.tail_raw ? strlen(h.tail_raw) : 0);
        st_wop_omap_cmp(op, "dirty.gen", h.gen_raw,
                        h.gen_raw ? strlen(h.gen_raw) : 0);
        set_u64(op, "tail", h.j[k].first);
        char key[64];
        for (size_t i = 0; i < k; i++) {
            snprintf(key, sizeof key, "jidx.%016" PRIx64, h.j[i].n);
            st_wop_omap_rm(op, key);
        }
        if (m.changed) {
            st_wop_omap_set(op, "dirty", "1", 1);
            set_u64(op, "dirty.gen", h.dirty_gen + 1);
            for (size_t i = 0; i < h.nch; i++) {
                snprintf(key, sizeof key, "dirty.%016" PRIx64, h.ch[i].c);
                st_wop_omap_set(op, key, h.ch[i].bits, JR_DIRTY_CHUNK_BYTES);
            }
        } else if (h.j[k - 1].last > peers) {
            st_wop_omap_set(op, "dirty", "1", 1);
        }
        r = st_wop_operate(st, oid, op);
        st_wop_destroy(op);
        if (r == -ECANCELED) {
            jr__hdr_free(&h);
            continue;
        }
        if (r == 0) {
            int rr = remove_jobjs(st, vol, &h, k);
            if (rr < 0) r = rr;
            tlog_info("journal.trimmed",
                      "vol=%s objects=%zu tail=%" PRIu64 " dirty=%d", vol, k,
                      h.j[k].first, m.changed || h.dirty);
        }
        jr__hdr_free(&h);
        return r;
    }
    return -EAGAIN;
}

int jr_trim(st_store *st, const char *vol_id)
{
    if (!st || !jr__valid_id(vol_id)) return -EINVAL;
    return jr__trim(st, vol_id);
}

int jr_dirty_iter_gen(st_store *st, const char *vol_id, uint64_t *gen,
                      int (*cb)(uint64_t off, uint64_t len, void *arg),
                      void *arg)
{
    if (!st || !cb) return -EINVAL;
    struct jr__hdr h;
    int r = jr__hdr_load(st, vol_id, &h);
    if (r < 0) return r;
    if (gen) *gen = h.dirty_gen;
    /* Merge adjacent bits into ranges, clipped to the size. */
    uint64_t run_off = 0, run_len = 0;
    for (size_t i = 0; i < h.nch && r == 0; i++) {
        /* A chunk wholly past the size (a corrupt or stale key) is
         * skipped before its number is multiplied: c * bits * grain could
         * wrap to an offset inside the image. */
        if (h.ch[i].c > h.size / h.grain / JR_DIRTY_CHUNK_BITS) continue;
        for (uint32_t bit = 0; bit < JR_DIRTY_CHUNK_BITS && r == 0; bit++) {
            if (!h.ch[i].bits[bit / 8]) {
                bit += 7;
                continue;
            }
            if (!(h.ch[i].bits[bit / 8] & (1u << (bit % 8)))) continue;
            uint64_t off = (h.ch[i].c * JR_DIRTY_CHUNK_BITS + bit) * h.grain;
            if (off >= h.size) continue;
            uint64_t len = h.grain;
            if (len > h.size - off) len = h.size - off; /* no wrap */
            if (run_len && run_off + run_len == off) {
                run_len += len;
                continue;
            }
            if (run_len) r = cb(run_off, run_len, arg);
            run_off = off;
            run_len = len;
        }
    }
    if (r == 0 && run_len) r = cb(run_off, run_len, arg);
    jr__hdr_free(&h);
    return r;
}

int jr_dirty_iter(st_store *st, const char *vol_id,
                  int (*cb)(uint64_t off, uint64_t len, void *arg), void *arg)
{
    return jr_dirty_iter_gen(st, vol_id, NULL, cb, arg);
}

static int dirty_clear(st_store *st, const char *vol_id, uint64_t resume_seq,
                       const uint64_t *gen)
{
    HDR_OID(oid, vol_id);
    for (int tries = 0; tries < 10; tries++) {
        struct jr__hdr h;
        int r = jr__hdr_load(st, vol_id, &h);
        if (r < 0) return r;
        if (gen && h.dirty_gen != *gen) {
            jr__hdr_free(&h);
            return -EAGAIN;
        }
        uint64_t tail = h.nj ? h.j[0].first : h.tail;
        if (resume_seq < tail) {
            jr__hdr_free(&h);
            return JR_ETRIMMED;
        }
        st_wop *op = st_wop_create();
        if (!op) {
            jr__hdr_free(&h);
            return -ENOMEM;
        }
        st_wop_omap_cmp(op, "tail", h.tail_raw,
                        h.tail_raw ? strlen(h.tail_raw) : 0);
        st_wop_omap_cmp(op, "dirty.gen", h.gen_raw,
                        h.gen_raw ? strlen(h.gen_raw) : 0);
        st_wop_omap_set(op, "dirty", "0", 1);
        set_u64(op, "dirty.gen", h.dirty_gen + 1);
        char key[64];
        for (size_t i = 0; i < h.nch; i++) {
            snprintf(key, sizeof key, "dirty.%016" PRIx64, h.ch[i].c);
            st_wop_omap_rm(op, key);
        }
        r = st_wop_operate(st, oid, op);
        st_wop_destroy(op);
        jr__hdr_free(&h);
        if (r == -ECANCELED) {
            if (gen) return -EAGAIN;
            continue;
        }
        if (r == 0)
            tlog_info("journal.dirty_cleared", "vol=%s resume_seq=%" PRIu64,
                      vol_id, resume_seq);
        return r;
    }
    return -EAGAIN;
}

int jr_dirty_clear(st_store *st, const char *vol_id, uint64_t resume_seq)
{
    if (!st || !jr__valid_id(vol_id)) return -EINVAL;
    return dirty_clear(st, vol_id, resume_seq, NULL);
}

int jr_dirty_clear_gen(st_store *st, const char *vol_id, uint64_t resume_seq,
                       uint64_t gen)
{
    if (!st || !jr__valid_id(vol_id)) return -EINVAL;
    return dirty_clear(st, vol_id, resume_seq, &gen);
}

/* ---- regions touched by journal entries (resync) ---- */

struct regarg {
    int (*cb)(uint64_t, uint64_t, void *);
    void *arg;
    uint64_t size;
};

static int region_cb(const struct jr_entry *e, const uint8_t *raw, size_t rl,
                     void *arg)
{
    struct regarg *a = arg;
    if (e->kind == JR_K_WRITE || e->kind == JR_K_ZERO)
        return a->cb(e->off, e->len, a->arg);
    if (e->kind == JR_K_RESIZE) {
        uint64_t lo = e->off < a->size ? e->off : a->size;
        uint64_t hi = e->off < a->size ? a->size : e->off;
        if (hi > lo) return a->cb(lo, hi - lo, a->arg);
    }
    return 0;
}

int jr_journal_regions(st_store *st, const char *vol_id, uint64_t from_seq,
                       uint64_t to_seq,
                       int (*cb)(uint64_t off, uint64_t len, void *arg),
                       void *arg)
{
    if (!st || !cb) return -EINVAL;
    struct jr__hdr h;
    int r = jr__hdr_load(st, vol_id, &h);
    if (r < 0) return r;
    uint64_t tail = h.nj ? h.j[0].first : h.tail;
    if (from_seq < tail && from_seq <= to_seq) {
        jr__hdr_free(&h);
        return JR_ETRIMMED;
    }
    struct regarg a = {cb, arg, h.size};
    r = jr__journal_iter(st, vol_id, &h, from_seq, to_seq, region_cb, &a);
    jr__hdr_free(&h);
    return r;
}

int jr_batch_regions(const void *data, size_t len,
                     int (*cb)(uint64_t off, uint64_t len, void *arg),
                     void *arg)
{
    if ((!data && len) || !cb) return -EINVAL;
    struct regarg a = {cb, arg, JR_MAX_OFFSET};
    const uint8_t *p = data;
    size_t pos = 0;
    while (pos < len) {
        struct jr_entry e;
        size_t used;
        int r = jr__entry_decode(p + pos, len - pos, &e, &used, NULL);
        if (r < 0) return r;
        if ((r = region_cb(&e, p + pos, used, &a))) return r;
        pos += used;
    }
    return 0;
}

/* ---- direct image access ---- */

int jr_image_read(st_store *st, const char *vol_id, uint64_t off, void *buf,
                  size_t len)
{
    if (!st || (!buf && len)) return -EINVAL;
    struct jr__hdr h;
    int r = jr__hdr_load(st, vol_id, &h);
    if (r < 0) return r;
    if (off > h.size || len > h.size - off) r = -EINVAL;
    else r = jr__image_read(st, vol_id, h.objsz, off, buf, len);
    jr__hdr_free(&h);
    return r;
}

int jr_image_write(st_store *st, const char *vol_id, uint64_t off,
                   const void *buf, size_t len)
{
    if (!st || (!buf && len)) return -EINVAL;
    struct jr__hdr h;
    int r = jr__hdr_load(st, vol_id, &h);
    if (r < 0) return r;
    if (off > h.size || len > h.size - off) {
        jr__hdr_free(&h);
        return -EINVAL;
    }
    struct jr__op op = {JR_K_WRITE, 0, off, len, buf};
    uint64_t size = h.size;
    r = len ? jr__image_apply(st, vol_id, h.objsz, &op, 1, &size) : 0;
    jr__hdr_free(&h);
    return r;
}

int jr_image_resize(st_store *st, const char *vol_id, uint64_t new_size)
{
    if (!st || new_size == 0 || new_size > JR_MAX_OFFSET) return -EINVAL;
    struct jr__hdr h;
    int r = jr__hdr_load(st, vol_id, &h);
    if (r < 0) return r;
    if (h.role != JR_ROLE_SECONDARY) {
        jr__hdr_free(&h);
        return JR_EROLE;
    }
    struct jr__op op = {JR_K_RESIZE, 0, new_size, 0, NULL};
    uint64_t size = h.size;
    r = jr__image_apply(st, vol_id, h.objsz, &op, 1, &size);
    if (r == 0) {
        HDR_OID(oid, vol_id);
        char b[64];
        int n = snprintf(b, sizeof b, "%" PRIu64, new_size);
        r = st_omap_set(st, oid, "size", b, (size_t)n);
    }
    jr__hdr_free(&h);
    return r;
}

int jr_replica_rebase(st_store *st, const char *vol_id, uint64_t seq,
                      uint64_t size)
{
    if (!st || size == 0 || size > JR_MAX_OFFSET) return -EINVAL;
    HDR_OID(oid, vol_id);
    for (int tries = 0; tries < 10; tries++) {
        struct jr__hdr h;
        int r = jr__hdr_load(st, vol_id, &h);
        if (r < 0) return r;
        if (h.role != JR_ROLE_SECONDARY) {
            jr__hdr_free(&h);
            return JR_EROLE;
        }
        /* Drop the old journal first (index keys and base in one update),
         * so no replay can run old entries over the copied regions.  The
         * guards make a trim that ran since the load retry with what it
         * left. */
        st_wop *op = st_wop_create();
        if (!op) {
            jr__hdr_free(&h);
            return -ENOMEM;
        }
        st_wop_omap_cmp(op, "role", "secondary", 9);
        st_wop_omap_cmp(op, "tail", h.tail_raw,
                        h.tail_raw ? strlen(h.tail_raw) : 0);
        st_wop_omap_cmp(op, "dirty.gen", h.gen_raw,
                        h.gen_raw ? strlen(h.gen_raw) : 0);
        char key[64], b[64];
        for (size_t i = 0; i < h.nj; i++) {
            snprintf(key, sizeof key, "jidx.%016" PRIx64, h.j[i].n);
            st_wop_omap_rm(op, key);
        }
        /* Dirty tracking left from days as a primary describes an older
         * state. */
        for (size_t i = 0; i < h.nch; i++) {
            snprintf(key, sizeof key, "dirty.%016" PRIx64, h.ch[i].c);
            st_wop_omap_rm(op, key);
        }
        st_wop_omap_set(op, "dirty", "0", 1);
        set_u64(op, "dirty.gen", h.dirty_gen + 1);
        st_wop_omap_rm(op, "damage"); /* the journal it named is gone */
        set_u64(op, "base", seq);
        set_u64(op, "tail", seq + 1);
        int n = snprintf(b, sizeof b, "%" PRIu64 " %" PRIu64, seq, size);
        st_wop_omap_set(op, "applied", b, (size_t)n);
        set_u64(op, "size", size);
        r = st_wop_operate(st, oid, op);
        st_wop_destroy(op);
        if (r == -ECANCELED) { /* role, tail or dirty map moved: again */
            jr__hdr_free(&h);
            continue;
        }
        /* The index no longer names them: a crash from here leaves
         * garbage only. */
        if (r == 0) r = remove_jobjs(st, vol_id, &h, h.nj);
        if (r == 0)
            tlog_info("volume.rebased", "vol=%s seq=%" PRIu64 " size=%" PRIu64
                      " journal_objects=%zu", vol_id, seq, size, h.nj);
        jr__hdr_free(&h);
        return r;
    }
    return -EAGAIN;
}
