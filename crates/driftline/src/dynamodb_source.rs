//! A DynamoDB table's stream as a source of `driftline run` (aws feature).
//! Change records become the same events as in `driftline-lambda`
//! (`{"event_name", "keys", "new_image", "old_image"}` in plain JSON) and go
//! through the same processor and delivery (`function::handle_batch`: objects
//! named after the shard and sequence range, refused records kept under
//! `_dead_letters/NAME/`). Shards are read parents first; each shard's last
//! delivered sequence number (and whether it has ended) is checkpointed in
//! the lake under `_checkpoints/dynamodb/NAME/SHARD.json` after its delivery,
//! so a restart goes on after it and a batch delivered again replaces itself.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use aws_sdk_dynamodbstreams::types::{AttributeValue, Shard, ShardIteratorType};
use driftline_lake::{Lake, Position};
use driftline_pipeline::config::{DynamodbSourceConfig, StartingPosition};
use driftline_pipeline::function::handle_batch;
use driftline_pipeline::mapping::Delivery;
use driftline_pipeline::{Event, MappingStats, Processor};
use serde_json::{json, Map, Value};

/// Calls to GetRecords per shard before the next shard gets its turn.
const READS_PER_TURN: usize = 10;

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

fn item(map: &std::collections::HashMap<String, AttributeValue>) -> Value {
    let sorted: BTreeMap<&String, &AttributeValue> = map.iter().collect();
    Value::Object(
        sorted
            .into_iter()
            .map(|(k, v)| (k.clone(), plain(v)))
            .collect::<Map<String, Value>>(),
    )
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Checkpoint {
    sequence_number: Option<String>,
    finished: bool,
}

pub struct DynamodbSource {
    pub config: DynamodbSourceConfig,
    pub processor: Arc<dyn Processor>,
    pub delivery: Delivery,
    pub stats: Arc<MappingStats>,
}

impl DynamodbSource {
    fn checkpoint_path(&self, shard: &str) -> String {
        format!(
            "_checkpoints/dynamodb/{}/{shard}.json",
            self.config.name.get_ref()
        )
    }

    async fn checkpoint(&self, lake: &Lake, shard: &str) -> anyhow::Result<Checkpoint> {
        Ok(match lake.read(&self.checkpoint_path(shard)).await? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("the checkpoint of shard {shard} is not readable"))?,
            None => Checkpoint::default(),
        })
    }

    async fn save(&self, lake: &Lake, shard: &str, checkpoint: &Checkpoint) -> anyhow::Result<()> {
        lake.write(
            &self.checkpoint_path(shard),
            serde_json::to_vec(checkpoint)?,
        )
        .await?;
        Ok(())
    }
}

/// Reads the stream until `stop`.
pub async fn run(
    source: DynamodbSource,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let client = aws_sdk_dynamodbstreams::Client::new(&aws_config::load_from_env().await);
    let arn = source.config.stream_arn.get_ref().clone();
    let name = source.config.name.get_ref().clone();
    let lake = source.delivery.lake.clone();
    let pause = Duration::from_millis(source.config.poll_ms.max(10));
    while !*stop.borrow() {
        let shards = match shards(&client, &arn).await {
            Ok(shards) => shards,
            Err(error) => {
                tracing::warn!(source = %name, %error, "cannot describe the stream");
                Vec::new()
            }
        };
        let mut finished = BTreeMap::new();
        for shard in &shards {
            let id = shard.shard_id().unwrap_or_default().to_string();
            finished.insert(id.clone(), source.checkpoint(&lake, &id).await?.finished);
        }
        for shard in &shards {
            let id = shard.shard_id().unwrap_or_default().to_string();
            // Parents first: a child waits until its parent has been read to its end.
            let parent_open = shard
                .parent_shard_id()
                .is_some_and(|p| finished.get(p) == Some(&false));
            if finished.get(&id) == Some(&true) || parent_open || *stop.borrow() {
                continue;
            }
            if let Err(error) = read_shard(&source, &client, &arn, &id).await {
                tracing::warn!(source = %name, shard = %id, error = %format!("{error:#}"), "reading the shard failed; it is read again from its checkpoint");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => {}
        }
    }
    Ok(())
}

async fn shards(client: &aws_sdk_dynamodbstreams::Client, arn: &str) -> anyhow::Result<Vec<Shard>> {
    let mut all = Vec::new();
    let mut start = None;
    loop {
        let answer = client
            .describe_stream()
            .stream_arn(arn)
            .set_exclusive_start_shard_id(start.clone())
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "{}",
                    aws_sdk_dynamodbstreams::error::DisplayErrorContext(&e)
                )
            })?;
        let description = answer.stream_description.context("no stream description")?;
        all.extend(description.shards.unwrap_or_default());
        start = description.last_evaluated_shard_id;
        if start.is_none() {
            return Ok(all);
        }
    }
}

/// Reads one shard from its checkpoint for a turn, delivering each batch.
async fn read_shard(
    source: &DynamodbSource,
    client: &aws_sdk_dynamodbstreams::Client,
    arn: &str,
    shard: &str,
) -> anyhow::Result<()> {
    let lake = &source.delivery.lake;
    let mut checkpoint = source.checkpoint(lake, shard).await?;
    let request = client.get_shard_iterator().stream_arn(arn).shard_id(shard);
    let request = match &checkpoint.sequence_number {
        Some(last) => request
            .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
            .sequence_number(last),
        None => request.shard_iterator_type(match source.config.starting_position {
            StartingPosition::TrimHorizon => ShardIteratorType::TrimHorizon,
            StartingPosition::Latest => ShardIteratorType::Latest,
        }),
    };
    let mut iterator = request
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "{}",
                aws_sdk_dynamodbstreams::error::DisplayErrorContext(&e)
            )
        })?
        .shard_iterator;
    for _ in 0..READS_PER_TURN {
        let Some(current) = iterator.take() else {
            // The shard has ended (it was split or its table's stream was turned off).
            checkpoint.finished = true;
            source.save(lake, shard, &checkpoint).await?;
            return Ok(());
        };
        let answer = client
            .get_records()
            .shard_iterator(current)
            .limit(1000)
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "{}",
                    aws_sdk_dynamodbstreams::error::DisplayErrorContext(&e)
                )
            })?;
        iterator = answer.next_shard_iterator;
        let records = answer.records.unwrap_or_default();
        if records.is_empty() {
            if iterator.is_some() {
                return Ok(()); // caught up
            }
            continue;
        }
        let mut events = Vec::with_capacity(records.len());
        for record in &records {
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
        let Some(last) = events.last().map(|e| e.sequence_number.to_string()) else {
            continue;
        };
        source
            .stats
            .records_in
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        let dead_letters = format!("_dead_letters/{}", source.config.name.get_ref());
        let report = handle_batch(
            source.processor.as_ref(),
            &source.delivery,
            Some(&dead_letters),
            source.config.name.get_ref(),
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
        checkpoint.sequence_number = Some(last);
        source.save(lake, shard, &checkpoint).await?;
    }
    Ok(())
}
