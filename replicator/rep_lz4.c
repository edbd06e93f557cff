/*
 * rep_lz4.c: LZ4 block helpers for batches and region copies.  The
 * decoder distrusts the sender's lengths (they come from the wire).
 *
 * Compress once: a batch is the journal's entries as stored (FORMAT.md
 * §3), whose write payloads the journal already LZ4-compressed where that
 * paid.  rep__lz4_batch therefore never compresses a batch whose
 * bytes are mostly such payloads, and, like the journal's entry path,
 * samples what is left before spending a full pass on it.  The wire
 * format does not change: a batch that is not compressed is sent with
 * COMPRESSION_NONE, which every receiver decodes.
 */
#include <errno.h>
#include <lz4.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rep_int.h"

/* Full LZ4 passes made (rep__lz4_passes). */
static uint64_t passes;

uint64_t rep__lz4_passes(void)
{
    return __atomic_load_n(&passes, __ATOMIC_RELAXED);
}

/* The probe: 16 KiB, as the journal's entry path (jr_format.c). */
#define PROBE (16u * 1024)

/* Does a PROBE-byte (or shorter) sample save at least 1/8?  A full LZ4
 * pass over data that does not compress costs about as much as one over
 * data that does; the probe costs 1/500 of an 8 MiB batch. */
static int probe_saves(const void *src, size_t len)
{
    char dst[PROBE];
    int cap = (int)(len - len / 8);
    return LZ4_compress_default(src, dst, (int)len, cap) > 0;
}

int rep__lz4(const void *src, size_t len, void **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    if (len == 0 || len > (size_t)LZ4_MAX_INPUT_SIZE) return 0;
    /* Large inputs: probe the start first (as R-23's writers do). */
    if (len > 4 * PROBE && !probe_saves(src, PROBE)) return 0;
    int bound = LZ4_compressBound((int)len);
    char *dst = malloc((size_t)bound);
    if (!dst) return -ENOMEM;
    __atomic_add_fetch(&passes, 1, __ATOMIC_RELAXED);
    int n = LZ4_compress_default(src, dst, (int)len, bound);
    /* Only when it saves at least 1/8 (as the journal does, R-23). */
    if (n <= 0 || (size_t)n > len - len / 8) {
        free(dst);
        return 0;
    }
    *out = dst;
    *out_len = (size_t)n;
    return 1;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

int rep__lz4_batch(const void *data, size_t len, void **out, size_t *out_len)
{
    const uint8_t *p = data;
    *out = NULL;
    *out_len = 0;
    if (len == 0) return 0;
    /* Walk the entries (64-byte header, payload_len at byte 40, flags at
     * byte 6, FORMAT.md §3).  The batch was verified when it was read;
     * a walk that does not end exactly at len is simply not sampled. */
    size_t pos = 0, hdr_bytes = 0, plain_bytes = 0, ns = 0;
    uint8_t sample[PROBE];
    while (len - pos >= 64) {
        uint32_t pl = get32(p + pos + 40);
        if (pl > len - pos - 64) break;
        const uint8_t *pay = p + pos + 64;
        hdr_bytes += 64;
        if (!(p[pos + 6] & 1) && pl) {
            plain_bytes += pl;
            /* Up to 4 KiB from each of the first stored payloads: a
             * sample across entries, not just the first one's start. */
            size_t take = pl < 4096 ? pl : 4096;
            if (take > PROBE - ns) take = PROBE - ns;
            memcpy(sample + ns, pay, take);
            ns += take;
        }
        pos += 64 + (size_t)pl;
    }
    int walked = pos == len;
    /* Payloads the journal compressed do not compress again: what can
     * still save 1/8 is the headers and the plain payloads. */
    if (walked && hdr_bytes + plain_bytes < len / 8) return 0;
    /* The plain payloads are what the journal found incompressible (or
     * did not try): sampled, they decide whether a full pass is spent. */
    if (walked && ns >= 512 && !probe_saves(sample, ns) &&
        hdr_bytes < len / 8)
        return 0;
    return rep__lz4(data, len, out, out_len);
}

int rep__unlz4(const void *src, size_t len, size_t raw_len, void **out)
{
    *out = NULL;
    /* Distrust the sender's length before allocating. */
    if (raw_len == 0 || raw_len > REP_MAX_RAW || len > (size_t)INT32_MAX)
        return -EINVAL;
    /* An LZ4 block expands at most ~255:1: a longer claim cannot decode,
     * so refuse it before allocating up to REP_MAX_RAW for a few bytes. */
    if (raw_len / 255 > len + 64) return -EBADMSG;
    char *dst = malloc(raw_len);
    if (!dst) return -ENOMEM;
    int n = LZ4_decompress_safe(src, dst, (int)len, (int)raw_len);
    if (n < 0 || (size_t)n != raw_len) {
        free(dst);
        return -EBADMSG;
    }
    *out = dst;
    return 0;
}
