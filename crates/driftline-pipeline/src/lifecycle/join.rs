//! The outcome join: predictions waiting for their labels, bounded by count
//! and by age; a label takes its prediction, the rest expire unlabelled.

use std::collections::{HashMap, VecDeque};

/// A prediction waiting for its label.
pub(super) struct Pending {
    pub x: Vec<f64>,
    pub class: usize,
    pub version: u64,
    /// A shadow challenger's class for the same request.
    pub shadow: Option<(u64, usize)>,
}

pub(super) struct OutcomeJoin {
    pending: HashMap<String, Pending>,
    order: VecDeque<(String, i64)>,
    horizon: usize,
    horizon_ms: i64,
}

impl OutcomeJoin {
    pub fn new(horizon: usize, horizon_ms: i64) -> OutcomeJoin {
        OutcomeJoin {
            // Sized up front, up to a point: growing a map of many thousands
            // of entries under the lock stalls every request.
            pending: HashMap::with_capacity(horizon.min(1 << 16)),
            order: VecDeque::new(),
            horizon,
            horizon_ms,
        }
    }

    /// Waits for `request_id`'s label from `now_ms`; returns how many
    /// predictions expired unlabelled to make room or by age.
    pub fn wait(&mut self, request_id: String, pending: Pending, now_ms: i64) -> u64 {
        self.pending.insert(request_id.clone(), pending);
        self.order.push_back((request_id, now_ms));
        let mut expired = 0;
        while let Some((id, at)) = self.order.front() {
            let full = self.order.len() > self.horizon;
            if !full && *at >= now_ms - self.horizon_ms {
                break;
            }
            if self.pending.remove(id).is_some() {
                expired += 1;
            }
            self.order.pop_front();
        }
        expired
    }

    /// The prediction `request_id` labels, if it still waits.
    pub fn take(&mut self, request_id: &str) -> Option<Pending> {
        self.pending.remove(request_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending() -> Pending {
        Pending {
            x: vec![1.0],
            class: 0,
            version: 1,
            shadow: None,
        }
    }

    #[test]
    fn predictions_wait_within_the_horizon_by_count_and_by_age() {
        let mut join = OutcomeJoin::new(2, 1000);
        assert_eq!(join.wait("a".into(), pending(), 0), 0);
        assert_eq!(join.wait("b".into(), pending(), 10), 0);
        // a third pushes the oldest out
        assert_eq!(join.wait("c".into(), pending(), 20), 1);
        assert!(join.take("a").is_none());
        assert!(join.take("b").is_some());
        assert!(
            join.take("b").is_none(),
            "a label takes its prediction once"
        );
        // c is too old by the time d comes
        assert_eq!(join.wait("d".into(), pending(), 2000), 1);
        assert!(join.take("c").is_none());
        assert!(join.take("d").is_some());
    }
}
