//! A typed decoding of PutRecords in JSON, the hottest request: it borrows the
//! partition keys and base64 text from the body instead of building a JSON
//! tree. A body it cannot decode goes through the generic path, whose errors
//! name what is wrong, so both paths accept and refuse the same requests.

use std::borrow::Cow;

use base64::Engine;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::ApiError;
use super::ops::{check_put_records_count, record_from, write_records, RecordPlace};
use super::wire::{Out, Protocol, Req};
use super::KinesisState;

#[derive(Deserialize)]
struct PutRecordsJson<'a> {
    #[serde(rename = "Records")]
    records: Vec<EntryJson<'a>>,
    #[serde(rename = "StreamName", borrow, default)]
    stream_name: Option<Cow<'a, str>>,
    #[serde(rename = "StreamARN", borrow, default)]
    stream_arn: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct EntryJson<'a> {
    #[serde(rename = "Data", borrow)]
    data: Cow<'a, str>,
    #[serde(rename = "PartitionKey", borrow)]
    partition_key: Cow<'a, str>,
    #[serde(rename = "ExplicitHashKey", borrow, default)]
    explicit_hash_key: Option<Cow<'a, str>>,
}

/// `None` when the body does not decode as a well-formed PutRecords request.
pub fn put_records_json(
    state: &KinesisState,
    body: &[u8],
    now_ms: i64,
) -> Option<Result<Out, ApiError>> {
    let request: PutRecordsJson = serde_json::from_slice(body).ok()?;
    let mut names = Map::new();
    if let Some(name) = request.stream_name {
        names.insert("StreamName".into(), Value::String(name.into_owned()));
    }
    if let Some(arn) = request.stream_arn {
        names.insert("StreamARN".into(), Value::String(arn.into_owned()));
    }
    let mut records = Vec::with_capacity(request.records.len());
    for entry in &request.records {
        // Invalid base64 is left to the generic path to report.
        let data = base64::engine::general_purpose::STANDARD
            .decode(entry.data.as_bytes())
            .ok()?;
        records.push((entry, data));
    }
    Some((|| {
        check_put_records_count(records.len())?;
        let stream = super::ops::open_stream(state, &Req::new(&names, Protocol::Json))?;
        let records = records
            .into_iter()
            .enumerate()
            .map(|(i, (entry, data))| {
                record_from(
                    &entry.partition_key,
                    data,
                    entry.explicit_hash_key.as_deref(),
                    RecordPlace::Entry(i),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        write_records(&stream, records, now_ms)
    })())
}
