//! Retention, resharding and tags.

use std::collections::BTreeMap;

use super::*;

pub(super) fn change_retention(
    state: &KinesisState,
    req: &Req,
    increase: bool,
) -> Result<Out, ApiError> {
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

pub(super) fn split_shard(state: &KinesisState, req: &Req, now_ms: i64) -> Result<Out, ApiError> {
    let stream = open_stream(state, req)?;
    let shard = shard_arg(&stream, req, "ShardToSplit")?;
    let key = hash_key_arg(req, "NewStartingHashKey")?
        .ok_or_else(|| crate::kinesis::wire::missing("NewStartingHashKey"))?;
    stream.split_shard(shard, key, now_ms)?;
    Ok(Out::Map(Vec::new()))
}

pub(super) fn merge_shards(state: &KinesisState, req: &Req, now_ms: i64) -> Result<Out, ApiError> {
    let stream = open_stream(state, req)?;
    let shard = shard_arg(&stream, req, "ShardToMerge")?;
    let adjacent = shard_arg(&stream, req, "AdjacentShardToMerge")?;
    stream.merge_shards(shard, adjacent, now_ms)?;
    Ok(Out::Map(Vec::new()))
}

pub(super) fn update_shard_count(
    state: &KinesisState,
    req: &Req,
    now_ms: i64,
) -> Result<Out, ApiError> {
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

pub(super) fn validate_tags(tags: &[(String, String)], existing: usize) -> Result<(), ApiError> {
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

pub(super) fn add_tags(state: &KinesisState, req: &Req) -> Result<Out, ApiError> {
    let stream = open_stream(state, req)?;
    let tags = req
        .string_map_opt("Tags")?
        .ok_or_else(|| crate::kinesis::wire::missing("Tags"))?;
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

pub(super) fn remove_tags(state: &KinesisState, req: &Req) -> Result<Out, ApiError> {
    let stream = open_stream(state, req)?;
    let keys = req
        .list_opt("TagKeys")?
        .ok_or_else(|| crate::kinesis::wire::missing("TagKeys"))?;
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

pub(super) fn list_tags(state: &KinesisState, req: &Req) -> Result<Out, ApiError> {
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
