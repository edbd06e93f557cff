/*
 * jr_tail.c: the replicator's side of the engine: reading a primary's
 * journal batch by batch (jr_tail_read; the batch bytes are the stored
 * entries, FORMAT.md §3, which is also the wire format) and applying
 * batches to a secondary (jr_apply: verify everything, journal the new
 * entries locally, apply them to the image coalesced, record applied;
 * the journal appends and the image writes of one batch are pipelined in
 * chunks, journal first for every chunk).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jr_int.h"

#define JOBJ_TARGET (4u << 20) /* start a new journal object past this */
#define APPLY_CHUNK (8u << 20) /* bytes of entries per journal append */
/* Smallest chunk of a batch's pipeline (a batch is cut in about four):
 * below it a store operation's fixed cost outweighs the overlap. */
#define PIPE_CHUNK_MIN (2u << 20)

struct tailarg {
    struct jr_batch *b;
    size_t cap;
    size_t max_bytes;
    int full;
};

static int tail_cb(const struct jr_entry *e, const uint8_t *raw, size_t rl,
                   void *arg)
{
    struct tailarg *t = arg;
    struct jr_batch *b = t->b;
    if (b->n_entries > 0 && b->len + rl > t->max_bytes) {
        t->full = 1;
        return 1;
    }
    if (b->len + rl > t->cap) {
        size_t nc = t->cap ? t->cap * 2 : 65536;
        while (nc < b->len + rl) nc *= 2;
        uint8_t *nd = realloc(b->data, nc);
        if (!nd) return -ENOMEM;
        b->data = nd;
        t->cap = nc;
    }
    memcpy(b->data + b->len, raw, rl);
    b->len += rl;
    if (b->n_entries == 0) {
        b->first_seq = e->seq;
        b->oldest_ts_ns = e->ts_ns;
    }
    b->last_seq = e->seq;
    b->n_entries++;
    b->raw_bytes += e->kind == JR_K_WRITE ? e->len : 0;
    return 0;
}

int jr_tail_read(st_store *st, const char *vol_id, uint64_t from_seq,
                 size_t max_bytes, struct jr_batch *out)
{
    if (!st || !out) return -EINVAL;
    memset(out, 0, sizeof *out);
    struct jr__hdr h;
    int r = jr__hdr_load(st, vol_id, &h);
    if (r < 0) return r;
    uint64_t head;
    r = jr__head(st, vol_id, &h, &head, NULL);
    if (r < 0) goto out;
    if (from_seq == 0) from_seq = 1;
    if (from_seq > head) goto out; /* nothing new */
    uint64_t tail = h.nj ? h.j[0].first : h.tail;
    if (from_seq < tail) {
        r = JR_ETRIMMED;
        goto out;
    }
    struct tailarg t = {out, 0, max_bytes ? max_bytes : 1, 0};
    r = jr__journal_iter(st, vol_id, &h, from_seq, head, tail_cb, &t);
    if (r == 1) r = 0;
    if (r < 0 && out->n_entries > 0 && r != -ENOMEM) {
        /* Hand out what verified before the bad entry; the next call
         * starts at it and reports it (R-6: never skip). */
        r = 0;
    }
    if (r == 0 && out->n_entries == 0 && from_seq <= head) {
        /* The index says entries exist but none came back: trimmed. */
        r = JR_ETRIMMED;
    }
out:
    jr__hdr_free(&h);
    if (r < 0) jr_batch_free(out);
    return r;
}

void jr_batch_free(struct jr_batch *b)
{
    if (!b) return;
    free(b->data);
    memset(b, 0, sizeof *b);
}

/* ---- applying on the secondary ---- */

struct collect {
    struct jr__opbuf ops;
    uint64_t size;
    int err;
};

static int collect_cb(const struct jr_entry *e, const uint8_t *raw, size_t rl,
                      void *arg)
{
    struct collect *c = arg;
    int r = jr__check_range(e, &c->size);
    if (r < 0) return r;
    return jr__opbuf_add(&c->ops, e);
}

/* The journal ended before head (its last object is short or missing):
 * the first missing entry is the damage. */
void jr__bad_missing(st_store *st, const char *vol, const struct jr__hdr *h,
                     uint64_t seq, struct jr__bad *bad)
{
    uint64_t sz = 0;
    char oid[JR_OID_MAX];
    memset(bad, 0, sizeof *bad);
    bad->seq = seq;
    if (h->nj) {
        bad->jno = h->j[h->nj - 1].n;
        jr__oid_journal(oid, sizeof oid, vol, bad->jno);
        if (st_stat(st, oid, &sz, NULL) == 0) bad->off = sz;
    }
    snprintf(bad->why, sizeof bad->why, "entries missing before head (R-5)");
    tlog_error("journal.corrupt", "vol=%s object=%016" PRIx64 " offset=%"
               PRIu64 " expect_seq=%" PRIu64 " why=\"%s\"", vol, bad->jno,
               bad->off, seq, bad->why);
}

/* Record where the journal is damaged: the header's "damage" key,
 * for jr_volume_stat, until jr_journal_discard (or a rebase) removes it. */
static int damage_record(st_store *st, const char *vol,
                         const struct jr__guard *g, const struct jr__bad *bad)
{
    char oid[JR_OID_MAX], val[160];
    jr__oid_header(oid, sizeof oid, vol);
    int n = snprintf(val, sizeof val, "%" PRIu64 " %016" PRIx64 " %" PRIu64
                     " %s", bad->seq, bad->jno, bad->off, bad->why);
    st_wop *op = st_wop_create();
    if (!op) return -ENOMEM;
    jr__guard_add(op, vol, oid, g);
    st_wop_omap_set(op, "damage", val, (size_t)n);
    int r = st_wop_operate(st, oid, op);
    st_wop_destroy(op);
    return r;
}

int jr__replay(st_store *st, const char *vol, struct jr__hdr *h,
               uint64_t head, uint64_t *size_out)
{
    return jr__replay_g(st, vol, h, head, NULL, NULL, size_out);
}

/* Replay entries (applied, head] of the local journal onto the image and
 * record applied.  Used by jr_apply (after a crash between its journal
 * append and its image writes) and by jr_open.  A damaged entry stops it
 * after the entries before it were applied and recorded. */
int jr__replay_g(st_store *st, const char *vol, struct jr__hdr *h,
                 uint64_t head, const struct jr__guard *g,
                 struct jr__bad *bad_out, uint64_t *size_out)
{
    struct jr__bad bad_local, *bad = bad_out ? bad_out : &bad_local;
    memset(bad, 0, sizeof *bad);
    if (head <= h->applied) { /* nothing to replay: leave size alone */
        if (size_out) *size_out = h->size;
        return 0;
    }
    struct collect c = {{0}, h->applied_size, 0};
    int r = 0, damaged = 0;
    uint64_t from = h->applied + 1, done = h->applied;
    uint64_t size_done = h->applied_size;
    while (from <= head && r == 0 && !damaged) {
        /* Bound memory: replay at most ~64 MiB of data per round. */
        uint64_t to = from + 4095 > head ? head : from + 4095;
        uint64_t size_before = c.size;
        r = jr__journal_iter_bad(st, vol, h, from, to, collect_cb, &c, bad);
        if (r == JR_ECORRUPT && bad->seq) {
            damaged = 1; /* c.ops: the entries before it, from `from` on */
            r = 0;
        } else if (r == 0 && c.ops.n != to - from + 1) {
            jr__bad_missing(st, vol, h, from + c.ops.n, bad);
            damaged = 1;
        }
        if (r == 0 && c.ops.n)
            r = jr__image_apply_g(st, vol, h->objsz, c.ops.ops, c.ops.n,
                                  &size_before, g);
        if (r == 0 && c.ops.n) {
            done = from + c.ops.n - 1;
            size_done = c.size;
        }
        jr__opbuf_reset(&c.ops);
        from = to + 1;
    }
    free(c.ops.ops);
    if (r < 0) {
        tlog_error("journal.replay_failed", "vol=%s applied=%" PRIu64
                   " head=%" PRIu64 " err=\"%s\"", vol, h->applied, head,
                   jr_strerror(r));
        return r;
    }
    if (done > h->applied) {
        char raw[64];
        r = jr__applied_set(st, vol, g, h->applied_raw, done, size_done, 1,
                            raw, sizeof raw);
        if (r < 0) return r;
        tlog_info("journal.replayed", "vol=%s from=%" PRIu64 " to=%" PRIu64,
                  vol, h->applied + 1, done);
        free(h->applied_raw);
        h->applied_raw = strdup(raw);
        h->applied = done;
        h->applied_size = size_done;
        h->size = size_done;
    }
    if (damaged) {
        char q[96];
        tlog_error("journal.damaged",
                   "vol=%s seq=%" PRIu64 " object=%016" PRIx64 " offset=%"
                   PRIu64 " why=%s applied=%" PRIu64 " head=%" PRIu64
                   " msg=\"entries before it applied; see jr_journal_discard\"",
                   vol, bad->seq, bad->jno, bad->off,
                   tlog_q(q, sizeof q, bad->why), done, head);
        r = damage_record(st, vol, g, bad);
        return r < 0 ? r : JR_ECORRUPT;
    }
    if (size_out) *size_out = h->size;
    return 0;
}

/* The secondary's last journal object as jr_apply appends to it: read
 * once per batch (its `head`, exactly as stored, and its size), then
 * kept up to date by jst_append, so neither is read again between the
 * chunks of a batch. */
struct jstate {
    int have;          /* a journal object exists (h->nj > 0) */
    uint64_t jno;      /* the last journal object */
    uint64_t jfirst;   /* its first seq (its jidx) */
    uint64_t bytes;    /* its size */
    uint64_t head;     /* last seq journaled (R-5: the replica's head) */
    char hval[96];     /* its `head` value exactly as stored */
    size_t hlen;       /* 0: no `head` key (nothing appended yet) */
};

/* jr__head's rules, plus what the append guard needs. */
static int jst_load(st_store *st, const char *vol, const struct jr__hdr *h,
                    struct jstate *js)
{
    memset(js, 0, sizeof *js);
    js->head = h->base;
    if (h->nj == 0) return 0;
    const struct jr__jobj *j = &h->j[h->nj - 1];
    char oid[JR_OID_MAX];
    jr__oid_journal(oid, sizeof oid, vol, j->n);
    js->have = 1;
    js->jno = j->n;
    js->jfirst = j->first;
    char *val = NULL;
    size_t len = 0;
    int r = st_omap_get(st, oid, "head", &val, &len);
    if (r == -ENOENT) { /* started but nothing appended yet */
        js->head = j->first - 1;
    } else if (r < 0) {
        return r;
    } else {
        uint64_t seq = 0;
        r = jr__parse_u64(val, &seq);
        if (r < 0 || seq + 1 < j->first || len >= sizeof js->hval) {
            free(val);
            return JR_ECORRUPT;
        }
        memcpy(js->hval, val, len);
        js->hval[len] = 0;
        js->hlen = len;
        js->head = seq;
        free(val);
    }
    r = st_stat(st, oid, &js->bytes, NULL);
    if (r == -ENOENT) { /* an index entry whose object was never written */
        js->bytes = 0;
        js->hlen = 0;
        r = 0;
    }
    return r;
}

/* Append encoded entries first..last to the secondary's journal:
 * guarded by the journal object's `head` as js last saw it, so two
 * appliers cannot interleave; a new object is started past JOBJ_TARGET.
 * -EAGAIN: another applier moved the journal (js is then stale). */
static int jst_append(st_store *st, const char *vol, struct jstate *js,
                      const uint8_t *data, size_t len, uint64_t first,
                      uint64_t last, int64_t last_ts)
{
    char hoid[JR_OID_MAX], joid[JR_OID_MAX], key[64], val[96];
    int r;
    if (!js->have || js->bytes >= JOBJ_TARGET) {
        /* Start a new journal object. */
        uint64_t jno = js->have ? js->jno + 1 : 0;
        jr__oid_header(hoid, sizeof hoid, vol);
        st_wop *op = st_wop_create();
        if (!op) return -ENOMEM;
        st_wop_omap_cmp(op, "role", "secondary", 9);
        if (js->have) {
            snprintf(key, sizeof key, "jidx.%016" PRIx64, js->jno);
            int n = snprintf(val, sizeof val, "%" PRIu64 " %" PRIu64 " %" PRIu64,
                             js->jfirst, js->head, js->bytes);
            st_wop_omap_set(op, key, val, (size_t)n);
        }
        snprintf(key, sizeof key, "jidx.%016" PRIx64, jno);
        st_wop_omap_cmp(op, key, NULL, 0);
        int n = snprintf(val, sizeof val, "%" PRIu64, first);
        st_wop_omap_set(op, key, val, (size_t)n);
        r = st_wop_operate(st, hoid, op);
        st_wop_destroy(op);
        if (r == -ECANCELED) return -EAGAIN;
        if (r < 0) return r;
        js->have = 1;
        js->jno = jno;
        js->jfirst = first;
        js->bytes = 0;
        js->hlen = 0;
    }
    jr__oid_journal(joid, sizeof joid, vol, js->jno);
    st_wop *op = st_wop_create();
    if (!op) return -ENOMEM;
    /* The guard is the exact current value of head (absent: none yet). */
    st_wop_omap_cmp(op, "head", js->hlen ? js->hval : NULL, js->hlen);
    st_wop_append(op, data, len);
    int n = snprintf(val, sizeof val, "%" PRIu64 " %" PRId64, last, last_ts);
    st_wop_omap_set(op, "head", val, (size_t)n);
    r = st_wop_operate(st, joid, op);
    st_wop_destroy(op);
    if (r == -ECANCELED) return -EAGAIN;
    if (r < 0) return r;
    js->bytes += len;
    js->head = last;
    memcpy(js->hval, val, (size_t)n + 1);
    js->hlen = (size_t)n;
    return 0;
}

/* A chunk of a verified batch to journal and apply: whole entries. */
struct chunk {
    size_t at, end;
    uint64_t first, last;
    int64_t ts;
};

/* Cut entries [at, len) of p (the first one's seq: first) into chunks of
 * about `piece` bytes (at least one entry; never more than APPLY_CHUNK
 * bytes unless one entry is larger).  *out: malloc'd. */
static int chunks_cut(const uint8_t *p, size_t len, size_t at, uint64_t first,
                      size_t piece, struct chunk **out, size_t *n_out)
{
    size_t n = 0, cap = 0;
    struct chunk *v = NULL;
    while (at < len) {
        struct chunk c = {at, at, first, first - 1, 0};
        while (c.end < len && c.end - c.at < piece) {
            size_t el = JR_HDR_SIZE + jr__get32(p + c.end + 40);
            if (c.end > c.at && c.end - c.at + el > APPLY_CHUNK) break;
            c.ts = (int64_t)jr__get64(p + c.end + 48);
            c.end += el;
            c.last++;
        }
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 8;
            struct chunk *nv = realloc(v, nc * sizeof *nv);
            if (!nv) {
                free(v);
                return -ENOMEM;
            }
            v = nv;
            cap = nc;
        }
        v[n++] = c;
        at = c.end;
        first = c.last + 1;
    }
    *out = v;
    *n_out = n;
    return 0;
}

/* The journal side of a batch's pipeline: appends chunks 1..n-1 in turn
 * (chunk 0 is appended before it starts), ahead of the image writes,
 * which wait for `done` to pass their chunk. */
struct appender {
    st_store *st;
    const char *vol;
    struct jstate *js;
    const uint8_t *p;
    const struct chunk *ch;
    size_t n;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t done; /* chunks journaled */
    int r;       /* the first append failure: no later chunk is appended */
    int stop;    /* the image side failed: append no more */
};

static void *appender_main(void *arg)
{
    struct appender *a = arg;
    for (size_t k = 1; k < a->n; k++) {
        pthread_mutex_lock(&a->mu);
        int stop = a->stop;
        pthread_mutex_unlock(&a->mu);
        if (stop) break;
        const struct chunk *c = &a->ch[k];
        int r = jst_append(a->st, a->vol, a->js, a->p + c->at, c->end - c->at,
                           c->first, c->last, c->ts);
        pthread_mutex_lock(&a->mu);
        if (r < 0) a->r = r;
        else a->done = k + 1;
        pthread_cond_broadcast(&a->cv);
        pthread_mutex_unlock(&a->mu);
        if (r < 0) break;
    }
    return NULL;
}

/* Entries offered again (seq <= the replica's head) must be the ones it
 * has: compared by header CRC, which covers seq, epoch, kind, range and
 * the payload CRC. */
struct dupcheck {
    uint64_t first;
    uint32_t *hcrc; /* by seq - first */
    size_t n;
    uint64_t bad_seq;
};

static int dup_cb(const struct jr_entry *e, const uint8_t *raw, size_t rl,
                  void *arg)
{
    struct dupcheck *d = arg;
    if (e->seq < d->first || e->seq - d->first >= d->n) return 0;
    if (d->hcrc[e->seq - d->first] != e->hcrc) {
        d->bad_seq = e->seq;
        return 1;
    }
    return 0;
}

struct verify {
    uint64_t head;
    uint64_t epoch;
    uint64_t size;
    size_t new_off;      /* byte offset of the first new entry */
    uint64_t first_new;
    uint64_t last;
    int64_t last_ts;
    uint64_t prev_epoch;
    struct jr__opbuf ops;
    struct dupcheck dup;
};

int jr_apply(st_store *st, const char *vol_id, const void *data, size_t len,
             uint64_t *applied_out)
{
    return jr_apply_history(st, vol_id, data, len, 0, applied_out);
}

static int apply_lim(st_store *st, const char *vol_id, const void *data,
                     size_t len, uint64_t history_seq, uint64_t limit,
                     uint64_t *applied_out);

int jr_apply_history(st_store *st, const char *vol_id, const void *data,
                     size_t len, uint64_t history_seq, uint64_t *applied_out)
{
    return apply_lim(st, vol_id, data, len, history_seq, UINT64_MAX,
                     applied_out);
}

int jr_apply_limit(st_store *st, const char *vol_id, const void *data,
                   size_t len, uint64_t history_seq, uint64_t limit,
                   uint64_t *head_out)
{
    return apply_lim(st, vol_id, data, len, history_seq, limit, head_out);
}

/* With limit: entries past it are journaled, not applied (a group's
 * newest complete cut, FORMAT.md R-73); the image catches up through
 * jr_replica_apply_to, which replays them from this journal. */
static int apply_lim(st_store *st, const char *vol_id, const void *data,
                     size_t len, uint64_t history_seq, uint64_t limit,
                     uint64_t *applied_out)
{
    if (!st || (!data && len)) return -EINVAL;
    for (int tries = 0; tries < 5; tries++) {
        struct jr__hdr h;
        int r = jr__hdr_load(st, vol_id, &h);
        if (r < 0) return r;
        struct verify v = {0};
        if (h.role != JR_ROLE_SECONDARY) {
            r = JR_EROLE;
            goto out;
        }
        struct jstate js;
        r = jst_load(st, vol_id, &h, &js);
        if (r < 0) goto out;
        v.head = js.head;
        uint64_t rto = v.head < limit ? v.head : limit;
        if (rto > h.applied) { /* crash between journal and image */
            r = jr__replay(st, vol_id, &h, rto, NULL);
            if (r < 0) goto out;
        }
        /* Verify every entry before applying any (R-10..R-22, R-34). */
        v.size = h.size;
        v.new_off = len;
        const uint8_t *p = data;
        size_t pos = 0;
        uint64_t prev = 0;
        while (pos < len) {
            struct jr_entry e;
            size_t used;
            const char *why = "";
            char q[96];
            r = jr__entry_decode(p + pos, len - pos, &e, &used, &why);
            if (r == 0 && prev && e.seq != prev + 1) {
                why = "sequence gap in batch (R-21)";
                r = JR_EGAP;
            }
            if (r == 0 && e.seq > v.head && !v.first_new &&
                e.seq != v.head + 1) {
                why = "first new entry is not applied+1 (R-21)";
                r = JR_EGAP;
            }
            if (r == 0 && e.seq > v.head && e.seq > history_seq &&
                e.epoch < h.epoch) {
                why = "entry epoch below the volume's (R-22)";
                r = JR_ESTALE;
            }
            if (r == 0 && prev && e.epoch < v.prev_epoch) {
                why = "epoch decreases (R-22)";
                r = JR_ECORRUPT;
            }
            if (r == 0 && e.seq > v.head) {
                r = jr__check_range(&e, &v.size);
                if (r) why = "range beyond the image size (R-34)";
                if (r == 0) {
                    r = jr__opbuf_add(&v.ops, &e); /* R-20 via decompress */
                    if (r == JR_ECORRUPT) why = "bad lz4 payload (R-20)";
                }
            }
            if (r < 0) {
                tlog_error("journal.apply_refused",
                           "vol=%s offset=%zu seq=%" PRIu64 " applied=%" PRIu64
                           " why=%s err=\"%s\"",
                           vol_id, pos, prev + 1, v.head,
                           tlog_q(q, sizeof q, why), jr_strerror(r));
                goto out;
            }
            if (e.seq > v.head && !v.first_new) {
                v.first_new = e.seq;
                v.new_off = pos;
            }
            if (e.seq <= v.head) { /* offered again: remember to compare */
                if (!v.dup.n) v.dup.first = e.seq;
                uint32_t *nh = realloc(v.dup.hcrc, (v.dup.n + 1) * sizeof *nh);
                if (!nh) {
                    r = -ENOMEM;
                    goto out;
                }
                v.dup.hcrc = nh;
                v.dup.hcrc[v.dup.n++] = e.hcrc;
            }
            prev = e.seq;
            v.prev_epoch = e.epoch;
            v.last = e.seq;
            v.last_ts = e.ts_ns;
            pos += used;
        }
        if (v.dup.n) {
            r = jr__journal_iter(st, vol_id, &h, v.dup.first,
                                 v.dup.first + v.dup.n - 1, dup_cb, &v.dup);
            if (r == JR_ETRIMMED) r = 0; /* gone here: cannot compare */
            if (r < 0) goto out;
            if (v.dup.bad_seq) {
                tlog_error("journal.apply_diverged",
                           "vol=%s seq=%" PRIu64 " head=%" PRIu64, vol_id,
                           v.dup.bad_seq, v.head);
                r = JR_EDIVERGED;
                goto out;
            }
            r = 0;
        }
        if (!v.first_new) { /* all already applied: idempotent */
            if (applied_out) *applied_out = v.head;
            r = 0;
            goto out;
        }
        /* Journal the new entries, then apply them to the image, in
         * chunks of whole entries (at most APPLY_CHUNK bytes per store
         * operation, so a journal object never exceeds the store's object
         * size limit), pipelined: a thread appends the chunks to the
         * journal one after the other while this one writes the image of
         * each chunk once it is journaled.  So every entry is in the
         * journal before any of its image writes (a crash in between is
         * replayed), the image is written in seq order (chunk k's writes
         * complete before chunk k+1's start; snapshots' copy-ups, R-63,
         * run inside each chunk's flush before its writes), and applying
         * a batch costs about the longer of the two write streams, not
         * their sum.  applied is recorded once, at the end. */
        uint64_t size = h.size;
        int gated = limit < v.last; /* a group's cut holds the image back */
        struct chunk *ch = NULL;
        size_t nch = 0;
        size_t piece = (len - v.new_off) / 4;
        if (piece < PIPE_CHUNK_MIN) piece = PIPE_CHUNK_MIN;
        /* sqlite commits one write transaction at a time: the two stages
         * would not overlap, and every extra chunk costs a commit (an
         * fsync).  One chunk per APPLY_CHUNK there, as before. */
        if (strcmp(st_backend(st), "sqlite") == 0) piece = APPLY_CHUNK;
        r = chunks_cut(p, len, v.new_off, v.head + 1, piece, &ch, &nch);
        if (r < 0) goto out;
        r = jst_append(st, vol_id, &js, p + ch[0].at, ch[0].end - ch[0].at,
                       ch[0].first, ch[0].last, ch[0].ts);
        if (r == -EAGAIN) { /* another applier moved: start over */
            free(ch);
            jr__opbuf_reset(&v.ops);
            free(v.ops.ops);
            free(v.dup.hcrc);
            jr__hdr_free(&h);
            continue;
        }
        if (r < 0) {
            free(ch);
            goto out;
        }
        struct appender a = {.st = st, .vol = vol_id, .js = &js, .p = p,
                             .ch = ch, .n = nch, .done = 1};
        pthread_mutex_init(&a.mu, NULL);
        pthread_cond_init(&a.cv, NULL);
        pthread_t th;
        int started = nch > 1 && pthread_create(&th, NULL, appender_main, &a) == 0;
        if (nch > 1 && !started) appender_main(&a); /* no thread: in turn */
        struct jr__cow cow = {0};
        size_t opi = 0;
        for (size_t k = 0; k < nch && r == 0; k++) {
            pthread_mutex_lock(&a.mu);
            while (a.done <= k && !a.r) pthread_cond_wait(&a.cv, &a.mu);
            r = a.done > k ? 0 : a.r;
            pthread_mutex_unlock(&a.mu);
            if (r < 0) break;
            if (gated) continue; /* journal only */
            size_t nops = (size_t)(ch[k].last - ch[k].first + 1);
            r = jr__image_apply_cow(st, vol_id, h.objsz, v.ops.ops + opi, nops,
                                    &size, NULL, &cow);
            opi += nops;
        }
        pthread_mutex_lock(&a.mu);
        a.stop = 1;
        pthread_mutex_unlock(&a.mu);
        if (started) pthread_join(th, NULL);
        pthread_mutex_destroy(&a.mu);
        pthread_cond_destroy(&a.cv);
        jr__cow_reset(&cow);
        free(ch);
        if (r < 0) goto out;
        if (gated) {
            /* Gated (a group's cut, R-72): the image follows the journal
             * only up to limit; the entries past it stay journaled. */
            jr__hdr_free(&h);
            if ((r = jr__hdr_load(st, vol_id, &h)) < 0) goto out;
            if (limit > h.applied) {
                r = jr__replay(st, vol_id, &h, limit, NULL);
                if (r < 0) goto out;
            }
            if (applied_out) *applied_out = v.last;
            r = 0;
            goto out;
        }
        {
            /* Never back: a concurrent jr_apply may have recorded
             * a later position already; and only while secondary. */
            const struct jr__guard sec = {"role", "secondary"};
            r = jr__applied_set(st, vol_id, &sec, h.applied_raw, v.last, size,
                                size != h.size, NULL, 0);
            if (r == -ECANCELED) r = JR_EROLE;
        }
        if (r == 0 && applied_out) *applied_out = v.last;
        /* Trim what no one needs any more, only when the oldest journal
         * object may be due (jr__trim reads the header again): R-8's
         * limit and the over-cap rule both need its last seq <= applied
         * and, with acks, <= the lowest ack or the journal over its cap. */
        if (r == 0 && h.nj > 1 && h.j[0].closed && h.j[0].last <= v.last) {
            uint64_t closed = 0;
            for (size_t k = 0; k < h.nj; k++) closed += h.j[k].bytes;
            if (!h.n_acks || h.j[0].last <= h.min_ack || h.dirty ||
                closed + js.bytes > h.cap)
                jr__trim(st, vol_id);
        }
    out:
        jr__opbuf_reset(&v.ops);
        free(v.ops.ops);
        free(v.dup.hcrc);
        jr__hdr_free(&h);
        return r;
    }
    return -EAGAIN;
}
