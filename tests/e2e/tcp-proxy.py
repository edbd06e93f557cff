#!/usr/bin/env python3
"""tcp-proxy.py LISTEN_PORT TARGET_HOST:TARGET_PORT: a tiny TCP forwarder
for the replication fault tests (owner: replicator helper).

Cut the link: kill the proxy (every connection drops at once) and start it
again later.  Stall the link: SIGSTOP it (bytes stop moving, connections
stay open), SIGCONT to resume.  Prints "ready" once listening.
"""
import socket
import sys
import threading


def pump(src, dst):
    try:
        while True:
            b = src.recv(65536)
            if not b:
                break
            dst.sendall(b)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def main():
    port = int(sys.argv[1])
    host, tport = sys.argv[2].rsplit(":", 1)
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
        for a, b in ((c, u), (u, c)):
            threading.Thread(target=pump, args=(a, b), daemon=True).start()


if __name__ == "__main__":
    main()
