/*
 * rep_link.h: the peer link (rep_link.c): its service, for rep_core.c to
 * serve; the calls to the peer's link that are not the sender's batches
 * (rep_send.c, rep_copy.c and rep_admin.c make them); the receiver's
 * decoders of untrusted peer bytes (exposed for the fuzzers).
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

#endif /* TANDEM_REP_LINK_H */
