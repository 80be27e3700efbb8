#!/usr/bin/env bash
# Stream-to-lake benchmark: `driftline run examples/quickstart.toml` fed ~200-byte
# JSON events over NDJSON; prints ingest and end-to-end events/s and the server's
# memory over the run. BENCH_SECONDS and BENCH_RATE tune it (see the bench's header);
# `BENCH_SECONDS=600 BENCH_RATE=50000 bash bench/pipeline.sh` is the 10-minute memory run.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p driftline --bench pipeline
