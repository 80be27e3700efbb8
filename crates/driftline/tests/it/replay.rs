//! A declared model's lifecycle replayed by `driftline backtest --pipeline`:
//! the same decisions as serving takes on the same traffic (parity with the
//! demo's stream and model), data-drift retrains only when declared, and
//! `FILE:LINE` errors for what a model cannot declare.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use driftline_lake::{Lake, Registry};
use driftline_ml::features::Encoder;
use driftline_ml::synth::{FraudStream, FRAUD_FEATURES};
use driftline_pipeline::lifecycle::{ModelService, TrainingPool};
use driftline_pipeline::PipelineConfig;
use serde_json::Value;

/// The demo's pipeline and model: one definition, the demo's own.
const DEMO_PIPELINE: &str = include_str!("../../demo/PIPELINE.toml");
const DEMO_SEED: u64 = 7;
const ROWS: usize = 14_000;
const BOOTSTRAP: usize = 2000;
const DELAY: usize = 200;
const RATE: f64 = 2000.0;

fn driftline(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_driftline"))
        .args(args)
        .output()
        .expect("run driftline")
}

fn replay(pipeline: &Path, model: &str, data: &Path, extra: &[&str]) -> Value {
    let out = pipeline.with_file_name(format!("{model}-replay.json"));
    let mut args = vec![
        "backtest",
        "--pipeline",
        pipeline.to_str().expect("path"),
        "--model",
        model,
        data.to_str().expect("path"),
        "--json",
        out.to_str().expect("path"),
        "--quiet",
    ];
    args.extend_from_slice(extra);
    let output = driftline(&args);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&std::fs::read(&out).expect("json")).expect("valid json")
}

/// The events of a replay, as serving reports them (without where and when).
fn replayed_events(summary: &Value) -> Vec<Value> {
    summary["replay"]["decisions"]
        .as_array()
        .expect("decisions")
        .iter()
        .map(|step| {
            let mut event = step.clone();
            let map = event.as_object_mut().expect("object");
            map.remove("index");
            map.remove("at_ms");
            event
        })
        .collect()
}

fn kinds(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["event"].as_str().unwrap_or_default())
        .collect()
}

/// The demo's stream as a recorded file: its features and the label.
fn demo_stream(dir: &Path) -> (PathBuf, Vec<(Value, usize)>) {
    let rows: Vec<(Value, usize)> = FraudStream::new(DEMO_SEED, ROWS as u64)
        .take(ROWS)
        .map(|t| (t.features, usize::from(t.fraud)))
        .collect();
    let path = dir.join("demo-stream.csv");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
    writeln!(file, "{},label", FRAUD_FEATURES.join(",")).expect("write");
    for (features, label) in &rows {
        let fields: Vec<String> = FRAUD_FEATURES
            .iter()
            .map(|name| match &features[*name] {
                // Display of an f64 reads back as the same f64.
                Value::Number(n) => n.as_f64().expect("number").to_string(),
                other => other.to_string(),
            })
            .collect();
        writeln!(file, "{},{label}", fields.join(",")).expect("write");
    }
    file.flush().expect("flush");
    (path, rows)
}

/// The demo's stream fed through the live lifecycle (the served
/// `ModelService`) by an in-process driver: no wall-clock pacing, the
/// simulated clock the replay uses, each step waited for.
fn served_events(pipeline: &PipelineConfig, rows: &[(Value, usize)]) -> Vec<Value> {
    let runtime = crate::util::runtime();
    let model = &pipeline.models[0];
    let lifecycle = model.lifecycle().expect("lifecycle");
    let features = model.features().to_vec();
    let registry =
        Registry::new(Lake::open("memory://").expect("lake"), model.name()).expect("registry");
    let names: Vec<&str> = features.iter().map(String::as_str).collect();
    let mut encoder = Encoder::numeric(&names);
    let history: Vec<(Vec<f64>, usize)> = rows[..BOOTSTRAP]
        .iter()
        .map(|(x, y)| (encoder.encode_json(x).expect("encode"), *y))
        .collect();
    let first = runtime
        .block_on(ModelService::bootstrap(
            &registry,
            &lifecycle,
            encoder,
            model.classes,
            history,
        ))
        .expect("bootstrap");
    let _entered = runtime.enter();
    let service = ModelService::new(
        model.name(),
        lifecycle,
        model.classes,
        registry,
        first,
        None,
    );
    let clock = Arc::new(AtomicI64::new(0));
    service.simulate_clock(clock.clone());
    service.train_in(TrainingPool::new(1));
    let mut waiting: VecDeque<(usize, String, usize)> = VecDeque::new();
    for (i, (features, label)) in rows.iter().enumerate().skip(BOOTSTRAP) {
        clock.store((i as f64 * 1000.0 / RATE) as i64, Ordering::Release);
        let prediction = service.predict(features).expect("predict");
        runtime.block_on(service.settled());
        waiting.push_back((i, prediction.request_id, *label));
        while waiting.front().is_some_and(|(at, _, _)| at + DELAY <= i) {
            let (_, id, label) = waiting.pop_front().expect("waiting");
            service.label(&id, label).expect("label");
            runtime.block_on(service.settled());
        }
    }
    for (_, id, label) in waiting {
        service.label(&id, label).expect("label");
        runtime.block_on(service.settled());
    }
    service
        .history()
        .iter()
        .map(|e| serde_json::to_value(e).expect("event"))
        .collect()
}

#[test]
fn the_demo_model_replayed_decides_as_it_does_when_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline_path = dir.path().join("PIPELINE.toml");
    std::fs::write(&pipeline_path, DEMO_PIPELINE).expect("write");
    let (data, rows) = demo_stream(dir.path());
    let rate = RATE.to_string();
    let (delay, bootstrap) = (DELAY.to_string(), BOOTSTRAP.to_string());
    let summary = replay(
        &pipeline_path,
        "fraud",
        &data,
        &[
            "--delay",
            &delay,
            "--rate",
            &rate,
            "--bootstrap",
            &bootstrap,
        ],
    );
    let replayed = replayed_events(&summary);
    let pipeline = PipelineConfig::parse(DEMO_PIPELINE, Path::new("demo")).expect("pipeline");
    let served = served_events(&pipeline, &rows);
    // Something happened: the demo's stream changes abruptly at a third.
    let seen = kinds(&replayed);
    for kind in ["drift_alarm", "retrain", "promoted"] {
        assert!(seen.contains(&kind), "no {kind} in {seen:?}");
    }
    assert_eq!(kinds(&served), seen, "the same decisions in the same order");
    assert_eq!(served, replayed, "the same decisions, reasons and figures");
}

/// Two numeric features; the label depends on `x1` alone; `x2` shifts at
/// half the rows: the inputs drift, the concept does not.
fn shifting_inputs(dir: &Path) -> PathBuf {
    let path = dir.join("shift.csv");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
    writeln!(file, "x1,x2,t,label").expect("write");
    let mut state = 11u64;
    let mut next = || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    for i in 0..12_000u64 {
        let x1 = next();
        let x2 = next() + if i >= 6000 { 3.0 } else { 0.0 };
        // one row every 10 ms, as seconds since the epoch
        let t = 1_795_564_800.0 + i as f64 / 100.0;
        writeln!(file, "{x1},{x2},{t},{}", u8::from(x1 > 0.5)).expect("write");
    }
    file.flush().expect("flush");
    path
}

fn shift_pipeline(dir: &Path, retrain_on: &str) -> PathBuf {
    let path = dir.join(format!("shift-{}.toml", retrain_on.len()));
    std::fs::write(
        &path,
        format!(
            r#"[lake]
url = "{}"

[[model]]
name = "risk"
features = ["x1", "x2"]
classes = 2
learner = "lr"

[model.monitors]
data = {{ test = "psi", threshold = 0.25, window = 1000, every = 500 }}
retrain_on = {retrain_on}
"#,
            dir.join("lake").display()
        ),
    )
    .expect("write");
    path
}

#[test]
fn a_data_drift_alarm_retrains_a_replayed_model_only_when_it_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = shifting_inputs(dir.path());
    let retrains_on_data = |retrain_on: &str| -> (Vec<Value>, bool) {
        let pipeline = shift_pipeline(dir.path(), retrain_on);
        let summary = replay(
            &pipeline,
            "risk",
            &data,
            &["--time", "t", "--bootstrap", "2000"],
        );
        assert_eq!(summary["replay"]["events"], 10_000);
        assert_eq!(summary["clock"]["column"], "t");
        let events = replayed_events(&summary);
        let alarms: Vec<Value> = events
            .iter()
            .filter(|e| e["event"] == "data_drift")
            .cloned()
            .collect();
        let retrained = events.iter().any(|e| {
            e["event"] == "retrain"
                && e["trigger"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("data drift on x2 (psi"))
        });
        (alarms, retrained)
    };
    let (alarms, retrained) = retrains_on_data(r#"["concept"]"#);
    assert!(
        alarms.iter().any(|a| a["feature"] == "x2"),
        "the shift is seen: {alarms:?}"
    );
    assert!(!retrained, "data alarms do not retrain unless declared");
    let (alarms, retrained) = retrains_on_data(r#"["concept", "data"]"#);
    assert!(alarms.iter().any(|a| a["feature"] == "x2"), "{alarms:?}");
    assert!(retrained, "a data alarm retrains when declared");
    // x1, whose distribution never moves, never alarms
    assert!(!alarms.iter().any(|a| a["feature"] == "x1"), "{alarms:?}");

    // the report opens in a real browser: the metric over time, each
    // decision marked where it was taken and listed with its reason
    let pipeline = shift_pipeline(dir.path(), r#"["concept", "data"]"#);
    let html = dir.path().join("replay.html");
    let summary = replay(
        &pipeline,
        "risk",
        &data,
        &[
            "--time",
            "t",
            "--bootstrap",
            "2000",
            "--html",
            html.to_str().expect("path"),
        ],
    );
    let dom = crate::util::browser_dom(&html);
    assert_eq!(dom.matches("<svg class=\"chart\"").count(), 1, "{dom}");
    for line in ["served", "first-version"] {
        assert!(
            dom.contains(&format!("<polyline class=\"{line}\"")),
            "{line}"
        );
    }
    assert!(
        dom.contains("<g class=\"data-drift\">"),
        "data-drift alarms are marked"
    );
    assert!(dom.contains("<g class=\"retrain\">"), "retrains are marked");
    let decisions = summary["replay"]["decisions"]
        .as_array()
        .expect("decisions")
        .len();
    let rows = dom
        .split("<h2>Decisions</h2>")
        .nth(1)
        .unwrap_or_default()
        .matches("<tr>")
        .count();
    assert_eq!(rows, decisions + 1, "a row per decision under the header");
    assert!(dom.contains("data drift on x2"), "reasons are given");
}

#[test]
fn what_a_model_cannot_declare_or_replay_is_named_with_its_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = shifting_inputs(dir.path());
    let pipeline = dir.path().join("bad.toml");
    std::fs::write(
        &pipeline,
        "[lake]\nurl = \"memory://\"\n\n[[model]]\nname = \"risk\"\nfeatures = [\"x1\", \"x2\"]\nclasses = 2\n\n[model.monitors]\nconcept = { detector = \"adwinn\" }\n",
    )
    .expect("write");
    let run = |args: &[&str]| {
        let output = driftline(args);
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).to_string()
    };
    let (p, d) = (
        pipeline.to_str().expect("path"),
        data.to_str().expect("path"),
    );
    let stderr = run(&["backtest", "--pipeline", p, "--model", "risk", d]);
    assert!(stderr.contains("bad.toml:10"), "{stderr}");
    assert!(stderr.contains("adwinn"), "{stderr}");
    let good = shift_pipeline(dir.path(), r#"["concept"]"#);
    let g = good.to_str().expect("path");
    let stderr = run(&["backtest", "--pipeline", g, "--model", "nope", d]);
    assert!(
        stderr.contains("declares no model \"nope\"") && stderr.contains("risk"),
        "{stderr}"
    );
    let stderr = run(&[
        "backtest",
        "--pipeline",
        g,
        "--model",
        "risk",
        d,
        "--target",
        "y",
    ]);
    assert!(stderr.contains("no label column \"y\""), "{stderr}");
    let stderr = run(&[
        "backtest",
        "--pipeline",
        g,
        "--model",
        "risk",
        "missing_table",
    ]);
    assert!(stderr.contains("missing_table"), "{stderr}");
}
