//! The lake: a root in an object store, where delivery writes Parquet objects.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutOptions, PutPayload};

use crate::error::{LakeError, Result};
use crate::object_name::{partition_path, ObjectName};
use crate::parquet_io::{encode_parquet, Compression};
use crate::table::{Row, TableSchema};
use crate::Position;

/// An object delivery wrote: its path in the lake and the rows it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrittenObject {
    pub path: String,
    pub rows: usize,
    pub bytes: usize,
}

/// An object as a listing shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredObject {
    pub path: String,
    pub size: u64,
    pub last_modified_ms: i64,
    /// The store's ETag, or size and modification time where it has none:
    /// changes when the object is replaced.
    pub version: String,
}

#[derive(Clone, Debug)]
pub struct Lake {
    store: Arc<dyn ObjectStore>,
    location: String,
}

/// An S3 bucket (and a prefix in it) as the lake. Conditional puts
/// (`If-None-Match`) keep the registry's create-only claims.
#[cfg(feature = "aws")]
fn s3_store(
    rest: &str,
    options: &[(&str, &str)],
) -> std::result::Result<Arc<dyn ObjectStore>, String> {
    use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
    use object_store::prefix::PrefixStore;

    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err("an s3:// location needs a bucket: s3://BUCKET[/PREFIX]".into());
    }
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    for (key, value) in options {
        let key: AmazonS3ConfigKey = key.parse().map_err(|e| format!("option {key:?}: {e}"))?;
        builder = builder.with_config(key, *value);
    }
    // A local S3-compatible endpoint (moto, minio) speaks plain HTTP.
    let endpoint = builder.get_config_value(&AmazonS3ConfigKey::Endpoint);
    if endpoint.is_some_and(|e| e.starts_with("http://")) {
        builder = builder.with_allow_http(true);
    }
    let store = builder.build().map_err(|e| e.to_string())?;
    let prefix = prefix.trim_matches('/');
    Ok(if prefix.is_empty() {
        Arc::new(store)
    } else {
        Arc::new(PrefixStore::new(store, prefix))
    })
}

#[cfg(not(feature = "aws"))]
fn s3_store(
    _rest: &str,
    _options: &[(&str, &str)],
) -> std::result::Result<Arc<dyn ObjectStore>, String> {
    Err(
        "s3:// needs driftline built with the aws feature (cargo build --release --features aws)"
            .into(),
    )
}

impl Lake {
    /// Opens a lake: a local directory (a path or `file:///...`, created if
    /// missing) or `memory://` (for tests).
    ///
    /// With the `aws` feature, also `s3://BUCKET[/PREFIX]`, configured from
    /// the environment as the AWS tools are (`AWS_REGION`, credentials,
    /// `AWS_ENDPOINT_URL` for an S3-compatible endpoint, `AWS_SERVER_SIDE_ENCRYPTION`
    /// and `AWS_SSE_KMS_KEY_ID` for encryption at rest).
    pub fn open(location: &str) -> Result<Lake> {
        Self::open_with(location, &[])
    }

    /// [`Lake::open`] with object-store settings that override the
    /// environment's (for `s3://`: `aws_endpoint`, `aws_region`, ...).
    pub fn open_with(location: &str, options: &[(&str, &str)]) -> Result<Lake> {
        let bad = |reason: String| LakeError::Location {
            location: location.to_string(),
            reason,
        };
        let store: Arc<dyn ObjectStore> = if location == "memory://" {
            Arc::new(InMemory::new())
        } else if let Some(rest) = location.strip_prefix("s3://") {
            s3_store(rest, options).map_err(bad)?
        } else if !options.is_empty() {
            return Err(bad(format!(
                "settings {:?} apply to s3:// lakes only",
                options.iter().map(|(k, _)| *k).collect::<Vec<_>>()
            )));
        } else if location.contains("://") && !location.starts_with("file://") {
            return Err(bad(
                "unsupported scheme: use a directory path, file://, s3:// or memory://".into(),
            ));
        } else {
            let dir = location.strip_prefix("file://").unwrap_or(location);
            std::fs::create_dir_all(dir).map_err(|e| bad(e.to_string()))?;
            let dir = std::fs::canonicalize(dir).map_err(|e| bad(e.to_string()))?;
            Arc::new(LocalFileSystem::new_with_prefix(&dir).map_err(|e| bad(e.to_string()))?)
        };
        Ok(Lake {
            store,
            location: location.to_string(),
        })
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Writes one delivery of a shard's rows (the shard's records `range.first`
    /// to `range.last`): one Parquet object per event-time partition, each named
    /// after the range, so writing the same delivery again replaces them.
    pub async fn write_delivery(
        &self,
        table: &str,
        schema: &TableSchema,
        range: &ObjectName,
        rows: &[Row],
        compression: Compression,
    ) -> Result<Vec<WrittenObject>> {
        let mut partitions: BTreeMap<String, Vec<&Row>> = BTreeMap::new();
        for row in rows {
            partitions
                .entry(partition_path(row.partition_time_us))
                .or_default()
                .push(row);
        }
        let name = range.file_name();
        let mut written = Vec::with_capacity(partitions.len());
        for (partition, rows) in partitions {
            let bytes = encode_parquet(schema, &rows, compression)?;
            let path = Path::from(format!("{table}/{partition}/{name}"));
            let size = bytes.len();
            self.store
                .put_opts(&path, PutPayload::from(bytes), PutOptions::default())
                .await?;
            written.push(WrittenObject {
                path: path.to_string(),
                rows: rows.len(),
                bytes: size,
            });
        }
        Ok(written)
    }

    /// Deletes a shard's objects that start after `committed` (the last
    /// sequence number its consumer checkpointed): the leftovers of a delivery
    /// interrupted between its uploads and its checkpoint, about to be redone.
    pub async fn remove_uncommitted(
        &self,
        table: &str,
        shard: &str,
        committed: Option<&Position>,
    ) -> Result<Vec<String>> {
        let prefix = Path::from(table);
        let objects: Vec<_> = self.store.list(Some(&prefix)).try_collect().await?;
        let mut removed = Vec::new();
        for object in objects {
            let Some(name) = object.location.filename().and_then(ObjectName::parse) else {
                continue;
            };
            if name.shard == shard && committed.is_none_or(|c| name.first > *c) {
                self.store.delete(&object.location).await?;
                removed.push(object.location.to_string());
            }
        }
        Ok(removed)
    }

    /// Every object under `prefix`, sorted by path.
    pub async fn objects(&self, prefix: &str) -> Result<Vec<StoredObject>> {
        let prefix = Path::from(prefix);
        let objects: Vec<_> = self.store.list(Some(&prefix)).try_collect().await?;
        let mut objects: Vec<StoredObject> = objects
            .into_iter()
            .map(|o| StoredObject {
                path: o.location.to_string(),
                size: o.size,
                last_modified_ms: o.last_modified.timestamp_millis(),
                version: o.e_tag.unwrap_or_else(|| {
                    format!(
                        "{}-{}",
                        o.size,
                        o.last_modified.timestamp_nanos_opt().unwrap_or(0)
                    )
                }),
            })
            .collect();
        objects.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(objects)
    }

    /// The bytes of one object; `None` when there is none at `path`.
    pub async fn read(&self, path: &str) -> Result<Option<Vec<u8>>> {
        match self.store.get(&Path::from(path)).await {
            Ok(result) => Ok(Some(result.bytes().await?.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// Writes (or replaces) one object.
    pub async fn write(&self, path: &str, bytes: Vec<u8>) -> Result<()> {
        self.store
            .put_opts(
                &Path::from(path),
                PutPayload::from(bytes),
                PutOptions::default(),
            )
            .await?;
        Ok(())
    }

    /// Creates an object only if there is none at `path`; false if one
    /// exists. Two writers racing for one path: exactly one gets true.
    pub async fn create(&self, path: &str, bytes: Vec<u8>) -> Result<bool> {
        let options = PutOptions {
            mode: object_store::PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&Path::from(path), PutPayload::from(bytes), options)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    /// Deletes one object; deleting one that is not there is not an error.
    pub async fn delete(&self, path: &str) -> Result<()> {
        match self.store.delete(&Path::from(path)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Paths of every object under `prefix`, sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        Ok(self
            .objects(prefix)
            .await?
            .into_iter()
            .map(|o| o.path)
            .collect())
    }
}

// Tests: tests/conformance.rs, the suite every backend passes.
