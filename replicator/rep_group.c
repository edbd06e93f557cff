/*
 * rep_group.c: consistency groups in the replicator (DESIGN.md
 * "Consistency groups", journal/FORMAT.md §6).
 *
 * One thread per replicator.  Where a group's members are primary (this
 * region writes them) it is the group's coordinator: every
 * TANDEM_CG_INTERVAL_MS (250 ms) it takes a consistency point
 * (jr_group_cut, members held at most TANDEM_CG_HOLD_MS, 200 ms).  Where
 * they are replicas it keeps each member's image at the group's newest
 * complete cut: the receiver journals everything (jr_apply_limit, the
 * primary may trim what we journaled) and this thread moves the gate
 * (jr_group_find_cut, jr_replica_apply_to) within 50 ms of a commit
 * entry's arrival, and once a second anyway.  A failover lands
 * every replica member on that cut before any is promoted
 * (rep__group_land, from rep__promote).
 *
 * Membership is read from the store (jr_group_of on each local volume)
 * once a second; groups and their figures live in r->groups under
 * grp_mu.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rep_int.h"
#include "tlog.h"

#define GATE_MS 50
#define REFRESH_MS 1000

struct gm {
    char id[JR_MAX_ID + 1];
    uint32_t idx;
    int role;
};
struct gview {
    char name[JR_MAX_GROUP_ID + 1];
    struct gm m[JR_GROUP_MAX_MEMBERS];
    int n;
};
struct gviews {
    struct gview g[REP_MAX_GROUPS];
    int n;
    st_store *st;
};

static int env_ms(const char *name, int dflt)
{
    const char *e = getenv(name);
    int v = e ? atoi(e) : 0;
    return v > 0 ? v : dflt;
}

static int view_cb(const char *id, void *arg)
{
    struct gviews *w = arg;
    char g[JR_MAX_GROUP_ID + 1];
    uint32_t idx;
    if (jr_group_of(w->st, id, g, sizeof g, &idx) < 0) return 0;
    struct jr_info info;
    if (jr_volume_stat(w->st, id, &info) < 0) return 0;
    int k = 0;
    while (k < w->n && strcmp(w->g[k].name, g) != 0) k++;
    if (k == w->n) {
        if (w->n == REP_MAX_GROUPS) return 0;
        memset(&w->g[k], 0, sizeof w->g[k]);
        rep__scpy(w->g[k].name, sizeof w->g[k].name, g);
        w->n++;
    }
    struct gview *v = &w->g[k];
    if (v->n < JR_GROUP_MAX_MEMBERS) {
        rep__scpy(v->m[v->n].id, sizeof v->m[v->n].id, id);
        v->m[v->n].idx = idx;
        v->m[v->n].role = info.role;
        v->n++;
    }
    return 0;
}

static void views_load(rep_ctx *r, struct gviews *w)
{
    w->n = 0;
    w->st = r->st;
    jr_volume_list(r->st, view_cb, w);
}

/* The group's slot in r->groups (grp_mu held); NULL when full. */
static struct rep_group *slot(rep_ctx *r, const char *name)
{
    for (int i = 0; i < r->n_groups; i++)
        if (strcmp(r->groups[i].name, name) == 0) return &r->groups[i];
    if (r->n_groups == REP_MAX_GROUPS) return NULL;
    struct rep_group *g = &r->groups[r->n_groups++];
    memset(g, 0, sizeof *g);
    rep__scpy(g->name, sizeof g->name, name);
    g->rpo_s = -1;
    return g;
}

static void coordinate(rep_ctx *r, const struct gview *gv, int hold_ms)
{
    struct jr_cut_result c;
    int rc = jr_group_cut(r->st, gv->name, hold_ms, &c);
    pthread_mutex_lock(&r->grp_mu);
    struct rep_group *g = slot(r, gv->name);
    if (g) {
        g->primary = 1;
        g->n_members = gv->n;
        g->points++;
        if (rc == 0 && c.complete) {
            g->complete++;
            g->cut = c.cut;
            g->cut_ts_ns = tb_wall_ns();
            g->rpo_s = 0;
            if (c.participants)
                g->pause_ns[g->n_pause++ % REP_PAUSE_SAMPLES] = c.pause_ns;
        } else {
            g->abandoned++;
        }
    }
    pthread_mutex_unlock(&r->grp_mu);
}

/* Move the gate of a group whose members are replicas here. */
static void gate(rep_ctx *r, const struct gview *gv)
{
    const char *vols[JR_GROUP_MAX_MEMBERS];
    uint32_t idx[JR_GROUP_MAX_MEMBERS];
    uint64_t pos[JR_GROUP_MAX_MEMBERS], cut = 0;
    int64_t cut_ts = 0;
    int n = 0;
    for (int i = 0; i < gv->n; i++) {
        if (gv->m[i].role != JR_ROLE_SECONDARY) return; /* mixed: leave it */
        vols[n] = gv->m[i].id;
        idx[n++] = gv->m[i].idx;
    }
    if (!n) return;
    int rc = jr_group_find_cut(r->st, (size_t)n, vols, idx, &cut, pos, &cut_ts);
    if (rc < 0 || !cut) return;
    int moved = 0;
    for (int i = 0; i < n; i++) {
        struct rep_vol *v = rep__vol_get(r, vols[i]);
        if (!v) return;
        pthread_mutex_lock(&v->op_lock);
        if (pos[i] == JR_GROUP_LEFT) {
            /* Not in the group's points any more (it left in the
             * primary's region): its own write order suffices. */
            rc = jr_replica_apply_to(r->st, vols[i], JR_GROUP_LEFT);
            if (rc == 0) rc = jr_meta_rm(r->st, vols[i], "group");
            if (rc == 0) {
                v->grouped = 0;
                tlog_info("group.member_left", "group=%s vol=%s", gv->name,
                          vols[i]);
            }
        } else if (pos[i] > v->gate_pos) {
            rc = jr_replica_apply_to(r->st, vols[i], pos[i]);
            if (rc == 0) {
                v->gate_pos = pos[i];
                moved = 1;
            }
        }
        pthread_mutex_unlock(&v->op_lock);
        if (rc < 0) {
            tlog_warn("group.gate_failed", "group=%s vol=%s err=\"%s\"",
                      gv->name, vols[i], jr_strerror(rc));
            return;
        }
    }
    if (moved) jr_group_cut_applied(r->st, (size_t)n, vols, cut, pos);
    /* The RPO: the newest head a member's primary announced, against the
     * cut (both on the primary's clock). */
    int64_t ann = 0;
    for (int i = 0; i < n; i++) {
        struct rep_vol *v = rep__vol_get(r, vols[i]);
        pthread_mutex_lock(&v->mu);
        if (v->rpo.ann_head_ts_ns > ann) ann = v->rpo.ann_head_ts_ns;
        pthread_mutex_unlock(&v->mu);
    }
    pthread_mutex_lock(&r->grp_mu);
    struct rep_group *g = slot(r, gv->name);
    if (g) {
        g->primary = 0;
        g->n_members = n;
        if (cut_ts && cut > g->cut) {
            g->cut = cut;
            g->cut_ts_ns = cut_ts;
        }
        if (g->cut_ts_ns && ann)
            g->rpo_s = ann > g->cut_ts_ns ? (double)(ann - g->cut_ts_ns) / 1e9
                                          : 0;
    }
    pthread_mutex_unlock(&r->grp_mu);
}

void *rep__group_main(void *arg)
{
    rep_ctx *r = arg;
    int interval = env_ms("TANDEM_CG_INTERVAL_MS", 250);
    int hold = env_ms("TANDEM_CG_HOLD_MS", 200);
    struct gviews *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    int64_t next_refresh = 0, next_cut = 0, next_look = 0;
    while (!__atomic_load_n(&r->stopping, __ATOMIC_ACQUIRE)) {
        int64_t now = tb_mono_ms();
        if (now >= next_refresh) {
            views_load(r, w);
            next_refresh = now + REFRESH_MS;
        }
        int cut_due = now >= next_cut;
        if (cut_due) next_cut = now + interval;
        /* The gate moves only when a commit arrived (or once a second:
         * a cut completed by an idle member's catching up). */
        int look = __atomic_exchange_n(&r->grp_news, 0, __ATOMIC_ACQ_REL) ||
                   now >= next_look;
        if (look) next_look = now + REFRESH_MS;
        for (int i = 0; i < w->n; i++) {
            const struct gview *gv = &w->g[i];
            int prim = 0;
            for (int k = 0; k < gv->n; k++)
                prim += gv->m[k].role == JR_ROLE_PRIMARY;
            if (prim && cut_due) coordinate(r, gv, hold);
            else if (!prim && look) gate(r, gv);
        }
        pthread_mutex_lock(&r->stop_mu);
        if (!r->stopping) {
            struct timespec ts = tb_deadline(CLOCK_MONOTONIC, GATE_MS);
            pthread_cond_timedwait(&r->stop_cv, &r->stop_mu, &ts);
        }
        pthread_mutex_unlock(&r->stop_mu);
    }
    free(w);
    return NULL;
}

void rep__group_check(rep_ctx *r, struct rep_vol *v, const struct jr_info *info,
                      const void *data, size_t len)
{
    if (!v->grp_checked) {
        v->grp_checked = 1;
        v->grouped = jr_group_of(r->st, v->id, NULL, 0, NULL) == 0;
        /* The image is at applied: the gate starts there. */
        v->gate_pos = info->applied;
    }
    /* A replica made before its volume joined a group (or by a sender
     * faster than the join) learns the membership from the first mark,
     * before any entry past it is applied. */
    char g[JR_MAX_GROUP_ID + 1];
    uint32_t m;
    if (!v->grouped && jr_batch_group_mark(data, len, g, sizeof g, &m) == 1) {
        char mv[JR_MAX_GROUP_ID + 16];
        snprintf(mv, sizeof mv, "%s %u", g, m);
        if (jr_meta_set(r->st, v->id, "group", mv) == 0) {
            v->grouped = 1;
            v->gate_pos = info->applied;
            tlog_info("group.member_learned", "group=%s vol=%s index=%u", g,
                      v->id, m);
        }
    }
}

int rep__group_land(rep_ctx *r, const char *id, char *msg, size_t msz)
{
    char g[JR_MAX_GROUP_ID + 1];
    uint32_t myidx;
    if (jr_group_of(r->st, id, g, sizeof g, &myidx) < 0) return 0;
    struct gviews *w = calloc(1, sizeof *w);
    if (!w) return -ENOMEM;
    int rc = 0;
    pthread_mutex_lock(&r->grp_mu);
    views_load(r, w);
    const struct gview *gv = NULL;
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->g[i].name, g) == 0) gv = &w->g[i];
    if (!gv) goto out;
    const char *vols[JR_GROUP_MAX_MEMBERS];
    uint32_t idx[JR_GROUP_MAX_MEMBERS];
    uint64_t pos[JR_GROUP_MAX_MEMBERS], cut = 0;
    for (int i = 0; i < gv->n; i++) {
        vols[i] = gv->m[i].id;
        idx[i] = gv->m[i].idx;
    }
    rc = jr_group_find_cut(r->st, (size_t)gv->n, vols, idx, &cut, pos, NULL);
    if (rc < 0) {
        snprintf(msg, msz, "group %s: finding its cut: %s", g, jr_strerror(rc));
        goto out;
    }
    for (int i = 0; i < gv->n; i++) {
        if (gv->m[i].role != JR_ROLE_SECONDARY) continue; /* landed */
        /* Not under the members' op_locks: the failover workers of the
         * other members hold theirs while they wait for grp_mu here.  A
         * receiver still applying (a planned promote) only journals past
         * the gate, and a second landing finds this one's result. */
        rc = pos[i] == JR_GROUP_LEFT /* left the group: all it has */
                 ? jr_replica_apply_to(r->st, vols[i], JR_GROUP_LEFT)
                 : jr_replica_cut(r->st, vols[i], pos[i]);
        if (rc < 0) {
            snprintf(msg, msz, "group %s: landing %s on cut %" PRIu64
                     " (seq %" PRIu64 "): %s", g, vols[i], cut, pos[i],
                     jr_strerror(rc));
            goto out;
        }
    }
    rc = jr_group_cut_applied(r->st, (size_t)gv->n, vols, cut, pos);
    /* This region cuts the group from now on: its members must be in
     * the group object here too. */
    for (int i = 0; rc == 0 && i < gv->n; i++)
        jr_group_join(r->st, g, vols[i], NULL);
    tlog_info("group.landed", "group=%s cut=%" PRIu64 " members=%d", g, cut,
              gv->n);
out:
    pthread_mutex_unlock(&r->grp_mu);
    free(w);
    return rc;
}

int rep__group_snapshot(rep_ctx *r, struct rep_group *out, int max)
{
    pthread_mutex_lock(&r->grp_mu);
    int n = r->n_groups < max ? r->n_groups : max;
    memcpy(out, r->groups, (size_t)n * sizeof *out);
    pthread_mutex_unlock(&r->grp_mu);
    return n;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

double rep__group_pause_q(const struct rep_group *g, double q)
{
    size_t n = g->n_pause < REP_PAUSE_SAMPLES ? g->n_pause : REP_PAUSE_SAMPLES;
    if (!n) return 0;
    int64_t *a = malloc(n * sizeof *a);
    if (!a) return 0;
    memcpy(a, g->pause_ns, n * sizeof *a);
    qsort(a, n, sizeof *a, cmp64);
    size_t k = (size_t)(q * (double)(n - 1) + 0.5);
    double ms = (double)a[k] / 1e6;
    free(a);
    return ms;
}
