/*
 * fuzz-regions.c: libFuzzer target for the region map parser
 * (journal/regions.c, rg_parse).  Any text: -EINVAL/-ENOMEM with a message,
 * or a config that keeps every promise of regions.h (at least one region,
 * valid unique names, a configured default region, stores bound to their
 * own fields, sqlite with db_path, rados with pool).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "regions.h"

static void check(const struct rg_config *c)
{
    if (!c || c->n == 0 || !c->regions) abort();
    if (!rg_name_valid(c->default_region) || !rg_find(c, c->default_region))
        abort();
    if (strnlen(c->topo_region_key, sizeof(c->topo_region_key)) >=
            sizeof(c->topo_region_key) ||
        strnlen(c->topo_zone_key, sizeof(c->topo_zone_key)) >=
            sizeof(c->topo_zone_key))
        abort();
    for (size_t i = 0; i < c->n; i++) {
        const struct rg_region *r = &c->regions[i];
        if (!rg_name_valid(r->name) || rg_find(c, r->name) != r) abort();
        if (r->zone[0] && !rg_name_valid(r->zone)) abort();
        if (r->peer[0] && (!rg_find(c, r->peer) || !strcmp(r->peer, r->name)))
            abort();
        const char *dp = rg_default_peer(c, r->name);
        if (dp && (!rg_find(c, dp) || !strcmp(dp, r->name))) abort();
        if (r->store.backend != r->backend) abort();
        if (!strcmp(r->backend, "sqlite")) {
            if (!r->db_path[0] || r->store.db_path != r->db_path) abort();
        } else if (!strcmp(r->backend, "rados")) {
            if (!r->pool[0] || r->store.pool != r->pool) abort();
        } else {
            abort();
        }
        if (r->op_timeout_s < 0 || r->op_timeout_s > 3600) abort();
        if (strnlen(r->replicator, sizeof(r->replicator)) >=
            sizeof(r->replicator))
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* rg_load refuses files over 1 MiB; keep runs fast below that. */
    if (size > 65536) return 0;
    char *text = malloc(size + 1);
    if (!text) abort();
    memcpy(text, data, size);
    text[size] = 0;
    struct rg_config *c = NULL;
    char err[256] = "";
    int rc = rg_parse(text, "fuzz", &c, err, sizeof(err));
    if (rc == 0) {
        check(c);
        rg_free(c);
    } else {
        if (c) abort();
        if (rc != -ENOMEM && (rc != -EINVAL || !err[0])) abort();
    }
    /* The same text as a name (rg_name_valid on region and zone names). */
    (void)rg_name_valid(text);
    free(text);
    return 0;
}
