//! The promotion gate, the verdict of a shadow or canary trial, and the
//! rollback watch's verdict: plain code on scores the caller measured.

use std::collections::BTreeMap;

use crate::learn::Classifier;

/// What a challenger must do on the held-out examples to be promoted.
#[derive(Clone, Debug, PartialEq)]
pub struct Gate {
    /// Accuracy it must gain over the champion.
    pub min_gain: f64,
    /// Largest mean prediction time, in microseconds.
    pub max_latency_us: f64,
    /// Largest model, in bytes.
    pub max_size_bytes: usize,
}

/// How the challenger and the champion did on the newest examples neither
/// trained on.
#[derive(Clone, Debug, PartialEq)]
pub struct Holdout {
    pub challenger_accuracy: f64,
    pub champion_accuracy: f64,
    pub examples: usize,
    pub latency_us: f64,
    pub size_bytes: usize,
}

impl Holdout {
    /// Scores a challenger and the champion on the held-out examples,
    /// timing the challenger's predictions.
    pub fn measure(
        challenger: &dyn Classifier,
        champion: &dyn Classifier,
        xs: &[Vec<f64>],
        ys: &[usize],
    ) -> Holdout {
        let started = std::time::Instant::now();
        let challenger_accuracy = accuracy(challenger, xs, ys);
        let latency_us = started.elapsed().as_secs_f64() * 1e6 / xs.len().max(1) as f64;
        Holdout {
            challenger_accuracy,
            champion_accuracy: accuracy(champion, xs, ys),
            examples: xs.len(),
            latency_us,
            size_bytes: challenger.size_bytes(),
        }
    }

    /// How many of `examples` a retrain holds out: `fraction` of them, at least one.
    pub fn size(examples: usize, fraction: f64) -> usize {
        ((examples as f64 * fraction) as usize).max(1)
    }

    /// As the registry records them beside the version.
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        BTreeMap::from([
            ("holdout_accuracy".to_string(), self.challenger_accuracy),
            (
                "champion_holdout_accuracy".to_string(),
                self.champion_accuracy,
            ),
            ("predict_latency_us".to_string(), self.latency_us),
            ("size_bytes".to_string(), self.size_bytes as f64),
        ])
    }
}

/// Share of `xs` that `model` gets right.
pub fn accuracy(model: &dyn Classifier, xs: &[Vec<f64>], ys: &[usize]) -> f64 {
    let correct = xs
        .iter()
        .zip(ys)
        .filter(|(x, y)| model.predict_one(x) == **y)
        .count();
    correct as f64 / xs.len().max(1) as f64
}

impl Gate {
    /// `Ok` with the reason to promote, or `Err` with the reason to refuse.
    pub fn judge(&self, holdout: &Holdout, champion_version: u64) -> Result<String, String> {
        let Holdout {
            challenger_accuracy: mine,
            champion_accuracy: theirs,
            examples,
            latency_us,
            size_bytes,
        } = *holdout;
        let gain = mine - theirs;
        if gain < self.min_gain {
            return Err(format!(
                "gain {gain:.4} on {examples} held-out examples is under the minimum {} (challenger {mine:.4}, champion {theirs:.4})",
                self.min_gain
            ));
        }
        if latency_us > self.max_latency_us {
            return Err(format!(
                "prediction takes {latency_us:.1} µs, over the bound {}",
                self.max_latency_us
            ));
        }
        if size_bytes > self.max_size_bytes {
            return Err(format!(
                "{size_bytes} bytes, over the bound {}",
                self.max_size_bytes
            ));
        }
        Ok(format!(
            "gain {gain:.4} on {examples} held-out examples (challenger {mine:.4}, champion v{champion_version} {theirs:.4})"
        ))
    }
}

/// The tally of a shadow or canary trial: the challenger's answers on its
/// labelled requests, the champion's on the others.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrialTally {
    pub challenger_seen: usize,
    pub challenger_correct: usize,
    pub champion_seen: usize,
    pub champion_correct: usize,
}

impl TrialTally {
    pub fn challenger(&mut self, correct: bool) {
        self.challenger_seen += 1;
        self.challenger_correct += usize::from(correct);
    }

    pub fn champion(&mut self, correct: bool) {
        self.champion_seen += 1;
        self.champion_correct += usize::from(correct);
    }

    /// Whether the trial has run for `labels` of the challenger's labels.
    pub fn done(&self, labels: usize) -> bool {
        self.challenger_seen >= labels
    }

    /// The challenger's and the champion's accuracy, and whether the
    /// challenger did at least as well (then it serves).
    pub fn verdict(&self) -> (f64, f64, bool) {
        let mine = self.challenger_correct as f64 / self.challenger_seen.max(1) as f64;
        let theirs = self.champion_correct as f64 / self.champion_seen.max(1) as f64;
        (mine, theirs, mine >= theirs)
    }
}

/// The rollback watch after a promotion: the new champion's answers and
/// those its predecessor would have given, on the same labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchTally {
    pub remaining: usize,
    pub seen: usize,
    pub champion_correct: usize,
    pub previous_correct: usize,
}

impl WatchTally {
    /// Watches the next `labels` labels.
    pub fn new(labels: usize) -> WatchTally {
        WatchTally {
            remaining: labels,
            seen: 0,
            champion_correct: 0,
            previous_correct: 0,
        }
    }

    /// One label; `Some((champion, previous))` accuracies when the watch is over.
    pub fn record(&mut self, champion_correct: bool, previous_correct: bool) -> Option<(f64, f64)> {
        self.seen += 1;
        self.champion_correct += usize::from(champion_correct);
        self.previous_correct += usize::from(previous_correct);
        self.remaining = self.remaining.saturating_sub(1);
        (self.remaining == 0).then(|| {
            let seen = self.seen as f64;
            (
                self.champion_correct as f64 / seen,
                self.previous_correct as f64 / seen,
            )
        })
    }

    /// Whether the predecessor should come back: it beat the champion by `margin`.
    pub fn rolls_back(champion: f64, previous: f64, margin: f64) -> bool {
        previous > champion + margin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate() -> Gate {
        Gate {
            min_gain: 0.005,
            max_latency_us: 1000.0,
            max_size_bytes: 1 << 20,
        }
    }

    fn holdout(mine: f64, theirs: f64) -> Holdout {
        Holdout {
            challenger_accuracy: mine,
            champion_accuracy: theirs,
            examples: 400,
            latency_us: 10.0,
            size_bytes: 1000,
        }
    }

    #[test]
    fn the_gate_promotes_a_gain_and_refuses_with_the_reason() {
        let pass = gate().judge(&holdout(0.90, 0.80), 3).expect("promoted");
        assert!(pass.contains("champion v3 0.8000"), "{pass}");
        let refused = gate()
            .judge(&holdout(0.802, 0.80), 3)
            .expect_err("too little");
        assert!(refused.contains("under the minimum 0.005"), "{refused}");
        let slow = Holdout {
            latency_us: 5000.0,
            ..holdout(0.9, 0.8)
        };
        assert!(gate().judge(&slow, 3).expect_err("slow").contains("µs"));
        let big = Holdout {
            size_bytes: 2 << 20,
            ..holdout(0.9, 0.8)
        };
        assert!(gate().judge(&big, 3).expect_err("big").contains("bytes"));
        let anything = Gate {
            min_gain: -1.0,
            ..gate()
        };
        assert!(anything.judge(&holdout(0.5, 0.9), 1).is_ok());
    }

    #[test]
    fn a_trial_serves_the_challenger_only_if_it_did_at_least_as_well() {
        let mut tally = TrialTally::default();
        for i in 0..10 {
            tally.challenger(i < 8);
            tally.champion(i < 7);
        }
        assert!(tally.done(10) && !tally.done(11));
        let (mine, theirs, serves) = tally.verdict();
        assert_eq!((mine, theirs, serves), (0.8, 0.7, true));
        for _ in 0..10 {
            tally.champion(true);
        }
        assert!(!tally.verdict().2, "the champion now leads, 17 of 20");
    }

    #[test]
    fn the_watch_ends_after_its_labels_and_rolls_back_past_the_margin() {
        let mut watch = WatchTally::new(4);
        assert_eq!(watch.record(true, true), None);
        assert_eq!(watch.record(false, true), None);
        assert_eq!(watch.record(false, true), None);
        let (champion, previous) = watch.record(true, true).expect("over");
        assert_eq!((champion, previous), (0.5, 1.0));
        assert!(WatchTally::rolls_back(champion, previous, 0.02));
        assert!(!WatchTally::rolls_back(0.9, 0.91, 0.02));
    }
}
