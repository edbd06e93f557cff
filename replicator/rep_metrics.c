/*
 * rep_metrics.c: a tiny HTTP/1.0 server on one thread that answers
 * GET /metrics with the Prometheus text format (version 0.0.4) and 404
 * for anything else.  One request per connection, read with a deadline,
 * so a stuck scraper cannot hold the thread for long.  What it shows
 * comes from a snapshot (rep__snapshot): it reads nothing else of the
 * replicator.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rep_metrics.h"
#include "tlog.h"

struct sbuf {
    char *p;
    size_t n, cap;
};

static void sb_printf(struct sbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0,
                          fmt, ap);
        va_end(ap);
        if (n < 0) return;
        if (b->p && b->n + (size_t)n < b->cap) {
            b->n += (size_t)n;
            return;
        }
        size_t c = b->cap ? b->cap * 2 : 16384;
        while (c < b->n + (size_t)n + 1) c *= 2;
        char *q = realloc(b->p, c);
        if (!q) return;
        b->p = q;
        b->cap = c;
    }
}

static int link_up(enum rep_link l)
{
    return l == REP_LINK_UP || l == REP_LINK_RECEIVING || l == REP_LINK_IDLE;
}

static void render(rep_ctx *r, struct sbuf *out)
{
    struct rep_snap snap;
    /* A failed listing still reports the peer link (and no volumes). */
    rep__snapshot(r, NULL, 0, &snap);
    static const struct {
        const char *name, *type, *help;
    } defs[] = {
        {"tandem_volume_role", "gauge", "1 primary, 2 secondary"},
        {"tandem_volume_epoch", "gauge", "fencing epoch"},
        {"tandem_volume_head_seq", "gauge", "last durable journal entry"},
        {"tandem_volume_applied_seq", "gauge", "last entry applied to the image"},
        {"tandem_volume_acked_seq", "gauge", "last entry the peer acknowledged"},
        {"tandem_volume_lag_entries", "gauge", "entries not yet acknowledged"},
        {"tandem_volume_lag_bytes", "gauge", "journal bytes not yet acknowledged (estimate)"},
        {"tandem_volume_lag_seconds", "gauge", "age of the oldest unacknowledged entry (RPO)"},
        {"tandem_volume_last_sync_timestamp_seconds", "gauge", "last successful exchange with the peer"},
        {"tandem_volume_throughput_bytes_per_second", "gauge", "replicated payload bytes per second"},
        {"tandem_volume_compression_ratio", "gauge", "raw bytes / wire bytes"},
        {"tandem_volume_link_up", "gauge", "1 if the link for this volume works"},
        {"tandem_volume_split_brain", "gauge", "1 if fenced by a split-brain guard"},
        {"tandem_volume_wire_bytes_total", "counter", "bytes sent or received on the link"},
        {"tandem_volume_raw_bytes_total", "counter", "journal bytes before compression"},
        {"tandem_volume_batches_total", "counter", "batches shipped or applied"},
    };
    size_t nd = sizeof(defs) / sizeof(defs[0]);
    sb_printf(out, "# HELP tandem_peer_link_up 1 if the peer answered the "
              "last Hello\n# TYPE tandem_peer_link_up gauge\n"
              "tandem_peer_link_up{region=\"%s\",peer=\"%s\"} %d\n",
              snap.region, snap.peer_region, snap.peer_up);
    for (size_t d = 0; d < nd; d++) {
        sb_printf(out, "# HELP %s %s\n# TYPE %s %s\n", defs[d].name,
                  defs[d].help, defs[d].name, defs[d].type);
        for (size_t i = 0; i < snap.n; i++) {
            const struct rep_vstat *s = &snap.vols[i];
            double val = 0;
            switch (d) {
            case 0: val = s->info.role == JR_ROLE_PRIMARY ? 1 : 2; break;
            case 1: val = (double)s->info.epoch; break;
            case 2: val = (double)s->info.head; break;
            case 3: val = (double)s->info.applied; break;
            case 4: val = (double)s->acked; break;
            case 5: val = (double)s->lag_entries; break;
            case 6: val = (double)s->lag_bytes; break;
            case 7: val = s->lag_s; break;
            case 8: val = (double)s->last_sync_ms / 1000.0; break;
            case 9: val = s->rate; break;
            case 10: val = s->ratio; break;
            case 11: val = link_up(s->link_state); break;
            case 12: val = s->split_brain; break;
            case 13: val = (double)s->wire_bytes; break;
            case 14: val = (double)s->raw_bytes; break;
            case 15: val = (double)s->batches; break;
            }
            /* Volume ids are [A-Za-z0-9._-]: no label escaping needed. */
            sb_printf(out, "%s{volume=\"%s\",region=\"%s\",role=\"%s\"} %.6g\n",
                      defs[d].name, s->id, snap.region,
                      s->info.role ? jr_role_name(s->info.role) : "",
                      val);
        }
    }
    rep__snapshot_free(&snap);
}

static void serve_one(rep_ctx *r, int fd)
{
    char req[2048];
    size_t n = 0;
    while (n < sizeof(req) - 1) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 2000) <= 0) return;
        ssize_t k = read(fd, req + n, sizeof(req) - 1 - n);
        if (k <= 0) break;
        n += (size_t)k;
        req[n] = 0;
        if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n")) break;
    }
    req[n] = 0;
    struct sbuf body = {0};
    const char *status = "200 OK";
    if (!strncmp(req, "GET /metrics ", 13) || !strncmp(req, "GET /metrics?", 13)) {
        render(r, &body);
    } else {
        status = "404 Not Found";
        sb_printf(&body, "only /metrics here\n");
    }
    char hdr[256];
    int hl = snprintf(hdr, sizeof(hdr),
                      "HTTP/1.0 %s\r\nContent-Type: text/plain; "
                      "version=0.0.4\r\nContent-Length: %zu\r\n"
                      "Connection: close\r\n\r\n", status, body.n);
    if (write(fd, hdr, (size_t)hl) == hl) {
        size_t off = 0;
        while (off < body.n) {
            ssize_t k = write(fd, body.p + off, body.n - off);
            if (k <= 0) break;
            off += (size_t)k;
        }
    }
    free(body.p);
}

static void *metrics_main(void *arg)
{
    rep_ctx *r = arg;
    while (!__atomic_load_n(&r->stopping, __ATOMIC_ACQUIRE)) {
        struct pollfd p = {r->metrics_fd, POLLIN, 0};
        if (poll(&p, 1, 200) <= 0) continue;
        int fd = accept4(r->metrics_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) continue;
        serve_one(r, fd);
        close(fd);
    }
    return NULL;
}

int rep__metrics_start(rep_ctx *r, const char *addr)
{
    char host[256];
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || (size_t)(colon - addr) >= sizeof(host))
        return -EINVAL;
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = 0;
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    if (getaddrinfo(host, colon + 1, &hints, &ai) != 0 || !ai) return -EINVAL;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1, rc = 0;
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 16) < 0) {
        rc = -errno;
        close(fd);
        goto out;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    r->metrics_port = ntohs(ss.ss_family == AF_INET6
                                ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                : ((struct sockaddr_in *)&ss)->sin_port);
    r->metrics_fd = fd;
    if ((rc = -pthread_create(&r->metrics_thr, NULL, metrics_main, r)) < 0) {
        close(fd);
        r->metrics_fd = -1;
        goto out;
    }
    r->metrics_started = 1;
out:
    freeaddrinfo(ai);
    return rc;
}

void rep__metrics_stop(rep_ctx *r)
{
    if (r->metrics_started) pthread_join(r->metrics_thr, NULL);
    r->metrics_started = 0;
    if (r->metrics_fd >= 0) close(r->metrics_fd);
    r->metrics_fd = -1;
}
