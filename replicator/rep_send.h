/*
 * rep_send.h: the senders (rep_send.c: the sender thread and its
 * pipelining; rep_copy.c: its region-copy step).  rep_core.c's scanner
 * starts them (rep__sender_ensure); everything else here is shared by
 * the two files only.
 */
#ifndef TANDEM_REP_SEND_H
#define TANDEM_REP_SEND_H

#include "rep_int.h"

/* Start the volume's sender thread unless one runs (the scanner calls it
 * for every volume rep__eligible says this replicator ships). */
void rep__sender_ensure(rep_ctx *r, struct rep_vol *v);

/* Read-ahead: while batch k is in flight (the peer applying it), a helper
 * thread reads and compresses batch k+1, so journal reads overlap the
 * remote apply.  Only reads are overlapped: batches are still shipped one
 * at a time, in order, each after the previous answer. */
struct prefetch {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int started, stop;
    int pending;            /* a read of `from` is queued or running */
    int ready;              /* its result is below */
    uint64_t from;
    int rc;
    struct jr_batch b;
    void *cbuf;             /* LZ4 of b.data (NULL: not worth it) */
    size_t clen;
};

struct flight;              /* a ShipBatch call on its own thread */

/* What one move of a sender came to.  sender_probe, sender_step and
 * rep__sender_copy each return some of these (as said at each);
 * sender_main decides what follows. */
enum send_res {
    SEND_READY,         /* probe, copy: the peer's position is known
                           (s->next): ship from there */
    SEND_IDLE,          /* step: nothing new to ship */
    SEND_SHIPPED,       /* step: a batch was answered (or is to be sent
                           again at once): step again */
    SEND_EXIT,          /* the sender must exit (fenced, stepped down) */
    SEND_RETRY,         /* failed: back off, then try again */
    SEND_REFUSED,       /* probe: a refusal was handled and waited out:
                           probe again without backing off */
    SEND_NO_REPLICA,    /* probe: no replica, and the journal no longer
                           starts at seq 1: full copy */
    SEND_TRIMMED,       /* step: the journal no longer holds s->next:
                           region copy */
};

/* Per-sender state while the thread runs. */
struct sender {
    rep_ctx *r;
    struct rep_vol *v;
    uint64_t next;          /* next seq to ship (0: ask the peer) */
    uint64_t epoch;
    int backoff_ms;
    int64_t last_trim_ms;   /* tb_mono_ms */
    uint64_t copy_until;    /* peer is in a copy window until this seq */
    uint64_t promoted_at;   /* REP_META_PROMOTED_AT at this epoch */
    int copy_again;         /* the peer holds an unfinished copy */
    struct prefetch pf;
    struct flight *ahead;   /* the next batch, already on its way */
    int pipe_slot;          /* holds one of REP_PIPE_SLOTS */
    struct rep_health_rec health; /* REP_META_HEALTH as last recorded
                                     (this thread is its only writer) */
};

/* Byte ranges as protobuf Regions (a copy's list, a batch's touched
 * ranges).  rep__regs_add merges with the previous range when adjacent
 * (add in offset order); rep__regs_normalize sorts and merges any. */
struct rep_regs {
    Tandem__Repl__V1__Region *a;
    size_t n, cap;
};
int rep__regs_add(struct rep_regs *g, uint64_t off, uint64_t len);
int rep__regs_cb(uint64_t off, uint64_t len, void *arg); /* arg: regs */
int rep__regs_normalize(struct rep_regs *g);

/* ---- rep_send.c ---- */
/* Take n bytes from the link budget (--max-bandwidth), sleeping as
 * needed. */
void rep__bucket_take(rep_ctx *r, size_t n);
/* Record the peer's applied position (and the bytes of the exchange). */
void rep__note_ack(struct sender *s, uint64_t applied, size_t wire,
                   uint64_t raw);
/* Handle a STALE_EPOCH or SPLIT_BRAIN refusal.  It fences or steps down
 * this copy only if the peer's copy is primary (resp->role) at a higher
 * epoch; any other refusal is reported and retried.  Returns 1 if the
 * sender must exit. */
int rep__sender_refused(struct sender *s,
                        const Tandem__Repl__V1__ShipBatchResponse *resp);

/* ---- rep_announce.c ---- */
/* Heartbeats (ShipBatchRequest.heartbeat): every 50 ms while the peer
 * has not acknowledged the head (1 s otherwise), for every volume whose
 * sender runs, its head and head timestamp, on r->peer_ann (a connection
 * of its own, so they never wait behind batches on a slow link): the
 * secondary's RPO is measured against them.  One thread; rep_start
 * starts it, rep_destroy joins it (it exits once r->stopping is set). */
#define REP_ANNOUNCE_LAG_MS 50
#define REP_ANNOUNCE_IDLE_MS 1000
#define REP_ANNOUNCE_TIMEOUT_MS 1000
void *rep__announcer_main(void *arg);
/* Record the volume's replication health (REP_META_HEALTH): a store
 * write only when the state changes (rep__health_set). */
void rep__sender_health(struct sender *s, enum rep_health h,
                        const char *text);

/* ---- rep_copy.c ---- */
/* Bring the peer current by copying image regions: the dirty map, or
 * (full) the whole image.  Returns SEND_READY (shipping resumes at
 * s->next), SEND_EXIT or SEND_RETRY. */
enum send_res rep__sender_copy(struct sender *s, int full);

#endif /* TANDEM_REP_SEND_H */
