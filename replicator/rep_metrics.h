/*
 * rep_metrics.h: the /metrics endpoint (rep_metrics.c), started and
 * stopped by rep_core.c.
 */
#ifndef TANDEM_REP_METRICS_H
#define TANDEM_REP_METRICS_H

#include "rep_int.h"

/* Listen on addr ("host:port") and serve on a thread of its own.  0 or a
 * negative errno; the bound port is r->metrics_port. */
int rep__metrics_start(rep_ctx *r, const char *addr);
void rep__metrics_stop(rep_ctx *r);

#endif /* TANDEM_REP_METRICS_H */
