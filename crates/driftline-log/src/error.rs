use std::io;
use std::path::PathBuf;

/// Why a frame read back from disk is not valid.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CorruptFrame {
    #[error("frame is truncated")]
    Truncated,
    #[error("frame checksum does not match")]
    Checksum,
    #[error("frame has unknown format version {0}")]
    Version(u8),
    #[error("partition key is not utf-8")]
    Key,
}

/// Errors of the log. Each names the stream, shard or file concerned.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("stream {0} not found")]
    StreamNotFound(String),
    #[error("stream {0} already exists")]
    StreamExists(String),
    #[error("shard {shard} not found in stream {stream}")]
    ShardNotFound { stream: String, shard: String },
    #[error("shard {shard} of stream {stream} is closed")]
    ShardClosed { stream: String, shard: String },
    #[error("no open shard of stream {stream} owns hash key {hash_key}")]
    NoShardForHashKey { stream: String, hash_key: u128 },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    #[error("data directory {path} is in use by another process")]
    Locked { path: PathBuf },
    #[error("corrupt segment {path} at byte {position}: {reason}")]
    Corrupt {
        path: PathBuf,
        position: u64,
        reason: CorruptFrame,
    },
    #[error("corrupt metadata file {path}: {reason}")]
    CorruptMetadata { path: PathBuf, reason: String },
    #[error("disk is full (no room to write {path})")]
    DiskFull { path: PathBuf },
    #[error("i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl LogError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> LogError {
        let path = path.into();
        // ENOSPC, EDQUOT and EFBIG (a file-size limit) all mean: no room to write.
        let no_room = matches!(source.raw_os_error(), Some(28) | Some(122) | Some(27))
            || matches!(
                source.kind(),
                io::ErrorKind::StorageFull
                    | io::ErrorKind::QuotaExceeded
                    | io::ErrorKind::FileTooLarge
            );
        if no_room {
            return LogError::DiskFull { path };
        }
        LogError::Io { path, source }
    }
}

pub type Result<T, E = LogError> = std::result::Result<T, E>;
