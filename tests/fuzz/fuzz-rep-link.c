/*
 * fuzz-rep-link.c: libFuzzer target for the replication link receiver's
 * decoding of what the peer region sends (replicator/rep_link.c): the
 * protobuf unpack of a ShipBatchRequest, the whole-batch LZ4 decompression
 * (flag + raw_len, rep__ship_decode) and the batch check (jr_batch_verify);
 * the unpack of a CopyRegionsRequest and each region's range/LZ4/zero
 * decoding (rep__copy_region_data).  Any bytes must give an error code:
 * never a crash, an out-of-bounds access (ASan), or a large allocation from
 * a small message (libFuzzer -malloc_limit_mb / -rss_limit_mb).
 *
 * The same input is also taken as raw journal entries, LZ4-compressed and
 * packed into a request (with raw_len off by -1..+1 at times), so that the
 * mutator reaches the decompression and the batch check behind a valid
 * protobuf envelope.
 */
#include <errno.h>
#include <lz4.h>
#include <stdlib.h>
#include <string.h>

#include "replicator/rep_link.h"
#include "tlog.h"

#define RES(x) TANDEM__REPL__V1__RESULT__RESULT_##x

/* The decoded batch, checked as the receiver's jr_apply will see it. */
static void check_batch(const void *data, size_t len)
{
    uint64_t first = 0, last = 0;
    uint32_t n = 0;
    int rc = jr_batch_verify(data, len, &first, &last, &n);
    if (rc == 0 && n > 0 && (first == 0 || last < first ||
                             last - first + 1 != n))
        abort(); /* accepted entries are consecutive */
    if (rc == 0 && n == 0 && (first || last)) abort();
}

static void ship(const Tandem__Repl__V1__ShipBatchRequest *req,
                 const uint8_t *expect, size_t expect_len)
{
    const void *data = NULL;
    size_t len = 0;
    void *raw = NULL;
    char msg[400];
    int res = rep__ship_decode(req, &data, &len, &raw, msg, sizeof(msg));
    if (res == RES(OK)) {
        if (req->compression ==
            TANDEM__REPL__V1__COMPRESSION__COMPRESSION_LZ4) {
            if (!raw || data != raw || len != req->raw_len) abort();
        } else if (raw || len != req->entries.len) {
            abort();
        }
        if (expect && (len != expect_len || memcmp(data, expect, len)))
            abort(); /* round trip: decodes to what was compressed */
        if (len) check_batch(data, len);
    } else {
        if (res != RES(CORRUPT) && res != RES(ERROR)) abort();
        if (raw || !msg[0]) abort();
    }
    free(raw);
}

static void copy(const Tandem__Repl__V1__CopyRegionsRequest *req)
{
    /* Receiver image sizes: small, typical, and huge (offset overflow). */
    static const uint64_t sizes[] = {4096, 64ull << 20, UINT64_MAX};
    for (size_t i = 0; i < req->n_regions; i++) {
        const Tandem__Repl__V1__Region *g = req->regions[i];
        for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
            const void *p = NULL;
            void *raw = NULL;
            char msg[400] = "";
            int rc = rep__copy_region_data(g, sizes[s], &p, &raw, msg,
                                           sizeof(msg));
            if (rc == 0) {
                /* What the receiver then writes: length bytes at offset,
                 * inside the image. */
                if (!p || g->length == 0 || g->length > REP_COPY_CHUNK * 4 ||
                    g->offset >= sizes[s] ||
                    g->length > sizes[s] - g->offset)
                    abort();
                volatile uint8_t sink = ((const uint8_t *)p)[0] ^
                                        ((const uint8_t *)p)[g->length - 1];
                (void)sink;
                if (g->zero) {
                    for (uint64_t k = 0; k < g->length; k++)
                        if (((const uint8_t *)p)[k]) abort();
                }
            } else if (rc != -ENOMEM && !msg[0]) {
                abort(); /* a refusal says why */
            }
            free(raw);
        }
    }
}

/* Input as raw entries behind a valid LZ4 envelope. */
static void wrapped(const uint8_t *data, size_t size)
{
    if (size < 2 || size > (1u << 20)) return;
    int delta = (int)(data[0] % 3) - 1; /* raw_len off by -1, 0, +1 */
    const uint8_t *body = data + 1;
    size_t blen = size - 1;
    int bound = LZ4_compressBound((int)blen);
    char *c = malloc((size_t)bound);
    if (!c) abort();
    int cl = LZ4_compress_default((const char *)body, c, (int)blen, bound);
    if (cl <= 0) abort();
    Tandem__Repl__V1__ShipBatchRequest req =
        TANDEM__REPL__V1__SHIP_BATCH_REQUEST__INIT;
    req.volume_id = "v";
    req.from_region = "a";
    req.first_seq = 1;
    req.last_seq = 1;
    req.n_entries = 1;
    req.compression = TANDEM__REPL__V1__COMPRESSION__COMPRESSION_LZ4;
    req.entries.data = (uint8_t *)c;
    req.entries.len = (size_t)cl;
    req.raw_len = (uint64_t)((int64_t)blen + delta);
    /* Through the wire format, as the receiver gets it. */
    size_t plen = tandem__repl__v1__ship_batch_request__get_packed_size(&req);
    uint8_t *pb = malloc(plen ? plen : 1);
    if (!pb) abort();
    tandem__repl__v1__ship_batch_request__pack(&req, pb);
    free(c);
    Tandem__Repl__V1__ShipBatchRequest *u =
        tandem__repl__v1__ship_batch_request__unpack(NULL, plen, pb);
    free(pb);
    if (!u) abort();
    const void *d = NULL;
    size_t dl = 0;
    void *raw = NULL;
    char msg[400];
    int res = rep__ship_decode(u, &d, &dl, &raw, msg, sizeof(msg));
    if (delta == 0) {
        if (res != RES(OK) || dl != blen || memcmp(d, body, blen)) abort();
        check_batch(d, dl);
    } else if (res != RES(CORRUPT)) {
        abort(); /* a wrong raw_len never decodes */
    }
    free(raw);
    tandem__repl__v1__ship_batch_request__free_unpacked(u, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int init;
    if (!init) {
        /* Quiet: every refusal would log a line. */
        tlog_init("fuzz", (enum tlog_level)(TLOG_ERROR + 1));
        init = 1;
    }
    Tandem__Repl__V1__ShipBatchRequest *s =
        tandem__repl__v1__ship_batch_request__unpack(NULL, size, data);
    if (s) {
        ship(s, NULL, 0);
        tandem__repl__v1__ship_batch_request__free_unpacked(s, NULL);
    }
    Tandem__Repl__V1__CopyRegionsRequest *c =
        tandem__repl__v1__copy_regions_request__unpack(NULL, size, data);
    if (c) {
        copy(c);
        tandem__repl__v1__copy_regions_request__free_unpacked(c, NULL);
    }
    wrapped(data, size);
    return 0;
}
