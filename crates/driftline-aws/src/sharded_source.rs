//! Reading an AWS sharded stream (Kinesis Data Streams, DynamoDB Streams) as
//! a source of `driftline run` (aws feature): the loop both share. Records
//! go through the pipeline's processor and lake delivery
//! (`function::handle_batch`: objects named after the shard and sequence
//! range, refused records kept under `_dead_letters/NAME/`). Shards are read
//! parents first (a child waits until its parent is finished); each shard's
//! last delivered sequence number, and whether it has ended, is checkpointed
//! in the lake under `_checkpoints/KIND/NAME/SHARD.json` after its delivery,
//! so a restart goes on after it and a batch delivered again replaces itself.
//! Several processes share a stream's shards through leases in the lake
//! (`leases.rs`): each reads only the shards it holds.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::Context;
use driftline_lake::{Lake, Position};
use driftline_log::StreamWriter;
use driftline_pipeline::config::StartingPosition;
use driftline_pipeline::function::{handle_batch, DeadLetters};
use driftline_pipeline::mapping::Delivery;
use driftline_pipeline::{Event, MappingStats, Processor};

use driftline_pipeline::leases::{Leases, LEASE_TIME};

/// Calls for records per shard before the next shard gets its turn.
const READS_PER_TURN: usize = 10;

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

#[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
struct Checkpoint {
    sequence_number: Option<String>,
    finished: bool,
}

/// The pipeline side of a source: its name, processor and delivery.
pub struct SourceParts {
    pub kind: &'static str,
    pub name: String,
    pub starting_position: StartingPosition,
    pub poll: Duration,
    pub processor: Arc<dyn Processor>,
    pub delivery: Delivery,
    /// The on-failure stream; without one, refused records are kept in the
    /// lake under `_dead_letters/NAME/`.
    pub dead_letters: Option<Arc<dyn StreamWriter>>,
    pub stats: Arc<MappingStats>,
}

impl SourceParts {
    fn checkpoint_path(&self, shard: &str) -> String {
        format!("_checkpoints/{}/{}/{shard}.json", self.kind, self.name)
    }

    async fn checkpoint(&self, lake: &Lake, shard: &str) -> crate::Result<Checkpoint> {
        Ok(match lake.read(&self.checkpoint_path(shard)).await? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("the checkpoint of shard {shard} is not readable"))?,
            None => Checkpoint::default(),
        })
    }

    async fn save(&self, lake: &Lake, shard: &str, checkpoint: &Checkpoint) -> crate::Result<()> {
        lake.write(
            &self.checkpoint_path(shard),
            serde_json::to_vec(checkpoint)?,
        )
        .await?;
        Ok(())
    }
}

/// Reads `stream` into the lake until `stop`.
pub async fn run(
    source: SourceParts,
    stream: impl ShardedStream,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> crate::Result<()> {
    let lake = source.delivery.lake.clone();
    // Where each shard's reading goes on: an iterator is kept from turn to
    // turn (a new one from the checkpoint only at first or after an error),
    // so records put between two turns are not skipped.
    let mut iterators: HashMap<String, String> = HashMap::new();
    let mut leases = Leases::new(lake.clone(), source.kind, &source.name, LEASE_TIME);
    tracing::info!(source = %source.name, worker = %leases.worker(), "reading the shards this worker leases");
    while !*stop.borrow() {
        let shards = match stream.shards().await {
            Ok(shards) => shards,
            Err(error) => {
                // No turn at all: an empty list would let every lease go.
                tracing::warn!(source = %source.name, error = %format!("{error:#}"), "cannot list the shards");
                tokio::select! {
                    _ = tokio::time::sleep(source.poll) => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
        };
        let mut checkpoints = BTreeMap::new();
        let mut unreadable = Vec::new();
        for shard in &shards {
            let checkpoint = match source.checkpoint(&lake, &shard.id).await {
                Ok(checkpoint) => checkpoint,
                Err(error) => {
                    tracing::warn!(source = %source.name, shard = %shard.id, error = %format!("{error:#}"), "cannot read the checkpoint; the shard waits for the next turn");
                    // Still unfinished as far as anyone knows: its lease is kept.
                    unreadable.push(shard.id.clone());
                    continue;
                }
            };
            // A closed shard read up to its ending sequence number is finished
            // even where the service never says so with a null iterator.
            let done = checkpoint.finished
                || shard.ending.as_ref().is_some_and(|end| {
                    checkpoint
                        .sequence_number
                        .as_deref()
                        .and_then(Position::parse)
                        .is_some_and(|at| at >= *end)
                });
            checkpoints.insert(shard.id.clone(), (done, checkpoint));
        }
        let mut unfinished: Vec<String> = checkpoints
            .iter()
            .filter(|(_, (done, _))| !done)
            .map(|(shard, _)| shard.clone())
            .collect();
        unfinished.extend(unreadable);
        let mine = match leases.turn(&unfinished).await {
            Ok(mine) => mine,
            Err(error) => {
                tracing::warn!(source = %source.name, error = %format!("{error:#}"), "cannot renew or take leases; reading nothing this turn");
                BTreeSet::new()
            }
        };
        // An iterator of a shard another worker may have read meanwhile would be stale.
        iterators.retain(|shard, _| leases.holds(shard));
        for shard in &shards {
            if !mine.contains(&shard.id) {
                continue;
            }
            let parent_open = shard
                .parent
                .as_ref()
                .is_some_and(|p| checkpoints.get(p).is_some_and(|(done, _)| !done));
            let Some((false, checkpoint)) = checkpoints.get(&shard.id) else {
                continue; // finished, or its checkpoint could not be read
            };
            if parent_open || *stop.borrow() {
                continue;
            }
            // Renewed before a long read, so the last shards of a turn do not
            // run into their lease's end.
            if let Err(error) = leases.renew(&shard.id).await {
                tracing::warn!(source = %source.name, shard = %shard.id, error = %format!("{error:#}"), "cannot renew the lease");
            }
            let turn = read_shard(
                &source,
                &stream,
                &shard.id,
                checkpoint.clone(),
                &mut iterators,
                &leases,
            )
            .await;
            if let Err(error) = turn {
                tracing::warn!(source = %source.name, shard = %shard.id, error = %format!("{error:#}"), "reading the shard failed; it is read again from its checkpoint");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(source.poll) => {}
            _ = stop.changed() => {}
        }
    }
    // Handed over at once rather than when they expire.
    if let Err(error) = leases.release_all().await {
        tracing::warn!(source = %source.name, error = %format!("{error:#}"), "cannot release the leases; they expire instead");
    }
    Ok(())
}

/// Reads one shard for a turn, from where the last turn left it (else from
/// its checkpoint), delivering each batch and checkpointing after it.
async fn read_shard(
    source: &SourceParts,
    stream: &impl ShardedStream,
    shard: &str,
    mut checkpoint: Checkpoint,
    iterators: &mut HashMap<String, String>,
    leases: &Leases,
) -> crate::Result<()> {
    let lake = &source.delivery.lake;
    // Taken out: an error leaves no iterator behind, so the next turn starts
    // again from the checkpoint.
    let mut iterator = match iterators.remove(shard) {
        // Held since before the turn's checkpoint read: that one is current.
        Some(iterator) => Some(iterator),
        None => {
            // Read again now the lease is won: a worker that held the shard
            // before may have moved it on since the turn began.
            checkpoint = source.checkpoint(lake, shard).await?;
            stream
                .iterator(
                    shard,
                    checkpoint.sequence_number.as_deref(),
                    source.starting_position,
                )
                .await?
        }
    };
    for _ in 0..READS_PER_TURN {
        let Some(current) = iterator.take() else {
            // The shard has ended (split, merged, or its stream turned off).
            checkpoint.finished = true;
            source.save(lake, shard, &checkpoint).await?;
            return Ok(());
        };
        if !leases.may_read(shard) {
            // Near the lease's end: leave the shard alone, keeping its iterator.
            iterators.insert(shard.to_string(), current);
            return Ok(());
        }
        let (events, next) = stream.records(shard, current, u32::MAX).await?;
        iterator = next;
        let Some(last) = events.last().map(|e| e.sequence_number.to_string()) else {
            if let Some(next) = iterator {
                iterators.insert(shard.to_string(), next);
                return Ok(()); // caught up: go on from here next turn
            }
            continue;
        };
        source
            .stats
            .records_in
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        let dead_letters = match &source.dead_letters {
            Some(stream) => DeadLetters::Stream(stream.as_ref()),
            None => DeadLetters::Lake("_dead_letters"),
        };
        let report = handle_batch(
            source.processor.as_ref(),
            &source.delivery,
            dead_letters,
            &source.name,
            &events,
        )
        .await?;
        let stats = &source.stats;
        stats
            .rows_delivered
            .fetch_add(report.rows_delivered as u64, Ordering::Relaxed);
        stats
            .dead_lettered
            .fetch_add(report.dead_lettered as u64, Ordering::Relaxed);
        stats
            .objects
            .fetch_add(report.objects as u64, Ordering::Relaxed);
        if !leases.may_read(shard) {
            // The batch is delivered, but the lease may be someone else's by
            // now: a checkpoint written this late could move theirs back.
            return Ok(());
        }
        checkpoint.sequence_number = Some(last);
        source.save(lake, shard, &checkpoint).await?;
    }
    // The turn is over with the shard still open: go on from here next turn.
    if let Some(next) = iterator {
        iterators.insert(shard.to_string(), next);
    }
    Ok(())
}
