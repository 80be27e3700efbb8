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
//!   live accuracy (a sliding window), the declared concept-drift detector on
//!   the error stream, the rollback watch (`rollback`) and the training window.
//!   Unmatched labels and predictions that expired unlabelled are counted.
//! - The retrain policy (`driftline_ml::lifecycle::RetrainPolicy`) decides
//!   when to retrain, on a drift or data-drift alarm, every N labels, a
//!   schedule, or the live accuracy under a floor; a retrain (`retrain`) runs
//!   on a bounded pool (one at a time, never on the request path) with the
//!   examples since the drift point, read back from the lake when it is the
//!   training source (see `training`), else from the in-memory window.
//!   The newest quarter is held out; challenger and champion are scored on it
//!   and the challenger is promoted only through the gate (minimum gain,
//!   prediction latency, size), else rejected. Every decision goes to the
//!   registry with its reason.
//! - After a promotion the predecessor keeps being scored on the next labels;
//!   if it beats the new champion by the rollback margin, it comes back.
//!   Shadow and canary trials are in `trials`.

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
use driftline_ml::lifecycle::{
    Gate, Holdout, PolicyConfig, RetrainPolicy, TrialTally, Want, WatchTally,
};
use serde::Serialize;

use crate::trainer::{FitJob, InProcess, Trainer};
use crate::training::{TrainingSet, TrainingSource};

mod config;
mod events;
mod prediction_log;
mod retrain;
mod rollback;
mod served;
mod trials;

pub use config::{LifecycleConfig, Promotion};
pub use events::{Counters, LifecycleError, LifecycleEvent, Prediction};
pub use served::{Reference, Served};

use prediction_log::log_writer;
use retrain::accuracy;
use served::score;

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
    tally: TrialTally,
}

struct Watch {
    previous: Arc<Served>,
    tally: WatchTally,
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
}

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
