//! Batch frames: the unit written to a segment and checked on recovery.
//!
//! ```text
//! frame   := body_len:u32le  crc32c(body):u32le  body
//! body    := version:u8  first_offset:u64le  timestamp_ms:i64le  count:u32le  record*
//! record  := key_len:u16le  partition_key  has_hash_key:u8  [hash_key:u128le]
//!            data_len:u32le  data
//! ```
//!
//! One frame holds the records one append gave to one shard; they share the
//! arrival timestamp. A frame is valid only whole: a torn or corrupt frame fails
//! its checksum and recovery cuts the segment there.

use crate::error::CorruptFrame;

pub const FRAME_HEADER_LEN: usize = 8;
pub const BODY_HEADER_LEN: usize = 1 + 8 + 8 + 4;
pub const FORMAT_VERSION: u8 = 1;

/// A record as a producer hands it to the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRecord {
    pub partition_key: String,
    pub explicit_hash_key: Option<u128>,
    pub data: Vec<u8>,
}

/// A record as stored, with its place in the shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    pub offset: u64,
    pub timestamp_ms: i64,
    pub partition_key: String,
    pub explicit_hash_key: Option<u128>,
    pub data: Vec<u8>,
}

/// Encodes records into a frame whose offset and timestamp are filled in later,
/// under the shard's write lock, by [`seal_frame`].
pub fn encode_frame(records: &[NewRecord]) -> Vec<u8> {
    let payload: usize = records
        .iter()
        .map(|r| 2 + r.partition_key.len() + 1 + 16 + 4 + r.data.len())
        .sum();
    let mut frame = Vec::with_capacity(FRAME_HEADER_LEN + BODY_HEADER_LEN + payload);
    frame.extend_from_slice(&[0u8; FRAME_HEADER_LEN]);
    frame.push(FORMAT_VERSION);
    frame.extend_from_slice(&[0u8; 16]);
    frame.extend_from_slice(&(records.len() as u32).to_le_bytes());
    for record in records {
        frame.extend_from_slice(&(record.partition_key.len() as u16).to_le_bytes());
        frame.extend_from_slice(record.partition_key.as_bytes());
        match record.explicit_hash_key {
            Some(key) => {
                frame.push(1);
                frame.extend_from_slice(&key.to_le_bytes());
            }
            None => frame.push(0),
        }
        frame.extend_from_slice(&(record.data.len() as u32).to_le_bytes());
        frame.extend_from_slice(&record.data);
    }
    frame
}

/// Stamps the first offset and timestamp into an encoded frame and checksums it.
pub fn seal_frame(frame: &mut [u8], first_offset: u64, timestamp_ms: i64) {
    let body_start = FRAME_HEADER_LEN;
    frame[body_start + 1..body_start + 9].copy_from_slice(&first_offset.to_le_bytes());
    frame[body_start + 9..body_start + 17].copy_from_slice(&timestamp_ms.to_le_bytes());
    let body_len = (frame.len() - FRAME_HEADER_LEN) as u32;
    let crc = crc32c::crc32c(&frame[FRAME_HEADER_LEN..]);
    frame[0..4].copy_from_slice(&body_len.to_le_bytes());
    frame[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// What the header of a checked frame says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameInfo {
    pub first_offset: u64,
    pub timestamp_ms: i64,
    pub count: u32,
    /// Header plus body.
    pub len: usize,
}

/// Reads the length of the frame starting at `bytes`, if its header is there.
pub fn frame_len(bytes: &[u8]) -> Option<usize> {
    let header = bytes.get(0..FRAME_HEADER_LEN)?;
    let body_len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    Some(FRAME_HEADER_LEN + body_len)
}

/// Checks one whole frame (`bytes` is exactly the frame) and reads its header.
pub fn check_frame(bytes: &[u8]) -> Result<FrameInfo, CorruptFrame> {
    if bytes.len() < FRAME_HEADER_LEN + BODY_HEADER_LEN {
        return Err(CorruptFrame::Truncated);
    }
    let expected_crc = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    let body = &bytes[FRAME_HEADER_LEN..];
    if crc32c::crc32c(body) != expected_crc {
        return Err(CorruptFrame::Checksum);
    }
    if body[0] != FORMAT_VERSION {
        return Err(CorruptFrame::Version(body[0]));
    }
    let first_offset =
        u64::from_le_bytes(body[1..9].try_into().map_err(|_| CorruptFrame::Truncated)?);
    let timestamp_ms = i64::from_le_bytes(
        body[9..17]
            .try_into()
            .map_err(|_| CorruptFrame::Truncated)?,
    );
    let count = u32::from_le_bytes(
        body[17..21]
            .try_into()
            .map_err(|_| CorruptFrame::Truncated)?,
    );
    Ok(FrameInfo {
        first_offset,
        timestamp_ms,
        count,
        len: bytes.len(),
    })
}

/// Decodes the records of a checked frame, skipping those before `from_offset`
/// and stopping before `end_offset`.
pub fn decode_records(
    frame: &[u8],
    info: &FrameInfo,
    from_offset: u64,
    end_offset: u64,
    out: &mut Vec<StoredRecord>,
    max_records: usize,
) -> Result<(), CorruptFrame> {
    let mut cursor = FRAME_HEADER_LEN + BODY_HEADER_LEN;
    for i in 0..u64::from(info.count) {
        let offset = info.first_offset + i;
        if offset >= end_offset || out.len() >= max_records {
            return Ok(());
        }
        let key_len = read_u16(frame, &mut cursor)? as usize;
        let key = take(frame, &mut cursor, key_len)?;
        let has_hash_key = take(frame, &mut cursor, 1)?[0] == 1;
        let explicit_hash_key = if has_hash_key {
            let raw = take(frame, &mut cursor, 16)?;
            Some(u128::from_le_bytes(
                raw.try_into().map_err(|_| CorruptFrame::Truncated)?,
            ))
        } else {
            None
        };
        let data_len = read_u32(frame, &mut cursor)? as usize;
        let data = take(frame, &mut cursor, data_len)?;
        if offset < from_offset {
            continue;
        }
        out.push(StoredRecord {
            offset,
            timestamp_ms: info.timestamp_ms,
            partition_key: String::from_utf8(key.to_vec()).map_err(|_| CorruptFrame::Key)?,
            explicit_hash_key,
            data: data.to_vec(),
        });
    }
    Ok(())
}

fn take<'a>(bytes: &'a [u8], cursor: &mut usize, len: usize) -> Result<&'a [u8], CorruptFrame> {
    let slice = bytes
        .get(*cursor..*cursor + len)
        .ok_or(CorruptFrame::Truncated)?;
    *cursor += len;
    Ok(slice)
}

fn read_u16(bytes: &[u8], cursor: &mut usize) -> Result<u16, CorruptFrame> {
    let raw = take(bytes, cursor, 2)?;
    Ok(u16::from_le_bytes([raw[0], raw[1]]))
}

fn read_u32(bytes: &[u8], cursor: &mut usize) -> Result<u32, CorruptFrame> {
    let raw = take(bytes, cursor, 4)?;
    Ok(u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &str, data: &[u8], hash: Option<u128>) -> NewRecord {
        NewRecord {
            partition_key: key.to_string(),
            explicit_hash_key: hash,
            data: data.to_vec(),
        }
    }

    #[test]
    fn a_sealed_frame_decodes_to_its_records() {
        let records = vec![record("a", b"one", None), record("bb", b"", Some(7))];
        let mut frame = encode_frame(&records);
        seal_frame(&mut frame, 10, 1234);
        assert_eq!(frame_len(&frame), Some(frame.len()));
        let info = check_frame(&frame).expect("valid");
        assert_eq!(
            (info.first_offset, info.timestamp_ms, info.count),
            (10, 1234, 2)
        );
        let mut out = Vec::new();
        decode_records(&frame, &info, 0, u64::MAX, &mut out, usize::MAX).expect("decodes");
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].offset, 11);
        assert_eq!(out[1].explicit_hash_key, Some(7));
        assert_eq!(out[0].data, b"one");
    }

    #[test]
    fn any_flipped_bit_fails_the_checksum() {
        let mut frame = encode_frame(&[record("key", b"payload", None)]);
        seal_frame(&mut frame, 0, 0);
        for byte in FRAME_HEADER_LEN..frame.len() {
            let mut damaged = frame.clone();
            damaged[byte] ^= 0x10;
            assert!(check_frame(&damaged).is_err(), "byte {byte}");
        }
    }

    #[test]
    fn decoding_honours_the_offset_window() {
        let records: Vec<_> = (0..5).map(|i| record("k", &[i], None)).collect();
        let mut frame = encode_frame(&records);
        seal_frame(&mut frame, 100, 0);
        let info = check_frame(&frame).expect("valid");
        let mut out = Vec::new();
        decode_records(&frame, &info, 102, 104, &mut out, usize::MAX).expect("decodes");
        assert_eq!(
            out.iter().map(|r| r.offset).collect::<Vec<_>>(),
            vec![102, 103]
        );
    }
}
