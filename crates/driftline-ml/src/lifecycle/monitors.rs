//! The monitors of a served model: its live accuracy, and whether the
//! traffic still looks like what it was trained on (data drift). The
//! concept-drift detector is any `DriftDetector`; the lifecycle feeds it.

use std::collections::{BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::learn::{argmax, Classifier};

use super::DataSpec;

/// Accuracy over the last `window` joined labels.
#[derive(Clone, Debug)]
pub struct LiveAccuracy {
    window: usize,
    outcomes: VecDeque<bool>,
    correct: usize,
}

impl LiveAccuracy {
    pub fn new(window: usize) -> LiveAccuracy {
        LiveAccuracy {
            window: window.max(1),
            outcomes: VecDeque::new(),
            correct: 0,
        }
    }

    pub fn record(&mut self, correct: bool) {
        self.outcomes.push_back(correct);
        self.correct += usize::from(correct);
        if self.outcomes.len() > self.window {
            let dropped = self.outcomes.pop_front().unwrap_or(false);
            self.correct -= usize::from(dropped);
        }
    }

    /// Over what is there so far; `None` before the first label.
    pub fn accuracy(&self) -> Option<f64> {
        (!self.outcomes.is_empty()).then(|| self.correct as f64 / self.outcomes.len() as f64)
    }

    /// Only once the window is full.
    pub fn full_accuracy(&self) -> Option<f64> {
        (self.outcomes.len() >= self.window).then(|| self.correct as f64 / self.window as f64)
    }

    pub fn error_rate(&self) -> f64 {
        (self.outcomes.len() - self.correct) as f64 / self.outcomes.len().max(1) as f64
    }
}

/// A sample of a model's training inputs, column by column, and of its
/// scores on them: the reference the data-drift monitor compares traffic with.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    pub columns: Vec<Vec<f64>>,
    pub scores: Vec<f64>,
}

/// Rows kept in a reference sample.
const REFERENCE_ROWS: usize = 2000;

impl Reference {
    pub fn of(model: &dyn Classifier, xs: &[Vec<f64>]) -> Reference {
        let step = xs.len().div_ceil(REFERENCE_ROWS).max(1);
        let rows: Vec<&Vec<f64>> = xs.iter().step_by(step).collect();
        let width = rows.first().map_or(0, |r| r.len());
        // Sorted once here: the monitor's statistics sort their reference.
        let sorted = |mut column: Vec<f64>| {
            column.sort_by(f64::total_cmp);
            column
        };
        let mut scores: Vec<f64> = rows
            .iter()
            .map(|r| score(&model.predict_proba_one(r)))
            .collect();
        scores.sort_by(f64::total_cmp);
        Reference {
            columns: (0..width)
                .map(|c| sorted(rows.iter().map(|r| r[c]).collect()))
                .collect(),
            scores,
        }
    }
}

/// One number per prediction for the prediction-drift monitor: the positive
/// class's probability for two classes, else the predicted class.
pub fn score(probabilities: &[f64]) -> f64 {
    if probabilities.len() == 2 {
        probabilities[1]
    } else {
        argmax(probabilities) as f64
    }
}

/// What one data-drift check found for a feature (or "prediction").
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub feature: String,
    /// The statistic, or the p-value for KS and chi-square.
    pub statistic: f64,
    pub drifted: bool,
    pub window: usize,
}

/// Recent traffic, and which features are past the threshold now.
#[derive(Clone, Debug)]
pub struct DataMonitor {
    spec: DataSpec,
    recent: VecDeque<(Vec<f64>, f64)>,
    since_check: usize,
    last_check_ms: Option<i64>,
    drifting: BTreeSet<String>,
}

impl DataMonitor {
    pub fn new(spec: DataSpec) -> DataMonitor {
        DataMonitor {
            spec,
            recent: VecDeque::new(),
            since_check: 0,
            last_check_ms: None,
            drifting: BTreeSet::new(),
        }
    }

    pub fn spec(&self) -> &DataSpec {
        &self.spec
    }

    /// Keeps a prediction's input and score; true when a check is due now.
    pub fn observe(&mut self, x: Vec<f64>, score: f64, now_ms: i64) -> bool {
        self.recent.push_back((x, score));
        if self.recent.len() > self.spec.window {
            self.recent.pop_front();
        }
        self.since_check += 1;
        let rested = self
            .last_check_ms
            .is_none_or(|at| now_ms - at >= self.spec.rest_ms);
        // ... and on enough traffic since the champion took over.
        let enough = self.recent.len() >= self.spec.window.div_ceil(2);
        let due = self.since_check >= self.spec.every && rested && enough;
        if due {
            self.since_check = 0;
            self.last_check_ms = Some(now_ms);
        }
        due
    }

    /// The traffic a due check looks at.
    pub fn recent(&self) -> Vec<(Vec<f64>, f64)> {
        self.recent.iter().cloned().collect()
    }

    /// A new champion has its own reference: start over.
    pub fn reset(&mut self) {
        self.recent.clear();
        self.drifting.clear();
    }

    /// Remembers what a check found; returns the findings that are new alarms
    /// (a feature alarms once, until it comes back under the threshold).
    pub fn found(&mut self, findings: Vec<Finding>) -> Vec<Finding> {
        let mut alarms = Vec::new();
        for finding in findings {
            if finding.drifted {
                if self.drifting.insert(finding.feature.clone()) {
                    alarms.push(finding);
                }
            } else {
                self.drifting.remove(&finding.feature);
            }
        }
        alarms
    }

    pub fn drifting(&self) -> impl Iterator<Item = &str> {
        self.drifting.iter().map(String::as_str)
    }
}

/// Compares `recent` traffic with a `reference`, feature by feature (named
/// `names`) and for the prediction. Plain code: serving runs it off the
/// request path, a replay in line.
pub fn check_data(
    spec: &DataSpec,
    names: &[String],
    reference: &Reference,
    recent: &[(Vec<f64>, f64)],
) -> Vec<Finding> {
    let mut checks: Vec<(String, &[f64], Vec<f64>)> = reference
        .columns
        .iter()
        .zip(names)
        .enumerate()
        .map(|(c, (column, name))| {
            let current = recent
                .iter()
                .filter_map(|(x, _)| x.get(c).copied())
                .collect();
            (name.clone(), column.as_slice(), current)
        })
        .collect();
    checks.push((
        "prediction".into(),
        reference.scores.as_slice(),
        recent.iter().map(|(_, s)| *s).collect(),
    ));
    checks
        .into_iter()
        .filter_map(|(feature, reference, current)| {
            let (statistic, drifted) = spec.test.judge(reference, &current, spec.threshold).ok()?;
            Some(Finding {
                feature,
                statistic,
                drifted,
                window: current.len(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::monitor::DataTest;

    fn spec() -> DataSpec {
        DataSpec {
            test: DataTest::Psi,
            threshold: DataTest::Psi.default_threshold(),
            window: 200,
            every: 100,
            rest_ms: 1000,
        }
    }

    #[test]
    fn the_live_accuracy_slides_over_its_window() {
        let mut live = LiveAccuracy::new(4);
        assert_eq!(live.accuracy(), None);
        for correct in [true, true, false, false] {
            live.record(correct);
        }
        assert_eq!(live.full_accuracy(), Some(0.5));
        live.record(false);
        assert_eq!(live.accuracy(), Some(0.25));
        assert_eq!(live.error_rate(), 0.75);
    }

    #[test]
    fn checks_come_every_n_predictions_on_enough_traffic_and_rested() {
        let mut monitor = DataMonitor::new(spec());
        let due: Vec<usize> = (0..400)
            .filter(|i| monitor.observe(vec![*i as f64], 0.5, *i as i64 * 5))
            .collect();
        // every 100 predictions, but no sooner than 1,000 ms after the last
        assert_eq!(due, vec![99, 299]);
    }

    #[test]
    fn a_shifted_feature_alarms_once_until_it_comes_back() {
        let reference = Reference {
            columns: vec![(0..1000).map(|i| i as f64 / 1000.0).collect()],
            scores: (0..1000).map(|i| i as f64 / 1000.0).collect(),
        };
        let names = vec!["amount".to_string()];
        let shifted: Vec<(Vec<f64>, f64)> = (0..500)
            .map(|i| (vec![5.0 + i as f64 / 500.0], i as f64 / 500.0))
            .collect();
        let same: Vec<(Vec<f64>, f64)> = (0..500)
            .map(|i| (vec![i as f64 / 500.0], i as f64 / 500.0))
            .collect();
        let mut monitor = DataMonitor::new(spec());
        let first = monitor.found(check_data(&spec(), &names, &reference, &shifted));
        assert_eq!(
            first.iter().map(|f| f.feature.as_str()).collect::<Vec<_>>(),
            ["amount"]
        );
        assert!(monitor
            .found(check_data(&spec(), &names, &reference, &shifted))
            .is_empty());
        assert!(monitor
            .found(check_data(&spec(), &names, &reference, &same))
            .is_empty());
        assert_eq!(monitor.drifting().count(), 0);
        assert_eq!(
            monitor
                .found(check_data(&spec(), &names, &reference, &shifted))
                .len(),
            1
        );
    }
}
