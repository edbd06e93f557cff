#!/bin/bash
# t0210-csi-node-client: part of tandem-csi's CSI conformance through an
# independent gRPC client (Node.js @grpc/grpc-js, proto-loader reading
# proto/csi.proto): starts a real tandem-csi (mode all) on sqlite regions
# a and b, runs tests/node/csi-conformance.js against its unix socket,
# then stops it with SIGTERM and checks it exits 0 and removes its socket.
# The npm packages are installed into tests/node/node_modules on first
# use.  B selects the build dir.
set -u
cd "$(dirname "$0")/../.."
B=${B:-build}
n=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
fail() { n=$((n + 1)); echo "not ok $n - $*"; exit 1; }

csi=$B/tandem-csi
[ -x "$csi" ] || fail "$csi not built (make B=$B $csi)"
for tool in node npm; do
    command -v $tool >/dev/null || fail "$tool not found (scripts/install-deps.sh installs it)"
done
tmp=$(mktemp -d "${TANDEM_TEST_TMP:-/tmp}/t0210.XXXXXX")
pid=""
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

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
ok "npm packages present"

cat >"$tmp/regions.conf" <<CONF
[tandem]
default_region = a
[region a]
backend = sqlite
db_path = $tmp/a.db
[region b]
backend = sqlite
db_path = $tmp/b.db
CONF
sock=$tmp/csi.sock
"$csi" --endpoint "unix://$sock" --mode all --config "$tmp/regions.conf" \
    --node-id n1 --region a --state-dir "$tmp/state" 2>"$tmp/csi.log" &
pid=$!
deadline=$((SECONDS + 20))
while [ ! -S "$sock" ]; do
    kill -0 "$pid" 2>/dev/null || fail "tandem-csi died: $(tail -3 "$tmp/csi.log")"
    [ $SECONDS -lt $deadline ] || fail "tandem-csi not listening after 20 s"
    sleep 0.05
done
ok "tandem-csi listening on $sock"

node tests/node/csi-conformance.js "unix://$sock" proto >"$tmp/node.out" 2>&1
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
    echo "# tandem-csi log:"; sed 's/^/#   /' "$tmp/csi.log" | tail -20
    fail "node CSI checks (exit $node_rc)"
fi
grep -q "^ok - CreateSnapshot" "$tmp/node.out" || fail "node script did not run every check"
# Secrets never reach the log; the volume events do.
grep -q "event=csi.volume.created" "$tmp/csi.log" || fail "no structured volume log"

kill -TERM "$pid"
deadline=$((SECONDS + 20))
while kill -0 "$pid" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || fail "tandem-csi ignored SIGTERM for 20 s"
    sleep 0.05
done
wait "$pid"
rc=$?
pid=""
[ $rc -eq 0 ] || fail "tandem-csi exit status $rc: $(tail -3 "$tmp/csi.log")"
[ ! -e "$sock" ] || fail "socket $sock left behind"
ok "SIGTERM: tandem-csi exited 0 and removed its socket"
echo "1..$n"
