//! `driftline bench`: timings of our own parts, printed as JSON for the peer
//! benchmark scripts in `bench/` (which run the peers in the same run).

use std::time::Instant;

use driftline_ml::drift::{Adwin, DriftDetector, DriftState};
use serde_json::json;

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// ADWIN (delta 0.002, clock 32) over the peers' Bernoulli stream: 1,000,000
    /// bits from SplitMix64 (seed 20240601), rate 0.2 then 0.3 from 500,000.
    Adwin {
        /// Times to repeat the run (the fastest is reported).
        #[arg(long, default_value_t = 5)]
        repeats: usize,
    },
}

pub fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Adwin { repeats } => {
            let bits =
                driftline_ml::stats::bernoulli_stream(1_000_000, 500_000, 0.2, 0.3, 20_240_601);
            let mut best = f64::INFINITY;
            let mut detections = Vec::new();
            for _ in 0..repeats.max(1) {
                let mut adwin = Adwin::default();
                detections.clear();
                let started = Instant::now();
                for (i, bit) in bits.iter().enumerate() {
                    if adwin.update(*bit) == DriftState::Drift {
                        detections.push(i);
                    }
                }
                best = best.min(started.elapsed().as_secs_f64());
            }
            println!(
                "{}",
                json!({"detector": "adwin", "updates": bits.len(), "seconds": best, "updates_per_second": bits.len() as f64 / best, "detections": detections})
            );
        }
    }
    Ok(())
}
