#!/bin/bash
# t0230-csi-k8s-topology: tandem-csi --topology-from-k8s-node reads the
# Node's topology.kubernetes.io/region|zone labels from the Kubernetes API
# (HTTPS through libcurl with the service account's token and CA) and
# reports them in NodeGetInfo under the driver's own keys.  The API server
# is played by `openssl s_server -WWW` serving a Node object; a server
# certificate from another CA is refused (the plugin exits non-zero).
set -u
. "$(dirname "$0")/lib.sh"

csi=$B/tandem-csi
need_exe "$csi"
need_tools openssl node npm
e2e_scratch t0230
npm_install

# A CA and an API server certificate for 127.0.0.1; another CA.
mkca() {
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$1" \
        -keyout "$tmp/$1.key" -out "$tmp/$1.crt" >/dev/null 2>&1
}
mkca ca && mkca otherca || fail "openssl CA"
openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
    -keyout "$tmp/api.key" -out "$tmp/api.csr" >/dev/null 2>&1 &&
printf 'subjectAltName=IP:127.0.0.1,DNS:kubernetes.default.svc\n' >"$tmp/ext" &&
openssl x509 -req -in "$tmp/api.csr" -CA "$tmp/ca.crt" -CAkey "$tmp/ca.key" \
    -CAcreateserial -days 2 -extfile "$tmp/ext" -out "$tmp/api.crt" \
    >/dev/null 2>&1 || fail "openssl server certificate"
mkdir -p "$tmp/www/api/v1/nodes" "$tmp/sa" "$tmp/sa-other"
cat >"$tmp/www/api/v1/nodes/worker-7" <<'JSON'
{"kind":"Node","apiVersion":"v1","metadata":{"name":"worker-7",
 "annotations":{"x":"{\"labels\":{\"topology.kubernetes.io/region\":\"a\"}}"},
 "labels":{"kubernetes.io/hostname":"worker-7",
  "topology.kubernetes.io/region":"b","topology.kubernetes.io/zone":"b2"}},
 "status":{"addresses":[{"type":"InternalIP","address":"10.0.0.7"}]}}
JSON
echo "fake-token" >"$tmp/sa/token"
cp "$tmp/ca.crt" "$tmp/sa/ca.crt"
cp "$tmp/sa/token" "$tmp/sa-other/token"
cp "$tmp/otherca.crt" "$tmp/sa-other/ca.crt"
ok "certificates and Node object made"

port=""
for try in 1 2 3 4 5; do
    p=$((20000 + RANDOM % 20000))
    (cd "$tmp/www" && exec openssl s_server -quiet -WWW -accept "$p" \
        -cert "$tmp/api.crt" -key "$tmp/api.key") >"$tmp/s_server.log" 2>&1 &
    spid=$!
    deadline=$((SECONDS + 5))
    while kill -0 "$spid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do
        if (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then port=$p; break; fi
        sleep 0.05
    done
    if [ -n "$port" ]; then PIDS+=("$spid"); break; fi
    kill "$spid" 2>/dev/null
done
[ -n "$port" ] || fail "openssl s_server did not start: $(tail -2 "$tmp/s_server.log")"
ok "fake API server on 127.0.0.1:$port"

sqlite_regions "$tmp/regions.conf" a b

sock=$tmp/csi.sock
NODE_NAME=worker-7 KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT=$port \
    TANDEM_K8S_SA_DIR=$tmp/sa start_bg "$tmp/csi.log" "$csi" \
    --endpoint "unix://$sock" --mode node --config "$tmp/regions.conf" \
    --topology-from-k8s-node --state-dir "$tmp/state"
cpid=$bgpid
wait_ready "$cpid" "$tmp/csi.log" tandem-csi -S "$sock"
ok "tandem-csi started with --topology-from-k8s-node"

out=$(NODE_PATH=$PWD/tests/node/node_modules node -e '
const grpc = require("@grpc/grpc-js"), pl = require("@grpc/proto-loader");
const path = require("path");
const d = pl.loadSync("csi.proto", {keepCase: true, longs: String,
  includeDirs: [path.resolve(process.argv[2]), "/usr/include"]});
const csi = grpc.loadPackageDefinition(d).csi.v1;
new csi.Node(process.argv[1], grpc.credentials.createInsecure())
  .NodeGetInfo({}, (e, r) => { if (e) { console.log("ERR " + e.message);
    process.exit(1); } console.log(JSON.stringify(r)); process.exit(0); });
' "unix://$sock" proto 2>&1) || fail "NodeGetInfo: $out"
echo "# $out"
case $out in
*'"topology.tandem.csi.dev/region":"b"'*'"topology.tandem.csi.dev/zone":"b2"'*) ;;
*) fail "NodeGetInfo topology is not region b zone b2: $out" ;;
esac
case $out in *'"node_id":"worker-7"'*) ;; *) fail "node_id not worker-7: $out" ;; esac
ok "NodeGetInfo reports region b, zone b2 under the driver's keys"
grep -q 'event=csi.k8s.topology node=worker-7 region=b zone=b2' "$tmp/csi.log" ||
    fail "no csi.k8s.topology log line"
grep -q fake-token "$tmp/csi.log" && fail "the token was logged"
ok "logged the labels, not the token"
stop_ok "$cpid" "$tmp/csi.log" tandem-csi
ok "SIGTERM: exit 0"

# A server certificate the service-account CA did not sign: refused.
rm -f "$sock"
NODE_NAME=worker-7 KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT=$port \
    TANDEM_K8S_SA_DIR=$tmp/sa-other timeout 30 "$csi" --endpoint "unix://$sock" \
    --mode node --config "$tmp/regions.conf" --topology-from-k8s-node \
    --state-dir "$tmp/state" 2>"$tmp/csi2.log"
rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "untrusted API server accepted (exit $rc)"
grep -q "TLS" "$tmp/csi2.log" || fail "no TLS error in: $(tail -2 "$tmp/csi2.log")"
ok "API server certificate from another CA refused (exit $rc: $(grep -o "TLS[^\"]*" "$tmp/csi2.log" | head -1))"
# A Node that does not exist: refused with the status.
NODE_NAME=worker-404 KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT=$port \
    TANDEM_K8S_SA_DIR=$tmp/sa timeout 30 "$csi" --endpoint "unix://$sock" \
    --mode node --config "$tmp/regions.conf" --topology-from-k8s-node \
    --state-dir "$tmp/state" 2>"$tmp/csi3.log"
rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "unknown node accepted (exit $rc)"
ok "unknown Node refused (exit $rc: $(grep -o "msg=.*" "$tmp/csi3.log" | head -1))"
done_testing
