#!/usr/bin/env bash
# test_cli_r18_demo.sh - `make run` (scripts/demo.sh) with CI=true when it
# cannot run its demo (round 18, r18-review): it must stop at once with exit
# 1 and say why, never hang and never run its session against a server it
# did not start. Before round 18 a program that took connections on the port
# and never answered hung it for good (its PING had no time limit), and a
# second make run whose ctxd could not open the (locked) data directory ran
# its session against the first one's server and exited 0.
# Run by CTest with CTXD_BIN and CTX_BIN set; skipped (77) without ctxd or
# redis-cli.
set -u
CTXD=${CTXD_BIN:?}
CTX=${CTX_BIN:?}
[ -x "$CTXD" ] || { echo "no $CTXD: skipped"; exit 77; }
command -v redis-cli >/dev/null || { echo "no redis-cli: skipped"; exit 77; }
DEMO="$(cd "$(dirname "$0")/../.." && pwd)/scripts/demo.sh"
base=${CTX_TEST_TMP:-/tmp}
mkdir -p "$base"
T=$(mktemp -d "$base/cli-r18-demo.XXXXXX")
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	[ -s "$T/other.pid" ] && kill "$(cat "$T/other.pid")" 2>/dev/null
	wait 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT
. "$(dirname "$0")/checks.sh"

# demo PORT DIR [CTXD]: run the demo as CI does, bounded by 120 s (a hang
# is exit 124), output in $T/out
demo() {
	CI=true PORT=$1 CTX_DEMO_DIR=$2 CTXD=${3:-$CTXD} CTX_CLI=$CTX \
		timeout 120 bash "$DEMO" >"$T/out" 2>&1
}
wait_listening() { # PORT
	for _ in $(seq 200); do
		timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null && return 0
		sleep 0.05
	done
	return 1
}

# 1. The port is held by a program that accepts and never answers.
P=$(free_port)
python3 -c 'import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(16)
held = []
while True:
    held.append(s.accept()[0])' "$P" &
pids+=($!)
wait_listening "$P" || fail "the silent listener did not listen"
demo "$P" "$T/d1"
rc=$?
expect_eq "$rc" 1 "demo with a silent program on its port (124: it hung)"
expect_in "$T/out" "something already listens on port $P"

# 2. The data directory is locked by another process (another make run's
# ctxd): the demo's ctxd cannot open it.
P=$(free_port)
mkdir -p "$T/d2"
python3 -c 'import fcntl, sys, time
f = open(sys.argv[1], "a")
fcntl.flock(f, fcntl.LOCK_EX)
time.sleep(120)' "$T/d2/LOCK" &
pids+=($!)
for _ in $(seq 100); do
	flock -n -x "$T/d2/LOCK" true 2>/dev/null || break
	sleep 0.1
done
demo "$P" "$T/d2"
expect_eq "$?" 1 "demo on a locked data directory"
expect_in "$T/out" "ctxd did not start"
grep -q "a context is a Redis hash" "$T/out" && fail "the demo ran a session although its ctxd did not start"

# 3. Two make runs at once: the other's ctxd comes up on the port after the
# demo looked, and the demo's own ctxd then cannot bind or lock. A wrapper
# starts "the other" (same port, same directory), waits until it answers,
# then runs ctxd as the demo asked.
P=$(free_port)
cat >"$T/ctxd-late" <<EOF
#!/usr/bin/env bash
"$CTXD" --port $P --dir "$T/d3" >"$T/other.log" 2>&1 &
echo \$! >"$T/other.pid"
for _ in \$(seq 400); do redis-cli -p $P PING >/dev/null 2>&1 && break; sleep 0.05; done
exec "$CTXD" "\$@"
EOF
chmod +x "$T/ctxd-late"
demo "$P" "$T/d3" "$T/ctxd-late"
expect_eq "$?" 1 "demo whose ctxd lost the race for the port and directory"
expect_in "$T/out" "ctxd did not start"
grep -q "a context is a Redis hash" "$T/out" && fail "the demo ran its session against another server"
kill "$(cat "$T/other.pid")" 2>/dev/null

# (The demo on a free port, exit 0, is `make run` in .ci/run.)

finish "demo (make run) r18"
