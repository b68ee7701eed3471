#!/usr/bin/env bash
# bench/redis/cpu.sh ROUNDS N SERVER... : the server's CPU time per request
# (µs) and its throughput under redis-benchmark, servers in alternation.
#
# A SERVER is "redis" or the path of a ctxd binary. In every round each
# server, in turn, is started fresh (durability DUR, default none: memory
# only, and Redis without AOF or RDB; "always": ctxd's default, against
# Redis's appendfsync always), prefilled with bench/redis/prefill.awk, and
# given every cell of CELLS one after the other, N requests each; the CPU is
# the server's user + system time from /proc/PID/stat before and after the
# redis-benchmark run (10 ms ticks: N should keep a run above a second). The
# order of the servers rotates from round to round. Prints one line per
# measurement, then the median of each server and cell over the rounds.
#
# CELLS (default "hset:50 hget:50 hincrby:50 hset:16x16 hget:16x16"):
# command:clients[xpipeline]. Commands: hset (a new field of one of 100,000
# hashes of one field), hget (a field of one of 1,000 hashes of 1,000
# fields), hincrby (a counter of one of 100,000 hashes), hsetsame (a field
# of one of 1,000 fields of one hash: the pipeline's writes hit the same
# context), hincrbysame (a counter of one of 1,000 of one hash), thset
# (redis-benchmark's own -t hset: one field of one hash, written again and
# again). CTXD_ARGS: more ctxd options (e.g. "--loops 1").
set -euo pipefail
rounds=${1:?usage: cpu.sh ROUNDS N SERVER...}
n=${2:?}
shift 2
here=$(cd "$(dirname "$0")" && pwd)
dur=${DUR:-none}
cells=${CELLS:-hset:50 hget:50 hincrby:50 hset:16x16 hget:16x16}
work=$(mktemp -d /tmp/ctxd-cpu.XXXXXX)
out=$work/raw.txt
trap 'jobs -p | xargs -r kill 2>/dev/null; rm -rf "$work"' EXIT
awk -f "$here/prefill.awk" >"$work/prefill.resp"

redis=${REDIS_SERVER:-redis-server}
# shellcheck source=bench/redis/servers.sh
. "$here/servers.sh"

args() {
	case $1 in
	hset) echo "-r 100000 HSET myhash:__rand_int__ f:__rand_int__ v" ;;
	hget) echo "-r 1000 HGET hk:__rand_int__ f:__rand_int__" ;;
	hincrby) echo "-r 100000 HINCRBY myhash:__rand_int__ n 1" ;;
	hsetsame) echo "-r 1000 HSET h16 f:__rand_int__ v" ;;
	hincrbysame) echo "-r 1000 HINCRBY h16 n:__rand_int__ 1" ;;
	thset) echo "-t hset" ;;
	esac
}

hz=$(getconf CLK_TCK)
servers=("$@")
for r in $(seq "$rounds"); do
	k=${#servers[@]}
	for i in $(seq 0 $((k - 1))); do
		s=${servers[$(((i + r) % k))]}
		start_server "$s" "$dur" "$work/data"
		prefill "$PORT"
		for cell in $cells; do
			cmd=${cell%%:*}
			load=${cell#*:}
			c=${load%x*}
			p=1
			[ "$load" != "$c" ] && p=${load#*x}
			t0=$(cpu_of "$PID")
			# shellcheck disable=SC2046
			rps=$(redis-benchmark -p "$PORT" -c "$c" -P "$p" -n "$n" --csv $(args "$cmd") |
				tail -1 | cut -d, -f2 | tr -d '"')
			t1=$(cpu_of "$PID")
			us=$(awk -v t=$((t1 - t0)) -v hz="$hz" -v n="$n" 'BEGIN {printf "%.2f", t / hz * 1e6 / n}')
			echo "$r $(basename "$s") $cell $us $rps" | tee -a "$out"
		done
		stop_server "$PID"
	done
done
echo "== medians over $rounds round(s), durability $dur: server, cell, µs CPU per request, requests/s"
sort -k2,2 -k3,3 "$out" | awk '
function med(a, m,   i, j, t) {
	for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
	return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
}
function flush() { if (m) printf "%-14s %-12s %8.2f %10.0f\n", ks, kc, med(u, m), med(q, m) }
{ if ($2 != ks || $3 != kc) { flush(); ks = $2; kc = $3; m = 0; delete u; delete q }
  m++; u[m] = $4; q[m] = $5 }
END { flush() }'
