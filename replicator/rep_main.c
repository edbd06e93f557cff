/*
 * rep_main.c: tandem-replicator's command line.  Parses flags, builds the
 * engine (rep.h), waits for SIGTERM/SIGINT and shuts down cleanly.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rep.h"
#include "rpc.h"
#include "tlog.h"
#include "tsig.h"

static void usage(FILE *f)
{
    fprintf(f,
"usage: tandem-replicator --config FILE --region A --peer-region B [options]\n"
"\n"
"Ships the change journals of region A's primary volumes (replication=async,\n"
"peer region B) to B's replicator, and applies what B ships to A.\n"
"\n"
"  --config FILE          region map (regions.h format)\n"
"  --region NAME          this region\n"
"  --peer-region NAME     the peer region\n"
"  --listen HOST:PORT     peer-link listener (default: replicator= of REGION)\n"
"  --peer ADDR            peer's link address (default: replicator= of the\n"
"                         peer region)\n"
"  --admin unix:///PATH   admin API for tandemctl (plaintext unix socket,\n"
"                         mode 0600: the file mode is its access control)\n"
"  --admin-socket-mode M  the socket's mode instead (octal, owner and group\n"
"                         bits only: 0660 lets an operators' group in)\n"
"  --admin-tcp HOST:PORT  admin API over TCP with mutual TLS; only clients\n"
"                         whose certificate names the admin identity\n"
"                         (URI spiffe://TRUST-DOMAIN/tandem/admin); off\n"
"                         unless given\n"
"  --admin-tls-ca FILE    CA verifying admin clients (default: --tls-ca)\n"
"  --admin-tls-cert FILE  the admin port's certificate (default: --tls-cert)\n"
"  --admin-tls-key FILE   its key (default: --tls-key)\n"
"  --tls-ca FILE          CA verifying the peer replicator\n"
"  --tls-cert FILE        this replicator's certificate (server and client),\n"
"                         naming its region: URI\n"
"                         spiffe://TRUST-DOMAIN/tandem/region/REGION\n"
"  --tls-key FILE         its key\n"
"  --tls-server-name NAME name expected in the peer's certificate\n"
"  --trust-domain TD      trust domain of the identities (default\n"
"                         tandem.local); the link serves only the peer\n"
"                         region's identity\n"
"  --insecure             plaintext peer link without identities (tests\n"
"                         only; admin TCP stays mutual TLS)\n"
"  --metrics HOST:PORT    Prometheus text endpoint (GET /metrics)\n"
"  --max-bandwidth N      link budget in bytes/s (suffixes K M G; 0: none)\n"
"  --batch-bytes N        journal bytes per batch (default 8M)\n"
"  --no-compress          ship batches uncompressed\n"
"  --log-level LEVEL      debug, info, warn, error (default info)\n"
"  --help                 this text\n");
}

static int parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s) return -EINVAL;
    switch (*end) {
    case 'k': case 'K': v <<= 10; end++; break;
    case 'm': case 'M': v <<= 20; end++; break;
    case 'g': case 'G': v <<= 30; end++; break;
    }
    if (*end == 'i') end++;
    if (*end == 'B' || *end == 'b') end++;
    if (*end) return -EINVAL;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    struct rep_opts o = {0};
    enum tlog_level lvl = TLOG_INFO;
    enum {
        O_CONFIG = 256, O_REGION, O_PEER_REGION, O_LISTEN, O_PEER, O_ADMIN,
        O_ADMIN_TCP, O_CA, O_CERT, O_KEY, O_SNI, O_INSECURE, O_METRICS,
        O_BW, O_BATCH, O_NOCOMP, O_LOG, O_HELP, O_TD, O_ACA, O_ACERT,
        O_AKEY, O_AMODE
    };
    static const struct option lo[] = {
        {"config", 1, 0, O_CONFIG},       {"region", 1, 0, O_REGION},
        {"peer-region", 1, 0, O_PEER_REGION}, {"listen", 1, 0, O_LISTEN},
        {"peer", 1, 0, O_PEER},           {"admin", 1, 0, O_ADMIN},
        {"admin-tcp", 1, 0, O_ADMIN_TCP}, {"tls-ca", 1, 0, O_CA},
        {"tls-cert", 1, 0, O_CERT},       {"tls-key", 1, 0, O_KEY},
        {"tls-server-name", 1, 0, O_SNI}, {"insecure", 0, 0, O_INSECURE},
        {"metrics", 1, 0, O_METRICS},     {"max-bandwidth", 1, 0, O_BW},
        {"batch-bytes", 1, 0, O_BATCH},   {"no-compress", 0, 0, O_NOCOMP},
        {"log-level", 1, 0, O_LOG},       {"help", 0, 0, O_HELP},
        {"trust-domain", 1, 0, O_TD},     {"admin-tls-ca", 1, 0, O_ACA},
        {"admin-tls-cert", 1, 0, O_ACERT}, {"admin-tls-key", 1, 0, O_AKEY},
        {"admin-socket-mode", 1, 0, O_AMODE},
        {0, 0, 0, 0},
    };
    int c;
    uint64_t n;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case O_CONFIG: o.config_path = optarg; break;
        case O_REGION: o.region = optarg; break;
        case O_PEER_REGION: o.peer_region = optarg; break;
        case O_LISTEN: o.listen_addr = optarg; break;
        case O_PEER: o.peer_addr = optarg; break;
        case O_ADMIN:
            if (strncmp(optarg, "unix://", 7)) {
                fprintf(stderr, "tandem-replicator: --admin takes "
                        "unix:///path (use --admin-tcp for TCP)\n");
                return 2;
            }
            o.admin_addr = optarg;
            break;
        case O_ADMIN_TCP: o.admin_tcp = optarg; break;
        case O_CA: o.tls_ca = optarg; break;
        case O_CERT: o.tls_cert = optarg; break;
        case O_KEY: o.tls_key = optarg; break;
        case O_SNI: o.tls_server_name = optarg; break;
        case O_INSECURE: o.insecure = 1; break;
        case O_TD: o.trust_domain = optarg; break;
        case O_ACA: o.admin_tls_ca = optarg; break;
        case O_ACERT: o.admin_tls_cert = optarg; break;
        case O_AKEY: o.admin_tls_key = optarg; break;
        case O_AMODE: {
            char *end;
            errno = 0;
            unsigned long m = strtoul(optarg, &end, 8);
            if (errno || end == optarg || *end || m == 0 || m > 0777) {
                fprintf(stderr, "tandem-replicator: --admin-socket-mode: "
                        "octal permission bits (0600, 0660): %s\n", optarg);
                return 2;
            }
            o.admin_socket_mode = (unsigned)m;
            break;
        }
        case O_METRICS: o.metrics_addr = optarg; break;
        case O_BW:
        case O_BATCH:
            if (parse_size(optarg, &n) < 0) {
                fprintf(stderr, "tandem-replicator: %s: not a size: %s\n",
                        c == O_BW ? "--max-bandwidth" : "--batch-bytes",
                        optarg);
                return 2;
            }
            if (c == O_BW) o.max_bandwidth = n;
            else o.batch_bytes = (size_t)n;
            break;
        case O_NOCOMP: o.no_compress = 1; break;
        case O_LOG:
            if (!strcmp(optarg, "debug")) lvl = TLOG_DEBUG;
            else if (!strcmp(optarg, "info")) lvl = TLOG_INFO;
            else if (!strcmp(optarg, "warn")) lvl = TLOG_WARN;
            else if (!strcmp(optarg, "error")) lvl = TLOG_ERROR;
            else {
                fprintf(stderr, "tandem-replicator: --log-level: %s?\n", optarg);
                return 2;
            }
            break;
        case O_HELP:
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "tandem-replicator: unexpected argument %s\n",
                argv[optind]);
        return 2;
    }
    tb_signals_block();
    tlog_init("replicator", lvl);
    srandom((unsigned)time(NULL) ^ (unsigned)getpid());
    char err[512] = "";
    rep_ctx *r = NULL;
    int rc = rep_create(&o, &r, err, sizeof(err));
    if (rc < 0) {
        fprintf(stderr, "tandem-replicator: %s\n", err);
        return 1;
    }
    if ((rc = rep_start(r, err, sizeof(err))) < 0) {
        fprintf(stderr, "tandem-replicator: %s\n", err);
        rep_destroy(r);
        return 1;
    }
    /* Tests read the bound ports from here. */
    printf("link_port=%d metrics_port=%d\n", rep_link_port(r),
           rep_metrics_port(r));
    fflush(stdout);
    int sig = tb_signals_wait(0);
    tlog_info("rep.stopping", "signal=%d", sig);
    rep_destroy(r);
    tlog_info("rep.stopped", "region=%s", o.region);
    return 0;
}
