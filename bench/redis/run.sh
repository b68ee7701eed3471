#!/usr/bin/env bash
# bench/redis/run.sh BUILD_DIR [quick|full|report|profile]
#
# ctxd against Debian's redis-server, both driven by redis-benchmark in the
# same run (what `make bench-server` runs, after building BUILD_DIR/ctxd).
#   quick   1 round, ~1.5 s per measurement: a smoke run (about 2 minutes);
#           writes bench/results/server-quick*.csv and prints the table; the
#           plots and the report go to BUILD_DIR/bench-server-quick/
#   full    5 rounds, ~3 s per measurement, medians (about 13 minutes);
#           writes bench/results/server-full*.csv, docs/bench-server-*.png and
#           the generated part of "ctxd against Redis" in docs/benchmarks.md
#   report  the report, plots and docs of full mode again from the CSV files
#   profile perf record -g on ctxd during one cell (PROFILE="always hset 64"),
#           report in BUILD_DIR/bench-server-profile/
#
# A measurement is one redis-benchmark run (one client process, one thread)
# against one server: a command (HSET of a random field of a random hash,
# HGET of a random field of a random hash, HGETALL of a 16-field hash) under a
# load (1, 16 or 64 clients; 16 clients x 16 pipelined requests). Persistence
# is matched: ctxd --durability always / batch / none against Redis with
# appendfsync always / appendfsync everysec / no AOF and no RDB.
#
# Order: the rounds are the outer loop; in each round, for each durability,
# both servers are started fresh (new data directories, on the same disk) and
# prefilled the same way, then every cell is measured on one server and at
# once on the other, the first server alternating from cell to cell and from
# round to round. The number of requests of a cell is sized once per server
# (a short probe in the first round) to last SECS seconds, and kept for the
# later rounds. The report takes the median of every figure over the rounds.
#
# Environment: ROUNDS, SECS, DURS ("always batch none"), CMDS ("hset hget
# hgetall"), LOADS ("1 16 64 16x16": clients, or clients x pipeline), CTXD
# (default BUILD_DIR/ctxd), CTXD_ARGS (more ctxd options, e.g. "--loops 1"),
# REDIS_SERVER (default redis-server).
set -euo pipefail

build=${1:?usage: bench/redis/run.sh BUILD_DIR [quick|full|report|profile]}
mode=${2:-full}
[ -d "$build" ] && build=$(cd "$build" && pwd)
root=$(cd "$(dirname "$0")/../.." && pwd)
here=$root/bench/redis
results=$root/bench/results
ctxd=${CTXD:-$build/ctxd}
redis=${REDIS_SERVER:-redis-server}
measure=1
case $mode in
quick) rounds=${ROUNDS:-1} secs=${SECS:-1.5} ;;
full) rounds=${ROUNDS:-5} secs=${SECS:-3} ;;
report) mode=full measure=0 ;;
profile) rounds=1 secs=${SECS:-8} ;;
*) echo "run.sh: mode is quick, full, report or profile, not '$mode'" >&2; exit 2 ;;
esac
durs=${DURS:-always batch none}
cmds=${CMDS:-hset hget hgetall}
loads=${LOADS:-1 16 64 16x16}
raw=$results/server-$mode-raw.csv
envf=$results/server-$mode-env.txt
out=$build/bench-server-$mode
work=$build/bench-server-data

# ---- servers ------------------------------------------------------------------

# free_port, wait_up, start_server, start_once, stop_server, prefill,
# cpu_of: servers.sh (shared with cpu.sh).
# shellcheck source=bench/redis/servers.sh
. "$here/servers.sh"

# ---- one measurement ------------------------------------------------------------

# cmd_args CMD: the redis-benchmark arguments of a command. __rand_int__ is
# replaced, at every request and independently at every occurrence, with a
# 12-digit zero-padded number in [0, r).
cmd_args() {
	case $1 in
	hset) echo "-r 100000 HSET myhash:__rand_int__ f:__rand_int__ v" ;;
	hget) echo "-r 1000 HGET hk:__rand_int__ f:__rand_int__" ;;
	hgetall) echo "HGETALL h16" ;;
	esac
}

# (user, nice, system, irq, softirq and steal: time the host gave to other guests)
busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }

# bench PORT PID CMD LOAD N: runs redis-benchmark; prints
# "rps,avg,min,p50,p95,p99,max,server_cpus,client_cpus,other_cpus,seconds".
bench() {
	local port=$1 pid=$2 cmd=$3 load=$4 n=$5 c p
	c=${load%x*}
	p=1
	[ "$load" != "$c" ] && p=${load#*x}
	local s0 b0 t0 t1 s1 b1 line ctime
	s0=$(cpu_of "$pid")
	b0=$(busy_ticks)
	t0=$(date +%s.%N)
	# shellcheck disable=SC2046
	line=$(/usr/bin/time -f 'CLIENTCPU %U %S' redis-benchmark -p "$port" -c "$c" -P "$p" \
		-n "$n" --csv $(cmd_args "$cmd") 2>&1 | grep -E '^"|^CLIENTCPU' || true)
	t1=$(date +%s.%N)
	s1=$(cpu_of "$pid")
	b1=$(busy_ticks)
	ctime=$(echo "$line" | awk '/^CLIENTCPU/ {print $2 + $3}')
	line=$(echo "$line" | grep '^"' | tail -1 | cut -d, -f2- | tr -d '"')
	[ -n "$line" ] && [ -n "$ctime" ] || { echo "run.sh: redis-benchmark failed on port $port" >&2; return 1; }
	local hz
	hz=$(getconf CLK_TCK)
	awk -v l="$line" -v s="$((s1 - s0))" -v b="$((b1 - b0))" -v c="$ctime" \
		-v t0="$t0" -v t1="$t1" -v hz="$hz" 'BEGIN {
		t = t1 - t0; sc = s / hz; o = b / hz - sc - c; if (o < 0) o = 0
		printf "%s,%.2f,%.2f,%.2f,%.2f\n", l, sc / t, c / t, o / t, t }'
}

# size N for SECS seconds from a short probe (also a warm-up).
size_n() {
	local port=$1 pid=$2 cmd=$3 load=$4 c p pn r
	c=${load%x*}
	p=1
	[ "$load" != "$c" ] && p=${load#*x}
	pn=$((c * p * 8 > 300 ? c * p * 8 : 300))
	r=$(bench "$port" "$pid" "$cmd" "$load" "$pn")
	awk -v r="${r%%,*}" -v s="$secs" -v m="$((c * p * 4))" 'BEGIN {
		n = int(r * s); if (n < m) n = m; if (n < 200) n = 200; print n }'
}

# ---- the run ----------------------------------------------------------------------

run_all() {
	mkdir -p "$results" "$work"
	rm -f "$raw"
	awk -f "$here/prefill.awk" >"$work/prefill.resp"
	{
		echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
		echo "machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')), kernel $(uname -r)"
		echo "disk of the data directories: $(findmnt -n -o SOURCE,FSTYPE -T "$work" 2>/dev/null | tr -s ' ')"
		echo "software: ctxd $(git -C "$root" describe --always --dirty 2>/dev/null) ($ctxd, $(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$build/CMakeCache.txt" 2>/dev/null) build), $("$redis" --version | cut -d' ' -f1-3), $(redis-benchmark --version)"
		echo "settings: $mode mode, $rounds round(s) of ~$secs s per measurement, durabilities: $durs; commands: $cmds; loads: $loads; ctxd with ${CTXD_ARGS:-its default loops ($(nproc))}, Redis with its defaults (one thread for commands)"
		echo "before the run: load average $(cut -d' ' -f1-3 /proc/loadavg)"
	} >"$envf"
	cat "$envf" >&2
	echo "round,durability,command,load,server,n,rps,avg_ms,min_ms,p50_ms,p95_ms,p99_ms,max_ms,server_cpus,client_cpus,other_cpus,seconds" >"$raw"
	declare -A N
	local round dur cmd load srv first cell=0 start
	start=$(date +%s)
	for round in $(seq "$rounds"); do
		for dur in $durs; do
			rm -rf "$work/ctx" "$work/redis"
			start_server ctx "$dur" "$work/ctx"
			local cport=$PORT cpid=$PID
			start_server redis "$dur" "$work/redis"
			local rport=$PORT rpid=$PID
			prefill "$cport"
			prefill "$rport"
			for cmd in $cmds; do
				for load in $loads; do
					cell=$((cell + 1))
					first=ctx
					[ $(((cell + round) % 2)) = 0 ] && first=redis
					for srv in $first $([ $first = ctx ] && echo redis || echo ctx); do
						local port=$cport pid=$cpid key="$dur/$cmd/$load/$srv" r
						[ $srv = redis ] && port=$rport pid=$rpid
						[ -n "${N[$key]:-}" ] || N[$key]=$(size_n "$port" "$pid" "$cmd" "$load")
						r=$(bench "$port" "$pid" "$cmd" "$load" "${N[$key]}")
						echo "$round,$dur,$cmd,$load,$srv,${N[$key]},$r" >>"$raw"
						printf '%s round %d %-6s %-7s %-5s %-5s %s\n' "$(date +%T)" "$round" "$dur" \
							"$cmd" "$load" "$srv" "$(echo "$r" | awk -F, '{printf "%10.0f ops/s p50 %s p99 %s ms, server %s CPUs, others %s", $1, $4, $6, $8, $10}')" >&2
					done
				done
			done
			stop_server "$cpid"
			stop_server "$rpid"
		done
	done
	rm -rf "$work"
	echo "after the run ($(($(date +%s) - start)) s): load average $(cut -d' ' -f1-3 /proc/loadavg)" >>"$envf"
}

# ---- profile ------------------------------------------------------------------------

run_profile() {
	local dur cmd load
	read -r dur cmd load <<<"${PROFILE:-always hset 64}"
	mkdir -p "$out" "$work"
	awk -f "$here/prefill.awk" >"$work/prefill.resp"
	rm -rf "$work/ctx"
	start_server ctx "$dur" "$work/ctx"
	prefill "$PORT"
	local n
	n=$(size_n "$PORT" "$PID" "$cmd" "$load")
	perf record --call-graph dwarf,16384 -F 499 -o "$out/perf.data" -p "$PID" 2>"$out/perf.log" &
	local perf=$!
	sleep 0.5
	bench "$PORT" "$PID" "$cmd" "$load" "$n" | tee "$out/bench.csv"
	kill -INT $perf
	wait $perf || true
	stop_server "$PID"
	perf report -i "$out/perf.data" --no-children --stdio --percent-limit 1 \
		>"$out/report-self.txt" 2>/dev/null || true
	perf report -i "$out/perf.data" --children --stdio --percent-limit 3 -g none \
		>"$out/report-children.txt" 2>/dev/null || true
	rm -rf "$work"
	echo "profile of ctxd ($dur, $cmd, $load): $out/report-self.txt, $out/report-children.txt" >&2
}

# ---- main ---------------------------------------------------------------------------

[ -x "$ctxd" ] || { echo "run.sh: no $ctxd (cmake --build $build --target ctxd)" >&2; exit 2; }
command -v redis-benchmark >/dev/null && command -v "$redis" >/dev/null ||
	{ echo "run.sh: redis-server and redis-benchmark are needed (scripts/deps.sh bench)" >&2; exit 2; }
trap 'jobs -p | xargs -r kill 2>/dev/null; rm -rf "$work"' EXIT
if [ "$mode" = profile ]; then
	run_profile
	exit 0
fi
[ $measure = 1 ] && run_all
"$here/report.sh" "$raw" "$envf" "$out" "$mode"
