//! Prequential (test-then-train) evaluation of a learner under a retraining
//! policy, with labels that may arrive `delay` events after the prediction.
//!
//! Each event is predicted before its label is known; the metrics score that
//! prediction. The label reaches the learner, the policy and the drift
//! detector `delay` events later, as it would in production.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use serde::Serialize;

use crate::drift::{detector_by_name, DriftDetector, DriftState};
use crate::learn::Classifier;
use crate::lifecycle::{PolicyConfig, RetrainPolicy};
use crate::metrics::{metric_by_name, Metric, Observation, CLASSIFICATION_METRICS};
use crate::ParamError;

/// When and on what the learner is (re)trained. Policies combine with `+`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// Learn from every labelled event.
    pub online: bool,
    /// Retrain on the last `window` labelled events every `every` labels.
    pub periodic: Option<(usize, usize)>,
    /// Retrain on the events since the drift point when this detector fires.
    pub drift: Option<String>,
    /// Events of the first training window, for policies that do not learn online.
    pub warm: usize,
    pub text: String,
}

impl Policy {
    /// Parses `never[:W]`, `online`, `periodic:N[:W]`, `drift:DETECTOR`, and
    /// combinations such as `online+drift:adwin`.
    pub fn parse(text: &str) -> Result<Policy, ParamError> {
        let mut policy = Policy {
            online: false,
            periodic: None,
            drift: None,
            warm: 1000,
            text: text.to_string(),
        };
        for part in text.split('+') {
            let mut pieces = part.trim().split(':');
            let head = pieces.next().unwrap_or_default();
            let number = |piece: Option<&str>, what: &str| -> Result<Option<usize>, ParamError> {
                piece
                    .map(|p| {
                        p.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                            ParamError::new(
                                "policy",
                                format!("{what} {p:?} in {text:?} is not a positive integer"),
                            )
                        })
                    })
                    .transpose()
            };
            match head {
                "never" => {
                    if let Some(warm) = number(pieces.next(), "warm-up window")? {
                        policy.warm = warm;
                    }
                }
                "online" => policy.online = true,
                "periodic" => {
                    let every = number(pieces.next(), "period")?.ok_or_else(|| ParamError::new("policy", format!("periodic needs a period, as in periodic:5000 (got {text:?})")))?;
                    let window = number(pieces.next(), "window")?.unwrap_or(every);
                    policy.periodic = Some((every, window));
                }
                "drift" => {
                    let detector = pieces.next().ok_or_else(|| ParamError::new("policy", format!("drift needs a detector, as in drift:adwin (got {text:?})")))?;
                    detector_by_name(detector)?;
                    policy.drift = Some(detector.to_string());
                }
                other => {
                    return Err(ParamError::new("policy", format!("unknown policy {other:?} in {text:?}; known: never, online, periodic:N, drift:DETECTOR, joined with +")))
                }
            }
        }
        Ok(policy)
    }
}

impl Policy {
    /// The retrain policy this replays: a drift policy retrains on concept
    /// alarms, a periodic one every N labels on the last W (at any count).
    pub fn retrain_config(&self, config: &RunConfig) -> PolicyConfig {
        let (every, window) = self.periodic.unwrap_or((0, config.buffer));
        PolicyConfig {
            on_concept: self.drift.is_some(),
            on_data: false,
            every_labels: every as u64,
            accuracy_floor: 0.0,
            cooldown_ms: 0,
            min_train: if every > 0 {
                config.min_retrain.min(every)
            } else {
                config.min_retrain
            },
            window,
        }
    }
}

#[derive(Clone, Debug)]
pub struct RunConfig {
    pub n_classes: usize,
    /// Events between a prediction and its label.
    pub delay: usize,
    /// Events per point of the windowed metrics.
    pub window: usize,
    /// Most labelled events kept for retraining.
    pub buffer: usize,
    /// Fewest examples a retrain reads (the retrain policy's `min_train`).
    pub min_retrain: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct WindowPoint {
    /// Index one past the window's last event.
    pub end: usize,
    pub metrics: BTreeMap<String, f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunResult {
    pub model: String,
    pub policy: String,
    pub samples: usize,
    pub seconds: f64,
    pub samples_per_second: f64,
    pub metrics: BTreeMap<String, f64>,
    pub drifts: Vec<usize>,
    pub retrains: Vec<usize>,
    pub windowed: Vec<WindowPoint>,
}

struct Scorer {
    overall: Vec<Box<dyn Metric>>,
    window: Vec<Box<dyn Metric>>,
}

impl Scorer {
    fn new(binary: bool) -> Scorer {
        let names: Vec<&str> = CLASSIFICATION_METRICS
            .iter()
            .copied()
            .filter(|n| binary || *n != "roc_auc")
            .collect();
        let build = || {
            names
                .iter()
                .filter_map(|n| metric_by_name(n))
                .collect::<Vec<_>>()
        };
        Scorer {
            overall: build(),
            window: build(),
        }
    }

    fn update(&mut self, observation: &Observation) {
        for metric in self.overall.iter_mut().chain(self.window.iter_mut()) {
            metric.update(observation);
        }
    }

    fn values(metrics: &[Box<dyn Metric>]) -> BTreeMap<String, f64> {
        metrics
            .iter()
            .map(|m| (m.name().to_string(), m.get()))
            .collect()
    }

    fn close_window(&mut self, binary: bool) -> BTreeMap<String, f64> {
        let values = Self::values(&self.window);
        self.window = Scorer::new(binary).window;
        values
    }
}

/// Events handed to [`Classifier::predict_then_learn_many`] at once.
const AHEAD_EVENTS: usize = 2048;

/// Runs `model` over the labelled `stream` under `policy`; `progress` is
/// called with the number of events done now and then.
pub fn run(
    model_name: &str,
    mut model: Box<dyn Classifier>,
    policy: &Policy,
    xs: &[Vec<f64>],
    ys: &[usize],
    config: &RunConfig,
    progress: &mut dyn FnMut(usize),
) -> RunResult {
    let binary = config.n_classes <= 2;
    let mut scorer = Scorer::new(binary);
    let mut detector: Option<Box<dyn DriftDetector>> = policy
        .drift
        .as_deref()
        .and_then(|d| detector_by_name(d).ok());
    // (event index, whether the prediction was wrong) awaiting their labels
    let mut pending: VecDeque<(usize, bool)> = VecDeque::with_capacity(config.delay + 1);
    let mut buffer: VecDeque<usize> = VecDeque::with_capacity(config.buffer.min(xs.len()) + 1);
    let (mut drifts, mut retrains, mut windowed) = (Vec::new(), Vec::new(), Vec::new());
    let mut labelled = 0usize;
    let mut trained_once = false;
    let mut retrain_policy = RetrainPolicy::new(policy.retrain_config(config));
    let started = Instant::now();
    let fit_on = |model: &mut Box<dyn Classifier>, indices: &mut dyn Iterator<Item = usize>| {
        let chosen: Vec<usize> = indices.collect();
        let window_x: Vec<Vec<f64>> = chosen.iter().map(|i| xs[*i].clone()).collect();
        let window_y: Vec<usize> = chosen.iter().map(|i| ys[*i]).collect();
        model.fit(&window_x, &window_y);
    };
    // Without a delay an online learner tests and trains on each event in one step.
    let learn_while_testing = policy.online && config.delay == 0;
    // With nothing else ever touching the model (no refits), a run of events
    // at a time: a forest learns them on several threads.
    let ahead_of_time = learn_while_testing && policy.drift.is_none() && policy.periodic.is_none();
    let mut ahead: VecDeque<Vec<f64>> = VecDeque::new();
    for t in 0..xs.len() {
        // test
        let probabilities = if ahead_of_time {
            if ahead.is_empty() {
                let end = (t + AHEAD_EVENTS).min(xs.len());
                ahead.extend(model.predict_then_learn_many(&xs[t..end], &ys[t..end]));
            }
            ahead.pop_front().unwrap_or_default()
        } else if learn_while_testing {
            model.predict_then_learn(&xs[t], ys[t])
        } else {
            model.predict_proba_one(&xs[t])
        };
        let predicted = crate::learn::argmax(&probabilities);
        let y = ys[t];
        scorer.update(&Observation::Class {
            y_true: y,
            y_pred: predicted,
            proba_true: probabilities.get(y).copied().unwrap_or(0.0),
            score: probabilities.get(1).copied().unwrap_or(0.0),
        });
        pending.push_back((t, predicted != y));
        // then train, on the labels that have arrived
        while pending.len() > config.delay {
            let Some((i, wrong)) = pending.pop_front() else {
                break;
            };
            labelled += 1;
            buffer.push_back(i);
            if buffer.len() > config.buffer {
                buffer.pop_front();
            }
            if policy.online && !learn_while_testing {
                model.learn_one(&xs[i], ys[i]);
            }
            if !policy.online
                && policy.periodic.is_none()
                && !trained_once
                && labelled >= policy.warm.min(xs.len())
            {
                fit_on(&mut model, &mut buffer.iter().copied());
                trained_once = true;
                retrains.push(t);
                if let Some(detector) = detector.as_mut() {
                    detector.reset();
                }
            }
            // When to retrain, and on what: the policy a served model runs.
            let mut want = None;
            if let Some(detector) = detector.as_mut() {
                if detector.update(f64::from(u8::from(wrong))) == DriftState::Drift {
                    drifts.push(t);
                    let ago = detector
                        .drift_point_ago()
                        .unwrap_or(retrain_policy.config.min_train as u64);
                    want = retrain_policy.concept_alarm(labelled as u64, ago, t as i64);
                }
            }
            if want.is_none() {
                want = retrain_policy.after_label(labelled as u64, None, t as i64);
            }
            let take = want
                .as_ref()
                .and_then(|want| retrain_policy.take(want, buffer.len()));
            if let (Some(want), Some(take)) = (want, take) {
                let skip = buffer.len() - take;
                fit_on(&mut model, &mut buffer.iter().copied().skip(skip));
                trained_once = true;
                retrains.push(t);
                retrain_policy.started(&want, take, labelled as u64, t as i64);
                // Without a gate every retrain serves, and so answers the alarm.
                retrain_policy.answered();
                // A new model's errors are a new stream: compare it with itself only.
                if let Some(detector) = detector.as_mut() {
                    detector.reset();
                }
            }
        }
        if (t + 1).is_multiple_of(config.window) || t + 1 == xs.len() {
            windowed.push(WindowPoint {
                end: t + 1,
                metrics: scorer.close_window(binary),
            });
            progress(t + 1);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    RunResult {
        model: model_name.to_string(),
        policy: policy.text.clone(),
        samples: xs.len(),
        seconds,
        samples_per_second: xs.len() as f64 / seconds.max(1e-9),
        metrics: Scorer::values(&scorer.overall),
        drifts,
        retrains,
        windowed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learn::classifier_by_name;
    use crate::stats::SplitMix64;

    fn flipping_stream(n: usize, flip_at: usize) -> (Vec<Vec<f64>>, Vec<usize>) {
        let mut rng = SplitMix64::new(12);
        let xs: Vec<Vec<f64>> = (0..n)
            .map(|_| vec![rng.next_f64(), rng.next_f64()])
            .collect();
        let ys = xs
            .iter()
            .enumerate()
            .map(|(i, x)| usize::from((x[0] > 0.5) != (i >= flip_at)))
            .collect();
        (xs, ys)
    }

    fn config() -> RunConfig {
        RunConfig {
            n_classes: 2,
            delay: 0,
            window: 1000,
            buffer: 5000,
            min_retrain: 200,
        }
    }

    #[test]
    fn policies_parse_and_bad_ones_are_named() {
        let p = Policy::parse("online+drift:adwin").expect("parse");
        assert!(p.online && p.drift.as_deref() == Some("adwin"));
        assert_eq!(
            Policy::parse("periodic:500").expect("parse").periodic,
            Some((500, 500))
        );
        assert_eq!(Policy::parse("never:200").expect("parse").warm, 200);
        assert!(Policy::parse("sometimes").is_err_and(|e| e.to_string().contains("sometimes")));
        assert!(Policy::parse("drift:nope").is_err());
        assert!(Policy::parse("periodic:0").is_err());
    }

    #[test]
    fn a_frozen_model_suffers_after_drift_and_a_drift_policy_recovers() {
        let (xs, ys) = flipping_stream(10_000, 5000);
        let run_with = |policy: &str| {
            let model = classifier_by_name("ht", 2, 2, 1).expect("model");
            run(
                "ht",
                model,
                &Policy::parse(policy).expect("policy"),
                &xs,
                &ys,
                &config(),
                &mut |_| {},
            )
        };
        let frozen = run_with("never");
        let adaptive = run_with("drift:adwin");
        let online = run_with("online");
        assert!(frozen.metrics["accuracy"] < 0.6, "{:?}", frozen.metrics);
        assert!(
            adaptive.metrics["accuracy"] > 0.85,
            "{:?} drifts {:?} windows {:?}",
            adaptive.metrics,
            adaptive.drifts,
            adaptive
                .windowed
                .iter()
                .map(|w| w.metrics["accuracy"])
                .collect::<Vec<_>>()
        );
        assert!(
            adaptive.drifts.iter().any(|d| (5000..5600).contains(d)),
            "{:?}",
            adaptive.drifts
        );
        // the warm-up fit, then the served policy's retrains: at each alarm and
        // again as the examples since the drift point double
        assert!(
            adaptive.retrains.len() > adaptive.drifts.len(),
            "{adaptive:?}"
        );
        let first_drift = adaptive.drifts.first().copied().unwrap_or(usize::MAX);
        assert!(
            adaptive.retrains.iter().skip(1).all(|r| *r >= first_drift),
            "{:?} {:?}",
            adaptive.retrains,
            adaptive.drifts
        );
        assert_eq!(frozen.retrains, vec![999]);
        assert_eq!(online.windowed.len(), 10);
        assert!(online.samples_per_second > 0.0);
    }

    #[test]
    fn delayed_labels_reach_the_learner_later() {
        let (xs, ys) = flipping_stream(4000, 4000);
        let model = classifier_by_name("lr", 2, 2, 1).expect("model");
        let delayed = run(
            "lr",
            model,
            &Policy::parse("online").expect("policy"),
            &xs,
            &ys,
            &RunConfig {
                delay: 500,
                ..config()
            },
            &mut |_| {},
        );
        // the first 500 predictions come from an untrained model
        assert!(delayed.windowed[0].metrics["accuracy"] < delayed.windowed[3].metrics["accuracy"]);
        assert!(delayed.metrics["accuracy"] > 0.8);
    }

    #[test]
    fn periodic_retrains_on_schedule() {
        let (xs, ys) = flipping_stream(3000, 3000);
        let model = classifier_by_name("gbt", 2, 2, 1).expect("model");
        let result = run(
            "gbt",
            model,
            &Policy::parse("periodic:1000").expect("policy"),
            &xs,
            &ys,
            &config(),
            &mut |_| {},
        );
        assert_eq!(result.retrains, vec![999, 1999, 2999]);
    }
}
