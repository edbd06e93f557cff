# lib.sh: shared setup of the rpc and csi end-to-end tests (t0100, t02*);
# sourced by them, not a test itself.  (The replication tests have their
# own, lib-rep.sh.)
#
# After `. "$(dirname "$0")/lib.sh"` the working directory is the repo root,
# B the build dir (default build), and ok/fail/skip print TAP lines
# (skip REASON: "ok N # SKIP REASON", a check that did not run, counted as
# skipped by tests/run-e2e.sh, never as passed).  Then:
#   skip_all REASON     the whole script cannot run here: "1..0 # SKIP
#                       REASON", exit 77
#   e2e_scratch NAME    $tmp = a fresh dir under ${TANDEM_TEST_TMP:-/tmp};
#                       on exit every pid in PIDS is killed and $tmp removed
#   need_exe FILE       fail unless FILE was built
#   need_tools TOOL...  fail unless each TOOL is on PATH
#   npm_install         tests/node/node_modules, once per machine
#   sqlite_regions FILE REGION...
#                       a region map of sqlite regions (dbs in $tmp), the
#                       first one the default
#   start_bg LOG CMD... run CMD in the background (stderr to LOG); $bgpid
#   wait_ready PID LOG WHAT TEST...
#                       poll `test TEST...` until true (fail if PID dies
#                       or after 20 s)
#   stop_ok PID LOG WHAT
#                       SIGTERM, wait up to 20 s, fail unless exit 0
#   node_tap OUT RC LOG WHAT
#                       number a node script's "ok - " lines into this
#                       TAP stream; fail (with LOG's tail) if any failed
#   done_testing        print the plan line 1..n

cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
B=${B:-build}
n=0
PIDS=()
tmp=""

ok() { n=$((n + 1)); echo "ok $n - $*"; }
fail() { n=$((n + 1)); echo "not ok $n - $*"; exit 1; }
skip() { n=$((n + 1)); echo "ok $n # SKIP $*"; }
skip_all() { echo "1..0 # SKIP $*"; exit 77; }
done_testing() { echo "1..$n"; }

e2e_cleanup() {
    local p
    for p in "${PIDS[@]+"${PIDS[@]}"}"; do
        if kill -0 "$p" 2>/dev/null; then
            kill -KILL "$p" 2>/dev/null
            wait "$p" 2>/dev/null
        fi
    done
    [ -n "$tmp" ] && rm -rf "$tmp"
}

e2e_scratch() { # NAME
    tmp=$(mktemp -d "${TANDEM_TEST_TMP:-/tmp}/$1.XXXXXX") ||
        fail "cannot make a scratch dir under ${TANDEM_TEST_TMP:-/tmp}"
    trap e2e_cleanup EXIT
}

need_exe() { # FILE
    [ -x "$1" ] || fail "$1 not built (make B=$B $1)"
}

need_tools() { # TOOL...
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null ||
            fail "$tool not found (scripts/install-deps.sh installs it)"
    done
}

# npm packages for tests/node, from the committed package-lock.json when
# there is one.  The lock keeps two scripts from installing at once.
npm_install() {
    [ -d tests/node/node_modules/@grpc/grpc-js ] &&
        [ -d tests/node/node_modules/@grpc/proto-loader ] && return 0
    (
        flock 9
        cd tests/node &&
            if [ -f package-lock.json ]; then
                npm ci --no-audit --no-fund --loglevel=error
            else
                npm install --no-audit --no-fund --loglevel=error
            fi
    ) 9>"${TMPDIR:-/tmp}/tandem-npm.lock" >"$tmp/npm.log" 2>&1 ||
        fail "npm install in tests/node: $(tail -3 "$tmp/npm.log")"
}

sqlite_regions() { # FILE REGION...
    local f=$1 r
    shift
    {
        printf '[tandem]\ndefault_region = %s\n' "$1"
        for r in "$@"; do
            printf '[region %s]\nbackend = sqlite\ndb_path = %s/%s.db\n' \
                "$r" "$tmp" "$r"
        done
    } >"$f"
}

# The same on the Ceph cluster named by $TANDEM_CEPH_CONF and its two test
# pools (region 1: POOL_A, the others: POOL_B), in RADOS namespace NS.
rados_regions() { # FILE NS REGION...
    local f=$1 ns=$2 r pool first=$3
    shift 2
    {
        printf '[tandem]\ndefault_region = %s\n' "$first"
        for r in "$@"; do
            pool=$TANDEM_CEPH_POOL_B
            [ "$r" = "$first" ] && pool=$TANDEM_CEPH_POOL_A
            printf '[region %s]\nbackend = rados\nceph_conf = %s\n' "$r" \
                "$TANDEM_CEPH_CONF"
            printf 'client_id = %s\nkeyring = %s\npool = %s\n' \
                "${TANDEM_CEPH_CLIENT:-admin}" "$TANDEM_CEPH_KEYRING" "$pool"
            printf 'rados_namespace = %s\n' "$ns"
        done
    } >"$f"
}

# Run "$@" for the rados backend when a Ceph cluster is named; otherwise a
# counted skip, or a failure under TANDEM_REQUIRE_CEPH=1 (CI).
with_ceph() { # CMD...
    if [ -n "${TANDEM_CEPH_CONF:-}" ]; then
        "$@"
    elif [ "${TANDEM_REQUIRE_CEPH:-}" = 1 ]; then
        fail "TANDEM_REQUIRE_CEPH=1 but TANDEM_CEPH_CONF is not set"
    else
        skip "rados backend: TANDEM_CEPH_CONF not set (no Ceph cluster)"
    fi
}

# The pid is recorded for the exit trap; a process stopped with stop_ok
# is forgotten again.
start_bg() { # LOG CMD...
    local log=$1
    shift
    "$@" 2>"$log" &
    bgpid=$!
    PIDS+=("$bgpid")
}

forget_pid() { # PID
    local p keep=()
    for p in "${PIDS[@]+"${PIDS[@]}"}"; do
        [ "$p" = "$1" ] || keep+=("$p")
    done
    PIDS=("${keep[@]+"${keep[@]}"}")
}

wait_ready() { # PID LOG WHAT TEST...
    local pid=$1 log=$2 what=$3 deadline=$((SECONDS + 20))
    shift 3
    until test "$@"; do
        kill -0 "$pid" 2>/dev/null || fail "$what died: $(tail -3 "$log")"
        [ $SECONDS -lt $deadline ] || fail "$what not ready after 20 s"
        sleep 0.05
    done
}

stop_ok() { # PID LOG WHAT
    local pid=$1 log=$2 what=$3 rc deadline=$((SECONDS + 20))
    kill -TERM "$pid"
    while kill -0 "$pid" 2>/dev/null; do
        [ $SECONDS -lt $deadline ] || fail "$what ignored SIGTERM for 20 s"
        sleep 0.05
    done
    wait "$pid"
    rc=$?
    forget_pid "$pid"
    [ $rc -eq 0 ] || fail "$what exit status $rc: $(tail -3 "$log")"
}

node_tap() { # OUT RC LOG WHAT
    local line bad=0
    while IFS= read -r line; do
        case $line in
        "ok - "*) n=$((n + 1)); echo "ok $n - node: ${line#ok - }" ;;
        "not ok - "*) n=$((n + 1)); echo "not ok $n - node: ${line#not ok - }"; bad=1 ;;
        *) echo "# $line" ;;
        esac
    done <"$1"
    if [ "$2" -ne 0 ] || [ $bad -ne 0 ]; then
        echo "# $4 log:"; sed 's/^/#   /' "$3" | tail -20
        fail "node checks against $4 (exit $2)"
    fi
}
