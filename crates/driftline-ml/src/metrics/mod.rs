//! Streaming metrics with River's contract: `update` with one observation,
//! `revert` to take it back (which makes sliding windows cheap), `get` for the
//! current value. [`Rolling`] turns any metric into its sliding-window form.

mod classification;
mod regression;

use std::collections::VecDeque;

pub use classification::{
    Accuracy, BalancedAccuracy, ConfusionMatrix, F1Macro, LogLoss, PrecisionMacro, RecallMacro,
    RocAuc,
};
pub use regression::{Mae, Rmse, R2};

/// One prediction and its truth.
#[derive(Clone, Debug, PartialEq)]
pub enum Observation {
    Class {
        y_true: usize,
        y_pred: usize,
        /// Probability the model gave to the true class (for log loss).
        proba_true: f64,
        /// Probability of class 1 (for binary ROC AUC).
        score: f64,
    },
    Value {
        y_true: f64,
        y_pred: f64,
    },
}

pub trait Metric: Send {
    fn update(&mut self, observation: &Observation);
    fn revert(&mut self, observation: &Observation);
    fn get(&self) -> f64;
    fn name(&self) -> &'static str;
    fn bigger_is_better(&self) -> bool {
        true
    }
}

/// A metric over the last `size` observations.
pub struct Rolling {
    inner: Box<dyn Metric>,
    size: usize,
    window: VecDeque<Observation>,
}

impl Rolling {
    pub fn new(inner: Box<dyn Metric>, size: usize) -> Rolling {
        Rolling {
            inner,
            size: size.max(1),
            window: VecDeque::with_capacity(size.max(1) + 1),
        }
    }
}

impl Metric for Rolling {
    fn update(&mut self, observation: &Observation) {
        self.inner.update(observation);
        self.window.push_back(observation.clone());
        if self.window.len() > self.size {
            if let Some(oldest) = self.window.pop_front() {
                self.inner.revert(&oldest);
            }
        }
    }

    fn revert(&mut self, observation: &Observation) {
        if let Some(position) = self.window.iter().rposition(|o| o == observation) {
            self.window.remove(position);
            self.inner.revert(observation);
        }
    }

    fn get(&self) -> f64 {
        self.inner.get()
    }

    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn bigger_is_better(&self) -> bool {
        self.inner.bigger_is_better()
    }
}

/// Builds a metric from its name (`accuracy`, `balanced_accuracy`, `precision`,
/// `recall`, `f1_macro`, `log_loss`, `roc_auc`, `mae`, `rmse`, `r2`).
pub fn metric_by_name(name: &str) -> Option<Box<dyn Metric>> {
    Some(match name {
        "accuracy" => Box::new(Accuracy::default()),
        "balanced_accuracy" => Box::new(BalancedAccuracy::default()),
        "precision" | "precision_macro" => Box::new(PrecisionMacro::default()),
        "recall" | "recall_macro" => Box::new(RecallMacro::default()),
        "f1" | "f1_macro" => Box::new(F1Macro::default()),
        "log_loss" => Box::new(LogLoss::default()),
        "roc_auc" => Box::new(RocAuc::default()),
        "mae" => Box::new(Mae::default()),
        "rmse" => Box::new(Rmse::default()),
        "r2" => Box::new(R2::default()),
        _ => return None,
    })
}

pub const CLASSIFICATION_METRICS: [&str; 7] = [
    "accuracy",
    "balanced_accuracy",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "log_loss",
    "roc_auc",
];
pub const REGRESSION_METRICS: [&str; 3] = ["mae", "rmse", "r2"];
