#!/usr/bin/env bash
# test_redis_cli.sh CTXD - redis-cli (Debian's redis-tools) works against ctxd:
# PING, HELLO 3 in RESP3, INFO, a hash round trip, MULTI/EXEC, CONFIG GET as
# redis-benchmark probes it, and SHUTDOWN.
set -euo pipefail
CTXD=${1:-build/ctxd}
command -v redis-cli >/dev/null || { echo "redis-cli missing (scripts/deps.sh installs redis-tools)"; exit 1; }
TMP=${CTX_TEST_TMP:-/tmp}/ctxd-cli-$$
mkdir -p "$TMP"
PID=
trap 'if [ -n "$PID" ]; then kill $PID 2>/dev/null || true; fi; rm -rf "$TMP"' EXIT
# Started once this ctxd answers (its process_id: another test's server on
# the port picked would answer a PING too), up to about 60 s; a ctxd whose
# port was taken meanwhile exits, and starts again on another. (A 5 s wait
# for any PING was short for a sanitizer build on a loaded machine.)
started=
for _ in 1 2 3 4 5 6 7 8 9 10; do
	PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	"$CTXD" --port "$PORT" --dir "$TMP/data" --loops 2 --loglevel warning 2>"$TMP/log" &
	PID=$!
	for _ in $(seq 1200); do
		info=$(redis-cli -p "$PORT" INFO server 2>/dev/null | tr -d '\r' || true)
		grep -qx "process_id:$PID" <<<"$info" && started=1 && break
		kill -0 $PID 2>/dev/null || break
		sleep 0.05
	done
	[ -n "$started" ] && break
	kill -0 $PID 2>/dev/null && break
	grep -q "Address already in use" "$TMP/log" || break
	wait $PID || true
done
[ -n "$started" ] || { echo "FAIL: ctxd did not start"; cat "$TMP/log"; exit 1; }
cli() { redis-cli -p "$PORT" "$@"; }
fail() { echo "FAIL: $*"; cat "$TMP/log"; exit 1; }

[ "$(cli PING)" = PONG ] || fail "PING"
out=$(cli -3 HELLO 3)
echo "$out" | grep '^proto$' -A1 >/dev/null || true
echo "$out" | grep -A1 '^proto' | grep 3 >/dev/null || fail "HELLO 3: $out"
[ "$(cli -3 HGET nosuch f)" = "(nil)" ] || [ -z "$(cli -3 HGET nosuch f)" ] || fail "RESP3 null"
cli INFO | grep '^redis_version:' >/dev/null || fail "INFO"
cli INFO server | grep '^ctx_version:' >/dev/null || fail "INFO server"
[ "$(cli HSET h a 1 b 2)" = 2 ] || fail "HSET"
[ "$(cli HGET h b)" = 2 ] || fail "HGET"
[ "$(printf 'MULTI\nHSET h c 3\nHINCRBY h a 10\nEXEC\n' | cli | tail -2 | tr '\n' ' ')" = "1 11 " ] || fail "MULTI/EXEC"
[ "$(cli CONFIG GET appendonly | tr '\n' ' ')" = "appendonly yes " ] || fail "CONFIG GET appendonly"
[ "$(cli CONFIG GET save | head -1)" = save ] || fail "CONFIG GET save"
cli DBSIZE | grep -x 1 >/dev/null || fail "DBSIZE"
cli --no-raw NOSUCHCMD 2>&1 | grep "unknown command" >/dev/null || fail "unknown command"
cli SHUTDOWN >/dev/null 2>&1 || true
for _ in $(seq 200); do kill -0 $PID 2>/dev/null || break; sleep 0.05; done
kill -0 $PID 2>/dev/null && fail "SHUTDOWN did not stop ctxd"
wait $PID || fail "ctxd exit status $?"
echo "redis-cli against ctxd: ok"
