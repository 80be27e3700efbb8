//! Sequence numbers: unique per stream, strictly increasing within a shard,
//! compared as integers and shown as decimal strings, as AWS shows them.
//!
//! The value is `(shard_index + 1) << 64 | offset`, where `offset` counts the
//! shard's records from zero. A sequence number therefore names its shard, so a
//! number from another shard is recognised and refused, and numbers of a child
//! shard sort after those of its parents.

use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SequenceNumber(u128);

impl SequenceNumber {
    pub fn new(shard_index: u32, offset: u64) -> Self {
        SequenceNumber((u128::from(shard_index) + 1) << 64 | u128::from(offset))
    }

    /// The shard this number was issued by, or `None` for a number this log never issues.
    pub fn shard_index(self) -> Option<u32> {
        let high = self.0 >> 64;
        if high == 0 {
            return None;
        }
        u32::try_from(high - 1).ok()
    }

    /// The record's position in its shard, counted from zero.
    pub fn offset(self) -> u64 {
        self.0 as u64
    }

    /// The inverse of [`SequenceNumber::as_u128`].
    pub fn from_u128(value: u128) -> Self {
        SequenceNumber(value)
    }

    pub fn as_u128(self) -> u128 {
        self.0
    }
}

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("sequence number {0:?} is not a decimal integer of at most 39 digits")]
pub struct ParseSequenceNumberError(pub String);

impl FromStr for SequenceNumber {
    type Err = ParseSequenceNumberError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseSequenceNumberError(text.to_string()));
        }
        text.parse::<u128>()
            .map(SequenceNumber)
            .map_err(|_| ParseSequenceNumberError(text.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_through_decimal_strings() {
        let seq = SequenceNumber::new(3, 42);
        let parsed: SequenceNumber = seq.to_string().parse().expect("parses");
        assert_eq!(parsed, seq);
        assert_eq!(parsed.shard_index(), Some(3));
        assert_eq!(parsed.offset(), 42);
    }

    #[test]
    fn numbers_increase_with_offset_and_compare_as_integers() {
        let a = SequenceNumber::new(0, 9);
        let b = SequenceNumber::new(0, 10);
        assert!(a < b);
        let (sa, sb) = (a.to_string(), b.to_string());
        assert_eq!(sa.len(), sb.len());
        assert!(sa.parse::<u128>().ok() < sb.parse::<u128>().ok());
    }

    #[test]
    fn junk_is_refused() {
        assert!("".parse::<SequenceNumber>().is_err());
        assert!("12a".parse::<SequenceNumber>().is_err());
        assert!("-1".parse::<SequenceNumber>().is_err());
        assert!("9".repeat(40).parse::<SequenceNumber>().is_err());
        assert_eq!(
            "5".parse::<SequenceNumber>()
                .ok()
                .and_then(|s| s.shard_index()),
            None
        );
    }
}
