/*
 * tandemctl-csi-call.c: tandem-csi-call, a tiny CSI client for the demo and
 * the end-to-end tests.  It makes the calls Kubernetes' sidecars make
 * (external-provisioner: CreateVolume with topology requirements and the
 * csi.storage.k8s.io/pvc/name and /namespace parameters, and from a
 * snapshot; csi-snapshotter: CreateSnapshot, DeleteSnapshot,
 * ListSnapshots; the health monitor: ControllerGetVolume; kubelet:
 * NodeStage/NodePublish) over the rpc layer, so the demo needs no Node.js and
 * no kubectl.
 *
 *   tandem-csi-call --endpoint unix:///path [--timeout SEC] COMMAND [opts]
 *
 * Output is one `key=value` line per field, easy to read from a shell.
 * A failed call prints one line, "tandem-csi-call: METHOD: CODE: message",
 * to stderr and exits 1 (2 for usage errors).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csi.pb-c.h"
#include "rpc.h"
#include "tsig.h"

#define PROG "tandem-csi-call"

/* A list of key=value pairs given on the command line (argv borrowed). */
struct kvlist {
    char **k;
    char **v;
    size_t n;
};

static void die_usage(const char *fmt, const char *arg)
{
    fprintf(stderr, PROG ": ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see " PROG " --help)\n");
    exit(2);
}

/* Every request-side allocation, freed together before exit (one call
 * per process: an arena is simpler than freeing each message). */
static void **g_allocs;
static size_t g_nallocs;

static void *xcalloc(size_t n, size_t sz)
{
    void *p = calloc(n ? n : 1, sz);
    void **na = realloc(g_allocs, (g_nallocs + 1) * sizeof *g_allocs);
    if (!p || !na) {
        fprintf(stderr, PROG ": out of memory\n");
        exit(1);
    }
    g_allocs = na;
    g_allocs[g_nallocs++] = p;
    return p;
}

static void free_all(void)
{
    for (size_t i = 0; i < g_nallocs; i++)
        free(g_allocs[i]);
    free(g_allocs);
}

/* Append "k=v" (or several, comma-separated, when multi) to l. */
static void kv_add(struct kvlist *l, char *arg, int multi)
{
    char *save = NULL;
    char *tok = multi ? strtok_r(arg, ",", &save) : arg;
    for (; tok; tok = multi ? strtok_r(NULL, ",", &save) : NULL) {
        char *eq = strchr(tok, '=');
        if (!eq || eq == tok) die_usage("expected KEY=VALUE, got '%s'", tok);
        *eq = 0;
        l->k = realloc(l->k, (l->n + 1) * sizeof *l->k);
        l->v = realloc(l->v, (l->n + 1) * sizeof *l->v);
        if (!l->k || !l->v) die_usage("out of memory%s", "");
        l->k[l->n] = tok;
        l->v[l->n] = eq + 1;
        l->n++;
        if (!multi) break;
    }
}

/* Build a protobuf-c map (array of *Entry messages) from l.  Every map
 * entry type has string fields "key" and "value", found by name so one
 * function serves every map of csi.proto. */
static void **kv_map(const ProtobufCMessageDescriptor *d,
                     const struct kvlist *l, size_t *n_out)
{
    const ProtobufCFieldDescriptor *fk =
        protobuf_c_message_descriptor_get_field_by_name(d, "key");
    const ProtobufCFieldDescriptor *fv =
        protobuf_c_message_descriptor_get_field_by_name(d, "value");
    void **arr = xcalloc(l->n, sizeof *arr);
    for (size_t i = 0; i < l->n; i++) {
        char *m = xcalloc(1, d->sizeof_message);
        protobuf_c_message_init(d, m);
        *(char **)(m + fk->offset) = l->k[i];
        *(char **)(m + fv->offset) = l->v[i];
        arr[i] = m;
    }
    *n_out = l->n;
    return arr;
}

static Csi__V1__Topology *topo_make(const struct kvlist *l)
{
    Csi__V1__Topology *t = xcalloc(1, sizeof *t);
    csi__v1__topology__init(t);
    t->segments = (Csi__V1__Topology__SegmentsEntry **)kv_map(
        &csi__v1__topology__segments_entry__descriptor, l, &t->n_segments);
    return t;
}

static int access_mode_parse(const char *s)
{
    static const char *names[] = {"UNKNOWN",
                                  "SINGLE_NODE_WRITER",
                                  "SINGLE_NODE_READER_ONLY",
                                  "MULTI_NODE_READER_ONLY",
                                  "MULTI_NODE_SINGLE_WRITER",
                                  "MULTI_NODE_MULTI_WRITER",
                                  "SINGLE_NODE_SINGLE_WRITER",
                                  "SINGLE_NODE_MULTI_WRITER"};
    for (int i = 1; i < (int)(sizeof names / sizeof names[0]); i++)
        if (!strcasecmp(s, names[i])) return i;
    die_usage("unknown access mode '%s'", s);
    return 0;
}

/* The capability: a mount with fs_type, or raw block (--block). */
static Csi__V1__VolumeCapability *cap_make(const char *fs_type, int block,
                                           int mode)
{
    Csi__V1__VolumeCapability *c = xcalloc(1, sizeof *c);
    csi__v1__volume_capability__init(c);
    if (block) {
        Csi__V1__VolumeCapability__BlockVolume *b = xcalloc(1, sizeof *b);
        csi__v1__volume_capability__block_volume__init(b);
        c->access_type_case = CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_BLOCK;
        c->block = b;
    } else {
        Csi__V1__VolumeCapability__MountVolume *m = xcalloc(1, sizeof *m);
        csi__v1__volume_capability__mount_volume__init(m);
        m->fs_type = (char *)(fs_type ? fs_type : "");
        c->access_type_case = CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_MOUNT;
        c->mount = m;
    }
    Csi__V1__VolumeCapability__AccessMode *am = xcalloc(1, sizeof *am);
    csi__v1__volume_capability__access_mode__init(am);
    am->mode = mode;
    c->access_mode = am;
    return c;
}

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: " PROG
        " --endpoint unix:///path [--timeout SEC] COMMAND [options]\n"
        "\n"
        "A small CSI client making the calls Kubernetes would make.\n"
        "\n"
        "commands:\n"
        "  probe                      Identity.Probe\n"
        "  plugin-info                Identity.GetPluginInfo\n"
        "  node-get-info              prints node_id= and topology.KEY=VALUE\n"
        "  create-volume --name N --size BYTES [--param K=V]... [--fs-type "
        "T|--block]\n"
        "                [--preferred K=V[,K=V]]... [--requisite "
        "K=V[,K=V]]...\n"
        "                [--source-snapshot SNAPSHOT-ID | --source-volume ID]\n"
        "                prints volume_id=, capacity_bytes=, context.K=V,\n"
        "                topology=K=V[,K=V] (one line per accessible "
        "topology)\n"
        "  delete-volume --volume-id ID\n"
        "  controller-get-volume --volume-id ID\n"
        "                prints volume_id=, capacity_bytes=, abnormal=,\n"
        "                message= (the volume condition)\n"
        "  create-snapshot --name N --source-volume ID [--param K=V]...\n"
        "                prints snapshot_id=, source_volume_id=, "
        "size_bytes=,\n"
        "                ready_to_use=, creation_time= (unix seconds)\n"
        "  delete-snapshot --snapshot-id ID\n"
        "  list-snapshots [--snapshot-id ID] [--source-volume ID]\n"
        "                 [--max-entries N] [--starting-token T]\n"
        "                prints one 'snapshot_id=.. source_volume_id=.. "
        "size_bytes=..\n"
        "                ready_to_use=..' line per entry, then "
        "next_token=\n"
        "  node-stage --volume-id ID --staging DIR [--fs-type T|--block]\n"
        "             [--access-mode MODE] [--ctx K=V]...\n"
        "  node-unstage --volume-id ID --staging DIR\n"
        "  node-publish --volume-id ID --staging DIR --target PATH "
        "[--readonly]\n"
        "               [--fs-type T|--block] [--access-mode MODE] [--ctx "
        "K=V]...\n"
        "  node-unpublish --volume-id ID --target PATH\n"
        "\n"
        "MODE is a CSI access mode name (default SINGLE_NODE_WRITER).\n"
        "A failed call prints 'METHOD: CODE: message' on stderr and exits "
        "1.\n");
}

struct opts {
    char *name, *volume_id, *staging, *target, *fs_type;
    char *snapshot_id, *source_volume, *source_snapshot, *starting_token;
    int32_t max_entries;
    int64_t size;
    int block, readonly, mode;
    struct kvlist params, ctx;
    struct kvlist pref[16], req[16];
    size_t n_pref, n_req;
};

static int call(rpc_client *cli, const char *method, const void *req,
                const ProtobufCMessageDescriptor *rd, ProtobufCMessage **resp,
                int timeout_ms)
{
    char msg[1024] = "";
    int rc = rpc_client_call(cli, method, (const ProtobufCMessage *)req, rd,
                             resp, timeout_ms, 1, msg, sizeof msg);
    if (rc != RPC_OK) {
        const char *m = strrchr(method, '/');
        fprintf(stderr, PROG ": %s: %s: %s\n", m ? m + 1 : method,
                rpc_code_name(rc), msg);
        return 1;
    }
    return 0;
}

static void print_map(const char *prefix, void **entries, size_t n,
                      const ProtobufCMessageDescriptor *d)
{
    const ProtobufCFieldDescriptor *fk =
        protobuf_c_message_descriptor_get_field_by_name(d, "key");
    const ProtobufCFieldDescriptor *fv =
        protobuf_c_message_descriptor_get_field_by_name(d, "value");
    for (size_t i = 0; i < n; i++) {
        char *m = entries[i];
        printf("%s%s=%s\n", prefix, *(char **)(m + fk->offset),
               *(char **)(m + fv->offset));
    }
}

static void need(const char *v, const char *what)
{
    if (!v || !*v) die_usage("%s is required", what);
}

int main(int argc, char **argv)
{
    const char *endpoint = getenv("CSI_ENDPOINT");
    int timeout_s = 60;
    struct opts o;
    memset(&o, 0, sizeof o);
    o.mode = 1; /* SINGLE_NODE_WRITER */

    enum {
        O_EP = 256,
        O_TMO,
        O_NAME,
        O_SIZE,
        O_PARAM,
        O_FS,
        O_BLOCK,
        O_PREF,
        O_REQ,
        O_VID,
        O_STG,
        O_TGT,
        O_RO,
        O_MODE,
        O_CTX,
        O_SNAP,
        O_SRCVOL,
        O_SRCSNAP,
        O_MAXENT,
        O_TOKEN
    };
    static const struct option lo[] = {{"endpoint", 1, 0, O_EP},
                                       {"timeout", 1, 0, O_TMO},
                                       {"name", 1, 0, O_NAME},
                                       {"size", 1, 0, O_SIZE},
                                       {"param", 1, 0, O_PARAM},
                                       {"fs-type", 1, 0, O_FS},
                                       {"block", 0, 0, O_BLOCK},
                                       {"preferred", 1, 0, O_PREF},
                                       {"requisite", 1, 0, O_REQ},
                                       {"volume-id", 1, 0, O_VID},
                                       {"staging", 1, 0, O_STG},
                                       {"target", 1, 0, O_TGT},
                                       {"readonly", 0, 0, O_RO},
                                       {"access-mode", 1, 0, O_MODE},
                                       {"ctx", 1, 0, O_CTX},
                                       {"snapshot-id", 1, 0, O_SNAP},
                                       {"source-volume", 1, 0, O_SRCVOL},
                                       {"source-snapshot", 1, 0, O_SRCSNAP},
                                       {"max-entries", 1, 0, O_MAXENT},
                                       {"starting-token", 1, 0, O_TOKEN},
                                       {"help", 0, 0, 'h'},
                                       {0, 0, 0, 0}};
    int c;
    /* "+" would stop at the command; we accept options anywhere instead. */
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        char *end;
        switch (c) {
        case O_EP:
            endpoint = optarg;
            break;
        case O_TMO: {
            errno = 0;
            long t = strtol(optarg, &end, 10);
            if (errno || end == optarg || *end || t < 1 || t > 86400)
                die_usage("bad --timeout '%s' (seconds, 1 to 86400)", optarg);
            timeout_s = (int)t;
            break;
        }
        case O_NAME:
            o.name = optarg;
            break;
        case O_SIZE:
            errno = 0;
            o.size = strtoll(optarg, &end, 10);
            if (errno || *end || o.size < 0)
                die_usage("bad --size '%s'", optarg);
            break;
        case O_PARAM:
            kv_add(&o.params, optarg, 0);
            break;
        case O_FS:
            o.fs_type = optarg;
            break;
        case O_BLOCK:
            o.block = 1;
            break;
        case O_PREF:
            if (o.n_pref == 16) die_usage("too many --preferred%s", "");
            kv_add(&o.pref[o.n_pref++], optarg, 1);
            break;
        case O_REQ:
            if (o.n_req == 16) die_usage("too many --requisite%s", "");
            kv_add(&o.req[o.n_req++], optarg, 1);
            break;
        case O_VID:
            o.volume_id = optarg;
            break;
        case O_STG:
            o.staging = optarg;
            break;
        case O_TGT:
            o.target = optarg;
            break;
        case O_RO:
            o.readonly = 1;
            break;
        case O_MODE:
            o.mode = access_mode_parse(optarg);
            break;
        case O_CTX:
            kv_add(&o.ctx, optarg, 0);
            break;
        case O_SNAP:
            o.snapshot_id = optarg;
            break;
        case O_SRCVOL:
            o.source_volume = optarg;
            break;
        case O_SRCSNAP:
            o.source_snapshot = optarg;
            break;
        case O_MAXENT: {
            errno = 0;
            long m = strtol(optarg, &end, 10);
            if (errno || end == optarg || *end || m < 0 || m > INT32_MAX)
                die_usage("bad --max-entries '%s'", optarg);
            o.max_entries = (int32_t)m;
            break;
        }
        case O_TOKEN:
            o.starting_token = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc - 1) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[optind];
    need(endpoint, "--endpoint (or CSI_ENDPOINT)");
    if (!o.fs_type && !o.block) o.fs_type = "ext4";

    tb_signals_block();
    rpc_client *cli = NULL;
    int rc = rpc_client_create(endpoint, NULL, &cli);
    if (rc < 0) {
        fprintf(stderr, PROG ": cannot connect to %s: %s\n", endpoint,
                strerror(-rc));
        return 1;
    }
    int tmo = timeout_s * 1000;
    ProtobufCMessage *resp = NULL;
    int ret = 0;

    if (!strcmp(cmd, "probe")) {
        Csi__V1__ProbeRequest r = CSI__V1__PROBE_REQUEST__INIT;
        ret = call(cli, "/csi.v1.Identity/Probe", &r,
                   &csi__v1__probe_response__descriptor, &resp, tmo);
        if (!ret) {
            Csi__V1__ProbeResponse *p = (void *)resp;
            printf("ready=%s\n",
                   !p->ready || p->ready->value ? "true" : "false");
        }
    } else if (!strcmp(cmd, "plugin-info")) {
        Csi__V1__GetPluginInfoRequest r =
            CSI__V1__GET_PLUGIN_INFO_REQUEST__INIT;
        ret = call(cli, "/csi.v1.Identity/GetPluginInfo", &r,
                   &csi__v1__get_plugin_info_response__descriptor, &resp, tmo);
        if (!ret) {
            Csi__V1__GetPluginInfoResponse *p = (void *)resp;
            printf("name=%s\nvendor_version=%s\n", p->name, p->vendor_version);
        }
    } else if (!strcmp(cmd, "node-get-info")) {
        Csi__V1__NodeGetInfoRequest r = CSI__V1__NODE_GET_INFO_REQUEST__INIT;
        ret = call(cli, "/csi.v1.Node/NodeGetInfo", &r,
                   &csi__v1__node_get_info_response__descriptor, &resp, tmo);
        if (!ret) {
            Csi__V1__NodeGetInfoResponse *p = (void *)resp;
            printf("node_id=%s\n", p->node_id);
            if (p->accessible_topology)
                print_map("topology.",
                          (void **)p->accessible_topology->segments,
                          p->accessible_topology->n_segments,
                          &csi__v1__topology__segments_entry__descriptor);
        }
    } else if (!strcmp(cmd, "create-volume")) {
        need(o.name, "--name");
        Csi__V1__CreateVolumeRequest r = CSI__V1__CREATE_VOLUME_REQUEST__INIT;
        Csi__V1__CapacityRange cr = CSI__V1__CAPACITY_RANGE__INIT;
        Csi__V1__TopologyRequirement tr = CSI__V1__TOPOLOGY_REQUIREMENT__INIT;
        Csi__V1__VolumeCapability *cap = cap_make(o.fs_type, o.block, o.mode);
        r.name = o.name;
        if (o.size) {
            cr.required_bytes = o.size;
            r.capacity_range = &cr;
        }
        r.n_volume_capabilities = 1;
        r.volume_capabilities = &cap;
        r.parameters = (Csi__V1__CreateVolumeRequest__ParametersEntry **)kv_map(
            &csi__v1__create_volume_request__parameters_entry__descriptor,
            &o.params, &r.n_parameters);
        Csi__V1__VolumeContentSource src = CSI__V1__VOLUME_CONTENT_SOURCE__INIT;
        Csi__V1__VolumeContentSource__SnapshotSource ss =
            CSI__V1__VOLUME_CONTENT_SOURCE__SNAPSHOT_SOURCE__INIT;
        Csi__V1__VolumeContentSource__VolumeSource vs =
            CSI__V1__VOLUME_CONTENT_SOURCE__VOLUME_SOURCE__INIT;
        if (o.source_snapshot && o.source_volume)
            die_usage("give --source-snapshot or --source-volume, not both%s",
                      "");
        if (o.source_snapshot) {
            ss.snapshot_id = o.source_snapshot;
            src.type_case = CSI__V1__VOLUME_CONTENT_SOURCE__TYPE_SNAPSHOT;
            src.snapshot = &ss;
            r.volume_content_source = &src;
        } else if (o.source_volume) {
            vs.volume_id = o.source_volume;
            src.type_case = CSI__V1__VOLUME_CONTENT_SOURCE__TYPE_VOLUME;
            src.volume = &vs;
            r.volume_content_source = &src;
        }
        if (o.n_pref || o.n_req) {
            tr.preferred = xcalloc(o.n_pref, sizeof *tr.preferred);
            for (size_t i = 0; i < o.n_pref; i++)
                tr.preferred[i] = topo_make(&o.pref[i]);
            tr.n_preferred = o.n_pref;
            tr.requisite = xcalloc(o.n_req, sizeof *tr.requisite);
            for (size_t i = 0; i < o.n_req; i++)
                tr.requisite[i] = topo_make(&o.req[i]);
            tr.n_requisite = o.n_req;
            r.accessibility_requirements = &tr;
        }
        ret = call(cli, "/csi.v1.Controller/CreateVolume", &r,
                   &csi__v1__create_volume_response__descriptor, &resp, tmo);
        if (!ret) {
            Csi__V1__Volume *v =
                ((Csi__V1__CreateVolumeResponse *)resp)->volume;
            if (!v) {
                fprintf(stderr,
                        PROG ": CreateVolume: response without volume\n");
                ret = 1;
            } else {
                printf("volume_id=%s\ncapacity_bytes=%" PRId64 "\n",
                       v->volume_id, v->capacity_bytes);
                print_map("context.", (void **)v->volume_context,
                          v->n_volume_context,
                          &csi__v1__volume__volume_context_entry__descriptor);
                for (size_t i = 0; i < v->n_accessible_topology; i++) {
                    Csi__V1__Topology *t = v->accessible_topology[i];
                    printf("topology=");
                    for (size_t j = 0; j < t->n_segments; j++)
                        printf("%s%s=%s", j ? "," : "", t->segments[j]->key,
                               t->segments[j]->value);
                    printf("\n");
                }
            }
        }
    } else if (!strcmp(cmd, "delete-volume")) {
        need(o.volume_id, "--volume-id");
        Csi__V1__DeleteVolumeRequest r = CSI__V1__DELETE_VOLUME_REQUEST__INIT;
        r.volume_id = o.volume_id;
        ret = call(cli, "/csi.v1.Controller/DeleteVolume", &r,
                   &csi__v1__delete_volume_response__descriptor, &resp, tmo);
    } else if (!strcmp(cmd, "controller-get-volume")) {
        need(o.volume_id, "--volume-id");
        Csi__V1__ControllerGetVolumeRequest r =
            CSI__V1__CONTROLLER_GET_VOLUME_REQUEST__INIT;
        r.volume_id = o.volume_id;
        ret = call(cli, "/csi.v1.Controller/ControllerGetVolume", &r,
                   &csi__v1__controller_get_volume_response__descriptor,
                   &resp, tmo);
        if (!ret) {
            Csi__V1__ControllerGetVolumeResponse *p = (void *)resp;
            if (p->volume)
                printf("volume_id=%s\ncapacity_bytes=%" PRId64 "\n",
                       p->volume->volume_id, p->volume->capacity_bytes);
            if (p->status && p->status->volume_condition)
                printf("abnormal=%s\nmessage=%s\n",
                       p->status->volume_condition->abnormal ? "true"
                                                             : "false",
                       p->status->volume_condition->message);
        }
    } else if (!strcmp(cmd, "create-snapshot")) {
        need(o.name, "--name");
        need(o.source_volume, "--source-volume");
        Csi__V1__CreateSnapshotRequest r =
            CSI__V1__CREATE_SNAPSHOT_REQUEST__INIT;
        r.name = o.name;
        r.source_volume_id = o.source_volume;
        r.parameters =
            (Csi__V1__CreateSnapshotRequest__ParametersEntry **)kv_map(
                &csi__v1__create_snapshot_request__parameters_entry__descriptor,
                &o.params, &r.n_parameters);
        ret = call(cli, "/csi.v1.Controller/CreateSnapshot", &r,
                   &csi__v1__create_snapshot_response__descriptor, &resp,
                   tmo);
        if (!ret) {
            Csi__V1__Snapshot *sn =
                ((Csi__V1__CreateSnapshotResponse *)resp)->snapshot;
            if (!sn) {
                fprintf(stderr,
                        PROG ": CreateSnapshot: response without snapshot\n");
                ret = 1;
            } else {
                printf("snapshot_id=%s\nsource_volume_id=%s\nsize_bytes=%"
                       PRId64 "\nready_to_use=%s\ncreation_time=%" PRId64
                       "\n",
                       sn->snapshot_id, sn->source_volume_id, sn->size_bytes,
                       sn->ready_to_use ? "true" : "false",
                       sn->creation_time ? sn->creation_time->seconds : 0);
            }
        }
    } else if (!strcmp(cmd, "delete-snapshot")) {
        need(o.snapshot_id, "--snapshot-id");
        Csi__V1__DeleteSnapshotRequest r =
            CSI__V1__DELETE_SNAPSHOT_REQUEST__INIT;
        r.snapshot_id = o.snapshot_id;
        ret = call(cli, "/csi.v1.Controller/DeleteSnapshot", &r,
                   &csi__v1__delete_snapshot_response__descriptor, &resp,
                   tmo);
    } else if (!strcmp(cmd, "list-snapshots")) {
        Csi__V1__ListSnapshotsRequest r =
            CSI__V1__LIST_SNAPSHOTS_REQUEST__INIT;
        r.snapshot_id = o.snapshot_id ? o.snapshot_id : "";
        r.source_volume_id = o.source_volume ? o.source_volume : "";
        r.starting_token = o.starting_token ? o.starting_token : "";
        r.max_entries = o.max_entries;
        ret = call(cli, "/csi.v1.Controller/ListSnapshots", &r,
                   &csi__v1__list_snapshots_response__descriptor, &resp,
                   tmo);
        if (!ret) {
            Csi__V1__ListSnapshotsResponse *p = (void *)resp;
            for (size_t i = 0; i < p->n_entries; i++) {
                Csi__V1__Snapshot *sn = p->entries[i]->snapshot;
                if (!sn) continue;
                printf("snapshot_id=%s source_volume_id=%s size_bytes=%" PRId64
                       " ready_to_use=%s\n",
                       sn->snapshot_id, sn->source_volume_id, sn->size_bytes,
                       sn->ready_to_use ? "true" : "false");
            }
            printf("next_token=%s\n", p->next_token);
        }
    } else if (!strcmp(cmd, "node-stage")) {
        need(o.volume_id, "--volume-id");
        need(o.staging, "--staging");
        Csi__V1__NodeStageVolumeRequest r =
            CSI__V1__NODE_STAGE_VOLUME_REQUEST__INIT;
        r.volume_id = o.volume_id;
        r.staging_target_path = o.staging;
        r.volume_capability = cap_make(o.fs_type, o.block, o.mode);
        r.volume_context =
            (Csi__V1__NodeStageVolumeRequest__VolumeContextEntry **)kv_map(
                &csi__v1__node_stage_volume_request__volume_context_entry__descriptor,
                &o.ctx, &r.n_volume_context);
        ret =
            call(cli, "/csi.v1.Node/NodeStageVolume", &r,
                 &csi__v1__node_stage_volume_response__descriptor, &resp, tmo);
    } else if (!strcmp(cmd, "node-unstage")) {
        need(o.volume_id, "--volume-id");
        need(o.staging, "--staging");
        Csi__V1__NodeUnstageVolumeRequest r =
            CSI__V1__NODE_UNSTAGE_VOLUME_REQUEST__INIT;
        r.volume_id = o.volume_id;
        r.staging_target_path = o.staging;
        ret = call(cli, "/csi.v1.Node/NodeUnstageVolume", &r,
                   &csi__v1__node_unstage_volume_response__descriptor, &resp,
                   tmo);
    } else if (!strcmp(cmd, "node-publish")) {
        need(o.volume_id, "--volume-id");
        need(o.staging, "--staging");
        need(o.target, "--target");
        Csi__V1__NodePublishVolumeRequest r =
            CSI__V1__NODE_PUBLISH_VOLUME_REQUEST__INIT;
        r.volume_id = o.volume_id;
        r.staging_target_path = o.staging;
        r.target_path = o.target;
        r.readonly = o.readonly;
        r.volume_capability = cap_make(o.fs_type, o.block, o.mode);
        r.volume_context =
            (Csi__V1__NodePublishVolumeRequest__VolumeContextEntry **)kv_map(
                &csi__v1__node_publish_volume_request__volume_context_entry__descriptor,
                &o.ctx, &r.n_volume_context);
        ret = call(cli, "/csi.v1.Node/NodePublishVolume", &r,
                   &csi__v1__node_publish_volume_response__descriptor, &resp,
                   tmo);
    } else if (!strcmp(cmd, "node-unpublish")) {
        need(o.volume_id, "--volume-id");
        need(o.target, "--target");
        Csi__V1__NodeUnpublishVolumeRequest r =
            CSI__V1__NODE_UNPUBLISH_VOLUME_REQUEST__INIT;
        r.volume_id = o.volume_id;
        r.target_path = o.target;
        ret = call(cli, "/csi.v1.Node/NodeUnpublishVolume", &r,
                   &csi__v1__node_unpublish_volume_response__descriptor, &resp,
                   tmo);
    } else {
        fprintf(stderr, PROG ": unknown command '%s' (see " PROG " --help)\n",
                cmd);
        ret = 2;
    }
    if (resp) protobuf_c_message_free_unpacked(resp, NULL);
    rpc_client_destroy(cli);
    free_all();
    free(o.params.k);
    free(o.params.v);
    free(o.ctx.k);
    free(o.ctx.v);
    for (size_t i = 0; i < o.n_pref; i++) {
        free(o.pref[i].k);
        free(o.pref[i].v);
    }
    for (size_t i = 0; i < o.n_req; i++) {
        free(o.req[i].k);
        free(o.req[i].v);
    }
    return ret;
}
