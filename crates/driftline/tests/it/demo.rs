//! `driftline demo` end to end, then the registry it leaves behind served by
//! `driftline serve --model`, exercised over HTTP; and a SIGKILL in the middle
//! of retraining leaves a registry that reads consistently.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::util::{call, Server};

fn demo(dir: &std::path::Path, events: u64) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_driftline"));
    command
        .args([
            "demo",
            "--rate",
            "unlimited",
            "--events",
            &events.to_string(),
            "--dir",
        ])
        .arg(dir)
        .env("DRIFTLINE_LOG", "warn");
    command
}

/// `driftline serve --model fraud` on a demo's stream and lake.
fn serve_registry(demo_dir: &std::path::Path) -> Server {
    let mut command = Command::new(env!("CARGO_BIN_EXE_driftline"));
    command
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--model",
            "fraud",
            "--data-dir",
        ])
        .arg(demo_dir.join("data"))
        .arg("--lake")
        .arg(demo_dir.join("lake"));
    Server::spawn(command)
}

#[test]
fn the_demo_retrains_after_drift_and_leaves_a_registry_that_serves() {
    let dir = tempfile::tempdir().expect("dir");
    let demo_dir = dir.path().join("demo");
    let summary_path = dir.path().join("summary.json");
    let output = demo(&demo_dir, 12_000)
        .arg("--json")
        .arg(&summary_path)
        .output()
        .expect("run the demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("DRIFT ALARM"), "{stdout}");
    assert!(stdout.contains("PROMOTED"), "{stdout}");
    let summary: Value =
        serde_json::from_slice(&std::fs::read(&summary_path).expect("summary")).expect("json");
    assert_eq!(summary["events"], 12_000);
    assert_eq!(summary["labels_joined"], 12_000);
    assert_eq!(summary["lake_rows"], 12_000);
    assert_eq!(
        summary["joined_rows"], 12_000,
        "every joined example reached the lake"
    );
    assert!(summary["drift_alarms"].as_u64() >= Some(1), "{summary}");
    assert!(summary["promotions"].as_u64() >= Some(1), "{summary}");
    assert!(
        !summary["drift_to_serving_ms"]
            .as_array()
            .expect("list")
            .is_empty(),
        "{summary}"
    );
    for key in ["retrains", "rejections", "rollbacks"] {
        assert!(summary[key].is_u64(), "{key}: {summary}");
    }
    // retraining paid off after the abrupt change
    let after = &summary["phases"][1];
    assert!(
        after["accuracy"].as_f64() > after["frozen_accuracy"].as_f64(),
        "{summary}"
    );

    // the registry left behind, served by another process
    let server = serve_registry(&demo_dir);
    let base = &server.endpoint;
    assert_eq!(call("GET", &format!("{base}/ping"), None).0, 200);
    let event = json!({"amount": 12.5, "hour": 3, "distance_km": 4.0, "merchant_risk": 0.2,
        "card_present": false, "velocity_1h": 4, "foreign": false});
    let (status, prediction) = call(
        "POST",
        &format!("{base}/v1/models/fraud/predict"),
        Some(event.clone()),
    );
    assert_eq!(status, 200, "{prediction}");
    assert_eq!(prediction["version"], summary["champion"]);
    let request_id = prediction["request_id"]
        .as_str()
        .expect("request id")
        .to_string();
    let label = json!({"request_id": request_id, "label": 1});
    let (status, joined) = call(
        "POST",
        &format!("{base}/v1/models/fraud/labels"),
        Some(label.clone()),
    );
    assert_eq!(
        (status, joined["joined"].clone()),
        (200, json!(1)),
        "{joined}"
    );
    let (_, again) = call(
        "POST",
        &format!("{base}/v1/models/fraud/labels"),
        Some(label),
    );
    assert_eq!(again["unmatched"], json!([request_id]));
    // batches through SageMaker's route
    let (status, batch) = call(
        "POST",
        &format!("{base}/invocations"),
        Some(json!({"instances": [event, event]})),
    );
    assert_eq!(status, 200, "{batch}");
    assert_eq!(batch["predictions"].as_array().map(Vec::len), Some(2));
    // bad requests are refused with the reason
    let (status, answer) = call(
        "POST",
        &format!("{base}/v1/models/fraud/predict"),
        Some(json!({"amount": "lots"})),
    );
    assert_eq!(status, 400);
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or_default()
            .contains("amount"),
        "{answer}"
    );
    let (status, _) = call(
        "POST",
        &format!("{base}/v1/models/nosuch/predict"),
        Some(json!({})),
    );
    assert_eq!(status, 404);
    let (status, answer) = call(
        "POST",
        &format!("{base}/v1/models/fraud/predict"),
        Some(json!("text")),
    );
    assert_eq!(status, 400, "{answer}");
    // the registry with its lineage
    let (status, model) = call("GET", &format!("{base}/v1/models/fraud"), None);
    assert_eq!(status, 200);
    let versions = model["versions"].as_array().expect("versions");
    assert_eq!(
        versions
            .iter()
            .filter(|v| v["status"] == "champion")
            .count(),
        1
    );
    let champion = versions
        .iter()
        .find(|v| v["status"] == "champion")
        .expect("champion");
    assert_eq!(champion["version"], summary["champion"]);
    assert!(champion["parent"].is_u64(), "{champion}");
    assert!(
        champion["training"]["window"]
            .as_str()
            .is_some_and(|w| !w.is_empty()),
        "{champion}"
    );
    assert!(
        champion["decisions"][0]["reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{champion}"
    );

    // the CLI reads the registry and steers the server
    let lake = demo_dir.join("lake");
    let cli = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_driftline"))
            .args(args)
            .arg("--lake")
            .arg(&lake)
            .output()
            .expect("driftline models");
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).to_string()
    };
    assert_eq!(cli(&["models", "list"]).trim(), "fraud");
    let table = cli(&["models", "list", "fraud"]);
    assert_eq!(
        table
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("champion"))
            .count(),
        1,
        "{table}"
    );
    let shown: Value = serde_json::from_str(&cli(&["models", "show", "fraud", "1"])).expect("json");
    assert_eq!(shown["version"], 1);
    let steer = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_driftline"))
            .args(args)
            .args(["--endpoint", base])
            .output()
            .expect("driftline models");
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice::<Value>(&output.stdout).expect("json")
    };
    let before = summary["champion"].as_u64().expect("champion");
    let rolled = steer(&["models", "rollback", "fraud"]);
    let previous = rolled["champion"].as_u64().expect("champion");
    assert_ne!(previous, before);
    let (_, prediction) = call(
        "POST",
        &format!("{base}/v1/models/fraud/predict"),
        Some(event.clone()),
    );
    assert_eq!(prediction["version"], previous);
    steer(&["models", "promote", "fraud", &before.to_string()]);
    let (_, prediction) = call(
        "POST",
        &format!("{base}/v1/models/fraud/predict"),
        Some(event),
    );
    assert_eq!(prediction["version"], before);
}

#[test]
fn a_sigkill_while_retraining_leaves_a_consistent_registry() {
    let dir = tempfile::tempdir().expect("dir");
    let demo_dir = dir.path().join("demo");
    let mut child = demo(&demo_dir, 200_000)
        .stdout(Stdio::piped())
        .spawn()
        .expect("run the demo");
    let stdout = child.stdout.take().expect("stdout");
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        if line.contains("RETRAIN") {
            break;
        }
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    // the registry reads back whole: one champion, every artifact present
    let server = serve_registry(&demo_dir);
    let (status, model) = call("GET", &format!("{}/v1/models/fraud", server.endpoint), None);
    assert_eq!(status, 200, "{model}");
    let versions = model["versions"].as_array().expect("versions");
    assert_eq!(
        versions
            .iter()
            .filter(|v| v["status"] == "champion")
            .count(),
        1,
        "{model}"
    );
    for version in versions {
        let artifact = demo_dir
            .join("lake")
            .join(version["artifact"].as_str().expect("artifact"));
        assert!(artifact.exists(), "{artifact:?}");
    }
    let (status, _) = call("GET", &format!("{}/ping", server.endpoint), None);
    assert_eq!(status, 200);
}
