/* tbase.c: see tbase.h. */
#include "tbase.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

static int64_t clock_ns(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t tb_mono_ns(void) { return clock_ns(CLOCK_MONOTONIC); }
int64_t tb_mono_ms(void) { return clock_ns(CLOCK_MONOTONIC) / 1000000; }
double tb_mono_s(void) { return (double)clock_ns(CLOCK_MONOTONIC) / 1e9; }
int64_t tb_wall_ns(void) { return clock_ns(CLOCK_REALTIME); }
int64_t tb_wall_ms(void) { return clock_ns(CLOCK_REALTIME) / 1000000; }

struct timespec tb_deadline(clockid_t clk, int64_t ms)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    if (ms < 0) ms = 0;
    int64_t ns = ts.tv_nsec + (ms % 1000) * 1000000;
    ts.tv_sec += (time_t)(ms / 1000 + ns / 1000000000);
    ts.tv_nsec = (long)(ns % 1000000000);
    return ts;
}

int tb_cond_init_mono(pthread_cond_t *cv)
{
    pthread_condattr_t ca;
    int rc = pthread_condattr_init(&ca);
    if (rc) return -rc;
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    rc = pthread_cond_init(cv, &ca);
    pthread_condattr_destroy(&ca);
    return -rc;
}

int tb_mkdir_p(const char *path, mode_t mode)
{
    char tmp[PATH_MAX];
    size_t n = strlen(path);
    if (n == 0) return -EINVAL;
    if (n >= sizeof tmp) return -ENAMETOOLONG;
    memcpy(tmp, path, n + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(tmp, 0755) < 0 && errno != EEXIST) return -errno;
        *p = '/';
    }
    if (mkdir(tmp, mode) < 0 && errno != EEXIST) return -errno;
    return 0;
}

void tb_meter_add(struct tb_meter *m, uint64_t n, int64_t now_ms)
{
    m->bytes += n;
    if (!m->t0_ms) m->t0_ms = now_ms;
    if (now_ms - m->t0_ms < 1000) return;
    double inst = (double)m->bytes * 1000.0 / (double)(now_ms - m->t0_ms);
    m->rate = m->rate ? 0.5 * m->rate + 0.5 * inst : inst;
    m->t0_ms = now_ms;
    m->bytes = 0;
}

double tb_meter_rate(const struct tb_meter *m, int64_t now_ms)
{
    if (m->t0_ms && now_ms - m->t0_ms > 5000) return 0;
    return m->rate;
}
