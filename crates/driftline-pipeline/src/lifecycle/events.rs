//! What the lifecycle reports: predictions, errors, counters (and the
//! events, defined with the decisions in `driftline_ml::lifecycle`).

use super::*;

pub use driftline_ml::lifecycle::LifecycleEvent;

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
    Training(#[from] crate::training::TrainingError),
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
