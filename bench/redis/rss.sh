#!/usr/bin/env bash
# bench/redis/rss.sh ROUNDS SERVER... : a server's resident set after loading
# 1,000,000 fields (100,000 hashes of 10 fields of 16 bytes, HSET of 10
# fields per command through redis-cli --pipe), servers in alternation.
#
# A SERVER is "redis" or the path of a ctxd binary, started fresh with
# durability DUR (default none) as bench/redis/cpu.sh does. Prints, per
# round and server, VmRSS (MiB) before loading, 1 s after and IDLE seconds
# after (default 35: past ctxd's 30 s jemalloc dirty decay), then the medians.
set -euo pipefail
rounds=${1:?usage: rss.sh ROUNDS SERVER...}
shift
here=$(cd "$(dirname "$0")" && pwd)
dur=${DUR:-none}
idle=${IDLE:-35}
work=$(mktemp -d /tmp/ctxd-rss.XXXXXX)
out=$work/raw.txt
trap 'jobs -p | xargs -r kill 2>/dev/null; rm -rf "$work"' EXIT
awk 'BEGIN {
	for (h = 0; h < 100000; h++) {
		printf "*22\r\n$4\r\nHSET\r\n$15\r\nrk:%012d\r\n", h
		for (f = 0; f < 10; f++)
			printf "$14\r\nf:%012d\r\n$16\r\nvvvvvvvvvvvvvvvv\r\n", f
	}
}' >"$work/load.resp"

redis=${REDIS_SERVER:-redis-server}
# shellcheck source=bench/redis/servers.sh
. "$here/servers.sh"

rss_mib() { awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

servers=("$@")
for r in $(seq "$rounds"); do
	k=${#servers[@]}
	for i in $(seq 0 $((k - 1))); do
		s=${servers[$(((i + r) % k))]}
		start_server "$s" "$dur" "$work/data"
		r0=$(rss_mib "$PID")
		res=$(redis-cli -p "$PORT" --pipe <"$work/load.resp" 2>&1)
		echo "$res" | grep -q 'errors: 0, replies: 100000' ||
			{ echo "rss.sh: load: $res" >&2; exit 1; }
		sleep 1
		r1=$(rss_mib "$PID")
		sleep "$idle"
		r2=$(rss_mib "$PID")
		echo "$r $(basename "$s") $r0 $r1 $r2" | tee -a "$out"
		stop_server "$PID"
	done
done
echo "== medians over $rounds round(s), durability $dur: server, VmRSS MiB before, 1 s after loading, ${idle} s after"
sort -k2,2 "$out" | awk '
function med(a, m,   i, j, t) {
	for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
	return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
}
function flush() { if (m) printf "%-14s %8.1f %8.1f %8.1f\n", ks, med(x, m), med(y, m), med(z, m) }
{ if ($2 != ks) { flush(); ks = $2; m = 0; delete x; delete y; delete z }
  m++; x[m] = $3; y[m] = $4; z[m] = $5 }
END { flush() }'
