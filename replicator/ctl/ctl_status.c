/*
 * ctl_status.c: `tandemctl status`: the replication state, lag and RPO
 * of every volume of one or both regions (--peer-admin), as a table or
 * as the admin API's answers in JSON.  A region that cannot be asked is
 * reported on stderr and the other is still shown.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl_int.h"
#include "tbase.h"

/* ------------------------------------------------------------- status -- */

/* Consistency groups (DESIGN.md "Consistency groups"): a secondary's
 * RPO is the age of the cut its replicas stand at. */
static void print_groups(const Tandem__Admin__V1__StatusResponse *r)
{
    if (!r->n_groups) return;
    printf("consistency groups in %s (RPO: the age of the newest cut every "
           "member's replica stands at, primary's clock)\n", r->region);
    printf("%-20s %-9s %7s %9s %9s %9s %9s %10s\n", "GROUP", "ROLE",
           "MEMBERS", "CUT", "RPO", "POINTS", "ABANDONED", "PAUSE-P99");
    for (size_t i = 0; i < r->n_groups; i++) {
        const Tandem__Admin__V1__GroupStatus *g = r->groups[i];
        char rpo[32], pause[32];
        if (g->rpo_seconds >= 0)
            ctl_human_rpo(rpo, sizeof rpo, g->rpo_seconds);
        else
            snprintf(rpo, sizeof rpo, "-");
        if (!strcmp(g->role, "primary"))
            snprintf(pause, sizeof pause, "%.1f ms", g->pause_p99_ms);
        else
            snprintf(pause, sizeof pause, "-");
        printf("%-20s %-9s %7" PRIu32 " %9" PRIu64 " %9s %9" PRIu64
               " %9" PRIu64 " %10s\n", g->group, g->role, g->members, g->cut,
               rpo, g->points, g->abandoned, pause);
    }
}

static void print_table(const Tandem__Admin__V1__StatusResponse *r)
{
    char b1[32], b2[32], b3[32], b4[48];
    printf("region %s (peer %s, peer link %s): %zu volume%s\n", r->region,
           *r->peer_region ? r->peer_region : "-",
           *r->peer_link_state ? r->peer_link_state : "-", r->n_volumes,
           r->n_volumes == 1 ? "" : "s");
    if (!r->n_volumes) {
        print_groups(r);
        return;
    }
    /* Two regions may be shown: each RPO says whose view it is. */
    printf("RPO as region %s sees it: a primary row measures it here (age "
           "of the oldest write the peer lacks); a secondary row from its "
           "primary's last announcement, received RPO-AS-OF\n", r->region);
    int w = 12;
    for (size_t i = 0; i < r->n_volumes; i++)
        if ((int)strlen(r->volumes[i]->volume_id) > w)
            w = (int)strlen(r->volumes[i]->volume_id);
    printf("%-*s %-9s %5s %9s %9s %9s %8s %9s %9s %10s %9s %11s %6s %5s %-12s "
           "%s\n", w, "VOLUME", "ROLE", "EPOCH", "HEAD", "APPLIED", "ACKED",
           "LAG", "LAG-BYTES", "RPO", "RPO-AS-OF", "LAST-SYNC", "THROUGHPUT",
           "COMPR", "SNAPS", "LINK", "STATE");
    int64_t now = r->now_unix_ms ? r->now_unix_ms : tb_wall_ms();
    for (size_t i = 0; i < r->n_volumes; i++) {
        const Tandem__Admin__V1__VolumeStatus *v = r->volumes[i];
        int primary = !strcmp(v->role, "primary");
        char lag[24], lagb[32], rpo[32], asof[32], acked[24], tput[40],
            compr[16];
        /* An answer without rpo_view predates rpo_seconds. */
        double rs = *v->rpo_view ? v->rpo_seconds
                    : primary    ? v->lag_seconds
                                 : v->applied_age_seconds;
        char snaps[16];
        if (primary) {
            snprintf(lag, sizeof lag, "%" PRIu64, v->lag_entries);
            ctl_human_bytes(lagb, sizeof lagb, (double)v->lag_bytes);
            snprintf(acked, sizeof acked, "%" PRIu64, v->acked);
            snprintf(asof, sizeof asof, "now");
        } else {
            /* A secondary's RPO: the primary's announced head time minus
             * its newest applied write's, as of the primary's last call. */
            snprintf(lag, sizeof lag, "-");
            snprintf(lagb, sizeof lagb, "-");
            snprintf(acked, sizeof acked, "-");
            if (v->link_last_up_unix_ms > 0)
                snprintf(asof, sizeof asof, "%s ago",
                         ctl_human_age(b2, sizeof b2,
                                       (now - v->link_last_up_unix_ms) /
                                           1000.0));
            else
                snprintf(asof, sizeof asof, "-");
        }
        if (rs >= 0)
            ctl_human_rpo(rpo, sizeof rpo, rs);
        else
            snprintf(rpo, sizeof rpo, "-");
        if (v->last_sync_unix_ms > 0)
            snprintf(b1, sizeof b1, "%s ago",
                     ctl_human_age(b2, sizeof b2,
                                   (now - v->last_sync_unix_ms) / 1000.0));
        else
            snprintf(b1, sizeof b1, "never");
        snprintf(tput, sizeof tput, "%s/s",
                 ctl_human_bytes(b3, sizeof b3, v->throughput_bytes_per_s));
        if (v->compression_ratio > 0)
            snprintf(compr, sizeof compr, "%.2f", v->compression_ratio);
        else
            snprintf(compr, sizeof compr, "-");
        /* "!": this copy may lack some (a region copy skipped
         * positions; the line below says which). */
        snprintf(snaps, sizeof snaps, "%" PRIu32 "%s", v->snapshot_count,
                 *v->snapshots_incomplete ? "!" : "");
        snprintf(b4, sizeof b4, "%s%s%s", v->state,
                 v->split_brain && !strstr(v->state, "split") ? ",split-brain"
                                                              : "",
                 v->dirty_tracking ? ",dirty" : "");
        printf("%-*s %-9s %5" PRIu64 " %9" PRIu64 " %9" PRIu64
               " %9s %8s %9s %9s %10s %9s %11s %6s %5s %-12s %s\n",
               w, v->volume_id, v->role, v->epoch, v->head, v->applied, acked,
               lag, lagb, rpo, asof, b1, tput, compr, snaps, v->link_state, b4);
        if (*v->last_error)
            printf("  %s: last error: %s\n", v->volume_id, v->last_error);
        if (*v->snapshots_incomplete)
            printf("  %s: snapshots incomplete: %s\n", v->volume_id,
                   v->snapshots_incomplete);
    }
    print_groups(r);
}

int ctl_cmd_status(struct ctl *c, char **vols, int n)
{
    struct endpoint *eps[2] = {&c->admin, c->peer.addr ? &c->peer : NULL};
    Tandem__Admin__V1__StatusResponse *resp[2] = {NULL, NULL};
    int ret = EX_OK;
    Tandem__Admin__V1__StatusRequest req =
        TANDEM__ADMIN__V1__STATUS_REQUEST__INIT;
    req.volume_ids = vols;
    req.n_volume_ids = n;
    char errs[2][1200];
    errs[0][0] = errs[1][0] = 0;
    for (int i = 0; i < 2; i++) {
        if (!eps[i]) continue;
        char msg[1024];
        int rc = ctl_admin_call(c, eps[i], "Status", &req,
                                &tandem__admin__v1__status_response__descriptor,
                                &resp[i], 10, msg, sizeof msg);
        if (rc != RPC_OK) {
            char what[256];
            snprintf(what, sizeof what, "status (%s)", eps[i]->addr);
            ctl_report_rpc_error(what, eps[i], rc, msg);
            snprintf(errs[i], sizeof errs[i], "%s: %s",
                     rc == CALL_NO_CLIENT ? "ERROR" : rpc_code_name(rc), msg);
            ret = EX_FAIL;
        }
    }
    if (c->json) {
        printf("{\n  \"regions\": [");
        int first = 1;
        for (int i = 0; i < 2; i++) {
            if (!resp[i]) continue;
            printf("%s\n    ", first ? "" : ",");
            ctl_json_msg(stdout, &resp[i]->base, 4);
            first = 0;
        }
        printf("\n  ],\n  \"errors\": [");
        first = 1;
        for (int i = 0; i < 2; i++) {
            if (!errs[i][0]) continue;
            printf("%s\n    {\"admin\": ", first ? "" : ",");
            ctl_json_str(stdout, eps[i]->addr);
            printf(", \"error\": ");
            ctl_json_str(stdout, errs[i]);
            printf("}");
            first = 0;
        }
        printf("\n  ]\n}\n");
    } else {
        for (int i = 0; i < 2; i++) {
            if (!resp[i]) continue;
            if (i && resp[0]) printf("\n");
            print_table(resp[i]);
        }
    }
    for (int i = 0; i < 2; i++)
        if (resp[i]) protobuf_c_message_free_unpacked(&resp[i]->base, NULL);
    return ret;
}

int ctl_group_members(struct ctl *c, const char *group, char ***ids, int *n)
{
    Tandem__Admin__V1__StatusRequest req =
        TANDEM__ADMIN__V1__STATUS_REQUEST__INIT;
    Tandem__Admin__V1__StatusResponse *resp = NULL;
    char msg[1024];
    *ids = NULL;
    *n = 0;
    int rc = ctl_admin_call(c, &c->admin, "Status", &req,
                            &tandem__admin__v1__status_response__descriptor,
                            &resp, 10, msg, sizeof msg);
    if (rc != RPC_OK) {
        ctl_report_rpc_error("--group", &c->admin, rc, msg);
        return EX_FAIL;
    }
    char **out = calloc(resp->n_volumes + 1, sizeof(*out));
    if (!out) {
        protobuf_c_message_free_unpacked(&resp->base, NULL);
        ctl_errf("--group %s: out of memory", group);
        return EX_FAIL;
    }
    size_t gl = strlen(group);
    for (size_t i = 0; i < resp->n_volumes; i++) {
        const Tandem__Admin__V1__VolumeStatus *v = resp->volumes[i];
        for (size_t k = 0; k < v->n_metadata; k++) {
            const char *key = v->metadata[k]->key, *val = v->metadata[k]->value;
            if (key && val && !strcmp(key, "group") &&
                !strncmp(val, group, gl) && val[gl] == ' ')
                out[(*n)++] = strdup(v->volume_id);
        }
    }
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    if (!*n) {
        free(out);
        ctl_errf("--group %s: no volume of this group in region %s's "
                 "replicator (%s)", group, "this", c->admin.addr);
        return EX_FAIL;
    }
    *ids = out;
    return EX_OK;
}
