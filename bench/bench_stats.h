/*
 * bench_stats.h: how every `make bench` program reports a ratio (issue
 * 12, "figures you can trust"): the median of at least 3 interleaved
 * samples (baseline, measured, baseline, measured, ...: load from
 * elsewhere on the machine hits both sides), printed with its min and max
 * so the noise is visible next to the value, and written to
 * $TANDEM_BENCH_OUT with the spread.
 *
 * JSON lines (one object per line, appended; bench/run-all.sh reads them):
 *   {"name": N, "value": median, "unit": U, "min": m, "max": M,
 *    "samples": n[, "goal": "..."]}
 *   plus the rows N.min and N.max (the names bench-snap always wrote).
 * Plain figures (not ratios) go out as {"name", "value", "unit"}, or with
 * the spread too when they are the median of samples (bs_emit_samples).
 *
 * Knobs (environment, read once by bs_init):
 *   TANDEM_BENCH_SAMPLES  samples per ratio (default 5; QUICK: 3; never
 *                         fewer than 3, at most BS_MAX)
 *   TANDEM_BENCH_QUICK    1: the fast pass (`make bench QUICK=1`): fewer
 *                         samples, and each bench shortens its runs
 *                         (bs_quick())
 *
 * Header-only (static functions), single-threaded: call from the bench's
 * main thread.  Values are borrowed; nothing is allocated.
 */
#ifndef TANDEM_BENCH_STATS_H
#define TANDEM_BENCH_STATS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BS_MAX 32

static FILE *bs_out;
static int bs_nsamples = 5;
static int bs_is_quick;

/* Open $TANDEM_BENCH_OUT (default build/bench.jsonl) for appending and
 * read the knobs.  who names the bench in the error line.  Returns the
 * stream (NULL: figures are only printed). */
static inline FILE *bs_init(const char *who)
{
    const char *q = getenv("TANDEM_BENCH_QUICK");
    const char *s = getenv("TANDEM_BENCH_SAMPLES");
    const char *path = getenv("TANDEM_BENCH_OUT");
    bs_is_quick = q && q[0] && strcmp(q, "0");
    bs_nsamples = bs_is_quick ? 3 : 5;
    if (s && atoi(s) > 0) bs_nsamples = atoi(s);
    if (bs_nsamples < 3) bs_nsamples = 3;
    if (bs_nsamples > BS_MAX) bs_nsamples = BS_MAX;
    if (!path || !path[0]) path = "build/bench.jsonl";
    bs_out = fopen(path, "a");
    if (!bs_out) fprintf(stderr, "%s: cannot append figures to %s\n", who, path);
    return bs_out;
}

static inline int bs_samples(void) { return bs_nsamples; }
static inline int bs_quick(void) { return bs_is_quick; }

static inline void bs_close(void)
{
    if (bs_out) fclose(bs_out);
    bs_out = NULL;
}

static inline int bs__cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median, min and max of v[0..n) (v is left as it was).  n >= 1. */
static inline double bs_median(const double *v, int n, double *mn, double *mx)
{
    double s[BS_MAX];
    if (n > BS_MAX) n = BS_MAX;
    if (n <= 0) {
        if (mn) *mn = 0;
        if (mx) *mx = 0;
        return 0;
    }
    memcpy(s, v, (size_t)n * sizeof(*s));
    qsort(s, (size_t)n, sizeof(*s), bs__cmpd);
    if (mn) *mn = s[0];
    if (mx) *mx = s[n - 1];
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/* One plain figure (a single measurement, or a rate over a whole run). */
static inline void bs_emit(const char *name, double value, const char *unit)
{
    if (!bs_out) return;
    fprintf(bs_out, "{\"name\": \"%s\", \"value\": %.4f, \"unit\": \"%s\"}\n",
            name, value, unit);
    fflush(bs_out);
}

/* A figure that is the median of samples: printed as "name median (min,
 * max, n samples) unit" and written with its spread.  goal: the issue's
 * goal as text (">= 1.0"), or NULL. */
static inline double bs_emit_samples(const char *name, const double *v, int n,
                                     const char *unit, const char *goal)
{
    double mn, mx, med = bs_median(v, n, &mn, &mx);
    printf("  %-62s %10.3f  (min %.3f, max %.3f, %d samples) %s%s%s\n", name,
           med, mn, mx, n, unit, goal ? "  goal " : "", goal ? goal : "");
    if (bs_out) {
        fprintf(bs_out,
                "{\"name\": \"%s\", \"value\": %.4f, \"unit\": \"%s\", "
                "\"min\": %.4f, \"max\": %.4f, \"samples\": %d%s%s%s}\n",
                name, med, unit, mn, mx, n, goal ? ", \"goal\": \"" : "",
                goal ? goal : "", goal ? "\"" : "");
        fflush(bs_out);
    }
    return med;
}

/* A ratio: bs_emit_samples plus the rows name.min and name.max. */
static inline double bs_emit_ratio(const char *name, const double *v, int n,
                                   const char *unit, const char *goal)
{
    char nm[256];
    double mn, mx;
    double med = bs_emit_samples(name, v, n, unit, goal);
    bs_median(v, n, &mn, &mx);
    snprintf(nm, sizeof(nm), "%s.min", name);
    bs_emit(nm, mn, unit);
    snprintf(nm, sizeof(nm), "%s.max", name);
    bs_emit(nm, mx, unit);
    return med;
}

#endif /* TANDEM_BENCH_STATS_H */
