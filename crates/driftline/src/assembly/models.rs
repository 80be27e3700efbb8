//! The models a pipeline declares (`[[model]]`), served by `driftline run`
//! beside its processors: each with its prediction and joined-example
//! streams, the delivery of its joined examples to the lake (which its
//! retrains read back), and the consumer of its label stream.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use driftline_lake::{Lake, Registry};
use driftline_log::{Stream, StreamWriter};
use driftline_ml::features::Encoder;
use driftline_pipeline::config::model::ModelConfig;
use driftline_pipeline::config::ProcessorConfig;
use driftline_pipeline::labels::LabelProcessor;
use driftline_pipeline::lifecycle::{LifecycleConfig, ModelService, Served};
use driftline_pipeline::mapping::Delivery;
use driftline_pipeline::trainer::Trainer;
use driftline_pipeline::training::{joined_processor, joined_schema, TrainingSource};
use driftline_pipeline::{run_mapping, Mapping, MappingStats, PipelineConfig, Processor};

use super::stages::Stage;
use super::streams::{stream_or_create, PipelineStreams};

/// Where a model's labels arrive.
enum Labels {
    Embedded(Arc<Stream>),
    /// A Kinesis stream (by its Kinesis name), read through leases.
    Kinesis(String),
}

/// Reads a model's labels from a Kinesis stream through the lease loop
/// (checkpoints in the lake); unreadable labels are kept under
/// `_dead_letters/CONSUMER/`.
#[cfg(feature = "aws")]
async fn kinesis_labels(
    consumer: String,
    kinesis: String,
    processor: Arc<LabelProcessor>,
    delivery: Delivery,
    stats: Arc<MappingStats>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), driftline_pipeline::MappingError> {
    let source = driftline_aws::sharded_source::SourceParts {
        kind: "kinesis",
        config: driftline_pipeline::config::ProcessorConfig::internal(&consumer, &kinesis, 100),
        name: consumer,
        poll: Duration::from_millis(100),
        processor,
        delivery,
        dead_letters: None,
        stats,
    };
    driftline_aws::kinesis_source::run(source, kinesis, 1000, stop).await
}

#[cfg(not(feature = "aws"))]
async fn kinesis_labels(
    _consumer: String,
    kinesis: String,
    _processor: Arc<LabelProcessor>,
    _delivery: Delivery,
    _stats: Arc<MappingStats>,
    _stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), driftline_pipeline::MappingError> {
    Err(driftline_pipeline::MappingError::Batch(format!(
        "labels on kinesis://{kinesis} need driftline built with the aws feature"
    )))
}

/// Called with each model once it serves.
pub type OnReady = Arc<dyn Fn(Arc<ModelService>) + Send + Sync>;

/// Starts every declared model. A model whose registry has a champion, or
/// whose bootstrap table holds enough labelled rows, serves at once; one whose
/// bootstrap table is still filling serves once it has enough (looked at every
/// two seconds). Returns the stages that feed the models.
pub async fn start_models(
    config: &PipelineConfig,
    streams: &PipelineStreams,
    lake: &Lake,
    stop: &tokio::sync::watch::Receiver<bool>,
    on_ready: OnReady,
) -> anyhow::Result<Vec<Stage>> {
    let mut stages = Vec::new();
    for model in &config.models {
        let model_stages = start_model(config, model, streams, lake, stop, on_ready.clone())
            .await
            .with_context(|| format!("model {}", model.name()))?;
        stages.extend(model_stages);
    }
    Ok(stages)
}

/// The first version trained on the bootstrap table, if it holds enough rows;
/// `Ok(None)` (having said what it waits for) if it does not yet.
async fn bootstrap(
    model: &ModelConfig,
    lake: &Lake,
    registry: &Registry,
    lifecycle: &LifecycleConfig,
    quiet: bool,
) -> anyhow::Result<Option<Served>> {
    let bootstrap = model.bootstrap.as_ref().with_context(|| {
        format!(
            "no champion in the registry of {} and no bootstrap table to train one on: add bootstrap = {{ table = \"...\", label = \"...\" }}",
            lake.location()
        )
    })?;
    let table = bootstrap.table.get_ref();
    let features = model.features();
    let source = TrainingSource::labelled_table(lake.clone(), table, &bootstrap.label);
    let set = source.newest(lifecycle.window, None, features).await?;
    if set.examples.len() < lifecycle.min_train {
        if !quiet {
            eprintln!(
                "model {} waits for {} labelled rows in lake table {table:?} to train its first version (has {})",
                model.name(),
                lifecycle.min_train,
                set.examples.len()
            );
        }
        return Ok(None);
    }
    let names: Vec<&str> = features.iter().map(String::as_str).collect();
    let encoder = Encoder::numeric(&names);
    let served =
        ModelService::bootstrap_from(registry, lifecycle, encoder, model.classes, set).await?;
    Ok(Some(served))
}

/// The delivery of a model's joined examples (from `joined`, its
/// `NAME-joined` stream) to its lake table `NAME_joined`: the stage, and the
/// delivery its label consumer shares.
pub fn joined_stage(
    config: &PipelineConfig,
    model: &ModelConfig,
    joined: Arc<Stream>,
    lake: &Lake,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<(Delivery, Stage)> {
    let features = model.features().to_vec();
    let lake_config = config.lake.clone().unwrap_or_default();
    let delivery = Delivery {
        lake: lake.clone(),
        table: model.joined_table(),
        schema: joined_schema(&features)?,
        compression: lake_config.compression,
        max_buffer: Duration::from_secs(lake_config.max_buffer_seconds),
        max_buffer_bytes: lake_config.max_buffer_bytes,
        bus: None,
    };
    let stats = Arc::new(MappingStats::default());
    let mapping = Mapping {
        config: ProcessorConfig::internal(&model.joined_consumer(), joined.name(), 100),
        stream: joined,
        dead_letters: None,
        processor: Arc::new(joined_processor(&features)?),
        delivery: delivery.clone(),
        stats: stats.clone(),
    };
    let stage = (
        model.joined_consumer(),
        stats,
        tokio::spawn(run_mapping(mapping, stop.clone())),
    );
    Ok((delivery, stage))
}

async fn start_model(
    config: &PipelineConfig,
    model: &ModelConfig,
    streams: &PipelineStreams,
    lake: &Lake,
    stop: &tokio::sync::watch::Receiver<bool>,
    on_ready: OnReady,
) -> anyhow::Result<Vec<Stage>> {
    let name = model.name().to_string();
    let features = model.features().to_vec();
    let lifecycle = model
        .lifecycle()
        .map_err(|(_, message)| anyhow::anyhow!(message))?;
    let registry = Registry::new(lake.clone(), &name)?;
    let mut champion = ModelService::load_champion(&registry).await?;
    if champion.is_none() {
        champion = bootstrap(model, lake, &registry, &lifecycle, false).await?;
    }
    if let Some(champion) = &champion {
        anyhow::ensure!(
            champion.encoder.feature_names() == features,
            "the champion v{} reads the features {:?}, the pipeline declares {:?}",
            champion.version,
            champion.encoder.feature_names(),
            features
        );
    }
    let store = streams.store();
    let predictions: Arc<dyn StreamWriter> = match model.prediction_log_stream() {
        Some(kinesis) => streams.kinesis_writer(&model.predictions_stream(), kinesis)?,
        None => stream_or_create(store, &model.predictions_stream(), 1)?,
    };
    let joined = stream_or_create(store, &model.joined_stream(), 2)?;
    let labels = match model.labels.as_ref() {
        None => None,
        Some(name) => Some(match streams.kinesis_name(name.get_ref()) {
            Some(kinesis) => Labels::Kinesis(kinesis.to_string()),
            None => Labels::Embedded(store.stream(name.get_ref())?),
        }),
    };

    // Makes the service around its first champion and starts its label consumer.
    let (delivery, joined_stage) = joined_stage(config, model, joined.clone(), lake, stop)?;
    let mapping = {
        let delivery = delivery.clone();
        move |consumer: String, stream: Arc<Stream>, processor: Arc<dyn Processor>, stats| Mapping {
            config: ProcessorConfig::internal(&consumer, stream.name(), 100),
            stream,
            dead_letters: None,
            processor,
            delivery: delivery.clone(),
            stats,
        }
    };
    let mut stages = vec![joined_stage];

    let trainer = trainer(model, lake).await?;
    if let Some(sagemaker) = &model.sagemaker {
        stages.push(
            sagemaker_mirror(
                model,
                sagemaker.clone(),
                registry.clone(),
                lake.clone(),
                stop.clone(),
            )
            .await?,
        );
    }

    let labels_stats = Arc::new(MappingStats::default());
    let serve = {
        let (model, lake, stop, labels_stats) = (
            model.clone(),
            lake.clone(),
            stop.clone(),
            labels_stats.clone(),
        );
        async move {
            let champion = match champion {
                Some(champion) => champion,
                None => loop {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                        _ = wait_for_stop(stop.clone()) => return Ok(()),
                    }
                    let attempt = bootstrap(&model, &lake, &registry, &lifecycle, true).await;
                    match attempt {
                        Ok(Some(champion)) => break champion,
                        Ok(None) => {}
                        Err(error) => {
                            return Err(driftline_pipeline::MappingError::Join(format!(
                                "model {}: {error:#}",
                                model.name()
                            )))
                        }
                    }
                },
            };
            let service = ModelService::new(
                model.name(),
                lifecycle,
                model.classes,
                registry,
                champion,
                Some(predictions),
            );
            service.log_joined_to(joined.clone() as Arc<dyn StreamWriter>);
            if let Some(trainer) = trainer {
                service.train_with(trainer);
            }
            service.train_from(TrainingSource::new(
                lake.clone(),
                &model.joined_table(),
                joined.clone(),
            ));
            on_ready(service.clone());
            let processor = Arc::new(LabelProcessor::new(service));
            match labels {
                // Labels make no rows: the mapping joins them (and checkpoints).
                Some(Labels::Embedded(stream)) => {
                    let labels = mapping(model.labels_consumer(), stream, processor, labels_stats);
                    run_mapping(labels, stop).await
                }
                Some(Labels::Kinesis(kinesis)) => {
                    let consumer = model.labels_consumer();
                    kinesis_labels(consumer, kinesis, processor, delivery, labels_stats, stop).await
                }
                None => Ok(()),
            }
        }
    };
    stages.push((model.labels_consumer(), labels_stats, tokio::spawn(serve)));
    Ok(stages)
}

/// Where a model's retrains are fitted when not in this process.
#[cfg(feature = "aws")]
async fn trainer(model: &ModelConfig, lake: &Lake) -> anyhow::Result<Option<Arc<dyn Trainer>>> {
    match &model.sagemaker {
        Some(sagemaker) if sagemaker.train => {
            let api = driftline_aws::json::AwsJson::sagemaker().await?;
            let trainer = driftline_aws::sagemaker_trainer::SagemakerTrainer::new(
                api,
                lake.clone(),
                model.name(),
                sagemaker.clone(),
            )?;
            Ok(Some(Arc::new(trainer)))
        }
        _ => Ok(None),
    }
}

#[cfg(not(feature = "aws"))]
async fn trainer(model: &ModelConfig, _lake: &Lake) -> anyhow::Result<Option<Arc<dyn Trainer>>> {
    match &model.sagemaker {
        Some(sagemaker) if sagemaker.train => anyhow::bail!(
            "model {} trains on SageMaker: that needs driftline built with the aws feature",
            model.name()
        ),
        _ => Ok(None),
    }
}

/// The stage that mirrors a model's registry to SageMaker.
#[cfg(feature = "aws")]
async fn sagemaker_mirror(
    model: &ModelConfig,
    config: driftline_pipeline::config::model::SagemakerConfig,
    registry: Registry,
    lake: Lake,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Stage> {
    let api = driftline_aws::json::AwsJson::sagemaker().await?;
    let mirror =
        driftline_aws::sagemaker_mirror::Mirror::new(api, registry, lake, model.name(), config)?;
    let task = tokio::spawn(async move {
        mirror.run(stop).await;
        Ok(())
    });
    Ok((
        format!("{}-sagemaker", model.name()),
        Arc::new(MappingStats::default()),
        task,
    ))
}

#[cfg(not(feature = "aws"))]
async fn sagemaker_mirror(
    model: &ModelConfig,
    _config: driftline_pipeline::config::model::SagemakerConfig,
    _registry: Registry,
    _lake: Lake,
    _stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Stage> {
    anyhow::bail!(
        "model {} mirrors to SageMaker: that needs driftline built with the aws feature",
        model.name()
    )
}

async fn wait_for_stop(mut stop: tokio::sync::watch::Receiver<bool>) {
    while !*stop.borrow() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}
