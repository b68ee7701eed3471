# checks.sh - what the CLI's shell tests (test_cli_*.sh) share; each sources
# it after setting T, its scratch directory:
#   fail MSG                    a failed check, counted in $failures
#   expect_rc CODE CMD...       run CMD (stdout to $T/out, stderr to $T/err),
#                               its exit code must be CODE
#   expect_in FILE TEXT         FILE holds TEXT
#   expect_eq GOT WANT WHAT     GOT is WANT
#   free_port                   print a free TCP port on 127.0.0.1
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

finish() {
	if [ $failures -ne 0 ]; then
		echo "$failures check(s) failed"
		exit 1
	fi
	echo "all $1 checks passed"
	exit 0
}
