//! A full disk: the server refuses writes with a clear error, keeps serving
//! reads, and loses or corrupts nothing it acknowledged. The disk is "filled"
//! with the process's file-size limit (`ulimit -f`), which makes writes past
//! the limit fail as a full disk would, without needing a real one.

use std::process::Command;

use base64::Engine;
use serde_json::{json, Value};

use crate::util::Server;

fn call(endpoint: &str, operation: &str, body: Value) -> (u16, Value) {
    crate::util::kinesis_json(endpoint, operation, body)
}

fn read_all(endpoint: &str) -> Vec<Vec<u8>> {
    let (_, iterator) = call(
        endpoint,
        "GetShardIterator",
        json!({"StreamName": "f", "ShardId": "shardId-000000000000", "ShardIteratorType": "TRIM_HORIZON"}),
    );
    let mut iterator = iterator["ShardIterator"].clone();
    let mut all = Vec::new();
    loop {
        let (status, page) = call(endpoint, "GetRecords", json!({"ShardIterator": iterator}));
        assert_eq!(status, 200, "{page}");
        let records = page["Records"].as_array().expect("records").clone();
        if records.is_empty() {
            return all;
        }
        for record in records {
            all.push(
                base64::engine::general_purpose::STANDARD
                    .decode(record["Data"].as_str().expect("data"))
                    .expect("base64"),
            );
        }
        iterator = page["NextShardIterator"].clone();
    }
}

#[test]
fn a_full_disk_refuses_writes_clearly_and_keeps_what_was_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 1 MiB file-size limit (in 512-byte blocks); SIGXFSZ ignored so writes fail with an error.
    let script = format!(
        "ulimit -f 2048 && trap '' XFSZ && exec '{}' serve --listen 127.0.0.1:0 --data-dir '{}'",
        env!("CARGO_BIN_EXE_driftline"),
        dir.path().display()
    );
    let mut command = Command::new("sh");
    command.args(["-c", &script]);
    let mut limited = Server::spawn(command);
    let endpoint = limited.endpoint.clone();
    let (status, _) = call(
        &endpoint,
        "CreateStream",
        json!({"StreamName": "f", "ShardCount": 1}),
    );
    assert_eq!(status, 200);

    let mut acknowledged = Vec::new();
    let mut refusal = None;
    // bounded: 1 MiB fills within ~110 records of 10 KB
    for i in 0..400u32 {
        let mut data = vec![b'a' + (i % 26) as u8; 10_000];
        data[..4].copy_from_slice(&i.to_le_bytes());
        let (status, answer) = call(
            &endpoint,
            "PutRecord",
            json!({"StreamName": "f", "PartitionKey": "k", "Data": base64::engine::general_purpose::STANDARD.encode(&data)}),
        );
        if status == 200 {
            acknowledged.push(data);
        } else {
            refusal = Some((status, answer));
            break;
        }
    }
    let (status, answer) = refusal.expect("the limit was never reached");
    assert_eq!(status, 500, "{answer}");
    assert_eq!(answer["__type"], "InternalFailure");
    let message = answer["message"].as_str().unwrap_or_default();
    assert!(message.contains("disk is full"), "{message}");
    assert!(
        acknowledged.len() > 50,
        "only {} records fit",
        acknowledged.len()
    );

    // PutRecords reports the failure per record
    let (status, batch) = call(
        &endpoint,
        "PutRecords",
        json!({"StreamName": "f", "Records": [{"PartitionKey": "k", "Data": base64::engine::general_purpose::STANDARD.encode(vec![1u8; 20_000])}]}),
    );
    assert_eq!(status, 200);
    assert_eq!(batch["FailedRecordCount"], 1);
    assert_eq!(batch["Records"][0]["ErrorCode"], "InternalFailure");

    // reads still work and hold exactly what was acknowledged
    assert_eq!(read_all(&endpoint), acknowledged);
    limited.kill();

    // with space again, the log opens cleanly and takes writes
    let server = Server::start(dir.path(), &[]);
    assert_eq!(read_all(&server.endpoint), acknowledged);
    let (status, _) = call(
        &server.endpoint,
        "PutRecord",
        json!({"StreamName": "f", "PartitionKey": "k", "Data": "AA=="}),
    );
    assert_eq!(status, 200);
    assert_eq!(read_all(&server.endpoint).len(), acknowledged.len() + 1);
}
