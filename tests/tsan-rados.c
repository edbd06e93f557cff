/*
 * tsan-rados.c: librados's hidden happens-before edge for the TSan build
 * only (make tsan), the counterpart of tests/tsan-grpc.c.
 *
 * librados is not instrumented, and an asynchronous operation reaches its
 * completion callback (on one of librados's threads) through the
 * messenger, the OSD's reply and Ceph's lock-free queues, none of which
 * TSan sees.  Everything the submitting thread wrote before
 * rados_aio_write_op_operate (the callback's argument, its buffers) would
 * be reported as racing with the callback.  librados guarantees that
 * order, so it is declared: release on the completion when the operation
 * is submitted, acquire on it when its callback starts.  The callback is
 * called through a small trampoline that does the acquire.
 *
 * Linked with -Wl,--wrap= for the two functions (tests/module.mk); only
 * our own objects' references are wrapped.  No race is suppressed: an
 * access not ordered by this edge is still reported.
 */
#include <stdlib.h>
#include <rados/librados.h>

void __tsan_acquire(void *addr);
void __tsan_release(void *addr);

int __real_rados_aio_create_completion2(void *cb_arg, rados_callback_t cb,
                                        rados_completion_t *pc);
int __real_rados_aio_write_op_operate(rados_write_op_t write_op,
                                      rados_ioctx_t io,
                                      rados_completion_t completion,
                                      const char *oid, time_t *mtime,
                                      int flags);

struct tramp {
    rados_callback_t cb;
    void *arg;
};

static void tramp_cb(rados_completion_t c, void *p)
{
    __tsan_acquire(c);
    struct tramp t = *(struct tramp *)p;
    free(p);
    t.cb(c, t.arg);
}

int __wrap_rados_aio_create_completion2(void *cb_arg, rados_callback_t cb,
                                        rados_completion_t *pc);
int __wrap_rados_aio_create_completion2(void *cb_arg, rados_callback_t cb,
                                        rados_completion_t *pc)
{
    if (!cb) return __real_rados_aio_create_completion2(cb_arg, cb, pc);
    /* Freed when the callback runs (a completion released without ever
     * being submitted leaks it: TSan build only). */
    struct tramp *t = malloc(sizeof(*t));
    if (!t) return -12; /* -ENOMEM */
    t->cb = cb;
    t->arg = cb_arg;
    int r = __real_rados_aio_create_completion2(t, tramp_cb, pc);
    if (r < 0) free(t);
    return r;
}

int __wrap_rados_aio_write_op_operate(rados_write_op_t write_op,
                                      rados_ioctx_t io,
                                      rados_completion_t completion,
                                      const char *oid, time_t *mtime,
                                      int flags);
int __wrap_rados_aio_write_op_operate(rados_write_op_t write_op,
                                      rados_ioctx_t io,
                                      rados_completion_t completion,
                                      const char *oid, time_t *mtime,
                                      int flags)
{
    __tsan_release(completion);
    return __real_rados_aio_write_op_operate(write_op, io, completion, oid,
                                             mtime, flags);
}
