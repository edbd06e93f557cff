/*
 * test-rep.c: the replication engine (replicator/rep.h) in one process:
 * two regions on sqlite stores, plaintext loopback (mTLS is covered by
 * tests/e2e/t0300-replication.sh).  Checks the LZ4 helpers against bad
 * input, a replication round with byte-for-byte comparison, and every
 * refusal of the Link service (wrong peer, unknown volume, corrupt batch,
 * bad LZ4, gap, local primary, stale epoch, copy without a session).
 * Runs under ASan+UBSan in `make asan`.
 */
#include "jr.h"
#include "regions.h"
#include "replicator/rep.h"
#include "replicator/rep_admin.h"
#include "replicator/rep_int.h"
#include "replicator/rep_link.h"
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

static rep_ctx *start(struct two *t, const char *r, const char *p)
{
    char err[512];
    struct rep_opts o = {.config_path = t->conf, .region = r,
                         .peer_region = p, .insecure = 1, .scan_ms = 50};
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
 * and the primary demote itself as if split-brained. */
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

/* Deleting a replicated primary leaves a tombstone; the sender's
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
    ASSERT_EQ(rep__undo_rollback(t.b, "v"), 1);
    ASSERT_OK(jr_volume_stat(t.sb, "v", &ib));
    ASSERT_UEQ(ib.applied, head);
    images_equal(t.sa, t.sb, "v");

    jr_batch_free(&b);
    rpc_client_destroy(c);
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
    char *cw = NULL;
    ASSERT_EQ(jr_meta_get(t.sb, "cv", "rep.copy.id", &cw), -ENOENT);
    images_equal(t.sa, t.sb, "cv");
    teardown(&t);
}

TT_MAIN()
