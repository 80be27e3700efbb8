//! Online learning between retrains: a copy of the champion keeps learning
//! from every joined example, on its own thread (a learner's update can be
//! costly: the gradient-boosted trees refit their window now and then), and
//! every `publish_every` examples a snapshot of it replaces the served model
//! under the same version. A new champion (a promotion or a rollback) starts
//! the copy afresh from it. The queue to the thread is bounded; examples that
//! do not fit are counted, not waited for (they are in the lake anyway).

use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::Weak;

use driftline_ml::learn::{artifact, Classifier};

use super::ModelService;

/// Examples waiting for the online learner, at most.
const QUEUE: usize = 10_000;

pub(crate) struct OnlineLearner {
    sender: SyncSender<(Vec<f64>, usize)>,
}

impl OnlineLearner {
    /// Starts the learner thread of `service`; it ends with the service.
    pub(crate) fn start(service: Weak<ModelService>, publish_every: usize) -> OnlineLearner {
        let (sender, receiver) = std::sync::mpsc::sync_channel(QUEUE);
        let spawned = std::thread::Builder::new()
            .name("online-learner".into())
            .spawn(move || learn(&service, &receiver, publish_every.max(1)));
        if let Err(error) = spawned {
            tracing::warn!(%error, "the online learner cannot start");
        }
        OnlineLearner { sender }
    }

    /// Hands a joined example over; false when the queue is full (or the thread gone).
    pub(crate) fn offer(&self, x: Vec<f64>, y: usize) -> bool {
        match self.sender.try_send((x, y)) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }
}

/// A deep copy of a model, through its artifact (the learners are not `Clone`
/// behind the trait object).
fn copy(model: &dyn Classifier) -> Option<Box<dyn Classifier>> {
    artifact::load(&artifact::save(model, None))
        .ok()
        .map(|(m, _)| m)
}

fn learn(
    service: &Weak<ModelService>,
    examples: &Receiver<(Vec<f64>, usize)>,
    publish_every: usize,
) {
    let mut learner: Option<(u64, Box<dyn Classifier>)> = None;
    let mut since_publish = 0;
    while let Ok((x, y)) = examples.recv() {
        let Some(service) = service.upgrade() else {
            return;
        };
        let champion = service.champion_snapshot();
        if learner
            .as_ref()
            .is_none_or(|(version, _)| *version != champion.version)
        {
            // A new champion: learn on from it, not from its predecessor.
            learner = copy(champion.model.as_ref()).map(|m| (champion.version, m));
            since_publish = 0;
        }
        let Some((version, model)) = learner.as_mut() else {
            continue;
        };
        model.learn_one(&x, y);
        since_publish += 1;
        if since_publish >= publish_every {
            since_publish = 0;
            if let Some(snapshot) = copy(model.as_ref()) {
                service.publish_online(*version, snapshot);
            }
        }
    }
}
