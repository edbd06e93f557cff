#!/bin/sh
# run-unit.sh PROG...: run each unit test program; summary at the end.
# A program exits 0 when all its tests pass; 77 means "skipped" (with the
# reason on its output), as automake does.
fail=0; pass=0; skip=0
for t in "$@"; do
    echo "== $t"
    "$t"; rc=$?
    case $rc in
    0) pass=$((pass + 1)) ;;
    77) skip=$((skip + 1)); echo "SKIPPED: $t" ;;
    *) fail=$((fail + 1)); echo "FAILED: $t (exit $rc)" ;;
    esac
done
echo "unit programs: $pass passed, $skip skipped, $fail failed"
[ "$fail" -eq 0 ]
