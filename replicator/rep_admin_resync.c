/*
 * rep_admin_resync.c: the admin call Resync: a copy that came back after
 * a failover (a former primary, or a split-brain copy) becomes a
 * secondary of the peer's primary.  Run in the returned region.
 *
 * Only the regions written on either side after the last common journal
 * position (the peer's promoted_at_seq) are copied: this copy's own
 * journal says which it wrote, the peer's (JournalRegions) which it
 * wrote; the copy is fenced first (role secondary at the peer's epoch,
 * REP_META_RESYNC set until it is done), then the regions are read from
 * the peer (ReadRegions) and written to the image, and the volume resumes
 * as a secondary at the peer's applied position as of before the first
 * read.  A full copy when no journal covers the divergence (dirty
 * tracking, a trimmed journal, an interrupted resync) or on request.
 * Holds the volume's op_lock throughout.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rep_admin.h"
#include "rep_link.h"
#include "tlog.h"


/* Byte ranges of the image to copy. */
struct rregs {
    uint64_t *off, *len;
    size_t n, cap;
};

static int rregs_add(struct rregs *g, uint64_t off, uint64_t len)
{
    if (g->n == g->cap) {
        size_t c = g->cap ? 2 * g->cap : 64;
        uint64_t *a = realloc(g->off, c * sizeof(*a));
        if (!a) return -ENOMEM;
        g->off = a;
        uint64_t *b = realloc(g->len, c * sizeof(*b));
        if (!b) return -ENOMEM;
        g->len = b;
        g->cap = c;
    }
    g->off[g->n] = off;
    g->len[g->n] = len;
    g->n++;
    return 0;
}

static int rregs_cb(uint64_t off, uint64_t len, void *arg)
{
    return rregs_add(arg, off, len);
}

static int cmp_pair(const void *a, const void *b)
{
    const uint64_t *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0];
}

/* Sort, merge and align the ranges to 4 KiB (cheaper calls). */
static int rregs_normalize(struct rregs *g, uint64_t size)
{
    uint64_t *p = malloc((g->n + 1) * 16);
    if (!p) return -ENOMEM;
    for (size_t i = 0; i < g->n; i++) {
        uint64_t s = g->off[i] & ~4095ull;
        uint64_t e = (g->off[i] + g->len[i] + 4095) & ~4095ull;
        if (e > size) e = size;
        p[2 * i] = s;
        p[2 * i + 1] = e > s ? e - s : 0;
    }
    qsort(p, g->n, 16, cmp_pair);
    size_t k = 0;
    for (size_t i = 0; i < g->n; i++) {
        if (!p[2 * i + 1]) continue;
        if (k && g->off[k - 1] + g->len[k - 1] >= p[2 * i]) {
            uint64_t e = p[2 * i] + p[2 * i + 1];
            if (e > g->off[k - 1] + g->len[k - 1])
                g->len[k - 1] = e - g->off[k - 1];
        } else {
            g->off[k] = p[2 * i];
            g->len[k] = p[2 * i + 1];
            k++;
        }
    }
    g->n = k;
    free(p);
    return 0;
}

int rep__h_resync(void *svc, rpc_ctx *ctx, const ProtobufCMessage *reqm,
                  ProtobufCMessage **respm)
{
    rep_ctx *r = svc;
    const Tandem__Admin__V1__ResyncRequest *req = (const void *)reqm;
    struct jr_info info;
    Tandem__Repl__V1__GetVolumeResponse *pv = NULL;
    Tandem__Repl__V1__JournalRegionsResponse *jr = NULL;
    struct rregs g = {0};
    char msg[512] = "", m2[256];
    int code = RPC_OK, rc, changed = 0, full = req->full;
    uint64_t common = 0, bytes = 0, nreg = 0, p0 = 0;

    if (!req->volume_id[0])
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT, "volume_id is empty");
    const char *id = req->volume_id;
    struct rep_vol *v = rep__vol_get(r, id);
    if (!v) return RPC_RESOURCE_EXHAUSTED;
    pthread_mutex_lock(&v->op_lock);
    if ((rc = jr_volume_stat(r->st, id, &info)) < 0) {
        snprintf(msg, sizeof(msg), "volume %s: %s", id,
                 rc == -ENOENT ? "not found in this region" : jr_strerror(rc));
        code = rc == -ENOENT ? RPC_NOT_FOUND : RPC_UNAVAILABLE;
        goto out;
    }
    int c = rep__peer_getvol(r, id, &pv, m2, sizeof(m2));
    if (c != RPC_OK) {
        snprintf(msg, sizeof(msg), "peer region %s unreachable (%s: %s): "
                 "resync needs the new primary", r->peer_region,
                 rpc_code_name(c), m2);
        code = RPC_UNAVAILABLE;
        goto out;
    }
    if (!pv->exists || strcmp(pv->role, "primary")) {
        snprintf(msg, sizeof(msg), "%s is not primary in %s (%s): resync "
                 "makes this copy a secondary of the peer's primary", id,
                 r->peer_region, pv->exists ? pv->role : "absent");
        code = RPC_FAILED_PRECONDITION;
        goto out;
    }
    if (info.epoch > pv->epoch) {
        snprintf(msg, sizeof(msg), "%s: this copy's epoch %" PRIu64 " is "
                 "newer than %s's %" PRIu64 ": resync the peer instead", id,
                 info.epoch, r->peer_region, pv->epoch);
        code = RPC_FAILED_PRECONDITION;
        goto out;
    }
    char *split = rep__meta(r, id, REP_META_SPLIT);
    char *resync = rep__meta(r, id, REP_META_RESYNC);
    int has_split = split != NULL, has_resync = resync != NULL;
    free(split);
    free(resync);
    common = pv->promoted_at_seq;
    if (!full && !has_split && !has_resync &&
        info.role == JR_ROLE_SECONDARY &&
        (info.epoch == pv->epoch || info.head <= common)) {
        snprintf(msg, sizeof(msg), "%s is already a secondary of %s; nothing "
                 "to resync", id, r->peer_region);
        goto out;
    }
    /* What diverged since the common position: our entries after it and
     * the peer's.  Anything not covered by a journal: full copy. */
    if (has_resync) full = 1; /* an interrupted resync lost our ranges */
    if (!full && common == 0) full = 1;
    if (!full && info.head > common) {
        if (info.dirty_tracking || info.tail > common + 1)
            full = 1;
        else if (jr_journal_regions(r->st, id, common + 1, info.head,
                                    rregs_cb, &g) < 0)
            full = 1;
    }
    if (!full) {
        Tandem__Repl__V1__JournalRegionsRequest jq =
            TANDEM__REPL__V1__JOURNAL_REGIONS_REQUEST__INIT;
        jq.volume_id = (char *)id;
        jq.from_seq = common + 1;
        ProtobufCMessage *o = NULL;
        c = rpc_client_call(r->peer, "/tandem.repl.v1.Link/JournalRegions",
                            &jq.base,
                            &tandem__repl__v1__journal_regions_response__descriptor,
                            &o, REP_SHIP_TIMEOUT_MS, 1, m2, sizeof(m2));
        jr = (Tandem__Repl__V1__JournalRegionsResponse *)o;
        if (c != RPC_OK) {
            snprintf(msg, sizeof(msg), "JournalRegions from %s: %s: %s",
                     r->peer_region, rpc_code_name(c), m2);
            code = RPC_UNAVAILABLE;
            goto out;
        }
        if (!jr->complete) full = 1;
        for (size_t i = 0; !full && i < jr->n_regions; i++)
            rregs_add(&g, jr->regions[i]->offset, jr->regions[i]->length);
    }
    if (full) {
        g.n = 0;
        for (uint64_t o = 0; o < info.size; o += REP_COPY_CHUNK)
            rregs_add(&g, o, info.size - o < REP_COPY_CHUNK ? info.size - o
                                                            : REP_COPY_CHUNK);
    }
    if (pv->size != info.size) {
        snprintf(msg, sizeof(msg), "%s: size differs (%" PRIu64 " here, %"
                 PRIu64 " in %s): not supported by resync", id, info.size,
                 pv->size, r->peer_region);
        code = RPC_FAILED_PRECONDITION;
        goto out;
    }
    rregs_normalize(&g, info.size);
    /* Fence this copy and mark the resync, then stop our sender. */
    if ((rc = jr_meta_set(r->st, id, REP_META_RESYNC, "1")) < 0 ||
        (rc = jr_role_set(r->st, id, JR_ROLE_SECONDARY, pv->epoch)) < 0) {
        snprintf(msg, sizeof(msg), "%s: fence: %s", id, jr_strerror(rc));
        code = RPC_INTERNAL;
        goto out;
    }
    changed = 1;
    jr_meta_rm(r->st, id, REP_META_DRAINING);
    jr_meta_rm(r->st, id, REP_META_SPLIT);
    jr_copywin_drop(r->st, id);
    rep__vol_stop(v);
    tlog_info("rep.resync_start", "vol=%s common=%" PRIu64 " full=%d "
              "ranges=%zu peer_epoch=%" PRIu64, id, common, full, g.n,
              pv->epoch);
    /* The position we restart from: the peer's applied before any read;
     * the bytes we read may be newer, and the entries after p0 are
     * shipped and re-applied in order afterwards (R-30..R-34: applying
     * again in order is harmless). */
    protobuf_c_message_free_unpacked(&pv->base, NULL);
    pv = NULL;
    if ((c = rep__peer_getvol(r, id, &pv, m2, sizeof(m2))) != RPC_OK) {
        snprintf(msg, sizeof(msg), "peer %s: %s: %s", r->peer_region,
                 rpc_code_name(c), m2);
        code = RPC_UNAVAILABLE;
        goto out;
    }
    p0 = pv->applied;
    size_t i = 0;
    uint64_t off = g.n ? g.off[0] : 0;
    while (i < g.n) {
        Tandem__Repl__V1__Region rg[64], *rp[64];
        Tandem__Repl__V1__ReadRegionsRequest rq =
            TANDEM__REPL__V1__READ_REGIONS_REQUEST__INIT;
        size_t k = 0, used = 0;
        while (i < g.n && k < 64 && used < REP_COPY_CALL) {
            uint64_t end = g.off[i] + g.len[i];
            if (off >= end) {
                if (++i < g.n) off = g.off[i];
                continue;
            }
            uint64_t l = end - off;
            if (l > REP_COPY_CHUNK) l = REP_COPY_CHUNK;
            tandem__repl__v1__region__init(&rg[k]);
            rg[k].offset = off;
            rg[k].length = l;
            rp[k] = &rg[k];
            k++;
            used += l;
            off += l;
        }
        if (!k) break;
        rq.volume_id = (char *)id;
        rq.regions = rp;
        rq.n_regions = k;
        rq.compress = 1;
        ProtobufCMessage *o = NULL;
        c = rpc_client_call(r->peer, "/tandem.repl.v1.Link/ReadRegions",
                            &rq.base,
                            &tandem__repl__v1__read_regions_response__descriptor,
                            &o, REP_SHIP_TIMEOUT_MS, 1, m2, sizeof(m2));
        if (c != RPC_OK) {
            snprintf(msg, sizeof(msg), "ReadRegions from %s: %s: %s (resync "
                     "interrupted: run it again)", r->peer_region,
                     rpc_code_name(c), m2);
            code = RPC_UNAVAILABLE;
            goto out;
        }
        Tandem__Repl__V1__ReadRegionsResponse *rr = (void *)o;
        /* The peer answers each asked region, in order: anything else
         * would leave ranges uncopied (or write ones not asked for). */
        if (rr->n_regions != k) rc = -EBADMSG;
        for (size_t j = 0; j < rr->n_regions && rc >= 0; j++) {
            Tandem__Repl__V1__Region *x = rr->regions[j];
            void *raw = NULL;
            const void *p = x->data.data;
            if (x->offset != rg[j].offset || x->length != rg[j].length) {
                rc = -EBADMSG;
                break;
            }
            if (x->compression ==
                TANDEM__REPL__V1__COMPRESSION__COMPRESSION_LZ4) {
                rc = rep__unlz4(x->data.data, x->data.len, x->length, &raw);
                p = raw;
            } else if (x->data.len != x->length) {
                rc = -EBADMSG;
            }
            if (rc >= 0)
                rc = jr_image_write(r->st, id, x->offset, p, x->length);
            free(raw);
            bytes += x->length;
            nreg++;
        }
        protobuf_c_message_free_unpacked(o, NULL);
        if (rc < 0) {
            snprintf(msg, sizeof(msg), "%s: write: %s (resync interrupted: "
                     "run it again)", id, jr_strerror(rc));
            code = RPC_INTERNAL;
            goto out;
        }
    }
    if ((rc = rep__position_set(r, id, p0)) < 0) {
        snprintf(msg, sizeof(msg), "%s: position: %s", id, jr_strerror(rc));
        code = RPC_INTERNAL;
        goto out;
    }
    jr_meta_rm(r->st, id, REP_META_RESYNC);
    snprintf(msg, sizeof(msg), "%s resynced from %s: %s, %" PRIu64 " ranges, "
             "%" PRIu64 " bytes since common position %" PRIu64 "; now a "
             "secondary at %" PRIu64, id, r->peer_region,
             full ? "FULL COPY (no journal covers the divergence)"
                  : "delta copy", nreg, bytes, common, p0);
    tlog_info("rep.resynced", "vol=%s full=%d ranges=%" PRIu64 " bytes=%"
              PRIu64 " common=%" PRIu64 " position=%" PRIu64, id, full, nreg,
              bytes, common, p0);
out:
    pthread_mutex_unlock(&v->op_lock);
    if (pv) protobuf_c_message_free_unpacked(&pv->base, NULL);
    if (jr) protobuf_c_message_free_unpacked(&jr->base, NULL);
    free(g.off);
    free(g.len);
    if (code != RPC_OK) return rpc_ctx_error(ctx, code, "%s", msg);
    Tandem__Admin__V1__ResyncResponse *resp = malloc(sizeof(*resp));
    if (!resp) return RPC_RESOURCE_EXHAUSTED;
    tandem__admin__v1__resync_response__init(resp);
    resp->changed = changed;
    resp->full_copy = changed && full;
    resp->common_seq = common;
    resp->regions = nreg;
    resp->bytes_copied = bytes;
    resp->message = rep__sdup(msg);
    resp->volume = rep__admin_vstatus(r, id);
    *respm = &resp->base;
    return RPC_OK;
}
