//! The model lifecycle's plain parts, shared by serving and backtest: the
//! retrain policy.

pub mod policy;

pub use policy::{PolicyConfig, RetrainPolicy, Want};
