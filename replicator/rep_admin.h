/*
 * rep_admin.h: the admin service (rep_admin.c, rep_admin_resync.c,
 * rep_admin_journal.c), for rep_core.c to serve, and its promote (tests
 * call it directly).
 */
#ifndef TANDEM_REP_ADMIN_H
#define TANDEM_REP_ADMIN_H

#include "rep_int.h"

/* The admin methods as served on the unix socket (whose file mode is
 * the access control: rep_core.c creates it 0600)... */
extern const struct rpc_method rep__admin_methods[];
extern const size_t rep__n_admin_methods;
/* ...and on TCP (mutual TLS): the same methods behind a gate that lets
 * only the admin identity (r->id_admin, the caller certificate's URI
 * SAN) through; anyone else gets PERMISSION_DENIED. */
extern const struct rpc_method rep__admin_tcp_methods[];
extern const size_t rep__n_admin_tcp_methods;
/* Promote a volume's local copy (force: without the peer's consent).
 * Returns an RPC code; msg says why (refusals) or what happened;
 * *changed is 1 if the role changed. */
int rep__promote(rep_ctx *r, const char *id, int force, int *changed,
                 char *msg, size_t msz);
/* The VolumeStatus message of one volume as it is now (malloc'd; NULL:
 * out of memory), as every admin answer carries it. */
Tandem__Admin__V1__VolumeStatus *rep__admin_vstatus(rep_ctx *r,
                                                    const char *id);

/* ---- rep_admin_resync.c ----
 * Resync: make this region's copy (a former primary, or split-brain) a
 * secondary of the peer's primary, copying only the regions written on
 * either side since the last common journal position (or everything,
 * when no journal covers that, or with full). */
int rep__h_resync(void *svc, rpc_ctx *ctx, const ProtobufCMessage *reqm,
                  ProtobufCMessage **respm);

/* ---- rep_admin_journal.c: a damaged journal (FORMAT.md R-37) ----
 * CheckJournal (jr_journal_check, nothing changed) and
 * DiscardJournalTail (jr_journal_discard with the operator's seq; on a
 * replicated primary it also schedules a full copy of the image to the
 * peer: the copy list, whole image, resuming at bad_seq, picked up by
 * the volume's next sender). */
int rep__h_check_journal(void *svc, rpc_ctx *ctx, const ProtobufCMessage *reqm,
                         ProtobufCMessage **respm);
int rep__h_discard_journal_tail(void *svc, rpc_ctx *ctx,
                                const ProtobufCMessage *reqm,
                                ProtobufCMessage **respm);

#endif /* TANDEM_REP_ADMIN_H */
