//! The model that answers, and the sample of its training data that the
//! data-drift monitor compares traffic with.

use super::*;

/// The model that answers, with the encoder it was trained with.
pub struct Served {
    pub version: u64,
    pub learner: String,
    pub model: Box<dyn Classifier>,
    pub encoder: Encoder,
    /// What it was trained on, for the data-drift monitor (stored beside the
    /// version in the registry; absent if it was never stored).
    pub reference: Option<Reference>,
}

/// A sample of a model's training inputs, column by column, and of its
/// scores on them: the reference the data-drift monitor compares traffic with.
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Reference {
    pub columns: Vec<Vec<f64>>,
    pub scores: Vec<f64>,
}

/// Rows kept in a reference sample.
const REFERENCE_ROWS: usize = 2000;

/// The registry attachment holding a version's reference.
const REFERENCE: &str = "reference.json";

impl Reference {
    /// Stores it beside its version, so that a restarted server monitors too.
    pub(super) async fn save(
        &self,
        registry: &Registry,
        version: u64,
    ) -> Result<(), LifecycleError> {
        let bytes =
            serde_json::to_vec(self).map_err(|e| LifecycleError::Artifact(e.to_string()))?;
        Ok(registry.write_attachment(version, REFERENCE, bytes).await?)
    }

    /// A version's stored reference; `None` if it has none (it was trained
    /// before references were kept, or its writer stopped before storing it).
    pub(super) async fn load(
        registry: &Registry,
        version: u64,
    ) -> Result<Option<Reference>, LifecycleError> {
        let Some(bytes) = registry.attachment(version, REFERENCE).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            LifecycleError::Artifact(format!("the reference of version {version}: {e}"))
        })
    }

    pub fn of(model: &dyn Classifier, xs: &[Vec<f64>]) -> Reference {
        let step = xs.len().div_ceil(REFERENCE_ROWS).max(1);
        let rows: Vec<&Vec<f64>> = xs.iter().step_by(step).collect();
        let width = rows.first().map_or(0, |r| r.len());
        // Sorted once here: the monitor's statistics sort their reference.
        let sorted = |mut column: Vec<f64>| {
            column.sort_by(f64::total_cmp);
            column
        };
        let mut scores: Vec<f64> = rows
            .iter()
            .map(|r| score(&model.predict_proba_one(r)))
            .collect();
        scores.sort_by(f64::total_cmp);
        Reference {
            columns: (0..width)
                .map(|c| sorted(rows.iter().map(|r| r[c]).collect()))
                .collect(),
            scores,
        }
    }
}

/// One number per prediction for the prediction-drift monitor: the positive
/// class's probability for two classes, else the predicted class.
pub(super) fn score(probabilities: &[f64]) -> f64 {
    if probabilities.len() == 2 {
        probabilities[1]
    } else {
        driftline_ml::learn::argmax(probabilities) as f64
    }
}

impl Served {
    pub(super) fn probabilities(&self, x: &[f64]) -> Vec<f64> {
        self.model.predict_proba_one(x)
    }
}
