use super::{Metric, Observation};

/// Counts of (true class, predicted class), the basis of most classification
/// metrics; dense, growing as classes appear, so an update is a few additions.
#[derive(Clone, Debug, Default)]
pub struct ConfusionMatrix {
    /// cells[true][predicted]
    cells: Vec<Vec<f64>>,
    /// per class: times true, times predicted
    actual: Vec<f64>,
    predicted: Vec<f64>,
    correct: f64,
    total: f64,
}

impl ConfusionMatrix {
    fn grow(&mut self, class: usize) {
        if class >= self.actual.len() {
            let n = class + 1;
            self.actual.resize(n, 0.0);
            self.predicted.resize(n, 0.0);
            for row in &mut self.cells {
                row.resize(n, 0.0);
            }
            self.cells.resize(n, vec![0.0; n]);
        }
    }

    fn add(&mut self, y_true: usize, y_pred: usize, weight: f64) {
        self.grow(y_true.max(y_pred));
        self.cells[y_true][y_pred] += weight;
        self.actual[y_true] += weight;
        self.predicted[y_pred] += weight;
        if y_true == y_pred {
            self.correct += weight;
        }
        self.total += weight;
    }

    pub fn update(&mut self, y_true: usize, y_pred: usize) {
        self.add(y_true, y_pred, 1.0);
    }

    pub fn revert(&mut self, y_true: usize, y_pred: usize) {
        self.add(y_true, y_pred, -1.0);
    }

    pub fn correct(&self) -> f64 {
        self.correct
    }

    pub fn total(&self) -> f64 {
        self.total
    }

    fn true_positives(&self, class: usize) -> f64 {
        self.cells[class][class]
    }

    /// Classes seen as truth or as prediction (with a count left after reverts).
    fn classes(&self) -> impl Iterator<Item = (usize, f64, f64)> + '_ {
        (0..self.actual.len())
            .filter(|c| self.actual[*c] > 0.0 || self.predicted[*c] > 0.0)
            .map(|c| (c, self.actual[c], self.predicted[c]))
    }

    fn recall(&self, class: usize, actual: f64) -> f64 {
        if actual > 0.0 {
            self.true_positives(class) / actual
        } else {
            0.0
        }
    }

    fn precision(&self, class: usize, predicted: f64) -> f64 {
        if predicted > 0.0 {
            self.true_positives(class) / predicted
        } else {
            0.0
        }
    }
}

fn class_parts(observation: &Observation) -> Option<(usize, usize)> {
    match observation {
        Observation::Class { y_true, y_pred, .. } => Some((*y_true, *y_pred)),
        Observation::Value { .. } => None,
    }
}

macro_rules! confusion_metric {
    ($name:ident, $label:literal, |$cm:ident| $get:expr) => {
        #[derive(Clone, Debug, Default)]
        pub struct $name {
            matrix: ConfusionMatrix,
        }

        impl Metric for $name {
            fn update(&mut self, observation: &Observation) {
                if let Some((t, p)) = class_parts(observation) {
                    self.matrix.update(t, p);
                }
            }

            fn revert(&mut self, observation: &Observation) {
                if let Some((t, p)) = class_parts(observation) {
                    self.matrix.revert(t, p);
                }
            }

            fn get(&self) -> f64 {
                let $cm = &self.matrix;
                $get
            }

            fn name(&self) -> &'static str {
                $label
            }
        }
    };
}

fn ratio(numerator: f64, denominator: f64) -> f64 {
    if denominator > 0.0 {
        numerator / denominator
    } else {
        0.0
    }
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, count) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    ratio(sum, count as f64)
}

confusion_metric!(Accuracy, "accuracy", |cm| ratio(cm.correct(), cm.total()));
confusion_metric!(BalancedAccuracy, "balanced_accuracy", |cm| mean(
    cm.classes()
        .filter(|(_, t, _)| *t > 0.0)
        .map(|(c, t, _)| cm.recall(c, t))
));
confusion_metric!(RecallMacro, "recall_macro", |cm| mean(
    cm.classes().map(|(c, t, _)| cm.recall(c, t))
));
confusion_metric!(PrecisionMacro, "precision_macro", |cm| mean(
    cm.classes().map(|(c, _, p)| cm.precision(c, p))
));
confusion_metric!(F1Macro, "f1_macro", |cm| mean(cm.classes().map(
    |(c, t, p)| {
        let (precision, recall) = (cm.precision(c, p), cm.recall(c, t));
        ratio(2.0 * precision * recall, precision + recall)
    }
)));

/// Mean negative log-likelihood of the true class (probabilities clipped to 1e-15).
#[derive(Clone, Debug, Default)]
pub struct LogLoss {
    sum: f64,
    count: f64,
}

fn loss_of(observation: &Observation) -> Option<f64> {
    match observation {
        Observation::Class { proba_true, .. } => Some(-proba_true.clamp(1e-15, 1.0).ln()),
        Observation::Value { .. } => None,
    }
}

impl Metric for LogLoss {
    fn update(&mut self, observation: &Observation) {
        if let Some(loss) = loss_of(observation) {
            self.sum += loss;
            self.count += 1.0;
        }
    }

    fn revert(&mut self, observation: &Observation) {
        if let Some(loss) = loss_of(observation) {
            self.sum -= loss;
            self.count -= 1.0;
        }
    }

    fn get(&self) -> f64 {
        ratio(self.sum, self.count)
    }

    fn name(&self) -> &'static str {
        "log_loss"
    }

    fn bigger_is_better(&self) -> bool {
        false
    }
}

/// Binary ROC AUC: the probability that a random positive scores above a
/// random negative (ties count half), from the scores of class 1. Exact: it
/// keeps the scores and sorts them when read.
#[derive(Clone, Debug, Default)]
pub struct RocAuc {
    scored: Vec<(f64, bool)>,
}

impl RocAuc {
    fn pair(observation: &Observation) -> Option<(f64, bool)> {
        match observation {
            Observation::Class { y_true, score, .. } => Some((*score, *y_true == 1)),
            Observation::Value { .. } => None,
        }
    }
}

impl Metric for RocAuc {
    fn update(&mut self, observation: &Observation) {
        if let Some(pair) = Self::pair(observation) {
            self.scored.push(pair);
        }
    }

    fn revert(&mut self, observation: &Observation) {
        if let Some(pair) = Self::pair(observation) {
            if let Some(i) = self.scored.iter().position(|p| *p == pair) {
                self.scored.swap_remove(i);
            }
        }
    }

    fn get(&self) -> f64 {
        roc_auc(&self.scored)
    }

    fn name(&self) -> &'static str {
        "roc_auc"
    }
}

/// AUC by ranks (Mann-Whitney U), with ties shared: O(n log n).
pub fn roc_auc(scored: &[(f64, bool)]) -> f64 {
    let positives = scored.iter().filter(|(_, p)| *p).count() as f64;
    let negatives = scored.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return 0.5;
    }
    let mut sorted = scored.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j < sorted.len() && sorted[j].0 == sorted[i].0 {
            j += 1;
        }
        // ranks i+1..=j share their mean
        let mean_rank = (i + 1 + j) as f64 / 2.0;
        rank_sum += mean_rank * sorted[i..j].iter().filter(|(_, p)| *p).count() as f64;
        i = j;
    }
    (rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn class(y_true: usize, y_pred: usize) -> Observation {
        Observation::Class {
            y_true,
            y_pred,
            proba_true: if y_true == y_pred { 0.8 } else { 0.2 },
            score: if y_pred == 1 { 0.8 } else { 0.2 },
        }
    }

    #[test]
    fn confusion_metrics_match_hand_counts() {
        // truth:      0 0 0 1 1 2
        // prediction: 0 0 1 1 0 2
        let pairs = [(0, 0), (0, 0), (0, 1), (1, 1), (1, 0), (2, 2)];
        let mut metrics: Vec<Box<dyn Metric>> = vec![
            Box::new(Accuracy::default()),
            Box::new(BalancedAccuracy::default()),
            Box::new(PrecisionMacro::default()),
            Box::new(RecallMacro::default()),
            Box::new(F1Macro::default()),
        ];
        for (t, p) in pairs {
            for metric in &mut metrics {
                metric.update(&class(t, p));
            }
        }
        let values: Vec<f64> = metrics.iter().map(|m| m.get()).collect();
        let recall = [2.0 / 3.0, 0.5, 1.0];
        let precision = [2.0 / 3.0, 0.5, 1.0];
        let f1: Vec<f64> = (0..3)
            .map(|i| 2.0 * precision[i] * recall[i] / (precision[i] + recall[i]))
            .collect();
        let expected = [
            4.0 / 6.0,
            recall.iter().sum::<f64>() / 3.0,
            precision.iter().sum::<f64>() / 3.0,
            recall.iter().sum::<f64>() / 3.0,
            f1.iter().sum::<f64>() / 3.0,
        ];
        for (got, want) in values.iter().zip(expected) {
            assert!((got - want).abs() < 1e-12, "{values:?} vs {expected:?}");
        }
    }

    #[test]
    fn log_loss_is_the_mean_negative_log_probability() {
        let mut metric = LogLoss::default();
        metric.update(&Observation::Class {
            y_true: 1,
            y_pred: 1,
            proba_true: 0.5,
            score: 0.5,
        });
        metric.update(&Observation::Class {
            y_true: 0,
            y_pred: 1,
            proba_true: 0.25,
            score: 0.75,
        });
        assert!((metric.get() - (2f64.ln() + 4f64.ln()) / 2.0).abs() < 1e-12);
        assert!(!metric.bigger_is_better());
    }

    fn brute_force_auc(scored: &[(f64, bool)]) -> f64 {
        let (mut wins, mut pairs) = (0.0, 0.0);
        for (sp, p) in scored {
            for (sn, n) in scored {
                if *p && !*n {
                    pairs += 1.0;
                    if sp > sn {
                        wins += 1.0;
                    } else if sp == sn {
                        wins += 0.5;
                    }
                }
            }
        }
        if pairs == 0.0 {
            0.5
        } else {
            wins / pairs
        }
    }

    proptest! {
        #[test]
        fn auc_equals_the_brute_force_pair_count(scored in proptest::collection::vec((0u8..20, any::<bool>()), 0..200)) {
            let scored: Vec<(f64, bool)> = scored.into_iter().map(|(s, p)| (f64::from(s) / 20.0, p)).collect();
            prop_assert!((roc_auc(&scored) - brute_force_auc(&scored)).abs() < 1e-9);
        }

        #[test]
        fn update_then_revert_restores_every_metric(
            history in proptest::collection::vec((0usize..4, 0usize..4), 1..60),
            extra in (0usize..4, 0usize..4),
        ) {
            for name in super::super::CLASSIFICATION_METRICS {
                let mut metric = super::super::metric_by_name(name).expect("metric");
                for (t, p) in &history {
                    metric.update(&class(*t, *p));
                }
                let before = metric.get();
                let observation = class(extra.0, extra.1);
                metric.update(&observation);
                metric.revert(&observation);
                prop_assert!((metric.get() - before).abs() < 1e-9, "{name}: {before} vs {}", metric.get());
            }
        }
    }

    #[test]
    fn a_rolling_metric_only_sees_its_window() {
        let mut rolling = super::super::Rolling::new(Box::new(Accuracy::default()), 3);
        for (t, p) in [(0, 1), (0, 1), (0, 0), (0, 0), (0, 0)] {
            rolling.update(&class(t, p));
        }
        assert_eq!(rolling.get(), 1.0);
        rolling.update(&class(1, 0));
        assert!((rolling.get() - 2.0 / 3.0).abs() < 1e-12);
    }
}
