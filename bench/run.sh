#!/usr/bin/env bash
# bench/run.sh BUILD_DIR [quick|full|report] [more `ctxbench run` options]
#
# What `make bench` runs, after building BUILD_DIR with -DCTX_BENCH=ON:
#   quick  1,2,64 threads, 0.25 s per cell, 1 repetition (under 2 minutes);
#          writes bench/results/quick*.csv and prints ratios and goals; the
#          plots go to BUILD_DIR/bench-plots-quick/; docs/ is left alone
#   full   1,2,4,16,32,64 threads, 1 s per cell, 3 repetitions (medians);
#          writes bench/results/full*.csv, the plots docs/bench-*.png, and the
#          generated part of docs/benchmarks.md (between its markers)
#   report the report, plots and docs of full mode again, from the CSV files
#          already in bench/results (no measuring)
# Engines keep their files under BUILD_DIR/bench-data, one directory per
# cell, removed after each cell and at the end.
set -euo pipefail

build=${1:?usage: bench/run.sh BUILD_DIR [quick|full] [ctxbench run options]}
mode=${2:-full}
shift $(($# >= 2 ? 2 : 1))
measure=1
if [ "$mode" = report ]; then
	mode=full measure=0
fi
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$build/bench/ctxbench
data=$build/bench-data
results=$root/bench/results

case $mode in
quick) dur=0.25 reps=1 threads=1,2,64 memctx=2000 retry=0 ;;
full) dur=1 reps=3 threads=1,2,4,16,32,64 memctx=10000 retry=0.3 ;;
*) echo "run.sh: mode is quick, full or report, not '$mode'" >&2; exit 2 ;;
esac
[ -x "$bin" ] || { echo "run.sh: no $bin (build with -DCTX_BENCH=ON)" >&2; exit 2; }

raw=$results/$mode-raw.csv
env=$results/$mode-env.txt
memory=$results/$mode-memory.csv
plots=$build/bench-plots-$mode
report=$build/bench-report-$mode.md
mkdir -p "$results" "$plots"
rm -rf "$data" "$plots"/*
trap 'rm -rf "$data"' EXIT
if [ $measure = 1 ]; then
rm -f "$raw"

# ---- the machine and the settings, for the report --------------------------
mkdir -p "$data"
cpu=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')
mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
src=$(findmnt -n -o SOURCE -T "$data" 2>/dev/null || echo '?')
fstype=$(findmnt -n -o FSTYPE -T "$data" 2>/dev/null || echo '?')
dev=$(basename "$src")
disk="$src ($fstype"
if [ -e "/sys/block/$dev/queue/rotational" ]; then
	[ "$(cat /sys/block/$dev/queue/rotational)" = 1 ] && disk+=", reported rotational" ||
		disk+=", reported non-rotational"
fi
model=$(lsblk -dn -o MODEL "$src" 2>/dev/null | sed 's/ *$//' || true)
[ -n "$model" ] && disk+=", model $model"
disk+=")"
cpuid=$(awk -F': *' '/^cpu family/ {f=$2} /^model\t/ {m=$2} /^stepping/ {s=$2} END {printf "family %s model %s stepping %s", f, m, s}' /proc/cpuinfo)
hyp=$(lscpu 2>/dev/null | sed -n 's/^Hypervisor vendor: *//p')
[ -n "$hyp" ] && cpuid+=", $hyp guest"
cc=$(sed -n 's/^CMAKE_C_COMPILER:[A-Z]*=//p' "$build/CMakeCache.txt" 2>/dev/null)
ccver=$(${cc:-cc} --version 2>/dev/null | head -1)
commit=$(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown)
create="ctx creates a context and its 4 keys in one commit (ctx_txn_begin_create), as the peers in one transaction"
case " $* " in
*" --create-two-commits "*) create="ctx creates a context with ctx_create, then puts its 4 keys in a transaction (two commits, two fsyncs under ALWAYS)" ;;
esac
{
	echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "machine: $(nproc) CPUs ($cpu, $cpuid), $mem RAM, kernel $(uname -r)"
	echo "disk of the data directories: $disk"
	echo "software: ctx $commit, $($bin versions | tr '\n' ' ' | sed 's/ $//'), $ccver, CMake Release (-O3)"
	echo "settings: $mode mode: $dur s per cell after a start barrier, $reps repetition(s), median reported; threads $threads; 1,000 contexts x 16 keys x 64-byte values; rww: 4 writer threads; $create; engines in a shuffled order within each repetition, one fresh data directory per cell$([ "$retry" != 0 ] && echo "; before a cell the harness waits (20 s at most, half the measuring time in all) until other processes use less than $retry CPUs, and a cell during which they used $retry CPUs or more is measured again (at most twice, within a budget of 1/16 of the cells), the least disturbed attempt kept")"
	echo "command: bench/run.sh $build $mode${*:+ $*} (scheduling niceness $(nice))"
	echo "before the run: $("$bin" machine "$data"); load average $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$env"
cat "$env" >&2

# ---- measure -----------------------------------------------------------------
start=$(date +%s)
"$bin" run -d "$dur" -r "$reps" -t "$threads" -D "$data" -o "$raw" --retry-busy "$retry" "$@"
"$bin" memory -n "$memctx" -D "$data" -o "$memory"
echo "measured in $(($(date +%s) - start)) s" >&2
echo "after the run ($(($(date +%s) - start)) s): $("$bin" machine "$data"); load average $(cut -d' ' -f1-3 /proc/loadavg)" >>"$env"
fi

# ---- report --------------------------------------------------------------------
"$bin" report "$raw" --memory "$memory" --env "$env" --summary "$results/$mode.csv" \
	--markdown "$report" --plot-dir "$plots"

if [ "$mode" = full ]; then
	pngdir=$root/docs
else
	pngdir=$plots
fi
if command -v gnuplot >/dev/null; then
	for dat in "$plots"/plot-*.dat; do
		[ -e "$dat" ] || continue
		w=$(basename "$dat" .dat)
		w=${w#plot-}
		header=$(head -1 "$dat")
		ncol=$(wc -w <<<"$header")
		nctx=$(tr ' ' '\n' <<<"$header" | grep -c '^ctx-' || true)
		title=$(grep -m1 "^### $w:" "$report" | sed 's/^### //' || echo "$w")
		gnuplot -e "infile='$dat'; outfile='$pngdir/bench-$w.png'; ttl='$title'; ncol=$ncol; nctx=$nctx" \
			"$root/bench/plot.gp"
	done
else
	echo "run.sh: gnuplot not found, no plots" >&2
fi

if [ "$mode" = full ]; then
	doc=$root/docs/benchmarks.md
	begin='<!-- BEGIN GENERATED by bench/run.sh: do not edit by hand -->'
	end='<!-- END GENERATED -->'
	if ! grep -qF "$begin" "$doc" 2>/dev/null; then
		printf '# Benchmarks\n\n%s\n%s\n' "$begin" "$end" >>"$doc"
	fi
	awk -v gen="$report" -v b="$begin" -v e="$end" '
		$0 == b { print; while ((getline l < gen) > 0) print l; skip = 1; next }
		$0 == e { skip = 0 }
		!skip { print }' "$doc" >"$doc.tmp"
	mv "$doc.tmp" "$doc"
	echo "run.sh: wrote $results/$mode.csv, docs/benchmarks.md, docs/bench-*.png" >&2
else
	# Show the ratios and the goals.
	sed -n '/^### Ratios/,/^### Memory/p' "$report" | sed '$d'
	echo "run.sh: wrote $results/$mode.csv; report $report; plots in $plots" >&2
fi
