/*
 * test-csi-client.h: helpers for the CSI tests that talk to a real
 * tandem-csi process over its unix socket (test-csi-conformance.c,
 * test-csi-node.c): scratch dir and region map, start/stop of the
 * process, one-line calls, message builders, direct store access.
 * test-csi.c uses only the message builders (everything here is static
 * inline, so unused helpers cost nothing).
 *
 * The tandem-csi binary is $TANDEM_CSI, else ../tandem-csi next to the
 * test program (both built by `make`); tandem-volfuse likewise.
 */
#ifndef TEST_CSI_CLIENT_H
#define TEST_CSI_CLIENT_H

#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "tt.h"

#include "csi.pb-c.h"
#include "jr.h"
#include "regions.h"
#include "rpc.h"

struct csi_proc {
    pid_t pid;
    char dir[256];      /* scratch dir, removed by csi_proc_stop */
    char sock[320];     /* "unix:///..." */
    char cfg[320];      /* region map path */
    char state[320];    /* --state-dir */
    char region[64];    /* --region */
    char zone[64];      /* --zone ("" none) */
    rpc_client *cli;
};

static inline void tc_bin(const char *env, const char *name, char *out,
                          size_t len)
{
    const char *e = getenv(env);
    if (e && e[0]) {
        snprintf(out, len, "%s", e);
        return;
    }
    char self[512];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    ASSERT(n > 0);
    self[n] = 0;
    snprintf(out, len, "%s/../%s", dirname(self), name);
}

/* Region map: sqlite regions a (capacity 10 GiB), b, c (zonal, c1), plus
 * extra (more [region] sections, e.g. a rados one) if not NULL. */
static inline void csi_proc_config(struct csi_proc *p, const char *extra)
{
    FILE *f = fopen(p->cfg, "w");
    ASSERT(f != NULL);
    fprintf(f,
            "[tandem]\ndefault_region = a\n"
            "[region a]\nbackend = sqlite\ndb_path = %s/a.db\n"
            "capacity_bytes = 10737418240\n"
            "[region b]\nbackend = sqlite\ndb_path = %s/b.db\n"
            "[region c]\nbackend = sqlite\ndb_path = %s/c.db\nzone = c1\n"
            "%s",
            p->dir, p->dir, p->dir, extra ? extra : "");
    fclose(f);
}

/* On a failed assertion (abort) in a test child: stop the plugin, its
 * exporters, loop devices and mounts under the scratch dir, so a failure
 * leaves nothing behind.  Best effort, through the shell. */
static struct csi_proc *tc_current;

static inline void tc_abort_cleanup(int sig)
{
    char cmd[2048];
    struct csi_proc *p = tc_current;
    if (p && p->dir[0]) {
        if (p->pid > 0) kill(p->pid, SIGKILL);
        snprintf(cmd, sizeof(cmd),
                 "d=%s; for m in $(awk -v d=\"$d\" 'index($5, d) == 1 "
                 "{print $5}' /proc/self/mountinfo | sort -r); do "
                 "umount -l \"$m\" 2>/dev/null; done; "
                 "for r in $d/state/vols/*; do [ -f $r/dev ] && "
                 "losetup -d $(cat $r/dev) 2>/dev/null; [ -f $r/pid ] && "
                 "kill -9 $(cat $r/pid) 2>/dev/null; umount -l $r/mnt "
                 "2>/dev/null; done; rm -rf $d",
                 p->dir);
        if (system(cmd)) {}
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Start the tandem-csi process of p (mode "all", node n1) and wait until
 * it answers. */
static inline void csi_proc_spawn(struct csi_proc *p)
{
    char bin[600], exporter[600], logp[400];
    snprintf(logp, sizeof(logp), "%s/csi.log", p->dir);
    tc_bin("TANDEM_CSI", "tandem-csi", bin, sizeof(bin));
    tc_bin("TANDEM_VOLFUSE", "tandem-volfuse", exporter, sizeof(exporter));
    p->pid = fork();
    ASSERT(p->pid >= 0);
    if (p->pid == 0) {
        int fd = open(logp, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 2);
            dup2(fd, 1);
        }
        execl(bin, bin, "--endpoint", p->sock, "--mode", "all", "--config",
              p->cfg, "--node-id", "n1", "--region", p->region, "--zone",
              p->zone, "--state-dir", p->state, "--exporter", exporter,
              "--max-volumes-per-node", "64", (char *)NULL);
        _exit(127);
    }
    ASSERT_EQ(rpc_client_create(p->sock, NULL, &p->cli), 0);
    /* GetPluginInfo, not Probe: it answers even when a store is down. */
    Csi__V1__GetPluginInfoRequest rq = CSI__V1__GET_PLUGIN_INFO_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    char msg[256];
    int rc = rpc_client_call(p->cli, "/csi.v1.Identity/GetPluginInfo",
                             &rq.base,
                             &csi__v1__get_plugin_info_response__descriptor,
                             &resp, 10000, 1, msg, sizeof(msg));
    if (rc != RPC_OK) {
        char cmd[600];
        snprintf(cmd, sizeof(cmd), "cat %s >&2", logp);
        if (system(cmd)) {}
        TT_FAIL("tandem-csi did not come up: %s (%s)", rpc_code_name(rc), msg);
    }
    protobuf_c_message_free_unpacked(resp, NULL);
}

/* Scratch dir + region map, then spawn; node in region/zone. */
static inline void csi_proc_start_ex(struct csi_proc *p, const char *extra_cfg,
                              const char *region, const char *zone)
{
    const char *tmp = getenv("TANDEM_TEST_TMP");
    memset(p, 0, sizeof(*p));
    snprintf(p->dir, sizeof(p->dir), "%s/csi.XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    ASSERT(mkdtemp(p->dir) != NULL);
    snprintf(p->sock, sizeof(p->sock), "unix://%s/csi.sock", p->dir);
    snprintf(p->cfg, sizeof(p->cfg), "%s/regions.conf", p->dir);
    snprintf(p->state, sizeof(p->state), "%s/state", p->dir);
    snprintf(p->region, sizeof(p->region), "%s", region);
    snprintf(p->zone, sizeof(p->zone), "%s", zone ? zone : "");
    csi_proc_config(p, extra_cfg);
    tc_current = p;
    signal(SIGABRT, tc_abort_cleanup);
    csi_proc_spawn(p);
}

/* Crash the plugin (SIGKILL: no cleanup at all) and start it again on
 * the same state dir. */
static inline void csi_proc_crash_restart(struct csi_proc *p)
{
    int st;
    rpc_client_destroy(p->cli);
    p->cli = NULL;
    kill(p->pid, SIGKILL);
    ASSERT_EQ(waitpid(p->pid, &st, 0), p->pid);
    csi_proc_spawn(p);
}

static inline void csi_proc_start(struct csi_proc *p, const char *extra_cfg)
{
    csi_proc_start_ex(p, extra_cfg, "a", NULL);
}

/* SIGTERM, expect a clean exit 0, remove the scratch dir. */
static inline void csi_proc_stop(struct csi_proc *p)
{
    int st = 0;
    rpc_client_destroy(p->cli);
    p->cli = NULL;
    if (p->pid > 0) {
        kill(p->pid, SIGTERM);
        ASSERT_EQ(waitpid(p->pid, &st, 0), p->pid);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            char cmd[600];
            snprintf(cmd, sizeof(cmd), "tail -20 %s/csi.log >&2", p->dir);
            if (system(cmd)) {}
            TT_FAIL("tandem-csi exit status %#x after SIGTERM", st);
        }
        p->pid = 0;
    }
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", p->dir);
    if (system(cmd)) {}
}

/* One call; returns the code, *resp set on OK (caller frees via tc_free). */
static inline int tc_call(struct csi_proc *p, const char *method,
                   const ProtobufCMessage *req,
                   const ProtobufCMessageDescriptor *rd, void *resp,
                   char *msg, size_t msglen)
{
    ProtobufCMessage **r = resp;
    char local[512];
    if (!msg) {
        msg = local;
        msglen = sizeof(local);
    }
    msg[0] = 0;
    *r = NULL;
    return rpc_client_call(p->cli, method, req, rd, r, 30000, 0, msg, msglen);
}

static inline void tc_free(void *m)
{
    if (m) protobuf_c_message_free_unpacked(m, NULL);
}

/* Response type of a "/csi.v1.<Service>/<Method>" path, from the
 * generated service descriptors. */
static inline const ProtobufCMessageDescriptor *tc_resp_desc(const char *path)
{
    static const ProtobufCServiceDescriptor *const svcs[] = {
        &csi__v1__identity__descriptor, &csi__v1__controller__descriptor,
        &csi__v1__node__descriptor};
    const char *slash = strrchr(path, '/');
    ASSERT(slash != NULL && !strncmp(path, "/csi.v1.", 8));
    for (size_t i = 0; i < sizeof(svcs) / sizeof(svcs[0]); i++) {
        size_t n = strlen(svcs[i]->short_name);
        if ((size_t)(slash - path - 8) != n ||
            strncmp(path + 8, svcs[i]->short_name, n))
            continue;
        const ProtobufCMethodDescriptor *m =
            protobuf_c_service_descriptor_get_method_by_name(svcs[i],
                                                             slash + 1);
        if (m) return m->output;
    }
    TT_FAIL("no CSI method %s", path);
    return NULL;
}

/* A call whose answer only matters by its code (the response, if any, is
 * freed): returns the code, msg as for tc_call. */
static inline int tc_try(struct csi_proc *p, const char *method,
                         const ProtobufCMessage *req, char *msg,
                         size_t msglen)
{
    void *r;
    int rc = tc_call(p, method, req, tc_resp_desc(method), &r, msg, msglen);
    tc_free(r);
    return rc;
}

#define ASSERT_CODE(got, want, msg)                                           \
    do {                                                                      \
        int tc_g_ = (got), tc_w_ = (want);                                    \
        if (tc_g_ != tc_w_)                                                   \
            TT_FAIL("%s: got %s (%s), want %s", #got, rpc_code_name(tc_g_),   \
                    (msg), rpc_code_name(tc_w_));                             \
    } while (0)

/* ---- builders (static storage inside the caller's struct) ---- */

struct tc_cap {
    Csi__V1__VolumeCapability c;
    Csi__V1__VolumeCapability__MountVolume m;
    Csi__V1__VolumeCapability__BlockVolume b;
    Csi__V1__VolumeCapability__AccessMode am;
    Csi__V1__VolumeCapability *pc;
};

static inline Csi__V1__VolumeCapability *tc_cap(struct tc_cap *t, int block,
                                                int mode, const char *fs)
{
    csi__v1__volume_capability__init(&t->c);
    csi__v1__volume_capability__access_mode__init(&t->am);
    t->am.mode = mode;
    t->c.access_mode = &t->am;
    if (block) {
        csi__v1__volume_capability__block_volume__init(&t->b);
        t->c.access_type_case = CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_BLOCK;
        t->c.block = &t->b;
    } else {
        csi__v1__volume_capability__mount_volume__init(&t->m);
        t->m.fs_type = (char *)(fs ? fs : "");
        t->c.access_type_case = CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_MOUNT;
        t->c.mount = &t->m;
    }
    t->pc = &t->c;
    return &t->c;
}

#define TC_SNW CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_WRITER
#define TC_SNRO CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_READER_ONLY
#define TC_SNMW CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_MULTI_WRITER
#define TC_MNMW CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__MULTI_NODE_MULTI_WRITER

struct tc_params {
    Csi__V1__CreateVolumeRequest__ParametersEntry e[16];
    Csi__V1__CreateVolumeRequest__ParametersEntry *p[16];
    size_t n;
};

static inline void tc_param(struct tc_params *t, const char *k, const char *v)
{
    csi__v1__create_volume_request__parameters_entry__init(&t->e[t->n]);
    t->e[t->n].key = (char *)k;
    t->e[t->n].value = (char *)v;
    t->p[t->n] = &t->e[t->n];
    t->n++;
}

/* CreateVolume of name with size bytes (0: no range), one capability;
 * returns the code, fills id (may be NULL) and *out_resp if non-NULL. */
static inline int tc_create(struct csi_proc *p, const char *name, int64_t size,
                     int block, struct tc_params *params,
                     Csi__V1__TopologyRequirement *topo, char *id,
                     size_t idlen, Csi__V1__CreateVolumeResponse **out_resp,
                     char *msg, size_t msglen)
{
    Csi__V1__CreateVolumeRequest rq = CSI__V1__CREATE_VOLUME_REQUEST__INIT;
    Csi__V1__CapacityRange cr = CSI__V1__CAPACITY_RANGE__INIT;
    struct tc_cap cap;
    Csi__V1__CreateVolumeResponse *r = NULL;
    rq.name = (char *)name;
    if (size) {
        cr.required_bytes = size;
        rq.capacity_range = &cr;
    }
    tc_cap(&cap, block, TC_SNW, NULL);
    rq.n_volume_capabilities = 1;
    rq.volume_capabilities = &cap.pc;
    if (params) {
        rq.n_parameters = params->n;
        rq.parameters = params->p;
    }
    rq.accessibility_requirements = topo;
    int rc = tc_call(p, "/csi.v1.Controller/CreateVolume", &rq.base,
                     &csi__v1__create_volume_response__descriptor, &r, msg,
                     msglen);
    if (rc == RPC_OK && id) snprintf(id, idlen, "%s", r->volume->volume_id);
    if (out_resp)
        *out_resp = r;
    else
        tc_free(r);
    return rc;
}

static inline int tc_delete(struct csi_proc *p, const char *id)
{
    Csi__V1__DeleteVolumeRequest rq = CSI__V1__DELETE_VOLUME_REQUEST__INIT;
    void *r = NULL;
    rq.volume_id = (char *)id;
    int rc = tc_call(p, "/csi.v1.Controller/DeleteVolume", &rq.base,
                     &csi__v1__delete_volume_response__descriptor, &r, NULL,
                     0);
    tc_free(r);
    return rc;
}

/* Region segment value of a Volume's first accessible topology. */
static inline const char *tc_vol_region(const Csi__V1__Volume *v)
{
    if (!v || v->n_accessible_topology < 1) return "";
    const Csi__V1__Topology *t = v->accessible_topology[0];
    for (size_t i = 0; i < t->n_segments; i++)
        if (!strcmp(t->segments[i]->key, "topology.tandem.csi.dev/region"))
            return t->segments[i]->value;
    return "";
}

/* Node calls.  mode 0: no volume_capability at all (an argument error). */
static inline int tc_stage(struct csi_proc *p, const char *id, const char *sp,
                           int block, int mode, char *msg, size_t len)
{
    Csi__V1__NodeStageVolumeRequest q =
        CSI__V1__NODE_STAGE_VOLUME_REQUEST__INIT;
    struct tc_cap cap;
    q.volume_id = (char *)id;
    q.staging_target_path = (char *)sp;
    if (mode) q.volume_capability = tc_cap(&cap, block, mode, NULL);
    return tc_try(p, "/csi.v1.Node/NodeStageVolume", &q.base, msg, len);
}

static inline int tc_publish(struct csi_proc *p, const char *id,
                             const char *sp, const char *tp, int block,
                             int mode, int ro, char *msg, size_t len)
{
    Csi__V1__NodePublishVolumeRequest q =
        CSI__V1__NODE_PUBLISH_VOLUME_REQUEST__INIT;
    struct tc_cap cap;
    q.volume_id = (char *)id;
    q.staging_target_path = (char *)sp;
    q.target_path = (char *)tp;
    q.readonly = ro;
    if (mode) q.volume_capability = tc_cap(&cap, block, mode, NULL);
    return tc_try(p, "/csi.v1.Node/NodePublishVolume", &q.base, msg, len);
}

static inline int tc_unpublish(struct csi_proc *p, const char *id,
                               const char *tp, char *msg, size_t len)
{
    Csi__V1__NodeUnpublishVolumeRequest q =
        CSI__V1__NODE_UNPUBLISH_VOLUME_REQUEST__INIT;
    q.volume_id = (char *)id;
    q.target_path = (char *)tp;
    return tc_try(p, "/csi.v1.Node/NodeUnpublishVolume", &q.base, msg, len);
}

static inline int tc_unstage(struct csi_proc *p, const char *id,
                             const char *sp, char *msg, size_t len)
{
    Csi__V1__NodeUnstageVolumeRequest q =
        CSI__V1__NODE_UNSTAGE_VOLUME_REQUEST__INIT;
    q.volume_id = (char *)id;
    q.staging_target_path = (char *)sp;
    return tc_try(p, "/csi.v1.Node/NodeUnstageVolume", &q.base, msg, len);
}

/* NodeGetVolumeStats of id at path; *out set on OK (tc_free it). */
static inline int tc_stats(struct csi_proc *p, const char *id,
                           const char *path,
                           Csi__V1__NodeGetVolumeStatsResponse **out,
                           char *msg, size_t len)
{
    Csi__V1__NodeGetVolumeStatsRequest q =
        CSI__V1__NODE_GET_VOLUME_STATS_REQUEST__INIT;
    q.volume_id = (char *)id;
    q.volume_path = (char *)path;
    return tc_call(p, "/csi.v1.Node/NodeGetVolumeStats", &q.base,
                   &csi__v1__node_get_volume_stats_response__descriptor, out,
                   msg, len);
}

/* ControllerExpandVolume of id to req bytes (req < 0: no capacity_range)
 * within lim; with a SINGLE_NODE_WRITER capability of that block-ness,
 * none when block < 0.  *out set on OK (tc_free it). */
static inline int tc_expand(struct csi_proc *p, const char *id, int64_t req,
                            int64_t lim, int block,
                            Csi__V1__ControllerExpandVolumeResponse **out,
                            char *msg, size_t len)
{
    Csi__V1__ControllerExpandVolumeRequest q =
        CSI__V1__CONTROLLER_EXPAND_VOLUME_REQUEST__INIT;
    Csi__V1__CapacityRange cr = CSI__V1__CAPACITY_RANGE__INIT;
    struct tc_cap cap;
    q.volume_id = (char *)id;
    if (req >= 0) {
        cr.required_bytes = req;
        cr.limit_bytes = lim;
        q.capacity_range = &cr;
    }
    if (block >= 0) q.volume_capability = tc_cap(&cap, block, TC_SNW, NULL);
    return tc_call(p, "/csi.v1.Controller/ControllerExpandVolume", &q.base,
                   &csi__v1__controller_expand_volume_response__descriptor,
                   out, msg, len);
}

/* ---- topology requirements ---- */

/* A list of topology segments (region, optional zone) under the driver's
 * default keys; tc_seg appends one and returns it. */
struct tc_topo {
    Csi__V1__Topology t[8];
    Csi__V1__Topology *tp[8];
    Csi__V1__Topology__SegmentsEntry e[8][2];
    Csi__V1__Topology__SegmentsEntry *ep[8][2];
    size_t n;
};

static inline Csi__V1__Topology *tc_seg(struct tc_topo *t, const char *region,
                                        const char *zone)
{
    size_t i = t->n++;
    ASSERT(i < 8);
    csi__v1__topology__init(&t->t[i]);
    csi__v1__topology__segments_entry__init(&t->e[i][0]);
    t->e[i][0].key = "topology.tandem.csi.dev/region";
    t->e[i][0].value = (char *)region;
    t->ep[i][0] = &t->e[i][0];
    t->t[i].n_segments = 1;
    if (zone) {
        csi__v1__topology__segments_entry__init(&t->e[i][1]);
        t->e[i][1].key = "topology.tandem.csi.dev/zone";
        t->e[i][1].value = (char *)zone;
        t->ep[i][1] = &t->e[i][1];
        t->t[i].n_segments = 2;
    }
    t->t[i].segments = t->ep[i];
    t->tp[i] = &t->t[i];
    return &t->t[i];
}

/* r = {requisite: req, preferred: pref} (either may be NULL); r points
 * into req and pref. */
static inline Csi__V1__TopologyRequirement *
tc_topo_req(Csi__V1__TopologyRequirement *r, struct tc_topo *req,
            struct tc_topo *pref)
{
    csi__v1__topology_requirement__init(r);
    r->n_requisite = req ? req->n : 0;
    r->requisite = req ? req->tp : NULL;
    r->n_preferred = pref ? pref->n : 0;
    r->preferred = pref ? pref->tp : NULL;
    return r;
}

/* ---- the plugin's stores, opened directly ---- */

/* Open region r's store of the running plugin's config (st_close it, then
 * rg_free *cfg). */
static inline st_store *tc_region_store(struct csi_proc *p, const char *r,
                                        struct rg_config **cfg)
{
    char err[256];
    st_store *st = NULL;
    ASSERT_EQ(rg_load(p->cfg, cfg, err, sizeof(err)), 0);
    ASSERT_EQ(rg_open_store(rg_find(*cfg, r), &st), 0);
    return st;
}

/* Volume id as region r's store has it; 0 when present, else the
 * jr_volume_stat error. */
static inline int tc_stat_in(struct csi_proc *p, const char *region,
                             const char *id, struct jr_info *in)
{
    struct rg_config *cfg;
    st_store *st = tc_region_store(p, region, &cfg);
    int rc = jr_volume_stat(st, id, in);
    st_close(st);
    rg_free(cfg);
    return rc;
}

/* A replica (secondary) volume id of size bytes in region r, made
 * directly in its store as the replicator would. */
static inline void tc_make_replica(struct csi_proc *p, const char *r,
                                   const char *id, uint64_t size)
{
    struct rg_config *cfg;
    st_store *st = tc_region_store(p, r, &cfg);
    struct jr_create_opts o = {.size = size, .role = JR_ROLE_SECONDARY,
                               .region = r};
    ASSERT_EQ(jr_volume_create(st, id, &o), 0);
    st_close(st);
    rg_free(cfg);
}

/* Meta key of volume id in st is want. */
#define ASSERT_META(st, id, key, want)                                        \
    do {                                                                      \
        char *tc_v_ = NULL;                                                   \
        ASSERT_EQ(jr_meta_get((st), (id), (key), &tc_v_), 0);                 \
        ASSERT_STREQ(tc_v_, (want));                                          \
        free(tc_v_);                                                          \
    } while (0)

/* ---- snapshots, clones, volume health ---- */

/* CreateSnapshot name of volume vol; ns/vs/vsc: the VolumeSnapshot
 * metadata parameters (NULL: not sent).  *out set on OK (tc_free it; may
 * be NULL). */
static inline int tc_snap(struct csi_proc *p, const char *name,
                          const char *vol, const char *ns, const char *vs,
                          const char *vsc,
                          Csi__V1__CreateSnapshotResponse **out, char *msg,
                          size_t len)
{
    Csi__V1__CreateSnapshotRequest q = CSI__V1__CREATE_SNAPSHOT_REQUEST__INIT;
    Csi__V1__CreateSnapshotRequest__ParametersEntry e[3], *pe[3];
    const char *k[3] = {"csi.storage.k8s.io/volumesnapshot/namespace",
                        "csi.storage.k8s.io/volumesnapshot/name",
                        "csi.storage.k8s.io/volumesnapshotcontent/name"};
    const char *v[3] = {ns, vs, vsc};
    Csi__V1__CreateSnapshotResponse *r = NULL;
    q.name = (char *)name;
    q.source_volume_id = (char *)vol;
    for (int i = 0; i < 3; i++) {
        if (!v[i]) continue;
        csi__v1__create_snapshot_request__parameters_entry__init(
            &e[q.n_parameters]);
        e[q.n_parameters].key = (char *)k[i];
        e[q.n_parameters].value = (char *)v[i];
        pe[q.n_parameters] = &e[q.n_parameters];
        q.n_parameters++;
    }
    q.parameters = pe;
    int rc = tc_call(p, "/csi.v1.Controller/CreateSnapshot", &q.base,
                     &csi__v1__create_snapshot_response__descriptor, &r, msg,
                     len);
    if (out)
        *out = r;
    else
        tc_free(r);
    return rc;
}

static inline int tc_snap_delete(struct csi_proc *p, const char *sid,
                                 char *msg, size_t len)
{
    Csi__V1__DeleteSnapshotRequest q = CSI__V1__DELETE_SNAPSHOT_REQUEST__INIT;
    q.snapshot_id = (char *)sid;
    return tc_try(p, "/csi.v1.Controller/DeleteSnapshot", &q.base, msg, len);
}

/* ListSnapshots (sid, vol: filters, NULL none). */
static inline int tc_snap_list(struct csi_proc *p, const char *sid,
                               const char *vol, int max, const char *token,
                               Csi__V1__ListSnapshotsResponse **out,
                               char *msg, size_t len)
{
    Csi__V1__ListSnapshotsRequest q = CSI__V1__LIST_SNAPSHOTS_REQUEST__INIT;
    q.snapshot_id = (char *)(sid ? sid : "");
    q.source_volume_id = (char *)(vol ? vol : "");
    q.max_entries = max;
    q.starting_token = (char *)(token ? token : "");
    return tc_call(p, "/csi.v1.Controller/ListSnapshots", &q.base,
                   &csi__v1__list_snapshots_response__descriptor, out, msg,
                   len);
}

/* CreateVolume name from a snapshot (snap=1) or volume (snap=0) source
 * id, required/limit bytes (0: none), mount SINGLE_NODE_WRITER, topo as
 * tc_create.  *out set on OK (tc_free it; may be NULL). */
static inline int tc_create_from(struct csi_proc *p, const char *name,
                                 int snap, const char *src_id, int64_t req,
                                 int64_t lim, struct tc_params *params,
                                 Csi__V1__TopologyRequirement *topo,
                                 Csi__V1__CreateVolumeResponse **out,
                                 char *msg, size_t len)
{
    Csi__V1__CreateVolumeRequest rq = CSI__V1__CREATE_VOLUME_REQUEST__INIT;
    Csi__V1__CapacityRange cr = CSI__V1__CAPACITY_RANGE__INIT;
    Csi__V1__VolumeContentSource src = CSI__V1__VOLUME_CONTENT_SOURCE__INIT;
    Csi__V1__VolumeContentSource__SnapshotSource ss =
        CSI__V1__VOLUME_CONTENT_SOURCE__SNAPSHOT_SOURCE__INIT;
    Csi__V1__VolumeContentSource__VolumeSource vs =
        CSI__V1__VOLUME_CONTENT_SOURCE__VOLUME_SOURCE__INIT;
    struct tc_cap cap;
    Csi__V1__CreateVolumeResponse *r = NULL;
    rq.name = (char *)name;
    if (req || lim) {
        cr.required_bytes = req;
        cr.limit_bytes = lim;
        rq.capacity_range = &cr;
    }
    tc_cap(&cap, 0, TC_SNW, NULL);
    rq.n_volume_capabilities = 1;
    rq.volume_capabilities = &cap.pc;
    if (params) {
        rq.n_parameters = params->n;
        rq.parameters = params->p;
    }
    rq.accessibility_requirements = topo;
    if (snap) {
        ss.snapshot_id = (char *)src_id;
        src.type_case = CSI__V1__VOLUME_CONTENT_SOURCE__TYPE_SNAPSHOT;
        src.snapshot = &ss;
    } else {
        vs.volume_id = (char *)src_id;
        src.type_case = CSI__V1__VOLUME_CONTENT_SOURCE__TYPE_VOLUME;
        src.volume = &vs;
    }
    rq.volume_content_source = &src;
    int rc = tc_call(p, "/csi.v1.Controller/CreateVolume", &rq.base,
                     &csi__v1__create_volume_response__descriptor, &r, msg,
                     len);
    if (out)
        *out = r;
    else
        tc_free(r);
    return rc;
}

/* ControllerGetVolume of id; *out set on OK (tc_free it). */
static inline int tc_get_volume(struct csi_proc *p, const char *id,
                                Csi__V1__ControllerGetVolumeResponse **out,
                                char *msg, size_t len)
{
    Csi__V1__ControllerGetVolumeRequest q =
        CSI__V1__CONTROLLER_GET_VOLUME_REQUEST__INIT;
    q.volume_id = (char *)id;
    return tc_call(p, "/csi.v1.Controller/ControllerGetVolume", &q.base,
                   &csi__v1__controller_get_volume_response__descriptor, out,
                   msg, len);
}

/* Fill [off, off + len) of volume id in region r with bytes seed + i
 * (through the journal, as a writer would). */
static inline void tc_fill(struct csi_proc *p, const char *r, const char *id,
                           uint64_t off, size_t len, int seed)
{
    struct rg_config *cfg;
    st_store *st = tc_region_store(p, r, &cfg);
    jr_volume *v = NULL;
    uint8_t *b = malloc(len);
    ASSERT(b != NULL);
    for (size_t i = 0; i < len; i++) b[i] = (uint8_t)(seed + i);
    ASSERT_EQ(jr_open(st, id, JR_OPEN_WRITE, "test-fill", &v), 0);
    ASSERT_EQ(jr_write(v, off, b, len), 0);
    ASSERT_EQ(jr_close(v), 0);
    free(b);
    st_close(st);
    rg_free(cfg);
}

/* Is [off, off + len) of volume id in region r the bytes seed + i
 * (seed < 0: zeros)? */
static inline int tc_check(struct csi_proc *p, const char *r, const char *id,
                           uint64_t off, size_t len, int seed)
{
    struct rg_config *cfg;
    st_store *st = tc_region_store(p, r, &cfg);
    jr_volume *v = NULL;
    uint8_t *b = malloc(len);
    int same = 1;
    ASSERT(b != NULL);
    ASSERT_EQ(jr_open(st, id, 0, NULL, &v), 0);
    ASSERT_EQ(jr_read(v, off, b, len), 0);
    jr_close(v);
    for (size_t i = 0; i < len && same; i++)
        same = b[i] == (seed < 0 ? 0 : (uint8_t)(seed + i));
    free(b);
    st_close(st);
    rg_free(cfg);
    return same;
}

#endif /* TEST_CSI_CLIENT_H */
