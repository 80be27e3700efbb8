//! `[[source]]`: where events come from besides the pipeline's own streams,
//! one table told apart by `type`:
//!
//! ```toml
//! [[source]]
//! name = "uploads"
//! type = "landing"          # files dropped under a lake prefix
//! prefix = "landing/uploads"
//! schema = "event"
//!
//! [[source]]
//! name = "orders"
//! type = "kinesis"          # a Kinesis data stream on AWS (aws feature)
//! stream = "orders"
//! schema = "order"
//!
//! [[source]]
//! name = "accounts"
//! type = "dynamodb"         # a DynamoDB table's stream (aws feature)
//! stream_arn = "arn:aws:dynamodb:...:table/accounts/stream/..."
//! schema = "account"
//! ```
//!
//! The old forms still read, each with a notice naming the new one: a
//! `[[source]]` without `type` (a landing source), `[[kinesis]]` and
//! `[[dynamodb]]`.

use serde::Deserialize;
use toml::Spanned;

use super::{compile, StartingPosition};

/// A landing source (`type = "landing"`): files dropped under `prefix` in
/// the lake are processed once.
#[derive(Clone, Debug)]
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
    pub poll_seconds: u64,
    /// An SQS queue URL receiving the bucket's "object created" notifications:
    /// a notification makes the source look at once (an S3 lake, aws feature).
    pub notifications: Option<Spanned<String>>,
}

fn default_poll() -> u64 {
    2
}

/// A DynamoDB table's stream as a source (`type = "dynamodb"`, aws feature): its change records
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
pub(super) fn check_batch_size(batch_size: &Spanned<u32>, max: u32) -> Result<(), (usize, String)> {
    let size = *batch_size.get_ref();
    if (1..=max).contains(&size) {
        return Ok(());
    }
    Err((
        batch_size.span().start,
        format!("batch_size must be between 1 and {max} (records per GetRecords call), not {size}"),
    ))
}

/// A Kinesis data stream on AWS as a source (`type = "kinesis"`, aws feature): every shard read,
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

/// `[[source]]` as written: the keys of every type; `resolve` keeps those of
/// its type and refuses the others at their line.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeclaredSource {
    name: Spanned<String>,
    #[serde(rename = "type")]
    kind: Option<Spanned<String>>,
    schema: Spanned<String>,
    table: Option<String>,
    transform: Option<Spanned<String>>,
    prefix: Option<Spanned<String>>,
    on_failure: Option<Spanned<String>>,
    poll_seconds: Option<Spanned<u64>>,
    notifications: Option<Spanned<String>>,
    stream: Option<Spanned<String>>,
    stream_arn: Option<Spanned<String>>,
    starting_position: Option<Spanned<StartingPosition>>,
    poll_ms: Option<Spanned<u64>>,
    batch_size: Option<Spanned<u32>>,
}

/// A source of any type.
pub(super) enum Source {
    Landing(SourceConfig),
    Kinesis(KinesisSourceConfig),
    Dynamodb(DynamodbSourceConfig),
}

/// Where in the file, and what is wrong (or what to write instead).
type Said = (usize, String);

/// Refuses a key that the source's type has no use for.
fn not_for<T>(key: &Option<Spanned<T>>, name: &str, kind: &str) -> Result<(), Said> {
    match key {
        Some(key) => Err((
            key.span().start,
            format!("{name} does not apply to a source of type \"{kind}\""),
        )),
        None => Ok(()),
    }
}

impl DeclaredSource {
    /// The source it declares and, for the old form without `type`, a notice.
    pub(super) fn resolve(self) -> Result<(Source, Option<Said>), Said> {
        let at = self.name.span().start;
        let (kind, notice) = match &self.kind {
            Some(kind) => (kind.get_ref().as_str(), None),
            None => (
                "landing",
                Some((
                    at,
                    format!(
                        "source {:?} has no type: read as type = \"landing\"; write it",
                        self.name.get_ref()
                    ),
                )),
            ),
        };
        let kind = kind.to_string();
        let source = match kind.as_str() {
            "landing" => {
                not_for(&self.stream, "stream", &kind)?;
                not_for(&self.stream_arn, "stream_arn", &kind)?;
                not_for(&self.starting_position, "starting_position", &kind)?;
                not_for(
                    &self.poll_ms,
                    "poll_ms (poll_seconds for a landing source)",
                    &kind,
                )?;
                not_for(&self.batch_size, "batch_size", &kind)?;
                let prefix = self.prefix.ok_or_else(|| {
                    (
                        at,
                        format!(
                            "landing source {:?} needs a prefix (a folder of the lake)",
                            self.name.get_ref()
                        ),
                    )
                })?;
                Source::Landing(SourceConfig {
                    name: self.name,
                    prefix,
                    schema: self.schema,
                    table: self.table,
                    transform: self.transform,
                    on_failure: self.on_failure,
                    poll_seconds: self
                        .poll_seconds
                        .map_or(default_poll(), Spanned::into_inner),
                    notifications: self.notifications,
                })
            }
            "kinesis" | "dynamodb" => {
                not_for(&self.prefix, "prefix", &kind)?;
                not_for(&self.on_failure, "on_failure", &kind)?;
                not_for(
                    &self.poll_seconds,
                    "poll_seconds (poll_ms for this type)",
                    &kind,
                )?;
                not_for(&self.notifications, "notifications", &kind)?;
                let starting_position = self
                    .starting_position
                    .map(Spanned::into_inner)
                    .unwrap_or_default();
                let poll_ms = self
                    .poll_ms
                    .map_or(default_dynamodb_poll(), Spanned::into_inner);
                let batch_size = self.batch_size.unwrap_or_else(default_get_records_limit);
                if kind == "kinesis" {
                    not_for(&self.stream_arn, "stream_arn (a DynamoDB stream's)", &kind)?;
                    let stream = self.stream.ok_or_else(|| {
                        (
                            at,
                            format!(
                                "kinesis source {:?} needs a stream (the Kinesis stream's name)",
                                self.name.get_ref()
                            ),
                        )
                    })?;
                    Source::Kinesis(KinesisSourceConfig {
                        name: self.name,
                        stream,
                        schema: self.schema,
                        table: self.table,
                        transform: self.transform,
                        starting_position,
                        poll_ms,
                        batch_size,
                    })
                } else {
                    not_for(&self.stream, "stream (a Kinesis stream's name)", &kind)?;
                    let stream_arn = self.stream_arn.ok_or_else(|| {
                        (at, format!("dynamodb source {:?} needs a stream_arn (the table's LatestStreamArn)", self.name.get_ref()))
                    })?;
                    Source::Dynamodb(DynamodbSourceConfig {
                        name: self.name,
                        stream_arn,
                        schema: self.schema,
                        table: self.table,
                        transform: self.transform,
                        starting_position,
                        poll_ms,
                        batch_size,
                    })
                }
            }
            other => {
                let at = self.kind.as_ref().map_or(at, |k| k.span().start);
                return Err((
                    at,
                    format!("type must be \"landing\", \"kinesis\" or \"dynamodb\", not {other:?}"),
                ));
            }
        };
        Ok((source, notice))
    }
}
