/*
 * echo-server.c: the tandem.test.Echo service (tests/rpc/echo-svc.h) as a
 * process, the peer of the Node.js interop test (t0100).
 *
 *   rpc-echo-server -u unix:///path.sock [-t host:port -c CERT_DIR]
 *                   [-p PORT_FILE] [-w WORKERS]
 *
 * CERT_DIR holds ca.pem, server.pem, server.key (scripts/gen-certs.sh);
 * the TCP listener is mutual TLS.  Once listening, the bound TCP port is
 * written to PORT_FILE (atomically, by rename) so a script can wait for
 * it.  SIGTERM or SIGINT: clean shutdown, socket removed, exit 0.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/rpc/echo-svc.h"
#include "tlog.h"
#include "tsig.h"

static void usage(const char *p)
{
    fprintf(stderr,
            "usage: %s -u unix:///path [-t host:port -c cert_dir] "
            "[-p port_file] [-w workers]\n",
            p);
    exit(2);
}

int main(int argc, char **argv)
{
    const char *uaddr = NULL, *taddr = NULL, *cdir = NULL, *pfile = NULL;
    int workers = 2, c;
    while ((c = getopt(argc, argv, "u:t:c:p:w:h")) != -1) {
        switch (c) {
        case 'u': uaddr = optarg; break;
        case 't': taddr = optarg; break;
        case 'c': cdir = optarg; break;
        case 'p': pfile = optarg; break;
        case 'w': workers = atoi(optarg); break;
        default: usage(argv[0]);
        }
    }
    if (!uaddr || (taddr && !cdir) || workers < 1)
        usage(argv[0]);

    tb_signals_block();
    tlog_init("echo-server", TLOG_INFO);

    struct echo_stats st = {0};
    struct rpc_server_opts o = {.methods = echo_methods,
                                .n_methods = ECHO_N_METHODS,
                                .svc = &st,
                                .n_threads = workers};
    rpc_server *srv = NULL;
    int rc = rpc_server_create(&o, &srv);
    if (rc < 0) {
        tlog_error("echo.create_failed", "err=%s", strerror(-rc));
        return 1;
    }
    int port = 0;
    if ((rc = rpc_server_listen(srv, uaddr, NULL)) < 0) {
        tlog_error("echo.listen_failed", "addr=%s err=%s", uaddr,
                   strerror(-rc));
        goto fail;
    }
    if (taddr) {
        char ca[4096], crt[4096], key[4096];
        snprintf(ca, sizeof ca, "%s/ca.pem", cdir);
        snprintf(crt, sizeof crt, "%s/server.pem", cdir);
        snprintf(key, sizeof key, "%s/server.key", cdir);
        struct rpc_tls tls = {ca, crt, key, NULL};
        if ((port = rpc_server_listen(srv, taddr, &tls)) < 0) {
            rc = port;
            tlog_error("echo.listen_failed", "addr=%s err=%s", taddr,
                       strerror(-rc));
            goto fail;
        }
    }
    if ((rc = rpc_server_start(srv)) < 0) {
        tlog_error("echo.start_failed", "err=%s", strerror(-rc));
        goto fail;
    }
    if (pfile) {
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", pfile);
        FILE *f = fopen(tmp, "w");
        if (!f || fprintf(f, "%d\n", port) < 0 || fclose(f) != 0 ||
            rename(tmp, pfile) < 0) {
            tlog_error("echo.port_file_failed", "path=%s", pfile);
            rc = -EIO;
            goto fail;
        }
    }
    tlog_info("echo.ready", "unix=%s tcp_port=%d", uaddr, port);
    int sig = tb_signals_wait(0);
    tlog_info("echo.stopping", "signal=%d calls=%d", sig,
              atomic_load(&st.calls));
    rpc_server_destroy(srv, 2000);
    return 0;
fail:
    rpc_server_destroy(srv, 0);
    return 1;
}
