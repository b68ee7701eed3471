#!/usr/bin/env bash
# test_cli_r18_review.sh - round 18's review of the ctx CLI's offline
# commands (r18-review): a failure is called "in use by another process"
# (exit 3) only when the directory is locked, not whenever the library's
# message holds the letters "lock" (a path like /srv/blocks/ctx: before the
# fix an I/O error in such a directory was exit 3 "is ctxd running on it?").
# Run by CTest with CTX_BIN and CTX_MKSTORE set.
set -u
CTX=${CTX_BIN:?}
MKSTORE=${CTX_MKSTORE:?}
base=${CTX_TEST_TMP:-/tmp}
mkdir -p "$base"
T=$(mktemp -d "$base/cli-r18.XXXXXX")
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/checks.sh"

# A store under a path holding "lock", with one log segment that cannot be
# mapped (a directory named like a segment): ctx_open and ctx_verify fail
# with CTX_IO naming that file.
D="$T/clock/d"
"$MKSTORE" "$D" 5 >/dev/null || { echo "cli_mkstore failed"; exit 1; }
mkdir "$D/wal-00000000000f0000.log"
echo '{"id":"new"}' >"$T/one.jsonl"
for cmd in verify inspect export; do
	expect_rc 1 "$CTX" $cmd "$D"
	grep -q "in use by another process" "$T/err" &&
		fail "$cmd of a damaged directory under clock/ said it is in use: $(cat "$T/err")"
	expect_in "$T/err" "wal-00000000000f0000.log"
done
expect_rc 1 "$CTX" import "$D" "$T/one.jsonl"
grep -q "in use by another process" "$T/err" &&
	fail "import into a damaged directory under clock/ said it is in use: $(cat "$T/err")"
expect_rc 1 "$CTX" --json verify "$D"
expect_eq "$(jq -c '.ok' "$T/out")" "false" "verify --json of the damaged directory"

# The same directory, repaired, and held by another process: still exit 3
# with the message (the check was narrowed, not lost).
rmdir "$D/wal-00000000000f0000.log"
expect_rc 0 "$CTX" verify "$D"
python3 -c 'import fcntl, sys, time
f = open(sys.argv[1], "a")
fcntl.flock(f, fcntl.LOCK_EX)
time.sleep(60)' "$D/LOCK" &
holder=$!
for _ in $(seq 100); do
	flock -n -x "$D/LOCK" true 2>/dev/null || break
	sleep 0.1
done
for cmd in inspect export verify; do
	expect_rc 3 "$CTX" $cmd "$D"
	expect_in "$T/err" "in use by another process (is ctxd running on it?)"
done
expect_rc 3 "$CTX" import "$D" "$T/one.jsonl"
expect_in "$T/err" "in use by another process (is ctxd running on it?)"
kill "$holder"
wait "$holder" 2>/dev/null

finish "cli r18 review"
