//! `driftline backtest --pipeline PIPELINE.toml --model NAME DATA`: a
//! declared model's whole lifecycle replayed over recorded data on a
//! simulated clock, through the same decisions serving takes
//! (`driftline_ml::lifecycle::replay`).

use std::path::Path;

use anyhow::{bail, Context};
use driftline_lake::Lake;
use driftline_ml::lifecycle::replay::{replay, ReplayConfig, ReplayReport};
use driftline_pipeline::config::PipelineConfig;
use driftline_pipeline::training::TrainingSource;
use serde_json::json;

use crate::cmd_backtest::BacktestArgs;

pub fn run(args: &BacktestArgs, pipeline: &Path) -> anyhow::Result<()> {
    let config = PipelineConfig::load(pipeline)?;
    let declared: Vec<&str> = config.models.iter().map(|m| m.name()).collect();
    let [name] = args.models.as_slice() else {
        bail!(
            "--pipeline replays one declared model: name it with --model NAME (declared in {}: {})",
            pipeline.display(),
            declared.join(", ")
        );
    };
    anyhow::ensure!(
        args.policies.is_empty(),
        "--policy compares learners on a file; with --pipeline the model's declared lifecycle is what is replayed"
    );
    let model = config
        .models
        .iter()
        .find(|m| m.name() == name)
        .with_context(|| {
            format!(
                "{} declares no model {name:?}; it declares: {}",
                pipeline.display(),
                declared.join(", ")
            )
        })?;
    let lifecycle = model
        .lifecycle()
        .map_err(|(line, message)| anyhow::anyhow!("{}:{line}: {message}", pipeline.display()))?;
    let features = model.features().to_vec();
    let bootstrap_table = model.bootstrap.as_ref().map(|b| b.table.get_ref().as_str());
    let data = args.file.to_string_lossy().to_string();
    // The label column: named, else the bootstrap table's, else the joined table's.
    let label = match (&args.target, &model.bootstrap) {
        (Some(target), _) => target.clone(),
        (None, Some(b)) if bootstrap_table == Some(data.as_str()) => b.label.clone(),
        _ => "label".to_string(),
    };
    let (xs, ys, times) = if args.file.is_file() {
        let rows =
            crate::dataset::load_for_model(&args.file, &features, &label, args.time.as_deref())?;
        (rows.xs, rows.ys, rows.times_ms)
    } else {
        let lake_url = args
            .lake
            .clone()
            .or_else(|| config.lake.as_ref().map(|l| l.url.clone()))
            .with_context(|| {
                format!(
                    "{data} is not a file, and {} has no [lake] to read it as a table from",
                    pipeline.display()
                )
            })?;
        anyhow::ensure!(
            args.time.is_none(),
            "--time names a column of a file; a lake table is replayed at --rate"
        );
        let options = config
            .lake
            .as_ref()
            .map(|l| l.store_options())
            .unwrap_or_default();
        let lake = Lake::open_with(&lake_url, &options)?;
        let source = TrainingSource::labelled_table(lake, &data, &label);
        let set = crate::listen::runtime()?
            .block_on(source.newest(usize::MAX, None, &features))
            .with_context(|| format!("reading the table {data} of the lake {lake_url}"))?;
        anyhow::ensure!(
            !set.examples.is_empty(),
            "{data} is neither a file nor a table with rows in the lake {lake_url}"
        );
        let (xs, ys) = set.examples.into_iter().unzip();
        (xs, ys, None)
    };
    let rows = xs.len();
    let times_ms: Vec<i64> = match times {
        Some(times) => times,
        None => {
            let rate = args.rate;
            anyhow::ensure!(rate > 0.0, "--rate must be positive, not {rate}");
            (0..rows)
                .map(|i| (i as f64 * 1000.0 / rate) as i64)
                .collect()
        }
    };
    let bootstrap = args.bootstrap.unwrap_or((rows / 5).clamp(2, 2000));
    anyhow::ensure!(
        bootstrap < rows,
        "{data} has {rows} rows: too few to bootstrap on {bootstrap} and replay the rest (--bootstrap)"
    );
    if lifecycle.online_publish_every.is_some() {
        eprintln!("note: {name} learns online between retrains (online_publish_every); the replay does not, it retrains as declared");
    }
    let replay_config = ReplayConfig {
        spec: lifecycle.spec(),
        learner: lifecycle.learner.clone(),
        seed: lifecycle.seed,
        n_classes: model.classes,
        features: features.clone(),
        delay: args.delay,
        bootstrap,
        window: args
            .window
            .unwrap_or(((rows - bootstrap) / 100).max(1))
            .max(1),
        schedule_ms: lifecycle
            .retrain_every
            .map(|every| i64::try_from(every.as_millis()).unwrap_or(i64::MAX)),
    };
    let bar = if args.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(rows as u64)
    };
    let report = replay(&replay_config, &xs, &ys, &times_ms, &mut |n| {
        bar.set_position(n as u64)
    })?;
    bar.finish_and_clear();
    print_report(name, &data, &report, &replay_config);
    if let Some(path) = &args.json {
        let summary = json!({
            "pipeline": pipeline.display().to_string(),
            "model": name,
            "data": data,
            "label": label,
            "rows": rows,
            "bootstrap": bootstrap,
            "delay": args.delay,
            "clock": match &args.time {
                Some(column) => json!({"column": column}),
                None => json!({"events_per_second": args.rate}),
            },
            "replay": report,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&summary)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.html {
        std::fs::write(path, crate::report::lifecycle_html(name, &data, &report))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn print_report(name: &str, data: &str, report: &ReplayReport, config: &ReplayConfig) {
    println!(
        "model {name} ({}) over {data}: {} events after {} bootstrap rows, labels {} events late",
        report.learner, report.events, config.bootstrap, config.delay
    );
    println!(
        "  accuracy {:.4} (the first version alone: {:.4}); serving v{} at the end",
        report.accuracy, report.first_version_accuracy, report.final_champion
    );
    println!("  {}", report.counts_line());
    for a in &report.alarm_to_serving {
        println!(
            "  alarm at event {} -> serving at event {}: {} events{}",
            a.alarm_index,
            a.serving_index,
            a.events,
            a.ms.map_or(String::new(), |ms| format!(", {ms} ms simulated"))
        );
    }
    for step in &report.decisions {
        println!(
            "  [{:>8}] {}",
            step.index,
            crate::report::describe(&step.event)
        );
    }
}
