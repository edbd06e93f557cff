/*
 * fuzz-tomb.c: libFuzzer target for the tombstone value parser
 * (journal/jr_tomb.c, jr__tomb_parse; FORMAT.md R-35).  Any bytes:
 * JR_ECORRUPT, or a tombstone that keeps the promises of jr.h (epoch >= 1,
 * 1..JR_TOMB_MAX_PEERS peer names, each NUL-terminated, non-empty and
 * within JR_MAX_REGION, no spaces).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jr_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int quiet;
    if (!quiet++) tlog_init("fuzz", (enum tlog_level)(TLOG_ERROR + 1));
    struct jr_tomb t;
    int r = jr__tomb_parse("v", (const char *)data, size, &t);
    if (r != 0 && r != JR_ECORRUPT) abort();
    if (r != 0) return 0;
    if (t.epoch == 0 || t.n_peers < 1 || t.n_peers > JR_TOMB_MAX_PEERS)
        abort();
    if (strcmp(t.vol_id, "v")) abort();
    for (int i = 0; i < t.n_peers; i++) {
        size_t n = strnlen(t.peers[i], sizeof(t.peers[i]));
        if (n == 0 || n > JR_MAX_REGION || strchr(t.peers[i], ' ')) abort();
    }
    return 0;
}
