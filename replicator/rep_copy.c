/*
 * rep_copy.c: the region-copy catch-up.  Sender side: a volume whose
 * journal passed its cap (JR_ETRIMMED), or a replica that must be made
 * from scratch, is brought current by copying image regions (the dirty
 * map, or everything) over CopyRegions, following jr.h's catch-up
 * protocol; the region list of an unfinished copy is kept durably
 * (jr_copylist_*) so a failed copy forgets nothing.  The receiver's side
 * (CopyRegions in rep_link.c) keeps the secondary's last consistent state
 * recoverable meanwhile in the journal's copy window (jr_copywin_*).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rep_send.h"
#include "tlog.h"

int rep__regs_add(struct rep_regs *g, uint64_t off, uint64_t len)
{
    /* Merge with the previous range when adjacent (callers add in
     * offset order). */
    if (g->n && off >= g->a[g->n - 1].offset &&
        g->a[g->n - 1].offset + g->a[g->n - 1].length >= off) {
        uint64_t end = off + len, pend = g->a[g->n - 1].offset +
                                          g->a[g->n - 1].length;
        if (end > pend) g->a[g->n - 1].length = end - g->a[g->n - 1].offset;
        return 0;
    }
    if (g->n == g->cap) {
        size_t c = g->cap ? 2 * g->cap : 64;
        void *p = realloc(g->a, c * sizeof(*g->a));
        if (!p) return -ENOMEM;
        g->a = p;
        g->cap = c;
    }
    Tandem__Repl__V1__Region *x = &g->a[g->n++];
    tandem__repl__v1__region__init(x);
    x->offset = off;
    x->length = len;
    return 0;
}

int rep__regs_cb(uint64_t off, uint64_t len, void *arg)
{
    return rep__regs_add(arg, off, len);
}

static int cmp_reg(const void *a, const void *b)
{
    const Tandem__Repl__V1__Region *x = a, *y = b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Sort and merge overlapping ranges. */
int rep__regs_normalize(struct rep_regs *g)
{
    if (g->n < 2) return 0;
    qsort(g->a, g->n, sizeof(*g->a), cmp_reg);
    struct rep_regs m = {0};
    int rc = 0;
    for (size_t i = 0; i < g->n && !rc; i++)
        rc = rep__regs_add(&m, g->a[i].offset, g->a[i].length);
    free(g->a);
    *g = m;
    return rc;
}

/* The region list of an unfinished copy is kept by the journal
 * (jr_copylist_*), because the dirty map is cleared when the copy
 * starts: a failed copy must not forget its regions, nor the position
 * whose entries it relies on being shipped afterwards. */
static int copylist_load(rep_ctx *r, const char *id, struct rep_regs *g,
                         uint64_t *resume)
{
    return jr_copylist_load(r->st, id, resume, rep__regs_cb, g);
}

static int copylist_save(rep_ctx *r, const char *id, const struct rep_regs *g,
                         uint64_t resume)
{
    struct jr_range *a = malloc((g->n + 1) * sizeof(*a));
    if (!a) return -ENOMEM;
    for (size_t i = 0; i < g->n; i++) {
        a[i].off = g->a[i].offset;
        a[i].len = g->a[i].length;
    }
    int rc = jr_copylist_save(r->st, id, resume, a, g->n);
    free(a);
    return rc;
}

static int copy_call(struct sender *s, Tandem__Repl__V1__CopyRegionsRequest *req,
                     Tandem__Repl__V1__CopyRegionsResponse **resp, char *msg,
                     size_t msz)
{
    ProtobufCMessage *out = NULL;
    int code = rpc_client_call(
        s->r->peer, "/tandem.repl.v1.Link/CopyRegions", &req->base,
        &tandem__repl__v1__copy_regions_response__descriptor, &out,
        REP_SHIP_TIMEOUT_MS, 0, msg, msz);
    *resp = (Tandem__Repl__V1__CopyRegionsResponse *)out;
    if (code == RPC_OK &&
        (*resp)->result != TANDEM__REPL__V1__RESULT__RESULT_OK) {
        snprintf(msg, msz, "%s", (*resp)->message);
        return -(int)(*resp)->result;
    }
    return code;
}

static int is_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i]) return 0;
    return 1;
}

/* Bring the peer current by copying image regions: the dirty map (journal
 * cap) or, for a replica that does not exist or whose journal position we
 * no longer hold, the whole image.  Returns SEND_READY (shipping resumes
 * at s->next), SEND_EXIT or SEND_RETRY. */
enum send_res rep__sender_copy(struct sender *s, int full)
{
    rep_ctx *r = s->r;
    struct rep_vol *v = s->v;
    struct jr_info info;
    struct rep_regs g = {0};
    struct rep_spec sb = {0};
    Tandem__Repl__V1__CopyRegionsResponse *resp = NULL;
    uint8_t *buf = NULL;
    char msg[256], copy_id[40], e[400];
    enum send_res ret = SEND_RETRY;
    int rc;
    uint64_t bytes = 0, nreg = 0;
    int64_t t0 = tb_mono_ms();

    rep__vol_state(v, REP_LINK_CATCHING_UP, REP_ST_CATCHING_UP, NULL);
    rep__sender_health(s, REP_H_COPYING,
                       full ? "full image copy to the peer's replica"
                            : "region copy: the peer lacks entries the "
                              "journal no longer holds");
    pthread_mutex_lock(&v->mu);
    v->copy_active = 1;
    pthread_mutex_unlock(&v->mu);
    /* The catch-up protocol of jr.h: T = tail (every entry >= T is still
     * in the journal, every dropped entry the peer lacks is in the dirty
     * map), take the map at generation G, resume the journal at T only if
     * the map is still at G and nothing >= T was trimmed; then copy, then
     * ship from T (those entries overwrite, in order, whatever newer bytes
     * the copy read). */
    /* Open the session on the peer first: while it is unreachable nothing
     * changes here (the dirty map stays as it is). */
    if ((rc = jr_volume_stat(r->st, v->id, &info)) < 0) goto out;
    uint64_t begin_size = info.size;
    snprintf(copy_id, sizeof(copy_id), "%016" PRIx64 "%08lx",
             (uint64_t)tb_wall_ns(), (unsigned long)random());
    /* A replica created by this copy starts empty at seq 0, so that until
     * the copy finishes its consistent state (the rollback target) is the
     * empty volume, not a position it does not hold yet. */
    if ((rc = rep__spec_make(r, v->id, &info, 1, &sb)) < 0) goto out;
    Tandem__Repl__V1__CopyRegionsRequest req =
        TANDEM__REPL__V1__COPY_REGIONS_REQUEST__INIT;
    req.volume_id = v->id;
    req.from_region = r->region;
    req.epoch = info.epoch;
    req.from_primary = 1; /* a sender's copy is primary or draining */
    req.copy_id = copy_id;
    req.begin = 1;
    req.spec = &sb.spec;
    rc = copy_call(s, &req, &resp, msg, sizeof(msg));
    if (rc != RPC_OK) goto callfail;
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    resp = NULL;
    req.begin = 0;
    req.spec = NULL;

    uint64_t resume = 0;
    for (int tries = 0;; tries++) {
        uint64_t gen = 0, saved_resume = 0;
        g.n = 0;
        if ((rc = jr_volume_stat(r->st, v->id, &info)) < 0) goto out;
        if ((rc = copylist_load(r, v->id, &g, &saved_resume)) < 0) goto out;
        if (saved_resume && !info.dirty_tracking &&
            info.tail <= saved_resume) {
            /* A copy that failed before: its regions, plus the entries
             * from its resume position, which the journal still holds,
             * bring the peer current.  No full copy needed. */
            resume = saved_resume;
            full = 0;
            break;
        }
        if (full && !g.n) {
            for (uint64_t o = 0; o < info.size; o += REP_COPY_CHUNK) {
                uint64_t l = info.size - o < REP_COPY_CHUNK ? info.size - o
                                                             : REP_COPY_CHUNK;
                if ((rc = rep__regs_add(&g, o, l)) < 0) goto out;
            }
        }
        /* The dirty map covers every entry dropped since the peer's ack
         * so with it the saved regions stay sufficient even when
         * the journal passed the cap again. */
        if ((rc = jr_dirty_iter_gen(r->st, v->id, &gen, rep__regs_cb, &g)) < 0)
            goto out;
        if ((rc = rep__regs_normalize(&g)) < 0) goto out;
        /* T = tail (jr.h): entries in [tail, applied] are in the image
         * but not in the dirty map (they were never trimmed), so resuming
         * at applied + 1 would skip them for regions the map lacks. */
        resume = info.tail;
        /* Durable before the dirty map is cleared (see copylist_load). */
        if ((rc = copylist_save(r, v->id, &g, resume)) < 0) goto out;
        if (info.size != begin_size) {
            /* Resized since the session began: start over later. */
            rc = -EAGAIN;
            goto out;
        }
        if (!info.dirty_tracking) break;
        rc = jr_dirty_clear_gen(r->st, v->id, resume, gen);
        if (rc == 0) break;
        /* A trim ran since the stat: the map has grown, take it again. */
        if ((rc != -EAGAIN && rc != JR_ETRIMMED) || tries > 20) goto out;
    }
    /* Pin the journal from resume on for a peer that never acked (R-8
     * keeps entries for registered peers only). */
    uint64_t ack = 0;
    rc = jr_peer_ack_get(r->st, v->id, r->peer_region, &ack);
    if (rc == -ENOENT) rc = 0;
    /* Without the pin a trim could drop what the copy relies on being
     * shipped afterwards: no copy then (retried later). */
    if (rc == 0 && !ack && resume > 1)
        rc = jr_peer_ack_set(r->st, v->id, r->peer_region, resume - 1);
    if (rc < 0) goto out;

    buf = malloc(REP_COPY_CALL);
    Tandem__Repl__V1__Region rg[REP_COPY_CALL / 4096];
    Tandem__Repl__V1__Region *rp[REP_COPY_CALL / 4096];
    void *cbufs[REP_COPY_CALL / 4096];
    if (!buf) {
        rc = -ENOMEM;
        goto out;
    }
    size_t gi = 0;
    uint64_t goff = g.n ? g.a[0].offset : 0;
    /* Under --max-bandwidth, calls of about half a second of budget, so
     * the throttle stays smooth (the bucket lets one call into debt). */
    size_t call_max = REP_COPY_CALL;
    if (r->bucket.rate && r->bucket.rate / 2 < call_max)
        call_max = r->bucket.rate / 2 > 65536 ? r->bucket.rate / 2 : 65536;
    while (gi < g.n) {
        size_t used = 0, k = 0;
        while (gi < g.n && k < sizeof(rg) / sizeof(rg[0]) &&
               used < call_max) {
            uint64_t end = g.a[gi].offset + g.a[gi].length;
            if (end > info.size) end = info.size;
            if (goff >= end) {
                if (++gi < g.n) goff = g.a[gi].offset;
                continue;
            }
            uint64_t l = end - goff;
            if (l > REP_COPY_CHUNK) l = REP_COPY_CHUNK;
            if (l > call_max - used) l = call_max - used;
            uint8_t *p = buf + used;
            if ((rc = jr_image_read(r->st, v->id, goff, p, l)) < 0) {
                /* The LZ4 buffers of this call's regions so far. */
                for (size_t i = 0; i < k; i++) free(cbufs[i]);
                goto out;
            }
            Tandem__Repl__V1__Region *x = &rg[k];
            tandem__repl__v1__region__init(x);
            cbufs[k] = NULL;
            x->offset = goff;
            x->length = l;
            if (is_zero(p, l)) {
                x->zero = 1;
            } else {
                size_t cl;
                int c = rep__lz4(p, l, &cbufs[k], &cl);
                if (c == 1) {
                    x->data.data = cbufs[k];
                    x->data.len = cl;
                    x->compression =
                        TANDEM__REPL__V1__COMPRESSION__COMPRESSION_LZ4;
                } else {
                    x->data.data = p;
                    x->data.len = l;
                }
            }
            rp[k] = x;
            used += l;
            goff += l;
            k++;
            nreg++;
        }
        if (!k) break;
        size_t wire = 0;
        for (size_t i = 0; i < k; i++) wire += rg[i].data.len;
        rep__bucket_take(r, wire);
        req.n_regions = k;
        req.regions = rp;
        rc = copy_call(s, &req, &resp, msg, sizeof(msg));
        for (size_t i = 0; i < k; i++) free(cbufs[i]);
        if (rc != RPC_OK) goto callfail;
        protobuf_c_message_free_unpacked(&resp->base, NULL);
        resp = NULL;
        bytes += used;
        pthread_mutex_lock(&v->mu);
        v->wire_bytes += wire;
        v->raw_bytes += used;
        pthread_mutex_unlock(&v->mu);
        if (__atomic_load_n(&r->stopping, __ATOMIC_ACQUIRE)) goto out;
    }
    if ((rc = jr_volume_stat(r->st, v->id, &info)) < 0) goto out;
    req.n_regions = 0;
    req.regions = NULL;
    req.finish = 1;
    req.resume_seq = resume;
    req.consistent_at = info.head;
    rc = copy_call(s, &req, &resp, msg, sizeof(msg));
    if (rc != RPC_OK) goto callfail;
    jr_copylist_drop(r->st, v->id);
    s->next = resume;
    s->copy_until = info.head;
    rep__note_ack(s, resume - 1, 0, 0);
    tlog_info("rep.copy_done", "vol=%s full=%d regions=%" PRIu64
              " bytes=%" PRIu64 " resume=%" PRIu64 " consistent_at=%" PRIu64
              " ms=%" PRId64, v->id, full, nreg, bytes, resume, info.head,
              tb_mono_ms() - t0);
    ret = SEND_READY;
    goto out;
callfail:
    if (resp && (resp->result == TANDEM__REPL__V1__RESULT__RESULT_STALE_EPOCH ||
                 resp->result == TANDEM__REPL__V1__RESULT__RESULT_SPLIT_BRAIN)) {
        Tandem__Repl__V1__ShipBatchResponse sr =
            TANDEM__REPL__V1__SHIP_BATCH_RESPONSE__INIT;
        sr.result = resp->result;
        sr.epoch = resp->epoch;
        sr.role = resp->role; /* only a primary at a higher epoch fences */
        sr.message = resp->message;
        s->epoch = info.epoch;
        ret = rep__sender_refused(s, &sr) ? SEND_EXIT : SEND_RETRY;
    }
    snprintf(e, sizeof(e), "copy: %s: %s",
             rc > 0 ? rpc_code_name(rc) : "refused", msg);
    rep__vol_state(v, REP_LINK_DOWN, REP_ST_KEEP, e);
    /* Unreachable (a transport failure) is link-down; a refusal leaves
     * the copy unfinished: still "copying". */
    if (rc > 0) rep__sender_health(s, REP_H_LINK_DOWN, e);
    char q[sizeof(e) + 16];
    tlog_warn("rep.copy_failed", "vol=%s msg=%s", v->id,
              tlog_q(q, sizeof(q), e));
out:
    if (rc < 0 && ret == SEND_RETRY && !resp)
        tlog_warn("rep.copy_failed", "vol=%s err=%d (%s)", v->id, rc,
                  jr_strerror(rc));
    if (resp) protobuf_c_message_free_unpacked(&resp->base, NULL);
    pthread_mutex_lock(&v->mu);
    v->copy_active = 0;
    pthread_mutex_unlock(&v->mu);
    free(buf);
    free(g.a);
    rep__spec_free(&sb);
    return ret;
}
