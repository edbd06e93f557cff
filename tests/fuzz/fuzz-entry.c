/*
 * fuzz-entry.c: libFuzzer target for the journal entry decoder
 * (FORMAT.md §3): any input is decoded as a stream of entries, as a batch
 * (jr_batch_verify) and as a journal object (jr__jobj_parse); accepted
 * entries must satisfy every R-1x invariant, and LZ4 payloads must expand
 * to exactly their length or be refused.  The same bytes, as text, go to
 * the header value decoders (FORMAT.md §2): a u64 field parses only when
 * it prints back to the same digits, and a writer lease only into
 * bounded fields.  Never crashes, never reads out of bounds (ASan), never
 * allocates more than the entry bound.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jr_int.h"
#include "tlog.h"

static int check_cb(const struct jr_entry *e, const uint8_t *raw, size_t rl,
                    void *arg)
{
    if (rl != JR_HDR_SIZE + e->plen) abort();
    return 0;
}

/* Fix up the CRCs of every entry in a copy, so that the fuzzer reaches
 * the field checks behind instead of stopping there. */
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

static void decode_all(const uint8_t *data, size_t size);

/* Header values are text: the input up to its first NUL. */
static void header_values(const uint8_t *data, size_t size)
{
    char s[512];
    size_t n = size < sizeof s - 1 ? size : sizeof s - 1;
    memcpy(s, data, n);
    s[n] = 0;
    uint64_t v = 0;
    if (jr__parse_u64(s, &v) == 0) {
        /* The digits run (leading zeros aside) is v printed back, and
         * ends the value or a space-separated field. */
        const char *d = s;
        size_t k = strspn(s, "0123456789");
        if (k == 0 || (s[k] && s[k] != ' ')) abort();
        while (k > 1 && *d == '0') {
            d++;
            k--;
        }
        char b[32];
        int m = snprintf(b, sizeof b, "%" PRIu64, v);
        if ((size_t)m != k || memcmp(b, d, k) != 0) abort();
    } else {
        /* Refused: not digits first, or more than 2^64 - 1. */
        size_t k = strspn(s, "0123456789");
        if (k > 0 && (!s[k] || s[k] == ' ')) {
            const char *d = s;
            while (k > 20 && *d == '0') {
                d++;
                k--;
            }
            if (k < 20 || (k == 20 && memcmp(d, "18446744073709551615", 20) <= 0))
                abort(); /* a u64 that should have parsed */
        }
    }
    struct jr__lease l;
    if (jr__lease_parse(s, &l) == 0) {
        if (!l.token[0] || strlen(l.token) >= sizeof l.token) abort();
        if (!l.fid[0] || strchr(l.fid, ' ')) abort();
        if (strlen(l.owner) >= sizeof l.owner) abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    header_values(data, size);
    decode_all(data, size);
    if (size > 0 && size <= (1u << 20)) {
        uint8_t *copy = malloc(size);
        if (!copy) abort();
        memcpy(copy, data, size);
        reseal(copy, size);
        decode_all(copy, size);
        free(copy);
    }
    return 0;
}

static void decode_all(const uint8_t *data, size_t size)
{
    static int init;
    if (!init) {
        /* Quiet: every refusal would log a line. */
        tlog_init("fuzz", (enum tlog_level)(TLOG_ERROR + 1));
        init = 1;
    }
    size_t pos = 0;
    while (pos < size) {
        struct jr_entry e;
        size_t used = 0;
        const char *why = NULL;
        int r = jr__entry_decode(data + pos, size - pos, &e, &used, &why);
        if (r < 0) {
            if (!why) abort(); /* every refusal names its requirement */
            break;
        }
        /* What the decoder accepted satisfies FORMAT.md. */
        if (used < JR_HDR_SIZE || used > size - pos) abort();
        if (e.seq == 0 || e.epoch == 0 || e.member != 0) abort();
        if (e.kind < JR_K_WRITE || e.kind > JR_K_LAST) abort();
        if (e.kind == JR_K_WRITE) {
            if (e.len == 0 || e.len > JR_MAX_ENTRY_DATA) abort();
            uint8_t *out = malloc(e.len);
            if (!out) abort();
            r = jr__entry_data(&e, out);
            if (!(e.flags & JR_F_LZ4) && r != 0) abort();
            if (r == 0 && !(e.flags & JR_F_LZ4) &&
                memcmp(out, e.payload, e.len) != 0)
                abort();
            free(out);
        } else if (e.kind == JR_K_SNAP || e.kind == JR_K_SNAP_DEL) {
            /* an id of valid bytes, then (kind 5) " <label>" */
            if (e.off != 0 || e.len != 0 || e.plen < 1 ||
                e.plen > JR_SNAP_PAYLOAD_MAX)
                abort();
            const uint8_t *sp = memchr(e.payload, ' ', e.plen);
            size_t idl = sp ? (size_t)(sp - e.payload) : e.plen;
            if (!jr__valid_snap_id((const char *)e.payload, idl)) abort();
            if (sp && (e.kind != JR_K_SNAP || idl + 1 >= e.plen)) abort();
        } else if (e.plen != 0) {
            abort();
        }
        pos += used;
    }
    uint64_t f, l;
    uint32_t n;
    jr_batch_verify(data, size, &f, &l, &n);
    if (size >= JR_HDR_SIZE) {
        uint64_t first = jr__get64(data + 8);
        jr__jobj_parse("fuzz", 0, data, size, first, check_cb, NULL);
    }
}
