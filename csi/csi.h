/*
 * csi.h: tandem's CSI plugin (Identity, Controller and Node services of
 * CSI v1.12) as a library, so that tandem-csi (csi/csi_main.c) and the
 * tests share one implementation.
 *
 * A csi_service holds the region map (journal/regions.h), lazily opened
 * stores per region, the node's identity and topology, and a set of
 * volume ids with an operation in flight.  csi_methods() gives the
 * rpc_method table (proto/rpc.h) to serve for a mode; the handlers map
 * every outcome to the status code CSI's per-RPC tables require.
 *
 * Volume ids.  CreateVolume derives the id from the request name, so a
 * retried call finds the same volume without any index: a name that is
 * already a valid journal id ([A-Za-z0-9._-], starts alphanumeric, at
 * most 100 bytes, not starting with "h-") is used as is (Kubernetes'
 * "pvc-<uid>"), any other name becomes "h-" + 40 hex digits of its
 * SHA-256.  Ids carry no region: the replica of a volume in the peer
 * region has the same id, and any controller finds a volume by asking
 * the configured regions' stores (its own region first).
 *
 * Volume metadata (jr meta keys, shipped to the replica by the
 * replicator so the surviving cluster can bind it unchanged):
 *   csi.name            the CreateVolume name
 *   csi.pvc_name        csi.storage.k8s.io/pvc/name       (if given)
 *   csi.pvc_namespace   csi.storage.k8s.io/pvc/namespace  (if given)
 *   csi.pv_name         csi.storage.k8s.io/pv/name        (if given)
 *   csi.access_type     "mount" or "block"
 *   csi.replication     "none" or "async"
 *   csi.peer_region     the replica's region (async only)
 *   csi.param.<key>     every StorageClass parameter, verbatim
 *   csi.requested_bytes size asked by ControllerExpandVolume while the
 *                       volume was open on a node (NodeExpandVolume or
 *                       the next NodeStageVolume applies it)
 *   csi.content_source  a clone's source as CreateVolume named it:
 *                       "snapshot:<snapshot id>" or "volume:<volume id>"
 *                       (echoed in the response; a retry must match)
 *   csi.clone_pending   "<vol>@<snap>": the snapshot a clone is still
 *                       being copied from (removed when the copy is
 *                       complete; NodeStageVolume refuses the volume
 *                       meanwhile, a CreateVolume retry finishes it)
 *   csi.clone_tmp       "1": that snapshot is the clone's own temporary
 *                       snapshot of a source volume (deleted after)
 * Read by ControllerGetVolume (written by the replicator that ships the
 * volume):
 *   rep.health          "<state> <since unix s> <peer> <free text>",
 *                       state ok, link-down, split-brain or copying
 *
 * Snapshots (csi_snap.c).  A CSI snapshot id is "<volume id>@<snap id>":
 * '@' is in neither alphabet.  The snap id (journal/jr.h: 1..64 bytes of
 * [A-Za-z0-9_-]) derives from the CreateSnapshot name as volume ids do:
 * a name that is already a valid snap id and does not start with "h-"
 * is used as is (Kubernetes' "snapshot-<uid>"), any other becomes "h-" +
 * 40 hex digits of SHA-256("snap:" + name).  A retried CreateSnapshot
 * finds the snapshot on its source volume; the same name on another
 * volume is ALREADY_EXISTS (found by asking every volume: that costs one
 * lookup per volume, and only for a name not seen before).
 *
 * Snapshots live in their volume (jr.h): DeleteVolume of a volume that
 * has some answers FAILED_PRECONDITION and changes nothing, as the spec
 * requires of plugins whose snapshots are not independent of their
 * volume.  Restores and clones are independent copies (csi_snap.c).
 *
 * Snapshot label (jr_snap.label, replicated with the snapshot; tandemctl
 * failover --emit-manifests parses it to write VolumeSnapshotContent +
 * VolumeSnapshot in the surviving region).  Built from the CreateSnapshot
 * parameters csi-snapshotter sends with --extra-create-metadata:
 *     namespace=<ns> name=<VolumeSnapshot name> content=<VolumeSnapshotContent name>
 * space-separated key=value tokens in that order, a token left out when
 * its parameter was not given ("" when none was); each value
 * percent-encoded (every byte outside [A-Za-z0-9._-] as %XX, uppercase
 * hex; Kubernetes names never need it).  Longer than JR_MAX_SNAP_LABEL
 * (512) bytes: CreateSnapshot answers INVALID_ARGUMENT.  A parser must
 * ignore tokens with keys it does not know (later versions may add some).
 * The temporary snapshot of a clone of a volume is labelled
 * "tandem-clone-source clone=<clone volume id>" and is not a
 * VolumeSnapshot.
 * Secrets (every `secrets` field) are never read, stored or logged.
 *
 * Replication can also be switched on and off later, and roles changed,
 * through the CSI-Addons endpoint (csi_addons.h; DESIGN.md "CSI-Addons
 * replication"): it writes csi.replication / csi.peer_region itself for
 * enable/disable (the replicator reacts to them) and asks the region
 * replicator's admin API for promote, demote and resync.
 *
 * Threads: handlers run concurrently; a second call on a volume id that
 * has a call in flight gets ABORTED ("operation pending"), as the spec
 * allows.  Errors: functions return 0 or a negative errno unless stated.
 */
#ifndef TANDEM_CSI_H
#define TANDEM_CSI_H

#include <stddef.h>
#include <stdint.h>

#include "csi.pb-c.h"
#include "regions.h"
#include "rpc.h"

#define CSI_VERSION "0.1.0"
#define CSI_DEFAULT_DRIVER "tandem.csi.dev"
#define CSI_MAX_NAME 128          /* CreateVolume name, bytes */
#define CSI_MAX_VOL_ID 128        /* volume id, bytes */
#define CSI_MAX_PATH 1024         /* staging/target paths, bytes */
#define CSI_DEFAULT_SIZE (1ull << 30)       /* no capacity_range: 1 GiB */
#define CSI_MAX_SIZE (64ull << 40)          /* largest volume: 64 TiB */
#define CSI_MIN_OBJECT_SIZE (64u << 10)
#define CSI_MAX_OBJECT_SIZE (64u << 20)

enum csi_mode {
    CSI_MODE_CONTROLLER = 1,
    CSI_MODE_NODE = 2,
    CSI_MODE_ALL = 3,
};

struct csi_opts {
    int mode;                    /* CSI_MODE_* */
    const char *driver_name;     /* NULL: CSI_DEFAULT_DRIVER */
    const char *config_path;     /* region map file (required) */
    const char *node_id;         /* node mode: NodeGetInfo node_id */
    const char *region;          /* this process's region (node: its
                                    topology; controller: store asked
                                    first).  NULL: default_region */
    const char *zone;            /* node zone (NULL/"": none) */
    const char *state_dir;       /* node: run dirs and records
                                    (NULL: /run/tandem) */
    const char *exporter_path;   /* tandem-volfuse (NULL: blockdev.h
                                    default) */
    int64_t max_volumes_per_node;/* NodeGetInfo (0: unlimited) */
    int64_t health_link_down_s;  /* ControllerGetVolume: a peer link down
                                    longer than this is abnormal (0: 60) */
};

typedef struct csi_service csi_service;

/* Load the config and set up the service (stores open lazily, so an
 * unreachable region does not stop the plugin).  err gets one line. */
int csi_service_create(const struct csi_opts *o, csi_service **out,
                       char *err, size_t errlen);
void csi_service_destroy(csi_service *s);
/* The methods to serve in mode (borrowed, static).  Methods of services
 * not served are left out, so the rpc layer answers UNIMPLEMENTED. */
const struct rpc_method *csi_methods(int mode, size_t *n);

/* ---- helpers exposed for tests ---- */

/* One string-string map entry of any generated *Entry type: they all
 * share this layout. */
struct csi_mapent {
    ProtobufCMessage base;
    char *key;
    char *value;
};

/* Validated StorageClass parameters. */
struct csi_params {
    char region[RG_MAX_NAME + 1];      /* "" unless `region` given */
    int async;                         /* replication=async */
    char peer_region[RG_MAX_NAME + 1];
    char fs_type[16];                  /* "" unless fsType given */
    uint32_t object_size;              /* 0 unless objectSize given */
    char mkfs_options[256];
    char pvc_name[256];
    char pvc_namespace[256];
    char pv_name[256];
    /* consistencyGroup: the volume joins this consistency group at
     * creation (jr_group_join; DESIGN.md "Consistency groups"): 1..64
     * bytes of [A-Za-z0-9_-] ("" none). */
    char group[65];
};
/* Parse and check parameters against the region map.  On a bad key or
 * value returns -EINVAL with err naming the key. */
int csi_params_parse(const struct rg_config *cfg, size_t n,
                     struct csi_mapent *const *ents, struct csi_params *p,
                     char *err, size_t errlen);

/* Pick the region for a new volume (see DESIGN.md, WaitForFirstConsumer):
 * the first preferred segment whose region is configured and allowed by
 * requisite (and by the `region` parameter, if set); else the first such
 * requisite segment; no requirement at all: the parameter or the default
 * region.  -ENOENT when nothing fits (err names the regions asked for and
 * the ones configured); req may be NULL. */
int csi_topology_select(const struct rg_config *cfg,
                        const Csi__V1__TopologyRequirement *req,
                        const char *param_region, char *region,
                        size_t regionlen, char *err, size_t errlen);

/* Volume id for a CreateVolume name (see above): 0, or -EINVAL for an
 * empty or over-long name. */
int csi_volume_id(const char *name, char *id, size_t idlen);
/* 1 if id is acceptable as a volume id (what csi_volume_id produces, or
 * any journal id). */
int csi_volume_id_valid(const char *id);
/* Snapshot id part for a CreateSnapshot name (see above): 0, or -EINVAL
 * for an empty or over-long name.  idlen >= 65. */
int csi_snap_id(const char *name, char *id, size_t idlen);
/* Split a CSI snapshot id "<vol>@<snap>": 0, or -EINVAL when it is not
 * one tandem makes. */
int csi_snapshot_id_split(const char *sid, char *vol, size_t vollen,
                          char *snap, size_t snaplen);
/* The snapshot label (see above) of a VolumeSnapshot's namespace, name
 * and content name (each may be NULL or ""): 0, or -ENAMETOOLONG when it
 * does not fit len or JR_MAX_SNAP_LABEL. */
int csi_snap_label(const char *ns, const char *name, const char *content,
                   char *out, size_t len);
/* 1 if path is absolute, has no "." or ".." component, no "//", and is
 * shorter than CSI_MAX_PATH. */
int csi_path_valid(const char *path);

/* Kubernetes: read the Node's topology labels through the API server
 * (in-cluster service account; HTTPS through libcurl, 30 s deadline).
 * Fills region/zone from topology.kubernetes.io/region and .../zone (""
 * when a label is absent).  Environment: KUBERNETES_SERVICE_HOST,
 * KUBERNETES_SERVICE_PORT; token and CA in $TANDEM_K8S_SA_DIR (default
 * /var/run/secrets/kubernetes.io/serviceaccount).  Errors (err says
 * which step failed): -EINVAL bad environment, node name, CA file, token
 * or answer; the errno of reading the token file (-ENOENT: none); -ECONNREFUSED connection or TLS (server certificate not signed
 * by the CA) failed; -ETIMEDOUT; -ENOENT no such Node; -EACCES token
 * refused; -EFBIG token file or answer too large (64 KiB, 16 MiB); -EIO
 * other HTTP status or transfer error. */
int csi_k8s_node_topology(const char *node_name, char *region,
                          size_t regionlen, char *zone, size_t zonelen,
                          char *err, size_t errlen);

#endif /* TANDEM_CSI_H */
