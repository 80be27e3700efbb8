//! The deployment package of `driftline-lambda`: a zip with the function as
//! `bootstrap` (executable, as the `provided.al2023` runtime wants it) and the
//! pipeline as `pipeline.toml`. Written here with flate2 (already a
//! dependency) rather than a zip crate: two deflated entries and a central
//! directory are all a Lambda package needs.

use std::io::Write;

use flate2::write::DeflateEncoder;
use flate2::Compression;

struct Entry {
    name: String,
    mode: u32,
    crc: u32,
    size: u32,
    compressed: Vec<u8>,
    offset: u32,
}

/// A zip archive of `(name, unix mode, bytes)` files, deflated.
pub fn zip(files: &[(&str, u32, &[u8])]) -> std::io::Result<Vec<u8>> {
    let too_big =
        || std::io::Error::other("a file of over 4 GiB needs zip64, which this writer does not do");
    let mut out = Vec::new();
    let mut entries = Vec::new();
    // 1980-01-01 00:00, the earliest time zip can hold: packages build alike.
    let (time, date): (u16, u16) = (0, (1 << 5) | 1);
    for (name, mode, bytes) in files {
        let mut encoder = DeflateEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(bytes)?;
        let compressed = encoder.finish()?;
        let entry = Entry {
            name: name.to_string(),
            mode: *mode,
            crc: crc32fast::hash(bytes),
            size: u32::try_from(bytes.len()).map_err(|_| too_big())?,
            offset: u32::try_from(out.len()).map_err(|_| too_big())?,
            compressed,
        };
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&20u16.to_le_bytes()); // version needed
        out.extend_from_slice(&0u16.to_le_bytes()); // flags
        out.extend_from_slice(&8u16.to_le_bytes()); // deflate
        out.extend_from_slice(&time.to_le_bytes());
        out.extend_from_slice(&date.to_le_bytes());
        out.extend_from_slice(&entry.crc.to_le_bytes());
        let compressed_size = u32::try_from(entry.compressed.len()).map_err(|_| too_big())?;
        out.extend_from_slice(&compressed_size.to_le_bytes());
        out.extend_from_slice(&entry.size.to_le_bytes());
        out.extend_from_slice(&(entry.name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // extra
        out.extend_from_slice(entry.name.as_bytes());
        out.extend_from_slice(&entry.compressed);
        entries.push(entry);
    }
    let directory = out.len();
    for entry in &entries {
        out.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        out.extend_from_slice(&((3u16 << 8) | 20).to_le_bytes()); // made by: Unix
        out.extend_from_slice(&20u16.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&8u16.to_le_bytes());
        out.extend_from_slice(&time.to_le_bytes());
        out.extend_from_slice(&date.to_le_bytes());
        out.extend_from_slice(&entry.crc.to_le_bytes());
        out.extend_from_slice(&(entry.compressed.len() as u32).to_le_bytes());
        out.extend_from_slice(&entry.size.to_le_bytes());
        out.extend_from_slice(&(entry.name.len() as u16).to_le_bytes());
        out.extend_from_slice(&[0; 8]); // extra, comment, disk, internal attributes
        out.extend_from_slice(&((0o100_000 | entry.mode) << 16).to_le_bytes());
        out.extend_from_slice(&entry.offset.to_le_bytes());
        out.extend_from_slice(entry.name.as_bytes());
    }
    let directory_size = out.len() - directory;
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]); // this disk, the directory's disk
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(u32::try_from(directory_size).map_err(|_| too_big())?).to_le_bytes());
    out.extend_from_slice(&(u32::try_from(directory).map_err(|_| too_big())?).to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    Ok(out)
}
