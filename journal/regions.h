/*
 * regions.h: the region map every tandem program shares.
 *
 * One INI-style file maps each region to its object store and names the
 * driver's topology keys:
 *
 *   [tandem]
 *   default_region = a
 *   topology_region_key = topology.tandem.csi.dev/region
 *   topology_zone_key = topology.tandem.csi.dev/zone
 *
 *   [region a]
 *   backend = sqlite                 # or rados
 *   db_path = /var/lib/tandem/a.db   # sqlite
 *   zone = a1                        # optional: the region's store is zonal
 *   replicator = 10.0.0.5:7001       # peer-link address of a's replicator
 *   peer = b                         # optional: where a's volumes replicate
 *                                    # when the StorageClass names no
 *                                    # peerRegion (with exactly two
 *                                    # regions: the other one)
 *   capacity_bytes = 1099511627776   # optional, reported by GetCapacity
 *
 *   [region b]
 *   backend = rados
 *   ceph_conf = /etc/ceph/ceph.conf
 *   client_id = admin
 *   keyring = /etc/ceph/ceph.client.admin.keyring
 *   pool = tandem-b
 *   rados_namespace = tandem         # optional
 *   op_timeout_s = 30                # optional
 *
 * Lines starting with # or ; are comments; values run to the end of the
 * line (a trailing " # comment" is stripped); whitespace around keys and
 * values is ignored.  Unknown sections and keys are errors (a typo in a
 * storage config should never be silently ignored).  Region names are
 * 1..63 bytes of [a-z0-9-] (Kubernetes label values restricted further).
 *
 * Ownership: rg_load allocates *out; rg_free releases it.  Pointers in
 * rg_region.store point into the config and live as long as it does.
 * Thread safety: a loaded config is immutable and may be shared.
 */
#ifndef TANDEM_REGIONS_H
#define TANDEM_REGIONS_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define RG_MAX_NAME 63
#define RG_MAX_PATH 1024

struct rg_region {
    char name[RG_MAX_NAME + 1];
    char zone[RG_MAX_NAME + 1];        /* "" unless the store is zonal */
    char replicator[256];              /* "" if not set */
    char peer[RG_MAX_NAME + 1];        /* "" if not set; else configured
                                          and not this region */
    uint64_t capacity_bytes;           /* 0 if not set */
    char backend[16];                  /* "sqlite" or "rados" */
    char db_path[RG_MAX_PATH];
    char ceph_conf[RG_MAX_PATH];
    char client_id[64];
    char keyring[RG_MAX_PATH];
    char pool[128];
    char rados_ns[128];
    int op_timeout_s;
    struct st_config store;            /* points into the fields above */
};

struct rg_config {
    char default_region[RG_MAX_NAME + 1];
    char topo_region_key[128];
    char topo_zone_key[128];
    struct rg_region *regions;
    size_t n;
};

/* Parse path.  On error returns a negative errno (-ENOENT unreadable file,
 * -EINVAL syntax or semantics) and writes one line naming file, line and
 * problem into err.  A config needs at least one region; default_region,
 * when set, must be one of them (unset: the first region). */
int rg_load(const char *path, struct rg_config **out, char *err,
            size_t errlen);
/* Parse from a string (tests); name is used in messages. */
int rg_parse(const char *text, const char *name, struct rg_config **out,
             char *err, size_t errlen);
void rg_free(struct rg_config *c);
/* NULL if no such region. */
const struct rg_region *rg_find(const struct rg_config *c, const char *name);
/* The region a volume of `name` replicates to when nothing else says:
 * its `peer`, else with exactly two regions the other one, else NULL. */
const char *rg_default_peer(const struct rg_config *c, const char *name);
/* Open the region's store (st_open of r->store). */
int rg_open_store(const struct rg_region *r, st_store **out);
/* 1 if name is a valid region name. */
int rg_name_valid(const char *name);

#endif /* TANDEM_REGIONS_H */
