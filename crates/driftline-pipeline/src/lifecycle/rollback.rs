//! Promote and roll back by hand (`driftline models promote|rollback`).

use super::*;

impl ModelService {
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
        let reference = load_reference(&self.registry, version).await?;
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
            state.lifecycle.promoted_by_hand(version);
            state.previous = Some(self.champion.swap(served));
            state.counters.promotions += 1;
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
}
