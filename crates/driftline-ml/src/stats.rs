//! Statistical functions the detectors need: the two-sample Kolmogorov-Smirnov
//! statistic and its p-value, the chi-square survival function, and a small
//! seeded generator. Written here because the crates that have them (statrs,
//! rand_distr) would bring far more than these few functions.

/// The two-sample Kolmogorov-Smirnov statistic: the largest distance between
/// the two empirical distribution functions. Both inputs must be sorted.
pub fn ks_statistic_sorted(a: &[f64], b: &[f64]) -> f64 {
    let (n, m) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j, mut d) = (0usize, 0usize, 0.0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / n - j as f64 / m).abs());
    }
    d
}

/// The p-value of a two-sample KS statistic `d` for samples of sizes `n` and
/// `m`, from the asymptotic Kolmogorov distribution with Stephens' correction
/// for small samples.
pub fn ks_p_value(d: f64, n: usize, m: usize) -> f64 {
    if n == 0 || m == 0 {
        return 1.0;
    }
    let en = ((n * m) as f64 / (n + m) as f64).sqrt();
    kolmogorov_survival((en + 0.12 + 0.11 / en) * d)
}

/// P(K > x) for the Kolmogorov distribution.
pub fn kolmogorov_survival(x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    if x < 1.18 {
        // Small x: the theta-function form converges fast.
        let y = (-std::f64::consts::PI.powi(2) / (8.0 * x * x)).exp();
        let sum: f64 = (0..20).map(|k| y.powi((2 * k + 1) * (2 * k + 1))).sum();
        let cdf = (2.0 * std::f64::consts::PI).sqrt() / x * sum;
        return (1.0 - cdf).clamp(0.0, 1.0);
    }
    let mut sum = 0.0;
    for k in 1..=100 {
        let term =
            2.0 * if k % 2 == 1 { 1.0 } else { -1.0 } * (-2.0 * (k * k) as f64 * x * x).exp();
        sum += term;
        if term.abs() < 1e-16 {
            break;
        }
    }
    sum.clamp(0.0, 1.0)
}

/// P(X > x) for a chi-square variable with `dof` degrees of freedom.
pub fn chi_square_survival(x: f64, dof: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    regularized_gamma_q(dof / 2.0, x / 2.0)
}

/// Q(a, x), the regularised upper incomplete gamma function: a series for
/// x < a + 1, a continued fraction otherwise (Numerical Recipes, 6.2).
pub fn regularized_gamma_q(a: f64, x: f64) -> f64 {
    if x < a + 1.0 {
        let mut term = 1.0 / a;
        let mut sum = term;
        let mut ap = a;
        for _ in 0..1000 {
            ap += 1.0;
            term *= x / ap;
            sum += term;
            if term.abs() < sum.abs() * 1e-15 {
                break;
            }
        }
        1.0 - sum * (-x + a * x.ln() - ln_gamma(a)).exp()
    } else {
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..1000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < 1e-15 {
                break;
            }
        }
        (-x + a * x.ln() - ln_gamma(a)).exp() * h
    }
}

/// ln Γ(x) by the Lanczos approximation (g = 7, n = 9).
pub fn ln_gamma(x: f64) -> f64 {
    const COEFFICIENTS: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = COEFFICIENTS[0];
    for (i, c) in COEFFICIENTS.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    let t = x + 7.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

/// SplitMix64: small, seeded, reproducible.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_f64() * n as f64) as usize % n.max(1)
    }

    /// A Poisson draw with mean `lambda` (Knuth's method; fine for small lambda).
    pub fn poisson(&mut self, lambda: f64) -> u32 {
        let limit = (-lambda).exp();
        let mut product = self.next_f64();
        let mut k = 0;
        while product > limit && k < 1000 {
            product *= self.next_f64();
            k += 1;
        }
        k
    }
}

/// A 0/1 stream whose rate changes from `p_before` to `p_after` at
/// `change_at`, from SplitMix64 (the recipe of the peers' detector benchmark).
pub fn bernoulli_stream(
    n: usize,
    change_at: usize,
    p_before: f64,
    p_after: f64,
    seed: u64,
) -> Vec<f64> {
    let mut rng = SplitMix64::new(seed);
    (0..n)
        .map(|i| {
            let p = if i < change_at { p_before } else { p_after };
            f64::from(u8::from(rng.next_f64() < p))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chi_square_survival_matches_tables() {
        // chi2.sf(3.841458820694124, 1) = 0.05; chi2.sf(18.307, 10) ~ 0.05
        assert!((chi_square_survival(3.841_458_820_694_124, 1.0) - 0.05).abs() < 1e-9);
        assert!((chi_square_survival(18.307_038, 10.0) - 0.05).abs() < 1e-6);
        assert!((chi_square_survival(2.0, 2.0) - (-1.0f64).exp()).abs() < 1e-12);
    }

    #[test]
    fn ln_gamma_matches_factorials() {
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-12);
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-12);
    }

    #[test]
    fn kolmogorov_survival_matches_known_values() {
        // P(K > 1.3581) = 0.05, P(K > 1.6276) = 0.01
        assert!((kolmogorov_survival(1.358_1) - 0.05).abs() < 1e-4);
        assert!((kolmogorov_survival(1.627_6) - 0.01).abs() < 1e-4);
        assert!((kolmogorov_survival(1.0) - 0.270).abs() < 1e-3);
        assert!((kolmogorov_survival(1.17) - kolmogorov_survival(1.19)).abs() < 0.02);
    }

    #[test]
    fn ks_statistic_counts_the_largest_gap() {
        assert_eq!(ks_statistic_sorted(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]), 0.0);
        assert_eq!(ks_statistic_sorted(&[1.0, 2.0], &[3.0, 4.0]), 1.0);
        assert!(
            (ks_statistic_sorted(&[1.0, 2.0, 3.0, 4.0], &[3.0, 4.0, 5.0, 6.0]) - 0.5).abs() < 1e-12
        );
    }
}
