//! The on-failure destination: records that could not be processed, each as
//! a JSON envelope with the reason, written durably to a dead-letter stream.

use std::sync::atomic::Ordering;

use driftline_log::{NewRecord, StreamWriter};

use crate::mapping::{MappingError, MappingStats};
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
    letter
}

/// Writes `letters` (partition key, envelope) to `stream`, or logs them when
/// no on-failure stream is configured (as Lambda discards without one).
/// Returns once they are acknowledged, so a checkpoint can move past them.
pub(crate) fn send(
    stream: Option<&dyn StreamWriter>,
    letters: Vec<(String, serde_json::Value)>,
    stats: &MappingStats,
) -> Result<(), MappingError> {
    if letters.is_empty() {
        return Ok(());
    }
    stats
        .dead_lettered
        .fetch_add(letters.len() as u64, Ordering::Relaxed);
    let Some(stream) = stream else {
        for (_, letter) in &letters {
            tracing::warn!(%letter, "record failed and no on_failure stream is set");
        }
        return Ok(());
    };
    let records: Vec<NewRecord> = letters
        .into_iter()
        .map(|(partition_key, letter)| NewRecord {
            partition_key,
            explicit_hash_key: None,
            data: letter.to_string().into_bytes(),
        })
        .collect();
    for result in stream.put_records(records) {
        result.map_err(|error| MappingError::Put {
            stream: stream.stream_name().to_string(),
            reason: error.0,
        })?;
    }
    Ok(())
}
