//! Streams through the library API: routing, resharding across reopen, checkpoints.

use driftline_log::{
    partition_key_hash, LogConfig, LogError, LogStore, NewRecord, SequenceNumber, StreamSpec,
};

fn spec(name: &str, shards: u32) -> StreamSpec {
    StreamSpec {
        name: name.into(),
        shard_count: shards,
        ..StreamSpec::default()
    }
}

fn record(key: &str) -> NewRecord {
    NewRecord {
        partition_key: key.into(),
        explicit_hash_key: None,
        data: key.as_bytes().to_vec(),
    }
}

#[test]
fn keys_route_to_the_shard_whose_range_holds_their_md5() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LogStore::open(dir.path(), LogConfig::default()).expect("open");
    let stream = store.create_stream(spec("s", 4), 0).expect("create");
    for i in 0..100 {
        let key = format!("key-{i}");
        let shard = stream.route(&key, None).expect("route");
        let range = stream.meta().shard(shard).expect("shard").hash_range;
        assert!(range.contains(partition_key_hash(&key)));
    }
    assert_eq!(stream.route("whatever", Some(0)).expect("route"), 0);
    assert_eq!(stream.route("whatever", Some(u128::MAX)).expect("route"), 3);
}

#[test]
fn a_split_survives_reopen_and_routes_new_records_to_the_children() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = LogStore::open(dir.path(), LogConfig::default()).expect("open");
        let stream = store.create_stream(spec("s", 1), 0).expect("create");
        stream.put(vec![record("a")], 1).remove(0).expect("put");
        let (low, high) = stream.split_shard(0, 1u128 << 127, 2).expect("split");
        assert_eq!((low, high), (1, 2));
        let position = stream.put(vec![record("a")], 3).remove(0).expect("put");
        assert!(position.shard_index == 1 || position.shard_index == 2);
        assert!(matches!(
            stream.split_shard(0, 5, 4),
            Err(LogError::ShardClosed { .. })
        ));
    }
    let store = LogStore::open(dir.path(), LogConfig::default()).expect("reopen");
    let stream = store.stream("s").expect("stream");
    let meta = stream.meta();
    assert_eq!(meta.shards.len(), 3);
    assert!(!meta.shards[0].is_open());
    assert_eq!(meta.children_of(0).len(), 2);
    assert_eq!(stream.read_all().expect("read").len(), 2);
    assert!(stream.shard(0).expect("parent").is_closed());
}

#[test]
fn merge_requires_adjacent_open_shards() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LogStore::open(dir.path(), LogConfig::default()).expect("open");
    let stream = store.create_stream(spec("s", 3), 0).expect("create");
    assert!(matches!(
        stream.merge_shards(0, 2, 1),
        Err(LogError::InvalidArgument(_))
    ));
    let child = stream.merge_shards(1, 2, 1).expect("merge");
    let meta = stream.meta();
    let merged = meta.shard(child).expect("child");
    assert_eq!(merged.parents, vec![1, 2]);
    assert_eq!(merged.hash_range.end, u128::MAX);
}

#[test]
fn uniform_scaling_replaces_open_shards_within_half_and_double() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LogStore::open(dir.path(), LogConfig::default()).expect("open");
    let stream = store.create_stream(spec("s", 2), 0).expect("create");
    assert!(stream.update_shard_count(5, 1).is_err());
    assert_eq!(stream.update_shard_count(3, 1).expect("scale"), 2);
    let meta = stream.meta();
    let open: Vec<_> = meta.open_shards().collect();
    assert_eq!(open.len(), 3);
    // the middle new shard overlaps both old ones
    assert_eq!(open[1].parents, vec![0, 1]);
}

#[test]
fn checkpoints_are_durable_per_consumer_and_shard() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = LogStore::open(dir.path(), LogConfig::default()).expect("open");
        let stream = store.create_stream(spec("s", 2), 0).expect("create");
        stream
            .checkpoint("lake", 1, SequenceNumber::new(1, 41))
            .expect("checkpoint");
        stream
            .checkpoint("lake", 0, SequenceNumber::new(0, 7))
            .expect("checkpoint");
        stream
            .checkpoint("lake", 1, SequenceNumber::new(1, 42))
            .expect("move on");
        assert!(matches!(
            stream.checkpoint("lake", 0, SequenceNumber::new(1, 1)),
            Err(LogError::InvalidArgument(_))
        ));
        assert!(matches!(
            stream.checkpoint("../escape", 0, SequenceNumber::new(0, 1)),
            Err(LogError::InvalidArgument(_))
        ));
        assert!(matches!(
            stream.checkpoint("lake", 9, SequenceNumber::new(9, 1)),
            Err(LogError::ShardNotFound { .. })
        ));
    }
    let store = LogStore::open(dir.path(), LogConfig::default()).expect("reopen");
    let stream = store.stream("s").expect("stream");
    let positions = stream.checkpoints("lake").expect("checkpoints");
    assert_eq!(positions.get(&0), Some(&SequenceNumber::new(0, 7)));
    assert_eq!(positions.get(&1), Some(&SequenceNumber::new(1, 42)));
    assert!(stream.checkpoints("other").expect("empty").is_empty());
    assert_eq!(
        stream.consumers().expect("consumers"),
        vec!["lake".to_string()]
    );
}

#[test]
fn a_deleted_stream_is_gone_after_reopen_and_its_name_is_free() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = LogStore::open(dir.path(), LogConfig::default()).expect("open");
        store.create_stream(spec("s", 1), 0).expect("create");
        assert!(matches!(
            store.create_stream(spec("s", 1), 0),
            Err(LogError::StreamExists(_))
        ));
        store.delete_stream("s").expect("delete");
        assert!(matches!(
            store.delete_stream("s"),
            Err(LogError::StreamNotFound(_))
        ));
    }
    let store = LogStore::open(dir.path(), LogConfig::default()).expect("reopen");
    assert!(store.stream_names().is_empty());
    store.create_stream(spec("s", 2), 5).expect("create again");
    assert!(
        LogStore::open(dir.path(), LogConfig::default()).is_err(),
        "locked"
    );
}
