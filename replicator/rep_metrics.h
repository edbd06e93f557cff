/*
 * rep_metrics.h: the /metrics endpoint (rep_metrics.c), started and
 * stopped by rep_core.c; its HTTP request reader is exposed for the
 * fuzzer (tests/fuzz/fuzz-metrics-http.c) and the tests.
 */
#ifndef TANDEM_REP_METRICS_H
#define TANDEM_REP_METRICS_H

#include "rep_int.h"

/* Listen on addr ("host:port") and serve on a thread of its own.  0 or a
 * negative errno; the bound port is r->metrics_port.
 *
 * The thread serves up to REP_METRICS_CONNS connections at once (poll,
 * non-blocking sockets), one request each (HTTP/1.0, Connection: close).
 * A connection must deliver its whole request head within
 * REP_METRICS_READ_MS of being accepted (not per byte) and be done
 * within REP_METRICS_CONN_MS, else it is closed; when every slot is taken
 * a new connection evicts the oldest one still sending its request (else
 * the oldest one).  So no slow or idle client delays a scrape or the
 * liveness probe for long. */
int rep__metrics_start(rep_ctx *r, const char *addr);
void rep__metrics_stop(rep_ctx *r);

#define REP_METRICS_CONNS 16
#define REP_METRICS_READ_MS 2000
#define REP_METRICS_CONN_MS 10000
/* Request head bytes read at most (its end must come within them). */
#define REP_METRICS_REQ_MAX 4096

/* What the first len bytes received on a connection ask for. */
enum rep_http_req {
    REP_HTTP_MORE = 0,  /* no complete head yet: read on */
    REP_HTTP_METRICS,   /* GET /metrics (query allowed): 200, the metrics */
    REP_HTTP_NOT_FOUND, /* a well-formed request for anything else: 404 */
    REP_HTTP_BAD,       /* not an HTTP/1.x request head, or none within
                           REP_METRICS_REQ_MAX bytes: 400 */
};
/* The request reader: looks at the bytes received so far (any bytes, no
 * NUL needed; only the first REP_METRICS_REQ_MAX count).  The head ends
 * at the first empty line ("\n\n" or "\n\r\n"); its first line must be
 * METHOD SP TARGET SP HTTP/1.x with an upper-case method and an
 * origin-form target ("/...", printable ASCII).  A control byte other
 * than CR, LF or TAB before the head's end makes it BAD at once.  Once
 * the answer is not MORE, more bytes never change it. */
enum rep_http_req rep__metrics_request(const char *buf, size_t len);

#endif /* TANDEM_REP_METRICS_H */
