use super::*;
use crate::frame::NewRecord;

fn options(segment_bytes: u64) -> ShardOptions {
    ShardOptions {
        durability: Durability::Fsync,
        segment_bytes,
    }
}

fn rec(i: u32) -> NewRecord {
    NewRecord {
        partition_key: format!("key-{i}"),
        explicit_hash_key: None,
        data: format!("payload {i}").into_bytes(),
    }
}

#[test]
fn appended_records_read_back_in_order_across_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (shard, _) = ShardLog::open(dir.path(), options(512)).expect("open");
    for i in 0..100 {
        let outcome = shard
            .append(&[rec(i)], 1000 + i64::from(i))
            .expect("append");
        assert_eq!(outcome.first_offset, u64::from(i));
    }
    assert!(shard.segment_count() > 3, "segments roll by size");
    let all = shard.read(0, 1000, usize::MAX).expect("read");
    assert_eq!(all.records.len(), 100);
    assert_eq!(all.next_offset, 100);
    for (i, record) in all.records.iter().enumerate() {
        assert_eq!(record.offset, i as u64);
        assert_eq!(record.data, format!("payload {i}").into_bytes());
    }
    let middle = shard.read(37, 5, usize::MAX).expect("read");
    assert_eq!(
        middle.records.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![37, 38, 39, 40, 41]
    );
}

#[test]
fn reopening_keeps_every_record_and_the_next_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (shard, _) = ShardLog::open(dir.path(), options(300)).expect("open");
        for i in 0..20 {
            shard.append(&[rec(i), rec(i + 100)], 5).expect("append");
        }
    }
    let (shard, report) = ShardLog::open(dir.path(), options(300)).expect("reopen");
    assert_eq!(report.records, 40);
    assert_eq!(report.truncated_bytes, 0);
    assert_eq!(shard.end_offset(), 40);
    assert_eq!(shard.append(&[rec(1)], 6).expect("append").first_offset, 40);
}

#[test]
fn a_torn_tail_is_cut_and_earlier_records_survive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let valid = {
        let (shard, _) = ShardLog::open(dir.path(), options(1 << 20)).expect("open");
        for i in 0..3 {
            shard.append(&[rec(i)], 1).expect("append");
        }
        shard.size_bytes() as usize
    };
    let segment = crate::segment::segment_path(dir.path(), 0);
    let mut bytes = std::fs::read(&segment).expect("read");
    // a frame header and two bytes of its body written over the zeros ahead
    bytes[valid..valid + 6].copy_from_slice(&[0x20, 0, 0, 0, 1, 2]);
    let on_disk = bytes.len() as u64;
    std::fs::write(&segment, &bytes).expect("write");
    let (shard, report) = ShardLog::open(dir.path(), options(1 << 20)).expect("reopen");
    assert_eq!(report.truncated_bytes, on_disk - valid as u64);
    assert_eq!(
        std::fs::metadata(&segment).expect("stat").len(),
        valid as u64
    );
    assert_eq!(
        shard.read(0, 10, usize::MAX).expect("read").records.len(),
        3
    );
}

#[test]
fn zeros_written_ahead_are_not_a_torn_tail_and_sealed_segments_hold_only_frames() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (shard, _) = ShardLog::open(dir.path(), options(1 << 20)).expect("open");
        shard.append(&[rec(0), rec(1)], 1).expect("append");
    }
    let first = crate::segment::segment_path(dir.path(), 0);
    assert_eq!(std::fs::metadata(&first).expect("stat").len(), 1 << 20);
    let (shard, report) = ShardLog::open(dir.path(), options(1 << 20)).expect("reopen");
    assert_eq!(report.truncated_bytes, 0);
    assert_eq!(report.records, 2);
    let big = NewRecord {
        partition_key: "k".into(),
        explicit_hash_key: None,
        data: vec![7; 1 << 20],
    };
    shard.append(&[big], 2).expect("append");
    assert_eq!(shard.segment_count(), 2);
    let sealed_len = std::fs::metadata(&first).expect("stat").len();
    assert!(
        sealed_len < 200,
        "sealed at its frames' size, was {sealed_len}"
    );
    let records = shard.read(0, 10, usize::MAX).expect("read").records;
    assert_eq!(records.len(), 3);
    assert_eq!(records[2].data.len(), 1 << 20);
}

#[test]
fn timestamps_find_the_first_record_at_or_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (shard, _) = ShardLog::open(dir.path(), options(256)).expect("open");
    for i in 0..50 {
        shard
            .append(&[rec(i)], 1000 + 10 * i64::from(i))
            .expect("append");
    }
    assert_eq!(shard.offset_at_timestamp(0).expect("lookup"), 0);
    assert_eq!(shard.offset_at_timestamp(1005).expect("lookup"), 1);
    assert_eq!(shard.offset_at_timestamp(1250).expect("lookup"), 25);
    assert_eq!(shard.offset_at_timestamp(99_999).expect("lookup"), 50);
}

#[test]
fn arrival_timestamps_never_go_backwards() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (shard, _) = ShardLog::open(dir.path(), options(1 << 20)).expect("open");
    shard.append(&[rec(0)], 2000).expect("append");
    let outcome = shard.append(&[rec(1)], 1000).expect("append");
    assert_eq!(outcome.timestamp_ms, 2000);
}

#[test]
fn retention_deletes_whole_expired_segments_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (shard, _) = ShardLog::open(dir.path(), options(200)).expect("open");
    for i in 0..30 {
        shard
            .append(&[rec(i)], 1000 * i64::from(i))
            .expect("append");
    }
    let before = shard.segment_count();
    let removed = shard
        .enforce_retention(30_000, 15_000, None)
        .expect("retention");
    assert!(removed > 0);
    assert_eq!(shard.segment_count(), before - removed);
    let left = shard.read(0, 100, usize::MAX).expect("read").records;
    assert!(left.iter().all(|r| r.offset >= shard.trim_horizon()));
    assert!(left.iter().any(|r| r.timestamp_ms >= 15_000));
    assert_eq!(left.last().map(|r| r.offset), Some(29));
    // every record at or after the cutoff is still there
    assert!(left.first().is_some_and(|r| r.timestamp_ms <= 15_000));
}

#[test]
fn retention_by_size_keeps_the_newest_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (shard, _) = ShardLog::open(dir.path(), options(200)).expect("open");
    for i in 0..40 {
        shard.append(&[rec(i)], 1).expect("append");
    }
    shard
        .enforce_retention(2, 1_000_000, Some(600))
        .expect("retention");
    assert!(shard.size_bytes() <= 600 + 200);
    assert_eq!(
        shard
            .read(0, 100, usize::MAX)
            .expect("read")
            .records
            .last()
            .map(|r| r.offset),
        Some(39)
    );
}

#[test]
fn a_closed_shard_refuses_appends_and_reports_its_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (shard, _) = ShardLog::open(dir.path(), options(1 << 20)).expect("open");
    shard.append(&[rec(0)], 1).expect("append");
    assert!(!shard.is_finished_at(1));
    shard.close();
    assert!(matches!(
        shard.append(&[rec(1)], 1),
        Err(LogError::ShardClosed { .. })
    ));
    assert!(shard.is_finished_at(1));
    assert!(!shard.is_finished_at(0));
}

#[test]
fn concurrent_writers_share_fsyncs_and_lose_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (shard, _) = ShardLog::open(dir.path(), options(1 << 16)).expect("open");
    let shard = std::sync::Arc::new(shard);
    std::thread::scope(|scope| {
        for t in 0..8 {
            let shard = shard.clone();
            scope.spawn(move || {
                for i in 0..50 {
                    shard.append(&[rec(t * 1000 + i)], 1).expect("append");
                }
            });
        }
    });
    let records = shard.read(0, 10_000, usize::MAX).expect("read").records;
    assert_eq!(records.len(), 400);
    let mut keys: Vec<_> = records.iter().map(|r| r.partition_key.clone()).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 400);
}
