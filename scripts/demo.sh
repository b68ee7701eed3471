#!/usr/bin/env bash
# demo.sh - `make run`: start ctxd on 127.0.0.1:7379 with its data in data/ctxd
# under the checkout, show a short session through redis-cli (hashes,
# MULTI/EXEC) and through the ctx CLI if it is built (a recovery point, a
# restore, a watch that sees them; else the same with redis-cli and CTX.*),
# then keep serving in the foreground until Ctrl-C. With CI=true it stops
# ctxd after the demo and exits 0. It exits 1 at once, saying why, if
# anything already takes connections on the port, or if its own ctxd does
# not start (the data directory damaged, or locked by another make run):
# the session only ever talks to the ctxd it started (INFO's process_id).
# PORT, CTX_DEMO_DIR (default data/ctxd), CTXD and CTX_CLI override the
# defaults (tests/cli/test_cli_r18_demo.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-7379}
DIR=${CTX_DEMO_DIR:-data/ctxd}
CTXD=${CTXD:-build/ctxd}
CLI=${CTX_CLI:-build/ctx}
mkdir -p data
command -v redis-cli >/dev/null || { echo "redis-cli missing: run scripts/deps.sh"; exit 1; }
# Anything that takes a connection on the port (not only a Redis server:
# a program that never answers would hang redis-cli) is in the way.
if timeout 5 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$PORT" 2>/dev/null; then
	echo "something already listens on port $PORT; stop it or run PORT=NNNN make run"
	exit 1
fi

"$CTXD" --port "$PORT" --dir "$DIR" &
PID=$!
stop() {
	kill -TERM "$PID" 2>/dev/null || true
	wait "$PID" 2>/dev/null || true
}
trap stop EXIT
# Ready when this ctxd answers (INFO names its process): a ctxd that could
# not start (the port taken meanwhile, DIR damaged or locked by another
# make run) is reported at once, and the demo never talks to another server.
ready=
for _ in $(seq 400); do
	if ! kill -0 "$PID" 2>/dev/null; then
		wait "$PID" 2>/dev/null || true
		echo "ctxd did not start (its message is above; data in $DIR, port $PORT)"
		trap - EXIT
		exit 1
	fi
	if timeout 5 redis-cli -p "$PORT" INFO server 2>/dev/null | tr -d '\r' |
		grep -x "process_id:$PID" >/dev/null; then
		ready=1
		break
	fi
	sleep 0.05
done
if [ -z "$ready" ]; then
	echo "ctxd (pid $PID) did not answer on port $PORT"
	exit 1
fi

say() { printf '\n\033[1m# %s\033[0m\n' "$*"; }
cli() {
	echo "redis> $*"
	redis-cli -p "$PORT" "$@" | sed 's/^/  /'
}
ctxcli() {
	echo "\$ ctx $*"
	"$CLI" -p "$PORT" "$@" 2>&1 | sed 's/^/  /' || true
}

say "a context is a Redis hash"
cli DEL demo:session >/dev/null
cli HSET demo:session user ada step 1 lang en
cli HGET demo:session user
cli HGETALL demo:session
say "MULTI/EXEC on one context: one commit, one version, all or nothing"
echo "redis> MULTI; HSET demo:session step 2; HINCRBY demo:session visits 1; EXEC"
printf 'MULTI\nHSET demo:session step 2\nHINCRBY demo:session visits 1\nEXEC\n' |
	redis-cli -p "$PORT" | sed 's/^/  /'
cli CTX.VERSION demo:session

WATCHLOG=$(mktemp)
WPID=
if [ -x "$CLI" ]; then
	say "a watch (ctx watch, in the background) sees every change from here"
	"$CLI" -p "$PORT" watch demo:session >"$WATCHLOG" 2>&1 &
	WPID=$!
	sleep 0.3
	say "a recovery point, a bad change, a restore (ctx CLI)"
	ctxcli point demo:session --label before-migration
	cli HSET demo:session lang "??" step broken
	cli HGETALL demo:session
	ctxcli restore demo:session --label before-migration
	cli HGETALL demo:session
	ctxcli history demo:session
else
	say "a recovery point, a bad change, a restore (CTX.* commands; build/ctx is not built)"
	cli CTX.POINT demo:session LABEL before-migration
	cli HSET demo:session lang "??" step broken
	cli HGETALL demo:session
	cli CTX.RESTORE demo:session LABEL before-migration
	cli HGETALL demo:session
	say "the history shows the restore as a new version"
	cli CTX.HISTORY demo:session
fi
if [ -n "$WPID" ]; then
	sleep 0.5
	kill "$WPID" 2>/dev/null || true
	wait "$WPID" 2>/dev/null || true
	say "what the watch saw"
	sed 's/^/  /' "$WATCHLOG"
fi
rm -f "$WATCHLOG"

if [ "${CI:-}" = true ]; then
	say "CI: stopping ctxd"
	exit 0
fi
say "ctxd keeps serving on 127.0.0.1:$PORT (data in $DIR). Connect with: redis-cli -p $PORT"
echo "  Ctrl-C stops it (gracefully: parked replies are sent, the store is checkpointed)."
trap - EXIT
trap 'kill -TERM $PID 2>/dev/null || true' INT TERM
wait "$PID" || true
wait "$PID" 2>/dev/null || true
