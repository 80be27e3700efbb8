//! Prediction latency and throughput over HTTP on loopback, with keep-alive
//! clients: a registry is made by a short `driftline demo`, then `driftline
//! serve --model fraud` serves its champion (gradient-boosted trees).
//!
//! - open loop at `BENCH_RATE` requests/s (default 10,000), one event per
//!   request, over 16 keep-alive connections (a minimal HTTP/1.1 client, one
//!   thread each) for `BENCH_SECONDS` (default 10): latency from each
//!   request's scheduled time, so a stall is not hidden;
//! - closed loop, batches of 100 events over 4 connections: predictions/s.
//!
//! Both run against the server without keys, then with keys (every request
//! carries `Authorization: Bearer ID:SECRET`), in turn for `BENCH_ROUNDS`
//! rounds (default 3); the p99 difference of each pair and their median are
//! printed.
//!
//! Client and server share the machine's cores. Run it with `bench/serving.sh`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

/// A keep-alive HTTP/1.1 connection sending one prepared POST again and
/// again: the load generator's own cost stays small (no client library, no
/// allocation per request), since it shares the 2 cores with the server.
struct Connection {
    reader: BufReader<std::net::TcpStream>,
    writer: std::net::TcpStream,
    request: Vec<u8>,
    line: String,
    body: Vec<u8>,
}

impl Connection {
    fn open(url: &str, body: &str, auth: Option<&str>) -> Connection {
        let rest = url.strip_prefix("http://").expect("http url");
        let (host, path) = rest.split_at(rest.find('/').expect("path"));
        let stream = std::net::TcpStream::connect(host).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes();
        Connection {
            reader: BufReader::new(stream.try_clone().expect("clone")),
            writer: stream,
            request,
            line: String::new(),
            body: Vec::new(),
        }
    }

    /// Sends the request and reads the whole answer; true on a 2xx.
    fn call(&mut self) -> bool {
        use std::io::{Read, Write};
        if self.writer.write_all(&self.request).is_err() {
            return false;
        }
        let mut status_ok = false;
        let mut length = 0;
        let mut first = true;
        loop {
            self.line.clear();
            if self.reader.read_line(&mut self.line).unwrap_or(0) == 0 {
                return false;
            }
            let line = self.line.trim_end();
            if first {
                status_ok = line.split(' ').nth(1).is_some_and(|c| c.starts_with('2'));
                first = false;
            } else if line.is_empty() {
                break;
            } else if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        self.body.resize(length, 0);
        status_ok && self.reader.read_exact(&mut self.body).is_ok()
    }
}

const BENCH_KEY: (&str, &str) = ("DLKBENCH000000000001", "bench-secret-0123456789abcdef");

/// `driftline serve --model fraud` on the demo's registry, with keys or without.
fn start_server(
    demo: &std::path::Path,
    keys: Option<&std::path::Path>,
) -> (std::process::Child, String) {
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
        .arg(demo.join("data"))
        .arg("--lake")
        .arg(demo.join("lake"));
    if let Some(keys) = keys {
        command.arg("--auth").arg(keys);
    }
    let mut server = command
        .env("DRIFTLINE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    let mut banner = String::new();
    BufReader::new(server.stdout.take().expect("stdout"))
        .read_line(&mut banner)
        .expect("banner");
    let endpoint = banner
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("address")
        .to_string();
    (server, endpoint)
}

const EVENT: &str = r#"{"amount": 42.5, "hour": 3, "distance_km": 12.0, "merchant_risk": 0.4, "card_present": false, "velocity_1h": 2, "foreign": false}"#;

/// The open loop: request i is due at start + i / rate. Returns p99 in ms.
fn open_loop(url: &str, auth: Option<&str>, rate: u64, seconds: u64, label: &str) -> f64 {
    let connections = 16u64;
    let total = rate * seconds;
    let next = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let (url, next, failures) = (url.to_string(), next.clone(), failures.clone());
            let auth = auth.map(str::to_string);
            std::thread::spawn(move || {
                let mut connection = Connection::open(&url, EVENT, auth.as_deref());
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return latencies;
                    }
                    let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let ok = connection.call();
                    if !ok {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                    latencies.push(due.elapsed().as_secs_f64() * 1000.0);
                }
            })
        })
        .collect();
    let mut latencies: Vec<f64> = workers
        .into_iter()
        .flat_map(|w| w.join().expect("worker"))
        .collect();
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let p99 = percentile(&latencies, 0.99);
    println!(
        "{label:<14} single events, open loop at {rate}/s: {} requests in {elapsed:.1} s ({:.0}/s), failed {}, p50 {:.3} ms, p99 {p99:.3} ms, p99.9 {:.3} ms",
        latencies.len(),
        latencies.len() as f64 / elapsed,
        failures.load(Ordering::Relaxed),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.999),
    );
    p99
}

/// The closed loop: batches of 100 over 4 connections.
fn closed_loop(url: &str, auth: Option<&str>, seconds: u64, label: &str) {
    let batch = format!("{{\"instances\": [{}]}}", vec![EVENT; 100].join(","));
    let predicted = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds.min(5));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (url, batch, predicted) = (url.to_string(), batch.clone(), predicted.clone());
            let auth = auth.map(str::to_string);
            std::thread::spawn(move || {
                let mut connection = Connection::open(&url, &batch, auth.as_deref());
                let mut latencies = Vec::new();
                while Instant::now() < until {
                    let sent = Instant::now();
                    let ok = connection.call();
                    if ok {
                        predicted.fetch_add(100, Ordering::Relaxed);
                    }
                    latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
                }
                latencies
            })
        })
        .collect();
    let mut latencies: Vec<f64> = workers
        .into_iter()
        .flat_map(|w| w.join().expect("worker"))
        .collect();
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    println!(
        "{label:<14} batches of 100, closed loop, 4 connections: {:.0} predictions/s, batch p50 {:.3} ms, p99 {:.3} ms",
        predicted.load(Ordering::Relaxed) as f64 / elapsed,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
    );
}

fn main() {
    let rate = env_u64("BENCH_RATE", 10_000);
    let seconds = env_u64("BENCH_SECONDS", 10);
    let dir = tempfile::tempdir().expect("tempdir");
    let demo = dir.path().join("demo");
    let status = Command::new(env!("CARGO_BIN_EXE_driftline"))
        .args(["demo", "--events", "4000", "--rate", "unlimited", "--dir"])
        .arg(&demo)
        .stdout(Stdio::null())
        .status()
        .expect("demo");
    assert!(status.success());
    let keys = dir.path().join("keys.toml");
    std::fs::write(
        &keys,
        format!(
            "[[key]]\nid = \"{}\"\nsecret = \"{}\"\nscopes = [\"models:predict\"]\n",
            BENCH_KEY.0, BENCH_KEY.1
        ),
    )
    .expect("keys");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    let bearer = format!("Bearer {}:{}", BENCH_KEY.0, BENCH_KEY.1);
    let mut differences = Vec::new();
    for round in 1..=env_u64("BENCH_ROUNDS", 3) {
        let mut p99 = [0.0; 2];
        for (i, (label, keys, auth)) in [
            ("without keys", None, None),
            ("bearer key", Some(keys.as_path()), Some(bearer.as_str())),
        ]
        .into_iter()
        .enumerate()
        {
            let (mut server, endpoint) = start_server(&demo, keys);
            let url = format!("{endpoint}/v1/models/fraud/predict");
            p99[i] = open_loop(&url, auth, rate, seconds, label);
            closed_loop(&url, auth, seconds, label);
            let _ = server.kill();
            let _ = server.wait();
        }
        let difference = (p99[1] - p99[0]) * 1000.0;
        println!("round {round}: p99 with a bearer key minus without: {difference:+.1} us");
        differences.push(difference);
    }
    println!(
        "p99 added by a bearer key, each round: {:?} us",
        differences.iter().map(|d| d.round()).collect::<Vec<_>>()
    );
    differences.sort_by(f64::total_cmp);
    println!(
        "median p99 added by a bearer key: {:+.1} us",
        percentile(&differences, 0.5)
    );
}
