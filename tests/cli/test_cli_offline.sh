#!/usr/bin/env bash
# test_cli_offline.sh - the ctx CLI on a data directory, no server:
# verify (good, torn, damaged, locked), inspect, export -> import -> export
# round trips (binary values through base64), import errors, --replace,
# usage errors and exit codes. Run by CTest with CTX_BIN and CTX_MKSTORE set.
set -u
CTX=${CTX_BIN:?}
MKSTORE=${CTX_MKSTORE:?}
command -v jq >/dev/null || { echo "jq missing"; exit 1; }
base=${CTX_TEST_TMP:-/tmp}
mkdir -p "$base"
T=$(mktemp -d "$base/cli-offline.XXXXXX")
trap 'rm -rf "$T"' EXIT
export TZ=UTC
. "$(dirname "$0")/checks.sh"

N=300
"$MKSTORE" "$T/d" $N || { echo "cli_mkstore failed"; exit 1; }
LIVE=$((N + 4))
# The same as a crash between the final checkpoint's rename and its deletes
# leaves it: the whole log still beside the checkpoint.
"$MKSTORE" "$T/dlog" $N keep-log || { echo "cli_mkstore keep-log failed"; exit 1; }

# ---- verify ----
expect_rc 0 "$CTX" verify "$T/d"
expect_in "$T/out" "result               ok"
expect_in "$T/out" "contexts             $LIVE"
expect_rc 0 "$CTX" --json verify "$T/d"
expect_eq "$(jq -c '[.ok, .contexts, .checkpoints_damaged]' "$T/out")" "[true,$LIVE,0]" "verify --json"
expect_rc 0 "$CTX" verify --dir "$T/d"
expect_rc 1 "$CTX" verify "$T/nonexistent"

# ---- inspect ----
expect_rc 0 "$CTX" inspect "$T/d"
expect_in "$T/out" "contexts     $LIVE"
grep -E '^user:1 +5 +3 +28 +1 ' "$T/out" >/dev/null || fail "inspect row of user:1: $(grep user:1 "$T/out")"
grep -E '^ünïcode id +2 +1 +2 +0 ' "$T/out" >/dev/null || fail "inspect row of a UTF-8 id"
grep -q '^gone' "$T/out" && fail "inspect lists a dropped context"
expect_rc 0 "$CTX" --json inspect "$T/d"
expect_eq "$(jq -c '.contexts | length' "$T/out")" "$LIVE" "inspect --json count"
expect_eq "$(jq -c '.contexts[] | select(.id=="user:2") | [.version,.keys,.points]' "$T/out")" \
	"[8,6,1]" "inspect --json user:2"
expect_eq "$(jq -c '.checkpoint.damaged' "$T/out")" "0" "inspect --json checkpoint"

# ---- export: the exact shape ----
expect_rc 0 "$CTX" export "$T/d" "$T/e1.jsonl"
expect_eq "$(wc -l <"$T/e1.jsonl")" "$LIVE" "export line count"
expect_in "$T/err" "exported $LIVE context(s)"
grep -q $'\r' "$T/err" && fail "progress bar written to a stderr that is not a terminal"
expect_eq "$(grep '"user:1"' "$T/e1.jsonl")" \
	'{"id":"user:1","version":5,"fields":{"city":"Zürich ✓","lang":"fr","name":"Ada"},"meta":{}}' \
	"export of user:1"
expect_eq "$(grep '"user:2"' "$T/e1.jsonl")" \
	'{"id":"user:2","version":8,"fields":{"bin":{"base64":"//4AAQ=="},"ctl":"\u0001\u001f\u007f","empty":"","nul":"a\u0000b","q\"uote\\\n":"line1\nline2\t\""},"fields_base64":{"gGtleQ==":"binary key"},"meta":{"owner":"ops"},"meta_base64":{"wyg=":{"base64":"wyg="}}}' \
	"export of user:2 (binary values and names)"
# every line is valid JSON for another parser, and ids are in byte order
jq -e . "$T/e1.jsonl" >/dev/null || fail "export is not valid JSON Lines for jq"
LC_ALL=C sort -c <(jq -r .id "$T/e1.jsonl") || fail "export not in id order"
# the binary value decodes to the bytes cli_mkstore wrote
expect_eq "$(jq -r 'select(.id=="user:2").fields.bin.base64' "$T/e1.jsonl" | base64 -d | od -An -tx1 | tr -d ' ')" \
	"fffe0001" "base64 value bytes"
# to stdout, identical
"$CTX" export "$T/d" >"$T/e1b.jsonl" 2>/dev/null
cmp -s "$T/e1.jsonl" "$T/e1b.jsonl" || fail "export to stdout differs from export to a file"

# ---- import -> export round trips ----
expect_rc 0 "$CTX" import "$T/d2" "$T/e1.jsonl"
expect_in "$T/err" "imported $LIVE context(s)"
"$CTX" export "$T/d2" >"$T/e2.jsonl" 2>/dev/null
cmp -s <(jq -c 'del(.version)' "$T/e1.jsonl") <(jq -c 'del(.version)' "$T/e2.jsonl") ||
	fail "export -> import -> export changed the data"
expect_eq "$(jq -r .version "$T/e2.jsonl" | sort -u)" "1" "imported contexts are at version 1 (one commit)"
"$CTX" import "$T/d3" - <"$T/e2.jsonl" 2>/dev/null || fail "import from stdin"
"$CTX" export "$T/d3" >"$T/e3.jsonl" 2>/dev/null
cmp -s "$T/e2.jsonl" "$T/e3.jsonl" || fail "second round trip is not byte-identical"
expect_rc 0 "$CTX" verify "$T/d3"

# ---- import onto existing contexts ----
expect_rc 4 "$CTX" import "$T/d2" "$T/e1.jsonl"
expect_in "$T/err" 'e1.jsonl:1: context "bulk:000000" exists already (use --replace)'
expect_rc 0 "$CTX" import --replace "$T/d2" "$T/e1.jsonl"
"$CTX" export "$T/d2" >"$T/e4.jsonl" 2>/dev/null
cmp -s <(jq -c 'del(.version)' "$T/e1.jsonl") <(jq -c 'del(.version)' "$T/e4.jsonl") ||
	fail "import --replace of the same data changed it"
expect_eq "$(jq -r .version "$T/e4.jsonl" | sort -u)" "2" "--replace is one commit per context"
# --replace drops what the line does not hold (fields and metadata)
echo '{"id":"user:2","fields":{"only":"this"}}' >"$T/one.jsonl"
expect_rc 0 "$CTX" import --replace "$T/d2" "$T/one.jsonl"
"$CTX" export "$T/d2" 2>/dev/null | grep '"user:2"' >"$T/u2"
expect_eq "$(cat "$T/u2")" '{"id":"user:2","version":3,"fields":{"only":"this"},"meta":{}}' "--replace result"

# ---- import errors: line numbers, nothing half-made ----
printf '{"id":"a","fields":{"x":"1"}}\n\n{"id":"b","fields":{"x":\n' >"$T/bad1.jsonl"
expect_rc 1 "$CTX" import "$T/d4" "$T/bad1.jsonl"
expect_in "$T/err" "bad1.jsonl:3:"
expect_in "$T/err" "1 context(s) imported before it"
echo '{"id":"c","fields":{"x":{"base64":"not base64!"}}}' >"$T/bad2.jsonl"
expect_rc 1 "$CTX" import "$T/d4" "$T/bad2.jsonl"
expect_in "$T/err" 'a value must be a string or {"base64": "..."}'
"$CTX" export "$T/d4" >"$T/e5.jsonl" 2>/dev/null
expect_eq "$(jq -r .id "$T/e5.jsonl" | tr '\n' ' ')" "a " "only complete contexts were imported"
echo '{"fields":{}}' >"$T/bad3.jsonl"
expect_rc 1 "$CTX" import "$T/d4" "$T/bad3.jsonl"
expect_in "$T/err" 'string "id"'
echo '{"id":"bad\u0001id"}' >"$T/bad4.jsonl"
expect_rc 1 "$CTX" import "$T/d4" "$T/bad4.jsonl"
expect_in "$T/err" "invalid"
expect_rc 1 "$CTX" import "$T/d4" "$T/missing.jsonl"

# ---- damage ----
cp -r "$T/d" "$T/torn"
printf 'half-written-record' >>"$(ls "$T"/torn/wal-*.log | tail -1)"
expect_rc 0 "$CTX" --json verify "$T/torn"
expect_eq "$(jq -c '[.ok, .torn_bytes]' "$T/out")" "[true,19]" "torn tail is counted, not an error"
# A clean close keeps one generation: the checkpoint and the log after it.
expect_eq "$(ls "$T"/d/ckpt-*.ckpt | wc -l) $(ls "$T"/d/wal-*.log | wc -l)" "1 1" "files after a close"
[ -e "$T/d/wal-0000000000000001.log" ] && fail "the log the checkpoint covers was kept"
damage_ckpt() { # DIR: four bytes in the middle of its checkpoint
	local c size
	c=$(ls "$1"/ckpt-*.ckpt | tail -1)
	size=$(stat -c %s "$c")
	printf '\xff\xff\xff\xff' | dd of="$c" bs=1 seek=$((size / 2)) conv=notrunc 2>/dev/null
}
# A damaged sole checkpoint beside the complete log (a crash before its
# deletes) is rebuilt from the log (verify says so and succeeds); after a
# clean close, the log it covered is gone, and it is damage.
cp -r "$T/dlog" "$T/rebuilt"
damage_ckpt "$T/rebuilt"
expect_rc 0 "$CTX" --json verify "$T/rebuilt"
expect_in "$T/out" "rebuilt from the complete log"
cp -r "$T/d" "$T/bad"
ckpt=$(ls "$T"/bad/ckpt-*.ckpt | tail -1)
damage_ckpt "$T/bad"
expect_rc 1 "$CTX" verify "$T/bad"
expect_in "$T/out" "result               data corrupt"
expect_in "$T/out" "$(basename "$ckpt")"
expect_rc 1 "$CTX" --json verify "$T/bad"
expect_eq "$(jq -c '.ok' "$T/out")" "false" "verify --json of a damaged dir"
expect_rc 1 "$CTX" inspect "$T/bad"
expect_in "$T/err" "fails verification"
expect_rc 1 "$CTX" export "$T/bad" "$T/never.jsonl"
[ -e "$T/never.jsonl" ] && fail "export of a damaged directory wrote a file"

# ---- a directory in use (held by another process, as ctxd would) ----
if command -v flock >/dev/null; then
	# one process holds the lock (flock(1) would pass it on to its child)
	python3 -c 'import fcntl, sys, time
f = open(sys.argv[1], "a")
fcntl.flock(f, fcntl.LOCK_EX)
time.sleep(60)' "$T/d/LOCK" &
	holder=$!
	for _ in $(seq 50); do
		flock -n -x "$T/d/LOCK" true 2>/dev/null || break
		sleep 0.1
	done
	for cmd in inspect export verify; do
		expect_rc 3 "$CTX" $cmd "$T/d"
		expect_in "$T/err" "in use by another process (is ctxd running on it?)"
	done
	expect_rc 3 "$CTX" import "$T/d" "$T/one.jsonl"
	kill "$holder"
	wait "$holder" 2>/dev/null
fi

# ---- progress bar only on a terminal ----
if command -v script >/dev/null; then
	script -qec "$CTX export $T/d $T/e6.jsonl" /dev/null >"$T/tty" 2>&1
	grep -q 'export \[' "$T/tty" || fail "no progress bar on a terminal"
	cmp -s "$T/e1.jsonl" "$T/e6.jsonl" || fail "export under a terminal differs"
fi

# ---- usage, help, exit codes ----
expect_rc 0 "$CTX" --help
for c in ping info stats create drop get set del list points point restore history diff watch verify inspect export import; do
	expect_in "$T/out" "  $c"
done
expect_rc 0 "$CTX" export --help
expect_in "$T/out" "usage: ctx [connection options] export DIR [FILE|-]"
expect_in "$T/out" "example:"
expect_rc 0 "$CTX" --version
expect_rc 2 "$CTX"
expect_rc 2 "$CTX" frobnicate
expect_rc 2 "$CTX" get
expect_rc 2 "$CTX" set id field
expect_rc 2 "$CTX" create id field
expect_rc 2 "$CTX" get id --if-version 3
expect_rc 2 "$CTX" get id --version x
expect_rc 2 "$CTX" list --count 0
expect_rc 2 "$CTX" restore id
expect_rc 2 "$CTX" restore id --latest --version 2
expect_rc 2 "$CTX" restore id --at yesterday
expect_rc 2 "$CTX" diff id 1 x
expect_rc 2 "$CTX" watch
expect_rc 2 "$CTX" watch id --prefix p
expect_rc 2 "$CTX" -p 0 ping
expect_rc 2 "$CTX" -u http://x ping
expect_rc 2 "$CTX" export "$T/d" a b
expect_rc 2 "$CTX" import --replace
expect_rc 2 "$CTX" get id --bogus
expect_in "$T/err" "put --"
# nothing listens there: a connection error
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
expect_rc 3 "$CTX" -p "$port" ping
expect_in "$T/err" "cannot connect to ctxd at 127.0.0.1:$port"
expect_rc 3 "$CTX" -u "ctx://:pw@127.0.0.1:$port" get id

# ---- a directory that holds no store (a typo'd or parent path) ----
# verify, inspect and export refuse it and leave it as it was (they used to
# make a new store in it, a LOCK and a wal file, and report 0 contexts).
mkdir -p "$T/notstore" "$T/emptydir"
echo "not ctx" >"$T/notstore/notes.txt"
for d in "$T/notstore" "$T/emptydir"; do
	for c in verify inspect export; do
		expect_rc 1 "$CTX" "$c" "$d"
		expect_in "$T/err" "not a ctx data directory"
	done
done
expect_eq "$(ls -A "$T/notstore")" "notes.txt" "files in a non-store directory after the offline commands"
expect_eq "$(ls -A "$T/emptydir")" "" "files in an empty directory after the offline commands"
# import still makes a new store where there is none
expect_rc 0 "$CTX" import "$T/emptydir" /dev/null
expect_rc 0 "$CTX" export "$T/emptydir"

finish "offline CLI"
