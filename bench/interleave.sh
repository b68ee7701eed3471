#!/usr/bin/env bash
# bench/interleave.sh W T N REF BIN... - compare ctx-mem of several ctxbench
# binaries on a noisy machine (issue 11, docs/benchmarks.md).
#
# N rounds; each round runs one 0.4 s cell of workload W at T threads for
# ctx-mem of every BIN, then rwlock and lmdb-nosync of REF. ENGINE=ctx-batch
# (or any ctx engine) compares that engine instead of ctx-mem; DUR=1 sets
# the cell's seconds. Prints, per
# binary, the median ops per CPU-second (the process's task-clock from
# `perf stat`, loading included) and its ratio to rwlock and LMDB, and the
# median wall-clock ops/s.
# A run that fails (or leaves no figures) does not stop the others: it is
# reported on stderr with the end of its output, counted, and left out of
# the medians; the exit status is then 1. The BINs run in the order given
# in odd rounds and in the reverse order in even ones (round 21: the run
# after another gains in growing cells). (Before round 12 `set -e` ended
# the script at the first failed run with nothing printed, the run's own
# output going to /dev/null.) A BIN given twice gets "#i" after its label.
set -euo pipefail
w=${1:?usage: interleave.sh W T N REF BIN...} t=$2 n=$3 ref=$4
shift 4
engine=${ENGINE:-ctx-mem} dur=${DUR:-0.4}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bins=("$@") labels=()
for b in "${bins[@]}"; do
	lab=$b
	for l in "${labels[@]}"; do [[ $l != "$b" ]] || lab="$b#$((${#labels[@]} + 1))"; done
	labels+=("$lab")
done
: >"$tmp/res"
run() { # label binary engine
	local ms ops wall rc=0
	perf stat -x, -e task-clock -o "$tmp/stat" "$2" run -e "$3" -w "$w" -t "$t" -d "$dur" -r 1 \
		-D "$tmp/data" -o "$tmp/out" </dev/null >"$tmp/log" 2>&1 || rc=$?
	ms=$(grep -s task-clock "$tmp/stat" | cut -d, -f1) || true
	ops=$(tail -1 "$tmp/out" 2>/dev/null | cut -d, -f8) || true
	wall=$(tail -1 "$tmp/out" 2>/dev/null | cut -d, -f10) || true
	rm -rf "$tmp/out" "$tmp/data" "$tmp/stat"
	local num='^[0-9]+([.][0-9]+)?$'
	if ((rc != 0)) || ! [[ $ms =~ $num && $ops =~ $num && $wall =~ $num ]] ||
		[[ $ms =~ ^0*([.]0*)?$ ]]; then
		echo "interleave.sh: $1 ($3) failed (exit $rc, task-clock '$ms', ops '$ops'):" >&2
		tail -5 "$tmp/log" | sed 's/^/  /' >&2
		echo "$1 FAIL" >>"$tmp/res"
		return 0
	fi
	echo "$1 $ms $ops $wall" >>"$tmp/res"
}
for r in $(seq "$n"); do
	# The binaries' order is reversed every other round: in cells that grow a
	# store the run right after another measured 20-45% faster whichever
	# binary it was (round 21, r21-recarve: memory the first run just gave
	# back is cheaper to touch in this VM), which favoured the later BIN.
	order=("${!labels[@]}")
	if ((r % 2 == 0)); then
		order=()
		for ((i = ${#labels[@]} - 1; i >= 0; i--)); do order+=("$i"); done
	fi
	for i in "${order[@]}"; do run "${labels[$i]}" "${bins[$i]}" "$engine"; done
	run rwlock "$ref" rwlock
	run lmdb "$ref" lmdb-nosync
done
python3 - "$tmp/res" <<'PY'
import statistics as S, sys
d, fails = {}, {}
for line in open(sys.argv[1]):
    f = line.split()
    lab = ' '.join(f[:-1]) if f[-1] == 'FAIL' else ' '.join(f[:-3])
    d.setdefault(lab, [])
    if f[-1] == 'FAIL':
        fails[lab] = fails.get(lab, 0) + 1
        continue
    ms, ops, wall = f[-3:]
    d[lab].append((float(ops) / (float(ms) / 1000), float(wall)))
med = lambda v, i: S.median(x[i] for x in v)
ratio = lambda c, lab: f"x{c / med(d[lab], 0):5.2f}" if d.get(lab) else "    -"
for lab, v in d.items():
    failed = f"  ({fails[lab]} of {len(v) + fails[lab]} runs failed)" if lab in fails else ""
    if not v:
        print(f"{lab:30s} no successful run{failed}", flush=True)
        continue
    c = med(v, 0)
    print(f"{lab:30s} {c/1e6:6.2f}M ops/cpu-s  {ratio(c, 'rwlock')} rwlock  {ratio(c, 'lmdb')} lmdb"
          f"   (wall median {med(v, 1)/1e6:.2f}M){failed}", flush=True)
sys.exit(1 if fails else 0)
PY
