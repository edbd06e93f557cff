/*
 * test-csi-conformance.c: CSI conformance of tandem-csi over its real
 * unix socket: every Identity and Controller RPC it serves, with the
 * error codes of the spec's per-RPC tables, the WaitForFirstConsumer
 * placement that the external-provisioner asks for, and the Node RPCs'
 * argument checks (the data path itself: test-csi-node.c).  Each test
 * starts its own tandem-csi on sqlite regions a, b, c (c zonal) and
 * checks the stores directly where the answer alone would prove nothing.
 */
#include <pthread.h>
#include <time.h>

#include "test-csi-client.h"

static int in_region(struct csi_proc *p, const char *region, const char *id)
{
    struct jr_info in;
    return tc_stat_in(p, region, id, &in) == 0;
}

/* ------------------------------------------------------------- Identity */

TEST(identity)
{
    struct csi_proc p;
    csi_proc_start(&p, NULL);
    Csi__V1__GetPluginInfoRequest iq = CSI__V1__GET_PLUGIN_INFO_REQUEST__INIT;
    Csi__V1__GetPluginInfoResponse *ir;
    ASSERT_CODE(tc_call(&p, "/csi.v1.Identity/GetPluginInfo", &iq.base,
                        &csi__v1__get_plugin_info_response__descriptor, &ir,
                        NULL, 0), RPC_OK, "");
    ASSERT_STREQ(ir->name, "tandem.csi.dev");
    ASSERT(ir->vendor_version[0]);
    tc_free(ir);

    Csi__V1__GetPluginCapabilitiesRequest cq =
        CSI__V1__GET_PLUGIN_CAPABILITIES_REQUEST__INIT;
    Csi__V1__GetPluginCapabilitiesResponse *cr;
    ASSERT_CODE(tc_call(&p, "/csi.v1.Identity/GetPluginCapabilities",
                        &cq.base,
                        &csi__v1__get_plugin_capabilities_response__descriptor,
                        &cr, NULL, 0), RPC_OK, "");
    int ctrl = 0, topo = 0, online = 0;
    for (size_t i = 0; i < cr->n_capabilities; i++) {
        Csi__V1__PluginCapability *c = cr->capabilities[i];
        if (c->type_case == CSI__V1__PLUGIN_CAPABILITY__TYPE_SERVICE) {
            ctrl |= c->service->type ==
                    CSI__V1__PLUGIN_CAPABILITY__SERVICE__TYPE__CONTROLLER_SERVICE;
            topo |= c->service->type ==
                    CSI__V1__PLUGIN_CAPABILITY__SERVICE__TYPE__VOLUME_ACCESSIBILITY_CONSTRAINTS;
        } else if (c->type_case ==
                   CSI__V1__PLUGIN_CAPABILITY__TYPE_VOLUME_EXPANSION) {
            online |= c->volume_expansion->type ==
                      CSI__V1__PLUGIN_CAPABILITY__VOLUME_EXPANSION__TYPE__ONLINE;
        }
    }
    ASSERT(ctrl && topo && online);
    tc_free(cr);

    Csi__V1__ProbeRequest pq = CSI__V1__PROBE_REQUEST__INIT;
    Csi__V1__ProbeResponse *pr;
    ASSERT_CODE(tc_call(&p, "/csi.v1.Identity/Probe", &pq.base,
                        &csi__v1__probe_response__descriptor, &pr, NULL, 0),
                RPC_OK, "");
    ASSERT(pr->ready == NULL || pr->ready->value);
    tc_free(pr);

    /* Snapshot RPCs are served: an empty request is an argument error. */
    Csi__V1__CreateSnapshotRequest sq = CSI__V1__CREATE_SNAPSHOT_REQUEST__INIT;
    ASSERT_CODE(tc_try(&p, "/csi.v1.Controller/CreateSnapshot", &sq.base,
                       NULL, 0), RPC_INVALID_ARGUMENT, "");
    csi_proc_stop(&p);
}

/* Probe fails (FAILED_PRECONDITION) when the local store is unusable,
 * naming the region. */
TEST(probe_unhealthy_store)
{
    struct csi_proc p;
    char msg[512];
    csi_proc_start_ex(&p, "[region d]\nbackend = sqlite\n"
                          "db_path = /proc/none/d.db\n", "d", NULL);
    Csi__V1__ProbeRequest pq = CSI__V1__PROBE_REQUEST__INIT;
    ASSERT_CODE(tc_try(&p, "/csi.v1.Identity/Probe", &pq.base, msg,
                       sizeof(msg)), RPC_FAILED_PRECONDITION, msg);
    ASSERT(strstr(msg, "region d"));
    csi_proc_stop(&p);
}

/* ----------------------------------------------------------- Controller */

TEST(controller_capabilities)
{
    struct csi_proc p;
    csi_proc_start(&p, NULL);
    Csi__V1__ControllerGetCapabilitiesRequest q =
        CSI__V1__CONTROLLER_GET_CAPABILITIES_REQUEST__INIT;
    Csi__V1__ControllerGetCapabilitiesResponse *r;
    ASSERT_CODE(tc_call(&p, "/csi.v1.Controller/ControllerGetCapabilities",
                        &q.base,
                        &csi__v1__controller_get_capabilities_response__descriptor,
                        &r, NULL, 0), RPC_OK, "");
    unsigned seen = 0;
    for (size_t i = 0; i < r->n_capabilities; i++)
        seen |= 1u << r->capabilities[i]->rpc->type;
    ASSERT(seen & (1u << CSI__V1__CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__CREATE_DELETE_VOLUME));
    ASSERT(seen & (1u << CSI__V1__CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__LIST_VOLUMES));
    ASSERT(seen & (1u << CSI__V1__CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__GET_CAPACITY));
    ASSERT(seen & (1u << CSI__V1__CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__EXPAND_VOLUME));
    /* Snapshots, clones and volume health: announced. */
    ASSERT(seen & (1u << CSI__V1__CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__CREATE_DELETE_SNAPSHOT));
    ASSERT(seen & (1u << CSI__V1__CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__LIST_SNAPSHOTS));
    ASSERT(seen & (1u << CSI__V1__CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__CLONE_VOLUME));
    ASSERT(seen & (1u << CSI__V1__CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__GET_VOLUME));
    ASSERT(seen & (1u << CSI__V1__CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__VOLUME_CONDITION));
    /* No ControllerPublish: not announced. */
    ASSERT(!(seen & (1u << CSI__V1__CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__PUBLISH_UNPUBLISH_VOLUME)));
    tc_free(r);
    csi_proc_stop(&p);
}

TEST(create_volume_errors)
{
    struct csi_proc p;
    char msg[1024];
    csi_proc_start(&p, NULL);
    Csi__V1__CreateVolumeRequest rq = CSI__V1__CREATE_VOLUME_REQUEST__INIT;
    const char *create = "/csi.v1.Controller/CreateVolume";
    /* No name. */
    ASSERT_CODE(tc_create(&p, "", 0, 0, NULL, NULL, NULL, 0, NULL, msg,
                          sizeof(msg)), RPC_INVALID_ARGUMENT, msg);
    /* No capabilities. */
    rq.name = "v-nocaps";
    ASSERT_CODE(tc_try(&p, create, &rq.base, msg, sizeof(msg)),
                RPC_INVALID_ARGUMENT, msg);
    /* Multi-node writer refused. */
    struct tc_cap cap;
    tc_cap(&cap, 0, TC_MNMW, NULL);
    rq.n_volume_capabilities = 1;
    rq.volume_capabilities = &cap.pc;
    ASSERT_CODE(tc_try(&p, create, &rq.base, msg, sizeof(msg)),
                RPC_INVALID_ARGUMENT, msg);
    /* Unknown filesystem. */
    tc_cap(&cap, 0, TC_SNW, "btrfs");
    ASSERT_CODE(tc_try(&p, create, &rq.base, msg, sizeof(msg)),
                RPC_INVALID_ARGUMENT, msg);
    /* Clone of a volume that does not exist: NOT_FOUND. */
    Csi__V1__VolumeContentSource src = CSI__V1__VOLUME_CONTENT_SOURCE__INIT;
    Csi__V1__VolumeContentSource__VolumeSource vs =
        CSI__V1__VOLUME_CONTENT_SOURCE__VOLUME_SOURCE__INIT;
    vs.volume_id = "other";
    src.type_case = CSI__V1__VOLUME_CONTENT_SOURCE__TYPE_VOLUME;
    src.volume = &vs;
    tc_cap(&cap, 0, TC_SNW, NULL);
    rq.volume_content_source = &src;
    ASSERT_CODE(tc_try(&p, create, &rq.base, msg, sizeof(msg)),
                RPC_NOT_FOUND, msg);
    /* A content source of neither kind: INVALID_ARGUMENT. */
    src.type_case = CSI__V1__VOLUME_CONTENT_SOURCE__TYPE__NOT_SET;
    ASSERT_CODE(tc_try(&p, create, &rq.base, msg, sizeof(msg)),
                RPC_INVALID_ARGUMENT, msg);
    /* Unknown parameter, named in the message. */
    struct tc_params pr = {0};
    tc_param(&pr, "colour", "blue");
    ASSERT_CODE(tc_create(&p, "v-param", 0, 0, &pr, NULL, NULL, 0, NULL, msg,
                          sizeof(msg)), RPC_INVALID_ARGUMENT, msg);
    ASSERT(strstr(msg, "colour"));
    struct tc_params pr2 = {0};
    tc_param(&pr2, "replication", "async");
    tc_param(&pr2, "peerRegion", "mars");
    ASSERT_CODE(tc_create(&p, "v-param", 0, 0, &pr2, NULL, NULL, 0, NULL, msg,
                          sizeof(msg)), RPC_INVALID_ARGUMENT, msg);
    ASSERT(strstr(msg, "peerRegion"));
    /* A parameter key too long to store as it is: refused, not cut. */
    struct tc_params pr4 = {0};
    tc_param(&pr4, "csi.storage.k8s.io/a-key-so-long-that-csi.param.-plus-"
                   "it-would-not-fit-the-meta-key-buffer-x", "v");
    ASSERT_CODE(tc_create(&p, "v-param", 0, 0, &pr4, NULL, NULL, 0, NULL, msg,
                          sizeof(msg)), RPC_INVALID_ARGUMENT, msg);
    ASSERT(strstr(msg, "key longer"));
    /* async replica in the region the volume lands in. */
    struct tc_params pr3 = {0};
    tc_param(&pr3, "replication", "async");
    tc_param(&pr3, "peerRegion", "a");
    ASSERT_CODE(tc_create(&p, "v-param", 0, 0, &pr3, NULL, NULL, 0, NULL, msg,
                          sizeof(msg)), RPC_INVALID_ARGUMENT, msg);
    ASSERT(strstr(msg, "peerRegion"));
    /* Capacity: required above limit; rounded size above limit. */
    Csi__V1__CapacityRange cr = CSI__V1__CAPACITY_RANGE__INIT;
    rq.volume_content_source = NULL;
    rq.name = "v-range";
    rq.capacity_range = &cr;
    cr.required_bytes = 10 << 20;
    cr.limit_bytes = 5 << 20;
    ASSERT_CODE(tc_try(&p, create, &rq.base, msg, sizeof(msg)),
                RPC_OUT_OF_RANGE, msg);
    cr.required_bytes = 5 << 20; /* rounds up to 8 MiB (4 MiB objects) */
    cr.limit_bytes = 6 << 20;
    ASSERT_CODE(tc_try(&p, create, &rq.base, msg, sizeof(msg)),
                RPC_OUT_OF_RANGE, msg);
    cr.required_bytes = -1;
    cr.limit_bytes = 0;
    ASSERT_CODE(tc_try(&p, create, &rq.base, msg, sizeof(msg)),
                RPC_INVALID_ARGUMENT, msg);
    cr.required_bytes = (int64_t)1 << 62;
    ASSERT_CODE(tc_try(&p, create, &rq.base, msg, sizeof(msg)),
                RPC_OUT_OF_RANGE, msg);
    /* Nothing was created by any of these. */
    ASSERT(!in_region(&p, "a", "v-range"));
    ASSERT(!in_region(&p, "a", "v-param"));
    csi_proc_stop(&p);
}

TEST(create_volume_idempotent_and_metadata)
{
    struct csi_proc p;
    char msg[1024], id[200], id2[200];
    csi_proc_start(&p, NULL);
    struct tc_params pr = {0};
    tc_param(&pr, "fsType", "ext4");
    tc_param(&pr, "objectSize", "1Mi");
    tc_param(&pr, "csi.storage.k8s.io/pvc/name", "data");
    tc_param(&pr, "csi.storage.k8s.io/pvc/namespace", "shop");
    tc_param(&pr, "csi.storage.k8s.io/pv/name", "pvc-11");
    Csi__V1__CreateVolumeResponse *r;
    ASSERT_CODE(tc_create(&p, "pvc-11", (3 << 20) + 1, 0, &pr, NULL, id,
                          sizeof(id), &r, msg, sizeof(msg)), RPC_OK, msg);
    ASSERT_STREQ(id, "pvc-11");
    ASSERT_EQ(r->volume->capacity_bytes, 4 << 20); /* rounded to 1 MiB */
    ASSERT_STREQ(tc_vol_region(r->volume), "a");
    tc_free(r);
    /* Retry: same id, no second volume. */
    ASSERT_CODE(tc_create(&p, "pvc-11", (3 << 20) + 1, 0, &pr, NULL, id2,
                          sizeof(id2), NULL, msg, sizeof(msg)), RPC_OK, msg);
    ASSERT_STREQ(id, id2);
    /* Same name, incompatible size or parameters: ALREADY_EXISTS. */
    ASSERT_CODE(tc_create(&p, "pvc-11", 64 << 20, 0, &pr, NULL, NULL, 0, NULL,
                          msg, sizeof(msg)), RPC_ALREADY_EXISTS, msg);
    struct tc_params pr2 = {0};
    tc_param(&pr2, "fsType", "xfs");
    tc_param(&pr2, "objectSize", "1Mi");
    ASSERT_CODE(tc_create(&p, "pvc-11", (3 << 20) + 1, 0, &pr2, NULL, NULL, 0,
                          NULL, msg, sizeof(msg)), RPC_ALREADY_EXISTS, msg);
    ASSERT(strstr(msg, "fsType"));
    /* Metadata travels with the volume. */
    struct rg_config *cfg;
    st_store *st = tc_region_store(&p, "a", &cfg);
    ASSERT_META(st, id, "csi.pvc_name", "data");
    ASSERT_META(st, id, "csi.pvc_namespace", "shop");
    ASSERT_META(st, id, "csi.pv_name", "pvc-11");
    ASSERT_META(st, id, "csi.param.objectSize", "1Mi");
    ASSERT_META(st, id, "csi.replication", "none");
    struct jr_info in;
    ASSERT_EQ(jr_volume_stat(st, id, &in), 0);
    ASSERT_EQ(in.object_size, 1 << 20);
    ASSERT_EQ(in.role, JR_ROLE_PRIMARY);
    st_close(st);
    rg_free(cfg);

    /* A name that is not an id gets a stable hashed id. */
    ASSERT_CODE(tc_create(&p, "my data/volume", 0, 1, NULL, NULL, id,
                          sizeof(id), &r, msg, sizeof(msg)), RPC_OK, msg);
    ASSERT(!strncmp(id, "h-", 2));
    ASSERT_EQ(r->volume->capacity_bytes, 1 << 30); /* default size */
    tc_free(r);
    ASSERT_CODE(tc_create(&p, "my data/volume", 0, 1, NULL, NULL, id2,
                          sizeof(id2), NULL, msg, sizeof(msg)), RPC_OK, msg);
    ASSERT_STREQ(id, id2);
    csi_proc_stop(&p);
}

/* What one CreateVolume costs in store calls (issue 12), from the
 * plugin's csi.volume.create_cost line; -1 if the line is missing. */
static int create_cost(struct csi_proc *p, const char *id, long *reads,
                       long *writes)
{
    char path[400], line[2048], want[300];
    snprintf(path, sizeof(path), "%s/csi.log", p->dir);
    snprintf(want, sizeof(want), "vol=%s store_reads=", id);
    FILE *f = fopen(path, "r");
    int rc = -1;
    if (!f) return -1;
    while (fgets(line, sizeof(line), f)) {
        const char *at = strstr(line, want);
        if (strstr(line, "csi.volume.create_cost") && at &&
            sscanf(at + strlen(want), "%ld store_writes=%ld", reads,
                   writes) == 2)
            rc = 0;
    }
    fclose(f);
    return rc;
}

/* A fresh volume costs one header lookup per region (the name must not
 * exist anywhere: idempotence across regions), the directory key and the
 * header with every key in one op (R-2: two writes, two commits on
 * sqlite), and nothing read back.  A retry of the same name creates
 * nothing (no cost line). */
TEST(create_volume_store_cost)
{
    struct csi_proc p;
    char msg[1024], id[200];
    long rd = -1, wr = -1;
    csi_proc_start(&p, NULL);
    struct tc_params pr = {0};
    tc_param(&pr, "fsType", "xfs");
    tc_param(&pr, "mkfsOptions", "-m 0");
    tc_param(&pr, "csi.storage.k8s.io/pvc/name", "cost");
    /* The first create opens the stores; the second is the figure. */
    ASSERT_CODE(tc_create(&p, "pvc-cost-0", 8 << 20, 0, &pr, NULL, id,
                          sizeof(id), NULL, msg, sizeof(msg)), RPC_OK, msg);
    Csi__V1__CreateVolumeResponse *r;
    ASSERT_CODE(tc_create(&p, "pvc-cost-1", 8 << 20, 0, &pr, NULL, id,
                          sizeof(id), &r, msg, sizeof(msg)), RPC_OK, msg);
    /* The answer still carries what a read-back used to give. */
    ASSERT_EQ(r->volume->capacity_bytes, 8 << 20);
    ASSERT_STREQ(tc_vol_region(r->volume), "a");
    int fs = 0, mk = 0;
    for (size_t i = 0; i < r->volume->n_volume_context; i++) {
        const Csi__V1__Volume__VolumeContextEntry *e =
            r->volume->volume_context[i];
        if (!strcmp(e->key, "fsType")) fs = !strcmp(e->value, "xfs");
        if (!strcmp(e->key, "mkfsOptions")) mk = !strcmp(e->value, "-m 0");
    }
    ASSERT(fs && mk);
    tc_free(r);
    ASSERT_EQ(create_cost(&p, "pvc-cost-1", &rd, &wr), 0);
    fprintf(stderr, "  CreateVolume: %ld store reads, %ld store writes "
            "(3 sqlite regions)\n", rd, wr);
    ASSERT_EQ(wr, 2);
    ASSERT(rd <= 3);
    /* The header holds every key: a stat sees the volume whole. */
    struct rg_config *cfg;
    st_store *st = tc_region_store(&p, "a", &cfg);
    struct jr_info in;
    ASSERT_EQ(jr_volume_stat(st, "pvc-cost-1", &in), 0);
    ASSERT_EQ(in.size, 8 << 20);
    ASSERT_META(st, "pvc-cost-1", "csi.pvc_name", "cost");
    ASSERT_META(st, "pvc-cost-1", "csi.fs_type", "xfs");
    st_close(st);
    rg_free(cfg);
    csi_proc_stop(&p);
}

/* Replication parameters land in the metadata the replicator reads. */
TEST(create_volume_async_replication)
{
    struct csi_proc p;
    char msg[1024], id[200];
    csi_proc_start(&p, NULL);
    struct tc_params pr = {0};
    tc_param(&pr, "replication", "async");
    tc_param(&pr, "peerRegion", "b");
    ASSERT_CODE(tc_create(&p, "pvc-rep", 8 << 20, 0, &pr, NULL, id,
                          sizeof(id), NULL, msg, sizeof(msg)), RPC_OK, msg);
    struct rg_config *cfg;
    st_store *st = tc_region_store(&p, "a", &cfg);
    ASSERT_META(st, id, "csi.replication", "async");
    ASSERT_META(st, id, "csi.peer_region", "b");
    st_close(st);
    rg_free(cfg);
    /* The controller creates only the primary: the replicator makes the
     * replica. */
    ASSERT(!in_region(&p, "b", id));
    csi_proc_stop(&p);
}

/* consistencyGroup: the volume joins the group at creation (the replica
 * gets the membership with the metadata); a repeat is idempotent. */
TEST(create_volume_consistency_group)
{
    struct csi_proc p;
    char msg[1024], id[200], id2[200];
    csi_proc_start(&p, NULL);
    struct tc_params pr = {0};
    tc_param(&pr, "replication", "async");
    tc_param(&pr, "peerRegion", "b");
    tc_param(&pr, "consistencyGroup", "db");
    ASSERT_CODE(tc_create(&p, "pvc-g1", 8 << 20, 0, &pr, NULL, id,
                          sizeof(id), NULL, msg, sizeof(msg)), RPC_OK, msg);
    ASSERT_CODE(tc_create(&p, "pvc-g1", 8 << 20, 0, &pr, NULL, id,
                          sizeof(id), NULL, msg, sizeof(msg)), RPC_OK, msg);
    ASSERT_CODE(tc_create(&p, "pvc-g2", 8 << 20, 0, &pr, NULL, id2,
                          sizeof(id2), NULL, msg, sizeof(msg)), RPC_OK, msg);
    struct rg_config *cfg;
    st_store *st = tc_region_store(&p, "a", &cfg);
    char g[JR_MAX_GROUP_ID + 1];
    uint32_t i1, i2;
    ASSERT_OK(jr_group_of(st, id, g, sizeof g, &i1));
    ASSERT(!strcmp(g, "db"));
    ASSERT_OK(jr_group_of(st, id2, g, sizeof g, &i2));
    ASSERT(i1 != i2);
    ASSERT_META(st, id, "group", i1 ? "db 1" : "db 0");
    st_close(st);
    rg_free(cfg);
    csi_proc_stop(&p);
}

/* One replicated StorageClass for every region: without peerRegion the
 * landing region's `peer` from the region map is used; a region without
 * one (and more than two regions) is refused naming the parameter. */
TEST(create_volume_async_default_peer)
{
    struct csi_proc p;
    char msg[1024], id[200];
    csi_proc_start(&p, "peer = a\n"); /* appended to [region c] */
    struct tc_params pr = {0};
    tc_param(&pr, "replication", "async");
    ASSERT_CODE(tc_create(&p, "pvc-nopeer", 8 << 20, 0, &pr, NULL, id,
                          sizeof(id), NULL, msg, sizeof(msg)),
                RPC_INVALID_ARGUMENT, msg);
    ASSERT(strstr(msg, "peerRegion") && strstr(msg, "no peer"));
    tc_param(&pr, "region", "c");
    ASSERT_CODE(tc_create(&p, "pvc-peer", 8 << 20, 0, &pr, NULL, id,
                          sizeof(id), NULL, msg, sizeof(msg)), RPC_OK, msg);
    struct rg_config *cfg;
    st_store *st = tc_region_store(&p, "c", &cfg);
    ASSERT_META(st, id, "csi.replication", "async");
    ASSERT_META(st, id, "csi.peer_region", "a");
    st_close(st);
    rg_free(cfg);
    csi_proc_stop(&p);
}

/* The external-provisioner's requests for a node in each region (with
 * --feature-gates=Topology=true, WaitForFirstConsumer): requisite lists
 * every allowed segment (sorted), preferred starts with the node's. */
TEST(wait_for_first_consumer_placement)
{
    struct csi_proc p;
    char msg[1024], id[200], name[64];
    const char *regions[] = {"a", "b", "c"};
    const char *zones[] = {NULL, NULL, "c1"};
    csi_proc_start(&p, NULL);
    for (int node = 0; node < 3; node++) {
        struct tc_topo req = {0}, pref = {0};
        Csi__V1__TopologyRequirement tr;
        for (int i = 0; i < 3; i++) tc_seg(&req, regions[i], zones[i]);
        tc_seg(&pref, regions[node], zones[node]);
        for (int i = 1; i < 3; i++) {
            int k = (node + i) % 3;
            tc_seg(&pref, regions[k], zones[k]);
        }
        tc_topo_req(&tr, &req, &pref);
        Csi__V1__CreateVolumeResponse *r;
        snprintf(name, sizeof(name), "pvc-wffc-%s", regions[node]);
        ASSERT_CODE(tc_create(&p, name, 8 << 20, 0, NULL, &tr, id,
                              sizeof(id), &r, msg, sizeof(msg)), RPC_OK, msg);
        /* Where it says it is, and where it really is. */
        ASSERT_STREQ(tc_vol_region(r->volume), regions[node]);
        if (zones[node]) {
            const Csi__V1__Topology *vt = r->volume->accessible_topology[0];
            int zone_ok = 0;
            for (size_t i = 0; i < vt->n_segments; i++)
                zone_ok |= !strcmp(vt->segments[i]->key,
                                   "topology.tandem.csi.dev/zone") &&
                           !strcmp(vt->segments[i]->value, zones[node]);
            ASSERT(zone_ok);
        } else {
            ASSERT_EQ(r->volume->accessible_topology[0]->n_segments, 1);
        }
        tc_free(r);
        for (int i = 0; i < 3; i++)
            ASSERT_EQ(in_region(&p, regions[i], id), i == node);
    }
    /* Only unconfigured regions asked for: RESOURCE_EXHAUSTED naming the
     * asked and the configured regions. */
    struct tc_topo req = {0}, pref = {0};
    Csi__V1__TopologyRequirement tr;
    tc_seg(&req, "x", NULL);
    tc_seg(&pref, "x", NULL);
    ASSERT_CODE(tc_create(&p, "pvc-nowhere", 8 << 20, 0, NULL,
                          tc_topo_req(&tr, &req, &pref), NULL, 0,
                          NULL, msg, sizeof(msg)), RPC_RESOURCE_EXHAUSTED, msg);
    ASSERT(strstr(msg, "x") && strstr(msg, "a,b,c"));
    csi_proc_stop(&p);
}

/* requisite[0] is region a, the chosen node is in b. */
TEST(wait_for_first_consumer_requisite0_trap)
{
    struct csi_proc p;
    char msg[1024], id[200];
    csi_proc_start(&p, NULL);
    struct tc_topo req = {0}, pref = {0};
    Csi__V1__TopologyRequirement tr;
    tc_seg(&req, "a", NULL);
    tc_seg(&req, "b", NULL);
    tc_seg(&pref, "b", NULL);
    tc_seg(&pref, "a", NULL);
    tc_topo_req(&tr, &req, &pref);
    ASSERT_CODE(tc_create(&p, "pvc-trap", 8 << 20, 0, NULL, &tr, id,
                          sizeof(id), NULL, msg, sizeof(msg)), RPC_OK, msg);
    ASSERT(in_region(&p, "b", id));
    ASSERT(!in_region(&p, "a", id));
    /* Retried with another node preference, the volume stays (it is in a
     * requisite region): idempotent. */
    pref.n = 0;
    tc_seg(&pref, "a", NULL);
    tc_seg(&pref, "b", NULL);
    tc_topo_req(&tr, &req, &pref);
    ASSERT_CODE(tc_create(&p, "pvc-trap", 8 << 20, 0, NULL, &tr, NULL, 0,
                          NULL, msg, sizeof(msg)), RPC_OK, msg);
    ASSERT(!in_region(&p, "a", id));
    csi_proc_stop(&p);
}

TEST(delete_volume)
{
    struct csi_proc p;
    char msg[1024], id[200];
    csi_proc_start(&p, NULL);
    ASSERT_CODE(tc_delete(&p, ""), RPC_INVALID_ARGUMENT, "");
    ASSERT_CODE(tc_delete(&p, "pvc-never-existed"), RPC_OK, "");
    ASSERT_CODE(tc_delete(&p, "../../etc"), RPC_OK, "");
    ASSERT_CODE(tc_create(&p, "pvc-del", 8 << 20, 0, NULL, NULL, id,
                          sizeof(id), NULL, msg, sizeof(msg)), RPC_OK, msg);
    ASSERT(in_region(&p, "a", id));
    ASSERT_CODE(tc_delete(&p, id), RPC_OK, "");
    ASSERT(!in_region(&p, "a", id));
    ASSERT_CODE(tc_delete(&p, id), RPC_OK, "");
    /* A volume open for writing elsewhere (staged) is in use. */
    ASSERT_CODE(tc_create(&p, "pvc-busy", 8 << 20, 0, NULL, NULL, id,
                          sizeof(id), NULL, msg, sizeof(msg)), RPC_OK, msg);
    struct rg_config *cfg;
    st_store *st = tc_region_store(&p, "a", &cfg);
    jr_volume *v;
    ASSERT_EQ(jr_open(st, id, JR_OPEN_WRITE, "test-holder", &v), 0);
    ASSERT_CODE(tc_delete(&p, id), RPC_FAILED_PRECONDITION, "");
    ASSERT_EQ(jr_close(v), 0);
    ASSERT_CODE(tc_delete(&p, id), RPC_OK, "");
    st_close(st);
    rg_free(cfg);
    csi_proc_stop(&p);
}

static int validate(struct csi_proc *p, const char *id, int mode, int block,
                    Csi__V1__ValidateVolumeCapabilitiesResponse **out,
                    char *msg, size_t len)
{
    Csi__V1__ValidateVolumeCapabilitiesRequest q =
        CSI__V1__VALIDATE_VOLUME_CAPABILITIES_REQUEST__INIT;
    struct tc_cap cap;
    q.volume_id = (char *)id;
    if (mode) {
        tc_cap(&cap, block, mode, NULL);
        q.n_volume_capabilities = 1;
        q.volume_capabilities = &cap.pc;
    }
    return tc_call(p, "/csi.v1.Controller/ValidateVolumeCapabilities",
                   &q.base,
                   &csi__v1__validate_volume_capabilities_response__descriptor,
                   out, msg, len);
}

TEST(validate_volume_capabilities)
{
    struct csi_proc p;
    char msg[1024], id[200];
    Csi__V1__ValidateVolumeCapabilitiesResponse *r;
    csi_proc_start(&p, NULL);
    ASSERT_CODE(tc_create(&p, "pvc-val", 8 << 20, 0, NULL, NULL, id,
                          sizeof(id), NULL, msg, sizeof(msg)), RPC_OK, msg);
    ASSERT_CODE(validate(&p, "", TC_SNW, 0, &r, msg, sizeof(msg)),
                RPC_INVALID_ARGUMENT, msg);
    ASSERT_CODE(validate(&p, id, 0, 0, &r, msg, sizeof(msg)),
                RPC_INVALID_ARGUMENT, msg);
    ASSERT_CODE(validate(&p, "pvc-unknown", TC_SNW, 0, &r, msg, sizeof(msg)),
                RPC_NOT_FOUND, msg);
    ASSERT_CODE(validate(&p, id, TC_SNW, 0, &r, msg, sizeof(msg)), RPC_OK,
                msg);
    ASSERT(r->confirmed != NULL);
    ASSERT_EQ(r->confirmed->n_volume_capabilities, 1);
    tc_free(r);
    ASSERT_CODE(validate(&p, id, TC_SNRO, 1, &r, msg, sizeof(msg)), RPC_OK,
                msg);
    ASSERT(r->confirmed != NULL);
    tc_free(r);
    ASSERT_CODE(validate(&p, id, TC_MNMW, 0, &r, msg, sizeof(msg)), RPC_OK,
                msg);
    ASSERT(r->confirmed == NULL);
    ASSERT(r->message[0]);
    tc_free(r);
    csi_proc_stop(&p);
}

static int list(struct csi_proc *p, int max, const char *token,
                Csi__V1__ListVolumesResponse **out, char *msg, size_t len)
{
    Csi__V1__ListVolumesRequest q = CSI__V1__LIST_VOLUMES_REQUEST__INIT;
    q.max_entries = max;
    q.starting_token = (char *)(token ? token : "");
    return tc_call(p, "/csi.v1.Controller/ListVolumes", &q.base,
                   &csi__v1__list_volumes_response__descriptor, out, msg, len);
}

TEST(list_volumes_pagination)
{
    struct csi_proc p;
    char msg[1024], name[64], token[256] = "";
    Csi__V1__ListVolumesResponse *r;
    csi_proc_start(&p, NULL);
    ASSERT_CODE(list(&p, 0, NULL, &r, msg, sizeof(msg)), RPC_OK, msg);
    ASSERT_EQ(r->n_entries, 0);
    ASSERT_STREQ(r->next_token, "");
    tc_free(r);
    /* 7 volumes over two regions. */
    for (int i = 0; i < 7; i++) {
        struct tc_params pr = {0};
        tc_param(&pr, "region", i % 2 ? "b" : "a");
        snprintf(name, sizeof(name), "pvc-list-%d", i);
        ASSERT_CODE(tc_create(&p, name, 4 << 20, 0, &pr, NULL, NULL, 0, NULL,
                              msg, sizeof(msg)), RPC_OK, msg);
    }
    int seen[7] = {0}, pages = 0;
    do {
        ASSERT_CODE(list(&p, 3, token, &r, msg, sizeof(msg)), RPC_OK, msg);
        ASSERT_LE(r->n_entries, 3);
        for (size_t i = 0; i < r->n_entries; i++) {
            int k = -1;
            ASSERT_EQ(sscanf(r->entries[i]->volume->volume_id, "pvc-list-%d",
                             &k), 1);
            ASSERT(k >= 0 && k < 7);
            seen[k]++;
            ASSERT_STREQ(tc_vol_region(r->entries[i]->volume),
                         k % 2 ? "b" : "a");
            ASSERT_EQ(r->entries[i]->volume->capacity_bytes, 4 << 20);
            /* VOLUME_CONDITION announced: every entry has one. */
            ASSERT(r->entries[i]->status &&
                   r->entries[i]->status->volume_condition &&
                   !r->entries[i]->status->volume_condition->abnormal);
        }
        snprintf(token, sizeof(token), "%s", r->next_token);
        tc_free(r);
        pages++;
    } while (token[0] && pages < 10);
    ASSERT_EQ(pages, 3);
    for (int i = 0; i < 7; i++) ASSERT_EQ(seen[i], 1);
    /* No limit: all of them at once. */
    ASSERT_CODE(list(&p, 0, NULL, &r, msg, sizeof(msg)), RPC_OK, msg);
    ASSERT_EQ(r->n_entries, 7);
    tc_free(r);
    /* Bad token: ABORTED; negative max: INVALID_ARGUMENT. */
    ASSERT_CODE(list(&p, 2, "garbage", &r, msg, sizeof(msg)), RPC_ABORTED,
                msg);
    ASSERT_CODE(list(&p, 2, "after:../x", &r, msg, sizeof(msg)), RPC_ABORTED,
                msg);
    ASSERT_CODE(list(&p, -1, NULL, &r, msg, sizeof(msg)),
                RPC_INVALID_ARGUMENT, msg);
    csi_proc_stop(&p);
}

static int64_t capacity(struct csi_proc *p, const char *region)
{
    Csi__V1__GetCapacityRequest q = CSI__V1__GET_CAPACITY_REQUEST__INIT;
    Csi__V1__Topology t = CSI__V1__TOPOLOGY__INIT;
    Csi__V1__Topology__SegmentsEntry e =
        CSI__V1__TOPOLOGY__SEGMENTS_ENTRY__INIT;
    Csi__V1__Topology__SegmentsEntry *ep = &e;
    Csi__V1__GetCapacityResponse *r;
    char msg[512];
    if (region) {
        e.key = "topology.tandem.csi.dev/region";
        e.value = (char *)region;
        t.n_segments = 1;
        t.segments = &ep;
        q.accessible_topology = &t;
    }
    ASSERT_CODE(tc_call(p, "/csi.v1.Controller/GetCapacity", &q.base,
                        &csi__v1__get_capacity_response__descriptor, &r, msg,
                        sizeof(msg)), RPC_OK, msg);
    int64_t v = r->available_capacity;
    ASSERT(r->maximum_volume_size != NULL);
    tc_free(r);
    return v;
}

TEST(get_capacity_per_region)
{
    struct csi_proc p;
    char msg[1024];
    csi_proc_start(&p, NULL);
    ASSERT_EQ(capacity(&p, "a"), 10737418240LL);
    ASSERT_CODE(tc_create(&p, "pvc-cap", 1 << 30, 0, NULL, NULL, NULL, 0, NULL,
                          msg, sizeof(msg)), RPC_OK, msg);
    ASSERT_EQ(capacity(&p, "a"), 10737418240LL - (1 << 30));
    ASSERT_EQ(capacity(&p, "mars"), 0);
    /* b has no capacity_bytes: reported as the largest volume size. */
    ASSERT_GT(capacity(&p, "b"), 10737418240LL);
    csi_proc_stop(&p);
}

TEST(controller_expand_volume)
{
    struct csi_proc p;
    char msg[1024], id[200], bid[200];
    Csi__V1__ControllerExpandVolumeResponse *r;
    csi_proc_start(&p, NULL);
    ASSERT_CODE(tc_create(&p, "pvc-grow", 8 << 20, 0, NULL, NULL, id,
                          sizeof(id), NULL, msg, sizeof(msg)), RPC_OK, msg);
    ASSERT_CODE(tc_expand(&p, "", 16 << 20, 0, 0, &r, msg, sizeof(msg)),
                RPC_INVALID_ARGUMENT, msg);
    ASSERT_CODE(tc_expand(&p, id, -1, 0, 0, &r, msg, sizeof(msg)),
                RPC_INVALID_ARGUMENT, msg);
    ASSERT_CODE(tc_expand(&p, "pvc-unknown", 16 << 20, 0, 0, &r, msg,
                       sizeof(msg)), RPC_NOT_FOUND, msg);
    ASSERT_CODE(tc_expand(&p, id, (16 << 20) + 1, 17 << 20, 0, &r, msg,
                       sizeof(msg)), RPC_OUT_OF_RANGE, msg);
    ASSERT_CODE(tc_expand(&p, id, (16 << 20) + 1, 0, 0, &r, msg, sizeof(msg)),
                RPC_OK, msg);
    ASSERT_EQ(r->capacity_bytes, 20 << 20);
    ASSERT(r->node_expansion_required); /* the filesystem must grow */
    tc_free(r);
    struct rg_config *cfg;
    st_store *st = tc_region_store(&p, "a", &cfg);
    struct jr_info in;
    ASSERT_EQ(jr_volume_stat(st, id, &in), 0);
    ASSERT_UEQ(in.size, 20 << 20);
    /* Smaller than now: nothing to do, still OK. */
    ASSERT_CODE(tc_expand(&p, id, 8 << 20, 0, 0, &r, msg, sizeof(msg)), RPC_OK,
                msg);
    ASSERT_EQ(r->capacity_bytes, 20 << 20);
    tc_free(r);
    /* Block volume not in use: done by the controller alone. */
    ASSERT_CODE(tc_create(&p, "pvc-growb", 8 << 20, 1, NULL, NULL, bid,
                          sizeof(bid), NULL, msg, sizeof(msg)), RPC_OK, msg);
    ASSERT_CODE(tc_expand(&p, bid, 12 << 20, 0, 1, &r, msg, sizeof(msg)),
                RPC_OK, msg);
    ASSERT(!r->node_expansion_required);
    tc_free(r);
    /* Open on a node (writer lease held): recorded for the node. */
    jr_volume *v;
    ASSERT_EQ(jr_open(st, bid, JR_OPEN_WRITE, "test-holder", &v), 0);
    ASSERT_CODE(tc_expand(&p, bid, 16 << 20, 0, 1, &r, msg, sizeof(msg)),
                RPC_OK, msg);
    ASSERT(r->node_expansion_required);
    ASSERT_EQ(r->capacity_bytes, 16 << 20);
    tc_free(r);
    ASSERT_META(st, bid, "csi.requested_bytes", "16777216");
    ASSERT_EQ(jr_close(v), 0);
    st_close(st);
    rg_free(cfg);
    csi_proc_stop(&p);
}

/* Calls racing on one volume id: each gets OK or ABORTED, never a second
 * volume or another error; all OK answers name the same volume. */
struct race {
    struct csi_proc *p;
    int rc;
    char id[200];
    char msg[512];
};

static void *race_create(void *arg)
{
    struct race *r = arg;
    r->rc = tc_create(r->p, "pvc-race", 8 << 20, 0, NULL, NULL, r->id,
                      sizeof(r->id), NULL, r->msg, sizeof(r->msg));
    return NULL;
}

TEST(concurrent_calls_on_one_volume)
{
    struct csi_proc p;
    csi_proc_start(&p, NULL);
    struct race rs[8];
    pthread_t th[8];
    for (int i = 0; i < 8; i++) {
        memset(&rs[i], 0, sizeof(rs[i]));
        rs[i].p = &p;
        ASSERT_EQ(pthread_create(&th[i], NULL, race_create, &rs[i]), 0);
    }
    int ok = 0;
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        if (rs[i].rc == RPC_OK) {
            ok++;
            ASSERT_STREQ(rs[i].id, "pvc-race");
        } else {
            ASSERT_CODE(rs[i].rc, RPC_ABORTED, rs[i].msg);
        }
    }
    ASSERT_GE(ok, 1);
    csi_proc_stop(&p);
}

/* ----------------------------------------------------------- Node: args */

TEST(node_info_and_capabilities)
{
    struct csi_proc p;
    csi_proc_start_ex(&p, NULL, "c", "c1");
    Csi__V1__NodeGetInfoRequest q = CSI__V1__NODE_GET_INFO_REQUEST__INIT;
    Csi__V1__NodeGetInfoResponse *r;
    ASSERT_CODE(tc_call(&p, "/csi.v1.Node/NodeGetInfo", &q.base,
                        &csi__v1__node_get_info_response__descriptor, &r,
                        NULL, 0), RPC_OK, "");
    ASSERT_STREQ(r->node_id, "n1");
    ASSERT_EQ(r->max_volumes_per_node, 64);
    ASSERT(r->accessible_topology != NULL);
    int reg = 0, zone = 0;
    for (size_t i = 0; i < r->accessible_topology->n_segments; i++) {
        Csi__V1__Topology__SegmentsEntry *e = r->accessible_topology->segments[i];
        reg |= !strcmp(e->key, "topology.tandem.csi.dev/region") &&
               !strcmp(e->value, "c");
        zone |= !strcmp(e->key, "topology.tandem.csi.dev/zone") &&
                !strcmp(e->value, "c1");
    }
    ASSERT(reg && zone);
    tc_free(r);
    Csi__V1__NodeGetCapabilitiesRequest cq =
        CSI__V1__NODE_GET_CAPABILITIES_REQUEST__INIT;
    Csi__V1__NodeGetCapabilitiesResponse *cr;
    ASSERT_CODE(tc_call(&p, "/csi.v1.Node/NodeGetCapabilities", &cq.base,
                        &csi__v1__node_get_capabilities_response__descriptor,
                        &cr, NULL, 0), RPC_OK, "");
    unsigned seen = 0;
    for (size_t i = 0; i < cr->n_capabilities; i++)
        seen |= 1u << cr->capabilities[i]->rpc->type;
    ASSERT(seen & (1u << CSI__V1__NODE_SERVICE_CAPABILITY__RPC__TYPE__STAGE_UNSTAGE_VOLUME));
    ASSERT(seen & (1u << CSI__V1__NODE_SERVICE_CAPABILITY__RPC__TYPE__GET_VOLUME_STATS));
    ASSERT(seen & (1u << CSI__V1__NODE_SERVICE_CAPABILITY__RPC__TYPE__EXPAND_VOLUME));
    tc_free(cr);
    csi_proc_stop(&p);
}

TEST(node_argument_errors)
{
    struct csi_proc p;
    char msg[1024], id[200], sp[400], tp[400];
    size_t ml = sizeof(msg);
    csi_proc_start(&p, NULL);
    snprintf(sp, sizeof(sp), "%s/staging", p.dir);
    snprintf(tp, sizeof(tp), "%s/target", p.dir);
    ASSERT_CODE(tc_create(&p, "pvc-node", 8 << 20, 0, NULL, NULL, id,
                          sizeof(id), NULL, msg, ml), RPC_OK, msg);
    /* Stage. */
    ASSERT_CODE(tc_stage(&p, "", sp, 0, TC_SNW, msg, ml),
                RPC_INVALID_ARGUMENT, msg);
    ASSERT_CODE(tc_stage(&p, id, "", 0, TC_SNW, msg, ml),
                RPC_INVALID_ARGUMENT, msg);
    ASSERT_CODE(tc_stage(&p, id, sp, 0, 0, msg, ml), RPC_INVALID_ARGUMENT,
                msg);
    ASSERT_CODE(tc_stage(&p, id, "relative/staging", 0, TC_SNW, msg, ml),
                RPC_INVALID_ARGUMENT, msg);
    ASSERT_CODE(tc_stage(&p, id, "/tmp/../etc", 0, TC_SNW, msg, ml),
                RPC_INVALID_ARGUMENT, msg);
    ASSERT_CODE(tc_stage(&p, "pvc-unknown", sp, 0, TC_SNW, msg, ml),
                RPC_NOT_FOUND, msg);
    ASSERT_CODE(tc_stage(&p, id, sp, 0, TC_MNMW, msg, ml),
                RPC_FAILED_PRECONDITION, msg);

    /* Publish: no staging path (the spec's FAILED_PRECONDITION), not
     * staged, unknown volume, no target, no capability. */
    ASSERT_CODE(tc_publish(&p, id, "", tp, 0, TC_SNW, 0, msg, ml),
                RPC_FAILED_PRECONDITION, msg);
    ASSERT_CODE(tc_publish(&p, id, sp, tp, 0, TC_SNW, 0, msg, ml),
                RPC_FAILED_PRECONDITION, msg);
    ASSERT_CODE(tc_publish(&p, "pvc-unknown", sp, tp, 0, TC_SNW, 0, msg, ml),
                RPC_NOT_FOUND, msg);
    ASSERT_CODE(tc_publish(&p, id, sp, "", 0, TC_SNW, 0, msg, ml),
                RPC_INVALID_ARGUMENT, msg);
    ASSERT_CODE(tc_publish(&p, id, sp, tp, 0, 0, 0, msg, ml),
                RPC_INVALID_ARGUMENT, msg);

    /* Unpublish / unstage: idempotent for known volumes, NOT_FOUND for
     * unknown ones, INVALID_ARGUMENT for missing fields. */
    ASSERT_CODE(tc_unpublish(&p, id, tp, msg, ml), RPC_OK, msg);
    ASSERT_CODE(tc_unpublish(&p, "pvc-unknown", tp, msg, ml), RPC_NOT_FOUND,
                msg);
    ASSERT_CODE(tc_unpublish(&p, "pvc-unknown", "", msg, ml),
                RPC_INVALID_ARGUMENT, msg);
    ASSERT_CODE(tc_unstage(&p, id, sp, msg, ml), RPC_OK, msg);
    ASSERT_CODE(tc_unstage(&p, "pvc-unknown", sp, msg, ml), RPC_NOT_FOUND,
                msg);
    ASSERT_CODE(tc_unstage(&p, "", sp, msg, ml), RPC_INVALID_ARGUMENT, msg);

    /* Stats and expand of a volume that is not here: NOT_FOUND. */
    Csi__V1__NodeGetVolumeStatsResponse *gr;
    ASSERT_CODE(tc_stats(&p, id, tp, &gr, msg, ml), RPC_NOT_FOUND, msg);
    ASSERT_CODE(tc_stats(&p, id, "", &gr, msg, ml), RPC_INVALID_ARGUMENT,
                msg);
    Csi__V1__NodeExpandVolumeRequest eq =
        CSI__V1__NODE_EXPAND_VOLUME_REQUEST__INIT;
    eq.volume_id = id;
    eq.volume_path = tp;
    ASSERT_CODE(tc_try(&p, "/csi.v1.Node/NodeExpandVolume", &eq.base, msg, ml),
                RPC_NOT_FOUND, msg);
    eq.volume_id = "";
    ASSERT_CODE(tc_try(&p, "/csi.v1.Node/NodeExpandVolume", &eq.base, msg, ml),
                RPC_INVALID_ARGUMENT, msg);
    eq.volume_id = id;
    eq.volume_path = "";
    ASSERT_CODE(tc_try(&p, "/csi.v1.Node/NodeExpandVolume", &eq.base, msg, ml),
                RPC_INVALID_ARGUMENT, msg);
    csi_proc_stop(&p);
}

/* A volume that does not exist (or is not on this node) is NOT_FOUND for
 * NodeGetVolumeStats and NodeExpandVolume whatever volume_path looks like:
 * the volume is looked up before the path is judged (csi-sanity sends
 * "some/path").  A missing path stays INVALID_ARGUMENT. */
TEST(node_stats_expand_unknown_volume)
{
    struct csi_proc p;
    char msg[1024], id[200];
    size_t ml = sizeof(msg);
    csi_proc_start(&p, NULL);
    ASSERT_CODE(tc_create(&p, "pvc-here", 8 << 20, 0, NULL, NULL, id,
                          sizeof(id), NULL, msg, ml), RPC_OK, msg);
    const char *paths[] = {"some/path", "/tmp/../etc", "//x", "rel",
                           "/nonexistent/target"};
    const char *ids[] = {"pvc-unknown", "not a valid id!", id};
    Csi__V1__NodeGetVolumeStatsResponse *gr = NULL;
    Csi__V1__NodeExpandVolumeRequest eq =
        CSI__V1__NODE_EXPAND_VOLUME_REQUEST__INIT;
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
        for (size_t k = 0; k < sizeof(paths) / sizeof(paths[0]); k++) {
            ASSERT_CODE(tc_stats(&p, ids[i], paths[k], &gr, msg, ml),
                        RPC_NOT_FOUND, msg);
            ASSERT(strstr(msg, "not staged"));
            eq.volume_id = (char *)ids[i];
            eq.volume_path = (char *)paths[k];
            ASSERT_CODE(tc_try(&p, "/csi.v1.Node/NodeExpandVolume", &eq.base,
                               msg, ml), RPC_NOT_FOUND, msg);
        }
    /* Missing fields are still INVALID_ARGUMENT, volume known or not. */
    ASSERT_CODE(tc_stats(&p, "pvc-unknown", "", &gr, msg, ml),
                RPC_INVALID_ARGUMENT, msg);
    ASSERT_CODE(tc_stats(&p, "", "some/path", &gr, msg, ml),
                RPC_INVALID_ARGUMENT, msg);
    eq.volume_id = "pvc-unknown";
    eq.volume_path = "";
    ASSERT_CODE(tc_try(&p, "/csi.v1.Node/NodeExpandVolume", &eq.base, msg, ml),
                RPC_INVALID_ARGUMENT, msg);
    csi_proc_stop(&p);
}

/* A replica (secondary) may only be staged read-only. */
TEST(node_secondary_is_read_only)
{
    struct csi_proc p;
    char msg[1024], sp[400];
    csi_proc_start(&p, NULL);
    snprintf(sp, sizeof(sp), "%s/staging", p.dir);
    tc_make_replica(&p, "a", "pvc-replica", 8 << 20);
    ASSERT_CODE(tc_stage(&p, "pvc-replica", sp, 0, TC_SNW, msg, sizeof(msg)),
                RPC_FAILED_PRECONDITION, msg);
    ASSERT(strstr(msg, "read-only"));
    /* And the controller neither deletes nor expands it. */
    ASSERT_CODE(tc_delete(&p, "pvc-replica"), RPC_OK, "");
    ASSERT(in_region(&p, "a", "pvc-replica"));
    Csi__V1__ControllerExpandVolumeResponse *r;
    ASSERT_CODE(tc_expand(&p, "pvc-replica", 16 << 20, 0, 0, &r, msg,
                       sizeof(msg)), RPC_FAILED_PRECONDITION, msg);
    csi_proc_stop(&p);
}

/* Fields named secrets reach neither the log nor an answer: CreateVolume,
 * ControllerExpandVolume, NodeStageVolume and DeleteVolume carry one, on
 * success and error paths. */
#define SECRET "s3cr3t-Pa55-never-log-me"

TEST(secrets_never_logged)
{
    struct csi_proc p;
    char msg[1024], sp[400], path[400], line[4096];
    csi_proc_start(&p, NULL);
    snprintf(sp, sizeof(sp), "%s/staging", p.dir);
    struct tc_cap cap;
    tc_cap(&cap, 0, TC_SNW, NULL);

    Csi__V1__CreateVolumeRequest cq = CSI__V1__CREATE_VOLUME_REQUEST__INIT;
    Csi__V1__CreateVolumeRequest__SecretsEntry ce =
        CSI__V1__CREATE_VOLUME_REQUEST__SECRETS_ENTRY__INIT;
    Csi__V1__CreateVolumeRequest__SecretsEntry *cep = &ce;
    ce.key = "password";
    ce.value = SECRET;
    cq.n_secrets = 1;
    cq.secrets = &cep;
    cq.n_volume_capabilities = 1;
    cq.volume_capabilities = &cap.pc;
    cq.name = "pvc-secret";
    ASSERT_CODE(tc_try(&p, "/csi.v1.Controller/CreateVolume", &cq.base, msg,
                       sizeof(msg)), RPC_OK, msg);
    ASSERT(!strstr(msg, SECRET));
    cq.name = ""; /* error path */
    ASSERT_CODE(tc_try(&p, "/csi.v1.Controller/CreateVolume", &cq.base, msg,
                       sizeof(msg)), RPC_INVALID_ARGUMENT, msg);
    ASSERT(!strstr(msg, SECRET));

    Csi__V1__ControllerExpandVolumeRequest xq =
        CSI__V1__CONTROLLER_EXPAND_VOLUME_REQUEST__INIT;
    Csi__V1__ControllerExpandVolumeRequest__SecretsEntry xe =
        CSI__V1__CONTROLLER_EXPAND_VOLUME_REQUEST__SECRETS_ENTRY__INIT;
    Csi__V1__ControllerExpandVolumeRequest__SecretsEntry *xep = &xe;
    Csi__V1__CapacityRange cr = CSI__V1__CAPACITY_RANGE__INIT;
    xe.key = "password";
    xe.value = SECRET;
    xq.n_secrets = 1;
    xq.secrets = &xep;
    xq.volume_id = "pvc-secret";
    cr.required_bytes = 2ll << 30;
    xq.capacity_range = &cr;
    ASSERT_CODE(tc_try(&p, "/csi.v1.Controller/ControllerExpandVolume",
                       &xq.base, msg, sizeof(msg)), RPC_OK, msg);

    Csi__V1__NodeStageVolumeRequest sq =
        CSI__V1__NODE_STAGE_VOLUME_REQUEST__INIT;
    Csi__V1__NodeStageVolumeRequest__SecretsEntry se =
        CSI__V1__NODE_STAGE_VOLUME_REQUEST__SECRETS_ENTRY__INIT;
    Csi__V1__NodeStageVolumeRequest__SecretsEntry *sep = &se;
    se.key = "password";
    se.value = SECRET;
    sq.n_secrets = 1;
    sq.secrets = &sep;
    sq.volume_id = "pvc-unknown";
    sq.staging_target_path = sp;
    sq.volume_capability = cap.pc;
    ASSERT_CODE(tc_try(&p, "/csi.v1.Node/NodeStageVolume", &sq.base, msg,
                       sizeof(msg)), RPC_NOT_FOUND, msg);
    ASSERT(!strstr(msg, SECRET));

    Csi__V1__DeleteVolumeRequest dq = CSI__V1__DELETE_VOLUME_REQUEST__INIT;
    Csi__V1__DeleteVolumeRequest__SecretsEntry de =
        CSI__V1__DELETE_VOLUME_REQUEST__SECRETS_ENTRY__INIT;
    Csi__V1__DeleteVolumeRequest__SecretsEntry *dep = &de;
    de.key = "password";
    de.value = SECRET;
    dq.n_secrets = 1;
    dq.secrets = &dep;
    dq.volume_id = "pvc-secret";
    ASSERT_CODE(tc_try(&p, "/csi.v1.Controller/DeleteVolume", &dq.base, msg,
                       sizeof(msg)), RPC_OK, msg);

    /* The log has the volume's events, and no secret. */
    snprintf(path, sizeof(path), "%s/csi.log", p.dir);
    FILE *f = fopen(path, "r");
    ASSERT(f != NULL);
    int events = 0;
    while (fgets(line, sizeof(line), f)) {
        if (strstr(line, SECRET)) TT_FAIL("secret logged: %s", line);
        events += strstr(line, "vol=pvc-secret") != NULL;
    }
    fclose(f);
    ASSERT_GE(events, 3); /* created, expanded, deleted */
    csi_proc_stop(&p);
}

/* Every byte the server cannot decode gets INVALID_ARGUMENT, and the
 * plugin keeps serving. */
TEST(garbage_requests)
{
    struct csi_proc p;
    char msg[512];
    csi_proc_start(&p, NULL);
    static const unsigned char junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x08};
    void *resp = NULL;
    size_t rlen = 0;
    int rc = rpc_client_call_raw(p.cli, "/csi.v1.Controller/CreateVolume",
                                 junk, sizeof(junk), &resp, &rlen, 5000, msg,
                                 sizeof(msg));
    free(resp);
    ASSERT_CODE(rc, RPC_INVALID_ARGUMENT, msg);
    ASSERT_CODE(tc_delete(&p, "pvc-x"), RPC_OK, "");
    csi_proc_stop(&p);
}

/* ------------------------------------------------------------ Snapshots */

#define MiB (1 << 20)

/* CreateSnapshot / ListSnapshots / DeleteSnapshot: idempotence by name,
 * the label, every error code of the spec's tables, paging. */
TEST(snapshots)
{
    struct csi_proc p;
    char msg[1024], id[JR_MAX_ID + 1], id2[JR_MAX_ID + 1];
    char sid[256], token[256] = "";
    Csi__V1__CreateSnapshotResponse *r, *r2;
    Csi__V1__ListSnapshotsResponse *l;
    csi_proc_start(&p, NULL);
    ASSERT_CODE(tc_create(&p, "pvc-snap-a", 8 * MiB, 0, NULL, NULL, id,
                          sizeof(id), NULL, msg, sizeof(msg)), RPC_OK, msg);
    ASSERT_CODE(tc_create(&p, "pvc-snap-b", 8 * MiB, 0, NULL, NULL, id2,
                          sizeof(id2), NULL, msg, sizeof(msg)), RPC_OK, msg);
    tc_fill(&p, "a", id, 0, MiB, 7);

    /* Argument errors: INVALID_ARGUMENT; unknown source: NOT_FOUND. */
    ASSERT_CODE(tc_snap(&p, "", id, NULL, NULL, NULL, NULL, msg, sizeof(msg)),
                RPC_INVALID_ARGUMENT, msg);
    ASSERT_CODE(tc_snap(&p, "snapshot-1", "", NULL, NULL, NULL, NULL, msg,
                        sizeof(msg)), RPC_INVALID_ARGUMENT, msg);
    ASSERT_CODE(tc_snap(&p, "snapshot-1", "pvc-nowhere", NULL, NULL, NULL,
                        NULL, msg, sizeof(msg)), RPC_NOT_FOUND, msg);
    ASSERT_CODE(tc_snap(&p, "snapshot-1", "../x", NULL, NULL, NULL, NULL, msg,
                        sizeof(msg)), RPC_NOT_FOUND, msg);

    ASSERT_CODE(tc_snap(&p, "snapshot-1", id, "ns1", "vs-one", "snapcontent-1",
                        &r, msg, sizeof(msg)), RPC_OK, msg);
    snprintf(sid, sizeof(sid), "%s@snapshot-1", id);
    ASSERT_STREQ(r->snapshot->snapshot_id, sid);
    ASSERT_STREQ(r->snapshot->source_volume_id, id);
    ASSERT(r->snapshot->ready_to_use);
    ASSERT_EQ(r->snapshot->size_bytes, 8 * MiB);
    ASSERT(r->snapshot->creation_time &&
           r->snapshot->creation_time->seconds > 1600000000);
    /* The label carries the VolumeSnapshot's names (csi.h's form). */
    struct rg_config *cfg;
    st_store *st = tc_region_store(&p, "a", &cfg);
    struct jr_snap js;
    ASSERT_EQ(jr_snap_get(st, id, "snapshot-1", &js), 0);
    ASSERT_STREQ(js.label, "namespace=ns1 name=vs-one content=snapcontent-1");

    /* A retry: the same snapshot, the same creation time. */
    ASSERT_CODE(tc_snap(&p, "snapshot-1", id, "ns1", "vs-one",
                        "snapcontent-1", &r2, msg, sizeof(msg)), RPC_OK, msg);
    ASSERT_STREQ(r2->snapshot->snapshot_id, sid);
    ASSERT_EQ(r2->snapshot->creation_time->seconds,
              r->snapshot->creation_time->seconds);
    ASSERT_EQ(r2->snapshot->creation_time->nanos,
              r->snapshot->creation_time->nanos);
    tc_free(r2);
    tc_free(r);
    /* The same name for another volume: ALREADY_EXISTS. */
    ASSERT_CODE(tc_snap(&p, "snapshot-1", id2, NULL, NULL, NULL, NULL, msg,
                        sizeof(msg)), RPC_ALREADY_EXISTS, msg);
    /* A name that is no snap id is hashed; its retry finds it. */
    ASSERT_CODE(tc_snap(&p, "my snap/2.x", id, NULL, NULL, NULL, &r, msg,
                        sizeof(msg)), RPC_OK, msg);
    ASSERT(strstr(r->snapshot->snapshot_id, "@h-"));
    char hsid[256];
    snprintf(hsid, sizeof(hsid), "%s", r->snapshot->snapshot_id);
    tc_free(r);
    ASSERT_CODE(tc_snap(&p, "my snap/2.x", id, NULL, NULL, NULL, &r, msg,
                        sizeof(msg)), RPC_OK, msg);
    ASSERT_STREQ(r->snapshot->snapshot_id, hsid);
    tc_free(r);
    /* A label that does not fit: INVALID_ARGUMENT. */
    char big[400];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    ASSERT_CODE(tc_snap(&p, "snapshot-big", id, "ns", big, big, NULL, msg,
                        sizeof(msg)), RPC_INVALID_ARGUMENT, msg);
    ASSERT_CODE(tc_snap(&p, "snapshot-b1", id2, NULL, NULL, NULL, NULL, msg,
                        sizeof(msg)), RPC_OK, msg);

    /* ListSnapshots: all (3, sorted by id), by id, by volume. */
    ASSERT_CODE(tc_snap_list(&p, NULL, NULL, 0, NULL, &l, msg, sizeof(msg)),
                RPC_OK, msg);
    ASSERT_EQ(l->n_entries, 3);
    for (size_t i = 1; i < l->n_entries; i++)
        ASSERT(strcmp(l->entries[i - 1]->snapshot->snapshot_id,
                      l->entries[i]->snapshot->snapshot_id) < 0);
    for (size_t i = 0; i < l->n_entries; i++)
        ASSERT(l->entries[i]->snapshot->ready_to_use);
    tc_free(l);
    ASSERT_CODE(tc_snap_list(&p, sid, NULL, 0, NULL, &l, msg, sizeof(msg)),
                RPC_OK, msg);
    ASSERT_EQ(l->n_entries, 1);
    ASSERT_STREQ(l->entries[0]->snapshot->snapshot_id, sid);
    ASSERT_STREQ(l->entries[0]->snapshot->source_volume_id, id);
    tc_free(l);
    ASSERT_CODE(tc_snap_list(&p, NULL, id, 0, NULL, &l, msg, sizeof(msg)),
                RPC_OK, msg);
    ASSERT_EQ(l->n_entries, 2);
    tc_free(l);
    /* Unknown ones list nothing (not an error). */
    ASSERT_CODE(tc_snap_list(&p, "pvc-snap-a@nope", NULL, 0, NULL, &l, msg,
                             sizeof(msg)), RPC_OK, msg);
    ASSERT_EQ(l->n_entries, 0);
    tc_free(l);
    ASSERT_CODE(tc_snap_list(&p, "garbage", NULL, 0, NULL, &l, msg,
                             sizeof(msg)), RPC_OK, msg);
    ASSERT_EQ(l->n_entries, 0);
    tc_free(l);
    ASSERT_CODE(tc_snap_list(&p, sid, id2, 0, NULL, &l, msg, sizeof(msg)),
                RPC_OK, msg);
    ASSERT_EQ(l->n_entries, 0);
    tc_free(l);
    ASSERT_CODE(tc_snap_list(&p, NULL, "pvc-nowhere", 0, NULL, &l, msg,
                             sizeof(msg)), RPC_OK, msg);
    ASSERT_EQ(l->n_entries, 0);
    tc_free(l);
    /* Paging: one at a time, each once, in order. */
    int pages = 0, seen = 0;
    char prev[256] = "";
    do {
        ASSERT_CODE(tc_snap_list(&p, NULL, NULL, 1, token, &l, msg,
                                 sizeof(msg)), RPC_OK, msg);
        ASSERT_LE(l->n_entries, 1);
        if (l->n_entries) {
            ASSERT(strcmp(prev, l->entries[0]->snapshot->snapshot_id) < 0);
            snprintf(prev, sizeof(prev), "%s",
                     l->entries[0]->snapshot->snapshot_id);
            seen++;
        }
        snprintf(token, sizeof(token), "%s", l->next_token);
        tc_free(l);
        pages++;
    } while (token[0] && pages < 10);
    ASSERT_EQ(seen, 3);
    ASSERT_EQ(pages, 3);
    /* Bad token: ABORTED; negative max: INVALID_ARGUMENT. */
    ASSERT_CODE(tc_snap_list(&p, NULL, NULL, 1, "garbage", &l, msg,
                             sizeof(msg)), RPC_ABORTED, msg);
    ASSERT_CODE(tc_snap_list(&p, NULL, NULL, 1, "after:x@y@z", &l, msg,
                             sizeof(msg)), RPC_ABORTED, msg);
    ASSERT_CODE(tc_snap_list(&p, NULL, NULL, -1, NULL, &l, msg, sizeof(msg)),
                RPC_INVALID_ARGUMENT, msg);

    /* DeleteSnapshot: OK, again OK, unknown and foreign ids OK, empty
     * INVALID_ARGUMENT. */
    ASSERT_CODE(tc_snap_delete(&p, sid, msg, sizeof(msg)), RPC_OK, msg);
    ASSERT_EQ(jr_snap_get(st, id, "snapshot-1", &js), -ENOENT);
    ASSERT_CODE(tc_snap_delete(&p, sid, msg, sizeof(msg)), RPC_OK, msg);
    ASSERT_CODE(tc_snap_delete(&p, "pvc-nowhere@s", msg, sizeof(msg)),
                RPC_OK, msg);
    ASSERT_CODE(tc_snap_delete(&p, "not-ours", msg, sizeof(msg)), RPC_OK,
                msg);
    ASSERT_CODE(tc_snap_delete(&p, "", msg, sizeof(msg)),
                RPC_INVALID_ARGUMENT, msg);
    ASSERT_CODE(tc_snap_list(&p, NULL, id, 0, NULL, &l, msg, sizeof(msg)),
                RPC_OK, msg);
    ASSERT_EQ(l->n_entries, 1);
    tc_free(l);

    /* A replica: snapshots are taken at the primary. */
    tc_make_replica(&p, "b", "pvc-snap-rep", 8 * MiB);
    ASSERT_CODE(tc_snap(&p, "snapshot-r", "pvc-snap-rep", NULL, NULL, NULL,
                        NULL, msg, sizeof(msg)), RPC_FAILED_PRECONDITION,
                msg);
    /* A volume with snapshots is not deleted (they live in it): the
     * spec's FAILED_PRECONDITION, the volume untouched; once they are
     * gone it is. */
    {
        Csi__V1__DeleteVolumeRequest dq = CSI__V1__DELETE_VOLUME_REQUEST__INIT;
        dq.volume_id = id2;
        ASSERT_CODE(tc_try(&p, "/csi.v1.Controller/DeleteVolume", &dq.base,
                           msg, sizeof(msg)), RPC_FAILED_PRECONDITION, msg);
        ASSERT(strstr(msg, "snapshot-b1"));
    }
    ASSERT(in_region(&p, "a", id2));
    snprintf(sid, sizeof(sid), "%s@snapshot-b1", id2);
    ASSERT_CODE(tc_snap_list(&p, sid, NULL, 0, NULL, &l, msg, sizeof(msg)),
                RPC_OK, msg);
    ASSERT_EQ(l->n_entries, 1);
    tc_free(l);
    ASSERT_CODE(tc_snap_delete(&p, sid, msg, sizeof(msg)), RPC_OK, msg);
    ASSERT_CODE(tc_delete(&p, id2), RPC_OK, "");
    ASSERT(!in_region(&p, "a", id2));
    st_close(st);
    rg_free(cfg);
    csi_proc_stop(&p);
}

/* Restores and clones: the data, the size, the content source echoed,
 * idempotence, and the errors (NOT_FOUND, OUT_OF_RANGE,
 * RESOURCE_EXHAUSTED, ALREADY_EXISTS). */
TEST(clones)
{
    struct csi_proc p;
    char msg[1024], id[JR_MAX_ID + 1], sid[256], sid2[256];
    Csi__V1__CreateSnapshotResponse *sr;
    Csi__V1__CreateVolumeResponse *cr;
    Csi__V1__ListSnapshotsResponse *l;
    csi_proc_start(&p, NULL);
    struct tc_params pb = {0};
    tc_param(&pb, "region", "b");
    ASSERT_CODE(tc_create(&p, "pvc-src", 12 * MiB, 0, &pb, NULL, id,
                          sizeof(id), NULL, msg, sizeof(msg)), RPC_OK, msg);
    /* Data in objects 0 and 2 (4 MiB objects); object 1 stays empty. */
    tc_fill(&p, "b", id, 0, MiB, 1);
    tc_fill(&p, "b", id, 9 * MiB, MiB, 2);
    ASSERT_CODE(tc_snap(&p, "snapshot-src", id, NULL, NULL, NULL, &sr, msg,
                        sizeof(msg)), RPC_OK, msg);
    snprintf(sid, sizeof(sid), "%s", sr->snapshot->snapshot_id);
    tc_free(sr);
    /* Written after the snapshot: not in it. */
    tc_fill(&p, "b", id, 0, MiB, 3);

    /* Restore, larger than the source: honoured, in the source's region,
     * the source echoed. */
    ASSERT_CODE(tc_create_from(&p, "pvc-restore", 1, sid, 20 * MiB, 0, NULL,
                               NULL, &cr, msg, sizeof(msg)), RPC_OK, msg);
    ASSERT_EQ(cr->volume->capacity_bytes, 20 * MiB);
    ASSERT_STREQ(tc_vol_region(cr->volume), "b");
    ASSERT(cr->volume->content_source != NULL);
    ASSERT_EQ(cr->volume->content_source->type_case,
              CSI__V1__VOLUME_CONTENT_SOURCE__TYPE_SNAPSHOT);
    ASSERT_STREQ(cr->volume->content_source->snapshot->snapshot_id, sid);
    tc_free(cr);
    ASSERT(tc_check(&p, "b", "pvc-restore", 0, MiB, 1));
    ASSERT(tc_check(&p, "b", "pvc-restore", 4 * MiB, 4 * MiB, -1));
    ASSERT(tc_check(&p, "b", "pvc-restore", 9 * MiB, MiB, 2));
    ASSERT(tc_check(&p, "b", "pvc-restore", 12 * MiB, 8 * MiB, -1));
    /* Only objects holding data were written: object 1 has none. */
    {
        struct rg_config *cfg;
        st_store *st = tc_region_store(&p, "b", &cfg);
        uint64_t osz = 0;
        ASSERT_EQ(st_stat(st, "vol/pvc-restore/d/0000000000000001", &osz, NULL),
                  -ENOENT);
        ASSERT_EQ(st_stat(st, "vol/pvc-restore/d/0000000000000000", &osz, NULL), 0);
        /* The clone is complete: no pending mark. */
        char *v = NULL;
        ASSERT_EQ(jr_meta_get(st, "pvc-restore", "csi.clone_pending", &v),
                  -ENOENT);
        ASSERT_META(st, "pvc-restore", "csi.content_source",
                    (snprintf(msg, sizeof(msg), "snapshot:%s", sid), msg));
        st_close(st);
        rg_free(cfg);
    }
    /* A retry: the same volume. */
    ASSERT_CODE(tc_create_from(&p, "pvc-restore", 1, sid, 20 * MiB, 0, NULL,
                               NULL, &cr, msg, sizeof(msg)), RPC_OK, msg);
    ASSERT_STREQ(cr->volume->volume_id, "pvc-restore");
    ASSERT(cr->volume->content_source != NULL);
    tc_free(cr);
    /* The same name with another source, or none: ALREADY_EXISTS. */
    ASSERT_CODE(tc_create_from(&p, "pvc-restore", 0, id, 20 * MiB, 0, NULL,
                               NULL, NULL, msg, sizeof(msg)),
                RPC_ALREADY_EXISTS, msg);
    ASSERT_CODE(tc_create(&p, "pvc-restore", 20 * MiB, 0, &pb, NULL, NULL, 0,
                          NULL, msg, sizeof(msg)), RPC_ALREADY_EXISTS, msg);
    ASSERT_CODE(tc_create_from(&p, "pvc-src", 1, sid, 12 * MiB, 0, NULL,
                               NULL, NULL, msg, sizeof(msg)),
                RPC_ALREADY_EXISTS, msg);
    /* No capacity_range: the source's size. */
    ASSERT_CODE(tc_create_from(&p, "pvc-restore2", 1, sid, 0, 0, NULL, NULL,
                               &cr, msg, sizeof(msg)), RPC_OK, msg);
    ASSERT_EQ(cr->volume->capacity_bytes, 12 * MiB);
    tc_free(cr);
    /* Another filesystem than the source's: INVALID_ARGUMENT. */
    struct tc_params pxfs = {0};
    tc_param(&pxfs, "fsType", "xfs");
    ASSERT_CODE(tc_create_from(&p, "pvc-xfs", 1, sid, 0, 0, &pxfs, NULL,
                               NULL, msg, sizeof(msg)), RPC_INVALID_ARGUMENT,
                msg);
    ASSERT(strstr(msg, "ext4"));
    /* A limit below the source: OUT_OF_RANGE. */
    ASSERT_CODE(tc_create_from(&p, "pvc-small", 1, sid, 4 * MiB, 8 * MiB,
                               NULL, NULL, NULL, msg, sizeof(msg)),
                RPC_OUT_OF_RANGE, msg);
    /* Missing sources: NOT_FOUND. */
    snprintf(sid2, sizeof(sid2), "%s@no-such-snap", id);
    ASSERT_CODE(tc_create_from(&p, "pvc-x1", 1, sid2, 0, 0, NULL, NULL, NULL,
                               msg, sizeof(msg)), RPC_NOT_FOUND, msg);
    ASSERT_CODE(tc_create_from(&p, "pvc-x2", 1, "pvc-none@s", 0, 0, NULL,
                               NULL, NULL, msg, sizeof(msg)), RPC_NOT_FOUND,
                msg);
    ASSERT_CODE(tc_create_from(&p, "pvc-x3", 1, "garbage", 0, 0, NULL, NULL,
                               NULL, msg, sizeof(msg)), RPC_NOT_FOUND, msg);
    ASSERT_CODE(tc_create_from(&p, "pvc-x4", 0, "pvc-none", 0, 0, NULL, NULL,
                               NULL, msg, sizeof(msg)), RPC_NOT_FOUND, msg);
    ASSERT(!in_region(&p, "a", "pvc-x1") && !in_region(&p, "b", "pvc-x1"));
    /* The source in region b, the topology asks for a only:
     * RESOURCE_EXHAUSTED, naming the region; b allowed: lands there. */
    struct tc_topo ta = {0}, tab = {0};
    Csi__V1__TopologyRequirement tr;
    tc_seg(&ta, "a", NULL);
    ASSERT_CODE(tc_create_from(&p, "pvc-x5", 1, sid, 0, 0, NULL,
                               tc_topo_req(&tr, &ta, &ta), NULL, msg,
                               sizeof(msg)), RPC_RESOURCE_EXHAUSTED, msg);
    ASSERT(strstr(msg, "region b"));
    tc_seg(&tab, "a", NULL);
    tc_seg(&tab, "b", NULL);
    ASSERT_CODE(tc_create_from(&p, "pvc-x6", 1, sid, 0, 0, NULL,
                               tc_topo_req(&tr, &tab, &ta), &cr, msg,
                               sizeof(msg)), RPC_OK, msg);
    ASSERT_STREQ(tc_vol_region(cr->volume), "b");
    tc_free(cr);
    struct tc_params pa = {0};
    tc_param(&pa, "region", "a");
    ASSERT_CODE(tc_create_from(&p, "pvc-x7", 1, sid, 0, 0, &pa, NULL, NULL,
                               msg, sizeof(msg)), RPC_RESOURCE_EXHAUSTED, msg);

    /* A replicated restore is written through its journal (the replicator
     * ships journal entries, never image writes): the data is in entries
     * there, and reads back the same. */
    struct tc_params prep = {0};
    tc_param(&prep, "replication", "async");
    tc_param(&prep, "peerRegion", "a");
    ASSERT_CODE(tc_create_from(&p, "pvc-restore-rep", 1, sid, 0, 0, &prep,
                               NULL, NULL, msg, sizeof(msg)), RPC_OK, msg);
    {
        struct jr_info rin;
        ASSERT_EQ(tc_stat_in(&p, "b", "pvc-restore-rep", &rin), 0);
        ASSERT(rin.head >= 2); /* two 4 MiB chunks held data */
        ASSERT(tc_check(&p, "b", "pvc-restore-rep", 0, MiB, 1));
        ASSERT(tc_check(&p, "b", "pvc-restore-rep", 9 * MiB, MiB, 2));
    }
    /* Clone of a volume: its current data, through a temporary snapshot
     * that is gone afterwards. */
    ASSERT_CODE(tc_create_from(&p, "pvc-clone", 0, id, 0, 0, NULL, NULL, &cr,
                               msg, sizeof(msg)), RPC_OK, msg);
    ASSERT_EQ(cr->volume->content_source->type_case,
              CSI__V1__VOLUME_CONTENT_SOURCE__TYPE_VOLUME);
    ASSERT_STREQ(cr->volume->content_source->volume->volume_id, id);
    ASSERT_EQ(cr->volume->capacity_bytes, 12 * MiB);
    tc_free(cr);
    ASSERT(tc_check(&p, "b", "pvc-clone", 0, MiB, 3));
    ASSERT(tc_check(&p, "b", "pvc-clone", 9 * MiB, MiB, 2));
    ASSERT_CODE(tc_snap_list(&p, NULL, id, 0, NULL, &l, msg, sizeof(msg)),
                RPC_OK, msg);
    ASSERT_EQ(l->n_entries, 1);
    ASSERT_STREQ(l->entries[0]->snapshot->snapshot_id, sid);
    tc_free(l);
    /* The clone and the restore are independent: the source snapshot and
     * volume go, they stay. */
    ASSERT_CODE(tc_snap_delete(&p, sid, msg, sizeof(msg)), RPC_OK, msg);
    ASSERT_CODE(tc_delete(&p, id), RPC_OK, "");
    ASSERT(tc_check(&p, "b", "pvc-clone", 0, MiB, 3));
    ASSERT(tc_check(&p, "b", "pvc-restore", 0, MiB, 1));
    csi_proc_stop(&p);
}

/* A clone whose copy did not finish (the controller died mid-copy, made
 * here directly in the store as it leaves it): its snapshot cannot be
 * deleted (FAILED_PRECONDITION), it cannot be staged, ControllerGetVolume
 * calls it abnormal, and the provisioner's retry finishes it. */
TEST(clone_pending)
{
    struct csi_proc p;
    char msg[1024], id[JR_MAX_ID + 1], sid[256], from[300];
    Csi__V1__CreateSnapshotResponse *sr;
    Csi__V1__ControllerGetVolumeResponse *gr;
    csi_proc_start(&p, NULL);
    ASSERT_CODE(tc_create(&p, "pvc-psrc", 8 * MiB, 0, NULL, NULL, id,
                          sizeof(id), NULL, msg, sizeof(msg)), RPC_OK, msg);
    tc_fill(&p, "a", id, 5 * MiB, MiB, 9);
    ASSERT_CODE(tc_snap(&p, "snapshot-p", id, NULL, NULL, NULL, &sr, msg,
                        sizeof(msg)), RPC_OK, msg);
    snprintf(sid, sizeof(sid), "%s", sr->snapshot->snapshot_id);
    tc_free(sr);
    struct rg_config *cfg;
    st_store *st = tc_region_store(&p, "a", &cfg);
    snprintf(from, sizeof(from), "snapshot:%s", sid);
    struct jr_kv meta[] = {{"csi.name", "pvc-pend"},
                           {"csi.access_type", "mount"},
                           {"csi.replication", "none"},
                           {"csi.fs_type", "ext4"},
                           {"csi.content_source", from},
                           {"csi.clone_pending", sid}};
    struct jr_create_opts co = {.size = 8 * MiB, .role = JR_ROLE_PRIMARY,
                                .region = "a", .meta = meta,
                                .n_meta = sizeof(meta) / sizeof(meta[0])};
    ASSERT_EQ(jr_volume_create(st, "pvc-pend", &co), 0);
    ASSERT_EQ(jr_snap_hold(st, id, "snapshot-p", "pvc-pend"), 0);

    ASSERT_CODE(tc_snap_delete(&p, sid, msg, sizeof(msg)),
                RPC_FAILED_PRECONDITION, msg);
    ASSERT(strstr(msg, "pvc-pend"));
    ASSERT_CODE(tc_stage(&p, "pvc-pend", "/tmp/tandem-no-stage-here", 0,
                         TC_SNW, msg, sizeof(msg)), RPC_FAILED_PRECONDITION,
                msg);
    /* Neither a snapshot nor a clone of a half-copied volume. */
    ASSERT_CODE(tc_snap(&p, "snapshot-of-pending", "pvc-pend", NULL, NULL,
                        NULL, NULL, msg, sizeof(msg)), RPC_UNAVAILABLE, msg);
    ASSERT_CODE(tc_create_from(&p, "pvc-of-pending", 0, "pvc-pend", 0, 0,
                               NULL, NULL, NULL, msg, sizeof(msg)),
                RPC_UNAVAILABLE, msg);
    ASSERT_CODE(tc_get_volume(&p, "pvc-pend", &gr, msg, sizeof(msg)), RPC_OK,
                msg);
    ASSERT(gr->status->volume_condition->abnormal);
    ASSERT(strstr(gr->status->volume_condition->message, "clone"));
    tc_free(gr);
    /* The retry finishes it: data in, mark and hold gone. */
    ASSERT_CODE(tc_create_from(&p, "pvc-pend", 1, sid, 8 * MiB, 0, NULL,
                               NULL, NULL, msg, sizeof(msg)), RPC_OK, msg);
    char *v = NULL;
    ASSERT_EQ(jr_meta_get(st, "pvc-pend", "csi.clone_pending", &v), -ENOENT);
    ASSERT(tc_check(&p, "a", "pvc-pend", 5 * MiB, MiB, 9));
    ASSERT_CODE(tc_get_volume(&p, "pvc-pend", &gr, msg, sizeof(msg)), RPC_OK,
                msg);
    ASSERT(!gr->status->volume_condition->abnormal);
    tc_free(gr);
    ASSERT_CODE(tc_snap_delete(&p, sid, msg, sizeof(msg)), RPC_OK, msg);

    /* Deleting a pending clone frees its snapshot. */
    ASSERT_CODE(tc_snap(&p, "snapshot-q", id, NULL, NULL, NULL, &sr, msg,
                        sizeof(msg)), RPC_OK, msg);
    snprintf(sid, sizeof(sid), "%s", sr->snapshot->snapshot_id);
    tc_free(sr);
    meta[0].value = "pvc-pend2";
    meta[5].value = sid;
    ASSERT_EQ(jr_volume_create(st, "pvc-pend2", &co), 0);
    ASSERT_EQ(jr_snap_hold(st, id, "snapshot-q", "pvc-pend2"), 0);
    ASSERT_CODE(tc_snap_delete(&p, sid, msg, sizeof(msg)),
                RPC_FAILED_PRECONDITION, msg);
    ASSERT_CODE(tc_delete(&p, "pvc-pend2"), RPC_OK, "");
    ASSERT_CODE(tc_snap_delete(&p, sid, msg, sizeof(msg)), RPC_OK, msg);
    st_close(st);
    rg_free(cfg);
    csi_proc_stop(&p);
}

/* The volume's writer died holding the lease (a node crash): its lease
 * stays, so the snapshot request is never taken by it.  CreateSnapshot
 * and DeleteSnapshot still work: the plugin sees the lease unrenewed for
 * its TTL (shortened here through the journal's test hook), fences that
 * writer and journals the entry itself.  A live writer is never fenced:
 * that is the t0240 script (a staged volume). */
TEST(snapshot_after_writer_crash)
{
    struct csi_proc p;
    char msg[1024], id[JR_MAX_ID + 1], sid[256];
    Csi__V1__CreateSnapshotResponse *sr;
    setenv("TANDEM_JR_LEASE_TTL_MS", "2000", 1);
    csi_proc_start(&p, NULL);
    ASSERT_CODE(tc_create(&p, "pvc-crashed", 8 * MiB, 0, NULL, NULL, id,
                          sizeof(id), NULL, msg, sizeof(msg)), RPC_OK, msg);
    tc_fill(&p, "a", id, 0, MiB, 4);
    pid_t w = fork();
    ASSERT(w >= 0);
    if (w == 0) {
        struct rg_config *cfg;
        st_store *st = tc_region_store(&p, "a", &cfg);
        jr_volume *v = NULL;
        if (jr_open(st, id, JR_OPEN_WRITE, "crashing-writer", &v) < 0)
            _exit(1);
        raise(SIGKILL); /* the lease stays behind */
        _exit(2);
    }
    int ws = 0;
    ASSERT_EQ(waitpid(w, &ws, 0), w);
    ASSERT(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL);
    ASSERT_CODE(tc_snap(&p, "snapshot-c", id, NULL, NULL, NULL, &sr, msg,
                        sizeof(msg)), RPC_OK, msg);
    snprintf(sid, sizeof(sid), "%s", sr->snapshot->snapshot_id);
    ASSERT(sr->snapshot->ready_to_use);
    tc_free(sr);
    ASSERT_CODE(tc_create_from(&p, "pvc-crashed-r", 1, sid, 0, 0, NULL, NULL,
                               NULL, msg, sizeof(msg)), RPC_OK, msg);
    ASSERT(tc_check(&p, "a", "pvc-crashed-r", 0, MiB, 4));
    ASSERT_CODE(tc_snap_delete(&p, sid, msg, sizeof(msg)), RPC_OK, msg);
    ASSERT_CODE(tc_delete(&p, id), RPC_OK, "");
    csi_proc_stop(&p);
    unsetenv("TANDEM_JR_LEASE_TTL_MS");
}

/* ControllerGetVolume: NOT_FOUND, INVALID_ARGUMENT, and the conditions
 * an operator must act on (replicator health key, journal over its
 * cap). */
TEST(get_volume_health)
{
    struct csi_proc p;
    char msg[1024], id[JR_MAX_ID + 1], h[256];
    Csi__V1__ControllerGetVolumeResponse *gr;
    csi_proc_start(&p, NULL);
    ASSERT_CODE(tc_get_volume(&p, "", &gr, msg, sizeof(msg)),
                RPC_INVALID_ARGUMENT, msg);
    ASSERT_CODE(tc_get_volume(&p, "pvc-none", &gr, msg, sizeof(msg)),
                RPC_NOT_FOUND, msg);
    ASSERT_CODE(tc_get_volume(&p, "../x", &gr, msg, sizeof(msg)),
                RPC_NOT_FOUND, msg);
    ASSERT_CODE(tc_create(&p, "pvc-health", 8 * MiB, 0, NULL, NULL, id,
                          sizeof(id), NULL, msg, sizeof(msg)), RPC_OK, msg);
    ASSERT_CODE(tc_get_volume(&p, id, &gr, msg, sizeof(msg)), RPC_OK, msg);
    ASSERT_STREQ(gr->volume->volume_id, id);
    ASSERT_EQ(gr->volume->capacity_bytes, 8 * MiB);
    ASSERT_STREQ(tc_vol_region(gr->volume), "a");
    ASSERT(gr->status && gr->status->volume_condition);
    ASSERT(!gr->status->volume_condition->abnormal);
    tc_free(gr);

    struct rg_config *cfg;
    st_store *st = tc_region_store(&p, "a", &cfg);
    long now = (long)time(NULL);
    struct {
        const char *state;
        long ago;
        int abnormal;
        const char *word;
    } cases[] = {
        {"split-brain", 0, 1, "split brain"},
        {"link-down", 5, 0, "link-down"},   /* below the 60 s default */
        {"link-down", 600, 1, "down for"},
        {"copying", 600, 0, "copying"},
        {"ok", 600, 0, "ok"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(h, sizeof(h), "%s %ld b peer said: %s", cases[i].state,
                 now - cases[i].ago, cases[i].state);
        ASSERT_EQ(jr_meta_set(st, id, "rep.health", h), 0);
        ASSERT_CODE(tc_get_volume(&p, id, &gr, msg, sizeof(msg)), RPC_OK,
                    msg);
        if (gr->status->volume_condition->abnormal != cases[i].abnormal ||
            !strstr(gr->status->volume_condition->message, cases[i].word))
            TT_FAIL("rep.health \"%s\": abnormal=%d \"%s\"", h,
                    gr->status->volume_condition->abnormal,
                    gr->status->volume_condition->message);
        tc_free(gr);
    }
    ASSERT_EQ(jr_meta_rm(st, id, "rep.health"), 0);

    /* A journal over its cap (the peer has not taken it): abnormal for a
     * replicated volume, says the peer needs a region copy; normal for
     * one that does not replicate (it reaches its cap by being
     * written). */
    struct jr_kv meta[] = {{"csi.name", "pvc-capped"},
                           {"csi.replication", "async"},
                           {"csi.peer_region", "b"}};
    struct jr_create_opts co = {.size = 16 * MiB, .role = JR_ROLE_PRIMARY,
                                .region = "a", .meta = meta, .n_meta = 3,
                                .journal_cap = MiB};
    ASSERT_EQ(jr_volume_create(st, "pvc-capped", &co), 0);
    /* 12 MiB of incompressible writes: three 4 MiB journal objects, far
     * over the cap. */
    {
        jr_volume *v = NULL;
        uint8_t *b = malloc(12 * MiB);
        ASSERT(b != NULL);
        uint64_t x = 88172645463325252ull;
        for (size_t i = 0; i < 12 * MiB; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            b[i] = (uint8_t)x;
        }
        ASSERT_EQ(jr_open(st, "pvc-capped", JR_OPEN_WRITE, "test", &v), 0);
        ASSERT_EQ(jr_write(v, 0, b, 12 * MiB), 0);
        ASSERT_EQ(jr_close(v), 0);
        free(b);
    }
    ASSERT_EQ(jr_trim(st, "pvc-capped"), 0);
    struct jr_info in;
    ASSERT_EQ(jr_volume_stat(st, "pvc-capped", &in), 0);
    ASSERT(in.dirty_tracking);
    ASSERT_CODE(tc_get_volume(&p, "pvc-capped", &gr, msg, sizeof(msg)),
                RPC_OK, msg);
    ASSERT(gr->status->volume_condition->abnormal);
    ASSERT(strstr(gr->status->volume_condition->message, "region copy"));
    tc_free(gr);
    ASSERT_EQ(jr_meta_set(st, "pvc-capped", "csi.replication", "none"), 0);
    ASSERT_CODE(tc_get_volume(&p, "pvc-capped", &gr, msg, sizeof(msg)),
                RPC_OK, msg);
    ASSERT(!gr->status->volume_condition->abnormal);
    tc_free(gr);
    st_close(st);
    rg_free(cfg);
    csi_proc_stop(&p);
}

TT_MAIN()
