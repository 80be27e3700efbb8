//! k-nearest neighbours over a sliding window of the most recent examples
//! (as River's `KNNClassifier` with a window): forgetting is built in, which
//! suits streams whose concept moves locally. Distances are Euclidean on
//! features standardised by running statistics; neighbours vote with weight
//! 1 / distance.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::{normalize, Classifier, Model};
use crate::features::Standardizer;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KnnClassifier {
    k: usize,
    window: usize,
    n_classes: usize,
    scaler: Standardizer,
    examples: VecDeque<(Vec<f64>, usize)>,
}

impl KnnClassifier {
    pub fn new(n_classes: usize, k: usize, window: usize) -> KnnClassifier {
        KnnClassifier {
            k: k.max(1),
            window: window.max(1),
            n_classes: n_classes.max(2),
            scaler: Standardizer::default(),
            examples: VecDeque::with_capacity(window + 1),
        }
    }
}

impl Classifier for KnnClassifier {
    fn learn_one(&mut self, x: &[f64], y: usize) {
        if y >= self.n_classes {
            return;
        }
        self.scaler.learn(x);
        self.examples.push_back((x.to_vec(), y));
        if self.examples.len() > self.window {
            self.examples.pop_front();
        }
    }

    fn predict_proba_one(&self, x: &[f64]) -> Vec<f64> {
        if self.examples.is_empty() {
            return vec![1.0 / self.n_classes as f64; self.n_classes];
        }
        // Scale factors once per prediction: (x - mean)/std for both points
        // reduces to a per-feature weight on the raw difference.
        let mut unit = Vec::with_capacity(x.len());
        let ones = vec![1.0; x.len()];
        let zeros = vec![0.0; x.len()];
        self.scaler.transform(&ones, &mut unit);
        let mut origin = Vec::with_capacity(x.len());
        self.scaler.transform(&zeros, &mut origin);
        let weights: Vec<f64> = unit
            .iter()
            .zip(&origin)
            .map(|(u, o)| (u - o) * (u - o))
            .collect();
        let mut nearest: Vec<(f64, usize)> = Vec::with_capacity(self.k + 1);
        for (point, y) in &self.examples {
            let distance: f64 = point
                .iter()
                .zip(x)
                .zip(&weights)
                .map(|((a, b), w)| w * (a - b) * (a - b))
                .sum();
            if nearest.len() < self.k || distance < nearest[nearest.len() - 1].0 {
                let at = nearest.partition_point(|(d, _)| *d <= distance);
                nearest.insert(at, (distance, *y));
                nearest.truncate(self.k);
            }
        }
        let mut votes = vec![0.0; self.n_classes];
        for (distance, y) in nearest {
            votes[y] += 1.0 / (distance.sqrt() + 1e-9);
        }
        // A little probability for every class keeps the log loss finite when
        // the neighbours are unanimous and wrong.
        const SMOOTHING: f64 = 0.02;
        let k = self.n_classes as f64;
        normalize(votes)
            .into_iter()
            .map(|p| (1.0 - SMOOTHING) * p + SMOOTHING / k)
            .collect()
    }

    fn reset(&mut self) {
        *self = KnnClassifier::new(self.n_classes, self.k, self.window);
    }

    fn size_bytes(&self) -> usize {
        self.examples
            .iter()
            .map(|(x, _)| x.len() * 8 + 32)
            .sum::<usize>()
            + 64
    }

    fn to_model(&self) -> Model {
        Model::Knn(self.clone())
    }

    fn name(&self) -> &'static str {
        "knn"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::SplitMix64;

    #[test]
    fn neighbours_follow_a_moving_boundary() {
        let mut rng = SplitMix64::new(6);
        let mut knn = KnnClassifier::new(2, 5, 300);
        let mut correct = 0;
        for i in 0..6000 {
            let x = [rng.next_f64(), rng.next_f64()];
            // the boundary x0 = c moves from 0.2 to 0.8 over the stream
            let c = 0.2 + 0.6 * f64::from(i) / 6000.0;
            let y = usize::from(x[0] > c);
            if i >= 1000 && knn.predict_one(&x) == y {
                correct += 1;
            }
            knn.learn_one(&x, y);
        }
        assert!(correct > 4500, "{correct} of 5000");
        assert_eq!(knn.examples.len(), 300);
    }
}
