/*
 * csi_ctrl.c: the Identity and Controller services.
 *
 * Order inside each handler: validate the request (INVALID_ARGUMENT),
 * take the volume id (ABORTED if a call on it is in flight), then touch
 * the stores.  Store trouble is UNAVAILABLE so the sidecars retry.
 * Snapshots and the copying of clones live in csi_snap.c; CreateVolume
 * calls into it for a volume_content_source.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "csi_int.h"
#include "tbase.h"
#include "tlog.h"

#define K8S_PREFIX "csi.storage.k8s.io/"

/* Deep copy of a message through pack/unpack, so that the copy is owned
 * the way proto/rpc.h wants (free_unpacked frees it all). */
static void *msg_dup(const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = csi__xcalloc(1, n);
    protobuf_c_message_pack(m, buf);
    ProtobufCMessage *c = protobuf_c_message_unpack(m->descriptor, NULL, n, buf);
    free(buf);
    if (!c) abort();
    return c;
}

static uint64_t round_up(uint64_t v, uint64_t to)
{
    return (v + to - 1) / to * to;
}

/* ------------------------------------------------------------- identity */

int csi__identity_info(void *svc, rpc_ctx *ctx, const ProtobufCMessage *req,
                       ProtobufCMessage **resp)
{
    csi_service *s = svc;
    Csi__V1__GetPluginInfoResponse *r = csi__xcalloc(1, sizeof(*r));
    csi__v1__get_plugin_info_response__init(r);
    r->name = csi__xstrdup(s->driver);
    r->vendor_version = csi__xstrdup(CSI_VERSION);
    *resp = &r->base;
    return RPC_OK;
}

static Csi__V1__PluginCapability *plugin_cap_service(int type)
{
    Csi__V1__PluginCapability *c = csi__xcalloc(1, sizeof(*c));
    csi__v1__plugin_capability__init(c);
    c->type_case = CSI__V1__PLUGIN_CAPABILITY__TYPE_SERVICE;
    c->service = csi__xcalloc(1, sizeof(*c->service));
    csi__v1__plugin_capability__service__init(c->service);
    c->service->type = type;
    return c;
}

int csi__identity_caps(void *svc, rpc_ctx *ctx, const ProtobufCMessage *req,
                       ProtobufCMessage **resp)
{
    Csi__V1__GetPluginCapabilitiesResponse *r = csi__xcalloc(1, sizeof(*r));
    csi__v1__get_plugin_capabilities_response__init(r);
    r->capabilities = csi__xcalloc(3, sizeof(*r->capabilities));
    r->capabilities[r->n_capabilities++] = plugin_cap_service(
        CSI__V1__PLUGIN_CAPABILITY__SERVICE__TYPE__CONTROLLER_SERVICE);
    r->capabilities[r->n_capabilities++] = plugin_cap_service(
        CSI__V1__PLUGIN_CAPABILITY__SERVICE__TYPE__VOLUME_ACCESSIBILITY_CONSTRAINTS);
    Csi__V1__PluginCapability *c = csi__xcalloc(1, sizeof(*c));
    csi__v1__plugin_capability__init(c);
    c->type_case = CSI__V1__PLUGIN_CAPABILITY__TYPE_VOLUME_EXPANSION;
    c->volume_expansion = csi__xcalloc(1, sizeof(*c->volume_expansion));
    csi__v1__plugin_capability__volume_expansion__init(c->volume_expansion);
    c->volume_expansion->type =
        CSI__V1__PLUGIN_CAPABILITY__VOLUME_EXPANSION__TYPE__ONLINE;
    r->capabilities[r->n_capabilities++] = c;
    *resp = &r->base;
    return RPC_OK;
}

int csi__identity_probe(void *svc, rpc_ctx *ctx, const ProtobufCMessage *req,
                        ProtobufCMessage **resp)
{
    csi_service *s = svc;
    /* Only the local region decides health: a lost peer region must not
     * make the liveness probe restart this plugin. */
    size_t i = csi__local_index(s);
    st_store *st = csi__store(s, i);
    int rc = st ? st_ping(st) : -EIO;
    if (rc < 0)
        return rpc_ctx_error(ctx, RPC_FAILED_PRECONDITION,
                             "store of region %s (%s) unreachable: %s",
                             s->cfg->regions[i].name,
                             s->cfg->regions[i].backend, st_strerror(rc));
    Csi__V1__ProbeResponse *r = csi__xcalloc(1, sizeof(*r));
    csi__v1__probe_response__init(r);
    r->ready = csi__xcalloc(1, sizeof(*r->ready));
    google__protobuf__bool_value__init(r->ready);
    r->ready->value = 1;
    *resp = &r->base;
    return RPC_OK;
}

/* ---------------------------------------------------------- volume info */

/* A Volume message for volume id living in region index i. */
static Csi__V1__Volume *volume_new(csi_service *s, const char *id, size_t i,
                                   const struct jr_info *in,
                                   const struct csi_params *p)
{
    const struct rg_region *r = &s->cfg->regions[i];
    Csi__V1__Volume *v = csi__xcalloc(1, sizeof(*v));
    csi__v1__volume__init(v);
    v->volume_id = csi__xstrdup(id);
    v->capacity_bytes = (int64_t)in->size;
    v->accessible_topology = csi__xcalloc(1, sizeof(*v->accessible_topology));
    v->accessible_topology[v->n_accessible_topology++] =
        csi__topology_new(s, r->name, r->zone);
    const ProtobufCMessageDescriptor *d =
        &csi__v1__volume__volume_context_entry__descriptor;
    csi__map_put(d, &v->n_volume_context, &v->volume_context, "region",
                 r->name);
    if (p) {
        csi__map_put(d, &v->n_volume_context, &v->volume_context, "fsType",
                     p->fs_type[0] ? p->fs_type : "ext4");
        if (p->mkfs_options[0])
            csi__map_put(d, &v->n_volume_context, &v->volume_context,
                         "mkfsOptions", p->mkfs_options);
    }
    return v;
}

/* Parameters of an existing volume, from its meta (for the context). */
static void params_from_meta(st_store *st, const char *id,
                             struct csi_params *p)
{
    memset(p, 0, sizeof(*p));
    csi__meta_copy(st, id, "csi.fs_type", p->fs_type, sizeof(p->fs_type));
    csi__meta_copy(st, id, "csi.param.mkfsOptions", p->mkfs_options,
                   sizeof(p->mkfs_options));
}

/* ---------------------------------------------------------- CreateVolume */

/* May a volume land in region?  The region parameter, if set, must name
 * it; requisite topologies (if any) must include it (a zone segment must
 * match the region's zone when both are set).  Preferred ones are only
 * a preference. */
static int region_allowed(csi_service *s, const Csi__V1__TopologyRequirement *tr,
                          const char *param_region, const char *region)
{
    const struct rg_region *r = rg_find(s->cfg, region);
    if (!r) return 0;
    if (param_region && param_region[0] && strcmp(param_region, region))
        return 0;
    if (!tr || !tr->n_requisite) return 1;
    for (size_t j = 0; j < tr->n_requisite; j++) {
        const Csi__V1__Topology *t = tr->requisite[j];
        const char *reg = csi__map_get(t->n_segments,
                                       (void *const *)t->segments,
                                       s->cfg->topo_region_key);
        const char *zone = csi__map_get(t->n_segments,
                                        (void *const *)t->segments,
                                        s->cfg->topo_zone_key);
        if (reg && !strcmp(reg, region) &&
            (!zone || !r->zone[0] || !strcmp(zone, r->zone)))
            return 1;
    }
    return 0;
}

/* The parameters that decide what a volume is: a retried CreateVolume
 * must carry the same ones. */
static const char *const identity_params[] = {
    "replication", "peerRegion", "region", "fsType", "objectSize",
    "mkfsOptions", NULL};

static int check_existing(csi_service *s, rpc_ctx *ctx,
                          const Csi__V1__CreateVolumeRequest *q,
                          const char *id, size_t idx,
                          const struct jr_info *in, uint64_t required,
                          uint64_t limit, const struct csi__src *src)
{
    st_store *st = csi__store(s, idx);
    const char *region = s->cfg->regions[idx].name;
    char *v = NULL;
    if (!st)
        return rpc_ctx_error(ctx, RPC_UNAVAILABLE, "store of region %s "
                             "unreachable", region);
    if (in->role != JR_ROLE_PRIMARY)
        return rpc_ctx_error(ctx, RPC_ALREADY_EXISTS,
                             "volume %s exists in region %s as a replica "
                             "(secondary); promote it or use another name",
                             id, region);
    if (jr_meta_get(st, id, "csi.name", &v) == 0 && strcmp(v, q->name)) {
        free(v);
        return rpc_ctx_error(ctx, RPC_ALREADY_EXISTS,
                             "volume id %s belongs to another name", id);
    }
    free(v);
    /* The same content source (or none) as the volume was made from. */
    v = NULL;
    int rc0 = jr_meta_get(st, id, "csi.content_source", &v);
    if (rc0 < 0 && rc0 != -ENOENT) {
        free(v);
        return rpc_ctx_error(ctx, csi__rpc_code(rc0), "reading volume %s: %s",
                             id, jr_strerror(rc0));
    }
    const char *had = rc0 == 0 ? v : "";
    const char *asked = src->type ? src->desc : "";
    if (strcmp(had, asked)) {
        rpc_ctx_error(ctx, RPC_ALREADY_EXISTS, "volume %s exists with "
                      "content source \"%s\", not \"%s\"", q->name, had,
                      asked);
        free(v);
        return RPC_ALREADY_EXISTS;
    }
    free(v);
    if (in->size < required || (limit && in->size > limit))
        return rpc_ctx_error(ctx, RPC_ALREADY_EXISTS,
                             "volume %s exists with %" PRIu64 " bytes, "
                             "incompatible with the capacity range: "
                             "required %" PRIu64 ", limit %" PRIu64
                             " (0: none)", q->name, in->size, required,
                             limit);
    for (const char *const *k = identity_params; *k; k++) {
        char key[64];
        const char *want = csi__map_get(q->n_parameters,
                                        (void *const *)q->parameters, *k);
        snprintf(key, sizeof(key), "csi.param.%s", *k);
        v = NULL;
        int rc = jr_meta_get(st, id, key, &v);
        if (rc < 0 && rc != -ENOENT) {
            free(v);
            return rpc_ctx_error(ctx, csi__rpc_code(rc),
                                 "reading volume %s: %s", id, jr_strerror(rc));
        }
        const char *have = rc == 0 ? v : NULL;
        int same = (!want && !have) || (want && have && !strcmp(want, have));
        free(v);
        if (!same)
            return rpc_ctx_error(ctx, RPC_ALREADY_EXISTS,
                                 "volume %s exists with another parameter "
                                 "%s", q->name, *k);
    }
    const Csi__V1__TopologyRequirement *tr = q->accessibility_requirements;
    if (tr && tr->n_requisite) {
        int ok = 0;
        for (size_t j = 0; j < tr->n_requisite && !ok; j++) {
            const char *reg = csi__map_get(
                tr->requisite[j]->n_segments,
                (void *const *)tr->requisite[j]->segments,
                s->cfg->topo_region_key);
            ok = reg && !strcmp(reg, region);
        }
        if (!ok)
            return rpc_ctx_error(ctx, RPC_ALREADY_EXISTS,
                                 "volume %s exists in region %s, outside "
                                 "the requisite topology", q->name, region);
    }
    return 0;
}

int csi__create_volume(void *svc, rpc_ctx *ctx, const ProtobufCMessage *req,
                       ProtobufCMessage **resp)
{
    csi_service *s = svc;
    const Csi__V1__CreateVolumeRequest *q = (const void *)req;
    struct csi_params p;
    char err[768], id[CSI_MAX_VOL_ID + 1], region[RG_MAX_NAME + 1];
    int rc, code = RPC_OK, locked = 0, mount = 0, block = 0, created = 0;
    const char *cap_fs = "";

    if ((code = csi__need(ctx, "name", q->name))) return code;
    if (strlen(q->name) > CSI_MAX_NAME)
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
                             "name longer than %d bytes", CSI_MAX_NAME);
    if (q->n_volume_capabilities == 0)
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
                             "volume_capabilities missing");
    for (size_t i = 0; i < q->n_volume_capabilities; i++) {
        const Csi__V1__VolumeCapability *c = q->volume_capabilities[i];
        if ((code = csi__check_cap(ctx, c, RPC_INVALID_ARGUMENT))) return code;
        if (c->access_type_case == CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_MOUNT) {
            mount = 1;
            if (c->mount && c->mount->fs_type && c->mount->fs_type[0]) {
                if (cap_fs[0] && strcmp(cap_fs, c->mount->fs_type))
                    return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
                                         "capabilities ask for two fs types");
                cap_fs = c->mount->fs_type;
            }
        } else {
            block = 1;
        }
    }
    if (mount && block)
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
                             "a volume is either block or mount, not both");
    if (csi_params_parse(s->cfg, q->n_parameters,
                         (struct csi_mapent *const *)q->parameters, &p, err,
                         sizeof(err)) < 0)
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT, "%s", err);
    if (p.fs_type[0] && cap_fs[0] && strcmp(p.fs_type, cap_fs))
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
                             "parameter fsType %s contradicts the volume "
                             "capability's fs_type %s", p.fs_type, cap_fs);
    /* A clone or restore: the source decides the least size, the region
     * and the filesystem (NOT_FOUND when it is missing). */
    struct csi__src src;
    char src_fs[16] = "";
    memset(&src, 0, sizeof(src));
    if (q->volume_content_source) {
        if ((code = csi__clone_source(s, ctx, q->volume_content_source,
                                      &src)))
            return code;
        csi__meta_copy(csi__store(s, src.idx), src.vol, "csi.fs_type",
                       src_fs, sizeof(src_fs));
    }
    if (!p.fs_type[0] && mount && !cap_fs[0] && src_fs[0])
        snprintf(p.fs_type, sizeof(p.fs_type), "%s", src_fs);
    if (!p.fs_type[0] && mount)
        snprintf(p.fs_type, sizeof(p.fs_type), "%s", cap_fs[0] ? cap_fs : "ext4");
    /* The copy holds the source's filesystem: another one cannot be
     * asked for (the spec's "source incompatible"). */
    if (mount && src_fs[0] && strcmp(src_fs, p.fs_type))
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
                             "volume_content_source %s holds a %s "
                             "filesystem; this volume asks for %s",
                             src.desc, src_fs, p.fs_type);

    /* Capacity: rounded up to whole objects, within limit_bytes. */
    uint64_t obj = p.object_size ? p.object_size : JR_DEFAULT_OBJECT_SIZE;
    int64_t req_b = q->capacity_range ? q->capacity_range->required_bytes : 0;
    int64_t lim_b = q->capacity_range ? q->capacity_range->limit_bytes : 0;
    if (req_b < 0 || lim_b < 0)
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
                             "capacity_range: negative bytes");
    if (lim_b && req_b > lim_b)
        return rpc_ctx_error(ctx, RPC_OUT_OF_RANGE,
                             "capacity_range: required_bytes %" PRId64
                             " above limit_bytes %" PRId64, req_b, lim_b);
    uint64_t size = req_b ? round_up((uint64_t)req_b, obj) : CSI_DEFAULT_SIZE;
    if (src.type) {
        /* At least the source's size (a larger one is honoured: the rest
         * reads as zeros); a limit below it cannot be met. */
        uint64_t least = round_up(src.size, obj);
        if (!req_b || size < least) size = least;
        if (lim_b && size > (uint64_t)lim_b)
            return rpc_ctx_error(ctx, RPC_OUT_OF_RANGE,
                                 "capacity_range: limit_bytes %" PRId64
                                 " is below the size of the source %s (%"
                                 PRIu64 " bytes, %" PRIu64 " in whole "
                                 "objects)", lim_b, src.desc, src.size,
                                 least);
    }
    if (lim_b && size > (uint64_t)lim_b) {
        if (req_b)
            return rpc_ctx_error(ctx, RPC_OUT_OF_RANGE,
                                 "capacity_range: %" PRId64 " bytes rounded "
                                 "up to the object size (%" PRIu64 ") is %"
                                 PRIu64 ", above limit_bytes %" PRId64,
                                 req_b, obj, size, lim_b);
        size = (uint64_t)lim_b / obj * obj;
        if (size == 0)
            return rpc_ctx_error(ctx, RPC_OUT_OF_RANGE,
                                 "capacity_range: limit_bytes %" PRId64
                                 " is below one object (%" PRIu64 ")",
                                 lim_b, obj);
    }
    if (size > CSI_MAX_SIZE)
        return rpc_ctx_error(ctx, RPC_OUT_OF_RANGE,
                             "capacity %" PRIu64 " above the maximum %llu",
                             size, (unsigned long long)CSI_MAX_SIZE);

    if (csi_volume_id(q->name, id, sizeof(id)) < 0)
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT, "name %.64s: no "
                             "volume id can be derived from it", q->name);
    if (src.type) {
        /* A clone is made in its source's region (the copy reads the
         * source's store; nothing copies across regions).  A topology that
         * excludes that region cannot be met: RESOURCE_EXHAUSTED, the
         * spec's "unable to provision in accessible_topology", on which
         * the external-provisioner lets the scheduler pick another node
         * (WaitForFirstConsumer) instead of failing for good. */
        const char *sr = s->cfg->regions[src.idx].name;
        if (!region_allowed(s, q->accessibility_requirements, p.region, sr))
            return rpc_ctx_error(ctx, RPC_RESOURCE_EXHAUSTED,
                                 "the source %s is in region %s, which the "
                                 "topology requirement (or the region "
                                 "parameter) excludes: a clone is made in "
                                 "its source's region; schedule the pod "
                                 "there, or restore a replicated snapshot "
                                 "in the other region after a failover",
                                 src.desc, sr);
        snprintf(region, sizeof(region), "%s", sr);
    } else if (csi_topology_select(s->cfg, q->accessibility_requirements,
                                   p.region, region, sizeof(region), err,
                                   sizeof(err)) < 0)
        return rpc_ctx_error(ctx, RPC_RESOURCE_EXHAUSTED, "%s", err);
    if (p.async && !p.peer_region[0]) {
        const char *dp = rg_default_peer(s->cfg, region);
        if (!dp)
            return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
                                 "parameter peerRegion: required with "
                                 "replication=async (region %s has no peer "
                                 "in the region map)", region);
        snprintf(p.peer_region, sizeof(p.peer_region), "%s", dp);
    }
    if (p.async && !strcmp(region, p.peer_region))
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
                             "parameter peerRegion: %s is the region the "
                             "volume lands in; the replica needs another",
                             region);
    if (csi__lock(s, id) < 0)
        return rpc_ctx_error(ctx, RPC_ABORTED,
                             "an operation on volume %s is pending", id);
    locked = 1;
    struct st_counts c0, c1;
    csi__store_counts(s, &c0);

    size_t idx;
    struct jr_info in;
    rc = csi__find(s, id, 1, &idx, &in);
    if (rc == 0) {
        if ((code = check_existing(s, ctx, q, id, idx, &in,
                                   (uint64_t)req_b, (uint64_t)lim_b, &src)))
            goto out;
        goto finish;
    }
    const struct rg_region *rr = rg_find(s->cfg, region);
    idx = (size_t)(rr - s->cfg->regions);
    st_store *st = csi__store(s, idx);
    if (!st) {
        code = rpc_ctx_error(ctx, RPC_UNAVAILABLE,
                             "store of region %s unreachable", region);
        goto out;
    }
    if (rc != -ENOENT) {
        /* Some other store failed: creating is still safe if the chosen
         * region itself answers that the volume is not there. */
        rc = jr_volume_stat(st, id, &in);
        if (rc == 0) {
            if ((code = check_existing(s, ctx, q, id, idx, &in,
                                       (uint64_t)req_b, (uint64_t)lim_b, &src)))
                goto out;
            goto finish;
        }
        if (rc != -ENOENT) {
            code = rpc_ctx_error(ctx, csi__rpc_code(rc),
                                 "region %s: %s", region, jr_strerror(rc));
            goto out;
        }
    }

    /* Metadata travels with the volume (and its replica). */
    struct jr_kv meta[32 + 12];
    char keys[32][96];
    size_t nm = 0;
    meta[nm++] = (struct jr_kv){"csi.name", q->name};
    meta[nm++] = (struct jr_kv){"csi.access_type", block ? "block" : "mount"};
    meta[nm++] = (struct jr_kv){"csi.replication", p.async ? "async" : "none"};
    if (p.async) meta[nm++] = (struct jr_kv){"csi.peer_region", p.peer_region};
    if (mount) meta[nm++] = (struct jr_kv){"csi.fs_type", p.fs_type};
    if (p.pvc_name[0]) meta[nm++] = (struct jr_kv){"csi.pvc_name", p.pvc_name};
    if (p.pvc_namespace[0])
        meta[nm++] = (struct jr_kv){"csi.pvc_namespace", p.pvc_namespace};
    if (p.pv_name[0]) meta[nm++] = (struct jr_kv){"csi.pv_name", p.pv_name};
    char from[CSI_MAX_VOL_ID + JR_MAX_SNAP_ID + 2];
    if (src.type) {
        /* The snapshot to copy, held for this clone from here on. */
        if ((code = csi__clone_snapshot(s, ctx, id, &src))) goto out;
        if (src.size > size) size = round_up(src.size, obj);
        snprintf(from, sizeof(from), "%s@%s", src.vol, src.snap);
        meta[nm++] = (struct jr_kv){"csi.content_source", src.desc};
        meta[nm++] = (struct jr_kv){"csi.clone_pending", from};
        if (src.type == CSI__SRC_VOLUME)
            meta[nm++] = (struct jr_kv){"csi.clone_tmp", "1"};
    }
    if (q->n_parameters > 32) {
        code = rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
                             "more than 32 parameters");
        goto out;
    }
    for (size_t i = 0; i < q->n_parameters; i++) {
        /* A truncated key would be stored as another parameter. */
        if ((size_t)snprintf(keys[i], sizeof(keys[i]), "csi.param.%s",
                             q->parameters[i]->key) >= sizeof(keys[i])) {
            code = rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
                                 "parameter %.64s...: key longer than %zu "
                                 "bytes", q->parameters[i]->key,
                                 sizeof(keys[i]) - sizeof("csi.param."));
            goto out;
        }
        meta[nm++] = (struct jr_kv){keys[i], q->parameters[i]->value};
    }
    struct jr_create_opts co = {
        .size = size, .object_size = (uint32_t)obj, .role = JR_ROLE_PRIMARY,
        .region = region, .meta = meta, .n_meta = nm};
    rc = jr_volume_create(st, id, &co);
    if (rc == -EEXIST) {
        /* Another process won the race: the same name, so the same
         * volume, if compatible. */
        rc = jr_volume_stat(st, id, &in);
        if (rc == 0 && !(code = check_existing(s, ctx, q, id, idx, &in,
                                               (uint64_t)req_b,
                                               (uint64_t)lim_b, &src)))
            goto finish;
        if (code) goto out;
    }
    if (rc < 0) {
        code = rpc_ctx_error(ctx, csi__rpc_code(rc), "creating volume %s in "
                             "region %s: %s", id, region, jr_strerror(rc));
        goto out;
    }
    /* No read-back (issue 12: every store call is a round trip on
     * rados): the answer needs only the size, which is what was just
     * created; a retry reads the volume through csi__find. */
    memset(&in, 0, sizeof(in));
    snprintf(in.vol_id, sizeof(in.vol_id), "%s", id);
    in.size = size;
    in.object_size = (uint32_t)obj;
    in.role = JR_ROLE_PRIMARY;
    in.epoch = 1;
    in.tail = 1;
    snprintf(in.region, sizeof(in.region), "%s", region);
    created = 1;
    tlog_info("csi.volume.created", "vol=%s region=%s size=%" PRIu64
              " object_size=%" PRIu64 " replication=%s%s%s access=%s",
              id, region, size, obj, p.async ? "async" : "none",
              p.async ? " peer=" : "", p.async ? p.peer_region : "",
              block ? "block" : "mount");
finish:
    /* The StorageClass's consistency group (idempotent: a retry joins
     * again).  Before the replicator first ships the volume, so its
     * replica is created with the membership in its metadata. */
    if (p.group[0] &&
        (rc = jr_group_join(csi__store(s, idx), p.group, id, NULL)) < 0) {
        code = rpc_ctx_error(ctx, rc == -EBUSY ? RPC_ALREADY_EXISTS
                                               : csi__rpc_code(rc),
                             "volume %s: joining consistency group %s: %s", id,
                             p.group, rc == -EBUSY ? "it is in another group"
                                                   : jr_strerror(rc));
        goto out;
    }
    /* A clone is usable once its copy is complete: this call finishes
     * it, or a retry does.  A volume this call created without a source
     * has nothing pending (and no lookup is spent on learning that). */
    if (!created || src.type)
        if ((code = csi__clone_finish(s, ctx, id, idx))) goto out;
    if (src.type && (rc = jr_volume_stat(csi__store(s, idx), id, &in)) < 0) {
        code = rpc_ctx_error(ctx, csi__rpc_code(rc), "volume %s: %s", id,
                             jr_strerror(rc));
        goto out;
    }
    struct csi_params ep;
    if (created) {
        /* What was just written as csi.fs_type and csi.param.mkfsOptions
         * (the parameter's text as given), without reading it back. */
        const char *mk = csi__map_get(q->n_parameters,
                                      (void *const *)q->parameters,
                                      "mkfsOptions");
        memset(&ep, 0, sizeof(ep));
        if (mount) snprintf(ep.fs_type, sizeof(ep.fs_type), "%s", p.fs_type);
        if (mk) snprintf(ep.mkfs_options, sizeof(ep.mkfs_options), "%s", mk);
    } else {
        params_from_meta(csi__store(s, idx), id, &ep);
    }
    Csi__V1__CreateVolumeResponse *r = csi__xcalloc(1, sizeof(*r));
    csi__v1__create_volume_response__init(r);
    r->volume = volume_new(s, id, idx, &in, block ? NULL : &ep);
    if (src.type) /* echoed, as the spec requires */
        r->volume->content_source = msg_dup(&q->volume_content_source->base);
    *resp = &r->base;
    if (created) {
        /* What a create costs in store calls (exact unless calls
         * overlap: csi__store_counts), for benches and tests. */
        csi__store_counts(s, &c1);
        tlog_info("csi.volume.create_cost", "vol=%s store_reads=%" PRIu64
                  " store_writes=%" PRIu64, id, c1.reads - c0.reads,
                  c1.writes - c0.writes);
    }
out:
    if (locked) csi__unlock(s, id);
    return code;
}

/* ---------------------------------------------------------- DeleteVolume */

struct snapnames {
    char buf[200];
    size_t n;
};

static int snapname_one(const struct jr_snap *js, void *arg)
{
    struct snapnames *a = arg;
    size_t l = strlen(a->buf);
    if (l + strlen(js->snap_id) + 2 < sizeof(a->buf))
        snprintf(a->buf + l, sizeof(a->buf) - l, "%s%s", a->n ? "," : "",
                 js->snap_id);
    a->n++;
    return 0;
}

int csi__delete_volume(void *svc, rpc_ctx *ctx, const ProtobufCMessage *req,
                       ProtobufCMessage **resp)
{
    csi_service *s = svc;
    const Csi__V1__DeleteVolumeRequest *q = (const void *)req;
    int code;
    if ((code = csi__need(ctx, "volume_id", q->volume_id))) return code;
    if (csi_volume_id_valid(q->volume_id)) {
        if (csi__lock(s, q->volume_id) < 0)
            return rpc_ctx_error(ctx, RPC_ABORTED, "an operation on volume "
                                 "%s is pending", q->volume_id);
        size_t idx;
        struct jr_info in;
        int rc = csi__find(s, q->volume_id, 1, &idx, &in);
        if (rc == 0 && in.role == JR_ROLE_PRIMARY) {
            st_store *st = csi__store(s, idx);
            char from[CSI_MAX_VOL_ID + JR_MAX_SNAP_ID + 2];
            struct snapnames sn = {"", 0};
            int tmp = 0;
            int pending = st ? csi__clone_pending(st, q->volume_id, from,
                                                  sizeof(from), &tmp) : 0;
            /* Snapshots live in their volume (jr.h): deleting it would
             * take them along, so the spec's answer is FAILED_PRECONDITION
             * with the volume untouched until they are deleted. */
            rc = st ? jr_snap_list(st, q->volume_id, snapname_one, &sn)
                    : -EIO;
            if (rc == 0 && sn.n) {
                code = rpc_ctx_error(ctx, RPC_FAILED_PRECONDITION, "volume "
                                     "%s has %zu snapshot(s) (%s): delete "
                                     "them first (restores and clones made "
                                     "from them are independent copies)",
                                     q->volume_id, sn.n, sn.buf);
                csi__unlock(s, q->volume_id);
                return code;
            }
            if (rc == 0 || rc == -ENOENT)
                rc = st ? jr_volume_delete(st, q->volume_id) : -EIO;
            /* A clone deleted before its copy finished: its source's
             * snapshot is free again. */
            if (rc == 0 && pending == 1)
                csi__clone_abandon(s, q->volume_id, from, tmp);
            if (rc == JR_ELOCKED)
                code = rpc_ctx_error(ctx, RPC_FAILED_PRECONDITION,
                                     "volume %s is in use (open on a node)",
                                     q->volume_id);
            else if (rc < 0 && rc != -ENOENT)
                code = rpc_ctx_error(ctx, csi__rpc_code(rc),
                                     "deleting volume %s: %s", q->volume_id,
                                     jr_strerror(rc));
            else
                tlog_info("csi.volume.deleted", "vol=%s region=%s",
                          q->volume_id, s->cfg->regions[idx].name);
        } else if (rc == 0) {
            /* Only a replica is left: the replicator owns its lifetime. */
            tlog_info("csi.volume.delete_replica_left", "vol=%s region=%s",
                      q->volume_id, s->cfg->regions[idx].name);
        } else if (rc != -ENOENT) {
            code = rpc_ctx_error(ctx, csi__rpc_code(rc), "looking up volume "
                                 "%s: %s", q->volume_id, jr_strerror(rc));
        }
        csi__unlock(s, q->volume_id);
    }
    if (code == RPC_OK)
        *resp = csi__reply_new(&csi__v1__delete_volume_response__descriptor);
    return code;
}

/* --------------------------------------------------- ControllerGetVolume */

/* The volume's condition, for the external-health-monitor (which turns
 * an abnormal one into a Kubernetes event on the PVC): abnormal with what
 * to do, or normal.  msg gets one line. */
static int volume_condition(csi_service *s, st_store *st, const char *id,
                            const struct jr_info *in, char *msg, size_t len)
{
    char *h = NULL;
    int abnormal = 0;
    if (in->damaged_seq) {
        snprintf(msg, len, "journal damaged at entry %" PRIu64 " (journal "
                 "object %" PRIu64 ", offset %" PRIu64 "): writes are "
                 "refused; run `tandemctl journal-check %s` and follow the "
                 "runbook (A damaged journal tail)", in->damaged_seq,
                 in->damaged_object, in->damaged_offset, id);
        return 1;
    }
    if (jr_meta_get(st, id, "csi.clone_pending", &h) == 0) {
        snprintf(msg, len, "clone not complete (copying from %s): the "
                 "provisioner's CreateVolume retry finishes it", h);
        free(h);
        return 1;
    }
    free(h);
    h = NULL;
    /* Over the cap only matters when a peer waits for the journal: a
     * volume that does not replicate reaches it by being written. */
    char repl[16];
    csi__meta_copy(st, id, "csi.replication", repl, sizeof(repl));
    if (in->dirty_tracking && in->role == JR_ROLE_PRIMARY &&
        !strcmp(repl, "async")) {
        snprintf(msg, len, "journal over its cap (%" PRIu64 " bytes kept): "
                 "the peer has fallen behind and will need a region copy "
                 "of what changed; check the replicator and the peer link "
                 "(tandemctl status)", in->journal_bytes);
        abnormal = 1;
    }
    /* meta.rep.health: "<state> <since unix s> <peer> <free text>". */
    if (jr_meta_get(st, id, "rep.health", &h) == 0) {
        char state[32] = "", peer[RG_MAX_NAME + 1] = "";
        long long since = 0;
        int off = 0;
        if (sscanf(h, "%31s %lld %63s %n", state, &since, peer, &off) >= 3) {
            const char *text = off ? h + off : "";
            int64_t age = tb_wall_ms() / 1000 - since;
            size_t l = abnormal ? strlen(msg) : 0;
            const char *sep = abnormal ? "; " : "";
            if (!strcmp(state, "split-brain")) {
                snprintf(msg + l, len - l, "%ssplit brain with region %s "
                         "since %lld (%s): both copies were written; pick "
                         "the survivor and resync the other (RUNBOOK: "
                         "split brain)", sep, peer, since, text);
                abnormal = 1;
            } else if (!strcmp(state, "link-down") &&
                       age > s->link_down_s) {
                snprintf(msg + l, len - l, "%sreplication link to region %s "
                         "down for %" PRId64 " s (since %lld: %s): writes "
                         "are not reaching the replica; check the peer "
                         "replicator and the network (tandemctl status)",
                         sep, peer, age, since, text);
                abnormal = 1;
            } else if (!abnormal) {
                snprintf(msg, len, "replication to region %s: %s since "
                         "%lld%s%s", peer, state, since, text[0] ? ": " : "",
                         text);
            }
        } else if (!abnormal) {
            snprintf(msg, len, "healthy (unreadable rep.health \"%.64s\")",
                     h);
        }
    } else if (!abnormal) {
        snprintf(msg, len, "healthy");
    }
    free(h);
    return abnormal;
}

int csi__controller_get_volume(void *svc, rpc_ctx *ctx,
                               const ProtobufCMessage *req,
                               ProtobufCMessage **resp)
{
    csi_service *s = svc;
    const Csi__V1__ControllerGetVolumeRequest *q = (const void *)req;
    char msg[768];
    int code;
    if ((code = csi__need(ctx, "volume_id", q->volume_id))) return code;
    if (!csi_volume_id_valid(q->volume_id))
        return rpc_ctx_error(ctx, RPC_NOT_FOUND, "volume %.128s not found",
                             q->volume_id);
    size_t idx;
    struct jr_info in;
    if ((code = csi__find_volume(s, ctx, q->volume_id, 1, &idx, &in)))
        return code;
    st_store *st = csi__store(s, idx);
    struct csi_params ep;
    params_from_meta(st, q->volume_id, &ep);
    char at[16];
    csi__meta_copy(st, q->volume_id, "csi.access_type", at, sizeof(at));
    Csi__V1__ControllerGetVolumeResponse *r = csi__xcalloc(1, sizeof(*r));
    csi__v1__controller_get_volume_response__init(r);
    r->volume = volume_new(s, q->volume_id, idx, &in,
                           strcmp(at, "block") ? &ep : NULL);
    r->status = csi__xcalloc(1, sizeof(*r->status));
    csi__v1__controller_get_volume_response__volume_status__init(r->status);
    Csi__V1__VolumeCondition *c = csi__xcalloc(1, sizeof(*c));
    csi__v1__volume_condition__init(c);
    msg[0] = 0;
    c->abnormal = volume_condition(s, st, q->volume_id, &in, msg, sizeof(msg));
    if (in.role != JR_ROLE_PRIMARY && !c->abnormal) {
        size_t l = strlen(msg);
        snprintf(msg + l, sizeof(msg) - l, " (replica in region %s: "
                 "read-only until promoted)", s->cfg->regions[idx].name);
    }
    c->message = csi__xstrdup(msg);
    r->status->volume_condition = c;
    *resp = &r->base;
    return RPC_OK;
}

/* ------------------------------------------- ValidateVolumeCapabilities */

int csi__validate_caps(void *svc, rpc_ctx *ctx, const ProtobufCMessage *req,
                       ProtobufCMessage **resp)
{
    csi_service *s = svc;
    const Csi__V1__ValidateVolumeCapabilitiesRequest *q = (const void *)req;
    char err[512];
    const char *why = NULL;
    int code;
    if ((code = csi__need(ctx, "volume_id", q->volume_id))) return code;
    if (q->n_volume_capabilities == 0)
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
                             "volume_capabilities missing");
    for (size_t i = 0; i < q->n_volume_capabilities; i++) {
        const Csi__V1__VolumeCapability *c = q->volume_capabilities[i];
        /* Malformed: INVALID_ARGUMENT; well-formed but unsupported: an
         * unconfirmed answer saying why. */
        code = csi__check_cap(ctx, c, RPC_FAILED_PRECONDITION);
        if (code == RPC_INVALID_ARGUMENT) return code;
        if (code) why = "a capability is not supported (tandem volumes are "
                        "single-node; fs ext4 or xfs)";
    }
    if (!csi_volume_id_valid(q->volume_id))
        return rpc_ctx_error(ctx, RPC_NOT_FOUND, "volume %.128s not found",
                             q->volume_id);
    size_t idx;
    struct jr_info in;
    if ((code = csi__find_volume(s, ctx, q->volume_id, 1, &idx, &in)))
        return code;
    struct csi_params p;
    if (!why && q->n_parameters &&
        csi_params_parse(s->cfg, q->n_parameters,
                         (struct csi_mapent *const *)q->parameters, &p, err,
                         sizeof(err)) < 0)
        why = err;
    Csi__V1__ValidateVolumeCapabilitiesResponse *r =
        csi__xcalloc(1, sizeof(*r));
    csi__v1__validate_volume_capabilities_response__init(r);
    if (why) {
        r->message = csi__xstrdup(why);
    } else {
        Csi__V1__ValidateVolumeCapabilitiesResponse__Confirmed *c =
            csi__xcalloc(1, sizeof(*c));
        csi__v1__validate_volume_capabilities_response__confirmed__init(c);
        c->volume_capabilities =
            csi__xcalloc(q->n_volume_capabilities,
                         sizeof(*c->volume_capabilities));
        for (size_t i = 0; i < q->n_volume_capabilities; i++)
            c->volume_capabilities[c->n_volume_capabilities++] =
                msg_dup(&q->volume_capabilities[i]->base);
        for (size_t i = 0; i < q->n_volume_context; i++)
            csi__map_put(
                &csi__v1__validate_volume_capabilities_response__confirmed__volume_context_entry__descriptor,
                &c->n_volume_context, &c->volume_context,
                q->volume_context[i]->key, q->volume_context[i]->value);
        for (size_t i = 0; i < q->n_parameters; i++)
            csi__map_put(
                &csi__v1__validate_volume_capabilities_response__confirmed__parameters_entry__descriptor,
                &c->n_parameters, &c->parameters, q->parameters[i]->key,
                q->parameters[i]->value);
        r->confirmed = c;
    }
    *resp = &r->base;
    return RPC_OK;
}

/* ----------------------------------------------------------- ListVolumes */

struct idlist {
    char **ids;
    size_t n, cap;
};

static int collect_id(const char *id, void *arg)
{
    struct idlist *l = arg;
    if (l->n == l->cap) {
        size_t nc = l->cap ? 2 * l->cap : 256;
        char **na = realloc(l->ids, nc * sizeof(*na));
        if (!na) return -ENOMEM;
        l->ids = na;
        l->cap = nc;
    }
    l->ids[l->n++] = csi__xstrdup(id);
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

#define LIST_TOKEN_PREFIX "after:"

int csi__list_volumes(void *svc, rpc_ctx *ctx, const ProtobufCMessage *req,
                      ProtobufCMessage **resp)
{
    csi_service *s = svc;
    const Csi__V1__ListVolumesRequest *q = (const void *)req;
    const char *after = NULL;
    struct idlist l = {0};
    int code = RPC_OK;
    if (q->max_entries < 0)
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
                             "max_entries is negative");
    if (q->starting_token && q->starting_token[0]) {
        /* The token is the last id of the previous page: stable while
         * volumes come and go, and checkable. */
        size_t pl = strlen(LIST_TOKEN_PREFIX);
        if (strncmp(q->starting_token, LIST_TOKEN_PREFIX, pl) ||
            !csi_volume_id_valid(q->starting_token + pl))
            return rpc_ctx_error(ctx, RPC_ABORTED,
                                 "starting_token %.64s is not valid: start "
                                 "again without it", q->starting_token);
        after = q->starting_token + pl;
    }
    for (size_t i = 0; i < s->cfg->n; i++) {
        st_store *st = csi__store(s, i);
        if (!st) continue; /* listed as what the reachable regions hold */
        int rc = jr_volume_list(st, collect_id, &l);
        if (rc < 0)
            tlog_warn("csi.list.region_failed", "region=%s err=%d",
                      s->cfg->regions[i].name, rc);
    }
    if (l.n) qsort(l.ids, l.n, sizeof(*l.ids), cmp_str);
    Csi__V1__ListVolumesResponse *r = csi__xcalloc(1, sizeof(*r));
    csi__v1__list_volumes_response__init(r);
    size_t max = q->max_entries > 0 ? (size_t)q->max_entries : l.n;
    r->entries = csi__xcalloc(max < l.n ? max : l.n, sizeof(*r->entries));
    const char *last = NULL;
    for (size_t i = 0; i < l.n; i++) {
        if (i > 0 && !strcmp(l.ids[i], l.ids[i - 1])) continue; /* replica */
        if (after && strcmp(l.ids[i], after) <= 0) continue;
        if (r->n_entries == max) {
            char tok[CSI_MAX_VOL_ID + 16];
            snprintf(tok, sizeof(tok), LIST_TOKEN_PREFIX "%s", last);
            r->next_token = csi__xstrdup(tok);
            break;
        }
        size_t idx;
        struct jr_info in;
        if (csi__find(s, l.ids[i], 1, &idx, &in) < 0) continue; /* gone */
        Csi__V1__ListVolumesResponse__Entry *e = csi__xcalloc(1, sizeof(*e));
        csi__v1__list_volumes_response__entry__init(e);
        e->volume = volume_new(s, l.ids[i], idx, &in, NULL);
        /* VOLUME_CONDITION is announced: the spec wants it here too. */
        char cmsg[768] = "";
        e->status = csi__xcalloc(1, sizeof(*e->status));
        csi__v1__list_volumes_response__volume_status__init(e->status);
        Csi__V1__VolumeCondition *c = csi__xcalloc(1, sizeof(*c));
        csi__v1__volume_condition__init(c);
        c->abnormal = volume_condition(s, csi__store(s, idx), l.ids[i], &in,
                                       cmsg, sizeof(cmsg));
        c->message = csi__xstrdup(cmsg);
        e->status->volume_condition = c;
        r->entries[r->n_entries++] = e;
        last = l.ids[i];
    }
    *resp = &r->base;
    for (size_t i = 0; i < l.n; i++) free(l.ids[i]);
    free(l.ids);
    return code;
}

/* ----------------------------------------------------------- GetCapacity */

struct sum_arg {
    st_store *st;
    uint64_t bytes;
};

static int sum_one(const char *id, void *arg)
{
    struct sum_arg *a = arg;
    struct jr_info in;
    if (jr_volume_stat(a->st, id, &in) == 0) a->bytes += in.size;
    return 0;
}

/* Free bytes of region i: capacity_bytes minus what its volumes were
 * provisioned with (replicas count: they take the same space).  A region
 * without capacity_bytes reports the largest volume size. */
static int64_t region_free(csi_service *s, size_t i)
{
    const struct rg_region *r = &s->cfg->regions[i];
    if (!r->capacity_bytes) return (int64_t)CSI_MAX_SIZE;
    st_store *st = csi__store(s, i);
    if (!st) return 0;
    struct sum_arg a = {st, 0};
    if (jr_volume_list(st, sum_one, &a) < 0) return 0;
    return a.bytes >= r->capacity_bytes ? 0
                                        : (int64_t)(r->capacity_bytes - a.bytes);
}

int csi__get_capacity(void *svc, rpc_ctx *ctx, const ProtobufCMessage *req,
                      ProtobufCMessage **resp)
{
    csi_service *s = svc;
    const Csi__V1__GetCapacityRequest *q = (const void *)req;
    struct csi_params p;
    char err[512];
    int64_t avail = 0, maxvol = 0;
    int supported = 1;
    for (size_t i = 0; i < q->n_volume_capabilities; i++) {
        int code = csi__check_cap(ctx, q->volume_capabilities[i],
                                  RPC_FAILED_PRECONDITION);
        if (code == RPC_INVALID_ARGUMENT) return code;
        if (code) supported = 0;
    }
    if (csi_params_parse(s->cfg, q->n_parameters,
                         (struct csi_mapent *const *)q->parameters, &p, err,
                         sizeof(err)) < 0)
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT, "%s", err);
    const char *want = NULL;
    if (q->accessible_topology) {
        want = csi__map_get(q->accessible_topology->n_segments,
                            (void *const *)q->accessible_topology->segments,
                            s->cfg->topo_region_key);
        if (!want) supported = 0; /* a topology without our key */
    }
    for (size_t i = 0; i < s->cfg->n && supported; i++) {
        const struct rg_region *r = &s->cfg->regions[i];
        if (want && strcmp(want, r->name)) continue;
        if (p.region[0] && strcmp(p.region, r->name)) continue;
        if (want && q->accessible_topology) {
            const char *zone = csi__map_get(
                q->accessible_topology->n_segments,
                (void *const *)q->accessible_topology->segments,
                s->cfg->topo_zone_key);
            if (zone && r->zone[0] && strcmp(zone, r->zone)) continue;
        }
        int64_t f = region_free(s, i);
        avail = avail > INT64_MAX - f ? INT64_MAX : avail + f;
        if (f > maxvol) maxvol = f;
    }
    if (maxvol > (int64_t)CSI_MAX_SIZE) maxvol = (int64_t)CSI_MAX_SIZE;
    Csi__V1__GetCapacityResponse *r = csi__xcalloc(1, sizeof(*r));
    csi__v1__get_capacity_response__init(r);
    r->available_capacity = avail;
    r->maximum_volume_size = csi__xcalloc(1, sizeof(*r->maximum_volume_size));
    google__protobuf__int64_value__init(r->maximum_volume_size);
    r->maximum_volume_size->value = maxvol;
    *resp = &r->base;
    return RPC_OK;
}

/* ----------------------------------------------- ControllerGetCapabilities */

int csi__controller_caps(void *svc, rpc_ctx *ctx, const ProtobufCMessage *req,
                         ProtobufCMessage **resp)
{
    static const int caps[] = {
        CSI__V1__CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__CREATE_DELETE_VOLUME,
        CSI__V1__CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__LIST_VOLUMES,
        CSI__V1__CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__GET_CAPACITY,
        CSI__V1__CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__EXPAND_VOLUME,
        CSI__V1__CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__SINGLE_NODE_MULTI_WRITER,
        CSI__V1__CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__CREATE_DELETE_SNAPSHOT,
        CSI__V1__CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__LIST_SNAPSHOTS,
        CSI__V1__CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__CLONE_VOLUME,
        CSI__V1__CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__GET_VOLUME,
        CSI__V1__CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__VOLUME_CONDITION,
    };
    size_t n = sizeof(caps) / sizeof(caps[0]);
    Csi__V1__ControllerGetCapabilitiesResponse *r = csi__xcalloc(1, sizeof(*r));
    csi__v1__controller_get_capabilities_response__init(r);
    r->capabilities = csi__xcalloc(n, sizeof(*r->capabilities));
    for (size_t i = 0; i < n; i++) {
        Csi__V1__ControllerServiceCapability *c = csi__xcalloc(1, sizeof(*c));
        csi__v1__controller_service_capability__init(c);
        c->type_case = CSI__V1__CONTROLLER_SERVICE_CAPABILITY__TYPE_RPC;
        c->rpc = csi__xcalloc(1, sizeof(*c->rpc));
        csi__v1__controller_service_capability__rpc__init(c->rpc);
        c->rpc->type = caps[i];
        r->capabilities[r->n_capabilities++] = c;
    }
    *resp = &r->base;
    return RPC_OK;
}

/* -------------------------------------------------- ControllerExpandVolume */

int csi__controller_expand(void *svc, rpc_ctx *ctx, const ProtobufCMessage *req,
                           ProtobufCMessage **resp)
{
    csi_service *s = svc;
    const Csi__V1__ControllerExpandVolumeRequest *q = (const void *)req;
    int code = RPC_OK, rc, need_node = 0;
    if ((code = csi__need(ctx, "volume_id", q->volume_id))) return code;
    if (!q->capacity_range || q->capacity_range->required_bytes <= 0)
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
                             "capacity_range.required_bytes missing");
    if (q->capacity_range->limit_bytes < 0)
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
                             "capacity_range: negative limit_bytes");
    if ((q->volume_capability &&
         (code = csi__check_cap(ctx, q->volume_capability,
                                RPC_INVALID_ARGUMENT))) ||
        (code = csi__lock_volume(s, ctx, q->volume_id)))
        return code;
    size_t idx;
    struct jr_info in;
    if ((code = csi__find_volume(s, ctx, q->volume_id, 1, &idx, &in)))
        goto out;
    /* Opened (and kept) by the lookup that just found the volume there. */
    st_store *st = csi__store(s, idx);
    if (in.role != JR_ROLE_PRIMARY) {
        code = rpc_ctx_error(ctx, RPC_FAILED_PRECONDITION, "volume %s is a "
                             "replica (secondary) in region %s: expand the "
                             "primary", q->volume_id, s->cfg->regions[idx].name);
        goto out;
    }
    uint64_t obj = in.object_size ? in.object_size : JR_DEFAULT_OBJECT_SIZE;
    uint64_t want = round_up((uint64_t)q->capacity_range->required_bytes, obj);
    uint64_t lim = (uint64_t)q->capacity_range->limit_bytes;
    if ((lim && want > lim) || want > CSI_MAX_SIZE) {
        code = rpc_ctx_error(ctx, RPC_OUT_OF_RANGE, "%" PRIu64 " bytes "
                             "(rounded to objects of %" PRIu64 ") exceeds "
                             "the limit", want, obj);
        goto out;
    }
    char *at = NULL;
    int is_block = jr_meta_get(st, q->volume_id, "csi.access_type", &at) == 0 &&
                   !strcmp(at, "block");
    free(at);
    if (q->volume_capability)
        is_block = q->volume_capability->access_type_case ==
                   CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_BLOCK;
    uint64_t size = in.size;
    if (want > in.size) {
        jr_volume *v = NULL;
        rc = jr_open(st, q->volume_id, JR_OPEN_WRITE, "tandem-csi-controller",
                     &v);
        if (rc == 0) {
            rc = jr_resize(v, want);
            int rc2 = jr_close(v);
            if (rc == 0) rc = rc2;
            if (rc == 0) size = want;
        } else if (rc == JR_ELOCKED) {
            /* Staged on a node: its exporter holds the writer lease and
             * resizes through NodeExpandVolume (online expansion). */
            char buf[32];
            snprintf(buf, sizeof(buf), "%" PRIu64, want);
            rc = jr_meta_set(st, q->volume_id, "csi.requested_bytes", buf);
            if (rc == 0) {
                size = want;
                need_node = 1;
            }
        }
        if (rc < 0) {
            code = rpc_ctx_error(ctx, csi__rpc_code(rc), "resizing volume %s:"
                                 " %s", q->volume_id, jr_strerror(rc));
            goto out;
        }
        tlog_info("csi.volume.expanded", "vol=%s from=%" PRIu64 " to=%" PRIu64
                  " via=%s", q->volume_id, in.size, want,
                  need_node ? "node" : "controller");
    }
    Csi__V1__ControllerExpandVolumeResponse *r = csi__xcalloc(1, sizeof(*r));
    csi__v1__controller_expand_volume_response__init(r);
    r->capacity_bytes = (int64_t)size;
    /* A filesystem must be grown where it is mounted; a raw block volume
     * only needs the node when the controller could not resize it. */
    r->node_expansion_required = !is_block || need_node;
    *resp = &r->base;
out:
    csi__unlock(s, q->volume_id);
    return code;
}
