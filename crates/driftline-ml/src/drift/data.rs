//! Data drift between a reference sample and a current one: population
//! stability index, two-sample Kolmogorov-Smirnov, chi-square for categories,
//! and Jensen-Shannon distance. Each returns its statistic and, where the test
//! has one, a p-value.

use std::collections::BTreeMap;

use crate::stats::{chi_square_survival, ks_p_value, ks_statistic_sorted};
use crate::ParamError;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TestResult {
    pub statistic: f64,
    pub p_value: Option<f64>,
}

fn need_both(reference: usize, current: usize) -> Result<(), ParamError> {
    if reference == 0 || current == 0 {
        return Err(ParamError::new(
            "data drift samples",
            format!("both samples must be non-empty (reference {reference}, current {current})"),
        ));
    }
    Ok(())
}

fn sorted_finite(values: &[f64]) -> Vec<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    sorted
}

/// Two-sample Kolmogorov-Smirnov test (non-finite values are ignored).
pub fn kolmogorov_smirnov(reference: &[f64], current: &[f64]) -> Result<TestResult, ParamError> {
    let (a, b) = (sorted_finite(reference), sorted_finite(current));
    need_both(a.len(), b.len())?;
    let statistic = ks_statistic_sorted(&a, &b);
    Ok(TestResult {
        statistic,
        p_value: Some(ks_p_value(statistic, a.len(), b.len())),
    })
}

/// Bin edges at the reference sample's quantiles (at most `bins` bins).
fn quantile_edges(sorted_reference: &[f64], bins: usize) -> Vec<f64> {
    let mut edges: Vec<f64> = (1..bins)
        .map(|i| {
            sorted_reference[(i * sorted_reference.len() / bins).min(sorted_reference.len() - 1)]
        })
        .collect();
    edges.dedup();
    edges
}

fn histogram(values: &[f64], edges: &[f64]) -> Vec<f64> {
    let mut counts = vec![0.0; edges.len() + 1];
    for v in values.iter().filter(|v| v.is_finite()) {
        counts[edges.partition_point(|e| e <= v)] += 1.0;
    }
    counts
}

/// Population stability index over `bins` quantile bins of the reference
/// (0.1 is commonly read as moderate drift, 0.25 as large).
pub fn psi(reference: &[f64], current: &[f64], bins: usize) -> Result<TestResult, ParamError> {
    let sorted = sorted_finite(reference);
    need_both(sorted.len(), current.len())?;
    let edges = quantile_edges(&sorted, bins.max(2));
    let statistic = psi_of_counts(&histogram(&sorted, &edges), &histogram(current, &edges));
    Ok(TestResult {
        statistic,
        p_value: None,
    })
}

fn psi_of_counts(reference: &[f64], current: &[f64]) -> f64 {
    // Empty bins get a small floor so the logarithm stays finite.
    const FLOOR: f64 = 1e-4;
    let (rt, ct) = (reference.iter().sum::<f64>(), current.iter().sum::<f64>());
    reference
        .iter()
        .zip(current)
        .map(|(r, c)| {
            let (p, q) = ((r / rt).max(FLOOR), (c / ct).max(FLOOR));
            (q - p) * (q / p).ln()
        })
        .sum()
}

/// Chi-square test of homogeneity between two samples of categories.
pub fn chi_square(reference: &[&str], current: &[&str]) -> Result<TestResult, ParamError> {
    need_both(reference.len(), current.len())?;
    let mut table: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for category in reference {
        table.entry(category).or_default().0 += 1.0;
    }
    for category in current {
        table.entry(category).or_default().1 += 1.0;
    }
    let (n_ref, n_cur) = (reference.len() as f64, current.len() as f64);
    let total = n_ref + n_cur;
    let statistic: f64 = table
        .values()
        .map(|(r, c)| {
            let column = r + c;
            let (er, ec) = (column * n_ref / total, column * n_cur / total);
            (r - er).powi(2) / er + (c - ec).powi(2) / ec
        })
        .sum();
    let dof = (table.len() as f64 - 1.0).max(1.0);
    Ok(TestResult {
        statistic,
        p_value: Some(if table.len() < 2 {
            1.0
        } else {
            chi_square_survival(statistic, dof)
        }),
    })
}

/// Jensen-Shannon distance (base 2, so within 0..=1) between the histograms
/// of two numeric samples over `bins` quantile bins of the reference.
pub fn jensen_shannon(
    reference: &[f64],
    current: &[f64],
    bins: usize,
) -> Result<TestResult, ParamError> {
    let sorted = sorted_finite(reference);
    need_both(sorted.len(), current.len())?;
    let edges = quantile_edges(&sorted, bins.max(2));
    let (p, q) = (histogram(&sorted, &edges), histogram(current, &edges));
    Ok(TestResult {
        statistic: jensen_shannon_of_counts(&p, &q),
        p_value: None,
    })
}

pub fn jensen_shannon_of_counts(p: &[f64], q: &[f64]) -> f64 {
    let (pt, qt) = (p.iter().sum::<f64>(), q.iter().sum::<f64>());
    let kl = |a: f64, m: f64| if a > 0.0 { a * (a / m).log2() } else { 0.0 };
    let divergence: f64 = p
        .iter()
        .zip(q)
        .map(|(a, b)| {
            let (a, b) = (a / pt, b / qt);
            let m = (a + b) / 2.0;
            0.5 * kl(a, m) + 0.5 * kl(b, m)
        })
        .sum();
    divergence.max(0.0).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::SplitMix64;

    fn uniform(n: usize, shift: f64, seed: u64) -> Vec<f64> {
        let mut rng = SplitMix64::new(seed);
        (0..n).map(|_| rng.next_f64() + shift).collect()
    }

    #[test]
    fn same_distribution_scores_low_and_a_shift_scores_high() {
        let reference = uniform(2000, 0.0, 1);
        let same = uniform(2000, 0.0, 2);
        let shifted = uniform(2000, 0.3, 3);
        let ks_same = kolmogorov_smirnov(&reference, &same).expect("ks");
        let ks_shift = kolmogorov_smirnov(&reference, &shifted).expect("ks");
        assert!(ks_same.p_value.is_some_and(|p| p > 0.01), "{ks_same:?}");
        assert!(ks_shift.p_value.is_some_and(|p| p < 1e-10), "{ks_shift:?}");
        assert!((ks_shift.statistic - 0.3).abs() < 0.05);
        assert!(psi(&reference, &same, 10).expect("psi").statistic < 0.05);
        assert!(psi(&reference, &shifted, 10).expect("psi").statistic > 0.25);
        let js_same = jensen_shannon(&reference, &same, 10).expect("js").statistic;
        let js_shift = jensen_shannon(&reference, &shifted, 10)
            .expect("js")
            .statistic;
        assert!(
            js_same < 0.1 && js_shift > 0.3 && js_shift <= 1.0,
            "{js_same} {js_shift}"
        );
    }

    #[test]
    fn chi_square_compares_category_frequencies() {
        let reference: Vec<&str> = (0..1000)
            .map(|i| if i % 2 == 0 { "a" } else { "b" })
            .collect();
        let same: Vec<&str> = (0..1000)
            .map(|i| if i % 2 == 1 { "a" } else { "b" })
            .collect();
        let skewed: Vec<&str> = (0..1000)
            .map(|i| if i % 4 == 0 { "a" } else { "b" })
            .collect();
        assert!(chi_square(&reference, &same)
            .expect("chi2")
            .p_value
            .is_some_and(|p| p > 0.99));
        let result = chi_square(&reference, &skewed).expect("chi2");
        // 2x2 table: statistic = 2000 * (500*750 - 500*250)^2 / (1000*1000*750*1250)
        assert!((result.statistic - 133.333).abs() < 0.01, "{result:?}");
        assert!(result.p_value.is_some_and(|p| p < 1e-20));
    }

    #[test]
    fn identical_histograms_have_zero_distance_and_disjoint_ones_one() {
        assert_eq!(jensen_shannon_of_counts(&[1.0, 2.0], &[2.0, 4.0]), 0.0);
        assert!((jensen_shannon_of_counts(&[1.0, 0.0], &[0.0, 1.0]) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn empty_samples_are_refused() {
        assert!(kolmogorov_smirnov(&[], &[1.0]).is_err());
        assert!(chi_square(&["a"], &[]).is_err());
    }
}
