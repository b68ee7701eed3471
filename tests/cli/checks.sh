# checks.sh - what the CLI's shell tests (test_cli_*.sh) share; each sources
# it after setting T, its scratch directory:
#   fail MSG                    a failed check, counted in $failures
#   expect_rc CODE CMD...       run CMD (stdout to $T/out, stderr to $T/err),
#                               its exit code must be CODE
#   expect_in FILE TEXT         FILE holds TEXT
#   expect_eq GOT WANT WHAT     GOT is WANT
#   free_port                   print a free TCP port on 127.0.0.1
#   start_ctxd LOG PASS ARGS... start $CTXD on a free port (output to LOG,
#                               ARGS after --port P): sets ctxd_port, ctxd_pid
#   finish WHAT                 exit 1 if a check failed, else say so and exit 0
failures=0

fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

expect_rc() {
	local want=$1
	shift
	"$@" >"$T/out" 2>"$T/err"
	local got=$?
	if [ "$got" != "$want" ]; then
		fail "'$*' exited $got, expected $want"
		sed 's/^/  stdout: /' "$T/out" | head -5
		sed 's/^/  stderr: /' "$T/err" | head -5
	fi
}

expect_in() {
	grep -qF -- "$2" "$1" || { fail "$1 lacks '$2'"; sed 's/^/  /' "$1" | head -10; }
}

expect_eq() {
	[ "$1" == "$2" ] || fail "$3: got '$1', expected '$2'"
}

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# start_ctxd LOG PASS [ARGS...]: $CTXD --port P ARGS... >LOG 2>&1 in the
# background, on a free port P; PASS is its --requirepass (empty: none, and
# not added). Returns once that process answers (`ctx info server`'s
# process_id: another test's server on the port picked answers a ping too),
# with ctxd_port and ctxd_pid set; a ctxd whose port was taken meanwhile
# exits, and starts again on another port. Up to about 60 s (a sanitizer
# build on a loaded machine); returns 1 if it exits or does not answer.
start_ctxd() {
	local log=$1 pass=$2 info
	shift 2
	local auth=() pwopt=()
	[ -n "$pass" ] && auth=(-a "$pass") && pwopt=(--requirepass "$pass")
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		ctxd_port=$(free_port)
		"$CTXD" --port "$ctxd_port" "$@" "${pwopt[@]}" >"$log" 2>&1 &
		ctxd_pid=$!
		for _ in $(seq 600); do
			info=$("$CTX" -p "$ctxd_port" "${auth[@]}" info server 2>/dev/null | tr -d '\r')
			grep -qx "process_id:$ctxd_pid" <<<"$info" && return 0
			kill -0 "$ctxd_pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -0 "$ctxd_pid" 2>/dev/null && break
		grep -q "Address already in use" "$log" || break
		wait "$ctxd_pid" 2>/dev/null
	done
	echo "ctxd did not start:"
	cat "$log"
	return 1
}

finish() {
	if [ $failures -ne 0 ]; then
		echo "$failures check(s) failed"
		exit 1
	fi
	echo "all $1 checks passed"
	exit 0
}
