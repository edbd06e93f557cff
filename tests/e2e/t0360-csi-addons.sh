#!/bin/bash
# t0360-csi-addons: the CSI-Addons replication service of tandem-csi
# (--csi-addons-endpoint), driven through the independent Node.js client
# loading the published csi-addons protos (tests/node/csi-addons.js), with
# two real regions on loopback (sqlite stores, mTLS peer link, a
# replicator and a controller per region, each controller talking to its
# region's replicator admin socket).
#
#  1. every RPC, repeats and error codes (node conformance), on its own
#     volume, switched over a -> b -> a and disabled again
#  2. a volume created unreplicated and written; EnableVolumeReplication:
#     the peer gets a full copy, then the journal; more writes, caught up;
#     GetVolumeReplicationInfo: HEALTHY, last_sync_time sane
#  3. region a killed (kill -9 of its replicator and controller) after a
#     burst of writes b never got (GetVolumeReplicationInfo: lagging); PromoteVolume without force refused
#     (FAILED_PRECONDITION), with force OK (twice); b's image is a prefix
#     of the write log; b takes writes
#  4. a comes back: its copy is fenced (split brain); DemoteVolume OK,
#     ResyncVolume answers ready=false while it runs, then ready=true; a
#     equals b byte for byte
#  5. planned switchback (Demote b, Promote a), DisableVolumeReplication:
#     the replica in b is deleted; repeats OK; Enable again: b gets a full
#     copy again
set -u
cd "$(dirname "$0")/../.."
. tests/e2e/lib-rep.sh
CSI=$B/tandem-csi
[ -x "$CSI" ] || { echo "not ok 1 - $CSI not built (make programs)"; exit 1; }
command -v node >/dev/null || { echo "not ok 1 - node not found"; exit 1; }
rep_setup t0360
# The npm packages of tests/node, as lib.sh's npm_install gets them (the
# committed lock, one installer at a time).
if ! [ -d tests/node/node_modules/@grpc/grpc-js ] ||
   ! [ -d tests/node/node_modules/@grpc/proto-loader ]; then
    (
        flock 9
        cd tests/node && npm ci --no-audit --no-fund --loglevel=error
    ) 9>"${TMPDIR:-/tmp}/tandem-npm.lock" >"$tmp/npm.log" 2>&1 ||
        fail "npm ci in tests/node: $(tail -3 "$tmp/npm.log")"
fi
write_config sqlite
# Flag errors: one line on stderr, exit 2, nothing served.
for args in "--mode node --csi-addons-endpoint unix://$tmp/x.sock --replicator-admin unix://$tmp/a.sock" \
    "--mode controller --csi-addons-endpoint unix://$tmp/x.sock" \
    "--mode controller --csi-addons-endpoint unix://$tmp/x.sock --replicator-admin 127.0.0.1:1" \
    "--mode controller --csi-addons-endpoint unix:relative/x.sock --replicator-admin unix://$tmp/a.sock"; do
    # shellcheck disable=SC2086
    "$CSI" --config "$CONF" --endpoint "unix://$tmp/y.sock" $args >"$tmp/flag.out" 2>&1
    rc=$?
    [ $rc -eq 2 ] && [ "$(wc -l <"$tmp/flag.out")" -eq 1 ] ||
        fail "tandem-csi $args: exit $rc, output: $(cat "$tmp/flag.out")"
    [ ! -e "$tmp/x.sock" ] || fail "tandem-csi $args: socket made"
done
ok "bad csi-addons flags: one line on stderr, exit 2 ($(cat "$tmp/flag.out"))"
start_rep a b
start_rep b a
ok "two replicators up with mTLS"

# start_csi REGION: the controller of REGION with its csi-addons endpoint.
start_csi() {
    local r=$1
    "$CSI" --mode controller --config "$CONF" --region "$r" \
        --endpoint "unix://$tmp/csi-$r.sock" \
        --csi-addons-endpoint "unix://$tmp/addons-$r.sock" \
        --replicator-admin "unix://$tmp/$r.sock" \
        >>"$tmp/csi-$r.log" 2>&1 &
    local pid=$!
    PIDS="$PIDS $pid"
    eval "CSIPID_$r=$pid"
    wait_for 10 "[ -S $tmp/addons-$r.sock ]" || fail "tandem-csi $r did not start"
}
start_csi a
start_csi b
ok "two controllers with csi-addons endpoints"

# rpc REGION METHOD JSON: one call on REGION's csi-addons endpoint; OUT is
# the answer (JSON) or "ERR CODE details"; returns the call's success.
rpc() {
    OUT=$(node tests/node/csi-addons.js call "unix://$tmp/addons-$1.sock" \
        "$2" "$3" 2>&1)
}
src() { echo "\"replication_source\":{\"volume\":{\"volume_id\":\"$1\"}}"; }
ts_of() { # JSON -> last_sync_time in ms
    python3 -c 'import json,sys; t=json.loads(sys.argv[1])["last_sync_time"]; print(int(t["seconds"])*1000+t["nanos"]//1000000)' "$1"
}
now_ms() { python3 -c 'import time; print(int(time.time()*1000))'; }

# ---- 1. conformance
# Created through the CSI controller, as the external-provisioner would,
# from a StorageClass with replication: none.
c=pvc-cf-$$
out=$("$B/tandem-csi-call" --endpoint "unix://$tmp/csi-a.sock" create-volume \
    --name "$c" --size $((4 << 20)) --block --param replication=none \
    --param csi.storage.k8s.io/pvc/name=data-cf \
    --requisite topology.tandem.csi.dev/region=a 2>&1) ||
    fail "CreateVolume $c: $out"
echo "$out" | grep -q "volume_id=$c" || fail "CreateVolume $c: $out"
[ "$("$TOOL" stat "$CONF" a "$c" --meta csi.replication)" = none ] ||
    fail "$c: csi.replication is not none"
ok "$c created unreplicated through CreateVolume"
"$TOOL" write "$CONF" a "$c" --log "$tmp/$c.wlog" --count 20 --seed 7 \
    --max-len 16K >/dev/null || fail "write $c"
node tests/node/csi-addons.js conformance "unix://$tmp/addons-a.sock" \
    "unix://$tmp/addons-b.sock" "$c" >"$tmp/node.out" 2>&1
nrc=$?
while IFS= read -r line; do
    case $line in
        "ok - "*) ok "node: ${line#ok - }" ;;
        "not ok - "*) n=$((n + 1)); echo "not ok $n - node: ${line#not ok - }" ;;
    esac
done <"$tmp/node.out"
[ $nrc -eq 0 ] || fail "node conformance failed ($(tail -2 "$tmp/node.out" | tr '\n' ' '))"
grep -q "^ok - DisableVolumeReplication #2" "$tmp/node.out" ||
    fail "node conformance did not run every check"

# ---- 2. enable on a volume that already holds data
v=vol-$$
# A small journal cap: the writes outgrow it, so the journal no longer
# starts at seq 1 and the replica can only start from a region copy.
"$TOOL" create "$CONF" a "$v" 8M --object-size 1M --cap 256K || fail "create $v"
"$TOOL" write "$CONF" a "$v" --log "$tmp/$v.wlog" --count 150 --seed 11 \
    --max-len 64K >/dev/null || fail "write $v"
[ "$("$TOOL" stat "$CONF" a "$v" --meta csi.replication)" != async ] ||
    fail "$v is replicated before EnableVolumeReplication"
"$TOOL" stat "$CONF" b "$v" >/dev/null 2>&1 && fail "$v exists in b already"
st=$("$TOOL" stat "$CONF" a "$v")
echo "$st" | grep -Eq "dirty_tracking=1|tail=([2-9]|[1-9][0-9])" ||
    fail "the journal of $v still starts at seq 1: $st"
ok "$v created unreplicated in a and written (150 writes past its journal cap)"
p="{$(src "$v"),\"parameters\":{\"mirroringMode\":\"journal\",\"schedulingInterval\":\"5m\"}}"
rpc a EnableVolumeReplication "$p" || fail "Enable: $OUT"
rpc a EnableVolumeReplication "$p" || fail "Enable repeated: $OUT"
ok "EnableVolumeReplication OK, and again"
"$TOOL" wait-sync "$CONF" a b "$v" --timeout 60 >/dev/null ||
    fail "b did not catch up after enable: $("$TOOL" stat "$CONF" b "$v" 2>&1)"
out=$("$TOOL" cmp "$CONF" a b "$v") || fail "b differs after enable: $out"
out=$("$TOOL" verify "$CONF" b "$v" --log "$tmp/$v.wlog") || fail "b: $out"
grep -q "event=rep.copy_done vol=$v full=1" "$tmp/a.log" ||
    fail "no full region copy of $v in a's replicator log"
ok "b holds a full copy (region copy) of the data written before replication was enabled"
t0=$(now_ms)
"$TOOL" write "$CONF" a "$v" --log "$tmp/$v.wlog" --count 100 --seed 12 \
    --max-len 64K >/dev/null || fail "more writes"
t1=$(now_ms)
"$TOOL" wait-sync "$CONF" a b "$v" --timeout 60 >/dev/null || fail "no catch-up"
out=$("$TOOL" cmp "$CONF" a b "$v") || fail "b differs: $out"
ok "100 more writes shipped through the journal"
for i in $(seq 100); do
    rpc a GetVolumeReplicationInfo "{$(src "$v")}" || fail "GetInfo: $OUT"
    echo "$OUT" | grep -q '"status":"HEALTHY"' && echo "$OUT" | grep -q "lag_entries=0 " && break
    sleep 0.1
done
echo "$OUT" | grep -q '"status":"HEALTHY"' || fail "GetInfo not HEALTHY: $OUT"
ts=$(ts_of "$OUT")
t2=$(now_ms)
[ "$ts" -ge "$t1" ] && [ "$ts" -le $((t2 + 1000)) ] ||
    fail "last_sync_time $ts not in [$t1 (writes done), $t2 (now)]: $OUT"
ok "GetVolumeReplicationInfo: HEALTHY, last_sync_time after the last write ($((ts - t1)) ms) and not in the future"
rpc b GetVolumeReplicationInfo "{$(src "$v")}" && fail "GetInfo on the secondary: $OUT"
echo "$OUT" | grep -q "ERR FAILED_PRECONDITION" || fail "GetInfo on the secondary: $OUT"
ok "GetVolumeReplicationInfo on b's secondary: FAILED_PRECONDITION"

# ---- 3. region a lost
# The burst never reaches b (its replicator held by SIGSTOP), so a's copy
# diverges from what b is promoted with.
eval "kill -STOP \$PID_b"
tb=$(now_ms)
"$TOOL" write "$CONF" a "$v" --log "$tmp/$v.wlog" --count 40 --seed 13 \
    --max-len 4K >/dev/null || { eval "kill -CONT \$PID_b"; fail "burst"; }
te=$(now_ms)
# Lagging: the peer's newest write is from before the burst (exact when
# its journal entry is still kept; else the documented upper bound, the
# time of the oldest write in flight, the burst's first): not after the
# burst, and not now.
rpc a GetVolumeReplicationInfo "{$(src "$v")}" ||
    { eval "kill -CONT \$PID_b"; fail "GetInfo while lagging: $OUT"; }
ts=$(ts_of "$OUT")
[ "$ts" -ge "$t0" ] && [ "$ts" -le "$te" ] &&
    echo "$OUT" | grep -q "lag_entries=40 " ||
    { eval "kill -CONT \$PID_b"; fail "GetInfo while b is held: last_sync_time $ts not in [$t0, $te] or lag not 40: $OUT"; }
ok "GetVolumeReplicationInfo while b is held: lag_entries=40, last_sync_time $((te - ts)) ms before the burst ended, $((tb - ts)) ms before it began"
eval "kill -9 \$PID_a \$CSIPID_a"
eval "wait \$PID_a \$CSIPID_a" 2>/dev/null
PID_a=
eval "kill -CONT \$PID_b"
ok "40 writes in a that b never got, then region a killed (kill -9 of its replicator and controller)"
rpc b PromoteVolume "{$(src "$v")}" && fail "graceful promote with a lost: $OUT"
echo "$OUT" | grep -q "ERR FAILED_PRECONDITION" || fail "graceful promote: $OUT"
ok "PromoteVolume without force: FAILED_PRECONDITION ($(echo "$OUT" | cut -c1-100))"
rpc b PromoteVolume "{$(src "$v"),\"force\":true}" || fail "force promote: $OUT"
rpc b PromoteVolume "{$(src "$v"),\"force\":true}" || fail "force promote again: $OUT"
"$TOOL" stat "$CONF" b "$v" | grep -q "role=primary" || fail "b is not primary"
ok "PromoteVolume(force) in b: primary (twice OK)"
out=$("$TOOL" verify "$CONF" b "$v" --log "$tmp/$v.wlog") ||
    fail "b after failover: $out"
ok "b's image is the write log up to b's applied position ($out)"
"$TOOL" write "$CONF" b "$v" --log "$tmp/$v.wlog-b" --count 30 --seed 14 \
    --max-len 16K >/dev/null || fail "write in b"
ok "b takes writes"

# ---- 4. a returns, fenced; demote + resync
start_rep a b
start_csi a
wait_for 20 "admin a status $v | grep -q split=1" ||
    fail "a's copy not fenced: $(admin a status "$v")"
ok "a's returned copy is fenced (split brain)"
rpc a DemoteVolume "{$(src "$v")}" || fail "Demote fenced a: $OUT"
rpc a DemoteVolume "{$(src "$v")}" || fail "Demote fenced a again: $OUT"
ok "DemoteVolume of a's fenced copy OK (twice)"
# b's replicator held (SIGSTOP) while the resync asks it: the resync is
# running, so the answer must be ready=false; then b goes on.
eval "kill -STOP \$PID_b"
rpc a ResyncVolume "{$(src "$v")}"
rc=$?
eval "kill -CONT \$PID_b"
[ $rc -eq 0 ] || fail "Resync: $OUT"
first=$OUT
echo "$first" | grep -q '"ready":false' || fail "Resync while it runs: $first"
for i in $(seq 300); do
    echo "$OUT" | grep -q '"ready":true' && break
    sleep 0.1
    rpc a ResyncVolume "{$(src "$v")}" || fail "Resync repeated: $OUT"
done
echo "$OUT" | grep -q '"ready":true' || fail "Resync never ready: $OUT"
ok "ResyncVolume: ready=false while it runs ($first), ready=true after $i repeats"
"$TOOL" wait-sync "$CONF" b a "$v" --timeout 60 >/dev/null || fail "a did not catch up with b"
out=$("$TOOL" cmp "$CONF" a b "$v") || fail "a differs from b after resync: $out"
rpc a ResyncVolume "{$(src "$v")}" && echo "$OUT" | grep -q '"ready":true' ||
    fail "Resync repeated after done: $OUT"
ok "a equals b byte for byte after the resync; Resync again: ready"

# ---- 5. switch back, disable, enable again
rpc b DemoteVolume "{$(src "$v")}" || fail "Demote b: $OUT"
rpc a PromoteVolume "{$(src "$v")}" || fail "Promote a (graceful): $OUT"
"$TOOL" stat "$CONF" a "$v" | grep -q "role=primary" || fail "a is not primary"
ok "planned switchback: Demote b, Promote a"
rpc a DisableVolumeReplication "{$(src "$v")}" || fail "Disable: $OUT"
rpc a DisableVolumeReplication "{$(src "$v")}" || fail "Disable again: $OUT"
wait_for 30 "! $TOOL stat $CONF b $v" ||
    fail "the replica in b was not deleted: $("$TOOL" stat "$CONF" b "$v")"
[ "$("$TOOL" stat "$CONF" a "$v" --meta csi.replication)" = none ] ||
    fail "a still replicated"
ok "DisableVolumeReplication (twice): the replica in b is deleted"
rpc a GetVolumeReplicationInfo "{$(src "$v")}" && fail "GetInfo after disable: $OUT"
"$TOOL" write "$CONF" a "$v" --log "$tmp/$v.wlog2" --count 40 --seed 15 \
    --max-len 64K >/dev/null || fail "write while not replicated"
rpc a EnableVolumeReplication "{$(src "$v")}" || fail "Enable again: $OUT"
"$TOOL" wait-sync "$CONF" a b "$v" --timeout 60 >/dev/null ||
    fail "b did not catch up after enable again"
out=$("$TOOL" cmp "$CONF" a b "$v") || fail "b differs after enable again: $out"
[ "$(grep -c "event=rep.copy_done vol=$v full=1" "$tmp/a.log")" -ge 1 ] ||
    fail "no full region copy after enable again"
ok "EnableVolumeReplication again: b gets the whole volume again"

for r in a b; do
    eval "pid=\$CSIPID_$r"
    kill -TERM "$pid"
    wait "$pid" || fail "tandem-csi $r exit status $? after SIGTERM"
done
[ ! -e "$tmp/addons-a.sock" ] || fail "csi-addons socket left behind"
ok "SIGTERM: the controllers exit 0 and remove their sockets"
echo "1..$n"
