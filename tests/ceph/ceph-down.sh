#!/usr/bin/env bash
# ceph-down.sh DIR: stop the cluster tests/ceph/ceph-up.sh started in DIR
# and delete DIR.
#
# Only the PIDs recorded in DIR/pids are signalled, and only while they
# still run that cluster's daemon (same DIR/ceph.conf on the command line),
# so a reused PID is never hit.  OSD first, then the mon; SIGTERM, SIGKILL
# after 10 s.  A DIR without ceph-up.sh's marker is refused; a missing DIR
# is fine (exit 0).  Exit 0 when no daemon is left and DIR is gone.
set -uo pipefail

[[ $# -eq 1 ]] || { echo "usage: ceph-down.sh DIR" >&2; exit 2; }
case "$1" in /*) DIR=$1 ;; *) DIR=$PWD/$1 ;; esac
DIR=${DIR%/}
CONF=$DIR/ceph.conf

[[ -e "$DIR" ]] || exit 0
if [[ ! -e "$DIR/.tandem-ceph" ]]; then
    echo "ceph-down: $DIR was not made by ceph-up.sh; not touching it" >&2
    exit 1
fi

is_ours() { # TYPE.ID PID
    [[ "$(tr '\0' ' ' 2>/dev/null <"/proc/$2/cmdline")" == \
        "ceph-${1%.*} --conf $CONF --id ${1#*.} --foreground " ]] || return 1
    ! grep -q '^State:[[:space:]]*Z' "/proc/$2/status" 2>/dev/null
}

rc=0
for d in osd.0 mon.a; do
    pidf=$DIR/pids/$d.pid
    [[ -s "$pidf" ]] || continue
    pid=$(<"$pidf")
    is_ours "$d" "$pid" || continue
    echo "ceph-down: stopping ceph-$d (pid $pid)" >&2
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < 100; i++)); do
        is_ours "$d" "$pid" || break
        sleep 0.1
    done
    if is_ours "$d" "$pid"; then
        kill -KILL "$pid" 2>/dev/null
        for ((i = 0; i < 50; i++)); do
            is_ours "$d" "$pid" || break
            sleep 0.1
        done
        if is_ours "$d" "$pid"; then
            echo "ceph-down: ceph-$d (pid $pid) survived SIGKILL" >&2
            rc=1
        fi
    fi
done
if ((rc == 0)); then
    rm -rf -- "$DIR"
else
    echo "ceph-down: a daemon is still running; kept $DIR" >&2
fi
exit $rc
