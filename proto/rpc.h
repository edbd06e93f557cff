/*
 * rpc.h: tandem's only door to gRPC.  A unary-call server and client over
 * the gRPC C core (grpc/grpc.h) with protobuf-c messages.  No other module
 * includes a grpc header.  (Implementation: proto/rpc_server.c,
 * rpc_client.c, rpc_tls.c, rpc_common.c; their shared internals in
 * rpc_int.h.)
 *
 * Server: methods are dispatched by full name ("/csi.v1.Identity/Probe")
 * to handlers that run on a pool of worker threads.  The layer unpacks the
 * request with the method's descriptor (undecodable bytes: INVALID_ARGUMENT,
 * handler not called), calls the handler, packs the response and sends the
 * status.  Unknown methods get UNIMPLEMENTED.  Listeners: "unix:///path"
 * and "host:port" (TCP), each plaintext or mutual TLS (client certificate
 * required and verified against the CA).  A unix socket file may be given
 * its permission bits at bind time (rpc_server_listen_mode; e.g. 0600 for
 * an admin socket that only its owner may use).
 *
 * Peer identity: on a mutual-TLS listener a handler can read its client's
 * verified certificate: the subject CN (rpc_ctx_peer_identity, a name for
 * logs) and the URI subjectAltName (rpc_ctx_peer_uri, the SPIFFE-style
 * identity to authorize on, e.g. "spiffe://tandem.local/tandem/region/a"
 * for a region's replicator, "spiffe://tandem.local/tandem/admin" for an
 * operator; scripts/gen-certs.sh issues such certificates).  gRPC's C core
 * does not expose the credentials (SO_PEERCRED) of a unix-socket client
 * (its peer string is just "unix:"), so on a plaintext unix socket the
 * socket file's mode is the access control.
 *
 * Threads: two completion-queue threads only move calls along and never run
 * handlers.  Handlers run on a pool that starts with n_threads workers and
 * grows (up to max_threads) whenever calls wait while every worker is busy,
 * so a handler that blocks for seconds (mkfs, a resync) never stalls Probe.
 *
 * Handler contract:
 *   int handler(void *svc, rpc_ctx *ctx, const ProtobufCMessage *req,
 *               ProtobufCMessage **resp);
 *   - returns an RPC_* status code.  On RPC_OK, *resp must point to a
 *     response of the method's output type (resp_desc; another type gives
 *     INTERNAL) whose every pointer (strings, bytes, repeated arrays,
 *     sub-messages, map entries) is malloc'd, so that
 *     protobuf_c_message_free_unpacked(resp, NULL) frees it all: the layer
 *     does that after packing.  Empty strings may point to
 *     protobuf_c_empty_string (never freed).  Leaving *resp NULL on RPC_OK
 *     sends the empty (all-default) response, e.g. DeleteVolumeResponse{}.
 *   - on an error code, set the message with rpc_ctx_error() (or the layer
 *     sends the code with an empty message); *resp is ignored (and freed if
 *     set).  A return value outside 0..16 (e.g. a negative errno by
 *     mistake) is sent as INTERNAL "handler returned <n>".
 *   - req is owned by the layer and valid during the call only: copy what
 *     you keep.  ctx too.
 *   - handlers run concurrently on several threads; they may block, but
 *     should watch rpc_ctx_cancelled() / rpc_ctx_remaining_ms() in long
 *     loops.  Handlers must be idempotent (CSI sidecars retry): whatever a
 *     handler returns after the client's deadline is replaced by
 *     DEADLINE_EXCEEDED, and after a cancellation it is dropped.  A call
 *     that waited for a worker past its deadline or cancellation never
 *     reaches its handler.
 *   - a handler must not call rpc_server_destroy() on its own server.
 *
 * Client: rpc_client_call() does one unary call with a deadline and returns
 * the status code; the status message is copied into the caller's buffer.
 * A client is safe to share between threads (one channel, so one HTTP/2
 * connection; one completion queue per call in flight).  A client connects
 * lazily, on its first call, and reconnects by itself (backoff 0.2 s
 * doubling up to 5 s).  While calls are in flight it sends keepalive pings
 * every 10 s, so a peer that vanished without a reset (cut link) fails the
 * call with UNAVAILABLE after ~15 s rather than at a far deadline.
 *
 * Messages up to max_msg bytes (server option, default 64 MiB; clients
 * always 64 MiB) pass both ways; larger ones fail with RESOURCE_EXHAUSTED.
 *
 * gRPC's own log lines go to tlog as event=grpc.log (GRPC_VERBOSITY=debug
 * in the environment shows more; GRPC_TRACE=... as usual).  grpc_init() and
 * grpc_shutdown() are counted inside: every server and client holds one
 * reference on the library.
 *
 * Signals: a program blocks SIGTERM, SIGINT and SIGPIPE first thing in
 * main(), before creating any server or client, with tb_signals_block()
 * (journal/base/tsig.h), so that gRPC's own threads inherit the mask and
 * never take them; a write to a socket the peer closed must give EPIPE,
 * not kill the process.
 *
 * fork/exec: every descriptor gRPC opens is close-on-exec; a child must
 * exec (or _exit) without calling into this module.
 */
#ifndef TANDEM_RPC_H
#define TANDEM_RPC_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* gRPC status codes (same numbers as grpc_status_code). */
enum rpc_code {
    RPC_OK = 0,
    RPC_CANCELLED = 1,
    RPC_UNKNOWN = 2,
    RPC_INVALID_ARGUMENT = 3,
    RPC_DEADLINE_EXCEEDED = 4,
    RPC_NOT_FOUND = 5,
    RPC_ALREADY_EXISTS = 6,
    RPC_PERMISSION_DENIED = 7,
    RPC_RESOURCE_EXHAUSTED = 8,
    RPC_FAILED_PRECONDITION = 9,
    RPC_ABORTED = 10,
    RPC_OUT_OF_RANGE = 11,
    RPC_UNIMPLEMENTED = 12,
    RPC_INTERNAL = 13,
    RPC_UNAVAILABLE = 14,
    RPC_DATA_LOSS = 15,
    RPC_UNAUTHENTICATED = 16,
};
/* "OK", "INVALID_ARGUMENT", ... */
const char *rpc_code_name(int code);

typedef struct rpc_ctx rpc_ctx;
typedef struct rpc_server rpc_server;
typedef struct rpc_client rpc_client;

typedef int (*rpc_handler_fn)(void *svc, rpc_ctx *ctx,
                              const ProtobufCMessage *req,
                              ProtobufCMessage **resp);

struct rpc_method {
    const char *name; /* full method name, "/pkg.Service/Method" */
    const ProtobufCMessageDescriptor *req_desc;
    const ProtobufCMessageDescriptor *resp_desc;
    rpc_handler_fn fn;
};

/* PEM files for TLS.  Server: cert+key, and ca verifies clients (required).
 * Client: ca verifies the server, cert+key identify the client (optional
 * only to test refusals).  server_name overrides the name checked against
 * the server certificate (NULL: the target's host).  server_uri (client
 * only; NULL: not checked): the identity the server's certificate must
 * carry, its one URI subjectAltName, byte for byte (as rpc_ctx_peer_uri
 * reads a client's); a server whose certificate names another identity,
 * none or two fails the handshake (calls get UNAVAILABLE) and the
 * mismatch is logged (event=rpc.server_identity_refused). */
struct rpc_tls {
    const char *ca_file;
    const char *cert_file;
    const char *key_file;
    const char *server_name;
    const char *server_uri;
};

/* ---- handler side ---- */
/* Set the status message (printf style, truncated at 1 KiB) and return
 * code, so a handler can `return rpc_ctx_error(ctx, RPC_NOT_FOUND, ...)`. */
int rpc_ctx_error(rpc_ctx *ctx, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Milliseconds left before the client's deadline (INT64_MAX if none). */
int64_t rpc_ctx_remaining_ms(const rpc_ctx *ctx);
/* Peer address as gRPC names it ("ipv4:127.0.0.1:5555", "unix:..."). */
const char *rpc_ctx_peer(const rpc_ctx *ctx);
/* Method name of the current call. */
const char *rpc_ctx_method(const rpc_ctx *ctx);
/* A ctx bound to no call, for tests and fuzzers that drive a handler
 * directly: no deadline, never cancelled, peer "", no identity (-ENOENT),
 * rpc_ctx_error works.  Free with rpc_ctx_detached_free. NULL on ENOMEM. */
rpc_ctx *rpc_ctx_detached_new(const char *method);
void rpc_ctx_detached_free(rpc_ctx *ctx);
/* 1 once the call is over for the client: it cancelled, its deadline
 * passed, or the server is shutting down and the grace period ran out.
 * A long handler polls this and gives up early (what it returns is then
 * never seen by anyone). */
int rpc_ctx_cancelled(const rpc_ctx *ctx);
/* Verified identity of a mutual-TLS client (its certificate's subject CN,
 * else its first subjectAltName), copied into buf; returns 0, or -ENOENT
 * on a plaintext listener, -ERANGE if buf is too small. */
int rpc_ctx_peer_identity(const rpc_ctx *ctx, char *buf, size_t size);
/* The URI subjectAltName of a mutual-TLS client's verified certificate
 * that starts with prefix (byte for byte, e.g. "spiffe://" or
 * "spiffe://tandem.local/tandem/"; NULL or "" matches any URI), copied
 * into buf.  Read from the certificate the handshake verified (gRPC's
 * x509_pem_cert auth property, parsed with OpenSSL), so a DNS name that
 * looks like a URI never passes for one.  Returns 0, or:
 *   -ENOENT    plaintext listener (no certificate), or no URI SAN with
 *              that prefix;
 *   -ENOTUNIQ  more than one URI SAN has that prefix (or the certificate
 *              has two subjectAltName extensions): the identity is
 *              ambiguous, authorize nothing (SPIFFE: exactly one URI);
 *   -EINVAL    the matching URI contains a NUL byte, or the certificate
 *              does not parse;
 *   -ERANGE    buf is too small (size must exceed the URI's length);
 *   -ENOMEM.
 * buf is unchanged on failure. */
int rpc_ctx_peer_uri(const rpc_ctx *ctx, const char *prefix, char *buf,
                     size_t size);

/* ---- server ---- */
struct rpc_server_opts {
    const struct rpc_method *methods; /* borrowed; must outlive the server */
    size_t n_methods;
    void *svc;        /* passed to every handler */
    int n_threads;    /* worker threads at start (0: 4) */
    size_t max_msg;   /* max message bytes, both ways (0: 64 MiB) */
    int max_threads;  /* pool growth limit (0: max(n_threads, 64)) */
};
int rpc_server_create(const struct rpc_server_opts *opts, rpc_server **out);
/* addr: "unix:///abs/path" or "host:port" ("0.0.0.0:0" picks a port).
 * tls NULL: plaintext.  Returns the bound TCP port (> 0), 0 for unix
 * sockets, or a negative errno: -EADDRINUSE (TCP port taken, or a live
 * server answers on the unix socket; a stale socket file is replaced),
 * -EEXIST (the unix path is not a socket), -ENOENT (unreadable PEM file,
 * missing parent directory), -EINVAL (bad address, PEM without a
 * certificate/key, key not matching the certificate, tls without ca_file,
 * or the server already started).  Call before rpc_server_start. */
int rpc_server_listen(rpc_server *srv, const char *addr,
                      const struct rpc_tls *tls);
/* rpc_server_listen with the socket file's permission bits: for
 * "unix:///path", mode (e.g. 0600: its owner only; 0660: owner and group)
 * is set before the socket can be reached under path (it is bound in a
 * private directory next to path, chmod'ed there, then renamed into
 * place), so no client ever connects through wider bits.  The process
 * umask does not apply.  Connecting needs write permission on the file;
 * root passes regardless.  mode 0 is rpc_server_listen (the file gets
 * gRPC's default, 0777 & ~umask).  Further errors: -EINVAL (mode with
 * bits outside 0777, or a nonzero mode on a TCP address),
 * -ENAMETOOLONG (the directory of path leaves no room in sun_path for
 * the temporary name DIR/.rpc-XXXXXX/s), or the errno of mkdtemp, chmod or
 * rename (after one of the last two the server keeps an unreachable
 * listener: destroy it). */
int rpc_server_listen_mode(rpc_server *srv, const char *addr,
                           const struct rpc_tls *tls, mode_t mode);
int rpc_server_start(rpc_server *srv);
/* Stop accepting, let in-flight calls finish for up to grace_ms, cancel
 * the rest (their handlers see rpc_ctx_cancelled() and the clients get
 * CANCELLED or UNAVAILABLE), wait for every running handler to return,
 * join the threads, free everything, unlink unix sockets.  Works on a
 * server that was never started.  NULL is a no-op. */
void rpc_server_destroy(rpc_server *srv, int grace_ms);

/* ---- client ---- */
/* target: "unix:///abs/path" or "host:port".  tls NULL: plaintext.
 * With tls, ca_file is required; cert_file and key_file go together (both
 * NULL: no client certificate, which mTLS servers refuse).  Returns 0,
 * -EINVAL (empty target, bad PEM, half a key pair) or -ENOENT (unreadable
 * PEM file).  Nothing connects yet. */
int rpc_client_create(const char *target, const struct rpc_tls *tls,
                      rpc_client **out);
/* The same, on connections of its own: gRPC otherwise shares one
 * connection between clients of the same target and settings, and a
 * small call (a heartbeat) then queues behind the bulk calls of the other
 * client on a slow link. */
int rpc_client_create_own(const char *target, const struct rpc_tls *tls,
                          rpc_client **out);
/* Only once no call on cli is in flight.  NULL is a no-op. */
void rpc_client_destroy(rpc_client *cli);
/* One unary call.  Returns an RPC_* code; on RPC_OK *resp is unpacked
 * with resp_desc and owned by the caller
 * (protobuf_c_message_free_unpacked); on any other code *resp is NULL.
 * The status message is copied into msg (may be NULL; truncated,
 * always NUL-terminated).  timeout_ms <= 0: no deadline.  wait_for_ready:
 * wait (until the deadline) for the server to come up instead of failing
 * fast with UNAVAILABLE.  Local failures are codes too: a response that
 * does not decode with resp_desc is INTERNAL, an unreachable server
 * UNAVAILABLE, a TLS handshake refusal UNAVAILABLE. */
int rpc_client_call(rpc_client *cli, const char *method,
                    const ProtobufCMessage *req,
                    const ProtobufCMessageDescriptor *resp_desc,
                    ProtobufCMessage **resp, int timeout_ms,
                    int wait_for_ready, char *msg, size_t msg_size);
/* The same with raw request bytes and a malloc'd raw response (tests;
 * free(*resp)).  No wait_for_ready.  *resp is NULL unless RPC_OK (an
 * empty response gives a non-NULL *resp with *resp_len 0). */
int rpc_client_call_raw(rpc_client *cli, const char *method,
                        const void *req, size_t req_len, void **resp,
                        size_t *resp_len, int timeout_ms, char *msg,
                        size_t msg_size);

#endif /* TANDEM_RPC_H */
