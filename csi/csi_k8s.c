/*
 * csi_k8s.c: read this node's topology labels from the Kubernetes API
 * (GET /api/v1/nodes/<name> with the pod's service-account token, TLS
 * verified against the service-account CA, through OpenSSL), and a
 * minimal JSON walk to metadata.labels.  Used once at node start-up with
 * --topology-from-k8s-node.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "csi.h"
#include "csi_int.h"

#define K8S_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"
#define K8S_MAX_BODY (4u << 20)
#define LABEL_REGION "topology.kubernetes.io/region"
#define LABEL_ZONE "topology.kubernetes.io/zone"

/* ---------------------------------------------------------------- JSON */

struct js {
    const char *p, *end;
};

static void js_ws(struct js *j)
{
    while (j->p < j->end && strchr(" \t\r\n", *j->p)) j->p++;
}

/* Parse a string at j->p into out (truncated, escapes other than \uXXXX
 * decoded; \u is kept verbatim: label keys and values are ASCII). */
static int js_string(struct js *j, char *out, size_t outlen)
{
    size_t o = 0;
    js_ws(j);
    if (j->p >= j->end || *j->p != '"') return -EINVAL;
    j->p++;
    while (j->p < j->end && *j->p != '"') {
        char c = *j->p++;
        if (c == '\\') {
            if (j->p >= j->end) return -EINVAL;
            c = *j->p++;
            switch (c) {
            case 'n': c = '\n'; break;
            case 't': c = '\t'; break;
            case 'r': c = '\r'; break;
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            default: break; /* \" \\ \/ and \u (kept as 'u') */
            }
        }
        if (out && o + 1 < outlen) out[o++] = c;
    }
    if (j->p >= j->end) return -EINVAL;
    j->p++;
    if (out && outlen) out[o] = 0;
    return 0;
}

static int js_skip(struct js *j, int depth)
{
    js_ws(j);
    if (j->p >= j->end || depth > 64) return -EINVAL;
    char c = *j->p;
    if (c == '"') return js_string(j, NULL, 0);
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        j->p++;
        js_ws(j);
        if (j->p < j->end && *j->p == close) {
            j->p++;
            return 0;
        }
        for (;;) {
            if (c == '{') {
                if (js_string(j, NULL, 0) < 0) return -EINVAL;
                js_ws(j);
                if (j->p >= j->end || *j->p++ != ':') return -EINVAL;
            }
            if (js_skip(j, depth + 1) < 0) return -EINVAL;
            js_ws(j);
            if (j->p >= j->end) return -EINVAL;
            if (*j->p == ',') {
                j->p++;
                continue;
            }
            if (*j->p++ == close) return 0;
            return -EINVAL;
        }
    }
    /* number, true, false, null */
    while (j->p < j->end && !strchr(",}] \t\r\n", *j->p)) j->p++;
    return 0;
}

/* Position j at the value of key in the object at j->p.  0 found, -ENOENT
 * absent, -EINVAL malformed. */
static int js_find(struct js *j, const char *key)
{
    char k[256];
    js_ws(j);
    if (j->p >= j->end || *j->p != '{') return -EINVAL;
    j->p++;
    js_ws(j);
    if (j->p < j->end && *j->p == '}') return -ENOENT;
    for (;;) {
        if (js_string(j, k, sizeof(k)) < 0) return -EINVAL;
        js_ws(j);
        if (j->p >= j->end || *j->p++ != ':') return -EINVAL;
        if (!strcmp(k, key)) return 0;
        if (js_skip(j, 1) < 0) return -EINVAL;
        js_ws(j);
        if (j->p >= j->end) return -EINVAL;
        if (*j->p == ',') {
            j->p++;
            continue;
        }
        return *j->p == '}' ? -ENOENT : -EINVAL;
    }
}

/* Labels region/zone from a Node object (csi__k8s_parse_answer). */
static int node_labels(const char *body, size_t len, char *region,
                       size_t rlen, char *zone, size_t zlen)
{
    struct js j = {body, body + len};
    int rc;
    region[0] = zone[0] = 0;
    if ((rc = js_find(&j, "metadata")) < 0) return rc;
    if ((rc = js_find(&j, "labels")) < 0) return rc == -ENOENT ? 0 : rc;
    struct js l = j;
    if (js_find(&l, LABEL_REGION) == 0 && js_string(&l, region, rlen) < 0)
        return -EINVAL;
    l = j;
    if (js_find(&l, LABEL_ZONE) == 0 && js_string(&l, zone, zlen) < 0)
        return -EINVAL;
    return 0;
}

int csi__k8s_parse_answer(const char *body, size_t len,
                          const char *node_name, char *region,
                          size_t regionlen, char *zone, size_t zonelen,
                          char *err, size_t errlen)
{
    int rc;
    int status = 0;
    if (sscanf(body, "HTTP/%*s %d", &status) != 1 || status != 200) {
        snprintf(err, errlen, "GET /api/v1/nodes/%s: HTTP status %d",
                 node_name, status);
        return status == 404 ? -ENOENT : status == 401 || status == 403
                                             ? -EACCES : -EIO;
    }
    const char *b = strstr(body, "\r\n\r\n");
    if (!b) {
        snprintf(err, errlen, "malformed HTTP answer");
        return -EINVAL;
    }
    b += 4;
    rc = node_labels(b, len - (size_t)(b - body), region, regionlen, zone,
                     zonelen);
    if (rc < 0) {
        /* Quote the start of the answer, printable bytes only (the message
         * ends up in a one-line log). */
        char head[49];
        size_t k = 0;
        for (const char *c = b; *c && k < sizeof(head) - 1; c++)
            head[k++] = *c >= 0x20 && *c < 0x7f && *c != '"' ? *c : ' ';
        head[k] = 0;
        snprintf(err, errlen, "Node object: JSON not understood (answer "
                 "starts: %s)", head);
    }
    return rc;
}

/* ---------------------------------------------------------------- HTTPS */

static int read_file(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "re");
    if (!f) return -errno;
    size_t n = fread(buf, 1, len - 1, f);
    fclose(f);
    buf[n] = 0;
    while (n && strchr(" \r\n\t", buf[n - 1])) buf[--n] = 0;
    return 0;
}

static int tcp_connect(const char *host, const char *port)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai, *a;
    int fd = -1;
    if (getaddrinfo(host, port, &hints, &ai) != 0) return -EHOSTUNREACH;
    for (a = ai; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC,
                    a->ai_protocol);
        if (fd < 0) continue;
        struct timeval tv = {10, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    return fd < 0 ? -ECONNREFUSED : fd;
}

int csi_k8s_node_topology(const char *node_name, char *region,
                          size_t regionlen, char *zone, size_t zonelen,
                          char *err, size_t errlen)
{
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    const char *port = getenv("KUBERNETES_SERVICE_PORT");
    const char *sa = getenv("TANDEM_K8S_SA_DIR");
    char path[1024], token[8192], req[10240];
    SSL_CTX *sctx = NULL;
    SSL *ssl = NULL;
    char *body = NULL;
    int fd = -1, rc = -EIO;

    if (!sa || !sa[0]) sa = K8S_SA_DIR;
    if (!port || !port[0]) port = "443";
    if (!host || !host[0]) {
        snprintf(err, errlen, "KUBERNETES_SERVICE_HOST not set (not in a pod?)");
        return -EINVAL;
    }
    if (!node_name || !node_name[0] || strpbrk(node_name, "/?#% \r\n")) {
        snprintf(err, errlen, "bad or missing node name (set NODE_NAME)");
        return -EINVAL;
    }
    snprintf(path, sizeof(path), "%s/token", sa);
    if ((rc = read_file(path, token, sizeof(token))) < 0) {
        snprintf(err, errlen, "reading %s: %s", path, strerror(-rc));
        return rc;
    }
    snprintf(path, sizeof(path), "%s/ca.crt", sa);

    sctx = SSL_CTX_new(TLS_client_method());
    if (!sctx || SSL_CTX_load_verify_locations(sctx, path, NULL) != 1) {
        snprintf(err, errlen, "loading CA %s failed", path);
        rc = -EINVAL;
        goto out;
    }
    SSL_CTX_set_verify(sctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_min_proto_version(sctx, TLS1_2_VERSION);
    if ((fd = tcp_connect(host, port)) < 0) {
        snprintf(err, errlen, "connecting to %s:%s failed: %s", host, port,
                 strerror(-fd));
        rc = fd;
        goto out;
    }
    ssl = SSL_new(sctx);
    SSL_set_fd(ssl, fd);
    /* Check the server certificate names the address we dialled. */
    X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
    struct in6_addr a6;
    if (inet_pton(AF_INET, host, &a6) == 1 || inet_pton(AF_INET6, host, &a6) == 1) {
        X509_VERIFY_PARAM_set1_ip_asc(vp, host);
    } else {
        SSL_set_tlsext_host_name(ssl, host);
        X509_VERIFY_PARAM_set1_host(vp, host, 0);
    }
    if (SSL_connect(ssl) != 1) {
        unsigned long e = ERR_get_error();
        snprintf(err, errlen, "TLS to %s:%s failed: %s", host, port,
                 e ? ERR_reason_error_string(e) : "handshake");
        rc = -ECONNREFUSED;
        goto out;
    }
    /* HTTP/1.0: the server answers without chunked encoding. */
    int n = snprintf(req, sizeof(req),
                     "GET /api/v1/nodes/%s HTTP/1.0\r\nHost: %s\r\n"
                     "Authorization: Bearer %s\r\nAccept: application/json\r\n"
                     "User-Agent: tandem-csi/" CSI_VERSION "\r\n\r\n",
                     node_name, host, token);
    if (n < 0 || (size_t)n >= sizeof(req)) {
        snprintf(err, errlen, "request for node %.64s too long (token of "
                 "%zu bytes)", node_name, strlen(token));
        rc = -EINVAL;
        goto out;
    }
    if (SSL_write(ssl, req, n) != n) {
        snprintf(err, errlen, "sending the request to %s:%s failed", host,
                 port);
        rc = -EIO;
        goto out;
    }
    size_t len = 0, cap = 65536;
    body = malloc(cap + 1);
    if (!body) {
        rc = -ENOMEM;
        goto out;
    }
    for (;;) {
        if (len == cap) {
            if (cap >= K8S_MAX_BODY) break;
            char *nb = realloc(body, 2 * cap + 1);
            if (!nb) {
                rc = -ENOMEM;
                goto out;
            }
            body = nb;
            cap *= 2;
        }
        int got = SSL_read(ssl, body + len, (int)(cap - len));
        if (got <= 0) break;
        len += (size_t)got;
    }
    body[len] = 0;
    rc = csi__k8s_parse_answer(body, len, node_name, region, regionlen, zone,
                               zonelen, err, errlen);
out:
    /* The bearer token must not outlive the call, whatever the path. */
    OPENSSL_cleanse(token, sizeof(token));
    OPENSSL_cleanse(req, sizeof(req));
    if (ssl) {
        SSL_shutdown(ssl);
        SSL_free(ssl);
    }
    if (fd >= 0) close(fd);
    SSL_CTX_free(sctx);
    free(body);
    return rc;
}
