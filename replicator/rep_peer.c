/*
 * rep_peer.c: calls to the peer's link that are not the sender's batches
 * and copies: Hello (the link's health, from the scanner), GetVolume (for
 * operator commands and fencing decisions) and one pass over this
 * region's tombstones (DeleteReplica, from the scanner).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rep_link.h"
#include "tlog.h"

#define R(x) TANDEM__REPL__V1__RESULT__RESULT_##x

int rep__peer_hello(rep_ctx *r, char *msg, size_t msz)
{
    Tandem__Repl__V1__HelloRequest req = TANDEM__REPL__V1__HELLO_REQUEST__INIT;
    req.region = r->region;
    req.peer_region = r->peer_region;
    req.version = "tandem-replicator 0.1";
    ProtobufCMessage *out = NULL;
    int code = rpc_client_call(r->peer, "/tandem.repl.v1.Link/Hello",
                               &req.base,
                               &tandem__repl__v1__hello_response__descriptor,
                               &out, REP_PROBE_TIMEOUT_MS, 0, msg, msz);
    if (out) protobuf_c_message_free_unpacked(out, NULL);
    return code == RPC_OK ? 0 : -ENOTCONN;
}


/* Operator commands (promote, resync) ask the peer through this.  It
 * waits for the link to be ready, up to its deadline: a channel still in
 * reconnect backoff (the peer restarted a moment ago, or started after
 * us) must not be reported as "peer unreachable". */
int rep__peer_getvol(rep_ctx *r, const char *id,
                     Tandem__Repl__V1__GetVolumeResponse **out, char *msg,
                     size_t msz)
{
    Tandem__Repl__V1__GetVolumeRequest req =
        TANDEM__REPL__V1__GET_VOLUME_REQUEST__INIT;
    req.volume_id = (char *)id;
    req.from_region = r->region;
    ProtobufCMessage *o = NULL;
    int code = rpc_client_call(r->peer, "/tandem.repl.v1.Link/GetVolume",
                               &req.base,
                               &tandem__repl__v1__get_volume_response__descriptor,
                               &o, REP_PROBE_TIMEOUT_MS, 1, msg, msz);
    *out = (Tandem__Repl__V1__GetVolumeResponse *)o;
    return code;
}


/* Sender side: one pass over this region's tombstones whose peer
 * is ours.  Fail-fast calls (the scanner must not stall on a dead link);
 * a tombstone stays until the peer gave a final answer. */
struct tomb_pass {
    rep_ctx *r;
    int64_t until_ms; /* the scanner has other work: a bounded pass */
};

static int tomb_cb(const struct jr_tomb *t, void *arg)
{
    struct tomb_pass *tp = arg;
    rep_ctx *r = tp->r;
    if (__atomic_load_n(&r->stopping, __ATOMIC_ACQUIRE) ||
        tb_mono_ms() >= tp->until_ms)
        return 1; /* the rest next time */
    int ours = 0;
    for (int i = 0; i < t->n_peers; i++)
        if (!strcmp(t->peers[i], r->peer_region)) ours = 1;
    if (!ours) return 0;
    Tandem__Repl__V1__DeleteReplicaRequest req =
        TANDEM__REPL__V1__DELETE_REPLICA_REQUEST__INIT;
    req.volume_id = (char *)t->vol_id;
    req.from_region = r->region;
    req.epoch = t->epoch;
    ProtobufCMessage *o = NULL;
    char msg[256];
    int code = rpc_client_call(r->peer, "/tandem.repl.v1.Link/DeleteReplica",
                               &req.base,
                               &tandem__repl__v1__delete_replica_response__descriptor,
                               &o, REP_PROBE_TIMEOUT_MS, 0, msg, sizeof(msg));
    /* The peer's words are quoted (tlog_q): they come from the wire. */
    char q[600];
    if (code != RPC_OK) {
        tlog_debug("rep.replica_delete_retry", "vol=%s code=%s msg=%s",
                   t->vol_id, rpc_code_name(code), tlog_q(q, sizeof(q), msg));
        return 0;
    }
    Tandem__Repl__V1__DeleteReplicaResponse *a = (void *)o;
    int final = 1;
    switch (a->result) {
    case R(OK):
        tlog_info("rep.replica_delete", "vol=%s peer=%s deleted=%d msg=%s",
                  t->vol_id, r->peer_region, a->deleted,
                  tlog_q(q, sizeof(q), a->message));
        break;
    case R(SPLIT_BRAIN):
    case R(STALE_EPOCH):
        /* Promoted since: the peer's copy is its own now. */
        tlog_warn("rep.replica_kept", "vol=%s peer=%s msg=%s", t->vol_id,
                  r->peer_region, tlog_q(q, sizeof(q), a->message));
        break;
    default:
        final = 0;
        tlog_warn("rep.replica_delete_failed", "vol=%s peer=%s result=%d "
                  "msg=%s", t->vol_id, r->peer_region, a->result,
                  tlog_q(q, sizeof(q), a->message));
    }
    protobuf_c_message_free_unpacked(o, NULL);
    if (final) {
        jr_copylist_drop(r->st, t->vol_id);
        jr_tomb_remove(r->st, t->vol_id);
    }
    return 0;
}

void rep__tombs_process(rep_ctx *r)
{
    struct tomb_pass tp = {r, tb_mono_ms() + 2000};
    jr_tomb_list(r->st, tomb_cb, &tp);
}

