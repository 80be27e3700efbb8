//! Gradient-boosted trees for windows of data: Newton boosting of shallow
//! regression trees on histogram-binned features (as LightGBM and XGBoost's
//! `hist` method do), logistic loss for two classes and softmax for more.
//! Our own: the crates that do this (lightgbm, xgboost) bind C++ libraries that
//! need cmake, and the pure-Rust ones are unmaintained or pre-release.
//!
//! `fit` trains on a window from scratch. `learn_one` keeps a bounded window
//! and refits every `refit_every` examples, so the learner also runs in a
//! stream.

use serde::{Deserialize, Serialize};

use super::linear::softmax;
use super::{Classifier, Model};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GbtConfig {
    pub rounds: usize,
    pub learning_rate: f64,
    pub max_depth: usize,
    pub min_child_weight: f64,
    pub lambda: f64,
    pub bins: usize,
    /// Examples kept for `learn_one`'s refits.
    pub window: usize,
    pub refit_every: usize,
}

impl Default for GbtConfig {
    fn default() -> Self {
        GbtConfig {
            rounds: 40,
            learning_rate: 0.2,
            max_depth: 4,
            min_child_weight: 1.0,
            lambda: 1.0,
            bins: 32,
            window: 2000,
            refit_every: 500,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum TreeNode {
    Leaf(f64),
    Split {
        feature: usize,
        threshold: f64,
        left: usize,
        right: usize,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct RegressionTree {
    nodes: Vec<TreeNode>,
}

impl RegressionTree {
    fn predict(&self, x: &[f64]) -> f64 {
        let mut i = 0;
        loop {
            match &self.nodes[i] {
                TreeNode::Leaf(v) => return *v,
                TreeNode::Split {
                    feature,
                    threshold,
                    left,
                    right,
                } => {
                    i = if x.get(*feature).copied().unwrap_or(0.0) <= *threshold {
                        *left
                    } else {
                        *right
                    };
                }
            }
        }
    }
}

/// Features binned once per fit: bin index per example and feature, and the
/// upper edge of each bin.
struct Binned {
    codes: Vec<Vec<u8>>,
    edges: Vec<Vec<f64>>,
}

fn bin(xs: &[Vec<f64>], n_features: usize, bins: usize) -> Binned {
    let mut edges = Vec::with_capacity(n_features);
    for f in 0..n_features {
        let mut values: Vec<f64> = xs
            .iter()
            .map(|x| x.get(f).copied().unwrap_or(0.0))
            .collect();
        values.sort_by(f64::total_cmp);
        values.dedup();
        let feature_edges: Vec<f64> = if values.len() <= bins {
            values.windows(2).map(|w| (w[0] + w[1]) / 2.0).collect()
        } else {
            let mut e: Vec<f64> = (1..bins).map(|b| values[b * values.len() / bins]).collect();
            e.dedup();
            e
        };
        edges.push(feature_edges);
    }
    let codes = xs
        .iter()
        .map(|x| {
            (0..n_features)
                .map(|f| edges[f].partition_point(|e| *e < x.get(f).copied().unwrap_or(0.0)) as u8)
                .collect()
        })
        .collect();
    Binned { codes, edges }
}

struct Grower<'a> {
    binned: &'a Binned,
    gradients: &'a [f64],
    hessians: &'a [f64],
    config: &'a GbtConfig,
    nodes: Vec<TreeNode>,
}

impl Grower<'_> {
    fn leaf_value(&self, rows: &[usize]) -> f64 {
        let (g, h) = rows.iter().fold((0.0, 0.0), |(g, h), r| {
            (g + self.gradients[*r], h + self.hessians[*r])
        });
        -g / (h + self.config.lambda)
    }

    fn grow(&mut self, rows: Vec<usize>, depth: usize) -> usize {
        let index = self.nodes.len();
        self.nodes.push(TreeNode::Leaf(self.leaf_value(&rows)));
        if depth >= self.config.max_depth || rows.len() < 2 {
            return index;
        }
        let (g_total, h_total) = rows.iter().fold((0.0, 0.0), |(g, h), r| {
            (g + self.gradients[*r], h + self.hessians[*r])
        });
        let parent_score = g_total * g_total / (h_total + self.config.lambda);
        let mut best: Option<(f64, usize, usize)> = None;
        for (f, feature_edges) in self.binned.edges.iter().enumerate() {
            let n_bins = feature_edges.len() + 1;
            if n_bins < 2 {
                continue;
            }
            let mut g_bins = vec![0.0; n_bins];
            let mut h_bins = vec![0.0; n_bins];
            for r in &rows {
                let b = usize::from(self.binned.codes[*r][f]);
                g_bins[b] += self.gradients[*r];
                h_bins[b] += self.hessians[*r];
            }
            let (mut g_left, mut h_left) = (0.0, 0.0);
            for b in 0..n_bins - 1 {
                g_left += g_bins[b];
                h_left += h_bins[b];
                let (g_right, h_right) = (g_total - g_left, h_total - h_left);
                if h_left < self.config.min_child_weight || h_right < self.config.min_child_weight {
                    continue;
                }
                let gain = g_left * g_left / (h_left + self.config.lambda)
                    + g_right * g_right / (h_right + self.config.lambda)
                    - parent_score;
                if gain > 1e-9 && best.is_none_or(|(g, ..)| gain > g) {
                    best = Some((gain, f, b));
                }
            }
        }
        let Some((_, feature, split_bin)) = best else {
            return index;
        };
        let (left_rows, right_rows): (Vec<usize>, Vec<usize>) = rows
            .into_iter()
            .partition(|r| usize::from(self.binned.codes[*r][feature]) <= split_bin);
        let threshold = self.binned.edges[feature][split_bin];
        let left = self.grow(left_rows, depth + 1);
        let right = self.grow(right_rows, depth + 1);
        self.nodes[index] = TreeNode::Split {
            feature,
            threshold,
            left,
            right,
        };
        index
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GradientBoostedTrees {
    config: GbtConfig,
    n_features: usize,
    n_classes: usize,
    /// Initial score per output (one for binary, one per class otherwise).
    base: Vec<f64>,
    /// rounds x outputs
    trees: Vec<Vec<RegressionTree>>,
    window_x: Vec<Vec<f64>>,
    window_y: Vec<usize>,
    since_fit: usize,
}

impl GradientBoostedTrees {
    pub fn new(n_features: usize, n_classes: usize, config: GbtConfig) -> Self {
        let n_classes = n_classes.max(2);
        let outputs = if n_classes == 2 { 1 } else { n_classes };
        GradientBoostedTrees {
            config,
            n_features,
            n_classes,
            base: vec![0.0; outputs],
            trees: Vec::new(),
            window_x: Vec::new(),
            window_y: Vec::new(),
            since_fit: 0,
        }
    }

    fn outputs(&self) -> usize {
        self.base.len()
    }

    fn raw_scores(&self, x: &[f64]) -> Vec<f64> {
        let mut scores = self.base.clone();
        for round in &self.trees {
            for (k, tree) in round.iter().enumerate() {
                scores[k] += self.config.learning_rate * tree.predict(x);
            }
        }
        scores
    }

    fn probabilities_from(&self, scores: &[f64]) -> Vec<f64> {
        if self.outputs() == 1 {
            let p = super::linear::sigmoid(scores[0]);
            vec![1.0 - p, p]
        } else {
            softmax(scores)
        }
    }

    fn train(&mut self, xs: &[Vec<f64>], ys: &[usize]) {
        self.trees.clear();
        let n = xs.len();
        if n == 0 {
            self.base.iter_mut().for_each(|b| *b = 0.0);
            return;
        }
        let outputs = self.outputs();
        let mut counts = vec![1.0; self.n_classes];
        for y in ys {
            if *y < self.n_classes {
                counts[*y] += 1.0;
            }
        }
        let total: f64 = counts.iter().sum();
        self.base = if outputs == 1 {
            vec![(counts[1] / counts[0]).ln()]
        } else {
            counts.iter().map(|c| (c / total).ln()).collect()
        };
        let binned = bin(xs, self.n_features, self.config.bins.clamp(2, 255));
        let mut scores: Vec<Vec<f64>> = vec![self.base.clone(); n];
        let mut gradients = vec![0.0; n];
        let mut hessians = vec![0.0; n];
        for _ in 0..self.config.rounds {
            let probabilities: Vec<Vec<f64>> =
                scores.iter().map(|s| self.probabilities_from(s)).collect();
            let mut round = Vec::with_capacity(outputs);
            for k in 0..outputs {
                let class = if outputs == 1 { 1 } else { k };
                for i in 0..n {
                    let p = probabilities[i][class];
                    gradients[i] = p - f64::from(u8::from(ys[i] == class));
                    hessians[i] = (p * (1.0 - p)).max(1e-6);
                }
                let mut grower = Grower {
                    binned: &binned,
                    gradients: &gradients,
                    hessians: &hessians,
                    config: &self.config,
                    nodes: Vec::new(),
                };
                grower.grow((0..n).collect(), 0);
                round.push(RegressionTree {
                    nodes: grower.nodes,
                });
            }
            for (i, x) in xs.iter().enumerate() {
                for (k, tree) in round.iter().enumerate() {
                    scores[i][k] += self.config.learning_rate * tree.predict(x);
                }
            }
            self.trees.push(round);
        }
    }
}

impl Classifier for GradientBoostedTrees {
    fn learn_one(&mut self, x: &[f64], y: usize) {
        self.window_x.push(x.to_vec());
        self.window_y.push(y);
        if self.window_x.len() > self.config.window {
            let excess = self.window_x.len() - self.config.window;
            self.window_x.drain(..excess);
            self.window_y.drain(..excess);
        }
        self.since_fit += 1;
        if self.since_fit >= self.config.refit_every
            || self.trees.is_empty() && self.window_x.len() >= 50 && self.since_fit >= 50
        {
            self.since_fit = 0;
            let (xs, ys) = (
                std::mem::take(&mut self.window_x),
                std::mem::take(&mut self.window_y),
            );
            self.train(&xs, &ys);
            self.window_x = xs;
            self.window_y = ys;
        }
    }

    fn predict_proba_one(&self, x: &[f64]) -> Vec<f64> {
        self.probabilities_from(&self.raw_scores(x))
    }

    fn fit(&mut self, xs: &[Vec<f64>], ys: &[usize]) {
        self.train(xs, ys);
        let keep = xs.len().saturating_sub(self.config.window);
        self.window_x = xs[keep..].to_vec();
        self.window_y = ys[keep..].to_vec();
        self.since_fit = 0;
    }

    fn reset(&mut self) {
        *self = GradientBoostedTrees::new(self.n_features, self.n_classes, self.config.clone());
    }

    fn size_bytes(&self) -> usize {
        self.trees
            .iter()
            .flatten()
            .map(|t| t.nodes.len() * std::mem::size_of::<TreeNode>())
            .sum::<usize>()
            + self.window_x.len() * (self.n_features * 8 + 32)
    }

    fn to_model(&self) -> Model {
        Model::GradientBoostedTrees(self.clone())
    }

    fn name(&self) -> &'static str {
        "gradient_boosted_trees"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::SplitMix64;

    #[test]
    fn boosting_fits_a_nonlinear_boundary_on_a_window() {
        let mut rng = SplitMix64::new(8);
        let data: Vec<(Vec<f64>, usize)> = (0..3000)
            .map(|_| {
                let (a, b) = (rng.next_f64() * 2.0 - 1.0, rng.next_f64() * 2.0 - 1.0);
                (vec![a, b], usize::from(a * a + b * b < 0.5))
            })
            .collect();
        let (train, test) = data.split_at(2000);
        let xs: Vec<Vec<f64>> = train.iter().map(|(x, _)| x.clone()).collect();
        let ys: Vec<usize> = train.iter().map(|(_, y)| *y).collect();
        let mut model = GradientBoostedTrees::new(2, 2, GbtConfig::default());
        model.fit(&xs, &ys);
        let correct = test
            .iter()
            .filter(|(x, y)| model.predict_one(x) == *y)
            .count();
        assert!(correct > 920, "{correct} of 1000");
    }

    #[test]
    fn boosting_handles_several_classes() {
        let mut rng = SplitMix64::new(9);
        let mut model = GradientBoostedTrees::new(1, 3, GbtConfig::default());
        let xs: Vec<Vec<f64>> = (0..900).map(|_| vec![rng.next_f64() * 3.0]).collect();
        let ys: Vec<usize> = xs.iter().map(|x| (x[0] as usize).min(2)).collect();
        model.fit(&xs, &ys);
        assert_eq!(model.predict_one(&[0.5]), 0);
        assert_eq!(model.predict_one(&[1.5]), 1);
        assert_eq!(model.predict_one(&[2.5]), 2);
        let p = model.predict_proba_one(&[1.5]);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    }
}
