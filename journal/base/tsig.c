/* tsig.c: blocking and waiting for termination signals (see tsig.h). */
#include "tsig.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <time.h>

#include "tbase.h"

void tb_signals_block(void)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGTERM);
    sigaddset(&s, SIGINT);
    sigaddset(&s, SIGPIPE); /* a peer closing a socket must not kill us */
    pthread_sigmask(SIG_BLOCK, &s, NULL);
}

int tb_signals_wait(int timeout_ms)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGTERM);
    sigaddset(&s, SIGINT);
    int64_t until = tb_mono_ms() + timeout_ms;
    for (;;) {
        int sig;
        if (timeout_ms <= 0) {
            sig = sigwaitinfo(&s, NULL);
        } else {
            int64_t left = until - tb_mono_ms();
            if (left <= 0)
                return 0;
            struct timespec ts = {.tv_sec = left / 1000,
                                  .tv_nsec = (left % 1000) * 1000000};
            sig = sigtimedwait(&s, NULL, &ts);
            if (sig < 0 && errno == EAGAIN)
                return 0;
        }
        if (sig > 0)
            return sig;
        /* EINTR: another signal's handler ran; wait again. */
    }
}
