//! One batch of an event-source mapping handled as a Lambda function handles
//! it: the same processor as in-process, the same delivery to the lake, and
//! an answer in Lambda's partial-batch-failure terms.
//!
//! Exactly once in the lake, under Lambda's retries: a batch's objects are
//! named after the shard and the sequence-number range delivered, so a batch
//! delivered again replaces its own objects. Records the processor refuses
//! go, with the reason, to the dead-letter prefix of the lake when one is
//! set (and the batch succeeds); without one, only the rows before the first
//! refused record are delivered and that record is reported as the batch
//! item failure, so Lambda retries from it (and after its retries, hands the
//! batch to the mapping's on-failure destination). A processor error fails
//! the whole batch (a function error: Lambda retries or bisects it).

use driftline_lake::{ObjectName, Position};
use driftline_log::StreamWriter;

use crate::mapping::{Delivery, MappingError};
use crate::processor::{Event, Processor};

/// Where `handle_batch` puts the records its processor refuses.
#[derive(Clone, Copy)]
pub enum DeadLetters<'a> {
    /// Nowhere: the batch stops at the first refused record, which becomes
    /// its batch item failure (Lambda retries from it).
    Refuse,
    /// Under this lake prefix, one object per batch (named after it).
    Lake(&'a str),
    /// On this stream, one record per refused record, with the reason (a
    /// blocking put: needs tokio's multi-threaded runtime).
    Stream(&'a dyn StreamWriter),
}

/// What became of a batch.
#[derive(Debug, Default, PartialEq)]
pub struct BatchReport {
    pub rows_delivered: usize,
    pub objects: usize,
    pub dead_lettered: usize,
    /// Sequence numbers to report as `batchItemFailures` (Lambda retries from the lowest).
    pub failures: Vec<Position>,
}

/// Handles one batch of one shard (what Lambda passes one invocation).
pub async fn handle_batch(
    processor: &dyn Processor,
    delivery: &Delivery,
    dead_letters: DeadLetters<'_>,
    consumer: &str,
    events: &[Event],
) -> Result<BatchReport, MappingError> {
    let mut report = BatchReport::default();
    let (Some(first), Some(last)) = (events.first(), events.last()) else {
        return Ok(report);
    };
    if events.iter().any(|e| e.shard != first.shard) {
        return Err(MappingError::Batch(
            "a batch must come from one shard".into(),
        ));
    }
    let outcome = processor.process(events).map_err(MappingError::Batch)?;
    let mut rows = outcome.rows;
    let mut failed = outcome.failed;
    failed.sort_by_key(|(index, _)| *index);
    let mut delivered_to = last.sequence_number.clone();
    match (dead_letters, failed.first()) {
        (_, None) => {}
        (DeadLetters::Stream(stream), Some(_)) => {
            let letters: Vec<(String, serde_json::Value)> = failed
                .iter()
                .filter_map(|(index, reason)| events.get(*index).map(|e| (e, reason)))
                .map(|(event, reason)| {
                    let letter = crate::dead_letter::envelope(reason, consumer, None, event);
                    (event.partition_key.clone(), letter)
                })
                .collect();
            report.dead_lettered = letters.len();
            // Acknowledged before the batch counts as handled, so a
            // checkpoint never moves past a letter that was not kept.
            tokio::task::block_in_place(|| crate::dead_letter::put(stream, letters))?;
        }
        (DeadLetters::Lake(prefix), Some(_)) => {
            let lines: String = failed
                .iter()
                .filter_map(|(index, reason)| events.get(*index).map(|e| (e, reason)))
                .map(|(event, reason)| {
                    crate::dead_letter::envelope(reason, consumer, None, event).to_string() + "\n"
                })
                .collect();
            let path = crate::dead_letter::lake_path(
                prefix,
                consumer,
                &first.shard,
                first.sequence_number.clone(),
                last.sequence_number.clone(),
            );
            delivery.lake.write(&path, lines.into_bytes()).await?;
            report.dead_lettered = failed.len();
        }
        (DeadLetters::Refuse, Some((index, _))) => {
            let refused = &events
                .get(*index)
                .ok_or_else(|| {
                    MappingError::Batch(format!(
                        "the processor reported record {index} of a batch of {}",
                        events.len()
                    ))
                })?
                .sequence_number;
            report.failures.push(refused.clone());
            rows.retain(|row| row.sequence_number < *refused);
            match index.checked_sub(1).and_then(|i| events.get(i)) {
                Some(before) => delivered_to = before.sequence_number.clone(),
                None => return Ok(report), // nothing before it to deliver
            }
        }
    }
    if !rows.is_empty() {
        let written = delivery
            .lake
            .write_delivery(
                &delivery.table,
                &delivery.schema,
                &ObjectName {
                    shard: first.shard.clone(),
                    first: first.sequence_number.clone(),
                    last: delivered_to,
                },
                &rows,
                delivery.compression,
            )
            .await?;
        report.objects = written.len();
        report.rows_delivered = written.iter().map(|w| w.rows).sum();
    }
    Ok(report)
}

/// The events of a Lambda payload from a Kinesis or a DynamoDB Streams
/// event-source mapping, in order; the error says what does not fit.
///
/// Kinesis records give their data as it was put. A DynamoDB change record
/// becomes `{"event_name": "INSERT"|"MODIFY"|"REMOVE", "keys": {...},
/// "new_image": {...}|null, "old_image": {...}|null}`, the images in plain
/// JSON (DynamoDB's typed attribute values unwrapped); its "shard" is the
/// table's stream, which Lambda's payload does not break down further.
pub fn events_of(payload: &serde_json::Value) -> Result<Vec<Event>, String> {
    use base64::Engine;
    let records = payload
        .get("Records")
        .and_then(serde_json::Value::as_array)
        .ok_or("the payload has no \"Records\" array")?;
    let mut events = Vec::with_capacity(records.len());
    for (i, record) in records.iter().enumerate() {
        let text = |value: Option<&serde_json::Value>, what: &str| {
            value
                .and_then(serde_json::Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| format!("record {i}: no {what}"))
        };
        let position = |text: String| {
            Position::parse(&text)
                .ok_or_else(|| format!("record {i}: bad sequence number {text:?}"))
        };
        match record
            .get("eventSource")
            .and_then(serde_json::Value::as_str)
        {
            Some("aws:kinesis") => {
                let kinesis = record
                    .get("kinesis")
                    .ok_or_else(|| format!("record {i}: no \"kinesis\""))?;
                let event_id = text(record.get("eventID"), "\"eventID\"")?;
                let data = base64::engine::general_purpose::STANDARD
                    .decode(text(kinesis.get("data"), "\"kinesis.data\"")?)
                    .map_err(|e| format!("record {i}: data is not base64: {e}"))?;
                let arrival_s = kinesis
                    .get("approximateArrivalTimestamp")
                    .and_then(serde_json::Value::as_f64)
                    .unwrap_or_default();
                events.push(Event {
                    // "shardId-000000000006:49590338271490256608559692538361571095921575989136588898"
                    shard: event_id.split(':').next().unwrap_or_default().to_string(),
                    sequence_number: position(text(
                        kinesis.get("sequenceNumber"),
                        "\"kinesis.sequenceNumber\"",
                    )?)?,
                    arrival_ms: (arrival_s * 1000.0) as i64,
                    partition_key: text(kinesis.get("partitionKey"), "\"kinesis.partitionKey\"")?,
                    data,
                });
            }
            Some("aws:dynamodb") => {
                let change = record
                    .get("dynamodb")
                    .ok_or_else(|| format!("record {i}: no \"dynamodb\""))?;
                let image = |name: &str| change.get(name).map(plain_item).transpose();
                let keys = image("Keys")?.unwrap_or(serde_json::Value::Null);
                let event = serde_json::json!({
                    "event_name": text(record.get("eventName"), "\"eventName\"")?,
                    "keys": keys,
                    "new_image": image("NewImage")?,
                    "old_image": image("OldImage")?,
                });
                let source = text(record.get("eventSourceARN"), "\"eventSourceARN\"")?;
                // arn:aws:dynamodb:REGION:ACCOUNT:table/TABLE/stream/LABEL
                let table = source.split('/').nth(1).unwrap_or("table");
                let created_s = change
                    .get("ApproximateCreationDateTime")
                    .and_then(serde_json::Value::as_f64)
                    .unwrap_or_default();
                events.push(Event {
                    shard: format!("dynamodb-{table}"),
                    sequence_number: position(text(
                        change.get("SequenceNumber"),
                        "\"dynamodb.SequenceNumber\"",
                    )?)?,
                    arrival_ms: (created_s * 1000.0) as i64,
                    partition_key: keys.to_string(),
                    data: event.to_string().into_bytes(),
                });
            }
            other => {
                return Err(format!(
                    "record {i}: event source {other:?} is neither aws:kinesis nor aws:dynamodb"
                ))
            }
        }
    }
    Ok(events)
}

/// A DynamoDB item (`{"Id": {"N": "101"}, ...}`) as plain JSON.
fn plain_item(item: &serde_json::Value) -> Result<serde_json::Value, String> {
    let map = item.as_object().ok_or("an item must be an object")?;
    map.iter()
        .map(|(name, value)| Ok((name.clone(), plain_value(value)?)))
        .collect::<Result<serde_json::Map<_, _>, String>>()
        .map(serde_json::Value::Object)
}

/// One typed attribute value (`{"S": "x"}`, `{"N": "1.5"}`, ...) as plain JSON.
fn plain_value(value: &serde_json::Value) -> Result<serde_json::Value, String> {
    use serde_json::Value;
    let (kind, inner) = value
        .as_object()
        .filter(|m| m.len() == 1)
        .and_then(|m| m.iter().next())
        .ok_or_else(|| format!("{value} is not a DynamoDB attribute value"))?;
    let number = |n: &Value| {
        n.as_str()
            .and_then(|s| serde_json::from_str::<serde_json::Number>(s).ok())
            .map(Value::Number)
            .ok_or_else(|| format!("{n} is not a DynamoDB number"))
    };
    fn list(v: &serde_json::Value) -> Result<&Vec<serde_json::Value>, String> {
        v.as_array().ok_or_else(|| format!("{v} is not a list"))
    }
    Ok(match kind.as_str() {
        "S" | "B" => inner.clone(),
        "N" => number(inner)?,
        "BOOL" => inner.clone(),
        "NULL" => Value::Null,
        "M" => plain_item(inner)?,
        "L" => Value::Array(
            list(inner)?
                .iter()
                .map(plain_value)
                .collect::<Result<_, _>>()?,
        ),
        "SS" | "BS" => inner.clone(),
        "NS" => Value::Array(list(inner)?.iter().map(number).collect::<Result<_, _>>()?),
        other => return Err(format!("unknown DynamoDB type {other:?}")),
    })
}

/// The function's answer to a payload: each shard's batch handled in turn,
/// failures as `{"batchItemFailures": [{"itemIdentifier": SEQUENCE_NUMBER}]}`.
pub async fn handle_payload(
    processor: &dyn Processor,
    delivery: &Delivery,
    dead_letters: DeadLetters<'_>,
    consumer: &str,
    payload: &serde_json::Value,
) -> Result<(serde_json::Value, BatchReport), MappingError> {
    let events = events_of(payload).map_err(MappingError::Batch)?;
    let mut total = BatchReport::default();
    // Lambda sends one shard per invocation; split anyway, keeping order.
    let mut start = 0;
    while start < events.len() {
        let shard = &events[start].shard;
        let end = events[start..]
            .iter()
            .position(|e| &e.shard != shard)
            .map_or(events.len(), |n| start + n);
        let report = handle_batch(
            processor,
            delivery,
            dead_letters,
            consumer,
            &events[start..end],
        )
        .await?;
        total.rows_delivered += report.rows_delivered;
        total.objects += report.objects;
        total.dead_lettered += report.dead_lettered;
        total.failures.extend(report.failures);
        start = end;
    }
    let failures: Vec<serde_json::Value> = total
        .failures
        .iter()
        .map(|p| serde_json::json!({"itemIdentifier": p.to_string()}))
        .collect();
    Ok((serde_json::json!({"batchItemFailures": failures}), total))
}
