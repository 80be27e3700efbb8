//! What the lifecycle decides, and the events it reports.

use std::collections::BTreeMap;

use serde::Serialize;

/// What happened in the lifecycle, as the demo, the logs and a replay's
/// report show it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum LifecycleEvent {
    DriftAlarm {
        label: u64,
        detector: String,
        /// The live error rate when it fired.
        statistic: f64,
        /// The detector's sensitivity (its first parameter: ADWIN's delta, ...).
        threshold: f64,
        /// Examples since the estimated drift point.
        window: u64,
    },
    /// A feature's (or the prediction's) distribution in recent traffic
    /// moved away from the champion's training reference.
    DataDrift {
        version: u64,
        feature: String,
        /// The test (`psi`, `ks`, `chi_square`, `jensen_shannon`) and what it
        /// gave: the statistic, or the p-value for KS and chi-square.
        test: String,
        statistic: f64,
        threshold: f64,
        window: usize,
    },
    Retrain {
        version: u64,
        examples: usize,
        trigger: String,
    },
    /// A challenger that passed the gate is on trial beside the champion.
    TrialStarted {
        version: u64,
        mode: String,
    },
    Promoted {
        version: u64,
        previous: Option<u64>,
        accuracy: f64,
        previous_accuracy: f64,
        /// From the drift alarm that started it to the new model serving.
        drift_to_serving_ms: Option<u64>,
    },
    Rejected {
        version: u64,
        reason: String,
    },
    RolledBack {
        from: u64,
        to: u64,
        reason: String,
    },
}

/// A decision of the lifecycle: an event, and for some of them what the
/// caller (serving, or a replay) must now do.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Report it; nothing else to do.
    Alarm(LifecycleEvent),
    /// Train a challenger on the newest `take` joined examples, then report
    /// it with `Lifecycle::trained` (or `Lifecycle::retrain_failed`).
    Retrain { why: String, take: usize },
    /// The challenger was registered.
    Retrained(LifecycleEvent),
    /// `version` goes on trial: as a shadow (`share` none) or as a canary
    /// answering that share of the requests.
    StartTrial {
        version: u64,
        share: Option<f64>,
        reason: String,
        metrics: BTreeMap<String, f64>,
    },
    /// `version` serves now.
    Promote {
        version: u64,
        previous: u64,
        reason: String,
        metrics: BTreeMap<String, f64>,
        event: LifecycleEvent,
    },
    /// `version` never serves.
    Reject {
        version: u64,
        reason: String,
        metrics: BTreeMap<String, f64>,
    },
    /// The predecessor `to` serves again.
    RollBack {
        from: u64,
        to: u64,
        reason: String,
        metrics: BTreeMap<String, f64>,
    },
}

impl Decision {
    /// The event it reports, if any.
    pub fn event(&self) -> Option<LifecycleEvent> {
        match self {
            Decision::Alarm(event) | Decision::Retrained(event) => Some(event.clone()),
            Decision::Retrain { .. } => None,
            Decision::StartTrial { version, share, .. } => Some(LifecycleEvent::TrialStarted {
                version: *version,
                mode: trial_mode(*share),
            }),
            Decision::Promote { event, .. } => Some(event.clone()),
            Decision::Reject {
                version, reason, ..
            } => Some(LifecycleEvent::Rejected {
                version: *version,
                reason: reason.clone(),
            }),
            Decision::RollBack {
                from, to, reason, ..
            } => Some(LifecycleEvent::RolledBack {
                from: *from,
                to: *to,
                reason: reason.clone(),
            }),
        }
    }
}

/// How a trial is named in events and the registry.
pub fn trial_mode(share: Option<f64>) -> String {
    match share {
        None => "shadow".to_string(),
        Some(share) => format!("canary on {:.0} % of requests", share * 100.0),
    }
}
