//! The `driftline-lambda` binary under a stand-in for Lambda's runtime API
//! (the HTTP interface the Lambda service offers a function's process): it
//! takes a recorded Kinesis batch from `/invocation/next`, runs the
//! pipeline's processor on it, delivers to the lake and answers with the
//! partial batch failure.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};

const PIPELINE: &str = r#"
[[stream]]
name = "events"
[[schema]]
name = "event"
fields = [{ name = "id", type = "string" }, { name = "amount", type = "float" }]
[[processor]]
name = "events"
stream = "events"
schema = "event"
[lake]
"#;

/// One HTTP/1.1 request from a keep-alive connection: method, path, body.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<(String, String, Vec<u8>)> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut length = 0;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        if header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((method, path, body))
}

/// Serves one invocation of `payload`, then sends what the function answered.
fn runtime_api(payload: Value, answers: mpsc::Sender<(String, Value)>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        let mut served = false;
        for stream in listener.incoming().flatten() {
            let mut writer = stream.try_clone().expect("clone");
            let mut reader = BufReader::new(stream);
            while let Some((method, path, body)) = read_request(&mut reader) {
                if method == "GET" && path.ends_with("/invocation/next") {
                    if served {
                        // one invocation only: the function waits here until it is stopped
                        std::thread::sleep(Duration::from_secs(60));
                        return;
                    }
                    served = true;
                    let body = payload.to_string();
                    let _ = write!(
                        writer,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nLambda-Runtime-Aws-Request-Id: req-1\r\nLambda-Runtime-Deadline-Ms: 9999999999999\r\nLambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:123456789012:function:events\r\nLambda-Runtime-Trace-Id: Root=1-0-0\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                } else {
                    let kind = if path.ends_with("/response") {
                        "response"
                    } else {
                        "error"
                    };
                    let answer = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let _ = answers.send((kind.to_string(), answer));
                    let _ = write!(writer, "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n");
                }
            }
        }
    });
    address
}

#[test]
fn the_function_binary_handles_a_kinesis_batch_under_the_runtime_api() {
    let dir = tempfile::tempdir().expect("dir");
    let pipeline = dir.path().join("pipeline.toml");
    std::fs::write(&pipeline, PIPELINE).expect("pipeline");
    let payload: Value = serde_json::from_slice(
        &std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../driftline-pipeline/tests/payloads/kinesis.json"),
        )
        .expect("payload"),
    )
    .expect("json");
    let (answers, answered) = mpsc::channel();
    let api = runtime_api(payload, answers);
    let mut function = Command::new(env!("CARGO_BIN_EXE_driftline-lambda"))
        .env("AWS_LAMBDA_RUNTIME_API", &api)
        .env("AWS_LAMBDA_FUNCTION_NAME", "events")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "stream")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/events")
        .env("DRIFTLINE_PIPELINE", &pipeline)
        .env("DRIFTLINE_PROCESSOR", "events")
        .env("DRIFTLINE_LAKE", dir.path().join("lake"))
        .stdout(Stdio::null())
        .spawn()
        .expect("driftline-lambda");
    let answer = answered.recv_timeout(Duration::from_secs(60));
    let _ = function.kill();
    let _ = function.wait();
    let (kind, answer) = answer.expect("an answer from the function");
    assert_eq!(kind, "response", "{answer}");
    assert_eq!(
        answer,
        json!({"batchItemFailures": [{"itemIdentifier": "49590338271490256608559692538361571095921575989136588803"}]})
    );
    // the two records before the refused one are in the lake
    let mut parquet = Vec::new();
    let mut stack = vec![dir.path().join("lake/events")];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("dir").flatten() {
            if entry.path().is_dir() {
                stack.push(entry.path());
            } else {
                parquet.push(entry.path());
            }
        }
    }
    assert_eq!(parquet.len(), 1, "{parquet:?}");
}

/// The glibc symbol versions a binary needs (`GLIBC_2.N` in its dynamic
/// string table), the highest first.
fn glibc_versions(binary: &[u8]) -> Vec<(u32, u32)> {
    let mut versions: Vec<(u32, u32)> = binary
        .windows(6)
        .enumerate()
        .filter(|(_, w)| *w == b"GLIBC_")
        .filter_map(|(at, _)| {
            let rest = &binary[at + 6..binary.len().min(at + 16)];
            let text: String = rest
                .iter()
                .take_while(|b| b.is_ascii_digit() || **b == b'.')
                .map(|b| *b as char)
                .collect();
            let mut parts = text.split('.').map(str::parse::<u32>);
            match (parts.next(), parts.next()) {
                (Some(Ok(major)), Some(Ok(minor))) => Some((major, minor)),
                _ => None,
            }
        })
        .collect();
    versions.sort_unstable_by(|a, b| b.cmp(a));
    versions.dedup();
    versions
}

/// Lambda's `provided.al2023` runtime has glibc 2.34: the function binary
/// built here (Debian, glibc 2.36) must not need a newer symbol.
#[test]
fn the_function_binary_runs_on_amazon_linux_2023_glibc() {
    let binary = std::fs::read(env!("CARGO_BIN_EXE_driftline-lambda")).expect("binary");
    let versions = glibc_versions(&binary);
    assert!(
        !versions.is_empty(),
        "a dynamically linked binary names glibc versions"
    );
    assert!(
        versions[0] <= (2, 34),
        "needs GLIBC_{}.{}",
        versions[0].0,
        versions[0].1
    );
    assert_eq!(
        glibc_versions(b"..GLIBC_2.17\0GLIBC_2.34\0GLIBC_2.4\0"),
        vec![(2, 34), (2, 17), (2, 4)]
    );
}
