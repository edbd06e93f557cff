#!/usr/bin/env bash
# bench-fio.sh: fio through a staged ext4 volume (tandem-volfuse + loop +
# ext4, exactly what NodeStageVolume builds), on sqlite and, when
# TANDEM_CEPH_CONF is set, on rados.
#
# Figures (JSON lines appended to ${TANDEM_BENCH_OUT:-build/bench.jsonl}):
#   fio.randwrite4k_iops.<backend>   4 KiB random writes, libaio, iodepth 32,
#                                    O_DIRECT (every write journaled durably)
#   fio.seqwrite1m_mibps.<backend>   1 MiB sequential writes, iodepth 1
# and the cost of FUSE, loop and ext4 as ratios against jr_write straight
# on the engine at the same queue depths (bench-journal's randwrite4k_qd32
# and seqwrite1m_incompressible, one journaled run each: TANDEM_BENCH_ONCE):
#   ratio.fio_vs_journal.randwrite4k.<backend>
#   ratio.fio_vs_journal.seqwrite1m.<backend>
# Samples (bench_stats.sh: 5; QUICK 3), interleaved: fio randwrite, fio
# seqwrite, engine randwrite, engine seqwrite, fio ...; each figure is the
# median of its samples with min and max, each ratio the median of the
# per-sample ratios.
#
# Env: B (build dir, default build), FIO_RUNTIME (seconds per fio run,
# default 2; QUICK 1), FIO_SIZE (file size, default 256M), TANDEM_TEST_TMP.
# Needs root, /dev/fuse, loop devices and fio; otherwise prints SKIPPED.
set -u
B=${B:-build}
OUT=${TANDEM_BENCH_OUT:-build/bench.jsonl}
. "$(dirname "$0")/bench_stats.sh"
if [ -n "${TANDEM_BENCH_QUICK:-}" ] && [ "$TANDEM_BENCH_QUICK" != 0 ]; then
  RUNTIME=${FIO_RUNTIME:-1}; JSECS=0.5
else
  RUNTIME=${FIO_RUNTIME:-2}; JSECS=1.0
fi
NS=$(bs_samples)
JR_BENCH=$B/bench/bench-journal
SIZE=${FIO_SIZE:-256M}
TOOL=$B/bench/node-stage-tool
export TANDEM_VOLFUSE=${TANDEM_VOLFUSE:-$B/tandem-volfuse}

skip() { echo "bench-fio: SKIPPED: $*"; exit 0; }
[ "$(id -u)" = 0 ] || skip "needs root"
[ -w /dev/fuse ] || skip "/dev/fuse not usable"
[ -w /dev/loop-control ] || skip "/dev/loop-control not usable"
command -v fio >/dev/null || skip "fio not installed"
[ -x "$TOOL" ] && [ -x "$TANDEM_VOLFUSE" ] && [ -x "$JR_BENCH" ] ||
  { echo "bench-fio: $TOOL, $TANDEM_VOLFUSE or $JR_BENCH missing (make B=$B $TOOL $TANDEM_VOLFUSE $JR_BENCH)"; exit 1; }
mkdir -p "$(dirname "$OUT")"

WORK=$(mktemp -d "${TANDEM_TEST_TMP:-/tmp}/bench-fio.XXXXXX")
STAGED=()
cleanup() {
  for s in "${STAGED[@]}"; do
    "$TOOL" unstage "$WORK/run-$s" "$WORK/stage-$s" 2>/dev/null
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

# Field 49 of fio's terse (v3) output is write IOPS, field 48 write KiB/s.
fio_case() { # dir name rw bs iodepth -> "iops kibps"
  fio --name="$2" --directory="$1" --filename="$2.dat" --size="$SIZE" \
      --rw="$3" --bs="$4" --iodepth="$5" --ioengine=libaio --direct=1 \
      --runtime="$RUNTIME" --time_based --ramp_time=1 --end_fsync=1 \
      --minimal --terse-version=3 2>"$WORK/fio.err" |
    awk -F';' '{print $49, $48}'
}

# One journaled run of each engine case on backend: "iops4k mibps1m".
jr_once() { # backend
  TANDEM_BENCH_ONCE=1 TANDEM_BENCH_BACKENDS=$1 TANDEM_BENCH_SECS=$JSECS \
    TANDEM_BENCH_CASES="randwrite4k_qd32 seqwrite1m_incompressible" \
    "$JR_BENCH" 2>"$WORK/jr.err" | awk '
      $1 == "once" && $2 == "randwrite4k_qd32" { i = $4 }
      $1 == "once" && $2 == "seqwrite1m_incompressible" { m = $5 }
      END { if (i != "" && m != "") print i, m }'
}

run_backend() { # backend config-file
  local be=$1 cfg=$2 vol="bench-fio-$1-$$" stage="$WORK/stage-$1" run="$WORK/run-$1"
  "$TOOL" create "$cfg" a "$vol" $((2 << 30)) || { echo "bench-fio: create failed"; return 1; }
  STAGED+=("$be")
  "$TOOL" stage "$cfg" a "$vol" "$run" "$stage" ext4 >/dev/null ||
    { echo "bench-fio: stage failed"; return 1; }
  local r iops kib j k
  local -a IOPS=() MIBS=() R4=() R1=()
  for ((k = 0; k < NS; k++)); do
    r=$(fio_case "$stage" rw4k randwrite 4k 32) || true
    iops=${r%% *}
    r=$(fio_case "$stage" seq1m write 1M 1) || true
    kib=${r##* }
    if [ -z "$iops" ] || [ -z "$kib" ]; then
      echo "bench-fio: fio failed: $(tail -3 "$WORK/fio.err")"
      return 1
    fi
    j=$(jr_once "$be")
    if [ -z "$j" ]; then
      echo "bench-fio: bench-journal failed: $(tail -3 "$WORK/jr.err")"
      return 1
    fi
    IOPS+=("$iops")
    MIBS+=("$(awk -v k="$kib" 'BEGIN{printf "%.1f", k/1024}')")
    R4+=("$(awk -v a="$iops" -v b="${j%% *}" 'BEGIN{printf "%.4f", a/b}')")
    R1+=("$(awk -v a="$kib" -v b="${j##* }" 'BEGIN{printf "%.4f", a/1024/b}')")
    echo "  sample $k: fio ${IOPS[k]} IOPS, ${MIBS[k]} MiB/s; engine $j: ratios ${R4[k]} ${R1[k]}"
  done
  bs_emit_samples "fio.randwrite4k_iops.$be" IOPS "" 0 "${IOPS[@]}"
  bs_emit_samples "fio.seqwrite1m_mibps.$be" MiB/s "" 0 "${MIBS[@]}"
  bs_emit_samples "ratio.fio_vs_journal.randwrite4k.$be" x "" 1 "${R4[@]}"
  bs_emit_samples "ratio.fio_vs_journal.seqwrite1m.$be" x "" 1 "${R1[@]}"
  "$TOOL" unstage "$run" "$stage" 2>/dev/null
  STAGED=("${STAGED[@]/$be}")
  "$TOOL" delete "$cfg" a "$vol" 2>/dev/null
  return 0
}

rc=0
printf '[region a]\nbackend = sqlite\ndb_path = %s/a.db\n' "$WORK" >"$WORK/sqlite.conf"
run_backend sqlite "$WORK/sqlite.conf" || rc=1

if [ -n "${TANDEM_CEPH_CONF:-}" ]; then
  cat >"$WORK/rados.conf" <<EOF
[region a]
backend = rados
ceph_conf = $TANDEM_CEPH_CONF
client_id = ${TANDEM_CEPH_CLIENT:-admin}
keyring = ${TANDEM_CEPH_KEYRING:-}
pool = ${TANDEM_CEPH_POOL_A:-tandem-a}
rados_namespace = bench-fio-$$
EOF
  [ -n "${TANDEM_CEPH_KEYRING:-}" ] || sed -i '/^keyring = $/d' "$WORK/rados.conf"
  run_backend rados "$WORK/rados.conf" || rc=1
else
  echo "bench-fio: rados: SKIPPED: ${TANDEM_CEPH_SKIP:-TANDEM_CEPH_CONF not set}"
fi
exit $rc
