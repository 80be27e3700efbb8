//! Seeded synthetic streams with known drift points.
//!
//! [`FraudStream`] is the card-transaction stream of `driftline demo`: seven
//! features, a fraud label, and a fraud pattern that changes abruptly at one
//! point and then gradually over a stretch later on, so a model trained on
//! the first pattern goes stale twice.

use serde_json::{json, Value};

use crate::stats::SplitMix64;

/// Which fraud pattern labelled a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Concept {
    /// Large card-not-present payments, abroad or at risky merchants.
    CardNotPresent,
    /// Small payments at night in quick succession (card testing).
    CardTesting,
    /// Card-present payments far from home (skimmed cards).
    Skimming,
}

#[derive(Clone, Debug)]
pub struct FraudStream {
    rng: SplitMix64,
    index: u64,
    /// Where the pattern switches at once from card-not-present to card testing.
    pub abrupt_at: u64,
    /// Where the switch to skimming starts and ends (linearly more likely).
    pub gradual_from: u64,
    pub gradual_to: u64,
}

/// One transaction: its features as JSON, whether it is fraud, and the pattern.
#[derive(Clone, Debug, PartialEq)]
pub struct Transaction {
    pub features: Value,
    pub fraud: bool,
    pub concept: Concept,
}

/// The feature names, in the order the demo's encoder uses.
pub const FRAUD_FEATURES: [&str; 7] = [
    "amount",
    "hour",
    "distance_km",
    "merchant_risk",
    "card_present",
    "velocity_1h",
    "foreign",
];

impl FraudStream {
    /// A stream of `events` transactions: abrupt change at a third, gradual
    /// change over the middle of the last two thirds.
    pub fn new(seed: u64, events: u64) -> FraudStream {
        FraudStream {
            rng: SplitMix64::new(seed),
            index: 0,
            abrupt_at: events / 3,
            gradual_from: events * 3 / 5,
            gradual_to: events * 4 / 5,
        }
    }

    pub fn concept_at(&mut self, index: u64) -> Concept {
        if index < self.abrupt_at {
            Concept::CardNotPresent
        } else if index < self.gradual_from {
            Concept::CardTesting
        } else if index >= self.gradual_to {
            Concept::Skimming
        } else {
            let share =
                (index - self.gradual_from) as f64 / (self.gradual_to - self.gradual_from) as f64;
            if self.rng.next_f64() < share {
                Concept::Skimming
            } else {
                Concept::CardTesting
            }
        }
    }

    fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.rng.next_f64().max(1e-12), self.rng.next_f64());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

impl Iterator for FraudStream {
    type Item = Transaction;

    fn next(&mut self) -> Option<Transaction> {
        let amount = (3.5 + 1.1 * self.normal()).exp().min(20_000.0);
        let hour = self.rng.below(24) as f64;
        let distance_km = -40.0 * (1.0 - self.rng.next_f64()).ln();
        let merchant_risk = self.rng.next_f64();
        let card_present = self.rng.next_f64() < 0.6;
        let velocity = self.rng.poisson(1.5) as f64;
        let foreign = self.rng.next_f64() < 0.12;
        let concept = self.concept_at(self.index);
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        let score = match concept {
            Concept::CardNotPresent => {
                1.4 * (amount.ln() - 4.2)
                    + 2.5 * flag(!card_present)
                    + 1.6 * flag(foreign)
                    + 2.0 * (merchant_risk - 0.5)
                    - 2.6
            }
            Concept::CardTesting => {
                -1.5 * (amount.ln() - 3.0) + 2.2 * flag(hour < 6.0) + 0.9 * velocity - 4.0
            }
            Concept::Skimming => {
                0.035 * (distance_km - 40.0) + 2.4 * flag(card_present) + 1.2 * flag(foreign) - 3.2
            }
        };
        // a little label noise: fraud is not a clean rule
        let fraud = score + 0.4 * self.normal() > 0.0;
        self.index += 1;
        Some(Transaction {
            features: json!({
                "amount": (amount * 100.0).round() / 100.0,
                "hour": hour,
                "distance_km": (distance_km * 10.0).round() / 10.0,
                "merchant_risk": (merchant_risk * 1000.0).round() / 1000.0,
                "card_present": card_present,
                "velocity_1h": velocity,
                "foreign": foreign,
            }),
            fraud,
            concept,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_is_seeded_and_its_patterns_change_where_it_says() {
        let a: Vec<Transaction> = FraudStream::new(7, 3000).take(3000).collect();
        let b: Vec<Transaction> = FraudStream::new(7, 3000).take(3000).collect();
        assert_eq!(a, b);
        assert!(a[..1000]
            .iter()
            .all(|t| t.concept == Concept::CardNotPresent));
        assert!(a[1000..1800]
            .iter()
            .all(|t| t.concept == Concept::CardTesting));
        assert!(a[2400..].iter().all(|t| t.concept == Concept::Skimming));
        let mixed = &a[1800..2400];
        assert!(mixed.iter().any(|t| t.concept == Concept::Skimming));
        assert!(mixed.iter().any(|t| t.concept == Concept::CardTesting));
    }

    #[test]
    fn every_pattern_has_a_fraud_rate_a_model_can_learn() {
        let mut stream = FraudStream::new(1, 90_000);
        for (from, to) in [(0, 30_000), (30_000, 54_000), (72_000, 90_000)] {
            let frauds = (from..to)
                .filter(|_| stream.next().is_some_and(|t| t.fraud))
                .count();
            let rate = frauds as f64 / (to - from) as f64;
            assert!((0.04..0.35).contains(&rate), "{from}..{to}: {rate}");
            if to == 54_000 {
                stream.by_ref().take(18_000).for_each(drop);
            }
        }
    }
}
