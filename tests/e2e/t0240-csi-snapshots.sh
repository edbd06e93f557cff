#!/bin/bash
# t0240-csi-snapshots: CSI snapshots of a volume that is staged and being
# written, through the real socket, on both backends (sqlite; rados on the
# Ceph of the TANDEM_CEPH_* variables, skipped without one unless
# TANDEM_REQUIRE_CEPH=1).
#
# Per backend: tandem-csi (mode all) creates and stages a raw block
# volume (the node plugin's exporter, a loop device); tests/tools/snap-tool
# writes numbered 4 KiB blocks to the device (O_DIRECT|O_DSYNC), logging
# when each was issued and acknowledged, while CreateSnapshot is called
# three times.  Each snapshot is restored into a new volume (CreateVolume
# from the snapshot) and read back: every block acknowledged before the
# call is in it, none issued after the call returned.  Then: a snapshot
# a clone is being copied from (a restore of 256 MiB running in the
# background) cannot be deleted (FAILED_PRECONDITION),
# ControllerGetVolume's abnormal cases (meta.rep.health split-brain and a
# long link-down), and NodeGetVolumeStats with the exporter SIGSTOPped
# (abnormal, answered in bounded time), continued (normal), frozen by the
# cgroup v1 freezer (hung in state D, not stopped: the probe's 2 s bound;
# skipped where no freezer is writable) and killed (abnormal).  Needs
# root, /dev/fuse and loop devices.
set -u
. "$(dirname "$0")/lib.sh"

csi=$B/tandem-csi
tool=$B/tests/snap-tool
need_exe "$csi"
need_exe "$tool"
need_exe "$B/tandem-csi-call"
need_exe "$B/tandem-volfuse"
[ "$(id -u)" = 0 ] || skip_all "needs root (FUSE exporter, loop devices)"
[ -e /dev/fuse ] || skip_all "no /dev/fuse"
e2e_scratch t0240

STAGED=()
t0240_cleanup() {
    local s
    for s in "${STAGED[@]+"${STAGED[@]}"}"; do
        # "sock vol staging": best effort, after a failure.
        set -- $s
        "$B/tandem-csi-call" --endpoint "unix://$1" node-unstage \
            --volume-id "$2" --staging "$3" >/dev/null 2>&1
    done
    e2e_cleanup
}
trap t0240_cleanup EXIT

backend_conf() { # BACKEND FILE
    if [ "$1" = sqlite ]; then
        sqlite_regions "$2" a b
    else
        rados_regions "$2" "t0240-$$" a b
    fi
}

field() { sed -n "s/^$1=//p" "$2" | head -1; }
nlines() { if [ -f "$1" ]; then wc -l <"$1"; else echo 0; fi; }

run_backend() { # BACKEND
    local be=$1 d=$tmp/$1
    mkdir -p "$d"
    local conf=$d/regions.conf sock=$d/csi.sock
    backend_conf "$be" "$conf"
    start_bg "$d/csi.log" "$csi" --endpoint "unix://$sock" --mode all \
        --config "$conf" --node-id n1 --region a --state-dir "$d/state" \
        --exporter "$B/tandem-volfuse" --health-link-down-s 30
    local pid=$bgpid
    wait_ready "$pid" "$d/csi.log" tandem-csi -S "$sock"
    local call="$B/tandem-csi-call --endpoint unix://$sock"
    local vol=pvc-t0240-$be

    $call create-volume --name "$vol" --size $((64 << 20)) --block >"$d/cv" \
        2>&1 || fail "$be: CreateVolume: $(cat "$d/cv")"
    mkdir -p "$d/staging"
    $call node-stage --volume-id "$vol" --staging "$d/staging" --block \
        >"$d/st" 2>&1 || fail "$be: NodeStageVolume: $(cat "$d/st")"
    STAGED+=("$sock $vol $d/staging")
    local rd=$d/state/vols/$vol dev
    dev=$(cat "$rd/dev") || fail "$be: no device recorded in $rd"
    ok "$be: volume staged on $dev (exporter pid $(cat "$rd/pid"))"

    # The writer, and three snapshots while it writes.
    start_bg "$d/writer.err" "$tool" writer "$dev" "$d/writer.log"
    local wpid=$bgpid k lines
    for k in 1 2 3; do
        # Await acknowledged blocks since the last snapshot (an event the
        # log shows; the writer never waits for us).
        lines=$(nlines "$d/writer.log")
        until [ "$(nlines "$d/writer.log")" -ge $((lines + 20)) ]; do
            kill -0 "$wpid" 2>/dev/null || fail "$be: writer died: $(cat "$d/writer.err")"
            sleep 0.05
        done
        "$tool" snap "unix://$sock" "snapshot-$k" "$vol" >"$d/snap$k" \
            2>"$d/snap$k.err" || fail "$be: CreateSnapshot $k: $(cat "$d/snap$k.err")"
        read -r t0 t1 sid ready <"$d/snap$k"
        [ "$ready" = 1 ] || fail "$be: snapshot $k not ready_to_use"
        ok "$be: CreateSnapshot $k while writing: $sid in $(((t1 - t0) / 1000000)) ms"
    done
    # Some blocks after the last snapshot, then stop the writer.
    lines=$(wc -l <"$d/writer.log")
    until [ "$(wc -l <"$d/writer.log")" -ge $((lines + 20)) ]; do
        kill -0 "$wpid" 2>/dev/null || fail "$be: writer died: $(cat "$d/writer.err")"
        sleep 0.05
    done
    kill -TERM "$wpid"
    wait "$wpid" || fail "$be: writer: $(cat "$d/writer.err")"
    forget_pid "$wpid"
    ok "$be: writer wrote $(wc -l <"$d/writer.log") blocks"

    # Restore each snapshot and check it against the write log.
    for k in 1 2 3; do
        read -r t0 t1 sid ready <"$d/snap$k"
        "$tool" call "unix://$sock" restore "$vol-r$k" "$sid" >"$d/r$k" 2>&1
        [ "$(field code "$d/r$k")" = OK ] ||
            fail "$be: restore of $sid: $(cat "$d/r$k")"
        "$tool" check "$conf" a "$vol-r$k" "$d/writer.log" "$t0" "$t1" \
            >"$d/c$k" 2>&1 || fail "$be: snapshot $k content: $(cat "$d/c$k")"
        grep -q "before=[1-9]" "$d/c$k" || fail "$be: snapshot $k: no block before it: $(cat "$d/c$k")"
        grep -q "after=[1-9]" "$d/c$k" || fail "$be: snapshot $k: no block after it: $(cat "$d/c$k")"
        ok "$be: restore of snapshot $k holds every block acked before the call and none issued after it returned ($(cat "$d/c$k"))"
    done

    # A snapshot with a clone being copied from it cannot be deleted: a
    # 512 MiB volume holding 256 MiB of data, restored in the background;
    # once the clone exists (pending), DeleteSnapshot is
    # FAILED_PRECONDITION naming it and a second CreateVolume of it is
    # ABORTED; after the copy, both work.
    local big=$vol-big
    $call create-volume --name "$big" --size $((512 << 20)) --block >"$d/cvb" \
        2>&1 || fail "$be: CreateVolume $big: $(cat "$d/cvb")"
    "$tool" fill "$conf" a "$big" 0 $((256 << 20)) 2>"$d/fill.err" ||
        fail "$be: fill $big: $(tail -3 "$d/fill.err")"
    "$tool" snap "unix://$sock" snapshot-big "$big" >"$d/snapb" 2>"$d/snapb.err" ||
        fail "$be: CreateSnapshot of $big: $(cat "$d/snapb.err")"
    read -r t0 t1 sid ready <"$d/snapb"
    "$tool" call "unix://$sock" restore "$big-clone" "$sid" >"$d/clone.out" \
        2>"$d/clone.err" &
    local cpid=$!
    PIDS+=("$cpid")
    until "$tool" meta-get "$conf" a "$big-clone" csi.clone_pending >/dev/null 2>&1; do
        kill -0 "$cpid" 2>/dev/null || fail "$be: the clone finished before it was seen pending (make the source bigger)"
        sleep 0.02
    done
    "$tool" call "unix://$sock" delete-snapshot "$sid" >"$d/ds" 2>&1
    [ "$(field code "$d/ds")" = FAILED_PRECONDITION ] ||
        fail "$be: DeleteSnapshot during a clone: $(cat "$d/ds")"
    grep -q "$big-clone" "$d/ds" || fail "$be: message does not name the clone: $(cat "$d/ds")"
    "$tool" call "unix://$sock" restore "$big-clone" "$sid" >"$d/r2" 2>&1
    [ "$(field code "$d/r2")" = ABORTED ] ||
        fail "$be: second CreateVolume during the copy: $(cat "$d/r2")"
    wait "$cpid" || fail "$be: background restore: $(cat "$d/clone.err")"
    forget_pid "$cpid"
    [ "$(field code "$d/clone.out")" = OK ] ||
        fail "$be: background restore: $(cat "$d/clone.out")"
    "$tool" call "unix://$sock" restore "$big-clone" "$sid" >"$d/r2" 2>&1
    [ "$(field code "$d/r2")" = OK ] || fail "$be: CreateVolume after the copy: $(cat "$d/r2")"
    ! "$tool" meta-get "$conf" a "$big-clone" csi.clone_pending >/dev/null 2>&1 ||
        fail "$be: clone still pending after CreateVolume returned"
    "$tool" call "unix://$sock" delete-snapshot "$sid" >"$d/ds" 2>&1
    [ "$(field code "$d/ds")" = OK ] || fail "$be: DeleteSnapshot after the clone: $(cat "$d/ds")"
    "$tool" call "unix://$sock" delete-snapshot "$sid" >"$d/ds" 2>&1
    [ "$(field code "$d/ds")" = OK ] || fail "$be: DeleteSnapshot again: $(cat "$d/ds")"
    read -r t0 t1 sid ready <"$d/snap1"
    "$tool" call "unix://$sock" delete-snapshot "$sid" >"$d/ds" 2>&1
    [ "$(field code "$d/ds")" = OK ] || fail "$be: DeleteSnapshot 1: $(cat "$d/ds")"
    ok "$be: during a clone's copy DeleteSnapshot is FAILED_PRECONDITION and a repeated CreateVolume ABORTED; after it, OK (and OK again)"

    # ControllerGetVolume: healthy, then the replicator's health key.
    "$tool" call "unix://$sock" get-volume "$vol" >"$d/gv" 2>&1
    [ "$(field code "$d/gv")" = OK ] && [ "$(field abnormal "$d/gv")" = 0 ] ||
        fail "$be: ControllerGetVolume healthy: $(cat "$d/gv")"
    local now
    now=$(date +%s)
    "$tool" meta-set "$conf" a "$vol" rep.health "split-brain $now b epochs 3/4" || fail meta-set
    "$tool" call "unix://$sock" get-volume "$vol" >"$d/gv" 2>&1
    [ "$(field abnormal "$d/gv")" = 1 ] && grep -q "split brain" "$d/gv" ||
        fail "$be: ControllerGetVolume split-brain: $(cat "$d/gv")"
    "$tool" meta-set "$conf" a "$vol" rep.health "link-down $now b connect refused" || fail meta-set
    "$tool" call "unix://$sock" get-volume "$vol" >"$d/gv" 2>&1
    [ "$(field abnormal "$d/gv")" = 0 ] ||
        fail "$be: ControllerGetVolume fresh link-down: $(cat "$d/gv")"
    "$tool" meta-set "$conf" a "$vol" rep.health "link-down $((now - 31)) b connect refused" || fail meta-set
    "$tool" call "unix://$sock" get-volume "$vol" >"$d/gv" 2>&1
    [ "$(field abnormal "$d/gv")" = 1 ] && grep -q "down for" "$d/gv" ||
        fail "$be: ControllerGetVolume link-down 31 s (threshold 30): $(cat "$d/gv")"
    "$tool" meta-set "$conf" a "$vol" rep.health "ok $now b" || fail meta-set
    "$tool" call "unix://$sock" get-volume pvc-none >"$d/gv" 2>&1
    [ "$(field code "$d/gv")" = NOT_FOUND ] ||
        fail "$be: ControllerGetVolume unknown: $(cat "$d/gv")"
    ok "$be: ControllerGetVolume: normal, split-brain abnormal, link-down abnormal only past --health-link-down-s, NOT_FOUND"

    # Snapshots live in their volume: DeleteVolume is refused while it
    # has some (FAILED_PRECONDITION), then works once they are deleted.
    if $call delete-volume --volume-id "$vol" >"$d/dv" 2>&1; then
        fail "$be: DeleteVolume of a volume with snapshots succeeded"
    fi
    grep -q "FAILED_PRECONDITION.*snapshot" "$d/dv" || fail "$be: DeleteVolume with snapshots: $(cat "$d/dv")"
    for k in 2 3; do
        read -r t0 t1 sid ready <"$d/snap$k"
        "$tool" call "unix://$sock" delete-snapshot "$sid" >"$d/ds" 2>&1
        [ "$(field code "$d/ds")" = OK ] || fail "$be: DeleteSnapshot $k: $(cat "$d/ds")"
    done
    ok "$be: DeleteVolume refused while the volume has snapshots (FAILED_PRECONDITION)"
    # NodeGetVolumeStats: the exporter stopped, continued, killed.
    local epid
    epid=$(cat "$rd/pid")
    "$tool" call "unix://$sock" stats "$vol" "$d/staging" >"$d/ns" 2>&1
    [ "$(field code "$d/ns")" = OK ] && [ "$(field abnormal "$d/ns")" = 0 ] ||
        fail "$be: NodeGetVolumeStats healthy: $(cat "$d/ns")"
    kill -STOP "$epid"
    "$tool" call "unix://$sock" stats "$vol" "$d/staging" >"$d/ns" 2>&1
    kill -CONT "$epid"
    [ "$(field code "$d/ns")" = OK ] && [ "$(field abnormal "$d/ns")" = 1 ] &&
        [ "$(field ms "$d/ns")" -lt 5000 ] ||
        fail "$be: NodeGetVolumeStats, exporter stopped: $(cat "$d/ns")"
    ok "$be: NodeGetVolumeStats with the exporter SIGSTOPped: abnormal in $(field ms "$d/ns") ms ($(field message "$d/ns"))"
    "$tool" call "unix://$sock" stats "$vol" "$d/staging" >"$d/ns" 2>&1
    [ "$(field abnormal "$d/ns")" = 0 ] ||
        fail "$be: NodeGetVolumeStats after SIGCONT: $(cat "$d/ns")"
    # Hung without being stopped: frozen by the cgroup v1 freezer (state
    # D, like an exporter stuck in its store), where this kernel has one
    # we may use.
    local fz=/sys/fs/cgroup/freezer
    if [ -w "$fz/cgroup.procs" ] && mkdir "$fz/t0240-$$-$be" 2>/dev/null; then
        echo "$epid" >"$fz/t0240-$$-$be/cgroup.procs"
        echo FROZEN >"$fz/t0240-$$-$be/freezer.state"
        "$tool" call "unix://$sock" stats "$vol" "$d/staging" >"$d/ns" 2>&1
        echo THAWED >"$fz/t0240-$$-$be/freezer.state"
        echo "$epid" >"$fz/cgroup.procs"
        rmdir "$fz/t0240-$$-$be"
        [ "$(field code "$d/ns")" = OK ] && [ "$(field abnormal "$d/ns")" = 1 ] &&
            grep -q "did not answer" "$d/ns" && [ "$(field ms "$d/ns")" -lt 5000 ] ||
            fail "$be: NodeGetVolumeStats, exporter frozen: $(cat "$d/ns")"
        ok "$be: NodeGetVolumeStats with the exporter frozen (hung, not stopped): abnormal in $(field ms "$d/ns") ms ($(field message "$d/ns"))"
        "$tool" call "unix://$sock" stats "$vol" "$d/staging" >"$d/ns" 2>&1
        [ "$(field abnormal "$d/ns")" = 0 ] ||
            fail "$be: NodeGetVolumeStats after thawing: $(cat "$d/ns")"
    else
        skip "$be: exporter frozen: no writable cgroup v1 freezer here"
    fi
    kill -KILL "$epid"
    while kill -0 "$epid" 2>/dev/null; do sleep 0.05; done
    "$tool" call "unix://$sock" stats "$vol" "$d/staging" >"$d/ns" 2>&1
    [ "$(field code "$d/ns")" = OK ] && [ "$(field abnormal "$d/ns")" = 1 ] ||
        fail "$be: NodeGetVolumeStats, exporter killed: $(cat "$d/ns")"
    ok "$be: NodeGetVolumeStats: normal after SIGCONT, abnormal after SIGKILL ($(field message "$d/ns"))"

    $call node-unstage --volume-id "$vol" --staging "$d/staging" >"$d/us" 2>&1 ||
        fail "$be: NodeUnstageVolume: $(cat "$d/us")"
    STAGED=()
    for v in "$vol" "$vol-r1" "$vol-r2" "$vol-r3" "$big" "$big-clone"; do
        $call delete-volume --volume-id "$v" >/dev/null 2>&1 ||
            fail "$be: DeleteVolume $v"
    done
    stop_ok "$pid" "$d/csi.log" tandem-csi
    ok "$be: unstaged, volumes deleted, tandem-csi stopped"
}

run_backend sqlite
with_ceph run_backend rados
done_testing
