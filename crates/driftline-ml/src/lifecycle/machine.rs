//! One model's lifecycle as plain code: every decision (alarms, retrains,
//! the gate, trials, the rollback watch) from what the caller reports
//! (predictions, joined outcomes, trained challengers) on the caller's clock
//! in milliseconds. Serving drives it with the wall clock and trains in the
//! background; a replay drives it with a simulated clock and trains in line.
//! Both therefore decide the same way on the same traffic.

use std::collections::BTreeMap;

use crate::drift::{DriftDetector, DriftState};
use crate::ParamError;

use super::decision::{trial_mode, Decision, LifecycleEvent};
use super::monitors::{DataMonitor, Finding, LiveAccuracy};
use super::{Holdout, LifecycleSpec, Promotion, RetrainPolicy, TrialTally, Want, WatchTally};

/// A joined label: which version answered the request, whether it was
/// right, and how the others on watch or on trial would have answered.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub version: u64,
    pub correct: bool,
    /// A shadow challenger's answer on the same request: its version, right or not.
    pub shadow: Option<(u64, bool)>,
    /// The predecessor's answer while the rollback watch runs
    /// (see [`Lifecycle::watching`]).
    pub previous_correct: Option<bool>,
}

/// A challenger trained for a retrain the lifecycle asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct Trained {
    pub version: u64,
    pub examples: usize,
    pub trigger: String,
    /// The champion it was scored against.
    pub against: u64,
    pub holdout: Holdout,
}

#[derive(Clone, Debug)]
struct Trial {
    version: u64,
    share: Option<f64>,
    alarm_ms: Option<i64>,
    reason: String,
    tally: TrialTally,
}

#[derive(Clone, Debug)]
struct Watch {
    previous: u64,
    tally: WatchTally,
}

pub struct Lifecycle {
    spec: LifecycleSpec,
    champion: u64,
    joined: u64,
    live: LiveAccuracy,
    detector: Box<dyn DriftDetector>,
    /// The last concept-drift alarm, for the time from it to a new model serving.
    alarm_ms: Option<i64>,
    policy: RetrainPolicy,
    data: DataMonitor,
    /// A retrain under way, and the alarm it answers.
    training: Option<Option<i64>>,
    trial: Option<Trial>,
    watch: Option<Watch>,
}

impl Lifecycle {
    /// The lifecycle of `champion`; fails on a concept detector it cannot build.
    pub fn new(spec: LifecycleSpec, champion: u64) -> Result<Lifecycle, ParamError> {
        Ok(Lifecycle {
            detector: spec.concept.build()?,
            live: LiveAccuracy::new(spec.metric_window),
            policy: RetrainPolicy::new(spec.policy.clone()),
            data: DataMonitor::new(spec.data.clone()),
            spec,
            champion,
            joined: 0,
            alarm_ms: None,
            training: None,
            trial: None,
            watch: None,
        })
    }

    pub fn spec(&self) -> &LifecycleSpec {
        &self.spec
    }

    pub fn champion(&self) -> u64 {
        self.champion
    }

    pub fn joined(&self) -> u64 {
        self.joined
    }

    pub fn live_accuracy(&self) -> Option<f64> {
        self.live.accuracy()
    }

    /// The version on trial and, for a canary, the share it answers.
    pub fn trial(&self) -> Option<(u64, Option<f64>)> {
        self.trial.as_ref().map(|t| (t.version, t.share))
    }

    /// The predecessor scored beside the champion, while the watch runs.
    pub fn watching(&self) -> Option<u64> {
        self.watch.as_ref().map(|w| w.previous)
    }

    /// Whether a retrain is under way.
    pub fn training(&self) -> bool {
        self.training.is_some()
    }

    pub fn drifting(&self) -> impl Iterator<Item = &str> {
        self.data.drifting()
    }

    /// A prediction of the champion: its input and score. True when a
    /// data-drift check is due; the caller runs `check_data` on
    /// [`Lifecycle::recent`] and reports with [`Lifecycle::data_checked`].
    pub fn predicted(&mut self, x: Vec<f64>, score: f64, now_ms: i64) -> bool {
        self.data.observe(x, score, now_ms)
    }

    pub fn recent(&self) -> Vec<(Vec<f64>, f64)> {
        self.data.recent()
    }

    /// What a data-drift check of `version`'s traffic found; `available`
    /// joined examples are at hand to retrain on.
    pub fn data_checked(
        &mut self,
        version: u64,
        findings: Vec<Finding>,
        available: usize,
        now_ms: i64,
    ) -> Vec<Decision> {
        if version != self.champion {
            return Vec::new(); // a newer champion has its own reference
        }
        let mut decisions = Vec::new();
        for alarm in self.data.found(findings) {
            let test = self.spec.data.test;
            decisions.push(Decision::Alarm(LifecycleEvent::DataDrift {
                version,
                feature: alarm.feature.clone(),
                test: test.name().to_string(),
                statistic: alarm.statistic,
                threshold: self.spec.data.threshold,
                window: alarm.window,
            }));
            let what = format!("{} ({} {:.4})", alarm.feature, test.name(), alarm.statistic);
            if let Some(want) = self.policy.data_alarm(&what, now_ms) {
                decisions.extend(self.start(want, available, now_ms));
            }
        }
        decisions
    }

    /// A label joined to its prediction; `available` joined examples
    /// (this one included) are at hand to retrain on.
    pub fn outcome(&mut self, outcome: &Outcome, available: usize, now_ms: i64) -> Vec<Decision> {
        self.joined += 1;
        self.live.record(outcome.correct);
        let mut decisions = Vec::new();
        let watched = self.watch_outcome(outcome, &mut decisions);
        let judged = self.trial_outcome(outcome, &mut decisions, now_ms);
        if watched || judged {
            return decisions;
        }
        // Concept drift on the champion's error stream.
        let drifted = outcome.version == self.champion
            && self.detector.update(f64::from(u8::from(!outcome.correct))) == DriftState::Drift;
        let mut want = None;
        if drifted {
            // Where the detector puts the change, else the fewest a retrain needs.
            let ago = self
                .detector
                .drift_point_ago()
                .unwrap_or(self.spec.policy.min_train as u64);
            decisions.push(Decision::Alarm(LifecycleEvent::DriftAlarm {
                label: self.joined,
                detector: self.detector.name().into(),
                statistic: self.live.error_rate(),
                threshold: self.spec.concept.sensitivity(),
                window: ago,
            }));
            self.alarm_ms = Some(now_ms);
            want = self.policy.concept_alarm(self.joined, ago, now_ms);
        }
        if want.is_none() {
            want = self
                .policy
                .after_label(self.joined, self.live.full_accuracy(), now_ms);
        }
        if let Some(want) = want {
            decisions.extend(self.start(want, available, now_ms));
        }
        decisions
    }

    /// The schedule's turn (`every` names it).
    pub fn scheduled(&mut self, every: &str, available: usize, now_ms: i64) -> Vec<Decision> {
        match self.policy.scheduled(self.joined, every) {
            Some(want) => self.start(want, available, now_ms).into_iter().collect(),
            None => Vec::new(),
        }
    }

    /// A retrain unless one is under way or on trial, or too few examples are at hand.
    fn start(&mut self, want: Want, available: usize, now_ms: i64) -> Option<Decision> {
        if self.training.is_some() || self.trial.is_some() {
            return None;
        }
        let take = self.policy.take(&want, available)?;
        self.policy.started(&want, take, self.joined, now_ms);
        self.training = Some(self.alarm_ms);
        Some(Decision::Retrain {
            why: want.why,
            take,
        })
    }

    /// The retrain under way ended without a challenger.
    pub fn retrain_failed(&mut self) {
        self.training = None;
    }

    /// The retrain under way registered a challenger: the gate, then a
    /// trial or the promotion.
    pub fn trained(&mut self, trained: Trained, now_ms: i64) -> Vec<Decision> {
        let alarm = self.training.take().flatten();
        let Trained {
            version,
            examples,
            trigger,
            against,
            holdout,
        } = trained;
        let mut decisions = vec![Decision::Retrained(LifecycleEvent::Retrain {
            version,
            examples,
            trigger,
        })];
        let metrics = holdout.metrics();
        let reason = match self.spec.gate.judge(&holdout, against) {
            Ok(reason) => reason,
            Err(reason) => {
                decisions.push(Decision::Reject {
                    version,
                    reason,
                    metrics,
                });
                return decisions;
            }
        };
        match self.spec.promotion {
            Promotion::Direct => {
                let previous = self.champion;
                let drift_to_serving_ms = self.install(version, alarm, now_ms);
                decisions.push(Decision::Promote {
                    version,
                    previous,
                    reason,
                    metrics,
                    event: LifecycleEvent::Promoted {
                        version,
                        previous: Some(previous),
                        accuracy: holdout.challenger_accuracy,
                        previous_accuracy: holdout.champion_accuracy,
                        drift_to_serving_ms,
                    },
                });
            }
            Promotion::Shadow | Promotion::Canary(_) => {
                let share = self.spec.promotion.canary_share();
                self.trial = Some(Trial {
                    version,
                    share,
                    alarm_ms: alarm,
                    reason: reason.clone(),
                    tally: TrialTally::default(),
                });
                decisions.push(Decision::StartTrial {
                    version,
                    share,
                    reason: format!("{}: {reason}", trial_mode(share)),
                    metrics,
                });
            }
        }
        decisions
    }

    /// `version` serves from now on, by hand (`driftline models promote`):
    /// the rollback watch guards it like any promotion.
    pub fn promoted_by_hand(&mut self, version: u64) {
        self.install(version, None, 0);
    }

    /// Makes `version` the champion: resets the monitors and starts the
    /// rollback watch. Returns the time from the drift alarm it answers, if
    /// that alarm is still the latest.
    fn install(&mut self, version: u64, alarm_ms: Option<i64>, now_ms: i64) -> Option<u64> {
        let previous = self.champion;
        self.champion = version;
        self.policy.answered();
        self.detector.reset();
        self.data.reset();
        self.watch = Some(Watch {
            previous,
            tally: WatchTally::new(self.spec.rollback_after),
        });
        let answered = alarm_ms.filter(|at| self.alarm_ms == Some(*at));
        if answered.is_some() {
            self.alarm_ms = None;
        }
        answered.map(|at| u64::try_from(now_ms - at).unwrap_or(0))
    }

    /// The rollback watch: the predecessor scored beside the new champion
    /// comes back if it did better. True when the watch ended.
    fn watch_outcome(&mut self, outcome: &Outcome, decisions: &mut Vec<Decision>) -> bool {
        let Some(watch) = self.watch.as_mut() else {
            return false;
        };
        let (true, Some(previous_correct)) =
            (outcome.version == self.champion, outcome.previous_correct)
        else {
            return false;
        };
        let Some((mine, theirs)) = watch.tally.record(outcome.correct, previous_correct) else {
            return false;
        };
        let Some(watch) = self.watch.take() else {
            return false;
        };
        let margin = self.spec.rollback_margin;
        if !WatchTally::rolls_back(mine, theirs, margin) {
            return false;
        }
        let (from, to) = (self.champion, watch.previous);
        self.champion = to;
        self.detector.reset();
        self.data.reset();
        decisions.push(Decision::RollBack {
            from,
            to,
            reason: format!(
                "live accuracy over {} labels: v{from} {mine:.3}, v{to} {theirs:.3} (margin {margin})",
                watch.tally.seen
            ),
            metrics: BTreeMap::from([
                ("live_accuracy_rolled_back".to_string(), mine),
                ("live_accuracy".to_string(), theirs),
            ]),
        });
        true
    }

    /// Scores a trial on one outcome and ends it when it has run its course:
    /// the challenger serves if it did at least as well, else it is
    /// rejected. True when it ended.
    fn trial_outcome(
        &mut self,
        outcome: &Outcome,
        decisions: &mut Vec<Decision>,
        now_ms: i64,
    ) -> bool {
        let champion = self.champion;
        let Some(trial) = self.trial.as_mut() else {
            return false;
        };
        let version = trial.version;
        if outcome.version == version {
            trial.tally.challenger(outcome.correct);
        } else if outcome.version == champion {
            trial.tally.champion(outcome.correct);
            if let Some((shadow, correct)) = outcome.shadow {
                if shadow == version {
                    trial.tally.challenger(correct);
                }
            }
        }
        if !trial.tally.done(self.spec.trial_labels) {
            return false;
        }
        let Some(trial) = self.trial.take() else {
            return false;
        };
        let (mine, theirs, serves) = trial.tally.verdict();
        let mode = if trial.share.is_some() {
            "canary"
        } else {
            "shadow"
        };
        let metrics = BTreeMap::from([
            (format!("{mode}_accuracy"), mine),
            ("champion_live_accuracy".to_string(), theirs),
        ]);
        let summary = format!(
            "{mode} over {} labels: v{version} {mine:.4}, v{champion} {theirs:.4} on {} labels",
            trial.tally.challenger_seen, trial.tally.champion_seen
        );
        if serves {
            let drift_to_serving_ms = self.install(version, trial.alarm_ms, now_ms);
            decisions.push(Decision::Promote {
                version,
                previous: champion,
                reason: format!("{summary}; {}", trial.reason),
                metrics,
                event: LifecycleEvent::Promoted {
                    version,
                    previous: Some(champion),
                    accuracy: mine,
                    previous_accuracy: theirs,
                    drift_to_serving_ms,
                },
            });
        } else {
            decisions.push(Decision::Reject {
                version,
                reason: format!("{summary}: the challenger did worse"),
                metrics,
            });
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::monitor::{ConceptSpec, DataTest};
    use crate::lifecycle::{DataSpec, Gate, PolicyConfig};

    fn spec(promotion: Promotion) -> LifecycleSpec {
        LifecycleSpec {
            policy: PolicyConfig {
                on_concept: true,
                on_data: false,
                every_labels: 0,
                accuracy_floor: 0.0,
                cooldown_ms: 0,
                min_train: 50,
                window: 1000,
            },
            gate: Gate {
                min_gain: 0.01,
                max_latency_us: 100.0,
                max_size_bytes: 1 << 20,
            },
            concept: ConceptSpec::default(),
            data: DataSpec {
                test: DataTest::Psi,
                threshold: 0.2,
                window: 100,
                every: 50,
                rest_ms: 0,
            },
            metric_window: 100,
            rollback_after: 20,
            rollback_margin: 0.02,
            promotion,
            trial_labels: 10,
            holdout_fraction: 0.25,
        }
    }

    fn outcome(version: u64, correct: bool) -> Outcome {
        Outcome {
            version,
            correct,
            shadow: None,
            previous_correct: None,
        }
    }

    fn holdout(challenger: f64, champion: f64) -> Holdout {
        Holdout {
            challenger_accuracy: challenger,
            champion_accuracy: champion,
            examples: 100,
            latency_us: 5.0,
            size_bytes: 1000,
        }
    }

    /// Labels: right until `turn`, then wrong; returns the first retrain asked for.
    fn until_retrain(lifecycle: &mut Lifecycle, turn: usize) -> (usize, String, usize) {
        for i in 0..5000 {
            let correct = i < turn;
            for decision in lifecycle.outcome(&outcome(1, correct), i + 1, i as i64) {
                if let Decision::Retrain { why, take } = decision {
                    return (i, why, take);
                }
            }
        }
        panic!("no retrain");
    }

    #[test]
    fn a_drift_alarm_retrains_and_a_challenger_past_the_gate_serves_at_once() {
        let mut lifecycle = Lifecycle::new(spec(Promotion::Direct), 1).expect("spec");
        let (at, why, take) = until_retrain(&mut lifecycle, 1000);
        assert!(at > 1000, "after the turn");
        assert_eq!(why, "drift");
        assert!(take >= 50);
        assert!(lifecycle.training());
        // no second retrain while one is under way
        let more = lifecycle.outcome(&outcome(1, false), at + 2, at as i64 + 1);
        assert!(!more.iter().any(|d| matches!(d, Decision::Retrain { .. })));
        let decisions = lifecycle.trained(
            Trained {
                version: 2,
                examples: take,
                trigger: why,
                against: 1,
                holdout: holdout(0.9, 0.5),
            },
            at as i64 + 10,
        );
        assert!(matches!(decisions[0], Decision::Retrained(_)));
        let Decision::Promote {
            version,
            previous,
            event,
            ..
        } = &decisions[1]
        else {
            panic!("promoted: {decisions:?}");
        };
        assert_eq!((*version, *previous), (2, 1));
        let LifecycleEvent::Promoted {
            drift_to_serving_ms,
            ..
        } = event
        else {
            panic!("{event:?}");
        };
        assert!(drift_to_serving_ms.is_some_and(|ms| ms >= 10));
        assert_eq!((lifecycle.champion(), lifecycle.watching()), (2, Some(1)));
        assert!(!lifecycle.training());
    }

    #[test]
    fn the_gate_rejects_a_challenger_without_enough_gain() {
        let mut lifecycle = Lifecycle::new(spec(Promotion::Direct), 1).expect("spec");
        let (_, why, take) = until_retrain(&mut lifecycle, 1000);
        let decisions = lifecycle.trained(
            Trained {
                version: 2,
                examples: take,
                trigger: why,
                against: 1,
                holdout: holdout(0.505, 0.5),
            },
            0,
        );
        assert!(
            matches!(&decisions[1], Decision::Reject { version: 2, reason, .. } if reason.contains("under the minimum"))
        );
        assert_eq!(lifecycle.champion(), 1);
    }

    #[test]
    fn a_worse_champion_is_rolled_back_after_the_watch() {
        let mut lifecycle = Lifecycle::new(spec(Promotion::Direct), 1).expect("spec");
        lifecycle.promoted_by_hand(2);
        let mut rolled = None;
        for i in 0..20 {
            let decisions = lifecycle.outcome(
                &Outcome {
                    previous_correct: Some(true),
                    ..outcome(2, i % 2 == 0)
                },
                100,
                i,
            );
            rolled = rolled.or(decisions
                .into_iter()
                .find(|d| matches!(d, Decision::RollBack { .. })));
        }
        let Some(Decision::RollBack {
            from, to, reason, ..
        }) = rolled
        else {
            panic!("rolled back");
        };
        assert_eq!((from, to), (2, 1));
        assert!(reason.contains("v2 0.500, v1 1.000"), "{reason}");
        assert_eq!((lifecycle.champion(), lifecycle.watching()), (1, None));
    }

    #[test]
    fn a_shadow_trial_serves_the_challenger_only_if_it_did_as_well() {
        for (challenger_right, serves) in [(true, true), (false, false)] {
            let mut lifecycle = Lifecycle::new(spec(Promotion::Shadow), 1).expect("spec");
            let (at, why, take) = until_retrain(&mut lifecycle, 1000);
            let decisions = lifecycle.trained(
                Trained {
                    version: 2,
                    examples: take,
                    trigger: why,
                    against: 1,
                    holdout: holdout(0.9, 0.5),
                },
                at as i64,
            );
            assert!(
                matches!(&decisions[1], Decision::StartTrial { version: 2, share: None, reason, .. } if reason.starts_with("shadow: gain"))
            );
            assert_eq!(lifecycle.trial(), Some((2, None)));
            let mut end = Vec::new();
            for i in 0..10 {
                end = lifecycle.outcome(
                    &Outcome {
                        shadow: Some((2, challenger_right)),
                        ..outcome(1, i % 2 == 0)
                    },
                    2000,
                    at as i64 + i,
                );
            }
            match (&end[..], serves) {
                ([Decision::Promote { version: 2, .. }], true) => {
                    assert_eq!(lifecycle.champion(), 2)
                }
                (
                    [Decision::Reject {
                        version: 2, reason, ..
                    }],
                    false,
                ) => {
                    assert!(reason.contains("did worse"), "{reason}");
                    assert_eq!(lifecycle.champion(), 1);
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(lifecycle.trial(), None);
        }
    }

    #[test]
    fn a_data_drift_alarm_retrains_only_when_declared() {
        let drifted = || {
            vec![Finding {
                feature: "amount".into(),
                statistic: 0.9,
                drifted: true,
                window: 100,
            }]
        };
        let mut quiet = Lifecycle::new(spec(Promotion::Direct), 1).expect("spec");
        let decisions = quiet.data_checked(1, drifted(), 500, 0);
        assert!(matches!(
            &decisions[..],
            [Decision::Alarm(LifecycleEvent::DataDrift { .. })]
        ));
        let mut on_data = spec(Promotion::Direct);
        on_data.policy.on_data = true;
        let mut retrains = Lifecycle::new(on_data, 1).expect("spec");
        let decisions = retrains.data_checked(1, drifted(), 500, 0);
        assert!(
            matches!(&decisions[1], Decision::Retrain { why, take: 500 } if why == "data drift on amount (psi 0.9000)")
        );
        // the same feature does not alarm again; another version's check is ignored
        assert!(retrains.data_checked(1, drifted(), 500, 0).is_empty());
        assert!(retrains.data_checked(7, drifted(), 500, 0).is_empty());
    }
}
