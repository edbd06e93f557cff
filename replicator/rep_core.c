/*
 * rep_core.c: the replicator's context and its scanner.  rep_create
 * parses the options and opens the region's store and the peer client;
 * rep_start starts the link and admin servers, /metrics and the scanner;
 * rep_destroy stops and joins them all.  The scanner lists the region's
 * volumes every scan period and starts a sender (rep_send.c) for each
 * one this replicator ships; it also says Hello to the peer (the link's
 * health) and, while the link is up, processes tombstones (rep_peer.c).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rep_admin.h"
#include "rep_int.h"
#include "rep_link.h"
#include "rep_metrics.h"
#include "rep_send.h"
#include "tbase.h"
#include "tlog.h"

/* ------------------------------------------------------------- scanner */

static int scan_cb(const char *id, void *arg)
{
    rep_ctx *r = arg;
    struct jr_info info;
    struct rep_vol *v = rep__vol_get(r, id);
    if (!v) return 0;
    if (jr_volume_stat(r->st, id, &info) < 0) return 0;
    /* An error (unreadable metadata) decides nothing: next scan. */
    if (rep__eligible(r, id, &info) > 0) rep__sender_ensure(r, v);
    return 0;
}

static void *scan_main(void *arg)
{
    rep_ctx *r = arg;
    int64_t last_hello = 0, last_tombs = 0;
    while (!__atomic_load_n(&r->stopping, __ATOMIC_ACQUIRE)) {
        jr_volume_list(r->st, scan_cb, r);
        /* Deleted primaries' replicas: only while the link is up (a call
         * to a silent peer could hold the scanner for its deadline). */
        int was_up = __atomic_load_n(&r->peer_up, __ATOMIC_ACQUIRE);
        if (was_up && (!last_tombs || tb_mono_ms() - last_tombs >= 1000)) {
            rep__tombs_process(r);
            last_tombs = tb_mono_ms();
        }
        if (!last_hello || tb_mono_ms() - last_hello > 5000) {
            char msg[256], q[300];
            int up = rep__peer_hello(r, msg, sizeof(msg)) == 0;
            /* The peer's words are quoted (tlog_q): they come from the
             * wire. */
            if (up != was_up)
                tlog_info("rep.peer_link", "peer=%s addr=%s state=%s msg=%s",
                          r->peer_region, r->peer_addr, up ? "up" : "down",
                          tlog_q(q, sizeof(q), up ? "" : msg));
            __atomic_store_n(&r->peer_up, up, __ATOMIC_RELEASE);
            last_hello = tb_mono_ms();
        }
        struct timespec ts = tb_deadline(CLOCK_MONOTONIC, r->o.scan_ms);
        pthread_mutex_lock(&r->stop_mu);
        if (!r->stopping) pthread_cond_timedwait(&r->stop_cv, &r->stop_mu, &ts);
        pthread_mutex_unlock(&r->stop_mu);
    }
    return NULL;
}

/* ------------------------------------------------------------- context */

static char *dupz(const char *s) { return s ? strdup(s) : NULL; }

int rep_create(const struct rep_opts *o, rep_ctx **out, char *err,
               size_t errlen)
{
    rep_ctx *r = calloc(1, sizeof(*r));
    int rc = -ENOMEM;
    *out = NULL;
    if (!r) goto fail;
    r->o = *o;
    r->o.config_path = dupz(o->config_path);
    r->o.listen_addr = dupz(o->listen_addr);
    r->o.admin_addr = dupz(o->admin_addr);
    r->o.admin_tcp = dupz(o->admin_tcp);
    r->o.tls_ca = dupz(o->tls_ca);
    r->o.tls_cert = dupz(o->tls_cert);
    r->o.tls_key = dupz(o->tls_key);
    r->o.tls_server_name = dupz(o->tls_server_name);
    r->o.trust_domain = dupz(o->trust_domain);
    r->o.admin_tls_ca = dupz(o->admin_tls_ca);
    r->o.admin_tls_cert = dupz(o->admin_tls_cert);
    r->o.admin_tls_key = dupz(o->admin_tls_key);
    r->o.metrics_addr = dupz(o->metrics_addr);
    r->o.region = r->region;
    r->o.peer_region = r->peer_region;
    r->o.peer_addr = r->peer_addr;
    /* 8 MiB: per-batch costs (a store commit each for the journal, the
     * image and the header on the peer, one round trip) are then small
     * next to the bytes, and memory stays bounded (REP_PIPE_SLOTS); a
     * caught-up sender ships what there is, so this only matters for a
     * backlog. */
    if (!r->o.batch_bytes) r->o.batch_bytes = 8u << 20;
    if (r->o.batch_bytes > 32u << 20) r->o.batch_bytes = 32u << 20;
    if (!r->o.scan_ms) r->o.scan_ms = 500;
    r->metrics_fd = -1;
    pthread_mutex_init(&r->vol_mu, NULL);
    pthread_mutex_init(&r->grp_mu, NULL);
    pthread_mutex_init(&r->stop_mu, NULL);
    tb_cond_init_mono(&r->stop_cv);
    pthread_mutex_init(&r->bucket.mu, NULL);
    r->bucket.rate = o->max_bandwidth;
    r->bucket.last_ns = tb_mono_ns();

    if (!o->config_path || !o->region || !o->peer_region) {
        snprintf(err, errlen, "--config, --region and --peer-region are "
                 "required");
        rc = -EINVAL;
        goto fail;
    }
    if (!o->insecure && !(o->tls_ca && o->tls_cert && o->tls_key)) {
        snprintf(err, errlen, "--tls-ca, --tls-cert and --tls-key are "
                 "required (or --insecure for a plaintext link)");
        rc = -EINVAL;
        goto fail;
    }
    /* Identities: the trust domain as gen-certs.sh accepts it (a SPIFFE
     * trust domain: lower-case letters, digits, '.', '-', '_'). */
    const char *td = o->trust_domain ? o->trust_domain : "tandem.local";
    if (!*td || strlen(td) > REP_MAX_TRUST_DOMAIN ||
        strspn(td, "abcdefghijklmnopqrstuvwxyz0123456789.-_") != strlen(td)) {
        snprintf(err, errlen, "--trust-domain '%.64s': lower-case letters, "
                 "digits, '.', '-' and '_' only (at most %d)", td,
                 REP_MAX_TRUST_DOMAIN);
        rc = -EINVAL;
        goto fail;
    }
    snprintf(r->id_region_prefix, sizeof(r->id_region_prefix),
             "spiffe://%s/tandem/region/", td);
    snprintf(r->id_admin, sizeof(r->id_admin), "spiffe://%s/tandem/admin", td);
    if (o->admin_tcp) {
        /* Admin TCP is always mutual TLS: its access control is the
         * caller's certificate (the admin identity), so it has no
         * plaintext form, not even with --insecure. */
        const char *ca = o->admin_tls_ca ? o->admin_tls_ca : o->tls_ca;
        const char *ce = o->admin_tls_cert ? o->admin_tls_cert : o->tls_cert;
        const char *k = o->admin_tls_key ? o->admin_tls_key : o->tls_key;
        if (!ca || !ce || !k) {
            snprintf(err, errlen, "--admin-tcp needs mutual TLS: "
                     "--admin-tls-ca, --admin-tls-cert and --admin-tls-key "
                     "(or the link's --tls-*); it has no plaintext mode");
            rc = -EINVAL;
            goto fail;
        }
    }
    if (o->admin_socket_mode & ~0770u) {
        snprintf(err, errlen, "--admin-socket-mode %04o: the socket's mode is "
                 "the admin API's only access control; owner and group bits "
                 "only (0600, 0660)", o->admin_socket_mode);
        rc = -EINVAL;
        goto fail;
    }
    rep__scpy(r->region, sizeof(r->region), o->region);
    rep__scpy(r->peer_region, sizeof(r->peer_region), o->peer_region);
    if (!strcmp(r->region, r->peer_region)) {
        snprintf(err, errlen, "--peer-region must differ from --region");
        rc = -EINVAL;
        goto fail;
    }
    if ((rc = rg_load(o->config_path, &r->cfg, err, errlen)) < 0) goto fail;
    const struct rg_region *me = rg_find(r->cfg, r->region);
    const struct rg_region *peer = rg_find(r->cfg, r->peer_region);
    if (!me || !peer) {
        snprintf(err, errlen, "%s: region %s is not configured",
                 o->config_path, me ? r->peer_region : r->region);
        rc = -EINVAL;
        goto fail;
    }
    if (o->peer_addr && *o->peer_addr)
        rep__scpy(r->peer_addr, sizeof(r->peer_addr), o->peer_addr);
    else
        rep__scpy(r->peer_addr, sizeof(r->peer_addr), peer->replicator);
    if (!r->peer_addr[0]) {
        snprintf(err, errlen, "no --peer and no replicator= for region %s in "
                 "%s", r->peer_region, o->config_path);
        rc = -EINVAL;
        goto fail;
    }
    if (!r->o.listen_addr) {
        if (!me->replicator[0]) {
            snprintf(err, errlen, "no --listen and no replicator= for region "
                     "%s in %s", r->region, o->config_path);
            rc = -EINVAL;
            goto fail;
        }
        r->o.listen_addr = strdup(me->replicator);
    }
    if ((rc = rg_open_store(me, &r->st)) < 0) {
        snprintf(err, errlen, "open store of region %s: %s", r->region,
                 jr_strerror(rc));
        goto fail;
    }
    /* The peer's server must be the peer region's replicator too: its
     * certificate names that identity, or the handshake fails (a third
     * region's certificate of the same CA never receives our batches nor
     * answers for the peer). */
    char peer_id[REP_MAX_ID_URI + RG_MAX_NAME + 1];
    snprintf(peer_id, sizeof(peer_id), "%s%s", r->id_region_prefix,
             r->peer_region);
    struct rpc_tls tls = {r->o.tls_ca, r->o.tls_cert, r->o.tls_key,
                          r->o.tls_server_name, peer_id};
    if ((rc = rpc_client_create(r->peer_addr, o->insecure ? NULL : &tls,
                                &r->peer)) < 0 ||
        (rc = rpc_client_create_own(r->peer_addr, o->insecure ? NULL : &tls,
                                    &r->peer_ann)) < 0) {
        snprintf(err, errlen, "peer client %s: %s", r->peer_addr,
                 strerror(-rc));
        goto fail;
    }
    *out = r;
    return 0;
fail:
    rep_destroy(r);
    return rc;
}

int rep_start(rep_ctx *r, char *err, size_t errlen)
{
    struct rpc_tls tls = {r->o.tls_ca, r->o.tls_cert, r->o.tls_key, NULL};
    const struct rpc_tls *t = r->o.insecure ? NULL : &tls;
    struct rpc_server_opts lo = {rep__link_methods, rep__n_link_methods, r,
                                 8, REP_MAX_MSG};
    int rc = rpc_server_create(&lo, &r->link_srv);
    if (rc < 0) goto fail_msg;
    rc = rpc_server_listen(r->link_srv, r->o.listen_addr, t);
    if (rc < 0) {
        snprintf(err, errlen, "listen %s: %s", r->o.listen_addr,
                 strerror(-rc));
        return rc;
    }
    r->link_port = rc;
    if ((rc = rpc_server_start(r->link_srv)) < 0) goto fail_msg;
    if (r->o.insecure)
        tlog_warn("rep.link_unauthenticated", "listen=%s peer_addr=%s "
                  "msg=\"--insecure: plaintext peer link without identities; "
                  "any client is taken for region %s (tests only)\"",
                  r->o.listen_addr, r->peer_addr, r->peer_region);
    /* The admin API: on the unix socket, whose file mode (0600 unless
     * --admin-socket-mode) is the access control, since gRPC cannot tell
     * who a unix-socket client is; on TCP, a server of its own whose every
     * method first checks the caller's certificate for the admin identity
     * (rep__admin_tcp_methods), never the link's server or its rules. */
    if (r->o.admin_addr) {
        struct rpc_server_opts ao = {rep__admin_methods, rep__n_admin_methods,
                                     r, 4, REP_MAX_MSG};
        mode_t mode = r->o.admin_socket_mode ? r->o.admin_socket_mode : 0600;
        if ((rc = rpc_server_create(&ao, &r->admin_srv)) < 0) goto fail_msg;
        if ((rc = rpc_server_listen_mode(r->admin_srv, r->o.admin_addr, NULL,
                                         mode)) < 0) {
            snprintf(err, errlen, "admin listen %s: %s", r->o.admin_addr,
                     strerror(-rc));
            return rc;
        }
        if ((rc = rpc_server_start(r->admin_srv)) < 0) goto fail_msg;
    }
    if (r->o.admin_tcp) {
        struct rpc_tls atls = {
            r->o.admin_tls_ca ? r->o.admin_tls_ca : r->o.tls_ca,
            r->o.admin_tls_cert ? r->o.admin_tls_cert : r->o.tls_cert,
            r->o.admin_tls_key ? r->o.admin_tls_key : r->o.tls_key, NULL};
        struct rpc_server_opts ao = {rep__admin_tcp_methods,
                                     rep__n_admin_tcp_methods, r, 4,
                                     REP_MAX_MSG};
        if ((rc = rpc_server_create(&ao, &r->admin_tcp_srv)) < 0)
            goto fail_msg;
        if ((rc = rpc_server_listen(r->admin_tcp_srv, r->o.admin_tcp,
                                    &atls)) < 0) {
            snprintf(err, errlen, "admin listen %s: %s", r->o.admin_tcp,
                     strerror(-rc));
            return rc;
        }
        if ((rc = rpc_server_start(r->admin_tcp_srv)) < 0) goto fail_msg;
    }
    if (r->o.metrics_addr && (rc = rep__metrics_start(r, r->o.metrics_addr)) < 0) {
        snprintf(err, errlen, "metrics listen %s: %s", r->o.metrics_addr,
                 strerror(-rc));
        return rc;
    }
    if ((rc = -pthread_create(&r->scan_thr, NULL, scan_main, r)) < 0)
        goto fail_msg;
    r->scan_started = 1;
    if ((rc = -pthread_create(&r->ann_thr, NULL, rep__announcer_main, r)) < 0)
        goto fail_msg;
    r->ann_started = 1;
    if ((rc = -pthread_create(&r->grp_thr, NULL, rep__group_main, r)) < 0)
        goto fail_msg;
    r->grp_started = 1;
    tlog_info("rep.started", "region=%s peer=%s peer_addr=%s listen=%s "
              "link_port=%d admin=%s admin_tcp=%s tls=%s peer_identity=%s%s "
              "admin_identity=%s", r->region, r->peer_region,
              r->peer_addr, r->o.listen_addr, r->link_port,
              r->o.admin_addr ? r->o.admin_addr : "-",
              r->o.admin_tcp ? r->o.admin_tcp : "-",
              r->o.insecure ? "off" : "mtls",
              r->o.insecure ? "" : r->id_region_prefix,
              r->o.insecure ? "none" : r->peer_region, r->id_admin);
    return 0;
fail_msg:
    snprintf(err, errlen, "start: %s", strerror(-rc));
    return rc;
}

int rep_link_port(const rep_ctx *r) { return r->link_port; }
int rep_metrics_port(const rep_ctx *r) { return r->metrics_port; }

void rep_destroy(rep_ctx *r)
{
    if (!r) return;
    pthread_mutex_lock(&r->stop_mu);
    __atomic_store_n(&r->stopping, 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&r->stop_cv);
    pthread_mutex_unlock(&r->stop_mu);
    if (r->scan_started) pthread_join(r->scan_thr, NULL);
    if (r->ann_started) pthread_join(r->ann_thr, NULL);
    if (r->grp_started) pthread_join(r->grp_thr, NULL);
    for (struct rep_vol *v = r->vols; v; v = v->next) {
        pthread_mutex_lock(&v->mu);
        v->stop = 1;
        pthread_cond_broadcast(&v->cv);
        pthread_mutex_unlock(&v->mu);
    }
    for (struct rep_vol *v = r->vols; v; v = v->next)
        if (v->thr_joinable) pthread_join(v->thr, NULL);
    rep__metrics_stop(r);
    rpc_server_destroy(r->admin_srv, 2000);
    rpc_server_destroy(r->admin_tcp_srv, 2000);
    rpc_server_destroy(r->link_srv, 2000);
    rpc_client_destroy(r->peer);
    rpc_client_destroy(r->peer_ann);
    struct rep_vol *v = r->vols;
    while (v) {
        struct rep_vol *n = v->next;
        /* The RPO as of the primary's last call, for a failover after
         * a restart (persisted at most once a second while running). */
        char rpo[200];
        if (v->rpo.link_up_ms && r->st &&
            rep__rpo_format(&v->rpo, rpo, sizeof(rpo)) == 0)
            jr_meta_set(r->st, v->id, REP_META_RPO, rpo);
        pthread_mutex_destroy(&v->op_lock);
        pthread_mutex_destroy(&v->mu);
        pthread_cond_destroy(&v->cv);
        free(v);
        v = n;
    }
    st_close(r->st);
    rg_free(r->cfg);
    free((char *)r->o.config_path);
    free((char *)r->o.listen_addr);
    free((char *)r->o.admin_addr);
    free((char *)r->o.admin_tcp);
    free((char *)r->o.tls_ca);
    free((char *)r->o.tls_cert);
    free((char *)r->o.tls_key);
    free((char *)r->o.tls_server_name);
    free((char *)r->o.trust_domain);
    free((char *)r->o.admin_tls_ca);
    free((char *)r->o.admin_tls_cert);
    free((char *)r->o.admin_tls_key);
    free((char *)r->o.metrics_addr);
    pthread_mutex_destroy(&r->vol_mu);
    pthread_mutex_destroy(&r->grp_mu);
    pthread_mutex_destroy(&r->stop_mu);
    pthread_cond_destroy(&r->stop_cv);
    pthread_mutex_destroy(&r->bucket.mu);
    free(r);
}

