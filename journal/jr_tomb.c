/*
 * jr_tomb.c: tombstones of deleted replicated volumes (FORMAT.md R-35):
 * one omap key per deleted id in JR_TOMBS_OID, "<epoch> <deleted_at>
 * <peer>[ <peer>...]", written by jr_volume_delete before anything is
 * removed, so that the replicator deletes the replicas in the peer
 * regions too (once their links are up) and then removes the tombstone.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jr_int.h"

struct peer_names {
    char s[JR_TOMB_MAX_PEERS * (JR_MAX_REGION + 1) + 1];
    int n;
};

static int ack_name_cb(const char *key, const char *val, size_t len,
                       void *arg)
{
    (void)val;
    (void)len;
    struct peer_names *p = arg;
    const char *name = key + 4; /* "ack." */
    if (p->n >= JR_TOMB_MAX_PEERS || !jr__valid_peer(name)) return 0;
    size_t used = strlen(p->s);
    snprintf(p->s + used, sizeof p->s - used, "%s%s", p->n ? " " : "", name);
    p->n++;
    return 0;
}

/* The tombstone for a primary with peers; 0 when there is nothing to
 * record. */
int jr__tomb_write(st_store *st, const char *vol_id, uint64_t epoch)
{
    char hoid[JR_OID_MAX];
    jr__oid_header(hoid, sizeof hoid, vol_id);
    struct peer_names p = {.n = 0};
    p.s[0] = 0;
    int r = st_omap_iter(st, hoid, "ack.", NULL, 0, ack_name_cb, &p);
    if (r < 0 || p.n == 0) return r;
    char val[32 + 24 + sizeof p.s];
    int n = snprintf(val, sizeof val, "%" PRIu64 " %" PRIu64 " %s", epoch,
                     (uint64_t)time(NULL), p.s);
    r = st_omap_set(st, JR_TOMBS_OID, vol_id, val, (size_t)n);
    if (r == 0)
        tlog_info("volume.tombstone", "vol=%s epoch=%" PRIu64 " peers=\"%s\"",
                  vol_id, epoch, p.s);
    return r;
}

/* "<epoch> <deleted_at> <peer>[ <peer>...]"; JR_ECORRUPT if not. */
int jr__tomb_parse(const char *id, const char *val, size_t len,
                   struct jr_tomb *t)
{
    char buf[64 + JR_TOMB_MAX_PEERS * (JR_MAX_REGION + 1)];
    memset(t, 0, sizeof *t);
    if (len >= sizeof buf || memchr(val, 0, len)) goto bad;
    memcpy(buf, val, len);
    buf[len] = 0;
    snprintf(t->vol_id, sizeof t->vol_id, "%s", id);
    char *save = NULL, *w;
    uint64_t x;
    if (!(w = strtok_r(buf, " ", &save)) || jr__parse_u64(w, &t->epoch) < 0 ||
        t->epoch == 0)
        goto bad;
    if (!(w = strtok_r(NULL, " ", &save)) || jr__parse_u64(w, &x) < 0)
        goto bad;
    t->deleted_at = (int64_t)x;
    while ((w = strtok_r(NULL, " ", &save))) {
        if (t->n_peers >= JR_TOMB_MAX_PEERS || !jr__valid_peer(w)) goto bad;
        snprintf(t->peers[t->n_peers++], JR_MAX_REGION + 1, "%s", w);
    }
    if (t->n_peers == 0) goto bad;
    return 0;
bad:
    tlog_warn("volume.tombstone_unreadable", "object=%s key=%s", JR_TOMBS_OID,
              id);
    return JR_ECORRUPT;
}

int jr_tomb_get(st_store *st, const char *vol_id, struct jr_tomb *t)
{
    if (!st || !t || !jr__valid_id(vol_id)) return -EINVAL;
    char *val = NULL;
    size_t len = 0;
    int r = st_omap_get(st, JR_TOMBS_OID, vol_id, &val, &len);
    if (r < 0) return r;
    r = jr__tomb_parse(vol_id, val, len, t);
    free(val);
    return r;
}

struct tomb_list_arg {
    int (*cb)(const struct jr_tomb *t, void *arg);
    void *arg;
};

static int tomb_list_cb(const char *key, const char *val, size_t len,
                        void *arg)
{
    struct tomb_list_arg *a = arg;
    struct jr_tomb t;
    if (!jr__valid_id(key) || jr__tomb_parse(key, val, len, &t) < 0)
        return 0; /* reported; never a reason to delete anything */
    return a->cb(&t, a->arg);
}

int jr_tomb_list(st_store *st, int (*cb)(const struct jr_tomb *t, void *arg),
                 void *arg)
{
    if (!st || !cb) return -EINVAL;
    struct tomb_list_arg a = {cb, arg};
    int r = st_omap_iter(st, JR_TOMBS_OID, NULL, NULL, 0, tomb_list_cb, &a);
    return r == -ENOENT ? 0 : r; /* no tombstone was ever written */
}

int jr_tomb_remove(st_store *st, const char *vol_id)
{
    if (!st || !jr__valid_id(vol_id)) return -EINVAL;
    struct jr_tomb t;
    int r = jr_tomb_get(st, vol_id, &t);
    if (r == -ENOENT) return r;
    r = st_omap_rm(st, JR_TOMBS_OID, vol_id);
    if (r == 0) tlog_info("volume.tombstone_removed", "vol=%s", vol_id);
    return r;
}

struct ack_keys {
    char k[JR_TOMB_MAX_PEERS * 4][JR_MAX_REGION + 8];
    int n;
};

static int ack_key_cb(const char *key, const char *val, size_t len, void *arg)
{
    (void)val;
    (void)len;
    struct ack_keys *a = arg;
    if (a->n < (int)(sizeof a->k / sizeof a->k[0]) &&
        strlen(key) < sizeof a->k[0])
        snprintf(a->k[a->n++], sizeof a->k[0], "%s", key);
    return 0;
}

int jr_peers_release(st_store *st, const char *vol_id)
{
    if (!st || !jr__valid_id(vol_id)) return -EINVAL;
    struct jr_info info;
    int r = jr_volume_stat(st, vol_id, &info);
    if (r < 0) return r;
    if (info.role != JR_ROLE_PRIMARY) return JR_EROLE;
    /* The tombstone first: if we stop after it, the replicas still go
     * and the acks are released by the next call (idempotent). */
    r = jr__tomb_write(st, vol_id, info.epoch ? info.epoch : 1);
    if (r < 0) return r;
    char hoid[JR_OID_MAX];
    jr__oid_header(hoid, sizeof hoid, vol_id);
    struct ack_keys a = {.n = 0};
    r = st_omap_iter(st, hoid, "ack.", NULL, 0, ack_key_cb, &a);
    if (r < 0) return r;
    for (int i = 0; i < a.n; i++) {
        r = st_omap_rm(st, hoid, a.k[i]);
        if (r < 0 && r != -ENOENT) return r;
    }
    if (a.n)
        tlog_info("volume.peers_released", "vol=%s acks=%d epoch=%" PRIu64,
                  vol_id, a.n, info.epoch);
    return 0;
}
