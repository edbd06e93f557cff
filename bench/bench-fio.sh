#!/usr/bin/env bash
# bench-fio.sh: fio through a staged ext4 volume (tandem-volfuse + loop +
# ext4, exactly what NodeStageVolume builds), on sqlite and, when
# TANDEM_CEPH_CONF is set, on rados.
#
# Figures (JSON lines appended to ${TANDEM_BENCH_OUT:-build/bench.jsonl}):
#   fio.randwrite4k_iops.<backend>   4 KiB random writes, libaio, iodepth 32,
#                                    O_DIRECT (every write journaled durably)
#   fio.seqwrite1m_mibps.<backend>   1 MiB sequential writes, iodepth 1
# and, when bench-journal's figures of the same run are in the file
# (journal.randwrite4k_qd32.<backend>.journal_iops and
# journal.seqwrite1m_incompressible.<backend>.journal_mibps: the same
# queue depths, jr_write straight on the engine), the cost of FUSE, loop
# and ext4 as ratios:
#   ratio.fio_vs_journal.randwrite4k.<backend>
#   ratio.fio_vs_journal.seqwrite1m.<backend>
#
# Env: B (build dir, default build), FIO_RUNTIME (seconds per case,
# default 10), FIO_SIZE (file size, default 256M), TANDEM_TEST_TMP.
# Needs root, /dev/fuse, loop devices and fio; otherwise prints SKIPPED.
set -u
B=${B:-build}
OUT=${TANDEM_BENCH_OUT:-build/bench.jsonl}
RUNTIME=${FIO_RUNTIME:-10}
SIZE=${FIO_SIZE:-256M}
TOOL=$B/bench/node-stage-tool
export TANDEM_VOLFUSE=${TANDEM_VOLFUSE:-$B/tandem-volfuse}

skip() { echo "bench-fio: SKIPPED: $*"; exit 0; }
[ "$(id -u)" = 0 ] || skip "needs root"
[ -w /dev/fuse ] || skip "/dev/fuse not usable"
[ -w /dev/loop-control ] || skip "/dev/loop-control not usable"
command -v fio >/dev/null || skip "fio not installed"
[ -x "$TOOL" ] && [ -x "$TANDEM_VOLFUSE" ] ||
  { echo "bench-fio: $TOOL or $TANDEM_VOLFUSE missing (make B=$B $TOOL $TANDEM_VOLFUSE)"; exit 1; }
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

emit() { # name value unit
  printf '{"name": "%s", "value": %s, "unit": "%s"}\n' "$1" "$2" "$3" >>"$OUT"
  printf '  %-44s %12s %s\n' "$1" "$2" "$3"
}

# Field 49 of fio's terse (v3) output is write IOPS, field 48 write KiB/s.
fio_case() { # dir name rw bs iodepth -> "iops kibps"
  fio --name="$2" --directory="$1" --filename="$2.dat" --size="$SIZE" \
      --rw="$3" --bs="$4" --iodepth="$5" --ioengine=libaio --direct=1 \
      --runtime="$RUNTIME" --time_based --ramp_time=1 --end_fsync=1 \
      --minimal --terse-version=3 2>"$WORK/fio.err" |
    awk -F';' '{print $49, $48}'
}

# The journal engine's figure of the same run, if its bench wrote one.
jr_figure() { # name
  [ -f "$OUT" ] || return 0
  grep -o "\"name\": *\"$1\", *\"value\": *[0-9.eE+-]*" "$OUT" | tail -1 |
    sed 's/.*: *//'
}

run_backend() { # backend config-file
  local be=$1 cfg=$2 vol="bench-fio-$1-$$" stage="$WORK/stage-$1" run="$WORK/run-$1"
  "$TOOL" create "$cfg" a "$vol" $((2 << 30)) || { echo "bench-fio: create failed"; return 1; }
  STAGED+=("$be")
  "$TOOL" stage "$cfg" a "$vol" "$run" "$stage" ext4 >/dev/null ||
    { echo "bench-fio: stage failed"; return 1; }
  local r iops kib
  r=$(fio_case "$stage" rw4k randwrite 4k 32) || true
  iops=${r%% *}
  r=$(fio_case "$stage" seq1m write 1M 1) || true
  kib=${r##* }
  if [ -z "$iops" ] || [ -z "$kib" ]; then
    echo "bench-fio: fio failed: $(tail -3 "$WORK/fio.err")"
    return 1
  fi
  emit "fio.randwrite4k_iops.$be" "$iops" "IOPS"
  emit "fio.seqwrite1m_mibps.$be" "$(awk -v k="$kib" 'BEGIN{printf "%.1f", k/1024}')" "MiB/s"
  local j
  j=$(jr_figure "journal.randwrite4k_qd32.$be.journal_iops")
  [ -n "$j" ] && emit "ratio.fio_vs_journal.randwrite4k.$be" \
    "$(awk -v a="$iops" -v b="$j" 'BEGIN{printf "%.3f", a/b}')" "x"
  j=$(jr_figure "journal.seqwrite1m_incompressible.$be.journal_mibps")
  [ -n "$j" ] && emit "ratio.fio_vs_journal.seqwrite1m.$be" \
    "$(awk -v a="$kib" -v b="$j" 'BEGIN{printf "%.3f", a/1024/b}')" "x"
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
