//! KSWIN (Raab et al., 2020): a Kolmogorov-Smirnov test inside a sliding
//! window. Once the window is full, its newest `stat_size` values are compared
//! with `stat_size` values drawn from the rest; drift when the test rejects at
//! `alpha` (and the statistic is above 0.1), after which the window keeps only
//! its newest values.

use std::collections::VecDeque;

use super::{DriftDetector, DriftState};
use crate::stats::{ks_p_value, ks_statistic_sorted, SplitMix64};
use crate::ParamError;

#[derive(Clone, Debug)]
pub struct Kswin {
    alpha: f64,
    window_size: usize,
    stat_size: usize,
    seed: u64,
    window: VecDeque<f64>,
    rng: SplitMix64,
    state: DriftState,
    last_p_value: f64,
}

impl Default for Kswin {
    fn default() -> Self {
        Kswin::new(0.005, 100, 30, 42).unwrap_or_else(|_| unreachable!("defaults are valid"))
    }
}

impl Kswin {
    pub fn new(
        alpha: f64,
        window_size: usize,
        stat_size: usize,
        seed: u64,
    ) -> Result<Kswin, ParamError> {
        if !(0.0 < alpha && alpha < 1.0) || stat_size == 0 || window_size < 2 * stat_size {
            return Err(ParamError::new(
                "KSWIN parameters",
                format!("alpha {alpha} must be in (0, 1) and window_size {window_size} at least twice stat_size {stat_size}"),
            ));
        }
        Ok(Kswin {
            alpha,
            window_size,
            stat_size,
            seed,
            window: VecDeque::with_capacity(window_size + 1),
            rng: SplitMix64::new(seed),
            state: DriftState::Stable,
            last_p_value: 1.0,
        })
    }

    pub fn p_value(&self) -> f64 {
        self.last_p_value
    }
}

impl DriftDetector for Kswin {
    fn update(&mut self, value: f64) -> DriftState {
        self.state = DriftState::Stable;
        self.window.push_back(value);
        if self.window.len() > self.window_size {
            self.window.pop_front();
        }
        if self.window.len() < self.window_size {
            return self.state;
        }
        let older = self.window_size - self.stat_size;
        let mut recent: Vec<f64> = self.window.iter().skip(older).copied().collect();
        // `stat_size` distinct older positions (a partial Fisher-Yates shuffle).
        let mut positions: Vec<usize> = (0..older).collect();
        for i in 0..self.stat_size {
            let j = i + self.rng.below(older - i);
            positions.swap(i, j);
        }
        let mut sample: Vec<f64> = positions[..self.stat_size]
            .iter()
            .map(|&i| self.window[i])
            .collect();
        recent.sort_by(f64::total_cmp);
        sample.sort_by(f64::total_cmp);
        let statistic = ks_statistic_sorted(&sample, &recent);
        self.last_p_value = ks_p_value(statistic, self.stat_size, self.stat_size);
        if self.last_p_value <= self.alpha && statistic > 0.1 {
            self.state = DriftState::Drift;
            let keep: Vec<f64> = self.window.iter().skip(older).copied().collect();
            self.window = keep.into();
        }
        self.state
    }

    fn state(&self) -> DriftState {
        self.state
    }

    fn drift_point_ago(&self) -> Option<u64> {
        (self.state == DriftState::Drift).then_some(self.stat_size as u64)
    }

    fn reset(&mut self) {
        *self =
            Kswin::new(self.alpha, self.window_size, self.stat_size, self.seed).unwrap_or_default();
    }

    fn name(&self) -> &'static str {
        "kswin"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::testing::detections;

    #[test]
    fn a_shift_in_distribution_is_found() {
        let mut rng = SplitMix64::new(1);
        let stream: Vec<f64> = (0..3000)
            .map(|i| rng.next_f64() + if i < 1500 { 0.0 } else { 1.0 })
            .collect();
        let found = detections(&mut Kswin::default(), &stream);
        assert!(found.iter().any(|i| (1500..1560).contains(i)), "{found:?}");
    }

    #[test]
    fn a_stationary_stream_fires_about_as_often_as_alpha_says() {
        // KSWIN tests at every update once its window is full, so at alpha =
        // 0.005 a stationary stream still fires now and then.
        let mut rng = SplitMix64::new(2);
        let stream: Vec<f64> = (0..20_000).map(|_| rng.next_f64()).collect();
        let false_alarms = detections(&mut Kswin::default(), &stream).len();
        assert!(false_alarms < 20_000 / 100, "{false_alarms}");
    }
}
