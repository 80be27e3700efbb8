//! The producer's side of a stream, as a seam: the embedded [`Stream`] is one
//! writer, a Kinesis data stream (the `driftline` binary's aws feature) is
//! another. The NDJSON ingest, the prediction log and dead-letter streams
//! write through it, so each can live on either.

use crate::stream::{shard_id, Stream};
use crate::NewRecord;

/// Where a record was put: its shard and sequence number as text (Kinesis
/// shard ids are names and its sequence numbers have up to 56 digits).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutPosition {
    pub shard: String,
    pub sequence_number: String,
}

/// Why a record was not put, in the service's words.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PutError(pub String);

/// Puts records on a stream. Blocking: call it from a thread of its own
/// (or `spawn_blocking`), never straight from an async task.
pub trait StreamWriter: Send + Sync {
    /// The stream's name as the pipeline knows it.
    fn stream_name(&self) -> &str;

    /// Puts `records`; one outcome per record, in their order. A record that
    /// fails does not fail the others.
    fn put_records(&self, records: Vec<NewRecord>) -> Vec<Result<PutPosition, PutError>>;
}

impl StreamWriter for Stream {
    fn stream_name(&self) -> &str {
        self.name()
    }

    fn put_records(&self, records: Vec<NewRecord>) -> Vec<Result<PutPosition, PutError>> {
        self.put(records, crate::now_ms())
            .into_iter()
            .map(|result| {
                result
                    .map(|position| PutPosition {
                        shard: shard_id(position.shard_index),
                        sequence_number: position.sequence_number.to_string(),
                    })
                    .map_err(|error| PutError(error.to_string()))
            })
            .collect()
    }
}
