//! The CLI verbs against a running server.

use std::io::Write;
use std::process::Stdio;

use crate::util::{driftline, Server};

fn run(endpoint: &str, args: &[&str]) -> (bool, String, String) {
    let output = driftline(endpoint)
        .args(args)
        .output()
        .expect("run driftline");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

/// Runs `driftline` with `input` on its standard input.
fn put(endpoint: &str, args: &[&str], input: &[u8]) -> std::process::Output {
    let mut child = driftline(endpoint)
        .args(args)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn put");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write");
    child.wait_with_output().expect("put")
}

#[test]
fn stream_verbs_put_and_get_round_trip_ndjson() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let endpoint = &server.endpoint;
    let (ok, out, err) = run(endpoint, &["stream", "create", "events", "--shards", "3"]);
    assert!(ok, "{err}");
    assert!(out.contains("created stream events"));
    let (ok, out, _) = run(endpoint, &["stream", "list"]);
    assert!(ok);
    assert_eq!(out.trim(), "events");

    let lines: Vec<String> = (0..1000)
        .map(|i| format!(r#"{{"user":"u{}","n":{i}}}"#, i % 13))
        .collect();
    let output = put(
        endpoint,
        &[
            "put",
            "events",
            "--partition-key",
            "user",
            "--batch-lines",
            "300",
        ],
        lines.join("\n").as_bytes(),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("wrote 1000 records"), "{stderr}");

    let (ok, out, err) = run(endpoint, &["get", "events"]);
    assert!(ok, "{err}");
    let mut got: Vec<&str> = out.lines().collect();
    assert_eq!(got.len(), 1000);
    // per partition key, the order written is kept
    let of_user = |rows: &[&str], user: &str| -> Vec<String> {
        rows.iter()
            .filter(|l| l.contains(&format!("\"{user}\"")))
            .map(|l| l.to_string())
            .collect()
    };
    let expected: Vec<&str> = lines.iter().map(String::as_str).collect();
    assert_eq!(of_user(&got, "u3"), of_user(&expected, "u3"));
    got.sort();
    let mut sorted = expected.clone();
    sorted.sort();
    assert_eq!(got, sorted);

    let (ok, out, _) = run(endpoint, &["get", "events", "--from", "latest"]);
    assert!(ok);
    assert!(out.is_empty());

    let (ok, out, _) = run(endpoint, &["stream", "describe", "events"]);
    assert!(ok);
    let description: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(description["OpenShardCount"], 3);

    // a bad line is reported with its number; the good ones are written
    let output = put(
        endpoint,
        &["put", "events"],
        b"{\"a\":1}\n{oops\n{\"a\":2}\n",
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("line 2") && stderr.contains("wrote 2 records"),
        "{stderr}"
    );

    let (ok, _, err) = run(endpoint, &["stream", "delete", "events"]);
    assert!(ok, "{err}");
    let (ok, _, err) = run(endpoint, &["get", "events"]);
    assert!(!ok);
    assert!(err.contains("ResourceNotFoundException"), "{err}");
}

#[test]
fn a_second_server_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _server = Server::start(dir.path(), &[]);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_driftline"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("in use by another process"));
}
