#!/bin/bash
# run-all.sh BENCH...: the body of `make bench`.  Starts one throwaway Ceph
# for every bench (unless TANDEM_CEPH_CONF names a cluster), runs each
# bench, then prints every figure of this run from $TANDEM_BENCH_OUT.
set -u
cd "$(dirname "$0")/.."
B=${B:-build}
export TANDEM_BENCH_OUT=${TANDEM_BENCH_OUT:-$PWD/$B/bench.jsonl}
mkdir -p "$(dirname "$TANDEM_BENCH_OUT")"
: >"$TANDEM_BENCH_OUT"
tmp=$(mktemp -d /tmp/tandem-bench.XXXXXX)
started_ceph=""
cleanup() {
    [ -n "$started_ceph" ] && tests/ceph/ceph-down.sh "$started_ceph" >/dev/null 2>&1
    rm -rf "$tmp"
}
trap cleanup EXIT
if [ -z "${TANDEM_CEPH_CONF:-}" ]; then
    if out=$(tests/ceph/ceph-up.sh "$tmp/ceph" 2>"$tmp/ceph-up.log"); then
        eval "$out"
        export TANDEM_CEPH_CONF TANDEM_CEPH_KEYRING TANDEM_CEPH_CLIENT \
            TANDEM_CEPH_POOL_A TANDEM_CEPH_POOL_B
        started_ceph=$tmp/ceph
        echo "ceph: started a throwaway cluster for the rados figures"
    else
        echo "ceph: did not start ($(tail -1 "$tmp/ceph-up.log")): rados figures SKIPPED"
    fi
fi
rc=0
for b in "$@"; do
    echo
    echo "######## $b"
    "$b" || { echo "FAILED: $b"; rc=1; }
done
echo
echo "######## all figures ($TANDEM_BENCH_OUT)"
python3 - "$TANDEM_BENCH_OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
for r in rows:
    if r["name"].startswith("ratio."):
        print(f'{r["name"]:<60} {r["value"]:>10.3f} {r.get("unit","")}')
print(f"{len(rows)} figures, ratios listed above")
PY
exit $rc
