//! One shard: an append-only sequence of segment files with group commit.
//!
//! Writers encode their frame outside any lock, then take the write lock only
//! to stamp the offset and timestamp, write the bytes and update the index. In
//! [`Durability::Fsync`] mode a writer then waits on the sync lock: whoever holds
//! it fsyncs the active segment once for every frame written so far, so writers
//! that arrive during an fsync share the next one. Records become visible to
//! readers only once acknowledged, so a reader never sees a record that a crash
//! could take back.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use std::os::unix::fs::FileExt;

use crate::durability::Durability;
use crate::error::{LogError, Result};
use crate::frame::{decode_records, encode_frame, seal_frame, NewRecord, StoredRecord};
use crate::segment::{FrameCursor, Segment};

/// How far ahead of the frames a durable segment's file is filled with zeros.
const ALLOCATION_STEP: u64 = 4 * 1024 * 1024;

/// How a shard is opened.
#[derive(Clone, Debug)]
pub struct ShardOptions {
    pub durability: Durability,
    pub segment_bytes: u64,
}

/// What an append wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendOutcome {
    pub first_offset: u64,
    pub count: u32,
    pub timestamp_ms: i64,
}

impl AppendOutcome {
    /// The offset one past the last record written.
    pub fn end(&self) -> u64 {
        self.first_offset + u64::from(self.count)
    }
}

/// What a read returned.
#[derive(Clone, Debug, Default)]
pub struct ReadOutcome {
    pub records: Vec<StoredRecord>,
    /// Where the next read should start.
    pub next_offset: u64,
}

/// What recovery found when a shard was opened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub segments: usize,
    pub records: u64,
    /// Bytes cut from the tail because they were not whole, valid frames.
    pub truncated_bytes: u64,
}

struct ShardState {
    segments: Vec<Segment>,
    closed: bool,
}

impl ShardState {
    fn active(&self) -> &Segment {
        // A shard always has at least one segment: open and roll guarantee it.
        &self.segments[self.segments.len() - 1]
    }

    fn next_offset(&self) -> u64 {
        self.active().end_offset
    }
}

pub struct ShardLog {
    dir: PathBuf,
    options: ShardOptions,
    state: RwLock<ShardState>,
    /// Offset one past the last fsynced record.
    synced: Mutex<u64>,
    /// Offset one past the last record readers may see.
    visible: AtomicU64,
    last_timestamp_ms: AtomicU64,
}

impl ShardLog {
    /// Opens (or creates) the shard in `dir`, verifying the active segment and
    /// cutting a torn tail.
    pub fn open(dir: &Path, options: ShardOptions) -> Result<(ShardLog, RecoveryReport)> {
        crate::fsutil::create_dir_all(dir)?;
        let mut bases = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| LogError::io(dir, e))? {
            let entry = entry.map_err(|e| LogError::io(dir, e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(stem) = name.strip_suffix(".log") {
                if let Ok(base) = stem.parse::<u64>() {
                    bases.push(base);
                }
            }
        }
        bases.sort_unstable();
        let mut report = RecoveryReport::default();
        let mut segments = Vec::new();
        for (i, base) in bases.iter().enumerate() {
            let path = crate::segment::segment_path(dir, *base);
            let is_last = i + 1 == bases.len();
            let outcome = if is_last {
                Segment::scan(&path, *base)?
            } else {
                Segment::open_sealed(&path, *base)?
            };
            let mut segment = outcome.segment;
            if let Some(previous) = segments.last().map(|s: &Segment| s.end_offset) {
                if previous != segment.base_offset {
                    return Err(LogError::Corrupt {
                        path,
                        position: 0,
                        reason: crate::error::CorruptFrame::Truncated,
                    });
                }
            }
            if let Some((position, reason)) = outcome.torn_at {
                if !is_last {
                    // A sealed segment was fsynced before the next one began:
                    // damage there is not a torn write, and cutting it would
                    // drop acknowledged records.
                    return Err(LogError::Corrupt {
                        path,
                        position,
                        reason,
                    });
                }
                let on_disk = segment
                    .file
                    .metadata()
                    .map_err(|e| LogError::io(&path, e))?
                    .len();
                report.truncated_bytes = on_disk - position;
                segment
                    .file
                    .set_len(position)
                    .and_then(|()| segment.file.sync_all())
                    .map_err(|e| LogError::io(&path, e))?;
                segment.allocated = position;
            }
            report.records += segment.end_offset - segment.base_offset;
            segments.push(segment);
        }
        if segments.is_empty() {
            segments.push(Segment::create(dir, 0)?);
            crate::fsutil::sync_dir(dir)?;
        }
        report.segments = segments.len();
        let state = ShardState {
            segments,
            closed: false,
        };
        let next = state.next_offset();
        let last_ts = state.active().last_timestamp_ms.unwrap_or(0).max(0) as u64;
        Ok((
            ShardLog {
                dir: dir.to_path_buf(),
                options,
                state: RwLock::new(state),
                synced: Mutex::new(next),
                visible: AtomicU64::new(next),
                last_timestamp_ms: AtomicU64::new(last_ts),
            },
            report,
        ))
    }

    /// Refuses further appends; readers can still read to the end.
    pub fn close(&self) {
        self.write_state().closed = true;
    }

    pub fn is_closed(&self) -> bool {
        self.read_state().closed
    }

    /// Writes records as one frame without waiting for the acknowledgement;
    /// pair with [`ShardLog::wait_acknowledged`] (a shard used on its own; a
    /// stream in fsync mode writes through its journal, [`ShardLog::write_logged`]).
    pub fn write(&self, records: &[NewRecord], now_ms: i64) -> Result<AppendOutcome> {
        // This segment is what gets fdatasynced: fill it ahead.
        let fill_ahead = self.options.durability == Durability::Fsync;
        self.write_frame(records, now_ms, fill_ahead, |_| Ok(()))
    }

    /// [`ShardLog::write`], handing the sealed frame to `log` (the stream's
    /// journal) under the write lock once it is in the segment. Such a
    /// write is acknowledged by the journal's sync, then
    /// [`ShardLog::mark_acknowledged`]; the segment is synced later.
    pub fn write_logged(
        &self,
        records: &[NewRecord],
        now_ms: i64,
        log: impl FnOnce(&[u8]) -> Result<()>,
    ) -> Result<AppendOutcome> {
        // The journal is what gets fdatasynced; zeros ahead in the segment
        // would only add writes.
        self.write_frame(records, now_ms, false, log)
    }

    fn write_frame(
        &self,
        records: &[NewRecord],
        now_ms: i64,
        fill_ahead: bool,
        log: impl FnOnce(&[u8]) -> Result<()>,
    ) -> Result<AppendOutcome> {
        if records.is_empty() {
            return Err(LogError::InvalidArgument(
                "an append needs at least one record".into(),
            ));
        }
        let mut frame = encode_frame(records);
        let outcome = {
            let mut state = self.write_state();
            if state.closed {
                return Err(LogError::ShardClosed {
                    stream: String::new(),
                    shard: self.dir.display().to_string(),
                });
            }
            let needs_roll = state.active().size > 0
                && state.active().size + frame.len() as u64 > self.options.segment_bytes;
            if needs_roll {
                self.roll(&mut state)?;
            }
            let first_offset = state.next_offset();
            // Arrival timestamps never decrease within a shard, so time lookups can bisect.
            let timestamp_ms = now_ms.max(self.last_timestamp_ms.load(Ordering::Relaxed) as i64);
            seal_frame(&mut frame, first_offset, timestamp_ms);
            let active = state
                .segments
                .last_mut()
                .ok_or_else(|| LogError::InvalidArgument("shard has no segment".into()))?;
            let end = active.size + frame.len() as u64;
            if fill_ahead {
                active.allocate(end, ALLOCATION_STEP, self.options.segment_bytes);
            }
            // The segment first, then the journal: if either fails the frame
            // is cut from the segment, so no record is kept that its put did
            // not acknowledge, and the next frame starts at a frame boundary.
            let written = active
                .file
                .write_all_at(&frame, active.size)
                .map_err(|e| LogError::io(&active.path, e))
                .and_then(|()| log(&frame));
            if let Err(error) = written {
                let _ = active.file.set_len(active.size);
                active.allocated = active.size;
                return Err(error);
            }
            let info = crate::frame::FrameInfo {
                first_offset,
                timestamp_ms,
                count: records.len() as u32,
                len: frame.len(),
            };
            active.note_frame(&info);
            self.last_timestamp_ms
                .store(timestamp_ms.max(0) as u64, Ordering::Relaxed);
            if self.options.durability == Durability::Os {
                self.visible.store(state.next_offset(), Ordering::Release);
            }
            AppendOutcome {
                first_offset,
                count: records.len() as u32,
                timestamp_ms,
            }
        };
        Ok(outcome)
    }

    /// Makes records up to `end` visible once something else (the stream's
    /// journal) made them durable.
    pub fn mark_acknowledged(&self, end: u64) {
        self.visible.fetch_max(end, Ordering::AcqRel);
    }

    /// Writes back a frame recovered from the journal: appended when it is the
    /// next frame, skipped when the segment already holds it. A frame beyond
    /// the end means records between are missing: corruption, refused.
    pub fn restore_frame(&self, frame: &[u8]) -> Result<bool> {
        let info = crate::frame::check_frame(frame).map_err(|reason| LogError::Corrupt {
            path: self.dir.clone(),
            position: 0,
            reason,
        })?;
        let mut state = self.write_state();
        let next = state.next_offset();
        if info.first_offset < next {
            return Ok(false);
        }
        if info.first_offset > next {
            return Err(LogError::InvalidArgument(format!(
                "shard {}: the journal holds records from offset {} but the segments end at {next}; records between are missing",
                self.dir.display(),
                info.first_offset
            )));
        }
        if state.active().size > 0
            && state.active().size + frame.len() as u64 > self.options.segment_bytes
        {
            self.roll(&mut state)?;
        }
        let active = state
            .segments
            .last_mut()
            .ok_or_else(|| LogError::InvalidArgument("shard has no segment".into()))?;
        let end = active.size + frame.len() as u64;
        active.allocate(end, ALLOCATION_STEP, self.options.segment_bytes);
        active
            .file
            .write_all_at(frame, active.size)
            .map_err(|e| LogError::io(&active.path, e))?;
        active.note_frame(&info);
        self.last_timestamp_ms
            .fetch_max(info.timestamp_ms.max(0) as u64, Ordering::Relaxed);
        Ok(true)
    }

    /// Appends and waits until the records are acknowledged.
    pub fn append(&self, records: &[NewRecord], now_ms: i64) -> Result<AppendOutcome> {
        let outcome = self.write(records, now_ms)?;
        self.wait_acknowledged(&outcome)?;
        Ok(outcome)
    }

    /// Waits until an earlier [`ShardLog::write`] is acknowledged: in fsync mode
    /// until it is on disk, sharing one fsync with concurrent writers.
    pub fn wait_acknowledged(&self, outcome: &AppendOutcome) -> Result<()> {
        if self.options.durability == Durability::Fsync {
            self.sync_to(outcome.end())?;
        }
        Ok(())
    }

    /// True once a reader at `offset` has read everything this closed shard will ever hold.
    pub fn is_finished_at(&self, offset: u64) -> bool {
        let state = self.read_state();
        state.closed && offset >= state.next_offset() && self.end_offset() >= state.next_offset()
    }

    /// Makes every written frame durable and visible (used before closing a shard).
    pub fn flush(&self) -> Result<()> {
        let written = self.read_state().next_offset();
        if self.options.durability == Durability::Fsync {
            self.sync_to(written)
        } else {
            Ok(())
        }
    }

    /// Syncs the active segment whatever the sync mark says (on open, the
    /// frames found on disk may be only in the page cache) and makes every
    /// written frame visible.
    pub fn sync_active(&self) -> Result<()> {
        self.sync_to(u64::MAX)
    }

    /// Group commit: one fsync covers every frame written before it started.
    fn sync_to(&self, end_offset: u64) -> Result<()> {
        let mut synced = self
            .synced
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *synced >= end_offset {
            return Ok(());
        }
        let (target, file, path) = {
            let state = self.read_state();
            let active = state.active();
            (active.end_offset, active.file.clone(), active.path.clone())
        };
        // Frames before `target` live in this file or in sealed segments,
        // which were fsynced when they were sealed.
        file.sync_data().map_err(|e| LogError::io(path, e))?;
        *synced = (*synced).max(target);
        self.visible.fetch_max(target, Ordering::AcqRel);
        Ok(())
    }

    /// Seals the active segment (fsync, index file) and starts a new one.
    fn roll(&self, state: &mut ShardState) -> Result<()> {
        let active = state
            .segments
            .last_mut()
            .ok_or_else(|| LogError::InvalidArgument("shard has no segment".into()))?;
        // A sealed segment is exactly its frames: its index records that size.
        active
            .trim_allocation()
            .and_then(|()| active.file.sync_all())
            .map_err(|e| LogError::io(&active.path, e))?;
        active.write_index()?;
        let next = Segment::create(&self.dir, active.end_offset)?;
        crate::fsutil::sync_dir(&self.dir)?;
        state.segments.push(next);
        Ok(())
    }

    /// Offset of the oldest retained record.
    pub fn trim_horizon(&self) -> u64 {
        self.read_state().segments[0].base_offset
    }

    /// Offset one past the last acknowledged record.
    pub fn end_offset(&self) -> u64 {
        self.visible.load(Ordering::Acquire)
    }

    /// Arrival time of the last acknowledged record, if any.
    pub fn last_timestamp_ms(&self) -> Option<i64> {
        let state = self.read_state();
        state
            .segments
            .iter()
            .rev()
            .find_map(|s| s.last_timestamp_ms)
    }

    /// Reads up to `max_records` (and about `max_bytes` of data) from `from_offset`.
    /// A position before the trim horizon reads from the trim horizon.
    pub fn read(
        &self,
        from_offset: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<ReadOutcome> {
        let visible = self.end_offset();
        let mut records = Vec::new();
        let mut offset = from_offset.max(self.trim_horizon());
        let mut bytes = 0usize;
        while offset < visible && records.len() < max_records && bytes < max_bytes {
            let Some((file, path, position, end)) =
                self.locate(offset, |s| s.position_for_offset(offset))
            else {
                break;
            };
            let mut cursor = FrameCursor::new(file, path, position, end);
            let before = records.len();
            while let Some((info, frame)) = cursor.next_frame()? {
                if info.first_offset >= visible
                    || records.len() >= max_records
                    || bytes >= max_bytes
                {
                    break;
                }
                if info.first_offset + u64::from(info.count) <= offset {
                    continue;
                }
                let start = records.len();
                decode_records(frame, &info, offset, visible, &mut records, max_records).map_err(
                    |reason| LogError::Corrupt {
                        path: self.dir.clone(),
                        position: 0,
                        reason,
                    },
                )?;
                bytes += records[start..]
                    .iter()
                    .map(|r| r.data.len() + r.partition_key.len())
                    .sum::<usize>();
                if let Some(last) = records.last() {
                    offset = last.offset + 1;
                }
            }
            if records.len() == before {
                // Nothing more in that segment: continue in the next one.
                let next = self.segment_end_after(offset);
                match next {
                    Some(end) if end > offset => offset = end,
                    _ => break,
                }
            }
        }
        // `offset` follows the last record decoded, so it is where to go on.
        Ok(ReadOutcome {
            next_offset: offset,
            records,
        })
    }

    /// The first offset whose arrival time is at or after `timestamp_ms`, or the
    /// end of the shard when every record is older.
    pub fn offset_at_timestamp(&self, timestamp_ms: i64) -> Result<u64> {
        let visible = self.end_offset();
        let candidates: Vec<(std::sync::Arc<std::fs::File>, PathBuf, u64, u64)> = {
            let state = self.read_state();
            state
                .segments
                .iter()
                .filter(|s| s.last_timestamp_ms.is_some_and(|t| t >= timestamp_ms))
                .take(1)
                .map(|s| {
                    (
                        s.file.clone(),
                        s.path.clone(),
                        s.position_for_timestamp(timestamp_ms),
                        s.size,
                    )
                })
                .collect()
        };
        for (file, path, position, end) in candidates {
            let mut cursor = FrameCursor::new(file, path, position, end);
            while let Some((info, _)) = cursor.next_frame()? {
                if info.first_offset >= visible {
                    break;
                }
                if info.timestamp_ms >= timestamp_ms {
                    return Ok(info.first_offset);
                }
            }
        }
        Ok(visible)
    }

    /// Deletes sealed segments whose newest record is older than `retention_ms`
    /// or, oldest first, while the shard is larger than `max_bytes`. The active
    /// segment is sealed first when all of it has expired.
    pub fn enforce_retention(
        &self,
        now_ms: i64,
        retention_ms: i64,
        max_bytes: Option<u64>,
    ) -> Result<usize> {
        let cutoff = now_ms - retention_ms;
        let mut state = self.write_state();
        let active_expired = state.active().last_timestamp_ms.is_some_and(|t| t < cutoff);
        // Read the visible end, not the sync lock: `sync_to` takes the sync lock
        // before the state lock, so taking them the other way round could deadlock.
        let active_unsynced = self.end_offset() < state.next_offset();
        if active_expired && !active_unsynced && !state.closed {
            self.roll(&mut state)?;
        }
        let mut removed = 0;
        let mut total: u64 = state.segments.iter().map(|s| s.size).sum();
        while state.segments.len() > 1 {
            let oldest = &state.segments[0];
            let expired = oldest.last_timestamp_ms.is_none_or(|t| t < cutoff);
            let too_big = max_bytes.is_some_and(|limit| total > limit);
            if !(expired || too_big) {
                break;
            }
            if oldest.end_offset > self.end_offset() {
                break;
            }
            oldest.remove_files()?;
            total -= oldest.size;
            state.segments.remove(0);
            removed += 1;
        }
        Ok(removed)
    }

    pub fn size_bytes(&self) -> u64 {
        self.read_state().segments.iter().map(|s| s.size).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.read_state().segments.len()
    }

    fn locate(
        &self,
        offset: u64,
        position: impl Fn(&Segment) -> u64,
    ) -> Option<(std::sync::Arc<std::fs::File>, PathBuf, u64, u64)> {
        let state = self.read_state();
        let slot = state.segments.partition_point(|s| s.base_offset <= offset);
        let segment = &state.segments[slot.checked_sub(1)?];
        Some((
            segment.file.clone(),
            segment.path.clone(),
            position(segment),
            segment.size,
        ))
    }

    fn segment_end_after(&self, offset: u64) -> Option<u64> {
        let state = self.read_state();
        let slot = state.segments.partition_point(|s| s.base_offset <= offset);
        state
            .segments
            .get(slot.checked_sub(1)?)
            .map(|s| s.end_offset)
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, ShardState> {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, ShardState> {
        self.state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn durability(&self) -> Durability {
        self.options.durability
    }
}

#[cfg(test)]
mod tests;
