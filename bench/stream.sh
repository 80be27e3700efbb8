#!/usr/bin/env bash
# Stream write benchmark: driftline against kinesalite, same clients, same run.
# Installs kinesalite from the npm registry into a temporary directory (removed
# at the end), then runs `cargo bench --bench stream`, which starts both servers
# on free loopback ports and prints records/s, MB/s, p50/p99 and the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "installing kinesalite into $tmp"
npm install --silent --no-audit --no-fund --prefix "$tmp" kinesalite >/dev/null
echo "kinesalite $(node -p "require('$tmp/node_modules/kinesalite/package.json').version")"
KINESALITE="$tmp/node_modules/.bin/kinesalite" cargo bench -p driftline --bench stream
