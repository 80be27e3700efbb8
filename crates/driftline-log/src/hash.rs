//! Partition keys map to shards as in Kinesis: the MD5 of the key, read as a
//! big-endian 128-bit integer, falls into exactly one open shard's hash-key range.

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

/// The hash key of a partition key: MD5, big-endian, as Kinesis computes it.
pub fn partition_key_hash(partition_key: &str) -> u128 {
    let digest = Md5::digest(partition_key.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest);
    u128::from_be_bytes(bytes)
}

/// An inclusive range of 128-bit hash keys owned by one shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HashKeyRange {
    #[serde(with = "u128_string")]
    pub start: u128,
    #[serde(with = "u128_string")]
    pub end: u128,
}

impl HashKeyRange {
    pub const FULL: HashKeyRange = HashKeyRange {
        start: 0,
        end: u128::MAX,
    };

    pub fn contains(&self, hash_key: u128) -> bool {
        self.start <= hash_key && hash_key <= self.end
    }

    pub fn overlaps(&self, other: &HashKeyRange) -> bool {
        self.start <= other.end && other.start <= self.end
    }

    /// Splits the whole hash space into `count` contiguous ranges of equal
    /// width (the last one takes the remainder), as CreateStream does.
    pub fn uniform(count: u32) -> Vec<HashKeyRange> {
        if count <= 1 {
            return vec![HashKeyRange::FULL];
        }
        let count = u128::from(count);
        // 2^128 / count, computed without overflowing u128.
        let width = u128::MAX / count + (u128::MAX % count + 1) / count;
        (0..count)
            .map(|i| HashKeyRange {
                start: i * width,
                end: if i + 1 == count {
                    u128::MAX
                } else {
                    (i + 1) * width - 1
                },
            })
            .collect()
    }
}

/// Hash keys are stored as decimal strings: JSON numbers cannot hold 128 bits.
pub(crate) mod u128_string {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &u128, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&value.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u128, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_matches_md5_of_the_key() {
        // md5("a") = 0cc175b9c0f1b6a831c399e269772661
        assert_eq!(
            partition_key_hash("a"),
            0x0cc175b9c0f1b6a831c399e269772661u128
        );
    }

    #[test]
    fn uniform_ranges_cover_the_space_without_gaps() {
        for count in 1..20 {
            let ranges = HashKeyRange::uniform(count);
            assert_eq!(ranges.len() as u32, count);
            assert_eq!(ranges[0].start, 0);
            assert_eq!(ranges.last().map(|r| r.end), Some(u128::MAX));
            for pair in ranges.windows(2) {
                assert_eq!(pair[0].end + 1, pair[1].start);
            }
        }
    }

    #[test]
    fn two_shards_split_at_half_as_kinesis_does() {
        let ranges = HashKeyRange::uniform(2);
        assert_eq!(
            ranges[0].end.to_string(),
            "170141183460469231731687303715884105727"
        );
    }
}
