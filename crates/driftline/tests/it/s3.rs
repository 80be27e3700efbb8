//! The same pipeline with its lake on S3 (`--lake s3://BUCKET/PREFIX`),
//! against a `moto_server` started on a free loopback port: records put
//! through the Kinesis API land as Parquet objects in the bucket, each
//! exactly once.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use arrow_array::{Array, StringArray};
use driftline_lake::Lake;
use driftline_testkit::Moto;
use serde_json::json;

use crate::util::{kinesis_json, Server};

/// Every row's stream position (`_shard/_sequence_number`) in a table of the S3 lake, with its count.
fn s3_rows(lake: &Lake, runtime: &tokio::runtime::Runtime, table: &str) -> BTreeMap<String, usize> {
    let mut rows = BTreeMap::new();
    let objects = runtime
        .block_on(lake.objects(&format!("{table}/")))
        .expect("objects");
    for object in objects {
        let bytes = runtime
            .block_on(lake.read(&object.path))
            .expect("read")
            .expect("object");
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            bytes::Bytes::from(bytes),
        )
        .expect("parquet")
        .build()
        .expect("reader");
        for batch in reader {
            let batch = batch.expect("batch");
            let text = |name: &str| {
                batch
                    .column_by_name(name)
                    .expect("column")
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .expect("text")
                    .clone()
            };
            // moto numbers each Kinesis shard from 1: a record is its shard and number
            let (shards, sequences) = (text("_shard"), text("_sequence_number"));
            for i in 0..sequences.len() {
                let key = format!("{}/{}", shards.value(i), sequences.value(i));
                *rows.entry(key).or_insert(0) += 1;
            }
        }
    }
    rows
}

/// What these tests do with a moto server.
trait MotoRun {
    fn lake(&self) -> Lake;
    fn run(&self, pipeline: &Path, data: &Path) -> Server;
}

impl MotoRun for Moto {
    /// The lake every test here uses: `s3://lake/prod` on this server.
    fn lake(&self) -> Lake {
        let owned = self.s3_options();
        let options: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Lake::open_with("s3://lake/prod", &options).expect("lake")
    }

    /// `driftline run PIPELINE --lake s3://lake/prod` against this server.
    fn run(&self, pipeline: &Path, data: &Path) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_driftline"));
        command
            .arg("run")
            .arg(pipeline)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--progress-every",
                "60",
                "--lake",
                "s3://lake/prod",
                "--data-dir",
            ])
            .arg(data)
            .envs(self.env());
        Server::spawn(command)
    }
}

/// SIGTERM: the pipeline delivers what it buffered, then exits cleanly.
fn stop(server: &mut Server) {
    let pid = server.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill")
        .success());
    assert!(server.child.wait().expect("wait").success());
}

/// The table's rows once there are at least `n` (or after 30 s).
fn wait_rows(
    lake: &Lake,
    runtime: &tokio::runtime::Runtime,
    table: &str,
    n: usize,
) -> BTreeMap<String, usize> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = s3_rows(lake, runtime, table);
        if rows.values().sum::<usize>() >= n || Instant::now() > deadline {
            return rows;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_pipeline_delivers_to_s3_exactly_once() {
    let moto = Moto::start();
    assert_eq!(moto.http("PUT", "/lake").expect("create bucket"), 200);
    let dir = tempfile::tempdir().expect("dir");
    let quickstart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart.toml");
    let mut server = moto.run(&quickstart, &dir.path().join("data"));
    let records: Vec<serde_json::Value> = (0..2000)
        .map(|i| {
            let event = json!({"id": format!("e{i}"), "user": format!("u{}", i % 7),
                "amount": i as f64, "ts": "2026-11-25T10:00:00Z"});
            json!({
                "Data": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, event.to_string()),
                "PartitionKey": format!("u{}", i % 7),
            })
        })
        .collect();
    for chunk in records.chunks(500) {
        let (status, answer) = kinesis_json(
            &server.endpoint,
            "PutRecords",
            json!({"StreamName": "events", "Records": chunk}),
        );
        assert_eq!(
            (status, answer["FailedRecordCount"].clone()),
            (200, json!(0)),
            "{answer}"
        );
    }
    stop(&mut server);
    let runtime = crate::util::runtime();
    let lake = moto.lake();
    let rows = s3_rows(&lake, &runtime, "events");
    assert_eq!(rows.len(), 2000, "distinct rows");
    assert!(rows.values().all(|n| *n == 1), "a row appears twice");
    let paths = runtime.block_on(lake.list("events/")).expect("list");
    assert!(
        paths
            .iter()
            .all(|p| p.starts_with("events/dt=2026-11-25/hour=10/")),
        "{paths:?}"
    );
}

/// boto3 (a client nobody here wrote) against the moto server: runs `script`
/// with `s3` and `sqs` clients bound, returns what it printed.
fn boto3(moto: &Moto, script: &str) -> String {
    let prelude = format!(
        "import boto3\nkw = dict(endpoint_url='{}', region_name='us-east-1', aws_access_key_id='test', aws_secret_access_key='test')\ns3 = boto3.client('s3', **kw)\nsqs = boto3.client('sqs', **kw)\n",
        moto.endpoint()
    );
    let output = Command::new("python3")
        .args(["-c", &(prelude + script)])
        .output()
        .expect("python3 with boto3 (.ci/run installs it)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

#[test]
fn a_landing_source_wakes_on_s3_notifications_through_sqs() {
    let moto = Moto::start();
    let queue = boto3(
        &moto,
        "s3.create_bucket(Bucket='lake')\n\
         url = sqs.create_queue(QueueName='landing')['QueueUrl']\n\
         arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=['QueueArn'])['Attributes']['QueueArn']\n\
         s3.put_bucket_notification_configuration(Bucket='lake', NotificationConfiguration={'QueueConfigurations': [{'QueueArn': arn, 'Events': ['s3:ObjectCreated:*']}]})\n\
         print(url)",
    );
    let dir = tempfile::tempdir().expect("dir");
    let pipeline = dir.path().join("landing.toml");
    // a poll of an hour: only a notification can make the source look in time
    std::fs::write(
        &pipeline,
        format!(
            r#"
[[stream]]
name = "uploads-dlq"
[[schema]]
name = "event"
event_time = "ts"
fields = [{{ name = "id", type = "string" }}, {{ name = "amount", type = "float" }}, {{ name = "ts", type = "timestamp" }}]
[[source]]
name = "uploads"
type = "landing"
prefix = "landing/uploads"
schema = "event"
on_failure = "uploads-dlq"
poll_seconds = 3600
notifications = "{queue}"
[lake]
"#
        ),
    )
    .expect("pipeline");
    let mut server = moto.run(&pipeline, &dir.path().join("data"));
    // after the source's first look
    std::thread::sleep(Duration::from_millis(1500));
    boto3(
        &moto,
        "body = 'id,amount,ts\\n' + ''.join(f'e{i},{i}.5,2026-11-25T10:00:00Z\\n' for i in range(50))\n\
         s3.put_object(Bucket='lake', Key='prod/landing/uploads/day one.csv', Body=body.encode())",
    );
    let runtime = crate::util::runtime();
    let lake = moto.lake();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut tables = Vec::new();
    while tables.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        tables = runtime.block_on(lake.list("uploads/")).expect("list");
    }
    stop(&mut server);
    assert_eq!(
        tables.len(),
        1,
        "the upload was not processed within 30 s of its notification"
    );
    assert!(
        tables[0].starts_with("uploads/dt=2026-11-25/hour=10/"),
        "{tables:?}"
    );
}

#[test]
fn dynamodb_change_records_land_once_across_a_restart() {
    let moto = Moto::start();
    let arn = boto3(
        &moto,
        "s3.create_bucket(Bucket='lake')\n\
         ddb = boto3.client('dynamodb', **kw)\n\
         t = ddb.create_table(TableName='Orders', KeySchema=[{'AttributeName': 'Id', 'KeyType': 'HASH'}], AttributeDefinitions=[{'AttributeName': 'Id', 'AttributeType': 'N'}], BillingMode='PAY_PER_REQUEST', StreamSpecification={'StreamEnabled': True, 'StreamViewType': 'NEW_AND_OLD_IMAGES'})\n\
         ddb.put_item(TableName='Orders', Item={'Id': {'N': '1'}, 'Message': {'S': 'new'}})\n\
         ddb.update_item(TableName='Orders', Key={'Id': {'N': '1'}}, UpdateExpression='SET Message = :m', ExpressionAttributeValues={':m': {'S': 'changed'}})\n\
         ddb.delete_item(TableName='Orders', Key={'Id': {'N': '1'}})\n\
         ddb.put_item(TableName='Orders', Item={'Id': {'N': '2'}, 'Message': {'S': 'second'}})\n\
         print(t['TableDescription']['LatestStreamArn'])",
    );
    let dir = tempfile::tempdir().expect("dir");
    let pipeline = dir.path().join("orders.toml");
    std::fs::write(
        &pipeline,
        format!(
            r#"
[[schema]]
name = "change"
fields = [{{ name = "event", type = "string" }}, {{ name = "id", type = "int" }}, {{ name = "message", type = "string", required = false }}]
[[source]]
name = "orders"
type = "dynamodb"
stream_arn = "{arn}"
schema = "change"
transform = "{{event: .event_name, id: .keys.Id, message: (.new_image // .old_image).Message}}"
poll_ms = 200
[lake]
"#
        ),
    )
    .expect("pipeline");
    let runtime = crate::util::runtime();
    let lake = moto.lake();
    let mut server = moto.run(&pipeline, &dir.path().join("data"));
    let rows = wait_rows(&lake, &runtime, "orders", 4);
    stop(&mut server);
    assert_eq!(rows.len(), 4, "{rows:?}");
    // a restart goes on after its checkpoint: one new change, one new row
    let mut server = moto.run(&pipeline, &dir.path().join("data"));
    boto3(
        &moto,
        "ddb = boto3.client('dynamodb', **kw)\n\
         ddb.put_item(TableName='Orders', Item={'Id': {'N': '3'}, 'Message': {'S': 'third'}})",
    );
    let rows = wait_rows(&lake, &runtime, "orders", 5);
    std::thread::sleep(Duration::from_millis(600));
    let rows_later = s3_rows(&lake, &runtime, "orders");
    stop(&mut server);
    assert_eq!(rows, rows_later);
    assert_eq!(rows.len(), 5, "{rows:?}");
    assert!(
        rows.values().all(|n| *n == 1),
        "a change landed twice: {rows:?}"
    );
}

/// A pipeline reading Kinesis stream `clicks` into table `clicks`, with
/// `extra` lines in its `[[source]]` of type "kinesis".
fn clicks_pipeline(dir: &Path, extra: &str) -> std::path::PathBuf {
    let pipeline = dir.join("clicks.toml");
    let text = format!(
        "[[schema]]\nname = \"click\"\nfields = [{{ name = \"id\", type = \"string\" }}, {{ name = \"amount\", type = \"float\" }}]\n\
         [[source]]\nname = \"clicks\"\ntype = \"kinesis\"\nstream = \"clicks\"\nschema = \"click\"\npoll_ms = 200\n{extra}\n[lake]\n"
    );
    std::fs::write(&pipeline, text).expect("pipeline");
    pipeline
}

/// Puts `n` clicks `PREFIX0..` on stream `clicks`, keyed by their ids.
fn put_clicks(moto: &Moto, prefix: &str, n: usize) {
    boto3(
        moto,
        &format!(
            "k = boto3.client('kinesis', **kw)\n\
             k.put_records(StreamName='clicks', Records=[{{'Data': ('{{\"id\": \"{prefix}%d\", \"amount\": %d}}' % (i, i)).encode(), 'PartitionKey': '{prefix}%d' % i}} for i in range({n})])"
        ),
    );
}

#[test]
fn a_kinesis_stream_on_aws_lands_once_across_a_split_and_a_restart() {
    let moto = Moto::start();
    boto3(
        &moto,
        "s3.create_bucket(Bucket='lake')\n\
         k = boto3.client('kinesis', **kw)\n\
         k.create_stream(StreamName='clicks', ShardCount=2)\n\
         k.put_records(StreamName='clicks', Records=[{'Data': ('{\"id\": \"c%d\", \"amount\": %d}' % (i, i)).encode(), 'PartitionKey': 'k%d' % i} for i in range(300)])\n\
         k.put_record(StreamName='clicks', Data=b'{\"id\": \"bad\", \"amount\": \"lots\"}', PartitionKey='bad')",
    );
    let dir = tempfile::tempdir().expect("dir");
    let pipeline = clicks_pipeline(dir.path(), "batch_size = 40");
    let runtime = crate::util::runtime();
    let lake = moto.lake();
    let mut server = moto.run(&pipeline, &dir.path().join("data"));
    assert_eq!(wait_rows(&lake, &runtime, "clicks", 300).len(), 300);
    // delivered per shard (batches of at most 40 records, buffered as on the
    // embedded log): at least one object for each of the 2 shards
    let objects = runtime.block_on(lake.list("clicks/")).expect("objects");
    assert!(objects.len() >= 2, "{} objects", objects.len());
    // the record that does not fit is kept, with its reason, not lost
    let letters = runtime
        .block_on(lake.list("_dead_letters/clicks/"))
        .expect("letters");
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert!(
        letters[0].starts_with("_dead_letters/clicks/shardId-"),
        "{letters:?}"
    );
    // a split mid-run: the parent is read to its end, then its children
    boto3(
        &moto,
        "k = boto3.client('kinesis', **kw)\n\
         k.split_shard(StreamName='clicks', ShardToSplit='shardId-000000000000', NewStartingHashKey=str(2**126))",
    );
    put_clicks(&moto, "d", 100);
    assert_eq!(wait_rows(&lake, &runtime, "clicks", 400).len(), 400);
    stop(&mut server);
    // a restart goes on after its checkpoints
    let mut server = moto.run(&pipeline, &dir.path().join("data"));
    put_clicks(&moto, "e", 50);
    let rows = wait_rows(&lake, &runtime, "clicks", 450);
    std::thread::sleep(Duration::from_millis(600));
    let later = s3_rows(&lake, &runtime, "clicks");
    stop(&mut server);
    assert_eq!(rows, later);
    assert_eq!(rows.len(), 450, "distinct records");
    assert!(rows.values().all(|n| *n == 1), "a record landed twice");
}

/// The owner named by each shard's newest lease object.
fn lease_owners(lake: &Lake, runtime: &tokio::runtime::Runtime) -> BTreeMap<String, String> {
    let mut newest: BTreeMap<String, String> = BTreeMap::new();
    for path in runtime
        .block_on(lake.list("_leases/kinesis/clicks/"))
        .expect("leases")
        .into_iter()
        .filter(|p| !p.contains("/_workers/"))
    {
        let shard = path.split('/').nth(3).expect("shard").to_string();
        let entry = newest.entry(shard).or_default();
        if path > *entry {
            *entry = path;
        }
    }
    newest
        .into_iter()
        .map(|(shard, path)| {
            let body = runtime
                .block_on(lake.read(&path))
                .expect("read")
                .expect("lease");
            let lease: serde_json::Value = serde_json::from_slice(&body).expect("json");
            (
                shard,
                lease["owner"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn two_processes_share_the_shards_of_a_kinesis_stream_without_overlap() {
    let moto = Moto::start();
    boto3(
        &moto,
        "s3.create_bucket(Bucket='lake')\n\
         k = boto3.client('kinesis', **kw)\n\
         k.create_stream(StreamName='clicks', ShardCount=4)",
    );
    let dir = tempfile::tempdir().expect("dir");
    let pipeline = clicks_pipeline(dir.path(), "");
    let runtime = crate::util::runtime();
    let lake = moto.lake();
    let put = |prefix: &str, n: usize| put_clicks(&moto, prefix, n);
    let mut first = moto.run(&pipeline, &dir.path().join("data-a"));
    let mut second = moto.run(&pipeline, &dir.path().join("data-b"));
    put("a", 400);
    assert_eq!(wait_rows(&lake, &runtime, "clicks", 400).len(), 400);
    // within a few turns each process leases two of the four shards
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut owners = lease_owners(&lake, &runtime);
    while Instant::now() < deadline {
        let distinct: std::collections::BTreeSet<&String> = owners.values().collect();
        if owners.len() == 4 && distinct.len() == 2 && !distinct.contains(&String::new()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        owners = lease_owners(&lake, &runtime);
    }
    let mut per_owner: BTreeMap<&String, usize> = BTreeMap::new();
    for owner in owners.values() {
        *per_owner.entry(owner).or_default() += 1;
    }
    assert_eq!(
        per_owner.values().copied().collect::<Vec<_>>(),
        vec![2, 2],
        "{owners:?}"
    );
    put("b", 200);
    assert_eq!(wait_rows(&lake, &runtime, "clicks", 600).len(), 600);
    // one process stops cleanly: the other takes its shards over
    stop(&mut first);
    put("c", 200);
    let rows = wait_rows(&lake, &runtime, "clicks", 800);
    std::thread::sleep(Duration::from_millis(600));
    let later = s3_rows(&lake, &runtime, "clicks");
    stop(&mut second);
    assert_eq!(rows, later);
    assert_eq!(rows.len(), 800, "distinct records");
    assert!(rows.values().all(|n| *n == 1), "a record landed twice");
}

/// The quickstart with only its urls changed (`examples/aws.toml`): stream
/// `events` and its dead-letter stream on Kinesis, the lake on S3. NDJSON
/// posted to `driftline run` is put on Kinesis, read back through leases
/// and lands once per record; the record that does not fit goes to the
/// Kinesis dead-letter stream with its reason.
#[test]
fn the_quickstart_with_its_streams_on_kinesis_lands_each_record_once() {
    let moto = Moto::start();
    boto3(
        &moto,
        "s3.create_bucket(Bucket='lake')\n\
         k = boto3.client('kinesis', **kw)\n\
         k.create_stream(StreamName='events', ShardCount=4)\n\
         k.create_stream(StreamName='events-dlq', ShardCount=1)",
    );
    let dir = tempfile::tempdir().expect("dir");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/aws.toml");
    let mut server = moto.run(&example, &dir.path().join("data"));
    let mut lines: Vec<String> = (0..3000)
        .map(|i| {
            json!({"id": format!("e{i}"), "user": format!("u{}", i % 7),
                "amount": i as f64, "ts": "2026-11-25T10:00:00Z"})
            .to_string()
        })
        .collect();
    lines.insert(10, "{not json".into());
    lines.insert(
        20,
        r#"{"id": "bad", "user": "u1", "amount": "lots", "ts": "2026-11-25T10:00:00Z"}"#.into(),
    );
    let mut response = crate::util::agent()
        .post(format!(
            "{}/v1/streams/events/records?partition_key=user",
            server.endpoint
        ))
        .send(lines.join("\n"))
        .expect("ingest");
    let answer: serde_json::Value =
        serde_json::from_str(&response.body_mut().read_to_string().expect("body")).expect("json");
    assert_eq!(
        (answer["records"].clone(), answer["rejected"].clone()),
        (json!(3001), json!(1)),
        "{answer}"
    );
    assert_eq!(answer["errors"][0]["line"], json!(11), "{answer}");
    // Kinesis' own shard ids: the records are on Kinesis, not in the embedded stream
    let shards = answer["shards"].as_object().expect("shards");
    assert!(shards.keys().all(|s| s.starts_with("shardId-")), "{answer}");
    let on_kinesis = boto3(
        &moto,
        "k = boto3.client('kinesis', **kw)\n\
         n = 0\n\
         for s in k.list_shards(StreamName='events')['Shards']:\n    \
             it = k.get_shard_iterator(StreamName='events', ShardId=s['ShardId'], ShardIteratorType='TRIM_HORIZON')['ShardIterator']\n    \
             n += len(k.get_records(ShardIterator=it, Limit=10000)['Records'])\n\
         print(n)",
    );
    assert_eq!(on_kinesis, "3001");

    let runtime = crate::util::runtime();
    let lake = moto.lake();
    let rows = wait_rows(&lake, &runtime, "events", 3000);
    let letters = {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let letters = boto3(
                &moto,
                "k = boto3.client('kinesis', **kw)\n\
                 it = k.get_shard_iterator(StreamName='events-dlq', ShardId='shardId-000000000000', ShardIteratorType='TRIM_HORIZON')['ShardIterator']\n\
                 for r in k.get_records(ShardIterator=it)['Records']: print(r['Data'].decode())",
            );
            if !letters.is_empty() || Instant::now() > deadline {
                break letters;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    assert_eq!(rows.len(), 3000, "distinct rows");
    // a split mid-run: the parent is read to its end, then its children
    boto3(
        &moto,
        "k = boto3.client('kinesis', **kw)\n\
         k.split_shard(StreamName='events', ShardToSplit='shardId-000000000000', NewStartingHashKey=str(2**125))",
    );
    let more: Vec<String> = (3000..3500)
        .map(|i| {
            json!({"id": format!("e{i}"), "user": format!("u{}", i % 7),
                "amount": i as f64, "ts": "2026-11-25T10:00:00Z"})
            .to_string()
        })
        .collect();
    let answer = crate::util::agent()
        .post(format!(
            "{}/v1/streams/events/records?partition_key=user",
            server.endpoint
        ))
        .send(more.join("\n"))
        .expect("ingest");
    assert_eq!(answer.status().as_u16(), 200);
    let rows = wait_rows(&lake, &runtime, "events", 3500);
    stop(&mut server);
    assert_eq!(rows.len(), 3500, "distinct rows");
    assert!(rows.values().all(|n| *n == 1), "a row appears twice");
    let letters: Vec<serde_json::Value> = letters
        .lines()
        .map(|l| serde_json::from_str(l).expect("letter"))
        .collect();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert!(
        letters[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("amount")),
        "{letters:?}"
    );
    assert_eq!(letters[0]["processor"], json!("events"));
    // the shards were read through leases in the lake, and released on the stop
    let leases = runtime
        .block_on(lake.list("_leases/kinesis/events/"))
        .expect("leases");
    assert!(!leases.is_empty());
}

/// A model on AWS: its first version trains on history landed in the S3
/// lake, its predictions are logged to a Kinesis stream, its labels arrive
/// on another, and its registry is mirrored to SageMaker (a model package,
/// approved as champion, and an endpoint serving it), all on moto.
#[test]
fn a_model_on_kinesis_logs_predictions_joins_labels_and_mirrors_its_registry_to_sagemaker() {
    let moto = Moto::start();
    boto3(
        &moto,
        "s3.create_bucket(Bucket='lake')\n\
         k = boto3.client('kinesis', **kw)\n\
         k.create_stream(StreamName='fraud-predictions', ShardCount=1)\n\
         k.create_stream(StreamName='fraud-labels', ShardCount=2)",
    );
    let dir = tempfile::tempdir().expect("dir");
    let pipeline = dir.path().join("model.toml");
    let model = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/model.toml"),
    )
    .expect("example");
    let model = model.replace(
        "name = \"fraud-labels\"\nshards = 1",
        "name = \"fraud-labels\"\nshards = 1\nurl = \"kinesis://fraud-labels\"",
    );
    let model = model.replace(
        "promotion = { mode = \"direct\", min_gain = 0.005 }",
        "promotion = { mode = \"direct\", min_gain = 0.005 }\n\
         prediction_log = \"kinesis://fraud-predictions\"\n\
         sagemaker = { image = \"123456789012.dkr.ecr.us-east-1.amazonaws.com/driftline:1\", role_arn = \"arn:aws:iam::123456789012:role/fraud-sagemaker\", endpoint = \"fraud\" }",
    );
    std::fs::write(&pipeline, model).expect("pipeline");
    let server = moto.run(&pipeline, &dir.path().join("data"));
    let base = server.endpoint.clone();
    let mut stream = driftline_ml::synth::FraudStream::new(5, 2000);
    let history: String = stream
        .by_ref()
        .take(1000)
        .map(|t| {
            let mut event = t.features.clone();
            event["fraud"] = json!(t.fraud);
            format!("{event}\n")
        })
        .collect();
    let mut response = crate::util::agent()
        .post(format!("{base}/v1/streams/history/records"))
        .send(history)
        .expect("ingest");
    assert_eq!(
        response.status().as_u16(),
        200,
        "{:?}",
        response.body_mut().read_to_string()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while crate::util::call("GET", &format!("{base}/v1/models/fraud"), None).0 != 200 {
        assert!(Instant::now() < deadline, "the first version never served");
        std::thread::sleep(Duration::from_millis(200));
    }
    let transactions: Vec<_> = stream.take(300).collect();
    let events: Vec<serde_json::Value> = transactions.iter().map(|t| t.features.clone()).collect();
    let (status, answer) = crate::util::call(
        "POST",
        &format!("{base}/v1/models/fraud/predict"),
        Some(json!({"instances": events})),
    );
    assert_eq!(status, 200, "{answer}");
    // their outcomes arrive later on a Kinesis label stream, put by a client of its own
    let labels: Vec<String> = answer["predictions"]
        .as_array()
        .expect("predictions")
        .iter()
        .zip(&transactions)
        .map(|(p, t)| {
            json!({"request_id": p["request_id"], "label": u8::from(t.fraud)}).to_string()
        })
        .collect();
    std::fs::write(dir.path().join("labels.ndjson"), labels.join("\n")).expect("labels");
    boto3(
        &moto,
        &format!(
            "k = boto3.client('kinesis', **kw)\n\
             lines = open('{}').read().split('\\n')\n\
             for i in range(0, len(lines), 100):\n    \
                 k.put_records(StreamName='fraud-labels', Records=[{{'Data': l.encode(), 'PartitionKey': str(j)}} for j, l in enumerate(lines[i:i+100])])",
            dir.path().join("labels.ndjson").display()
        ),
    );

    // every prediction logged on Kinesis, with its request id
    let script = "k = boto3.client('kinesis', **kw)\n\
                  it = k.get_shard_iterator(StreamName='fraud-predictions', ShardId='shardId-000000000000', ShardIteratorType='TRIM_HORIZON')['ShardIterator']\n\
                  import json\n\
                  rs = k.get_records(ShardIterator=it, Limit=10000)['Records']\n\
                  print(len(rs), sum(1 for r in rs if 'request_id' in json.loads(r['Data'])))";
    let mut logged = String::new();
    let mut mirrored = String::new();
    while Instant::now() < deadline {
        logged = boto3(&moto, script);
        mirrored = boto3(
            &moto,
            "sm = boto3.client('sagemaker', **kw)\n\
             ps = sm.list_model_packages(ModelPackageGroupName='fraud')['ModelPackageSummaryList']\n\
             try:\n    e = sm.describe_endpoint(EndpointName='fraud')\n    ep = (e['EndpointStatus'], e['EndpointConfigName'])\n\
             except Exception as x:\n    ep = None\n\
             print([p['ModelApprovalStatus'] for p in ps], ep)",
        );
        if logged == "300 300" && mirrored.contains("InService") {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(logged, "300 300");
    // every label joined to its prediction
    let joined = loop {
        let (_, status) = crate::util::call("GET", &format!("{base}/v1/models/fraud"), None);
        if status["counters"]["joined"] == 300 || Instant::now() > deadline {
            break status;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(joined["counters"]["joined"], 300, "{joined}");
    assert_eq!(mirrored, "['Approved'] ('InService', 'fraud-v1-config')");
    // the package's model is SageMaker's model.tar.gz beside the registry
    let package = boto3(
        &moto,
        "import io, tarfile\n\
         sm = boto3.client('sagemaker', **kw)\n\
         arn = sm.list_model_packages(ModelPackageGroupName='fraud')['ModelPackageSummaryList'][0]['ModelPackageArn']\n\
         c = sm.describe_model_package(ModelPackageName=arn)['InferenceSpecification']['Containers'][0]\n\
         body = s3.get_object(Bucket='lake', Key=c['ModelDataUrl'].split('s3://lake/')[1])['Body'].read()\n\
         print(c['ModelDataUrl'], sorted(tarfile.open(fileobj=io.BytesIO(body)).getnames()))",
    );
    assert_eq!(
        package,
        "s3://lake/prod/_sagemaker/fraud/v0000000001/model.tar.gz ['model.bin', 'model.json']"
    );
    let mut server = server;
    stop(&mut server);
}

/// The change records of a DynamoDB table's stream are read like the
/// embedded log's records: the one read side's conformance suite.
#[test]
fn a_dynamodb_stream_is_a_reader_like_the_embedded_log() {
    use driftline_aws::dynamodb_source::DynamodbStream;

    let moto = Moto::start();
    let arn = boto3(
        &moto,
        "ddb = boto3.client('dynamodb', **kw)\n\
         t = ddb.create_table(TableName='Clicks', KeySchema=[{'AttributeName': 'Key', 'KeyType': 'HASH'}, {'AttributeName': 'Data', 'KeyType': 'RANGE'}], AttributeDefinitions=[{'AttributeName': 'Key', 'AttributeType': 'S'}, {'AttributeName': 'Data', 'AttributeType': 'S'}], BillingMode='PAY_PER_REQUEST', StreamSpecification={'StreamEnabled': True, 'StreamViewType': 'NEW_IMAGE'})\n\
         print(t['TableDescription']['LatestStreamArn'])",
    );
    let runtime = crate::util::runtime();
    runtime.block_on(async {
        let config = driftline_aws::testing::sdk_config(&moto).await;
        let reader = DynamodbStream::new(&config, arn, 1000);
        let shards = {
            use driftline_pipeline::read::ShardReader;
            reader.shards().await.expect("shards").len()
        };
        let put = |records: Vec<(String, Vec<u8>)>| {
            let items: Vec<String> = records
                .iter()
                .map(|(key, data)| {
                    format!(
                        "ddb.put_item(TableName='Clicks', Item={{'Key': {{'S': {key:?}}}, 'Data': {{'S': {:?}}}}})",
                        String::from_utf8_lossy(data)
                    )
                })
                .collect();
            boto3(&moto, &format!("ddb = boto3.client('dynamodb', **kw)\n{}", items.join("\n")));
        };
        // A change record's new image holds what was put.
        let identify = |event: &driftline_pipeline::Event| {
            let change: serde_json::Value = serde_json::from_slice(&event.data).expect("JSON");
            let image = &change["new_image"];
            (
                image["Key"].as_str().unwrap_or_default().to_string(),
                image["Data"].as_str().unwrap_or_default().as_bytes().to_vec(),
            )
        };
        driftline_pipeline::read::conformance(&reader, put, identify, shards).await;
    });
}
