//! The data lake: typed rows written as Parquet objects under Hive-style
//! partitions (`TABLE/dt=YYYY-MM-DD/hour=HH/`) through the `object_store`
//! crate, so a local directory and an S3 bucket are the same code.
//!
//! Exactly once: an object's name is derived from the stream positions it
//! holds (`SHARD-FIRST-LAST.parquet`, sequence numbers zero-padded so names
//! sort as numbers). Delivery moves a consumer's checkpoint only after its
//! objects are uploaded; a retried delivery of the same records writes the same
//! names and replaces them, and [`Lake::remove_uncommitted`] deletes what an
//! interrupted delivery left beyond the checkpoint before it is redone.

mod error;
mod lake;
mod object_name;
mod parquet_io;
pub mod registry;
mod table;

/// Positions are the log's (one definition, ordered as numbers of any width).
pub use driftline_log::Position;
pub use error::{LakeError, Result};
pub use lake::{Lake, StoredObject, WrittenObject};
pub use object_name::{partition_path, ObjectName};
pub use parquet_io::{encode_parquet, Compression};
pub use registry::{Decision, Registry, Status, TrainingData, VersionRecord, VersionState};
pub use table::{Field, FieldType, Row, TableSchema, Value};
