//! A label stream: outcomes that arrive as records (`{"request_id": "...",
//! "label": N}`) rather than through the HTTP API, joined by the model's
//! lifecycle. It runs as a processor of an event-source mapping, so the
//! stream's checkpoints, retries and dead-letter stream apply.

use std::sync::Arc;

use crate::lifecycle::{LifecycleError, ModelService};
use crate::processor::{Event, Outcome, Processor};

pub struct LabelProcessor {
    service: Arc<ModelService>,
}

impl LabelProcessor {
    pub fn new(service: Arc<ModelService>) -> LabelProcessor {
        LabelProcessor { service }
    }
}

/// The request id and label of one record, or what is wrong with it.
fn parse(data: &[u8]) -> Result<(String, usize), String> {
    let value: serde_json::Value =
        serde_json::from_slice(data).map_err(|e| format!("not JSON: {e}"))?;
    let request_id = value
        .get("request_id")
        .and_then(serde_json::Value::as_str)
        .ok_or("no string \"request_id\"")?;
    let label = match value.get("label") {
        Some(label) => label_of(label).ok_or(LABEL_RULE)?,
        None => return Err("no \"label\"".into()),
    };
    Ok((request_id.to_string(), label))
}

/// What a label may be, for errors.
pub const LABEL_RULE: &str = "\"label\" must be a class number (0, 1, ...) or a boolean";

/// A label as outcomes give it, over HTTP or on a label stream: a class
/// number, or a boolean for two classes.
pub fn label_of(value: &serde_json::Value) -> Option<usize> {
    match value {
        serde_json::Value::Bool(b) => Some(usize::from(*b)),
        serde_json::Value::Number(n) => n.as_u64().and_then(|n| usize::try_from(n).ok()),
        _ => None,
    }
}

impl Processor for LabelProcessor {
    fn process(&self, batch: &[Event]) -> Result<Outcome, String> {
        let mut outcome = Outcome::default();
        for (index, event) in batch.iter().enumerate() {
            let result = parse(&event.data).and_then(|(request_id, label)| {
                match self.service.label(&request_id, label) {
                    // An unknown or expired request id is counted by the lifecycle, not retried.
                    Ok(_) | Err(LifecycleError::Unmatched(_)) => Ok(()),
                    Err(error) => Err(error.to_string()),
                }
            });
            if let Err(reason) = result {
                outcome.failed.push((index, reason));
            }
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn label_records_parse_or_say_what_is_wrong() {
        assert_eq!(
            parse(br#"{"request_id": "r1", "label": 1}"#),
            Ok(("r1".into(), 1))
        );
        assert_eq!(
            parse(br#"{"request_id": "r1", "label": false}"#),
            Ok(("r1".into(), 0))
        );
        assert!(parse(b"nope")
            .expect_err("not json")
            .starts_with("not JSON"));
        assert_eq!(
            parse(br#"{"label": 1}"#),
            Err("no string \"request_id\"".into())
        );
        assert!(parse(br#"{"request_id": "r", "label": -1}"#)
            .expect_err("negative")
            .contains("class number"));
    }
}
