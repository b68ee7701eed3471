# bench/redis/servers.sh: start, check, prefill and stop ctxd and
# redis-server for the benchmark scripts (sourced by run.sh and cpu.sh).
# The caller sets $work (prefill.resp is read from there), $redis (the
# redis-server to run) and, to start "ctx", $ctxd. Sets PORT and PID.
# shellcheck shell=bash

free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 20000))
		ss -Htln "sport = :$p" | grep -q . || { echo "$p"; return; }
	done
}

# wait_up PORT PID: until the server answers PING (20 s at most).
wait_up() {
	for _ in $(seq 200); do
		[ "$(redis-cli -p "$1" ping 2>/dev/null)" = PONG ] && return 0
		kill -0 "$2" 2>/dev/null || break
		sleep 0.1
	done
	echo "${0##*/}: the server on port $1 did not start" >&2
	return 1
}

# start_server SERVER DURABILITY DIR: sets PORT and PID. SERVER is redis
# ($redis), ctx ($ctxd) or the path of a ctxd binary. Tries three ports
# (another process may take the free one first) and shows the log.
start_server() {
	for _ in 1 2 3; do
		rm -rf "$3"
		start_once "$@" && return 0
		kill -9 "$PID" 2>/dev/null || true
		wait "$PID" 2>/dev/null || true
		tail -5 "$3"/*.log >&2 || true
	done
	return 1
}

start_once() {
	local srv=$1 dur=$2 dir=$3
	mkdir -p "$dir"
	PORT=$(free_port)
	if [ "$srv" != redis ]; then
		[ "$srv" = ctx ] && srv=$ctxd
		# shellcheck disable=SC2086
		"$srv" --port "$PORT" --dir "$dir/store" --durability "$dur" \
			--loglevel warning ${CTXD_ARGS:-} >"$dir/ctxd.log" 2>&1 &
	else
		local aof=(--appendonly no)
		case $dur in
		always) aof=(--appendonly yes --appendfsync always) ;;
		batch) aof=(--appendonly yes --appendfsync everysec) ;;
		esac
		"$redis" --port "$PORT" --bind 127.0.0.1 --dir "$dir" --save '' \
			"${aof[@]}" --daemonize no --logfile "$dir/redis.log" &
	fi
	PID=$!
	wait_up "$PORT" "$PID"
}

stop_server() {
	kill -TERM "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

# prefill PORT: the same data in both servers, in one pipe.
prefill() {
	local r
	r=$(redis-cli -p "$1" --pipe <"$work/prefill.resp" 2>&1)
	echo "$r" | grep -q 'errors: 0,' || { echo "${0##*/}: prefill: $r" >&2; return 1; }
	[ "$(redis-cli -p "$1" hget hk:000000000999 f:000000000999)" = vvvvvvvvvvvvvvvv ] &&
		[ "$(redis-cli -p "$1" hlen h16)" = 16 ] &&
		[ "$(redis-cli -p "$1" hget myhash:000000099999 f:init)" = v ] ||
		{ echo "${0##*/}: prefill: the data is not there on port $1" >&2; return 1; }
}

# cpu_of PID: the process's user + system time in clock ticks.
cpu_of() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
