/*
 * jr_snap.c: snapshots (FORMAT.md §5): the header keys, copy-on-write of
 * data objects for the newest snapshot (R-63, called by the image layer
 * in jr_image.c), applying snapshot and snapshot-delete entries at their
 * journal position, reading a snapshot's image, holds
 * and the calls that work on a volume by id from any process
 * through a writer, or through a request to the live one).
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

/* ---- the header key snap.<id> (R-61) ---- */

#define SNAP_PFX "snap."
#define HOLD_PFX "snaphold."
#define REQ_PFX "snapreq."

struct snaprec {
    struct jr_snap s;
    int deleting; /* state "del": its delete entry is being applied */
};

/* "<seq> <size> <ts_ns> <state>[ <label>]": 0 or JR_ECORRUPT. */
static int snap_parse(const char *id, const char *val, size_t len,
                      struct snaprec *o)
{
    memset(o, 0, sizeof *o);
    if (!jr__valid_snap_id(id, strlen(id)) || strlen(val) != len)
        return JR_ECORRUPT;
    snprintf(o->s.snap_id, sizeof o->s.snap_id, "%s", id);
    const char *p = val;
    uint64_t ts = 0;
    int neg = 0;
    if (jr__parse_u64(p, &o->s.seq) < 0 || !(p = strchr(p, ' '))) goto bad;
    if (jr__parse_u64(++p, &o->s.size) < 0 || !(p = strchr(p, ' '))) goto bad;
    if (*++p == '-') {
        neg = 1;
        p++;
    }
    if (jr__parse_u64(p, &ts) < 0 || ts > INT64_MAX || !(p = strchr(p, ' ')))
        goto bad;
    o->s.ts_ns = neg ? -(int64_t)ts : (int64_t)ts;
    p++;
    if (strncmp(p, "ok", 2) == 0) p += 2;
    else if (strncmp(p, "del", 3) == 0) {
        o->deleting = 1;
        p += 3;
    } else goto bad;
    if (*p == ' ') {
        p++;
        if (!*p || !jr__valid_snap_label(p, strlen(p))) goto bad;
        snprintf(o->s.label, sizeof o->s.label, "%s", p);
    } else if (*p) {
        goto bad;
    }
    if (o->s.seq == 0 || o->s.size > JR_MAX_OFFSET) goto bad;
    return 0;
bad:
    tlog_warn("snapshot.key_bad", "snap=%s", id);
    return JR_ECORRUPT;
}

static int snap_format(char *buf, size_t n, const struct jr_snap *s,
                       int deleting)
{
    return snprintf(buf, n, "%" PRIu64 " %" PRIu64 " %" PRId64 " %s%s%s",
                    s->seq, s->size, s->ts_ns, deleting ? "del" : "ok",
                    s->label[0] ? " " : "", s->label);
}

/* One snapshot's record: 0, -ENOENT, JR_ECORRUPT or a store error. */
static int snap_load(st_store *st, const char *vol, const char *id,
                     struct snaprec *o, char **raw)
{
    char hoid[JR_OID_MAX], key[16 + JR_MAX_SNAP_ID];
    jr__oid_header(hoid, sizeof hoid, vol);
    snprintf(key, sizeof key, SNAP_PFX "%s", id);
    char *v = NULL;
    size_t len = 0;
    int r = st_omap_get(st, hoid, key, &v, &len);
    if (r < 0) return r;
    r = snap_parse(id, v, len, o);
    if (r == 0 && raw) *raw = v;
    else free(v);
    return r;
}

struct snapv {
    struct snaprec *v;
    size_t n, cap;
    int err;
};

static int snapv_cb(const char *key, const char *val, size_t len, void *arg)
{
    struct snapv *a = arg;
    struct snaprec rec;
    if (snap_parse(key + strlen(SNAP_PFX), val, len, &rec) < 0) {
        a->err = JR_ECORRUPT;
        return 0; /* reported; the others are still listed */
    }
    if (a->n == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 8;
        struct snaprec *nv = realloc(a->v, nc * sizeof *nv);
        if (!nv) return -ENOMEM;
        a->v = nv;
        a->cap = nc;
    }
    a->v[a->n++] = rec;
    return 0;
}

static int cmp_rec(const void *x, const void *y)
{
    const struct snaprec *a = x, *b = y;
    return a->s.seq < b->s.seq ? -1 : a->s.seq > b->s.seq;
}

/* Every snapshot key (deleting ones too), by seq. */
static int snapv_load(st_store *st, const char *vol, struct snapv *a)
{
    char hoid[JR_OID_MAX];
    jr__oid_header(hoid, sizeof hoid, vol);
    memset(a, 0, sizeof *a);
    int r = st_omap_iter(st, hoid, SNAP_PFX, NULL, 0, snapv_cb, a);
    if (r < 0) {
        free(a->v);
        memset(a, 0, sizeof *a);
        return r;
    }
    if (a->n > 1) qsort(a->v, a->n, sizeof *a->v, cmp_rec);
    return 0;
}

/* ---- copy-on-write (R-63) ---- */

void jr__cow_reset(struct jr__cow *c)
{
    free(c->snaps);
    free(c->set);
    memset(c, 0, sizeof *c);
}

static int set_has(const struct jr__cow *c, uint64_t objno)
{
    if (!c->set_cap) return 0;
    size_t m = c->set_cap - 1;
    for (size_t i = (size_t)(objno * 0x9E3779B97F4A7C15ull) & m;; i = (i + 1) & m) {
        if (c->set[i] == 0) return 0;
        if (c->set[i] == objno + 1) return 1;
    }
}

static int set_add(struct jr__cow *c, uint64_t objno)
{
    if ((c->set_n + 1) * 2 > c->set_cap) {
        size_t nc = c->set_cap ? c->set_cap * 2 : 64;
        uint64_t *ns = calloc(nc, sizeof *ns), *old = c->set;
        if (!ns) return -ENOMEM;
        size_t oc = c->set_cap;
        c->set = ns;
        c->set_cap = nc;
        c->set_n = 0;
        for (size_t i = 0; i < oc; i++)
            if (old[i]) set_add(c, old[i] - 1);
        free(old);
    }
    size_t m = c->set_cap - 1;
    for (size_t i = (size_t)(objno * 0x9E3779B97F4A7C15ull) & m;; i = (i + 1) & m) {
        if (c->set[i] == objno + 1) return 0;
        if (c->set[i] == 0) {
            c->set[i] = objno + 1;
            c->set_n++;
            return 0;
        }
    }
}

static void set_clear(struct jr__cow *c)
{
    if (c->set) memset(c->set, 0, c->set_cap * sizeof *c->set);
    c->set_n = 0;
}

static int cow_load(st_store *st, const char *vol, struct jr__cow *c)
{
    if (c->loaded) return 0;
    struct snapv a;
    int r = snapv_load(st, vol, &a);
    if (r < 0) return r;
    free(c->snaps);
    c->snaps = calloc(a.n ? a.n : 1, sizeof *c->snaps);
    if (!c->snaps) {
        free(a.v);
        return -ENOMEM;
    }
    /* Deleting ones count too: entries before their delete entry may be
     * replayed, and their copies are still where readers look. */
    for (size_t i = 0; i < a.n; i++) {
        snprintf(c->snaps[i].id, sizeof c->snaps[i].id, "%s",
                 a.v[i].s.snap_id);
        c->snaps[i].seq = a.v[i].s.seq;
    }
    c->ns = a.n;
    free(a.v);
    c->loaded = 1;
    return 0;
}

static int cow_add(struct jr__cow *c, const char *id, uint64_t seq)
{
    if (!c->loaded) return 0; /* loaded with it when first needed */
    for (size_t i = 0; i < c->ns; i++)
        if (strcmp(c->snaps[i].id, id) == 0) return 0;
    struct jr__snapent *n = realloc(c->snaps, (c->ns + 1) * sizeof *n);
    if (!n) return -ENOMEM;
    c->snaps = n;
    size_t i = c->ns;
    while (i > 0 && c->snaps[i - 1].seq > seq) {
        c->snaps[i] = c->snaps[i - 1];
        i--;
    }
    snprintf(c->snaps[i].id, sizeof c->snaps[i].id, "%s", id);
    c->snaps[i].seq = seq;
    c->ns++;
    return 0;
}

static void cow_remove(struct jr__cow *c, const char *id)
{
    for (size_t i = 0; i < c->ns; i++)
        if (strcmp(c->snaps[i].id, id) == 0) {
            memmove(&c->snaps[i], &c->snaps[i + 1],
                    (c->ns - i - 1) * sizeof *c->snaps);
            c->ns--;
            break;
        }
    if (strcmp(c->cache_id, id) == 0) {
        c->cache_id[0] = 0;
        set_clear(c);
    }
}

/* Write a preserved copy (exclusive: a copy is never rewritten, R-62).
 * len 0: a hole (the object was missing). */
static int copy_put(st_store *st, const char *vol, const char *oid,
                    const void *buf, size_t len, const struct jr__guard *g)
{
    static const uint8_t none = 0;
    st_wop *op = st_wop_create();
    if (!op) return -ENOMEM;
    jr__guard_add(op, vol, oid, g);
    st_wop_create_excl(op);
    st_wop_write_full(op, len ? buf : &none, len);
    int r = st_wop_operate(st, oid, op);
    st_wop_destroy(op);
    return r == -EEXIST ? 0 : r;
}

/* Read a whole object: *buf malloc'd (len may be 0). */
static int obj_read_all(st_store *st, const char *oid, uint8_t **buf,
                        size_t *len)
{
    uint64_t sz = 0;
    *buf = NULL;
    *len = 0;
    int r = st_stat(st, oid, &sz, NULL);
    if (r < 0) return r;
    if (sz > ST_MAX_OBJECT) return JR_ECORRUPT;
    uint8_t *b = malloc(sz ? sz : 1);
    if (!b) return -ENOMEM;
    ssize_t n = sz ? st_read(st, oid, 0, b, sz) : 0;
    if (n < 0) {
        free(b);
        return (int)n;
    }
    *buf = b;
    *len = (size_t)n;
    return 0;
}

/* The newest snapshot before position at (NULL: none); the cache then
 * names it. */
static const struct jr__snapent *cow_rel(struct jr__cow *c, uint64_t at)
{
    for (size_t i = c->ns; i > 0; i--)
        if (c->snaps[i - 1].seq < at) {
            const struct jr__snapent *rel = &c->snaps[i - 1];
            if (strcmp(c->cache_id, rel->id) != 0) {
                set_clear(c);
                snprintf(c->cache_id, sizeof c->cache_id, "%s", rel->id);
            }
            return rel;
        }
    return NULL;
}

/* One object's copy-up: 1 preserved now or before, 0 nothing to do (a
 * missing object the change does not create), or an error.  The copy is
 * written before the caller changes the live object. */
static int preserve_one(st_store *st, const char *vol, const char *snap,
                        uint64_t objno, int creates, const struct jr__guard *g,
                        int *copied)
{
    char soid[JR_OID_MAX], doid[JR_OID_MAX];
    jr__oid_snapobj(soid, sizeof soid, vol, snap, objno);
    int r = st_stat(st, soid, NULL, NULL);
    if (r == 0) return 1; /* preserved before (replay) */
    if (r != -ENOENT) return r;
    jr__oid_data(doid, sizeof doid, vol, objno);
    uint8_t *buf = NULL;
    size_t len = 0;
    r = obj_read_all(st, doid, &buf, &len);
    if (r == -ENOENT && !creates) return 0; /* stays missing */
    if (r < 0 && r != -ENOENT) return r;
    /* A missing object is preserved as an empty one (a hole, R-62). */
    r = copy_put(st, vol, soid, buf, len, g);
    free(buf);
    if (r < 0) return r;
    *copied = 1;
    return 1;
}

int jr__cow_preserve(st_store *st, const char *vol, uint32_t objsz,
                     struct jr__cow *c, uint64_t at, uint64_t objno,
                     int creates, const struct jr__guard *g)
{
    return jr__cow_preserve_many(st, vol, objsz, c, at, &objno, &creates, 1,
                                 g);
}

struct pjob {
    uint64_t objno;
    int creates;
    int result;
    int copied;
};

struct pwork {
    st_store *st;
    const char *vol;
    const char *snap;
    const struct jr__guard *g;
    struct pjob *jobs;
    size_t n;
    size_t next; /* under mu */
    pthread_mutex_t mu;
};

static void *preserve_worker(void *arg)
{
    struct pwork *w = arg;
    for (;;) {
        pthread_mutex_lock(&w->mu);
        size_t i = w->next++;
        pthread_mutex_unlock(&w->mu);
        if (i >= w->n) break;
        struct pjob *j = &w->jobs[i];
        j->result = preserve_one(w->st, w->vol, w->snap, j->objno, j->creates,
                                 w->g, &j->copied);
    }
    return NULL;
}

int jr__cow_preserve_many(st_store *st, const char *vol, uint32_t objsz,
                          struct jr__cow *c, uint64_t at,
                          const uint64_t *objnos, const int *creates, size_t n,
                          const struct jr__guard *g)
{
    int r = cow_load(st, vol, c);
    if (r < 0) return r;
    const struct jr__snapent *rel = cow_rel(c, at);
    if (!rel) return 0; /* no snapshot before these changes */
    struct pjob one, *jobs = n > 1 ? calloc(n, sizeof *jobs) : &one;
    if (!jobs) return -ENOMEM;
    size_t nj = 0;
    for (size_t i = 0; i < n; i++)
        if (!set_has(c, objnos[i])) /* cached: no store operation */
            jobs[nj++] = (struct pjob){objnos[i], creates[i], 0, 0};
    /* Copies of different objects are independent: a few threads (rados:
     * overlapped round trips; sqlite: concurrent writes commit together). */
    struct pwork w = {st, vol, rel->id, g, jobs, nj, 0,
                      PTHREAD_MUTEX_INITIALIZER};
    pthread_t th[7];
    size_t maxt = objsz > (16u << 20) ? 2 : 8; /* each holds an object */
    size_t nt = nj < maxt ? nj : maxt, started = 0;
    for (; nt > 0 && started < nt - 1; started++)
        if (pthread_create(&th[started], NULL, preserve_worker, &w)) break;
    preserve_worker(&w);
    for (size_t i = 0; i < started; i++) pthread_join(th[i], NULL);
    pthread_mutex_destroy(&w.mu);
    r = 0;
    for (size_t i = 0; i < nj; i++) {
        struct pjob *j = &jobs[i];
        if (j->result < 0) {
            if (!r) r = j->result;
            continue;
        }
        c->copies += (uint64_t)j->copied;
        if (j->result == 1) {
            int rr = set_add(c, j->objno);
            if (rr < 0 && !r) r = rr;
        }
    }
    if (jobs != &one) free(jobs);
    return r;
}

/* ---- applying snapshot entries (R-61, R-65) ---- */

static int payload_split(const struct jr__op *op, char *id, char *label)
{
    size_t n = (size_t)op->len;
    if (!op->data || n < 1 || n > JR_SNAP_PAYLOAD_MAX) return JR_ECORRUPT;
    const uint8_t *sp = memchr(op->data, ' ', n);
    size_t il = sp ? (size_t)(sp - op->data) : n;
    if (!jr__valid_snap_id((const char *)op->data, il)) return JR_ECORRUPT;
    memcpy(id, op->data, il);
    id[il] = 0;
    label[0] = 0;
    if (sp) {
        size_t ll = n - il - 1;
        if (!jr__valid_snap_label((const char *)sp + 1, ll)) return JR_ECORRUPT;
        memcpy(label, sp + 1, ll);
        label[ll] = 0;
    }
    return 0;
}

/* Header update guarded by g and by key == expect (NULL: absent). */
static int hdr_update(st_store *st, const char *vol, const struct jr__guard *g,
                      const char *key, const char *expect, const char *val)
{
    char hoid[JR_OID_MAX];
    jr__oid_header(hoid, sizeof hoid, vol);
    st_wop *op = st_wop_create();
    if (!op) return -ENOMEM;
    jr__guard_add(op, vol, hoid, g);
    st_wop_omap_cmp(op, key, expect, expect ? strlen(expect) : 0);
    if (val) st_wop_omap_set(op, key, val, strlen(val));
    else st_wop_omap_rm(op, key);
    int r = st_wop_operate(st, hoid, op);
    st_wop_destroy(op);
    return r;
}

static int snap_take(st_store *st, const char *vol, struct jr__cow *c,
                     const struct jr__op *op, const char *id,
                     const char *label, uint64_t size,
                     const struct jr__guard *g)
{
    struct snaprec cur;
    char key[16 + JR_MAX_SNAP_ID], val[JR_SNAP_PAYLOAD_MAX + 128];
    snprintf(key, sizeof key, SNAP_PFX "%s", id);
    for (int tries = 0; tries < 3; tries++) {
        int r = snap_load(st, vol, id, &cur, NULL);
        if (r == 0) {
            /* Taken already (replay), or a second entry for the same id
             * (two callers raced): the first one stands. */
            if (cur.s.seq != op->seq)
                tlog_warn("snapshot.duplicate", "vol=%s snap=%s seq=%" PRIu64
                          " kept_seq=%" PRIu64, vol, id, op->seq, cur.s.seq);
            return cow_add(c, id, cur.s.seq);
        }
        if (r != -ENOENT) return r;
        struct jr_snap s = {.seq = op->seq, .size = size, .ts_ns = op->ts_ns};
        snprintf(s.snap_id, sizeof s.snap_id, "%s", id);
        snprintf(s.label, sizeof s.label, "%s", label);
        snap_format(val, sizeof val, &s, 0);
        r = hdr_update(st, vol, g, key, NULL, val);
        if (r == -ECANCELED) continue; /* the key appeared, or fenced */
        if (r < 0) return r;
        tlog_info("snapshot.taken", "vol=%s snap=%s seq=%" PRIu64
                  " size=%" PRIu64, vol, id, op->seq, size);
        return cow_add(c, id, op->seq);
    }
    return -ECANCELED; /* the guard g failed (a fenced writer) */
}

struct holdkeys {
    char k[8][16 + JR_MAX_SNAP_ID + JR_MAX_ID];
    int n;
};

static int holdkeys_cb(const char *key, const char *val, size_t len,
                       void *arg)
{
    struct holdkeys *h = arg;
    if (h->n == 8) return 1; /* the rest on the next round */
    snprintf(h->k[h->n++], sizeof h->k[0], "%s", key);
    return 0;
}

/* A hold taken between a delete's check and its entry's effect would
 * outlive the snapshot, and then hold a later one of the same id: the
 * effect drops them (logged: the holder lost its snapshot). */
static int holds_drop(st_store *st, const char *vol, const char *id,
                      const struct jr__guard *g)
{
    char hoid[JR_OID_MAX], pfx[16 + JR_MAX_SNAP_ID];
    jr__oid_header(hoid, sizeof hoid, vol);
    snprintf(pfx, sizeof pfx, HOLD_PFX "%s.", id);
    for (;;) {
        struct holdkeys h;
        h.n = 0;
        int r = st_omap_iter(st, hoid, pfx, NULL, 0, holdkeys_cb, &h);
        if (r < 0) return r;
        if (h.n == 0) return 0;
        for (int i = 0; i < h.n; i++) {
            tlog_warn("snapshot.hold_dropped", "vol=%s snap=%s holder=%s",
                      vol, id, h.k[i] + strlen(pfx));
            st_wop *op = st_wop_create();
            if (!op) return -ENOMEM;
            jr__guard_add(op, vol, hoid, g);
            st_wop_omap_rm(op, h.k[i]);
            r = st_wop_operate(st, hoid, op);
            st_wop_destroy(op);
            if (r < 0) return r;
        }
    }
}

static int snap_drop(st_store *st, const char *vol, struct jr__cow *c,
                     const char *id, uint64_t at, const struct jr__guard *g)
{
    struct snaprec d;
    char *raw = NULL;
    char key[16 + JR_MAX_SNAP_ID], val[JR_SNAP_PAYLOAD_MAX + 128];
    snprintf(key, sizeof key, SNAP_PFX "%s", id);
    int r = snap_load(st, vol, id, &d, &raw);
    if (r == -ENOENT) { /* deleted already (replay) or never taken */
        cow_remove(c, id);
        return 0;
    }
    if (r < 0) return r;
    if (d.s.seq >= at) {
        /* A snapshot taken after this delete entry: the id was used again
         * and replay met the old delete. */
        free(raw);
        return 0;
    }
    if (!d.deleting) { /* gone for readers from here on */
        snap_format(val, sizeof val, &d.s, 1);
        r = hdr_update(st, vol, g, key, raw, val);
        if (r < 0) goto out;
        free(raw);
        raw = strdup(val);
        if (!raw) {
            r = -ENOMEM;
            goto out;
        }
    }
    /* The snapshot before it keeps what it still needs. */
    struct snapv all;
    if ((r = snapv_load(st, vol, &all)) < 0) goto out;
    const char *prev = NULL;
    char prev_id[JR_MAX_SNAP_ID + 1];
    for (size_t i = 0; i < all.n; i++)
        if (all.v[i].s.seq < d.s.seq) {
            snprintf(prev_id, sizeof prev_id, "%s", all.v[i].s.snap_id);
            prev = prev_id;
        }
    free(all.v);
    char pfx[JR_OID_MAX], poid[JR_OID_MAX];
    snprintf(pfx, sizeof pfx, "vol/%s/s/%s/", vol, id);
    struct jr__names l = {0};
    r = jr__names_list(st, pfx, &l);
    uint64_t moved = 0, removed = 0;
    for (size_t i = 0; r == 0 && i < l.n; i++) {
        const char *hex = l.v[i] + strlen(pfx);
        char *end = NULL;
        uint64_t objno = strtoull(hex, &end, 16);
        if (strlen(hex) != 16 || !end || *end) {
            tlog_warn("snapshot.stray_object", "vol=%s oid=%s", vol, l.v[i]);
            continue;
        }
        if (prev) {
            jr__oid_snapobj(poid, sizeof poid, vol, prev, objno);
            r = st_stat(st, poid, NULL, NULL);
            if (r == -ENOENT) {
                /* Written before the removal below: a reader of prev
                 * looks at this snapshot's copy after prev's. */
                uint8_t *buf = NULL;
                size_t len = 0;
                r = obj_read_all(st, l.v[i], &buf, &len);
                if (r == 0) r = copy_put(st, vol, poid, buf, len, g);
                free(buf);
                if (r < 0) break;
                moved++;
            } else if (r < 0) {
                break;
            }
        }
        st_wop *op = st_wop_create();
        if (!op) {
            r = -ENOMEM;
            break;
        }
        jr__guard_add(op, vol, l.v[i], g);
        st_wop_remove(op);
        r = st_wop_operate(st, l.v[i], op);
        st_wop_destroy(op);
        if (r == -ENOENT) r = 0;
        removed++;
    }
    jr__names_free(&l);
    if (r == 0) r = hdr_update(st, vol, g, key, raw, NULL);
    if (r == 0) r = holds_drop(st, vol, id, g);
    if (r == 0) {
        cow_remove(c, id);
        tlog_info("snapshot.deleted", "vol=%s snap=%s seq=%" PRIu64
                  " moved=%" PRIu64 " removed=%" PRIu64, vol, id, d.s.seq,
                  moved, removed - moved);
    }
out:
    free(raw);
    return r;
}

int jr__snap_apply(st_store *st, const char *vol, uint32_t objsz,
                   struct jr__cow *c, const struct jr__op *op, uint64_t size,
                   const struct jr__guard *g)
{
    (void)objsz;
    char id[JR_MAX_SNAP_ID + 1], label[JR_MAX_SNAP_LABEL + 1];
    int r = payload_split(op, id, label);
    if (r < 0) return r;
    if (op->kind == JR_K_SNAP)
        return snap_take(st, vol, c, op, id, label, size, g);
    return snap_drop(st, vol, c, id, op->seq, g);
}

/* ---- reading (R-64) ---- */

static int vol_exists(st_store *st, const char *vol)
{
    if (!jr__valid_id(vol)) return -EINVAL;
    char hoid[JR_OID_MAX];
    jr__oid_header(hoid, sizeof hoid, vol);
    char *v = NULL;
    size_t len;
    int r = st_omap_get(st, hoid, "format", &v, &len);
    free(v);
    return r;
}

int jr_snap_get(st_store *st, const char *vol_id, const char *snap_id,
                struct jr_snap *out)
{
    if (!st || !snap_id || !jr__valid_snap_id(snap_id, strlen(snap_id)))
        return -EINVAL;
    int r = vol_exists(st, vol_id);
    if (r < 0) return r;
    struct snaprec rec;
    r = snap_load(st, vol_id, snap_id, &rec, NULL);
    if (r < 0) return r;
    if (rec.deleting) return -ENOENT;
    if (out) *out = rec.s;
    return 0;
}

int jr_snap_list(st_store *st, const char *vol_id,
                 int (*cb)(const struct jr_snap *s, void *arg), void *arg)
{
    if (!st || !cb) return -EINVAL;
    int r = vol_exists(st, vol_id);
    if (r < 0) return r;
    struct snapv a;
    if ((r = snapv_load(st, vol_id, &a)) < 0) return r;
    for (size_t i = 0; i < a.n && r == 0; i++)
        if (!a.v[i].deleting) r = cb(&a.v[i].s, arg);
    free(a.v);
    return r;
}

/* Read [in, in + n) of an object into p: 1 found (bytes past its end are
 * zeros), 0 missing, or an error. */
static int obj_read(st_store *st, const char *oid, uint64_t in, uint8_t *p,
                    size_t n)
{
    ssize_t got = st_read(st, oid, in, p, n);
    if (got == -ENOENT) return 0;
    if (got < 0) return (int)got;
    if ((size_t)got < n) memset(p + got, 0, n - (size_t)got);
    return 1;
}

int jr_snap_read(st_store *st, const char *vol_id, const char *snap_id,
                 uint64_t off, void *buf, size_t len)
{
    if (!st || (!buf && len) || !snap_id ||
        !jr__valid_snap_id(snap_id, strlen(snap_id)))
        return -EINVAL;
    struct jr__hdr h;
    int r = jr__hdr_load(st, vol_id, &h);
    if (r < 0) return r;
    uint32_t objsz = h.objsz;
    jr__hdr_free(&h);
    struct jr_snap s;
    if ((r = jr_snap_get(st, vol_id, snap_id, &s)) < 0) return r;
    if (off > s.size || len > s.size - off) return -EINVAL;
    if (len == 0) return 0;
    /* the live image first, then the snapshot list, then the copies
     * from the newest snapshot down to this one, the oldest copy found
     * winning.  A copy-up racing with us is then seen (it is written
     * before the live object changes), and so is a delete moving a copy
     * down (written below before it is removed above). */
    r = jr__image_read(st, vol_id, objsz, off, buf, len);
    if (r < 0) return r;
    struct snapv a;
    if ((r = snapv_load(st, vol_id, &a)) < 0) return r;
    uint8_t *p = buf, *tmp = NULL;
    uint64_t o = off;
    size_t left = len;
    while (left > 0 && r == 0) {
        uint64_t objno = o / objsz, in = o % objsz;
        size_t n = objsz - in;
        if (n > left) n = left;
        for (size_t i = a.n; i > 0 && r == 0; i--) {
            const struct snaprec *x = &a.v[i - 1];
            if (x->s.seq < s.seq) break;
            char oid[JR_OID_MAX];
            jr__oid_snapobj(oid, sizeof oid, vol_id, x->s.snap_id, objno);
            if (!tmp && !(tmp = malloc(objsz))) {
                r = -ENOMEM;
                break;
            }
            int got = obj_read(st, oid, in, tmp, n);
            if (got < 0) r = got;
            else if (got) memcpy(p, tmp, n);
        }
        p += n;
        o += n;
        left -= n;
    }
    free(tmp);
    free(a.v);
    if (r < 0) return r;
    /* Deleted while we read: its copies may have moved away under us. */
    struct jr_snap again;
    r = jr_snap_get(st, vol_id, snap_id, &again);
    if (r == 0 && again.seq != s.seq) r = -ENOENT;
    return r;
}

/* ---- holds (R-67) ---- */

static int hold_key(char *key, size_t n, const char *snap_id,
                    const char *holder)
{
    if (!snap_id || !jr__valid_snap_id(snap_id, strlen(snap_id)) ||
        !jr__valid_id(holder))
        return -EINVAL;
    snprintf(key, n, HOLD_PFX "%s.%s", snap_id, holder);
    return 0;
}

int jr_snap_hold(st_store *st, const char *vol_id, const char *snap_id,
                 const char *holder)
{
    char key[32 + JR_MAX_SNAP_ID + JR_MAX_ID], hoid[JR_OID_MAX];
    if (!st || hold_key(key, sizeof key, snap_id, holder) < 0) return -EINVAL;
    int r = vol_exists(st, vol_id);
    if (r < 0) return r;
    jr__oid_header(hoid, sizeof hoid, vol_id);
    for (int tries = 0; tries < 5; tries++) {
        char *raw = NULL;
        struct snaprec rec;
        r = snap_load(st, vol_id, snap_id, &rec, &raw);
        if (r == 0 && rec.deleting) r = -ENOENT;
        if (r < 0) {
            free(raw);
            return r;
        }
        /* Atomic with the snapshot's existence: a delete that marks it
         * first makes this fail, and one that comes later sees the hold. */
        st_wop *op = st_wop_create();
        if (!op) {
            free(raw);
            return -ENOMEM;
        }
        char k2[16 + JR_MAX_SNAP_ID];
        snprintf(k2, sizeof k2, SNAP_PFX "%s", snap_id);
        st_wop_omap_cmp(op, k2, raw, strlen(raw));
        st_wop_omap_set(op, key, "1", 1);
        r = st_wop_operate(st, hoid, op);
        st_wop_destroy(op);
        free(raw);
        if (r != -ECANCELED) return r;
    }
    return -EAGAIN;
}

int jr_snap_release(st_store *st, const char *vol_id, const char *snap_id,
                    const char *holder)
{
    char key[32 + JR_MAX_SNAP_ID + JR_MAX_ID], hoid[JR_OID_MAX];
    if (!st || hold_key(key, sizeof key, snap_id, holder) < 0) return -EINVAL;
    int r = vol_exists(st, vol_id);
    if (r == -ENOENT) return 0;
    if (r < 0) return r;
    jr__oid_header(hoid, sizeof hoid, vol_id);
    r = st_omap_rm(st, hoid, key);
    return r == -ENOENT ? 0 : r;
}

struct holdarg {
    int (*cb)(const char *holder, void *arg);
    void *arg;
    size_t skip;
};

static int holds_cb(const char *key, const char *val, size_t len, void *arg)
{
    (void)val;
    (void)len;
    struct holdarg *h = arg;
    return h->cb(key + h->skip, h->arg);
}

int jr_snap_holds(st_store *st, const char *vol_id, const char *snap_id,
                  int (*cb)(const char *holder, void *arg), void *arg)
{
    char pfx[32 + JR_MAX_SNAP_ID], hoid[JR_OID_MAX];
    if (!st || !cb || !snap_id || !jr__valid_snap_id(snap_id, strlen(snap_id)))
        return -EINVAL;
    int r = vol_exists(st, vol_id);
    if (r < 0) return r;
    jr__oid_header(hoid, sizeof hoid, vol_id);
    snprintf(pfx, sizeof pfx, HOLD_PFX "%s.", snap_id);
    struct holdarg h = {cb, arg, strlen(pfx)};
    return st_omap_iter(st, hoid, pfx, NULL, 0, holds_cb, &h);
}

static int count_cb(const char *holder, void *arg)
{
    (void)holder;
    (*(int *)arg)++;
    return 0;
}

/* ---- create / delete from any process (R-66) ---- */

/* Is a writer lease recorded?  1 yes, 0 no, or an error. */
static int lease_held(st_store *st, const char *vol)
{
    char hoid[JR_OID_MAX];
    jr__oid_header(hoid, sizeof hoid, vol);
    char *v = NULL;
    size_t len;
    int r = st_omap_get(st, hoid, "lease", &v, &len);
    free(v);
    return r == 0 ? 1 : r == -ENOENT ? 0 : r;
}

static int poll_ms(void)
{
    const char *e = getenv("TANDEM_JR_SNAPREQ_POLL_MS");
    int ms = e ? atoi(e) : 0;
    return ms > 0 ? ms : JR_SNAPREQ_POLL_MS;
}

int jr__snapreq_poll_ms(void) { return poll_ms(); }

/* Leave a request for the live writer and wait for its effect: create
 * (the snapshot exists) or delete (it is gone). */
static int request(st_store *st, const char *vol, const char *snap_id,
                   const char *val, int timeout_ms, struct jr_snap *out)
{
    char hoid[JR_OID_MAX], key[16 + JR_MAX_SNAP_ID];
    int create = val[0] == 'c';
    jr__oid_header(hoid, sizeof hoid, vol);
    snprintf(key, sizeof key, REQ_PFX "%s", snap_id);
    int r = st_omap_set(st, hoid, key, val, strlen(val));
    if (r < 0) return r;
    tlog_info("snapshot.requested", "vol=%s snap=%s op=%s", vol, snap_id,
              create ? "create" : "delete");
    int64_t deadline = tb_mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    int step = poll_ms() / 4 > 0 ? poll_ms() / 4 : 1;
    for (;;) {
        struct jr_snap s;
        r = jr_snap_get(st, vol, snap_id, &s);
        if (create && r == 0) {
            if (out) *out = s;
            return 0;
        }
        if (!create && r == -ENOENT) {
            /* Gone for readers; the writer removes the request once the
             * delete is applied. */
            return 0;
        }
        if (r < 0 && r != -ENOENT) return r;
        if (tb_mono_ms() >= deadline) return -ETIMEDOUT;
        usleep((useconds_t)step * 1000);
    }
}

/* Open the volume writable for the call: 0 with *v, 1 when a writer holds
 * it (ask it instead), or an error. */
static int open_for_call(st_store *st, const char *vol, jr_volume **v)
{
    *v = NULL;
    int r = lease_held(st, vol);
    if (r != 0) return r; /* 1: held; or a store error */
    char owner[64];
    snprintf(owner, sizeof owner, "snap-%d", (int)getpid());
    r = jr_open(st, vol, JR_OPEN_WRITE, owner, v);
    if (r == JR_ELOCKED) return 1; /* someone opened it meanwhile */
    return r;
}

static int check_primary(st_store *st, const char *vol)
{
    struct jr__hdr h;
    int r = jr__hdr_load(st, vol, &h);
    if (r < 0) return r;
    if (h.role != JR_ROLE_PRIMARY) r = JR_EROLE;
    else if (h.damage) r = JR_ECORRUPT; /* never taken over damage */
    jr__hdr_free(&h);
    return r;
}

int jr_snap_create(st_store *st, const char *vol_id, const char *snap_id,
                   const char *label, int timeout_ms, struct jr_snap *out)
{
    uint8_t pl[JR_SNAP_PAYLOAD_MAX];
    if (!st || !jr__valid_id(vol_id) || jr__snap_payload(snap_id, label, pl) < 0)
        return -EINVAL;
    int r = check_primary(st, vol_id);
    if (r < 0) return r;
    if (jr_snap_get(st, vol_id, snap_id, out) == 0) return 0; /* idempotent */
    jr_volume *v = NULL;
    r = open_for_call(st, vol_id, &v);
    if (r == 0) {
        r = jr_snapshot(v, snap_id, label, out);
        int rc = jr_close(v);
        return r < 0 ? r : rc;
    }
    if (r < 0) return r;
    char val[8 + JR_MAX_SNAP_LABEL];
    snprintf(val, sizeof val, "create%s%s", label && *label ? " " : "",
             label ? label : "");
    return request(st, vol_id, snap_id, val, timeout_ms, out);
}

int jr_snap_delete(st_store *st, const char *vol_id, const char *snap_id,
                   int timeout_ms)
{
    if (!st || !jr__valid_id(vol_id) || !snap_id ||
        !jr__valid_snap_id(snap_id, strlen(snap_id)))
        return -EINVAL;
    int r = check_primary(st, vol_id);
    if (r < 0) return r;
    r = jr_snap_get(st, vol_id, snap_id, NULL);
    if (r == -ENOENT) return 0;
    if (r < 0) return r;
    int holds = 0;
    if ((r = jr_snap_holds(st, vol_id, snap_id, count_cb, &holds)) < 0)
        return r;
    if (holds) return -EBUSY;
    jr_volume *v = NULL;
    r = open_for_call(st, vol_id, &v);
    if (r == 0) {
        r = jr__vol_snap_delete(v, snap_id);
        int rc = jr_close(v);
        return r < 0 ? r : rc;
    }
    if (r < 0) return r;
    return request(st, vol_id, snap_id, "delete", timeout_ms, NULL);
}

/* ---- the writer's side of requests (jr_io.c's poller) ---- */

struct reqv {
    char id[16][JR_MAX_SNAP_ID + 1];
    char val[16][8 + JR_MAX_SNAP_LABEL + 1];
    int n;
};

static int req_cb(const char *key, const char *val, size_t len, void *arg)
{
    struct reqv *q = arg;
    if (q->n == 16) return 1; /* the rest next round */
    const char *id = key + strlen(REQ_PFX);
    if (strlen(id) > JR_MAX_SNAP_ID || len > 8 + JR_MAX_SNAP_LABEL) return 0;
    snprintf(q->id[q->n], sizeof q->id[0], "%s", id);
    snprintf(q->val[q->n], sizeof q->val[0], "%.*s", (int)len, val);
    q->n++;
    return 0;
}

int jr__snapreq_serve(jr_volume *v, st_store *st, const char *vol,
                      const struct jr__guard *g)
{
    char hoid[JR_OID_MAX];
    jr__oid_header(hoid, sizeof hoid, vol);
    struct reqv q;
    q.n = 0;
    int r = st_omap_iter(st, hoid, REQ_PFX, NULL, 0, req_cb, &q);
    if (r < 0 && r != 1) return r;
    for (int i = 0; i < q.n; i++) {
        const char *id = q.id[i], *val = q.val[i];
        if (strncmp(val, "create", 6) == 0 && (!val[6] || val[6] == ' ')) {
            r = jr_snapshot(v, id, val[6] ? val + 7 : NULL, NULL);
        } else if (strcmp(val, "delete") == 0) {
            int holds = 0;
            r = jr_snap_holds(st, vol, id, count_cb, &holds);
            if (r == 0 && holds) r = -EBUSY;
            if (r == 0) r = jr__vol_snap_delete(v, id);
        } else {
            r = -EINVAL;
        }
        char key[16 + JR_MAX_SNAP_ID];
        snprintf(key, sizeof key, REQ_PFX "%s", id);
        tlog_info("snapshot.request_served", "vol=%s snap=%s req=%.6s err=%d",
                  vol, id, val, r);
        if (r == -EINVAL || r == -EBUSY || r == 0) {
            /* Done, or never doable: the requester sees the outcome (or
             * times out); a request left in place would be retried. */
            int rr = hdr_update(st, vol, g, key, val, NULL);
            if (rr < 0 && rr != -ECANCELED) return rr;
        } else {
            return r;
        }
    }
    return 0;
}
