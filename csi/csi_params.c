/*
 * csi_params.c: pure request checks with no I/O: StorageClass parameters,
 * the WaitForFirstConsumer region choice, volume ids from names, path
 * validation.  Unit-tested directly (tests/unit/test-csi.c).
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "csi.h"

#define K8S_PREFIX "csi.storage.k8s.io/"

static int set_str(char *dst, size_t n, const char *key, const char *v,
                   char *err, size_t errlen)
{
    if (strlen(v) >= n) {
        snprintf(err, errlen, "parameter %s: value longer than %zu bytes",
                 key, n - 1);
        return -EINVAL;
    }
    memcpy(dst, v, strlen(v) + 1);
    return 0;
}

/* Hand-written: the objectSize grammar below is the whole of it.
 * "65536", "64Ki", "64K", "4Mi", "4M" -> bytes (binary units). */
static int parse_size(const char *v, uint64_t *out)
{
    char *end;
    if (!isdigit((unsigned char)v[0])) return -EINVAL;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno || end == v) return -EINVAL;
    uint64_t mul = 1;
    if (!strcmp(end, "") ) mul = 1;
    else if (!strcmp(end, "K") || !strcmp(end, "Ki") || !strcmp(end, "k"))
        mul = 1ull << 10;
    else if (!strcmp(end, "M") || !strcmp(end, "Mi"))
        mul = 1ull << 20;
    else
        return -EINVAL;
    if (n > (UINT64_MAX >> 20)) return -EINVAL;
    *out = n * mul;
    return 0;
}

static int mkfs_options_ok(const char *v)
{
    /* Passed as argv words (never a shell), but keep them plain anyway. */
    for (const char *p = v; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr(" =,._:/-+", *p))
            return 0;
    return 1;
}

int csi_params_parse(const struct rg_config *cfg, size_t n,
                     struct csi_mapent *const *ents, struct csi_params *p,
                     char *err, size_t errlen)
{
    memset(p, 0, sizeof(*p));
    const char *replication = NULL;
    for (size_t i = 0; i < n; i++) {
        const char *k = ents[i]->key ? ents[i]->key : "";
        const char *v = ents[i]->value ? ents[i]->value : "";
        int rc = 0;
        if (!strcmp(k, "replication")) {
            if (strcmp(v, "none") && strcmp(v, "async")) {
                snprintf(err, errlen, "parameter replication: \"%.32s\" is "
                         "not none or async", v);
                return -EINVAL;
            }
            replication = v;
            p->async = !strcmp(v, "async");
        } else if (!strcmp(k, "peerRegion")) {
            if (!rg_find(cfg, v)) {
                snprintf(err, errlen, "parameter peerRegion: region \"%.64s\""
                         " is not configured", v);
                return -EINVAL;
            }
            rc = set_str(p->peer_region, sizeof(p->peer_region), k, v, err,
                         errlen);
        } else if (!strcmp(k, "region")) {
            if (!rg_find(cfg, v)) {
                snprintf(err, errlen, "parameter region: region \"%.64s\" is"
                         " not configured", v);
                return -EINVAL;
            }
            rc = set_str(p->region, sizeof(p->region), k, v, err, errlen);
        } else if (!strcmp(k, "fsType")) {
            if (strcmp(v, "ext4") && strcmp(v, "xfs")) {
                snprintf(err, errlen, "parameter fsType: \"%.32s\" is not "
                         "ext4 or xfs", v);
                return -EINVAL;
            }
            rc = set_str(p->fs_type, sizeof(p->fs_type), k, v, err, errlen);
        } else if (!strcmp(k, "objectSize")) {
            uint64_t sz;
            if (parse_size(v, &sz) < 0 || sz < CSI_MIN_OBJECT_SIZE ||
                sz > CSI_MAX_OBJECT_SIZE || (sz & (sz - 1))) {
                snprintf(err, errlen, "parameter objectSize: \"%.32s\" is not"
                         " a power of two from 64Ki to 64Mi", v);
                return -EINVAL;
            }
            p->object_size = (uint32_t)sz;
        } else if (!strcmp(k, "mkfsOptions")) {
            if (!mkfs_options_ok(v)) {
                snprintf(err, errlen, "parameter mkfsOptions: only letters, "
                         "digits, spaces and =,._:/-+ are allowed");
                return -EINVAL;
            }
            rc = set_str(p->mkfs_options, sizeof(p->mkfs_options), k, v, err,
                         errlen);
        } else if (!strcmp(k, "consistencyGroup")) {
            size_t gl = strlen(v), ok = gl >= 1 && gl <= 64;
            for (size_t j = 0; ok && j < gl; j++)
                ok = (v[j] >= 'a' && v[j] <= 'z') ||
                     (v[j] >= 'A' && v[j] <= 'Z') ||
                     (v[j] >= '0' && v[j] <= '9') || v[j] == '_' ||
                     v[j] == '-';
            if (!ok) {
                snprintf(err, errlen, "parameter consistencyGroup: \"%.80s\" "
                         "is not 1..64 of [A-Za-z0-9_-]", v);
                return -EINVAL;
            }
            rc = set_str(p->group, sizeof(p->group), k, v, err, errlen);
        } else if (!strcmp(k, K8S_PREFIX "pvc/name")) {
            rc = set_str(p->pvc_name, sizeof(p->pvc_name), k, v, err, errlen);
        } else if (!strcmp(k, K8S_PREFIX "pvc/namespace")) {
            rc = set_str(p->pvc_namespace, sizeof(p->pvc_namespace), k, v,
                         err, errlen);
        } else if (!strcmp(k, K8S_PREFIX "pv/name")) {
            rc = set_str(p->pv_name, sizeof(p->pv_name), k, v, err, errlen);
        } else if (!strncmp(k, K8S_PREFIX, strlen(K8S_PREFIX))) {
            /* The external-provisioner's own keys (secret names, fstype
             * when not stripped): accepted and ignored. */
        } else {
            snprintf(err, errlen, "parameter %.64s: unknown (known: "
                     "replication, peerRegion, region, fsType, objectSize, "
                     "mkfsOptions, consistencyGroup, " K8S_PREFIX "*)", k);
            return -EINVAL;
        }
        if (rc < 0) return rc;
    }
    /* replication=async without peerRegion: the landing region's default
     * peer (rg_default_peer), resolved once topology picked the region. */
    if (!p->async && p->peer_region[0]) {
        snprintf(err, errlen, "parameter peerRegion: only meaningful with "
                 "replication=async (replication is %s)",
                 replication ? replication : "unset");
        return -EINVAL;
    }
    if (p->async && p->region[0] && !strcmp(p->region, p->peer_region)) {
        snprintf(err, errlen, "parameter peerRegion: must differ from "
                 "region %s", p->region);
        return -EINVAL;
    }
    return 0;
}

/* ------------------------------------------------------------- topology */

static const char *seg_get(const Csi__V1__Topology *t, const char *key)
{
    for (size_t i = 0; t && i < t->n_segments; i++)
        if (t->segments[i]->key && !strcmp(t->segments[i]->key, key))
            return t->segments[i]->value;
    return NULL;
}

/* Does segment t allow a volume in region r?  A segment naming a zone
 * only admits a zonal region in that very zone. */
static int seg_admits(const struct rg_config *cfg, const Csi__V1__Topology *t,
                      const struct rg_region *r)
{
    const char *reg = seg_get(t, cfg->topo_region_key);
    if (!reg || strcmp(reg, r->name)) return 0;
    const char *zone = seg_get(t, cfg->topo_zone_key);
    if (zone && r->zone[0] && strcmp(zone, r->zone)) return 0;
    return 1;
}

static void list_regions(const struct rg_config *cfg, Csi__V1__Topology **ts,
                         size_t n, char *buf, size_t len)
{
    size_t off = 0;
    buf[0] = 0;
    for (size_t i = 0; i < n && off < len; i++) {
        const char *reg = seg_get(ts[i], cfg->topo_region_key);
        off += snprintf(buf + off, len - off, "%s%s", i ? "," : "",
                        reg ? reg : "?");
    }
}

int csi_topology_select(const struct rg_config *cfg,
                        const Csi__V1__TopologyRequirement *req,
                        const char *param_region, char *region,
                        size_t regionlen, char *err, size_t errlen)
{
    const struct rg_region *pick = NULL;
    size_t nreq = req ? req->n_requisite : 0, npref = req ? req->n_preferred : 0;
    int pinned = param_region && param_region[0];

    if (nreq == 0 && npref == 0) {
        pick = rg_find(cfg, pinned ? param_region : cfg->default_region);
        if (!pick && !pinned && cfg->n) pick = &cfg->regions[0];
        goto done;
    }
    /* Preferred segments first, in order (the first is the node the
     * scheduler picked); each must also be allowed by requisite. */
    for (size_t i = 0; i < npref && !pick; i++) {
        const char *reg = seg_get(req->preferred[i], cfg->topo_region_key);
        const struct rg_region *r = reg ? rg_find(cfg, reg) : NULL;
        if (!r || (pinned && strcmp(r->name, param_region))) continue;
        if (!seg_admits(cfg, req->preferred[i], r)) continue;
        int ok = nreq == 0;
        for (size_t j = 0; j < nreq && !ok; j++)
            ok = seg_admits(cfg, req->requisite[j], r);
        if (ok) pick = r;
    }
    /* Else any requisite region we serve, in the order given. */
    for (size_t j = 0; j < nreq && !pick; j++) {
        const char *reg = seg_get(req->requisite[j], cfg->topo_region_key);
        const struct rg_region *r = reg ? rg_find(cfg, reg) : NULL;
        if (!r || (pinned && strcmp(r->name, param_region))) continue;
        if (seg_admits(cfg, req->requisite[j], r)) pick = r;
    }
done:
    if (!pick) {
        char asked_r[512], asked_p[512], have[512];
        size_t off = 0;
        list_regions(cfg, req ? req->requisite : NULL, nreq, asked_r,
                     sizeof(asked_r));
        list_regions(cfg, req ? req->preferred : NULL, npref, asked_p,
                     sizeof(asked_p));
        have[0] = 0;
        for (size_t i = 0; i < cfg->n && off < sizeof(have); i++)
            off += snprintf(have + off, sizeof(have) - off, "%s%s%s%s",
                            i ? "," : "", cfg->regions[i].name,
                            cfg->regions[i].zone[0] ? "/" : "",
                            cfg->regions[i].zone);
        snprintf(err, errlen, "no configured region satisfies the topology "
                 "requirement: requisite [%s], preferred [%s]%s%s; "
                 "configured regions [%s] (key %s)", asked_r, asked_p,
                 pinned ? ", parameter region " : "",
                 pinned ? param_region : "", have, cfg->topo_region_key);
        return -ENOENT;
    }
    snprintf(region, regionlen, "%s", pick->name);
    return 0;
}

/* ------------------------------------------------------------------ ids */

static int id_char(int c)
{
    return isalnum(c) || c == '.' || c == '_' || c == '-';
}

int csi_volume_id_valid(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > CSI_MAX_VOL_ID) return 0;
    if (!isalnum((unsigned char)id[0])) return 0;
    for (size_t i = 0; i < n; i++)
        if (!id_char((unsigned char)id[i])) return 0;
    return 1;
}

int csi_volume_id(const char *name, char *id, size_t idlen)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > CSI_MAX_NAME || idlen < 43) return -EINVAL;
    if (n <= 100 && strncmp(name, "h-", 2) && csi_volume_id_valid(name)) {
        snprintf(id, idlen, "%s", name);
        return 0;
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!EVP_Digest(name, n, md, &mdlen, EVP_sha256(), NULL) || mdlen < 20)
        return -EIO;
    memcpy(id, "h-", 2);
    for (int i = 0; i < 20; i++)
        snprintf(id + 2 + 2 * i, 3, "%02x", md[i]);
    return 0;
}

int csi_path_valid(const char *path)
{
    size_t n = path ? strlen(path) : 0;
    if (n < 2 || n >= CSI_MAX_PATH || path[0] != '/') return 0;
    const char *p = path;
    while (*p) {
        while (*p == '/') p++;
        const char *e = strchrnul(p, '/');
        size_t len = (size_t)(e - p);
        if ((len == 1 && p[0] == '.') || (len == 2 && !strncmp(p, "..", 2)))
            return 0;
        if (len == 0 && *e) return 0;
        p = e;
    }
    if (strstr(path, "//")) return 0;
    for (const char *q = path; *q; q++)
        if ((unsigned char)*q < 0x20) return 0;
    return 1;
}
