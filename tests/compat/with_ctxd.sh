#!/usr/bin/env bash
# with_ctxd.sh CTXD COMMAND [ARGS...] - run a client compatibility suite against
# two fresh ctxd servers (tests/compat/README.md):
#   CTXD_PORT       an open server (no password), default durability (always)
#   CTXD_PASS_PORT  a server started with --requirepass "$CTXD_PASS"
# Both listen on 127.0.0.1 ports picked free, with data directories under
# $CTX_TEST_TMP; both are stopped (SIGTERM, then checked to exit 0) when COMMAND
# ends. The exit status is COMMAND's (77 = skipped), or 1 if a server died or
# did not stop cleanly. Servers' logs are printed when anything failed.
# KEEP_TMP=1 keeps the data directories and logs. CTXD_COMPAT_REDIS=1 runs the
# suite against redis-server instead (Debian's
# redis-server, scripts/deps.sh bench), to check the suites' expectations.
set -uo pipefail
CTXD=$(realpath "$1")
shift
[ -x "$CTXD" ] || { echo "with_ctxd: $CTXD is not built"; exit 1; }
TMP=$(mktemp -d "${CTX_TEST_TMP:-/tmp}/compat-XXXXXX" 2>/dev/null) ||
	{ mkdir -p "${CTX_TEST_TMP:-/tmp}" && TMP=$(mktemp -d "${CTX_TEST_TMP:-/tmp}/compat-XXXXXX"); }
export CTXD_PASS="s3cret pass"
pids=()

free_port() {
	/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start NAME [--requirepass PASS]: starts ctxd, sets $port once it answers.
# It must be this ctxd that answers, not another test's server that took
# the port free_port picked (a PING answered by any server let a suite run
# against another's); a ctxd that found its port taken exits, and starts
# again on another. Up to about 60 s (sanitizer builds on a loaded machine),
# as tests/server/serverutil.c.
start() {
	local name=$1
	shift
	local tries pid info auth=()
	[ $# -ge 2 ] && auth=(-a "$2" --no-auth-warning)
	mkdir -p "$TMP/$name"
	for tries in 1 2 3 4 5 6 7 8 9 10; do
		port=$(free_port)
		if [ "${CTXD_COMPAT_REDIS:-}" = 1 ]; then
			# Validating the suites themselves against a real Redis.
			redis-server --port "$port" --dir "$TMP/$name" --save '' --appendonly no \
				${1:+--requirepass "$2"} >"$TMP/$name.log" 2>&1 </dev/null &
		else
			"$CTXD" --port "$port" --dir "$TMP/$name" --loops 2 --loglevel warning "$@" \
				>"$TMP/$name.log" 2>&1 </dev/null &
		fi
		pid=$!
		for _ in $(seq 1200); do
			info=$(timeout 5 redis-cli -p "$port" "${auth[@]}" INFO server 2>/dev/null | tr -d '\r')
			if grep -qx "process_id:$pid" <<<"$info"; then
				pids+=("$pid")
				return 0
			fi
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.05
		done
		if kill -0 "$pid" 2>/dev/null || ! grep -q "Address already in use" "$TMP/$name.log"; then
			kill -TERM "$pid" 2>/dev/null
			echo "with_ctxd: ctxd ($name) did not start" >&2
			cat "$TMP/$name.log" >&2
			return 1
		fi
		wait "$pid" 2>/dev/null
	done
	echo "with_ctxd: ctxd ($name): every port taken" >&2
	return 1
}

stop_all() {
	local bad=0 pid
	for pid in "${pids[@]}"; do
		kill -0 "$pid" 2>/dev/null || { echo "with_ctxd: ctxd $pid died during the suite"; bad=1; continue; }
		kill -TERM "$pid"
		if ! wait "$pid"; then
			echo "with_ctxd: ctxd $pid did not exit 0 on SIGTERM"
			bad=1
		fi
	done
	return $bad
}

start open || { stop_all; exit 1; }
CTXD_PORT=$port
start pass --requirepass "$CTXD_PASS" || { stop_all; exit 1; }
CTXD_PASS_PORT=$port
export CTXD_PORT CTXD_PASS_PORT CTXD_BIN="$CTXD"

"$@"
rc=$?
stop_all || rc=1
if [ $rc -ne 0 ] && [ $rc -ne 77 ]; then
	for f in "$TMP"/*.log; do
		echo "---- $f"
		cat "$f"
	done
fi
[ -n "${KEEP_TMP:-}" ] && echo "kept $TMP" || rm -rf "$TMP"
exit $rc
