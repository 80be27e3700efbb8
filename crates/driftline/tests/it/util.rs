use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// A `driftline serve` process on a free loopback port, killed on drop.
pub struct Server {
    pub child: Child,
    pub endpoint: String,
}

impl Server {
    pub fn start(dir: &Path, extra: &[&str]) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_driftline"));
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .args(extra);
        Server::spawn(command)
    }

    /// Starts any command that runs `driftline serve` and prints its banner.
    pub fn spawn(mut command: Command) -> Server {
        let mut child = command
            .env("DRIFTLINE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn driftline serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read banner");
        let Some(endpoint) = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .map(str::to_string)
        else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no address in banner {line:?}");
        };
        Server { child, endpoint }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn sdk_client(endpoint: &str) -> aws_sdk_kinesis::Client {
    use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .build();
    aws_sdk_kinesis::Client::from_conf(config)
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The `driftline` binary with `DRIFTLINE_ENDPOINT` set.
pub fn driftline(endpoint: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_driftline"));
    command
        .env("DRIFTLINE_ENDPOINT", endpoint)
        .env("DRIFTLINE_LOG", "warn");
    command
}

/// One Kinesis call in JSON 1.1: the HTTP status and the JSON answer.
pub fn kinesis_json(
    endpoint: &str,
    operation: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let agent = agent();
    let mut response = agent
        .post(endpoint)
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", &format!("Kinesis_20131202.{operation}"))
        .send(body.to_string())
        .expect("request");
    let status = response.status().as_u16();
    (
        status,
        response.body_mut().read_json().expect("json answer"),
    )
}

/// An HTTP client that hands back error statuses as answers, with a timeout
/// so a test against a dead server fails instead of hanging.
pub fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(10)))
            .build(),
    )
}

/// An HTTP call with a JSON body (or none); the status and the JSON answer
/// (the text as a JSON string when it is not JSON).
pub fn call(method: &str, url: &str, body: Option<Value>) -> (u16, Value) {
    let agent = agent();
    let mut response = match body {
        Some(body) => agent
            .post(url)
            .header("content-type", "application/json")
            .send(body.to_string()),
        None if method == "GET" => agent.get(url).call(),
        None => agent.post(url).send(""),
    }
    .expect("request");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}
