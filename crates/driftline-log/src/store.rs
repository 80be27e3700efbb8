//! The log store: every stream under one data directory.
//!
//! ```text
//! DATA_DIR/LOCK                                  held while a process has the store open
//! DATA_DIR/streams/s-NAME/stream.json            stream metadata (shards, retention, tags)
//! DATA_DIR/streams/s-NAME/shards/SHARD_ID/*.log  segments, named by first offset
//! DATA_DIR/streams/s-NAME/shards/SHARD_ID/*.idx  sparse index of a sealed segment
//! DATA_DIR/streams/s-NAME/consumers/NAME.json    a consumer's checkpoints
//! DATA_DIR/streams/s-NAME/journal/*.wal          frames not yet synced in their segments
//! ```

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::durability::Durability;
use crate::error::{LogError, Result};
use crate::hash::HashKeyRange;
use crate::shard::ShardOptions;
use crate::stream::{
    validate_stream_name, ShardMeta, Stream, StreamLimits, StreamMeta, StreamMode,
    MIN_RETENTION_HOURS,
};

/// How the store behaves; every field has a sensible embedded default.
#[derive(Clone, Debug)]
pub struct LogConfig {
    pub durability: Durability,
    /// Size at which a shard rolls to a new segment.
    pub segment_bytes: u64,
    /// Open shards a stream may have.
    pub max_open_shards_per_stream: u32,
    /// Streams the store may hold.
    pub max_streams: usize,
    /// Retention by size, per shard, on top of retention by time.
    pub max_shard_bytes: Option<u64>,
    /// Size at which a stream's journal starts a new file; the segments are
    /// then synced and the older file deleted (fsync mode).
    pub journal_bytes: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            durability: Durability::Fsync,
            segment_bytes: 64 * 1024 * 1024,
            max_open_shards_per_stream: 500,
            max_streams: 1000,
            max_shard_bytes: None,
            journal_bytes: 64 * 1024 * 1024,
        }
    }
}

/// What to create.
#[derive(Clone, Debug, Default)]
pub struct StreamSpec {
    pub name: String,
    pub shard_count: u32,
    pub mode: StreamMode,
    pub tags: BTreeMap<String, String>,
}

pub struct LogStore {
    root: PathBuf,
    config: LogConfig,
    streams: RwLock<BTreeMap<String, Arc<Stream>>>,
    _lock: File,
}

impl LogStore {
    /// Opens the store in `root`, recovering every stream. Fails if another
    /// process has it open.
    pub fn open(root: &Path, config: LogConfig) -> Result<LogStore> {
        let streams_dir = root.join("streams");
        crate::fsutil::create_dir_all(&streams_dir)?;
        let lock_path = root.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| LogError::io(&lock_path, e))?;
        if lock.try_lock().is_err() {
            return Err(LogError::Locked {
                path: root.to_path_buf(),
            });
        }
        let mut streams = BTreeMap::new();
        for entry in std::fs::read_dir(&streams_dir).map_err(|e| LogError::io(&streams_dir, e))? {
            let entry = entry.map_err(|e| LogError::io(&streams_dir, e))?;
            let file_name = entry.file_name();
            let file_name = file_name.to_string_lossy();
            if !file_name.starts_with("s-") {
                // Leftovers of an interrupted delete or create.
                if file_name.starts_with("deleted-") || file_name.starts_with("new-") {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
                continue;
            }
            let stream = Stream::open(
                &entry.path(),
                Self::shard_options(&config),
                Self::limits(&config),
            )?;
            streams.insert(stream.name().to_string(), Arc::new(stream));
        }
        Ok(LogStore {
            root: root.to_path_buf(),
            config,
            streams: RwLock::new(streams),
            _lock: lock,
        })
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn create_stream(&self, spec: StreamSpec, now_ms: i64) -> Result<Arc<Stream>> {
        validate_stream_name(&spec.name)?;
        if spec.shard_count == 0 {
            return Err(LogError::InvalidArgument(format!(
                "ShardCount must be at least 1 for stream {}",
                spec.name
            )));
        }
        if spec.shard_count > self.config.max_open_shards_per_stream {
            return Err(LogError::LimitExceeded(format!(
                "ShardCount {} exceeds the limit of {} open shards per stream",
                spec.shard_count, self.config.max_open_shards_per_stream
            )));
        }
        let mut streams = self
            .streams
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if streams.contains_key(&spec.name) {
            return Err(LogError::StreamExists(spec.name));
        }
        if streams.len() >= self.config.max_streams {
            return Err(LogError::LimitExceeded(format!(
                "the store already holds {} streams, its limit",
                streams.len()
            )));
        }
        let meta = StreamMeta {
            name: spec.name.clone(),
            created_ms: now_ms,
            retention_hours: MIN_RETENTION_HOURS,
            mode: spec.mode,
            shards: HashKeyRange::uniform(spec.shard_count)
                .into_iter()
                .enumerate()
                .map(|(i, range)| ShardMeta {
                    index: i as u32,
                    hash_range: range,
                    parents: Vec::new(),
                    created_ms: now_ms,
                    closed_ms: None,
                })
                .collect(),
            tags: spec.tags,
        };
        // Built under a temporary name and renamed, so a crash never leaves half a stream.
        let staging = self.root.join("streams").join(format!("new-{}", spec.name));
        let _ = std::fs::remove_dir_all(&staging);
        drop(Stream::create(
            &staging,
            meta,
            Self::shard_options(&self.config),
            Self::limits(&self.config),
        )?);
        let dir = self.stream_dir(&spec.name);
        std::fs::rename(&staging, &dir).map_err(|e| LogError::io(&dir, e))?;
        crate::fsutil::sync_dir(&self.root.join("streams"))?;
        let stream = Arc::new(Stream::open(
            &dir,
            Self::shard_options(&self.config),
            Self::limits(&self.config),
        )?);
        streams.insert(spec.name, stream.clone());
        Ok(stream)
    }

    pub fn stream(&self, name: &str) -> Result<Arc<Stream>> {
        self.streams
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .cloned()
            .ok_or_else(|| LogError::StreamNotFound(name.to_string()))
    }

    pub fn stream_names(&self) -> Vec<String> {
        self.streams
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    /// Deletes a stream and all its data.
    pub fn delete_stream(&self, name: &str) -> Result<()> {
        let stream = self
            .streams
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(name)
            .ok_or_else(|| LogError::StreamNotFound(name.to_string()))?;
        let doomed =
            self.root
                .join("streams")
                .join(format!("deleted-{}-{}", name, std::process::id()));
        std::fs::rename(stream.dir(), &doomed).map_err(|e| LogError::io(stream.dir(), e))?;
        crate::fsutil::sync_dir(&self.root.join("streams"))?;
        std::fs::remove_dir_all(&doomed).map_err(|e| LogError::io(&doomed, e))
    }

    /// Applies retention to every stream.
    pub fn enforce_retention(&self, now_ms: i64) -> Result<usize> {
        let streams: Vec<Arc<Stream>> = self
            .streams
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        let mut removed = 0;
        for stream in streams {
            removed += stream.enforce_retention(now_ms)?;
        }
        Ok(removed)
    }

    fn stream_dir(&self, name: &str) -> PathBuf {
        self.root.join("streams").join(format!("s-{name}"))
    }

    fn shard_options(config: &LogConfig) -> ShardOptions {
        ShardOptions {
            durability: config.durability,
            segment_bytes: config.segment_bytes,
        }
    }

    fn limits(config: &LogConfig) -> StreamLimits {
        StreamLimits {
            max_open_shards: config.max_open_shards_per_stream,
            max_shard_bytes: config.max_shard_bytes,
            journal_bytes: config.journal_bytes,
        }
    }
}
