//! A DynamoDB table's stream as a source of `driftline run` (aws feature), read
//! by the loop of `sharded_source`. Change records become the same events as
//! in `driftline-lambda` (`{"event_name", "keys", "new_image", "old_image"}` in
//! plain JSON).

use crate::Context;
use aws_sdk_dynamodbstreams::types::{AttributeValue, ShardIteratorType};
use driftline_lake::Position;
use driftline_pipeline::config::StartingPosition;
use driftline_pipeline::Event;
use serde_json::{json, Map, Value};

use crate::sharded_source::{ShardInfo, ShardedStream};

fn plain(value: &AttributeValue) -> Value {
    use base64::Engine;
    let blob = |b: &aws_sdk_dynamodbstreams::primitives::Blob| {
        Value::String(base64::engine::general_purpose::STANDARD.encode(b.as_ref()))
    };
    let number = |n: &str| {
        serde_json::from_str::<serde_json::Number>(n)
            .map(Value::Number)
            .unwrap_or_else(|_| Value::String(n.to_string()))
    };
    match value {
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::N(n) => number(n),
        AttributeValue::B(b) => blob(b),
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::M(m) => item(m),
        AttributeValue::L(l) => Value::Array(l.iter().map(plain).collect()),
        AttributeValue::Ss(ss) => json!(ss),
        AttributeValue::Ns(ns) => Value::Array(ns.iter().map(|n| number(n)).collect()),
        AttributeValue::Bs(bs) => Value::Array(bs.iter().map(blob).collect()),
        _ => Value::Null,
    }
}

/// An item as a JSON object (whose keys serde_json keeps sorted).
fn item(map: &std::collections::HashMap<String, AttributeValue>) -> Value {
    Value::Object(
        map.iter()
            .map(|(k, v)| (k.clone(), plain(v)))
            .collect::<Map<String, Value>>(),
    )
}

fn error(e: impl std::error::Error + Send + Sync + 'static) -> crate::Error {
    crate::Error::Aws(aws_sdk_dynamodbstreams::error::DisplayErrorContext(e).to_string())
}

/// A DynamoDB stream, by its ARN.
pub struct DynamodbStream {
    pub client: aws_sdk_dynamodbstreams::Client,
    pub arn: String,
    /// Records per GetRecords call.
    pub batch_size: u32,
}

impl DynamodbStream {
    /// The stream `arn` read with `config`, at most `batch_size` records a call.
    pub fn new(config: &aws_config::SdkConfig, arn: String, batch_size: u32) -> DynamodbStream {
        DynamodbStream {
            client: aws_sdk_dynamodbstreams::Client::new(config),
            arn,
            batch_size,
        }
    }
}

crate::sharded_source::shard_reader!(DynamodbStream, arn);

impl ShardedStream for DynamodbStream {
    async fn shards(&self) -> crate::Result<Vec<ShardInfo>> {
        let mut all = Vec::new();
        let mut start = None;
        loop {
            let answer = self
                .client
                .describe_stream()
                .stream_arn(&self.arn)
                .set_exclusive_start_shard_id(start.clone())
                .send()
                .await
                .map_err(error)?;
            let description = answer.stream_description.context("no stream description")?;
            for shard in description.shards.unwrap_or_default() {
                all.push(ShardInfo {
                    id: shard.shard_id().unwrap_or_default().to_string(),
                    parent: shard.parent_shard_id().map(str::to_string),
                    ending: shard
                        .sequence_number_range()
                        .and_then(|r| r.ending_sequence_number())
                        .and_then(Position::parse),
                });
            }
            start = description.last_evaluated_shard_id;
            if start.is_none() {
                return Ok(all);
            }
        }
    }

    async fn iterator(
        &self,
        shard: &str,
        after: Option<&str>,
        start: StartingPosition,
    ) -> crate::Result<Option<String>> {
        let request = self
            .client
            .get_shard_iterator()
            .stream_arn(&self.arn)
            .shard_id(shard);
        let request = match after {
            Some(last) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .sequence_number(last),
            None => request.shard_iterator_type(match start {
                StartingPosition::TrimHorizon => ShardIteratorType::TrimHorizon,
                StartingPosition::Latest => ShardIteratorType::Latest,
            }),
        };
        Ok(request.send().await.map_err(error)?.shard_iterator)
    }

    async fn records(
        &self,
        shard: &str,
        iterator: String,
        limit: u32,
    ) -> crate::Result<(Vec<Event>, Option<String>)> {
        let answer = self
            .client
            .get_records()
            .shard_iterator(iterator)
            .limit(i32::try_from(self.batch_size.min(limit)).unwrap_or(1000))
            .send()
            .await
            .map_err(error)?;
        let mut events = Vec::new();
        for record in answer.records.unwrap_or_default() {
            let Some(change) = record.dynamodb() else {
                continue;
            };
            let sequence = change.sequence_number().unwrap_or_default();
            let sequence_number = Position::parse(sequence)
                .with_context(|| format!("record with sequence number {sequence:?}"))?;
            let keys = change.keys().map(item).unwrap_or(Value::Null);
            let event = json!({
                "event_name": record.event_name().map(|n| n.as_str().to_string()),
                "keys": keys,
                "new_image": change.new_image().map(item),
                "old_image": change.old_image().map(item),
            });
            events.push(Event {
                shard: shard.to_string(),
                sequence_number,
                arrival_ms: change
                    .approximate_creation_date_time()
                    .map_or(0, |t| t.to_millis().unwrap_or(0)),
                partition_key: keys.to_string(),
                data: event.to_string().into_bytes(),
            });
        }
        Ok((events, answer.next_shard_iterator))
    }
}

/// Reads DynamoDB stream `arn` (GetRecords of at most `batch_size`) into the
/// lake until `stop`, with this process's AWS configuration.
pub async fn run(
    source: crate::sharded_source::SourceParts,
    arn: String,
    batch_size: u32,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), driftline_pipeline::MappingError> {
    let stream = DynamodbStream {
        client: aws_sdk_dynamodbstreams::Client::new(&crate::config::load().await),
        arn,
        batch_size,
    };
    crate::sharded_source::run(source, stream, stop).await
}
