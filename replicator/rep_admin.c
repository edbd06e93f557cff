/*
 * rep_admin.c: the admin service (proto/tandem_admin.proto) that tandemctl
 * talks to: status (from snapshots, rep__snapshot), list, promote,
 * demote and failover, and the method tables (unix socket; TCP behind the
 * admin identity's gate); resync is in rep_admin_resync.c, the
 * damaged-journal calls are in rep_admin_journal.c.
 *
 * Role changes take the volume's op_lock, so they never interleave with a
 * batch or a region copy being applied to the same copy.  Everything is
 * idempotent: asking for the state a volume is already in answers OK with
 * changed=false.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rep_admin.h"
#include "rep_link.h"
#include "tlog.h"


/* ---------------------------------------------------------- status */

/* Add the volume's metadata to m (every "meta." key but our own "rep."
 * ones: what tandemctl's failover manifests are made from).  0, or a
 * negative errno with m's metadata left empty. */
static int vstatus_meta(rep_ctx *r, Tandem__Admin__V1__VolumeStatus *m)
{
    void **md;
    size_t n_md;
    if (m->n_metadata) return 0;
    int rc = rep__meta_entries(
        r, m->volume_id,
        &tandem__admin__v1__volume_status__metadata_entry__descriptor,
        REP_META_PREFIX, &md, &n_md);
    if (rc < 0) return rc;
    m->n_metadata = n_md;
    m->metadata = (Tandem__Admin__V1__VolumeStatus__MetadataEntry **)md;
    return 0;
}

/* The VolumeStatus message of one volume's figures. */
static Tandem__Admin__V1__VolumeStatus *vstatus_msg(rep_ctx *r,
                                                    const struct rep_vstat *s)
{
    Tandem__Admin__V1__VolumeStatus *m = malloc(sizeof(*m));
    if (!m) return NULL;
    tandem__admin__v1__volume_status__init(m);
    m->volume_id = rep__sdup(s->id);
    m->region = rep__sdup(s->info.region[0] ? s->info.region : r->region);
    m->peer_region = rep__sdup(s->peer_region);
    m->role = rep__sdup(s->info.role ? jr_role_name(s->info.role) : "");
    m->epoch = s->info.epoch;
    m->head = s->info.head;
    m->applied = s->info.applied;
    m->acked = s->acked;
    m->lag_entries = s->lag_entries;
    m->lag_bytes = s->lag_bytes;
    m->lag_seconds = s->lag_s;
    m->last_sync_unix_ms = s->last_sync_ms;
    m->throughput_bytes_per_s = s->rate;
    m->compression_ratio = s->ratio;
    m->link_state = rep__sdup(rep__link_name(s->link_state));
    m->state = rep__sdup(rep__state_name(s->state));
    m->split_brain = s->split_brain;
    m->dirty_tracking = s->info.dirty_tracking;
    m->size_bytes = s->info.size;
    m->replication = rep__sdup(s->replication);
    m->last_error = rep__sdup(s->last_error);
    m->applied_age_seconds = s->applied_age_s;
    m->rpo_seconds = s->rpo_s;
    m->rpo_view = rep__sdup(s->info.role == JR_ROLE_PRIMARY ? "primary"
                                                            : "replica");
    if (s->info.role != JR_ROLE_PRIMARY) {
        m->announced_head = s->rpo.ann_head;
        m->announced_head_ts_unix_ns = s->rpo.ann_head_ts_ns;
        m->link_last_up_unix_ms = s->rpo.link_up_ms;
    }
    m->peer_must_resync = s->peer_must_resync;
    m->must_resync = s->must_resync;
    m->wire_bytes = s->wire_bytes;
    m->raw_bytes = s->raw_bytes;
    m->batches = s->batches;
    m->copy_active = s->copy_active;
    /* A damaged journal as the header records it: the row says so
     * and where to look, whatever else the volume is doing. */
    m->journal_damaged_seq = s->info.damaged_seq;
    m->journal_damaged_object = s->info.damaged_object;
    m->journal_damaged_offset = s->info.damaged_offset;
    m->snapshot_count = s->n_snaps;
    if (s->snap_gap_first) {
        char g[200];
        snprintf(g, sizeof(g), "positions %" PRIu64 "..%" PRIu64 " came "
                 "by a region copy or were rewound by a resync: snapshots "
                 "of the primary there may be missing here, and this "
                 "copy's may differ from them", s->snap_gap_first,
                 s->snap_gap_last);
        m->snapshots_incomplete = rep__sdup(g);
    }
    if (s->info.damaged_seq) {
        char e[sizeof(s->last_error) + 200];
        snprintf(e, sizeof(e), "journal damaged at seq %" PRIu64 " (object %"
                 PRIu64 " offset %" PRIu64 "): see RUNBOOK 'A damaged "
                 "journal tail'%s%s", s->info.damaged_seq,
                 s->info.damaged_object, s->info.damaged_offset,
                 s->last_error[0] ? "; " : "", s->last_error);
        free(m->state);
        free(m->last_error);
        m->state = rep__sdup(rep__state_name(REP_ST_ERROR));
        m->last_error = rep__sdup(e);
    }
    /* For tandemctl's PV manifests; our own "rep." keys stay out.  Without
     * metadata (an error here) a status is still worth sending; failover
     * checks (vstatus_meta). */
    vstatus_meta(r, m);
    return m;
}

/* The VolumeStatus message of one volume, as it is now. */
static Tandem__Admin__V1__VolumeStatus *vstatus_of(rep_ctx *r, const char *id)
{
    struct rep_vstat s;
    rep__vol_status(r, id, &s);
    return vstatus_msg(r, &s);
}

Tandem__Admin__V1__VolumeStatus *rep__admin_vstatus(rep_ctx *r,
                                                    const char *id)
{
    return vstatus_of(r, id);
}

/* The groups (rep_group.c) into a Status answer. */
static int status_groups(rep_ctx *r, Tandem__Admin__V1__StatusResponse *resp)
{
    struct rep_group *g = malloc(REP_MAX_GROUPS * sizeof(*g));
    if (!g) return -ENOMEM;
    int n = rep__group_snapshot(r, g, REP_MAX_GROUPS);
    resp->groups = calloc((size_t)n + 1, sizeof(*resp->groups));
    if (!resp->groups) {
        free(g);
        return -ENOMEM;
    }
    for (int i = 0; i < n; i++) {
        Tandem__Admin__V1__GroupStatus *m = malloc(sizeof(*m));
        if (!m) break;
        tandem__admin__v1__group_status__init(m);
        m->group = rep__sdup(g[i].name);
        m->members = (uint32_t)g[i].n_members;
        m->role = rep__sdup(g[i].primary ? "primary" : "secondary");
        m->cut = g[i].cut;
        m->rpo_seconds = g[i].primary ? 0 : g[i].rpo_s;
        m->points = g[i].points;
        m->abandoned = g[i].abandoned;
        m->pause_p99_ms = rep__group_pause_q(&g[i], 0.99);
        resp->groups[resp->n_groups++] = m;
    }
    free(g);
    return 0;
}

static int h_status(void *svc, rpc_ctx *ctx, const ProtobufCMessage *reqm,
                    ProtobufCMessage **respm)
{
    rep_ctx *r = svc;
    const Tandem__Admin__V1__StatusRequest *req = (const void *)reqm;
    struct rep_snap snap;
    for (size_t i = 0; i < req->n_volume_ids; i++) {
        struct jr_info info;
        int rc = jr_volume_stat(r->st, req->volume_ids[i], &info);
        if (rc < 0)
            return rpc_ctx_error(ctx, rc == -ENOENT ? RPC_NOT_FOUND
                                                    : RPC_UNAVAILABLE,
                                 "volume %s: %s", req->volume_ids[i],
                                 rc == -ENOENT ? "not found in this region"
                                               : jr_strerror(rc));
    }
    int rc = rep__snapshot(r, req->n_volume_ids ? req->volume_ids : NULL,
                           req->n_volume_ids, &snap);
    if (rc == -ENOMEM) return RPC_RESOURCE_EXHAUSTED;
    if (rc < 0)
        return rpc_ctx_error(ctx, RPC_UNAVAILABLE, "listing volumes failed");
    Tandem__Admin__V1__StatusResponse *resp = malloc(sizeof(*resp));
    if (!resp) goto nomem;
    tandem__admin__v1__status_response__init(resp);
    resp->region = rep__sdup(snap.region);
    resp->peer_region = rep__sdup(snap.peer_region);
    resp->peer_link_state =
        rep__sdup(rep__link_name(snap.peer_up ? REP_LINK_UP : REP_LINK_DOWN));
    resp->now_unix_ms = snap.now_ms;
    resp->volumes = calloc(snap.n + 1, sizeof(*resp->volumes));
    if (!resp->volumes) {
        protobuf_c_message_free_unpacked(&resp->base, NULL);
        goto nomem;
    }
    for (size_t i = 0; i < snap.n; i++) {
        Tandem__Admin__V1__VolumeStatus *m = vstatus_msg(r, &snap.vols[i]);
        if (m) resp->volumes[resp->n_volumes++] = m;
    }
    rep__snapshot_free(&snap);
    if (status_groups(r, resp) < 0) {
        protobuf_c_message_free_unpacked(&resp->base, NULL);
        return RPC_RESOURCE_EXHAUSTED;
    }
    *respm = &resp->base;
    return RPC_OK;
nomem:
    rep__snapshot_free(&snap);
    return RPC_RESOURCE_EXHAUSTED;
}

static int h_list(void *svc, rpc_ctx *ctx, const ProtobufCMessage *reqm,
                  ProtobufCMessage **respm)
{
    rep_ctx *r = svc;
    struct rep_idlist l;
    (void)reqm;
    if (rep__idlist_all(r, &l) < 0) {
        rep__idlist_free(&l);
        return rpc_ctx_error(ctx, RPC_UNAVAILABLE, "listing volumes failed");
    }
    Tandem__Admin__V1__ListVolumesResponse *resp = malloc(sizeof(*resp));
    if (!resp) {
        rep__idlist_free(&l);
        return RPC_RESOURCE_EXHAUSTED;
    }
    tandem__admin__v1__list_volumes_response__init(resp);
    resp->volume_ids = l.a;
    resp->n_volume_ids = l.n;
    if (!l.a) resp->volume_ids = NULL;
    *respm = &resp->base;
    return RPC_OK;
}

/* ---------------------------------------------------------- promote */

/* Returns an RPC code; msg says why (refusals) or what happened. */
int rep__promote(rep_ctx *r, const char *id, int force, int *changed,
                 char *msg, size_t msz)
{
    struct jr_info info;
    Tandem__Repl__V1__GetVolumeResponse *pv = NULL;
    int code = RPC_OK, rc;
    *changed = 0;
    struct rep_vol *v = rep__vol_get(r, id);
    if (!v) return RPC_RESOURCE_EXHAUSTED;
    pthread_mutex_lock(&v->op_lock);
    rc = jr_volume_stat(r->st, id, &info);
    if (rc < 0) {
        snprintf(msg, msz, "volume %s: %s", id,
                 rc == -ENOENT ? "not found in this region" : jr_strerror(rc));
        code = rc == -ENOENT ? RPC_NOT_FOUND : RPC_UNAVAILABLE;
        goto out;
    }
    if (info.role == JR_ROLE_PRIMARY) {
        snprintf(msg, msz, "%s is already primary in %s (epoch %" PRIu64 ")",
                 id, r->region, info.epoch);
        goto out;
    }
    struct jr_copywin w;
    rc = jr_copywin_get(r->st, id, &w);
    if (rc < 0 && rc != -ENOENT) {
        /* Whether to roll back first: never guess. */
        snprintf(msg, msz, "%s: reading the region-copy window: %s", id,
                 jr_strerror(rc));
        code = RPC_UNAVAILABLE;
        goto out;
    }
    char *split = rep__meta(r, id, REP_META_SPLIT);
    char *resync = rep__meta(r, id, REP_META_RESYNC);
    int has_split = split != NULL, has_resync = resync != NULL,
        has_copy = rc == 0;
    free(split);
    free(resync);
    if (has_resync) {
        snprintf(msg, msz, "%s: a resync is unfinished here, the image is "
                 "not consistent; run resync again first", id);
        code = RPC_FAILED_PRECONDITION;
        goto out;
    }
    if (has_split && !force) {
        snprintf(msg, msz, "%s: this copy was fenced (split brain); resync "
                 "it from the peer, or promote --force to keep its data", id);
        code = RPC_FAILED_PRECONDITION;
        goto out;
    }
    uint64_t peer_epoch = 0;
    if (!force) {
        char m2[256];
        int c = rep__peer_getvol(r, id, &pv, m2, sizeof(m2));
        if (c != RPC_OK) {
            snprintf(msg, msz, "peer region %s unreachable (%s: %s); use "
                     "--force if it is lost", r->peer_region,
                     rpc_code_name(c), m2);
            code = RPC_UNAVAILABLE;
            goto out;
        }
        if (pv->exists && !strcmp(pv->role, "primary")) {
            snprintf(msg, msz, "%s is still primary in %s (epoch %" PRIu64
                     "): demote it there first, or --force", id,
                     r->peer_region, pv->epoch);
            code = RPC_FAILED_PRECONDITION;
            goto out;
        }
        /* A group member's replica journals past the group's cut and
         * applies only up to it: a graceful switchover (the peer demoted
         * and drained, so it writes nothing more) takes everything it
         * journaled, which is then every member's whole history. */
        if (pv->exists && jr_group_of(r->st, id, NULL, 0, NULL) == 0 &&
            info.head >= pv->head &&
            info.applied < info.head &&
            jr_replica_apply_to(r->st, id, info.head) == 0)
            jr_volume_stat(r->st, id, &info);
        if (pv->exists && info.applied < pv->head) {
            snprintf(msg, msz, "%s not fully applied: %" PRIu64 " of %s's "
                     "head %" PRIu64 " (wait for the demote to drain, or "
                     "--force)", id, info.applied, r->peer_region, pv->head);
            code = RPC_FAILED_PRECONDITION;
            goto out;
        }
        if (has_copy) {
            snprintf(msg, msz, "%s: a region copy is running; the replica is "
                     "consistent only at its base (--force rolls back to it)",
                     id);
            code = RPC_FAILED_PRECONDITION;
            goto out;
        }
        if (pv->exists) peer_epoch = pv->epoch;
    }
    if (has_copy) {
        uint64_t base = 0;
        size_t blocks = 0;
        rc = jr_copywin_rollback(r->st, id, &base, &blocks);
        if (rc < 0)
            tlog_error("rep.rollback_failed", "vol=%s err=%d (%s)", id, rc,
                       jr_strerror(rc));
        else
            tlog_warn("rep.rollback", "vol=%s base=%" PRIu64 " blocks=%zu "
                      "msg=\"unfinished region copy rolled back\"", id,
                      base, blocks);
        if (rc < 0) {
            snprintf(msg, msz, "%s: rolling back the unfinished region copy "
                     "failed: %s", id, jr_strerror(rc));
            code = RPC_INTERNAL;
            goto out;
        }
        jr_volume_stat(r->st, id, &info);
    }
    /* A forced promotion of a group member: every replica member lands
     * on the group's newest complete cut first (the others' promotions
     * find it done). */
    if (force && (rc = rep__group_land(r, id, msg, msz)) < 0) {
        code = RPC_INTERNAL;
        goto out;
    }
    jr_volume_stat(r->st, id, &info);
    uint64_t epoch = (info.epoch > peer_epoch ? info.epoch : peer_epoch) + 1;
    /* Where this epoch starts, recorded before the role changes: a sender
     * that sees the new epoch must find it (its history before this
     * position carries older epochs, R-22). */
    rc = rep__meta_set_u64(r, id, REP_META_PROMOTED_AT, info.applied);
    if (rc < 0) {
        snprintf(msg, msz, "%s: recording the promotion point: %s", id,
                 jr_strerror(rc));
        code = RPC_INTERNAL;
        goto out;
    }
    rc = jr_role_set(r->st, id, JR_ROLE_PRIMARY, epoch);
    if (rc < 0) {
        snprintf(msg, msz, "%s: role change: %s", id, jr_strerror(rc));
        code = rc == JR_ESTALE ? RPC_ABORTED : RPC_INTERNAL;
        goto out;
    }
    *changed = 1;
    jr_meta_rm(r->st, id, REP_META_SPLIT);
    jr_meta_rm(r->st, id, REP_META_DRAINING);
    /* Keep our journal from here on for the old primary (resync needs the
     * ranges written since the common position, R-8 keeps entries only
     * for peers that have an ack). */
    char peer[RG_MAX_NAME + 1];
    rc = rep__vol_peer(r, id, peer, sizeof(peer));
    if (rc == 0 && peer[0])
        rc = jr_peer_ack_set(r->st, id, peer, info.applied);
    if (rc < 0)
        /* Promoted all the same; a later resync copies more than the
         * delta (the journal from here may not be kept for the peer). */
        tlog_warn("rep.promote_ack_failed", "vol=%s err=%d (%s)", id, rc,
                  jr_strerror(rc));
    rep__vol_promoted(v, info.applied);
    snprintf(msg, msz, "%s promoted in %s: epoch %" PRIu64 ", applied %"
             PRIu64 "%s", id, r->region, epoch, info.applied,
             force ? " (forced)" : "");
    tlog_info("rep.promoted", "vol=%s epoch=%" PRIu64 " applied=%" PRIu64
              " force=%d rolled_back=%d", id, epoch, info.applied, force,
              has_copy);
out:
    pthread_mutex_unlock(&v->op_lock);
    if (pv) protobuf_c_message_free_unpacked(&pv->base, NULL);
    return code;
}

static int h_promote(void *svc, rpc_ctx *ctx, const ProtobufCMessage *reqm,
                     ProtobufCMessage **respm)
{
    rep_ctx *r = svc;
    const Tandem__Admin__V1__PromoteRequest *req = (const void *)reqm;
    char msg[512];
    int changed;
    if (!req->volume_id[0])
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT, "volume_id is empty");
    int code = rep__promote(r, req->volume_id, req->force, &changed, msg,
                            sizeof(msg));
    if (code != RPC_OK) return rpc_ctx_error(ctx, code, "%s", msg);
    Tandem__Admin__V1__PromoteResponse *resp = malloc(sizeof(*resp));
    if (!resp) return RPC_RESOURCE_EXHAUSTED;
    tandem__admin__v1__promote_response__init(resp);
    resp->changed = changed;
    resp->message = rep__sdup(msg);
    resp->volume = vstatus_of(r, req->volume_id);
    *respm = &resp->base;
    return RPC_OK;
}

/* ---------------------------------------------------------- demote */

static int h_demote(void *svc, rpc_ctx *ctx, const ProtobufCMessage *reqm,
                    ProtobufCMessage **respm)
{
    rep_ctx *r = svc;
    const Tandem__Admin__V1__DemoteRequest *req = (const void *)reqm;
    struct jr_info info;
    char peer[RG_MAX_NAME + 1];
    int changed = 0, rc;
    if (!req->volume_id[0])
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT, "volume_id is empty");
    const char *id = req->volume_id;
    struct rep_vol *v = rep__vol_get(r, id);
    if (!v) return RPC_RESOURCE_EXHAUSTED;
    pthread_mutex_lock(&v->op_lock);
    rc = jr_volume_stat(r->st, id, &info);
    if (rc < 0) {
        pthread_mutex_unlock(&v->op_lock);
        return rpc_ctx_error(ctx, rc == -ENOENT ? RPC_NOT_FOUND
                                                : RPC_UNAVAILABLE,
                             "volume %s: %s", id,
                             rc == -ENOENT ? "not found in this region"
                                           : jr_strerror(rc));
    }
    rc = rep__vol_peer(r, id, peer, sizeof(peer));
    if (rc < 0) {
        pthread_mutex_unlock(&v->op_lock);
        return rpc_ctx_error(ctx, RPC_UNAVAILABLE, "volume %s: its metadata "
                             "cannot be read: %s", id, jr_strerror(rc));
    }
    char *dr = rep__meta(r, id, REP_META_DRAINING);
    int draining = dr != NULL;
    free(dr);
    if (info.role == JR_ROLE_SECONDARY && !draining) {
        pthread_mutex_unlock(&v->op_lock);
        goto answer;
    }
    if (!peer[0] || strcmp(peer, r->peer_region)) {
        pthread_mutex_unlock(&v->op_lock);
        return rpc_ctx_error(ctx, RPC_FAILED_PRECONDITION,
                             "%s is not replicated to %s: demoting it would "
                             "leave no primary", id, r->peer_region);
    }
    if (info.role == JR_ROLE_PRIMARY) {
        /* Draining first, so the sender keeps shipping across the role
         * change; the role change fences the writer (FORMAT.md R-6), so
         * head stops moving. */
        rc = jr_meta_set(r->st, id, REP_META_DRAINING, "1");
        if (rc == 0) rc = jr_role_set(r->st, id, JR_ROLE_SECONDARY, info.epoch);
        if (rc < 0) {
            pthread_mutex_unlock(&v->op_lock);
            return rpc_ctx_error(ctx, RPC_INTERNAL, "%s: demote: %s", id,
                                 jr_strerror(rc));
        }
        changed = 1;
        tlog_info("rep.demoted", "vol=%s epoch=%" PRIu64 " head=%" PRIu64, id,
                  info.epoch, info.head);
    }
    pthread_mutex_unlock(&v->op_lock);
    rep__kick(r, v);
    /* Wait until the peer acknowledged everything. */
    int64_t deadline = tb_mono_ms() + (req->timeout_ms ? req->timeout_ms
                                                        : 30000);
    int64_t left = rpc_ctx_remaining_ms(ctx);
    if (left != INT64_MAX && tb_mono_ms() + left - 200 < deadline)
        deadline = tb_mono_ms() + left - 200;
    uint64_t ack = 0;
    for (;;) {
        if (jr_volume_stat(r->st, id, &info) < 0) break;
        ack = 0;
        jr_peer_ack_get(r->st, id, r->peer_region, &ack);
        if (ack >= info.head) break;
        if (tb_mono_ms() >= deadline) {
            return rpc_ctx_error(ctx, RPC_DEADLINE_EXCEEDED,
                                 "%s demoted, but %s acknowledged %" PRIu64
                                 " of %" PRIu64 ": still draining (run demote "
                                 "again to wait)", id, r->peer_region, ack,
                                 info.head);
        }
        usleep(20000);
    }
    jr_meta_rm(r->st, id, REP_META_DRAINING);
    tlog_info("rep.drained", "vol=%s head=%" PRIu64 " acked=%" PRIu64, id,
              info.head, ack);
answer:;
    Tandem__Admin__V1__DemoteResponse *resp = malloc(sizeof(*resp));
    if (!resp) return RPC_RESOURCE_EXHAUSTED;
    tandem__admin__v1__demote_response__init(resp);
    resp->changed = changed;
    char msg[256];
    snprintf(msg, sizeof(msg), changed ? "%s demoted in %s and drained to %s"
                                       : "%s is already secondary in %s%.0s",
             id, r->region, r->peer_region);
    resp->message = rep__sdup(msg);
    resp->volume = vstatus_of(r, id);
    *respm = &resp->base;
    return RPC_OK;
}

/* ---------------------------------------------------------- failover */

struct fo_job {
    rep_ctx *r;
    struct rep_idlist *l;
    const int *unknown;  /* per volume (NULL: none): the error that kept
                            --all from telling whether it is a replica */
    Tandem__Admin__V1__FailoverResult **out; /* slot per volume */
    int force;
    size_t next;                              /* atomic */
};

static int fo_snap_cb(const struct jr_snap *sn, void *arg)
{
    Tandem__Admin__V1__FailoverResult *fr = arg;
    void *p = realloc(fr->snapshots,
                      (fr->n_snapshots + 1) * sizeof(*fr->snapshots));
    if (!p) return -ENOMEM;
    fr->snapshots = p;
    Tandem__Admin__V1__Snapshot *x = malloc(sizeof(*x));
    if (!x) return -ENOMEM;
    tandem__admin__v1__snapshot__init(x);
    x->snap_id = rep__sdup(sn->snap_id);
    x->label = rep__sdup(sn->label);
    if (!x->snap_id || !x->label) {
        free(x->snap_id);
        free(x->label);
        free(x);
        return -ENOMEM;
    }
    x->seq = sn->seq;
    x->size_bytes = sn->size;
    x->created_unix_ns = sn->ts_ns;
    fr->snapshots[fr->n_snapshots++] = x;
    return 0;
}

/* Fill fr->snapshots with the volume's snapshots (freed with fr as an
 * unpacked message).  0 or a negative errno (the list stays as far as it
 * got: freed with fr all the same). */
static int fo_snapshots(rep_ctx *r, const char *id,
                        Tandem__Admin__V1__FailoverResult *fr)
{
    return jr_snap_list(r->st, id, fo_snap_cb, fr);
}

static void *fo_worker(void *arg)
{
    struct fo_job *j = arg;
    rep_ctx *r = j->r;
    for (;;) {
        size_t i = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
        if (i >= j->l->n) break;
        const char *id = j->l->a[i];
        Tandem__Admin__V1__FailoverResult *fr = malloc(sizeof(*fr));
        if (!fr) continue;
        tandem__admin__v1__failover_result__init(fr);
        char msg[512];
        int changed = 0, code;
        if (j->unknown && j->unknown[i] < 0) {
            /* Never promote what may not be a replica of the lost peer. */
            snprintf(msg, sizeof(msg), "%s: its metadata cannot be read "
                     "(%s), so whether it replicates with %s is unknown: not "
                     "promoted (name it to promote it)", id,
                     jr_strerror(j->unknown[i]), r->peer_region);
            code = RPC_UNAVAILABLE;
        } else {
            code = rep__promote(r, id, j->force, &changed, msg, sizeof(msg));
        }
        fr->volume_id = rep__sdup(id);
        fr->ok = code == RPC_OK;
        fr->changed = changed;
        fr->message = rep__sdup(msg);
        struct rep_vstat s;
        rep__vol_status(r, id, &s);
        fr->volume = vstatus_msg(r, &s);
        if (fr->volume) {
            fr->applied = fr->volume->applied;
            fr->epoch = fr->volume->epoch;
        }
        /* The answer carries what tandemctl's manifest is made from: a
         * volume whose metadata cannot be read now (a store error; asked
         * once more) is reported as failed, so the operator runs failover
         * again (idempotent) instead of binding a volume without its
         * claim. */
        int mrc = fr->ok && fr->volume ? vstatus_meta(r, fr->volume) : 0;
        if (mrc < 0) {
            char m2[800];
            snprintf(m2, sizeof(m2), "%s; but its metadata could not be read "
                     "(%s): run failover again for its manifest", msg,
                     jr_strerror(mrc));
            free(fr->message);
            fr->message = rep__sdup(m2);
            fr->ok = 0;
        }
        /* Its snapshots, for tandemctl's VolumeSnapshotContent
         * manifests: as with the metadata, a list that cannot be read
         * fails the row (failover again is idempotent). */
        int src = fr->ok ? fo_snapshots(r, id, fr) : 0;
        if (src < 0) {
            char m2[1000];
            snprintf(m2, sizeof(m2), "%s; but its snapshots could not be "
                     "listed (%s): run failover again for their manifests",
                     fr->message, jr_strerror(src));
            free(fr->message);
            fr->message = rep__sdup(m2);
            fr->ok = 0;
        }
        /* What this failover loses, as far as this side can know: the
         * replica's RPO as it stood when the old primary's last call
         * arrived, and how long ago that was (the old primary may have
         * taken writes since; they are not in the figure).  Neither
         * grows while the operator waits. */
        struct rep_rpo p = {0};
        struct rep_vol *rv = rep__vol_get(r, id);
        if (rv) rep__vol_rpo(r, rv, &p);
        fr->rpo_seconds = rep__rpo_s(&p);
        fr->link_last_up_unix_ms = p.link_up_ms;
        fr->link_down_seconds =
            p.link_up_ms ? (double)(tb_wall_ms() - p.link_up_ms) / 1000.0
                         : -1;
        if (p.link_up_ms && fr->link_down_seconds < 0)
            fr->link_down_seconds = 0; /* the wall clock stepped back */
        fr->applied_age_seconds = fr->rpo_seconds;
        j->out[i] = fr;
        tlog_info("rep.failover", "vol=%s ok=%d changed=%d applied=%" PRIu64
                  " rpo_s=%.3f link_down_s=%.3f", id, fr->ok, changed,
                  fr->applied, fr->rpo_seconds, fr->link_down_seconds);
    }
    return NULL;
}

static int h_failover(void *svc, rpc_ctx *ctx, const ProtobufCMessage *reqm,
                      ProtobufCMessage **respm)
{
    rep_ctx *r = svc;
    const Tandem__Admin__V1__FailoverRequest *req = (const void *)reqm;
    struct rep_idlist l = {0};
    int *unknown = NULL;
    if (req->to_region[0] && strcmp(req->to_region, r->region))
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
                             "this replicator serves region %s, not %s: "
                             "talk to %s's replicator", r->region,
                             req->to_region, req->to_region);
    if (!req->all && !req->n_volume_ids)
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
                             "name volumes or set all");
    if (req->all) {
        struct rep_idlist a;
        if (rep__idlist_all(r, &a) < 0) {
            rep__idlist_free(&a);
            return rpc_ctx_error(ctx, RPC_UNAVAILABLE, "listing failed");
        }
        /* Every copy replicated with our peer (primaries are reported as
         * already done), and the ones nobody can tell (metadata
         * unreadable): they are reported as failed, not left out. */
        unknown = calloc(a.n + 1, sizeof(*unknown));
        if (!unknown) {
            rep__idlist_free(&a);
            return RPC_RESOURCE_EXHAUSTED;
        }
        for (size_t i = 0; i < a.n; i++) {
            char peer[RG_MAX_NAME + 1];
            int prc = rep__vol_peer(r, a.a[i], peer, sizeof(peer));
            if ((prc < 0 || !strcmp(peer, r->peer_region)) &&
                rep__idlist_add(&l, a.a[i]) == 0)
                unknown[l.n - 1] = prc;
        }
        rep__idlist_free(&a);
    } else {
        for (size_t i = 0; i < req->n_volume_ids; i++)
            rep__idlist_add(&l, req->volume_ids[i]);
    }
    Tandem__Admin__V1__FailoverResponse *resp = malloc(sizeof(*resp));
    if (!resp) {
        rep__idlist_free(&l);
        free(unknown);
        return RPC_RESOURCE_EXHAUSTED;
    }
    tandem__admin__v1__failover_response__init(resp);
    resp->region = rep__sdup(r->region);
    resp->results = calloc(l.n + 1, sizeof(*resp->results));
    if (resp->results) {
        /* Volumes are promoted in parallel (each under its own op_lock):
         * with a remote store, one at a time would take 100 x the store's
         * round trips. */
        struct fo_job job = {r, &l, unknown, resp->results, !req->graceful,
                             0};
        size_t nt = l.n < 16 ? l.n : 16;
        pthread_t th[16];
        size_t started = 0;
        for (size_t k = 0; k < nt; k++)
            if (pthread_create(&th[k], NULL, fo_worker, &job) == 0) started++;
        if (!started) fo_worker(&job);
        for (size_t k = 0; k < started; k++) pthread_join(th[k], NULL);
        for (size_t k = 0; k < l.n; k++)
            if (resp->results[k]) resp->results[resp->n_results++] = resp->results[k];
    }
    rep__idlist_free(&l);
    free(unknown);
    *respm = &resp->base;
    return RPC_OK;
}

/* ---------------------------------------------------------- methods */

#define M(name, req, resp, fn)                                                \
    {"/tandem.admin.v1.Admin/" name, &tandem__admin__v1__##req##__descriptor, \
     &tandem__admin__v1__##resp##__descriptor, fn}
const struct rpc_method rep__admin_methods[] = {
    M("Status", status_request, status_response, h_status),
    M("ListVolumes", list_volumes_request, list_volumes_response, h_list),
    M("Promote", promote_request, promote_response, h_promote),
    M("Demote", demote_request, demote_response, h_demote),
    M("Failover", failover_request, failover_response, h_failover),
    M("Resync", resync_request, resync_response, rep__h_resync),
    M("CheckJournal", check_journal_request, check_journal_response,
      rep__h_check_journal),
    M("DiscardJournalTail", discard_journal_tail_request,
      discard_journal_tail_response, rep__h_discard_journal_tail),
};
const size_t rep__n_admin_methods =
    sizeof(rep__admin_methods) / sizeof(rep__admin_methods[0]);

/* Admin TCP: the caller's verified certificate must name the admin
 * identity (its URI SAN), exactly; a replicator's certificate from the
 * same CA is not an admin credential.  Then the call goes to the method's
 * own handler. */
static int admin_tcp_gate(void *svc, rpc_ctx *ctx, const ProtobufCMessage *reqm,
                          ProtobufCMessage **respm)
{
    rep_ctx *r = svc;
    char uri[REP_MAX_ID_URI], q[REP_MAX_ID_URI + 8];
    int rc = rpc_ctx_peer_uri(ctx, NULL, uri, sizeof(uri));
    if (rc < 0 || strcmp(uri, r->id_admin)) {
        const char *why = rc == -ENOENT     ? "no URI identity"
                          : rc == -ENOTUNIQ ? "more than one URI identity"
                          : rc < 0          ? "unreadable identity"
                                            : "not the admin identity";
        tlog_warn("rep.admin_denied", "method=%s identity=%s peer=%s "
                  "why=\"%s\"", rpc_ctx_method(ctx),
                  tlog_q(q, sizeof(q), rc < 0 ? "" : uri), rpc_ctx_peer(ctx),
                  why);
        return rpc_ctx_error(ctx, RPC_PERMISSION_DENIED,
                             "the admin API over TCP takes only %s (%s%s%s)",
                             r->id_admin, why, rc < 0 ? "" : ": ",
                             rc < 0 ? "" : uri);
    }
    const char *m = rpc_ctx_method(ctx);
    for (size_t i = 0; i < rep__n_admin_methods; i++)
        if (!strcmp(rep__admin_methods[i].name, m))
            return rep__admin_methods[i].fn(svc, ctx, reqm, respm);
    return RPC_UNIMPLEMENTED;
}

#define G(name, req, resp)                                                    \
    {"/tandem.admin.v1.Admin/" name, &tandem__admin__v1__##req##__descriptor, \
     &tandem__admin__v1__##resp##__descriptor, admin_tcp_gate}
const struct rpc_method rep__admin_tcp_methods[] = {
    G("Status", status_request, status_response),
    G("ListVolumes", list_volumes_request, list_volumes_response),
    G("Promote", promote_request, promote_response),
    G("Demote", demote_request, demote_response),
    G("Failover", failover_request, failover_response),
    G("Resync", resync_request, resync_response),
    G("CheckJournal", check_journal_request, check_journal_response),
    G("DiscardJournalTail", discard_journal_tail_request,
      discard_journal_tail_response),
};
const size_t rep__n_admin_tcp_methods =
    sizeof(rep__admin_tcp_methods) / sizeof(rep__admin_tcp_methods[0]);
