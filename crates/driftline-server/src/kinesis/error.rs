//! Errors in the Kinesis API's own form: an HTTP status, `__type` and `message`.

use driftline_log::LogError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(code: &'static str, message: impl Into<String>) -> ApiError {
        let status = match code {
            "InternalFailure" | "InternalFailureException" => 500,
            "MissingAuthenticationTokenException" => 403,
            _ => 400,
        };
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn validation(message: impl Into<String>) -> ApiError {
        ApiError::new("ValidationException", message)
    }

    pub fn invalid_argument(message: impl Into<String>) -> ApiError {
        ApiError::new("InvalidArgumentException", message)
    }

    pub fn serialization(message: impl Into<String>) -> ApiError {
        ApiError::new("SerializationException", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new("ResourceNotFoundException", message)
    }

    pub fn in_use(message: impl Into<String>) -> ApiError {
        ApiError::new("ResourceInUseException", message)
    }

    pub fn limit(message: impl Into<String>) -> ApiError {
        ApiError::new("LimitExceededException", message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new("InternalFailure", message)
    }

    /// Credentials refused, in the codes AWS uses for them.
    pub fn auth(failure: &crate::auth::Failure) -> ApiError {
        use crate::auth::Failure;
        let code = match failure {
            Failure::Missing => "MissingAuthenticationTokenException",
            Failure::Incomplete(_) => "IncompleteSignatureException",
            Failure::UnknownKey(_) => "UnrecognizedClientException",
            Failure::Mismatch(_) | Failure::Expired(_) => "InvalidSignatureException",
        };
        let message = match failure {
            Failure::UnknownKey(_) => {
                "The security token included in the request is invalid.".to_string()
            }
            other => other.to_string(),
        };
        ApiError::new(code, message)
    }

    /// A key without the scope an operation needs, as IAM says it.
    pub fn denied(operation: &str, denied: &crate::auth::Denied, arn: &str) -> ApiError {
        ApiError::new(
            "AccessDeniedException",
            format!(
                "User: {} is not authorized to perform: kinesis:{operation} on resource: {arn} (the key lacks scope {})",
                denied.key_id, denied.scope
            ),
        )
    }

    /// The AWS code that a per-record failure in PutRecords carries.
    pub fn record_error_code(error: &LogError) -> &'static str {
        match error {
            LogError::LimitExceeded(_) => "ProvisionedThroughputExceededException",
            _ => "InternalFailure",
        }
    }
}

impl From<LogError> for ApiError {
    fn from(error: LogError) -> ApiError {
        let message = error.to_string();
        match error {
            LogError::StreamNotFound(name) => ApiError::not_found(format!(
                "Stream {name} under account 000000000000 not found."
            )),
            LogError::StreamExists(name) => ApiError::in_use(format!(
                "Stream {name} under account 000000000000 already exists."
            )),
            LogError::ShardNotFound { .. } => ApiError::not_found(message),
            LogError::ShardClosed { .. } => ApiError::in_use(message),
            LogError::NoShardForHashKey { .. } | LogError::InvalidArgument(_) => {
                ApiError::invalid_argument(message)
            }
            LogError::LimitExceeded(_) => ApiError::limit(message),
            LogError::DiskFull { .. } => {
                ApiError::internal(format!("the stream cannot accept writes: {message}"))
            }
            LogError::Locked { .. }
            | LogError::Corrupt { .. }
            | LogError::CorruptMetadata { .. }
            | LogError::Io { .. } => ApiError::internal(message),
        }
    }
}
