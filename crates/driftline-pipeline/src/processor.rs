//! Processors: what an event-source mapping hands its batches to.

use driftline_lake::{FieldType, Row, TableSchema, Value};

use crate::transform::JqTransform;

/// A record as a processor sees it: where it sits in the stream and its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub shard: String,
    pub sequence_number: driftline_lake::Position,
    pub arrival_ms: i64,
    pub partition_key: String,
    pub data: Vec<u8>,
}

/// What a processor made of a batch: rows for the lake, and the records it
/// could not process with the reason (Lambda's partial batch failure: the
/// indices are positions in the batch).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    pub rows: Vec<Row>,
    pub failed: Vec<(usize, String)>,
    /// Records dropped on purpose (a transform's `select`), neither rows nor failures.
    pub filtered: usize,
}

/// A batch processor. `Err` fails the whole batch (as a Lambda function
/// error does): the mapping retries it, bisects it, and finally dead-letters
/// its records with the reason.
pub trait Processor: Send + Sync {
    fn process(&self, batch: &[Event]) -> Result<Outcome, String>;
}

/// Parses JSON events, runs the optional jq transform, casts each field to
/// its declared type and validates it against the schema; a record that does
/// not fit is reported failed with the reason, never dropped.
pub struct SchemaProcessor {
    schema: TableSchema,
    transform: Option<JqTransform>,
}

impl SchemaProcessor {
    pub fn new(schema: TableSchema) -> Self {
        SchemaProcessor {
            schema,
            transform: None,
        }
    }

    pub fn with_transform(mut self, transform: Option<JqTransform>) -> Self {
        self.transform = transform;
        self
    }

    pub fn schema(&self) -> &TableSchema {
        &self.schema
    }

    /// One event to one row (ignoring the transform), or the reason it does not fit.
    pub fn row(&self, event: &Event) -> Result<Row, String> {
        self.row_from(event, &event.data)
    }

    /// The rows of one event: through the transform when there is one.
    fn rows(&self, event: &Event) -> Result<Vec<Row>, String> {
        match &self.transform {
            None => Ok(vec![self.row(event)?]),
            Some(transform) => transform
                .apply(&event.data)?
                .iter()
                .map(|json| self.row_from(event, json))
                .collect(),
        }
    }

    fn row_from(&self, event: &Event, json: &[u8]) -> Result<Row, String> {
        let object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(json).map_err(|e| format!("not a JSON object: {e}"))?;
        let mut values = Vec::with_capacity(self.schema.fields.len());
        for field in &self.schema.fields {
            let value = match object.get(&field.name) {
                None | Some(serde_json::Value::Null) if field.required => {
                    return Err(format!("required field {:?} is missing", field.name))
                }
                None | Some(serde_json::Value::Null) => Value::Null,
                Some(value) => cast(value, field.field_type)
                    .map_err(|e| format!("field {:?}: {e}", field.name))?,
            };
            values.push(value);
        }
        let partition_time_us = match self.schema.event_time.map(|i| &values[i]) {
            Some(Value::Timestamp(us)) => *us,
            _ => event.arrival_ms.saturating_mul(1000),
        };
        Ok(Row {
            values,
            shard: event.shard.clone(),
            sequence_number: event.sequence_number.clone(),
            partition_time_us,
        })
    }
}

impl Processor for SchemaProcessor {
    fn process(&self, batch: &[Event]) -> Result<Outcome, String> {
        let mut outcome = Outcome::default();
        for (i, event) in batch.iter().enumerate() {
            match self.rows(event) {
                Ok(rows) if rows.is_empty() => outcome.filtered += 1,
                Ok(rows) => outcome.rows.extend(rows),
                Err(reason) => outcome.failed.push((i, reason)),
            }
        }
        Ok(outcome)
    }
}

/// Casts a JSON value to a field type: numbers and booleans written as
/// strings are accepted, anything that would lose information is not.
fn cast(value: &serde_json::Value, field_type: FieldType) -> Result<Value, String> {
    use serde_json::Value as J;
    let expected = || format!("expected {}, found {value}", field_type.name());
    Ok(match (field_type, value) {
        (FieldType::String, J::String(s)) => Value::String(s.clone()),
        (FieldType::String, J::Number(n)) => Value::String(n.to_string()),
        (FieldType::String, J::Bool(b)) => Value::String(b.to_string()),
        (FieldType::Float, J::Number(n)) => Value::Float(n.as_f64().ok_or_else(expected)?),
        (FieldType::Float, J::String(s)) => Value::Float(s.trim().parse().map_err(|_| expected())?),
        (FieldType::Int, J::Number(n)) => Value::Int(n.as_i64().ok_or_else(expected)?),
        (FieldType::Int, J::String(s)) => Value::Int(s.trim().parse().map_err(|_| expected())?),
        (FieldType::Bool, J::Bool(b)) => Value::Bool(*b),
        (FieldType::Bool, J::String(s)) if s == "true" || s == "false" => Value::Bool(s == "true"),
        (FieldType::Timestamp, J::String(s)) => {
            let time = chrono::DateTime::parse_from_rfc3339(s)
                .map_err(|e| format!("expected an RFC 3339 timestamp, found {value}: {e}"))?;
            Value::Timestamp(time.timestamp_micros())
        }
        _ => return Err(expected()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use driftline_lake::Field;

    fn processor() -> SchemaProcessor {
        let field = |name: &str, field_type, required| Field {
            name: name.into(),
            field_type,
            required,
        };
        SchemaProcessor::new(
            TableSchema::new(
                vec![
                    field("id", FieldType::String, true),
                    field("amount", FieldType::Float, true),
                    field("n", FieldType::Int, false),
                    field("ts", FieldType::Timestamp, true),
                ],
                Some("ts"),
            )
            .expect("schema"),
        )
    }

    fn event(json: &str) -> Event {
        Event {
            shard: "shardId-000000000000".into(),
            sequence_number: 7.into(),
            arrival_ms: 1,
            partition_key: "k".into(),
            data: json.as_bytes().to_vec(),
        }
    }

    #[test]
    fn good_events_become_typed_rows_partitioned_by_event_time() {
        let row = processor()
            .row(&event(
                r#"{"id":"a","amount":"12.5","ts":"2026-11-25T13:45:00+01:00","extra":1}"#,
            ))
            .expect("row");
        assert_eq!(row.values[1], Value::Float(12.5));
        assert_eq!(row.values[2], Value::Null);
        assert_eq!(row.partition_time_us, 1_795_610_700_000_000);
    }

    #[test]
    fn a_transform_renames_derives_and_filters_before_the_schema() {
        let transform =
            JqTransform::compile(r#"select(.kind == "pay") | {id, amount: .cents / 100, ts: .at}"#)
                .expect("compiles");
        let processor = processor().with_transform(Some(transform));
        let batch = [
            event(r#"{"kind":"pay","id":"a","cents":1250,"at":"2026-11-25T13:45:00Z"}"#),
            event(r#"{"kind":"view","id":"b"}"#),
            event(r#"{"kind":"pay","id":"c","cents":"x","at":"2026-11-25T13:45:00Z"}"#),
        ];
        let outcome = processor.process(&batch).expect("outcome");
        assert_eq!(outcome.rows.len(), 1);
        assert_eq!(outcome.rows[0].values[1], Value::Float(12.5));
        assert_eq!(outcome.filtered, 1);
        assert_eq!(outcome.failed.len(), 1);
        assert_eq!(outcome.failed[0].0, 2);
        assert!(
            outcome.failed[0].1.starts_with("transform failed"),
            "{:?}",
            outcome.failed
        );
    }

    #[test]
    fn bad_events_are_reported_with_the_reason() {
        let batch = [
            event(r#"{"id":"a","amount":1,"ts":"2026-11-25T13:45:00Z"}"#),
            event("not json"),
            event(r#"{"amount":1,"ts":"2026-11-25T13:45:00Z"}"#),
            event(r#"{"id":"a","amount":true,"ts":"2026-11-25T13:45:00Z"}"#),
            event(r#"{"id":"a","amount":1,"n":1.5,"ts":"2026-11-25T13:45:00Z"}"#),
            event(r#"{"id":"a","amount":1,"ts":"yesterday"}"#),
        ];
        let outcome = processor().process(&batch).expect("outcome");
        assert_eq!(outcome.rows.len(), 1);
        let reasons: Vec<&str> = outcome.failed.iter().map(|(_, r)| r.as_str()).collect();
        assert!(reasons[0].starts_with("not a JSON object"), "{reasons:?}");
        assert_eq!(reasons[1], "required field \"id\" is missing");
        assert_eq!(reasons[2], "field \"amount\": expected float, found true");
        assert_eq!(reasons[3], "field \"n\": expected int, found 1.5");
        assert!(
            reasons[4].starts_with("field \"ts\": expected an RFC 3339 timestamp"),
            "{reasons:?}"
        );
        assert_eq!(
            outcome.failed.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5]
        );
    }
}
