//! HDDM (Frías-Blanco et al., 2015): drift tests with Hoeffding's bound on
//! moving averages (HDDM-A) and McDiarmid's bound on exponentially weighted
//! averages (HDDM-W). Both test for an *increase* of the mean (the error rate),
//! comparing the stream since a cut point against the part before it, where
//! the cut point is the moment the bounded mean was lowest.

use super::{DriftDetector, DriftState};
use crate::ParamError;

fn check_confidences(what: &'static str, drift: f64, warning: f64) -> Result<(), ParamError> {
    if 0.0 < drift && drift < warning && warning < 1.0 {
        Ok(())
    } else {
        Err(ParamError::new(
            what,
            format!("need 0 < drift confidence ({drift}) < warning confidence ({warning}) < 1"),
        ))
    }
}

/// HDDM-A: averages with Hoeffding's bound.
#[derive(Clone, Debug)]
pub struct HddmA {
    drift_confidence: f64,
    warning_confidence: f64,
    n: f64,
    total: f64,
    n_cut: f64,
    total_cut: f64,
    state: DriftState,
    drift_point_ago: Option<u64>,
}

impl Default for HddmA {
    fn default() -> Self {
        HddmA::new(0.001, 0.005).unwrap_or_else(|_| unreachable!("defaults are valid"))
    }
}

impl HddmA {
    pub fn new(drift_confidence: f64, warning_confidence: f64) -> Result<HddmA, ParamError> {
        check_confidences("HDDM-A confidences", drift_confidence, warning_confidence)?;
        Ok(HddmA {
            drift_confidence,
            warning_confidence,
            n: 0.0,
            total: 0.0,
            n_cut: 0.0,
            total_cut: 0.0,
            state: DriftState::Stable,
            drift_point_ago: None,
        })
    }

    fn bound(n: f64, confidence: f64) -> f64 {
        (1.0 / (2.0 * n) * (1.0 / confidence).ln()).sqrt()
    }

    /// Whether the mean since the cut exceeds the mean before it, at `confidence`.
    fn mean_increased(&self, confidence: f64) -> bool {
        if self.n_cut <= 0.0 || self.n <= self.n_cut {
            return false;
        }
        let m = (self.n - self.n_cut) / (self.n_cut * self.n);
        let epsilon = (m / 2.0 * (1.0 / confidence).ln()).sqrt();
        self.total / self.n - self.total_cut / self.n_cut >= epsilon
    }
}

impl DriftDetector for HddmA {
    fn update(&mut self, value: f64) -> DriftState {
        if self.state == DriftState::Drift {
            self.reset();
        }
        self.n += 1.0;
        self.total += value;
        let bounded_mean = self.total / self.n + Self::bound(self.n, self.drift_confidence);
        let cut_bounded_mean = if self.n_cut > 0.0 {
            self.total_cut / self.n_cut + Self::bound(self.n_cut, self.drift_confidence)
        } else {
            f64::INFINITY
        };
        if bounded_mean <= cut_bounded_mean {
            self.n_cut = self.n;
            self.total_cut = self.total;
        }
        self.state = if self.mean_increased(self.drift_confidence) {
            self.drift_point_ago = Some((self.n - self.n_cut) as u64);
            DriftState::Drift
        } else if self.mean_increased(self.warning_confidence) {
            DriftState::Warning
        } else {
            DriftState::Stable
        };
        self.state
    }

    fn state(&self) -> DriftState {
        self.state
    }

    fn drift_point_ago(&self) -> Option<u64> {
        self.drift_point_ago
            .filter(|_| self.state == DriftState::Drift)
    }

    fn reset(&mut self) {
        *self = HddmA::new(self.drift_confidence, self.warning_confidence).unwrap_or_default();
    }

    fn name(&self) -> &'static str {
        "hddm_a"
    }
}

/// An exponentially weighted mean with the sum of its squared weights, which
/// McDiarmid's bound needs.
#[derive(Clone, Copy, Debug, Default)]
struct Ewma {
    mean: f64,
    squared_weights: f64,
    started: bool,
}

impl Ewma {
    fn update(&mut self, value: f64, lambda: f64) {
        if self.started {
            self.mean = lambda * value + (1.0 - lambda) * self.mean;
            self.squared_weights =
                lambda * lambda + (1.0 - lambda) * (1.0 - lambda) * self.squared_weights;
        } else {
            self.mean = value;
            self.squared_weights = 1.0;
            self.started = true;
        }
    }

    fn bound(&self, confidence: f64) -> f64 {
        (self.squared_weights / 2.0 * (1.0 / confidence).ln()).sqrt()
    }
}

/// HDDM-W: exponentially weighted averages with McDiarmid's bound.
#[derive(Clone, Debug)]
pub struct HddmW {
    drift_confidence: f64,
    warning_confidence: f64,
    lambda: f64,
    total: Ewma,
    at_cut: Ewma,
    since_cut: Ewma,
    updates_since_cut: u64,
    state: DriftState,
    drift_point_ago: Option<u64>,
}

impl Default for HddmW {
    fn default() -> Self {
        HddmW::new(0.001, 0.005, 0.05).unwrap_or_else(|_| unreachable!("defaults are valid"))
    }
}

impl HddmW {
    pub fn new(
        drift_confidence: f64,
        warning_confidence: f64,
        lambda: f64,
    ) -> Result<HddmW, ParamError> {
        check_confidences("HDDM-W confidences", drift_confidence, warning_confidence)?;
        if !(0.0 < lambda && lambda <= 1.0) {
            return Err(ParamError::new(
                "HDDM-W lambda",
                format!("{lambda} is not in (0, 1]"),
            ));
        }
        Ok(HddmW {
            drift_confidence,
            warning_confidence,
            lambda,
            total: Ewma::default(),
            at_cut: Ewma::default(),
            since_cut: Ewma::default(),
            updates_since_cut: 0,
            state: DriftState::Stable,
            drift_point_ago: None,
        })
    }

    fn mean_increased(&self, confidence: f64) -> bool {
        if !self.at_cut.started || !self.since_cut.started {
            return false;
        }
        let combined = Ewma {
            squared_weights: self.at_cut.squared_weights + self.since_cut.squared_weights,
            ..self.since_cut
        };
        self.since_cut.mean - self.at_cut.mean > combined.bound(confidence)
    }
}

impl DriftDetector for HddmW {
    fn update(&mut self, value: f64) -> DriftState {
        if self.state == DriftState::Drift {
            self.reset();
        }
        self.total.update(value, self.lambda);
        let bounded = self.total.mean + self.total.bound(self.drift_confidence);
        let cut_bounded = if self.at_cut.started {
            self.at_cut.mean + self.at_cut.bound(self.drift_confidence)
        } else {
            f64::INFINITY
        };
        if bounded <= cut_bounded {
            self.at_cut = self.total;
            self.since_cut = Ewma::default();
            self.updates_since_cut = 0;
        } else {
            self.since_cut.update(value, self.lambda);
            self.updates_since_cut += 1;
        }
        self.state = if self.mean_increased(self.drift_confidence) {
            self.drift_point_ago = Some(self.updates_since_cut);
            DriftState::Drift
        } else if self.mean_increased(self.warning_confidence) {
            DriftState::Warning
        } else {
            DriftState::Stable
        };
        self.state
    }

    fn state(&self) -> DriftState {
        self.state
    }

    fn drift_point_ago(&self) -> Option<u64> {
        self.drift_point_ago
            .filter(|_| self.state == DriftState::Drift)
    }

    fn reset(&mut self) {
        *self = HddmW::new(self.drift_confidence, self.warning_confidence, self.lambda)
            .unwrap_or_default();
    }

    fn name(&self) -> &'static str {
        "hddm_w"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::testing::{bernoulli, detections};

    #[test]
    fn hddm_a_finds_a_rise_in_the_error_rate() {
        let stream = bernoulli(20_000, 10_000, 0.1, 0.3, 5);
        let found = detections(&mut HddmA::default(), &stream);
        assert!(!found.is_empty());
        assert!(found[0] >= 10_000 && found[0] < 11_000, "{found:?}");
    }

    #[test]
    fn hddm_a_stays_quiet_on_a_steady_rate() {
        let stream = bernoulli(20_000, 20_000, 0.2, 0.2, 9);
        assert!(detections(&mut HddmA::default(), &stream).len() <= 1);
    }

    #[test]
    fn hddm_w_finds_a_rise_in_the_error_rate() {
        let stream = bernoulli(20_000, 10_000, 0.1, 0.6, 5);
        let found = detections(&mut HddmW::default(), &stream);
        assert!(
            found.iter().any(|i| (10_000..10_300).contains(i)),
            "{found:?}"
        );
    }
}
