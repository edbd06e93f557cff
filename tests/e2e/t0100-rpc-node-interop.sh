#!/bin/bash
# t0100-rpc-node-interop: an independent gRPC implementation (Node.js
# @grpc/grpc-js, from the npm registry) talks to tandem's C core RPC layer.
#
# Starts $B/tests/rpc-echo-server (tests/rpc/echo-server.c) on a unix
# socket (plaintext) and a loopback TCP port (mutual TLS, certificates from
# scripts/gen-certs.sh), runs tests/node/rpc-interop.js against it (plain
# unix call, mTLS call with the client identity checked, unknown method =
# code 12, status code + message, deadline, undecodable bytes, 8 MiB
# response, TLS without a client certificate refused), then stops the
# server with SIGTERM and checks it exits 0 and removes its socket.
#
# The npm packages are installed into tests/node/node_modules on first use
# (npm ci from the committed package-lock.json).  B selects the build dir.
set -u
. "$(dirname "$0")/lib.sh"

server=$B/tests/rpc-echo-server
need_exe "$server"
need_tools node npm openssl
e2e_scratch t0100
npm_install
ok "npm packages present ($(cd tests/node && node -p 'require("@grpc/grpc-js/package.json").version') grpc-js)"

scripts/gen-certs.sh "$tmp/pki" server node-client >"$tmp/certs.log" 2>&1 ||
    fail "gen-certs: $(tail -3 "$tmp/certs.log")"
ok "certificates made"

sock=$tmp/echo.sock
start_bg "$tmp/server.log" \
    "$server" -u "unix://$sock" -t 127.0.0.1:0 -c "$tmp/pki" -p "$tmp/port"
pid=$bgpid
wait_ready "$pid" "$tmp/server.log" "echo server" -s "$tmp/port"
port=$(cat "$tmp/port")
[ -S "$sock" ] || fail "no socket at $sock"
ok "echo server listening (unix socket + mTLS port $port)"

node tests/node/rpc-interop.js "unix://$sock" "127.0.0.1:$port" "$tmp/pki" \
    >"$tmp/node.out" 2>&1
node_tap "$tmp/node.out" $? "$tmp/server.log" "echo server"
grep -q "^ok - mTLS Echo" "$tmp/node.out" || fail "node script did not run every check"

stop_ok "$pid" "$tmp/server.log" "echo server"
[ ! -e "$sock" ] || fail "socket $sock left behind"
ok "SIGTERM: server exited 0 and removed its socket"
done_testing
