/*
 * rep_link.c: the peer-link service (proto/tandem_repl.proto, receiver
 * side): who may call it (authorization), Hello, and the calls that change
 * a local copy, ShipBatch and CopyRegions; its method table.  The queries
 * and DeleteReplica are in rep_link_vol.c, the client calls of the peer's
 * link that are not the sender's in rep_peer.c.
 *
 * Every handler that changes a local copy holds the volume's op_lock, so
 * batches, copies and role changes of one volume are serialised while
 * different volumes proceed in parallel on the worker threads.
 *
 * Refusals are answers (Result), never overwrites: a local PRIMARY is not
 * touched by anything the peer ships; a batch below the local epoch is
 * refused (split-brain guard).
 *
 * Authorization, on every call before anything else (rep__link_admit): the
 * caller is the region its verified certificate names (URI SAN
 * spiffe://TD/tandem/region/NAME), and only the configured peer region
 * is served; request fields that name a region must name that one.  Then
 * per volume (rep__vol_authz, spec_authz): a call acts only on a volume whose
 * peer is the caller.  Refusals are PERMISSION_DENIED with one log line
 * (event=rep.link_denied) quoting the identity.  A higher epoch is adopted
 * only from a sender whose copy is primary (from_primary).  With
 * --insecure there is no identity: the caller is taken for the peer
 * region (the per-volume rules still apply).
 */
#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rep_link.h"
#include "tlog.h"

#define R(x) TANDEM__REPL__V1__RESULT__RESULT_##x


/* -------------------------------------------------------- authorization */

/* Not a Result: receive_check's "refused: not this caller's volume". */
#define R_DENIED (-1)


/* Refuse the call: PERMISSION_DENIED with why, and one log line naming the
 * caller's identity (quoted: it comes from a certificate). */
int rep__link_deny(rep_ctx *r, rpc_ctx *ctx, const char *uri,
                     const char *fmt, ...)
{
    char why[400], q1[REP_MAX_ID_URI + 8], q2[sizeof(why) + 8];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    tlog_warn("rep.link_denied", "method=%s identity=%s peer=%s why=%s",
              rpc_ctx_method(ctx), tlog_q(q1, sizeof(q1), uri),
              rpc_ctx_peer(ctx), tlog_q(q2, sizeof(q2), why));
    return rpc_ctx_error(ctx, RPC_PERMISSION_DENIED, "region %s: %s",
                         r->region, why);
}

/* Admit a caller of the link: its certificate must carry exactly one URI
 * identity, and that identity must be the peer region's replicator.  The
 * admin identity, other regions, other trust domains and certificates
 * without a URI are refused.  Returns RPC_OK or the refusal (sent). */
int rep__link_admit(rep_ctx *r, rpc_ctx *ctx, struct rep_caller *c)
{
    c->uri[0] = 0;
    c->region = r->peer_region;
    if (r->o.insecure) return RPC_OK; /* no identity: logged at start */
    int rc = rpc_ctx_peer_uri(ctx, NULL, c->uri, sizeof(c->uri));
    if (rc < 0) {
        c->uri[0] = 0;
        return rep__link_deny(r, ctx, "", "%s",
                         rc == -ENOENT     ? "the client certificate names "
                                             "no identity (no URI SAN)"
                         : rc == -ENOTUNIQ ? "the client certificate names "
                                             "more than one identity"
                         : rc == -ERANGE   ? "the client identity is too long"
                                           : "the client identity is "
                                             "unreadable");
    }
    if (!strcmp(c->uri, r->id_admin))
        return rep__link_deny(r, ctx, c->uri, "the admin identity may not use "
                         "the peer link");
    size_t pl = strlen(r->id_region_prefix);
    if (strncmp(c->uri, r->id_region_prefix, pl))
        return rep__link_deny(r, ctx, c->uri, "not a region identity of this "
                         "trust domain (%s...)", r->id_region_prefix);
    if (strcmp(c->uri + pl, r->peer_region))
        return rep__link_deny(r, ctx, c->uri, "region %.64s is not the peer of "
                         "region %s (its peer is %s)", c->uri + pl,
                         r->region, r->peer_region);
    return RPC_OK;
}

/* A request field that names the caller's region must name the region of
 * its identity.  RPC_OK, or the refusal (sent).  No identity (--insecure):
 * the field is checked by the handler as before. */
int rep__link_field(rep_ctx *r, rpc_ctx *ctx, const struct rep_caller *c,
                      const char *field, const char *value)
{
    if (!c->uri[0] || !strcmp(value, c->region)) return RPC_OK;
    char q[80];
    return rep__link_deny(r, ctx, c->uri, "%s %s does not match the caller's "
                     "identity (region %s)", field,
                     tlog_q(q, sizeof(q), value), c->region);
}

/* A local volume may be acted on by the caller only if the caller is its
 * peer: the region a replica came from, or the peerRegion of a copy that
 * replicates from here.  0, or R_DENIED with msg set. */
int rep__vol_authz(rep_ctx *r, const struct rep_caller *c, const char *id,
                     char *msg, size_t msz, char split[REP_SPLIT_WHY])
{
    char peer[RG_MAX_NAME + 1];
    /* An unreadable volume has no peer here: refused. */
    if (rep__vol_peer_split(r, id, peer, sizeof(peer), split) < 0) peer[0] = 0;
    if (peer[0] && !strcmp(peer, c->region)) return 0;
    snprintf(msg, msz, "volume %s in region %s is not replicated with "
             "region %s (%s%s)", id, r->region, c->region,
             peer[0] ? "its peer is " : "not replicated", peer);
    return R_DENIED;
}

/* A replica is created only from a spec whose metadata says the volume
 * replicates (async) between the caller and this region: its peerRegion
 * is this region (the primary's first replica), or the caller itself (a
 * promoted replica that replicates back to where it came from).  0, or
 * R_DENIED with msg set. */
static int spec_authz(rep_ctx *r, const struct rep_caller *c, const char *id,
                      const Tandem__Repl__V1__VolumeSpec *sp, char *msg,
                      size_t msz)
{
    const char *rep = "", *rep_alt = "", *peer = "", *peer_alt = "";
    for (size_t i = 0; i < sp->n_meta; i++) {
        const char *k = sp->meta[i]->key, *v = sp->meta[i]->value;
        if (!k || !v) continue;
        if (!strcmp(k, REP_META_REPLICATION)) rep = v;
        else if (!strcmp(k, REP_META_REPLICATION_ALT)) rep_alt = v;
        else if (!strcmp(k, REP_META_PEER_REGION)) peer = v;
        else if (!strcmp(k, REP_META_PEER_REGION_ALT)) peer_alt = v;
    }
    if (!rep[0]) rep = rep_alt;
    if (!peer[0]) peer = peer_alt;
    if (!strcmp(rep, "async") &&
        (!strcmp(peer, r->region) || !strcmp(peer, c->region)))
        return 0;
    snprintf(msg, msz, "volume %s does not replicate between region %s and "
             "region %s (replication %.32s, peer region %.64s): no replica "
             "made", id, c->region, r->region, rep[0] ? rep : "none",
             peer[0] ? peer : "none");
    return R_DENIED;
}

/* ---------------------------------------------------------------- Hello */

static int h_hello(void *svc, rpc_ctx *ctx, const ProtobufCMessage *reqm,
                   ProtobufCMessage **respm)
{
    rep_ctx *r = svc;
    const Tandem__Repl__V1__HelloRequest *req = (const void *)reqm;
    struct rep_caller c;
    int code;
    if ((code = rep__link_admit(r, ctx, &c)) != RPC_OK ||
        (code = rep__link_field(r, ctx, &c, "region", req->region)) != RPC_OK)
        return code;
    if (strcmp(req->region, r->peer_region) ||
        (req->peer_region[0] && strcmp(req->peer_region, r->region)))
        return rpc_ctx_error(ctx, RPC_FAILED_PRECONDITION,
                             "this is region %s paired with %s; caller is %s "
                             "looking for %s", r->region, r->peer_region,
                             req->region, req->peer_region);
    Tandem__Repl__V1__HelloResponse *resp = malloc(sizeof(*resp));
    if (!resp) return RPC_RESOURCE_EXHAUSTED;
    tandem__repl__v1__hello_response__init(resp);
    resp->region = rep__sdup(r->region);
    resp->version = rep__sdup("tandem-replicator 0.1");
    resp->now_unix_ms = tb_wall_ms();
    *respm = &resp->base;
    return RPC_OK;
}

/* ------------------------------------------------------------ ShipBatch */

static int ship_answer(ProtobufCMessage **respm, int result, uint64_t applied,
                       uint64_t epoch, const char *role, int created,
                       const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));

static int ship_answer(ProtobufCMessage **respm, int result, uint64_t applied,
                       uint64_t epoch, const char *role, int created,
                       const char *fmt, ...)
{
    Tandem__Repl__V1__ShipBatchResponse *resp = malloc(sizeof(*resp));
    char msg[512];
    va_list ap;
    if (!resp) return RPC_RESOURCE_EXHAUSTED;
    tandem__repl__v1__ship_batch_response__init(resp);
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    resp->result = result;
    resp->applied = applied;
    resp->epoch = epoch;
    resp->role = rep__sdup(role);
    resp->message = rep__sdup(msg);
    resp->created = created;
    *respm = &resp->base;
    return RPC_OK;
}

/* Create the secondary from the primary's spec (first contact).  The
 * metadata travels unchanged, plus where it came from. */
static int create_replica(rep_ctx *r, const char *id, const char *from,
                          uint64_t epoch,
                          const Tandem__Repl__V1__VolumeSpec *sp)
{
    struct jr_kv *kv = calloc(sp->n_meta + 1, sizeof(*kv));
    if (!kv) return -ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < sp->n_meta; i++) {
        if (!sp->meta[i]->key ||
            !strncmp(sp->meta[i]->key, REP_META_PREFIX,
                     strlen(REP_META_PREFIX)))
            continue;
        kv[n].key = sp->meta[i]->key;
        kv[n].value = sp->meta[i]->value ? sp->meta[i]->value : "";
        n++;
    }
    kv[n].key = REP_META_PEER;
    kv[n].value = from;
    n++;
    struct jr_create_opts o = {
        .size = sp->size,
        .object_size = sp->object_size,
        .role = JR_ROLE_SECONDARY,
        .epoch = epoch ? epoch : 1,
        .region = r->region,
        .meta = kv,
        .n_meta = n,
        .start_seq = sp->start_seq ? sp->start_seq : 1,
    };
    int rc = jr_volume_create(r->st, id, &o);
    free(kv);
    if (rc == 0)
        tlog_info("rep.replica_created", "vol=%s from=%s size=%" PRIu64
                  " start_seq=%" PRIu64 " epoch=%" PRIu64, id, from, sp->size,
                  o.start_seq, o.epoch);
    return rc;
}

/* A volume id as the journal takes it (jr.h: 1..JR_MAX_ID bytes of
 * [A-Za-z0-9._-]), and never one made of dots only ("." and ".." are
 * path components wherever an id becomes a file or directory name). */
int rep__valid_id(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > JR_MAX_ID || strspn(id, ".") == n) return 0;
    for (const char *p = id; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' ||
              *p == '-'))
            return 0;
    return 1;
}

/* The largest journal position the link takes from a peer (a resume
 * point, a replica's first entry, a copy's consistent_at): 2^63 - 1, so
 * that seq + 1 (next entry, tail) and the sums senders make never wrap;
 * a journal gets there after 2^63 entries, i.e. never. */
#define REP_MAX_SEQ ((uint64_t)INT64_MAX)

/* A VolumeSpec whose start_seq is outside that space: its message, else
 * NULL. */
static const char *spec_bad(const Tandem__Repl__V1__VolumeSpec *sp)
{
    return sp && sp->start_seq > REP_MAX_SEQ
               ? "spec start_seq beyond the journal's seq space (2^63-1)"
               : NULL;
}

/* Common checks of a copy or batch against the local copy: creates it if
 * absent and a spec is given, adopts a newer epoch.  Returns a Result;
 * fills info. */
static int receive_check(rep_ctx *r, const struct rep_caller *c, const char *id,
                         uint64_t epoch, int from_primary,
                         uint64_t promoted_at,
                         const Tandem__Repl__V1__VolumeSpec *sp,
                         struct jr_info *info, int *created, char *msg,
                         size_t msz)
{
    const char *from = c->region;
    *created = 0;
    int rc = jr_volume_stat(r->st, id, info);
    if (rc == -ENOENT) {
        if (!sp) {
            snprintf(msg, msz, "no volume %s here", id);
            return R(NO_VOLUME);
        }
        if (sp->size == 0) {
            snprintf(msg, msz, "spec without size");
            return R(ERROR);
        }
        if (spec_authz(r, c, id, sp, msg, msz) < 0) return R_DENIED;
        rc = create_replica(r, id, from, epoch, sp);
        if (rc < 0 && rc != -EEXIST) {
            snprintf(msg, msz, "create replica: %s", jr_strerror(rc));
            return R(ERROR);
        }
        *created = rc == 0;
        rc = jr_volume_stat(r->st, id, info);
    }
    if (rc < 0) {
        snprintf(msg, msz, "stat: %s", jr_strerror(rc));
        return R(ERROR);
    }
    /* Only the volume's own peer ships or copies into it. */
    char split[REP_SPLIT_WHY];
    if (rep__vol_authz(r, c, id, msg, msz, split) < 0) return R_DENIED;
    if (info->role == JR_ROLE_PRIMARY) {
        snprintf(msg, msz, "volume %s is primary in region %s at epoch %"
                 PRIu64 ": not overwritten", id, r->region, info->epoch);
        return R(SPLIT_BRAIN);
    }
    if (split[0]) {
        snprintf(msg, msz, "volume %s in region %s was fenced (split brain: "
                 "%.200s): resync it first", id, r->region, split);
        return R(SPLIT_BRAIN);
    }
    if (epoch < info->epoch) {
        snprintf(msg, msz, "epoch %" PRIu64 " is below region %s's epoch %"
                 PRIu64 " for %s (fenced)", epoch, r->region, info->epoch, id);
        return R(STALE_EPOCH);
    }
    if (epoch > info->epoch && !from_primary) {
        /* Only a promotion raises an epoch, and a promoted copy is a
         * primary: a higher epoch from any other copy decides nothing
         * here (neither fences this copy nor is adopted). */
        snprintf(msg, msz, "epoch %" PRIu64 " above region %s's %" PRIu64
                 " for %s from a copy that is not primary: not adopted",
                 epoch, r->region, info->epoch, id);
        return R(ERROR);
    }
    if (epoch > info->epoch && promoted_at && info->head > promoted_at) {
        /* We hold entries past the point where the peer took over: two
         * histories.  Fence and wait for a resync; never mix them. */
        snprintf(msg, msz, "volume %s in region %s has entries up to %" PRIu64
                 " but %s became primary at %" PRIu64 " (epoch %" PRIu64
                 "): diverged, resync needed", id, r->region, info->head,
                 from, promoted_at, epoch);
        jr_meta_set(r->st, id, REP_META_SPLIT, msg);
        char q[600];
        tlog_error("rep.split_brain", "vol=%s why=%s", id,
                   tlog_q(q, sizeof(q), msg));
        return R(SPLIT_BRAIN);
    }
    if (epoch > info->epoch) {
        /* The primary was promoted since: adopt its epoch.  A copy we had
         * been draining (demoted here) is now the peer's secondary. */
        rc = jr_role_set(r->st, id, JR_ROLE_SECONDARY, epoch);
        if (rc < 0) {
            snprintf(msg, msz, "adopt epoch %" PRIu64 ": %s", epoch,
                     jr_strerror(rc));
            return rc == JR_ESTALE ? R(STALE_EPOCH) : R(ERROR);
        }
        jr_meta_rm(r->st, id, REP_META_DRAINING);
        tlog_info("rep.epoch_adopted", "vol=%s epoch=%" PRIu64 " from=%s", id,
                  epoch, from);
        info->epoch = epoch;
    }
    return R(OK);
}

/* The timestamp of the last entry of a verified batch (FORMAT.md §3:
 * 64-byte headers, payload_len at byte 40, timestamp at byte 48, both
 * little-endian), or 0 if the walk does not end exactly at len. */
static int64_t batch_last_ts(const uint8_t *p, size_t len)
{
    size_t off = 0;
    int64_t ts = 0;
    while (len - off >= 64) {
        uint32_t pl = 0;
        uint64_t t = 0;
        for (int i = 3; i >= 0; i--) pl = pl << 8 | p[off + 40 + i];
        for (int i = 7; i >= 0; i--) t = t << 8 | p[off + 48 + i];
        if (pl > len - off - 64) return 0;
        ts = (int64_t)t;
        off += 64 + (size_t)pl;
    }
    return off == len ? ts : 0;
}

/* A call of the primary arrived (batch, probe or heartbeat): take its
 * announcement, and the position applied here with its entry's
 * timestamp (0: unknown), into the volume's RPO; persist it at most
 * once a second, and soon when the RPO goes from 0 to not 0 or back.
 * exact: applied was read under op_lock (batch, probe, copy): it is the
 * position, even if lower than the last one recorded (a replica deleted
 * and made again, a rebase); else (heartbeat) it only moves forward. */
static void note_rpo(rep_ctx *r, struct rep_vol *v, uint64_t epoch,
                     uint64_t head, int64_t head_ts_ns, uint64_t applied,
                     int64_t applied_ts_ns, int exact)
{
    int64_t mono = tb_mono_ms();
    char buf[200];
    int persist = 0;
    pthread_mutex_lock(&v->mu);
    struct rep_rpo *p = &v->rpo;
    int fresh = epoch > p->epoch; /* a new primary: start afresh */
    rep__rpo_announce(p, epoch, head, head_ts_ns);
    /* Two connections: a heartbeat's older stat may arrive after a
     * batch's apply.  Never move back within an epoch. */
    if (fresh || applied > p->applied || (exact && applied < p->applied) ||
        (applied == p->applied && applied_ts_ns && !p->applied_ts_ns)) {
        p->applied = applied;
        p->applied_ts_ns = applied_ts_ns;
    }
    p->link_up_ms = tb_wall_ms();
    v->rpo_loaded = 1; /* this is newer than anything persisted */
    int zero = rep__rpo_s(p) == 0;
    if (!v->rpo_saved_ms || mono - v->rpo_saved_ms >= 1000 ||
        (zero != v->rpo_saved_zero && mono - v->rpo_saved_ms >= 100)) {
        v->rpo_saved_ms = mono;
        v->rpo_saved_zero = zero;
        persist = rep__rpo_format(p, buf, sizeof(buf)) == 0;
    }
    pthread_mutex_unlock(&v->mu);
    if (persist) jr_meta_set(r->st, v->id, REP_META_RPO, buf);
}

static void note_rx(rep_ctx *r, struct rep_vol *v, uint64_t applied,
                    size_t wire, uint64_t raw)
{
    int64_t now = tb_wall_ms(), mono = tb_mono_ms();
    pthread_mutex_lock(&v->mu);
    v->last_sync_ms = now;
    v->acked = applied;
    v->rx_gen++;
    pthread_cond_broadcast(&v->cv); /* a batch waiting for its turn */
    v->wire_bytes += wire;
    v->raw_bytes += raw;
    if (wire) v->batches++;
    tb_meter_add(&v->meter, raw, mono);
    v->last_error[0] = 0;
    v->peer_split = 0;
    v->peer_stale = 0;
    v->link_state = REP_LINK_RECEIVING;
    v->state = REP_ST_REPLICA;
    pthread_mutex_unlock(&v->mu);
    /* The replica's own journal: the primary holds every entry up to
     * applied, so record that as its ack and trim (R-8 would otherwise keep
     * it all, then fall back to dirty tracking on the replica).  At most
     * once a second. */
    pthread_mutex_lock(&v->mu);
    int trim = !v->rx_trim_ms || mono - v->rx_trim_ms >= 1000;
    if (trim) v->rx_trim_ms = mono;
    pthread_mutex_unlock(&v->mu);
    if (trim && applied) {
        int rc = jr_peer_ack_set(r->st, v->id, r->peer_region, applied);
        if (rc == 0) rc = jr_trim(r->st, v->id);
        /* The replica's journal is only kept longer: logged, retried
         * with the next batch a second later. */
        if (rc < 0)
            tlog_warn("rep.replica_trim_failed", "vol=%s applied=%" PRIu64
                      " err=%d (%s)", v->id, applied, rc, jr_strerror(rc));
    }
}

/* In a copy window: once applied reaches consistent_at the replica is
 * write-order consistent again and the undo data goes. */
static void copy_window_check(rep_ctx *r, const char *id, uint64_t applied)
{
    struct jr_copywin w;
    if (jr_copywin_get(r->st, id, &w) < 0 || !w.until || applied < w.until)
        return;
    int rc = jr_copywin_drop(r->st, id);
    tlog_info("rep.copy_consistent", "vol=%s applied=%" PRIu64 " rc=%d", id,
              applied, rc);
}

int rep__ship_decode(const Tandem__Repl__V1__ShipBatchRequest *req,
                     const void **data, size_t *len, void **raw, char *msg,
                     size_t msz)
{
    *data = req->entries.data;
    *len = req->entries.len;
    *raw = NULL;
    if (req->compression == TANDEM__REPL__V1__COMPRESSION__COMPRESSION_LZ4) {
        if (rep__unlz4(req->entries.data, req->entries.len, req->raw_len,
                       raw) < 0) {
            snprintf(msg, msz, "batch %" PRIu64 "..%" PRIu64
                     ": LZ4 block does not decode to %" PRIu64 " bytes",
                     req->first_seq, req->last_seq, req->raw_len);
            return R(CORRUPT);
        }
        *data = *raw;
        *len = req->raw_len;
    } else if (req->compression !=
               TANDEM__REPL__V1__COMPRESSION__COMPRESSION_NONE) {
        snprintf(msg, msz, "unknown compression %d", req->compression);
        return R(ERROR);
    }
    return R(OK);
}

/* A heartbeat (ShipBatchRequest.heartbeat): record the announcement,
 * nothing else.  Without op_lock: it must not wait for an apply (that is
 * its point on a slow link); it reads the header and metadata and writes
 * only the RPO.  Recorded only into a secondary of the caller at the
 * same epoch that is not fenced; anything else is answered with the
 * position and no effect (the sender's probes and batches decide). */
static int heartbeat(rep_ctx *r, rpc_ctx *ctx, const struct rep_caller *c,
                     struct rep_vol *v,
                     const Tandem__Repl__V1__ShipBatchRequest *req,
                     ProtobufCMessage **respm)
{
    struct jr_info info;
    char msg[400], split[REP_SPLIT_WHY];
    int rc = jr_volume_stat(r->st, req->volume_id, &info);
    if (rc == -ENOENT)
        return ship_answer(respm, R(NO_VOLUME), 0, 0, "", 0,
                           "no volume %s here", req->volume_id);
    if (rc < 0)
        return ship_answer(respm, R(ERROR), 0, 0, "", 0, "stat: %s",
                           jr_strerror(rc));
    if (rep__vol_authz(r, c, req->volume_id, msg, sizeof(msg), split) < 0)
        return rep__link_deny(r, ctx, c->uri, "%s", msg);
    const char *role = jr_role_name(info.role);
    if (info.role != JR_ROLE_SECONDARY || split[0] ||
        req->epoch != info.epoch || !req->from_primary)
        return ship_answer(respm, R(OK), info.applied, info.epoch, role, 0,
                           "heartbeat not recorded (role %s, epoch %" PRIu64
                           "%s)", role, info.epoch, split[0] ? ", fenced" : "");
    note_rpo(r, v, info.epoch, req->primary_head, req->head_ts_ns,
             info.applied, info.head == info.applied ? info.head_ts_ns : 0,
             0);
    tlog_debug("rep.heartbeat", "vol=%s head=%" PRIu64 " head_age_ms=%.1f "
               "applied=%" PRIu64, req->volume_id, req->primary_head,
               (double)(tb_wall_ns() - req->head_ts_ns) / 1e6, info.applied);
    pthread_mutex_lock(&v->mu);
    v->last_sync_ms = tb_wall_ms();
    pthread_mutex_unlock(&v->mu);
    return ship_answer(respm, R(OK), info.applied, info.epoch, role, 0,
                       "heartbeat");
}

static int h_ship(void *svc, rpc_ctx *ctx, const ProtobufCMessage *reqm,
                  ProtobufCMessage **respm)
{
    rep_ctx *r = svc;
    const Tandem__Repl__V1__ShipBatchRequest *req = (const void *)reqm;
    struct jr_info info = {0};
    char msg[400];
    int created = 0, res, rc;
    void *raw = NULL;
    struct rep_caller c;

    if ((rc = rep__link_admit(r, ctx, &c)) != RPC_OK ||
        (rc = rep__link_field(r, ctx, &c, "from_region", req->from_region)) !=
            RPC_OK)
        return rc;
    if (!rep__valid_id(req->volume_id))
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT, "bad volume id");
    if (spec_bad(req->spec))
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT, "%s",
                             spec_bad(req->spec));
    if (strcmp(req->from_region, r->peer_region))
        return ship_answer(respm, R(WRONG_PEER), 0, 0, "", 0,
                           "region %s takes batches from %s, not %s",
                           r->region, r->peer_region, req->from_region);
    struct rep_vol *v = rep__vol_get(r, req->volume_id);
    if (!v) return RPC_RESOURCE_EXHAUSTED;
    if (req->heartbeat) return heartbeat(r, ctx, &c, v, req, respm);
    pthread_mutex_lock(&v->mu);
    v->rx_calls++;
    pthread_cond_broadcast(&v->cv); /* a later batch waiting for this one */
    pthread_mutex_unlock(&v->mu);
    int64_t wait_t0 = 0;
again:
    pthread_mutex_lock(&v->op_lock);
    res = receive_check(r, &c, req->volume_id, req->epoch, req->from_primary,
                        req->promoted_at_seq, req->spec, &info, &created, msg,
                        sizeof(msg));
    const char *role = info.role ? jr_role_name(info.role) : "";
    if (res == R_DENIED) {
        rc = rep__link_deny(r, ctx, c.uri, "%s", msg);
        goto out;
    }
    if (res != R(OK)) {
        char q[sizeof(msg) + 16];
        if (res != R(NO_VOLUME))
            tlog_warn("rep.refused", "vol=%s result=%d msg=%s",
                      req->volume_id, res, tlog_q(q, sizeof(q), msg));
        rc = ship_answer(respm, res, info.applied, info.epoch, role, 0, "%s",
                         msg);
        goto out;
    }
    if (req->n_entries == 0) {
        note_rx(r, v, info.applied, 0, 0);
        note_rpo(r, v, info.epoch, req->primary_head, req->head_ts_ns,
                 info.applied,
                 info.head == info.applied ? info.head_ts_ns : 0, 1);
        rc = ship_answer(respm, R(OK), info.applied, info.epoch, role,
                         created, "probe");
        struct jr_copywin w;
        if (rc == RPC_OK && jr_copywin_get(r->st, req->volume_id, &w) == 0) {
            Tandem__Repl__V1__ShipBatchResponse *a = (void *)*respm;
            a->copy_until = w.until;
            a->copy_unfinished = !w.until;
        }
        goto out;
    }
    if (req->follows_in_flight && req->first_seq > info.applied + 1 &&
        req->last_seq >= req->first_seq) {
        /* The sender keeps two batches in flight: this one may have
         * overtaken the one before it.  Wait for that one (batches apply
         * strictly in order): briefly while no other call of this volume
         * is active (it may still be on its way: a real gap then costs a
         * second), long while one is being received or applied.  After an
         * apply (rx_gen moved; read while op_lock is still held, so none
         * is missed) the position is read again under op_lock.  Whatever
         * happens, the order check below decides. */
        if (!wait_t0) wait_t0 = tb_mono_ms();
        pthread_mutex_lock(&v->mu);
        uint64_t gen = v->rx_gen;
        int waiting = 0;
        for (;;) {
            /* Other calls that are neither this one nor waiting. */
            int active = v->rx_calls - v->rx_waiting - (waiting ? 0 : 1);
            int64_t until = wait_t0 + (active > 0 ? REP_SHIP_TIMEOUT_MS / 2
                                                  : 1000);
            int64_t now = tb_mono_ms();
            if (now >= until || v->rx_gen != gen ||
                __atomic_load_n(&r->stopping, __ATOMIC_ACQUIRE))
                break;
            if (!waiting) {
                pthread_mutex_unlock(&v->mu);
                pthread_mutex_unlock(&v->op_lock);
                pthread_mutex_lock(&v->mu);
                waiting = 1;
                v->rx_waiting++;
                /* Others may now count one active call less. */
                pthread_cond_broadcast(&v->cv);
                continue;
            }
            struct timespec ts = tb_deadline(CLOCK_MONOTONIC, until - now);
            pthread_cond_timedwait(&v->cv, &v->mu, &ts);
        }
        if (waiting) {
            v->rx_waiting--;
            pthread_mutex_unlock(&v->mu);
            goto again;
        }
        pthread_mutex_unlock(&v->mu);
    }
    if (req->first_seq > info.applied + 1 || req->last_seq < req->first_seq) {
        rc = ship_answer(respm, R(GAP), info.applied, info.epoch, role, 0,
                         "expected seq %" PRIu64 ", got %" PRIu64 "..%" PRIu64,
                         info.applied + 1, req->first_seq, req->last_seq);
        goto out;
    }
    if (req->last_seq <= info.applied) {
        /* A re-send of applied entries (lost answer): no effect. */
        rc = ship_answer(respm, R(OK), info.applied, info.epoch, role, 0,
                         "duplicate");
        goto out;
    }
    const void *data;
    size_t len;
    res = rep__ship_decode(req, &data, &len, &raw, msg, sizeof(msg));
    if (res != R(OK)) {
        rc = ship_answer(respm, res, info.applied, info.epoch, role, 0, "%s",
                         msg);
        goto out;
    }
    /* Copy window: save the old bytes of what these entries touch. */
    struct jr_copywin w;
    rc = jr_copywin_get(r->st, req->volume_id, &w);
    if (rc < 0 && rc != -ENOENT) {
        /* Whether a window is open decides whether to save undo data:
         * never apply without knowing. */
        rc = ship_answer(respm, R(BUSY), info.applied, info.epoch, role, 0,
                         "copy window: %s", jr_strerror(rc));
        goto out;
    }
    int window = rc == 0;
    uint64_t until = window ? w.until : 0;
    if (window && (!until || (req->first_seq <= until && !req->n_touched))) {
        /* Unfinished copy, or a sender that does not know of the window
         * (it restarted): never apply without the undo data. */
        rc = ship_answer(respm, R(BUSY), info.applied, info.epoch, role, 0,
                         "%s", until ? "copy window: send touched ranges"
                                     : "region copy unfinished: copy again");
        Tandem__Repl__V1__ShipBatchResponse *a = (void *)*respm;
        if (rc == RPC_OK) {
            a->copy_until = until;
            a->copy_unfinished = !until;
        }
        goto out;
    }
    rc = 0;
    if (window) {
        for (size_t i = 0; i < req->n_touched; i++) {
            rc = jr_copywin_save(r->st, req->volume_id,
                                 req->touched[i]->offset,
                                 req->touched[i]->length);
            if (rc < 0) break;
        }
        if (rc < 0) {
            rc = ship_answer(respm, R(BUSY), info.applied, info.epoch, role,
                             0, "undo save: %s", jr_strerror(rc));
            goto out;
        }
    }
    uint64_t applied = info.applied;
    rep__group_check(r, v, &info, data, len);
    if (v->grouped) { /* journal all, image up to the group's cut */
        rc = jr_apply_limit(r->st, req->volume_id, data, len,
                            req->promoted_at_seq, v->gate_pos, &applied);
        /* A commit may complete a cut: the group thread looks. */
        if (rc == 0 && jr_batch_group_commits(data, len) > 0)
            __atomic_store_n(&r->grp_news, 1, __ATOMIC_RELEASE);
    }
    else
        rc = jr_apply_history(r->st, req->volume_id, data, len,
                              req->promoted_at_seq, &applied);
    if (rc < 0) {
        int res2 = rc == JR_EGAP       ? R(GAP)
                   : rc == JR_ESTALE   ? R(STALE_EPOCH)
                   : rc == JR_EROLE    ? R(SPLIT_BRAIN)
                   : rc == JR_ECORRUPT ? R(CORRUPT)
                                       : R(ERROR);
        struct jr_info now;
        if (jr_volume_stat(r->st, req->volume_id, &now) == 0) info = now;
        tlog_error("rep.apply_failed", "vol=%s first=%" PRIu64 " last=%" PRIu64
                   " err=%d (%s)", req->volume_id, req->first_seq,
                   req->last_seq, rc, jr_strerror(rc));
        rc = ship_answer(respm, res2, info.applied, info.epoch, role, 0,
                         "apply %" PRIu64 "..%" PRIu64 ": %s", req->first_seq,
                         req->last_seq, jr_strerror(rc));
        goto out;
    }
    note_rx(r, v, applied, req->entries.len, len);
    note_rpo(r, v, info.epoch, req->primary_head, req->head_ts_ns, applied,
             applied == req->last_seq ? batch_last_ts(data, len) : 0, 1);
    {
        /* The window closes on the image's position: a group member's
         * image stands at its gate, behind what it journaled. */
        struct jr_info now;
        uint64_t img = applied;
        if (v->grouped && jr_volume_stat(r->st, req->volume_id, &now) == 0)
            img = now.applied;
        copy_window_check(r, req->volume_id, img);
    }
    rc = ship_answer(respm, R(OK), applied, info.epoch, role, created, "ok");
out:
    pthread_mutex_unlock(&v->op_lock);
    pthread_mutex_lock(&v->mu);
    v->rx_calls--;
    /* A later batch waiting for this one re-decides (this one may have
     * left without applying anything). */
    v->rx_gen++;
    pthread_cond_broadcast(&v->cv);
    pthread_mutex_unlock(&v->mu);
    free(raw);
    return rc;
}

/* ---------------------------------------------------------- CopyRegions */

static int copy_answer(ProtobufCMessage **respm, int result, uint64_t applied,
                       uint64_t epoch, uint64_t written, const char *msg)
{
    Tandem__Repl__V1__CopyRegionsResponse *resp = malloc(sizeof(*resp));
    if (!resp) return RPC_RESOURCE_EXHAUSTED;
    tandem__repl__v1__copy_regions_response__init(resp);
    resp->result = result;
    resp->applied = applied;
    resp->epoch = epoch;
    resp->bytes_written = written;
    resp->message = rep__sdup(msg);
    *respm = &resp->base;
    return RPC_OK;
}

int rep__copy_region_data(const Tandem__Repl__V1__Region *g, uint64_t size,
                          const void **p, void **raw, char *msg, size_t msz)
{
    int rc;
    *p = NULL;
    *raw = NULL;
    if (g->length == 0 || g->length > REP_COPY_CHUNK * 4 ||
        g->offset >= size || g->length > size - g->offset) {
        snprintf(msg, msz, "region %" PRIu64 "+%" PRIu64
                 " outside the image (%" PRIu64 " bytes)", g->offset,
                 g->length, size);
        return -EINVAL;
    }
    if (g->zero) {
        *raw = calloc(1, g->length);
        if (!*raw) return -ENOMEM;
        *p = *raw;
    } else if (g->compression ==
               TANDEM__REPL__V1__COMPRESSION__COMPRESSION_LZ4) {
        if ((rc = rep__unlz4(g->data.data, g->data.len, g->length, raw)) <
            0) {
            snprintf(msg, msz, "region %" PRIu64 ": bad LZ4", g->offset);
            return rc;
        }
        *p = *raw;
    } else if (g->data.len == g->length) {
        *p = g->data.data;
    } else {
        snprintf(msg, msz, "region %" PRIu64 ": %zu bytes for %" PRIu64,
                 g->offset, g->data.len, g->length);
        return -EINVAL;
    }
    return 0;
}

static int h_copy(void *svc, rpc_ctx *ctx, const ProtobufCMessage *reqm,
                  ProtobufCMessage **respm)
{
    rep_ctx *r = svc;
    const Tandem__Repl__V1__CopyRegionsRequest *req = (const void *)reqm;
    struct jr_info info = {0};
    char msg[400] = "";
    int created, res, rc = 0;
    uint64_t written = 0;
    void *raw = NULL;
    struct rep_caller c;

    if ((rc = rep__link_admit(r, ctx, &c)) != RPC_OK ||
        (rc = rep__link_field(r, ctx, &c, "from_region", req->from_region)) !=
            RPC_OK)
        return rc;
    if (!rep__valid_id(req->volume_id) || !req->copy_id[0] ||
        strlen(req->copy_id) > 64)
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
                             "bad volume id or copy id");
    if (req->begin && spec_bad(req->spec))
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT, "%s",
                             spec_bad(req->spec));
    /* Finish sets the position to resume_seq - 1: only to one a journal
     * can hold, and never past the sender's own head (consistent_at; 0
     * from a sender that does not say). */
    if (req->finish &&
        (req->resume_seq > REP_MAX_SEQ || req->consistent_at > REP_MAX_SEQ ||
         (req->consistent_at && req->resume_seq &&
          req->consistent_at < req->resume_seq - 1)))
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
                             "finish with resume_seq %" PRIu64
                             " consistent_at %" PRIu64 ": beyond the "
                             "journal's seq space (2^63-1) or past the "
                             "sender's head", req->resume_seq,
                             req->consistent_at);
    if (strcmp(req->from_region, r->peer_region))
        return copy_answer(respm, R(WRONG_PEER), 0, 0, 0, "wrong peer");
    struct rep_vol *v = rep__vol_get(r, req->volume_id);
    if (!v) return RPC_RESOURCE_EXHAUSTED;
    pthread_mutex_lock(&v->op_lock);
    res = receive_check(r, &c, req->volume_id, req->epoch, req->from_primary,
                        0, req->begin ? req->spec : NULL, &info, &created,
                        msg, sizeof(msg));
    if (res == R_DENIED) {
        rc = rep__link_deny(r, ctx, c.uri, "%s", msg);
        goto out;
    }
    if (res != R(OK)) {
        rc = copy_answer(respm, res, info.applied, info.epoch, 0, msg);
        goto out;
    }
    struct jr_copywin w;
    rc = jr_copywin_get(r->st, req->volume_id, &w);
    if (rc < 0 && rc != -ENOENT) {
        rc = copy_answer(respm, R(ERROR), info.applied, info.epoch, 0,
                         jr_strerror(rc));
        goto out;
    }
    int window = rc == 0;
    rc = 0;
    if (req->begin && !window) {
        /* The base must be a state the image really holds: after a crash
         * between journal and image (head > applied) part of the newer
         * entries is in the image, so replay them first (an empty
         * jr_apply does) and take the base after that. */
        uint64_t ap = 0;
        rc = jr_apply(r->st, req->volume_id, NULL, 0, &ap);
        if (rc == 0) rc = jr_volume_stat(r->st, req->volume_id, &info);
        if (rc < 0) {
            rc = copy_answer(respm, R(ERROR), info.applied, info.epoch, 0,
                             jr_strerror(rc));
            goto out;
        }
    }
    if (req->begin) {
        /* A copy that restarts keeps the first base and the undo blocks
         * already saved: they hold the last consistent bytes. */
        rc = jr_copywin_begin(r->st, req->volume_id, req->copy_id,
                              info.applied, NULL);
        /* The primary's size as of the copy (entries after it resize in
         * order). */
        if (rc == 0 && req->spec && req->spec->size &&
            req->spec->size != info.size) {
            rc = jr_image_resize(r->st, req->volume_id, req->spec->size);
            if (rc == 0) info.size = req->spec->size;
        }
        tlog_info("rep.copy_begin", "vol=%s copy=%s base=%" PRIu64
                  " restart=%d", req->volume_id, req->copy_id,
                  window ? w.base : info.applied, window);
    } else if (!window || strcmp(w.copy_id, req->copy_id)) {
        rc = copy_answer(respm, R(ERROR), info.applied, info.epoch, 0,
                         "no such copy session (begin again)");
        goto out;
    }
    for (size_t i = 0; rc == 0 && i < req->n_regions; i++) {
        const Tandem__Repl__V1__Region *g = req->regions[i];
        const void *p;
        free(raw);
        raw = NULL;
        if ((rc = rep__copy_region_data(g, info.size, &p, &raw, msg,
                                        sizeof(msg))) < 0)
            break;
        if ((rc = jr_copywin_save(r->st, req->volume_id, g->offset,
                                  g->length)) < 0) {
            snprintf(msg, sizeof(msg), "undo save: %s", jr_strerror(rc));
            break;
        }
        if ((rc = jr_image_write(r->st, req->volume_id, g->offset, p,
                                 g->length)) < 0) {
            snprintf(msg, sizeof(msg), "image write: %s", jr_strerror(rc));
            break;
        }
        written += g->length;
    }
    if (rc == 0 && req->finish) {
        if (req->resume_seq == 0) {
            snprintf(msg, sizeof(msg), "finish without resume_seq");
            rc = -EINVAL;
        } else if (req->consistent_at > req->resume_seq - 1 &&
                   (rc = rep__snap_gap_note(r, req->volume_id,
                                            info.applied + 1,
                                            req->consistent_at)) < 0) {
            /* Entries up to consistent_at apply on a copied image that is
             * no state the primary had: snapshots they take here are not
             * write-order consistent (rep.h REP_META_SNAP_GAP). */
            snprintf(msg, sizeof(msg), "snapshot gap: %s", jr_strerror(rc));
        } else if ((rc = rep__position_set(r, req->volume_id,
                                           req->resume_seq - 1)) < 0) {
            snprintf(msg, sizeof(msg), "position: %s", jr_strerror(rc));
        } else {
            rc = jr_copywin_finish(r->st, req->volume_id,
                                   req->consistent_at > req->resume_seq - 1
                                       ? req->consistent_at
                                       : req->resume_seq - 1);
            info.applied = req->resume_seq - 1;
            tlog_info("rep.copy_finish", "vol=%s copy=%s applied=%" PRIu64
                      " consistent_at=%" PRIu64, req->volume_id, req->copy_id,
                      info.applied, req->consistent_at);
            copy_window_check(r, req->volume_id, info.applied);
            note_rx(r, v, info.applied, 0, 0);
            /* Its entry's time is unknown (a copy carries none): the RPO
             * is unknown until the next batch applies. */
            note_rpo(r, v, info.epoch, 0, 0, info.applied, 0, 1);
        }
    }
    if (rc < 0) {
        char q[sizeof(msg) + 16];
        tlog_error("rep.copy_refused", "vol=%s msg=%s", req->volume_id,
                   tlog_q(q, sizeof(q), msg));
        rc = copy_answer(respm, R(ERROR), info.applied, info.epoch, written,
                         msg[0] ? msg : jr_strerror(rc));
        goto out;
    }
    pthread_mutex_lock(&v->mu);
    v->state = req->finish ? REP_ST_REPLICA : REP_ST_COPYING;
    pthread_mutex_unlock(&v->mu);
    rc = copy_answer(respm, R(OK), info.applied, info.epoch, written, "ok");
out:
    pthread_mutex_unlock(&v->op_lock);
    free(raw);
    if (rc == RPC_OK && *respm && info.role) {
        /* The sender decides on refusals by our role (rep_copy.c). */
        Tandem__Repl__V1__CopyRegionsResponse *a = (void *)*respm;
        a->role = rep__sdup(jr_role_name(info.role));
    }
    return rc;
}

#define M(name, req, resp, fn)                                              \
    {"/tandem.repl.v1.Link/" name, &tandem__repl__v1__##req##__descriptor, \
     &tandem__repl__v1__##resp##__descriptor, fn}
const struct rpc_method rep__link_methods[] = {
    M("Hello", hello_request, hello_response, h_hello),
    M("ShipBatch", ship_batch_request, ship_batch_response, h_ship),
    M("CopyRegions", copy_regions_request, copy_regions_response, h_copy),
    M("GetVolume", get_volume_request, get_volume_response, rep__link_getvol),
    M("JournalRegions", journal_regions_request, journal_regions_response,
      rep__link_jregions),
    M("ReadRegions", read_regions_request, read_regions_response, rep__link_rregions),
    M("DeleteReplica", delete_replica_request, delete_replica_response,
      rep__link_delrep),
};
const size_t rep__n_link_methods =
    sizeof(rep__link_methods) / sizeof(rep__link_methods[0]);
