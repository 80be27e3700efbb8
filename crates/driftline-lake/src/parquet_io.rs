//! Rows to Parquet: one column per schema field, then `_shard` and
//! `_sequence_number` (decimal text, as AWS shows sequence numbers).

use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field as ArrowField, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression as ParquetCompression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use crate::error::{LakeError, Result};
use crate::table::{FieldType, Row, TableSchema, Value};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Zstd,
    Snappy,
    None,
}

fn arrow_schema(schema: &TableSchema) -> Schema {
    let mut fields: Vec<ArrowField> = schema
        .fields
        .iter()
        .map(|f| {
            let data_type = match f.field_type {
                FieldType::String => DataType::Utf8,
                FieldType::Float => DataType::Float64,
                FieldType::Int => DataType::Int64,
                FieldType::Bool => DataType::Boolean,
                FieldType::Timestamp => {
                    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
                }
            };
            ArrowField::new(&f.name, data_type, !f.required)
        })
        .collect();
    fields.push(ArrowField::new("_shard", DataType::Utf8, false));
    fields.push(ArrowField::new("_sequence_number", DataType::Utf8, false));
    Schema::new(fields)
}

fn column(schema: &TableSchema, index: usize, rows: &[&Row]) -> Result<ArrayRef> {
    let field = &schema.fields[index];
    let mismatch = |value: &Value| {
        LakeError::Schema(format!(
            "field {:?} is declared {} but a row holds {value:?}",
            field.name,
            field.field_type.name()
        ))
    };
    macro_rules! build {
        ($builder:expr, $variant:ident, $convert:expr) => {{
            let mut builder = $builder;
            for row in rows {
                match &row.values[index] {
                    Value::Null => builder.append_null(),
                    Value::$variant(v) => builder.append_value($convert(v)),
                    other => return Err(mismatch(other)),
                }
            }
            Arc::new(builder.finish()) as ArrayRef
        }};
    }
    Ok(match field.field_type {
        FieldType::String => build!(StringBuilder::new(), String, |v: &String| v.clone()),
        FieldType::Float => build!(
            Float64Builder::with_capacity(rows.len()),
            Float,
            |v: &f64| *v
        ),
        FieldType::Int => build!(Int64Builder::with_capacity(rows.len()), Int, |v: &i64| *v),
        FieldType::Bool => build!(
            BooleanBuilder::with_capacity(rows.len()),
            Bool,
            |v: &bool| *v
        ),
        FieldType::Timestamp => {
            let builder =
                TimestampMicrosecondBuilder::with_capacity(rows.len()).with_timezone("UTC");
            build!(builder, Timestamp, |v: &i64| *v)
        }
    })
}

/// Encodes rows as one Parquet file.
pub fn encode_parquet(
    schema: &TableSchema,
    rows: &[&Row],
    compression: Compression,
) -> Result<Vec<u8>> {
    let parquet_error = |e: &dyn std::fmt::Display| LakeError::Parquet(e.to_string());
    let arrow = Arc::new(arrow_schema(schema));
    let mut columns = Vec::with_capacity(schema.fields.len() + 2);
    for (index, _) in schema.fields.iter().enumerate() {
        if rows.iter().any(|r| r.values.len() != schema.fields.len()) {
            return Err(LakeError::Schema(format!(
                "a row has the wrong number of values for {} fields",
                schema.fields.len()
            )));
        }
        columns.push(column(schema, index, rows)?);
    }
    let mut shards = StringBuilder::new();
    let mut sequences = StringBuilder::new();
    for row in rows {
        shards.append_value(&row.shard);
        sequences.append_value(row.sequence_number.to_string());
    }
    columns.push(Arc::new(shards.finish()));
    columns.push(Arc::new(sequences.finish()));
    let batch = RecordBatch::try_new(arrow.clone(), columns).map_err(|e| parquet_error(&e))?;
    let compression = match compression {
        Compression::Zstd => ParquetCompression::ZSTD(ZstdLevel::default()),
        Compression::Snappy => ParquetCompression::SNAPPY,
        Compression::None => ParquetCompression::UNCOMPRESSED,
    };
    let properties = WriterProperties::builder()
        .set_compression(compression)
        .build();
    let mut bytes = Vec::new();
    let mut writer =
        ArrowWriter::try_new(&mut bytes, arrow, Some(properties)).map_err(|e| parquet_error(&e))?;
    writer.write(&batch).map_err(|e| parquet_error(&e))?;
    writer.close().map_err(|e| parquet_error(&e))?;
    Ok(bytes)
}
