/*
 * rpc_client.c: the unary RPC client of rpc.h over the gRPC C core.  One
 * channel per client (so one HTTP/2 connection, shared by every thread),
 * one pluck completion queue per call in flight, taken from a small cache.
 */
#include "rpc_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>

#define RPC_CQ_CACHE 16

struct rpc_client {
    grpc_channel *ch;
    char *target;
    /* Idle pluck CQs kept for reuse: making one per call costs ~20% of a
     * small call.  A CQ is used by one call at a time. */
    pthread_mutex_t mu;
    grpc_completion_queue *idle_cq[RPC_CQ_CACHE];
    int n_idle;
};

static grpc_completion_queue *client_cq_get(rpc_client *cli)
{
    grpc_completion_queue *cq = NULL;
    pthread_mutex_lock(&cli->mu);
    if (cli->n_idle > 0)
        cq = cli->idle_cq[--cli->n_idle];
    pthread_mutex_unlock(&cli->mu);
    return cq ? cq : grpc_completion_queue_create_for_pluck(NULL);
}

static void cq_destroy(grpc_completion_queue *cq)
{
    grpc_completion_queue_shutdown(cq);
    grpc_completion_queue_destroy(cq);
}

static void client_cq_put(rpc_client *cli, grpc_completion_queue *cq)
{
    pthread_mutex_lock(&cli->mu);
    if (cli->n_idle < RPC_CQ_CACHE) {
        cli->idle_cq[cli->n_idle++] = cq;
        cq = NULL;
    }
    pthread_mutex_unlock(&cli->mu);
    if (cq)
        cq_destroy(cq);
}

static int client_create(const char *target, const struct rpc_tls *tls,
                         int own, rpc_client **out)
{
    int rc;
    *out = NULL;
    if (!target || !*target)
        return -EINVAL;
    struct rpc__pem p = {0};
    if (tls && (rc = rpc__pem_load(tls, 0, &p, "client")) < 0)
        return rc;
    rpc_client *cli = calloc(1, sizeof *cli);
    if (!cli || !(cli->target = strdup(target))) {
        free(cli);
        rpc__pem_free(&p);
        return -ENOMEM;
    }
    pthread_mutex_init(&cli->mu, NULL);

    rpc__lib_ref();
    grpc_channel_credentials *creds = rpc__channel_creds(tls ? &p : NULL);
    rpc__pem_free(&p);
    if (!creds) { /* out of memory for the expected server identity */
        rpc__lib_unref();
        pthread_mutex_destroy(&cli->mu);
        free(cli->target);
        free(cli);
        return -ENOMEM;
    }

    grpc_arg args[9];
    size_t n = 0;
    args[n++] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                           .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
                           .value.integer = (int)RPC_DEFAULT_MAX_MSG};
    args[n++] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                           .key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH,
                           .value.integer = (int)RPC_DEFAULT_MAX_MSG};
    /* Reconnect soon after a peer restarts (default: 1 s doubling to
     * 120 s, far too slow for a replication link or a test). */
    args[n++] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                           .key = GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
                           .value.integer = 200};
    args[n++] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                           .key = GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
                           .value.integer = 5000};
    /* Keepalive while calls are active: a peer that vanished without a
     * FIN/RST (cut link, dead host) is detected within ~15 s instead of
     * the kernel's retransmission timeout, and the next call reconnects.
     * Idle connections send nothing. */
    args[n++] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                           .key = GRPC_ARG_KEEPALIVE_TIME_MS,
                           .value.integer = 10000};
    args[n++] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                           .key = GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                           .value.integer = 5000};
    args[n++] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                           .key = GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA,
                           .value.integer = 0};
    if (tls && tls->server_name)
        args[n++] = (grpc_arg){.type = GRPC_ARG_STRING,
                               .key = GRPC_SSL_TARGET_NAME_OVERRIDE_ARG,
                               .value.string = (char *)tls->server_name};
    /* Channels with equal arguments share their connections (the global
     * subchannel pool): a pool of its own gives this one its own. */
    if (own)
        args[n++] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                               .key = GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL,
                               .value.integer = 1};
    grpc_channel_args chargs = {.num_args = n, .args = args};
    cli->ch = grpc_channel_create(target, creds, &chargs);
    grpc_channel_credentials_release(creds);
    *out = cli;
    return 0;
}

int rpc_client_create(const char *target, const struct rpc_tls *tls,
                      rpc_client **out)
{
    return client_create(target, tls, 0, out);
}

int rpc_client_create_own(const char *target, const struct rpc_tls *tls,
                          rpc_client **out)
{
    return client_create(target, tls, 1, out);
}

void rpc_client_destroy(rpc_client *cli)
{
    if (!cli)
        return;
    grpc_channel_destroy(cli->ch);
    for (int i = 0; i < cli->n_idle; i++)
        cq_destroy(cli->idle_cq[i]);
    pthread_mutex_destroy(&cli->mu);
    free(cli->target);
    free(cli);
    rpc__lib_unref();
}

static void copy_msg(char *msg, size_t size, const char *s, size_t len)
{
    if (!msg || !size)
        return;
    if (len >= size)
        len = size - 1;
    memcpy(msg, s, len);
    msg[len] = 0;
}

/* The unary call itself: req slice in (consumed), response slice out
 * (only on RPC_OK; caller unrefs). */
static int client_call(rpc_client *cli, const char *method, grpc_slice req,
                       grpc_slice *resp, int timeout_ms, int wait_for_ready,
                       char *msg, size_t msg_size)
{
    copy_msg(msg, msg_size, "", 0);
    *resp = grpc_empty_slice();
    if (!cli || !method || method[0] != '/') {
        grpc_slice_unref(req);
        copy_msg(msg, msg_size, "bad method name", 15);
        return RPC_INVALID_ARGUMENT;
    }
    grpc_completion_queue *cq = client_cq_get(cli);
    grpc_slice mslice = grpc_slice_from_copied_string(method);
    grpc_call *call = grpc_channel_create_call(
        cli->ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, mslice, NULL,
        rpc__deadline_after_ms(timeout_ms), NULL);
    grpc_slice_unref(mslice); /* the call holds its own reference */

    grpc_byte_buffer *req_bb = grpc_raw_byte_buffer_create(&req, 1);
    grpc_slice_unref(req);
    grpc_byte_buffer *resp_bb = NULL;
    grpc_metadata_array init_md, trail_md;
    grpc_metadata_array_init(&init_md);
    grpc_metadata_array_init(&trail_md);
    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();

    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    if (wait_for_ready)
        ops[0].flags = GRPC_INITIAL_METADATA_WAIT_FOR_READY;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = req_bb;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &init_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &resp_bb;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &trail_md;
    ops[5].data.recv_status_on_client.status = &status;
    ops[5].data.recv_status_on_client.status_details = &details;

    int tag;
    int code;
    grpc_call_error e = grpc_call_start_batch(call, ops, 6, &tag, NULL);
    if (e != GRPC_CALL_OK) {
        code = RPC_INTERNAL;
        char m[64];
        int n = snprintf(m, sizeof m, "grpc_call_start_batch: %d", (int)e);
        copy_msg(msg, msg_size, m, (size_t)n);
    } else {
        /* RECV_STATUS_ON_CLIENT always completes; the outcome, including
         * locally made DEADLINE_EXCEEDED/UNAVAILABLE, is in status. */
        grpc_completion_queue_pluck(cq, &tag,
                                    gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        code = (int)status;
        if (code < 0 || code > RPC_UNAUTHENTICATED)
            code = RPC_UNKNOWN;
        copy_msg(msg, msg_size, (const char *)GRPC_SLICE_START_PTR(details),
                 GRPC_SLICE_LENGTH(details));
        if (code == RPC_OK) {
            grpc_byte_buffer_reader rd;
            if (!resp_bb) {
                code = RPC_INTERNAL;
                copy_msg(msg, msg_size, "no response message", 19);
            } else if (!grpc_byte_buffer_reader_init(&rd, resp_bb)) {
                code = RPC_INTERNAL;
                copy_msg(msg, msg_size, "cannot read response", 20);
            } else {
                *resp = grpc_byte_buffer_reader_readall(&rd);
                grpc_byte_buffer_reader_destroy(&rd);
            }
        }
    }

    grpc_byte_buffer_destroy(req_bb);
    if (resp_bb)
        grpc_byte_buffer_destroy(resp_bb);
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&init_md);
    grpc_metadata_array_destroy(&trail_md);
    grpc_call_unref(call);
    client_cq_put(cli, cq); /* empty again: the only batch completed */
    return code;
}

int rpc_client_call(rpc_client *cli, const char *method,
                    const ProtobufCMessage *req,
                    const ProtobufCMessageDescriptor *resp_desc,
                    ProtobufCMessage **resp, int timeout_ms,
                    int wait_for_ready, char *msg, size_t msg_size)
{
    *resp = NULL;
    if (!req || !resp_desc) {
        copy_msg(msg, msg_size, "no request or response type", 28);
        return RPC_INVALID_ARGUMENT;
    }
    size_t len = protobuf_c_message_get_packed_size(req);
    if (len > RPC_DEFAULT_MAX_MSG) {
        copy_msg(msg, msg_size, "request too large", 17);
        return RPC_RESOURCE_EXHAUSTED;
    }
    grpc_slice s = grpc_slice_malloc(len);
    protobuf_c_message_pack(req, GRPC_SLICE_START_PTR(s));
    grpc_slice out;
    int code = client_call(cli, method, s, &out, timeout_ms, wait_for_ready,
                           msg, msg_size);
    if (code == RPC_OK) {
        *resp = protobuf_c_message_unpack(resp_desc, NULL,
                                          GRPC_SLICE_LENGTH(out),
                                          GRPC_SLICE_START_PTR(out));
        if (!*resp) {
            code = RPC_INTERNAL;
            char m[256];
            int n = snprintf(m, sizeof m, "response does not decode as %s",
                             resp_desc->name);
            copy_msg(msg, msg_size, m, (size_t)n < sizeof m ? (size_t)n
                                                           : sizeof m - 1);
        }
    }
    grpc_slice_unref(out);
    return code;
}

int rpc_client_call_raw(rpc_client *cli, const char *method, const void *req,
                        size_t req_len, void **resp, size_t *resp_len,
                        int timeout_ms, char *msg, size_t msg_size)
{
    *resp = NULL;
    *resp_len = 0;
    if (req_len > RPC_DEFAULT_MAX_MSG || (req_len && !req)) {
        copy_msg(msg, msg_size, "bad request buffer", 18);
        return RPC_INVALID_ARGUMENT;
    }
    grpc_slice s = grpc_slice_from_copied_buffer(req, req_len);
    grpc_slice out;
    int code = client_call(cli, method, s, &out, timeout_ms, 0, msg, msg_size);
    if (code == RPC_OK) {
        size_t n = GRPC_SLICE_LENGTH(out);
        *resp = malloc(n ? n : 1);
        if (!*resp) {
            code = RPC_RESOURCE_EXHAUSTED;
            copy_msg(msg, msg_size, "out of memory", 13);
        } else {
            memcpy(*resp, GRPC_SLICE_START_PTR(out), n);
            *resp_len = n;
        }
    }
    grpc_slice_unref(out);
    return code;
}
