//! Streams and their shards: create, delete, list, describe, list shards.

use super::*;

pub(super) fn create_stream(state: &KinesisState, req: &Req, now_ms: i64) -> Result<Out, ApiError> {
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

pub(super) fn delete_stream(state: &KinesisState, req: &Req) -> Result<Out, ApiError> {
    let name = stream_name(req)?;
    state.store.delete_stream(&name)?;
    Ok(Out::Map(Vec::new()))
}

pub(super) fn list_streams(
    state: &KinesisState,
    req: &Req,
    caller: &Caller,
) -> Result<Out, ApiError> {
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

pub(super) fn mode_details(mode: StreamMode) -> Out {
    let name = match mode {
        StreamMode::Provisioned => "PROVISIONED",
        StreamMode::OnDemand => "ON_DEMAND",
    };
    Out::Map(vec![("StreamMode", Out::Str(name.into()))])
}

pub(super) fn shard_out(stream: &Stream, shard: &ShardMeta) -> Out {
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

pub(super) fn describe_stream(state: &KinesisState, req: &Req) -> Result<Out, ApiError> {
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
pub(super) fn stream_fields(state: &KinesisState, meta: &StreamMeta) -> Vec<(&'static str, Out)> {
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

pub(super) fn describe_stream_summary(state: &KinesisState, req: &Req) -> Result<Out, ApiError> {
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
pub(super) fn list_shards(
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
