#!/usr/bin/env bash
# test_node.sh DIR - node-redis and ioredis against ctxd (run under with_ctxd.sh).
# Installs the locked packages of tests/compat/node (package-lock.json) into DIR
# with `npm ci` (again only when the lock file changed), copies the suites there
# and runs them with node's test runner. If npm's registry cannot be reached the
# suites cannot run: that is said plainly and the exit status is 77, which CTest
# reports as skipped (never as passed).
set -uo pipefail
SRC=$(cd "$(dirname "$0")/node" && pwd)
DIR=${1:?usage: test_node.sh DIR}

for tool in node npm; do
	command -v $tool >/dev/null || {
		echo "test_node: $tool missing (scripts/deps.sh installs Debian's nodejs and npm)"
		exit 1
	}
done
echo "test_node: node $(node --version), npm $(npm --version)"

mkdir -p "$DIR"
if [ -f "$DIR/node_modules/.package-lock.json" ] && cmp -s "$SRC/package-lock.json" "$DIR/package-lock.json"; then
	echo "test_node: packages already installed in $DIR"
else
	rm -rf "$DIR/node_modules"
	cp "$SRC/package.json" "$SRC/package-lock.json" "$DIR/"
	if ! npm ci --prefix "$DIR" --prefer-offline --no-audit --no-fund >"$DIR/npm-ci.log" 2>&1; then
		cat "$DIR/npm-ci.log"
		if grep -qE 'E(NOTFOUND|AI_AGAIN|CONNREFUSED|CONNRESET|TIMEDOUT|NETUNREACH|HOSTUNREACH)|ERR_SOCKET_TIMEOUT|network' \
			"$DIR/npm-ci.log"; then
			echo "test_node: SKIPPED: npm's registry cannot be reached, so node-redis and ioredis"
			echo "test_node: could not be installed; the node compatibility suites did NOT run."
			rm -f "$DIR/package-lock.json"
			exit 77
		fi
		echo "test_node: npm ci failed (not a network error)"
		rm -f "$DIR/package-lock.json"
		exit 1
	fi
fi
cp "$SRC"/*.test.mjs "$DIR/"
cd "$DIR" && exec node --test ./*.test.mjs
