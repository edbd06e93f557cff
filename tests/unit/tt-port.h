/*
 * tt-port.h: a free loopback TCP port for tests and benchmarks that start
 * servers on fixed addresses (the region map names host:port).
 *
 * The port is taken BELOW the kernel's ephemeral range (32768+): a port
 * taken from that range and released can be grabbed again by an outgoing
 * connection (even a replicator's own connect to a peer that does not
 * listen yet), and then the listener fails.  Ports handed out once are
 * not handed out again by this process; processes start at different
 * points (by pid).  Returns -1 if none is free in 20000-32000.
 */
#ifndef TANDEM_TT_PORT_H
#define TANDEM_TT_PORT_H

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

static inline int tt_free_port(void)
{
    static int next;
    if (!next) next = 20000 + (getpid() % 400) * 30;
    for (int tries = 0; tries < 12000; tries++) {
        int port = next++;
        if (next >= 32000) next = 20000;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
        if (fd >= 0) close(fd);
        if (ok) return port;
    }
    return -1;
}

#endif
