# bench_stats.sh: bench_stats.h for the shell benches (sourced): the same
# sample count and the same JSON lines, so run-all.sh reads every figure
# alike.  Needs OUT (the figures file) set by the sourcing script.
#   bs_samples                       samples per ratio: TANDEM_BENCH_SAMPLES,
#                                    else 5 (TANDEM_BENCH_QUICK: 3); >= 3
#   bs_emit_samples NAME UNIT GOAL ISRATIO V1 V2 V3 ...
#                                    median with min, max: printed, and
#                                    written as {"name", "value", "unit",
#                                    "min", "max", "samples"[, "goal"]}
#                                    plus NAME.min / NAME.max rows when
#                                    ISRATIO is 1; GOAL "" for none
bs_samples() {
  local n
  if [ -n "${TANDEM_BENCH_SAMPLES:-}" ]; then n=$TANDEM_BENCH_SAMPLES
  elif [ "${TANDEM_BENCH_QUICK:-0}" != 0 ] && [ -n "${TANDEM_BENCH_QUICK:-}" ]; then n=3
  else n=5; fi
  [ "$n" -lt 3 ] 2>/dev/null && n=3
  [ "$n" -gt 32 ] 2>/dev/null && n=32
  echo "$n"
}

bs_emit_samples() { # name unit goal isratio values...
  local name=$1 unit=$2 goal=$3 isratio=$4
  shift 4
  [ $# -gt 0 ] || return 1
  local stats
  stats=$(printf '%s\n' "$@" | sort -g | awk '
    { v[NR] = $1 }
    END { n = NR; med = n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
          printf "%.4f %.4f %.4f %d", med, v[1], v[n], n }')
  set -- $stats
  local g=""
  [ -n "$goal" ] && g=", \"goal\": \"$goal\""
  printf '{"name": "%s", "value": %s, "unit": "%s", "min": %s, "max": %s, "samples": %s%s}\n' \
    "$name" "$1" "$unit" "$2" "$3" "$4" "$g" >>"$OUT"
  if [ "$isratio" = 1 ]; then
    printf '{"name": "%s.min", "value": %s, "unit": "%s"}\n' "$name" "$2" "$unit" >>"$OUT"
    printf '{"name": "%s.max", "value": %s, "unit": "%s"}\n' "$name" "$3" "$unit" >>"$OUT"
  fi
  printf '  %-62s %10.3f  (min %.3f, max %.3f, %d samples) %s%s\n' "$name" "$1" \
    "$2" "$3" "$4" "$unit" "${goal:+  goal $goal}"
}
