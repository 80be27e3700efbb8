use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::SystemTime;

use serde_json::Value;

/// The key every test client holds, with every scope: `driftline serve`
/// started by [`Server::start`] requires it, so the SDK, boto3 and CLI tests
/// all run with auth on (servers without keys ignore it).
pub const TEST_KEY_ID: &str = "DLKTESTALLSCOPES0001";
pub const TEST_SECRET: &str = "test-secret-0123456789abcdefghij";

/// Writes a credentials file (mode 600) with the test key and `extra`.
pub fn keys_file(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("keys.toml");
    let text = format!(
        "[[key]]\nid = \"{TEST_KEY_ID}\"\nsecret = \"{TEST_SECRET}\"\nscopes = [\"streams:read\", \"streams:write\", \"streams:admin\", \"models:predict\", \"models:label\", \"models:admin\", \"metrics:read\"]\n\n{extra}"
    );
    std::fs::write(&path, text).expect("write keys");
    private(&path);
    path
}

/// A `driftline serve` process on a free loopback port, killed on drop.
pub struct Server {
    pub child: Child,
    pub endpoint: String,
    /// What it printed before its address (the TLS fingerprint line).
    pub preamble: Vec<String>,
    _keys: Option<tempfile::TempDir>,
}

impl Server {
    /// `driftline serve` with auth on: the test key is required.
    pub fn start(dir: &Path, extra: &[&str]) -> Server {
        let keys = tempfile::tempdir().expect("keys dir");
        let path = keys_file(keys.path(), "");
        let mut server = Server::start_open(
            dir,
            &[&["--auth", path.to_str().expect("utf-8 path")], extra].concat(),
        );
        server._keys = Some(keys);
        server
    }

    /// `driftline serve` with the arguments given and nothing more.
    pub fn start_open(dir: &Path, extra: &[&str]) -> Server {
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
        let mut reader = BufReader::new(stdout);
        let mut preamble = Vec::new();
        // The banner, after at most a few lines (TLS prints its fingerprint first).
        for _ in 0..5 {
            let mut line = String::new();
            if reader.read_line(&mut line).expect("read banner") == 0 {
                break;
            }
            let address = line
                .split_whitespace()
                .find(|w| w.starts_with("http://") || w.starts_with("https://"))
                .map(str::to_string);
            if let Some(endpoint) = address {
                return Server {
                    child,
                    endpoint,
                    preamble,
                    _keys: None,
                };
            }
            preamble.push(line);
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("no address in the banner: {preamble:?}");
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
    sdk_client_with(endpoint, TEST_SECRET, None)
}

/// The SDK's client signing with the test key's id and `secret`, over
/// `http` when given (a client trusting a custom root).
pub fn sdk_client_with(
    endpoint: &str,
    secret: &str,
    http: Option<aws_sdk_kinesis::config::SharedHttpClient>,
) -> aws_sdk_kinesis::Client {
    use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
    let mut config = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(TEST_KEY_ID, secret, None, None, "test"));
    if let Some(http) = http {
        config = config.http_client(http);
    }
    aws_sdk_kinesis::Client::from_conf(config.build())
}

/// Makes a file readable by its owner only, as a credentials file must be.
pub fn private(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
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
        .env("DRIFTLINE_ACCESS_KEY_ID", TEST_KEY_ID)
        .env("DRIFTLINE_SECRET_ACCESS_KEY", TEST_SECRET)
        .env("DRIFTLINE_LOG", "warn");
    command
}

/// SigV4 headers for a Kinesis call to `endpoint`, signed at `time`.
pub fn sigv4_headers(
    endpoint: &str,
    key: (&str, &str),
    time: SystemTime,
    content_type: &str,
    target: &str,
    body: &[u8],
) -> Vec<(String, String)> {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    let host = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest)
        .trim_end_matches('/');
    let headers = [
        ("content-type", content_type),
        ("x-amz-target", target),
        ("host", host),
    ];
    let identity = aws_credential_types::Credentials::new(key.0, key.1, None, None, "test").into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("eu-west-1")
        .name("kinesis")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .expect("params")
        .into();
    let url = format!("{}/", endpoint.trim_end_matches('/'));
    let signable =
        SignableRequest::new("POST", &url, headers.into_iter(), SignableBody::Bytes(body))
            .expect("signable");
    let (instructions, _) = sign(signable, &params).expect("sign").into_parts();
    instructions
        .headers()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// One Kinesis call with a raw body, signed by the test key: the HTTP status
/// and the answer's bytes.
pub fn kinesis_raw(
    endpoint: &str,
    content_type: &str,
    operation: &str,
    body: Vec<u8>,
) -> (u16, Vec<u8>) {
    let target = format!("Kinesis_20131202.{operation}");
    let mut request = agent()
        .post(endpoint)
        .header("content-type", content_type)
        .header("x-amz-target", &target);
    for (name, value) in sigv4_headers(
        endpoint,
        (TEST_KEY_ID, TEST_SECRET),
        SystemTime::now(),
        content_type,
        &target,
        &body,
    ) {
        request = request.header(name, value);
    }
    let mut response = request.send(body).expect("request");
    let status = response.status().as_u16();
    let bytes = response
        .body_mut()
        .with_config()
        .limit(64 * 1024 * 1024)
        .read_to_vec()
        .expect("answer");
    (status, bytes)
}

/// `Authorization: Bearer` for the test key.
pub fn bearer() -> String {
    format!("Bearer {TEST_KEY_ID}:{TEST_SECRET}")
}

/// One Kinesis call in JSON 1.1: the HTTP status and the JSON answer.
pub fn kinesis_json(
    endpoint: &str,
    operation: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let (status, bytes) = kinesis_raw(
        endpoint,
        "application/x-amz-json-1.1",
        operation,
        body.to_string().into_bytes(),
    );
    (status, serde_json::from_slice(&bytes).expect("json answer"))
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
    let auth = bearer();
    let mut response = match body {
        Some(body) => agent
            .post(url)
            .header("content-type", "application/json")
            .header("authorization", &auth)
            .send(body.to_string()),
        None if method == "GET" => agent.get(url).header("authorization", &auth).call(),
        None => agent.post(url).header("authorization", &auth).send(""),
    }
    .expect("request");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The DOM of an HTML file as headless Chromium renders it.
pub fn browser_dom(html: &Path) -> String {
    let profile = tempfile::tempdir().expect("profile");
    let dom = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", html.display()))
        .output()
        .expect("chromium must be installed (.ci/run installs Debian's chromium)");
    String::from_utf8_lossy(&dom.stdout).to_string()
}
