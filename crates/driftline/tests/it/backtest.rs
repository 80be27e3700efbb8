//! `driftline backtest` end to end: a recorded stream in, the JSON summary and
//! the HTML report out, the report rendered by headless Chromium.

use std::io::Write;
use std::process::Command;

use serde_json::Value;

/// A gzipped CSV with a string label, a categorical column and a concept that
/// flips at row 3000 of 6000.
fn write_stream(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("flip.csv.gz");
    let file = std::fs::File::create(&path).expect("create");
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    writeln!(gz, "amount,channel,noise,label").expect("write");
    let mut state = 7u64;
    let mut next = || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    for i in 0..6000 {
        let amount = next() * 100.0;
        let channel = ["web", "pos", "atm"][(next() * 3.0) as usize % 3];
        let fraud = (amount > 60.0) != (i >= 3000);
        writeln!(
            gz,
            "{amount:.3},{channel},{:.3},{}",
            next(),
            if fraud { "fraud" } else { "ok" }
        )
        .expect("write");
    }
    gz.finish().expect("finish");
    path
}

fn driftline(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_driftline"))
        .args(args)
        .output()
        .expect("run driftline")
}

#[test]
fn a_backtest_writes_a_summary_per_model_and_policy_and_a_report_that_renders() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stream = write_stream(dir.path());
    let (json_path, html_path) = (dir.path().join("out.json"), dir.path().join("out.html"));
    let output = driftline(&[
        "backtest",
        stream.to_str().expect("path"),
        "--target",
        "label",
        "--model",
        "ht",
        "--model",
        "lr",
        "--policy",
        "online",
        "--policy",
        "never+drift:adwin",
        "--window",
        "500",
        "--json",
        json_path.to_str().expect("path"),
        "--html",
        html_path.to_str().expect("path"),
        "--quiet",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: Value =
        serde_json::from_slice(&std::fs::read(&json_path).expect("json")).expect("valid json");
    assert_eq!(summary["samples"], 6000);
    assert_eq!(summary["classes"], serde_json::json!(["fraud", "ok"]));
    let runs = summary["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 4);
    for run in runs {
        let accuracy = run["metrics"]["accuracy"].as_f64().expect("accuracy");
        assert!((0.0..=1.0).contains(&accuracy), "{run}");
        assert!(run["metrics"]["log_loss"].as_f64().is_some());
        assert!(run["metrics"]["f1_macro"].as_f64().is_some());
        assert!(run["samples_per_second"].as_f64().is_some_and(|s| s > 0.0));
        assert!(run["drifts"].is_array() && run["retrains"].is_array());
        assert_eq!(run["windowed"].as_array().map(Vec::len), Some(12));
    }
    // the drift policy notices the flip and retrains after it
    let drift_run = runs
        .iter()
        .find(|r| r["model"] == "ht" && r["policy"] == "never+drift:adwin")
        .expect("run");
    let drifts: Vec<u64> = drift_run["drifts"]
        .as_array()
        .expect("drifts")
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    assert!(
        drifts.iter().any(|d| (3000..3600).contains(d)),
        "{drifts:?}"
    );
    let last_window = &drift_run["windowed"][11]["metrics"]["accuracy"];
    assert!(last_window.as_f64() > Some(0.9), "{drift_run}");

    // the report opens in a real browser: the charts exist and hold one line per run
    let dom = crate::util::browser_dom(&html_path);
    assert_eq!(dom.matches("<svg class=\"chart\"").count(), 2, "{dom}");
    let lines: Vec<&str> = dom.split("<polyline class=\"run\"").skip(1).collect();
    assert_eq!(lines.len(), 8, "two charts x four runs");
    for line in lines {
        let points = line
            .split("points=\"")
            .nth(1)
            .and_then(|p| p.split('"').next())
            .unwrap_or_default();
        assert_eq!(points.split_whitespace().count(), 12, "{points}");
    }
    assert!(dom.contains("class=\"drift\""), "drift markers are drawn");
    assert!(
        dom.contains("class=\"retrain\""),
        "retrain markers are drawn"
    );
}

#[test]
fn bad_backtest_input_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stream = write_stream(dir.path());
    let file = stream.to_str().expect("path");
    let cases: [(&[&str], &str); 5] = [
        (
            &["backtest", file, "--target", "nope"],
            "no target column \"nope\"",
        ),
        (
            &["backtest", file, "--target", "label", "--model", "magic"],
            "unknown model \"magic\"",
        ),
        (
            &[
                "backtest",
                file,
                "--target",
                "label",
                "--policy",
                "sometimes",
            ],
            "unknown policy \"sometimes\"",
        ),
        (
            &["backtest", "/nonexistent.csv", "--target", "y"],
            "cannot open /nonexistent.csv",
        ),
        (
            &["backtest", "/nonexistent.parquet", "--target", "y"],
            "cannot open /nonexistent.parquet",
        ),
    ];
    for (args, expected) in cases {
        let output = driftline(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    let ragged = dir.path().join("ragged.csv");
    std::fs::write(&ragged, "a,b,y\n1,2,0\n1,0\n").expect("write");
    let output = driftline(&["backtest", ragged.to_str().expect("path"), "--target", "y"]);
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("row 3"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn parquet_and_csv_of_the_same_stream_backtest_alike() {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray};

    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("s.csv");
    let parquet = dir.path().join("s.parquet");
    let mut text = String::from("x,kind,y\n");
    let (mut xs, mut kinds, mut ys) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..3000u32 {
        let x = f64::from((i * 7919) % 1000) / 10.0;
        let kind = ["a", "b"][(i % 2) as usize];
        let y = if (x > 50.0) == (i < 1500) {
            "yes"
        } else {
            "no"
        };
        text.push_str(&format!("{x},{kind},{y}\n"));
        xs.push(x);
        kinds.push(kind);
        ys.push(y);
    }
    std::fs::write(&csv, text).expect("csv");
    let batch = RecordBatch::try_from_iter([
        ("x", Arc::new(Float64Array::from(xs)) as ArrayRef),
        ("kind", Arc::new(StringArray::from(kinds)) as ArrayRef),
        ("y", Arc::new(StringArray::from(ys)) as ArrayRef),
    ])
    .expect("batch");
    let file = std::fs::File::create(&parquet).expect("create");
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");

    let summary = |input: &std::path::Path| -> Value {
        let out = input.with_extension("json");
        let output = driftline(&[
            "backtest",
            input.to_str().expect("path"),
            "--target",
            "y",
            "--model",
            "ht",
            "--policy",
            "online+drift:adwin",
            "--json",
            out.to_str().expect("path"),
            "--quiet",
        ]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&std::fs::read(out).expect("json")).expect("valid")
    };
    let (from_csv, from_parquet) = (summary(&csv), summary(&parquet));
    assert_eq!(from_parquet["samples"], 3000);
    assert_eq!(from_parquet["classes"], from_csv["classes"]);
    assert_eq!(from_parquet["features"], from_csv["features"]);
    assert_eq!(
        from_parquet["runs"][0]["metrics"],
        from_csv["runs"][0]["metrics"]
    );
    assert_eq!(
        from_parquet["runs"][0]["drifts"],
        from_csv["runs"][0]["drifts"]
    );
}
