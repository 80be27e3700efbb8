//! A position in a stream: a sequence number of any width. driftline's own
//! log numbers fit in 128 bits, but Kinesis shows sequence numbers of up to 56
//! decimal digits (and DynamoDB Streams up to 40): positions are kept as
//! canonical decimal text and compared as the numbers they are.

use std::cmp::Ordering;
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Position(String);

/// Digits a position may have, at most.
const MAX_DIGITS: usize = 128;

impl Position {
    /// A decimal sequence number (leading zeros allowed); `None` for anything else.
    pub fn parse(text: &str) -> Option<Position> {
        if text.is_empty() || text.len() > MAX_DIGITS || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let trimmed = text.trim_start_matches('0');
        Some(Position(if trimmed.is_empty() {
            "0".into()
        } else {
            trimmed.into()
        }))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The number, when it fits in 128 bits (always, for driftline's own log).
    pub fn to_u128(&self) -> Option<u128> {
        self.0.parse().ok()
    }
}

impl From<u128> for Position {
    fn from(value: u128) -> Position {
        Position(value.to_string())
    }
}

impl Position {
    /// Orders two canonical decimal texts (no leading zeros) as the numbers
    /// they are, without parsing them: more digits is a larger number. The
    /// order of positions, for callers holding the text (the ingest path).
    pub fn order_text(a: &str, b: &str) -> Ordering {
        a.len()
            .cmp(&b.len())
            .then_with(|| a.as_bytes().cmp(b.as_bytes()))
    }
}

impl Ord for Position {
    fn cmp(&self, other: &Position) -> Ordering {
        Position::order_text(&self.0, &other.0)
    }
}

impl PartialOrd for Position {
    fn partial_cmp(&self, other: &Position) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_compare_as_numbers_of_any_width() {
        assert!(Position::from(9) < Position::from(10));
        assert!(
            Position::parse("49590338271490256608559692538361571095921575989136588802")
                < Position::parse("49590338271490256608559692538361571095921575989136588898")
        );
        let kinesis = "49590338271490256608559692538361571095921575989136588898";
        let big = Position::parse(kinesis).expect("56 digits");
        assert_eq!(big.to_u128(), None);
        assert!(Position::from(u128::MAX) < big);
        assert!(Position::from(9) < Position::from(10));
        assert_eq!(Position::parse("0007"), Some(Position::from(7)));
        assert_eq!(Position::parse("000"), Some(Position::from(0)));
        assert_eq!(Position::parse("12a"), None);
        assert_eq!(Position::parse(""), None);
        assert_eq!(big.to_string(), kinesis);
    }
}
