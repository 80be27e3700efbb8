//! Landing sources: files dropped under a prefix of the lake (CSV, NDJSON or
//! Parquet, gzipped or not for the text formats) are picked up and processed
//! once, as S3 "object created" notifications would start a Lambda.
//!
//! Each object goes through the same processor as stream records (schema,
//! transform); its rows are written as one delivery named after the object,
//! and only then is a marker `_landing/SOURCE/PATH.json` written with the
//! object's version. A crash in between processes the object again and
//! replaces the same output objects; a replaced object (a new version) is
//! processed again. Rows carry the object's path in `_shard` and the record's
//! position in the file (from 0) in `_sequence_number`.

use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use driftline_lake::{ObjectName, StoredObject};
use driftline_log::StreamWriter;

use crate::mapping::{Delivery, MappingError, MappingStats};
use crate::processor::{Event, Processor};

/// How long an object must be unchanged before it is read.
const SETTLE_MS: i64 = 1000;

/// Records handed to the processor at a time.
const CHUNK: usize = 1000;

pub struct Landing {
    /// The source's name, in markers and dead letters.
    pub name: String,
    /// Where files are dropped, in the lake.
    pub prefix: String,
    pub processor: Arc<dyn Processor>,
    pub dead_letters: Option<Arc<dyn StreamWriter>>,
    pub delivery: Delivery,
    pub poll: Duration,
    pub stats: Arc<MappingStats>,
    /// Told when an object may have arrived (S3 notifications): look at once.
    pub wake: Option<Arc<tokio::sync::Notify>>,
}

/// Watches the prefix until `stop` is set.
pub async fn run_landing(
    landing: Landing,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), MappingError> {
    let wake = landing.wake.clone().unwrap_or_default();
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        let mut wait = landing.poll;
        for object in landing.delivery.lake.objects(&landing.prefix).await? {
            // A file still being copied in changes; take it once it has settled
            // (and look again then, rather than a whole poll later).
            let age = driftline_log::now_ms() - object.last_modified_ms;
            if age < SETTLE_MS {
                wait = wait.min(Duration::from_millis((SETTLE_MS - age).max(1) as u64 + 10));
                continue;
            }
            let marker = landing.marker(&object.path);
            if let Some(bytes) = landing.delivery.lake.read(&marker).await? {
                let done: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
                if done["version"] == object.version.as_str() {
                    continue;
                }
            }
            landing.process(&object).await?;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = wake.notified() => {}
            _ = stop.changed() => {}
        }
    }
}

impl Landing {
    fn marker(&self, path: &str) -> String {
        format!("_landing/{}/{path}.json", self.name)
    }

    async fn process(&self, object: &StoredObject) -> Result<(), MappingError> {
        let Some(bytes) = self.delivery.lake.read(&object.path).await? else {
            return Ok(()); // removed since the listing
        };
        let letter = |reason: String, line: Option<usize>, data: &[u8]| {
            crate::dead_letter::fit(serde_json::json!({
                "reason": reason,
                "source": self.name,
                "object": object.path,
                "record": line,
                "data": String::from_utf8_lossy(data),
            }))
        };
        let (mut rows, mut letters) = (Vec::new(), Vec::new());
        match documents(&object.path, &bytes) {
            Err(reason) => letters.push((object.path.clone(), letter(reason, None, b""))),
            Ok(documents) => {
                self.stats
                    .records_in
                    .fetch_add(documents.len() as u64, Ordering::Relaxed);
                let events: Vec<Event> = documents
                    .into_iter()
                    .enumerate()
                    .map(|(i, data)| Event {
                        shard: object.path.clone(),
                        sequence_number: (i as u128).into(),
                        arrival_ms: object.last_modified_ms,
                        partition_key: object.path.clone(),
                        data,
                    })
                    .collect();
                for chunk in events.chunks(CHUNK) {
                    match self.processor.process(chunk) {
                        Ok(outcome) => {
                            self.stats
                                .filtered
                                .fetch_add(outcome.filtered as u64, Ordering::Relaxed);
                            rows.extend(outcome.rows);
                            for (i, reason) in outcome.failed {
                                if let Some(event) = chunk.get(i) {
                                    let line = event.sequence_number.to_u128().unwrap_or_default()
                                        as usize;
                                    letters.push((
                                        event.partition_key.clone(),
                                        letter(reason, Some(line), &event.data),
                                    ));
                                }
                            }
                        }
                        Err(reason) => letters.extend(chunk.iter().map(|e| {
                            let line = e.sequence_number.to_u128().unwrap_or_default() as usize;
                            (
                                e.partition_key.clone(),
                                letter(reason.clone(), Some(line), &e.data),
                            )
                        })),
                    }
                }
            }
        }
        let dead_lettered = letters.len();
        tokio::task::block_in_place(|| {
            crate::dead_letter::send(
                self.dead_letters.as_deref(),
                letters,
                &self.stats.dead_lettered,
            )
        })?;
        self.stats
            .rows_out
            .fetch_add(rows.len() as u64, Ordering::Relaxed);
        if !rows.is_empty() {
            let range = ObjectName {
                shard: output_token(&self.name, &object.path),
                first: 0.into(),
                last: (rows.len() as u128 - 1).into(),
            };
            let written = self
                .delivery
                .lake
                .write_delivery(
                    &self.delivery.table,
                    &self.delivery.schema,
                    &range,
                    &rows,
                    self.delivery.compression,
                )
                .await?;
            self.stats
                .objects
                .fetch_add(written.len() as u64, Ordering::Relaxed);
            self.stats
                .rows_delivered
                .fetch_add(rows.len() as u64, Ordering::Relaxed);
            if let Some(bus) = &self.delivery.bus {
                for object in written {
                    let _ = bus.send(object);
                }
            }
        }
        let marker = serde_json::json!({
            "object": object.path,
            "version": object.version,
            "rows": rows.len(),
            "dead_lettered": dead_lettered,
        });
        self.delivery
            .lake
            .write(&self.marker(&object.path), marker.to_string().into_bytes())
            .await?;
        tracing::info!(source = %self.name, object = %object.path, rows = rows.len(), dead_lettered, "landed object processed");
        Ok(())
    }
}

/// The output objects' shard part: the source and a hash of the dropped
/// object's path (FNV-1a), so each dropped object has its own names.
fn output_token(source: &str, path: &str) -> String {
    let hash = path.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let source: String = source
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("landing_{source}_{hash:016x}")
}

/// The JSON documents of a dropped file, by its extension.
fn documents(path: &str, bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let (name, bytes) = match path.strip_suffix(".gz") {
        Some(name) => {
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(bytes)
                .read_to_end(&mut plain)
                .map_err(|e| format!("not a readable gzip file: {e}"))?;
            (name, plain)
        }
        None => (path, bytes.to_vec()),
    };
    let extension = name
        .rsplit('.')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match extension.as_str() {
        "ndjson" | "jsonl" | "json" => Ok(bytes
            .split(|b| *b == b'\n')
            .filter(|line| line.iter().any(|b| !b.is_ascii_whitespace()))
            .map(<[u8]>::to_vec)
            .collect()),
        "csv" => csv_documents(&bytes),
        "parquet" if !path.ends_with(".gz") => parquet_documents(bytes),
        _ => Err(format!(
            "unsupported file type {path:?}: expected .csv, .ndjson, .jsonl, .json (each optionally .gz) or .parquet"
        )),
    }
}

/// CSV with a header row: each row an object of strings (an empty cell is a
/// missing field); the schema casts the strings to their types.
fn csv_documents(bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut reader = csv::Reader::from_reader(bytes);
    let headers = reader
        .headers()
        .map_err(|e| format!("CSV header: {e}"))?
        .clone();
    let mut documents = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| format!("CSV row {}: {e}", i + 1))?;
        let object: serde_json::Map<String, serde_json::Value> = headers
            .iter()
            .zip(record.iter())
            .filter(|(_, value)| !value.is_empty())
            .map(|(name, value)| {
                (
                    name.to_string(),
                    serde_json::Value::String(value.to_string()),
                )
            })
            .collect();
        documents.push(serde_json::Value::Object(object).to_string().into_bytes());
    }
    Ok(documents)
}

/// Parquet: each row an object of its columns as text (through arrow-cast),
/// nulls missing; the schema casts them to their types.
fn parquet_documents(bytes: Vec<u8>) -> Result<Vec<Vec<u8>>, String> {
    use arrow_array::cast::AsArray;
    use arrow_array::Array;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
        .and_then(|b| b.build())
        .map_err(|e| format!("not a readable Parquet file: {e}"))?;
    let mut documents = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| format!("a Parquet row group cannot be decoded: {e}"))?;
        let schema = batch.schema();
        let texts = batch
            .columns()
            .iter()
            .zip(schema.fields())
            .map(|(column, field)| {
                text_column(column).map_err(|e| {
                    format!(
                        "column {:?} of type {} cannot be read: {e}",
                        field.name(),
                        column.data_type()
                    )
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        for row in 0..batch.num_rows() {
            let object: serde_json::Map<String, serde_json::Value> = texts
                .iter()
                .zip(schema.fields())
                .filter(|(text, _)| !text.is_null(row))
                .map(|(text, field)| {
                    let value = text.as_string::<i32>().value(row).to_string();
                    (field.name().clone(), serde_json::Value::String(value))
                })
                .collect();
            documents.push(serde_json::Value::Object(object).to_string().into_bytes());
        }
    }
    Ok(documents)
}

/// A column as text. Timestamps become RFC 3339 in UTC (a timestamp without
/// a zone is taken as UTC), read from their raw values: arrow-cast would need
/// chrono-tz to print a named zone such as "UTC".
fn text_column(
    column: &arrow_array::ArrayRef,
) -> Result<arrow_array::ArrayRef, arrow_schema::ArrowError> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    use arrow_array::Array;
    use arrow_schema::{DataType, TimeUnit};

    let DataType::Timestamp(unit, _) = column.data_type() else {
        return arrow_cast::cast(column, &DataType::Utf8);
    };
    let micros = |v: i64| match unit {
        TimeUnit::Second => v.saturating_mul(1_000_000),
        TimeUnit::Millisecond => v.saturating_mul(1000),
        TimeUnit::Microsecond => v,
        TimeUnit::Nanosecond => v / 1000,
    };
    let raw = arrow_cast::cast(column, &DataType::Int64)?;
    let raw = raw.as_primitive::<Int64Type>();
    let text: arrow_array::StringArray = (0..raw.len())
        .map(|i| {
            (!raw.is_null(i)).then(|| {
                chrono::DateTime::from_timestamp_micros(micros(raw.value(i)))
                    .unwrap_or_default()
                    .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
            })
        })
        .collect();
    Ok(std::sync::Arc::new(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_formats_become_json_documents() {
        let csv = documents("a/x.csv", b"id,amount\ne1,1.5\ne2,\n").expect("csv");
        assert_eq!(
            csv,
            [
                br#"{"amount":"1.5","id":"e1"}"#.to_vec(),
                br#"{"id":"e2"}"#.to_vec()
            ]
        );
        let ndjson = documents("a/x.ndjson", b"{\"id\":1}\n\n{\"id\":2}\n").expect("ndjson");
        assert_eq!(ndjson.len(), 2);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, b"{\"id\":1}\n").expect("gzip");
        let gzipped = gz.finish().expect("gzip");
        assert_eq!(documents("a/x.jsonl.gz", &gzipped).expect("gz").len(), 1);
    }

    #[test]
    fn unknown_or_broken_files_are_refused_with_the_reason() {
        assert!(documents("a/x.xlsx", b"")
            .expect_err("type")
            .starts_with("unsupported file type"));
        assert!(documents("a/x.parquet", b"nope")
            .expect_err("parquet")
            .starts_with("not a readable Parquet"));
        assert!(documents("a/x.csv.gz", b"nope")
            .expect_err("gz")
            .starts_with("not a readable gzip"));
    }

    #[test]
    fn output_names_differ_per_dropped_object() {
        assert_ne!(
            output_token("s", "landing/a.csv"),
            output_token("s", "landing/b.csv")
        );
        assert!(output_token("my source", "x").starts_with("landing_my_source_"));
    }
}
