//! Model artifacts: a format version, the encoder, the learner. Loading an
//! artifact of a newer format, or a damaged one, fails with a clear error.

use serde::{Deserialize, Serialize};

use super::{Classifier, Model};
use crate::features::Encoder;

pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("model artifact has format version {found}; this driftline reads up to version {FORMAT_VERSION}, upgrade driftline to load it")]
    NewerFormat { found: u32 },
    #[error("model artifact is damaged or not a driftline artifact: {0}")]
    Corrupt(String),
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    format_version: u32,
    encoder: Option<Encoder>,
    model: serde_json::Value,
}

/// Serialises a learner and its encoder.
pub fn save(model: &dyn Classifier, encoder: Option<&Encoder>) -> Vec<u8> {
    let envelope = Envelope {
        format_version: FORMAT_VERSION,
        encoder: encoder.cloned(),
        model: serde_json::to_value(model.to_model()).unwrap_or(serde_json::Value::Null),
    };
    serde_json::to_vec(&envelope).unwrap_or_default()
}

/// Loads a learner and its encoder.
pub fn load(bytes: &[u8]) -> Result<(Box<dyn Classifier>, Option<Encoder>), ArtifactError> {
    #[derive(Deserialize)]
    struct VersionOnly {
        format_version: u32,
    }
    let version: VersionOnly =
        serde_json::from_slice(bytes).map_err(|e| ArtifactError::Corrupt(e.to_string()))?;
    if version.format_version > FORMAT_VERSION {
        return Err(ArtifactError::NewerFormat {
            found: version.format_version,
        });
    }
    let envelope: Envelope =
        serde_json::from_slice(bytes).map_err(|e| ArtifactError::Corrupt(e.to_string()))?;
    let model: Model = serde_json::from_value(envelope.model)
        .map_err(|e| ArtifactError::Corrupt(e.to_string()))?;
    Ok((model.into_classifier(), envelope.encoder))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learn::{classifier_by_name, CLASSIFIERS};
    use crate::stats::SplitMix64;

    #[test]
    fn every_learner_round_trips_and_predicts_the_same() {
        let mut rng = SplitMix64::new(1);
        let data: Vec<(Vec<f64>, usize)> = (0..1500)
            .map(|_| {
                let x = vec![rng.next_f64(), rng.next_f64(), rng.next_f64()];
                let y = usize::from(x[0] > x[1]);
                (x, y)
            })
            .collect();
        for name in CLASSIFIERS {
            let mut model = classifier_by_name(name, 3, 2, 7).expect("model");
            for (x, y) in &data {
                model.learn_one(x, *y);
            }
            let bytes = save(model.as_ref(), Some(&Encoder::numeric(&["a", "b", "c"])));
            let (back, encoder) = load(&bytes).expect("load");
            assert_eq!(encoder.map(|e| e.width()), Some(3));
            for (x, _) in data.iter().take(50) {
                assert_eq!(
                    back.predict_proba_one(x),
                    model.predict_proba_one(x),
                    "{name}"
                );
            }
            assert!(model.size_bytes() > 0);
        }
    }

    #[test]
    fn newer_and_damaged_artifacts_are_refused_clearly() {
        let newer = br#"{"format_version": 99, "encoder": null, "model": {}}"#;
        let error = load(newer).err().expect("refused");
        assert!(error.to_string().contains("format version 99"), "{error}");
        let damaged = load(b"{\"format_version\": 1, \"model\": {\"learner\": \"nope\"}}")
            .err()
            .expect("refused");
        assert!(damaged.to_string().contains("damaged"), "{damaged}");
        assert!(load(b"\x00\x01garbage").is_err());
    }
}
