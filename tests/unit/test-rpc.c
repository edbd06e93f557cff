/*
 * test-rpc.c: the RPC layer (proto/rpc.h) over real sockets.
 *
 * Each test starts its own server(s) on a unix socket in a scratch dir or
 * on a loopback TCP port chosen by the kernel, and talks to it with the
 * layer's client.  The service is tests/rpc/echo-svc.h (wrapper types as
 * messages).  TLS tests make throw-away CAs with scripts/gen-certs.sh (run
 * from the repository root, as `make test` does).
 */
#include <dirent.h>
#include <grp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "tbase.h"
#include "tsig.h"
#include "tt.h"

#include "tests/rpc/echo-svc.h"

/* ---------------------------------------------------------- helpers -- */

/* tt.h ends each test with _exit(), which skips LeakSanitizer's exit-time
 * check; under SANITIZE=1 every test here asks for it explicitly once all
 * its servers and clients are gone (LSAN_OPTIONS=suppressions=
 * tests/lsan.supp names what gRPC itself keeps). */
extern int __lsan_do_recoverable_leak_check(void) __attribute__((weak));

/* LeakSanitizer reads this at start-up (LSAN_OPTIONS overrides it): the
 * path is relative to the repository root, where tests run. */
const char *__lsan_default_options(void);
const char *__lsan_default_options(void)
{
    return "suppressions=tests/lsan.supp:print_suppressions=0";
}

static void leak_check(void)
{
    if (__lsan_do_recoverable_leak_check && __lsan_do_recoverable_leak_check())
        TT_FAIL("LeakSanitizer found leaks (see above)");
}

/* A test whose body is followed by the leak check. */
#define RPC_TEST(name)                                                       \
    static void rpc_body_##name(void);                                       \
    TEST(name)                                                               \
    {                                                                        \
        rpc_body_##name();                                                   \
        leak_check();                                                        \
    }                                                                        \
    static void rpc_body_##name(void)

static char g_dir[256];

static const char *scratch(void)
{
    const char *base = getenv("TANDEM_TEST_TMP");
    snprintf(g_dir, sizeof g_dir, "%s/test-rpc.XXXXXX", base ? base : "/tmp");
    ASSERT(mkdtemp(g_dir) != NULL);
    return g_dir;
}

static void scratch_rm(void)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    ASSERT_EQ(system(cmd), 0);
}

static rpc_server *start_server(struct echo_stats *st, int threads,
                                const char *addr, const struct rpc_tls *tls,
                                int *port)
{
    struct rpc_server_opts o = {.methods = echo_methods,
                                .n_methods = ECHO_N_METHODS,
                                .svc = st,
                                .n_threads = threads};
    rpc_server *srv = NULL;
    ASSERT_OK(rpc_server_create(&o, &srv));
    int p = rpc_server_listen(srv, addr, tls);
    ASSERT_OK(p);
    if (port)
        *port = p;
    ASSERT_OK(rpc_server_start(srv));
    return srv;
}

static void tcp_target(char *buf, size_t n, int port)
{
    snprintf(buf, n, "127.0.0.1:%d", port);
}

/* Echo text; returns the code, the echoed text in out (if OK). */
static int echo(rpc_client *cli, const char *text, char *out, size_t outn,
                char *msg, size_t msgn, int timeout_ms, int wfr)
{
    Google__Protobuf__StringValue req = GOOGLE__PROTOBUF__STRING_VALUE__INIT;
    req.value = (char *)text;
    ProtobufCMessage *resp = NULL;
    int code = rpc_client_call(cli, ECHO_SVC "Echo", &req.base, ECHO_STR,
                               &resp, timeout_ms, wfr, msg, msgn);
    if (code == RPC_OK) {
        ASSERT(resp != NULL);
        snprintf(out, outn, "%s",
                 ((Google__Protobuf__StringValue *)resp)->value);
        protobuf_c_message_free_unpacked(resp, NULL);
    } else {
        ASSERT(resp == NULL);
    }
    return code;
}

static void assert_echo_ok(rpc_client *cli, const char *text)
{
    char out[256] = "", msg[256] = "";
    int code = echo(cli, text, out, sizeof out, msg, sizeof msg, 5000, 0);
    if (code != RPC_OK)
        TT_FAIL("echo: %s \"%s\"", rpc_code_name(code), msg);
    ASSERT_STREQ(out, text);
}

static int call_str(rpc_client *cli, const char *method, const char *text,
                    char *out, size_t outn, char *msg, size_t msgn)
{
    Google__Protobuf__StringValue req = GOOGLE__PROTOBUF__STRING_VALUE__INIT;
    req.value = (char *)text;
    ProtobufCMessage *resp = NULL;
    int code = rpc_client_call(cli, method, &req.base, ECHO_STR, &resp, 5000,
                               0, msg, msgn);
    if (resp) {
        snprintf(out, outn, "%s",
                 ((Google__Protobuf__StringValue *)resp)->value);
        protobuf_c_message_free_unpacked(resp, NULL);
    }
    return code;
}

static int call_sleep(rpc_client *cli, int64_t ms, int timeout_ms,
                      int64_t *remaining, char *msg, size_t msgn)
{
    Google__Protobuf__Int64Value req = GOOGLE__PROTOBUF__INT64_VALUE__INIT;
    req.value = ms;
    ProtobufCMessage *resp = NULL;
    int code = rpc_client_call(cli, ECHO_SVC "Sleep", &req.base, ECHO_I64,
                               &resp, timeout_ms, 0, msg, msgn);
    if (resp) {
        if (remaining)
            *remaining = ((Google__Protobuf__Int64Value *)resp)->value;
        protobuf_c_message_free_unpacked(resp, NULL);
    }
    return code;
}

/* Poll a condition with a deadline (no sleeps as synchronisation). */
#define WAIT_FOR(cond, ms)                                                   \
    do {                                                                     \
        int64_t wf_end_ = tb_mono_ms() + (ms);                               \
        while (!(cond)) {                                                    \
            if (tb_mono_ms() > wf_end_)                                      \
                TT_FAIL("timed out waiting for %s", #cond);                  \
            echo_sleep_ms(5);                                                \
        }                                                                    \
    } while (0)

/* ------------------------------------------------------------ tests -- */

RPC_TEST(code_names)
{
    ASSERT_STREQ(rpc_code_name(RPC_OK), "OK");
    ASSERT_STREQ(rpc_code_name(RPC_NOT_FOUND), "NOT_FOUND");
    ASSERT_STREQ(rpc_code_name(RPC_UNAUTHENTICATED), "UNAUTHENTICATED");
    ASSERT_STREQ(rpc_code_name(17), "INVALID_CODE");
    ASSERT_STREQ(rpc_code_name(-1), "INVALID_CODE");
}

RPC_TEST(roundtrip_unix)
{
    struct echo_stats st = {0};
    char addr[300];
    snprintf(addr, sizeof addr, "unix://%s/echo.sock", scratch());
    int port = -1;
    rpc_server *srv = start_server(&st, 2, addr, NULL, &port);
    ASSERT_EQ(port, 0);
    rpc_client *cli;
    ASSERT_OK(rpc_client_create(addr, NULL, &cli));
    assert_echo_ok(cli, "hello over a unix socket");
    assert_echo_ok(cli, ""); /* the empty message: zero bytes on the wire */
    char out[64], msg[64];
    ASSERT_EQ(echo(cli, "?method", out, sizeof out, msg, sizeof msg, 5000, 0),
              RPC_OK);
    ASSERT_STREQ(out, ECHO_SVC "Echo");
    ASSERT_EQ(atomic_load(&st.calls), 3);
    rpc_client_destroy(cli);
    rpc_server_destroy(srv, 1000);
    struct stat sb;
    ASSERT(stat(addr + 7, &sb) < 0 && errno == ENOENT); /* unlinked */
    scratch_rm();
}

RPC_TEST(roundtrip_tcp)
{
    struct echo_stats st = {0};
    int port = 0;
    rpc_server *srv = start_server(&st, 2, "127.0.0.1:0", NULL, &port);
    ASSERT_GT(port, 0);
    char target[64];
    tcp_target(target, sizeof target, port);
    rpc_client *cli;
    ASSERT_OK(rpc_client_create(target, NULL, &cli));
    assert_echo_ok(cli, "hello over TCP");
    /* The raw variant: StringValue{value:"hi"} is 0a 02 68 69. */
    void *resp = NULL;
    size_t len = 0;
    char msg[128];
    ASSERT_EQ(rpc_client_call_raw(cli, ECHO_SVC "Echo", "\x0a\x02hi", 4, &resp,
                                  &len, 5000, msg, sizeof msg),
              RPC_OK);
    ASSERT_EQ(len, 4);
    ASSERT_MEMEQ(resp, "\x0a\x02hi", 4);
    free(resp);
    rpc_client_destroy(cli);
    rpc_server_destroy(srv, 1000);
}

RPC_TEST(unknown_method)
{
    struct echo_stats st = {0};
    int port;
    rpc_server *srv = start_server(&st, 1, "127.0.0.1:0", NULL, &port);
    char target[64], msg[256], out[64];
    tcp_target(target, sizeof target, port);
    rpc_client *cli;
    ASSERT_OK(rpc_client_create(target, NULL, &cli));
    ASSERT_EQ(call_str(cli, "/tandem.test.Echo/Nope", "x", out, sizeof out,
                       msg, sizeof msg),
              RPC_UNIMPLEMENTED);
    ASSERT(strstr(msg, "/tandem.test.Echo/Nope") != NULL);
    ASSERT_EQ(call_str(cli, "/other.Service/Echo", "x", out, sizeof out, msg,
                       sizeof msg),
              RPC_UNIMPLEMENTED);
    ASSERT_EQ(atomic_load(&st.calls), 0);
    /* A malformed name is refused by the client itself. */
    ASSERT_EQ(call_str(cli, "no-slash", "x", out, sizeof out, msg, sizeof msg),
              RPC_INVALID_ARGUMENT);
    assert_echo_ok(cli, "still serving");
    rpc_client_destroy(cli);
    rpc_server_destroy(srv, 1000);
}

RPC_TEST(undecodable_request)
{
    struct echo_stats st = {0};
    int port;
    rpc_server *srv = start_server(&st, 2, "127.0.0.1:0", NULL, &port);
    char target[64], msg[256];
    tcp_target(target, sizeof target, port);
    rpc_client *cli;
    ASSERT_OK(rpc_client_create(target, NULL, &cli));
    static const struct {
        const char *b;
        size_t n;
    } bad[] = {
        {"\x0a\x05" "ab", 4},       /* string length past the end */
        {"\x0a", 1},                /* tag without a value */
        {"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 11}, /* varint */
        {"\x0b", 1},                /* start group: invalid wire type */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        void *resp = (void *)1;
        size_t len = 99;
        ASSERT_EQ(rpc_client_call_raw(cli, ECHO_SVC "Echo", bad[i].b, bad[i].n,
                                      &resp, &len, 5000, msg, sizeof msg),
                  RPC_INVALID_ARGUMENT);
        ASSERT(resp == NULL);
        ASSERT_EQ(len, 0);
        ASSERT(strstr(msg, "decode") != NULL);
        assert_echo_ok(cli, "next call works");
    }
    /* Only the good calls reached a handler. */
    ASSERT_EQ(atomic_load(&st.calls), 4);
    rpc_client_destroy(cli);
    rpc_server_destroy(srv, 1000);
}

RPC_TEST(error_code_and_message)
{
    int port;
    rpc_server *srv = start_server(NULL, 2, "127.0.0.1:0", NULL, &port);
    char target[64], msg[1200], out[64];
    tcp_target(target, sizeof target, port);
    rpc_client *cli;
    ASSERT_OK(rpc_client_create(target, NULL, &cli));

    ASSERT_EQ(call_str(cli, ECHO_SVC "Fail", "5 volume pvc-1 not found", out,
                       sizeof out, msg, sizeof msg),
              RPC_NOT_FOUND);
    ASSERT_STREQ(msg, "volume pvc-1 not found");
    /* Every code 1..16 arrives as sent; text with %, quotes, UTF-8 and
     * newlines too (grpc-message is percent-encoded on the wire). */
    const char *text = "100% \"sure\": na\xc3\xafve\nline 2";
    for (int code = 1; code <= 16; code++) {
        char req[128];
        snprintf(req, sizeof req, "%d %s", code, text);
        ASSERT_EQ(call_str(cli, ECHO_SVC "Fail", req, out, sizeof out, msg,
                           sizeof msg),
                  code);
        ASSERT_STREQ(msg, text);
    }
    /* Long messages are cut at 1 KiB by rpc_ctx_error, not garbled. */
    char big[3000];
    memset(big, 'm', sizeof big);
    memcpy(big, "9 ", 2);
    big[sizeof big - 1] = 0;
    ASSERT_EQ(call_str(cli, ECHO_SVC "Fail", big, out, sizeof out, msg,
                       sizeof msg),
              RPC_FAILED_PRECONDITION);
    ASSERT_EQ(strlen(msg), 1023);
    /* A short caller buffer truncates and terminates. */
    char small[8];
    ASSERT_EQ(call_str(cli, ECHO_SVC "Fail", "10 operation pending", out,
                       sizeof out, small, sizeof small),
              RPC_ABORTED);
    ASSERT_STREQ(small, "operati");
    rpc_client_destroy(cli);
    rpc_server_destroy(srv, 1000);
}

RPC_TEST(handler_mistakes)
{
    int port;
    rpc_server *srv = start_server(NULL, 2, "127.0.0.1:0", NULL, &port);
    char target[64], msg[256], out[64] = "unchanged";
    tcp_target(target, sizeof target, port);
    rpc_client *cli;
    ASSERT_OK(rpc_client_create(target, NULL, &cli));
    ASSERT_EQ(call_str(cli, ECHO_SVC "BadCode", "x", out, sizeof out, msg,
                       sizeof msg),
              RPC_INTERNAL);
    ASSERT_STREQ(msg, "handler returned -5");
    ASSERT_EQ(call_str(cli, ECHO_SVC "WrongType", "x", out, sizeof out, msg,
                       sizeof msg),
              RPC_INTERNAL);
    /* OK without a response: the all-default message. */
    ASSERT_EQ(call_str(cli, ECHO_SVC "Empty", "x", out, sizeof out, msg,
                       sizeof msg),
              RPC_OK);
    ASSERT_STREQ(out, "");
    /* A response that does not decode as the type the client expects. */
    Google__Protobuf__Int64Value req = GOOGLE__PROTOBUF__INT64_VALUE__INIT;
    req.value = 3; /* Big: 3 bytes 00 07 0e, a BytesValue */
    ProtobufCMessage *resp = NULL;
    ASSERT_EQ(rpc_client_call(cli, ECHO_SVC "Big", &req.base, ECHO_BYTES,
                              &resp, 5000, 0, msg, sizeof msg),
              RPC_OK);
    protobuf_c_message_free_unpacked(resp, NULL);
    req.value = 1 << 20; /* a field 1 of 1 MiB is not an Int64Value */
    ASSERT_EQ(rpc_client_call(cli, ECHO_SVC "Big", &req.base, ECHO_I64,
                              &resp, 5000, 0, msg, sizeof msg),
              RPC_INTERNAL);
    ASSERT(resp == NULL);
    ASSERT(strstr(msg, "Int64Value") != NULL);
    rpc_client_destroy(cli);
    rpc_server_destroy(srv, 1000);
}

RPC_TEST(deadline)
{
    struct echo_stats st = {0};
    int port;
    rpc_server *srv = start_server(&st, 2, "127.0.0.1:0", NULL, &port);
    char target[64], msg[256];
    tcp_target(target, sizeof target, port);
    rpc_client *cli;
    ASSERT_OK(rpc_client_create(target, NULL, &cli));
    int64_t rem = 0;

    /* The handler sees the client's deadline. */
    ASSERT_EQ(call_sleep(cli, 0, 3000, &rem, msg, sizeof msg), RPC_OK);
    /* (grpc-timeout is sent rounded up: allow a few ms over) */
    ASSERT_GT(rem, 1500);
    ASSERT_LE(rem, 3050);
    ASSERT_EQ(call_sleep(cli, 0, 0, &rem, msg, sizeof msg), RPC_OK);
    ASSERT_EQ(rem, INT64_MAX);

    /* A slow handler: DEADLINE_EXCEEDED near the deadline, and the
     * handler notices (rpc_ctx_cancelled) and stops early. */
    int64_t t0 = tb_mono_ms();
    ASSERT_EQ(call_sleep(cli, 20000, 300, NULL, msg, sizeof msg),
              RPC_DEADLINE_EXCEEDED);
    int64_t took = tb_mono_ms() - t0;
    ASSERT_GE(took, 250);
    ASSERT_LT(took, 5000);
    ASSERT_GT(atomic_load(&st.last_remaining_ms), 0);
    ASSERT_LE(atomic_load(&st.last_remaining_ms), 350);
    WAIT_FOR(atomic_load(&st.sleep_cancelled) == 1, 5000);
    ASSERT_EQ(atomic_load(&st.sleep_done), 2);

    assert_echo_ok(cli, "after deadlines");
    rpc_client_destroy(cli);
    rpc_server_destroy(srv, 1000);
}

struct later_arg {
    char addr[300];
    rpc_server *srv;
    int delay_ms;
};

static void *start_later(void *p)
{
    struct later_arg *a = p;
    echo_sleep_ms(a->delay_ms); /* the scenario: a server that comes late */
    a->srv = start_server(NULL, 1, a->addr, NULL, NULL);
    return NULL;
}

RPC_TEST(wait_for_ready)
{
    struct later_arg a = {.delay_ms = 400};
    snprintf(a.addr, sizeof a.addr, "unix://%s/late.sock", scratch());
    rpc_client *cli;
    ASSERT_OK(rpc_client_create(a.addr, NULL, &cli));
    char out[64], msg[256];
    /* Nobody listens: fail fast without wait_for_ready. */
    int64_t t0 = tb_mono_ms();
    ASSERT_EQ(echo(cli, "x", out, sizeof out, msg, sizeof msg, 5000, 0),
              RPC_UNAVAILABLE);
    ASSERT_LT(tb_mono_ms() - t0, 4000);
    /* With it, the call waits for the server and succeeds. */
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, start_later, &a), 0);
    int code = echo(cli, "late", out, sizeof out, msg, sizeof msg, 10000, 1);
    if (code != RPC_OK)
        TT_FAIL("wait_for_ready: %s \"%s\"", rpc_code_name(code), msg);
    ASSERT_STREQ(out, "late");
    pthread_join(th, NULL);
    rpc_client_destroy(cli);
    rpc_server_destroy(a.srv, 1000);
    /* And with no server at all it gives up at the deadline. */
    ASSERT_OK(rpc_client_create(a.addr, NULL, &cli));
    t0 = tb_mono_ms();
    ASSERT_EQ(echo(cli, "x", out, sizeof out, msg, sizeof msg, 300, 1),
              RPC_DEADLINE_EXCEEDED);
    ASSERT_GE(tb_mono_ms() - t0, 250);
    rpc_client_destroy(cli);
    scratch_rm();
}

RPC_TEST(reconnect_after_restart)
{
    char addr[300];
    snprintf(addr, sizeof addr, "unix://%s/restart.sock", scratch());
    rpc_server *srv = start_server(NULL, 1, addr, NULL, NULL);
    rpc_client *cli;
    ASSERT_OK(rpc_client_create(addr, NULL, &cli));
    assert_echo_ok(cli, "first server");
    rpc_server_destroy(srv, 1000);
    char out[64], msg[128];
    ASSERT_EQ(echo(cli, "x", out, sizeof out, msg, sizeof msg, 5000, 0),
              RPC_UNAVAILABLE);
    /* A new server on the same path: the same client gets through. */
    srv = start_server(NULL, 1, addr, NULL, NULL);
    int code = echo(cli, "second server", out, sizeof out, msg, sizeof msg,
                    10000, 1);
    if (code != RPC_OK)
        TT_FAIL("after restart: %s \"%s\"", rpc_code_name(code), msg);
    ASSERT_STREQ(out, "second server");
    rpc_client_destroy(cli);
    rpc_server_destroy(srv, 1000);
    scratch_rm();
}

struct conc_arg {
    rpc_client *cli;
    int id, n, ok;
};

static void *conc_thread(void *p)
{
    struct conc_arg *a = p;
    for (int i = 0; i < a->n; i++) {
        char text[64], out[64], msg[128];
        snprintf(text, sizeof text, "thread %d call %d", a->id, i);
        if (echo(a->cli, text, out, sizeof out, msg, sizeof msg, 10000, 0) ==
                RPC_OK &&
            strcmp(out, text) == 0)
            a->ok++;
    }
    return NULL;
}

RPC_TEST(concurrent_calls)
{
    struct echo_stats st = {0};
    char addr[300];
    snprintf(addr, sizeof addr, "unix://%s/conc.sock", scratch());
    rpc_server *srv = start_server(&st, 4, addr, NULL, NULL);
    rpc_client *cli;
    ASSERT_OK(rpc_client_create(addr, NULL, &cli));
    enum { T = 8, N = 250 };
    struct conc_arg a[T];
    pthread_t th[T];
    int64_t t0 = tb_mono_ms();
    for (int i = 0; i < T; i++) {
        a[i] = (struct conc_arg){.cli = cli, .id = i, .n = N};
        ASSERT_EQ(pthread_create(&th[i], NULL, conc_thread, &a[i]), 0);
    }
    int ok = 0;
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        ok += a[i].ok;
    }
    int64_t ms = tb_mono_ms() - t0;
    ASSERT_EQ(ok, T * N);
    ASSERT_EQ(atomic_load(&st.calls), T * N);
    printf("  %d calls from %d threads in %lld ms (%.0f calls/s)\n", T * N, T,
           (long long)ms, ms ? T * N * 1000.0 / (double)ms : 0.0);
    rpc_client_destroy(cli);
    rpc_server_destroy(srv, 1000);
    scratch_rm();
}

struct sleeper {
    rpc_client *cli;
    int64_t ms;
    int code;
};

static void *sleeper_thread(void *p)
{
    struct sleeper *s = p;
    char msg[128];
    s->code = call_sleep(s->cli, s->ms, 30000, NULL, msg, sizeof msg);
    return NULL;
}

RPC_TEST(blocking_handlers_do_not_stall_others)
{
    struct echo_stats st = {0};
    int port;
    /* One worker to start with: the pool has to grow. */
    rpc_server *srv = start_server(&st, 1, "127.0.0.1:0", NULL, &port);
    char target[64];
    tcp_target(target, sizeof target, port);
    rpc_client *cli;
    ASSERT_OK(rpc_client_create(target, NULL, &cli));
    enum { S = 4 };
    struct sleeper s[S];
    pthread_t th[S];
    for (int i = 0; i < S; i++) {
        s[i] = (struct sleeper){.cli = cli, .ms = 20000, .code = -1};
        ASSERT_EQ(pthread_create(&th[i], NULL, sleeper_thread, &s[i]), 0);
    }
    WAIT_FOR(atomic_load(&st.sleeping) == S, 10000);
    /* Every handler thread so far is busy sleeping; quick calls still get
     * through while they sleep. */
    for (int i = 0; i < 20; i++)
        assert_echo_ok(cli, "quick");
    ASSERT_EQ(atomic_load(&st.sleep_done), 0);
    ASSERT_EQ(atomic_load(&st.sleeping), S);
    /* No grace: the sleepers are cancelled, and they notice. */
    rpc_server_destroy(srv, 0);
    ASSERT_EQ(atomic_load(&st.sleep_cancelled), S);
    for (int i = 0; i < S; i++) {
        pthread_join(th[i], NULL);
        ASSERT(s[i].code == RPC_CANCELLED || s[i].code == RPC_UNAVAILABLE);
    }
    rpc_client_destroy(cli);
}

static int call_big(rpc_client *cli, int64_t n, char *msg, size_t msgn)
{
    Google__Protobuf__Int64Value req = GOOGLE__PROTOBUF__INT64_VALUE__INIT;
    req.value = n;
    ProtobufCMessage *resp = NULL;
    int code = rpc_client_call(cli, ECHO_SVC "Big", &req.base, ECHO_BYTES,
                               &resp, 20000, 0, msg, msgn);
    if (code == RPC_OK) {
        Google__Protobuf__BytesValue *b = (Google__Protobuf__BytesValue *)resp;
        ASSERT_EQ(b->value.len, n);
        for (size_t i = 0; i < b->value.len; i++)
            if (b->value.data[i] != echo_big_byte(i))
                TT_FAIL("byte %zu differs", i);
        protobuf_c_message_free_unpacked(resp, NULL);
    }
    return code;
}

RPC_TEST(big_messages)
{
    int port;
    rpc_server *srv = start_server(NULL, 2, "127.0.0.1:0", NULL, &port);
    char target[64], msg[256];
    tcp_target(target, sizeof target, port);
    rpc_client *cli;
    ASSERT_OK(rpc_client_create(target, NULL, &cli));
    /* Well above gRPC's 4 MiB default: replication batches are big. */
    ASSERT_EQ(call_big(cli, 24 << 20, msg, sizeof msg), RPC_OK);
    char *text = malloc(20 << 20);
    ASSERT(text);
    memset(text, 'e', 20 << 20);
    text[(20 << 20) - 1] = 0;
    Google__Protobuf__StringValue req = GOOGLE__PROTOBUF__STRING_VALUE__INIT;
    req.value = text;
    ProtobufCMessage *resp = NULL;
    ASSERT_EQ(rpc_client_call(cli, ECHO_SVC "Echo", &req.base, ECHO_STR, &resp,
                              20000, 0, msg, sizeof msg),
              RPC_OK);
    ASSERT_EQ(strlen(((Google__Protobuf__StringValue *)resp)->value),
              (20 << 20) - 1);
    protobuf_c_message_free_unpacked(resp, NULL);
    rpc_client_destroy(cli);
    rpc_server_destroy(srv, 1000);

    /* A server with a 1 MiB limit refuses bigger messages both ways. */
    struct rpc_server_opts o = {.methods = echo_methods,
                                .n_methods = ECHO_N_METHODS,
                                .max_msg = 1 << 20};
    ASSERT_OK(rpc_server_create(&o, &srv));
    port = rpc_server_listen(srv, "127.0.0.1:0", NULL);
    ASSERT_GT(port, 0);
    ASSERT_OK(rpc_server_start(srv));
    tcp_target(target, sizeof target, port);
    ASSERT_OK(rpc_client_create(target, NULL, &cli));
    ASSERT_EQ(call_big(cli, 2 << 20, msg, sizeof msg), RPC_RESOURCE_EXHAUSTED);
    ASSERT_EQ(rpc_client_call(cli, ECHO_SVC "Echo", &req.base, ECHO_STR, &resp,
                              20000, 0, msg, sizeof msg),
              RPC_RESOURCE_EXHAUSTED);
    ASSERT_EQ(call_big(cli, 1000, msg, sizeof msg), RPC_OK);
    free(text);
    rpc_client_destroy(cli);
    rpc_server_destroy(srv, 1000);
}

/* ---- TLS ---- */

static void gen_certs(const char *dir, const char *names)
{
    ASSERT(access("scripts/gen-certs.sh", X_OK) == 0); /* run from the root */
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "scripts/gen-certs.sh '%s' %s", dir, names);
    ASSERT_EQ(system(cmd), 0);
}

struct pki {
    char ca[400], cert[400], key[400];
};

static void pki_of(struct pki *p, const char *dir, const char *name)
{
    snprintf(p->ca, sizeof p->ca, "%s/ca.pem", dir);
    snprintf(p->cert, sizeof p->cert, "%s/%s.pem", dir, name);
    snprintf(p->key, sizeof p->key, "%s/%s.key", dir, name);
}

RPC_TEST(mtls)
{
    const char *d = scratch();
    char pki_a[300], pki_b[300];
    snprintf(pki_a, sizeof pki_a, "%s/a", d);
    snprintf(pki_b, sizeof pki_b, "%s/b", d);
    gen_certs(pki_a, "server client");
    gen_certs(pki_b, "client"); /* another, unrelated CA */

    struct pki srv_p, cli_p, other_p;
    pki_of(&srv_p, pki_a, "server");
    pki_of(&cli_p, pki_a, "client");
    pki_of(&other_p, pki_b, "client");
    struct rpc_tls stls = {srv_p.ca, srv_p.cert, srv_p.key, NULL};
    int port;
    rpc_server *srv = start_server(NULL, 2, "127.0.0.1:0", &stls, &port);
    char target[64], out[256], msg[256];
    printf("  (the handshake errors logged below are the refusals this test "
           "expects)\n");
    tcp_target(target, sizeof target, port);
    rpc_client *cli;

    /* A valid client certificate: OK, and the server sees who it is. */
    struct rpc_tls good = {cli_p.ca, cli_p.cert, cli_p.key, NULL};
    ASSERT_OK(rpc_client_create(target, &good, &cli));
    assert_echo_ok(cli, "over mutual TLS");
    ASSERT_EQ(call_str(cli, ECHO_SVC "Peer", "", out, sizeof out, msg,
                       sizeof msg),
              RPC_OK);
    ASSERT_STREQ(out, "client");
    rpc_client_destroy(cli);

    /* "localhost" is in the server's SAN too; a name override that is
     * not in it fails the handshake, one that is passes. */
    char lh[64];
    snprintf(lh, sizeof lh, "localhost:%d", port);
    ASSERT_OK(rpc_client_create(lh, &good, &cli));
    assert_echo_ok(cli, "by name");
    rpc_client_destroy(cli);
    struct rpc_tls named = good;
    named.server_name = "server";
    ASSERT_OK(rpc_client_create(target, &named, &cli));
    assert_echo_ok(cli, "override ok");
    rpc_client_destroy(cli);
    named.server_name = "not-the-server.example";
    ASSERT_OK(rpc_client_create(target, &named, &cli));
    ASSERT_EQ(echo(cli, "x", out, sizeof out, msg, sizeof msg, 5000, 0),
              RPC_UNAVAILABLE);
    rpc_client_destroy(cli);

    /* No client certificate: refused. */
    struct rpc_tls nocert = {cli_p.ca, NULL, NULL, NULL};
    ASSERT_OK(rpc_client_create(target, &nocert, &cli));
    ASSERT_EQ(echo(cli, "x", out, sizeof out, msg, sizeof msg, 5000, 0),
              RPC_UNAVAILABLE);
    rpc_client_destroy(cli);

    /* A certificate from another CA (trusting the right server CA):
     * refused by the server. */
    struct rpc_tls foreign = {cli_p.ca, other_p.cert, other_p.key, NULL};
    ASSERT_OK(rpc_client_create(target, &foreign, &cli));
    ASSERT_EQ(echo(cli, "x", out, sizeof out, msg, sizeof msg, 5000, 0),
              RPC_UNAVAILABLE);
    rpc_client_destroy(cli);

    /* A client that trusts only the other CA refuses the server. */
    struct rpc_tls distrust = {other_p.ca, other_p.cert, other_p.key, NULL};
    ASSERT_OK(rpc_client_create(target, &distrust, &cli));
    ASSERT_EQ(echo(cli, "x", out, sizeof out, msg, sizeof msg, 5000, 0),
              RPC_UNAVAILABLE);
    rpc_client_destroy(cli);

    /* Plaintext to the TLS port: refused. */
    ASSERT_OK(rpc_client_create(target, NULL, &cli));
    ASSERT_EQ(echo(cli, "x", out, sizeof out, msg, sizeof msg, 5000, 0),
              RPC_UNAVAILABLE);
    rpc_client_destroy(cli);

    /* Still serving good clients after all the refusals. */
    ASSERT_OK(rpc_client_create(target, &good, &cli));
    assert_echo_ok(cli, "still fine");
    rpc_client_destroy(cli);
    rpc_server_destroy(srv, 1000);

    /* A plaintext port has no verified peer identity. */
    srv = start_server(NULL, 1, "127.0.0.1:0", NULL, &port);
    tcp_target(target, sizeof target, port);
    ASSERT_OK(rpc_client_create(target, NULL, &cli));
    ASSERT_EQ(call_str(cli, ECHO_SVC "Peer", "", out, sizeof out, msg,
                       sizeof msg),
              RPC_UNAUTHENTICATED);
    ASSERT(strstr(msg, "ipv4:127.0.0.1:") != NULL); /* rpc_ctx_peer */
    rpc_client_destroy(cli);
    rpc_server_destroy(srv, 1000);

    /* TLS configuration errors are found at listen/create time. */
    struct rpc_server_opts o = {.methods = echo_methods,
                                .n_methods = ECHO_N_METHODS};
    ASSERT_OK(rpc_server_create(&o, &srv));
    struct rpc_tls bad = stls;
    char missing[320];
    snprintf(missing, sizeof missing, "%s/nope.pem", d);
    bad.cert_file = missing;
    ASSERT_EQ(rpc_server_listen(srv, "127.0.0.1:0", &bad), -ENOENT);
    bad = stls;
    bad.key_file = cli_p.key; /* someone else's key */
    ASSERT_EQ(rpc_server_listen(srv, "127.0.0.1:0", &bad), -EINVAL);
    bad = stls;
    bad.cert_file = srv_p.key; /* not a certificate */
    ASSERT_EQ(rpc_server_listen(srv, "127.0.0.1:0", &bad), -EINVAL);
    bad = stls;
    bad.ca_file = NULL;
    ASSERT_EQ(rpc_server_listen(srv, "127.0.0.1:0", &bad), -EINVAL);
    bad = stls;
    bad.key_file = NULL;
    ASSERT_EQ(rpc_server_listen(srv, "127.0.0.1:0", &bad), -EINVAL);
    rpc_server_destroy(srv, 0);
    struct rpc_tls cbad = {missing, NULL, NULL, NULL};
    ASSERT_EQ(rpc_client_create(target, &cbad, &cli), -ENOENT);
    cbad = (struct rpc_tls){cli_p.ca, cli_p.cert, NULL, NULL};
    ASSERT_EQ(rpc_client_create(target, &cbad, &cli), -EINVAL);
    ASSERT_EQ(rpc_client_create("", NULL, &cli), -EINVAL);
    scratch_rm();
}

/* A leaf certificate signed by dir's CA (gen-certs.sh made it) with
 * subjectAltName san (NULL: no such extension), as dir/name.pem and .key:
 * what gen-certs.sh does not issue. */
static void custom_cert(const char *dir, const char *name, const char *san)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "set -e; cd '%s'; "
             "printf '%%s\\n' basicConstraints=critical,CA:FALSE "
             "keyUsage=critical,digitalSignature "
             "extendedKeyUsage=serverAuth,clientAuth %s%s%s >%s.ext; "
             "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
             "-nodes -subj /CN=%s -keyout %s.key -out %s.csr 2>/dev/null; "
             "openssl x509 -req -in %s.csr -CA ca.pem -CAkey ca.key "
             "-set_serial 0x$(openssl rand -hex 16) -days 1 -extfile %s.ext "
             "-out %s.pem 2>/dev/null",
             dir, san ? "'subjectAltName=" : "", san ? san : "",
             san ? "'" : "", name, name, name, name, name, name, name);
    ASSERT_EQ(system(cmd), 0);
}

/* PeerUri as client `name` of pki; returns the code, the URI in out. */
static int peer_uri_as(const char *target, const char *pki, const char *name,
                       const char *method, const char *prefix, char *out,
                       size_t outn, char *msg, size_t msgn)
{
    struct pki p;
    pki_of(&p, pki, name);
    struct rpc_tls tls = {p.ca, p.cert, p.key, NULL};
    rpc_client *cli;
    ASSERT_OK(rpc_client_create(target, &tls, &cli));
    out[0] = 0;
    int code = call_str(cli, method, prefix, out, outn, msg, msgn);
    rpc_client_destroy(cli);
    return code;
}

RPC_TEST(peer_uri)
{
    const char *d = scratch();
    char pki[300], cmd[1024];
    snprintf(pki, sizeof pki, "%s/pki", d);
    snprintf(cmd, sizeof cmd,
             "TANDEM_TRUST_DOMAIN=x scripts/gen-certs.sh '%s' server a "
             "replicator-b tandemctl",
             pki);
    ASSERT(access("scripts/gen-certs.sh", X_OK) == 0); /* run from the root */
    ASSERT_EQ(system(cmd), 0);
    /* A DNS name and an email that look like the identity, no URI. */
    custom_cert(pki, "nouri",
                "DNS:localhost,DNS:spiffe://x/tandem/admin,"
                "email:spiffe://x/tandem/admin");
    custom_cert(pki, "nosan", NULL);
    custom_cert(pki, "two",
                "URI:spiffe://x/tandem/region/a,URI:spiffe://x/tandem/admin,"
                "URI:https://example.org/a");

    struct pki sp;
    pki_of(&sp, pki, "server");
    struct rpc_tls stls = {sp.ca, sp.cert, sp.key, NULL};
    int port;
    rpc_server *srv = start_server(NULL, 2, "127.0.0.1:0", &stls, &port);
    char target[64], out[256], msg[256];
    tcp_target(target, sizeof target, port);

    static const struct {
        const char *name, *prefix;
        int code;
        const char *want;
    } cases[] = {
        {"a", "spiffe://", RPC_OK, "spiffe://x/tandem/region/a"},
        {"a", "spiffe://x/tandem/", RPC_OK, "spiffe://x/tandem/region/a"},
        {"a", "", RPC_OK, "spiffe://x/tandem/region/a"},
        {"a", "spiffe://x/tandem/region/a", RPC_OK,
         "spiffe://x/tandem/region/a"},
        {"a", "spiffe://y/", RPC_NOT_FOUND, NULL},
        {"a", "spiffe://x/tandem/region/ab", RPC_NOT_FOUND, NULL},
        {"a", "SPIFFE://", RPC_NOT_FOUND, NULL}, /* byte for byte */
        {"replicator-b", "spiffe://", RPC_OK, "spiffe://x/tandem/region/b"},
        {"tandemctl", "spiffe://", RPC_OK, "spiffe://x/tandem/admin"},
        {"admin", "spiffe://", RPC_OK, "spiffe://x/tandem/admin"},
        {"nouri", "spiffe://", RPC_NOT_FOUND, NULL},
        {"nouri", "", RPC_NOT_FOUND, NULL},
        {"nosan", "", RPC_NOT_FOUND, NULL},
        {"two", "spiffe://", RPC_FAILED_PRECONDITION, NULL},
        {"two", "", RPC_FAILED_PRECONDITION, NULL},
        {"two", "spiffe://x/tandem/admin", RPC_OK, "spiffe://x/tandem/admin"},
        {"two", "https://", RPC_OK, "https://example.org/a"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int code = peer_uri_as(target, pki, cases[i].name, ECHO_SVC "PeerUri",
                               cases[i].prefix, out, sizeof out, msg,
                               sizeof msg);
        if (code != cases[i].code)
            TT_FAIL("%s prefix \"%s\": %s \"%s\", want %s", cases[i].name,
                    cases[i].prefix, rpc_code_name(code), msg,
                    rpc_code_name(cases[i].code));
        if (cases[i].want)
            ASSERT_STREQ(out, cases[i].want);
    }
    /* The errnos behind the codes. */
    ASSERT_EQ(peer_uri_as(target, pki, "nosan", ECHO_SVC "PeerUri", "", out,
                          sizeof out, msg, sizeof msg),
              RPC_NOT_FOUND);
    ASSERT(strncmp(msg, "rc=-2 ", 6) == 0); /* -ENOENT */
    ASSERT_EQ(peer_uri_as(target, pki, "two", ECHO_SVC "PeerUri", "", out,
                          sizeof out, msg, sizeof msg),
              RPC_FAILED_PRECONDITION);
    snprintf(cmd, sizeof cmd, "rc=%d ", -ENOTUNIQ);
    ASSERT(strncmp(msg, cmd, strlen(cmd)) == 0);
    /* 26 bytes and a NUL do not fit in 16. */
    ASSERT_EQ(peer_uri_as(target, pki, "a", ECHO_SVC "PeerUriSmall",
                          "spiffe://", out, sizeof out, msg, sizeof msg),
              RPC_OUT_OF_RANGE);
    /* The CN is still the name rpc_ctx_peer_identity gives. */
    ASSERT_EQ(peer_uri_as(target, pki, "a", ECHO_SVC "Peer", "", out,
                          sizeof out, msg, sizeof msg),
              RPC_OK);
    ASSERT_STREQ(out, "a");
    ASSERT_EQ(peer_uri_as(target, pki, "nosan", ECHO_SVC "Peer", "", out,
                          sizeof out, msg, sizeof msg),
              RPC_OK);
    ASSERT_STREQ(out, "nosan");
    rpc_server_destroy(srv, 1000);

    /* Plaintext: no certificate, no URI (TCP and unix socket). */
    srv = start_server(NULL, 1, "127.0.0.1:0", NULL, &port);
    tcp_target(target, sizeof target, port);
    rpc_client *cli;
    ASSERT_OK(rpc_client_create(target, NULL, &cli));
    ASSERT_EQ(call_str(cli, ECHO_SVC "PeerUri", "", out, sizeof out, msg,
                       sizeof msg),
              RPC_NOT_FOUND);
    ASSERT(strncmp(msg, "rc=-2 ", 6) == 0);
    rpc_client_destroy(cli);
    rpc_server_destroy(srv, 1000);
    char addr[300];
    snprintf(addr, sizeof addr, "unix://%s/plain.sock", d);
    srv = start_server(NULL, 1, addr, NULL, NULL);
    ASSERT_OK(rpc_client_create(addr, NULL, &cli));
    ASSERT_EQ(call_str(cli, ECHO_SVC "PeerUri", "spiffe://", out, sizeof out,
                       msg, sizeof msg),
              RPC_NOT_FOUND);
    /* What gRPC tells about a unix-socket client: no process, no uid
     * (hence the socket file's mode as access control). */
    printf("  (unix-socket peer as gRPC names it: \"%s\")\n",
           strstr(msg, "peer=") ? strstr(msg, "peer=") + 5 : msg);
    rpc_client_destroy(cli);
    rpc_server_destroy(srv, 1000);
    scratch_rm();
}

/* connect(2) to a unix socket path; 0 or -errno. */
static int raw_connect(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int rc = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

static int count_entries(const char *dir)
{
    DIR *dh = opendir(dir);
    ASSERT(dh != NULL);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dh)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    closedir(dh);
    return n;
}

RPC_TEST(listen_mode)
{
    const char *d = scratch();
    char dir[300];
    snprintf(dir, sizeof dir, "%s/run", d);
    ASSERT_EQ(mkdir(dir, 0755), 0);
    ASSERT_EQ(chmod(dir, 0755), 0); /* only the sockets' modes decide */
    struct rpc_server_opts o = {.methods = echo_methods,
                                .n_methods = ECHO_N_METHODS};
    rpc_server *srv, *b;
    ASSERT_OK(rpc_server_create(&o, &srv));
    ASSERT_OK(rpc_server_create(&o, &b));

    static const struct {
        const char *file;
        mode_t mode;
    } socks[] = {{"admin.sock", 0600}, {"group.sock", 0660},
                 {"open.sock", 0666}};
    char path[3][300], addr[3][320];
    for (int i = 0; i < 3; i++) {
        ASSERT_LT(snprintf(path[i], sizeof path[i], "%s/%s", dir,
                           socks[i].file),
                  (int)sizeof path[i]);
        ASSERT_LT(snprintf(addr[i], sizeof addr[i], "unix://%s", path[i]),
                  (int)sizeof addr[i]);
    }
    /* A stale socket file is replaced, as by rpc_server_listen. */
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    ASSERT_LT(snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path[2]),
              (int)sizeof sa.sun_path);
    ASSERT_EQ(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    close(fd);

    mode_t old_umask = umask(0); /* the mode does not depend on it */
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(rpc_server_listen_mode(srv, addr[i], NULL, socks[i].mode),
                  0);
    umask(old_umask);
    /* Bound (not started yet) with exactly the mode, and the private
     * directory it was bound in is gone. */
    for (int i = 0; i < 3; i++) {
        struct stat st;
        ASSERT_EQ(lstat(path[i], &st), 0);
        ASSERT(S_ISSOCK(st.st_mode));
        ASSERT_EQ(st.st_mode & 07777, socks[i].mode);
    }
    ASSERT_EQ(count_entries(dir), 3);

    /* Refusals. */
    ASSERT_EQ(rpc_server_listen_mode(b, "127.0.0.1:0", NULL, 0600), -EINVAL);
    char x[360];
    snprintf(x, sizeof x, "unix://%s/x.sock", dir);
    ASSERT_EQ(rpc_server_listen_mode(b, x, NULL, 01600), -EINVAL);
    ASSERT_EQ(rpc_server_listen_mode(b, x, NULL, 0200000), -EINVAL);
    /* A path that fits sun_path when the temporary name would not. */
    struct sockaddr_un sun;
    char longdir[sizeof sun.sun_path + 32];
    int n = snprintf(longdir, sizeof longdir, "%s/", d);
    while (n < (int)sizeof sun.sun_path - 12)
        longdir[n++] = 'd';
    longdir[n] = 0;
    ASSERT_EQ(mkdir(longdir, 0755), 0);
    snprintf(x, sizeof x, "unix://%s/s.sock", longdir);
    ASSERT_LT(strlen(x) - 7, sizeof sun.sun_path);
    ASSERT_EQ(rpc_server_listen_mode(b, x, NULL, 0600), -ENAMETOOLONG);
    ASSERT_EQ(count_entries(longdir), 0);
    /* ...while mode 0 (rpc_server_listen) takes it. */
    ASSERT_EQ(rpc_server_listen_mode(b, x, NULL, 0), 0);

    ASSERT_OK(rpc_server_start(srv));
    ASSERT_EQ(rpc_server_listen_mode(b, addr[0], NULL, 0600), -EADDRINUSE);
    rpc_server_destroy(b, 0);
    for (int i = 0; i < 3; i++) {
        rpc_client *cli;
        ASSERT_OK(rpc_client_create(addr[i], NULL, &cli));
        assert_echo_ok(cli, socks[i].file);
        rpc_client_destroy(cli);
    }

    /* Who may connect: another user only through 0666 (root passes any
     * mode, so this part needs root to become someone else). */
    if (geteuid() == 0) {
        pid_t pid = fork();
        ASSERT(pid >= 0);
        if (pid == 0) {
            /* Relative names from inside dir: the scratch directories
             * above it may be 0700 (mkdtemp), which is not under test. */
            if (chdir(dir) < 0 || setgroups(0, NULL) < 0 ||
                setgid(65534) < 0 || setuid(65534) < 0)
                _exit(10);
            int bad = 0;
            if (raw_connect(socks[0].file) != -EACCES)
                bad |= 1;
            if (raw_connect(socks[1].file) != -EACCES) /* group root */
                bad |= 2;
            if (raw_connect(socks[2].file) != 0)
                bad |= 4;
            _exit(bad);
        }
        int status = 0;
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        ASSERT(WIFEXITED(status));
        ASSERT_EQ(WEXITSTATUS(status), 0);
    } else {
        printf("  (not root: the other-user connect checks are skipped)\n");
    }
    rpc_server_destroy(srv, 1000);
    for (int i = 0; i < 3; i++) {
        struct stat st;
        ASSERT(lstat(path[i], &st) < 0 && errno == ENOENT);
    }
    scratch_rm();
}

RPC_TEST(listen_errors)
{
    const char *d = scratch();
    struct rpc_server_opts o = {.methods = echo_methods,
                                .n_methods = ECHO_N_METHODS};
    rpc_server *a, *b;
    ASSERT_OK(rpc_server_create(&o, &a));
    ASSERT_OK(rpc_server_create(&o, &b));
    char addr[300];

    /* A live server's socket is not stolen. */
    snprintf(addr, sizeof addr, "unix://%s/live.sock", d);
    ASSERT_EQ(rpc_server_listen(a, addr, NULL), 0);
    int port = rpc_server_listen(a, "127.0.0.1:0", NULL);
    ASSERT_GT(port, 0);
    ASSERT_OK(rpc_server_start(a));
    ASSERT_EQ(rpc_server_listen(b, addr, NULL), -EADDRINUSE);
    char tcp[64];
    tcp_target(tcp, sizeof tcp, port);
    ASSERT_EQ(rpc_server_listen(b, tcp, NULL), -EADDRINUSE);
    ASSERT_EQ(rpc_server_listen(a, "127.0.0.1:0", NULL), -EINVAL); /* started */

    /* A stale socket file (nobody listening) is replaced. */
    snprintf(addr, sizeof addr, "%s/stale.sock", d);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    ASSERT_LT(strlen(addr), sizeof sa.sun_path);
    memcpy(sa.sun_path, addr, strlen(addr) + 1);
    ASSERT_EQ(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    close(fd);
    snprintf(addr, sizeof addr, "unix://%s/stale.sock", d);
    ASSERT_EQ(rpc_server_listen(b, addr, NULL), 0);

    /* Other bad addresses. */
    snprintf(addr, sizeof addr, "unix://%s/no/such/dir.sock", d);
    ASSERT_EQ(rpc_server_listen(b, addr, NULL), -ENOENT);
    snprintf(addr, sizeof addr, "%s/file", d);
    FILE *f = fopen(addr, "w");
    ASSERT(f);
    fclose(f);
    snprintf(addr, sizeof addr, "unix://%s/file", d);
    ASSERT_EQ(rpc_server_listen(b, addr, NULL), -EEXIST);
    ASSERT_EQ(rpc_server_listen(b, "unix:relative.sock", NULL), -EINVAL);
    ASSERT_EQ(rpc_server_listen(b, "127.0.0.1", NULL), -EINVAL);
    ASSERT_EQ(rpc_server_listen(b, "127.0.0.1:99999", NULL), -EINVAL);
    ASSERT_EQ(rpc_server_listen(b, "127.0.0.1:x", NULL), -EINVAL);

    /* b was never started: destroy still works (and unlinks). */
    rpc_server_destroy(b, 1000);
    struct stat sb;
    snprintf(addr, sizeof addr, "%s/stale.sock", d);
    ASSERT(stat(addr, &sb) < 0 && errno == ENOENT);
    rpc_server_destroy(a, 1000);
    rpc_server_destroy(NULL, 0);

    struct rpc_method bad_m = echo_methods[0];
    bad_m.name = "Echo"; /* not a full name */
    o.methods = &bad_m;
    o.n_methods = 1;
    ASSERT_EQ(rpc_server_create(&o, &a), -EINVAL);
    scratch_rm();
}

struct inflight {
    rpc_client *cli;
    int64_t ms;
    int code;
    int64_t took;
};

static void *inflight_thread(void *p)
{
    struct inflight *f = p;
    char msg[128];
    int64_t t0 = tb_mono_ms();
    f->code = call_sleep(f->cli, f->ms, 60000, NULL, msg, sizeof msg);
    f->took = tb_mono_ms() - t0;
    return NULL;
}

RPC_TEST(shutdown_cancels_in_flight)
{
    struct echo_stats st = {0};
    char addr[300];
    snprintf(addr, sizeof addr, "unix://%s/sd.sock", scratch());
    rpc_server *srv = start_server(&st, 2, addr, NULL, NULL);
    rpc_client *cli;
    ASSERT_OK(rpc_client_create(addr, NULL, &cli));
    struct inflight f = {.cli = cli, .ms = 30000, .code = -1};
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, inflight_thread, &f), 0);
    WAIT_FOR(atomic_load(&st.sleeping) == 1, 5000);
    int64_t t0 = tb_mono_ms();
    rpc_server_destroy(srv, 200); /* grace shorter than the handler */
    int64_t took = tb_mono_ms() - t0;
    ASSERT_GE(took, 150);
    ASSERT_LT(took, 10000);
    ASSERT_EQ(atomic_load(&st.sleep_cancelled), 1); /* handler was told */
    pthread_join(th, NULL);
    ASSERT(f.code == RPC_CANCELLED || f.code == RPC_UNAVAILABLE);
    ASSERT_LT(f.took, 10000);
    rpc_client_destroy(cli);
    scratch_rm();
}

RPC_TEST(shutdown_lets_calls_finish)
{
    struct echo_stats st = {0};
    int port;
    rpc_server *srv = start_server(&st, 2, "127.0.0.1:0", NULL, &port);
    char target[64];
    tcp_target(target, sizeof target, port);
    rpc_client *cli;
    ASSERT_OK(rpc_client_create(target, NULL, &cli));
    struct inflight f = {.cli = cli, .ms = 300, .code = -1};
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, inflight_thread, &f), 0);
    WAIT_FOR(atomic_load(&st.sleeping) == 1, 5000);
    rpc_server_destroy(srv, 10000); /* grace longer than the handler */
    pthread_join(th, NULL);
    ASSERT_EQ(f.code, RPC_OK);
    ASSERT_EQ(atomic_load(&st.sleep_done), 1);
    /* The server is gone: new calls fail fast. */
    char out[16], msg[128];
    ASSERT_EQ(echo(cli, "x", out, sizeof out, msg, sizeof msg, 5000, 0),
              RPC_UNAVAILABLE);
    rpc_client_destroy(cli);
}

RPC_TEST(signals)
{
    tb_signals_block();
    int64_t t0 = tb_mono_ms();
    ASSERT_EQ(tb_signals_wait(100), 0);
    ASSERT_GE(tb_mono_ms() - t0, 90);
    ASSERT_EQ(kill(getpid(), SIGTERM), 0);
    ASSERT_EQ(tb_signals_wait(5000), SIGTERM);
    ASSERT_EQ(kill(getpid(), SIGINT), 0);
    ASSERT_EQ(tb_signals_wait(0), SIGINT);
    ASSERT_EQ(kill(getpid(), SIGPIPE), 0); /* blocked: harmless */
}

TT_MAIN()
