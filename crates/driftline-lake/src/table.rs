//! A table's schema and its typed rows.

use serde::{Deserialize, Serialize};

use crate::error::{LakeError, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    String,
    Float,
    Int,
    Bool,
    /// RFC 3339 in JSON; microseconds since the epoch, UTC, in Parquet.
    Timestamp,
}

impl FieldType {
    pub fn name(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Float => "float",
            FieldType::Int => "int",
            FieldType::Bool => "bool",
            FieldType::Timestamp => "timestamp",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Field {
    pub name: String,
    #[serde(rename = "type")]
    pub field_type: FieldType,
    /// A required field may not be missing or null.
    #[serde(default = "yes")]
    pub required: bool,
}

fn yes() -> bool {
    true
}

/// The columns of a table. Every row also carries `_shard` and
/// `_sequence_number`, the stream position it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct TableSchema {
    pub fields: Vec<Field>,
    /// The timestamp field whose value partitions the row; arrival time when absent.
    pub event_time: Option<usize>,
}

impl TableSchema {
    pub fn new(fields: Vec<Field>, event_time: Option<&str>) -> Result<TableSchema> {
        let mut seen = std::collections::BTreeSet::new();
        for field in &fields {
            if field.name.is_empty() || field.name.starts_with('_') {
                return Err(LakeError::Schema(format!(
                    "field name {:?} must be non-empty and not start with '_' (reserved for _shard and _sequence_number)",
                    field.name
                )));
            }
            if !seen.insert(field.name.as_str()) {
                return Err(LakeError::Schema(format!(
                    "field {:?} is declared twice",
                    field.name
                )));
            }
        }
        let event_time = match event_time {
            None => None,
            Some(name) => {
                let index = fields.iter().position(|f| f.name == name).ok_or_else(|| {
                    LakeError::Schema(format!(
                        "event time field {name:?} is not a field of the schema"
                    ))
                })?;
                if fields[index].field_type != FieldType::Timestamp || !fields[index].required {
                    return Err(LakeError::Schema(format!(
                        "event time field {name:?} must be a required timestamp"
                    )));
                }
                Some(index)
            }
        };
        Ok(TableSchema { fields, event_time })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    String(String),
    Float(f64),
    Int(i64),
    Bool(bool),
    /// Microseconds since the epoch, UTC.
    Timestamp(i64),
}

/// One validated event and where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub values: Vec<Value>,
    pub shard: String,
    pub sequence_number: crate::Position,
    /// Partitions the row: the event time, or the arrival time.
    pub partition_time_us: i64,
}
