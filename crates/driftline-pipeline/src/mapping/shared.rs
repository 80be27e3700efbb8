//! A mapping of a stream that several processes read (Kinesis Data Streams,
//! DynamoDB Streams): the same batches, retries, bisection, partial batch
//! failures, record ages, parallelization and dead letters as a mapping of
//! the embedded log, with the shards shared through leases in the lake
//! (`crate::leases`) and checkpoints beside them.
//!
//! It runs in turns: each turn this process takes its share of the leases,
//! then reads each shard it holds (parents first) for at most the turn,
//! delivering and checkpointing before the turn ends. No write is in flight
//! when a lease moves, and a checkpoint is written only while the lease is
//! safely held, so a shard's next owner starts from a checkpoint nobody moves
//! behind it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Buffer, MappingError, Parts, ShardWorker, Source};
use crate::leases::Leases;
use crate::read::{Checkpoints, ShardReader};

/// How long a turn reads, at most.
const TURN: Duration = Duration::from_secs(2);

/// Runs `parts` over the shards `reader` lists that `leases` gives this
/// process, until `stop`; `poll` is the pause between turns.
pub async fn run_shared<R: ShardReader, C: Checkpoints>(
    parts: Parts,
    reader: R,
    checkpoints: C,
    mut leases: Leases,
    poll: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), MappingError> {
    let name = parts.config.name.get_ref().clone();
    tracing::info!(source = %name, worker = %leases.worker(), "reading the shards this worker leases");
    let source = Arc::new(Source {
        mapping: parts,
        reader,
        checkpoints,
    });
    // Where each shard's reading goes on: a cursor is kept from turn to turn
    // (a new one from the checkpoint only at first or after an error), so
    // records put between two turns are not skipped.
    let mut cursors: HashMap<String, R::Cursor> = HashMap::new();
    while !*stop.borrow() {
        if let Err(error) = turn(&source, &mut leases, &mut cursors, &stop).await {
            tracing::warn!(source = %name, %error, "a turn failed; the next one reads from the checkpoints");
            cursors.clear();
        }
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = stop.changed() => {}
        }
    }
    // Handed over at once rather than when they expire.
    if let Err(error) = leases.release_all().await {
        tracing::warn!(source = %name, %error, "cannot release the leases; they expire instead");
    }
    Ok(())
}

/// One turn: the leases, then a slice of reading of each shard held.
async fn turn<R: ShardReader, C: Checkpoints>(
    source: &Arc<Source<R, C>>,
    leases: &mut Leases,
    cursors: &mut HashMap<String, R::Cursor>,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Result<(), MappingError> {
    let shards = source.reader.shards().await?;
    let mut done: BTreeMap<String, bool> = BTreeMap::new();
    let mut unreadable = Vec::new();
    for shard in &shards {
        match source.checkpoints.load(&shard.id).await {
            Ok(checkpoint) => {
                // A closed shard read up to its ending position is finished
                // even where the service never says so.
                let finished = checkpoint.finished
                    || shard.ending.as_ref().is_some_and(|end| {
                        checkpoint.position.as_ref().is_some_and(|at| at >= end)
                    });
                done.insert(shard.id.clone(), finished);
            }
            Err(error) => {
                tracing::warn!(shard = %shard.id, %error, "cannot read the checkpoint; the shard waits for the next turn");
                // Still unfinished as far as anyone knows: its lease is kept.
                unreadable.push(shard.id.clone());
            }
        }
    }
    let mut unfinished: Vec<String> = done
        .iter()
        .filter(|(_, finished)| !**finished)
        .map(|(shard, _)| shard.clone())
        .collect();
    unfinished.extend(unreadable);
    let mine: BTreeSet<String> = match leases.turn(&unfinished).await {
        Ok(mine) => mine,
        Err(error) => {
            tracing::warn!(%error, "cannot renew or take leases; reading nothing this turn");
            BTreeSet::new()
        }
    };
    // A cursor of a shard another worker may have read meanwhile would be stale.
    cursors.retain(|shard, _| leases.holds(shard));
    let listed: BTreeSet<&str> = shards.iter().map(|s| s.id.as_str()).collect();
    let mut slices = Vec::new();
    for shard in &shards {
        let parents_open = shard
            .parents
            .iter()
            .any(|p| listed.contains(p.as_str()) && !done.get(p).copied().unwrap_or(false));
        let readable = mine.contains(&shard.id)
            && done.get(&shard.id) == Some(&false)
            && !parents_open
            && !*stop.borrow();
        // Read until the turn's end, checkpoint only while the lease is held.
        let Some(safe) = leases.readable_until(&shard.id).filter(|_| readable) else {
            continue;
        };
        let worker = ShardWorker {
            source: source.clone(),
            shard: shard.id.clone(),
        };
        let cursor = cursors.remove(&shard.id);
        let stop = stop.clone();
        let until = safe.min(Instant::now() + TURN);
        slices.push(tokio::spawn(async move {
            let mut lag = 0;
            let read = worker.slice(cursor, until, safe, stop, &mut lag).await;
            worker
                .mapping()
                .stats
                .lag
                .fetch_sub(lag, std::sync::atomic::Ordering::Relaxed);
            (worker.shard, read)
        }));
    }
    // Every slice ends (delivered, checkpointed) before the next turn moves leases.
    let mut failure = None;
    for slice in slices {
        let (shard, read) = slice.await.map_err(|e| MappingError::Join(e.to_string()))?;
        match read {
            Ok(Some(cursor)) => {
                cursors.insert(shard, cursor);
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%shard, %error, "reading the shard failed; it is read again from its checkpoint");
                source
                    .mapping
                    .stats
                    .errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                failure = Some(error);
            }
        }
    }
    failure.map_or(Ok(()), Err)
}

impl<R: ShardReader, C: Checkpoints> ShardWorker<R, C> {
    /// Reads the shard until `until` (or its end, or `stop`), delivering and
    /// checkpointing (before `safe`, while the lease is held) before it
    /// returns; the cursor to go on from next turn, `None` once the shard is
    /// finished.
    async fn slice(
        &self,
        cursor: Option<R::Cursor>,
        until: Instant,
        safe: Instant,
        mut stop: tokio::sync::watch::Receiver<bool>,
        lag: &mut u64,
    ) -> Result<Option<R::Cursor>, MappingError> {
        let mapping = self.mapping();
        let mut cursor = match cursor {
            Some(cursor) => cursor,
            // From the checkpoint, read again now the lease is won: a
            // worker that held the shard before may have moved it on.
            None => self.open_at_checkpoint().await?,
        };
        let mut buffer = Buffer::default();
        loop {
            let (batch, ended) = self
                .gather(&mut cursor, &buffer, &mut stop, Some(until), lag)
                .await?;
            let caught_up = batch.is_empty();
            if !batch.is_empty() {
                tokio::task::block_in_place(|| self.handle(batch, &mut buffer))?;
            }
            let due = buffer
                .since
                .is_some_and(|t| t.elapsed() >= mapping.delivery.max_buffer)
                || buffer.bytes >= mapping.delivery.max_buffer_bytes;
            let over = caught_up || ended || *stop.borrow() || Instant::now() >= until;
            if due || over {
                // The batch is delivered either way; its checkpoint only while
                // the lease is safely held (a late one could move the next
                // owner's back).
                let held = Instant::now() < safe;
                if buffer.first.is_some() {
                    self.deliver(&mut buffer, ended, held).await?;
                } else if ended && held {
                    self.finish().await?;
                }
            }
            if ended {
                return Ok(None);
            }
            if over {
                return Ok(Some(cursor));
            }
        }
    }

    /// Marks the shard finished at its checkpoint's position.
    async fn finish(&self) -> Result<(), MappingError> {
        let checkpoints = &self.source.checkpoints;
        let mut checkpoint = checkpoints.load(&self.shard).await?;
        checkpoint.finished = true;
        checkpoints.save(&self.shard, &checkpoint).await?;
        Ok(())
    }
}
