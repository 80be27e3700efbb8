//! The model that answers, and where its data-drift reference is kept.

use super::*;

pub use driftline_ml::lifecycle::Reference;

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

impl Served {
    pub(super) fn probabilities(&self, x: &[f64]) -> Vec<f64> {
        self.model.predict_proba_one(x)
    }

    pub(super) fn class(&self, x: &[f64]) -> usize {
        driftline_ml::learn::argmax(&self.probabilities(x))
    }
}

/// The registry attachment holding a version's reference.
const REFERENCE: &str = "reference.json";

/// Stores a version's reference beside it, so that a restarted server monitors too.
pub(super) async fn save_reference(
    registry: &Registry,
    version: u64,
    reference: &Reference,
) -> Result<(), LifecycleError> {
    let bytes =
        serde_json::to_vec(reference).map_err(|e| LifecycleError::Artifact(e.to_string()))?;
    Ok(registry.write_attachment(version, REFERENCE, bytes).await?)
}

/// A version's stored reference; `None` if it has none (it was trained
/// before references were kept, or its writer stopped before storing it).
pub(super) async fn load_reference(
    registry: &Registry,
    version: u64,
) -> Result<Option<Reference>, LifecycleError> {
    let Some(bytes) = registry.attachment(version, REFERENCE).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| LifecycleError::Artifact(format!("the reference of version {version}: {e}")))
}
