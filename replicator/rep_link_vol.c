/*
 * rep_link_vol.c: the peer link's per-volume queries and its delete
 * (proto/tandem_repl.proto): GetVolume (roles and positions, for the
 * peer's operator commands and fencing decisions), JournalRegions and
 * ReadRegions (a resync's delta), DeleteReplica (a deleted primary's
 * replica, R-35).  Each admits its caller and checks that the volume
 * replicates with it (rep_link.c's rules) before anything else.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rep_link.h"
#include "tlog.h"

#define R(x) TANDEM__REPL__V1__RESULT__RESULT_##x


/* ------------------------------------------------------------ GetVolume */

int rep__link_getvol(void *svc, rpc_ctx *ctx, const ProtobufCMessage *reqm,
                    ProtobufCMessage **respm)
{
    rep_ctx *r = svc;
    const Tandem__Repl__V1__GetVolumeRequest *req = (const void *)reqm;
    struct rep_caller c;
    char dmsg[400];
    int rc;
    if ((rc = rep__link_admit(r, ctx, &c)) != RPC_OK ||
        (rc = rep__link_field(r, ctx, &c, "from_region", req->from_region)) !=
            RPC_OK)
        return rc;
    if (!rep__valid_id(req->volume_id))
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT, "bad volume id");
    Tandem__Repl__V1__GetVolumeResponse *resp = malloc(sizeof(*resp));
    if (!resp) return RPC_RESOURCE_EXHAUSTED;
    tandem__repl__v1__get_volume_response__init(resp);
    struct jr_info info;
    rc = jr_volume_stat(r->st, req->volume_id, &info);
    if (rc == -ENOENT) {
        resp->role = rep__sdup("");
        *respm = &resp->base;
        return RPC_OK;
    }
    if (rc < 0) {
        free(resp);
        return rpc_ctx_error(ctx, RPC_UNAVAILABLE, "stat %s: %s",
                             req->volume_id, jr_strerror(rc));
    }
    /* Only a volume replicated with the caller: its state is the peer's
     * business, no other region's. */
    if (rep__vol_authz(r, &c, req->volume_id, dmsg, sizeof(dmsg), NULL) < 0) {
        free(resp);
        return rep__link_deny(r, ctx, c.uri, "%s", dmsg);
    }
    resp->exists = 1;
    resp->role = rep__sdup(jr_role_name(info.role));
    resp->epoch = info.epoch;
    resp->head = info.head;
    resp->applied = info.applied;
    resp->size = info.size;
    resp->object_size = info.object_size;
    resp->tail = info.tail;
    resp->dirty_tracking = info.dirty_tracking;
    jr_peer_ack_get(r->st, req->volume_id, r->peer_region, &resp->acked);
    char *s = rep__meta(r, req->volume_id, REP_META_SPLIT);
    resp->split_brain = s != NULL;
    free(s);
    struct jr_copywin w;
    resp->copy_active = jr_copywin_get(r->st, req->volume_id, &w) == 0;
    resp->promoted_at_seq = rep__meta_u64(r, req->volume_id,
                                          REP_META_PROMOTED_AT);
    void **md;
    size_t n_md;
    if (rep__meta_entries(r, req->volume_id,
                          &tandem__repl__v1__get_volume_response__meta_entry__descriptor,
                          NULL, &md, &n_md) == 0) {
        resp->n_meta = n_md;
        resp->meta = (Tandem__Repl__V1__GetVolumeResponse__MetaEntry **)md;
    }
    *respm = &resp->base;
    return RPC_OK;
}

/* ------------------------------------------ JournalRegions / ReadRegions */

/* ReadRegions: bytes and regions per call, the least a region costs. */
#define REP_READ_MAX_BYTES (16u << 20)
#define REP_READ_MAX_REGIONS 1024u
#define REP_READ_MIN_COST (16u << 10)

struct jreg {
    Tandem__Repl__V1__Region **a;
    size_t n, cap;
};

static int jreg_cb(uint64_t off, uint64_t len, void *arg)
{
    struct jreg *j = arg;
    if (j->n >= 1000000) return -E2BIG;
    if (j->n == j->cap) {
        size_t c = j->cap ? 2 * j->cap : 64;
        void *p = realloc(j->a, c * sizeof(*j->a));
        if (!p) return -ENOMEM;
        j->a = p;
        j->cap = c;
    }
    Tandem__Repl__V1__Region *g = malloc(sizeof(*g));
    if (!g) return -ENOMEM;
    tandem__repl__v1__region__init(g);
    g->offset = off;
    g->length = len;
    j->a[j->n++] = g;
    return 0;
}

int rep__link_jregions(void *svc, rpc_ctx *ctx, const ProtobufCMessage *reqm,
                      ProtobufCMessage **respm)
{
    rep_ctx *r = svc;
    const Tandem__Repl__V1__JournalRegionsRequest *req = (const void *)reqm;
    struct jr_info info;
    struct rep_caller c;
    char dmsg[400];
    int rc;
    if ((rc = rep__link_admit(r, ctx, &c)) != RPC_OK) return rc;
    if (!rep__valid_id(req->volume_id))
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT, "bad volume id");
    rc = jr_volume_stat(r->st, req->volume_id, &info);
    if (rc < 0)
        return rpc_ctx_error(ctx, rc == -ENOENT ? RPC_NOT_FOUND : RPC_UNAVAILABLE,
                             "stat %s: %s", req->volume_id, jr_strerror(rc));
    if (rep__vol_authz(r, &c, req->volume_id, dmsg, sizeof(dmsg), NULL) < 0)
        return rep__link_deny(r, ctx, c.uri, "%s", dmsg);
    Tandem__Repl__V1__JournalRegionsResponse *resp = malloc(sizeof(*resp));
    if (!resp) return RPC_RESOURCE_EXHAUSTED;
    tandem__repl__v1__journal_regions_response__init(resp);
    resp->head = info.head;
    resp->applied = info.applied;
    uint64_t to = req->to_seq ? req->to_seq : info.head;
    struct jreg j = {0};
    if (req->from_seq > to) {
        resp->complete = 1;
    } else if (info.dirty_tracking || req->from_seq < info.tail) {
        resp->complete = 0;
    } else {
        rc = jr_journal_regions(r->st, req->volume_id, req->from_seq, to,
                                jreg_cb, &j);
        resp->complete = rc == 0;
        if (rc != 0) { /* the caller copies everything: send none (up to
                          a million were collected) */
            for (size_t i = 0; i < j.n; i++) free(j.a[i]);
            free(j.a);
            j.a = NULL;
            j.n = 0;
        }
    }
    resp->n_regions = j.n;
    resp->regions = j.a;
    *respm = &resp->base;
    return RPC_OK;
}

int rep__link_rregions(void *svc, rpc_ctx *ctx, const ProtobufCMessage *reqm,
                      ProtobufCMessage **respm)
{
    rep_ctx *r = svc;
    const Tandem__Repl__V1__ReadRegionsRequest *req = (const void *)reqm;
    struct jr_info info;
    uint64_t total = 0;
    struct rep_caller c;
    char dmsg[400];
    int arc;
    if ((arc = rep__link_admit(r, ctx, &c)) != RPC_OK) return arc;
    if (!rep__valid_id(req->volume_id))
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT, "bad volume id");
    /* Bounded cost per call: every region is a store read, an allocation
     * and an LZ4 pass however short it is, so besides the bytes the
     * number of regions is capped, and each counts as at least
     * REP_READ_MIN_COST against the byte budget (a resync asks for <= 64
     * regions of <= 1 MiB, < 9 MiB, per call). */
    if (req->n_regions > REP_READ_MAX_REGIONS)
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT, "%zu regions: at "
                             "most %u per call", req->n_regions,
                             REP_READ_MAX_REGIONS);
    int rc = jr_volume_stat(r->st, req->volume_id, &info);
    if (rc < 0)
        return rpc_ctx_error(ctx, rc == -ENOENT ? RPC_NOT_FOUND : RPC_UNAVAILABLE,
                             "stat %s: %s", req->volume_id, jr_strerror(rc));
    /* Bytes of a volume only to the region it replicates with (which
     * holds them anyway). */
    if (rep__vol_authz(r, &c, req->volume_id, dmsg, sizeof(dmsg), NULL) < 0)
        return rep__link_deny(r, ctx, c.uri, "%s", dmsg);
    for (size_t i = 0; i < req->n_regions; i++) {
        const Tandem__Repl__V1__Region *g = req->regions[i];
        if (g->offset >= info.size || g->length == 0 ||
            g->length > info.size - g->offset)
            return rpc_ctx_error(ctx, RPC_OUT_OF_RANGE, "region %" PRIu64
                                 "+%" PRIu64 " outside the image", g->offset,
                                 g->length);
        total += g->length > REP_READ_MIN_COST ? g->length
                                               : REP_READ_MIN_COST;
        if (total > REP_READ_MAX_BYTES)
            return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
                                 "at most 16 MiB per call (a region "
                                 "counts as %u bytes at least)",
                                 REP_READ_MIN_COST);
    }
    Tandem__Repl__V1__ReadRegionsResponse *resp = malloc(sizeof(*resp));
    if (!resp) return RPC_RESOURCE_EXHAUSTED;
    tandem__repl__v1__read_regions_response__init(resp);
    resp->applied = info.applied;
    resp->regions = calloc(req->n_regions + 1, sizeof(*resp->regions));
    if (!resp->regions) goto nomem;
    for (size_t i = 0; i < req->n_regions; i++) {
        const Tandem__Repl__V1__Region *g = req->regions[i];
        Tandem__Repl__V1__Region *o = malloc(sizeof(*o));
        if (!o) goto nomem;
        tandem__repl__v1__region__init(o);
        resp->regions[resp->n_regions++] = o;
        o->offset = g->offset;
        o->length = g->length;
        uint8_t *buf = malloc(g->length);
        if (!buf) goto nomem;
        rc = jr_image_read(r->st, req->volume_id, g->offset, buf, g->length);
        if (rc < 0) {
            free(buf);
            protobuf_c_message_free_unpacked(&resp->base, NULL);
            return rpc_ctx_error(ctx, RPC_UNAVAILABLE, "read: %s",
                                 jr_strerror(rc));
        }
        void *c = NULL;
        size_t cl = 0;
        if (req->compress && rep__lz4(buf, g->length, &c, &cl) == 1) {
            free(buf);
            o->data.data = c;
            o->data.len = cl;
            o->compression = TANDEM__REPL__V1__COMPRESSION__COMPRESSION_LZ4;
        } else {
            o->data.data = buf;
            o->data.len = g->length;
        }
    }
    *respm = &resp->base;
    return RPC_OK;
nomem:
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return RPC_RESOURCE_EXHAUSTED;
}

/* ------------------------------------------------------ DeleteReplica */

static int delrep_answer(ProtobufCMessage **respm, int result, int deleted,
                         const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int delrep_answer(ProtobufCMessage **respm, int result, int deleted,
                         const char *fmt, ...)
{
    Tandem__Repl__V1__DeleteReplicaResponse *a = malloc(sizeof(*a));
    if (!a) return RPC_RESOURCE_EXHAUSTED;
    tandem__repl__v1__delete_replica_response__init(a);
    char m[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof(m), fmt, ap);
    va_end(ap);
    a->result = result;
    a->deleted = deleted;
    a->message = rep__sdup(m);
    *respm = &a->base;
    return RPC_OK;
}

/* The peer's primary was deleted (R-35 tombstone there): delete our
 * replica unless it has become something of its own since. */
int rep__link_delrep(void *svc, rpc_ctx *ctx, const ProtobufCMessage *reqm,
                    ProtobufCMessage **respm)
{
    rep_ctx *r = svc;
    const Tandem__Repl__V1__DeleteReplicaRequest *req = (const void *)reqm;
    const char *id = req->volume_id;
    struct jr_info info;
    struct rep_caller c;
    char dmsg[400];
    int rc;
    if ((rc = rep__link_admit(r, ctx, &c)) != RPC_OK ||
        (rc = rep__link_field(r, ctx, &c, "from_region", req->from_region)) !=
            RPC_OK)
        return rc;
    if (!rep__valid_id(id) || req->epoch == 0)
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
                             "bad volume id or epoch");
    if (strcmp(req->from_region, r->peer_region))
        return delrep_answer(respm, R(WRONG_PEER), 0, "region %s takes "
                             "deletions from %s, not %s", r->region,
                             r->peer_region, req->from_region);
    struct rep_vol *v = rep__vol_get(r, id);
    if (!v) return RPC_RESOURCE_EXHAUSTED;
    /* A delete of a large replica can outlast the caller's deadline; its
     * retries must not pile up handler threads behind it. */
    if (pthread_mutex_trylock(&v->op_lock) != 0)
        return delrep_answer(respm, R(BUSY), 0, "%s is busy in %s (an "
                             "operation or a delete is running)", id,
                             r->region);
    char *split = NULL;
    rc = jr_volume_stat(r->st, id, &info);
    if (rc == 0) split = rep__meta(r, id, REP_META_SPLIT);
    if (rc == -ENOENT) {
        rc = delrep_answer(respm, R(OK), 0, "no replica of %s here", id);
    } else if (rc < 0) {
        rc = delrep_answer(respm, R(ERROR), 0, "stat %s: %s", id,
                           jr_strerror(rc));
    } else if (rep__vol_authz(r, &c, id, dmsg, sizeof(dmsg), NULL) < 0) {
        /* Only the region a replica came from deletes it. */
        rc = rep__link_deny(r, ctx, c.uri, "%s", dmsg);
    } else if (info.role != JR_ROLE_SECONDARY) {
        rc = delrep_answer(respm, R(SPLIT_BRAIN), 0, "%s is %s in %s at "
                           "epoch %" PRIu64 ": kept", id,
                           jr_role_name(info.role), r->region, info.epoch);
    } else if (split) {
        /* Fenced: it holds writes the deleted primary never had. */
        rc = delrep_answer(respm, R(SPLIT_BRAIN), 0, "%s in %s was fenced "
                           "(split brain): kept", id, r->region);
    } else if (info.epoch > req->epoch) {
        rc = delrep_answer(respm, R(STALE_EPOCH), 0, "%s in %s is at epoch %"
                           PRIu64 ", newer than the deleted primary's %"
                           PRIu64 ": kept", id, r->region, info.epoch,
                           req->epoch);
    } else {
        rc = jr_volume_delete(r->st, id);
        if (rc == 0 || rc == -ENOENT) {
            jr_copywin_drop(r->st, id); /* only now: it kept it consistent */
            tlog_info("rep.replica_deleted", "vol=%s epoch=%" PRIu64
                      " from=%s", id, info.epoch, req->from_region);
            rc = delrep_answer(respm, R(OK), rc == 0, "replica of %s "
                               "deleted in %s", id, r->region);
        } else {
            rc = delrep_answer(respm, rc == JR_ELOCKED ? R(BUSY) : R(ERROR),
                               0, "deleting %s: %s", id, jr_strerror(rc));
        }
    }
    pthread_mutex_unlock(&v->op_lock);
    free(split);
    return rc;
}

