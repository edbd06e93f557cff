/*
 * fuzz-rep-handlers.c: libFuzzer target for the Link handlers that
 * fuzz-rep-apply does not drive: DeleteReplica, ReadRegions,
 * JournalRegions and GetVolume (replicator/rep_link_vol.c), on a real
 * sqlite-backed region, through the real gRPC server (a unix socket, as
 * the link layer calls them: unpack, handler with its rpc_ctx, pack), so
 * every refusal path with its status message runs too.
 *
 * Region b holds three volumes: "fz", a primary with a journal (writes,
 * a discard, a resize, snapshot entries: two taken, one deleted), "fy",
 * a secondary of a with a journal of its own (the applied entries of fz,
 * its snapshots taken and deleted by jr_apply), and "fd", made afresh
 * for each DeleteReplica input in the state the input's second byte says
 * (role, epoch, split brain, a copy window, replicated or not).  A volume
 * a DeleteReplica removed is made again after the input, so inputs stay
 * independent.
 *
 * Input: byte 0 selects the method (bits 0-1: DeleteReplica, ReadRegions,
 * JournalRegions, GetVolume), the volume id (bits 2-3: as in the request,
 * "fz", "fy", "fd") and whether from_region is forced to "a" (bit 4);
 * byte 1 is fd's state (DeleteReplica) or, for ReadRegions, how many
 * times the request's regions are repeated (bits 0-6: 1..1152 times), so
 * that small inputs reach the region caps.  The rest is the request
 * message; bytes that do not unpack are sent as they are.
 *
 * Checks: every call ends within 5 s (bounded cost) with a status code
 * 0..16; an OK answer unpacks and matches the store (ReadRegions: each
 * asked region, in order, with the image's bytes; JournalRegions: head,
 * applied, regions inside [0, 2^60); GetVolume: the volume's stat;
 * DeleteReplica: deleted only a secondary, which is then gone); a request
 * that names an invalid volume id ("", "..", bad bytes) is refused with
 * INVALID_ARGUMENT; ReadRegions past 1024 regions or 16 MiB is refused.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "replicator/rep_link.h"
#include "fuzz-rep-region.h"
#include "tlog.h"

#define RES(x) TANDEM__REPL__V1__RESULT__RESULT_##x
#define SIZE (1u << 20)
#define OBJ (64u << 10)

static rep_ctx *R;
static rpc_server *srv;
static rpc_client *cli;
static char dir[64];

static void cleanup(void)
{
    char p[160];
    rpc_client_destroy(cli);
    cli = NULL;
    rpc_server_destroy(srv, 0);
    srv = NULL;
    if (R) rep_destroy(R);
    R = NULL;
    const char *names[] = {"conf.ini", "a.db", "b.db", "b.db-wal",
                           "b.db-shm", "b.db-journal", "link.sock"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
}

static const struct jr_kv repl_meta[] = {{REP_META_REPLICATION, "async"},
                                         {REP_META_PEER_REGION, "a"}};

/* fz: a primary with a journal of several kinds of entries. */
static void make_fz(void)
{
    struct jr_create_opts o = {.size = SIZE, .object_size = OBJ,
                               .role = JR_ROLE_PRIMARY, .region = "b",
                               .meta = repl_meta, .n_meta = 2};
    if (jr_volume_create(R->st, "fz", &o) < 0) abort();
    jr_volume *v;
    if (jr_open(R->st, "fz", JR_OPEN_WRITE | JR_OPEN_FORCE, "fuzz", &v) < 0)
        abort();
    static uint8_t buf[40000];
    for (size_t i = 0; i < sizeof(buf); i++) buf[i] = (uint8_t)(i * 131 + 7);
    struct jr_snap sn;
    if (jr_write(v, 0, buf, 4096) < 0 ||
        jr_snapshot(v, "s1", "namespace=ns name=n1 content=c1", &sn) < 0 ||
        jr_write(v, 70000, buf, 40000) < 0 ||
        jr_discard(v, 4096, 8192) < 0 || jr_snapshot(v, "s2", NULL, &sn) < 0 ||
        jr_write(v, SIZE - 512, buf, 512) < 0 ||
        jr_resize(v, SIZE + OBJ) < 0 || jr_write(v, SIZE, buf, 3000) < 0)
        abort();
    if (jr_close(v) < 0) abort();
    /* A deletion is a journal entry too (kind 6). */
    if (jr_snap_delete(R->st, "fz", "s2", 5000) < 0) abort();
}

/* A replica's metadata: the primary's (its peerRegion is here), and
 * where it came from. */
static const struct jr_kv replica_meta[] = {{REP_META_REPLICATION, "async"},
                                            {REP_META_PEER_REGION, "b"},
                                            {REP_META_PEER, "a"}};

/* fy: a secondary of region a holding fz's entries, applied. */
static void make_fy(void)
{
    struct jr_create_opts o = {.size = SIZE, .object_size = OBJ,
                               .role = JR_ROLE_SECONDARY, .epoch = 1,
                               .region = "b", .meta = replica_meta,
                               .n_meta = 3};
    if (jr_volume_create(R->st, "fy", &o) < 0) abort();
    struct jr_batch b = {0};
    uint64_t ap = 0;
    int rc = jr_tail_read(R->st, "fz", 1, 1u << 20, &b);
    if (rc == 0) rc = jr_apply(R->st, "fy", b.data, b.len, &ap);
    if (rc < 0) {
        fprintf(stderr, "fy: %s\n", jr_strerror(rc));
        abort();
    }
    jr_batch_free(&b);
}

/* fd: a volume to delete, in the state st says (bit 7: not replicated,
 * so the caller may not touch it). */
static void make_fd(uint8_t st)
{
    struct jr_create_opts o = {.size = SIZE, .object_size = OBJ,
                               .role = (st & 1) ? JR_ROLE_PRIMARY
                                                : JR_ROLE_SECONDARY,
                               .epoch = 1 + ((st >> 1) & 3), .region = "b",
                               .meta = (st & 0x80) ? NULL : replica_meta,
                               .n_meta = (st & 0x80) ? 0 : 3,
                               .start_seq = (st & 0x40) ? 100 : 0};
    if (jr_volume_create(R->st, "fd", &o) < 0) abort();
    if (st & 8) jr_meta_set(R->st, "fd", REP_META_SPLIT, "fuzz");
    if (st & 16) jr_copywin_begin(R->st, "fd", "c1", 0, NULL);
    if (st & 32) {
        static const uint8_t b[4096] = {1};
        jr_image_write(R->st, "fd", 8192, b, sizeof(b));
    }
}

static void init(void)
{
    char addr[128];
    R = fuzz_rep_region(dir, sizeof(dir), "fuzz-rh");
    struct rpc_server_opts so = {.methods = rep__link_methods,
                                 .n_methods = rep__n_link_methods,
                                 .svc = R, .n_threads = 2};
    snprintf(addr, sizeof(addr), "unix://%s/link.sock", dir);
    if (rpc_server_create(&so, &srv) < 0 ||
        rpc_server_listen(srv, addr, NULL) < 0 || rpc_server_start(srv) < 0 ||
        rpc_client_create(addr, NULL, &cli) < 0)
        abort();
    make_fz();
    make_fy();
    atexit(cleanup);
}

static const struct {
    const char *name;
    const ProtobufCMessageDescriptor *req, *resp;
} methods[4] = {
    {"/tandem.repl.v1.Link/DeleteReplica",
     &tandem__repl__v1__delete_replica_request__descriptor,
     &tandem__repl__v1__delete_replica_response__descriptor},
    {"/tandem.repl.v1.Link/ReadRegions",
     &tandem__repl__v1__read_regions_request__descriptor,
     &tandem__repl__v1__read_regions_response__descriptor},
    {"/tandem.repl.v1.Link/JournalRegions",
     &tandem__repl__v1__journal_regions_request__descriptor,
     &tandem__repl__v1__journal_regions_response__descriptor},
    {"/tandem.repl.v1.Link/GetVolume",
     &tandem__repl__v1__get_volume_request__descriptor,
     &tandem__repl__v1__get_volume_response__descriptor},
};

/* The link's id rule (jr.h, without ids made of dots only). */
static int id_ok(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > JR_MAX_ID || strspn(id, ".") == n) return 0;
    return strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                      "0123456789._-") == n;
}

/* The volume id field: first field of every request here. */
static char **id_field(int m, ProtobufCMessage *q)
{
    switch (m) {
    case 0: return &((Tandem__Repl__V1__DeleteReplicaRequest *)q)->volume_id;
    case 1: return &((Tandem__Repl__V1__ReadRegionsRequest *)q)->volume_id;
    case 2: return &((Tandem__Repl__V1__JournalRegionsRequest *)q)->volume_id;
    default: return &((Tandem__Repl__V1__GetVolumeRequest *)q)->volume_id;
    }
}

static void check_read(const Tandem__Repl__V1__ReadRegionsRequest *q,
                       const Tandem__Repl__V1__ReadRegionsResponse *a)
{
    uint64_t cost = 0;
    for (size_t i = 0; i < q->n_regions; i++)
        cost += q->regions[i]->length > (16u << 10) ? q->regions[i]->length
                                                    : (16u << 10);
    if (q->n_regions > 1024 || cost > (16u << 20)) abort(); /* not refused */
    if (a->n_regions != q->n_regions) abort();
    static uint8_t img[SIZE + OBJ];
    for (size_t i = 0; i < a->n_regions; i++) {
        const Tandem__Repl__V1__Region *x = a->regions[i];
        if (x->offset != q->regions[i]->offset ||
            x->length != q->regions[i]->length || x->length > sizeof(img))
            abort();
        void *raw = NULL;
        const void *p = x->data.data;
        if (x->compression == TANDEM__REPL__V1__COMPRESSION__COMPRESSION_LZ4) {
            if (rep__unlz4(x->data.data, x->data.len, x->length, &raw) < 0)
                abort();
            p = raw;
        } else if (x->data.len != x->length) {
            abort();
        }
        if (jr_image_read(R->st, q->volume_id, x->offset, img, x->length) < 0 ||
            memcmp(img, p, x->length))
            abort(); /* the image's bytes, as asked */
        free(raw);
    }
}

static void check_ok(int m, const ProtobufCMessage *q, const uint8_t *resp,
                     size_t resp_len, int existed, const struct jr_info *pre)
{
    ProtobufCMessage *a =
        protobuf_c_message_unpack(methods[m].resp, NULL, resp_len, resp);
    if (!a) abort();
    const char *id = *id_field(m, (ProtobufCMessage *)q);
    struct jr_info now;
    int exists = jr_volume_stat(R->st, id, &now) == 0;
    switch (m) {
    case 0: {
        const Tandem__Repl__V1__DeleteReplicaResponse *d = (const void *)a;
        if (d->result < RES(OK) || d->result > RES(ERROR) || !d->message)
            abort();
        if (d->deleted && (d->result != RES(OK) || !existed || exists ||
                           pre->role != JR_ROLE_SECONDARY))
            abort(); /* only a secondary is deleted, and then it is gone */
        if (existed && pre->role == JR_ROLE_PRIMARY && !exists) abort();
        break;
    }
    case 1:
        check_read((const void *)q, (const void *)a);
        break;
    case 2: {
        const Tandem__Repl__V1__JournalRegionsResponse *j = (const void *)a;
        if (!exists || j->head != now.head || j->applied != now.applied)
            abort();
        for (size_t i = 0; i < j->n_regions; i++)
            if (!j->complete || j->regions[i]->length == 0 ||
                j->regions[i]->offset >= (1ull << 60) ||
                j->regions[i]->length > (1ull << 60))
                abort();
        break;
    }
    default: {
        const Tandem__Repl__V1__GetVolumeResponse *g = (const void *)a;
        if (g->exists != exists || !g->role) abort();
        if (exists && (g->head != now.head || g->applied != now.applied ||
                       g->epoch != now.epoch || g->size != now.size ||
                       g->tail != now.tail ||
                       strcmp(g->role, jr_role_name(now.role))))
            abort();
        break;
    }
    }
    protobuf_c_message_free_unpacked(a, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!R) init();
    if (size < 2 || size > (1u << 20)) return 0;
    int m = data[0] & 3, pick = (data[0] >> 2) & 3, force_from = data[0] & 16;
    uint8_t arg = data[1];
    const uint8_t *body = data + 2;
    size_t blen = size - 2;
    static const char *ids[] = {NULL, "fz", "fy", "fd"};
    if (m == 0) make_fd(arg);

    ProtobufCMessage *q =
        protobuf_c_message_unpack(methods[m].req, NULL, blen, body);
    uint8_t *packed = NULL;
    size_t plen = blen;
    const uint8_t *send = body;
    char *saved_id = NULL, *saved_from = NULL;
    Tandem__Repl__V1__Region **saved_regs = NULL, **fan = NULL;
    size_t saved_n = 0;
    if (q) {
        char **idp = id_field(m, q);
        if (ids[pick]) {
            saved_id = *idp;
            *idp = (char *)ids[pick];
        }
        if (force_from && m == 0) {
            Tandem__Repl__V1__DeleteReplicaRequest *d = (void *)q;
            saved_from = d->from_region;
            d->from_region = "a";
        }
        if (m == 1 && (arg & 0x7f)) {
            /* The regions again and again: the caps from a small input. */
            Tandem__Repl__V1__ReadRegionsRequest *rq = (void *)q;
            size_t times = (size_t)(arg & 0x7f) * 9;
            if (rq->n_regions && rq->n_regions * times <= 4096) {
                fan = malloc(rq->n_regions * times * sizeof(*fan));
                if (!fan) abort();
                for (size_t i = 0; i < rq->n_regions * times; i++)
                    fan[i] = rq->regions[i % rq->n_regions];
                saved_regs = rq->regions;
                saved_n = rq->n_regions;
                rq->regions = fan;
                rq->n_regions *= times;
            }
        }
        plen = protobuf_c_message_get_packed_size(q);
        packed = malloc(plen ? plen : 1);
        if (!packed) abort();
        protobuf_c_message_pack(q, packed);
        send = packed;
    }
    struct jr_info pre;
    const char *vid = q ? *id_field(m, q) : NULL;
    int existed = vid && id_ok(vid) && jr_volume_stat(R->st, vid, &pre) == 0;

    void *resp = NULL;
    size_t resp_len = 0;
    char msg[512] = "";
    int64_t t0 = tb_mono_ms();
    int code = rpc_client_call_raw(cli, methods[m].name, send, plen, &resp,
                                   &resp_len, 20000, msg, sizeof(msg));
    int64_t ms = tb_mono_ms() - t0;
    if (ms > 5000) {
        fprintf(stderr, "%s took %" PRId64 " ms: %s %s\n", methods[m].name,
                ms, rpc_code_name(code), msg);
        abort(); /* a request of unbounded cost */
    }
    static int debug = -1;
    if (debug < 0) debug = getenv("FUZZ_RH_DEBUG") != NULL;
    if (debug) {
        Tandem__Repl__V1__DeleteReplicaResponse *d =
            m == 0 && resp ? tandem__repl__v1__delete_replica_response__unpack(
                                 NULL, resp_len, resp)
                           : NULL;
        fprintf(stderr, "%s id=%s: %s \"%s\" %" PRId64 " ms%s%s\n",
                methods[m].name, vid ? vid : "(raw)", rpc_code_name(code),
                msg, ms, d ? " -> " : "", d ? d->message : "");
        if (d) tandem__repl__v1__delete_replica_response__free_unpacked(d, NULL);
    }
    if (code < 0 || code > 16) abort();
    if (code == RPC_OK) {
        if (!resp || !q) abort(); /* what does not unpack is refused */
        check_ok(m, q, resp, resp_len, existed, &pre);
    } else if (resp) {
        abort();
    }
    if (q && !id_ok(vid) && code != RPC_INVALID_ARGUMENT) {
        fprintf(stderr, "id \"%s\": %s %s\n", vid, rpc_code_name(code), msg);
        abort(); /* every bad id is refused as such */
    }
    if (code == RPC_INVALID_ARGUMENT && !msg[0]) abort(); /* says why */
    free(resp);

    if (q) {
        if (saved_id) *id_field(m, q) = saved_id;
        if (saved_from)
            ((Tandem__Repl__V1__DeleteReplicaRequest *)q)->from_region =
                saved_from;
        if (saved_regs) {
            Tandem__Repl__V1__ReadRegionsRequest *rq = (void *)q;
            rq->regions = saved_regs;
            rq->n_regions = saved_n;
        }
        protobuf_c_message_free_unpacked(q, NULL);
    }
    free(fan);
    free(packed);
    /* Back to the starting state. */
    if (m == 0) {
        jr_copywin_drop(R->st, "fd");
        jr_volume_delete(R->st, "fd");
        struct jr_info x;
        if (jr_volume_stat(R->st, "fy", &x) == -ENOENT) make_fy();
    }
    return 0;
}
