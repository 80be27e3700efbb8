//! Where a challenger is fitted, as a seam: in this process (the default),
//! or as a SageMaker training job (the `driftline` binary's aws feature).
//! The lifecycle hands a trainer the examples it chose and scores what comes
//! back the same way whichever trainer made it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use driftline_ml::learn::{classifier_by_name, Classifier};

/// What to fit: the learner and the encoded examples.
#[derive(Clone, Debug)]
pub struct FitJob {
    /// The model's name, for names and logs.
    pub model: String,
    pub learner: String,
    pub seed: u64,
    pub n_classes: usize,
    /// Each example's encoded width (the champion's encoder).
    pub width: usize,
    /// Shared with the lifecycle, which scores the model on them after.
    pub xs: Arc<Vec<Vec<f64>>>,
    pub ys: Vec<usize>,
}

/// Why a fit failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FitError(pub String);

pub type FitFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Box<dyn Classifier>, FitError>> + Send + 'a>>;

pub trait Trainer: Send + Sync {
    /// Where it trains, for the registry's record of a version.
    fn place(&self) -> String;

    /// Trains elsewhere: takes none of this process's training slots.
    fn remote(&self) -> bool {
        false
    }

    /// Fits a model of `job.learner` on the job's examples; it must read
    /// vectors of `job.width` and answer `job.n_classes` classes.
    fn fit(&self, job: FitJob) -> FitFuture<'_>;
}

/// Fits on tokio's blocking pool, beside serving.
pub struct InProcess;

impl Trainer for InProcess {
    fn place(&self) -> String {
        "in-process".into()
    }

    fn fit(&self, job: FitJob) -> FitFuture<'_> {
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let mut model =
                    classifier_by_name(&job.learner, job.width, job.n_classes, job.seed)
                        .map_err(|e| FitError(e.to_string()))?;
                model.fit(&job.xs, &job.ys);
                Ok(model)
            })
            .await
            .map_err(|e| FitError(e.to_string()))?
        })
    }
}

/// The conformance suite every trainer passes: on a separable two-class set
/// it returns a model of the right shape that learned it.
pub async fn conformance(trainer: &dyn Trainer) {
    let xs: Vec<Vec<f64>> = (0..600)
        .map(|i| {
            let a = (i % 37) as f64 / 37.0;
            let b = (i % 11) as f64 / 11.0;
            vec![a, b, if i % 2 == 0 { 1.0 } else { 0.0 }]
        })
        .collect();
    let ys: Vec<usize> = xs
        .iter()
        .map(|x| usize::from(x[0] + 0.3 * x[1] > 0.6))
        .collect();
    let job = FitJob {
        model: "conformance".into(),
        learner: "gbt".into(),
        seed: 7,
        n_classes: 2,
        width: 3,
        xs: Arc::new(xs.clone()),
        ys: ys.clone(),
    };
    assert!(!trainer.place().is_empty());
    let model = trainer.fit(job.clone()).await.expect("fit");
    assert_eq!(model.predict_proba_one(&xs[0]).len(), 2, "two classes");
    let correct = xs
        .iter()
        .zip(&ys)
        .filter(|(x, y)| model.predict_one(x) == **y)
        .count();
    assert!(
        correct as f64 / xs.len() as f64 > 0.9,
        "{correct} of {}",
        xs.len()
    );
    // A learner that does not exist is an error, not a panic.
    let unknown = FitJob {
        learner: "no-such-learner".into(),
        ..job
    };
    assert!(trainer.fit(unknown).await.is_err());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn in_process_training_conforms() {
        conformance(&InProcess).await;
    }
}
