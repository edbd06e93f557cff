/*
 * rep_link.h: the peer link: its service (rep_link.c, rep_link_vol.c),
 * for rep_core.c to serve; the calls to the peer's link that are not the
 * sender's batches (rep_peer.c; rep_send.c, rep_copy.c, rep_admin.c and
 * the scanner make them); the receiver's decoders of untrusted peer bytes
 * (exposed for the fuzzers); and, last, what the service's two files
 * share.
 */
#ifndef TANDEM_REP_LINK_H
#define TANDEM_REP_LINK_H

#include "rep_int.h"

extern const struct rpc_method rep__link_methods[];
extern const size_t rep__n_link_methods;

/* Peer calls (client side).  GetVolume waits for the link to be ready up
 * to its deadline (operator commands); Hello fails fast. */
int rep__peer_getvol(rep_ctx *r, const char *id,
                     Tandem__Repl__V1__GetVolumeResponse **out, char *msg,
                     size_t msz);
int rep__peer_hello(rep_ctx *r, char *msg, size_t msz);
/* One pass over the tombstones of deleted primaries: ask the peer
 * to delete each replica; drop the tombstone on a final answer. */
void rep__tombs_process(rep_ctx *r);

/* Receiver decoding of untrusted peer bytes (exposed for the fuzzer,
 * tests/fuzz/fuzz-rep-link.c).  A ShipBatch's entries as sent, or LZ4
 * decompressed to exactly raw_len: returns RESULT_OK with *data and *len set
 * (*raw: the malloc'd buffer to free, or NULL), else the Result (CORRUPT,
 * ERROR) with msg set. */
int rep__ship_decode(const Tandem__Repl__V1__ShipBatchRequest *req,
                     const void **data, size_t *len, void **raw, char *msg,
                     size_t msz);
/* One CopyRegions region of an image of size bytes: checks its range and
 * yields its length bytes in *p (zeros, LZ4 decompressed or as sent;
 * *raw: the malloc'd buffer to free, or NULL).  0, or -EINVAL/-EBADMSG
 * with msg set, -ENOMEM. */
int rep__copy_region_data(const Tandem__Repl__V1__Region *g, uint64_t size,
                          const void **p, void **raw, char *msg, size_t msz);

/* ---- between rep_link.c and rep_link_vol.c only ---- */
/* Who calls: the identity URI of its certificate ("" with --insecure) and
 * the region it is admitted as (always r->peer_region). */
struct rep_caller {
    char uri[REP_MAX_ID_URI];
    const char *region;
};
/* Admit a caller of the link (its certificate names the peer region's
 * replicator): RPC_OK, or the refusal (sent). */
int rep__link_admit(rep_ctx *r, rpc_ctx *ctx, struct rep_caller *c);
/* A request field naming the caller's region must name its identity's:
 * RPC_OK, or the refusal (sent). */
int rep__link_field(rep_ctx *r, rpc_ctx *ctx, const struct rep_caller *c,
                    const char *field, const char *value);
/* Refuse the call: PERMISSION_DENIED with why, and one log line naming
 * the caller's identity. */
int rep__link_deny(rep_ctx *r, rpc_ctx *ctx, const char *uri,
                   const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* 0 if the caller is the volume's peer, else < 0 with msg set.  split
 * (may be NULL) receives why the copy is split-fenced, "" if it is not:
 * the same metadata read serves both. */
int rep__vol_authz(rep_ctx *r, const struct rep_caller *c, const char *id,
                   char *msg, size_t msz, char split[REP_SPLIT_WHY]);
/* 1 if id is a volume id the journal takes (and not dots only). */
int rep__valid_id(const char *id);
/* rep_link_vol.c's handlers, for the method table. */
int rep__link_getvol(void *svc, rpc_ctx *ctx, const ProtobufCMessage *reqm,
                     ProtobufCMessage **respm);
int rep__link_jregions(void *svc, rpc_ctx *ctx, const ProtobufCMessage *reqm,
                       ProtobufCMessage **respm);
int rep__link_rregions(void *svc, rpc_ctx *ctx, const ProtobufCMessage *reqm,
                       ProtobufCMessage **respm);
int rep__link_delrep(void *svc, rpc_ctx *ctx, const ProtobufCMessage *reqm,
                     ProtobufCMessage **respm);

#endif /* TANDEM_REP_LINK_H */
