//! The read side of every stream a mapping reads: its shards, where reading
//! a shard goes on, and batches of its records as events (`ShardReader`);
//! and where a consumer's positions are kept (`Checkpoints`). The embedded
//! log implements both here (`LogReader`, the log's consumer ledger); Kinesis
//! Data Streams and DynamoDB Streams implement the reader in driftline-aws,
//! with checkpoints in the lake (`LakeCheckpoints`). One conformance suite
//! (`conformance`) holds every reader to the same contract.

use std::future::Future;
use std::sync::Arc;

use driftline_lake::{Lake, Position};
use driftline_log::{parse_shard_id, SequenceNumber, Stream};
use serde::{Deserialize, Serialize};

use crate::config::StartingPosition;
use crate::processor::Event;

/// A shard as its stream lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardInfo {
    pub id: String,
    /// Its parents (one after a split, two after a merge), read before it.
    pub parents: Vec<String>,
    /// The last position of a closed shard, when the stream says.
    pub ending: Option<Position>,
}

/// What one read of a shard gave.
#[derive(Debug, Default)]
pub struct Batch {
    pub events: Vec<Event>,
    /// The shard is closed and has been read to its end: its children go on.
    pub ended: bool,
    /// Records written to the shard and not read yet, when the stream knows.
    pub behind: Option<u64>,
}

/// Where reading a shard starts: the cursor, and for `LATEST` the position
/// just before it when the stream can tell (so a restart resumes there
/// rather than at a newer end).
pub struct Opened<C> {
    pub cursor: C,
    pub before: Option<Position>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Log(#[from] driftline_log::LogError),
    #[error(transparent)]
    Lake(#[from] driftline_lake::LakeError),
    /// What the stream's service said.
    #[error("{0}")]
    Service(String),
    #[error("{0}")]
    Invalid(String),
}

/// A stream's read side.
pub trait ShardReader: Send + Sync + 'static {
    /// Where a read goes on (an offset, a shard iterator).
    type Cursor: Send + 'static;

    /// The stream's name, as dead letters name their source.
    fn stream_name(&self) -> &str;

    /// The shards as they are now, parents before children.
    fn shards(&self) -> impl Future<Output = Result<Vec<ShardInfo>, ReadError>> + Send;

    /// Reading `shard` after `after`, or at `start` when nothing was read yet.
    fn open(
        &self,
        shard: &str,
        after: Option<&Position>,
        start: StartingPosition,
    ) -> impl Future<Output = Result<Opened<Self::Cursor>, ReadError>> + Send;

    /// Up to `max` records from `cursor`, which moves past them; does not
    /// wait for records that are not there yet.
    fn read(
        &self,
        shard: &str,
        cursor: &mut Self::Cursor,
        max: usize,
    ) -> impl Future<Output = Result<Batch, ReadError>> + Send;
}

/// A consumer's position in a shard: the last record delivered, and whether
/// the shard has ended and been read to its end.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    #[serde(rename = "sequence_number", with = "position_text")]
    pub position: Option<Position>,
    pub finished: bool,
}

/// Where a consumer's checkpoints are kept.
pub trait Checkpoints: Send + Sync + 'static {
    fn load(&self, shard: &str) -> impl Future<Output = Result<Checkpoint, ReadError>> + Send;
    fn save(
        &self,
        shard: &str,
        checkpoint: &Checkpoint,
    ) -> impl Future<Output = Result<(), ReadError>> + Send;
}

/// The embedded log's read side.
pub struct LogReader {
    stream: Arc<Stream>,
}

/// Where the embedded reader is in a shard.
pub struct LogCursor {
    index: u32,
    offset: u64,
}

impl LogReader {
    pub fn new(stream: Arc<Stream>) -> LogReader {
        LogReader { stream }
    }

    fn index(shard: &str) -> Result<u32, ReadError> {
        parse_shard_id(shard).ok_or_else(|| ReadError::Invalid(format!("no shard {shard:?}")))
    }
}

impl ShardReader for LogReader {
    type Cursor = LogCursor;

    fn stream_name(&self) -> &str {
        self.stream.name()
    }

    async fn shards(&self) -> Result<Vec<ShardInfo>, ReadError> {
        let meta = self.stream.meta();
        Ok(meta
            .shards
            .iter()
            .map(|shard| ShardInfo {
                id: shard.id(),
                parents: shard
                    .parents
                    .iter()
                    .map(|p| driftline_log::shard_id(*p))
                    .collect(),
                ending: None,
            })
            .collect())
    }

    async fn open(
        &self,
        shard: &str,
        after: Option<&Position>,
        start: StartingPosition,
    ) -> Result<Opened<LogCursor>, ReadError> {
        let index = Self::index(shard)?;
        let log = self.stream.shard(index)?;
        if let Some(after) = after {
            let sequence = SequenceNumber::from_u128(after.to_u128().ok_or_else(|| {
                ReadError::Invalid(format!("{after} is not a position of the embedded log"))
            })?);
            return Ok(Opened {
                cursor: LogCursor {
                    index,
                    offset: sequence.offset() + 1,
                },
                before: None,
            });
        }
        Ok(match start {
            StartingPosition::TrimHorizon => Opened {
                cursor: LogCursor {
                    index,
                    offset: log.trim_horizon(),
                },
                before: None,
            },
            StartingPosition::Latest => {
                let end = log.end_offset();
                Opened {
                    cursor: LogCursor { index, offset: end },
                    before: end
                        .checked_sub(1)
                        .map(|last| SequenceNumber::new(index, last).as_u128().into()),
                }
            }
        })
    }

    async fn read(
        &self,
        shard: &str,
        cursor: &mut LogCursor,
        max: usize,
    ) -> Result<Batch, ReadError> {
        let log = self.stream.shard(cursor.index)?;
        // File I/O: off the runtime's other tasks (a multi-threaded runtime).
        let read = tokio::task::block_in_place(|| log.read(cursor.offset, max, 6 * 1024 * 1024))?;
        cursor.offset = read.next_offset;
        let events = read
            .records
            .into_iter()
            .map(|r| Event {
                shard: shard.to_string(),
                sequence_number: SequenceNumber::new(cursor.index, r.offset).as_u128().into(),
                arrival_ms: r.timestamp_ms,
                partition_key: r.partition_key,
                data: r.data,
            })
            .collect();
        Ok(Batch {
            events,
            ended: log.is_finished_at(cursor.offset),
            behind: Some(log.end_offset().saturating_sub(cursor.offset)),
        })
    }
}

/// The embedded log's consumer ledger as checkpoints (durable, in the
/// stream's own directory).
pub struct LogCheckpoints {
    stream: Arc<Stream>,
    consumer: String,
}

impl LogCheckpoints {
    pub fn new(stream: Arc<Stream>, consumer: &str) -> LogCheckpoints {
        LogCheckpoints {
            stream,
            consumer: consumer.to_string(),
        }
    }
}

impl Checkpoints for LogCheckpoints {
    async fn load(&self, shard: &str) -> Result<Checkpoint, ReadError> {
        let index = LogReader::index(shard)?;
        let position = self
            .stream
            .checkpoints(&self.consumer)?
            .get(&index)
            .map(|sequence| Position::from(sequence.as_u128()));
        // Whether the shard has ended is the log's to say, not the ledger's.
        Ok(Checkpoint {
            position,
            finished: false,
        })
    }

    async fn save(&self, shard: &str, checkpoint: &Checkpoint) -> Result<(), ReadError> {
        let index = LogReader::index(shard)?;
        let Some(position) = &checkpoint.position else {
            return Ok(());
        };
        let sequence = SequenceNumber::from_u128(position.to_u128().ok_or_else(|| {
            ReadError::Invalid(format!("{position} is not a position of the embedded log"))
        })?);
        tokio::task::block_in_place(|| self.stream.checkpoint(&self.consumer, index, sequence))?;
        Ok(())
    }
}

/// Checkpoints as lake objects, `_checkpoints/KIND/NAME/SHARD.json`: for
/// streams that keep no consumer positions of their own (Kinesis, DynamoDB
/// Streams), shared by the processes that lease their shards.
pub struct LakeCheckpoints {
    lake: Lake,
    prefix: String,
}

impl LakeCheckpoints {
    pub fn new(lake: Lake, kind: &str, name: &str) -> LakeCheckpoints {
        LakeCheckpoints {
            lake,
            prefix: format!("_checkpoints/{kind}/{name}"),
        }
    }

    fn path(&self, shard: &str) -> String {
        format!("{}/{shard}.json", self.prefix)
    }
}

impl Checkpoints for LakeCheckpoints {
    async fn load(&self, shard: &str) -> Result<Checkpoint, ReadError> {
        match self.lake.read(&self.path(shard)).await? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                ReadError::Invalid(format!(
                    "the checkpoint of shard {shard} is not readable: {e}"
                ))
            }),
            None => Ok(Checkpoint::default()),
        }
    }

    async fn save(&self, shard: &str, checkpoint: &Checkpoint) -> Result<(), ReadError> {
        let bytes = serde_json::to_vec(checkpoint)
            .map_err(|e| ReadError::Invalid(format!("a checkpoint: {e}")))?;
        self.lake.write(&self.path(shard), bytes).await?;
        Ok(())
    }
}

/// Positions as the decimal text the checkpoint files have always held.
mod position_text {
    use driftline_lake::Position;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(position: &Option<Position>, s: S) -> Result<S::Ok, S::Error> {
        match position {
            Some(p) => s.serialize_some(p.as_str()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Position>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| {
            Position::parse(&t)
                .ok_or_else(|| serde::de::Error::custom(format!("{t:?} is not a position")))
        })
        .transpose()
    }
}

/// The contract every reader keeps, checked on a stream the caller made
/// with `shards` shards and filled through `put` (partition key, data; the
/// caller's writer), each event read back as what was put by `identify`:
/// every record is read once, in order per shard, from the trim horizon or
/// after a position, and LATEST sees only what comes after it.
pub async fn conformance<R: ShardReader>(
    reader: &R,
    put: impl Fn(Vec<(String, Vec<u8>)>),
    identify: impl Fn(&Event) -> (String, Vec<u8>),
    shards: usize,
) {
    let listed = reader.shards().await.expect("shards");
    assert_eq!(listed.len(), shards, "{listed:?}");
    // LATEST before anything is put reads only what comes after it.
    let mut latest = Vec::new();
    for shard in &listed {
        let opened = reader
            .open(&shard.id, None, StartingPosition::Latest)
            .await
            .expect("open at latest");
        latest.push((shard.id.clone(), opened.cursor));
    }
    let records: Vec<(String, Vec<u8>)> = (0..60)
        .map(|i| (format!("key-{}", i % 7), format!("record {i}").into_bytes()))
        .collect();
    put(records.clone());
    let mut seen: Vec<(String, Vec<u8>)> = Vec::new();
    let mut by_shard: Vec<(String, Vec<Event>)> = Vec::new();
    for shard in &listed {
        let mut opened = reader
            .open(&shard.id, None, StartingPosition::TrimHorizon)
            .await
            .expect("open at the trim horizon");
        let mut events: Vec<Event> = Vec::new();
        // Small reads: a cursor must carry on where the last read ended.
        let mut empty_reads = 0;
        while empty_reads < 3 {
            let batch = reader
                .read(&shard.id, &mut opened.cursor, 4)
                .await
                .expect("read");
            assert!(batch.events.len() <= 4, "at most what was asked for");
            empty_reads = if batch.events.is_empty() {
                empty_reads + 1
            } else {
                0
            };
            events.extend(batch.events);
        }
        for pair in events.windows(2) {
            assert!(
                pair[0].sequence_number < pair[1].sequence_number,
                "in order within shard {}",
                shard.id
            );
        }
        assert!(events.iter().all(|e| e.shard == shard.id));
        seen.extend(events.iter().map(&identify));
        by_shard.push((shard.id.clone(), events));
    }
    let mut expected = records.clone();
    expected.sort();
    seen.sort();
    assert_eq!(seen, expected, "every record read once");
    // After a position: the records after it, and nothing before.
    let (shard, events) = by_shard
        .iter()
        .find(|(_, events)| events.len() >= 2)
        .expect("a shard with two records");
    let mut after = reader
        .open(
            shard,
            Some(&events[0].sequence_number),
            StartingPosition::TrimHorizon,
        )
        .await
        .expect("open after a position");
    let mut rest = Vec::new();
    let mut empty_reads = 0;
    while empty_reads < 3 {
        let batch = reader
            .read(shard, &mut after.cursor, 100)
            .await
            .expect("read");
        empty_reads = if batch.events.is_empty() {
            empty_reads + 1
        } else {
            0
        };
        rest.extend(batch.events);
    }
    assert_eq!(
        rest.iter().map(|e| e.data.clone()).collect::<Vec<_>>(),
        events[1..]
            .iter()
            .map(|e| e.data.clone())
            .collect::<Vec<_>>(),
        "after {}",
        events[0].sequence_number
    );
    // LATEST opened before the puts sees them all, once.
    let mut from_latest = 0;
    for (shard, mut cursor) in latest {
        let mut empty_reads = 0;
        while empty_reads < 3 {
            let batch = reader.read(&shard, &mut cursor, 100).await.expect("read");
            empty_reads = if batch.events.is_empty() {
                empty_reads + 1
            } else {
                0
            };
            from_latest += batch.events.len();
        }
    }
    assert_eq!(from_latest, records.len(), "LATEST then the puts");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream "events" of `shards` shards in a store under `dir`.
    fn stream(dir: &tempfile::TempDir, shards: u32) -> Arc<Stream> {
        let store = driftline_log::LogStore::open(dir.path(), driftline_log::LogConfig::default())
            .expect("store");
        store
            .create_stream(
                driftline_log::StreamSpec {
                    name: "events".into(),
                    shard_count: shards,
                    ..driftline_log::StreamSpec::default()
                },
                driftline_log::now_ms(),
            )
            .expect("stream")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_embedded_log_is_a_reader() {
        let dir = tempfile::tempdir().expect("dir");
        let stream = stream(&dir, 3);
        let writer = stream.clone();
        conformance(
            &LogReader::new(stream),
            move |records| {
                let records = records
                    .into_iter()
                    .map(|(key, data)| driftline_log::NewRecord {
                        partition_key: key,
                        explicit_hash_key: None,
                        data,
                    })
                    .collect();
                for put in writer.put(records, driftline_log::now_ms()) {
                    put.expect("put");
                }
            },
            |e| (e.partition_key.clone(), e.data.clone()),
            3,
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn checkpoints_keep_a_position_in_the_ledger_and_in_the_lake() {
        let dir = tempfile::tempdir().expect("dir");
        let stream = stream(&dir, 1);
        let shard = driftline_log::shard_id(0);
        let at = Checkpoint {
            position: Some(SequenceNumber::new(0, 41).as_u128().into()),
            finished: false,
        };
        let ledger = LogCheckpoints::new(stream, "consumer");
        assert_eq!(
            ledger.load(&shard).await.expect("load"),
            Checkpoint::default()
        );
        ledger.save(&shard, &at).await.expect("save");
        assert_eq!(ledger.load(&shard).await.expect("load"), at);
        let lake =
            LakeCheckpoints::new(Lake::open("memory://").expect("lake"), "kinesis", "clicks");
        let done = Checkpoint {
            position: Position::parse("49590338271490256608559692538361571095921575989136588898"),
            finished: true,
        };
        lake.save("shardId-000000000001", &done)
            .await
            .expect("save");
        assert_eq!(lake.load("shardId-000000000001").await.expect("load"), done);
        assert_eq!(
            lake.load("other").await.expect("load"),
            Checkpoint::default()
        );
    }
}
