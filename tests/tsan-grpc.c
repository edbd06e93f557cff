/*
 * tsan-grpc.c: the one happens-before edge of gRPC's C core that
 * ThreadSanitizer cannot see, for the TSan build only (make tsan).
 *
 * gRPC core is not instrumented and synchronizes with absl::Mutex and
 * futexes, which TSan does not intercept.  So when one thread starts an
 * operation with a tag (grpc_call_start_batch, grpc_server_request_call,
 * grpc_server_shutdown_and_notify) and another takes that tag's event
 * from the completion queue (grpc_completion_queue_next / _pluck), TSan
 * would see no order between what the first thread wrote into the tag's
 * object before starting the operation and what the second reads after
 * the event, and report every such handoff in proto/rpc_*.c as a race.
 * gRPC documents that order (an event is delivered after its operation
 * was started), so it is declared here: release on the tag when an
 * operation starts, acquire on it when its event is taken.
 *
 * The same holds for the TLS peer-verification callback of channel
 * credentials (grpc_ssl_credentials_create_ex): gRPC calls it later, on
 * whichever thread runs the handshake, with the userdata the creating
 * thread wrote, and destroys that userdata after the last callback
 * returned; the callback goes through a trampoline that acquires what the
 * creation released and releases for the destruction.
 *
 * Linked with -Wl,--wrap=FUNCTION for those six functions
 * (tests/module.mk), so only references from our own objects are
 * wrapped; nothing else is hidden from TSan (no race is suppressed here:
 * an access to the tag's object that is not ordered by this edge, such
 * as a write after the operation started, is still reported).
 */
#include <stdlib.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>

void __tsan_acquire(void *addr);
void __tsan_release(void *addr);

grpc_call_error __real_grpc_call_start_batch(grpc_call *call,
                                             const grpc_op *ops, size_t nops,
                                             void *tag, void *reserved);
grpc_call_error __real_grpc_server_request_call(
    grpc_server *server, grpc_call **call, grpc_call_details *details,
    grpc_metadata_array *request_metadata,
    grpc_completion_queue *cq_bound_to_call,
    grpc_completion_queue *cq_for_notification, void *tag_new);
void __real_grpc_server_shutdown_and_notify(grpc_server *server,
                                            grpc_completion_queue *cq,
                                            void *tag);
grpc_event __real_grpc_completion_queue_next(grpc_completion_queue *cq,
                                             gpr_timespec deadline,
                                             void *reserved);
grpc_event __real_grpc_completion_queue_pluck(grpc_completion_queue *cq,
                                              void *tag,
                                              gpr_timespec deadline,
                                              void *reserved);

grpc_call_error __wrap_grpc_call_start_batch(grpc_call *call,
                                             const grpc_op *ops, size_t nops,
                                             void *tag, void *reserved);
grpc_call_error __wrap_grpc_call_start_batch(grpc_call *call,
                                             const grpc_op *ops, size_t nops,
                                             void *tag, void *reserved)
{
    if (tag) __tsan_release(tag);
    return __real_grpc_call_start_batch(call, ops, nops, tag, reserved);
}

grpc_call_error __wrap_grpc_server_request_call(
    grpc_server *server, grpc_call **call, grpc_call_details *details,
    grpc_metadata_array *request_metadata,
    grpc_completion_queue *cq_bound_to_call,
    grpc_completion_queue *cq_for_notification, void *tag_new);
grpc_call_error __wrap_grpc_server_request_call(
    grpc_server *server, grpc_call **call, grpc_call_details *details,
    grpc_metadata_array *request_metadata,
    grpc_completion_queue *cq_bound_to_call,
    grpc_completion_queue *cq_for_notification, void *tag_new)
{
    if (tag_new) __tsan_release(tag_new);
    return __real_grpc_server_request_call(server, call, details,
                                           request_metadata, cq_bound_to_call,
                                           cq_for_notification, tag_new);
}

void __wrap_grpc_server_shutdown_and_notify(grpc_server *server,
                                            grpc_completion_queue *cq,
                                            void *tag);
void __wrap_grpc_server_shutdown_and_notify(grpc_server *server,
                                            grpc_completion_queue *cq,
                                            void *tag)
{
    if (tag) __tsan_release(tag);
    __real_grpc_server_shutdown_and_notify(server, cq, tag);
}

grpc_event __wrap_grpc_completion_queue_next(grpc_completion_queue *cq,
                                             gpr_timespec deadline,
                                             void *reserved);
grpc_event __wrap_grpc_completion_queue_next(grpc_completion_queue *cq,
                                             gpr_timespec deadline,
                                             void *reserved)
{
    grpc_event ev = __real_grpc_completion_queue_next(cq, deadline, reserved);
    if (ev.type == GRPC_OP_COMPLETE && ev.tag) __tsan_acquire(ev.tag);
    return ev;
}

grpc_event __wrap_grpc_completion_queue_pluck(grpc_completion_queue *cq,
                                              void *tag,
                                              gpr_timespec deadline,
                                              void *reserved);
grpc_event __wrap_grpc_completion_queue_pluck(grpc_completion_queue *cq,
                                              void *tag,
                                              gpr_timespec deadline,
                                              void *reserved)
{
    grpc_event ev =
        __real_grpc_completion_queue_pluck(cq, tag, deadline, reserved);
    if (ev.type == GRPC_OP_COMPLETE && ev.tag) __tsan_acquire(ev.tag);
    return ev;
}

/* ---- TLS peer verification callback ---- */

grpc_channel_credentials *__real_grpc_ssl_credentials_create_ex(
    const char *pem_root_certs, grpc_ssl_pem_key_cert_pair *pem_key_cert_pair,
    const grpc_ssl_verify_peer_options *verify_options, void *reserved);

struct verify_tramp {
    grpc_ssl_verify_peer_options orig;
};

static int verify_tramp_cb(const char *target, const char *peer_pem,
                           void *userdata)
{
    struct verify_tramp *t = userdata;
    __tsan_acquire(t);
    int rc = t->orig.verify_peer_callback(
        target, peer_pem, t->orig.verify_peer_callback_userdata);
    /* gRPC destroys the credentials (verify_tramp_destruct) only after
     * every callback returned: what the callback read happens before. */
    __tsan_release(t);
    return rc;
}

static void verify_tramp_destruct(void *userdata)
{
    struct verify_tramp *t = userdata;
    __tsan_acquire(t);
    if (t->orig.verify_peer_destruct)
        t->orig.verify_peer_destruct(t->orig.verify_peer_callback_userdata);
    free(t);
}

grpc_channel_credentials *__wrap_grpc_ssl_credentials_create_ex(
    const char *pem_root_certs, grpc_ssl_pem_key_cert_pair *pem_key_cert_pair,
    const grpc_ssl_verify_peer_options *verify_options, void *reserved);
grpc_channel_credentials *__wrap_grpc_ssl_credentials_create_ex(
    const char *pem_root_certs, grpc_ssl_pem_key_cert_pair *pem_key_cert_pair,
    const grpc_ssl_verify_peer_options *verify_options, void *reserved)
{
    struct verify_tramp *t;
    if (!verify_options || !verify_options->verify_peer_callback ||
        !(t = malloc(sizeof(*t))))
        return __real_grpc_ssl_credentials_create_ex(
            pem_root_certs, pem_key_cert_pair, verify_options, reserved);
    t->orig = *verify_options;
    grpc_ssl_verify_peer_options vo = {
        .verify_peer_callback = verify_tramp_cb,
        .verify_peer_callback_userdata = t,
        .verify_peer_destruct = verify_tramp_destruct,
    };
    __tsan_release(t);
    return __real_grpc_ssl_credentials_create_ex(
        pem_root_certs, pem_key_cert_pair, &vo, reserved);
}
