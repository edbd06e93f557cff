#!/bin/bash
# run-all.sh: the body of `make test`.
#
# 1. Ceph: unless TANDEM_CEPH_CONF already names a cluster, start a
#    throwaway single-node one (tests/ceph/ceph-up.sh) in a temporary
#    directory and stop it (by the PIDs it started) on exit.  If it cannot
#    start, TANDEM_CEPH_SKIP carries the reason and the rados tests report
#    SKIPPED with it.
# 2. unit tests, 3. the same under ASan+UBSan, 4. short fuzz runs,
# 5. end-to-end scripts.
set -u
cd "$(dirname "$0")/.."
export TANDEM_TEST_TMP=${TANDEM_TEST_TMP:-$(mktemp -d /tmp/tandem-test.XXXXXX)}
started_ceph=""
cleanup() {
    if [ -n "$started_ceph" ]; then
        tests/ceph/ceph-down.sh "$started_ceph" >/dev/null 2>&1
    fi
}
trap cleanup EXIT

if [ -z "${TANDEM_CEPH_CONF:-}" ]; then
    dir=$TANDEM_TEST_TMP/ceph
    if out=$(tests/ceph/ceph-up.sh "$dir" 2>"$TANDEM_TEST_TMP/ceph-up.log"); then
        eval "$out"
        export TANDEM_CEPH_CONF TANDEM_CEPH_KEYRING TANDEM_CEPH_CLIENT \
            TANDEM_CEPH_POOL_A TANDEM_CEPH_POOL_B
        started_ceph=$dir
        echo "ceph: started a throwaway cluster in $dir"
    else
        export TANDEM_CEPH_SKIP="the test Ceph cluster did not start: $(tail -1 "$TANDEM_TEST_TMP/ceph-up.log")"
        echo "ceph: $TANDEM_CEPH_SKIP"
    fi
else
    echo "ceph: using the cluster of $TANDEM_CEPH_CONF"
fi

rc=0
step() { echo; echo "######## $*"; "$@" || rc=1; }
step make --no-print-directory test-unit
step make --no-print-directory asan
step make --no-print-directory fuzz-short
step make --no-print-directory test-e2e
echo
[ $rc -eq 0 ] && echo "make test: ALL PASSED" || echo "make test: FAILED"
exit $rc
