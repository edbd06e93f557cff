/*
 * tbase.h: the small helpers every layer shares (libbase; libc only).
 * One home each, so a fix lands once.
 *
 * Clocks.  tb_mono_*: CLOCK_MONOTONIC, for anything that measures or
 * schedules (timeouts, rates, lease renewal); it never steps.  tb_wall_*:
 * CLOCK_REALTIME, for what is shown to people or stored as a timestamp.
 * Never compare a wall time written by one machine with another machine's
 * clock to decide ownership (leases use generations, see jr.h).
 *
 * tb_deadline(): the absolute time `ms` from now on clock `clk`, for
 * pthread_cond_timedwait (whose condvar must use the same clock:
 * tb_cond_init_mono() makes one on CLOCK_MONOTONIC).
 *
 * tb_mkdir_p(): mkdir -p.  Missing parents get 0755 (traversable, like
 * mkdir -p), the last component `mode`; an existing directory is fine.
 * Returns 0 or a negative errno (-ENAMETOOLONG past PATH_MAX).
 *
 * struct tb_meter: a throughput meter (bytes per second, smoothed per
 * second of samples).  Not locked: the owner serialises tb_meter_add;
 * tb_meter_rate may race with it and then reads a slightly stale value.
 *
 * Thread safety: all functions are thread-safe except as noted.
 */
#ifndef TANDEM_TBASE_H
#define TANDEM_TBASE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

int64_t tb_mono_ns(void);
int64_t tb_mono_ms(void);
/* Monotonic seconds as a double (sub-microsecond resolution for a
 * century of uptime), for durations and rates that are printed:
 * benchmarks, reports. */
double tb_mono_s(void);
int64_t tb_wall_ns(void);
int64_t tb_wall_ms(void);
struct timespec tb_deadline(clockid_t clk, int64_t ms);
int tb_cond_init_mono(pthread_cond_t *cv);

int tb_mkdir_p(const char *path, mode_t mode);

struct tb_meter {
    int64_t t0_ms;   /* start of the current one-second window (mono) */
    uint64_t bytes;  /* bytes in the current window */
    double rate;     /* smoothed bytes per second (0 until one window) */
};
/* Count n bytes at monotonic time now_ms; closes a window every second:
 * rate = 0.5 * rate + 0.5 * window's rate. */
void tb_meter_add(struct tb_meter *m, uint64_t n, int64_t now_ms);
/* The smoothed rate, or 0 if nothing was counted for 5 s (idle). */
double tb_meter_rate(const struct tb_meter *m, int64_t now_ms);

#endif
