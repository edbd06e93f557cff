/* test-regions.c: the region map parser (journal/regions.h). */
#include "regions.h"
#include "tt.h"

static const char *good =
    "# two regions\n"
    "[tandem]\n"
    "default_region = b\n"
    "\n"
    "[region a]\n"
    "backend = sqlite\n"
    "db_path = /tmp/a.db   # the store\n"
    "zone = a1\n"
    "replicator = 127.0.0.1:7001\n"
    "capacity_bytes = 1048576\n"
    "[region b]\n"
    "backend = rados\n"
    "ceph_conf = /etc/ceph/ceph.conf\n"
    "client_id = admin\n"
    "pool = tandem-b\n"
    "rados_namespace = ns1\n";

TEST(parse_two_regions)
{
    char err[256];
    struct rg_config *c;
    ASSERT_EQ(rg_parse(good, "t", &c, err, sizeof err), 0);
    ASSERT_EQ(c->n, 2);
    ASSERT_STREQ(c->default_region, "b");
    ASSERT_STREQ(c->topo_region_key, "topology.tandem.csi.dev/region");
    const struct rg_region *a = rg_find(c, "a"), *b = rg_find(c, "b");
    ASSERT(a && b && !rg_find(c, "c"));
    ASSERT_STREQ(a->store.backend, "sqlite");
    ASSERT_STREQ(a->store.db_path, "/tmp/a.db");
    ASSERT_STREQ(a->zone, "a1");
    ASSERT_STREQ(a->replicator, "127.0.0.1:7001");
    ASSERT_UEQ(a->capacity_bytes, 1048576);
    ASSERT_STREQ(b->store.backend, "rados");
    ASSERT_STREQ(b->store.pool, "tandem-b");
    ASSERT_STREQ(b->store.rados_ns, "ns1");
    ASSERT(b->store.keyring == NULL);
    rg_free(c);
}

static void expect_error(const char *text, const char *needle)
{
    char err[256] = "";
    struct rg_config *c = (void *)1;
    ASSERT_EQ(rg_parse(text, "cfg", &c, err, sizeof err), -EINVAL);
    ASSERT(c == NULL);
    if (!strstr(err, needle)) TT_FAIL("error \"%s\" lacks \"%s\"", err, needle);
}

TEST(errors_name_the_problem)
{
    expect_error("[region a]\nbackend = sqlite\n", "needs db_path");
    expect_error("[region a]\ndb_path=/x\nbogus = 1\n", "cfg:3: unknown key bogus");
    expect_error("[region A]\n", "bad region name");
    expect_error("[tandem]\ndefault_region = z\n[region a]\ndb_path=/x\n",
                 "default_region z is not configured");
    expect_error("", "no [region NAME] section");
    expect_error("[region a]\ndb_path=/x\nbackend = nfs\n", "bad value for backend");
    expect_error("[region a]\ndb_path=/x\n[region a]\ndb_path=/y\n", "defined twice");
    expect_error("[oops]\n", "unknown section");
    expect_error("[region a\n", "malformed section");
    expect_error("[region a]\ndb_path\n", "expected key = value");
    expect_error("[region b]\nbackend = rados\n", "rados needs pool");
    expect_error("[region a]\ndb_path=/x\npeer = a\n", "peer a is the region itself");
    expect_error("[region a]\ndb_path=/x\npeer = z\n", "peer z is not configured");
    expect_error("[region a]\ndb_path=/x\npeer = Z\n", "bad value for peer");
}

TEST(default_peer)
{
    char err[256];
    struct rg_config *c;
    ASSERT_EQ(rg_parse("[region a]\ndb_path=/a\n[region b]\ndb_path=/b\n",
                       "cfg", &c, err, sizeof err), 0);
    ASSERT_STREQ(rg_default_peer(c, "a"), "b"); /* two regions: the other */
    ASSERT_STREQ(rg_default_peer(c, "b"), "a");
    ASSERT(rg_default_peer(c, "z") == NULL);
    rg_free(c);
    ASSERT_EQ(rg_parse("[region a]\ndb_path=/a\npeer = c\n[region b]\n"
                       "db_path=/b\n[region c]\ndb_path=/c\n",
                       "cfg", &c, err, sizeof err), 0);
    ASSERT_STREQ(rg_default_peer(c, "a"), "c");
    ASSERT(rg_default_peer(c, "b") == NULL); /* three regions, none set */
    rg_free(c);
}

TEST(load_missing_file)
{
    char err[256];
    struct rg_config *c;
    ASSERT_EQ(rg_load("/nonexistent/tandem.conf", &c, err, sizeof err), -ENOENT);
    ASSERT(strstr(err, "/nonexistent/tandem.conf"));
}

TT_MAIN()
