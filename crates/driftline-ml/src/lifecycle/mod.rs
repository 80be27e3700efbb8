//! The model lifecycle's plain parts, shared by serving and backtest: the
//! retrain policy, the promotion gate, trial and rollback-watch verdicts.

pub mod gate;
pub mod policy;

pub use gate::{Gate, Holdout, TrialTally, WatchTally};
pub use policy::{PolicyConfig, RetrainPolicy, Want};
