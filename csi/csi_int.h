/*
 * csi_int.h: private declarations shared by the csi/csi_*.c files of libcsi:
 * the service struct, response-building helpers (every pointer malloc'd,
 * as proto/rpc.h requires), the in-flight volume set and store lookup.
 */
#ifndef TANDEM_CSI_INT_H
#define TANDEM_CSI_INT_H

#include <pthread.h>
#include <stdint.h>

#include "csi.h"
#include "jr.h"
#include "store.h"

struct csi_service {
    int mode;
    char driver[64];
    char config_path[RG_MAX_PATH];
    char node_id[256];
    char region[RG_MAX_NAME + 1];  /* local region (always configured) */
    char zone[RG_MAX_NAME + 1];
    char state_dir[512];
    char exporter[512];            /* "" : blockdev default */
    int64_t max_volumes;
    struct rg_config *cfg;
    pthread_mutex_t mu;            /* guards stores[] and inflight */
    st_store **stores;             /* per cfg->regions index, lazily */
    char **inflight;               /* volume ids with a call in flight */
    size_t n_inflight, cap_inflight;
};

/* ---- allocation (abort on OOM: a daemon that cannot allocate a few
 * bytes for a reply has nothing better to do) ---- */
void *csi__xcalloc(size_t n, size_t size);
char *csi__xstrdup(const char *s);
/* Add key=value to a generated map field (entry type from desc). */
void csi__map_put(const ProtobufCMessageDescriptor *desc, size_t *n,
                  void *entries_field, const char *key, const char *value);
/* Look a key up in a request map (NULL if absent). */
const char *csi__map_get(size_t n, void *const *entries, const char *key);
/* A Topology message naming region (+ zone when the region is zonal). */
Csi__V1__Topology *csi__topology_new(const csi_service *s,
                                     const struct rg_region *r);

/* ---- in-flight volume ids ---- */
/* 0, or -EBUSY when a call on id is already in flight. */
int csi__lock(csi_service *s, const char *id);
void csi__unlock(csi_service *s, const char *id);

/* ---- stores ---- */
/* Store of region index i, opened on first use.  NULL on failure
 * (logged). */
st_store *csi__store(csi_service *s, size_t i);
/* Index of the local region in cfg->regions. */
size_t csi__local_index(const csi_service *s);
/* Find volume id: the local region is asked first, then the others.
 * want_primary: keep looking past a secondary for a primary copy (the
 * secondary is returned when no primary exists).  0 with *idx and *info
 * set; -ENOENT when every store answered that it has no such volume;
 * another negative errno when no copy was found and some store failed. */
int csi__find(csi_service *s, const char *id, int want_primary,
              size_t *idx, struct jr_info *info);

/* Map a store/journal error to an RPC code (UNAVAILABLE for backend
 * trouble, INTERNAL otherwise). */
int csi__rpc_code(int err);

/* ---- capabilities ---- */
/* Check one VolumeCapability: 0, or an RPC code with the message set in
 * ctx (code is INVALID_ARGUMENT for malformed ones, `unsupported_code`
 * for well-formed but unsupported ones). */
int csi__check_cap(rpc_ctx *ctx, const Csi__V1__VolumeCapability *c,
                   int unsupported_code);
/* 1 if the access mode is read-only. */
int csi__cap_readonly(const Csi__V1__VolumeCapability *c);

/* ---- handlers ---- */
int csi__identity_info(void *, rpc_ctx *, const ProtobufCMessage *,
                       ProtobufCMessage **);
int csi__identity_caps(void *, rpc_ctx *, const ProtobufCMessage *,
                       ProtobufCMessage **);
int csi__identity_probe(void *, rpc_ctx *, const ProtobufCMessage *,
                        ProtobufCMessage **);
int csi__create_volume(void *, rpc_ctx *, const ProtobufCMessage *,
                       ProtobufCMessage **);
int csi__delete_volume(void *, rpc_ctx *, const ProtobufCMessage *,
                       ProtobufCMessage **);
int csi__validate_caps(void *, rpc_ctx *, const ProtobufCMessage *,
                       ProtobufCMessage **);
int csi__list_volumes(void *, rpc_ctx *, const ProtobufCMessage *,
                      ProtobufCMessage **);
int csi__get_capacity(void *, rpc_ctx *, const ProtobufCMessage *,
                      ProtobufCMessage **);
int csi__controller_caps(void *, rpc_ctx *, const ProtobufCMessage *,
                         ProtobufCMessage **);
int csi__controller_expand(void *, rpc_ctx *, const ProtobufCMessage *,
                           ProtobufCMessage **);
int csi__node_stage(void *, rpc_ctx *, const ProtobufCMessage *,
                    ProtobufCMessage **);
int csi__node_unstage(void *, rpc_ctx *, const ProtobufCMessage *,
                      ProtobufCMessage **);
int csi__node_publish(void *, rpc_ctx *, const ProtobufCMessage *,
                      ProtobufCMessage **);
int csi__node_unpublish(void *, rpc_ctx *, const ProtobufCMessage *,
                        ProtobufCMessage **);
int csi__node_stats(void *, rpc_ctx *, const ProtobufCMessage *,
                    ProtobufCMessage **);
int csi__node_expand(void *, rpc_ctx *, const ProtobufCMessage *,
                     ProtobufCMessage **);
int csi__node_caps(void *, rpc_ctx *, const ProtobufCMessage *,
                   ProtobufCMessage **);
int csi__node_info(void *, rpc_ctx *, const ProtobufCMessage *,
                   ProtobufCMessage **);

#endif /* TANDEM_CSI_INT_H */
