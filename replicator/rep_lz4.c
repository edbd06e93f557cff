/*
 * rep_lz4.c: LZ4 block helpers for batches and region copies.  The
 * decoder distrusts the sender's lengths (they come from the wire).
 */
#include <errno.h>
#include <lz4.h>
#include <stdlib.h>

#include "rep_int.h"

int rep__lz4(const void *src, size_t len, void **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    if (len == 0 || len > (size_t)LZ4_MAX_INPUT_SIZE) return 0;
    int bound = LZ4_compressBound((int)len);
    char *dst = malloc((size_t)bound);
    if (!dst) return -ENOMEM;
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
