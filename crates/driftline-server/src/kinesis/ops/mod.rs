//! The Kinesis operations, each a synchronous function from a decoded request
//! to a response tree. The service model in botocore
//! (`botocore/data/kinesis/2013-12-02/service-2.json`) is the reference for
//! member names, constraints and error codes.

use driftline_log::{
    parse_shard_id, shard_id, validate_stream_name, LogError, NewRecord, SequenceNumber, ShardMeta,
    Stream, StreamMeta, StreamMode, StreamSpec,
};

use super::error::ApiError;
use super::iterator::IteratorPosition;
use super::wire::{constraint, Out, Req};
use super::KinesisState;
use crate::auth::{Caller, Scope};

mod admin;
mod records;
mod streams;

use admin::*;
use records::*;
use streams::*;

pub use records::{
    check_put_records_bytes, check_put_records_count, record_from, write_records, RecordPlace,
};

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
