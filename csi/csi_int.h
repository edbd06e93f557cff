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
    int64_t link_down_s;           /* ControllerGetVolume: link-down age
                                      that makes a volume abnormal */
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
/* A Topology message naming region (+ zone unless zone is ""), under the
 * configured topology keys. */
Csi__V1__Topology *csi__topology_new(const csi_service *s, const char *region,
                                     const char *zone);
/* An empty (all defaults) message of type d, malloc'd. */
void *csi__reply_new(const ProtobufCMessageDescriptor *d);
/* Copy meta key of volume id into buf and return buf; "" when st is NULL
 * or the key is absent or unreadable. */
const char *csi__meta_copy(st_store *st, const char *id, const char *key,
                           char *buf, size_t len);

/* ---- in-flight volume ids ---- */
/* 0, or -EBUSY when a call on id is already in flight. */
int csi__lock(csi_service *s, const char *id);
void csi__unlock(csi_service *s, const char *id);

/* ---- stores ---- */
/* Store of region index i, opened on first use.  NULL on failure
 * (logged). */
st_store *csi__store(csi_service *s, size_t i);
/* Store calls (st_counts) of every store this process has opened, summed:
 * a call's cost is the difference around it (exact when no other call
 * overlaps it; concurrent calls' counts mix). */
void csi__store_counts(csi_service *s, struct st_counts *out);
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

/* ---- request checks: each returns 0, or the RPC code with the message
 * set in ctx (return it from the handler as is) ---- */
/* INVALID_ARGUMENT "<field> missing" when v is NULL or "". */
int csi__need(rpc_ctx *ctx, const char *field, const char *v);
/* csi__need, then INVALID_ARGUMENT naming field unless csi_path_valid. */
int csi__need_path(rpc_ctx *ctx, const char *field, const char *v);
/* Take volume id for this call: NOT_FOUND when no volume can have that
 * id, ABORTED when a call on it is in flight; on 0 the caller must
 * csi__unlock(s, id). */
int csi__lock_volume(csi_service *s, rpc_ctx *ctx, const char *id);
/* csi__find, answering a failed lookup: NOT_FOUND when no store has the
 * volume, else the csi__rpc_code of the store error. */
int csi__find_volume(csi_service *s, rpc_ctx *ctx, const char *id,
                     int want_primary, size_t *idx, struct jr_info *info);

/* ---- capabilities ---- */
/* Check one VolumeCapability: 0, or an RPC code with the message set in
 * ctx (code is INVALID_ARGUMENT for malformed ones, `unsupported_code`
 * for well-formed but unsupported ones). */
int csi__check_cap(rpc_ctx *ctx, const Csi__V1__VolumeCapability *c,
                   int unsupported_code);
/* 1 if the access mode is read-only. */
int csi__cap_readonly(const Csi__V1__VolumeCapability *c);

/* ---- Kubernetes API answer (csi_k8s.c; exposed for the tests and the
 * fuzzer, tests/fuzz/fuzz-csi-k8s.c) ---- */
/* Read the answer to GET /api/v1/nodes/<node_name>: status is the HTTP
 * status, body the len bytes of the answer's body (JSON, decoded by
 * json-c; no NUL needed).  On 200 fills region/zone from the Node's
 * topology.kubernetes.io/region and .../zone labels ("" when absent; a
 * label longer than its buffer is refused, never cut).  Else a negative
 * errno with err set: -ENOENT 404, -EACCES 401/403, -EIO other status
 * (err quotes the Status object's message when there is one), -EINVAL
 * not a Node object (not one JSON object, no metadata, labels or label
 * values of the wrong type), -EFBIG over 16 MiB. */
int csi__k8s_parse_node(long status, const char *body, size_t len,
                        const char *node_name, char *region,
                        size_t regionlen, char *zone, size_t zonelen,
                        char *err, size_t errlen);

/* ---- clones (csi_snap.c) ---- */
enum { CSI__SRC_SNAPSHOT = 1, CSI__SRC_VOLUME = 2 };
struct csi__src {
    int type;                      /* CSI__SRC_*, 0: none */
    char vol[CSI_MAX_VOL_ID + 1];  /* source volume */
    char snap[JR_MAX_SNAP_ID + 1]; /* snapshot copied (volume source: the
                                      temporary one, set by
                                      csi__clone_snapshot) */
    size_t idx;                    /* region index of the source */
    struct jr_info info;           /* the source volume */
    struct jr_snap js;             /* the snapshot (once known) */
    uint64_t size;                 /* bytes the clone needs at least */
    char desc[CSI_MAX_VOL_ID + JR_MAX_SNAP_ID + 16]; /* "snapshot:<id>" or
                                      "volume:<id>": csi.content_source */
};
/* Resolve a CreateVolume content source: 0, or NOT_FOUND (missing
 * source) / INVALID_ARGUMENT / the store error's code, message set. */
int csi__clone_source(csi_service *s, rpc_ctx *ctx,
                      const Csi__V1__VolumeContentSource *src,
                      struct csi__src *o);
/* Before the clone volume clone_id is created: for a volume source take
 * the temporary snapshot (idempotent: derived from clone_id), then hold
 * the snapshot for clone_id.  0 or an RPC code (message set). */
int csi__clone_snapshot(csi_service *s, rpc_ctx *ctx, const char *clone_id,
                        struct csi__src *src);
/* Copy a pending clone (meta csi.clone_pending) in region idx and mark
 * it done; 0 at once when it is not pending.  Resumable: a failure leaves
 * it pending for the next call.  0 or an RPC code (message set). */
int csi__clone_finish(csi_service *s, rpc_ctx *ctx, const char *id,
                      size_t idx);
/* 1 and from and *tmp when volume id is a pending clone, 0 when not, or a
 * negative errno. */
int csi__clone_pending(st_store *st, const char *id, char *from, size_t len,
                       int *tmp);
/* A pending clone was deleted: release its hold on from (and delete the
 * temporary snapshot when tmp).  Best effort, logged. */
void csi__clone_abandon(csi_service *s, const char *id, const char *from,
                        int tmp);

/* ---- handlers ---- */
int csi__create_snapshot(void *, rpc_ctx *, const ProtobufCMessage *,
                         ProtobufCMessage **);
int csi__delete_snapshot(void *, rpc_ctx *, const ProtobufCMessage *,
                         ProtobufCMessage **);
int csi__list_snapshots(void *, rpc_ctx *, const ProtobufCMessage *,
                        ProtobufCMessage **);
int csi__controller_get_volume(void *, rpc_ctx *, const ProtobufCMessage *,
                               ProtobufCMessage **);
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
