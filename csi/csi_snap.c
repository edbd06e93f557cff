/*
 * csi_snap.c: snapshots (CreateSnapshot, DeleteSnapshot, ListSnapshots)
 * and clones/restores (CreateVolume with a volume_content_source) on top
 * of the journal engine's snapshots (journal/jr.h, FORMAT.md §5).
 *
 * A CSI snapshot id is "<volume id>@<snap id>" (csi.h): '@' is in neither
 * alphabet, so the split is unambiguous, and the id names the volume, so
 * any controller finds it in whichever region holds the volume (its
 * replica after a failover included).
 *
 * Clones are copies, not copy-on-write children: a clone that depends on
 * nothing in its source replicates, fails over and is deleted alone (a
 * child would tie two volumes' replication, failover and lifetime
 * together, across regions too).  The copy reads the source snapshot
 * (for a volume source: a temporary snapshot, so the copy is
 * crash-consistent while the source is written) and writes only the
 * chunks that hold data.  While it runs the clone carries meta key
 * csi.clone_pending (the snapshot it copies from) and holds that
 * snapshot (jr_snap_hold: DeleteSnapshot answers FAILED_PRECONDITION);
 * a CreateVolume retry finishes a pending clone, NodeStageVolume refuses
 * one, DeleteVolume of one releases its hold.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csi_int.h"
#include "tbase.h"
#include "tlog.h"

/* How long jr_snap_create/delete wait for the writer holding the lease
 * to take a request (it polls every JR_SNAPREQ_POLL_MS) before
 * snap_journal suspects that writer is dead. */
#define SNAP_TIMEOUT_MS 10000
#define CLONE_CHUNK (4u << 20)         /* copy unit (zero chunks skipped) */
#define CLONE_OWNER "tandem-csi-controller/clone"

/* ------------------------------------------------------------- ids */

static int snap_char_ok(int c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '_' || c == '-';
}

static int snap_id_valid(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > JR_MAX_SNAP_ID) return 0;
    for (size_t i = 0; i < n; i++)
        if (!snap_char_ok((unsigned char)id[i])) return 0;
    return 1;
}

int csi_snap_id(const char *name, char *id, size_t idlen)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > CSI_MAX_NAME || idlen < 43) return -EINVAL;
    if (strncmp(name, "h-", 2) && snap_id_valid(name)) {
        if (n >= idlen) return -EINVAL;
        snprintf(id, idlen, "%s", name);
        return 0;
    }
    /* csi_volume_id hashes every name holding a ':' the same way. */
    char tmp[CSI_MAX_NAME + 8];
    snprintf(tmp, sizeof(tmp), "snap:%s", name);
    return csi_volume_id(tmp, id, idlen);
}

int csi_snapshot_id_split(const char *sid, char *vol, size_t vollen,
                          char *snap, size_t snaplen)
{
    const char *at = sid ? strchr(sid, '@') : NULL;
    if (!at || strchr(at + 1, '@')) return -EINVAL;
    size_t vl = (size_t)(at - sid);
    if (vl == 0 || vl >= vollen || vl > CSI_MAX_VOL_ID) return -EINVAL;
    memcpy(vol, sid, vl);
    vol[vl] = 0;
    if (!csi_volume_id_valid(vol) || !snap_id_valid(at + 1) ||
        strlen(at + 1) >= snaplen)
        return -EINVAL;
    snprintf(snap, snaplen, "%s", at + 1);
    return 0;
}

/* Percent-encode v (every byte outside [A-Za-z0-9._-]). */
static int label_put(char *out, size_t len, size_t *off, const char *key,
                     const char *v)
{
    int n = snprintf(out + *off, len - *off, "%s%s=", *off ? " " : "", key);
    if (n < 0 || (size_t)n >= len - *off) return -ENAMETOOLONG;
    *off += (size_t)n;
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (*off + 4 > len) return -ENAMETOOLONG;
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
            (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-')
            out[(*off)++] = (char)*p;
        else
            *off += (size_t)snprintf(out + *off, len - *off, "%%%02X", *p);
    }
    out[*off] = 0;
    return 0;
}

int csi_snap_label(const char *ns, const char *name, const char *content,
                   char *out, size_t len)
{
    size_t off = 0;
    int rc = 0;
    if (len == 0) return -ENAMETOOLONG;
    out[0] = 0;
    if (ns && ns[0]) rc = label_put(out, len, &off, "namespace", ns);
    if (!rc && name && name[0]) rc = label_put(out, len, &off, "name", name);
    if (!rc && content && content[0])
        rc = label_put(out, len, &off, "content", content);
    if (!rc && off > JR_MAX_SNAP_LABEL) rc = -ENAMETOOLONG;
    return rc;
}

/* ------------------------------------------------------------- helpers */

static int snap_rpc_code(int rc)
{
    switch (rc) {
    case -ENOENT: return RPC_NOT_FOUND;
    case -EINVAL: return RPC_INVALID_ARGUMENT;
    case -ENOSPC:
    case -EDQUOT: return RPC_RESOURCE_EXHAUSTED;
    case -EBUSY: return RPC_FAILED_PRECONDITION;
    case JR_EROLE:
    case JR_ECORRUPT: return RPC_FAILED_PRECONDITION;
    default: return csi__rpc_code(rc);
    }
}

static Csi__V1__Snapshot *snapshot_new(const char *vol,
                                       const struct jr_snap *js)
{
    char sid[CSI_MAX_VOL_ID + JR_MAX_SNAP_ID + 2];
    Csi__V1__Snapshot *o = csi__xcalloc(1, sizeof(*o));
    csi__v1__snapshot__init(o);
    snprintf(sid, sizeof(sid), "%s@%s", vol, js->snap_id);
    o->snapshot_id = csi__xstrdup(sid);
    o->source_volume_id = csi__xstrdup(vol);
    o->size_bytes = (int64_t)js->size;
    o->creation_time = csi__xcalloc(1, sizeof(*o->creation_time));
    google__protobuf__timestamp__init(o->creation_time);
    o->creation_time->seconds = js->ts_ns / 1000000000;
    o->creation_time->nanos = (int32_t)(js->ts_ns % 1000000000);
    /* jr_snap_create returns once the snapshot is durable and readable:
     * no post-processing, so it is usable at once. */
    o->ready_to_use = 1;
    return o;
}

struct other_arg {
    st_store *st;
    const char *skip_vol;
    const char *snap;
    char found[CSI_MAX_VOL_ID + 1];
};

static int other_one(const char *vol, void *arg)
{
    struct other_arg *a = arg;
    struct jr_snap js;
    if (!strcmp(vol, a->skip_vol)) return 0;
    if (jr_snap_get(a->st, vol, a->snap, &js) == 0) {
        snprintf(a->found, sizeof(a->found), "%s", vol);
        return 1;
    }
    return 0;
}

/* Another volume holding snapshot id snap (the same CreateSnapshot name
 * for another source): its id in found, 1; else 0.  Costs one lookup per
 * volume of every reachable region: taken only when a name is new. */
static int name_taken_elsewhere(csi_service *s, const char *vol,
                                const char *snap, char *found, size_t len)
{
    for (size_t i = 0; i < s->cfg->n; i++) {
        st_store *st = csi__store(s, i);
        if (!st) continue;
        struct other_arg a = {st, vol, snap, ""};
        if (jr_volume_list(st, other_one, &a) == 1) {
            snprintf(found, len, "%s", a.found);
            return 1;
        }
    }
    return 0;
}

/* Take (del 0) or delete (del 1) snapshot snap of vol through whoever
 * writes the volume.  jr_snap_create/delete hand the entry to the writer
 * holding the lease; a writer that died (node crash, exporter killed)
 * still holds it (jr.h), and its requests would time out until the
 * volume is staged again, so that a volume whose node died could never
 * lose its snapshots nor, with them, be deleted.  On a timeout this
 * process opens the volume writable: jr_open tells a live holder
 * (renewing: JR_ELOCKED within ~2 s, answered as the timeout it is) from
 * a dead one (unchanged for the lease TTL, 30 s: fenced and taken over,
 * R-36, as a NodeStageVolume elsewhere would), then serves the request
 * itself. */
static int snap_journal(st_store *st, const char *vol, const char *snap,
                        const char *label, int del, struct jr_snap *js)
{
    int rc = del ? jr_snap_delete(st, vol, snap, SNAP_TIMEOUT_MS)
                 : jr_snap_create(st, vol, snap, label, SNAP_TIMEOUT_MS, js);
    if (rc != -ETIMEDOUT) return rc;
    jr_volume *v = NULL;
    int orc = jr_open(st, vol, JR_OPEN_WRITE, "tandem-csi-controller/snap",
                      &v);
    if (orc == JR_ELOCKED) return -ETIMEDOUT; /* alive, just slow */
    if (orc < 0) return orc;
    tlog_warn("csi.snapshot.writer_taken_over", "vol=%s snap=%s op=%s "
              "msg=\"the lease holder did not take the request and stopped "
              "renewing: fenced\"", vol, snap, del ? "delete" : "create");
    /* This process is the writer now: a delete request goes to its own
     * poller, a create is journaled directly (both idempotent). */
    rc = del ? jr_snap_delete(st, vol, snap, SNAP_TIMEOUT_MS)
             : jr_snapshot(v, snap, label, js);
    int crc = jr_close(v);
    return rc < 0 ? rc : crc;
}

/* -------------------------------------------------------- CreateSnapshot */

int csi__create_snapshot(void *svc, rpc_ctx *ctx, const ProtobufCMessage *req,
                         ProtobufCMessage **resp)
{
    csi_service *s = svc;
    const Csi__V1__CreateSnapshotRequest *q = (const void *)req;
    char snap[JR_MAX_SNAP_ID + 1], label[JR_MAX_SNAP_LABEL + 64];
    char lock[CSI_MAX_VOL_ID + JR_MAX_SNAP_ID + 2], other[CSI_MAX_VOL_ID + 1];
    int code, rc;
    if ((code = csi__need(ctx, "name", q->name)) ||
        (code = csi__need(ctx, "source_volume_id", q->source_volume_id)))
        return code;
    if (csi_snap_id(q->name, snap, sizeof(snap)) < 0)
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT, "name %.64s: no "
                             "snapshot id can be derived from it (1..%d "
                             "bytes)", q->name, CSI_MAX_NAME);
    const char *pfx = "csi.storage.k8s.io/";
    char k1[64], k2[64], k3[64];
    snprintf(k1, sizeof(k1), "%svolumesnapshot/namespace", pfx);
    snprintf(k2, sizeof(k2), "%svolumesnapshot/name", pfx);
    snprintf(k3, sizeof(k3), "%svolumesnapshotcontent/name", pfx);
    void *const *pe = (void *const *)q->parameters;
    if (csi_snap_label(csi__map_get(q->n_parameters, pe, k1),
                       csi__map_get(q->n_parameters, pe, k2),
                       csi__map_get(q->n_parameters, pe, k3), label,
                       sizeof(label)) < 0)
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT, "parameters %s*: "
                             "the VolumeSnapshot's names are longer than "
                             "%d bytes together", pfx, JR_MAX_SNAP_LABEL);
    if (!csi_volume_id_valid(q->source_volume_id))
        return rpc_ctx_error(ctx, RPC_NOT_FOUND, "source volume %.128s not "
                             "found", q->source_volume_id);
    snprintf(lock, sizeof(lock), "%s@%s", q->source_volume_id, snap);
    if (csi__lock(s, lock) < 0)
        return rpc_ctx_error(ctx, RPC_ABORTED, "an operation on snapshot %s "
                             "is pending", lock);
    size_t idx;
    struct jr_info in;
    struct jr_snap js;
    if ((code = csi__find_volume(s, ctx, q->source_volume_id, 1, &idx, &in)))
        goto out;
    st_store *st = csi__store(s, idx);
    rc = st ? jr_snap_get(st, q->source_volume_id, snap, &js) : -EIO;
    if (rc == 0) goto reply; /* a retry: the snapshot is cut already */
    if (rc != -ENOENT) {
        code = rpc_ctx_error(ctx, snap_rpc_code(rc), "snapshot %s: %s", lock,
                             jr_strerror(rc));
        goto out;
    }
    if (name_taken_elsewhere(s, q->source_volume_id, snap, other,
                             sizeof(other))) {
        code = rpc_ctx_error(ctx, RPC_ALREADY_EXISTS, "snapshot name %s is "
                             "taken by a snapshot of volume %s, not %s",
                             q->name, other, q->source_volume_id);
        goto out;
    }
    char *pend = NULL;
    if (jr_meta_get(st, q->source_volume_id, "csi.clone_pending", &pend) == 0)
    {
        /* Half copied: a snapshot of it would be no state it ever had. */
        code = rpc_ctx_error(ctx, RPC_UNAVAILABLE, "volume %s is a clone "
                             "still being copied (from %s): retry once its "
                             "CreateVolume finished", q->source_volume_id,
                             pend);
        free(pend);
        goto out;
    }
    if (in.role != JR_ROLE_PRIMARY) {
        code = rpc_ctx_error(ctx, RPC_FAILED_PRECONDITION, "volume %s is a "
                             "replica (secondary) in region %s: snapshots "
                             "are taken at the primary and replicate",
                             q->source_volume_id, s->cfg->regions[idx].name);
        goto out;
    }
    rc = snap_journal(st, q->source_volume_id, snap, label, 0, &js);
    if (rc == JR_ECORRUPT) {
        code = rpc_ctx_error(ctx, RPC_FAILED_PRECONDITION, "volume %s has a "
                             "damaged journal: see tandemctl journal-check "
                             "(RUNBOOK: A damaged journal tail)",
                             q->source_volume_id);
        goto out;
    }
    if (rc < 0) {
        code = rpc_ctx_error(ctx, snap_rpc_code(rc), "snapshot %s of volume "
                             "%s: %s", snap, q->source_volume_id,
                             jr_strerror(rc));
        goto out;
    }
    tlog_info("csi.snapshot.created", "vol=%s snap=%s seq=%" PRIu64
              " size=%" PRIu64 " label=\"%s\"", q->source_volume_id, snap,
              js.seq, js.size, label);
reply:;
    Csi__V1__CreateSnapshotResponse *r = csi__xcalloc(1, sizeof(*r));
    csi__v1__create_snapshot_response__init(r);
    r->snapshot = snapshot_new(q->source_volume_id, &js);
    *resp = &r->base;
out:
    csi__unlock(s, lock);
    return code;
}

/* -------------------------------------------------------- DeleteSnapshot */

struct holders {
    char buf[256];
    size_t n;
};

static int holder_one(const char *h, void *arg)
{
    struct holders *a = arg;
    size_t l = strlen(a->buf);
    if (l < sizeof(a->buf) - 1)
        snprintf(a->buf + l, sizeof(a->buf) - l, "%s%s", a->n ? "," : "", h);
    a->n++;
    return 0;
}

int csi__delete_snapshot(void *svc, rpc_ctx *ctx, const ProtobufCMessage *req,
                         ProtobufCMessage **resp)
{
    csi_service *s = svc;
    const Csi__V1__DeleteSnapshotRequest *q = (const void *)req;
    char vol[CSI_MAX_VOL_ID + 1], snap[JR_MAX_SNAP_ID + 1];
    int code = RPC_OK, rc;
    if ((code = csi__need(ctx, "snapshot_id", q->snapshot_id))) return code;
    /* An id tandem never made names no snapshot: it is gone (OK). */
    if (csi_snapshot_id_split(q->snapshot_id, vol, sizeof(vol), snap,
                              sizeof(snap)) < 0)
        goto reply;
    if (csi__lock(s, q->snapshot_id) < 0)
        return rpc_ctx_error(ctx, RPC_ABORTED, "an operation on snapshot %s "
                             "is pending", q->snapshot_id);
    size_t idx;
    struct jr_info in;
    rc = csi__find(s, vol, 1, &idx, &in);
    if (rc == -ENOENT) goto unlock; /* the volume and its snapshots: gone */
    if (rc < 0) {
        code = rpc_ctx_error(ctx, csi__rpc_code(rc), "looking up volume %s: "
                             "%s", vol, jr_strerror(rc));
        goto unlock;
    }
    st_store *st = csi__store(s, idx);
    struct jr_snap js;
    rc = jr_snap_get(st, vol, snap, &js);
    if (rc == -ENOENT) goto unlock;
    if (rc < 0) {
        code = rpc_ctx_error(ctx, csi__rpc_code(rc), "snapshot %s: %s",
                             q->snapshot_id, jr_strerror(rc));
        goto unlock;
    }
    if (in.role != JR_ROLE_PRIMARY) {
        code = rpc_ctx_error(ctx, RPC_FAILED_PRECONDITION, "volume %s is a "
                             "replica (secondary) in region %s: delete the "
                             "snapshot at the primary, or fail over first",
                             vol, s->cfg->regions[idx].name);
        goto unlock;
    }
    rc = snap_journal(st, vol, snap, NULL, 1, NULL);
    if (rc == -EBUSY) {
        struct holders h = {"", 0};
        jr_snap_holds(st, vol, snap, holder_one, &h);
        code = rpc_ctx_error(ctx, RPC_FAILED_PRECONDITION, "snapshot %s is "
                             "in use: clone(s) being copied from it: %s",
                             q->snapshot_id, h.buf[0] ? h.buf : "?");
        goto unlock;
    }
    if (rc < 0 && rc != -ENOENT) {
        code = rpc_ctx_error(ctx, snap_rpc_code(rc), "deleting snapshot %s: "
                             "%s", q->snapshot_id, jr_strerror(rc));
        goto unlock;
    }
    tlog_info("csi.snapshot.deleted", "vol=%s snap=%s", vol, snap);
unlock:
    csi__unlock(s, q->snapshot_id);
    if (code) return code;
reply:
    *resp = csi__reply_new(&csi__v1__delete_snapshot_response__descriptor);
    return RPC_OK;
}

/* --------------------------------------------------------- ListSnapshots */

struct snaplist {
    const char *vol;
    char **ids;        /* "<vol>@<snap>", sorted later */
    struct jr_snap *snaps;
    char **vols;
    size_t n, cap;
};

static int snap_collect(const struct jr_snap *js, void *arg)
{
    struct snaplist *l = arg;
    char sid[CSI_MAX_VOL_ID + JR_MAX_SNAP_ID + 2];
    if (l->n == l->cap) {
        size_t nc = l->cap ? 2 * l->cap : 64;
        char **ni = realloc(l->ids, nc * sizeof(*ni));
        if (ni) l->ids = ni;
        char **nv = realloc(l->vols, nc * sizeof(*nv));
        if (nv) l->vols = nv;
        struct jr_snap *ns = realloc(l->snaps, nc * sizeof(*ns));
        if (ns) l->snaps = ns;
        if (!ni || !nv || !ns) return -ENOMEM;
        l->cap = nc;
    }
    snprintf(sid, sizeof(sid), "%s@%s", l->vol, js->snap_id);
    l->ids[l->n] = csi__xstrdup(sid);
    l->vols[l->n] = csi__xstrdup(l->vol);
    l->snaps[l->n] = *js;
    l->n++;
    return 0;
}

struct volset {
    char **ids;
    size_t n, cap;
};

static int vol_collect(const char *id, void *arg)
{
    struct volset *v = arg;
    if (v->n == v->cap) {
        size_t nc = v->cap ? 2 * v->cap : 64;
        char **na = realloc(v->ids, nc * sizeof(*na));
        if (!na) return -ENOMEM;
        v->ids = na;
        v->cap = nc;
    }
    v->ids[v->n++] = csi__xstrdup(id);
    return 0;
}

static int cmp_strp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Snapshots of volume vol as its primary copy (else a replica) has them. */
static void list_volume(csi_service *s, const char *vol, struct snaplist *l)
{
    size_t idx;
    struct jr_info in;
    if (csi__find(s, vol, 1, &idx, &in) < 0) return;
    st_store *st = csi__store(s, idx);
    if (!st) return;
    l->vol = vol;
    int rc = jr_snap_list(st, vol, snap_collect, l);
    if (rc < 0 && rc != -ENOENT)
        tlog_warn("csi.snapshot.list_failed", "vol=%s region=%s err=%d", vol,
                  s->cfg->regions[idx].name, rc);
}

#define SNAP_TOKEN_PREFIX "after:"

int csi__list_snapshots(void *svc, rpc_ctx *ctx, const ProtobufCMessage *req,
                        ProtobufCMessage **resp)
{
    csi_service *s = svc;
    const Csi__V1__ListSnapshotsRequest *q = (const void *)req;
    char vol[CSI_MAX_VOL_ID + 1], snap[JR_MAX_SNAP_ID + 1];
    const char *after = NULL;
    struct snaplist l = {0};
    struct volset vs = {0};
    if (q->max_entries < 0)
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
                             "max_entries is negative");
    if (q->starting_token && q->starting_token[0]) {
        /* The token is the last snapshot id of the previous page (ids
         * sort stably), checked before it is trusted. */
        size_t pl = strlen(SNAP_TOKEN_PREFIX);
        if (strncmp(q->starting_token, SNAP_TOKEN_PREFIX, pl) ||
            csi_snapshot_id_split(q->starting_token + pl, vol, sizeof(vol),
                                  snap, sizeof(snap)) < 0)
            return rpc_ctx_error(ctx, RPC_ABORTED, "starting_token %.64s is "
                                 "not valid: start again without it",
                                 q->starting_token);
        after = q->starting_token + pl;
    }
    if (q->snapshot_id && q->snapshot_id[0]) {
        /* One snapshot (or none: an unknown id lists nothing). */
        if (csi_snapshot_id_split(q->snapshot_id, vol, sizeof(vol), snap,
                                  sizeof(snap)) == 0 &&
            (!q->source_volume_id || !q->source_volume_id[0] ||
             !strcmp(q->source_volume_id, vol))) {
            size_t idx;
            struct jr_info in;
            struct jr_snap js;
            if (csi__find(s, vol, 1, &idx, &in) == 0 && csi__store(s, idx) &&
                jr_snap_get(csi__store(s, idx), vol, snap, &js) == 0) {
                l.vol = vol;
                snap_collect(&js, &l);
            }
        }
    } else if (q->source_volume_id && q->source_volume_id[0]) {
        if (csi_volume_id_valid(q->source_volume_id))
            list_volume(s, q->source_volume_id, &l);
    } else {
        for (size_t i = 0; i < s->cfg->n; i++) {
            st_store *st = csi__store(s, i);
            if (!st) continue; /* what the reachable regions hold */
            int rc = jr_volume_list(st, vol_collect, &vs);
            if (rc < 0)
                tlog_warn("csi.snapshot.list_region_failed", "region=%s "
                          "err=%d", s->cfg->regions[i].name, rc);
        }
        if (vs.n) qsort(vs.ids, vs.n, sizeof(*vs.ids), cmp_strp);
        for (size_t i = 0; i < vs.n; i++)
            if (i == 0 || strcmp(vs.ids[i], vs.ids[i - 1])) /* replicas */
                list_volume(s, vs.ids[i], &l);
    }
    /* A stable order: by snapshot id (index sort keeps ids, vols and
     * snaps together). */
    size_t *ord = csi__xcalloc(l.n ? l.n : 1, sizeof(*ord));
    for (size_t i = 0; i < l.n; i++) ord[i] = i;
    for (size_t i = 1; i < l.n; i++) /* insertion sort: lists are short */
        for (size_t j = i; j > 0 && strcmp(l.ids[ord[j - 1]],
                                           l.ids[ord[j]]) > 0; j--) {
            size_t t = ord[j];
            ord[j] = ord[j - 1];
            ord[j - 1] = t;
        }
    Csi__V1__ListSnapshotsResponse *r = csi__xcalloc(1, sizeof(*r));
    csi__v1__list_snapshots_response__init(r);
    size_t max = q->max_entries > 0 ? (size_t)q->max_entries : l.n;
    r->entries = csi__xcalloc(l.n ? l.n : 1, sizeof(*r->entries));
    const char *last = NULL;
    for (size_t k = 0; k < l.n; k++) {
        size_t i = ord[k];
        if (after && strcmp(l.ids[i], after) <= 0) continue;
        if (r->n_entries == max) {
            char tok[CSI_MAX_VOL_ID + JR_MAX_SNAP_ID + 16];
            snprintf(tok, sizeof(tok), SNAP_TOKEN_PREFIX "%s", last);
            r->next_token = csi__xstrdup(tok);
            break;
        }
        Csi__V1__ListSnapshotsResponse__Entry *e = csi__xcalloc(1, sizeof(*e));
        csi__v1__list_snapshots_response__entry__init(e);
        e->snapshot = snapshot_new(l.vols[i], &l.snaps[i]);
        r->entries[r->n_entries++] = e;
        last = l.ids[i];
    }
    *resp = &r->base;
    free(ord);
    for (size_t i = 0; i < l.n; i++) {
        free(l.ids[i]);
        free(l.vols[i]);
    }
    free(l.ids);
    free(l.vols);
    free(l.snaps);
    for (size_t i = 0; i < vs.n; i++) free(vs.ids[i]);
    free(vs.ids);
    return RPC_OK;
}

/* ---------------------------------------------------------------- clones */

int csi__clone_source(csi_service *s, rpc_ctx *ctx,
                      const Csi__V1__VolumeContentSource *src,
                      struct csi__src *o)
{
    memset(o, 0, sizeof(*o));
    if (src->type_case == CSI__V1__VOLUME_CONTENT_SOURCE__TYPE_SNAPSHOT) {
        const char *sid = src->snapshot ? src->snapshot->snapshot_id : NULL;
        int code = csi__need(ctx, "volume_content_source.snapshot.snapshot_id",
                             sid);
        if (code) return code;
        if (csi_snapshot_id_split(sid, o->vol, sizeof(o->vol), o->snap,
                                  sizeof(o->snap)) < 0)
            return rpc_ctx_error(ctx, RPC_NOT_FOUND, "source snapshot %.200s "
                                 "not found", sid);
        int rc = csi__find(s, o->vol, 1, &o->idx, &o->info);
        if (rc == 0) {
            st_store *st = csi__store(s, o->idx);
            rc = st ? jr_snap_get(st, o->vol, o->snap, &o->js) : -EIO;
        }
        if (rc == -ENOENT)
            return rpc_ctx_error(ctx, RPC_NOT_FOUND, "source snapshot %s not "
                                 "found", sid);
        if (rc < 0)
            return rpc_ctx_error(ctx, csi__rpc_code(rc), "source snapshot %s:"
                                 " %s", sid, jr_strerror(rc));
        o->type = CSI__SRC_SNAPSHOT;
        o->size = o->js.size;
        snprintf(o->desc, sizeof(o->desc), "snapshot:%s", sid);
        return 0;
    }
    if (src->type_case == CSI__V1__VOLUME_CONTENT_SOURCE__TYPE_VOLUME) {
        const char *vid = src->volume ? src->volume->volume_id : NULL;
        int code = csi__need(ctx, "volume_content_source.volume.volume_id",
                             vid);
        if (code) return code;
        if (!csi_volume_id_valid(vid))
            return rpc_ctx_error(ctx, RPC_NOT_FOUND, "source volume %.200s "
                                 "not found", vid);
        snprintf(o->vol, sizeof(o->vol), "%s", vid);
        int rc = csi__find(s, o->vol, 1, &o->idx, &o->info);
        if (rc == -ENOENT)
            return rpc_ctx_error(ctx, RPC_NOT_FOUND, "source volume %s not "
                                 "found", vid);
        if (rc < 0)
            return rpc_ctx_error(ctx, csi__rpc_code(rc), "source volume %s: "
                                 "%s", vid, jr_strerror(rc));
        char *pend = NULL;
        st_store *st = csi__store(s, o->idx);
        if (st && jr_meta_get(st, o->vol, "csi.clone_pending", &pend) == 0) {
            free(pend);
            return rpc_ctx_error(ctx, RPC_UNAVAILABLE, "source volume %s is "
                                 "a clone still being copied: retry once "
                                 "its CreateVolume finished", vid);
        }
        o->type = CSI__SRC_VOLUME;
        o->size = o->info.size;
        snprintf(o->desc, sizeof(o->desc), "volume:%s", vid);
        return 0;
    }
    return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT, "volume_content_source: "
                         "neither a snapshot nor a volume");
}

/* The temporary snapshot a clone of a volume copies from: derived from
 * the clone's id, so a retry finds it. */
static void tmp_snap_id(const char *clone_id, char *out, size_t len)
{
    char name[CSI_MAX_VOL_ID + 16], h[44] = "h-";
    snprintf(name, sizeof(name), "clone:%s", clone_id);
    /* ':' in the name: always "h-" + 40 hex digits. */
    if (csi_volume_id(name, h, sizeof(h)) < 0) snprintf(h, sizeof(h), "h-x");
    snprintf(out, len, "clone-%.40s", h + 2); /* drop "h-" */
}

int csi__clone_snapshot(csi_service *s, rpc_ctx *ctx, const char *clone_id,
                        struct csi__src *src)
{
    st_store *st = csi__store(s, src->idx);
    int rc;
    if (!st)
        return rpc_ctx_error(ctx, RPC_UNAVAILABLE, "store of region %s "
                             "unreachable", s->cfg->regions[src->idx].name);
    if (src->type == CSI__SRC_VOLUME) {
        if (src->info.role != JR_ROLE_PRIMARY)
            return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT, "source volume "
                                 "%s is a replica (secondary) in region %s: "
                                 "clone a snapshot of it, or the primary",
                                 src->vol, s->cfg->regions[src->idx].name);
        tmp_snap_id(clone_id, src->snap, sizeof(src->snap));
        char label[128];
        snprintf(label, sizeof(label), "tandem-clone-source clone=%s",
                 clone_id);
        rc = snap_journal(st, src->vol, src->snap, label, 0, &src->js);
        if (rc < 0)
            return rpc_ctx_error(ctx, snap_rpc_code(rc), "snapshot of source "
                                 "volume %s for the clone: %s", src->vol,
                                 jr_strerror(rc));
        if (src->js.size > src->size) src->size = src->js.size;
    }
    rc = jr_snap_hold(st, src->vol, src->snap, clone_id);
    if (rc < 0)
        return rpc_ctx_error(ctx, snap_rpc_code(rc), "holding snapshot %s@%s "
                             "for clone %s: %s", src->vol, src->snap,
                             clone_id, jr_strerror(rc));
    return 0;
}

static int all_zero(const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i]) return 0;
    return 1;
}

/* Undo what a clone holds on its source: the hold, and the temporary
 * snapshot of a volume source.  Best effort (logged). */
static void clone_release(csi_service *s, const char *clone_id,
                          const char *from, int tmp)
{
    char vol[CSI_MAX_VOL_ID + 1], snap[JR_MAX_SNAP_ID + 1];
    size_t idx;
    struct jr_info in;
    if (csi_snapshot_id_split(from, vol, sizeof(vol), snap, sizeof(snap)) < 0
        || csi__find(s, vol, 1, &idx, &in) < 0 || !csi__store(s, idx))
        return;
    st_store *st = csi__store(s, idx);
    int rc = jr_snap_release(st, vol, snap, clone_id);
    if (rc == 0 && tmp) rc = snap_journal(st, vol, snap, NULL, 1, NULL);
    if (rc < 0 && rc != -ENOENT)
        tlog_warn("csi.clone.release_failed", "clone=%s from=%s err=%d",
                  clone_id, from, rc);
}

int csi__clone_finish(csi_service *s, rpc_ctx *ctx, const char *id,
                      size_t idx)
{
    st_store *dst = csi__store(s, idx);
    char *from = NULL, *tmp = NULL, *repl = NULL;
    char vol[CSI_MAX_VOL_ID + 1], snap[JR_MAX_SNAP_ID + 1];
    uint8_t *buf = NULL;
    jr_volume *v = NULL;
    int code = 0, rc;
    size_t sidx;
    struct jr_info sin, din;
    struct jr_snap js;
    if (!dst)
        return rpc_ctx_error(ctx, RPC_UNAVAILABLE, "store of region %s "
                             "unreachable", s->cfg->regions[idx].name);
    rc = jr_meta_get(dst, id, "csi.clone_pending", &from);
    if (rc == -ENOENT) return 0; /* done (or never a clone) */
    if (rc < 0) {
        code = rpc_ctx_error(ctx, csi__rpc_code(rc), "volume %s: %s", id,
                             jr_strerror(rc));
        goto out;
    }
    int is_tmp = jr_meta_get(dst, id, "csi.clone_tmp", &tmp) == 0;
    if (csi_snapshot_id_split(from, vol, sizeof(vol), snap, sizeof(snap)) < 0)
    {
        code = rpc_ctx_error(ctx, RPC_INTERNAL, "volume %s: bad "
                             "csi.clone_pending %.200s", id, from);
        goto out;
    }
    if ((rc = csi__find(s, vol, 1, &sidx, &sin)) < 0 ||
        !csi__store(s, sidx) ||
        (rc = jr_snap_get(csi__store(s, sidx), vol, snap, &js)) < 0) {
        code = rpc_ctx_error(ctx, rc == -ENOENT ? RPC_NOT_FOUND
                                                : csi__rpc_code(rc),
                             "clone %s: its source snapshot %s: %s", id,
                             from, jr_strerror(rc ? rc : -EIO));
        goto out;
    }
    st_store *sst = csi__store(s, sidx);
    /* Held since before the clone was created; again after a restart (a
     * no-op then). */
    if ((rc = jr_snap_hold(sst, vol, snap, id)) < 0) {
        code = rpc_ctx_error(ctx, snap_rpc_code(rc), "holding %s: %s", from,
                             jr_strerror(rc));
        goto out;
    }
    if ((rc = jr_volume_stat(dst, id, &din)) < 0) {
        code = rpc_ctx_error(ctx, csi__rpc_code(rc), "volume %s: %s", id,
                             jr_strerror(rc));
        goto out;
    }
    /* A replicated clone is written through its journal, which the
     * replicator ships like any write (jr_image_write would bypass it and
     * the replica would never see the data); a local one straight into
     * its image, before anyone can open it. */
    int journaled = jr_meta_get(dst, id, "csi.replication", &repl) == 0 &&
                    !strcmp(repl, "async");
    if (journaled &&
        (rc = jr_open(dst, id, JR_OPEN_WRITE, CLONE_OWNER, &v)) < 0) {
        code = rpc_ctx_error(ctx, rc == JR_ELOCKED ? RPC_ABORTED
                                                   : csi__rpc_code(rc),
                             "opening clone %s: %s", id, jr_strerror(rc));
        goto out;
    }
    buf = malloc(CLONE_CHUNK);
    if (!buf) abort();
    uint64_t data = 0;
    int64_t t0 = tb_mono_ns();
    for (uint64_t off = 0; off < js.size; off += CLONE_CHUNK) {
        size_t n = js.size - off < CLONE_CHUNK ? (size_t)(js.size - off)
                                               : CLONE_CHUNK;
        rc = jr_snap_read(sst, vol, snap, off, buf, n);
        if (rc < 0) break;
        if (all_zero(buf, n)) continue; /* sparse: reads as zeros */
        rc = journaled ? jr_write(v, off, buf, n)
                       : jr_image_write(dst, id, off, buf, n);
        if (rc < 0) break;
        data += n;
    }
    if (v) {
        int rc2 = jr_close(v);
        v = NULL;
        if (rc == 0) rc = rc2;
    }
    if (rc < 0) {
        code = rpc_ctx_error(ctx, csi__rpc_code(rc), "copying %s into clone "
                             "%s: %s (a retry resumes)", from, id,
                             jr_strerror(rc));
        goto out;
    }
    if ((rc = jr_meta_rm(dst, id, "csi.clone_pending")) < 0) {
        code = rpc_ctx_error(ctx, csi__rpc_code(rc), "volume %s: %s", id,
                             jr_strerror(rc));
        goto out;
    }
    jr_meta_rm(dst, id, "csi.clone_tmp");
    clone_release(s, id, from, is_tmp);
    double ms = (double)(tb_mono_ns() - t0) / 1e6;
    tlog_info("csi.clone.copied", "vol=%s from=%s size=%" PRIu64
              " data=%" PRIu64 " ms=%.1f journaled=%d", id, from, js.size,
              data, ms, journaled);
out:
    if (v) jr_close(v);
    free(buf);
    free(from);
    free(tmp);
    free(repl);
    return code;
}

int csi__clone_pending(st_store *st, const char *id, char *from,
                       size_t len, int *tmp)
{
    char *f = NULL, *t = NULL;
    int rc = jr_meta_get(st, id, "csi.clone_pending", &f);
    if (rc == 0) {
        snprintf(from, len, "%s", f);
        *tmp = jr_meta_get(st, id, "csi.clone_tmp", &t) == 0;
    }
    free(f);
    free(t);
    return rc == 0 ? 1 : rc == -ENOENT ? 0 : rc;
}

void csi__clone_abandon(csi_service *s, const char *id, const char *from,
                        int tmp)
{
    clone_release(s, id, from, tmp);
    tlog_info("csi.clone.abandoned", "vol=%s from=%s", id, from);
}
