//! End-to-end tests of the `driftline` binary through its public interfaces,
//! with clients nobody here wrote. One test binary (see ripgrep's layout).

mod auth;
mod aws_template;
mod backtest;
mod cbor;
mod cli;
mod crash;
mod demo;
mod disk_full;
mod docs;
#[cfg(feature = "aws")]
mod lambda;
mod layout;
mod models;
mod pipeline;
mod python;
mod replay;
#[cfg(feature = "aws")]
mod s3;
mod sagemaker;
mod sdk;
mod util;
