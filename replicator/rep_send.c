/*
 * rep_send.c: the sender, one thread per shipping volume: tail the
 * journal from the peer's applied position, compress, throttle, ship,
 * record the ack, trim; probe the peer when the position is unknown,
 * fall back to a region copy (rep_copy.c) when the journal no longer
 * holds what the peer lacks, and handle the peer's refusals (fencing).
 *
 * One thread per shipping volume keeps a slow or broken volume from
 * stalling the others: each sender has its own backoff and its own calls
 * in flight; they share only the gRPC channel and the bandwidth bucket.
 * A sender ships a batch and waits for the answer (the receiver's
 * applied position is authoritative); with a backlog, up to
 * REP_PIPE_SLOTS senders at once read the next batch ahead and keep it
 * in flight too (struct flight; the receiver applies strictly in order).
 * jr.h has no change notification, so an idle sender polls the header:
 * 1 ms doubling to 50 ms, 200 ms after 10 s without writes.
 *
 * In a copy window (rep_copy.c) batches carry the byte ranges they touch
 * so the receiver saves their old bytes too.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rep_link.h"
#include "rep_send.h"
#include "tbase.h"
#include "tlog.h"

/* ------------------------------------------------------- token bucket */

/* Take n bytes from the link budget, sleeping as needed.  The bucket holds
 * at most one second of budget, so an idle link bursts at most that. */
void rep__bucket_take(rep_ctx *r, size_t n)
{
    struct rep_bucket *b = &r->bucket;
    if (!b->rate) return;
    for (;;) {
        pthread_mutex_lock(&b->mu);
        int64_t now = tb_mono_ns();
        b->tokens += (double)(now - b->last_ns) * (double)b->rate / 1e9;
        b->last_ns = now;
        if (b->tokens > (double)b->rate) b->tokens = (double)b->rate;
        if (b->tokens >= 0) {
            /* Go into debt for large batches: later callers wait. */
            b->tokens -= (double)n;
            pthread_mutex_unlock(&b->mu);
            return;
        }
        double wait_s = -b->tokens / (double)b->rate;
        pthread_mutex_unlock(&b->mu);
        if (wait_s > 0.2) wait_s = 0.2;
        if (__atomic_load_n(&r->stopping, __ATOMIC_ACQUIRE)) return;
        usleep((useconds_t)(wait_s * 1e6) + 1);
    }
}

void rep__sender_health(struct sender *s, enum rep_health h,
                        const char *text)
{
    /* A failed write is logged there and leaves s->health as it was, so
     * the next call tries again; health is advisory, never a reason to
     * stop shipping. */
    rep__health_set(s->r, s->v->id, &s->health, h, text);
}

/* Mark a local copy split-brain (persistent) and fence it (secondary). */
static void mark_split(rep_ctx *r, struct rep_vol *v, const char *why)
{
    struct jr_info info;
    jr_meta_set(r->st, v->id, REP_META_SPLIT, why);
    /* Fence our own copy: a node can no longer stage it read-write, and
     * the journal refuses the old writer.  Same epoch: we were the
     * one fenced, we do not make a new decision. */
    if (jr_volume_stat(r->st, v->id, &info) == 0 &&
        info.role == JR_ROLE_PRIMARY)
        jr_role_set(r->st, v->id, JR_ROLE_SECONDARY, info.epoch);
    rep__vol_state(v, REP_LINK_SPLIT_BRAIN, REP_ST_SPLIT_BRAIN, why);
    char q[600];
    tlog_error("rep.split_brain", "vol=%s why=%s", v->id,
               tlog_q(q, sizeof(q), why));
}

struct pf_arg {
    rep_ctx *r;
    const char *id;
    struct prefetch *pf;
};

static void *prefetch_main(void *arg)
{
    struct pf_arg *a = arg;
    struct prefetch *pf = a->pf;
    pthread_mutex_lock(&pf->mu);
    while (!pf->stop) {
        if (!pf->pending || pf->ready) {
            pthread_cond_wait(&pf->cv, &pf->mu);
            continue;
        }
        uint64_t from = pf->from;
        pthread_mutex_unlock(&pf->mu);
        struct jr_batch b = {0};
        void *cbuf = NULL;
        size_t clen = 0;
        int rc = jr_tail_read(a->r->st, a->id, from, a->r->o.batch_bytes, &b);
        if (rc == 0 && b.n_entries && !a->r->o.no_compress &&
            rep__lz4_batch(b.data, b.len, &cbuf, &clen) != 1)
            cbuf = NULL;
        pthread_mutex_lock(&pf->mu);
        pf->rc = rc;
        pf->b = b;
        pf->cbuf = cbuf;
        pf->clen = clen;
        pf->ready = 1;
        pthread_cond_broadcast(&pf->cv);
    }
    pthread_mutex_unlock(&pf->mu);
    free(a);
    return NULL;
}

static void prefetch_drop_locked(struct prefetch *pf)
{
    if (pf->ready) {
        jr_batch_free(&pf->b);
        free(pf->cbuf);
        memset(&pf->b, 0, sizeof(pf->b));
        pf->cbuf = NULL;
        pf->ready = 0;
        pf->pending = 0;
    }
}

static void prefetch_post(struct prefetch *pf, uint64_t from)
{
    if (!pf->started) return;
    pthread_mutex_lock(&pf->mu);
    /* Wait out a read still running for another position, then drop it. */
    while (pf->pending && !pf->ready) pthread_cond_wait(&pf->cv, &pf->mu);
    prefetch_drop_locked(pf);
    pf->from = from;
    pf->pending = 1;
    pthread_cond_broadcast(&pf->cv);
    pthread_mutex_unlock(&pf->mu);
}

/* Take the read-ahead result for `from` if there is one (waiting for it
 * if it is being read).  Returns 1 with *b / *cbuf filled (owned by the
 * caller), 0 if the caller must read itself. */
static int prefetch_take(struct prefetch *pf, uint64_t from,
                         struct jr_batch *b, void **cbuf, size_t *clen)
{
    int got = 0;
    if (!pf->started) return 0;
    pthread_mutex_lock(&pf->mu);
    while (pf->pending && !pf->ready) pthread_cond_wait(&pf->cv, &pf->mu);
    if (pf->ready && pf->from == from && pf->rc == 0 && pf->b.n_entries &&
        pf->b.first_seq == from) {
        *b = pf->b;
        *cbuf = pf->cbuf;
        *clen = pf->clen;
        memset(&pf->b, 0, sizeof(pf->b));
        pf->cbuf = NULL;
        pf->ready = 0;
        pf->pending = 0;
        got = 1;
    } else {
        prefetch_drop_locked(pf);
    }
    pthread_mutex_unlock(&pf->mu);
    return got;
}

static void prefetch_start(struct prefetch *pf, rep_ctx *r, const char *id)
{
    memset(pf, 0, sizeof(*pf));
    pthread_mutex_init(&pf->mu, NULL);
    pthread_cond_init(&pf->cv, NULL);
    struct pf_arg *a = malloc(sizeof(*a));
    if (!a) return;
    a->r = r;
    a->id = id;
    a->pf = pf;
    if (pthread_create(&pf->th, NULL, prefetch_main, a) == 0)
        pf->started = 1;
    else
        free(a);
}

static void prefetch_stop(struct prefetch *pf)
{
    if (pf->started) {
        pthread_mutex_lock(&pf->mu);
        pf->stop = 1;
        pthread_cond_broadcast(&pf->cv);
        pthread_mutex_unlock(&pf->mu);
        pthread_join(pf->th, NULL);
        pthread_mutex_lock(&pf->mu);
        pf->pending = pf->ready; /* a finished read is dropped below */
        prefetch_drop_locked(pf);
        pthread_mutex_unlock(&pf->mu);
    }
    pthread_mutex_destroy(&pf->mu);
    pthread_cond_destroy(&pf->cv);
}

/* A ShipBatch call running on a thread of its own, so that the next
 * batch travels while the peer applies this one (two in flight at most;
 * the peer applies strictly in order and refuses a batch that does not
 * follow its applied position).  The flight owns the batch bytes the
 * request points at. */
struct flight {
    rep_ctx *r;
    struct jr_batch b;
    void *cbuf;
    size_t clen;
    Tandem__Repl__V1__ShipBatchRequest req;
    pthread_t th;
    int code;
    Tandem__Repl__V1__ShipBatchResponse *resp;
    char msg[256];
};

static void *flight_main(void *arg)
{
    struct flight *f = arg;
    ProtobufCMessage *out = NULL;
    f->code = rpc_client_call(f->r->peer, "/tandem.repl.v1.Link/ShipBatch",
                              &f->req.base,
                              &tandem__repl__v1__ship_batch_response__descriptor,
                              &out, REP_SHIP_TIMEOUT_MS, 0, f->msg,
                              sizeof(f->msg));
    f->resp = (Tandem__Repl__V1__ShipBatchResponse *)out;
    return NULL;
}

/* Point a ShipBatch request at batch b (shipped as cbuf, its LZ4 form
 * of cl bytes, when there is one). */
static void req_set_batch(Tandem__Repl__V1__ShipBatchRequest *req,
                          const struct jr_batch *b, void *cbuf, size_t cl)
{
    req->first_seq = b->first_seq;
    req->last_seq = b->last_seq;
    req->n_entries = b->n_entries;
    req->raw_len = b->len;
    req->oldest_ts_ns = b->oldest_ts_ns;
    req->entries.data = cbuf ? cbuf : b->data;
    req->entries.len = cbuf ? cl : b->len;
    req->compression = cbuf ? TANDEM__REPL__V1__COMPRESSION__COMPRESSION_LZ4
                            : TANDEM__REPL__V1__COMPRESSION__COMPRESSION_NONE;
}

/* Wait for the call and free everything (its outcome is not needed: a
 * batch the peer applied is simply acknowledged again later). */
static void flight_drop(struct flight *f)
{
    if (!f) return;
    pthread_join(f->th, NULL);
    if (f->resp) protobuf_c_message_free_unpacked(&f->resp->base, NULL);
    jr_batch_free(&f->b);
    free(f->cbuf);
    free(f);
}

static void sender_trim(struct sender *s, uint64_t acked, uint64_t head);

/* Take (want) or give back a pipelining slot; returns whether held. */
static int pipe_slot(struct sender *s, int want)
{
    rep_ctx *r = s->r;
    if (want && !s->pipe_slot) {
        int cur = __atomic_load_n(&r->pipe_used, __ATOMIC_RELAXED);
        while (cur < REP_PIPE_SLOTS &&
               !__atomic_compare_exchange_n(&r->pipe_used, &cur, cur + 1, 0,
                                            __ATOMIC_ACQ_REL,
                                            __ATOMIC_RELAXED))
            ;
        if (cur < REP_PIPE_SLOTS) s->pipe_slot = 1;
    } else if (!want && s->pipe_slot) {
        __atomic_fetch_sub(&r->pipe_used, 1, __ATOMIC_ACQ_REL);
        s->pipe_slot = 0;
    }
    return s->pipe_slot;
}

static void sender_backoff(struct sender *s, const char *why)
{
    /* The journal cap is enforced by trimming (FORMAT.md R-8): keep doing
     * it while the peer is away, or the journal grows without bound. */
    sender_trim(s, 0, 1);
    /* Capped exponential with jitter: 100 ms doubling to 2 s, each wait
     * drawn from [b/2, b]. */
    s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : 100;
    if (s->backoff_ms > 2000) s->backoff_ms = 2000;
    int ms = s->backoff_ms / 2 + (int)(random() % (s->backoff_ms / 2 + 1));
    rep__vol_state(s->v, REP_LINK_BACKOFF, REP_ST_KEEP, why);
    rep__vol_wait(s->r, s->v, ms);
}

void rep__note_ack(struct sender *s, uint64_t applied, size_t wire,
                     uint64_t raw)
{
    struct rep_vol *v = s->v;
    int64_t now = tb_wall_ms();
    pthread_mutex_lock(&v->mu);
    if (applied > v->acked) v->acked = applied;
    v->last_sync_ms = now;
    v->wire_bytes += wire;
    v->raw_bytes += raw;
    if (wire) v->batches++;
    tb_meter_add(&v->meter, raw, tb_mono_ms());
    pthread_cond_broadcast(&v->cv);
    pthread_mutex_unlock(&v->mu);
    if (!applied) return;
    /* Recorded for trimming and for status; what the peer applied
     * is its own truth, so a failure here loses nothing: the journal is
     * kept longer, and the next answer records it again. */
    int rc = jr_peer_ack_set(s->r->st, v->id, s->r->peer_region, applied);
    if (rc < 0) {
        char e[160];
        snprintf(e, sizeof(e), "recording the peer's ack %" PRIu64 ": %s",
                 applied, jr_strerror(rc));
        rep__vol_state(v, REP_LINK_KEEP, REP_ST_KEEP, e);
        tlog_warn("rep.ack_failed", "vol=%s acked=%" PRIu64 " err=%d (%s)",
                  v->id, applied, rc, jr_strerror(rc));
    }
}

/* One ShipBatch call.  Returns the RPC code; *resp on RPC_OK. */
static int ship_call(struct sender *s, Tandem__Repl__V1__ShipBatchRequest *req,
                     Tandem__Repl__V1__ShipBatchResponse **resp, int tmo,
                     char *msg, size_t msz)
{
    ProtobufCMessage *out = NULL;
    int code = rpc_client_call(s->r->peer, "/tandem.repl.v1.Link/ShipBatch",
                               &req->base,
                               &tandem__repl__v1__ship_batch_response__descriptor,
                               &out, tmo, 0, msg, msz);
    *resp = (Tandem__Repl__V1__ShipBatchResponse *)out;
    return code;
}

/* Handle a refusal that fences this volume.  Returns 1 if the sender
 * must exit. */
int rep__sender_refused(struct sender *s,
                          const Tandem__Repl__V1__ShipBatchResponse *resp)
{
    char why[1024], q[sizeof(why) + 16]; /* q: why quoted (peer text) */
    int peer_primary = resp->role && !strcmp(resp->role, "primary");
    if (resp->epoch <= s->epoch &&
        resp->result == TANDEM__REPL__V1__RESULT__RESULT_STALE_EPOCH) {
        /* The peer refused entries as stale but holds no newer epoch:
         * not a fencing decision about us (never step down or fence for
         * it); report and retry. */
        snprintf(why, sizeof(why), "peer %s refused entries as stale at "
                 "epoch %" PRIu64 " (ours %" PRIu64 "): %s", s->r->peer_region,
                 resp->epoch, s->epoch, resp->message);
        rep__vol_state(s->v, REP_LINK_KEEP, REP_ST_ERROR, why);
        tlog_error("rep.refused_stale", "vol=%s why=%s", s->v->id,
                   tlog_q(q, sizeof(q), why));
        rep__vol_wait(s->r, s->v, 2000);
        return 0;
    }
    if (resp->epoch > s->epoch && !peer_primary) {
        /* The peer's copy holds a higher epoch but is not primary.  Only a
         * promotion raises an epoch, and only the promoted (primary) copy
         * makes ours stale: a secondary's epoch, however it got there, is
         * no reason to fence or demote this copy.  Report and retry; the
         * operator resolves it (resync or promote there). */
        snprintf(why, sizeof(why), "peer %s's copy is %s at epoch %" PRIu64
                 ", above ours %" PRIu64 ", but not primary: this copy is "
                 "not fenced for it (%s)", s->r->peer_region,
                 resp->role && resp->role[0] ? resp->role : "of no role",
                 resp->epoch, s->epoch, resp->message);
        rep__vol_state(s->v, REP_LINK_KEEP, REP_ST_ERROR, why);
        tlog_error("rep.refused_not_primary", "vol=%s why=%s", s->v->id,
                   tlog_q(q, sizeof(q), why));
        rep__vol_wait(s->r, s->v, 2000);
        return 0;
    }
    if (resp->epoch > s->epoch &&
        (resp->result == TANDEM__REPL__V1__RESULT__RESULT_STALE_EPOCH ||
         resp->result == TANDEM__REPL__V1__RESULT__RESULT_SPLIT_BRAIN)) {
        /* A newer promotion happened on the peer: we are the stale side.
         * If our journal ends at or before the point where the peer took
         * over, nothing diverged: step down to be its secondary.  Else
         * two histories exist: fence and wait for a resync. */
        Tandem__Repl__V1__GetVolumeResponse *pv = NULL;
        struct jr_info li;
        char m2[256];
        if (rep__peer_getvol(s->r, s->v->id, &pv, m2, sizeof(m2)) == RPC_OK &&
            pv->exists && !strcmp(pv->role, "primary") &&
            pv->epoch > s->epoch &&
            jr_volume_stat(s->r->st, s->v->id, &li) == 0 &&
            li.head <= pv->promoted_at_seq &&
            jr_role_set(s->r->st, s->v->id, JR_ROLE_SECONDARY, li.epoch) == 0) {
            tlog_warn("rep.stepped_down", "vol=%s head=%" PRIu64 " peer=%s "
                      "peer_epoch=%" PRIu64 " peer_promoted_at=%" PRIu64
                      " msg=\"peer was promoted; nothing diverged\"",
                      s->v->id, li.head, s->r->peer_region, pv->epoch,
                      pv->promoted_at_seq);
            rep__vol_state(s->v, REP_LINK_STOPPED, REP_ST_REPLICA, "");
            protobuf_c_message_free_unpacked(&pv->base, NULL);
            return 1;
        }
        if (pv) protobuf_c_message_free_unpacked(&pv->base, NULL);
        snprintf(why, sizeof(why), "fenced former primary: resync it "
                 "(`tandemctl resync %s` in region %s): peer %s holds epoch %"
                 PRIu64 " (role %s) above ours %" PRIu64 " and this copy "
                 "has entries it never had: %s", s->v->id, s->r->region,
                 s->r->peer_region, resp->epoch, resp->role, s->epoch,
                 resp->message);
        mark_split(s->r, s->v, why);
        rep__sender_health(s, REP_H_SPLIT_BRAIN, why);
        return 1;
    }
    if (resp->epoch < s->epoch || !peer_primary) {
        /* The peer's copy is older than ours (a former primary that came
         * back) or fenced: the peer is the side that must resync, not
         * this one.  Shown as such (status: peer-stale /
         * peer-must-resync), never as this copy's split brain; nothing
         * is shipped over it.  Keep asking: a resync there ends it. */
        snprintf(why, sizeof(why), "peer %s holds a stale former primary "
                 "(%s at epoch %" PRIu64 ", ours %" PRIu64 "): it must "
                 "resync: run `tandemctl resync %s` in region %s; nothing "
                 "is shipped to it until then", s->r->peer_region,
                 resp->role && resp->role[0] ? resp->role : "no role",
                 resp->epoch, s->epoch, s->v->id, s->r->peer_region);
        pthread_mutex_lock(&s->v->mu);
        int first = !s->v->peer_stale;
        s->v->peer_stale = 1;
        s->v->peer_split = 0;
        pthread_mutex_unlock(&s->v->mu);
        rep__vol_state(s->v, REP_LINK_PEER_STALE, REP_ST_PEER_MUST_RESYNC,
                       why);
        /* The peer's own words (its copy "was fenced (split brain...)")
         * go to the log only: on this side they would read as if this
         * copy were the one at fault. */
        if (first) {
            char q2[600];
            tlog_warn("rep.peer_stale", "vol=%s why=%s peer_msg=%s", s->v->id,
                      tlog_q(q, sizeof(q), why),
                      tlog_q(q2, sizeof(q2), resp->message));
        }
        rep__vol_wait(s->r, s->v, 2000);
        return 0;
    }
    /* The peer's copy is primary at our own epoch: two primaries of one
     * epoch, neither side can tell which is right (a real split brain).
     * Never overwrite it; keep asking. */
    snprintf(why, sizeof(why), "peer %s refused (its epoch %" PRIu64
             ", ours %" PRIu64 "): %s", s->r->peer_region, resp->epoch,
             s->epoch, resp->message);
    pthread_mutex_lock(&s->v->mu);
    int first = !s->v->peer_split;
    s->v->peer_split = 1;
    pthread_mutex_unlock(&s->v->mu);
    rep__vol_state(s->v, REP_LINK_SPLIT_BRAIN, REP_ST_SPLIT_BRAIN, why);
    rep__sender_health(s, REP_H_SPLIT_BRAIN, why);
    if (first)
        tlog_error("rep.split_brain", "vol=%s why=%s", s->v->id,
                   tlog_q(q, sizeof(q), why));
    rep__vol_wait(s->r, s->v, 2000);
    return 0;
}

static int copylist_none(uint64_t off, uint64_t len, void *arg)
{
    (void)off;
    (void)len;
    (void)arg;
    return 0;
}

/* Ask the peer where it is; create the secondary there when our journal
 * still starts at seq 1.  Sets s->next.  Returns SEND_READY, SEND_EXIT,
 * SEND_NO_REPLICA (needs a full copy: no replica and our journal is
 * incomplete), SEND_REFUSED or SEND_RETRY. */
static enum send_res sender_probe(struct sender *s, const struct jr_info *info)
{
    rep_ctx *r = s->r;
    Tandem__Repl__V1__ShipBatchRequest req =
        TANDEM__REPL__V1__SHIP_BATCH_REQUEST__INIT;
    Tandem__Repl__V1__ShipBatchResponse *resp = NULL;
    struct rep_spec sb = {0};
    int with_spec = info->tail <= 1 && !info->dirty_tracking;
    char msg[256];
    /* The spec (all metadata read) only when it is sent: a probe follows
     * every RPC error and gap. */
    if (with_spec && rep__spec_make(r, s->v->id, info, 1, &sb) < 0)
        return SEND_RETRY;
    req.volume_id = s->v->id;
    req.from_region = r->region;
    req.epoch = info->epoch;
    /* A sender runs only for a primary or draining copy (rep__eligible):
     * the copies whose epoch the peer may adopt. */
    req.from_primary = 1;
    req.promoted_at_seq = s->promoted_at;
    if (with_spec) req.spec = &sb.spec;
    req.primary_head = info->head;
    req.head_ts_ns = info->head_ts_ns;
    /* Register the peer before anything can create a replica there: a
     * primary with a peer leaves a tombstone when deleted, so no
     * replica is orphaned, not even one that never got an entry
     * (monotonic: a no-op once the peer has acknowledged). */
    int rr = jr_peer_ack_set(r->st, s->v->id, r->peer_region, 0);
    if (rr < 0) {
        rep__spec_free(&sb);
        rep__vol_state(s->v, REP_LINK_KEEP, REP_ST_KEEP, "cannot register the peer");
        return SEND_RETRY;
    }
    int code = ship_call(s, &req, &resp, REP_PROBE_TIMEOUT_MS, msg,
                         sizeof(msg));
    rep__spec_free(&sb);
    if (code != RPC_OK) {
        char e[320];
        snprintf(e, sizeof(e), "probe: %s: %s", rpc_code_name(code), msg);
        rep__vol_state(s->v, REP_LINK_DOWN, REP_ST_KEEP, e);
        rep__sender_health(s, REP_H_LINK_DOWN, e);
        return SEND_RETRY;
    }
    enum send_res ret;
    switch (resp->result) {
    case TANDEM__REPL__V1__RESULT__RESULT_OK:
        s->next = resp->applied + 1;
        s->copy_until = resp->copy_until;
        s->copy_again = resp->copy_unfinished;
        /* A copy this side still owes the peer although the peer has no
         * window open: its list is kept (e.g. the full copy a journal
         * discard scheduled, rep_admin_journal.c).  Copy before shipping
         * anything more. */
        if (!s->copy_again) {
            uint64_t owed = 0;
            if (jr_copylist_load(r->st, s->v->id, &owed, copylist_none,
                                 NULL) == 0 && owed)
                s->copy_again = 1;
        }
        rep__note_ack(s, resp->applied, 0, 0);
        if (resp->created)
            tlog_info("rep.replica_created", "vol=%s peer=%s", s->v->id,
                      r->peer_region);
        pthread_mutex_lock(&s->v->mu);
        s->v->peer_split = 0;
        s->v->peer_stale = 0;
        s->v->last_error[0] = 0;
        pthread_mutex_unlock(&s->v->mu);
        /* A copy owed comes next: it says "copying" itself. */
        if (!s->copy_again) rep__sender_health(s, REP_H_OK, "");
        ret = SEND_READY;
        break;
    case TANDEM__REPL__V1__RESULT__RESULT_NO_VOLUME:
        ret = SEND_NO_REPLICA;
        break;
    case TANDEM__REPL__V1__RESULT__RESULT_STALE_EPOCH:
    case TANDEM__REPL__V1__RESULT__RESULT_SPLIT_BRAIN:
        ret = rep__sender_refused(s, resp) ? SEND_EXIT : SEND_REFUSED;
        break;
    default:
        rep__vol_state(s->v, REP_LINK_DOWN, REP_ST_KEEP, resp->message);
        ret = SEND_RETRY;
    }
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return ret;
}

static void sender_trim(struct sender *s, uint64_t acked, uint64_t head)
{
    int64_t now = tb_mono_ms();
    if (acked < head && now - s->last_trim_ms < 1000) return;
    s->last_trim_ms = now;
    int rc = jr_trim(s->r->st, s->v->id);
    if (rc < 0)
        tlog_warn("rep.trim_failed", "vol=%s err=%d (%s)", s->v->id, rc,
                  jr_strerror(rc));
}

/* Ship one batch from s->next.  Returns SEND_SHIPPED, SEND_IDLE (nothing
 * to ship), SEND_EXIT, SEND_TRIMMED (region copy needed) or SEND_RETRY. */
static enum send_res sender_step(struct sender *s, const struct jr_info *info)
{
    rep_ctx *r = s->r;
    struct rep_vol *v = s->v;
    struct jr_batch b = {0};
    Tandem__Repl__V1__ShipBatchResponse *resp = NULL;
    Tandem__Repl__V1__ShipBatchRequest req =
        TANDEM__REPL__V1__SHIP_BATCH_REQUEST__INIT;
    struct rep_regs touched = {0};
    Tandem__Repl__V1__Region **tp = NULL;
    void *cbuf = NULL;
    char msg[256], e[400];
    enum send_res ret;

    size_t cl = 0;
    int rc = 0, code;
    struct flight *cur = NULL;
    if (s->ahead && !s->copy_until && s->ahead->b.first_seq == s->next &&
        s->ahead->req.epoch == info->epoch) {
        /* Sent during the previous step: only its answer is awaited. */
        cur = s->ahead;
        s->ahead = NULL;
        b = cur->b;
        cbuf = cur->cbuf;
        cl = cur->clen;
        req = cur->req;
        memset(&cur->b, 0, sizeof(cur->b));
        cur->cbuf = NULL;
        pthread_mutex_lock(&v->mu);
        v->oldest_unacked_ns = b.oldest_ts_ns;
        pthread_mutex_unlock(&v->mu);
        goto send;
    }
    flight_drop(s->ahead);
    s->ahead = NULL;
    if (!prefetch_take(&s->pf, s->next, &b, &cbuf, &cl)) {
        rc = jr_tail_read(r->st, v->id, s->next, r->o.batch_bytes, &b);
        if (rc == 0 && b.n_entries && !r->o.no_compress &&
            rep__lz4_batch(b.data, b.len, &cbuf, &cl) != 1)
            cbuf = NULL;
    }
    if (rc < 0) {
        if (rc != JR_ETRIMMED) {
            snprintf(e, sizeof(e), "journal read from %" PRIu64 ": %s",
                     s->next, jr_strerror(rc));
            rep__vol_state(v, REP_LINK_KEEP, REP_ST_ERROR, e);
            tlog_error("rep.tail_failed", "vol=%s from=%" PRIu64
                       " err=%d (%s)", v->id, s->next, rc, jr_strerror(rc));
        }
        return rc == JR_ETRIMMED ? SEND_TRIMMED : SEND_RETRY;
    }
    if (b.n_entries == 0) {
        jr_batch_free(&b);
        pthread_mutex_lock(&v->mu);
        v->oldest_unacked_ns = 0;
        pthread_mutex_unlock(&v->mu);
        return SEND_IDLE;
    }
    pthread_mutex_lock(&v->mu);
    v->oldest_unacked_ns = b.oldest_ts_ns;
    pthread_mutex_unlock(&v->mu);
    if (b.first_seq != s->next) {
        /* The journal answered from elsewhere: never ship a gap. */
        snprintf(e, sizeof(e), "journal returned seq %" PRIu64 " for %" PRIu64,
                 b.first_seq, s->next);
        rep__vol_state(v, REP_LINK_KEEP, REP_ST_ERROR, e);
        jr_batch_free(&b);
        free(cbuf);
        return SEND_RETRY;
    }
    req.volume_id = v->id;
    req.from_region = r->region;
    req.epoch = info->epoch;
    /* A sender runs only for a primary or draining copy (rep__eligible):
     * the copies whose epoch the peer may adopt. */
    req.from_primary = 1;
    req.promoted_at_seq = s->promoted_at;
    req.primary_head = info->head;
    req.head_ts_ns = info->head_ts_ns;
    req_set_batch(&req, &b, cbuf, cl);
    /* In the peer's copy window it needs the ranges to save (undo). */
    if (s->copy_until && b.first_seq <= s->copy_until) {
        /* From the batch itself, not the journal: its entries may be
         * trimmed between the read and now. */
        if (jr_batch_regions(b.data, b.len, rep__regs_cb, &touched) == 0 &&
            rep__regs_normalize(&touched) == 0 &&
            (tp = calloc(touched.n + 1, sizeof(*tp)))) {
            for (size_t i = 0; i < touched.n; i++) tp[i] = &touched.a[i];
            req.n_touched = touched.n;
            req.touched = tp;
        } else {
            /* Without the ranges the peer could not keep its undo: ship
             * nothing rather than break the rollback guarantee. */
            ret = SEND_RETRY;
            rep__vol_state(v, REP_LINK_KEEP, REP_ST_KEEP, "cannot list journal regions");
            goto out;
        }
    } else {
        s->copy_until = 0;
    }
    rep__bucket_take(r, req.entries.len);
    /* Read the next batch while the peer applies this one (with a slot:
     * a backlog, and not in backoff). */
    if (pipe_slot(s, b.last_seq < info->head && !s->backoff_ms) &&
        b.last_seq < info->head)
        prefetch_post(&s->pf, b.last_seq + 1);
send:
    if (!cur && !s->copy_until && s->pipe_slot && b.last_seq < info->head &&
        (cur = calloc(1, sizeof(*cur)))) {
        /* This batch goes on a thread, so that the next one can follow
         * it before its answer is back. */
        cur->r = r;
        cur->req = req;
        if (pthread_create(&cur->th, NULL, flight_main, cur) != 0) {
            free(cur);
            cur = NULL;
        }
    }
    if (cur && s->pipe_slot && b.last_seq < info->head) {
        /* The next batch, on its way while the peer applies this one
         * (in the copy window batches carry undo ranges: one at a time). */
        struct flight *n = calloc(1, sizeof(*n));
        if (n && prefetch_take(&s->pf, b.last_seq + 1, &n->b, &n->cbuf,
                               &n->clen)) {
            n->r = r;
            n->req = req;
            req_set_batch(&n->req, &n->b, n->cbuf, n->clen);
            n->req.n_touched = 0;
            n->req.touched = NULL;
            n->req.follows_in_flight = 1;
            rep__bucket_take(r, n->req.entries.len);
            if (n->b.last_seq < info->head)
                prefetch_post(&s->pf, n->b.last_seq + 1);
            if (pthread_create(&n->th, NULL, flight_main, n) == 0) {
                s->ahead = n;
                n = NULL;
            }
        }
        if (n) {
            jr_batch_free(&n->b);
            free(n->cbuf);
            free(n);
        }
    }
    if (cur) {
        pthread_join(cur->th, NULL);
        code = cur->code;
        resp = cur->resp;
        cur->resp = NULL;
        snprintf(msg, sizeof(msg), "%s", cur->msg);
        free(cur);
    } else {
        code = ship_call(s, &req, &resp, REP_SHIP_TIMEOUT_MS, msg,
                         sizeof(msg));
    }
    if (code != RPC_OK) {
        snprintf(e, sizeof(e), "ship: %s: %s", rpc_code_name(code), msg);
        rep__vol_state(v, REP_LINK_DOWN, REP_ST_KEEP, e);
        rep__sender_health(s, REP_H_LINK_DOWN, e);
        s->next = 0; /* ask the peer where to resume */
        ret = SEND_RETRY;
        goto out;
    }
    switch (resp->result) {
    case TANDEM__REPL__V1__RESULT__RESULT_OK:
        /* Ratio against the payload written (entries may already carry
         * LZ4 payloads, R-23): wire bytes per written byte. */
        rep__note_ack(s, resp->applied, req.entries.len,
                 b.raw_bytes ? b.raw_bytes : b.len);
        s->next = resp->applied + 1;
        if (resp->applied < b.last_seq) s->next = 0;
        rep__vol_state(v, REP_LINK_UP, REP_ST_REPLICATING, "");
        rep__sender_health(s, REP_H_OK, "");
        sender_trim(s, resp->applied, info->head);
        s->backoff_ms = 0;
        ret = SEND_SHIPPED;
        break;
    case TANDEM__REPL__V1__RESULT__RESULT_GAP:
        tlog_warn("rep.gap", "vol=%s sent=%" PRIu64 " peer_applied=%" PRIu64,
                  v->id, b.first_seq, resp->applied);
        /* With two batches in flight this answer may predate the OK of
         * the batch before it (already counted): never rewind past what
         * the peer acknowledged (the journal may be trimmed there); ask
         * the peer where it is instead. */
        s->next = resp->applied + 1 < s->next ? 0 : resp->applied + 1;
        ret = SEND_SHIPPED;
        break;
    case TANDEM__REPL__V1__RESULT__RESULT_STALE_EPOCH:
    case TANDEM__REPL__V1__RESULT__RESULT_SPLIT_BRAIN:
        ret = rep__sender_refused(s, resp) ? SEND_EXIT : SEND_RETRY;
        s->next = 0;
        break;
    case TANDEM__REPL__V1__RESULT__RESULT_NO_VOLUME:
        s->next = 0;
        ret = SEND_RETRY;
        break;
    case TANDEM__REPL__V1__RESULT__RESULT_BUSY:
        if (resp->copy_until) {
            s->copy_until = resp->copy_until;
            ret = SEND_SHIPPED; /* again, now with the touched ranges */
        } else if (resp->copy_unfinished) {
            s->copy_again = 1;
            ret = SEND_SHIPPED;
        } else {
            ret = SEND_RETRY;
        }
        break;
    case TANDEM__REPL__V1__RESULT__RESULT_CORRUPT:
        snprintf(e, sizeof(e), "peer refused batch %" PRIu64 "..%" PRIu64
                 " as corrupt: %s", b.first_seq, b.last_seq, resp->message);
        rep__vol_state(v, REP_LINK_KEEP, REP_ST_ERROR, e);
        {
            char q[sizeof(e) + 16];
            tlog_error("rep.corrupt", "vol=%s msg=%s", v->id,
                       tlog_q(q, sizeof(q), e));
        }
        ret = SEND_RETRY;
        break;
    default:
        snprintf(e, sizeof(e), "peer: %s", resp->message);
        rep__vol_state(v, REP_LINK_DOWN, REP_ST_KEEP, e);
        s->next = 0;
        ret = SEND_RETRY;
    }
out:
    if (resp) protobuf_c_message_free_unpacked(&resp->base, NULL);
    free(cbuf);
    free(tp);
    free(touched.a);
    jr_batch_free(&b);
    return ret;
}

/* The dirty map only ever names what dropped entries touched, and every
 * dropped entry lies below the tail.  A trim (journal cap) can drop
 * entries the peer already applied but has not acknowledged yet (the ack
 * is recorded after the answer): then the map names nothing the peer
 * lacks, this sender keeps shipping without meeting JR_ETRIMMED, and
 * nothing would clear the map; once the writes stop the volume would stay
 * in dirty tracking for good (wait-sync, status and trims all see it).
 * So when the peer's applied position (s->next - 1) is at or past
 * tail - 1, clear the map without a copy, under jr.h's guards: if a trim
 * ran since the stat (tail moved or the map grew) the clear is refused
 * and the next round looks again. */
static int count_cb(uint64_t off, uint64_t len, void *arg)
{
    (void)off;
    (void)len;
    (*(uint64_t *)arg)++;
    return 0;
}

static void sender_dirty_drop(struct sender *s, const struct jr_info *info)
{
    uint64_t gen = 0, nreg = 0;
    int rc = jr_dirty_iter_gen(s->r->st, s->v->id, &gen, count_cb, &nreg);
    if (rc == 0)
        rc = jr_dirty_clear_gen(s->r->st, s->v->id, info->tail, gen);
    if (rc == 0)
        tlog_info("rep.dirty_dropped", "vol=%s tail=%" PRIu64
                  " peer_applied=%" PRIu64 " regions=%" PRIu64
                  " msg=\"the peer has every trimmed entry\"", s->v->id,
                  info->tail, s->next - 1, nreg);
    else if (rc != -EAGAIN && rc != JR_ETRIMMED)
        tlog_warn("rep.dirty_drop_failed", "vol=%s err=%d (%s)", s->v->id,
                  rc, jr_strerror(rc));
}

static void *sender_main(void *arg)
{
    struct sender *s = arg;
    rep_ctx *r = s->r;
    struct rep_vol *v = s->v;
    int idle_ms = 1;
    int64_t idle_since = 0, elig_ms = 0;
    prefetch_start(&s->pf, r, v->id);
    tlog_info("rep.sender_start", "vol=%s peer=%s", v->id, r->peer_region);
    while (!__atomic_load_n(&r->stopping, __ATOMIC_ACQUIRE)) {
        pthread_mutex_lock(&v->mu);
        int stop = v->stop;
        pthread_mutex_unlock(&v->mu);
        if (stop) break;
        struct jr_info info;
        int rc = jr_volume_stat(r->st, v->id, &info);
        if (rc == -ENOENT) break;
        if (rc < 0) {
            sender_backoff(s, "volume stat failed");
            continue;
        }
        /* The metadata check costs a store round trip or two: once a
         * second, or at once when the role or epoch moved. */
        int64_t now = tb_mono_ms();
        if (s->epoch != info.epoch || info.role != JR_ROLE_PRIMARY ||
            now - elig_ms >= 1000) {
            int el = rep__eligible(r, v->id, &info);
            if (el == 0) break;
            if (el < 0) {
                /* Unknown is not "not shipped": the sender stays. */
                sender_backoff(s, "volume metadata unreadable");
                continue;
            }
            elig_ms = now;
        }
        if (s->epoch != info.epoch) {
            s->epoch = info.epoch;
            s->next = 0;
            s->promoted_at = rep__meta_u64(r, v->id, REP_META_PROMOTED_AT);
        }
        if (s->next == 0) {
            /* Whatever is still on its way is stale now. */
            flight_drop(s->ahead);
            s->ahead = NULL;
            enum send_res pr = sender_probe(s, &info);
            if (pr == SEND_EXIT) break;
            if (pr == SEND_REFUSED) continue; /* rep__sender_refused waited */
            if (pr == SEND_NO_REPLICA) {
                enum send_res cr = rep__sender_copy(s, 1);
                if (cr == SEND_EXIT) break;
                if (cr != SEND_READY) sender_backoff(s, NULL);
                continue;
            }
            if (pr != SEND_READY) {
                sender_backoff(s, NULL);
                continue;
            }
            s->backoff_ms = 0;
        }
        if (s->copy_again) {
            s->copy_again = 0;
            enum send_res cr = rep__sender_copy(s, 0);
            if (cr == SEND_EXIT) break;
            if (cr != SEND_READY) {
                s->copy_again = 1;
                sender_backoff(s, NULL);
            }
            continue;
        }
        if (info.dirty_tracking && s->next >= info.tail)
            sender_dirty_drop(s, &info);
        /* Nothing past what the peer has: no journal read needed. */
        enum send_res sr =
            info.head >= s->next ? sender_step(s, &info) : SEND_IDLE;
        if (sr == SEND_TRIMMED) sr = rep__sender_copy(s, !info.dirty_tracking);
        if (sr == SEND_EXIT) break;
        if (sr == SEND_SHIPPED) {
            idle_ms = 1;
            idle_since = 0;
            continue;
        }
        if (sr == SEND_READY) continue; /* after a copy */
        if (sr != SEND_IDLE) {
            sender_backoff(s, NULL);
            continue;
        }
        /* Nothing new.  jr.h has no change notification: poll, quickly
         * after activity, slowing to 50 ms when idle (lag stays well under
         * the 0.5 s goal), and to 200 ms after 10 s without writes, so
         * many idle volumes cost the store little. */
        rep__vol_state(v, REP_LINK_UP,
                       info.role == JR_ROLE_PRIMARY ? REP_ST_REPLICATING
                                                    : REP_ST_DRAINING, NULL);
        /* E.g. after a copy that left nothing to ship (no store access
         * when it already says so). */
        rep__sender_health(s, REP_H_OK, "");
        pthread_mutex_lock(&v->mu);
        v->oldest_unacked_ns = 0;
        pthread_mutex_unlock(&v->mu);
        if (!idle_since) idle_since = now;
        if (rep__vol_wait(r, v, idle_ms)) break;
        if (idle_ms < 50) idle_ms *= 2;
        else if (now - idle_since > 10000) idle_ms = 200;
    }
    pthread_mutex_lock(&v->mu);
    v->thr_running = 0;
    if (v->link_state == REP_LINK_UP || v->link_state == REP_LINK_BACKOFF ||
        v->link_state == REP_LINK_DOWN)
        v->link_state = REP_LINK_STOPPED;
    pthread_mutex_unlock(&v->mu);
    flight_drop(s->ahead);
    s->ahead = NULL;
    pipe_slot(s, 0);
    prefetch_stop(&s->pf);
    tlog_info("rep.sender_stop", "vol=%s", v->id);
    free(s);
    return NULL;
}

void rep__sender_ensure(rep_ctx *r, struct rep_vol *v)
{
    pthread_mutex_lock(&v->mu);
    if (v->thr_running) {
        pthread_mutex_unlock(&v->mu);
        return;
    }
    int join = v->thr_joinable;
    v->thr_joinable = 0;
    pthread_mutex_unlock(&v->mu);
    if (join) pthread_join(v->thr, NULL);
    /* Created again under the id of a deleted primary whose replica is
     * still to be deleted: the old replica goes first.  Checked
     * here, when a sender would start, not on every eligibility check. */
    struct jr_tomb t;
    if (jr_tomb_get(r->st, v->id, &t) == 0) return;
    struct sender *s = calloc(1, sizeof(*s));
    if (!s) return;
    s->r = r;
    s->v = v;
    pthread_mutex_lock(&v->mu);
    v->stop = 0;
    v->thr_running = 1;
    if (pthread_create(&v->thr, NULL, sender_main, s) != 0) {
        v->thr_running = 0;
        free(s);
    } else {
        v->thr_joinable = 1;
    }
    pthread_mutex_unlock(&v->mu);
}

