/*
 * fuzz-rep-apply.c: libFuzzer target for the whole ShipBatch receiver
 * (replicator/rep_link.c's handler, as the gRPC layer calls it) on a real
 * sqlite-backed region: receive checks, replica creation from the peer's
 * VolumeSpec, LZ4 decoding, undo ranges and jr_apply of the entries.
 * fuzz-rep-link covers the decoding alone at high speed; this one follows
 * untrusted bytes into the store.  Also the CopyRegions handler (range
 * checks, undo saving, image writes, finish).  Each input starts from no volume and
 * the volume is deleted afterwards, so runs are independent.
 *
 * Input: one byte, then (even byte) a ShipBatchRequest or (odd) a
 * CopyRegionsRequest.  Volume id, peer region and epoch are forced to
 * valid values so that the handlers get past their first checks (a copy
 * always begins, creating the replica).  Bytes that do not unpack as a
 * ShipBatchRequest are taken as the raw entries of a batch whose CRCs are
 * fixed up (as fuzz-entry does), so the mutator reaches jr_apply's field
 * checks.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jr_int.h"
#include "replicator/rep_link.h"
#include "fuzz-rep-region.h"
#include "tlog.h"

#define VOL "fz"

static rep_ctx *R;
/* Handlers are driven directly, with a ctx bound to no call (no identity:
 * the region runs --insecure, so the caller is taken for its peer a). */
static rpc_ctx *CTX;
/* The default spec says the volume replicates from a to b, so replicas are
 * made and the apply path is reached; a fuzzed spec brings its own meta
 * (and is refused when it does not replicate here). */
static Tandem__Repl__V1__VolumeSpec__MetaEntry META_REP =
    TANDEM__REPL__V1__VOLUME_SPEC__META_ENTRY__INIT;
static Tandem__Repl__V1__VolumeSpec__MetaEntry META_PEER =
    TANDEM__REPL__V1__VOLUME_SPEC__META_ENTRY__INIT;
static Tandem__Repl__V1__VolumeSpec__MetaEntry *META[2] = {&META_REP,
                                                           &META_PEER};

static void default_spec(Tandem__Repl__V1__VolumeSpec *spec)
{
    /* A small image in small objects keeps each run cheap. */
    spec->size = 1u << 20;
    spec->object_size = 64u << 10;
    spec->start_seq = 1;
    META_REP.key = REP_META_REPLICATION;
    META_REP.value = "async";
    META_PEER.key = REP_META_PEER_REGION;
    META_PEER.value = "b";
    spec->n_meta = 2;
    spec->meta = META;
}
static rpc_handler_fn ship_fn, copy_fn;
static char dir[64];

static void cleanup(void)
{
    char p[128];
    if (R) rep_destroy(R);
    rpc_ctx_detached_free(CTX);
    R = NULL;
    const char *names[] = {"conf.ini", "a.db", "b.db", "b.db-wal",
                           "b.db-shm", "b.db-journal"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
}

static void init(void)
{
    R = fuzz_rep_region(dir, sizeof(dir), "fuzz-rep");
    for (size_t i = 0; i < rep__n_link_methods; i++)
        if (strstr(rep__link_methods[i].name, "/ShipBatch"))
            ship_fn = rep__link_methods[i].fn;
        else if (strstr(rep__link_methods[i].name, "/CopyRegions"))
            copy_fn = rep__link_methods[i].fn;
    if (!ship_fn || !copy_fn) abort();
    CTX = rpc_ctx_detached_new("/tandem.repl.v1.Link/fuzz");
    if (!CTX) abort();
    atexit(cleanup);
}

/* Fix up every entry's CRCs (FORMAT.md §3 header: plen at 40, payload CRC
 * at 56, header CRC at 60). */
static void reseal(uint8_t *b, size_t n)
{
    size_t pos = 0;
    while (n - pos >= JR_HDR_SIZE) {
        uint8_t *h = b + pos;
        uint32_t plen = jr__get32(h + 40);
        size_t avail = n - pos - JR_HDR_SIZE;
        size_t pl = plen < avail ? plen : avail;
        jr__put32(h + 56, jr_crc32c(0, h + JR_HDR_SIZE, pl));
        jr__put32(h + 60, jr_crc32c(0, h, 60));
        pos += JR_HDR_SIZE + pl;
    }
}

static void check_answer(int code, ProtobufCMessage *resp, int result,
                         const char *message)
{
    if (code != RPC_OK) return;
    if (!resp || !message) abort();
    if (result < TANDEM__REPL__V1__RESULT__RESULT_OK ||
        result > TANDEM__REPL__V1__RESULT__RESULT_ERROR)
        abort();
}

static void ship(const uint8_t *data, size_t size)
{
    Tandem__Repl__V1__ShipBatchRequest *u =
        tandem__repl__v1__ship_batch_request__unpack(NULL, size, data);
    Tandem__Repl__V1__ShipBatchRequest req =
        TANDEM__REPL__V1__SHIP_BATCH_REQUEST__INIT;
    Tandem__Repl__V1__VolumeSpec spec = TANDEM__REPL__V1__VOLUME_SPEC__INIT;
    uint8_t *copy = NULL;
    if (u) {
        req = *u;
    } else {
        copy = malloc(size ? size : 1);
        if (!copy) abort();
        memcpy(copy, data, size);
        reseal(copy, size);
        req.entries.data = copy;
        req.entries.len = size;
        req.first_seq = 1;
        req.last_seq = size >= 16 ? jr__get64(copy + 8) : 1;
        req.n_entries = 1;
    }
    req.volume_id = VOL;
    req.from_region = "a";
    req.promoted_at_seq = 0;
    /* Holding an overtaking batch for its predecessor costs a second of
     * waiting per input: covered by test-rep, not here. */
    req.follows_in_flight = 0;
    if (req.epoch == 0) req.epoch = 1;
    if (!req.spec || req.spec->size == 0) {
        default_spec(&spec);
        req.spec = &spec;
    }
    ProtobufCMessage *resp = NULL;
    int code = ship_fn(R, CTX, &req.base, &resp);
    const Tandem__Repl__V1__ShipBatchResponse *a = (const void *)resp;
    check_answer(code, resp, a ? a->result : 0, a ? a->message : NULL);
    if (code == RPC_OK && !a->role) abort();
    if (resp) protobuf_c_message_free_unpacked(resp, NULL);
    free(copy);
    if (u) tandem__repl__v1__ship_batch_request__free_unpacked(u, NULL);
}

/* A copy session in one call: begin (creates the replica from the spec),
 * regions, finish, as the message says. */
static void copy_regions(const uint8_t *data, size_t size)
{
    Tandem__Repl__V1__CopyRegionsRequest *u =
        tandem__repl__v1__copy_regions_request__unpack(NULL, size, data);
    if (!u) return;
    Tandem__Repl__V1__CopyRegionsRequest req = *u;
    Tandem__Repl__V1__VolumeSpec spec = TANDEM__REPL__V1__VOLUME_SPEC__INIT;
    req.volume_id = VOL;
    req.from_region = "a";
    if (!req.copy_id[0] || strlen(req.copy_id) > 64) req.copy_id = "c1";
    if (req.epoch == 0) req.epoch = 1;
    req.begin = 1;
    if (!req.spec || req.spec->size == 0) {
        default_spec(&spec);
        req.spec = &spec;
    }
    ProtobufCMessage *resp = NULL;
    int code = copy_fn(R, CTX, &req.base, &resp);
    const Tandem__Repl__V1__CopyRegionsResponse *a = (const void *)resp;
    check_answer(code, resp, a ? a->result : 0, a ? a->message : NULL);
    if (resp) protobuf_c_message_free_unpacked(resp, NULL);
    tandem__repl__v1__copy_regions_request__free_unpacked(u, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!R) init();
    if (size < 1 || size > (1u << 20)) return 0;
    /* First byte: which call the rest is (odd: CopyRegions). */
    if (data[0] & 1)
        copy_regions(data + 1, size - 1);
    else
        ship(data + 1, size - 1);
    /* Back to no volume: undo data and copy markers live outside the
     * volume's objects. */
    jr_copywin_drop(R->st, VOL);
    jr_volume_delete(R->st, VOL);
    return 0;
}
