//! A stream's journal: one write-ahead file shared by all of its shards.
//!
//! In fsync mode a put writes each shard's frame to the shard's segment
//! without waiting and appends it to the journal, tagged with the shard; one
//! fdatasync of the journal makes the whole put durable however many shards it
//! touched, and concurrent puts share it (group commit). A put over four shard
//! files otherwise cost four fdatasyncs. Segments are fsynced when sealed and
//! at a checkpoint, after which the journal files they cover are deleted. On
//! open, frames a segment lacks (lost with the page cache in a crash) are
//! written back to it from the journal.
//!
//! ```text
//! DIR/GENERATION.wal    entry*, then zeros written ahead
//! entry := len:u32le  crc32c(shard ‖ frame):u32le  shard:u32le  frame
//! ```
//!
//! Positions count bytes over all generations, so "durable up to" is one number.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{CorruptFrame, LogError, Result};

const ENTRY_HEADER_LEN: usize = 12;
/// How far ahead of its entries the journal file is filled with zeros.
const ALLOCATION_STEP: u64 = 4 * 1024 * 1024;

struct Active {
    file: Arc<File>,
    path: PathBuf,
    generation: u64,
    /// Journal position of the file's first byte.
    base: u64,
    size: u64,
    allocated: u64,
    /// Sealed files whose frames a checkpoint will make durable in the segments.
    retired: Vec<PathBuf>,
}

pub struct Journal {
    dir: PathBuf,
    rotate_bytes: u64,
    active: Mutex<Active>,
    /// Serialises fdatasyncs; whoever holds it syncs for every waiting writer.
    sync_lock: Mutex<()>,
    /// Position up to which the journal is durable.
    synced: AtomicU64,
    /// Set by a failed fdatasync: the kernel may have dropped the pages it
    /// could not write, so no later sync can vouch for them (fail-stop).
    failed: std::sync::OnceLock<String>,
}

/// What an append did.
pub struct Appended {
    /// Position one past the entry: durable once [`Journal::sync_to`] it returns.
    pub end: u64,
    /// The append sealed a full file: a checkpoint may now retire it.
    pub rotated: bool,
}

/// The journal files a recovery replayed, to delete once the shards are durable.
pub struct Replayed {
    pub files: Vec<PathBuf>,
    /// The generation a new journal file starts at.
    pub next_generation: u64,
}

impl Journal {
    /// Replays every journal file in `dir` through `apply` (shard, frame), in
    /// the order written. A torn entry ends the replay of the last file and
    /// is cut from it (synced), so that file stays valid when a newer one
    /// follows it; in an earlier, sealed file a torn entry is corruption.
    pub fn replay(dir: &Path, mut apply: impl FnMut(u32, &[u8]) -> Result<()>) -> Result<Replayed> {
        let mut generations = Vec::new();
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Replayed {
                    files: Vec::new(),
                    next_generation: 0,
                })
            }
            Err(e) => return Err(LogError::io(dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| LogError::io(dir, e))?;
            let name = entry.file_name();
            if let Some(generation) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".wal"))
                .and_then(|n| n.parse::<u64>().ok())
            {
                generations.push(generation);
            }
        }
        generations.sort_unstable();
        let mut replayed = Replayed {
            files: Vec::new(),
            next_generation: generations.last().map_or(0, |g| g + 1),
        };
        for (i, generation) in generations.iter().enumerate() {
            let path = journal_path(dir, *generation);
            let bytes = std::fs::read(&path).map_err(|e| LogError::io(&path, e))?;
            let mut position = 0;
            while position < bytes.len() {
                match entry_at(&bytes[position..]) {
                    Ok((shard, frame, len)) => {
                        apply(shard, frame)?;
                        position += len;
                    }
                    Err(reason) => {
                        if bytes[position..].iter().all(|b| *b == 0) {
                            break; // zeros written ahead
                        }
                        if i + 1 < generations.len() {
                            return Err(LogError::Corrupt {
                                path,
                                position: position as u64,
                                reason,
                            });
                        }
                        OpenOptions::new()
                            .write(true)
                            .open(&path)
                            .and_then(|f| f.set_len(position as u64).and_then(|()| f.sync_all()))
                            .map_err(|e| LogError::io(&path, e))?;
                        break;
                    }
                }
            }
            replayed.files.push(path);
        }
        Ok(replayed)
    }

    /// Starts a journal in `dir` at `generation` (after [`Journal::replay`]).
    pub fn create(dir: &Path, generation: u64, rotate_bytes: u64) -> Result<Journal> {
        crate::fsutil::create_dir_all(dir)?;
        if let Some(parent) = dir.parent() {
            crate::fsutil::sync_dir(parent)?;
        }
        let (file, path) = create(dir, generation)?;
        Ok(Journal {
            dir: dir.to_path_buf(),
            rotate_bytes,
            active: Mutex::new(Active {
                file,
                path,
                generation,
                base: 0,
                size: 0,
                allocated: 0,
                retired: Vec::new(),
            }),
            sync_lock: Mutex::new(()),
            synced: AtomicU64::new(0),
            failed: std::sync::OnceLock::new(),
        })
    }

    /// Appends one shard's frame. Call it under the shard's write lock, so a
    /// shard's entries are in offset order and a sync that covers one entry
    /// covers every earlier frame of that shard.
    pub fn append(&self, shard: u32, frame: &[u8]) -> Result<Appended> {
        let mut entry = Vec::with_capacity(ENTRY_HEADER_LEN + frame.len());
        entry.extend_from_slice(&((4 + frame.len()) as u32).to_le_bytes());
        let mut crc = crc32c::crc32c(&shard.to_le_bytes());
        crc = crc32c::crc32c_append(crc, frame);
        entry.extend_from_slice(&crc.to_le_bytes());
        entry.extend_from_slice(&shard.to_le_bytes());
        entry.extend_from_slice(frame);
        let mut active = self.lock_active();
        let end = active.size + entry.len() as u64;
        if end > active.allocated {
            let target = end.max(active.allocated + ALLOCATION_STEP);
            let from = active.allocated.max(active.size);
            active.allocated = crate::fsutil::fill_ahead(&active.file, from, target);
        }
        let written = active.file.write_all_at(&entry, active.size);
        if let Err(error) = written {
            // No partial entry stays behind: replay would stop at it.
            let _ = crate::fsutil::fill_zeros(&active.file, active.size, end);
            return Err(LogError::io(&active.path, error));
        }
        active.size = end;
        let end = active.base + active.size;
        // The entry is written: a rotation that fails must not make its put
        // fail (the entry would outlive the put); a later append retries it.
        let rotated = active.size >= self.rotate_bytes && self.rotate(&mut active).is_ok();
        Ok(Appended { end, rotated })
    }

    /// Returns once the journal is durable up to `end`; one fdatasync covers
    /// every entry appended before it started.
    pub fn sync_to(&self, end: u64) -> Result<()> {
        if let Some(reason) = self.failed.get() {
            return Err(LogError::InvalidArgument(format!(
                "the journal in {} failed to sync earlier ({reason}); reopen the store",
                self.dir.display()
            )));
        }
        if self.synced.load(Ordering::Acquire) >= end {
            return Ok(());
        }
        let _sync = self
            .sync_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.synced.load(Ordering::Acquire) >= end {
            return Ok(());
        }
        let (file, path, target) = {
            let active = self.lock_active();
            (
                active.file.clone(),
                active.path.clone(),
                active.base + active.size,
            )
        };
        // Entries before `target` are in this file or in sealed files, which
        // were synced when they were sealed.
        if let Err(error) = file.sync_data() {
            let error = LogError::io(path, error);
            let _ = self.failed.set(error.to_string());
            return Err(error);
        }
        self.synced.fetch_max(target, Ordering::AcqRel);
        Ok(())
    }

    /// Puts back files a checkpoint could not retire, for the next one.
    pub fn give_back(&self, mut files: Vec<PathBuf>) {
        let mut active = self.lock_active();
        files.append(&mut active.retired);
        active.retired = files;
    }

    /// The sealed files a checkpoint may delete once every shard is synced.
    pub fn take_retired(&self) -> Vec<PathBuf> {
        std::mem::take(&mut self.lock_active().retired)
    }

    /// Seals the active file (synced, trimmed to its entries) and starts the next.
    fn rotate(&self, active: &mut Active) -> Result<()> {
        active
            .file
            .set_len(active.size)
            .and_then(|()| active.file.sync_data())
            .map_err(|e| LogError::io(&active.path, e))?;
        let sealed_end = active.base + active.size;
        self.synced.fetch_max(sealed_end, Ordering::AcqRel);
        let generation = active.generation + 1;
        let (file, path) = create(&self.dir, generation)?;
        let sealed = std::mem::replace(&mut active.path, path);
        active.retired.push(sealed);
        active.file = file;
        active.generation = generation;
        active.base = sealed_end;
        active.size = 0;
        active.allocated = 0;
        Ok(())
    }

    fn lock_active(&self) -> std::sync::MutexGuard<'_, Active> {
        self.active
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Deletes journal files whose frames the segments now hold durably, and
/// syncs their directory so that the deletion is durable too.
pub fn remove(files: &[PathBuf]) -> Result<()> {
    for path in files {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(LogError::io(path, e)),
        }
    }
    if let Some(dir) = files.first().and_then(|p| p.parent()) {
        crate::fsutil::sync_dir(dir)?;
    }
    Ok(())
}

fn journal_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("{generation:020}.wal"))
}

fn create(dir: &Path, generation: u64) -> Result<(Arc<File>, PathBuf)> {
    let path = journal_path(dir, generation);
    let file = crate::fsutil::create_empty(&path)?;
    crate::fsutil::sync_dir(dir)?;
    Ok((Arc::new(file), path))
}

/// The entry at the start of `bytes`: its shard, its frame and its length.
fn entry_at(bytes: &[u8]) -> std::result::Result<(u32, &[u8], usize), CorruptFrame> {
    let header = bytes
        .get(..ENTRY_HEADER_LEN)
        .ok_or(CorruptFrame::Truncated)?;
    let body_len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if body_len < 4 {
        return Err(CorruptFrame::Truncated);
    }
    let len = 8 + body_len;
    let body = bytes.get(8..len).ok_or(CorruptFrame::Truncated)?;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if crc32c::crc32c(body) != crc {
        return Err(CorruptFrame::Checksum);
    }
    let shard = u32::from_le_bytes([body[0], body[1], body[2], body[3]]);
    Ok((shard, &body[4..], len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replay(dir: &Path) -> Vec<(u32, Vec<u8>)> {
        let mut seen = Vec::new();
        Journal::replay(dir, |shard, frame| {
            seen.push((shard, frame.to_vec()));
            Ok(())
        })
        .expect("replay");
        seen
    }

    fn open(dir: &Path, rotate_bytes: u64) -> Journal {
        let replayed = Journal::replay(dir, |_, _| Ok(())).expect("replay");
        Journal::create(dir, replayed.next_generation, rotate_bytes).expect("create")
    }

    #[test]
    fn entries_replay_in_order_across_rotations() {
        let dir = tempfile::tempdir().expect("tempdir");
        let expected: Vec<(u32, Vec<u8>)> = (0..50u32)
            .map(|i| (i % 3, vec![i as u8 + 1; 40 + i as usize]))
            .collect();
        {
            let journal = open(dir.path(), 600);
            let mut rotations = 0;
            for (shard, frame) in &expected {
                let appended = journal.append(*shard, frame).expect("append");
                journal.sync_to(appended.end).expect("sync");
                rotations += usize::from(appended.rotated);
            }
            assert!(rotations > 3, "600-byte files rotate");
            assert_eq!(journal.take_retired().len(), rotations);
        }
        assert_eq!(replay(dir.path()), expected);
    }

    #[test]
    fn a_journal_cut_at_any_byte_replays_exactly_its_whole_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut ends = vec![0usize];
        {
            let journal = open(dir.path(), 1 << 20);
            for i in 0..4u32 {
                let appended = journal
                    .append(i, &vec![9u8; 10 * i as usize + 1])
                    .expect("append");
                ends.push(appended.end as usize);
            }
        }
        let file = std::fs::read(journal_path(dir.path(), 0)).expect("read");
        let full = ends[ends.len() - 1];
        for cut in 0..=full {
            let crashed = tempfile::tempdir().expect("tempdir");
            let mut bytes = file[..cut].to_vec();
            bytes.resize(full + 100, 0);
            std::fs::write(journal_path(crashed.path(), 0), &bytes).expect("write");
            let whole = ends.iter().rposition(|end| *end <= cut).expect("prefix");
            let seen = replay(crashed.path());
            assert_eq!(seen.len(), whole, "cut at {cut}");
            assert!(seen
                .iter()
                .enumerate()
                .all(|(i, (shard, _))| *shard == i as u32));
        }
    }

    #[test]
    fn damage_inside_a_sealed_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let journal = open(dir.path(), 100);
            for i in 0..4u32 {
                journal.append(i, &[7u8; 80]).expect("append");
            }
        }
        let sealed = journal_path(dir.path(), 0);
        let mut bytes = std::fs::read(&sealed).expect("read");
        bytes[20] ^= 0xFF;
        std::fs::write(&sealed, &bytes).expect("write");
        let error = Journal::replay(dir.path(), |_, _| Ok(()))
            .err()
            .expect("refused");
        assert!(error.to_string().contains("checksum"), "{error}");
    }

    #[test]
    fn a_torn_entry_is_cut_so_a_newer_file_after_it_does_not_make_it_corrupt() {
        let dir = tempfile::tempdir().expect("tempdir");
        let end = {
            let journal = open(dir.path(), 1 << 20);
            journal.append(0, &[5u8; 30]).expect("append").end as usize
        };
        // a crash left half of a second entry after the first
        let path = journal_path(dir.path(), 0);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[end..end + 20].copy_from_slice(&[
            0x30, 0, 0, 0, 9, 9, 9, 9, 1, 0, 0, 0, 7, 7, 7, 7, 7, 7, 7, 7,
        ]);
        std::fs::write(&path, &bytes).expect("write");
        // the next open starts generation 1 beside it (and a crash keeps both)
        let journal = open(dir.path(), 1 << 20);
        journal.append(1, &[6u8; 30]).expect("append");
        drop(journal);
        let seen = replay(dir.path());
        assert_eq!(seen.len(), 2, "both whole entries, none refused");
    }
}
