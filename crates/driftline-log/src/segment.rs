//! One segment file of a shard and its sparse index.
//!
//! A segment is named by the offset of its first record (`00000000000000001234.log`).
//! The sparse index holds one entry per [`INDEX_INTERVAL_BYTES`] of frames:
//! the frame's first offset, its timestamp and its byte position. Arrival
//! timestamps never decrease within a shard, so both an offset and a time find
//! their frame by binary search, then at most one interval is read.
//!
//! When a segment is sealed (the shard rolls to a new one) its index is written
//! beside it (`.idx`, with a trailing CRC32C); an index that is missing or fails
//! its checksum is rebuilt from the segment.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{LogError, Result};
use crate::frame::{check_frame, frame_len, FrameInfo, FRAME_HEADER_LEN};

pub const INDEX_INTERVAL_BYTES: u64 = 4096;
const INDEX_ENTRY_LEN: usize = 24;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    pub offset: u64,
    pub timestamp_ms: i64,
    pub position: u64,
}

#[derive(Debug)]
pub struct Segment {
    pub base_offset: u64,
    pub path: PathBuf,
    pub file: Arc<File>,
    /// Bytes of whole frames in the file.
    pub size: u64,
    /// Length of the file: past `size` it holds zeros written ahead of the
    /// frames (see [`Segment::allocate`]).
    pub allocated: u64,
    /// Offset one past the last record.
    pub end_offset: u64,
    pub first_timestamp_ms: Option<i64>,
    pub last_timestamp_ms: Option<i64>,
    pub index: Vec<IndexEntry>,
    bytes_since_index: u64,
}

pub fn segment_path(dir: &Path, base_offset: u64) -> PathBuf {
    dir.join(format!("{base_offset:020}.log"))
}

fn index_path(log_path: &Path) -> PathBuf {
    log_path.with_extension("idx")
}

/// What a scan of a segment found.
pub struct ScanOutcome {
    pub segment: Segment,
    /// Where the first invalid byte is, if the file holds more than whole valid frames.
    pub torn_at: Option<(u64, crate::error::CorruptFrame)>,
}

impl Segment {
    pub fn create(dir: &Path, base_offset: u64) -> Result<Segment> {
        let path = segment_path(dir, base_offset);
        let file = crate::fsutil::create_empty(&path)?;
        Ok(Segment::empty(base_offset, path, file))
    }

    /// A segment with no frames yet, over an open file.
    fn empty(base_offset: u64, path: PathBuf, file: File) -> Segment {
        Segment {
            base_offset,
            path,
            file: Arc::new(file),
            size: 0,
            allocated: 0,
            end_offset: base_offset,
            first_timestamp_ms: None,
            last_timestamp_ms: None,
            index: Vec::new(),
            bytes_since_index: 0,
        }
    }

    /// Opens a sealed segment from its index when that is intact, or by a scan.
    pub fn open_sealed(path: &Path, base_offset: u64) -> Result<ScanOutcome> {
        if let Some(segment) = Self::open_from_index(path, base_offset)? {
            return Ok(ScanOutcome {
                segment,
                torn_at: None,
            });
        }
        Self::scan(path, base_offset)
    }

    /// Opens a segment by reading every frame and checking its checksum.
    pub fn scan(path: &Path, base_offset: u64) -> Result<ScanOutcome> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| LogError::io(path, e))?;
        let mut bytes = Vec::new();
        (&file)
            .read_to_end(&mut bytes)
            .map_err(|e| LogError::io(path, e))?;
        let mut segment = Segment::empty(base_offset, path.to_path_buf(), file);
        let mut position = 0usize;
        let mut torn_at = None;
        while position < bytes.len() {
            let rest = &bytes[position..];
            let Some(len) = frame_len(rest).filter(|len| *len <= rest.len()) else {
                torn_at = Some((position as u64, crate::error::CorruptFrame::Truncated));
                break;
            };
            match check_frame(&rest[..len]) {
                Ok(info) if info.first_offset == segment.end_offset => {
                    segment.note_frame(&info);
                    position += len;
                }
                Ok(_) => {
                    torn_at = Some((position as u64, crate::error::CorruptFrame::Checksum));
                    break;
                }
                Err(reason) => {
                    torn_at = Some((position as u64, reason));
                    break;
                }
            }
        }
        segment.allocated = bytes.len() as u64;
        // Zeros after the last frame are space written ahead, not a torn write.
        if torn_at.is_some() && bytes[position..].iter().all(|b| *b == 0) {
            torn_at = None;
        }
        Ok(ScanOutcome { segment, torn_at })
    }

    fn open_from_index(path: &Path, base_offset: u64) -> Result<Option<Segment>> {
        let idx_path = index_path(path);
        let Ok(mut idx_file) = File::open(&idx_path) else {
            return Ok(None);
        };
        let mut raw = Vec::new();
        if idx_file.read_to_end(&mut raw).is_err() || raw.len() < 4 + 8 + 8 + 16 {
            return Ok(None);
        }
        let (content, crc) = raw.split_at(raw.len() - 4);
        if crc32c::crc32c(content).to_le_bytes() != crc {
            return Ok(None);
        }
        // content = size u64, end_offset u64, first_ts i64, last_ts i64, entries...
        let word =
            |i: usize| u64::from_le_bytes(content[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
        if (content.len() - 32) % INDEX_ENTRY_LEN != 0 {
            return Ok(None);
        }
        let size = word(0);
        let end_offset = word(1);
        let first_ts = word(2) as i64;
        let last_ts = word(3) as i64;
        let index = content[32..]
            .chunks_exact(INDEX_ENTRY_LEN)
            .map(|entry| IndexEntry {
                offset: u64::from_le_bytes(entry[0..8].try_into().unwrap_or([0; 8])),
                timestamp_ms: i64::from_le_bytes(entry[8..16].try_into().unwrap_or([0; 8])),
                position: u64::from_le_bytes(entry[16..24].try_into().unwrap_or([0; 8])),
            })
            .collect();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| LogError::io(path, e))?;
        let on_disk = file.metadata().map_err(|e| LogError::io(path, e))?.len();
        if on_disk != size {
            return Ok(None);
        }
        let has_records = end_offset > base_offset;
        Ok(Some(Segment {
            base_offset,
            path: path.to_path_buf(),
            file: Arc::new(file),
            size,
            allocated: size,
            end_offset,
            first_timestamp_ms: has_records.then_some(first_ts),
            last_timestamp_ms: has_records.then_some(last_ts),
            index,
            bytes_since_index: 0,
        }))
    }

    /// Makes sure the file holds at least `needed` bytes, writing zeros ahead
    /// (see [`crate::fsutil::fill_zeros`]) in steps of `step`, never past
    /// `limit` unless `needed` is.
    /// Without room for them the frame is written without zeros ahead.
    pub fn allocate(&mut self, needed: u64, step: u64, limit: u64) {
        if needed <= self.allocated {
            return;
        }
        let target = needed.max((self.allocated + step).min(limit));
        self.allocated =
            crate::fsutil::fill_ahead(&self.file, self.allocated.max(self.size), target);
    }

    /// Cuts the zeros written ahead, so the file is exactly its frames again.
    pub fn trim_allocation(&mut self) -> std::io::Result<()> {
        if self.allocated > self.size {
            self.file.set_len(self.size)?;
            self.allocated = self.size;
        }
        Ok(())
    }

    /// Records a frame that was appended at the current end.
    pub fn note_frame(&mut self, info: &FrameInfo) {
        if self.index.is_empty() || self.bytes_since_index >= INDEX_INTERVAL_BYTES {
            self.index.push(IndexEntry {
                offset: info.first_offset,
                timestamp_ms: info.timestamp_ms,
                position: self.size,
            });
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += info.len as u64;
        self.size += info.len as u64;
        self.end_offset = info.first_offset + u64::from(info.count);
        self.first_timestamp_ms.get_or_insert(info.timestamp_ms);
        self.last_timestamp_ms = Some(info.timestamp_ms);
    }

    /// Writes the index file of a sealed segment (the segment itself is fsynced first).
    pub fn write_index(&self) -> Result<()> {
        let mut content = Vec::with_capacity(32 + self.index.len() * INDEX_ENTRY_LEN + 4);
        content.extend_from_slice(&self.size.to_le_bytes());
        content.extend_from_slice(&self.end_offset.to_le_bytes());
        content.extend_from_slice(&self.first_timestamp_ms.unwrap_or(0).to_le_bytes());
        content.extend_from_slice(&self.last_timestamp_ms.unwrap_or(0).to_le_bytes());
        for entry in &self.index {
            content.extend_from_slice(&entry.offset.to_le_bytes());
            content.extend_from_slice(&entry.timestamp_ms.to_le_bytes());
            content.extend_from_slice(&entry.position.to_le_bytes());
        }
        let crc = crc32c::crc32c(&content);
        content.extend_from_slice(&crc.to_le_bytes());
        crate::fsutil::write_atomically(&index_path(&self.path), &content)
    }

    /// The byte position from which to read to reach `offset`.
    pub fn position_for_offset(&self, offset: u64) -> u64 {
        let slot = self.index.partition_point(|e| e.offset <= offset);
        slot.checked_sub(1).map_or(0, |i| self.index[i].position)
    }

    /// The byte position from which to read to reach the first record at or after `timestamp_ms`.
    pub fn position_for_timestamp(&self, timestamp_ms: i64) -> u64 {
        let slot = self
            .index
            .partition_point(|e| e.timestamp_ms < timestamp_ms);
        slot.checked_sub(1).map_or(0, |i| self.index[i].position)
    }

    pub fn remove_files(&self) -> Result<()> {
        std::fs::remove_file(&self.path).map_err(|e| LogError::io(&self.path, e))?;
        match std::fs::remove_file(index_path(&self.path)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(LogError::io(index_path(&self.path), e)),
        }
    }
}

/// Reads whole frames from a segment file through a buffer, by position.
pub struct FrameCursor {
    file: Arc<File>,
    path: PathBuf,
    position: u64,
    end: u64,
    buffer: Vec<u8>,
    buffer_start: u64,
}

const READ_CHUNK: usize = 256 * 1024;

impl FrameCursor {
    pub fn new(file: Arc<File>, path: PathBuf, position: u64, end: u64) -> FrameCursor {
        FrameCursor {
            file,
            path,
            position,
            end,
            buffer: Vec::new(),
            buffer_start: position,
        }
    }

    /// The next frame and its header, or `None` at the end.
    pub fn next_frame(&mut self) -> Result<Option<(FrameInfo, &[u8])>> {
        if self.position + FRAME_HEADER_LEN as u64 > self.end {
            return Ok(None);
        }
        self.fill(FRAME_HEADER_LEN)?;
        let start = (self.position - self.buffer_start) as usize;
        let len = frame_len(&self.buffer[start..]).unwrap_or(0);
        if len == 0 || self.position + len as u64 > self.end {
            return Err(LogError::Corrupt {
                path: self.path.clone(),
                position: self.position,
                reason: crate::error::CorruptFrame::Truncated,
            });
        }
        self.fill(len)?;
        let start = (self.position - self.buffer_start) as usize;
        let frame = &self.buffer[start..start + len];
        let info = check_frame(frame).map_err(|reason| LogError::Corrupt {
            path: self.path.clone(),
            position: self.position,
            reason,
        })?;
        self.position += len as u64;
        Ok(Some((info, frame)))
    }

    /// Makes sure `want` bytes from the current position are buffered.
    fn fill(&mut self, want: usize) -> Result<()> {
        let start = (self.position - self.buffer_start) as usize;
        if start + want <= self.buffer.len() {
            return Ok(());
        }
        let available = (self.end - self.position) as usize;
        let read_len = want.max(READ_CHUNK).min(available.max(want));
        self.buffer.resize(read_len, 0);
        self.buffer_start = self.position;
        self.file
            .read_exact_at(&mut self.buffer, self.position)
            .map_err(|e| LogError::io(&self.path, e))
    }
}
