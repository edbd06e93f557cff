/*
 * rpc-bench.c: figures for the RPC layer (proto/rpc.h), for `make bench`.
 *
 * One process runs the echo service (tests/rpc/echo-svc.h) and calls it:
 *   - sequential 64-byte Echo calls over the unix socket, plaintext TCP and
 *     mutual-TLS TCP: calls/s, p50 and p99 latency;
 *   - 4 client threads sharing one client over the unix socket: calls/s;
 *   - 4 MiB responses (a replication-batch-sized message) over the unix
 *     socket and mTLS: MiB/s.
 * bench_stats.h's samples (5; QUICK 3), the cases interleaved in each
 * (unix, tcp, mtls, 4 threads, unix, ...): every figure is the median of
 * its samples with min and max, and the ratios against the sequential
 * unix-socket figure (ratio.rpc_tcp_vs_unix_seq, ratio.rpc_mtls_vs_unix_seq,
 * ratio.rpc_unix_4threads_vs_seq) are medians of the per-sample ratios.
 * Each figure is appended as a JSON line to $TANDEM_BENCH_OUT (default
 * build/bench.jsonl).  Run from the repository root (scripts/gen-certs.sh
 * makes the certificates).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench_stats.h"
#include "tbase.h"
#include "tests/rpc/echo-svc.h"
#include "tlog.h"
#include "tsig.h"

/* A figure of ns samples: median with spread. */
static void emit(const char *name, const double *v, int ns, const char *unit)
{
    bs_emit_samples(name, v, ns, unit, NULL);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int echo_once(rpc_client *cli)
{
    static char text[65] =
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    Google__Protobuf__StringValue req = GOOGLE__PROTOBUF__STRING_VALUE__INIT;
    req.value = text;
    ProtobufCMessage *resp = NULL;
    int code = rpc_client_call(cli, ECHO_SVC "Echo", &req.base, ECHO_STR,
                               &resp, 10000, 0, NULL, 0);
    if (resp)
        protobuf_c_message_free_unpacked(resp, NULL);
    return code;
}

/* Sequential calls: returns calls/s, fills p50/p99 (us). */
static double seq_calls(rpc_client *cli, int n, double *p50, double *p99)
{
    double *lat = calloc((size_t)n, sizeof *lat);
    if (!lat)
        exit(1);
    for (int i = 0; i < 200; i++) /* warm-up: connect, handshake */
        echo_once(cli);
    double t0 = tb_mono_s() * 1e6;
    for (int i = 0; i < n; i++) {
        double t = tb_mono_s() * 1e6;
        if (echo_once(cli) != RPC_OK) {
            fprintf(stderr, "rpc-bench: call failed\n");
            exit(1);
        }
        lat[i] = tb_mono_s() * 1e6 - t;
    }
    double el = tb_mono_s() * 1e6 - t0;
    qsort(lat, (size_t)n, sizeof *lat, cmp_d);
    *p50 = lat[n / 2];
    *p99 = lat[n * 99 / 100];
    free(lat);
    return n / (el / 1e6);
}

struct par {
    rpc_client *cli;
    int n, bad;
};

static void *par_thread(void *p)
{
    struct par *a = p;
    for (int i = 0; i < a->n; i++)
        if (echo_once(a->cli) != RPC_OK)
            a->bad++;
    return NULL;
}

static double big_mibs(rpc_client *cli, int n, int64_t size)
{
    Google__Protobuf__Int64Value req = GOOGLE__PROTOBUF__INT64_VALUE__INIT;
    req.value = size;
    double t0 = tb_mono_s() * 1e6;
    for (int i = 0; i < n; i++) {
        ProtobufCMessage *resp = NULL;
        if (rpc_client_call(cli, ECHO_SVC "Big", &req.base, ECHO_BYTES, &resp,
                            30000, 0, NULL, 0) != RPC_OK) {
            fprintf(stderr, "rpc-bench: big call failed\n");
            exit(1);
        }
        protobuf_c_message_free_unpacked(resp, NULL);
    }
    return (double)n * (double)size / (1 << 20) / ((tb_mono_s() * 1e6 - t0) / 1e6);
}

int main(void)
{
    tb_signals_block();
    tlog_init("rpc-bench", TLOG_WARN);
    bs_init("rpc-bench");

    char dir[] = "/tmp/rpc-bench.XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    char cmd[512], sock[300], ca[300], crt[300], key[300], cca[300],
        ccrt[300], ckey[300];
    snprintf(cmd, sizeof cmd,
             "scripts/gen-certs.sh %s/pki server client >/dev/null", dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "rpc-bench: gen-certs failed (run from the root)\n");
        return 1;
    }
    snprintf(sock, sizeof sock, "unix://%s/bench.sock", dir);
    snprintf(ca, sizeof ca, "%s/pki/ca.pem", dir);
    snprintf(crt, sizeof crt, "%s/pki/server.pem", dir);
    snprintf(key, sizeof key, "%s/pki/server.key", dir);
    snprintf(cca, sizeof cca, "%s/pki/ca.pem", dir);
    snprintf(ccrt, sizeof ccrt, "%s/pki/client.pem", dir);
    snprintf(ckey, sizeof ckey, "%s/pki/client.key", dir);

    struct rpc_server_opts o = {.methods = echo_methods,
                                .n_methods = ECHO_N_METHODS,
                                .n_threads = 4};
    rpc_server *srv;
    struct rpc_tls stls = {ca, crt, key, NULL};
    struct rpc_tls ctls = {cca, ccrt, ckey, NULL};
    int tcp_port, tls_port;
    if (rpc_server_create(&o, &srv) < 0 ||
        rpc_server_listen(srv, sock, NULL) < 0 ||
        (tcp_port = rpc_server_listen(srv, "127.0.0.1:0", NULL)) <= 0 ||
        (tls_port = rpc_server_listen(srv, "127.0.0.1:0", &stls)) <= 0 ||
        rpc_server_start(srv) < 0) {
        fprintf(stderr, "rpc-bench: server setup failed\n");
        return 1;
    }
    char tcp[64], tlst[64];
    snprintf(tcp, sizeof tcp, "127.0.0.1:%d", tcp_port);
    snprintf(tlst, sizeof tlst, "127.0.0.1:%d", tls_port);
    rpc_client *cu, *ct, *cs;
    if (rpc_client_create(sock, NULL, &cu) < 0 ||
        rpc_client_create(tcp, NULL, &ct) < 0 ||
        rpc_client_create(tlst, &ctls, &cs) < 0)
        return 1;

    /* 5000 calls per case in all (QUICK: 1500), split over the samples. */
    int ns = bs_samples(), N = (bs_quick() ? 1500 : 5000) / ns;
    enum { T = 4 };
    double us[BS_MAX], u50[BS_MAX], u99[BS_MAX], ts[BS_MAX], t50[BS_MAX],
        ms[BS_MAX], m50[BS_MAX], m99[BS_MAX], par[BS_MAX], bu[BS_MAX],
        bm[BS_MAX], rt[BS_MAX], rm[BS_MAX], rp[BS_MAX], p99;
    int bad = 0;
    printf("rpc layer (gRPC C core %s), echo of 64 bytes, %d samples of %d "
           "calls\n", "1.51", ns, N);
    for (int k = 0; k < ns; k++) {
        us[k] = seq_calls(cu, N, &u50[k], &u99[k]);
        ts[k] = seq_calls(ct, N, &t50[k], &p99);
        ms[k] = seq_calls(cs, N, &m50[k], &m99[k]);
        struct par a[T];
        pthread_t th[T];
        double t0 = tb_mono_s() * 1e6;
        for (int i = 0; i < T; i++) {
            a[i] = (struct par){.cli = cu, .n = N / 2};
            pthread_create(&th[i], NULL, par_thread, &a[i]);
        }
        for (int i = 0; i < T; i++) {
            pthread_join(th[i], NULL);
            bad += a[i].bad;
        }
        par[k] = T * (N / 2) / ((tb_mono_s() * 1e6 - t0) / 1e6);
        bu[k] = big_mibs(cu, bs_quick() ? 5 : 10, 4 << 20);
        bm[k] = big_mibs(cs, bs_quick() ? 5 : 10, 4 << 20);
        rt[k] = ts[k] / us[k];
        rm[k] = ms[k] / us[k];
        rp[k] = par[k] / us[k];
    }
    if (bad)
        fprintf(stderr, "rpc-bench: %d parallel calls failed\n", bad);
    emit("rpc_unix_seq_calls_per_s", us, ns, "calls/s");
    emit("rpc_unix_seq_p50_us", u50, ns, "us");
    emit("rpc_unix_seq_p99_us", u99, ns, "us");
    emit("rpc_tcp_seq_calls_per_s", ts, ns, "calls/s");
    emit("rpc_tcp_seq_p50_us", t50, ns, "us");
    emit("rpc_mtls_seq_calls_per_s", ms, ns, "calls/s");
    emit("rpc_mtls_seq_p50_us", m50, ns, "us");
    emit("rpc_mtls_seq_p99_us", m99, ns, "us");
    emit("rpc_unix_4threads_calls_per_s", par, ns, "calls/s");
    emit("rpc_unix_4MiB_response_MiB_per_s", bu, ns, "MiB/s");
    emit("rpc_mtls_4MiB_response_MiB_per_s", bm, ns, "MiB/s");
    bs_emit_ratio("ratio.rpc_tcp_vs_unix_seq", rt, ns, "x", NULL);
    bs_emit_ratio("ratio.rpc_mtls_vs_unix_seq", rm, ns, "x", NULL);
    bs_emit_ratio("ratio.rpc_unix_4threads_vs_seq", rp, ns, "x", NULL);

    rpc_client_destroy(cu);
    rpc_client_destroy(ct);
    rpc_client_destroy(cs);
    rpc_server_destroy(srv, 1000);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        return 1;
    bs_close();
    return bad ? 1 : 0;
}
