#!/usr/bin/env bash
# test_ctxd_options.sh CTXD - ctxd's command line and configuration file:
# --help, every option and setting (CONFIG GET shows what was applied), bad
# values (exit 2 with a message naming the setting, file:line for the
# file), later sources winning (file, then options), memory units, the
# log levels, a bind that cannot listen and a store that cannot open (exit
# 1), the warning for a non-loopback bind without a password, and SIGINT as
# well as SIGTERM stopping it cleanly (exit 0).
set -u
CTXD=${1:-build/ctxd}
command -v redis-cli >/dev/null || { echo "redis-cli missing (scripts/deps.sh installs redis-tools)"; exit 1; }
base=${CTX_TEST_TMP:-/tmp}
mkdir -p "$base"
T=$(mktemp -d "$base/ctxd-options.XXXXXX")
failures=0
server=
cleanup() {
	[ -n "$server" ] && kill -TERM "$server" 2>/dev/null && wait "$server" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
# expect_exit CODE ARGS...: run ctxd (which must end by itself) and check its status.
expect_exit() {
	local want=$1
	shift
	timeout 20 "$CTXD" "$@" >"$T/out" 2>"$T/err"
	local got=$?
	if [ "$got" != "$want" ]; then
		fail "ctxd $* exited $got, expected $want"
		sed 's/^/  stderr: /' "$T/err" | head -5
	fi
}
expect_in() { grep -qF -- "$2" "$1" || { fail "$1 lacks '$2'"; sed 's/^/  /' "$1" | head -10; }; }
# start PORT ARGS...: start ctxd in the background, wait until it answers:
# INFO server's process_id is this one's (another test's server could hold
# the port picked), or it asks for a password (a server with requirepass).
# Up to about 60 s, as serverutil.c (10 s was short for a sanitizer build on
# a loaded machine).
start() {
	local port=$1 info
	shift
	"$CTXD" "$@" >"$T/log" 2>&1 &
	server=$!
	for _ in $(seq 1200); do
		info=$(redis-cli -h "${HOST:-127.0.0.1}" -p "$port" INFO server 2>&1 | tr -d '\r')
		grep -qx "process_id:$server" <<<"$info" && return 0
		grep -q "NOAUTH" <<<"$info" && return 0
		kill -0 "$server" 2>/dev/null || break
		sleep 0.05
	done
	echo "ctxd did not start:"
	cat "$T/log"
	return 1
}
# stop [SIGNAL]: stop it and check it exits 0.
stop() {
	kill "-${1:-TERM}" "$server"
	wait "$server"
	local rc=$?
	[ "$rc" = 0 ] || fail "ctxd exit status $rc after SIG${1:-TERM}"
	server=
}
cfg() { redis-cli -p "$1" CONFIG GET "$2" | tail -1; }

# ---- --help, unknown options, stray arguments ----
expect_exit 0 --help
expect_in "$T/out" "Usage: ctxd"
expect_in "$T/out" "client-output-buffer-limit"
expect_exit 2 --nosuch
expect_in "$T/err" "Usage: ctxd"
expect_exit 2 --port 1 extra
expect_in "$T/err" "unexpected argument 'extra'"
expect_exit 2 --port

# ---- bad values on the command line: exit 2, the setting named ----
for bad in "--port 65536" "--port -1" "--port 12x" "--durability sometimes" "--maxclients 0" \
	"--timeout -1" "--loops 0" "--loops 2000" "--loglevel loud" "--bind=" "--dir=" \
	"--huge-pages maybe"; do
	# shellcheck disable=SC2086
	expect_exit 2 $bad
	name=${bad%% *}
	name=${name%%=*}
	expect_in "$T/err" "command line: bad setting '${name#--}'"
done

# ---- the configuration file: errors name the file and line ----
cat >"$T/bad.conf" <<'EOF'
# a comment, then a blank line

port 99999
proto-max-bulk-len 10
client-query-buffer-limit 5x
client-output-buffer-limit bogus 1mb 1mb 0
client-output-buffer-limit normal 1mb 1mb
client-output-buffer-limit normal 1mb 1mb -1
client-output-buffer-limit normal -1 1mb 1
nosuch 1
EOF
expect_exit 2 --config "$T/bad.conf"
for line in 3:port 4:proto-max-bulk-len 5:client-query-buffer-limit 6:client-output-buffer-limit \
	7:client-output-buffer-limit 8:client-output-buffer-limit 9:client-output-buffer-limit 10:nosuch; do
	expect_in "$T/err" "$T/bad.conf:${line%%:*}: bad setting '${line#*:}'"
done
expect_exit 2 --config "$T/missing.conf"
expect_in "$T/err" "cannot read $T/missing.conf"
expect_exit 2 "--config=$T/missing.conf"
expect_in "$T/err" "cannot read $T/missing.conf"

# ---- a good file: every setting applied; options override it ----
P1=$(free_port)
P2=$(free_port)
cat >"$T/good.conf" <<EOF
  # indented comment
port $P2
bind 127.0.0.1 ::1
dir "$T/data1"
durability batch
requirepass 'pw one'
maxclients 77
timeout  	300
loops 3
huge-pages yes
proto-max-bulk-len 2mb
client-query-buffer-limit 1gb
client-output-buffer-limit normal 3m 2kb 9
client-output-buffer-limit replica 256mb 64mb 60
client-output-buffer-limit pubsub 32mb 8mb 60
loglevel notice
EOF
start "$P1" --config "$T/good.conf" --port "$P1" --loglevel warning || exit 1
rc() { redis-cli -p "$P1" -a 'pw one' --no-auth-warning "$@"; }
[ "$(rc CONFIG GET port | tail -1)" = "$P1" ] || fail "--port overrides the file's port"
[ "$(rc CONFIG GET bind | tail -1)" = "127.0.0.1" ] || fail "bind takes the first address"
[ "$(rc CONFIG GET dir | tail -1)" = "$T/data1" ] || fail "quoted dir: $(rc CONFIG GET dir)"
[ "$(rc CONFIG GET durability | tail -1)" = "batch" ] || fail "durability batch"
[ "$(rc CONFIG GET appendfsync | tail -1)" = "everysec" ] || fail "appendfsync for batch"
[ "$(rc CONFIG GET requirepass | tail -1)" = "pw one" ] || fail "quoted requirepass"
[ "$(rc CONFIG GET maxclients | tail -1)" = "77" ] || fail "maxclients"
[ "$(rc CONFIG GET timeout | tail -1)" = "300" ] || fail "timeout"
[ "$(rc CONFIG GET loops | tail -1)" = "3" ] || fail "loops"
[ "$(rc CONFIG GET huge-pages | tail -1)" = "yes" ] || fail "huge-pages yes from the file"
[ "$(rc CONFIG GET proto-max-bulk-len | tail -1)" = "2097152" ] || fail "proto-max-bulk-len 2mb"
[ "$(rc CONFIG GET client-query-buffer-limit | tail -1)" = "1073741824" ] || fail "1gb"
[ "$(rc CONFIG GET client-output-buffer-limit | tail -1)" = "normal 3000000 2048 9" ] ||
	fail "client-output-buffer-limit: $(rc CONFIG GET client-output-buffer-limit)"
rc INFO server | grep -q '^durability:batch' || fail "INFO durability batch"
[ "$(redis-cli -p "$P1" PING 2>&1)" != PONG ] || fail "PING without AUTH answered"
[ -d "$T/data1" ] || fail "the data directory was not made"
stop INT
grep -q "received SIGINT" "$T/log" && fail "loglevel warning still logs notices"

# the other units, and the file's own port used when no option overrides it
cat >"$T/units.conf" <<EOF
port $P2
dir $T/data2
proto-max-bulk-len 2k
client-query-buffer-limit 3M
client-output-buffer-limit normal 1g 0 0
durability none
loglevel verbose
EOF
start "$P2" --config "$T/units.conf" || exit 1
[ "$(cfg "$P2" proto-max-bulk-len)" = "2000" ] || fail "2k"
[ "$(cfg "$P2" client-query-buffer-limit)" = "3000000" ] || fail "3M"
[ "$(cfg "$P2" client-output-buffer-limit)" = "normal 1000000000 0 0" ] || fail "1g"
[ "$(cfg "$P2" appendonly)" = "no" ] || fail "appendonly no for durability none"
[ "$(cfg "$P2" appendfsync)" = "no" ] || fail "appendfsync no for durability none"
[ "$(cfg "$P2" huge-pages)" = "no" ] || fail "huge-pages is off by default"
redis-cli -p "$P2" HSET mem f v >/dev/null
stop TERM
[ -e "$T/data2" ] && fail "durability none wrote a data directory"
expect_in "$T/log" "received SIGTERM"
expect_in "$T/log" "connected (loop" # verbose: a debug line per client
expect_in "$T/log" "ctxd stopped"

# ---- debug level, the durability default, a non-loopback bind warns ----
P3=$(free_port)
HOST=127.0.0.2 start "$P3" --port "$P3" --dir "$T/data3" --bind 127.0.0.2 --loglevel debug --durability always --loops 1 ||
	exit 1
expect_in "$T/log" "listening on 127.0.0.2 without a password"
[ "$(redis-cli -h 127.0.0.2 -p "$P3" CONFIG GET appendfsync | tail -1)" = "always" ] || fail "always"
stop

# ---- IPv6 loopback, when the host has it ----
if python3 -c 'import socket; s=socket.socket(socket.AF_INET6); s.bind(("::1",0))' 2>/dev/null; then
	P4=$(free_port)
	"$CTXD" --port "$P4" --dir "$T/data4" --bind ::1 --loops 1 >"$T/log" 2>&1 &
	server=$!
	up=no
	for _ in $(seq 200); do
		redis-cli -h ::1 -p "$P4" PING >/dev/null 2>&1 && { up=yes; break; }
		sleep 0.05
	done
	[ $up = yes ] || fail "ctxd --bind ::1 did not answer: $(cat "$T/log")"
	redis-cli -h ::1 -p "$P4" CLIENT INFO | grep -q 'addr=::1:' || fail "an IPv6 client address"
	grep -q "without a password" "$T/log" && fail "::1 is loopback: no warning expected"
	stop
fi

# ---- cannot listen, cannot open the store: exit 1 with the reason ----
expect_exit 1 --port 0 --dir "$T/data5" --bind 192.0.2.1 --loops 1
expect_in "$T/err" "cannot listen on 192.0.2.1"
expect_exit 1 --port 0 --dir "$T/data5" --bind not:an:address --loops 1
expect_in "$T/err" "cannot listen on not:an:address"
expect_exit 1 --port 0 --dir "$T/data5" --bind 300.1.2.3 --loops 1
expect_in "$T/err" "cannot listen on 300.1.2.3"
touch "$T/afile"
expect_exit 1 --port 0 --dir "$T/afile/sub" --loops 1
expect_in "$T/err" "cannot open the store in $T/afile/sub"

if [ $failures -ne 0 ]; then
	echo "$failures check(s) failed"
	exit 1
fi
echo "ctxd options and configuration file: ok"
