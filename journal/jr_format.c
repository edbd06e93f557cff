/*
 * jr_format.c: the journal entry codec of journal/FORMAT.md §3 (encode,
 * decode with every check R-10..R-20 in the order the spec lists them),
 * CRC32C (SSE4.2 crc32 instruction when the CPU has it, slicing-by-8
 * tables otherwise), LZ4 payload framing, object names, error names.
 */
#include <errno.h>
#include <lz4.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jr_int.h"

/* ---- CRC32C ---- */
/* Hand-written on purpose: Debian 12 has no small, kept CRC32C library (zlib
 * has CRC-32, not Castagnoli); 60 lines with the hardware path, checked
 * against the RFC 3720 vectors in test-journal-format, beat a new dep. */

static uint32_t crc_tab[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;
static int crc_hw;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & -(c & 1));
        crc_tab[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_tab[t][i] = (crc_tab[t - 1][i] >> 8) ^
                            crc_tab[0][crc_tab[t - 1][i] & 0xff];
#if defined(__x86_64__)
    __builtin_cpu_init();
    crc_hw = __builtin_cpu_supports("sse4.2") && !getenv("TANDEM_CRC_SW");
#endif
}

/* Raw (no pre/post inversion) table update, slicing by 8. */
static uint32_t crc_sw_raw(uint32_t c, const uint8_t *p, size_t n)
{
    while (n && ((uintptr_t)p & 7)) {
        c = crc_tab[0][(c ^ *p++) & 0xff] ^ (c >> 8);
        n--;
    }
    while (n >= 8) {
        uint64_t w = jr__get64(p) ^ c;
        c = crc_tab[7][w & 0xff] ^ crc_tab[6][(w >> 8) & 0xff] ^
            crc_tab[5][(w >> 16) & 0xff] ^ crc_tab[4][(w >> 24) & 0xff] ^
            crc_tab[3][(w >> 32) & 0xff] ^ crc_tab[2][(w >> 40) & 0xff] ^
            crc_tab[1][(w >> 48) & 0xff] ^ crc_tab[0][w >> 56];
        p += 8;
        n -= 8;
    }
    while (n--) c = crc_tab[0][(c ^ *p++) & 0xff] ^ (c >> 8);
    return c;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t
crc_hw_raw(uint32_t c, const uint8_t *p, size_t n)
{
    uint64_t c64 = c;
    while (n && ((uintptr_t)p & 7)) {
        c64 = __builtin_ia32_crc32qi((uint32_t)c64, *p++);
        n--;
    }
    /* Three independent streams would hide the instruction's latency; one
     * stream already runs at ~8 bytes/3 cycles, far above store speed. */
    while (n >= 8) {
        c64 = __builtin_ia32_crc32di(c64, jr__get64(p));
        p += 8;
        n -= 8;
    }
    while (n--) c64 = __builtin_ia32_crc32qi((uint32_t)c64, *p++);
    return (uint32_t)c64;
}
#endif

uint32_t jr__crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
    pthread_once(&crc_once, crc_init);
    return ~crc_sw_raw(~crc, buf, len);
}

uint32_t jr_crc32c(uint32_t crc, const void *buf, size_t len)
{
    pthread_once(&crc_once, crc_init);
#if defined(__x86_64__)
    if (crc_hw) return ~crc_hw_raw(~crc, buf, len);
#endif
    return ~crc_sw_raw(~crc, buf, len);
}

/* ---- entries ---- */

void jr__hdr_encode(struct jr_entry *e, uint8_t *h)
{
    jr__put32(h + 0, JR_MAGIC);
    h[4] = JR_VERSION;
    h[5] = e->kind;
    jr__put16(h + 6, e->flags);
    jr__put64(h + 8, e->seq);
    jr__put64(h + 16, e->epoch);
    jr__put64(h + 24, e->off);
    jr__put64(h + 32, e->len);
    jr__put32(h + 40, e->plen);
    jr__put32(h + 44, e->member);
    jr__put64(h + 48, (uint64_t)e->ts_ns);
    jr__put32(h + 56, e->pcrc);
    e->hcrc = jr_crc32c(0, h, 60);
    jr__put32(h + 60, e->hcrc);
}

#define BAD(code, text)                                                       \
    do {                                                                      \
        if (why) *why = text;                                                 \
        return code;                                                          \
    } while (0)

int jr__entry_decode(const uint8_t *b, size_t n, struct jr_entry *e,
                     size_t *used, const char **why)
{
    /* a whole header must be there before any field is read. */
    if (n < JR_HDR_SIZE) BAD(JR_ECORRUPT, "truncated header (R-10)");
    /* */
    if (jr__get32(b) != JR_MAGIC) BAD(JR_ECORRUPT, "bad magic (R-11)");
    /* nothing else in the header is trusted before its CRC. */
    e->hcrc = jr__get32(b + 60);
    if (jr_crc32c(0, b, 60) != e->hcrc)
        BAD(JR_ECORRUPT, "header crc mismatch (R-12)");
    e->version = b[4];
    /* */
    if (e->version != JR_VERSION) BAD(JR_EVERSION, "unknown version (R-13)");
    e->kind = b[5];
    e->flags = jr__get16(b + 6);
    e->seq = jr__get64(b + 8);
    e->epoch = jr__get64(b + 16);
    e->off = jr__get64(b + 24);
    e->len = jr__get64(b + 32);
    e->plen = jr__get32(b + 40);
    e->member = jr__get32(b + 44);
    e->ts_ns = (int64_t)jr__get64(b + 48);
    e->pcrc = jr__get32(b + 56);
    /* */
    if (e->kind < JR_K_WRITE || e->kind > JR_K_LAST)
        BAD(JR_ECORRUPT, "unknown kind (R-14)");
    if (e->flags & ~JR_F_LZ4) BAD(JR_ECORRUPT, "unknown flag (R-14)");
    if ((e->flags & JR_F_LZ4) && e->kind != JR_K_WRITE)
        BAD(JR_ECORRUPT, "lz4 flag on a non-write (R-14)");
    if (e->member != 0 &&
        (e->kind != JR_K_GROUP || e->member >= JR_GROUP_MAX_MEMBERS))
        BAD(JR_ECORRUPT, "member != 0 (R-14)");
    /* */
    if (e->seq == 0 || e->epoch == 0) BAD(JR_ECORRUPT, "zero seq/epoch (R-15)");
    /* */
    switch (e->kind) {
    case JR_K_WRITE:
        if (e->len < 1 || e->len > JR_MAX_ENTRY_DATA)
            BAD(JR_ECORRUPT, "impossible write length (R-16)");
        if (e->flags & JR_F_LZ4) {
            if (e->plen < 1 || e->plen >= e->len)
                BAD(JR_ECORRUPT, "impossible lz4 payload length (R-16)");
        } else if (e->plen != e->len) {
            BAD(JR_ECORRUPT, "payload length != length (R-16)");
        }
        break;
    case JR_K_ZERO:
        if (e->len < 1 || e->plen != 0)
            BAD(JR_ECORRUPT, "impossible zero length (R-16)");
        break;
    case JR_K_RESIZE:
        if (e->len != 0 || e->plen != 0 || e->off < 1 ||
            e->off > JR_MAX_OFFSET)
            BAD(JR_ECORRUPT, "impossible resize (R-16)");
        break;
    case JR_K_FLUSH:
        if (e->off != 0 || e->len != 0 || e->plen != 0)
            BAD(JR_ECORRUPT, "impossible flush (R-16)");
        break;
    case JR_K_SNAP: /* "<id>" or "<id> <label>" */
        if (e->off != 0 || e->len != 0 || e->plen < 1 ||
            e->plen > JR_SNAP_PAYLOAD_MAX)
            BAD(JR_ECORRUPT, "impossible snapshot (R-16)");
        break;
    case JR_K_SNAP_DEL: /* "<id>" */
        if (e->off != 0 || e->len != 0 || e->plen < 1 ||
            e->plen > JR_MAX_SNAP_ID)
            BAD(JR_ECORRUPT, "impossible snapshot delete (R-16)");
        break;
    case JR_K_GROUP: /* */
        if (e->off != 0 || e->len != 0 || e->plen < 1 ||
            e->plen > JR_GROUP_PAYLOAD_MAX)
            BAD(JR_ECORRUPT, "impossible group entry (R-16)");
        break;
    }
    /* written so that it cannot overflow. */
    if ((e->kind == JR_K_WRITE || e->kind == JR_K_ZERO) &&
        (e->off > JR_MAX_OFFSET || e->len > JR_MAX_OFFSET - e->off))
        BAD(JR_ECORRUPT, "range beyond 2^60 (R-17)");
    /* */
    if (n - JR_HDR_SIZE < e->plen) BAD(JR_ECORRUPT, "truncated payload (R-18)");
    e->payload = b + JR_HDR_SIZE;
    /* */
    if (jr_crc32c(0, e->payload, e->plen) != e->pcrc)
        BAD(JR_ECORRUPT, "payload crc mismatch (R-19)");
    /* a snapshot payload names a valid id (and a printable label),
     * checked after its CRC like every payload byte. */
    if (e->kind == JR_K_SNAP || e->kind == JR_K_SNAP_DEL) {
        const uint8_t *sp = memchr(e->payload, ' ', e->plen);
        size_t idl = sp ? (size_t)(sp - e->payload) : e->plen;
        if (!jr__valid_snap_id((const char *)e->payload, idl))
            BAD(JR_ECORRUPT, "bad snapshot id (R-60)");
        if (sp && (e->kind == JR_K_SNAP_DEL ||
                   !jr__valid_snap_label((const char *)sp + 1,
                                         e->plen - idl - 1) ||
                   e->plen - idl - 1 == 0))
            BAD(JR_ECORRUPT, "bad snapshot label (R-60)");
    }
    if (e->kind == JR_K_GROUP && !jr__group_payload_ok(e->payload, e->plen))
        BAD(JR_ECORRUPT, "bad group entry payload (R-70)");
    *used = JR_HDR_SIZE + (size_t)e->plen;
    return 0;
}

int jr__entry_data(const struct jr_entry *e, uint8_t *out)
{
    if (e->kind != JR_K_WRITE) return -EINVAL;
    if (!(e->flags & JR_F_LZ4)) {
        memcpy(out, e->payload, e->len);
        return 0;
    }
    /* exactly len bytes, never more (the output is bounded). */
    int r = LZ4_decompress_safe((const char *)e->payload, (char *)out,
                                (int)e->plen, (int)e->len);
    if (r < 0 || (uint64_t)r != e->len) return JR_ECORRUPT;
    return 0;
}

size_t jr__compress(const uint8_t *src, size_t len, uint8_t *dst)
{
    /* only when at least 1/8 is saved; LZ4 gives up (returns 0) as
     * soon as the output would exceed the capacity. */
    if (len < 512 || len > JR_MAX_ENTRY_DATA) return 0;
    if (len > 64 * 1024) {
        /* Probe the first 16 KiB: data that does not compress there
         * (encrypted, already compressed) rarely does further on, and
         * skipping the attempt saves most of LZ4's time on it. */
        int pcap = 16 * 1024 - 2 * 1024;
        if (LZ4_compress_default((const char *)src, (char *)dst, 16 * 1024,
                                 pcap) <= 0)
            return 0;
    }
    int cap = (int)(len - len / 8);
    int r = LZ4_compress_default((const char *)src, (char *)dst, (int)len,
                                 cap);
    return r > 0 ? (size_t)r : 0;
}

/* ---- batches (public) ---- */

int jr_batch_verify(const void *data, size_t len, uint64_t *first,
                    uint64_t *last, uint32_t *n_entries)
{
    const uint8_t *p = data;
    size_t pos = 0;
    uint64_t f = 0, l = 0;
    uint32_t n = 0;
    while (pos < len) {
        struct jr_entry e;
        size_t used;
        const char *why = NULL;
        int r = jr__entry_decode(p + pos, len - pos, &e, &used, &why);
        if (r < 0) {
            tlog_warn("journal.batch_corrupt", "offset=%zu why=%s", pos,
                      tlog_q((char[96]){0}, 96, why));
            return r;
        }
        if (n > 0 && e.seq != l + 1) { /* */
            tlog_warn("journal.batch_gap",
                      "offset=%zu seq=%llu expected=%llu", pos,
                      (unsigned long long)e.seq, (unsigned long long)l + 1);
            return JR_EGAP;
        }
        if (e.kind == JR_K_WRITE && (e.flags & JR_F_LZ4)) {
            /* R-20 here too, so a batch that verifies applies. */
            uint8_t *tmp = malloc(e.len);
            if (!tmp) return -ENOMEM;
            r = jr__entry_data(&e, tmp);
            free(tmp);
            if (r < 0) {
                tlog_warn("journal.batch_corrupt",
                          "offset=%zu why=\"lz4 payload (R-20)\"", pos);
                return r;
            }
        }
        if (n == 0) f = e.seq;
        l = e.seq;
        n++;
        pos += used;
    }
    if (first) *first = f;
    if (last) *last = l;
    if (n_entries) *n_entries = n;
    return 0;
}

/* ---- names ---- */

int jr__valid_id(const char *id)
{
    if (!id) return 0;
    size_t n = strlen(id);
    if (n < 1 || n > JR_MAX_ID) return 0;
    /* "." and "..": path components wherever an id names a file */
    if (strspn(id, ".") == n) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

int jr__valid_peer(const char *peer)
{
    return peer && *peer && strlen(peer) <= JR_MAX_REGION &&
           !strchr(peer, ' ');
}

void jr__oid_header(char *buf, size_t n, const char *vol)
{
    snprintf(buf, n, "vol/%s", vol);
}

void jr__oid_data(char *buf, size_t n, const char *vol, uint64_t objno)
{
    snprintf(buf, n, "vol/%s/d/%016llx", vol, (unsigned long long)objno);
}

void jr__oid_snapobj(char *buf, size_t n, const char *vol, const char *snap,
                     uint64_t objno)
{
    snprintf(buf, n, "vol/%s/s/%s/%016llx", vol, snap,
             (unsigned long long)objno);
}

int jr__valid_snap_id(const char *id, size_t len)
{
    if (!id || len < 1 || len > JR_MAX_SNAP_ID) return 0;
    for (size_t i = 0; i < len; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

int jr__valid_snap_label(const char *s, size_t len)
{
    if (!s || len > JR_MAX_SNAP_LABEL) return 0;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e) return 0;
    return 1;
}

int jr__snap_payload(const char *id, const char *label, uint8_t *out)
{
    size_t il = id ? strlen(id) : 0, ll = label ? strlen(label) : 0;
    if (!jr__valid_snap_id(id, il) || !jr__valid_snap_label(label ? label : "", ll))
        return -EINVAL;
    memcpy(out, id, il);
    if (ll) {
        out[il] = ' ';
        memcpy(out + il + 1, label, ll);
        return (int)(il + 1 + ll);
    }
    return (int)il;
}

void jr__oid_journal(char *buf, size_t n, const char *vol, uint64_t jno)
{
    snprintf(buf, n, "vol/%s/j/%016llx", vol, (unsigned long long)jno);
}

const char *jr_strerror(int err)
{
    switch (err) {
    case 0: return "success";
    case JR_ECORRUPT: return "corrupt journal entry";
    case JR_EGAP: return "sequence gap in journal";
    case JR_ESTALE: return "stale epoch";
    case JR_EROLE: return "not allowed in this role";
    case JR_ELOCKED: return "volume is open for writing elsewhere";
    case JR_ETRIMMED: return "journal entries were trimmed";
    case JR_EVERSION: return "unknown format version";
    case JR_EDIVERGED: return "replica diverged from the primary's journal";
    }
    if (err < 0 && err > -4096) return strerror(-err);
    return "unknown error";
}

const char *jr_role_name(int role)
{
    switch (role) {
    case JR_ROLE_PRIMARY: return "primary";
    case JR_ROLE_SECONDARY: return "secondary";
    }
    return "unknown";
}
