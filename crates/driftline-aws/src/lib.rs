//! driftline's AWS adapters, at the edge of the architecture: they depend on
//! the pipeline, the lake and the log, never the other way.
//!
//! - `sigv4`: the one SigV4 signer, of the CLI's calls to driftline and of the
//!   signed JSON calls to AWS (always built).
//! - With the `sdk` feature (`driftline`'s `aws` feature):
//!   `config` (the process's AWS configuration), `kinesis_source` and
//!   `dynamodb_source` (shards and records of Kinesis Data Streams and
//!   DynamoDB Streams) read by `sharded_source` (the loop that delivers them
//!   to the lake under leases), `kinesis_writer` (a pipeline stream on
//!   Kinesis), `s3_notifications` (SQS "object created" notifications for
//!   landing sources), `json` (signed JSON 1.1 calls), `sagemaker_trainer`
//!   (fits on SageMaker training jobs) and `sagemaker_mirror` (the registry
//!   as model packages and an endpoint).

pub mod sigv4;

#[cfg(feature = "sdk")]
pub mod config;
#[cfg(feature = "sdk")]
pub mod dynamodb_source;
#[cfg(feature = "sdk")]
mod error;
#[cfg(feature = "sdk")]
pub mod json;
#[cfg(feature = "sdk")]
pub mod kinesis_source;
#[cfg(feature = "sdk")]
pub mod kinesis_writer;
#[cfg(feature = "sdk")]
pub mod s3_notifications;
#[cfg(feature = "sdk")]
pub mod sagemaker_mirror;
#[cfg(feature = "sdk")]
pub mod sagemaker_trainer;
#[cfg(feature = "sdk")]
pub mod sharded_source;
#[cfg(any(test, feature = "testing"))]
#[cfg(feature = "sdk")]
pub mod testing;

#[cfg(feature = "sdk")]
pub use error::{Context, Error, Result};
