/*
 * csi_main.c: tandem-csi, the CSI plugin process: flags, the region map,
 * the gRPC server on the CSI endpoint, node start-up repair of staged
 * volumes, and shutdown on SIGTERM/SIGINT.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "csi/datapath/blockdev.h"
#include "csi.h"
#include "csi_addons.h"
#include "rpc.h"
#include "tbase.h"
#include "tlog.h"
#include "tsig.h"

static void usage(FILE *f)
{
    fprintf(f,
"usage: tandem-csi [options]\n"
"Serve the CSI v1 Identity, Controller and/or Node services of tandem.\n"
"\n"
"  --endpoint EP            unix:///csi/csi.sock (default: $CSI_ENDPOINT, else\n"
"                           unix:///csi/csi.sock); host:port for TCP\n"
"  --mode MODE              controller, node or all (default all)\n"
"  --drivername NAME        CSI driver name (default " CSI_DEFAULT_DRIVER ")\n"
"  --config FILE            region map (journal/regions.h format), required\n"
"  --node-id ID             node id reported by NodeGetInfo (default $NODE_NAME,\n"
"                           else the hostname)\n"
"  --region R               this process's region (default: default_region)\n"
"  --zone Z                 this node's zone (optional)\n"
"  --topology-from-k8s-node read region/zone from the Node's labels\n"
"                           topology.kubernetes.io/region|zone through the\n"
"                           Kubernetes API (service account; node $NODE_NAME)\n"
"  --state-dir DIR          node: run dirs of staged volumes (default /run/tandem)\n"
"  --exporter PATH          tandem-volfuse binary (default: next to tandem-csi)\n"
"  --max-volumes-per-node N NodeGetInfo limit (default 0: none)\n"
"  --csi-addons-endpoint EP controller: also serve the CSI-Addons identity and\n"
"                           replication services there (unix:///csi/csi-addons.sock)\n"
"  --replicator-admin EP    with --csi-addons-endpoint: the region replicator's\n"
"                           admin API (unix:///path, or host:port with mTLS)\n"
"  --admin-tls-ca|-cert|-key FILE  the admin identity for a TCP admin API\n"
"  --threads N              gRPC worker threads (default 4)\n"
"  --health-link-down-s N   ControllerGetVolume: a replication link down longer\n"
"                           than N seconds makes a volume abnormal (default 60)\n"
"  --log-level LEVEL        debug, info, warn, error (default info)\n"
"  --help                   this text\n"
"  --version                print the version\n");
}

enum {
    O_ENDPOINT = 1, O_MODE, O_DRIVER, O_CONFIG, O_NODE_ID, O_REGION, O_ZONE,
    O_K8S, O_STATE, O_EXPORTER, O_MAXVOL, O_THREADS, O_LOGLEVEL, O_HELP,
    O_VERSION, O_LINKDOWN, O_ADDONS_EP, O_REP_ADMIN, O_ADM_CA, O_ADM_CERT,
    O_ADM_KEY,
};

static const struct option longopts[] = {
    {"endpoint", required_argument, NULL, O_ENDPOINT},
    {"mode", required_argument, NULL, O_MODE},
    {"drivername", required_argument, NULL, O_DRIVER},
    {"config", required_argument, NULL, O_CONFIG},
    {"node-id", required_argument, NULL, O_NODE_ID},
    {"region", required_argument, NULL, O_REGION},
    {"zone", required_argument, NULL, O_ZONE},
    {"topology-from-k8s-node", no_argument, NULL, O_K8S},
    {"state-dir", required_argument, NULL, O_STATE},
    {"exporter", required_argument, NULL, O_EXPORTER},
    {"max-volumes-per-node", required_argument, NULL, O_MAXVOL},
    {"threads", required_argument, NULL, O_THREADS},
    {"log-level", required_argument, NULL, O_LOGLEVEL},
    {"csi-addons-endpoint", required_argument, NULL, O_ADDONS_EP},
    {"replicator-admin", required_argument, NULL, O_REP_ADMIN},
    {"admin-tls-ca", required_argument, NULL, O_ADM_CA},
    {"admin-tls-cert", required_argument, NULL, O_ADM_CERT},
    {"admin-tls-key", required_argument, NULL, O_ADM_KEY},
    {"help", no_argument, NULL, O_HELP},
    {"version", no_argument, NULL, O_VERSION},
    {"health-link-down-s", required_argument, NULL, O_LINKDOWN},
    {NULL, 0, NULL, 0},
};

/* Hand-written: only the unix: prefix forms CSI sidecars use are told
 * apart; anything else goes to gRPC as is.
 * "unix:///a/b", "unix:/a/b" or "unix://a/b" -> "unix:///a/b"; TCP as is. */
static int norm_endpoint(const char *ep, char *out, size_t len, char *dir,
                         size_t dirlen)
{
    dir[0] = 0;
    if (strncmp(ep, "unix:", 5)) {
        snprintf(out, len, "%s", ep);
        return 0;
    }
    const char *p = ep + 5;
    while (p[0] == '/' && p[1] == '/') p++;
    if (p[0] != '/') return -EINVAL;
    snprintf(out, len, "unix://%s", p);
    snprintf(dir, dirlen, "%s", p);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    return 0;
}

/* mkdir -p (0755); a failure is logged, and the step that needs the
 * directory then fails with its own message. */
static void mkdirs(const char *path)
{
    int rc = tb_mkdir_p(path, 0755);
    if (rc < 0)
        tlog_warn("csi.mkdir_failed", "path=%s err=%d", path, rc);
}

static void reattach_cb(const char *run_dir, const char *vol_id,
                        const char *dev, int rc, void *arg)
{
    if (rc == 0)
        tlog_info("csi.node.reattach", "vol=%s dev=%s", vol_id, dev);
    else
        tlog_warn("csi.node.reattach_failed", "vol=%s run_dir=%s err=%d",
                  vol_id, run_dir, rc);
}

/* A whole decimal number in [min, max]; 0 or -EINVAL. */
static int parse_count(const char *s, long long min, long long max,
                       long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max) return -EINVAL;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    const char *endpoint = getenv("CSI_ENDPOINT");
    const char *node_name = getenv("NODE_NAME");
    struct csi_opts o = {.mode = CSI_MODE_ALL};
    int from_k8s = 0, threads = 4, c;
    long long n;
    enum tlog_level level = TLOG_INFO;
    char host[256] = "", k8s_region[RG_MAX_NAME + 1], k8s_zone[RG_MAX_NAME + 1];
    char err[1024], ep[1100], sockdir[1024], runs[1100];
    const char *addons_endpoint = NULL;
    struct csi_addons_opts ao = {0};
    char aep[1100], asockdir[1024];

    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case O_ENDPOINT: endpoint = optarg; break;
        case O_MODE:
            if (!strcmp(optarg, "controller")) o.mode = CSI_MODE_CONTROLLER;
            else if (!strcmp(optarg, "node")) o.mode = CSI_MODE_NODE;
            else if (!strcmp(optarg, "all")) o.mode = CSI_MODE_ALL;
            else {
                fprintf(stderr, "tandem-csi: --mode %s: not controller, node "
                        "or all\n", optarg);
                return 2;
            }
            break;
        case O_DRIVER: o.driver_name = optarg; break;
        case O_CONFIG: o.config_path = optarg; break;
        case O_NODE_ID: o.node_id = optarg; break;
        case O_REGION: o.region = optarg; break;
        case O_ZONE: o.zone = optarg; break;
        case O_K8S: from_k8s = 1; break;
        case O_STATE: o.state_dir = optarg; break;
        case O_EXPORTER: o.exporter_path = optarg; break;
        case O_MAXVOL:
            if (parse_count(optarg, 0, 1000000, &n) < 0) {
                fprintf(stderr, "tandem-csi: --max-volumes-per-node %s: not "
                        "a number from 0 (no limit) to 1000000\n", optarg);
                return 2;
            }
            o.max_volumes_per_node = n;
            break;
        case O_LINKDOWN:
            if (parse_count(optarg, 1, 86400 * 365, &n) < 0) {
                fprintf(stderr, "tandem-csi: --health-link-down-s %s: not a "
                        "number of seconds from 1 to 31536000\n", optarg);
                return 2;
            }
            o.health_link_down_s = n;
            break;
        case O_THREADS:
            if (parse_count(optarg, 1, 64, &n) < 0) {
                fprintf(stderr, "tandem-csi: --threads %s: not a number from "
                        "1 to 64\n", optarg);
                return 2;
            }
            threads = (int)n;
            break;
        case O_LOGLEVEL:
            if (!strcmp(optarg, "debug")) level = TLOG_DEBUG;
            else if (!strcmp(optarg, "info")) level = TLOG_INFO;
            else if (!strcmp(optarg, "warn")) level = TLOG_WARN;
            else if (!strcmp(optarg, "error")) level = TLOG_ERROR;
            else {
                fprintf(stderr, "tandem-csi: --log-level %s: unknown\n", optarg);
                return 2;
            }
            break;
        case O_ADDONS_EP: addons_endpoint = optarg; break;
        case O_REP_ADMIN: ao.admin_addr = optarg; break;
        case O_ADM_CA: ao.tls_ca = optarg; break;
        case O_ADM_CERT: ao.tls_cert = optarg; break;
        case O_ADM_KEY: ao.tls_key = optarg; break;
        case O_HELP: usage(stdout); return 0;
        case O_VERSION: printf("tandem-csi %s\n", CSI_VERSION); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "tandem-csi: unexpected argument %s\n", argv[optind]);
        return 2;
    }
    if (!o.config_path) {
        fprintf(stderr, "tandem-csi: --config FILE is required\n");
        return 2;
    }
    if (!endpoint || !endpoint[0]) endpoint = "unix:///csi/csi.sock";
    if (norm_endpoint(endpoint, ep, sizeof(ep), sockdir, sizeof(sockdir)) < 0) {
        fprintf(stderr, "tandem-csi: --endpoint %s: not unix:///abs/path or "
                "host:port\n", endpoint);
        return 2;
    }
    if (addons_endpoint) {
        if (!(o.mode & CSI_MODE_CONTROLLER)) {
            fprintf(stderr, "tandem-csi: --csi-addons-endpoint needs --mode "
                    "controller or all\n");
            return 2;
        }
        if (norm_endpoint(addons_endpoint, aep, sizeof(aep), asockdir,
                          sizeof(asockdir)) < 0) {
            fprintf(stderr, "tandem-csi: --csi-addons-endpoint %s: not "
                    "unix:///abs/path or host:port\n", addons_endpoint);
            return 2;
        }
    }
    if (!o.node_id || !o.node_id[0]) {
        if (node_name && node_name[0]) o.node_id = node_name;
        else if (gethostname(host, sizeof(host) - 1) == 0) o.node_id = host;
    }

    tb_signals_block();
    tlog_init("csi", level);

    if (from_k8s && (o.mode & CSI_MODE_NODE)) {
        const char *name = node_name && node_name[0] ? node_name : o.node_id;
        int rc = csi_k8s_node_topology(name, k8s_region, sizeof(k8s_region),
                                       k8s_zone, sizeof(k8s_zone), err,
                                       sizeof(err));
        if (rc < 0) {
            tlog_error("csi.k8s.topology_failed", "node=%s err=%d msg=\"%s\"",
                       name, rc, err);
            fprintf(stderr, "tandem-csi: node labels: %s\n", err);
            return 1;
        }
        if (k8s_region[0]) o.region = k8s_region;
        if (k8s_zone[0]) o.zone = k8s_zone;
        tlog_info("csi.k8s.topology", "node=%s region=%s zone=%s", name,
                  k8s_region[0] ? k8s_region : "-",
                  k8s_zone[0] ? k8s_zone : "-");
    }

    csi_service *svc = NULL;
    if (csi_service_create(&o, &svc, err, sizeof(err)) < 0) {
        fprintf(stderr, "tandem-csi: %s\n", err);
        return 1;
    }
    if (o.mode & CSI_MODE_NODE) {
        snprintf(runs, sizeof(runs), "%s/vols",
                 o.state_dir && o.state_dir[0] ? o.state_dir : "/run/tandem");
        mkdirs(runs);
        bd_reattach_all(runs, o.config_path, o.exporter_path, reattach_cb,
                        NULL);
    }
    if (sockdir[0]) mkdirs(sockdir);
    csi_addons *addons = NULL;
    rpc_server *asrv = NULL;
    if (addons_endpoint) {
        if (csi_addons_create(svc, &ao, &addons, err, sizeof(err)) < 0) {
            fprintf(stderr, "tandem-csi: %s\n", err);
            csi_service_destroy(svc);
            return 2;
        }
        if (asockdir[0]) mkdirs(asockdir);
        size_t an;
        const struct rpc_method *am = csi_addons_methods(&an);
        struct rpc_server_opts aso = {.methods = am, .n_methods = an,
                                      .svc = addons, .n_threads = 2};
        int arc = rpc_server_create(&aso, &asrv);
        if (arc == 0) {
            arc = rpc_server_listen(asrv, aep, NULL);
            if (arc >= 0) arc = rpc_server_start(asrv);
        }
        if (arc < 0) {
            fprintf(stderr, "tandem-csi: serving %s: %s\n", aep,
                    strerror(-arc));
            rpc_server_destroy(asrv, 0);
            csi_addons_destroy(addons);
            csi_service_destroy(svc);
            return 1;
        }
        tlog_info("csi.addons.started", "endpoint=%s replicator_admin=%s",
                  aep, ao.admin_addr);
    }

    size_t nm;
    const struct rpc_method *m = csi_methods(o.mode, &nm);
    struct rpc_server_opts so = {.methods = m, .n_methods = nm, .svc = svc,
                                 .n_threads = threads};
    rpc_server *srv = NULL;
    int rc = rpc_server_create(&so, &srv);
    if (rc == 0) {
        rc = rpc_server_listen(srv, ep, NULL);
        if (rc >= 0) rc = rpc_server_start(srv);
    }
    if (rc < 0) {
        fprintf(stderr, "tandem-csi: serving %s: %s\n", ep, strerror(-rc));
        rpc_server_destroy(srv, 0);
        rpc_server_destroy(asrv, 0);
        csi_addons_destroy(addons);
        csi_service_destroy(svc);
        return 1;
    }
    tlog_info("csi.started", "endpoint=%s mode=%s driver=%s version=%s "
              "node=%s", ep,
              o.mode == CSI_MODE_ALL ? "all"
              : o.mode == CSI_MODE_NODE ? "node" : "controller",
              o.driver_name ? o.driver_name : CSI_DEFAULT_DRIVER, CSI_VERSION,
              o.node_id ? o.node_id : "-");
    int sig = tb_signals_wait(0);
    tlog_info("csi.stopping", "signal=%d", sig);
    rpc_server_destroy(srv, 5000);
    rpc_server_destroy(asrv, 5000);
    csi_addons_destroy(addons);
    csi_service_destroy(svc);
    tlog_info("csi.stopped", "endpoint=%s", ep);
    return 0;
}
