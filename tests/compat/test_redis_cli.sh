#!/usr/bin/env bash
# test_redis_cli.sh - redis-cli (Debian's redis-tools) against ctxd, as a person
# or a script uses it: commands on stdin, --no-raw, -3 (RESP3), -x, --scan
# --pattern, --pipe (mass insertion, reply summary), -a / --user / AUTH. Run under with_ctxd.sh (CTXD_PORT,
# CTXD_PASS_PORT, CTXD_PASS). Prints "N passed, N failed".
set -uo pipefail
P=${CTXD_PORT:?run under with_ctxd.sh}
command -v redis-cli >/dev/null || { echo "redis-cli missing (scripts/deps.sh installs redis-tools)"; exit 1; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
pass=0
fail=0
cli() { timeout 60 redis-cli -p "$P" "$@"; }
# check NAME EXPECTED ACTUAL
check() {
	if [ "$2" = "$3" ]; then
		pass=$((pass + 1))
	else
		fail=$((fail + 1))
		printf 'FAIL: %s\n--- expected\n%s\n--- got\n%s\n' "$1" "$2" "$3"
	fi
}
# check_re NAME REGEX ACTUAL (grep -E over the whole text)
check_re() {
	if grep -qE -- "$2" <<<"$3"; then
		pass=$((pass + 1))
	else
		fail=$((fail + 1))
		printf 'FAIL: %s\n--- expected to match\n%s\n--- got\n%s\n' "$1" "$2" "$3"
	fi
}

# Commands on stdin, one per line, as `redis-cli < file` runs them.
out=$(printf '%s\n' 'PING' 'HSET cli:h a 1 b "two words"' 'HGET cli:h b' \
	'HINCRBY cli:h a 41' 'HGET cli:h nope' 'EXISTS cli:h' 'TYPE cli:h' 'ECHO "x y"' | cli)
check "stdin commands (raw)" "$(printf '%s\n' PONG 2 'two words' 42 '' 1 hash 'x y')" "$out"
# HGETALL: field order is the context's iteration order (docs/protocol.md).
out=$(echo 'HGETALL cli:h' | cli | paste - - | sort)
check "stdin HGETALL" "$(printf 'a\t42\nb\ttwo words')" "$out"

# --no-raw: the tty format.
out=$(printf '%s\n' 'HGET cli:h a' 'HGET cli:h nope' 'HLEN cli:h' 'HMGET cli:h a nope' 'GET cli:h' \
	'NOSUCHCMD x' 'HINCRBYFLOAT cli:h f 1.5' | cli --no-raw)
check_re "--no-raw bulk" '^"42"$' "$out"
check_re "--no-raw nil" '^\(nil\)$' "$out"
check_re "--no-raw integer" '^\(integer\) 2$' "$out"
check_re "--no-raw array" '^1\) "42"$' "$out"
check_re "--no-raw array nil" '^2\) \(nil\)$' "$out"
check_re "--no-raw WRONGTYPE" '^\(error\) WRONGTYPE ' "$out"
check_re "--no-raw unknown command" "^\(error\) ERR unknown command 'NOSUCHCMD'" "$out"
check_re "--no-raw float bulk" '^"1.5"$' "$out"
out=$(cli --no-raw HGETALL cli:h)
check_re "--no-raw HGETALL (RESP2 flat)" '^[0-9]\) "a"$' "$out"

# -3: RESP3 session: maps, nulls, HELLO.
out=$(cli -3 --no-raw HGETALL cli:h)
check_re "-3 HGETALL is a map" '^1# "(a|b|f)" => ' "$out"
check "-3 null" "(nil)" "$(cli -3 --no-raw HGET cli:h nope)"
out=$(cli -3 --no-raw HELLO 3)
check_re "-3 HELLO proto" '^3# "proto" => \(integer\) 3$' "$out"
[ "${CTXD_COMPAT_REDIS:-}" = 1 ] || check_re "-3 HELLO server" '"server" => "ctxd"' "$out"
check_re "-3 INFO verbatim" '^redis_version:' "$(cli -3 INFO server)"
check "-3 HEXISTS integer" "(integer) 1" "$(cli -3 --no-raw HEXISTS cli:h a)"

# -x: the last argument from stdin (binary-safe value).
printf 'line1\nline2\r\n\0tail' >"$TMP/blob"
check "-x HSET" "1" "$(cli -x HSET cli:h blob <"$TMP/blob")"
cli --raw HGET cli:h blob >"$TMP/back"
# --raw adds a newline after the value.
{ cat "$TMP/blob"; echo; } >"$TMP/want"
check "-x round trip" "same" "$(cmp -s "$TMP/want" "$TMP/back" && echo same || od -c "$TMP/back")"

# --scan --pattern (redis-cli 7.0 has no --count).
for i in $(seq 1 60); do echo "HSET cli:scan:$i f $i"; done | cli >/dev/null
cli HSET cli:other f v >/dev/null
out=$(cli --scan --pattern 'cli:scan:*' | sort)
check "--scan --pattern" "$(seq 1 60 | sed 's/^/cli:scan:/' | sort)" "$out"
out=$(cli --scan --pattern 'cli:scan:1?' | sort)
check "--scan --pattern ?" "$(seq 10 19 | sed 's/^/cli:scan:/')" "$out"
check_re "--scan (all) has cli:other" '^cli:other$' "$(cli --scan)"

# --pipe: the mass-insertion protocol, 5000 commands in RESP.
/usr/bin/python3 - "$TMP/pipe" <<'EOF'
import sys
def cmd(*a):
    out = b"*%d\r\n" % len(a)
    for x in a:
        x = x if isinstance(x, bytes) else str(x).encode()
        out += b"$%d\r\n%s\r\n" % (len(x), x)
    return out
with open(sys.argv[1], "wb") as f:
    for i in range(5000):
        f.write(cmd("HSET", "cli:mass:%d" % (i % 50), "f%d" % i, "v\r\n%d" % i))
EOF
out=$(cli --pipe <"$TMP/pipe" 2>&1)
check_re "--pipe summary" '^errors: 0, replies: 5000$' "$out"
check "--pipe data" "100" "$(cli HLEN cli:mass:7)"
check "--pipe value" "$(printf 'v\r\n107')" "$(cli --raw HGET cli:mass:7 f107 | head -c 6)"
# --pipe with errors counts them.
printf 'HSET cli:mass:0 g 1\r\nGET cli:mass:0\r\nHGET cli:mass:0 g\r\n' >"$TMP/pipe2"
out=$(cli --pipe <"$TMP/pipe2" 2>&1)
check_re "--pipe counts errors" '^errors: 1, replies: 3$' "$out"

# MULTI/EXEC typed in, and a queueing error.
out=$(printf '%s\n' MULTI 'HSET cli:tx a 1' 'HINCRBY cli:tx a 9' EXEC | cli --no-raw)
check "MULTI/EXEC" "$(printf '%s\n' OK QUEUED QUEUED '1) (integer) 1' '2) (integer) 10')" "$out"
out=$(printf '%s\n' MULTI 'HSET cli:tx' EXEC | cli --no-raw 2>&1)
check_re "EXECABORT" '^\(error\) EXECABORT ' "$out"

# INFO, DBSIZE, CLIENT, CONFIG as typed.
check_re "INFO keyspace" '^db0:keys=[0-9]+' "$(cli INFO keyspace)"
check_re "DBSIZE" '^[0-9]+$' "$(cli DBSIZE)"
check "CLIENT SETNAME/GETNAME" "$(printf 'OK\nme')" "$(printf '%s\n' 'CLIENT SETNAME me' 'CLIENT GETNAME' | cli)"
check "CONFIG GET maxmemory" "$(printf 'maxmemory\n0')" "$(cli CONFIG GET maxmemory)"
check_re "COMMAND COUNT" '^[0-9]+$' "$(cli COMMAND COUNT)"

# Password: -a, --user/--pass, AUTH typed in, wrong password.
if [ -n "${CTXD_PASS_PORT:-}" ]; then
	pcli() { timeout 60 redis-cli -p "$CTXD_PASS_PORT" "$@" 2>&1; }
	check_re "no password: NOAUTH" 'NOAUTH' "$(pcli PING)"
	check "-a" "PONG" "$(pcli --no-auth-warning -a "$CTXD_PASS" PING)"
	check "--user --pass" "PONG" "$(pcli --no-auth-warning --user default --pass "$CTXD_PASS" PING)"
	check_re "-a wrong" 'WRONGPASS|AUTH failed' "$(pcli --no-auth-warning -a wrong PING)"
	check "AUTH on stdin" "$(printf 'OK\nPONG')" "$(printf 'AUTH "%s"\nPING\n' "$CTXD_PASS" | pcli)"
	check "-3 with -a (HELLO 3 AUTH)" "(integer) 3" \
		"$(pcli --no-auth-warning -3 -a "$CTXD_PASS" --no-raw HELLO 3 | grep -A0 -F '"proto"' | sed 's/.*=> //')"
fi

# FLUSHALL / FLUSHDB as typed, last: they empty the server.
check "FLUSHALL" "OK" "$(cli FLUSHALL)"
check "DBSIZE after FLUSHALL" "0" "$(cli DBSIZE)"
check "--scan after FLUSHALL" "" "$(cli --scan)"
check "FLUSHDB ASYNC" "OK" "$(cli FLUSHDB ASYNC)"

echo "redis-cli: $pass passed, $fail failed"
[ $fail -eq 0 ]
