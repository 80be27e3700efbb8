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
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (any::<u8>(), 1..20u8, 0..600u16).prop_map(|(shard_key, records, size)| Op::Append { shard_key, records, size }),
        1 => Just(Op::Reopen),
        1 => (1..64u8).prop_map(|bytes| Op::Tear { bytes }),
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
