/*
 * fuzz-csi-params.c: libFuzzer target for csi/csi_params.c, the checks on
 * strings a CSI client (the external-provisioner, kubelet) sends: the
 * StorageClass parameters (csi_params_parse), the WaitForFirstConsumer
 * topology choice (csi_topology_select), volume ids from names
 * (csi_volume_id, csi_volume_id_valid) and staging/target paths
 * (csi_path_valid).  The input is split into lines; each line is a
 * "key=value" parameter, a topology segment value, a name and a path.
 * What is accepted must satisfy the documented contract (checked
 * independently here); nothing may crash or read out of bounds.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "csi/csi.h"
#include "tlog.h"

#define MAX_LINES 16

static struct rg_config *cfg;

static void init(void)
{
    static const char text[] =
        "[tandem]\ndefault_region = a\n"
        "[region a]\nbackend = sqlite\ndb_path = /tmp/none-a.db\n"
        "[region b]\nbackend = sqlite\ndb_path = /tmp/none-b.db\n"
        "[region c]\nbackend = sqlite\ndb_path = /tmp/none-c.db\nzone = c1\n";
    char err[256];
    tlog_init("fuzz", (enum tlog_level)(TLOG_ERROR + 1));
    if (rg_parse(text, "fuzz", &cfg, err, sizeof(err)) < 0) abort();
}

/* The contract of csi_path_valid, restated. */
static int path_ok(const char *p)
{
    size_t n = strlen(p);
    if (n < 2 || n >= CSI_MAX_PATH || p[0] != '/' || strstr(p, "//"))
        return 0;
    for (const char *q = p; *q; q++)
        if ((unsigned char)*q < 0x20) return 0;
    for (const char *s = p; *s;) {
        s++; /* past '/' */
        size_t l = strcspn(s, "/");
        if ((l == 1 && s[0] == '.') || (l == 2 && s[0] == '.' && s[1] == '.'))
            return 0;
        s += l;
    }
    return 1;
}

static int id_ok(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > CSI_MAX_VOL_ID || !isalnum((unsigned char)id[0]))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)id[i]) && !strchr("._-", id[i]))
            return 0;
    return 1;
}

static void strings(char *line)
{
    int v = csi_volume_id_valid(line);
    if (v != id_ok(line)) abort();
    char id[CSI_MAX_VOL_ID + 1];
    int rc = csi_volume_id(line, id, sizeof(id));
    size_t n = strlen(line);
    if (rc == 0) {
        if (n == 0 || n > CSI_MAX_NAME) abort();
        if (!csi_volume_id_valid(id)) abort(); /* ids are always valid */
        if (strlen(id) > 100) abort();
    } else if (n > 0 && n <= CSI_MAX_NAME) {
        abort();
    }
    if (csi_path_valid(line) != path_ok(line)) abort();
}

static void params(char **lines, size_t n)
{
    struct csi_mapent ents[MAX_LINES], *pe[MAX_LINES];
    char *keys[MAX_LINES];
    for (size_t i = 0; i < n; i++) {
        memset(&ents[i], 0, sizeof(ents[i]));
        /* "key=value"; no '=': the value is NULL (absent in the entry). */
        char *eq = strchr(lines[i], '=');
        keys[i] = strndup(lines[i], eq ? (size_t)(eq - lines[i])
                                       : strlen(lines[i]));
        if (!keys[i]) abort();
        ents[i].key = keys[i];
        ents[i].value = eq ? eq + 1 : NULL;
        pe[i] = &ents[i];
    }
    struct csi_params p;
    char err[256] = "";
    int rc = csi_params_parse(cfg, n, pe, &p, err, sizeof(err));
    if (rc == 0) {
        /* async without peerRegion is resolved later from the region map */
        if (p.async && p.peer_region[0] && !rg_find(cfg, p.peer_region))
            abort();
        if (!p.async && p.peer_region[0]) abort();
        if (p.region[0] && !rg_find(cfg, p.region)) abort();
        if (p.fs_type[0] && strcmp(p.fs_type, "ext4") &&
            strcmp(p.fs_type, "xfs"))
            abort();
        if (p.object_size &&
            (p.object_size < CSI_MIN_OBJECT_SIZE ||
             p.object_size > CSI_MAX_OBJECT_SIZE ||
             (p.object_size & (p.object_size - 1))))
            abort();
        if (strnlen(p.mkfs_options, sizeof(p.mkfs_options)) >=
                sizeof(p.mkfs_options) ||
            strnlen(p.pvc_name, sizeof(p.pvc_name)) >= sizeof(p.pvc_name))
            abort();
    } else if (!err[0]) {
        abort();
    }
    for (size_t i = 0; i < n; i++) free(keys[i]);
}

/* Segments: line i gives the region value of segment i; lines of the form
 * "zone:<z>" add a zone to the previous segment. */
static void topology(char **lines, size_t n)
{
    Csi__V1__Topology t[MAX_LINES], *tp[MAX_LINES];
    Csi__V1__Topology__SegmentsEntry s[MAX_LINES][2],
        *sp[MAX_LINES][2];
    size_t nt = 0;
    for (size_t i = 0; i < n; i++) {
        if (!strncmp(lines[i], "zone:", 5) && nt &&
            t[nt - 1].n_segments == 1) {
            Csi__V1__Topology *c = &t[nt - 1];
            csi__v1__topology__segments_entry__init(&s[nt - 1][1]);
            s[nt - 1][1].key = cfg->topo_zone_key;
            s[nt - 1][1].value = lines[i] + 5;
            sp[nt - 1][1] = &s[nt - 1][1];
            c->n_segments = 2;
            continue;
        }
        csi__v1__topology__init(&t[nt]);
        csi__v1__topology__segments_entry__init(&s[nt][0]);
        /* A key other than the region key at times (ignored segment). */
        s[nt][0].key = lines[i][0] == '!' ? lines[i] : cfg->topo_region_key;
        s[nt][0].value = lines[i];
        sp[nt][0] = &s[nt][0];
        t[nt].segments = sp[nt];
        t[nt].n_segments = 1;
        tp[nt] = &t[nt];
        nt++;
    }
    size_t nreq = nt / 2;
    Csi__V1__TopologyRequirement req =
        CSI__V1__TOPOLOGY_REQUIREMENT__INIT;
    req.requisite = tp;
    req.n_requisite = nreq;
    req.preferred = tp + nreq;
    req.n_preferred = nt - nreq;
    const char *pins[] = {NULL, "", "b", n ? lines[0] : "x"};
    for (size_t k = 0; k < sizeof(pins) / sizeof(pins[0]); k++) {
        char region[RG_MAX_NAME + 1], err[512] = "";
        int rc = csi_topology_select(cfg, &req, pins[k], region,
                                     sizeof(region), err, sizeof(err));
        if (rc == 0) {
            if (!rg_find(cfg, region)) abort();
            if (pins[k] && pins[k][0] && strcmp(region, pins[k])) abort();
        } else if (rc != -ENOENT || !err[0]) {
            abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!cfg) init();
    if (size > 8192) return 0;
    char *buf = malloc(size + 1);
    if (!buf) abort();
    memcpy(buf, data, size);
    buf[size] = 0;
    char *lines[MAX_LINES];
    size_t n = 0;
    char *save = NULL;
    for (char *l = strtok_r(buf, "\n", &save); l && n < MAX_LINES;
         l = strtok_r(NULL, "\n", &save))
        lines[n++] = l;
    for (size_t i = 0; i < n; i++) strings(lines[i]);
    /* Embedded NULs end a line early: the rest is still a string. */
    params(lines, n);
    topology(lines, n);
    free(buf);
    return 0;
}
