//! An event-source mapping with Lambda's semantics for Kinesis, feeding the
//! lake as Firehose would.
//!
//! One task per shard reads batches (up to `batch_size` records, or what
//! arrived within `maximum_batching_window_ms`), hands them to the
//! processor, retries a failed batch up to `maximum_retry_attempts`, bisects
//! it when `bisect_batch_on_error` is set until the bad records are alone,
//! and sends what still fails, with the reason, to the dead-letter stream.
//! Rows are buffered (by size and by time) and written to the lake; only then
//! does the consumer's checkpoint move, so after a crash the records since the
//! checkpoint are processed again and their objects replaced (see
//! `driftline_lake`): every record reaches the lake exactly once.
//!
//! The read loop waits for each delivery before reading on, so a slow lake
//! slows the reads instead of growing a queue. Reads, dead-letter writes and
//! checkpoints are file I/O with fsyncs: they run in `block_in_place`, so the
//! mapping needs tokio's multi-threaded runtime (the one `driftline run` uses)
//! and does not stall the server's tasks on the same runtime.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use driftline_lake::{Compression, Lake, ObjectName, Position, Row, TableSchema, WrittenObject};
use driftline_log::{Stream, StreamWriter};

use crate::config::ProcessorConfig;
use crate::processor::{Event, Processor};
use crate::read::{Checkpoint, Checkpoints, LogCheckpoints, LogReader, ReadError, ShardReader};

mod shared;

pub use shared::run_shared;

/// Counters of one mapping, for progress lines and tests.
#[derive(Debug, Default)]
pub struct MappingStats {
    pub records_in: AtomicU64,
    pub rows_out: AtomicU64,
    /// Rows written to the lake (and checkpointed).
    pub rows_delivered: AtomicU64,
    pub dead_lettered: AtomicU64,
    /// Shard workers restarted after an error (a failed delivery, say).
    pub errors: AtomicU64,
    /// Records the transform dropped (no output), by design.
    pub filtered: AtomicU64,
    pub objects: AtomicU64,
    /// Records in the stream not yet read, summed over shards.
    pub lag: AtomicU64,
}

/// Where a mapping's output goes and how it is buffered.
#[derive(Clone)]
pub struct Delivery {
    pub lake: Lake,
    pub table: String,
    pub schema: TableSchema,
    pub compression: Compression,
    pub max_buffer: Duration,
    pub max_buffer_bytes: usize,
    /// Told of every object written (the in-process "object created" bus).
    pub bus: Option<tokio::sync::broadcast::Sender<WrittenObject>>,
}

#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error(transparent)]
    Log(#[from] driftline_log::LogError),
    #[error(transparent)]
    Lake(#[from] driftline_lake::LakeError),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("worker stopped: {0}")]
    Join(String),
    #[error("the batch failed: {0}")]
    Batch(String),
    #[error(transparent)]
    DeadLetter(#[from] crate::dead_letter::DeadLetterError),
}

/// One processor's event-source mapping: its source and dead-letter streams,
/// the processor, its knobs and where its output goes.
pub struct Mapping {
    pub stream: Arc<Stream>,
    pub dead_letters: Option<Arc<dyn StreamWriter>>,
    pub processor: Arc<dyn Processor>,
    pub config: ProcessorConfig,
    pub delivery: Delivery,
    pub stats: Arc<MappingStats>,
}

/// Where the records a mapping cannot process go.
#[derive(Clone)]
pub enum DeadLetterSink {
    /// The on-failure stream: one record each, with the reason.
    Stream(Arc<dyn StreamWriter>),
    /// Under this lake prefix, one object per batch (`PREFIX/CONSUMER/...ndjson`),
    /// for streams read without an on-failure stream (the AWS sources).
    Lake(String),
    /// Logged only, as Lambda discards them without an on-failure destination.
    Log,
}

/// A mapping apart from the stream it reads.
pub struct Parts {
    pub dead_letters: DeadLetterSink,
    pub processor: Arc<dyn Processor>,
    pub config: ProcessorConfig,
    pub delivery: Delivery,
    pub stats: Arc<MappingStats>,
}

/// Runs the mapping on every shard of its stream until `stop` is set, then
/// delivers what is buffered and returns. Resharding is followed as Lambda
/// follows it: a shard's worker starts once its parents' workers have read
/// them to their end, so records of one key stay in order across a split or
/// a merge; shards created while the mapping runs are picked up.
pub async fn run_mapping(
    mapping: Mapping,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), MappingError> {
    let reader = LogReader::new(mapping.stream.clone());
    let checkpoints = LogCheckpoints::new(mapping.stream.clone(), mapping.config.name.get_ref());
    let parts = Parts {
        dead_letters: match mapping.dead_letters {
            Some(stream) => DeadLetterSink::Stream(stream),
            None => DeadLetterSink::Log,
        },
        processor: mapping.processor,
        config: mapping.config,
        delivery: mapping.delivery,
        stats: mapping.stats,
    };
    run_source(
        Arc::new(Source {
            mapping: parts,
            reader,
            checkpoints,
        }),
        stop,
    )
    .await
}

/// A mapping with the read side of its stream and where its checkpoints go.
struct Source<R, C> {
    mapping: Parts,
    reader: R,
    checkpoints: C,
}

async fn run_source<R: ShardReader, C: Checkpoints>(
    source: Arc<Source<R, C>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), MappingError> {
    let mut running: BTreeMap<String, tokio::task::JoinHandle<Result<(), MappingError>>> =
        BTreeMap::new();
    let mut finished: BTreeSet<String> = BTreeSet::new();
    let mut retry_at: BTreeMap<String, Instant> = BTreeMap::new();
    loop {
        let stopping = *stop.borrow();
        if !stopping {
            let shards = source.reader.shards().await?;
            let listed: BTreeSet<&str> = shards.iter().map(|s| s.id.as_str()).collect();
            for shard in &shards {
                // A parent no longer listed has expired: nothing of it is left to read.
                let parents_done = shard
                    .parents
                    .iter()
                    .all(|p| finished.contains(p) || !listed.contains(p.as_str()));
                let waiting = retry_at.get(&shard.id).is_some_and(|t| Instant::now() < *t);
                if parents_done
                    && !waiting
                    && !running.contains_key(&shard.id)
                    && !finished.contains(&shard.id)
                {
                    let worker = ShardWorker {
                        source: source.clone(),
                        shard: shard.id.clone(),
                    };
                    running.insert(shard.id.clone(), tokio::spawn(worker.run(stop.clone())));
                }
            }
        }
        let done: Vec<String> = running
            .iter()
            .filter(|(_, task)| task.is_finished() || stopping)
            .map(|(shard, _)| shard.clone())
            .collect();
        for shard in done {
            let Some(task) = running.remove(&shard) else {
                continue;
            };
            match task.await.map_err(|e| MappingError::Join(e.to_string()))? {
                Ok(()) => {
                    finished.insert(shard);
                }
                Err(error) if stopping => return Err(error),
                Err(error) => {
                    // The worker starts again from its checkpoint (removing what
                    // the failed delivery left), as a retried Lambda batch would.
                    source.mapping.stats.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%shard, %error, "shard worker failed; restarting in 1 s");
                    retry_at.insert(shard, Instant::now() + Duration::from_secs(1));
                }
            }
        }
        if stopping {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = stop.changed() => {}
        }
    }
}

struct ShardWorker<R, C> {
    source: Arc<Source<R, C>>,
    shard: String,
}

/// A record that could not be processed, and why.
type Failed = (Event, String);

/// Rows waiting for delivery and the stream range they cover.
#[derive(Default)]
struct Buffer {
    rows: Vec<Row>,
    bytes: usize,
    first: Option<Position>,
    last: Option<Position>,
    since: Option<Instant>,
}

impl<R: ShardReader, C: Checkpoints> ShardWorker<R, C> {
    fn mapping(&self) -> &Parts {
        &self.source.mapping
    }

    fn consumer(&self) -> &str {
        self.mapping().config.name.get_ref()
    }

    async fn run(self, stop: tokio::sync::watch::Receiver<bool>) -> Result<(), MappingError> {
        // This shard's share of the lag leaves the total however the worker ends.
        let mut lag = 0;
        let result = self.consume(stop, &mut lag).await;
        self.mapping().stats.lag.fetch_sub(lag, Ordering::Relaxed);
        result
    }

    async fn consume(
        &self,
        mut stop: tokio::sync::watch::Receiver<bool>,
        last_lag: &mut u64,
    ) -> Result<(), MappingError> {
        let mapping = self.mapping();
        let mut cursor = self.open_at_checkpoint().await?;
        let mut buffer = Buffer::default();
        loop {
            let stopping = *stop.borrow();
            let (batch, ended) = self
                .gather(&mut cursor, &buffer, &mut stop, None, last_lag)
                .await?;
            if !batch.is_empty() {
                tokio::task::block_in_place(|| self.handle(batch, &mut buffer))?;
            }
            let due = buffer
                .since
                .is_some_and(|t| t.elapsed() >= mapping.delivery.max_buffer)
                || buffer.bytes >= mapping.delivery.max_buffer_bytes;
            if due || ((stopping || ended) && buffer.first.is_some()) {
                self.deliver(&mut buffer, ended, true).await?;
            }
            if stopping || ended {
                return Ok(());
            }
        }
    }

    /// Where reading goes on from the committed checkpoint: what an
    /// interrupted delivery left past it is removed first, and a LATEST
    /// start is recorded once, so a restart resumes there instead of
    /// skipping to a newer end.
    async fn open_at_checkpoint(&self) -> Result<R::Cursor, MappingError> {
        let mapping = self.mapping();
        let source = &self.source;
        let committed = source.checkpoints.load(&self.shard).await?.position;
        let removed = mapping
            .delivery
            .lake
            .remove_uncommitted(&mapping.delivery.table, &self.shard, committed.as_ref())
            .await?;
        if !removed.is_empty() {
            tracing::info!(shard = %self.shard, objects = removed.len(), "removed objects of an interrupted delivery");
        }
        let opened = source
            .reader
            .open(
                &self.shard,
                committed.as_ref(),
                mapping.config.starting_position,
            )
            .await?;
        if let (None, Some(before)) = (&committed, opened.before) {
            let at = Checkpoint {
                position: Some(before),
                finished: false,
            };
            source.checkpoints.save(&self.shard, &at).await?;
        }
        Ok(opened.cursor)
    }

    /// Gathers a batch: `batch_size` records, or what the window brought;
    /// and whether the shard has ended. Idle (nothing read, nothing
    /// buffered), it waits for records or `stop`, unless `until` is given:
    /// then it returns at once, or at `until`.
    async fn gather(
        &self,
        cursor: &mut R::Cursor,
        buffer: &Buffer,
        stop: &mut tokio::sync::watch::Receiver<bool>,
        until: Option<Instant>,
        last_lag: &mut u64,
    ) -> Result<(Vec<Event>, bool), MappingError> {
        let mapping = self.mapping();
        let stopping = *stop.borrow();
        let window = Duration::from_millis(mapping.config.maximum_batching_window_ms);
        let mut batch: Vec<Event> = Vec::new();
        let deadline = Instant::now() + window;
        let mut behind = None;
        let mut ended;
        loop {
            let want = mapping.config.batch_size - batch.len();
            let read = self.source.reader.read(&self.shard, cursor, want).await?;
            ended = read.ended;
            behind = read.behind.or(behind);
            batch.extend(read.events);
            if batch.len() >= mapping.config.batch_size
                || stopping
                || Instant::now() >= deadline
                || until.is_some_and(|u| Instant::now() >= u)
            {
                break;
            }
            if batch.is_empty() && ended {
                // A closed parent read to its end: its children take over.
                break;
            }
            if batch.is_empty() && buffer.first.is_none() {
                if until.is_some() {
                    break; // caught up: the turn goes on with other shards
                }
                // Idle: wait for records or the stop signal without a deadline.
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                    _ = stop.changed() => break,
                }
                continue;
            }
            tokio::time::sleep(Duration::from_millis(5).min(window)).await;
        }
        if let Some(lag) = behind {
            mapping.stats.lag.fetch_add(lag, Ordering::Relaxed);
            mapping.stats.lag.fetch_sub(*last_lag, Ordering::Relaxed);
            *last_lag = lag;
        }
        if !batch.is_empty() {
            mapping
                .stats
                .records_in
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
        Ok((batch, ended))
    }

    /// Processes a batch into the buffer; failures go to the dead-letter stream.
    fn handle(&self, batch: Vec<Event>, buffer: &mut Buffer) -> Result<(), MappingError> {
        let first = batch[0].sequence_number.clone();
        let last = batch[batch.len() - 1].sequence_number.clone();
        // The buffer's size is reckoned in the records' bytes, as Firehose does.
        let bytes: usize = batch.iter().map(|e| e.data.len()).sum();
        let (fresh, expired): (Vec<Event>, Vec<Event>) =
            match self.mapping().config.maximum_record_age_s {
                Some(age) => {
                    let oldest = driftline_log::now_ms() - (age as i64).saturating_mul(1000);
                    batch.into_iter().partition(|e| e.arrival_ms >= oldest)
                }
                None => (batch, Vec::new()),
            };
        let mut failed: Vec<Failed> = expired
            .into_iter()
            .map(|e| (e, "older than maximum_record_age_s".to_string()))
            .collect();
        let mut rows = Vec::new();
        let factor = self.mapping().config.parallelization_factor.max(1);
        if factor == 1 || fresh.len() < 2 {
            if !fresh.is_empty() {
                self.process(fresh, &mut rows, &mut failed);
            }
        } else {
            // Several batches of one shard at once, each key in one of them,
            // in order: what Lambda's parallelization factor promises.
            let mut groups: Vec<Vec<Event>> = vec![Vec::new(); factor];
            for event in fresh {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                event.partition_key.hash(&mut hasher);
                groups[(hasher.finish() % factor as u64) as usize].push(event);
            }
            let results: Vec<(Vec<Row>, Vec<Failed>)> = std::thread::scope(|scope| {
                let workers: Vec<_> = groups
                    .into_iter()
                    .filter(|g| !g.is_empty())
                    .map(|group| {
                        scope.spawn(move || {
                            let (mut rows, mut failed) = (Vec::new(), Vec::new());
                            self.process(group, &mut rows, &mut failed);
                            (rows, failed)
                        })
                    })
                    .collect();
                workers
                    .into_iter()
                    .map(|w| {
                        w.join()
                            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                    })
                    .collect()
            });
            for (group_rows, group_failed) in results {
                rows.extend(group_rows);
                failed.extend(group_failed);
            }
        }
        self.dead_letter(failed)?;
        self.mapping()
            .stats
            .rows_out
            .fetch_add(rows.len() as u64, Ordering::Relaxed);
        buffer.bytes += bytes;
        buffer.rows.extend(rows);
        buffer.first.get_or_insert(first);
        buffer.last = Some(last);
        buffer.since.get_or_insert_with(Instant::now);
        Ok(())
    }

    /// Lambda's retry, partial-failure and bisect rules for one batch.
    fn process(&self, mut pending: Vec<Event>, rows: &mut Vec<Row>, failed: &mut Vec<Failed>) {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let exhausted = attempts > self.mapping().config.maximum_retry_attempts;
            match self.mapping().processor.process(&pending) {
                Ok(outcome) => {
                    self.mapping()
                        .stats
                        .filtered
                        .fetch_add(outcome.filtered as u64, Ordering::Relaxed);
                    rows.extend(outcome.rows);
                    if outcome.failed.is_empty() {
                        return;
                    }
                    let mut reasons: Vec<Option<String>> = vec![None; pending.len()];
                    for (i, reason) in outcome.failed {
                        if let Some(slot) = reasons.get_mut(i) {
                            *slot = Some(reason);
                        }
                    }
                    let retry: Vec<Failed> = pending
                        .into_iter()
                        .zip(reasons)
                        .filter_map(|(e, r)| r.map(|r| (e, r)))
                        .collect();
                    if exhausted {
                        failed.extend(retry);
                        return;
                    }
                    pending = retry.into_iter().map(|(e, _)| e).collect();
                }
                Err(reason) if exhausted => {
                    if self.mapping().config.bisect_batch_on_error && pending.len() > 1 {
                        let second = pending.split_off(pending.len() / 2);
                        self.process(pending, rows, failed);
                        self.process(second, rows, failed);
                    } else {
                        failed.extend(pending.into_iter().map(|e| (e, reason.clone())));
                    }
                    return;
                }
                Err(_) => {}
            }
        }
    }

    /// Writes failed records to the dead-letter stream (durably, before the
    /// checkpoint can move past them), each as JSON with the reason.
    fn dead_letter(&self, failed: Vec<Failed>) -> Result<(), MappingError> {
        if failed.is_empty() {
            return Ok(());
        }
        let first = failed.iter().map(|(e, _)| e.sequence_number.clone()).min();
        let last = failed.iter().map(|(e, _)| e.sequence_number.clone()).max();
        let letters: Vec<(String, serde_json::Value)> = failed
            .into_iter()
            .map(|(event, reason)| {
                let letter = crate::dead_letter::envelope(
                    &reason,
                    self.consumer(),
                    Some(self.source.reader.stream_name()),
                    &event,
                );
                (event.partition_key, letter)
            })
            .collect();
        let stats = &self.mapping().stats.dead_lettered;
        match &self.mapping().dead_letters {
            DeadLetterSink::Stream(stream) => {
                crate::dead_letter::send(Some(stream.as_ref()), letters, stats)?
            }
            DeadLetterSink::Log => crate::dead_letter::send(None, letters, stats)?,
            DeadLetterSink::Lake(prefix) => {
                let (Some(first), Some(last)) = (first, last) else {
                    return Ok(());
                };
                stats.fetch_add(letters.len() as u64, Ordering::Relaxed);
                let lines: String = letters
                    .iter()
                    .map(|(_, letter)| letter.to_string() + "\n")
                    .collect();
                let path = crate::dead_letter::lake_path(
                    prefix,
                    self.consumer(),
                    &self.shard,
                    first,
                    last,
                );
                let lake = &self.mapping().delivery.lake;
                tokio::runtime::Handle::current()
                    .block_on(lake.write(&path, lines.into_bytes()))?;
            }
        }
        Ok(())
    }

    /// Writes the buffer to the lake, then (when `checkpoint`) moves the
    /// checkpoint past it.
    async fn deliver(
        &self,
        buffer: &mut Buffer,
        ended: bool,
        checkpoint: bool,
    ) -> Result<(), MappingError> {
        let (Some(first), Some(last)) = (buffer.first.clone(), buffer.last.clone()) else {
            return Ok(());
        };
        let written = self
            .mapping()
            .delivery
            .lake
            .write_delivery(
                &self.mapping().delivery.table,
                &self.mapping().delivery.schema,
                &ObjectName {
                    shard: self.shard.clone(),
                    first,
                    last: last.clone(),
                },
                &buffer.rows,
                self.mapping().delivery.compression,
            )
            .await?;
        if checkpoint {
            let at = Checkpoint {
                position: Some(last),
                finished: ended,
            };
            self.source.checkpoints.save(&self.shard, &at).await?;
        }
        self.mapping()
            .stats
            .objects
            .fetch_add(written.len() as u64, Ordering::Relaxed);
        self.mapping()
            .stats
            .rows_delivered
            .fetch_add(buffer.rows.len() as u64, Ordering::Relaxed);
        if let Some(bus) = &self.mapping().delivery.bus {
            for object in written {
                // No subscriber is not an error: the objects are in the lake.
                let _ = bus.send(object);
            }
        }
        *buffer = Buffer::default();
        Ok(())
    }
}
