/*
 * ctl_failover.c: `tandemctl failover`, the one command to run when a
 * region is lost: promotes every replica in the surviving region (or the
 * named ones, in parallel chunks), prints how current each is, and with
 * --emit-manifests writes per volume the PersistentVolume and PVC that
 * bind the same volume handle in the surviving cluster, from the metadata
 * that came with the replicator's answer.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl_int.h"

/* ----------------------------------------------------------- manifests -- */

static const char *meta_get(const Tandem__Admin__V1__VolumeStatus *v,
                            const char *const *keys)
{
    for (; *keys; keys++)
        for (size_t i = 0; i < v->n_metadata; i++)
            if (!strcmp(v->metadata[i]->key, *keys) && *v->metadata[i]->value)
                return v->metadata[i]->value;
    return NULL;
}

/* The metadata keys the CSI controller records (csi/csi.h: "csi.pvc_name"
 * etc.; StorageClass parameters as "csi.param.<key>").  Other spellings
 * are accepted too, so volumes made by other tools still get manifests. */
static const char *const K_PVC_NAME[] = {
    "csi.pvc_name", "csi.param.csi.storage.k8s.io/pvc/name",
    "csi.storage.k8s.io/pvc/name", NULL};
static const char *const K_PVC_NS[] = {
    "csi.pvc_namespace", "csi.param.csi.storage.k8s.io/pvc/namespace",
    "csi.storage.k8s.io/pvc/namespace", NULL};
static const char *const K_PV_NAME[] = {"csi.pv_name",
                                        "csi.param.csi.storage.k8s.io/pv/name",
                                        "csi.storage.k8s.io/pv/name", NULL};
static const char *const K_FSTYPE[] = {"csi.fs_type", "csi.param.fsType",
                                       "csi.param.csi.storage.k8s.io/fstype",
                                       "csi.storage.k8s.io/fstype", NULL};
static const char *const K_SC[] = {"csi.storage_class", NULL};
static const char *const K_ACCESS[] = {"csi.access_mode", NULL};
static const char *const K_VOLMODE[] = {"csi.access_type", NULL};

/* YAML double-quoted scalar. */
static void yq(FILE *f, const char *s)
{
    ctl_json_str(f, s ? s : "");
}

static const char *k8s_access_mode(const char *csi)
{
    if (!csi) return "ReadWriteOnce";
    if (strstr(csi, "MULTI_NODE_MULTI") || strstr(csi, "ReadWriteMany"))
        return "ReadWriteMany";
    if (strstr(csi, "READER_ONLY") || strstr(csi, "ReadOnlyMany"))
        return "ReadOnlyMany";
    if (strstr(csi, "SINGLE_NODE_SINGLE") || strstr(csi, "ReadWriteOncePod"))
        return "ReadWriteOncePod";
    return "ReadWriteOnce";
}

/* Write DIR/<volume>.yaml: a PersistentVolume bound (claimRef) to the PVC
 * the volume was made for, and that PVC (volumeName set, so the surviving
 * cluster binds exactly this PV).  Returns 0 or a negative errno. */
static int write_manifest(const char *dir, const char *region,
                          const Tandem__Admin__V1__VolumeStatus *v,
                          const char *sc_override, char *path, size_t pathsz)
{
    const char *pvc = meta_get(v, K_PVC_NAME);
    const char *ns = meta_get(v, K_PVC_NS);
    const char *pv = meta_get(v, K_PV_NAME);
    const char *fs = meta_get(v, K_FSTYPE);
    const char *sc = sc_override ? sc_override : meta_get(v, K_SC);
    const char *am = k8s_access_mode(meta_get(v, K_ACCESS));
    const char *vm = meta_get(v, K_VOLMODE);
    int block = vm && (!strcasecmp(vm, "block"));
    if (!ns && pvc) ns = "default";
    if (!pv) pv = v->volume_id;

    char tmp[4200];
    snprintf(path, pathsz, "%s/%s.yaml", dir, v->volume_id);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return -errno;
    fprintf(f,
            "# tandem failover: %s promoted in region %s (epoch %" PRIu64
            ", applied %" PRIu64 ").\n# Apply in the surviving cluster: "
            "kubectl apply -f %s\n",
            v->volume_id, region, v->epoch, v->applied, path);
    fprintf(f, "apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: ");
    yq(f, pv);
    fprintf(
        f,
        "\n  annotations:\n    pv.kubernetes.io/provisioned-by: " DRIVER_NAME
        "\n    tandem.csi.dev/failover-epoch: \"%" PRIu64
        "\"\n  labels:\n    tandem.csi.dev/region: ",
        v->epoch);
    yq(f, region);
    fprintf(f, "\nspec:\n  capacity:\n    storage: \"%" PRIu64 "\"\n",
            v->size_bytes);
    fprintf(f, "  accessModes:\n    - %s\n", am);
    fprintf(f, "  volumeMode: %s\n", block ? "Block" : "Filesystem");
    /* Retain: the data outlives a deleted claim in a disaster. */
    fprintf(f, "  persistentVolumeReclaimPolicy: Retain\n");
    if (sc) {
        fprintf(f, "  storageClassName: ");
        yq(f, sc);
        fprintf(f, "\n");
    }
    if (pvc) {
        fprintf(f, "  claimRef:\n    apiVersion: v1\n    kind: "
                   "PersistentVolumeClaim\n    namespace: ");
        yq(f, ns);
        fprintf(f, "\n    name: ");
        yq(f, pvc);
        fprintf(f, "\n");
    }
    fprintf(f, "  csi:\n    driver: " DRIVER_NAME "\n    volumeHandle: ");
    yq(f, v->volume_id);
    fprintf(f, "\n");
    if (!block) fprintf(f, "    fsType: %s\n", fs ? fs : "ext4");
    /* volumeAttributes: what CreateVolume returns as volume_context
     * (csi/csi_ctrl.c), for the region the volume lives in now. */
    static const char *const k_mkfs[] = {"csi.param.mkfsOptions", NULL};
    const char *mkfs = meta_get(v, k_mkfs);
    fprintf(f, "    volumeAttributes:\n      region: ");
    yq(f, region);
    fprintf(f, "\n");
    if (!block) {
        fprintf(f, "      fsType: ");
        yq(f, fs ? fs : "ext4");
        fprintf(f, "\n");
        if (mkfs) {
            fprintf(f, "      mkfsOptions: ");
            yq(f, mkfs);
            fprintf(f, "\n");
        }
    }
    fprintf(f,
            "  nodeAffinity:\n    required:\n      nodeSelectorTerms:\n"
            "        - matchExpressions:\n            - key: " TOPO_REGION_KEY
            "\n              operator: In\n"
            "              values:\n                - ");
    yq(f, region);
    fprintf(f, "\n");
    if (pvc) {
        fprintf(f, "---\napiVersion: v1\nkind: PersistentVolumeClaim\n"
                   "metadata:\n  name: ");
        yq(f, pvc);
        fprintf(f, "\n  namespace: ");
        yq(f, ns);
        fprintf(f, "\nspec:\n  accessModes:\n    - %s\n  volumeMode: %s\n", am,
                block ? "Block" : "Filesystem");
        fprintf(f, "  storageClassName: ");
        /* "" keeps the default StorageClass from provisioning a new one. */
        yq(f, sc ? sc : "");
        fprintf(f, "\n  volumeName: ");
        yq(f, pv);
        fprintf(f,
                "\n  resources:\n    requests:\n      storage: \"%" PRIu64
                "\"\n",
                v->size_bytes);
    }
    int rc = 0;
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) rc = -errno;
    if (fclose(f) != 0 && !rc) rc = -errno;
    if (!rc && rename(tmp, path) != 0) rc = -errno;
    if (rc) unlink(tmp);
    return rc;
}

/* ------------------------------------------------------------ failover -- */

/* With two admin endpoints, failover goes to the one serving to_region. */
static struct endpoint *pick_region(struct ctl *c, const char *region)
{
    if (!c->peer.addr) return &c->admin;
    struct endpoint *eps[2] = {&c->admin, &c->peer};
    for (int i = 0; i < 2; i++) {
        Tandem__Admin__V1__StatusRequest req =
            TANDEM__ADMIN__V1__STATUS_REQUEST__INIT;
        Tandem__Admin__V1__StatusResponse *r = NULL;
        char msg[1024];
        int saved = c->timeout_s;
        c->timeout_s = 5;
        int rc = ctl_admin_call(c, eps[i], "Status", &req,
                                &tandem__admin__v1__status_response__descriptor,
                                &r, 5, msg, sizeof msg);
        c->timeout_s = saved;
        if (rc == RPC_OK) {
            int match = !strcmp(r->region, region);
            protobuf_c_message_free_unpacked(&r->base, NULL);
            if (match) return eps[i];
        }
    }
    return &c->admin;
}

/* Failover of many named volumes is split into FAILOVER_CHUNKS calls
 * made at once, so the replicator's worker threads promote them in
 * parallel (each volume's promotion is independent).  --all stays one
 * call: the replicator decides which volumes are replicas. */
#define FAILOVER_CHUNKS 4
#define FAILOVER_PARALLEL_MIN 8

struct fo_job {
    struct ctl *c;
    struct endpoint *ep;
    Tandem__Admin__V1__FailoverRequest req;
    Tandem__Admin__V1__FailoverResponse *resp;
    int rc;
    char msg[1024];
};

static void *fo_job_run(void *arg)
{
    struct fo_job *j = arg;
    j->rc = ctl_admin_call(j->c, j->ep, "Failover", &j->req,
                           &tandem__admin__v1__failover_response__descriptor,
                           &j->resp, 300, j->msg, sizeof j->msg);
    return NULL;
}

/* One Failover answer for vols (or --all), made of parallel calls when
 * there are many names.  A chunk whose call failed contributes FAILED
 * results carrying the reason.  *out is malloc'd like an unpacked
 * message (free with protobuf_c_message_free_unpacked). */
static int failover_rpc(struct ctl *c, struct endpoint *ep, char **vols, int n,
                        Tandem__Admin__V1__FailoverResponse **out, char *msg,
                        size_t msgsz)
{
    int k = (!c->all && n >= FAILOVER_PARALLEL_MIN) ? FAILOVER_CHUNKS : 1;
    struct fo_job jobs[FAILOVER_CHUNKS];
    pthread_t tids[FAILOVER_CHUNKS];
    int started[FAILOVER_CHUNKS] = {0};
    /* Make the shared client before the threads use it. */
    if (ctl_ep_connect(c, ep, msg, msgsz) < 0) return CALL_NO_CLIENT;
    for (int i = 0, from = 0; i < k; i++) {
        int cnt = n / k + (i < n % k);
        struct fo_job *j = &jobs[i];
        memset(j, 0, sizeof *j);
        j->c = c;
        j->ep = ep;
        tandem__admin__v1__failover_request__init(&j->req);
        j->req.volume_ids = vols + from;
        j->req.n_volume_ids = k == 1 ? (size_t)n : (size_t)cnt;
        j->req.all = c->all;
        j->req.to_region = (char *)c->to_region;
        j->req.graceful = c->graceful;
        from += cnt;
        if (k > 1 && pthread_create(&tids[i], NULL, fo_job_run, j) == 0)
            started[i] = 1;
        else
            fo_job_run(j);
    }
    for (int i = 0; i < k; i++)
        if (started[i]) pthread_join(tids[i], NULL);
    if (k == 1) {
        snprintf(msg, msgsz, "%s", jobs[0].msg);
        *out = jobs[0].resp;
        return jobs[0].rc;
    }
    /* Merge in request order; a failed chunk becomes FAILED rows. */
    Tandem__Admin__V1__FailoverResponse *m = calloc(1, sizeof *m);
    int all_failed = 1, rc = RPC_OK;
    if (!m) abort();
    tandem__admin__v1__failover_response__init(m);
    m->results = calloc((size_t)n, sizeof *m->results);
    if (!m->results) abort();
    for (int i = 0; i < k; i++) {
        struct fo_job *j = &jobs[i];
        if (j->rc == RPC_OK) {
            all_failed = 0;
            if (m->region == protobuf_c_empty_string || !m->region)
                m->region = strdup(j->resp->region);
            for (size_t x = 0;
                 x < j->resp->n_results && m->n_results < (size_t)n; x++)
                m->results[m->n_results++] = j->resp->results[x];
            j->resp->n_results = 0; /* moved into m */
            protobuf_c_message_free_unpacked(&j->resp->base, NULL);
            continue;
        }
        rc = j->rc;
        snprintf(msg, msgsz, "%s", j->msg);
        for (size_t x = 0; x < j->req.n_volume_ids; x++) {
            Tandem__Admin__V1__FailoverResult *f = calloc(1, sizeof *f);
            if (!f) abort();
            tandem__admin__v1__failover_result__init(f);
            f->volume_id = strdup(j->req.volume_ids[x]);
            f->message = strdup(*j->msg ? j->msg : rpc_code_name(j->rc));
            f->applied_age_seconds = -1;
            m->results[m->n_results++] = f;
        }
    }
    if (!m->region || m->region == protobuf_c_empty_string)
        m->region = strdup(c->to_region);
    if (all_failed) {
        protobuf_c_message_free_unpacked(&m->base, NULL);
        return rc;
    }
    *out = m;
    return RPC_OK;
}

int ctl_cmd_failover(struct ctl *c, char **vols, int n)
{
    if (!c->to_region) {
        ctl_errf("failover: --to REGION is required (the surviving region)");
        return EX_USAGE;
    }
    if (!c->all && n == 0) {
        ctl_errf("failover: name the volumes to promote, or --all");
        return EX_USAGE;
    }
    if (c->all && n > 0) {
        ctl_errf("failover: give --all or volume names, not both");
        return EX_USAGE;
    }
    if (c->manifests_dir && mkdir(c->manifests_dir, 0755) != 0 &&
        errno != EEXIST) {
        ctl_errf("failover: cannot create %s: %s", c->manifests_dir,
                 strerror(errno));
        return EX_FAIL;
    }
    struct endpoint *ep = pick_region(c, c->to_region);
    Tandem__Admin__V1__FailoverResponse *r = NULL;
    char msg[1024], what[128];
    int rc = failover_rpc(c, ep, vols, n, &r, msg, sizeof msg);
    snprintf(what, sizeof what, "failover --to %s", c->to_region);
    if (rc != RPC_OK) {
        ctl_report_rpc_error(what, ep, rc, msg);
        return EX_FAIL;
    }
    size_t ok = 0, changed = 0, failed = 0;
    for (size_t i = 0; i < r->n_results; i++) {
        ok += r->results[i]->ok;
        changed += r->results[i]->ok && r->results[i]->changed;
        failed += !r->results[i]->ok;
    }
    printf("failover to region %s%s: %zu volume%s, %zu promoted now, %zu "
           "already primary, %zu failed\n",
           r->region, c->graceful ? " (graceful)" : " (forced)", r->n_results,
           r->n_results == 1 ? "" : "s", changed, ok - changed, failed);
    int w = 12;
    for (size_t i = 0; i < r->n_results; i++)
        if ((int)strlen(r->results[i]->volume_id) > w)
            w = (int)strlen(r->results[i]->volume_id);
    if (r->n_results)
        printf("RPO: the data this failover loses as region %s knew it when "
               "the old primary's last call arrived, LINK-LAST-UP before "
               "this failover (writes after that are not counted)\n"
               "%-*s %-15s %5s %10s %9s %13s  %s\n", r->region, w, "VOLUME",
               "RESULT", "EPOCH", "APPLIED", "RPO", "LINK-LAST-UP", "NOTE");
    int ret = EX_OK;
    for (size_t i = 0; i < r->n_results; i++) {
        const Tandem__Admin__V1__FailoverResult *x = r->results[i];
        char age[32], up[40], b2[32], note[6000];
        /* An answer without link_last_up_unix_ms predates rpo_seconds. */
        ctl_human_rpo(age, sizeof age,
                      x->link_last_up_unix_ms || x->rpo_seconds
                          ? x->rpo_seconds
                          : x->applied_age_seconds);
        if (x->link_last_up_unix_ms > 0 && x->link_down_seconds >= 0)
            snprintf(up, sizeof up, "%s ago",
                     ctl_human_age(b2, sizeof b2, x->link_down_seconds));
        else
            snprintf(up, sizeof up, "unknown");
        /* The columns say what happened; the server's sentence only adds
         * to a failure (or with --verbose). */
        snprintf(note, sizeof note, "%s",
                 !x->ok || c->verbose ? x->message : "");
        /* A promoted volume's answer carries its metadata (the replicator
         * fails the row when it cannot read it); a volume without any
         * (made by other tools) gets a manifest that binds the handle
         * only. */
        if (x->ok && c->manifests_dir && x->volume) {
            char path[4096];
            int wrc = write_manifest(c->manifests_dir, r->region, x->volume,
                                     c->storage_class, path, sizeof path);
            if (wrc < 0) {
                ctl_errf("failover %s: cannot write manifest in %s: %s",
                         x->volume_id, c->manifests_dir, strerror(-wrc));
                ret = EX_FAIL;
            } else {
                snprintf(note + strlen(note), sizeof note - strlen(note),
                         "%smanifest %s%s", *note ? "; " : "", path,
                         x->volume->n_metadata ? ""
                                               : " (no metadata: no claim)");
            }
        } else if (x->ok && c->manifests_dir) {
            ctl_errf("failover %s: no volume status in the answer: manifest "
                     "not written",
                     x->volume_id);
            ret = EX_FAIL;
        }
        printf("%-*s %-15s %5" PRIu64 " %10" PRIu64 " %9s %13s  %s\n", w,
               x->volume_id,
               !x->ok       ? "FAILED"
               : x->changed ? "promoted"
                            : "already-primary",
               x->epoch, x->applied, x->ok ? age : "-", x->ok ? up : "-",
               note);
        if (x->ok && c->manifests_dir &&
            ctl_snap_manifests(c->manifests_dir, r->region, x) < 0)
            ret = EX_FAIL;
        if (!x->ok)
            ctl_errf("failover %s: %s", x->volume_id,
                     *x->message ? x->message : "not promoted");
    }
    if (failed) ret = ok ? EX_PARTIAL : EX_FAIL;
    if (!r->n_results && n > 0) {
        ctl_errf("failover: the replicator answered for none of the named "
                 "volumes");
        ret = EX_FAIL;
    }
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return ret;
}
