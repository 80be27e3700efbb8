//! The stages of a pipeline, started: the mappings of its processors, its
//! landing sources and its AWS sources (aws feature).

use std::sync::Arc;
use std::time::Duration;

use driftline_lake::Lake;
use driftline_log::StreamWriter;
use driftline_pipeline::landing::{run_landing, Landing};
use driftline_pipeline::mapping::Delivery;
use driftline_pipeline::transform::JqTransform;
use driftline_pipeline::{run_mapping, Mapping, MappingStats, PipelineConfig, SchemaProcessor};

use super::streams::PipelineStreams;

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
    use driftline_aws::sharded_source::SourceParts;
    use driftline_aws::{dynamodb_source, kinesis_source};
    use driftline_pipeline::config::{ProcessorConfig, StartingPosition};

    /// A Kinesis or DynamoDB Streams source's knobs: its GetRecords limit is
    /// its batch, with no window (a read is a batch).
    fn source_config(name: &str, batch_size: u32, start: StartingPosition) -> ProcessorConfig {
        ProcessorConfig {
            batch_size: batch_size as usize,
            starting_position: start,
            ..ProcessorConfig::internal(name, "", 0)
        }
    }

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
        /// Lambda's knobs: a processor's own, a source's batch size and start.
        config: ProcessorConfig,
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
        config: source_config(
            s.name.get_ref(),
            *s.batch_size.get_ref(),
            s.starting_position,
        ),
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
        config: source_config(
            s.name.get_ref(),
            *s.batch_size.get_ref(),
            s.starting_position,
        ),
        poll_ms: s.poll_ms,
        batch_size: *s.batch_size.get_ref(),
        service: Service::Kinesis(s.stream.get_ref().clone()),
        on_failure: None,
    });
    // Processors of streams on Kinesis: the same mapping semantics as on
    // the embedded log, the shards shared with other processes.
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
            config: p.clone(),
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
            config: source.config,
            poll: Duration::from_millis(source.poll_ms.max(10)),
            processor,
            delivery,
            dead_letters,
            stats: stats.clone(),
        };
        let (service, stop, batch_size) = (source.service, stop.clone(), source.batch_size);
        let task = tokio::spawn(async move {
            match service {
                Service::Dynamodb(arn) => dynamodb_source::run(reader, arn, batch_size, stop).await,
                Service::Kinesis(name) => kinesis_source::run(reader, name, batch_size, stop).await,
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
