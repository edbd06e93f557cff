#!/bin/sh
# run-fuzz.sh short|long FUZZER...: run each libFuzzer target from its seed
# corpus (tests/fuzz/corpus/<name>, if any) for a bounded time.  Each run
# is noted in $TANDEM_TEST_REPORT (tests/run-all.sh's summary) if set.
mode=$1; shift
secs=20; [ "$mode" = long ] && secs=300
for f in "$@"; do
    name=$(basename "$f")
    corpus=build/fuzz/corpus/$name
    mkdir -p "$corpus"
    [ -d "tests/fuzz/corpus/$name" ] && cp -n tests/fuzz/corpus/"$name"/* "$corpus"/ 2>/dev/null
    echo "== fuzz $name (${secs}s)"
    "$f" -max_total_time="$secs" -print_final_stats=1 "$corpus" \
        >build/fuzz/"$name".log 2>&1 || { tail -40 build/fuzz/"$name".log; echo "FAILED: fuzz $name"; exit 1; }
    grep -E 'stat::number_of_executed_units|Done' build/fuzz/"$name".log | tail -2
    # For the summary of tests/run-all.sh.
    [ -n "${TANDEM_TEST_REPORT:-}" ] && echo "fuzz $name" >>"$TANDEM_TEST_REPORT"
done
exit 0
