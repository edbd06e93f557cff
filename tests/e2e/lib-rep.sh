# lib-rep.sh: shared setup of the replication end-to-end tests (owner:
# replicator helper); sourced by t03*-replication*.sh, not a test itself.
#
# Two regions a and b on loopback, each with its own store (sqlite files,
# or two Ceph pools), mTLS certificates from scripts/gen-certs.sh, and a
# tandem-replicator per region.  Every process started here is killed by
# pid on exit (trap), and the scratch directory removed.

B=${TANDEM_BIN:-${B:-build}}
REP=$B/tandem-replicator
TOOL=$B/tests/rep-tool
n=0
PIDS=""
ok() { n=$((n + 1)); echo "ok $n - $*"; }
fail() {
    n=$((n + 1)); echo "not ok $n - $*"
    for f in "$tmp"/*.log; do
        [ -f "$f" ] && { echo "# --- $f"; tail -n 15 "$f" | sed 's/^/# /'; }
    done
    exit 1
}

# need_ceph: the cluster of the TANDEM_CEPH_* variables, or the whole
# script is skipped ("1..0 # SKIP reason", exit 77) -- except with
# TANDEM_REQUIRE_CEPH=1 (CI), where a missing cluster is a failure.
need_ceph() {
    local why=""
    if [ -n "${TANDEM_CEPH_SKIP:-}" ]; then
        why=$TANDEM_CEPH_SKIP
    elif [ -z "${TANDEM_CEPH_CONF:-}" ]; then
        why="TANDEM_CEPH_CONF not set"
    fi
    [ -z "$why" ] && return 0
    if [ "${TANDEM_REQUIRE_CEPH:-}" = 1 ]; then
        echo "not ok 1 - TANDEM_REQUIRE_CEPH=1 but no Ceph cluster: $why"
        exit 1
    fi
    echo "1..0 # SKIP $why"
    exit 77
}

rep_setup() { # NAME
    for f in "$REP" "$TOOL"; do
        [ -x "$f" ] || { echo "not ok 1 - $f not built (make programs)"; exit 1; }
    done
    tmp=$(mktemp -d "${TANDEM_TEST_TMP:-/tmp}/$1.XXXXXX")
    trap rep_cleanup EXIT
    scripts/gen-certs.sh "$tmp/pki" a b admin >/dev/null || fail "gen-certs"
    scripts/gen-certs.sh "$tmp/rogue" a >/dev/null || fail "gen-certs rogue"
}

rep_cleanup() {
    for p in $PIDS; do kill -9 "$p" 2>/dev/null; done
    for p in $PIDS; do wait "$p" 2>/dev/null; done
    [ -n "${KEEP:-}" ] || rm -rf "$tmp"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# write_config BACKEND: sqlite, or rados (needs the TANDEM_CEPH_* env).
write_config() {
    PORT_A=$(free_port); PORT_B=$(free_port)
    {
        echo "[tandem]"; echo "default_region = a"
        for r in a b; do
            port=$PORT_A; [ $r = b ] && port=$PORT_B
            echo "[region $r]"
            if [ "$1" = sqlite ]; then
                echo "backend = sqlite"; echo "db_path = $tmp/$r.db"
            else
                pool=$TANDEM_CEPH_POOL_A; [ $r = b ] && pool=$TANDEM_CEPH_POOL_B
                echo "backend = rados"; echo "ceph_conf = $TANDEM_CEPH_CONF"
                echo "client_id = ${TANDEM_CEPH_CLIENT:-admin}"
                echo "keyring = $TANDEM_CEPH_KEYRING"; echo "pool = $pool"
                echo "rados_namespace = rep$$"
            fi
            echo "replicator = 127.0.0.1:$port"
        done
    } >"$tmp/conf.ini"
    CONF=$tmp/conf.ini
}

# start_rep REGION PEER [extra flags]: start and wait until it listens.
start_rep() {
    local r=$1 p=$2
    shift 2
    : >"$tmp/$r.out"
    "$REP" --config "$CONF" --region "$r" --peer-region "$p" \
        --admin "unix://$tmp/$r.sock" --tls-ca "$tmp/pki/ca.pem" \
        --tls-cert "$tmp/pki/$r.pem" --tls-key "$tmp/pki/$r.key" "$@" \
        >"$tmp/$r.out" 2>>"$tmp/$r.log" &
    local pid=$!
    PIDS="$PIDS $pid"
    eval "PID_$r=$pid"
    wait_for 10 "grep -q link_port $tmp/$r.out" || fail "replicator $r did not start"
}

stop_rep() { # REGION [SIGNAL]
    local pid
    eval "pid=\${PID_$1:-}"
    [ -n "$pid" ] || return 0
    kill "-${2:-TERM}" "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    eval "PID_$1="
}

# wait_for SECONDS COMMAND: poll COMMAND every 50 ms until it succeeds.
wait_for() {
    local deadline=$(($(date +%s) + $1))
    shift
    while ! eval "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -ge "$deadline" ] && return 1
        sleep 0.05
    done
}

admin() { "$TOOL" admin "unix://$tmp/$1.sock" "${@:2}"; }

# metric REGION NAME VOL: a volume's figure (an integer) from the /metrics
# of REGION's replicator, which must have been started with
# --metrics 127.0.0.1:0 (its port is read from $tmp/REGION.out); exit 1
# if there is no such line.  Poll it with wait_for to wait for an event
# (e.g. tandem_volume_raw_bytes_total: the sender counts a copy call's
# bytes once the peer answered it).
metric() {
    local port
    port=$(sed -n 's/.*metrics_port=\([0-9]*\).*/\1/p' "$tmp/$1.out" | tail -1)
    [ -n "$port" ] || return 1
    python3 - "$port" "$2" "$3" <<'PY'
import sys, urllib.request
port, name, vol = sys.argv[1:]
body = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % port,
                              timeout=5).read().decode()
for line in body.splitlines():
    if line.startswith(name + "{") and ('volume="%s"' % vol) in line:
        print(int(float(line.rsplit(" ", 1)[1])))
        sys.exit(0)
sys.exit(1)
PY
}
stat_field() { # REGION VOL FIELD [--peer P]
    "$TOOL" stat "$CONF" "$1" "$2" "${@:4}" | tr ' ' '\n' | sed -n "s/^$3=//p"
}

# The basic two-region round: several volumes written at random
# concurrently, replicas equal byte for byte and prefix-consistent.
rep_basic_round() { # LABEL
    local label=$1 vols="v1-$$ v2-$$ v3-$$" v
    for v in $vols; do
        "$TOOL" create "$CONF" a "$v" 8M --peer b --object-size 1M ||
            fail "$label: create $v"
    done
    local wp=""
    for v in $vols; do
        "$TOOL" write "$CONF" a "$v" --log "$tmp/$v.wlog" --count 120 \
            --seed $RANDOM --max-len 64K >"$tmp/$v.wout" 2>&1 &
        wp="$wp $!"
    done
    for p in $wp; do wait "$p" || fail "$label: a writer failed"; done
    for v in $vols; do
        "$TOOL" wait-sync "$CONF" a b "$v" --timeout 60 >/dev/null ||
            fail "$label: $v did not catch up: $("$TOOL" stat "$CONF" b "$v")"
    done
    ok "$label: 3 volumes written concurrently, replicas caught up"
    for v in $vols; do
        out=$("$TOOL" cmp "$CONF" a b "$v") || fail "$label: $v differs: $out"
        out=$("$TOOL" verify "$CONF" b "$v" --log "$tmp/$v.wlog") ||
            fail "$label: $v: $out"
    done
    ok "$label: replicas equal the primaries byte for byte and the write log"
    for v in $vols; do
        m=$("$TOOL" stat "$CONF" b "$v" | grep -o "role=secondary") ||
            fail "$label: $v replica is not secondary"
        "$TOOL" stat "$CONF" a "$v" --peer b | grep -q "acked=$(stat_field a "$v" head)" ||
            fail "$label: $v ack not recorded on the primary"
    done
    ok "$label: replicas are secondaries, acks recorded on the primary"
    # Metadata travelled with the volume.
    v=${vols%% *}
    [ "$("$TOOL" stat "$CONF" b "$v" --meta csi.pvc_name)" = "data-0" ] ||
        fail "$label: metadata did not travel"
    [ "$("$TOOL" stat "$CONF" b "$v" --meta rep.peer)" = "a" ] ||
        fail "$label: replica does not name its origin"
    ok "$label: volume metadata travelled with the replica"
    out=$(admin b status "$v")
    echo "$out" | grep -q "role=secondary" || fail "$label: admin status: $out"
    out=$(admin a status "$v")
    echo "$out" | grep -q "lag_entries=0 " || fail "$label: primary lag: $out"
    ok "$label: admin Status reports roles and zero lag"
}
