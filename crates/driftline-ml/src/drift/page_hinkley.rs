//! The Page-Hinkley test (Page, 1954): cumulative deviations from the running
//! mean, faded by `alpha`; drift when the cumulative sum rises more than
//! `threshold` above its minimum (or, for decreases, falls below its maximum).

use super::{DriftDetector, DriftState};
use crate::ParamError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Up,
    Down,
    Both,
}

#[derive(Clone, Debug)]
pub struct PageHinkley {
    min_instances: u64,
    delta: f64,
    threshold: f64,
    alpha: f64,
    direction: Direction,
    n: u64,
    mean: f64,
    sum_up: f64,
    min_up: f64,
    sum_down: f64,
    min_down: f64,
    state: DriftState,
}

impl Default for PageHinkley {
    fn default() -> Self {
        PageHinkley::new(30, 0.005, 50.0, 1.0 - 0.0001, Direction::Both)
            .unwrap_or_else(|_| unreachable!("defaults are valid"))
    }
}

impl PageHinkley {
    pub fn new(
        min_instances: u64,
        delta: f64,
        threshold: f64,
        alpha: f64,
        direction: Direction,
    ) -> Result<PageHinkley, ParamError> {
        if threshold <= 0.0 || !(0.0 < alpha && alpha <= 1.0) || delta < 0.0 {
            return Err(ParamError::new(
                "Page-Hinkley parameters",
                format!("threshold {threshold} must be positive, alpha {alpha} in (0, 1], delta {delta} not negative"),
            ));
        }
        Ok(PageHinkley {
            min_instances,
            delta,
            threshold,
            alpha,
            direction,
            n: 0,
            mean: 0.0,
            sum_up: 0.0,
            min_up: f64::INFINITY,
            sum_down: 0.0,
            min_down: f64::INFINITY,
            state: DriftState::Stable,
        })
    }
}

impl DriftDetector for PageHinkley {
    fn update(&mut self, value: f64) -> DriftState {
        if self.state == DriftState::Drift {
            self.reset();
        }
        self.n += 1;
        self.mean += (value - self.mean) / self.n as f64;
        self.sum_up = self.alpha * self.sum_up + (value - self.mean - self.delta);
        self.sum_down = self.alpha * self.sum_down + (self.mean - value - self.delta);
        self.min_up = self.min_up.min(self.sum_up);
        self.min_down = self.min_down.min(self.sum_down);
        let up = self.sum_up - self.min_up > self.threshold;
        let down = self.sum_down - self.min_down > self.threshold;
        let fired = match self.direction {
            Direction::Up => up,
            Direction::Down => down,
            Direction::Both => up || down,
        };
        self.state = if self.n >= self.min_instances && fired {
            DriftState::Drift
        } else {
            DriftState::Stable
        };
        self.state
    }

    fn state(&self) -> DriftState {
        self.state
    }

    fn reset(&mut self) {
        *self = PageHinkley::new(
            self.min_instances,
            self.delta,
            self.threshold,
            self.alpha,
            self.direction,
        )
        .unwrap_or_default();
    }

    fn name(&self) -> &'static str {
        "page_hinkley"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::testing::detections;

    #[test]
    fn a_level_shift_is_detected_in_either_direction() {
        let up: Vec<f64> = (0..2000)
            .map(|i| if i < 1000 { 0.0 } else { 1.0 })
            .collect();
        let found = detections(&mut PageHinkley::default(), &up);
        assert!(
            found.first().is_some_and(|i| (1000..1100).contains(i)),
            "{found:?}"
        );
        let down: Vec<f64> = (0..2000)
            .map(|i| if i < 1000 { 5.0 } else { 4.0 })
            .collect();
        let found = detections(&mut PageHinkley::default(), &down);
        assert!(
            found.first().is_some_and(|i| (1000..1100).contains(i)),
            "{found:?}"
        );
    }

    #[test]
    fn a_constant_stream_raises_nothing() {
        assert!(detections(&mut PageHinkley::default(), &vec![3.0; 10_000]).is_empty());
    }
}
