//! The SageMaker container contract, so that the one binary is also the
//! training image and the inference image:
//!
//! - `driftline sagemaker train` reads `ROOT/input/config/hyperparameters.json`
//!   (all values strings, as SageMaker writes them: `target` (required),
//!   `learner`, `seed`, `holdout_fraction`, `classes` (at least)) and the training channel
//!   `ROOT/input/data/train/` (CSV, gzipped or not, or Parquet files), trains,
//!   and writes `ROOT/model/model.bin` (the artifact with its encoder) and
//!   `ROOT/model/model.json` (classes, features, metrics). On failure it writes
//!   the reason to `ROOT/output/failure` and exits non-zero. Metrics go to
//!   stdout as `NAME=VALUE` lines for SageMaker's metric definitions.
//! - `driftline sagemaker serve` loads `ROOT/model/` and answers `GET /ping` and
//!   `POST /invocations` on port 8080.
//!
//! ROOT is `/opt/ml` unless `--root` says otherwise.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use driftline_lake::{Lake, Registry, Status, TrainingData, VersionRecord};
use driftline_log::LogConfig;
use driftline_ml::learn::{artifact, classifier_by_name};
use driftline_pipeline::lifecycle::{LifecycleConfig, ModelService};
use serde_json::{json, Value};

#[derive(clap::Subcommand)]
pub enum SagemakerCommand {
    /// Train on the `train` channel and write the model (a SageMaker training job).
    Train {
        #[arg(long, default_value = "/opt/ml")]
        root: PathBuf,
    },
    /// Serve the trained model on /ping and /invocations (a SageMaker endpoint).
    Serve {
        #[arg(long, default_value = "/opt/ml")]
        root: PathBuf,
        /// SageMaker's contract is port 8080 on every interface; beyond
        /// loopback it needs --auth, or --insecure-no-auth where SageMaker's
        /// own IAM-signed InvokeEndpoint is the guard (the image's entrypoint).
        #[arg(long, default_value = "0.0.0.0:8080")]
        listen: SocketAddr,
        #[command(flatten)]
        security: crate::security::SecurityArgs,
    },
}

pub fn run(command: SagemakerCommand) -> anyhow::Result<()> {
    match command {
        SagemakerCommand::Train { root } => {
            let result = train(&root);
            if let Err(error) = &result {
                // SageMaker shows this file's text as the job's FailureReason.
                let output = root.join("output");
                let _ = std::fs::create_dir_all(&output);
                let _ = std::fs::write(output.join("failure"), format!("{error:#}"));
            }
            result
        }
        SagemakerCommand::Serve {
            root,
            listen,
            security,
        } => serve(&root, listen, &security),
    }
}

/// A hyperparameter: SageMaker passes every value as a string.
fn hyperparameter<'a>(parameters: &'a Value, name: &str) -> Option<&'a str> {
    parameters.get(name).and_then(Value::as_str)
}

/// The training channel as one file: a single file as it is; several CSV
/// files joined into one under the first one's header.
fn channel_file(channel: &Path, scratch: &Path) -> anyhow::Result<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(channel)
        .with_context(|| format!("the training channel {} cannot be read", channel.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    match files.as_slice() {
        [] => bail!("the training channel {} holds no files", channel.display()),
        [one] => Ok(one.clone()),
        many => {
            let csv = |p: &PathBuf| p.extension().is_some_and(|e| e == "csv");
            if !many.iter().all(csv) {
                bail!(
                    "the training channel holds {} files: several are joined only when all are plain .csv; put one Parquet or gzipped file alone",
                    many.len()
                );
            }
            let joined = scratch.join("train.csv");
            let mut out = std::io::BufWriter::new(std::fs::File::create(&joined)?);
            let mut header: Option<String> = None;
            for file in many {
                let text = std::fs::read_to_string(file)
                    .with_context(|| format!("{} is not UTF-8 text", file.display()))?;
                let mut lines = text.lines();
                let first = lines.next().unwrap_or_default().to_string();
                match &header {
                    None => {
                        writeln!(out, "{first}")?;
                        header = Some(first);
                    }
                    Some(h) if *h != first => bail!(
                        "{} has the header {first:?}, the first file {h:?}",
                        file.display()
                    ),
                    Some(_) => {}
                }
                for line in lines.filter(|l| !l.is_empty()) {
                    writeln!(out, "{line}")?;
                }
            }
            out.flush()?;
            Ok(joined)
        }
    }
}

fn train(root: &Path) -> anyhow::Result<()> {
    let config = root.join("input/config/hyperparameters.json");
    let parameters: Value = match std::fs::read(&config) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not JSON", config.display()))?,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => json!({}),
        Err(error) => return Err(error).context(format!("cannot read {}", config.display())),
    };
    let target = hyperparameter(&parameters, "target")
        .context("the hyperparameter \"target\" (the label column) is required")?;
    let learner = hyperparameter(&parameters, "learner").unwrap_or("gbt");
    let seed: u64 = hyperparameter(&parameters, "seed")
        .map(str::parse)
        .transpose()
        .context("the hyperparameter \"seed\" must be a whole number")?
        .unwrap_or(1);
    let holdout: f64 = hyperparameter(&parameters, "holdout_fraction")
        .map(str::parse)
        .transpose()
        .context("the hyperparameter \"holdout_fraction\" must be a number")?
        .unwrap_or(0.2);
    if !(0.0..1.0).contains(&holdout) {
        bail!("the hyperparameter \"holdout_fraction\" must be in 0..1, not {holdout}");
    }
    let scratch = tempfile::tempdir()?;
    let file = channel_file(&root.join("input/data/train"), scratch.path())?;
    let data = crate::dataset::load(&file, target)?;
    let rows = data.xs.len();
    // At least `classes` classes: a window may lack the highest label.
    let at_least: usize = hyperparameter(&parameters, "classes")
        .map(str::parse)
        .transpose()
        .context("the hyperparameter \"classes\" must be a whole number")?
        .unwrap_or(0);
    let classes = data.classes.len().max(at_least);
    // Scored on the newest rows it did not train on, then trained on all.
    let cut = rows - ((rows as f64 * holdout) as usize).min(rows - 1);
    let fit = |xs: &[Vec<f64>], ys: &[usize]| -> anyhow::Result<_> {
        let mut model = classifier_by_name(learner, data.encoder.width(), classes, seed)?;
        model.fit(xs, ys);
        Ok(model)
    };
    let mut metrics = BTreeMap::new();
    if cut < rows {
        let model = fit(&data.xs[..cut], &data.ys[..cut])?;
        let correct = (cut..rows)
            .filter(|&i| model.predict_one(&data.xs[i]) == data.ys[i])
            .count();
        metrics.insert("validation:accuracy", correct as f64 / (rows - cut) as f64);
    }
    let model = fit(&data.xs, &data.ys)?;
    let correct = (0..rows)
        .filter(|&i| model.predict_one(&data.xs[i]) == data.ys[i])
        .count();
    metrics.insert("train:accuracy", correct as f64 / rows as f64);
    let out = root.join("model");
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    std::fs::write(
        out.join("model.bin"),
        artifact::save(model.as_ref(), Some(&data.encoder)),
    )?;
    let description = json!({
        "learner": learner,
        "target": target,
        "classes": data.classes,
        "features": data.encoder.feature_names(),
        "examples": rows,
        "metrics": metrics,
    });
    std::fs::write(
        out.join("model.json"),
        serde_json::to_vec_pretty(&description)?,
    )?;
    for (name, value) in &metrics {
        println!("{name}={value:.6}");
    }
    println!(
        "trained {learner} on {rows} rows of {} ({classes} classes) into {}",
        file.display(),
        out.display()
    );
    Ok(())
}

fn serve(
    root: &Path,
    listen: SocketAddr,
    security: &crate::security::SecurityArgs,
) -> anyhow::Result<()> {
    let security = security.resolve(listen, None, &root.join("output"))?;
    let scheme = security.scheme();
    let dir = root.join("model");
    let bytes = std::fs::read(dir.join("model.bin"))
        .with_context(|| format!("no trained model in {}", dir.display()))?;
    let (model, encoder) = artifact::load(&bytes)?;
    let encoder =
        encoder.context("the model has no encoder: train it with driftline sagemaker train")?;
    let description: Value = std::fs::read(dir.join("model.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let learner = description["learner"]
        .as_str()
        .unwrap_or(model.name())
        .to_string();
    let n_classes = model.predict_proba_one(&vec![0.0; encoder.width()]).len();
    // The endpoint's state lives in memory: the artifact is its registry's one version.
    let scratch = tempfile::tempdir()?;
    let state = driftline_server::open_state(scratch.path(), LogConfig::default(), security.keys)?;
    let tls = security.tls;
    crate::listen::runtime()?.block_on(async move {
        let registry = Registry::new(Lake::open("memory://")?, "model")?;
        let record = VersionRecord {
            version: 0,
            parent: None,
            learner: learner.clone(),
            parameters: description.clone(),
            training: TrainingData {
                window: format!("SageMaker training job output in {}", dir.display()),
                ..TrainingData::default()
            },
            metrics: BTreeMap::new(),
            created_ms: 0,
            artifact: String::new(),
        };
        let record = registry.register(record, bytes).await?;
        registry
            .decide(
                record.version,
                Status::Champion,
                "the model of this endpoint",
                BTreeMap::new(),
            )
            .await?;
        let served = ModelService::load_champion(&registry)
            .await?
            .context("the registered model")?;
        let config = LifecycleConfig {
            learner,
            ..LifecycleConfig::default()
        };
        state.models.add(ModelService::new(
            "model", config, n_classes, registry, served, None,
        ));
        let (listener, addr) = crate::listen::bind(listen).await?;
        println!(
            "driftline sagemaker serve on {scheme}://{addr} (/ping, /invocations), model from {}",
            dir.display()
        );
        std::io::stdout().flush()?;
        // SageMaker stops a container with SIGTERM.
        driftline_server::serve(state, listener, tls, crate::cmd_run::shutdown_signal()).await?;
        Ok(())
    })
}
