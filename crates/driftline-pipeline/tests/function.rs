//! The Lambda handler's logic on recorded event payloads of the shapes AWS
//! documents (a Kinesis batch with one refused record and 56-digit sequence
//! numbers, a DynamoDB Streams batch with INSERT, MODIFY and REMOVE):
//! partial batch failure, dead letters, and exactly-once delivery under
//! Lambda's retries.

use std::path::Path;

use arrow_array::{Array, StringArray};
use driftline_lake::{Compression, Lake};
use driftline_pipeline::function::{events_of, handle_payload, DeadLetters};
use driftline_pipeline::mapping::Delivery;
use driftline_pipeline::PipelineConfig;
use serde_json::{json, Value};

const PIPELINE: &str = r#"
[[stream]]
name = "events"
[[schema]]
name = "event"
fields = [{ name = "id", type = "string" }, { name = "amount", type = "float" }]
[[schema]]
name = "change"
fields = [
  { name = "event", type = "string" },
  { name = "id", type = "int" },
  { name = "message", type = "string", required = false },
]
[[processor]]
name = "events"
stream = "events"
schema = "event"
[[processor]]
name = "changes"
stream = "events"
schema = "change"
transform = "{event: .event_name, id: .keys.Id, message: (.new_image // .old_image).Message}"
[lake]
"#;

fn payload(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/payloads")
        .join(name);
    serde_json::from_slice(&std::fs::read(path).expect("payload")).expect("json")
}

fn parts(processor: &str, lake: &Lake) -> (driftline_pipeline::SchemaProcessor, Delivery) {
    let config = PipelineConfig::parse(PIPELINE, Path::new("test")).expect("pipeline");
    let p = config.processor(processor).expect("processor");
    let (schema_processor, schema) = config
        .schema_processor(p.schema.get_ref(), p.compiled_transform())
        .expect("schema");
    let delivery = Delivery {
        lake: lake.clone(),
        table: p.table().to_string(),
        schema,
        compression: Compression::Zstd,
        max_buffer: std::time::Duration::ZERO,
        max_buffer_bytes: 0,
        bus: None,
    };
    (schema_processor, delivery)
}

/// A column of every row of a table, as text, in object then row order.
async fn column(lake: &Lake, table: &str, name: &str) -> Vec<String> {
    let mut values = Vec::new();
    for object in lake.objects(&format!("{table}/")).await.expect("objects") {
        let bytes = lake
            .read(&object.path)
            .await
            .expect("read")
            .expect("object");
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            bytes::Bytes::from(bytes),
        )
        .expect("parquet")
        .build()
        .expect("reader");
        for batch in reader {
            let batch = batch.expect("batch");
            let column = arrow_cast::cast(
                batch.column_by_name(name).expect("column"),
                &arrow_schema::DataType::Utf8,
            )
            .expect("text");
            let text = column
                .as_any()
                .downcast_ref::<StringArray>()
                .expect("strings");
            values.extend((0..text.len()).map(|i| {
                if text.is_null(i) {
                    "null".to_string()
                } else {
                    text.value(i).to_string()
                }
            }));
        }
    }
    values
}

fn kinesis_subset(records: std::ops::Range<usize>) -> Value {
    let all = payload("kinesis.json");
    json!({"Records": all["Records"].as_array().expect("records")[records].to_vec()})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_record_is_reported_and_retried_from_and_nothing_is_delivered_twice() {
    let lake = Lake::open("memory://").expect("lake");
    let (processor, delivery) = parts("events", &lake);
    let seq = |n: u32| format!("4959033827149025660855969253836157109592157598913658880{n}");
    // records 1 and 2 land; 3 does not fit ("lots" is no float) and is reported
    let (answer, report) = handle_payload(
        &processor,
        &delivery,
        DeadLetters::Refuse,
        "events",
        &payload("kinesis.json"),
    )
    .await
    .expect("handled");
    assert_eq!(
        answer,
        json!({"batchItemFailures": [{"itemIdentifier": seq(3)}]})
    );
    assert_eq!(report.rows_delivered, 2);
    // Lambda retries the same batch (say the answer was lost): the same objects, replaced
    handle_payload(
        &processor,
        &delivery,
        DeadLetters::Refuse,
        "events",
        &payload("kinesis.json"),
    )
    .await
    .expect("retried");
    // ... then from the failed record, which fails again
    let (answer, _) = handle_payload(
        &processor,
        &delivery,
        DeadLetters::Refuse,
        "events",
        &kinesis_subset(2..4),
    )
    .await
    .expect("from the failure");
    assert_eq!(
        answer["batchItemFailures"][0]["itemIdentifier"],
        json!(seq(3))
    );
    // after its retries Lambda hands it to the on-failure destination and goes on
    let (answer, _) = handle_payload(
        &processor,
        &delivery,
        DeadLetters::Refuse,
        "events",
        &kinesis_subset(3..4),
    )
    .await
    .expect("past it");
    assert_eq!(answer, json!({"batchItemFailures": []}));
    assert_eq!(column(&lake, "events", "id").await, ["e1", "e2", "e4"]);
    // object names carry the 56-digit sequence numbers
    let names = lake.list("events/").await.expect("list");
    assert!(names.iter().any(|n| n.contains(&seq(1))), "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_dead_letter_prefix_the_batch_succeeds_and_the_refused_record_is_kept() {
    let lake = Lake::open("memory://").expect("lake");
    let (processor, delivery) = parts("events", &lake);
    let (answer, report) = handle_payload(
        &processor,
        &delivery,
        DeadLetters::Lake("_dead_letters"),
        "events",
        &payload("kinesis.json"),
    )
    .await
    .expect("handled");
    assert_eq!(answer, json!({"batchItemFailures": []}));
    assert_eq!((report.rows_delivered, report.dead_lettered), (3, 1));
    assert_eq!(column(&lake, "events", "id").await, ["e1", "e2", "e4"]);
    let letters = lake.list("_dead_letters/events/").await.expect("letters");
    assert_eq!(letters.len(), 1);
    let text = lake.read(&letters[0]).await.expect("read").expect("letter");
    let letter: Value = serde_json::from_slice(&text).expect("json line");
    assert!(
        letter["reason"].as_str().unwrap_or("").contains("amount"),
        "{letter}"
    );
    assert_eq!(letter["partition_key"], "u3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_change_records_become_rows() {
    let events = events_of(&payload("dynamodb.json")).expect("events");
    let first: Value = serde_json::from_slice(&events[0].data).expect("json");
    assert_eq!(
        first,
        json!({"event_name": "INSERT", "keys": {"Id": 101},
               "new_image": {"Message": "New item!", "Id": 101, "Tags": ["a", "b"], "Meta": {"ok": true}},
               "old_image": null})
    );
    assert_eq!(events[0].shard, "dynamodb-ExampleTableWithStream");
    let lake = Lake::open("memory://").expect("lake");
    let (processor, delivery) = parts("changes", &lake);
    let (answer, report) = handle_payload(
        &processor,
        &delivery,
        DeadLetters::Refuse,
        "changes",
        &payload("dynamodb.json"),
    )
    .await
    .expect("handled");
    assert_eq!(answer, json!({"batchItemFailures": []}));
    assert_eq!(report.rows_delivered, 3);
    assert_eq!(
        column(&lake, "changes", "event").await,
        ["INSERT", "MODIFY", "REMOVE"]
    );
    assert_eq!(
        column(&lake, "changes", "message").await,
        [
            "New item!",
            "This item has changed",
            "This item has changed"
        ]
    );
}

#[test]
fn payloads_that_are_not_stream_events_are_refused_with_the_reason() {
    assert!(events_of(&json!({}))
        .expect_err("no records")
        .contains("Records"));
    let sqs = json!({"Records": [{"eventSource": "aws:sqs", "body": "x"}]});
    assert!(events_of(&sqs).expect_err("sqs").contains("aws:sqs"));
    let bad = json!({"Records": [{"eventSource": "aws:kinesis", "eventID": "shardId-0:1",
        "kinesis": {"data": "!!", "partitionKey": "k", "sequenceNumber": "1"}}]});
    assert!(events_of(&bad).expect_err("base64").contains("base64"));
}
