/*
 * rep.h: the replication engine behind tandem-replicator (librep.a).
 *
 * One rep_ctx per process and region.  It
 *  - ships: for every PRIMARY volume of its region whose metadata says
 *    replication=async and whose peer region is opts->peer_region, a
 *    sender thread tails the journal from the peer's applied position and
 *    ships batches (LZ4-compressed as a whole only when that pays: the
 *    journal's own entry compression is not done again, rep__lz4_batch)
 *    over the Link service
 *    (proto/tandem_repl.proto) to the peer's replicator; on each answer it
 *    records the peer's acknowledgement (jr_peer_ack_set) and trims.  With
 *    a backlog two batches are in flight (the next travels while the peer
 *    applies this one); the receiver holds a batch that overtook its
 *    predecessor until that one is applied, so order never depends on
 *    the transport;
 *  - receives: the Link service creates secondaries on first contact and
 *    applies batches in order (jr_apply); it refuses stale epochs and never
 *    overwrites a local primary (split-brain guard);
 *  - authorizes: the link serves only the peer region's replicator, known
 *    by its certificate's URI SAN (spiffe://TD/tandem/region/NAME, never a
 *    request field), and only on volumes replicated with it; the sender
 *    dials only a server with that identity; a primary is fenced only by
 *    a peer copy that is primary at a higher epoch; the admin API takes
 *    the admin identity on TCP (spiffe://TD/tandem/admin) and relies on
 *    the 0600 mode of its unix socket (rep_link.c, rep_admin.c);
 *  - catches up: a volume whose journal passed its cap (JR_ETRIMMED) is
 *    brought current by copying its dirty regions (CopyRegions); the
 *    receiver saves the old bytes of each region first (undo), so a
 *    promote in the middle rolls back to the last consistent position;
 *  - consistency groups (rep_group.c; DESIGN.md "Consistency groups"):
 *    takes the consistency points of the groups whose members are primary
 *    here (every TANDEM_CG_INTERVAL_MS, 250 ms; members held at most
 *    TANDEM_CG_HOLD_MS, 200 ms), keeps the replicas of a group's members
 *    applied only up to the newest cut complete on all of them (they
 *    journal everything and acknowledge their journal head), and lands
 *    every member on that cut before any is promoted;
 *  - serves the Admin service (proto/tandem_admin.proto: status, promote,
 *    demote, failover, resync, and for a damaged journal check and the
 *    operator-confirmed discard of its tail, after which a replicated
 *    primary copies its whole image to the peer) and a Prometheus text
 *    endpoint.
 *
 * Volume metadata keys it reads (set by the CSI controller, csi/csi.h):
 * REP_META_REPLICATION ("async" to replicate) and REP_META_PEER_REGION;
 * for volumes made by other tools the bare StorageClass names
 * ("replication", "peerRegion") are accepted too.  Keys it writes start
 * with "rep." and are never shipped to the peer; so do the markers of a
 * region copy's window, which the journal keeps (jr.h jr_copywin_*).  A
 * copy whose peer region names its own region (the replica) replicates
 * with the region it came from (REP_META_PEER).
 *
 * Errors: 0 or a negative errno; rep_create writes one line into err.
 * Threads: rep_start starts the scanner, senders, gRPC servers and the
 * metrics thread; rep_destroy stops and joins them all (SIGTERM path).
 */
#ifndef TANDEM_REP_H
#define TANDEM_REP_H

#include <stddef.h>
#include <stdint.h>

#define REP_META_REPLICATION "csi.replication"
#define REP_META_PEER_REGION "csi.peer_region"
#define REP_META_REPLICATION_ALT "replication"
#define REP_META_PEER_REGION_ALT "peerRegion"
/* Internal keys (never shipped). */
#define REP_META_PREFIX "rep."
#define REP_META_PEER "rep.peer"             /* region the copy came from */
#define REP_META_SPLIT "rep.split_brain"     /* fenced: why (one line) */
#define REP_META_DRAINING "rep.draining"     /* demoted, shipping the rest */
#define REP_META_PROMOTED_AT "rep.promoted_at" /* applied at promotion */
#define REP_META_RESYNC "rep.resync"         /* resync running */
#define REP_META_INSYNC_MS "rep.insync_ms"   /* (before rep.rpo; no longer
                                                written, not read) */
/* A secondary's RPO as of the primary's last call (rep_int.h struct
 * rep_rpo, rep__rpo_format): written at most once a second while calls
 * come in, at once when the RPO goes from 0 to not 0 or back, and on
 * shutdown; failover reports it after a restart too. */
#define REP_META_RPO "rep.rpo"
/* Replication health of a volume this replicator ships (header key
 * "meta.rep.health", journal/FORMAT.md §4), for the CSI controller's
 * ControllerGetVolume.  Value: "<state> <since> <peer> <text>": state one
 * of REP_HEALTH_* below; since the unix second that state began; peer the
 * peer region; text, to the end of the value, one line saying why (may
 * be empty).  Written by the volume's sender only, and only when the
 * state changes (a steady volume costs no write; a restarted replicator
 * reads the key first and keeps `since`); a change of the text alone is
 * not written.  States:
 *   ok          the last exchange with the peer worked;
 *   link-down   the peer could not be reached (RPC failure) since `since`:
 *               readers judge it by its age (a threshold);
 *   split-brain the peer refused as primary, or this copy was fenced by a
 *               newer promotion there: abnormal at once, an operator must
 *               resync one side;
 *   copying     a region copy runs (journal past its cap, or a new
 *               replica): the replica is not write-order consistent until
 *               it ends.
 * The key stays as last written when the copy stops being shipped (e.g.
 * it stepped down to secondary): readers check the role too.  Never
 * shipped to the peer (REP_META_PREFIX). */
#define REP_META_HEALTH "rep.health"
/* Snapshots and region copies.  Snapshots are journal entries (jr.h):
 * they ship with the journal untouched and the replica takes them at the
 * same positions.  A region copy (journal past its cap, or a replica made
 * from a primary whose journal no longer starts at 1) skips positions:
 * the snapshot entries among them never reach the replica, which then
 * lacks the snapshots taken there (it never held the image they stand
 * for, so they cannot be carried) and keeps those deleted there; and the
 * entries shipped after the copy, up to the primary's head at its end,
 * apply to an image that is no state the primary had, so snapshots they
 * take on the replica are not write-order consistent; a copy resynced
 * back to a common position keeps the snapshots it took past it, in a
 * history the primary does not share.  The replica records those
 * positions, "<first> <last>" (the widest range over all of them), and
 * status reports its snapshots as incomplete; the key goes with the
 * volume. */
#define REP_META_SNAP_GAP "rep.snap_gap"
#define REP_HEALTH_OK "ok"
#define REP_HEALTH_LINK_DOWN "link-down"
#define REP_HEALTH_SPLIT_BRAIN "split-brain"
#define REP_HEALTH_COPYING "copying"

typedef struct rep_ctx rep_ctx;

struct rep_opts {
    const char *config_path;  /* region map (journal/regions.h) */
    const char *region;       /* this region */
    const char *peer_region;  /* the peer region */
    const char *listen_addr;  /* peer link listener, "host:port" */
    const char *peer_addr;    /* peer's link address (NULL: from config) */
    const char *admin_addr;   /* "unix:///path" (NULL: none) */
    const char *admin_tcp;    /* "host:port" with mTLS (NULL: none) */
    const char *tls_ca, *tls_cert, *tls_key;
    const char *tls_server_name; /* name checked in the peer's cert */
    int insecure;             /* plaintext peer link (tests only) */
    /* Identities (URI SANs): spiffe://TD/tandem/region/NAME for a
     * region's replicator, spiffe://TD/tandem/admin for operators.  NULL:
     * "tandem.local". */
    const char *trust_domain;
    /* Admin TCP's mutual TLS (NULL: the link's tls_ca / tls_cert /
     * tls_key); always TLS, whatever `insecure` says.  Every call there
     * must come from the admin identity. */
    const char *admin_tls_ca, *admin_tls_cert, *admin_tls_key;
    /* Permission bits of the admin unix socket (0: 0600).  The file mode
     * is its only access control (no peer credentials through gRPC). */
    unsigned admin_socket_mode;
    const char *metrics_addr; /* "host:port" (NULL: none) */
    uint64_t max_bandwidth;   /* bytes/s on the link (0: unlimited) */
    size_t batch_bytes;       /* max journal bytes per batch (0: 8 MiB) */
    int scan_ms;              /* volume scan period (0: 500 ms) */
    int no_compress;          /* ship uncompressed (benchmarks) */
};

/* Parse the config, open the region's store, prepare (not start).  On
 * error returns a negative errno and writes one line into err. */
int rep_create(const struct rep_opts *o, rep_ctx **out, char *err,
               size_t errlen);
/* Start listeners and threads.  Returns 0 or a negative errno (err). */
int rep_start(rep_ctx *r, char *err, size_t errlen);
/* Bound ports (after rep_start): the link and metrics TCP ports. */
int rep_link_port(const rep_ctx *r);
int rep_metrics_port(const rep_ctx *r);
/* Stop everything, join threads, close the store, free.  NULL: no-op. */
void rep_destroy(rep_ctx *r);

#endif /* TANDEM_REP_H */
