#!/usr/bin/env bash
# ceph-up.sh DIR: start a throwaway single-node Ceph cluster for the tests
# (one mon, one bluestore OSD on a sparse file, no mgr), every file under
# DIR, every daemon on 127.0.0.1 only.  Stop it with tests/ceph/ceph-down.sh.
#
#   eval "$(tests/ceph/ceph-up.sh /tmp/ceph-me)"
#
# stdout: exactly these shell assignments, once the cluster did a real
# write/read/remove on both pools (also saved in DIR/env):
#   TANDEM_CEPH_CONF TANDEM_CEPH_KEYRING TANDEM_CEPH_CLIENT
#   TANDEM_CEPH_POOL_A (tandem-a) TANDEM_CEPH_POOL_B (tandem-b)
# stderr: progress; on failure the reason is the LAST line and the exit
# status is 1, after the daemons this run started were stopped again.
#
# Environment (optional):
#   TANDEM_CEPH_MON_PORT=3300      mon msgr2 port (several clusters at once:
#   TANDEM_CEPH_MON_V1_PORT=6789   give each its own pair of mon ports)
#   TANDEM_CEPH_OSD_PORTS=6800-7300  range the OSD picks free ports from
#   TANDEM_CEPH_TIMEOUT=90         seconds for the whole start
#
# Needs Debian 12's ceph-mon ceph-osd ceph-common uuid-runtime (Ceph 16.2).
set -euo pipefail

# stdout carries only the final assignments: keep it as fd 3.
exec 3>&1 1>&2
T0=$SECONDS
log() { echo "ceph-up: [$((SECONDS - T0))s] $*" >&2; }

DIR=""
STARTED=() # "type.id" of daemons this run started
fail() {
    local d
    if [[ -n "$DIR" && -d "$DIR/log" ]]; then
        for d in "$DIR"/log/ceph-mon.a.log "$DIR"/log/ceph-osd.0.log; do
            [[ -s "$d" ]] || continue
            echo "---- last lines of $d" >&2
            grep -v '^$' "$d" | tail -n 8 >&2 || true
        done
    fi
    for d in "${STARTED[@]}"; do stop_daemon "$d"; done
    echo "ceph-up: $*" >&2 # the reason: tests/run-all.sh shows `tail -1`
    exit 1
}

[[ $# -eq 1 ]] || { echo "usage: ceph-up.sh DIR" >&2; exit 2; }
case "$1" in /*) DIR=$1 ;; *) DIR=$PWD/$1 ;; esac
DIR=${DIR%/}
# Ceph config values and our assignments are unquoted: keep paths plain.
[[ "$DIR" =~ ^/[A-Za-z0-9._/+-]+$ ]] ||
    { d=$DIR; DIR=""; fail "DIR must match [A-Za-z0-9._/+-]: '$d'"; }

MON_PORT=${TANDEM_CEPH_MON_PORT:-3300}
MON_V1_PORT=${TANDEM_CEPH_MON_V1_PORT:-6789}
OSD_PORTS=${TANDEM_CEPH_OSD_PORTS:-6800-7300}
TIMEOUT=${TANDEM_CEPH_TIMEOUT:-90}
POOLS="tandem-a tandem-b"
CONF=$DIR/ceph.conf
KEYRING=$DIR/client.admin.keyring
MARKER=$DIR/.tandem-ceph
DEADLINE=$((SECONDS + TIMEOUT))

for c in ceph-mon ceph-osd ceph rados ceph-authtool monmaptool uuidgen \
    timeout setsid; do
    command -v "$c" >/dev/null ||
        { DIR=""; fail "'$c' not found: apt-get install ceph-mon ceph-osd ceph-common uuid-runtime"; }
done
[[ "$MON_PORT" =~ ^[0-9]+$ && "$MON_V1_PORT" =~ ^[0-9]+$ &&
    "$OSD_PORTS" =~ ^[0-9]+-[0-9]+$ && "$TIMEOUT" =~ ^[0-9]+$ ]] ||
    { DIR=""; fail "bad TANDEM_CEPH_MON_PORT/_MON_V1_PORT/_OSD_PORTS/_TIMEOUT"; }
if [[ -e "$DIR" && -n "$(ls -A "$DIR" 2>/dev/null)" ]]; then
    d=$DIR; DIR=""
    fail "$d exists and is not empty (stop an old cluster with ceph-down.sh $d)"
fi
for p in "$MON_PORT" "$MON_V1_PORT"; do
    if (exec 4<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        DIR=""
        fail "127.0.0.1:$p is in use: set TANDEM_CEPH_MON_PORT / TANDEM_CEPH_MON_V1_PORT"
    fi
done

left() { # seconds left before the deadline, at most $1, at least 1
    local r=$((DEADLINE - SECONDS))
    ((r > $1)) && r=$1
    ((r < 1)) && r=1
    echo "$r"
}
# Every client call is bounded: `ceph` waits forever for an absent mon and
# a rados op for a PG that is not active yet.
cephc() { timeout "$(left 20)" ceph --conf "$CONF" --connect-timeout 10 "$@"; }
radosc() { timeout "$(left 5)" rados --conf "$CONF" "$@"; }

# is_ours TYPE.ID: the recorded PID runs our daemon (not a reused PID).
is_ours() {
    local pidf=$DIR/pids/$1.pid pid
    [[ -s "$pidf" ]] || return 1
    pid=$(<"$pidf")
    [[ "$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline")" == \
        "ceph-${1%.*} --conf $CONF --id ${1#*.} --foreground " ]] || return 1
    ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null
}

stop_daemon() {
    local i pid
    is_ours "$1" || return 0
    pid=$(<"$DIR/pids/$1.pid")
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do is_ours "$1" || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
}

# start_daemon TYPE ID: ceph-TYPE in the foreground of its own session, all
# inherited fds but 0-2 closed (a daemon holding the caller's $(...) pipe
# would make it wait forever), its PID recorded in DIR/pids.
start_daemon() {
    log "starting ceph-$1.$2"
    (
        for fd in /proc/"$BASHPID"/fd/*; do
            fd=${fd##*/}
            ((fd > 2)) && eval "exec $fd>&-"
        done
        exec setsid "ceph-$1" --conf "$CONF" --id "$2" --foreground \
            </dev/null >>"$DIR/log/$1.$2.out" 2>&1
    ) &
    echo $! >"$DIR/pids/$1.$2.pid"
    STARTED+=("$1.$2")
}

wait_for() { # wait_for WHAT DAEMON CMD...: poll CMD until it succeeds
    local what=$1 d=$2
    shift 2
    until "$@" >/dev/null 2>&1; do
        is_ours "$d" || fail "ceph-$d died while $what (see $DIR/log/ceph-$d.log)"
        ((SECONDS < DEADLINE)) || fail "timed out after ${TIMEOUT}s $what"
        sleep 0.2
    done
}

# ------------------------------------------------------------ create --
log "creating a cluster in $DIR (mon 127.0.0.1:$MON_PORT/$MON_V1_PORT)"
mkdir -p "$DIR"/{mon/ceph-a,osd/ceph-0,run,log,pids,crash}
: >"$MARKER" # ceph-down.sh only touches directories holding this marker
FSID=$(uuidgen)
OSD_UUID=$(uuidgen)

# \$cluster, \$id and \$name are expanded by Ceph, not the shell.
cat >"$CONF" <<EOF
# Throwaway single-node test cluster made by tests/ceph/ceph-up.sh.
[global]
fsid = $FSID
mon host = [v2:127.0.0.1:$MON_PORT,v1:127.0.0.1:$MON_V1_PORT]
# Loopback only: bind to, advertise and talk on 127.0.0.1.
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv6 = false
ms bind port min = ${OSD_PORTS%-*}
ms bind port max = ${OSD_PORTS#*-}
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
auth allow insecure global id reclaim = false
# Every file in DIR (defaults are /var/log/ceph, /var/run/ceph, ...).
run dir = $DIR/run
crash dir = $DIR/crash
log file = $DIR/log/\$cluster-\$name.log
mon cluster log file = $DIR/log/\$cluster.log
# One OSD: pools of size 1, no placement across hosts.
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
# The object store's contract: objects of at most 64 MiB (ST_MAX_OBJECT),
# so an append past it fails here as it does on sqlite.
osd max object size = 67108864
# A CI disk may be nearly full: the mon would warn below 30% free and
# shut itself down below 5%.  No mgr: do not warn about it.
mon data avail warn = 1
mon data avail crit = 0
mon mgr mkfs grace = 31536000
# Start fast: the mon proposes map changes every 1 s by default, and OSD
# boot and each pool wait for such a round.
paxos propose interval = 0.05
paxos min wait = 0.01
# Never mark the only OSD out.
mon osd down out interval = 0
mon warn on osd down out interval zero = false

[mon]
mon data = $DIR/mon/\$cluster-\$id
keyring = $DIR/mon/\$cluster-\$id/keyring
admin socket = $DIR/run/\$cluster-\$name.asok

[osd]
osd data = $DIR/osd/\$cluster-\$id
keyring = $DIR/osd/\$cluster-\$id/keyring
admin socket = $DIR/run/\$cluster-\$name.asok
osd objectstore = bluestore
# A sparse 8 GiB file; nothing is allocated up front.
bluestore block create = true
bluestore block size = 8589934592
bluestore fsck on mkfs = false
bdev aio poll ms = 10
# Test-sized memory and threads (2 cores).
osd memory target = 1073741824
osd op num shards = 2
osd op num threads per shard = 2

[client]
keyring = $KEYRING
log file = $DIR/log/client.log
EOF

{
    ceph-authtool --create-keyring "$KEYRING" --gen-key -n client.admin \
        --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *'
    ceph-authtool --create-keyring "$DIR/osd/ceph-0/keyring" --gen-key \
        -n osd.0 --cap mon 'allow profile osd' --cap osd 'allow *'
    ceph-authtool --create-keyring "$DIR/mon/mkfs.keyring" --gen-key \
        -n mon. --cap mon 'allow *'
    # The mon imports every key of its mkfs keyring: no `auth add` later.
    ceph-authtool "$DIR/mon/mkfs.keyring" --import-keyring "$KEYRING"
    ceph-authtool "$DIR/mon/mkfs.keyring" --import-keyring \
        "$DIR/osd/ceph-0/keyring"
    monmaptool --create --fsid "$FSID" \
        --addv a "[v2:127.0.0.1:$MON_PORT,v1:127.0.0.1:$MON_V1_PORT]" \
        "$DIR/mon/monmap"
    ceph-mon --conf "$CONF" --id a --mkfs --monmap "$DIR/mon/monmap" \
        --keyring "$DIR/mon/mkfs.keyring"
} >>"$DIR/log/mkfs.out" 2>&1 || fail "mon mkfs failed (see $DIR/log/mkfs.out)"

start_daemon mon a
wait_for "waiting for the mon" mon.a cephc mon stat
log "mon is up"

out=$(cephc osd new "$OSD_UUID" 0 2>&1) || fail "ceph osd new: $out"
ceph-osd --conf "$CONF" --id 0 --mkfs --osd-uuid "$OSD_UUID" \
    >>"$DIR/log/mkfs.out" 2>&1 || fail "ceph-osd --mkfs failed (see $DIR/log/mkfs.out)"
start_daemon osd 0

# Pools can be made while the OSD boots.
for pool in $POOLS; do
    out=$(cephc osd pool create "$pool" 8 8 replicated 2>&1) ||
        fail "creating pool $pool: $out"
    # Tag it for librados (else POOL_APP_NOT_ENABLED once it holds data).
    out=$(cephc osd pool application enable "$pool" rados 2>&1) ||
        fail "enabling pool $pool: $out"
done

osd_up() {
    local st
    st=$(timeout 5 ceph --conf "$CONF" daemon osd.0 status 2>/dev/null) &&
        [[ "$st" == *'"state": "active"'* ]]
}
wait_for "waiting for osd.0 to boot" osd.0 osd_up
log "osd.0 is up"

# A real write, read and remove on each pool (a new pool's PGs take a
# moment to peer; until then ops block, hence the bounded retries).
echo "tandem ceph-up probe $$" >"$DIR/run/probe"
io_ok() {
    local got
    radosc -p "$1" put tandem-probe "$DIR/run/probe" &&
        got=$(radosc -p "$1" get tandem-probe -) &&
        [[ "$got" == "tandem ceph-up probe $$" ]] &&
        radosc -p "$1" rm tandem-probe
}
for pool in $POOLS; do
    wait_for "waiting for IO on pool $pool" osd.0 io_ok "$pool"
done

cat >"$DIR/env" <<EOF
TANDEM_CEPH_CONF=$CONF
TANDEM_CEPH_KEYRING=$KEYRING
TANDEM_CEPH_CLIENT=admin
TANDEM_CEPH_POOL_A=tandem-a
TANDEM_CEPH_POOL_B=tandem-b
EOF
echo "ready" >"$MARKER"
log "ready; stop with: tests/ceph/ceph-down.sh $DIR"
cat "$DIR/env" >&3
