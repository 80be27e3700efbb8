//! Where an object goes and what it is called.

use chrono::{DateTime, Utc};

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
    pub first: u128,
    pub last: u128,
}

impl ObjectName {
    pub fn file_name(&self) -> String {
        format!(
            "{}-{:039}-{:039}.parquet",
            self.shard, self.first, self.last
        )
    }

    /// Reads a name written by [`ObjectName::file_name`]; `None` for any other file.
    pub fn parse(file_name: &str) -> Option<ObjectName> {
        let stem = file_name.strip_suffix(".parquet")?;
        let mut parts = stem.rsplitn(3, '-');
        let last = parts.next()?;
        let first = parts.next()?;
        let shard = parts.next()?;
        if first.len() != 39 || last.len() != 39 || shard.is_empty() {
            return None;
        }
        Some(ObjectName {
            shard: shard.to_string(),
            first: first.parse().ok()?,
            last: last.parse().ok()?,
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
            first: 9,
            last: 99,
        };
        let b = ObjectName {
            shard: "shardId-000000000001".into(),
            first: 100,
            last: 18_446_744_073_709_551_716,
        };
        assert_eq!(ObjectName::parse(&a.file_name()), Some(a.clone()));
        assert_eq!(ObjectName::parse(&b.file_name()), Some(b.clone()));
        assert!(a.file_name() < b.file_name());
        assert_eq!(ObjectName::parse("notes.txt"), None);
        assert_eq!(ObjectName::parse("x-1-2.parquet"), None);
    }
}
