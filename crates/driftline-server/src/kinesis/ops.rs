//! The Kinesis operations, each a synchronous function from a decoded request
//! to a response tree. The service model in botocore
//! (`botocore/data/kinesis/2013-12-02/service-2.json`) is the reference for
//! member names, constraints and error codes.

use std::collections::BTreeMap;

use driftline_log::{
    parse_shard_id, shard_id, validate_stream_name, LogError, NewRecord, SequenceNumber, ShardMeta,
    Stream, StreamMeta, StreamMode, StreamSpec,
};

use super::error::ApiError;
use super::iterator::IteratorPosition;
use super::wire::{constraint, Out, Req};
use super::KinesisState;
use crate::auth::{Caller, Scope};

pub const MAX_RECORD_BYTES: usize = 1024 * 1024;
pub const MAX_PUT_RECORDS: usize = 500;
pub const MAX_PUT_RECORDS_BYTES: usize = 5 * 1024 * 1024;
pub const MAX_GET_RECORDS: i64 = 10_000;
pub const MAX_GET_RECORDS_BYTES: usize = 10 * 1024 * 1024;
const ON_DEMAND_SHARDS: u32 = 4;
const NEXT_TOKEN_LIFETIME_MS: i64 = 300_000;
const MAX_TAGS: usize = 50;

pub fn dispatch(
    state: &KinesisState,
    operation: &str,
    req: &Req,
    now_ms: i64,
    caller: &Caller,
) -> Result<Out, ApiError> {
    let scope = authorize(state, operation, req, caller)?;
    let out = match operation {
        "CreateStream" => create_stream(state, req, now_ms),
        "DeleteStream" => delete_stream(state, req),
        "ListStreams" => list_streams(state, req, caller),
        "DescribeStream" => describe_stream(state, req),
        "DescribeStreamSummary" => describe_stream_summary(state, req),
        "ListShards" => list_shards(state, req, now_ms, caller),
        "PutRecord" => put_record(state, req, now_ms),
        "PutRecords" => put_records(state, req, now_ms),
        "GetShardIterator" => get_shard_iterator(state, req, now_ms),
        "GetRecords" => get_records(state, req, now_ms, caller),
        "IncreaseStreamRetentionPeriod" => change_retention(state, req, true),
        "DecreaseStreamRetentionPeriod" => change_retention(state, req, false),
        "SplitShard" => split_shard(state, req, now_ms),
        "MergeShards" => merge_shards(state, req, now_ms),
        "UpdateShardCount" => update_shard_count(state, req, now_ms),
        "AddTagsToStream" => add_tags(state, req),
        "RemoveTagsFromStream" => remove_tags(state, req),
        "ListTagsForStream" => list_tags(state, req),
        other => Err(ApiError::new(
            "UnknownOperationException",
            format!("operation {other} is not supported by driftline"),
        )),
    }?;
    if scope == Some(Scope::StreamsAdmin) {
        tracing::info!(
            target: "driftline::audit",
            key = caller.key_id().unwrap_or("-"),
            operation,
            stream = stream_name(req).unwrap_or_default(),
            "stream administered"
        );
    }
    Ok(out)
}

/// The scope an operation needs.
fn scope_of(operation: &str) -> Option<Scope> {
    Some(match operation {
        "PutRecord" | "PutRecords" => Scope::StreamsWrite,
        "ListStreams"
        | "DescribeStream"
        | "DescribeStreamSummary"
        | "ListShards"
        | "GetShardIterator"
        | "GetRecords"
        | "ListTagsForStream" => Scope::StreamsRead,
        "CreateStream"
        | "DeleteStream"
        | "IncreaseStreamRetentionPeriod"
        | "DecreaseStreamRetentionPeriod"
        | "SplitShard"
        | "MergeShards"
        | "UpdateShardCount"
        | "AddTagsToStream"
        | "RemoveTagsFromStream" => Scope::StreamsAdmin,
        _ => return None,
    })
}

/// Checks that the caller holds the operation's scope on the stream it
/// names, and returns that scope. GetRecords names its stream only inside
/// the iterator, so it is checked once the iterator is read.
pub(super) fn authorize(
    state: &KinesisState,
    operation: &str,
    req: &Req,
    caller: &Caller,
) -> Result<Option<Scope>, ApiError> {
    let scope = scope_of(operation);
    let Some(required) = scope else {
        return Ok(None);
    };
    if matches!(caller, Caller::Anyone) || operation == "GetRecords" {
        return Ok(scope);
    }
    // Listing needs the scope on some stream, not on a named one.
    if operation == "ListStreams" && caller.holds(required) {
        return Ok(scope);
    }
    let name = if operation == "ListStreams" {
        "*".to_string()
    } else {
        match stream_name(req) {
            Ok(name) => name,
            // Nothing can be done without a stream: the operation says
            // what is missing to a caller who may use it on some stream.
            Err(_) if caller.holds(required) => return Ok(scope),
            Err(_) => "*".to_string(),
        }
    };
    caller
        .check(required, &name)
        .map_err(|d| ApiError::denied(operation, &d, &state.arn(&name)))?;
    Ok(scope)
}

/// The stream a request names, by StreamName or StreamARN.
fn stream_name(req: &Req) -> Result<String, ApiError> {
    if let Some(name) = req.str_opt("StreamName")? {
        check_stream_name(name)?;
        return Ok(name.to_string());
    }
    if let Some(arn) = req.str_opt("StreamARN")? {
        let name = arn
            .strip_prefix("arn:")
            .and_then(|rest| rest.rsplit_once(":stream/"))
            .map(|(_, name)| name)
            .ok_or_else(|| constraint("StreamARN", arn, "Member must satisfy regular expression pattern: arn:aws.*:kinesis:.*:\\d{12}:stream/\\S+"))?;
        check_stream_name(name)?;
        return Ok(name.to_string());
    }
    Err(ApiError::invalid_argument(
        "Either StreamName or StreamARN should be provided.",
    ))
}

fn check_stream_name(name: &str) -> Result<(), ApiError> {
    validate_stream_name(name).map_err(|_| {
        constraint(
            "StreamName",
            name,
            "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+ and have length between 1 and 128",
        )
    })
}

pub fn open_stream(state: &KinesisState, req: &Req) -> Result<std::sync::Arc<Stream>, ApiError> {
    let name = stream_name(req)?;
    Ok(state.store.stream(&name)?)
}

/// A shard id member, as `shardId-000000000007` or the bare number.
fn parse_shard_arg(key: &str, text: &str) -> Result<u32, ApiError> {
    parse_shard_id(text).ok_or_else(|| {
        constraint(
            key,
            text,
            "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+",
        )
    })
}

fn optional_shard_arg(req: &Req, key: &str) -> Result<Option<u32>, ApiError> {
    req.str_opt(key)?
        .map(|text| parse_shard_arg(key, text))
        .transpose()
}

fn hash_range_out(range: &driftline_log::HashKeyRange) -> Out {
    Out::Map(vec![
        ("StartingHashKey", Out::Str(range.start.to_string())),
        ("EndingHashKey", Out::Str(range.end.to_string())),
    ])
}

fn shard_arg(stream: &Stream, req: &Req, key: &str) -> Result<u32, ApiError> {
    let text = req.str_req(key)?;
    let index = parse_shard_arg(key, text)?;
    if stream.meta().shard(index).is_none() {
        return Err(ApiError::not_found(format!(
            "Could not find shard {text} in stream {} under account 000000000000.",
            stream.name()
        )));
    }
    Ok(index)
}

fn hash_key_arg(req: &Req, key: &str) -> Result<Option<u128>, ApiError> {
    parse_hash_key(req.str_opt(key)?, key)
}

fn parse_hash_key(text: Option<&str>, key: &str) -> Result<Option<u128>, ApiError> {
    let Some(text) = text else {
        return Ok(None);
    };
    let valid_form = text == "0"
        || (!text.starts_with('0') && !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()));
    if !valid_form {
        return Err(constraint(
            key,
            text,
            "Member must satisfy regular expression pattern: 0|([1-9]\\d{0,38})",
        ));
    }
    text.parse::<u128>().map(Some).map_err(|_| {
        ApiError::invalid_argument(format!(
            "{key} {text} is outside the hash key range 0 to 340282366920938463463374607431768211455"
        ))
    })
}

fn limit_arg(req: &Req, key: &str, default: i64, max: i64) -> Result<i64, ApiError> {
    let value = req.int_opt(key)?.unwrap_or(default);
    if value < 1 || value > max {
        return Err(constraint(
            key,
            &value.to_string(),
            &format!("Member must have value between 1 and {max}"),
        ));
    }
    Ok(value)
}

fn create_stream(state: &KinesisState, req: &Req, now_ms: i64) -> Result<Out, ApiError> {
    let name = req.str_req("StreamName")?;
    check_stream_name(name)?;
    let mode = match req.object_opt("StreamModeDetails")? {
        None => None,
        Some(details) => Some(match details.str_req("StreamMode")? {
            "PROVISIONED" => StreamMode::Provisioned,
            "ON_DEMAND" => StreamMode::OnDemand,
            other => {
                return Err(constraint(
                    "StreamModeDetails.StreamMode",
                    other,
                    "Member must satisfy enum value set: [PROVISIONED, ON_DEMAND]",
                ))
            }
        }),
    };
    let shard_count = req.int_opt("ShardCount")?;
    let (mode, shard_count) = match (mode, shard_count) {
        (Some(StreamMode::OnDemand), Some(_)) => {
            return Err(ApiError::invalid_argument(
                "ShardCount must not be given for a stream in ON_DEMAND mode",
            ))
        }
        (Some(StreamMode::OnDemand), None) | (None, None) => {
            (StreamMode::OnDemand, i64::from(ON_DEMAND_SHARDS))
        }
        (Some(StreamMode::Provisioned), None) => {
            return Err(ApiError::invalid_argument(
                "ShardCount is required for a stream in PROVISIONED mode",
            ))
        }
        (_, Some(count)) => (StreamMode::Provisioned, count),
    };
    if shard_count < 1 {
        return Err(constraint(
            "ShardCount",
            &shard_count.to_string(),
            "Member must have value greater than or equal to 1",
        ));
    }
    let tags = req.string_map_opt("Tags")?.unwrap_or_default();
    validate_tags(&tags, 0)?;
    let shard_count = u32::try_from(shard_count).map_err(|_| {
        ApiError::limit(format!(
            "ShardCount {shard_count} exceeds the limit of open shards per stream"
        ))
    })?;
    state.store.create_stream(
        StreamSpec {
            name: name.to_string(),
            shard_count,
            mode,
            tags: tags.into_iter().collect(),
        },
        now_ms,
    )?;
    Ok(Out::Map(Vec::new()))
}

fn delete_stream(state: &KinesisState, req: &Req) -> Result<Out, ApiError> {
    let name = stream_name(req)?;
    state.store.delete_stream(&name)?;
    Ok(Out::Map(Vec::new()))
}

fn list_streams(state: &KinesisState, req: &Req, caller: &Caller) -> Result<Out, ApiError> {
    let limit = limit_arg(req, "Limit", 100, 10_000)? as usize;
    let start_after = match (
        req.str_opt("NextToken")?,
        req.str_opt("ExclusiveStartStreamName")?,
    ) {
        (Some(token), _) => Some(token.to_string()),
        (None, Some(name)) => Some(name.to_string()),
        (None, None) => None,
    };
    let names: Vec<String> = state
        .store
        .stream_names()
        .into_iter()
        .filter(|n| start_after.as_ref().is_none_or(|after| n > after))
        // A key sees only the streams it may read.
        .filter(|n| caller.allows(Scope::StreamsRead, n))
        .collect();
    let has_more = names.len() > limit;
    let page: Vec<String> = names.into_iter().take(limit).collect();
    let mut summaries = Vec::new();
    for name in &page {
        if let Ok(stream) = state.store.stream(name) {
            let meta = stream.meta();
            summaries.push(Out::Map(vec![
                ("StreamName", Out::Str(meta.name.clone())),
                ("StreamARN", Out::Str(state.arn(&meta.name))),
                ("StreamStatus", Out::Str("ACTIVE".into())),
                ("StreamModeDetails", mode_details(meta.mode)),
                ("StreamCreationTimestamp", Out::Time(meta.created_ms)),
            ]));
        }
    }
    let mut out = vec![
        (
            "StreamNames",
            Out::List(page.iter().cloned().map(Out::Str).collect()),
        ),
        ("HasMoreStreams", Out::Bool(has_more)),
        ("StreamSummaries", Out::List(summaries)),
    ];
    if has_more {
        if let Some(last) = page.last() {
            out.push(("NextToken", Out::Str(last.clone())));
        }
    }
    Ok(Out::Map(out))
}

fn mode_details(mode: StreamMode) -> Out {
    let name = match mode {
        StreamMode::Provisioned => "PROVISIONED",
        StreamMode::OnDemand => "ON_DEMAND",
    };
    Out::Map(vec![("StreamMode", Out::Str(name.into()))])
}

fn shard_out(stream: &Stream, shard: &ShardMeta) -> Out {
    let mut range = vec![(
        "StartingSequenceNumber",
        Out::Str(SequenceNumber::new(shard.index, 0).to_string()),
    )];
    if !shard.is_open() {
        let end = stream
            .shard(shard.index)
            .map(|log| log.end_offset())
            .unwrap_or(0);
        range.push((
            "EndingSequenceNumber",
            Out::Str(SequenceNumber::new(shard.index, end.saturating_sub(1)).to_string()),
        ));
    }
    let mut out = vec![("ShardId", Out::Str(shard.id()))];
    if let Some(parent) = shard.parents.first() {
        out.push(("ParentShardId", Out::Str(shard_id(*parent))));
    }
    if let Some(adjacent) = shard.parents.get(1) {
        out.push(("AdjacentParentShardId", Out::Str(shard_id(*adjacent))));
    }
    out.push(("HashKeyRange", hash_range_out(&shard.hash_range)));
    out.push(("SequenceNumberRange", Out::Map(range)));
    Out::Map(out)
}

fn describe_stream(state: &KinesisState, req: &Req) -> Result<Out, ApiError> {
    let stream = open_stream(state, req)?;
    let limit = limit_arg(req, "Limit", 100, 10_000)? as usize;
    let start_after = optional_shard_arg(req, "ExclusiveStartShardId")?;
    let meta = stream.meta();
    let shards: Vec<&ShardMeta> = meta
        .shards
        .iter()
        .filter(|s| start_after.is_none_or(|after| s.index > after))
        .collect();
    let has_more = shards.len() > limit;
    let shards_out = shards
        .into_iter()
        .take(limit)
        .map(|s| shard_out(&stream, s))
        .collect();
    let mut description = stream_fields(state, &meta);
    description.push(("Shards", Out::List(shards_out)));
    description.push(("HasMoreShards", Out::Bool(has_more)));
    Ok(Out::Map(vec![("StreamDescription", Out::Map(description))]))
}

/// The members DescribeStream and DescribeStreamSummary share.
fn stream_fields(state: &KinesisState, meta: &StreamMeta) -> Vec<(&'static str, Out)> {
    vec![
        ("StreamName", Out::Str(meta.name.clone())),
        ("StreamARN", Out::Str(state.arn(&meta.name))),
        ("StreamStatus", Out::Str("ACTIVE".into())),
        ("StreamModeDetails", mode_details(meta.mode)),
        (
            "RetentionPeriodHours",
            Out::Int(i64::from(meta.retention_hours)),
        ),
        ("StreamCreationTimestamp", Out::Time(meta.created_ms)),
        (
            "EnhancedMonitoring",
            Out::List(vec![Out::Map(vec![(
                "ShardLevelMetrics",
                Out::List(Vec::new()),
            )])]),
        ),
        ("EncryptionType", Out::Str("NONE".into())),
    ]
}

fn describe_stream_summary(state: &KinesisState, req: &Req) -> Result<Out, ApiError> {
    let stream = open_stream(state, req)?;
    let meta = stream.meta();
    let consumers = stream.consumers().map(|c| c.len()).unwrap_or(0);
    let mut summary = stream_fields(state, &meta);
    summary.extend([
        (
            "OpenShardCount",
            Out::Int(meta.open_shards().count() as i64),
        ),
        ("ConsumerCount", Out::Int(consumers as i64)),
        (
            "MaxRecordSizeInKiB",
            Out::Int((MAX_RECORD_BYTES / 1024) as i64),
        ),
    ]);
    Ok(Out::Map(vec![(
        "StreamDescriptionSummary",
        Out::Map(summary),
    )]))
}

/// ListShards pages with a NextToken that carries the stream, the last shard
/// returned and an expiry; AWS refuses a token together with StreamName.
fn list_shards(
    state: &KinesisState,
    req: &Req,
    now_ms: i64,
    caller: &Caller,
) -> Result<Out, ApiError> {
    let max_results = limit_arg(req, "MaxResults", 1000, 10_000)? as usize;
    let next_token = req.str_opt("NextToken")?;
    let exclusive_start = req.str_opt("ExclusiveStartShardId")?;
    let (name, after, filter_token) = if let Some(token) = next_token {
        if req.str_opt("StreamName")?.is_some() || req.str_opt("StreamARN")?.is_some() {
            return Err(ApiError::invalid_argument(
                "NextToken and StreamName cannot be provided together.",
            ));
        }
        if exclusive_start.is_some() {
            return Err(ApiError::invalid_argument(
                "NextToken and ExclusiveStartShardId cannot be provided together.",
            ));
        }
        let token = ListShardsToken::decode(token)?;
        if now_ms - token.issued_ms > NEXT_TOKEN_LIFETIME_MS {
            return Err(ApiError::new(
                "ExpiredNextTokenException",
                format!("The NextToken has expired; it was issued at {} and tokens last {NEXT_TOKEN_LIFETIME_MS} ms", token.issued_ms),
            ));
        }
        (token.stream, Some(token.after), Some(token.filter))
    } else {
        let after = optional_shard_arg(req, "ExclusiveStartShardId")?;
        (stream_name(req)?, after, None)
    };
    // A NextToken names its stream inside: checked here, once it is read.
    caller
        .check(Scope::StreamsRead, &name)
        .map_err(|d| ApiError::denied("ListShards", &d, &state.arn(&name)))?;
    let stream = state.store.stream(&name)?;
    let filter = match filter_token {
        Some(filter) => filter,
        None => ShardFilter::from_request(req)?,
    };
    let meta = stream.meta();
    let selected: Vec<&ShardMeta> = meta
        .shards
        .iter()
        .filter(|s| after.is_none_or(|a| s.index > a))
        .filter(|s| filter.admits(s))
        .collect();
    let has_more = selected.len() > max_results;
    let page: Vec<&ShardMeta> = selected.into_iter().take(max_results).collect();
    let mut out = vec![(
        "Shards",
        Out::List(page.iter().map(|s| shard_out(&stream, s)).collect()),
    )];
    if has_more {
        if let Some(last) = page.last() {
            let token = ListShardsToken {
                stream: name,
                after: last.index,
                issued_ms: now_ms,
                filter,
            };
            out.push(("NextToken", Out::Str(token.encode())));
        }
    }
    Ok(Out::Map(out))
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum ShardFilter {
    All,
    AfterShardId(u32),
    AtLatest,
    AtTimestamp(i64),
    FromTimestamp(i64),
}

impl ShardFilter {
    fn from_request(req: &Req) -> Result<ShardFilter, ApiError> {
        let Some(filter) = req.object_opt("ShardFilter")? else {
            return Ok(ShardFilter::All);
        };
        let kind = filter.str_req("Type")?;
        Ok(match kind {
            "AT_TRIM_HORIZON" | "FROM_TRIM_HORIZON" => ShardFilter::All,
            "AT_LATEST" => ShardFilter::AtLatest,
            "AFTER_SHARD_ID" => {
                let id = filter.str_opt("ShardId")?.ok_or_else(|| {
                    ApiError::invalid_argument("ShardFilter of type AFTER_SHARD_ID needs a ShardId")
                })?;
                ShardFilter::AfterShardId(parse_shard_arg("ShardFilter.ShardId", id)?)
            }
            "AT_TIMESTAMP" | "FROM_TIMESTAMP" => {
                let at = filter.timestamp_opt("Timestamp")?.ok_or_else(|| {
                    ApiError::invalid_argument(format!("ShardFilter of type {kind} needs a Timestamp"))
                })?;
                if kind == "AT_TIMESTAMP" {
                    ShardFilter::AtTimestamp(at)
                } else {
                    ShardFilter::FromTimestamp(at)
                }
            }
            other => {
                return Err(constraint(
                    "ShardFilter.Type",
                    other,
                    "Member must satisfy enum value set: [AFTER_SHARD_ID, AT_TRIM_HORIZON, FROM_TRIM_HORIZON, AT_LATEST, AT_TIMESTAMP, FROM_TIMESTAMP]",
                ))
            }
        })
    }

    fn admits(&self, shard: &ShardMeta) -> bool {
        match self {
            ShardFilter::All => true,
            ShardFilter::AfterShardId(after) => shard.index > *after,
            ShardFilter::AtLatest => shard.is_open(),
            ShardFilter::AtTimestamp(at) => {
                shard.created_ms <= *at && shard.closed_ms.is_none_or(|c| c > *at)
            }
            ShardFilter::FromTimestamp(at) => shard.closed_ms.is_none_or(|c| c > *at),
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ListShardsToken {
    stream: String,
    after: u32,
    issued_ms: i64,
    filter: ShardFilter,
}

impl ListShardsToken {
    fn encode(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(self).unwrap_or_default())
    }

    fn decode(token: &str) -> Result<ListShardsToken, ApiError> {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .ok()
            .and_then(|raw| serde_json::from_slice(&raw).ok())
            .ok_or_else(|| {
                ApiError::invalid_argument(format!(
                    "NextToken {token:?} is not a token this server issued"
                ))
            })
    }
}

/// Where a record sits in its request, for error messages: PutRecord's one
/// record, or the n-th (0-based) entry of PutRecords.
#[derive(Clone, Copy)]
pub enum RecordPlace {
    Single,
    Entry(usize),
}

impl RecordPlace {
    fn member(self, name: &str) -> String {
        match self {
            RecordPlace::Single => name.to_string(),
            RecordPlace::Entry(i) => format!("records.{}.member.{name}", i + 1),
        }
    }
}

fn record_arg(req: &Req, place: RecordPlace) -> Result<NewRecord, ApiError> {
    record_from(
        req.str_req("PartitionKey")?,
        req.blob_req("Data")?,
        req.str_opt("ExplicitHashKey")?,
        place,
    )
}

/// Validates one record, whichever way its request was decoded.
pub fn record_from(
    partition_key: &str,
    data: Vec<u8>,
    explicit_hash_key: Option<&str>,
    place: RecordPlace,
) -> Result<NewRecord, ApiError> {
    let chars = partition_key.chars().count();
    if chars == 0 || chars > 256 {
        return Err(constraint(
            &place.member("PartitionKey"),
            partition_key,
            "Member must have length between 1 and 256",
        ));
    }
    let size = data.len() + partition_key.len();
    if size > MAX_RECORD_BYTES {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value at '{}' failed to satisfy constraint: Member must have length less than or equal to {MAX_RECORD_BYTES} (data plus partition key is {size} bytes)",
            place.member("data")
        )));
    }
    Ok(NewRecord {
        partition_key: partition_key.to_string(),
        explicit_hash_key: parse_hash_key(explicit_hash_key, "ExplicitHashKey")?,
        data,
    })
}

fn put_record(state: &KinesisState, req: &Req, now_ms: i64) -> Result<Out, ApiError> {
    let stream = open_stream(state, req)?;
    let record = record_arg(req, RecordPlace::Single)?;
    if let Some(ordering) = req.str_opt("SequenceNumberForOrdering")? {
        ordering.parse::<SequenceNumber>().map_err(|_| {
            constraint(
                "SequenceNumberForOrdering",
                ordering,
                "Member must satisfy regular expression pattern: 0|([1-9]\\d{0,128})",
            )
        })?;
    }
    let position = stream
        .put(vec![record], now_ms)
        .pop()
        .unwrap_or_else(|| Err(LogError::InvalidArgument("no record".into())))?;
    Ok(Out::Map(vec![
        ("ShardId", Out::Str(shard_id(position.shard_index))),
        (
            "SequenceNumber",
            Out::Str(position.sequence_number.to_string()),
        ),
        ("EncryptionType", Out::Str("NONE".into())),
    ]))
}

fn put_records(state: &KinesisState, req: &Req, now_ms: i64) -> Result<Out, ApiError> {
    let entries = req
        .list_opt("Records")?
        .ok_or_else(|| super::wire::missing("Records"))?;
    check_put_records_count(entries.len())?;
    let stream = open_stream(state, req)?;
    let mut records = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let serde_json::Value::Object(entry) = entry else {
            return Err(ApiError::serialization(format!(
                "Records[{i}] must be an object"
            )));
        };
        records.push(record_arg(
            &Req::new(entry, req.protocol),
            RecordPlace::Entry(i),
        )?);
    }
    write_records(&stream, records, now_ms)
}

pub fn check_put_records_bytes(records: &[NewRecord]) -> Result<(), ApiError> {
    let total: usize = records
        .iter()
        .map(|r| r.data.len() + r.partition_key.len())
        .sum();
    if total > MAX_PUT_RECORDS_BYTES {
        return Err(ApiError::invalid_argument(format!(
            "Records size {total} bytes exceeds the limit of {MAX_PUT_RECORDS_BYTES} bytes per PutRecords request"
        )));
    }
    Ok(())
}

pub fn check_put_records_count(count: usize) -> Result<(), ApiError> {
    if count == 0 || count > MAX_PUT_RECORDS {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value at 'records' failed to satisfy constraint: Member must have length between 1 and {MAX_PUT_RECORDS} (got {count})"
        )));
    }
    Ok(())
}

/// Writes validated PutRecords entries and reports each record's outcome.
pub fn write_records(
    stream: &Stream,
    records: Vec<NewRecord>,
    now_ms: i64,
) -> Result<Out, ApiError> {
    check_put_records_bytes(&records)?;
    let mut failed = 0i64;
    let results = stream
        .put(records, now_ms)
        .into_iter()
        .map(|result| match result {
            Ok(position) => Out::Map(vec![
                (
                    "SequenceNumber",
                    Out::Str(position.sequence_number.to_string()),
                ),
                ("ShardId", Out::Str(shard_id(position.shard_index))),
            ]),
            Err(error) => {
                failed += 1;
                Out::Map(vec![
                    (
                        "ErrorCode",
                        Out::Str(ApiError::record_error_code(&error).into()),
                    ),
                    ("ErrorMessage", Out::Str(error.to_string())),
                ])
            }
        })
        .collect();
    Ok(Out::Map(vec![
        ("FailedRecordCount", Out::Int(failed)),
        ("Records", Out::List(results)),
        ("EncryptionType", Out::Str("NONE".into())),
    ]))
}

fn get_shard_iterator(state: &KinesisState, req: &Req, now_ms: i64) -> Result<Out, ApiError> {
    let stream = open_stream(state, req)?;
    let shard_index = shard_arg(&stream, req, "ShardId")?;
    let log = stream.shard(shard_index)?;
    let kind = req.str_req("ShardIteratorType")?;
    let sequence_arg = || -> Result<SequenceNumber, ApiError> {
        let text = req.str_opt("StartingSequenceNumber")?.ok_or_else(|| {
            ApiError::invalid_argument(format!(
                "StartingSequenceNumber is required for ShardIteratorType {kind}"
            ))
        })?;
        let sequence: SequenceNumber = text.parse().map_err(|_| {
            constraint(
                "StartingSequenceNumber",
                text,
                "Member must satisfy regular expression pattern: 0|([1-9]\\d{0,128})",
            )
        })?;
        if sequence.shard_index() != Some(shard_index) {
            return Err(ApiError::invalid_argument(format!(
                "Invalid StartingSequenceNumber. It encodes shard {}, while it was used in a call to a shard with {}",
                sequence.shard_index().map_or_else(|| "none".to_string(), shard_id),
                shard_id(shard_index)
            )));
        }
        Ok(sequence)
    };
    let offset = match kind {
        "TRIM_HORIZON" => log.trim_horizon(),
        "LATEST" => log.end_offset(),
        "AT_SEQUENCE_NUMBER" => sequence_arg()?.offset(),
        "AFTER_SEQUENCE_NUMBER" => sequence_arg()?.offset() + 1,
        "AT_TIMESTAMP" => {
            let at = req.timestamp_opt("Timestamp")?.ok_or_else(|| {
                ApiError::invalid_argument("Timestamp is required for ShardIteratorType AT_TIMESTAMP")
            })?;
            if at > now_ms {
                return Err(ApiError::invalid_argument(format!(
                    "The timestamp {at} ms is in the future; the server time is {now_ms} ms"
                )));
            }
            log.offset_at_timestamp(at)?
        }
        other => {
            return Err(constraint(
                "ShardIteratorType",
                other,
                "Member must satisfy enum value set: [AT_SEQUENCE_NUMBER, AFTER_SEQUENCE_NUMBER, TRIM_HORIZON, LATEST, AT_TIMESTAMP]",
            ))
        }
    };
    let iterator = state.signer.encode(&IteratorPosition {
        stream: stream.name().to_string(),
        stream_created_ms: stream.meta().created_ms,
        shard_index,
        offset,
        issued_ms: now_ms,
    });
    Ok(Out::Map(vec![("ShardIterator", Out::Str(iterator))]))
}

fn get_records(
    state: &KinesisState,
    req: &Req,
    now_ms: i64,
    caller: &Caller,
) -> Result<Out, ApiError> {
    let token = req.str_req("ShardIterator")?;
    if token.is_empty() || token.len() > 512 {
        return Err(constraint(
            "ShardIterator",
            token,
            "Member must have length between 1 and 512",
        ));
    }
    let limit = limit_arg(req, "Limit", MAX_GET_RECORDS, MAX_GET_RECORDS)? as usize;
    let position = state.signer.decode(token, now_ms)?;
    caller
        .check(Scope::StreamsRead, &position.stream)
        .map_err(|d| ApiError::denied("GetRecords", &d, &state.arn(&position.stream)))?;
    let stream = state.store.stream(&position.stream)?;
    let meta = stream.meta();
    if meta.created_ms != position.stream_created_ms {
        return Err(ApiError::not_found(format!(
            "Stream {} was deleted and created again since this iterator was issued",
            position.stream
        )));
    }
    let log = stream.shard(position.shard_index)?;
    let batch = log.read(position.offset, limit, MAX_GET_RECORDS_BYTES)?;
    let next_offset = batch.next_offset;
    let caught_up = next_offset >= log.end_offset();
    let millis_behind = match (caught_up, batch.records.last()) {
        (true, _) => 0,
        (false, Some(last)) => (now_ms - last.timestamp_ms).max(0),
        (false, None) => 0,
    };
    let records: Vec<Out> = batch
        .records
        .into_iter()
        .map(|r| {
            Out::Map(vec![
                (
                    "SequenceNumber",
                    Out::Str(SequenceNumber::new(position.shard_index, r.offset).to_string()),
                ),
                ("ApproximateArrivalTimestamp", Out::Time(r.timestamp_ms)),
                ("Data", Out::Blob(r.data)),
                ("PartitionKey", Out::Str(r.partition_key)),
            ])
        })
        .collect();
    let mut out = vec![("Records", Out::List(records))];
    if log.is_finished_at(next_offset) {
        // The end of a closed shard: no next iterator; the children say where to go.
        out.push(("NextShardIterator", Out::Null));
        let children = meta
            .children_of(position.shard_index)
            .into_iter()
            .map(|child| {
                Out::Map(vec![
                    ("ShardId", Out::Str(child.id())),
                    (
                        "ParentShards",
                        Out::List(
                            child
                                .parents
                                .iter()
                                .map(|p| Out::Str(shard_id(*p)))
                                .collect(),
                        ),
                    ),
                    ("HashKeyRange", hash_range_out(&child.hash_range)),
                ])
            })
            .collect();
        out.push(("ChildShards", Out::List(children)));
    } else {
        let next = state.signer.encode(&IteratorPosition {
            offset: next_offset,
            issued_ms: now_ms,
            ..position
        });
        out.push(("NextShardIterator", Out::Str(next)));
    }
    out.push(("MillisBehindLatest", Out::Int(millis_behind)));
    Ok(Out::Map(out))
}

fn change_retention(state: &KinesisState, req: &Req, increase: bool) -> Result<Out, ApiError> {
    let stream = open_stream(state, req)?;
    let hours = req.int_req("RetentionPeriodHours")?;
    let current = i64::from(stream.meta().retention_hours);
    let (min, max) = (
        i64::from(driftline_log::stream::MIN_RETENTION_HOURS),
        i64::from(driftline_log::stream::MAX_RETENTION_HOURS),
    );
    if hours < min || hours > max {
        return Err(ApiError::invalid_argument(format!(
            "Minimum allowed retention period is {min} hours and maximum is {max} hours; requested {hours} hours for stream {}",
            stream.name()
        )));
    }
    if increase && hours < current {
        return Err(ApiError::invalid_argument(format!(
            "Requested retention period ({hours} hours) for stream {} can not be shorter than existing retention period ({current} hours). Use DecreaseStreamRetentionPeriod API.",
            stream.name()
        )));
    }
    if !increase && hours > current {
        return Err(ApiError::invalid_argument(format!(
            "Requested retention period ({hours} hours) for stream {} can not be longer than existing retention period ({current} hours). Use IncreaseStreamRetentionPeriod API.",
            stream.name()
        )));
    }
    stream.set_retention_hours(hours as u32)?;
    Ok(Out::Map(Vec::new()))
}

fn split_shard(state: &KinesisState, req: &Req, now_ms: i64) -> Result<Out, ApiError> {
    let stream = open_stream(state, req)?;
    let shard = shard_arg(&stream, req, "ShardToSplit")?;
    let key = hash_key_arg(req, "NewStartingHashKey")?
        .ok_or_else(|| super::wire::missing("NewStartingHashKey"))?;
    stream.split_shard(shard, key, now_ms)?;
    Ok(Out::Map(Vec::new()))
}

fn merge_shards(state: &KinesisState, req: &Req, now_ms: i64) -> Result<Out, ApiError> {
    let stream = open_stream(state, req)?;
    let shard = shard_arg(&stream, req, "ShardToMerge")?;
    let adjacent = shard_arg(&stream, req, "AdjacentShardToMerge")?;
    stream.merge_shards(shard, adjacent, now_ms)?;
    Ok(Out::Map(Vec::new()))
}

fn update_shard_count(state: &KinesisState, req: &Req, now_ms: i64) -> Result<Out, ApiError> {
    let stream = open_stream(state, req)?;
    let target = req.int_req("TargetShardCount")?;
    let scaling = req.str_req("ScalingType")?;
    if scaling != "UNIFORM_SCALING" {
        return Err(constraint(
            "ScalingType",
            scaling,
            "Member must satisfy enum value set: [UNIFORM_SCALING]",
        ));
    }
    if target < 1 {
        return Err(constraint(
            "TargetShardCount",
            &target.to_string(),
            "Member must have value greater than or equal to 1",
        ));
    }
    let target = u32::try_from(target)
        .map_err(|_| ApiError::limit(format!("TargetShardCount {target} is too large")))?;
    let current = stream.update_shard_count(target, now_ms)?;
    Ok(Out::Map(vec![
        ("StreamName", Out::Str(stream.name().to_string())),
        ("CurrentShardCount", Out::Int(i64::from(current))),
        ("TargetShardCount", Out::Int(i64::from(target))),
        ("StreamARN", Out::Str(state.arn(stream.name()))),
    ]))
}

fn validate_tags(tags: &[(String, String)], existing: usize) -> Result<(), ApiError> {
    for (key, value) in tags {
        if key.is_empty() || key.chars().count() > 128 {
            return Err(constraint(
                "Tags",
                key,
                "tag keys must have length between 1 and 128",
            ));
        }
        if value.chars().count() > 256 {
            return Err(constraint(
                "Tags",
                value,
                "tag values must have length at most 256",
            ));
        }
    }
    if tags.len() + existing > MAX_TAGS {
        return Err(ApiError::limit(format!(
            "a stream can have at most {MAX_TAGS} tags; this request would give it {}",
            tags.len() + existing
        )));
    }
    Ok(())
}

fn add_tags(state: &KinesisState, req: &Req) -> Result<Out, ApiError> {
    let stream = open_stream(state, req)?;
    let tags = req
        .string_map_opt("Tags")?
        .ok_or_else(|| super::wire::missing("Tags"))?;
    if tags.is_empty() {
        return Err(constraint(
            "Tags",
            "{}",
            "Member must have length greater than or equal to 1",
        ));
    }
    let existing = stream.meta().tags;
    let new_keys = tags
        .iter()
        .filter(|(k, _)| !existing.contains_key(k))
        .count();
    validate_tags(&tags, 0)?;
    if existing.len() + new_keys > MAX_TAGS {
        return Err(ApiError::limit(format!(
            "a stream can have at most {MAX_TAGS} tags; this request would give it {}",
            existing.len() + new_keys
        )));
    }
    stream.add_tags(tags.into_iter().collect::<BTreeMap<_, _>>())?;
    Ok(Out::Map(Vec::new()))
}

fn remove_tags(state: &KinesisState, req: &Req) -> Result<Out, ApiError> {
    let stream = open_stream(state, req)?;
    let keys = req
        .list_opt("TagKeys")?
        .ok_or_else(|| super::wire::missing("TagKeys"))?;
    let keys: Vec<String> = keys
        .iter()
        .map(|k| {
            k.as_str()
                .map(str::to_string)
                .ok_or_else(|| ApiError::serialization("TagKeys must be strings"))
        })
        .collect::<Result<_, _>>()?;
    stream.remove_tags(&keys)?;
    Ok(Out::Map(Vec::new()))
}

fn list_tags(state: &KinesisState, req: &Req) -> Result<Out, ApiError> {
    let stream = open_stream(state, req)?;
    let limit = limit_arg(req, "Limit", 10, 50)? as usize;
    let start_after = req.str_opt("ExclusiveStartTagKey")?;
    let tags: Vec<(String, String)> = stream
        .meta()
        .tags
        .into_iter()
        .filter(|(k, _)| start_after.is_none_or(|after| k.as_str() > after))
        .collect();
    let has_more = tags.len() > limit;
    let out = tags
        .into_iter()
        .take(limit)
        .map(|(k, v)| Out::Map(vec![("Key", Out::Str(k)), ("Value", Out::Str(v))]))
        .collect();
    Ok(Out::Map(vec![
        ("Tags", Out::List(out)),
        ("HasMoreTags", Out::Bool(has_more)),
    ]))
}
