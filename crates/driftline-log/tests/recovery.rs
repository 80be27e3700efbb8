//! Recovery properties: whatever the tail of a shard looks like after a crash,
//! reopening yields exactly the acknowledged records, in order.

use driftline_log::{
    Durability, LogConfig, LogStore, NewRecord, ShardLog, ShardOptions, StreamSpec,
};
use proptest::prelude::*;

fn options() -> ShardOptions {
    ShardOptions {
        durability: Durability::Fsync,
        segment_bytes: 1 << 20,
    }
}

fn record(key: &str, data: Vec<u8>) -> NewRecord {
    NewRecord {
        partition_key: key.to_string(),
        explicit_hash_key: None,
        data,
    }
}

#[test]
fn a_crash_at_every_byte_of_the_tail_recovers_exactly_the_acknowledged_prefix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shard_dir = dir.path().join("shard");
    // ends[i] = bytes of frames once batch i was acknowledged; counts[i] = records so far
    let mut ends = vec![0u64];
    let mut counts = vec![0u64];
    {
        let (shard, _) = ShardLog::open(&shard_dir, options()).expect("open");
        for batch in 0..6u8 {
            let records: Vec<_> = (0..=batch)
                // no zero bytes at a frame's end: a cut there would equal the zeros ahead
                .map(|i| record("k", vec![batch + 1; usize::from(i) * 7 + 1]))
                .collect();
            shard.append(&records, 10).expect("append");
            ends.push(shard.size_bytes());
            counts.push(counts.last().copied().unwrap_or(0) + records.len() as u64);
        }
    }
    let file = std::fs::read(driftline_log::segment::segment_path(&shard_dir, 0)).expect("read");
    let frames = &file[..ends[ends.len() - 1] as usize];
    assert!(
        file[frames.len()..].iter().all(|b| *b == 0),
        "past the frames a durable segment holds only zeros written ahead"
    );
    // Two shapes of crash: the file ends where the write stopped (it was
    // growing), or the write stopped inside zeros written ahead.
    for zeros_after in [0usize, 4096] {
        for cut in 0..=frames.len() {
            let crashed = dir.path().join(format!("crash-{zeros_after}-{cut}"));
            std::fs::create_dir_all(&crashed).expect("mkdir");
            let mut bytes = frames[..cut].to_vec();
            bytes.resize(cut + zeros_after, 0);
            std::fs::write(driftline_log::segment::segment_path(&crashed, 0), &bytes)
                .expect("write");
            let (shard, report) = ShardLog::open(&crashed, options()).expect("reopen");
            let whole_batches = ends
                .iter()
                .rposition(|end| *end <= cut as u64)
                .expect("some prefix");
            let expected = counts[whole_batches];
            assert_eq!(shard.end_offset(), expected, "cut at byte {cut}");
            let torn = cut as u64 - ends[whole_batches];
            let cut_bytes = if torn == 0 {
                0
            } else {
                torn + zeros_after as u64
            };
            assert_eq!(report.truncated_bytes, cut_bytes, "cut at byte {cut}");
            let records = shard.read(0, 1000, usize::MAX).expect("read").records;
            assert_eq!(records.len() as u64, expected);
            assert!(records
                .iter()
                .enumerate()
                .all(|(i, r)| r.offset == i as u64));
            // the log accepts appends again after recovery
            assert_eq!(
                shard
                    .append(&[record("k", vec![1])], 11)
                    .expect("append")
                    .first_offset,
                expected
            );
            std::fs::remove_dir_all(&crashed).expect("cleanup");
        }
    }
}

/// Bytes up to the end of the last frame (zeros written ahead follow it).
fn frame_bytes(file: &[u8]) -> usize {
    let mut position = 0;
    while let Some(len) = driftline_log::frame::frame_len(&file[position..]) {
        if len <= driftline_log::frame::FRAME_HEADER_LEN || position + len > file.len() {
            break;
        }
        position += len;
    }
    position
}

#[test]
fn garbage_after_the_last_frame_is_cut_not_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (shard, _) = ShardLog::open(dir.path(), options()).expect("open");
        shard
            .append(&[record("a", b"one".to_vec())], 1)
            .expect("append");
    }
    let path = driftline_log::segment::segment_path(dir.path(), 0);
    let mut bytes = std::fs::read(&path).expect("read");
    let valid = frame_bytes(&bytes);
    bytes.truncate(valid);
    bytes.extend(std::iter::repeat_n(0xAB, 100));
    std::fs::write(&path, &bytes).expect("write");
    let (shard, report) = ShardLog::open(dir.path(), options()).expect("reopen");
    assert_eq!(report.truncated_bytes, 100);
    assert_eq!(std::fs::metadata(&path).expect("stat").len(), valid as u64);
    assert_eq!(shard.end_offset(), 1);
}

#[test]
fn a_damaged_sealed_segment_refuses_to_open_instead_of_dropping_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let small = ShardOptions {
        durability: Durability::Fsync,
        segment_bytes: 128,
    };
    {
        let (shard, _) = ShardLog::open(dir.path(), small.clone()).expect("open");
        for i in 0..10 {
            shard
                .append(&[record("k", vec![i; 40])], 1)
                .expect("append");
        }
    }
    let first = driftline_log::segment::segment_path(dir.path(), 0);
    let mut bytes = std::fs::read(&first).expect("read");
    bytes[20] ^= 0xFF;
    std::fs::write(&first, &bytes).expect("write");
    std::fs::remove_file(first.with_extension("idx")).expect("rm idx");
    let error = ShardLog::open(dir.path(), small).err().expect("refused");
    assert!(error.to_string().contains("corrupt segment"), "{error}");
}

#[derive(Clone, Debug)]
enum Op {
    Append {
        shard_key: u8,
        records: u8,
        size: u16,
    },
    Reopen,
    Tear {
        bytes: u8,
    },
    /// A crash that loses every segment write since the store was opened
    /// (or since the segment was created), as a lost page cache would.
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (any::<u8>(), 1..20u8, 0..600u16).prop_map(|(shard_key, records, size)| Op::Append { shard_key, records, size }),
        1 => Just(Op::Reopen),
        1 => (1..64u8).prop_map(|bytes| Op::Tear { bytes }),
        1 => Just(Op::Crash),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random appends over several shards, reopens, and torn (unacknowledged)
    /// writes: the store always holds exactly the acknowledged records.
    #[test]
    fn the_store_holds_exactly_the_acknowledged_records(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = LogConfig { segment_bytes: 2048, ..LogConfig::default() };
        let mut store = LogStore::open(dir.path(), config.clone()).expect("open");
        store.create_stream(StreamSpec { name: "s".into(), shard_count: 3, ..StreamSpec::default() }, 0).expect("create");
        let mut model: Vec<(String, Vec<u8>)> = Vec::new();
        let mut serial = 0u32;
        let stream_dir = dir.path().join("streams/s-s");
        let mut durable = active_segments(&stream_dir);
        for op in ops {
            match op {
                Op::Append { shard_key, records, size } => {
                    let batch: Vec<NewRecord> = (0..records).map(|i| {
                        serial += 1;
                        record(&format!("{shard_key}-{i}"), vec![(serial % 251) as u8; usize::from(size) + (serial as usize % 7)])
                    }).collect();
                    let stream = store.stream("s").expect("stream");
                    for (result, r) in stream.put(batch.clone(), i64::from(serial)).into_iter().zip(batch) {
                        result.expect("put");
                        model.push((r.partition_key, r.data));
                    }
                }
                Op::Reopen => {
                    drop(store);
                    store = LogStore::open(dir.path(), config.clone()).expect("reopen");
                    durable = active_segments(&stream_dir);
                }
                Op::Crash => {
                    drop(store);
                    for (path, len) in active_segments(&stream_dir) {
                        let keep = durable.iter().find(|(p, _)| *p == path).map_or(0, |(_, l)| *l);
                        let file = std::fs::OpenOptions::new().write(true).open(&path).expect("open");
                        file.set_len(keep.min(len)).expect("cut");
                    }
                    store = LogStore::open(dir.path(), config.clone()).expect("reopen");
                    durable = active_segments(&stream_dir);
                }
                Op::Tear { bytes } => {
                    // a write that was never acknowledged: junk at the tail of shard 1's active segment
                    drop(store);
                    let shard_dir = dir.path().join("streams/s-s/shards").join(driftline_log::shard_id(1));
                    let mut segments: Vec<_> = std::fs::read_dir(&shard_dir).expect("ls").filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "log")).collect();
                    segments.sort();
                    let last = segments.last().expect("segment").clone();
                    let mut content = std::fs::read(&last).expect("read");
                    content.extend(std::iter::repeat_n(bytes, usize::from(bytes)));
                    std::fs::write(&last, content).expect("write");
                    store = LogStore::open(dir.path(), config.clone()).expect("reopen");
                    durable = active_segments(&stream_dir);
                }
            }
        }
        let stream = store.stream("s").expect("stream");
        let mut stored: Vec<(String, Vec<u8>)> = stream.read_all().expect("read").into_iter().map(|(_, r)| (r.partition_key, r.data)).collect();
        let mut expected = model.clone();
        stored.sort();
        expected.sort();
        prop_assert_eq!(stored, expected);
        // and within each shard, offsets are dense and in order
        for shard in stream.meta().shards {
            let records = stream.read(shard.index, 0, 100_000, usize::MAX).expect("read").records;
            prop_assert!(records.iter().enumerate().all(|(i, r)| r.offset == i as u64));
        }
    }
}

/// Each shard's newest segment and the bytes of its frames: what a crash cannot take back
/// once the store has been opened (opening syncs every segment).
fn active_segments(stream_dir: &std::path::Path) -> Vec<(std::path::PathBuf, u64)> {
    let Ok(shards) = std::fs::read_dir(stream_dir.join("shards")) else {
        return Vec::new();
    };
    let mut active = Vec::new();
    for shard in shards.filter_map(|e| e.ok()) {
        let mut segments: Vec<_> = std::fs::read_dir(shard.path())
            .expect("ls")
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        segments.sort();
        if let Some(last) = segments.pop() {
            let len = frame_bytes(&std::fs::read(&last).expect("read")) as u64;
            active.push((last, len));
        }
    }
    active
}

/// The journal's entries: (end position, records in the entry's frame).
fn journal_entries(bytes: &[u8]) -> Vec<(usize, u64)> {
    let mut entries = Vec::new();
    let mut position = 0;
    while position + 12 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[position..position + 4].try_into().expect("4")) as usize;
        if len == 0 {
            break;
        }
        // entry header 12, frame header 8, then version 1, offset 8, timestamp 8, count 4
        let count_at = position + 12 + 8 + 17;
        let count = u32::from_le_bytes(bytes[count_at..count_at + 4].try_into().expect("4"));
        position += 8 + len;
        entries.push((position, u64::from(count)));
    }
    entries
}

#[test]
fn segments_that_lost_unsynced_writes_are_restored_from_the_journal_cut_anywhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig::default();
    let stream_dir = dir.path().join("streams/s-s");
    {
        let (_store, stream) = store_with_stream(dir.path(), &config, 3);
        for batch in 0..3u8 {
            let records: Vec<_> = (0..12)
                .map(|i| record(&format!("key-{batch}-{i}"), vec![batch + 1; 20 + i]))
                .collect();
            put_acknowledged(&stream, records);
        }
    }
    let mut journals: Vec<_> = std::fs::read_dir(stream_dir.join("journal"))
        .expect("ls")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(journals.len(), 1, "{journals:?}");
    let journal_path = journals.remove(0);
    let journal = std::fs::read(&journal_path).expect("journal");
    let entries = journal_entries(&journal);
    assert_eq!(entries.len(), 9, "one entry per shard per put");
    let full = entries[entries.len() - 1].0;
    let segments = active_segments(&stream_dir);
    let originals: Vec<Vec<u8>> = segments
        .iter()
        .map(|(p, _)| std::fs::read(p).expect("read"))
        .collect();
    let mut cuts: Vec<usize> = (0..=full).step_by(13).collect();
    for (end, _) in &entries {
        cuts.extend([end - 1, *end, end + 1]);
    }
    cuts.retain(|cut| *cut <= full);
    for cut in cuts {
        // the segments lost everything (or kept a torn half); the journal was cut at `cut`
        for (half, ((path, _), original)) in segments.iter().zip(&originals).enumerate() {
            let keep = if half % 2 == 0 { 0 } else { original.len() / 2 };
            std::fs::write(path, &original[..keep]).expect("cut segment");
        }
        for leftover in std::fs::read_dir(stream_dir.join("journal")).expect("ls") {
            std::fs::remove_file(leftover.expect("entry").path()).expect("rm");
        }
        let mut bytes = journal[..cut].to_vec();
        bytes.resize(full + 64, 0);
        std::fs::write(&journal_path, &bytes).expect("cut journal");
        let store = LogStore::open(dir.path(), config.clone()).expect("reopen");
        let stream = store.stream("s").expect("stream");
        let whole: u64 = entries
            .iter()
            .filter(|(end, _)| *end <= cut)
            .map(|(_, n)| n)
            .sum();
        let held = stream.read_all().expect("read").len() as u64;
        // A torn half of a segment can hold frames the journal lost; never fewer than the journal's.
        assert!(
            held >= whole,
            "cut {cut}: {held} records, the journal held {whole}"
        );
        if cut == full {
            assert_eq!(held, 36, "every acknowledged record");
        }
        for shard in stream.meta().shards {
            let records = stream
                .read(shard.index, 0, 1000, usize::MAX)
                .expect("read")
                .records;
            assert!(
                records
                    .iter()
                    .enumerate()
                    .all(|(i, r)| r.offset == i as u64),
                "cut {cut}"
            );
        }
        drop(stream);
        drop(store);
    }
}

#[test]
fn a_full_journal_file_is_retired_once_the_segments_are_synced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        journal_bytes: 4096,
        ..LogConfig::default()
    };
    let (store, stream) = store_with_stream(dir.path(), &config, 2);
    for batch in 0..40u32 {
        let records: Vec<_> = (0..4)
            .map(|i| record(&format!("k{batch}-{i}"), vec![7; 200]))
            .collect();
        put_acknowledged(&stream, records);
    }
    drop(stream);
    // checkpoints run on their own thread, one at a time
    let journal_dir = dir.path().join("streams/s-s/journal");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut files = usize::MAX;
    while std::time::Instant::now() < deadline {
        files = std::fs::read_dir(&journal_dir).expect("ls").count();
        if files == 1 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(
        files, 1,
        "sealed journal files are deleted after a checkpoint"
    );
    drop(store);
    let store = LogStore::open(dir.path(), config).expect("reopen");
    assert_eq!(
        store
            .stream("s")
            .expect("stream")
            .read_all()
            .expect("read")
            .len(),
        160
    );
}

#[test]
fn a_store_written_in_fsync_mode_and_opened_in_os_mode_still_replays_its_journal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stream_dir = dir.path().join("streams/s-s");
    {
        let (_store, stream) = store_with_stream(dir.path(), &LogConfig::default(), 2);
        let records: Vec<_> = (0..20)
            .map(|i| record(&format!("k{i}"), vec![3; 50]))
            .collect();
        put_acknowledged(&stream, records);
    }
    // a power loss took the segments' unsynced writes; the journal kept them
    for (path, _) in active_segments(&stream_dir) {
        std::fs::write(&path, b"").expect("cut");
    }
    let os = LogConfig {
        durability: Durability::Os,
        ..LogConfig::default()
    };
    let store = LogStore::open(dir.path(), os).expect("reopen");
    assert_eq!(
        store
            .stream("s")
            .expect("stream")
            .read_all()
            .expect("read")
            .len(),
        20
    );
}

/// A store in `dir` holding stream `s` of `shards` shards.
fn store_with_stream(
    dir: &std::path::Path,
    config: &LogConfig,
    shards: u32,
) -> (LogStore, std::sync::Arc<driftline_log::Stream>) {
    let store = LogStore::open(dir, config.clone()).expect("open");
    let stream = store
        .create_stream(
            StreamSpec {
                name: "s".into(),
                shard_count: shards,
                ..StreamSpec::default()
            },
            0,
        )
        .expect("create");
    (store, stream)
}

/// Puts `records`, each of which must be acknowledged.
fn put_acknowledged(stream: &driftline_log::Stream, records: Vec<NewRecord>) {
    for result in stream.put(records, 1) {
        result.expect("acknowledged");
    }
}
