/*
 * fuzz-metrics-http.c: libFuzzer target for the /metrics server's HTTP
 * request reader (replicator/rep_metrics.c, rep__metrics_request), which
 * sees whatever bytes any client on the metrics port sends.
 *
 * Checks, against a plain restatement of the rules (rep_metrics.h):
 *  - the answer is one of the four, and never MORE once
 *    REP_METRICS_REQ_MAX bytes are in (the server reads no more);
 *  - the head ends at the first "\n\n" / "\n\r\n": MORE before it
 *    unless a control byte came first (BAD), never MORE after it;
 *  - once not MORE, more bytes never change the answer (the server
 *    answers as soon as it is not MORE), checked at the head's end and at
 *    a prefix length the input picks;
 *  - METRICS only for "GET /metrics" followed by ' ' or '?';
 *  - the same bytes give the same answer (no hidden state), and no read
 *    past len (ASan: the input is copied to a buffer of exactly len).
 */
#include <stdlib.h>
#include <string.h>

#include "replicator/rep_metrics.h"

static enum rep_http_req ask(const uint8_t *d, size_t n)
{
    char *b = malloc(n ? n : 1);
    if (!b) abort();
    memcpy(b, d, n);
    enum rep_http_req q = rep__metrics_request(b, n);
    free(b);
    return q;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 3 * REP_METRICS_REQ_MAX) return 0;
    enum rep_http_req q = ask(data, size);
    if (q != REP_HTTP_MORE && q != REP_HTTP_METRICS &&
        q != REP_HTTP_NOT_FOUND && q != REP_HTTP_BAD)
        abort();
    if (q != ask(data, size)) abort();
    /* The head's end and the first control byte, within the limit. */
    size_t lim = size < REP_METRICS_REQ_MAX ? size : REP_METRICS_REQ_MAX;
    size_t head = 0, ctl = 0;
    int have_ctl = 0;
    for (size_t i = 0; i < lim && !head && !have_ctl; i++) {
        uint8_t c = data[i];
        if ((c < 0x20 && c != '\r' && c != '\n' && c != '\t') || c == 0x7f) {
            have_ctl = 1;
            ctl = i;
        } else if (c == '\n' && i >= 1 &&
                   (data[i - 1] == '\n' ||
                    (i >= 2 && data[i - 1] == '\r' && data[i - 2] == '\n'))) {
            head = i + 1;
        }
    }
    if (have_ctl) {
        if (q != REP_HTTP_BAD) abort();
        if (ask(data, ctl + 1) != REP_HTTP_BAD) abort();
        if (ctl && ask(data, ctl) != REP_HTTP_MORE) abort();
    } else if (head) {
        if (q == REP_HTTP_MORE) abort();
        if (ask(data, head) != q) abort(); /* decided at the head's end */
        if (ask(data, head - 1) != REP_HTTP_MORE) abort();
    } else {
        if (q != (size >= REP_METRICS_REQ_MAX ? REP_HTTP_BAD : REP_HTTP_MORE))
            abort();
    }
    if (q == REP_HTTP_METRICS &&
        (size < 13 || memcmp(data, "GET /metrics", 12) ||
         (data[12] != ' ' && data[12] != '?')))
        abort();
    /* A prefix the input picks: once decided, the rest changes nothing. */
    if (size >= 2) {
        size_t cut = ((size_t)data[size - 1] << 8 | data[size - 2]) % size;
        enum rep_http_req p = ask(data, cut);
        if (p != REP_HTTP_MORE && p != q) abort();
    }
    return 0;
}
