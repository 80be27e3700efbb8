//! `[[model]]` in `PIPELINE.toml`: a served model, its features, where its
//! labels come from, its retraining policies and its promotion gate.
//!
//! ```toml
//! [[model]]
//! name = "fraud"
//! features = ["amount", "hour", "card_present"]   # numbers or booleans of each event
//! classes = 2
//! learner = "gbt"
//! online_publish_every = 500       # optional: learn between retrains, republished every 500 labels
//! labels = "fraud-labels"          # optional: a stream of {"request_id": ..., "label": N}
//! bootstrap = { table = "history", label = "is_fraud" }   # trains v1 when the registry is empty
//! retrain = { on_drift = true, every_labels = 0, every_seconds = 0, accuracy_floor = 0.0, cooldown_seconds = 2 }
//! promotion = { mode = "canary", canary_share = 0.1, min_gain = 0.005 }
//!
//! [model.monitors]                  # optional: what watches the model, and which alarms retrain it
//! concept = { detector = "ddm", drift_threshold = 3.0 }   # adwin (default), ddm, eddm, hddm_a, hddm_w, page_hinkley, kswin
//! data = { test = "ks", threshold = 0.001, window = 2000, every = 1000 }   # psi (default), ks, chi_square, jensen_shannon
//! retrain_on = ["concept", "data"]  # default: ["concept"] (retrain.on_drift)
//! ```
//!
//! Each model gets the streams `NAME-predictions` (every prediction, with its
//! request id) and `NAME-joined` (labelled examples), and the lake table
//! `NAME_joined` that retrains read their training sets from.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::lifecycle::{LifecycleConfig, Promotion};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub name: Spanned<String>,
    /// Fields of each event the model reads (numbers or booleans), in order.
    pub features: Spanned<Vec<String>>,
    #[serde(default = "two")]
    pub classes: usize,
    pub learner: Option<Spanned<String>>,
    /// A stream of labels: `{"request_id": "...", "label": N}` per record.
    pub labels: Option<Spanned<String>>,
    /// Where predictions are logged instead of the embedded stream
    /// `MODEL-predictions`: `kinesis://NAME`.
    pub prediction_log: Option<Spanned<String>>,
    /// Labelled history in the lake to train the first version on.
    pub bootstrap: Option<BootstrapConfig>,
    /// Predictions waiting for a label, at most, and for how long.
    pub label_horizon: Option<usize>,
    pub label_horizon_seconds: Option<u64>,
    /// Online learning between retrains: the champion learns from every
    /// joined example and is republished every this many (absent: off).
    pub online_publish_every: Option<usize>,
    #[serde(default)]
    pub retrain: RetrainConfig,
    #[serde(default)]
    pub promotion: PromotionConfig,
    #[serde(default)]
    pub monitors: MonitorsConfig,
    /// The registry mirrored to SageMaker (aws feature).
    pub sagemaker: Option<SagemakerConfig>,
}

/// SageMaker beside the registry: every version becomes a model package
/// (approved when it is champion, rejected when refused), an endpoint
/// follows the champion, and retrains can run as training jobs.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SagemakerConfig {
    /// The image with the driftline binary (the repository's Dockerfile),
    /// for training jobs and endpoints.
    pub image: Spanned<String>,
    /// The execution role SageMaker assumes (default: the one the template
    /// made for the model, which its `driftline run` service is given in
    /// `DRIFTLINE_SAGEMAKER_ROLE_MODEL`).
    pub role_arn: Option<Spanned<String>>,
    /// The model package group (default: the model's name).
    pub model_package_group: Option<Spanned<String>>,
    /// An endpoint serving the champion: created, then updated on each promotion.
    pub endpoint: Option<Spanned<String>>,
    #[serde(default = "default_instance_type")]
    pub instance_type: String,
    /// Retrains run as SageMaker training jobs instead of in this process.
    #[serde(default)]
    pub train: bool,
    #[serde(default = "default_instance_type")]
    pub training_instance_type: String,
    /// A training job's time limit.
    #[serde(default = "default_max_runtime")]
    pub max_runtime_seconds: u64,
}

fn default_instance_type() -> String {
    "ml.m5.large".into()
}

fn default_max_runtime() -> u64 {
    3600
}

impl SagemakerConfig {
    pub fn model_package_group<'a>(&'a self, model: &'a str) -> &'a str {
        self.model_package_group
            .as_ref()
            .map_or(model, |g| g.get_ref().as_str())
    }

    /// The environment variable that names the execution role when the
    /// pipeline does not: `DRIFTLINE_SAGEMAKER_ROLE_` and the model's name in
    /// capitals, other characters as `_`.
    pub fn role_variable(model: &str) -> String {
        let name: String = model
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        format!("DRIFTLINE_SAGEMAKER_ROLE_{name}")
    }

    /// The execution role: the pipeline's `role_arn`, else `role_variable`'s value.
    pub fn role(&self, model: &str) -> Result<String, String> {
        if let Some(role) = &self.role_arn {
            return Ok(role.get_ref().clone());
        }
        let variable = Self::role_variable(model);
        std::env::var(&variable).map_err(|_| {
            format!("model {model} uses SageMaker: set sagemaker.role_arn, or {variable} (the template's driftline run service has it)")
        })
    }

    fn check(&self, model: &str) -> Result<(), (usize, String)> {
        if let Some(role) = &self.role_arn {
            if !(role.get_ref().starts_with("arn:aws") && role.get_ref().contains(":role/")) {
                return Err((
                    role.span().start,
                    format!(
                        "role_arn must be an IAM role's ARN (arn:aws:iam::ACCOUNT:role/NAME), not {:?}",
                        role.get_ref()
                    ),
                ));
            }
        }
        if self.image.get_ref().trim().is_empty() {
            return Err((
                self.image.span().start,
                "image must name a container image".into(),
            ));
        }
        // SageMaker names: 1-63 of a-z, A-Z, 0-9 and -, not starting with -.
        let names = [(
            self.model_package_group.as_ref().map(|g| g.span().start),
            self.model_package_group(model),
        )];
        let endpoint = self
            .endpoint
            .as_ref()
            .map(|e| (Some(e.span().start), e.get_ref().as_str()));
        for (at, name) in names.into_iter().chain(endpoint) {
            // An endpoint's models and configurations are named after it:
            // `ENDPOINT-vN-config` must fit in 63 too.
            let longest = if Some(name) == self.endpoint.as_ref().map(|e| e.get_ref().as_str()) {
                40
            } else {
                63
            };
            let ok = !name.is_empty()
                && name.len() <= longest
                && !name.starts_with('-')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
            if !ok {
                return Err((
                    at.unwrap_or(0),
                    format!("{name:?} is not a SageMaker name (1-63 of a-z, A-Z, 0-9 and -; an endpoint 1-40, as its configurations add to it)"),
                ));
            }
        }
        Ok(())
    }
}

fn two() -> usize {
    2
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapConfig {
    /// A lake table holding the features as columns and a label column.
    pub table: Spanned<String>,
    pub label: String,
}

/// When a retrain starts. Every field may be left out for its default.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrainConfig {
    /// On a concept-drift alarm (the concept monitor on the error stream); default true.
    pub on_drift: Option<bool>,
    /// Every this many labels (0: never).
    pub every_labels: Option<u64>,
    /// On a schedule, every this many seconds (0: never).
    pub every_seconds: Option<u64>,
    /// When the live accuracy falls under this (0: never).
    pub accuracy_floor: Option<f64>,
    /// Least time between two retrains started by drift or the floor.
    pub cooldown_seconds: Option<f64>,
    /// Newest joined examples a retrain reads, at most, and at least.
    pub window: Option<usize>,
    pub min_train: Option<usize>,
    /// ... and only those joined in the last this many seconds.
    pub window_seconds: Option<u64>,
    /// Share of the newest examples held out to compare challenger and champion.
    pub holdout_fraction: Option<f64>,
}

/// The monitors that watch a model, and which of their alarms retrain it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorsConfig {
    /// Concept drift on the champion's error stream: the detector by name,
    /// with any of its parameters.
    pub concept: Option<Spanned<ConceptConfig>>,
    /// Data drift of each feature and of the prediction against the
    /// champion's training reference.
    pub data: Option<Spanned<DataConfig>>,
    /// Which alarms retrain the model: "concept", "data".
    pub retrain_on: Option<Spanned<Vec<String>>>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct ConceptConfig {
    pub detector: String,
    /// The detector's parameters by name (`delta`, `drift_threshold`, ...).
    #[serde(flatten)]
    pub params: std::collections::BTreeMap<String, f64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// "psi" (default), "ks", "chi_square" or "jensen_shannon".
    pub test: Option<String>,
    /// PSI and Jensen-Shannon alarm above it; KS and chi-square when their
    /// p-value is below it.
    pub threshold: Option<f64>,
    /// Recent predictions compared, and every how many predictions.
    pub window: Option<usize>,
    pub every: Option<usize>,
}

/// The gate and the way to traffic. Every field may be left out for its default.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromotionConfig {
    /// "direct", "shadow" or "canary".
    pub mode: Option<Spanned<String>>,
    pub canary_share: Option<f64>,
    pub min_gain: Option<f64>,
    pub max_latency_us: Option<f64>,
    pub max_size_bytes: Option<usize>,
    /// Labels a shadow or canary trial runs for.
    pub trial_labels: Option<usize>,
    /// Labels after a promotion during which the predecessor is still scored,
    /// and how much better it must do to come back.
    pub rollback_after: Option<usize>,
    pub rollback_margin: Option<f64>,
}

impl ModelConfig {
    pub fn name(&self) -> &str {
        self.name.get_ref()
    }

    pub fn features(&self) -> &[String] {
        self.features.get_ref()
    }

    /// The stream every prediction is logged to.
    pub fn predictions_stream(&self) -> String {
        format!("{}-predictions", self.name())
    }

    /// The Kinesis stream predictions are logged to, when not the embedded one.
    pub fn prediction_log_stream(&self) -> Option<&str> {
        self.prediction_log
            .as_ref()
            .and_then(|url| url.get_ref().strip_prefix(super::KINESIS_SCHEME))
    }

    /// The stream labelled examples are logged to, and their lake table.
    pub fn joined_stream(&self) -> String {
        format!("{}-joined", self.name())
    }

    pub fn joined_table(&self) -> String {
        format!("{}_joined", self.name())
    }

    /// The consumers (mapping names) reading the joined and label streams.
    pub fn joined_consumer(&self) -> String {
        format!("{}-joined-examples", self.name())
    }

    pub fn labels_consumer(&self) -> String {
        format!("{}-labels", self.name())
    }

    /// The lifecycle this declaration asks for; unset keys keep the defaults.
    pub fn lifecycle(&self) -> Result<LifecycleConfig, (usize, String)> {
        let mut config = LifecycleConfig::default();
        if let Some(learner) = &self.learner {
            driftline_ml::learn::classifier_by_name(learner.get_ref(), 1, self.classes, 0)
                .map_err(|e| (learner.span().start, format!("learner: {e}")))?;
            config.learner = learner.get_ref().clone();
        }
        let r = &self.retrain;
        config.retrain_on_drift = r.on_drift.unwrap_or(config.retrain_on_drift);
        config.retrain_every_labels = r.every_labels.unwrap_or(config.retrain_every_labels);
        if let Some(seconds) = r.every_seconds.filter(|s| *s > 0) {
            config.retrain_every = Some(Duration::from_secs(seconds));
        }
        config.accuracy_floor = r.accuracy_floor.unwrap_or(config.accuracy_floor);
        if let Some(seconds) = r.cooldown_seconds {
            config.cooldown = Duration::try_from_secs_f64(seconds).map_err(|_| {
                (
                    self.name.span().start,
                    format!("retrain.cooldown_seconds must be a duration, not {seconds}"),
                )
            })?;
        }
        config.window = r.window.unwrap_or(config.window);
        config.min_train = r.min_train.unwrap_or(config.min_train);
        config.window_time = r.window_seconds.map(Duration::from_secs);
        config.holdout_fraction = r.holdout_fraction.unwrap_or(config.holdout_fraction);
        let p = &self.promotion;
        config.promotion = match p
            .mode
            .as_ref()
            .map(|m| (m.get_ref().as_str(), m.span().start))
        {
            None | Some(("direct", _)) => Promotion::Direct,
            Some(("shadow", _)) => Promotion::Shadow,
            Some(("canary", _)) => Promotion::Canary(p.canary_share.unwrap_or(0.1)),
            Some((other, at)) => {
                return Err((
                    at,
                    format!(
                    "promotion.mode must be \"direct\", \"shadow\" or \"canary\", not {other:?}"
                ),
                ))
            }
        };
        config.min_gain = p.min_gain.unwrap_or(config.min_gain);
        config.max_latency_us = p.max_latency_us.unwrap_or(config.max_latency_us);
        config.max_size_bytes = p.max_size_bytes.unwrap_or(config.max_size_bytes);
        config.trial_labels = p.trial_labels.unwrap_or(config.trial_labels);
        config.rollback_after = p.rollback_after.unwrap_or(config.rollback_after);
        config.rollback_margin = p.rollback_margin.unwrap_or(config.rollback_margin);
        config.label_horizon = self.label_horizon.unwrap_or(config.label_horizon);
        config.online_publish_every = self.online_publish_every;
        if let Some(seconds) = self.label_horizon_seconds {
            config.label_horizon_ms = (seconds as i64).saturating_mul(1000);
        }
        self.monitors
            .apply(&mut config, self.retrain.on_drift.is_some())?;
        let at = self.name.span().start;
        let check = |ok: bool, message: String| if ok { Ok(()) } else { Err((at, message)) };
        check(
            self.classes >= 2,
            format!("classes must be at least 2, not {}", self.classes),
        )?;
        check(
            config.holdout_fraction > 0.0 && config.holdout_fraction < 1.0,
            format!(
                "retrain.holdout_fraction must be between 0 and 1, not {}",
                config.holdout_fraction
            ),
        )?;
        check(
            config.window >= config.min_train && config.min_train >= 2,
            format!(
            "retrain.window ({}) must be at least retrain.min_train ({}), which must be at least 2",
            config.window, config.min_train
        ),
        )?;
        check(
            (0.0..1.0).contains(&config.accuracy_floor),
            format!(
                "retrain.accuracy_floor must be in 0..1, not {}",
                config.accuracy_floor
            ),
        )?;
        if let Promotion::Canary(share) = config.promotion {
            check(
                share > 0.0 && share < 1.0,
                format!("promotion.canary_share must be between 0 and 1, not {share}"),
            )?;
        }
        check(
            config.label_horizon > 0,
            "label_horizon must be at least 1".into(),
        )?;
        check(
            config.online_publish_every != Some(0),
            "online_publish_every must be at least 1".into(),
        )?;
        Ok(config)
    }

    /// Checks what needs no other section: names, features, the lifecycle.
    pub fn check(&self) -> Result<(), (usize, String)> {
        if let Some(sagemaker) = &self.sagemaker {
            sagemaker.check(self.name())?;
        }
        let name = self.name();
        if name.is_empty()
            || name.len() > 100
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err((
                self.name.span().start,
                format!("model name {name:?} must be 1-100 letters, digits, '-' or '_'"),
            ));
        }
        let features = self.features();
        if features.is_empty() {
            return Err((
                self.features.span().start,
                "a model needs at least one feature".into(),
            ));
        }
        crate::training::joined_schema(features)
            .map_err(|e| (self.features.span().start, e.to_string()))?;
        self.lifecycle().map(|_| ())
    }
}

impl MonitorsConfig {
    /// Sets the lifecycle's monitors; errors carry the offset of what is wrong.
    fn apply(
        &self,
        config: &mut LifecycleConfig,
        on_drift_given: bool,
    ) -> Result<(), (usize, String)> {
        use driftline_ml::drift::monitor::{ConceptSpec, DataTest};
        if let Some(concept) = &self.concept {
            let spec = ConceptSpec {
                detector: concept.get_ref().detector.clone(),
                params: concept.get_ref().params.clone(),
            };
            spec.build().map_err(|e| {
                (
                    concept.span().start,
                    format!("monitors.concept: {}: {}", e.what, e.detail),
                )
            })?;
            config.concept = spec;
        }
        if let Some(data) = &self.data {
            let at = data.span().start;
            let data = data.get_ref();
            if let Some(test) = &data.test {
                config.data_test = DataTest::parse(test)
                    .map_err(|e| (at, format!("monitors.data: {}", e.detail)))?;
            }
            config.data_threshold = data
                .threshold
                .unwrap_or(config.data_test.default_threshold());
            if config.data_threshold.is_nan() || config.data_threshold <= 0.0 {
                return Err((at, "monitors.data.threshold must be positive".into()));
            }
            config.data_window = data.window.unwrap_or(config.data_window);
            config.data_check_every = data.every.unwrap_or(config.data_check_every);
            if config.data_window < 2 || config.data_check_every == 0 {
                return Err((
                    at,
                    "monitors.data: window must be at least 2 and every at least 1".into(),
                ));
            }
        }
        if let Some(retrain_on) = &self.retrain_on {
            let at = retrain_on.span().start;
            if on_drift_given {
                return Err((
                    at,
                    "monitors.retrain_on and retrain.on_drift both say whether drift retrains: keep one".into(),
                ));
            }
            config.retrain_on_drift = false;
            config.retrain_on_data = false;
            for alarm in retrain_on.get_ref() {
                match alarm.as_str() {
                    "concept" => config.retrain_on_drift = true,
                    "data" => config.retrain_on_data = true,
                    other => {
                        return Err((
                            at,
                            format!("monitors.retrain_on: unknown alarm {other:?} (known: \"concept\", \"data\")"),
                        ))
                    }
                }
            }
        }
        Ok(())
    }
}
