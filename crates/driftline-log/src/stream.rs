//! A stream: its shards, how keys route to them, resharding, retention and
//! the durable checkpoints of its named consumers.
//!
//! `stream.json` is the stream's metadata, replaced atomically. Resharding
//! writes it *before* any record can reach a child shard, so every
//! acknowledged record is in a shard the metadata knows after a crash. Routing
//! then switches to the children and the parents are closed; an append that
//! raced the switch and met a closed parent is routed again.
//!
//! (Some 850 lines: routing, resharding and retention all change the one
//! metadata under one lock, and read best in one place.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};

use crate::durability::Durability;
use crate::error::{LogError, Result};
use crate::frame::{NewRecord, StoredRecord};
use crate::hash::{partition_key_hash, HashKeyRange};
use crate::journal::Journal;
use crate::sequence::SequenceNumber;
use crate::shard::{AppendOutcome, ReadOutcome, ShardLog, ShardOptions};

pub const MIN_RETENTION_HOURS: u32 = 24;
pub const MAX_RETENTION_HOURS: u32 = 8760;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StreamMode {
    #[default]
    Provisioned,
    OnDemand,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMeta {
    pub index: u32,
    pub hash_range: HashKeyRange,
    /// Parent shard indices: one after a split, two after a merge, the
    /// overlapping old shards after uniform scaling.
    pub parents: Vec<u32>,
    pub created_ms: i64,
    pub closed_ms: Option<i64>,
}

impl ShardMeta {
    pub fn id(&self) -> String {
        shard_id(self.index)
    }

    pub fn is_open(&self) -> bool {
        self.closed_ms.is_none()
    }
}

/// `shardId-000000000007`, as Kinesis names shards.
pub fn shard_id(index: u32) -> String {
    format!("shardId-{index:012}")
}

/// Reads a shard id as Kinesis clients send it: `shardId-000000000007`, or
/// the bare number, which the AWS API accepts too.
pub fn parse_shard_id(text: &str) -> Option<u32> {
    let digits = text.strip_prefix("shardId-").unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StreamMeta {
    pub name: String,
    pub created_ms: i64,
    pub retention_hours: u32,
    pub mode: StreamMode,
    pub shards: Vec<ShardMeta>,
    pub tags: BTreeMap<String, String>,
}

impl StreamMeta {
    pub fn open_shards(&self) -> impl Iterator<Item = &ShardMeta> {
        self.shards.iter().filter(|s| s.is_open())
    }

    pub fn shard(&self, index: u32) -> Option<&ShardMeta> {
        self.shards.iter().find(|s| s.index == index)
    }

    /// Shards whose parent (or one of whose parents) is `index`.
    pub fn children_of(&self, index: u32) -> Vec<&ShardMeta> {
        self.shards
            .iter()
            .filter(|s| s.parents.contains(&index))
            .collect()
    }
}

/// Where an appended record landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordPosition {
    pub shard_index: u32,
    pub sequence_number: SequenceNumber,
    pub timestamp_ms: i64,
}

pub struct Stream {
    name: String,
    dir: PathBuf,
    options: ShardOptions,
    max_open_shards: u32,
    max_shard_bytes: Option<u64>,
    meta: RwLock<StreamMeta>,
    shards: RwLock<BTreeMap<u32, Arc<ShardLog>>>,
    /// Open shards sorted by hash-key range, swapped whole on resharding.
    routes: RwLock<Arc<Vec<(HashKeyRange, u32)>>>,
    /// Serialises metadata changes (resharding, retention, tags).
    admin: Mutex<()>,
    consumers: Mutex<()>,
    /// In fsync mode, the write-ahead file every put is acknowledged by.
    journal: Option<Arc<Journal>>,
    /// The running checkpoint, if any (one at a time).
    checkpointer: Mutex<Option<JoinHandle<Result<()>>>>,
}

impl Drop for Stream {
    fn drop(&mut self) {
        if let Some(running) = self.lock_checkpointer().take() {
            let _ = running.join();
        }
    }
}

pub(crate) struct StreamLimits {
    pub max_open_shards: u32,
    pub max_shard_bytes: Option<u64>,
    /// Size at which the journal starts a new file (and a checkpoint follows).
    pub journal_bytes: u64,
}

impl Stream {
    pub(crate) fn create(
        dir: &Path,
        meta: StreamMeta,
        options: ShardOptions,
        limits: StreamLimits,
    ) -> Result<Stream> {
        crate::fsutil::create_dir_all(&dir.join("shards"))?;
        crate::fsutil::create_dir_all(&dir.join("consumers"))?;
        let stream = Self::assemble(dir, meta, options, limits)?;
        stream.save_meta(&stream.meta())?;
        Ok(stream)
    }

    pub(crate) fn open(dir: &Path, options: ShardOptions, limits: StreamLimits) -> Result<Stream> {
        let path = dir.join("stream.json");
        let raw = std::fs::read(&path).map_err(|e| LogError::io(&path, e))?;
        let meta: StreamMeta =
            serde_json::from_slice(&raw).map_err(|e| LogError::CorruptMetadata {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        Self::assemble(dir, meta, options, limits)
    }

    fn assemble(
        dir: &Path,
        meta: StreamMeta,
        options: ShardOptions,
        limits: StreamLimits,
    ) -> Result<Stream> {
        let mut shards = BTreeMap::new();
        for shard in &meta.shards {
            let (log, _report) =
                ShardLog::open(&dir.join("shards").join(shard.id()), options.clone())?;
            if !shard.is_open() {
                log.close();
            }
            shards.insert(shard.index, Arc::new(log));
        }
        // Replayed whatever the mode: a store written in fsync mode and opened
        // in OS mode still holds what its journal acknowledged.
        let journal_dir = dir.join("journal");
        let replayed = Journal::replay(&journal_dir, |index, frame| {
            let shard = shards.get(&index).ok_or_else(|| {
                LogError::InvalidArgument(format!(
                    "the journal of stream {} holds records of {}, which its metadata does not list",
                    meta.name,
                    shard_id(index)
                ))
            })?;
            shard.restore_frame(frame).map(|_| ())
        })?;
        if !replayed.files.is_empty() {
            // Every segment is synced (what a crash of the process left there
            // may be only in the page cache) before the journal files go.
            for shard in shards.values() {
                shard.sync_active()?;
            }
            crate::journal::remove(&replayed.files)?;
        }
        let journal = if options.durability == Durability::Fsync {
            Some(Arc::new(Journal::create(
                &journal_dir,
                replayed.next_generation,
                limits.journal_bytes,
            )?))
        } else {
            None
        };
        let routes = routes_of(&meta);
        Ok(Stream {
            name: meta.name.clone(),
            dir: dir.to_path_buf(),
            options,
            max_open_shards: limits.max_open_shards,
            max_shard_bytes: limits.max_shard_bytes,
            meta: RwLock::new(meta),
            shards: RwLock::new(shards),
            routes: RwLock::new(Arc::new(routes)),
            admin: Mutex::new(()),
            consumers: Mutex::new(()),
            journal,
            checkpointer: Mutex::new(None),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A snapshot of the metadata.
    pub fn meta(&self) -> StreamMeta {
        self.meta
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn shard(&self, index: u32) -> Result<Arc<ShardLog>> {
        self.shards
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&index)
            .cloned()
            .ok_or_else(|| LogError::ShardNotFound {
                stream: self.name.clone(),
                shard: shard_id(index),
            })
    }

    /// The open shard that owns a record with this key.
    pub fn route(&self, partition_key: &str, explicit_hash_key: Option<u128>) -> Result<u32> {
        self.route_in(&self.routes(), partition_key, explicit_hash_key)
    }

    fn routes(&self) -> Arc<Vec<(HashKeyRange, u32)>> {
        self.routes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn route_in(
        &self,
        routes: &[(HashKeyRange, u32)],
        partition_key: &str,
        explicit_hash_key: Option<u128>,
    ) -> Result<u32> {
        if let [(HashKeyRange::FULL, index)] = routes {
            // One shard owns every hash key: the MD5 would not change the answer.
            return Ok(*index);
        }
        let hash_key = explicit_hash_key.unwrap_or_else(|| partition_key_hash(partition_key));
        let slot = routes.partition_point(|(range, _)| range.end < hash_key);
        match routes.get(slot) {
            Some((range, index)) if range.contains(hash_key) => Ok(*index),
            _ => Err(LogError::NoShardForHashKey {
                stream: self.name.clone(),
                hash_key,
            }),
        }
    }

    /// Appends records, each to the shard its key routes to, and returns once
    /// all are acknowledged. Records of one shard are written as one frame, in
    /// the order given; each record's result is reported on its own.
    pub fn put(&self, records: Vec<NewRecord>, now_ms: i64) -> Vec<Result<RecordPosition>> {
        let mut results: Vec<Option<Result<RecordPosition>>> =
            (0..records.len()).map(|_| None).collect();
        let mut pending: Vec<(usize, NewRecord)> = records.into_iter().enumerate().collect();
        // A put that meets a shard closed by a concurrent reshard is routed again.
        for _attempt in 0..8 {
            if pending.is_empty() {
                break;
            }
            let mut by_shard: BTreeMap<u32, (Vec<usize>, Vec<NewRecord>)> = BTreeMap::new();
            let routes = self.routes();
            for (i, record) in pending.drain(..) {
                match self.route_in(&routes, &record.partition_key, record.explicit_hash_key) {
                    Ok(shard) => {
                        let batch = by_shard.entry(shard).or_default();
                        batch.0.push(i);
                        batch.1.push(record);
                    }
                    Err(e) => results[i] = Some(Err(e)),
                }
            }
            let mut written: Vec<(Arc<ShardLog>, u32, AppendOutcome, Vec<usize>)> = Vec::new();
            let mut journal_end = 0;
            let mut rotated = false;
            for (shard_index, (indices, batch)) in by_shard {
                let outcome = self.shard(shard_index).and_then(|shard| {
                    let outcome = match &self.journal {
                        Some(journal) => shard.write_logged(&batch, now_ms, |frame| {
                            let appended = journal.append(shard_index, frame)?;
                            journal_end = appended.end;
                            rotated |= appended.rotated;
                            Ok(())
                        })?,
                        None => shard.write(&batch, now_ms)?,
                    };
                    Ok((shard, outcome))
                });
                match outcome {
                    Ok((shard, outcome)) => written.push((shard, shard_index, outcome, indices)),
                    Err(LogError::ShardClosed { .. }) => {
                        pending.extend(indices.into_iter().zip(batch))
                    }
                    Err(e) => {
                        let message = e.to_string();
                        for i in indices {
                            results[i] = Some(Err(clone_error(&e, &message)));
                        }
                    }
                }
            }
            let acknowledgements: Vec<Result<()>> = match &self.journal {
                Some(journal) => {
                    let synced = journal.sync_to(journal_end);
                    if rotated {
                        self.checkpoint_in_background();
                    }
                    written
                        .iter()
                        .map(|(shard, _, outcome, _)| {
                            synced
                                .as_ref()
                                .map_err(|e| clone_error(e, &e.to_string()))?;
                            shard.mark_acknowledged(outcome.end());
                            Ok(())
                        })
                        .collect()
                }
                // OS mode: a write is acknowledged once it is written.
                None => written.iter().map(|_| Ok(())).collect(),
            };
            for ((_, shard_index, outcome, indices), acknowledged) in
                written.into_iter().zip(acknowledgements)
            {
                for (n, i) in indices.into_iter().enumerate() {
                    results[i] = Some(match &acknowledged {
                        Ok(()) => Ok(RecordPosition {
                            shard_index,
                            sequence_number: SequenceNumber::new(
                                shard_index,
                                outcome.first_offset + n as u64,
                            ),
                            timestamp_ms: outcome.timestamp_ms,
                        }),
                        Err(e) => Err(clone_error(e, &e.to_string())),
                    });
                }
            }
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(LogError::LimitExceeded(
                        "the stream was resharded repeatedly during the put; retry".into(),
                    ))
                })
            })
            .collect()
    }

    /// Makes every shard's segments durable, then deletes the journal files
    /// sealed before, whose frames they now hold. It runs on its own thread:
    /// syncing a journal file's worth of segment writes took long enough to
    /// show in the put latency. If it fails, the files stay and the next open
    /// replays them (their frames are skipped where the segments hold them).
    fn checkpoint_in_background(&self) {
        let Some(journal) = &self.journal else {
            return;
        };
        let retired = journal.take_retired();
        let shards = self.open_logs();
        let journal = journal.clone();
        let checkpoint = move || -> Result<()> {
            let synced = shards.iter().try_for_each(|shard| shard.flush());
            let removed = synced.and_then(|()| crate::journal::remove(&retired));
            if removed.is_err() {
                // Retired by the next checkpoint, or replayed at the next open.
                journal.give_back(retired);
            }
            removed
        };
        let mut slot = self.lock_checkpointer();
        if let Some(previous) = slot.take() {
            let _ = previous.join();
        }
        *slot = std::thread::Builder::new()
            .name(format!("checkpoint-{}", self.name))
            .spawn(checkpoint)
            .ok();
    }

    fn lock_checkpointer(&self) -> std::sync::MutexGuard<'_, Option<JoinHandle<Result<()>>>> {
        self.checkpointer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reads from a shard; see [`ShardLog::read`].
    pub fn read(
        &self,
        shard_index: u32,
        from_offset: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<ReadOutcome> {
        self.shard(shard_index)?
            .read(from_offset, max_records, max_bytes)
    }

    /// Records of all shards from the trim horizon, shard by shard (for tools and tests).
    pub fn read_all(&self) -> Result<Vec<(u32, StoredRecord)>> {
        let mut all = Vec::new();
        for shard in self.meta().shards {
            let log = self.shard(shard.index)?;
            let mut offset = 0;
            loop {
                let batch = log.read(offset, 10_000, usize::MAX)?;
                if batch.records.is_empty() {
                    break;
                }
                offset = batch.next_offset;
                all.extend(batch.records.into_iter().map(|r| (shard.index, r)));
            }
        }
        Ok(all)
    }

    /// Splits an open shard at `new_starting_hash_key` into two children.
    pub fn split_shard(
        &self,
        shard_index: u32,
        new_starting_hash_key: u128,
        now_ms: i64,
    ) -> Result<(u32, u32)> {
        let _admin = self.lock_admin();
        let mut meta = self.meta();
        let parent = self.open_shard_meta(&meta, shard_index)?;
        let range = parent.hash_range;
        if new_starting_hash_key <= range.start || new_starting_hash_key > range.end {
            return Err(LogError::InvalidArgument(format!(
                "NewStartingHashKey {new_starting_hash_key} must be greater than {} and at most {}, the hash-key range of {}",
                range.start,
                range.end,
                shard_id(shard_index)
            )));
        }
        self.check_shard_limit(&meta, 1)?;
        let first = next_index(&meta);
        let children = [
            HashKeyRange {
                start: range.start,
                end: new_starting_hash_key - 1,
            },
            HashKeyRange {
                start: new_starting_hash_key,
                end: range.end,
            },
        ];
        for (n, child_range) in children.iter().enumerate() {
            meta.shards.push(ShardMeta {
                index: first + n as u32,
                hash_range: *child_range,
                parents: vec![shard_index],
                created_ms: now_ms,
                closed_ms: None,
            });
        }
        self.commit_reshard(meta, &[shard_index], now_ms)?;
        Ok((first, first + 1))
    }

    /// Merges two adjacent open shards into one child.
    pub fn merge_shards(&self, shard_index: u32, adjacent_index: u32, now_ms: i64) -> Result<u32> {
        let _admin = self.lock_admin();
        let mut meta = self.meta();
        let a = self.open_shard_meta(&meta, shard_index)?.hash_range;
        let b = self.open_shard_meta(&meta, adjacent_index)?.hash_range;
        let adjacent =
            a.end.checked_add(1) == Some(b.start) || b.end.checked_add(1) == Some(a.start);
        if !adjacent {
            return Err(LogError::InvalidArgument(format!(
                "shards {} and {} are not adjacent: their hash-key ranges must touch",
                shard_id(shard_index),
                shard_id(adjacent_index)
            )));
        }
        let child = next_index(&meta);
        meta.shards.push(ShardMeta {
            index: child,
            hash_range: HashKeyRange {
                start: a.start.min(b.start),
                end: a.end.max(b.end),
            },
            parents: vec![shard_index, adjacent_index],
            created_ms: now_ms,
            closed_ms: None,
        });
        self.commit_reshard(meta, &[shard_index, adjacent_index], now_ms)?;
        Ok(child)
    }

    /// Replaces the open shards by `target` shards of equal width (UNIFORM_SCALING).
    /// Each new shard's parents are the old shards its range overlaps.
    pub fn update_shard_count(&self, target: u32, now_ms: i64) -> Result<u32> {
        let _admin = self.lock_admin();
        let mut meta = self.meta();
        let open: Vec<ShardMeta> = meta.open_shards().cloned().collect();
        let current = open.len() as u32;
        if target == 0 || target > current.saturating_mul(2) || target.saturating_mul(2) < current {
            return Err(LogError::InvalidArgument(format!(
                "TargetShardCount {target} must be between half ({}) and double ({}) the current {current} open shards",
                current.div_ceil(2),
                current * 2
            )));
        }
        if target > self.max_open_shards {
            return Err(LogError::LimitExceeded(format!(
                "TargetShardCount {target} exceeds the limit of {} open shards per stream",
                self.max_open_shards
            )));
        }
        let first = next_index(&meta);
        for (n, range) in HashKeyRange::uniform(target).into_iter().enumerate() {
            let parents = open
                .iter()
                .filter(|s| s.hash_range.overlaps(&range))
                .map(|s| s.index)
                .collect();
            meta.shards.push(ShardMeta {
                index: first + n as u32,
                hash_range: range,
                parents,
                created_ms: now_ms,
                closed_ms: None,
            });
        }
        let closing: Vec<u32> = open.iter().map(|s| s.index).collect();
        self.commit_reshard(meta, &closing, now_ms)?;
        Ok(current)
    }

    fn commit_reshard(&self, mut meta: StreamMeta, closing: &[u32], now_ms: i64) -> Result<()> {
        let mut new_logs = Vec::new();
        for shard in meta.shards.iter().filter(|s| !self.has_shard(s.index)) {
            let (log, _) = ShardLog::open(
                &self.dir.join("shards").join(shard.id()),
                self.options.clone(),
            )?;
            new_logs.push((shard.index, Arc::new(log)));
        }
        for shard in meta
            .shards
            .iter_mut()
            .filter(|s| closing.contains(&s.index))
        {
            shard.closed_ms = Some(now_ms);
        }
        // Durable first: after this line a crash reopens the children.
        self.save_meta(&meta)?;
        self.shards
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(new_logs);
        *self
            .routes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(routes_of(&meta));
        *self
            .meta
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = meta;
        for index in closing {
            let log = self.shard(*index)?;
            log.close();
            log.flush()?;
        }
        Ok(())
    }

    pub fn set_retention_hours(&self, hours: u32) -> Result<()> {
        if !(MIN_RETENTION_HOURS..=MAX_RETENTION_HOURS).contains(&hours) {
            return Err(LogError::InvalidArgument(format!(
                "retention period {hours} hours is outside {MIN_RETENTION_HOURS}..={MAX_RETENTION_HOURS}"
            )));
        }
        self.update_meta(|meta| meta.retention_hours = hours)
    }

    pub fn add_tags(&self, tags: BTreeMap<String, String>) -> Result<()> {
        self.update_meta(|meta| meta.tags.extend(tags))
    }

    pub fn remove_tags(&self, keys: &[String]) -> Result<()> {
        self.update_meta(|meta| {
            for key in keys {
                meta.tags.remove(key);
            }
        })
    }

    fn update_meta(&self, change: impl FnOnce(&mut StreamMeta)) -> Result<()> {
        let _admin = self.lock_admin();
        let mut meta = self.meta();
        change(&mut meta);
        self.save_meta(&meta)?;
        *self
            .meta
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = meta;
        Ok(())
    }

    /// Deletes expired segments of every shard; returns how many were deleted.
    pub fn enforce_retention(&self, now_ms: i64) -> Result<usize> {
        let retention_ms = i64::from(self.meta().retention_hours) * 3_600_000;
        let shards = self.open_logs();
        let mut removed = 0;
        for shard in shards {
            removed += shard.enforce_retention(now_ms, retention_ms, self.max_shard_bytes)?;
        }
        Ok(removed)
    }

    /// Records a consumer's position in a shard: the sequence number of the
    /// last record it has processed. Durable when this returns.
    pub fn checkpoint(
        &self,
        consumer: &str,
        shard_index: u32,
        sequence_number: SequenceNumber,
    ) -> Result<()> {
        validate_consumer_name(consumer)?;
        let meta = self.meta();
        if meta.shard(shard_index).is_none() {
            return Err(LogError::ShardNotFound {
                stream: self.name.clone(),
                shard: shard_id(shard_index),
            });
        }
        if sequence_number.shard_index() != Some(shard_index) {
            return Err(LogError::InvalidArgument(format!(
                "sequence number {sequence_number} does not belong to {}",
                shard_id(shard_index)
            )));
        }
        let _guard = self
            .consumers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut positions = self.read_checkpoints(consumer)?;
        positions.insert(shard_id(shard_index), sequence_number.to_string());
        let content = serde_json::to_vec_pretty(&positions)
            .map_err(|e| LogError::InvalidArgument(e.to_string()))?;
        crate::fsutil::write_atomically(&self.consumer_path(consumer), &content)
    }

    /// A consumer's checkpoints, shard by shard (empty for a new consumer).
    pub fn checkpoints(&self, consumer: &str) -> Result<BTreeMap<u32, SequenceNumber>> {
        validate_consumer_name(consumer)?;
        let _guard = self
            .consumers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut positions = BTreeMap::new();
        for (shard, sequence) in self.read_checkpoints(consumer)? {
            let path = self.consumer_path(consumer);
            let corrupt = |reason: String| LogError::CorruptMetadata {
                path: path.clone(),
                reason,
            };
            let index =
                parse_shard_id(&shard).ok_or_else(|| corrupt(format!("bad shard id {shard:?}")))?;
            let sequence = sequence
                .parse()
                .map_err(|e: crate::sequence::ParseSequenceNumberError| corrupt(e.to_string()))?;
            positions.insert(index, sequence);
        }
        Ok(positions)
    }

    /// Names of the consumers that have checkpoints.
    pub fn consumers(&self) -> Result<Vec<String>> {
        let dir = self.dir.join("consumers");
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| LogError::io(&dir, e))? {
            let entry = entry.map_err(|e| LogError::io(&dir, e))?;
            if let Some(name) = entry.file_name().to_string_lossy().strip_suffix(".json") {
                names.push(name.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    fn read_checkpoints(&self, consumer: &str) -> Result<BTreeMap<String, String>> {
        let path = self.consumer_path(consumer);
        match std::fs::read(&path) {
            Ok(raw) => serde_json::from_slice(&raw).map_err(|e| LogError::CorruptMetadata {
                path,
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(LogError::io(path, e)),
        }
    }

    fn consumer_path(&self, consumer: &str) -> PathBuf {
        self.dir.join("consumers").join(format!("{consumer}.json"))
    }

    fn save_meta(&self, meta: &StreamMeta) -> Result<()> {
        let content = serde_json::to_vec_pretty(meta)
            .map_err(|e| LogError::InvalidArgument(e.to_string()))?;
        crate::fsutil::write_atomically(&self.dir.join("stream.json"), &content)
    }

    /// Every shard log open now (a snapshot: none held locked).
    fn open_logs(&self) -> Vec<Arc<ShardLog>> {
        self.shards
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    fn has_shard(&self, index: u32) -> bool {
        self.shards
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(&index)
    }

    fn open_shard_meta<'a>(&self, meta: &'a StreamMeta, index: u32) -> Result<&'a ShardMeta> {
        let shard = meta.shard(index).ok_or_else(|| LogError::ShardNotFound {
            stream: self.name.clone(),
            shard: shard_id(index),
        })?;
        if !shard.is_open() {
            return Err(LogError::ShardClosed {
                stream: self.name.clone(),
                shard: shard_id(index),
            });
        }
        Ok(shard)
    }

    fn check_shard_limit(&self, meta: &StreamMeta, added: u32) -> Result<()> {
        let open = meta.open_shards().count() as u32;
        if open + added > self.max_open_shards {
            return Err(LogError::LimitExceeded(format!(
                "stream {} would have {} open shards, more than the limit of {}",
                self.name,
                open + added,
                self.max_open_shards
            )));
        }
        Ok(())
    }

    fn lock_admin(&self) -> std::sync::MutexGuard<'_, ()> {
        self.admin
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }
}

fn routes_of(meta: &StreamMeta) -> Vec<(HashKeyRange, u32)> {
    let mut routes: Vec<_> = meta
        .open_shards()
        .map(|s| (s.hash_range, s.index))
        .collect();
    routes.sort_by_key(|(range, _)| range.start);
    routes
}

fn next_index(meta: &StreamMeta) -> u32 {
    meta.shards.iter().map(|s| s.index + 1).max().unwrap_or(0)
}

pub fn validate_consumer_name(name: &str) -> Result<()> {
    // The name becomes a file name: the stream-name alphabet, without `.` and `..`.
    let valid = is_stream_name(name) && name != "." && name != "..";
    if valid {
        Ok(())
    } else {
        Err(LogError::InvalidArgument(format!(
            "consumer name {name:?} must be 1 to 128 characters of [a-zA-Z0-9_.-], not . or .."
        )))
    }
}

/// Copies an error for the several records it failed (io errors are not Clone).
fn clone_error(error: &LogError, message: &str) -> LogError {
    match error {
        LogError::DiskFull { path } => LogError::DiskFull { path: path.clone() },
        LogError::ShardClosed { stream, shard } => LogError::ShardClosed {
            stream: stream.clone(),
            shard: shard.clone(),
        },
        _ => LogError::Io {
            path: PathBuf::new(),
            source: std::io::Error::other(message.to_string()),
        },
    }
}
/// Whether `name` is a stream name as Kinesis allows them: 1 to 128 of
/// `[a-zA-Z0-9_.-]`. The one rule, for the log, the API and pipeline files.
pub fn is_stream_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// [`is_stream_name`] as an error that says the rule.
pub fn validate_stream_name(name: &str) -> Result<()> {
    if is_stream_name(name) {
        Ok(())
    } else {
        Err(LogError::InvalidArgument(format!(
            "stream name {name:?} must be 1 to 128 characters of [a-zA-Z0-9_.-]"
        )))
    }
}
