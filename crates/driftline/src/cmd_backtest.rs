use std::path::PathBuf;

use anyhow::Context;
use driftline_ml::evaluate::{run, Policy, RunConfig, RunResult};
use driftline_ml::learn::{classifier_by_name, CLASSIFIERS};
use serde_json::json;

#[derive(clap::Args)]
pub struct BacktestArgs {
    /// The recorded stream: CSV (optionally gzipped) with a header row, or Parquet.
    file: PathBuf,
    /// The column holding the label.
    #[arg(long)]
    target: String,
    /// Models to run (lr, lr_adam, lr_ftrl, ht, hat, arf, gbt); default: all.
    #[arg(long = "model")]
    models: Vec<String>,
    /// Retraining policies (never[:W], online, periodic:N[:W], drift:DETECTOR, joined with +);
    /// default: online and online+drift:adwin.
    #[arg(long = "policy")]
    policies: Vec<String>,
    /// Events between a prediction and its label.
    #[arg(long, default_value_t = 0)]
    delay: usize,
    /// Events per point of the windowed metrics (default: 1/100 of the stream).
    #[arg(long)]
    window: Option<usize>,
    /// Seed for the randomised learners.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Write the summary as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write a self-contained HTML report here.
    #[arg(long)]
    html: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

pub fn run_backtest(args: BacktestArgs) -> anyhow::Result<()> {
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
    let data = crate::dataset::load(&args.file, &args.target)?;
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
            "target": args.target,
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
        std::fs::write(
            path,
            crate::report::html(&file, &args.target, samples, &results),
        )
        .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
