//! Carrying the lifecycle's decisions out: swaps, trials, retrains in the
//! background, counters and events, and the registry writes, which one
//! writer makes in the order the decisions were taken.

use super::*;

/// Background work under way, so that a driver can wait for it to end.
#[derive(Clone, Default)]
pub(super) struct Work(Arc<WorkCount>);

#[derive(Default)]
pub(super) struct WorkCount {
    running: std::sync::atomic::AtomicUsize,
    idle: tokio::sync::Notify,
}

/// One piece of background work; it ends when this drops.
pub(super) struct WorkGuard(Arc<WorkCount>);

impl Work {
    pub fn start(&self) -> WorkGuard {
        self.0.running.fetch_add(1, Ordering::AcqRel);
        WorkGuard(self.0.clone())
    }

    pub async fn settled(&self) {
        loop {
            let idle = self.0.idle.notified();
            if self.0.running.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }
}

impl Drop for WorkGuard {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// A decision as the registry records it.
struct Write {
    version: u64,
    status: Status,
    reason: String,
    metrics: BTreeMap<String, f64>,
    done: Option<tokio::sync::oneshot::Sender<()>>,
    _work: WorkGuard,
}

/// The one writer of a service's decisions to its registry.
pub(super) struct Registrar {
    queue: tokio::sync::mpsc::Sender<Write>,
    work: Work,
}

/// Decisions waiting for the registry, at most: one retrain's or trial's
/// few at a time, so this is never reached but by a stalled lake.
const QUEUE: usize = 256;

impl Registrar {
    /// Starts the writer on the current runtime; it ends with the service.
    pub fn start(registry: Registry, work: Work) -> Registrar {
        let (queue, mut writes) = tokio::sync::mpsc::channel::<Write>(QUEUE);
        tokio::spawn(async move {
            while let Some(write) = writes.recv().await {
                let recorded = registry
                    .decide(write.version, write.status, &write.reason, write.metrics)
                    .await;
                if let Err(error) = recorded {
                    tracing::warn!(version = write.version, %error, "cannot record a decision in the registry");
                }
                if let Some(done) = write.done {
                    let _ = done.send(());
                }
            }
        });
        Registrar { queue, work }
    }

    /// Queues the registry writes of `decisions` without waiting (the
    /// caller holds the lifecycle's lock).
    fn queue(&self, decisions: &[Decision]) {
        for (version, status, reason, metrics) in decisions.iter().filter_map(recorded) {
            let write = Write {
                version,
                status,
                reason,
                metrics,
                done: None,
                _work: self.work.start(),
            };
            if let Err(error) = self.queue.try_send(write) {
                tracing::error!(version, %error, "the registry's writer is behind: a decision goes unrecorded");
            }
        }
    }

    /// Records `decisions` in the registry and waits until they are.
    pub async fn record(&self, decisions: &[Decision]) {
        let mut done = None;
        for (version, status, reason, metrics) in decisions.iter().filter_map(recorded) {
            let (sender, receiver) = tokio::sync::oneshot::channel();
            let write = Write {
                version,
                status,
                reason,
                metrics,
                done: Some(sender),
                _work: self.work.start(),
            };
            if self.queue.send(write).await.is_err() {
                return;
            }
            done = Some(receiver);
        }
        // In order: the last written means all were.
        if let Some(done) = done {
            let _ = done.await;
        }
    }
}

/// What the registry records of a decision, if anything.
fn recorded(decision: &Decision) -> Option<(u64, Status, String, BTreeMap<String, f64>)> {
    match decision {
        Decision::StartTrial {
            version,
            share,
            reason,
            metrics,
        } => {
            let status = if share.is_some() {
                Status::Canary
            } else {
                Status::Shadow
            };
            Some((*version, status, reason.clone(), metrics.clone()))
        }
        Decision::Promote {
            version,
            reason,
            metrics,
            ..
        } => Some((*version, Status::Champion, reason.clone(), metrics.clone())),
        Decision::Reject {
            version,
            reason,
            metrics,
        } => Some((*version, Status::Rejected, reason.clone(), metrics.clone())),
        Decision::RollBack {
            from,
            to,
            reason,
            metrics,
        } => Some((
            *to,
            Status::Champion,
            format!("rollback from v{from}: {reason}"),
            metrics.clone(),
        )),
        Decision::Alarm(_) | Decision::Retrain { .. } | Decision::Retrained(_) => None,
    }
}

impl ModelService {
    /// Carries `decisions` out (the caller holds the lock): `challenger` is
    /// the model a retrain just trained; `record` queues the registry writes
    /// (false when the caller recorded them already).
    pub(super) fn carry_out(
        self: &Arc<Self>,
        state: &mut State,
        decisions: Vec<Decision>,
        challenger: Option<&Arc<Served>>,
        record: bool,
    ) {
        if record {
            self.registrar.queue(&decisions);
        }
        for decision in decisions {
            let event = decision.event();
            match decision {
                Decision::Alarm(LifecycleEvent::DriftAlarm { .. }) => {
                    state.counters.drift_alarms += 1
                }
                Decision::Alarm(LifecycleEvent::DataDrift { .. }) => {
                    state.counters.data_drift_alarms += 1;
                }
                Decision::Alarm(_) => {}
                Decision::Retrain { why, take } => self.start_retrain(state, why, take),
                Decision::Retrained(_) => state.counters.retrains += 1,
                Decision::StartTrial { version, .. } => {
                    let on_trial = challenger.filter(|c| c.version == version).cloned();
                    self.trial_model.store(on_trial);
                }
                Decision::Promote { version, .. } => {
                    let trial = self
                        .trial_model
                        .load_full()
                        .filter(|t| t.version == version);
                    if trial.is_some() {
                        self.trial_model.store(None);
                    }
                    let Some(new) = challenger
                        .filter(|c| c.version == version)
                        .cloned()
                        .or(trial)
                    else {
                        tracing::error!(model = %self.name, version, "promoted a version this service does not hold");
                        continue;
                    };
                    state.previous = Some(self.champion.swap(new));
                    state.counters.promotions += 1;
                }
                Decision::Reject { version, .. } => {
                    if self
                        .trial_model
                        .load()
                        .as_ref()
                        .is_some_and(|t| t.version == version)
                    {
                        self.trial_model.store(None);
                    }
                    state.counters.rejections += 1;
                }
                Decision::RollBack { to, .. } => {
                    match state.previous.take().filter(|p| p.version == to) {
                        Some(previous) => self.champion.store(previous),
                        None => {
                            tracing::error!(model = %self.name, to, "rolled back to a version this service does not hold")
                        }
                    }
                    state.counters.rollbacks += 1;
                }
            }
            if let Some(event) = event {
                self.emit(event);
            }
        }
        if state.lifecycle.watching().is_none() {
            state.previous = None;
        }
    }

    /// Starts the retrain the lifecycle asked for on the newest `take`
    /// joined examples, in the background.
    fn start_retrain(self: &Arc<Self>, state: &State, why: String, take: usize) {
        // From the lake when it is the training source, else from the window.
        let examples: Option<Vec<(Vec<f64>, usize)>> =
            self.training_source.get().is_none().then(|| {
                state
                    .window
                    .iter()
                    .skip(state.window.len().saturating_sub(take))
                    .cloned()
                    .collect()
            });
        let service = Arc::clone(self);
        let work = self.work.start();
        self.runtime.spawn(async move {
            let trained = service.clone().retrain(why, take, examples).await;
            if !matches!(trained, Ok(true)) {
                if let Err(error) = trained {
                    tracing::warn!(model = %service.name, %error, "retrain failed");
                }
                service.lock().lifecycle.retrain_failed();
            }
            drop(work);
        });
    }
}
