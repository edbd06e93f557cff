# two-regions.sh: shell helpers to run two tandem regions on one machine
# (sourced by scripts/demo.sh and tests/e2e/t04*.sh; bash only).
#
#   tr_init DIR BINDIR      scratch layout, mTLS certificates, one region
#                           map per region, free loopback ports
#   tr_start R / tr_kill R  start region R (CSI controller, CSI node,
#                           replicator) / kill -9 it and unstage what can
#                           be unstaged, as a lost region would leave it
#   tr_ctl R ARGS...        tandemctl against region R's admin socket
#   tr_csi R ctrl|node ARGS...   tandem-csi-call against region R
#   tr_cleanup              stop everything this file started, unmount,
#                           detach loop devices, remove DIR
#
# Each region only reaches its own store: its region map names, for the
# peer region, an empty placeholder store inside its own directory (the
# CSI controller asks every configured region's store when it looks a
# volume up), so a "lost" region's data is really out of the survivor's
# reach.  Everything tr_* starts is recorded by pid in DIR and
# only those processes are ever signalled.

TR_DIR=""            # scratch directory (removed by tr_cleanup)
TR_BIN=""            # directory holding the programs
TR_REGIONS="a b"
TR_VERBOSE=${TR_VERBOSE:-0}

tr_log() { echo "  [$(date +%H:%M:%S)] $*"; }

# A TCP port nobody listens on (checked in /proc/net/tcp*).
tr_free_port() {
    local p hex
    for _ in $(seq 1 200); do
        p=$((20000 + RANDOM % 40000))
        hex=$(printf ':%04X ' "$p")
        if ! grep -qi "$hex" /proc/net/tcp /proc/net/tcp6 2>/dev/null &&
            ! grep -qx "$p" "$TR_DIR/ports" 2>/dev/null; then
            echo "$p" >>"$TR_DIR/ports"
            echo "$p"
            return 0
        fi
    done
    return 1
}

tr_peer() { [ "$1" = a ] && echo b || echo a; }

tr_init() {
    TR_DIR=$1
    TR_BIN=$2
    mkdir -p "$TR_DIR" || return 1
    local p
    for p in tandem-csi tandem-replicator tandemctl tandem-csi-call; do
        if [ ! -x "$TR_BIN/$p" ]; then
            echo "two-regions: $TR_BIN/$p is missing (build it: make programs)" >&2
            return 1
        fi
    done
    "$(dirname "${BASH_SOURCE[0]}")/gen-certs.sh" "$TR_DIR/certs" \
        replicator-a replicator-b tandemctl >/dev/null || return 1
    local r
    for r in $TR_REGIONS; do
        mkdir -p "$TR_DIR/$r/state" "$TR_DIR/$r/staging" "$TR_DIR/$r/pods"
        eval "TR_LINK_PORT_$r=$(tr_free_port)"
        eval "TR_ADMIN_PORT_$r=$(tr_free_port)"
        eval "TR_METRICS_PORT_$r=$(tr_free_port)"
    done
    for r in $TR_REGIONS; do
        local peer
        peer=$(tr_peer "$r")
        # The peer's real store is out of reach on purpose (see the header).
        cat >"$TR_DIR/$r/tandem.conf" <<EOF
# region map as seen from region $r (written by two-regions.sh)
[tandem]
default_region = $r

[region $r]
backend = sqlite
db_path = $TR_DIR/$r/store.db
replicator = 127.0.0.1:$(eval echo "\$TR_LINK_PORT_$r")

[region $peer]
backend = sqlite
db_path = $TR_DIR/$r/placeholder-for-$peer.db
replicator = 127.0.0.1:$(eval echo "\$TR_LINK_PORT_$peer")
EOF
    done
}

# Remember a pid started for region R (role names the log).
tr_record() { echo "$2 $3" >>"$TR_DIR/$1/pids"; }

# Wait until a unix socket exists (deadline in seconds).
tr_wait_sock() {
    local path=$1 deadline=$((SECONDS + ${2:-20}))
    while [ ! -S "$path" ]; do
        [ $SECONDS -ge $deadline ] && return 1
        sleep 0.1
    done
}

tr_start_csi() {
    local r=$1 d="$TR_DIR/$1"
    rm -f "$d/csi-ctrl.sock" "$d/csi-node.sock"
    "$TR_BIN/tandem-csi" --endpoint "unix://$d/csi-ctrl.sock" \
        --mode controller --config "$d/tandem.conf" --region "$r" \
        >>"$d/csi-ctrl.log" 2>&1 &
    tr_record "$r" $! csi-ctrl
    "$TR_BIN/tandem-csi" --endpoint "unix://$d/csi-node.sock" \
        --mode node --config "$d/tandem.conf" --node-id "node-$r-1" \
        --region "$r" --zone "${r}1" --state-dir "$d/state" \
        >>"$d/csi-node.log" 2>&1 &
    tr_record "$r" $! csi-node
}

tr_start_replicator() {
    local r=$1 d="$TR_DIR/$1" c="$TR_DIR/certs" peer
    peer=$(tr_peer "$r")
    rm -f "$d/admin.sock"
    "$TR_BIN/tandem-replicator" --config "$d/tandem.conf" --region "$r" \
        --peer-region "$peer" \
        --listen "127.0.0.1:$(eval echo "\$TR_LINK_PORT_$r")" \
        --admin "unix://$d/admin.sock" \
        --admin-tcp "127.0.0.1:$(eval echo "\$TR_ADMIN_PORT_$r")" \
        --metrics "127.0.0.1:$(eval echo "\$TR_METRICS_PORT_$r")" \
        --tls-ca "$c/ca.pem" --tls-cert "$c/replicator-$r.pem" \
        --tls-key "$c/replicator-$r.key" \
        >>"$d/replicator.log" 2>&1 &
    tr_record "$r" $! replicator
}

# Wait for region R's sockets (the ones named, default all three).
tr_wait_up() {
    local r=$1 d="$TR_DIR/$1" s
    shift
    for s in ${*:-csi-ctrl.sock csi-node.sock admin.sock}; do
        if ! tr_wait_sock "$d/$s" 30; then
            echo "two-regions: region $r: $s did not appear; logs:" >&2
            tail -n 5 "$d"/*.log >&2
            return 1
        fi
    done
}

tr_start() {
    tr_start_csi "$1" && tr_start_replicator "$1" && tr_wait_up "$1"
}

# kill -9 one process of region R by role (csi-ctrl, csi-node, replicator).
tr_kill_role() {
    local r=$1 want=$2 d="$TR_DIR/$1" pid role
    [ -f "$d/pids" ] || return 0
    while read -r pid role; do
        if [ "$role" = "$want" ]; then
            kill -9 "$pid" 2>/dev/null
            wait "$pid" 2>/dev/null
        fi
    done <"$d/pids"
    grep -v " $want\$" "$d/pids" >"$d/pids.new"
    mv "$d/pids.new" "$d/pids"
}

# Pids of exporters serving region R's staged volumes (only ours: the
# pid file lives in R's state dir and the process must be tandem-volfuse).
tr_exporter_pids() {
    local f pid
    for f in "$TR_DIR/$1"/state/vols/*/pid "$TR_DIR/$1"/state/*/*/pid; do
        [ -f "$f" ] || continue
        pid=$(cat "$f" 2>/dev/null)
        [ -n "$pid" ] && tr -d '\0' 2>/dev/null <"/proc/$pid/cmdline" |
            grep -q tandem-volfuse && echo "$pid"
    done
}

# Unmount everything under a directory, deepest first, lazily (a dead
# exporter leaves mounts that cannot be unmounted cleanly).
tr_umount_under() {
    local dir=$1 m
    awk -v d="$dir" '{ if (index($5, d) == 1) print $5 }' /proc/self/mountinfo |
        sort -r | while read -r m; do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
    done
}

# Loop devices whose backing file is under a directory.
tr_detach_loops_under() {
    local dir=$1 dev back
    losetup -n -l -O NAME,BACK-FILE 2>/dev/null | while read -r dev back; do
        case $back in
        "$dir"/*) losetup -d "$dev" 2>/dev/null ;;
        esac
    done
}

# kill -9 region R (its processes and its exporters), then unstage what
# can be unstaged: the pods' mounts, loop devices, FUSE mounts.
tr_kill() {
    local r=$1 d="$TR_DIR/$1" pid role
    local pids
    pids="$(tr_exporter_pids "$r")"
    if [ -f "$d/pids" ]; then
        while read -r pid role; do
            kill -9 "$pid" 2>/dev/null
        done <"$d/pids"
    fi
    for pid in $pids; do kill -9 "$pid" 2>/dev/null; done
    if [ -f "$d/pids" ]; then
        while read -r pid role; do
            wait "$pid" 2>/dev/null
        done <"$d/pids"
        : >"$d/pids"
    fi
    tr_umount_under "$d/pods"
    tr_umount_under "$d/staging"
    tr_detach_loops_under "$d/state"
    tr_umount_under "$d/state"
}

# Graceful stop (SIGTERM, then SIGKILL after a deadline).
tr_stop() {
    local r=$1 d="$TR_DIR/$1" pid role deadline
    [ -f "$d/pids" ] || return 0
    while read -r pid role; do kill -TERM "$pid" 2>/dev/null; done <"$d/pids"
    deadline=$((SECONDS + 10))
    while read -r pid role; do
        while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done <"$d/pids"
    : >"$d/pids"
}

tr_ctl() {
    local r=$1
    shift
    "$TR_BIN/tandemctl" --admin "unix://$TR_DIR/$r/admin.sock" "$@"
}

tr_csi() {
    local r=$1 which=$2
    shift 2
    "$TR_BIN/tandem-csi-call" --endpoint "unix://$TR_DIR/$r/csi-$which.sock" "$@"
}

# One field of a single-volume `tandemctl status VOL --json`.
tr_field() {
    local r=$1 vol=$2 field=$3
    tr_ctl "$r" status "$vol" --json 2>/dev/null |
        sed -n "s/^ *\"$field\": \"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}\$/\1/p" |
        head -n 1
}

# Wait (deadline seconds) until VOL's primary in region R has everything
# acknowledged by the peer: head == acked and lag 0.
tr_wait_caught_up() {
    local r=$1 vol=$2 deadline=$((SECONDS + ${3:-60})) head acked lag
    while :; do
        head=$(tr_field "$r" "$vol" head)
        acked=$(tr_field "$r" "$vol" acked)
        lag=$(tr_field "$r" "$vol" lag_entries)
        if [ -n "$head" ] && [ "$head" = "$acked" ] && [ "$lag" = 0 ] &&
            [ "$head" != 0 ]; then
            return 0
        fi
        [ $SECONDS -ge $deadline ] && return 1
        sleep 0.2
    done
}

# Wait until a field has a value (e.g. role of the returned copy).
tr_wait_field() {
    local r=$1 vol=$2 field=$3 want=$4 deadline=$((SECONDS + ${5:-30}))
    while [ "$(tr_field "$r" "$vol" "$field")" != "$want" ]; do
        [ $SECONDS -ge $deadline ] && return 1
        sleep 0.2
    done
}

# Stage and publish VOL on region R's node; prints the target path.
# Extra arguments go to node-stage (e.g. --access-mode).
tr_mount() {
    local r=$1 vol=$2 pod=$3
    shift 3
    local stg="$TR_DIR/$r/staging/$vol" tgt="$TR_DIR/$r/pods/$pod/mount"
    mkdir -p "$stg" "$TR_DIR/$r/pods/$pod" || return 1
    tr_csi "$r" node node-stage --volume-id "$vol" --staging "$stg" \
        "$@" >/dev/null || return 1
    tr_csi "$r" node node-publish --volume-id "$vol" --staging "$stg" \
        --target "$tgt" "$@" >/dev/null || return 1
    echo "$tgt"
}

tr_unmount() {
    local r=$1 vol=$2 pod=$3
    local stg="$TR_DIR/$r/staging/$vol" tgt="$TR_DIR/$r/pods/$pod/mount"
    tr_csi "$r" node node-unpublish --volume-id "$vol" --target "$tgt" \
        >/dev/null &&
        tr_csi "$r" node node-unstage --volume-id "$vol" --staging "$stg" \
            >/dev/null
}

# Create a replicated volume as the external-provisioner would for a pod
# scheduled on region A's node (WaitForFirstConsumer): preferred = that
# node's topology, requisite = both regions.  Prints `volume_id=...` etc.
tr_create_volume() {
    local r=$1 name=$2 size=$3 pvc=$4 ns=$5
    shift 5
    local key=topology.tandem.csi.dev/region peer
    peer=$(tr_peer "$r")
    tr_csi "$r" ctrl create-volume --name "$name" --size "$size" \
        --fs-type ext4 \
        --param replication=async --param "peerRegion=$peer" \
        --param "csi.storage.k8s.io/pvc/name=$pvc" \
        --param "csi.storage.k8s.io/pvc/namespace=$ns" \
        --param "csi.storage.k8s.io/pv/name=$name" \
        --preferred "$key=$r" \
        --requisite "$key=$r" --requisite "$key=$peer" "$@"
}

tr_cleanup() {
    [ -n "$TR_DIR" ] && [ -d "$TR_DIR" ] || return 0
    local r
    for r in $TR_REGIONS; do
        [ -d "$TR_DIR/$r" ] || continue
        # Unstage through the plugin while it runs: it detaches cleanly.
        tr_kill "$r"
    done
    tr_umount_under "$TR_DIR"
    tr_detach_loops_under "$TR_DIR"
    tr_umount_under "$TR_DIR"
    rm -rf "$TR_DIR"
}
