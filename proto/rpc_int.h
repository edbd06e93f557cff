/*
 * rpc_int.h: what the files of the RPC layer share and nobody else sees.
 * The public contract is rpc.h; this header includes gRPC's, so only
 * proto/rpc_*.c include it.
 *
 *   rpc_common.c  status code names, the gRPC library reference count and
 *                 gRPC's log lines routed into tlog
 *   rpc_tls.c     PEM files, gRPC credentials built from them, and the
 *                 verified identity of a mutual-TLS peer
 *   rpc_server.c  the server: calls, handler pool, listeners, shutdown
 *   rpc_client.c  the client: one channel, one unary call at a time per CQ
 *
 * Internal non-static names start with rpc__.
 */
#ifndef TANDEM_RPC_INT_H
#define TANDEM_RPC_INT_H

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#include "rpc.h"

#define RPC_DEFAULT_MAX_MSG (64u << 20) /* messages, both ways */
#define RPC_PEM_MAX (1u << 20)          /* largest PEM file read */
#define RPC_URI_MAX 1024                /* longest identity URI checked */

/* ---- rpc_common.c ---- */

/* Take / drop one reference on the gRPC library (grpc_init and
 * grpc_shutdown are counted by gRPC itself).  Every server and client
 * holds one for its whole life.  The first reference also routes gRPC's
 * log lines into tlog. */
void rpc__lib_ref(void);
void rpc__lib_unref(void);

/* A gRPC deadline ms milliseconds from now (ms <= 0: none). */
gpr_timespec rpc__deadline_after_ms(int ms);

/* ---- rpc_tls.c ---- */

/* The PEM texts of a struct rpc_tls, read and checked with OpenSSL (the
 * certificate parses, the key belongs to it), NUL-terminated and
 * malloc'd.  cert and key are NULL for a client without a certificate. */
struct rpc__pem {
    char *ca;
    char *cert;
    char *key;
    char *server_uri; /* client: rpc_tls.server_uri (NULL: unchecked) */
};

/* Read and check the files tls names.  need_pair: the server side, whose
 * own certificate and key are mandatory.  what ("server", "client") only
 * names the side in log lines.  Returns 0, -EINVAL (no ca_file, half a
 * key pair, empty or oversized file, PEM that does not parse, key not
 * matching the certificate), -ENOENT (unreadable file) or -ENOMEM.  On
 * success the caller owns *p and releases it with rpc__pem_free. */
int rpc__pem_load(const struct rpc_tls *tls, int need_pair,
                  struct rpc__pem *p, const char *what);
/* Free the texts (the private key is wiped first).  Idempotent. */
void rpc__pem_free(struct rpc__pem *p);

/* Credentials for grpc_server_add_http2_port: p NULL gives plaintext;
 * else mutual TLS (a client certificate signed by p->ca is required and
 * verified).  gRPC copies the strings, so p may be freed right after.
 * NULL on failure.  Release with grpc_server_credentials_release. */
grpc_server_credentials *rpc__server_creds(const struct rpc__pem *p);
/* Credentials for grpc_channel_create: p NULL gives plaintext; else TLS
 * verifying the server against p->ca (and its identity against
 * p->server_uri, if set), presenting p->cert if set. */
grpc_channel_credentials *rpc__channel_creds(const struct rpc__pem *p);

/* ---- rpc_server.c ---- */

/* The gRPC call behind a handler's ctx (valid during the handler). */
grpc_call *rpc__ctx_call(const rpc_ctx *ctx);

#endif /* TANDEM_RPC_INT_H */
