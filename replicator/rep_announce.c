/*
 * rep_announce.c: the announcer, one thread per replicator: it tells the
 * peer the head (and head timestamp) of every volume this replicator
 * ships, in heartbeats between the batches (rep_send.h).
 *
 * Why a thread of its own: a batch on a slow link takes seconds to
 * arrive, and the head it carries is as old as its read; the
 * secondary's RPO (rep_int.h struct rep_rpo) is only as good as the
 * newest announcement it got, and the senders are busy waiting for
 * their batches' answers.  Without heartbeats, tests/e2e/t0350-rpo-lag.sh
 * shows the bug again (b: RPO 0 while 4.5 s behind).
 *
 * Why a connection of its own (r->peer_ann): on the senders' connection
 * a heartbeat waits behind whatever batch bytes are queued in the socket
 * (HTTP/2 flow control keeps that to about one window, which grows with
 * the link's bandwidth-delay product) and behind any TCP retransmission
 * of them (head-of-line blocking); on its own connection, over a link
 * that shares bandwidth fairly between connections (fq_codel, the Linux
 * default), it waits a packet time or two.  (Measured on t0350's 256
 * KiB/s proxy, both kept the RPO within 0.1 s: the own connection is
 * the margin for deeper queues and lossy links.)
 *
 * Heartbeats are passive: the receiver only records them (rep_link.c
 * heartbeat()); the senders' probes and batches decide everything else.
 *
 * Limit: calls are made one after another.  With many lagging volumes
 * on a long link a round takes (volumes x round trip), and the
 * announcements age by as much; one call carrying every volume's head
 * would lift that (a new Link method).
 */
#include <errno.h>
#include <stdlib.h>

#include "rep_send.h"
#include "tbase.h"
#include "tlog.h"

/* One heartbeat of one volume; returns the delay until the next one. */
static int announce(rep_ctx *r, struct rep_vol *v)
{
    struct jr_info info;
    if (jr_volume_stat(r->st, v->id, &info) < 0) return REP_ANNOUNCE_IDLE_MS;
    pthread_mutex_lock(&v->mu);
    uint64_t acked = v->acked;
    int refused = v->peer_split || v->peer_stale;
    pthread_mutex_unlock(&v->mu);
    if (refused || !info.head) return REP_ANNOUNCE_IDLE_MS;
    Tandem__Repl__V1__ShipBatchRequest req =
        TANDEM__REPL__V1__SHIP_BATCH_REQUEST__INIT;
    req.volume_id = v->id;
    req.from_region = r->region;
    req.epoch = info.epoch;
    /* A sender runs only for a primary or a draining copy. */
    req.from_primary = 1;
    req.heartbeat = 1;
    req.primary_head = info.head;
    req.head_ts_ns = info.head_ts_ns;
    ProtobufCMessage *out = NULL;
    char msg[256];
    rpc_client_call(r->peer_ann, "/tandem.repl.v1.Link/ShipBatch", &req.base,
                    &tandem__repl__v1__ship_batch_response__descriptor, &out,
                    REP_ANNOUNCE_TIMEOUT_MS, 0, msg, sizeof(msg));
    /* The answer changes nothing here: a failed heartbeat is simply the
     * link being down, which the sender reports. */
    if (out) protobuf_c_message_free_unpacked(out, NULL);
    return info.head > acked ? REP_ANNOUNCE_LAG_MS : REP_ANNOUNCE_IDLE_MS;
}

void *rep__announcer_main(void *arg)
{
    rep_ctx *r = arg;
    struct rep_vol **due = NULL;
    size_t cap = 0;
    while (!__atomic_load_n(&r->stopping, __ATOMIC_ACQUIRE)) {
        int64_t now = tb_mono_ms(), wake = now + REP_ANNOUNCE_LAG_MS;
        size_t n = 0;
        /* Entries are never freed while the process runs: the pointers
         * stay valid after the table's lock is dropped. */
        pthread_mutex_lock(&r->vol_mu);
        for (struct rep_vol *v = r->vols; v; v = v->next) {
            pthread_mutex_lock(&v->mu);
            int run = v->thr_running && !v->stop;
            int go = run && now >= v->ann_next_ms;
            if (run && !go && v->ann_next_ms < wake) wake = v->ann_next_ms;
            pthread_mutex_unlock(&v->mu);
            if (!go) continue;
            if (n == cap) {
                size_t c = cap ? 2 * cap : 16;
                void *p = realloc(due, c * sizeof(*due));
                if (!p) break;
                due = p;
                cap = c;
            }
            due[n++] = v;
        }
        pthread_mutex_unlock(&r->vol_mu);
        for (size_t i = 0; i < n; i++) {
            if (__atomic_load_n(&r->stopping, __ATOMIC_ACQUIRE)) break;
            /* Due a period after this one began, not after it ended:
             * the announcements' age is what the RPO's error is. */
            int64_t t0 = tb_mono_ms();
            int next = announce(r, due[i]);
            pthread_mutex_lock(&due[i]->mu);
            due[i]->ann_next_ms = t0 + next;
            if (t0 + next < wake) wake = t0 + next;
            pthread_mutex_unlock(&due[i]->mu);
        }
        int64_t ms = wake - tb_mono_ms();
        if (ms < 1) ms = 1;
        struct timespec ts = tb_deadline(CLOCK_MONOTONIC, (int)ms);
        pthread_mutex_lock(&r->stop_mu);
        if (!r->stopping) pthread_cond_timedwait(&r->stop_cv, &r->stop_mu, &ts);
        pthread_mutex_unlock(&r->stop_mu);
    }
    free(due);
    return NULL;
}
