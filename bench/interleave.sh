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
set -euo pipefail
w=${1:?usage: interleave.sh W T N REF BIN...} t=$2 n=$3 ref=$4
shift 4
engine=${ENGINE:-ctx-mem} dur=${DUR:-0.4}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
run() { # label binary engine
	perf stat -x, -e task-clock -o "$tmp/stat" "$2" run -e "$3" -w "$w" -t "$t" -d "$dur" -r 1 \
		-D "$tmp/data" -o "$tmp/out" >/dev/null 2>&1
	local ms ops wall
	ms=$(grep task-clock "$tmp/stat" | cut -d, -f1)
	ops=$(tail -1 "$tmp/out" | cut -d, -f8)
	wall=$(tail -1 "$tmp/out" | cut -d, -f10)
	echo "$1 $ms $ops $wall" >>"$tmp/res"
	rm -rf "$tmp/out" "$tmp/data"
}
for _ in $(seq "$n"); do
	for b in "$@"; do run "$b" "$b" "$engine"; done
	run rwlock "$ref" rwlock
	run lmdb "$ref" lmdb-nosync
done
python3 - "$tmp/res" <<'PY'
import statistics as S, sys
d = {}
for line in open(sys.argv[1]):
    lab, ms, ops, wall = line.split()
    d.setdefault(lab, []).append((float(ops) / (float(ms) / 1000), float(wall)))
med = lambda v, i: S.median(x[i] for x in v)
rw, lm = med(d['rwlock'], 0), med(d['lmdb'], 0)
for lab, v in d.items():
    c = med(v, 0)
    print(f"{lab:30s} {c/1e6:6.2f}M ops/cpu-s  x{c/rw:5.2f} rwlock  x{c/lm:5.2f} lmdb"
          f"   (wall median {med(v, 1)/1e6:.2f}M)")
PY
