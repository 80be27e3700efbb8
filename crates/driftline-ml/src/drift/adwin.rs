//! ADWIN, adaptive windowing (Bifet & Gavaldà, 2007).
//!
//! The window is kept as an exponential histogram: row `r` holds up to
//! `max_buckets + 1` buckets of `2^r` values each (their sum and variance);
//! when a row overflows, its two oldest buckets merge into one bucket of the
//! next row. Every `clock` updates, once the window is longer than the grace
//! period, each boundary between buckets splits the window into an older part
//! W0 and a newer part W1; if their means differ by more than the cut bound
//! epsilon, the oldest bucket is dropped and the check repeats.
//!
//! The arithmetic follows River's implementation step by step (the same
//! order of floating-point operations), and like River's the detector starts a
//! new window on the update after a detection, so the same stream gives the
//! same detection indices as River's ADWIN with the same `delta` and `clock`.

use serde::{Deserialize, Serialize};

use super::{DriftDetector, DriftState};
use crate::ParamError;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Row {
    /// Oldest first; at most `max_buckets + 1` entries.
    totals: Vec<f64>,
    variances: Vec<f64>,
}

impl Row {
    fn with_capacity(capacity: usize) -> Row {
        Row {
            totals: Vec::with_capacity(capacity),
            variances: Vec::with_capacity(capacity),
        }
    }

    fn len(&self) -> usize {
        self.totals.len()
    }

    fn push(&mut self, total: f64, variance: f64) {
        self.totals.push(total);
        self.variances.push(variance);
    }

    fn drop_oldest(&mut self, count: usize) {
        self.totals.drain(..count);
        self.variances.drain(..count);
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Adwin {
    delta: f64,
    clock: u32,
    max_buckets: usize,
    min_window_length: f64,
    grace_period: f64,
    /// rows[r] holds buckets of 2^r values.
    rows: Vec<Row>,
    total: f64,
    /// Sum of squared deviations from the mean of the window.
    variance: f64,
    width: f64,
    tick: u32,
    state: DriftState,
    dropped_last: u64,
}

impl Default for Adwin {
    fn default() -> Self {
        // River's defaults.
        Adwin::new(0.002, 32, 5, 5, 10).unwrap_or_else(|_| unreachable!("defaults are valid"))
    }
}

impl Adwin {
    pub fn new(
        delta: f64,
        clock: u32,
        max_buckets: usize,
        min_window_length: u32,
        grace_period: u32,
    ) -> Result<Adwin, ParamError> {
        if !(delta > 0.0 && delta < 1.0) {
            return Err(ParamError::new(
                "ADWIN delta",
                format!("{delta} is not in (0, 1)"),
            ));
        }
        if clock == 0 || max_buckets < 2 {
            return Err(ParamError::new(
                "ADWIN clock and max_buckets",
                format!(
                    "clock {clock} must be at least 1 and max_buckets {max_buckets} at least 2"
                ),
            ));
        }
        Ok(Adwin {
            delta,
            clock,
            max_buckets,
            min_window_length: f64::from(min_window_length),
            grace_period: f64::from(grace_period),
            rows: vec![Row::with_capacity(max_buckets + 1)],
            total: 0.0,
            variance: 0.0,
            width: 0.0,
            tick: 0,
            state: DriftState::Stable,
            dropped_last: 0,
        })
    }

    /// Values in the current window.
    pub fn width(&self) -> f64 {
        self.width
    }

    /// Mean of the current window.
    pub fn estimation(&self) -> f64 {
        if self.width > 0.0 {
            self.total / self.width
        } else {
            0.0
        }
    }

    fn insert(&mut self, value: f64) {
        self.rows[0].push(value, 0.0);
        self.width += 1.0;
        let mut added_variance = 0.0;
        if self.width > 1.0 {
            let deviation = value - self.total / (self.width - 1.0);
            added_variance = (self.width - 1.0) * deviation * deviation / self.width;
        }
        self.variance += added_variance;
        self.total += value;
        self.merge_full_rows();
    }

    fn merge_full_rows(&mut self) {
        let mut r = 0;
        while self.rows[r].len() == self.max_buckets + 1 {
            let size = (1u64 << r) as f64;
            let (t0, t1) = (self.rows[r].totals[0], self.rows[r].totals[1]);
            let (v0, v1) = (self.rows[r].variances[0], self.rows[r].variances[1]);
            let (mean0, mean1) = (t0 / size, t1 / size);
            let merged_variance = v0 + v1 + size * 0.5 * (mean0 - mean1) * (mean0 - mean1);
            if r + 1 == self.rows.len() {
                self.rows.push(Row::with_capacity(self.max_buckets + 1));
            }
            self.rows[r + 1].push(t0 + t1, merged_variance);
            self.rows[r].drop_oldest(2);
            if self.rows[r + 1].len() <= self.max_buckets {
                break;
            }
            r += 1;
        }
    }

    /// Drops the oldest bucket; returns how many values it held.
    fn drop_oldest_bucket(&mut self) -> u64 {
        let last = self.rows.len() - 1;
        let size = 1u64 << last;
        let n = size as f64;
        let (total, variance) = (self.rows[last].totals[0], self.rows[last].variances[0]);
        let bucket_mean = total / n;
        self.width -= n;
        self.total -= total;
        let window_mean = self.total / self.width;
        self.variance -= variance
            + n * self.width * (bucket_mean - window_mean) * (bucket_mean - window_mean)
                / (n + self.width);
        self.rows[last].drop_oldest(1);
        if self.rows[last].len() == 0 {
            self.rows.pop();
        }
        size
    }

    /// The cut bound for sub-windows of `n0` and `n1` values. `delta_prime`
    /// and `variance_term` depend only on the whole window, so a check pass
    /// computes them once (the same values River computes at every boundary).
    fn cut_found(
        &self,
        n0: f64,
        n1: f64,
        mean_difference: f64,
        delta_prime: f64,
        variance_term: f64,
    ) -> bool {
        let harmonic =
            1.0 / (n0 - self.min_window_length + 1.0) + 1.0 / (n1 - self.min_window_length + 1.0);
        let epsilon = (2.0 * harmonic * variance_term * delta_prime).sqrt()
            + 2.0 / 3.0 * delta_prime * harmonic;
        mean_difference.abs() > epsilon
    }

    fn check(&mut self) -> bool {
        let mut detected = false;
        self.dropped_last = 0;
        let mut shrink = true;
        while shrink {
            shrink = false;
            let (mut n0, mut n1, mut u0, mut u1) = (0.0, self.width, 0.0, self.total);
            let delta_prime = (2.0 * self.width.ln() / self.delta).ln();
            let variance_term = self.variance / self.width;
            'rows: for r in (0..self.rows.len()).rev() {
                let size = (1u64 << r) as f64;
                let count = self.rows[r].len();
                for k in 0..count {
                    n0 += size;
                    n1 -= size;
                    let total = self.rows[r].totals[k];
                    u0 += total;
                    u1 -= total;
                    if r == 0 && k == count - 1 {
                        break 'rows;
                    }
                    let mean_difference = u0 / n0 - u1 / n1;
                    if n1 >= self.min_window_length
                        && n0 >= self.min_window_length
                        && self.cut_found(n0, n1, mean_difference, delta_prime, variance_term)
                    {
                        shrink = true;
                        detected = true;
                        if self.width > 0.0 {
                            self.dropped_last += self.drop_oldest_bucket();
                            break 'rows;
                        }
                    }
                }
            }
        }
        detected
    }
}

impl DriftDetector for Adwin {
    fn update(&mut self, value: f64) -> DriftState {
        // As River does: after a detection the next update starts a new window.
        if self.state == DriftState::Drift {
            self.reset();
        }
        self.insert(value);
        self.tick = self.tick.wrapping_add(1);
        let detected =
            self.tick.is_multiple_of(self.clock) && self.width > self.grace_period && self.check();
        self.state = if detected {
            DriftState::Drift
        } else {
            DriftState::Stable
        };
        self.state
    }

    fn state(&self) -> DriftState {
        self.state
    }

    /// ADWIN keeps the newest part of its window: the new concept began where
    /// the retained window begins.
    fn drift_point_ago(&self) -> Option<u64> {
        (self.state == DriftState::Drift).then_some(self.width as u64)
    }

    fn reset(&mut self) {
        *self = Adwin::new(
            self.delta,
            self.clock,
            self.max_buckets,
            self.min_window_length as u32,
            self.grace_period as u32,
        )
        .unwrap_or_else(|_| Adwin::default());
    }

    fn name(&self) -> &'static str {
        "adwin"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::testing::{bernoulli, detections};

    #[test]
    fn a_constant_stream_never_drifts() {
        let mut adwin = Adwin::default();
        assert!(detections(&mut adwin, &vec![1.0; 5000]).is_empty());
        assert_eq!(adwin.width(), 5000.0);
        assert_eq!(adwin.estimation(), 1.0);
    }

    #[test]
    fn the_window_variance_is_the_sum_of_squared_deviations() {
        let mut adwin = Adwin::default();
        for v in [1.0, 2.0, 3.0, 4.0, 5.0] {
            adwin.update(v);
        }
        assert!((adwin.variance - 10.0).abs() < 1e-12);
    }

    #[test]
    fn a_jump_in_the_error_rate_is_found_soon_after_it_happens() {
        let stream = bernoulli(20_000, 10_000, 0.1, 0.5, 7);
        let mut adwin = Adwin::default();
        let first = stream
            .iter()
            .position(|v| adwin.update(*v) == DriftState::Drift)
            .expect("drift found");
        assert!((10_000..10_500).contains(&first), "{first}");
        // the window dropped the old concept: it starts near the change
        assert!(
            adwin.width() < (first - 9_000) as f64,
            "width {}",
            adwin.width()
        );
        assert!(adwin.drift_point_ago().is_some());
        let later = detections(&mut adwin, &stream[first + 1..]);
        assert!(later.is_empty(), "{later:?}");
    }

    #[test]
    fn parameters_are_checked() {
        assert!(Adwin::new(0.0, 32, 5, 5, 10).is_err());
        assert!(Adwin::new(0.002, 0, 5, 5, 10).is_err());
    }
}
