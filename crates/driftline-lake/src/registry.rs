//! The model registry, kept in the lake's object store beside the data, so
//! the lake directory (or bucket) alone holds the whole state.
//!
//! Layout under `registry/MODEL/`:
//! - `artifacts/VERSION-NONCE.bin`: the model artifact, written first;
//! - `versions/VERSION.json`: the version record (parameters, training data,
//!   parent, metrics when trained), claimed with a create-only put, so two
//!   writers cannot both claim a version number: the loser takes the next;
//! - `attachments/VERSION/NAME`: what else belongs to a version (its
//!   data-drift reference);
//! - `decisions/SEQ.json`: an append-only log of status changes (shadow,
//!   canary, champion, archived, rejected) with the reason and metrics, each
//!   claimed create-only in turn.
//!
//! Every step is one atomic object write, and the state is the fold of the
//! decisions over the versions: a crash between two steps leaves a registry
//! that reads consistently (at worst an orphan artifact or a candidate that
//! was never decided on).

use std::collections::BTreeMap;

use object_store::path::Path;
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};

use crate::error::{LakeError, Result};
use crate::lake::Lake;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Candidate,
    Shadow,
    Canary,
    Champion,
    Archived,
    Rejected,
}

/// The exact data a version was trained on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainingData {
    /// Lake objects the examples were read from.
    pub lake_objects: Vec<String>,
    /// First and last stream positions (sequence numbers) of the examples, per shard.
    pub stream_positions: BTreeMap<String, (String, String)>,
    pub examples: usize,
    /// Why this window: "since drift point at example N", "last 5000", ...
    pub window: String,
}

/// What a version is, written once when it is registered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VersionRecord {
    pub version: u64,
    pub parent: Option<u64>,
    pub learner: String,
    pub parameters: serde_json::Value,
    pub training: TrainingData,
    /// Metrics on its evaluation set when it was trained.
    pub metrics: BTreeMap<String, f64>,
    pub created_ms: i64,
    /// Path of the artifact in the lake.
    pub artifact: String,
}

/// One status change, with its reason.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub seq: u64,
    pub version: u64,
    pub status: Status,
    pub reason: String,
    pub metrics: BTreeMap<String, f64>,
    pub at_ms: i64,
    /// The access key that asked for it, when a person did (promote, rollback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// A version with its current status and the decisions that led there.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VersionState {
    #[serde(flatten)]
    pub record: VersionRecord,
    pub status: Status,
    pub decisions: Vec<Decision>,
}

#[derive(Clone, Debug)]
pub struct Registry {
    lake: Lake,
    model: String,
}

impl Registry {
    pub fn new(lake: Lake, model: &str) -> Result<Registry> {
        let valid = !model.is_empty()
            && model
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            return Err(LakeError::Schema(format!(
                "model name {model:?} must be letters, digits, '-' or '_'"
            )));
        }
        Ok(Registry {
            lake,
            model: model.to_string(),
        })
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    fn path(&self, rest: &str) -> String {
        format!("registry/{}/{rest}", self.model)
    }

    /// Registers a new version: writes the artifact, then claims the next
    /// free version number. Returns the record as stored.
    pub async fn register(
        &self,
        mut record: VersionRecord,
        artifact: Vec<u8>,
    ) -> Result<VersionRecord> {
        let mut version = self.last_number("versions").await?.map_or(1, |v| v + 1);
        let nonce = unique_nonce();
        loop {
            let artifact_path = self.path(&format!("artifacts/{version:010}-{nonce}.bin"));
            self.lake.write(&artifact_path, artifact.clone()).await?;
            record.version = version;
            record.artifact = artifact_path;
            record.created_ms = now_ms();
            let bytes =
                serde_json::to_vec_pretty(&record).map_err(|e| LakeError::Schema(e.to_string()))?;
            match self
                .create(&self.path(&format!("versions/{version:010}.json")), bytes)
                .await?
            {
                true => return Ok(record),
                false => {
                    // Another writer claimed it: ours is an orphan artifact.
                    let _ = self
                        .lake
                        .store()
                        .delete(&Path::from(record.artifact.as_str()))
                        .await;
                    version += 1;
                }
            }
        }
    }

    /// Records a status change of `version`, appended to the decision log.
    pub async fn decide(
        &self,
        version: u64,
        status: Status,
        reason: &str,
        metrics: BTreeMap<String, f64>,
    ) -> Result<Decision> {
        self.decide_by(version, status, reason, metrics, None).await
    }

    /// [`Registry::decide`], recording the access key that asked for it.
    pub async fn decide_by(
        &self,
        version: u64,
        status: Status,
        reason: &str,
        metrics: BTreeMap<String, f64>,
        by: Option<&str>,
    ) -> Result<Decision> {
        let mut seq = self.last_number("decisions").await?.map_or(1, |s| s + 1);
        loop {
            let decision = Decision {
                seq,
                version,
                status,
                reason: reason.to_string(),
                metrics: metrics.clone(),
                at_ms: now_ms(),
                by: by.map(str::to_string),
            };
            let bytes = serde_json::to_vec_pretty(&decision)
                .map_err(|e| LakeError::Schema(e.to_string()))?;
            if self
                .create(&self.path(&format!("decisions/{seq:010}.json")), bytes)
                .await?
            {
                return Ok(decision);
            }
            seq += 1;
        }
    }

    /// Every version with its status (the fold of the decisions), oldest first.
    pub async fn versions(&self) -> Result<Vec<VersionState>> {
        let mut versions: BTreeMap<u64, VersionState> = BTreeMap::new();
        for path in self.lake.list(&self.path("versions")).await? {
            let bytes = self.lake.read(&path).await?.unwrap_or_default();
            let record: VersionRecord = serde_json::from_slice(&bytes)
                .map_err(|e| LakeError::Schema(format!("{path}: {e}")))?;
            versions.insert(
                record.version,
                VersionState {
                    record,
                    status: Status::Candidate,
                    decisions: Vec::new(),
                },
            );
        }
        for path in self.lake.list(&self.path("decisions")).await? {
            let bytes = self.lake.read(&path).await?.unwrap_or_default();
            let decision: Decision = serde_json::from_slice(&bytes)
                .map_err(|e| LakeError::Schema(format!("{path}: {e}")))?;
            if decision.status == Status::Champion {
                // One champion at a time: the previous one is archived by this decision.
                for state in versions.values_mut() {
                    if state.status == Status::Champion && state.record.version != decision.version
                    {
                        state.status = Status::Archived;
                    }
                }
            }
            if let Some(state) = versions.get_mut(&decision.version) {
                state.status = decision.status;
                state.decisions.push(decision);
            }
        }
        Ok(versions.into_values().collect())
    }

    /// The current champion, if any.
    pub async fn champion(&self) -> Result<Option<VersionState>> {
        Ok(self
            .versions()
            .await?
            .into_iter()
            .find(|v| v.status == Status::Champion))
    }

    pub async fn artifact(&self, record: &VersionRecord) -> Result<Vec<u8>> {
        self.lake
            .read(&record.artifact)
            .await?
            .ok_or_else(|| LakeError::Location {
                location: record.artifact.clone(),
                reason: "the artifact of this version is missing".into(),
            })
    }

    /// Stores data that belongs to a version beside it (the data-drift
    /// reference, say), under `attachments/VERSION/NAME`; written again, replaced.
    pub async fn write_attachment(&self, version: u64, name: &str, bytes: Vec<u8>) -> Result<()> {
        self.lake
            .write(
                &self.path(&format!("attachments/{version:010}/{name}")),
                bytes,
            )
            .await
    }

    /// An attachment of a version; `None` when it has none of that name.
    pub async fn attachment(&self, version: u64, name: &str) -> Result<Option<Vec<u8>>> {
        self.lake
            .read(&self.path(&format!("attachments/{version:010}/{name}")))
            .await
    }

    /// Creates an object only if there is none; false if one exists.
    async fn create(&self, path: &str, bytes: Vec<u8>) -> Result<bool> {
        self.lake.create(path, bytes).await
    }

    /// The highest number among `registry/MODEL/KIND/NNNNNNNNNN.json`.
    async fn last_number(&self, kind: &str) -> Result<Option<u64>> {
        Ok(self
            .lake
            .list(&self.path(kind))
            .await?
            .iter()
            .filter_map(|p| p.rsplit('/').next()?.strip_suffix(".json")?.parse().ok())
            .max())
    }
}

/// Distinct for every call, across threads and processes (the process id, the
/// time in nanoseconds and a counter), so that two writers racing for one
/// version never write the same artifact path.
fn unique_nonce() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{:x}-{nanos:x}-{count:x}", std::process::id())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> VersionRecord {
        VersionRecord {
            version: 0,
            parent: None,
            learner: "gbt".into(),
            parameters: serde_json::json!({"trees": 50}),
            training: TrainingData::default(),
            metrics: BTreeMap::new(),
            created_ms: 0,
            artifact: String::new(),
        }
    }

    #[tokio::test]
    async fn versions_are_numbered_and_decisions_fold_into_one_champion() {
        let dir = tempfile::tempdir().expect("dir");
        let lake = Lake::open(dir.path().to_str().expect("utf-8")).expect("lake");
        let registry = Registry::new(lake.clone(), "fraud").expect("registry");
        let v1 = registry
            .register(record(), b"one".to_vec())
            .await
            .expect("v1");
        let v2 = registry
            .register(record(), b"two".to_vec())
            .await
            .expect("v2");
        assert_eq!((v1.version, v2.version), (1, 2));
        registry
            .decide(1, Status::Champion, "first", BTreeMap::new())
            .await
            .expect("decide");
        registry
            .decide(2, Status::Champion, "better", BTreeMap::new())
            .await
            .expect("decide");
        let v3 = registry
            .register(record(), b"three".to_vec())
            .await
            .expect("v3");
        registry
            .decide(3, Status::Rejected, "worse", BTreeMap::new())
            .await
            .expect("decide");
        // read back by another handle on the same directory
        let again = Registry::new(
            Lake::open(dir.path().to_str().expect("utf-8")).expect("lake"),
            "fraud",
        )
        .expect("registry");
        let states = again.versions().await.expect("versions");
        let statuses: Vec<Status> = states.iter().map(|s| s.status).collect();
        assert_eq!(
            statuses,
            [Status::Archived, Status::Champion, Status::Rejected]
        );
        assert_eq!(
            again
                .champion()
                .await
                .expect("champion")
                .expect("one")
                .record
                .version,
            2
        );
        assert_eq!(again.artifact(&v3).await.expect("artifact"), b"three");
    }

    // Racing writers through two handles: tests/conformance.rs, on every backend.

    #[test]
    fn model_names_are_checked() {
        let lake = Lake::open("memory://").expect("lake");
        assert!(Registry::new(lake, "../etc").is_err());
    }
}
