//! A typed decoding of PutRecords in JSON, the hottest request: it borrows the
//! partition keys and base64 text from the body instead of building a JSON
//! tree. A body it cannot decode goes through the generic path, whose errors
//! name what is wrong, so both paths accept and refuse the same requests.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::ApiError;
use super::ops::{check_put_records_bytes, check_put_records_count, record_from, RecordPlace};
use super::wire::{Protocol, Req};
use super::KinesisState;
use crate::auth::Caller;

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

/// `None` when the body does not decode as a well-formed PutRecords request;
/// otherwise the encoded JSON answer, written directly (no response tree).
pub fn put_records_json(
    state: &KinesisState,
    body: &[u8],
    now_ms: i64,
    caller: &Caller,
) -> Option<Result<Vec<u8>, ApiError>> {
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
        let data = base64_simd::STANDARD
            .decode_to_vec(entry.data.as_bytes())
            .ok()?;
        records.push((entry, data));
    }
    Some((|| {
        let req = Req::new(&names, Protocol::Json);
        super::ops::authorize(state, "PutRecords", &req, caller)?;
        check_put_records_count(records.len())?;
        let stream = super::ops::open_stream(state, &req)?;
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
        check_put_records_bytes(&records)?;
        Ok(encode_put_records(stream.put(records, now_ms)))
    })())
}

/// The PutRecords answer in JSON 1.1, written straight into bytes.
fn encode_put_records(
    results: Vec<driftline_log::Result<driftline_log::RecordPosition>>,
) -> Vec<u8> {
    use std::io::Write;
    let failed = results.iter().filter(|r| r.is_err()).count();
    let mut out = Vec::with_capacity(64 + results.len() * 96);
    let _ = write!(out, "{{\"FailedRecordCount\":{failed},\"Records\":[");
    for (i, result) in results.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let mut digits = itoa::Buffer::new();
        // Writes to a Vec cannot fail.
        let _ = match result {
            Ok(position) => {
                out.extend_from_slice(b"{\"SequenceNumber\":\"");
                out.extend_from_slice(digits.format(position.sequence_number.as_u128()).as_bytes());
                out.extend_from_slice(b"\",\"ShardId\":\"shardId-");
                let index = digits.format(position.shard_index).as_bytes();
                out.extend(std::iter::repeat_n(
                    b'0',
                    12usize.saturating_sub(index.len()),
                ));
                out.extend_from_slice(index);
                out.extend_from_slice(b"\"}");
                Ok(())
            }
            Err(error) => write!(
                out,
                "{{\"ErrorCode\":\"{}\",\"ErrorMessage\":{}}}",
                ApiError::record_error_code(error),
                serde_json::Value::String(error.to_string())
            ),
        };
    }
    out.extend_from_slice(b"],\"EncryptionType\":\"NONE\"}");
    out
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    /// The fast path must accept exactly what the generic path's decoder accepts,
    /// or a body would be answered differently depending on the path it took.
    #[test]
    fn simd_base64_accepts_and_refuses_what_the_generic_decoder_does() {
        for text in [
            "", "YQ==", "YWI=", "YWJj", "YQ", "YWI", "Y", "YQ=", "YQ===", "Y Q==", "YR==", "YWJ=",
            "////", "-_-_", "YW\nJj", "=YQ=",
        ] {
            let simd = base64_simd::STANDARD.decode_to_vec(text.as_bytes()).ok();
            let generic = base64::engine::general_purpose::STANDARD
                .decode(text.as_bytes())
                .ok();
            assert_eq!(simd, generic, "{text:?}");
        }
    }
}
