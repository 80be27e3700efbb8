//! Reading a recorded stream for `backtest`: CSV (optionally gzipped), with a
//! header row. Columns that are all numbers become numeric features, others
//! one-hot (up to 64 categories) or hashed; the target's values become classes.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context};
use driftline_ml::features::{Encoder, FeatureKind, FeatureSpec, MissingPolicy};

pub struct Dataset {
    pub xs: Vec<Vec<f64>>,
    pub ys: Vec<usize>,
    pub classes: Vec<String>,
    pub encoder: Encoder,
}

const MAX_ONE_HOT: usize = 64;
const HASH_BUCKETS: usize = 32;

pub fn load(path: &Path, target: &str) -> anyhow::Result<Dataset> {
    let name = path.to_string_lossy().to_ascii_lowercase();
    if name.ends_with(".parquet") {
        bail!(
            "{}: Parquet input is not supported by this build yet; convert it to CSV (for example with DuckDB: COPY (SELECT * FROM '{}') TO 'stream.csv')",
            path.display(),
            path.display()
        );
    }
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let reader: Box<dyn Read> = if name.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(reader);
    let headers: Vec<String> = csv
        .headers()
        .with_context(|| format!("{}: cannot read the header row", path.display()))?
        .iter()
        .map(str::to_string)
        .collect();
    let target_index = headers.iter().position(|h| h == target).with_context(|| {
        format!(
            "{}: there is no target column {target:?}; the columns are {}",
            path.display(),
            headers.join(", ")
        )
    })?;
    let mut rows = Vec::new();
    for (line, record) in csv.records().enumerate() {
        let record = record
            .with_context(|| format!("{}: row {} is not valid CSV", path.display(), line + 2))?;
        if record.len() != headers.len() {
            bail!(
                "{}: row {} has {} fields, the header has {}",
                path.display(),
                line + 2,
                record.len(),
                headers.len()
            );
        }
        rows.push(record);
    }
    if rows.is_empty() {
        bail!("{}: the file has a header but no rows", path.display());
    }
    let feature_columns: Vec<usize> = (0..headers.len()).filter(|c| *c != target_index).collect();
    let specs = feature_columns
        .iter()
        .map(|&c| {
            let numeric = rows.iter().all(|r| {
                let v = r[c].trim();
                v.is_empty() || v.parse::<f64>().is_ok()
            });
            let kind = if numeric {
                FeatureKind::Numeric
            } else {
                let categories: BTreeSet<&str> = rows
                    .iter()
                    .map(|r| r[c].trim())
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
                missing: if numeric {
                    MissingPolicy::Mean
                } else {
                    MissingPolicy::Zero
                },
            }
        })
        .collect();
    let mut encoder = Encoder::new(specs);
    // Classes: small non-negative integers keep their value; anything else is sorted.
    let labels: Vec<&str> = rows.iter().map(|r| r[target_index].trim()).collect();
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
    let mut xs = Vec::with_capacity(rows.len());
    let mut fields = Vec::with_capacity(feature_columns.len());
    for (line, row) in rows.iter().enumerate() {
        fields.clear();
        fields.extend(feature_columns.iter().map(|&c| &row[c]));
        let x = encoder
            .encode_row(&fields)
            .with_context(|| format!("{}: row {}", path.display(), line + 2))?;
        xs.push(x);
    }
    Ok(Dataset {
        xs,
        ys,
        classes,
        encoder,
    })
}
