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
 * program then exits 77 if every test skipped.  A skip is never a pass:
 * each one is counted and listed with its reason in the summary
 * ("name: reason" lines after "N passed, S skipped, F failed"), and when
 * $TT_REPORT names a file, one line per program and per skip is appended
 * to it for tests/run-unit.sh:
 *
 *   tests <program> <passed> <skipped> <failed>
 *   skip <program> <test>: <reason>
 *
 * With TANDEM_REQUIRE_CEPH=1 (CI, .ci/run) a skip of the Ceph backend
 * FAILS instead: a test whose name contains "rados" or "ceph", or whose
 * reason mentions Ceph/RADOS/$TANDEM_CEPH_SKIP, must not skip there.
 * (Under TSan, a test that forks a multi-threaded process whose child
 * could not start a thread is skipped for that build only: see tt_fork.)
 *
 * The child's exit status (and the skip reason, through a pipe) is the
 * only channel back to the parent, so tests must not rely on state left
 * by another test.
 */
#ifndef TT_H
#define TT_H

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
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
#define TT_SKIP(...) tt_skip(__VA_ARGS__)

/* In a test child: the test's name, and the pipe its skip reason goes to. */
static const char *tt_current = "";
static int tt_skip_fd = -1;

static inline int tt_has(const char *s, const char *word)
{
    return s && *s && word && *word && strcasestr(s, word) != NULL;
}

/* A skip that TANDEM_REQUIRE_CEPH=1 turns into a failure: the Ceph backend
 * did not run. */
static inline int tt_ceph_skip(const char *name, const char *reason)
{
    return tt_has(name, "rados") || tt_has(name, "ceph") ||
           tt_has(reason, "ceph") || tt_has(reason, "rados") ||
           tt_has(reason, getenv("TANDEM_CEPH_SKIP"));
}

static inline int tt_require_ceph(void)
{
    const char *r = getenv("TANDEM_REQUIRE_CEPH");
    return r && strcmp(r, "1") == 0;
}

static void tt_skip_v(int build_only, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0), noreturn, unused));
static void tt_skip_v(int build_only, const char *fmt, va_list ap)
{
    char reason[512];
    vsnprintf(reason, sizeof(reason), fmt, ap);
    for (char *p = reason; *p; p++)
        if (*p == '\n' || *p == '\t') *p = ' ';
    fflush(stdout);
    if (!build_only && tt_require_ceph() && tt_ceph_skip(tt_current, reason)) {
        fprintf(stderr, "  %s: TANDEM_REQUIRE_CEPH=1 but the Ceph backend "
                "would be skipped: %s\n", tt_current, reason);
        abort();
    }
    printf("  SKIPPED: %s\n", reason);
    fflush(stdout);
    if (tt_skip_fd >= 0) {
        /* One write below PIPE_BUF: atomic, read by the parent after the
         * child exited. */
        ssize_t w = write(tt_skip_fd, reason, strlen(reason));
        (void)w;
    }
    _exit(TT_SKIP_EXIT);
}

static void tt_skip(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn, unused));
static void tt_skip(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tt_skip_v(0, fmt, ap);
}

/* A skip of this build only (the test runs in the others), which
 * TANDEM_REQUIRE_CEPH does not turn into a failure. */
static void tt_skip_build(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn, unused));
static void tt_skip_build(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tt_skip_v(1, fmt, ap);
}

#if defined(__SANITIZE_THREAD__)
#include <pthread.h>
/* TSan cannot follow a fork of a multi-threaded process: the child dies
 * as soon as it starts a thread ("starting new threads after
 * multi-threaded fork is not supported"), and the test hangs or fails on
 * it.  So in the TSan build a test's fork first asks a probe child
 * whether it may start a thread; if not, the test is skipped for this
 * build only (it runs in the plain and ASan builds, and such a child
 * would not be checked by TSan anyway: TSan ignores everything in it). */
static void *tt_probe_thread(void *arg) { return arg; }
static inline int tt_child_may_thread(void)
{
    pid_t p = (fork)();
    if (p == 0) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0) dup2(fd, 2); /* TSan's "Dying" message */
        pthread_t t;
        if (pthread_create(&t, NULL, tt_probe_thread, NULL) == 0)
            pthread_join(t, NULL);
        _exit(0);
    }
    int st = 0;
    if (p < 0) return 1; /* the real fork will say */
    while (waitpid(p, &st, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}
static inline pid_t tt_fork(void)
{
    if (!tt_child_may_thread())
        tt_skip_build("not under TSan: forks a multi-threaded process, "
                      "which TSan cannot follow (runs in the plain and "
                      "ASan builds)");
    return (fork)();
}
#define fork() tt_fork()
#endif

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

/* ---- fresh child processes ----
 * A bare fork(2) of a process that runs library threads (librados, gRPC)
 * copies whatever lock one of those threads held at that instant, and
 * the child may hang on it the first time it uses the library (seen:
 * rados_connect in the child of a test holding a RADOS handle, under
 * load).  tt_spawn starts a fresh process instead: fork + exec of this
 * test program, which runs the body declared with TT_CHILD(name) and
 * _exits with its return value.  Nothing is inherited but the
 * environment and file descriptors without O_CLOEXEC: pass what the
 * child needs in arg.  Also fine under TSan (the exec'd child is a new,
 * single-threaded program). */
typedef int (*tt_child_fn)(const char *arg);
struct tt_child {
    const char *name;
    tt_child_fn fn;
};
#define TT_MAX_CHILDREN 16
static struct tt_child tt_children[TT_MAX_CHILDREN];
static int tt_nchildren;

#define TT_CHILD(name)                                                        \
    static int tt_child_##name(const char *arg);                              \
    __attribute__((constructor)) static void tt_creg_##name(void)             \
    {                                                                         \
        if (tt_nchildren < TT_MAX_CHILDREN)                                   \
            tt_children[tt_nchildren++] =                                     \
                (struct tt_child){#name, tt_child_##name};                    \
    }                                                                         \
    static int tt_child_##name(const char *arg)

/* Start child `name` with arg; -1 if fork failed (the exec failing shows
 * as exit status 127). */
static inline pid_t tt_spawn(const char *name, const char *arg)
{
    pid_t pid = (fork)(); /* only execv follows: no tt_fork probe needed */
    if (pid == 0) {
        char *av[] = {(char *)"tt-child", (char *)"--tt-child", (char *)name,
                      (char *)arg, NULL};
        execv("/proc/self/exe", av);
        _exit(127);
    }
    return pid;
}

/* In main: run the child named by argv ("--tt-child NAME ARG"). */
static int tt_child_main(int argc, char **argv)
{
    if (argc != 4) return 126;
    for (int i = 0; i < tt_nchildren; i++)
        if (strcmp(tt_children[i].name, argv[2]) == 0) {
            fflush(stdout);
            _exit(tt_children[i].fn(argv[3]));
        }
    fprintf(stderr, "tt: no child named %s\n", argv[2]);
    return 126;
}

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
    const char *prog = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1
                                             : argv[0];
    static char skips[TT_MAX_CASES][600];
    int nskips = 0;
    for (int i = 0; i < tt_ncases; i++) {
        if (!tt_selected(tt_cases[i].name, argc, argv)) continue;
        printf("  %-40s ", tt_cases[i].name);
        fflush(stdout);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int sp[2] = {-1, -1};
        if (pipe2(sp, O_CLOEXEC) < 0) sp[0] = sp[1] = -1;
        pid_t pid = (fork)(); /* the real one, not tt_fork */
        if (pid == 0) {
            if (sp[0] >= 0) close(sp[0]);
            tt_skip_fd = sp[1];
            tt_current = tt_cases[i].name;
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
        if (sp[1] >= 0) close(sp[1]);
        int status = 0;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        char reason[512] = "";
        if (sp[0] >= 0) {
            /* Non-blocking: a grandchild may still hold the write end. */
            fcntl(sp[0], F_SETFL, O_NONBLOCK);
            ssize_t k = read(sp[0], reason, sizeof(reason) - 1);
            reason[k > 0 ? k : 0] = 0;
            close(sp[0]);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double ms = (t1.tv_sec - t0.tv_sec) * 1e3 +
                    (t1.tv_nsec - t0.tv_nsec) / 1e6;
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
            printf("  ok %s (%.0f ms)\n", tt_cases[i].name, ms);
            passed++;
        } else if (WIFEXITED(status) && WEXITSTATUS(status) == TT_SKIP_EXIT) {
            if (!reason[0]) snprintf(reason, sizeof(reason), "no reason given");
            printf("  skip %s: %s\n", tt_cases[i].name, reason);
            snprintf(skips[nskips++], sizeof(skips[0]), "%s: %s",
                     tt_cases[i].name, reason);
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
    for (int i = 0; i < nskips; i++) printf("  skipped %s\n", skips[i]);
    const char *rep = getenv("TT_REPORT");
    FILE *f = rep && *rep ? fopen(rep, "a") : NULL;
    if (f) {
        fprintf(f, "tests %s %d %d %d\n", prog, passed, skipped, failed);
        for (int i = 0; i < nskips; i++) fprintf(f, "skip %s %s\n", prog, skips[i]);
        fclose(f);
    }
    if (failed) return 1;
    if (passed == 0 && skipped > 0) return TT_SKIP_EXIT;
    return 0;
}

#define TT_MAIN()                                                             \
    int main(int argc, char **argv)                                           \
    {                                                                         \
        setvbuf(stdout, NULL, _IOLBF, 0);                                     \
        if (argc > 1 && strcmp(argv[1], "--tt-child") == 0)                   \
            return tt_child_main(argc, argv);                                 \
        return tt_run_all(argc, argv);                                        \
    }

#endif /* TT_H */
