/* regions.c: parser for the region map (see regions.h for the format).
 * Hand-written on purpose: the format is a dozen lines of INI with a fixed
 * key set, and a 200-line parser with exact line-numbered errors (fuzzed by
 * fuzz-regions) beats adding a config library to every binary. */
#include "regions.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RG_MAX_FILE (1 << 20) /* a region map is a few hundred bytes */

static int rg_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int rg_fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

int rg_name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > RG_MAX_NAME) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!(islower((unsigned char)c) || isdigit((unsigned char)c) ||
              c == '-'))
            return 0;
    }
    return 1;
}

static char *rg_trim(char *s)
{
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = 0;
    return s;
}

/* Copy v into dst[size]; -EINVAL when it does not fit. */
static int rg_set(char *dst, size_t size, const char *v)
{
    size_t n = strlen(v);
    if (n >= size) return -EINVAL;
    memcpy(dst, v, n + 1);
    return 0;
}

static int rg_parse_u64(const char *v, uint64_t *out)
{
    char *end;
    if (!isdigit((unsigned char)*v)) return -EINVAL;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || *end) return -EINVAL;
    *out = x;
    return 0;
}

static int rg_region_key(struct rg_region *r, const char *k, const char *v)
{
    uint64_t x;
    if (!strcmp(k, "backend")) {
        if (strcmp(v, "sqlite") && strcmp(v, "rados")) return -EINVAL;
        return rg_set(r->backend, sizeof r->backend, v);
    }
    if (!strcmp(k, "db_path")) return rg_set(r->db_path, sizeof r->db_path, v);
    if (!strcmp(k, "zone")) {
        if (*v && !rg_name_valid(v)) return -EINVAL;
        return rg_set(r->zone, sizeof r->zone, v);
    }
    if (!strcmp(k, "replicator"))
        return rg_set(r->replicator, sizeof r->replicator, v);
    if (!strcmp(k, "peer")) {
        if (!rg_name_valid(v)) return -EINVAL;
        return rg_set(r->peer, sizeof r->peer, v);
    }
    if (!strcmp(k, "capacity_bytes")) {
        if (rg_parse_u64(v, &x)) return -EINVAL;
        r->capacity_bytes = x;
        return 0;
    }
    if (!strcmp(k, "ceph_conf"))
        return rg_set(r->ceph_conf, sizeof r->ceph_conf, v);
    if (!strcmp(k, "client_id"))
        return rg_set(r->client_id, sizeof r->client_id, v);
    if (!strcmp(k, "keyring")) return rg_set(r->keyring, sizeof r->keyring, v);
    if (!strcmp(k, "pool")) return rg_set(r->pool, sizeof r->pool, v);
    if (!strcmp(k, "rados_namespace"))
        return rg_set(r->rados_ns, sizeof r->rados_ns, v);
    if (!strcmp(k, "op_timeout_s")) {
        if (rg_parse_u64(v, &x) || x > 3600) return -EINVAL;
        r->op_timeout_s = (int)x;
        return 0;
    }
    return -ENOENT;
}

static void rg_bind_store(struct rg_region *r)
{
    memset(&r->store, 0, sizeof r->store);
    r->store.backend = r->backend;
    r->store.db_path = r->db_path[0] ? r->db_path : NULL;
    r->store.ceph_conf = r->ceph_conf[0] ? r->ceph_conf : NULL;
    r->store.client_id = r->client_id[0] ? r->client_id : NULL;
    r->store.keyring = r->keyring[0] ? r->keyring : NULL;
    r->store.pool = r->pool[0] ? r->pool : NULL;
    r->store.rados_ns = r->rados_ns[0] ? r->rados_ns : NULL;
    r->store.op_timeout_s = r->op_timeout_s;
}

int rg_parse(const char *text, const char *name, struct rg_config **out,
             char *err, size_t errlen)
{
    int rc = 0;
    struct rg_config *c = calloc(1, sizeof *c);
    char *buf = strdup(text);
    struct rg_region *cur = NULL;
    int in_tandem = 0, lineno = 0;
    *out = NULL;
    if (!c || !buf) {
        rc = -ENOMEM;
        goto out;
    }
    snprintf(c->topo_region_key, sizeof c->topo_region_key,
             "topology.tandem.csi.dev/region");
    snprintf(c->topo_zone_key, sizeof c->topo_zone_key,
             "topology.tandem.csi.dev/zone");

    char *next = buf;
    while (next) {
        char *line = next;
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        next = nl ? nl + 1 : NULL;
        lineno++;
        char *s = rg_trim(line);
        if (*s == 0 || *s == '#' || *s == ';') continue;
        if (*s == '[') {
            char *e = strchr(s, ']');
            if (!e || rg_trim(e + 1)[0] != 0) {
                rc = rg_fail(err, errlen, "%s:%d: malformed section header",
                             name, lineno);
                goto out;
            }
            *e = 0;
            char *sec = rg_trim(s + 1);
            cur = NULL;
            in_tandem = 0;
            if (!strcmp(sec, "tandem")) {
                in_tandem = 1;
            } else if (!strncmp(sec, "region", 6) &&
                       isspace((unsigned char)sec[6])) {
                char *rn = rg_trim(sec + 6);
                if (!rg_name_valid(rn)) {
                    rc = rg_fail(err, errlen,
                                 "%s:%d: bad region name \"%s\" (1-63 of "
                                 "a-z 0-9 -)", name, lineno, rn);
                    goto out;
                }
                if (rg_find(c, rn)) {
                    rc = rg_fail(err, errlen, "%s:%d: region %s defined twice",
                                 name, lineno, rn);
                    goto out;
                }
                struct rg_region *nr =
                    realloc(c->regions, (c->n + 1) * sizeof *nr);
                if (!nr) {
                    rc = -ENOMEM;
                    goto out;
                }
                c->regions = nr;
                cur = &c->regions[c->n++];
                memset(cur, 0, sizeof *cur);
                snprintf(cur->name, sizeof cur->name, "%s", rn);
                snprintf(cur->backend, sizeof cur->backend, "sqlite");
            } else {
                rc = rg_fail(err, errlen, "%s:%d: unknown section [%s]", name,
                             lineno, sec);
                goto out;
            }
            continue;
        }
        char *eq = strchr(s, '=');
        if (!eq) {
            rc = rg_fail(err, errlen, "%s:%d: expected key = value", name,
                         lineno);
            goto out;
        }
        *eq = 0;
        char *k = rg_trim(s), *v = eq + 1;
        char *hash = strstr(v, " #");
        if (hash) *hash = 0;
        v = rg_trim(v);
        int r;
        if (in_tandem) {
            if (!strcmp(k, "default_region"))
                r = rg_set(c->default_region, sizeof c->default_region, v);
            else if (!strcmp(k, "topology_region_key"))
                r = rg_set(c->topo_region_key, sizeof c->topo_region_key, v);
            else if (!strcmp(k, "topology_zone_key"))
                r = rg_set(c->topo_zone_key, sizeof c->topo_zone_key, v);
            else
                r = -ENOENT;
        } else if (cur) {
            r = rg_region_key(cur, k, v);
        } else {
            rc = rg_fail(err, errlen, "%s:%d: key %s outside a section", name,
                         lineno, k);
            goto out;
        }
        if (r == -ENOENT) {
            rc = rg_fail(err, errlen, "%s:%d: unknown key %s", name, lineno, k);
            goto out;
        }
        if (r) {
            rc = rg_fail(err, errlen, "%s:%d: bad value for %s: \"%s\"", name,
                         lineno, k, v);
            goto out;
        }
    }

    if (c->n == 0) {
        rc = rg_fail(err, errlen, "%s: no [region NAME] section", name);
        goto out;
    }
    for (size_t i = 0; i < c->n; i++) {
        struct rg_region *r = &c->regions[i];
        if (!strcmp(r->backend, "sqlite") && !r->db_path[0]) {
            rc = rg_fail(err, errlen, "%s: region %s: sqlite needs db_path",
                         name, r->name);
            goto out;
        }
        if (!strcmp(r->backend, "rados") && !r->pool[0]) {
            rc = rg_fail(err, errlen, "%s: region %s: rados needs pool", name,
                         r->name);
            goto out;
        }
        if (r->peer[0] && (!rg_find(c, r->peer) || !strcmp(r->peer, r->name))) {
            rc = rg_fail(err, errlen, "%s: region %s: peer %s is %s", name,
                         r->name, r->peer,
                         strcmp(r->peer, r->name) ? "not configured"
                                                  : "the region itself");
            goto out;
        }
        rg_bind_store(r);
    }
    if (!c->default_region[0])
        snprintf(c->default_region, sizeof c->default_region, "%s",
                 c->regions[0].name);
    else if (!rg_find(c, c->default_region)) {
        rc = rg_fail(err, errlen, "%s: default_region %s is not configured",
                     name, c->default_region);
        goto out;
    }
    *out = c;
    c = NULL;
out:
    free(buf);
    rg_free(c);
    return rc;
}

int rg_load(const char *path, struct rg_config **out, char *err,
            size_t errlen)
{
    int rc;
    char *text = NULL;
    FILE *f = fopen(path, "re");
    *out = NULL;
    if (!f) {
        rc = -errno;
        if (err && errlen)
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return rc;
    }
    text = malloc(RG_MAX_FILE + 1);
    if (!text) {
        rc = -ENOMEM;
        goto out;
    }
    size_t n = fread(text, 1, RG_MAX_FILE + 1, f);
    if (ferror(f)) {
        rc = rg_fail(err, errlen, "%s: read error", path);
        rc = -EIO;
        goto out;
    }
    if (n > RG_MAX_FILE) {
        rc = rg_fail(err, errlen, "%s: larger than %d bytes", path,
                     RG_MAX_FILE);
        goto out;
    }
    if (memchr(text, 0, n)) {
        rc = rg_fail(err, errlen, "%s: contains a NUL byte", path);
        goto out;
    }
    text[n] = 0;
    rc = rg_parse(text, path, out, err, errlen);
out:
    free(text);
    fclose(f);
    return rc;
}

void rg_free(struct rg_config *c)
{
    if (!c) return;
    free(c->regions);
    free(c);
}

const struct rg_region *rg_find(const struct rg_config *c, const char *name)
{
    for (size_t i = 0; c && name && i < c->n; i++)
        if (!strcmp(c->regions[i].name, name)) return &c->regions[i];
    return NULL;
}

const char *rg_default_peer(const struct rg_config *c, const char *name)
{
    const struct rg_region *r = rg_find(c, name);
    if (!r) return NULL;
    if (r->peer[0]) return r->peer;
    if (c->n == 2)
        return strcmp(c->regions[0].name, name) ? c->regions[0].name
                                                : c->regions[1].name;
    return NULL;
}

int rg_open_store(const struct rg_region *r, st_store **out)
{
    return st_open(&r->store, out);
}
