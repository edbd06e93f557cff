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
cd "$(dirname "$0")/../.."
B=${B:-build}
n=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
fail() { n=$((n + 1)); echo "not ok $n - $*"; exit 1; }

server=$B/tests/rpc-echo-server
[ -x "$server" ] || fail "$server not built (make B=$B $server)"
for tool in node npm openssl; do
    command -v $tool >/dev/null || fail "$tool not found (scripts/install-deps.sh installs it)"
done

tmp=$(mktemp -d "${TANDEM_TEST_TMP:-/tmp}/t0100.XXXXXX")
pid=""
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

# npm packages, once.  A lock keeps two scripts from installing at once.
if [ ! -d tests/node/node_modules/@grpc/grpc-js ] ||
    [ ! -d tests/node/node_modules/@grpc/proto-loader ]; then
    (
        flock 9
        cd tests/node &&
            if [ -f package-lock.json ]; then
                npm ci --no-audit --no-fund --loglevel=error
            else
                npm install --no-audit --no-fund --loglevel=error
            fi
    ) 9>"${TMPDIR:-/tmp}/tandem-npm.lock" >"$tmp/npm.log" 2>&1 ||
        fail "npm install in tests/node: $(tail -3 "$tmp/npm.log")"
fi
ok "npm packages present ($(cd tests/node && node -p 'require("@grpc/grpc-js/package.json").version') grpc-js)"

scripts/gen-certs.sh "$tmp/pki" server node-client >"$tmp/certs.log" 2>&1 ||
    fail "gen-certs: $(tail -3 "$tmp/certs.log")"
ok "certificates made"

sock=$tmp/echo.sock
"$server" -u "unix://$sock" -t 127.0.0.1:0 -c "$tmp/pki" -p "$tmp/port" \
    2>"$tmp/server.log" &
pid=$!
deadline=$((SECONDS + 20))
while [ ! -s "$tmp/port" ]; do
    kill -0 "$pid" 2>/dev/null || fail "echo server died: $(tail -3 "$tmp/server.log")"
    [ $SECONDS -lt $deadline ] || fail "echo server not ready after 20 s"
    sleep 0.05
done
port=$(cat "$tmp/port")
[ -S "$sock" ] || fail "no socket at $sock"
ok "echo server listening (unix socket + mTLS port $port)"

# The node script prints ok/not ok lines; number them into this TAP stream.
node tests/node/rpc-interop.js "unix://$sock" "127.0.0.1:$port" "$tmp/pki" \
    >"$tmp/node.out" 2>&1
node_rc=$?
bad=0
while IFS= read -r line; do
    case $line in
    "ok - "*) n=$((n + 1)); echo "ok $n - node: ${line#ok - }" ;;
    "not ok - "*) n=$((n + 1)); echo "not ok $n - node: ${line#not ok - }"; bad=1 ;;
    *) echo "# $line" ;;
    esac
done <"$tmp/node.out"
if [ $node_rc -ne 0 ] || [ $bad -ne 0 ]; then
    echo "# server log:"; sed 's/^/#   /' "$tmp/server.log" | tail -20
    fail "node interop checks (exit $node_rc)"
fi
grep -q "^ok - mTLS Echo" "$tmp/node.out" || fail "node script did not run every check"

kill -TERM "$pid"
deadline=$((SECONDS + 20))
while kill -0 "$pid" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || fail "echo server ignored SIGTERM for 20 s"
    sleep 0.05
done
wait "$pid"
rc=$?
pid=""
[ $rc -eq 0 ] || fail "echo server exit status $rc: $(tail -3 "$tmp/server.log")"
[ ! -e "$sock" ] || fail "socket $sock left behind"
ok "SIGTERM: server exited 0 and removed its socket"
