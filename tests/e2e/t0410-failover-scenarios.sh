#!/bin/bash
# t0410-failover-scenarios: roles, epochs and fencing through tandemctl,
# with two real regions on loopback (sqlite stores, mTLS peer link) and
# raw block volumes staged through the CSI node plugin.
#
#  1. promote refused while the peer is primary (one line, exit 1);
#     promote of a primary: nothing to do (exit 0)
#  2. demote: writes to the staged device fail, read-write staging of
#     the secondary is refused; demote again: nothing to do
#  3. graceful promote on the peer after demote+drain: epoch+1, the data
#     is there, the new primary ships back
#  4. split-brain: link cut, the primary writes more, its region dies,
#     the peer is force-promoted (epoch up) and written; the old primary
#     returns: it must refuse to ship and report split-brain, and both
#     images stay exactly as they were
#  5. failover --graceful (refused, then after demote), failover --all
#     with several volumes (+ manifests), twice
#  6. resync of the split-brain copy: a delta (output says so), then the
#     images are equal; resync again: nothing to do
#  7. one-line errors and exit codes
#  8. a damaged journal tail (a flipped byte in an entry the writer had
#     not applied, while the peer was away): read-write staging refused,
#     tandemctl journal check finds it, discard refused without a
#     terminal or --yes, done with --yes; the volume stages read-write
#     again and its peer gets the whole image
set -u
cd "$(dirname "$0")/../.." || exit 1
ROOT=$PWD
BIN=${TANDEM_BIN:-$ROOT/build}
case $BIN in /*) ;; *) BIN=$ROOT/$BIN ;; esac

if [ "$(id -u)" -ne 0 ]; then echo "1..0 # SKIP needs root (loop devices, FUSE)"; exit 77; fi
for dev in /dev/fuse /dev/loop-control; do
    [ -e "$dev" ] || { echo "1..0 # SKIP $dev missing"; exit 77; }
done
. scripts/two-regions.sh

TMP=$(mktemp -d "${TANDEM_TEST_TMP:-/tmp}/t0410.XXXXXX") || exit 1
n=0
failed=0
finish() {
    trap - EXIT
    # A closed stdout (e.g. `| head`) must not stop the cleanup.
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

# run_ctl R ARGS...: tandemctl in region R; sets RC, OUT, ERR.
run_ctl() {
    local r=$1
    shift
    tr_ctl "$r" "$@" >"$TMP/out" 2>"$TMP/err"
    RC=$?
    OUT=$(cat "$TMP/out")
    ERR=$(cat "$TMP/err")
}
# A refusal: exit 1, exactly one line on stderr, naming CODE.
refused() {
    local code=$1
    [ "$RC" -eq 1 ] && [ "$(wc -l <"$TMP/err")" -eq 1 ] &&
        grep -q "^tandemctl: .*($code)\$" "$TMP/err" || {
        echo "# rc=$RC stderr: $ERR" >&2
        return 1
    }
}
succeeded() {
    [ "$RC" -eq 0 ] && [ ! -s "$TMP/err" ] || {
        echo "# rc=$RC stderr: $ERR" >&2
        return 1
    }
}
has() { echo "$OUT" | grep -q -- "$1" || { echo "# output: $OUT" >&2; return 1; }; }

SIZE=$((16 << 20))
BLOCK=(--block)
RO=(--block --access-mode SINGLE_NODE_READER_ONLY)

# Write N MiB of fresh random data at MiB offset OFF to a published device.
write_at() {
    local dev=$1 off=$2 mib=$3
    dd if=/dev/urandom of="$dev" bs=1M count="$mib" seek="$off" \
        oflag=direct conv=notrunc,fsync status=none
}
sum_of() { dd if="$1" bs=1M iflag=direct status=none | sha256sum | cut -d' ' -f1; }
# Checksum of VOL's whole image in region R, through a read-only staging.
image_sum() {
    local r=$1 vol=$2 dev s
    dev=$(tr_mount "$r" "$vol" "ro-$vol" "${RO[@]}") || return 1
    s=$(sum_of "$dev")
    tr_unmount "$r" "$vol" "ro-$vol" || return 1
    echo "$s"
}

# ------------------------------------------------------------- setup --
tr_init "$TMP" "$BIN" || exit 1
must "region a up" tr_start a
must "region b up" tr_start b
VOLS=""
for v in 1 2 3 4; do
    name=pvc-t0410-$v
    out=$(tr_create_volume a "$name" $SIZE "data-$v" t0410 "${BLOCK[@]}") ||
        { nok "create $name"; exit 1; }
    VOLS="$VOLS $(echo "$out" | sed -n 's/^volume_id=//p')"
done
set -- $VOLS
V1=$1 V2=$2 V3=$3 V4=$4
ok "4 replicated block volumes created in region a"
DEV1=$(tr_mount a "$V1" p1 "${BLOCK[@]}") && DEV2=$(tr_mount a "$V2" p2 "${BLOCK[@]}")
must "V1, V2 staged read-write in a" test -n "${DEV2:-}"
write_both() { write_at "$DEV1" 0 4 && write_at "$DEV2" 0 4; }
must "V1, V2 written in a" write_both
for v in "$V1" "$V2"; do
    check "$v caught up (lag 0)" tr_wait_caught_up a "$v" 60
done
for v in "$V3" "$V4"; do # never written: the replica exists in b
    check "$v has a replica in b" tr_wait_field b "$v" role secondary 30
done
SUM1=$(sum_of "$DEV1")

# ----------------------------------------------------- 1. promote refused --
E1=$(tr_field b "$V1" epoch)
run_ctl b promote "$V1"
check "promote in b refused while a is primary (one line, FAILED_PRECONDITION)" \
    refused FAILED_PRECONDITION
check "epoch in b unchanged after the refusal" test "$(tr_field b "$V1" epoch)" = "$E1"
run_ctl a promote "$V1"
check "promote of a primary: exit 0, nothing to do" \
    bash -c '[ "$0" -eq 0 ] && echo "$1" | grep -q "nothing to do"' "$RC" "$OUT"

# --------------------------------------------------------------- 2. demote --
run_ctl a demote "$V1"
check "demote V1 in a" succeeded
check "V1 is secondary in a" test "$(tr_field a "$V1" role)" = secondary
check "writes to a's V1 device are refused after demote" \
    bash -c '! dd if=/dev/zero of="$0" bs=4k count=1 oflag=direct conv=notrunc,fsync status=none 2>/dev/null' "$DEV1"
check "unstage V1 in a" tr_unmount a "$V1" p1
rw_stage_refused() {
    local out
    out=$(tr_mount a "$V1" p1 --block 2>&1) && return 1
    echo "$out" | grep -q FAILED_PRECONDITION || { echo "# $out" >&2; return 1; }
}
check "read-write staging of the secondary V1 refused in a (FAILED_PRECONDITION)" \
    rw_stage_refused
run_ctl a demote "$V1"
check "demote again: exit 0, nothing to do" \
    bash -c '[ "$0" -eq 0 ] && echo "$1" | grep -q "nothing to do"' "$RC" "$OUT"

# ---------------------------------------------------- 3. graceful promote --
run_ctl b promote "$V1"
check "graceful promote of V1 in b after demote + drain" succeeded
check "epoch went up by one ($E1 -> $((E1 + 1)))" test "$(tr_field b "$V1" epoch)" = $((E1 + 1))
run_ctl b promote "$V1"
check "promote again: exit 0, nothing to do" \
    bash -c '[ "$0" -eq 0 ] && echo "$1" | grep -q "nothing to do"' "$RC" "$OUT"
DEVB1=$(tr_mount b "$V1" p1 "${BLOCK[@]}")
check "V1 staged read-write in b" test -n "$DEVB1"
check "V1 in b holds what a wrote" test "$(sum_of "$DEVB1")" = "$SUM1"
write_at "$DEVB1" 8 2
check "b ships V1 back to a (lag 0)" tr_wait_caught_up b "$V1" 60
check "unstage V1 in b" tr_unmount b "$V1" p1

# ------------------------------------------- 3b. graceful failover (V3) --
run_ctl b failover --to b --graceful "$V3"
check "failover --graceful refused while a holds V3 as primary (exit 1)" \
    bash -c '[ "$0" -eq 1 ] && grep -q "FAILED" "$1" && [ -s "$2" ]' "$RC" "$TMP/out" "$TMP/err"
run_ctl a demote "$V3"
check "demote V3 in a" succeeded
run_ctl b failover --to b --graceful "$V3"
check "failover --graceful of V3 after demote: promoted" \
    bash -c '[ "$0" -eq 0 ] && echo "$1" | grep -q "(graceful): 1 volume, 1 promoted now"' "$RC" "$OUT"

# ---------------------------------------------------------- 4. split-brain --
tr_kill_role b replicator
write_at "$DEV2" 4 2 # a's V2 diverges: never shipped
lagging() { [ "$(tr_field a "$V2" lag_entries)" -gt 0 ]; }
check "a's V2 has unshipped writes (lag > 0)" lagging
SUM2A=$(sum_of "$DEV2")
tr_kill a # region a lost (its pods' mounts torn down)
tr_start_replicator b
must "b's replicator restarted" tr_wait_up b admin.sock
E2=$(tr_field b "$V2" epoch)
run_ctl b promote "$V2"
check "graceful promote refused while a is unreachable" bash -c '[ "$0" -eq 1 ] && [ "$(wc -l <"$1")" -eq 1 ]' "$RC" "$TMP/err"
run_ctl b promote "$V2" --force
check "forced promote of V2 in b" succeeded
check "--force raised the epoch ($E2 -> $((E2 + 1)))" test "$(tr_field b "$V2" epoch)" = $((E2 + 1))
DEVB2=$(tr_mount b "$V2" p2 "${BLOCK[@]}")
write_at "$DEVB2" 12 1 # b's V2 diverges too
SUM2B=$(sum_of "$DEVB2")
tr_unmount b "$V2" p2
HEAD2B=$(tr_field b "$V2" head)

# ------------------------------------------------------ 5. failover --all --
run_ctl b failover --to b --all --emit-manifests "$TMP/manifests"
check "failover --to b --all: exit 0" succeeded
check "failover reports 4 volumes, 1 promoted now, 3 already primary" \
    has "4 volumes, 1 promoted now, 3 already primary, 0 failed"
for v in $VOLS; do
    check "$v primary in b" test "$(tr_field b "$v" role)" = primary
    check "manifest for $v (volumeHandle, region b)" \
        bash -c 'grep -q "volumeHandle: \"$1\"" "$0" && grep -A3 "topology.tandem.csi.dev/region" "$0" | grep -q "\"b\""' \
        "$TMP/manifests/$v.yaml" "$v"
done
run_ctl b failover --to b --all
check "failover again: 0 promoted now, exit 0" \
    bash -c '[ "$0" -eq 0 ] && echo "$1" | grep -q "0 promoted now, 4 already primary"' "$RC" "$OUT"

# --------------------------------------- 4b. the old primary comes back --
must "region a back" tr_start a
# What kubelet does for pods that are gone: unpublish and unstage (the
# mounts died with the region; the plugin clears its records).
check "unpublish + unstage the dead pod's V2 in a" tr_unmount a "$V2" p2
# (Closing the volume may append a flush barrier: take a's head now.)
HEAD2A=$(tr_field a "$V2" head)
fenced() {
    local deadline=$((SECONDS + 30))
    while [ $SECONDS -lt $deadline ]; do
        [ "$(tr_field a "$V2" split_brain)" = true ] && return 0
        sleep 0.2
    done
    tr_ctl a status "$V2" >&2
    return 1
}
check "a's replicator refuses to ship V2 and marks it split-brain" fenced
run_ctl a status "$V2"
check "status in a shows split-brain" has "split"
check "status in a says this copy must resync (STATE must-resync, LINK fenced, how)" \
    bash -c 'echo "$0" | grep -q "fenced  *must-resync" && echo "$0" | grep -q "tandemctl resync $1"' "$OUT" "$V2"
# The rightful primary is not at fault: its LINK/STATE say the peer must
# resync, never split-brain.
peer_stale_shown() {
    local deadline=$((SECONDS + 30))
    while [ $SECONDS -lt $deadline ]; do
        [ "$(tr_field b "$V2" peer_must_resync)" = true ] && return 0
        sleep 0.2
    done
    tr_ctl b status "$V2" >&2
    return 1
}
check "b's replicator sees a's V2 as a stale former primary" peer_stale_shown
run_ctl b status "$V2"
check "status in b: LINK peer-stale, STATE peer-must-resync, no split-brain, how to resync a" \
    bash -c 'echo "$0" | grep -q "peer-stale  *peer-must-resync" && ! echo "$0" | grep -q split && echo "$0" | grep -q "tandemctl resync $1. in region a"' "$OUT" "$V2"
check "b's V2 head unchanged (nothing shipped over it)" test "$(tr_field b "$V2" head)" = "$HEAD2B"
h=$(tr_field a "$V2" head)
check "a's V2 head unchanged ($HEAD2A -> $h)" test "$h" = "$HEAD2A"
check "b's V2 image unchanged" test "$(image_sum b "$V2")" = "$SUM2B"
check "a's V2 image unchanged" test "$(image_sum a "$V2")" = "$SUM2A"

# --------------------------------------------------------------- 6. resync --
run_ctl a resync "$V2"
check "resync V2 in a: exit 0" succeeded
check "resync V2 was a delta" has "delta"
check "a's V2 is secondary" tr_wait_field a "$V2" role secondary 30
check "b caught a's V2 up (lag 0)" tr_wait_caught_up b "$V2" 60
check "a's V2 image equals b's after the resync" test "$(image_sum a "$V2")" = "$SUM2B"
run_ctl a resync "$V2"
check "resync again: exit 0, nothing to do" \
    bash -c '[ "$0" -eq 0 ] && echo "$1" | grep -q "nothing to do"' "$RC" "$OUT"
run_ctl a resync "$V1"
check "resync of an in-sync secondary (V1): nothing to do" \
    bash -c '[ "$0" -eq 0 ] && echo "$1" | grep -q "nothing to do"' "$RC" "$OUT"

# ------------------------------------------------------- 7. errors, codes --
run_ctl a promote pvc-does-not-exist
check "promote of an unknown volume: one line, NOT_FOUND" refused NOT_FOUND
run_ctl a demote
check "demote without a volume: usage error (exit 2), one line" \
    bash -c '[ "$0" -eq 2 ] && [ "$(wc -l <"$1")" -eq 1 ]' "$RC" "$TMP/err"
"$BIN/tandemctl" --admin "unix://$TMP/nowhere.sock" status >/dev/null 2>"$TMP/err"
RC=$?
check "unreachable admin socket: one line, UNAVAILABLE" refused UNAVAILABLE
for c in status promote demote failover resync; do
    check "tandemctl $c --help" bash -c '"$0" "$1" --help | grep -q "^usage: tandemctl $1"' "$BIN/tandemctl" "$c"
done
for c in check discard; do
    check "tandemctl journal $c --help" bash -c '"$0" journal "$1" --help | grep -q "^usage: tandemctl journal $1"' "$BIN/tandemctl" "$c"
done

# ------------------------------------------- 8. a damaged journal tail --
V5=pvc-t0410-5
tr_create_volume a "$V5" $SIZE data-5 t0410 "${BLOCK[@]}" >/dev/null ||
    nok "create $V5"
# The peer must not acknowledge the entries about to be damaged.
tr_kill_role a replicator
wrote_v5() {
    local dev
    dev=$(tr_mount a "$V5" p5 "${BLOCK[@]}") && write_at "$dev" 0 4 &&
        tr_unmount a "$V5" p5
}
must "V5 staged, written and unstaged in a while a's replicator is down" wrote_v5
H5=$("$BIN/tests/rep-tool" stat "$TMP/a/tandem.conf" a "$V5" | tr ' ' '\n' | sed -n 's/^head=//p')
S5=$((H5 / 2 + 1))
must "flip a byte of V5's journal entry $S5 (of $H5), not yet applied" \
    "$BIN/tests/rep-tool" damage "$TMP/a/tandem.conf" a "$V5" "$S5"
stage_refused() {
    if tr_mount a "$V5" p5 "${BLOCK[@]}" >/dev/null 2>"$TMP/stage.err"; then
        tr_unmount a "$V5" p5
        return 1
    fi
    grep -q "corrupt journal entry" "$TMP/stage.err" || {
        sed 's/^/# stage: /' "$TMP/stage.err" >&2
        return 1
    }
}
check "read-write staging of V5 refused: corrupt journal entry" stage_refused
tr_unmount a "$V5" p5 >/dev/null 2>&1
tr_start_replicator a
must "a's replicator restarted" tr_wait_up a admin.sock
run_ctl a status "$V5"
check "status shows V5's journal damaged at seq $S5, with the RUNBOOK" \
    has "journal damaged at seq $S5 (object .* offset .*): see RUNBOOK 'A damaged journal tail'"
run_ctl a journal check "$V5"
check "journal check: exit 1, damaged at seq $S5" \
    bash -c '[ "$0" -eq 1 ] && [ ! -s "$1" ] && echo "$2" | grep -q "journal DAMAGED at seq $3\$"' \
    "$RC" "$TMP/err" "$OUT" "$S5"
tr_ctl a journal discard "$V5" --bad-seq "$S5" </dev/null >"$TMP/out" 2>"$TMP/err"
RC=$?
ERR=$(cat "$TMP/err")
check "discard without a terminal and without --yes: refused in one line" \
    bash -c '[ "$0" -eq 1 ] && [ "$(wc -l <"$1")" -eq 1 ] && grep -q "not confirmed" "$1"' \
    "$RC" "$TMP/err"
run_ctl a journal discard "$V5" --bad-seq "$((S5 + 1))" --yes
check "discard with another seq: refused" refused FAILED_PRECONDITION
run_ctl a journal discard "$V5" --bad-seq "$S5" --yes
check "discard --bad-seq $S5 --yes: exit 0" succeeded
check "discard names what went and schedules the peer's full copy" \
    bash -c 'echo "$0" | grep -q "from seq $1: $(($2 - $1 + 1)) entr" && echo "$0" | grep -q "full copy of the image to it is scheduled"' \
    "$OUT" "$S5" "$H5"
wrote_v5_again() {
    local dev
    dev=$(tr_mount a "$V5" p5 "${BLOCK[@]}") && write_at "$dev" 8 2 &&
        tr_unmount a "$V5" p5
}
check "V5 stages read-write again and takes new writes" wrote_v5_again
check "b caught V5 up (lag 0)" tr_wait_caught_up a "$V5" 60
check "b's V5 image equals a's (the full copy carried what the image kept)" \
    test "$(image_sum a "$V5")" = "$(image_sum b "$V5")"
