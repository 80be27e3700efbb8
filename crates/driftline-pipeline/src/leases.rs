//! Shard leases in the lake, so that several `driftline run` processes share
//! the shards of one AWS stream and no shard is read by two at once (as the
//! KCL does with its DynamoDB lease table, here with create-only objects,
//! which every lake backend has: a directory, memory, S3).
//!
//! ```text
//! _leases/KIND/NAME/SHARD/EPOCH.json     {"owner": WORKER, "expires_ms": T}   newest epoch rules
//! _leases/KIND/NAME/_workers/WORKER.json {"expires_ms": T}                    a live worker
//! ```
//!
//! Taking, renewing or releasing a lease creates the next epoch; creation is
//! create-only, so of two workers racing for a shard exactly one wins. A
//! worker takes free or expired leases up to its fair share (the shards over
//! the live workers, rounded up) and releases what it holds beyond it, between
//! turns, so a second process gets shards within a few turns.
//!
//! Time is never compared across machines (as in the KCL): another worker's
//! lease has expired when its epoch has not changed for the lease time on the
//! observer's own clock, and a worker is live while its heartbeat keeps
//! changing. A holder counts its lease time from before it asked for the
//! epoch, and reads only until a third of it is left, so it has stopped before
//! any observer (who saw the epoch after it was created) counts it expired.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use driftline_lake::Lake;

/// How long a lease lasts without renewal.
pub const LEASE_TIME: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("the lease table: {0}")]
    Lake(#[from] driftline_lake::LakeError),
    #[error("the lease table: {0}")]
    Encode(#[from] serde_json::Error),
}

type Result<T, E = LeaseError> = std::result::Result<T, E>;

#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
struct LeaseBody {
    /// Empty once released.
    owner: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Heartbeat {
    /// Changes with every turn of its worker.
    beat: u64,
}

/// A lease this worker holds, timed on this worker's clock.
#[derive(Clone, Copy, Debug)]
struct Held {
    epoch: u64,
    expires: Instant,
}

pub struct Leases {
    lake: Lake,
    prefix: String,
    worker: String,
    lease_time: Duration,
    held: BTreeMap<String, Held>,
    /// Others' leases: the epoch last seen and since when (this clock).
    observed: HashMap<String, (u64, Instant)>,
    /// Others' heartbeats: the beat last seen and since when.
    heartbeats: HashMap<String, (u64, Instant)>,
    beat: u64,
}

impl Leases {
    pub fn new(lake: Lake, kind: &str, name: &str, lease_time: Duration) -> Leases {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Leases {
            lake,
            prefix: format!("_leases/{kind}/{name}"),
            worker: format!("{}-{nanos:x}", std::process::id()),
            lease_time,
            held: BTreeMap::new(),
            observed: HashMap::new(),
            heartbeats: HashMap::new(),
            beat: 0,
        }
    }

    /// This worker's name in the lease objects.
    pub fn worker(&self) -> &str {
        &self.worker
    }

    /// One turn over `shards` (those not finished): announces this worker,
    /// renews its leases, releases any beyond its fair share and takes free
    /// ones up to it. Returns the shards it may read now.
    pub async fn turn(&mut self, shards: &[String]) -> Result<BTreeSet<String>> {
        self.beat += 1;
        self.lake
            .write(
                &format!("{}/_workers/{}.json", self.prefix, self.worker),
                serde_json::to_vec(&Heartbeat { beat: self.beat })?,
            )
            .await?;
        let live = self.live_workers().await?.max(1);
        let fair = shards.len().div_ceil(live);
        let wanted: BTreeSet<&String> = shards.iter().collect();
        // Leases of shards that are gone or finished are let go.
        let gone: Vec<String> = self
            .held
            .keys()
            .filter(|s| !wanted.contains(s))
            .cloned()
            .collect();
        for shard in gone {
            self.release(&shard).await?;
        }
        let mut free = Vec::new();
        for shard in shards {
            // One shard's trouble does not stop the others' renewals.
            let (epoch, lease) = match self.newest(shard).await {
                Ok(newest) => newest,
                Err(error) => {
                    tracing::warn!(shard = %shard, error = %format!("{error:#}"), "cannot read the lease");
                    continue;
                }
            };
            match self.held.get(shard).copied() {
                Some(held) if held.epoch == epoch => {
                    if let Err(error) = self.renew(shard).await {
                        tracing::warn!(shard = %shard, error = %format!("{error:#}"), "cannot renew the lease");
                    }
                }
                Some(_) => {
                    // Someone else wrote a newer epoch: it is theirs now.
                    self.held.remove(shard);
                }
                None => match lease {
                    None => free.push((shard.clone(), 0)),
                    Some(lease) if lease.owner.is_empty() => free.push((shard.clone(), epoch + 1)),
                    Some(_) => {
                        let seen = self
                            .observed
                            .entry(shard.clone())
                            .or_insert((epoch, Instant::now()));
                        if seen.0 != epoch {
                            *seen = (epoch, Instant::now());
                        } else if seen.1.elapsed() >= self.lease_time {
                            free.push((shard.clone(), epoch + 1));
                        }
                    }
                },
            }
        }
        while self.held.len() > fair {
            let Some(shard) = self.held.keys().next_back().cloned() else {
                break;
            };
            self.release(&shard).await?;
        }
        for (shard, epoch) in free {
            if self.held.len() >= fair {
                break;
            }
            if let Err(error) = self.claim(&shard, epoch).await {
                tracing::warn!(shard = %shard, error = %format!("{error:#}"), "cannot take the lease");
            }
        }
        Ok(self
            .held
            .keys()
            .filter(|shard| self.may_read(shard))
            .cloned()
            .collect())
    }

    /// Whether this worker holds `shard`'s lease (readable or not).
    pub fn holds(&self, shard: &str) -> bool {
        self.held.contains_key(shard)
    }

    /// Renews `shard`'s lease now if a third of the lease time has passed.
    pub async fn renew(&mut self, shard: &str) -> Result<()> {
        if let Some(held) = self.held.get(shard).copied() {
            if held.expires.saturating_duration_since(Instant::now()) < self.lease_time * 2 / 3 {
                self.claim(shard, held.epoch + 1).await?;
            }
        }
        Ok(())
    }

    /// Whether this worker may read `shard` now: it holds the lease and is
    /// not within a third of the lease time of its expiry.
    pub fn may_read(&self, shard: &str) -> bool {
        self.held
            .get(shard)
            .is_some_and(|held| Instant::now() + self.lease_time / 3 < held.expires)
    }

    /// Until when this worker may read `shard` (a third of the lease time
    /// before it expires), if it holds it.
    pub fn readable_until(&self, shard: &str) -> Option<std::time::Instant> {
        self.held
            .get(shard)
            .and_then(|held| held.expires.checked_sub(self.lease_time / 3))
            .filter(|until| *until > Instant::now())
    }

    /// Lets every lease go (on a clean stop), so others need not wait for expiry.
    pub async fn release_all(&mut self) -> Result<()> {
        let shards: Vec<String> = self.held.keys().cloned().collect();
        for shard in shards {
            self.release(&shard).await?;
        }
        self.lake
            .delete(&format!("{}/_workers/{}.json", self.prefix, self.worker))
            .await?;
        Ok(())
    }

    async fn release(&mut self, shard: &str) -> Result<()> {
        if let Some(held) = self.held.remove(shard) {
            let body = LeaseBody {
                owner: String::new(),
            };
            // Lost to someone else already if it cannot be created: nothing to do.
            self.lake
                .create(
                    &self.lease_path(shard, held.epoch + 1),
                    serde_json::to_vec(&body)?,
                )
                .await?;
        }
        Ok(())
    }

    /// Creates epoch `epoch` of `shard`'s lease for this worker; held if it won.
    async fn claim(&mut self, shard: &str, epoch: u64) -> Result<()> {
        // Counted from before the request: observers see the epoch only after.
        let asked = Instant::now();
        let body = LeaseBody {
            owner: self.worker.clone(),
        };
        let created = self
            .lake
            .create(&self.lease_path(shard, epoch), serde_json::to_vec(&body)?)
            .await?;
        // An epoch can be created again after it was deleted (two epochs on):
        // the claim stands only if no later epoch exists.
        if !created || self.newest(shard).await?.0 != epoch {
            self.held.remove(shard);
            return Ok(());
        }
        self.held.insert(
            shard.to_string(),
            Held {
                epoch,
                expires: asked + self.lease_time,
            },
        );
        if let Some(old) = epoch.checked_sub(2) {
            // Two epochs back can go (the newest and its predecessor stay);
            // left behind if it cannot, which costs only a listing entry.
            let _ = self.lake.delete(&self.lease_path(shard, old)).await;
        }
        Ok(())
    }

    /// The newest epoch of `shard`'s lease and its body (`None`: never leased).
    async fn newest(&self, shard: &str) -> Result<(u64, Option<LeaseBody>)> {
        let epochs = self.lake.list(&format!("{}/{shard}/", self.prefix)).await?;
        let Some(epoch) = epochs
            .iter()
            .filter_map(|p| p.rsplit('/').next()?.strip_suffix(".json")?.parse().ok())
            .max()
        else {
            return Ok((0, None));
        };
        let body = match self.lake.read(&self.lease_path(shard, epoch)).await? {
            Some(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
            None => LeaseBody::default(), // deleted under us: treat as free
        };
        Ok((epoch, Some(body)))
    }

    /// Workers whose heartbeat changed within the lease time (this one
    /// included); heartbeats unchanged for ten lease times are deleted.
    async fn live_workers(&mut self) -> Result<usize> {
        let mut live = 0;
        for path in self
            .lake
            .list(&format!("{}/_workers/", self.prefix))
            .await?
        {
            let Some(bytes) = self.lake.read(&path).await? else {
                continue;
            };
            let Ok(heartbeat) = serde_json::from_slice::<Heartbeat>(&bytes) else {
                continue;
            };
            let seen = self
                .heartbeats
                .entry(path.clone())
                .or_insert((heartbeat.beat, Instant::now()));
            if seen.0 != heartbeat.beat {
                *seen = (heartbeat.beat, Instant::now());
            }
            let quiet = seen.1.elapsed();
            if quiet < self.lease_time || path.ends_with(&format!("/{}.json", self.worker)) {
                live += 1;
            } else if quiet > self.lease_time * 10 {
                // A worker gone for good; best effort.
                let _ = self.lake.delete(&path).await;
                self.heartbeats.remove(&path);
            }
        }
        Ok(live)
    }

    fn lease_path(&self, shard: &str, epoch: u64) -> String {
        format!("{}/{shard}/{epoch:020}.json", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shards(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("shardId-{i:012}")).collect()
    }

    #[tokio::test]
    async fn two_workers_share_the_shards_and_never_hold_one_together() {
        let lake = Lake::open("memory://").expect("lake");
        let all = shards(5);
        let mut a = Leases::new(lake.clone(), "kinesis", "s", Duration::from_secs(10));
        let mut b = Leases::new(lake.clone(), "kinesis", "s", Duration::from_secs(10));
        b.worker.push_str("-b");
        let (mut mine_a, mut mine_b) = (BTreeSet::new(), BTreeSet::new());
        for _ in 0..4 {
            mine_a = a.turn(&all).await.expect("turn a");
            assert!(mine_a.is_disjoint(&mine_b), "{mine_a:?} {mine_b:?}");
            mine_b = b.turn(&all).await.expect("turn b");
            assert!(mine_a.is_disjoint(&mine_b), "{mine_a:?} {mine_b:?}");
        }
        assert_eq!(mine_a.len() + mine_b.len(), 5, "{mine_a:?} {mine_b:?}");
        assert!(mine_a.len().abs_diff(mine_b.len()) <= 1);
        // a clean stop hands everything over at the next turn
        a.release_all().await.expect("release");
        assert_eq!(b.turn(&all).await.expect("turn").len(), 5);
    }

    #[tokio::test]
    async fn a_worker_that_vanished_loses_its_shards_when_they_expire() {
        let lake = Lake::open("memory://").expect("lake");
        let all = shards(3);
        let lease = Duration::from_millis(600);
        let mut a = Leases::new(lake.clone(), "dynamodb", "t", lease);
        let mut b = Leases::new(lake.clone(), "dynamodb", "t", lease);
        b.worker.push_str("-b");
        assert_eq!(a.turn(&all).await.expect("turn").len(), 3);
        // b sees a live and its leases unexpired: nothing to take
        assert!(b.turn(&all).await.expect("turn").is_empty());
        drop(a); // gone without releasing
        tokio::time::sleep(lease + Duration::from_millis(50)).await;
        assert_eq!(b.turn(&all).await.expect("turn").len(), 3);
        // a holder stops reading a third of the lease time before expiry
        assert!(b.may_read(&all[0]));
        tokio::time::sleep(lease * 2 / 3 + Duration::from_millis(20)).await;
        assert!(!b.may_read(&all[0]));
    }

    #[tokio::test]
    async fn leases_kept_alive_are_never_taken_however_long_others_watch() {
        let lake = Lake::open("memory://").expect("lake");
        let all = shards(3);
        let lease = Duration::from_millis(500);
        let mut a = Leases::new(lake.clone(), "kinesis", "w", lease);
        let mut b = Leases::new(lake.clone(), "kinesis", "w", lease);
        b.worker.push_str("-b");
        let started = Instant::now();
        let (mut mine_a, mut mine_b) = (BTreeSet::new(), BTreeSet::new());
        // three lease times of turns, each worker every 40 ms
        while started.elapsed() < lease * 3 {
            mine_a = a.turn(&all).await.expect("turn a");
            assert!(mine_a.is_disjoint(&mine_b), "{mine_a:?} {mine_b:?}");
            mine_b = b.turn(&all).await.expect("turn b");
            assert!(mine_a.is_disjoint(&mine_b), "{mine_a:?} {mine_b:?}");
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        assert_eq!(mine_a.len() + mine_b.len(), 3, "{mine_a:?} {mine_b:?}");
        assert_eq!((mine_a.len(), mine_b.len()), (2, 1));
    }
}
