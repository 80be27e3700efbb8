//! The feature encoder: a schema turns a JSON object or a CSV row into a dense
//! feature vector. The encoder is serialisable and travels inside model
//! artifacts, so serving encodes exactly as training did.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How one raw field becomes one or more features.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FeatureKind {
    Numeric,
    Boolean,
    /// One feature per known category (in order); unseen categories encode as all zeros.
    OneHot {
        categories: Vec<String>,
    },
    /// `buckets` features; a category lands in the bucket of its hash.
    Hashed {
        buckets: usize,
    },
}

/// What to do with a missing or null value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MissingPolicy {
    /// Refuse the record.
    Error,
    /// Encode as zero (for one-hot and hashed: no category).
    #[default]
    Zero,
    /// Encode as the running mean of the values seen so far (numeric only).
    Mean,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureSpec {
    pub name: String,
    #[serde(flatten)]
    pub kind: FeatureKind,
    #[serde(default)]
    pub missing: MissingPolicy,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EncodeError {
    #[error("feature {field:?} is missing")]
    Missing { field: String },
    #[error("feature {field:?} should be {expected}, got {got}")]
    WrongType {
        field: String,
        expected: &'static str,
        got: String,
    },
    #[error("the record is not a JSON object")]
    NotAnObject,
    #[error("the row has {got} fields, the schema needs {expected}")]
    RowLength { expected: usize, got: usize },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Encoder {
    pub features: Vec<FeatureSpec>,
    /// Running means for the `Mean` missing policy: (sum, count) per spec.
    means: Vec<(f64, f64)>,
}

impl Encoder {
    pub fn new(features: Vec<FeatureSpec>) -> Encoder {
        let means = vec![(0.0, 0.0); features.len()];
        Encoder { features, means }
    }

    /// All-numeric features with the given names, missing values as zero.
    pub fn numeric(names: &[&str]) -> Encoder {
        Encoder::new(
            names
                .iter()
                .map(|n| FeatureSpec {
                    name: (*n).to_string(),
                    kind: FeatureKind::Numeric,
                    missing: MissingPolicy::Zero,
                })
                .collect(),
        )
    }

    /// Width of the encoded vector.
    pub fn width(&self) -> usize {
        self.features
            .iter()
            .map(|f| match &f.kind {
                FeatureKind::Numeric | FeatureKind::Boolean => 1,
                FeatureKind::OneHot { categories } => categories.len(),
                FeatureKind::Hashed { buckets } => *buckets,
            })
            .sum()
    }

    /// Names of the encoded features, in order.
    pub fn feature_names(&self) -> Vec<String> {
        let mut names = Vec::with_capacity(self.width());
        for spec in &self.features {
            match &spec.kind {
                FeatureKind::Numeric | FeatureKind::Boolean => names.push(spec.name.clone()),
                FeatureKind::OneHot { categories } => {
                    names.extend(categories.iter().map(|c| format!("{}={c}", spec.name)))
                }
                FeatureKind::Hashed { buckets } => {
                    names.extend((0..*buckets).map(|b| format!("{}#{b}", spec.name)))
                }
            }
        }
        names
    }

    /// Encodes a JSON object; field order in the object does not matter.
    /// Numeric values seen feed the running means of the `Mean` policy.
    pub fn encode_json(&mut self, record: &Value) -> Result<Vec<f64>, EncodeError> {
        let mut observed = Vec::new();
        let out = self.encode_json_observing(record, &mut observed)?;
        for (i, value) in observed {
            self.learn_mean(i, value);
        }
        Ok(out)
    }

    /// Encodes a JSON object without learning from it: what serving uses, so
    /// a shared model encodes requests exactly as training left it.
    pub fn encode_json_frozen(&self, record: &Value) -> Result<Vec<f64>, EncodeError> {
        self.encode_json_observing(record, &mut Vec::new())
    }

    fn encode_json_observing(
        &self,
        record: &Value,
        observed: &mut Vec<(usize, Option<f64>)>,
    ) -> Result<Vec<f64>, EncodeError> {
        let Value::Object(map) = record else {
            return Err(EncodeError::NotAnObject);
        };
        let mut out = Vec::with_capacity(self.width());
        for i in 0..self.features.len() {
            let raw = map.get(&self.features[i].name).filter(|v| !v.is_null());
            let raw = match raw {
                None => None,
                Some(Value::String(s)) => Some(Raw::Text(s.as_str())),
                Some(Value::Number(n)) => Some(Raw::Number(n.as_f64().unwrap_or(f64::NAN))),
                Some(Value::Bool(b)) => Some(Raw::Bool(*b)),
                Some(other) => {
                    return Err(EncodeError::WrongType {
                        field: self.features[i].name.clone(),
                        expected: "a number, string or boolean",
                        got: other.to_string(),
                    })
                }
            };
            observed.push((i, self.encode_field(i, raw, &mut out)?));
        }
        Ok(out)
    }

    /// Encodes a row of text fields in schema order (a CSV row); empty is missing.
    pub fn encode_row(&mut self, row: &[&str]) -> Result<Vec<f64>, EncodeError> {
        if row.len() != self.features.len() {
            return Err(EncodeError::RowLength {
                expected: self.features.len(),
                got: row.len(),
            });
        }
        let mut out = Vec::with_capacity(self.width());
        for (i, text) in row.iter().enumerate() {
            let text = text.trim();
            let raw = (!text.is_empty()).then_some(Raw::Text(text));
            let observed = self.encode_field(i, raw, &mut out)?;
            self.learn_mean(i, observed);
        }
        Ok(out)
    }

    /// Encodes a row of values already parsed (a number where the text was
    /// one, `None` where it was empty), in schema order.
    pub fn encode_values(&mut self, row: &[Field]) -> Result<Vec<f64>, EncodeError> {
        if row.len() != self.features.len() {
            return Err(EncodeError::RowLength {
                expected: self.features.len(),
                got: row.len(),
            });
        }
        let mut out = Vec::with_capacity(self.width());
        for (i, field) in row.iter().enumerate() {
            let raw = match field {
                Field::Number(v) => Some(Raw::Number(*v)),
                Field::Text(t) => Some(Raw::Text(t)),
                Field::Missing => None,
            };
            let observed = self.encode_field(i, raw, &mut out)?;
            self.learn_mean(i, observed);
        }
        Ok(out)
    }

    /// Encodes one field into `out`; returns the numeric value seen, which
    /// the `Mean` missing policy learns from (callers that learn apply it).
    fn encode_field(
        &self,
        i: usize,
        raw: Option<Raw>,
        out: &mut Vec<f64>,
    ) -> Result<Option<f64>, EncodeError> {
        let mut observed = None;
        let spec = &self.features[i];
        let wrong = |expected: &'static str, got: String| EncodeError::WrongType {
            field: spec.name.clone(),
            expected,
            got,
        };
        match &spec.kind {
            FeatureKind::Numeric => {
                let value = match raw {
                    Some(Raw::Number(n)) => Some(n),
                    Some(Raw::Bool(b)) => Some(f64::from(u8::from(b))),
                    Some(Raw::Text(t)) => Some(
                        t.parse::<f64>()
                            .map_err(|_| wrong("a number", format!("{t:?}")))?,
                    ),
                    None => None,
                };
                let value = match (value, spec.missing) {
                    (Some(v), _) if v.is_finite() => {
                        observed = Some(v);
                        v
                    }
                    (Some(v), _) => return Err(wrong("a finite number", v.to_string())),
                    (None, MissingPolicy::Error) => {
                        return Err(EncodeError::Missing {
                            field: spec.name.clone(),
                        })
                    }
                    (None, MissingPolicy::Zero) => 0.0,
                    (None, MissingPolicy::Mean) => {
                        let (sum, count) = self.means[i];
                        if count > 0.0 {
                            sum / count
                        } else {
                            0.0
                        }
                    }
                };
                out.push(value);
            }
            FeatureKind::Boolean => {
                let value = match raw {
                    Some(Raw::Bool(b)) => Some(b),
                    Some(Raw::Number(n)) if n == 0.0 || n == 1.0 => Some(n == 1.0),
                    Some(Raw::Text(t)) => Some(match t.to_ascii_lowercase().as_str() {
                        "true" | "1" | "yes" => true,
                        "false" | "0" | "no" => false,
                        _ => return Err(wrong("a boolean", format!("{t:?}"))),
                    }),
                    Some(Raw::Number(n)) => return Err(wrong("a boolean", n.to_string())),
                    None => None,
                };
                match (value, spec.missing) {
                    (Some(b), _) => out.push(f64::from(u8::from(b))),
                    (None, MissingPolicy::Error) => {
                        return Err(EncodeError::Missing {
                            field: spec.name.clone(),
                        })
                    }
                    (None, _) => out.push(0.0),
                }
            }
            FeatureKind::OneHot { categories } => {
                let start = out.len();
                out.extend(std::iter::repeat_n(0.0, categories.len()));
                match raw {
                    Some(raw) => {
                        let text = raw.as_category();
                        if let Some(position) = categories.iter().position(|c| *c == text) {
                            out[start + position] = 1.0;
                        }
                    }
                    None if spec.missing == MissingPolicy::Error => {
                        return Err(EncodeError::Missing {
                            field: spec.name.clone(),
                        })
                    }
                    None => {}
                }
            }
            FeatureKind::Hashed { buckets } => {
                let start = out.len();
                out.extend(std::iter::repeat_n(0.0, *buckets));
                match raw {
                    Some(raw) => {
                        let bucket = (fnv1a(raw.as_category().as_bytes())
                            % (*buckets).max(1) as u64)
                            as usize;
                        out[start + bucket] = 1.0;
                    }
                    None if spec.missing == MissingPolicy::Error => {
                        return Err(EncodeError::Missing {
                            field: spec.name.clone(),
                        })
                    }
                    None => {}
                }
            }
        }
        Ok(observed)
    }

    fn learn_mean(&mut self, i: usize, observed: Option<f64>) {
        if let Some(v) = observed {
            self.means[i].0 += v;
            self.means[i].1 += 1.0;
        }
    }
}

/// A field of a row whose numbers are already parsed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Field<'a> {
    Number(f64),
    Text(&'a str),
    Missing,
}

enum Raw<'a> {
    Text(&'a str),
    Number(f64),
    Bool(bool),
}

impl Raw<'_> {
    fn as_category(&self) -> String {
        match self {
            Raw::Text(t) => (*t).to_string(),
            Raw::Number(n) if n.fract() == 0.0 && n.abs() < 1e15 => format!("{}", *n as i64),
            Raw::Number(n) => n.to_string(),
            Raw::Bool(b) => b.to_string(),
        }
    }
}

/// FNV-1a: stable across runs and platforms, so hashed features never move.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Online standardisation (Welford): what linear learners see instead of raw features.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    count: f64,
    means: Vec<f64>,
    m2: Vec<f64>,
    /// sqrt(m2 / count), refreshed by `learn` so `transform` does no square roots.
    #[serde(default)]
    stds: Vec<f64>,
}

impl Standardizer {
    pub fn learn(&mut self, x: &[f64]) {
        if self.means.len() < x.len() {
            self.means.resize(x.len(), 0.0);
            self.m2.resize(x.len(), 0.0);
        }
        if self.stds.len() != self.means.len() {
            self.stds.resize(self.means.len(), 0.0);
        }
        self.count += 1.0;
        for (i, v) in x.iter().enumerate() {
            let delta = v - self.means[i];
            self.means[i] += delta / self.count;
            self.m2[i] += delta * (v - self.means[i]);
        }
        for i in 0..self.means.len() {
            let variance = self.m2[i] / self.count;
            self.stds[i] = if variance > 0.0 { variance.sqrt() } else { 0.0 };
        }
    }

    pub fn transform(&self, x: &[f64], out: &mut Vec<f64>) {
        out.clear();
        out.extend(x.iter().enumerate().map(|(i, v)| {
            let std = self.stds.get(i).copied().unwrap_or(0.0);
            if std > 0.0 {
                (v - self.means[i]) / std
            } else {
                0.0
            }
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn schema() -> Encoder {
        Encoder::new(vec![
            FeatureSpec {
                name: "amount".into(),
                kind: FeatureKind::Numeric,
                missing: MissingPolicy::Mean,
            },
            FeatureSpec {
                name: "card".into(),
                kind: FeatureKind::OneHot {
                    categories: vec!["visa".into(), "amex".into()],
                },
                missing: MissingPolicy::Zero,
            },
            FeatureSpec {
                name: "online".into(),
                kind: FeatureKind::Boolean,
                missing: MissingPolicy::Error,
            },
            FeatureSpec {
                name: "merchant".into(),
                kind: FeatureKind::Hashed { buckets: 4 },
                missing: MissingPolicy::Zero,
            },
        ])
    }

    #[test]
    fn frozen_encoding_does_not_learn_the_running_means() {
        let mut encoder = schema();
        encoder
            .encode_json(&json!({"online": true, "amount": 10.0}))
            .expect("learn");
        let before = encoder.clone();
        let missing = json!({"online": false});
        encoder
            .encode_json_frozen(&json!({"online": true, "amount": 1000.0}))
            .expect("frozen");
        assert_eq!(encoder, before);
        assert_eq!(
            encoder.encode_json_frozen(&missing).expect("frozen")[0],
            10.0
        );
        encoder
            .encode_json(&json!({"online": true, "amount": 20.0}))
            .expect("learn");
        assert_eq!(
            encoder.encode_json_frozen(&missing).expect("frozen")[0],
            15.0
        );
    }

    #[test]
    fn json_and_csv_encode_alike() {
        let mut encoder = schema();
        assert_eq!(encoder.width(), 1 + 2 + 1 + 4);
        let from_json = encoder
            .encode_json(&json!({"online": true, "amount": 12.5, "card": "amex", "merchant": "m1"}))
            .expect("encode");
        let from_row = encoder
            .encode_row(&["12.5", "amex", "true", "m1"])
            .expect("encode");
        assert_eq!(from_json, from_row);
        assert_eq!(&from_json[..4], &[12.5, 0.0, 1.0, 1.0]);
        assert_eq!(from_json[4..].iter().sum::<f64>(), 1.0);
    }

    #[test]
    fn missing_values_follow_their_policy() {
        let mut encoder = schema();
        encoder
            .encode_json(&json!({"amount": 10.0, "online": false}))
            .expect("encode");
        encoder
            .encode_json(&json!({"amount": 20.0, "online": false}))
            .expect("encode");
        let imputed = encoder
            .encode_json(&json!({"online": false}))
            .expect("encode");
        assert_eq!(imputed[0], 15.0);
        assert_eq!(
            encoder.encode_json(&json!({"amount": 1})),
            Err(EncodeError::Missing {
                field: "online".into()
            })
        );
        assert!(matches!(
            encoder.encode_json(&json!({"amount": "x", "online": true})),
            Err(EncodeError::WrongType { .. })
        ));
        assert!(matches!(
            encoder.encode_row(&["1"]),
            Err(EncodeError::RowLength { .. })
        ));
    }

    #[test]
    fn the_encoder_survives_serialisation() {
        let mut encoder = schema();
        encoder
            .encode_json(&json!({"amount": 3.0, "online": true}))
            .expect("encode");
        let text = serde_json::to_string(&encoder).expect("serialise");
        let back: Encoder = serde_json::from_str(&text).expect("deserialise");
        assert_eq!(back, encoder);
    }

    proptest! {
        #[test]
        fn field_order_does_not_change_the_encoding(amount in -1e6f64..1e6, card in 0usize..3, online: bool, merchant in "[a-z]{1,8}") {
            let cards = ["visa", "amex", "other"];
            let forward = json!({"amount": amount, "card": cards[card], "online": online, "merchant": merchant});
            let mut backward = serde_json::Map::new();
            for key in ["merchant", "online", "card", "amount"] {
                backward.insert(key.to_string(), forward[key].clone());
            }
            let (mut a, mut b) = (schema(), schema());
            prop_assert_eq!(a.encode_json(&forward).expect("encode"), b.encode_json(&Value::Object(backward)).expect("encode"));
        }

        #[test]
        fn standardised_features_have_zero_mean_and_unit_variance(values in proptest::collection::vec(-1e3f64..1e3, 2..200)) {
            let mut scaler = Standardizer::default();
            for v in &values {
                scaler.learn(&[*v]);
            }
            let mut out = Vec::new();
            let scaled: Vec<f64> = values.iter().map(|v| { scaler.transform(&[*v], &mut out); out[0] }).collect();
            let mean = scaled.iter().sum::<f64>() / scaled.len() as f64;
            prop_assert!(mean.abs() < 1e-6);
            let spread = values.iter().any(|v| (v - values[0]).abs() > 1e-6);
            if spread {
                let variance = scaled.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / scaled.len() as f64;
                prop_assert!((variance - 1.0).abs() < 1e-6);
            }
        }
    }
}
