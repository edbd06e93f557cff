/*
 * test-tandemctl.c: tandemctl against a scripted admin API.
 *
 * Each test serves a fake tandem.admin.v1.Admin (canned volumes, the
 * refusal rules of tandem_admin.proto) on a unix socket in a scratch dir
 * and runs the real $(B)/tandemctl binary, checking its stdout, its
 * one-line stderr, its exit status and the manifests it writes.  The
 * daemon's own behaviour is tested end to end in tests/e2e/t041*.sh; this
 * pins down the CLI contract without depending on it.
 */
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <sys/stat.h>

#include "replicator/rep_pbmap.h"
#include "rpc.h"
#include "tandem_admin.pb-c.h"
#include "tsig.h"
#include "tt.h"

/* ------------------------------------------------------- fake server -- */

struct fvol {
    const char *id;
    int primary;
    uint64_t epoch;
    int peer_demoted; /* graceful promote allowed */
    int in_sync;      /* resync has nothing to do */
    uint64_t applied;
};

static struct fvol g_vols[8];
static size_t g_nvols;
static int g_no_meta; /* answer like a replicator that sends no metadata */
/* Snapshots of pvc-1234 in failover answers: {snap id, label} (g_nsnaps
 * of them; 0: none). */
static const char *const (*g_snaps)[2];
static size_t g_nsnaps;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;

static char *xs(const char *s)
{
    char *p = strdup(s);
    if (!p) abort();
    return p;
}

static Tandem__Admin__V1__VolumeStatus *vs_make(const struct fvol *f)
{
    Tandem__Admin__V1__VolumeStatus *v = calloc(1, sizeof *v);
    tandem__admin__v1__volume_status__init(v);
    v->volume_id = xs(f->id);
    v->region = xs("b");
    v->peer_region = xs("a");
    v->role = xs(f->primary ? "primary" : "secondary");
    v->epoch = f->epoch;
    v->head = f->applied + (f->primary ? 5 : 0);
    v->applied = f->applied;
    v->acked = f->primary ? f->applied : 0;
    v->lag_entries = f->primary ? 5 : 0;
    v->lag_bytes = f->primary ? 5 * 4096 : 0;
    v->lag_seconds = f->primary ? 0.25 : 0;
    v->last_sync_unix_ms = 1;
    v->throughput_bytes_per_s = 3.5 * 1024 * 1024;
    v->compression_ratio = 2.5;
    v->link_state = xs("up");
    v->state = xs("replicating");
    v->size_bytes = 1 << 30;
    v->replication = xs("async");
    v->last_error = xs("");
    v->applied_age_seconds = 1.5;
    v->rpo_seconds = f->primary ? 0.25 : 0.042;
    v->rpo_view = xs(f->primary ? "primary" : "replica");
    if (!f->primary) v->link_last_up_unix_ms = 1;
    if (!strcmp(f->id, "pvc-1234")) {
        v->snapshot_count = 2;
        v->snapshots_incomplete =
            xs("a region copy skipped positions 3..9: test");
    }
    static const char *kv[][2] = {
        {"csi.name", "pvc-1234"},
        {"csi.pvc_name", "data-db-0"},
        {"csi.pvc_namespace", "shop"},
        {"csi.pv_name", "pvc-1234"},
        {"csi.access_type", "mount"},
        {"csi.replication", "async"},
        {"csi.param.replication", "async"},
        {"csi.param.peerRegion", "b"},
        {"csi.param.fsType", "xfs"},
        {"csi.param.csi.storage.k8s.io/pvc/name", "data-db-0"},
    };
    size_t n = g_no_meta ? 0 : sizeof kv / sizeof kv[0];
    struct rep_pbmap m;
    if (rep__pbmap_init(
            &m, &tandem__admin__v1__volume_status__metadata_entry__descriptor))
        abort();
    for (size_t i = 0; i < n; i++)
        if (rep__pbmap_add(&m, kv[i][0], kv[i][1])) abort();
    v->metadata = (Tandem__Admin__V1__VolumeStatus__MetadataEntry **)m.a;
    v->n_metadata = m.n;
    return v;
}

static struct fvol *find(const char *id)
{
    for (size_t i = 0; i < g_nvols; i++)
        if (!strcmp(g_vols[i].id, id)) return &g_vols[i];
    return NULL;
}

static int h_status(void *svc, rpc_ctx *ctx, const ProtobufCMessage *reqm,
                    ProtobufCMessage **resp)
{
    const Tandem__Admin__V1__StatusRequest *req = (const void *)reqm;
    Tandem__Admin__V1__StatusResponse *r = calloc(1, sizeof *r);
    tandem__admin__v1__status_response__init(r);
    pthread_mutex_lock(&g_mu);
    for (size_t i = 0; i < req->n_volume_ids; i++)
        if (!find(req->volume_ids[i])) {
            pthread_mutex_unlock(&g_mu);
            protobuf_c_message_free_unpacked(&r->base, NULL);
            return rpc_ctx_error(ctx, RPC_NOT_FOUND, "no volume %s in region b",
                                 req->volume_ids[i]);
        }
    r->region = xs("b");
    r->peer_region = xs("a");
    r->peer_link_state = xs("up");
    r->volumes = calloc(g_nvols, sizeof *r->volumes);
    for (size_t i = 0; i < g_nvols; i++) {
        int want = !req->n_volume_ids;
        for (size_t j = 0; j < req->n_volume_ids; j++)
            want |= !strcmp(req->volume_ids[j], g_vols[i].id);
        if (want) r->volumes[r->n_volumes++] = vs_make(&g_vols[i]);
    }
    pthread_mutex_unlock(&g_mu);
    r->now_unix_ms = 2001;
    *resp = &r->base;
    return RPC_OK;
}

static int h_promote(void *svc, rpc_ctx *ctx, const ProtobufCMessage *reqm,
                     ProtobufCMessage **resp)
{
    const Tandem__Admin__V1__PromoteRequest *req = (const void *)reqm;
    pthread_mutex_lock(&g_mu);
    struct fvol *f = find(req->volume_id);
    int changed = 0;
    if (!f) {
        pthread_mutex_unlock(&g_mu);
        return rpc_ctx_error(ctx, RPC_NOT_FOUND, "no volume %s in region b",
                             req->volume_id);
    }
    if (!f->primary) {
        if (!req->force && !f->peer_demoted) {
            pthread_mutex_unlock(&g_mu);
            return rpc_ctx_error(ctx, RPC_FAILED_PRECONDITION,
                                 "%s is still primary in region a: demote it "
                                 "there first, or use --force if region a is "
                                 "lost",
                                 req->volume_id);
        }
        f->primary = 1;
        f->epoch++;
        changed = 1;
    }
    Tandem__Admin__V1__PromoteResponse *r = calloc(1, sizeof *r);
    tandem__admin__v1__promote_response__init(r);
    r->volume = vs_make(f);
    r->changed = changed;
    r->message = xs("");
    pthread_mutex_unlock(&g_mu);
    *resp = &r->base;
    return RPC_OK;
}

static int h_demote(void *svc, rpc_ctx *ctx, const ProtobufCMessage *reqm,
                    ProtobufCMessage **resp)
{
    const Tandem__Admin__V1__DemoteRequest *req = (const void *)reqm;
    pthread_mutex_lock(&g_mu);
    struct fvol *f = find(req->volume_id);
    if (!f) {
        pthread_mutex_unlock(&g_mu);
        return rpc_ctx_error(ctx, RPC_NOT_FOUND, "no volume %s in region b",
                             req->volume_id);
    }
    int changed = f->primary;
    f->primary = 0;
    Tandem__Admin__V1__DemoteResponse *r = calloc(1, sizeof *r);
    tandem__admin__v1__demote_response__init(r);
    r->volume = vs_make(f);
    r->changed = changed;
    r->message = xs("");
    pthread_mutex_unlock(&g_mu);
    *resp = &r->base;
    return RPC_OK;
}

static int h_failover(void *svc, rpc_ctx *ctx, const ProtobufCMessage *reqm,
                      ProtobufCMessage **resp)
{
    const Tandem__Admin__V1__FailoverRequest *req = (const void *)reqm;
    if (strcmp(req->to_region, "b"))
        return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
                             "this replicator serves region b, not %s",
                             req->to_region);
    Tandem__Admin__V1__FailoverResponse *r = calloc(1, sizeof *r);
    tandem__admin__v1__failover_response__init(r);
    r->region = xs("b");
    size_t n = req->all ? g_nvols : req->n_volume_ids;
    r->results = calloc(n ? n : 1, sizeof *r->results);
    pthread_mutex_lock(&g_mu);
    for (size_t i = 0; i < n; i++) {
        const char *id = req->all ? g_vols[i].id : req->volume_ids[i];
        struct fvol *f = find(id);
        Tandem__Admin__V1__FailoverResult *x = calloc(1, sizeof *x);
        tandem__admin__v1__failover_result__init(x);
        x->volume_id = xs(id);
        if (!f) {
            x->ok = 0;
            x->message = xs("no such volume in region b");
        } else {
            x->ok = 1;
            x->changed = !f->primary;
            if (!f->primary) {
                f->primary = 1;
                f->epoch++;
            }
            x->message = xs("");
            x->applied = f->applied;
            x->applied_age_seconds = 1.5;
            x->rpo_seconds = 1.5;
            x->link_down_seconds = 12.5;
            x->link_last_up_unix_ms = 1;
            x->epoch = f->epoch;
            x->volume = vs_make(f);
            if (!strcmp(id, "pvc-1234") && g_nsnaps) {
                x->snapshots = calloc(g_nsnaps, sizeof *x->snapshots);
                for (size_t k = 0; k < g_nsnaps; k++) {
                    Tandem__Admin__V1__Snapshot *sn = calloc(1, sizeof *sn);
                    tandem__admin__v1__snapshot__init(sn);
                    sn->snap_id = xs(g_snaps[k][0]);
                    sn->label = xs(g_snaps[k][1]);
                    sn->seq = 10 + k;
                    sn->size_bytes = 1 << 30;
                    x->snapshots[x->n_snapshots++] = sn;
                }
            }
        }
        r->results[r->n_results++] = x;
    }
    pthread_mutex_unlock(&g_mu);
    *resp = &r->base;
    return RPC_OK;
}

static int h_resync(void *svc, rpc_ctx *ctx, const ProtobufCMessage *reqm,
                    ProtobufCMessage **resp)
{
    const Tandem__Admin__V1__ResyncRequest *req = (const void *)reqm;
    pthread_mutex_lock(&g_mu);
    struct fvol *f = find(req->volume_id);
    if (!f) {
        pthread_mutex_unlock(&g_mu);
        return rpc_ctx_error(ctx, RPC_NOT_FOUND, "no volume %s in region b",
                             req->volume_id);
    }
    Tandem__Admin__V1__ResyncResponse *r = calloc(1, sizeof *r);
    tandem__admin__v1__resync_response__init(r);
    r->changed = !f->in_sync || req->full;
    r->full_copy = req->full;
    r->common_seq = 40;
    r->regions = r->changed ? 3 : 0;
    r->bytes_copied = r->changed ? 3 * 65536 : 0;
    r->message = xs("");
    f->in_sync = 1;
    f->primary = 0;
    r->volume = vs_make(f);
    pthread_mutex_unlock(&g_mu);
    *resp = &r->base;
    return RPC_OK;
}

/* Journals (CheckJournal / DiscardJournalTail): damaged at seq (0:
 * sound), recorded head and applied, the peer's ack.  move_to: the
 * damage moves there between the CLI's check and its discard (the
 * replicator then refuses). */
struct fjournal {
    const char *id;
    uint64_t seq, head, applied, acked;
    uint64_t move_to;
};
static struct fjournal g_jr[4];
static size_t g_njr;
static int g_discards; /* DiscardJournalTail calls that discarded */
static int g_discard_calls;

static struct fjournal *jfind(const char *id)
{
    for (size_t i = 0; i < g_njr; i++)
        if (!strcmp(g_jr[i].id, id)) return &g_jr[i];
    return NULL;
}

static Tandem__Admin__V1__VolumeStatus *jvs(const struct fjournal *j)
{
    struct fvol f = {j->id, 1, 3, 0, 1, j->applied};
    Tandem__Admin__V1__VolumeStatus *v = vs_make(&f);
    v->head = j->head;
    v->acked = j->acked;
    v->journal_damaged_seq = j->seq;
    return v;
}

static int h_check_journal(void *svc, rpc_ctx *ctx,
                           const ProtobufCMessage *reqm,
                           ProtobufCMessage **resp)
{
    const Tandem__Admin__V1__CheckJournalRequest *req = (const void *)reqm;
    pthread_mutex_lock(&g_mu);
    struct fjournal *j = jfind(req->volume_id);
    if (!j) {
        pthread_mutex_unlock(&g_mu);
        if (find(req->volume_id)) {
            Tandem__Admin__V1__CheckJournalResponse *r = calloc(1, sizeof *r);
            tandem__admin__v1__check_journal_response__init(r);
            r->applied = r->head = 40;
            r->peer_region = xs("a");
            r->volume = vs_make(find(req->volume_id));
            *resp = &r->base;
            return RPC_OK;
        }
        return rpc_ctx_error(ctx, RPC_NOT_FOUND, "volume %s: not found in "
                             "this region", req->volume_id);
    }
    Tandem__Admin__V1__CheckJournalResponse *r = calloc(1, sizeof *r);
    tandem__admin__v1__check_journal_response__init(r);
    r->damaged = j->seq != 0;
    r->applied = j->applied;
    r->head = j->head;
    r->peer_acked = j->acked;
    r->peer_region = xs("a");
    if (j->seq) {
        Tandem__Admin__V1__JournalDamage *d = calloc(1, sizeof *d);
        tandem__admin__v1__journal_damage__init(d);
        d->seq = j->seq;
        d->object = 0;
        d->offset = (j->seq - 1) * 4160;
        d->why = xs("payload crc mismatch (R-19)");
        r->damage = d;
        r->discard_entries = j->head - j->seq + 1;
        r->discard_bytes_estimate = r->discard_entries * 4096;
    }
    r->volume = jvs(j);
    pthread_mutex_unlock(&g_mu);
    *resp = &r->base;
    return RPC_OK;
}

static int h_discard_journal(void *svc, rpc_ctx *ctx,
                             const ProtobufCMessage *reqm,
                             ProtobufCMessage **resp)
{
    const Tandem__Admin__V1__DiscardJournalTailRequest *req =
        (const void *)reqm;
    pthread_mutex_lock(&g_mu);
    g_discard_calls++;
    struct fjournal *j = jfind(req->volume_id);
    if (!j) {
        pthread_mutex_unlock(&g_mu);
        return rpc_ctx_error(ctx, RPC_NOT_FOUND, "volume %s: not found in "
                             "this region", req->volume_id);
    }
    if (j->move_to) {
        j->seq = j->move_to;
        j->move_to = 0;
    }
    if (!j->seq || j->seq != req->bad_seq) {
        uint64_t now = j->seq;
        pthread_mutex_unlock(&g_mu);
        return rpc_ctx_error(ctx, RPC_FAILED_PRECONDITION,
                             "%s: the damage is now at seq %" PRIu64
                             ", not %" PRIu64 ": check again (nothing was "
                             "discarded)",
                             req->volume_id, now, req->bad_seq);
    }
    Tandem__Admin__V1__DiscardJournalTailResponse *r = calloc(1, sizeof *r);
    tandem__admin__v1__discard_journal_tail_response__init(r);
    r->discarded_from = j->seq;
    r->discarded_entries = j->head - j->seq + 1;
    r->head = j->head = j->applied = j->seq - 1;
    j->seq = 0;
    r->peer_copy_scheduled = 1;
    r->message = xs("discarded");
    r->volume = jvs(j);
    g_discards++;
    pthread_mutex_unlock(&g_mu);
    *resp = &r->base;
    return RPC_OK;
}

#define M(name, req, resp, fn)                                                 \
    {                                                                          \
        "/tandem.admin.v1.Admin/" name,                                        \
            &tandem__admin__v1__##req##__descriptor,                           \
            &tandem__admin__v1__##resp##__descriptor, fn                       \
    }
static const struct rpc_method g_methods[] = {
    M("Status", status_request, status_response, h_status),
    M("Promote", promote_request, promote_response, h_promote),
    M("Demote", demote_request, demote_response, h_demote),
    M("Failover", failover_request, failover_response, h_failover),
    M("Resync", resync_request, resync_response, h_resync),
    M("CheckJournal", check_journal_request, check_journal_response,
      h_check_journal),
    M("DiscardJournalTail", discard_journal_tail_request,
      discard_journal_tail_response, h_discard_journal),
};

static char g_dir[1024], g_addr[1200], g_ctl[PATH_MAX + 32];
static int g_stdin_fd = -1;
static rpc_server *g_srv;

static void setup(void)
{
    const char *tmp = getenv("TANDEM_TEST_TMP");
    snprintf(g_dir, sizeof g_dir, "%s/test-tandemctl.XXXXXX",
             tmp && *tmp ? tmp : "/tmp");
    ASSERT(mkdtemp(g_dir) != NULL);
    snprintf(g_addr, sizeof g_addr, "unix://%s/admin.sock", g_dir);
    const char *ctl = getenv("TANDEMCTL");
    if (ctl && *ctl) {
        snprintf(g_ctl, sizeof g_ctl, "%s", ctl);
    } else {
        /* $(B)/tests/test-tandemctl -> $(B)/tandemctl */
        char self[1024];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        ASSERT(n > 0);
        self[n] = 0;
        *strrchr(self, '/') = 0;
        snprintf(g_ctl, sizeof g_ctl, "%s/../tandemctl", self);
    }
    if (access(g_ctl, X_OK) != 0)
        TT_FAIL("tandemctl not found at %s (set TANDEMCTL)", g_ctl);

    struct fvol init[] = {
        {"pvc-1234", 0, 1, 0, 0, 40},
        {"pvc-5678", 0, 3, 1, 1, 7},
        {"pvc-prim", 1, 2, 0, 1, 99},
    };
    memcpy(g_vols, init, sizeof init);
    g_nvols = 3;
    struct fjournal jinit[] = {
        {"pvc-dmg", 6, 10, 5, 5, 0},   /* damaged at 6, peer has 1..5 */
        {"pvc-acked", 6, 10, 5, 8, 0}, /* the peer has entries past it */
    };
    memcpy(g_jr, jinit, sizeof jinit);
    g_njr = 2;
    g_discards = g_discard_calls = 0;
    g_stdin_fd = -1;

    tb_signals_block();
    struct rpc_server_opts o = {.methods = g_methods,
                                .n_methods =
                                    sizeof g_methods / sizeof g_methods[0]};
    ASSERT_OK(rpc_server_create(&o, &g_srv));
    ASSERT_GE(rpc_server_listen(g_srv, g_addr, NULL), 0);
    ASSERT_OK(rpc_server_start(g_srv));
}

static void teardown(void)
{
    rpc_server_destroy(g_srv, 100);
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    ASSERT_EQ(system(cmd), 0);
}

/* Run tandemctl --admin <fake> ARGS...; returns the exit status and the
 * captured output (static buffers, valid until the next run).  Its stdin
 * is g_stdin_fd (-1: /dev/null, never the test's own terminal). */
static char g_out[65536], g_err[8192];

static void slurp(const char *path, char *buf, size_t sz)
{
    int fd = open(path, O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, buf, sz - 1) : -1;
    buf[n > 0 ? n : 0] = 0;
    if (fd >= 0) close(fd);
}

static int run(const char *first, ...)
{
    char *argv[32];
    int n = 0;
    argv[n++] = g_ctl;
    argv[n++] = "--admin";
    argv[n++] = g_addr;
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a && n < 31; a = va_arg(ap, const char *))
        argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    char po[PATH_MAX + 8], pe[PATH_MAX + 8];
    snprintf(po, sizeof po, "%s/out", g_dir);
    snprintf(pe, sizeof pe, "%s/err", g_dir);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        int o = open(po, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int e = open(pe, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int in = g_stdin_fd >= 0 ? g_stdin_fd : open("/dev/null", O_RDONLY);
        dup2(in, 0);
        dup2(o, 1);
        dup2(e, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    int st;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    slurp(po, g_out, sizeof g_out);
    slurp(pe, g_err, sizeof g_err);
    if (getenv("TT_SHOW")) /* see what an operator would see */
        printf("$ tandemctl %s ...\n%s%s", first, g_out, g_err);
    ASSERT(WIFEXITED(st));
    return WEXITSTATUS(st);
}

static int lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

#define ASSERT_HAS(hay, needle)                                                \
    do {                                                                       \
        if (!strstr(hay, needle))                                              \
            TT_FAIL("expected \"%s\" in:\n%s", needle, hay);                   \
    } while (0)

/* ---------------------------------------------------------------- tests -- */

TEST(status_table_and_json)
{
    setup();
    ASSERT_EQ(run("status", NULL), 0);
    ASSERT_HAS(g_out, "region b (peer a, peer link up): 3 volumes");
    ASSERT_HAS(g_out, "VOLUME");
    ASSERT_HAS(g_out, "RPO");
    ASSERT_HAS(g_out, "RPO-AS-OF");
    ASSERT_HAS(g_out, "RPO as region b sees it");
    /* Milliseconds: a replica 42 ms behind is not shown as 0. */
    ASSERT_HAS(g_out, "0.042s");
    ASSERT_HAS(g_out, "0.250s");
    ASSERT_HAS(g_out, "pvc-prim");
    ASSERT_HAS(g_out, "3.5MiB/s");
    ASSERT_HAS(g_out, "2.50");
    /* Snapshots: the count, "!" and a line when this copy may lack some. */
    ASSERT_HAS(g_out, "SNAPS");
    ASSERT_HAS(g_out, " 2! ");
    ASSERT_HAS(g_out, "  pvc-1234: snapshots incomplete: a region copy "
                      "skipped positions 3..9");
    ASSERT_EQ(g_err[0], 0);
    ASSERT_EQ(run("status", "pvc-1234", "--json", NULL), 0);
    ASSERT_HAS(g_out, "\"volume_id\": \"pvc-1234\"");
    ASSERT_HAS(g_out, "\"lag_seconds\": 0");
    ASSERT_HAS(g_out, "\"csi.pvc_name\": \"data-db-0\"");
    ASSERT_HAS(g_out, "\"snapshot_count\": 2");
    ASSERT(!strstr(g_out, "pvc-prim"));
    ASSERT_EQ(run("status", "nope", NULL), 1);
    ASSERT_EQ(lines(g_err), 1);
    ASSERT_HAS(g_err, "no volume nope in region b (NOT_FOUND)");
    teardown();
}

TEST(promote_refused_forced_idempotent)
{
    setup();
    ASSERT_EQ(run("promote", "pvc-1234", NULL), 1);
    ASSERT_EQ(lines(g_err), 1);
    ASSERT_HAS(g_err, "tandemctl: promote pvc-1234: ");
    ASSERT_HAS(g_err, "(FAILED_PRECONDITION)");
    ASSERT_EQ(run("promote", "pvc-1234", "--force", NULL), 0);
    ASSERT_HAS(g_out, "pvc-1234 promoted to primary in region b (forced): "
                      "epoch 2");
    ASSERT_EQ(run("promote", "pvc-1234", "--force", NULL), 0);
    ASSERT_HAS(g_out, "already primary");
    ASSERT_HAS(g_out, "nothing to do");
    ASSERT_EQ(run("promote", "pvc-5678", NULL), 0); /* peer demoted */
    ASSERT_HAS(g_out, "epoch 4");
    ASSERT_EQ(run("promote", "ghost", NULL), 1);
    ASSERT_EQ(lines(g_err), 1);
    teardown();
}

TEST(demote_idempotent)
{
    setup();
    ASSERT_EQ(run("demote", "pvc-prim", NULL), 0);
    ASSERT_HAS(g_out, "pvc-prim demoted to secondary in region b");
    ASSERT_EQ(run("demote", "pvc-prim", NULL), 0);
    ASSERT_HAS(g_out, "nothing to do");
    teardown();
}

TEST(failover_all_and_manifests)
{
    setup();
    char dir[1100], path[1200], y[8192];
    snprintf(dir, sizeof dir, "%s/pv", g_dir);
    ASSERT_EQ(
        run("failover", "--to", "b", "--all", "--emit-manifests", dir, NULL),
        0);
    ASSERT_HAS(g_out, "failover to region b (forced): 3 volumes, 2 promoted "
                      "now, 1 already primary, 0 failed");
    ASSERT_HAS(g_out, "LINK-LAST-UP");
    ASSERT_HAS(g_out, "1.500s");
    ASSERT_HAS(g_out, "12s ago");
    snprintf(path, sizeof path, "%s/pvc-1234.yaml", dir);
    slurp(path, y, sizeof y);
    ASSERT_HAS(y, "kind: PersistentVolume\n");
    ASSERT_HAS(y, "driver: tandem.csi.dev");
    ASSERT_HAS(y, "volumeHandle: \"pvc-1234\"");
    ASSERT_HAS(y, "key: topology.tandem.csi.dev/region");
    ASSERT_HAS(y, "- \"b\"");
    ASSERT_HAS(y, "storage: \"1073741824\"");
    ASSERT_HAS(y, "fsType: xfs");
    ASSERT_HAS(y, "claimRef:");
    ASSERT_HAS(y, "namespace: \"shop\"");
    ASSERT_HAS(y, "name: \"data-db-0\"");
    ASSERT_HAS(y, "kind: PersistentVolumeClaim\nmetadata:");
    ASSERT_HAS(y, "volumeName: \"pvc-1234\"");
    ASSERT_HAS(y,
               "volumeAttributes:\n      region: \"b\"\n      fsType: \"xfs\"");
    ASSERT(!strstr(y, "csi.storage.k8s.io"));
    /* idempotent: everything is primary already */
    ASSERT_EQ(run("failover", "--to", "b", "--all", NULL), 0);
    ASSERT_HAS(g_out, "0 promoted now, 3 already primary, 0 failed");
    teardown();
}

/* A promoted volume's snapshots become pre-provisioned
 * VolumeSnapshotContent + VolumeSnapshot pairs named from their labels
 * (csi/csi.h); a clone's temporary snapshot gets none; a snapshot without
 * a label gets names made from its ids; no snapshots: no file, and an old
 * one goes. */
TEST(failover_snapshot_manifests)
{
    static const char *const snaps[][2] = {
        {"snapshot-5f1c", "namespace=shop name=db-nightly content=snapcontent-5f1c"},
        {"tmp-1", "tandem-clone-source clone=pvc-9"},
        {"Old_Snap", ""},
        {"snapshot-77", "name=weird%2Dname future=1 namespace=shop content=c-77"},
    };
    setup();
    g_snaps = snaps;
    g_nsnaps = 4;
    char dir[1100], path[1200], y[16384];
    snprintf(dir, sizeof dir, "%s/pv", g_dir);
    ASSERT_EQ(run("failover", "--to", "b", "pvc-1234", "--emit-manifests", dir,
                  NULL),
              0);
    ASSERT_HAS(g_out, "pvc-1234: 3 snapshots: ");
    snprintf(path, sizeof path, "%s/pvc-1234.snapshots.yaml", dir);
    slurp(path, y, sizeof y);
    ASSERT_HAS(y, "kind: VolumeSnapshotContent\nmetadata:\n  name: "
                  "\"snapcontent-5f1c\"");
    ASSERT_HAS(y, "spec:\n  driver: tandem.csi.dev\n  deletionPolicy: Retain\n"
                  "  source:\n    snapshotHandle: \"pvc-1234@snapshot-5f1c\"\n"
                  "  sourceVolumeMode: Filesystem\n  volumeSnapshotRef:\n"
                  "    namespace: \"shop\"\n    name: \"db-nightly\"\n");
    ASSERT_HAS(y, "kind: VolumeSnapshot\nmetadata:\n  name: \"db-nightly\"\n"
                  "  namespace: \"shop\"\nspec:\n  source:\n"
                  "    volumeSnapshotContentName: \"snapcontent-5f1c\"\n");
    ASSERT(!strstr(y, "tmp-1"));
    ASSERT_HAS(y, "snapshotHandle: \"pvc-1234@Old_Snap\"");
    ASSERT_HAS(y, "name: \"snapcontent-tandem-pvc-1234-old-snap\"");
    ASSERT_HAS(y, "namespace: \"default\"\n    name: \"tandem-old-snap\"");
    ASSERT_HAS(y, "namespace: \"shop\"\n    name: \"weird-name\"");
    ASSERT_HAS(y, "volumeSnapshotContentName: \"c-77\"");
    /* A label that does not decode: the others are written, the command
     * fails with one line. */
    static const char *const bad[][2] = {
        {"s1", "namespace=shop name=ok content=c1"},
        {"s2", "name=%G1"},
    };
    g_snaps = bad;
    g_nsnaps = 2;
    ASSERT_EQ(run("failover", "--to", "b", "pvc-1234", "--emit-manifests", dir,
                  NULL),
              1);
    ASSERT_EQ(lines(g_err), 1);
    ASSERT_HAS(g_err, "snapshot s2: its label does not parse");
    slurp(path, y, sizeof y);
    ASSERT_HAS(y, "snapshotHandle: \"pvc-1234@s1\"");
    ASSERT(!strstr(y, "@s2"));
    /* None left: the file goes with them. */
    g_nsnaps = 0;
    ASSERT_EQ(run("failover", "--to", "b", "pvc-1234", "--emit-manifests", dir,
                  NULL),
              0);
    ASSERT(access(path, F_OK) != 0);
    teardown();
}

/* No metadata in the replicator's answer (a volume made by other tools):
 * the manifest binds the volume handle only, and says so.  tandemctl reads
 * nothing but the admin API: --config (older scripts) is accepted and
 * ignored, and a region map naming a store changes nothing. */
TEST(failover_manifest_without_metadata)
{
    setup();
    g_no_meta = 1;
    char conf[1100], dir[1100], path[1200], y[8192];
    snprintf(conf, sizeof conf, "%s/tandem.conf", g_dir);
    snprintf(dir, sizeof dir, "%s/pv", g_dir);
    FILE *f = fopen(conf, "w");
    ASSERT(f != NULL);
    fprintf(f, "[region b]\nbackend = sqlite\ndb_path = %s/b.db\n", g_dir);
    fclose(f);
    ASSERT_EQ(run("failover", "--to", "b", "pvc-1234", "--emit-manifests", dir,
                  "--config", conf, NULL),
              0);
    ASSERT_HAS(g_out, "(no metadata: no claim)");
    snprintf(path, sizeof path, "%s/pvc-1234.yaml", dir);
    slurp(path, y, sizeof y);
    ASSERT_HAS(y, "volumeHandle: \"pvc-1234\"");
    ASSERT(!strstr(y, "claimRef"));
    /* Nothing was opened: no database appeared. */
    char db[1200];
    snprintf(db, sizeof db, "%s/b.db", g_dir);
    ASSERT(access(db, F_OK) != 0);
    ASSERT_EQ(
        run("failover", "--to", "b", "pvc-5678", "--emit-manifests", dir, NULL),
        0);
    snprintf(path, sizeof path, "%s/pvc-5678.yaml", dir);
    slurp(path, y, sizeof y);
    ASSERT_HAS(y, "volumeHandle: \"pvc-5678\"");
    ASSERT(!strstr(y, "claimRef"));
    /* --config stays a failover option. */
    ASSERT_EQ(run("status", "--config", conf, NULL), 2);
    ASSERT_EQ(lines(g_err), 1);
    teardown();
}

TEST(failover_partial_and_usage)
{
    setup();
    ASSERT_EQ(run("failover", "--to", "b", "pvc-1234", "ghost", NULL), 3);
    ASSERT_HAS(g_out, "FAILED");
    ASSERT_EQ(lines(g_err), 1);
    ASSERT_HAS(g_err, "failover ghost: no such volume in region b");
    ASSERT_EQ(run("failover", "--to", "a", "--all", NULL), 1);
    ASSERT_EQ(lines(g_err), 1);
    ASSERT_HAS(g_err, "(INVALID_ARGUMENT)");
    ASSERT_EQ(run("failover", "--all", NULL), 2);
    ASSERT_EQ(lines(g_err), 1);
    ASSERT_EQ(run("failover", "--to", "b", NULL), 2);
    ASSERT_EQ(run("promote", "--all", "x", NULL), 2);
    ASSERT_EQ(lines(g_err), 1);
    teardown();
}

/* Many names: parallel calls, merged in the order given. */
TEST(failover_many_names_parallel)
{
    setup();
    ASSERT_EQ(run("failover", "--to", "b", "g1", "pvc-1234", "g2", "pvc-5678",
                  "g3", "pvc-prim", "g4", "g5", "g6", NULL),
              3);
    ASSERT_HAS(g_out, "9 volumes, 2 promoted now, 1 already primary, 6 failed");
    const char *p1 = strstr(g_out, "\npvc-1234 "),
               *p2 = strstr(g_out, "\npvc-5678 "),
               *p3 = strstr(g_out, "\npvc-prim "), *p4 = strstr(g_out, "\ng6 ");
    ASSERT(p1 && p2 && p3 && p4 && p1 < p2 && p2 < p3 && p3 < p4);
    ASSERT_EQ(lines(g_err), 6);
    teardown();
}

TEST(resync_delta_full_idempotent)
{
    setup();
    ASSERT_EQ(run("resync", "pvc-1234", NULL), 0);
    ASSERT_HAS(g_out, "delta copy, 3 regions");
    ASSERT_HAS(g_out, "since common position 40");
    ASSERT_EQ(run("resync", "pvc-1234", NULL), 0);
    ASSERT_HAS(g_out, "nothing to do");
    ASSERT_EQ(run("resync", "pvc-1234", "--full", NULL), 0);
    ASSERT_HAS(g_out, "full (requested)");
    teardown();
}

TEST(unreachable_one_line)
{
    setup();
    char bad[1100];
    snprintf(bad, sizeof bad, "unix://%s/none.sock", g_dir);
    /* Point the fake's address at nothing for one run. */
    char saved[sizeof g_addr];
    memcpy(saved, g_addr, sizeof g_addr);
    snprintf(g_addr, sizeof g_addr, "%s", bad);
    ASSERT_EQ(run("promote", "v", NULL), 1);
    ASSERT_EQ(lines(g_err), 1);
    ASSERT_HAS(g_err, "cannot reach the replicator");
    ASSERT_HAS(g_err, "(UNAVAILABLE)");
    /* status with a dead peer still shows the live region, exit 1 */
    memcpy(g_addr, saved, sizeof g_addr);
    ASSERT_EQ(run("--peer-admin", bad, "status", NULL), 1);
    ASSERT_HAS(g_out, "region b");
    ASSERT_EQ(lines(g_err), 1);
    ASSERT_EQ(run("--admin", bad, "status", "--json", NULL),
              1); /* 2nd --admin */
    ASSERT_HAS(g_out, "\"region\": \"b\"");
    ASSERT_HAS(g_out, "\"errors\": [\n    {\"admin\": \"unix://");
    ASSERT_EQ(lines(g_err), 1);
    teardown();
}

/* journal check: exit 0 intact, 1 damaged with the report on stdout and
 * stderr empty, 1 with one line when the check itself fails. */
TEST(journal_check_intact_damaged_failed)
{
    setup();
    ASSERT_EQ(run("journal", "check", "pvc-1234", NULL), 0);
    ASSERT_HAS(g_out, "pvc-1234 in region b: journal intact (applied 40, "
                      "head 40)");
    ASSERT_EQ(g_err[0], 0);
    ASSERT_EQ(run("journal", "check", "pvc-dmg", NULL), 1);
    ASSERT_EQ(g_err[0], 0);
    ASSERT_HAS(g_out, "pvc-dmg in region b (primary, epoch 3): journal "
                      "DAMAGED at seq 6\n");
    ASSERT_HAS(g_out, "seq 6, journal object 0 offset 20800: payload crc "
                      "mismatch (R-19)");
    ASSERT_HAS(g_out, "applied / head:       5 / 10");
    ASSERT_HAS(g_out, "entries 6..10 (5 acknowledged writes, about 20.0KiB "
                      "of journal)");
    ASSERT_HAS(g_out, "every write up to seq 5");
    ASSERT_HAS(g_out, "peer region a acknowledged seq 5: it has none of them");
    ASSERT_HAS(g_out, "RUNBOOK 'A damaged journal tail'");
    ASSERT_HAS(g_out, "tandemctl journal discard pvc-dmg --bad-seq 6\n");
    ASSERT_EQ(run("journal", "check", "pvc-acked", NULL), 1);
    ASSERT_HAS(g_out, "peer region a acknowledged seq 8: it HAS these writes");
    ASSERT_EQ(run("journal", "check", "pvc-dmg", "--json", NULL), 1);
    ASSERT_HAS(g_out, "\"damaged\": true");
    ASSERT_HAS(g_out, "\"seq\": 6");
    ASSERT_HAS(g_out, "\"discard_entries\": 5");
    ASSERT_EQ(run("journal", "check", "ghost", NULL), 1);
    ASSERT_EQ(lines(g_err), 1);
    ASSERT_HAS(g_err, "tandemctl: journal check ghost: volume ghost: not "
                      "found in this region (NOT_FOUND)");
    ASSERT_EQ(g_discard_calls, 0); /* a check never discards */
    teardown();
}

/* journal discard never truncates silently: it shows what goes, then
 * needs --yes or the volume id typed on a terminal; a refusal is one
 * line on stderr and no DiscardJournalTail call. */
TEST(journal_discard_refusals)
{
    setup();
    /* No terminal, no --yes. */
    ASSERT_EQ(run("journal", "discard", "pvc-dmg", "--bad-seq", "6", NULL), 1);
    ASSERT_HAS(g_out, "entries 6..10 (5 acknowledged writes");
    ASSERT_EQ(lines(g_err), 1);
    ASSERT_HAS(g_err, "tandemctl: journal discard pvc-dmg: not confirmed: "
                      "stdin is not a terminal");
    ASSERT_HAS(g_err, "add --yes to discard entries 6..10 (nothing was "
                      "discarded)");
    /* The damage is elsewhere: check again. */
    ASSERT_EQ(run("journal", "discard", "pvc-dmg", "--bad-seq", "7", "--yes",
                  NULL),
              1);
    ASSERT_EQ(lines(g_err), 1);
    ASSERT_HAS(g_err, "the damage is now at seq 6, not 7: check again "
                      "(nothing was discarded) (FAILED_PRECONDITION)");
    /* The peer has the writes: fail over instead. */
    ASSERT_EQ(run("journal", "discard", "pvc-acked", "--bad-seq", "6",
                  "--yes", NULL),
              1);
    ASSERT_EQ(lines(g_err), 1);
    ASSERT_HAS(g_err, "peer region a acknowledged seq 8, at or past 6");
    ASSERT_HAS(g_err, "fail over to it instead");
    ASSERT_EQ(g_discard_calls, 0);
    /* Usage. */
    ASSERT_EQ(run("journal", "discard", "pvc-dmg", "--yes", NULL), 2);
    ASSERT_EQ(lines(g_err), 1);
    ASSERT_HAS(g_err, "--bad-seq N is required");
    ASSERT_EQ(run("journal", "discard", "pvc-dmg", "--bad-seq", "x", NULL), 2);
    ASSERT_EQ(run("journal", "discard", "pvc-dmg", "--bad-seq", "0", NULL), 2);
    ASSERT_EQ(run("journal", "check", "pvc-dmg", "--yes", NULL), 2);
    ASSERT_EQ(run("status", "--bad-seq", "6", NULL), 2);
    ASSERT_EQ(run("journal", NULL), 2);
    ASSERT_EQ(run("journal", "fix", "pvc-dmg", NULL), 2);
    ASSERT_EQ(run("journal", "check", NULL), 2);
    ASSERT_EQ(lines(g_err), 1);
    ASSERT_EQ(run("journal", "discard", "pvc-dmg", "--bad-seq", "6", "--json",
                  NULL),
              2);
    ASSERT_EQ(g_discard_calls, 0);
    /* The damage moved between the check and the discard: the
     * replicator's refusal, in one line. */
    g_jr[0].move_to = 8;
    ASSERT_EQ(run("journal", "discard", "pvc-dmg", "--bad-seq", "6", "--yes",
                  NULL),
              1);
    ASSERT_EQ(lines(g_err), 1);
    ASSERT_HAS(g_err, "tandemctl: journal discard pvc-dmg: pvc-dmg: the "
                      "damage is now at seq 8, not 6: check again");
    ASSERT_HAS(g_err, "(FAILED_PRECONDITION)");
    ASSERT_EQ(g_discards, 0);
    teardown();
}

TEST(journal_discard_with_yes)
{
    setup();
    ASSERT_EQ(run("journal", "discard", "pvc-dmg", "--bad-seq", "6", "--yes",
                  NULL),
              0);
    ASSERT_EQ(g_err[0], 0);
    ASSERT_EQ(g_discards, 1);
    ASSERT_HAS(g_out, "entries 6..10"); /* shown before it went */
    ASSERT_HAS(g_out, "pvc-dmg: journal discarded in region b from seq 6: 5 "
                      "entries given up; head is now 5 and the volume opens "
                      "read-write again");
    ASSERT_HAS(g_out, "fsck");
    ASSERT_HAS(g_out, "peer region a: a full copy of the image to it is "
                      "scheduled");
    /* Done already: nothing to do. */
    ASSERT_EQ(run("journal", "discard", "pvc-dmg", "--bad-seq", "6", "--yes",
                  NULL),
              0);
    ASSERT_HAS(g_out, "journal intact (head 5): nothing to discard");
    ASSERT_EQ(g_discards, 1);
    ASSERT_EQ(run("journal", "check", "pvc-dmg", NULL), 0);
    teardown();
}

/* On a terminal: the volume id typed confirms, anything else cancels. */
static int run_tty(const char *typed, const char *seq)
{
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    ASSERT(m >= 0);
    ASSERT_OK(grantpt(m));
    ASSERT_OK(unlockpt(m));
    int sl = open(ptsname(m), O_RDWR | O_NOCTTY);
    ASSERT(sl >= 0);
    ASSERT_EQ(write(m, typed, strlen(typed)), (ssize_t)strlen(typed));
    g_stdin_fd = sl;
    int rc = run("journal", "discard", "pvc-dmg", "--bad-seq", seq, NULL);
    g_stdin_fd = -1;
    close(sl);
    close(m);
    return rc;
}

TEST(journal_discard_typed_confirmation)
{
    setup();
    ASSERT_EQ(run_tty("pvc-dm\n", "6"), 1);
    ASSERT_HAS(g_err, "Type the volume id (pvc-dmg) to discard them");
    ASSERT_HAS(g_err, "tandemctl: journal discard pvc-dmg: not confirmed "
                      "(nothing was discarded)");
    ASSERT_EQ(g_discard_calls, 0);
    ASSERT_EQ(run_tty("\n", "6"), 1);
    ASSERT_EQ(g_discard_calls, 0);
    ASSERT_EQ(run_tty("pvc-dmg\n", "6"), 0);
    ASSERT_EQ(g_discards, 1);
    ASSERT_HAS(g_out, "journal discarded in region b from seq 6");
    teardown();
}

TEST(journal_help)
{
    setup();
    ASSERT_EQ(run("journal", "--help", NULL), 0);
    ASSERT_HAS(g_out, "tandemctl journal discard VOLUME --bad-seq N [--yes]");
    ASSERT_EQ(run("journal", "check", "--help", NULL), 0);
    ASSERT_HAS(g_out, "usage: tandemctl journal check VOLUME");
    ASSERT_HAS(g_out, "Exit 0 journal intact, 1 damaged");
    ASSERT_EQ(run("journal", "discard", "--help", NULL), 0);
    ASSERT_HAS(g_out, "usage: tandemctl journal discard VOLUME --bad-seq N");
    ASSERT_HAS(g_out, "--yes");
    ASSERT_EQ(run("help", "journal", "discard", NULL), 0);
    ASSERT_HAS(g_out, "usage: tandemctl journal discard");
    ASSERT_EQ(run("--help", NULL), 0);
    ASSERT_HAS(g_out, "journal check VOLUME");
    teardown();
}

TT_MAIN()
