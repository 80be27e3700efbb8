//! Adaptive random forest (Gomes et al., 2017): Hoeffding trees grown on
//! Poisson(λ = 6) resamplings of the stream, each leaf splitting only on a
//! random subspace of 60 % of the features (MOA's default); every tree has an ADWIN
//! warning detector (δ = 0.01), which starts a background tree, and a drift
//! detector (δ = 0.001), which replaces the tree by its background tree.
//! Votes are weighted by each tree's accuracy since it was (re)started.

use serde::{Deserialize, Serialize};

use super::hoeffding::{Tree, TreeConfig};
use super::{normalize, Classifier, Model};
use crate::drift::{Adwin, DriftDetector, DriftState};
use crate::stats::SplitMix64;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ForestConfig {
    pub trees: usize,
    pub lambda: f64,
    pub warning_delta: f64,
    pub drift_delta: f64,
    /// Fraction of the features a leaf may split on (a random subspace per leaf).
    pub subspace_fraction: f64,
    pub tree: TreeConfig,
}

impl Default for ForestConfig {
    fn default() -> Self {
        ForestConfig {
            trees: 10,
            lambda: 6.0,
            warning_delta: 0.01,
            drift_delta: 0.001,
            subspace_fraction: 0.6,
            tree: TreeConfig {
                grace_period: 50.0,
                split_confidence: 0.01,
                tie_threshold: 0.05,
                max_depth: 30,
                subspace: None,
                naive_bayes: true,
            },
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Member {
    tree: Tree,
    background: Option<Tree>,
    warning: Adwin,
    drift: Adwin,
    correct: f64,
    seen: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AdaptiveRandomForestClassifier {
    config: ForestConfig,
    n_features: usize,
    n_classes: usize,
    seed: u64,
    rng: SplitMix64,
    members: Vec<Member>,
    drifts: u64,
}

impl AdaptiveRandomForestClassifier {
    pub fn new(n_features: usize, n_classes: usize, config: ForestConfig, seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed);
        let n_classes = n_classes.max(2);
        let mut tree_config = config.tree.clone();
        // MOA's default: each leaf may split on 60 % of the features.
        let subspace = ((n_features as f64) * config.subspace_fraction).round() as usize;
        tree_config.subspace = Some(subspace.clamp(1, n_features.max(1)));
        let members = (0..config.trees)
            .map(|_| Member {
                tree: Tree::new(
                    n_features,
                    n_classes,
                    tree_config.clone(),
                    false,
                    rng.next_u64(),
                ),
                background: None,
                warning: Adwin::new(config.warning_delta, 32, 5, 5, 10).unwrap_or_default(),
                drift: Adwin::new(config.drift_delta, 32, 5, 5, 10).unwrap_or_default(),
                correct: 0.0,
                seen: 0.0,
            })
            .collect();
        AdaptiveRandomForestClassifier {
            config: ForestConfig {
                tree: tree_config,
                ..config
            },
            n_features,
            n_classes,
            seed,
            rng,
            members,
            drifts: 0,
        }
    }

    /// Trees replaced after a detected drift so far.
    pub fn drifts(&self) -> u64 {
        self.drifts
    }

    fn fresh_tree(&mut self) -> Tree {
        Tree::new(
            self.n_features,
            self.n_classes,
            self.config.tree.clone(),
            false,
            self.rng.next_u64(),
        )
    }
}

impl Classifier for AdaptiveRandomForestClassifier {
    fn learn_one(&mut self, x: &[f64], y: usize) {
        if y >= self.n_classes {
            return;
        }
        for m in 0..self.members.len() {
            let k = self.rng.poisson(self.config.lambda);
            let member = &mut self.members[m];
            // The tree's vote on this example, taken before it learns from it.
            let vote = if k > 0 {
                let vote = member.tree.learn_and_predict(x, y, f64::from(k));
                if let Some(background) = member.background.as_mut() {
                    background.learn(x, y, f64::from(k));
                }
                vote
            } else {
                member.tree.predict(x)
            };
            let wrong = super::argmax(&vote) != y;
            member.seen += 1.0;
            if !wrong {
                member.correct += 1.0;
            }
            let error = f64::from(u8::from(wrong));
            let warned = member.warning.update(error) == DriftState::Drift;
            let drifted = member.drift.update(error) == DriftState::Drift;
            if warned && self.members[m].background.is_none() {
                let background = self.fresh_tree();
                self.members[m].background = Some(background);
            }
            if drifted {
                self.drifts += 1;
                let replacement = match self.members[m].background.take() {
                    Some(background) => background,
                    None => self.fresh_tree(),
                };
                let member = &mut self.members[m];
                member.tree = replacement;
                member.correct = 0.0;
                member.seen = 0.0;
                member.warning.reset();
                member.drift.reset();
            }
        }
    }

    fn predict_proba_one(&self, x: &[f64]) -> Vec<f64> {
        let mut votes = vec![0.0; self.n_classes];
        for member in &self.members {
            let accuracy = if member.seen > 0.0 {
                member.correct / member.seen
            } else {
                0.0
            };
            let weight = if accuracy > 0.0 { accuracy } else { 1e-6 };
            for (vote, p) in votes.iter_mut().zip(member.tree.predict(x)) {
                *vote += weight * p;
            }
        }
        normalize(votes)
    }

    fn reset(&mut self) {
        // `new` derives the subspace from `subspace_fraction` again.
        *self = AdaptiveRandomForestClassifier::new(
            self.n_features,
            self.n_classes,
            self.config.clone(),
            self.seed.wrapping_add(1),
        );
    }

    fn size_bytes(&self) -> usize {
        self.members
            .iter()
            .map(|m| m.tree.size_bytes() + m.background.as_ref().map_or(0, Tree::size_bytes))
            .sum()
    }

    fn to_model(&self) -> Model {
        Model::AdaptiveRandomForest(self.clone())
    }

    fn name(&self) -> &'static str {
        "adaptive_random_forest"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forest_learns_and_adapts_to_a_flipped_concept() {
        let mut rng = SplitMix64::new(4);
        let mut forest = AdaptiveRandomForestClassifier::new(3, 2, ForestConfig::default(), 7);
        let (mut correct_before, mut correct_after) = (0, 0);
        for i in 0..16_000 {
            let x = [rng.next_f64(), rng.next_f64(), rng.next_f64()];
            let mut y = usize::from(x[0] + x[1] > 1.0);
            if i >= 8000 {
                y = 1 - y;
            }
            let hit = forest.predict_one(&x) == y;
            if (6000..8000).contains(&i) && hit {
                correct_before += 1;
            }
            if (14_000..16_000).contains(&i) && hit {
                correct_after += 1;
            }
            forest.learn_one(&x, y);
        }
        assert!(correct_before > 1800, "{correct_before}");
        assert!(correct_after > 1800, "{correct_after}");
        assert!(forest.drifts() > 0);
    }
}
