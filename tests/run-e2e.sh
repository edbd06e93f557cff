#!/bin/bash
# run-e2e.sh SCRIPT...: run TAP shell tests; each gets its own scratch dir
# in $TANDEM_TEST_TMP.  A script exits 0 on success, 77 when skipped as a
# whole (its output says why: "1..0 # SKIP reason", or "SKIPPED: reason").
#
# The TAP output is read as well as the exit status: every "ok N" line is
# a check, "ok N # SKIP reason" a skipped check (counted and listed with
# its reason, never a pass), "not ok" a failure even if the script exited
# 0.  With TANDEM_REQUIRE_CEPH=1 a skip that names Ceph (or of a script
# named *ceph*) fails the run.  When $TANDEM_TEST_REPORT names a file
# (tests/run-all.sh), the totals and the skips are appended to it:
#   e2e <scripts> <checks passed> <checks skipped> <failed scripts>
#   skip e2e <script>: <reason>
set -u
work=$(mktemp -d "${TMPDIR:-/tmp}/tandem-e2e.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT
fail=0; pass=0; skip=0; checks=0; skipped_checks=0; failed=""
: >"$work/skips"
ceph_skip() { # SCRIPT REASON: a skip TANDEM_REQUIRE_CEPH=1 forbids
    [ "${TANDEM_REQUIRE_CEPH:-}" = 1 ] || return 1
    case "$1 $2" in
    *[Cc][Ee][Pp][Hh]*|*[Rr][Aa][Dd][Oo][Ss]*) return 0 ;;
    esac
    [ -n "${TANDEM_CEPH_SKIP:-}" ] && case $2 in *"$TANDEM_CEPH_SKIP"*) return 0 ;; esac
    return 1
}
for t in "$@"; do
    name=${t##*/}; name=${name%.sh}
    echo "== $t"
    # stdout through tee (TAP is read afterwards), stderr as it is.  tee
    # is waited for a bounded time: a stray daemon holding the script's
    # stdout must not hang the runner.
    out=$work/$name.out
    exec 3> >(tee "$out")
    teepid=$!
    "$t" >&3 3>&-; rc=$?
    exec 3>&-
    for _ in $(seq 100); do kill -0 "$teepid" 2>/dev/null || break; sleep 0.05; done
    kill "$teepid" 2>/dev/null
    n_ok=$(grep -cE '^ok [0-9]+' "$out")
    n_skip=$(grep -ciE '^ok [0-9]+[^#]*# *skip' "$out")
    n_notok=$(grep -cE '^not ok' "$out")
    bad=""
    # Skipped checks: "ok N [- description] # SKIP reason".
    while IFS= read -r line; do
        reason=$(printf '%s\n' "$line" | sed -E 's/^ok [0-9]+[^#]*# *[Ss][Kk][Ii][Pp][^ ]* *//')
        [ -n "$reason" ] || reason="no reason given"
        echo "$name: $reason" >>"$work/skips"
        ceph_skip "$name" "$reason" && bad="TANDEM_REQUIRE_CEPH=1 but a check skipped: $reason"
    done < <(grep -iE '^ok [0-9]+[^#]*# *skip' "$out")
    # A script that printed "not ok" failed, whatever its exit status.
    if [ $rc -eq 77 ] && [ "$n_notok" -eq 0 ]; then
        reason=$(sed -nE 's/^1\.\.0 *# *[Ss][Kk][Ii][Pp] *//p; s/^SKIPPED: *//p' "$out" | head -1)
        [ -n "$reason" ] || reason="no reason given"
        if ceph_skip "$name" "$reason"; then
            bad="TANDEM_REQUIRE_CEPH=1 but the script skipped: $reason"
        else
            skip=$((skip + 1))
            echo "$name (whole script): $reason" >>"$work/skips"
            echo "SKIPPED: $t: $reason"
            continue
        fi
    elif [ $rc -ne 0 ]; then
        bad="exit $rc"
    elif [ "$n_notok" -gt 0 ]; then
        bad="$n_notok 'not ok' line(s) but exit 0"
    fi
    checks=$((checks + n_ok - n_skip)); skipped_checks=$((skipped_checks + n_skip))
    if [ -n "$bad" ]; then
        fail=$((fail + 1)); failed="$failed $name"
        echo "FAILED: $t ($bad)"
    else
        pass=$((pass + 1))
    fi
done
echo "e2e scripts: $pass passed, $skip skipped, $fail failed;" \
    "checks: $checks passed, $skipped_checks skipped"
sed 's/^/  skipped: /' "$work/skips"
[ -n "$failed" ] && echo "  failed scripts:$failed"
if [ -n "${TANDEM_TEST_REPORT:-}" ]; then
    {
        echo "e2e $# $checks $((skipped_checks + skip)) $fail"
        sed 's/^/skip e2e /' "$work/skips"
    } >>"$TANDEM_TEST_REPORT"
fi
[ "$fail" -eq 0 ]
