//! The SageMaker container contract on a temporary `/opt/ml`-shaped
//! directory: `driftline sagemaker train` reads the hyperparameters and the
//! training channel and writes the model (or `output/failure` with the
//! reason); `driftline sagemaker serve` answers `/ping` and `/invocations`.

use std::path::Path;
use std::process::Command;

use driftline_ml::synth::{FraudStream, FRAUD_FEATURES};
use serde_json::{json, Value};

use crate::util::{call, Server};

fn write_channel(root: &Path) {
    let channel = root.join("input/data/train");
    std::fs::create_dir_all(&channel).expect("channel");
    let header = format!("{},fraud\n", FRAUD_FEATURES.join(","));
    let mut stream = FraudStream::new(4, 100_000);
    // two CSV files of one header: the channel is read as one
    for part in 0..2 {
        let mut text = header.clone();
        for t in stream.by_ref().take(1500) {
            let number = |v: &Value| v.as_f64().or(v.as_bool().map(f64::from)).expect("number");
            let fields: Vec<String> = FRAUD_FEATURES
                .iter()
                .map(|f| number(&t.features[*f]).to_string())
                .collect();
            text.push_str(&format!("{},{}\n", fields.join(","), u8::from(t.fraud)));
        }
        std::fs::write(channel.join(format!("part-{part}.csv")), text).expect("write");
    }
}

fn sagemaker(args: &[&str], root: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_driftline"))
        .arg("sagemaker")
        .args(args)
        .arg("--root")
        .arg(root)
        .output()
        .expect("driftline sagemaker")
}

#[test]
fn a_training_job_writes_the_model_and_the_endpoint_serves_it() {
    let root = tempfile::tempdir().expect("root");
    let root = root.path();
    write_channel(root);
    let config = root.join("input/config");
    std::fs::create_dir_all(&config).expect("config");
    std::fs::write(
        config.join("hyperparameters.json"),
        json!({"target": "fraud", "learner": "gbt", "seed": "3"}).to_string(),
    )
    .expect("hyperparameters");
    let output = sagemaker(&["train"], root);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let accuracy: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("validation:accuracy="))
        .expect("a metric line for SageMaker's metric definitions")
        .parse()
        .expect("a number");
    assert!(accuracy > 0.85, "{stdout}");
    let description: Value =
        serde_json::from_slice(&std::fs::read(root.join("model/model.json")).expect("model.json"))
            .expect("json");
    assert_eq!(description["examples"], 3000);
    assert_eq!(description["classes"], json!(["0", "1"]));
    assert!(!root.join("output/failure").exists());

    // the endpoint container
    let mut command = Command::new(env!("CARGO_BIN_EXE_driftline"));
    command
        .args(["sagemaker", "serve", "--listen", "127.0.0.1:0", "--root"])
        .arg(root);
    let server = Server::spawn(command);
    let base = &server.endpoint;
    assert_eq!(call("GET", &format!("{base}/ping"), None).0, 200);
    let event = json!({"amount": 950.0, "hour": 3, "distance_km": 400.0, "merchant_risk": 0.9,
        "card_present": 0, "velocity_1h": 6, "foreign": 1});
    let (status, answer) = call("POST", &format!("{base}/invocations"), Some(event));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["probabilities"].as_array().map(Vec::len),
        Some(2),
        "{answer}"
    );
    let (status, answer) = call(
        "POST",
        &format!("{base}/invocations"),
        Some(json!({"amount": "a lot"})),
    );
    assert_eq!(status, 400, "{answer}");
}

#[test]
fn a_failed_training_job_says_why_in_output_failure() {
    let root = tempfile::tempdir().expect("root");
    let root = root.path();
    write_channel(root);
    // no target hyperparameter
    let output = sagemaker(&["train"], root);
    assert!(!output.status.success());
    let failure = std::fs::read_to_string(root.join("output/failure")).expect("failure file");
    assert!(failure.contains("\"target\""), "{failure}");
    // a target that is not a column
    let config = root.join("input/config");
    std::fs::create_dir_all(&config).expect("config");
    std::fs::write(
        config.join("hyperparameters.json"),
        r#"{"target": "label"}"#,
    )
    .expect("write");
    assert!(!sagemaker(&["train"], root).status.success());
    let failure = std::fs::read_to_string(root.join("output/failure")).expect("failure file");
    assert!(failure.contains("no target column \"label\""), "{failure}");
}
