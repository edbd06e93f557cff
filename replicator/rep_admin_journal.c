/*
 * rep_admin_journal.c: the admin calls for a damaged journal (FORMAT.md
 * R-37; deploy/RUNBOOK.md "A damaged journal tail"): CheckJournal
 * verifies, DiscardJournalTail gives the damaged tail up on the
 * operator's word (the seq CheckJournal named, confirmed by tandemctl).
 *
 * Nothing here decides what to drop: jr_journal_discard refuses any seq
 * but the first damaged one as it finds it now, and refuses a primary
 * whose peer acknowledged that seq (the peer holds the writes).  What the
 * replicator adds: the refusals in words an operator can act on, the
 * volume's op_lock (no batch is applied to a secondary meanwhile), and,
 * on a replicated primary, a full copy of the image to the peer: the
 * image may hold discarded writes the peer never received and the
 * journal no longer says where.  The copy is scheduled in the copy list
 * (jr_copylist_save: the whole image) before the discard, so no crash can
 * lose it; the volume's next sender finds it (sender_probe) and copies
 * before it ships anything more.  It resumes shipping at applied + 1 as
 * of before the discard, not at bad_seq: the entries the discard itself
 * applies to the image (applied + 1 .. bad_seq - 1) may land while a
 * sender already copies, and are shipped again after the copy, in order.
 *
 * A region copy that is running may drop the list when it ends (it read
 * the list before ours was saved): the discard is refused while one runs
 * (the sender's copy_active), and afterwards the sender is stopped and
 * waited for, and the list saved again if it went.  A sender that does
 * not stop in time (a copy started meanwhile) makes the answer say that
 * the peer needs `resync --full`, rather than promise a copy.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rep_admin.h"
#include "tlog.h"

#define STOP_WAIT_MS 5000 /* for the volume's sender to stop */


static int not_found_or(rpc_ctx *ctx, int rc, const char *id,
                        const char *what)
{
    if (rc == -ENOENT)
        return rpc_ctx_error(ctx, RPC_NOT_FOUND,
                             "volume %s: not found in this region", id);
    if (rc == -EINVAL)
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
                             "volume %s: not a valid volume id", id);
    return rpc_ctx_error(ctx, RPC_INTERNAL, "volume %s: %s: %s", id, what,
                         jr_strerror(rc));
}

/* ---------------------------------------------------------- check */

int rep__h_check_journal(void *svc, rpc_ctx *ctx, const ProtobufCMessage *reqm,
                         ProtobufCMessage **respm)
{
    rep_ctx *r = svc;
    const Tandem__Admin__V1__CheckJournalRequest *req = (const void *)reqm;
    const char *id = req->volume_id;
    struct jr_damage dm;
    struct jr_info info;
    char peer[RG_MAX_NAME + 1] = "";
    uint64_t acked = 0;
    if (!id[0])
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT, "volume_id is empty");
    memset(&dm, 0, sizeof(dm));
    int rc = jr_journal_check(r->st, id, &dm);
    if (rc < 0 && rc != JR_ECORRUPT)
        return not_found_or(ctx, rc, id, "checking the journal");
    int damaged = rc == JR_ECORRUPT && dm.seq;
    if ((rc = jr_volume_stat(r->st, id, &info)) < 0)
        return not_found_or(ctx, rc, id, "reading its header");
    /* Who may hold the entries: a primary's peer, by its ack.  Unknown
     * metadata only leaves peer_region empty here (the discard itself
     * refuses then). */
    if (rep__vol_peer(r, id, peer, sizeof(peer)) < 0) peer[0] = 0;
    if (peer[0] && info.role == JR_ROLE_PRIMARY &&
        jr_peer_ack_get(r->st, id, peer, &acked) < 0)
        acked = 0;

    Tandem__Admin__V1__CheckJournalResponse *resp = malloc(sizeof(*resp));
    if (!resp) return RPC_RESOURCE_EXHAUSTED;
    tandem__admin__v1__check_journal_response__init(resp);
    resp->damaged = damaged;
    resp->applied = damaged ? dm.applied : info.applied;
    resp->head = damaged ? dm.head : info.head;
    resp->peer_acked = acked;
    resp->peer_region = rep__sdup(peer);
    if (damaged) {
        Tandem__Admin__V1__JournalDamage *d = malloc(sizeof(*d));
        if (!d) {
            protobuf_c_message_free_unpacked(&resp->base, NULL);
            return RPC_RESOURCE_EXHAUSTED;
        }
        tandem__admin__v1__journal_damage__init(d);
        d->seq = dm.seq;
        d->object = dm.object;
        d->offset = dm.offset;
        d->why = rep__sdup(dm.why);
        resp->damage = d;
        resp->discard_entries = dm.head >= dm.seq ? dm.head - dm.seq + 1 : 0;
        /* The journal's bytes spread evenly over its kept entries: an
         * estimate (entries past a damaged one cannot be measured). */
        if (info.head >= info.tail && info.journal_bytes)
            resp->discard_bytes_estimate = (uint64_t)(
                (double)info.journal_bytes * (double)resp->discard_entries /
                (double)(info.head - info.tail + 1));
    }
    resp->volume = rep__admin_vstatus(r, id);
    tlog_info("rep.journal_checked", "vol=%s damaged=%d seq=%" PRIu64
              " object=%" PRIu64 " offset=%" PRIu64 " applied=%" PRIu64
              " head=%" PRIu64, id, damaged, dm.seq, dm.object, dm.offset,
              resp->applied, resp->head);
    *respm = &resp->base;
    return RPC_OK;
}

/* ---------------------------------------------------------- discard */

struct ranges {
    struct jr_range *a;
    size_t n, cap;
};

static int ranges_cb(uint64_t off, uint64_t len, void *arg)
{
    struct ranges *g = arg;
    if (g->n == g->cap) {
        size_t c = g->cap ? 2 * g->cap : 16;
        void *p = realloc(g->a, c * sizeof(*g->a));
        if (!p) return -ENOMEM;
        g->a = p;
        g->cap = c;
    }
    g->a[g->n].off = off;
    g->a[g->n].len = len;
    g->n++;
    return 0;
}

/* Schedule a full copy of the image to the peer: the copy list names the
 * whole image and resumes at `resume` (or earlier, if a list was kept
 * already: that copy's entries are still owed too; *resume is updated).
 * *old gets the list that was there (old_resume 0: none), to put back if
 * the discard is refused. */
static int copy_schedule(rep_ctx *r, const char *id, uint64_t size,
                         uint64_t *resume, struct ranges *old,
                         uint64_t *old_resume)
{
    int rc = jr_copylist_load(r->st, id, old_resume, ranges_cb, old);
    if (rc < 0) return rc;
    if (*old_resume && *old_resume < *resume) *resume = *old_resume;
    struct jr_range whole = {0, size};
    return jr_copylist_save(r->st, id, *resume, &whole, 1);
}

/* 1 if the copy list is still the one copy_schedule saved. */
static int copy_list_is_ours(rep_ctx *r, const char *id, uint64_t size,
                             uint64_t resume)
{
    struct ranges now = {0};
    uint64_t at = 0;
    int rc = jr_copylist_load(r->st, id, &at, ranges_cb, &now);
    int ours = rc == 0 && at == resume && now.n == 1 && now.a[0].off == 0 &&
               now.a[0].len == size;
    free(now.a);
    return ours;
}

static void copy_unschedule(rep_ctx *r, const char *id, uint64_t size,
                            uint64_t resume, const struct ranges *old,
                            uint64_t old_resume)
{
    /* A copy that started meanwhile took the list over: leave it. */
    if (!copy_list_is_ours(r, id, size, resume)) return;
    int rc = old_resume ? jr_copylist_save(r->st, id, old_resume, old->a,
                                           old->n)
                        : jr_copylist_drop(r->st, id);
    if (rc < 0)
        /* A full copy more than needed: harmless, and logged. */
        tlog_warn("rep.copylist_restore_failed", "vol=%s err=%d (%s)", id, rc,
                  jr_strerror(rc));
}

/* Stop the volume's sender and wait for it to exit (the scanner starts
 * a new one, which probes the peer and finds the copy list).  Then make
 * sure the list is still there: a copy the old sender ran drops it when
 * it ends.  1 if the copy is certain to happen, 0 if not (a sender did
 * not stop in time, or the list could not be saved again). */
static int copy_ensure(rep_ctx *r, struct rep_vol *v, uint64_t size,
                       uint64_t resume)
{
    rep__vol_stop(v);
    int64_t until = tb_mono_ms() + STOP_WAIT_MS;
    for (;;) {
        pthread_mutex_lock(&v->mu);
        int running = v->thr_running && v->stop;
        pthread_mutex_unlock(&v->mu);
        if (!running) break;
        if (tb_mono_ms() >= until) return 0;
        usleep(10000);
    }
    uint64_t at = 0;
    struct ranges now = {0};
    int rc = jr_copylist_load(r->st, v->id, &at, ranges_cb, &now);
    free(now.a);
    if (rc == 0 && at) return 1; /* ours, or a new copy's with ours in it */
    struct jr_range whole = {0, size};
    rc = jr_copylist_save(r->st, v->id, resume, &whole, 1);
    if (rc < 0)
        tlog_warn("rep.copylist_save_failed", "vol=%s err=%d (%s)", v->id, rc,
                  jr_strerror(rc));
    return rc == 0;
}

/* The refusal of a discard that changed nothing, in the operator's words
 * (msg), and its RPC code; 0 for an error that may have changed
 * something (a store error: the discard can be run again). */
static int discard_refusal(rep_ctx *r, const char *id, uint64_t bad_seq,
                           const char *peer, int rc, char *msg, size_t msz)
{
    struct jr_damage now;
    uint64_t ack = 0;
    switch (rc) {
    case -ENOENT:
        snprintf(msg, msz, "volume %s: not found in this region", id);
        return RPC_NOT_FOUND;
    case -EINVAL:
        snprintf(msg, msz, "volume %s: bad_seq %" PRIu64 " is not a journal "
                 "position", id, bad_seq);
        return RPC_INVALID_ARGUMENT;
    case JR_ESTALE:
        memset(&now, 0, sizeof(now));
        rc = jr_journal_check(r->st, id, &now);
        if (rc == JR_ECORRUPT && now.seq)
            snprintf(msg, msz, "%s: the damage is now at seq %" PRIu64
                     ", not %" PRIu64 ": check again (nothing was "
                     "discarded)", id, now.seq, bad_seq);
        else if (rc == 0)
            snprintf(msg, msz, "%s: the journal is not damaged now (nothing "
                     "at seq %" PRIu64 " to discard): check again", id,
                     bad_seq);
        else
            snprintf(msg, msz, "%s: the damage is not at seq %" PRIu64
                     " (checking again failed: %s): check again", id, bad_seq,
                     jr_strerror(rc));
        return RPC_FAILED_PRECONDITION;
    case JR_EDIVERGED:
        if (peer[0]) jr_peer_ack_get(r->st, id, peer, &ack);
        if (peer[0] && ack)
            snprintf(msg, msz, "%s: peer region %s acknowledged entries up to "
                     "seq %" PRIu64 ", at or past %" PRIu64 ": it holds the "
                     "writes a discard would give up; fail over to it "
                     "instead (RUNBOOK section 2), then resync this side "
                     "(nothing was discarded)", id, peer, ack, bad_seq);
        else
            snprintf(msg, msz, "%s: a peer acknowledged seq %" PRIu64 " or "
                     "later: it holds the writes a discard would give up; "
                     "fail over to it instead (RUNBOOK section 2), then "
                     "resync this side (nothing was discarded)", id, bad_seq);
        return RPC_FAILED_PRECONDITION;
    case JR_ELOCKED:
        snprintf(msg, msz, "%s is open for writing elsewhere (a live writer "
                 "lease): unstage the volume first, then discard again "
                 "(nothing was discarded)", id);
        return RPC_FAILED_PRECONDITION;
    case JR_EROLE:
        snprintf(msg, msz, "%s: its role changed meanwhile: check again "
                 "(nothing was discarded)", id);
        return RPC_ABORTED;
    }
    return 0;
}

int rep__h_discard_journal_tail(void *svc, rpc_ctx *ctx,
                                const ProtobufCMessage *reqm,
                                ProtobufCMessage **respm)
{
    rep_ctx *r = svc;
    const Tandem__Admin__V1__DiscardJournalTailRequest *req =
        (const void *)reqm;
    const char *id = req->volume_id;
    uint64_t bad_seq = req->bad_seq;
    struct jr_info info, after = {.head = 0};
    struct ranges old = {0};
    uint64_t old_resume = 0, n = 0;
    char peer[RG_MAX_NAME + 1] = "", msg[600] = "";
    int code = RPC_OK, scheduled = 0, needs_resync = 0, rc;
    if (!id[0])
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT, "volume_id is empty");
    if (!bad_seq)
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
                             "bad_seq is 0: name the first damaged entry "
                             "(CheckJournal)");
    struct rep_vol *v = rep__vol_get(r, id);
    if (!v) return RPC_RESOURCE_EXHAUSTED;
    pthread_mutex_lock(&v->op_lock);
    if ((rc = jr_volume_stat(r->st, id, &info)) < 0) {
        code = discard_refusal(r, id, bad_seq, peer, rc, msg, sizeof(msg));
        if (!code) {
            snprintf(msg, sizeof(msg), "volume %s: %s", id, jr_strerror(rc));
            code = RPC_INTERNAL;
        }
        goto out;
    }
    /* Whether a peer must get a copy: never guessed. */
    if ((rc = rep__vol_peer(r, id, peer, sizeof(peer))) < 0) {
        snprintf(msg, sizeof(msg), "volume %s: its metadata cannot be read "
                 "(%s), so whether a peer needs a copy afterwards is unknown: "
                 "nothing was discarded; try again", id, jr_strerror(rc));
        code = RPC_INTERNAL;
        goto out;
    }
    int replicated_primary = peer[0] && info.role == JR_ROLE_PRIMARY;
    uint64_t resume = info.applied + 1 < bad_seq ? info.applied + 1 : bad_seq;
    if (replicated_primary && !strcmp(peer, r->peer_region)) {
        pthread_mutex_lock(&v->mu);
        int copying = v->copy_active;
        pthread_mutex_unlock(&v->mu);
        if (copying) {
            snprintf(msg, sizeof(msg), "%s: a region copy to peer region %s "
                     "is running (status: catching-up); discard again once "
                     "it is done (nothing was discarded)", id, peer);
            code = RPC_FAILED_PRECONDITION;
            goto out;
        }
        rc = copy_schedule(r, id, info.size, &resume, &old, &old_resume);
        if (rc < 0) {
            snprintf(msg, sizeof(msg), "%s: scheduling the copy to peer "
                     "region %s failed (%s): nothing was discarded; try "
                     "again", id, peer, jr_strerror(rc));
            code = RPC_INTERNAL;
            goto out;
        }
        scheduled = 1;
    } else if (replicated_primary) {
        /* Replicated by another pair of regions: not ours to ship. */
        needs_resync = 1;
    }
    rc = jr_journal_discard(r->st, id, bad_seq);
    if (rc < 0) {
        code = discard_refusal(r, id, bad_seq, peer, rc, msg, sizeof(msg));
        if (code) {
            if (scheduled)
                copy_unschedule(r, id, info.size, resume, &old, old_resume);
        } else {
            /* May be half done: the copy stays scheduled, the operator
             * runs the same discard again. */
            snprintf(msg, sizeof(msg), "%s: discard from seq %" PRIu64 ": %s "
                     "(run the same discard again)", id, bad_seq,
                     jr_strerror(rc));
            code = RPC_INTERNAL;
        }
        tlog_warn("rep.journal_discard_refused", "vol=%s bad_seq=%" PRIu64
                  " err=%d (%s)", id, bad_seq, rc, jr_strerror(rc));
        goto out;
    }
    if (jr_volume_stat(r->st, id, &after) < 0) after.head = bad_seq - 1;
    n = info.head >= bad_seq ? info.head - bad_seq + 1 : 0;
    /* The sender's complaint about the damage is history now. */
    rep__vol_state(v, REP_LINK_KEEP, REP_ST_KEEP, "");
    if (scheduled && !copy_ensure(r, v, info.size, resume)) {
        scheduled = 0;
        needs_resync = 1;
        snprintf(msg, sizeof(msg), "%s: journal discarded from seq %" PRIu64
                 " (%" PRIu64 " entries); the full copy to peer region %s "
                 "could not be made certain (its sender did not stop in "
                 "time): resync it there with a full copy", id, bad_seq, n,
                 peer);
    } else if (scheduled) {
        snprintf(msg, sizeof(msg), "%s: journal discarded from seq %" PRIu64
                 " (%" PRIu64 " entries); a full copy of the image to peer "
                 "region %s is scheduled", id, bad_seq, n, peer);
    } else if (needs_resync) {
        snprintf(msg, sizeof(msg), "%s: journal discarded from seq %" PRIu64
                 " (%" PRIu64 " entries); its peer region %s is not this "
                 "replicator's peer (%s): resync it there with a full copy",
                 id, bad_seq, n, peer, r->peer_region);
    } else {
        snprintf(msg, sizeof(msg), "%s: journal discarded from seq %" PRIu64
                 " (%" PRIu64 " entries)%s", id, bad_seq, n,
                 info.role == JR_ROLE_SECONDARY && peer[0]
                     ? "; the primary ships those entries again"
                     : "");
    }
    tlog_warn("rep.journal_discarded", "vol=%s from_seq=%" PRIu64
              " entries=%" PRIu64 " head=%" PRIu64 " role=%s "
              "peer_copy=%d msg=\"by the admin API\"", id, bad_seq, n,
              after.head, jr_role_name(info.role), scheduled);
out:
    pthread_mutex_unlock(&v->op_lock);
    free(old.a);
    if (code != RPC_OK) return rpc_ctx_error(ctx, code, "%s", msg);
    Tandem__Admin__V1__DiscardJournalTailResponse *resp =
        malloc(sizeof(*resp));
    if (!resp) return RPC_RESOURCE_EXHAUSTED;
    tandem__admin__v1__discard_journal_tail_response__init(resp);
    resp->discarded_from = bad_seq;
    resp->discarded_entries = n;
    resp->head = after.head;
    resp->peer_copy_scheduled = scheduled;
    resp->peer_needs_resync = needs_resync;
    resp->message = rep__sdup(msg);
    resp->volume = rep__admin_vstatus(r, id);
    *respm = &resp->base;
    return RPC_OK;
}
