/*
 * test-csi.c: unit tests of the CSI plugin's pure checks (csi/csi.h):
 * StorageClass parameters, the WaitForFirstConsumer region choice
 * (including the requisite[0] trap), volume ids from names, paths.
 * The RPCs themselves are tested over the real socket by
 * tests/e2e/t021*-csi-*.sh.
 */
#include "tt.h"

#include "csi/csi.h"
#include "csi/csi_int.h"
#include "test-csi-client.h"

static const char *cfg_text =
    "[tandem]\n"
    "default_region = a\n"
    "[region a]\nbackend = sqlite\ndb_path = /tmp/none-a.db\n"
    "[region b]\nbackend = sqlite\ndb_path = /tmp/none-b.db\n"
    "[region c]\nbackend = sqlite\ndb_path = /tmp/none-c.db\nzone = c1\n";

static struct rg_config *cfg(void)
{
    struct rg_config *c = NULL;
    char err[256];
    int rc = rg_parse(cfg_text, "test", &c, err, sizeof(err));
    if (rc < 0) TT_FAIL("rg_parse: %s", err);
    return c;
}

/* ---- parameters ---- */

struct kvs {
    struct csi_mapent e[16];
    struct csi_mapent *p[16];
    size_t n;
};

static void kv(struct kvs *k, const char *key, const char *val)
{
    k->e[k->n].key = (char *)key;
    k->e[k->n].value = (char *)val;
    k->p[k->n] = &k->e[k->n];
    k->n++;
}

static int parse(struct rg_config *c, struct kvs *k, struct csi_params *p,
                 char *err, size_t len)
{
    err[0] = 0;
    return csi_params_parse(c, k->n, k->p, p, err, len);
}

TEST(params_full_set)
{
    struct rg_config *c = cfg();
    struct kvs k = {0};
    struct csi_params p;
    char err[512];
    kv(&k, "replication", "async");
    kv(&k, "peerRegion", "b");
    kv(&k, "region", "a");
    kv(&k, "fsType", "xfs");
    kv(&k, "objectSize", "1Mi");
    kv(&k, "mkfsOptions", "-m 0 -E lazy_itable_init=1");
    kv(&k, "csi.storage.k8s.io/pvc/name", "data");
    kv(&k, "csi.storage.k8s.io/pvc/namespace", "db");
    kv(&k, "csi.storage.k8s.io/pv/name", "pvc-1");
    kv(&k, "csi.storage.k8s.io/provisioner-secret-name", "x");
    kv(&k, "consistencyGroup", "db-shards_1");
    ASSERT_EQ(parse(c, &k, &p, err, sizeof(err)), 0);
    ASSERT(!strcmp(p.group, "db-shards_1"));
    ASSERT_EQ(p.async, 1);
    ASSERT(!strcmp(p.peer_region, "b"));
    ASSERT(!strcmp(p.region, "a"));
    ASSERT(!strcmp(p.fs_type, "xfs"));
    ASSERT_EQ(p.object_size, 1 << 20);
    ASSERT(!strcmp(p.pvc_name, "data"));
    ASSERT(!strcmp(p.pvc_namespace, "db"));
    ASSERT(!strcmp(p.pv_name, "pvc-1"));
    rg_free(c);
}

/* Each bad parameter is refused with the key named in the message. */
TEST(params_bad_values_name_the_key)
{
    struct rg_config *c = cfg();
    struct csi_params p;
    char err[512];
    static const char *cases[][5] = {
        /* key, value, [key2, value2], expected word in err */
        {"colour", "blue", NULL, NULL, "colour"},
        {"replication", "sync", NULL, NULL, "replication"},
        {"replication", "async", "peerRegion", "zz", "peerRegion"},
        {"peerRegion", "b", NULL, NULL, "peerRegion"},
        {"region", "mars", NULL, NULL, "region"},
        {"fsType", "btrfs", NULL, NULL, "fsType"},
        {"objectSize", "3Mi", NULL, NULL, "objectSize"},
        {"objectSize", "32Ki", NULL, NULL, "objectSize"},
        {"objectSize", "128Mi", NULL, NULL, "objectSize"},
        {"objectSize", "4Gi", NULL, NULL, "objectSize"},
        {"objectSize", "-1", NULL, NULL, "objectSize"},
        {"mkfsOptions", "-m 0; rm -rf /", NULL, NULL, "mkfsOptions"},
        {"mkfsOptions", "$(reboot)", NULL, NULL, "mkfsOptions"},
        {"consistencyGroup", "", NULL, NULL, "consistencyGroup"},
        {"consistencyGroup", "a.b", NULL, NULL, "consistencyGroup"},
        {"consistencyGroup", "x/y", NULL, NULL, "consistencyGroup"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct kvs k = {0};
        kv(&k, cases[i][0], cases[i][1]);
        if (cases[i][2]) kv(&k, cases[i][2], cases[i][3]);
        int rc = parse(c, &k, &p, err, sizeof(err));
        if (rc != -EINVAL || !strstr(err, cases[i][4]))
            TT_FAIL("case %zu (%s=%s): rc %d err \"%s\"", i, cases[i][0],
                    cases[i][1], rc, err);
    }
    /* async without peerRegion: resolved from the region map later */
    struct kvs k0 = {0};
    kv(&k0, "replication", "async");
    ASSERT_EQ(parse(c, &k0, &p, err, sizeof(err)), 0);
    ASSERT(p.async && !p.peer_region[0]);
    /* async to itself */
    struct kvs k = {0};
    kv(&k, "replication", "async");
    kv(&k, "peerRegion", "a");
    kv(&k, "region", "a");
    ASSERT_EQ(parse(c, &k, &p, err, sizeof(err)), -EINVAL);
    ASSERT(strstr(err, "peerRegion"));
    rg_free(c);
}

TEST(params_object_sizes)
{
    struct rg_config *c = cfg();
    struct csi_params p;
    char err[512];
    static const struct { const char *v; uint32_t want; } ok[] = {
        {"65536", 65536}, {"64Ki", 65536}, {"4Mi", 4u << 20},
        {"64Mi", 64u << 20}, {"128K", 128u << 10}};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        struct kvs k = {0};
        kv(&k, "objectSize", ok[i].v);
        ASSERT_EQ(parse(c, &k, &p, err, sizeof(err)), 0);
        ASSERT_EQ(p.object_size, ok[i].want);
    }
    rg_free(c);
}

/* ---- topology ---- */

static int pick(struct rg_config *c, struct tc_topo *req,
                struct tc_topo *pref, const char *param, char *out, char *err)
{
    Csi__V1__TopologyRequirement r;
    return csi_topology_select(c, tc_topo_req(&r, req, pref), param, out, 64,
                               err, 512);
}

/* What the external-provisioner sends for a node in each region:
 * requisite = every allowed topology (sorted), preferred = the selected
 * node's segment first, then the rest. */
TEST(topology_wffc_each_region)
{
    struct rg_config *c = cfg();
    const char *regions[] = {"a", "b", "c"};
    const char *zones[] = {NULL, NULL, "c1"};
    for (int n = 0; n < 3; n++) {
        struct tc_topo req = {0}, pref = {0};
        char out[64], err[512];
        for (int i = 0; i < 3; i++) tc_seg(&req, regions[i], zones[i]);
        tc_seg(&pref, regions[n], zones[n]);
        for (int i = 0; i < 3; i++)
            if (i != n) tc_seg(&pref, regions[i], zones[i]);
        ASSERT_EQ(pick(c, &req, &pref, NULL, out, err), 0);
        if (strcmp(out, regions[n]))
            TT_FAIL("node in %s: volume went to %s", regions[n], out);
    }
    rg_free(c);
}

/* requisite[0] is "a", the node is in "b": the volume must go to b. */
TEST(topology_requisite0_trap)
{
    struct rg_config *c = cfg();
    struct tc_topo req = {0}, pref = {0};
    char out[64], err[512];
    tc_seg(&req, "a", NULL);
    tc_seg(&req, "b", NULL);
    tc_seg(&pref, "b", NULL);
    tc_seg(&pref, "a", NULL);
    ASSERT_EQ(pick(c, &req, &pref, NULL, out, err), 0);
    ASSERT(!strcmp(out, "b"));
    rg_free(c);
}

TEST(topology_fallbacks)
{
    struct rg_config *c = cfg();
    char out[64], err[512];
    /* Preferred names an unconfigured region: next preferred. */
    {
        struct tc_topo req = {0}, pref = {0};
        tc_seg(&req, "x", NULL);
        tc_seg(&req, "c", "c1");
        tc_seg(&pref, "x", NULL);
        tc_seg(&pref, "c", "c1");
        ASSERT_EQ(pick(c, &req, &pref, NULL, out, err), 0);
        ASSERT(!strcmp(out, "c"));
    }
    /* Preferred not in requisite: skipped; a requisite region is used. */
    {
        struct tc_topo req = {0}, pref = {0};
        tc_seg(&req, "x", NULL);
        tc_seg(&req, "b", NULL);
        tc_seg(&pref, "a", NULL);
        ASSERT_EQ(pick(c, &req, &pref, NULL, out, err), 0);
        ASSERT(!strcmp(out, "b"));
    }
    /* Zonal region c lives in c1 only: a node in c2 cannot use it. */
    {
        struct tc_topo req = {0}, pref = {0};
        tc_seg(&req, "c", "c2");
        tc_seg(&pref, "c", "c2");
        ASSERT_EQ(pick(c, &req, &pref, NULL, out, err), -ENOENT);
    }
    /* No requirement: parameter, else the default region. */
    ASSERT_EQ(pick(c, NULL, NULL, NULL, out, err), 0);
    ASSERT(!strcmp(out, "a"));
    ASSERT_EQ(pick(c, NULL, NULL, "b", out, err), 0);
    ASSERT(!strcmp(out, "b"));
    ASSERT_EQ(csi_topology_select(c, NULL, NULL, out, 64, err, 512), 0);
    ASSERT(!strcmp(out, "a"));
    /* Parameter pins the region among those allowed. */
    {
        struct tc_topo req = {0}, pref = {0};
        tc_seg(&req, "a", NULL);
        tc_seg(&req, "b", NULL);
        tc_seg(&pref, "a", NULL);
        ASSERT_EQ(pick(c, &req, &pref, "b", out, err), 0);
        ASSERT(!strcmp(out, "b"));
        ASSERT_EQ(pick(c, &req, &pref, "c", out, err), -ENOENT);
    }
    rg_free(c);
}

TEST(topology_nothing_fits_names_regions)
{
    struct rg_config *c = cfg();
    struct tc_topo req = {0}, pref = {0};
    char out[64], err[512];
    tc_seg(&req, "x", NULL);
    tc_seg(&req, "y", NULL);
    tc_seg(&pref, "y", NULL);
    ASSERT_EQ(pick(c, &req, &pref, NULL, out, err), -ENOENT);
    ASSERT(strstr(err, "x,y"));
    ASSERT(strstr(err, "a,b,c/c1"));
    rg_free(c);
}

/* ---- ids and paths ---- */

TEST(volume_ids)
{
    char id[CSI_MAX_VOL_ID + 1], id2[CSI_MAX_VOL_ID + 1];
    ASSERT_EQ(csi_volume_id("pvc-0b9d2c4e-1f", id, sizeof(id)), 0);
    ASSERT(!strcmp(id, "pvc-0b9d2c4e-1f"));
    /* Names that are not ids, or could collide with hashed ids, hash. */
    ASSERT_EQ(csi_volume_id("h-abc", id, sizeof(id)), 0);
    ASSERT(strncmp(id, "h-", 2) == 0 && strlen(id) == 42);
    ASSERT(strcmp(id, "h-abc"));
    ASSERT_EQ(csi_volume_id("my volume/1", id, sizeof(id)), 0);
    ASSERT_EQ(csi_volume_id("my volume/1", id2, sizeof(id2)), 0);
    ASSERT(!strcmp(id, id2)); /* deterministic: retries find it */
    ASSERT(csi_volume_id_valid(id));
    ASSERT_EQ(csi_volume_id("my volume/2", id2, sizeof(id2)), 0);
    ASSERT(strcmp(id, id2));
    ASSERT_EQ(csi_volume_id("", id, sizeof(id)), -EINVAL);
    char big[200];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    ASSERT_EQ(csi_volume_id(big, id, sizeof(id)), -EINVAL);
    big[120] = 0; /* valid chars but over 100 bytes: hashed */
    ASSERT_EQ(csi_volume_id(big, id, sizeof(id)), 0);
    ASSERT_EQ(strlen(id), 42);
    ASSERT(!csi_volume_id_valid("../etc"));
    ASSERT(!csi_volume_id_valid("a/b"));
    ASSERT(!csi_volume_id_valid(""));
    ASSERT(!csi_volume_id_valid("-x"));
}

/* Snapshot ids: names kept or hashed like volume ids, "<vol>@<snap>"
 * split unambiguously, labels in csi.h's documented form. */
TEST(snapshot_ids_and_labels)
{
    char id[80], vol[JR_MAX_ID + 1], snap[JR_MAX_SNAP_ID + 1], l[600];
    ASSERT_EQ(csi_snap_id("snapshot-0b9d2c4e-1f2a-4b3c-8d9e-0123456789ab",
                          id, sizeof(id)), 0);
    ASSERT_STREQ(id, "snapshot-0b9d2c4e-1f2a-4b3c-8d9e-0123456789ab");
    /* '.', '/', ' ', a leading "h-" or > 64 bytes: hashed, stable. */
    const char *hashed[] = {"snap.1", "a b", "h-abc",
                            "x123456789012345678901234567890123456789012345"
                            "678901234567890123456789"};
    for (size_t i = 0; i < sizeof(hashed) / sizeof(hashed[0]); i++) {
        char again[80];
        ASSERT_EQ(csi_snap_id(hashed[i], id, sizeof(id)), 0);
        ASSERT_EQ(strncmp(id, "h-", 2), 0);
        ASSERT_EQ(strlen(id), 42);
        ASSERT_EQ(csi_snap_id(hashed[i], again, sizeof(again)), 0);
        ASSERT_STREQ(id, again);
    }
    ASSERT_EQ(csi_snap_id("", id, sizeof(id)), -EINVAL);
    ASSERT_EQ(csi_snapshot_id_split("pvc-1@snapshot-2", vol, sizeof(vol),
                                    snap, sizeof(snap)), 0);
    ASSERT_STREQ(vol, "pvc-1");
    ASSERT_STREQ(snap, "snapshot-2");
    const char *bad[] = {"", "pvc-1", "@s", "pvc-1@", "a@b@c", "../x@s",
                         "pvc-1@s.x", "pvc 1@s"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (csi_snapshot_id_split(bad[i], vol, sizeof(vol), snap,
                                  sizeof(snap)) != -EINVAL)
            TT_FAIL("split accepted \"%s\"", bad[i]);
    ASSERT_EQ(csi_snap_label("ns1", "vs", "snapcontent-1", l, sizeof(l)), 0);
    ASSERT_STREQ(l, "namespace=ns1 name=vs content=snapcontent-1");
    ASSERT_EQ(csi_snap_label(NULL, "vs", "", l, sizeof(l)), 0);
    ASSERT_STREQ(l, "name=vs");
    ASSERT_EQ(csi_snap_label(NULL, NULL, NULL, l, sizeof(l)), 0);
    ASSERT_STREQ(l, "");
    ASSERT_EQ(csi_snap_label("a b", "x=y%", NULL, l, sizeof(l)), 0);
    ASSERT_STREQ(l, "namespace=a%20b name=x%3Dy%25");
    char big[300];
    memset(big, 'n', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    ASSERT_EQ(csi_snap_label("ns", big, big, l, sizeof(l)), -ENAMETOOLONG);
    ASSERT_EQ(csi_snap_label("ns", "n", "c", l, 8), -ENAMETOOLONG);
}

TEST(paths)
{
    ASSERT(csi_path_valid("/var/lib/kubelet/pods/x/volumes/y/mount"));
    ASSERT(!csi_path_valid("relative/path"));
    ASSERT(!csi_path_valid("/a/../b"));
    ASSERT(!csi_path_valid("/a/.."));
    ASSERT(!csi_path_valid("/a/./b"));
    ASSERT(!csi_path_valid("/a//b"));
    ASSERT(!csi_path_valid("/"));
    ASSERT(!csi_path_valid(""));
    ASSERT(!csi_path_valid("/a\nb"));
    ASSERT(csi_path_valid("/a/..b/c."));
    char big[CSI_MAX_PATH + 10];
    memset(big, 'a', sizeof(big) - 1);
    big[0] = '/';
    big[sizeof(big) - 1] = 0;
    ASSERT(!csi_path_valid(big));
}

/* The in-flight set behind "concurrent call on the same id: ABORTED". */
TEST(inflight_lock)
{
    char path[] = "/tmp/test-csi-cfg.XXXXXX", err[256];
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    ASSERT_EQ(write(fd, cfg_text, strlen(cfg_text)), (ssize_t)strlen(cfg_text));
    close(fd);
    struct csi_opts o = {.mode = CSI_MODE_CONTROLLER, .config_path = path};
    csi_service *s = NULL;
    ASSERT_EQ(csi_service_create(&o, &s, err, sizeof(err)), 0);
    ASSERT_EQ(csi__lock(s, "v1"), 0);
    ASSERT_EQ(csi__lock(s, "v1"), -EBUSY);
    ASSERT_EQ(csi__lock(s, "v2"), 0);
    csi__unlock(s, "v1");
    ASSERT_EQ(csi__lock(s, "v1"), 0);
    for (int i = 0; i < 100; i++) {
        char id[16];
        snprintf(id, sizeof(id), "x%d", i);
        ASSERT_EQ(csi__lock(s, id), 0);
    }
    ASSERT_EQ(csi__lock(s, "x57"), -EBUSY);
    csi_service_destroy(s);
    /* A node without --node-id and an unknown region are refused. */
    o.mode = CSI_MODE_NODE;
    ASSERT_EQ(csi_service_create(&o, &s, err, sizeof(err)), -EINVAL);
    o.mode = CSI_MODE_CONTROLLER;
    o.region = "mars";
    ASSERT_EQ(csi_service_create(&o, &s, err, sizeof(err)), -EINVAL);
    ASSERT(strstr(err, "mars"));
    unlink(path);
}

/* ---- the Kubernetes API answer (csi_k8s.c) ---- */

static int k8s(long status, const char *body, char *region, size_t rlen,
               char *zone, size_t zlen, char *err, size_t errlen)
{
    /* An exact-size heap copy without a NUL, so ASan sees any over-read. */
    size_t n = strlen(body);
    char *b = malloc(n ? n : 1);
    ASSERT(b != NULL);
    memcpy(b, body, n);
    int rc = csi__k8s_parse_node(status, b, n, "node-1", region, rlen, zone,
                                 zlen, err, errlen);
    free(b);
    return rc;
}

TEST(k8s_node_labels)
{
    char r[64], z[64], err[256];
#define K8S(st, body) k8s(st, body, r, sizeof(r), z, sizeof(z), err, sizeof(err))
    /* Labels found past decoys: a JSON string holding "labels" inside an
     * annotation, escapes, nested arrays. */
    ASSERT_OK(K8S(200, "{\"kind\":\"Node\",\"metadata\":{\"annotations\":"
                  "{\"x\":\"{\\\"labels\\\":{\\\"topology.kubernetes.io/"
                  "region\\\":\\\"a\\\"}}\"},\"labels\":{\"topology."
                  "kubernetes.io/region\":\"b\",\"topology.kubernetes.io/"
                  "zone\":\"b\\u0032\"}},\"status\":{\"a\":[[1,2],{}]}}\n"));
    ASSERT_STREQ(r, "b");
    ASSERT_STREQ(z, "b2");
    /* No labels, empty labels, null labels: no topology, no error. */
    ASSERT_OK(K8S(200, "{\"metadata\":{\"name\":\"n\"}}"));
    ASSERT_STREQ(r, "");
    ASSERT_STREQ(z, "");
    ASSERT_OK(K8S(200, "{\"metadata\":{\"labels\":{}}}"));
    ASSERT_OK(K8S(200, "{\"metadata\":{\"labels\":null}}"));
    ASSERT_OK(K8S(200, "{\"metadata\":{\"labels\":{\"topology.kubernetes.io/"
                  "zone\":\"z1\"}}}"));
    ASSERT_STREQ(r, "");
    ASSERT_STREQ(z, "z1");

    /* Error statuses name the status and quote the Status message. */
    ASSERT_EQ(K8S(404, "{\"kind\":\"Status\",\"message\":\"nodes \\\"node-1"
                  "\\\" not found\",\"code\":404}"), -ENOENT);
    ASSERT(strstr(err, "HTTP status 404"));
    ASSERT(strstr(err, "not found"));
    ASSERT_EQ(K8S(401, "Unauthorized"), -EACCES);
    ASSERT(strstr(err, "HTTP status 401"));
    ASSERT_EQ(K8S(403, ""), -EACCES);
    ASSERT_EQ(K8S(500, "{}"), -EIO);
    ASSERT(strstr(err, "500"));

    /* Not a Node object. */
    const char *bad[] = {
        "", "   ", "{\"metadata\":{}", "{\"metadata\":{}} x", "[1,2]",
        "\"metadata\"", "{}", "{\"metadata\":7}", "{\"metadata\":{\"labels\""
        ":[]}}", "{\"metadata\":{\"labels\":{\"topology.kubernetes.io/"
        "region\":7}}}", "{\"metadata\":{\"labels\":{\"topology.kubernetes."
        "io/zone\":\"a\\u0000b\"}}}", "{\"metadata\":{\"labels\":{\"x\":\""
        "\xff\"}}}", "{\"metadata\":{,}}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = 0;
        int rc = K8S(200, bad[i]);
        if (rc != -EINVAL) TT_FAIL("answer %zu (%s): %d", i, bad[i], rc);
        ASSERT(err[0]);
        ASSERT_STREQ(r, "");
    }
    ASSERT_EQ(K8S(200, "{\"metadata\":{\"labels\":[]}}"), -EINVAL);
    ASSERT(strstr(err, "labels"));
    ASSERT_EQ(K8S(200, "{\"metadata\":{} } trailing"), -EINVAL);
    ASSERT(strstr(err, "answer starts: {"));
    /* Nesting deeper than the parser's limit is refused, not recursed. */
    char deep[4096];
    size_t k = 0;
    k += (size_t)snprintf(deep, sizeof(deep), "{\"metadata\":");
    for (int i = 0; i < 1000; i++) deep[k++] = '[';
    deep[k] = 0;
    ASSERT_EQ(K8S(200, deep), -EINVAL);
#undef K8S
    /* A label longer than its buffer is refused, not cut. */
    ASSERT_EQ(k8s(200, "{\"metadata\":{\"labels\":{\"topology.kubernetes.io/"
                  "region\":\"abcd\"}}}", r, 4, z, sizeof(z), err,
                  sizeof(err)), -EINVAL);
    ASSERT(strstr(err, "topology.kubernetes.io/region"));
    ASSERT_OK(k8s(200, "{\"metadata\":{\"labels\":{\"topology.kubernetes.io/"
                  "region\":\"abc\"}}}", r, 4, z, sizeof(z), err,
                  sizeof(err)));
    ASSERT_STREQ(r, "abc");
}

/* The request's own checks, before any connection. */
TEST(k8s_request_checks)
{
    char r[64], z[64], err[256], dir[] = "/tmp/test-csi-k8s-XXXXXX", p[128];
    ASSERT(mkdtemp(dir) != NULL);
    unsetenv("KUBERNETES_SERVICE_HOST");
    setenv("TANDEM_K8S_SA_DIR", dir, 1);
    ASSERT_EQ(csi_k8s_node_topology("n1", r, sizeof(r), z, sizeof(z), err,
                                    sizeof(err)), -EINVAL);
    ASSERT(strstr(err, "KUBERNETES_SERVICE_HOST"));
    setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "0x50", 1);
    ASSERT_EQ(csi_k8s_node_topology("n1", r, sizeof(r), z, sizeof(z), err,
                                    sizeof(err)), -EINVAL);
    ASSERT(strstr(err, "KUBERNETES_SERVICE_PORT"));
    setenv("KUBERNETES_SERVICE_PORT", "1", 1);
    ASSERT_EQ(csi_k8s_node_topology("n/1", r, sizeof(r), z, sizeof(z), err,
                                    sizeof(err)), -EINVAL);
    ASSERT(strstr(err, "node name"));
    /* No CA, then a CA but no token, an empty token, a token that would
     * split the header. */
    ASSERT_EQ(csi_k8s_node_topology("n1", r, sizeof(r), z, sizeof(z), err,
                                    sizeof(err)), -EINVAL);
    ASSERT(strstr(err, "ca.crt"));
    snprintf(p, sizeof(p), "%s/ca.crt", dir);
    FILE *f = fopen(p, "w");
    ASSERT(f != NULL);
    fclose(f);
    ASSERT_EQ(csi_k8s_node_topology("n1", r, sizeof(r), z, sizeof(z), err,
                                    sizeof(err)), -ENOENT);
    ASSERT(strstr(err, "token"));
    snprintf(p, sizeof(p), "%s/token", dir);
    f = fopen(p, "w");
    ASSERT(f != NULL);
    fputs("\n", f);
    fclose(f);
    ASSERT_EQ(csi_k8s_node_topology("n1", r, sizeof(r), z, sizeof(z), err,
                                    sizeof(err)), -EINVAL);
    ASSERT(strstr(err, "empty"));
    f = fopen(p, "w");
    ASSERT(f != NULL);
    fputs("abc\r\nX-Evil: 1\n", f);
    fclose(f);
    ASSERT_EQ(csi_k8s_node_topology("n1", r, sizeof(r), z, sizeof(z), err,
                                    sizeof(err)), -EINVAL);
    ASSERT(strstr(err, "HTTP header"));
    /* A good token, nobody listening on port 1. */
    f = fopen(p, "w");
    ASSERT(f != NULL);
    fputs("tok\n", f);
    fclose(f);
    ASSERT_EQ(csi_k8s_node_topology("n1", r, sizeof(r), z, sizeof(z), err,
                                    sizeof(err)), -ECONNREFUSED);
    ASSERT(strstr(err, "127.0.0.1:1"));
    ASSERT(!strstr(err, "tok"));
    unlink(p);
    snprintf(p, sizeof(p), "%s/ca.crt", dir);
    unlink(p);
    rmdir(dir);
}

TT_MAIN()
