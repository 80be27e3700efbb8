//! A model's whole lifecycle replayed over recorded data on a simulated
//! clock: the same `Lifecycle` serving runs (monitors, retrain policy, gate,
//! trials, rollback watch), with each challenger trained in line at the
//! moment serving would have started it. What `driftline backtest
//! --pipeline P --model NAME` reports.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use crate::learn::{argmax, classifier_by_name, Classifier};
use crate::ParamError;

use super::{
    canary_answers, check_data, score, Decision, Holdout, Lifecycle, LifecycleEvent, LifecycleSpec,
    Outcome, Reference, Trained,
};

/// What the replay needs beside the lifecycle's own declaration.
#[derive(Clone, Debug)]
pub struct ReplayConfig {
    pub spec: LifecycleSpec,
    pub learner: String,
    pub seed: u64,
    pub n_classes: usize,
    /// The encoded features' names, for the data-drift monitor's alarms.
    pub features: Vec<String>,
    /// Events between a prediction and its label.
    pub delay: usize,
    /// The first rows, whose labels are known, train the first version.
    pub bootstrap: usize,
    /// Events per point of the metric over time.
    pub window: usize,
    /// The schedule, on the simulated clock (retrain every this many ms).
    pub schedule_ms: Option<i64>,
}

/// One decision, when it happened.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Step {
    /// The event (row) being predicted or labelled when it was taken.
    pub index: usize,
    pub at_ms: i64,
    #[serde(flatten)]
    pub event: LifecycleEvent,
}

#[derive(Clone, Debug, Serialize)]
pub struct WindowPoint {
    /// One past the window's last event.
    pub end: usize,
    /// Accuracy of what served (champion or canary) in the window.
    pub accuracy: f64,
    /// Of the first version, had it never been replaced.
    pub first_version_accuracy: f64,
    /// Serving at the window's end.
    pub champion: u64,
}

/// From a concept-drift alarm to the model that answered it serving.
#[derive(Clone, Debug, Serialize)]
pub struct AlarmToServing {
    pub alarm_index: usize,
    pub serving_index: usize,
    pub events: usize,
    pub ms: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ReplayReport {
    pub learner: String,
    /// Events replayed (after the bootstrap rows).
    pub events: usize,
    pub accuracy: f64,
    pub first_version_accuracy: f64,
    pub final_champion: u64,
    pub counts: BTreeMap<String, usize>,
    pub windowed: Vec<WindowPoint>,
    pub decisions: Vec<Step>,
    pub alarm_to_serving: Vec<AlarmToServing>,
    pub seconds: f64,
}

impl ReplayReport {
    /// How many of each decision, in a line.
    pub fn counts_line(&self) -> String {
        let count = |k: &str| self.counts.get(k).copied().unwrap_or(0);
        format!(
            "drift alarms {} | data-drift alarms {} | retrains {} | trials {} | promotions {} | rejections {} | rollbacks {}",
            count("drift_alarms"),
            count("data_drift_alarms"),
            count("retrains"),
            count("trials"),
            count("promotions"),
            count("rejections"),
            count("rollbacks")
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Param(#[from] ParamError),
    #[error("{rows} rows cannot bootstrap {bootstrap} and replay more")]
    TooShort { rows: usize, bootstrap: usize },
    #[error("row {row}: label {label} is not a class of the model (0..{classes})")]
    BadLabel {
        row: usize,
        label: usize,
        classes: usize,
    },
}

struct Version {
    model: Box<dyn Classifier>,
    reference: Reference,
}

struct Pending {
    index: usize,
    version: u64,
    class: usize,
    shadow: Option<(u64, usize)>,
}

struct Run<'a> {
    config: &'a ReplayConfig,
    xs: &'a [Vec<f64>],
    lifecycle: Lifecycle,
    /// The versions the lifecycle may still serve (champion, trial, the
    /// predecessor on watch); the others are dropped.
    versions: BTreeMap<u64, Version>,
    next_version: u64,
    /// Joined examples, newest last, to retrain on.
    window: VecDeque<usize>,
    decisions: Vec<Step>,
    last_alarm: Option<usize>,
    alarm_to_serving: Vec<AlarmToServing>,
    counts: BTreeMap<String, usize>,
}

/// Replays `xs`/`ys` (encoded rows, in order) with `times_ms` the simulated
/// clock of each row.
pub fn replay(
    config: &ReplayConfig,
    xs: &[Vec<f64>],
    ys: &[usize],
    times_ms: &[i64],
    progress: &mut dyn FnMut(usize),
) -> Result<ReplayReport, ReplayError> {
    let started = std::time::Instant::now();
    let rows = xs.len().min(ys.len()).min(times_ms.len());
    if rows <= config.bootstrap || config.bootstrap < 2 {
        return Err(ReplayError::TooShort {
            rows,
            bootstrap: config.bootstrap,
        });
    }
    if let Some((row, &label)) = ys.iter().enumerate().find(|(_, y)| **y >= config.n_classes) {
        return Err(ReplayError::BadLabel {
            row,
            label,
            classes: config.n_classes,
        });
    }
    let width = xs[0].len();
    let (boot_x, boot_y) = (&xs[..config.bootstrap], &ys[..config.bootstrap]);
    let mut first = classifier_by_name(&config.learner, width, config.n_classes, config.seed)?;
    first.fit(boot_x, boot_y);
    let reference = Reference::of(first.as_ref(), boot_x);
    // Versions are numbered as the registry numbers them: from 1.
    let frozen = classifier_by_name(&config.learner, width, config.n_classes, config.seed).map(
        |mut m| {
            m.fit(boot_x, boot_y);
            m
        },
    )?;
    let mut run = Run {
        config,
        xs,
        lifecycle: Lifecycle::new(config.spec.clone(), 1)?,
        versions: BTreeMap::from([(
            1,
            Version {
                model: first,
                reference,
            },
        )]),
        next_version: 2,
        window: VecDeque::new(),
        decisions: Vec::new(),
        last_alarm: None,
        alarm_to_serving: Vec::new(),
        counts: BTreeMap::new(),
    };
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let (mut right, mut frozen_right) = (0usize, 0usize);
    let (mut window_right, mut window_frozen, mut window_seen) = (0usize, 0usize, 0usize);
    let mut windowed = Vec::new();
    let mut next_schedule = config
        .schedule_ms
        .map(|every| times_ms[config.bootstrap] + every);
    for i in config.bootstrap..rows {
        let now = times_ms[i];
        if let (Some(at), Some(every)) = (next_schedule, config.schedule_ms) {
            if now >= at {
                next_schedule = Some(at + every.max(1) * ((now - at) / every.max(1) + 1));
                let what = format!("{} s", every as f64 / 1000.0);
                let decisions = run.lifecycle.scheduled(&what, run.window.len(), now);
                run.apply(decisions, i, now, ys);
            }
        }
        let number = (i - config.bootstrap) as u64;
        let champion = run.lifecycle.champion();
        let trial = run.lifecycle.trial();
        let served = match trial {
            Some((version, Some(share))) if canary_answers(number, share) => version,
            _ => champion,
        };
        let x = &xs[i];
        let probabilities = run.model(served).predict_proba_one(x);
        let class = argmax(&probabilities);
        let shadow = match trial {
            Some((version, None)) => {
                Some((version, argmax(&run.model(version).predict_proba_one(x))))
            }
            _ => None,
        };
        if run
            .lifecycle
            .predicted(x.clone(), score(&probabilities), now)
        {
            let findings = check_data(
                &config.spec.data,
                &config.features,
                &run.versions[&served].reference,
                &run.lifecycle.recent(),
            );
            let decisions = run
                .lifecycle
                .data_checked(served, findings, run.window.len(), now);
            run.apply(decisions, i, now, ys);
        }
        let y = ys[i];
        let frozen_class = frozen.predict_one(x);
        right += usize::from(class == y);
        frozen_right += usize::from(frozen_class == y);
        window_right += usize::from(class == y);
        window_frozen += usize::from(frozen_class == y);
        window_seen += 1;
        pending.push_back(Pending {
            index: i,
            version: served,
            class,
            shadow,
        });
        while pending.front().is_some_and(|p| p.index + config.delay <= i) {
            if let Some(p) = pending.pop_front() {
                run.join(p, ys, i, now);
            }
        }
        if window_seen == config.window.max(1) || i + 1 == rows {
            windowed.push(WindowPoint {
                end: i + 1,
                accuracy: window_right as f64 / window_seen as f64,
                first_version_accuracy: window_frozen as f64 / window_seen as f64,
                champion: run.lifecycle.champion(),
            });
            (window_right, window_frozen, window_seen) = (0, 0, 0);
            progress(i + 1);
        }
    }
    // The labels still on their way arrive at the end.
    let (last, now) = (rows - 1, times_ms[rows - 1]);
    while let Some(p) = pending.pop_front() {
        run.join(p, ys, last, now);
    }
    let events = rows - config.bootstrap;
    Ok(ReplayReport {
        learner: config.learner.clone(),
        events,
        accuracy: right as f64 / events as f64,
        first_version_accuracy: frozen_right as f64 / events as f64,
        final_champion: run.lifecycle.champion(),
        counts: run.counts,
        windowed,
        decisions: run.decisions,
        alarm_to_serving: run.alarm_to_serving,
        seconds: started.elapsed().as_secs_f64(),
    })
}

impl Run<'_> {
    fn model(&self, version: u64) -> &dyn Classifier {
        // Every version the lifecycle names was trained here first.
        self.versions[&version].model.as_ref()
    }

    fn join(&mut self, p: Pending, ys: &[usize], index: usize, now: i64) {
        let y = ys[p.index];
        let x = &self.xs[p.index];
        let previous_correct = self
            .lifecycle
            .watching()
            .filter(|_| p.version == self.lifecycle.champion())
            .map(|previous| argmax(&self.model(previous).predict_proba_one(x)) == y);
        let outcome = Outcome {
            version: p.version,
            correct: p.class == y,
            shadow: p.shadow.map(|(version, class)| (version, class == y)),
            previous_correct,
        };
        self.window.push_back(p.index);
        if self.window.len() > self.config.spec.policy.window {
            self.window.pop_front();
        }
        let decisions = self.lifecycle.outcome(&outcome, self.window.len(), now);
        self.apply(decisions, index, now, ys);
    }

    fn apply(&mut self, decisions: Vec<Decision>, index: usize, now: i64, ys: &[usize]) {
        // Serving reports a batch's other decisions before its retrain ends
        // (the retrain runs in the background): so does the replay.
        let mut retrains = Vec::new();
        for decision in decisions {
            if let Decision::Retrain { why, take } = decision {
                retrains.push((why, take));
                continue;
            }
            let Some(event) = decision.event() else {
                continue;
            };
            let kind = match &event {
                LifecycleEvent::DriftAlarm { .. } => {
                    self.last_alarm = Some(index);
                    "drift_alarms"
                }
                LifecycleEvent::DataDrift { .. } => "data_drift_alarms",
                LifecycleEvent::Retrain { .. } => "retrains",
                LifecycleEvent::TrialStarted { .. } => "trials",
                LifecycleEvent::Promoted {
                    drift_to_serving_ms,
                    ..
                } => {
                    if let (Some(ms), Some(alarm)) = (drift_to_serving_ms, self.last_alarm.take()) {
                        self.alarm_to_serving.push(AlarmToServing {
                            alarm_index: alarm,
                            serving_index: index,
                            events: index - alarm,
                            ms: Some(*ms),
                        });
                    }
                    "promotions"
                }
                LifecycleEvent::Rejected { .. } => "rejections",
                LifecycleEvent::RolledBack { .. } => "rollbacks",
            };
            *self.counts.entry(kind.to_string()).or_default() += 1;
            self.decisions.push(Step {
                index,
                at_ms: now,
                event,
            });
        }
        for (why, take) in retrains {
            let more = self.retrain(why, take, now, ys);
            self.apply(more, index, now, ys);
        }
    }

    /// Trains a challenger on the newest `take` joined examples, as serving
    /// does: the newest share held out to score it against the champion.
    fn retrain(&mut self, why: String, take: usize, now: i64, ys: &[usize]) -> Vec<Decision> {
        let config = self.config;
        let rows: Vec<usize> = self
            .window
            .iter()
            .skip(self.window.len().saturating_sub(take))
            .copied()
            .collect();
        if rows.len() < 2 {
            self.lifecycle.retrain_failed();
            return Vec::new();
        }
        let holdout = Holdout::size(rows.len(), config.spec.holdout_fraction);
        let (train, test) = rows.split_at(rows.len() - holdout);
        let train_x: Vec<Vec<f64>> = train.iter().map(|r| self.xs[*r].clone()).collect();
        let train_y: Vec<usize> = train.iter().map(|r| ys[*r]).collect();
        let test_x: Vec<Vec<f64>> = test.iter().map(|r| self.xs[*r].clone()).collect();
        let test_y: Vec<usize> = test.iter().map(|r| ys[*r]).collect();
        let width = train_x.first().map_or(0, Vec::len);
        let Ok(mut challenger) =
            classifier_by_name(&config.learner, width, config.n_classes, config.seed)
        else {
            self.lifecycle.retrain_failed();
            return Vec::new();
        };
        challenger.fit(&train_x, &train_y);
        let against = self.lifecycle.champion();
        let scores = Holdout::measure(challenger.as_ref(), self.model(against), &test_x, &test_y);
        let reference = Reference::of(challenger.as_ref(), &train_x);
        let version = self.next_version;
        self.next_version += 1;
        let keep = [
            Some(self.lifecycle.champion()),
            self.lifecycle.trial().map(|(v, _)| v),
            self.lifecycle.watching(),
        ];
        self.versions.retain(|v, _| keep.contains(&Some(*v)));
        self.versions.insert(
            version,
            Version {
                model: challenger,
                reference,
            },
        );
        self.lifecycle.trained(
            Trained {
                version,
                examples: train_x.len(),
                trigger: why,
                against,
                holdout: scores,
            },
            now,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::monitor::{ConceptSpec, DataTest};
    use crate::lifecycle::{DataSpec, Gate, PolicyConfig, Promotion};

    fn config() -> ReplayConfig {
        ReplayConfig {
            spec: LifecycleSpec {
                policy: PolicyConfig {
                    on_concept: true,
                    on_data: false,
                    every_labels: 0,
                    accuracy_floor: 0.0,
                    cooldown_ms: 0,
                    min_train: 200,
                    window: 5000,
                },
                gate: Gate {
                    min_gain: 0.005,
                    max_latency_us: 1e6,
                    max_size_bytes: 1 << 30,
                },
                concept: ConceptSpec::default(),
                data: DataSpec {
                    test: DataTest::Psi,
                    threshold: 0.2,
                    window: 1000,
                    every: 500,
                    rest_ms: 0,
                },
                metric_window: 500,
                rollback_after: 300,
                rollback_margin: 0.02,
                promotion: Promotion::Direct,
                trial_labels: 300,
                holdout_fraction: 0.25,
            },
            learner: "lr".into(),
            seed: 1,
            n_classes: 2,
            features: vec!["a".into(), "b".into()],
            delay: 10,
            bootstrap: 1000,
            window: 500,
            schedule_ms: None,
        }
    }

    /// The label is `a > 0.5` until row 4000, then its opposite.
    fn flipping(rows: usize) -> (Vec<Vec<f64>>, Vec<usize>, Vec<i64>) {
        let mut state = 3u64;
        let mut next = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let xs: Vec<Vec<f64>> = (0..rows).map(|_| vec![next(), next()]).collect();
        let ys = xs
            .iter()
            .enumerate()
            .map(|(i, x)| usize::from((x[0] > 0.5) != (i >= 4000)))
            .collect();
        (xs, ys, (0..rows as i64).collect())
    }

    #[test]
    fn a_flipped_concept_is_caught_retrained_on_and_served() {
        let (xs, ys, times) = flipping(10_000);
        let report = replay(&config(), &xs, &ys, &times, &mut |_| {}).expect("replay");
        assert_eq!(report.events, 9000);
        let alarm = report
            .decisions
            .iter()
            .find(|s| matches!(s.event, LifecycleEvent::DriftAlarm { .. }))
            .expect("an alarm");
        assert!((4000..4600).contains(&alarm.index), "{alarm:?}");
        assert!(report.counts.get("promotions").copied().unwrap_or(0) >= 1);
        assert!(!report.alarm_to_serving.is_empty());
        // after the flip the first version is wrong, the lifecycle is not
        let last = report.windowed.last().expect("windows");
        assert!(last.first_version_accuracy < 0.2, "{last:?}");
        assert!(last.accuracy > 0.8, "{last:?}");
        assert_eq!(report.windowed.len(), 18);
    }

    #[test]
    fn too_few_rows_and_labels_out_of_range_are_refused() {
        let (xs, ys, times) = flipping(1000);
        assert!(matches!(
            replay(&config(), &xs, &ys, &times, &mut |_| {}),
            Err(ReplayError::TooShort {
                rows: 1000,
                bootstrap: 1000
            })
        ));
        let (xs, mut ys, times) = flipping(2000);
        ys[1500] = 2;
        let error = replay(&config(), &xs, &ys, &times, &mut |_| {}).expect_err("bad label");
        assert_eq!(
            error.to_string(),
            "row 1500: label 2 is not a class of the model (0..2)"
        );
    }
}
