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
 * Linked with -Wl,--wrap=FUNCTION for those five functions
 * (tests/module.mk), so only references from our own objects are
 * wrapped; nothing else is hidden from TSan (no race is suppressed here:
 * an access to the tag's object that is not ordered by this edge, such
 * as a write after the operation started, is still reported).
 */
#include <grpc/grpc.h>

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
