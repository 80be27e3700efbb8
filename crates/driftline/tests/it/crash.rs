//! SIGKILL while producers write: after a restart every acknowledged record is
//! there, in order, once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use crate::util::{agent, sigv4_headers, Server, TEST_KEY_ID, TEST_SECRET};

fn kinesis(
    agent: &ureq::Agent,
    endpoint: &str,
    operation: &str,
    body: Value,
) -> Result<Value, String> {
    let target = format!("Kinesis_20131202.{operation}");
    let body = body.to_string();
    let mut request = agent
        .post(endpoint)
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", &target);
    for (name, value) in sigv4_headers(
        endpoint,
        (TEST_KEY_ID, TEST_SECRET),
        std::time::SystemTime::now(),
        "application/x-amz-json-1.1",
        &target,
        body.as_bytes(),
    ) {
        request = request.header(name, value);
    }
    let mut response = request.send(body).map_err(|e| e.to_string())?;
    let ok = response.status().is_success();
    let value: Value = response.body_mut().read_json().map_err(|e| e.to_string())?;
    if ok {
        Ok(value)
    } else {
        Err(value.to_string())
    }
}

#[test]
fn a_killed_server_keeps_every_acknowledged_record_in_order_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(dir.path(), &["--segment-bytes", "65536"]);
    let endpoint = server.endpoint.clone();
    kinesis(
        &agent(),
        &endpoint,
        "CreateStream",
        json!({"StreamName": "c", "ShardCount": 4}),
    )
    .expect("create");

    let stop = Arc::new(AtomicBool::new(false));
    // producer -> acknowledged counters, in acknowledgement order
    let acknowledged: Arc<Mutex<BTreeMap<u32, Vec<u64>>>> = Arc::default();
    let producers: Vec<_> = (0..4u32)
        .map(|producer| {
            let (stop, acknowledged, endpoint) = (stop.clone(), acknowledged.clone(), endpoint.clone());
            std::thread::spawn(move || {
                let agent = agent();
                let mut counter = 0u64;
                // bounded: at most 2,000 requests per producer
                for _ in 0..2_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let records: Vec<Value> = (0..10)
                        .map(|i| {
                            let data = format!("{producer}:{}", counter + i);
                            json!({"PartitionKey": format!("producer-{producer}"), "Data": base64::engine::general_purpose::STANDARD.encode(data)})
                        })
                        .collect();
                    match kinesis(&agent, &endpoint, "PutRecords", json!({"StreamName": "c", "Records": records})) {
                        Ok(answer) if answer["FailedRecordCount"] == 0 => {
                            let mut acked = acknowledged.lock().expect("lock");
                            acked.entry(producer).or_default().extend(counter..counter + 10);
                            counter += 10;
                        }
                        // the server died mid-request: not acknowledged
                        _ => break,
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    server.kill(); // SIGKILL
    stop.store(true, Ordering::Relaxed);
    for producer in producers {
        producer.join().expect("producer");
    }
    let acknowledged = acknowledged.lock().expect("lock").clone();
    let total_acked: usize = acknowledged.values().map(Vec::len).sum();
    assert!(total_acked > 0, "producers wrote nothing before the kill");

    let server = Server::start(dir.path(), &["--segment-bytes", "65536"]);
    let agent = agent();
    let shards = kinesis(
        &agent,
        &server.endpoint,
        "ListShards",
        json!({"StreamName": "c"}),
    )
    .expect("list");
    let mut read: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for shard in shards["Shards"].as_array().expect("shards") {
        let mut iterator = kinesis(
            &agent,
            &server.endpoint,
            "GetShardIterator",
            json!({"StreamName": "c", "ShardId": shard["ShardId"], "ShardIteratorType": "TRIM_HORIZON"}),
        )
        .expect("iterator")["ShardIterator"]
            .clone();
        loop {
            let page = kinesis(
                &agent,
                &server.endpoint,
                "GetRecords",
                json!({"ShardIterator": iterator}),
            )
            .expect("get");
            let records = page["Records"].as_array().expect("records");
            for record in records {
                let data = base64::engine::general_purpose::STANDARD
                    .decode(record["Data"].as_str().expect("data"))
                    .expect("b64");
                let text = String::from_utf8(data).expect("utf8");
                let (producer, counter) = text.split_once(':').expect("producer:counter");
                read.entry(producer.parse().expect("producer"))
                    .or_default()
                    .push(counter.parse().expect("counter"));
            }
            if records.is_empty() {
                break;
            }
            iterator = page["NextShardIterator"].clone();
        }
    }
    for (producer, acked) in &acknowledged {
        let got = read.get(producer).cloned().unwrap_or_default();
        // once: no duplicates at all
        let unique: BTreeSet<u64> = got.iter().copied().collect();
        assert_eq!(
            unique.len(),
            got.len(),
            "producer {producer} has duplicates"
        );
        // in order: a producer's records come back in the order it wrote them
        assert!(
            got.windows(2).all(|w| w[0] < w[1]),
            "producer {producer} out of order"
        );
        // every acknowledged record is there
        for counter in acked {
            assert!(
                unique.contains(counter),
                "producer {producer} lost acknowledged record {counter}"
            );
        }
    }
    eprintln!("crash test: {total_acked} acknowledged records, all read back after SIGKILL");
}
