#!/usr/bin/env bash
# test_cli_online_more.sh - the ctx CLI's option parsing, usage errors, the
# --json forms and error exits of the online commands not covered by
# test_cli_online.sh, against a running ctxd; its handling of replies of
# the wrong shape and of watch streams that report lost events, against a
# small fake server (fake_ctxd.py); and the offline commands' argument and
# input errors. Exits 77 (CTest: skipped) when build/ctxd does not exist.
set -u
CTX=${CTX_BIN:?}
CTXD=${CTXD_BIN:-}
if [ -z "$CTXD" ] || [ ! -x "$CTXD" ]; then
	echo "SKIP: no ctxd binary at '${CTXD}' (the server is not built yet)"
	exit 77
fi
command -v jq >/dev/null || { echo "jq missing"; exit 1; }
HERE=$(cd "$(dirname "$0")" && pwd)
base=${CTX_TEST_TMP:-/tmp}
mkdir -p "$base"
T=$(mktemp -d "$base/cli-online-more.XXXXXX")
export TZ=UTC
. "$HERE/checks.sh"
server=
fake=
cleanup() {
	[ -n "$server" ] && kill -TERM "$server" 2>/dev/null && wait "$server" 2>/dev/null
	[ -n "$fake" ] && kill "$fake" 2>/dev/null && wait "$fake" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT

# wait_for FILE: until it exists (bounded at 20 s: a broken helper, not timing).
wait_for() {
	for _ in $(seq 200); do
		[ -s "$1" ] && return 0
		sleep 0.1
	done
	return 1
}

# ---- options and usage (no server needed) ----
expect_rc 0 "$CTX" --help
expect_in "$T/out" "exit codes:"
expect_rc 0 "$CTX" get --help
expect_in "$T/out" "usage: ctx [connection options] get ID [FIELD] [--version V]"
expect_in "$T/out" "example:"
expect_rc 0 "$CTX" --version
expect_in "$T/out" "ctx "
expect_rc 2 "$CTX"
expect_in "$T/err" "usage: ctx"
expect_rc 2 "$CTX" nosuch
expect_in "$T/err" "unknown command nosuch"
expect_rc 2 "$CTX" ping -p
expect_in "$T/err" "-p needs a value"
expect_rc 2 "$CTX" ping -h
expect_in "$T/err" "(a host; help is --help)"
expect_rc 2 "$CTX" -p 0 ping
expect_in "$T/err" "-p: not a port: 0"
expect_rc 2 "$CTX" -p 65536 ping
expect_rc 2 "$CTX" -p x ping
expect_rc 2 "$CTX" -u http://x ping
expect_in "$T/err" "not a ctx:// or redis:// URL"
expect_rc 2 "$CTX" -u "ctx://[::1" ping
expect_rc 2 "$CTX" -u "ctx://h:0" ping
expect_rc 2 "$CTX" -x ping
expect_in "$T/err" "unknown option -x"
expect_rc 2 "$CTX" --bogus ping
expect_in "$T/err" "unknown option --bogus"
expect_rc 2 "$CTX" --json=yes ping
expect_in "$T/err" "--json takes no value"
expect_rc 2 "$CTX" point a --label
expect_in "$T/err" "--label needs a value"
expect_rc 2 "$CTX" list --count 0
expect_in "$T/err" "--count must be at least 1"
expect_rc 2 "$CTX" list --count=x
expect_in "$T/err" '--count needs a number, not "x"'
expect_rc 2 "$CTX" list --limit=-1
expect_rc 2 "$CTX" get a --if-version 1
expect_in "$T/err" "get: --if-version is not an option of this command"
expect_rc 2 "$CTX" get
expect_in "$T/err" "get: wrong number of arguments"
expect_rc 2 "$CTX" create a f
expect_in "$T/err" "FIELD VALUE pairs"
expect_rc 2 "$CTX" set a f
expect_rc 2 "$CTX" set a f v g
expect_in "$T/err" "set: ctx set ID FIELD VALUE"
expect_rc 2 "$CTX" diff a x 2
expect_in "$T/err" "diff: FROM and TO are version numbers"
expect_rc 2 "$CTX" restore a
expect_in "$T/err" "give exactly one of"
expect_rc 2 "$CTX" restore a --latest --version 1
for at in bogus -5x -x -99999999999999999999d 2024-13-01 2024-01-01T1:00 2024-01-01T10:00:3 \
	2024-01-01T10:00:30.x 2024-01-01X @x @99999999999999999999 1969-12-31T00:00Z; do
	expect_rc 2 "$CTX" restore a --at "$at"
	expect_in "$T/err" "is not a time"
done
expect_rc 2 "$CTX" watch
expect_in "$T/err" "give an ID or --prefix P, not both"
expect_rc 2 "$CTX" watch a --prefix b
expect_rc 2 "$CTX" verify --dir a b
expect_in "$T/err" "verify: give one data directory"
expect_rc 2 "$CTX" inspect
expect_in "$T/err" "inspect: give one data directory"
expect_rc 2 "$CTX" export
expect_in "$T/err" "export: ctx export DIR"
expect_rc 2 "$CTX" export --dir a b c
expect_in "$T/err" "export: ctx export DIR"

# ---- nothing listening: exit 3 from every kind of command ----
DEAD=$(free_port)
for args in "ping" "list" "watch a" "get a" "info"; do
	# shellcheck disable=SC2086
	expect_rc 3 "$CTX" -p "$DEAD" $args
	expect_in "$T/err" "cannot connect to ctxd at 127.0.0.1:$DEAD"
done

# ---- a real server ----
start_ctxd "$T/ctxd.log" "" --dir "$T/data" --loops 1 || exit 1
PORT=$ctxd_port
server=$ctxd_pid
C=("$CTX" -h 127.0.0.1 -p "$PORT")
expect_rc 0 "${C[@]}" ping
expect_rc 0 "$CTX" -u "redis://127.0.0.1:$PORT/0" ping
expect_rc 0 "$CTX" -u "ctx://127.0.0.1" -p "$PORT" ping

expect_rc 0 "${C[@]}" info server
expect_in "$T/out" "# Server"
expect_rc 0 "${C[@]}" --json info persistence
expect_eq "$(jq -r '.persistence.aof_enabled' "$T/out")" "1" "info --json one section"
expect_rc 0 "${C[@]}" --json create j:1 name Ada
expect_eq "$(jq -c . "$T/out")" '{"id":"j:1","version":1}' "create --json"
expect_rc 0 "${C[@]}" create j:empty
expect_eq "$(cat "$T/out")" "created, version 1" "create people's"
expect_rc 0 "${C[@]}" get j:empty
expect_in "$T/out" "keys      0"
grep -q FIELD "$T/out" && fail "get of a context without fields prints a table"
expect_rc 0 "${C[@]}" get j:1 name --json
expect_eq "$(jq -c . "$T/out")" '{"id":"j:1","version":1,"field":"name","value":"Ada"}' "get FIELD --json"
# names that are not UTF-8 go to fields_base64, as in export
expect_rc 0 "${C[@]}" set j:1 $'\xff' one
expect_rc 0 "${C[@]}" --json get j:1
expect_eq "$(jq -c '[.fields, .fields_base64]' "$T/out")" '[{"name":"Ada"},{"/w==":"one"}]' "fields_base64"
expect_rc 0 "${C[@]}" get j:1
expect_in "$T/out" "name"
# "--" ends the options: a value starting with '-'
expect_rc 0 "${C[@]}" set j:1 delta -- -5
expect_rc 0 "${C[@]}" get j:1 delta
expect_eq "$(cat "$T/out")" "-5" "a value after --"
expect_rc 0 "${C[@]}" --json del j:1 delta --if-version 3
expect_eq "$(jq -c . "$T/out")" '{"id":"j:1","version":4}' "del --json --if-version"
expect_rc 0 "${C[@]}" --json point j:1 --label=l1
expect_eq "$(jq -c . "$T/out")" '{"id":"j:1","version":4}' "point --json, --label=L"
expect_rc 1 "${C[@]}" point nosuch
expect_in "$T/err" "CTXNOTFOUND"
expect_rc 1 "${C[@]}" points nosuch
expect_rc 1 "${C[@]}" history nosuch
expect_rc 1 "${C[@]}" get j:1 --version 99
# restore --at in each time form: before the context existed there is nothing
for at in 2020-01-01 "2020-01-01 10:00" 2020-01-01T10:00:30Z 2020-01-01T10:00:30.5 @1577836800 -20000d \
	1577836800000000; do
	expect_rc 1 "${C[@]}" restore j:1 --at "$at"
	expect_in "$T/err" "CTXNOTFOUND"
done
expect_rc 0 "${C[@]}" restore j:1 --at -0m
expect_rc 0 "${C[@]}" restore j:1 --at -0h
expect_rc 0 "${C[@]}" restore j:1 --at=-0d
expect_rc 0 "${C[@]}" --json diff j:1 1 4
expect_eq "$(jq -c '[.[] | .kind] | sort' "$T/out")" '["added"]' "diff --json"
expect_rc 0 "${C[@]}" --json drop j:empty
expect_eq "$(jq -c . "$T/out")" '{"id":"j:empty","dropped":true}' "drop --json"
expect_rc 1 "${C[@]}" --json drop j:empty
expect_eq "$(jq -c . "$T/out")" '{"id":"j:empty","dropped":false}' "drop --json of a missing context"
expect_in "$T/err" "no such context: j:empty"
expect_rc 4 "${C[@]}" --json set j:1 a b --if-version 1
expect_in "$T/err" "CTXCONFLICT"
expect_rc 0 "${C[@]}" --json verify
expect_eq "$(jq -r .result "$T/out")" "ok" "verify --json online"
expect_rc 0 "${C[@]}" --json list --limit 1
expect_eq "$(jq -c . "$T/out")" '{"ids":["j:1"],"count":1}' "list --limit 1"
# a second page of the watch, by id, from a revision, as JSON
rev=$("${C[@]}" --json stats | jq .revision)
"${C[@]}" set j:1 w 1 >/dev/null
"${C[@]}" --json watch j:1 --from "$rev" >"$T/watch" 2>"$T/watch.err" &
watcher=$!
for _ in $(seq 200); do [ -s "$T/watch" ] && break; sleep 0.1; done
kill -TERM "$watcher"
wait "$watcher"
expect_eq "$?" "0" "watch exit code after SIGTERM"
jq -e 'select(.event == "committed" and .id == "j:1")' "$T/watch" >/dev/null || fail "watch --from: $(cat "$T/watch")"
# the server going away under a watch: exit 3
"${C[@]}" watch --prefix j: >"$T/watch" 2>"$T/watch.err" &
watcher=$!
# Once the watch shows a commit made after it started, it is connected (a
# fixed 0.3 s let a loaded TSan run start it after the server had gone:
# "cannot connect", exit 3). Up to 20 s, as wait_for.
for _ in $(seq 200); do
	"${C[@]}" set j:1 live yes >/dev/null
	[ -s "$T/watch" ] && break
	sleep 0.1
done
[ -s "$T/watch" ] || fail "the watch showed no event in 20 s"
kill -TERM "$server"
wait "$server"
server=
wait "$watcher"
rc=$?
[ $rc = 3 ] || [ $rc = 0 ] || fail "watch when the server stops: exit $rc"
[ $rc = 3 ] && expect_in "$T/watch.err" "connection to ctxd lost"

# ---- a password ----
start_ctxd "$T/ctxd.log" pw --dir "$T/data2" --loops 1 || exit 1
PORT2=$ctxd_port
server=$ctxd_pid
expect_rc 3 "$CTX" -p "$PORT2" -a nope ping
expect_in "$T/err" "authentication failed at 127.0.0.1:$PORT2: WRONGPASS"
expect_rc 3 "$CTX" -p "$PORT2" list
expect_in "$T/err" "NOAUTH"
expect_rc 0 "$CTX" -u "ctx://pw@127.0.0.1:$PORT2" ping
expect_rc 0 "$CTX" -u "redis://default:pw@127.0.0.1:$PORT2/0" ping
kill -TERM "$server"
wait "$server"
server=

# ---- a fake server: replies of the wrong shape ----
start_fake() {
	rm -f "$T/fakeport"
	python3 "$HERE/fake_ctxd.py" "$T/fakeport" "$1" &
	fake=$!
	wait_for "$T/fakeport" || { echo "fake server did not start"; exit 1; }
	F=("$CTX" -p "$(cat "$T/fakeport")")
}
stop_fake() {
	kill "$fake"
	wait "$fake" 2>/dev/null
	fake=
}
start_fake bad
for args in "ping" "info" "stats" "verify" "drop a" "set a f v" "del a f" "point a" \
	"restore a --latest" "get a" "list" "points a" "history a" "diff a 1 2"; do
	# shellcheck disable=SC2086
	expect_rc 1 "${F[@]}" $args
	expect_in "$T/err" "unexpected reply to"
done
expect_rc 0 "${F[@]}" create a f v # create prints what it asked for
stop_fake

start_fake verify0
expect_rc 1 "${F[@]}" verify
expect_in "$T/out" "problems"
expect_in "$T/out" "(array)"
expect_in "$T/out" "(none)"
expect_rc 1 "${F[@]}" --json verify
expect_eq "$(jq -c . "$T/out")" '{"ok":0,"problems":1,"nested":[1,"x"],"none":null}' "verify --json of a failed check"
stop_fake

# ---- a fake server: lost events ----
start_fake lost
expect_rc 1 "${F[@]}" watch w:1
expect_in "$T/out" "5  created  w:1  version 1  fields: f"
expect_in "$T/out" "10  committed  w:1  version 2  fields: f, g"
expect_in "$T/err" "EVENTS LOST: the watch fell behind and revisions from 10 on were not delivered (FROM 10)"
expect_in "$T/err" "resuming the watch from revision 10"
expect_in "$T/err" "the server reports the same loss again; stopping"
stop_fake
start_fake lost
expect_rc 1 "${F[@]}" --json watch w:1 --no-resume
expect_eq "$(jq -c 'select(.lost) | .lost' "$T/out")" '{"first":10,"last":0,"resume_hint":"FROM 10","resuming":false}' "lost --json"
expect_in "$T/err" "resume with: ctx watch ... --from 10"
stop_fake
start_fake lostlast
expect_rc 1 "${F[@]}" watch --prefix w: --from 3 --no-resume
expect_in "$T/err" "revisions 7 to 9 were not delivered"
stop_fake
start_fake garbage
expect_rc 1 "${F[@]}" watch w:1
expect_in "$T/err" "bad data from ctxd"
stop_fake

# ---- offline: argument and input errors ----
expect_rc 1 "$CTX" export "$T/nosuchdir"
expect_in "$T/err" "No such file or directory"
touch "$T/afile"
expect_rc 1 "$CTX" export "$T/afile"
expect_in "$T/err" "not a directory"
expect_rc 1 "$CTX" verify "$T/afile"
printf '{"id":"o:1","fields":{"a":"\\u00E9"}}\n' >"$T/in.jsonl"
expect_rc 0 "$CTX" import "$T/off" "$T/in.jsonl"
expect_rc 0 "$CTX" export "$T/off"
expect_eq "$(jq -r '.fields.a' "$T/out")" "é" "a \\u escape with upper-case hex"
expect_rc 1 "$CTX" export "$T/off" "$T/nosuchdir/out.jsonl"
expect_in "$T/err" "$T/nosuchdir/out.jsonl: No such file or directory"
if [ -w /dev/full ]; then
	expect_rc 1 "$CTX" export "$T/off" /dev/full
	expect_in "$T/err" "export failed after"
fi
bad_line() {
	printf '%s\n' "$1" >"$T/bad.jsonl"
	expect_rc "$2" "$CTX" import "$T/off" "$T/bad.jsonl"
	expect_in "$T/err" "$3"
}
bad_line '{"id":"o:2","fields":"x"}' 1 '"fields" must be an object'
bad_line '{"id":"o:2","fields_base64":{"@@@":"v"}}' 1 'a name in "fields_base64" is not base64'
bad_line '{"id":"o\u0000x"}' 1 "the id holds a NUL byte"
bad_line '{"id":"o:2","fields":{"a":"\u12G4"}}' 1 'bad \u escape'
bad_line '{"id":"o:2" "fields":{}}' 1 "expected ',' or '}'"

bad_line '{"id":"o:2","fields":{"":"x"}}' 1 "empty key"

finish "further online and offline CLI"
