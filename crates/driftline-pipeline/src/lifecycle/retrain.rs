//! A retrain: the training set, the challenger, its scores on the holdout,
//! the registry; then the lifecycle's gate decides.

use super::*;

impl ModelService {
    /// Trains a challenger on the newest `take` joined examples (`examples`,
    /// or read from the training source), scores it and the champion on the
    /// newest of them neither trained on, registers it and reports it to the
    /// lifecycle. False when it found too few examples.
    pub(super) async fn retrain(
        self: Arc<Self>,
        trigger: String,
        take: usize,
        examples: Option<Vec<(Vec<f64>, usize)>>,
    ) -> Result<bool, LifecycleError> {
        let trainer = self
            .trainer
            .get()
            .cloned()
            .unwrap_or_else(|| Arc::new(InProcess));
        // Across models, no more fits in this process than the pool allows.
        let pool = self
            .pool
            .get()
            .cloned()
            .unwrap_or_else(TrainingPool::process);
        let _slot = match trainer.remote() {
            true => None,
            false => Some(pool.slot().await),
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
            (None, None) => return Ok(false),
        };
        if examples.len() < self.config.min_train.max(2) {
            tracing::warn!(model = %self.name, found = examples.len(), "too few joined examples to retrain on");
            return Ok(false);
        }
        let mut examples = examples;
        let holdout = Holdout::size(examples.len(), self.config.holdout_fraction);
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
        let (model, scores, reference, trained_on) = tokio::task::spawn_blocking(move || {
            let scores = Holdout::measure(
                model.as_ref(),
                scored_champion.model.as_ref(),
                &test_x,
                &test_y,
            );
            let reference = Reference::of(model.as_ref(), &xs);
            (model, scores, reference, xs.len())
        })
        .await
        .map_err(|e| LifecycleError::Artifact(e.to_string()))?;
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
            metrics: scores.metrics(),
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
        save_reference(&self.registry, record.version, &reference).await?;
        let challenger = Arc::new(Served {
            version: record.version,
            learner: record.learner.clone(),
            model,
            encoder: champion.encoder.clone(),
            reference: Some(reference),
        });
        let trained = Trained {
            version: record.version,
            examples: trained_on,
            trigger,
            against: champion.version,
            holdout: scores,
        };
        let decisions = {
            let mut state = self.lock();
            let now = self.now_ms();
            state.lifecycle.trained(trained, now)
        };
        // Recorded before they are carried out: what serves is in the registry.
        self.registrar.record(&decisions).await;
        let mut state = self.lock();
        self.carry_out(&mut state, decisions, Some(&challenger), false);
        Ok(true)
    }
}
