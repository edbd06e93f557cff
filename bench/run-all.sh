#!/bin/bash
# run-all.sh BENCH...: the body of `make bench`.  Starts one throwaway Ceph
# for every bench (unless TANDEM_CEPH_CONF names a cluster), runs each
# bench, then prints a summary of this run from $TANDEM_BENCH_OUT: every
# ratio and every figure measured as samples, with its min and max
# (bench/bench_stats.h), and its goal where issue 12 states one; then the
# time each bench took.  TANDEM_BENCH_QUICK=1 (`make bench QUICK=1`): the
# fast pass, fewer samples and shorter runs.
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
export TANDEM_BENCH_QUICK=${TANDEM_BENCH_QUICK:-0}
[ "$TANDEM_BENCH_QUICK" != 0 ] && echo "QUICK pass: fewer samples, shorter runs"
rc=0
times=""
t_all=$SECONDS
for b in "$@"; do
    echo
    echo "######## $b"
    t0=$SECONDS
    "$b" || { echo "FAILED: $b"; rc=1; }
    times="$times $(basename "$b")=$((SECONDS - t0))"
done
echo
echo "######## summary ($TANDEM_BENCH_OUT)"
python3 - "$TANDEM_BENCH_OUT" "$times" "$((SECONDS - t_all))" <<'PY'
import json, re, sys
rows = []
for l in open(sys.argv[1]):
    try:
        rows.append(json.loads(l))
    except ValueError:
        pass
# Goals the issues state (issue 12; issue 10 for snapshots), for figures
# whose bench does not write its own "goal".
GOALS = [
    (r"ratio\.replication_vs_journal\.", ">= 1.0"),
    (r"ratio\.journal_vs_raw\.randwrite4k_qd32\.", ">= 0.85"),
    (r"ratio\.journal_vs_raw\.seqwrite1m_incompressible\.sqlite$", ">= 0.6"),
    (r"ratio\.snap_create\.big_vs_small\.", "<= 1.2"),
    (r"ratio\.write_after_snapshot_vs_before\.randwrite4k\.second_pass\.",
     ">= 0.9"),
    (r"failover_s\.1000vols\.", "< 5"),
]
def goal_of(r):
    if r.get("goal"):
        return r["goal"]
    for pat, g in GOALS:
        if re.match(pat, r["name"]):
            return g
    return ""
def verdict(v, g):
    m = re.match(r"\s*(<=|>=|<|>)\s*([0-9.]+)", g)
    if not m:
        return ""
    op, x = m.group(1), float(m.group(2))
    ok = {"<=": v <= x, ">=": v >= x, "<": v < x, ">": v > x}[op]
    return "meets" if ok else "SHORT"
shown = 0
print(f'{"figure":<62} {"median":>10} {"min":>10} {"max":>10}  n  goal')
for r in rows:
    n = r["name"]
    if n.endswith(".min") or n.endswith(".max"):
        continue
    if not n.startswith("ratio.") and "samples" not in r and not goal_of(r):
        continue
    g = goal_of(r)
    mn = f'{r["min"]:>10.3f}' if "min" in r else f'{"-":>10}'
    mx = f'{r["max"]:>10.3f}' if "max" in r else f'{"-":>10}'
    ns = r.get("samples", 1)
    flag = " (single sample)" if n.startswith("ratio.") and ns < 3 else ""
    print(f'{n:<62} {r["value"]:>10.3f} {mn} {mx} {ns:>2}  '
          f'{g} {verdict(r["value"], g) if g else ""}{flag}'.rstrip())
    shown += 1
for n in ("csi.createvolume_p99_ms.", "csi.storm_s."):
    for r in rows:
        if r["name"].startswith(n):
            print(f'{r["name"]:<62} {r["value"]:>10.3f} {r.get("unit", "")}')
print(f"{len(rows)} figures in the file, {shown} above; seconds per bench:"
      f"{sys.argv[2]}; total {sys.argv[3]} s")
PY
exit $rc
