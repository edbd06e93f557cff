/*
 * rpc.h: tandem's only door to gRPC.  A unary-call server and client over
 * the gRPC C core (grpc/grpc.h) with protobuf-c messages.  No other module
 * includes a grpc header.
 *
 * Server: methods are dispatched by full name ("/csi.v1.Identity/Probe")
 * to handlers that run on a pool of worker threads.  The layer unpacks the
 * request with the method's descriptor (undecodable bytes: INVALID_ARGUMENT,
 * handler not called), calls the handler, packs the response and sends the
 * status.  Unknown methods get UNIMPLEMENTED.  Listeners: "unix:///path"
 * and "host:port" (TCP), each plaintext or mutual TLS (client certificate
 * required and verified against the CA).
 *
 * Handler contract:
 *   int handler(void *svc, rpc_ctx *ctx, const ProtobufCMessage *req,
 *               ProtobufCMessage **resp);
 *   - returns an RPC_* status code.  On RPC_OK, *resp must point to a
 *     response of the method's output type whose every pointer (strings,
 *     repeated arrays, sub-messages, map entries) is malloc'd, so that
 *     protobuf_c_message_free_unpacked(resp, NULL) frees it all: the layer
 *     does that after sending.  Empty strings may point to
 *     protobuf_c_empty_string (never freed).
 *   - on an error code, set the message with rpc_ctx_error() (or the layer
 *     sends the code with an empty message); *resp is ignored (and freed if
 *     set).
 *   - req is owned by the layer and valid during the call.
 *   - handlers run concurrently on several threads.
 *
 * Client: rpc_client_call() does one unary call with a deadline and returns
 * the status code; the status message is copied into the caller's buffer.
 * A client is safe to share between threads.
 *
 * Threads and signals: call rpc_signals_block() first thing in main()
 * (before any thread exists), then rpc_signals_wait() to wait for SIGTERM
 * or SIGINT; gRPC's own threads inherit the blocked mask.
 */
#ifndef TANDEM_RPC_H
#define TANDEM_RPC_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

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
 * the server certificate (NULL: the target's host). */
struct rpc_tls {
    const char *ca_file;
    const char *cert_file;
    const char *key_file;
    const char *server_name;
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

/* ---- server ---- */
struct rpc_server_opts {
    const struct rpc_method *methods; /* borrowed; must outlive the server */
    size_t n_methods;
    void *svc;        /* passed to every handler */
    int n_threads;    /* worker threads (0: 4) */
    size_t max_msg;   /* max message bytes, both ways (0: 64 MiB) */
};
int rpc_server_create(const struct rpc_server_opts *opts, rpc_server **out);
/* addr: "unix:///abs/path" or "host:port" ("0.0.0.0:0" picks a port).
 * tls NULL: plaintext.  Returns the bound TCP port (> 0), 0 for unix
 * sockets, or a negative errno (-EADDRINUSE, -EINVAL, -ENOENT for
 * unreadable PEM files).  Call before rpc_server_start. */
int rpc_server_listen(rpc_server *srv, const char *addr,
                      const struct rpc_tls *tls);
int rpc_server_start(rpc_server *srv);
/* Stop accepting, let in-flight calls finish for up to grace_ms, cancel
 * the rest, join the workers, free everything, unlink unix sockets.
 * NULL is a no-op. */
void rpc_server_destroy(rpc_server *srv, int grace_ms);

/* ---- client ---- */
/* target: "unix:///abs/path" or "host:port".  tls NULL: plaintext. */
int rpc_client_create(const char *target, const struct rpc_tls *tls,
                      rpc_client **out);
void rpc_client_destroy(rpc_client *cli);
/* One unary call.  Returns an RPC_* code; on RPC_OK *resp is unpacked
 * with resp_desc and owned by the caller
 * (protobuf_c_message_free_unpacked).  The status message is copied into
 * msg (may be NULL).  timeout_ms <= 0: no deadline.  wait_for_ready: wait
 * (until the deadline) for the server to come up instead of failing fast
 * with UNAVAILABLE. */
int rpc_client_call(rpc_client *cli, const char *method,
                    const ProtobufCMessage *req,
                    const ProtobufCMessageDescriptor *resp_desc,
                    ProtobufCMessage **resp, int timeout_ms,
                    int wait_for_ready, char *msg, size_t msg_size);
/* The same with raw request bytes and a malloc'd raw response (tests). */
int rpc_client_call_raw(rpc_client *cli, const char *method,
                        const void *req, size_t req_len, void **resp,
                        size_t *resp_len, int timeout_ms, char *msg,
                        size_t msg_size);

/* ---- process ---- */
/* Block SIGTERM, SIGINT (and SIGPIPE) in the calling thread; threads made
 * afterwards inherit it.  Call before creating servers or clients. */
void rpc_signals_block(void);
/* Wait for SIGTERM or SIGINT (or timeout_ms > 0 elapsed: returns 0).
 * Returns the signal number. */
int rpc_signals_wait(int timeout_ms);

#endif /* TANDEM_RPC_H */
