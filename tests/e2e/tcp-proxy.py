#!/usr/bin/env python3
"""tcp-proxy.py LISTEN_PORT TARGET_HOST:TARGET_PORT [--rate BYTES_PER_S]:
a tiny TCP forwarder for the replication fault tests (owner: replicator
helper).

Cut the link: kill the proxy (every connection drops at once) and start it
again later.  Stall the link: SIGSTOP it (bytes stop moving, connections
stay open), SIGCONT to resume.  Prints "ready" once listening.

--rate: a slow link.  Each direction carries at most BYTES_PER_S in all
(one link shared by every connection through the proxy, as a WAN link
is), in 4 KiB slots taken in turn, so a connection with a few bytes to
send waits for at most a slot or two of the others' bulk transfer, as
with the fair queueing of Linux's default qdisc (fq_codel) at a
bottleneck.  The proxy reads only what it may forward, so the senders'
own socket buffers fill up behind it, as they would behind a slow link.
"""
import socket
import sys
import threading
import time

SLOT = 4096


class Link:
    """One direction of the slow link: a schedule of 4 KiB slots."""

    def __init__(self, rate):
        self.rate = float(rate)
        self.mu = threading.Lock()
        self.free_at = 0.0

    def take(self, n):
        """Reserve the link for n bytes; return when they have crossed."""
        with self.mu:
            now = time.monotonic()
            start = max(now, self.free_at)
            self.free_at = start + n / self.rate
            done = self.free_at
        d = done - time.monotonic()
        if d > 0:
            time.sleep(d)


def pump(src, dst, link):
    try:
        while True:
            b = src.recv(SLOT if link else 65536)
            if not b:
                break
            if link:
                link.take(len(b))
            dst.sendall(b)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def main():
    args = sys.argv[1:]
    rate = 0
    if "--rate" in args:
        i = args.index("--rate")
        rate = int(args[i + 1])
        del args[i:i + 2]
    port = int(args[0])
    host, tport = args[1].rsplit(":", 1)
    up = Link(rate) if rate else None
    down = Link(rate) if rate else None
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(64)
    print("ready", flush=True)
    while True:
        c, _ = ls.accept()
        try:
            u = socket.create_connection((host, int(tport)), timeout=5)
            u.settimeout(None)
        except OSError:
            c.close()
            continue
        if rate:
            # Small buffers in the proxy: the queue is the senders', not
            # hidden in here.
            for s in (c, u):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for a, b, link in ((c, u, up), (u, c, down)):
            threading.Thread(target=pump, args=(a, b, link),
                             daemon=True).start()


if __name__ == "__main__":
    main()
