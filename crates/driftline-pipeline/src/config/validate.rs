//! The checks of a parsed pipeline file, one function per concern: streams,
//! schemas, names, processors, sources, models and the lake. Each error
//! points at the line of what is wrong.

use std::collections::BTreeSet;
use std::path::Path;

use toml::Spanned;

use super::sources::{check_batch_size, check_kinesis_name};
use super::{kinesis_url, ConfigError, PipelineConfig, ProcessorConfig, SourceConfig};

/// The file being checked, to turn an offset into its line.
struct Checks<'a> {
    config: &'a PipelineConfig,
    text: &'a str,
    path: &'a Path,
}

type Checked<T = ()> = Result<T, ConfigError>;

impl PipelineConfig {
    pub(super) fn validate(self, text: &str, path: &Path) -> Checked<PipelineConfig> {
        let checks = Checks {
            config: &self,
            text,
            path,
        };
        let streams = checks.streams()?;
        checks.schemas()?;
        let names = checks.names()?;
        checks.processors(&streams)?;
        let tables = checks.landing_sources(&streams)?;
        checks.aws_sources()?;
        checks.models(&streams, &names, &tables)?;
        checks.lake()?;
        Ok(self)
    }
}

impl<'a> Checks<'a> {
    fn invalid(&self, offset: usize, message: String) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line: self.text[..offset.min(self.text.len())]
                .matches('\n')
                .count()
                + 1,
            message,
        }
    }

    fn undefined(&self, what: &str, reference: &Spanned<String>, known: Vec<&str>) -> ConfigError {
        self.invalid(
            reference.span().start,
            format!(
                "{what} {:?} is not defined; expected one of {known:?}",
                reference.get_ref()
            ),
        )
    }

    fn stream_names(&self) -> Vec<&'a str> {
        self.config
            .streams
            .iter()
            .map(|s| s.name.get_ref().as_str())
            .collect()
    }

    fn on_kinesis(&self, name: &str) -> bool {
        self.config
            .streams
            .iter()
            .any(|s| s.name.get_ref() == name && s.url.is_some())
    }

    /// Names once, shards, URLs; a Kinesis stream serves one use.
    fn streams(&self) -> Checked<BTreeSet<&'a str>> {
        let mut streams = BTreeSet::new();
        for stream in &self.config.streams {
            if !streams.insert(stream.name.get_ref().as_str()) {
                return Err(self.invalid(
                    stream.name.span().start,
                    format!("stream {:?} is declared twice", stream.name.get_ref()),
                ));
            }
            if stream.shards == 0 {
                return Err(self.invalid(
                    stream.name.span().start,
                    "a stream needs at least one shard".into(),
                ));
            }
            if let Some(url) = &stream.url {
                kinesis_url(url.get_ref()).map_err(|e| self.invalid(url.span().start, e))?;
            }
        }
        // One Kinesis stream, one use: two pipeline streams (or a prediction
        // log) on the same one would feed each other.
        let mut kinesis_names = BTreeSet::new();
        let urls = self
            .config
            .streams
            .iter()
            .filter_map(|s| s.url.as_ref())
            .chain(
                self.config
                    .models
                    .iter()
                    .filter_map(|m| m.prediction_log.as_ref()),
            );
        for url in urls {
            if !kinesis_names.insert(url.get_ref().as_str()) {
                return Err(self.invalid(
                    url.span().start,
                    format!("{} is used twice: each Kinesis stream serves one pipeline stream or prediction log", url.get_ref()),
                ));
            }
        }
        Ok(streams)
    }

    fn schemas(&self) -> Checked {
        for schema in &self.config.schemas {
            schema
                .table_schema()
                .map_err(|e| self.invalid(schema.name.span().start, e.to_string()))?;
        }
        Ok(())
    }

    /// No two processors or sources share a name.
    fn names(&self) -> Checked<BTreeSet<&'a str>> {
        let config = self.config;
        let mut names = BTreeSet::new();
        let all = config
            .processors
            .iter()
            .map(|p| &p.name)
            .chain(config.sources.iter().map(|s| &s.name))
            .chain(config.dynamodb.iter().map(|d| &d.name))
            .chain(config.kinesis.iter().map(|k| &k.name));
        for name in all {
            if !names.insert(name.get_ref().as_str()) {
                return Err(self.invalid(
                    name.span().start,
                    format!("{:?} names two processors or sources", name.get_ref()),
                ));
            }
        }
        Ok(names)
    }

    /// What processors and sources name: a dead-letter stream, a schema and
    /// a transform.
    fn outputs(
        &self,
        streams: &BTreeSet<&str>,
        on_failure: &Option<Spanned<String>>,
        schema: &Spanned<String>,
        transform: &Option<Spanned<String>>,
    ) -> Checked {
        if let Some(dlq) = on_failure {
            if !streams.contains(dlq.get_ref().as_str()) {
                return Err(self.undefined("on_failure stream", dlq, self.stream_names()));
            }
        }
        if self.config.schema(schema.get_ref()).is_none() {
            let known = self
                .config
                .schemas
                .iter()
                .map(|s| s.name.get_ref().as_str())
                .collect();
            return Err(self.undefined("schema", schema, known));
        }
        if let Some(code) = transform {
            crate::transform::JqTransform::compile(code.get_ref())
                .map_err(|e| self.invalid(code.span().start, e))?;
        }
        Ok(())
    }

    /// Streams, outputs and Lambda's knobs, and what a stream on Kinesis allows.
    fn processors(&self, streams: &BTreeSet<&str>) -> Checked {
        for processor in &self.config.processors {
            let stream = processor.stream.get_ref();
            let at = processor.name.span().start;
            if !streams.contains(stream.as_str()) {
                return Err(self.undefined("stream", &processor.stream, self.stream_names()));
            }
            if let Some(dlq) = &processor.on_failure {
                if dlq.get_ref() == stream {
                    return Err(self.invalid(
                        dlq.span().start,
                        "on_failure must be another stream than the source".into(),
                    ));
                }
            }
            self.outputs(
                streams,
                &processor.on_failure,
                &processor.schema,
                &processor.transform,
            )?;
            if !(1..=10).contains(&processor.parallelization_factor) {
                return Err(self.invalid(
                    at,
                    format!(
                        "parallelization_factor must be 1..=10, not {}",
                        processor.parallelization_factor
                    ),
                ));
            }
            if processor.batch_size == 0 || processor.batch_size > 10_000 {
                return Err(self.invalid(
                    at,
                    format!("batch_size must be 1..=10000, not {}", processor.batch_size),
                ));
            }
            if processor.runs_on_lambda() && !self.on_kinesis(stream) {
                return Err(self.invalid(
                    processor.runs_on.as_ref().map_or(0, |r| r.span().start),
                    format!("runs_on = \"lambda\" needs a stream on Kinesis: give stream {stream:?} a url = \"kinesis://NAME\""),
                ));
            }
        }
        Ok(())
    }

    /// Outputs, notifications, and a prefix of the lake's own; returns the
    /// tables processors and landing sources write.
    fn landing_sources(&self, streams: &BTreeSet<&str>) -> Checked<Vec<&'a str>> {
        let config = self.config;
        let tables: Vec<&str> = config
            .processors
            .iter()
            .map(ProcessorConfig::table)
            .chain(config.sources.iter().map(SourceConfig::table))
            .collect();
        for source in &config.sources {
            self.outputs(
                streams,
                &source.on_failure,
                &source.schema,
                &source.transform,
            )?;
            if let Some(queue) = &source.notifications {
                let url = queue.get_ref();
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err(self.invalid(
                        queue.span().start,
                        format!("notifications must be an SQS queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/QUEUE), not {url:?}"),
                    ));
                }
            }
            let prefix = source.prefix.get_ref().trim_matches('/');
            let inside_a_table = tables
                .iter()
                .any(|t| prefix == *t || prefix.starts_with(&format!("{t}/")));
            if prefix.is_empty() || prefix.starts_with('_') || inside_a_table {
                return Err(self.invalid(
                    source.prefix.span().start,
                    format!(
                        "prefix {:?} must be a folder of the lake of its own: not empty, not starting with '_', not a table's ({tables:?})",
                        source.prefix.get_ref()
                    ),
                ));
            }
        }
        Ok(tables)
    }

    /// Kinesis and DynamoDB Streams sources: outputs, GetRecords limits, names.
    fn aws_sources(&self) -> Checked {
        let none = BTreeSet::new();
        for source in &self.config.dynamodb {
            self.outputs(&none, &None, &source.schema, &source.transform)?;
            check_batch_size(&source.batch_size, 1000).map_err(|(at, e)| self.invalid(at, e))?;
            let arn = source.stream_arn.get_ref();
            if !(arn.starts_with("arn:") && arn.contains(":dynamodb:") && arn.contains("/stream/"))
            {
                return Err(self.invalid(
                    source.stream_arn.span().start,
                    format!("stream_arn must be a DynamoDB stream ARN (arn:aws:dynamodb:REGION:ACCOUNT:table/TABLE/stream/LABEL), not {arn:?}"),
                ));
            }
        }
        for source in &self.config.kinesis {
            self.outputs(&none, &None, &source.schema, &source.transform)?;
            check_batch_size(&source.batch_size, 10_000).map_err(|(at, e)| self.invalid(at, e))?;
            check_kinesis_name(source.stream.get_ref())
                .map_err(|e| self.invalid(source.stream.span().start, e))?;
        }
        Ok(())
    }

    /// Each model's own declaration, and that what it makes (streams, consumers,
    /// its joined table) is not declared by anything else.
    fn models(&self, streams: &BTreeSet<&str>, names: &BTreeSet<&str>, tables: &[&str]) -> Checked {
        let mut models = BTreeSet::new();
        for model in &self.config.models {
            let at = model.name.span().start;
            model
                .check()
                .map_err(|(at, message)| self.invalid(at, message))?;
            if !models.insert(model.name()) {
                return Err(self.invalid(at, format!("model {:?} is declared twice", model.name())));
            }
            for made in [model.predictions_stream(), model.joined_stream()] {
                if streams.contains(made.as_str()) {
                    return Err(self.invalid(
                        at,
                        format!(
                            "stream {made:?} is made for model {:?}: do not declare it",
                            model.name()
                        ),
                    ));
                }
            }
            for consumer in [model.joined_consumer(), model.labels_consumer()] {
                if names.contains(consumer.as_str()) {
                    return Err(self.invalid(
                        at,
                        format!("{consumer:?} is the name of model {:?}'s own consumer: rename the processor or source", model.name()),
                    ));
                }
            }
            if tables.contains(&model.joined_table().as_str()) {
                return Err(self.invalid(
                    at,
                    format!(
                        "table {:?} is made for model {:?}: no processor may write it",
                        model.joined_table(),
                        model.name()
                    ),
                ));
            }
            if let Some(labels) = &model.labels {
                if !streams.contains(labels.get_ref().as_str()) {
                    return Err(self.undefined("labels stream", labels, self.stream_names()));
                }
            }
            if let Some(url) = &model.prediction_log {
                kinesis_url(url.get_ref()).map_err(|e| self.invalid(url.span().start, e))?;
            }
            if let Some(bootstrap) = &model.bootstrap {
                let table = bootstrap.table.get_ref().trim_matches('/');
                if table.is_empty() || bootstrap.label.is_empty() {
                    return Err(self.invalid(
                        bootstrap.table.span().start,
                        "bootstrap needs a table and a label column".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Whatever delivers needs the lake.
    fn lake(&self) -> Checked {
        let config = self.config;
        let delivers = !config.processors.is_empty()
            || !config.sources.is_empty()
            || !config.models.is_empty()
            || !config.dynamodb.is_empty()
            || !config.kinesis.is_empty();
        if delivers && config.lake.is_none() {
            return Err(self.invalid(
                self.text.len(),
                "processors, sources and models use the lake: add a [lake] section".into(),
            ));
        }
        Ok(())
    }
}
