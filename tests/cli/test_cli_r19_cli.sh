#!/usr/bin/env bash
# test_cli_r19_cli.sh - round 19 (r19-cli): the ctx CLI
# - gives up on a server that accepts and never answers after --timeout
#   seconds (exit 3, "no reply in N s"), where it used to wait forever;
#   --timeout 0 still waits (checked for a few seconds), --timeout of a bad
#   value is a usage error, and --timeout is accepted with every command;
# - tells a locked data directory from other failures by the library's
#   status and errno (CTX_IO, EWOULDBLOCK), not the message's text: with a
#   path long enough that the message is cut before its "locked" phrase,
#   round 18's CLI reported the lock as exit 1, "cannot open".
# Run by CTest with CTX_BIN and CTX_MKSTORE set.
set -u
CTX=${CTX_BIN:?}
MKSTORE=${CTX_MKSTORE:?}
base=${CTX_TEST_TMP:-/tmp}
mkdir -p "$base"
T=$(mktemp -d "$base/cli-r19.XXXXXX")
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$T"' EXIT
. "$(dirname "$0")/checks.sh"

# A listener that accepts every connection and never writes a byte (it
# keeps them open: a close would be "connection lost" at once).
port=$(free_port)
python3 -c 'import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(64)
print("up", flush=True)
held = []
while True:
    c, _ = s.accept()
    held.append(c)' "$port" >"$T/mute.out" 2>&1 &
pids+=($!)
for _ in $(seq 200); do
	grep -q up "$T/mute.out" && break
	sleep 0.05
done

start=$(date +%s)
expect_rc 3 "$CTX" -p "$port" --timeout 1 get someid
expect_in "$T/err" "no reply in 1 s (--timeout)"
[ $(($(date +%s) - start)) -lt 30 ] || fail "--timeout 1 took $(($(date +%s) - start)) s"
# After the command, as options may be.
expect_rc 3 "$CTX" -p "$port" list --timeout=1
expect_in "$T/err" "no reply in 1 s"
# With a password, the AUTH is what gets no reply.
expect_rc 3 "$CTX" -p "$port" -a secret --timeout 1 list
expect_in "$T/err" "authentication failed"
expect_in "$T/err" "no reply in 1 s"

# --timeout 0: no limit; the command is still waiting 3 s later.
"$CTX" -p "$port" --timeout 0 get someid >"$T/out0" 2>&1 &
waiter=$!
pids+=($waiter)
sleep 3
kill -0 "$waiter" 2>/dev/null || fail "--timeout 0 gave up: $(cat "$T/out0")"
kill "$waiter" 2>/dev/null
wait "$waiter" 2>/dev/null

expect_rc 2 "$CTX" --timeout abc get x
expect_in "$T/err" "--timeout needs a number"
expect_rc 2 "$CTX" --timeout 99999999 get x
expect_in "$T/err" "--timeout: at most"
expect_rc 2 "$CTX" get x --timeout
expect_in "$T/err" "--timeout needs a value"

# Offline commands take --timeout too (it does not apply to them).
D="$T/d"
"$MKSTORE" "$D" 3 >/dev/null || { echo "cli_mkstore failed"; exit 1; }
expect_rc 0 "$CTX" --timeout 5 verify "$D"

# A store under a path of ~3,900 bytes (the library's message is cut at
# 256 bytes, before "is locked by another process"), locked by another
# process: exit 3 with the hint, for each offline command.
long="$T"
while [ ${#long} -lt 3800 ]; do
	long="$long/dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"
done
L="$long/store"
mkdir -p "$long"
"$MKSTORE" "$L" 3 >/dev/null || { echo "cli_mkstore of a long path failed"; exit 1; }
expect_rc 0 "$CTX" verify "$L"
python3 -c 'import fcntl, sys, time
f = open(sys.argv[1], "a")
fcntl.flock(f, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(120)' "$L/LOCK" >"$T/holder.out" &
holder=$!
pids+=($holder)
for _ in $(seq 200); do
	grep -q held "$T/holder.out" && break
	sleep 0.05
done
echo '{"id":"new"}' >"$T/one.jsonl"
for cmd in verify inspect export; do
	expect_rc 3 "$CTX" $cmd "$L"
	expect_in "$T/err" "in use by another process (is ctxd running on it?)"
done
expect_rc 3 "$CTX" import "$L" "$T/one.jsonl"
expect_in "$T/err" "in use by another process (is ctxd running on it?)"
kill "$holder"
wait "$holder" 2>/dev/null
expect_rc 0 "$CTX" verify "$L"

finish "cli r19"
