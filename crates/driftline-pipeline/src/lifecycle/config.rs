//! What a model's lifecycle is configured with.

use super::*;

pub use driftline_ml::lifecycle::Promotion;

#[derive(Clone, Debug)]
pub struct LifecycleConfig {
    /// The learner retrains use (`gbt`, `lr`, `arf`, ...).
    pub learner: String,
    /// Labelled examples kept for training.
    pub window: usize,
    /// Only examples joined this recently are trained on (a window by time;
    /// for training sets read from the lake).
    pub window_time: Option<Duration>,
    /// Fewest examples a retrain needs.
    pub min_train: usize,
    /// Share of the newest examples held out to compare challenger and champion.
    pub holdout_fraction: f64,
    /// Accuracy the challenger must gain on the holdout to be promoted.
    pub min_gain: f64,
    /// Largest mean prediction time of a challenger, in microseconds.
    pub max_latency_us: f64,
    /// Largest challenger, in bytes.
    pub max_size_bytes: usize,
    /// Least time between two drift-triggered retrains.
    pub cooldown: Duration,
    /// Retrain on a concept-drift alarm (after the cooldown).
    pub retrain_on_drift: bool,
    /// Retrain every this many labels as well (0: never).
    pub retrain_every_labels: u64,
    /// Retrain on a schedule as well.
    pub retrain_every: Option<Duration>,
    /// Online learning between retrains: the champion keeps learning from the
    /// joined examples, republished every this many of them (`None`: off).
    pub online_publish_every: Option<usize>,
    /// Retrain when the live accuracy falls under this (0: never).
    pub accuracy_floor: f64,
    /// Predictions waiting for labels, at most, and for how long.
    pub label_horizon: usize,
    pub label_horizon_ms: i64,
    /// Labels over which the live accuracy is measured.
    pub metric_window: usize,
    /// Labels after a promotion over which the predecessor is still scored.
    pub rollback_after: usize,
    /// How much better the predecessor must do to come back.
    pub rollback_margin: f64,
    pub promotion: Promotion,
    /// Labels a shadow or canary trial runs for.
    pub trial_labels: usize,
    /// The concept-drift detector on the champion's error stream.
    pub concept: ConceptSpec,
    /// Recent predictions the data-drift monitor compares with the reference,
    /// how often it looks (in predictions, and at most once a second), its
    /// test and the threshold at which a feature (or the prediction) has drifted.
    pub data_window: usize,
    pub data_check_every: usize,
    pub data_test: DataTest,
    pub data_threshold: f64,
    /// Retrain on a data-drift alarm (after the cooldown).
    pub retrain_on_data: bool,
    pub seed: u64,
}

impl LifecycleConfig {
    /// What the lifecycle's decisions depend on: the same for serving and
    /// for a replay of this model.
    pub fn spec(&self) -> LifecycleSpec {
        LifecycleSpec {
            policy: PolicyConfig {
                on_concept: self.retrain_on_drift,
                on_data: self.retrain_on_data,
                every_labels: self.retrain_every_labels,
                accuracy_floor: self.accuracy_floor,
                cooldown_ms: i64::try_from(self.cooldown.as_millis()).unwrap_or(i64::MAX),
                min_train: self.min_train,
                window: self.window,
            },
            gate: Gate {
                min_gain: self.min_gain,
                max_latency_us: self.max_latency_us,
                max_size_bytes: self.max_size_bytes,
            },
            concept: self.concept.clone(),
            data: DataSpec {
                test: self.data_test,
                threshold: self.data_threshold,
                window: self.data_window,
                every: self.data_check_every,
                // at most once a second: under heavy traffic the statistics
                // must not compete with serving
                rest_ms: 1000,
            },
            metric_window: self.metric_window,
            rollback_after: self.rollback_after,
            rollback_margin: self.rollback_margin,
            promotion: self.promotion,
            trial_labels: self.trial_labels,
            holdout_fraction: self.holdout_fraction,
        }
    }
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            learner: "gbt".into(),
            window: 20_000,
            window_time: None,
            min_train: 400,
            holdout_fraction: 0.25,
            min_gain: 0.005,
            max_latency_us: 1000.0,
            max_size_bytes: 64 << 20,
            cooldown: Duration::from_secs(2),
            retrain_on_drift: true,
            retrain_every_labels: 0,
            retrain_every: None,
            online_publish_every: None,
            accuracy_floor: 0.0,
            label_horizon: 200_000,
            label_horizon_ms: 3_600_000,
            metric_window: 1000,
            rollback_after: 500,
            rollback_margin: 0.02,
            promotion: Promotion::Direct,
            trial_labels: 500,
            concept: ConceptSpec::default(),
            data_window: 2000,
            data_check_every: 1000,
            data_test: DataTest::Psi,
            data_threshold: DataTest::Psi.default_threshold(),
            retrain_on_data: false,
            seed: 1,
        }
    }
}
