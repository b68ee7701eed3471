#!/usr/bin/env bash
# bench/fanout-interleave.sh N KINDS BIN... - compare the watch fan-out cell
# (ctxfeatures fanout) of several ctxfeatures binaries on a noisy machine.
#
# N rounds; each round runs, for every BIN in turn, one 1 s run of each KIND
# (comma-separated, each MODE:WATCHERS, e.g. stop:0,stop:64,paced:0,paced:64)
# under `perf stat` (the process's task-clock: writers, watchers and the
# waker). Prints per binary and kind the medians of: commits/s (wall),
# commits per CPU-second of the writers' own threads, commits per
# CPU-second of the whole process, events delivered, lags; and per binary
# and mode the writers' loss with the most watchers against 0 (ratio of
# the medians).
# FANOUT_SECONDS=S FANOUT_WARM=W: measure S seconds after W seconds of the
# same load (the steady state once W is past the history's fill); perf
# stat then starts counting W s (+ 50 ms of setup) into the run.
set -euo pipefail
n=${1:?usage: fanout-interleave.sh N KINDS BIN...} kinds=$2
secs=${FANOUT_SECONDS:-1} warm=${FANOUT_WARM:-0}
delay=$(awk -v w="$warm" 'BEGIN { print (w > 0) ? int(w * 1000 + 50) : 0 }')
shift 2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for _ in $(seq "$n"); do
	for b in "$@"; do
		for k in ${kinds//,/ }; do
			mode=${k%%:*} nw=${k##*:}
			perf stat -x, -e task-clock -D "$delay" -o "$tmp/stat" "$b" fanout 1 "$mode" "$nw" \
				"$secs" "$warm" >"$tmp/out" 2>"$tmp/err" || { cat "$tmp/err" >&2; exit 1; }
			ms=$(grep task-clock "$tmp/stat" | cut -d, -f1)
			echo "$b $k $ms $(cat "$tmp/out")" >>"$tmp/res"
		done
	done
done
python3 - "$tmp/res" <<'PY'
import statistics as S, sys, collections
d = collections.defaultdict(list)
for line in open(sys.argv[1]):
    f = line.split()
    b, k, ms = f[0], f[1], float(f[2])
    commits, percpu, events, lags = float(f[3]), float(f[5]), float(f[9]), float(f[11])
    d[(b, k)].append((commits, percpu, commits / (ms / 1000), events, lags))
med = lambda v, i: S.median(x[i] for x in v)
print(f"{'binary':40s} {'kind':10s} {'wall/s':>10s} {'wr-cpu':>10s} {'proc-cpu':>10s} {'events':>10s} {'lags':>6s}")
for (b, k), v in d.items():
    print(f"{b:40s} {k:10s} {med(v,0):10.0f} {med(v,1):10.0f} {med(v,2):10.0f} {med(v,3):10.0f} {med(v,4):6.0f}")
bins = list(dict.fromkeys(b for b, _ in d))
modes = list(dict.fromkeys(k.split(':')[0] for _, k in d))
for b in bins:
    for m in modes:
        ks = sorted((int(k.split(':')[1]), k) for bb, k in d if bb == b and k.split(':')[0] == m)
        if len(ks) < 2 or ks[0][0] != 0:
            continue
        z, top = d[(b, ks[0][1])], d[(b, ks[-1][1])]
        print(f"{b:40s} {m:7s} writer-CPU loss with {ks[-1][0]}: {100*(1-med(top,1)/med(z,1)):5.1f}%"
              f"   process-CPU loss: {100*(1-med(top,2)/med(z,2)):5.1f}%   ({len(z)} rounds)")
PY
