/*
 * test-csi-addons: the CSI-Addons services (csi/csi_addons.h) over their
 * real unix socket, in process (so ASan sees the handlers): a
 * csi_service on sqlite regions a and b, the addons served by the rpc
 * layer, and a scripted stand-in for the region replicator's admin API
 * (its own rpc server on a unix socket) whose answers each test sets, so
 * that the mapping of every admin outcome to the csi-addons status codes,
 * the background resync and the replication info figures are checked
 * exactly.  Enable/Disable are checked on the store itself.  (The real
 * replicator behind it: tests/e2e/t0360-csi-addons.sh.)
 */
#include <pthread.h>
#include <sys/stat.h>

#include "tt.h"

#include "csi-addons/identity.pb-c.h"
#include "csi-addons/replication.pb-c.h"
#include "csi-addons/volumegroup.pb-c.h"
#include "csi/csi.h"
#include "csi/csi_addons.h"
#include "jr.h"
#include "regions.h"
#include "replicator/rep.h"
#include "rpc.h"
#include "tandem_admin.pb-c.h"

/* ------------------------------------------------ scripted admin API */

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int code;                 /* answer code of the next calls */
    char msg[256];
    int calls;                /* admin calls received */
    int last_force;           /* Promote's force */
    int gate_closed;          /* Resync/Demote wait while set */
    int waiting;              /* handlers waiting at the gate */
    Tandem__Admin__V1__VolumeStatus vs; /* Status answer (strings static) */
    int64_t now_ms;
} adm = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER};

static int adm_begin(rpc_ctx *ctx)
{
    pthread_mutex_lock(&adm.mu);
    adm.calls++;
    const char *m = rpc_ctx_method(ctx);
    if (strstr(m, "/Resync") || strstr(m, "/Demote")) {
        adm.waiting++;
        pthread_cond_broadcast(&adm.cv);
        while (adm.gate_closed) pthread_cond_wait(&adm.cv, &adm.mu);
        adm.waiting--;
    }
    int code = adm.code;
    char msg[sizeof(adm.msg)];
    memcpy(msg, adm.msg, sizeof(msg));
    pthread_mutex_unlock(&adm.mu);
    if (code != RPC_OK) return rpc_ctx_error(ctx, code, "%s", msg);
    return RPC_OK;
}

static int adm_promote(void *svc, rpc_ctx *ctx, const ProtobufCMessage *req,
                       ProtobufCMessage **resp)
{
    pthread_mutex_lock(&adm.mu);
    adm.last_force = ((const Tandem__Admin__V1__PromoteRequest *)req)->force;
    pthread_mutex_unlock(&adm.mu);
    return adm_begin(ctx);
}

static int adm_plain(void *svc, rpc_ctx *ctx, const ProtobufCMessage *req,
                     ProtobufCMessage **resp)
{
    return adm_begin(ctx);
}

static char *sd(const char *s) { return strdup(s ? s : ""); }

static int adm_status(void *svc, rpc_ctx *ctx, const ProtobufCMessage *req,
                      ProtobufCMessage **resp)
{
    int code = adm_begin(ctx);
    if (code) return code;
    Tandem__Admin__V1__StatusResponse *r = calloc(1, sizeof(*r));
    tandem__admin__v1__status_response__init(r);
    r->volumes = calloc(1, sizeof(*r->volumes));
    Tandem__Admin__V1__VolumeStatus *v = malloc(sizeof(*v));
    pthread_mutex_lock(&adm.mu);
    r->now_unix_ms = adm.now_ms;
    *v = adm.vs;
    v->volume_id = sd(adm.vs.volume_id);
    v->peer_region = sd(adm.vs.peer_region);
    v->state = sd(adm.vs.state);
    v->link_state = sd(adm.vs.link_state);
    v->last_error = sd(adm.vs.last_error);
    v->region = sd("a");
    v->role = sd("primary");
    v->replication = sd("async");
    pthread_mutex_unlock(&adm.mu);
    r->volumes[0] = v;
    r->n_volumes = 1;
    *resp = &r->base;
    return RPC_OK;
}

#define AM(name, req, resp, fn)                                               \
    {"/tandem.admin.v1.Admin/" name, &tandem__admin__v1__##req##__descriptor, \
     &tandem__admin__v1__##resp##__descriptor, fn}
static const struct rpc_method adm_methods[] = {
    AM("Status", status_request, status_response, adm_status),
    AM("Promote", promote_request, promote_response, adm_promote),
    AM("Demote", demote_request, demote_response, adm_plain),
    AM("Resync", resync_request, resync_response, adm_plain),
};

static void adm_script(int code, const char *msg)
{
    pthread_mutex_lock(&adm.mu);
    adm.code = code;
    snprintf(adm.msg, sizeof(adm.msg), "%s", msg ? msg : "");
    pthread_mutex_unlock(&adm.mu);
}

static int adm_calls(void)
{
    pthread_mutex_lock(&adm.mu);
    int n = adm.calls;
    pthread_mutex_unlock(&adm.mu);
    return n;
}

static void adm_gate(int closed)
{
    pthread_mutex_lock(&adm.mu);
    adm.gate_closed = closed;
    pthread_cond_broadcast(&adm.cv);
    pthread_mutex_unlock(&adm.mu);
}

/* Wait (for the event) until a handler waits at the gate. */
static void adm_wait_gated(void)
{
    pthread_mutex_lock(&adm.mu);
    while (!adm.waiting) pthread_cond_wait(&adm.cv, &adm.mu);
    pthread_mutex_unlock(&adm.mu);
}

/* ---------------------------------------------------------- fixture */

struct fx {
    char dir[256];
    char cfg[320];
    struct rg_config *rc;
    st_store *st;             /* region a's store, for set-up and checks */
    csi_service *svc;
    csi_addons *ad;
    rpc_server *srv, *asrv;
    rpc_client *cli;
};

static void fx_start(struct fx *f)
{
    char err[512], addr[400], aaddr[400];
    const char *tmp = getenv("TANDEM_TEST_TMP");
    memset(f, 0, sizeof(*f));
    adm_script(RPC_OK, "");
    snprintf(f->dir, sizeof(f->dir), "%s/addons.XXXXXX",
             tmp && tmp[0] ? tmp : "/tmp");
    ASSERT(mkdtemp(f->dir) != NULL);
    snprintf(f->cfg, sizeof(f->cfg), "%s/regions.conf", f->dir);
    FILE *fp = fopen(f->cfg, "w");
    ASSERT(fp != NULL);
    fprintf(fp, "[tandem]\ndefault_region = a\n"
            "[region a]\nbackend = sqlite\ndb_path = %s/a.db\n"
            "[region b]\nbackend = sqlite\ndb_path = %s/b.db\n",
            f->dir, f->dir);
    fclose(fp);
    ASSERT_OK(rg_load(f->cfg, &f->rc, err, sizeof(err)));
    ASSERT_OK(rg_open_store(rg_find(f->rc, "a"), &f->st));

    snprintf(aaddr, sizeof(aaddr), "unix://%s/adm.sock", f->dir);
    struct rpc_server_opts ao = {.methods = adm_methods,
                                 .n_methods = sizeof(adm_methods) /
                                              sizeof(adm_methods[0])};
    ASSERT_OK(rpc_server_create(&ao, &f->asrv));
    ASSERT_GE(rpc_server_listen(f->asrv, aaddr, NULL), 0);
    ASSERT_OK(rpc_server_start(f->asrv));

    struct csi_opts o = {.mode = CSI_MODE_CONTROLLER, .config_path = f->cfg,
                         .region = "a"};
    ASSERT_OK(csi_service_create(&o, &f->svc, err, sizeof(err)));
    struct csi_addons_opts co = {.admin_addr = aaddr,
                                 .admin_timeout_ms = 5000};
    ASSERT_OK(csi_addons_create(f->svc, &co, &f->ad, err, sizeof(err)));
    size_t n;
    const struct rpc_method *m = csi_addons_methods(&n);
    struct rpc_server_opts so = {.methods = m, .n_methods = n, .svc = f->ad};
    snprintf(addr, sizeof(addr), "unix://%s/addons.sock", f->dir);
    ASSERT_OK(rpc_server_create(&so, &f->srv));
    ASSERT_GE(rpc_server_listen(f->srv, addr, NULL), 0);
    ASSERT_OK(rpc_server_start(f->srv));
    ASSERT_OK(rpc_client_create(addr, NULL, &f->cli));
}

static void fx_stop(struct fx *f)
{
    char cmd[400];
    adm_gate(0);
    rpc_client_destroy(f->cli);
    rpc_server_destroy(f->srv, 1000);
    csi_addons_destroy(f->ad);
    csi_service_destroy(f->svc);
    rpc_server_destroy(f->asrv, 1000);
    st_close(f->st);
    rg_free(f->rc);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    if (system(cmd)) {}
}

/* A volume in region a (role, replicated to b or not). */
static void mkvol(struct fx *f, const char *id, int role, int replicated)
{
    struct jr_kv kv[2] = {{REP_META_REPLICATION, "async"},
                          {REP_META_PEER_REGION, "b"}};
    struct jr_create_opts o = {.size = 4 << 20, .object_size = 1 << 20,
                               .role = role, .epoch = 1, .region = "a",
                               .meta = kv, .n_meta = replicated ? 2 : 0};
    ASSERT_OK(jr_volume_create(f->st, id, &o));
}

static char *meta(struct fx *f, const char *id, const char *key)
{
    static char buf[256];
    char *v = NULL;
    if (jr_meta_get(f->st, id, key, &v) < 0) return NULL;
    snprintf(buf, sizeof(buf), "%s", v);
    free(v);
    return buf;
}

/* ------------------------------------------------------------ calls */

/* Per thread: a test's background call has its own. */
static __thread Replication__ReplicationSource__VolumeSource g_vs;
static __thread Replication__ReplicationSource__VolumeGroupSource g_gs;
static __thread Replication__ReplicationSource g_src;

/* A source naming volume id; id NULL: a volume group; "" empty id. */
static Replication__ReplicationSource *src(const char *id)
{
    replication__replication_source__init(&g_src);
    if (!id) {
        replication__replication_source__volume_group_source__init(&g_gs);
        g_gs.volume_group_id = "g1";
        g_src.type_case = REPLICATION__REPLICATION_SOURCE__TYPE_VOLUMEGROUP;
        g_src.volumegroup = &g_gs;
    } else {
        replication__replication_source__volume_source__init(&g_vs);
        g_vs.volume_id = (char *)id;
        g_src.type_case = REPLICATION__REPLICATION_SOURCE__TYPE_VOLUME;
        g_src.volume = &g_vs;
    }
    return &g_src;
}

static int call(struct fx *f, const char *method, ProtobufCMessage *req,
                const ProtobufCMessageDescriptor *rd, ProtobufCMessage **resp,
                char *msg, size_t ml)
{
    char path[128];
    ProtobufCMessage *r = NULL;
    snprintf(path, sizeof(path), "%s%s",
             strstr("GetIdentity GetCapabilities Probe", method)
                 ? "/identity.Identity/" : "/replication.Controller/",
             method);
    int code = rpc_client_call(f->cli, path, req, rd, &r, 15000, 1, msg, ml);
    if (resp) *resp = r;
    else if (r) protobuf_c_message_free_unpacked(r, NULL);
    return code;
}

/* The one-volume calls by name, with source s (params only for Enable). */
static int vcall(struct fx *f, const char *method,
                 Replication__ReplicationSource *s, int force,
                 const char *pk, const char *pv, ProtobufCMessage **resp,
                 char *msg, size_t ml)
{
    if (!strcmp(method, "EnableVolumeReplication")) {
        Replication__EnableVolumeReplicationRequest q =
            REPLICATION__ENABLE_VOLUME_REPLICATION_REQUEST__INIT;
        Replication__EnableVolumeReplicationRequest__ParametersEntry e =
            REPLICATION__ENABLE_VOLUME_REPLICATION_REQUEST__PARAMETERS_ENTRY__INIT;
        Replication__EnableVolumeReplicationRequest__ParametersEntry *ep = &e;
        if (pk) {
            e.key = (char *)pk;
            e.value = (char *)pv;
            q.parameters = &ep;
            q.n_parameters = 1;
        }
        q.replication_source = s;
        return call(f, method, &q.base,
                    &replication__enable_volume_replication_response__descriptor,
                    resp, msg, ml);
    }
    if (!strcmp(method, "DisableVolumeReplication")) {
        Replication__DisableVolumeReplicationRequest q =
            REPLICATION__DISABLE_VOLUME_REPLICATION_REQUEST__INIT;
        q.replication_source = s;
        return call(f, method, &q.base,
                    &replication__disable_volume_replication_response__descriptor,
                    resp, msg, ml);
    }
    if (!strcmp(method, "PromoteVolume")) {
        Replication__PromoteVolumeRequest q =
            REPLICATION__PROMOTE_VOLUME_REQUEST__INIT;
        q.replication_source = s;
        q.force = force;
        return call(f, method, &q.base,
                    &replication__promote_volume_response__descriptor, resp,
                    msg, ml);
    }
    if (!strcmp(method, "DemoteVolume")) {
        Replication__DemoteVolumeRequest q =
            REPLICATION__DEMOTE_VOLUME_REQUEST__INIT;
        q.replication_source = s;
        return call(f, method, &q.base,
                    &replication__demote_volume_response__descriptor, resp,
                    msg, ml);
    }
    if (!strcmp(method, "ResyncVolume")) {
        Replication__ResyncVolumeRequest q =
            REPLICATION__RESYNC_VOLUME_REQUEST__INIT;
        q.replication_source = s;
        return call(f, method, &q.base,
                    &replication__resync_volume_response__descriptor, resp,
                    msg, ml);
    }
    if (!strcmp(method, "GetVolumeReplicationInfo")) {
        Replication__GetVolumeReplicationInfoRequest q =
            REPLICATION__GET_VOLUME_REPLICATION_INFO_REQUEST__INIT;
        q.replication_source = s;
        return call(f, method, &q.base,
                    &replication__get_volume_replication_info_response__descriptor,
                    resp, msg, ml);
    }
    Replication__GetReplicationDestinationInfoRequest q =
        REPLICATION__GET_REPLICATION_DESTINATION_INFO_REQUEST__INIT;
    q.replication_source = s;
    return call(f, "GetReplicationDestinationInfo", &q.base,
                &replication__get_replication_destination_info_response__descriptor,
                resp, msg, ml);
}

#define CODE(got, want)                                                       \
    do {                                                                      \
        int g_ = (got), w_ = (want);                                          \
        if (g_ != w_)                                                         \
            TT_FAIL("%s: got %s (%s), want %s", #got, rpc_code_name(g_), msg, \
                    rpc_code_name(w_));                                       \
    } while (0)

static const char *const ALL[] = {
    "EnableVolumeReplication", "DisableVolumeReplication", "PromoteVolume",
    "DemoteVolume", "ResyncVolume", "GetVolumeReplicationInfo",
    "GetReplicationDestinationInfo"};

/* ------------------------------------------------------------ tests */

TEST(identity)
{
    struct fx f;
    char msg[256];
    ProtobufCMessage *r = NULL;
    fx_start(&f);
    Identity__GetIdentityRequest gi = IDENTITY__GET_IDENTITY_REQUEST__INIT;
    CODE(call(&f, "GetIdentity", &gi.base,
              &identity__get_identity_response__descriptor, &r, msg,
              sizeof(msg)), RPC_OK);
    Identity__GetIdentityResponse *id = (void *)r;
    ASSERT_STREQ(id->name, CSI_DEFAULT_DRIVER);
    ASSERT_STREQ(id->vendor_version, CSI_VERSION);
    protobuf_c_message_free_unpacked(r, NULL);
    Identity__GetCapabilitiesRequest gc = IDENTITY__GET_CAPABILITIES_REQUEST__INIT;
    CODE(call(&f, "GetCapabilities", &gc.base,
              &identity__get_capabilities_response__descriptor, &r, msg,
              sizeof(msg)), RPC_OK);
    Identity__GetCapabilitiesResponse *c = (void *)r;
    int svc = 0, vr = 0, dest = 0;
    ASSERT_EQ(c->n_capabilities, 8); /* + 5 of volume groups */
    for (size_t i = 0; i < c->n_capabilities; i++) {
        Identity__Capability *k = c->capabilities[i];
        if (k->type_case == IDENTITY__CAPABILITY__TYPE_SERVICE &&
            k->service->type == IDENTITY__CAPABILITY__SERVICE__TYPE__CONTROLLER_SERVICE)
            svc++;
        if (k->type_case == IDENTITY__CAPABILITY__TYPE_VOLUME_REPLICATION &&
            k->volume_replication->type ==
                IDENTITY__CAPABILITY__VOLUME_REPLICATION__TYPE__VOLUME_REPLICATION)
            vr++;
        if (k->type_case == IDENTITY__CAPABILITY__TYPE_VOLUME_REPLICATION &&
            k->volume_replication->type ==
                IDENTITY__CAPABILITY__VOLUME_REPLICATION__TYPE__GET_REPLICATION_DESTINATION_INFO)
            dest++;
    }
    ASSERT(svc == 1 && vr == 1 && dest == 1);
    int vgc = 0;
    for (size_t i = 0; i < c->n_capabilities; i++)
        vgc += c->capabilities[i]->type_case ==
               IDENTITY__CAPABILITY__TYPE_VOLUME_GROUP;
    ASSERT_EQ(vgc, 5);
    protobuf_c_message_free_unpacked(r, NULL);
    Identity__ProbeRequest pq = IDENTITY__PROBE_REQUEST__INIT;
    CODE(call(&f, "Probe", &pq.base, &identity__probe_response__descriptor,
              &r, msg, sizeof(msg)), RPC_OK);
    Identity__ProbeResponse *p = (void *)r;
    ASSERT(p->ready && p->ready->value);
    protobuf_c_message_free_unpacked(r, NULL);
    /* Nothing of the node or the other CSI-Addons services. */
    CODE(call(&f, "x", &pq.base, &identity__probe_response__descriptor, NULL,
              msg, sizeof(msg)), RPC_UNIMPLEMENTED);
    fx_stop(&f);
}

TEST(request_errors)
{
    struct fx f;
    char msg[256];
    fx_start(&f);
    mkvol(&f, "v1", JR_ROLE_PRIMARY, 0);
    for (size_t i = 0; i < sizeof(ALL) / sizeof(ALL[0]); i++) {
        int en = !strncmp(ALL[i], "Enable", 6), dis = !strncmp(ALL[i], "Disable", 7);
        CODE(vcall(&f, ALL[i], NULL, 0, NULL, NULL, NULL, msg, sizeof(msg)),
             RPC_INVALID_ARGUMENT);
        CODE(vcall(&f, ALL[i], src(""), 0, NULL, NULL, NULL, msg, sizeof(msg)),
             RPC_INVALID_ARGUMENT);
        CODE(vcall(&f, ALL[i], src(NULL), 0, NULL, NULL, NULL, msg,
                   sizeof(msg)),
             en || dis ? RPC_INVALID_ARGUMENT : RPC_UNIMPLEMENTED);
        CODE(vcall(&f, ALL[i], src("nope"), 0, NULL, NULL, NULL, msg,
                   sizeof(msg)), RPC_NOT_FOUND);
        CODE(vcall(&f, ALL[i], src("../bad id"), 0, NULL, NULL, NULL, msg,
                   sizeof(msg)), RPC_NOT_FOUND);
        if (!en && !dis)
            CODE(vcall(&f, ALL[i], src("v1"), 0, NULL, NULL, NULL, msg,
                       sizeof(msg)), RPC_FAILED_PRECONDITION);
    }
    CODE(vcall(&f, "EnableVolumeReplication", src("v1"), 0, "mirroringMode",
               "snapshot", NULL, msg, sizeof(msg)), RPC_INVALID_ARGUMENT);
    ASSERT(strstr(msg, "mirroringMode"));
    CODE(vcall(&f, "EnableVolumeReplication", src("v1"), 0, "peerRegion", "a",
               NULL, msg, sizeof(msg)), RPC_INVALID_ARGUMENT);
    CODE(vcall(&f, "EnableVolumeReplication", src("v1"), 0, "color", "red",
               NULL, msg, sizeof(msg)), RPC_INVALID_ARGUMENT);
    ASSERT(meta(&f, "v1", REP_META_REPLICATION) == NULL);
    /* Undecodable bytes: INVALID_ARGUMENT, and the service goes on. */
    static const unsigned char junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
    void *rb = NULL;
    size_t rl = 0;
    CODE(rpc_client_call_raw(f.cli, "/replication.Controller/PromoteVolume",
                             junk, sizeof(junk), &rb, &rl, 5000, msg,
                             sizeof(msg)), RPC_INVALID_ARGUMENT);
    free(rb);
    ASSERT_EQ(adm_calls(), 0); /* nothing reached the replicator */
    fx_stop(&f);
}

/* volumegroup.Controller: a volume group is a consistency group. */
static int vgcall(struct fx *f, const char *method, ProtobufCMessage *req,
                  const ProtobufCMessageDescriptor *rd, ProtobufCMessage **resp,
                  char *msg, size_t ml)
{
    char path[128];
    ProtobufCMessage *r = NULL;
    snprintf(path, sizeof(path), "/volumegroup.Controller/%s", method);
    int code = rpc_client_call(f->cli, path, req, rd, &r, 15000, 1, msg, ml);
    if (resp) *resp = r;
    else if (r) protobuf_c_message_free_unpacked(r, NULL);
    return code;
}

TEST(volume_groups)
{
    struct fx f;
    char msg[256], g[JR_MAX_GROUP_ID + 1];
    ProtobufCMessage *r = NULL;
    uint32_t idx;
    fx_start(&f);
    mkvol(&f, "d1", JR_ROLE_PRIMARY, 1);
    mkvol(&f, "d2", JR_ROLE_PRIMARY, 1);
    mkvol(&f, "d3", JR_ROLE_PRIMARY, 1);
    mkvol(&f, "r1", JR_ROLE_SECONDARY, 1);
    char *two[] = {"d1", "d2"};
    Volumegroup__CreateVolumeGroupRequest cq =
        VOLUMEGROUP__CREATE_VOLUME_GROUP_REQUEST__INIT;
    /* name missing */
    CODE(vgcall(&f, "CreateVolumeGroup", &cq.base,
                &volumegroup__create_volume_group_response__descriptor, NULL,
                msg, sizeof msg), RPC_INVALID_ARGUMENT);
    cq.name = "db";
    cq.volume_ids = two;
    cq.n_volume_ids = 2;
    for (int k = 0; k < 2; k++) { /* a repeat is OK */
        CODE(vgcall(&f, "CreateVolumeGroup", &cq.base,
                    &volumegroup__create_volume_group_response__descriptor, &r,
                    msg, sizeof msg), RPC_OK);
        Volumegroup__CreateVolumeGroupResponse *cr = (void *)r;
        ASSERT_STREQ(cr->volume_group->volume_group_id, "db");
        ASSERT_EQ(cr->volume_group->n_volumes, 2);
        protobuf_c_message_free_unpacked(r, NULL);
    }
    ASSERT_OK(jr_group_of(f.st, "d1", g, sizeof g, &idx));
    ASSERT_STREQ(g, "db");
    /* the same name with other volumes: ALREADY_EXISTS */
    cq.n_volume_ids = 1;
    CODE(vgcall(&f, "CreateVolumeGroup", &cq.base,
                &volumegroup__create_volume_group_response__descriptor, NULL,
                msg, sizeof msg), RPC_ALREADY_EXISTS);
    /* a volume of another group, a replica, an unknown volume */
    char *bad1[] = {"d1"}, *bad2[] = {"r1"}, *bad3[] = {"nope"};
    cq.name = "other";
    cq.volume_ids = bad1;
    CODE(vgcall(&f, "CreateVolumeGroup", &cq.base,
                &volumegroup__create_volume_group_response__descriptor, NULL,
                msg, sizeof msg), RPC_FAILED_PRECONDITION);
    cq.volume_ids = bad2;
    CODE(vgcall(&f, "CreateVolumeGroup", &cq.base,
                &volumegroup__create_volume_group_response__descriptor, NULL,
                msg, sizeof msg), RPC_FAILED_PRECONDITION);
    cq.volume_ids = bad3;
    CODE(vgcall(&f, "CreateVolumeGroup", &cq.base,
                &volumegroup__create_volume_group_response__descriptor, NULL,
                msg, sizeof msg), RPC_NOT_FOUND);
    /* a name that is no group id is hashed */
    cq.name = "ns/my.group";
    cq.n_volume_ids = 0;
    CODE(vgcall(&f, "CreateVolumeGroup", &cq.base,
                &volumegroup__create_volume_group_response__descriptor, &r,
                msg, sizeof msg), RPC_OK);
    Volumegroup__CreateVolumeGroupResponse *hr = (void *)r;
    ASSERT(!strncmp(hr->volume_group->volume_group_id, "vg-", 3));
    ASSERT_EQ(strlen(hr->volume_group->volume_group_id), 43u);
    char hashed[64];
    snprintf(hashed, sizeof hashed, "%s", hr->volume_group->volume_group_id);
    protobuf_c_message_free_unpacked(r, NULL);
    /* Modify: d2 out, d3 in; twice */
    char *mod[] = {"d1", "d3"};
    Volumegroup__ModifyVolumeGroupMembershipRequest mq =
        VOLUMEGROUP__MODIFY_VOLUME_GROUP_MEMBERSHIP_REQUEST__INIT;
    mq.volume_group_id = "db";
    mq.volume_ids = mod;
    mq.n_volume_ids = 2;
    for (int k = 0; k < 2; k++)
        CODE(vgcall(&f, "ModifyVolumeGroupMembership", &mq.base,
                    &volumegroup__modify_volume_group_membership_response__descriptor,
                    NULL, msg, sizeof msg), RPC_OK);
    ASSERT_EQ(jr_group_of(f.st, "d2", g, sizeof g, &idx), -ENOENT);
    ASSERT_OK(jr_group_of(f.st, "d3", g, sizeof g, &idx));
    mq.volume_group_id = "nogroup";
    CODE(vgcall(&f, "ModifyVolumeGroupMembership", &mq.base,
                &volumegroup__modify_volume_group_membership_response__descriptor,
                NULL, msg, sizeof msg), RPC_NOT_FOUND);
    mq.volume_group_id = hashed; /* d1 is in db: incompatible */
    CODE(vgcall(&f, "ModifyVolumeGroupMembership", &mq.base,
                &volumegroup__modify_volume_group_membership_response__descriptor,
                NULL, msg, sizeof msg), RPC_INVALID_ARGUMENT);
    /* Get */
    Volumegroup__ControllerGetVolumeGroupRequest gq =
        VOLUMEGROUP__CONTROLLER_GET_VOLUME_GROUP_REQUEST__INIT;
    gq.volume_group_id = "db";
    CODE(vgcall(&f, "ControllerGetVolumeGroup", &gq.base,
                &volumegroup__controller_get_volume_group_response__descriptor,
                &r, msg, sizeof msg), RPC_OK);
    Volumegroup__ControllerGetVolumeGroupResponse *gr = (void *)r;
    ASSERT_EQ(gr->volume_group->n_volumes, 2);
    ASSERT_EQ(gr->volume_group->volumes[0]->capacity_bytes, 4 << 20);
    protobuf_c_message_free_unpacked(r, NULL);
    gq.volume_group_id = "nogroup";
    CODE(vgcall(&f, "ControllerGetVolumeGroup", &gq.base,
                &volumegroup__controller_get_volume_group_response__descriptor,
                NULL, msg, sizeof msg), RPC_NOT_FOUND);
    /* List, one per page */
    Volumegroup__ListVolumeGroupsRequest lq =
        VOLUMEGROUP__LIST_VOLUME_GROUPS_REQUEST__INIT;
    lq.max_entries = 1;
    int seen = 0;
    char tok[32] = "";
    do {
        lq.starting_token = tok;
        CODE(vgcall(&f, "ListVolumeGroups", &lq.base,
                    &volumegroup__list_volume_groups_response__descriptor, &r,
                    msg, sizeof msg), RPC_OK);
        Volumegroup__ListVolumeGroupsResponse *lr = (void *)r;
        seen += (int)lr->n_entries;
        snprintf(tok, sizeof tok, "%s", lr->next_token);
        protobuf_c_message_free_unpacked(r, NULL);
    } while (tok[0] && seen < 10);
    ASSERT_EQ(seen, 2);
    lq.starting_token = "x9";
    CODE(vgcall(&f, "ListVolumeGroups", &lq.base,
                &volumegroup__list_volume_groups_response__descriptor, NULL,
                msg, sizeof msg), RPC_ABORTED);
    /* Delete: disbands, keeps the volumes; twice */
    Volumegroup__DeleteVolumeGroupRequest dq =
        VOLUMEGROUP__DELETE_VOLUME_GROUP_REQUEST__INIT;
    dq.volume_group_id = "db";
    for (int k = 0; k < 2; k++)
        CODE(vgcall(&f, "DeleteVolumeGroup", &dq.base,
                    &volumegroup__delete_volume_group_response__descriptor,
                    NULL, msg, sizeof msg), RPC_OK);
    ASSERT_EQ(jr_group_of(f.st, "d1", g, sizeof g, &idx), -ENOENT);
    ASSERT_OK(jr_volume_stat(f.st, "d1", &(struct jr_info){0}));
    gq.volume_group_id = "db";
    CODE(vgcall(&f, "ControllerGetVolumeGroup", &gq.base,
                &volumegroup__controller_get_volume_group_response__descriptor,
                NULL, msg, sizeof msg), RPC_NOT_FOUND);
    fx_stop(&f);
}

TEST(enable_disable_on_the_store)
{
    struct fx f;
    char msg[256];
    struct jr_tomb t;
    uint64_t ack = 0;
    fx_start(&f);
    mkvol(&f, "v1", JR_ROLE_PRIMARY, 0);
    for (int k = 0; k < 2; k++)
        CODE(vcall(&f, "EnableVolumeReplication", src("v1"), 0,
                   "schedulingInterval", "1m", NULL, msg, sizeof(msg)),
             RPC_OK);
    ASSERT_STREQ(meta(&f, "v1", REP_META_REPLICATION), "async");
    ASSERT_STREQ(meta(&f, "v1", REP_META_PEER_REGION), "b");
    ProtobufCMessage *r = NULL;
    CODE(vcall(&f, "GetReplicationDestinationInfo", src("v1"), 0, NULL, NULL,
               &r, msg, sizeof(msg)), RPC_OK);
    Replication__GetReplicationDestinationInfoResponse *d = (void *)r;
    ASSERT(d->replication_destination &&
           d->replication_destination->type_case ==
               REPLICATION__REPLICATION_DESTINATION__TYPE_VOLUME);
    ASSERT_STREQ(d->replication_destination->volume->volume_id, "v1");
    protobuf_c_message_free_unpacked(r, NULL);
    /* As if the replicator had shipped: the peer acknowledged 5. */
    ASSERT_OK(jr_peer_ack_set(f.st, "v1", "b", 5));
    for (int k = 0; k < 2; k++)
        CODE(vcall(&f, "DisableVolumeReplication", src("v1"), 0, NULL, NULL,
                   NULL, msg, sizeof(msg)), RPC_OK);
    ASSERT_STREQ(meta(&f, "v1", REP_META_REPLICATION), "none");
    ASSERT(meta(&f, "v1", REP_META_PEER_REGION) == NULL);
    ASSERT_EQ(jr_peer_ack_get(f.st, "v1", "b", &ack), -ENOENT);
    ASSERT_OK(jr_tomb_get(f.st, "v1", &t)); /* the replica is to go */
    ASSERT_EQ(t.n_peers, 1);
    ASSERT_STREQ(t.peers[0], "b");
    ASSERT_OK(jr_volume_stat(f.st, "v1", &(struct jr_info){0}));
    CODE(vcall(&f, "GetReplicationDestinationInfo", src("v1"), 0, NULL, NULL,
               NULL, msg, sizeof(msg)), RPC_FAILED_PRECONDITION);
    /* A stale ack (a sender that raced with the disable) is released by
     * the next enable: the new replica never starts from it. */
    ASSERT_OK(jr_tomb_remove(f.st, "v1"));
    ASSERT_OK(jr_peer_ack_set(f.st, "v1", "b", 7));
    CODE(vcall(&f, "EnableVolumeReplication", src("v1"), 0, "peerRegion", "b",
               NULL, msg, sizeof(msg)), RPC_OK);
    ASSERT_EQ(jr_peer_ack_get(f.st, "v1", "b", &ack), -ENOENT);
    ASSERT_STREQ(meta(&f, "v1", REP_META_REPLICATION), "async");
    /* A replica: enable is OK (it is replicated), disable is not its
     * region's to do. */
    mkvol(&f, "v2", JR_ROLE_SECONDARY, 1);
    CODE(vcall(&f, "EnableVolumeReplication", src("v2"), 0, NULL, NULL, NULL,
               msg, sizeof(msg)), RPC_OK);
    CODE(vcall(&f, "DisableVolumeReplication", src("v2"), 0, NULL, NULL,
               NULL, msg, sizeof(msg)), RPC_FAILED_PRECONDITION);
    ASSERT_STREQ(meta(&f, "v2", REP_META_REPLICATION), "async");
    ASSERT_EQ(adm_calls(), 0);
    fx_stop(&f);
}

TEST(promote_demote_through_the_admin_api)
{
    struct fx f;
    char msg[256];
    fx_start(&f);
    mkvol(&f, "v1", JR_ROLE_PRIMARY, 1);
    /* A primary: OK without asking the replicator, forced or not. */
    CODE(vcall(&f, "PromoteVolume", src("v1"), 0, NULL, NULL, NULL, msg,
               sizeof(msg)), RPC_OK);
    CODE(vcall(&f, "PromoteVolume", src("v1"), 1, NULL, NULL, NULL, msg,
               sizeof(msg)), RPC_OK);
    ASSERT_EQ(adm_calls(), 0);
    /* Demote: the replicator's answer, mapped. */
    CODE(vcall(&f, "DemoteVolume", src("v1"), 0, NULL, NULL, NULL, msg,
               sizeof(msg)), RPC_OK);
    adm_script(RPC_DEADLINE_EXCEEDED, "v1 demoted, but b acknowledged 3 of 9");
    CODE(vcall(&f, "DemoteVolume", src("v1"), 0, NULL, NULL, NULL, msg,
               sizeof(msg)), RPC_ABORTED);
    ASSERT(strstr(msg, "acknowledged 3 of 9"));
    adm_script(RPC_FAILED_PRECONDITION, "not replicated to b");
    CODE(vcall(&f, "DemoteVolume", src("v1"), 0, NULL, NULL, NULL, msg,
               sizeof(msg)), RPC_FAILED_PRECONDITION);
    ASSERT_EQ(adm_calls(), 3);
    /* A secondary: demote is OK at once; promote asks. */
    ASSERT_OK(jr_role_set(f.st, "v1", JR_ROLE_SECONDARY, 1));
    CODE(vcall(&f, "DemoteVolume", src("v1"), 0, NULL, NULL, NULL, msg,
               sizeof(msg)), RPC_OK);
    ASSERT_EQ(adm_calls(), 3);
    adm_script(RPC_UNAVAILABLE, "peer region b unreachable (UNAVAILABLE: x); "
               "use --force if it is lost");
    CODE(vcall(&f, "PromoteVolume", src("v1"), 0, NULL, NULL, NULL, msg,
               sizeof(msg)), RPC_FAILED_PRECONDITION);
    adm_script(RPC_FAILED_PRECONDITION, "v1 is still primary in b");
    CODE(vcall(&f, "PromoteVolume", src("v1"), 0, NULL, NULL, NULL, msg,
               sizeof(msg)), RPC_FAILED_PRECONDITION);
    adm_script(RPC_OK, "");
    CODE(vcall(&f, "PromoteVolume", src("v1"), 1, NULL, NULL, NULL, msg,
               sizeof(msg)), RPC_OK);
    pthread_mutex_lock(&adm.mu);
    int force = adm.last_force;
    pthread_mutex_unlock(&adm.mu);
    ASSERT_EQ(force, 1);
    ASSERT_EQ(adm_calls(), 6);
    /* A primary being fenced: promote is to be retried (the replicator
     * makes it a secondary next); demote has nothing to drain. */
    ASSERT_OK(jr_role_set(f.st, "v1", JR_ROLE_PRIMARY, 1));
    ASSERT_OK(jr_meta_set(f.st, "v1", REP_META_SPLIT, "peer b epoch 2"));
    CODE(vcall(&f, "PromoteVolume", src("v1"), 1, NULL, NULL, NULL, msg,
               sizeof(msg)), RPC_ABORTED);
    CODE(vcall(&f, "DemoteVolume", src("v1"), 0, NULL, NULL, NULL, msg,
               sizeof(msg)), RPC_OK);
    ASSERT_EQ(adm_calls(), 6);
    /* The replicator itself unreachable: UNAVAILABLE. */
    ASSERT_OK(jr_meta_rm(f.st, "v1", REP_META_SPLIT));
    rpc_server_destroy(f.asrv, 0);
    f.asrv = NULL;
    CODE(vcall(&f, "DemoteVolume", src("v1"), 0, NULL, NULL, NULL, msg,
               sizeof(msg)), RPC_UNAVAILABLE);
    fx_stop(&f);
}

struct bg_call {
    struct fx *f;
    const char *method;
    int code;
};

static void *bg_main(void *arg)
{
    struct bg_call *b = arg;
    char msg[256];
    b->code = vcall(b->f, b->method, src("v1"), 0, NULL, NULL, NULL, msg,
                    sizeof(msg));
    return NULL;
}

TEST(operation_pending_is_aborted)
{
    struct fx f;
    char msg[256];
    fx_start(&f);
    mkvol(&f, "v1", JR_ROLE_PRIMARY, 1);
    adm_gate(1);
    struct bg_call b = {&f, "DemoteVolume", -1};
    pthread_t th;
    ASSERT_OK(pthread_create(&th, NULL, bg_main, &b));
    adm_wait_gated(); /* the demote is in the replicator now */
    for (size_t i = 0; i < sizeof(ALL) / sizeof(ALL[0]); i++)
        if (strcmp(ALL[i], "GetReplicationDestinationInfo") &&
            strcmp(ALL[i], "GetVolumeReplicationInfo"))
            CODE(vcall(&f, ALL[i], src("v1"), 0, NULL, NULL, NULL, msg,
                       sizeof(msg)), RPC_ABORTED);
    adm_gate(0);
    pthread_join(th, NULL);
    ASSERT_EQ(b.code, RPC_OK);
    fx_stop(&f);
}

static int resync(struct fx *f, int *ready, char *msg, size_t ml)
{
    ProtobufCMessage *r = NULL;
    int code = vcall(f, "ResyncVolume", src("v1"), 0, NULL, NULL, &r, msg, ml);
    *ready = -1;
    if (r) {
        *ready = ((Replication__ResyncVolumeResponse *)r)->ready;
        protobuf_c_message_free_unpacked(r, NULL);
    }
    return code;
}

TEST(resync_runs_in_the_background)
{
    struct fx f;
    char msg[256];
    int ready;
    fx_start(&f);
    mkvol(&f, "v1", JR_ROLE_PRIMARY, 1);
    CODE(resync(&f, &ready, msg, sizeof(msg)), RPC_FAILED_PRECONDITION);
    ASSERT(strstr(msg, "demote"));
    ASSERT_EQ(adm_calls(), 0);
    ASSERT_OK(jr_role_set(f.st, "v1", JR_ROLE_SECONDARY, 1));
    /* Running: ready=false, as often as asked, one resync only. */
    adm_gate(1);
    CODE(resync(&f, &ready, msg, sizeof(msg)), RPC_OK);
    ASSERT_EQ(ready, 0);
    adm_wait_gated();
    CODE(resync(&f, &ready, msg, sizeof(msg)), RPC_OK);
    ASSERT_EQ(ready, 0);
    ASSERT_EQ(adm_calls(), 1);
    /* Done: ready=true once the copy is a plain secondary. */
    adm_gate(0);
    for (int i = 0; i < 500 && ready != 1; i++) {
        CODE(resync(&f, &ready, msg, sizeof(msg)), RPC_OK);
        if (ready != 1) usleep(10000); /* the job's thread is finishing */
    }
    ASSERT_EQ(ready, 1);
    CODE(resync(&f, &ready, msg, sizeof(msg)), RPC_OK);
    ASSERT_EQ(ready, 1);
    ASSERT_EQ(adm_calls(), 1);
    /* Fenced again: a new resync; the replicator refuses it: the code
     * comes back (the first call waits for a quick answer). */
    ASSERT_OK(jr_meta_set(f.st, "v1", REP_META_SPLIT, "x"));
    adm_script(RPC_FAILED_PRECONDITION, "v1 is not primary in b");
    CODE(resync(&f, &ready, msg, sizeof(msg)), RPC_FAILED_PRECONDITION);
    ASSERT(strstr(msg, "not primary in b"));
    ASSERT_EQ(adm_calls(), 2);
    /* A slow failure is told by the next call, once. */
    adm_gate(1);
    CODE(resync(&f, &ready, msg, sizeof(msg)), RPC_OK);
    ASSERT_EQ(ready, 0);
    adm_script(RPC_UNAVAILABLE, "peer region b unreachable");
    adm_gate(0);
    int code = RPC_OK;
    for (int i = 0; i < 500 && code == RPC_OK; i++) {
        code = resync(&f, &ready, msg, sizeof(msg));
        if (code == RPC_OK) {
            ASSERT_EQ(ready, 0);
            usleep(10000);
        }
    }
    CODE(code, RPC_UNAVAILABLE);
    fx_stop(&f);
}

static Replication__GetVolumeReplicationInfoResponse *info(struct fx *f,
                                                           int want)
{
    char msg[256];
    ProtobufCMessage *r = NULL;
    CODE(vcall(f, "GetVolumeReplicationInfo", src("v1"), 0, NULL, NULL, &r,
               msg, sizeof(msg)), want);
    return (void *)r;
}

TEST(replication_info_from_the_replicator)
{
    struct fx f;
    fx_start(&f);
    mkvol(&f, "v1", JR_ROLE_PRIMARY, 1);
    pthread_mutex_lock(&adm.mu);
    tandem__admin__v1__volume_status__init(&adm.vs);
    adm.vs.volume_id = "v1";
    adm.vs.peer_region = "b";
    adm.vs.state = "replicating";
    adm.vs.link_state = "up";
    adm.vs.last_error = "";
    adm.vs.head = 12;
    adm.vs.acked = 9;
    adm.vs.lag_entries = 3;
    adm.vs.lag_seconds = 2.5;
    adm.vs.lag_bytes = 12345;
    adm.vs.wire_bytes = 999;
    adm.now_ms = 1700000000123;
    pthread_mutex_unlock(&adm.mu);
    /* Lagging: the peer holds what was written before the oldest write
     * in flight (2.5 s ago on the primary's clock). */
    Replication__GetVolumeReplicationInfoResponse *r = info(&f, RPC_OK);
    ASSERT_EQ(r->last_sync_time->seconds, 1699999997);
    ASSERT_EQ(r->last_sync_time->nanos, 623000000);
    ASSERT_EQ(r->last_sync_duration->seconds, 2);
    ASSERT_EQ(r->last_sync_duration->nanos, 500000000);
    ASSERT_EQ(r->last_sync_bytes, 12345);
    ASSERT_EQ(r->status,
              REPLICATION__GET_VOLUME_REPLICATION_INFO_RESPONSE__STATUS__HEALTHY);
    ASSERT(strstr(r->status_message, "acked=9") &&
           strstr(r->status_message, "head=12"));
    protobuf_c_message_free_unpacked(&r->base, NULL);
    /* The age unknown (a region copy) and no entry kept: the last
     * successful exchange; never synced: 0. */
    pthread_mutex_lock(&adm.mu);
    adm.vs.lag_seconds = 0;
    adm.vs.last_sync_unix_ms = 1700000000000 - 4000;
    pthread_mutex_unlock(&adm.mu);
    r = info(&f, RPC_OK);
    ASSERT_EQ(r->last_sync_time->seconds, 1699999996);
    ASSERT_EQ(r->last_sync_time->nanos, 0);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    pthread_mutex_lock(&adm.mu);
    adm.vs.last_sync_unix_ms = 0;
    pthread_mutex_unlock(&adm.mu);
    r = info(&f, RPC_OK);
    ASSERT_EQ(r->last_sync_time->seconds, 0);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    /* In sync: now. */
    pthread_mutex_lock(&adm.mu);
    adm.vs.lag_entries = 0;
    adm.vs.lag_seconds = 0;
    pthread_mutex_unlock(&adm.mu);
    r = info(&f, RPC_OK);
    ASSERT_EQ(r->last_sync_time->seconds, 1700000000);
    ASSERT_EQ(r->last_sync_time->nanos, 123000000);
    ASSERT_EQ(r->last_sync_duration->seconds, 0);
    ASSERT_EQ(r->last_sync_bytes, 999);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    /* The peer applied entry 2 of 3 and it is still in the journal: the
     * time of that write (the newest the peer has), on the writer's
     * clock. */
    jr_volume *jv = NULL;
    char blk[4096] = {1};
    ASSERT_OK(jr_open(f.st, "v1", JR_OPEN_WRITE, "t", &jv));
    for (int i = 0; i < 3; i++) {
        ASSERT_OK(jr_write(jv, (uint64_t)i * 4096, blk, sizeof(blk)));
        ASSERT_OK(jr_flush(jv));
    }
    ASSERT_OK(jr_close(jv));
    struct jr_batch b = {0};
    ASSERT_OK(jr_tail_read(f.st, "v1", 2, 1, &b));
    ASSERT_UEQ(b.first_seq, 2);
    int64_t ts2 = b.oldest_ts_ns / 1000000;
    jr_batch_free(&b);
    pthread_mutex_lock(&adm.mu);
    adm.now_ms = ts2 + 60000;
    adm.vs.acked = 2;
    adm.vs.head = 3;
    adm.vs.lag_entries = 1;
    adm.vs.lag_seconds = 30; /* the write in flight: 30 s ago */
    pthread_mutex_unlock(&adm.mu);
    r = info(&f, RPC_OK);
    ASSERT_EQ(r->last_sync_time->seconds * 1000 +
                  r->last_sync_time->nanos / 1000000, ts2);
    ASSERT_EQ(r->last_sync_duration->seconds, 30);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    /* Link down: DEGRADED; fenced: ERROR with the reason. */
    pthread_mutex_lock(&adm.mu);
    adm.vs.link_state = "down";
    pthread_mutex_unlock(&adm.mu);
    r = info(&f, RPC_OK);
    ASSERT_EQ(r->status,
              REPLICATION__GET_VOLUME_REPLICATION_INFO_RESPONSE__STATUS__DEGRADED);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    pthread_mutex_lock(&adm.mu);
    adm.vs.split_brain = 1;
    adm.vs.state = "split-brain";
    adm.vs.last_error = "peer b holds epoch 3";
    pthread_mutex_unlock(&adm.mu);
    r = info(&f, RPC_OK);
    ASSERT_EQ(r->status,
              REPLICATION__GET_VOLUME_REPLICATION_INFO_RESPONSE__STATUS__ERROR);
    ASSERT(strstr(r->status_message, "peer b holds epoch 3"));
    protobuf_c_message_free_unpacked(&r->base, NULL);
    /* The replicator unreachable / a secondary. */
    adm_script(RPC_UNAVAILABLE, "down");
    info(&f, RPC_UNAVAILABLE);
    adm_script(RPC_OK, "");
    ASSERT_OK(jr_role_set(f.st, "v1", JR_ROLE_SECONDARY, 1));
    info(&f, RPC_FAILED_PRECONDITION);
    fx_stop(&f);
}

TEST(params)
{
    char err[256], peer[64];
    struct rg_config *c = NULL;
    ASSERT_OK(rg_parse("[tandem]\ndefault_region = a\n"
                       "[region a]\nbackend = sqlite\ndb_path = /x/a\n"
                       "[region b]\nbackend = sqlite\ndb_path = /x/b\n"
                       "[region c]\nbackend = sqlite\ndb_path = /x/c\n",
                       "t", &c, err, sizeof(err)));
    struct csi_mapent e1 = {.key = "mirroringMode", .value = "journal"};
    struct csi_mapent e2 = {.key = "peerRegion", .value = "c"};
    struct csi_mapent e3 = {
        .key = "replication.storage.openshift.io/replication-secret-name",
        .value = "s"};
    struct csi_mapent *ents[] = {&e1, &e2, &e3};
    ASSERT_OK(csi_addons_params(c, "a", 3, ents, peer, sizeof(peer), err,
                                sizeof(err)));
    ASSERT_STREQ(peer, "c");
    /* Three regions and no peer named: nothing to default to. */
    ASSERT_EQ(csi_addons_params(c, "a", 1, ents, peer, sizeof(peer), err,
                                sizeof(err)), -EINVAL);
    ASSERT(strstr(err, "peerRegion"));
    e1.value = "snapshot";
    ASSERT_EQ(csi_addons_params(c, "a", 3, ents, peer, sizeof(peer), err,
                                sizeof(err)), -EINVAL);
    rg_free(c);
}

/* The journal side of Disable (jr.h jr_peers_release) on a store. */
static void peers_release_checks(st_store *st, const char *v1,
                                 const char *v2)
{
    struct jr_tomb t;
    uint64_t ack = 0;
    struct jr_kv kv[2] = {{REP_META_REPLICATION, "async"},
                          {REP_META_PEER_REGION, "b"}};
    struct jr_create_opts o = {.size = 4 << 20, .object_size = 1 << 20,
                               .role = JR_ROLE_PRIMARY, .epoch = 1,
                               .region = "a", .meta = kv, .n_meta = 2};
    ASSERT_OK(jr_volume_create(st, v1, &o));
    /* No peer ever acknowledged: nothing to record. */
    ASSERT_OK(jr_peers_release(st, v1));
    ASSERT_EQ(jr_tomb_get(st, v1, &t), -ENOENT);
    ASSERT_OK(jr_peer_ack_set(st, v1, "b", 3));
    ASSERT_OK(jr_peer_ack_set(st, v1, "c", 4));
    ASSERT_OK(jr_role_set(st, v1, JR_ROLE_PRIMARY, 2));
    ASSERT_OK(jr_peers_release(st, v1));
    ASSERT_OK(jr_tomb_get(st, v1, &t));
    ASSERT_UEQ(t.epoch, 2);
    ASSERT_EQ(t.n_peers, 2);
    ASSERT_EQ(jr_peer_ack_get(st, v1, "b", &ack), -ENOENT);
    ASSERT_EQ(jr_peer_ack_get(st, v1, "c", &ack), -ENOENT);
    ASSERT_OK(jr_peers_release(st, v1)); /* again: nothing left */
    ASSERT_OK(jr_volume_stat(st, v1, &(struct jr_info){0}));
    /* A replica's peer is not this region's to release; no volume. */
    o.role = JR_ROLE_SECONDARY;
    ASSERT_OK(jr_volume_create(st, v2, &o));
    ASSERT_OK(jr_peer_ack_set(st, v2, "b", 3));
    ASSERT_EQ(jr_peers_release(st, v2), JR_EROLE);
    ASSERT_OK(jr_peer_ack_get(st, v2, "b", &ack));
    ASSERT_EQ(jr_tomb_get(st, v2, &t), -ENOENT);
    ASSERT_EQ(jr_peers_release(st, "no-such-volume"), -ENOENT);
    /* Leave nothing behind (a shared store): the volumes, the tombstone. */
    ASSERT_OK(jr_tomb_remove(st, v1));
    ASSERT_OK(jr_volume_delete(st, v2));
    ASSERT_OK(jr_volume_delete(st, v1));
}

TEST(jr_peers_release_sqlite)
{
    struct fx f;
    fx_start(&f);
    peers_release_checks(f.st, "v1", "v2");
    fx_stop(&f);
}

TEST(jr_peers_release_rados)
{
    const char *skip = getenv("TANDEM_CEPH_SKIP");
    if (skip && *skip) TT_SKIP("%s", skip);
    const char *conf = getenv("TANDEM_CEPH_CONF");
    if (!conf || !*conf) TT_SKIP("TANDEM_CEPH_CONF not set");
    const char *kr = getenv("TANDEM_CEPH_KEYRING");
    const char *cl = getenv("TANDEM_CEPH_CLIENT");
    const char *pool = getenv("TANDEM_CEPH_POOL_A");
    char text[4096], err[256], v1[64], v2[64];
    /* A namespace and ids of this run: never another test's objects. */
    snprintf(text, sizeof(text),
             "[tandem]\ndefault_region = a\n[region a]\nbackend = rados\n"
             "ceph_conf = %s\nclient_id = %s\n%s%s%spool = %s\n"
             "rados_namespace = test-csi-addons-%ld\n",
             conf, cl && *cl ? cl : "admin", kr && *kr ? "keyring = " : "",
             kr && *kr ? kr : "", kr && *kr ? "\n" : "",
             pool && *pool ? pool : "tandem-a", (long)getpid());
    struct rg_config *c = NULL;
    st_store *st = NULL;
    ASSERT_OK(rg_parse(text, "rados", &c, err, sizeof(err)));
    ASSERT_OK(rg_open_store(rg_find(c, "a"), &st));
    snprintf(v1, sizeof(v1), "addons-%ld-1", (long)getpid());
    snprintf(v2, sizeof(v2), "addons-%ld-2", (long)getpid());
    peers_release_checks(st, v1, v2);
    st_close(st);
    rg_free(c);
}

TT_MAIN()
