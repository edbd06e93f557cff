/*
 * fuzz-csi-k8s.c: libFuzzer target for csi_k8s.c's reading of the
 * Kubernetes API server's answer to GET /api/v1/nodes/<name>: the HTTP
 * status line, the header/body split and the JSON walk to
 * metadata.labels (csi__k8s_parse_answer).  The input is taken as the whole
 * answer, and again as the body behind a "200 OK" header so that the
 * mutator works on the JSON directly.  Any bytes: an error code or two
 * NUL-terminated labels within their buffers; never a crash, an
 * out-of-bounds read (ASan) or unbounded recursion.
 */
#include <stdlib.h>
#include <string.h>

#include "csi/csi_int.h"

static void parse(const char *body, size_t len, size_t rlen, size_t zlen)
{
    char region[64], zone[64], err[256];
    memset(region, 'R', sizeof(region));
    memset(zone, 'Z', sizeof(zone));
    err[0] = 0;
    int rc = csi__k8s_parse_answer(body, len, "node-1", region, rlen, zone,
                                   zlen, err, sizeof(err));
    if (rc == 0) {
        if (strnlen(region, rlen) >= rlen || strnlen(zone, zlen) >= zlen)
            abort(); /* labels are NUL-terminated inside their buffers */
        if (rlen < sizeof(region) && region[rlen] != 'R') abort();
        if (zlen < sizeof(zone) && zone[zlen] != 'Z') abort();
    } else if (!err[0] || strnlen(err, sizeof(err)) >= sizeof(err)) {
        abort(); /* every refusal says why */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char hdr[] = "HTTP/1.1 200 OK\r\nContent-Type: "
                              "application/json\r\n\r\n";
    if (size > (1u << 20)) return 0;
    /* As the whole answer (the caller NUL-terminates what it read). */
    char *b = malloc(size + 1);
    if (!b) abort();
    memcpy(b, data, size);
    b[size] = 0;
    parse(b, size, 64, 64);
    free(b);
    /* As the body of a 200 answer, with short label buffers too. */
    size_t hl = sizeof(hdr) - 1;
    b = malloc(hl + size + 1);
    if (!b) abort();
    memcpy(b, hdr, hl);
    memcpy(b + hl, data, size);
    b[hl + size] = 0;
    parse(b, hl + size, 64, 64);
    parse(b, hl + size, 1 + (size ? data[0] % 8 : 0), 3);
    free(b);
    return 0;
}
