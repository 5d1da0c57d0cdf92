#!/usr/bin/env bash
# Installs the npm test fixtures pinned in tests/oracles/package.json (real tokenizer artifacts and
# the independent oracles). Idempotent: runs npm only when node_modules is missing or older than the pins.
set -euo pipefail
dir="$(cd "$(dirname "$0")/.." && pwd)/tests/oracles"
if ! command -v npm >/dev/null 2>&1; then
  # Node.js may come from elsewhere (it bundles npm); only a machine with neither gets Debian's.
  echo "install-oracles: installing Debian nodejs npm" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
stamp="$dir/node_modules/.install-stamp"
if [ -f "$stamp" ] && [ "$stamp" -nt "$dir/package.json" ] &&
   { [ ! -f "$dir/package-lock.json" ] || [ "$stamp" -nt "$dir/package-lock.json" ]; }; then
  exit 0
fi
echo "install-oracles: installing npm fixtures in $dir" >&2
cd "$dir"
if [ -f package-lock.json ] && npm ci --no-audit --no-fund --loglevel=error >/dev/null 2>&1; then :; else
  npm install --no-audit --no-fund --loglevel=error >/dev/null
fi
touch "$stamp"
echo "install-oracles: done" >&2
