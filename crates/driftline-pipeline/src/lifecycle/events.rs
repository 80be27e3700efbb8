//! What the lifecycle reports: events, predictions, errors and counters.

use super::*;

/// What happened in the lifecycle, as the demo and the logs show it.
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

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Prediction {
    pub request_id: String,
    pub version: u64,
    pub class: usize,
    pub probabilities: Vec<f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("no model is serving yet")]
    NoChampion,
    #[error("the event does not fit the model's features: {0}")]
    Encode(#[from] driftline_ml::features::EncodeError),
    #[error("no prediction waits for request id {0:?} (unknown, already labelled or expired)")]
    Unmatched(String),
    #[error("label {label} is not a class of the model (0..{classes})")]
    BadLabel { label: usize, classes: usize },
    #[error(transparent)]
    Lake(#[from] driftline_lake::LakeError),
    #[error("artifact: {0}")]
    Artifact(String),
    #[error("assembling a training set: {0}")]
    Training(String),
}

/// Counters of the lifecycle, for the status API and the demo.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Counters {
    pub predictions: u64,
    pub labels: u64,
    pub joined: u64,
    pub unmatched_labels: u64,
    pub expired_predictions: u64,
    pub drift_alarms: u64,
    pub data_drift_alarms: u64,
    pub retrains: u64,
    pub promotions: u64,
    pub rejections: u64,
    pub rollbacks: u64,
    /// Snapshots of the online learner served, and examples it had no room for.
    pub online_updates: u64,
    pub online_skipped: u64,
    /// Predictions the prediction log had no room for (its stream was
    /// behind by a full queue): counted, never waited for by a request.
    pub prediction_log_dropped: u64,
}
