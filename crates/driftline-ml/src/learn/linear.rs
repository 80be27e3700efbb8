//! Linear models: logistic regression (binary), softmax regression
//! (multiclass) and linear regression, on standardised features, with SGD,
//! Adam or FTRL-proximal updates and L1/L2 penalties.

use serde::{Deserialize, Serialize};

use super::{Classifier, Model};
use crate::features::Standardizer;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Optimizer {
    /// Plain SGD with a constant learning rate.
    Sgd { learning_rate: f64 },
    /// Adam (Kingma & Ba, 2015).
    Adam {
        learning_rate: f64,
        beta1: f64,
        beta2: f64,
        epsilon: f64,
    },
    /// FTRL-proximal (McMahan et al., 2013); it applies its own L1/L2.
    Ftrl { alpha: f64, beta: f64 },
}

impl Default for Optimizer {
    fn default() -> Self {
        Optimizer::Sgd {
            learning_rate: 0.01,
        }
    }
}

impl Optimizer {
    pub fn adam(learning_rate: f64) -> Optimizer {
        Optimizer::Adam {
            learning_rate,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
        }
    }

    pub fn ftrl() -> Optimizer {
        Optimizer::Ftrl {
            alpha: 0.1,
            beta: 1.0,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Regularization {
    pub l1: f64,
    pub l2: f64,
}

/// Per-weight optimiser state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Slots {
    first: Vec<f64>,
    second: Vec<f64>,
}

/// One weight vector (plus bias, stored last) and its optimiser state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Weights {
    w: Vec<f64>,
    slots: Slots,
    steps: u64,
}

impl Weights {
    fn new(n: usize) -> Weights {
        Weights {
            w: vec![0.0; n + 1],
            slots: Slots {
                first: vec![0.0; n + 1],
                second: vec![0.0; n + 1],
            },
            steps: 0,
        }
    }

    fn dot(&self, x: &[f64]) -> f64 {
        let bias = self.w[self.w.len() - 1];
        x.iter().zip(&self.w).map(|(a, b)| a * b).sum::<f64>() + bias
    }

    /// One step on the loss whose gradient w.r.t. the linear output is `g`.
    fn step(&mut self, x: &[f64], g: f64, optimizer: &Optimizer, reg: Regularization) {
        self.steps += 1;
        let n = self.w.len();
        // One loop per optimiser, so per-step terms (Adam's bias corrections)
        // are computed once per step, not once per weight.
        let gradient = |w: &[f64], i: usize, penalise: bool| -> f64 {
            let is_bias = i + 1 == n;
            let xi = if is_bias {
                1.0
            } else {
                x.get(i).copied().unwrap_or(0.0)
            };
            let mut grad = g * xi;
            if penalise && !is_bias {
                grad += reg.l2 * w[i] + reg.l1 * w[i].signum();
            }
            grad
        };
        match *optimizer {
            Optimizer::Sgd { learning_rate } => {
                for i in 0..n {
                    let grad = gradient(&self.w, i, true);
                    self.w[i] -= learning_rate * grad;
                }
            }
            Optimizer::Adam {
                learning_rate,
                beta1,
                beta2,
                epsilon,
            } => {
                let correction1 = 1.0 - beta1.powf(self.steps as f64);
                let correction2 = 1.0 - beta2.powf(self.steps as f64);
                for i in 0..n {
                    let grad = gradient(&self.w, i, true);
                    let m = &mut self.slots.first[i];
                    let v = &mut self.slots.second[i];
                    *m = beta1 * *m + (1.0 - beta1) * grad;
                    *v = beta2 * *v + (1.0 - beta2) * grad * grad;
                    let m_hat = *m / correction1;
                    let v_hat = *v / correction2;
                    self.w[i] -= learning_rate * m_hat / (v_hat.sqrt() + epsilon);
                }
            }
            Optimizer::Ftrl { alpha, beta } => {
                for i in 0..n {
                    // FTRL applies its own L1/L2 in the closed-form weight below.
                    let grad = gradient(&self.w, i, false);
                    let z = &mut self.slots.first[i];
                    let nn = &mut self.slots.second[i];
                    let sigma = ((*nn + grad * grad).sqrt() - nn.sqrt()) / alpha;
                    *z += grad - sigma * self.w[i];
                    *nn += grad * grad;
                    let (l1, l2) = if i + 1 == n {
                        (0.0, 0.0)
                    } else {
                        (reg.l1, reg.l2)
                    };
                    self.w[i] = if z.abs() <= l1 {
                        0.0
                    } else {
                        -(*z - z.signum() * l1) / ((beta + nn.sqrt()) / alpha + l2)
                    };
                }
            }
        }
    }
}

/// Logistic regression for two classes, softmax regression for more.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinearClassifier {
    n_features: usize,
    n_classes: usize,
    optimizer: Optimizer,
    regularization: Regularization,
    scaler: Standardizer,
    /// One vector for binary (class 1's logit), one per class otherwise.
    weights: Vec<Weights>,
    #[serde(skip)]
    scratch: Vec<f64>,
}

impl LinearClassifier {
    pub fn new(
        n_features: usize,
        n_classes: usize,
        optimizer: Optimizer,
        regularization: Regularization,
    ) -> LinearClassifier {
        let vectors = if n_classes <= 2 { 1 } else { n_classes };
        LinearClassifier {
            n_features,
            n_classes: n_classes.max(2),
            optimizer,
            regularization,
            scaler: Standardizer::default(),
            weights: (0..vectors).map(|_| Weights::new(n_features)).collect(),
            scratch: Vec::new(),
        }
    }

    fn probabilities(&self, scaled: &[f64]) -> Vec<f64> {
        if self.weights.len() == 1 {
            let p = sigmoid(self.weights[0].dot(scaled));
            return vec![1.0 - p, p];
        }
        let logits: Vec<f64> = self.weights.iter().map(|w| w.dot(scaled)).collect();
        softmax(&logits)
    }
}

pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z.clamp(-500.0, 500.0)).exp())
}

pub fn softmax(logits: &[f64]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
    let total: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / total).collect()
}

impl Classifier for LinearClassifier {
    fn learn_one(&mut self, x: &[f64], y: usize) {
        self.scaler.learn(x);
        let mut scaled = std::mem::take(&mut self.scratch);
        self.scaler.transform(x, &mut scaled);
        let probabilities = self.probabilities(&scaled);
        if self.weights.len() == 1 {
            let g = probabilities[1] - f64::from(u8::from(y == 1));
            self.weights[0].step(&scaled, g, &self.optimizer, self.regularization);
        } else {
            for (k, weights) in self.weights.iter_mut().enumerate() {
                let g = probabilities[k] - f64::from(u8::from(y == k));
                weights.step(&scaled, g, &self.optimizer, self.regularization);
            }
        }
        self.scratch = scaled;
    }

    fn predict_proba_one(&self, x: &[f64]) -> Vec<f64> {
        let mut scaled = Vec::with_capacity(x.len());
        self.scaler.transform(x, &mut scaled);
        self.probabilities(&scaled)
    }

    fn reset(&mut self) {
        *self = LinearClassifier::new(
            self.n_features,
            self.n_classes,
            self.optimizer.clone(),
            self.regularization,
        );
    }

    fn size_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.weights.len() * (self.n_features + 1) * 3 * 8
            + self.n_features * 16
    }

    fn to_model(&self) -> Model {
        Model::Linear(self.clone())
    }

    fn name(&self) -> &'static str {
        if self.n_classes <= 2 {
            "logistic_regression"
        } else {
            "softmax_regression"
        }
    }
}

/// Linear regression on standardised features (squared loss).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinearRegression {
    optimizer: Optimizer,
    regularization: Regularization,
    scaler: Standardizer,
    weights: Weights,
    n_features: usize,
}

impl LinearRegression {
    pub fn new(
        n_features: usize,
        optimizer: Optimizer,
        regularization: Regularization,
    ) -> LinearRegression {
        LinearRegression {
            optimizer,
            regularization,
            scaler: Standardizer::default(),
            weights: Weights::new(n_features),
            n_features,
        }
    }

    pub fn learn_one(&mut self, x: &[f64], y: f64) {
        self.scaler.learn(x);
        let mut scaled = Vec::with_capacity(x.len());
        self.scaler.transform(x, &mut scaled);
        let g = self.weights.dot(&scaled) - y;
        self.weights
            .step(&scaled, g, &self.optimizer, self.regularization);
    }

    pub fn predict_one(&self, x: &[f64]) -> f64 {
        let mut scaled = Vec::with_capacity(x.len());
        self.scaler.transform(x, &mut scaled);
        self.weights.dot(&scaled)
    }

    pub fn reset(&mut self) {
        *self = LinearRegression::new(self.n_features, self.optimizer.clone(), self.regularization);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::SplitMix64;

    fn accuracy_on_separable(optimizer: Optimizer, classes: usize) -> f64 {
        let mut rng = SplitMix64::new(3);
        let mut model = LinearClassifier::new(2, classes, optimizer, Regularization::default());
        let mut correct = 0;
        for i in 0..6000 {
            let (a, b) = (rng.next_f64() * 10.0, rng.next_f64() * 10.0);
            let y = if classes == 2 {
                usize::from(a + b > 10.0)
            } else {
                ((a / 10.0 * classes as f64) as usize).min(classes - 1)
            };
            if i >= 5000 && model.predict_one(&[a, b]) == y {
                correct += 1;
            }
            model.learn_one(&[a, b], y);
        }
        f64::from(correct) / 1000.0
    }

    #[test]
    fn every_optimizer_learns_a_linear_boundary() {
        for optimizer in [
            Optimizer::Sgd {
                learning_rate: 0.05,
            },
            Optimizer::adam(0.01),
            Optimizer::ftrl(),
        ] {
            let accuracy = accuracy_on_separable(optimizer.clone(), 2);
            assert!(accuracy > 0.93, "{optimizer:?}: {accuracy}");
        }
    }

    #[test]
    fn softmax_learns_several_classes() {
        let accuracy = accuracy_on_separable(Optimizer::adam(0.05), 3);
        assert!(accuracy > 0.85, "{accuracy}");
    }

    #[test]
    fn l1_with_ftrl_zeroes_an_irrelevant_feature() {
        let mut rng = SplitMix64::new(5);
        let mut model = LinearClassifier::new(
            2,
            2,
            Optimizer::ftrl(),
            Regularization { l1: 40.0, l2: 0.0 },
        );
        for _ in 0..5000 {
            let (signal, noise) = (rng.next_f64(), rng.next_f64());
            model.learn_one(&[signal, noise], usize::from(signal > 0.5));
        }
        assert_eq!(model.weights[0].w[1], 0.0);
        assert!(model.weights[0].w[0] > 0.0);
    }

    #[test]
    fn linear_regression_fits_a_line() {
        let mut rng = SplitMix64::new(9);
        let mut model = LinearRegression::new(
            1,
            Optimizer::Sgd {
                learning_rate: 0.05,
            },
            Regularization::default(),
        );
        for _ in 0..5000 {
            let x = rng.next_f64() * 4.0;
            model.learn_one(&[x], 3.0 * x + 1.0);
        }
        assert!(
            (model.predict_one(&[2.0]) - 7.0).abs() < 0.1,
            "{}",
            model.predict_one(&[2.0])
        );
    }
}
