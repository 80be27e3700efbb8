#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("lake location {location:?}: {reason}")]
    Location { location: String, reason: String },
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("parquet encoding: {0}")]
    Parquet(String),
    #[error("invalid schema: {0}")]
    Schema(String),
}

pub type Result<T, E = LakeError> = std::result::Result<T, E>;
