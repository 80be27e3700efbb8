use std::path::PathBuf;

use anyhow::Context;
use driftline_ml::evaluate::{run, Policy, RunConfig, RunResult};
use driftline_ml::learn::{classifier_by_name, CLASSIFIERS};
use serde_json::json;

/// Two forms: learners and policies compared on a file (`--target`,
/// `--model LEARNER`, `--policy`), or a declared model's whole lifecycle
/// replayed (`--pipeline PIPELINE.toml --model NAME`).
#[derive(clap::Args)]
pub struct BacktestArgs {
    /// The recorded stream: CSV (optionally gzipped) with a header row, or
    /// Parquet; with --pipeline, also a table of the pipeline's lake (the
    /// model's bootstrap table, NAME_joined, ...).
    pub file: PathBuf,
    /// The column holding the label (with --pipeline: default "label", or the
    /// bootstrap table's label when DATA is that table).
    #[arg(long)]
    pub target: Option<String>,
    /// Learners to compare (lr, lr_adam, lr_ftrl, ht, hat, arf, gbt, knn, best; default:
    /// all); with --pipeline, the one declared model to replay.
    #[arg(long = "model")]
    pub models: Vec<String>,
    /// Retraining policies (never[:W], online, periodic:N[:W], drift:DETECTOR, joined with +);
    /// default: online and online+drift:adwin.
    #[arg(long = "policy")]
    pub policies: Vec<String>,
    /// Replay a model declared in this pipeline (`[[model]]`): its monitors,
    /// retrain policy, gate, trials and rollback watch, as serving runs them.
    #[arg(long)]
    pub pipeline: Option<PathBuf>,
    /// With --pipeline: the lake holding DATA when it is a table (default:
    /// the pipeline's [lake]).
    #[arg(long)]
    pub lake: Option<String>,
    /// With --pipeline: the column giving each row's time (seconds or
    /// milliseconds since the epoch, or RFC 3339) for the simulated clock.
    #[arg(long)]
    pub time: Option<String>,
    /// With --pipeline and no --time: rows per second of simulated time.
    #[arg(long, default_value_t = 2000.0)]
    pub rate: f64,
    /// With --pipeline: rows whose labels are known that train the first
    /// version (default: a fifth of the rows, at most 2,000).
    #[arg(long)]
    pub bootstrap: Option<usize>,
    /// Events between a prediction and its label.
    #[arg(long, default_value_t = 0)]
    pub delay: usize,
    /// Events per point of the windowed metrics (default: 1/100 of the stream).
    #[arg(long)]
    pub window: Option<usize>,
    /// Seed for the randomised learners.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Write the summary as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write a self-contained HTML report here.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

pub fn run_backtest(args: BacktestArgs) -> anyhow::Result<()> {
    for (given, flag) in [
        (args.lake.is_some(), "--lake"),
        (args.time.is_some(), "--time"),
        (args.bootstrap.is_some(), "--bootstrap"),
    ] {
        anyhow::ensure!(
            !given,
            "{flag} goes with --pipeline (a declared model's replay)"
        );
    }
    let target = args.target.clone().context(
        "--target COLUMN names the label column (or replay a declared model with --pipeline PIPELINE.toml --model NAME)",
    )?;
    let models: Vec<String> = if args.models.is_empty() {
        CLASSIFIERS.iter().map(|m| m.to_string()).collect()
    } else {
        args.models.clone()
    };
    let policy_texts: Vec<String> = if args.policies.is_empty() {
        vec!["online".into(), "online+drift:adwin".into()]
    } else {
        args.policies.clone()
    };
    let policies: Vec<Policy> = policy_texts
        .iter()
        .map(|p| Policy::parse(p))
        .collect::<Result<_, _>>()?;
    let data = crate::dataset::load(&args.file, &target)?;
    let n_features = data.encoder.width();
    let n_classes = data.classes.len().max(2);
    for model in &models {
        classifier_by_name(model, n_features, n_classes, args.seed)?;
    }
    let samples = data.xs.len();
    let window = args.window.unwrap_or((samples / 100).max(1)).max(1);
    let config = RunConfig {
        n_classes,
        delay: args.delay,
        window,
        buffer: 20_000,
        min_retrain: 200,
    };
    let total_runs = models.len() * policies.len();
    let bar = if args.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new((samples * total_runs) as u64)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix:>28} [{bar:40}] {percent:>3}% {per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let mut results: Vec<RunResult> = Vec::with_capacity(total_runs);
    let mut done = 0u64;
    for model_name in &models {
        for policy in &policies {
            bar.set_prefix(format!("{model_name} / {}", policy.text));
            let model = classifier_by_name(model_name, n_features, n_classes, args.seed)?;
            let base = done;
            let result = run(
                model_name,
                model,
                policy,
                &data.xs,
                &data.ys,
                &config,
                &mut |n| bar.set_position(base + n as u64),
            );
            done += samples as u64;
            results.push(result);
        }
    }
    bar.finish_and_clear();
    println!(
        "{:<10} {:<24} {:>9} {:>9} {:>9} {:>7} {:>8} {:>11}",
        "model", "policy", "accuracy", "f1_macro", "log_loss", "drifts", "retrains", "events/s"
    );
    for r in &results {
        println!(
            "{:<10} {:<24} {:>9.4} {:>9.4} {:>9.4} {:>7} {:>8} {:>11.0}",
            r.model,
            r.policy,
            r.metrics.get("accuracy").copied().unwrap_or(0.0),
            r.metrics.get("f1_macro").copied().unwrap_or(0.0),
            r.metrics.get("log_loss").copied().unwrap_or(0.0),
            r.drifts.len(),
            r.retrains.len(),
            r.samples_per_second
        );
    }
    let file = args.file.display().to_string();
    if let Some(path) = &args.json {
        let summary = json!({
            "file": file,
            "target": target,
            "samples": samples,
            "classes": data.classes,
            "features": data.encoder.feature_names(),
            "delay": args.delay,
            "window": window,
            "runs": results,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&summary)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.html {
        std::fs::write(path, crate::report::html(&file, &target, samples, &results))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
