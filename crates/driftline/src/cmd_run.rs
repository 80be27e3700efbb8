//! `driftline run PIPELINE.toml` and `driftline validate PIPELINE.toml`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use driftline_lake::Lake;
use driftline_log::{Durability, LogConfig, StreamWriter};
use driftline_pipeline::landing::{run_landing, Landing};
use driftline_pipeline::mapping::Delivery;
use driftline_pipeline::transform::JqTransform;
use driftline_pipeline::{run_mapping, Mapping, MappingStats, PipelineConfig, SchemaProcessor};

use crate::pipeline_streams::PipelineStreams;

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
        let on_ready: crate::run_models::OnReady = Arc::new(move |service| {
            let name = service.name().to_string();
            eprintln!(
                "serving model {name} v{} on {scheme}://{addr}/v1/models/{name}/predict",
                service.champion_version()
            );
            models.add(service);
        });
        let mut model_stages =
            crate::run_models::start_models(&config, &streams, &lake, &stop_rx, on_ready).await?;
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

/// A running stage: its name, counters and task.
pub type Stage = (
    String,
    Arc<MappingStats>,
    tokio::task::JoinHandle<Result<(), driftline_pipeline::MappingError>>,
);

/// Starts every processor (an event-source mapping on its stream) and every
/// landing source of a validated pipeline, delivering to `lake`.
pub fn start_stages(
    config: &PipelineConfig,
    streams: &PipelineStreams,
    lake: &Lake,
    bus: Option<tokio::sync::broadcast::Sender<driftline_lake::WrittenObject>>,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Vec<Stage>> {
    let lake_config = config.lake.clone().unwrap_or_default();
    // What a processor or a landing source writes with: its schema (and
    // transform) and where its rows go.
    let outputs = |schema: &str,
                   transform: Result<Option<JqTransform>, String>,
                   table: &str,
                   on_failure: Option<&str>|
     -> anyhow::Result<Parts> {
        let (processor, schema) = config
            .schema_processor(schema, transform)
            .map_err(anyhow::Error::msg)?;
        let delivery = Delivery {
            lake: lake.clone(),
            table: table.to_string(),
            schema,
            compression: lake_config.compression,
            max_buffer: Duration::from_secs(lake_config.max_buffer_seconds),
            max_buffer_bytes: lake_config.max_buffer_bytes,
            bus: bus.clone(),
        };
        let dead_letters = on_failure.map(|name| streams.writer(name)).transpose()?;
        Ok((Arc::new(processor), delivery, dead_letters))
    };
    let mut stages = Vec::new();
    for processor in &config.processors {
        if streams.kinesis_name(processor.stream.get_ref()).is_some() {
            continue; // read by the lease loop (`aws_stream_stages`)
        }
        let (schema_processor, delivery, dead_letters) = outputs(
            processor.schema.get_ref(),
            processor.compiled_transform(),
            processor.table(),
            processor.on_failure.as_ref().map(|s| s.get_ref().as_str()),
        )?;
        let stats = Arc::new(MappingStats::default());
        let mapping = Mapping {
            stream: streams.store().stream(processor.stream.get_ref())?,
            dead_letters,
            processor: schema_processor,
            config: processor.clone(),
            delivery,
            stats: stats.clone(),
        };
        let task = tokio::spawn(run_mapping(mapping, stop.clone()));
        stages.push((processor.name.get_ref().clone(), stats, task));
    }
    for source in &config.sources {
        let (schema_processor, delivery, dead_letters) = outputs(
            source.schema.get_ref(),
            source.compiled_transform(),
            source.table(),
            source.on_failure.as_ref().map(|s| s.get_ref().as_str()),
        )?;
        let stats = Arc::new(MappingStats::default());
        let wake = match &source.notifications {
            None => None,
            Some(queue) => Some(notifications(
                queue.get_ref(),
                lake,
                source.prefix.get_ref(),
                stop,
            )?),
        };
        let landing = Landing {
            name: source.name.get_ref().clone(),
            prefix: source.prefix.get_ref().trim_matches('/').to_string(),
            processor: schema_processor,
            dead_letters,
            delivery,
            poll: Duration::from_secs(source.poll_seconds.max(1)),
            stats: stats.clone(),
            wake,
        };
        let task = tokio::spawn(run_landing(landing, stop.clone()));
        stages.push((source.name.get_ref().clone(), stats, task));
    }
    stages.extend(aws_stream_stages(config, streams, &outputs, stop)?);
    Ok(stages)
}

/// A source's processor, its delivery and its on-failure stream.
type Parts = (
    Arc<SchemaProcessor>,
    Delivery,
    Option<Arc<dyn StreamWriter>>,
);

/// What a source runs and where its rows go: from its schema, transform,
/// lake table and dead-letter stream.
type Outputs<'a> = dyn Fn(&str, Result<Option<JqTransform>, String>, &str, Option<&str>) -> anyhow::Result<Parts>
    + 'a;

/// Starts every DynamoDB Streams and Kinesis source, and every processor
/// of a stream on Kinesis.
#[cfg(feature = "aws")]
fn aws_stream_stages(
    config: &PipelineConfig,
    streams: &PipelineStreams,
    outputs: &Outputs<'_>,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Vec<Stage>> {
    use driftline_aws::sharded_source::{run_dynamodb, run_kinesis, SourceParts};
    use driftline_pipeline::config::StartingPosition;

    /// Where a source reads: a DynamoDB stream (by ARN) or a Kinesis stream (by name).
    enum Service {
        Dynamodb(String),
        Kinesis(String),
    }
    struct Source<'a> {
        kind: &'static str,
        name: &'a str,
        schema: &'a str,
        transform: Result<Option<JqTransform>, String>,
        table: &'a str,
        starting_position: StartingPosition,
        poll_ms: u64,
        batch_size: u32,
        service: Service,
        /// The on-failure stream, if not the lake's `_dead_letters/`.
        on_failure: Option<&'a str>,
    }
    let dynamodb = config.dynamodb.iter().map(|s| Source {
        kind: "dynamodb",
        name: s.name.get_ref(),
        schema: s.schema.get_ref(),
        transform: s.compiled_transform(),
        table: s.table(),
        starting_position: s.starting_position,
        poll_ms: s.poll_ms,
        batch_size: *s.batch_size.get_ref(),
        service: Service::Dynamodb(s.stream_arn.get_ref().clone()),
        on_failure: None,
    });
    let kinesis = config.kinesis.iter().map(|s| Source {
        kind: "kinesis",
        name: s.name.get_ref(),
        schema: s.schema.get_ref(),
        transform: s.compiled_transform(),
        table: s.table(),
        starting_position: s.starting_position,
        poll_ms: s.poll_ms,
        batch_size: *s.batch_size.get_ref(),
        service: Service::Kinesis(s.stream.get_ref().clone()),
        on_failure: None,
    });
    // Validation refuses parallelization_factor and maximum_record_age_s
    // here; retries and bisection do not apply: a batch whose delivery or
    // dead letters fail is read again from its checkpoint, nothing dropped.
    let processors = config.processors.iter().filter_map(|p| {
        let kinesis = streams.kinesis_name(p.stream.get_ref())?;
        if p.runs_on_lambda() {
            eprintln!(
                "processor {} runs on Lambda (runs_on = \"lambda\"): not here",
                p.name.get_ref()
            );
            return None;
        }
        Some(Source {
            kind: "kinesis",
            name: p.name.get_ref(),
            schema: p.schema.get_ref(),
            transform: p.compiled_transform(),
            table: p.table(),
            starting_position: p.starting_position,
            poll_ms: p.maximum_batching_window_ms,
            batch_size: u32::try_from(p.batch_size).unwrap_or(10_000),
            service: Service::Kinesis(kinesis.to_string()),
            on_failure: p.on_failure.as_ref().map(|s| s.get_ref().as_str()),
        })
    });
    let mut stages = Vec::new();
    for source in dynamodb.chain(kinesis).chain(processors) {
        let (processor, delivery, dead_letters) = outputs(
            source.schema,
            source.transform,
            source.table,
            source.on_failure,
        )?;
        let stats = Arc::new(MappingStats::default());
        let reader = SourceParts {
            kind: source.kind,
            name: source.name.to_string(),
            starting_position: source.starting_position,
            poll: Duration::from_millis(source.poll_ms.max(10)),
            processor,
            delivery,
            dead_letters,
            stats: stats.clone(),
        };
        let (service, stop, batch_size) = (source.service, stop.clone(), source.batch_size);
        let task = tokio::spawn(async move {
            match service {
                Service::Dynamodb(arn) => run_dynamodb(reader, arn, batch_size, stop).await,
                Service::Kinesis(name) => run_kinesis(reader, name, batch_size, stop).await,
            }
        });
        stages.push((source.name.to_string(), stats, task));
    }
    Ok(stages)
}

#[cfg(not(feature = "aws"))]
fn aws_stream_stages(
    config: &PipelineConfig,
    _streams: &PipelineStreams,
    _outputs: &Outputs<'_>,
    _stop: &tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Vec<Stage>> {
    if config.dynamodb.is_empty() && config.kinesis.is_empty() {
        Ok(Vec::new())
    } else {
        anyhow::bail!(
            "sources of type \"kinesis\" and \"dynamodb\" need driftline built with the aws feature"
        )
    }
}

/// Starts receiving a landing source's S3 notifications from an SQS queue.
#[cfg(feature = "aws")]
fn notifications(
    queue: &str,
    lake: &Lake,
    prefix: &str,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Arc<tokio::sync::Notify>> {
    let Some(rest) = lake.location().strip_prefix("s3://") else {
        anyhow::bail!(
            "notifications come from S3: the lake {} is not an s3:// lake",
            lake.location()
        );
    };
    let lake_prefix = rest.split_once('/').map_or("", |(_, p)| p).to_string();
    let wake = Arc::new(tokio::sync::Notify::new());
    let task = driftline_aws::s3_notifications::run(
        queue.to_string(),
        lake_prefix,
        prefix.to_string(),
        wake.clone(),
        stop.clone(),
    );
    tokio::spawn(async move {
        if let Err(error) = task.await {
            tracing::warn!(%error, "S3 notifications stopped");
        }
    });
    Ok(wake)
}

#[cfg(not(feature = "aws"))]
fn notifications(
    _queue: &str,
    _lake: &Lake,
    _prefix: &str,
    _stop: &tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Arc<tokio::sync::Notify>> {
    anyhow::bail!("S3 notifications need driftline built with the aws feature")
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
