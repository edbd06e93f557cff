#!/bin/bash
# run-all.sh: the body of `make test`.
#
# 1. Ceph: unless TANDEM_CEPH_CONF already names a cluster, start a
#    throwaway single-node one (tests/ceph/ceph-up.sh) in a temporary
#    directory and stop it (by the PIDs it started) on exit.  If it cannot
#    start, TANDEM_CEPH_SKIP carries the reason and the rados tests are
#    counted as skipped with it -- unless TANDEM_REQUIRE_CEPH=1 (CI sets
#    it: .ci/run), which makes that a failure at once.  A cluster named by
#    TANDEM_CEPH_CONF that cannot be reached fails at once either way.
# 2. unit tests, 3. the same under ASan+UBSan, 4. the threaded ones under
#    TSan, 5. short fuzz runs, 6. end-to-end scripts.
#
# Every step appends its counts and skips (with reasons) to
# $TANDEM_TEST_REPORT; the last line sums them up:
#   make test: ALL PASSED (N unit tests, M e2e checks, K skipped: reasons)
# A skip is never counted as a pass.
set -u
cd "$(dirname "$0")/.."
export TANDEM_TEST_TMP=${TANDEM_TEST_TMP:-$(mktemp -d /tmp/tandem-test.XXXXXX)}
export TANDEM_TEST_REPORT=$TANDEM_TEST_TMP/report
: >"$TANDEM_TEST_REPORT"
started_ceph=""
cleanup() {
    if [ -n "$started_ceph" ]; then
        tests/ceph/ceph-down.sh "$started_ceph" >/dev/null 2>&1
    fi
}
trap cleanup EXIT

require_ceph=0
[ "${TANDEM_REQUIRE_CEPH:-}" = 1 ] && require_ceph=1
stop_now() { # REASON: fail before any test ran
    echo "ceph: $1"
    echo
    echo "make test: FAILED ($1)"
    exit 1
}

if [ -z "${TANDEM_CEPH_CONF:-}" ]; then
    dir=$TANDEM_TEST_TMP/ceph
    if out=$(tests/ceph/ceph-up.sh "$dir" 2>"$TANDEM_TEST_TMP/ceph-up.log"); then
        eval "$out"
        export TANDEM_CEPH_CONF TANDEM_CEPH_KEYRING TANDEM_CEPH_CLIENT \
            TANDEM_CEPH_POOL_A TANDEM_CEPH_POOL_B
        started_ceph=$dir
        echo "ceph: started a throwaway cluster in $dir"
    else
        why="the test Ceph cluster did not start: $(tail -1 "$TANDEM_TEST_TMP/ceph-up.log")"
        if [ $require_ceph = 1 ]; then
            echo "---- tests/ceph/ceph-up.sh (last lines):"
            tail -15 "$TANDEM_TEST_TMP/ceph-up.log"
            stop_now "TANDEM_REQUIRE_CEPH=1 and $why"
        fi
        export TANDEM_CEPH_SKIP=$why
        echo "ceph: $TANDEM_CEPH_SKIP (the rados tests are skipped and counted)"
    fi
else
    # A cluster the caller named must be usable: check it before any test.
    why=""
    if [ ! -r "$TANDEM_CEPH_CONF" ]; then
        why="TANDEM_CEPH_CONF=$TANDEM_CEPH_CONF is not a readable file"
    elif [ -z "${TANDEM_CEPH_POOL_A:-}" ] || [ -z "${TANDEM_CEPH_POOL_B:-}" ]; then
        why="TANDEM_CEPH_CONF is set but TANDEM_CEPH_POOL_A/TANDEM_CEPH_POOL_B are not"
    elif ! command -v rados >/dev/null; then
        why="the rados command (ceph-common) is missing"
    else
        args=(--conf "$TANDEM_CEPH_CONF" --id "${TANDEM_CEPH_CLIENT:-admin}")
        [ -n "${TANDEM_CEPH_KEYRING:-}" ] && args+=(--keyring "$TANDEM_CEPH_KEYRING")
        if ! pools=$(timeout 60 rados "${args[@]}" --client_mount_timeout 30 lspools 2>&1); then
            why="the cluster of $TANDEM_CEPH_CONF is not reachable: $(printf '%s\n' "$pools" | tail -1)"
        else
            for p in "$TANDEM_CEPH_POOL_A" "$TANDEM_CEPH_POOL_B"; do
                printf '%s\n' "$pools" | grep -qx -- "$p" ||
                    why="pool $p is not in the cluster of $TANDEM_CEPH_CONF"
            done
        fi
    fi
    [ -n "$why" ] && stop_now "$why"
    echo "ceph: using the cluster of $TANDEM_CEPH_CONF" \
        "(pools $TANDEM_CEPH_POOL_A, $TANDEM_CEPH_POOL_B)"
fi

rc=0
failed_steps=""
step() {
    echo
    echo "######## $*"
    if ! "$@"; then
        rc=1
        failed_steps="$failed_steps ${*: -1}"
    fi
}
step make --no-print-directory test-unit
step make --no-print-directory asan
step make --no-print-directory tsan
step make --no-print-directory fuzz-short
step make --no-print-directory test-e2e

# ---- summary from the report lines of tests/run-unit.sh, run-e2e.sh and
# run-fuzz.sh.
summary=$(awk '
    $1 == "unit" { t[$2] += $4; unit += $4 }
    $1 == "e2e"  { scripts += $2; checks += $3 }
    $1 == "fuzz" { fuzz++ }
    END {
        s = unit " unit tests ("
        sep = ""
        if ("unit" in t) { s = s sep t["unit"] " plain"; sep = ", " }
        if ("asan" in t) { s = s sep t["asan"] " ASan+UBSan"; sep = ", " }
        if ("tsan" in t) { s = s sep t["tsan"] " TSan"; sep = ", " }
        s = s "), " checks " e2e checks in " scripts " scripts, " fuzz " fuzzers"
        print s
    }' "$TANDEM_TEST_REPORT")
# A failure counted in the report fails the run even if a step's exit
# status missed it.
nfail=$(awk '$1 == "unit" { f += $6 } $1 == "e2e" { f += $5 } END { print f + 0 }' "$TANDEM_TEST_REPORT")
[ "$nfail" -gt 0 ] && rc=1
# Skips grouped by reason: "REASON x2 (test-csi-node expand_staged_ext4
# [unit, asan])".
nskip=$(grep -c '^skip ' "$TANDEM_TEST_REPORT")
skips=$(awk '$1 == "skip" {
        label = $2; rest = $0; sub(/^skip [^ ]+ /, "", rest)
        i = index(rest, ": "); what = substr(rest, 1, i - 1); why = substr(rest, i + 2)
        if (!(why in cnt)) order[++n] = why
        cnt[why]++
        k = why SUBSEP what
        if (!(k in lab)) { lab[k] = label; wk[why, ++nw[why]] = what }
        else lab[k] = lab[k] ", " label
    }
    END {
        for (i = 1; i <= n; i++) {
            why = order[i]; list = ""
            for (j = 1; j <= nw[why] && j <= 3; j++) {
                w = wk[why, j]
                list = list (j > 1 ? ", " : "") w " [" lab[why SUBSEP w] "]"
            }
            if (nw[why] > 3) list = list ", and " (nw[why] - 3) " more"
            printf "%s\"%s\" x%d (%s)", (i > 1 ? "; " : ""), why, cnt[why], list
        }
    }' "$TANDEM_TEST_REPORT")
echo
if [ "$nskip" -gt 0 ]; then
    echo "skipped ($nskip, never counted as passed):"
    sed -n 's/^skip \([^ ]*\) /  [\1] /p' "$TANDEM_TEST_REPORT"
fi
if [ "$nskip" -gt 0 ]; then tail="$nskip skipped: $skips"; else tail="0 skipped"; fi
if [ $rc -eq 0 ]; then
    echo "make test: ALL PASSED ($summary, $tail)"
else
    echo "make test: FAILED (failed steps:$failed_steps; $summary, $tail)"
fi
exit $rc
