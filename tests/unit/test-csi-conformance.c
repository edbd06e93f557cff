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

    /* Snapshot RPCs are not served. */
    Csi__V1__CreateSnapshotRequest sq = CSI__V1__CREATE_SNAPSHOT_REQUEST__INIT;
    ASSERT_CODE(tc_try(&p, "/csi.v1.Controller/CreateSnapshot", &sq.base,
                       NULL, 0), RPC_UNIMPLEMENTED, "");
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
    /* No snapshots, clones or ControllerPublish: not announced. */
    ASSERT(!(seen & (1u << CSI__V1__CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__CREATE_DELETE_SNAPSHOT)));
    ASSERT(!(seen & (1u << CSI__V1__CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__CLONE_VOLUME)));
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
    /* Clone/snapshot source: not supported. */
    Csi__V1__VolumeContentSource src = CSI__V1__VOLUME_CONTENT_SOURCE__INIT;
    Csi__V1__VolumeContentSource__VolumeSource vs =
        CSI__V1__VOLUME_CONTENT_SOURCE__VOLUME_SOURCE__INIT;
    vs.volume_id = "other";
    src.type_case = CSI__V1__VOLUME_CONTENT_SOURCE__TYPE_VOLUME;
    src.volume = &vs;
    tc_cap(&cap, 0, TC_SNW, NULL);
    rq.volume_content_source = &src;
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

TT_MAIN()
