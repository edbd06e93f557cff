/*
 * jr_image.c: the engine's store-side building blocks shared by the
 * writer (jr_io.c) and the replicator-facing calls (jr_volume.c): loading
 * the header omap (FORMAT.md §2), reading and parsing journal objects
 * (R-10..R-21, corruption reported with volume/object/offset), and
 * applying entries to the striped image, coalesced per data object.  The
 * writer lease's value is jr_lease.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jr_int.h"
#include "tbase.h"

int jr__parse_u64(const char *s, uint64_t *v)
{
    if (!s || *s < '0' || *s > '9') return -EINVAL; /* one digit at least */
    uint64_t x = 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        uint64_t d = (uint64_t)(*s - '0');
        /* x * 10 + d <= UINT64_MAX, exactly (2^64 - 1 itself parses). */
        if (x > UINT64_MAX / 10 || (x == UINT64_MAX / 10 && d > UINT64_MAX % 10))
            return -EINVAL;
        x = x * 10 + d;
    }
    if (*s && *s != ' ') return -EINVAL;
    *v = x;
    return 0;
}

/* ---- header ---- */

static int hex16(const char *s, uint64_t *v)
{
    uint64_t x = 0;
    for (int i = 0; i < 16; i++) {
        char c = s[i];
        int d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else return -EINVAL;
        x = x << 4 | (uint64_t)d;
    }
    if (s[16]) return -EINVAL;
    *v = x;
    return 0;
}

struct hload {
    struct jr__hdr *h;
    int have_format;
    int bad;
};

static int hdr_cb(const char *key, const char *val, size_t len, void *arg)
{
    struct hload *L = arg;
    struct jr__hdr *h = L->h;
    uint64_t v = 0;
    int r = 0;
#define U64(name, field)                                                      \
    if (strcmp(key, name) == 0) {                                             \
        r = jr__parse_u64(val, &v);                                           \
        h->field = v;                                                         \
        goto done;                                                            \
    }
    if (strcmp(key, "format") == 0) {
        L->have_format = 1;
        if (strcmp(val, "1") != 0) L->bad = JR_EVERSION; /* */
        return 0;
    }
    U64("size", size);
    U64("epoch", epoch);
    U64("journal_cap", cap);
    U64("base", base);
    U64("dirty_grain", grain);
    if (strcmp(key, "object_size") == 0) {
        r = jr__parse_u64(val, &v);
        if (v > (64u << 20)) r = -EINVAL;
        h->objsz = (uint32_t)v;
        goto done;
    }
    if (strcmp(key, "created") == 0) {
        r = jr__parse_u64(val, &v);
        h->created = (int64_t)v;
        goto done;
    }
    if (strcmp(key, "role") == 0) {
        h->role = strcmp(val, "primary") == 0     ? JR_ROLE_PRIMARY
                  : strcmp(val, "secondary") == 0 ? JR_ROLE_SECONDARY
                                                  : 0;
        if (!h->role) r = -EINVAL;
        goto done;
    }
    if (strcmp(key, "region") == 0) {
        snprintf(h->region, sizeof h->region, "%s", val);
        return 0;
    }
    if (strcmp(key, "applied") == 0) {
        r = jr__parse_u64(val, &h->applied);
        const char *sp = strchr(val, ' ');
        if (!r) r = sp ? jr__parse_u64(sp + 1, &h->applied_size) : -EINVAL;
        free(h->applied_raw);
        h->applied_raw = strdup(val);
        goto done;
    }
    if (strcmp(key, "fence") == 0) { /* "<gen> <token>" */
        r = jr__parse_u64(val, &h->fence_gen);
        if (!r && (!strchr(val, ' ') || !strchr(val, ' ')[1])) r = -EINVAL;
        free(h->fence);
        h->fence = strdup(val);
        goto done;
    }
    if (strcmp(key, "damage") == 0) { /* read by jr_volume_stat */
        free(h->damage);
        h->damage = strdup(val);
        return 0;
    }
    if (strcmp(key, "tail") == 0) {
        r = jr__parse_u64(val, &h->tail);
        free(h->tail_raw);
        h->tail_raw = strdup(val);
        goto done;
    }
    if (strcmp(key, "dirty") == 0) {
        h->dirty = strcmp(val, "1") == 0;
        return 0;
    }
    if (strcmp(key, "dirty.gen") == 0) {
        r = jr__parse_u64(val, &h->dirty_gen);
        free(h->gen_raw);
        h->gen_raw = strdup(val);
        goto done;
    }
    if (strcmp(key, "lease") == 0) {
        free(h->lease);
        h->lease = strdup(val);
        return 0;
    }
    if (strncmp(key, "ack.", 4) == 0) {
        r = jr__parse_u64(val, &v);
        if (!r && (h->n_acks == 0 || v < h->min_ack)) h->min_ack = v;
        if (!r && v > h->max_ack) h->max_ack = v;
        h->n_acks++;
        goto done;
    }
    if (strncmp(key, "jidx.", 5) == 0) {
        struct jr__jobj j = {0};
        r = hex16(key + 5, &j.n);
        if (!r) r = jr__parse_u64(val, &j.first);
        /* seqs start at base + 1 >= 1.  A first seq of 0 would make
         * jr__head's "nothing appended yet" head (first - 1) wrap. */
        if (!r && j.first == 0) r = -EINVAL;
        const char *sp = strchr(val, ' ');
        if (!r && sp) {
            j.closed = 1;
            r = jr__parse_u64(sp + 1, &j.last);
            sp = strchr(sp + 1, ' ');
            if (!r) r = sp ? jr__parse_u64(sp + 1, &j.bytes) : -EINVAL;
        }
        if (r) goto done;
        struct jr__jobj *nj = realloc(h->j, (h->nj + 1) * sizeof *nj);
        if (!nj) return -ENOMEM;
        h->j = nj;
        h->j[h->nj++] = j; /* keys come in order: sorted by n */
        return 0;
    }
    if (strncmp(key, "dirty.", 6) == 0) {
        struct jr__chunk c = {0};
        r = hex16(key + 6, &c.c);
        if (r || len != JR_DIRTY_CHUNK_BYTES) {
            r = -EINVAL;
            goto done;
        }
        c.bits = malloc(JR_DIRTY_CHUNK_BYTES);
        if (!c.bits) return -ENOMEM;
        memcpy(c.bits, val, JR_DIRTY_CHUNK_BYTES);
        struct jr__chunk *nc = realloc(h->ch, (h->nch + 1) * sizeof *nc);
        if (!nc) {
            free(c.bits);
            return -ENOMEM;
        }
        h->ch = nc;
        h->ch[h->nch++] = c;
        return 0;
    }
    return 0; /* meta.* and future keys */
done:
    if (r && !L->bad) {
        tlog_warn("journal.header_bad", "key=%s", key);
        L->bad = JR_ECORRUPT;
    }
    return 0;
#undef U64
}

void jr__hdr_free(struct jr__hdr *h)
{
    free(h->lease);
    free(h->tail_raw);
    free(h->gen_raw);
    free(h->fence);
    free(h->applied_raw);
    free(h->damage);
    free(h->j);
    for (size_t i = 0; i < h->nch; i++) free(h->ch[i].bits);
    free(h->ch);
    memset(h, 0, sizeof *h);
}

int jr__hdr_load(st_store *st, const char *vol, struct jr__hdr *h)
{
    char oid[JR_OID_MAX];
    memset(h, 0, sizeof *h);
    if (!jr__valid_id(vol)) return -EINVAL;
    jr__oid_header(oid, sizeof oid, vol);
    struct hload L = {.h = h};
    int r = st_omap_iter(st, oid, "", NULL, 0, hdr_cb, &L);
    if (r == 0 && !L.have_format) r = -ENOENT; /* object without a header */
    if (r == 0 && L.bad) r = L.bad;
    if (r == 0 && (h->objsz < (64u << 10) || (h->objsz & (h->objsz - 1)) ||
                   !h->role || !h->epoch || h->size > JR_MAX_OFFSET ||
                   h->applied_size > JR_MAX_OFFSET || h->grain > (1ull << 40)))
        r = JR_ECORRUPT; /* sizes: R-17's bound, which range checks assume */
    if (r == 0 && !h->grain) h->grain = JR_DIRTY_GRAIN;
    if (r < 0) jr__hdr_free(h);
    return r;
}

int jr__head(st_store *st, const char *vol, const struct jr__hdr *h,
             uint64_t *head, int64_t *ts)
{
    *head = h->base;
    if (ts) *ts = 0;
    if (h->nj == 0) return 0;
    const struct jr__jobj *j = &h->j[h->nj - 1];
    char oid[JR_OID_MAX];
    jr__oid_journal(oid, sizeof oid, vol, j->n);
    char *val = NULL;
    size_t len;
    int r = st_omap_get(st, oid, "head", &val, &len);
    if (r == -ENOENT) { /* started but nothing appended yet */
        *head = j->first - 1;
        return 0;
    }
    if (r < 0) return r;
    uint64_t seq = 0, t = 0;
    r = jr__parse_u64(val, &seq);
    const char *sp = strchr(val, ' ');
    if (!r && sp) jr__parse_u64(sp + 1, &t);
    free(val);
    if (r < 0 || seq + 1 < j->first) return JR_ECORRUPT;
    *head = seq;
    if (ts) *ts = (int64_t)t;
    return 0;
}

/* ---- guarded header updates ---- */

void jr__guard_add(st_wop *op, const char *vol, const char *oid,
                   const struct jr__guard *g)
{
    if (!g) return;
    char hoid[JR_OID_MAX];
    jr__oid_header(hoid, sizeof hoid, vol);
    if (strcmp(oid, hoid) == 0)
        st_wop_omap_cmp(op, g->key, g->val, strlen(g->val));
    else
        st_wop_fence_guard(op, hoid, g->key, g->val, strlen(g->val));
}

int jr__applied_set(st_store *st, const char *vol, const struct jr__guard *g,
                    const char *seen, uint64_t seq, uint64_t size,
                    int set_size, char *out, size_t cap)
{
    char hoid[JR_OID_MAX], nv[64], sz[32];
    jr__oid_header(hoid, sizeof hoid, vol);
    int n = snprintf(nv, sizeof nv, "%" PRIu64 " %" PRIu64, seq, size);
    int m = snprintf(sz, sizeof sz, "%" PRIu64, size);
    char *cur = seen ? strdup(seen) : NULL;
    if (seen && !cur) return -ENOMEM;
    int r = -EAGAIN;
    for (int tries = 0; tries < 20; tries++) {
        st_wop *op = st_wop_create();
        if (!op) {
            r = -ENOMEM;
            break;
        }
        jr__guard_add(op, vol, hoid, g);
        st_wop_omap_cmp(op, "applied", cur, cur ? strlen(cur) : 0);
        st_wop_omap_set(op, "applied", nv, (size_t)n);
        if (set_size) st_wop_omap_set(op, "size", sz, (size_t)m);
        r = st_wop_operate(st, hoid, op);
        st_wop_destroy(op);
        if (r != -ECANCELED) break;
        /* Which guard failed?  g: give up; applied: look at it. */
        char *v = NULL;
        size_t len = 0;
        if (g) {
            r = st_omap_get(st, hoid, g->key, &v, &len);
            int same = r == 0 && strcmp(v, g->val) == 0;
            free(v);
            v = NULL;
            if (r < 0 && r != -ENOENT) break;
            if (!same) {
                r = -ECANCELED;
                break;
            }
        }
        r = st_omap_get(st, hoid, "applied", &v, &len);
        if (r < 0 && r != -ENOENT) break;
        uint64_t at = 0;
        if (r == 0 && jr__parse_u64(v, &at) == 0 && at >= seq) {
            /* Someone recorded as far or further: never go back. */
            snprintf(nv, sizeof nv, "%s", v);
            free(v);
            r = 0;
            tlog_info("journal.applied_kept", "vol=%s applied=%" PRIu64
                      " not_recorded=%" PRIu64, vol, at, seq);
            break;
        }
        free(cur);
        cur = r == 0 ? v : NULL;
        r = -EAGAIN;
    }
    free(cur);
    if (r == 0 && out) snprintf(out, cap, "%s", nv);
    return r;
}

/* ---- journal objects ---- */

int jr__jobj_load(st_store *st, const char *vol, uint64_t jno, uint8_t **buf,
                  size_t *len)
{
    char oid[JR_OID_MAX];
    jr__oid_journal(oid, sizeof oid, vol, jno);
    uint64_t size = 0;
    *buf = NULL;
    *len = 0;
    int r = st_stat(st, oid, &size, NULL);
    if (r < 0) return r;
    if (size > ST_MAX_OBJECT) return JR_ECORRUPT;
    uint8_t *b = malloc(size ? size : 1);
    if (!b) return -ENOMEM;
    ssize_t n = st_read(st, oid, 0, b, size);
    if (n < 0) {
        free(b);
        return (int)n;
    }
    *buf = b;
    *len = (size_t)n;
    return 0;
}

static void bad_set(struct jr__bad *bad, uint64_t seq, uint64_t jno,
                    uint64_t off, int64_t prev_ts, const char *why)
{
    if (!bad) return;
    bad->seq = seq;
    bad->jno = jno;
    bad->off = off;
    bad->prev_ts = prev_ts;
    snprintf(bad->why, sizeof bad->why, "%s", why);
}

static int jobj_parse(const char *vol, uint64_t jno, const uint8_t *buf,
                      size_t len, uint64_t first, jr__entry_cb cb, void *arg,
                      struct jr__bad *bad)
{
    size_t pos = 0;
    uint64_t expect = first;
    int64_t prev_ts = 0;
    while (pos < len) {
        struct jr_entry e;
        size_t used = 0;
        const char *why = "";
        char q[96];
        int r = jr__entry_decode(buf + pos, len - pos, &e, &used, &why);
        if (r == 0 && e.seq != expect) { /* */
            why = "sequence gap in journal object (R-21)";
            r = JR_ECORRUPT;
        }
        if (r == 0 && cb) {
            r = cb(&e, buf + pos, used, arg);
            /* The caller's own checks of the entry (R-20 lz4, R-34
             * range) fail it as well: damage at this entry. */
            if (r == JR_ECORRUPT) why = "entry refused on use (R-20/R-34)";
            else if (r) return r;
        }
        if (r < 0) {
            tlog_error("journal.corrupt",
                       "vol=%s object=%016" PRIx64 " offset=%zu expect_seq=%"
                       PRIu64 " why=%s",
                       vol, jno, pos, expect, tlog_q(q, sizeof q, why));
            if (r == JR_ECORRUPT || r == JR_EVERSION)
                bad_set(bad, expect, jno, pos, prev_ts, why);
            return r;
        }
        prev_ts = e.ts_ns;
        expect++;
        pos += used;
    }
    return 0;
}

int jr__jobj_parse(const char *vol, uint64_t jno, const uint8_t *buf,
                   size_t len, uint64_t first, jr__entry_cb cb, void *arg)
{
    return jobj_parse(vol, jno, buf, len, first, cb, arg, NULL);
}

struct iter {
    uint64_t from, to;
    jr__entry_cb cb;
    void *arg;
    int done;
    uint64_t last;   /* seq of the last entry parsed */
    int64_t last_ts; /* and its timestamp */
};

static int iter_filter(const struct jr_entry *e, const uint8_t *raw,
                       size_t rl, void *a)
{
    struct iter *t = a;
    if (e->seq > t->to) {
        t->done = 1;
        return 1;
    }
    if (e->seq >= t->from) {
        int r = t->cb(e, raw, rl, t->arg);
        if (r) return r;
    }
    t->last = e->seq;
    t->last_ts = e->ts_ns;
    return 0;
}

int jr__journal_iter(st_store *st, const char *vol, const struct jr__hdr *h,
                     uint64_t from, uint64_t to, jr__entry_cb cb, void *arg)
{
    return jr__journal_iter_bad(st, vol, h, from, to, cb, arg, NULL);
}

int jr__journal_iter_bad(st_store *st, const char *vol,
                         const struct jr__hdr *h, uint64_t from, uint64_t to,
                         jr__entry_cb cb, void *arg, struct jr__bad *bad)
{
    if (bad) memset(bad, 0, sizeof *bad);
    for (size_t i = 0; i < h->nj; i++) {
        const struct jr__jobj *j = &h->j[i];
        uint64_t last = i + 1 < h->nj ? h->j[i + 1].first - 1 : UINT64_MAX;
        if (last < from || j->first > to) continue;
        if (i + 1 < h->nj && h->j[i + 1].first <= j->first) return JR_ECORRUPT;
        uint8_t *buf;
        size_t len;
        int r = jr__jobj_load(st, vol, j->n, &buf, &len);
        if (r == -ENOENT) {
            /* Trimmed under us, or an index entry whose object was never
             * written (a crash while starting it: only possible last). */
            if (i + 1 < h->nj) return JR_ETRIMMED;
            return 0;
        }
        if (r < 0) return r;
        struct iter it = {from, to, cb, arg, 0, j->first - 1, 0};
        r = jobj_parse(vol, j->n, buf, len, j->first, iter_filter, &it, bad);
        free(buf);
        if (it.done) return 0;
        if (r) return r;
        /* R-21 across objects: this one ends right before the next. */
        if (i + 1 < h->nj && it.last + 1 != h->j[i + 1].first) {
            tlog_error("journal.corrupt",
                       "vol=%s object=%016" PRIx64 " offset=%zu last_seq=%"
                       PRIu64 " next_first=%" PRIu64
                       " why=\"objects do not join (R-21)\"",
                       vol, j->n, len, it.last, h->j[i + 1].first);
            bad_set(bad, it.last + 1, j->n, len, it.last_ts,
                    "objects do not join (R-21)");
            return JR_ECORRUPT;
        }
    }
    return 0;
}

/* ---- ops with owned data ---- */

int jr__check_range(const struct jr_entry *e, uint64_t *size)
{
    switch (e->kind) {
    case JR_K_WRITE:
    case JR_K_ZERO:
        if (e->off + e->len > *size) return JR_ECORRUPT; /* */
        return 0;
    case JR_K_RESIZE:
        *size = e->off;
        return 0;
    }
    return 0;
}

int jr__opbuf_add(struct jr__opbuf *b, const struct jr_entry *e)
{
    if (b->n == b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 64;
        struct jr__op *n = realloc(b->ops, nc * sizeof *n);
        if (!n) return -ENOMEM;
        b->ops = n;
        b->cap = nc;
    }
    struct jr__op *o = &b->ops[b->n];
    o->kind = e->kind;
    o->seq = e->seq;
    o->off = e->off;
    o->len = e->len;
    o->data = NULL;
    o->ts_ns = e->ts_ns;
    if (e->kind == JR_K_SNAP || e->kind == JR_K_SNAP_DEL) {
        /* the payload (id, label) travels with the op. */
        uint8_t *d = malloc(e->plen ? e->plen : 1);
        if (!d) return -ENOMEM;
        memcpy(d, e->payload, e->plen);
        o->data = d;
        o->len = e->plen;
    } else if (e->kind == JR_K_WRITE) {
        uint8_t *d = malloc(e->len);
        if (!d) return -ENOMEM;
        int r = jr__entry_data(e, d);
        if (r < 0) {
            free(d);
            return r;
        }
        o->data = d;
        b->bytes += e->len;
    }
    b->n++;
    return 0;
}

void jr__opbuf_reset(struct jr__opbuf *b)
{
    for (size_t i = 0; i < b->n; i++) free((void *)b->ops[i].data);
    b->n = 0;
    b->bytes = 0;
}

/* ---- image ---- */

int jr__image_read(st_store *st, const char *vol, uint32_t objsz,
                   uint64_t off, void *buf, size_t len)
{
    uint8_t *p = buf;
    char oid[JR_OID_MAX];
    while (len > 0) {
        uint64_t objno = off / objsz;
        uint64_t in = off % objsz;
        size_t n = objsz - in;
        if (n > len) n = len;
        jr__oid_data(oid, sizeof oid, vol, objno);
        ssize_t got = st_read(st, oid, in, p, n);
        if (got == -ENOENT) got = 0; /* sparse */
        if (got < 0) return (int)got;
        if ((size_t)got < n) memset(p + got, 0, n - (size_t)got);
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

/* One data object's pending changes during a coalesced apply: extents
 * sorted by offset, never overlapping; a later op replaces what an earlier
 * one wrote in its range (so overwrites merge into one store write). */
struct ext {
    uint64_t off, len;
    const uint8_t *data; /* NULL: zeros */
};
struct objx {
    uint64_t objno;
    struct ext *e;
    size_t n, cap;
};

static int ext_insert(struct objx *o, uint64_t off, uint64_t len,
                      const uint8_t *data)
{
    uint64_t end = off + len;
    /* Worst case: one extent split in two, plus the new one. */
    if (o->n + 2 > o->cap) {
        size_t nc = o->cap ? o->cap * 2 : 8;
        while (nc < o->n + 2) nc *= 2;
        struct ext *ne = realloc(o->e, nc * sizeof *ne);
        if (!ne) return -ENOMEM;
        o->e = ne;
        o->cap = nc;
    }
    /* Fast path: appending after the last extent (sequential writes). */
    if (o->n == 0 || o->e[o->n - 1].off + o->e[o->n - 1].len <= off) {
        o->e[o->n++] = (struct ext){off, len, data};
        return 0;
    }
    struct ext *out = malloc((o->n + 2) * sizeof *out);
    if (!out) return -ENOMEM;
    size_t k = 0, i = 0;
    int placed = 0;
    for (; i < o->n; i++) {
        struct ext x = o->e[i];
        uint64_t xe = x.off + x.len;
        if (xe <= off) {
            out[k++] = x;
            continue;
        }
        if (x.off >= end) {
            if (!placed) {
                out[k++] = (struct ext){off, len, data};
                placed = 1;
            }
            out[k++] = x;
            continue;
        }
        /* overlap: keep the parts outside [off, end) */
        if (x.off < off)
            out[k++] = (struct ext){x.off, off - x.off, x.data};
        if (!placed) {
            out[k++] = (struct ext){off, len, data};
            placed = 1;
        }
        if (xe > end) {
            struct ext t = {end, xe - end,
                            x.data ? x.data + (end - x.off) : NULL};
            out[k++] = t;
        }
    }
    if (!placed) out[k++] = (struct ext){off, len, data};
    size_t ncap = o->n + 2;
    free(o->e);
    o->e = out;
    o->n = k;
    o->cap = ncap;
    return 0;
}

void jr__aio_init(struct jr__aio *g, int ignore)
{
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->pending = 0;
    g->err = 0;
    g->ignore = ignore;
}

static void aio_done(int result, void *arg)
{
    struct jr__aio *g = arg;
    pthread_mutex_lock(&g->mu);
    if (result < 0 && result != g->ignore && !g->err) g->err = result;
    g->pending--;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

int jr__aio_submit(struct jr__aio *g, st_store *st, const char *oid,
                   st_wop *op)
{
    /* Counted before the call: the callback may run before it returns. */
    pthread_mutex_lock(&g->mu);
    g->pending++;
    pthread_mutex_unlock(&g->mu);
    int r = st_aio_operate(st, oid, op, aio_done, g);
    if (r < 0) {
        pthread_mutex_lock(&g->mu);
        g->pending--;
        pthread_mutex_unlock(&g->mu);
    }
    return r;
}

int jr__aio_wait(struct jr__aio *g)
{
    pthread_mutex_lock(&g->mu);
    while (g->pending > 0) pthread_cond_wait(&g->cv, &g->mu);
    int r = g->err;
    pthread_mutex_unlock(&g->mu);
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    return r;
}

static int cmp_objx(const void *a, const void *b)
{
    const struct objx *x = a, *y = b;
    return x->objno < y->objno ? -1 : x->objno > y->objno;
}

/* Emit the collected extents: one store operation per data object, all in
 * flight at once (st_aio_operate), then wait. */
/* Object operations of one flush: built first, then issued. */
struct objop {
    char oid[JR_OID_MAX];
    st_wop *op;   /* NULL: remove the object (unguarded flushes only) */
    int result;
};

struct issue {
    st_store *st;
    struct objop *ops;
    size_t n;
    size_t next; /* under mu */
    pthread_mutex_t mu;
};

static void *issue_worker(void *arg)
{
    struct issue *is = arg;
    for (;;) {
        pthread_mutex_lock(&is->mu);
        size_t i = is->next++;
        pthread_mutex_unlock(&is->mu);
        if (i >= is->n) break;
        struct objop *o = &is->ops[i];
        if (!o->op) {
            o->result = st_remove(is->st, o->oid);
            if (o->result == -ENOENT) o->result = 0;
        } else {
            o->result = st_wop_operate(is->st, o->oid, o->op);
            if (o->result == -ENOENT) o->result = 0; /* guarded remove */
        }
    }
    return NULL;
}

/* Issue every object operation at once.  rados: asynchronous operations,
 * overlapped by the cluster.  sqlite runs aio inline, so the operations
 * are issued from a few threads instead: its store then commits
 * concurrent operations together in one transaction (one fsync). */
static int issue_all(st_store *st, struct objop *ops, size_t n)
{
    if (n == 0) return 0;
    int r = 0;
    if (strcmp(st_backend(st), "sqlite") == 0 && n > 1) {
        struct issue is = {st, ops, n, 0, PTHREAD_MUTEX_INITIALIZER};
        pthread_t th[8];
        size_t nt = n < 8 ? n : 8, started = 0;
        for (; started < nt - 1; started++)
            if (pthread_create(&th[started], NULL, issue_worker, &is)) break;
        issue_worker(&is);
        for (size_t i = 0; i < started; i++) pthread_join(th[i], NULL);
        for (size_t i = 0; i < n; i++)
            if (ops[i].result < 0 && !r) r = ops[i].result;
        return r;
    }
    struct jr__aio w;
    jr__aio_init(&w, -ENOENT); /* a guarded remove of a missing object */
    for (size_t i = 0; i < n; i++) {
        struct objop *o = &ops[i];
        if (!o->op) {
            int rr = st_remove(st, o->oid);
            if (rr < 0 && rr != -ENOENT && !r) r = rr;
            continue;
        }
        st_wop *op = o->op;
        o->op = NULL; /* consumed by st_aio_operate */
        int rr = jr__aio_submit(&w, st, o->oid, op);
        if (rr < 0) {
            if (!r) r = rr;
            break;
        }
    }
    int rw = jr__aio_wait(&w);
    return r ? r : rw;
}

static int flush_objs(st_store *st, const char *vol, uint32_t objsz,
                      struct objx *objs, size_t nobj, const struct jr__guard *g,
                      struct jr__cow *cow, uint64_t at)
{
    struct objop *ops = calloc(nobj ? nobj : 1, sizeof *ops);
    if (!ops) return -ENOMEM;
    size_t n = 0;
    int r = 0;
    /* every object this flush changes is preserved for the newest
     * snapshot before `at` first (all copies done before any change). */
    if (cow && nobj) {
        uint64_t *nos = malloc(nobj * sizeof *nos);
        int *cr = malloc(nobj * sizeof *cr);
        size_t m = 0;
        if (!nos || !cr) r = -ENOMEM;
        for (size_t i = 0; r == 0 && i < nobj; i++) {
            struct objx *o = &objs[i];
            if (o->n == 0) continue;
            int creates = 0; /* zeros alone never create a missing object */
            for (size_t k = 0; k < o->n && !creates; k++)
                creates = o->e[k].data != NULL;
            nos[m] = o->objno;
            cr[m++] = creates;
        }
        if (r == 0 && m)
            r = jr__cow_preserve_many(st, vol, objsz, cow, at, nos, cr, m, g);
        free(nos);
        free(cr);
    }
    for (size_t i = 0; i < nobj && r == 0; i++) {
        struct objx *o = &objs[i];
        if (o->n == 0) continue;
        struct objop *x = &ops[n++];
        jr__oid_data(x->oid, sizeof x->oid, vol, o->objno);
        int drop = o->n == 1 && !o->e[0].data && o->e[0].off == 0 &&
                   o->e[0].len == objsz; /* a whole object of zeros */
        if (drop && !g) continue; /* removed without an op */
        if (!(x->op = st_wop_create())) {
            r = -ENOMEM;
            break;
        }
        jr__guard_add(x->op, vol, x->oid, g);
        if (drop) {
            st_wop_remove(x->op);
            continue;
        }
        for (size_t k = 0; k < o->n; k++) {
            struct ext *e = &o->e[k];
            if (e->data)
                st_wop_write(x->op, e->off, e->data, e->len);
            else
                st_wop_zero(x->op, e->off, e->len);
        }
    }
    if (r == 0) r = issue_all(st, ops, n);
    for (size_t i = 0; i < n; i++) st_wop_destroy(ops[i].op);
    free(ops);
    return r;
}

static struct objx *objx_get(struct objx **objs, size_t *n, size_t *cap,
                             uint64_t objno, size_t *hint)
{
    /* Ops usually hit few objects; a linear probe from the last hit is
     * enough (the list is sorted once before flushing). */
    if (*hint < *n && (*objs)[*hint].objno == objno) return &(*objs)[*hint];
    for (size_t i = 0; i < *n; i++)
        if ((*objs)[i].objno == objno) {
            *hint = i;
            return &(*objs)[i];
        }
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        struct objx *no = realloc(*objs, nc * sizeof *no);
        if (!no) return NULL;
        *objs = no;
        *cap = nc;
    }
    (*objs)[*n] = (struct objx){.objno = objno};
    *hint = *n;
    return &(*objs)[(*n)++];
}

/* One guarded (g != NULL) or plain remove/truncate of a data object. */
static int obj_cut(st_store *st, const char *vol, const char *oid, int remove,
                   uint64_t size, const struct jr__guard *g)
{
    st_wop *op = st_wop_create();
    if (!op) return -ENOMEM;
    jr__guard_add(op, vol, oid, g);
    if (remove) st_wop_remove(op);
    else st_wop_truncate(op, size);
    int r = st_wop_operate(st, oid, op);
    st_wop_destroy(op);
    return r;
}

static int shrink(st_store *st, const char *vol, uint32_t objsz,
                  uint64_t old_size, uint64_t new_size,
                  const struct jr__guard *g, struct jr__cow *cow, uint64_t at)
{
    char oid[JR_OID_MAX];
    uint64_t first_gone = (new_size + objsz - 1) / objsz;
    uint64_t end = (old_size + objsz - 1) / objsz;
    for (uint64_t o = first_gone; o < end; o++) {
        jr__oid_data(oid, sizeof oid, vol, o);
        /* a removal changes the object too (a missing one is left
         * as it is: nothing to preserve). */
        int r = cow ? jr__cow_preserve(st, vol, objsz, cow, at, o, 0, g) : 0;
        if (r < 0) return r;
        r = obj_cut(st, vol, oid, 1, 0, g);
        if (r < 0 && r != -ENOENT) return r;
    }
    if (new_size % objsz) {
        jr__oid_data(oid, sizeof oid, vol, new_size / objsz);
        uint64_t sz = 0;
        int r = st_stat(st, oid, &sz, NULL);
        if (r == -ENOENT) return 0;
        if (r < 0) return r;
        if (sz > new_size % objsz) {
            r = cow ? jr__cow_preserve(st, vol, objsz, cow, at,
                                       new_size / objsz, 0, g) : 0;
            if (r < 0) return r;
            r = obj_cut(st, vol, oid, 0, new_size % objsz, g);
            if (r < 0) return r;
        }
    }
    return 0;
}

int jr__image_apply(st_store *st, const char *vol, uint32_t objsz,
                    const struct jr__op *ops, size_t n, uint64_t *size)
{
    return jr__image_apply_cow(st, vol, objsz, ops, n, size, NULL, NULL);
}

int jr__image_apply_g(st_store *st, const char *vol, uint32_t objsz,
                      const struct jr__op *ops, size_t n, uint64_t *size,
                      const struct jr__guard *g)
{
    return jr__image_apply_cow(st, vol, objsz, ops, n, size, g, NULL);
}

/* Ops from the journal carry their seq; a region copy's (seq 0) lie after
 * every snapshot. */
static uint64_t op_at(const struct jr__op *op)
{
    return op->seq ? op->seq : UINT64_MAX;
}

int jr__image_apply_cow(st_store *st, const char *vol, uint32_t objsz,
                        const struct jr__op *ops, size_t n, uint64_t *size,
                        const struct jr__guard *g, struct jr__cow *cow_in)
{
    struct jr__cow local = {0}, *cow = cow_in ? cow_in : &local;
    struct objx *objs = NULL;
    size_t nobj = 0, cap = 0, hint = 0;
    uint64_t at = 0; /* position of the ops collected in objs */
    int r = 0;
    for (size_t i = 0; i <= n && r == 0; i++) {
        const struct jr__op *op = i < n ? &ops[i] : NULL;
        if (!op || op->kind == JR_K_RESIZE || op->kind == JR_K_SNAP ||
            op->kind == JR_K_SNAP_DEL) {
            /* A resize or a snapshot is a barrier: everything before it
             * first (a batch holding a snapshot is applied in two parts
             * around it, R-63). */
            if (nobj) {
                qsort(objs, nobj, sizeof *objs, cmp_objx);
                r = flush_objs(st, vol, objsz, objs, nobj, g, cow, at);
                for (size_t k = 0; k < nobj; k++) free(objs[k].e);
                nobj = 0;
                hint = 0;
            }
            if (op && r == 0 && op->kind == JR_K_RESIZE) {
                if (op->off < *size)
                    r = shrink(st, vol, objsz, *size, op->off, g, cow,
                               op_at(op));
                *size = op->off;
            } else if (op && r == 0) {
                r = jr__snap_apply(st, vol, objsz, cow, op, *size, g);
            }
            continue;
        }
        if (op->kind != JR_K_WRITE && op->kind != JR_K_ZERO) continue;
        if (!nobj) at = op_at(op);
        uint64_t off = op->off, left = op->len;
        const uint8_t *d = op->data;
        while (left > 0) {
            uint64_t objno = off / objsz, in = off % objsz;
            uint64_t m = objsz - in;
            if (m > left) m = left;
            struct objx *o = objx_get(&objs, &nobj, &cap, objno, &hint);
            if (!o) {
                r = -ENOMEM;
                break;
            }
            r = ext_insert(o, in, m, d);
            if (r) break;
            off += m;
            left -= m;
            if (d) d += m;
        }
    }
    for (size_t k = 0; k < nobj; k++) free(objs[k].e);
    free(objs);
    if (!cow_in) jr__cow_reset(&local);
    return r;
}
