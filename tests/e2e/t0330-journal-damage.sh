#!/bin/bash
# t0330-journal-damage: a damaged journal tail (FORMAT.md R-37), found and
# given up through tandemctl alone, against real replicators on sqlite
# (lib-rep.sh; on Ceph with T0330_BACKEND=rados: t0331-journal-damage-ceph).  One byte of a journal entry is flipped through the store
# (rep-tool damage, which also sets applied below it, as if the writer died
# before applying it).
#
#  1. journal check: intact (exit 0), then damaged (exit 1, where, what a
#     discard gives up); a writable open is refused and records it: status
#     says "journal damaged at seq N (object O offset F): see RUNBOOK",
#     /metrics tandem_volume_journal_damaged 1
#  2. journal discard: refused without a terminal and without --yes (one
#     line, nothing changed), refused with the wrong seq; with the right
#     seq and --yes the tail goes, the volume opens read-write again and
#     takes new writes at that seq; again: nothing to do
#  3. a replicated primary whose peer is down: the discard schedules a full
#     copy; once the peer is back its replica equals the primary
#  4. a replicated primary whose peer acknowledged past the damage: refused
#     (fail over instead), nothing changed
#  5. a secondary's damaged journal: discarded there, the primary ships the
#     entries again, the replica equals the primary
set -u
cd "$(dirname "$0")/../.."
. tests/e2e/lib-rep.sh
CTL=$B/tandemctl
[ -x "$CTL" ] || { echo "not ok 1 - $CTL not built (make programs)"; exit 1; }
BACKEND=${T0330_BACKEND:-sqlite}
[ "$BACKEND" = rados ] && need_ceph
rep_setup t0330
write_config "$BACKEND"
start_rep a b --metrics 127.0.0.1:0
ok "replicator a up on $BACKEND (b stays down for now)"

# ctl REGION ARGS...: tandemctl against REGION's replicator, stdin not a
# terminal; sets RC, OUT, ERR.
ctl() {
    "$CTL" --admin "unix://$tmp/$1.sock" "${@:2}" >"$tmp/out" 2>"$tmp/err" \
        </dev/null
    RC=$?
    OUT=$(cat "$tmp/out")
    ERR=$(cat "$tmp/err")
}
show() { echo "# rc=$RC"; echo "$OUT" | sed 's/^/# out: /'; echo "$ERR" | sed 's/^/# err: /'; }
has() { echo "$OUT" | grep -qF -- "$1" || { show; fail "$2: no \"$1\""; }; }
one_line_err() { # PATTERN WHAT
    [ "$RC" -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] &&
        grep -qF -- "$1" "$tmp/err" || { show; fail "$2"; }
}

# ---- 1. check: intact, then damaged
V=solo-$$
"$TOOL" create "$CONF" a $V 8M --object-size 1M >/dev/null || fail "create $V"
"$TOOL" write "$CONF" a $V --log "$tmp/solo.wlog" --count 20 --max-len 16K \
    >/dev/null || fail "write $V"
[ "$(stat_field a $V head)" = 20 ] || fail "head $(stat_field a $V head), not 20"
ctl a journal check $V
[ "$RC" -eq 0 ] && [ ! -s "$tmp/err" ] || { show; fail "check of a sound journal"; }
has "journal intact" "check of a sound journal"
ok "journal check: intact, exit 0"

dmg=$("$TOOL" damage "$CONF" a $V 16) || fail "damage: $dmg"
off=$(echo "$dmg" | sed -n 's/.*offset=\([0-9]*\).*/\1/p')
ctl a journal check $V
[ "$RC" -eq 1 ] && [ ! -s "$tmp/err" ] || { show; fail "check of a damaged journal: exit 1, stderr empty"; }
has "journal DAMAGED at seq 16" "check"
# The entry's payload when it has one (a write), its header when not.
has "journal object 0 offset $off: " "check"
echo "$OUT" | grep -qE "(payload|header) crc mismatch \(R-1[29]\)" || { show; fail "check: the failed check"; }
has "entries 16..20 (5 acknowledged writes" "check"
has "tandemctl journal discard $V --bad-seq 16" "check"
ctl a journal check $V --json
[ "$RC" -eq 1 ] || { show; fail "check --json exit"; }
has '"seq": 16' "check --json"
has '"discard_entries": 5' "check --json"
ok "journal check: damaged at seq 16 (object 0 offset $off), exit 1, what a discard gives up"

out=$("$TOOL" write "$CONF" a $V --log "$tmp/solo2.wlog" --count 1 2>&1) &&
    fail "a writable open of a damaged journal worked: $out"
echo "$out" | grep -q "corrupt journal entry" || fail "writable open: $out"
[ "$(stat_field a $V applied)" = 15 ] || fail "replay did not apply the valid prefix"
ctl a status $V
has "journal damaged at seq 16 (object 0 offset $off): see RUNBOOK 'A damaged journal tail'" "status"
has " error" "status state"
[ "$(metric a tandem_volume_journal_damaged $V)" = 1 ] || fail "metric not 1"
ok "writable open refused, prefix applied; status and /metrics show the damage"

# ---- 2. discard: refusals, then the confirmed one
ctl a journal discard $V --bad-seq 16
one_line_err "not confirmed: stdin is not a terminal" "discard without tty and --yes"
has "a discard gives up:   entries 16..20" "discard shows what goes first"
[ "$(stat_field a $V head)" = 20 ] || fail "refused discard changed head"
ok "discard without a terminal and without --yes: refused in one line, nothing changed"

ctl a journal discard $V --bad-seq 17 --yes
one_line_err "the damage is now at seq 16, not 17: check again" "discard with the wrong seq"
grep -q "(FAILED_PRECONDITION)$" "$tmp/err" || { show; fail "wrong seq: code"; }
[ "$(stat_field a $V head)" = 20 ] || fail "refused discard changed head"
ok "discard with the wrong seq: refused (FAILED_PRECONDITION), nothing changed"

ctl a journal discard $V --bad-seq 16 --yes
[ "$RC" -eq 0 ] && [ ! -s "$tmp/err" ] || { show; fail "discard --yes"; }
has "journal discarded in region a from seq 16: 5 entries given up; head is now 15" "discard"
has "fsck" "discard"
grep -q "event=rep.journal_discarded vol=$V from_seq=16 entries=5" "$tmp/a.log" ||
    fail "no rep.journal_discarded in a's log"
[ "$(stat_field a $V head)" = 15 ] && [ "$(stat_field a $V applied)" = 15 ] ||
    fail "after discard: $("$TOOL" stat "$CONF" a $V)"
ctl a journal check $V
[ "$RC" -eq 0 ] || { show; fail "check after discard"; }
ok "discard --bad-seq 16 --yes: 5 entries given up, head = applied = 15, journal intact"

out=$("$TOOL" write "$CONF" a $V --log "$tmp/solo3.wlog" --count 3 --max-len 16K) ||
    fail "writable open after the discard: $out"
[ "$(stat_field a $V head)" = 18 ] || fail "new writes did not continue at 16"
ctl a status $V
echo "$OUT" | grep -q "journal damaged" && { show; fail "status still shows the damage"; }
[ "$(metric a tandem_volume_journal_damaged $V)" = 0 ] || fail "metric not 0"
ctl a journal discard $V --bad-seq 16 --yes
[ "$RC" -eq 0 ] || { show; fail "discard again"; }
has "nothing to discard" "discard again"
ok "the volume opens read-write again, new writes at 16..18; status and metric clear; discard again: nothing to do"

# ---- 3. replicated primary, peer down: a full copy is scheduled
R=rep-$$
"$TOOL" create "$CONF" a $R 8M --peer b --object-size 1M >/dev/null || fail "create $R"
"$TOOL" write "$CONF" a $R --log "$tmp/rep.wlog" --count 20 --max-len 16K \
    >/dev/null || fail "write $R"
"$TOOL" damage "$CONF" a $R 12 >/dev/null || fail "damage $R"
ctl a journal check $R
[ "$RC" -eq 1 ] || { show; fail "check $R"; }
has "peer region b acknowledged seq 0: it has none of them" "check $R"
ctl a journal discard $R --bad-seq 12 --yes
[ "$RC" -eq 0 ] || { show; fail "discard $R"; }
has "peer region b: a full copy of the image to it is scheduled" "discard $R"
ok "replicated primary, peer away: discarded, a full copy to the peer scheduled"
start_rep b a
"$TOOL" wait-sync "$CONF" a b $R --timeout 60 >/dev/null ||
    fail "replica of $R did not catch up: $("$TOOL" stat "$CONF" b $R)"
# The whole image (8 MiB), not only what the journal names: the image
# holds some of the discarded writes, which the peer never received.
wait_for 30 "grep -q 'event=rep.copy_done vol=$R .*bytes=8388608 resume=12 ' $tmp/a.log" ||
    fail "no full copy of $R: $(grep "copy_done vol=$R" "$tmp/a.log")"
out=$("$TOOL" cmp "$CONF" a b $R) || fail "$R differs after the copy: $out"
"$TOOL" write "$CONF" a $R --log "$tmp/rep2.wlog" --count 5 --max-len 16K \
    >/dev/null || fail "write $R after the discard"
"$TOOL" wait-sync "$CONF" a b $R --timeout 60 >/dev/null || fail "$R: new writes"
out=$("$TOOL" cmp "$CONF" a b $R) || fail "$R differs after new writes: $out"
ok "the peer came back: full copy, then new writes; replica equals the primary"

# ---- 4. the peer acknowledged past the damage: fail over instead
P=acked-$$
"$TOOL" create "$CONF" a $P 8M --peer b --object-size 1M >/dev/null || fail "create $P"
"$TOOL" write "$CONF" a $P --log "$tmp/acked.wlog" --count 10 --max-len 16K \
    >/dev/null || fail "write $P"
"$TOOL" wait-sync "$CONF" a b $P --timeout 60 >/dev/null || fail "$P: sync"
wait_for 10 "\"$TOOL\" stat \"$CONF\" a $P --peer b | grep -q acked=10" ||
    fail "$P: ack not recorded"
"$TOOL" damage "$CONF" a $P 7 >/dev/null || fail "damage $P"
ctl a journal check $P
has "peer region b acknowledged seq 10: it HAS these writes" "check $P"
ctl a journal discard $P --bad-seq 7 --yes
one_line_err "peer region b acknowledged seq 10, at or past 7" "discard $P"
grep -q "fail over to it instead" "$tmp/err" || { show; fail "discard $P: advice"; }
[ "$(stat_field a $P head)" = 10 ] || fail "refused discard changed $P"
ok "peer acknowledged past the damage: discard refused (fail over instead), nothing changed"

# ---- 5. a secondary's damaged journal
S=sec-$$
"$TOOL" create "$CONF" a $S 8M --peer b --object-size 1M >/dev/null || fail "create $S"
"$TOOL" write "$CONF" a $S --log "$tmp/sec.wlog" --count 10 --max-len 16K \
    >/dev/null || fail "write $S"
"$TOOL" wait-sync "$CONF" a b $S --timeout 60 >/dev/null || fail "$S: sync"
"$TOOL" damage "$CONF" b $S 6 >/dev/null || fail "damage $S on b"
ctl b journal check $S
[ "$RC" -eq 1 ] || { show; fail "check $S on b"; }
has "journal DAMAGED at seq 6" "check $S on b"
has "the primary ships the entries from seq 6 again after a discard" "check $S on b"
ctl b journal discard $S --bad-seq 6 --yes
[ "$RC" -eq 0 ] || { show; fail "discard $S on b"; }
has "the primary (region a) ships the entries from seq 6 again" "discard $S on b"
[ "$(stat_field b $S applied)" = 5 ] || fail "b's $S not at 5: $("$TOOL" stat "$CONF" b $S)"
"$TOOL" write "$CONF" a $S --log "$tmp/sec2.wlog" --count 3 --max-len 16K \
    >/dev/null || fail "write $S"
"$TOOL" wait-sync "$CONF" a b $S --timeout 60 >/dev/null ||
    fail "$S did not catch up: $("$TOOL" stat "$CONF" b $S)"
out=$("$TOOL" cmp "$CONF" a b $S) || fail "$S differs: $out"
ok "secondary: its damaged tail discarded, the primary shipped it again, replica equal"

stop_rep a TERM
stop_rep b TERM
