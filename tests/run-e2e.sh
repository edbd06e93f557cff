#!/bin/sh
# run-e2e.sh SCRIPT...: run TAP shell tests; each gets its own scratch dir
# in $TANDEM_TEST_TMP.  A script exits 0 on success, 77 when skipped.
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
echo "e2e scripts: $pass passed, $skip skipped, $fail failed"
[ "$fail" -eq 0 ]
