/*
 * csi_addons.c: identity.Identity and replication.Controller of the
 * CSI-Addons spec on tandem (contract: csi_addons.h): request checks,
 * the volume's replication metadata, calls to the region replicator's
 * admin API, background resyncs.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "csi-addons/identity.pb-c.h"
#include "csi-addons/replication.pb-c.h"
#include "csi-addons/volumegroup.pb-c.h"
#include "csi_addons.h"
#include "csi_int.h"
#include "replicator/rep.h"
#include "tandem_admin.pb-c.h"
#include "tbase.h"
#include "tlog.h"

#define ADMIN "/tandem.admin.v1.Admin/"

/* A resync the replicator runs for us (ResyncVolume answers ready=false
 * until it is over). */
struct resync_job {
    char id[CSI_MAX_VOL_ID + 1];
    int running;
    int code;                   /* admin Resync's answer (when done) */
    char msg[512];
    struct csi_addons *a;
    struct resync_job *next;
};

struct csi_addons {
    csi_service *s;
    char admin_addr[512];
    struct rpc_tls tls;
    int use_tls;
    int timeout_ms;
    rpc_client *cli;
    pthread_mutex_t mu;         /* jobs, n_running */
    pthread_cond_t cv;          /* a job finished */
    struct resync_job *jobs;
    int n_running;
    char *tls_s[3];
};

/* -------------------------------------------------------------- helpers */

static void *reply(const ProtobufCMessageDescriptor *d)
{
    return csi__reply_new(d);
}

/* The volume id of a replication_source; 0 with *id set, or the RPC
 * code (message set).  group_code: what a volumegroup source gets. */
static int source_id(rpc_ctx *ctx, const Replication__ReplicationSource *src,
                     int group_code, const char **id)
{
    if (!src || src->type_case == REPLICATION__REPLICATION_SOURCE__TYPE__NOT_SET)
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
                             "replication_source missing");
    if (src->type_case == REPLICATION__REPLICATION_SOURCE__TYPE_VOLUMEGROUP)
        return rpc_ctx_error(ctx, group_code, "replication_source.volumegroup:"
                             " volume groups are not supported by this "
                             "driver (volumes only)");
    if (!src->volume || !src->volume->volume_id || !src->volume->volume_id[0])
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
                             "replication_source.volume.volume_id missing");
    *id = src->volume->volume_id;
    return 0;
}

/* This region's copy of id: 0 with *st and *info, or the RPC code. */
static int local_copy(csi_addons *a, rpc_ctx *ctx, const char *id,
                      st_store **st, struct jr_info *info)
{
    csi_service *s = a->s;
    size_t i = csi__local_index(s);
    *st = csi__store(s, i);
    if (!*st)
        return rpc_ctx_error(ctx, RPC_UNAVAILABLE, "store of region %s "
                             "unreachable", s->region);
    int rc = jr_volume_stat(*st, id, info);
    if (rc == -ENOENT)
        return rpc_ctx_error(ctx, RPC_NOT_FOUND, "volume %s not found in "
                             "region %s", id, s->region);
    if (rc < 0)
        return rpc_ctx_error(ctx, csi__rpc_code(rc), "volume %s: %s", id,
                             jr_strerror(rc));
    return 0;
}

/* The region the copy replicates with ("" if none), as the replicator
 * reads it (rep_meta.c vmeta_peer): the CSI keys, else the bare
 * StorageClass ones; a replica's peer_region names its own region, so
 * its peer is the region it came from (rep.peer).  0, or a negative
 * errno (unreadable: not "not replicated"). */
static int vol_peer(csi_addons *a, st_store *st, const char *id, char *out,
                    size_t len)
{
    char *rep = NULL, *peer = NULL;
    int rc;
    out[0] = 0;
    rc = jr_meta_get(st, id, REP_META_REPLICATION, &rep);
    if (rc == -ENOENT)
        rc = jr_meta_get(st, id, REP_META_REPLICATION_ALT, &rep);
    if (rc == -ENOENT) return 0;
    if (rc < 0) return rc;
    if (strcmp(rep, "async")) goto out;
    rc = jr_meta_get(st, id, REP_META_PEER_REGION, &peer);
    if (rc == -ENOENT)
        rc = jr_meta_get(st, id, REP_META_PEER_REGION_ALT, &peer);
    if (rc < 0 && rc != -ENOENT) goto out;
    rc = 0;
    if (peer && !strcmp(peer, a->s->region)) {
        free(peer);
        peer = NULL;
        rc = jr_meta_get(st, id, REP_META_PEER, &peer);
        if (rc < 0 && rc != -ENOENT) goto out;
        rc = 0;
    }
    if (peer) snprintf(out, len, "%s", peer);
out:
    free(rep);
    free(peer);
    return rc;
}

static int meta_has(st_store *st, const char *id, const char *key)
{
    char *v = NULL;
    int rc = jr_meta_get(st, id, key, &v);
    free(v);
    return rc == 0;
}

/* One admin call to this region's replicator: an RPC code, msg set. */
static int admin_call(csi_addons *a, const char *method,
                      const ProtobufCMessage *req,
                      const ProtobufCMessageDescriptor *rd,
                      ProtobufCMessage **resp, int timeout_ms, char *msg,
                      size_t msz)
{
    char path[128];
    pthread_mutex_lock(&a->mu);
    int rc = 0;
    if (!a->cli)
        rc = rpc_client_create(a->admin_addr, a->use_tls ? &a->tls : NULL,
                               &a->cli);
    rpc_client *cli = a->cli;
    pthread_mutex_unlock(&a->mu);
    if (rc < 0) {
        snprintf(msg, msz, "replicator admin API %.200s: %s", a->admin_addr,
                 strerror(-rc));
        return RPC_UNAVAILABLE;
    }
    snprintf(path, sizeof(path), ADMIN "%s", method);
    int code = rpc_client_call(cli, path, req, rd, resp,
                               timeout_ms > 0 ? timeout_ms : a->timeout_ms, 0,
                               msg, msz);
    if (code != RPC_OK)
        tlog_info("csi.addons.admin_call", "method=%s code=%s", method,
                  rpc_code_name(code));
    return code;
}

/* Time left for an admin call inside this RPC's deadline. */
static int call_budget(csi_addons *a, rpc_ctx *ctx)
{
    int64_t left = rpc_ctx_remaining_ms(ctx);
    int64_t t = a->timeout_ms;
    if (left != INT64_MAX && left - 300 < t) t = left - 300;
    return t < 100 ? 100 : (int)t;
}

/* ------------------------------------------------------------ parameters */

int csi_addons_params(const struct rg_config *cfg, const char *region,
                      size_t n, struct csi_mapent *const *ents, char *peer,
                      size_t peerlen, char *err, size_t errlen)
{
    const char *p = NULL;
    for (size_t i = 0; i < n; i++) {
        const char *k = ents[i]->key ? ents[i]->key : "";
        const char *v = ents[i]->value ? ents[i]->value : "";
        if (!strcmp(k, CSI_ADDONS_MIRRORING_MODE)) {
            if (strcmp(v, "journal")) {
                snprintf(err, errlen, "parameter %s: \"%.32s\" is not "
                         "supported (tandem replicates a block journal: "
                         "journal)", k, v);
                return -EINVAL;
            }
        } else if (!strcmp(k, CSI_ADDONS_SCHED_INTERVAL)) {
            /* Snapshot mirroring's period; a journal ships every write as
             * it comes, so there is nothing to schedule. */
        } else if (!strcmp(k, CSI_ADDONS_PEER_REGION)) {
            if (!rg_find(cfg, v) || !strcmp(v, region)) {
                snprintf(err, errlen, "parameter %s: \"%.64s\" is not a "
                         "configured region other than %s", k, v, region);
                return -EINVAL;
            }
            p = v;
        } else if (!strncmp(k, "replication.storage.openshift.io/", 33) ||
                   !strncmp(k, "csi.storage.k8s.io/", 19)) {
            /* The sidecar's own keys (secret names): not ours. */
        } else {
            snprintf(err, errlen, "parameter %.64s: unknown (known: %s, %s, "
                     "%s)", k, CSI_ADDONS_MIRRORING_MODE,
                     CSI_ADDONS_SCHED_INTERVAL, CSI_ADDONS_PEER_REGION);
            return -EINVAL;
        }
    }
    if (!p) p = rg_default_peer(cfg, region);
    if (!p) {
        snprintf(err, errlen, "region %s has no peer: give parameter %s",
                 region, CSI_ADDONS_PEER_REGION);
        return -EINVAL;
    }
    snprintf(peer, peerlen, "%s", p);
    return 0;
}

/* -------------------------------------------------------------- identity */

static int h_get_identity(void *svc, rpc_ctx *ctx, const ProtobufCMessage *req,
                          ProtobufCMessage **resp)
{
    csi_addons *a = svc;
    Identity__GetIdentityResponse *r =
        reply(&identity__get_identity_response__descriptor);
    r->name = csi__xstrdup(a->s->driver);
    r->vendor_version = csi__xstrdup(CSI_VERSION);
    *resp = &r->base;
    return RPC_OK;
}

csi_service *csi_addons_service(void *svc)
{
    return ((csi_addons *)svc)->s;
}

static Identity__Capability *cap_vg(int type)
{
    Identity__Capability *c = reply(&identity__capability__descriptor);
    c->type_case = IDENTITY__CAPABILITY__TYPE_VOLUME_GROUP;
    c->volume_group = reply(&identity__capability__volume_group__descriptor);
    c->volume_group->type = type;
    return c;
}

static Identity__Capability *cap_new(int service, int repl)
{
    Identity__Capability *c = reply(&identity__capability__descriptor);
    if (service) {
        c->type_case = IDENTITY__CAPABILITY__TYPE_SERVICE;
        c->service = reply(&identity__capability__service__descriptor);
        c->service->type = service;
    } else {
        c->type_case = IDENTITY__CAPABILITY__TYPE_VOLUME_REPLICATION;
        c->volume_replication =
            reply(&identity__capability__volume_replication__descriptor);
        c->volume_replication->type = repl;
    }
    return c;
}

static int h_get_caps(void *svc, rpc_ctx *ctx, const ProtobufCMessage *req,
                      ProtobufCMessage **resp)
{
    Identity__GetCapabilitiesResponse *r =
        reply(&identity__get_capabilities_response__descriptor);
    /* Exactly what this endpoint serves: the controller-side replication
     * service and its destination lookup. */
    r->capabilities = csi__xcalloc(8, sizeof(*r->capabilities));
    r->capabilities[r->n_capabilities++] =
        cap_new(IDENTITY__CAPABILITY__SERVICE__TYPE__CONTROLLER_SERVICE, 0);
    r->capabilities[r->n_capabilities++] = cap_new(
        0, IDENTITY__CAPABILITY__VOLUME_REPLICATION__TYPE__VOLUME_REPLICATION);
    r->capabilities[r->n_capabilities++] = cap_new(
        0, IDENTITY__CAPABILITY__VOLUME_REPLICATION__TYPE__GET_REPLICATION_DESTINATION_INFO);
    /* Volume groups (consistency groups, csi_addons_vg.c). */
    static const int vg[] = {
        IDENTITY__CAPABILITY__VOLUME_GROUP__TYPE__VOLUME_GROUP,
        IDENTITY__CAPABILITY__VOLUME_GROUP__TYPE__LIMIT_VOLUME_TO_ONE_VOLUME_GROUP,
        IDENTITY__CAPABILITY__VOLUME_GROUP__TYPE__MODIFY_VOLUME_GROUP,
        IDENTITY__CAPABILITY__VOLUME_GROUP__TYPE__GET_VOLUME_GROUP,
        IDENTITY__CAPABILITY__VOLUME_GROUP__TYPE__LIST_VOLUME_GROUPS};
    for (size_t i = 0; i < sizeof vg / sizeof vg[0]; i++)
        r->capabilities[r->n_capabilities++] = cap_vg(vg[i]);
    *resp = &r->base;
    return RPC_OK;
}

static int h_probe(void *svc, rpc_ctx *ctx, const ProtobufCMessage *req,
                   ProtobufCMessage **resp)
{
    csi_addons *a = svc;
    size_t i = csi__local_index(a->s);
    st_store *st = csi__store(a->s, i);
    int rc = st ? st_ping(st) : -EIO;
    if (rc < 0)
        return rpc_ctx_error(ctx, RPC_FAILED_PRECONDITION, "store of region "
                             "%s unreachable: %s", a->s->region,
                             st_strerror(rc));
    Identity__ProbeResponse *r = reply(&identity__probe_response__descriptor);
    r->ready = reply(&google__protobuf__bool_value__descriptor);
    r->ready->value = 1;
    *resp = &r->base;
    return RPC_OK;
}

/* ----------------------------------------------------- enable / disable */

static int h_enable(void *svc, rpc_ctx *ctx, const ProtobufCMessage *reqm,
                    ProtobufCMessage **resp)
{
    csi_addons *a = svc;
    const Replication__EnableVolumeReplicationRequest *req = (const void *)reqm;
    const char *id;
    char peer[RG_MAX_NAME + 1], cur[RG_MAX_NAME + 1], err[256];
    st_store *st;
    struct jr_info info;
    int code = source_id(ctx, req->replication_source, RPC_INVALID_ARGUMENT,
                         &id);
    if (code) return code;
    if (csi_addons_params(a->s->cfg, a->s->region, req->n_parameters,
                          (struct csi_mapent *const *)req->parameters, peer,
                          sizeof(peer), err, sizeof(err)) < 0)
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT, "%s", err);
    if ((code = csi__lock_volume(a->s, ctx, id))) return code;
    if ((code = local_copy(a, ctx, id, &st, &info))) goto out;
    int rc = vol_peer(a, st, id, cur, sizeof(cur));
    if (rc < 0) {
        code = rpc_ctx_error(ctx, csi__rpc_code(rc), "volume %s: metadata "
                             "unreadable: %s", id, jr_strerror(rc));
        goto out;
    }
    if (info.role != JR_ROLE_PRIMARY) {
        /* A replica: replication is on, driven from its primary's
         * region. */
        if (cur[0]) goto out;
        code = rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT, "volume %s is %s in "
                             "%s: enable replication where it is primary",
                             id, jr_role_name(info.role), a->s->region);
        goto out;
    }
    if (cur[0]) {
        if (strcmp(cur, peer))
            code = rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT, "volume %s "
                                 "already replicates to %s, not %s: disable "
                                 "it first", id, cur, peer);
        goto out; /* repeat: nothing to do */
    }
    /* Acks left by a disable that raced with a sender: released first,
     * so the new replica starts from a full copy, never from a stale
     * acknowledged position. */
    rc = jr_peers_release(st, id);
    if (rc == 0) rc = jr_meta_set(st, id, REP_META_PEER_REGION, peer);
    if (rc == 0 && meta_has(st, id, REP_META_PEER_REGION_ALT))
        rc = jr_meta_rm(st, id, REP_META_PEER_REGION_ALT);
    /* The switch itself last: the replicator's scanner sees a complete
     * configuration or none. */
    if (rc == 0) rc = jr_meta_set(st, id, REP_META_REPLICATION, "async");
    if (rc < 0) {
        code = rpc_ctx_error(ctx, csi__rpc_code(rc), "volume %s: enabling "
                             "replication: %s", id, jr_strerror(rc));
        goto out;
    }
    tlog_info("csi.addons.replication_enabled", "vol=%s region=%s peer=%s "
              "head=%" PRIu64 " tail=%" PRIu64, id, a->s->region, peer,
              info.head, info.tail);
out:
    csi__unlock(a->s, id);
    if (code == RPC_OK)
        *resp = reply(&replication__enable_volume_replication_response__descriptor);
    return code;
}

static int h_disable(void *svc, rpc_ctx *ctx, const ProtobufCMessage *reqm,
                     ProtobufCMessage **resp)
{
    csi_addons *a = svc;
    const Replication__DisableVolumeReplicationRequest *req =
        (const void *)reqm;
    const char *id;
    char cur[RG_MAX_NAME + 1];
    st_store *st;
    struct jr_info info;
    int code = source_id(ctx, req->replication_source, RPC_INVALID_ARGUMENT,
                         &id);
    if (code) return code;
    if ((code = csi__lock_volume(a->s, ctx, id))) return code;
    if ((code = local_copy(a, ctx, id, &st, &info))) goto out;
    int rc = vol_peer(a, st, id, cur, sizeof(cur));
    if (rc < 0) {
        code = rpc_ctx_error(ctx, csi__rpc_code(rc), "volume %s: metadata "
                             "unreadable: %s", id, jr_strerror(rc));
        goto out;
    }
    if (info.role != JR_ROLE_PRIMARY) {
        code = rpc_ctx_error(ctx, RPC_FAILED_PRECONDITION, "volume %s is %s "
                             "in %s: disable replication where it is "
                             "primary", id, jr_role_name(info.role),
                             a->s->region);
        goto out;
    }
    /* Shipping stops first (the replicator re-reads eligibility at least
     * once a second), then the peer's replica goes (tombstone) and the
     * journal is no longer kept for it.  Run on every repeat too: it
     * finishes a disable that was interrupted or raced with a sender. */
    rc = 0;
    if (cur[0] || meta_has(st, id, REP_META_REPLICATION))
        rc = jr_meta_set(st, id, REP_META_REPLICATION, "none");
    if (rc == 0 && meta_has(st, id, REP_META_REPLICATION_ALT))
        rc = jr_meta_set(st, id, REP_META_REPLICATION_ALT, "none");
    if (rc == 0 && meta_has(st, id, REP_META_PEER_REGION))
        rc = jr_meta_rm(st, id, REP_META_PEER_REGION);
    if (rc == 0) rc = jr_peers_release(st, id);
    if (rc < 0) {
        code = rpc_ctx_error(ctx, csi__rpc_code(rc), "volume %s: disabling "
                             "replication: %s", id, jr_strerror(rc));
        goto out;
    }
    if (cur[0])
        tlog_info("csi.addons.replication_disabled", "vol=%s region=%s "
                  "peer=%s replica=deleted-by-tombstone", id, a->s->region,
                  cur);
out:
    csi__unlock(a->s, id);
    if (code == RPC_OK)
        *resp = reply(&replication__disable_volume_replication_response__descriptor);
    return code;
}

/* ------------------------------------------------------- promote/demote */

/* Lock id, find this region's copy, require replication: 0 (caller
 * unlocks) or the RPC code (unlocked). */
static int replicated_copy(csi_addons *a, rpc_ctx *ctx, const char *id,
                           st_store **st, struct jr_info *info, char *peer,
                           size_t peerlen)
{
    int code = csi__lock_volume(a->s, ctx, id);
    if (code) return code;
    if ((code = local_copy(a, ctx, id, st, info))) goto fail;
    int rc = vol_peer(a, *st, id, peer, peerlen);
    if (rc < 0) {
        code = rpc_ctx_error(ctx, csi__rpc_code(rc), "volume %s: metadata "
                             "unreadable: %s", id, jr_strerror(rc));
        goto fail;
    }
    if (!peer[0]) {
        code = rpc_ctx_error(ctx, RPC_FAILED_PRECONDITION, "volume %s is not "
                             "replicated (EnableVolumeReplication first)",
                             id);
        goto fail;
    }
    return 0;
fail:
    csi__unlock(a->s, id);
    return code;
}

static int h_promote(void *svc, rpc_ctx *ctx, const ProtobufCMessage *reqm,
                     ProtobufCMessage **resp)
{
    csi_addons *a = svc;
    const Replication__PromoteVolumeRequest *req = (const void *)reqm;
    const char *id;
    char peer[RG_MAX_NAME + 1], msg[512];
    st_store *st;
    struct jr_info info;
    int code = source_id(ctx, req->replication_source, RPC_UNIMPLEMENTED, &id);
    if (code) return code;
    if ((code = replicated_copy(a, ctx, id, &st, &info, peer, sizeof(peer))))
        return code;
    int split = meta_has(st, id, REP_META_SPLIT);
    if (info.role == JR_ROLE_PRIMARY && !split) goto out; /* repeat */
    if (info.role == JR_ROLE_PRIMARY && split) {
        /* The replicator is fencing it (split mark first, then the role
         * goes to secondary): a moment later a forced promote can keep
         * this copy, a graceful one is refused. */
        code = rpc_ctx_error(ctx, RPC_ABORTED, "volume %s in %s is being "
                             "fenced (split brain: %s holds a newer epoch): "
                             "retry", id, a->s->region, peer);
        goto out;
    }
    Tandem__Admin__V1__PromoteRequest pr = TANDEM__ADMIN__V1__PROMOTE_REQUEST__INIT;
    pr.volume_id = (char *)id;
    pr.force = req->force;
    ProtobufCMessage *o = NULL;
    code = admin_call(a, "Promote", &pr.base,
                      &tandem__admin__v1__promote_response__descriptor, &o,
                      call_budget(a, ctx), msg, sizeof(msg));
    if (o) protobuf_c_message_free_unpacked(o, NULL);
    if (code == RPC_UNAVAILABLE && strstr(msg, "--force"))
        /* The replicator could not ask the peer: not safe without force. */
        code = rpc_ctx_error(ctx, RPC_FAILED_PRECONDITION, "%s (promote with "
                             "force if region %s is lost)", msg, peer);
    else if (code != RPC_OK)
        code = rpc_ctx_error(ctx, code, "%s", msg);
    else
        tlog_info("csi.addons.promoted", "vol=%s region=%s force=%d", id,
                  a->s->region, req->force);
out:
    csi__unlock(a->s, id);
    if (code == RPC_OK)
        *resp = reply(&replication__promote_volume_response__descriptor);
    return code;
}

static int h_demote(void *svc, rpc_ctx *ctx, const ProtobufCMessage *reqm,
                    ProtobufCMessage **resp)
{
    csi_addons *a = svc;
    const Replication__DemoteVolumeRequest *req = (const void *)reqm;
    const char *id;
    char peer[RG_MAX_NAME + 1], msg[512];
    st_store *st;
    struct jr_info info;
    int code = source_id(ctx, req->replication_source, RPC_UNIMPLEMENTED, &id);
    if (code) return code;
    if ((code = replicated_copy(a, ctx, id, &st, &info, peer, sizeof(peer))))
        return code;
    if (info.role != JR_ROLE_PRIMARY &&
        !meta_has(st, id, REP_META_DRAINING))
        goto out; /* repeat */
    if (meta_has(st, id, REP_META_SPLIT)) {
        /* Fenced by the peer's newer epoch: it ships nothing and is
         * replaced by ResyncVolume; there is nothing to drain. */
        tlog_info("csi.addons.demote_fenced", "vol=%s region=%s", id,
                  a->s->region);
        goto out;
    }
    Tandem__Admin__V1__DemoteRequest dr = TANDEM__ADMIN__V1__DEMOTE_REQUEST__INIT;
    dr.volume_id = (char *)id;
    int budget = call_budget(a, ctx);
    dr.timeout_ms = budget > 500 ? (uint32_t)(budget - 300) : 200;
    ProtobufCMessage *o = NULL;
    code = admin_call(a, "Demote", &dr.base,
                      &tandem__admin__v1__demote_response__descriptor, &o,
                      budget, msg, sizeof(msg));
    if (o) protobuf_c_message_free_unpacked(o, NULL);
    if (code == RPC_DEADLINE_EXCEEDED)
        /* Demoted (no new writes), the rest still on its way to the peer:
         * the operation is pending; the repeat waits for it. */
        code = rpc_ctx_error(ctx, RPC_ABORTED, "%s", msg);
    else if (code != RPC_OK)
        code = rpc_ctx_error(ctx, code, "%s", msg);
    else
        tlog_info("csi.addons.demoted", "vol=%s region=%s", id, a->s->region);
out:
    csi__unlock(a->s, id);
    if (code == RPC_OK)
        *resp = reply(&replication__demote_volume_response__descriptor);
    return code;
}

/* ---------------------------------------------------------------- resync */

static void *resync_main(void *arg)
{
    struct resync_job *j = arg;
    csi_addons *a = j->a;
    Tandem__Admin__V1__ResyncRequest rr = TANDEM__ADMIN__V1__RESYNC_REQUEST__INIT;
    rr.volume_id = j->id;
    ProtobufCMessage *o = NULL;
    char msg[512];
    /* A resync copies what diverged: it may take long; the replicator's
     * handler holds the volume for as long as it runs. */
    int code = admin_call(a, "Resync", &rr.base,
                          &tandem__admin__v1__resync_response__descriptor, &o,
                          3600 * 1000, msg, sizeof(msg));
    if (o) protobuf_c_message_free_unpacked(o, NULL);
    tlog_info("csi.addons.resync_done", "vol=%s code=%s", j->id,
              rpc_code_name(code));
    pthread_mutex_lock(&a->mu);
    j->code = code;
    snprintf(j->msg, sizeof(j->msg), "%s", msg);
    j->running = 0;
    a->n_running--;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

static struct resync_job *job_find(csi_addons *a, const char *id)
{
    for (struct resync_job *j = a->jobs; j; j = j->next)
        if (!strcmp(j->id, id)) return j;
    return NULL;
}

static void job_drop(csi_addons *a, struct resync_job *j)
{
    for (struct resync_job **p = &a->jobs; *p; p = &(*p)->next)
        if (*p == j) {
            *p = j->next;
            free(j);
            return;
        }
}

/* 1 once the copy is a plain secondary: not fenced, no resync marker. */
static int copy_in_sync(st_store *st, const char *id)
{
    struct jr_info info;
    if (jr_volume_stat(st, id, &info) < 0) return 0;
    return info.role == JR_ROLE_SECONDARY && !meta_has(st, id, REP_META_SPLIT)
           && !meta_has(st, id, REP_META_RESYNC) &&
           !meta_has(st, id, REP_META_DRAINING);
}

static int h_resync(void *svc, rpc_ctx *ctx, const ProtobufCMessage *reqm,
                    ProtobufCMessage **resp)
{
    csi_addons *a = svc;
    const Replication__ResyncVolumeRequest *req = (const void *)reqm;
    const char *id;
    char peer[RG_MAX_NAME + 1];
    st_store *st;
    struct jr_info info;
    int ready = 0;
    int code = source_id(ctx, req->replication_source, RPC_UNIMPLEMENTED, &id);
    if (code) return code;
    if ((code = replicated_copy(a, ctx, id, &st, &info, peer, sizeof(peer))))
        return code;
    pthread_mutex_lock(&a->mu);
    struct resync_job *j = job_find(a, id);
    if (j && j->running) goto answer;
    if (j && j->code != RPC_OK) {
        /* Tell the failure once; the next call starts again. */
        code = j->code;
        char m[512];
        snprintf(m, sizeof(m), "%s", j->msg);
        job_drop(a, j);
        pthread_mutex_unlock(&a->mu);
        code = rpc_ctx_error(ctx, code == RPC_DEADLINE_EXCEEDED ? RPC_ABORTED
                                                                : code,
                             "resync of %s: %s", id, m);
        goto out;
    }
    pthread_mutex_unlock(&a->mu);
    if (j && copy_in_sync(st, id)) {
        ready = 1;
        goto out;
    }
    if (info.role == JR_ROLE_PRIMARY && !meta_has(st, id, REP_META_SPLIT)) {
        code = rpc_ctx_error(ctx, RPC_FAILED_PRECONDITION, "volume %s is "
                             "primary in %s: demote it first", id,
                             a->s->region);
        goto out;
    }
    pthread_mutex_lock(&a->mu);
    if (j) job_drop(a, j);
    j = csi__xcalloc(1, sizeof(*j));
    snprintf(j->id, sizeof(j->id), "%s", id);
    j->a = a;
    j->running = 1;
    pthread_t th;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&th, &at, resync_main, j) != 0) {
        pthread_attr_destroy(&at);
        pthread_mutex_unlock(&a->mu);
        free(j);
        code = rpc_ctx_error(ctx, RPC_RESOURCE_EXHAUSTED, "no thread");
        goto out;
    }
    pthread_attr_destroy(&at);
    j->next = a->jobs;
    a->jobs = j;
    a->n_running++;
    tlog_info("csi.addons.resync_started", "vol=%s region=%s peer=%s", id,
              a->s->region, peer);
    /* A resync with nothing to copy answers at once: wait a little (for
     * the event, not a sleep), so that case says ready in one call. */
    struct timespec ts = tb_deadline(CLOCK_MONOTONIC, 1000);
    while (j->running &&
           pthread_cond_timedwait(&a->cv, &a->mu, &ts) == 0)
        ;
    if (!j->running && j->code != RPC_OK) {
        code = j->code;
        char m[512];
        snprintf(m, sizeof(m), "%s", j->msg);
        job_drop(a, j);
        pthread_mutex_unlock(&a->mu);
        code = rpc_ctx_error(ctx, code, "resync of %s: %s", id, m);
        goto out;
    }
    int done = !j->running;
    pthread_mutex_unlock(&a->mu);
    if (done) ready = copy_in_sync(st, id);
    goto out;
answer:
    pthread_mutex_unlock(&a->mu);
out:
    csi__unlock(a->s, id);
    if (code == RPC_OK) {
        Replication__ResyncVolumeResponse *r =
            reply(&replication__resync_volume_response__descriptor);
        r->ready = ready;
        *resp = &r->base;
    }
    return code;
}

/* ------------------------------------------------------------------ info */

/* The answer from the replicator's figures for a primary (admin Status,
 * as `tandemctl status` shows them).  The one place to change when the
 * replicator reports a better figure (the RPO rework):
 *   last_sync_time, on the primary's clock: while writes are in flight,
 *     the time of the newest write the peer has applied (applied_ts_ms,
 *     that entry's timestamp read from the journal; when it was trimmed
 *     already, the time of the oldest write in flight, which bounds it
 *     from above: its entry's timestamp, else now minus lag_seconds,
 *     else the last successful exchange with the peer, else 0: never);
 *     when the peer has every
 *     write, now: nothing newer exists, and the head's own write time
 *     would make an idle, fully replicated volume look hours behind;
 *   last_sync_duration: how long the sync in progress has been running
 *     (that same age; 0 in sync);
 *   last_sync_bytes: journal bytes not yet acknowledged when in flight,
 *     else the bytes this replicator run has sent for the volume (wire);
 *   status: HEALTHY while shipping with the link up, DEGRADED while it
 *     cannot ship or catches up (link down, region copy, journal cap
 *     reached), ERROR when fenced (split brain) or in error. */
static void sync_info(const Tandem__Admin__V1__VolumeStatus *v, int64_t now_ms,
                      int64_t applied_ts_ms,
                      Replication__GetVolumeReplicationInfoResponse *r)
{
    double lag = v->lag_entries ? v->lag_seconds : 0;
    if (lag < 0) lag = 0;
    int64_t at_ms = now_ms - (int64_t)(lag * 1000.0);
    if (v->lag_entries) {
        if (applied_ts_ms > 0 && applied_ts_ms < now_ms) {
            /* The journal's figure. */
            at_ms = applied_ts_ms;
        } else if (lag == 0) {
            /* The replicator does not know the age of the oldest write in
             * flight (during a region copy, with the entries trimmed):
             * the peer had what it acknowledged at the last successful
             * exchange, at the latest; never synced: the epoch. */
            at_ms = v->last_sync_unix_ms > 0 && v->last_sync_unix_ms < now_ms
                        ? v->last_sync_unix_ms : 0;
        }
    }
    r->last_sync_time = reply(&google__protobuf__timestamp__descriptor);
    r->last_sync_time->seconds = at_ms / 1000;
    r->last_sync_time->nanos = (int32_t)((at_ms % 1000) * 1000000);
    r->last_sync_duration = reply(&google__protobuf__duration__descriptor);
    r->last_sync_duration->seconds = (int64_t)lag;
    r->last_sync_duration->nanos =
        (int32_t)((lag - (double)(int64_t)lag) * 1e9);
    r->last_sync_bytes = (int64_t)(v->lag_entries ? v->lag_bytes
                                                  : v->wire_bytes);
    if (r->last_sync_bytes < 0) r->last_sync_bytes = 0;
    const char *st = v->state ? v->state : "", *ln = v->link_state ? v->link_state : "";
    if (v->split_brain || !strcmp(st, "split-brain") || !strcmp(st, "error"))
        r->status = REPLICATION__GET_VOLUME_REPLICATION_INFO_RESPONSE__STATUS__ERROR;
    else if ((!strcmp(st, "replicating") || !strcmp(st, "draining")) &&
             (!strcmp(ln, "up") || !strcmp(ln, "idle")))
        r->status = REPLICATION__GET_VOLUME_REPLICATION_INFO_RESPONSE__STATUS__HEALTHY;
    else
        r->status = REPLICATION__GET_VOLUME_REPLICATION_INFO_RESPONSE__STATUS__DEGRADED;
    char m[1024];
    snprintf(m, sizeof(m), "state=%s link=%s peer=%s epoch=%" PRIu64
             " head=%" PRIu64 " acked=%" PRIu64 " lag_entries=%" PRIu64
             " lag_seconds=%.3f%s%s", st, ln, v->peer_region ? v->peer_region
             : "", v->epoch, v->head, v->acked, v->lag_entries, lag,
             v->last_error && v->last_error[0] ? " last_error=" : "",
             v->last_error ? v->last_error : "");
    r->status_message = csi__xstrdup(m);
}

static int h_info(void *svc, rpc_ctx *ctx, const ProtobufCMessage *reqm,
                  ProtobufCMessage **resp)
{
    csi_addons *a = svc;
    const Replication__GetVolumeReplicationInfoRequest *req =
        (const void *)reqm;
    const char *id;
    char peer[RG_MAX_NAME + 1], msg[512];
    st_store *st;
    struct jr_info info;
    int code = source_id(ctx, req->replication_source, RPC_UNIMPLEMENTED, &id);
    if (code) return code;
    if ((code = replicated_copy(a, ctx, id, &st, &info, peer, sizeof(peer))))
        return code;
    csi__unlock(a->s, id); /* a read: never holds the volume */
    if (info.role != JR_ROLE_PRIMARY)
        return rpc_ctx_error(ctx, RPC_FAILED_PRECONDITION, "volume %s is %s "
                             "in %s: replication info comes from the "
                             "primary", id, jr_role_name(info.role),
                             a->s->region);
    Tandem__Admin__V1__StatusRequest sr = TANDEM__ADMIN__V1__STATUS_REQUEST__INIT;
    char *ids[1] = {(char *)id};
    sr.volume_ids = ids;
    sr.n_volume_ids = 1;
    ProtobufCMessage *o = NULL;
    code = admin_call(a, "Status", &sr.base,
                      &tandem__admin__v1__status_response__descriptor, &o,
                      call_budget(a, ctx), msg, sizeof(msg));
    if (code != RPC_OK) return rpc_ctx_error(ctx, code, "%s", msg);
    Tandem__Admin__V1__StatusResponse *s = (void *)o;
    if (s->n_volumes != 1) {
        protobuf_c_message_free_unpacked(o, NULL);
        return rpc_ctx_error(ctx, RPC_NOT_FOUND, "replicator of %s has no "
                             "status for %s", a->s->region, id);
    }
    /* The newest write the peer applied: its entry, if still kept; else
     * the oldest one in flight (an upper bound), if kept. */
    int64_t applied_ts_ms = 0;
    const Tandem__Admin__V1__VolumeStatus *vs = s->volumes[0];
    for (uint64_t seq = vs->acked; vs->lag_entries && !applied_ts_ms &&
                                   seq <= vs->acked + 1; seq++) {
        struct jr_batch b = {0};
        if (seq && jr_tail_read(st, id, seq, 1, &b) == 0 && b.n_entries &&
            b.first_seq == seq)
            applied_ts_ms = b.oldest_ts_ns / 1000000;
        jr_batch_free(&b);
    }
    Replication__GetVolumeReplicationInfoResponse *r =
        reply(&replication__get_volume_replication_info_response__descriptor);
    sync_info(vs, s->now_unix_ms, applied_ts_ms, r);
    protobuf_c_message_free_unpacked(o, NULL);
    *resp = &r->base;
    return RPC_OK;
}

static int h_dest(void *svc, rpc_ctx *ctx, const ProtobufCMessage *reqm,
                  ProtobufCMessage **resp)
{
    csi_addons *a = svc;
    const Replication__GetReplicationDestinationInfoRequest *req =
        (const void *)reqm;
    const char *id;
    char peer[RG_MAX_NAME + 1];
    st_store *st;
    struct jr_info info;
    int code = source_id(ctx, req->replication_source, RPC_UNIMPLEMENTED, &id);
    if (code) return code;
    if ((code = replicated_copy(a, ctx, id, &st, &info, peer, sizeof(peer))))
        return code;
    csi__unlock(a->s, id);
    /* Volume ids carry no region (csi.h): the replica has the same id. */
    Replication__GetReplicationDestinationInfoResponse *r =
        reply(&replication__get_replication_destination_info_response__descriptor);
    r->replication_destination =
        reply(&replication__replication_destination__descriptor);
    r->replication_destination->type_case =
        REPLICATION__REPLICATION_DESTINATION__TYPE_VOLUME;
    r->replication_destination->volume =
        reply(&replication__replication_destination__volume_destination__descriptor);
    r->replication_destination->volume->volume_id = csi__xstrdup(id);
    *resp = &r->base;
    return RPC_OK;
}

/* --------------------------------------------------------------- service */

#define RM(name, req, resp, fn)                                               \
    {"/replication.Controller/" name, &replication__##req##__descriptor,     \
     &replication__##resp##__descriptor, fn}
static const struct rpc_method methods[] = {
    {"/identity.Identity/GetIdentity", &identity__get_identity_request__descriptor,
     &identity__get_identity_response__descriptor, h_get_identity},
    {"/identity.Identity/GetCapabilities",
     &identity__get_capabilities_request__descriptor,
     &identity__get_capabilities_response__descriptor, h_get_caps},
    {"/identity.Identity/Probe", &identity__probe_request__descriptor,
     &identity__probe_response__descriptor, h_probe},
    RM("EnableVolumeReplication", enable_volume_replication_request,
       enable_volume_replication_response, h_enable),
    RM("DisableVolumeReplication", disable_volume_replication_request,
       disable_volume_replication_response, h_disable),
    RM("PromoteVolume", promote_volume_request, promote_volume_response,
       h_promote),
    RM("DemoteVolume", demote_volume_request, demote_volume_response,
       h_demote),
    RM("ResyncVolume", resync_volume_request, resync_volume_response,
       h_resync),
    RM("GetVolumeReplicationInfo", get_volume_replication_info_request,
       get_volume_replication_info_response, h_info),
    RM("GetReplicationDestinationInfo",
       get_replication_destination_info_request,
       get_replication_destination_info_response, h_dest),
#define VM(name, req, resp, fn)                                               \
    {"/volumegroup.Controller/" name, &volumegroup__##req##__descriptor,     \
     &volumegroup__##resp##__descriptor, fn}
    VM("CreateVolumeGroup", create_volume_group_request,
       create_volume_group_response, csi_addons_vg_create),
    VM("ModifyVolumeGroupMembership", modify_volume_group_membership_request,
       modify_volume_group_membership_response, csi_addons_vg_modify),
    VM("DeleteVolumeGroup", delete_volume_group_request,
       delete_volume_group_response, csi_addons_vg_delete),
    VM("ListVolumeGroups", list_volume_groups_request,
       list_volume_groups_response, csi_addons_vg_list),
    VM("ControllerGetVolumeGroup", controller_get_volume_group_request,
       controller_get_volume_group_response, csi_addons_vg_get),
};

const struct rpc_method *csi_addons_methods(size_t *n)
{
    *n = sizeof(methods) / sizeof(methods[0]);
    return methods;
}

int csi_addons_create(csi_service *svc, const struct csi_addons_opts *o,
                      csi_addons **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!o->admin_addr || !o->admin_addr[0]) {
        snprintf(err, errlen, "the csi-addons endpoint needs the region "
                 "replicator's admin API (--replicator-admin)");
        return -EINVAL;
    }
    int tcp = strncmp(o->admin_addr, "unix:", 5) != 0;
    if (tcp && !(o->tls_ca && o->tls_cert && o->tls_key)) {
        snprintf(err, errlen, "--replicator-admin %s is TCP: give "
                 "--admin-tls-ca, --admin-tls-cert and --admin-tls-key (the "
                 "admin identity)", o->admin_addr);
        return -EINVAL;
    }
    csi_addons *a = csi__xcalloc(1, sizeof(*a));
    a->s = svc;
    snprintf(a->admin_addr, sizeof(a->admin_addr), "%s", o->admin_addr);
    a->timeout_ms = o->admin_timeout_ms > 0 ? o->admin_timeout_ms : 30000;
    if (tcp) {
        a->use_tls = 1;
        a->tls.ca_file = a->tls_s[0] = csi__xstrdup(o->tls_ca);
        a->tls.cert_file = a->tls_s[1] = csi__xstrdup(o->tls_cert);
        a->tls.key_file = a->tls_s[2] = csi__xstrdup(o->tls_key);
    }
    pthread_mutex_init(&a->mu, NULL);
    tb_cond_init_mono(&a->cv);
    *out = a;
    return 0;
}

void csi_addons_destroy(csi_addons *a)
{
    if (!a) return;
    struct timespec ts = tb_deadline(CLOCK_MONOTONIC, 5000);
    pthread_mutex_lock(&a->mu);
    while (a->n_running &&
           pthread_cond_timedwait(&a->cv, &a->mu, &ts) == 0)
        ;
    int left = a->n_running;
    pthread_mutex_unlock(&a->mu);
    if (left) {
        /* A resync thread still uses a: the process is exiting, leave it
         * (the replicator finishes the resync by itself). */
        tlog_warn("csi.addons.resync_abandoned", "running=%d", left);
        return;
    }
    while (a->jobs) job_drop(a, a->jobs);
    rpc_client_destroy(a->cli);
    for (int i = 0; i < 3; i++) free(a->tls_s[i]);
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cv);
    free(a);
}
