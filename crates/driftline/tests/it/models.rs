//! A model declared in `PIPELINE.toml`, end to end through HTTP: labelled
//! history put on a stream lands in the lake and trains the first version;
//! predictions are served; labels arrive on a label stream; the fraud pattern
//! changes and a retrain on the joined examples read back from the lake is
//! promoted, with its lineage in the registry.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use driftline_ml::synth::FraudStream;
use serde_json::{json, Value};

use crate::util::{agent, call, Server};

fn ingest(endpoint: &str, stream: &str, lines: &[Value]) {
    for chunk in lines.chunks(1000) {
        let body: String = chunk.iter().map(|l| format!("{l}\n")).collect();
        let mut response = agent()
            .post(&format!("{endpoint}/v1/streams/{stream}/records"))
            .send(body)
            .expect("ingest");
        let text = response.body_mut().read_to_string().unwrap_or_default();
        assert_eq!(response.status().as_u16(), 200, "{text}");
    }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_declared_model_bootstraps_from_the_lake_serves_joins_streamed_labels_and_retrains() {
    let dir = tempfile::tempdir().expect("dir");
    let mut command = Command::new(env!("CARGO_BIN_EXE_driftline"));
    command
        .arg("run")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/model.toml"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--progress-every",
            "60",
            "--durability",
            "os",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .arg("--lake")
        .arg(dir.path().join("lake"));
    let mut server = Server::spawn(command);
    let base = server.endpoint.clone();
    // no champion and no history yet: the model is not served
    assert_eq!(call("GET", &format!("{base}/v1/models/fraud"), None).0, 404);

    // the abrupt change comes at a third: 1,000 labelled events of history first
    let mut stream = FraudStream::new(11, 9000);
    let history: Vec<Value> = stream
        .by_ref()
        .take(1000)
        .map(|t| {
            let mut event = t.features.clone();
            event["fraud"] = json!(t.fraud);
            event
        })
        .collect();
    ingest(&base, "history", &history);
    wait_for("the first version", || {
        call("GET", &format!("{base}/v1/models/fraud"), None).0 == 200
    });

    // predictions, with their outcomes sent on the label stream a batch later
    let mut pending: Vec<Value> = Vec::new();
    let mut predicted = 0;
    for chunk in stream.take(8000).collect::<Vec<_>>().chunks(250) {
        let events: Vec<Value> = chunk.iter().map(|t| t.features.clone()).collect();
        let (status, answer) = call(
            "POST",
            &format!("{base}/v1/models/fraud/predict"),
            Some(json!({"instances": events})),
        );
        assert_eq!(status, 200, "{answer}");
        let predictions = answer["predictions"].as_array().expect("predictions");
        assert_eq!(predictions.len(), chunk.len());
        ingest(&base, "fraud-labels", &pending);
        pending = predictions
            .iter()
            .zip(chunk)
            .map(|(p, t)| json!({"request_id": p["request_id"], "label": u8::from(t.fraud)}))
            .collect();
        predicted += chunk.len();
    }
    ingest(&base, "fraud-labels", &pending);
    assert_eq!(predicted, 8000);

    // every label joined through the stream; the drift retrained and promoted a version
    let mut status = Value::Null;
    wait_for("the labels and a promotion", || {
        status = call("GET", &format!("{base}/v1/models/fraud"), None).1;
        status["counters"]["joined"] == 8000 && status["champion"].as_u64() > Some(1)
    });
    assert_eq!(status["counters"]["unmatched_labels"], 0, "{status}");
    let versions = status["versions"].as_array().expect("versions");
    // v1 was trained on the history table, a later one on the joined examples
    let first = &versions[0]["training"];
    assert!(
        first["lake_objects"][0]
            .as_str()
            .unwrap_or("")
            .starts_with("history/"),
        "{first}"
    );
    assert!(first["examples"].as_u64() >= Some(750), "{first}");
    let champion = status["champion"].as_u64().expect("champion");
    let promoted = versions
        .iter()
        .find(|v| v["version"].as_u64() == Some(champion))
        .expect("the champion's record");
    let training = &promoted["training"];
    assert!(
        training["lake_objects"]
            .as_array()
            .is_some_and(|objects| objects
                .iter()
                .all(|o| o.as_str().unwrap_or("").starts_with("fraud_joined/"))),
        "{training}"
    );
    assert!(
        training["stream_positions"]
            .as_object()
            .is_some_and(|p| !p.is_empty()),
        "{training}"
    );
    assert_eq!(
        promoted["parent"].as_u64().map(|p| p < champion),
        Some(true)
    );
    // SIGTERM: the pipeline stops cleanly
    let pid = server.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill")
        .success());
    assert!(server.child.wait().expect("wait").success());
}
