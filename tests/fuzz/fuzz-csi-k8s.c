/*
 * fuzz-csi-k8s.c: libFuzzer target for csi_k8s.c's reading of the
 * Kubernetes API server's answer to GET /api/v1/nodes/<name>
 * (csi__k8s_parse_node): the JSON body, decoded by json-c and walked to
 * metadata.labels, and the error answers (the Status object's message).
 * The input is the body of a 200 answer (with wide and with short label
 * buffers), and again of an error answer whose status comes from the
 * first byte.  Any bytes: an error code with a message, or two
 * NUL-terminated labels within their buffers; never a crash, an
 * out-of-bounds read (ASan), a leak or unbounded recursion.
 */
#include <stdlib.h>
#include <string.h>

#include "csi/csi_int.h"

static void parse(long status, const char *body, size_t len, size_t rlen,
                  size_t zlen)
{
    char region[64], zone[64], err[256];
    memset(region, 'R', sizeof(region));
    memset(zone, 'Z', sizeof(zone));
    err[0] = 0;
    int rc = csi__k8s_parse_node(status, body, len, "node-1", region, rlen,
                                 zone, zlen, err, sizeof(err));
    if (rc == 0) {
        if (status != 200) abort(); /* only a 200 answer carries labels */
        if (strnlen(region, rlen) >= rlen || strnlen(zone, zlen) >= zlen)
            abort(); /* labels are NUL-terminated inside their buffers */
        if (rlen < sizeof(region) && region[rlen] != 'R') abort();
        if (zlen < sizeof(zone) && zone[zlen] != 'Z') abort();
    } else if (!err[0]) {
        abort(); /* every refusal says why */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const long statuses[] = {401, 403, 404, 500, 301, 0};
    if (size > (1u << 20)) return 0;
    /* An exact-size copy, no NUL after it: the parser must not need one
     * (ASan catches a read past the end). */
    char *b = malloc(size ? size : 1);
    if (!b) abort();
    memcpy(b, data, size);
    parse(200, b, size, 64, 64);
    parse(200, b, size, 1 + (size ? data[0] % 8 : 0), 3);
    parse(statuses[size ? data[0] % 6 : 0], b, size, 64, 64);
    free(b);
    return 0;
}
