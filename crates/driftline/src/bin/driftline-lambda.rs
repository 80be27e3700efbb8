//! `driftline-lambda`: a pipeline's processor as an AWS Lambda function on a
//! Kinesis or DynamoDB Streams event-source mapping (built with the `aws`
//! feature; deployed by `driftline aws template`). The same processor code as
//! `driftline run` runs in-process, delivering to the same lake layout; the
//! answer reports partial batch failures (`batchItemFailures`).
//!
//! Environment: `DRIFTLINE_PROCESSOR` (the processor's name), `DRIFTLINE_LAKE`
//! (`s3://BUCKET[/PREFIX]`, else the pipeline's `[lake] url`),
//! `DRIFTLINE_PIPELINE` (default `pipeline.toml` beside the function's code,
//! in `LAMBDA_TASK_ROOT`), `DRIFTLINE_DEAD_LETTERS` (a lake prefix for refused
//! records; default `_dead_letters` when the processor has `on_failure`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use driftline_lake::Lake;
use driftline_pipeline::function::{handle_payload, DeadLetters};
use driftline_pipeline::mapping::Delivery;
use driftline_pipeline::{PipelineConfig, SchemaProcessor};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Function {
    consumer: String,
    processor: SchemaProcessor,
    delivery: Delivery,
    dead_letters: Option<String>,
}

fn setup() -> Result<Function, String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let pipeline = var("DRIFTLINE_PIPELINE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(var("LAMBDA_TASK_ROOT").unwrap_or_else(|| ".".into()))
                .join("pipeline.toml")
        });
    let config = PipelineConfig::load(&pipeline).map_err(|e| e.to_string())?;
    let name =
        var("DRIFTLINE_PROCESSOR").ok_or("DRIFTLINE_PROCESSOR names the processor to run")?;
    let processor = config
        .processor(&name)
        .ok_or_else(|| format!("{} has no processor {name:?}", pipeline.display()))?;
    let lake_config = config.lake.clone().unwrap_or_default();
    let url = var("DRIFTLINE_LAKE").unwrap_or_else(|| lake_config.url.clone());
    let lake = Lake::open_with(&url, &lake_config.store_options()).map_err(|e| e.to_string())?;
    let (schema_processor, schema) =
        config.schema_processor(processor.schema.get_ref(), processor.compiled_transform())?;
    let dead_letters = var("DRIFTLINE_DEAD_LETTERS").or_else(|| {
        processor
            .on_failure
            .as_ref()
            .map(|_| "_dead_letters".to_string())
    });
    Ok(Function {
        consumer: name.clone(),
        processor: schema_processor,
        delivery: Delivery {
            lake,
            table: processor.table().to_string(),
            schema,
            compression: lake_config.compression,
            max_buffer: Duration::ZERO,
            max_buffer_bytes: 0,
            bus: None,
        },
        dead_letters,
    })
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let function = Arc::new(setup().map_err(|e| format!("driftline-lambda: {e}"))?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let function = function.clone();
        async move {
            let (answer, report) = handle_payload(
                &function.processor,
                &function.delivery,
                function
                    .dead_letters
                    .as_deref()
                    .map_or(DeadLetters::Refuse, DeadLetters::Lake),
                &function.consumer,
                &event.payload,
            )
            .await?;
            // One log line per batch, in the embedded metric format.
            println!(
                "{}",
                driftline_pipeline::emf::line(
                    driftline_log::now_ms(),
                    &[("Processor", function.consumer.as_str())],
                    &[
                        (
                            "RowsDelivered",
                            report.rows_delivered as f64,
                            driftline_pipeline::emf::Unit::Count
                        ),
                        (
                            "DeadLettered",
                            report.dead_lettered as f64,
                            driftline_pipeline::emf::Unit::Count
                        ),
                        (
                            "BatchItemFailures",
                            report.failures.len() as f64,
                            driftline_pipeline::emf::Unit::Count
                        ),
                    ],
                )
            );
            Ok::<Value, Error>(answer)
        }
    }))
    .await
}
