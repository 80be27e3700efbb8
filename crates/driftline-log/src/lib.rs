//! driftline's stream: a durable, sharded, segmented log with Kinesis semantics.
//!
//! # Model
//!
//! A [`LogStore`] holds named [`Stream`]s; a stream holds shards, each owning a
//! contiguous range of 128-bit hash keys. A record's partition key is hashed
//! with MD5 (or its explicit hash key is used) to choose the open shard that
//! owns it, as in Kinesis. Within a shard every record has an offset, counted
//! from zero, and a [`SequenceNumber`] derived from the shard and the offset.
//!
//! # On disk
//!
//! Each shard is a directory of segment files named by their first offset.
//! A segment is a sequence of checksummed batch frames (see [`frame`]); a
//! segment rolls when it would exceed the configured size, and a sealed
//! segment gets a sparse index file so reads by offset and by time never scan.
//! In fsync mode a stream also keeps a write-ahead [`journal`]: a put is
//! acknowledged by one fdatasync of the journal however many shards it
//! touched, and opening the stream writes back any frame a segment lost.
//!
//! # Guarantees
//!
//! - An append is acknowledged only when it is durable under the configured
//!   [`Durability`] (fsync by default, with group commit).
//! - Readers see only acknowledged records.
//! - Opening a store verifies the active segment of every shard frame by frame
//!   and truncates a torn tail; it never drops an acknowledged record, and it
//!   refuses to open (rather than silently cut) a damaged sealed segment.
//! - Retention deletes whole sealed segments, by age and by size.
//! - Resharding is recorded before any record can reach a child shard; closed
//!   parents stay readable to their end and children know their parents.
//!
//! # Non-goals
//!
//! Replication, and more than one process writing the same data directory
//! (a lock file refuses the second).

pub mod durability;
pub mod error;
pub mod frame;
mod fsutil;
pub mod hash;
pub mod journal;
pub mod position;
pub mod segment;
pub mod sequence;
pub mod shard;
pub mod store;
pub mod stream;
pub mod writer;

pub use durability::Durability;
pub use error::{LogError, Result};
pub use frame::{NewRecord, StoredRecord};
pub use hash::{partition_key_hash, HashKeyRange};
pub use position::Position;
pub use sequence::SequenceNumber;
pub use shard::{AppendOutcome, ReadOutcome, RecoveryReport, ShardLog, ShardOptions};
pub use store::{LogConfig, LogStore, StreamSpec};
pub use stream::{
    is_stream_name, parse_shard_id, shard_id, validate_stream_name, RecordPosition, ShardMeta,
    Stream, StreamMeta, StreamMode,
};
pub use writer::{PutError, PutPosition, StreamWriter};

/// Milliseconds since the Unix epoch, the log's clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
