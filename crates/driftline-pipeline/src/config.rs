//! `PIPELINE.toml`: streams, schemas, processors and the lake.
//!
//! Parsing rejects unknown keys and wrong types with the file, line and what
//! was expected (serde with `deny_unknown_fields` through the `toml` crate,
//! whose errors carry the span); references between sections (a processor's
//! stream, schema and dead-letter stream) are checked afterwards and point at
//! the line of the reference.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use driftline_lake::{Compression, Field, TableSchema};
use serde::Deserialize;
use toml::Spanned;

pub use crate::model_config::ModelConfig;

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
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceConfig>,
    #[serde(default, rename = "model")]
    pub models: Vec<ModelConfig>,
    #[serde(default, rename = "dynamodb")]
    pub dynamodb: Vec<DynamodbSourceConfig>,
    #[serde(default, rename = "kinesis")]
    pub kinesis: Vec<KinesisSourceConfig>,
    pub lake: Option<LakeConfig>,
    pub auth: Option<AuthConfig>,
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
    check_kinesis_name(name)?;
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

/// A landing source: files dropped under `prefix` in the lake are processed once.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub name: Spanned<String>,
    /// A folder of the lake, e.g. `landing/uploads`.
    pub prefix: Spanned<String>,
    pub schema: Spanned<String>,
    /// The lake table its rows go to (default: the source's name).
    pub table: Option<String>,
    pub transform: Option<Spanned<String>>,
    pub on_failure: Option<Spanned<String>>,
    /// Seconds between looks at the prefix.
    #[serde(default = "default_poll")]
    pub poll_seconds: u64,
    /// An SQS queue URL receiving the bucket's "object created" notifications:
    /// a notification makes the source look at once (an S3 lake, aws feature).
    pub notifications: Option<Spanned<String>>,
}

fn default_poll() -> u64 {
    2
}

/// A DynamoDB table's stream as a source (aws feature): its change records
/// (INSERT, MODIFY, REMOVE with new and old images) become events, shards
/// followed parents first, positions checkpointed in the lake.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DynamodbSourceConfig {
    pub name: Spanned<String>,
    /// The table's stream (`LatestStreamArn` of DescribeTable).
    pub stream_arn: Spanned<String>,
    pub schema: Spanned<String>,
    /// The lake table its rows go to (default: the source's name).
    pub table: Option<String>,
    pub transform: Option<Spanned<String>>,
    #[serde(default)]
    pub starting_position: StartingPosition,
    /// Milliseconds between reads of a shard that had nothing new.
    #[serde(default = "default_dynamodb_poll")]
    pub poll_ms: u64,
    /// Records per GetRecords call, hence per delivered batch (1 to 1,000,
    /// DynamoDB Streams' limit).
    #[serde(default = "default_get_records_limit")]
    pub batch_size: Spanned<u32>,
}

fn default_dynamodb_poll() -> u64 {
    1000
}

fn default_get_records_limit() -> Spanned<u32> {
    Spanned::new(0..0, 1000)
}

/// A GetRecords limit within 1..=`max`, or where and why not.
fn check_batch_size(batch_size: &Spanned<u32>, max: u32) -> Result<(), (usize, String)> {
    let size = *batch_size.get_ref();
    if (1..=max).contains(&size) {
        return Ok(());
    }
    Err((
        batch_size.span().start,
        format!("batch_size must be between 1 and {max} (records per GetRecords call), not {size}"),
    ))
}

/// A Kinesis data stream on AWS as a source (aws feature): every shard read,
/// parents first, positions checkpointed in the lake.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KinesisSourceConfig {
    pub name: Spanned<String>,
    /// The Kinesis stream's name (region and credentials from the AWS chain).
    pub stream: Spanned<String>,
    pub schema: Spanned<String>,
    /// The lake table its rows go to (default: the source's name).
    pub table: Option<String>,
    pub transform: Option<Spanned<String>>,
    #[serde(default)]
    pub starting_position: StartingPosition,
    /// Milliseconds between reads of a shard that had nothing new.
    #[serde(default = "default_dynamodb_poll")]
    pub poll_ms: u64,
    /// Records per GetRecords call, hence per delivered batch (1 to 10,000,
    /// Kinesis's limit).
    #[serde(default = "default_get_records_limit")]
    pub batch_size: Spanned<u32>,
}

impl KinesisSourceConfig {
    pub fn table(&self) -> &str {
        self.table.as_deref().unwrap_or(self.name.get_ref())
    }

    pub fn compiled_transform(&self) -> Result<Option<crate::transform::JqTransform>, String> {
        compile(&self.transform)
    }
}

/// A Kinesis stream name: 1-128 of [a-zA-Z0-9_.-].
pub(crate) fn check_kinesis_name(name: &str) -> Result<(), String> {
    if driftline_log::is_stream_name(name) {
        Ok(())
    } else {
        Err(format!(
            "stream must be a Kinesis stream name (1-128 of a-z, A-Z, 0-9, _ . -), not {name:?}"
        ))
    }
}

impl DynamodbSourceConfig {
    pub fn table(&self) -> &str {
        self.table.as_deref().unwrap_or(self.name.get_ref())
    }

    pub fn compiled_transform(&self) -> Result<Option<crate::transform::JqTransform>, String> {
        compile(&self.transform)
    }
}

impl SourceConfig {
    pub fn table(&self) -> &str {
        self.table.as_deref().unwrap_or(self.name.get_ref())
    }

    /// The compiled transform, if the source has one.
    pub fn compiled_transform(&self) -> Result<Option<crate::transform::JqTransform>, String> {
        compile(&self.transform)
    }
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
        let config: PipelineConfig = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            invalid(offset, e.message().to_string())
        })?;
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

    fn validate(self, text: &str, path: &Path) -> Result<PipelineConfig, ConfigError> {
        let config = self;
        let invalid = |offset: usize, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            line: text[..offset.min(text.len())].matches('\n').count() + 1,
            message,
        };
        let mut streams = BTreeSet::new();
        for stream in &config.streams {
            if !streams.insert(stream.name.get_ref().as_str()) {
                return Err(invalid(
                    stream.name.span().start,
                    format!("stream {:?} is declared twice", stream.name.get_ref()),
                ));
            }
            if stream.shards == 0 {
                return Err(invalid(
                    stream.name.span().start,
                    "a stream needs at least one shard".into(),
                ));
            }
            if let Some(url) = &stream.url {
                kinesis_url(url.get_ref()).map_err(|e| invalid(url.span().start, e))?;
            }
        }
        // One Kinesis stream, one use: two pipeline streams (or a prediction
        // log) on the same one would feed each other.
        let mut kinesis_names = BTreeSet::new();
        let urls = config.streams.iter().filter_map(|s| s.url.as_ref()).chain(
            config
                .models
                .iter()
                .filter_map(|m| m.prediction_log.as_ref()),
        );
        for url in urls {
            if !kinesis_names.insert(url.get_ref().as_str()) {
                return Err(invalid(
                    url.span().start,
                    format!("{} is used twice: each Kinesis stream serves one pipeline stream or prediction log", url.get_ref()),
                ));
            }
        }
        let on_kinesis = |name: &str| {
            config
                .streams
                .iter()
                .any(|s| s.name.get_ref() == name && s.url.is_some())
        };
        for schema in &config.schemas {
            schema
                .table_schema()
                .map_err(|e| invalid(schema.name.span().start, e.to_string()))?;
        }
        let undefined = |what: &str, reference: &Spanned<String>, known: Vec<&str>| {
            invalid(
                reference.span().start,
                format!(
                    "{what} {:?} is not defined; expected one of {known:?}",
                    reference.get_ref()
                ),
            )
        };
        let stream_names = || {
            config
                .streams
                .iter()
                .map(|s| s.name.get_ref().as_str())
                .collect()
        };
        // What processors and landing sources both name: a dead-letter stream,
        // a schema and a transform.
        let check_outputs = |on_failure: &Option<Spanned<String>>,
                             schema: &Spanned<String>,
                             transform: &Option<Spanned<String>>| {
            if let Some(dlq) = on_failure {
                if !streams.contains(dlq.get_ref().as_str()) {
                    return Err(undefined("on_failure stream", dlq, stream_names()));
                }
            }
            if config.schema(schema.get_ref()).is_none() {
                let known = config
                    .schemas
                    .iter()
                    .map(|s| s.name.get_ref().as_str())
                    .collect();
                return Err(undefined("schema", schema, known));
            }
            if let Some(code) = transform {
                crate::transform::JqTransform::compile(code.get_ref())
                    .map_err(|e| invalid(code.span().start, e))?;
            }
            Ok(())
        };
        let mut names = BTreeSet::new();
        let processor_names = config.processors.iter().map(|p| &p.name);
        let dynamodb_names = config.dynamodb.iter().map(|d| &d.name);
        let kinesis_names = config.kinesis.iter().map(|k| &k.name);
        for name in processor_names
            .chain(config.sources.iter().map(|s| &s.name))
            .chain(dynamodb_names)
            .chain(kinesis_names)
        {
            if !names.insert(name.get_ref().as_str()) {
                return Err(invalid(
                    name.span().start,
                    format!("{:?} names two processors or sources", name.get_ref()),
                ));
            }
        }
        for processor in &config.processors {
            if !streams.contains(processor.stream.get_ref().as_str()) {
                return Err(undefined("stream", &processor.stream, stream_names()));
            }
            if let Some(dlq) = &processor.on_failure {
                if dlq.get_ref() == processor.stream.get_ref() {
                    return Err(invalid(
                        dlq.span().start,
                        "on_failure must be another stream than the source".into(),
                    ));
                }
            }
            check_outputs(
                &processor.on_failure,
                &processor.schema,
                &processor.transform,
            )?;
            if !(1..=10).contains(&processor.parallelization_factor) {
                return Err(invalid(
                    processor.name.span().start,
                    format!(
                        "parallelization_factor must be 1..=10, not {}",
                        processor.parallelization_factor
                    ),
                ));
            }
            if processor.batch_size == 0 || processor.batch_size > 10_000 {
                return Err(invalid(
                    processor.name.span().start,
                    format!("batch_size must be 1..=10000, not {}", processor.batch_size),
                ));
            }
            if processor.runs_on_lambda() && !on_kinesis(processor.stream.get_ref()) {
                return Err(invalid(
                    processor.runs_on.as_ref().map_or(0, |r| r.span().start),
                    format!("runs_on = \"lambda\" needs a stream on Kinesis: give stream {:?} a url = \"kinesis://NAME\"", processor.stream.get_ref()),
                ));
            }
            if on_kinesis(processor.stream.get_ref()) && !processor.runs_on_lambda() {
                // Read by the lease loop of `driftline run`, which takes one
                // batch of a shard at a time and has no record age.
                if processor.parallelization_factor != 1 {
                    return Err(invalid(
                        processor.name.span().start,
                        format!("stream {:?} is on Kinesis: its processors read one batch per shard at a time (parallelization_factor 1); add shards to the Kinesis stream instead", processor.stream.get_ref()),
                    ));
                }
                if processor.maximum_record_age_s.is_some() {
                    return Err(invalid(
                        processor.name.span().start,
                        format!("stream {:?} is on Kinesis: maximum_record_age_s applies to embedded streams only (Kinesis' retention bounds a record's age)", processor.stream.get_ref()),
                    ));
                }
            }
        }
        let tables: Vec<&str> = config
            .processors
            .iter()
            .map(ProcessorConfig::table)
            .chain(config.sources.iter().map(SourceConfig::table))
            .collect();
        for source in &config.sources {
            check_outputs(&source.on_failure, &source.schema, &source.transform)?;
            if let Some(queue) = &source.notifications {
                let url = queue.get_ref();
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err(invalid(
                        queue.span().start,
                        format!("notifications must be an SQS queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/QUEUE), not {url:?}"),
                    ));
                }
            }
            let prefix = source.prefix.get_ref().trim_matches('/');
            let inside_a_table = tables
                .iter()
                .any(|t| prefix == *t || prefix.starts_with(&format!("{t}/")));
            if prefix.is_empty() || prefix.starts_with('_') || inside_a_table {
                return Err(invalid(
                    source.prefix.span().start,
                    format!(
                        "prefix {:?} must be a folder of the lake of its own: not empty, not starting with '_', not a table's ({tables:?})",
                        source.prefix.get_ref()
                    ),
                ));
            }
        }
        for source in &config.dynamodb {
            check_outputs(&None, &source.schema, &source.transform)?;
            check_batch_size(&source.batch_size, 1000).map_err(|(at, e)| invalid(at, e))?;
            let arn = source.stream_arn.get_ref();
            if !(arn.starts_with("arn:") && arn.contains(":dynamodb:") && arn.contains("/stream/"))
            {
                return Err(invalid(
                    source.stream_arn.span().start,
                    format!("stream_arn must be a DynamoDB stream ARN (arn:aws:dynamodb:REGION:ACCOUNT:table/TABLE/stream/LABEL), not {arn:?}"),
                ));
            }
        }
        for source in &config.kinesis {
            check_outputs(&None, &source.schema, &source.transform)?;
            check_batch_size(&source.batch_size, 10_000).map_err(|(at, e)| invalid(at, e))?;
            crate::config::check_kinesis_name(source.stream.get_ref())
                .map_err(|e| invalid(source.stream.span().start, e))?;
        }
        let mut models = BTreeSet::new();
        for model in &config.models {
            model
                .check()
                .map_err(|(at, message)| invalid(at, message))?;
            if !models.insert(model.name()) {
                return Err(invalid(
                    model.name.span().start,
                    format!("model {:?} is declared twice", model.name()),
                ));
            }
            for made in [model.predictions_stream(), model.joined_stream()] {
                if streams.contains(made.as_str()) {
                    return Err(invalid(
                        model.name.span().start,
                        format!(
                            "stream {made:?} is made for model {:?}: do not declare it",
                            model.name()
                        ),
                    ));
                }
            }
            for consumer in [model.joined_consumer(), model.labels_consumer()] {
                if names.contains(consumer.as_str()) {
                    return Err(invalid(
                        model.name.span().start,
                        format!("{consumer:?} is the name of model {:?}'s own consumer: rename the processor or source", model.name()),
                    ));
                }
            }
            if tables.contains(&model.joined_table().as_str()) {
                return Err(invalid(
                    model.name.span().start,
                    format!(
                        "table {:?} is made for model {:?}: no processor may write it",
                        model.joined_table(),
                        model.name()
                    ),
                ));
            }
            if let Some(labels) = &model.labels {
                if !streams.contains(labels.get_ref().as_str()) {
                    return Err(undefined("labels stream", labels, stream_names()));
                }
            }
            if let Some(url) = &model.prediction_log {
                kinesis_url(url.get_ref()).map_err(|e| invalid(url.span().start, e))?;
            }
            if let Some(bootstrap) = &model.bootstrap {
                let table = bootstrap.table.get_ref().trim_matches('/');
                if table.is_empty() || bootstrap.label.is_empty() {
                    return Err(invalid(
                        bootstrap.table.span().start,
                        "bootstrap needs a table and a label column".into(),
                    ));
                }
            }
        }
        let delivers = !config.processors.is_empty()
            || !config.sources.is_empty()
            || !config.models.is_empty()
            || !config.dynamodb.is_empty()
            || !config.kinesis.is_empty();
        if delivers && config.lake.is_none() {
            return Err(invalid(
                text.len(),
                "processors, sources and models use the lake: add a [lake] section".into(),
            ));
        }
        Ok(config)
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
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[stream]]
name = "events"
shards = 4

[[stream]]
name = "events-dlq"

[[schema]]
name = "event"
event_time = "ts"
fields = [
  { name = "id", type = "string" },
  { name = "ts", type = "timestamp" },
]

[[processor]]
name = "to-lake"
stream = "events"
schema = "event"
on_failure = "events-dlq"

[lake]
max_buffer_seconds = 5
"#;

    fn error_of(text: &str) -> String {
        PipelineConfig::parse(text, Path::new("p.toml"))
            .expect_err("invalid")
            .to_string()
    }

    const MODEL: &str = "\n[[model]]\nname = \"fraud\"\nfeatures = [\"amount\", \"hour\"]\nlabels = \"events-dlq\"\nretrain = { every_seconds = 60, cooldown_seconds = 1.5 }\npromotion = { mode = \"canary\", canary_share = 0.2 }\n";

    #[test]
    fn an_aws_source_batch_size_is_within_get_records_limits() {
        let source = |kind: &str, extra: &str| {
            let service = if kind == "kinesis" {
                "stream = \"clicks\""
            } else {
                "stream_arn = \"arn:aws:dynamodb:us-east-1:1:table/t/stream/x\""
            };
            format!("{GOOD}\n[[{kind}]]\nname = \"s\"\n{service}\nschema = \"event\"\n{extra}\n")
        };
        let config =
            PipelineConfig::parse(&source("kinesis", ""), Path::new("p.toml")).expect("valid");
        assert_eq!(*config.kinesis[0].batch_size.get_ref(), 1000);
        let config = PipelineConfig::parse(
            &source("kinesis", "batch_size = 10000"),
            Path::new("p.toml"),
        )
        .expect("valid");
        assert_eq!(*config.kinesis[0].batch_size.get_ref(), 10_000);
        let error = error_of(&source("kinesis", "batch_size = 10001"));
        assert!(
            error.contains("batch_size must be between 1 and 10000"),
            "{error}"
        );
        assert!(error.starts_with("p.toml:"), "{error}");
        let error = error_of(&source("dynamodb", "batch_size = 2000"));
        assert!(error.contains("between 1 and 1000"), "{error}");
        assert!(error_of(&source("dynamodb", "batch_size = 0")).contains("not 0"));
    }

    #[test]
    fn a_model_declaration_becomes_its_lifecycle() {
        let config =
            PipelineConfig::parse(&format!("{GOOD}{MODEL}"), Path::new("p.toml")).expect("valid");
        let model = &config.models[0];
        assert_eq!(model.joined_table(), "fraud_joined");
        let lifecycle = model.lifecycle().expect("lifecycle");
        assert_eq!(
            lifecycle.promotion,
            crate::lifecycle::Promotion::Canary(0.2)
        );
        assert_eq!(
            lifecycle.retrain_every,
            Some(std::time::Duration::from_secs(60))
        );
        assert_eq!(lifecycle.cooldown, std::time::Duration::from_millis(1500));
        assert!(lifecycle.retrain_on_drift);
    }

    #[test]
    fn monitors_are_declared_per_model_and_unknown_ones_are_refused_at_their_line() {
        let monitors = "monitors = { concept = { detector = \"ddm\", drift_threshold = 2.5 }, data = { test = \"ks\", threshold = 0.01, window = 500, every = 100 }, retrain_on = [\"concept\", \"data\"] }\n";
        let text = format!("{GOOD}{MODEL}{monitors}");
        let config = PipelineConfig::parse(&text, Path::new("p.toml")).expect("valid");
        let lifecycle = config.models[0].lifecycle().expect("lifecycle");
        assert_eq!(lifecycle.concept.detector, "ddm");
        assert_eq!(lifecycle.concept.params.get("drift_threshold"), Some(&2.5));
        assert_eq!(
            lifecycle.data_test,
            driftline_ml::drift::monitor::DataTest::Ks
        );
        assert_eq!(
            (lifecycle.data_window, lifecycle.data_check_every),
            (500, 100)
        );
        assert!(lifecycle.retrain_on_drift && lifecycle.retrain_on_data);
        // the default: concept alarms retrain, data alarms do not
        let plain =
            PipelineConfig::parse(&format!("{GOOD}{MODEL}"), Path::new("p.toml")).expect("valid");
        let lifecycle = plain.models[0].lifecycle().expect("lifecycle");
        assert!(lifecycle.retrain_on_drift && !lifecycle.retrain_on_data);
        assert_eq!(lifecycle.concept.detector, "adwin");

        let line = GOOD.matches('\n').count() + MODEL.matches('\n').count() + 1;
        for (bad, expected) in [
            ("\"ddm\"", "unknown detector \"dmm\""),
            ("drift_threshold", "ddm has no parameter \"drift_treshold\""),
            ("\"ks\"", "unknown test \"kz\""),
            ("\"data\"]", "unknown alarm \"dat\""),
        ] {
            let wrong = match bad {
                "\"ddm\"" => monitors.replace(bad, "\"dmm\""),
                "drift_threshold" => monitors.replace(bad, "drift_treshold"),
                "\"ks\"" => monitors.replace(bad, "\"kz\""),
                _ => monitors.replace(bad, "\"dat\"]"),
            };
            let error = error_of(&format!("{GOOD}{MODEL}{wrong}"));
            assert!(
                error.contains(expected),
                "{error:?} should say {expected:?}"
            );
            assert!(error.starts_with(&format!("p.toml:{line}:")), "{error}");
        }
        let both = MODEL.replace("every_seconds = 60", "on_drift = false, every_seconds = 60");
        let error = error_of(&format!("{GOOD}{both}{monitors}"));
        assert!(error.contains("keep one"), "{error}");
    }

    #[test]
    fn a_bad_model_declaration_names_its_line_and_what_is_wrong() {
        let with = |from: &str, to: &str| error_of(&format!("{GOOD}{}", MODEL.replace(from, to)));
        let line = GOOD.matches('\n').count() + 2;
        let cases = [
            (
                with("labels = \"events-dlq\"", "labels = \"nope\""),
                "labels stream \"nope\" is not defined",
            ),
            (with("\"canary\"", "\"yolo\""), "promotion.mode must be"),
            (
                with("canary_share = 0.2", "canary_share = 2.0"),
                "canary_share must be between 0 and 1",
            ),
            (
                with("\"hour\"]", "\"label\"]"),
                "feature \"label\" has the name of a column",
            ),
            (
                with("\"hour\"]", "\"amount\"]"),
                "feature \"amount\" is listed twice",
            ),
            (
                with("every_seconds", "every_second"),
                "unknown field `every_second`",
            ),
            (
                with("name = \"fraud\"", "name = \"fr aud\""),
                "must be 1-100 letters",
            ),
            (
                with(
                    "features = [\"amount\", \"hour\"]",
                    "features = [\"amount\"]\nlearner = \"magic\"",
                ),
                "learner",
            ),
        ];
        for (error, expected) in cases {
            assert!(
                error.contains(expected),
                "{error:?} should say {expected:?}"
            );
            assert!(error.starts_with("p.toml:"), "{error}");
        }
        // the line of the model's name for what is wrong with the model as a whole
        let error = with("canary_share = 0.2", "canary_share = 2.0");
        assert!(
            error.starts_with(&format!("p.toml:{}:", line + 1)),
            "{error}"
        );
        // its streams are its own
        let clash = format!("{GOOD}\n[[stream]]\nname = \"fraud-joined\"\n{MODEL}");
        assert!(
            error_of(&clash).contains("is made for model"),
            "{}",
            error_of(&clash)
        );
    }

    #[test]
    fn a_good_config_loads() {
        let config = PipelineConfig::parse(GOOD, Path::new("p.toml")).expect("valid");
        assert_eq!(config.streams[0].shards, 4);
        assert_eq!(config.processors[0].table(), "to-lake");
        assert_eq!(config.lake.expect("lake").max_buffer_seconds, 5);
    }

    #[test]
    fn an_unknown_key_names_the_file_and_line() {
        let text = GOOD.replace("shards = 4", "shards = 4\nshardz = 3");
        let error = error_of(&text);
        assert!(
            error.starts_with("p.toml:5: unknown field `shardz`"),
            "{error}"
        );
    }

    #[test]
    fn a_wrong_type_names_the_line_and_the_expected_type() {
        let error = error_of(&GOOD.replace("shards = 4", "shards = \"four\""));
        assert!(
            error.starts_with("p.toml:4: invalid type: string \"four\", expected u32"),
            "{error}"
        );
    }

    #[test]
    fn an_undefined_reference_names_its_line_and_the_known_names() {
        let error =
            error_of(&GOOD.replace("on_failure = \"events-dlq\"", "on_failure = \"nowhere\""));
        assert!(
            error.starts_with("p.toml:21: on_failure stream \"nowhere\" is not defined"),
            "{error}"
        );
        assert!(error.contains("\"events-dlq\""), "{error}");
        let error = error_of(&GOOD.replace("schema = \"event\"", "schema = \"evnt\""));
        assert!(
            error.starts_with("p.toml:20: schema \"evnt\" is not defined"),
            "{error}"
        );
    }

    #[test]
    fn streams_can_be_put_on_kinesis_from_outside_and_are_checked_again() {
        let config = PipelineConfig::parse(GOOD, Path::new("p.toml")).expect("valid");
        let urls = [("events".to_string(), "kinesis://stack-events".to_string())];
        let moved = config
            .clone()
            .with_stream_urls(&urls, GOOD, Path::new("p.toml"))
            .expect("valid");
        assert_eq!(moved.streams[0].kinesis(), Some("stack-events"));
        let unknown = [("nope".to_string(), "kinesis://x".to_string())];
        let error = config
            .clone()
            .with_stream_urls(&unknown, GOOD, Path::new("p.toml"))
            .expect_err("unknown")
            .to_string();
        assert!(
            error.contains("--stream-url nope=kinesis://x: the pipeline declares no such stream"),
            "{error}"
        );
        // checked again: a processor on it may not ask for parallel batches
        let parallel = GOOD.replace(
            "on_failure = \"events-dlq\"",
            "on_failure = \"events-dlq\"\nparallelization_factor = 2",
        );
        let config = PipelineConfig::parse(&parallel, Path::new("p.toml")).expect("valid");
        assert!(config
            .with_stream_urls(&urls, &parallel, Path::new("p.toml"))
            .is_err());
    }

    #[test]
    fn a_stream_on_kinesis_is_named_by_its_url_and_checked() {
        let on_kinesis = GOOD.replace("shards = 4", "shards = 4\nurl = \"kinesis://events-prod\"");
        let config = PipelineConfig::parse(&on_kinesis, Path::new("p.toml")).expect("valid");
        assert_eq!(config.streams[0].kinesis(), Some("events-prod"));
        assert_eq!(config.streams[1].kinesis(), None);
        let error = error_of(&GOOD.replace("shards = 4", "shards = 4\nurl = \"kafka://events\""));
        assert!(
            error.starts_with("p.toml:5: url must be kinesis://NAME"),
            "{error}"
        );
        let error = error_of(&GOOD.replace("shards = 4", "shards = 4\nurl = \"kinesis://a b\""));
        assert!(error.contains("Kinesis stream name"), "{error}");
        // knobs the Kinesis reader cannot honour are refused, not ignored
        let error = error_of(&on_kinesis.replace(
            "on_failure = \"events-dlq\"",
            "on_failure = \"events-dlq\"\nparallelization_factor = 4",
        ));
        assert!(
            error.starts_with("p.toml:19: stream \"events\" is on Kinesis")
                && error.contains("parallelization_factor"),
            "{error}"
        );
        let error = error_of(&on_kinesis.replace(
            "on_failure = \"events-dlq\"",
            "on_failure = \"events-dlq\"\nmaximum_record_age_s = 60",
        ));
        assert!(error.contains("maximum_record_age_s"), "{error}");
        // one Kinesis stream, one use
        let twice = on_kinesis.replace(
            "name = \"events-dlq\"",
            "name = \"events-dlq\"\nurl = \"kinesis://events-prod\"",
        );
        let error = error_of(&twice);
        assert!(
            error.contains("kinesis://events-prod is used twice"),
            "{error}"
        );
        // Lambda reads Kinesis only
        let error = error_of(&GOOD.replace(
            "on_failure = \"events-dlq\"",
            "on_failure = \"events-dlq\"\nruns_on = \"lambda\"",
        ));
        assert!(
            error.contains("runs_on = \"lambda\" needs a stream on Kinesis"),
            "{error}"
        );
        let on_lambda = on_kinesis.replace(
            "on_failure = \"events-dlq\"",
            "on_failure = \"events-dlq\"\nruns_on = \"lambda\"\nparallelization_factor = 4",
        );
        let config = PipelineConfig::parse(&on_lambda, Path::new("p.toml")).expect("valid");
        assert!(config.processors[0].runs_on_lambda());
        // a model's labels may arrive on Kinesis too
        let dlq_on_kinesis = GOOD.replace(
            "name = \"events-dlq\"",
            "name = \"events-dlq\"\nurl = \"kinesis://labels\"",
        );
        PipelineConfig::parse(&format!("{dlq_on_kinesis}{MODEL}"), Path::new("p.toml"))
            .expect("labels on Kinesis");
        // the prediction log can go to Kinesis
        let logged = format!("{GOOD}{MODEL}prediction_log = \"kinesis://fraud-predictions\"\n");
        let config = PipelineConfig::parse(&logged, Path::new("p.toml")).expect("valid");
        assert_eq!(
            config.models[0].prediction_log_stream(),
            Some("fraud-predictions")
        );
        let error = error_of(&format!("{GOOD}{MODEL}prediction_log = \"s3://x\"\n"));
        assert!(error.contains("url must be kinesis://NAME"), "{error}");
    }

    #[test]
    fn a_transform_that_does_not_compile_names_its_line() {
        let text = GOOD.replace(
            "on_failure = \"events-dlq\"",
            "on_failure = \"events-dlq\"\ntransform = \".a | nosuch(1)\"",
        );
        let error = error_of(&text);
        assert!(
            error.starts_with("p.toml:22: the jq program uses undefined names: nosuch"),
            "{error}"
        );
    }

    #[test]
    fn a_landing_source_is_checked_like_a_processor_and_its_prefix_kept_apart() {
        let source =
            "\n[[source]]\nname = \"uploads\"\nprefix = \"landing/uploads\"\nschema = \"event\"\n";
        let config =
            PipelineConfig::parse(&format!("{GOOD}{source}"), Path::new("p.toml")).expect("valid");
        assert_eq!(config.sources[0].table(), "uploads");
        let error = error_of(&format!(
            "{GOOD}{}",
            source.replace("landing/uploads", "to-lake/x")
        ));
        assert!(
            error.starts_with(
                "p.toml:28: prefix \"to-lake/x\" must be a folder of the lake of its own"
            ),
            "{error}"
        );
        let error = error_of(&format!(
            "{GOOD}{}",
            source.replace("\"event\"", "\"nope\"")
        ));
        assert!(
            error.starts_with("p.toml:29: schema \"nope\" is not defined"),
            "{error}"
        );
        let error = error_of(&format!(
            "{GOOD}{}",
            source.replace("uploads\"\nprefix", "to-lake\"\nprefix")
        ));
        assert!(
            error.contains("\"to-lake\" names two processors or sources"),
            "{error}"
        );
    }

    #[test]
    fn a_bad_field_type_and_a_bad_event_time_are_refused() {
        let error = error_of(&GOOD.replace("type = \"string\"", "type = \"text\""));
        assert!(error.contains("unknown variant `text`"), "{error}");
        let error = error_of(&GOOD.replace("event_time = \"ts\"", "event_time = \"id\""));
        assert!(error.contains("must be a required timestamp"), "{error}");
    }
}
