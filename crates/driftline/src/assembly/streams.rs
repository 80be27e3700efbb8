//! A pipeline's streams, wherever they live: embedded ones in the log store,
//! `kinesis://NAME` ones on Kinesis Data Streams (aws feature; region,
//! endpoint and credentials from the standard AWS chain).

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use driftline_log::{LogStore, Stream, StreamSpec, StreamWriter};
use driftline_pipeline::PipelineConfig;

pub struct PipelineStreams {
    store: Arc<LogStore>,
    /// Pipeline name -> Kinesis name, for the streams on Kinesis.
    kinesis: BTreeMap<String, String>,
    /// The producers of the streams on Kinesis.
    #[cfg(feature = "aws")]
    producers: Option<driftline_aws::kinesis_writer::KinesisProducers>,
}

impl PipelineStreams {
    /// Only the embedded streams of `store`.
    pub fn embedded(store: Arc<LogStore>) -> PipelineStreams {
        PipelineStreams {
            store,
            kinesis: BTreeMap::new(),
            #[cfg(feature = "aws")]
            producers: None,
        }
    }

    /// Creates the pipeline's embedded streams that do not exist yet, and
    /// checks that its Kinesis streams (and prediction logs) exist.
    pub async fn open(config: &PipelineConfig, store: Arc<LogStore>) -> anyhow::Result<Self> {
        let mut streams = PipelineStreams::embedded(store);
        for stream in &config.streams {
            match stream.kinesis() {
                Some(kinesis) => {
                    streams
                        .kinesis
                        .insert(stream.name.get_ref().clone(), kinesis.to_string());
                }
                None => {
                    stream_or_create(&streams.store, stream.name.get_ref(), stream.shards)?;
                }
            }
        }
        let mut on_kinesis: Vec<(String, String)> = streams
            .kinesis
            .iter()
            .map(|(name, kinesis)| (format!("stream {name}"), kinesis.clone()))
            .collect();
        for model in &config.models {
            if let Some(kinesis) = model.prediction_log_stream() {
                on_kinesis.push((
                    format!("the prediction log of model {}", model.name()),
                    kinesis.to_string(),
                ));
            }
        }
        if !on_kinesis.is_empty() {
            streams.connect(&on_kinesis).await?;
        }
        Ok(streams)
    }

    #[cfg(feature = "aws")]
    async fn connect(&mut self, on_kinesis: &[(String, String)]) -> anyhow::Result<()> {
        let producers =
            driftline_aws::kinesis_writer::KinesisProducers::connect(on_kinesis).await?;
        self.producers = Some(producers);
        Ok(())
    }

    #[cfg(not(feature = "aws"))]
    async fn connect(&mut self, on_kinesis: &[(String, String)]) -> anyhow::Result<()> {
        let (what, kinesis) = &on_kinesis[0];
        anyhow::bail!(
            "{what} is kinesis://{kinesis}: Kinesis streams need driftline built with the aws feature (cargo build --release --features aws)"
        )
    }

    pub fn store(&self) -> &Arc<LogStore> {
        &self.store
    }

    /// The Kinesis name of pipeline stream `name`, if it lives on Kinesis.
    pub fn kinesis_name(&self, name: &str) -> Option<&str> {
        self.kinesis.get(name).map(String::as_str)
    }

    /// Where records for pipeline stream `name` are put.
    pub fn writer(&self, name: &str) -> anyhow::Result<Arc<dyn StreamWriter>> {
        match self.kinesis_name(name) {
            Some(kinesis) => self.kinesis_writer(name, kinesis),
            None => Ok(self.store.stream(name)?),
        }
    }

    /// Writers of the streams on Kinesis, by pipeline name.
    pub fn remote_writers(&self) -> anyhow::Result<Vec<(String, Arc<dyn StreamWriter>)>> {
        self.kinesis
            .iter()
            .map(|(name, kinesis)| Ok((name.clone(), self.kinesis_writer(name, kinesis)?)))
            .collect()
    }

    /// A writer of Kinesis stream `kinesis`, known in the pipeline as `name`.
    #[cfg(feature = "aws")]
    pub fn kinesis_writer(
        &self,
        name: &str,
        kinesis: &str,
    ) -> anyhow::Result<Arc<dyn StreamWriter>> {
        let producers = self.producers.as_ref().ok_or_else(|| {
            anyhow::anyhow!("no Kinesis client: the pipeline declares no Kinesis stream")
        })?;
        Ok(producers.writer(name, kinesis))
    }

    #[cfg(not(feature = "aws"))]
    pub fn kinesis_writer(
        &self,
        name: &str,
        kinesis: &str,
    ) -> anyhow::Result<Arc<dyn StreamWriter>> {
        anyhow::bail!("stream {name} is kinesis://{kinesis}: Kinesis streams need driftline built with the aws feature")
    }
}

/// The stream `name`, created with `shards` shards if it does not exist yet.
pub fn stream_or_create(store: &LogStore, name: &str, shards: u32) -> anyhow::Result<Arc<Stream>> {
    if let Ok(stream) = store.stream(name) {
        return Ok(stream);
    }
    let spec = StreamSpec {
        name: name.to_string(),
        shard_count: shards,
        ..StreamSpec::default()
    };
    store
        .create_stream(spec, driftline_log::now_ms())
        .with_context(|| format!("cannot create stream {name}"))
}
