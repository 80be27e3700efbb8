//! Concept-drift detectors over a stream of values (for most, 1 = error,
//! 0 = correct prediction) and data-drift statistics between two samples.
//!
//! Every detector follows one contract: [`DriftDetector::update`] takes the next
//! value and returns the state after it; a detector that signalled drift starts
//! afresh on its next update (ADWIN instead shrinks its window, as in River).

mod adwin;
pub mod data;
mod ddm;
mod eddm;
mod hddm;
mod kswin;
pub mod monitor;
mod page_hinkley;

pub use adwin::Adwin;
pub use ddm::Ddm;
pub use eddm::Eddm;
pub use hddm::{HddmA, HddmW};
pub use kswin::Kswin;
pub use page_hinkley::PageHinkley;

/// What a detector concluded after an update.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum DriftState {
    #[default]
    Stable,
    Warning,
    Drift,
}

pub trait DriftDetector: Send {
    /// Feeds the next value.
    fn update(&mut self, value: f64) -> DriftState;

    /// The state after the last update.
    fn state(&self) -> DriftState;

    fn drift_detected(&self) -> bool {
        self.state() == DriftState::Drift
    }

    fn warning_detected(&self) -> bool {
        self.state() == DriftState::Warning
    }

    /// How many updates ago the new concept is estimated to have started,
    /// for detectors that estimate it (ADWIN: the part of its window it dropped).
    fn drift_point_ago(&self) -> Option<u64> {
        None
    }

    /// Forgets everything seen.
    fn reset(&mut self);

    /// A short name, such as `adwin`.
    fn name(&self) -> &'static str;
}

/// Builds a detector from a name such as `adwin`, `ddm` or `page_hinkley`,
/// with its default parameters.
pub fn detector_by_name(name: &str) -> Result<Box<dyn DriftDetector>, crate::ParamError> {
    monitor::detector_with(name, &std::collections::BTreeMap::new())
}

#[cfg(test)]
pub(crate) mod testing {
    pub use crate::stats::bernoulli_stream as bernoulli;

    /// Indices at which the detector reported drift.
    pub fn detections(detector: &mut dyn super::DriftDetector, values: &[f64]) -> Vec<usize> {
        values
            .iter()
            .enumerate()
            .filter(|(_, v)| detector.update(**v) == super::DriftState::Drift)
            .map(|(i, _)| i)
            .collect()
    }
}
