//! `--metrics emf`: the progress of a running pipeline as CloudWatch embedded
//! metric format lines on standard output, one per stage and per model each
//! interval. Counters are reported as what happened since the last line.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use driftline_pipeline::emf::{line, Unit};
use driftline_pipeline::lifecycle::ModelService;
use driftline_pipeline::MappingStats;

/// Remembers the last totals, so that each line carries the increments.
#[derive(Default)]
pub struct EmfReporter {
    last: BTreeMap<(String, &'static str), u64>,
}

impl EmfReporter {
    fn delta(&mut self, owner: &str, name: &'static str, total: u64) -> f64 {
        let last = self
            .last
            .insert((owner.to_string(), name), total)
            .unwrap_or(0);
        total.saturating_sub(last) as f64
    }

    pub fn report(
        &mut self,
        pipeline: &str,
        stages: &[(String, Arc<MappingStats>)],
        models: &[Arc<ModelService>],
    ) {
        let now = driftline_log::now_ms();
        let mut out = std::io::stdout().lock();
        for (stage, stats) in stages {
            let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
            let metrics = [
                (
                    "RecordsIn",
                    self.delta(stage, "in", load(&stats.records_in)),
                    Unit::Count,
                ),
                (
                    "RowsDelivered",
                    self.delta(stage, "delivered", load(&stats.rows_delivered)),
                    Unit::Count,
                ),
                (
                    "DeadLettered",
                    self.delta(stage, "dead", load(&stats.dead_lettered)),
                    Unit::Count,
                ),
                (
                    "ObjectsWritten",
                    self.delta(stage, "objects", load(&stats.objects)),
                    Unit::Count,
                ),
                ("Lag", load(&stats.lag) as f64, Unit::Count),
            ];
            let dimensions = [("Pipeline", pipeline), ("Stage", stage.as_str())];
            let _ = writeln!(out, "{}", line(now, &dimensions, &metrics));
        }
        for model in models {
            let name = model.name();
            let c = model.counters();
            let metrics = [
                (
                    "Predictions",
                    self.delta(name, "predictions", c.predictions),
                    Unit::Count,
                ),
                (
                    "LabelsJoined",
                    self.delta(name, "joined", c.joined),
                    Unit::Count,
                ),
                (
                    "DriftAlarms",
                    self.delta(name, "drift", c.drift_alarms),
                    Unit::Count,
                ),
                (
                    "DataDriftAlarms",
                    self.delta(name, "data_drift", c.data_drift_alarms),
                    Unit::Count,
                ),
                (
                    "Retrains",
                    self.delta(name, "retrains", c.retrains),
                    Unit::Count,
                ),
                (
                    "Promotions",
                    self.delta(name, "promotions", c.promotions),
                    Unit::Count,
                ),
                (
                    "Rejections",
                    self.delta(name, "rejections", c.rejections),
                    Unit::Count,
                ),
                (
                    "Rollbacks",
                    self.delta(name, "rollbacks", c.rollbacks),
                    Unit::Count,
                ),
                (
                    "LiveAccuracy",
                    model.live_accuracy().unwrap_or(f64::NAN),
                    Unit::None,
                ),
                (
                    "ChampionVersion",
                    model.champion_version() as f64,
                    Unit::None,
                ),
            ];
            let dimensions = [("Pipeline", pipeline), ("Model", name)];
            let _ = writeln!(out, "{}", line(now, &dimensions, &metrics));
        }
        let _ = out.flush();
    }
}
