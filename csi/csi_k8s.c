/*
 * csi_k8s.c: read this node's topology labels from the Kubernetes API.
 * Used once at node start-up with --topology-from-k8s-node.
 *
 * The request (csi_k8s_node_topology) is GET /api/v1/nodes/<name> over
 * HTTPS through libcurl, with the pod's service-account token as a bearer
 * token and the server certificate verified against the service-account
 * CA (host name or IP checked, TLS 1.2 or later, no proxy, no redirect).
 * The answer (csi__k8s_parse_node) is decoded by json-c and walked to
 * metadata.labels.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <json-c/json.h>

#include "csi.h"
#include "csi_int.h"

#define K8S_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"
/* Limits on what we read from outside: a Node object is tens of KiB (its
 * status lists the node's container images), a service-account token a
 * few KiB.  Larger ones are refused, never cut. */
#define K8S_MAX_BODY (16u << 20)
#define K8S_MAX_TOKEN (64u << 10)
#define K8S_MAX_DEPTH 64          /* JSON nesting accepted */
#define K8S_CONNECT_TIMEOUT_MS 10000
#define K8S_TIMEOUT_MS 30000
#define LABEL_REGION "topology.kubernetes.io/region"
#define LABEL_ZONE "topology.kubernetes.io/zone"

/* ---------------------------------------------------------- the answer */

/* Copy up to 48 bytes of s into out for a one-line log message: printable
 * ASCII only, anything else (and '"') becomes a space. */
static void quote_head(const char *s, size_t len, char *out, size_t outlen)
{
    size_t k = 0;
    for (size_t i = 0; i < len && k + 1 < outlen && k < 48; i++)
        out[k++] = s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"' ? s[i] : ' ';
    out[k] = 0;
}

/* Parse len bytes of JSON into an object (*out, caller puts it), or a
 * negative errno with err set: -EINVAL for anything but one complete JSON
 * object (nothing but whitespace may follow it). */
static int parse_object(const char *body, size_t len, json_object **out,
                        char *err, size_t errlen)
{
    char head[64];
    const char *why = NULL;
    *out = NULL;
    if (len > K8S_MAX_BODY) {
        snprintf(err, errlen, "Node object: answer of %zu bytes (at most %u)",
                 len, K8S_MAX_BODY);
        return -EFBIG;
    }
    json_tokener *tok = json_tokener_new_ex(K8S_MAX_DEPTH);
    if (!tok) return -ENOMEM;
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT |
                                    JSON_TOKENER_VALIDATE_UTF8);
    json_object *o = json_tokener_parse_ex(tok, body, (int)len);
    enum json_tokener_error je = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (je == json_tokener_continue) why = "the document ends early";
    else if (je != json_tokener_success) why = json_tokener_error_desc(je);
    else if (end < len) why = "data follows the document";
    else if (!json_object_is_type(o, json_type_object)) why = "not an object";
    if (why) {
        json_object_put(o);
        quote_head(body, len, head, sizeof(head));
        snprintf(err, errlen, "Node object: JSON not understood (%s at byte "
                 "%zu; answer starts: %s)", why, end, head);
        return -EINVAL;
    }
    *out = o;
    return 0;
}

/* Copy label key of the labels object into out ("" when absent). */
static int get_label(json_object *labels, const char *key, char *out,
                     size_t outlen, char *err, size_t errlen)
{
    json_object *v;
    out[0] = 0;
    if (!json_object_object_get_ex(labels, key, &v)) return 0;
    if (!json_object_is_type(v, json_type_string)) {
        snprintf(err, errlen, "Node object: label %s is not a string", key);
        return -EINVAL;
    }
    const char *s = json_object_get_string(v);
    size_t n = (size_t)json_object_get_string_len(v);
    if (strlen(s) != n) {
        snprintf(err, errlen, "Node object: label %s holds a NUL byte", key);
        return -EINVAL;
    }
    if (n >= outlen) {
        snprintf(err, errlen, "Node object: label %s has %zu bytes (at most "
                 "%zu)", key, n, outlen ? outlen - 1 : 0);
        return -EINVAL;
    }
    memcpy(out, s, n + 1);
    return 0;
}

/* The "message" of a Kubernetes Status object (the body of an error
 * answer) into msg, printable bytes only; "" when there is none. */
static void status_message(const char *body, size_t len, char *msg,
                           size_t msglen)
{
    json_object *o, *m;
    char e[8];
    msg[0] = 0;
    if (parse_object(body, len, &o, e, sizeof(e)) < 0) return;
    if (json_object_object_get_ex(o, "message", &m) &&
        json_object_is_type(m, json_type_string)) {
        const char *s = json_object_get_string(m);
        quote_head(s, strlen(s), msg, msglen);
    }
    json_object_put(o);
}

int csi__k8s_parse_node(long status, const char *body, size_t len,
                        const char *node_name, char *region,
                        size_t regionlen, char *zone, size_t zonelen,
                        char *err, size_t errlen)
{
    json_object *o = NULL, *md, *labels;
    int rc;
    if (regionlen) region[0] = 0;
    if (zonelen) zone[0] = 0;
    if (regionlen == 0 || zonelen == 0) {
        snprintf(err, errlen, "no room for the labels");
        return -EINVAL;
    }
    if (status != 200) {
        char msg[64];
        status_message(body, len, msg, sizeof(msg));
        snprintf(err, errlen, "GET /api/v1/nodes/%s: HTTP status %ld%s%s%s",
                 node_name, status, msg[0] ? " (" : "", msg,
                 msg[0] ? ")" : "");
        return status == 404 ? -ENOENT
               : status == 401 || status == 403 ? -EACCES : -EIO;
    }
    if ((rc = parse_object(body, len, &o, err, errlen)) < 0) return rc;
    if (!json_object_object_get_ex(o, "metadata", &md) ||
        !json_object_is_type(md, json_type_object)) {
        snprintf(err, errlen, "Node object: no metadata object");
        rc = -EINVAL;
        goto out;
    }
    /* A Node without labels has no topology: both stay "". */
    if (!json_object_object_get_ex(md, "labels", &labels) ||
        json_object_is_type(labels, json_type_null))
        goto out;
    if (!json_object_is_type(labels, json_type_object)) {
        snprintf(err, errlen, "Node object: metadata.labels is not an "
                 "object");
        rc = -EINVAL;
        goto out;
    }
    if ((rc = get_label(labels, LABEL_REGION, region, regionlen, err,
                        errlen)) < 0 ||
        (rc = get_label(labels, LABEL_ZONE, zone, zonelen, err, errlen)) < 0)
        region[0] = zone[0] = 0;
out:
    json_object_put(o);
    return rc;
}

/* --------------------------------------------------------- the request */

/* The service-account token: the whole file, trailing whitespace cut.  It
 * goes into an HTTP header, so only printable ASCII is accepted.  The
 * caller wipes and frees *out. */
static int read_token(const char *path, char **out, char *err, size_t errlen)
{
    struct stat st;
    int rc = 0;
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0) {
        rc = -errno;
        snprintf(err, errlen, "reading %s: %s", path, strerror(-rc));
        goto out;
    }
    if (st.st_size > (off_t)K8S_MAX_TOKEN) {
        snprintf(err, errlen, "%s: %lld bytes, more than a token (at most "
                 "%u)", path, (long long)st.st_size, K8S_MAX_TOKEN);
        rc = -EFBIG;
        goto out;
    }
    char *t = malloc(K8S_MAX_TOKEN + 1);
    if (!t) {
        rc = -ENOMEM;
        goto out;
    }
    size_t n = 0;
    for (;;) {
        ssize_t k = read(fd, t + n, K8S_MAX_TOKEN + 1 - n);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) {
            rc = -errno;
            snprintf(err, errlen, "reading %s: %s", path, strerror(-rc));
            break;
        }
        if (k == 0) break;
        n += (size_t)k;
        if (n > K8S_MAX_TOKEN) {
            snprintf(err, errlen, "%s: more than a token (at most %u bytes)",
                     path, K8S_MAX_TOKEN);
            rc = -EFBIG;
            break;
        }
    }
    while (rc == 0 && n && strchr(" \t\r\n", t[n - 1])) n--;
    if (rc == 0) t[n] = 0;
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (t[i] <= 0x20 || t[i] >= 0x7f) {
            snprintf(err, errlen, "%s: the token holds a byte not allowed in "
                     "an HTTP header (at %zu)", path, i);
            rc = -EINVAL;
        }
    if (rc == 0 && n == 0) {
        snprintf(err, errlen, "%s is empty", path);
        rc = -EINVAL;
    }
    if (rc < 0) {
        explicit_bzero(t, K8S_MAX_TOKEN + 1);
        free(t);
    } else {
        *out = t;
    }
out:
    if (fd >= 0) close(fd);
    return rc;
}

/* The answer body, grown as libcurl hands it over, refused past
 * K8S_MAX_BODY. */
struct k8s_body {
    char *p;
    size_t len, cap;
    int too_big;
};

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    struct k8s_body *b = arg;
    size_t k = size * n;
    if (k > K8S_MAX_BODY - b->len) {
        b->too_big = 1;
        return 0; /* libcurl stops with CURLE_WRITE_ERROR */
    }
    if (b->len + k > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->len + k) cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) return 0;
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, k);
    b->len += k;
    return k;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;
static void curl_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int csi_k8s_node_topology(const char *node_name, char *region,
                          size_t regionlen, char *zone, size_t zonelen,
                          char *err, size_t errlen)
{
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    const char *port = getenv("KUBERNETES_SERVICE_PORT");
    const char *sa = getenv("TANDEM_K8S_SA_DIR");
    char ca[PATH_MAX], path[PATH_MAX], url[1024], cerr[CURL_ERROR_SIZE];
    char *token = NULL, *auth = NULL;
    size_t authlen = 0;
    struct k8s_body body = {0};
    struct curl_slist *hdrs = NULL;
    CURL *c = NULL;
    long status = 0;
    int rc;

    if (!sa || !sa[0]) sa = K8S_SA_DIR;
    if (!port || !port[0]) port = "443";
    if (!host || !host[0]) {
        snprintf(err, errlen, "KUBERNETES_SERVICE_HOST not set (not in a pod?)");
        return -EINVAL;
    }
    char *pend;
    long pn = strtol(port, &pend, 10);
    if (*pend || pn < 1 || pn > 65535 || port[0] == '+' || port[0] == '-') {
        snprintf(err, errlen, "KUBERNETES_SERVICE_PORT %.32s is not a port",
                 port);
        return -EINVAL;
    }
    if (strpbrk(host, "/?#@ \r\n")) {
        snprintf(err, errlen, "KUBERNETES_SERVICE_HOST %.64s is not a host",
                 host);
        return -EINVAL;
    }
    if (!node_name || !node_name[0] || strpbrk(node_name, "/?#% \r\n")) {
        snprintf(err, errlen, "bad or missing node name (set NODE_NAME)");
        return -EINVAL;
    }
    snprintf(ca, sizeof(ca), "%s/ca.crt", sa);
    if (access(ca, R_OK) < 0) {
        snprintf(err, errlen, "loading CA %s failed: %s", ca, strerror(errno));
        return -EINVAL;
    }
    snprintf(path, sizeof(path), "%s/token", sa);
    if ((rc = read_token(path, &token, err, errlen)) < 0) return rc;
    /* An IPv6 address goes in brackets. */
    int n = snprintf(url, sizeof(url), "https://%s%s%s:%ld/api/v1/nodes/%s",
                     strchr(host, ':') ? "[" : "", host,
                     strchr(host, ':') ? "]" : "", pn, node_name);
    if (n < 0 || (size_t)n >= sizeof(url)) {
        snprintf(err, errlen, "URL for node %.64s too long", node_name);
        rc = -EINVAL;
        goto out;
    }
    authlen = strlen(token) + 32;
    if (!(auth = malloc(authlen))) {
        rc = -ENOMEM;
        goto out;
    }
    snprintf(auth, authlen, "Authorization: Bearer %s", token);

    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK || !(c = curl_easy_init())) {
        snprintf(err, errlen, "libcurl initialisation failed");
        rc = -ENOMEM;
        goto out;
    }
    struct curl_slist *h1 = curl_slist_append(NULL, auth);
    struct curl_slist *h2 = h1 ? curl_slist_append(h1, "Accept: "
                                                   "application/json") : NULL;
    if (!h2) {
        curl_slist_free_all(h1);
        rc = -ENOMEM;
        goto out;
    }
    hdrs = h2;
    cerr[0] = 0;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "tandem-csi/" CSI_VERSION);
    curl_easy_setopt(c, CURLOPT_CAINFO, ca);
    curl_easy_setopt(c, CURLOPT_CAPATH, NULL);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(c, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    curl_easy_setopt(c, CURLOPT_PROXY, ""); /* the in-cluster address */
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)K8S_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)K8S_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);

    CURLcode cc = curl_easy_perform(c);
    const char *why = cerr[0] ? cerr : curl_easy_strerror(cc);
    switch (cc) {
    case CURLE_OK:
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        rc = csi__k8s_parse_node(status, body.p ? body.p : "", body.len,
                                 node_name, region, regionlen, zone, zonelen,
                                 err, errlen);
        break;
    case CURLE_COULDNT_RESOLVE_HOST:
        snprintf(err, errlen, "resolving %s failed: %s", host, why);
        rc = -EHOSTUNREACH;
        break;
    case CURLE_COULDNT_CONNECT:
        snprintf(err, errlen, "connecting to %s:%s failed: %s", host, port,
                 why);
        rc = -ECONNREFUSED;
        break;
    case CURLE_OPERATION_TIMEDOUT:
        snprintf(err, errlen, "GET %s timed out: %s", url, why);
        rc = -ETIMEDOUT;
        break;
    case CURLE_SSL_CACERT_BADFILE:
        snprintf(err, errlen, "loading CA %s failed: %s", ca, why);
        rc = -EINVAL;
        break;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
        snprintf(err, errlen, "TLS to %s:%s failed: %s", host, port, why);
        rc = -ECONNREFUSED;
        break;
    case CURLE_WRITE_ERROR:
        if (body.too_big) {
            snprintf(err, errlen, "GET %s: answer larger than %u bytes", url,
                     K8S_MAX_BODY);
            rc = -EFBIG;
            break;
        }
        snprintf(err, errlen, "GET %s: out of memory", url);
        rc = -ENOMEM;
        break;
    default:
        snprintf(err, errlen, "GET %s failed: %s", url, why);
        rc = -EIO;
        break;
    }
out:
    /* The bearer token must not outlive the call in our memory, whatever
     * the path.  BUG: libcurl's own copies (the request it built) are
     * freed by curl_easy_cleanup without being wiped; libcurl has no
     * option for that. */
    if (c) curl_easy_cleanup(c);
    for (struct curl_slist *h = hdrs; h; h = h->next)
        explicit_bzero(h->data, strlen(h->data));
    curl_slist_free_all(hdrs);
    if (auth) explicit_bzero(auth, authlen);
    free(auth);
    if (token) explicit_bzero(token, K8S_MAX_TOKEN + 1);
    free(token);
    free(body.p);
    return rc;
}
