//! The on-failure destination: records that could not be processed, each as
//! a JSON envelope with the reason, written durably to a dead-letter stream.

use std::sync::atomic::Ordering;

use driftline_log::{NewRecord, StreamWriter};

use std::sync::atomic::AtomicU64;

/// A dead letter the on-failure stream refused.
#[derive(Debug, thiserror::Error)]
#[error("cannot write to stream {stream}: {reason}")]
pub struct DeadLetterError {
    pub stream: String,
    pub reason: String,
}
use crate::processor::Event;

/// The envelope of a record that could not be processed: the reason, who
/// refused it, where it came from, and its data.
pub(crate) fn envelope(
    reason: &str,
    processor: &str,
    stream: Option<&str>,
    event: &Event,
) -> serde_json::Value {
    let mut letter = serde_json::json!({
        "reason": reason,
        "processor": processor,
        "shard": event.shard,
        "sequence_number": event.sequence_number.to_string(),
        "arrival_ms": event.arrival_ms,
        "partition_key": event.partition_key,
        "data": String::from_utf8_lossy(&event.data),
    });
    if let Some(stream) = stream {
        letter["stream"] = serde_json::Value::String(stream.to_string());
    }
    fit(letter)
}

/// Keeps a letter within one stream record (1 MiB, key included; escaping
/// can grow text six-fold): when it would be larger, its data and then its
/// reason are cut to their first 64 KiB, saying so (`data_truncated`,
/// `data_bytes`, likewise for the reason).
pub(crate) fn fit(mut letter: serde_json::Value) -> serde_json::Value {
    for field in ["data", "reason"] {
        if letter.to_string().len() <= MAX_LETTER_BYTES {
            break;
        }
        let Some(text) = letter[field].as_str().map(str::to_string) else {
            continue;
        };
        let mut cut = KEPT_DATA_BYTES.min(text.len());
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        letter[field] = serde_json::Value::String(text[..cut].to_string());
        letter[format!("{field}_bytes")] = serde_json::json!(text.len());
        letter[format!("{field}_truncated")] = serde_json::Value::Bool(true);
    }
    letter
}

/// A partition key Kinesis takes (1-256 characters): a longer one (a landed
/// object's path, say) becomes its first 200 characters and a hash of it.
fn short_key(key: String) -> String {
    if (1..=256).contains(&key.chars().count()) {
        return key;
    }
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut hasher);
    let head: String = key.chars().take(200).collect();
    format!("{head}#{:016x}", hasher.finish())
}

/// A letter's size in JSON at most, under a stream record's 1 MiB.
const MAX_LETTER_BYTES: usize = 1_000_000;
/// What is kept of the data of a letter that would be larger.
const KEPT_DATA_BYTES: usize = 64 * 1024;

/// Writes `letters` (partition key, envelope) to `stream`, or logs them when
/// no on-failure stream is configured (as Lambda discards without one).
/// Returns once they are acknowledged, so a checkpoint can move past them.
pub(crate) fn send(
    stream: Option<&dyn StreamWriter>,
    letters: Vec<(String, serde_json::Value)>,
    dead_lettered: &AtomicU64,
) -> Result<(), DeadLetterError> {
    if letters.is_empty() {
        return Ok(());
    }
    dead_lettered.fetch_add(letters.len() as u64, Ordering::Relaxed);
    let Some(stream) = stream else {
        for (_, letter) in &letters {
            tracing::warn!(%letter, "record failed and no on_failure stream is set");
        }
        return Ok(());
    };
    put(stream, letters)
}

/// Puts `letters` (partition key, envelope) on `stream`; returns once each
/// is acknowledged.
pub(crate) fn put(
    stream: &dyn StreamWriter,
    letters: Vec<(String, serde_json::Value)>,
) -> Result<(), DeadLetterError> {
    let records: Vec<NewRecord> = letters
        .into_iter()
        .map(|(partition_key, letter)| NewRecord {
            partition_key: short_key(partition_key),
            explicit_hash_key: None,
            data: letter.to_string().into_bytes(),
        })
        .collect();
    for result in stream.put_records(records) {
        result.map_err(|error| DeadLetterError {
            stream: stream.stream_name().to_string(),
            reason: error.0,
        })?;
    }
    Ok(())
}

/// Where letters of the batch `first..=last` of `shard` are kept in the lake
/// without an on-failure stream: `PREFIX/CONSUMER/...ndjson`, named after the
/// batch, so a batch read again replaces its letters.
pub(crate) fn lake_path(
    prefix: &str,
    consumer: &str,
    shard: &str,
    first: driftline_lake::Position,
    last: driftline_lake::Position,
) -> String {
    let name = driftline_lake::ObjectName {
        shard: shard.to_string(),
        first,
        last,
    }
    .file_name();
    format!(
        "{}/{consumer}/{}.ndjson",
        prefix.trim_matches('/'),
        name.trim_end_matches(".parquet")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(data: Vec<u8>) -> Event {
        Event {
            shard: "shardId-000000000000".into(),
            sequence_number: driftline_lake::Position::parse("7").expect("position"),
            arrival_ms: 0,
            partition_key: "k".into(),
            data,
        }
    }

    #[test]
    fn a_letter_fits_one_record_and_says_when_its_data_was_cut() {
        let small = envelope("bad", "p", None, &event(b"{\"a\":1}".to_vec()));
        assert_eq!(small["data"], "{\"a\":1}");
        assert!(small.get("data_truncated").is_none());
        // control characters escape six-fold: 400 KB of them would be 2.4 MB
        let large = envelope("bad", "p", Some("s"), &event(vec![1u8; 400_000]));
        assert!(
            large.to_string().len() < MAX_LETTER_BYTES,
            "{}",
            large.to_string().len()
        );
        assert_eq!(large["data_truncated"], true);
        assert_eq!(large["data_bytes"], 400_000);
        // a long reason is cut too (a jq error may quote the whole event)
        let mut long = envelope(&"r".repeat(900_000), "p", None, &event(vec![1u8; 400_000]));
        long = fit(long);
        assert!(long.to_string().len() < MAX_LETTER_BYTES);
        assert_eq!(long["reason_truncated"], true);
        assert_eq!(short_key("k".into()), "k");
        let key = short_key("x/".repeat(300));
        assert!(
            key.chars().count() <= 256 && key.starts_with("x/x/"),
            "{key}"
        );
        // a cut never splits a character
        let text = "é".repeat(600_000);
        let cut = envelope("bad", "p", None, &event(text.into_bytes()));
        assert!(cut["data"]
            .as_str()
            .is_some_and(|d| d.chars().all(|c| c == 'é')));
    }
}
