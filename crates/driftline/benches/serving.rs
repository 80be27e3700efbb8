//! Prediction latency and throughput over HTTP on loopback, with keep-alive
//! clients: a registry is made by a short `driftline demo`, then `driftline
//! serve --model fraud` serves its champion (gradient-boosted trees).
//!
//! - open loop at `BENCH_RATE` requests/s (default 10,000), one event per
//!   request, over 16 keep-alive connections for `BENCH_SECONDS` (default 10):
//!   latency from each request's scheduled time, so a stall is not hidden;
//! - closed loop, batches of 100 events over 4 connections: predictions/s.
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
    let mut server = Command::new(env!("CARGO_BIN_EXE_driftline"))
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
        .arg(demo.join("lake"))
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
    let url = format!("{endpoint}/v1/models/fraud/predict");
    let event = r#"{"amount": 42.5, "hour": 3, "distance_km": 12.0, "merchant_risk": 0.4, "card_present": false, "velocity_1h": 2, "foreign": false}"#;

    // open loop: request i is due at start + i / rate
    let connections = 16u64;
    let total = rate * seconds;
    let next = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let (url, next, failures) = (url.clone(), next.clone(), failures.clone());
            std::thread::spawn(move || {
                let agent = ureq::Agent::new_with_defaults();
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
                    let ok = agent
                        .post(&url)
                        .header("content-type", "application/json")
                        .send(event)
                        .is_ok_and(|r| r.status().is_success());
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
    println!(
        "single events, open loop at {rate}/s: {} requests in {elapsed:.1} s ({:.0}/s), failed {}, p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms",
        latencies.len(),
        latencies.len() as f64 / elapsed,
        failures.load(Ordering::Relaxed),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 0.999),
    );

    // closed loop: batches of 100
    let batch = format!("{{\"instances\": [{}]}}", vec![event; 100].join(","));
    let predicted = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds.min(5));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (url, batch, predicted) = (url.clone(), batch.clone(), predicted.clone());
            std::thread::spawn(move || {
                let agent = ureq::Agent::new_with_defaults();
                let mut latencies = Vec::new();
                while Instant::now() < until {
                    let sent = Instant::now();
                    let ok = agent
                        .post(&url)
                        .header("content-type", "application/json")
                        .send(&batch)
                        .is_ok_and(|r| r.status().is_success());
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
        "batches of 100, closed loop, 4 connections: {:.0} predictions/s, batch p50 {:.3} ms, p99 {:.3} ms",
        predicted.load(Ordering::Relaxed) as f64 / elapsed,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
    );
    let _ = server.kill();
    let _ = server.wait();
}
