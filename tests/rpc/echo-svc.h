/*
 * echo-svc.h: the test service "tandem.test.Echo" over rpc.h, shared by
 * tests/unit/test-rpc.c and tests/rpc/echo-server.c (header only; the
 * Node.js side describes the same service in tests/node/echo.proto).
 *
 * Messages are the well-known wrapper types, so no test .proto has to be
 * compiled into libgen:
 *   Echo  (StringValue) -> StringValue   the same text back ("?method":
 *                                        the method name the server saw)
 *   Fail  (StringValue "CODE text") -> error CODE with message "text"
 *   Sleep (Int64Value ms) -> Int64Value  sleeps ms, returns the deadline
 *                                        left at start; CANCELLED if it saw
 *                                        rpc_ctx_cancelled() first
 *   Big   (Int64Value n) -> BytesValue   n bytes of a known pattern
 *   Peer  (StringValue) -> StringValue   the client's verified identity
 *   PeerUri (StringValue prefix) -> StringValue   the client certificate's
 *                                        URI SAN with that prefix; errors:
 *                                        NOT_FOUND (-ENOENT), FAILED_
 *                                        PRECONDITION (-ENOTUNIQ),
 *                                        OUT_OF_RANGE (-ERANGE), INTERNAL
 *                                        (other), message "rc=N peer=..."
 *   PeerUriSmall: PeerUri into a 16-byte buffer
 *   Empty (StringValue) -> StringValue   OK with no response (defaults)
 *   BadCode (StringValue) -> StringValue handler returns -EIO (a bug)
 *   WrongType (StringValue) -> StringValue handler returns an Int64Value
 */
#ifndef TANDEM_TEST_ECHO_SVC_H
#define TANDEM_TEST_ECHO_SVC_H

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "google/protobuf/wrappers.pb-c.h"
#include "rpc.h"

/* What the handlers saw, for the tests to check (svc argument). */
struct echo_stats {
    atomic_int calls;           /* every handler entry */
    atomic_int sleeping;        /* Sleep handlers running now */
    atomic_int sleep_done;      /* Sleep handlers that ran to the end */
    atomic_int sleep_cancelled; /* Sleep handlers that saw cancellation */
    atomic_llong last_remaining_ms;
};

static inline void echo_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

static inline Google__Protobuf__StringValue *echo_new_string(const char *s)
{
    Google__Protobuf__StringValue *r = malloc(sizeof *r);
    if (!r)
        return NULL;
    google__protobuf__string_value__init(r);
    r->value = strdup(s);
    if (!r->value) {
        free(r);
        return NULL;
    }
    return r;
}

static inline int echo_echo(void *svc, rpc_ctx *ctx,
                            const ProtobufCMessage *req,
                            ProtobufCMessage **resp)
{
    struct echo_stats *st = svc;
    const Google__Protobuf__StringValue *in =
        (const Google__Protobuf__StringValue *)req;
    if (st)
        atomic_fetch_add(&st->calls, 1);
    /* "?method" asks for rpc_ctx_method() instead of an echo. */
    const char *text =
        strcmp(in->value, "?method") == 0 ? rpc_ctx_method(ctx) : in->value;
    Google__Protobuf__StringValue *out = echo_new_string(text);
    if (!out)
        return rpc_ctx_error(ctx, RPC_RESOURCE_EXHAUSTED, "out of memory");
    *resp = &out->base;
    return RPC_OK;
}

static inline int echo_fail(void *svc, rpc_ctx *ctx,
                            const ProtobufCMessage *req,
                            ProtobufCMessage **resp)
{
    const Google__Protobuf__StringValue *in =
        (const Google__Protobuf__StringValue *)req;
    char *end;
    long code = strtol(in->value, &end, 10);
    if (end == in->value)
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
                             "want \"CODE text\", got \"%s\"", in->value);
    if (*end == ' ')
        end++;
    /* A response set on an error is dropped (and freed) by the layer. */
    Google__Protobuf__StringValue *junk = echo_new_string("ignored");
    if (junk)
        *resp = &junk->base;
    return rpc_ctx_error(ctx, (int)code, "%s", end);
}

static inline int echo_sleep(void *svc, rpc_ctx *ctx,
                             const ProtobufCMessage *req,
                             ProtobufCMessage **resp)
{
    struct echo_stats *st = svc;
    const Google__Protobuf__Int64Value *in =
        (const Google__Protobuf__Int64Value *)req;
    int64_t remaining = rpc_ctx_remaining_ms(ctx);
    if (st) {
        atomic_store(&st->last_remaining_ms, remaining);
        atomic_fetch_add(&st->sleeping, 1);
    }
    int cancelled = 0;
    for (int64_t left = in->value; left > 0; left -= 10) {
        if (rpc_ctx_cancelled(ctx)) {
            cancelled = 1;
            break;
        }
        echo_sleep_ms(left < 10 ? (long)left : 10);
    }
    if (st) {
        atomic_fetch_sub(&st->sleeping, 1);
        atomic_fetch_add(cancelled ? &st->sleep_cancelled : &st->sleep_done,
                         1);
    }
    if (cancelled)
        return rpc_ctx_error(ctx, RPC_CANCELLED, "gave up: call cancelled");
    Google__Protobuf__Int64Value *out = malloc(sizeof *out);
    if (!out)
        return RPC_RESOURCE_EXHAUSTED;
    google__protobuf__int64_value__init(out);
    out->value = remaining;
    *resp = &out->base;
    return RPC_OK;
}

static inline uint8_t echo_big_byte(size_t i)
{
    return (uint8_t)(i * 7 + (i >> 13));
}

static inline int echo_big(void *svc, rpc_ctx *ctx,
                           const ProtobufCMessage *req,
                           ProtobufCMessage **resp)
{
    const Google__Protobuf__Int64Value *in =
        (const Google__Protobuf__Int64Value *)req;
    if (in->value < 0 || in->value > (int64_t)1 << 30)
        return rpc_ctx_error(ctx, RPC_OUT_OF_RANGE, "n=%lld",
                             (long long)in->value);
    Google__Protobuf__BytesValue *out = malloc(sizeof *out);
    if (!out)
        return RPC_RESOURCE_EXHAUSTED;
    google__protobuf__bytes_value__init(out);
    out->value.len = (size_t)in->value;
    out->value.data = malloc(out->value.len ? out->value.len : 1);
    if (!out->value.data) {
        free(out);
        return RPC_RESOURCE_EXHAUSTED;
    }
    for (size_t i = 0; i < out->value.len; i++)
        out->value.data[i] = echo_big_byte(i);
    *resp = &out->base;
    return RPC_OK;
}

static inline int echo_peer(void *svc, rpc_ctx *ctx,
                            const ProtobufCMessage *req,
                            ProtobufCMessage **resp)
{
    char id[256];
    int rc = rpc_ctx_peer_identity(ctx, id, sizeof id);
    if (rc < 0)
        return rpc_ctx_error(ctx, RPC_UNAUTHENTICATED,
                             "no verified identity (%d) from %s", rc,
                             rpc_ctx_peer(ctx));
    Google__Protobuf__StringValue *out = echo_new_string(id);
    if (!out)
        return RPC_RESOURCE_EXHAUSTED;
    *resp = &out->base;
    return RPC_OK;
}

static inline int echo_peer_uri_into(rpc_ctx *ctx,
                                     const ProtobufCMessage *req,
                                     ProtobufCMessage **resp, char *buf,
                                     size_t size)
{
    const Google__Protobuf__StringValue *in =
        (const Google__Protobuf__StringValue *)req;
    int rc = rpc_ctx_peer_uri(ctx, in->value, buf, size);
    if (rc < 0) {
        int code = rc == -ENOENT     ? RPC_NOT_FOUND
                   : rc == -ENOTUNIQ ? RPC_FAILED_PRECONDITION
                   : rc == -ERANGE   ? RPC_OUT_OF_RANGE
                                     : RPC_INTERNAL;
        return rpc_ctx_error(ctx, code, "rc=%d peer=%s", rc,
                             rpc_ctx_peer(ctx));
    }
    Google__Protobuf__StringValue *out = echo_new_string(buf);
    if (!out)
        return RPC_RESOURCE_EXHAUSTED;
    *resp = &out->base;
    return RPC_OK;
}

static inline int echo_peer_uri(void *svc, rpc_ctx *ctx,
                                const ProtobufCMessage *req,
                                ProtobufCMessage **resp)
{
    char uri[2048];
    return echo_peer_uri_into(ctx, req, resp, uri, sizeof uri);
}

static inline int echo_peer_uri_small(void *svc, rpc_ctx *ctx,
                                      const ProtobufCMessage *req,
                                      ProtobufCMessage **resp)
{
    char uri[16];
    return echo_peer_uri_into(ctx, req, resp, uri, sizeof uri);
}

static inline int echo_empty(void *svc, rpc_ctx *ctx,
                             const ProtobufCMessage *req,
                             ProtobufCMessage **resp)
{
    return RPC_OK;
}

static inline int echo_bad_code(void *svc, rpc_ctx *ctx,
                                const ProtobufCMessage *req,
                                ProtobufCMessage **resp)
{
    return -EIO;
}

static inline int echo_wrong_type(void *svc, rpc_ctx *ctx,
                                  const ProtobufCMessage *req,
                                  ProtobufCMessage **resp)
{
    Google__Protobuf__Int64Value *out = malloc(sizeof *out);
    if (!out)
        return RPC_RESOURCE_EXHAUSTED;
    google__protobuf__int64_value__init(out);
    *resp = &out->base;
    return RPC_OK;
}

#define ECHO_SVC "/tandem.test.Echo/"
#define ECHO_STR &google__protobuf__string_value__descriptor
#define ECHO_I64 &google__protobuf__int64_value__descriptor
#define ECHO_BYTES &google__protobuf__bytes_value__descriptor

static const struct rpc_method echo_methods[] = {
    {ECHO_SVC "Echo", ECHO_STR, ECHO_STR, echo_echo},
    {ECHO_SVC "Fail", ECHO_STR, ECHO_STR, echo_fail},
    {ECHO_SVC "Sleep", ECHO_I64, ECHO_I64, echo_sleep},
    {ECHO_SVC "Big", ECHO_I64, ECHO_BYTES, echo_big},
    {ECHO_SVC "Peer", ECHO_STR, ECHO_STR, echo_peer},
    {ECHO_SVC "PeerUri", ECHO_STR, ECHO_STR, echo_peer_uri},
    {ECHO_SVC "PeerUriSmall", ECHO_STR, ECHO_STR, echo_peer_uri_small},
    {ECHO_SVC "Empty", ECHO_STR, ECHO_STR, echo_empty},
    {ECHO_SVC "BadCode", ECHO_STR, ECHO_STR, echo_bad_code},
    {ECHO_SVC "WrongType", ECHO_STR, ECHO_STR, echo_wrong_type},
};
#define ECHO_N_METHODS (sizeof echo_methods / sizeof echo_methods[0])

#endif /* TANDEM_TEST_ECHO_SVC_H */
