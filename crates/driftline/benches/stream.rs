//! Write throughput and latency of the stream, against kinesalite in the same run.
//!
//! Run it with `bench/stream.sh`, which installs kinesalite from the npm registry
//! into a temporary directory and passes its path in `KINESALITE`; without it
//! only driftline is measured. Both servers are started by this program on free
//! loopback ports and driven by the same clients:
//! - PutRecords through the AWS SDK for Rust (500 records of 100 bytes a call);
//! - the NDJSON ingest path (5,000 lines of 100 bytes a request; driftline only).
//!
//! Each case runs for `BENCH_SECONDS` (default 3) with 1 and 16 concurrent
//! producers on streams of 1 and 4 shards; driftline in durable (fsync) mode.
//! PutRecords also runs against driftline with keys (every request's SigV4
//! verified) and with keys over TLS, with the ratio to driftline without.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;

const RECORD_BYTES: usize = 100;
const SDK_BATCH: usize = 500;
const NDJSON_BATCH: usize = 5_000;

struct Peer {
    name: &'static str,
    endpoint: String,
    child: Child,
    /// The certificate to trust (a self-signed server's PEM).
    ca: Option<Vec<u8>>,
    _dir: tempfile::TempDir,
}

/// How driftline is protected in a case.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Guard {
    Open,
    Keys,
    KeysTls,
}

const BENCH_KEY: (&str, &str) = ("DLKBENCH000000000001", "bench-secret-0123456789abcdef");

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(45_678)
}

/// `fsync` unless BENCH_DURABILITY says otherwise (`os` shows what the fsyncs cost).
fn durability() -> String {
    std::env::var("BENCH_DURABILITY").unwrap_or_else(|_| "fsync".into())
}

fn start_driftline(guard: Guard) -> Peer {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut command = Command::new(env!("CARGO_BIN_EXE_driftline"));
    command
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--durability",
            &durability(),
            "--data-dir",
        ])
        .arg(&data);
    if guard != Guard::Open {
        let keys = dir.path().join("keys.toml");
        std::fs::write(
            &keys,
            format!(
                "[[key]]\nid = \"{}\"\nsecret = \"{}\"\nscopes = [\"streams:read\", \"streams:write\", \"streams:admin\"]\n",
                BENCH_KEY.0, BENCH_KEY.1
            ),
        )
        .expect("keys");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
        command.arg("--auth").arg(&keys);
    }
    if guard == Guard::KeysTls {
        command.arg("--tls-self-signed");
    }
    let mut child = command
        .env("DRIFTLINE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start driftline");
    let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
    let endpoint = loop {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).expect("banner") > 0,
            "no banner"
        );
        if let Some(address) = line
            .split_whitespace()
            .find(|w| w.starts_with("http://") || w.starts_with("https://"))
        {
            break address.to_string();
        }
    };
    let ca = (guard == Guard::KeysTls)
        .then(|| std::fs::read(data.join("self-signed-cert.pem")).expect("certificate"));
    Peer {
        name: match guard {
            Guard::Open => "driftline",
            Guard::Keys => "+sigv4",
            Guard::KeysTls => "+sigv4+tls",
        },
        endpoint,
        child,
        ca,
        _dir: dir,
    }
}

fn start_kinesalite(bin: &str) -> Peer {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let child = Command::new(bin)
        .args([
            "--port",
            &port.to_string(),
            "--createStreamMs",
            "0",
            "--deleteStreamMs",
            "0",
            "--updateStreamMs",
            "0",
            "--shardLimit",
            "100",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start kinesalite");
    let endpoint = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "kinesalite did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    Peer {
        name: "kinesalite",
        endpoint,
        child,
        ca: None,
        _dir: dir,
    }
}

/// A client signing with the bench key (servers without keys ignore it),
/// trusting `ca` when given.
fn sdk_client(endpoint: &str, ca: Option<&[u8]>) -> aws_sdk_kinesis::Client {
    use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
    let mut config = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(
            BENCH_KEY.0,
            BENCH_KEY.1,
            None,
            None,
            "bench",
        ));
    if let Some(pem) = ca {
        use aws_smithy_http_client::tls;
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::AwsLc,
            ))
            .tls_context(
                tls::TlsContext::builder()
                    .with_trust_store(tls::TrustStore::empty().with_pem_certificate(pem.to_vec()))
                    .build()
                    .expect("tls context"),
            )
            .build_https();
        config = config.http_client(http);
    }
    aws_sdk_kinesis::Client::from_conf(config.build())
}

#[derive(Clone, Copy, Debug)]
struct Figures {
    records_per_second: f64,
    megabytes_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn figures(records: usize, elapsed: Duration, mut latencies: Vec<Duration>) -> Figures {
    latencies.sort();
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let seconds = elapsed.as_secs_f64();
    Figures {
        records_per_second: records as f64 / seconds,
        megabytes_per_second: (records * RECORD_BYTES) as f64 / seconds / 1e6,
        p50_ms: pick(0.50),
        p99_ms: pick(0.99),
    }
}

fn payload(producer: usize, i: usize) -> Vec<u8> {
    let mut data = format!("{producer:04}-{i:012}-").into_bytes();
    data.resize(RECORD_BYTES, b'x');
    data
}

async fn sdk_case(
    peer: &Peer,
    stream: &str,
    shards: i32,
    producers: usize,
    seconds: f64,
) -> Figures {
    let client = sdk_client(&peer.endpoint, peer.ca.as_deref());
    client
        .create_stream()
        .stream_name(stream)
        .shard_count(shards)
        .send()
        .await
        .expect("create stream");
    // kinesalite creates asynchronously even with createStreamMs 0
    for _ in 0..100 {
        let summary = client
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await;
        if summary.ok().and_then(|s| {
            s.stream_description_summary()
                .map(|d| d.stream_status().as_str() == "ACTIVE")
        }) == Some(true)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let tasks: Vec<_> = (0..producers)
        .map(|producer| {
            let client = client.clone();
            let stream = stream.to_string();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut written = 0usize;
                let mut call = 0usize;
                while Instant::now() < deadline {
                    let entries: Vec<PutRecordsRequestEntry> = (0..SDK_BATCH)
                        .map(|i| {
                            PutRecordsRequestEntry::builder()
                                .partition_key(format!(
                                    "p{producer}-{}",
                                    (call * SDK_BATCH + i) % 64
                                ))
                                .data(Blob::new(payload(producer, call * SDK_BATCH + i)))
                                .build()
                                .expect("entry")
                        })
                        .collect();
                    let sent = Instant::now();
                    let answer = client
                        .put_records()
                        .stream_name(&stream)
                        .set_records(Some(entries))
                        .send()
                        .await
                        .expect("put records");
                    latencies.push(sent.elapsed());
                    written += SDK_BATCH - answer.failed_record_count().unwrap_or(0) as usize;
                    call += 1;
                }
                (written, latencies)
            })
        })
        .collect();
    let mut written = 0;
    let mut latencies = Vec::new();
    for task in tasks {
        let (w, l) = task.await.expect("producer");
        written += w;
        latencies.extend(l);
    }
    figures(written, start.elapsed(), latencies)
}

fn ndjson_case(
    endpoint: &str,
    stream: &str,
    shards: i32,
    producers: usize,
    seconds: f64,
) -> Figures {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        sdk_client(endpoint, None)
            .create_stream()
            .stream_name(stream)
            .shard_count(shards)
            .send()
            .await
            .expect("create");
    });
    let url = format!("{endpoint}/v1/streams/{stream}/records");
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let url = Arc::new(url);
    let threads: Vec<_> = (0..producers)
        .map(|producer| {
            let url = url.clone();
            std::thread::spawn(move || {
                let agent = ureq::Agent::new_with_config(ureq::Agent::config_builder().build());
                let mut latencies = Vec::new();
                let mut written = 0usize;
                let mut request = 0usize;
                while Instant::now() < deadline {
                    let mut body = Vec::with_capacity(NDJSON_BATCH * (RECORD_BYTES + 1));
                    for i in 0..NDJSON_BATCH {
                        let mut line = format!(
                            r#"{{"producer":{producer},"n":{},"pad":""#,
                            request * NDJSON_BATCH + i
                        )
                        .into_bytes();
                        line.resize(RECORD_BYTES - 2, b'x');
                        line.extend_from_slice(b"\"}");
                        body.extend_from_slice(&line);
                        body.push(b'\n');
                    }
                    let sent = Instant::now();
                    let mut response = agent.post(url.as_str()).send(&body[..]).expect("ingest");
                    let answer: serde_json::Value =
                        response.body_mut().read_json().expect("answer");
                    latencies.push(sent.elapsed());
                    written += answer["records"].as_u64().unwrap_or(0) as usize;
                    request += 1;
                }
                (written, latencies)
            })
        })
        .collect();
    let mut written = 0;
    let mut latencies = Vec::new();
    for thread in threads {
        let (w, l) = thread.join().expect("producer");
        written += w;
        latencies.extend(l);
    }
    figures(written, start.elapsed(), latencies)
}

fn main() {
    let seconds: f64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let kinesalite_bin = std::env::var("KINESALITE").ok().filter(|s| !s.is_empty());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "stream write benchmark: 100-byte records, {seconds} s per case, driftline durability {}",
        durability()
    );
    if kinesalite_bin.is_none() {
        println!(
            "KINESALITE is not set: measuring driftline only (bench/stream.sh installs kinesalite)"
        );
    }
    println!();
    println!(
        "{:<10} {:<11} {:>6} {:>9} {:>12} {:>8} {:>9} {:>9}",
        "path", "server", "shards", "producers", "records/s", "MB/s", "p50 ms", "p99 ms"
    );
    let mut case = 0;
    for shards in [1, 4] {
        for producers in [1, 16] {
            case += 1;
            let stream = format!("bench{case}");
            let measure = |peer: Peer| {
                let figures =
                    runtime.block_on(sdk_case(&peer, &stream, shards, producers, seconds));
                print_row("PutRecords", peer.name, shards, producers, &figures);
                figures
            };
            let ours = measure(start_driftline(Guard::Open));
            let signed = measure(start_driftline(Guard::Keys));
            let tls = measure(start_driftline(Guard::KeysTls));
            println!(
                "{:<10} ratio with SigV4 verified / without: {:.3}; with SigV4 and TLS / without: {:.3}",
                "",
                signed.records_per_second / ours.records_per_second,
                tls.records_per_second / ours.records_per_second
            );
            if let Some(bin) = &kinesalite_bin {
                let theirs = measure(start_kinesalite(bin));
                println!(
                    "{:<10} ratio driftline/kinesalite records/s: {:.1}x",
                    "",
                    ours.records_per_second / theirs.records_per_second
                );
            }
        }
    }
    for shards in [1, 4] {
        for producers in [1, 16] {
            case += 1;
            let driftline = start_driftline(Guard::Open);
            let ours = ndjson_case(
                &driftline.endpoint,
                &format!("bench{case}"),
                shards,
                producers,
                seconds,
            );
            print_row("NDJSON", "driftline", shards, producers, &ours);
        }
    }
}

fn print_row(path: &str, server: &str, shards: i32, producers: usize, f: &Figures) {
    println!(
        "{:<10} {:<11} {:>6} {:>9} {:>12.0} {:>8.1} {:>9.2} {:>9.2}",
        path,
        server,
        shards,
        producers,
        f.records_per_second,
        f.megabytes_per_second,
        f.p50_ms,
        f.p99_ms
    );
}
