/*
 * rep_vol.c: the volume table and what is read from it.  One struct
 * rep_vol per volume seen, made on first sight and freed by rep_destroy
 * only (so a pointer stays valid for the process); its figures are
 * guarded by v->mu, set through the setters here (and by the sender and
 * receiver under that lock).  Status and /metrics read snapshots
 * (rep__snapshot, rep__vol_status): the figures copied under the lock,
 * the rest from the store, and what they mean (state, link state, lag).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rep_int.h"

/* --------------------------------------------------------- volume table */

struct rep_vol *rep__vol_get(rep_ctx *r, const char *id)
{
    pthread_mutex_lock(&r->vol_mu);
    struct rep_vol *v;
    for (v = r->vols; v; v = v->next)
        if (!strcmp(v->id, id)) goto out;
    v = calloc(1, sizeof(*v));
    if (!v) goto out;
    rep__scpy(v->id, sizeof(v->id), id);
    pthread_mutex_init(&v->op_lock, NULL);
    pthread_mutex_init(&v->mu, NULL);
    tb_cond_init_mono(&v->cv);
    v->link_state = REP_LINK_NONE;
    v->next = r->vols;
    r->vols = v;
out:
    pthread_mutex_unlock(&r->vol_mu);
    return v;
}

const char *rep__link_name(enum rep_link l)
{
    switch (l) {
    case REP_LINK_NONE: return "none";
    case REP_LINK_UP: return "up";
    case REP_LINK_DOWN: return "down";
    case REP_LINK_BACKOFF: return "backoff";
    case REP_LINK_CATCHING_UP: return "catching-up";
    case REP_LINK_SPLIT_BRAIN: return "split-brain";
    case REP_LINK_STOPPED: return "stopped";
    case REP_LINK_RECEIVING: return "receiving";
    case REP_LINK_IDLE: return "idle";
    case REP_LINK_PEER_STALE: return "peer-stale";
    case REP_LINK_FENCED: return "fenced";
    case REP_LINK_KEEP: break;
    }
    return "?";
}

const char *rep__state_name(enum rep_state st)
{
    switch (st) {
    case REP_ST_NONE: return "";
    case REP_ST_REPLICATING: return "replicating";
    case REP_ST_DRAINING: return "draining";
    case REP_ST_CATCHING_UP: return "catching-up";
    case REP_ST_SPLIT_BRAIN: return "split-brain";
    case REP_ST_ERROR: return "error";
    case REP_ST_REPLICA: return "replica";
    case REP_ST_COPYING: return "copying";
    case REP_ST_PENDING: return "pending";
    case REP_ST_DIRTY_TRACKING: return "dirty-tracking";
    case REP_ST_NOT_REPLICATED: return "not-replicated";
    case REP_ST_RESYNCING: return "resyncing";
    case REP_ST_PEER_MUST_RESYNC: return "peer-must-resync";
    case REP_ST_MUST_RESYNC: return "must-resync";
    case REP_ST_KEEP: break;
    }
    return "?";
}

void rep__vol_state(struct rep_vol *v, enum rep_link link,
                    enum rep_state state, const char *err)
{
    pthread_mutex_lock(&v->mu);
    if (link != REP_LINK_KEEP) v->link_state = link;
    if (state != REP_ST_KEEP) v->state = state;
    if (err) rep__scpy(v->last_error, sizeof(v->last_error), err);
    pthread_mutex_unlock(&v->mu);
}

void rep__kick(rep_ctx *r, struct rep_vol *v)
{
    (void)r;
    pthread_mutex_lock(&v->mu);
    pthread_cond_broadcast(&v->cv);
    pthread_mutex_unlock(&v->mu);
}

void rep__vol_stop(struct rep_vol *v)
{
    pthread_mutex_lock(&v->mu);
    v->stop = 1;
    pthread_cond_broadcast(&v->cv);
    pthread_mutex_unlock(&v->mu);
}

void rep__vol_promoted(struct rep_vol *v, uint64_t acked)
{
    pthread_mutex_lock(&v->mu);
    v->peer_split = 0;
    v->peer_stale = 0;
    v->acked = acked;
    v->last_error[0] = 0;
    pthread_mutex_unlock(&v->mu);
}

/* Sleep up to ms unless stopping or kicked.  Returns 1 if stopping. */
int rep__vol_wait(rep_ctx *r, struct rep_vol *v, int ms)
{
    struct timespec ts = tb_deadline(CLOCK_MONOTONIC, ms);
    pthread_mutex_lock(&v->mu);
    if (!v->stop && !__atomic_load_n(&r->stopping, __ATOMIC_ACQUIRE))
        pthread_cond_timedwait(&v->cv, &v->mu, &ts);
    int s = v->stop || __atomic_load_n(&r->stopping, __ATOMIC_ACQUIRE);
    pthread_mutex_unlock(&v->mu);
    return s;
}


/* ----------------------------------------------------------------- RPO */

double rep__rpo_s(const struct rep_rpo *p)
{
    if (!p->ann_head) return -1;
    if (p->applied >= p->ann_head) return 0;
    if (!p->applied_ts_ns || !p->ann_head_ts_ns) return -1;
    double s = (double)(p->ann_head_ts_ns - p->applied_ts_ns) / 1e9;
    return s > 0 ? s : 0;
}

int rep__rpo_announce(struct rep_rpo *p, uint64_t epoch, uint64_t head,
                      int64_t head_ts_ns)
{
    if (!head) return 0;
    if (epoch != p->epoch) {
        /* Another primary (or the same one promoted again): its history
         * decides; what the old one announced says nothing about it. */
        if (epoch < p->epoch) return 0;
        p->epoch = epoch;
        p->ann_head = head;
        p->ann_head_ts_ns = head_ts_ns;
        return 1;
    }
    if (head < p->ann_head ||
        (head == p->ann_head && head_ts_ns == p->ann_head_ts_ns))
        return 0;
    p->ann_head = head;
    p->ann_head_ts_ns = head_ts_ns;
    return 1;
}

int rep__rpo_format(const struct rep_rpo *p, char *buf, size_t size)
{
    int n = snprintf(buf, size, "1 %" PRIu64 " %" PRIu64 " %" PRId64
                     " %" PRIu64 " %" PRId64 " %" PRId64, p->epoch,
                     p->ann_head, p->ann_head_ts_ns, p->applied,
                     p->applied_ts_ns, p->link_up_ms);
    return n < 0 || (size_t)n >= size ? -ENOSPC : 0;
}

int rep__rpo_parse(const char *s, struct rep_rpo *p)
{
    struct rep_rpo q;
    int ver, used = 0;
    if (!s || sscanf(s, "%d %" SCNu64 " %" SCNu64 " %" SCNd64 " %" SCNu64
                     " %" SCNd64 " %" SCNd64 "%n", &ver, &q.epoch,
                     &q.ann_head, &q.ann_head_ts_ns, &q.applied,
                     &q.applied_ts_ns, &q.link_up_ms, &used) != 7 ||
        ver != 1 || s[used] != 0 || q.ann_head_ts_ns < 0 ||
        q.applied_ts_ns < 0 || q.link_up_ms < 0)
        return -EINVAL;
    *p = q;
    return 0;
}

/* The volume's RPO figures, read from the store once per process if no
 * call of the primary arrived yet (after a restart). */
static void rpo_load(rep_ctx *r, struct rep_vol *v)
{
    pthread_mutex_lock(&v->mu);
    int loaded = v->rpo_loaded;
    pthread_mutex_unlock(&v->mu);
    if (loaded) return;
    char *s = rep__meta(r, v->id, REP_META_RPO);
    struct rep_rpo q;
    int ok = s && rep__rpo_parse(s, &q) == 0;
    free(s);
    pthread_mutex_lock(&v->mu);
    if (!v->rpo_loaded) {
        if (ok && !v->rpo.link_up_ms) v->rpo = q;
        v->rpo_loaded = 1;
    }
    pthread_mutex_unlock(&v->mu);
}

void rep__vol_rpo(rep_ctx *r, struct rep_vol *v, struct rep_rpo *out)
{
    rpo_load(r, v);
    pthread_mutex_lock(&v->mu);
    *out = v->rpo;
    pthread_mutex_unlock(&v->mu);
}

/* ------------------------------------------------------ status snapshot */

static int snap_count_cb(const struct jr_snap *sn, void *arg)
{
    (void)sn;
    (*(uint32_t *)arg)++;
    return 0;
}

/* One volume's figures: the header and metadata from the store, the
 * volume's own figures copied under its lock, and what they mean (state,
 * link state, lag). */
void rep__vol_status(rep_ctx *r, const char *id, struct rep_vstat *o)
{
    memset(o, 0, sizeof(*o));
    rep__scpy(o->id, sizeof(o->id), id);
    o->applied_age_s = -1;
    o->rpo_s = -1;
    if (jr_volume_stat(r->st, id, &o->info) < 0) {
        o->state = REP_ST_ERROR;
        snprintf(o->last_error, sizeof(o->last_error), "stat failed");
        return;
    }
    int rc = rep__vol_peer(r, id, o->peer_region, sizeof(o->peer_region));
    if (rc < 0) {
        /* Not "not-replicated": nobody knows. */
        o->state = REP_ST_ERROR;
        snprintf(o->last_error, sizeof(o->last_error),
                 "volume metadata unreadable: %s", jr_strerror(rc));
        return;
    }
    char *s = rep__meta(r, id, REP_META_REPLICATION);
    if (!s) s = rep__meta(r, id, REP_META_REPLICATION_ALT);
    rep__scpy(o->replication, sizeof(o->replication), s ? s : "");
    free(s);
    s = rep__meta(r, id, REP_META_SPLIT);
    o->split_brain = s != NULL;
    if (s) rep__scpy(o->last_error, sizeof(o->last_error), s);
    free(s);
    struct jr_copywin w;
    o->copy_active = jr_copywin_get(r->st, id, &w) == 0;
    s = rep__meta(r, id, REP_META_RESYNC);
    if (s) o->copy_active = 1;
    int resync = s != NULL;
    free(s);
    /* Snapshots: how many, and whether a region copy or a resync may
     * have left them unlike the primary's (rep.h REP_META_SNAP_GAP).  A list that fails leaves the
     * count at 0: status is still worth showing. */
    jr_snap_list(r->st, id, snap_count_cb, &o->n_snaps);
    rep__snap_gap_get(r, id, &o->snap_gap_first, &o->snap_gap_last);

    struct rep_vol *v = rep__vol_get(r, id);
    int64_t now = tb_wall_ms();
    uint64_t vacked = 0;
    int64_t oldest_ns = 0;
    if (v && o->info.role != JR_ROLE_PRIMARY) rpo_load(r, v);
    if (v) {
        pthread_mutex_lock(&v->mu);
        o->link_state = v->link_state;
        o->state = v->state;
        if (!o->last_error[0])
            rep__scpy(o->last_error, sizeof(o->last_error), v->last_error);
        o->last_sync_ms = v->last_sync_ms;
        o->wire_bytes = v->wire_bytes;
        o->raw_bytes = v->raw_bytes;
        o->batches = v->batches;
        /* 0 once nothing was counted for a while (idle). */
        o->rate = tb_meter_rate(&v->meter, tb_mono_ms());
        if (v->peer_split) o->split_brain = 1;
        /* The peer is the stale side: not a split brain of this copy. */
        o->peer_must_resync = v->peer_stale;
        if (v->copy_active) o->copy_active = 1;
        vacked = v->acked;
        oldest_ns = v->oldest_unacked_ns;
        o->rpo = v->rpo;
        pthread_mutex_unlock(&v->mu);
    }
    o->ratio = o->wire_bytes ? (double)o->raw_bytes / (double)o->wire_bytes
                             : 1.0;
    if (!o->peer_region[0]) {
        o->state = REP_ST_NOT_REPLICATED;
        o->link_state = REP_LINK_NONE;
        return;
    }
    if (o->info.role == JR_ROLE_PRIMARY) {
        uint64_t a = 0;
        jr_peer_ack_get(r->st, id, o->peer_region, &a);
        o->acked = a > vacked ? a : vacked;
        if (o->acked > o->info.head) o->acked = o->info.head;
        o->lag_entries = o->info.head - o->acked;
        if (o->lag_entries && o->info.head >= o->info.tail)
            o->lag_bytes = (uint64_t)((double)o->info.journal_bytes *
                                      (double)o->lag_entries /
                                      (double)(o->info.head - o->info.tail + 1));
        if (o->lag_entries) {
            if (!oldest_ns) {
                struct jr_batch b = {0};
                if (jr_tail_read(r->st, id, o->acked + 1, 1, &b) == 0 &&
                    b.n_entries)
                    oldest_ns = b.oldest_ts_ns;
                jr_batch_free(&b);
            }
            if (oldest_ns)
                o->lag_s = (double)(tb_wall_ns() - oldest_ns) / 1e9;
            if (o->lag_s < 0) o->lag_s = 0;
        }
        /* This side's view: what is lost if this region went now. */
        o->rpo_s = o->lag_entries && !oldest_ns ? -1 : o->lag_s;
        if (o->info.dirty_tracking && !o->copy_active)
            o->state = REP_ST_DIRTY_TRACKING;
        if (o->state == REP_ST_NONE || o->state == REP_ST_REPLICA ||
            o->state == REP_ST_COPYING)
            o->state = REP_ST_PENDING;
        if (o->link_state == REP_LINK_RECEIVING)
            o->link_state = REP_LINK_IDLE;
    } else {
        o->acked = o->info.applied;
        /* The replica's view, from the primary's last announcement (as
         * of the last call: link_last_up says when that was). */
        if (o->info.applied > o->rpo.applied) {
            /* Applied by a path that did not report it (a copy's end). */
            o->rpo.applied = o->info.applied;
            o->rpo.applied_ts_ns = o->info.head == o->info.applied
                                       ? o->info.head_ts_ns : 0;
        }
        if (o->rpo.ann_head > o->info.applied)
            o->lag_entries = o->rpo.ann_head - o->info.applied;
        o->rpo_s = o->applied_age_s = rep__rpo_s(&o->rpo);
        if (o->lag_entries && o->rpo_s > 0) o->lag_s = o->rpo_s;
        char *d = rep__meta(r, id, REP_META_DRAINING);
        if (d) {
            o->state = REP_ST_DRAINING;
            uint64_t a = 0;
            jr_peer_ack_get(r->st, id, o->peer_region, &a);
            o->acked = a;
            o->lag_entries = o->info.head > a ? o->info.head - a : 0;
        } else if (resync) {
            o->state = REP_ST_RESYNCING;
        } else if (o->split_brain) {
            /* A fenced former primary: this side is at fault and must
             * resync (its refusals name the newer primary). */
            o->state = REP_ST_MUST_RESYNC;
            o->link_state = REP_LINK_FENCED;
            o->must_resync = 1;
        } else if (o->copy_active) {
            o->state = REP_ST_COPYING;
        } else {
            o->state = REP_ST_REPLICA;
        }
        free(d);
        if (o->link_state == REP_LINK_NONE ||
            o->link_state == REP_LINK_STOPPED)
            o->link_state = now - o->last_sync_ms < 10000 ? REP_LINK_RECEIVING
                                                          : REP_LINK_IDLE;
        else if (o->link_state == REP_LINK_RECEIVING &&
                 now - o->last_sync_ms >= 10000)
            o->link_state = REP_LINK_IDLE;
    }
    if (o->split_brain && o->info.role == JR_ROLE_PRIMARY)
        o->state = REP_ST_SPLIT_BRAIN;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int rep__idlist_add(struct rep_idlist *l, const char *id)
{
    if (l->n == l->cap) {
        size_t c = l->cap ? 2 * l->cap : 32;
        void *p = realloc(l->a, c * sizeof(*l->a));
        if (!p) return -ENOMEM;
        l->a = p;
        l->cap = c;
    }
    if (!(l->a[l->n] = strdup(id))) return -ENOMEM;
    l->n++;
    return 0;
}

static int idlist_cb(const char *id, void *arg) { return rep__idlist_add(arg, id); }

int rep__idlist_all(rep_ctx *r, struct rep_idlist *l)
{
    memset(l, 0, sizeof(*l));
    int rc = jr_volume_list(r->st, idlist_cb, l);
    if (l->n > 1) qsort(l->a, l->n, sizeof(*l->a), cmp_str);
    return rc;
}

void rep__idlist_free(struct rep_idlist *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->a[i]);
    free(l->a);
    memset(l, 0, sizeof(*l));
}

int rep__snapshot(rep_ctx *r, char *const *ids, size_t n,
                  struct rep_snap *out)
{
    struct rep_idlist l = {0};
    int rc = 0;
    memset(out, 0, sizeof(*out));
    rep__scpy(out->region, sizeof(out->region), r->region);
    rep__scpy(out->peer_region, sizeof(out->peer_region), r->peer_region);
    out->peer_up = __atomic_load_n(&r->peer_up, __ATOMIC_ACQUIRE);
    out->now_ms = tb_wall_ms();
    if (!ids) {
        rc = rep__idlist_all(r, &l);
        if (rc < 0) goto out;
        ids = l.a;
        n = l.n;
    }
    out->vols = calloc(n + 1, sizeof(*out->vols));
    if (!out->vols) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) rep__vol_status(r, ids[i], &out->vols[i]);
    out->n = n;
out:
    rep__idlist_free(&l);
    return rc;
}

void rep__snapshot_free(struct rep_snap *s)
{
    free(s->vols);
    memset(s, 0, sizeof(*s));
}
