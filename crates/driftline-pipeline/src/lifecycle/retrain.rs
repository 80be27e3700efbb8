//! A retrain: the training set, the challenger, the gate, the registry.

use super::*;

impl ModelService {
    /// Trains a challenger, scores it against the champion on the newest
    /// examples neither trained on, and promotes or rejects it.
    pub(super) async fn retrain(
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
        let scores = Holdout {
            challenger_accuracy,
            champion_accuracy,
            examples: holdout,
            latency_us,
            size_bytes: size,
        };
        let reason = match self.config.gate().judge(&scores, champion.version) {
            Ok(reason) => reason,
            Err(reason) => {
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
        };
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
}

/// The bound on trainings running at once in this process, whatever the
/// number of models: half the cores (at least one), so that serving and the
/// pipeline keep the rest.
fn training_pool() -> &'static tokio::sync::Semaphore {
    static POOL: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        tokio::sync::Semaphore::new((cores / 2).max(1))
    })
}

pub(super) fn accuracy(model: &dyn Classifier, xs: &[Vec<f64>], ys: &[usize]) -> f64 {
    let correct = xs
        .iter()
        .zip(ys)
        .filter(|(x, y)| model.predict_one(x) == **y)
        .count();
    correct as f64 / xs.len().max(1) as f64
}
