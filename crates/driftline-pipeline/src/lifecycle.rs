//! A model's lifecycle: serving with an atomic swap, late labels joined to
//! logged predictions, monitors, retraining, the promotion gate and rollback
//! (what SageMaker endpoints, Model Monitor and a retraining pipeline do in
//! the reference architecture).
//!
//! - `predict` reads the champion through an `ArcSwap`: a promotion replaces
//!   it in one atomic store, so no request fails or waits during a swap. Each
//!   prediction gets a request id, waits (bounded by count and age) for its
//!   label, and is logged to the prediction stream by a writer thread behind a
//!   bounded queue (a full queue drops and counts, never stalls a request).
//! - `label` joins a label to its prediction; the joined example feeds the
//!   live accuracy (a sliding window), ADWIN on the error stream, the rollback
//!   watch and the training window. Unmatched labels and predictions that
//!   expired unlabelled are counted.
//! - A drift alarm (after a cooldown), every N labels, a schedule, or the live
//!   accuracy under a floor starts a retrain on a bounded pool (one at a time,
//!   never on the request path) with the examples since the drift point
//!   (ADWIN's window), read back from the lake when it is the training source
//!   (see `training`), else from the in-memory window.
//!   The newest quarter is held out; challenger and champion are scored on it
//!   and the challenger is promoted only through the gate (minimum gain,
//!   prediction latency, size), else rejected. Every decision goes to the
//!   registry with its reason.
//! - After a promotion the predecessor keeps being scored on the next labels;
//!   if it beats the new champion by the rollback margin, it comes back.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use driftline_lake::{Registry, Status, TrainingData, VersionRecord};
use driftline_log::{NewRecord, StreamWriter};
use driftline_ml::drift::monitor::{ConceptSpec, DataTest};
use driftline_ml::drift::{Adwin, DriftDetector, DriftState};
use driftline_ml::features::Encoder;
use driftline_ml::learn::{artifact, classifier_by_name, Classifier};
use driftline_ml::lifecycle::{PolicyConfig, RetrainPolicy, Want};
use serde::Serialize;

use crate::trainer::{FitJob, InProcess, Trainer};
use crate::training::{TrainingSet, TrainingSource};

/// How a challenger that passed the gate reaches the traffic.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Promotion {
    /// It serves at once.
    Direct,
    /// It scores every request beside the champion (logged, not answered)
    /// until `trial_labels` of them are labelled, then serves if it did at
    /// least as well on those same requests.
    Shadow,
    /// It answers this share of the requests until `trial_labels` of its own
    /// are labelled, then serves if its accuracy is at least the champion's
    /// on the rest.
    Canary(f64),
}

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
    fn promotion_share(&self) -> Option<f64> {
        match self.promotion {
            Promotion::Canary(share) => Some(share),
            _ => None,
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

/// The model that answers, with the encoder it was trained with.
pub struct Served {
    pub version: u64,
    pub learner: String,
    pub model: Box<dyn Classifier>,
    pub encoder: Encoder,
    /// What it was trained on, for the data-drift monitor (stored beside the
    /// version in the registry; absent if it was never stored).
    pub reference: Option<Reference>,
}

/// A sample of a model's training inputs, column by column, and of its
/// scores on them: the reference the data-drift monitor compares traffic with.
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Reference {
    pub columns: Vec<Vec<f64>>,
    pub scores: Vec<f64>,
}

/// Rows kept in a reference sample.
const REFERENCE_ROWS: usize = 2000;

/// The registry attachment holding a version's reference.
const REFERENCE: &str = "reference.json";

impl Reference {
    /// Stores it beside its version, so that a restarted server monitors too.
    async fn save(&self, registry: &Registry, version: u64) -> Result<(), LifecycleError> {
        let bytes =
            serde_json::to_vec(self).map_err(|e| LifecycleError::Artifact(e.to_string()))?;
        Ok(registry.write_attachment(version, REFERENCE, bytes).await?)
    }

    /// A version's stored reference; `None` if it has none (it was trained
    /// before references were kept, or its writer stopped before storing it).
    async fn load(registry: &Registry, version: u64) -> Result<Option<Reference>, LifecycleError> {
        let Some(bytes) = registry.attachment(version, REFERENCE).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            LifecycleError::Artifact(format!("the reference of version {version}: {e}"))
        })
    }

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
fn score(probabilities: &[f64]) -> f64 {
    if probabilities.len() == 2 {
        probabilities[1]
    } else {
        driftline_ml::learn::argmax(probabilities) as f64
    }
}

impl Served {
    fn probabilities(&self, x: &[f64]) -> Vec<f64> {
        self.model.predict_proba_one(x)
    }
}

/// What happened in the lifecycle, as the demo and the logs show it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum LifecycleEvent {
    DriftAlarm {
        label: u64,
        detector: String,
        /// The live error rate when it fired.
        statistic: f64,
        /// The detector's sensitivity (its first parameter: ADWIN's delta, ...).
        threshold: f64,
        /// Examples since the estimated drift point.
        window: u64,
    },
    /// A feature's (or the prediction's) distribution in recent traffic
    /// moved away from the champion's training reference.
    DataDrift {
        version: u64,
        feature: String,
        /// The test (`psi`, `ks`, `chi_square`, `jensen_shannon`) and what it
        /// gave: the statistic, or the p-value for KS and chi-square.
        test: String,
        statistic: f64,
        threshold: f64,
        window: usize,
    },
    Retrain {
        version: u64,
        examples: usize,
        trigger: String,
    },
    /// A challenger that passed the gate is on trial beside the champion.
    TrialStarted {
        version: u64,
        mode: String,
    },
    Promoted {
        version: u64,
        previous: Option<u64>,
        accuracy: f64,
        previous_accuracy: f64,
        /// From the drift alarm that started it to the new model serving.
        drift_to_serving_ms: Option<u64>,
    },
    Rejected {
        version: u64,
        reason: String,
    },
    RolledBack {
        from: u64,
        to: u64,
        reason: String,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Prediction {
    pub request_id: String,
    pub version: u64,
    pub class: usize,
    pub probabilities: Vec<f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("no model is serving yet")]
    NoChampion,
    #[error("the event does not fit the model's features: {0}")]
    Encode(#[from] driftline_ml::features::EncodeError),
    #[error("no prediction waits for request id {0:?} (unknown, already labelled or expired)")]
    Unmatched(String),
    #[error("label {label} is not a class of the model (0..{classes})")]
    BadLabel { label: usize, classes: usize },
    #[error(transparent)]
    Lake(#[from] driftline_lake::LakeError),
    #[error("artifact: {0}")]
    Artifact(String),
    #[error("assembling a training set: {0}")]
    Training(String),
}

/// Counters of the lifecycle, for the status API and the demo.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Counters {
    pub predictions: u64,
    pub labels: u64,
    pub joined: u64,
    pub unmatched_labels: u64,
    pub expired_predictions: u64,
    pub drift_alarms: u64,
    pub data_drift_alarms: u64,
    pub retrains: u64,
    pub promotions: u64,
    pub rejections: u64,
    pub rollbacks: u64,
    /// Snapshots of the online learner served, and examples it had no room for.
    pub online_updates: u64,
    pub online_skipped: u64,
    /// Predictions the prediction log had no room for (its stream was
    /// behind by a full queue): counted, never waited for by a request.
    pub prediction_log_dropped: u64,
}

struct Pending {
    x: Vec<f64>,
    class: usize,
    version: u64,
    /// A shadow challenger's class for the same request.
    shadow: Option<(u64, usize)>,
}

/// A challenger on trial (shadow or canary) and how the two have done.
struct Trial {
    served: Arc<Served>,
    canary_share: Option<f64>,
    alarm: Option<Instant>,
    reason: String,
    challenger_seen: usize,
    challenger_correct: usize,
    champion_seen: usize,
    champion_correct: usize,
}

struct Watch {
    previous: Arc<Served>,
    remaining: usize,
    champion_correct: usize,
    previous_correct: usize,
    seen: usize,
}

struct State {
    pending: HashMap<String, Pending>,
    order: VecDeque<(String, i64)>,
    window: VecDeque<(Vec<f64>, usize)>,
    live: VecDeque<bool>,
    live_correct: usize,
    detector: Box<dyn DriftDetector>,
    /// The last concept-drift alarm, for the time from it to a new model serving.
    alarm: Option<Instant>,
    /// When to retrain, and on what (plain code, shared with backtest).
    policy: RetrainPolicy,
    watch: Option<Watch>,
    trial: Option<Trial>,
    counters: Counters,
    /// Recent inputs and scores, for the data-drift monitor.
    recent: VecDeque<(Vec<f64>, f64)>,
    since_check: usize,
    last_check: Option<Instant>,
    /// Features (and "prediction") currently past the PSI threshold.
    drifting: std::collections::BTreeSet<String>,
}

pub struct ModelService {
    name: String,
    config: LifecycleConfig,
    n_classes: usize,
    registry: Registry,
    champion: ArcSwap<Served>,
    /// The challenger on trial, read by predictions without a lock.
    trial_model: arc_swap::ArcSwapOption<Served>,
    state: Mutex<State>,
    training: tokio::sync::Semaphore,
    events: tokio::sync::broadcast::Sender<LifecycleEvent>,
    history: Mutex<Vec<LifecycleEvent>>,
    log: Option<std::sync::mpsc::SyncSender<NewRecord>>,
    /// Where joined examples go (a stream the lake delivery reads), if anywhere.
    joined_log: std::sync::OnceLock<std::sync::mpsc::SyncSender<NewRecord>>,
    /// Where retrains read their examples, if not from the in-memory window.
    training_source: std::sync::OnceLock<TrainingSource>,
    /// Where challengers are fitted, if not in this process.
    trainer: std::sync::OnceLock<Arc<dyn Trainer>>,
    online: std::sync::OnceLock<crate::online::OnlineLearner>,
    next_request: AtomicU64,
    /// Predictions not logged because the log's queue was full.
    log_dropped: AtomicU64,
    runtime: tokio::runtime::Handle,
    /// The policy's clock: milliseconds since the service started.
    clock: Instant,
}

impl ModelService {
    /// Starts a service around `champion`; predictions are logged to
    /// `prediction_log` when given. Needs to be called inside a tokio runtime.
    pub fn new(
        name: &str,
        config: LifecycleConfig,
        n_classes: usize,
        registry: Registry,
        champion: Served,
        prediction_log: Option<Arc<dyn StreamWriter>>,
    ) -> Arc<ModelService> {
        let log = prediction_log.map(log_writer);
        let (events, _) = tokio::sync::broadcast::channel(1024);
        let service = Arc::new(ModelService {
            name: name.to_string(),
            n_classes,
            registry,
            champion: ArcSwap::from_pointee(champion),
            trial_model: arc_swap::ArcSwapOption::empty(),
            state: Mutex::new(State {
                // Sized up front, up to a point: growing a map of many
                // thousands of entries under the lock stalls every request.
                pending: HashMap::with_capacity(config.label_horizon.min(1 << 16)),
                order: VecDeque::new(),
                window: VecDeque::new(),
                live: VecDeque::new(),
                live_correct: 0,
                detector: config.concept.build().unwrap_or_else(|error| {
                    // Checked when the pipeline is read; a config built in code may not be.
                    tracing::warn!(model = name, %error, "concept detector refused: ADWIN instead");
                    Box::new(Adwin::default())
                }),
                alarm: None,
                policy: RetrainPolicy::new(policy_config(&config)),
                watch: None,
                trial: None,
                counters: Counters::default(),
                recent: VecDeque::new(),
                since_check: 0,
                last_check: None,
                drifting: std::collections::BTreeSet::new(),
            }),
            config,
            training: tokio::sync::Semaphore::new(1),
            events,
            history: Mutex::new(Vec::new()),
            log,
            joined_log: std::sync::OnceLock::new(),
            training_source: std::sync::OnceLock::new(),
            trainer: std::sync::OnceLock::new(),
            online: std::sync::OnceLock::new(),
            next_request: AtomicU64::new(0),
            log_dropped: AtomicU64::new(0),
            runtime: tokio::runtime::Handle::current(),
            clock: Instant::now(),
        });
        if let Some(every) = service.config.online_publish_every {
            let learner = crate::online::OnlineLearner::start(Arc::downgrade(&service), every);
            let _ = service.online.set(learner);
        }
        if let Some(every) = service.config.retrain_every {
            // Holds the service weakly: the schedule ends when the service does.
            let weak = Arc::downgrade(&service);
            service.runtime.spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let Some(service) = weak.upgrade() else { break };
                    service.scheduled_retrain(every);
                }
            });
        }
        service
    }

    /// Trains a first version on `examples`, registers it and makes it the
    /// champion: the cold start of a model that has no version yet.
    pub async fn bootstrap(
        registry: &Registry,
        config: &LifecycleConfig,
        encoder: Encoder,
        n_classes: usize,
        examples: Vec<(Vec<f64>, usize)>,
    ) -> Result<Served, LifecycleError> {
        let data = TrainingData {
            examples: examples.len(),
            window: "bootstrap: the first labelled events".into(),
            ..TrainingData::default()
        };
        Self::bootstrap_from(
            registry,
            config,
            encoder,
            n_classes,
            TrainingSet { examples, data },
        )
        .await
    }

    /// [`ModelService::bootstrap`] on a training set whose origin is recorded
    /// (a lake table's objects, say).
    pub async fn bootstrap_from(
        registry: &Registry,
        config: &LifecycleConfig,
        encoder: Encoder,
        n_classes: usize,
        set: TrainingSet,
    ) -> Result<Served, LifecycleError> {
        let learner = config.learner.clone();
        let training = set.data;
        let (xs, ys): (Vec<Vec<f64>>, Vec<usize>) = set.examples.into_iter().unzip();
        let width = encoder.width();
        let seed = config.seed;
        let (model, accuracy, reference) = tokio::task::spawn_blocking(move || {
            let mut model = classifier_by_name(&learner, width, n_classes, seed)
                .map_err(|e| LifecycleError::Artifact(e.to_string()))?;
            model.fit(&xs, &ys);
            let accuracy = accuracy(model.as_ref(), &xs, &ys);
            let reference = Reference::of(model.as_ref(), &xs);
            Ok::<_, LifecycleError>((model, accuracy, reference))
        })
        .await
        .map_err(|e| LifecycleError::Artifact(e.to_string()))??;
        let record = VersionRecord {
            version: 0,
            parent: None,
            learner: config.learner.clone(),
            parameters: serde_json::json!({"learner": config.learner, "seed": config.seed}),
            training,
            metrics: BTreeMap::from([("training_accuracy".to_string(), accuracy)]),
            created_ms: 0,
            artifact: String::new(),
        };
        let record = registry
            .register(record, artifact::save(model.as_ref(), Some(&encoder)))
            .await?;
        reference.save(registry, record.version).await?;
        registry
            .decide(
                record.version,
                Status::Champion,
                "bootstrap: the first version",
                BTreeMap::new(),
            )
            .await?;
        Ok(Served {
            version: record.version,
            learner: config.learner.clone(),
            model,
            encoder,
            reference: Some(reference),
        })
    }

    /// The registry's champion, loaded from its artifact.
    pub async fn load_champion(registry: &Registry) -> Result<Option<Served>, LifecycleError> {
        let Some(champion) = registry.champion().await? else {
            return Ok(None);
        };
        let bytes = registry.artifact(&champion.record).await?;
        let (model, encoder) =
            artifact::load(&bytes).map_err(|e| LifecycleError::Artifact(e.to_string()))?;
        let encoder = encoder
            .ok_or_else(|| LifecycleError::Artifact("the artifact has no encoder".into()))?;
        let reference = Reference::load(registry, champion.record.version).await?;
        Ok(Some(Served {
            version: champion.record.version,
            learner: champion.record.learner,
            model,
            encoder,
            reference,
        }))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Writes every joined example (features, label, the prediction and its
    /// version) to `stream` from now on, for the lake to keep as training data.
    pub fn log_joined_to(&self, stream: Arc<dyn StreamWriter>) {
        let _ = self.joined_log.set(log_writer(stream));
    }

    /// Retrains fit their challengers with `trainer` (a SageMaker training
    /// job, say) instead of in this process.
    pub fn train_with(&self, trainer: Arc<dyn Trainer>) {
        let _ = self.trainer.set(trainer);
    }

    /// Retrains read their examples from the lake table (and the stream) the
    /// joined examples are delivered to, and record exactly which.
    pub fn train_from(&self, source: TrainingSource) {
        let _ = self.training_source.set(source);
    }

    /// The model serving now.
    pub(crate) fn champion_snapshot(&self) -> Arc<Served> {
        self.champion.load_full()
    }

    /// Serves the online learner's snapshot of `version`, if that version
    /// still serves (a promotion in between makes it stale).
    pub(crate) fn publish_online(&self, version: u64, model: Box<dyn Classifier>) {
        let mut state = self.lock();
        let current = self.champion.load();
        if current.version != version {
            return;
        }
        self.champion.store(Arc::new(Served {
            version,
            learner: current.learner.clone(),
            model,
            encoder: current.encoder.clone(),
            reference: current.reference.clone(),
        }));
        state.counters.online_updates += 1;
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<LifecycleEvent> {
        self.events.subscribe()
    }

    pub fn history(&self) -> Vec<LifecycleEvent> {
        self.history.lock().map(|h| h.clone()).unwrap_or_default()
    }

    pub fn champion_version(&self) -> u64 {
        self.champion.load().version
    }

    pub fn counters(&self) -> Counters {
        let mut counters = self.lock().counters.clone();
        counters.prediction_log_dropped = self.log_dropped.load(Ordering::Relaxed);
        counters
    }

    /// Accuracy over the last `metric_window` joined labels.
    pub fn live_accuracy(&self) -> Option<f64> {
        let state = self.lock();
        (!state.live.is_empty()).then(|| state.live_correct as f64 / state.live.len() as f64)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn emit(&self, event: LifecycleEvent) {
        tracing::debug!(model = %self.name, event = ?event, "lifecycle");
        if let Ok(mut history) = self.history.lock() {
            history.push(event.clone());
        }
        let _ = self.events.send(event);
    }

    /// Predicts one event with the champion and remembers it for its label.
    pub fn predict(
        self: &Arc<Self>,
        features: &serde_json::Value,
    ) -> Result<Prediction, LifecycleError> {
        let champion = self.champion.load_full();
        let number = self.next_request.fetch_add(1, Ordering::Relaxed);
        let request_id = format!("{}-{}", self.name, number);
        // A canary answers its share of the requests; a shadow scores them all.
        let trial = self.trial_model.load_full();
        let canary = self.config.promotion_share().filter(|share| {
            // a fixed, well-mixed share of the request numbers
            let draw =
                (number.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64 / (1u64 << 53) as f64;
            trial.is_some() && draw < *share
        });
        let served = match (&trial, canary) {
            (Some(challenger), Some(_)) => challenger.clone(),
            _ => champion,
        };
        let x = served.encoder.encode_json_frozen(features)?;
        let probabilities = served.probabilities(&x);
        let class = driftline_ml::learn::argmax(&probabilities);
        let shadow = match (&trial, self.config.promotion) {
            (Some(challenger), Promotion::Shadow) => Some((
                challenger.version,
                driftline_ml::learn::argmax(&challenger.probabilities(&x)),
            )),
            _ => None,
        };
        let now = driftline_log::now_ms();
        {
            let mut state = self.lock();
            state.counters.predictions += 1;
            state.recent.push_back((x.clone(), score(&probabilities)));
            if state.recent.len() > self.config.data_window {
                state.recent.pop_front();
            }
            state.since_check += 1;
            // Every `data_check_every` predictions, and at most once a second:
            // under heavy traffic the statistics must not compete with serving.
            let rested = state
                .last_check
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
            // ... and on enough traffic since the champion took over.
            let enough = state.recent.len() >= self.config.data_window.div_ceil(2);
            if state.since_check >= self.config.data_check_every && rested && enough {
                state.since_check = 0;
                state.last_check = Some(Instant::now());
                if let Some(reference) = served.reference.clone() {
                    let recent: Vec<(Vec<f64>, f64)> = state.recent.iter().cloned().collect();
                    let service = Arc::clone(self);
                    let version = served.version;
                    let names = served.encoder.feature_names();
                    // Off the request path: the statistics cost a few sorts.
                    self.runtime.spawn_blocking(move || {
                        service.check_data_drift(version, &names, &reference, &recent)
                    });
                }
            }
            state.pending.insert(
                request_id.clone(),
                Pending {
                    x,
                    class,
                    version: served.version,
                    shadow,
                },
            );
            state.order.push_back((request_id.clone(), now));
            while let Some((id, at)) = state.order.front().cloned() {
                let full = state.order.len() > self.config.label_horizon;
                if !full && at >= now - self.config.label_horizon_ms {
                    break;
                }
                state.order.pop_front();
                if state.pending.remove(&id).is_some() {
                    state.counters.expired_predictions += 1;
                }
            }
        }
        let prediction = Prediction {
            request_id,
            version: served.version,
            class,
            probabilities,
        };
        if let Some(log) = &self.log {
            // Written straight from borrowed fields: no JSON tree per request.
            #[derive(Serialize)]
            struct Logged<'a> {
                request_id: &'a str,
                model: &'a str,
                version: u64,
                class: usize,
                probabilities: &'a [f64],
                features: &'a serde_json::Value,
                at_ms: i64,
            }
            let record = Logged {
                request_id: &prediction.request_id,
                model: &self.name,
                version: prediction.version,
                class: prediction.class,
                probabilities: &prediction.probabilities,
                features,
                at_ms: now,
            };
            if let Ok(data) = serde_json::to_vec(&record) {
                // Never waits: a request runs on the serving runtime, and a
                // throttled log stream must not stall every request with it.
                let logged = log.try_send(NewRecord {
                    partition_key: prediction.request_id.clone(),
                    explicit_hash_key: None,
                    data,
                });
                if let Err(std::sync::mpsc::TrySendError::Full(_)) = logged {
                    let dropped = self.log_dropped.fetch_add(1, Ordering::Relaxed);
                    if dropped.is_multiple_of(10_000) {
                        tracing::warn!(model = %self.name, dropped = dropped + 1, "the prediction log is behind: predictions go unlogged");
                    }
                }
            }
        }
        Ok(prediction)
    }

    /// Compares recent traffic with the champion's training reference, feature
    /// by feature and for the prediction, by PSI; alarms when one crosses the
    /// threshold (once, until it comes back under it).
    fn check_data_drift(
        self: &Arc<Self>,
        version: u64,
        names: &[String],
        reference: &Reference,
        recent: &[(Vec<f64>, f64)],
    ) {
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
        let threshold = self.config.data_threshold;
        for (name, reference, current) in checks {
            let Ok((statistic, drifted)) =
                self.config.data_test.judge(reference, &current, threshold)
            else {
                continue;
            };
            let alarm = {
                let mut state = self.lock();
                if self.champion_version() != version {
                    return; // a newer champion has its own reference
                }
                if drifted {
                    let new = state.drifting.insert(name.clone());
                    if new {
                        state.counters.data_drift_alarms += 1;
                    }
                    new
                } else {
                    state.drifting.remove(&name);
                    false
                }
            };
            if alarm {
                self.emit(LifecycleEvent::DataDrift {
                    version,
                    feature: name.clone(),
                    test: self.config.data_test.name().to_string(),
                    statistic,
                    threshold,
                    window: current.len(),
                });
                let state = self.lock();
                let what = format!("{name} ({} {statistic:.4})", self.config.data_test.name());
                if let Some(want) = state.policy.data_alarm(&what, self.now_ms()) {
                    self.start_retrain(state, want);
                }
            }
        }
    }

    /// Joins a label to its prediction and feeds the monitors; may start a
    /// retrain or a rollback in the background.
    pub fn label(self: &Arc<Self>, request_id: &str, label: usize) -> Result<bool, LifecycleError> {
        if label >= self.n_classes {
            return Err(LifecycleError::BadLabel {
                label,
                classes: self.n_classes,
            });
        }
        let pending = {
            let mut state = self.lock();
            state.counters.labels += 1;
            let Some(pending) = state.pending.remove(request_id) else {
                state.counters.unmatched_labels += 1;
                return Err(LifecycleError::Unmatched(request_id.to_string()));
            };
            state.counters.joined += 1;
            pending
        };
        // Logged outside the lock: the send waits when the writer is behind,
        // and predictions must not wait with it.
        if let Some(log) = self.joined_log.get() {
            let champion = self.champion.load();
            let features: serde_json::Map<String, serde_json::Value> = champion
                .encoder
                .feature_names()
                .into_iter()
                .zip(&pending.x)
                .map(|(name, value)| (name, serde_json::json!(value)))
                .collect();
            let record = serde_json::json!({
                "request_id": request_id,
                "model": self.name,
                "version": pending.version,
                "class": pending.class,
                "label": label,
                "joined_ms": driftline_log::now_ms(),
                "features": features,
            });
            // Blocks when the writer is behind: the queue is bounded.
            let _ = log.send(NewRecord {
                partition_key: request_id.to_string(),
                explicit_hash_key: None,
                data: record.to_string().into_bytes(),
            });
        }
        let mut state = self.lock();
        let correct = pending.class == label;
        state.live.push_back(correct);
        state.live_correct += usize::from(correct);
        if state.live.len() > self.config.metric_window {
            let dropped = state.live.pop_front().unwrap_or(false);
            state.live_correct -= usize::from(dropped);
        }
        let champion = self.champion.load();
        let rolled_back = self.watch(&mut state, &pending, label, champion.version);
        let judged = self.judge_trial(&mut state, &pending, label, champion.version);
        if let Some(online) = self.online.get() {
            if !online.offer(pending.x.clone(), label) {
                state.counters.online_skipped += 1;
            }
        }
        // The in-memory window is the training set only without a lake source.
        if self.training_source.get().is_none() {
            state.window.push_back((pending.x, label));
            if state.window.len() > self.config.window {
                state.window.pop_front();
            }
        }
        if rolled_back || judged {
            return Ok(true);
        }
        // Concept drift on the champion's error stream.
        let drifted = pending.version == champion.version
            && state.detector.update(f64::from(u8::from(!correct))) == DriftState::Drift;
        let joined = state.counters.joined;
        let now_ms = self.now_ms();
        let mut want = None;
        if drifted {
            state.counters.drift_alarms += 1;
            // Where the detector puts the change, else the fewest a retrain needs.
            let window = state
                .detector
                .drift_point_ago()
                .unwrap_or(self.config.min_train as u64);
            let errors = state.live.len() - state.live_correct;
            self.emit(LifecycleEvent::DriftAlarm {
                label: joined,
                detector: state.detector.name().into(),
                statistic: errors as f64 / state.live.len().max(1) as f64,
                threshold: self.config.concept.sensitivity(),
                window,
            });
            state.alarm = Some(Instant::now());
            want = state.policy.concept_alarm(joined, window, now_ms);
        }
        if want.is_none() {
            let full = state.live.len() >= self.config.metric_window;
            let live = full.then(|| state.live_correct as f64 / state.live.len() as f64);
            want = state.policy.after_label(joined, live, now_ms);
        }
        let Some(want) = want else {
            return Ok(false);
        };
        Ok(self.start_retrain(state, want))
    }

    /// Retrains on the schedule: the newest window of joined examples.
    fn scheduled_retrain(self: &Arc<Self>, every: Duration) {
        let state = self.lock();
        let every = format!("{} s", every.as_secs_f64());
        if let Some(want) = state.policy.scheduled(state.counters.joined, &every) {
            self.start_retrain(state, want);
        }
    }

    /// Milliseconds on the policy's clock.
    fn now_ms(&self) -> i64 {
        i64::try_from(self.clock.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    /// Starts the retrain the policy asked for unless one is under way or too
    /// few examples are at hand; true if it did.
    fn start_retrain(
        self: &Arc<Self>,
        mut state: std::sync::MutexGuard<'_, State>,
        want: Want,
    ) -> bool {
        let joined = state.counters.joined;
        // The lake holds more than the in-memory window after a restart.
        let available = if self.training_source.get().is_some() {
            self.config.window
        } else {
            state.window.len()
        };
        // One challenger at a time: none while one trains or is on trial.
        let busy = self.training.available_permits() == 0 || state.trial.is_some();
        let Some(take) = state.policy.take(&want, available).filter(|_| !busy) else {
            return false;
        };
        // From the lake when it is the training source, else from the window.
        let examples: Option<Vec<(Vec<f64>, usize)>> =
            self.training_source.get().is_none().then(|| {
                state
                    .window
                    .iter()
                    .skip(state.window.len() - take)
                    .cloned()
                    .collect()
            });
        state.policy.started(&want, take, joined, self.now_ms());
        let why = want.why;
        // Drift-to-serving time runs from an alarm to the first promotion after it.
        let alarm = state.alarm;
        drop(state);
        let service = Arc::clone(self);
        self.runtime.spawn(async move {
            let name = service.name.clone();
            if let Err(error) = service.retrain(why, take, examples, alarm).await {
                tracing::warn!(model = %name, %error, "retrain failed");
            }
        });
        true
    }

    /// The rollback watch: scores the predecessor beside the new champion and
    /// brings it back if it does better. True when it rolled back.
    fn watch(&self, state: &mut State, pending: &Pending, label: usize, champion: u64) -> bool {
        let Some(watch) = state.watch.as_mut() else {
            return false;
        };
        if pending.version != champion {
            return false;
        }
        watch.seen += 1;
        watch.champion_correct += usize::from(pending.class == label);
        let previous = driftline_ml::learn::argmax(&watch.previous.probabilities(&pending.x));
        watch.previous_correct += usize::from(previous == label);
        watch.remaining = watch.remaining.saturating_sub(1);
        if watch.remaining > 0 {
            return false;
        }
        let Some(watch) = state.watch.take() else {
            return false;
        };
        let (mine, theirs) = (
            watch.champion_correct as f64 / watch.seen as f64,
            watch.previous_correct as f64 / watch.seen as f64,
        );
        if theirs <= mine + self.config.rollback_margin {
            return false;
        }
        let from = champion;
        let to = watch.previous.version;
        self.champion.store(watch.previous);
        state.detector.reset();
        state.drifting.clear();
        state.recent.clear();
        state.counters.rollbacks += 1;
        let reason = format!(
            "live accuracy over {} labels: v{from} {mine:.3}, v{to} {theirs:.3} (margin {})",
            watch.seen, self.config.rollback_margin
        );
        self.emit(LifecycleEvent::RolledBack {
            from,
            to,
            reason: reason.clone(),
        });
        let registry = self.registry.clone();
        let metrics = BTreeMap::from([
            ("live_accuracy_rolled_back".to_string(), mine),
            ("live_accuracy".to_string(), theirs),
        ]);
        self.runtime.spawn(async move {
            let rollback = format!("rollback from v{from}: {reason}");
            if let Err(error) = registry
                .decide(to, Status::Champion, &rollback, metrics)
                .await
            {
                tracing::warn!(%error, "cannot record the rollback");
            }
        });
        true
    }

    /// Makes a registered version the champion by hand (`driftline models
    /// promote`); the rollback watch guards it like any promotion. `by` is the
    /// access key that asked, recorded in the registry's decision.
    pub async fn promote(
        &self,
        version: u64,
        reason: &str,
        by: Option<&str>,
    ) -> Result<(), LifecycleError> {
        let target = self
            .registry
            .versions()
            .await?
            .into_iter()
            .find(|v| v.record.version == version)
            .ok_or_else(|| {
                LifecycleError::Artifact(format!("version {version} is not in the registry"))
            })?;
        let bytes = self.registry.artifact(&target.record).await?;
        let (model, encoder) =
            artifact::load(&bytes).map_err(|e| LifecycleError::Artifact(e.to_string()))?;
        let encoder = encoder
            .ok_or_else(|| LifecycleError::Artifact("the artifact has no encoder".into()))?;
        let reference = Reference::load(&self.registry, version).await?;
        self.registry
            .decide_by(version, Status::Champion, reason, BTreeMap::new(), by)
            .await?;
        let previous = self.champion.load_full();
        let previous_version = previous.version;
        {
            let mut state = self.lock();
            let served = Arc::new(Served {
                version,
                learner: target.record.learner.clone(),
                model,
                encoder,
                reference,
            });
            self.install(&mut state, served, previous, None);
        }
        let holdout = |key: &str| target.record.metrics.get(key).copied().unwrap_or(f64::NAN);
        self.emit(LifecycleEvent::Promoted {
            version,
            previous: Some(previous_version),
            accuracy: holdout("holdout_accuracy"),
            previous_accuracy: holdout("champion_holdout_accuracy"),
            drift_to_serving_ms: None,
        });
        Ok(())
    }

    /// Brings back the champion before the current one (`driftline models
    /// rollback`). Returns the version that serves now.
    pub async fn rollback(&self, reason: &str, by: Option<&str>) -> Result<u64, LifecycleError> {
        let current = self.champion_version();
        let mut champions: Vec<(u64, u64)> = self
            .registry
            .versions()
            .await?
            .iter()
            .flat_map(|v| v.decisions.iter())
            .filter(|d| d.status == Status::Champion)
            .map(|d| (d.seq, d.version))
            .collect();
        champions.sort_unstable();
        let previous = champions
            .iter()
            .rev()
            .map(|(_, version)| *version)
            .find(|version| *version != current)
            .ok_or_else(|| {
                LifecycleError::Artifact(format!("v{current} has no predecessor to roll back to"))
            })?;
        self.promote(previous, &format!("rollback from v{current}: {reason}"), by)
            .await?;
        self.lock().counters.rollbacks += 1;
        self.emit(LifecycleEvent::RolledBack {
            from: current,
            to: previous,
            reason: reason.to_string(),
        });
        Ok(previous)
    }

    /// Trains a challenger, scores it against the champion on the newest
    /// examples neither trained on, and promotes or rejects it.
    async fn retrain(
        self: Arc<Self>,
        trigger: String,
        take: usize,
        examples: Option<Vec<(Vec<f64>, usize)>>,
        alarm: Option<Instant>,
    ) -> Result<(), LifecycleError> {
        let Ok(_permit) = self.training.try_acquire() else {
            return Ok(()); // one retrain at a time
        };
        // ... and across models, no more in this process than the pool allows.
        let trainer = self
            .trainer
            .get()
            .cloned()
            .unwrap_or_else(|| Arc::new(InProcess));
        let _slot = match trainer.remote() {
            true => None,
            false => Some(
                training_pool()
                    .acquire()
                    .await
                    .map_err(|e| LifecycleError::Artifact(e.to_string()))?,
            ),
        };
        let champion = self.champion.load_full();
        let (examples, training) = match (examples, self.training_source.get()) {
            (Some(examples), _) => {
                let window = format!("the last {} joined examples (in memory)", examples.len());
                let data = TrainingData {
                    examples: examples.len(),
                    window,
                    ..TrainingData::default()
                };
                (examples, data)
            }
            (None, Some(source)) => {
                let since_ms = self
                    .config
                    .window_time
                    .map(|t| driftline_log::now_ms() - t.as_millis() as i64);
                let set = source
                    .newest(take, since_ms, &champion.encoder.feature_names())
                    .await?;
                (set.examples, set.data)
            }
            (None, None) => return Ok(()),
        };
        if examples.len() < self.config.min_train.max(2) {
            tracing::warn!(model = %self.name, found = examples.len(), "too few joined examples to retrain on");
            return Ok(());
        }
        let mut examples = examples;
        let holdout = ((examples.len() as f64 * self.config.holdout_fraction) as usize).max(1);
        let test = examples.split_off(examples.len() - holdout);
        let (xs, ys): (Vec<Vec<f64>>, Vec<usize>) = examples.into_iter().unzip();
        let xs = Arc::new(xs);
        let job = FitJob {
            model: self.name.clone(),
            learner: self.config.learner.clone(),
            seed: self.config.seed,
            n_classes: self.n_classes,
            width: champion.encoder.width(),
            xs: xs.clone(),
            ys,
        };
        let model = trainer.fit(job).await.map_err(|e| {
            LifecycleError::Artifact(format!("{} training failed: {e}", trainer.place()))
        })?;
        let (test_x, test_y): (Vec<Vec<f64>>, Vec<usize>) = test.into_iter().unzip();
        let scored_champion = champion.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let challenger_accuracy = accuracy(model.as_ref(), &test_x, &test_y);
            let latency_us = started.elapsed().as_secs_f64() * 1e6 / test_x.len().max(1) as f64;
            let champion_accuracy = accuracy(scored_champion.model.as_ref(), &test_x, &test_y);
            let reference = Reference::of(model.as_ref(), &xs);
            Ok::<_, LifecycleError>((
                (model, reference),
                challenger_accuracy,
                champion_accuracy,
                latency_us,
                xs.len(),
                holdout,
            ))
        })
        .await
        .map_err(|e| LifecycleError::Artifact(e.to_string()))??;
        let (
            (model, reference),
            challenger_accuracy,
            champion_accuracy,
            latency_us,
            trained_on,
            holdout,
        ) = outcome;
        let size = model.size_bytes();
        let metrics = BTreeMap::from([
            ("holdout_accuracy".to_string(), challenger_accuracy),
            ("champion_holdout_accuracy".to_string(), champion_accuracy),
            ("predict_latency_us".to_string(), latency_us),
            ("size_bytes".to_string(), size as f64),
        ]);
        let record = VersionRecord {
            version: 0,
            parent: Some(champion.version),
            learner: self.config.learner.clone(),
            parameters: serde_json::json!({"learner": self.config.learner, "seed": self.config.seed, "trained": trainer.place()}),
            training: TrainingData {
                examples: trained_on,
                window: format!(
                    "{trigger}: {}; the newest {holdout} held out",
                    training.window
                ),
                ..training
            },
            metrics: metrics.clone(),
            created_ms: 0,
            artifact: String::new(),
        };
        let record = self
            .registry
            .register(
                record,
                artifact::save(model.as_ref(), Some(&champion.encoder)),
            )
            .await?;
        reference.save(&self.registry, record.version).await?;
        self.lock().counters.retrains += 1;
        self.emit(LifecycleEvent::Retrain {
            version: record.version,
            examples: trained_on,
            trigger,
        });
        let gain = challenger_accuracy - champion_accuracy;
        let refusal = if gain < self.config.min_gain {
            Some(format!(
                "gain {gain:.4} on {holdout} held-out examples is under the minimum {} (challenger {challenger_accuracy:.4}, champion {champion_accuracy:.4})",
                self.config.min_gain
            ))
        } else if latency_us > self.config.max_latency_us {
            Some(format!(
                "prediction takes {latency_us:.1} µs, over the bound {}",
                self.config.max_latency_us
            ))
        } else if size > self.config.max_size_bytes {
            Some(format!(
                "{size} bytes, over the bound {}",
                self.config.max_size_bytes
            ))
        } else {
            None
        };
        if let Some(reason) = refusal {
            self.registry
                .decide(record.version, Status::Rejected, &reason, metrics)
                .await?;
            self.lock().counters.rejections += 1;
            self.emit(LifecycleEvent::Rejected {
                version: record.version,
                reason,
            });
            return Ok(());
        }
        let reason = format!(
            "gain {gain:.4} on {holdout} held-out examples (challenger {challenger_accuracy:.4}, champion v{} {champion_accuracy:.4})",
            champion.version
        );
        let served = Arc::new(Served {
            version: record.version,
            learner: record.learner.clone(),
            model,
            encoder: champion.encoder.clone(),
            reference: Some(reference),
        });
        let canary_share = match self.config.promotion {
            Promotion::Direct => None,
            Promotion::Shadow => {
                self.start_trial(served, None, alarm, reason, metrics)
                    .await?;
                return Ok(());
            }
            Promotion::Canary(share) => Some(share),
        };
        if let Some(share) = canary_share {
            self.start_trial(served, Some(share), alarm, reason, metrics)
                .await?;
            return Ok(());
        }
        self.registry
            .decide(record.version, Status::Champion, &reason, metrics)
            .await?;
        let drift_to_serving_ms = {
            let mut state = self.lock();
            self.install(&mut state, served, champion.clone(), alarm)
        };
        self.emit(LifecycleEvent::Promoted {
            version: record.version,
            previous: Some(champion.version),
            accuracy: challenger_accuracy,
            previous_accuracy: champion_accuracy,
            drift_to_serving_ms,
        });
        Ok(())
    }

    /// Puts a challenger that passed the gate on trial: as a shadow (`share`
    /// none) or as a canary answering that share of the requests.
    async fn start_trial(
        &self,
        served: Arc<Served>,
        share: Option<f64>,
        alarm: Option<Instant>,
        reason: String,
        metrics: BTreeMap<String, f64>,
    ) -> Result<(), LifecycleError> {
        let (status, mode) = match share {
            None => (Status::Shadow, "shadow".to_string()),
            Some(share) => (
                Status::Canary,
                format!("canary on {:.0} % of requests", share * 100.0),
            ),
        };
        let version = served.version;
        self.registry
            .decide(version, status, &format!("{mode}: {reason}"), metrics)
            .await?;
        {
            let mut state = self.lock();
            state.trial = Some(Trial {
                served: served.clone(),
                canary_share: share,
                alarm,
                reason,
                challenger_seen: 0,
                challenger_correct: 0,
                champion_seen: 0,
                champion_correct: 0,
            });
            self.trial_model.store(Some(served));
        }
        self.emit(LifecycleEvent::TrialStarted { version, mode });
        Ok(())
    }

    /// Makes `served` the champion (the caller holds the state): resets the
    /// monitors and starts the rollback watch. Returns the time from the
    /// drift alarm it answers, if that alarm is still the latest.
    fn install(
        &self,
        state: &mut State,
        served: Arc<Served>,
        previous: Arc<Served>,
        alarm: Option<Instant>,
    ) -> Option<u64> {
        self.champion.store(served);
        state.policy.answered();
        state.detector.reset();
        state.drifting.clear();
        state.recent.clear();
        state.counters.promotions += 1;
        state.watch = Some(Watch {
            previous,
            remaining: self.config.rollback_after,
            champion_correct: 0,
            previous_correct: 0,
            seen: 0,
        });
        let answered = alarm.filter(|a| state.alarm == Some(*a));
        if answered.is_some() {
            state.alarm = None;
        }
        answered.map(|t| t.elapsed().as_millis() as u64)
    }

    /// Scores a trial on one joined label and ends it when it has run its
    /// course: the challenger serves if it did at least as well, else it is
    /// rejected. True when it ended.
    fn judge_trial(
        &self,
        state: &mut State,
        pending: &Pending,
        label: usize,
        champion: u64,
    ) -> bool {
        let Some(trial) = state.trial.as_mut() else {
            return false;
        };
        let version = trial.served.version;
        if pending.version == version {
            trial.challenger_seen += 1;
            trial.challenger_correct += usize::from(pending.class == label);
        } else if pending.version == champion {
            trial.champion_seen += 1;
            trial.champion_correct += usize::from(pending.class == label);
            if let Some((shadow_version, class)) = pending.shadow {
                if shadow_version == version {
                    trial.challenger_seen += 1;
                    trial.challenger_correct += usize::from(class == label);
                }
            }
        }
        if trial.challenger_seen < self.config.trial_labels {
            return false;
        }
        let Some(trial) = state.trial.take() else {
            return false;
        };
        self.trial_model.store(None);
        let mine = trial.challenger_correct as f64 / trial.challenger_seen as f64;
        let theirs = trial.champion_correct as f64 / trial.champion_seen.max(1) as f64;
        let mode = if trial.canary_share.is_some() {
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
            trial.challenger_seen, trial.champion_seen
        );
        let (status, reason) = if mine >= theirs {
            let previous = self.champion.load_full();
            let drift_to_serving_ms =
                self.install(state, trial.served.clone(), previous, trial.alarm);
            self.emit(LifecycleEvent::Promoted {
                version,
                previous: Some(champion),
                accuracy: mine,
                previous_accuracy: theirs,
                drift_to_serving_ms,
            });
            (Status::Champion, format!("{summary}; {}", trial.reason))
        } else {
            state.counters.rejections += 1;
            let reason = format!("{summary}: the challenger did worse");
            self.emit(LifecycleEvent::Rejected {
                version,
                reason: reason.clone(),
            });
            (Status::Rejected, reason)
        };
        let registry = self.registry.clone();
        self.runtime.spawn(async move {
            if let Err(error) = registry.decide(version, status, &reason, metrics).await {
                tracing::warn!(%error, "cannot record the end of a trial");
            }
        });
        true
    }
}

/// The bound on trainings running at once in this process, whatever the
/// number of models: half the cores (at least one), so that serving and the
/// pipeline keep the rest.
/// The retrain policy a lifecycle configuration declares.
fn policy_config(config: &LifecycleConfig) -> PolicyConfig {
    PolicyConfig {
        on_concept: config.retrain_on_drift,
        on_data: config.retrain_on_data,
        every_labels: config.retrain_every_labels,
        accuracy_floor: config.accuracy_floor,
        cooldown_ms: i64::try_from(config.cooldown.as_millis()).unwrap_or(i64::MAX),
        min_train: config.min_train,
        window: config.window,
    }
}

fn training_pool() -> &'static tokio::sync::Semaphore {
    static POOL: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        tokio::sync::Semaphore::new((cores / 2).max(1))
    })
}

fn accuracy(model: &dyn Classifier, xs: &[Vec<f64>], ys: &[usize]) -> f64 {
    let correct = xs
        .iter()
        .zip(ys)
        .filter(|(x, y)| model.predict_one(x) == **y)
        .count();
    correct as f64 / xs.len().max(1) as f64
}

/// A bounded queue to a thread that writes its records to `stream`.
fn log_writer(stream: Arc<dyn StreamWriter>) -> std::sync::mpsc::SyncSender<NewRecord> {
    let (sender, receiver) = std::sync::mpsc::sync_channel::<NewRecord>(10_000);
    std::thread::spawn(move || write_prediction_log(stream.as_ref(), &receiver));
    sender
}

/// Writes logged records to the stream in batches, until every sender is gone.
fn write_prediction_log(
    stream: &dyn StreamWriter,
    receiver: &std::sync::mpsc::Receiver<NewRecord>,
) {
    while let Ok(first) = receiver.recv() {
        let mut batch = vec![first];
        while batch.len() < 500 {
            match receiver.try_recv() {
                Ok(record) => batch.push(record),
                Err(_) => break,
            }
        }
        for result in stream.put_records(batch) {
            if let Err(error) = result {
                tracing::warn!(stream = stream.stream_name(), %error, "cannot log a record");
            }
        }
    }
}
