//! EDDM, the early drift detection method (Baena-García et al., 2006): it
//! watches the distance between consecutive errors. With `m` the mean distance
//! and `s` its standard deviation, it remembers the largest `m + 2s`; a ratio
//! `(m + 2s) / max` below `alpha` is a warning, below `beta` a drift.

use super::{DriftDetector, DriftState};
use crate::ParamError;

#[derive(Clone, Debug)]
pub struct Eddm {
    alpha: f64,
    beta: f64,
    warm_start: u64,
    n: u64,
    errors: u64,
    last_error_at: u64,
    mean: f64,
    m2: f64,
    m2s_max: f64,
    state: DriftState,
}

impl Default for Eddm {
    fn default() -> Self {
        Eddm::new(0.95, 0.9, 30).unwrap_or_else(|_| unreachable!("defaults are valid"))
    }
}

impl Eddm {
    pub fn new(alpha: f64, beta: f64, warm_start: u64) -> Result<Eddm, ParamError> {
        if !(0.0 < beta && beta < alpha && alpha < 1.0) {
            return Err(ParamError::new(
                "EDDM alpha and beta",
                format!("need 0 < beta ({beta}) < alpha ({alpha}) < 1"),
            ));
        }
        Ok(Eddm {
            alpha,
            beta,
            warm_start,
            n: 0,
            errors: 0,
            last_error_at: 0,
            mean: 0.0,
            m2: 0.0,
            m2s_max: 0.0,
            state: DriftState::Stable,
        })
    }
}

impl DriftDetector for Eddm {
    fn update(&mut self, value: f64) -> DriftState {
        if self.state == DriftState::Drift {
            self.reset();
        }
        self.n += 1;
        self.state = DriftState::Stable;
        if value < 0.5 {
            return self.state;
        }
        let first_error = self.last_error_at == 0;
        let distance = (self.n - self.last_error_at) as f64;
        self.last_error_at = self.n;
        if first_error {
            // No earlier error: there is no distance to measure yet.
            return self.state;
        }
        self.errors += 1;
        let delta = distance - self.mean;
        self.mean += delta / self.errors as f64;
        self.m2 += delta * (distance - self.mean);
        let std = (self.m2 / self.errors as f64).sqrt();
        let m2s = self.mean + 2.0 * std;
        if m2s > self.m2s_max {
            self.m2s_max = m2s;
        }
        if self.errors > self.warm_start {
            let ratio = m2s / self.m2s_max;
            if ratio < self.beta {
                self.state = DriftState::Drift;
            } else if ratio < self.alpha {
                self.state = DriftState::Warning;
            }
        }
        self.state
    }

    fn state(&self) -> DriftState {
        self.state
    }

    fn reset(&mut self) {
        *self = Eddm::new(self.alpha, self.beta, self.warm_start).unwrap_or_default();
    }

    fn name(&self) -> &'static str {
        "eddm"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::testing::detections;

    #[test]
    fn errors_coming_closer_together_are_detected() {
        // an error every 20 steps, then every 3 steps from 3000 on
        let stream: Vec<f64> = (0..5000)
            .map(|i| {
                if i < 3000 {
                    f64::from(u8::from(i % 20 == 0))
                } else {
                    f64::from(u8::from(i % 3 == 0))
                }
            })
            .collect();
        let found = detections(&mut Eddm::default(), &stream);
        assert!(!found.is_empty());
        // EDDM needs the mean distance to fall well below its peak: a few hundred steps
        assert!(found[0] >= 3000 && found[0] < 3600, "{found:?}");
    }

    #[test]
    fn evenly_spaced_errors_raise_nothing() {
        let stream: Vec<f64> = (0..5000)
            .map(|i| f64::from(u8::from(i % 10 == 0)))
            .collect();
        assert!(detections(&mut Eddm::default(), &stream).is_empty());
    }
}
