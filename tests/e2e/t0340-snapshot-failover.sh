#!/bin/bash
# t0340-snapshot-failover: a snapshot taken in region a survives the loss
# of region a and is restored in region b (issue 10), with two real
# regions on loopback (sqlite stores; with TANDEM_T0340_BACKEND=rados, as
# t0341-snapshot-failover-ceph.sh runs it, each region's store is a pool
# of the TANDEM_CEPH_* cluster, a RADOS namespace per run), the CSI plugins and
# replicators of scripts/two-regions.sh, and a raw block volume staged
# through the CSI node plugin.
#
#  1. a replicated volume in a, written (pattern P1); CreateSnapshot over
#     tandem-csi's socket with csi-snapshotter's metadata parameters;
#     written again (P2) over the same blocks and beyond
#  2. a second snapshot, then DeleteSnapshot of it in a: b takes both
#     journal entries, so b ends with exactly the first one
#  3. b applied everything; region a is killed (-9: replicator, CSI
#     plugins, the exporter that writes the volume)
#     (ControllerGetVolume before: replication ok; after the failover in
#     b: link-down, from meta.rep.health)
#  4. tandemctl failover --to b --all --emit-manifests DIR: the
#     VolumeSnapshotContent/VolumeSnapshot pair is written and right
#     (parsed as YAML: driver, snapshotHandle, Retain, the references,
#     the names from the snapshot's label)
#  5. b's ListSnapshots lists the snapshot (by id and by source volume)
#  6. CreateVolume from the snapshot in b; its bytes are P1, not P2
set -u
cd "$(dirname "$0")/../.." || exit 1
ROOT=$PWD
BIN=${TANDEM_BIN:-$ROOT/build}
case $BIN in /*) ;; *) BIN=$ROOT/$BIN ;; esac

if [ "$(id -u)" -ne 0 ]; then echo "1..0 # SKIP needs root (loop devices, FUSE)"; exit 77; fi
for dev in /dev/fuse /dev/loop-control; do
    [ -e "$dev" ] || { echo "1..0 # SKIP $dev missing"; exit 77; }
done
python3 -c 'import yaml' 2>/dev/null ||
    { echo "1..0 # SKIP python3-yaml missing (the manifests are parsed)"; exit 77; }
. scripts/two-regions.sh
# Before the EXIT trap: a skip must exit 77.
BACKEND=${TANDEM_T0340_BACKEND:-sqlite}
if [ "$BACKEND" = rados ]; then
    why=${TANDEM_CEPH_SKIP:-}
    [ -z "$why" ] && [ -z "${TANDEM_CEPH_CONF:-}" ] && why="TANDEM_CEPH_CONF not set"
    if [ -n "$why" ]; then
        if [ "${TANDEM_REQUIRE_CEPH:-}" = 1 ]; then
            echo "not ok 1 - TANDEM_REQUIRE_CEPH=1 but no Ceph cluster: $why"
            exit 1
        fi
        echo "1..0 # SKIP $why"
        exit 77
    fi
fi

TMP=$(mktemp -d "${TANDEM_TEST_TMP:-/tmp}/t0340.XXXXXX") || exit 1
n=0
failed=0
finish() {
    trap - EXIT
    trap '' PIPE
    if [ $failed -ne 0 ]; then
        for f in "$TMP"/a/*.log "$TMP"/b/*.log; do
            [ -s "$f" ] && { echo "# --- $f"; tail -n 15 "$f" | sed 's/^/# /'; }
        done
    fi
    tr_cleanup
    echo "# $n checks, $failed failed, ${SECONDS}s"
    [ $failed -eq 0 ] && exit 0 || exit 1
}
trap finish EXIT
trap 'exit 1' INT TERM

ok() { n=$((n + 1)); echo "ok $n - $*"; }
nok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $*"; }
check() {
    local what=$1
    shift
    if "$@"; then ok "$what"; else nok "$what"; fi
}
# The rest is meaningless without this.
must() {
    local before=$failed
    check "$@"
    [ $failed -eq "$before" ] || exit 1
}

SIZE=$((16 << 20))
BLOCK=(--block)
RO=(--block --access-mode SINGLE_NODE_READER_ONLY)
KEY=topology.tandem.csi.dev/region

sum_of() { dd if="$1" bs=1M iflag=direct status=none | sha256sum | cut -d' ' -f1; }
# Write MIB MiB of fresh random data at MiB offset OFF of a device.
write_at() {
    dd if=/dev/urandom of="$1" bs=1M count="$3" seek="$2" \
        oflag=direct conv=notrunc,fsync status=none
}
# Wait until VOL's copy in region R holds COUNT snapshots (status).
snaps_are() {
    local r=$1 vol=$2 want=$3 deadline=$((SECONDS + ${4:-30}))
    while [ "$(tr_field "$r" "$vol" snapshot_count)" != "$want" ]; do
        [ $SECONDS -ge $deadline ] && {
            echo "# $r $vol: snapshot_count=$(tr_field "$r" "$vol" snapshot_count), want $want" >&2
            return 1
        }
        sleep 0.2
    done
}

# ------------------------------------------------------------- setup --
tr_init "$TMP" "$BIN" || exit 1
# rados: each region's own store becomes its pool (the peer's placeholder
# stays an empty sqlite file, out of reach as two-regions.sh intends).
to_rados() { # REGION POOL
    python3 - "$TMP/$1/tandem.conf" "$1" "$2" "t0340-$$" <<'PY'
import os, sys
path, region, pool, ns = sys.argv[1:]
out, skip = [], False
for line in open(path).read().splitlines():
    if line.startswith("["):
        skip = line.strip() == "[region %s]" % region
        if skip:
            out += [line, "backend = rados",
                    "ceph_conf = " + os.environ["TANDEM_CEPH_CONF"],
                    "client_id = " + os.environ.get("TANDEM_CEPH_CLIENT", "admin"),
                    "keyring = " + os.environ.get("TANDEM_CEPH_KEYRING", ""),
                    "pool = " + pool, "rados_namespace = " + ns]
            continue
    if skip and (line.startswith("backend") or line.startswith("db_path")):
        continue
    out.append(line)
open(path, "w").write("\n".join(out) + "\n")
PY
}
if [ "$BACKEND" = rados ]; then
    to_rados a "$TANDEM_CEPH_POOL_A" && to_rados b "$TANDEM_CEPH_POOL_B" ||
        { nok "rados region maps"; exit 1; }
fi
echo "# backend $BACKEND"
must "region a up" tr_start a
must "region b up" tr_start b
out=$(tr_create_volume a pvc-t0340 $SIZE data-0 shop "${BLOCK[@]}") ||
    { nok "create the volume in a: $out"; exit 1; }
VOL=$(echo "$out" | sed -n 's/^volume_id=//p')
must "replicated block volume $VOL created in a" test -n "$VOL"
DEV=$(tr_mount a "$VOL" app "${BLOCK[@]}")
must "staged read-write in a" test -n "${DEV:-}"

# ------------------------------------------------ 1. P1, snapshot, P2 --
must "P1 written in a" write_at "$DEV" 0 6
SUM_P1=$(sum_of "$DEV")
# csi-snapshotter --extra-create-metadata sends these three.
SNAP_NAME=snapshot-0b7c2e1a-5d4f-4e36-9a1b-0f2d3c4e5a61
out=$(tr_csi a ctrl create-snapshot --name "$SNAP_NAME" --source-volume "$VOL" \
    --param csi.storage.k8s.io/volumesnapshot/name=nightly \
    --param csi.storage.k8s.io/volumesnapshot/namespace=shop \
    --param csi.storage.k8s.io/volumesnapshotcontent/name=snapcontent-0b7c2e1a 2>&1)
SID=$(echo "$out" | sed -n 's/^snapshot_id=//p')
must "CreateSnapshot in a: $SID" test -n "$SID"
check "the snapshot is ready when CreateSnapshot returns" \
    grep -q '^ready_to_use=true$' <<<"$out"
check "the snapshot id is <volume id>@<snap id>" \
    test "${SID%%@*}" = "$VOL"
must "P2 written over P1 and beyond" write_at "$DEV" 0 10
SUM_P2=$(sum_of "$DEV")
must "P2 differs from P1" test "$SUM_P1" != "$SUM_P2"

# --------------------------------- 2. a deleted snapshot goes in b too --
out=$(tr_csi a ctrl create-snapshot --name snapshot-doomed --source-volume "$VOL" 2>&1)
SID2=$(echo "$out" | sed -n 's/^snapshot_id=//p')
must "second snapshot in a: $SID2" test -n "$SID2"
check "b holds both snapshots" snaps_are b "$VOL" 2 60
must "DeleteSnapshot of the second one in a" \
    tr_csi a ctrl delete-snapshot --snapshot-id "$SID2"
check "a holds one snapshot" snaps_are a "$VOL" 1 10
check "the deletion replicated: b holds one snapshot" snaps_are b "$VOL" 1 60

# ----------------------------------------- 3. caught up, then lose a --
must "b applied everything a wrote" tr_wait_caught_up a "$VOL" 60
# The replication health the replicator records (meta.rep.health), as
# ControllerGetVolume reports it.
health_is() { # REGION STATE PEER
    local deadline=$((SECONDS + 30)) out
    while :; do
        out=$(tr_csi "$1" ctrl controller-get-volume --volume-id "$VOL" 2>&1)
        grep -q "^message=replication to region $3: $2 since " <<<"$out" &&
            grep -q '^abnormal=false$' <<<"$out" && return 0
        [ $SECONDS -ge $deadline ] && { echo "# $out" >&2; return 1; }
        sleep 0.2
    done
}
check "ControllerGetVolume in a: replication to b ok, normal" health_is a ok b
tr_kill a
a_gone() { ! tr_ctl a status >/dev/null 2>&1; }
check "region a is gone (its admin socket does not answer)" a_gone

# ------------------------------------------------ 4. failover, manifests --
MAN=$TMP/manifests
tr_ctl b failover --to b --all --emit-manifests "$MAN" >"$TMP/fo.out" 2>"$TMP/fo.err"
RC=$?
must "failover --to b --all --emit-manifests: exit 0 (rc=$RC: $(cat "$TMP/fo.err"))" \
    test $RC -eq 0
check "failover names the snapshot manifest file" \
    grep -q "$VOL: 1 snapshot: $MAN/$VOL.snapshots.yaml" "$TMP/fo.out"
check "the PersistentVolume manifest is there too" test -s "$MAN/$VOL.yaml"
check_manifests() {
    python3 - "$MAN/$VOL.snapshots.yaml" "$SID" <<'PY'
import sys, yaml
path, sid = sys.argv[1:]
docs = [d for d in yaml.safe_load_all(open(path)) if d]
def bad(msg):
    print("# %s: %s" % (path, msg)); sys.exit(1)
if len(docs) != 2: bad("%d objects, want 2" % len(docs))
vsc = [d for d in docs if d.get("kind") == "VolumeSnapshotContent"]
vs = [d for d in docs if d.get("kind") == "VolumeSnapshot"]
if len(vsc) != 1 or len(vs) != 1: bad("want one VolumeSnapshotContent and one VolumeSnapshot")
vsc, vs = vsc[0], vs[0]
for d in (vsc, vs):
    if d.get("apiVersion") != "snapshot.storage.k8s.io/v1": bad("apiVersion %r" % d.get("apiVersion"))
c = vsc["spec"]
want = {"driver": "tandem.csi.dev", "deletionPolicy": "Retain"}
for k, v in want.items():
    if c.get(k) != v: bad("VolumeSnapshotContent spec.%s = %r" % (k, c.get(k)))
if c["source"] != {"snapshotHandle": sid}: bad("source %r" % c["source"])
if c.get("sourceVolumeMode") != "Block": bad("sourceVolumeMode %r" % c.get("sourceVolumeMode"))
if c["volumeSnapshotRef"] != {"namespace": "shop", "name": "nightly"}:
    bad("volumeSnapshotRef %r" % c["volumeSnapshotRef"])
if vsc["metadata"]["name"] != "snapcontent-0b7c2e1a": bad("content name %r" % vsc["metadata"]["name"])
if vs["metadata"] != {"name": "nightly", "namespace": "shop"}: bad("VolumeSnapshot metadata %r" % vs["metadata"])
if vs["spec"] != {"source": {"volumeSnapshotContentName": "snapcontent-0b7c2e1a"}}:
    bad("VolumeSnapshot spec %r" % vs["spec"])
PY
}
check "VolumeSnapshotContent + VolumeSnapshot bind the snapshot (parsed)" check_manifests

check "ControllerGetVolume in b: the link to lost a is down (not yet abnormal: under the threshold)" \
    health_is b link-down a

# ------------------------------------------- 5. b's controller lists it --
out=$(tr_csi b ctrl list-snapshots --snapshot-id "$SID" 2>&1)
check "ListSnapshots in b by id: the snapshot, ready" \
    grep -q "^snapshot_id=$SID source_volume_id=$VOL size_bytes=$SIZE ready_to_use=true\$" <<<"$out"
out=$(tr_csi b ctrl list-snapshots --source-volume "$VOL" 2>&1)
check "ListSnapshots in b by source volume: exactly that one" \
    test "$(grep -c '^snapshot_id=' <<<"$out")" = 1 -a -n "$(grep -F "snapshot_id=$SID " <<<"$out")"

# ---------------------------------------------- 6. restore in b, read --
out=$(tr_csi b ctrl create-volume --name pvc-t0340-restore --size $SIZE \
    "${BLOCK[@]}" --source-snapshot "$SID" \
    --preferred "$KEY=b" --requisite "$KEY=b" 2>&1)
RVOL=$(echo "$out" | sed -n 's/^volume_id=//p')
must "CreateVolume from the snapshot in b: $RVOL" test -n "$RVOL"
RDEV=$(tr_mount b "$RVOL" restore "${RO[@]}")
must "the restored volume stages in b" test -n "${RDEV:-}"
SUM_R=$(sum_of "$RDEV")
check "the restored bytes are P1" test "$SUM_R" = "$SUM_P1"
check "... and not P2" test "$SUM_R" != "$SUM_P2"
check "the restored volume unstages" tr_unmount b "$RVOL" restore
# The promoted volume itself holds P2: nothing written before the loss
# was lost, and the restore did not touch it.
BDEV=$(tr_mount b "$VOL" b-app "${RO[@]}")
check "the promoted volume in b holds P2" test "$(sum_of "$BDEV")" = "$SUM_P2"
