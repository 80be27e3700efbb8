//! DDM, the drift detection method (Gama et al., 2004), on a stream of errors
//! (1 = wrong, 0 = right). With `p` the error rate so far and
//! `s = sqrt(p(1-p)/n)`, it remembers the lowest `p + s`; warning when
//! `p + s > p_min + 2 s_min`, drift when `p + s > p_min + 3 s_min`.

use super::{DriftDetector, DriftState};
use crate::ParamError;

#[derive(Clone, Debug)]
pub struct Ddm {
    warm_start: u64,
    warning_threshold: f64,
    drift_threshold: f64,
    n: u64,
    errors: f64,
    p_min: f64,
    s_min: f64,
    ps_min: f64,
    state: DriftState,
    warning_since: Option<u64>,
    drift_point_ago: Option<u64>,
}

impl Default for Ddm {
    fn default() -> Self {
        Ddm::new(30, 2.0, 3.0).unwrap_or_else(|_| unreachable!("defaults are valid"))
    }
}

impl Ddm {
    pub fn new(
        warm_start: u64,
        warning_threshold: f64,
        drift_threshold: f64,
    ) -> Result<Ddm, ParamError> {
        if !(warning_threshold > 0.0 && drift_threshold > warning_threshold) {
            return Err(ParamError::new(
                "DDM thresholds",
                format!("warning {warning_threshold} must be positive and below drift {drift_threshold}"),
            ));
        }
        Ok(Ddm {
            warm_start,
            warning_threshold,
            drift_threshold,
            n: 0,
            errors: 0.0,
            p_min: f64::INFINITY,
            s_min: f64::INFINITY,
            ps_min: f64::INFINITY,
            state: DriftState::Stable,
            warning_since: None,
            drift_point_ago: None,
        })
    }
}

impl DriftDetector for Ddm {
    fn update(&mut self, value: f64) -> DriftState {
        if self.state == DriftState::Drift {
            self.reset();
        }
        self.n += 1;
        self.errors += value;
        let p = self.errors / self.n as f64;
        let s = (p * (1.0 - p) / self.n as f64).sqrt();
        self.state = DriftState::Stable;
        if self.n > self.warm_start {
            if p + s <= self.ps_min {
                self.p_min = p;
                self.s_min = s;
                self.ps_min = p + s;
            }
            if p + s > self.p_min + self.drift_threshold * self.s_min {
                self.state = DriftState::Drift;
            } else if p + s > self.p_min + self.warning_threshold * self.s_min {
                self.state = DriftState::Warning;
            }
        }
        match self.state {
            DriftState::Warning => {
                self.warning_since.get_or_insert(self.n);
            }
            DriftState::Drift => {
                // The new concept is taken to start where the warning began.
                self.drift_point_ago = Some(self.n - self.warning_since.unwrap_or(self.n));
            }
            DriftState::Stable => self.warning_since = None,
        }
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
        *self = Ddm::new(
            self.warm_start,
            self.warning_threshold,
            self.drift_threshold,
        )
        .unwrap_or_default();
    }

    fn name(&self) -> &'static str {
        "ddm"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::testing::{bernoulli, detections};

    #[test]
    fn a_rising_error_rate_is_detected_after_the_change_with_a_warning_first() {
        let stream = bernoulli(4000, 2000, 0.2, 0.5, 11);
        let mut ddm = Ddm::default();
        let mut warned_at = None;
        let mut drifts = Vec::new();
        for (i, v) in stream.iter().enumerate() {
            match ddm.update(*v) {
                DriftState::Warning => {
                    warned_at.get_or_insert(i);
                }
                DriftState::Drift => drifts.push((i, ddm.drift_point_ago())),
                DriftState::Stable => warned_at = None,
            }
        }
        let (at, ago) = drifts
            .iter()
            .copied()
            .find(|(i, _)| (2000..2600).contains(i))
            .unwrap_or_else(|| panic!("no drift soon after 2000: {drifts:?}"));
        // DDM's error rate counts from its last reset, so it reacts in hundreds of
        // steps, and its short warm start allows an early false alarm now and then.
        assert!(
            drifts.iter().filter(|(i, _)| *i < 2000).count() <= 1,
            "{drifts:?}"
        );
        // the drift point is where the warning zone began, at or after the change
        assert!(
            ago.is_some_and(|a| at as u64 - a >= 1990),
            "{ago:?} at {at}"
        );
    }

    #[test]
    fn a_steady_error_rate_raises_no_drift() {
        let stream = bernoulli(20_000, 20_000, 0.2, 0.2, 3);
        assert!(detections(&mut Ddm::default(), &stream).is_empty());
    }
}
