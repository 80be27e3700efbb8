//! Shadow and canary trials of a challenger, and installing a new champion.

use super::*;

impl ModelService {
    /// Puts a challenger that passed the gate on trial: as a shadow (`share`
    /// none) or as a canary answering that share of the requests.
    pub(super) async fn start_trial(
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
                tally: TrialTally::default(),
            });
            self.trial_model.store(Some(served));
        }
        self.emit(LifecycleEvent::TrialStarted { version, mode });
        Ok(())
    }

    /// Makes `served` the champion (the caller holds the state): resets the
    /// monitors and starts the rollback watch. Returns the time from the
    /// drift alarm it answers, if that alarm is still the latest.
    pub(super) fn install(
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
            tally: WatchTally::new(self.config.rollback_after),
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
    pub(super) fn judge_trial(
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
            trial.tally.challenger(pending.class == label);
        } else if pending.version == champion {
            trial.tally.champion(pending.class == label);
            if let Some((shadow_version, class)) = pending.shadow {
                if shadow_version == version {
                    trial.tally.challenger(class == label);
                }
            }
        }
        if !trial.tally.done(self.config.trial_labels) {
            return false;
        }
        let Some(trial) = state.trial.take() else {
            return false;
        };
        self.trial_model.store(None);
        let (mine, theirs, serves) = trial.tally.verdict();
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
            trial.tally.challenger_seen, trial.tally.champion_seen
        );
        let (status, reason) = if serves {
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
