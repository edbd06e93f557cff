#!/bin/bash
# t0301-replication-ceph: the two-region replication round of t0300 on
# Ceph: region a and b are two pools of the test cluster (a RADOS
# namespace per run), a tandem-replicator each over mutual TLS.
set -u
cd "$(dirname "$0")/../.."
. tests/e2e/lib-rep.sh
need_ceph
rep_setup t0301
write_config rados
start_rep a b
start_rep b a
ok "two replicators up on Ceph pools $TANDEM_CEPH_POOL_A and $TANDEM_CEPH_POOL_B"
rep_basic_round rados
# Failover on Ceph too: forced promote of b, writes there, resync of a.
v=v2-$$
stop_rep a KILL
admin b promote $v --force >/dev/null || fail "forced promote on ceph"
"$TOOL" write "$CONF" b $v --log "$tmp/$v.wlog" --count 20 >/dev/null || fail "write on b"
start_rep a b
wait_for 20 "[ \"\$(stat_field a $v epoch)\" = 2 ]" ||
    fail "a did not learn of the promotion"
"$TOOL" wait-sync "$CONF" b a $v --timeout 60 >/dev/null || fail "b -> a on ceph"
out=$("$TOOL" verify "$CONF" a $v --log "$tmp/$v.wlog") || fail "$out"
ok "rados: forced failover to b, a follows b exactly"
stop_rep a TERM
stop_rep b TERM
