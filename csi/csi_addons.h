/*
 * csi_addons.h: the CSI-Addons services of tandem-csi (controller mode),
 * served on their own endpoint (--csi-addons-endpoint, the csi-addons
 * sidecar's convention): identity.Identity and replication.Controller,
 * from the published protos (tests/spec/csi-addons, compiled as they are
 * into libaddonsgen.a), and volumegroup.Controller (csi_addons_vg.c: a
 * volume group is a consistency group, DESIGN.md "Consistency groups").
 * Replication of a ReplicationSource.volumegroup is not served (the
 * group's members are replicated, promoted and failed over as volumes;
 * tandemctl --group does it for all of them).
 *
 * Where things happen (DESIGN.md, "CSI-Addons replication"):
 *  - Enable / Disable change the volume's replication metadata in the
 *    store of this controller's region (csi.replication, csi.peer_region:
 *    csi.h), as CreateVolume does; that region's replicator reacts by
 *    itself.  Enable: its scanner starts a sender, which creates the
 *    replica and ships the journal from seq 1, or, when the journal no
 *    longer starts at 1, makes a full region copy first (the catch-up path
 *    of trimmed journals) and then ships.  Disable: the replicator stops
 *    shipping (its eligibility check), and jr_peers_release leaves a
 *    tombstone (FORMAT.md R-35), so the replicator deletes the replica in
 *    the peer region once the link is up (unless it was promoted
 *    meanwhile: then it is kept), and drops the acks (the journal is no
 *    longer kept for the peer).
 *  - Promote / Demote / Resync are the replicator's own operations
 *    (tandemctl promote|demote|resync): they run under the volume's
 *    op_lock there, against batches being applied, so the controller asks
 *    the admin API of its region's replicator (csi_addons_opts.admin_addr;
 *    TCP with the admin identity's mutual TLS, or the admin unix socket).
 *  - GetVolumeReplicationInfo reads the replicator's own figures (admin
 *    Status), so it reports what `tandemctl status` reports
 *    (csi_addons_sync_info: the one place that turns them into the
 *    answer).
 * Every call acts on the copy in this controller's region (--region):
 * the csi-addons sidecar of region b's cluster drives b's copy.
 *
 * Status codes follow replication.README.md's tables: INVALID_ARGUMENT
 * for a missing replication_source / volume_id and bad parameters;
 * NOT_FOUND when this region has no such volume; FAILED_PRECONDITION when
 * the volume is not replicated (Promote, Demote, Resync, GetInfo,
 * GetDestination), is not demoted (Resync), is not primary (GetInfo),
 * cannot be promoted without force; ABORTED for a call on a volume with
 * one in flight (shared with the CSI controller's set), for a Demote
 * whose drain to the peer is not finished yet, and for a Promote of a
 * primary the replicator is fencing right now (retry); a volumegroup
 * source: UNIMPLEMENTED where the table has it (Promote, Demote, Resync,
 * GetInfo, GetDestination), INVALID_ARGUMENT for Enable / Disable (their
 * tables have no UNIMPLEMENTED); UNAVAILABLE when the store or the
 * replicator's admin API cannot be reached.  Repeats are OK:
 * Enable/Disable in the state asked for, Promote of a primary, Demote of
 * a secondary.  Resync runs in the background: ready=false while it runs,
 * ready=true once the copy is a secondary of the peer's primary.
 *
 * Threads: handlers run concurrently (rpc.h); the admin client is shared.
 * Errors: 0 or a negative errno; create writes one line into err.
 */
#ifndef TANDEM_CSI_ADDONS_H
#define TANDEM_CSI_ADDONS_H

#include <stddef.h>

#include "csi.h"
#include "rpc.h"

/* VolumeReplicationClass parameters. */
#define CSI_ADDONS_MIRRORING_MODE "mirroringMode"   /* "journal" only */
#define CSI_ADDONS_SCHED_INTERVAL "schedulingInterval" /* accepted, unused:
                                   journal mode ships continuously */
#define CSI_ADDONS_PEER_REGION "peerRegion"         /* optional */

struct csi_addons_opts {
    const char *admin_addr;      /* region's replicator admin API:
                                    "unix:///path" or "host:port" (mTLS) */
    const char *tls_ca, *tls_cert, *tls_key; /* TCP: the admin identity */
    int admin_timeout_ms;        /* per admin call (0: 30000) */
};

typedef struct csi_addons csi_addons;

/* svc is borrowed (must outlive the addons service). */
int csi_addons_create(csi_service *svc, const struct csi_addons_opts *o,
                      csi_addons **out, char *err, size_t errlen);
/* Waits up to 5 s for background resyncs; NULL: no-op. */
void csi_addons_destroy(csi_addons *a);
/* The methods of the addons endpoint (static); serve them with the
 * csi_addons as the rpc server's svc. */
const struct rpc_method *csi_addons_methods(size_t *n);

/* ---- volumegroup.Controller (csi_addons_vg.c) ---- */
/* The CSI service the addons endpoint works for (svc: the csi_addons). */
csi_service *csi_addons_service(void *svc);
int csi_addons_vg_create(void *svc, rpc_ctx *ctx, const ProtobufCMessage *req,
                         ProtobufCMessage **resp);
int csi_addons_vg_modify(void *svc, rpc_ctx *ctx, const ProtobufCMessage *req,
                         ProtobufCMessage **resp);
int csi_addons_vg_delete(void *svc, rpc_ctx *ctx, const ProtobufCMessage *req,
                         ProtobufCMessage **resp);
int csi_addons_vg_get(void *svc, rpc_ctx *ctx, const ProtobufCMessage *req,
                      ProtobufCMessage **resp);
int csi_addons_vg_list(void *svc, rpc_ctx *ctx, const ProtobufCMessage *req,
                       ProtobufCMessage **resp);

/* ---- exposed for tests ---- */
/* Check VolumeReplicationClass parameters for a volume of `region`;
 * peer gets the peer region (peerRegion, else rg_default_peer).
 * -EINVAL with err naming the key. */
int csi_addons_params(const struct rg_config *cfg, const char *region,
                      size_t n, struct csi_mapent *const *ents, char *peer,
                      size_t peerlen, char *err, size_t errlen);

#endif /* TANDEM_CSI_ADDONS_H */
