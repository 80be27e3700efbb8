//! The event-source mapping through its public interface, on a real log and
//! a real lake directory: Lambda's failure rules, the parallelization factor,
//! resharding, record age and the object-created bus.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use driftline_lake::{Compression, Lake};
use driftline_log::{Durability, LogConfig, LogStore, NewRecord, Stream, StreamSpec};
use driftline_pipeline::mapping::Delivery;
use driftline_pipeline::{
    run_mapping, Event, Mapping, MappingStats, Outcome, PipelineConfig, Processor, SchemaProcessor,
};

const PIPELINE: &str = r#"
[[stream]]
name = "src"
[[stream]]
name = "dlq"
[[schema]]
name = "s"
fields = [{ name = "id", type = "string" }]
[[processor]]
name = "p"
stream = "src"
schema = "s"
on_failure = "dlq"
batch_size = 50
maximum_batching_window_ms = 10
maximum_retry_attempts = 1
"#;

struct Setup {
    _dir: tempfile::TempDir,
    store: LogStore,
    lake: Lake,
    config: PipelineConfig,
}

fn setup(shards: u32, extra: &str) -> Setup {
    let dir = tempfile::tempdir().expect("dir");
    let store = LogStore::open(
        &dir.path().join("data"),
        LogConfig {
            durability: Durability::Os,
            ..LogConfig::default()
        },
    )
    .expect("store");
    for (name, shard_count) in [("src", shards), ("dlq", 1)] {
        let spec = StreamSpec {
            name: name.into(),
            shard_count,
            ..StreamSpec::default()
        };
        store
            .create_stream(spec, driftline_log::now_ms())
            .expect("stream");
    }
    let text = format!("{PIPELINE}{extra}\n[lake]\nmax_buffer_seconds = 1\n");
    let config = PipelineConfig::parse(&text, Path::new("test.toml")).expect("config");
    let lake = Lake::open(dir.path().join("lake").to_str().expect("utf-8")).expect("lake");
    Setup {
        _dir: dir,
        store,
        lake,
        config,
    }
}

fn put(stream: &Stream, ids: impl IntoIterator<Item = (String, String)>, now_ms: i64) {
    let records = ids
        .into_iter()
        .map(|(key, id)| NewRecord {
            partition_key: key,
            explicit_hash_key: None,
            data: format!("{{\"id\":\"{id}\"}}").into_bytes(),
        })
        .collect();
    for result in stream.put(records, now_ms) {
        result.expect("put");
    }
}

/// Runs the mapping until `done` says so (or 30 s), then stops it.
fn run(
    setup: &Setup,
    processor: Arc<dyn Processor>,
    done: impl Fn(&MappingStats) -> bool,
) -> Arc<MappingStats> {
    run_with_bus(setup, processor, done).0
}

fn run_with_bus(
    setup: &Setup,
    processor: Arc<dyn Processor>,
    done: impl Fn(&MappingStats) -> bool,
) -> (Arc<MappingStats>, usize) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let stats = Arc::new(MappingStats::default());
    let config = setup.config.processors[0].clone();
    let schema = setup
        .config
        .schema("s")
        .expect("schema")
        .table_schema()
        .expect("schema");
    let (bus, mut announcements) = tokio::sync::broadcast::channel(1024);
    let mapping = Mapping {
        stream: setup.store.stream("src").expect("src"),
        dead_letters: Some(setup.store.stream("dlq").expect("dlq")),
        processor,
        config,
        delivery: Delivery {
            lake: setup.lake.clone(),
            table: "t".into(),
            schema,
            compression: Compression::Zstd,
            max_buffer: Duration::from_millis(200),
            max_buffer_bytes: 1 << 20,
            bus: Some(bus),
        },
        stats: stats.clone(),
    };
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let announced = runtime.block_on(async {
        let task = tokio::spawn(run_mapping(mapping, stop_rx));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done(&stats) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.send(true).expect("stop");
        task.await.expect("join").expect("mapping");
        let mut announced = 0;
        while announcements.try_recv().is_ok() {
            announced += 1;
        }
        announced
    });
    (stats, announced)
}

fn dead_letters(setup: &Setup) -> Vec<serde_json::Value> {
    let stream = setup.store.stream("dlq").expect("dlq");
    stream
        .read_all()
        .expect("read")
        .into_iter()
        .map(|(_, r)| serde_json::from_slice(&r.data).expect("json"))
        .collect()
}

fn schema_processor(setup: &Setup) -> SchemaProcessor {
    SchemaProcessor::new(
        setup
            .config
            .schema("s")
            .expect("schema")
            .table_schema()
            .expect("schema"),
    )
}

/// Fails any batch holding a "poison" record, as a Lambda function that throws.
struct Poisoned {
    inner: SchemaProcessor,
    calls: AtomicUsize,
}

impl Processor for Poisoned {
    fn process(&self, batch: &[Event]) -> Result<Outcome, String> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if batch
            .iter()
            .any(|e| e.data.windows(6).any(|w| w == b"poison"))
        {
            return Err("poison in batch".into());
        }
        self.inner.process(batch)
    }
}

#[test]
fn bisect_isolates_the_records_that_fail_a_batch_and_the_rest_land() {
    let setup = setup(1, "bisect_batch_on_error = true");
    let ids = (0..200).map(|i| {
        let id = if [17, 101, 102].contains(&i) {
            format!("poison-{i}")
        } else {
            format!("ok-{i}")
        };
        ("k".to_string(), id)
    });
    put(
        &setup.store.stream("src").expect("src"),
        ids,
        driftline_log::now_ms(),
    );
    let processor = Arc::new(Poisoned {
        inner: schema_processor(&setup),
        calls: AtomicUsize::new(0),
    });
    let stats = run(&setup, processor.clone(), |s| {
        s.rows_delivered.load(Ordering::Relaxed) + s.dead_lettered.load(Ordering::Relaxed) >= 200
    });
    assert_eq!(stats.rows_delivered.load(Ordering::Relaxed), 197);
    let letters = dead_letters(&setup);
    let mut ids: Vec<String> = letters
        .iter()
        .map(|l| {
            assert_eq!(l["reason"], "poison in batch");
            assert_eq!(l["stream"], "src");
            l["data"].as_str().expect("data").to_string()
        })
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "{\"id\":\"poison-101\"}",
            "{\"id\":\"poison-102\"}",
            "{\"id\":\"poison-17\"}"
        ]
    );
    assert!(
        processor.calls.load(Ordering::Relaxed) > 8,
        "bisection takes several calls"
    );
}

#[test]
fn without_bisect_a_failing_batch_is_dead_lettered_whole_after_its_retries() {
    let setup = setup(1, "bisect_batch_on_error = false");
    let ids = (0..50).map(|i| {
        (
            "k".to_string(),
            if i == 3 {
                "poison".into()
            } else {
                format!("ok-{i}")
            },
        )
    });
    put(
        &setup.store.stream("src").expect("src"),
        ids,
        driftline_log::now_ms(),
    );
    let processor = Arc::new(Poisoned {
        inner: schema_processor(&setup),
        calls: AtomicUsize::new(0),
    });
    let stats = run(&setup, processor.clone(), |s| {
        s.dead_lettered.load(Ordering::Relaxed) >= 50
    });
    assert_eq!(stats.dead_lettered.load(Ordering::Relaxed), 50);
    assert_eq!(
        processor.calls.load(Ordering::Relaxed),
        2,
        "one call and one retry"
    );
}

/// Fails chosen records on their first attempt only (a partial batch failure).
struct Flaky {
    inner: SchemaProcessor,
    seen: Mutex<BTreeMap<driftline_lake::Position, usize>>,
}

impl Processor for Flaky {
    fn process(&self, batch: &[Event]) -> Result<Outcome, String> {
        let mut outcome = Outcome::default();
        let mut seen = self.seen.lock().expect("lock");
        for (i, event) in batch.iter().enumerate() {
            let attempts = seen.entry(event.sequence_number.clone()).or_insert(0);
            *attempts += 1;
            if event.data.windows(5).any(|w| w == b"flaky") && *attempts == 1 {
                outcome.failed.push((i, "try again".into()));
            } else {
                outcome.rows.push(self.inner.row(event)?);
            }
        }
        Ok(outcome)
    }
}

#[test]
fn a_partial_batch_failure_retries_only_the_failed_records() {
    let setup = setup(1, "");
    let ids = (0..100).map(|i| {
        (
            "k".to_string(),
            if i % 10 == 0 {
                format!("flaky-{i}")
            } else {
                format!("ok-{i}")
            },
        )
    });
    put(
        &setup.store.stream("src").expect("src"),
        ids,
        driftline_log::now_ms(),
    );
    let processor = Arc::new(Flaky {
        inner: schema_processor(&setup),
        seen: Mutex::new(BTreeMap::new()),
    });
    let stats = run(&setup, processor.clone(), |s| {
        s.rows_delivered.load(Ordering::Relaxed) >= 100
    });
    assert_eq!(stats.rows_delivered.load(Ordering::Relaxed), 100);
    assert_eq!(stats.dead_lettered.load(Ordering::Relaxed), 0);
    let seen = processor.seen.lock().expect("lock");
    assert_eq!(
        seen.values().filter(|n| **n == 2).count(),
        10,
        "only the flaky ones ran twice"
    );
    assert!(seen.values().all(|n| *n <= 2));
}

/// Records the order each key's records were processed in, and how many calls overlapped.
struct Recorder {
    order: Mutex<BTreeMap<String, Vec<u128>>>,
    active: AtomicUsize,
    most_active: AtomicUsize,
    inner: SchemaProcessor,
}

impl Processor for Recorder {
    fn process(&self, batch: &[Event]) -> Result<Outcome, String> {
        let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_active.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(20));
        {
            let mut order = self.order.lock().expect("lock");
            for event in batch {
                order
                    .entry(event.partition_key.clone())
                    .or_default()
                    .push(event.sequence_number.to_u128().expect("our log fits u128"));
            }
        }
        self.active.fetch_sub(1, Ordering::SeqCst);
        self.inner.process(batch)
    }
}

fn recorder(setup: &Setup) -> Arc<Recorder> {
    Arc::new(Recorder {
        order: Mutex::new(BTreeMap::new()),
        active: AtomicUsize::new(0),
        most_active: AtomicUsize::new(0),
        inner: schema_processor(setup),
    })
}

#[test]
fn the_parallelization_factor_runs_batches_of_one_shard_at_once_keeping_each_key_in_order() {
    let setup = setup(1, "parallelization_factor = 4");
    let src = setup.store.stream("src").expect("src");
    for round in 0..4 {
        put(
            &src,
            (0..50).map(|i| (format!("key-{}", i % 16), format!("r{round}-{i}"))),
            driftline_log::now_ms(),
        );
    }
    let processor = recorder(&setup);
    let stats = run(&setup, processor.clone(), |s| {
        s.rows_delivered.load(Ordering::Relaxed) >= 200
    });
    assert_eq!(stats.rows_delivered.load(Ordering::Relaxed), 200);
    assert!(
        processor.most_active.load(Ordering::SeqCst) > 1,
        "batches of the shard overlapped"
    );
    let order = processor.order.lock().expect("lock");
    assert_eq!(order.len(), 16);
    for (key, sequences) in order.iter() {
        assert!(
            sequences.windows(2).all(|w| w[0] < w[1]),
            "{key} out of order: {sequences:?}"
        );
    }
}

#[test]
fn a_split_shard_is_read_to_its_end_before_its_children() {
    let setup = setup(1, "");
    let src = setup.store.stream("src").expect("src");
    let keys =
        |round: usize| (0..60).map(move |i| (format!("key-{}", i % 12), format!("r{round}-{i}")));
    put(&src, keys(0), driftline_log::now_ms());
    src.split_shard(0, u128::MAX / 2, driftline_log::now_ms())
        .expect("split");
    put(&src, keys(1), driftline_log::now_ms());
    let processor = recorder(&setup);
    let stats = run(&setup, processor.clone(), |s| {
        s.rows_delivered.load(Ordering::Relaxed) >= 120
    });
    assert_eq!(stats.rows_delivered.load(Ordering::Relaxed), 120);
    let order = processor.order.lock().expect("lock");
    for (key, sequences) in order.iter() {
        assert_eq!(sequences.len(), 10, "{key}");
        // parent (shard 0) records first, then the child's (a higher shard index)
        let shards: Vec<u128> = sequences.iter().map(|s| s >> 64).collect();
        assert!(
            shards[..5].iter().all(|s| *s == 1) && shards[5..].iter().all(|s| *s > 1),
            "{key}: {shards:?}"
        );
    }
}

#[test]
fn records_older_than_the_maximum_age_are_dead_lettered_unprocessed() {
    let setup = setup(1, "maximum_record_age_s = 60");
    let src = setup.store.stream("src").expect("src");
    put(
        &src,
        (0..10).map(|i| ("k".to_string(), format!("old-{i}"))),
        driftline_log::now_ms() - 3_600_000,
    );
    put(
        &src,
        (0..10).map(|i| ("k".to_string(), format!("new-{i}"))),
        driftline_log::now_ms(),
    );
    let stats = run(&setup, Arc::new(schema_processor(&setup)), |s| {
        s.rows_delivered.load(Ordering::Relaxed) + s.dead_lettered.load(Ordering::Relaxed) >= 20
    });
    assert_eq!(stats.rows_delivered.load(Ordering::Relaxed), 10);
    let letters = dead_letters(&setup);
    assert_eq!(letters.len(), 10);
    assert!(letters
        .iter()
        .all(|l| l["reason"] == "older than maximum_record_age_s"));
}

#[test]
fn every_object_written_is_announced_on_the_bus() {
    let setup = setup(2, "");
    let src = setup.store.stream("src").expect("src");
    put(
        &src,
        (0..100).map(|i| (format!("k{i}"), format!("e{i}"))),
        driftline_log::now_ms(),
    );
    let (stats, announced) = run_with_bus(&setup, Arc::new(schema_processor(&setup)), |s| {
        s.rows_delivered.load(Ordering::Relaxed) >= 100
    });
    let objects = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(setup.lake.list("t"))
        .expect("list");
    assert_eq!(
        stats.objects.load(Ordering::Relaxed) as usize,
        objects.len()
    );
    assert_eq!(announced, objects.len());
    assert!(!objects.is_empty());
}

#[test]
fn latest_starts_at_the_end_once_and_a_restart_resumes_there() {
    let setup = setup(1, "starting_position = \"latest\"");
    let src = setup.store.stream("src").expect("src");
    put(
        &src,
        (0..30).map(|i| ("k".to_string(), format!("before-{i}"))),
        driftline_log::now_ms(),
    );
    // the first run starts at the end: the 30 earlier records are not read
    let began = Instant::now();
    let stats = run(&setup, Arc::new(schema_processor(&setup)), |_| {
        began.elapsed() > Duration::from_millis(500)
    });
    assert_eq!(stats.records_in.load(Ordering::Relaxed), 0);
    // records written while no mapping runs are read by the next run
    put(
        &src,
        (0..20).map(|i| ("k".to_string(), format!("after-{i}"))),
        driftline_log::now_ms(),
    );
    let stats = run(&setup, Arc::new(schema_processor(&setup)), |s| {
        s.rows_delivered.load(Ordering::Relaxed) >= 20
    });
    assert_eq!(stats.rows_delivered.load(Ordering::Relaxed), 20);
    assert_eq!(stats.records_in.load(Ordering::Relaxed), 20);
    assert_eq!(stats.lag.load(Ordering::Relaxed), 0);
}
