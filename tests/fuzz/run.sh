#!/usr/bin/env bash
# run.sh BUILD_DIR SECONDS TARGET... - run each libFuzzer target for SECONDS
# (what `make fuzz` does), FUZZ_JOBS targets at a time (default: the number
# of CPUs; libFuzzer runs one process, one thread per target, so on 2 CPUs two
# targets side by side each get the SECONDS of CPU they would get alone, and
# 5 targets take 3 x SECONDS instead of 5 x SECONDS). Target T starts from its
# seed corpus tests/fuzz/corpus/T (plus what earlier runs left in
# BUILD_DIR/fuzz-work/T); afterwards the inputs that add coverage are merged
# back into the seed corpus (-merge=1). Crashes, leaks, timeouts and broken
# contracts are saved as BUILD_DIR/fuzz-artifacts/T-*; the full output is in
# BUILD_DIR/fuzz-logs. Each target's summary is printed, in the order given,
# once all have run. Exit status: 0 if every target ran clean.
set -uo pipefail
cd "$(dirname "$0")/../.."
build=$1
seconds=$2
shift 2
jobs=${FUZZ_JOBS:-$(nproc)}
[ "$jobs" -ge 1 ] 2>/dev/null || jobs=1
mkdir -p "$build/fuzz-logs" "$build/fuzz-artifacts"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# One target: fuzz, then merge; the summary goes to $build/fuzz-logs/T.summary,
# the exit status is nonzero if the target failed.
fuzz_one() {
	local t=$1 corpus=tests/fuzz/corpus/$1 work=$build/fuzz-work/$1
	local log=$build/fuzz-logs/$1.log rc before
	mkdir -p "$corpus" "$work"
	echo "== fuzz $t for ${seconds}s (log: $log)"
	# -close_fd_mask=2: the library's stderr notes (torn tails cut, ...)
	# would flood the log; libFuzzer and the sanitizers keep their output.
	"$build/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -close_fd_mask=2 \
		-artifact_prefix="$build/fuzz-artifacts/$t-" "$work" "$corpus" >"$log" 2>&1
	rc=$?
	grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb|new_units_added)' "$log"
	grep -E '^#[0-9]+ +DONE' "$log" | tail -1
	if [ $rc -ne 0 ]; then
		echo "!! $t failed (exit $rc):"
		grep -E 'ERROR|SUMMARY|contract broken|Test unit written' "$log" | head -20
		return 1
	fi
	before=$(ls "$corpus" | wc -l)
	"$build/$t" -merge=1 -close_fd_mask=2 "$corpus" "$work" >>"$log" 2>&1 ||
		echo "!! merging into $corpus failed (see $log)"
	echo "   corpus $corpus: $before -> $(ls "$corpus" | wc -l) files"
}

echo "== fuzz ${#@} targets for ${seconds}s each, $jobs at a time"
declare -A pid_of
for t in "$@"; do
	while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do
		wait -n
	done
	fuzz_one "$t" >"$build/fuzz-logs/$t.summary" 2>&1 &
	pid_of[$t]=$!
done
failed=()
for t in "$@"; do
	wait "${pid_of[$t]}" || failed+=("$t")
	cat "$build/fuzz-logs/$t.summary"
done
if [ ${#failed[@]} -ne 0 ]; then
	echo "fuzz: FAILED: ${failed[*]} (inputs in $build/fuzz-artifacts)"
	exit 1
fi
echo "fuzz: all targets ran clean"
