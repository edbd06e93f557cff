/*
 * csi_addons_vg.c: the CSI-Addons volumegroup.Controller service on the
 * addons endpoint (csi_addons.h): a volume group is a tandem consistency
 * group (jr.h "consistency groups", DESIGN.md "Consistency groups") in
 * this controller's region, whose members fail over to one cut.
 *
 * Group ids: the request's name when it is a valid group id (1..64 of
 * [A-Za-z0-9_-]), else "vg-" + 40 hex digits of its SHA-256.  Volumes are
 * this region's copies and must be primaries here (membership is decided
 * where the volumes are written; replicas learn it with the volume's
 * metadata).  DeleteVolumeGroup disbands the group and keeps its volumes
 * (their PersistentVolumes own them; deleting data because a grouping
 * went away is not something a DR tool should be able to do by accident).
 * Codes per volumegroup.README.md: INVALID_ARGUMENT (missing name or id,
 * a volume in another group on Modify), ALREADY_EXISTS (Create of an
 * existing group with other volumes), FAILED_PRECONDITION (Create: a
 * volume in another group, or a replica), NOT_FOUND (no such group or
 * volume), RESOURCE_EXHAUSTED (more than 64 members), ABORTED (a bad
 * ListVolumeGroups token), UNAVAILABLE (store unreachable).  Repeats are
 * OK (idempotent).
 */
#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csi-addons/volumegroup.pb-c.h"
#include "csi_addons.h"
#include "csi_int.h"
#include "tlog.h"

static int valid_gid(const char *g)
{
    size_t n = strlen(g);
    if (n < 1 || n > JR_MAX_GROUP_ID) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = g[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static int gid_of(const char *name, char *out, size_t n)
{
    if (valid_gid(name)) {
        snprintf(out, n, "%s", name);
        return 0;
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int ml = 0;
    if (!EVP_Digest(name, strlen(name), md, &ml, EVP_sha256(), NULL) || ml < 20)
        return -EIO;
    snprintf(out, n, "vg-");
    for (int i = 0; i < 20; i++) snprintf(out + 3 + 2 * i, 3, "%02x", md[i]);
    return 0;
}

static st_store *local_store(csi_service *s, rpc_ctx *ctx, int *code)
{
    st_store *st = csi__store(s, csi__local_index(s));
    if (!st)
        *code = rpc_ctx_error(ctx, RPC_UNAVAILABLE, "store of region %s "
                              "unreachable", s->region);
    return st;
}

struct mlist {
    char ids[JR_GROUP_MAX_MEMBERS][JR_MAX_ID + 1];
    int n;
};

static int mlist_cb(const char *id, uint32_t idx, void *arg)
{
    struct mlist *m = arg;
    (void)idx;
    if (m->n < JR_GROUP_MAX_MEMBERS)
        snprintf(m->ids[m->n++], sizeof m->ids[0], "%s", id);
    return 0;
}

static int in_list(char *const *ids, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(ids[i], id)) return 1;
    return 0;
}

struct gfind {
    const char *g;
    int found;
};

static int gfind_cb(const char *g, void *arg)
{
    struct gfind *f = arg;
    if (!strcmp(g, f->g)) f->found = 1;
    return 0;
}

/* 1 exists, 0 not, or a negative errno. */
static int group_exists(st_store *st, const char *g)
{
    struct gfind f = {g, 0};
    int rc = jr_group_list(st, gfind_cb, &f);
    return rc < 0 ? rc : f.found;
}

/* The VolumeGroup message of group g (members with their sizes). */
static Volumegroup__VolumeGroup *vg_msg(st_store *st, const char *g)
{
    struct mlist m = {.n = 0};
    jr_group_members(st, g, mlist_cb, &m);
    Volumegroup__VolumeGroup *v = csi__reply_new(&volumegroup__volume_group__descriptor);
    v->volume_group_id = csi__xstrdup(g);
    v->volumes = csi__xcalloc((size_t)m.n + 1, sizeof(*v->volumes));
    for (int i = 0; i < m.n; i++) {
        Csi__V1__Volume *x = csi__xcalloc(1, sizeof(*x));
        csi__v1__volume__init(x);
        x->volume_id = csi__xstrdup(m.ids[i]);
        struct jr_info in;
        if (jr_volume_stat(st, m.ids[i], &in) == 0)
            x->capacity_bytes = (int64_t)in.size;
        v->volumes[v->n_volumes++] = x;
    }
    return v;
}

/* Check that every id is a primary here, free or already in g.  0, or the
 * RPC code (other_code: a volume in another group). */
static int check_vols(st_store *st, rpc_ctx *ctx, const char *g,
                      char *const *ids, size_t n, int other_code)
{
    if (n > JR_GROUP_MAX_MEMBERS)
        return rpc_ctx_error(ctx, RPC_RESOURCE_EXHAUSTED, "at most %d volumes "
                             "in a volume group", JR_GROUP_MAX_MEMBERS);
    for (size_t i = 0; i < n; i++) {
        struct jr_info in;
        if (!ids[i] || !ids[i][0])
            return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT, "empty volume id");
        int rc = jr_volume_stat(st, ids[i], &in);
        if (rc == -ENOENT)
            return rpc_ctx_error(ctx, RPC_NOT_FOUND, "volume %s not found",
                                 ids[i]);
        if (rc < 0)
            return rpc_ctx_error(ctx, csi__rpc_code(rc), "volume %s: %s",
                                 ids[i], jr_strerror(rc));
        if (in.role != JR_ROLE_PRIMARY)
            return rpc_ctx_error(ctx, RPC_FAILED_PRECONDITION, "volume %s is "
                                 "a replica here: group it where it is "
                                 "primary", ids[i]);
        char cur[JR_MAX_GROUP_ID + 1];
        if (jr_group_of(st, ids[i], cur, sizeof cur, NULL) == 0 &&
            strcmp(cur, g))
            return rpc_ctx_error(ctx, other_code, "volume %s is in volume "
                                 "group %s already (one group per volume)",
                                 ids[i], cur);
    }
    return 0;
}

static int join_all(st_store *st, rpc_ctx *ctx, const char *g,
                    char *const *ids, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int rc = jr_group_join(st, g, ids[i], NULL);
        if (rc == -ENOSPC)
            return rpc_ctx_error(ctx, RPC_RESOURCE_EXHAUSTED, "volume group %s"
                                 " is full (%d volumes)", g,
                                 JR_GROUP_MAX_MEMBERS);
        if (rc < 0)
            return rpc_ctx_error(ctx, csi__rpc_code(rc), "volume %s: joining"
                                 " %s: %s", ids[i], g, jr_strerror(rc));
    }
    return 0;
}

int csi_addons_vg_create(void *svc, rpc_ctx *ctx, const ProtobufCMessage *reqm,
                         ProtobufCMessage **respm)
{
    csi_service *s = csi_addons_service(svc);
    const Volumegroup__CreateVolumeGroupRequest *q = (const void *)reqm;
    int code = 0;
    if (!q->name || !q->name[0])
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT, "name missing");
    char g[JR_MAX_GROUP_ID + 1];
    if (gid_of(q->name, g, sizeof g) < 0)
        return rpc_ctx_error(ctx, RPC_INTERNAL, "hashing the name failed");
    st_store *st = local_store(s, ctx, &code);
    if (!st) return code;
    int ex = group_exists(st, g);
    if (ex < 0)
        return rpc_ctx_error(ctx, csi__rpc_code(ex), "listing groups: %s",
                             jr_strerror(ex));
    if (ex) { /* a repeat: the same volumes, or it is another group */
        struct mlist m = {.n = 0};
        jr_group_members(st, g, mlist_cb, &m);
        int same = (size_t)m.n == q->n_volume_ids;
        for (int i = 0; same && i < m.n; i++)
            same = in_list(q->volume_ids, q->n_volume_ids, m.ids[i]);
        if (!same)
            return rpc_ctx_error(ctx, RPC_ALREADY_EXISTS, "volume group %s "
                                 "exists with other volumes", g);
    }
    if ((code = check_vols(st, ctx, g, q->volume_ids, q->n_volume_ids,
                           RPC_FAILED_PRECONDITION)))
        return code;
    int rc = jr_group_create(st, g);
    if (rc < 0)
        return rpc_ctx_error(ctx, csi__rpc_code(rc), "creating group %s: %s",
                             g, jr_strerror(rc));
    if ((code = join_all(st, ctx, g, q->volume_ids, q->n_volume_ids)))
        return code;
    tlog_info("csi.volume_group.created", "group=%s volumes=%zu", g,
              q->n_volume_ids);
    Volumegroup__CreateVolumeGroupResponse *r =
        csi__reply_new(&volumegroup__create_volume_group_response__descriptor);
    r->volume_group = vg_msg(st, g);
    *respm = &r->base;
    return RPC_OK;
}

int csi_addons_vg_modify(void *svc, rpc_ctx *ctx, const ProtobufCMessage *reqm,
                         ProtobufCMessage **respm)
{
    csi_service *s = csi_addons_service(svc);
    const Volumegroup__ModifyVolumeGroupMembershipRequest *q = (const void *)reqm;
    int code = 0;
    if (!q->volume_group_id || !q->volume_group_id[0])
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
                             "volume_group_id missing");
    const char *g = q->volume_group_id;
    st_store *st = local_store(s, ctx, &code);
    if (!st) return code;
    int ex = valid_gid(g) ? group_exists(st, g) : 0;
    if (ex < 0)
        return rpc_ctx_error(ctx, csi__rpc_code(ex), "listing groups: %s",
                             jr_strerror(ex));
    if (!ex)
        return rpc_ctx_error(ctx, RPC_NOT_FOUND, "volume group %s not found",
                             g);
    if ((code = check_vols(st, ctx, g, q->volume_ids, q->n_volume_ids,
                           RPC_INVALID_ARGUMENT)))
        return code;
    /* Leave first, so a full group can swap members. */
    struct mlist m = {.n = 0};
    jr_group_members(st, g, mlist_cb, &m);
    for (int i = 0; i < m.n; i++) {
        if (in_list(q->volume_ids, q->n_volume_ids, m.ids[i])) continue;
        int rc = jr_group_leave(st, g, m.ids[i]);
        if (rc < 0)
            return rpc_ctx_error(ctx, csi__rpc_code(rc), "volume %s: leaving "
                                 "%s: %s", m.ids[i], g, jr_strerror(rc));
    }
    if ((code = join_all(st, ctx, g, q->volume_ids, q->n_volume_ids)))
        return code;
    Volumegroup__ModifyVolumeGroupMembershipResponse *r = csi__reply_new(
        &volumegroup__modify_volume_group_membership_response__descriptor);
    r->volume_group = vg_msg(st, g);
    *respm = &r->base;
    return RPC_OK;
}

int csi_addons_vg_delete(void *svc, rpc_ctx *ctx, const ProtobufCMessage *reqm,
                         ProtobufCMessage **respm)
{
    csi_service *s = csi_addons_service(svc);
    const Volumegroup__DeleteVolumeGroupRequest *q = (const void *)reqm;
    int code = 0;
    if (!q->volume_group_id || !q->volume_group_id[0])
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
                             "volume_group_id missing");
    const char *g = q->volume_group_id;
    st_store *st = local_store(s, ctx, &code);
    if (!st) return code;
    if (valid_gid(g)) {
        struct mlist m = {.n = 0};
        int rc = jr_group_members(st, g, mlist_cb, &m);
        for (int i = 0; rc == 0 && i < m.n; i++)
            rc = jr_group_leave(st, g, m.ids[i]);
        if (rc == 0) rc = jr_group_delete(st, g);
        if (rc < 0)
            return rpc_ctx_error(ctx, csi__rpc_code(rc), "deleting volume "
                                 "group %s: %s", g, jr_strerror(rc));
        tlog_info("csi.volume_group.deleted", "group=%s volumes_kept=%d", g,
                  m.n);
    }
    *respm = csi__reply_new(&volumegroup__delete_volume_group_response__descriptor);
    return RPC_OK;
}

int csi_addons_vg_get(void *svc, rpc_ctx *ctx, const ProtobufCMessage *reqm,
                      ProtobufCMessage **respm)
{
    csi_service *s = csi_addons_service(svc);
    const Volumegroup__ControllerGetVolumeGroupRequest *q = (const void *)reqm;
    int code = 0;
    if (!q->volume_group_id || !q->volume_group_id[0])
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
                             "volume_group_id missing");
    st_store *st = local_store(s, ctx, &code);
    if (!st) return code;
    int ex = valid_gid(q->volume_group_id)
                 ? group_exists(st, q->volume_group_id) : 0;
    if (ex < 0)
        return rpc_ctx_error(ctx, csi__rpc_code(ex), "listing groups: %s",
                             jr_strerror(ex));
    if (!ex)
        return rpc_ctx_error(ctx, RPC_NOT_FOUND, "volume group %s not found",
                             q->volume_group_id);
    Volumegroup__ControllerGetVolumeGroupResponse *r = csi__reply_new(
        &volumegroup__controller_get_volume_group_response__descriptor);
    r->volume_group = vg_msg(st, q->volume_group_id);
    *respm = &r->base;
    return RPC_OK;
}

struct glist {
    char (*g)[JR_MAX_GROUP_ID + 1];
    size_t n, cap;
};

static int glist_cb(const char *g, void *arg)
{
    struct glist *l = arg;
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 16;
        void *p = realloc(l->g, nc * sizeof(*l->g));
        if (!p) return -ENOMEM;
        l->g = p;
        l->cap = nc;
    }
    snprintf(l->g[l->n++], sizeof(*l->g), "%s", g);
    return 0;
}

int csi_addons_vg_list(void *svc, rpc_ctx *ctx, const ProtobufCMessage *reqm,
                       ProtobufCMessage **respm)
{
    csi_service *s = csi_addons_service(svc);
    const Volumegroup__ListVolumeGroupsRequest *q = (const void *)reqm;
    int code = 0;
    if (q->max_entries < 0)
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT, "max_entries < 0");
    st_store *st = local_store(s, ctx, &code);
    if (!st) return code;
    struct glist l = {0};
    int rc = jr_group_list(st, glist_cb, &l);
    if (rc < 0) {
        free(l.g);
        return rpc_ctx_error(ctx, csi__rpc_code(rc), "listing groups: %s",
                             jr_strerror(rc));
    }
    /* The token: the index of the first entry (groups come in id order). */
    size_t from = 0;
    if (q->starting_token && q->starting_token[0]) {
        char *end;
        unsigned long long t = strtoull(q->starting_token, &end, 10);
        if (*end || t > l.n) {
            free(l.g);
            return rpc_ctx_error(ctx, RPC_ABORTED, "starting_token %s is not "
                                 "valid: start again", q->starting_token);
        }
        from = (size_t)t;
    }
    size_t to = l.n;
    if (q->max_entries > 0 && from + (size_t)q->max_entries < to)
        to = from + (size_t)q->max_entries;
    Volumegroup__ListVolumeGroupsResponse *r =
        csi__reply_new(&volumegroup__list_volume_groups_response__descriptor);
    r->entries = csi__xcalloc(to - from + 1, sizeof(*r->entries));
    for (size_t i = from; i < to; i++) {
        Volumegroup__ListVolumeGroupsResponse__Entry *e = csi__reply_new(
            &volumegroup__list_volume_groups_response__entry__descriptor);
        e->volume_group = vg_msg(st, l.g[i]);
        r->entries[r->n_entries++] = e;
    }
    if (to < l.n) {
        char t[32];
        snprintf(t, sizeof t, "%zu", to);
        r->next_token = csi__xstrdup(t);
    }
    free(l.g);
    *respm = &r->base;
    return RPC_OK;
}
