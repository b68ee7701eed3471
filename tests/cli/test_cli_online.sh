#!/usr/bin/env bash
# test_cli_online.sh - the ctx CLI against a running ctxd, checked against the
# contract in the CTX.* command specification (docs/cli.md lists the mapping).
# Starts build/ctxd --port <free port> --dir <tmp>; exits 77 (CTest: skipped)
# when build/ctxd does not exist. Run by CTest with CTX_BIN and CTXD_BIN set.
set -u
CTX=${CTX_BIN:?}
CTXD=${CTXD_BIN:-}
if [ -z "$CTXD" ] || [ ! -x "$CTXD" ]; then
	echo "SKIP: no ctxd binary at '${CTXD}' (the server is not built yet)"
	exit 77
fi
command -v jq >/dev/null || { echo "jq missing"; exit 1; }
base=${CTX_TEST_TMP:-/tmp}
mkdir -p "$base"
T=$(mktemp -d "$base/cli-online.XXXXXX")
export TZ=UTC
. "$(dirname "$0")/checks.sh"
server=
cleanup() {
	[ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT

# start_server PASS DIR [ARGS...]: start ctxd (checks.sh's start_ctxd: on a
# free port, until it answers, up to about 60 s): sets server and PORT.
start_server() {
	local pass=$1 dir=$2
	shift 2
	start_ctxd "$T/ctxd.log" "$pass" --dir "$dir" "$@" || return 1
	server=$ctxd_pid
	PORT=$ctxd_port
}
# wait_lines FILE N: until FILE has N lines (bounded, as above).
wait_lines() {
	for _ in $(seq 200); do
		[ "$(wc -l <"$1" 2>/dev/null || echo 0)" -ge "$2" ] && return 0
		sleep 0.1
	done
	return 1
}

DIR=$T/data
start_server "" "$DIR" || exit 1
C=("$CTX" -p "$PORT")

# ---- connection ----
expect_rc 0 "${C[@]}" ping
expect_eq "$(cat "$T/out")" "PONG" "ping"
expect_rc 0 "$CTX" -u "ctx://127.0.0.1:$PORT" --json ping
expect_eq "$(jq -r .reply "$T/out")" "PONG" "ping --json over a URL"
expect_rc 0 "$CTX" -u "redis://127.0.0.1:$PORT/0" ping
expect_rc 0 "${C[@]}" info
expect_rc 0 "${C[@]}" --json info
jq -e 'type == "object"' "$T/out" >/dev/null || fail "info --json is not an object"

# ---- create, get, set, del (CTX.CREATE / GET / SET / DEL) ----
expect_rc 0 "${C[@]}" create user:1 name Ada lang en
expect_rc 4 "${C[@]}" create user:1
expect_in "$T/err" "CTXEXISTS"
expect_rc 0 "${C[@]}" --json get user:1
expect_eq "$(jq -c '[.id, .version, .keys, .fields]' "$T/out")" \
	'["user:1",1,2,{"lang":"en","name":"Ada"}]' "get --json after create"
jq -e '.revision > 0 and .created_us > 0 and .updated_us >= .created_us' "$T/out" >/dev/null ||
	fail "get --json times and revision: $(cat "$T/out")"
expect_rc 0 "${C[@]}" get user:1
expect_in "$T/out" "version   1"
grep -E '^name +Ada$' "$T/out" >/dev/null || fail "get table lacks the name row"
expect_rc 0 "${C[@]}" get user:1 name
expect_eq "$(cat "$T/out")" "Ada" "get ID FIELD prints the raw value"
expect_rc 1 "${C[@]}" get user:1 nosuch
expect_rc 1 "${C[@]}" get nosuch
expect_in "$T/err" "CTXNOTFOUND"

expect_rc 0 "${C[@]}" --json set user:1 lang fr
expect_eq "$(jq -c . "$T/out")" '{"id":"user:1","version":2}' "set --json"
expect_rc 4 "${C[@]}" set user:1 lang de --if-version 1
expect_in "$T/err" "CTXCONFLICT"
expect_rc 0 "${C[@]}" set user:1 lang de city Basel --if-version 2
expect_eq "$(cat "$T/out")" "version 3" "guarded set"
expect_rc 0 "${C[@]}" set user:1 bin $'\xff\xfe' nl $'a\nb'
expect_rc 0 "${C[@]}" --json get user:1
expect_eq "$(jq -c '[.fields.bin, .fields.nl, .version]' "$T/out")" '[{"base64":"//4="},"a\nb",4]' \
	"binary value through --json"
expect_rc 0 "${C[@]}" get user:1 bin
expect_eq "$(od -An -tx1 "$T/out" | tr -d ' ')" "fffe0a" "raw binary value"
expect_rc 0 "${C[@]}" get user:1 --version 2 --json
expect_eq "$(jq -c '[.version, .fields.lang]' "$T/out")" '[2,"fr"]' "get --version"
expect_rc 0 "${C[@]}" del user:1 bin nl
expect_eq "$(cat "$T/out")" "version 5" "del"
expect_rc 1 "${C[@]}" get user:1 bin
expect_rc 4 "${C[@]}" del user:1 city --if-version 1

# ---- points, restore, history, diff ----
expect_rc 0 "${C[@]}" point user:1 --label before
expect_eq "$(cat "$T/out")" "point at version 5" "point"
expect_rc 0 "${C[@]}" set user:1 lang xx
expect_rc 0 "${C[@]}" point user:1
expect_rc 0 "${C[@]}" --json points user:1
expect_eq "$(jq -c '[.[] | [.version, .label, .keys]]' "$T/out")" '[[5,"before",3],[6,"",3]]' "points --json"
jq -e 'all(.[]; (.checksum | test("^[0-9a-f]{16}$")) and .time_us > 0)' "$T/out" >/dev/null ||
	fail "points checksum and time: $(cat "$T/out")"
expect_rc 0 "${C[@]}" points user:1
grep -E '^5 .* before$' "$T/out" >/dev/null || fail "points table: $(cat "$T/out")"
expect_rc 0 "${C[@]}" restore user:1 --label before
expect_eq "$(cat "$T/out")" "restored, version 7" "restore --label"
expect_rc 0 "${C[@]}" get user:1 lang
expect_eq "$(cat "$T/out")" "de" "restored value"
expect_rc 0 "${C[@]}" restore user:1 --latest
expect_eq "$(cat "$T/out")" "restored, version 8" "restore --latest"
expect_rc 0 "${C[@]}" get user:1 lang
expect_eq "$(cat "$T/out")" "xx" "value after restore --latest"
expect_rc 0 "${C[@]}" --json restore user:1 --version 1
expect_eq "$(jq -c . "$T/out")" '{"id":"user:1","version":9}' "restore --version --json"
expect_rc 0 "${C[@]}" restore user:1 --at -0s
expect_rc 1 "${C[@]}" restore user:1 --label nosuch
expect_rc 1 "${C[@]}" restore user:1 --at @1
expect_rc 0 "${C[@]}" --json history user:1
jq -e 'length >= 10 and ([.[].version] == ([.[].version] | sort)) and
       (map(select(.version == 5))[0].pinned == true) and
       (map(select(.version == 4))[0].pinned == false)' "$T/out" >/dev/null ||
	fail "history --json: $(cat "$T/out")"
expect_rc 0 "${C[@]}" history user:1
expect_in "$T/out" "KEYS_CHANGED"
expect_rc 0 "${C[@]}" --json diff user:1 1 3
expect_eq "$(jq -c . "$T/out")" \
	'[{"kind":"added","field":"city","old":null,"new":"Basel"},{"kind":"changed","field":"lang","old":"en","new":"de"}]' \
	"diff --json"
expect_rc 0 "${C[@]}" diff user:1 1 3
grep -E '^changed +lang +en +de$' "$T/out" >/dev/null || fail "diff table: $(cat "$T/out")"
expect_rc 1 "${C[@]}" diff nosuch 1 2

# ---- list: paging with AFTER until the empty cursor ----
for i in $(seq -w 1 23); do "${C[@]}" create "l:$i" >/dev/null || fail "create l:$i"; done
expect_rc 0 "${C[@]}" list l: --count 5
expect_eq "$(tr '\n' ' ' <"$T/out")" "$(seq -f 'l:%02g' 1 23 | tr '\n' ' ')" "list pages through"
expect_rc 0 "${C[@]}" --json list l: --count 4 --limit 6
expect_eq "$(jq -c . "$T/out")" '{"ids":["l:01","l:02","l:03","l:04","l:05","l:06"],"count":6}' "list --limit"
expect_rc 0 "${C[@]}" --json list
expect_eq "$(jq -c '.count' "$T/out")" "24" "list all"
expect_rc 0 "${C[@]}" list zz
expect_eq "$(cat "$T/out")" "" "empty list"

# ---- stats, verify online ----
expect_rc 0 "${C[@]}" --json stats
jq -e '.contexts == 24 and .revision > 0 and .durable_revision <= .revision' "$T/out" >/dev/null ||
	fail "stats --json: $(cat "$T/out")"
expect_rc 0 "${C[@]}" stats
expect_in "$T/out" "contexts"
expect_rc 0 "${C[@]}" verify

# ---- watch: events from a revision, JSON Lines, Ctrl-C ----
rev=$("${C[@]}" --json stats | jq .revision)
"${C[@]}" create w:1 a 1 >/dev/null
"${C[@]}" set w:1 a 2 b 3 >/dev/null
"${C[@]}" create other >/dev/null
"${C[@]}" drop w:1 >/dev/null
"${C[@]}" --json watch --prefix w: --from $((rev + 1)) >"$T/watch" 2>"$T/watch.err" &
watcher=$!
wait_lines "$T/watch" 3 || fail "watch printed $(wc -l <"$T/watch") of 3 events"
kill -INT "$watcher"
wait "$watcher"
expect_eq "$?" "0" "watch exit code after SIGINT"
expect_eq "$(jq -c '[.event, .id, .version, (.fields | sort)]' "$T/watch" | tr '\n' ' ')" \
	'["created","w:1",1,["a"]] ["committed","w:1",2,["a","b"]] ["dropped","w:1",0,[]] ' \
	"watch events"
jq -e -s '.[0].revision == '$((rev + 1))' and .[1].revision > .[0].revision' "$T/watch" >/dev/null ||
	fail "watch revisions: $(cat "$T/watch")"
# one id, people's format, live events
"${C[@]}" watch user:1 >"$T/watch2" 2>&1 &
watcher=$!
sleep 0.5 # the watch may start late: the loop below resends until seen
for _ in $(seq 50); do
	"${C[@]}" set user:1 live yes >/dev/null
	grep -q committed "$T/watch2" && break
	sleep 0.2
done
kill -INT "$watcher"
wait "$watcher"
grep -E '^[0-9]+  committed  user:1  version [0-9]+  fields: live$' "$T/watch2" >/dev/null ||
	fail "watch people's format: $(head -3 "$T/watch2")"

# ---- offline commands refuse a directory the server holds ----
expect_rc 3 "$CTX" inspect "$DIR"
expect_in "$T/err" "is ctxd running on it?"

# ---- drop ----
expect_rc 0 "${C[@]}" drop user:1
expect_rc 1 "${C[@]}" drop user:1
expect_in "$T/err" "no such context"

# ---- the server stopped: its directory offline ----
kill -TERM "$server"
wait "$server"
server=
expect_rc 3 "${C[@]}" ping
expect_rc 0 "$CTX" verify "$DIR"
expect_rc 0 "$CTX" export "$DIR" "$T/dump.jsonl"
expect_eq "$(jq -r .id "$T/dump.jsonl" | grep -c '^l:')" "23" "export after the server stopped"
grep -q '"other"' "$T/dump.jsonl" || fail "export lacks a context made online"

# ---- password (if this ctxd takes --requirepass) ----
if start_server s3cret "$T/data2" 2>/dev/null; then
	PORT2=$PORT
	expect_rc 0 "$CTX" -p "$PORT2" -a s3cret ping
	expect_rc 0 "$CTX" -u "ctx://:s3cret@127.0.0.1:$PORT2" ping
	expect_rc 3 "$CTX" -p "$PORT2" -a wrong ping
	expect_rc 3 "$CTX" -p "$PORT2" stats
else
	echo "note: ctxd --requirepass not available; password checks skipped"
fi

finish "online CLI"
