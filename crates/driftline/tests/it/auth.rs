//! Auth and TLS: SigV4 refusals in AWS's codes with nothing written, the scope
//! matrix over every native route, TLS with the Rust SDK, keys made by
//! `driftline auth new-key`, and the refusals of an unsafe start.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_kinesis::error::ProvideErrorMetadata;
use serde_json::{json, Value};

use crate::util::{
    agent, keys_file, kinesis_json, private, sdk_client_with, sigv4_headers, Server, TEST_KEY_ID,
    TEST_SECRET,
};

const READER: (&str, &str) = ("DLKREADER00000000001", "reader-secret-0123456789abcdef");
const WRITER: (&str, &str) = ("DLKWRITER00000000001", "writer-secret-0123456789abcdef");
const EV_READER: (&str, &str) = ("DLKEVREADER000000001", "evreader-secret-0123456789ab");
const JSON: &str = "application/x-amz-json-1.1";

fn extra_keys() -> String {
    format!(
        "[[key]]\nid = \"{}\"\nsecret = \"{}\"\nscopes = [\"streams:read\"]\n\n\
         [[key]]\nid = \"{}\"\nsecret = \"{}\"\nscopes = [\"streams:write:ev*\"]\n\n\
         [[key]]\nid = \"{}\"\nsecret = \"{}\"\nscopes = [\"streams:read:ev*\"]\n",
        READER.0, READER.1, WRITER.0, WRITER.1, EV_READER.0, EV_READER.1
    )
}

/// A Kinesis call signed by `key` at `time`; `tamper` may change the request
/// after signing. Returns the status and the `__type` and message.
fn signed_call(
    endpoint: &str,
    key: (&str, &str),
    time: SystemTime,
    operation: &str,
    body: &Value,
    tamper: impl FnOnce(&mut Vec<(String, String)>, &mut Vec<u8>),
) -> (u16, String, String) {
    let target = format!("Kinesis_20131202.{operation}");
    let mut body = body.to_string().into_bytes();
    let mut headers = vec![
        ("content-type".to_string(), JSON.to_string()),
        ("x-amz-target".to_string(), target.clone()),
    ];
    headers.extend(sigv4_headers(endpoint, key, time, JSON, &target, &body));
    tamper(&mut headers, &mut body);
    send(endpoint, &headers, body)
}

fn send(endpoint: &str, headers: &[(String, String)], body: Vec<u8>) -> (u16, String, String) {
    let mut request = agent().post(endpoint);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let mut response = request.send(body).expect("request");
    let status = response.status().as_u16();
    let answer: Value = response.body_mut().read_json().unwrap_or_default();
    (
        status,
        answer["__type"].as_str().unwrap_or_default().to_string(),
        answer["message"].as_str().unwrap_or_default().to_string(),
    )
}

fn put(stream: &str, data: &str) -> Value {
    json!({"StreamName": stream, "PartitionKey": "k", "Data": data})
}

fn count(endpoint: &str, stream: &str) -> usize {
    let (_, shards) = kinesis_json(endpoint, "ListShards", json!({"StreamName": stream}));
    let mut total = 0;
    for shard in shards["Shards"].as_array().expect("shards") {
        let (_, iterator) = kinesis_json(
            endpoint,
            "GetShardIterator",
            json!({"StreamName": stream, "ShardId": shard["ShardId"], "ShardIteratorType": "TRIM_HORIZON"}),
        );
        let (_, page) = kinesis_json(
            endpoint,
            "GetRecords",
            json!({"ShardIterator": iterator["ShardIterator"]}),
        );
        total += page["Records"].as_array().map_or(0, Vec::len);
    }
    total
}

#[test]
fn sigv4_refusals_come_back_in_aws_codes_and_write_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = keys_file(dir.path(), &extra_keys());
    let server = Server::start_open(
        &dir.path().join("data"),
        &["--auth", keys.to_str().expect("path")],
    );
    let endpoint = server.endpoint.as_str();
    for stream in ["events", "other"] {
        let (status, answer) = kinesis_json(
            endpoint,
            "CreateStream",
            json!({"StreamName": stream, "ShardCount": 1}),
        );
        assert_eq!(status, 200, "{answer}");
    }
    let now = SystemTime::now();
    let body = put("events", "AA==");
    let untouched = |_: &mut Vec<(String, String)>, _: &mut Vec<u8>| {};

    // no credentials at all
    let unsigned = vec![
        ("content-type".to_string(), JSON.to_string()),
        (
            "x-amz-target".to_string(),
            "Kinesis_20131202.PutRecord".to_string(),
        ),
    ];
    let (status, code, _) = send(endpoint, &unsigned, body.to_string().into_bytes());
    assert_eq!(
        (status, code.as_str()),
        (403, "MissingAuthenticationTokenException")
    );
    // an unknown key, a wrong secret
    let (status, code, _) = signed_call(
        endpoint,
        ("DLKNOBODY00000000000", TEST_SECRET),
        now,
        "PutRecord",
        &body,
        untouched,
    );
    assert_eq!(
        (status, code.as_str()),
        (400, "UnrecognizedClientException")
    );
    let (status, code, message) = signed_call(
        endpoint,
        (TEST_KEY_ID, "not-the-secret-0123456789"),
        now,
        "PutRecord",
        &body,
        untouched,
    );
    assert_eq!((status, code.as_str()), (400, "InvalidSignatureException"));
    assert!(!message.contains(TEST_SECRET), "{message}");
    // a date outside the skew window either way (a replay ten minutes on)
    for skew in [-600i64, 600] {
        let at = if skew < 0 {
            now - Duration::from_secs(600)
        } else {
            now + Duration::from_secs(600)
        };
        let (status, code, message) = signed_call(
            endpoint,
            (TEST_KEY_ID, TEST_SECRET),
            at,
            "PutRecord",
            &body,
            untouched,
        );
        assert_eq!((status, code.as_str()), (400, "InvalidSignatureException"));
        assert!(message.starts_with("Signature"), "{message}");
    }
    // the body changed after signing
    let (status, code, _) = signed_call(
        endpoint,
        (TEST_KEY_ID, TEST_SECRET),
        now,
        "PutRecord",
        &body,
        |_, body| *body = put("events", "AQ==").to_string().into_bytes(),
    );
    assert_eq!((status, code.as_str()), (400, "InvalidSignatureException"));
    // the operation changed after signing
    let (status, code, _) = signed_call(
        endpoint,
        (TEST_KEY_ID, TEST_SECRET),
        now,
        "PutRecord",
        &body,
        |headers, _| {
            for (name, value) in headers.iter_mut() {
                if name == "x-amz-target" {
                    *value = "Kinesis_20131202.DeleteStream".into();
                }
            }
        },
    );
    assert_eq!((status, code.as_str()), (400, "InvalidSignatureException"));
    // malformed Authorization headers, one of 64 KiB
    for bad in [
        "Bearer DLKTESTALLSCOPES0001:whatever".to_string(),
        "AWS4-HMAC-SHA256 Credential=nope".to_string(),
        "AWS4-HMAC-SHA256 Credential=K/20261203/us-east-1/kinesis/aws4_request, SignedHeaders=host;x-amz-date, Signature=00".to_string(),
        "Digest x".to_string(),
        format!("AWS4-HMAC-SHA256 Credential={}", "A".repeat(64 * 1024)),
    ] {
        let (status, code, _) = signed_call(
            endpoint,
            (TEST_KEY_ID, TEST_SECRET),
            now,
            "PutRecord",
            &body,
            |headers, _| {
                headers.retain(|(n, _)| n != "authorization");
                headers.push(("authorization".into(), bad.clone()));
            },
        );
        assert_eq!(
            (status, code.as_str()),
            (400, "IncompleteSignatureException"),
            "{bad:.80}"
        );
    }
    // scopes: a reader may not write, a writer only on its streams
    let (status, code, message) = signed_call(endpoint, READER, now, "PutRecord", &body, untouched);
    assert_eq!((status, code.as_str()), (400, "AccessDeniedException"));
    assert!(
        message.contains("streams:write") && message.contains(READER.0),
        "{message}"
    );
    let (_, code, _) = signed_call(
        endpoint,
        WRITER,
        now,
        "PutRecord",
        &put("other", "AA=="),
        untouched,
    );
    assert_eq!(code, "AccessDeniedException");
    let (_, code, _) = signed_call(
        endpoint,
        WRITER,
        now,
        "DeleteStream",
        &json!({"StreamName": "events"}),
        untouched,
    );
    assert_eq!(code, "AccessDeniedException");
    let (_, code, _) = signed_call(endpoint, WRITER, now, "ListStreams", &json!({}), untouched);
    assert_eq!(code, "AccessDeniedException");
    let (status, _, message) = signed_call(endpoint, WRITER, now, "PutRecord", &body, untouched);
    assert_eq!(status, 200, "{message}");
    let (status, _, message) = signed_call(
        endpoint,
        READER,
        now,
        "DescribeStreamSummary",
        &json!({"StreamName": "events"}),
        untouched,
    );
    assert_eq!(status, 200, "{message}");

    // a key sees only the streams it may read
    let (status, _, _) = signed_call(
        endpoint,
        EV_READER,
        now,
        "ListStreams",
        &json!({}),
        untouched,
    );
    assert_eq!(status, 200);
    let listed = {
        let target = "Kinesis_20131202.ListStreams";
        let body = b"{}".to_vec();
        let mut request = agent()
            .post(endpoint)
            .header("content-type", JSON)
            .header("x-amz-target", target);
        for (name, value) in sigv4_headers(endpoint, EV_READER, now, JSON, target, &body) {
            request = request.header(name, value);
        }
        let mut response = request.send(body).expect("list");
        response.body_mut().read_json::<Value>().expect("json")
    };
    assert_eq!(listed["StreamNames"], json!(["events"]), "{listed}");

    // CBOR, signed by the writer
    let mut cbor = Vec::new();
    ciborium::ser::into_writer(
        &ciborium::Value::Map(vec![
            ("StreamName".into(), "events".into()),
            ("PartitionKey".into(), "k".into()),
            ("Data".into(), ciborium::Value::Bytes(vec![1, 2, 3])),
        ]),
        &mut cbor,
    )
    .expect("cbor");
    let cbor_type = "application/x-amz-cbor-1.1";
    let target = "Kinesis_20131202.PutRecord";
    let mut headers = vec![
        ("content-type".to_string(), cbor_type.to_string()),
        ("x-amz-target".to_string(), target.to_string()),
    ];
    headers.extend(sigv4_headers(
        endpoint, WRITER, now, cbor_type, target, &cbor,
    ));
    let mut request = agent().post(endpoint);
    for (name, value) in &headers {
        request = request.header(name, value);
    }
    let response = request.send(&cbor[..]).expect("cbor put");
    assert_eq!(response.status().as_u16(), 200);

    // only the two allowed writes are there
    assert_eq!(count(endpoint, "events"), 2);
    assert_eq!(count(endpoint, "other"), 0);

    // the AWS SDK for Rust with a wrong secret gets AWS's code
    let wrong = sdk_client_with(endpoint, "wrong-secret-0123456789abcdef", None);
    let error = crate::util::runtime()
        .block_on(wrong.list_streams().send())
        .expect_err("a wrong secret");
    assert_eq!(
        error.as_service_error().and_then(|e| e.code()),
        Some("InvalidSignatureException")
    );
}

#[test]
fn the_rust_sdk_trusts_a_custom_root_over_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &["--tls-self-signed"]);
    let pem = std::fs::read(dir.path().join("self-signed-cert.pem")).expect("pem");
    use aws_smithy_http_client::tls;
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .tls_context(
            tls::TlsContext::builder()
                .with_trust_store(tls::TrustStore::empty().with_pem_certificate(pem))
                .build()
                .expect("tls context"),
        )
        .build_https();
    let kinesis = sdk_client_with(&server.endpoint, TEST_SECRET, Some(http));
    crate::util::runtime().block_on(async {
        kinesis
            .create_stream()
            .stream_name("tls")
            .shard_count(1)
            .send()
            .await
            .expect("create over TLS");
        let listed = kinesis.list_streams().send().await.expect("list over TLS");
        assert_eq!(listed.stream_names(), ["tls"]);
    });
    // and the CLI with --ca
    let output = crate::util::driftline(&server.endpoint)
        .args(["stream", "list", "--ca"])
        .arg(dir.path().join("self-signed-cert.pem"))
        .output()
        .expect("driftline stream list");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "tls");
    // without it, the certificate is not trusted
    let output = crate::util::driftline(&server.endpoint)
        .args(["stream", "list"])
        .output()
        .expect("driftline stream list");
    assert!(!output.status.success());
}

/// A copy of the model example with `[auth]`, a retrain every 100 labels and
/// every challenger promoted, so that a second version comes quickly.
fn model_pipeline(dir: &Path) -> std::path::PathBuf {
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/model.toml"),
    )
    .expect("example");
    let text = example
        .replace(
            "retrain = { on_drift = true, cooldown_seconds = 2, window = 20000, min_train = 400 }",
            "retrain = { every_labels = 100, cooldown_seconds = 0, window = 2000, min_train = 50 }",
        )
        .replace(
            "promotion = { mode = \"direct\", min_gain = 0.005 }",
            "promotion = { mode = \"direct\", min_gain = -1.0 }",
        );
    assert_ne!(text, example, "the example changed: update this test");
    let path = dir.join("model.toml");
    std::fs::write(&path, format!("{text}\n[auth]\nkeys = \"keys.toml\"\n")).expect("write");
    path
}

const PREDICT: (&str, &str) = ("DLKPREDICT0000000001", "predict-secret-0123456789abc");
const LABEL: (&str, &str) = ("DLKLABEL000000000001", "label-secret-0123456789abcde");
const ADMIN: (&str, &str) = ("DLKADMIN000000000001", "admin-secret-0123456789abcde");
const INGEST: (&str, &str) = ("DLKINGEST00000000001", "ingest-secret-0123456789abcd");
const ELSEWHERE: (&str, &str) = ("DLKELSEWHERE00000001", "elsewhere-secret-0123456789ab");

fn request(method: &str, url: &str, key: Option<(&str, &str)>, body: Option<&str>) -> (u16, Value) {
    let agent = agent();
    let auth = key.map(|(id, secret)| format!("Bearer {id}:{secret}"));
    let mut response = if method == "GET" {
        let mut r = agent.get(url);
        if let Some(auth) = &auth {
            r = r.header("authorization", auth);
        }
        r.call()
    } else {
        let mut r = agent.post(url).header("content-type", "application/json");
        if let Some(auth) = &auth {
            r = r.header("authorization", auth);
        }
        r.send(body.unwrap_or(""))
    }
    .expect("request");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Method, path, body, the key with the right scope, and that scope.
type Route<'a> = (&'a str, String, Option<String>, (&'a str, &'a str), &'a str);

#[test]
fn every_native_route_is_401_without_keys_403_outside_its_scope_and_200_within() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = |(id, secret): (&str, &str), scopes: &str| {
        format!("[[key]]\nid = \"{id}\"\nsecret = \"{secret}\"\nscopes = [{scopes}]\n\n")
    };
    let extra = [
        key(PREDICT, "\"models:predict:fraud\""),
        key(LABEL, "\"models:label:fraud\""),
        key(ADMIN, "\"models:admin:fraud\""),
        key(INGEST, "\"streams:write:history\""),
        key(
            ELSEWHERE,
            "\"models:predict:other\", \"streams:write:other\"",
        ),
    ]
    .concat();
    keys_file(dir.path(), &extra);
    let pipeline = model_pipeline(dir.path());
    let mut command = Command::new(env!("CARGO_BIN_EXE_driftline"));
    command
        .arg("run")
        .arg(&pipeline)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--progress-every",
            "60",
            "--durability",
            "os",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .arg("--lake")
        .arg(dir.path().join("lake"));
    let server = Server::spawn(command);
    let base = server.endpoint.clone();
    let all = Some((TEST_KEY_ID, TEST_SECRET));

    let mut stream = driftline_ml::synth::FraudStream::new(5, 4000);
    let history: String = stream
        .by_ref()
        .take(1000)
        .map(|t| {
            let mut event = t.features.clone();
            event["fraud"] = json!(t.fraud);
            format!("{event}\n")
        })
        .collect();
    let ingest_url = format!("{base}/v1/streams/history/records");
    // (a refusal answers before the body is read: a small one, which ureq
    // finishes sending before it reads the answer)
    let one_line = history.lines().next().map(|l| format!("{l}\n"));
    assert_eq!(
        request("POST", &ingest_url, None, one_line.as_deref()).0,
        401
    );
    let (status, answer) = request("POST", &ingest_url, Some(ELSEWHERE), one_line.as_deref());
    assert_eq!(
        (status, answer["missing_scope"].as_str()),
        (403, Some("streams:write"))
    );
    let (status, answer) = request("POST", &ingest_url, Some(INGEST), Some(&history));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["records"], 1000);
    wait_for("the first version", || {
        request("GET", &format!("{base}/v1/models/fraud"), all, None).0 == 200
    });
    // labelled predictions, 100 at a time, retrain the model every 100 labels
    // once the joined examples have reached the lake
    let mut events = Vec::new();
    wait_for("a second version", || {
        let (_, state) = request("GET", &format!("{base}/v1/models/fraud"), all, None);
        if state["versions"].as_array().map_or(0, Vec::len) >= 2 {
            return true;
        }
        events = stream.by_ref().take(100).collect();
        let batch =
            json!({"instances": events.iter().map(|t| t.features.clone()).collect::<Vec<_>>()});
        let url = format!("{base}/v1/models/fraud/predict");
        let (status, answer) = request("POST", &url, all, Some(&batch.to_string()));
        assert_eq!(status, 200, "{answer}");
        let labels: Vec<Value> = answer["predictions"]
            .as_array()
            .expect("predictions")
            .iter()
            .zip(&events)
            .map(|(p, t)| json!({"request_id": p["request_id"], "label": t.fraud}))
            .collect();
        let url = format!("{base}/v1/models/fraud/labels");
        let (status, answer) = request("POST", &url, all, Some(&Value::Array(labels).to_string()));
        assert_eq!(status, 200, "{answer}");
        std::thread::sleep(Duration::from_millis(1000));
        false
    });
    // the matrix sends no more labels: once a retrain still under way has
    // finished, the champion stays until it rolls back
    std::thread::sleep(Duration::from_secs(2));
    let (_, state) = request("GET", &format!("{base}/v1/models/fraud"), all, None);
    let champion = state["champion"].as_u64().expect("champion");
    let event = events[0].features.to_string();
    let routes: Vec<Route> = vec![
        ("GET", "/v1/models".into(), None, PREDICT, "models:predict"),
        (
            "GET",
            "/v1/models/fraud".into(),
            None,
            LABEL,
            "models:predict",
        ),
        (
            "POST",
            "/v1/models/fraud/predict".into(),
            Some(event.clone()),
            PREDICT,
            "models:predict",
        ),
        (
            "POST",
            "/invocations".into(),
            Some(event.clone()),
            PREDICT,
            "models:predict",
        ),
        (
            "POST",
            "/v1/models/fraud/labels".into(),
            Some(json!({"request_id": "unknown", "label": 1}).to_string()),
            LABEL,
            "models:label",
        ),
        (
            "POST",
            "/v1/models/fraud/rollback".into(),
            Some(json!({"reason": "matrix"}).to_string()),
            ADMIN,
            "models:admin",
        ),
        (
            "POST",
            "/v1/models/fraud/promote".into(),
            Some(json!({"version": champion}).to_string()),
            ADMIN,
            "models:admin",
        ),
    ];
    for (method, path, body, right, scope) in routes {
        let url = format!("{base}{path}");
        let (status, answer) = request(method, &url, None, body.as_deref());
        assert_eq!(status, 401, "{method} {path} without keys: {answer}");
        let wrong_secret = (right.0, "not-the-secret-0123456789");
        assert_eq!(
            request(method, &url, Some(wrong_secret), body.as_deref()).0,
            401
        );
        let (status, answer) = request(method, &url, Some(ELSEWHERE), body.as_deref());
        // GET /v1/models needs the scope on some model: ELSEWHERE has one,
        // but not on fraud, which it does not see
        if path == "/v1/models" {
            assert_eq!((status, &answer["models"]), (200, &json!([])), "{answer}");
            let (status, answer) = request(method, &url, Some(INGEST), body.as_deref());
            assert_eq!(
                (status, answer["missing_scope"].as_str()),
                (403, Some(scope))
            );
        } else {
            assert_eq!(
                status, 403,
                "{method} {path} with the wrong scope: {answer}"
            );
            assert_eq!(answer["missing_scope"].as_str(), Some(scope), "{answer}");
        }
        let (status, answer) = request(method, &url, Some(right), body.as_deref());
        assert_eq!(status, 200, "{method} {path} with {scope}: {answer}");
    }
    // health checks stay open
    assert_eq!(request("GET", &format!("{base}/health"), None, None).0, 200);
    assert_eq!(request("GET", &format!("{base}/ping"), None, None).0, 200);

    // a SigV4-signed native request is accepted too (GET, any service name)
    {
        use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
        let url = format!("{base}/v1/models/fraud");
        let host = base.trim_start_matches("http://").to_string();
        let identity =
            aws_credential_types::Credentials::new(PREDICT.0, PREDICT.1, None, None, "t").into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("driftline")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .expect("params")
            .into();
        let signable = SignableRequest::new(
            "GET",
            &url,
            [("host", host.as_str())].into_iter(),
            SignableBody::Bytes(b""),
        )
        .expect("signable");
        let (instructions, _) = sign(signable, &params).expect("sign").into_parts();
        let mut call = agent().get(&url);
        for (name, value) in instructions.headers() {
            call = call.header(name, value);
        }
        let response = call.call().expect("signed GET");
        assert_eq!(response.status().as_u16(), 200);
    }

    // the registry says who rolled back (to the previous champion) and who
    // promoted (the champion again)
    let show = |version: u64| -> Value {
        let output = Command::new(env!("CARGO_BIN_EXE_driftline"))
            .args(["models", "show", "fraud", &version.to_string(), "--lake"])
            .arg(dir.path().join("lake"))
            .output()
            .expect("models show");
        serde_json::from_slice(&output.stdout).expect("json")
    };
    let last_by = |shown: &Value, status: &str| -> Option<Value> {
        shown["decisions"]
            .as_array()?
            .iter()
            .rev()
            .find(|d| d["status"] == status)
            .map(|d| d["by"].clone())
    };
    let promoted = show(champion);
    assert_eq!(
        last_by(&promoted, "champion"),
        Some(json!(ADMIN.0)),
        "{promoted}"
    );
    let rolled_back_to: Vec<Value> = (1..champion)
        .map(show)
        .filter(|v| last_by(v, "champion") == Some(json!(ADMIN.0)))
        .collect();
    assert_eq!(
        rolled_back_to.len(),
        1,
        "one version was brought back by the key"
    );
}

#[test]
fn new_keys_are_private_and_unsafe_starts_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("keys.toml");
    for scope in ["streams:write:events", "streams:read"] {
        let output = Command::new(env!("CARGO_BIN_EXE_driftline"))
            .args(["auth", "new-key", "--scope", scope, "--file"])
            .arg(&file)
            .output()
            .expect("new-key");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let text = std::fs::read_to_string(&file).expect("keys");
    let field = |name: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix(&format!("{name} = \"")))
            .map(|v| v.trim_end_matches('"').to_string())
            .collect()
    };
    let (ids, secrets) = (field("id"), field("secret"));
    assert_eq!((ids.len(), secrets.len()), (2, 2), "{text}");
    assert_ne!(secrets[0], secrets[1]);
    assert!(secrets.iter().all(|s| s.len() == 40));

    // a server takes the file; the CLI signs with the keys from the environment
    let server = Server::start_open(
        &dir.path().join("data"),
        &["--auth", file.to_str().expect("path")],
    );
    let cli = |id: &str, secret: &str, args: &[&str]| {
        let output = crate::util::driftline(&server.endpoint)
            .env("DRIFTLINE_ACCESS_KEY_ID", id)
            .env("DRIFTLINE_SECRET_ACCESS_KEY", secret)
            .args(args)
            .output()
            .expect("driftline");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).to_string(),
        )
    };
    let (ok, err) = cli(TEST_KEY_ID, TEST_SECRET, &["stream", "list"]);
    assert!(!ok && err.contains("UnrecognizedClientException"), "{err}");
    let (ok, err) = cli(&ids[0], &secrets[0], &["stream", "create", "events"]);
    assert!(!ok && err.contains("AccessDeniedException"), "{err}");
    assert!(!err.contains(&secrets[0]), "{err}");
    drop(server);

    let serve = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_driftline"))
            .args(["serve", "--data-dir"])
            .arg(dir.path().join("data2"))
            .args(args)
            .output()
            .expect("serve");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).to_string(),
        )
    };
    // the demo has no keys: loopback only
    let output = Command::new(env!("CARGO_BIN_EXE_driftline"))
        .args(["demo", "--listen", "0.0.0.0:0", "--dir"])
        .arg(dir.path().join("demo"))
        .output()
        .expect("demo");
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && err.contains("loopback only"),
        "{err}"
    );
    // beyond loopback without keys: refused before anything listens
    let (ok, err) = serve(&["--listen", "0.0.0.0:0"]);
    assert!(
        !ok && err.contains("refusing to listen on 0.0.0.0:0 without keys"),
        "{err}"
    );
    // a credentials file others may read, or bad TOML: refused, the secret unshown
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let (ok, err) = serve(&[
            "--listen",
            "127.0.0.1:0",
            "--auth",
            file.to_str().expect("p"),
        ]);
        assert!(!ok && err.contains("chmod 600"), "{err}");
    }
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        format!("[[key]]\nid = \"K\"\nsecret = \"{}\n", secrets[0]),
    )
    .expect("w");
    private(&bad);
    let (ok, err) = serve(&[
        "--listen",
        "127.0.0.1:0",
        "--auth",
        bad.to_str().expect("p"),
    ]);
    assert!(!ok && err.contains("bad.toml:3"), "{err}");
    assert!(!err.contains(&secrets[0]), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn the_aws_cli_signs_with_a_listed_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let aws = |secret: &str, args: &[&str]| {
        let output = Command::new("aws")
            .args([
                "--endpoint-url",
                &server.endpoint,
                "--region",
                "us-east-1",
                "kinesis",
            ])
            .args(args)
            .env("AWS_ACCESS_KEY_ID", TEST_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("AWS_CONFIG_FILE", dir.path().join("no-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                dir.path().join("no-credentials"),
            )
            .output()
            .expect("the AWS CLI (.ci/run installs awscli from PyPI)");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).to_string(),
            String::from_utf8_lossy(&output.stderr).to_string(),
        )
    };
    let (ok, _, err) = aws(
        TEST_SECRET,
        &[
            "create-stream",
            "--stream-name",
            "cli",
            "--shard-count",
            "1",
        ],
    );
    assert!(ok, "{err}");
    let (ok, _, err) = aws(
        TEST_SECRET,
        &[
            "put-record",
            "--stream-name",
            "cli",
            "--partition-key",
            "k",
            "--data",
            "aGVsbG8=",
        ],
    );
    assert!(ok, "{err}");
    let (ok, out, err) = aws(TEST_SECRET, &["list-streams"]);
    assert!(ok && out.contains("\"cli\""), "{out}{err}");
    let (ok, _, err) = aws("wrong-secret-0123456789abcdef", &["list-streams"]);
    assert!(!ok && err.contains("InvalidSignatureException"), "{err}");
    assert_eq!(count(&server.endpoint, "cli"), 1);
}
