/*
 * rep_meta.c: a volume's metadata as the replicator reads and writes it
 * (jr.h "meta." keys): typed get/set/remove, the eligibility rule (which
 * volumes this replicator ships, and to whom), a secondary's position
 * reset, and the metadata as protobuf-c map entries (the VolumeSpec a
 * replica is created from, GetVolume and the admin status).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rep_int.h"
#include "rep_pbmap.h"
#include "tlog.h"

/* ---------------------------------------------------------------- meta */

char *rep__meta(rep_ctx *r, const char *id, const char *key)
{
    char *v = NULL;
    if (jr_meta_get(r->st, id, key, &v) < 0) return NULL;
    return v;
}

uint64_t rep__meta_u64(rep_ctx *r, const char *id, const char *key)
{
    char *v = rep__meta(r, id, key);
    uint64_t x = v ? strtoull(v, NULL, 10) : 0;
    free(v);
    return x;
}

int rep__meta_set_u64(rep_ctx *r, const char *id, const char *key,
                      uint64_t v)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%" PRIu64, v);
    return jr_meta_set(r->st, id, key, buf);
}

/* The few keys a scan needs, collected in one pass. */
struct vmeta {
    char replication[32];
    char replication_alt[32];
    char peer[RG_MAX_NAME + 1];
    char peer_alt[RG_MAX_NAME + 1];
    char from[RG_MAX_NAME + 1];
    char split_why[REP_SPLIT_WHY];
    int split, draining;
};

static int vmeta_cb(const char *key, const char *val, void *arg)
{
    struct vmeta *m = arg;
    if (!strcmp(key, REP_META_REPLICATION))
        rep__scpy(m->replication, sizeof(m->replication), val);
    else if (!strcmp(key, REP_META_REPLICATION_ALT))
        rep__scpy(m->replication_alt, sizeof(m->replication_alt), val);
    else if (!strcmp(key, REP_META_PEER_REGION))
        rep__scpy(m->peer, sizeof(m->peer), val);
    else if (!strcmp(key, REP_META_PEER_REGION_ALT))
        rep__scpy(m->peer_alt, sizeof(m->peer_alt), val);
    else if (!strcmp(key, REP_META_PEER))
        rep__scpy(m->from, sizeof(m->from), val);
    else if (!strcmp(key, REP_META_SPLIT)) {
        m->split = 1;
        rep__scpy(m->split_why, sizeof(m->split_why), val);
    }
    else if (!strcmp(key, REP_META_DRAINING))
        m->draining = 1;
    return 0;
}

/* 0, or the store's error: never taken for "no such keys" (a volume
 * whose metadata cannot be read is not "not replicated"). */
static int vmeta_load(rep_ctx *r, const char *id, struct vmeta *m)
{
    memset(m, 0, sizeof(*m));
    int rc = jr_meta_iter(r->st, id, vmeta_cb, m);
    if (rc < 0) memset(m, 0, sizeof(*m));
    return rc;
}

static void vmeta_peer(rep_ctx *r, const struct vmeta *m, char *out,
                       size_t size)
{
    const char *rep = m->replication[0] ? m->replication : m->replication_alt;
    const char *peer = m->peer[0] ? m->peer : m->peer_alt;
    out[0] = 0;
    if (strcmp(rep, "async")) return;
    /* The replica carries the primary's metadata unchanged: its peer is the
     * region it came from. */
    if (!strcmp(peer, r->region)) peer = m->from;
    snprintf(out, size, "%s", peer);
}

int rep__vol_peer(rep_ctx *r, const char *id, char *out, size_t size)
{
    return rep__vol_peer_split(r, id, out, size, NULL);
}

int rep__vol_peer_split(rep_ctx *r, const char *id, char *out, size_t size,
                        char split[REP_SPLIT_WHY])
{
    struct vmeta m;
    out[0] = 0;
    if (split) split[0] = 0;
    int rc = vmeta_load(r, id, &m);
    if (rc < 0) return rc;
    vmeta_peer(r, &m, out, size);
    if (split && m.split)
        rep__scpy(split, REP_SPLIT_WHY, m.split_why[0] ? m.split_why : "?");
    return 0;
}

int rep__eligible(rep_ctx *r, const char *id, const struct jr_info *info)
{
    struct vmeta m;
    char peer[RG_MAX_NAME + 1];
    int rc = vmeta_load(r, id, &m);
    if (rc < 0) return rc;
    vmeta_peer(r, &m, peer, sizeof(peer));
    if (strcmp(peer, r->peer_region) || m.split) return 0;
    if (info->role == JR_ROLE_PRIMARY) return 1;
    return m.draining;
}

void rep__snap_gap_get(rep_ctx *r, const char *id, uint64_t *first,
                       uint64_t *last)
{
    char *v = rep__meta(r, id, REP_META_SNAP_GAP);
    *first = *last = 0;
    if (v && (sscanf(v, "%" SCNu64 " %" SCNu64, first, last) != 2 ||
              !*first || *last < *first))
        *first = *last = 0;
    free(v);
}

int rep__snap_gap_note(rep_ctx *r, const char *id, uint64_t first,
                       uint64_t last)
{
    char buf[48];
    uint64_t of, ol;
    rep__snap_gap_get(r, id, &of, &ol);
    if (of) {
        if (of <= first && ol >= last) return 0; /* covered: no write */
        if (of < first) first = of;
        if (ol > last) last = ol;
    }
    snprintf(buf, sizeof(buf), "%" PRIu64 " %" PRIu64, first, last);
    int rc = jr_meta_set(r->st, id, REP_META_SNAP_GAP, buf);
    if (rc == 0)
        tlog_info("rep.snap_gap", "vol=%s first=%" PRIu64 " last=%" PRIu64
                  " msg=\"a region copy or a resync: this copy's snapshots "
                  "of these positions may differ from the primary's\"", id,
                  first, last);
    return rc;
}

static int snap_newest_cb(const struct jr_snap *sn, void *arg)
{
    uint64_t *m = arg;
    if (sn->seq > *m) *m = sn->seq;
    return 0;
}

/* A secondary's position reset after a region copy or a rollback: the
 * journal's jr_replica_rebase at the replica's current size. */
int rep__position_set(rep_ctx *r, const char *id, uint64_t seq)
{
    struct jr_info info;
    int rc = jr_volume_stat(r->st, id, &info);
    if (rc < 0) return rc;
    if (info.role != JR_ROLE_SECONDARY) return JR_EROLE;
    /* Forward over positions never applied here (a region copy): the
     * snapshot entries among them are lost to this copy.  Recorded before
     * the rebase, so a crash in between over-reports, never
     * under-reports. */
    if (seq > info.applied &&
        (rc = rep__snap_gap_note(r, id, info.applied + 1, seq)) < 0)
        return rc;
    /* Back (a resync to the last common position): snapshots this copy
     * holds past it belong to a history the primary does not share. */
    uint64_t newest = 0;
    if (seq < info.applied &&
        (rc = jr_snap_list(r->st, id, snap_newest_cb, &newest)) < 0)
        return rc;
    if (newest > seq &&
        (rc = rep__snap_gap_note(r, id, seq + 1, newest)) < 0)
        return rc;
    rc = jr_replica_rebase(r->st, id, seq, info.size);
    if (rc == 0) tlog_info("rep.position_set", "vol=%s seq=%" PRIu64, id, seq);
    return rc;
}

struct meta_coll {
    struct rep_pbmap map;
    const char *skip;
};

static int meta_coll_cb(const char *key, const char *val, void *arg)
{
    struct meta_coll *m = arg;
    if (m->skip && !strncmp(key, m->skip, strlen(m->skip))) return 0;
    return rep__pbmap_add(&m->map, key, val);
}

void rep__meta_entries_free(void **a, size_t n) { rep__pbmap_free(a, n); }

int rep__meta_entries(rep_ctx *r, const char *id,
                      const ProtobufCMessageDescriptor *desc,
                      const char *skip_prefix, void ***out, size_t *n)
{
    struct meta_coll m = {.skip = skip_prefix};
    *out = NULL;
    *n = 0;
    int rc = rep__pbmap_init(&m.map, desc);
    if (rc == 0) rc = jr_meta_iter(r->st, id, meta_coll_cb, &m);
    if (rc < 0) {
        rep__pbmap_free(m.map.a, m.map.n);
        return rc;
    }
    *out = m.map.a;
    *n = m.map.n;
    return 0;
}

void rep__spec_free(struct rep_spec *b)
{
    rep__meta_entries_free(b->ents, b->n);
    memset(b, 0, sizeof(*b));
}

int rep__spec_make(rep_ctx *r, const char *id, const struct jr_info *info,
                     uint64_t start_seq, struct rep_spec *b)
{
    memset(b, 0, sizeof(*b));
    tandem__repl__v1__volume_spec__init(&b->spec);
    /* Our own "rep." bookkeeping stays in this region. */
    int rc = rep__meta_entries(r, id, &tandem__repl__v1__volume_spec__meta_entry__descriptor,
                               REP_META_PREFIX, &b->ents, &b->n);
    if (rc < 0) goto fail;
    b->spec.size = info->size;
    b->spec.object_size = info->object_size;
    b->spec.n_meta = b->n;
    b->spec.meta = (Tandem__Repl__V1__VolumeSpec__MetaEntry **)b->ents;
    b->spec.start_seq = start_seq;
    return 0;
fail:
    rep__spec_free(b);
    return rc;
}

/* ------------------------------------------------------------- health */

static const char *const health_names[] = {
    [REP_H_UNKNOWN] = "",
    [REP_H_OK] = REP_HEALTH_OK,
    [REP_H_LINK_DOWN] = REP_HEALTH_LINK_DOWN,
    [REP_H_SPLIT_BRAIN] = REP_HEALTH_SPLIT_BRAIN,
    [REP_H_COPYING] = REP_HEALTH_COPYING,
};
#define N_HEALTH (sizeof(health_names) / sizeof(health_names[0]))

const char *rep__health_name(enum rep_health h)
{
    return (unsigned)h < N_HEALTH ? health_names[h] : "";
}

int rep__health_parse(const char *val, enum rep_health *st, int64_t *since,
                      char *peer, size_t size, const char **text)
{
    /* "<state> <since> <peer> <text to the end>" (rep.h). */
    const char *p = val, *e;
    enum rep_health h = REP_H_UNKNOWN;
    if (!(e = strchr(p, ' '))) return -EINVAL;
    for (unsigned i = 1; i < N_HEALTH; i++)
        if ((size_t)(e - p) == strlen(health_names[i]) &&
            !strncmp(p, health_names[i], (size_t)(e - p)))
            h = (enum rep_health)i;
    if (h == REP_H_UNKNOWN) return -EINVAL;
    p = e + 1;
    char *end;
    errno = 0;
    long long s = strtoll(p, &end, 10);
    if (end == p || *end != ' ' || errno || s < 0) return -EINVAL;
    p = end + 1;
    e = strchr(p, ' ');
    size_t pl = e ? (size_t)(e - p) : strlen(p);
    if (pl == 0 || pl > RG_MAX_NAME) return -EINVAL;
    if (st) *st = h;
    if (since) *since = s;
    if (peer && size) {
        if (pl >= size) pl = size - 1;
        memcpy(peer, p, pl);
        peer[pl] = 0;
    }
    if (text) *text = e ? e + 1 : p + pl;
    return 0;
}

int rep__health_set(rep_ctx *r, const char *id, struct rep_health_rec *h,
                    enum rep_health st, const char *text)
{
    if (st == h->state) return 0; /* the steady case: no store access */
    if (h->state == REP_H_UNKNOWN) {
        /* First call of this writer: what an earlier run recorded stands
         * (its `since` is when the state really began). */
        char *old = rep__meta(r, id, REP_META_HEALTH);
        enum rep_health os;
        int64_t osince;
        if (old && rep__health_parse(old, &os, &osince, NULL, 0, NULL) == 0 &&
            os == st) {
            h->state = os;
            h->since = osince;
        }
        free(old);
        if (st == h->state) return 0;
    }
    char t[201], val[300];
    rep__scpy(t, sizeof(t), text ? text : "");
    for (char *c = t; *c; c++)
        if (*c == '\n' || *c == '\r') *c = ' ';
    int64_t now = tb_wall_ms() / 1000;
    snprintf(val, sizeof(val), "%s %" PRId64 " %s %s", rep__health_name(st),
             now, r->peer_region, t);
    int rc = jr_meta_set(r->st, id, REP_META_HEALTH, val);
    if (rc < 0) {
        tlog_warn("rep.health_failed", "vol=%s state=%s err=%d (%s)", id,
                  rep__health_name(st), rc, jr_strerror(rc));
        return rc;
    }
    char q[260];
    tlog_info("rep.health", "vol=%s state=%s was=%s since=%" PRId64
              " peer=%s why=%s", id, rep__health_name(st),
              h->state ? rep__health_name(h->state) : "-", now,
              r->peer_region, tlog_q(q, sizeof(q), t));
    h->state = st;
    h->since = now;
    return 0;
}
