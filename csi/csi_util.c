/*
 * csi_util.c: the csi_service (create/destroy, method table), reply
 * helpers, the in-flight volume set, lazily opened stores and the lookup
 * of a volume across the configured regions.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csi_int.h"
#include "tlog.h"

void *csi__xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) {
        tlog_error("csi.oom", "bytes=%zu", n * size);
        abort();
    }
    return p;
}

char *csi__xstrdup(const char *s)
{
    char *d = strdup(s ? s : "");
    if (!d) {
        tlog_error("csi.oom", "bytes=%zu", s ? strlen(s) + 1 : 1);
        abort();
    }
    return d;
}

void csi__map_put(const ProtobufCMessageDescriptor *desc, size_t *n,
                  void *entries_field, const char *key, const char *value)
{
    struct csi_mapent ***arr = entries_field;
    struct csi_mapent **na = realloc(*arr, (*n + 1) * sizeof(**arr));
    if (!na) abort();
    *arr = na;
    /* Generated string-string entries are exactly struct csi_mapent. */
    struct csi_mapent *e = csi__xcalloc(1, desc->sizeof_message);
    protobuf_c_message_init(desc, e);
    e->key = csi__xstrdup(key);
    e->value = csi__xstrdup(value);
    na[(*n)++] = e;
}

const char *csi__map_get(size_t n, void *const *entries, const char *key)
{
    for (size_t i = 0; i < n; i++) {
        const struct csi_mapent *e = entries[i];
        if (e && e->key && strcmp(e->key, key) == 0)
            return e->value ? e->value : "";
    }
    return NULL;
}

Csi__V1__Topology *csi__topology_new(const csi_service *s, const char *region,
                                     const char *zone)
{
    Csi__V1__Topology *t = csi__reply_new(&csi__v1__topology__descriptor);
    csi__map_put(&csi__v1__topology__segments_entry__descriptor,
                 &t->n_segments, &t->segments, s->cfg->topo_region_key,
                 region);
    if (zone && zone[0])
        csi__map_put(&csi__v1__topology__segments_entry__descriptor,
                     &t->n_segments, &t->segments, s->cfg->topo_zone_key,
                     zone);
    return t;
}

void *csi__reply_new(const ProtobufCMessageDescriptor *d)
{
    ProtobufCMessage *m = csi__xcalloc(1, d->sizeof_message);
    protobuf_c_message_init(d, m);
    return m;
}

const char *csi__meta_copy(st_store *st, const char *id, const char *key,
                           char *buf, size_t len)
{
    char *v = NULL;
    buf[0] = 0;
    if (st && jr_meta_get(st, id, key, &v) == 0)
        snprintf(buf, len, "%s", v);
    free(v);
    return buf;
}

/* ------------------------------------------------------------ in flight */

int csi__lock(csi_service *s, const char *id)
{
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->n_inflight; i++)
        if (strcmp(s->inflight[i], id) == 0) {
            rc = -EBUSY;
            goto out;
        }
    if (s->n_inflight == s->cap_inflight) {
        size_t nc = s->cap_inflight ? 2 * s->cap_inflight : 16;
        char **na = realloc(s->inflight, nc * sizeof(*na));
        if (!na) abort();
        s->inflight = na;
        s->cap_inflight = nc;
    }
    s->inflight[s->n_inflight++] = csi__xstrdup(id);
out:
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void csi__unlock(csi_service *s, const char *id)
{
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->n_inflight; i++)
        if (strcmp(s->inflight[i], id) == 0) {
            free(s->inflight[i]);
            s->inflight[i] = s->inflight[--s->n_inflight];
            break;
        }
    pthread_mutex_unlock(&s->mu);
}

/* --------------------------------------------------------------- stores */

void csi__store_counts(csi_service *s, struct st_counts *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->cfg->n; i++) {
        struct st_counts c;
        if (!s->stores[i]) continue;
        st_counts_get(s->stores[i], &c);
        out->reads += c.reads;
        out->writes += c.writes;
    }
    pthread_mutex_unlock(&s->mu);
}

st_store *csi__store(csi_service *s, size_t i)
{
    st_store *st;
    pthread_mutex_lock(&s->mu);
    st = s->stores[i];
    pthread_mutex_unlock(&s->mu);
    if (st) return st;
    /* Open outside the lock (rados connects over the network); a racing
     * opener's handle is closed if ours lost. */
    int rc = rg_open_store(&s->cfg->regions[i], &st);
    if (rc < 0) {
        tlog_warn("csi.store.open_failed", "region=%s backend=%s err=%d (%s)",
                  s->cfg->regions[i].name, s->cfg->regions[i].backend, rc,
                  st_strerror(rc));
        return NULL;
    }
    pthread_mutex_lock(&s->mu);
    if (s->stores[i]) {
        st_close(st);
        st = s->stores[i];
    } else {
        s->stores[i] = st;
    }
    pthread_mutex_unlock(&s->mu);
    return st;
}

size_t csi__local_index(const csi_service *s)
{
    for (size_t i = 0; i < s->cfg->n; i++)
        if (strcmp(s->cfg->regions[i].name, s->region) == 0) return i;
    return 0;
}

int csi__find(csi_service *s, const char *id, int want_primary,
              size_t *idx, struct jr_info *info)
{
    size_t n = s->cfg->n, local = csi__local_index(s);
    int failed = 0, have = 0;
    for (size_t k = 0; k < n; k++) {
        size_t i = k == 0 ? local : (k <= local ? k - 1 : k);
        st_store *st = csi__store(s, i);
        if (!st) {
            failed = -EIO;
            continue;
        }
        struct jr_info in;
        int rc = jr_volume_stat(st, id, &in);
        if (rc == -ENOENT) continue;
        if (rc < 0) {
            tlog_warn("csi.volume.stat_failed", "vol=%s region=%s err=%d",
                      id, s->cfg->regions[i].name, rc);
            failed = rc;
            continue;
        }
        if (!have || (in.role == JR_ROLE_PRIMARY &&
                      info->role != JR_ROLE_PRIMARY)) {
            *info = in;
            *idx = i;
            have = 1;
        }
        if (!want_primary || in.role == JR_ROLE_PRIMARY) break;
    }
    if (have) return 0;
    return failed ? failed : -ENOENT;
}

int csi__rpc_code(int err)
{
    switch (err) {
    case -EIO:
    case -ETIMEDOUT:
    case -ENOTCONN:
    case -ECONNREFUSED:
    case -EAGAIN:
        return RPC_UNAVAILABLE;
    default:
        return RPC_INTERNAL;
    }
}

/* ------------------------------------------------------ request checks */

int csi__need(rpc_ctx *ctx, const char *field, const char *v)
{
    if (!v || !v[0])
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT, "%s missing", field);
    return 0;
}

int csi__need_path(rpc_ctx *ctx, const char *field, const char *v)
{
    int code = csi__need(ctx, field, v);
    if (code) return code;
    if (!csi_path_valid(v))
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
                             "%s must be a clean absolute path (no \".\", "
                             "\"..\" or \"//\", no control characters), "
                             "shorter than %d bytes", field, CSI_MAX_PATH);
    return 0;
}

int csi__lock_volume(csi_service *s, rpc_ctx *ctx, const char *id)
{
    if (!csi_volume_id_valid(id))
        return rpc_ctx_error(ctx, RPC_NOT_FOUND, "volume %.128s not found",
                             id);
    if (csi__lock(s, id) < 0)
        return rpc_ctx_error(ctx, RPC_ABORTED, "an operation on volume %s is "
                             "pending", id);
    return 0;
}

int csi__find_volume(csi_service *s, rpc_ctx *ctx, const char *id,
                     int want_primary, size_t *idx, struct jr_info *info)
{
    int rc = csi__find(s, id, want_primary, idx, info);
    if (rc == -ENOENT)
        return rpc_ctx_error(ctx, RPC_NOT_FOUND, "volume %s not found", id);
    if (rc < 0)
        return rpc_ctx_error(ctx, csi__rpc_code(rc), "looking up volume %s: "
                             "%s", id, jr_strerror(rc));
    return 0;
}

/* -------------------------------------------------------- capabilities */

int csi__cap_readonly(const Csi__V1__VolumeCapability *c)
{
    if (!c || !c->access_mode) return 0;
    int m = c->access_mode->mode;
    return m == CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_READER_ONLY ||
           m == CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__MULTI_NODE_READER_ONLY;
}

int csi__check_cap(rpc_ctx *ctx, const Csi__V1__VolumeCapability *c,
                   int unsupported_code)
{
    if (!c) return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
                                 "volume capability missing");
    if (c->access_type_case == CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE__NOT_SET)
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
                             "volume capability: access_type (block or "
                             "mount) missing");
    if (!c->access_mode)
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
                             "volume capability: access_mode missing");
    switch (c->access_mode->mode) {
    case CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_WRITER:
    case CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_READER_ONLY:
    case CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_SINGLE_WRITER:
    case CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_MULTI_WRITER:
        break;
    case CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__UNKNOWN:
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
                             "volume capability: access_mode UNKNOWN");
    default:
        return rpc_ctx_error(ctx, unsupported_code,
                             "access mode %d not supported: tandem volumes "
                             "are single-node (block device on one node)",
                             (int)c->access_mode->mode);
    }
    if (c->access_type_case == CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_MOUNT) {
        const Csi__V1__VolumeCapability__MountVolume *m = c->mount;
        if (m && m->fs_type && m->fs_type[0] && strcmp(m->fs_type, "ext4") &&
            strcmp(m->fs_type, "xfs"))
            return rpc_ctx_error(ctx, unsupported_code,
                                 "fs_type %.32s not supported (ext4, xfs)",
                                 m->fs_type);
        if (m && m->volume_mount_group && m->volume_mount_group[0])
            return rpc_ctx_error(ctx, unsupported_code,
                                 "volume_mount_group not supported");
        for (size_t i = 0; m && i < m->n_mount_flags; i++)
            if (!m->mount_flags[i] || strlen(m->mount_flags[i]) > 256 ||
                strpbrk(m->mount_flags[i], "\n\r"))
                return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
                                     "bad mount flag");
    }
    return 0;
}

/* -------------------------------------------------------------- service */

static const struct rpc_method identity_methods[] = {
    {"/csi.v1.Identity/GetPluginInfo",
     &csi__v1__get_plugin_info_request__descriptor,
     &csi__v1__get_plugin_info_response__descriptor, csi__identity_info},
    {"/csi.v1.Identity/GetPluginCapabilities",
     &csi__v1__get_plugin_capabilities_request__descriptor,
     &csi__v1__get_plugin_capabilities_response__descriptor,
     csi__identity_caps},
    {"/csi.v1.Identity/Probe", &csi__v1__probe_request__descriptor,
     &csi__v1__probe_response__descriptor, csi__identity_probe},
};

static const struct rpc_method controller_methods[] = {
    {"/csi.v1.Controller/CreateVolume",
     &csi__v1__create_volume_request__descriptor,
     &csi__v1__create_volume_response__descriptor, csi__create_volume},
    {"/csi.v1.Controller/DeleteVolume",
     &csi__v1__delete_volume_request__descriptor,
     &csi__v1__delete_volume_response__descriptor, csi__delete_volume},
    {"/csi.v1.Controller/ValidateVolumeCapabilities",
     &csi__v1__validate_volume_capabilities_request__descriptor,
     &csi__v1__validate_volume_capabilities_response__descriptor,
     csi__validate_caps},
    {"/csi.v1.Controller/ListVolumes",
     &csi__v1__list_volumes_request__descriptor,
     &csi__v1__list_volumes_response__descriptor, csi__list_volumes},
    {"/csi.v1.Controller/GetCapacity",
     &csi__v1__get_capacity_request__descriptor,
     &csi__v1__get_capacity_response__descriptor, csi__get_capacity},
    {"/csi.v1.Controller/ControllerGetCapabilities",
     &csi__v1__controller_get_capabilities_request__descriptor,
     &csi__v1__controller_get_capabilities_response__descriptor,
     csi__controller_caps},
    {"/csi.v1.Controller/ControllerExpandVolume",
     &csi__v1__controller_expand_volume_request__descriptor,
     &csi__v1__controller_expand_volume_response__descriptor,
     csi__controller_expand},
    {"/csi.v1.Controller/CreateSnapshot",
     &csi__v1__create_snapshot_request__descriptor,
     &csi__v1__create_snapshot_response__descriptor, csi__create_snapshot},
    {"/csi.v1.Controller/DeleteSnapshot",
     &csi__v1__delete_snapshot_request__descriptor,
     &csi__v1__delete_snapshot_response__descriptor, csi__delete_snapshot},
    {"/csi.v1.Controller/ListSnapshots",
     &csi__v1__list_snapshots_request__descriptor,
     &csi__v1__list_snapshots_response__descriptor, csi__list_snapshots},
    {"/csi.v1.Controller/ControllerGetVolume",
     &csi__v1__controller_get_volume_request__descriptor,
     &csi__v1__controller_get_volume_response__descriptor,
     csi__controller_get_volume},
};

static const struct rpc_method node_methods[] = {
    {"/csi.v1.Node/NodeStageVolume",
     &csi__v1__node_stage_volume_request__descriptor,
     &csi__v1__node_stage_volume_response__descriptor, csi__node_stage},
    {"/csi.v1.Node/NodeUnstageVolume",
     &csi__v1__node_unstage_volume_request__descriptor,
     &csi__v1__node_unstage_volume_response__descriptor, csi__node_unstage},
    {"/csi.v1.Node/NodePublishVolume",
     &csi__v1__node_publish_volume_request__descriptor,
     &csi__v1__node_publish_volume_response__descriptor, csi__node_publish},
    {"/csi.v1.Node/NodeUnpublishVolume",
     &csi__v1__node_unpublish_volume_request__descriptor,
     &csi__v1__node_unpublish_volume_response__descriptor,
     csi__node_unpublish},
    {"/csi.v1.Node/NodeGetVolumeStats",
     &csi__v1__node_get_volume_stats_request__descriptor,
     &csi__v1__node_get_volume_stats_response__descriptor, csi__node_stats},
    {"/csi.v1.Node/NodeExpandVolume",
     &csi__v1__node_expand_volume_request__descriptor,
     &csi__v1__node_expand_volume_response__descriptor, csi__node_expand},
    {"/csi.v1.Node/NodeGetCapabilities",
     &csi__v1__node_get_capabilities_request__descriptor,
     &csi__v1__node_get_capabilities_response__descriptor, csi__node_caps},
    {"/csi.v1.Node/NodeGetInfo", &csi__v1__node_get_info_request__descriptor,
     &csi__v1__node_get_info_response__descriptor, csi__node_info},
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* One table per mode, built once (constant afterwards). */
static struct rpc_method mode_tab[3][NELEM(identity_methods) +
                                     NELEM(controller_methods) +
                                     NELEM(node_methods)];
static size_t mode_ntab[3];
static pthread_once_t mode_once = PTHREAD_ONCE_INIT;

static void mode_tab_build(void)
{
    for (int m = 1; m <= 3; m++) {
        size_t k = 0;
        for (size_t i = 0; i < NELEM(identity_methods); i++)
            mode_tab[m - 1][k++] = identity_methods[i];
        if (m & CSI_MODE_CONTROLLER)
            for (size_t i = 0; i < NELEM(controller_methods); i++)
                mode_tab[m - 1][k++] = controller_methods[i];
        if (m & CSI_MODE_NODE)
            for (size_t i = 0; i < NELEM(node_methods); i++)
                mode_tab[m - 1][k++] = node_methods[i];
        mode_ntab[m - 1] = k;
    }
}

const struct rpc_method *csi_methods(int mode, size_t *n)
{
    pthread_once(&mode_once, mode_tab_build);
    if (mode < 1 || mode > 3) mode = CSI_MODE_ALL;
    *n = mode_ntab[mode - 1];
    return mode_tab[mode - 1];
}

static void copy(char *dst, size_t n, const char *src)
{
    snprintf(dst, n, "%s", src ? src : "");
}

int csi_service_create(const struct csi_opts *o, csi_service **out,
                       char *err, size_t errlen)
{
    csi_service *s = csi__xcalloc(1, sizeof(*s));
    int rc;
    pthread_mutex_init(&s->mu, NULL);
    s->mode = o->mode ? o->mode : CSI_MODE_ALL;
    copy(s->driver, sizeof(s->driver),
         o->driver_name ? o->driver_name : CSI_DEFAULT_DRIVER);
    copy(s->config_path, sizeof(s->config_path), o->config_path);
    copy(s->node_id, sizeof(s->node_id), o->node_id);
    copy(s->zone, sizeof(s->zone), o->zone);
    copy(s->state_dir, sizeof(s->state_dir),
         o->state_dir && o->state_dir[0] ? o->state_dir : "/run/tandem");
    copy(s->exporter, sizeof(s->exporter), o->exporter_path);
    s->max_volumes = o->max_volumes_per_node;
    s->link_down_s = o->health_link_down_s > 0 ? o->health_link_down_s : 60;
    if (!o->config_path || !o->config_path[0]) {
        snprintf(err, errlen, "no config file (--config)");
        rc = -EINVAL;
        goto fail;
    }
    rc = rg_load(o->config_path, &s->cfg, err, errlen);
    if (rc < 0) goto fail;
    copy(s->region, sizeof(s->region),
         o->region && o->region[0] ? o->region : s->cfg->default_region);
    if (!rg_find(s->cfg, s->region)) {
        snprintf(err, errlen, "region %s is not in %s", s->region,
                 o->config_path);
        rc = -EINVAL;
        goto fail;
    }
    if ((s->mode & CSI_MODE_NODE) && !s->node_id[0]) {
        snprintf(err, errlen, "node mode needs --node-id");
        rc = -EINVAL;
        goto fail;
    }
    s->stores = csi__xcalloc(s->cfg->n, sizeof(*s->stores));
    *out = s;
    return 0;
fail:
    csi_service_destroy(s);
    return rc;
}

void csi_service_destroy(csi_service *s)
{
    if (!s) return;
    for (size_t i = 0; s->stores && i < s->cfg->n; i++) st_close(s->stores[i]);
    free(s->stores);
    for (size_t i = 0; i < s->n_inflight; i++) free(s->inflight[i]);
    free(s->inflight);
    rg_free(s->cfg);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
