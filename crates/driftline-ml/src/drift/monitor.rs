//! Monitors as a model declares them: the concept-drift detector that watches
//! its error stream, by name and with its parameters; the data-drift test that
//! compares recent inputs with the champion's training reference; and which
//! of their alarms retrain the model. Plain code, shared by serving and
//! backtest.

use std::collections::BTreeMap;

use super::data::{chi_square, jensen_shannon, kolmogorov_smirnov, psi};
use super::{Adwin, Ddm, DriftDetector, Eddm, HddmA, HddmW, Kswin, PageHinkley};
use crate::ParamError;

/// A detector's parameters with their defaults, in the order its constructor takes them.
fn defaults(detector: &str) -> Option<&'static [(&'static str, f64)]> {
    Some(match detector {
        "adwin" => &[
            ("delta", 0.002),
            ("clock", 32.0),
            ("max_buckets", 5.0),
            ("min_window_length", 5.0),
            ("grace_period", 10.0),
        ],
        "ddm" => &[
            ("warm_start", 30.0),
            ("warning_threshold", 2.0),
            ("drift_threshold", 3.0),
        ],
        "eddm" => &[("alpha", 0.95), ("beta", 0.9), ("warm_start", 30.0)],
        "hddm_a" => &[("drift_confidence", 0.001), ("warning_confidence", 0.005)],
        "hddm_w" => &[
            ("drift_confidence", 0.001),
            ("warning_confidence", 0.005),
            ("lambda", 0.05),
        ],
        "page_hinkley" => &[
            ("min_instances", 30.0),
            ("delta", 0.005),
            ("threshold", 50.0),
            ("alpha", 1.0 - 0.0001),
        ],
        "kswin" => &[
            ("alpha", 0.005),
            ("window_size", 100.0),
            ("stat_size", 30.0),
            ("seed", 42.0),
        ],
        _ => return None,
    })
}

/// The names `concept` detectors go by.
pub const DETECTORS: [&str; 7] = [
    "adwin",
    "ddm",
    "eddm",
    "hddm_a",
    "hddm_w",
    "page_hinkley",
    "kswin",
];

/// The concept-drift detector a model declares: its name and the parameters
/// it sets (the others keep their defaults).
#[derive(Clone, Debug, PartialEq)]
pub struct ConceptSpec {
    pub detector: String,
    pub params: BTreeMap<String, f64>,
}

impl Default for ConceptSpec {
    fn default() -> Self {
        ConceptSpec {
            detector: "adwin".into(),
            params: BTreeMap::new(),
        }
    }
}

impl ConceptSpec {
    pub fn build(&self) -> Result<Box<dyn DriftDetector>, ParamError> {
        detector_with(&self.detector, &self.params)
    }

    /// The detector's first parameter (its sensitivity: ADWIN's delta, DDM's
    /// warm start, ...), as an alarm reports it.
    pub fn sensitivity(&self) -> f64 {
        let name = self.detector.to_ascii_lowercase().replace('-', "_");
        defaults(&name)
            .and_then(|known| known.first())
            .map_or(f64::NAN, |(n, default)| {
                self.params.get(*n).copied().unwrap_or(*default)
            })
    }
}

/// A concept-drift detector by name with its parameters (those left out keep
/// their defaults). Unknown names and parameters are errors naming the known ones.
pub fn detector_with(
    name: &str,
    params: &BTreeMap<String, f64>,
) -> Result<Box<dyn DriftDetector>, ParamError> {
    let name = name.to_ascii_lowercase().replace('-', "_");
    let known = defaults(&name).ok_or_else(|| {
        ParamError::new(
            "detector",
            format!("unknown detector {name:?}; known: {}", DETECTORS.join(", ")),
        )
    })?;
    if let Some(unknown) = params.keys().find(|k| !known.iter().any(|(n, _)| n == k)) {
        let names: Vec<&str> = known.iter().map(|(n, _)| *n).collect();
        return Err(ParamError::new(
            "detector parameter",
            format!(
                "{name} has no parameter {unknown:?}; it takes {}",
                names.join(", ")
            ),
        ));
    }
    let p: Vec<f64> = known
        .iter()
        .map(|(n, default)| params.get(*n).copied().unwrap_or(*default))
        .collect();
    let count = |value: f64, what: &str| -> Result<u64, ParamError> {
        if value >= 0.0 && value.fract() == 0.0 && value <= u32::MAX as f64 {
            Ok(value as u64)
        } else {
            Err(ParamError::new(
                "detector parameter",
                format!("{name} {what} must be a whole number, not {value}"),
            ))
        }
    };
    Ok(match name.as_str() {
        "adwin" => Box::new(Adwin::new(
            p[0],
            count(p[1], "clock")? as u32,
            count(p[2], "max_buckets")? as usize,
            count(p[3], "min_window_length")? as u32,
            count(p[4], "grace_period")? as u32,
        )?),
        "ddm" => Box::new(Ddm::new(count(p[0], "warm_start")?, p[1], p[2])?),
        "eddm" => Box::new(Eddm::new(p[0], p[1], count(p[2], "warm_start")?)?),
        "hddm_a" => Box::new(HddmA::new(p[0], p[1])?),
        "hddm_w" => Box::new(HddmW::new(p[0], p[1], p[2])?),
        "page_hinkley" => Box::new(PageHinkley::new(
            count(p[0], "min_instances")?,
            p[1],
            p[2],
            p[3],
            super::page_hinkley::Direction::Both,
        )?),
        _ => Box::new(Kswin::new(
            p[0],
            count(p[1], "window_size")? as usize,
            count(p[2], "stat_size")? as usize,
            count(p[3], "seed")?,
        )?),
    })
}

/// The test a data monitor runs on each feature and on the prediction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataTest {
    /// Population stability index; alarms when it is above the threshold.
    Psi,
    /// Two-sample Kolmogorov-Smirnov; alarms when its p-value is below the threshold.
    Ks,
    /// Chi-square on the values as categories; alarms when its p-value is below the threshold.
    ChiSquare,
    /// Jensen-Shannon distance (0..=1); alarms when it is above the threshold.
    JensenShannon,
}

impl DataTest {
    pub const NAMES: [&'static str; 4] = ["psi", "ks", "chi_square", "jensen_shannon"];

    pub fn parse(text: &str) -> Result<DataTest, ParamError> {
        Ok(match text.to_ascii_lowercase().replace('-', "_").as_str() {
            "psi" => DataTest::Psi,
            "ks" | "kolmogorov_smirnov" => DataTest::Ks,
            "chi_square" | "chi2" => DataTest::ChiSquare,
            "jensen_shannon" | "js" => DataTest::JensenShannon,
            other => {
                return Err(ParamError::new(
                    "data drift test",
                    format!(
                        "unknown test {other:?}; known: {}",
                        DataTest::NAMES.join(", ")
                    ),
                ))
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            DataTest::Psi => "psi",
            DataTest::Ks => "ks",
            DataTest::ChiSquare => "chi_square",
            DataTest::JensenShannon => "jensen_shannon",
        }
    }

    /// The threshold a test alarms at unless the model says otherwise.
    pub fn default_threshold(self) -> f64 {
        match self {
            DataTest::Psi => 0.25,
            DataTest::Ks | DataTest::ChiSquare => 0.001,
            DataTest::JensenShannon => 0.2,
        }
    }

    /// Whether a p-value (below the threshold) rather than the statistic
    /// (above it) decides.
    pub fn by_p_value(self) -> bool {
        matches!(self, DataTest::Ks | DataTest::ChiSquare)
    }

    /// The value compared with the threshold, and whether it alarms.
    pub fn judge(
        self,
        reference: &[f64],
        current: &[f64],
        threshold: f64,
    ) -> Result<(f64, bool), ParamError> {
        let result = match self {
            DataTest::Psi => psi(reference, current, 10)?,
            DataTest::Ks => kolmogorov_smirnov(reference, current)?,
            DataTest::JensenShannon => jensen_shannon(reference, current, 10)?,
            DataTest::ChiSquare => {
                let as_text = |values: &[f64]| -> Vec<String> {
                    values.iter().map(|v| v.to_string()).collect()
                };
                let (r, c) = (as_text(reference), as_text(current));
                let r: Vec<&str> = r.iter().map(String::as_str).collect();
                let c: Vec<&str> = c.iter().map(String::as_str).collect();
                chi_square(&r, &c)?
            }
        };
        Ok(if self.by_p_value() {
            let p = result.p_value.unwrap_or(1.0);
            (p, p < threshold)
        } else {
            (result.statistic, result.statistic > threshold)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::DriftState;

    #[test]
    fn every_detector_builds_by_name_with_and_without_parameters() {
        for name in DETECTORS {
            let detector = detector_with(name, &BTreeMap::new()).expect("defaults");
            assert_eq!(detector.name().replace('-', "_"), name.replace('-', "_"));
        }
        let params = BTreeMap::from([("delta".to_string(), 0.0001)]);
        assert!(detector_with("adwin", &params).is_ok());
        let params = BTreeMap::from([("drift_threshold".to_string(), 2.5)]);
        assert!(detector_with("DDM", &params).is_ok());
    }

    #[test]
    fn a_spec_reports_its_sensitivity() {
        assert_eq!(ConceptSpec::default().sensitivity(), 0.002);
        let spec = ConceptSpec {
            detector: "adwin".into(),
            params: BTreeMap::from([("delta".to_string(), 0.01)]),
        };
        assert_eq!(spec.sensitivity(), 0.01);
        assert!(spec.build().is_ok());
    }

    #[test]
    fn unknown_names_and_parameters_say_what_is_known() {
        let error = detector_with("adwn", &BTreeMap::new())
            .err()
            .expect("refused");
        assert!(error.detail.contains("known: adwin"), "{}", error.detail);
        let params = BTreeMap::from([("delt".to_string(), 0.1)]);
        let error = detector_with("adwin", &params).err().expect("refused");
        assert!(
            error.detail.contains("no parameter \"delt\""),
            "{}",
            error.detail
        );
        assert!(error.detail.contains("delta, clock"), "{}", error.detail);
        let params = BTreeMap::from([("delta".to_string(), 2.0)]);
        assert!(detector_with("adwin", &params).is_err());
        let params = BTreeMap::from([("warm_start".to_string(), 2.5)]);
        assert!(detector_with("ddm", &params).is_err());
        assert!(DataTest::parse("wasserstein").is_err());
    }

    #[test]
    fn a_declared_detector_detects_a_change_in_the_error_rate() {
        let params = BTreeMap::from([("warm_start".to_string(), 100.0)]);
        let mut ddm = detector_with("ddm", &params).expect("ddm");
        let errors = crate::stats::bernoulli_stream(4000, 2000, 0.05, 0.5, 3);
        let detections: Vec<usize> = errors
            .iter()
            .enumerate()
            .filter(|(_, e)| ddm.update(**e) == DriftState::Drift)
            .map(|(i, _)| i)
            .collect();
        assert!(
            detections.iter().any(|i| (2000..2300).contains(i)),
            "{detections:?}"
        );
    }

    #[test]
    fn each_test_alarms_on_a_shift_and_not_on_the_same_distribution() {
        let reference: Vec<f64> = (0..2000).map(|i| (i % 100) as f64).collect();
        let same: Vec<f64> = (0..1000).map(|i| ((i * 7) % 100) as f64).collect();
        let shifted: Vec<f64> = same.iter().map(|v| v + 40.0).collect();
        for name in DataTest::NAMES {
            let test = DataTest::parse(name).expect("test");
            let threshold = test.default_threshold();
            let (_, alarm) = test.judge(&reference, &same, threshold).expect("same");
            assert!(!alarm, "{name} alarmed on the same distribution");
            let (_, alarm) = test
                .judge(&reference, &shifted, threshold)
                .expect("shifted");
            assert!(alarm, "{name} missed a shift");
        }
    }
}
