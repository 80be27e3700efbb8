#!/usr/bin/env bash
# Prediction latency (open loop at BENCH_RATE requests/s, default 10,000) and
# batched throughput over HTTP on loopback; see crates/driftline/benches/serving.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p driftline --bench serving
