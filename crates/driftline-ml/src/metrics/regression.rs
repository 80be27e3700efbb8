use super::{Metric, Observation};

fn values(observation: &Observation) -> Option<(f64, f64)> {
    match observation {
        Observation::Value { y_true, y_pred } => Some((*y_true, *y_pred)),
        Observation::Class { .. } => None,
    }
}

/// Running sums that regression metrics need, all revertible.
#[derive(Clone, Debug, Default)]
struct Sums {
    n: f64,
    abs_error: f64,
    squared_error: f64,
    y: f64,
    y_squared: f64,
}

impl Sums {
    fn add(&mut self, observation: &Observation, sign: f64) {
        if let Some((y, p)) = values(observation) {
            self.n += sign;
            self.abs_error += sign * (y - p).abs();
            self.squared_error += sign * (y - p) * (y - p);
            self.y += sign * y;
            self.y_squared += sign * y * y;
        }
    }
}

macro_rules! regression_metric {
    ($name:ident, $label:literal, $bigger:expr, |$s:ident| $get:expr) => {
        #[derive(Clone, Debug, Default)]
        pub struct $name {
            sums: Sums,
        }

        impl Metric for $name {
            fn update(&mut self, observation: &Observation) {
                self.sums.add(observation, 1.0);
            }

            fn revert(&mut self, observation: &Observation) {
                self.sums.add(observation, -1.0);
            }

            fn get(&self) -> f64 {
                let $s = &self.sums;
                if $s.n <= 0.0 {
                    return 0.0;
                }
                $get
            }

            fn name(&self) -> &'static str {
                $label
            }

            fn bigger_is_better(&self) -> bool {
                $bigger
            }
        }
    };
}

regression_metric!(Mae, "mae", false, |s| s.abs_error / s.n);
regression_metric!(Rmse, "rmse", false, |s| (s.squared_error / s.n)
    .max(0.0)
    .sqrt());
regression_metric!(R2, "r2", true, |s| {
    let total = s.y_squared - s.y * s.y / s.n;
    if total <= 0.0 {
        0.0
    } else {
        1.0 - s.squared_error / total
    }
});

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(metric: &mut dyn Metric, pairs: &[(f64, f64)]) -> f64 {
        for (y_true, y_pred) in pairs {
            metric.update(&Observation::Value {
                y_true: *y_true,
                y_pred: *y_pred,
            });
        }
        metric.get()
    }

    #[test]
    fn regression_metrics_match_hand_values() {
        let pairs = [(3.0, 2.5), (-0.5, 0.0), (2.0, 2.0), (7.0, 8.0)];
        assert!((feed(&mut Mae::default(), &pairs) - 0.5).abs() < 1e-12);
        assert!((feed(&mut Rmse::default(), &pairs) - 0.375f64.sqrt()).abs() < 1e-12);
        // sklearn r2_score([3, -0.5, 2, 7], [2.5, 0.0, 2, 8]) = 0.9486081370449679
        assert!((feed(&mut R2::default(), &pairs) - 0.948_608_137_044_967_9).abs() < 1e-12);
    }

    #[test]
    fn revert_undoes_update() {
        let mut metric = Rmse::default();
        feed(&mut metric, &[(1.0, 2.0), (3.0, 3.0)]);
        let before = metric.get();
        let extra = Observation::Value {
            y_true: 10.0,
            y_pred: 0.0,
        };
        metric.update(&extra);
        metric.revert(&extra);
        assert!((metric.get() - before).abs() < 1e-12);
    }
}
