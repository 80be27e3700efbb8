//! Learners behind one contract, with River's names: `learn_one`,
//! `predict_proba_one`, `predict_one`, and `fit` for a window.

pub mod artifact;
mod forest;
mod gbt;
mod hoeffding;
mod knn;
pub mod linear;
mod select;

use serde::{Deserialize, Serialize};

pub use forest::{AdaptiveRandomForestClassifier, ForestConfig};
pub use gbt::{GbtConfig, GradientBoostedTrees};
pub use hoeffding::{HoeffdingAdaptiveTreeClassifier, HoeffdingTreeClassifier, TreeConfig};
pub use knn::KnnClassifier;
pub use linear::{LinearClassifier, LinearRegression, Optimizer, Regularization};
pub use select::BestRecentClassifier;

/// A classifier over dense feature vectors and classes `0..n_classes`.
pub trait Classifier: Send + Sync {
    /// Learns from one labelled example.
    fn learn_one(&mut self, x: &[f64], y: usize);

    /// Class probabilities (length `n_classes`, summing to 1).
    fn predict_proba_one(&self, x: &[f64]) -> Vec<f64>;

    /// The prequential step: class probabilities for `x`, then learning from
    /// it. The same as [`Classifier::predict_proba_one`] followed by
    /// [`Classifier::learn_one`]; a learner that computes its prediction
    /// while learning overrides it to do that work once.
    fn predict_then_learn(&mut self, x: &[f64], y: usize) -> Vec<f64> {
        let probabilities = self.predict_proba_one(x);
        self.learn_one(x, y);
        probabilities
    }

    /// [`Classifier::predict_then_learn`] over a run of events, in order.
    /// A learner made of independent parts (a forest's trees) overrides it
    /// to spread the parts over threads.
    fn predict_then_learn_many(&mut self, xs: &[Vec<f64>], ys: &[usize]) -> Vec<Vec<f64>> {
        xs.iter()
            .zip(ys)
            .map(|(x, y)| self.predict_then_learn(x, *y))
            .collect()
    }

    /// The most probable class.
    fn predict_one(&self, x: &[f64]) -> usize {
        argmax(&self.predict_proba_one(x))
    }

    /// Trains afresh on a window of examples (forgetting what it knew).
    fn fit(&mut self, xs: &[Vec<f64>], ys: &[usize]) {
        self.reset();
        for (x, y) in xs.iter().zip(ys) {
            self.learn_one(x, *y);
        }
    }

    /// Forgets everything learned, keeping its parameters.
    fn reset(&mut self);

    /// Approximate size in memory, in bytes.
    fn size_bytes(&self) -> usize;

    /// The learner as a serialisable value.
    fn to_model(&self) -> Model;

    fn name(&self) -> &'static str;
}

/// Every learner, as one serialisable enum (the model part of an artifact).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "learner", rename_all = "snake_case")]
pub enum Model {
    Linear(LinearClassifier),
    HoeffdingTree(HoeffdingTreeClassifier),
    HoeffdingAdaptiveTree(HoeffdingAdaptiveTreeClassifier),
    AdaptiveRandomForest(AdaptiveRandomForestClassifier),
    GradientBoostedTrees(GradientBoostedTrees),
    Knn(KnnClassifier),
    BestRecent(Box<BestRecentClassifier>),
}

impl Model {
    pub fn into_classifier(self) -> Box<dyn Classifier> {
        match self {
            Model::Linear(m) => Box::new(m),
            Model::HoeffdingTree(m) => Box::new(m),
            Model::HoeffdingAdaptiveTree(m) => Box::new(m),
            Model::AdaptiveRandomForest(m) => Box::new(m),
            Model::GradientBoostedTrees(m) => Box::new(m),
            Model::Knn(m) => Box::new(m),
            Model::BestRecent(m) => m,
        }
    }
}

pub fn argmax(values: &[f64]) -> usize {
    values
        .iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |(bi, bv), (i, v)| {
            if *v > bv {
                (i, *v)
            } else {
                (bi, bv)
            }
        })
        .0
}

/// Normalises non-negative scores into probabilities (uniform when all are zero).
pub fn normalize(mut scores: Vec<f64>) -> Vec<f64> {
    let total: f64 = scores.iter().sum();
    if total > 0.0 && total.is_finite() {
        scores.iter_mut().for_each(|s| *s /= total);
    } else {
        let n = scores.len().max(1) as f64;
        scores.iter_mut().for_each(|s| *s = 1.0 / n);
    }
    scores
}

/// The learners by name, with default parameters, for `n_features` and `n_classes`.
pub fn classifier_by_name(
    name: &str,
    n_features: usize,
    n_classes: usize,
    seed: u64,
) -> Result<Box<dyn Classifier>, crate::ParamError> {
    let n_classes = n_classes.max(2);
    Ok(match name {
        "lr" | "logistic_regression" | "softmax" => Box::new(LinearClassifier::new(
            n_features,
            n_classes,
            Optimizer::default(),
            Regularization::default(),
        )),
        "lr_adam" => Box::new(LinearClassifier::new(
            n_features,
            n_classes,
            Optimizer::adam(0.01),
            Regularization::default(),
        )),
        "lr_ftrl" => Box::new(LinearClassifier::new(
            n_features,
            n_classes,
            Optimizer::ftrl(),
            Regularization::default(),
        )),
        "ht" | "hoeffding_tree" => Box::new(HoeffdingTreeClassifier::new(
            n_features,
            n_classes,
            TreeConfig::default(),
        )),
        "hat" | "hoeffding_adaptive_tree" => Box::new(HoeffdingAdaptiveTreeClassifier::new(
            n_features,
            n_classes,
            TreeConfig::default(),
            seed,
        )),
        "arf" | "adaptive_random_forest" => Box::new(AdaptiveRandomForestClassifier::new(
            n_features,
            n_classes,
            ForestConfig::default(),
            seed,
        )),
        "gbt" | "gradient_boosted_trees" => Box::new(GradientBoostedTrees::new(
            n_features,
            n_classes,
            GbtConfig::default(),
        )),
        "knn" => Box::new(KnnClassifier::new(n_classes, 7, 1000)),
        "best" | "best_recent" => {
            let members = ["arf", "knn", "lr", "hat", "gbt"]
                .iter()
                .map(|m| classifier_by_name(m, n_features, n_classes, seed))
                .collect::<Result<Vec<_>, _>>()?;
            Box::new(BestRecentClassifier::new(members, 0.999))
        }
        other => {
            return Err(crate::ParamError::new(
                "model",
                format!("unknown model {other:?}; known: {}", CLASSIFIERS.join(", ")),
            ))
        }
    })
}

pub const CLASSIFIERS: [&str; 9] = [
    "lr", "lr_adam", "lr_ftrl", "ht", "hat", "arf", "gbt", "knn", "best",
];
