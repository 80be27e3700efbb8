//! `driftline run PIPELINE.toml` and `driftline validate PIPELINE.toml`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use driftline_lake::Lake;
use driftline_log::{Durability, LogConfig};
use driftline_pipeline::{MappingStats, PipelineConfig};

use crate::assembly::start_stages;
use crate::assembly::streams::PipelineStreams;

#[derive(clap::Args)]
pub struct ValidateArgs {
    /// The pipeline file (or `env:NAME`: the text of environment variable NAME).
    pipeline: PathBuf,
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// The pipeline file (or `env:NAME`: the text of environment variable NAME).
    pipeline: PathBuf,
    /// Where the streams are stored.
    #[arg(long, default_value = "driftline-data")]
    data_dir: PathBuf,
    /// Address of the Kinesis API and NDJSON ingest (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:4567")]
    listen: SocketAddr,
    /// The lake: a directory (overrides the pipeline's [lake] url).
    #[arg(long)]
    lake: Option<String>,
    /// When a write to the stream is acknowledged: "fsync" (the default) or "os".
    #[arg(long, default_value = "fsync")]
    durability: Durability,
    /// Seconds between progress lines.
    #[arg(long, default_value_t = 2)]
    progress_every: u64,
    /// How progress is reported: "text" lines, or "emf" (CloudWatch's embedded
    /// metric format, JSON lines on standard output that CloudWatch Logs turns into metrics).
    #[arg(long, default_value = "text", value_parser = ["text", "emf"])]
    metrics: String,
    /// A processor this process leaves to others (the template's service
    /// skips those it deploys as Lambda functions); repeatable.
    #[arg(long = "skip", value_name = "PROCESSOR")]
    skip: Vec<String>,
    /// Puts a declared stream on Kinesis: `NAME=kinesis://KINESIS_NAME` (the
    /// template's service gets one for each stream the template makes); repeatable.
    #[arg(long = "stream-url", value_name = "NAME=URL", value_parser = name_and_url)]
    stream_url: Vec<(String, String)>,
    #[command(flatten)]
    security: crate::security::SecurityArgs,
}

fn name_and_url(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(name, url)| (name.to_string(), url.to_string()))
        .ok_or_else(|| format!("{text:?} is not NAME=URL"))
}

/// NAME of a pipeline given as `env:NAME`.
fn pipeline_variable(path: &std::path::Path) -> Option<&str> {
    path.to_str().and_then(|p| p.strip_prefix("env:"))
}

/// The pipeline file, or with `env:NAME` the text of environment variable
/// NAME (how the template's `driftline run` service gets its pipeline).
fn load_pipeline(path: &std::path::Path) -> anyhow::Result<(PipelineConfig, String)> {
    let text = match pipeline_variable(path) {
        Some(variable) => std::env::var(variable).with_context(|| {
            format!("the pipeline is in environment variable {variable}, which is not set")
        })?,
        None => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?,
    };
    let config = PipelineConfig::parse(&text, path)?;
    // The old forms still read; say what to write instead.
    for notice in &config.notices {
        eprintln!("note: {notice}");
    }
    Ok((config, text))
}

pub fn validate(args: ValidateArgs) -> anyhow::Result<()> {
    let (config, _) = load_pipeline(&args.pipeline)?;
    println!(
        "{}: valid ({} streams, {} schemas, {} processors, {} sources, {} models)",
        args.pipeline.display(),
        config.streams.len(),
        config.schemas.len(),
        config.processors.len(),
        config.sources.len() + config.kinesis.len() + config.dynamodb.len(),
        config.models.len()
    );
    Ok(())
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let (mut config, text) = load_pipeline(&args.pipeline)?;
    for name in &args.skip {
        let before = config.processors.len();
        config.processors.retain(|p| p.name.get_ref() != name);
        anyhow::ensure!(
            config.processors.len() < before,
            "--skip {name}: the pipeline has no processor {name}"
        );
        eprintln!("processor {name} runs elsewhere (--skip): not here");
    }
    // After the skips: what is left is checked again with its streams moved.
    let config = config.with_stream_urls(&args.stream_url, &text, &args.pipeline)?;
    let lake_config = config.lake.clone();
    let lake_url = args
        .lake
        .clone()
        .or_else(|| lake_config.as_ref().map(|l| l.url.clone()))
        .unwrap_or_else(|| "./lake".into());
    let options = lake_config
        .as_ref()
        .map(|l| l.store_options())
        .unwrap_or_default();
    let lake = Lake::open_with(&lake_url, &options)?;
    let log_config = LogConfig {
        durability: args.durability,
        ..LogConfig::default()
    };
    let declared = config.auth.as_ref().map(|a| a.source(&args.pipeline));
    let security = args
        .security
        .resolve(args.listen, declared, &args.data_dir)?;
    let scheme = security.scheme();
    let tls = security.tls;
    let state = driftline_server::open_state(&args.data_dir, log_config, security.keys)
        .with_context(|| format!("cannot open data directory {}", args.data_dir.display()))?;
    let store = state.kinesis.store.clone();
    crate::listen::runtime()?.block_on(async move {
        let streams = PipelineStreams::open(&config, store).await?;
        // The NDJSON ingest of a stream on Kinesis puts there.
        for (name, writer) in streams.remote_writers()? {
            state.add_remote_stream(&name, writer);
        }
        let (listener, addr) = crate::listen::bind(args.listen).await?;
        println!(
            "driftline running {} on {scheme}://{addr} (streams in {}, lake {lake_url})",
            args.pipeline.display(),
            args.data_dir.display()
        );
        std::io::stdout().flush()?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let (bus, _) = tokio::sync::broadcast::channel(1024);
        let mut mappings = start_stages(&config, &streams, &lake, Some(bus.clone()), &stop_rx)?;
        let models = state.models.clone();
        let on_ready: crate::assembly::models::OnReady = Arc::new(move |service| {
            let name = service.name().to_string();
            eprintln!(
                "serving model {name} v{} on {scheme}://{addr}/v1/models/{name}/predict",
                service.champion_version()
            );
            models.add(service);
        });
        let mut model_stages =
            crate::assembly::models::start_models(&config, &streams, &lake, &stop_rx, on_ready)
                .await?;
        mappings.append(&mut model_stages);
        let names_and_stats: Vec<(String, Arc<MappingStats>)> = mappings
            .iter()
            .map(|(n, s, _)| (n.clone(), s.clone()))
            .collect();
        let every = Duration::from_secs(args.progress_every.max(1));
        let emf = args.metrics == "emf";
        let pipeline_name = match pipeline_variable(&args.pipeline) {
            // The template names it beside the text.
            Some(variable) => {
                std::env::var("DRIFTLINE_PIPELINE_NAME").unwrap_or_else(|_| variable.to_string())
            }
            None => args
                .pipeline
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "pipeline".into()),
        };
        let served = state.models.clone();
        let progress = tokio::spawn(async move {
            let mut reporter = crate::emf_report::EmfReporter::default();
            loop {
                tokio::time::sleep(every).await;
                if emf {
                    reporter.report(&pipeline_name, &names_and_stats, &served.all());
                } else {
                    print_progress(&names_and_stats);
                }
            }
        });
        let (server_stop_tx, server_stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(driftline_server::serve(state, listener, tls, async move {
            let _ = server_stop_rx.await;
        }));
        shutdown_signal().await;
        eprintln!("stopping: delivering what is buffered");
        let _ = stop_tx.send(true);
        let mut failure = None;
        for (name, stats, task) in mappings {
            match task.await {
                Ok(Ok(())) => {}
                // The first failure is reported; later ones are logged.
                Ok(Err(error)) => note(&mut failure, anyhow::anyhow!("processor {name}: {error}")),
                Err(error) => note(&mut failure, anyhow::anyhow!("processor {name}: {error}")),
            }
            if !emf {
                print_progress(&[(name, stats)]);
            }
        }
        progress.abort();
        let _ = server_stop_tx.send(());
        server.await.context("server task")??;
        failure.map_or(Ok(()), Err)
    })
}

/// Keeps the first failure of a shutdown and logs the others.
fn note(failure: &mut Option<anyhow::Error>, error: anyhow::Error) {
    match failure {
        None => *failure = Some(error),
        Some(_) => eprintln!("error: {error:#}"),
    }
}

fn print_progress(mappings: &[(String, Arc<MappingStats>)]) {
    // A closed stdout (the reader went away) must not stop the pipeline.
    let mut out = std::io::stdout().lock();
    for (name, stats) in mappings {
        let _ = writeln!(
            out,
            "{name}: in {} out {} delivered {} filtered {} dead-lettered {} objects {} lag {}",
            stats.records_in.load(Ordering::Relaxed),
            stats.rows_out.load(Ordering::Relaxed),
            stats.rows_delivered.load(Ordering::Relaxed),
            stats.filtered.load(Ordering::Relaxed),
            stats.dead_lettered.load(Ordering::Relaxed),
            stats.objects.load(Ordering::Relaxed),
            stats.lag.load(Ordering::Relaxed),
        );
    }
    let _ = out.flush();
}

/// Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}
