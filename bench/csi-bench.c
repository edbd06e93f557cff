/*
 * csi-bench.c: CreateVolume and DeleteVolume through a real tandem-csi
 * (controller mode) over its unix socket, per backend (sqlite always;
 * rados when $TANDEM_CEPH_CONF is set, in a fresh RADOS namespace of
 * $TANDEM_CEPH_POOL_A).  The baseline is a GetPluginInfo round trip (the
 * RPC floor), so the ratio shows what the volume work costs on top of
 * gRPC.
 *
 * Sequential: bench_stats.h samples (5; QUICK 3), each m RPC-floor calls
 * then m CreateVolume calls one after the other, interleaved; m is
 * $TANDEM_BENCH_CSI_N (default 500; QUICK 150) / samples.  The ratio is
 * the median of the samples' create p50 / floor p50, with min and max.
 * The store calls one create costs come from the plugin's
 * csi.volume.create_cost log lines (a plugin of issue 12 or later).
 *
 * The provisioner storm: $TANDEM_BENCH_CSI_STORM (default 500) creates,
 * $TANDEM_BENCH_CSI_CALLERS (default 16) at a time over one client (as
 * one external-provisioner with --worker-threads 16); then every volume
 * is deleted (sequential ones one after the other, the storm's 16 at a
 * time).
 *
 * Clones: a 256 MiB source volume with 64 MiB of incompressible data in
 * 16 of its 64 objects (written straight into its store), cloned
 * ($TANDEM_BENCH_CLONE_N times, default 5; QUICK 3) through CreateVolume
 * with the volume as content source: a clone is a copy (csi_snap.c says
 * why), so its time grows with the data in the source, and the figure
 * comes with that size and the copy rate.
 *
 * Figures appended to $TANDEM_BENCH_OUT (default build/bench.jsonl):
 *   ratio.createvolume_vs_rpc_p50.<b>    median of samples, min, max
 *   csi.createvolume_p50_ms.<b>, csi.rpc_floor_p50_ms.<b>  (the same
 *                                        samples' medians, with spread)
 *   csi.createvolume_per_s.<b>, csi.createvolume_seq_p99_ms.<b>
 *                                        one caller (before issue 12 the
 *                                        p99 of one caller was named
 *                                        csi.createvolume_p99_ms)
 *   csi.createvolume_store_reads.<b>, csi.createvolume_store_writes.<b>
 *   csi.createvolume_p99_ms.<b>          under 16 concurrent callers (the
 *                                        storm)
 *   csi.storm_s.<N>x<callers>.<b>, csi.createvolume_per_s.<callers>callers.<b>
 *   csi.deletevolume_per_s.<b>, csi.deletevolume_p50_ms.<b>,
 *   csi.deletevolume_p99_ms.<b>          one caller
 *   clone.create_p50_ms.<b>, clone.data_mib.<b>, clone.copy_mib_per_s.<b>
 *
 * $TANDEM_CSI picks the plugin binary (default: ../tandem-csi beside this
 * program), so one csi-bench can measure two builds of the plugin.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench_stats.h"
#include "csi.pb-c.h"
#include "jr.h"
#include "regions.h"
#include "rpc.h"
#include "tbase.h"
#include "tsig.h"

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, int n, double p)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_d);
    int i = (int)(p * (n - 1) + 0.5);
    return v[i];
}

static void emit(const char *name, const char *backend, double v,
                 const char *unit)
{
    char nm[160];
    printf("  %-34s %12.3f %s\n", name, v, unit);
    snprintf(nm, sizeof(nm), "%s.%s", name, backend);
    bs_emit(nm, v, unit);
}

struct plugin {
    pid_t pid;
    char dir[256];
    rpc_client *cli;
};

static int plugin_start(struct plugin *p, const char *backend_cfg)
{
    char self[512], bin[700], cfg[400], sock[400], logp[400];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n < 0) return -errno;
    self[n] = 0;
    const char *env = getenv("TANDEM_CSI");
    snprintf(bin, sizeof(bin), "%s", env && env[0] ? env : "");
    if (!bin[0]) snprintf(bin, sizeof(bin), "%s/../tandem-csi", dirname(self));
    const char *tmp = getenv("TANDEM_TEST_TMP");
    snprintf(p->dir, sizeof(p->dir), "%s/csi-bench.XXXXXX",
             tmp && tmp[0] ? tmp : "/tmp");
    if (!mkdtemp(p->dir)) return -errno;
    snprintf(cfg, sizeof(cfg), "%s/regions.conf", p->dir);
    snprintf(sock, sizeof(sock), "unix://%s/csi.sock", p->dir);
    snprintf(logp, sizeof(logp), "%s/csi.log", p->dir);
    FILE *f = fopen(cfg, "w");
    if (!f) return -errno;
    fprintf(f, "[tandem]\ndefault_region = x\n[region x]\n");
    fprintf(f, backend_cfg, p->dir);
    fclose(f);
    p->pid = fork();
    if (p->pid == 0) {
        int fd = open(logp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) dup2(fd, 2);
        execl(bin, bin, "--endpoint", sock, "--mode", "controller",
              "--config", cfg, "--log-level", "info", (char *)NULL);
        _exit(127);
    }
    if (rpc_client_create(sock, NULL, &p->cli) < 0) return -EIO;
    Csi__V1__ProbeRequest q = CSI__V1__PROBE_REQUEST__INIT;
    ProtobufCMessage *r = NULL;
    char msg[256];
    int rc = rpc_client_call(p->cli, "/csi.v1.Identity/Probe", &q.base,
                             &csi__v1__probe_response__descriptor, &r, 15000,
                             1, msg, sizeof(msg));
    if (r) protobuf_c_message_free_unpacked(r, NULL);
    if (rc != RPC_OK) {
        fprintf(stderr, "csi-bench: plugin not ready: %s %s\n",
                rpc_code_name(rc), msg);
        return -EIO;
    }
    return 0;
}

static void plugin_stop(struct plugin *p)
{
    int st;
    char cmd[400];
    rpc_client_destroy(p->cli);
    if (p->pid > 0) {
        kill(p->pid, SIGTERM);
        waitpid(p->pid, &st, 0);
    }
    snprintf(cmd, sizeof(cmd), "rm -rf %s", p->dir);
    if (system(cmd)) {}
}

#define CLONE_SRC_SIZE (256ull << 20)
#define CLONE_DATA (64ull << 20)

/* Clone figures: see the top comment.  0 or -EIO. */
static int run_clones(struct plugin *p, const char *backend, int n)
{
    char cfgp[400], err[256], msg[512], name[64];
    struct rg_config *cfg = NULL;
    st_store *st = NULL;
    jr_volume *v = NULL;
    uint8_t *buf = NULL;
    double *lat = calloc((size_t)n, sizeof(double));
    int rc = -EIO;
    snprintf(cfgp, sizeof(cfgp), "%s/regions.conf", p->dir);
    if (!lat || rg_load(cfgp, &cfg, err, sizeof(err)) < 0 ||
        rg_open_store(rg_find(cfg, "x"), &st) < 0) {
        fprintf(stderr, "csi-bench %s: clone set-up: %s\n", backend, err);
        goto out;
    }
    Csi__V1__VolumeCapability__MountVolume mv =
        CSI__V1__VOLUME_CAPABILITY__MOUNT_VOLUME__INIT;
    Csi__V1__VolumeCapability__AccessMode am =
        CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__INIT;
    Csi__V1__VolumeCapability cap = CSI__V1__VOLUME_CAPABILITY__INIT;
    Csi__V1__VolumeCapability *pc = &cap;
    Csi__V1__CapacityRange cr = CSI__V1__CAPACITY_RANGE__INIT;
    am.mode = CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_WRITER;
    cap.access_mode = &am;
    cap.access_type_case = CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_MOUNT;
    cap.mount = &mv;
    cr.required_bytes = (int64_t)CLONE_SRC_SIZE;
    Csi__V1__CreateVolumeRequest q = CSI__V1__CREATE_VOLUME_REQUEST__INIT;
    ProtobufCMessage *r = NULL;
    q.name = "pvc-bench-clone-src";
    q.capacity_range = &cr;
    q.n_volume_capabilities = 1;
    q.volume_capabilities = &pc;
    int code = rpc_client_call(p->cli, "/csi.v1.Controller/CreateVolume",
                               &q.base,
                               &csi__v1__create_volume_response__descriptor,
                               &r, 30000, 0, msg, sizeof(msg));
    if (r) protobuf_c_message_free_unpacked(r, NULL);
    if (code != RPC_OK) goto rpcfail;
    /* 4 MiB of data every 16 MiB: 16 of 64 objects hold data. */
    buf = malloc(4 << 20);
    if (!buf) goto out;
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < (4u << 20); i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        buf[i] = (uint8_t)x;
    }
    if (jr_open(st, "pvc-bench-clone-src", JR_OPEN_WRITE, "csi-bench", &v) < 0)
        goto out;
    for (uint64_t off = 0; off < CLONE_SRC_SIZE; off += 16 << 20)
        if (jr_write(v, off, buf, 4 << 20) < 0) goto out;
    if (jr_close(v) < 0) {
        v = NULL;
        goto out;
    }
    v = NULL;
    Csi__V1__VolumeContentSource src = CSI__V1__VOLUME_CONTENT_SOURCE__INIT;
    Csi__V1__VolumeContentSource__VolumeSource vs =
        CSI__V1__VOLUME_CONTENT_SOURCE__VOLUME_SOURCE__INIT;
    vs.volume_id = "pvc-bench-clone-src";
    src.type_case = CSI__V1__VOLUME_CONTENT_SOURCE__TYPE_VOLUME;
    src.volume = &vs;
    q.capacity_range = NULL;
    q.volume_content_source = &src;
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "pvc-bench-clone-%03d", i);
        q.name = name;
        double t0 = tb_mono_s() * 1e3;
        code = rpc_client_call(p->cli, "/csi.v1.Controller/CreateVolume",
                               &q.base,
                               &csi__v1__create_volume_response__descriptor,
                               &r, 120000, 0, msg, sizeof(msg));
        lat[i] = tb_mono_s() * 1e3 - t0;
        if (r) protobuf_c_message_free_unpacked(r, NULL);
        r = NULL;
        if (code != RPC_OK) goto rpcfail;
    }
    double c50 = pct(lat, n, 0.5);
    printf("%s: %d clones of a %llu MiB volume holding %llu MiB of data\n",
           backend, n, CLONE_SRC_SIZE >> 20, CLONE_DATA >> 20);
    emit("clone.create_p50_ms", backend, c50, "ms");
    emit("clone.data_mib", backend, (double)(CLONE_DATA >> 20), "MiB");
    emit("clone.copy_mib_per_s", backend,
         (double)(CLONE_DATA >> 20) / (c50 / 1e3), "MiB/s");
    rc = 0;
    goto out;
rpcfail:
    fprintf(stderr, "csi-bench %s clones: %s: %s\n", backend,
            rpc_code_name(code), msg);
out:
    if (v) jr_close(v);
    free(buf);
    free(lat);
    st_close(st);
    rg_free(cfg);
    return rc;
}

/* One CreateVolume request for name (1 GiB, mount). */
static int create_one(rpc_client *cli, const char *name, char *msg,
                      size_t len)
{
    Csi__V1__VolumeCapability__MountVolume mv =
        CSI__V1__VOLUME_CAPABILITY__MOUNT_VOLUME__INIT;
    Csi__V1__VolumeCapability__AccessMode am =
        CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__INIT;
    Csi__V1__VolumeCapability cap = CSI__V1__VOLUME_CAPABILITY__INIT;
    Csi__V1__VolumeCapability *pc = &cap;
    Csi__V1__CapacityRange cr = CSI__V1__CAPACITY_RANGE__INIT;
    Csi__V1__CreateVolumeRequest q = CSI__V1__CREATE_VOLUME_REQUEST__INIT;
    ProtobufCMessage *r = NULL;
    am.mode = CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_WRITER;
    cap.access_mode = &am;
    cap.access_type_case = CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_MOUNT;
    cap.mount = &mv;
    cr.required_bytes = 1ll << 30;
    q.name = (char *)name;
    q.capacity_range = &cr;
    q.n_volume_capabilities = 1;
    q.volume_capabilities = &pc;
    int rc = rpc_client_call(cli, "/csi.v1.Controller/CreateVolume", &q.base,
                             &csi__v1__create_volume_response__descriptor, &r,
                             60000, 0, msg, len);
    if (r) protobuf_c_message_free_unpacked(r, NULL);
    return rc;
}

static int delete_one(rpc_client *cli, const char *name, char *msg,
                      size_t len)
{
    Csi__V1__DeleteVolumeRequest q = CSI__V1__DELETE_VOLUME_REQUEST__INIT;
    ProtobufCMessage *r = NULL;
    q.volume_id = (char *)name;
    int rc = rpc_client_call(cli, "/csi.v1.Controller/DeleteVolume", &q.base,
                             &csi__v1__delete_volume_response__descriptor, &r,
                             60000, 0, msg, len);
    if (r) protobuf_c_message_free_unpacked(r, NULL);
    return rc;
}

static int floor_one(rpc_client *cli, char *msg, size_t len)
{
    Csi__V1__GetPluginInfoRequest q = CSI__V1__GET_PLUGIN_INFO_REQUEST__INIT;
    ProtobufCMessage *r = NULL;
    int rc = rpc_client_call(cli, "/csi.v1.Identity/GetPluginInfo", &q.base,
                             &csi__v1__get_plugin_info_response__descriptor,
                             &r, 10000, 0, msg, len);
    if (r) protobuf_c_message_free_unpacked(r, NULL);
    return rc;
}

/* The storm: callers threads share one client (one channel, as one
 * external-provisioner) and take the next volume of n until none is
 * left; each records its calls' latency. */
struct storm {
    rpc_client *cli;
    const char *prefix;
    int n, del;
    int next;      /* __atomic */
    int failed;    /* __atomic: first failing code */
    double *lat;   /* [n], ms */
    char msg[700]; /* the first failure's message */
};

static void *storm_main(void *arg)
{
    struct storm *s = arg;
    char name[64], msg[512];
    for (;;) {
        int i = __atomic_fetch_add(&s->next, 1, __ATOMIC_RELAXED);
        if (i >= s->n || __atomic_load_n(&s->failed, __ATOMIC_RELAXED)) break;
        snprintf(name, sizeof(name), "%s%06d", s->prefix, i);
        double t0 = tb_mono_s() * 1e3;
        int rc = s->del ? delete_one(s->cli, name, msg, sizeof(msg))
                        : create_one(s->cli, name, msg, sizeof(msg));
        s->lat[i] = tb_mono_s() * 1e3 - t0;
        if (rc != RPC_OK) {
            int z = 0;
            if (__atomic_compare_exchange_n(&s->failed, &z, rc ? rc : -1, 0,
                                            __ATOMIC_RELAXED,
                                            __ATOMIC_RELAXED))
                snprintf(s->msg, sizeof(s->msg), "%s %.64s: %.500s",
                         s->del ? "DeleteVolume" : "CreateVolume", name, msg);
            break;
        }
    }
    return NULL;
}

/* n calls (creates, or deletes) by `callers` threads: seconds, or -1. */
static double storm_run(rpc_client *cli, const char *prefix, int n,
                        int callers, int del, double *lat)
{
    struct storm s = {.cli = cli, .prefix = prefix, .n = n, .del = del,
                      .lat = lat};
    pthread_t th[64];
    if (callers > 64) callers = 64;
    double t0 = tb_mono_s();
    for (int i = 0; i < callers; i++)
        pthread_create(&th[i], NULL, storm_main, &s);
    for (int i = 0; i < callers; i++) pthread_join(th[i], NULL);
    double el = tb_mono_s() - t0;
    if (s.failed) {
        fprintf(stderr, "csi-bench: storm: %s: %s\n", rpc_code_name(s.failed),
                s.msg);
        return -1;
    }
    return el;
}

/* Store calls per CreateVolume (the plugin's csi.volume.create_cost
 * lines, which only a plugin of issue 12 or later writes), medians over
 * the volumes named prefix*: 0, or -1 when there are none. */
static int store_cost(const struct plugin *p, const char *prefix,
                      double *reads, double *writes)
{
    char path[400], line[2048], want[80];
    double rv[BS_MAX], wv[BS_MAX];
    int n = 0;
    snprintf(path, sizeof(path), "%s/csi.log", p->dir);
    snprintf(want, sizeof(want), "vol=%s", prefix);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    while (n < BS_MAX && fgets(line, sizeof(line), f)) {
        const char *a = strstr(line, "csi.volume.create_cost");
        const char *b = a ? strstr(a, want) : NULL;
        const char *c = b ? strstr(b, "store_reads=") : NULL;
        long rd, wr;
        if (c && sscanf(c, "store_reads=%ld store_writes=%ld", &rd, &wr) == 2) {
            rv[n] = (double)rd;
            wv[n++] = (double)wr;
        }
    }
    fclose(f);
    if (!n) return -1;
    *reads = bs_median(rv, n, NULL, NULL);
    *writes = bs_median(wv, n, NULL, NULL);
    return 0;
}

static int run(const char *backend, const char *backend_cfg, int n,
               int nclones, int storm_n, int callers)
{
    struct plugin p = {0};
    int ns = bs_samples(), m = n / ns > 10 ? n / ns : 10;
    double *lat = calloc((size_t)(m * ns + storm_n), sizeof(double));
    double *flat = calloc((size_t)m, sizeof(double));
    double *clat = calloc((size_t)m, sizeof(double));
    double ratio[BS_MAX], c50s[BS_MAX], f50s[BS_MAX];
    char msg[512], name[64], fig[160];
    int rc = plugin_start(&p, backend_cfg);
    if (rc < 0 || !lat || !flat || !clat) goto out;

    /* Interleaved samples: m RPC-floor calls (GetPluginInfo), then m
     * CreateVolume calls one after the other, ns times over; each
     * sample's ratio is its create p50 over its floor p50. */
    double create_s = 0;
    int made = 0;
    for (int k = 0; k < ns; k++) {
        for (int i = 0; i < m; i++) {
            double t0 = tb_mono_s() * 1e3;
            if ((rc = floor_one(p.cli, msg, sizeof(msg))) != RPC_OK) goto fail;
            flat[i] = tb_mono_s() * 1e3 - t0;
        }
        double t1 = tb_mono_s();
        for (int i = 0; i < m; i++) {
            snprintf(name, sizeof(name), "pvc-bench-%06d", made);
            double t0 = tb_mono_s() * 1e3;
            if ((rc = create_one(p.cli, name, msg, sizeof(msg))) != RPC_OK)
                goto fail;
            clat[i] = lat[made++] = tb_mono_s() * 1e3 - t0;
        }
        create_s += tb_mono_s() - t1;
        f50s[k] = bs_median(flat, m, NULL, NULL);
        c50s[k] = bs_median(clat, m, NULL, NULL);
        ratio[k] = c50s[k] / f50s[k];
    }
    printf("%s: %d samples of %d volumes created one after the other\n",
           backend, ns, m);
    snprintf(fig, sizeof(fig), "csi.createvolume_per_s.%s", backend);
    bs_emit(fig, made / create_s, "ops/s");
    snprintf(fig, sizeof(fig), "csi.createvolume_p50_ms.%s", backend);
    bs_emit_samples(fig, c50s, ns, "ms", NULL);
    snprintf(fig, sizeof(fig), "csi.createvolume_seq_p99_ms.%s", backend);
    bs_emit(fig, pct(lat, made, 0.99), "ms");
    snprintf(fig, sizeof(fig), "csi.rpc_floor_p50_ms.%s", backend);
    bs_emit_samples(fig, f50s, ns, "ms", NULL);
    snprintf(fig, sizeof(fig), "ratio.createvolume_vs_rpc_p50.%s", backend);
    bs_emit_ratio(fig, ratio, ns, "x", NULL);
    double rd, wr;
    if (store_cost(&p, "pvc-bench-", &rd, &wr) == 0) {
        printf("  store calls per CreateVolume: %.0f reads, %.0f writes\n",
               rd, wr);
        snprintf(fig, sizeof(fig), "csi.createvolume_store_reads.%s", backend);
        bs_emit(fig, rd, "calls");
        snprintf(fig, sizeof(fig), "csi.createvolume_store_writes.%s",
                 backend);
        bs_emit(fig, wr, "calls");
    }

    /* The provisioner storm: storm_n creates, `callers` at a time. */
    double el = storm_run(p.cli, "pvc-storm-", storm_n, callers, 0,
                          lat + made);
    if (el < 0) {
        rc = -EIO;
        goto out;
    }
    printf("%s: storm of %d CreateVolume, %d callers: %.2f s\n", backend,
           storm_n, callers, el);
    snprintf(fig, sizeof(fig), "csi.storm_s.%dx%d.%s", storm_n, callers,
             backend);
    bs_emit(fig, el, "s");
    snprintf(fig, sizeof(fig), "csi.createvolume_per_s.%dcallers.%s", callers,
             backend);
    bs_emit(fig, storm_n / el, "ops/s");
    snprintf(fig, sizeof(fig), "csi.createvolume_p99_ms.%s", backend);
    double p99 = pct(lat + made, storm_n, 0.99);
    printf("  %-62s %10.3f ms (%d callers)\n", fig, p99, callers);
    bs_emit(fig, p99, "ms");

    /* Deletes: the sequential volumes one after the other (the figures
     * of before), the storm's `callers` at a time. */
    double t_all = tb_mono_s() * 1e3;
    for (int i = 0; i < made; i++) {
        snprintf(name, sizeof(name), "pvc-bench-%06d", i);
        double t0 = tb_mono_s() * 1e3;
        if ((rc = delete_one(p.cli, name, msg, sizeof(msg))) != RPC_OK)
            goto fail;
        lat[i] = tb_mono_s() * 1e3 - t0;
    }
    double del_s = (tb_mono_s() * 1e3 - t_all) / 1e3;
    snprintf(fig, sizeof(fig), "csi.deletevolume_per_s.%s", backend);
    bs_emit(fig, made / del_s, "ops/s");
    snprintf(fig, sizeof(fig), "csi.deletevolume_p50_ms.%s", backend);
    bs_emit(fig, pct(lat, made, 0.5), "ms");
    snprintf(fig, sizeof(fig), "csi.deletevolume_p99_ms.%s", backend);
    bs_emit(fig, pct(lat, made, 0.99), "ms");
    if (storm_run(p.cli, "pvc-storm-", storm_n, callers, 1, lat) < 0) {
        rc = -EIO;
        goto out;
    }
    rc = nclones > 0 ? run_clones(&p, backend, nclones) : 0;
    goto out;
fail:
    fprintf(stderr, "csi-bench %s: %s: %s\n", backend, rpc_code_name(rc), msg);
    rc = -EIO;
out:
    plugin_stop(&p);
    free(lat);
    free(flat);
    free(clat);
    return rc;
}

int main(void)
{
    tb_signals_block();
    bs_init("csi-bench");
    const char *ns = getenv("TANDEM_BENCH_CSI_N");
    const char *cs = getenv("TANDEM_BENCH_CLONE_N");
    const char *ss = getenv("TANDEM_BENCH_CSI_STORM");
    const char *ks = getenv("TANDEM_BENCH_CSI_CALLERS");
    int n = ns && atoi(ns) > 0 ? atoi(ns) : bs_quick() ? 150 : 500, rc = 0;
    int nc = cs && atoi(cs) >= 0 && cs[0] ? atoi(cs) : bs_quick() ? 3 : 5;
    int sn = ss && atoi(ss) > 0 ? atoi(ss) : 500;
    int callers = ks && atoi(ks) > 0 ? atoi(ks) : 16;
    if (run("sqlite", "backend = sqlite\ndb_path = %s/x.db\n", n, nc, sn,
            callers) < 0)
        rc = 1;
    const char *conf = getenv("TANDEM_CEPH_CONF");
    if (conf && conf[0]) {
        char cfg[2048];
        const char *kr = getenv("TANDEM_CEPH_KEYRING");
        const char *cl = getenv("TANDEM_CEPH_CLIENT");
        const char *pool = getenv("TANDEM_CEPH_POOL_A");
        /* %%s: the plugin dir is not needed for rados. */
        snprintf(cfg, sizeof(cfg),
                 "backend = rados\nceph_conf = %s\nclient_id = %s\n%s%s%s"
                 "pool = %s\nrados_namespace = csi-bench-%d\n# %%s\n",
                 conf, cl && cl[0] ? cl : "admin", kr && kr[0] ? "keyring = " : "",
                 kr && kr[0] ? kr : "", kr && kr[0] ? "\n" : "",
                 pool && pool[0] ? pool : "tandem-a", (int)getpid());
        if (run("rados", cfg, n, nc, sn, callers) < 0) rc = 1;
    } else {
        printf("rados: SKIPPED (%s)\n", getenv("TANDEM_CEPH_SKIP")
                                             ? getenv("TANDEM_CEPH_SKIP")
                                             : "TANDEM_CEPH_CONF not set");
    }
    bs_close();
    return rc;
}
