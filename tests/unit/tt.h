/*
 * tt.h: the unit-test harness (header only).
 *
 * A test program is a list of TEST(name) { ... } blocks and one TT_MAIN().
 * Each test runs in a forked child with a timeout (TT_TIMEOUT seconds,
 * default 120), so a crash or a hang fails that test only.  Assertions
 * print both sides and the location, then abort the child.
 *
 *   ./test-foo            run every test
 *   ./test-foo name...    run the named tests only
 *
 * A test may call TT_SKIP("reason") to report SKIPPED with the reason; the
 * program then exits 77 if every test skipped.  The child's exit status is
 * the only channel back to the parent, so tests must not rely on state
 * left by another test.
 */
#ifndef TT_H
#define TT_H

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Under LeakSanitizer, check for leaks before a test child's _exit (which
 * skips the exit-time check). */
#if defined(__SANITIZE_ADDRESS__)
#define TT_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TT_LSAN 1
#endif
#endif
#ifdef TT_LSAN
int __lsan_do_recoverable_leak_check(void);
#define TT_LEAK_CHECK() (__lsan_do_recoverable_leak_check() ? 1 : 0)
#else
#define TT_LEAK_CHECK() 0
#endif

typedef void (*tt_fn)(void);
struct tt_case {
    const char *name;
    tt_fn fn;
};

#define TT_MAX_CASES 256
static struct tt_case tt_cases[TT_MAX_CASES];
static int tt_ncases;

#define TEST(name)                                                            \
    static void tt_test_##name(void);                                         \
    __attribute__((constructor)) static void tt_reg_##name(void)              \
    {                                                                         \
        if (tt_ncases < TT_MAX_CASES)                                         \
            tt_cases[tt_ncases++] = (struct tt_case){#name, tt_test_##name};  \
    }                                                                         \
    static void tt_test_##name(void)

#define TT_SKIP_EXIT 77
#define TT_SKIP(...)                                                          \
    do {                                                                      \
        printf("  SKIPPED: ");                                                \
        printf(__VA_ARGS__);                                                  \
        printf("\n");                                                         \
        fflush(stdout);                                                       \
        _exit(TT_SKIP_EXIT);                                                  \
    } while (0)

#define TT_FAIL(...)                                                          \
    do {                                                                      \
        fprintf(stderr, "  %s:%d: ", __FILE__, __LINE__);                     \
        fprintf(stderr, __VA_ARGS__);                                         \
        fprintf(stderr, "\n");                                                \
        abort();                                                              \
    } while (0)

#define ASSERT(c)                                                             \
    do {                                                                      \
        if (!(c)) TT_FAIL("assertion failed: %s", #c);                        \
    } while (0)

#define TT_CMP(a, op, b, fmt, type)                                           \
    do {                                                                      \
        type tt_a_ = (a), tt_b_ = (b);                                        \
        if (!(tt_a_ op tt_b_))                                                \
            TT_FAIL("%s %s %s: " fmt " vs " fmt, #a, #op, #b, tt_a_, tt_b_);  \
    } while (0)

#define ASSERT_EQ(a, b) TT_CMP(a, ==, b, "%" PRId64, int64_t)
#define ASSERT_NE(a, b) TT_CMP(a, !=, b, "%" PRId64, int64_t)
#define ASSERT_LT(a, b) TT_CMP(a, <, b, "%" PRId64, int64_t)
#define ASSERT_LE(a, b) TT_CMP(a, <=, b, "%" PRId64, int64_t)
#define ASSERT_GT(a, b) TT_CMP(a, >, b, "%" PRId64, int64_t)
#define ASSERT_GE(a, b) TT_CMP(a, >=, b, "%" PRId64, int64_t)
#define ASSERT_UEQ(a, b) TT_CMP(a, ==, b, "%" PRIu64, uint64_t)
#define ASSERT_OK(expr)                                                       \
    do {                                                                      \
        long tt_r_ = (long)(expr);                                            \
        if (tt_r_ < 0)                                                        \
            TT_FAIL("%s returned %ld (%s)", #expr, tt_r_, strerror((int)-tt_r_)); \
    } while (0)
#define ASSERT_STREQ(a, b)                                                    \
    do {                                                                      \
        const char *tt_a_ = (a), *tt_b_ = (b);                                \
        if (!tt_a_ || !tt_b_ || strcmp(tt_a_, tt_b_) != 0)                   \
            TT_FAIL("%s == %s: \"%s\" vs \"%s\"", #a, #b,                     \
                    tt_a_ ? tt_a_ : "(null)", tt_b_ ? tt_b_ : "(null)");      \
    } while (0)
#define ASSERT_MEMEQ(a, b, n)                                                 \
    do {                                                                      \
        if (memcmp((a), (b), (n)) != 0)                                       \
            TT_FAIL("memory %s and %s differ over %zu bytes", #a, #b,        \
                    (size_t)(n));                                             \
    } while (0)

static int tt_selected(const char *name, int argc, char **argv)
{
    if (argc <= 1) return 1;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], name) == 0) return 1;
    return 0;
}

static int tt_run_all(int argc, char **argv)
{
    int failed = 0, passed = 0, skipped = 0;
    int timeout = getenv("TT_TIMEOUT") ? atoi(getenv("TT_TIMEOUT")) : 120;
    for (int i = 0; i < tt_ncases; i++) {
        if (!tt_selected(tt_cases[i].name, argc, argv)) continue;
        printf("  %-40s ", tt_cases[i].name);
        fflush(stdout);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        pid_t pid = fork();
        if (pid == 0) {
            printf("\n");
            fflush(stdout);
            alarm((unsigned)timeout);
            tt_cases[i].fn();
            fflush(stdout);
            if (TT_LEAK_CHECK()) {
                fprintf(stderr, "  %s: leaks found\n", tt_cases[i].name);
                _exit(1);
            }
            _exit(0);
        }
        int status = 0;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double ms = (t1.tv_sec - t0.tv_sec) * 1e3 +
                    (t1.tv_nsec - t0.tv_nsec) / 1e6;
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
            printf("  ok %s (%.0f ms)\n", tt_cases[i].name, ms);
            passed++;
        } else if (WIFEXITED(status) && WEXITSTATUS(status) == TT_SKIP_EXIT) {
            printf("  skip %s\n", tt_cases[i].name);
            skipped++;
        } else {
            if (WIFSIGNALED(status))
                printf("  FAIL %s (signal %d%s)\n", tt_cases[i].name,
                       WTERMSIG(status),
                       WTERMSIG(status) == SIGALRM ? ", timeout" : "");
            else
                printf("  FAIL %s (exit %d)\n", tt_cases[i].name,
                       WEXITSTATUS(status));
            failed++;
        }
        fflush(stdout);
    }
    printf("%s: %d passed, %d skipped, %d failed\n", argv[0], passed,
           skipped, failed);
    if (failed) return 1;
    if (passed == 0 && skipped > 0) return TT_SKIP_EXIT;
    return 0;
}

#define TT_MAIN()                                                             \
    int main(int argc, char **argv)                                           \
    {                                                                         \
        setvbuf(stdout, NULL, _IOLBF, 0);                                     \
        return tt_run_all(argc, argv);                                        \
    }

#endif /* TT_H */
