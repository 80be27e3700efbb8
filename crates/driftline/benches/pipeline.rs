//! Stream to lake: `driftline run examples/quickstart.toml` (durable stream,
//! 4 shards, schema validation, Parquet with zstd, 5 s buffer) fed ~200-byte
//! JSON events over the NDJSON ingest by two producers.
//!
//! Prints the ingest rate, the end-to-end rate (rows landed in the lake per
//! second, from the first post until the last row is delivered) and the
//! server's resident memory over the run. `BENCH_SECONDS` (default 30) sets how
//! long producers post; `BENCH_RATE` (events/s, default 0 = as fast as they
//! can) caps them, for a long run that checks memory stays flat without
//! filling the disk. Run it with `bench/pipeline.sh`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const LINES_PER_POST: usize = 5_000;
const PRODUCERS: usize = 2;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One NDJSON body of `LINES_PER_POST` events, numbered from `start`.
fn body(start: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(LINES_PER_POST * 200);
    for i in start..start + LINES_PER_POST as u64 {
        let line = format!(
            "{{\"id\":\"evt-{i:010}\",\"user\":\"user-{:05}\",\"amount\":{}.{:02},\"ts\":\"2026-11-25T{:02}:{:02}:{:02}.{:03}Z\",\"merchant\":\"m-{:04}\",\"country\":\"DE\",\"channel\":\"web\",\"pad\":\"xxxxxxxxxxxxxxxxxxxx\"}}\n",
            i * 7919 % 50_000,
            i % 1000,
            i % 100,
            i / 36_000 % 24,
            i / 600 % 60,
            i / 10 % 60,
            i % 1000,
            i * 31 % 5000,
        );
        out.extend_from_slice(line.as_bytes());
    }
    out
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let seconds = env_u64("BENCH_SECONDS", 30);
    let rate = env_u64("BENCH_RATE", 0);
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/quickstart.toml"
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_driftline"))
        .args([
            "run",
            pipeline,
            "--listen",
            "127.0.0.1:0",
            "--progress-every",
            "1",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .arg("--lake")
        .arg(dir.path().join("lake"))
        .env("DRIFTLINE_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start driftline run");
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let banner = lines.next().expect("banner").expect("banner");
    let endpoint = banner
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("address")
        .to_string();
    // progress lines: "events: in N out N delivered N ..."
    let delivered = Arc::new(AtomicU64::new(0));
    {
        let delivered = delivered.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mut words = line.split_whitespace();
                if words.any(|w| w == "delivered") {
                    if let Some(n) = words.next().and_then(|n| n.parse().ok()) {
                        delivered.store(n, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    let url = format!("{endpoint}/v1/streams/events/records?partition_key=user");
    let sent = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let producing = Arc::new(AtomicBool::new(true));
    let started = Instant::now();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|_| {
            let (url, sent, next, producing) =
                (url.clone(), sent.clone(), next.clone(), producing.clone());
            std::thread::spawn(move || {
                let agent = ureq::Agent::new_with_defaults();
                while producing.load(Ordering::Relaxed) {
                    if rate > 0 {
                        let due = started.elapsed().as_secs_f64() * rate as f64;
                        if next.load(Ordering::Relaxed) as f64 >= due {
                            std::thread::sleep(Duration::from_millis(5));
                            continue;
                        }
                    }
                    let start = next.fetch_add(LINES_PER_POST as u64, Ordering::Relaxed);
                    let answer = agent.post(&url).send(&body(start)[..]);
                    match answer {
                        Ok(_) => sent.fetch_add(LINES_PER_POST as u64, Ordering::Relaxed),
                        Err(e) => panic!("ingest failed: {e}"),
                    };
                }
            })
        })
        .collect();
    let memory = Mutex::new(Vec::new());
    while started.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(1));
        memory.lock().expect("memory").push(rss_kib(pid));
    }
    producing.store(false, Ordering::Relaxed);
    for p in producers {
        p.join().expect("producer");
    }
    let ingest_seconds = started.elapsed().as_secs_f64();
    let total = sent.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(seconds * 4 + 30);
    while delivered.load(Ordering::Relaxed) < total && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        memory.lock().expect("memory").push(rss_kib(pid));
    }
    let end_seconds = started.elapsed().as_secs_f64();
    let landed = delivered.load(Ordering::Relaxed);
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = child.wait();
    let memory = memory.into_inner().expect("memory");
    let at = |fraction: f64| memory[((memory.len() - 1) as f64 * fraction) as usize] / 1024;
    println!("events posted       {total} in {ingest_seconds:.1} s ({PRODUCERS} producers, rate cap {rate}/s)");
    println!(
        "ingest              {:.0} events/s",
        total as f64 / ingest_seconds
    );
    println!(
        "stream to lake      {:.0} events/s ({landed} of {total} rows landed in {end_seconds:.1} s)",
        landed as f64 / end_seconds
    );
    println!(
        "server RSS MiB      at 10% {}  25% {}  50% {}  75% {}  end {}  max {}",
        at(0.1),
        at(0.25),
        at(0.5),
        at(0.75),
        at(1.0),
        memory.iter().max().copied().unwrap_or(0) / 1024
    );
    if landed != total {
        eprintln!("not every event landed: {landed} of {total}");
        std::process::exit(1);
    }
}
