#!/bin/bash
# demo.sh: tandem's failover, end to end, on this one machine (make demo).
#
# Two regions, a and b, each with its own sqlite store, CSI controller and
# node plugin (unix sockets) and replicator (loopback TCP, mutual TLS with
# certificates made here).  A volume is provisioned as the
# external-provisioner would for a pod on region a's node
# (WaitForFirstConsumer), staged and written; replication catches up;
# region a is killed (kill -9); `tandemctl failover --to b` promotes the
# replica and writes the PV/PVC manifests; region b stages it and the
# files are checked; region a returns and `tandemctl resync` makes it the
# secondary of b.
#
# Every step is printed; checks print "ok N - ..." or "not ok N - ...".
# Exit 0 only if every check held.  Everything (processes, mounts, loop
# devices, the temporary directory) is cleaned up on any exit.
#
# Environment: TANDEM_BIN (programs, default build/), TANDEM_TEST_TMP
# (parent of the scratch dir, default /tmp), DEMO_KEEP=1 keeps the scratch
# dir for inspection (processes and mounts are still cleaned up).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${TANDEM_BIN:-$ROOT/build}
case $BIN in /*) ;; *) BIN=$ROOT/$BIN ;; esac

if [ "$(id -u)" -ne 0 ]; then
    echo "demo: needs root (it mounts filesystems, attaches loop devices and uses FUSE); run: sudo make demo" >&2
    exit 1
fi
for need in /dev/fuse /dev/loop-control; do
    if [ ! -e "$need" ]; then
        echo "demo: $need is missing: the node data path needs FUSE and loop devices" >&2
        exit 1
    fi
done

# shellcheck source=two-regions.sh
. "$ROOT/scripts/two-regions.sh"

TMP=$(mktemp -d "${TANDEM_TEST_TMP:-/tmp}/tandem-demo.XXXXXX") || exit 1
n=0
failed=0
finish() {
    local rc=$?
    trap - EXIT INT TERM
    # A closed stdout (e.g. `| head`) must not stop the cleanup.
    trap '' PIPE
    echo
    echo "==> cleaning up"
    if [ "${DEMO_KEEP:-0}" = 1 ]; then
        for r in a b; do tr_kill "$r" 2>/dev/null; done
        tr_umount_under "$TMP"
        tr_detach_loops_under "$TMP"
        echo "  kept $TMP"
    else
        tr_cleanup
    fi
    if [ $failed -eq 0 ] && [ $rc -eq 0 ]; then
        echo "demo: all $n checks held"
        exit 0
    fi
    echo "demo: FAILED ($failed of $n checks failed)"
    exit 1
}
trap finish EXIT
trap 'exit 1' INT TERM

step() {
    echo
    echo "==> $*"
}
check() {
    local what=$1
    shift
    n=$((n + 1))
    if "$@"; then
        echo "ok $n - $what"
    else
        echo "not ok $n - $what"
        failed=$((failed + 1))
    fi
}
# A check whose failure makes the rest meaningless.
must() {
    local before=$failed
    check "$@"
    if [ $failed -ne "$before" ]; then
        echo "demo: cannot go on; last lines of the logs:"
        for f in "$TMP"/a/*.log "$TMP"/b/*.log; do
            [ -s "$f" ] && { echo "--- $f"; tail -n 8 "$f"; }
        done
        exit 1
    fi
}
show() {
    echo "  \$ $*"
    "$@" 2>&1 | sed 's/^/    /'
    return "${PIPESTATUS[0]}"
}

step "setting up two regions in $TMP (sqlite stores, mTLS certificates)"
must "scratch layout, certificates and region maps" tr_init "$TMP" "$BIN"
echo "  region a: peer link 127.0.0.1:$TR_LINK_PORT_a, admin unix://$TMP/a/admin.sock"
echo "  region b: peer link 127.0.0.1:$TR_LINK_PORT_b, admin unix://$TMP/b/admin.sock"

step "starting region a and region b (CSI controller + node plugin + replicator each)"
must "region a is up" tr_start a
must "region b is up" tr_start b
show tr_csi a node node-get-info

step "creating a replicated volume through CSI, as the external-provisioner does for a pod on node-a-1 (WaitForFirstConsumer)"
PVC_UID=$(cat /proc/sys/kernel/random/uuid)
NAME=pvc-$PVC_UID
echo "  CreateVolume name=$NAME 256MiB, parameters replication=async peerRegion=b,"
echo "  preferred=[region a] requisite=[a, b], pvc demo/demo-data"
created_ok() {
    out=$(tr_create_volume a "$NAME" $((256 << 20)) demo-data demo) || return 1
    echo "$out" | sed 's/^/    /'
    VOL=$(echo "$out" | sed -n 's/^volume_id=//p')
    [ -n "$VOL" ] && echo "$out" | grep -qx 'topology=.*region=a.*'
}
must "volume created in region a (accessible topology: region a)" created_ok
CTX=()
while IFS= read -r line; do CTX+=(--ctx "${line#context.}"); done \
    < <(echo "$out" | grep '^context\.')

step "staging and publishing $VOL on node-a-1, writing files"
mount_a() { TGT_A=$(tr_mount a "$VOL" pod-a "${CTX[@]}"); }
must "NodeStageVolume + NodePublishVolume in region a" mount_a
echo "  mounted at $TGT_A"
write_files() {
    mkdir -p "$TGT_A/app" &&
        echo "hello from region a, $(date -u)" >"$TGT_A/app/hello.txt" &&
        head -c $((12 << 20)) /dev/urandom >"$TGT_A/app/random.bin" &&
        seq 1 200000 >"$TGT_A/app/numbers.txt" &&
        for i in $(seq 1 50); do echo "record $i" >"$TGT_A/app/rec-$i"; done &&
        sync -f "$TGT_A/app/hello.txt" &&
        (cd "$TGT_A" && find app -type f | sort | xargs sha256sum) >"$TMP/sums"
}
check "wrote 53 files (12 MiB random data, text) and synced them" write_files
show df -h "$TGT_A"

step "replication catches up (tandemctl status, both regions)"
show tr_ctl a --peer-admin "unix://$TMP/b/admin.sock" status
check "primary in a: lag 0, everything acknowledged by b" tr_wait_caught_up a "$VOL" 90
show tr_ctl a --peer-admin "unix://$TMP/b/admin.sock" status
echo "  the same over TCP with mutual TLS:"
show "$BIN/tandemctl" --admin "127.0.0.1:$TR_ADMIN_PORT_b" \
    --tls-ca "$TMP/certs/ca.pem" --tls-cert "$TMP/certs/tandemctl.pem" \
    --tls-key "$TMP/certs/tandemctl.key" status "$VOL"
HEAD_A=$(tr_field a "$VOL" head)

step "region a is lost: kill -9 its CSI controller, node plugin, exporter and replicator"
tr_kill a
echo "  region a's processes are gone; its mounts were torn down"
show tr_ctl b --peer-admin "unix://$TMP/a/admin.sock" status
check "status of the dead region fails with one line and exit 1" \
    bash -c '! "$0" --admin "unix://$1/a/admin.sock" status >/dev/null 2>"$1/err" && [ "$(wc -l <"$1/err")" -eq 1 ]' \
    "$BIN/tandemctl" "$TMP"

step "failover: tandemctl failover --to b --all --emit-manifests"
show tr_ctl b --peer-admin "unix://$TMP/a/admin.sock" failover --to b --all \
    --emit-manifests "$TMP/manifests" --config "$TMP/b/tandem.conf"
rc=$?
check "failover exit 0" test $rc -eq 0
check "$VOL is primary in region b" test "$(tr_field b "$VOL" role)" = primary
check "region b applied everything region a wrote (applied $HEAD_A)" \
    test "$(tr_field b "$VOL" applied)" = "$HEAD_A"
echo "  manifest for the surviving cluster ($TMP/manifests/$VOL.yaml):"
sed 's/^/    /' "$TMP/manifests/$VOL.yaml" 2>/dev/null
check "manifest binds the same volumeHandle in region b to demo/demo-data" \
    bash -c 'grep -q "volumeHandle: \"$1\"" "$0" && grep -q "driver: tandem.csi.dev" "$0" &&
             grep -A3 "key: topology.tandem.csi.dev/region" "$0" | grep -q "\"b\"" &&
             grep -q "name: \"demo-data\"" "$0" && grep -q "namespace: \"demo\"" "$0"' \
    "$TMP/manifests/$VOL.yaml" "$VOL"
show tr_ctl b failover --to b --all
check "failover again: nothing to do, exit 0" \
    bash -c '"$@" | grep -q "0 promoted now, 1 already primary"' _ \
    "$BIN/tandemctl" --admin "unix://$TMP/b/admin.sock" failover --to b --all

step "staging the replica on node-b-1 and checking the files"
# kubelet passes the PV's volumeAttributes as the volume context: take
# them from the manifest failover wrote.
CTX_B=()
while IFS= read -r line; do CTX_B+=(--ctx "$line"); done < <(
    sed -n '/^    volumeAttributes:/,/^  [a-z]/p' "$TMP/manifests/$VOL.yaml" |
        sed -n 's/^      \([A-Za-z]*\): "\{0,1\}\([^"]*\)"\{0,1\}$/\1=\2/p')
echo "  volume context from the manifest: ${CTX_B[*]}"
mount_b() { TGT_B=$(tr_mount b "$VOL" pod-b "${CTX_B[@]}"); }
must "NodeStageVolume + NodePublishVolume in region b" mount_b
check "every file has the checksum it had in region a" \
    bash -c 'cd "$0" && sha256sum --quiet -c "$1"' "$TGT_B" "$TMP/sums"
show cat "$TGT_B/app/hello.txt"
write_b() {
    echo "written in region b after the failover" >"$TGT_B/app/after-failover.txt" &&
        sync -f "$TGT_B/app/after-failover.txt" &&
        (cd "$TGT_B" && find app -type f | sort | xargs sha256sum) >"$TMP/sums-b"
}
check "region b accepts writes" write_b

step "region a comes back; its copy is stale (epoch below b's) and must not ship"
must "region a is up again" tr_start a
sleep_until_fenced() {
    local deadline=$((SECONDS + 30)) role st
    while [ $SECONDS -lt $deadline ]; do
        role=$(tr_field a "$VOL" role)
        st=$(tr_field a "$VOL" state)
        sb=$(tr_field a "$VOL" split_brain)
        # a's copy is either fenced (split-brain) or already demoted
        if [ "$sb" = true ] || [ "$role" = secondary ]; then return 0; fi
        sleep 0.2
    done
    echo "  role=$role state=$st split_brain=$sb" >&2
    return 1
}
check "region a's replicator fenced its old primary (higher epoch in b)" sleep_until_fenced
# What kubelet does for the pod that died with region a.
check "NodeUnpublishVolume + NodeUnstageVolume of the dead pod in region a" \
    tr_unmount a "$VOL" pod-a
show tr_ctl a --peer-admin "unix://$TMP/b/admin.sock" status

step "failback preparation: tandemctl resync $VOL in region a"
show tr_ctl a resync "$VOL"
rc=$?
check "resync exit 0" test $rc -eq 0
check "a's copy is a secondary now" tr_wait_field a "$VOL" role secondary 30
check "b ships to a again: lag 0" tr_wait_caught_up b "$VOL" 90
show tr_ctl a resync "$VOL"
show tr_ctl b --peer-admin "unix://$TMP/a/admin.sock" status

step "checking region a's copy: unstage in b, let it ship, stage read-only in a"
check "NodeUnpublishVolume + NodeUnstageVolume in region b" tr_unmount b "$VOL" pod-b
check "b's last writes acknowledged by a (lag 0)" tr_wait_caught_up b "$VOL" 60
ro_a() { TGT_RO=$(tr_mount a "$VOL" pod-ro --access-mode SINGLE_NODE_READER_ONLY "${CTX[@]}"); }
check "secondary staged read-only in region a" ro_a
check "region a's copy has every file of region b, after-failover.txt included" \
    bash -c 'cd "$0" && sha256sum --quiet -c "$1"' "${TGT_RO:-/nonexistent}" "$TMP/sums-b"
check "read-write staging of the secondary is refused in region a" \
    bash -c '! "$0" --endpoint "unix://$1/a/csi-node.sock" node-stage --volume-id "$2" --staging "$1/a/staging/x" 2>/dev/null' \
    "$BIN/tandem-csi-call" "$TMP" "$VOL"
check "NodeUnpublishVolume + NodeUnstageVolume in region a" tr_unmount a "$VOL" pod-ro
