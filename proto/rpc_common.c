/*
 * rpc_common.c: what the server and the client of rpc.h share outside
 * TLS: the names of the status codes, the reference count on the gRPC
 * library, and the bridge that sends gRPC's own log lines to tlog.
 */
#include "rpc_int.h"

#include <pthread.h>
#include <string.h>

#include <grpc/support/log.h>

#include "tlog.h"

static pthread_once_t rpc_log_once = PTHREAD_ONCE_INIT;

/* gRPC calls this from any of its threads; tlog is thread-safe and never
 * calls back into gRPC. */
static void rpc_grpc_log(gpr_log_func_args *a)
{
    enum tlog_level lv = TLOG_ERROR;
    if (a->severity == GPR_LOG_SEVERITY_DEBUG)
        lv = TLOG_DEBUG;
    else if (a->severity == GPR_LOG_SEVERITY_INFO)
        lv = TLOG_INFO;
    const char *file = a->file ? a->file : "?";
    const char *slash = strrchr(file, '/');
    char q[2048];
    tlog_emit(lv, "grpc.log", "src=%s:%d msg=%s", slash ? slash + 1 : file,
              a->line, tlog_q(q, sizeof q, a->message));
}

static void rpc_log_setup(void)
{
    gpr_set_log_function(rpc_grpc_log);
}

/* grpc_init/grpc_shutdown are counted by gRPC itself; each server and
 * client takes one reference, so the library lives exactly as long as the
 * last of them. */
void rpc__lib_ref(void)
{
    pthread_once(&rpc_log_once, rpc_log_setup);
    grpc_init();
}

void rpc__lib_unref(void)
{
    grpc_shutdown();
}

gpr_timespec rpc__deadline_after_ms(int ms)
{
    if (ms <= 0)
        return gpr_inf_future(GPR_CLOCK_REALTIME);
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                        gpr_time_from_millis(ms, GPR_TIMESPAN));
}

const char *rpc_code_name(int code)
{
    static const char *const names[] = {
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    };
    if (code >= 0 && (size_t)code < sizeof names / sizeof names[0])
        return names[code];
    return "INVALID_CODE";
}
