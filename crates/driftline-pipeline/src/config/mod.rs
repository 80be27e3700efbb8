//! `PIPELINE.toml`: streams, schemas, processors and the lake.
//!
//! Parsing rejects unknown keys and wrong types with the file, line and what
//! was expected (serde with `deny_unknown_fields` through the `toml` crate,
//! whose errors carry the span); references between sections (a processor's
//! stream, schema and dead-letter stream) are checked afterwards and point at
//! the line of the reference.

use std::path::{Path, PathBuf};

use driftline_lake::{Compression, Field, TableSchema};
use serde::Deserialize;
use toml::Spanned;

pub use model::ModelConfig;
pub use sources::{DynamodbSourceConfig, KinesisSourceConfig, SourceConfig};

use sources::{DeclaredSource, Source};

pub mod model;
mod sources;
mod validate;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    #[serde(default, rename = "stream")]
    pub streams: Vec<StreamConfig>,
    #[serde(default, rename = "schema")]
    pub schemas: Vec<SchemaConfig>,
    #[serde(default, rename = "processor")]
    pub processors: Vec<ProcessorConfig>,
    #[serde(default, rename = "model")]
    pub models: Vec<ModelConfig>,
    pub lake: Option<LakeConfig>,
    pub auth: Option<AuthConfig>,
    /// The landing sources (`[[source]]` of type "landing").
    #[serde(skip)]
    pub sources: Vec<SourceConfig>,
    /// The Kinesis and DynamoDB Streams sources (types "kinesis", "dynamodb").
    #[serde(skip)]
    pub kinesis: Vec<KinesisSourceConfig>,
    #[serde(skip)]
    pub dynamodb: Vec<DynamodbSourceConfig>,
    /// What the file says the old way, with the new way: to show the user.
    #[serde(skip)]
    pub notices: Vec<String>,
    /// `[[source]]` as written, and the old tables of AWS sources.
    #[serde(default, rename = "source")]
    declared_sources: Vec<DeclaredSource>,
    #[serde(default, rename = "kinesis")]
    old_kinesis: Vec<KinesisSourceConfig>,
    #[serde(default, rename = "dynamodb")]
    old_dynamodb: Vec<DynamodbSourceConfig>,
}

/// `[auth]`: the access keys `driftline run` requires of every request.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The credentials file, relative to the pipeline file, or `env:VAR`
    /// for its text; `driftline run --auth` overrides it.
    pub keys: String,
}

impl AuthConfig {
    /// Where the keys are, a relative path taken from `pipeline`'s folder.
    pub fn source(&self, pipeline: &std::path::Path) -> String {
        if self.keys.starts_with("env:") || std::path::Path::new(&self.keys).is_absolute() {
            return self.keys.clone();
        }
        match pipeline.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.join(&self.keys).display().to_string(),
            _ => self.keys.clone(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    pub name: Spanned<String>,
    #[serde(default = "default_shards")]
    pub shards: u32,
    /// Where the stream lives when not embedded: `kinesis://NAME` (region,
    /// endpoint and credentials from the standard AWS chain).
    pub url: Option<Spanned<String>>,
}

impl StreamConfig {
    /// The Kinesis stream's name, when the stream lives on Kinesis.
    pub fn kinesis(&self) -> Option<&str> {
        self.url
            .as_ref()
            .and_then(|url| url.get_ref().strip_prefix(KINESIS_SCHEME))
    }
}

/// The scheme of a stream that lives on Kinesis Data Streams.
pub const KINESIS_SCHEME: &str = "kinesis://";

/// The Kinesis stream named by `url` (`kinesis://NAME`), or why it is not one.
pub fn kinesis_url(url: &str) -> Result<&str, String> {
    let Some(name) = url.strip_prefix(KINESIS_SCHEME) else {
        return Err(format!(
            "url must be kinesis://NAME (a Kinesis data stream), not {url:?}"
        ));
    };
    sources::check_kinesis_name(name)?;
    Ok(name)
}

fn default_shards() -> u32 {
    1
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaConfig {
    pub name: Spanned<String>,
    pub fields: Vec<Field>,
    /// A timestamp field that is the event's time (and partitions the lake).
    pub event_time: Option<Spanned<String>>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartingPosition {
    #[default]
    TrimHorizon,
    Latest,
}

/// One event-source mapping and the processor it feeds, with Lambda's knobs.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessorConfig {
    pub name: Spanned<String>,
    pub stream: Spanned<String>,
    pub schema: Spanned<String>,
    /// The lake table its rows go to (default: the processor's name).
    pub table: Option<String>,
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    #[serde(default = "default_window_ms")]
    pub maximum_batching_window_ms: u64,
    #[serde(default)]
    pub starting_position: StartingPosition,
    /// Concurrent batches per shard (1..=10), each partition key in one of them.
    #[serde(default = "one")]
    pub parallelization_factor: usize,
    #[serde(default = "default_retries")]
    pub maximum_retry_attempts: u32,
    /// Records older than this (by arrival) are not processed but dead-lettered.
    pub maximum_record_age_s: Option<u64>,
    #[serde(default = "yes")]
    pub bisect_batch_on_error: bool,
    /// The dead-letter stream: failed records, with the reason, go there.
    pub on_failure: Option<Spanned<String>>,
    /// A jq program run on each event before the schema (see `transform`).
    pub transform: Option<Spanned<String>>,
    /// Where it runs: in `driftline run` (the default) or, for a stream on
    /// Kinesis, as the Lambda function of `driftline aws template`.
    pub runs_on: Option<Spanned<RunsOn>>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunsOn {
    #[default]
    Driftline,
    Lambda,
}

fn default_batch_size() -> usize {
    1000
}
fn default_window_ms() -> u64 {
    500
}
fn one() -> usize {
    1
}
fn default_retries() -> u32 {
    2
}
fn yes() -> bool {
    true
}

fn compile(
    transform: &Option<Spanned<String>>,
) -> Result<Option<crate::transform::JqTransform>, String> {
    transform
        .as_ref()
        .map(|code| crate::transform::JqTransform::compile(code.get_ref()))
        .transpose()
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LakeConfig {
    /// A directory or URL; `driftline run --lake` overrides it.
    #[serde(default = "default_lake")]
    pub url: String,
    #[serde(default = "default_buffer_s")]
    pub max_buffer_seconds: u64,
    #[serde(default = "default_buffer_bytes")]
    pub max_buffer_bytes: usize,
    #[serde(default)]
    pub compression: Compression,
    /// Server-side encryption of an S3 lake: "AES256", "aws:kms" or
    /// "aws:kms:dsse" (default: the bucket's own setting).
    pub encryption: Option<String>,
    /// The KMS key for "aws:kms" (default: the account's S3 key).
    pub kms_key_id: Option<String>,
}

impl Default for LakeConfig {
    fn default() -> Self {
        LakeConfig {
            url: default_lake(),
            max_buffer_seconds: default_buffer_s(),
            max_buffer_bytes: default_buffer_bytes(),
            compression: Compression::default(),
            encryption: None,
            kms_key_id: None,
        }
    }
}

impl LakeConfig {
    /// The object-store settings these keys stand for (see `Lake::open_with`).
    pub fn store_options(&self) -> Vec<(&'static str, &str)> {
        let mut options = Vec::new();
        if let Some(encryption) = &self.encryption {
            options.push(("aws_server_side_encryption", encryption.as_str()));
        }
        if let Some(key) = &self.kms_key_id {
            options.push(("aws_sse_kms_key_id", key.as_str()));
        }
        options
    }
}

fn default_lake() -> String {
    "./lake".into()
}
fn default_buffer_s() -> u64 {
    60
}
fn default_buffer_bytes() -> usize {
    64 * 1024 * 1024
}

impl PipelineConfig {
    pub fn load(path: &Path) -> Result<PipelineConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<PipelineConfig, ConfigError> {
        let invalid = |offset: usize, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            line: text[..offset.min(text.len())].matches('\n').count() + 1,
            message,
        };
        let mut config: PipelineConfig = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            invalid(offset, e.message().to_string())
        })?;
        let line = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        for declared in std::mem::take(&mut config.declared_sources) {
            let (source, notice) = declared
                .resolve()
                .map_err(|(at, message)| invalid(at, message))?;
            if let Some((at, notice)) = notice {
                config
                    .notices
                    .push(format!("{}:{}: {notice}", path.display(), line(at)));
            }
            match source {
                Source::Landing(s) => config.sources.push(s),
                Source::Kinesis(s) => config.kinesis.push(s),
                Source::Dynamodb(s) => config.dynamodb.push(s),
            }
        }
        for (old, kind, at) in std::mem::take(&mut config.old_kinesis)
            .into_iter()
            .map(|s| {
                let at = s.name.span().start;
                (Source::Kinesis(s), "kinesis", at)
            })
            .chain(
                std::mem::take(&mut config.old_dynamodb)
                    .into_iter()
                    .map(|s| {
                        let at = s.name.span().start;
                        (Source::Dynamodb(s), "dynamodb", at)
                    }),
            )
        {
            config.notices.push(format!(
                "{}:{}: [[{kind}]] is the old form: write [[source]] with type = \"{kind}\"",
                path.display(),
                line(at)
            ));
            match old {
                Source::Kinesis(s) => config.kinesis.push(s),
                Source::Dynamodb(s) => config.dynamodb.push(s),
                Source::Landing(s) => config.sources.push(s),
            }
        }
        config.validate(text, path)
    }

    /// Puts the named streams on Kinesis (`NAME` -> `kinesis://...`), as
    /// `driftline run --stream-url` does for the template's service, and
    /// validates the result again (`text` and `path` as given to `parse`).
    pub fn with_stream_urls(
        mut self,
        urls: &[(String, String)],
        text: &str,
        path: &Path,
    ) -> Result<PipelineConfig, ConfigError> {
        for (name, url) in urls {
            let refused = |message: String| ConfigError::Invalid {
                path: path.to_path_buf(),
                line: 0,
                message: format!("--stream-url {name}={url}: {message}"),
            };
            kinesis_url(url).map_err(refused)?;
            let stream = self
                .streams
                .iter_mut()
                .find(|s| s.name.get_ref() == name)
                .ok_or_else(|| refused("the pipeline declares no such stream".into()))?;
            stream.url = Some(Spanned::new(0..0, url.clone()));
        }
        self.validate(text, path)
    }

    pub fn schema(&self, name: &str) -> Option<&SchemaConfig> {
        self.schemas.iter().find(|s| s.name.get_ref() == name)
    }

    pub fn processor(&self, name: &str) -> Option<&ProcessorConfig> {
        self.processors.iter().find(|p| p.name.get_ref() == name)
    }

    /// What a processor or landing source runs, wherever it runs (in-process
    /// or as a Lambda function): its schema, with its transform in front.
    pub fn schema_processor(
        &self,
        schema: &str,
        transform: Result<Option<crate::transform::JqTransform>, String>,
    ) -> Result<(crate::processor::SchemaProcessor, TableSchema), String> {
        let schema = self
            .schema(schema)
            .ok_or_else(|| format!("schema {schema:?} is not defined"))?
            .table_schema()
            .map_err(|e| e.to_string())?;
        let processor =
            crate::processor::SchemaProcessor::new(schema.clone()).with_transform(transform?);
        Ok((processor, schema))
    }
}

impl SchemaConfig {
    pub fn table_schema(&self) -> Result<TableSchema, driftline_lake::LakeError> {
        TableSchema::new(
            self.fields.clone(),
            self.event_time.as_ref().map(|e| e.get_ref().as_str()),
        )
    }
}

impl ProcessorConfig {
    /// A mapping the pipeline makes for itself (a model's joined examples or
    /// labels), with the defaults a declared processor gets.
    pub fn internal(name: &str, stream: &str, maximum_batching_window_ms: u64) -> ProcessorConfig {
        let spanned = |s: &str| Spanned::new(0..0, s.to_string());
        ProcessorConfig {
            name: spanned(name),
            stream: spanned(stream),
            schema: spanned(""),
            table: None,
            batch_size: default_batch_size(),
            maximum_batching_window_ms,
            starting_position: StartingPosition::TrimHorizon,
            parallelization_factor: 1,
            maximum_retry_attempts: default_retries(),
            maximum_record_age_s: None,
            bisect_batch_on_error: true,
            on_failure: None,
            transform: None,
            runs_on: None,
        }
    }

    /// Whether it runs as a Lambda function rather than in `driftline run`.
    pub fn runs_on_lambda(&self) -> bool {
        self.runs_on
            .as_ref()
            .is_some_and(|r| *r.get_ref() == RunsOn::Lambda)
    }

    pub fn table(&self) -> &str {
        self.table.as_deref().unwrap_or(self.name.get_ref())
    }

    /// The compiled transform, if the processor has one.
    pub fn compiled_transform(&self) -> Result<Option<crate::transform::JqTransform>, String> {
        compile(&self.transform)
    }
}

#[cfg(test)]
mod tests;
