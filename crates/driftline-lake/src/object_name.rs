//! Where an object goes and what it is called.

use chrono::{DateTime, Utc};

use crate::Position;

/// `dt=YYYY-MM-DD/hour=HH` of a time in microseconds since the epoch (UTC).
pub fn partition_path(time_us: i64) -> String {
    let time = DateTime::<Utc>::from_timestamp_micros(time_us).unwrap_or_default();
    time.format("dt=%Y-%m-%d/hour=%H").to_string()
}

/// The file name of an object holding a shard's records from `first` to
/// `last` (sequence numbers, both included): `shardId-000000000001-<first>-<last>.parquet`,
/// the numbers zero-padded to 39 digits so that names sort as the numbers do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectName {
    pub shard: String,
    pub first: Position,
    pub last: Position,
}

impl ObjectName {
    pub fn file_name(&self) -> String {
        // At least 39 digits (any 128-bit number); wider for wider numbers,
        // both the same width so that the names of one shard sort as the numbers.
        let width = 39
            .max(self.last.as_str().len())
            .max(self.first.as_str().len());
        format!(
            "{}-{:0>width$}-{:0>width$}.parquet",
            self.shard,
            self.first.as_str(),
            self.last.as_str()
        )
    }

    /// Reads a name written by [`ObjectName::file_name`]; `None` for any other file.
    pub fn parse(file_name: &str) -> Option<ObjectName> {
        let stem = file_name.strip_suffix(".parquet")?;
        let mut parts = stem.rsplitn(3, '-');
        let last = parts.next()?;
        let first = parts.next()?;
        let shard = parts.next()?;
        if first.len() < 39 || first.len() != last.len() || shard.is_empty() {
            return None;
        }
        Some(ObjectName {
            shard: shard.to_string(),
            first: Position::parse(first)?,
            last: Position::parse(last)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_follow_utc_event_time() {
        // 2026-11-25T13:45:00Z
        assert_eq!(
            partition_path(1_795_614_300_000_000),
            "dt=2026-11-25/hour=13"
        );
        assert_eq!(partition_path(0), "dt=1970-01-01/hour=00");
    }

    #[test]
    fn object_names_round_trip_and_sort_numerically() {
        let a = ObjectName {
            shard: "shardId-000000000001".into(),
            first: 9.into(),
            last: 99.into(),
        };
        let b = ObjectName {
            shard: "shardId-000000000001".into(),
            first: 100.into(),
            last: 18_446_744_073_709_551_716.into(),
        };
        assert_eq!(ObjectName::parse(&a.file_name()), Some(a.clone()));
        assert_eq!(ObjectName::parse(&b.file_name()), Some(b.clone()));
        assert!(a.file_name() < b.file_name());
        // Kinesis's 56-digit sequence numbers make wider names
        let wide = ObjectName {
            shard: "shardId-000000000000".into(),
            first: Position::parse("49590338271490256608559692538361571095921575989136588898")
                .expect("first"),
            last: Position::parse("49590338271490256608559692538361571095921575989136588999")
                .expect("last"),
        };
        assert_eq!(ObjectName::parse(&wide.file_name()), Some(wide.clone()));
        assert_eq!(ObjectName::parse("notes.txt"), None);
        assert_eq!(ObjectName::parse("x-1-2.parquet"), None);
    }
}
