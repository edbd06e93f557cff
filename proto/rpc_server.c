/*
 * rpc_server.c: the unary RPC server of rpc.h over the gRPC C core: the
 * per-call state machine on the completion-queue (CQ) threads, the
 * handler pool, listeners (TCP and unix sockets) and shutdown.
 *
 * Call life (tags are small structs inside the call's rpc_ctx, so a
 * completion names both the call and the step):
 *
 *   request_call --arrives--> start RECV_CLOSE_ON_SERVER (TAG_CLOSE: tells
 *        |                    us early when the client cancels)
 *        |--unknown method--> finish(UNIMPLEMENTED)
 *        '--known---------->  RECV_MESSAGE (TAG_RECV) --> queue to the pool
 *   worker: unpack, handler, pack --> finish: SEND_INITIAL_METADATA +
 *        SEND_MESSAGE + SEND_STATUS_FROM_SERVER (TAG_FINISH)
 *
 * A ctx holds two references while a call is live: one for the chain of
 * batches above (request, recv, finish) and one for the close batch.  The
 * last of the two completions frees it.  Only one batch of the chain is in
 * flight at a time, so the chain itself needs no lock.
 */
#include "rpc_int.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>

#include "tbase.h"
#include "tlog.h"

#define RPC_DEFAULT_THREADS 4
#define RPC_DEFAULT_MAX_THREADS 64
#define RPC_NCQ 2        /* completion-queue threads per server */
#define RPC_PREPOST 8    /* request_call kept outstanding per CQ */
#define RPC_ERRMSG 1024  /* status message limit (rpc_ctx_error) */

enum tag_kind { TAG_NEW_CALL, TAG_RECV, TAG_CLOSE, TAG_FINISH, TAG_SHUTDOWN };

struct rpc_tag {
    enum tag_kind kind;
    rpc_ctx *ctx; /* NULL for TAG_SHUTDOWN */
};

struct rpc_cq {
    rpc_server *srv;
    grpc_completion_queue *cq;
    pthread_t thread;
    int running; /* thread created */
};

struct rpc_ctx {
    rpc_server *srv;
    struct rpc_cq *q;               /* CQ the call is bound to */
    grpc_call *call;                /* owned; unref'd when ctx dies */
    grpc_call_details details;      /* method, host, deadline */
    grpc_metadata_array md;         /* client's initial metadata */
    grpc_byte_buffer *req_bb;       /* RECV_MESSAGE result, owned */
    grpc_byte_buffer *resp_bb;      /* SEND_MESSAGE input, owned */
    const struct rpc_method *m;     /* NULL: unknown method */
    char *method;                   /* copy of details.method */
    char *peer;                     /* lazily from grpc_call_get_peer */
    int close_cancelled;            /* RECV_CLOSE_ON_SERVER output */
    atomic_int cancelled;           /* client gone (see rpc_ctx_cancelled) */
    atomic_int refs;                /* chain + close batch */
    int code;                       /* status sent, for the log line */
    int64_t t0_ms;                  /* arrival, for the log line */
    struct rpc_tag t_new, t_recv, t_close, t_finish;
    rpc_ctx *next;                  /* pool queue link */
    char errmsg[RPC_ERRMSG];        /* rpc_ctx_error text */
};

struct rpc_server {
    grpc_server *server;
    const struct rpc_method *methods;
    size_t n_methods;
    void *svc;
    size_t max_msg;
    int n_threads, max_threads;
    struct rpc_cq cqs[RPC_NCQ];
    struct rpc_tag t_shutdown;

    pthread_mutex_t mu;        /* guards everything below */
    pthread_cond_t work_cv;    /* queue not empty, or stopping */
    pthread_cond_t state_cv;   /* live reached 0, or shutdown notified */
    rpc_ctx *q_head, *q_tail;  /* calls waiting for a worker */
    size_t q_len;
    int n_workers, idle;
    pthread_t *workers;        /* max_threads slots */
    int stopping;              /* workers exit once the queue is empty */
    long live;                 /* ctxs allocated (incl. request_calls) */
    int notified;              /* shutdown_and_notify tag arrived */
    int started;
    atomic_int hard_cancel;    /* grace period over: handlers should stop */

    char **unix_paths;         /* socket files to unlink at destroy */
    size_t n_unix;
};

static void ctx_free(rpc_ctx *ctx)
{
    rpc_server *srv = ctx->srv;
    if (ctx->call)
        grpc_call_unref(ctx->call); /* cancels it if it is not finished */
    if (ctx->req_bb)
        grpc_byte_buffer_destroy(ctx->req_bb);
    if (ctx->resp_bb)
        grpc_byte_buffer_destroy(ctx->resp_bb);
    grpc_call_details_destroy(&ctx->details);
    grpc_metadata_array_destroy(&ctx->md);
    free(ctx->method);
    if (ctx->peer)
        gpr_free(ctx->peer);
    free(ctx);
    pthread_mutex_lock(&srv->mu);
    if (--srv->live == 0)
        pthread_cond_broadcast(&srv->state_cv);
    pthread_mutex_unlock(&srv->mu);
}

static void ctx_unref(rpc_ctx *ctx)
{
    if (atomic_fetch_sub(&ctx->refs, 1) == 1)
        ctx_free(ctx);
}

static void request_new_call(struct rpc_cq *q)
{
    rpc_server *srv = q->srv;
    rpc_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) {
        /* The other outstanding requests keep the server serving. */
        tlog_error("rpc.oom", "what=request_call");
        return;
    }
    ctx->srv = srv;
    ctx->q = q;
    atomic_init(&ctx->refs, 1);
    atomic_init(&ctx->cancelled, 0);
    ctx->t_new = (struct rpc_tag){TAG_NEW_CALL, ctx};
    ctx->t_recv = (struct rpc_tag){TAG_RECV, ctx};
    ctx->t_close = (struct rpc_tag){TAG_CLOSE, ctx};
    ctx->t_finish = (struct rpc_tag){TAG_FINISH, ctx};
    grpc_call_details_init(&ctx->details);
    grpc_metadata_array_init(&ctx->md);
    pthread_mutex_lock(&srv->mu);
    srv->live++;
    pthread_mutex_unlock(&srv->mu);
    grpc_call_error e = grpc_server_request_call(
        srv->server, &ctx->call, &ctx->details, &ctx->md, q->cq, q->cq,
        &ctx->t_new);
    if (e != GRPC_CALL_OK) {
        tlog_error("rpc.request_call_failed", "err=%d", (int)e);
        ctx_free(ctx);
    }
}

static const struct rpc_method *find_method(const rpc_server *srv,
                                            grpc_slice name)
{
    for (size_t i = 0; i < srv->n_methods; i++)
        if (grpc_slice_str_cmp(name, srv->methods[i].name) == 0)
            return &srv->methods[i];
    return NULL;
}

static char *slice_strdup(grpc_slice s)
{
    size_t n = GRPC_SLICE_LENGTH(s);
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, GRPC_SLICE_START_PTR(s), n);
        p[n] = 0;
    }
    return p;
}

/* Last batch of the chain: metadata, response (OK only), status.  Takes
 * over the chain reference. */
static void finish_call(rpc_ctx *ctx, int code, const char *message)
{
    grpc_op ops[3];
    grpc_op *op = ops;
    memset(ops, 0, sizeof ops); /* flags and reserved fields must be 0 */

    op->op = GRPC_OP_SEND_INITIAL_METADATA;
    op++;
    if (code == RPC_OK && ctx->resp_bb) {
        op->op = GRPC_OP_SEND_MESSAGE;
        op->data.send_message.send_message = ctx->resp_bb;
        op++;
    }
    /* Core takes its own reference on the details slice. */
    grpc_slice details =
        grpc_slice_from_copied_string(message && *message ? message : "");
    op->op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    op->data.send_status_from_server.status = (grpc_status_code)code;
    op->data.send_status_from_server.status_details =
        message && *message ? &details : NULL;
    op++;

    ctx->code = code;
    grpc_call_error e = grpc_call_start_batch(
        ctx->call, ops, (size_t)(op - ops), &ctx->t_finish, NULL);
    grpc_slice_unref(details);
    if (e != GRPC_CALL_OK) {
        tlog_error("rpc.start_batch_failed", "method=%s step=finish err=%d",
                   ctx->method ? ctx->method : "?", (int)e);
        ctx_unref(ctx);
    }
}

static void pool_enqueue(rpc_server *srv, rpc_ctx *ctx);

static void on_new_call(rpc_ctx *ctx, int ok)
{
    if (!ok) { /* flushed by shutdown: no call was made */
        ctx_free(ctx);
        return;
    }
    /* Re-arm first so the number of outstanding requests stays constant. */
    request_new_call(ctx->q);
    ctx->t0_ms = tb_mono_ms();
    ctx->method = slice_strdup(ctx->details.method);
    if (!ctx->method) {
        ctx_unref(ctx); /* the call gets cancelled by the unref */
        return;
    }

    /* The close batch stays pending for the whole call: it completes early
     * when the client cancels or the deadline passes. */
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &ctx->close_cancelled;
    atomic_fetch_add(&ctx->refs, 1);
    grpc_call_error e =
        grpc_call_start_batch(ctx->call, &op, 1, &ctx->t_close, NULL);
    if (e != GRPC_CALL_OK) {
        tlog_error("rpc.start_batch_failed", "method=%s step=close err=%d",
                   ctx->method, (int)e);
        atomic_fetch_sub(&ctx->refs, 1);
        ctx_unref(ctx);
        return;
    }

    ctx->m = find_method(ctx->srv, ctx->details.method);
    if (!ctx->m) {
        /* Reply with a status only; the body is never read. */
        char msg[RPC_ERRMSG];
        snprintf(msg, sizeof msg, "unknown method %s", ctx->method);
        finish_call(ctx, RPC_UNIMPLEMENTED, msg);
        return;
    }
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &ctx->req_bb;
    e = grpc_call_start_batch(ctx->call, &op, 1, &ctx->t_recv, NULL);
    if (e != GRPC_CALL_OK) {
        tlog_error("rpc.start_batch_failed", "method=%s step=recv err=%d",
                   ctx->method, (int)e);
        ctx_unref(ctx);
    }
}

static void on_recv(rpc_ctx *ctx, int ok)
{
    if (!ok) { /* cancelled before the request arrived */
        ctx_unref(ctx);
        return;
    }
    if (!ctx->req_bb) {
        finish_call(ctx, RPC_INVALID_ARGUMENT,
                    "the client sent no request message");
        return;
    }
    pool_enqueue(ctx->srv, ctx);
}

static void on_finish(rpc_ctx *ctx, int ok)
{
    int64_t ms = tb_mono_ms() - ctx->t0_ms;
    if (!ok)
        tlog_debug("rpc.status_undelivered", "method=%s code=%s ms=%lld",
                   ctx->method, rpc_code_name(ctx->code), (long long)ms);
    else if (ctx->code == RPC_INTERNAL || ctx->code == RPC_UNKNOWN)
        tlog_warn("rpc.call", "method=%s code=%s ms=%lld", ctx->method,
                  rpc_code_name(ctx->code), (long long)ms);
    else
        tlog_debug("rpc.call", "method=%s code=%s ms=%lld", ctx->method,
                   rpc_code_name(ctx->code), (long long)ms);
    ctx_unref(ctx);
}

static void on_close(rpc_ctx *ctx, int ok)
{
    if (!ok || ctx->close_cancelled)
        atomic_store(&ctx->cancelled, 1);
    ctx_unref(ctx);
}

static void on_shutdown_notified(rpc_server *srv)
{
    pthread_mutex_lock(&srv->mu);
    srv->notified = 1;
    pthread_cond_broadcast(&srv->state_cv);
    pthread_mutex_unlock(&srv->mu);
}

static void *cq_main(void *arg)
{
    struct rpc_cq *q = arg;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(
            q->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break; /* shut down and drained */
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        struct rpc_tag *t = ev.tag;
        switch (t->kind) {
        case TAG_NEW_CALL: on_new_call(t->ctx, ev.success); break;
        case TAG_RECV: on_recv(t->ctx, ev.success); break;
        case TAG_CLOSE: on_close(t->ctx, ev.success); break;
        case TAG_FINISH: on_finish(t->ctx, ev.success); break;
        case TAG_SHUTDOWN: on_shutdown_notified(q->srv); break;
        }
    }
    return NULL;
}

/* ---- handler pool ---- */

static int ctx_gone(const rpc_ctx *ctx)
{
    return atomic_load(&ctx->cancelled) ||
           (ctx->srv && atomic_load(&ctx->srv->hard_cancel));
}

/* Worker side of a call: decode, handle, encode, finish. */
static void run_call(rpc_ctx *ctx)
{
    rpc_server *srv = ctx->srv;
    const struct rpc_method *m = ctx->m;
    ProtobufCMessage *req = NULL, *resp = NULL;
    int code;

    if (ctx_gone(ctx)) {
        /* Waited in the queue past its deadline or the shutdown: nobody
         * listens any more, do not run the handler. */
        ctx_unref(ctx);
        return;
    }
    if (rpc_ctx_remaining_ms(ctx) <= 0) {
        finish_call(ctx, RPC_DEADLINE_EXCEEDED, "deadline exceeded");
        return;
    }

    grpc_byte_buffer_reader rd;
    if (!grpc_byte_buffer_reader_init(&rd, ctx->req_bb)) {
        /* Compressed with an algorithm we cannot undo. */
        finish_call(ctx, RPC_INVALID_ARGUMENT, "cannot read request bytes");
        return;
    }
    grpc_slice s = grpc_byte_buffer_reader_readall(&rd);
    grpc_byte_buffer_reader_destroy(&rd);
    grpc_byte_buffer_destroy(ctx->req_bb);
    ctx->req_bb = NULL;
    req = protobuf_c_message_unpack(m->req_desc, NULL, GRPC_SLICE_LENGTH(s),
                                    GRPC_SLICE_START_PTR(s));
    size_t req_len = GRPC_SLICE_LENGTH(s);
    grpc_slice_unref(s);
    if (!req) {
        char q[256];
        tlog_info("rpc.bad_request", "method=%s bytes=%zu type=%s",
                  ctx->method, req_len,
                  tlog_q(q, sizeof q, m->req_desc->name));
        finish_call(ctx, RPC_INVALID_ARGUMENT,
                    "request does not decode as the method's input type");
        return;
    }

    ctx->errmsg[0] = 0;
    code = m->fn(srv->svc, ctx, req, &resp);
    protobuf_c_message_free_unpacked(req, NULL);

    if (ctx_gone(ctx)) {
        /* The client cancelled or the server is stopping: nobody reads
         * the answer. */
        tlog_debug("rpc.answer_dropped", "method=%s code=%s ms=%lld",
                   ctx->method, rpc_code_name(code),
                   (long long)(tb_mono_ms() - ctx->t0_ms));
        if (resp)
            protobuf_c_message_free_unpacked(resp, NULL);
        ctx_unref(ctx);
        return;
    }
    if (rpc_ctx_remaining_ms(ctx) <= 0) {
        /* Too late, whatever the handler says: the client's own timer
         * may lag, and an answer after the deadline must not pass for a
         * success (the caller retries; handlers are idempotent). */
        if (resp)
            protobuf_c_message_free_unpacked(resp, NULL);
        finish_call(ctx, RPC_DEADLINE_EXCEEDED,
                    "deadline exceeded while handling");
        return;
    }

    if (code < 0 || code > RPC_UNAUTHENTICATED) {
        tlog_error("rpc.bad_handler_code", "method=%s code=%d", ctx->method,
                   code);
        snprintf(ctx->errmsg, sizeof ctx->errmsg, "handler returned %d",
                 code);
        code = RPC_INTERNAL;
    }
    if (code != RPC_OK) {
        if (resp)
            protobuf_c_message_free_unpacked(resp, NULL);
        finish_call(ctx, code, ctx->errmsg);
        return;
    }

    size_t len = 0;
    if (resp) {
        if (resp->descriptor != m->resp_desc) {
            tlog_error("rpc.bad_handler_response", "method=%s type=%s",
                       ctx->method, resp->descriptor->name);
            protobuf_c_message_free_unpacked(resp, NULL);
            finish_call(ctx, RPC_INTERNAL, "handler returned a wrong type");
            return;
        }
        len = protobuf_c_message_get_packed_size(resp);
    }
    if (len > srv->max_msg) {
        protobuf_c_message_free_unpacked(resp, NULL);
        char msg[128];
        snprintf(msg, sizeof msg, "response of %zu bytes exceeds %zu", len,
                 srv->max_msg);
        finish_call(ctx, RPC_RESOURCE_EXHAUSTED, msg);
        return;
    }
    /* NULL resp: the empty message, which encodes as zero bytes. */
    grpc_slice out = grpc_slice_malloc(len);
    if (resp) {
        protobuf_c_message_pack(resp, GRPC_SLICE_START_PTR(out));
        protobuf_c_message_free_unpacked(resp, NULL);
    }
    ctx->resp_bb = grpc_raw_byte_buffer_create(&out, 1);
    grpc_slice_unref(out);
    finish_call(ctx, RPC_OK, NULL);
}

static void *worker_main(void *arg)
{
    rpc_server *srv = arg;
    pthread_mutex_lock(&srv->mu);
    for (;;) {
        while (!srv->q_head && !srv->stopping) {
            srv->idle++;
            pthread_cond_wait(&srv->work_cv, &srv->mu);
            srv->idle--;
        }
        rpc_ctx *ctx = srv->q_head;
        if (!ctx)
            break; /* stopping and nothing left */
        srv->q_head = ctx->next;
        if (!srv->q_head)
            srv->q_tail = NULL;
        srv->q_len--;
        pthread_mutex_unlock(&srv->mu);
        run_call(ctx);
        pthread_mutex_lock(&srv->mu);
    }
    pthread_mutex_unlock(&srv->mu);
    return NULL;
}

/* Called with srv->mu held. */
static int pool_spawn_locked(rpc_server *srv)
{
    if (srv->n_workers >= srv->max_threads)
        return -EAGAIN;
    int e = pthread_create(&srv->workers[srv->n_workers], NULL, worker_main,
                           srv);
    if (e) {
        tlog_error("rpc.thread_create_failed", "err=%s", strerror(e));
        return -e;
    }
    srv->n_workers++;
    return 0;
}

static void pool_enqueue(rpc_server *srv, rpc_ctx *ctx)
{
    ctx->next = NULL;
    pthread_mutex_lock(&srv->mu);
    if (srv->q_tail)
        srv->q_tail->next = ctx;
    else
        srv->q_head = ctx;
    srv->q_tail = ctx;
    srv->q_len++;
    /* Grow while more calls wait than workers are free, so a handler that
     * blocks (mkfs) never holds up the others. */
    if (srv->q_len > (size_t)srv->idle && pool_spawn_locked(srv) == 0)
        tlog_debug("rpc.pool_grow", "workers=%d", srv->n_workers);
    pthread_cond_signal(&srv->work_cv);
    pthread_mutex_unlock(&srv->mu);
}

/* ---- handler-side accessors ---- */

int rpc_ctx_error(rpc_ctx *ctx, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->errmsg, sizeof ctx->errmsg, fmt, ap);
    va_end(ap);
    return code;
}

int64_t rpc_ctx_remaining_ms(const rpc_ctx *ctx)
{
    gpr_timespec d = ctx->details.deadline;
    if (gpr_time_cmp(d, gpr_inf_future(d.clock_type)) == 0)
        return INT64_MAX;
    gpr_timespec left = gpr_time_sub(gpr_convert_clock_type(d, GPR_CLOCK_MONOTONIC),
                                     gpr_now(GPR_CLOCK_MONOTONIC));
    return gpr_time_to_millis(left);
}

const char *rpc_ctx_peer(const rpc_ctx *ctx)
{
    /* Lazily filled: a ctx is only touched by its handler's thread. */
    rpc_ctx *c = (rpc_ctx *)ctx;
    if (!c->peer && c->call)
        c->peer = grpc_call_get_peer(c->call);
    return c->peer ? c->peer : "";
}

grpc_call *rpc__ctx_call(const rpc_ctx *ctx)
{
    return ctx->call;
}

const char *rpc_ctx_method(const rpc_ctx *ctx)
{
    return ctx->method ? ctx->method : "";
}

rpc_ctx *rpc_ctx_detached_new(const char *method)
{
    rpc_ctx *c = calloc(1, sizeof(*c));
    if (!c) return NULL;
    c->details.deadline = gpr_inf_future(GPR_CLOCK_REALTIME);
    c->method = strdup(method ? method : "");
    if (!c->method) {
        free(c);
        return NULL;
    }
    return c;
}

void rpc_ctx_detached_free(rpc_ctx *ctx)
{
    if (!ctx) return;
    free(ctx->method);
    free(ctx);
}

int rpc_ctx_cancelled(const rpc_ctx *ctx)
{
    return ctx_gone(ctx) || rpc_ctx_remaining_ms(ctx) <= 0;
}

/* ---- server lifecycle ---- */

int rpc_server_create(const struct rpc_server_opts *opts, rpc_server **out)
{
    *out = NULL;
    if (!opts || (opts->n_methods && !opts->methods) || opts->n_threads < 0 ||
        opts->max_threads < 0)
        return -EINVAL;
    for (size_t i = 0; i < opts->n_methods; i++) {
        const struct rpc_method *m = &opts->methods[i];
        if (!m->name || m->name[0] != '/' || !m->req_desc || !m->resp_desc ||
            !m->fn)
            return -EINVAL;
    }
    rpc_server *srv = calloc(1, sizeof *srv);
    if (!srv)
        return -ENOMEM;
    srv->methods = opts->methods;
    srv->n_methods = opts->n_methods;
    srv->svc = opts->svc;
    srv->max_msg = opts->max_msg ? opts->max_msg : RPC_DEFAULT_MAX_MSG;
    if (srv->max_msg > INT_MAX)
        srv->max_msg = INT_MAX; /* gRPC takes an int */
    srv->n_threads = opts->n_threads ? opts->n_threads : RPC_DEFAULT_THREADS;
    srv->max_threads = opts->max_threads
                           ? opts->max_threads
                           : (srv->n_threads > RPC_DEFAULT_MAX_THREADS
                                  ? srv->n_threads
                                  : RPC_DEFAULT_MAX_THREADS);
    if (srv->max_threads < srv->n_threads)
        srv->max_threads = srv->n_threads;
    srv->workers = calloc((size_t)srv->max_threads, sizeof *srv->workers);
    if (!srv->workers) {
        free(srv);
        return -ENOMEM;
    }
    pthread_mutex_init(&srv->mu, NULL);
    pthread_cond_init(&srv->work_cv, NULL);
    tb_cond_init_mono(&srv->state_cv); /* wait_state's timed waits */
    atomic_init(&srv->hard_cancel, 0);
    srv->t_shutdown = (struct rpc_tag){TAG_SHUTDOWN, NULL};

    rpc__lib_ref();
    grpc_arg args[] = {
        {.type = GRPC_ARG_INTEGER,
         .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
         .value.integer = (int)srv->max_msg},
        {.type = GRPC_ARG_INTEGER,
         .key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH,
         .value.integer = (int)srv->max_msg},
        /* gRPC sets SO_REUSEPORT by default: a second server on the same
         * port would then silently share its connections. */
        {.type = GRPC_ARG_INTEGER,
         .key = GRPC_ARG_ALLOW_REUSEPORT,
         .value.integer = 0},
        /* Accept the keepalive pings our clients (and Go CSI sidecars)
         * send, instead of closing the connection with "too_many_pings". */
        {.type = GRPC_ARG_INTEGER,
         .key = GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
         .value.integer = 5000},
        {.type = GRPC_ARG_INTEGER,
         .key = GRPC_ARG_HTTP2_MAX_PING_STRIKES,
         .value.integer = 0},
    };
    grpc_channel_args chargs = {.num_args = sizeof args / sizeof args[0],
                                .args = args};
    srv->server = grpc_server_create(&chargs, NULL);
    for (int i = 0; i < RPC_NCQ; i++) {
        srv->cqs[i].srv = srv;
        srv->cqs[i].cq = grpc_completion_queue_create_for_next(NULL);
        grpc_server_register_completion_queue(srv->server, srv->cqs[i].cq,
                                              NULL);
    }
    *out = srv;
    return 0;
}

/* Unix socket path checks gRPC does not do: it unlinks any socket file at
 * the path, even one a live server is listening on. */
static int unix_path_check(const char *path)
{
    struct sockaddr_un sa;
    if (path[0] != '/' || strlen(path) >= sizeof sa.sun_path)
        return -EINVAL;
    char dir[sizeof sa.sun_path];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        slash[1] = 0;
    else
        *slash = 0;
    struct stat st;
    if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
        return -ENOENT;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISSOCK(st.st_mode))
        return -EEXIST;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path));
    int live = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return live ? -EADDRINUSE : 0; /* stale: gRPC replaces it */
}

static int tcp_addr_check(const char *addr)
{
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || !colon[1])
        return -EINVAL;
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (errno || *end || port < 0 || port > 65535)
        return -EINVAL;
    return 0;
}

/* Bind the unix socket at path with permission bits mode, never
 * reachable with other bits: gRPC binds it in a fresh private directory
 * next to path (mkdtemp: 0700), the socket file gets its mode there, and
 * rename() puts it in place (replacing a stale socket file as gRPC's own
 * unlink would).  chmod after binding at path instead would leave a window
 * in which anyone the umask lets through could connect, and the kernel
 * queues such connections for the server to accept once it starts.
 * Returns 0 or a negative errno; after a failure past the bind, gRPC keeps
 * an unreachable listener on the removed name until the server is
 * destroyed. */
static int unix_bind_mode(rpc_server *srv, const char *path,
                          grpc_server_credentials *creds, mode_t mode)
{
    struct sockaddr_un sa;
    char dir[sizeof sa.sun_path + 16], tmp[sizeof dir + 2];
    char addr[sizeof tmp + 8];
    const char *slash = strrchr(path, '/'); /* path is absolute */
    snprintf(dir, sizeof dir, "%.*s/.rpc-XXXXXX", (int)(slash - path), path);
    snprintf(tmp, sizeof tmp, "%s/s", dir);
    if (strlen(tmp) >= sizeof sa.sun_path)
        return -ENAMETOOLONG;
    if (!mkdtemp(dir))
        return -errno;
    snprintf(tmp, sizeof tmp, "%s/s", dir);
    snprintf(addr, sizeof addr, "unix://%s", tmp);
    int rc = 0;
    if (grpc_server_add_http2_port(srv->server, addr, creds) <= 0) {
        tlog_error("rpc.listen_failed", "addr=unix://%s", path);
        rc = -EADDRINUSE; /* gRPC logged why (see grpc.log) */
    } else if (chmod(tmp, mode) < 0 || rename(tmp, path) < 0) {
        rc = -errno;
        tlog_error("rpc.listen_failed", "addr=unix://%s err=%s", path,
                   strerror(-rc));
    }
    unlink(tmp); /* gone after the rename; else a failure's leftover */
    rmdir(dir);
    return rc;
}

int rpc_server_listen(rpc_server *srv, const char *addr,
                      const struct rpc_tls *tls)
{
    return rpc_server_listen_mode(srv, addr, tls, 0);
}

int rpc_server_listen_mode(rpc_server *srv, const char *addr,
                           const struct rpc_tls *tls, mode_t mode)
{
    int rc;
    if (!srv || !addr || srv->started || (mode & ~(mode_t)0777))
        return -EINVAL;
    const char *upath = NULL;
    if (strncmp(addr, "unix://", 7) == 0) {
        upath = addr + 7;
        if ((rc = unix_path_check(upath)) < 0)
            return rc;
    } else if (strncmp(addr, "unix:", 5) == 0) {
        return -EINVAL; /* relative unix paths: not in the contract */
    } else if (mode || (rc = tcp_addr_check(addr)) < 0) {
        return mode ? -EINVAL : rc; /* modes are for socket files */
    }

    struct rpc__pem p;
    if (tls && (rc = rpc__pem_load(tls, 1, &p, "server")) < 0)
        return rc;
    grpc_server_credentials *creds = rpc__server_creds(tls ? &p : NULL);
    if (tls)
        rpc__pem_free(&p);
    if (!creds)
        return -EINVAL;
    int port;
    if (upath && mode) {
        rc = unix_bind_mode(srv, upath, creds, mode);
        port = rc < 0 ? rc : 0;
    } else {
        port = grpc_server_add_http2_port(srv->server, addr, creds);
        if (port <= 0) {
            tlog_error("rpc.listen_failed", "addr=%s", addr);
            port = -EADDRINUSE; /* gRPC logged why (see grpc.log) */
        }
    }
    grpc_server_credentials_release(creds);
    if (port < 0)
        return port;
    if (upath) {
        char **np = realloc(srv->unix_paths,
                            (srv->n_unix + 1) * sizeof *srv->unix_paths);
        if (np) {
            srv->unix_paths = np;
            if ((np[srv->n_unix] = strdup(upath)))
                srv->n_unix++;
        }
        port = 0;
    }
    if (mode)
        tlog_info("rpc.listen", "addr=%s tls=%s port=%d mode=%04o", addr,
                  tls ? "mutual" : "none", port, (unsigned)mode);
    else
        tlog_info("rpc.listen", "addr=%s tls=%s port=%d", addr,
                  tls ? "mutual" : "none", port);
    return port;
}

int rpc_server_start(rpc_server *srv)
{
    if (!srv || srv->started)
        return -EINVAL;
    grpc_server_start(srv->server);
    srv->started = 1;
    for (int i = 0; i < RPC_NCQ; i++)
        for (int j = 0; j < RPC_PREPOST; j++)
            request_new_call(&srv->cqs[i]);
    int rc = 0;
    pthread_mutex_lock(&srv->mu);
    for (int i = 0; i < srv->n_threads && rc == 0; i++)
        rc = pool_spawn_locked(srv);
    pthread_mutex_unlock(&srv->mu);
    for (int i = 0; i < RPC_NCQ; i++) {
        int e = pthread_create(&srv->cqs[i].thread, NULL, cq_main,
                               &srv->cqs[i]);
        if (e) {
            rc = -e;
            break;
        }
        srv->cqs[i].running = 1;
    }
    /* On a failure the caller destroys the server, which copes with any
     * subset of threads. */
    return rc;
}

static void wait_state(rpc_server *srv, int *flag_or_null, int64_t ms)
{
    struct timespec until = tb_deadline(CLOCK_MONOTONIC, ms);
    pthread_mutex_lock(&srv->mu);
    while (flag_or_null ? !*flag_or_null : srv->live > 0) {
        if (ms < 0)
            pthread_cond_wait(&srv->state_cv, &srv->mu);
        else if (pthread_cond_timedwait(&srv->state_cv, &srv->mu, &until) ==
                 ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&srv->mu);
}

void rpc_server_destroy(rpc_server *srv, int grace_ms)
{
    if (!srv)
        return;
    int64_t t0 = tb_mono_ms();
    int all_cq_threads = 1;
    for (int i = 0; i < RPC_NCQ; i++)
        all_cq_threads &= srv->cqs[i].running;

    if (srv->started && all_cq_threads) {
        grpc_server_shutdown_and_notify(srv->server, srv->cqs[0].cq,
                                        &srv->t_shutdown);
        wait_state(srv, &srv->notified, grace_ms > 0 ? grace_ms : 0);
        pthread_mutex_lock(&srv->mu);
        int notified = srv->notified;
        pthread_mutex_unlock(&srv->mu);
        if (!notified) {
            /* Grace over: cancel what is left.  Handlers still running see
             * rpc_ctx_cancelled() and their results go nowhere. */
            atomic_store(&srv->hard_cancel, 1);
            grpc_server_cancel_all_calls(srv->server);
            wait_state(srv, &srv->notified, -1);
        }
        /* Every ctx (flushed request_calls, calls whose handler is still
         * running) must be gone before the CQs may shut down: starting a
         * batch on a shut-down CQ is fatal. */
        wait_state(srv, NULL, -1);
    } else {
        /* Never (fully) started: no CQ thread polls, so collect the
         * shutdown notification here. */
        grpc_server_shutdown_and_notify(srv->server, srv->cqs[0].cq,
                                        &srv->t_shutdown);
        if (srv->started) {
            atomic_store(&srv->hard_cancel, 1);
            grpc_server_cancel_all_calls(srv->server);
        }
        /* Poll the CQs no thread serves for the flushed request_calls
         * and, on cq 0, the notification; then nothing else comes. */
        for (;;) {
            pthread_mutex_lock(&srv->mu);
            int more = srv->live > 0 || !srv->notified;
            pthread_mutex_unlock(&srv->mu);
            if (!more)
                break;
            for (int i = 0; i < RPC_NCQ; i++) {
                if (srv->cqs[i].running)
                    continue;
                grpc_event ev = grpc_completion_queue_next(
                    srv->cqs[i].cq, rpc__deadline_after_ms(20), NULL);
                if (ev.type != GRPC_OP_COMPLETE)
                    continue;
                struct rpc_tag *t = ev.tag;
                if (t->kind == TAG_NEW_CALL)
                    on_new_call(t->ctx, 0);
                else if (t->kind == TAG_SHUTDOWN)
                    on_shutdown_notified(srv);
            }
        }
        wait_state(srv, &srv->notified, -1);
        wait_state(srv, NULL, -1);
    }

    /* Workers: let them drain (the queue is empty now) and exit. */
    pthread_mutex_lock(&srv->mu);
    srv->stopping = 1;
    pthread_cond_broadcast(&srv->work_cv);
    int nw = srv->n_workers;
    pthread_mutex_unlock(&srv->mu);
    for (int i = 0; i < nw; i++)
        pthread_join(srv->workers[i], NULL);

    grpc_server_destroy(srv->server);
    for (int i = 0; i < RPC_NCQ; i++)
        grpc_completion_queue_shutdown(srv->cqs[i].cq);
    for (int i = 0; i < RPC_NCQ; i++) {
        if (srv->cqs[i].running) {
            pthread_join(srv->cqs[i].thread, NULL);
        } else {
            while (grpc_completion_queue_next(srv->cqs[i].cq,
                                              gpr_inf_future(GPR_CLOCK_REALTIME),
                                              NULL)
                       .type != GRPC_QUEUE_SHUTDOWN) {
            }
        }
        grpc_completion_queue_destroy(srv->cqs[i].cq);
    }
    for (size_t i = 0; i < srv->n_unix; i++) {
        unlink(srv->unix_paths[i]); /* gRPC 1.51 leaves the file behind */
        free(srv->unix_paths[i]);
    }
    free(srv->unix_paths);
    tlog_info("rpc.server_stopped", "ms=%lld cancelled=%d",
              (long long)(tb_mono_ms() - t0), atomic_load(&srv->hard_cancel));
    pthread_cond_destroy(&srv->work_cv);
    pthread_cond_destroy(&srv->state_cv);
    pthread_mutex_destroy(&srv->mu);
    free(srv->workers);
    free(srv);
    rpc__lib_unref();
}
