//! The retrain policy: when a model retrains and on how many of the newest
//! joined examples. Plain code on a clock the caller gives (milliseconds):
//! serving feeds it the wall clock, a backtest its simulated one.
//!
//! Triggers, checked after each joined label in this order:
//! - a concept-drift alarm, after the cooldown: on the examples since the
//!   drift point the detector estimated;
//! - once `min_train` labels have come since an alarm: on those alone (the
//!   window at the alarm may still hold mostly the old concept);
//! - each time the examples since the drift point have doubled: on them all,
//!   up to the window (the first retrain after a drift has few of them);
//! - every `every_labels` labels: on the window;
//! - the live accuracy under `accuracy_floor`, after the cooldown: on the window;
//!
//! and, apart from labels: a data-drift alarm (after the cooldown) and the
//! schedule (when labels came since the last retrain), both on the window.

/// What a model declared about retraining.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyConfig {
    /// Concept-drift alarms retrain.
    pub on_concept: bool,
    /// Data-drift alarms retrain.
    pub on_data: bool,
    /// Every this many joined labels (0: never).
    pub every_labels: u64,
    /// Retrain when the live accuracy is under this (0: never).
    pub accuracy_floor: f64,
    /// Least time between two retrains started by an alarm or the floor.
    pub cooldown_ms: i64,
    /// Fewest examples a retrain needs, and most it reads.
    pub min_train: usize,
    pub window: usize,
}

/// A retrain the policy asks for: why, and on how many of the newest examples.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Want {
    pub why: String,
    pub since: usize,
    /// Asked for by the examples since the last alarm (that alarm is then spent).
    from_alarm: bool,
}

/// The policy's memory between decisions.
#[derive(Clone, Debug)]
pub struct RetrainPolicy {
    pub config: PolicyConfig,
    last_retrain_ms: Option<i64>,
    /// Joined labels at the estimated drift point, and when the examples since
    /// it will have grown enough to retrain on them again.
    drift_point: Option<u64>,
    grow_at: Option<u64>,
    /// Joined labels at the last alarm, until the retrain on the examples
    /// since it has started.
    alarm_label: Option<u64>,
    /// Joined labels when the last retrain started.
    joined_at_retrain: u64,
}

impl RetrainPolicy {
    pub fn new(config: PolicyConfig) -> RetrainPolicy {
        RetrainPolicy {
            config,
            last_retrain_ms: None,
            drift_point: None,
            grow_at: None,
            alarm_label: None,
            joined_at_retrain: 0,
        }
    }

    fn cooled(&self, now_ms: i64) -> bool {
        self.last_retrain_ms
            .is_none_or(|at| now_ms - at >= self.config.cooldown_ms)
    }

    /// A concept-drift alarm at `joined` labels; the detector put the change
    /// `ago` labels back. Remembers the drift point; asks for a retrain on
    /// the examples since it when alarms retrain and the cooldown is over.
    pub fn concept_alarm(&mut self, joined: u64, ago: u64, now_ms: i64) -> Option<Want> {
        self.drift_point = Some(joined.saturating_sub(ago));
        self.alarm_label = Some(joined);
        (self.config.on_concept && self.cooled(now_ms)).then(|| Want {
            why: "drift".into(),
            since: ago as usize,
            from_alarm: false,
        })
    }

    /// The label-driven triggers after a joined label (`joined` in all);
    /// `live_accuracy` is given once the live window is full.
    pub fn after_label(
        &self,
        joined: u64,
        live_accuracy: Option<f64>,
        now_ms: i64,
    ) -> Option<Want> {
        let c = &self.config;
        if c.on_concept {
            if let Some(at) = self
                .alarm_label
                .filter(|at| joined >= at + c.min_train as u64)
            {
                let since = (joined - at) as usize;
                return Some(Want {
                    why: format!("{since} examples since the drift alarm"),
                    since,
                    from_alarm: true,
                });
            }
            if self.grow_at.is_some_and(|g| joined >= g) {
                let since = joined - self.drift_point.unwrap_or(0);
                return Some(Want {
                    why: format!("{since} examples since the drift point"),
                    since: since as usize,
                    from_alarm: false,
                });
            }
        }
        if c.every_labels > 0 && joined.is_multiple_of(c.every_labels) {
            return Some(Want {
                why: format!("every {} labels", c.every_labels),
                since: c.window,
                from_alarm: false,
            });
        }
        let live = live_accuracy?;
        (c.accuracy_floor > 0.0 && live < c.accuracy_floor && self.cooled(now_ms)).then(|| Want {
            why: format!("live accuracy {live:.3} under the floor"),
            since: c.window,
            from_alarm: false,
        })
    }

    /// A data-drift alarm: a retrain on the window, when data alarms retrain
    /// and the cooldown is over.
    pub fn data_alarm(&self, what: &str, now_ms: i64) -> Option<Want> {
        (self.config.on_data && self.cooled(now_ms)).then(|| Want {
            why: format!("data drift on {what}"),
            since: self.config.window,
            from_alarm: false,
        })
    }

    /// The schedule's turn: a retrain on the window if labels came since the last.
    pub fn scheduled(&self, joined: u64, every: &str) -> Option<Want> {
        (joined != self.joined_at_retrain).then(|| Want {
            why: format!("every {every}"),
            since: self.config.window,
            from_alarm: false,
        })
    }

    /// How many examples the retrain reads, with `available` at hand: those
    /// it asked for, at least `min_train`; `None` when fewer are available.
    pub fn take(&self, want: &Want, available: usize) -> Option<usize> {
        let take = want.since.max(self.config.min_train).min(available);
        (take >= self.config.min_train).then_some(take)
    }

    /// The retrain started on `take` examples at `joined` labels.
    pub fn started(&mut self, want: &Want, take: usize, joined: u64, now_ms: i64) {
        self.grow_at = match self.drift_point {
            Some(point) if take < self.config.window => Some(joined.max(point + 2 * take as u64)),
            _ => None,
        };
        self.last_retrain_ms = Some(now_ms);
        self.joined_at_retrain = joined;
        if want.from_alarm {
            self.alarm_label = None;
        }
    }

    /// A new champion answers the last alarm: no retrain on the examples since it.
    pub fn answered(&mut self) {
        self.alarm_label = None;
    }

    /// The last estimated drift point, in joined labels.
    pub fn drift_point(&self) -> Option<u64> {
        self.drift_point
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> PolicyConfig {
        PolicyConfig {
            on_concept: true,
            on_data: false,
            every_labels: 0,
            accuracy_floor: 0.0,
            cooldown_ms: 2000,
            min_train: 100,
            window: 1000,
        }
    }

    #[test]
    fn an_alarm_retrains_on_the_examples_since_the_drift_point_then_again_as_they_grow() {
        let mut policy = RetrainPolicy::new(config());
        let want = policy.concept_alarm(500, 120, 0).expect("drift retrains");
        assert_eq!((want.why.as_str(), want.since), ("drift", 120));
        let take = policy.take(&want, 5000).expect("enough");
        assert_eq!(take, 120);
        policy.started(&want, take, 500, 0);
        assert_eq!(policy.drift_point(), Some(380));
        // min_train labels after the alarm: the examples since it alone
        assert!(policy.after_label(599, None, 10).is_none());
        let want = policy.after_label(600, None, 10).expect("since the alarm");
        assert_eq!(
            (want.why.as_str(), want.since),
            ("100 examples since the drift alarm", 100)
        );
        policy.started(&want, 100, 600, 10);
        // the alarm is spent; the examples since the drift point (380 + 2 * 100
        // = 580 < 601) have grown enough: all of them
        let want = policy.after_label(601, None, 11).expect("grown");
        assert_eq!(want.why, "221 examples since the drift point");
        policy.started(&want, 221, 601, 11);
        assert!(policy.after_label(602, None, 12).is_none());
        assert!(policy.after_label(821, None, 13).is_none());
        assert!(
            policy.after_label(822, None, 13).is_some(),
            "380 + 2 * 221 = 822"
        );
    }

    #[test]
    fn the_cooldown_holds_alarms_and_the_floor_but_not_the_schedule_of_labels() {
        let mut policy = RetrainPolicy::new(PolicyConfig {
            every_labels: 50,
            accuracy_floor: 0.8,
            ..config()
        });
        let want = policy.concept_alarm(200, 150, 0).expect("drift");
        policy.started(&want, 150, 200, 0);
        assert!(
            policy.concept_alarm(250, 50, 1000).is_none(),
            "cooling down"
        );
        assert!(
            policy.after_label(249, Some(0.5), 1000).is_none(),
            "the floor cools too"
        );
        let want = policy.after_label(300, Some(0.5), 1000).expect("every 50");
        assert_eq!(want.why, "every 50 labels");
        let want = policy.after_label(301, Some(0.5), 2500).expect("the floor");
        assert!(want.why.contains("under the floor"), "{}", want.why);
        assert!(policy.after_label(301, Some(0.9), 2500).is_none());
        assert!(
            policy.after_label(301, None, 2500).is_none(),
            "no live window yet"
        );
    }

    #[test]
    fn data_alarms_and_concept_alarms_retrain_only_when_declared() {
        let mut quiet = RetrainPolicy::new(PolicyConfig {
            on_concept: false,
            ..config()
        });
        assert!(quiet.concept_alarm(500, 100, 0).is_none());
        assert!(
            quiet.after_label(600, None, 0).is_none(),
            "no retrain since the alarm either"
        );
        assert!(quiet.data_alarm("amount", 0).is_none());
        let data = RetrainPolicy::new(PolicyConfig {
            on_data: true,
            ..config()
        });
        let want = data
            .data_alarm("amount (psi 0.4)", 0)
            .expect("data retrains");
        assert_eq!(
            (want.why.as_str(), want.since),
            ("data drift on amount (psi 0.4)", 1000)
        );
    }

    #[test]
    fn a_retrain_needs_min_train_examples_and_the_schedule_needs_new_labels() {
        let mut policy = RetrainPolicy::new(config());
        let want = policy.scheduled(10, "60 s").expect("labels came");
        assert_eq!(policy.take(&want, 99), None);
        assert_eq!(policy.take(&want, 5000), Some(1000));
        policy.started(&want, 1000, 10, 0);
        assert!(policy.scheduled(10, "60 s").is_none());
        let small = Want {
            why: "x".into(),
            since: 5,
            from_alarm: false,
        };
        assert_eq!(policy.take(&small, 5000), Some(100), "at least min_train");
    }
}
