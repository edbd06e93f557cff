/*
 * test-rep.c: the replication engine (replicator/rep.h) in one process:
 * two regions on sqlite stores, plaintext loopback (mTLS is covered by
 * tests/e2e/t0300-replication.sh).  Checks the LZ4 helpers against bad
 * input, a replication round with byte-for-byte comparison, and every
 * refusal of the Link service (wrong peer, unknown volume, corrupt batch,
 * bad LZ4, gap, local primary, stale epoch, copy without a session).
 * Runs under ASan+UBSan in `make asan`.
 */
#include <arpa/inet.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/time.h>

#include "jr.h"
#include "jr_int.h"
#include "regions.h"
#include "replicator/rep.h"
#include "replicator/rep_admin.h"
#include "replicator/rep_int.h"
#include "replicator/rep_link.h"
#include "replicator/rep_metrics.h"
#include "rpc.h"
#include "tlog.h"
#include "tt.h"
#include "tt-port.h"

static int free_port(void)
{
    int port = tt_free_port();
    if (port < 0) TT_FAIL("no free TCP port in 20000-32000");
    return port;
}

struct two {
    char dir[256], conf[300];
    int pa, pb;
    rep_ctx *a, *b;
    st_store *sa, *sb;
    struct rg_config *cfg;
};

/* With g_pki set (tls_pki), replicators start with mutual TLS (their
 * certificates g_pki/REGION.pem, identity spiffe://tandem.local/tandem/
 * region/REGION), an admin socket g_pki/REGION.sock and admin TCP on
 * g_admin_port[REGION]. */
static char g_pki[300];
static int g_admin_port[2];

static rep_ctx *start(struct two *t, const char *r, const char *p)
{
    char err[512];
    struct rep_opts o = {.config_path = t->conf, .region = r,
                         .peer_region = p, .insecure = 1, .scan_ms = 50};
    char ca[400], cert[400], key[400], sock[400], atcp[64];
    if (g_pki[0]) {
        snprintf(ca, sizeof(ca), "%s/ca.pem", g_pki);
        snprintf(cert, sizeof(cert), "%s/%s.pem", g_pki, r);
        snprintf(key, sizeof(key), "%s/%s.key", g_pki, r);
        snprintf(sock, sizeof(sock), "unix://%s/%s.sock", g_pki, r);
        snprintf(atcp, sizeof(atcp), "127.0.0.1:%d",
                 g_admin_port[r[0] == 'b']);
        o.insecure = 0;
        o.tls_ca = ca;
        o.tls_cert = cert;
        o.tls_key = key;
        o.admin_addr = sock;
        o.admin_tcp = atcp;
    }
    rep_ctx *c = NULL;
    ASSERT_OK(rep_create(&o, &c, err, sizeof(err)));
    ASSERT_OK(rep_start(c, err, sizeof(err)));
    return c;
}

static void setup(struct two *t, int run_a)
{
    memset(t, 0, sizeof(*t));
    const char *tmp = getenv("TANDEM_TEST_TMP");
    snprintf(t->dir, sizeof(t->dir), "%s/test-rep.XXXXXX", tmp ? tmp : "/tmp");
    ASSERT(mkdtemp(t->dir) != NULL);
    snprintf(t->conf, sizeof(t->conf), "%s/conf.ini", t->dir);
    t->pa = free_port();
    t->pb = free_port();
    FILE *f = fopen(t->conf, "w");
    ASSERT(f != NULL);
    fprintf(f, "[region a]\nbackend = sqlite\ndb_path = %s/a.db\n"
            "replicator = 127.0.0.1:%d\n[region b]\nbackend = sqlite\n"
            "db_path = %s/b.db\nreplicator = 127.0.0.1:%d\n", t->dir, t->pa,
            t->dir, t->pb);
    fclose(f);
    char err[256];
    ASSERT_OK(rg_load(t->conf, &t->cfg, err, sizeof(err)));
    ASSERT_OK(rg_open_store(rg_find(t->cfg, "a"), &t->sa));
    ASSERT_OK(rg_open_store(rg_find(t->cfg, "b"), &t->sb));
    t->b = start(t, "b", "a");
    if (run_a) t->a = start(t, "a", "b");
}

static void teardown(struct two *t)
{
    rep_destroy(t->a);
    rep_destroy(t->b);
    st_close(t->sa);
    st_close(t->sb);
    rg_free(t->cfg);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", t->dir);
    ASSERT_EQ(system(cmd), 0);
}

static void create_primary(st_store *st, const char *id, uint64_t size)
{
    struct jr_kv kv[] = {{"csi.replication", "async"},
                         {"csi.peer_region", "b"},
                         {"csi.pvc_name", "data"}};
    struct jr_create_opts o = {.size = size, .object_size = 64u << 10,
                               .role = JR_ROLE_PRIMARY, .region = "a",
                               .meta = kv, .n_meta = 3};
    ASSERT_OK(jr_volume_create(st, id, &o));
}

static void fill(uint8_t *p, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        p[i] = (uint8_t)seed;
    }
}

static uint64_t write_some(st_store *st, const char *id, int n, uint64_t seed)
{
    jr_volume *v;
    ASSERT_OK(jr_open(st, id, JR_OPEN_WRITE | JR_OPEN_FORCE, "test", &v));
    uint8_t buf[16384];
    struct jr_info i;
    jr_get_info(v, &i);
    for (int k = 0; k < n; k++) {
        fill(buf, sizeof(buf), seed + (uint64_t)k);
        uint64_t off = (seed * 7 + (uint64_t)k * 12288) % (i.size - sizeof(buf));
        ASSERT_OK(jr_write(v, off, buf, sizeof(buf)));
    }
    jr_get_info(v, &i);
    ASSERT_OK(jr_close(v));
    return i.head;
}

static int wait_applied(st_store *st, const char *id, uint64_t seq)
{
    for (int i = 0; i < 3000; i++) {
        struct jr_info x;
        if (jr_volume_stat(st, id, &x) == 0 && x.applied >= seq) return 1;
        usleep(10000);
    }
    return 0;
}

static void images_equal(st_store *a, st_store *b, const char *id)
{
    struct jr_info ia, ib;
    ASSERT_OK(jr_volume_stat(a, id, &ia));
    ASSERT_OK(jr_volume_stat(b, id, &ib));
    ASSERT_UEQ(ia.size, ib.size);
    uint8_t *x = malloc(ia.size), *y = malloc(ia.size);
    ASSERT_OK(jr_image_read(a, id, 0, x, ia.size));
    ASSERT_OK(jr_image_read(b, id, 0, y, ib.size));
    ASSERT_MEMEQ(x, y, ia.size);
    free(x);
    free(y);
}

TEST(lz4_helpers_distrust_input)
{
    uint8_t src[8192], rnd[8192];
    memset(src, 'x', sizeof(src));
    fill(rnd, sizeof(rnd), 42);
    void *c = NULL, *d = NULL;
    size_t cl = 0;
    ASSERT_EQ(rep__lz4(src, sizeof(src), &c, &cl), 1);
    ASSERT_LT(cl, sizeof(src));
    ASSERT_OK(rep__unlz4(c, cl, sizeof(src), &d));
    ASSERT_MEMEQ(d, src, sizeof(src));
    free(d);
    /* Wrong length, too large a length, garbage. */
    ASSERT_EQ(rep__unlz4(c, cl, sizeof(src) - 1, &d), -EBADMSG);
    ASSERT_EQ(rep__unlz4(c, cl, sizeof(src) + 1, &d), -EBADMSG);
    ASSERT_EQ(rep__unlz4(c, cl, (size_t)REP_MAX_RAW + 1, &d), -EINVAL);
    ASSERT_EQ(rep__unlz4(c, cl, 0, &d), -EINVAL);
    ASSERT(rep__unlz4(rnd, 100, 4096, &d) < 0);
    free(c);
    /* Incompressible input is shipped as is. */
    ASSERT_EQ(rep__lz4(rnd, sizeof(rnd), &c, &cl), 0);
    ASSERT(c == NULL);
}

TEST(replicates_byte_for_byte)
{
    struct two t;
    setup(&t, 1);
    create_primary(t.sa, "vol-1", 1u << 20);
    create_primary(t.sa, "vol-2", 1u << 20);
    uint64_t h1 = write_some(t.sa, "vol-1", 40, 1);
    uint64_t h2 = write_some(t.sa, "vol-2", 25, 2);
    ASSERT(wait_applied(t.sb, "vol-1", h1));
    ASSERT(wait_applied(t.sb, "vol-2", h2));
    images_equal(t.sa, t.sb, "vol-1");
    images_equal(t.sa, t.sb, "vol-2");
    struct jr_info ib;
    ASSERT_OK(jr_volume_stat(t.sb, "vol-1", &ib));
    ASSERT_EQ(ib.role, JR_ROLE_SECONDARY);
    char *m = NULL;
    ASSERT_OK(jr_meta_get(t.sb, "vol-1", "csi.pvc_name", &m));
    ASSERT_STREQ(m, "data");
    free(m);
    /* The ack reaches the primary; status agrees. */
    uint64_t ack = 0;
    for (int i = 0; i < 3000 && ack < h1; i++) {
        jr_peer_ack_get(t.sa, "vol-1", "b", &ack);
        usleep(10000);
    }
    ASSERT_UEQ(ack, h1);
    struct rep_vstat s;
    rep__vol_status(t.a, "vol-1", &s);
    ASSERT_UEQ(s.lag_entries, 0);
    ASSERT_UEQ(s.acked, h1);
    /* Graceful promote is refused while a is primary; force works and
     * the epoch goes up; promoting again changes nothing. */
    char msg[512];
    int changed = -1;
    ASSERT_EQ(rep__promote(t.b, "vol-1", 0, &changed, msg, sizeof(msg)),
              RPC_FAILED_PRECONDITION);
    ASSERT(strstr(msg, "still primary") != NULL);
    ASSERT_EQ(rep__promote(t.b, "vol-1", 1, &changed, msg, sizeof(msg)),
              RPC_OK);
    ASSERT_EQ(changed, 1);
    ASSERT_OK(jr_volume_stat(t.sb, "vol-1", &ib));
    ASSERT_EQ(ib.role, JR_ROLE_PRIMARY);
    ASSERT_UEQ(ib.epoch, 2);
    ASSERT_EQ(rep__promote(t.b, "vol-1", 1, &changed, msg, sizeof(msg)),
              RPC_OK);
    ASSERT_EQ(changed, 0);
    ASSERT_EQ(rep__promote(t.b, "nope", 1, &changed, msg, sizeof(msg)),
              RPC_NOT_FOUND);
    teardown(&t);
}

/* A volume promoted after history at an older epoch replicates to an
 * empty peer (its region rebuilt): the history entries carry epoch 1, the
 * new replica is at epoch 2.  This once made the replica refuse them
 * (R-22) and the primary demote itself as if split-brained. */
TEST(promoted_volume_replicates_to_an_empty_peer)
{
    struct two t;
    setup(&t, 1);
    create_primary(t.sa, "h", 1u << 20);
    uint64_t h1 = write_some(t.sa, "h", 10, 9);
    ASSERT(wait_applied(t.sb, "h", h1));
    char msg[512];
    int changed;
    /* Region a is lost: b takes over and writes on. */
    rep_destroy(t.a);
    t.a = NULL;
    ASSERT_EQ(rep__promote(t.b, "h", 1, &changed, msg, sizeof(msg)),
              RPC_OK);
    uint64_t h2 = write_some(t.sb, "h", 6, 10);
    ASSERT_GT(h2, h1);
    /* Region a comes back empty. */
    ASSERT_OK(jr_role_set(t.sa, "h", JR_ROLE_SECONDARY, 2));
    ASSERT_OK(jr_volume_delete(t.sa, "h"));
    t.a = start(&t, "a", "b");
    ASSERT(wait_applied(t.sa, "h", h2));
    images_equal(t.sb, t.sa, "h");
    struct jr_info ib, ia;
    ASSERT_OK(jr_volume_stat(t.sb, "h", &ib));
    ASSERT_EQ(ib.role, JR_ROLE_PRIMARY);
    ASSERT_UEQ(ib.epoch, 2);
    ASSERT_OK(jr_volume_stat(t.sa, "h", &ia));
    ASSERT_EQ(ia.role, JR_ROLE_SECONDARY);
    ASSERT_UEQ(ia.epoch, 2);
    teardown(&t);
}

/* A peer that refuses entries as stale while holding no newer epoch did
 * not decide anything about us: the primary keeps its role (it once
 * fenced and demoted itself for this).  Forced here by a primary that
 * lost its promotion point, so it ships old-epoch history unexempted. */
TEST(stale_refusal_at_equal_epoch_never_demotes_the_primary)
{
    struct two t;
    setup(&t, 1);
    create_primary(t.sa, "q", 1u << 20);
    uint64_t h1 = write_some(t.sa, "q", 6, 11);
    ASSERT(wait_applied(t.sb, "q", h1));
    rep_destroy(t.a);
    t.a = NULL;
    rep_destroy(t.b);
    t.b = NULL;
    /* b takes over at epoch 2 by hand, without the promotion point. */
    ASSERT_OK(jr_role_set(t.sb, "q", JR_ROLE_PRIMARY, 2));
    ASSERT_OK(jr_role_set(t.sa, "q", JR_ROLE_SECONDARY, 2));
    ASSERT_OK(jr_volume_delete(t.sa, "q")); /* a comes back empty */
    t.b = start(&t, "b", "a");
    t.a = start(&t, "a", "b");
    struct rep_vstat st;
    int seen = 0;
    for (int i = 0; i < 3000 && !seen; i++) {
        rep__vol_status(t.b, "q", &st);
        seen = strstr(st.last_error, "refused entries as stale") != NULL;
        if (!seen) usleep(10000);
    }
    ASSERT(seen);
    struct jr_info ib;
    ASSERT_OK(jr_volume_stat(t.sb, "q", &ib));
    ASSERT_EQ(ib.role, JR_ROLE_PRIMARY);
    ASSERT_UEQ(ib.epoch, 2);
    char *split = NULL;
    ASSERT_EQ(jr_meta_get(t.sb, "q", "rep.split_brain", &split), -ENOENT);
    teardown(&t);
}

static int gone_within(st_store *st, const char *id, int tomb, int secs)
{
    for (int i = 0; i < secs * 100; i++) {
        struct jr_info x;
        struct jr_tomb tb;
        int rc = tomb ? jr_tomb_get(st, id, &tb) : jr_volume_stat(st, id, &x);
        if (rc == -ENOENT) return 1;
        usleep(10000);
    }
    return 0;
}

/* Deleting a replicated primary leaves a tombstone (R-35); the sender's
 * replicator has the replica deleted, then drops the tombstone.  A
 * replica promoted meanwhile is kept. */
TEST(deleting_a_primary_deletes_its_replica)
{
    struct two t;
    setup(&t, 1);
    create_primary(t.sa, "gone", 1u << 20);
    create_primary(t.sa, "kept", 1u << 20);
    struct jr_create_opts lo = {.size = 1u << 20, .object_size = 64u << 10,
                                .role = JR_ROLE_PRIMARY, .region = "a"};
    ASSERT_OK(jr_volume_create(t.sa, "local", &lo)); /* not replicated */
    uint64_t hg = write_some(t.sa, "gone", 10, 7);
    uint64_t hk = write_some(t.sa, "kept", 10, 8);
    ASSERT(wait_applied(t.sb, "gone", hg));
    ASSERT(wait_applied(t.sb, "kept", hk));
    uint64_t ack = 0;
    for (int i = 0; i < 3000 && ack < hg; i++) {
        jr_peer_ack_get(t.sa, "gone", "b", &ack);
        usleep(10000);
    }
    ASSERT_UEQ(ack, hg);

    struct jr_tomb tb;
    ASSERT_OK(jr_volume_delete(t.sa, "local"));
    ASSERT_EQ(jr_tomb_get(t.sa, "local", &tb), -ENOENT);

    /* Replicated but never written: the replica made by the first probe
     * goes too (the probe registered the peer). */
    create_primary(t.sa, "empty", 1u << 20);
    struct jr_info ie;
    for (int i = 0; i < 3000 && jr_volume_stat(t.sb, "empty", &ie) < 0; i++)
        usleep(10000);
    ASSERT_OK(jr_volume_stat(t.sb, "empty", &ie));
    uint64_t a0 = 1;
    ASSERT_OK(jr_peer_ack_get(t.sa, "empty", "b", &a0)); /* registered first */
    ASSERT_UEQ(a0, 0);
    ASSERT_OK(jr_volume_delete(t.sa, "empty"));
    ASSERT(gone_within(t.sb, "empty", 0, 30));
    ASSERT(gone_within(t.sa, "empty", 1, 30));

    /* b's copy of "kept" is promoted before a deletes its primary. */
    char msg[512];
    int changed;
    ASSERT_EQ(rep__promote(t.b, "kept", 1, &changed, msg, sizeof(msg)),
              RPC_OK);
    ASSERT_OK(jr_volume_delete(t.sa, "gone"));
    ASSERT_OK(jr_volume_delete(t.sa, "kept"));
    /* The tombstone may already be processed; if it is still there it
     * says what it must. */
    if (jr_tomb_get(t.sa, "gone", &tb) == 0) {
        ASSERT_EQ(tb.n_peers, 1);
        ASSERT_STREQ(tb.peers[0], "b");
        ASSERT_UEQ(tb.epoch, 1);
    }
    ASSERT(gone_within(t.sb, "gone", 0, 30));
    ASSERT(gone_within(t.sa, "gone", 1, 30));
    ASSERT(gone_within(t.sa, "kept", 1, 30));
    struct jr_info ik;
    ASSERT_OK(jr_volume_stat(t.sb, "kept", &ik));
    ASSERT_EQ(ik.role, JR_ROLE_PRIMARY);
    ASSERT_UEQ(ik.epoch, 2);
    teardown(&t);
}

/* CI once saw a graceful promote refused as "peer unreachable" because
 * b's channel to a was still in reconnect backoff from b's first Hello,
 * sent before a listened.  An operator command must wait for the link
 * (up to its deadline), not fail fast. */
TEST(operator_probe_waits_out_reconnect_backoff)
{
    struct two t;
    setup(&t, 0);
    create_primary(t.sa, "v", 1u << 20);
    struct jr_create_opts o = {.size = 1u << 20, .object_size = 64u << 10,
                               .role = JR_ROLE_SECONDARY, .region = "b"};
    ASSERT_OK(jr_volume_create(t.sb, "v", &o));
    char msg[512];
    /* a is not running: the Hello fails and the channel backs off. */
    ASSERT(rep__peer_hello(t.b, msg, sizeof(msg)) != 0);
    t.a = start(&t, "a", "b");
    int changed = -1;
    ASSERT_EQ(rep__promote(t.b, "v", 0, &changed, msg, sizeof(msg)),
              RPC_FAILED_PRECONDITION);
    ASSERT(strstr(msg, "still primary") != NULL);
    ASSERT_EQ(changed, 0);
    teardown(&t);
}

/* Ship a request to b's Link service and return the answer. */
static Tandem__Repl__V1__ShipBatchResponse *ship(rpc_client *c,
                                                 Tandem__Repl__V1__ShipBatchRequest *q)
{
    ProtobufCMessage *o = NULL;
    char msg[256];
    int code = rpc_client_call(c, "/tandem.repl.v1.Link/ShipBatch", &q->base,
                               &tandem__repl__v1__ship_batch_response__descriptor,
                               &o, 10000, 1, msg, sizeof(msg));
    ASSERT_EQ(code, RPC_OK);
    return (Tandem__Repl__V1__ShipBatchResponse *)o;
}

#define RES(x) TANDEM__REPL__V1__RESULT__RESULT_##x

/* The metadata a's sender puts in a spec: the volume replicates a -> b
 * (the Link makes a replica only of such a volume). */
static Tandem__Repl__V1__VolumeSpec__MetaEntry spec_kv[2] = {
    TANDEM__REPL__V1__VOLUME_SPEC__META_ENTRY__INIT,
    TANDEM__REPL__V1__VOLUME_SPEC__META_ENTRY__INIT};
static Tandem__Repl__V1__VolumeSpec__MetaEntry *spec_kvp[2] = {&spec_kv[0],
                                                               &spec_kv[1]};

static void spec_replicated(Tandem__Repl__V1__VolumeSpec *sp)
{
    spec_kv[0].key = "csi.replication";
    spec_kv[0].value = "async";
    spec_kv[1].key = "csi.peer_region";
    spec_kv[1].value = "b";
    sp->n_meta = 2;
    sp->meta = spec_kvp;
}

/* Only b runs; the test plays a's sender through a client of b's Link. */
static rpc_client *as_sender(struct two *t)
{
    setup(t, 0);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", t->pb);
    rpc_client *c;
    ASSERT_OK(rpc_client_create(addr, NULL, &c));
    return c;
}

/* The sender keeps two batches in flight; the second may reach the peer
 * first.  The peer holds it until the first is applied, then applies it:
 * strictly in order, and no gap refusal for a batch that merely
 * overtook its predecessor. */
struct overtaker {
    rpc_client *c;
    Tandem__Repl__V1__ShipBatchRequest q;
    Tandem__Repl__V1__ShipBatchResponse *r;
};

static void *overtake_main(void *arg)
{
    struct overtaker *o = arg;
    o->r = ship(o->c, &o->q);
    return NULL;
}

TEST(batches_in_flight_apply_in_order)
{
    struct two t;
    rpc_client *c = as_sender(&t);
    create_primary(t.sa, "v", 1u << 20);
    uint64_t head = write_some(t.sa, "v", 12, 5);
    struct jr_batch b1 = {0}, b2 = {0};
    ASSERT_OK(jr_tail_read(t.sa, "v", 1, 40000, &b1)); /* a few entries */
    ASSERT_LT(b1.last_seq, head);
    ASSERT_OK(jr_tail_read(t.sa, "v", b1.last_seq + 1, 1u << 20, &b2));
    ASSERT_UEQ(b2.last_seq, head);

    Tandem__Repl__V1__VolumeSpec spec = TANDEM__REPL__V1__VOLUME_SPEC__INIT;
    spec_replicated(&spec);
    spec.size = 1u << 20;
    spec.object_size = 64u << 10;
    spec.start_seq = 1;
    Tandem__Repl__V1__ShipBatchRequest q = TANDEM__REPL__V1__SHIP_BATCH_REQUEST__INIT;
    q.volume_id = "v";
    q.from_region = "a";
    q.epoch = 1;
    q.spec = &spec;
    Tandem__Repl__V1__ShipBatchResponse *r = ship(c, &q); /* creates it */
    ASSERT_EQ(r->result, RES(OK));
    protobuf_c_message_free_unpacked(&r->base, NULL);
    q.spec = NULL;

    struct overtaker o = {.c = c, .q = q};
    o.q.follows_in_flight = 1;
    o.q.first_seq = b2.first_seq;
    o.q.last_seq = b2.last_seq;
    o.q.n_entries = b2.n_entries;
    o.q.entries.data = b2.data;
    o.q.entries.len = b2.len;
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, overtake_main, &o), 0);
    /* Wait until the second batch is in b's handler. */
    struct rep_vol *v = rep__vol_get(t.b, "v");
    ASSERT(v != NULL);
    pthread_mutex_lock(&v->mu);
    while (v->rx_calls < 1) pthread_cond_wait(&v->cv, &v->mu);
    pthread_mutex_unlock(&v->mu);

    q.first_seq = b1.first_seq;
    q.last_seq = b1.last_seq;
    q.n_entries = b1.n_entries;
    q.entries.data = b1.data;
    q.entries.len = b1.len;
    r = ship(c, &q);
    ASSERT_EQ(r->result, RES(OK));
    ASSERT_UEQ(r->applied, b1.last_seq);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    ASSERT_EQ(pthread_join(th, NULL), 0);
    ASSERT_EQ(o.r->result, RES(OK));
    ASSERT_UEQ(o.r->applied, head);
    protobuf_c_message_free_unpacked(&o.r->base, NULL);
    images_equal(t.sa, t.sb, "v");
    jr_batch_free(&b1);
    jr_batch_free(&b2);
    rpc_client_destroy(c);
    teardown(&t);
}

/* Two batches that both lie past the peer's position (the one before
 * them was lost): each is refused as a gap after about a second, not
 * after the long wait meant for a predecessor that is being applied. */
TEST(real_gap_with_two_batches_waiting_is_refused_soon)
{
    struct two t;
    rpc_client *c = as_sender(&t);
    create_primary(t.sa, "v", 1u << 20);
    uint64_t head = write_some(t.sa, "v", 12, 5);
    struct jr_batch b1 = {0}, b2 = {0};
    ASSERT_OK(jr_tail_read(t.sa, "v", 1, 40000, &b1));
    ASSERT_OK(jr_tail_read(t.sa, "v", b1.last_seq + 1, 1u << 20, &b2));
    ASSERT_UEQ(b2.last_seq, head);
    Tandem__Repl__V1__VolumeSpec spec = TANDEM__REPL__V1__VOLUME_SPEC__INIT;
    spec_replicated(&spec);
    spec.size = 1u << 20;
    spec.object_size = 64u << 10;
    spec.start_seq = 1;
    Tandem__Repl__V1__ShipBatchRequest q = TANDEM__REPL__V1__SHIP_BATCH_REQUEST__INIT;
    q.volume_id = "v";
    q.from_region = "a";
    q.epoch = 1;
    q.spec = &spec;
    Tandem__Repl__V1__ShipBatchResponse *r = ship(c, &q);
    ASSERT_EQ(r->result, RES(OK));
    protobuf_c_message_free_unpacked(&r->base, NULL);
    q.spec = NULL;
    q.first_seq = b2.first_seq;
    q.last_seq = b2.last_seq;
    q.n_entries = b2.n_entries;
    q.entries.data = b2.data;
    q.entries.len = b2.len;
    q.follows_in_flight = 1;
    struct overtaker o = {.c = c, .q = q};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, overtake_main, &o), 0);
    r = ship(c, &q);
    ASSERT_EQ(pthread_join(th, NULL), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ASSERT_EQ(r->result, RES(GAP));
    ASSERT_EQ(o.r->result, RES(GAP));
    ASSERT_UEQ(r->applied, 0);
    double s_el = (double)(t1.tv_sec - t0.tv_sec) +
                  (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    ASSERT(s_el < 5.0); /* the long wait would be 15 s */
    protobuf_c_message_free_unpacked(&r->base, NULL);
    protobuf_c_message_free_unpacked(&o.r->base, NULL);
    jr_batch_free(&b1);
    jr_batch_free(&b2);
    rpc_client_destroy(c);
    teardown(&t);
}

TEST(link_refusals)
{
    struct two t;
    rpc_client *c = as_sender(&t);
    create_primary(t.sa, "v", 1u << 20);
    uint64_t head = write_some(t.sa, "v", 5, 3);
    struct jr_batch b = {0};
    ASSERT_OK(jr_tail_read(t.sa, "v", 1, 1u << 20, &b));
    ASSERT_UEQ(b.last_seq, head);

    Tandem__Repl__V1__VolumeSpec spec = TANDEM__REPL__V1__VOLUME_SPEC__INIT;
    spec_replicated(&spec);
    spec.size = 1u << 20;
    spec.object_size = 64u << 10;
    spec.start_seq = 1;
    Tandem__Repl__V1__ShipBatchRequest q = TANDEM__REPL__V1__SHIP_BATCH_REQUEST__INIT;
    q.volume_id = "v";
    q.from_region = "c";
    q.epoch = 1;
    Tandem__Repl__V1__ShipBatchResponse *r = ship(c, &q);
    ASSERT_EQ(r->result, RES(WRONG_PEER));
    protobuf_c_message_free_unpacked(&r->base, NULL);

    q.from_region = "a";
    r = ship(c, &q); /* probe, no spec, no volume */
    ASSERT_EQ(r->result, RES(NO_VOLUME));
    protobuf_c_message_free_unpacked(&r->base, NULL);

    q.spec = &spec;
    r = ship(c, &q);
    ASSERT_EQ(r->result, RES(OK));
    ASSERT_EQ(r->created, 1);
    ASSERT_UEQ(r->applied, 0);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    q.spec = NULL;

    /* A corrupt batch is refused and nothing is applied. */
    uint8_t junk[200];
    memcpy(junk, b.data, sizeof(junk) < b.len ? sizeof(junk) : b.len);
    junk[70] ^= 0xff; /* inside the first payload */
    q.first_seq = 1;
    q.last_seq = 1;
    q.n_entries = 1;
    q.entries.data = junk;
    q.entries.len = sizeof(junk);
    r = ship(c, &q);
    ASSERT_EQ(r->result, RES(CORRUPT));
    ASSERT_UEQ(r->applied, 0);
    protobuf_c_message_free_unpacked(&r->base, NULL);

    /* LZ4 that does not decode, and a lying raw_len. */
    q.compression = TANDEM__REPL__V1__COMPRESSION__COMPRESSION_LZ4;
    q.raw_len = 4096;
    r = ship(c, &q);
    ASSERT_EQ(r->result, RES(CORRUPT));
    protobuf_c_message_free_unpacked(&r->base, NULL);
    q.raw_len = 1ull << 40;
    r = ship(c, &q);
    ASSERT_EQ(r->result, RES(CORRUPT));
    protobuf_c_message_free_unpacked(&r->base, NULL);
    q.compression = TANDEM__REPL__V1__COMPRESSION__COMPRESSION_NONE;
    q.raw_len = 0;

    /* A gap is answered with the position to resume from. */
    q.first_seq = 3;
    q.last_seq = 5;
    r = ship(c, &q);
    ASSERT_EQ(r->result, RES(GAP));
    ASSERT_UEQ(r->applied, 0);
    protobuf_c_message_free_unpacked(&r->base, NULL);

    /* The real batch applies; a re-send is harmless. */
    q.first_seq = b.first_seq;
    q.last_seq = b.last_seq;
    q.n_entries = b.n_entries;
    q.entries.data = b.data;
    q.entries.len = b.len;
    for (int k = 0; k < 2; k++) {
        r = ship(c, &q);
        ASSERT_EQ(r->result, RES(OK));
        ASSERT_UEQ(r->applied, head);
        protobuf_c_message_free_unpacked(&r->base, NULL);
    }
    images_equal(t.sa, t.sb, "v");

    /* A batch from a stale epoch is refused. */
    ASSERT_OK(jr_role_set(t.sb, "v", JR_ROLE_SECONDARY, 3));
    q.epoch = 2;
    r = ship(c, &q);
    ASSERT_EQ(r->result, RES(STALE_EPOCH));
    ASSERT_UEQ(r->epoch, 3);
    protobuf_c_message_free_unpacked(&r->base, NULL);

    /* A local primary is never overwritten, whatever the epoch. */
    ASSERT_OK(jr_role_set(t.sb, "v", JR_ROLE_PRIMARY, 4));
    q.epoch = 9;
    r = ship(c, &q);
    ASSERT_EQ(r->result, RES(SPLIT_BRAIN));
    ASSERT_STREQ(r->role, "primary");
    protobuf_c_message_free_unpacked(&r->base, NULL);
    struct jr_info ib;
    ASSERT_OK(jr_volume_stat(t.sb, "v", &ib));
    ASSERT_UEQ(ib.epoch, 4);

    /* CopyRegions without a session, and outside the image. */
    Tandem__Repl__V1__Region g = TANDEM__REPL__V1__REGION__INIT, *gp = &g;
    g.offset = 1u << 20;
    g.length = 4096;
    g.zero = 1;
    ASSERT_OK(jr_role_set(t.sb, "v", JR_ROLE_SECONDARY, 9));
    Tandem__Repl__V1__CopyRegionsRequest cq =
        TANDEM__REPL__V1__COPY_REGIONS_REQUEST__INIT;
    cq.volume_id = "v";
    cq.from_region = "a";
    cq.epoch = 9;
    cq.copy_id = "c1";
    cq.n_regions = 1;
    cq.regions = &gp;
    ProtobufCMessage *o = NULL;
    char msg[256];
    ASSERT_EQ(rpc_client_call(c, "/tandem.repl.v1.Link/CopyRegions", &cq.base,
                              &tandem__repl__v1__copy_regions_response__descriptor,
                              &o, 10000, 1, msg, sizeof(msg)), RPC_OK);
    Tandem__Repl__V1__CopyRegionsResponse *cr = (void *)o;
    ASSERT_EQ(cr->result, RES(ERROR));
    protobuf_c_message_free_unpacked(o, NULL);
    cq.begin = 1;
    ASSERT_EQ(rpc_client_call(c, "/tandem.repl.v1.Link/CopyRegions", &cq.base,
                              &tandem__repl__v1__copy_regions_response__descriptor,
                              &o, 10000, 1, msg, sizeof(msg)), RPC_OK);
    cr = (void *)o;
    ASSERT_EQ(cr->result, RES(ERROR));
    ASSERT(strstr(cr->message, "outside") != NULL);
    protobuf_c_message_free_unpacked(o, NULL);
    /* Nothing was written, and a rollback restores the base position. */
    ASSERT_EQ(jr_copywin_rollback(t.sb, "v", NULL, NULL), 1);
    ASSERT_OK(jr_volume_stat(t.sb, "v", &ib));
    ASSERT_UEQ(ib.applied, head);
    images_equal(t.sa, t.sb, "v");

    jr_batch_free(&b);
    rpc_client_destroy(c);
    teardown(&t);
}

/* The journal's stores of a region copy (jr.h jr_copywin_*, jr_copylist_*,
 * FORMAT.md §4) as the replicator uses them: the window keeps the oldest
 * bytes, a restart keeps its base, a rollback restores them and rebases,
 * a drop leaves nothing; the copy list round-trips; the on-store names
 * are the ones the format gives. */
static int count_objs(const char *oid, void *arg)
{
    (void)oid;
    (*(int *)arg)++;
    return 0;
}

static int list_cb(uint64_t off, uint64_t len, void *arg)
{
    struct jr_range *r = arg;
    while (r->len) r++;
    r->off = off;
    r->len = len;
    return 0;
}

TEST(copy_window_and_copy_list_in_the_journal)
{
    struct two t;
    setup(&t, 0);
    struct jr_create_opts o = {.size = 1u << 20, .object_size = 64u << 10,
                               .role = JR_ROLE_SECONDARY, .region = "b"};
    ASSERT_OK(jr_volume_create(t.sb, "w", &o));
    const size_t blk = JR_COPYWIN_BLOCK;
    uint8_t *old = malloc(blk), *cur = malloc(blk), *got = malloc(blk);
    fill(old, blk, 7);
    fill(cur, blk, 8);
    ASSERT_OK(jr_image_write(t.sb, "w", blk, old, blk));
    struct jr_copywin w;
    ASSERT_EQ(jr_copywin_get(t.sb, "w", &w), -ENOENT);
    ASSERT_EQ(jr_copywin_finish(t.sb, "w", 5), -ENOENT);
    /* No window: nothing to roll back. */
    ASSERT_EQ(jr_copywin_rollback(t.sb, "w", NULL, NULL), 0);

    int restarted = -1;
    ASSERT_OK(jr_copywin_begin(t.sb, "w", "c1", 3, &restarted));
    ASSERT_EQ(restarted, 0);
    ASSERT_OK(jr_copywin_get(t.sb, "w", &w));
    ASSERT_STREQ(w.copy_id, "c1");
    ASSERT_UEQ(w.base, 3);
    ASSERT_UEQ(w.until, 0);
    /* The markers are the "rep." keys FORMAT.md §4 names. */
    char *v = NULL;
    ASSERT_OK(jr_meta_get(t.sb, "w", "rep.copy.id", &v));
    ASSERT_STREQ(v, "c1");
    free(v);
    /* Saved once: the second save keeps the oldest bytes. */
    ASSERT_OK(jr_copywin_save(t.sb, "w", blk + 10, 100));
    ASSERT_OK(jr_image_write(t.sb, "w", blk, cur, blk));
    ASSERT_OK(jr_copywin_save(t.sb, "w", blk, blk));
    ASSERT_OK(jr_copywin_read(t.sb, "w", blk, got, blk));
    ASSERT_MEMEQ(got, old, blk);
    ASSERT_OK(jr_image_read(t.sb, "w", blk, got, blk));
    ASSERT_MEMEQ(got, cur, blk);
    /* Past the image: nothing saved, no error. */
    ASSERT_OK(jr_copywin_save(t.sb, "w", (1u << 20) - 1, 4096));
    int n = 0;
    ASSERT_OK(st_list(t.sb, "rep.undo/w/", count_objs, &n));
    ASSERT_EQ(n, 2);
    /* A restart keeps base and blocks, forgets until. */
    ASSERT_OK(jr_copywin_finish(t.sb, "w", 9));
    ASSERT_OK(jr_copywin_get(t.sb, "w", &w));
    ASSERT_UEQ(w.until, 9);
    ASSERT_OK(jr_copywin_begin(t.sb, "w", "c2", 7, &restarted));
    ASSERT_EQ(restarted, 1);
    ASSERT_OK(jr_copywin_get(t.sb, "w", &w));
    ASSERT_STREQ(w.copy_id, "c2");
    ASSERT_UEQ(w.base, 3);
    ASSERT_UEQ(w.until, 0);
    /* Rollback: the old bytes are back, the replica stands at the base. */
    uint64_t base = 0;
    size_t blocks = 0;
    ASSERT_EQ(jr_copywin_rollback(t.sb, "w", &base, &blocks), 1);
    ASSERT_UEQ(base, 3);
    ASSERT_EQ((int)blocks, 2);
    ASSERT_OK(jr_image_read(t.sb, "w", blk, got, blk));
    ASSERT_MEMEQ(got, old, blk);
    struct jr_info info;
    ASSERT_OK(jr_volume_stat(t.sb, "w", &info));
    ASSERT_UEQ(info.applied, 3);
    ASSERT_UEQ(info.head, 3);
    ASSERT_EQ(jr_copywin_get(t.sb, "w", &w), -ENOENT);
    n = 0;
    ASSERT_OK(st_list(t.sb, "rep.undo/w/", count_objs, &n));
    ASSERT_EQ(n, 0);
    /* Never on a primary. */
    ASSERT_OK(jr_copywin_begin(t.sb, "w", "c3", 3, NULL));
    ASSERT_OK(jr_role_set(t.sb, "w", JR_ROLE_PRIMARY, 2));
    ASSERT_EQ(jr_copywin_rollback(t.sb, "w", NULL, NULL), JR_EROLE);
    /* A window outlives its volume until dropped. */
    ASSERT_OK(jr_copywin_save(t.sb, "w", 0, 1));
    ASSERT_OK(jr_volume_delete(t.sb, "w"));
    ASSERT_OK(jr_copywin_drop(t.sb, "w"));
    n = 0;
    ASSERT_OK(st_list(t.sb, "rep.undo/w/", count_objs, &n));
    ASSERT_EQ(n, 0);
    /* jr_meta_rm: absent key is fine, absent volume is not. */
    ASSERT_EQ(jr_meta_rm(t.sb, "w", "x"), -ENOENT);

    /* The copy list. */
    uint64_t resume = 1;
    struct jr_range in[3] = {{0, 4096}, {1u << 20, 1u << 20}, {5u << 20, 1}};
    struct jr_range out[4] = {{0, 0}};
    ASSERT_OK(jr_copylist_load(t.sa, "w", &resume, list_cb, out));
    ASSERT_UEQ(resume, 0);
    ASSERT_OK(jr_copylist_save(t.sa, "w", 42, in, 3));
    ASSERT_OK(jr_copylist_load(t.sa, "w", &resume, list_cb, out));
    ASSERT_UEQ(resume, 42);
    ASSERT_MEMEQ(out, in, sizeof(in));
    ASSERT_UEQ(out[3].len, 0);
    uint64_t sz = 0;
    ASSERT_OK(st_stat(t.sa, "rep.copylist/w", &sz, NULL));
    ASSERT_UEQ(sz, 8 + 3 * 16);
    /* A list that does not parse is reported, not half used. */
    ASSERT_OK(st_write_full(t.sa, "rep.copylist/w", "123456789", 9));
    ASSERT_EQ(jr_copylist_load(t.sa, "w", &resume, list_cb, out),
              JR_ECORRUPT);
    ASSERT_OK(jr_copylist_drop(t.sa, "w"));
    ASSERT_OK(jr_copylist_drop(t.sa, "w"));
    ASSERT_EQ(st_stat(t.sa, "rep.copylist/w", &sz, NULL), -ENOENT);
    free(old);
    free(cur);
    free(got);
    teardown(&t);
}

/* t0310 once timed out in wait-sync with the replica at the primary's
 * head: the primary's dirty flag stayed set.  A journal trim (cap
 * reached) can drop entries the peer already applied but has not yet
 * acknowledged (the ack is recorded after the answer): the dirty map then
 * only names bytes the peer has, the sender never meets JR_ETRIMMED, and
 * nothing else cleared the map, so the volume stayed in dirty tracking
 * (wait-sync and the status report it) once the writes stopped.  Here the
 * race is played by hand: a is down, b applies a full journal object it
 * read itself (no ack on a), then a roll trims that object on a. */
TEST(dirty_map_of_entries_the_peer_has_is_cleared)
{
    struct two t;
    setup(&t, 1);
    struct jr_kv kv[] = {{"csi.replication", "async"},
                         {"csi.peer_region", "b"}};
    struct jr_create_opts o = {.size = 8u << 20, .object_size = 256u << 10,
                               .role = JR_ROLE_PRIMARY, .region = "a",
                               .meta = kv, .n_meta = 2,
                               .journal_cap = 64u << 10};
    ASSERT_OK(jr_volume_create(t.sa, "cv", &o));
    /* b holds the (empty) replica, then a's replicator goes away. */
    struct jr_info ia, ib;
    int i;
    for (i = 0; i < 1000 && jr_volume_stat(t.sb, "cv", &ib) != 0; i++)
        usleep(10000);
    ASSERT_LT(i, 1000);
    rep_destroy(t.a);
    t.a = NULL;
    /* Fill the first journal object to just below its 4 MiB roll point
     * (255 entries of 16 KiB + 64 bytes): no roll, so no trim yet. */
    uint64_t h1 = write_some(t.sa, "cv", 255, 11);
    ASSERT_OK(jr_volume_stat(t.sa, "cv", &ia));
    ASSERT_UEQ(ia.tail, 1);
    ASSERT_EQ(ia.dirty_tracking, 0);
    ASSERT(ia.journal_bytes + 16384 + 64 > (4u << 20));
    /* b applies all of it; a's ack for b stays unset. */
    struct jr_batch b = {0};
    ASSERT_OK(jr_tail_read(t.sa, "cv", 1, 16u << 20, &b));
    ASSERT_UEQ(b.last_seq, h1);
    uint64_t ap = 0;
    ASSERT_OK(jr_apply(t.sb, "cv", b.data, b.len, &ap));
    ASSERT_UEQ(ap, h1);
    jr_batch_free(&b);
    /* One more write rolls the journal; the trim drops the full object
     * (past the cap) and records its regions: dirty tracking, though the
     * peer has every dropped entry. */
    uint64_t h2 = write_some(t.sa, "cv", 1, 12);
    for (i = 0; i < 1000; i++) {
        ASSERT_OK(jr_volume_stat(t.sa, "cv", &ia));
        if (ia.tail > 1) break;
        usleep(10000);
    }
    ASSERT_UEQ(ia.tail, h1 + 1);
    ASSERT_EQ(ia.dirty_tracking, 1);
    /* a comes back: the peer needs entry h2 only.  It must end in sync,
     * out of dirty tracking, with equal images. */
    t.a = start(&t, "a", "b");
    for (i = 0; i < 1500; i++) {
        ASSERT_OK(jr_volume_stat(t.sa, "cv", &ia));
        ASSERT_OK(jr_volume_stat(t.sb, "cv", &ib));
        if (ib.applied == h2 && !ia.dirty_tracking) break;
        usleep(10000);
    }
    ASSERT_UEQ(ib.applied, h2);
    ASSERT_EQ(ia.dirty_tracking, 0);
    struct jr_copywin w;
    ASSERT_EQ(jr_copywin_get(t.sb, "cv", &w), -ENOENT);
    images_equal(t.sa, t.sb, "cv");
    teardown(&t);
}

/* ---- bounds found by probing (issue 8) ---- */

static int copy_call(rpc_client *c, Tandem__Repl__V1__CopyRegionsRequest *q,
                     Tandem__Repl__V1__CopyRegionsResponse **out, char *msg,
                     size_t msz)
{
    ProtobufCMessage *o = NULL;
    int code = rpc_client_call(c, "/tandem.repl.v1.Link/CopyRegions", &q->base,
                               &tandem__repl__v1__copy_regions_response__descriptor,
                               &o, 10000, 1, msg, msz);
    *out = (Tandem__Repl__V1__CopyRegionsResponse *)o;
    return code;
}

/* The replica answers as a volume should: stat, image, peer ack, and
 * GetVolume on the link. */
static void replica_readable(rpc_client *c, st_store *st, const char *id,
                             uint64_t applied)
{
    struct jr_info ib;
    ASSERT_OK(jr_volume_stat(st, id, &ib));
    ASSERT_UEQ(ib.applied, applied);
    ASSERT(ib.head >= ib.applied);
    uint8_t buf[4096];
    ASSERT_OK(jr_image_read(st, id, 0, buf, sizeof(buf)));
    uint64_t ack = 0;
    int rc = jr_peer_ack_get(st, id, "a", &ack);
    ASSERT(rc == 0 || rc == -ENOENT); /* it parses */
    jr_volume *v = NULL;
    ASSERT_OK(jr_open(st, id, 0, "test", &v));
    ASSERT_OK(jr_close(v));
    Tandem__Repl__V1__GetVolumeRequest g =
        TANDEM__REPL__V1__GET_VOLUME_REQUEST__INIT;
    g.volume_id = (char *)id;
    g.from_region = "a";
    ProtobufCMessage *o = NULL;
    char msg[256];
    ASSERT_EQ(rpc_client_call(c, "/tandem.repl.v1.Link/GetVolume", &g.base,
                              &tandem__repl__v1__get_volume_response__descriptor,
                              &o, 10000, 1, msg, sizeof(msg)), RPC_OK);
    Tandem__Repl__V1__GetVolumeResponse *gv = (void *)o;
    ASSERT_EQ(gv->exists, 1);
    ASSERT_UEQ(gv->applied, applied);
    protobuf_c_message_free_unpacked(o, NULL);
}

/* CopyRegions finish with resume_seq 2^64-1 was answered OK and left the
 * replica unreadable (header_bad key=ack.a).  Seqs past the journal's
 * seq space (above REP_MAX_SEQ = 2^63-1, so that seq + 1 never wraps),
 * a resume past the sender's own head (consistent_at), and a replica
 * created at such a start_seq are refused with INVALID_ARGUMENT, and the
 * replica stays as it was. */
TEST(copy_finish_refuses_impossible_resume_seq)
{
    struct two t;
    rpc_client *c = as_sender(&t);
    Tandem__Repl__V1__VolumeSpec spec = TANDEM__REPL__V1__VOLUME_SPEC__INIT;
    spec_replicated(&spec);
    spec.size = 1u << 20;
    spec.object_size = 64u << 10;
    spec.start_seq = 1;
    Tandem__Repl__V1__CopyRegionsRequest q =
        TANDEM__REPL__V1__COPY_REGIONS_REQUEST__INIT;
    q.volume_id = "v";
    q.from_region = "a";
    q.epoch = 1;
    q.copy_id = "c1";
    q.begin = 1;
    q.spec = &spec;
    Tandem__Repl__V1__CopyRegionsResponse *cr = NULL;
    char msg[256];
    ASSERT_EQ(copy_call(c, &q, &cr, msg, sizeof(msg)), RPC_OK);
    ASSERT_EQ(cr->result, RES(OK));
    protobuf_c_message_free_unpacked(&cr->base, NULL);
    q.begin = 0;
    q.spec = NULL;
    q.finish = 1;
    const struct {
        uint64_t resume, consistent;
    } bad[] = {
        {UINT64_MAX, 0},
        {UINT64_MAX, UINT64_MAX},
        {UINT64_MAX - 1, 0},
        {(1ull << 63) + 1, 0},
        {(1ull << 63), (1ull << 63)},
        {5, UINT64_MAX},
        {5, 1ull << 63},
        {10, 3}, /* resumes past the sender's head */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        q.resume_seq = bad[i].resume;
        q.consistent_at = bad[i].consistent;
        msg[0] = 0;
        cr = NULL;
        int code = copy_call(c, &q, &cr, msg, sizeof(msg));
        if (code != RPC_INVALID_ARGUMENT)
            fprintf(stderr, "case %zu: code %d result %d msg %s\n", i, code,
                    cr ? (int)cr->result : -1, cr ? cr->message : msg);
        ASSERT_EQ(code, RPC_INVALID_ARGUMENT);
        ASSERT(strstr(msg, "resume_seq") || strstr(msg, "consistent_at"));
        replica_readable(c, t.sb, "v", 0);
    }
    /* The largest acceptable position still works, and so does an
     * ordinary finish after it (a copy may move a replica back). */
    q.resume_seq = (1ull << 63) - 1; /* position 2^63 - 2 */
    q.consistent_at = 0;
    ASSERT_EQ(copy_call(c, &q, &cr, msg, sizeof(msg)), RPC_OK);
    ASSERT_EQ(cr->result, RES(OK));
    ASSERT_UEQ(cr->applied, (1ull << 63) - 2);
    protobuf_c_message_free_unpacked(&cr->base, NULL);
    replica_readable(c, t.sb, "v", (1ull << 63) - 2);
    q.begin = 1;
    q.resume_seq = 4;
    q.consistent_at = 7;
    ASSERT_EQ(copy_call(c, &q, &cr, msg, sizeof(msg)), RPC_OK);
    ASSERT_EQ(cr->result, RES(OK));
    ASSERT_UEQ(cr->applied, 3);
    protobuf_c_message_free_unpacked(&cr->base, NULL);
    replica_readable(c, t.sb, "v", 3);

    /* A replica is never created at such a position either. */
    spec.start_seq = UINT64_MAX;
    Tandem__Repl__V1__ShipBatchRequest s =
        TANDEM__REPL__V1__SHIP_BATCH_REQUEST__INIT;
    s.volume_id = "w";
    s.from_region = "a";
    s.epoch = 1;
    s.spec = &spec;
    ProtobufCMessage *o = NULL;
    ASSERT_EQ(rpc_client_call(c, "/tandem.repl.v1.Link/ShipBatch", &s.base,
                              &tandem__repl__v1__ship_batch_response__descriptor,
                              &o, 10000, 1, msg, sizeof(msg)),
              RPC_INVALID_ARGUMENT);
    ASSERT(strstr(msg, "start_seq") != NULL);
    q.volume_id = "w";
    q.begin = 1;
    q.finish = 0;
    q.spec = &spec;
    ASSERT_EQ(copy_call(c, &q, &cr, msg, sizeof(msg)), RPC_INVALID_ARGUMENT);
    ASSERT(strstr(msg, "start_seq") != NULL);
    struct jr_info ib;
    ASSERT_EQ(jr_volume_stat(t.sb, "w", &ib), -ENOENT);

    rpc_client_destroy(c);
    teardown(&t);
}

/* Volume ids made of dots ("." and "..": path components) were taken on
 * the link.  Every Link RPC refuses them with INVALID_ARGUMENT, and the
 * journal refuses to create them at all. */
TEST(dot_volume_ids_are_refused)
{
    struct two t;
    rpc_client *c = as_sender(&t);
    struct jr_create_opts co = {.size = 1u << 20, .object_size = 64u << 10,
                                .role = JR_ROLE_SECONDARY, .region = "b"};
    const char *ids[] = {".", "..", "...", "...."};
    Tandem__Repl__V1__VolumeSpec spec = TANDEM__REPL__V1__VOLUME_SPEC__INIT;
    spec_replicated(&spec);
    spec.size = 1u << 20;
    spec.object_size = 64u << 10;
    spec.start_seq = 1;
    Tandem__Repl__V1__Region g = TANDEM__REPL__V1__REGION__INIT, *gp = &g;
    g.length = 4096;
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        char *id = (char *)ids[i];
        ASSERT_EQ(jr_volume_create(t.sb, id, &co), -EINVAL);
        Tandem__Repl__V1__ShipBatchRequest sb =
            TANDEM__REPL__V1__SHIP_BATCH_REQUEST__INIT;
        sb.volume_id = id;
        sb.from_region = "a";
        sb.epoch = 1;
        sb.spec = &spec;
        Tandem__Repl__V1__CopyRegionsRequest cp =
            TANDEM__REPL__V1__COPY_REGIONS_REQUEST__INIT;
        cp.volume_id = id;
        cp.from_region = "a";
        cp.epoch = 1;
        cp.copy_id = "c1";
        cp.begin = 1;
        cp.spec = &spec;
        Tandem__Repl__V1__GetVolumeRequest gv =
            TANDEM__REPL__V1__GET_VOLUME_REQUEST__INIT;
        gv.volume_id = id;
        gv.from_region = "a";
        Tandem__Repl__V1__JournalRegionsRequest jq =
            TANDEM__REPL__V1__JOURNAL_REGIONS_REQUEST__INIT;
        jq.volume_id = id;
        jq.from_seq = 1;
        Tandem__Repl__V1__ReadRegionsRequest rq =
            TANDEM__REPL__V1__READ_REGIONS_REQUEST__INIT;
        rq.volume_id = id;
        rq.n_regions = 1;
        rq.regions = &gp;
        Tandem__Repl__V1__DeleteReplicaRequest dq =
            TANDEM__REPL__V1__DELETE_REPLICA_REQUEST__INIT;
        dq.volume_id = id;
        dq.from_region = "a";
        dq.epoch = 1;
        const struct {
            const char *m;
            ProtobufCMessage *q;
            const ProtobufCMessageDescriptor *d;
        } calls[] = {
            {"ShipBatch", &sb.base,
             &tandem__repl__v1__ship_batch_response__descriptor},
            {"CopyRegions", &cp.base,
             &tandem__repl__v1__copy_regions_response__descriptor},
            {"GetVolume", &gv.base,
             &tandem__repl__v1__get_volume_response__descriptor},
            {"JournalRegions", &jq.base,
             &tandem__repl__v1__journal_regions_response__descriptor},
            {"ReadRegions", &rq.base,
             &tandem__repl__v1__read_regions_response__descriptor},
            {"DeleteReplica", &dq.base,
             &tandem__repl__v1__delete_replica_response__descriptor},
        };
        for (size_t k = 0; k < sizeof(calls) / sizeof(calls[0]); k++) {
            char m[128], msg[256] = "";
            snprintf(m, sizeof(m), "/tandem.repl.v1.Link/%s", calls[k].m);
            ProtobufCMessage *o = NULL;
            int code = rpc_client_call(c, m, calls[k].q, calls[k].d, &o,
                                       10000, 1, msg, sizeof(msg));
            if (code != RPC_INVALID_ARGUMENT)
                fprintf(stderr, "id \"%s\" %s: %s \"%s\"\n", id, calls[k].m,
                        rpc_code_name(code), msg);
            ASSERT_EQ(code, RPC_INVALID_ARGUMENT);
            ASSERT(strstr(msg, "volume id") != NULL);
        }
    }
    /* Dots inside an id stay fine, on the link and in the journal. */
    ASSERT_OK(jr_volume_create(t.sb, "a..b", &co));
    ASSERT_OK(jr_volume_create(t.sb, ".x", &co));
    struct jr_info ib;
    ASSERT_EQ(jr_volume_stat(t.sb, "..", &ib), -EINVAL);
    rpc_client_destroy(c);
    teardown(&t);
}

/* ---- /metrics under slow and idle clients ---- */

static int connect_port(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_OK(connect(fd, (struct sockaddr *)&sa, sizeof(sa)));
    return fd;
}

/* One request; the whole answer in out (NUL-terminated).  Fails the test
 * unless it came within limit_ms. */
static void http_get(int port, const char *req, char *out, size_t osz,
                     int limit_ms)
{
    int64_t t0 = tb_mono_ms();
    int fd = connect_port(port);
    struct timeval tv = {.tv_sec = limit_ms / 1000,
                         .tv_usec = (limit_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ASSERT_EQ(send(fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
    size_t n = 0;
    for (;;) {
        ssize_t k = recv(fd, out + n, osz - 1 - n, 0);
        if (k <= 0) {
            if (k < 0)
                fprintf(stderr, "recv after %" PRId64 " ms: %s\n",
                        tb_mono_ms() - t0, strerror(errno));
            ASSERT_EQ(k, 0);
            break;
        }
        n += (size_t)k;
        if (n == osz - 1) break;
    }
    out[n] = 0;
    close(fd);
    ASSERT_LT(tb_mono_ms() - t0, limit_ms);
}

/* /metrics was served by one thread reading each connection with a 2 s
 * poll per read: a client sending a byte every 1.5 s held it, and every
 * scrape and liveness probe behind it failed.  Now: scrapes are answered
 * promptly while slow clients dribble and while idle connections fill
 * every slot, and a slow client is cut off REP_METRICS_READ_MS after it
 * connected, however it dribbles. */
TEST(metrics_survive_slow_and_idle_clients)
{
    struct two t;
    setup(&t, 0);
    char err[512];
    struct rep_opts o = {.config_path = t.conf, .region = "a",
                         .peer_region = "b", .insecure = 1, .scan_ms = 50,
                         .metrics_addr = "127.0.0.1:0"};
    ASSERT_OK(rep_create(&o, &t.a, err, sizeof(err)));
    ASSERT_OK(rep_start(t.a, err, sizeof(err)));
    int port = rep_metrics_port(t.a);
    ASSERT_GT(port, 0);
    static char out[1 << 16];
    const char *get = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    http_get(port, get, out, sizeof(out), 1000);
    ASSERT(!strncmp(out, "HTTP/1.0 200 OK\r\n", 17));
    ASSERT(strstr(out, "tandem_peer_link_up{region=\"a\",peer=\"b\"}"));
    http_get(port, "GET /other HTTP/1.0\r\n\r\n", out, sizeof(out), 1000);
    ASSERT(!strncmp(out, "HTTP/1.0 404 ", 13));
    http_get(port, "\x16\x03\x01\x02", out, sizeof(out), 1000);
    ASSERT(!strncmp(out, "HTTP/1.0 400 ", 13));

    /* Three slow clients, a byte every 1.5 s, while scrapes go on. */
    const char *slow = "GET /metrics HTTP/1.0\r\n\r\n";
    int sfd[3];
    int64_t t0 = tb_mono_ms(), next = t0;
    size_t sent = 0;
    for (int i = 0; i < 3; i++) sfd[i] = connect_port(port);
    int scrapes = 0, cut = 0;
    while (tb_mono_ms() - t0 < 5000) {
        if (tb_mono_ms() >= next && sent < strlen(slow)) {
            for (int i = 0; i < 3; i++)
                send(sfd[i], slow + sent, 1, MSG_NOSIGNAL);
            sent++;
            next += 1500;
        }
        http_get(port, get, out, sizeof(out), 1000);
        ASSERT(!strncmp(out, "HTTP/1.0 200 OK\r\n", 17));
        scrapes++;
        /* Cut off by the deadline from accept: EOF, or a reset for the
         * bytes it sent after that. */
        struct pollfd p = {sfd[0], POLLIN, 0};
        if (!cut && poll(&p, 1, 0) == 1) {
            char b[64];
            ssize_t k = recv(sfd[0], b, sizeof(b), MSG_DONTWAIT);
            ASSERT(k <= 0);
            int64_t at = tb_mono_ms() - t0;
            ASSERT_GE(at, REP_METRICS_READ_MS - 100);
            ASSERT_LT(at, REP_METRICS_READ_MS + 1000);
            cut = 1;
        }
        usleep(200000);
    }
    ASSERT(cut);
    ASSERT_GE(scrapes, 10);
    for (int i = 0; i < 3; i++) close(sfd[i]);

    /* More idle connections than slots: a scrape still gets in (it takes
     * the slot of the oldest idle one). */
    int idle[REP_METRICS_CONNS * 2];
    for (int i = 0; i < REP_METRICS_CONNS * 2; i++) {
        idle[i] = connect_port(port);
        send(idle[i], "G", 1, MSG_NOSIGNAL);
    }
    usleep(100000);
    for (int k = 0; k < 3; k++) {
        http_get(port, get, out, sizeof(out), 1000);
        ASSERT(!strncmp(out, "HTTP/1.0 200 OK\r\n", 17));
    }
    for (int i = 0; i < REP_METRICS_CONNS * 2; i++) close(idle[i]);
    teardown(&t);
}

/* The request reader on its own (fuzzed by fuzz-metrics-http). */
TEST(metrics_request_reader)
{
    const struct {
        const char *in;
        enum rep_http_req want;
    } cases[] = {
        {"", REP_HTTP_MORE},
        {"GET /metrics HTTP/1.1\r\n", REP_HTTP_MORE},
        {"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", REP_HTTP_METRICS},
        {"GET /metrics HTTP/1.0\n\n", REP_HTTP_METRICS},
        {"GET /metrics?x=1 HTTP/1.0\r\n\r\n", REP_HTTP_METRICS},
        {"GET /metricsx HTTP/1.0\r\n\r\n", REP_HTTP_NOT_FOUND},
        {"GET / HTTP/1.0\r\n\r\n", REP_HTTP_NOT_FOUND},
        {"POST /metrics HTTP/1.0\r\n\r\n", REP_HTTP_NOT_FOUND},
        {"GET /metrics\r\n\r\n", REP_HTTP_BAD},
        {"GET /metrics HTTP/2.0\r\n\r\n", REP_HTTP_BAD},
        {"GET metrics HTTP/1.0\r\n\r\n", REP_HTTP_BAD},
        {"get /metrics HTTP/1.0\r\n\r\n", REP_HTTP_BAD},
        {"GET  /metrics HTTP/1.0\r\n\r\n", REP_HTTP_BAD},
        {"\r\n\r\n", REP_HTTP_BAD},
        {"GET /met\x01rics", REP_HTTP_BAD},
        {"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", REP_HTTP_BAD},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum rep_http_req got =
            rep__metrics_request(cases[i].in, strlen(cases[i].in));
        if (got != cases[i].want)
            fprintf(stderr, "case %zu: %d, want %d\n", i, got, cases[i].want);
        ASSERT_EQ(got, cases[i].want);
    }
    /* A NUL byte, and no end of the head within the limit. */
    ASSERT_EQ(rep__metrics_request("GET /\0", 6), REP_HTTP_BAD);
    static char big[REP_METRICS_REQ_MAX + 10];
    memset(big, 'a', sizeof(big));
    ASSERT_EQ(rep__metrics_request(big, REP_METRICS_REQ_MAX - 1),
              REP_HTTP_MORE);
    ASSERT_EQ(rep__metrics_request(big, REP_METRICS_REQ_MAX), REP_HTTP_BAD);
    ASSERT_EQ(rep__metrics_request(big, sizeof(big)), REP_HTTP_BAD);
}

/* n regions of len bytes, step apart (the last one len_last long). */
static int read_regions2(rpc_client *c, const char *id, size_t n,
                         uint64_t len, uint64_t step, uint64_t len_last,
                         char *msg, size_t msz,
                         Tandem__Repl__V1__ReadRegionsResponse **out)
{
    Tandem__Repl__V1__Region *g = calloc(n, sizeof(*g));
    Tandem__Repl__V1__Region **gp = calloc(n, sizeof(*gp));
    ASSERT(g && gp);
    for (size_t i = 0; i < n; i++) {
        tandem__repl__v1__region__init(&g[i]);
        g[i].offset = i * step;
        g[i].length = i + 1 < n ? len : len_last;
        gp[i] = &g[i];
    }
    Tandem__Repl__V1__ReadRegionsRequest q =
        TANDEM__REPL__V1__READ_REGIONS_REQUEST__INIT;
    q.volume_id = (char *)id;
    q.regions = gp;
    q.n_regions = n;
    q.compress = 1;
    ProtobufCMessage *o = NULL;
    msg[0] = 0;
    int code = rpc_client_call(c, "/tandem.repl.v1.Link/ReadRegions", &q.base,
                               &tandem__repl__v1__read_regions_response__descriptor,
                               &o, 30000, 1, msg, msz);
    free(g);
    free(gp);
    if (out)
        *out = (Tandem__Repl__V1__ReadRegionsResponse *)o;
    else if (o)
        protobuf_c_message_free_unpacked(o, NULL);
    return code;
}

static int read_regions(rpc_client *c, const char *id, size_t n,
                        uint64_t len, uint64_t step, char *msg, size_t msz,
                        Tandem__Repl__V1__ReadRegionsResponse **out)
{
    return read_regions2(c, id, n, len, step, len, msg, msz, out);
}

/* ReadRegions capped the bytes but not the regions: 300k one-byte
 * regions held a link worker for 12 s.  At most REP_READ_MAX_REGIONS
 * (1024) regions per call, each counting as 16 KiB at least against the
 * 16 MiB budget; refusals are INVALID_ARGUMENT and come at once. */
TEST(read_regions_cost_is_bounded)
{
    struct two t;
    rpc_client *c = as_sender(&t);
    struct jr_kv kv[] = {{"csi.replication", "async"},
                         {"csi.peer_region", "a"}};
    struct jr_create_opts co = {.size = 64u << 20, .object_size = 64u << 10,
                                .role = JR_ROLE_PRIMARY, .region = "b",
                                .meta = kv, .n_meta = 2};
    ASSERT_OK(jr_volume_create(t.sb, "v", &co));
    uint64_t head = write_some(t.sb, "v", 8, 5);
    ASSERT_GT(head, 0);
    char msg[256];
    Tandem__Repl__V1__ReadRegionsResponse *rr = NULL;

    int64_t t0 = tb_mono_ms();
    ASSERT_EQ(read_regions(c, "v", 300000, 1, 64, msg, sizeof(msg), NULL),
              RPC_INVALID_ARGUMENT);
    ASSERT(strstr(msg, "300000 regions: at most 1024") != NULL);
    ASSERT_LT(tb_mono_ms() - t0, 3000);
    ASSERT_EQ(read_regions(c, "v", 1025, 1, 64, msg, sizeof(msg), NULL),
              RPC_INVALID_ARGUMENT);
    ASSERT(strstr(msg, "1025 regions") != NULL);
    /* Short regions count as 16 KiB: 1000 of them and 1 MiB more is over
     * the budget, though only 1 MiB + 999 bytes are asked for. */
    ASSERT_EQ(read_regions2(c, "v", 1000, 1, 64 << 10, 1u << 20, msg,
                            sizeof(msg), NULL), RPC_INVALID_ARGUMENT);
    ASSERT(strstr(msg, "counts as 16384 bytes at least") != NULL);
    ASSERT_EQ(read_regions2(c, "v", 900, 1, 64 << 10, 1u << 20, msg,
                            sizeof(msg), NULL), RPC_OK);
    ASSERT_EQ(read_regions(c, "v", 1024, 1, 64 << 10, msg, sizeof(msg), NULL),
              RPC_OK);
    /* 17 x 1 MiB: over 16 MiB. */
    ASSERT_EQ(read_regions(c, "v", 17, 1u << 20, 1u << 20, msg, sizeof(msg),
                           NULL), RPC_INVALID_ARGUMENT);
    ASSERT(strstr(msg, "16 MiB") != NULL);
    /* The largest calls allowed are answered in full, and soon. */
    t0 = tb_mono_ms();
    ASSERT_EQ(read_regions(c, "v", 16, 1u << 20, 1u << 20, msg, sizeof(msg),
                           &rr), RPC_OK);
    ASSERT_UEQ(rr->n_regions, 16);
    protobuf_c_message_free_unpacked(&rr->base, NULL);
    ASSERT_EQ(read_regions(c, "v", 1024, 16u << 10, 64u << 10, msg,
                           sizeof(msg), &rr), RPC_OK);
    ASSERT_UEQ(rr->n_regions, 1024);
    uint8_t buf[16384];
    ASSERT_OK(jr_image_read(t.sb, "v", 5 * (64u << 10), buf, sizeof(buf)));
    Tandem__Repl__V1__Region *x = rr->regions[5];
    ASSERT_UEQ(x->offset, 5 * (64u << 10));
    void *raw = NULL;
    const void *p = x->data.data;
    if (x->compression == TANDEM__REPL__V1__COMPRESSION__COMPRESSION_LZ4) {
        ASSERT_OK(rep__unlz4(x->data.data, x->data.len, x->length, &raw));
        p = raw;
    }
    ASSERT_MEMEQ(p, buf, sizeof(buf));
    free(raw);
    protobuf_c_message_free_unpacked(&rr->base, NULL);
    ASSERT_LT(tb_mono_ms() - t0, 5000);
    rpc_client_destroy(c);
    teardown(&t);
}

/* ------------------------------------------------------------- trust */

/* Issue 8: the link authenticated (mTLS) but did not authorize.  These
 * tests replay each attack over real mutual TLS on loopback, with
 * certificates of one CA: regions a and b (b's peer is a), a third
 * region c, the operators' admin, and hand-made ones gen-certs.sh does
 * not issue (no URI SAN, two URIs, another trust domain). */

/* A leaf certificate signed by g_pki's CA with subjectAltName san, as
 * g_pki/name.pem and .key. */
static void custom_cert(const char *name, const char *san)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "set -e; cd '%s'; "
             "printf '%%s\\n' basicConstraints=critical,CA:FALSE "
             "keyUsage=critical,digitalSignature "
             "extendedKeyUsage=serverAuth,clientAuth "
             "'subjectAltName=%s' >%s.ext; "
             "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
             "-nodes -subj /CN=%s -keyout %s.key -out %s.csr 2>/dev/null; "
             "openssl x509 -req -in %s.csr -CA ca.pem -CAkey ca.key "
             "-set_serial 0x$(openssl rand -hex 16) -days 1 -extfile %s.ext "
             "-out %s.pem 2>/dev/null",
             g_pki, san, name, name, name, name, name, name, name);
    ASSERT_EQ(system(cmd), 0);
}

static void tls_pki(void)
{
    const char *tmp = getenv("TANDEM_TEST_TMP");
    snprintf(g_pki, sizeof(g_pki), "%s/test-rep-pki.XXXXXX",
             tmp ? tmp : "/tmp");
    ASSERT(mkdtemp(g_pki) != NULL);
    ASSERT(access("scripts/gen-certs.sh", X_OK) == 0); /* run from the root */
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "scripts/gen-certs.sh '%s' a b c admin "
             ">/dev/null", g_pki);
    ASSERT_EQ(system(cmd), 0);
    custom_cert("nouri", "IP:127.0.0.1,DNS:localhost,DNS:a");
    custom_cert("twouri", "IP:127.0.0.1,URI:spiffe://tandem.local/tandem/"
                "region/a,URI:spiffe://tandem.local/tandem/region/c");
    custom_cert("xa", "IP:127.0.0.1,URI:spiffe://other.example/tandem/"
                "region/a");
    custom_cert("xadmin", "IP:127.0.0.1,URI:spiffe://other.example/tandem/"
                "admin");
    g_admin_port[0] = free_port();
    g_admin_port[1] = free_port();
}

static void tls_pki_rm(void)
{
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_pki);
    ASSERT_EQ(system(cmd), 0);
}

/* A client of 127.0.0.1:port with certificate g_pki/name.pem. */
static rpc_client *tls_client(const char *name, int port)
{
    char ca[400], cert[400], key[400], addr[64];
    snprintf(ca, sizeof(ca), "%s/ca.pem", g_pki);
    snprintf(cert, sizeof(cert), "%s/%s.pem", g_pki, name);
    snprintf(key, sizeof(key), "%s/%s.key", g_pki, name);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    struct rpc_tls tls = {ca, cert, key, NULL};
    rpc_client *c = NULL;
    ASSERT_OK(rpc_client_create(addr, &tls, &c));
    return c;
}

/* One Link call; the answer (if OK) is freed unless out. */
static int link_call(rpc_client *c, const char *method,
                     const ProtobufCMessage *q,
                     const ProtobufCMessageDescriptor *d,
                     ProtobufCMessage **out, char *msg, size_t msz)
{
    char path[128];
    ProtobufCMessage *o = NULL;
    snprintf(path, sizeof(path), "/tandem.repl.v1.Link/%s", method);
    int code = rpc_client_call(c, path, q, d, &o, 10000, 1, msg, msz);
    if (out)
        *out = o;
    else if (o)
        protobuf_c_message_free_unpacked(o, NULL);
    return code;
}

/* What a copy looks like: header figures, bytes, fencing mark.
 * vsnap_same asserts nothing of it changed. */
struct vsnap {
    struct jr_info info;
    uint8_t *img;
    char *split;
};

static void vsnap_take(st_store *st, const char *id, struct vsnap *s)
{
    memset(s, 0, sizeof(*s));
    ASSERT_OK(jr_volume_stat(st, id, &s->info));
    s->img = malloc(s->info.size);
    ASSERT(s->img != NULL);
    ASSERT_OK(jr_image_read(st, id, 0, s->img, s->info.size));
    if (jr_meta_get(st, id, REP_META_SPLIT, &s->split) < 0) s->split = NULL;
}

static void vsnap_same(st_store *st, const char *id, struct vsnap *s)
{
    struct vsnap n;
    vsnap_take(st, id, &n);
    ASSERT_EQ(n.info.role, s->info.role);
    ASSERT_UEQ(n.info.epoch, s->info.epoch);
    ASSERT_UEQ(n.info.head, s->info.head);
    ASSERT_UEQ(n.info.applied, s->info.applied);
    ASSERT_UEQ(n.info.size, s->info.size);
    ASSERT_MEMEQ(n.img, s->img, s->info.size);
    ASSERT_EQ(n.split != NULL, s->split != NULL);
    free(n.img);
    free(n.split);
    free(s->img);
    free(s->split);
    s->img = NULL;
    s->split = NULL;
}

/* Every Link method, with requests that name volume id and region from
 * (the attacks of issue 8 among them: DeleteReplica at epoch 2^64-1,
 * CopyRegions of 4 KiB of 'A' at epoch 1000, a ShipBatch probe at epoch
 * 1000, ReadRegions of 1 MiB). */
struct link_reqs {
    Tandem__Repl__V1__HelloRequest hello;
    Tandem__Repl__V1__ShipBatchRequest ship;
    Tandem__Repl__V1__CopyRegionsRequest copy;
    Tandem__Repl__V1__GetVolumeRequest getvol;
    Tandem__Repl__V1__JournalRegionsRequest jregions;
    Tandem__Repl__V1__ReadRegionsRequest rregions;
    Tandem__Repl__V1__DeleteReplicaRequest delrep;
    Tandem__Repl__V1__VolumeSpec spec;
    Tandem__Repl__V1__Region cg, *cgp, rg, *rgp;
    uint8_t aaaa[4096];
};

static void link_reqs_init(struct link_reqs *q, const char *id,
                           const char *from, const char *to)
{
    memset(q, 0, sizeof(*q));
    tandem__repl__v1__hello_request__init(&q->hello);
    q->hello.region = (char *)from;
    q->hello.peer_region = (char *)to;
    tandem__repl__v1__volume_spec__init(&q->spec);
    q->spec.size = 1u << 20;
    q->spec.object_size = 64u << 10;
    q->spec.start_seq = 1;
    spec_replicated(&q->spec);
    tandem__repl__v1__ship_batch_request__init(&q->ship);
    q->ship.volume_id = (char *)id;
    q->ship.from_region = (char *)from;
    q->ship.epoch = 1000;
    q->ship.from_primary = 1;
    q->ship.spec = &q->spec;
    memset(q->aaaa, 'A', sizeof(q->aaaa));
    tandem__repl__v1__region__init(&q->cg);
    q->cg.offset = 0;
    q->cg.length = sizeof(q->aaaa);
    q->cg.data.data = q->aaaa;
    q->cg.data.len = sizeof(q->aaaa);
    q->cgp = &q->cg;
    tandem__repl__v1__copy_regions_request__init(&q->copy);
    q->copy.volume_id = (char *)id;
    q->copy.from_region = (char *)from;
    q->copy.epoch = 1000;
    q->copy.from_primary = 1;
    q->copy.copy_id = "evil";
    q->copy.begin = 1;
    q->copy.spec = &q->spec;
    q->copy.n_regions = 1;
    q->copy.regions = &q->cgp;
    tandem__repl__v1__get_volume_request__init(&q->getvol);
    q->getvol.volume_id = (char *)id;
    q->getvol.from_region = (char *)from;
    tandem__repl__v1__journal_regions_request__init(&q->jregions);
    q->jregions.volume_id = (char *)id;
    q->jregions.from_seq = 1;
    tandem__repl__v1__region__init(&q->rg);
    q->rg.offset = 0;
    q->rg.length = 1u << 20;
    q->rgp = &q->rg;
    tandem__repl__v1__read_regions_request__init(&q->rregions);
    q->rregions.volume_id = (char *)id;
    q->rregions.n_regions = 1;
    q->rregions.regions = &q->rgp;
    tandem__repl__v1__delete_replica_request__init(&q->delrep);
    q->delrep.volume_id = (char *)id;
    q->delrep.from_region = (char *)from;
    q->delrep.epoch = UINT64_MAX;
}

/* Call every Link method of q as client c: each must be refused with
 * PERMISSION_DENIED (and its message must contain want, if given). */
static void link_all_denied(rpc_client *c, struct link_reqs *q,
                            const char *who, const char *want)
{
    struct {
        const char *m;
        const ProtobufCMessage *q;
        const ProtobufCMessageDescriptor *d;
    } calls[] = {
        {"Hello", &q->hello.base, &tandem__repl__v1__hello_response__descriptor},
        {"ShipBatch", &q->ship.base,
         &tandem__repl__v1__ship_batch_response__descriptor},
        {"CopyRegions", &q->copy.base,
         &tandem__repl__v1__copy_regions_response__descriptor},
        {"GetVolume", &q->getvol.base,
         &tandem__repl__v1__get_volume_response__descriptor},
        {"JournalRegions", &q->jregions.base,
         &tandem__repl__v1__journal_regions_response__descriptor},
        {"ReadRegions", &q->rregions.base,
         &tandem__repl__v1__read_regions_response__descriptor},
        {"DeleteReplica", &q->delrep.base,
         &tandem__repl__v1__delete_replica_response__descriptor},
    };
    for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++) {
        char msg[512] = "";
        int code = link_call(c, calls[i].m, calls[i].q, calls[i].d, NULL, msg,
                             sizeof(msg));
        if (code != RPC_PERMISSION_DENIED ||
            (want && !strstr(msg, want))) {
            fprintf(stderr, "  %s as %s: %s \"%s\" (want PERMISSION_DENIED "
                    "\"%s\")\n", calls[i].m, who, rpc_code_name(code), msg,
                    want ? want : "");
            TT_FAIL("a Link call was not refused");
        }
    }
}

/* Both regions over mTLS; a's volume v replicated to b, a's local-only
 * volume priv (1 MiB written), b at rest. */
static void trust_setup(struct two *t, uint64_t *head)
{
    tls_pki();
    setup(t, 1);
    create_primary(t->sa, "v", 1u << 20);
    *head = write_some(t->sa, "v", 20, 21);
    ASSERT(wait_applied(t->sb, "v", *head));
    struct jr_create_opts lo = {.size = 1u << 20, .object_size = 64u << 10,
                                .role = JR_ROLE_PRIMARY, .region = "a"};
    ASSERT_OK(jr_volume_create(t->sa, "priv", &lo));
    write_some(t->sa, "priv", 8, 22);
    uint64_t ack = 0;
    for (int i = 0; i < 3000 && ack < *head; i++) {
        jr_peer_ack_get(t->sa, "v", "b", &ack);
        usleep(10000);
    }
    ASSERT_UEQ(ack, *head);
}

/* Identity comes from the certificate: a third region's certificate of
 * the same CA, the admin's, one without a URI, one with two, and region
 * a of another trust domain are refused on every Link method of b (whose
 * peer is a) and of a, whatever the request fields say; the real peer is
 * refused when a field names another region.  Nothing changes on either
 * side, and replication goes on. */
TEST(link_identity_is_the_certificate)
{
    struct two t;
    uint64_t head;
    trust_setup(&t, &head);
    struct vsnap sa, sb, sp;
    vsnap_take(t.sa, "v", &sa);
    vsnap_take(t.sb, "v", &sb);
    vsnap_take(t.sa, "priv", &sp);
    struct link_reqs q;
    const char *who[] = {"c", "admin", "nouri", "twouri", "xa"};
    const char *why[] = {"region c is not the peer of region b",
                         "admin identity may not use the peer link",
                         "no identity (no URI SAN)",
                         "more than one identity",
                         "not a region identity of this trust domain"};
    for (size_t i = 0; i < sizeof(who) / sizeof(who[0]); i++) {
        /* Against b, claiming to be a, with b's replica of v. */
        rpc_client *c = tls_client(who[i], t.pb);
        link_reqs_init(&q, "v", "a", "b");
        link_all_denied(c, &q, who[i], why[i]);
        rpc_client_destroy(c);
        /* Against a, claiming to be b: a's local volume. */
        c = tls_client(who[i], t.pa);
        link_reqs_init(&q, "priv", "b", "a");
        link_all_denied(c, &q, who[i], NULL);
        rpc_client_destroy(c);
    }
    /* The real peer's certificate, with a field naming another region. */
    rpc_client *ca = tls_client("a", t.pb);
    link_reqs_init(&q, "v", "c", "b");
    q.hello.region = "c";
    char msg[512];
    struct {
        const char *m;
        const ProtobufCMessage *q;
        const ProtobufCMessageDescriptor *d;
    } f[] = {
        {"Hello", &q.hello.base, &tandem__repl__v1__hello_response__descriptor},
        {"ShipBatch", &q.ship.base,
         &tandem__repl__v1__ship_batch_response__descriptor},
        {"CopyRegions", &q.copy.base,
         &tandem__repl__v1__copy_regions_response__descriptor},
        {"GetVolume", &q.getvol.base,
         &tandem__repl__v1__get_volume_response__descriptor},
        {"DeleteReplica", &q.delrep.base,
         &tandem__repl__v1__delete_replica_response__descriptor},
    };
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
        ASSERT_EQ(link_call(ca, f[i].m, f[i].q, f[i].d, NULL, msg,
                            sizeof(msg)), RPC_PERMISSION_DENIED);
        ASSERT(strstr(msg, "does not match the caller's identity") != NULL);
    }
    /* The same certificate with the right fields is served (the refusals
     * above are about identity, not a broken client). */
    link_reqs_init(&q, "v", "a", "b");
    ASSERT_EQ(link_call(ca, "Hello", &q.hello.base,
                        &tandem__repl__v1__hello_response__descriptor, NULL,
                        msg, sizeof(msg)), RPC_OK);
    ProtobufCMessage *o = NULL;
    ASSERT_EQ(link_call(ca, "GetVolume", &q.getvol.base,
                        &tandem__repl__v1__get_volume_response__descriptor,
                        &o, msg, sizeof(msg)), RPC_OK);
    ASSERT_EQ(((Tandem__Repl__V1__GetVolumeResponse *)o)->exists, 1);
    /* No region copy was begun by the refused CopyRegions. */
    ASSERT_EQ(((Tandem__Repl__V1__GetVolumeResponse *)o)->copy_active, 0);
    ASSERT_UEQ(((Tandem__Repl__V1__GetVolumeResponse *)o)->epoch, 1);
    protobuf_c_message_free_unpacked(o, NULL);
    rpc_client_destroy(ca);
    /* Nothing changed on either side... */
    vsnap_same(t.sa, "v", &sa);
    vsnap_same(t.sb, "v", &sb);
    vsnap_same(t.sa, "priv", &sp);
    /* ...and a keeps shipping to b. */
    uint64_t h2 = write_some(t.sa, "v", 5, 23);
    ASSERT(wait_applied(t.sb, "v", h2));
    images_equal(t.sa, t.sb, "v");
    struct jr_info ia;
    ASSERT_OK(jr_volume_stat(t.sa, "v", &ia));
    ASSERT_EQ(ia.role, JR_ROLE_PRIMARY);
    ASSERT_UEQ(ia.epoch, 1);
    teardown(&t);
    tls_pki_rm();
}

/* The real peer acts only on volumes whose peer it is, in the direction
 * the roles allow: b may not read, inspect or list the journal of a's
 * volume that is not replicated (or replicates elsewhere); a may not
 * delete, copy into or ship into b's secondary that did not come from
 * it, nor have a replica made of a volume that does not replicate
 * between them. */
TEST(link_acts_only_on_the_callers_volumes)
{
    struct two t;
    uint64_t head;
    trust_setup(&t, &head);
    /* a: "else" replicates to a region z, not to b. */
    struct jr_kv zkv[] = {{"csi.replication", "async"},
                          {"csi.peer_region", "z"}};
    struct jr_create_opts zo = {.size = 1u << 20, .object_size = 64u << 10,
                                .role = JR_ROLE_PRIMARY, .region = "a",
                                .meta = zkv, .n_meta = 2};
    ASSERT_OK(jr_volume_create(t.sa, "else", &zo));
    write_some(t.sa, "else", 4, 24);
    /* b: a secondary that is nobody's replica, with data. */
    struct jr_create_opts so = {.size = 1u << 20, .object_size = 64u << 10,
                                .role = JR_ROLE_SECONDARY, .region = "b"};
    ASSERT_OK(jr_volume_create(t.sb, "bsec", &so));
    uint8_t buf[65536];
    fill(buf, sizeof(buf), 25);
    ASSERT_OK(jr_image_write(t.sb, "bsec", 0, buf, sizeof(buf)));
    struct vsnap s1, s2, s3;
    vsnap_take(t.sa, "priv", &s1);
    vsnap_take(t.sa, "else", &s2);
    vsnap_take(t.sb, "bsec", &s3);
    char msg[512];
    struct link_reqs q;

    /* b's identity against a. */
    rpc_client *cb = tls_client("b", t.pa);
    const char *ids[] = {"priv", "else"};
    for (int i = 0; i < 2; i++) {
        link_reqs_init(&q, ids[i], "b", "a");
        ASSERT_EQ(link_call(cb, "ReadRegions", &q.rregions.base,
                            &tandem__repl__v1__read_regions_response__descriptor,
                            NULL, msg, sizeof(msg)), RPC_PERMISSION_DENIED);
        ASSERT(strstr(msg, "is not replicated with region b") != NULL);
        ASSERT_EQ(link_call(cb, "GetVolume", &q.getvol.base,
                            &tandem__repl__v1__get_volume_response__descriptor,
                            NULL, msg, sizeof(msg)), RPC_PERMISSION_DENIED);
        ASSERT_EQ(link_call(cb, "JournalRegions", &q.jregions.base,
                            &tandem__repl__v1__journal_regions_response__descriptor,
                            NULL, msg, sizeof(msg)), RPC_PERMISSION_DENIED);
    }
    /* The replicated one is b's business: it reads it. */
    link_reqs_init(&q, "v", "b", "a");
    ProtobufCMessage *o = NULL;
    ASSERT_EQ(link_call(cb, "ReadRegions", &q.rregions.base,
                        &tandem__repl__v1__read_regions_response__descriptor,
                        &o, msg, sizeof(msg)), RPC_OK);
    ASSERT_UEQ(((Tandem__Repl__V1__ReadRegionsResponse *)o)->n_regions, 1);
    protobuf_c_message_free_unpacked(o, NULL);
    rpc_client_destroy(cb);

    /* a's identity against b. */
    rpc_client *ca = tls_client("a", t.pb);
    link_reqs_init(&q, "bsec", "a", "b");
    q.ship.epoch = 1;
    q.copy.epoch = 1;
    q.delrep.epoch = UINT64_MAX;
    ASSERT_EQ(link_call(ca, "DeleteReplica", &q.delrep.base,
                        &tandem__repl__v1__delete_replica_response__descriptor,
                        NULL, msg, sizeof(msg)), RPC_PERMISSION_DENIED);
    ASSERT(strstr(msg, "is not replicated with region a") != NULL);
    ASSERT_EQ(link_call(ca, "CopyRegions", &q.copy.base,
                        &tandem__repl__v1__copy_regions_response__descriptor,
                        NULL, msg, sizeof(msg)), RPC_PERMISSION_DENIED);
    ASSERT_EQ(link_call(ca, "ShipBatch", &q.ship.base,
                        &tandem__repl__v1__ship_batch_response__descriptor,
                        NULL, msg, sizeof(msg)), RPC_PERMISSION_DENIED);
    ASSERT_EQ(link_call(ca, "GetVolume", &q.getvol.base,
                        &tandem__repl__v1__get_volume_response__descriptor,
                        NULL, msg, sizeof(msg)), RPC_PERMISSION_DENIED);
    /* A replica of a volume that does not replicate between a and b is
     * never made: peer region z, or no replication at all. */
    Tandem__Repl__V1__VolumeSpec__MetaEntry e[2] = {
        TANDEM__REPL__V1__VOLUME_SPEC__META_ENTRY__INIT,
        TANDEM__REPL__V1__VOLUME_SPEC__META_ENTRY__INIT};
    Tandem__Repl__V1__VolumeSpec__MetaEntry *ep[2] = {&e[0], &e[1]};
    e[0].key = "csi.replication";
    e[0].value = "async";
    e[1].key = "csi.peer_region";
    e[1].value = "z";
    const char *news[] = {"new-z", "new-none"};
    for (int i = 0; i < 2; i++) {
        link_reqs_init(&q, news[i], "a", "b");
        q.ship.epoch = 1;
        q.copy.epoch = 1;
        q.spec.meta = ep;
        q.spec.n_meta = i == 0 ? 2 : 0;
        ASSERT_EQ(link_call(ca, "ShipBatch", &q.ship.base,
                            &tandem__repl__v1__ship_batch_response__descriptor,
                            NULL, msg, sizeof(msg)), RPC_PERMISSION_DENIED);
        ASSERT(strstr(msg, "no replica made") != NULL);
        ASSERT_EQ(link_call(ca, "CopyRegions", &q.copy.base,
                            &tandem__repl__v1__copy_regions_response__descriptor,
                            NULL, msg, sizeof(msg)), RPC_PERMISSION_DENIED);
        struct jr_info x;
        ASSERT_EQ(jr_volume_stat(t.sb, news[i], &x), -ENOENT);
    }
    rpc_client_destroy(ca);
    vsnap_same(t.sa, "priv", &s1);
    vsnap_same(t.sa, "else", &s2);
    vsnap_same(t.sb, "bsec", &s3);
    teardown(&t);
    tls_pki_rm();
}

/* A higher epoch is adopted only from a sender whose copy is primary;
 * and a primary is fenced or demoted only by a peer whose copy is
 * primary at a higher epoch.  Once, a probe at epoch 1000 made b's
 * secondary adopt it, and a's sender then fenced its own primary. */
TEST(only_a_primary_at_a_higher_epoch_fences)
{
    struct two t;
    uint64_t head;
    trust_setup(&t, &head);
    struct link_reqs q;
    char msg[512];
    rpc_client *ca = tls_client("a", t.pb);
    /* A probe that does not say the sender's copy is primary. */
    link_reqs_init(&q, "v", "a", "b");
    q.ship.spec = NULL;
    q.ship.from_primary = 0;
    ProtobufCMessage *o = NULL;
    ASSERT_EQ(link_call(ca, "ShipBatch", &q.ship.base,
                        &tandem__repl__v1__ship_batch_response__descriptor,
                        &o, msg, sizeof(msg)), RPC_OK);
    Tandem__Repl__V1__ShipBatchResponse *sr = (void *)o;
    ASSERT_EQ(sr->result, RES(ERROR));
    ASSERT(strstr(sr->message, "not adopted") != NULL);
    protobuf_c_message_free_unpacked(o, NULL);
    struct jr_info ib, ia;
    ASSERT_OK(jr_volume_stat(t.sb, "v", &ib));
    ASSERT_UEQ(ib.epoch, 1);
    ASSERT_EQ(ib.role, JR_ROLE_SECONDARY);
    /* Say b's secondary does hold epoch 1000 (adopted from a probe that
     * claimed a primary).  a's sender then meets STALE_EPOCH answers
     * from a secondary: no reason to fence its primary. */
    q.ship.from_primary = 1;
    ASSERT_EQ(link_call(ca, "ShipBatch", &q.ship.base,
                        &tandem__repl__v1__ship_batch_response__descriptor,
                        NULL, msg, sizeof(msg)), RPC_OK);
    ASSERT_OK(jr_volume_stat(t.sb, "v", &ib));
    ASSERT_UEQ(ib.epoch, 1000);
    rpc_client_destroy(ca);
    write_some(t.sa, "v", 3, 26); /* a's sender ships, b refuses */
    struct rep_vstat st;
    int seen = 0;
    for (int i = 0; i < 3000 && !seen; i++) {
        rep__vol_status(t.a, "v", &st);
        seen = strstr(st.last_error, "but not primary") != NULL;
        ASSERT_OK(jr_volume_stat(t.sa, "v", &ia));
        if (ia.role != JR_ROLE_PRIMARY) break; /* fenced: fails below */
        if (!seen) usleep(10000);
    }
    ASSERT_OK(jr_volume_stat(t.sa, "v", &ia));
    ASSERT_EQ(ia.role, JR_ROLE_PRIMARY);
    ASSERT_UEQ(ia.epoch, 1);
    char *split = NULL;
    ASSERT_EQ(jr_meta_get(t.sa, "v", REP_META_SPLIT, &split), -ENOENT);
    ASSERT(seen);
    /* The copy path's refusals say the role too (rep_copy.c once called
     * every refuser primary). */
    Tandem__Repl__V1__CopyRegionsRequest cq =
        TANDEM__REPL__V1__COPY_REGIONS_REQUEST__INIT;
    cq.volume_id = "v";
    cq.from_region = "a";
    cq.epoch = 1;
    cq.from_primary = 1;
    cq.copy_id = "c1";
    cq.begin = 1;
    ca = tls_client("a", t.pb);
    ASSERT_EQ(link_call(ca, "CopyRegions", &cq.base,
                        &tandem__repl__v1__copy_regions_response__descriptor,
                        &o, msg, sizeof(msg)), RPC_OK);
    Tandem__Repl__V1__CopyRegionsResponse *cr = (void *)o;
    ASSERT_EQ(cr->result, RES(STALE_EPOCH));
    ASSERT_STREQ(cr->role, "secondary");
    protobuf_c_message_free_unpacked(o, NULL);
    rpc_client_destroy(ca);
    /* A primary at a higher epoch is a reason: b promoted (epoch 1001),
     * a's sender steps down or fences. */
    int changed;
    ASSERT_EQ(rep__promote(t.b, "v", 1, &changed, msg, sizeof(msg)), RPC_OK);
    for (int i = 0; i < 3000; i++) {
        ASSERT_OK(jr_volume_stat(t.sa, "v", &ia));
        if (ia.role != JR_ROLE_PRIMARY) break;
        usleep(10000);
    }
    ASSERT_EQ(ia.role, JR_ROLE_SECONDARY);
    teardown(&t);
    tls_pki_rm();
}

/* Admin call over TCP as client name; returns the code. */
static int admin_tcp_call(int port, const char *name, const char *method,
                          const ProtobufCMessage *q,
                          const ProtobufCMessageDescriptor *d, char *msg,
                          size_t msz)
{
    rpc_client *c = tls_client(name, port);
    char path[128];
    ProtobufCMessage *o = NULL;
    snprintf(path, sizeof(path), "/tandem.admin.v1.Admin/%s", method);
    int code = rpc_client_call(c, path, q, d, &o, 10000, 1, msg, msz);
    if (o) protobuf_c_message_free_unpacked(o, NULL);
    rpc_client_destroy(c);
    return code;
}

/* The admin API over TCP takes only the admin identity: the peer
 * replicator's certificate (same CA) cannot run Status, a third region's
 * cannot Promote --force, nor can certificates without a URI or of
 * another trust domain; the admin certificate can.  The unix socket is
 * created 0600. */
TEST(admin_tcp_takes_only_the_admin_identity)
{
    struct two t;
    tls_pki();
    setup(&t, 0); /* b only */
    struct jr_kv kv[] = {{"csi.replication", "async"},
                         {"csi.peer_region", "b"},
                         {REP_META_PEER, "a"}};
    struct jr_create_opts so = {.size = 1u << 20, .object_size = 64u << 10,
                                .role = JR_ROLE_SECONDARY, .region = "b",
                                .meta = kv, .n_meta = 3};
    ASSERT_OK(jr_volume_create(t.sb, "v", &so));
    int port = g_admin_port[1];
    char msg[512];
    Tandem__Admin__V1__StatusRequest sq = TANDEM__ADMIN__V1__STATUS_REQUEST__INIT;
    Tandem__Admin__V1__PromoteRequest pq =
        TANDEM__ADMIN__V1__PROMOTE_REQUEST__INIT;
    pq.volume_id = "v";
    pq.force = 1;
    const char *who[] = {"a", "b", "c", "nouri", "twouri", "xadmin"};
    for (size_t i = 0; i < sizeof(who) / sizeof(who[0]); i++) {
        ASSERT_EQ(admin_tcp_call(port, who[i], "Status", &sq.base,
                                 &tandem__admin__v1__status_response__descriptor,
                                 msg, sizeof(msg)), RPC_PERMISSION_DENIED);
        ASSERT(strstr(msg, "takes only spiffe://tandem.local/tandem/admin"));
        ASSERT_EQ(admin_tcp_call(port, who[i], "Promote", &pq.base,
                                 &tandem__admin__v1__promote_response__descriptor,
                                 msg, sizeof(msg)), RPC_PERMISSION_DENIED);
    }
    struct jr_info ib;
    ASSERT_OK(jr_volume_stat(t.sb, "v", &ib));
    ASSERT_EQ(ib.role, JR_ROLE_SECONDARY);
    ASSERT_UEQ(ib.epoch, 1);
    ASSERT_EQ(admin_tcp_call(port, "admin", "Status", &sq.base,
                             &tandem__admin__v1__status_response__descriptor,
                             msg, sizeof(msg)), RPC_OK);
    /* The unix socket: mode 0600, and served. */
    char path[400];
    snprintf(path, sizeof(path), "%s/b.sock", g_pki);
    struct stat sb;
    ASSERT_OK(stat(path, &sb));
    ASSERT_EQ(sb.st_mode & 07777, 0600);
    char target[420];
    snprintf(target, sizeof(target), "unix://%s", path);
    rpc_client *u;
    ASSERT_OK(rpc_client_create(target, NULL, &u));
    ProtobufCMessage *o = NULL;
    ASSERT_EQ(rpc_client_call(u, "/tandem.admin.v1.Admin/Status", &sq.base,
                              &tandem__admin__v1__status_response__descriptor,
                              &o, 10000, 1, msg, sizeof(msg)), RPC_OK);
    protobuf_c_message_free_unpacked(o, NULL);
    rpc_client_destroy(u);
    teardown(&t);
    tls_pki_rm();
}

/* The options around identities: --admin-socket-mode (owner and group
 * bits only), admin TCP never plaintext, the trust domain's form. */
TEST(trust_options)
{
    struct two t;
    tls_pki();
    setup(&t, 0);
    rep_destroy(t.b);
    t.b = NULL;
    char err[512], sock[400], atcp[64], ca[400], cert[400], key[400];
    snprintf(sock, sizeof(sock), "unix://%s/m.sock", g_pki);
    snprintf(atcp, sizeof(atcp), "127.0.0.1:%d", g_admin_port[1]);
    snprintf(ca, sizeof(ca), "%s/ca.pem", g_pki);
    snprintf(cert, sizeof(cert), "%s/b.pem", g_pki);
    snprintf(key, sizeof(key), "%s/b.key", g_pki);
    struct rep_opts o = {.config_path = t.conf, .region = "b",
                         .peer_region = "a", .insecure = 1,
                         .admin_addr = sock, .admin_socket_mode = 0660};
    rep_ctx *r = NULL;
    ASSERT_OK(rep_create(&o, &r, err, sizeof(err)));
    ASSERT_OK(rep_start(r, err, sizeof(err)));
    struct stat sb;
    ASSERT_OK(stat(sock + strlen("unix://"), &sb));
    ASSERT_EQ(sb.st_mode & 07777, 0660);
    rep_destroy(r);
    o.admin_socket_mode = 0666;
    ASSERT_EQ(rep_create(&o, &r, err, sizeof(err)), -EINVAL);
    ASSERT(strstr(err, "--admin-socket-mode") != NULL);
    o.admin_socket_mode = 0;
    /* Admin TCP with nothing to do TLS with: refused, even --insecure. */
    o.admin_tcp = atcp;
    ASSERT_EQ(rep_create(&o, &r, err, sizeof(err)), -EINVAL);
    ASSERT(strstr(err, "--admin-tcp needs mutual TLS") != NULL);
    /* ...with the admin TLS flags alone it is fine. */
    o.admin_tls_ca = ca;
    o.admin_tls_cert = cert;
    o.admin_tls_key = key;
    ASSERT_OK(rep_create(&o, &r, err, sizeof(err)));
    rep_destroy(r);
    o.trust_domain = "Bad/Domain";
    ASSERT_EQ(rep_create(&o, &r, err, sizeof(err)), -EINVAL);
    ASSERT(strstr(err, "--trust-domain") != NULL);
    teardown(&t);
    tls_pki_rm();
}

/* The link client checks the server's identity too: a replicator dials
 * its peer and sends batches only to a server whose certificate names the
 * peer region.  A third region's certificate of the same CA on the peer's
 * address (a redirected name, a hijacked address) gets nothing: no
 * replica, and no answer of its can fence a's primary. */
TEST(link_client_checks_the_servers_identity)
{
    struct two t;
    tls_pki();
    setup(&t, 0);
    char ca[400], cert[400], key[400], addr[64], msg[512];
    snprintf(ca, sizeof(ca), "%s/ca.pem", g_pki);
    snprintf(cert, sizeof(cert), "%s/a.pem", g_pki);
    snprintf(key, sizeof(key), "%s/a.key", g_pki);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", t.pb);
    Tandem__Repl__V1__HelloRequest hq = TANDEM__REPL__V1__HELLO_REQUEST__INIT;
    hq.region = "a";
    hq.peer_region = "b";
    const char *want[] = {"spiffe://tandem.local/tandem/region/b",
                          "spiffe://tandem.local/tandem/region/a",
                          "spiffe://tandem.local/tandem/region/b/x"};
    for (int i = 0; i < 3; i++) {
        struct rpc_tls tls = {ca, cert, key, NULL, want[i]};
        rpc_client *c;
        ASSERT_OK(rpc_client_create(addr, &tls, &c));
        ProtobufCMessage *o = NULL;
        int code = rpc_client_call(c, "/tandem.repl.v1.Link/Hello", &hq.base,
                                   &tandem__repl__v1__hello_response__descriptor,
                                   &o, 10000, 0, msg, sizeof(msg));
        if (o) protobuf_c_message_free_unpacked(o, NULL);
        ASSERT_EQ(code, i == 0 ? RPC_OK : RPC_UNAVAILABLE);
        rpc_client_destroy(c);
    }
    /* An impostor at b's address: region b's replicator software with
     * region c's certificate. */
    rep_destroy(t.b);
    t.b = NULL;
    char cmd[1400];
    snprintf(cmd, sizeof(cmd), "cd '%s' && cp c.pem b.pem && cp c.key b.key",
             g_pki);
    ASSERT_EQ(system(cmd), 0);
    t.b = start(&t, "b", "a");
    t.a = start(&t, "a", "b");
    create_primary(t.sa, "v", 1u << 20);
    write_some(t.sa, "v", 5, 27);
    struct rep_vstat st;
    struct jr_info x, ia;
    int seen = 0;
    for (int i = 0; i < 1000 && !seen; i++) {
        rep__vol_status(t.a, "v", &st);
        seen = strstr(st.last_error, "UNAVAILABLE") != NULL;
        if (jr_volume_stat(t.sb, "v", &x) == 0) break; /* shipped: fails */
        if (!seen) usleep(10000);
    }
    usleep(500000);
    ASSERT_EQ(jr_volume_stat(t.sb, "v", &x), -ENOENT); /* nothing shipped */
    ASSERT(seen);
    ASSERT_OK(jr_volume_stat(t.sa, "v", &ia));
    ASSERT_EQ(ia.role, JR_ROLE_PRIMARY);
    ASSERT_UEQ(ia.epoch, 1);
    ASSERT_EQ(rep__peer_hello(t.a, msg, sizeof(msg)), -ENOTCONN);
    teardown(&t);
    tls_pki_rm();
}

/* ---- a damaged journal through the admin API (R-37) ---- */

/* One admin call on REGION's unix socket (g_pki set); the answer in *out
 * (NULL: freed). */
static int admin_unix(const char *region, const char *method,
                      const ProtobufCMessage *q,
                      const ProtobufCMessageDescriptor *d,
                      ProtobufCMessage **out, char *msg, size_t msz)
{
    char target[420], path[128];
    snprintf(target, sizeof(target), "unix://%s/%s.sock", g_pki, region);
    snprintf(path, sizeof(path), "/tandem.admin.v1.Admin/%s", method);
    rpc_client *u;
    ASSERT_OK(rpc_client_create(target, NULL, &u));
    ProtobufCMessage *o = NULL;
    int code = rpc_client_call(u, path, q, d, &o, 60000, 1, msg, msz);
    rpc_client_destroy(u);
    if (out)
        *out = o;
    else if (o)
        protobuf_c_message_free_unpacked(o, NULL);
    return code;
}

static int copylist_none_cb(uint64_t off, uint64_t len, void *arg)
{
    (void)off;
    (void)len;
    (void)arg;
    return 0;
}

#define ENT16 (64 + 16384) /* a write_some entry (16 KiB, incompressible) */

/* As if the writer died before applying past `applied`: entry `seq`'s
 * payload has a flipped byte. */
static void damage_entry(st_store *st, const char *id, uint64_t seq,
                         uint64_t applied)
{
    char oid[JR_OID_MAX], hoid[JR_OID_MAX], v[64];
    uint64_t at = (seq - 1) * ENT16 + 64 + 100;
    uint8_t c;
    jr__oid_journal(oid, sizeof(oid), id, 0);
    ASSERT_EQ(st_read(st, oid, at, &c, 1), 1);
    c ^= 0x10;
    ASSERT_OK(st_write(st, oid, at, &c, 1));
    struct jr_info i;
    ASSERT_OK(jr_volume_stat(st, id, &i));
    jr__oid_header(hoid, sizeof(hoid), id);
    int l = snprintf(v, sizeof(v), "%" PRIu64 " %" PRIu64, applied, i.size);
    ASSERT_OK(st_omap_set(st, hoid, "applied", v, (size_t)l));
}

static int check_journal(const char *region, const char *id,
                         Tandem__Admin__V1__CheckJournalResponse **r,
                         char *msg, size_t msz)
{
    Tandem__Admin__V1__CheckJournalRequest q =
        TANDEM__ADMIN__V1__CHECK_JOURNAL_REQUEST__INIT;
    q.volume_id = (char *)id;
    return admin_unix(region, "CheckJournal", &q.base,
                      &tandem__admin__v1__check_journal_response__descriptor,
                      (ProtobufCMessage **)r, msg, msz);
}

static int discard_tail(const char *region, const char *id, uint64_t seq,
                        Tandem__Admin__V1__DiscardJournalTailResponse **r,
                        char *msg, size_t msz)
{
    Tandem__Admin__V1__DiscardJournalTailRequest q =
        TANDEM__ADMIN__V1__DISCARD_JOURNAL_TAIL_REQUEST__INIT;
    q.volume_id = (char *)id;
    q.bad_seq = seq;
    return admin_unix(region, "DiscardJournalTail", &q.base,
                      &tandem__admin__v1__discard_journal_tail_response__descriptor,
                      (ProtobufCMessage **)r, msg, msz);
}

/* CheckJournal and DiscardJournalTail: the damage as jr_journal_check
 * finds it, every refusal in the operator's words (wrong seq, bad
 * arguments, a peer that acknowledged past the damage: and then no copy
 * is left scheduled), the damage in Status once a writable open met it,
 * the discard; over TCP only the admin identity. */
/* ---- snapshots ship (issue 10) ---- */

struct snaplist {
    struct jr_snap s[8];
    int n;
};

static int snaplist_cb(const struct jr_snap *sn, void *arg)
{
    struct snaplist *l = arg;
    if (l->n < 8) l->s[l->n] = *sn;
    l->n++;
    return 0;
}

static void snaps_of(st_store *st, const char *id, struct snaplist *l)
{
    memset(l, 0, sizeof(*l));
    ASSERT_OK(jr_snap_list(st, id, snaplist_cb, l));
}

static void snap_bytes_equal(st_store *a, st_store *b, const char *id,
                             const char *snap, uint64_t size)
{
    uint8_t *x = malloc(size), *y = malloc(size);
    ASSERT_OK(jr_snap_read(a, id, snap, 0, x, size));
    ASSERT_OK(jr_snap_read(b, id, snap, 0, y, size));
    ASSERT_MEMEQ(x, y, size);
    free(x);
    free(y);
}

static int regions_none_cb(uint64_t off, uint64_t len, void *arg)
{
    (*(int *)arg)++;
    (void)off;
    (void)len;
    return 0;
}

/* Snapshot entries (kinds 5 and 6) ship as they are: the replica takes
 * and deletes the same snapshots at the same positions, with the same
 * labels and bytes; a batch that holds only snapshot entries touches no
 * region (the copy window's undo). */
TEST(snapshots_ship_with_the_journal)
{
    struct two t;
    setup(&t, 1);
    create_primary(t.sa, "sv", 1u << 20);
    jr_volume *v;
    ASSERT_OK(jr_open(t.sa, "sv", JR_OPEN_WRITE | JR_OPEN_FORCE, "test", &v));
    uint8_t buf[65536];
    struct jr_snap s1, s2, s3;
    /* Compressible writes: the batches go as LZ4. */
    memset(buf, 'a', sizeof(buf));
    ASSERT_OK(jr_write(v, 0, buf, sizeof(buf)));
    ASSERT_OK(jr_snapshot(v, "s1", "namespace=shop name=nightly content=c1",
                          &s1));
    memset(buf, 'b', sizeof(buf));
    ASSERT_OK(jr_write(v, 32768, buf, sizeof(buf)));
    ASSERT_OK(jr_snapshot(v, "s2", NULL, &s2));
    ASSERT_OK(jr_snapshot(v, "s3", "x", &s3));
    fill(buf, sizeof(buf), 5);
    ASSERT_OK(jr_write(v, 0, buf, sizeof(buf)));
    struct jr_info i;
    ASSERT_OK(jr_get_info(v, &i));
    ASSERT_OK(jr_close(v));
    ASSERT_OK(jr_snap_delete(t.sa, "sv", "s2", 5000));
    uint64_t h = i.head + 1; /* the delete entry */
    ASSERT(wait_applied(t.sb, "sv", h));
    struct rep_vstat st;
    struct snaplist la, lb;
    snaps_of(t.sa, "sv", &la);
    snaps_of(t.sb, "sv", &lb);
    ASSERT_EQ(la.n, 2);
    ASSERT_EQ(lb.n, 2);
    for (int k = 0; k < 2; k++) {
        ASSERT_STREQ(lb.s[k].snap_id, la.s[k].snap_id);
        ASSERT_STREQ(lb.s[k].label, la.s[k].label);
        ASSERT_UEQ(lb.s[k].seq, la.s[k].seq);
        ASSERT_UEQ(lb.s[k].size, la.s[k].size);
        ASSERT_EQ(lb.s[k].ts_ns, la.s[k].ts_ns);
        snap_bytes_equal(t.sa, t.sb, "sv", la.s[k].snap_id, la.s[k].size);
    }
    ASSERT_STREQ(lb.s[0].snap_id, "s1");
    ASSERT_STREQ(lb.s[0].label, "namespace=shop name=nightly content=c1");
    ASSERT_UEQ(lb.s[0].seq, s1.seq);
    ASSERT_STREQ(lb.s[1].snap_id, "s3");
    struct jr_snap g;
    ASSERT_EQ(jr_snap_get(t.sb, "sv", "s2", &g), -ENOENT);
    /* s1 holds 'a' where later writes put 'b' and random bytes. */
    uint8_t rd[4096];
    ASSERT_OK(jr_snap_read(t.sb, "sv", "s1", 32768, rd, sizeof(rd)));
    for (size_t k = 0; k < sizeof(rd); k++) ASSERT_EQ(rd[k], 'a');
    images_equal(t.sa, t.sb, "sv");
    /* Status counts them on both sides. */
    rep__vol_status(t.b, "sv", &st);
    ASSERT_EQ(st.n_snaps, 2);
    ASSERT_UEQ(st.snap_gap_first, 0);
    /* The regions of a batch of snapshot entries alone: none. */
    struct jr_batch b = {0};
    ASSERT_OK(jr_tail_read(t.sa, "sv", s2.seq, 1u << 20, &b));
    ASSERT_UEQ(b.first_seq, s2.seq);
    int nreg = 0;
    /* s2, s3: snapshot entries only. */
    struct jr_batch b2 = {0};
    ASSERT_OK(jr_tail_read(t.sa, "sv", s2.seq, 1, &b2));
    ASSERT_OK(jr_batch_regions(b2.data, b2.len, regions_none_cb, &nreg));
    ASSERT_EQ(nreg, 0);
    ASSERT_OK(jr_batch_verify(b.data, b.len, NULL, NULL, NULL));
    jr_batch_free(&b);
    jr_batch_free(&b2);
    teardown(&t);
}

/* The same through the LZ4 batch path (the sender compresses a batch as
 * a whole when that saves 1/8): a's sender played through a client of
 * b's Link, so the batch is known to go compressed. */
/* Compress once (issue 12): a batch is the journal's entries as stored;
 * payloads the journal compressed are not compressed again, plain ones
 * are sampled before a full pass, and what is still worth it (headers,
 * small compressible writes the journal leaves plain) is compressed as
 * before.  A batch left plain ships as COMPRESSION_NONE, which every
 * receiver (also one older than this change) decodes and applies. */
TEST(batch_compressed_once)
{
    struct two t;
    rpc_client *c = as_sender(&t);
    create_primary(t.sa, "co", 8u << 20);
    jr_volume *v;
    ASSERT_OK(jr_open(t.sa, "co", JR_OPEN_WRITE | JR_OPEN_FORCE, "test", &v));
    /* 1: 2:1 compressible 64 KiB writes (128 random bytes, 128 zeros,
     * as rep-bench's): the journal stores them as LZ4. */
    uint8_t buf[65536];
    for (int k = 0; k < 8; k++) {
        fill(buf, sizeof(buf), 300 + (uint64_t)k);
        for (size_t i = 128; i < sizeof(buf); i += 256) memset(buf + i, 0, 128);
        ASSERT_OK(jr_write(v, (uint64_t)k * sizeof(buf), buf, sizeof(buf)));
    }
    /* 2: incompressible 64 KiB writes: stored plain. */
    for (int k = 0; k < 8; k++) {
        fill(buf, sizeof(buf), 7 + (uint64_t)k);
        ASSERT_OK(jr_write(v, (1u << 20) + (uint64_t)k * sizeof(buf), buf,
                           sizeof(buf)));
    }
    /* 3: small compressible writes (the journal leaves < 512 bytes). */
    memset(buf, 'q', 400);
    for (int k = 0; k < 64; k++)
        ASSERT_OK(jr_write(v, (2u << 20) + (uint64_t)k * 4096, buf, 400));
    /* 4: discards only: headers. */
    for (int k = 0; k < 64; k++)
        ASSERT_OK(jr_discard(v, (3u << 20) + (uint64_t)k * 4096, 4096));
    ASSERT_OK(jr_close(v));
    struct jr_batch b[4] = {{0}};
    uint64_t from = 1;
    const uint32_t n[4] = {8, 8, 64, 64};
    for (int i = 0; i < 4; i++) {
        ASSERT_OK(jr_tail_read(t.sa, "co", from, 8u << 20, &b[i]));
        ASSERT_UEQ(b[i].first_seq, from);
        /* Cut the read to the group's entries. */
        size_t pos = 0;
        for (uint32_t k = 0; k < n[i]; k++) {
            uint32_t pl = 0;
            memcpy(&pl, b[i].data + pos + 40, 4);
            pos += 64 + pl;
        }
        b[i].len = pos;
        b[i].n_entries = n[i];
        b[i].last_seq = from + n[i] - 1;
        from += n[i];
    }
    /* The journal compressed group 1's payloads (flag bit 0, byte 6). */
    ASSERT_EQ(b[0].data[6] & 1, 1);
    ASSERT_EQ(b[1].data[6] & 1, 0);
    void *z = NULL;
    size_t zl = 0;
    /* Neither spends a full pass on its data. */
    uint64_t passes = rep__lz4_passes();
    ASSERT_EQ(rep__lz4_batch(b[0].data, b[0].len, &z, &zl), 0);
    ASSERT(z == NULL);
    ASSERT_EQ(rep__lz4_batch(b[1].data, b[1].len, &z, &zl), 0);
    ASSERT(z == NULL);
    ASSERT_UEQ(rep__lz4_passes(), passes);
    /* A batch whose walk does not end at len is not sampled: rep__lz4
     * decides (its own probe of the start). */
    ASSERT_EQ(rep__lz4_batch(b[1].data, b[1].len - 1, &z, &zl), 0);
    for (int i = 2; i < 4; i++) {
        ASSERT_EQ(rep__lz4_batch(b[i].data, b[i].len, &z, &zl), 1);
        void *d = NULL;
        ASSERT_OK(rep__unlz4(z, zl, b[i].len, &d));
        ASSERT_MEMEQ(d, b[i].data, b[i].len);
        free(d);
        free(z);
        z = NULL;
    }
    /* Large plain input that does not compress: the probe decides. */
    uint8_t *big = malloc(1u << 20);
    ASSERT(big != NULL);
    fill(big, 1u << 20, 99);
    passes = rep__lz4_passes();
    ASSERT_EQ(rep__lz4(big, 1u << 20, &z, &zl), 0);
    memset(big + 65536, 0, (1u << 20) - 65536); /* compressible past 64K */
    ASSERT_EQ(rep__lz4(big, 1u << 20, &z, &zl), 0); /* probe: start only */
    ASSERT_UEQ(rep__lz4_passes(), passes);
    memset(big, 0, 65536);
    ASSERT_EQ(rep__lz4(big, 1u << 20, &z, &zl), 1);
    free(z);
    free(big);
    /* The groups, shipped as the sender now does (NONE for 1 and 2, LZ4
     * for 3 and 4), apply in order on the receiver. */
    Tandem__Repl__V1__VolumeSpec spec = TANDEM__REPL__V1__VOLUME_SPEC__INIT;
    spec_replicated(&spec);
    spec.size = 8u << 20;
    spec.object_size = 64u << 10;
    spec.start_seq = 1;
    for (int i = 0; i < 4; i++) {
        Tandem__Repl__V1__ShipBatchRequest q =
            TANDEM__REPL__V1__SHIP_BATCH_REQUEST__INIT;
        q.volume_id = "co";
        q.from_region = "a";
        q.epoch = 1;
        q.from_primary = 1;
        q.spec = &spec;
        q.first_seq = b[i].first_seq;
        q.last_seq = b[i].last_seq;
        q.n_entries = b[i].n_entries;
        q.raw_len = b[i].len;
        q.primary_head = b[3].last_seq;
        z = NULL;
        int zc = rep__lz4_batch(b[i].data, b[i].len, &z, &zl);
        ASSERT_EQ(zc, i >= 2);
        q.compression = zc ? TANDEM__REPL__V1__COMPRESSION__COMPRESSION_LZ4
                           : TANDEM__REPL__V1__COMPRESSION__COMPRESSION_NONE;
        q.entries.data = zc ? z : b[i].data;
        q.entries.len = zc ? zl : b[i].len;
        Tandem__Repl__V1__ShipBatchResponse *r = ship(c, &q);
        ASSERT_EQ(r->result, RES(OK));
        ASSERT_UEQ(r->applied, b[i].last_seq);
        protobuf_c_message_free_unpacked(&r->base, NULL);
        free(z);
    }
    images_equal(t.sa, t.sb, "co");
    for (int i = 0; i < 4; i++) jr_batch_free(&b[i]);
    rpc_client_destroy(c);
    teardown(&t);
}

TEST(snapshot_entries_in_an_lz4_batch)
{
    struct two t;
    rpc_client *c = as_sender(&t);
    create_primary(t.sa, "zv", 1u << 20);
    jr_volume *v;
    ASSERT_OK(jr_open(t.sa, "zv", JR_OPEN_WRITE | JR_OPEN_FORCE, "test", &v));
    uint8_t buf[16384];
    struct jr_snap sn;
    char id[16];
    for (int k = 0; k < 12; k++) {
        memset(buf, 'a' + k, sizeof(buf));
        ASSERT_OK(jr_write(v, (uint64_t)k * sizeof(buf), buf, sizeof(buf)));
        snprintf(id, sizeof(id), "z%d", k);
        ASSERT_OK(jr_snapshot(v, id, "namespace=shop name=every-hour", &sn));
    }
    ASSERT_OK(jr_close(v));
    for (int k = 0; k < 12; k += 2) {
        snprintf(id, sizeof(id), "z%d", k);
        ASSERT_OK(jr_snap_delete(t.sa, "zv", id, 5000));
    }
    struct jr_batch b = {0};
    ASSERT_OK(jr_tail_read(t.sa, "zv", 1, 8u << 20, &b));
    ASSERT_UEQ(b.n_entries, 12 * 2 + 6);
    void *z = NULL;
    size_t zl = 0;
    ASSERT_EQ(rep__lz4(b.data, b.len, &z, &zl), 1);

    Tandem__Repl__V1__VolumeSpec spec = TANDEM__REPL__V1__VOLUME_SPEC__INIT;
    spec_replicated(&spec);
    spec.size = 1u << 20;
    spec.object_size = 64u << 10;
    spec.start_seq = 1;
    Tandem__Repl__V1__ShipBatchRequest q =
        TANDEM__REPL__V1__SHIP_BATCH_REQUEST__INIT;
    q.volume_id = "zv";
    q.from_region = "a";
    q.epoch = 1;
    q.from_primary = 1;
    q.spec = &spec;
    q.first_seq = b.first_seq;
    q.last_seq = b.last_seq;
    q.n_entries = b.n_entries;
    q.raw_len = b.len;
    q.primary_head = b.last_seq;
    q.compression = TANDEM__REPL__V1__COMPRESSION__COMPRESSION_LZ4;
    q.entries.data = z;
    q.entries.len = zl;
    Tandem__Repl__V1__ShipBatchResponse *r = ship(c, &q);
    ASSERT_EQ(r->result, RES(OK));
    ASSERT_UEQ(r->applied, b.last_seq);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    struct snaplist la, lb;
    snaps_of(t.sa, "zv", &la);
    snaps_of(t.sb, "zv", &lb);
    ASSERT_EQ(la.n, 6);
    ASSERT_EQ(lb.n, 6);
    for (int k = 0; k < 6; k++) {
        ASSERT_STREQ(lb.s[k].snap_id, la.s[k].snap_id);
        ASSERT_UEQ(lb.s[k].seq, la.s[k].seq);
        ASSERT_STREQ(lb.s[k].label, "namespace=shop name=every-hour");
        snap_bytes_equal(t.sa, t.sb, "zv", la.s[k].snap_id, la.s[k].size);
    }
    /* z1 was taken after the writes of 'a' and 'b' only. */
    uint8_t rd[16384];
    ASSERT_OK(jr_snap_read(t.sb, "zv", "z1", sizeof(buf), rd, sizeof(rd)));
    for (size_t k = 0; k < sizeof(rd); k++) ASSERT_EQ(rd[k], 'b');
    ASSERT_OK(jr_snap_read(t.sb, "zv", "z1", 2 * sizeof(buf), rd, sizeof(rd)));
    for (size_t k = 0; k < sizeof(rd); k++) ASSERT_EQ(rd[k], 0);
    images_equal(t.sa, t.sb, "zv");
    free(z);
    jr_batch_free(&b);
    rpc_client_destroy(c);
    teardown(&t);
}

/* A peer caught up by a region copy misses the snapshot entries the
 * journal dropped: the replica records the positions it skipped and
 * status says its snapshots are incomplete (rep.h REP_META_SNAP_GAP). */
TEST(region_copy_marks_the_replicas_snapshots_incomplete)
{
    struct two t;
    setup(&t, 1);
    struct jr_kv kv[] = {{"csi.replication", "async"},
                         {"csi.peer_region", "b"}};
    struct jr_create_opts o = {.size = 8u << 20, .object_size = 256u << 10,
                               .role = JR_ROLE_PRIMARY, .region = "a",
                               .meta = kv, .n_meta = 2,
                               .journal_cap = 64u << 10};
    ASSERT_OK(jr_volume_create(t.sa, "gv", &o));
    uint64_t h0 = write_some(t.sa, "gv", 2, 1);
    ASSERT(wait_applied(t.sb, "gv", h0));
    rep_destroy(t.b);
    t.b = NULL;
    /* While b is away: a snapshot, then enough writes to roll journal
     * objects past the cap: its entry is trimmed (dirty tracking). */
    struct jr_snap sn;
    ASSERT_OK(jr_snap_create(t.sa, "gv", "lost", "name=lost", 5000, &sn));
    struct jr_info ia;
    int k;
    for (k = 0; k < 40; k++) {
        write_some(t.sa, "gv", 64, 100 + (uint64_t)k);
        ASSERT_OK(jr_trim(t.sa, "gv"));
        ASSERT_OK(jr_volume_stat(t.sa, "gv", &ia));
        if (ia.tail > sn.seq) break;
    }
    ASSERT_LT(k, 40);
    ASSERT_EQ(ia.dirty_tracking, 1);
    t.b = start(&t, "b", "a");
    ASSERT(wait_applied(t.sb, "gv", ia.head));
    images_equal(t.sa, t.sb, "gv");
    /* The primary keeps the snapshot; the replica never got it, and
     * says so. */
    struct snaplist l;
    snaps_of(t.sa, "gv", &l);
    ASSERT_EQ(l.n, 1);
    snaps_of(t.sb, "gv", &l);
    ASSERT_EQ(l.n, 0);
    struct rep_vstat st;
    rep__vol_status(t.b, "gv", &st);
    ASSERT_EQ(st.n_snaps, 0);
    ASSERT(st.snap_gap_first >= 1 && st.snap_gap_first <= sn.seq);
    ASSERT(st.snap_gap_last >= sn.seq);
    Tandem__Admin__V1__VolumeStatus *m = rep__admin_vstatus(t.b, "gv");
    ASSERT(m != NULL);
    ASSERT(strstr(m->snapshots_incomplete, "came by a region copy") != NULL);
    ASSERT_EQ(m->snapshot_count, 0);
    protobuf_c_message_free_unpacked(&m->base, NULL);
    m = rep__admin_vstatus(t.a, "gv");
    ASSERT_EQ(m->snapshot_count, 1);
    ASSERT_STREQ(m->snapshots_incomplete, "");
    protobuf_c_message_free_unpacked(&m->base, NULL);
    teardown(&t);
}

/* rep__position_set marks the positions whose snapshots a copy cannot
 * vouch for: moving back (a resync) past a snapshot it holds, and moving
 * forward (a region copy) over positions it never applied; the marks
 * merge into one range, and a rewind past no snapshot marks nothing. */
TEST(position_set_marks_snapshot_gaps)
{
    struct two t;
    setup(&t, 0);
    struct jr_create_opts o = {.size = 1u << 20, .object_size = 64u << 10,
                               .role = JR_ROLE_PRIMARY, .region = "a"};
    ASSERT_OK(jr_volume_create(t.sa, "pv", &o));
    jr_volume *v;
    ASSERT_OK(jr_open(t.sa, "pv", JR_OPEN_WRITE, "test", &v));
    uint8_t buf[4096];
    struct jr_snap sn;
    memset(buf, 1, sizeof(buf));
    ASSERT_OK(jr_write(v, 0, buf, sizeof(buf)));   /* 1 */
    ASSERT_OK(jr_write(v, 8192, buf, sizeof(buf))); /* 2 */
    ASSERT_OK(jr_snapshot(v, "p3", NULL, &sn));      /* 3 */
    ASSERT_UEQ(sn.seq, 3);
    ASSERT_OK(jr_write(v, 0, buf, sizeof(buf)));   /* 4 */
    ASSERT_OK(jr_close(v));
    o.role = JR_ROLE_SECONDARY;
    o.region = "b";
    ASSERT_OK(jr_volume_create(t.sb, "pv", &o));
    struct jr_batch b = {0};
    uint64_t ap = 0;
    ASSERT_OK(jr_tail_read(t.sa, "pv", 1, 1u << 20, &b));
    ASSERT_OK(jr_apply(t.sb, "pv", b.data, b.len, &ap));
    ASSERT_UEQ(ap, 4);
    jr_batch_free(&b);
    char *m = NULL;
    /* Back to 3: the snapshot at 3 is still common history. */
    ASSERT_OK(rep__position_set(t.b, "pv", 3));
    ASSERT_EQ(jr_meta_get(t.sb, "pv", REP_META_SNAP_GAP, &m), -ENOENT);
    /* Back to 2: it is not. */
    ASSERT_OK(rep__position_set(t.b, "pv", 2));
    ASSERT_OK(jr_meta_get(t.sb, "pv", REP_META_SNAP_GAP, &m));
    ASSERT_STREQ(m, "3 3");
    free(m);
    /* Forward to 9 (a region copy): 3..9. */
    ASSERT_OK(rep__position_set(t.b, "pv", 9));
    ASSERT_OK(jr_meta_get(t.sb, "pv", REP_META_SNAP_GAP, &m));
    ASSERT_STREQ(m, "3 9");
    free(m);
    struct rep_vstat st;
    rep__vol_status(t.b, "pv", &st);
    ASSERT_UEQ(st.snap_gap_first, 3);
    ASSERT_UEQ(st.snap_gap_last, 9);
    ASSERT_EQ(st.n_snaps, 1);
    teardown(&t);
}

/* ---- replication health (meta.rep.health, rep.h; issue 10) ---- */

/* Wait up to secs for the health key of id in st to show state want:
 * 1 with *since / peer / text (malloc'd) filled, 0 on timeout. */
static int health_wait(st_store *st, const char *id, enum rep_health want,
                       int secs, int64_t *since, char peer[RG_MAX_NAME + 1],
                       char **text)
{
    for (int i = 0; i < secs * 100; i++) {
        char *v = NULL;
        enum rep_health h;
        const char *tx;
        if (jr_meta_get(st, id, REP_META_HEALTH, &v) == 0) {
            ASSERT_OK(rep__health_parse(v, &h, since, peer, RG_MAX_NAME + 1,
                                        &tx));
            if (h == want) {
                if (text) *text = strdup(tx);
                free(v);
                return 1;
            }
        }
        free(v);
        usleep(10000);
    }
    return 0;
}

static void ack_wait(st_store *st, const char *id, uint64_t seq)
{
    uint64_t ack = 0;
    for (int i = 0; i < 3000 && ack < seq; i++) {
        jr_peer_ack_get(st, id, "b", &ack);
        if (ack < seq) usleep(10000);
    }
    ASSERT_UEQ(ack, seq);
}

TEST(health_parse_refuses_bad_values)
{
    enum rep_health h;
    int64_t since;
    char peer[RG_MAX_NAME + 1];
    const char *tx;
    ASSERT_OK(rep__health_parse("link-down 1700000000 b ship: UNAVAILABLE: x",
                                &h, &since, peer, sizeof(peer), &tx));
    ASSERT_EQ(h, REP_H_LINK_DOWN);
    ASSERT_EQ(since, 1700000000);
    ASSERT_STREQ(peer, "b");
    ASSERT_STREQ(tx, "ship: UNAVAILABLE: x");
    ASSERT_OK(rep__health_parse("ok 5 peer-x", &h, &since, peer, sizeof(peer),
                                &tx));
    ASSERT_EQ(h, REP_H_OK);
    ASSERT_STREQ(peer, "peer-x");
    ASSERT_STREQ(tx, "");
    const char *bad[] = {"", "ok", "ok 5", "fine 5 b x", "ok x b t",
                         "ok -1 b t", "ok 5  t", "ok 5x b t", "OK 5 b t"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ASSERT_EQ(rep__health_parse(bad[i], &h, NULL, NULL, 0, NULL), -EINVAL);
}

/* rep__health_set itself: a write only when the state changes; a new
 * writer (a restarted replicator) adopts the recorded state and its
 * since; the text is one line. */
TEST(health_set_writes_only_changes)
{
    struct two t;
    setup(&t, 0);
    struct jr_create_opts o = {.size = 1u << 20, .role = JR_ROLE_PRIMARY,
                               .region = "b"};
    ASSERT_OK(jr_volume_create(t.sb, "hs", &o));
    struct rep_health_rec h = {0}, h2 = {0}, h3 = {0};
    char *v = NULL, peer[RG_MAX_NAME + 1];
    const char *tx;
    enum rep_health st;
    int64_t since;
    ASSERT_OK(rep__health_set(t.b, "hs", &h, REP_H_COPYING, "full copy"));
    ASSERT_OK(jr_meta_get(t.sb, "hs", REP_META_HEALTH, &v));
    ASSERT_OK(rep__health_parse(v, &st, &since, peer, sizeof(peer), &tx));
    ASSERT_EQ(st, REP_H_COPYING);
    ASSERT_STREQ(peer, "a"); /* b's peer region */
    ASSERT_STREQ(tx, "full copy");
    ASSERT_EQ(since, h.since);
    free(v);
    /* Same state, other text: nothing written (the key is gone and stays
     * gone: no store access at all). */
    ASSERT_OK(jr_meta_rm(t.sb, "hs", REP_META_HEALTH));
    ASSERT_OK(rep__health_set(t.b, "hs", &h, REP_H_COPYING, "other"));
    ASSERT_EQ(jr_meta_get(t.sb, "hs", REP_META_HEALTH, &v), -ENOENT);
    ASSERT_OK(rep__health_set(t.b, "hs", &h, REP_H_OK, ""));
    ASSERT_OK(jr_meta_set(t.sb, "hs", REP_META_HEALTH,
                          "link-down 1000 a peer gone"));
    /* A new writer in the recorded state keeps it, since included. */
    ASSERT_OK(rep__health_set(t.b, "hs", &h2, REP_H_LINK_DOWN, "again"));
    ASSERT_EQ(h2.state, REP_H_LINK_DOWN);
    ASSERT_EQ(h2.since, 1000);
    ASSERT_OK(jr_meta_get(t.sb, "hs", REP_META_HEALTH, &v));
    ASSERT_STREQ(v, "link-down 1000 a peer gone");
    free(v);
    /* ... and one in another state writes it, on one line. */
    ASSERT_OK(rep__health_set(t.b, "hs", &h3, REP_H_SPLIT_BRAIN, "two\nlines"));
    ASSERT_OK(jr_meta_get(t.sb, "hs", REP_META_HEALTH, &v));
    ASSERT_OK(rep__health_parse(v, &st, &since, peer, sizeof(peer), &tx));
    ASSERT_EQ(st, REP_H_SPLIT_BRAIN);
    ASSERT_STREQ(tx, "two lines");
    ASSERT_GE(since, 1000);
    free(v);
    teardown(&t);
}

/* The sender records ok / link-down / split-brain in the volume's header
 * when the state changes, and never while it stays: a key removed behind
 * its back is not written again by batches that keep succeeding. */
TEST(health_key_follows_the_link_and_costs_nothing_when_steady)
{
    struct two t;
    char peer[RG_MAX_NAME + 1], *text = NULL;
    int64_t since = 0, since_down = 0;
    setup(&t, 1);
    create_primary(t.sa, "hv", 1u << 20);
    int64_t t0 = time(NULL);
    uint64_t h = write_some(t.sa, "hv", 5, 3);
    ASSERT(wait_applied(t.sb, "hv", h));
    ASSERT(health_wait(t.sa, "hv", REP_H_OK, 10, &since, peer, NULL));
    ASSERT_STREQ(peer, "b");
    ASSERT_GE(since, t0);
    ASSERT_LE(since, (int64_t)time(NULL));
    /* Never shipped: the replica has no such key. */
    char *m = NULL;
    ASSERT_EQ(jr_meta_get(t.sb, "hv", REP_META_HEALTH, &m), -ENOENT);

    /* Steady: batches keep being answered OK; nothing writes the key. */
    ASSERT_OK(jr_meta_rm(t.sa, "hv", REP_META_HEALTH));
    for (int k = 0; k < 3; k++) {
        h = write_some(t.sa, "hv", 4, 10 + (uint64_t)k);
        ack_wait(t.sa, "hv", h);
    }
    ASSERT_EQ(jr_meta_get(t.sa, "hv", REP_META_HEALTH, &m), -ENOENT);

    /* The peer goes away: link-down, with the reason and when. */
    rep_destroy(t.b);
    t.b = NULL;
    int64_t t1 = time(NULL);
    write_some(t.sa, "hv", 2, 20);
    ASSERT(health_wait(t.sa, "hv", REP_H_LINK_DOWN, 20, &since_down, peer,
                       &text));
    ASSERT_STREQ(peer, "b");
    ASSERT_GE(since_down, t1);
    ASSERT(strstr(text, "UNAVAILABLE") != NULL || strstr(text, "DEADLINE") != NULL);
    free(text);
    /* Down and retrying: the key (and its since) stays as written. */
    char *v1 = NULL, *v2 = NULL;
    ASSERT_OK(jr_meta_get(t.sa, "hv", REP_META_HEALTH, &v1));
    h = write_some(t.sa, "hv", 1, 21);
    struct rep_vstat vs;
    for (int i = 0; i < 500; i++) { /* a few more failed rounds */
        rep__vol_status(t.a, "hv", &vs);
        if (vs.link_state == REP_LINK_BACKOFF) break;
        usleep(10000);
    }
    ASSERT_OK(jr_meta_get(t.sa, "hv", REP_META_HEALTH, &v2));
    ASSERT_STREQ(v1, v2);
    free(v1);
    free(v2);

    /* Back: ok again, since the recovery. */
    t.b = start(&t, "b", "a");
    ASSERT(wait_applied(t.sb, "hv", h));
    ASSERT(health_wait(t.sa, "hv", REP_H_OK, 20, &since, peer, NULL));
    ASSERT_GE(since, since_down);

    /* b is promoted by force (a region-loss failover) while a goes on
     * writing: a's copy is fenced and says split-brain. */
    char msg[512];
    int changed = -1;
    ASSERT_EQ(rep__promote(t.b, "hv", 1, &changed, msg, sizeof(msg)), RPC_OK);
    ASSERT_EQ(changed, 1);
    write_some(t.sa, "hv", 1, 30);
    ASSERT(health_wait(t.sa, "hv", REP_H_SPLIT_BRAIN, 20, &since, peer,
                       &text));
    ASSERT(strstr(text, "epoch") != NULL);
    free(text);
    teardown(&t);
}

TEST(journal_damage_admin_calls)
{
    struct two t;
    char msg[1024];
    tls_pki();
    setup(&t, 1);
    /* A volume of region a alone. */
    struct jr_create_opts o = {.size = 1u << 20, .object_size = 64u << 10,
                               .role = JR_ROLE_PRIMARY, .region = "a"};
    ASSERT_OK(jr_volume_create(t.sa, "n", &o));
    ASSERT_UEQ(write_some(t.sa, "n", 8, 71), 8);
    Tandem__Admin__V1__CheckJournalResponse *c = NULL;
    ASSERT_EQ(check_journal("a", "n", &c, msg, sizeof(msg)), RPC_OK);
    ASSERT(!c->damaged);
    ASSERT(c->damage == NULL);
    ASSERT_UEQ(c->head, 8);
    protobuf_c_message_free_unpacked(&c->base, NULL);
    damage_entry(t.sa, "n", 6, 4);
    ASSERT_EQ(check_journal("a", "n", &c, msg, sizeof(msg)), RPC_OK);
    ASSERT(c->damaged);
    ASSERT_UEQ(c->damage->seq, 6);
    ASSERT_UEQ(c->damage->object, 0);
    ASSERT_UEQ(c->damage->offset, 5 * ENT16);
    ASSERT(strstr(c->damage->why, "R-19") != NULL);
    ASSERT_UEQ(c->applied, 4);
    ASSERT_UEQ(c->head, 8);
    ASSERT_UEQ(c->discard_entries, 3);
    ASSERT(c->discard_bytes_estimate > 0);
    ASSERT_STREQ(c->peer_region, "");
    /* Not recorded before a writable open meets it. */
    ASSERT_UEQ(c->volume->journal_damaged_seq, 0);
    protobuf_c_message_free_unpacked(&c->base, NULL);
    jr_volume *v;
    ASSERT_EQ(jr_open(t.sa, "n", JR_OPEN_WRITE, "t", &v), JR_ECORRUPT);
    Tandem__Admin__V1__StatusRequest sq = TANDEM__ADMIN__V1__STATUS_REQUEST__INIT;
    char *ids[] = {"n"};
    sq.volume_ids = ids;
    sq.n_volume_ids = 1;
    ProtobufCMessage *so = NULL;
    ASSERT_EQ(admin_unix("a", "Status", &sq.base,
                         &tandem__admin__v1__status_response__descriptor, &so,
                         msg, sizeof(msg)), RPC_OK);
    Tandem__Admin__V1__StatusResponse *sr = (void *)so;
    ASSERT_EQ(sr->n_volumes, 1);
    ASSERT_UEQ(sr->volumes[0]->journal_damaged_seq, 6);
    ASSERT_UEQ(sr->volumes[0]->journal_damaged_offset, 5 * ENT16);
    ASSERT_STREQ(sr->volumes[0]->state, "error");
    char want[200];
    snprintf(want, sizeof(want), "journal damaged at seq 6 (object 0 offset "
             "%d): see RUNBOOK 'A damaged journal tail'", 5 * ENT16);
    ASSERT(!strncmp(sr->volumes[0]->last_error, want, strlen(want)));
    protobuf_c_message_free_unpacked(so, NULL);
    /* Refusals: nothing changes. */
    Tandem__Admin__V1__DiscardJournalTailResponse *d = NULL;
    ASSERT_EQ(discard_tail("a", "n", 7, NULL, msg, sizeof(msg)),
              RPC_FAILED_PRECONDITION);
    ASSERT(strstr(msg, "the damage is now at seq 6, not 7: check again"));
    ASSERT_EQ(discard_tail("a", "n", 5, NULL, msg, sizeof(msg)),
              RPC_FAILED_PRECONDITION);
    ASSERT_EQ(discard_tail("a", "n", 0, NULL, msg, sizeof(msg)),
              RPC_INVALID_ARGUMENT);
    ASSERT_EQ(discard_tail("a", "ghost", 6, NULL, msg, sizeof(msg)),
              RPC_NOT_FOUND);
    ASSERT_EQ(discard_tail("a", "", 6, NULL, msg, sizeof(msg)),
              RPC_INVALID_ARGUMENT);
    ASSERT_EQ(check_journal("a", "ghost", NULL, msg, sizeof(msg)),
              RPC_NOT_FOUND);
    struct jr_info in;
    ASSERT_OK(jr_volume_stat(t.sa, "n", &in));
    ASSERT_UEQ(in.head, 8);
    ASSERT_UEQ(in.damaged_seq, 6);
    /* Over TCP: only the admin identity. */
    Tandem__Admin__V1__CheckJournalRequest cq =
        TANDEM__ADMIN__V1__CHECK_JOURNAL_REQUEST__INIT;
    cq.volume_id = "n";
    Tandem__Admin__V1__DiscardJournalTailRequest dq =
        TANDEM__ADMIN__V1__DISCARD_JOURNAL_TAIL_REQUEST__INIT;
    dq.volume_id = "n";
    dq.bad_seq = 6;
    const char *who[] = {"a", "b", "c", "nouri", "xadmin"};
    for (size_t i = 0; i < sizeof(who) / sizeof(who[0]); i++) {
        ASSERT_EQ(admin_tcp_call(g_admin_port[0], who[i], "CheckJournal",
                                 &cq.base,
                                 &tandem__admin__v1__check_journal_response__descriptor,
                                 msg, sizeof(msg)), RPC_PERMISSION_DENIED);
        ASSERT_EQ(admin_tcp_call(g_admin_port[0], who[i], "DiscardJournalTail",
                                 &dq.base,
                                 &tandem__admin__v1__discard_journal_tail_response__descriptor,
                                 msg, sizeof(msg)), RPC_PERMISSION_DENIED);
    }
    ASSERT_OK(jr_volume_stat(t.sa, "n", &in));
    ASSERT_UEQ(in.head, 8);
    ASSERT_EQ(admin_tcp_call(g_admin_port[0], "admin", "CheckJournal",
                             &cq.base,
                             &tandem__admin__v1__check_journal_response__descriptor,
                             msg, sizeof(msg)), RPC_OK);
    /* The confirmed seq: the tail goes, the volume opens writable. */
    ASSERT_EQ(discard_tail("a", "n", 6, &d, msg, sizeof(msg)), RPC_OK);
    ASSERT_UEQ(d->discarded_from, 6);
    ASSERT_UEQ(d->discarded_entries, 3);
    ASSERT_UEQ(d->head, 5);
    ASSERT(!d->peer_copy_scheduled);
    ASSERT(!d->peer_needs_resync);
    ASSERT_UEQ(d->volume->journal_damaged_seq, 0);
    protobuf_c_message_free_unpacked(&d->base, NULL);
    ASSERT_OK(jr_open(t.sa, "n", JR_OPEN_WRITE, "t", &v));
    ASSERT_OK(jr_close(v));
    ASSERT_EQ(discard_tail("a", "n", 6, NULL, msg, sizeof(msg)),
              RPC_FAILED_PRECONDITION);
    ASSERT(strstr(msg, "the journal is not damaged now"));

    /* A replicated primary whose peer acknowledged past the damage:
     * refused (fail over instead), and no copy left scheduled. */
    create_primary(t.sa, "r", 1u << 20);
    ASSERT_UEQ(write_some(t.sa, "r", 8, 91), 8);
    ASSERT(wait_applied(t.sb, "r", 8));
    uint64_t ack = 0;
    for (int i = 0; i < 3000 && ack < 8; i++) {
        jr_peer_ack_get(t.sa, "r", "b", &ack);
        if (ack < 8) usleep(10000);
    }
    ASSERT_UEQ(ack, 8);
    damage_entry(t.sa, "r", 6, 4);
    ASSERT_EQ(check_journal("a", "r", &c, msg, sizeof(msg)), RPC_OK);
    ASSERT_UEQ(c->damage->seq, 6);
    ASSERT_UEQ(c->peer_acked, 8);
    ASSERT_STREQ(c->peer_region, "b");
    protobuf_c_message_free_unpacked(&c->base, NULL);
    ASSERT_EQ(discard_tail("a", "r", 6, NULL, msg, sizeof(msg)),
              RPC_FAILED_PRECONDITION);
    ASSERT(strstr(msg, "peer region b acknowledged entries up to seq 8"));
    ASSERT(strstr(msg, "fail over to it instead"));
    uint64_t resume = 7;
    ASSERT_OK(jr_copylist_load(t.sa, "r", &resume, copylist_none_cb, NULL));
    ASSERT_UEQ(resume, 0);
    ASSERT_OK(jr_volume_stat(t.sa, "r", &in));
    ASSERT_UEQ(in.head, 8);

    /* A replicated primary whose peer is away: the discard schedules a
     * full copy (resuming at applied + 1 as of before it), which the next
     * sender makes once the peer is back: the replica equals the image,
     * discarded writes it still holds included. */
    rep_destroy(t.b);
    t.b = NULL;
    create_primary(t.sa, "f", 1u << 20);
    ASSERT_UEQ(write_some(t.sa, "f", 8, 93), 8);
    damage_entry(t.sa, "f", 5, 3);
    ASSERT_EQ(discard_tail("a", "f", 5, &d, msg, sizeof(msg)), RPC_OK);
    ASSERT(d->peer_copy_scheduled);
    ASSERT(!d->peer_needs_resync);
    ASSERT_UEQ(d->head, 4);
    ASSERT_UEQ(d->discarded_entries, 4);
    protobuf_c_message_free_unpacked(&d->base, NULL);
    ASSERT_OK(jr_copylist_load(t.sa, "f", &resume, copylist_none_cb, NULL));
    ASSERT_UEQ(resume, 4);
    t.b = start(&t, "b", "a");
    struct jr_info ib;
    for (int i = 0; i < 3000; i++) {
        ASSERT_OK(jr_copylist_load(t.sa, "f", &resume, copylist_none_cb,
                                   NULL));
        if (!resume && jr_volume_stat(t.sb, "f", &ib) == 0 && ib.applied >= 4)
            break;
        usleep(10000);
    }
    ASSERT_UEQ(resume, 0);
    ASSERT_OK(jr_volume_stat(t.sb, "f", &ib));
    ASSERT_UEQ(ib.applied, 4);
    images_equal(t.sa, t.sb, "f");
    teardown(&t);
    tls_pki_rm();
}

TT_MAIN()

/* ------------------------------------------------------------ the RPO -- */

#define ASSERT_NEAR(a, b, eps)                                                 \
    do {                                                                       \
        double a_ = (a), b_ = (b);                                             \
        if (!(a_ - b_ <= (eps) && b_ - a_ <= (eps)))                           \
            TT_FAIL("%s = %.9f, expected %.9f", #a, a_, b_);                   \
    } while (0)

/* The arithmetic: the primary's announced head time minus the applied
 * entry's time, on the primary's clock; 0 only with everything announced
 * applied; milliseconds count; the newest announcement of an epoch wins
 * whatever order they arrive in; the persisted form round-trips and
 * anything else is refused. */
TEST(rpo_arithmetic)
{
    const int64_t T = 1765000000000000000LL; /* some 2025 instant, ns */
    struct rep_rpo p = {0};
    ASSERT_NEAR(rep__rpo_s(&p), -1, 0); /* nothing announced */
    ASSERT_EQ(rep__rpo_announce(&p, 1, 10, T + 1000000000LL), 1);
    p.applied = 7;
    p.applied_ts_ns = T;
    ASSERT_NEAR(rep__rpo_s(&p), 1.0, 1e-9);
    /* Sub-second and sub-2 s: never rounded to 0. */
    ASSERT_EQ(rep__rpo_announce(&p, 1, 11, T + 42000000LL), 1);
    ASSERT_NEAR(rep__rpo_s(&p), 0.042, 1e-9);
    ASSERT_EQ(rep__rpo_announce(&p, 1, 12, T + 1999000000LL), 1);
    ASSERT_NEAR(rep__rpo_s(&p), 1.999, 1e-9);
    /* An older announcement arriving late changes nothing. */
    ASSERT_EQ(rep__rpo_announce(&p, 1, 11, T + 5000000000LL), 0);
    ASSERT_EQ(rep__rpo_announce(&p, 1, 0, T + 5000000000LL), 0);
    ASSERT_UEQ(p.ann_head, 12);
    ASSERT_NEAR(rep__rpo_s(&p), 1.999, 1e-9);
    /* An older epoch's primary is ignored; a newer one starts afresh. */
    ASSERT_EQ(rep__rpo_announce(&p, 0, 99, T), 0);
    ASSERT_EQ(rep__rpo_announce(&p, 2, 9, T + 3000000000LL), 1);
    ASSERT_UEQ(p.ann_head, 9);
    ASSERT_UEQ(p.epoch, 2);
    ASSERT_NEAR(rep__rpo_s(&p), 3.0, 1e-9);
    /* Everything announced applied: 0, whatever the times say. */
    p.applied = 9;
    ASSERT_NEAR(rep__rpo_s(&p), 0, 0);
    p.applied = 20;
    ASSERT_NEAR(rep__rpo_s(&p), 0, 0);
    /* Entries missing and the applied one's time unknown: unknown, not 0. */
    p.applied = 5;
    p.applied_ts_ns = 0;
    ASSERT_NEAR(rep__rpo_s(&p), -1, 0);
    /* Never negative. */
    p.applied_ts_ns = T + 4000000000LL;
    ASSERT_NEAR(rep__rpo_s(&p), 0, 0);
    p.applied_ts_ns = T;
    p.link_up_ms = 1765000000123LL;
    char buf[200];
    ASSERT_OK(rep__rpo_format(&p, buf, sizeof(buf)));
    struct rep_rpo q = {0};
    ASSERT_OK(rep__rpo_parse(buf, &q));
    ASSERT_MEMEQ(&p, &q, sizeof(p));
    ASSERT_EQ(rep__rpo_format(&p, buf, 10), -ENOSPC);
    static const char *bad[] = {
        "", "1", "2 1 2 3 4 5 6", "1 1 2 3 4 5", "1 1 2 3 4 5 6 7",
        "1 1 2 -3 4 5 6", "1 1 2 3 4 5 6x", "1 1 2 3 4 -5 6", "x 1 2 3 4 5 6",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct rep_rpo z = {0};
        if (rep__rpo_parse(bad[i], &z) != -EINVAL)
            TT_FAIL("rep__rpo_parse accepted \"%s\"", bad[i]);
        ASSERT_UEQ(z.ann_head, 0);
    }
    ASSERT_EQ(rep__rpo_parse(NULL, &q), -EINVAL);
}

/* Entry seq's timestamp in a's journal. */
static int64_t entry_ts(st_store *st, const char *id, uint64_t seq)
{
    struct jr_batch b = {0};
    ASSERT_OK(jr_tail_read(st, id, seq, 1, &b));
    ASSERT_UEQ(b.first_seq, seq);
    int64_t ts = b.oldest_ts_ns;
    jr_batch_free(&b);
    return ts;
}

/* Ship a's entries from..to to b as a's sender would, announcing head
 * and head_ts; returns b's applied. */
static uint64_t ship_range(struct two *t, rpc_client *c, const char *id,
                           uint64_t from, uint64_t to, uint64_t head,
                           int64_t head_ts, int with_spec)
{
    struct jr_batch b = {0};
    ASSERT_OK(jr_tail_read(t->sa, id, from, 1u << 20, &b));
    ASSERT_UEQ(b.first_seq, from);
    ASSERT(b.last_seq >= to);
    /* Cut the batch after entry `to` (64-byte headers, payload_len at
     * byte 40). */
    size_t off = 0;
    for (uint64_t s = from; s <= to; s++) {
        uint32_t pl;
        memcpy(&pl, b.data + off + 40, 4);
        off += 64 + pl;
    }
    Tandem__Repl__V1__ShipBatchRequest q =
        TANDEM__REPL__V1__SHIP_BATCH_REQUEST__INIT;
    Tandem__Repl__V1__VolumeSpec sp = TANDEM__REPL__V1__VOLUME_SPEC__INIT;
    sp.size = 1u << 20;
    sp.object_size = 64u << 10;
    spec_replicated(&sp);
    q.volume_id = (char *)id;
    q.from_region = "a";
    q.epoch = 1;
    q.from_primary = 1;
    if (with_spec) q.spec = &sp;
    q.first_seq = from;
    q.last_seq = to;
    q.n_entries = (uint32_t)(to - from + 1);
    q.entries.data = b.data;
    q.entries.len = off;
    q.raw_len = off;
    q.oldest_ts_ns = b.oldest_ts_ns;
    q.primary_head = head;
    q.head_ts_ns = head_ts;
    Tandem__Repl__V1__ShipBatchResponse *r = ship(c, &q);
    ASSERT_EQ(r->result, RES(OK));
    uint64_t applied = r->applied;
    protobuf_c_message_free_unpacked(&r->base, NULL);
    jr_batch_free(&b);
    return applied;
}

/* A heartbeat as a's announcer sends it; returns the result. */
static int heartbeat_call(rpc_client *c, const char *id, uint64_t epoch,
                          uint64_t head, int64_t head_ts, char *msg,
                          size_t msz)
{
    Tandem__Repl__V1__ShipBatchRequest q =
        TANDEM__REPL__V1__SHIP_BATCH_REQUEST__INIT;
    q.volume_id = (char *)id;
    q.from_region = "a";
    q.epoch = epoch;
    q.from_primary = 1;
    q.heartbeat = 1;
    q.primary_head = head;
    q.head_ts_ns = head_ts;
    Tandem__Repl__V1__ShipBatchResponse *r = ship(c, &q);
    int res = r->result;
    snprintf(msg, msz, "%s", r->message);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return res;
}

/* The secondary's RPO is measured against the newest head the primary
 * announced (batches, heartbeats), on the primary's clock: the issue's
 * bug was a secondary that counted itself in sync when a batch arrived
 * that carried everything up to the head of its own (stale) stat. */
TEST(rpo_from_the_primarys_announcements)
{
    struct two t;
    rpc_client *c = as_sender(&t);
    const char *id = "rpo-1";
    create_primary(t.sa, id, 1u << 20);
    ASSERT_UEQ(write_some(t.sa, id, 4, 31), 4);
    int64_t ts1 = entry_ts(t.sa, id, 1), ts4 = entry_ts(t.sa, id, 4);
    char msg[256];
    /* A heartbeat never creates a volume. */
    ASSERT_EQ(heartbeat_call(c, id, 1, 4, ts4, msg, sizeof(msg)),
              RES(NO_VOLUME));
    struct jr_info ib;
    ASSERT_EQ(jr_volume_stat(t.sb, id, &ib), -ENOENT);
    /* Entry 1 arrives with the head announced 1.5 s after it (on a's
     * clock): RPO 1.5 s, not "0 because a batch just came". */
    ASSERT_UEQ(ship_range(&t, c, id, 1, 1, 4, ts1 + 1500000000LL, 1), 1);
    struct rep_vstat s;
    rep__vol_status(t.b, id, &s);
    ASSERT_NEAR(s.rpo_s, 1.5, 1e-6);
    ASSERT_NEAR(s.applied_age_s, 1.5, 1e-6);
    ASSERT_UEQ(s.lag_entries, 3);
    ASSERT_UEQ(s.rpo.ann_head, 4);
    ASSERT(s.rpo.link_up_ms > 0);
    Tandem__Admin__V1__VolumeStatus *m = rep__admin_vstatus(t.b, id);
    ASSERT(m != NULL);
    ASSERT_NEAR(m->rpo_seconds, 1.5, 1e-6);
    ASSERT_STREQ(m->rpo_view, "replica");
    ASSERT_UEQ(m->announced_head, 4);
    ASSERT_EQ(m->announced_head_ts_unix_ns, ts1 + 1500000000LL);
    protobuf_c_message_free_unpacked(&m->base, NULL);
    /* A heartbeat moves the announcement on: 250 ms is shown as such. */
    ASSERT_EQ(heartbeat_call(c, id, 1, 5, ts1 + 250000000LL, msg,
                             sizeof(msg)), RES(OK));
    ASSERT_STREQ(msg, "heartbeat");
    rep__vol_status(t.b, id, &s);
    ASSERT_NEAR(s.rpo_s, 0.25, 1e-6);
    ASSERT_UEQ(s.rpo.ann_head, 5);
    /* An older announcement (a batch that travelled long) changes
     * nothing. */
    ASSERT_EQ(heartbeat_call(c, id, 1, 4, ts1 + 9000000000LL, msg,
                             sizeof(msg)), RES(OK));
    rep__vol_status(t.b, id, &s);
    ASSERT_NEAR(s.rpo_s, 0.25, 1e-6);
    /* Heartbeats of another epoch are answered, never recorded nor
     * adopted. */
    ASSERT_EQ(heartbeat_call(c, id, 7, 9, ts1 + 7000000000LL, msg,
                             sizeof(msg)), RES(OK));
    ASSERT(strstr(msg, "not recorded") != NULL);
    ASSERT_OK(jr_volume_stat(t.sb, id, &ib));
    ASSERT_UEQ(ib.epoch, 1);
    rep__vol_status(t.b, id, &s);
    ASSERT_UEQ(s.rpo.ann_head, 5);
    /* Entries 2..4 arrive carrying the head of their read (4): applied
     * 4 is still short of the announced 5, the RPO is a's time of 5
     * minus the time of entry 4 (the batch's last entry). */
    ASSERT_UEQ(ship_range(&t, c, id, 2, 4, 4, ts4, 0), 4);
    rep__vol_status(t.b, id, &s);
    ASSERT_UEQ(s.rpo.applied, 4);
    ASSERT_EQ(s.rpo.applied_ts_ns, ts4);
    ASSERT_NEAR(s.rpo_s, (double)(ts1 + 250000000LL - ts4) / 1e9, 1e-6);
    ASSERT_UEQ(s.lag_entries, 1);
    /* Announced 4 and applied 4: 0, and only then. */
    ASSERT_UEQ(write_some(t.sa, id, 1, 32), 5);
    int64_t ts5 = entry_ts(t.sa, id, 5);
    ASSERT_UEQ(ship_range(&t, c, id, 5, 5, 5, ts5, 0), 5);
    rep__vol_status(t.b, id, &s);
    ASSERT_NEAR(s.rpo_s, 0, 0);
    ASSERT_UEQ(s.lag_entries, 0);
    ASSERT_EQ(heartbeat_call(c, id, 1, 6, ts5 + 1234000000LL, msg,
                             sizeof(msg)), RES(OK));
    rep__vol_status(t.b, id, &s);
    ASSERT_NEAR(s.rpo_s, 1.234, 1e-6);
    struct rep_rpo before = s.rpo;
    /* Durable: b restarts and reports the same figures (as of the
     * primary's last call) before a says anything again. */
    rpc_client_destroy(c);
    rep_destroy(t.b);
    char *v = NULL;
    ASSERT_OK(jr_meta_get(t.sb, id, REP_META_RPO, &v));
    struct rep_rpo saved;
    ASSERT_OK(rep__rpo_parse(v, &saved));
    free(v);
    ASSERT_MEMEQ(&saved, &before, sizeof(saved));
    t.b = start(&t, "b", "a");
    rep__vol_status(t.b, id, &s);
    ASSERT_NEAR(s.rpo_s, 1.234, 1e-6);
    ASSERT_EQ(s.rpo.link_up_ms, before.link_up_ms);
    /* Promoted (a lost): the figure failover reports stays as of the
     * last call, whatever the time since. */
    int changed;
    ASSERT_EQ(rep__promote(t.b, id, 1, &changed, msg, sizeof(msg)), RPC_OK);
    struct rep_vol *rv = rep__vol_get(t.b, id);
    struct rep_rpo after;
    rep__vol_rpo(t.b, rv, &after);
    ASSERT_NEAR(rep__rpo_s(&after), 1.234, 1e-6);
    ASSERT_EQ(after.link_up_ms, before.link_up_ms);
    teardown(&t);
}

/* The announcer: with nothing written for a while, b still hears a's
 * head (heartbeats refresh when the link was last up), and after a write
 * b's announced head follows a's. */
TEST(announcer_keeps_the_secondary_informed)
{
    struct two t;
    setup(&t, 1);
    const char *id = "rpo-2";
    create_primary(t.sa, id, 1u << 20);
    uint64_t h = write_some(t.sa, id, 3, 41);
    ASSERT(wait_applied(t.sb, id, h));
    struct rep_vstat s;
    int64_t up0 = 0;
    for (int i = 0; i < 500; i++) {
        rep__vol_status(t.b, id, &s);
        if (s.rpo.ann_head == h && s.rpo_s == 0) break;
        usleep(10000);
    }
    ASSERT_UEQ(s.rpo.ann_head, h);
    ASSERT_NEAR(s.rpo_s, 0, 0);
    up0 = s.rpo.link_up_ms;
    /* No writes: a heartbeat (1 s when idle) still refreshes it. */
    for (int i = 0; i < 500 && s.rpo.link_up_ms == up0; i++) {
        usleep(10000);
        rep__vol_status(t.b, id, &s);
    }
    ASSERT(s.rpo.link_up_ms > up0);
    ASSERT_UEQ(s.rpo.ann_head, h);
    teardown(&t);
}

/* A fenced former primary comes back: the rightful primary shows the
 * peer as the side that must resync (never split-brain of its own), the
 * returning copy shows that it must resync. */
TEST(returning_former_primary_must_resync_not_the_new_primary)
{
    struct two t;
    setup(&t, 1);
    const char *id = "sb-1";
    create_primary(t.sa, id, 1u << 20);
    uint64_t h = write_some(t.sa, id, 3, 51);
    ASSERT(wait_applied(t.sb, id, h));
    /* Region a is lost; b is promoted and written; a's copy took writes
     * b never got. */
    rep_destroy(t.a);
    t.a = NULL;
    char msg[512];
    int changed;
    ASSERT_EQ(rep__promote(t.b, id, 1, &changed, msg, sizeof(msg)), RPC_OK);
    write_some(t.sb, id, 2, 52);
    write_some(t.sa, id, 2, 53);
    t.a = start(&t, "a", "b");
    struct rep_vstat sa, sb;
    int done = 0;
    for (int i = 0; i < 1500 && !done; i++) {
        rep__vol_status(t.a, id, &sa);
        rep__vol_status(t.b, id, &sb);
        done = sa.must_resync && sb.peer_must_resync;
        if (!done) usleep(10000);
    }
    ASSERT(done);
    /* a: fenced, must resync. */
    ASSERT_EQ(sa.info.role, JR_ROLE_SECONDARY);
    ASSERT(sa.split_brain);
    ASSERT_STREQ(rep__state_name(sa.state), "must-resync");
    ASSERT_STREQ(rep__link_name(sa.link_state), "fenced");
    ASSERT(strstr(sa.last_error, "tandemctl resync sb-1") != NULL);
    /* b: primary, not split-brain: its peer must resync. */
    ASSERT_EQ(sb.info.role, JR_ROLE_PRIMARY);
    ASSERT(!sb.split_brain);
    ASSERT_STREQ(rep__state_name(sb.state), "peer-must-resync");
    ASSERT_STREQ(rep__link_name(sb.link_state), "peer-stale");
    ASSERT(strstr(sb.last_error, "tandemctl resync sb-1") != NULL);
    ASSERT(strstr(sb.last_error, "in region a") != NULL);
    Tandem__Admin__V1__VolumeStatus *m = rep__admin_vstatus(t.b, id);
    ASSERT(m != NULL);
    ASSERT(m->peer_must_resync);
    ASSERT(!m->split_brain);
    ASSERT(!strstr(m->state, "split") && !strstr(m->link_state, "split"));
    protobuf_c_message_free_unpacked(&m->base, NULL);
    teardown(&t);
}
