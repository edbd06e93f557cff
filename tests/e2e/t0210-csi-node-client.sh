#!/bin/bash
# t0210-csi-node-client: part of tandem-csi's CSI conformance through an
# independent gRPC client (Node.js @grpc/grpc-js, proto-loader reading
# proto/csi.proto): for each backend (sqlite, then rados on the test Ceph
# cluster) starts a real tandem-csi (mode all) on regions a and b, runs
# tests/node/csi-conformance.js against its unix socket, then stops it
# with SIGTERM and checks it exits 0 and removes its socket.
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

# Both backends: the same client, the same checks.
run_backend() { # BACKEND
    local be=$1 d=$tmp/$1
    mkdir -p "$d"
    if [ "$be" = sqlite ]; then
        sqlite_regions "$d/regions.conf" a b
    else
        rados_regions "$d/regions.conf" "t0210-$$" a b
    fi
    local sock=$d/csi.sock
    start_bg "$d/csi.log" "$csi" --endpoint "unix://$sock" --mode all \
        --config "$d/regions.conf" --node-id n1 --region a \
        --state-dir "$d/state"
    local pid=$bgpid
    wait_ready "$pid" "$d/csi.log" tandem-csi -S "$sock"
    ok "$be: tandem-csi listening on $sock"

    node tests/node/csi-conformance.js "unix://$sock" proto >"$d/node.out" 2>&1
    node_tap "$d/node.out" $? "$d/csi.log" tandem-csi
    grep -q "^ok - deleted snapshot is gone" "$d/node.out" ||
        fail "$be: node script did not run every check"
    grep -q "event=csi.volume.created" "$d/csi.log" ||
        fail "$be: no structured volume log"

    stop_ok "$pid" "$d/csi.log" tandem-csi
    [ ! -e "$sock" ] || fail "$be: socket $sock left behind"
    ok "$be: SIGTERM: tandem-csi exited 0 and removed its socket"
}

run_backend sqlite
with_ceph run_backend rados
done_testing
