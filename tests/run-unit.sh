#!/bin/bash
# run-unit.sh PROG...: run each unit test program; summary at the end.
#
# A program exits 0 when none of its tests failed, 77 when every test
# skipped (as automake does), anything else on failure.  Skips are counted
# per test, not per program: tt.h appends its counts and each skip's reason
# to $TT_REPORT, so a program whose rados half skipped shows those skips
# here (a program that passed with skips is not a clean pass).
#
# The run is labelled by its build: "unit" for build/, else the build
# directory's name ("asan", "tsan").  When $TANDEM_TEST_REPORT names a
# file (tests/run-all.sh), the totals and the skips are appended to it:
#   unit <label> <programs> <passed> <skipped> <failed>
#   skip <label> <program> <test>: <reason>
# TT_WRAP, if set, is a command prefix for every program (make tsan:
# setarch -R).
set -u
label=${TANDEM_UNIT_LABEL:-}
if [ -z "$label" ]; then
    case ${1:-} in
    build/tests/*|"") label=unit ;;
    */tests/*) label=${1%/tests/*}; label=${label##*/} ;;
    *) label=unit ;;
    esac
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/tandem-unit.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT
fail=0; pass=0; skip=0; failed_progs=""
for t in "$@"; do
    echo "== $t"
    : >"$work/report"
    # shellcheck disable=SC2086 # TT_WRAP is a command prefix
    TT_REPORT=$work/report ${TT_WRAP:-} "$t"; rc=$?
    name=${t##*/}
    if ! grep -q "^tests $name " "$work/report"; then
        # The program died before its summary (crash in main, sanitizer
        # abort): count it as one failed test.
        echo "tests $name 0 0 1" >>"$work/report"
        [ $rc -eq 0 ] && rc=1
    fi
    case $rc in
    0) pass=$((pass + 1)) ;;
    77) skip=$((skip + 1)); echo "SKIPPED (every test): $t" ;;
    *) fail=$((fail + 1)); failed_progs="$failed_progs $name"
       echo "FAILED: $t (exit $rc)" ;;
    esac
    cat "$work/report" >>"$work/all"
done
touch "$work/all"
read -r tp ts tf < <(awk '$1 == "tests" {p += $3; s += $4; f += $5}
    END {print p + 0, s + 0, f + 0}' "$work/all")
echo "unit programs ($label): $pass passed, $skip skipped, $fail failed;" \
    "tests: $tp passed, $ts skipped, $tf failed"
grep '^skip ' "$work/all" | sed 's/^skip /  skipped: /'
[ -n "$failed_progs" ] && echo "  failed programs:$failed_progs"
if [ -n "${TANDEM_TEST_REPORT:-}" ]; then
    {
        echo "unit $label $# $tp $ts $tf"
        sed -n "s/^skip /skip $label /p" "$work/all"
    } >>"$TANDEM_TEST_REPORT"
fi
[ "$fail" -eq 0 ]
