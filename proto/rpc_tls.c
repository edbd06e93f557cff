/*
 * rpc_tls.c: mutual TLS for the RPC layer.  Reads and checks PEM files
 * with OpenSSL (so a bad file fails at listen or create time, not at the
 * first handshake), turns them into gRPC server and channel credentials,
 * and tells a handler who its verified peer is (rpc_ctx_peer_identity,
 * rpc_ctx_peer_uri) from the call's gRPC auth context.
 */
#include "rpc_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tlog.h"

/* ------------------------------------------------------------------ */
/* PEM files                                                           */
/* ------------------------------------------------------------------ */

/* Read a whole PEM file into a NUL-terminated malloc'd string.  Any
 * failure to read is -ENOENT (the contract of rpc.h); an empty or huge
 * file is -EINVAL. */
static int pem_read(const char *path, char **out)
{
    *out = NULL;
    if (!path || !*path)
        return -EINVAL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        tlog_error("rpc.pem_unreadable", "path=%s err=%s", path,
                   strerror(errno));
        return -ENOENT;
    }
    int rc = 0;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    if (!buf) {
        rc = -ENOMEM;
        goto out;
    }
    for (;;) {
        if (len + 1 >= cap) {
            if (cap >= RPC_PEM_MAX) {
                rc = -EINVAL;
                goto out;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                rc = -ENOMEM;
                goto out;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t n = read(fd, buf + len, cap - len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            tlog_error("rpc.pem_unreadable", "path=%s err=%s", path,
                       strerror(errno));
            rc = -ENOENT;
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    buf[len] = 0;
    if (len == 0) {
        tlog_error("rpc.pem_empty", "path=%s", path);
        rc = -EINVAL;
        goto out;
    }
    *out = buf;
    buf = NULL;
out:
    free(buf);
    close(fd);
    return rc;
}

/* Check with OpenSSL what gRPC would only discover at the first handshake:
 * the certificate parses and the key belongs to it (cert may be NULL to
 * check a CA bundle only). */
static int pem_check(const char *ca, const char *cert, const char *key,
                     const char *what)
{
    int rc = -EINVAL;
    X509 *x = NULL, *c = NULL;
    EVP_PKEY *k = NULL;
    BIO *b = NULL;

    if (ca) {
        b = BIO_new_mem_buf(ca, -1);
        if (!b || !(c = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
            tlog_error("rpc.pem_bad", "what=%s file=ca", what);
            goto out;
        }
        BIO_free(b);
        b = NULL;
    }
    if (cert) {
        b = BIO_new_mem_buf(cert, -1);
        if (!b || !(x = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
            tlog_error("rpc.pem_bad", "what=%s file=cert", what);
            goto out;
        }
        BIO_free(b);
        b = BIO_new_mem_buf(key, -1);
        if (!b || !(k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL))) {
            tlog_error("rpc.pem_bad", "what=%s file=key", what);
            goto out;
        }
        if (X509_check_private_key(x, k) != 1) {
            tlog_error("rpc.pem_bad", "what=%s reason=%s", what,
                       "\"key does not match certificate\"");
            goto out;
        }
    }
    rc = 0;
out:
    ERR_clear_error(); /* never leave OpenSSL errors for gRPC to find */
    BIO_free(b);
    X509_free(x);
    X509_free(c);
    EVP_PKEY_free(k);
    return rc;
}

void rpc__pem_free(struct rpc__pem *p)
{
    free(p->ca);
    if (p->key) /* wipe the private key before giving the memory back */
        explicit_bzero(p->key, strlen(p->key));
    free(p->key);
    free(p->cert);
    free(p->server_uri);
    memset(p, 0, sizeof *p);
}

int rpc__pem_load(const struct rpc_tls *tls, int need_pair,
                  struct rpc__pem *p, const char *what)
{
    int rc;
    memset(p, 0, sizeof *p);
    if (!tls->ca_file)
        return -EINVAL;
    if (!tls->cert_file != !tls->key_file)
        return -EINVAL;
    if (need_pair && !tls->cert_file)
        return -EINVAL;
    if ((rc = pem_read(tls->ca_file, &p->ca)) < 0)
        goto fail;
    if (tls->cert_file) {
        if ((rc = pem_read(tls->cert_file, &p->cert)) < 0)
            goto fail;
        if ((rc = pem_read(tls->key_file, &p->key)) < 0)
            goto fail;
    }
    if ((rc = pem_check(p->ca, p->cert, p->key, what)) < 0)
        goto fail;
    if (tls->server_uri && !(p->server_uri = strdup(tls->server_uri))) {
        rc = -ENOMEM;
        goto fail;
    }
    return 0;
fail:
    rpc__pem_free(p);
    return rc;
}

/* ------------------------------------------------------------------ */
/* credentials                                                         */
/* ------------------------------------------------------------------ */

grpc_server_credentials *rpc__server_creds(const struct rpc__pem *p)
{
    if (!p)
        return grpc_insecure_server_credentials_create();
    grpc_ssl_pem_key_cert_pair pair = {.private_key = p->key,
                                       .cert_chain = p->cert};
    /* Mutual TLS: the client must present a certificate signed by the CA.
     * gRPC copies the strings. */
    return grpc_ssl_server_credentials_create_ex(
        p->ca, &pair, 1,
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY, NULL);
}

static int x509_uri_san(X509 *x, const char *prefix, char *buf, size_t size);

/* gRPC's verify_peer_callback, after the handshake verified the server's
 * chain and name: its certificate must carry exactly the expected URI.
 * Nonzero fails the handshake. */
static int verify_server_uri(const char *target, const char *peer_pem,
                             void *userdata)
{
    const char *want = userdata;
    char got[RPC_URI_MAX + 1] = "";
    int rc = -EINVAL;
    BIO *b = peer_pem ? BIO_new_mem_buf(peer_pem, -1) : NULL;
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    if (x) rc = x509_uri_san(x, NULL, got, sizeof got);
    X509_free(x);
    BIO_free(b);
    ERR_clear_error(); /* never leave OpenSSL errors for gRPC to find */
    if (rc == 0 && !strcmp(got, want))
        return 0;
    char q1[RPC_URI_MAX + 8], q2[RPC_URI_MAX + 8];
    tlog_error("rpc.server_identity_refused", "target=%s want=%s got=%s "
               "err=%d", target ? target : "",
               tlog_q(q1, sizeof q1, want),
               tlog_q(q2, sizeof q2, rc == 0 ? got : ""), rc);
    return 1;
}

grpc_channel_credentials *rpc__channel_creds(const struct rpc__pem *p)
{
    if (!p)
        return grpc_insecure_credentials_create();
    grpc_ssl_pem_key_cert_pair pair = {.private_key = p->key,
                                       .cert_chain = p->cert};
    grpc_ssl_verify_peer_options vo = {0};
    if (p->server_uri) {
        /* gRPC keeps the userdata and frees it with the credentials. */
        char *want = strdup(p->server_uri);
        if (!want)
            return NULL;
        vo.verify_peer_callback = verify_server_uri;
        vo.verify_peer_callback_userdata = want;
        vo.verify_peer_destruct = free;
    }
    return grpc_ssl_credentials_create_ex(p->ca, p->cert ? &pair : NULL,
                                          p->server_uri ? &vo : NULL, NULL);
}

/* ------------------------------------------------------------------ */
/* peer identity                                                       */
/* ------------------------------------------------------------------ */

/* The call's auth context if its peer presented a certificate that the
 * handshake verified, else NULL.  Our TLS listeners require and verify a
 * client certificate (rpc__server_creds), so on them every call has one;
 * plaintext listeners have none.  Release with grpc_auth_context_release. */
static grpc_auth_context *verified_auth(const rpc_ctx *ctx)
{
    grpc_call *call = rpc__ctx_call(ctx);
    if (!call) /* a detached ctx (tests): no peer, no identity */
        return NULL;
    grpc_auth_context *auth = grpc_call_auth_context(call);
    if (auth && !grpc_auth_context_peer_is_authenticated(auth)) {
        grpc_auth_context_release(auth);
        auth = NULL;
    }
    return auth;
}

static int copy_value(char *buf, size_t size, const char *v, size_t n)
{
    if (n + 1 > size)
        return -ERANGE;
    memcpy(buf, v, n);
    buf[n] = 0;
    return 0;
}

int rpc_ctx_peer_identity(const rpc_ctx *ctx, char *buf, size_t size)
{
    int rc = -ENOENT;
    grpc_auth_context *auth = verified_auth(ctx);
    if (!auth)
        return -ENOENT;
    /* The subject CN names the peer (gen-certs.sh puts the name there);
     * the first subjectAltName only when there is no CN. */
    grpc_auth_property_iterator it = grpc_auth_context_find_properties_by_name(
        auth, GRPC_X509_CN_PROPERTY_NAME);
    const grpc_auth_property *p = grpc_auth_property_iterator_next(&it);
    if (!p) {
        it = grpc_auth_context_find_properties_by_name(
            auth, GRPC_X509_SAN_PROPERTY_NAME);
        p = grpc_auth_property_iterator_next(&it);
    }
    if (p)
        rc = copy_value(buf, size, p->value, p->value_length);
    grpc_auth_context_release(auth);
    return rc;
}

/* The one URI subjectAltName of x starting with prefix (see
 * rpc_ctx_peer_uri for the results).  The URIs come from the certificate
 * itself, not from gRPC's flattened SAN list, which does not say which
 * entry is a URI and which a DNS name. */
static int x509_uri_san(X509 *x, const char *prefix, char *buf, size_t size)
{
    int crit = -1;
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, &crit,
                                           NULL);
    if (!gens) /* crit -1: no such extension; -2: it occurs twice */
        return crit == -2 ? -ENOTUNIQ : -ENOENT;
    size_t plen = prefix ? strlen(prefix) : 0;
    const unsigned char *match = NULL;
    size_t match_len = 0;
    int n_match = 0;
    for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type != GEN_URI)
            continue;
        const unsigned char *d =
            ASN1_STRING_get0_data(g->d.uniformResourceIdentifier);
        int len = ASN1_STRING_length(g->d.uniformResourceIdentifier);
        if (!d || len < 0 || (size_t)len < plen ||
            (plen && memcmp(d, prefix, plen) != 0))
            continue;
        if (n_match++ == 0) {
            match = d;
            match_len = (size_t)len;
        }
    }
    int rc;
    if (n_match == 0)
        rc = -ENOENT;
    else if (n_match > 1)
        rc = -ENOTUNIQ; /* two identities: refuse to pick one */
    else if (memchr(match, 0, match_len))
        rc = -EINVAL; /* "spiffe://a\0..." must not pass for "spiffe://a" */
    else
        rc = copy_value(buf, size, (const char *)match, match_len);
    GENERAL_NAMES_free(gens);
    return rc;
}

int rpc_ctx_peer_uri(const rpc_ctx *ctx, const char *prefix, char *buf,
                     size_t size)
{
    grpc_auth_context *auth = verified_auth(ctx);
    if (!auth)
        return -ENOENT;
    /* x509_pem_cert: the peer's leaf certificate as the handshake saw
     * and verified it (gRPC 1.51 and later all provide it). */
    grpc_auth_property_iterator it = grpc_auth_context_find_properties_by_name(
        auth, GRPC_X509_PEM_CERT_PROPERTY_NAME);
    const grpc_auth_property *p = grpc_auth_property_iterator_next(&it);
    int rc = -ENOENT;
    if (p && p->value_length > 0 && p->value_length <= RPC_PEM_MAX) {
        BIO *b = BIO_new_mem_buf(p->value, (int)p->value_length);
        X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
        if (!b) {
            rc = -ENOMEM;
        } else if (!x) {
            tlog_error("rpc.peer_cert_bad", "method=%s",
                       rpc_ctx_method(ctx));
            rc = -EINVAL;
        } else {
            rc = x509_uri_san(x, prefix, buf, size);
        }
        X509_free(x);
        BIO_free(b);
        ERR_clear_error(); /* never leave OpenSSL errors for gRPC to find */
    }
    grpc_auth_context_release(auth);
    return rc;
}
