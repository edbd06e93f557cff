/*
 * rep_admin.h: the admin service (rep_admin.c), for rep_core.c to serve,
 * and its promote (tests call it directly).
 */
#ifndef TANDEM_REP_ADMIN_H
#define TANDEM_REP_ADMIN_H

#include "rep_int.h"

extern const struct rpc_method rep__admin_methods[];
extern const size_t rep__n_admin_methods;
/* Promote a volume's local copy (force: without the peer's consent).
 * Returns an RPC code; msg says why (refusals) or what happened;
 * *changed is 1 if the role changed. */
int rep__promote(rep_ctx *r, const char *id, int force, int *changed,
                 char *msg, size_t msz);

#endif /* TANDEM_REP_ADMIN_H */
