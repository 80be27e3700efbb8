//! driftline's learning core: concept- and data-drift detectors and streaming
//! metrics, with River's vocabulary (`update`, `drift_detected`,
//! `warning_detected`, `get`, `revert`). No async runtime, no I/O.

pub mod drift;
pub mod evaluate;
pub mod features;
pub mod learn;
pub mod lifecycle;
pub mod metrics;
pub mod stats;
pub mod synth;

/// A parameter that is out of its range, named with the value given.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{what}: {detail}")]
pub struct ParamError {
    pub what: &'static str,
    pub detail: String,
}

impl ParamError {
    pub(crate) fn new(what: &'static str, detail: impl Into<String>) -> ParamError {
        ParamError {
            what,
            detail: detail.into(),
        }
    }
}
