#!/bin/bash
# t0210-csi-node-client: part of tandem-csi's CSI conformance through an
# independent gRPC client (Node.js @grpc/grpc-js, proto-loader reading
# proto/csi.proto): starts a real tandem-csi (mode all) on sqlite regions
# a and b, runs tests/node/csi-conformance.js against its unix socket,
# then stops it with SIGTERM and checks it exits 0 and removes its socket.
# The npm packages are installed into tests/node/node_modules on first
# use.  B selects the build dir.
set -u
. "$(dirname "$0")/lib.sh"

csi=$B/tandem-csi
need_exe "$csi"
need_tools node npm
e2e_scratch t0210
npm_install
ok "npm packages present"

sqlite_regions "$tmp/regions.conf" a b
sock=$tmp/csi.sock
start_bg "$tmp/csi.log" "$csi" --endpoint "unix://$sock" --mode all \
    --config "$tmp/regions.conf" --node-id n1 --region a --state-dir "$tmp/state"
pid=$bgpid
wait_ready "$pid" "$tmp/csi.log" tandem-csi -S "$sock"
ok "tandem-csi listening on $sock"

node tests/node/csi-conformance.js "unix://$sock" proto >"$tmp/node.out" 2>&1
node_tap "$tmp/node.out" $? "$tmp/csi.log" tandem-csi
grep -q "^ok - deleted snapshot is gone" "$tmp/node.out" || fail "node script did not run every check"
grep -q "event=csi.volume.created" "$tmp/csi.log" || fail "no structured volume log"

stop_ok "$pid" "$tmp/csi.log" tandem-csi
[ ! -e "$sock" ] || fail "socket $sock left behind"
ok "SIGTERM: tandem-csi exited 0 and removed its socket"
done_testing
