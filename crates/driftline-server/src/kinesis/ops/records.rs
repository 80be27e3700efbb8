//! Records: put one or a batch, shard iterators, get.

use super::*;

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

pub(super) fn record_arg(req: &Req, place: RecordPlace) -> Result<NewRecord, ApiError> {
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

pub(super) fn put_record(state: &KinesisState, req: &Req, now_ms: i64) -> Result<Out, ApiError> {
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

pub(super) fn put_records(state: &KinesisState, req: &Req, now_ms: i64) -> Result<Out, ApiError> {
    let entries = req
        .list_opt("Records")?
        .ok_or_else(|| crate::kinesis::wire::missing("Records"))?;
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

pub(super) fn get_shard_iterator(
    state: &KinesisState,
    req: &Req,
    now_ms: i64,
) -> Result<Out, ApiError> {
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

pub(super) fn get_records(
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
