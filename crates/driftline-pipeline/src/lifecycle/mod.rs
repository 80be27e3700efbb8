//! A model's lifecycle, served: predictions with an atomic swap, late labels
//! joined to logged predictions, retrains in the background, and the
//! registry (what SageMaker endpoints, Model Monitor and a retraining
//! pipeline do in the reference architecture).
//!
//! Every decision (alarms, when to retrain, the gate, shadow and canary
//! trials, the rollback watch) is taken by `driftline_ml::lifecycle::Lifecycle`,
//! plain code that `driftline backtest --pipeline` replays over recorded
//! data; this service feeds it and carries its decisions out:
//!
//! - `predict` reads the champion through an `ArcSwap`: a promotion replaces
//!   it in one atomic store, so no request fails or waits during a swap. Each
//!   prediction waits in the outcome join (`join`) for its label and is logged
//!   to the prediction stream by a writer thread behind a bounded queue (a
//!   full queue drops and counts, never stalls a request).
//! - `label` joins a label to its prediction and reports the outcome; the
//!   data-drift checks run off the request path.
//! - A retrain (`retrain`) runs on the training pool (never on the request
//!   path) with the examples since the drift point, read back from the lake
//!   when it is the training source (see `training`), else from the
//!   in-memory window; its challenger goes to the gate.
//! - Decisions reach the registry in order, through one writer (`decisions`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use driftline_lake::{Registry, Status, TrainingData, VersionRecord};
use driftline_log::{NewRecord, StreamWriter};
use driftline_ml::drift::monitor::{ConceptSpec, DataTest};
use driftline_ml::features::Encoder;
use driftline_ml::learn::{artifact, classifier_by_name, Classifier};
use driftline_ml::lifecycle::{
    accuracy, canary_answers, check_data, score, DataSpec, Decision, Gate, Holdout, Lifecycle,
    LifecycleSpec, Outcome, PolicyConfig, Trained,
};
use serde::Serialize;

use crate::trainer::{FitJob, InProcess, Trainer};
use crate::training::{TrainingSet, TrainingSource};

mod config;
mod decisions;
mod events;
mod join;
mod online;
mod pool;
mod prediction_log;
mod retrain;
mod rollback;
mod served;

pub use config::{LifecycleConfig, Promotion};
pub use events::{Counters, LifecycleError, LifecycleEvent, Prediction};
pub use pool::TrainingPool;
pub use served::{Reference, Served};

use decisions::{Registrar, Work};
use join::{OutcomeJoin, Pending};
use prediction_log::log_writer;
use served::{load_reference, save_reference};

struct State {
    /// Every decision: plain code, the same a replay runs.
    lifecycle: Lifecycle,
    join: OutcomeJoin,
    /// The newest joined examples, the training set without a lake source.
    window: VecDeque<(Vec<f64>, usize)>,
    counters: Counters,
    /// The predecessor the rollback watch scores beside the champion.
    previous: Option<Arc<Served>>,
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
    events: tokio::sync::broadcast::Sender<LifecycleEvent>,
    history: Mutex<Vec<LifecycleEvent>>,
    /// Decisions to the registry, in the order they were taken.
    registrar: Registrar,
    /// Background work under way (retrains, checks, registry writes).
    work: Work,
    pool: std::sync::OnceLock<TrainingPool>,
    log: Option<std::sync::mpsc::SyncSender<NewRecord>>,
    /// Where joined examples go (a stream the lake delivery reads), if anywhere.
    joined_log: std::sync::OnceLock<std::sync::mpsc::SyncSender<NewRecord>>,
    /// Where retrains read their examples, if not from the in-memory window.
    training_source: std::sync::OnceLock<TrainingSource>,
    /// Where challengers are fitted, if not in this process.
    trainer: std::sync::OnceLock<Arc<dyn Trainer>>,
    online: std::sync::OnceLock<online::OnlineLearner>,
    next_request: AtomicU64,
    /// Predictions not logged because the log's queue was full.
    log_dropped: AtomicU64,
    runtime: tokio::runtime::Handle,
    /// The lifecycle's clock: milliseconds since the service started, or a
    /// simulated clock an in-process driver sets.
    clock: Instant,
    simulated: std::sync::OnceLock<Arc<AtomicI64>>,
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
        let lifecycle = Lifecycle::new(config.spec(), champion.version).unwrap_or_else(|error| {
            // Checked when the pipeline is read; a config built in code may not be.
            tracing::warn!(model = name, %error, "concept detector refused: ADWIN instead");
            let spec = LifecycleSpec {
                concept: ConceptSpec::default(),
                ..config.spec()
            };
            Lifecycle::new(spec, champion.version).expect("ADWIN's defaults are valid")
        });
        let work = Work::default();
        let service = Arc::new(ModelService {
            name: name.to_string(),
            n_classes,
            registrar: Registrar::start(registry.clone(), work.clone()),
            registry,
            champion: ArcSwap::from_pointee(champion),
            trial_model: arc_swap::ArcSwapOption::empty(),
            state: Mutex::new(State {
                lifecycle,
                join: OutcomeJoin::new(config.label_horizon, config.label_horizon_ms),
                window: VecDeque::new(),
                counters: Counters::default(),
                previous: None,
            }),
            config,
            events,
            history: Mutex::new(Vec::new()),
            work,
            pool: std::sync::OnceLock::new(),
            log,
            joined_log: std::sync::OnceLock::new(),
            training_source: std::sync::OnceLock::new(),
            trainer: std::sync::OnceLock::new(),
            online: std::sync::OnceLock::new(),
            next_request: AtomicU64::new(0),
            log_dropped: AtomicU64::new(0),
            runtime: tokio::runtime::Handle::current(),
            clock: Instant::now(),
            simulated: std::sync::OnceLock::new(),
        });
        if let Some(every) = service.config.online_publish_every {
            let learner = online::OnlineLearner::start(Arc::downgrade(&service), every);
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
        save_reference(registry, record.version, &reference).await?;
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
        let reference = load_reference(registry, champion.record.version).await?;
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

    /// In-process fits wait for a slot of `pool` (shared by the models of one
    /// process) instead of the process-wide default.
    pub fn train_in(&self, pool: TrainingPool) {
        let _ = self.pool.set(pool);
    }

    /// The lifecycle's clock reads `clock` (milliseconds, set by an
    /// in-process driver replaying recorded traffic) instead of the wall.
    pub fn simulate_clock(&self, clock: Arc<AtomicI64>) {
        let _ = self.simulated.set(clock);
    }

    /// Waits until no background work (retrain, data-drift check, registry
    /// write) is under way: an in-process driver's step.
    pub async fn settled(&self) {
        self.work.settled().await;
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
        self.lock().lifecycle.live_accuracy()
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

    /// Milliseconds on the lifecycle's clock.
    fn now_ms(&self) -> i64 {
        match self.simulated.get() {
            Some(clock) => clock.load(Ordering::Acquire),
            None => i64::try_from(self.clock.elapsed().as_millis()).unwrap_or(i64::MAX),
        }
    }

    /// Joined examples at hand to retrain on: the lake holds more than the
    /// in-memory window after a restart.
    fn available(&self, state: &State) -> usize {
        if self.training_source.get().is_some() {
            self.config.window
        } else {
            state.window.len()
        }
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
        let served = match (&trial, self.config.promotion) {
            (Some(challenger), Promotion::Canary(share)) if canary_answers(number, share) => {
                challenger.clone()
            }
            _ => champion,
        };
        let x = served.encoder.encode_json_frozen(features)?;
        let probabilities = served.probabilities(&x);
        let class = driftline_ml::learn::argmax(&probabilities);
        let shadow = match (&trial, self.config.promotion) {
            (Some(challenger), Promotion::Shadow) => {
                Some((challenger.version, challenger.class(&x)))
            }
            _ => None,
        };
        let wall_ms = driftline_log::now_ms();
        {
            let mut state = self.lock();
            state.counters.predictions += 1;
            let now = self.now_ms();
            if state
                .lifecycle
                .predicted(x.clone(), score(&probabilities), now)
            {
                if let Some(reference) = served.reference.clone() {
                    let recent = state.lifecycle.recent();
                    let service = Arc::clone(self);
                    let version = served.version;
                    let names = served.encoder.feature_names();
                    let spec = state.lifecycle.spec().data.clone();
                    let work = self.work.start();
                    // Off the request path: the statistics cost a few sorts.
                    self.runtime.spawn_blocking(move || {
                        let findings = check_data(&spec, &names, &reference, &recent);
                        let mut state = service.lock();
                        let available = service.available(&state);
                        let decisions = state
                            .lifecycle
                            .data_checked(version, findings, available, now);
                        service.carry_out(&mut state, decisions, None, true);
                        drop(work);
                    });
                }
            }
            let pending = Pending {
                x,
                class,
                version: served.version,
                shadow,
            };
            state.counters.expired_predictions +=
                state.join.wait(request_id.clone(), pending, wall_ms);
        }
        let prediction = Prediction {
            request_id,
            version: served.version,
            class,
            probabilities,
        };
        if let Some(log) = &self.log {
            self.log_prediction(log, &prediction, features, wall_ms);
        }
        Ok(prediction)
    }

    /// Joins a label to its prediction and reports the outcome to the
    /// lifecycle; true when that started a retrain or ended a trial or watch.
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
            let Some(pending) = state.join.take(request_id) else {
                state.counters.unmatched_labels += 1;
                return Err(LifecycleError::Unmatched(request_id.to_string()));
            };
            state.counters.joined += 1;
            pending
        };
        // Logged outside the lock: the send waits when the writer is behind,
        // and predictions must not wait with it.
        if let Some(log) = self.joined_log.get() {
            self.log_joined(log, request_id, &pending, label);
        }
        let mut state = self.lock();
        let champion = state.lifecycle.champion();
        let previous_correct = match (&state.previous, state.lifecycle.watching()) {
            (Some(previous), Some(watched))
                if previous.version == watched && pending.version == champion =>
            {
                Some(previous.class(&pending.x) == label)
            }
            _ => None,
        };
        let outcome = Outcome {
            version: pending.version,
            correct: pending.class == label,
            shadow: pending
                .shadow
                .map(|(version, class)| (version, class == label)),
            previous_correct,
        };
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
        let available = self.available(&state);
        let now = self.now_ms();
        let decisions = state.lifecycle.outcome(&outcome, available, now);
        let acted = decisions.iter().any(|d| !matches!(d, Decision::Alarm(_)));
        self.carry_out(&mut state, decisions, None, true);
        Ok(acted)
    }

    /// Retrains on the schedule: the newest window of joined examples.
    fn scheduled_retrain(self: &Arc<Self>, every: Duration) {
        let mut state = self.lock();
        let every = format!("{} s", every.as_secs_f64());
        let available = self.available(&state);
        let now = self.now_ms();
        let decisions = state.lifecycle.scheduled(&every, available, now);
        self.carry_out(&mut state, decisions, None, true);
    }
}
