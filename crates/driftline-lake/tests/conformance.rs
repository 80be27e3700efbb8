//! One suite every lake backend passes: a local directory, memory, and (with
//! the `aws` feature) S3, against a `moto_server` this test starts on a free
//! loopback port. Deliveries, listing, reads, the removal of uncommitted
//! objects, and the registry's create-only version claims under concurrent
//! writers, which on S3 rest on conditional puts.

use std::collections::BTreeMap;

use driftline_lake::{
    Compression, Field, FieldType, Lake, ObjectName, Registry, Row, Status, TableSchema,
    TrainingData, Value, VersionRecord,
};

fn schema() -> TableSchema {
    TableSchema::new(
        vec![
            Field {
                name: "id".into(),
                field_type: FieldType::String,
                required: true,
            },
            Field {
                name: "amount".into(),
                field_type: FieldType::Float,
                required: true,
            },
        ],
        None,
    )
    .expect("schema")
}

fn row(i: u128, time_us: i64) -> Row {
    Row {
        values: vec![Value::String(format!("e{i}")), Value::Float(i as f64)],
        shard: "shardId-000000000000".into(),
        sequence_number: i.into(),
        partition_time_us: time_us,
    }
}

fn range(first: u128, last: u128) -> ObjectName {
    ObjectName {
        shard: "shardId-000000000000".into(),
        first: first.into(),
        last: last.into(),
    }
}

fn record() -> VersionRecord {
    VersionRecord {
        version: 0,
        parent: None,
        learner: "lr".into(),
        parameters: serde_json::json!({}),
        training: TrainingData::default(),
        metrics: BTreeMap::new(),
        created_ms: 0,
        artifact: String::new(),
    }
}

/// What every backend must do; `open` gives a new handle on the same lake.
async fn suite(open: impl Fn() -> Lake) {
    let lake = open();
    // deliveries: one object per hour partition; the same delivery again replaces them
    let hour = 3_600_000_000;
    let rows = vec![row(1, 0), row(2, hour), row(3, hour + 5)];
    for _ in 0..2 {
        let written = lake
            .write_delivery("events", &schema(), &range(1, 3), &rows, Compression::Zstd)
            .await
            .expect("write");
        assert_eq!(written.iter().map(|w| w.rows).sum::<usize>(), 3);
    }
    let paths = lake.list("events").await.expect("list");
    assert_eq!(paths.len(), 2, "{paths:?}");
    assert!(paths[0].starts_with("events/dt=1970-01-01/hour=00/shardId-000000000000-"));
    // a delivery never checkpointed is removed, committed ones stay
    lake.write_delivery(
        "events",
        &schema(),
        &range(4, 4),
        &[row(4, 0)],
        Compression::Snappy,
    )
    .await
    .expect("write");
    let removed = lake
        .remove_uncommitted("events", "shardId-000000000000", Some(&3.into()))
        .await
        .expect("remove");
    assert_eq!(removed.len(), 1);
    assert_eq!(open().list("events").await.expect("list"), paths);
    let objects = lake.objects("events/").await.expect("objects");
    assert_eq!(objects.len(), 2);
    assert!(objects.iter().all(|o| o.size > 0 && !o.version.is_empty()));
    // plain objects: written, read back by another handle, absent ones are None
    lake.write("notes/a.txt", b"hello".to_vec())
        .await
        .expect("write");
    assert_eq!(
        open().read("notes/a.txt").await.expect("read").as_deref(),
        Some(&b"hello"[..])
    );
    assert_eq!(lake.read("notes/none.txt").await.expect("read"), None);
    // create-only: of two handles racing for one path exactly one wins; delete is idempotent
    let other = open();
    let (first, second) = tokio::join!(
        lake.create("claims/1.json", b"a".to_vec()),
        other.create("claims/1.json", b"b".to_vec())
    );
    assert!(
        first.expect("create") ^ second.expect("create"),
        "exactly one creates"
    );
    lake.delete("claims/1.json").await.expect("delete");
    lake.delete("claims/1.json").await.expect("delete again");
    assert!(lake
        .create("claims/1.json", b"c".to_vec())
        .await
        .expect("create"));

    // the registry: concurrent writers through two handles never share a version
    let a = Registry::new(open(), "m").expect("a");
    let b = Registry::new(open(), "m").expect("b");
    let mut tasks = Vec::new();
    for i in 0..8u8 {
        let registry = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            registry.register(record(), vec![i]).await
        }));
    }
    let mut claimed = Vec::new();
    for task in tasks {
        claimed.push(task.await.expect("join").expect("register").version);
    }
    claimed.sort_unstable();
    assert_eq!(claimed, (1..=8).collect::<Vec<u64>>());
    for state in b.versions().await.expect("versions") {
        assert_eq!(a.artifact(&state.record).await.expect("artifact").len(), 1);
    }
    a.decide(3, Status::Champion, "best", BTreeMap::new())
        .await
        .expect("decide");
    let champion = b.champion().await.expect("champion").expect("one");
    assert_eq!(champion.record.version, 3);
    a.write_attachment(3, "reference.json", b"{}".to_vec())
        .await
        .expect("attach");
    assert_eq!(
        b.attachment(3, "reference.json").await.expect("read"),
        Some(b"{}".to_vec())
    );
    assert_eq!(b.attachment(2, "reference.json").await.expect("read"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_directory_passes_the_suite() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().to_str().expect("utf-8").to_string();
    suite(|| Lake::open(&path).expect("lake")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_passes_the_suite() {
    let lake = Lake::open("memory://").expect("lake");
    suite(|| lake.clone()).await;
}

#[tokio::test]
async fn a_row_of_the_wrong_type_is_refused_with_the_field_named() {
    let lake = Lake::open("memory://").expect("lake");
    let mut bad = row(1, 0);
    bad.values[1] = Value::String("ten".into());
    let error = lake
        .write_delivery("events", &schema(), &range(1, 1), &[bad], Compression::Zstd)
        .await
        .expect_err("wrong type");
    assert!(error.to_string().contains("\"amount\""), "{error}");
}

#[test]
fn unknown_schemes_are_refused_with_what_is_accepted() {
    let error = Lake::open("ftp://somewhere").expect_err("ftp").to_string();
    assert!(
        error.contains("s3://") && error.contains("file://"),
        "{error}"
    );
    let error = Lake::open_with("/tmp/x", &[("aws_server_side_encryption", "AES256")])
        .expect_err("settings for a directory")
        .to_string();
    assert!(error.contains("s3:// lakes only"), "{error}");
    let error = Lake::open_with("s3://", &[])
        .expect_err("no bucket")
        .to_string();
    assert!(
        error.contains("bucket") || error.contains("aws feature"),
        "{error}"
    );
}

#[cfg(feature = "aws")]
mod s3 {
    use driftline_testkit::Moto;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn s3_passes_the_suite_with_a_prefix() {
        let moto = Moto::start();
        moto.create_bucket("lake");
        let owned = moto.s3_options();
        let options: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
        suite(|| Lake::open_with("s3://lake/team/prod", &options).expect("lake")).await;
        // everything went under the prefix
        let root = Lake::open_with("s3://lake", &options).expect("root");
        let all = root.list("").await.expect("list");
        assert!(
            !all.is_empty() && all.iter().all(|p| p.starts_with("team/prod/")),
            "{all:?}"
        );
        // encryption at rest asked for in the settings reaches S3
        let mut encrypted = options.clone();
        encrypted.push(("aws_server_side_encryption", "aws:kms"));
        encrypted.push(("aws_sse_kms_key_id", "alias/driftline"));
        let lake = Lake::open_with("s3://lake/secret", &encrypted).expect("lake");
        lake.write("a.txt", b"x".to_vec()).await.expect("write");
        // read back by boto3, a client nobody here wrote (.ci/run installs it)
        let script = format!(
            "import boto3\n\
             c = boto3.client('s3', endpoint_url='{}', region_name='us-east-1', aws_access_key_id='test', aws_secret_access_key='test')\n\
             h = c.head_object(Bucket='lake', Key='secret/a.txt')\n\
             print(h.get('ServerSideEncryption'), h.get('SSEKMSKeyId'))",
            moto.endpoint()
        );
        let output = std::process::Command::new("python3")
            .args(["-c", &script])
            .output()
            .expect("python3");
        let printed = String::from_utf8_lossy(&output.stdout);
        assert!(
            printed.starts_with("aws:kms") && printed.contains("alias/driftline"),
            "{printed}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
