/*
 * rep_int.h: the replicator's base layer, which every file of it may use:
 * the context, the volume table and status snapshot (rep_vol.c), volume
 * metadata (rep_meta.c) and the LZ4 helpers (rep_lz4.c).  It declares
 * nothing of the files above it.  Not a contract: see rep.h.
 *
 * The files and who may call whom (an arrow: includes the header of):
 *
 *   rep_core.c     context, scanner, create/start/destroy: wires the
 *        |         services below and calls nothing but their entry
 *        |         points; nothing calls into it
 *        +--> rep_metrics.c (rep_metrics.h)  /metrics: reads a snapshot
 *        +--> rep_admin.c   (rep_admin.h)    admin service: reads
 *        |         snapshots, changes roles  --> rep_link.h (peer calls);
 *        |    rep_admin_resync.c             its Resync (delta copy)
 *        |    rep_admin_journal.c            its damaged-journal calls
 *        +--> rep_send.c, rep_copy.c (rep_send.h)  senders, catch-up
 *        |                                   --> rep_link.h (peer calls)
 *        +--> rep_link.c, rep_link_vol.c (rep_link.h)  link service
 *        +--> rep_announce.c (rep_send.h)  heartbeats: the head of every
 *        |                                 shipping volume, to the peer
 *        +--> rep_group.c   (this header)  consistency groups: points,
 *        |                                 the replicas' gate, landing
 *        +--> rep_peer.c    (rep_link.h)     calls to the peer's link
 *   all of them --> rep_int.h (this: rep_vol.c, rep_meta.c, rep_lz4.c)
 *               --> journal/jr.h (the volumes themselves)
 *
 * Status and /metrics never read the volume table or the context's
 * fields themselves: they take a snapshot (rep__snapshot), copied under
 * each volume's lock.
 */
#ifndef TANDEM_REP_INT_H
#define TANDEM_REP_INT_H

#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "jr.h"
#include "regions.h"
#include "replicator/rep.h"
#include "rpc.h"
#include "store.h"
#include "tandem_admin.pb-c.h"
#include "tandem_repl.pb-c.h"
#include "tbase.h"

#define REP_MAX_MSG (64u << 20)   /* largest gRPC message we send */
#define REP_MAX_RAW (64u << 20)   /* largest decompressed batch accepted */
#define REP_COPY_CHUNK (1u << 20) /* bytes per region in a copy */
#define REP_COPY_CALL (8u << 20)  /* bytes of regions per CopyRegions call */
#define REP_SHIP_TIMEOUT_MS 30000
#define REP_PROBE_TIMEOUT_MS 5000
/* Senders with a backlog that may read ahead and keep a second batch in
 * flight at once (each holds up to ~6 batches of memory then: current,
 * next, read-ahead, raw and LZ4); the others ship one batch at a time.
 * Bounds the replicator's memory when many volumes catch up together. */
#define REP_PIPE_SLOTS 2
/* Longest identity URI (spiffe://TD/tandem/...) the replicator handles. */
#define REP_MAX_ID_URI 320
#define REP_MAX_TRUST_DOMAIN 200

/* A volume's link state, as status and /metrics show it: rep__link_name
 * gives the text they print (tandemctl, the tests and dashboards read
 * it).  Senders set the first ones, the receiver RECEIVING; status turns
 * a replica's into RECEIVING or IDLE by the time since the last batch. */
enum rep_link {
    REP_LINK_KEEP = -1,         /* rep__vol_state: leave it unchanged */
    REP_LINK_NONE = 0,          /* "none": nothing exchanged yet */
    REP_LINK_UP,                /* "up": the last exchange worked */
    REP_LINK_DOWN,              /* "down": the last call failed */
    REP_LINK_BACKOFF,           /* "backoff": waiting to try again */
    REP_LINK_CATCHING_UP,       /* "catching-up": a region copy runs */
    REP_LINK_SPLIT_BRAIN,       /* "split-brain": fenced, not shipping */
    REP_LINK_STOPPED,           /* "stopped": the sender exited */
    REP_LINK_RECEIVING,         /* "receiving": batches came in lately */
    REP_LINK_IDLE,              /* "idle": nothing came in for a while */
    REP_LINK_PEER_STALE,        /* "peer-stale": the peer's copy is a
                                   fenced former primary (lower epoch):
                                   nothing shipped until it resyncs */
    REP_LINK_FENCED,            /* "fenced": this copy is a fenced former
                                   primary: nothing received until it
                                   resyncs */
};

/* What a volume copy is doing, as status shows it (rep__state_name: the
 * text printed).  Senders and the receiver set what they do; status adds
 * what it reads from the store (dirty tracking, draining, resync, fenced,
 * not replicated). */
enum rep_state {
    REP_ST_KEEP = -1,           /* rep__vol_state: leave it unchanged */
    REP_ST_NONE = 0,            /* nothing yet (status: "pending") */
    REP_ST_REPLICATING,         /* "replicating": a primary that ships */
    REP_ST_DRAINING,            /* "draining": demoted, shipping the rest */
    REP_ST_CATCHING_UP,         /* "catching-up": a region copy runs */
    REP_ST_SPLIT_BRAIN,         /* "split-brain": fenced */
    REP_ST_ERROR,               /* "error": see the last error */
    REP_ST_REPLICA,             /* "replica": a secondary, applying */
    REP_ST_COPYING,             /* "copying": a secondary in a region copy */
    REP_ST_PENDING,             /* "pending": a primary not shipping yet */
    REP_ST_DIRTY_TRACKING,      /* "dirty-tracking": journal cap reached */
    REP_ST_NOT_REPLICATED,      /* "not-replicated" */
    REP_ST_RESYNCING,           /* "resyncing": a resync is unfinished */
    REP_ST_PEER_MUST_RESYNC,    /* "peer-must-resync": a primary whose
                                   peer holds a stale former primary */
    REP_ST_MUST_RESYNC,         /* "must-resync": this copy is a fenced
                                   former primary (split brain) */
};

/* The secondary's view of how current it is (the RPO): the primary's
 * newest announcement (ShipBatchRequest.primary_head/head_ts_ns, the
 * primary's clock), the newest entry applied here and its timestamp (the
 * primary's clock, as stamped), and when the last call of the primary
 * arrived (this side's wall clock).  rep__rpo_s gives the RPO. */
struct rep_rpo {
    uint64_t epoch;             /* epoch of the announcement */
    uint64_t ann_head;          /* announced head (0: none yet) */
    int64_t ann_head_ts_ns;     /* its timestamp */
    uint64_t applied;           /* newest entry applied here */
    int64_t applied_ts_ns;      /* its timestamp (0: unknown) */
    int64_t link_up_ms;         /* last call of the primary (0: never) */
};
/* The RPO in seconds: 0 when applied >= ann_head (everything announced
 * is applied), else ann_head_ts_ns - applied_ts_ns (never below 0);
 * -1 when unknown (nothing announced, or the applied entry's time is
 * unknown while entries are missing).  Milliseconds count: nothing is
 * rounded. */
double rep__rpo_s(const struct rep_rpo *p);
/* Take an announcement (head, head_ts_ns at epoch) into p: the newest of
 * an epoch wins (calls travel on two connections and may arrive out of
 * order); a new epoch starts afresh.  Returns 1 if p changed. */
int rep__rpo_announce(struct rep_rpo *p, uint64_t epoch, uint64_t head,
                      int64_t head_ts_ns);
/* The persisted form (REP_META_RPO): "1 <epoch> <ann_head>
 * <ann_head_ts_ns> <applied> <applied_ts_ns> <link_up_ms>".  Parse:
 * 0, or -EINVAL (anything else: p untouched). */
int rep__rpo_format(const struct rep_rpo *p, char *buf, size_t size);
int rep__rpo_parse(const char *s, struct rep_rpo *p);

/* Per-volume state.  Entries are created on first sight and freed only by
 * rep_destroy, so a pointer from the table stays valid for the process.
 * op_lock serialises operations that change the local copy (apply, copy
 * chunk, promote, demote, resync); mu guards the fields below it. */
struct rep_vol {
    char id[JR_MAX_ID + 1];
    pthread_mutex_t op_lock;
    pthread_mutex_t mu;
    pthread_cond_t cv;          /* sender wakeups, acked changes
                                   (CLOCK_MONOTONIC: tb_deadline) */
    /* sender thread */
    pthread_t thr;
    int thr_joinable;           /* a thread was started and not joined */
    int thr_running;            /* cleared by the thread when it exits */
    int stop;                   /* ask the sender to exit */
    /* figures (primary side) */
    enum rep_link link_state;
    enum rep_state state;
    char last_error[256];
    uint64_t acked;             /* peer's applied, as last answered */
    int64_t oldest_unacked_ns;  /* ts of entry acked+1 (0: unknown) */
    int64_t last_sync_ms;       /* last successful exchange (wall) */
    uint64_t wire_bytes, raw_bytes, batches;
    struct tb_meter meter;      /* payload bytes/s (tb_mono_ms) */
    int peer_split;             /* peer refused: it is primary at our
                                   epoch (a real split brain; retrying) */
    int peer_stale;             /* peer refused: its copy is a fenced or
                                   stale former primary (lower epoch)
                                   that must resync (retrying) */
    int copy_active;            /* catch-up copy running (sender side) */
    int64_t ann_next_ms;        /* next heartbeat due (mono; announcer) */
    /* receiver side: the RPO (struct rep_rpo; persisted as
     * REP_META_RPO at most once a second, and at once when it goes from
     * 0 to not 0 or back) */
    struct rep_rpo rpo;
    int rpo_loaded;             /* rpo read from the store (or tried) */
    int64_t rpo_saved_ms;       /* last time rpo was persisted (mono) */
    int rpo_saved_zero;         /* its RPO was 0 then */
    int64_t rx_trim_ms;         /* last trim of the replica's journal (mono) */
    int rx_calls;               /* ShipBatch calls in the handler now */
    int rx_waiting;             /* ... of which wait for a predecessor */
    uint64_t rx_gen;            /* bumped (and cv broadcast) whenever a
                                   waiting batch should look again */
    /* Consistency groups (rep_group.c), receiver side: a member's image
     * is applied only up to gate_pos, its position at the group's newest
     * complete cut; entries past it are journaled (jr_apply_limit).
     * Under op_lock. */
    int grp_checked;            /* membership read (once per process) */
    int grouped;
    uint64_t gate_pos;
    struct rep_vol *next;
};

struct rep_bucket {             /* --max-bandwidth token bucket */
    pthread_mutex_t mu;
    uint64_t rate;              /* bytes/s (0: unlimited) */
    double tokens;
    int64_t last_ns;
};

/* A consistency group as this region sees it (rep_group.c), for status
 * and /metrics; REP_MAX_GROUPS of them at most. */
#define REP_MAX_GROUPS 32
#define REP_PAUSE_SAMPLES 1024
struct rep_group {
    char name[JR_MAX_GROUP_ID + 1];
    int n_members;
    int primary;                /* 1: members are primary here (we cut) */
    uint64_t cut;               /* newest complete cut (secondary: applied) */
    int64_t cut_ts_ns;          /* its mark's timestamp (primary's clock) */
    double rpo_s;               /* secondary: newest announced head time
                                   of the members minus cut_ts (-1:
                                   unknown) */
    uint64_t points, complete, abandoned;
    int64_t pause_ns[REP_PAUSE_SAMPLES]; /* ring of recent pauses */
    uint64_t n_pause;
};

struct rep_ctx {
    struct rep_opts o;          /* strings below are owned copies */
    char region[RG_MAX_NAME + 1];
    char peer_region[RG_MAX_NAME + 1];
    char peer_addr[256];
    struct rg_config *cfg;
    st_store *st;
    rpc_client *peer;           /* link client (shared by senders) */
    rpc_client *peer_ann;       /* heartbeats: a connection of its own */
    rpc_server *link_srv;
    rpc_server *admin_srv;      /* admin API on the unix socket */
    rpc_server *admin_tcp_srv;  /* admin API on TCP (mTLS, admin identity) */
    /* Identities (URI SANs) from --trust-domain: a region's replicator is
     * id_region_prefix + its region name, an operator id_admin. */
    char id_region_prefix[REP_MAX_ID_URI];
    char id_admin[REP_MAX_ID_URI];
    int link_port;
    /* volume table */
    pthread_mutex_t vol_mu;
    struct rep_vol *vols;
    /* threads */
    pthread_t scan_thr;
    int scan_started;
    pthread_mutex_t stop_mu;
    pthread_cond_t stop_cv;
    int stopping;
    struct rep_bucket bucket;
    /* senders holding a read-ahead/pipelining slot (REP_PIPE_SLOTS) */
    int pipe_used;
    /* peer link health: written by the scanner (Hello), read by the
     * snapshot; atomic (__atomic_*) */
    int peer_up;
    /* metrics */
    int metrics_fd;
    int metrics_port;
    pthread_t metrics_thr;
    int metrics_started;
    pthread_t ann_thr;          /* the announcer (rep_announce.c) */
    int ann_started;
    /* consistency groups (rep_group.c): grp_mu guards groups[] and
     * serialises landing a group on its cut at failover */
    pthread_t grp_thr;
    int grp_started;
    pthread_mutex_t grp_mu;
    int grp_news;               /* a grouped replica received a commit
                                   entry: look for a new cut (atomic) */
    struct rep_group groups[REP_MAX_GROUPS];
    int n_groups;
};

/* A plain snapshot of one volume's figures (admin Status and /metrics). */
struct rep_vstat {
    char id[JR_MAX_ID + 1];
    struct jr_info info;
    char peer_region[RG_MAX_NAME + 1];
    char replication[32];
    uint64_t acked;
    uint64_t lag_entries, lag_bytes;
    double lag_s;
    int64_t last_sync_ms;
    double rate, ratio;
    enum rep_link link_state;
    enum rep_state state;
    char last_error[256];
    int split_brain;
    int copy_active;
    double applied_age_s;       /* secondary: = rpo_s (older clients) */
    double rpo_s;               /* the RPO (VolumeStatus.rpo_seconds) */
    struct rep_rpo rpo;         /* secondary: what rpo_s is made of */
    int peer_must_resync, must_resync;
    uint64_t wire_bytes, raw_bytes, batches;
    uint32_t n_snaps;           /* snapshots this copy holds */
    uint64_t snap_gap_first, snap_gap_last; /* REP_META_SNAP_GAP (0 0:
                                   none): positions a region copy skipped */
};

/* A snapshot of the replicator for the admin status and /metrics: what
 * they show, copied by rep__snapshot (each volume's figures under its
 * lock), so neither reads the context or the volume table itself. */
struct rep_snap {
    char region[RG_MAX_NAME + 1];
    char peer_region[RG_MAX_NAME + 1];
    int peer_up;                /* the peer answered the last Hello */
    int64_t now_ms;             /* wall clock when it was taken */
    struct rep_vstat *vols;     /* n volumes (malloc'd) */
    size_t n;
};

/* A malloc'd copy of s ("" for NULL), for protobuf response strings. */
static inline char *rep__sdup(const char *s) { return strdup(s ? s : ""); }

/* Copy a string, truncating to size (always NUL-terminated). */
static inline void rep__scpy(char *d, size_t size, const char *s)
{
    size_t n = strlen(s);
    if (n >= size) n = size - 1;
    memcpy(d, s, n);
    d[n] = 0;
}

/* ---- rep_group.c: consistency groups ---- */
/* The thread: cuts the groups whose members are primary here every
 * TANDEM_CG_INTERVAL_MS (250), and advances the gate of the groups whose
 * members are replicas here. */
void *rep__group_main(void *arg);
/* Receiver: read v's membership once, and learn it from a batch's marks
 * when the replica does not know it yet (v->op_lock held). */
void rep__group_check(rep_ctx *r, struct rep_vol *v,
                      const struct jr_info *info, const void *data,
                      size_t len);
/* Failover of a grouped replica: land every replica member of its group
 * on the newest complete cut (idempotent).  0, or an error (msg). */
int rep__group_land(rep_ctx *r, const char *id, char *msg, size_t msz);
/* Copy of the group table (status, /metrics): n returned. */
int rep__group_snapshot(rep_ctx *r, struct rep_group *out, int max);
/* p-quantile of a group's recent pauses, ms. */
double rep__group_pause_q(const struct rep_group *g, double q);

/* ---- rep_vol.c: the volume table and status snapshots ---- */
/* Find or create the table entry of a volume (NULL: out of memory). */
struct rep_vol *rep__vol_get(rep_ctx *r, const char *id);
/* The text of a link state ("?" for none of them). */
const char *rep__link_name(enum rep_link l);
const char *rep__state_name(enum rep_state st);
/* Set a volume's link state (REP_LINK_KEEP: unchanged), state
 * (REP_ST_KEEP: unchanged) and last error (NULL: unchanged). */
void rep__vol_state(struct rep_vol *v, enum rep_link link,
                    enum rep_state state, const char *err);
/* Wake a volume's sender (after a role change). */
void rep__kick(rep_ctx *r, struct rep_vol *v);
/* Sleep up to ms unless stopping or kicked.  Returns 1 if stopping. */
int rep__vol_wait(rep_ctx *r, struct rep_vol *v, int ms);
/* Ask the volume's sender to exit (the copy is not ours to ship now). */
void rep__vol_stop(struct rep_vol *v);
/* The copy became primary here with the peer at acked: forget the
 * sender's refusals and errors. */
void rep__vol_promoted(struct rep_vol *v, uint64_t acked);
/* A volume's RPO figures (secondary side): as the primary's last call
 * left them, read from the store (REP_META_RPO) after a restart. */
void rep__vol_rpo(rep_ctx *r, struct rep_vol *v, struct rep_rpo *out);
/* One volume's figures, as in a snapshot. */
void rep__vol_status(rep_ctx *r, const char *id, struct rep_vstat *out);
/* A snapshot of the n volumes named by ids, in that order, or (ids NULL)
 * of every volume of the region, in id order.  0, or a negative errno
 * (listing failed, out of memory) with *out empty.  Free with
 * rep__snapshot_free. */
/* A growable list of volume ids (malloc'd strings).  rep__idlist_all
 * fills it with every volume of the region, sorted (after a failure it
 * holds what was listed so far); free with rep__idlist_free either way. */
struct rep_idlist {
    char **a;
    size_t n, cap;
};
int rep__idlist_add(struct rep_idlist *l, const char *id);
int rep__idlist_all(rep_ctx *r, struct rep_idlist *l);
void rep__idlist_free(struct rep_idlist *l);
int rep__snapshot(rep_ctx *r, char *const *ids, size_t n,
                  struct rep_snap *out);
void rep__snapshot_free(struct rep_snap *s);

/* ---- rep_meta.c: volume metadata ---- */
/* 1 if the volume should be shipped by this replicator now, 0 if not, or
 * a negative errno (its metadata could not be read: decide later). */
int rep__eligible(rep_ctx *r, const char *id, const struct jr_info *info);
/* The peer region of a volume copy into out ("" if not replicated): 0, or
 * a negative errno (out "": unknown, not "not replicated"). */
int rep__vol_peer(rep_ctx *r, const char *id, char *out, size_t size);
/* The same, and from the same read: if the copy is split-fenced, why
 * (REP_META_SPLIT's value, "?" if empty) in split, else "" (split may be
 * NULL). */
#define REP_SPLIT_WHY 256
int rep__vol_peer_split(rep_ctx *r, const char *id, char *out, size_t size,
                        char split[REP_SPLIT_WHY]);
/* Meta helpers: get as string (malloc'd or NULL) / u64 (0 if absent). */
char *rep__meta(rep_ctx *r, const char *id, const char *key);
uint64_t rep__meta_u64(rep_ctx *r, const char *id, const char *key);
int rep__meta_set_u64(rep_ctx *r, const char *id, const char *key,
                      uint64_t v);
/* The volume's metadata as protobuf-c map entries of type desc (every
 * map<string,string> entry has the layout {base, key, value}): a malloc'd
 * array of *n malloc'd entries, as protobuf_c_message_free_unpacked frees
 * them (or rep__meta_entries_free).  Keys starting with skip_prefix are
 * left out (NULL: none).  0, or a negative errno with *out NULL, *n 0. */
int rep__meta_entries(rep_ctx *r, const char *id,
                      const ProtobufCMessageDescriptor *desc,
                      const char *skip_prefix, void ***out, size_t *n);
void rep__meta_entries_free(void **a, size_t n);
/* Set a secondary's positions: head = applied = seq, journal and dirty map
 * emptied (jr_replica_rebase at its current size).  Moving forward (seq >
 * applied: a region copy) also notes the skipped positions, moving back
 * (a resync) the positions of any snapshot this copy holds past seq
 * (rep__snap_gap_note). */
int rep__position_set(rep_ctx *r, const char *id, uint64_t seq);
/* Widen the replica's REP_META_SNAP_GAP (rep.h) to cover positions
 * [first, last]: its snapshots there are missing, or were taken while a
 * region copy left the image inconsistent.  No write when already
 * covered.  0 or a store error. */
int rep__snap_gap_note(rep_ctx *r, const char *id, uint64_t first,
                       uint64_t last);
/* The recorded range (0 0: none, or a value that does not parse). */
void rep__snap_gap_get(rep_ctx *r, const char *id, uint64_t *first,
                       uint64_t *last);
/* A VolumeSpec of a volume (size, object size, metadata without our own
 * "rep." keys) for creating its replica; free with rep__spec_free. */
struct rep_spec {
    Tandem__Repl__V1__VolumeSpec spec;
    void **ents;
    size_t n;
};
int rep__spec_make(rep_ctx *r, const char *id, const struct jr_info *info,
                   uint64_t start_seq, struct rep_spec *b);
void rep__spec_free(struct rep_spec *b);

/* ---- rep_meta.c: replication health (REP_META_HEALTH, rep.h) ---- */
enum rep_health {
    REP_H_UNKNOWN = 0,          /* not read or written yet */
    REP_H_OK,                   /* REP_HEALTH_OK */
    REP_H_LINK_DOWN,            /* REP_HEALTH_LINK_DOWN */
    REP_H_SPLIT_BRAIN,          /* REP_HEALTH_SPLIT_BRAIN */
    REP_H_COPYING,              /* REP_HEALTH_COPYING */
};
/* The health last recorded for one volume, kept by its one writer (the
 * sender thread): what makes a steady state cost no store write. */
struct rep_health_rec {
    enum rep_health state;      /* as recorded (UNKNOWN: read the key) */
    int64_t since;              /* unix seconds */
};
/* The text of a state ("" for REP_H_UNKNOWN). */
const char *rep__health_name(enum rep_health h);
/* Parse a REP_META_HEALTH value: 0 with *st, *since, peer (size bytes)
 * and *text (points into val: the rest of the line, may be "") filled,
 * or -EINVAL (unknown state, missing or non-numeric fields).  Any out
 * pointer may be NULL. */
int rep__health_parse(const char *val, enum rep_health *st, int64_t *since,
                      char *peer, size_t size, const char **text);
/* Record state st for volume id: writes REP_META_HEALTH (since = now)
 * only when st differs from h->state; the first call (h->state UNKNOWN)
 * reads the key, so a replicator that restarts in the same state keeps
 * its `since` and writes nothing.  text: one line (newlines become
 * spaces; cut at 200 bytes).  0, or a store error (h unchanged: the next
 * call tries again).  Not thread-safe per h: one writer per volume. */
int rep__health_set(rep_ctx *r, const char *id, struct rep_health_rec *h,
                    enum rep_health st, const char *text);

/* ---- rep_lz4.c ---- */
/* LZ4: compress src into a malloc'd buffer if it saves >= 1/8;
 * returns 1 compressed, 0 not worth it, <0 error. */
int rep__lz4(const void *src, size_t len, void **out, size_t *out_len);
/* The same for a batch (jr_batch.data, entries as stored): 0 without a
 * full pass when the entries' payloads are mostly LZ4 already or
 * a sample of the plain ones does not compress.  Compress once: the
 * journal's compression is kept, the batch is not compressed again. */
int rep__lz4_batch(const void *data, size_t len, void **out, size_t *out_len);
/* Full LZ4 passes rep__lz4 made in this process so far (tests). */
uint64_t rep__lz4_passes(void);
/* Decompress exactly raw_len bytes (malloc'd). */
int rep__unlz4(const void *src, size_t len, size_t raw_len, void **out);

#endif /* TANDEM_REP_INT_H */
