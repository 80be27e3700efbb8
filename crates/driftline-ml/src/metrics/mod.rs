//! Streaming metrics, each with `update`, `revert` (which makes rolling windows
//! cheap) and `get`, as River's metrics.
