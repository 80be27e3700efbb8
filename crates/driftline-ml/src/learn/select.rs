//! Online model selection over heterogeneous learners (BLAST, van Rijn et al.,
//! 2015): every member learns from every example, each member's recent
//! accuracy is tracked with a fading factor, and the ensemble predicts with
//! the member that has been best lately. Different concepts favour different
//! learners (trees, neighbours, linear models); the selector follows them.

use serde::{Deserialize, Serialize};

use super::{argmax, Classifier, Model};

#[derive(Serialize, Deserialize)]
pub struct BestRecentClassifier {
    members: Vec<Model>,
    /// Fading accuracy per member.
    scores: Vec<f64>,
    fading: f64,
    #[serde(skip)]
    live: Vec<Option<Box<dyn Classifier>>>,
}

impl std::fmt::Debug for BestRecentClassifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BestRecentClassifier")
            .field("scores", &self.scores)
            .finish()
    }
}

impl Clone for BestRecentClassifier {
    fn clone(&self) -> Self {
        let members: Vec<Model> = self.current_members();
        BestRecentClassifier {
            live: members
                .iter()
                .cloned()
                .map(|m| Some(m.into_classifier()))
                .collect(),
            members,
            scores: self.scores.clone(),
            fading: self.fading,
        }
    }
}

impl BestRecentClassifier {
    pub fn new(members: Vec<Box<dyn Classifier>>, fading: f64) -> BestRecentClassifier {
        let n = members.len();
        BestRecentClassifier {
            members: Vec::new(),
            scores: vec![0.0; n],
            fading,
            live: members.into_iter().map(Some).collect(),
        }
    }

    fn current_members(&self) -> Vec<Model> {
        if self.live.is_empty() {
            self.members.clone()
        } else {
            self.live.iter().flatten().map(|m| m.to_model()).collect()
        }
    }

    fn ensure_live(&mut self) {
        if self.live.is_empty() && !self.members.is_empty() {
            self.live = std::mem::take(&mut self.members)
                .into_iter()
                .map(|m| Some(m.into_classifier()))
                .collect();
        }
    }

    fn best(&self) -> usize {
        argmax(&self.scores)
    }

    /// Index of the member predicting now.
    pub fn leader(&self) -> usize {
        self.best()
    }
}

impl Classifier for BestRecentClassifier {
    fn learn_one(&mut self, x: &[f64], y: usize) {
        self.ensure_live();
        for (i, member) in self.live.iter_mut().enumerate() {
            if let Some(member) = member.as_mut() {
                let hit = f64::from(u8::from(member.predict_one(x) == y));
                self.scores[i] = self.fading * self.scores[i] + hit;
                member.learn_one(x, y);
            }
        }
    }

    fn predict_proba_one(&self, x: &[f64]) -> Vec<f64> {
        if self.live.is_empty() {
            // Loaded from an artifact and not yet used for learning.
            let model = self.members.get(self.best()).cloned();
            return model
                .map(|m| m.into_classifier().predict_proba_one(x))
                .unwrap_or_default();
        }
        self.live[self.best()]
            .as_ref()
            .map(|m| m.predict_proba_one(x))
            .unwrap_or_default()
    }

    fn fit(&mut self, xs: &[Vec<f64>], ys: &[usize]) {
        self.reset();
        for (x, y) in xs.iter().zip(ys) {
            self.learn_one(x, *y);
        }
    }

    fn reset(&mut self) {
        self.ensure_live();
        for member in self.live.iter_mut().flatten() {
            member.reset();
        }
        self.scores.iter_mut().for_each(|s| *s = 0.0);
    }

    fn size_bytes(&self) -> usize {
        self.live
            .iter()
            .flatten()
            .map(|m| m.size_bytes())
            .sum::<usize>()
            + self.members.len() * 64
    }

    fn to_model(&self) -> Model {
        Model::BestRecent(Box::new(BestRecentClassifier {
            members: self.current_members(),
            scores: self.scores.clone(),
            fading: self.fading,
            live: Vec::new(),
        }))
    }

    fn name(&self) -> &'static str {
        "best_recent"
    }
}
