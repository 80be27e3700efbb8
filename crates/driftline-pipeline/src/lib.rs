//! The pipeline runtime: a validated config, processors run with Lambda's
//! event-source-mapping semantics on the stream's shards, and Firehose-like
//! delivery of their output to the Parquet lake.

pub mod config;
pub mod dead_letter;
pub mod emf;
pub mod function;
pub mod labels;
pub mod landing;
pub mod leases;
pub mod lifecycle;
pub mod mapping;
pub mod processor;
pub mod read;
pub mod trainer;
pub mod training;
pub mod transform;

pub use config::{ConfigError, PipelineConfig};
pub use mapping::{run_mapping, Delivery, Mapping, MappingError, MappingStats};
pub use processor::{Event, Outcome, Processor, SchemaProcessor};
