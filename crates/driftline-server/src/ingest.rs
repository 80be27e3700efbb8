//! The native ingest path: NDJSON over HTTP, for producers that are not AWS clients.
//!
//! `POST /v1/streams/{name}/records[?partition_key=FIELD]` takes one JSON
//! object per line. The partition key is the named top-level field (a string
//! or a number), or random when no field is named. Every valid line is
//! written; each invalid line is reported with its number and the reason, and
//! nothing else is lost.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use driftline_log::Position;
use driftline_log::{LogError, NewRecord, StreamWriter};
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::json;

use crate::AppState;

#[derive(Debug, Deserialize)]
pub struct IngestParams {
    partition_key: Option<String>,
}

/// Lines per append: bounds the memory one request holds at a time.
const CHUNK_LINES: usize = 10_000;
const MAX_REPORTED_REJECTS: usize = 100;

pub async fn ingest(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(params): Query<IngestParams>,
    body: Bytes,
) -> Response {
    let writer = match state.writer(&name) {
        Ok(writer) => writer,
        Err(error) => return error_response(error),
    };
    let result = tokio::task::spawn_blocking(move || {
        ingest_blocking(writer.as_ref(), params.partition_key.as_deref(), &body)
    })
    .await;
    match result {
        Ok(summary) => {
            let status = if summary.written == 0 && summary.rejected > 0 {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::OK
            };
            (status, Json(summary.to_json())).into_response()
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": format!("ingest failed: {e}")})),
        )
            .into_response(),
    }
}

fn error_response(error: LogError) -> Response {
    let status = match &error {
        LogError::StreamNotFound(_) => StatusCode::NOT_FOUND,
        LogError::InvalidArgument(_) => StatusCode::BAD_REQUEST,
        LogError::LimitExceeded(_) => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, Json(json!({"error": error.to_string()}))).into_response()
}

#[derive(Default)]
pub struct IngestSummary {
    pub stream: String,
    pub written: u64,
    pub rejected: u64,
    pub failed: u64,
    pub rejects: Vec<(usize, String)>,
    /// shard -> (first, last) sequence number written
    pub ranges: BTreeMap<String, (String, String)>,
}

impl IngestSummary {
    fn to_json(&self) -> serde_json::Value {
        let shards: serde_json::Map<String, serde_json::Value> = self
            .ranges
            .iter()
            .map(|(shard, (first, last))| {
                (
                    shard.clone(),
                    json!({"first_sequence_number": first, "last_sequence_number": last}),
                )
            })
            .collect();
        json!({
            "stream": self.stream,
            "records": self.written,
            "rejected": self.rejected,
            "failed": self.failed,
            "shards": shards,
            "errors": self.rejects.iter().map(|(line, reason)| json!({"line": line, "error": reason})).collect::<Vec<_>>(),
        })
    }
}

/// Writes the valid lines of `body` to `stream` (the embedded stream, or a
/// Kinesis stream when the pipeline's stream lives there).
pub fn ingest_blocking(
    stream: &dyn StreamWriter,
    key_field: Option<&str>,
    body: &[u8],
) -> IngestSummary {
    let mut summary = IngestSummary {
        stream: stream.stream_name().to_string(),
        ..IngestSummary::default()
    };
    let mut chunk = Vec::with_capacity(CHUNK_LINES.min(4096));
    let mut random_keys = RandomKeys::new();
    for (i, line) in body.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match partition_key_of(line, key_field).and_then(|key| {
            if line.len() > crate::kinesis::ops::MAX_RECORD_BYTES {
                Err(format!(
                    "the line is {} bytes; a record holds at most {} bytes",
                    line.len(),
                    crate::kinesis::ops::MAX_RECORD_BYTES
                ))
            } else {
                Ok(key)
            }
        }) {
            Ok(key) => {
                let partition_key = match key {
                    Some(key) => key,
                    None => random_keys.next(),
                };
                chunk.push(NewRecord {
                    partition_key,
                    explicit_hash_key: None,
                    data: line.to_vec(),
                });
            }
            Err(reason) => {
                summary.rejected += 1;
                if summary.rejects.len() < MAX_REPORTED_REJECTS {
                    summary.rejects.push((i + 1, reason));
                }
            }
        }
        if chunk.len() >= CHUNK_LINES {
            write_chunk(stream, std::mem::take(&mut chunk), &mut summary);
        }
    }
    if !chunk.is_empty() {
        write_chunk(stream, chunk, &mut summary);
    }
    summary
}

fn write_chunk(stream: &dyn StreamWriter, chunk: Vec<NewRecord>, summary: &mut IngestSummary) {
    for result in stream.put_records(chunk) {
        match result {
            Ok(position) => {
                summary.written += 1;
                let sequence = position.sequence_number;
                let range = summary
                    .ranges
                    .entry(position.shard)
                    .or_insert_with(|| (sequence.clone(), sequence.clone()));
                if Position::order_text(&sequence, &range.0).is_lt() {
                    range.0 = sequence.clone();
                }
                if Position::order_text(&sequence, &range.1).is_gt() {
                    range.1 = sequence;
                }
            }
            Err(error) => {
                summary.failed += 1;
                if summary.rejects.len() < MAX_REPORTED_REJECTS {
                    summary.rejects.push((0, format!("write failed: {error}")));
                }
            }
        }
    }
}

struct RandomKeys {
    state: u64,
}

impl RandomKeys {
    fn new() -> RandomKeys {
        RandomKeys {
            state: rand::random::<u64>() | 1,
        }
    }

    /// xorshift64*: cheap, and random enough to spread records over shards.
    fn next(&mut self) -> String {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        format!("{:016x}", self.state.wrapping_mul(0x2545_F491_4F6C_DD1D))
    }
}

/// Validates one line as a JSON object and extracts the named field as a key.
pub fn partition_key_of(line: &[u8], field: Option<&str>) -> Result<Option<String>, String> {
    let mut deserializer = serde_json::Deserializer::from_slice(line);
    let found = KeySeed { field }
        .deserialize(&mut deserializer)
        .map_err(|e| format!("not a JSON object: {e}"))?;
    deserializer
        .end()
        .map_err(|e| format!("trailing characters after the JSON object: {e}"))?;
    match (field, found) {
        (None, _) => Ok(None),
        (Some(_), Some(key)) if key.is_empty() => Err("the partition key field is empty".into()),
        (Some(_), Some(key)) if key.chars().count() > 256 => {
            Err("the partition key is longer than 256 characters".into())
        }
        (Some(_), Some(key)) => Ok(Some(key)),
        (Some(field), None) => Err(format!(
            "the partition key field {field:?} is missing or not a string or number"
        )),
    }
}

struct KeySeed<'f> {
    field: Option<&'f str>,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if Some(key.as_ref()) == self.field && found.is_none() {
                found = map.next_value::<KeyValue>()?.0;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// A field value usable as a partition key: a string, or a number's text.
struct KeyValue(Option<String>);

impl<'de> Deserialize<'de> for KeyValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        Ok(KeyValue(match value {
            serde_json::Value::String(s) => Some(s),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_field_becomes_the_partition_key() {
        assert_eq!(
            partition_key_of(br#"{"user":"ann","x":1}"#, Some("user")),
            Ok(Some("ann".into()))
        );
        assert_eq!(
            partition_key_of(br#"{"id":42}"#, Some("id")),
            Ok(Some("42".into()))
        );
        assert_eq!(partition_key_of(br#"{"id":42}"#, None), Ok(None));
    }

    #[test]
    fn bad_lines_are_refused_with_the_reason() {
        assert!(partition_key_of(b"{\"a\":", None).is_err_and(|e| e.contains("not a JSON object")));
        assert!(partition_key_of(b"[1,2]", None).is_err());
        assert!(partition_key_of(br#"{"a":1} x"#, None).is_err_and(|e| e.contains("trailing")));
        assert!(
            partition_key_of(br#"{"a":1}"#, Some("user")).is_err_and(|e| e.contains("\"user\""))
        );
        assert!(partition_key_of(br#"{"user":""}"#, Some("user")).is_err());
    }

    #[test]
    fn good_lines_are_written_and_each_bad_one_is_reported_by_number() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = driftline_log::LogStore::open(dir.path(), driftline_log::LogConfig::default())
            .expect("open");
        store
            .create_stream(
                driftline_log::StreamSpec {
                    name: "s".into(),
                    shard_count: 2,
                    ..Default::default()
                },
                0,
            )
            .expect("create");
        let huge = format!("{{\"user\":\"x\",\"pad\":\"{}\"}}", "y".repeat(1024 * 1024));
        let body = format!("{{\"user\":\"a\"}}\n{huge}\n\n{{oops\n{{\"user\":\"b\"}}\r\n");
        let stream = store.stream("s").expect("stream");
        let summary = ingest_blocking(stream.as_ref(), Some("user"), body.as_bytes());
        assert_eq!(summary.written, 2);
        assert_eq!(summary.rejected, 2);
        let lines: Vec<usize> = summary.rejects.iter().map(|(line, _)| *line).collect();
        assert_eq!(lines, vec![2, 4]);
        assert!(summary.rejects[0].1.contains("at most"));
        let stored = stream.read_all().expect("read");
        assert_eq!(stored.len(), 2);
    }
}
