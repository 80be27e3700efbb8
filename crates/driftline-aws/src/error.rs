//! The adapters' errors: what an AWS call, the lake or the pipeline said,
//! or what was wrong with an answer, with the context it happened in.

/// An adapter's error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An AWS call failed; the service's own words.
    #[error("{0}")]
    Aws(String),
    #[error(transparent)]
    Json(#[from] crate::json::AwsError),
    #[error(transparent)]
    Lake(#[from] driftline_lake::LakeError),
    #[error(transparent)]
    Mapping(#[from] driftline_pipeline::MappingError),
    #[error(transparent)]
    Lease(#[from] driftline_pipeline::leases::LeaseError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Http(#[from] reqwest::Error),
    #[error("a model artifact: {0}")]
    Artifact(#[from] driftline_ml::learn::artifact::ArtifactError),
    #[error("a task stopped: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Serde(#[from] serde_json::Error),
    /// An answer or a configuration that cannot be used, and why.
    #[error("{0}")]
    Invalid(String),
    /// What failed, and in doing what.
    #[error("{context}: {source}")]
    In { context: String, source: Box<Error> },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(message: impl Into<String>) -> Error {
        Error::Invalid(message.into())
    }

    /// An AWS SDK's error, with its context chain.
    pub fn aws(error: impl std::error::Error) -> Error {
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        Error::Aws(message)
    }
}

/// Says in doing what an error happened, or what a missing value was.
pub trait Context<T> {
    fn context(self, context: &str) -> Result<T>;
    fn with_context(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context(self, context: &str) -> Result<T> {
        self.with_context(|| context.to_string())
    }

    fn with_context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::In {
            context: context(),
            source: Box::new(e.into()),
        })
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, context: &str) -> Result<T> {
        self.ok_or_else(|| Error::Invalid(context.to_string()))
    }

    fn with_context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.ok_or_else(|| Error::Invalid(context()))
    }
}
