/*
 * ctl_rpc.c: tandemctl's admin client.  It talks to nothing but the
 * admin API of a tandem-replicator (proto/tandem_admin.proto), over a
 * unix socket or mutual-TLS TCP through the rpc layer (librpc): one
 * client per endpoint, made on first use; one call at a time per
 * command, with the command's deadline; and the one stderr line that
 * says why a call failed.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl_int.h"

int ctl_ep_connect(struct ctl *c, struct endpoint *ep, char *msg,
                   size_t msgsz)
{
    if (ep->cli) return 0;
    const struct rpc_tls *tls = NULL;
    /* The admin socket's file mode is its access control (the replicator
     * makes it 0600).  gRPC would report a refused connect() as a vague
     * UNAVAILABLE (or, waiting for the channel, a DEADLINE_EXCEEDED): say
     * what it is at once. */
    if (!strncmp(ep->addr, "unix://", 7)) {
        const char *path = ep->addr + 7;
        struct stat st;
        if (access(path, W_OK) < 0 && errno == EACCES) {
            char how[64] = "";
            if (stat(path, &st) == 0)
                snprintf(how, sizeof how, " (mode %04o, owner uid %u, "
                         "group %u)", (unsigned)(st.st_mode & 0777),
                         (unsigned)st.st_uid, (unsigned)st.st_gid);
            snprintf(msg, msgsz,
                     "permission denied on %s%s: run as root or as the "
                     "replicator's user (or have the replicator started "
                     "with --admin-socket-mode 0660 and join the socket's "
                     "group)", ep->addr, how);
            return -EACCES;
        }
    }
    if (strncmp(ep->addr, "unix:", 5) != 0 && !c->insecure) {
        if (!c->tls.ca_file || !c->tls.cert_file || !c->tls.key_file) {
            snprintf(msg, msgsz,
                     "%s is a TCP address: give --tls-ca, --tls-cert and "
                     "--tls-key (mutual TLS), or --insecure",
                     ep->addr);
            return -EINVAL;
        }
        tls = &c->tls;
    }
    int rc = rpc_client_create(ep->addr, tls, &ep->cli);
    if (rc < 0) {
        snprintf(msg, msgsz, "cannot use admin endpoint %s: %s", ep->addr,
                 strerror(-rc));
        return rc;
    }
    return 0;
}

/* One admin call.  Returns an RPC_* code (or CALL_NO_CLIENT when no
 * client could be made); the server's one-line message lands in msg. */
int ctl_admin_call(struct ctl *c, struct endpoint *ep, const char *method,
                   const void *req, const ProtobufCMessageDescriptor *rd,
                   void *respp, int default_timeout_s, char *msg,
                   size_t msgsz)
{
    char path[128];
    int tmo = (c->timeout_s > 0 ? c->timeout_s : default_timeout_s) * 1000;
    msg[0] = 0;
    if (ctl_ep_connect(c, ep, msg, msgsz) < 0) return CALL_NO_CLIENT;
    snprintf(path, sizeof path, ADMIN_SVC "%s", method);
    /* No wait_for_ready: a lost region must fail fast, not hang. */
    return rpc_client_call(ep->cli, path, (const ProtobufCMessage *)req, rd,
                           (ProtobufCMessage **)respp, tmo, 0, msg, msgsz);
}

/* "cannot reach ..." for transport failures, the server's reason else. */
void ctl_report_rpc_error(const char *what, const struct endpoint *ep,
                          int code, const char *msg)
{
    if (code == CALL_NO_CLIENT)
        ctl_errf("%s: %s", what, msg);
    else if (code == RPC_UNAVAILABLE || code == RPC_DEADLINE_EXCEEDED ||
             code == RPC_UNAUTHENTICATED)
        ctl_errf("%s: cannot reach the replicator at %s: %s (%s)", what,
                 ep->addr, *msg ? msg : "no answer", rpc_code_name(code));
    else
        ctl_errf("%s: %s (%s)", what, *msg ? msg : "refused",
                 rpc_code_name(code));
}
