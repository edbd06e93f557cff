/*
 * rep_metrics.c: a tiny HTTP/1.0 server on one thread that answers
 * GET /metrics with the Prometheus text format (version 0.0.4), 404 for
 * any other request and 400 for what is none.  One request per
 * connection; several connections at once on non-blocking sockets
 * (poll), each with a deadline for its whole request counted from accept
 * and a bounded number of them (rep_metrics.h), so neither a slow nor an
 * idle client holds up a scrape or the liveness probe.  What it shows
 * comes from a snapshot (rep__snapshot): it reads nothing else of the
 * replicator.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
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
        {"tandem_volume_lag_seconds", "gauge", "primary: age of the oldest unacknowledged entry; secondary: the RPO while it lags, else 0"},
        {"tandem_volume_last_sync_timestamp_seconds", "gauge", "last successful exchange with the peer"},
        {"tandem_volume_throughput_bytes_per_second", "gauge", "replicated payload bytes per second"},
        {"tandem_volume_compression_ratio", "gauge", "raw bytes / wire bytes"},
        {"tandem_volume_link_up", "gauge", "1 if the link for this volume works"},
        {"tandem_volume_split_brain", "gauge", "1 if fenced by a split-brain guard"},
        {"tandem_volume_wire_bytes_total", "counter", "bytes sent or received on the link"},
        {"tandem_volume_raw_bytes_total", "counter", "journal bytes before compression"},
        {"tandem_volume_batches_total", "counter", "batches shipped or applied"},
        {"tandem_volume_journal_damaged", "gauge", "1 if replay found the journal damaged (RUNBOOK: A damaged journal tail)"},
        {"tandem_volume_rpo_seconds", "gauge", "the RPO as this copy sees it (role=primary: age of the oldest entry the peer lacks; role=secondary: primary's announced head time - newest applied entry's time, primary's clock, as of the last call of the primary); -1 unknown"},
        {"tandem_volume_link_last_up_timestamp_seconds", "gauge", "secondary: when the primary's last call arrived (the RPO is as of then); 0 never or primary"},
        {"tandem_volume_snapshots", "gauge", "snapshots this copy holds"},
        {"tandem_volume_snapshots_incomplete", "gauge", "1 if a region copy or resync may have left this copy's snapshots unlike the primary's (RUNBOOK: Snapshots after a failover)"},
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
            case 16: val = s->info.damaged_seq != 0; break;
            case 17: val = s->rpo_s; break;
            case 18:
                val = s->info.role == JR_ROLE_PRIMARY
                          ? 0 : (double)s->rpo.link_up_ms / 1000.0;
                break;
            case 19: val = s->n_snaps; break;
            case 20: val = s->snap_gap_first != 0; break;
            }
            /* Volume ids are [A-Za-z0-9._-]: no label escaping needed. */
            sb_printf(out, "%s{volume=\"%s\",region=\"%s\",role=\"%s\"} %.6g\n",
                      defs[d].name, s->id, snap.region,
                      s->info.role ? jr_role_name(s->info.role) : "",
                      val);
        }
    }
    rep__snapshot_free(&snap);
    /* Consistency groups (rep_group.c). */
    struct rep_group *g = malloc(REP_MAX_GROUPS * sizeof(*g));
    int ng = g ? rep__group_snapshot(r, g, REP_MAX_GROUPS) : 0;
    static const struct {
        const char *name, *type, *help;
    } gdefs[] = {
        {"tandem_group_rpo_seconds", "gauge", "secondary: newest head time a member's primary announced - time of the cut the replicas stand at (primary's clock); primary: 0; -1 unknown"},
        {"tandem_group_cut", "gauge", "newest complete cut (primary: taken; secondary: applied)"},
        {"tandem_group_members", "gauge", "member volumes in this region"},
        {"tandem_group_points_total", "counter", "primary: consistency points tried"},
        {"tandem_group_points_abandoned_total", "counter", "primary: points abandoned (a member did not mark within the hold bound)"},
        {"tandem_group_pause_p99_ms", "gauge", "primary: p99 of recent points' pause (writes held), ms"},
    };
    for (size_t d = 0; d < sizeof(gdefs) / sizeof(gdefs[0]); d++) {
        sb_printf(out, "# HELP %s %s\n# TYPE %s %s\n", gdefs[d].name,
                  gdefs[d].help, gdefs[d].name, gdefs[d].type);
        for (int i = 0; i < ng; i++) {
            double val = 0;
            switch (d) {
            case 0: val = g[i].primary ? 0 : g[i].rpo_s; break;
            case 1: val = (double)g[i].cut; break;
            case 2: val = g[i].n_members; break;
            case 3: val = (double)g[i].points; break;
            case 4: val = (double)g[i].abandoned; break;
            case 5: val = rep__group_pause_q(&g[i], 0.99); break;
            }
            /* Group ids are [A-Za-z0-9_-]: no label escaping needed. */
            sb_printf(out, "%s{group=\"%s\",region=\"%s\",role=\"%s\"} %.6g\n",
                      gdefs[d].name, g[i].name, r->region,
                      g[i].primary ? "primary" : "secondary", val);
        }
    }
    free(g);
}

/* ---- the request reader ---- */

enum rep_http_req rep__metrics_request(const char *buf, size_t len)
{
    const unsigned char *b = (const unsigned char *)buf;
    if (len > REP_METRICS_REQ_MAX) len = REP_METRICS_REQ_MAX;
    size_t head = 0; /* bytes of the head, its empty line included */
    for (size_t i = 0; i < len && !head; i++) {
        unsigned char c = b[i];
        if ((c < 0x20 && c != '\r' && c != '\n' && c != '\t') || c == 0x7f)
            return REP_HTTP_BAD;
        if (c == '\n' && i >= 1 &&
            (b[i - 1] == '\n' || (i >= 2 && b[i - 1] == '\r' &&
                                  b[i - 2] == '\n')))
            head = i + 1;
    }
    if (!head)
        return len >= REP_METRICS_REQ_MAX ? REP_HTTP_BAD : REP_HTTP_MORE;
    /* The request line: METHOD SP TARGET SP HTTP/1.x */
    size_t e = 0;
    while (b[e] != '\n') e++;
    if (e && b[e - 1] == '\r') e--;
    size_t m = 0;
    while (m < e && m < 16 && b[m] >= 'A' && b[m] <= 'Z') m++;
    if (m == 0 || m >= e || b[m] != ' ') return REP_HTTP_BAD;
    size_t t0 = m + 1, t = t0;
    while (t < e && b[t] > 0x20 && b[t] < 0x7f) t++;
    if (t == t0 || b[t0] != '/' || t >= e || b[t] != ' ') return REP_HTTP_BAD;
    size_t v = t + 1;
    if (e - v != 8 || memcmp(b + v, "HTTP/1.", 7) || b[v + 7] < '0' ||
        b[v + 7] > '9')
        return REP_HTTP_BAD;
    size_t path = t0;
    while (path < t && b[path] != '?') path++;
    if (m == 3 && !memcmp(b, "GET", 3) && path - t0 == 8 &&
        !memcmp(b + t0, "/metrics", 8))
        return REP_HTTP_METRICS;
    return REP_HTTP_NOT_FOUND;
}

/* ---- the server: one thread, poll, non-blocking connections ---- */

struct mconn {
    int fd;                 /* -1: free slot */
    int64_t t0;             /* accepted (monotonic ms) */
    size_t n;               /* request bytes read */
    char *out;              /* the response being written (NULL: reading) */
    size_t out_len, out_off;
    char req[REP_METRICS_REQ_MAX];
};

/* drain: the answer went out; read what the client may still send. */
static void conn_close(struct mconn *c, int drain)
{
    if (c->fd < 0) return;
    if (drain) {
        /* Answer sent: read what the client may still have sent (a
         * close with unread bytes resets the connection, which can cost
         * the client the answer), then close. */
        char sink[4096];
        shutdown(c->fd, SHUT_WR);
        for (int i = 0; i < 16 && read(c->fd, sink, sizeof(sink)) > 0; i++)
            ;
    }
    close(c->fd);
    free(c->out);
    c->fd = -1;
    c->out = NULL;
    c->n = c->out_len = c->out_off = 0;
}

static void conn_respond(rep_ctx *r, struct mconn *c, enum rep_http_req q)
{
    struct sbuf body = {0};
    const char *status = "200 OK";
    if (q == REP_HTTP_METRICS) {
        render(r, &body);
    } else if (q == REP_HTTP_NOT_FOUND) {
        status = "404 Not Found";
        sb_printf(&body, "only /metrics here\n");
    } else {
        status = "400 Bad Request";
        sb_printf(&body, "bad request\n");
    }
    struct sbuf out = {0};
    sb_printf(&out, "HTTP/1.0 %s\r\nContent-Type: text/plain; "
              "version=0.0.4\r\nContent-Length: %zu\r\n"
              "Connection: close\r\n\r\n", status, body.n);
    if (out.p && body.n && out.cap - out.n < body.n) {
        char *q = realloc(out.p, out.n + body.n);
        if (!q) {
            free(out.p);
            out.p = NULL;
        } else {
            out.p = q;
            out.cap = out.n + body.n;
        }
    }
    if (out.p && body.n) {
        memcpy(out.p + out.n, body.p, body.n);
        out.n += body.n;
    }
    free(body.p);
    if (!out.p) { /* out of memory: nothing to say */
        conn_close(c, 0);
        return;
    }
    c->out = out.p;
    c->out_len = out.n;
    c->out_off = 0;
}

static void conn_write(struct mconn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t k = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
                         MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (k <= 0) {
            conn_close(c, 0);
            return;
        }
        c->out_off += (size_t)k;
    }
    conn_close(c, 1);
}

static void conn_read(rep_ctx *r, struct mconn *c)
{
    ssize_t k = read(c->fd, c->req + c->n, sizeof(c->req) - c->n);
    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (k <= 0) { /* gone before a whole request */
        conn_close(c, 0);
        return;
    }
    c->n += (size_t)k;
    enum rep_http_req q = rep__metrics_request(c->req, c->n);
    if (q == REP_HTTP_MORE && c->n < sizeof(c->req)) return;
    if (q == REP_HTTP_MORE) q = REP_HTTP_BAD; /* cannot happen */
    conn_respond(r, c, q);
    if (c->fd >= 0) conn_write(c);
}

/* A slot for a new connection: a free one, else the oldest one still
 * sending its request (a slow or idle client), else the oldest. */
static struct mconn *conn_slot(struct mconn *cs, size_t n)
{
    struct mconn *old_rd = NULL, *old = NULL;
    for (size_t i = 0; i < n; i++) {
        if (cs[i].fd < 0) return &cs[i];
        if (!cs[i].out && (!old_rd || cs[i].t0 < old_rd->t0)) old_rd = &cs[i];
        if (!old || cs[i].t0 < old->t0) old = &cs[i];
    }
    struct mconn *c = old_rd ? old_rd : old;
    tlog_debug("rep.metrics_evict", "reading=%d age_ms=%" PRId64,
               c->out == NULL, tb_mono_ms() - c->t0);
    conn_close(c, 0);
    return c;
}

static void *metrics_main(void *arg)
{
    rep_ctx *r = arg;
    struct mconn cs[REP_METRICS_CONNS];
    struct pollfd p[REP_METRICS_CONNS + 1];
    size_t idx[REP_METRICS_CONNS + 1];
    int64_t accept_pause = 0;
    for (size_t i = 0; i < REP_METRICS_CONNS; i++) {
        cs[i].fd = -1;
        cs[i].out = NULL;
        cs[i].n = cs[i].out_len = cs[i].out_off = 0;
    }
    while (!__atomic_load_n(&r->stopping, __ATOMIC_ACQUIRE)) {
        int64_t now = tb_mono_ms();
        int64_t wait = 200;
        nfds_t np = 0;
        if (now >= accept_pause) {
            p[np].fd = r->metrics_fd;
            p[np].events = POLLIN;
            p[np].revents = 0;
            idx[np++] = SIZE_MAX;
        } else if (accept_pause - now < wait) {
            wait = accept_pause - now;
        }
        for (size_t i = 0; i < REP_METRICS_CONNS; i++) {
            struct mconn *c = &cs[i];
            if (c->fd < 0) continue;
            int64_t dl = c->t0 + (c->out ? REP_METRICS_CONN_MS
                                         : REP_METRICS_READ_MS);
            if (now >= dl) {
                tlog_debug("rep.metrics_timeout", "writing=%d bytes=%zu",
                           c->out != NULL, c->out ? c->out_off : c->n);
                conn_close(c, 0);
                continue;
            }
            if (dl - now < wait) wait = dl - now;
            p[np].fd = c->fd;
            p[np].events = c->out ? POLLOUT : POLLIN;
            p[np].revents = 0;
            idx[np++] = i;
        }
        int k = poll(p, np, (int)wait);
        if (k <= 0) continue;
        for (nfds_t j = 0; j < np; j++) {
            if (!p[j].revents || idx[j] == SIZE_MAX) continue;
            struct mconn *c = &cs[idx[j]];
            if (c->fd != p[j].fd) continue;
            if (c->out)
                conn_write(c);
            else
                conn_read(r, c);
        }
        if (np && idx[0] == SIZE_MAX && (p[0].revents & POLLIN)) {
            for (int n = 0; n < REP_METRICS_CONNS; n++) {
                int fd = accept4(r->metrics_fd, NULL, NULL,
                                 SOCK_CLOEXEC | SOCK_NONBLOCK);
                if (fd < 0) {
                    /* Out of descriptors or memory: the listener stays
                     * readable, so look again a little later. */
                    if (errno == EMFILE || errno == ENFILE ||
                        errno == ENOBUFS || errno == ENOMEM)
                        accept_pause = tb_mono_ms() + 100;
                    break;
                }
                struct mconn *c = conn_slot(cs, REP_METRICS_CONNS);
                c->fd = fd;
                c->t0 = tb_mono_ms();
                c->n = 0;
                /* A scraper has usually sent its request by now: answer
                 * it before a later accept of this round could evict it. */
                conn_read(r, c);
            }
        }
    }
    for (size_t i = 0; i < REP_METRICS_CONNS; i++) conn_close(&cs[i], 0);
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
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
                    0);
    int one = 1, rc = 0;
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 64) < 0) {
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
