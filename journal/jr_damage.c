/*
 * jr_damage.c: a damaged journal tail (FORMAT.md R-37).  An entry after
 * applied that fails its checks (or a journal that ends before its head)
 * is never applied nor skipped: replay (jr_tail.c) applies the entries
 * before it and records where it is, and the volume opens read-only up
 * to it (jr_io.c).  Here: finding it without changing anything
 * (jr_journal_check) and, on the operator's word, giving the tail up from
 * it (jr_journal_discard: a writer's update, under the lease when the
 * volume is a primary).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jr_int.h"

/* ---- checking ---- */

/* What replay would refuse, without applying anything. */
struct vscan {
    uint64_t size;
    uint64_t n;
    uint8_t *scratch; /* JR_MAX_ENTRY_DATA bytes, for LZ4 payloads */
};

static int verify_cb(const struct jr_entry *e, const uint8_t *raw, size_t rl,
                     void *arg)
{
    struct vscan *v = arg;
    int r = jr__check_range(e, &v->size);
    if (r == 0 && e->kind == JR_K_WRITE && (e->flags & JR_F_LZ4))
        r = jr__entry_data(e, v->scratch);
    if (r == 0) v->n++;
    return r;
}

int jr__journal_verify(st_store *st, const char *vol, const struct jr__hdr *h,
                       uint64_t head, struct jr__bad *bad)
{
    memset(bad, 0, sizeof *bad);
    if (head <= h->applied) return 0;
    struct vscan v = {h->applied_size, 0, malloc(JR_MAX_ENTRY_DATA)};
    if (!v.scratch) return -ENOMEM;
    int r = jr__journal_iter_bad(st, vol, h, h->applied + 1, head, verify_cb,
                                 &v, bad);
    free(v.scratch);
    if (r == JR_ECORRUPT && !bad->seq) return r; /* not an entry's fault */
    if (r == 0 && v.n != head - h->applied) {
        jr__bad_missing(st, vol, h, h->applied + 1 + v.n, bad);
        r = JR_ECORRUPT;
    }
    return r;
}

int jr_journal_check(st_store *st, const char *vol_id, struct jr_damage *out)
{
    if (!st || !out || !jr__valid_id(vol_id)) return -EINVAL;
    memset(out, 0, sizeof *out);
    struct jr__hdr h;
    int r = jr__hdr_load(st, vol_id, &h);
    if (r < 0) return r;
    uint64_t head = 0;
    struct jr__bad bad = {0};
    r = jr__head(st, vol_id, &h, &head, NULL);
    if (r == 0) r = jr__journal_verify(st, vol_id, &h, head, &bad);
    out->applied = h.applied;
    out->head = head;
    if (r == JR_ECORRUPT && bad.seq) {
        out->seq = bad.seq;
        out->object = bad.jno;
        out->offset = bad.off;
        snprintf(out->why, sizeof out->why, "%s", bad.why);
    }
    jr__hdr_free(&h);
    return r;
}

/* ---- discarding (R-37) ---- */

/* Cut the journal before bad (found by replay just now, under g): the
 * journal object holding it ends there, later ones go, the header's index
 * names the cut object as the last one, applied = head = bad - 1 and the
 * damage record is removed. */
static int journal_cut(struct jr__wlease *w, const struct jr__hdr *h,
                       const struct jr__bad *bad, const struct jr__guard *g)
{
    char joid[JR_OID_MAX], key[64], val[64];
    size_t k = 0;
    while (k < h->nj && h->j[k].n != bad->jno) k++;
    if (k == h->nj || bad->seq < h->j[k].first) return JR_ECORRUPT;
    jr__oid_journal(joid, sizeof joid, w->vol, bad->jno);
    /* 1. The object holding the damage ends before it.  Run again after
     * a crash, this finds the same seq ("objects do not join", R-21). */
    int r = st_stat(w->st, joid, NULL, NULL);
    if (r == 0) {
        st_wop *op = st_wop_create();
        if (!op) return -ENOMEM;
        jr__guard_add(op, w->vol, joid, g);
        st_wop_truncate(op, bad->off);
        if (bad->seq > h->j[k].first) {
            int n = snprintf(val, sizeof val, "%" PRIu64 " %" PRId64,
                             bad->seq - 1, bad->prev_ts);
            st_wop_omap_set(op, "head", val, (size_t)n);
        } else {
            st_wop_omap_rm(op, "head"); /* no entry left: first - 1 */
        }
        if (w->fence_val[0])
            st_wop_omap_set(op, "w", w->token, strlen(w->token));
        r = st_wop_operate(w->st, joid, op);
        st_wop_destroy(op);
    } else if (r == -ENOENT) {
        r = 0; /* the damage is that it is missing: nothing to cut */
    }
    if (r < 0) return r;
    /* 2. The header: one atomic update. */
    st_wop *op = st_wop_create();
    if (!op) return -ENOMEM;
    jr__guard_add(op, w->vol, w->hoid, g);
    st_wop_omap_cmp(op, "applied", h->applied_raw,
                    h->applied_raw ? strlen(h->applied_raw) : 0);
    for (size_t i = k + 1; i < h->nj; i++) {
        snprintf(key, sizeof key, "jidx.%016" PRIx64, h->j[i].n);
        st_wop_omap_rm(op, key);
    }
    snprintf(key, sizeof key, "jidx.%016" PRIx64, h->j[k].n);
    int n = snprintf(val, sizeof val, "%" PRIu64, h->j[k].first);
    st_wop_omap_set(op, key, val, (size_t)n);
    /* The one update that may move applied back (a damaged entry at or
     * below it): the journal ends at bad - 1 now. */
    n = snprintf(val, sizeof val, "%" PRIu64 " %" PRIu64, bad->seq - 1,
                 h->applied_size);
    st_wop_omap_set(op, "applied", val, (size_t)n);
    st_wop_omap_rm(op, "damage");
    r = st_wop_operate(w->st, w->hoid, op);
    st_wop_destroy(op);
    if (r < 0) return r;
    /* 3. Objects past it: no longer named, garbage from here. */
    for (size_t i = k + 1; i < h->nj; i++) {
        jr__oid_journal(joid, sizeof joid, w->vol, h->j[i].n);
        int rr = st_remove(w->st, joid);
        if (rr < 0 && rr != -ENOENT && r == 0) r = rr;
    }
    return r;
}

int jr_journal_discard(st_store *st, const char *vol_id, uint64_t bad_seq)
{
    if (!st || !jr__valid_id(vol_id) || bad_seq == 0) return -EINVAL;
    char hoid[JR_OID_MAX];
    struct jr__wlease w;
    jr__oid_header(hoid, sizeof hoid, vol_id);
    jr__wlease_init(&w, st, vol_id, hoid, "jr_journal_discard");
    const struct jr__guard sec = {"role", "secondary"}, *g = &sec;
    struct jr__bad bad = {0};
    struct jr__hdr h;
    uint64_t head = 0;
    int r = jr__hdr_load(st, vol_id, &h), leased = 0;
    if (r < 0) goto out;
    if (h.role == JR_ROLE_PRIMARY) {
        /* A writer's update: under the lease, like jr_open (no force). */
        r = jr__wlease_take(&w, &h, 0);
        if (r < 0) goto out;
        leased = 1;
        g = &w.guard;
        jr__hdr_free(&h);
        if ((r = jr__hdr_load(st, vol_id, &h)) < 0) goto out;
        if (h.role != JR_ROLE_PRIMARY) {
            r = JR_EROLE;
            goto out;
        }
        if (h.n_acks && h.max_ack >= bad_seq) {
            tlog_error("journal.discard_refused",
                       "vol=%s seq=%" PRIu64 " peer_ack=%" PRIu64
                       " msg=\"a peer has entries from there on: fail over "
                       "to it or resync\"", vol_id, bad_seq, h.max_ack);
            r = JR_EDIVERGED;
            goto out;
        }
    }
    if ((r = jr__head(st, vol_id, &h, &head, NULL)) < 0) goto out;
    /* Apply what verifies before the damage, and find it again. */
    r = jr__replay_g(st, vol_id, &h, head, g, &bad, NULL);
    if (r == 0 || (r == JR_ECORRUPT && bad.seq != bad_seq)) {
        tlog_error("journal.discard_refused",
                   "vol=%s seq=%" PRIu64 " damaged_seq=%" PRIu64
                   " msg=\"not the first damaged entry\"", vol_id, bad_seq,
                   bad.seq);
        r = JR_ESTALE;
        goto out;
    }
    if (r != JR_ECORRUPT) goto out;
    r = journal_cut(&w, &h, &bad, g);
    if (r == 0)
        tlog_warn("journal.discarded",
                  "vol=%s from_seq=%" PRIu64 " object=%016" PRIx64 " offset=%"
                  PRIu64 " old_head=%" PRIu64 " entries=%" PRIu64
                  " msg=\"acknowledged writes dropped on request\"", vol_id,
                  bad_seq, bad.jno, bad.off, head,
                  head >= bad_seq ? head - bad_seq + 1 : 0);
out:
    if (r == -ECANCELED || r == -ESHUTDOWN)
        r = leased ? jr__fence_reason(&w, r) : JR_EROLE;
    if (leased) jr__wlease_release(&w);
    jr__hdr_free(&h);
    jr__wlease_destroy(&w);
    return r;
}
