#!/usr/bin/env bash
# Install the Debian packages ctx needs, only when some are missing.
#   scripts/deps.sh          build and test dependencies
#   scripts/deps.sh bench    also the benchmark peers (SQLite, LMDB, gnuplot)
set -euo pipefail

# libjemalloc-dev: ctxd's allocator (CMake CTX_JEMALLOC; libctx links none).
pkgs=(build-essential cmake pkg-config clang liburcu-dev libuv1-dev libhiredis-dev
      libcmocka-dev libxxhash-dev libjemalloc-dev gcovr libclang-rt-14-dev redis-tools jq
      python3-redis)
# The client compatibility tests (tests/compat) run node-redis and ioredis: Node.js
# and npm from Debian, unless a node with its npm is already there (NodeSource's
# nodejs package bundles npm and conflicts with Debian's).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	pkgs+=(nodejs npm)
fi
if [ "${1:-}" = bench ]; then
	# mimalloc: only to measure ctx under another allocator (docs/decisions.md,
	# "glibc malloc stays" and "ctxd runs on jemalloc"); libctx links none.
	pkgs+=(libsqlite3-dev liblmdb-dev gnuplot-nox redis-server libmimalloc-dev)
fi

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
