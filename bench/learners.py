#!/usr/bin/env python3
"""Learner and detector speed against the peers, in one run.

Runs the peers with the harness that measured them (shared/bench/peers/run_peers.py:
the same streams, the same models, the same timing code) and driftline on the same
files, then prints samples/s and the ratio for each pair:

- logistic regression, prequential, from the stream file: driftline `backtest
  --model lr --policy online` as a whole process (CSV parse included) against
  Vowpal Wabbit's native driver on its text file (parse included);
- the Hoeffding tree against MOA's Hoeffding adaptive tree, and ARF (10 trees)
  against MOA's ARF (MOA's Java loop over an ARFF file, parse included; driftline
  as a whole process, CSV parse included);
- ADWIN updates/s on the 1,000,000-bit Bernoulli stream against river's ADWIN.

Every measured command runs once untimed first (page cache, JIT), then REPEATS
timed runs whose median counts.

Usage (bench/learners.sh sets up the peers' venv): python learners.py DRIFTLINE_BINARY PEERS_DIR
"""
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

driftline = Path(sys.argv[1]).resolve()
peers_dir = Path(sys.argv[2]).resolve()
sys.path.insert(0, str(peers_dir))
import run_peers  # noqa: E402

STREAMS = ["sea_abrupt", "rbf_moderate"]
REPEATS = 3


def ours(stream_file, model, policy="online"):
    """Median wall time of the whole driftline process, and its accuracy."""
    times, accuracy = [], None
    out = Path("/tmp") / f"driftline-bench-{model}.json"
    for repeat in range(REPEATS + 1):
        t0 = time.perf_counter()
        subprocess.run([str(driftline), "backtest", str(stream_file), "--target", "y", "--model", model,
                        "--policy", policy, "--quiet", "--json", str(out)], check=True, stdout=subprocess.DEVNULL)
        if repeat > 0:  # the first run warms the page cache and is not timed
            times.append(time.perf_counter() - t0)
        accuracy = json.loads(out.read_text())["runs"][0]["metrics"]["accuracy"]
    return statistics.median(times), accuracy


rows = []
for name in STREAMS:
    X, y, cols, man = run_peers.load_stream(name)
    n = len(y)
    # driftline reads the same CSV the peers read (decompressed, as VW and MOA read plain text)
    csv_path = Path("/tmp") / f"{name}.csv"
    if not csv_path.exists():
        import gzip
        csv_path.write_bytes(gzip.decompress((peers_dir / "streams" / man["file"]).read_bytes()))
    vw_times = []
    for repeat in range(REPEATS + 1):
        correct, dt, done, *_ = run_peers.run_vw_native(name, X, y, cols, man, 600)
        if repeat > 0:  # every peer gets the same untimed warm-up run
            vw_times.append(dt)
    vw = statistics.median(vw_times)
    lr_time, lr_acc = ours(csv_path, "lr")
    rows.append((name, "logistic regression", "vw_native", n / vw, float(correct.mean()), n / lr_time, lr_acc))
    moa_hat = []
    for repeat in range(REPEATS + 1):
        correct, dt, *_ = run_peers.run_moa("moa_hat", name, X, y, cols, man, 600)
        if repeat > 0:
            moa_hat.append(dt)
    ht_time, ht_acc = ours(csv_path, "ht")
    rows.append((name, "hoeffding tree vs HAT", "moa_hat", n / statistics.median(moa_hat), float(correct.mean()), n / ht_time, ht_acc))
    moa_arf = []
    for repeat in range(REPEATS + 1):
        correct, dt, *_ = run_peers.run_moa("moa_arf", name, X, y, cols, man, 600)
        if repeat > 0:
            moa_arf.append(dt)
    arf_time, arf_acc = ours(csv_path, "arf")
    rows.append((name, "adaptive random forest", "moa_arf", n / statistics.median(moa_arf), float(correct.mean()), n / arf_time, arf_acc))

bits = run_peers.bernoulli_bits()
factory, as_bool = run_peers.make_detectors()["ADWIN(delta=0.002)"]
river_rates = []
for repeat in range(REPEATS + 1):
    hits, dt, done, _ = run_peers.run_detector(factory, as_bool, bits, 600)
    if repeat > 0:
        river_rates.append(done / dt)
ours_adwin = json.loads(subprocess.run([str(driftline), "bench", "adwin"], check=True, capture_output=True, text=True).stdout)
rows.append(("bernoulli_1m", "ADWIN updates", "river ADWIN", statistics.median(river_rates), hits[:3], ours_adwin["updates_per_second"], ours_adwin["detections"][:3]))

print(f"{'stream':<14} {'what':<24} {'peer':<12} {'peer /s':>12} {'driftline /s':>13} {'ratio':>7}  peer result / driftline result")
for name, what, peer, peer_rate, peer_result, our_rate, our_result in rows:
    fmt = (lambda r: f"{r:.4f}") if isinstance(peer_result, float) else str
    print(f"{name:<14} {what:<24} {peer:<12} {peer_rate:>12,.0f} {our_rate:>13,.0f} {our_rate / peer_rate:>6.1f}x  {fmt(peer_result)} / {fmt(our_result)}")
