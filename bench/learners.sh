#!/usr/bin/env bash
# Learner speed against River, Vowpal Wabbit and MOA, in one run. Installs the
# peers (river 0.26.1, vowpalwabbit 9.11.9, capymoa 0.15.1 with MOA; needs Java)
# from PyPI into a temporary venv (removed at the end), builds driftline in
# release mode and runs bench/learners.py with the peers' own harness from
# ../shared/bench/peers/run_peers.py.
set -euo pipefail
cd "$(dirname "$0")/.."
peers="${PEERS_DIR:-../shared/bench/peers}"
venv=$(mktemp -d)
trap 'rm -rf "$venv"' EXIT
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet river==0.26.1 vowpalwabbit==9.11.9 capymoa==0.15.1
cargo build --release -p driftline
PEERS_SCRATCH="$venv/scratch" "$venv/bin/python" bench/learners.py target/release/driftline "$peers"
