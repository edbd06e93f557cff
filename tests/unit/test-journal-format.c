/*
 * test-journal-format.c: the entry codec against journal/FORMAT.md: field
 * layout, CRC32C known vectors (hardware and table paths agree), LZ4 round
 * trips, and every corruption class of R-10..R-21 rejected.
 */
#include <lz4.h>

#include "jr_int.h"
#include "tt.h"

static uint32_t crc_ref(const void *buf, size_t n)
{
    const uint8_t *p = buf;
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & -(c & 1));
    }
    return ~c;
}

TEST(crc32c_known_vectors)
{
    ASSERT_UEQ(jr_crc32c(0, "123456789", 9), 0xE3069283u);
    ASSERT_UEQ(jr__crc32c_sw(0, "123456789", 9), 0xE3069283u);
    ASSERT_UEQ(jr_crc32c(0, "", 0), 0);
    uint8_t z[32] = {0}, f[32];
    memset(f, 0xff, sizeof f);
    /* RFC 3720 B.4 test vectors. */
    ASSERT_UEQ(jr_crc32c(0, z, 32), 0x8A9136AAu);
    ASSERT_UEQ(jr_crc32c(0, f, 32), 0x62A8AB43u);
    uint8_t inc[32];
    for (int i = 0; i < 32; i++) inc[i] = (uint8_t)i;
    ASSERT_UEQ(jr_crc32c(0, inc, 32), 0x46DD794Eu);
}

TEST(crc32c_hw_equals_table_any_alignment)
{
    uint8_t buf[4096 + 16];
    srand(7);
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)rand();
    for (int a = 0; a < 8; a++)
        for (size_t n = 0; n < 300; n += 7) {
            uint32_t hw = jr_crc32c(0, buf + a, n);
            ASSERT_UEQ(hw, jr__crc32c_sw(0, buf + a, n));
            ASSERT_UEQ(hw, crc_ref(buf + a, n));
        }
    /* Incremental == one shot. */
    uint32_t c = jr_crc32c(0, buf, 1000);
    c = jr_crc32c(c, buf + 1000, 3096);
    ASSERT_UEQ(c, jr_crc32c(0, buf, 4096));
}

/* Build one encoded entry; payload given raw, compressed if asked. */
static size_t mk(uint8_t *out, uint8_t kind, uint64_t seq, uint64_t off,
                 uint64_t len, const uint8_t *data, int try_lz4)
{
    struct jr_entry e = {.kind = kind, .seq = seq, .epoch = 3, .off = off,
                         .len = len, .ts_ns = 1234567890123};
    size_t plen = 0;
    if (kind == JR_K_WRITE) {
        size_t c = try_lz4 ? jr__compress(data, len, out + JR_HDR_SIZE) : 0;
        if (c) {
            e.flags = JR_F_LZ4;
            plen = c;
        } else {
            memcpy(out + JR_HDR_SIZE, data, len);
            plen = len;
        }
    }
    e.plen = (uint32_t)plen;
    e.pcrc = jr_crc32c(0, out + JR_HDR_SIZE, plen);
    jr__hdr_encode(&e, out);
    return JR_HDR_SIZE + plen;
}

TEST(layout_matches_format_md)
{
    uint8_t buf[JR_HDR_SIZE + 16];
    uint8_t d[16] = "0123456789abcdef";
    size_t n = mk(buf, JR_K_WRITE, 42, 4096, 16, d, 0);
    ASSERT_EQ(n, 80);
    ASSERT(memcmp(buf, "TDJ1", 4) == 0); /* §3 offset 0 */
    ASSERT_EQ(buf[4], 1);                /* version */
    ASSERT_EQ(buf[5], 1);                /* kind write */
    ASSERT_EQ(jr__get16(buf + 6), 0);
    ASSERT_UEQ(jr__get64(buf + 8), 42);
    ASSERT_UEQ(jr__get64(buf + 16), 3);
    ASSERT_UEQ(jr__get64(buf + 24), 4096);
    ASSERT_UEQ(jr__get64(buf + 32), 16);
    ASSERT_UEQ(jr__get32(buf + 40), 16);
    ASSERT_UEQ(jr__get32(buf + 44), 0);
    ASSERT_UEQ(jr__get64(buf + 48), 1234567890123ull);
    ASSERT_UEQ(jr__get32(buf + 56), jr_crc32c(0, d, 16));
    ASSERT_UEQ(jr__get32(buf + 60), jr_crc32c(0, buf, 60));
    ASSERT_MEMEQ(buf + 64, d, 16);
    struct jr_entry e;
    size_t used;
    ASSERT_EQ(jr__entry_decode(buf, n, &e, &used, NULL), 0);
    ASSERT_EQ(used, n);
    ASSERT_UEQ(e.seq, 42);
    ASSERT_UEQ(e.off, 4096);
    ASSERT_EQ(e.ts_ns, 1234567890123ll);
}

TEST(lz4_round_trips)
{
    size_t sizes[] = {512, 4096, 65536, 1 << 20, JR_MAX_ENTRY_DATA};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        size_t len = sizes[s];
        uint8_t *d = malloc(len), *enc = malloc(JR_HDR_SIZE + len),
                *back = malloc(len);
        for (size_t i = 0; i < len; i++) /* 2:1-ish compressible */
            d[i] = (i % 256) < 128 ? (uint8_t)rand() : 0;
        size_t n = mk(enc, JR_K_WRITE, 1, 0, len, d, 1);
        ASSERT_LT(n, JR_HDR_SIZE + len); /* it paid */
        struct jr_entry e;
        size_t used;
        ASSERT_EQ(jr__entry_decode(enc, n, &e, &used, NULL), 0);
        ASSERT(e.flags & JR_F_LZ4);
        ASSERT_EQ(jr__entry_data(&e, back), 0);
        ASSERT_MEMEQ(back, d, len);
        /* Incompressible: stored raw. */
        for (size_t i = 0; i < len; i++) d[i] = (uint8_t)rand();
        n = mk(enc, JR_K_WRITE, 1, 0, len, d, 1);
        ASSERT_EQ(n, JR_HDR_SIZE + len);
        ASSERT_EQ(jr__entry_decode(enc, n, &e, &used, NULL), 0);
        ASSERT_EQ(e.flags, 0);
        ASSERT_EQ(jr__entry_data(&e, back), 0);
        ASSERT_MEMEQ(back, d, len);
        free(d);
        free(enc);
        free(back);
    }
}

/* Re-seal the header CRC after tampering with a field, so the check under
 * test (not R-12) is what rejects it. */
static void reseal(uint8_t *b)
{
    jr__put32(b + 60, jr_crc32c(0, b, 60));
}

static int dec(const uint8_t *b, size_t n, const char **why)
{
    struct jr_entry e;
    size_t used;
    return jr__entry_decode(b, n, &e, &used, why);
}

#define REJECT(buf, n, code, req)                                             \
    do {                                                                      \
        const char *w_ = NULL;                                                \
        ASSERT_EQ(dec(buf, n, &w_), code);                                    \
        ASSERT(w_ && strstr(w_, req));                                        \
    } while (0)

TEST(each_corruption_class_rejected)
{
    uint8_t d[4096], b[JR_HDR_SIZE + 4096], t[sizeof b];
    for (size_t i = 0; i < sizeof d; i++) d[i] = (uint8_t)rand();
    size_t n = mk(b, JR_K_WRITE, 9, 8192, sizeof d, d, 0);
    ASSERT_EQ(dec(b, n, NULL), 0);

    REJECT(b, 63, JR_ECORRUPT, "R-10");
    REJECT(b, 0, JR_ECORRUPT, "R-10");
    memcpy(t, b, n); t[0] ^= 1;
    REJECT(t, n, JR_ECORRUPT, "R-11");
    memcpy(t, b, n); t[20] ^= 1; /* any header bit */
    REJECT(t, n, JR_ECORRUPT, "R-12");
    memcpy(t, b, n); t[4] = 2; reseal(t);
    REJECT(t, n, JR_EVERSION, "R-13");
    memcpy(t, b, n); t[5] = 9; reseal(t);
    REJECT(t, n, JR_ECORRUPT, "R-14");
    memcpy(t, b, n); t[5] = 0; reseal(t);
    REJECT(t, n, JR_ECORRUPT, "R-14");
    memcpy(t, b, n); jr__put16(t + 6, 2); reseal(t);
    REJECT(t, n, JR_ECORRUPT, "R-14");
    memcpy(t, b, n); jr__put32(t + 44, 1); reseal(t);
    REJECT(t, n, JR_ECORRUPT, "R-14");
    memcpy(t, b, n); jr__put64(t + 8, 0); reseal(t);
    REJECT(t, n, JR_ECORRUPT, "R-15");
    memcpy(t, b, n); jr__put64(t + 16, 0); reseal(t);
    REJECT(t, n, JR_ECORRUPT, "R-15");
    /* impossible lengths. */
    memcpy(t, b, n); jr__put64(t + 32, JR_MAX_ENTRY_DATA + 1ull); reseal(t);
    REJECT(t, n, JR_ECORRUPT, "R-16");
    memcpy(t, b, n); jr__put32(t + 40, 4095); reseal(t);
    REJECT(t, n, JR_ECORRUPT, "R-16");
    memcpy(t, b, n); jr__put32(t + 40, 0xFFFFFFFFu); reseal(t);
    REJECT(t, n, JR_ECORRUPT, "R-16");
    memcpy(t, b, n); jr__put16(t + 6, JR_F_LZ4); reseal(t); /* plen==len */
    REJECT(t, n, JR_ECORRUPT, "R-16");
    uint8_t z[JR_HDR_SIZE];
    mk(z, JR_K_ZERO, 1, 0, 0, NULL, 0);
    REJECT(z, sizeof z, JR_ECORRUPT, "R-16");
    mk(z, JR_K_RESIZE, 1, 0, 0, NULL, 0);
    REJECT(z, sizeof z, JR_ECORRUPT, "R-16");
    mk(z, JR_K_FLUSH, 1, 5, 0, NULL, 0);
    REJECT(z, sizeof z, JR_ECORRUPT, "R-16");
    mk(z, JR_K_ZERO, 1, 0, 10, NULL, 0);
    jr__put16(z + 6, JR_F_LZ4); reseal(z);
    REJECT(z, sizeof z, JR_ECORRUPT, "R-14");
    /* ranges that would overflow. */
    mk(z, JR_K_ZERO, 1, UINT64_MAX - 5, 10, NULL, 0);
    REJECT(z, sizeof z, JR_ECORRUPT, "R-17");
    mk(z, JR_K_ZERO, 1, JR_MAX_OFFSET - 5, 10, NULL, 0);
    REJECT(z, sizeof z, JR_ECORRUPT, "R-17");
    /* */
    REJECT(b, n - 1, JR_ECORRUPT, "R-18");
    memcpy(t, b, n); t[JR_HDR_SIZE + 100] ^= 0x40;
    REJECT(t, n, JR_ECORRUPT, "R-19");
    /* Valid small kinds decode. */
    mk(z, JR_K_ZERO, 1, 0, 10, NULL, 0);
    ASSERT_EQ(dec(z, sizeof z, NULL), 0);
    mk(z, JR_K_RESIZE, 1, 1 << 20, 0, NULL, 0);
    ASSERT_EQ(dec(z, sizeof z, NULL), 0);
    mk(z, JR_K_FLUSH, 1, 0, 0, NULL, 0);
    ASSERT_EQ(dec(z, sizeof z, NULL), 0);
}

TEST(lz4_payload_must_decompress_exactly)
{
    /* a well-formed, CRC-correct entry whose LZ4 payload expands to
     * the wrong length is refused by jr__entry_data and jr_batch_verify. */
    uint8_t d[8192], b[JR_HDR_SIZE + 8192];
    memset(d, 'a', sizeof d);
    size_t n = mk(b, JR_K_WRITE, 1, 0, sizeof d, d, 1);
    ASSERT_LT(n, 1000);
    jr__put64(b + 32, sizeof d - 1); /* claim one byte less */
    reseal(b);
    struct jr_entry e;
    size_t used;
    ASSERT_EQ(jr__entry_decode(b, n, &e, &used, NULL), 0);
    uint8_t out[8192];
    ASSERT_EQ(jr__entry_data(&e, out), JR_ECORRUPT);
    ASSERT_EQ(jr_batch_verify(b, n, NULL, NULL, NULL), JR_ECORRUPT);
}

TEST(batch_verify_sequences)
{
    uint8_t b[4 * JR_HDR_SIZE];
    size_t n = 0;
    n += mk(b + n, JR_K_ZERO, 5, 0, 1, NULL, 0);
    n += mk(b + n, JR_K_FLUSH, 6, 0, 0, NULL, 0);
    n += mk(b + n, JR_K_RESIZE, 7, 99, 0, NULL, 0);
    uint64_t f, l;
    uint32_t c;
    ASSERT_EQ(jr_batch_verify(b, n, &f, &l, &c), 0);
    ASSERT_UEQ(f, 5);
    ASSERT_UEQ(l, 7);
    ASSERT_EQ(c, 3);
    ASSERT_EQ(jr_batch_verify(b, 0, &f, &l, &c), 0);
    ASSERT_EQ(c, 0);
    /* a gap. */
    mk(b + JR_HDR_SIZE, JR_K_FLUSH, 8, 0, 0, NULL, 0);
    ASSERT_EQ(jr_batch_verify(b, n, NULL, NULL, NULL), JR_EGAP);
    /* R-10 on a trailing partial entry. */
    ASSERT_EQ(jr_batch_verify(b, JR_HDR_SIZE + 10, NULL, NULL, NULL),
              JR_ECORRUPT);
}

TEST(random_bit_flips_never_accepted_silently)
{
    /* Any single flipped bit in a valid entry is caught (CRCs cover every
     * byte), and the decoder never reads past the buffer (run under ASan). */
    uint8_t d[300], b[JR_HDR_SIZE + 300], t[sizeof b];
    for (size_t i = 0; i < sizeof d; i++) d[i] = (uint8_t)rand();
    size_t n = mk(b, JR_K_WRITE, 77, 0, sizeof d, d, 0);
    for (size_t bit = 0; bit < n * 8; bit++) {
        memcpy(t, b, n);
        t[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        ASSERT(dec(t, n, NULL) < 0);
    }
}

TEST(names_and_ids)
{
    ASSERT(jr__valid_id("pvc-1234.a_b"));
    ASSERT(!jr__valid_id(""));
    ASSERT(!jr__valid_id("a/b"));
    ASSERT(!jr__valid_id("a b"));
    char big[JR_MAX_ID + 2];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = 0;
    ASSERT(!jr__valid_id(big));
    big[JR_MAX_ID] = 0;
    ASSERT(jr__valid_id(big));
    char oid[JR_OID_MAX];
    jr__oid_data(oid, sizeof oid, "v1", 0x1f);
    ASSERT_STREQ(oid, "vol/v1/d/000000000000001f");
    jr__oid_journal(oid, sizeof oid, "v1", 2);
    ASSERT_STREQ(oid, "vol/v1/j/0000000000000002");
    jr__oid_header(oid, sizeof oid, "v1");
    ASSERT_STREQ(oid, "vol/v1");
    ASSERT_STREQ(jr_strerror(JR_EGAP), "sequence gap in journal");
    ASSERT_STREQ(jr_role_name(JR_ROLE_SECONDARY), "secondary");
}

/* Header values (FORMAT.md §2, decimal ASCII): every u64 written with
 * PRIu64 parses back to itself, 2^64 - 1 included; nothing outside the
 * range, no sign, no empty field parses. */
static void u64_round_trip(uint64_t x)
{
    char b[32];
    uint64_t y = 1;
    snprintf(b, sizeof b, "%" PRIu64, x);
    if (jr__parse_u64(b, &y) != 0 || y != x)
        TT_FAIL("%s parsed as %" PRIu64, b, y);
    snprintf(b, sizeof b, "%" PRIu64 " 7", x); /* a field of a value */
    y = 1;
    if (jr__parse_u64(b, &y) != 0 || y != x)
        TT_FAIL("\"%s\" parsed as %" PRIu64, b, y);
}

TEST(u64_header_values_round_trip)
{
    for (uint64_t x = 0; x < 1000; x++) u64_round_trip(x);
    for (uint64_t k = 0; k < 1000; k++) u64_round_trip(UINT64_MAX - k);
    for (int s = 0; s < 64; s++) {
        uint64_t p = 1ull << s;
        u64_round_trip(p - 1);
        u64_round_trip(p);
        u64_round_trip(p + 1);
    }
    uint64_t t = 1;
    for (int i = 0; i < 20; i++, t *= 10) {
        u64_round_trip(t - 1);
        u64_round_trip(t);
        u64_round_trip(t + 1);
    }
    /* Just below the largest value by each last digit, and the top
     * prefixes: 1844674407370955161x for x = 0..5. */
    for (uint64_t d = 0; d <= 5; d++) u64_round_trip(18446744073709551610ull + d);
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < 100000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        u64_round_trip(x);
        u64_round_trip(x >> (x & 63));
    }
    const char *bad[] = {"", " ", " 1", "-1", "+1", "1x", "0x10", "1.5",
                         "18446744073709551616", "18446744073709551620",
                         "18446744073709551699", "99999999999999999999",
                         "184467440737095516150", "100000000000000000000"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        uint64_t y = 42;
        if (jr__parse_u64(bad[i], &y) == 0)
            TT_FAIL("\"%s\" parsed (as %" PRIu64 ")", bad[i], y);
        ASSERT_UEQ(y, 42); /* untouched */
    }
    uint64_t y = 0;
    ASSERT_OK(jr__parse_u64("00000000000000000000000018446744073709551615",
                            &y));
    ASSERT_UEQ(y, UINT64_MAX); /* leading zeros are digits, not overflow */
    ASSERT_EQ(jr__parse_u64(NULL, &y), -EINVAL);
}


/* A snapshot entry (kind 5 or 6) with the given payload bytes. */
static size_t mksnap(uint8_t *out, uint8_t kind, uint64_t seq,
                     const void *pl, size_t plen)
{
    struct jr_entry e = {.kind = kind, .seq = seq, .epoch = 3,
                         .ts_ns = 1234567890123, .plen = (uint32_t)plen};
    memcpy(out + JR_HDR_SIZE, pl, plen);
    e.pcrc = jr_crc32c(0, out + JR_HDR_SIZE, plen);
    jr__hdr_encode(&e, out);
    return JR_HDR_SIZE + plen;
}

static int count_region(uint64_t off, uint64_t len, void *arg)
{
    (*(int *)arg)++;
    return 0;
}

/* Group entries (kind 7, FORMAT.md §6): member index, R-16, R-70. */
TEST(group_entries_r70)
{
    uint8_t b[JR_HDR_SIZE + 4096], t[sizeof b];
    const char *mk = "m grp 12 0000000000000005 1:40";
    size_t n = mksnap(b, JR_K_GROUP, 9, mk, strlen(mk));
    struct jr_entry e;
    size_t used;
    ASSERT_OK(jr__entry_decode(b, n, &e, &used, NULL));
    ASSERT_EQ(e.kind, JR_K_GROUP);
    ASSERT_EQ(used, n);
    /* A member index up to 63 on a group entry; never on other kinds. */
    memcpy(t, b, n); jr__put32(t + 44, 63); reseal(t);
    ASSERT_OK(jr__entry_decode(t, n, &e, &used, NULL));
    ASSERT_EQ(e.member, 63u);
    memcpy(t, b, n); jr__put32(t + 44, 64); reseal(t);
    REJECT(t, n, JR_ECORRUPT, "R-14");
    n = mksnap(b, JR_K_SNAP, 4, "s1", 2);
    memcpy(t, b, n); jr__put32(t + 44, 1); reseal(t);
    REJECT(t, n, JR_ECORRUPT, "R-14");
    /* no offset, no length, a payload of 1..2048 bytes. */
    n = mksnap(b, JR_K_GROUP, 9, mk, strlen(mk));
    memcpy(t, b, n); jr__put64(t + 24, 1); reseal(t);
    REJECT(t, n, JR_ECORRUPT, "R-16");
    memcpy(t, b, n); jr__put64(t + 32, 1); reseal(t);
    REJECT(t, n, JR_ECORRUPT, "R-16");
    n = mksnap(b, JR_K_GROUP, 9, "", 0);
    REJECT(b, n, JR_ECORRUPT, "R-16");
    char big[2100];
    memset(big, 'a', sizeof big);
    memcpy(big, "c ", 2);
    n = mksnap(b, JR_K_GROUP, 9, big, 2049);
    REJECT(b, n, JR_ECORRUPT, "R-16");
    n = mksnap(b, JR_K_GROUP, 9, big, 2048);
    ASSERT_OK(jr__entry_decode(b, n, &e, &used, NULL));
    /* "m " or "c ", printable. */
    n = mksnap(b, JR_K_GROUP, 9, "x grp 1", 7);
    REJECT(b, n, JR_ECORRUPT, "R-70");
    n = mksnap(b, JR_K_GROUP, 9, "c gr\x01 1", 8);
    REJECT(b, n, JR_ECORRUPT, "R-70");
    n = mksnap(b, JR_K_GROUP, 9, "c g", 3);
    REJECT(b, n, JR_ECORRUPT, "R-70");
}

TEST(snapshot_entries_r60)
{
    uint8_t b[JR_HDR_SIZE + 1024], t[sizeof b];
    char pl[1024];
    struct jr_entry e;
    size_t used;
    /* Valid: id alone, id + label, delete; the payload is the id. */
    size_t n = mksnap(b, JR_K_SNAP, 4, "s-1_A", 5);
    ASSERT_EQ(jr__entry_decode(b, n, &e, &used, NULL), 0);
    ASSERT_EQ(e.kind, 5);
    ASSERT_EQ(used, n);
    ASSERT_MEMEQ(e.payload, "s-1_A", 5);
    n = mksnap(b, JR_K_SNAP, 4, "s1 default/my snap", 18);
    ASSERT_EQ(dec(b, n, NULL), 0);
    n = mksnap(b, JR_K_SNAP_DEL, 4, "s1", 2);
    ASSERT_EQ(dec(b, n, NULL), 0);
    memset(pl, 'a', 64);
    pl[64] = ' ';
    memset(pl + 65, 'L', 512);
    n = mksnap(b, JR_K_SNAP, 4, pl, 64 + 1 + 512); /* the longest */
    ASSERT_EQ(dec(b, n, NULL), 0);
    ASSERT_EQ(jr__snap_payload("s1", "default/my snap", (uint8_t *)t), 18);
    ASSERT_MEMEQ(t, "s1 default/my snap", 18);
    ASSERT_EQ(jr__snap_payload("s.1", NULL, (uint8_t *)t), -EINVAL);
    /* lengths */
    n = mksnap(b, JR_K_SNAP, 4, pl, 64 + 1 + 513);
    REJECT(b, n, JR_ECORRUPT, "R-16");
    n = mksnap(b, JR_K_SNAP, 4, "", 0);
    REJECT(b, n, JR_ECORRUPT, "R-16");
    n = mksnap(b, JR_K_SNAP_DEL, 4, pl, 65);
    REJECT(b, n, JR_ECORRUPT, "R-16");
    n = mksnap(b, JR_K_SNAP, 4, "s1", 2);
    memcpy(t, b, n); jr__put64(t + 24, 1); reseal(t); /* offset != 0 */
    REJECT(t, n, JR_ECORRUPT, "R-16");
    memcpy(t, b, n); jr__put64(t + 32, 2); reseal(t); /* length != 0 */
    REJECT(t, n, JR_ECORRUPT, "R-16");
    memcpy(t, b, n); jr__put16(t + 6, JR_F_LZ4); reseal(t);
    REJECT(t, n, JR_ECORRUPT, "R-14");
    memcpy(t, b, n); t[5] = 8; reseal(t);
    REJECT(t, n, JR_ECORRUPT, "R-14");
    /* R-19 before R-60: a flipped payload byte is a CRC mismatch */
    memcpy(t, b, n); t[JR_HDR_SIZE] ^= 0x40;
    REJECT(t, n, JR_ECORRUPT, "R-19");
    /* the payload's syntax */
    n = mksnap(b, JR_K_SNAP, 4, "s.1", 3);
    REJECT(b, n, JR_ECORRUPT, "R-60");
    n = mksnap(b, JR_K_SNAP, 4, " s1", 3);
    REJECT(b, n, JR_ECORRUPT, "R-60");
    n = mksnap(b, JR_K_SNAP, 4, "s1 ", 3); /* a space, no label */
    REJECT(b, n, JR_ECORRUPT, "R-60");
    n = mksnap(b, JR_K_SNAP, 4, "s1 a\nb", 6);
    REJECT(b, n, JR_ECORRUPT, "R-60");
    n = mksnap(b, JR_K_SNAP, 4, "s1 \x80", 4);
    REJECT(b, n, JR_ECORRUPT, "R-60");
    n = mksnap(b, JR_K_SNAP_DEL, 4, "s1 x", 4); /* no label on a delete */
    REJECT(b, n, JR_ECORRUPT, "R-60");
    n = mksnap(b, JR_K_SNAP_DEL, 4, "s\0", 2);
    REJECT(b, n, JR_ECORRUPT, "R-60");
    /* In a batch: verified, and they touch no image range. */
    uint8_t bt[4 * (JR_HDR_SIZE + 16)];
    size_t m = 0;
    m += mk(bt + m, JR_K_ZERO, 5, 4096, 10, NULL, 0);
    m += mksnap(bt + m, JR_K_SNAP, 6, "a", 1);
    m += mksnap(bt + m, JR_K_SNAP_DEL, 7, "a", 1);
    uint32_t c = 0;
    ASSERT_EQ(jr_batch_verify(bt, m, NULL, NULL, &c), 0);
    ASSERT_EQ(c, 3);
    int regions = 0;
    ASSERT_EQ(jr_batch_regions(bt, m, count_region, &regions), 0);
    ASSERT_EQ(regions, 1);
}

TT_MAIN()
