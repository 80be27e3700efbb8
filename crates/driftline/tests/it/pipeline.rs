//! `driftline run` end to end: records put through the Kinesis API land in
//! the Parquet lake exactly once, bad ones in the dead-letter stream with the
//! reason, and a SIGKILL during delivery loses or doubles nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use arrow_array::{Array, StringArray};
use base64::Engine;
use serde_json::{json, Value};

use crate::util::{kinesis_json, Server};

fn quickstart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart.toml")
}

fn start(dir: &Path) -> Server {
    let mut command = Command::new(env!("CARGO_BIN_EXE_driftline"));
    command
        .arg("run")
        .arg(quickstart())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--progress-every",
            "60",
            "--data-dir",
        ])
        .arg(dir.join("data"))
        .arg("--lake")
        .arg(dir.join("lake"));
    Server::spawn(command)
}

fn event(i: usize) -> Value {
    json!({
        "id": format!("e{i}"),
        "user": format!("u{}", i % 13),
        "amount": i as f64 * 0.25,
        "ts": format!("2026-11-25T{:02}:{:02}:00Z", 10 + i % 3, i % 60),
    })
}

/// PutRecords of `events` to stream `events` (batches of 500).
fn put(endpoint: &str, events: &[Value]) {
    for chunk in events.chunks(500) {
        let records: Vec<Value> = chunk
            .iter()
            .map(|e| {
                json!({
                    "Data": base64::engine::general_purpose::STANDARD.encode(e.to_string()),
                    "PartitionKey": e["user"].as_str().unwrap_or("k"),
                })
            })
            .collect();
        let (status, answer) = kinesis_json(
            endpoint,
            "PutRecords",
            json!({"StreamName": "events", "Records": records}),
        );
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["FailedRecordCount"], 0, "{answer}");
    }
}

/// Every row's `_sequence_number` in the lake, with how often it occurs, and the partition dirs.
fn lake_rows(lake: &Path) -> (BTreeMap<String, usize>, Vec<String>) {
    let mut rows = BTreeMap::new();
    let mut partitions = Vec::new();
    let mut stack = vec![lake.join("events")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "parquet") {
                continue;
            }
            let relative = path.strip_prefix(lake).expect("under the lake");
            partitions.push(relative.parent().expect("dir").display().to_string());
            let file = std::fs::File::open(&path).expect("open parquet");
            let reader =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                    .expect("parquet")
                    .build()
                    .expect("reader");
            for batch in reader {
                let batch = batch.expect("batch");
                let column = batch
                    .column_by_name("_sequence_number")
                    .expect("_sequence_number");
                let sequences = column
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .expect("strings");
                for i in 0..sequences.len() {
                    *rows.entry(sequences.value(i).to_string()).or_insert(0) += 1;
                }
            }
        }
    }
    partitions.sort();
    partitions.dedup();
    (rows, partitions)
}

fn wait_for_rows(lake: &Path, count: usize) -> BTreeMap<String, usize> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (rows, _) = lake_rows(lake);
        if rows.values().sum::<usize>() >= count || Instant::now() > deadline {
            return rows;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn stop(server: &mut Server) {
    // SIGTERM: the pipeline delivers what it buffered, then exits.
    let pid = server.child.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = server.child.wait().expect("wait");
    assert!(exit.success(), "driftline run exited with {exit}");
}

#[test]
fn records_put_through_the_kinesis_api_land_in_the_lake_once_and_bad_ones_are_dead_lettered() {
    let dir = tempfile::tempdir().expect("dir");
    let mut server = start(dir.path());
    let endpoint = server.endpoint.clone();
    let mut events: Vec<Value> = (0..3000).map(event).collect();
    // three that do not fit the schema
    events
        .push(json!({"id": "bad-1", "user": "u", "amount": "lots", "ts": "2026-11-25T10:00:00Z"}));
    events.push(json!({"id": "bad-2", "user": "u", "amount": 1.0}));
    events.push(json!({"id": "bad-3", "user": "u", "amount": 1.0, "ts": "yesterday"}));
    put(&endpoint, &events);
    let rows = wait_for_rows(&dir.path().join("lake"), 3000);
    stop(&mut server);
    let (rows_after, partitions) = lake_rows(&dir.path().join("lake"));
    assert_eq!(rows, rows_after);
    assert_eq!(rows.len(), 3000, "distinct rows");
    assert!(rows.values().all(|n| *n == 1), "a row appears twice");
    assert_eq!(
        partitions,
        [
            "events/dt=2026-11-25/hour=10",
            "events/dt=2026-11-25/hour=11",
            "events/dt=2026-11-25/hour=12"
        ]
    );

    // the dead-letter stream holds the three, each with its reason
    let server = Server::start(&dir.path().join("data"), &[]);
    let output = crate::util::driftline(&server.endpoint)
        .args(["get", "events-dlq", "--from", "trim-horizon"])
        .output()
        .expect("get");
    assert!(output.status.success());
    let letters: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(letters.len(), 3, "{letters:?}");
    let reasons: Vec<&str> = letters
        .iter()
        .filter_map(|l| l["reason"].as_str())
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("field \"amount\": expected float")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("required field \"ts\" is missing")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("RFC 3339")),
        "{reasons:?}"
    );

    duckdb_reads(&dir.path().join("lake"), 3000);
}

/// DuckDB, a reader nobody here wrote, counts the rows and sees the partitions.
fn duckdb_reads(lake: &Path, expected: usize) {
    let script = format!(
        "import duckdb\n\
         rows = duckdb.sql(\"select count(*), count(distinct _sequence_number), count(distinct hour), min(typeof(amount)), min(typeof(ts)) from read_parquet('{}/events/*/*/*.parquet', hive_partitioning=true)\").fetchall()\n\
         print(rows[0])",
        lake.display()
    );
    let output = Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3 must be installed");
    assert!(
        output.status.success(),
        "duckdb failed (.ci/run installs it from PyPI): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        text.trim(),
        format!("({expected}, {expected}, 3, 'DOUBLE', 'TIMESTAMP WITH TIME ZONE')")
    );
}

#[test]
fn a_sigkill_during_delivery_leaves_every_record_in_the_lake_exactly_once() {
    let dir = tempfile::tempdir().expect("dir");
    let lake = dir.path().join("lake");
    let events: Vec<Value> = (0..6000).map(event).collect();
    let mut server = start(dir.path());
    put(&server.endpoint, &events[..2000]);
    // at least one delivery has landed: now kill while more are on the way
    wait_for_rows(&lake, 1);
    put(&server.endpoint, &events[2000..4000]);
    server.kill();
    let mut server = start(dir.path());
    put(&server.endpoint, &events[4000..]);
    wait_for_rows(&lake, 6000);
    stop(&mut server);
    let (rows, _) = lake_rows(&lake);
    assert_eq!(rows.len(), 6000, "distinct rows");
    let doubled: Vec<_> = rows.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "rows written twice: {doubled:?}");
}

#[test]
fn every_example_pipeline_validates_and_a_bad_one_is_refused_with_its_line() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&examples).expect("examples/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let output = Command::new(env!("CARGO_BIN_EXE_driftline"))
                .arg("validate")
                .arg(&path)
                .output()
                .expect("validate");
            assert!(
                output.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&output.stderr)
            );
            checked += 1;
        }
    }
    assert!(checked >= 2, "{checked} examples");
    let dir = tempfile::tempdir().expect("dir");
    let bad = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(quickstart()).expect("quickstart");
    std::fs::write(
        &bad,
        text.replace("batch_size = 1000", "batch_size = \"many\""),
    )
    .expect("write");
    let output = Command::new(env!("CARGO_BIN_EXE_driftline"))
        .arg("validate")
        .arg(&bad)
        .output()
        .expect("validate");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = text
        .lines()
        .position(|l| l.starts_with("batch_size"))
        .expect("line")
        + 1;
    assert!(
        stderr.contains(&format!(
            "bad.toml:{line}: invalid type: string \"many\", expected usize"
        )),
        "{stderr}"
    );
}

#[test]
fn a_transform_in_jq_reshapes_events_before_they_reach_the_lake() {
    let dir = tempfile::tempdir().expect("dir");
    let pipeline = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/transform.toml");
    let mut command = Command::new(env!("CARGO_BIN_EXE_driftline"));
    command
        .arg("run")
        .arg(pipeline)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--progress-every",
            "60",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .arg("--lake")
        .arg(dir.path().join("lake"));
    let mut server = Server::spawn(command);
    let lines: Vec<String> = (0..100)
        .map(|i| {
            json!({
                "payment_id": format!("p{i}"),
                "status": if i % 4 == 0 { "failed" } else { "completed" },
                "amount_cents": i * 2000,
                "customer": {"id": format!("c{}", i % 7), "country": "FR"},
                "created_at": "2026-11-25T09:30:00Z",
            })
            .to_string()
        })
        .collect();
    let mut response = crate::util::agent()
        .post(format!("{}/v1/streams/payments/records", server.endpoint))
        .send(lines.join("\n"))
        .expect("ingest");
    assert_eq!(
        response.status(),
        200,
        "{}",
        response.body_mut().read_to_string().unwrap_or_default()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let script = format!(
        "import duckdb\n\
         print(duckdb.sql(\"select count(*), sum(amount), count_if(large), min(user), min(country) from read_parquet('{}/payments/*/*/*.parquet')\").fetchall()[0])",
        dir.path().join("lake").display()
    );
    let mut text = String::new();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
        let output = Command::new("python3")
            .args(["-c", &script])
            .output()
            .expect("python3");
        text = String::from_utf8_lossy(&output.stdout).trim().to_string();
        if text.starts_with("(75,") {
            break;
        }
    }
    stop(&mut server);
    // 75 completed payments (every fourth failed one filtered), amounts in units
    let completed: Vec<i64> = (0..100).filter(|i| i % 4 != 0).collect();
    let sum: i64 = completed.iter().map(|i| i * 20).sum();
    let large = completed.iter().filter(|i| **i * 2000 >= 100_000).count();
    assert_eq!(text, format!("(75, {sum}.0, {large}, 'c0', 'FR')"));
}

/// A Parquet file of `rows` events, as another tool would write it.
fn parquet_file(rows: usize) -> Vec<u8> {
    use arrow_array::{ArrayRef, Float64Array, RecordBatch, TimestampMicrosecondArray};
    use std::sync::Arc;
    let ids: Vec<String> = (0..rows).map(|i| format!("pq-{i}")).collect();
    let users: Vec<String> = (0..rows).map(|i| format!("u{}", i % 3)).collect();
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("id", Arc::new(StringArray::from(ids))),
        ("user", Arc::new(StringArray::from(users))),
        (
            "amount",
            Arc::new(Float64Array::from_iter_values((0..rows).map(|i| i as f64))),
        ),
        (
            "ts",
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(
                    (0..rows).map(|_| 1_795_614_300_000_000),
                )
                .with_timezone("UTC"),
            ),
        ),
    ];
    let batch = RecordBatch::try_from_iter(columns).expect("batch");
    let mut bytes = Vec::new();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(&mut bytes, batch.schema(), None).expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
    bytes
}

fn duckdb_count(lake: &Path, table: &str) -> String {
    let script = format!(
        "import duckdb\nprint(duckdb.sql(\"select count(*), count(distinct _shard || _sequence_number) from read_parquet('{}/{table}/*/*/*.parquet')\").fetchall()[0])",
        lake.display()
    );
    let output = Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

#[test]
fn files_dropped_under_a_landing_prefix_are_processed_once() {
    let dir = tempfile::tempdir().expect("dir");
    let lake = dir.path().join("lake");
    let pipeline = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/landing.toml");
    let start = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_driftline"));
        command
            .arg("run")
            .arg(&pipeline)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--progress-every",
                "60",
                "--data-dir",
            ])
            .arg(dir.path().join("data"))
            .arg("--lake")
            .arg(&lake);
        Server::spawn(command)
    };
    let mut server = start();
    let landing = lake.join("landing/uploads");
    std::fs::create_dir_all(&landing).expect("landing dir");
    let mut csv = String::from("id,user,amount,ts\n");
    for i in 0..40 {
        csv.push_str(&format!("csv-{i},u{},{i}.5,2026-11-25T08:00:00Z\n", i % 5));
    }
    csv.push_str("csv-bad,u1,not-a-number,2026-11-25T08:00:00Z\n");
    std::fs::write(landing.join("batch-1.csv"), csv).expect("csv");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for i in 0..25 {
        let line = json!({"id": format!("nd-{i}"), "user": "u9", "amount": i, "ts": "2026-11-25T09:00:00Z"});
        std::io::Write::write_all(&mut gz, format!("{line}\n").as_bytes()).expect("gzip");
    }
    std::fs::write(
        landing.join("batch-2.ndjson.gz"),
        gz.finish().expect("gzip"),
    )
    .expect("ndjson");
    std::fs::write(landing.join("batch-3.parquet"), parquet_file(30)).expect("parquet");
    let deadline = Instant::now() + Duration::from_secs(30);
    while duckdb_count(&lake, "uploads") != "(95, 95)" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(duckdb_count(&lake, "uploads"), "(95, 95)");
    stop(&mut server);

    // a restart finds the markers and processes nothing again
    let mut server = start();
    std::thread::sleep(Duration::from_secs(3));
    stop(&mut server);
    assert_eq!(duckdb_count(&lake, "uploads"), "(95, 95)");

    let server = Server::start(&dir.path().join("data"), &[]);
    let output = crate::util::driftline(&server.endpoint)
        .args(["get", "uploads-dlq", "--from", "trim-horizon"])
        .output()
        .expect("get");
    let letters: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["object"], "landing/uploads/batch-1.csv");
    assert_eq!(letters[0]["record"], 40);
    assert!(
        letters[0]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("field \"amount\""),
        "{letters:?}"
    );
}

/// `--metrics emf`: progress as CloudWatch embedded-metric-format lines whose
/// counters add up to what was put.
#[test]
fn progress_can_be_cloudwatch_embedded_metric_format() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().expect("dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_driftline"))
        .arg("run")
        .arg(quickstart())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--progress-every",
            "1",
            "--metrics",
            "emf",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .arg("--lake")
        .arg(dir.path().join("lake"))
        .env("DRIFTLINE_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let banner = lines.next().expect("banner").expect("line");
    let endpoint = banner
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("address")
        .to_string();
    put(&endpoint, &(0..700).map(event).collect::<Vec<_>>());
    let (mut records_in, mut delivered) = (0.0, 0.0);
    let deadline = Instant::now() + Duration::from_secs(60);
    while delivered < 700.0 && Instant::now() < deadline {
        let line = lines.next().expect("a metrics line").expect("text");
        let metric: Value = serde_json::from_str(&line).expect("each line is JSON");
        let aws = &metric["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(aws["Namespace"], "driftline", "{line}");
        assert_eq!(aws["Dimensions"], json!([["Pipeline", "Stage"]]), "{line}");
        assert_eq!(metric["Pipeline"], "quickstart");
        if metric["Stage"] == "events" {
            records_in += metric["RecordsIn"].as_f64().expect("RecordsIn");
            delivered += metric["RowsDelivered"].as_f64().expect("RowsDelivered");
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!((records_in, delivered), (700.0, 700.0));
}
