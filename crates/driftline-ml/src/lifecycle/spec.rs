//! What a model declares about its lifecycle, as the plain parts need it.

use crate::drift::monitor::{ConceptSpec, DataTest};

use super::{Gate, PolicyConfig};

/// How a challenger that passed the gate reaches the traffic.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Promotion {
    /// It serves at once.
    Direct,
    /// It scores every request beside the champion (logged, not answered)
    /// until `trial_labels` of them are labelled, then serves if it did at
    /// least as well on those same requests.
    Shadow,
    /// It answers this share of the requests until `trial_labels` of its own
    /// are labelled, then serves if its accuracy is at least the champion's
    /// on the rest.
    Canary(f64),
}

impl Promotion {
    /// The share of requests a canary answers; `None` for the other modes.
    pub fn canary_share(self) -> Option<f64> {
        match self {
            Promotion::Canary(share) => Some(share),
            _ => None,
        }
    }
}

/// Whether request `number` goes to a canary answering `share` of them: a
/// fixed, well-mixed share of the request numbers, so that serving and a
/// replay route the same requests.
pub fn canary_answers(number: u64, share: f64) -> bool {
    let draw = (number.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64 / (1u64 << 53) as f64;
    draw < share
}

/// The data-drift monitor: recent traffic against the champion's training
/// reference, every `every` predictions once `window / 2` are at hand, and
/// at most once per `rest_ms` (under heavy traffic the statistics must not
/// compete with serving).
#[derive(Clone, Debug, PartialEq)]
pub struct DataSpec {
    pub test: DataTest,
    pub threshold: f64,
    pub window: usize,
    pub every: usize,
    pub rest_ms: i64,
}

/// Everything the lifecycle's decisions depend on.
#[derive(Clone, Debug, PartialEq)]
pub struct LifecycleSpec {
    pub policy: PolicyConfig,
    pub gate: Gate,
    pub concept: ConceptSpec,
    pub data: DataSpec,
    /// Labels over which the live accuracy is measured.
    pub metric_window: usize,
    /// Labels after a promotion over which the predecessor is still scored,
    /// and how much better it must do to come back.
    pub rollback_after: usize,
    pub rollback_margin: f64,
    pub promotion: Promotion,
    /// Labels a shadow or canary trial runs for.
    pub trial_labels: usize,
    /// Share of the newest examples of a retrain held out to compare
    /// challenger and champion.
    pub holdout_fraction: f64,
}
