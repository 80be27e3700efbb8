//! The model lifecycle's plain parts, shared by serving and backtest: the
//! monitors, the retrain policy, the promotion gate, trial and rollback-watch
//! verdicts, and the lifecycle that decides with them (`machine`), which
//! serving drives live and `replay` drives over recorded data.

pub mod decision;
pub mod gate;
pub mod machine;
pub mod monitors;
pub mod policy;
pub mod replay;
pub mod spec;

pub use decision::{Decision, LifecycleEvent};
pub use gate::{accuracy, Gate, Holdout, TrialTally, WatchTally};
pub use machine::{Lifecycle, Outcome, Trained};
pub use monitors::{check_data, score, DataMonitor, Finding, LiveAccuracy, Reference};
pub use policy::{PolicyConfig, RetrainPolicy, Want};
pub use spec::{canary_answers, DataSpec, LifecycleSpec, Promotion};
