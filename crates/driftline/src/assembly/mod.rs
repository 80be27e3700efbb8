//! A pipeline put together from its file, for `driftline run` and the demo:
//! its streams wherever they live (`streams`), its stages (`stages`) and its
//! models (`models`).

pub mod models;
pub mod stages;
pub mod streams;

pub use stages::start_stages;
