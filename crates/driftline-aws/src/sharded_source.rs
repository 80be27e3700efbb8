//! An AWS sharded stream (Kinesis Data Streams, DynamoDB Streams) as a
//! source of `driftline run` (aws feature): what a service must answer
//! (`ShardedStream`, which makes it a `driftline_pipeline::read::ShardReader`),
//! and `run`, which reads it through the pipeline's one mapping loop for
//! shared streams (`driftline_pipeline::mapping::run_shared`): Lambda's batch
//! semantics, the shards shared with other processes through leases in the
//! lake, checkpoints under `_checkpoints/KIND/NAME/SHARD.json`, and refused
//! records under `_dead_letters/NAME/` without an on-failure stream.

use std::sync::Arc;
use std::time::Duration;

use driftline_lake::Position;
use driftline_log::StreamWriter;
use driftline_pipeline::config::{ProcessorConfig, StartingPosition};
use driftline_pipeline::leases::{Leases, LEASE_TIME};
use driftline_pipeline::mapping::{run_shared, DeadLetterSink, Delivery, Parts};
use driftline_pipeline::read::{LakeCheckpoints, ShardReader};
use driftline_pipeline::{Event, MappingStats, Processor};

/// A shard as its stream lists it.
pub struct ShardInfo {
    pub id: String,
    pub parent: Option<String>,
    /// The last sequence number of a closed shard.
    pub ending: Option<Position>,
}

/// What the loop needs of a stream service.
// Called generically by this loop, on concrete types whose futures are Send.
#[allow(async_fn_in_trait)]
pub trait ShardedStream {
    async fn shards(&self) -> crate::Result<Vec<ShardInfo>>;
    /// An iterator after `after`, or at the starting position; `None` past a closed shard's end.
    async fn iterator(
        &self,
        shard: &str,
        after: Option<&str>,
        start: StartingPosition,
    ) -> crate::Result<Option<String>>;
    /// Records as events, and the next iterator (`None` at a closed shard's end).
    /// At most `limit` records (and the stream's own batch size).
    async fn records(
        &self,
        shard: &str,
        iterator: String,
        limit: u32,
    ) -> crate::Result<(Vec<Event>, Option<String>)>;
}

/// The one read side's reader (`driftline_pipeline::read::ShardReader`) for
/// a stream service of this loop: the cursor is its shard iterator, `None`
/// once a closed shard is read to its end.
macro_rules! shard_reader {
    ($stream:ty, $name:ident) => {
        impl driftline_pipeline::read::ShardReader for $stream {
            type Cursor = Option<String>;

            fn stream_name(&self) -> &str {
                &self.$name
            }

            async fn shards(
                &self,
            ) -> Result<Vec<driftline_pipeline::read::ShardInfo>, driftline_pipeline::read::ReadError>
            {
                let shards = $crate::sharded_source::ShardedStream::shards(self)
                    .await
                    .map_err(|e| driftline_pipeline::read::ReadError::Service(e.to_string()))?;
                Ok(shards
                    .into_iter()
                    .map(|s| driftline_pipeline::read::ShardInfo {
                        id: s.id,
                        parents: s.parent.into_iter().collect(),
                        ending: s.ending,
                    })
                    .collect())
            }

            async fn open(
                &self,
                shard: &str,
                after: Option<&driftline_lake::Position>,
                start: driftline_pipeline::config::StartingPosition,
            ) -> Result<
                driftline_pipeline::read::Opened<Option<String>>,
                driftline_pipeline::read::ReadError,
            > {
                let after = after.map(|p| p.to_string());
                let cursor = $crate::sharded_source::ShardedStream::iterator(
                    self,
                    shard,
                    after.as_deref(),
                    start,
                )
                .await
                .map_err(|e| driftline_pipeline::read::ReadError::Service(e.to_string()))?;
                Ok(driftline_pipeline::read::Opened {
                    cursor,
                    before: None,
                })
            }

            async fn read(
                &self,
                shard: &str,
                cursor: &mut Option<String>,
                max: usize,
            ) -> Result<driftline_pipeline::read::Batch, driftline_pipeline::read::ReadError> {
                let Some(iterator) = cursor.take() else {
                    return Ok(driftline_pipeline::read::Batch {
                        ended: true,
                        ..Default::default()
                    });
                };
                let limit = u32::try_from(max).unwrap_or(u32::MAX);
                let (events, next) =
                    $crate::sharded_source::ShardedStream::records(self, shard, iterator, limit)
                        .await
                        .map_err(|e| driftline_pipeline::read::ReadError::Service(e.to_string()))?;
                *cursor = next;
                Ok(driftline_pipeline::read::Batch {
                    ended: cursor.is_none(),
                    events,
                    behind: None,
                })
            }
        }
    };
}
pub(crate) use shard_reader;

/// The pipeline side of a source: its name, processor, knobs and delivery.
pub struct SourceParts {
    pub kind: &'static str,
    pub name: String,
    /// Batch size and window, retries, bisection, record age,
    /// parallelization, starting position: a processor's, or a source's.
    pub config: ProcessorConfig,
    /// The pause between two turns over the shards.
    pub poll: Duration,
    pub processor: Arc<dyn Processor>,
    pub delivery: Delivery,
    /// The on-failure stream; without one, refused records are kept in the
    /// lake under `_dead_letters/NAME/`.
    pub dead_letters: Option<Arc<dyn StreamWriter>>,
    pub stats: Arc<MappingStats>,
}

/// Reads `stream` into the lake until `stop`, sharing its shards with the
/// other processes that read it.
pub async fn run(
    source: SourceParts,
    stream: impl ShardReader,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), driftline_pipeline::MappingError> {
    let lake = source.delivery.lake.clone();
    let leases = Leases::new(lake.clone(), source.kind, &source.name, LEASE_TIME);
    let checkpoints = LakeCheckpoints::new(lake, source.kind, &source.name);
    let parts = Parts {
        dead_letters: match source.dead_letters {
            Some(stream) => DeadLetterSink::Stream(stream),
            None => DeadLetterSink::Lake("_dead_letters".into()),
        },
        processor: source.processor,
        config: source.config,
        delivery: source.delivery,
        stats: source.stats,
    };
    run_shared(parts, stream, checkpoints, leases, source.poll, stop).await
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use driftline_lake::{Field, FieldType, TableSchema};
    use driftline_pipeline::{Outcome, SchemaProcessor};

    use super::*;
    use crate::kinesis_source::KinesisStream;

    /// Fails a whole batch holding a "poison" record (bisection isolates
    /// it) or a key out of order; fails a "flaky" record once (a partial
    /// batch failure, retried); records each key's accepted records.
    struct Picky {
        inner: SchemaProcessor,
        calls: AtomicUsize,
        flaky_seen: Mutex<BTreeMap<Position, usize>>,
        order: Mutex<BTreeMap<String, Vec<Position>>>,
    }

    impl Processor for Picky {
        fn process(&self, batch: &[Event]) -> Result<Outcome, String> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let has = |e: &Event, word: &[u8]| e.data.windows(word.len()).any(|w| w == word);
            if batch.iter().any(|e| has(e, b"poison")) {
                return Err("poison in batch".into());
            }
            // Within one call (one of the parallel groups), each key's
            // records come in their order.
            let mut last: BTreeMap<&str, &Position> = BTreeMap::new();
            for event in batch {
                let before = last.insert(&event.partition_key, &event.sequence_number);
                if before.is_some_and(|b| b >= &event.sequence_number) {
                    return Err(format!("key {} out of order", event.partition_key));
                }
            }
            let mut outcome = Outcome::default();
            let mut flaky = self.flaky_seen.lock().expect("lock");
            let mut order = self.order.lock().expect("lock");
            for (i, event) in batch.iter().enumerate() {
                let attempts = flaky.entry(event.sequence_number.clone()).or_insert(0);
                *attempts += 1;
                if has(event, b"flaky") && *attempts == 1 {
                    outcome.failed.push((i, "try again".into()));
                    continue;
                }
                order
                    .entry(event.partition_key.clone())
                    .or_default()
                    .push(event.sequence_number.clone());
                outcome.rows.push(self.inner.row(event)?);
            }
            Ok(outcome)
        }
    }

    /// The mapping semantics of the embedded log, on Kinesis (moto):
    /// bisection, partial batch failures retried, dead letters kept in the
    /// lake, and a parallelization factor keeping each key in order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_kinesis_stream_gets_the_mappings_semantics() {
        let moto = crate::testing::Moto::start();
        let config = crate::testing::sdk_config(&moto).await;
        let lake = crate::testing::lake(&moto, "lake");
        let client = aws_sdk_kinesis::Client::new(&config);
        client
            .create_stream()
            .stream_name("clicks")
            .shard_count(2)
            .send()
            .await
            .expect("create stream");
        let ids: Vec<String> = (0..120)
            .map(|i| match i {
                17 | 70 => format!("poison-{i}"),
                i if i % 10 == 3 => format!("flaky-{i}"),
                _ => format!("ok-{i}"),
            })
            .collect();
        put_ids(&client, "clicks", &ids, 6).await;
        let processor = Arc::new(Picky {
            inner: SchemaProcessor::new(schema()),
            calls: AtomicUsize::new(0),
            flaky_seen: Mutex::new(BTreeMap::new()),
            order: Mutex::new(BTreeMap::new()),
        });
        let config = ProcessorConfig {
            batch_size: 25,
            parallelization_factor: 2,
            ..ProcessorConfig::internal("clicks", "clicks", 50)
        };
        let stats = run_until(client, &lake, "clicks", config, processor.clone(), |s| {
            s.rows_delivered.load(Ordering::Relaxed) + s.dead_lettered.load(Ordering::Relaxed)
                >= 120
        })
        .await;
        assert_eq!(stats.rows_delivered.load(Ordering::Relaxed), 118);
        assert_eq!(stats.dead_lettered.load(Ordering::Relaxed), 2);
        assert!(
            processor.calls.load(Ordering::Relaxed) > 6,
            "bisection took several calls"
        );
        // the poison records, with their reason, kept in the lake
        let mut letters = Vec::new();
        for path in lake.list("_dead_letters/clicks/").await.expect("list") {
            let bytes = lake.read(&path).await.expect("read").expect("object");
            for line in String::from_utf8_lossy(&bytes).lines() {
                let letter: serde_json::Value = serde_json::from_str(line).expect("JSON");
                assert_eq!(letter["reason"], "poison in batch");
                letters.push(letter["data"].as_str().expect("data").to_string());
            }
        }
        letters.sort();
        assert_eq!(
            letters,
            ["{\"id\": \"poison-17\"}", "{\"id\": \"poison-70\"}"]
        );
        // every flaky record landed after its retry, each key's records once
        let order = processor.order.lock().expect("lock");
        assert_eq!(order.values().map(Vec::len).sum::<usize>(), 118);
        for positions in order.values() {
            let distinct: std::collections::BTreeSet<_> = positions.iter().collect();
            assert_eq!(distinct.len(), positions.len(), "{positions:?}");
        }
    }

    /// The events' one column.
    fn schema() -> TableSchema {
        TableSchema::new(
            vec![Field {
                name: "id".into(),
                field_type: FieldType::String,
                required: true,
            }],
            None,
        )
        .expect("schema")
    }

    /// Puts `ids` (as `{"id": ...}`) on stream `name`, over `keys` partition keys.
    async fn put_ids(client: &aws_sdk_kinesis::Client, name: &str, ids: &[String], keys: usize) {
        let entries: Vec<_> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                    .partition_key(format!("key-{}", i % keys.max(1)))
                    .data(aws_sdk_kinesis::primitives::Blob::new(
                        format!("{{\"id\": \"{id}\"}}").into_bytes(),
                    ))
                    .build()
                    .expect("entry")
            })
            .collect();
        client
            .put_records()
            .stream_name(name)
            .set_records(Some(entries))
            .send()
            .await
            .expect("put");
    }

    /// Runs `config` over Kinesis stream `name` until `done` (or 60 s).
    async fn run_until(
        client: aws_sdk_kinesis::Client,
        lake: &driftline_lake::Lake,
        name: &str,
        config: ProcessorConfig,
        processor: Arc<dyn Processor>,
        done: impl Fn(&MappingStats) -> bool,
    ) -> Arc<MappingStats> {
        let stats = Arc::new(MappingStats::default());
        let source = SourceParts {
            kind: "kinesis",
            name: name.into(),
            config,
            poll: Duration::from_millis(50),
            processor,
            delivery: Delivery {
                lake: lake.clone(),
                table: name.into(),
                schema: schema(),
                compression: driftline_lake::Compression::default(),
                max_buffer: Duration::from_millis(200),
                max_buffer_bytes: 1 << 20,
                bus: None,
            },
            dead_letters: None,
            stats: stats.clone(),
        };
        let reader = KinesisStream {
            client,
            name: name.into(),
            batch_size: 10_000,
        };
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(run(source, reader, stopped));
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !done(&stats) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = stop.send(true);
        task.await.expect("join").expect("run");
        stats
    }

    /// Fails every batch holding a "poison" record, counting its calls.
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

    /// On Kinesis too: records older than the maximum age are dead-lettered
    /// unprocessed (by their arrival time), and without bisection a failing
    /// batch is dead-lettered whole after its retries.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn record_age_and_retries_without_bisection_hold_on_kinesis() {
        let moto = crate::testing::Moto::start();
        let config = crate::testing::sdk_config(&moto).await;
        let lake = crate::testing::lake(&moto, "lake");
        let client = aws_sdk_kinesis::Client::new(&config);
        for name in ["aged", "retried"] {
            client
                .create_stream()
                .stream_name(name)
                .shard_count(1)
                .send()
                .await
                .expect("create stream");
        }
        let poisoned = || {
            Arc::new(Poisoned {
                inner: SchemaProcessor::new(schema()),
                calls: AtomicUsize::new(0),
            })
        };
        // five records that will be two seconds old, one fresh
        let old: Vec<String> = (0..5).map(|i| format!("old-{i}")).collect();
        put_ids(&client, "aged", &old, 5).await;
        tokio::time::sleep(Duration::from_millis(2100)).await;
        put_ids(&client, "aged", &["fresh".to_string()], 1).await;
        let processor = poisoned();
        let aged = ProcessorConfig {
            maximum_record_age_s: Some(1),
            ..ProcessorConfig::internal("aged", "aged", 50)
        };
        let stats = run_until(
            client.clone(),
            &lake,
            "aged",
            aged,
            processor.clone(),
            |s| {
                s.rows_delivered.load(Ordering::Relaxed) + s.dead_lettered.load(Ordering::Relaxed)
                    >= 6
            },
        )
        .await;
        assert_eq!(stats.dead_lettered.load(Ordering::Relaxed), 5);
        assert_eq!(
            stats.rows_delivered.load(Ordering::Relaxed),
            1,
            "the fresh one lands"
        );
        let mut reasons = Vec::new();
        for path in lake.list("_dead_letters/aged/").await.expect("list") {
            let bytes = lake.read(&path).await.expect("read").expect("object");
            for line in String::from_utf8_lossy(&bytes).lines() {
                let letter: serde_json::Value = serde_json::from_str(line).expect("JSON");
                reasons.push(letter["reason"].as_str().unwrap_or_default().to_string());
            }
        }
        assert_eq!(reasons, vec!["older than maximum_record_age_s"; 5]);
        // one batch of ten with a poison record, no bisection, one retry
        let ids: Vec<String> = (0..10)
            .map(|i| {
                if i == 4 {
                    "poison".into()
                } else {
                    format!("ok-{i}")
                }
            })
            .collect();
        put_ids(&client, "retried", &ids, 10).await;
        let processor = poisoned();
        let retried = ProcessorConfig {
            bisect_batch_on_error: false,
            maximum_retry_attempts: 1,
            ..ProcessorConfig::internal("retried", "retried", 50)
        };
        let stats = run_until(client, &lake, "retried", retried, processor.clone(), |s| {
            s.dead_lettered.load(Ordering::Relaxed) >= 10
        })
        .await;
        assert_eq!(stats.dead_lettered.load(Ordering::Relaxed), 10);
        assert_eq!(stats.rows_delivered.load(Ordering::Relaxed), 0);
        assert_eq!(
            processor.calls.load(Ordering::Relaxed),
            2,
            "one call and one retry"
        );
    }
}
