#!/bin/bash
# t0300-replication: two regions on loopback (sqlite stores), a
# tandem-replicator each over mutual TLS.  Randomized concurrent writes
# replicate and the replicas equal the primaries byte for byte and the
# writers' logs (prefix consistency); mTLS refusals (no client
# certificate, another CA, plaintext); /metrics; journal cap with
# dirty-region catch-up; planned switchover (demote, graceful promote and
# back); forced promote, split-brain fencing and delta resync.
set -u
cd "$(dirname "$0")/../.."
. tests/e2e/lib-rep.sh
rep_setup t0300
write_config sqlite
start_rep a b --metrics 127.0.0.1:0
start_rep b a
ok "two replicators up with mTLS"

# ---- mTLS refusals
"$TOOL" hello "127.0.0.1:$PORT_B" a b --ca "$tmp/pki/ca.pem" \
    --cert "$tmp/pki/a.pem" --key "$tmp/pki/a.key" >/dev/null ||
    fail "hello with a valid client certificate"
out=$("$TOOL" hello "127.0.0.1:$PORT_B" a b --ca "$tmp/pki/ca.pem") &&
    fail "no client certificate was accepted: $out"
out=$("$TOOL" hello "127.0.0.1:$PORT_B" a b --ca "$tmp/pki/ca.pem" \
    --cert "$tmp/rogue/a.pem" --key "$tmp/rogue/a.key") &&
    fail "a client certificate of another CA was accepted: $out"
out=$("$TOOL" hello "127.0.0.1:$PORT_B" a b --insecure) &&
    fail "plaintext was accepted on the TLS link: $out"
out=$("$TOOL" hello "127.0.0.1:$PORT_B" a b --ca "$tmp/rogue/ca.pem" \
    --cert "$tmp/pki/a.pem" --key "$tmp/pki/a.key") &&
    fail "client trusted a server of another CA: $out"
out=$("$TOOL" hello "127.0.0.1:$PORT_B" c b --ca "$tmp/pki/ca.pem" \
    --cert "$tmp/pki/a.pem" --key "$tmp/pki/a.key") &&
    fail "a Hello from the wrong region was accepted: $out"
ok "mTLS refusals: no cert, other CA (both ways), plaintext, wrong region"

rep_basic_round sqlite

# ---- /metrics
mport=$(sed -n 's/.*metrics_port=\([0-9]*\).*/\1/p' "$tmp/a.out")
m=$(python3 -c "import urllib.request,sys; print(urllib.request.urlopen('http://127.0.0.1:$mport/metrics',timeout=5).read().decode())") ||
    fail "GET /metrics"
echo "$m" | grep -q "^tandem_volume_lag_entries{volume=\"v1-$$\",region=\"a\",role=\"primary\"} 0" ||
    fail "metrics lack the volume's lag: $(echo "$m" | grep lag_entries | head -3)"
echo "$m" | grep -q "^tandem_volume_compression_ratio" || fail "no compression ratio"
echo "$m" | grep -q "^tandem_peer_link_up" || fail "no link gauge"
ok "/metrics serves per-volume figures in Prometheus text"

# ---- compressible data: compression on the wire
"$TOOL" create "$CONF" a comp-$$ 8M --peer b --object-size 1M
"$TOOL" write "$CONF" a comp-$$ --log "$tmp/comp.wlog" --count 60 --compressible >/dev/null
"$TOOL" wait-sync "$CONF" a b comp-$$ --timeout 60 >/dev/null || fail "compressible volume"
"$TOOL" verify "$CONF" b comp-$$ --log "$tmp/comp.wlog" >/dev/null || fail "compressible verify"
ratio=$(admin a status comp-$$ | sed -n 's/.*ratio=\([0-9.]*\).*/\1/p')
python3 -c "import sys; sys.exit(0 if float('$ratio') > 2 else 1)" ||
    fail "compressible data shipped with ratio $ratio"
ok "compressible writes ship LZ4-compressed (ratio $ratio)"

# ---- journal cap: the peer away, dirty regions, catch-up by region copy
"$TOOL" create "$CONF" a cap-$$ 16M --peer b --object-size 1M --cap 512K
"$TOOL" write "$CONF" a cap-$$ --log "$tmp/cap.wlog" --count 20 >/dev/null
"$TOOL" wait-sync "$CONF" a b cap-$$ --timeout 30 >/dev/null || fail "cap volume first sync"
stop_rep b
"$TOOL" write "$CONF" a cap-$$ --log "$tmp/cap.wlog" --count 150 >/dev/null
# A volume born while the peer is away, whose journal passes the cap before
# the peer ever saw it: its replica is made by a full copy.
# 300 writes of up to 64 KiB (~9.6 MiB) always fill more than one 4 MiB
# journal object, so the first one is closed and can be trimmed (150 fell
# short of 4 MiB now and then).
"$TOOL" create "$CONF" a fresh-$$ 16M --peer b --object-size 1M --cap 256K
"$TOOL" write "$CONF" a fresh-$$ --log "$tmp/fresh.wlog" --count 300 >/dev/null
wait_for 20 "[ \"\$(stat_field a cap-$$ dirty)\" = 1 ]" ||
    fail "journal cap did not switch to dirty tracking: $("$TOOL" stat "$CONF" a cap-$$)"
wait_for 20 "[ \"\$(stat_field a fresh-$$ tail)\" -gt 1 ]" ||
    fail "fresh volume's journal not trimmed: $("$TOOL" stat "$CONF" a fresh-$$)"
ok "past the journal cap the primary tracks dirty regions"
start_rep b a
"$TOOL" wait-sync "$CONF" a b fresh-$$ --timeout 60 >/dev/null ||
    fail "full copy of a new volume: $("$TOOL" stat "$CONF" b fresh-$$)"
out=$("$TOOL" verify "$CONF" b fresh-$$ --log "$tmp/fresh.wlog") || fail "$out"
grep -q "rep.copy_done vol=fresh-$$ full=1" "$tmp/a.log" || fail "no full copy logged"
ok "a volume whose journal was trimmed before the peer saw it: full copy, exact"
"$TOOL" wait-sync "$CONF" a b cap-$$ --timeout 60 >/dev/null ||
    fail "dirty-region catch-up: $("$TOOL" stat "$CONF" b cap-$$)"
out=$("$TOOL" cmp "$CONF" a b cap-$$) || fail "after catch-up: $out"
out=$("$TOOL" verify "$CONF" b cap-$$ --log "$tmp/cap.wlog") || fail "$out"
grep -q "rep.copy_done vol=cap-$$" "$tmp/a.log" || fail "no region copy logged"
[ "$(stat_field a cap-$$ dirty)" = 0 ] || fail "dirty map not cleared"
"$TOOL" write "$CONF" a cap-$$ --log "$tmp/cap.wlog" --count 10 >/dev/null
"$TOOL" wait-sync "$CONF" a b cap-$$ --timeout 30 >/dev/null || fail "shipping after catch-up"
out=$("$TOOL" verify "$CONF" b cap-$$ --log "$tmp/cap.wlog") || fail "$out"
ok "dirty regions copied, then entries shipped again; replica exact"

# ---- planned switchover and back
v=v1-$$
out=$(admin b promote $v) && fail "graceful promote while a is primary: $out"
echo "$out" | grep -q "still primary" || fail "refusal text: $out"
admin a demote $v >/dev/null || fail "demote"
out=$(admin a demote $v) || fail "demote again: $out"
echo "$out" | grep -q "changed=0" || fail "demote not idempotent: $out"
admin b promote $v >/dev/null || fail "graceful promote after demote"
out=$(admin b promote $v) || fail "promote again"
echo "$out" | grep -q "changed=0" || fail "promote not idempotent: $out"
"$TOOL" write "$CONF" b $v --log "$tmp/$v.wlog" --count 30 >/dev/null || fail "write on b"
"$TOOL" wait-sync "$CONF" b a $v --timeout 30 >/dev/null || fail "b -> a replication"
out=$("$TOOL" verify "$CONF" a $v --log "$tmp/$v.wlog") || fail "$out"
admin b demote $v >/dev/null && admin a promote $v >/dev/null || fail "switch back"
"$TOOL" write "$CONF" a $v --log "$tmp/$v.wlog" --count 10 >/dev/null || fail "write on a"
"$TOOL" wait-sync "$CONF" a b $v --timeout 30 >/dev/null || fail "a -> b again"
out=$("$TOOL" cmp "$CONF" a b $v) || fail "$out"
ok "switchover a->b->a: demote drains, graceful promote, idempotent, exact"

# ---- region loss: forced promote, split brain, delta resync
stop_rep a KILL
out=$(admin b promote $v) && fail "graceful promote with a unreachable: $out"
admin b promote $v --force >/dev/null || fail "forced promote"
"$TOOL" write "$CONF" b $v --log "$tmp/$v.blog" --count 20 >/dev/null
"$TOOL" write "$CONF" a $v --log "$tmp/$v.alog" --count 20 --seed 77 >/dev/null  # a kept writing
start_rep a b
wait_for 20 "[ \"\$(stat_field a $v split)\" = 1 ]" ||
    fail "old primary not fenced: $("$TOOL" stat "$CONF" a $v)"
[ "$(stat_field a $v role)" = secondary ] || fail "fenced copy still primary"
[ "$(stat_field b $v role)" = primary ] || fail "new primary demoted"
grep -q "event=rep.split_brain vol=$v" "$tmp/a.log" || fail "split brain not logged"
out=$(admin a promote $v) && fail "promote of a fenced copy: $out"
ok "returning old primary is fenced (split brain), nothing overwritten"
out=$(admin a resync $v) || fail "resync: $out"
echo "$out" | grep -q "full=0" || fail "resync fell back to a full copy: $out"
"$TOOL" write "$CONF" b $v --log "$tmp/$v.blog" --count 10 >/dev/null
"$TOOL" wait-sync "$CONF" b a $v --timeout 30 >/dev/null || fail "after resync"
out=$("$TOOL" cmp "$CONF" a b $v) || fail "after resync: $out"
out=$(admin a resync $v) || fail "resync again"
echo "$out" | grep -q "changed=0" || fail "resync not idempotent: $out"
ok "delta resync: old primary is a secondary of the new one, exact"

# ---- region copies interrupted: the sender dies mid-copy (the copy runs
# again from its saved region list), then region a is lost mid-copy and a
# forced promote rolls the replica back to its last consistent position.
u=undo-$$
"$TOOL" create "$CONF" a $u 8M --peer b --object-size 1M --cap 256K
"$TOOL" write "$CONF" a $u --log "$tmp/undo.wlog" --count 20 >/dev/null
"$TOOL" wait-sync "$CONF" a b $u --timeout 30 >/dev/null || fail "undo volume first sync"
make_dirty_then_copy_slowly() {
    stop_rep b
    "$TOOL" write "$CONF" a $u --log "$tmp/undo.wlog" --count 250 --max-len 64K >/dev/null
    wait_for 20 "[ \"\$(stat_field a $u dirty)\" = 1 ]" || fail "undo volume not dirty"
    stop_rep a
    start_rep a b --max-bandwidth 256K --metrics 127.0.0.1:0
    start_rep b a
    wait_for 30 "\"$TOOL\" stat \"$CONF\" b $u --meta rep.copy.id" ||
        fail "region copy did not start"
    # A few chunks landed on b: the throttled copy sends calls of 128 KiB
    # (half a second of its 256 KiB/s), and the sender counts a call's
    # bytes once b has written them (wait for three calls).
    wait_for 30 "[ \"\$(metric a tandem_volume_raw_bytes_total $u)\" -ge $((3 * 128 << 10)) ]" ||
        fail "no chunks of the region copy landed on b: $(metric a tandem_volume_raw_bytes_total $u) bytes"
}
make_dirty_then_copy_slowly
stop_rep a KILL
start_rep a b
"$TOOL" wait-sync "$CONF" a b $u --timeout 60 >/dev/null ||
    fail "copy did not resume after the sender died: $("$TOOL" stat "$CONF" b $u)"
out=$("$TOOL" cmp "$CONF" a b $u) || fail "after resumed copy: $out"
out=$("$TOOL" verify "$CONF" b $u --log "$tmp/undo.wlog") || fail "$out"
[ "$(grep -c "rep.copy_begin vol=$u" "$tmp/b.log")" -ge 2 ] || fail "copy did not run again"
ok "sender killed mid-copy: the copy ran again, replica exact"
base=$(stat_field b $u applied)
make_dirty_then_copy_slowly
stop_rep a KILL
out=$(admin b promote $u) && fail "graceful promote mid-copy: $out"
out=$(admin b promote $u --force) || fail "forced promote mid-copy: $out"
grep -q "event=rep.rollback vol=$u" "$tmp/b.log" || fail "no rollback logged"
[ "$(stat_field b $u applied)" = "$base" ] || fail "rolled back to $(stat_field b $u applied), not $base"
out=$("$TOOL" verify "$CONF" b $u --log "$tmp/undo.wlog") ||
    fail "after rollback the replica is not a prefix: $out"
[ "$("$TOOL" stat "$CONF" b $u --meta rep.copy.id)" = "" ] || fail "copy marker left"
ok "forced promote mid-copy rolls back to the last consistent position ($base)"
start_rep a b

# ---- clean shutdown
stop_rep a TERM
stop_rep b TERM
grep -q "event=rep.stopped" "$tmp/a.log" || fail "no clean shutdown logged"
ok "SIGTERM shuts down cleanly"
