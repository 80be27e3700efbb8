//! Training sets assembled from the lake: the joined examples a model's
//! delivery wrote as Parquet objects, plus the newest ones still in the joined
//! stream (the delivery buffers for seconds; a retrain after a drift alarm
//! cannot wait for it). What was read is recorded exactly: the lake objects
//! and, per shard, the first and last sequence numbers of the examples used.
//!
//! Each joined example carries its encoded feature values under the encoder's
//! feature names, its label and `joined_ms` (when it was joined), which orders
//! examples across shards so that the newest can be held out.

use std::collections::BTreeMap;
use std::sync::Arc;

use driftline_lake::{Field, FieldType, Lake, ObjectName, Position, TableSchema, TrainingData};
use driftline_log::{parse_shard_id, shard_id, SequenceNumber, Stream};

/// What went wrong assembling a training set (or the joined table's schema).
#[derive(Debug, thiserror::Error)]
pub enum TrainingError {
    #[error(transparent)]
    Lake(#[from] driftline_lake::LakeError),
    #[error("{0}")]
    Invalid(String),
}
use crate::processor::SchemaProcessor;
use crate::transform::JqTransform;

/// The lake table of a model's joined examples: who predicted what, the
/// label, when it was joined, and the encoded features as columns.
pub fn joined_schema(features: &[String]) -> Result<TableSchema, TrainingError> {
    let field = |name: &str, field_type| Field {
        name: name.to_string(),
        field_type,
        required: true,
    };
    let mut fields = vec![
        field("request_id", FieldType::String),
        field("version", FieldType::Int),
        field("class", FieldType::Int),
        field("label", FieldType::Int),
        field("joined_ms", FieldType::Int),
    ];
    let columns = fields.len();
    for name in features {
        if fields[..columns].iter().any(|f| &f.name == name) {
            return Err(TrainingError::Invalid(format!(
                "feature {name:?} has the name of a column of the joined table (request_id, version, class, label, joined_ms)"
            )));
        }
        if fields[columns..].iter().any(|f| &f.name == name) {
            return Err(TrainingError::Invalid(format!(
                "feature {name:?} is listed twice"
            )));
        }
        fields.push(field(name, FieldType::Float));
    }
    Ok(TableSchema::new(fields, None)?)
}

/// The processor that turns logged joined records into rows of [`joined_schema`].
pub fn joined_processor(features: &[String]) -> Result<SchemaProcessor, TrainingError> {
    let flatten =
        JqTransform::compile("{request_id, version, class, label, joined_ms} + .features")
            .map_err(TrainingError::Invalid)?;
    Ok(SchemaProcessor::new(joined_schema(features)?).with_transform(Some(flatten)))
}

/// Where a model's joined examples are: the stream the lifecycle logs them to
/// and the lake table its delivery writes.
#[derive(Clone)]
pub struct TrainingSource {
    lake: Lake,
    table: String,
    /// The stream the table is delivered from, whose newest records are read too.
    stream: Option<Arc<Stream>>,
    label: String,
    /// A column ordering the examples in time (`joined_ms`); without it, the
    /// order of the stream within each shard.
    time: Option<String>,
}

/// One joined example and where it was read from.
#[derive(Clone, Debug, PartialEq)]
struct Example {
    joined_ms: i64,
    shard: String,
    sequence_number: Position,
    x: Vec<f64>,
    y: usize,
    /// The lake object it came from; `None` for the stream tail.
    object: Option<usize>,
}

/// Examples oldest first, with the record of where they came from.
#[derive(Debug)]
pub struct TrainingSet {
    pub examples: Vec<(Vec<f64>, usize)>,
    pub data: TrainingData,
}

impl TrainingSource {
    /// A model's joined examples: the table of [`joined_schema`] and its stream.
    pub fn new(lake: Lake, table: &str, stream: Arc<Stream>) -> TrainingSource {
        TrainingSource {
            lake,
            table: table.trim_matches('/').to_string(),
            stream: Some(stream),
            label: "label".into(),
            time: Some("joined_ms".into()),
        }
    }

    /// Any lake table with the features as columns and a label column
    /// (labelled history to train a first version on).
    pub fn labelled_table(lake: Lake, table: &str, label: &str) -> TrainingSource {
        TrainingSource {
            lake,
            table: table.trim_matches('/').to_string(),
            stream: None,
            label: label.to_string(),
            time: None,
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// The newest `count` examples joined at or after `since_ms` (if given),
    /// their features read by `features` (the encoder's names, in order).
    pub async fn newest(
        &self,
        count: usize,
        since_ms: Option<i64>,
        features: &[String],
    ) -> Result<TrainingSet, TrainingError> {
        let mut objects: Vec<(driftline_lake::StoredObject, ObjectName)> = self
            .lake
            .objects(&format!("{}/", self.table))
            .await?
            .into_iter()
            .filter_map(|o| {
                let name = ObjectName::parse(o.path.rsplit('/').next().unwrap_or_default())?;
                Some((o, name))
            })
            .collect();
        // Per shard, everything up to the last delivered sequence number is in
        // the lake; the rest is read from the stream.
        let mut delivered: BTreeMap<String, Position> = BTreeMap::new();
        for (_, name) in &objects {
            let last = delivered
                .entry(name.shard.clone())
                .or_insert_with(|| name.last.clone());
            if name.last > *last {
                *last = name.last.clone();
            }
        }
        // Reading the stream is file I/O: told to the runtime, as the mappings
        // do (a multi-threaded runtime, as everywhere in the pipeline).
        let mut examples = tokio::task::block_in_place(|| self.tail(&delivered, features, count))?;
        // Newest objects first, until enough examples are at hand; one more
        // round per shard since objects of different shards interleave in time.
        objects.sort_by(|a, b| {
            (b.0.last_modified_ms, &b.1.last).cmp(&(a.0.last_modified_ms, &a.1.last))
        });
        let mut paths = Vec::new();
        let mut extra_rounds = 0;
        for (object, _) in &objects {
            if examples.len() >= count {
                extra_rounds += 1;
                if extra_rounds > delivered.len() {
                    break;
                }
            }
            let Some(bytes) = self.lake.read(&object.path).await? else {
                continue; // removed since it was listed (retention)
            };
            let index = paths.len();
            paths.push(object.path.clone());
            let rows = decode_object(bytes, features, &self.label, self.time.as_deref()).map_err(
                |reason| TrainingError::Invalid(format!("lake object {}: {reason}", object.path)),
            )?;
            let before = examples.len();
            examples.extend(rows.into_iter().map(|mut e| {
                e.object = Some(index);
                e
            }));
            if let Some(since) = since_ms {
                if examples[before..].iter().all(|e| e.joined_ms < since) {
                    break; // older objects only hold older examples
                }
            }
        }
        if let Some(since) = since_ms {
            examples.retain(|e| e.joined_ms >= since);
        }
        examples.sort_by(|a, b| {
            (a.joined_ms, &a.shard, &a.sequence_number).cmp(&(
                b.joined_ms,
                &b.shard,
                &b.sequence_number,
            ))
        });
        let skip = examples.len().saturating_sub(count);
        let examples = examples.split_off(skip);
        Ok(record(examples, &paths))
    }

    /// Examples of the stream past what the lake holds, oldest first, at most `limit` per shard.
    fn tail(
        &self,
        delivered: &BTreeMap<String, Position>,
        features: &[String],
        limit: usize,
    ) -> Result<Vec<Example>, TrainingError> {
        let mut examples = Vec::new();
        let Some(stream) = &self.stream else {
            return Ok(examples);
        };
        for meta in stream.meta().shards {
            let shard = shard_id(meta.index);
            let start = match delivered.get(&shard) {
                Some(last) => {
                    SequenceNumber::from_u128(last.to_u128().unwrap_or_default()).offset() + 1
                }
                None => 0,
            };
            let log = stream.shard(meta.index).map_err(stream_error)?;
            // Only the newest `limit` can be used: skip what lies before them.
            let start = start.max(log.end_offset().saturating_sub(limit as u64));
            let mut offset = start;
            loop {
                let batch = log.read(offset, 10_000, 64 << 20).map_err(stream_error)?;
                if batch.records.is_empty() {
                    break;
                }
                offset = batch.next_offset;
                for stored in batch.records {
                    let sequence_number: Position = SequenceNumber::new(meta.index, stored.offset)
                        .as_u128()
                        .into();
                    let (joined_ms, x, y) =
                        decode_record(&stored.data, features).map_err(|reason| {
                            TrainingError::Invalid(format!(
                                "joined record {sequence_number} of {shard} in stream {}: {reason}",
                                stream.name()
                            ))
                        })?;
                    examples.push(Example {
                        joined_ms,
                        shard: shard.clone(),
                        sequence_number,
                        x,
                        y,
                        object: None,
                    });
                }
            }
        }
        Ok(examples)
    }
}

fn stream_error(error: driftline_log::LogError) -> TrainingError {
    TrainingError::Invalid(format!("reading the joined stream: {error}"))
}

/// The training set and its lineage: the objects that contributed, and per
/// shard the first and last sequence numbers used.
fn record(examples: Vec<Example>, paths: &[String]) -> TrainingSet {
    let mut used = vec![false; paths.len()];
    let mut positions: BTreeMap<String, (Position, Position)> = BTreeMap::new();
    let mut from_stream = 0;
    for example in &examples {
        match example.object {
            Some(index) => used[index] = true,
            None => from_stream += 1,
        }
        let position = &example.sequence_number;
        let range = positions
            .entry(example.shard.clone())
            .or_insert_with(|| (position.clone(), position.clone()));
        if *position < range.0 {
            range.0 = position.clone();
        }
        if *position > range.1 {
            range.1 = position.clone();
        }
    }
    let lake_objects: Vec<String> = paths
        .iter()
        .zip(&used)
        .filter(|(_, used)| **used)
        .map(|(path, _)| path.clone())
        .collect();
    let window = format!(
        "{} examples: {} from {} lake objects, {from_stream} from the joined stream",
        examples.len(),
        examples.len() - from_stream,
        lake_objects.len()
    );
    let data = TrainingData {
        lake_objects,
        stream_positions: positions
            .into_iter()
            .map(|(shard, (first, last))| (shard, (first.to_string(), last.to_string())))
            .collect(),
        examples: examples.len(),
        window,
    };
    TrainingSet {
        examples: examples.into_iter().map(|e| (e.x, e.y)).collect(),
        data,
    }
}

/// A joined record as the lifecycle logs it:
/// `{"label": L, "joined_ms": T, "features": {NAME: VALUE, ...}, ...}`.
fn decode_record(data: &[u8], features: &[String]) -> Result<(i64, Vec<f64>, usize), String> {
    let value: serde_json::Value =
        serde_json::from_slice(data).map_err(|e| format!("not JSON: {e}"))?;
    let label = value
        .get("label")
        .and_then(serde_json::Value::as_u64)
        .ok_or("no integer \"label\"")? as usize;
    let joined_ms = value
        .get("joined_ms")
        .and_then(serde_json::Value::as_i64)
        .ok_or("no integer \"joined_ms\"")?;
    let values = value
        .get("features")
        .and_then(serde_json::Value::as_object)
        .ok_or("no \"features\" object")?;
    let x = features
        .iter()
        .map(|name| {
            values
                .get(name)
                .and_then(serde_json::Value::as_f64)
                .ok_or_else(|| format!("feature {name:?} is missing or not a number"))
        })
        .collect::<Result<Vec<f64>, String>>()?;
    Ok((joined_ms, x, label))
}

/// The rows of one Parquet object: the features as columns of their names,
/// the label, the time column if any, `_shard` and `_sequence_number`.
fn decode_object(
    bytes: Vec<u8>,
    features: &[String],
    label: &str,
    time: Option<&str>,
) -> Result<Vec<Example>, String> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int64Type};
    use arrow_array::Array;
    use arrow_schema::DataType;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
        .and_then(|b| b.build())
        .map_err(|e| format!("not a readable Parquet file: {e}"))?;
    let mut examples = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| format!("a row group cannot be decoded: {e}"))?;
        let column = |name: &str, to: &DataType| {
            let column = batch
                .column_by_name(name)
                .ok_or_else(|| format!("no column {name:?}"))?;
            arrow_cast::cast(column, to).map_err(|e| format!("column {name:?}: {e}"))
        };
        let xs = features
            .iter()
            .map(|name| column(name, &DataType::Float64))
            .collect::<Result<Vec<_>, String>>()?;
        let label = column(label, &DataType::Int64)?;
        let joined = match time {
            Some(time) => column(time, &DataType::Int64)?,
            None => Arc::new(arrow_array::Int64Array::from(vec![0; batch.num_rows()])),
        };
        let shard = column("_shard", &DataType::Utf8)?;
        let sequence = column("_sequence_number", &DataType::Utf8)?;
        let (label, joined) = (
            label.as_primitive::<Int64Type>(),
            joined.as_primitive::<Int64Type>(),
        );
        let (shard, sequence) = (shard.as_string::<i32>(), sequence.as_string::<i32>());
        for row in 0..batch.num_rows() {
            if label.is_null(row) || joined.is_null(row) {
                return Err(format!("row {row} has no label or no time"));
            }
            let x = xs
                .iter()
                .zip(features)
                .map(|(column, name)| {
                    let column = column.as_primitive::<Float64Type>();
                    if column.is_null(row) {
                        Err(format!("row {row} has no value for feature {name:?}"))
                    } else {
                        Ok(column.value(row))
                    }
                })
                .collect::<Result<Vec<f64>, String>>()?;
            let y = usize::try_from(label.value(row))
                .map_err(|_| format!("row {row} has a negative label"))?;
            let sequence_number = Position::parse(sequence.value(row)).ok_or_else(|| {
                format!("row {row}: bad sequence number {:?}", sequence.value(row))
            })?;
            if parse_shard_id(shard.value(row)).is_none() {
                return Err(format!("row {row}: bad shard id {:?}", shard.value(row)));
            }
            examples.push(Example {
                joined_ms: joined.value(row),
                shard: shard.value(row).to_string(),
                sequence_number,
                x,
                y,
                object: None,
            });
        }
    }
    Ok(examples)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn joined_records_decode_by_feature_name_or_say_what_is_missing() {
        let features = names(&["a", "b"]);
        let record = br#"{"label": 1, "joined_ms": 7, "features": {"b": 2.5, "a": -1}}"#;
        assert_eq!(
            decode_record(record, &features),
            Ok((7, vec![-1.0, 2.5], 1))
        );
        let missing = br#"{"label": 1, "joined_ms": 7, "features": {"a": 1}}"#;
        assert_eq!(
            decode_record(missing, &features),
            Err("feature \"b\" is missing or not a number".to_string())
        );
        let unlabelled = br#"{"joined_ms": 7, "features": {"a": 1, "b": 2}}"#;
        assert!(decode_record(unlabelled, &features)
            .expect_err("no label")
            .contains("label"));
    }

    #[test]
    fn the_joined_table_refuses_features_named_like_its_columns() {
        let error = joined_schema(&names(&["amount", "label"])).expect_err("clash");
        assert!(error.to_string().contains("\"label\""), "{error}");
        let schema = joined_schema(&names(&["amount"])).expect("schema");
        assert_eq!(schema.fields.len(), 6);
    }

    #[test]
    fn lineage_names_only_the_objects_used_and_the_range_per_shard() {
        let example = |shard: &str, sequence_number: u128, object| Example {
            joined_ms: 0,
            shard: shard.to_string(),
            sequence_number: sequence_number.into(),
            x: vec![],
            y: 0,
            object,
        };
        let set = record(
            vec![
                example("shardId-000000000000", 5, Some(1)),
                example("shardId-000000000000", 9, None),
                example("shardId-000000000001", 3, Some(1)),
            ],
            &names(&["t/unused.parquet", "t/used.parquet"]),
        );
        assert_eq!(set.data.lake_objects, names(&["t/used.parquet"]));
        assert_eq!(
            set.data.stream_positions["shardId-000000000000"],
            ("5".to_string(), "9".to_string())
        );
        assert_eq!(set.data.examples, 3);
        assert!(
            set.data.window.contains("1 from the joined stream"),
            "{}",
            set.data.window
        );
    }
}
