//! Reading a recorded stream for `backtest`: CSV (optionally gzipped) with a
//! header row, or Parquet. Columns that are all numbers become numeric features, others
//! one-hot (up to 64 categories) or hashed; the target's values become classes.
//!
//! The file is read once: field bytes go to one arena and numbers are parsed
//! as they arrive, so a large stream costs little more than its size.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context};
use driftline_ml::features::{Encoder, FeatureKind, FeatureSpec, Field, MissingPolicy};

pub struct Dataset {
    pub xs: Vec<Vec<f64>>,
    pub ys: Vec<usize>,
    pub classes: Vec<String>,
    pub encoder: Encoder,
}

const MAX_ONE_HOT: usize = 64;
const HASH_BUCKETS: usize = 32;

/// Every field of the file: its text (in one arena) and its number, if it is one.
struct Columns {
    arena: Vec<u8>,
    /// per row and column: (start, end) in the arena
    spans: Vec<(u32, u32)>,
    numbers: Vec<f64>,
    width: usize,
    rows: usize,
}

impl Columns {
    fn new(width: usize) -> Columns {
        Columns {
            arena: Vec::new(),
            spans: Vec::new(),
            numbers: Vec::new(),
            width,
            rows: 0,
        }
    }

    fn text(&self, row: usize, column: usize) -> &str {
        let (start, end) = self.spans[row * self.width + column];
        std::str::from_utf8(&self.arena[start as usize..end as usize])
            .unwrap_or("")
            .trim()
    }

    fn number(&self, row: usize, column: usize) -> f64 {
        self.numbers[row * self.width + column]
    }
}

fn load_csv(path: &Path, name: &str) -> anyhow::Result<(Vec<String>, Columns)> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let reader: Box<dyn Read> = if name.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(
            std::io::BufReader::with_capacity(1 << 16, file),
        ))
    } else {
        Box::new(file)
    };
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .buffer_capacity(1 << 16)
        .from_reader(reader);
    let headers: Vec<String> = csv
        .headers()
        .with_context(|| format!("{}: cannot read the header row", path.display()))?
        .iter()
        .map(str::to_string)
        .collect();
    let width = headers.len();
    let mut columns = Columns::new(width);
    let mut record = csv::ByteRecord::new();
    loop {
        let more = csv.read_byte_record(&mut record).with_context(|| {
            format!(
                "{}: row {} is not valid CSV",
                path.display(),
                columns.rows + 2
            )
        })?;
        if !more {
            break;
        }
        if record.len() != width {
            bail!(
                "{}: row {} has {} fields, the header has {width}",
                path.display(),
                columns.rows + 2,
                record.len()
            );
        }
        for field in record.iter() {
            let start = columns.arena.len() as u32;
            columns.arena.extend_from_slice(field);
            columns.spans.push((start, columns.arena.len() as u32));
            let number = std::str::from_utf8(field)
                .ok()
                .and_then(|t| t.trim().parse::<f64>().ok())
                .unwrap_or(f64::NAN);
            columns.numbers.push(number);
        }
        columns.rows += 1;
    }
    Ok((headers, columns))
}

pub fn load(path: &Path, target: &str) -> anyhow::Result<Dataset> {
    let name = path.to_string_lossy().to_ascii_lowercase();
    let (headers, columns) = if name.ends_with(".parquet") {
        load_parquet(path)?
    } else {
        load_csv(path, &name)?
    };
    let target_index = headers.iter().position(|h| h == target).with_context(|| {
        format!(
            "{}: there is no target column {target:?}; the columns are {}",
            path.display(),
            headers.join(", ")
        )
    })?;
    let width = headers.len();
    if columns.rows == 0 {
        bail!("{}: the file has a header but no rows", path.display());
    }
    let rows = columns.rows;
    let feature_columns: Vec<usize> = (0..width).filter(|c| *c != target_index).collect();
    let numeric: Vec<bool> = feature_columns
        .iter()
        .map(|&c| {
            (0..rows).all(|r| !columns.number(r, c).is_nan() || columns.text(r, c).is_empty())
        })
        .collect();
    let specs = feature_columns
        .iter()
        .zip(&numeric)
        .map(|(&c, &is_numeric)| {
            let kind = if is_numeric {
                FeatureKind::Numeric
            } else {
                let categories: BTreeSet<&str> = (0..rows)
                    .map(|r| columns.text(r, c))
                    .filter(|v| !v.is_empty())
                    .collect();
                if categories.len() <= MAX_ONE_HOT {
                    FeatureKind::OneHot {
                        categories: categories.into_iter().map(str::to_string).collect(),
                    }
                } else {
                    FeatureKind::Hashed {
                        buckets: HASH_BUCKETS,
                    }
                }
            };
            FeatureSpec {
                name: headers[c].clone(),
                kind,
                missing: if is_numeric {
                    MissingPolicy::Mean
                } else {
                    MissingPolicy::Zero
                },
            }
        })
        .collect();
    let mut encoder = Encoder::new(specs);
    // Classes: small non-negative integers keep their value; anything else is sorted.
    let labels: Vec<&str> = (0..rows).map(|r| columns.text(r, target_index)).collect();
    if let Some(line) = labels.iter().position(|l| l.is_empty()) {
        bail!(
            "{}: row {} has no value in the target column {target:?}",
            path.display(),
            line + 2
        );
    }
    let integers: Option<Vec<usize>> = labels
        .iter()
        .map(|l| l.parse::<usize>().ok().filter(|v| *v < 10_000))
        .collect();
    let (ys, classes) = match integers {
        Some(values) => {
            let count = values.iter().max().map_or(0, |m| m + 1);
            (values, (0..count).map(|c| c.to_string()).collect())
        }
        None => {
            let distinct: Vec<String> = labels
                .iter()
                .map(|l| (*l).to_string())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let ys = labels
                .iter()
                .map(|l| distinct.iter().position(|d| d == l).unwrap_or(0))
                .collect();
            (ys, distinct)
        }
    };
    let mut xs = Vec::with_capacity(rows);
    let mut fields = Vec::with_capacity(feature_columns.len());
    for row in 0..rows {
        fields.clear();
        for (&c, &is_numeric) in feature_columns.iter().zip(&numeric) {
            let text = columns.text(row, c);
            fields.push(if text.is_empty() {
                Field::Missing
            } else if is_numeric {
                Field::Number(columns.number(row, c))
            } else {
                Field::Text(text)
            });
        }
        let x = encoder
            .encode_values(&fields)
            .with_context(|| format!("{}: row {}", path.display(), row + 2))?;
        xs.push(x);
    }
    Ok(Dataset {
        xs,
        ys,
        classes,
        encoder,
    })
}

/// Reads a Parquet file into the same columns a CSV gives: every column is
/// cast to text (as DuckDB would print it) and numbers are parsed from it, so
/// both formats go through one schema inference.
fn load_parquet(path: &Path) -> anyhow::Result<(Vec<String>, Columns)> {
    use arrow_array::cast::AsArray;
    use arrow_array::{Array, RecordBatchReader};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("{} is not a readable Parquet file", path.display()))?
        .build()
        .with_context(|| format!("cannot read {}", path.display()))?;
    let headers: Vec<String> = reader
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let width = headers.len();
    let mut columns = Columns::new(width);
    for batch in reader {
        let batch =
            batch.with_context(|| format!("{}: a row group cannot be decoded", path.display()))?;
        let texts = batch
            .columns()
            .iter()
            .zip(&headers)
            .map(|(column, name)| {
                arrow_cast::cast(column, &arrow_schema::DataType::Utf8).with_context(|| {
                    format!(
                        "{}: column {name:?} of type {} cannot be read as a feature",
                        path.display(),
                        column.data_type()
                    )
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        for row in 0..batch.num_rows() {
            for text in &texts {
                let values = text.as_string::<i32>();
                let value = if values.is_null(row) {
                    ""
                } else {
                    values.value(row)
                };
                let start = columns.arena.len() as u32;
                columns.arena.extend_from_slice(value.as_bytes());
                columns.spans.push((start, columns.arena.len() as u32));
                columns
                    .numbers
                    .push(value.trim().parse::<f64>().unwrap_or(f64::NAN));
            }
            columns.rows += 1;
        }
    }
    Ok((headers, columns))
}

/// Rows of a recorded stream read as a declared model reads events: its
/// features, in its order, as numbers (or booleans); the label as a class
/// number; and each row's time in milliseconds, if a time column is named.
pub struct ModelRows {
    pub xs: Vec<Vec<f64>>,
    pub ys: Vec<usize>,
    pub times_ms: Option<Vec<i64>>,
}

pub fn load_for_model(
    path: &Path,
    features: &[String],
    label: &str,
    time: Option<&str>,
) -> anyhow::Result<ModelRows> {
    let name = path.to_string_lossy().to_ascii_lowercase();
    let (headers, columns) = if name.ends_with(".parquet") {
        load_parquet(path)?
    } else {
        load_csv(path, &name)?
    };
    let column = |wanted: &str, what: &str| -> anyhow::Result<usize> {
        headers.iter().position(|h| h == wanted).with_context(|| {
            format!(
                "{}: there is no {what} column {wanted:?}; the columns are {}",
                path.display(),
                headers.join(", ")
            )
        })
    };
    let feature_columns: Vec<usize> = features
        .iter()
        .map(|f| column(f, "feature"))
        .collect::<anyhow::Result<_>>()?;
    let label_column = column(label, "label")?;
    let time_column = time.map(|t| column(t, "time")).transpose()?;
    let number = |row: usize, c: usize| -> anyhow::Result<f64> {
        let n = columns.number(row, c);
        if !n.is_nan() {
            return Ok(n);
        }
        match columns.text(row, c) {
            "true" | "True" | "TRUE" => Ok(1.0),
            "false" | "False" | "FALSE" => Ok(0.0),
            text => bail!(
                "{}: row {}: {:?} in column {:?} is not a number or a boolean",
                path.display(),
                row + 2,
                text,
                headers[c]
            ),
        }
    };
    let mut rows = ModelRows {
        xs: Vec::with_capacity(columns.rows),
        ys: Vec::with_capacity(columns.rows),
        times_ms: time_column.map(|_| Vec::with_capacity(columns.rows)),
    };
    for row in 0..columns.rows {
        let x = feature_columns
            .iter()
            .map(|&c| number(row, c))
            .collect::<anyhow::Result<Vec<f64>>>()?;
        let y = number(row, label_column)?;
        if y < 0.0 || y.fract() != 0.0 {
            bail!(
                "{}: row {}: label {y} is not a class number (0, 1, ...)",
                path.display(),
                row + 2
            );
        }
        rows.xs.push(x);
        rows.ys.push(y as usize);
        if let (Some(c), Some(times)) = (time_column, rows.times_ms.as_mut()) {
            times.push(time_ms(columns.text(row, c)).with_context(|| {
                format!(
                    "{}: row {}: {:?} in the time column is not a time (milliseconds or seconds since the epoch, or RFC 3339)",
                    path.display(),
                    row + 2,
                    columns.text(row, c)
                )
            })?);
        }
    }
    Ok(rows)
}

/// Milliseconds since the epoch from a number of seconds or milliseconds
/// (told apart by size), or an RFC 3339 time.
fn time_ms(text: &str) -> Option<i64> {
    if let Ok(n) = text.parse::<f64>() {
        // Seconds until the year 5138; milliseconds from 1973 on.
        return n
            .is_finite()
            .then_some(if n.abs() < 1e11 { n * 1000.0 } else { n } as i64);
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_seconds_milliseconds_or_rfc_3339() {
        assert_eq!(time_ms("1795564800"), Some(1_795_564_800_000));
        assert_eq!(time_ms("1795564800123"), Some(1_795_564_800_123));
        assert_eq!(time_ms("2026-11-25T00:00:00Z"), Some(1_795_564_800_000));
        assert_eq!(time_ms("2026-11-25T00:00:01.5Z"), Some(1_795_564_801_500));
        assert_eq!(time_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            time_ms("2026-11-25T01:00:00+01:00"),
            Some(1_795_564_800_000)
        );
        assert_eq!(time_ms("yesterday"), None);
        assert_eq!(time_ms("2026-13-01T00:00:00Z"), None);
    }
}
