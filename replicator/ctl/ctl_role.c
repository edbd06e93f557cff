/*
 * ctl_role.c: the commands that change one volume's role in one region:
 * promote (graceful, or --force), demote (waits for the peer's
 * acknowledgement of the rest of the journal) and resync (a returned
 * former primary becomes a secondary of the peer).  Each is one admin
 * call; asking for the role a volume already has says "nothing to do".
 */
#include <inttypes.h>
#include <stdio.h>

#include "ctl_int.h"

/* ---------------------------------------------------- promote / demote -- */

int ctl_cmd_promote(struct ctl *c, const char *vol)
{
    Tandem__Admin__V1__PromoteRequest req =
        TANDEM__ADMIN__V1__PROMOTE_REQUEST__INIT;
    Tandem__Admin__V1__PromoteResponse *r = NULL;
    char msg[1024], what[256];
    req.volume_id = (char *)vol;
    req.force = c->force;
    int rc = ctl_admin_call(c, &c->admin, "Promote", &req,
                            &tandem__admin__v1__promote_response__descriptor,
                            &r, 30, msg, sizeof msg);
    snprintf(what, sizeof what, "promote %s", vol);
    if (rc != RPC_OK) {
        ctl_report_rpc_error(what, &c->admin, rc, msg);
        return EX_FAIL;
    }
    const Tandem__Admin__V1__VolumeStatus *v = r->volume;
    const char *region = v ? v->region : "?";
    uint64_t epoch = v ? v->epoch : 0;
    if (!r->changed)
        printf("%s is already primary in region %s (epoch %" PRIu64
               "): nothing to do\n",
               vol, region, epoch);
    else
        printf("%s promoted to primary in region %s%s: epoch %" PRIu64
               ", applied %" PRIu64 "\n",
               vol, region, c->force ? " (forced)" : "", epoch,
               v ? v->applied : 0);
    if (c->verbose && *r->message) printf("  %s\n", r->message);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return EX_OK;
}

int ctl_cmd_demote(struct ctl *c, const char *vol)
{
    Tandem__Admin__V1__DemoteRequest req =
        TANDEM__ADMIN__V1__DEMOTE_REQUEST__INIT;
    Tandem__Admin__V1__DemoteResponse *r = NULL;
    char msg[1024], what[256];
    int wait_s = c->timeout_s > 0 ? c->timeout_s : 30;
    req.volume_id = (char *)vol;
    req.timeout_ms = (uint32_t)wait_s * 1000;
    /* The call itself gets a little longer than the drain it waits for. */
    int saved = c->timeout_s;
    c->timeout_s = wait_s + 10;
    int rc = ctl_admin_call(c, &c->admin, "Demote", &req,
                            &tandem__admin__v1__demote_response__descriptor, &r,
                            40, msg, sizeof msg);
    c->timeout_s = saved;
    snprintf(what, sizeof what, "demote %s", vol);
    if (rc != RPC_OK) {
        ctl_report_rpc_error(what, &c->admin, rc, msg);
        return EX_FAIL;
    }
    const Tandem__Admin__V1__VolumeStatus *v = r->volume;
    if (!r->changed)
        printf("%s is already secondary in region %s (epoch %" PRIu64
               "): nothing to do\n",
               vol, v ? v->region : "?", v ? v->epoch : 0);
    else
        printf("%s demoted to secondary in region %s: epoch %" PRIu64
               ", head %" PRIu64 ", acknowledged by the peer %" PRIu64 "\n",
               vol, v ? v->region : "?", v ? v->epoch : 0, v ? v->head : 0,
               v ? v->acked : 0);
    if (c->verbose && *r->message) printf("  %s\n", r->message);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return EX_OK;
}

/* -------------------------------------------------------------- resync -- */

int ctl_cmd_resync(struct ctl *c, const char *vol)
{
    Tandem__Admin__V1__ResyncRequest req =
        TANDEM__ADMIN__V1__RESYNC_REQUEST__INIT;
    Tandem__Admin__V1__ResyncResponse *r = NULL;
    char msg[1024], what[256], b[32];
    req.volume_id = (char *)vol;
    req.full = c->full;
    int rc = ctl_admin_call(c, &c->admin, "Resync", &req,
                            &tandem__admin__v1__resync_response__descriptor, &r,
                            600, msg, sizeof msg);
    snprintf(what, sizeof what, "resync %s", vol);
    if (rc != RPC_OK) {
        ctl_report_rpc_error(what, &c->admin, rc, msg);
        return EX_FAIL;
    }
    const Tandem__Admin__V1__VolumeStatus *v = r->volume;
    if (!r->changed) {
        printf("%s is already a secondary in sync in region %s: nothing to "
               "do\n",
               vol, v ? v->region : "?");
    } else {
        printf("%s resynced in region %s: %s copy, %" PRIu64
               " region%s, %s since common position %" PRIu64
               "; now secondary of region %s (epoch %" PRIu64 ")\n",
               vol, v ? v->region : "?",
               r->full_copy ? (c->full ? "full (requested)"
                                       : "full (fallback: no common journal "
                                         "position)")
                            : "delta",
               r->regions, r->regions == 1 ? "" : "s",
               ctl_human_bytes(b, sizeof b, (double)r->bytes_copied),
               r->common_seq, v && *v->peer_region ? v->peer_region : "?",
               v ? v->epoch : 0);
    }
    if (c->verbose && *r->message) printf("  %s\n", r->message);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return EX_OK;
}
