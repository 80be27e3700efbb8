//! The CBOR encoding (`application/x-amz-cbor-1.1`) that the Java SDK and the KPL use.

use ciborium::Value;

use crate::util::{kinesis_raw, Server};

fn call(endpoint: &str, operation: &str, request: Value) -> (u16, Value) {
    let mut body = Vec::new();
    ciborium::ser::into_writer(&request, &mut body).expect("encode");
    let agent = crate::util::agent();
    let target = format!("Kinesis_20131202.{operation}");
    let mut request = agent
        .post(endpoint)
        .header("content-type", "application/x-amz-cbor-1.1")
        .header("x-amz-target", &target);
    for (name, value) in crate::util::sigv4_headers(
        endpoint,
        (crate::util::TEST_KEY_ID, crate::util::TEST_SECRET),
        std::time::SystemTime::now(),
        "application/x-amz-cbor-1.1",
        &target,
        &body,
    ) {
        request = request.header(name, value);
    }
    let mut response = request.send(&body[..]).expect("request");
    let status = response.status().as_u16();
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/x-amz-cbor-1.1")
    );
    let bytes = response.body_mut().read_to_vec().expect("body");
    (
        status,
        ciborium::de::from_reader(&bytes[..]).expect("cbor answer"),
    )
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (Value::Text(k.into()), v))
            .collect(),
    )
}

fn get<'a>(value: &'a Value, key: &str) -> &'a Value {
    value
        .as_map()
        .and_then(|m| {
            m.iter()
                .find(|(k, _)| k.as_text() == Some(key))
                .map(|(_, v)| v)
        })
        .unwrap_or_else(|| panic!("no {key} in {value:?}"))
}

#[test]
fn a_cbor_client_round_trips_binary_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let endpoint = &server.endpoint;
    let (status, _) = call(
        endpoint,
        "CreateStream",
        map(vec![
            ("StreamName", Value::Text("c".into())),
            ("ShardCount", Value::Integer(1.into())),
        ]),
    );
    assert_eq!(status, 200);
    let payload: Vec<u8> = (0..=255).collect();
    let (status, put) = call(
        endpoint,
        "PutRecord",
        map(vec![
            ("StreamName", Value::Text("c".into())),
            ("PartitionKey", Value::Text("k".into())),
            ("Data", Value::Bytes(payload.clone())),
        ]),
    );
    assert_eq!(status, 200);
    assert_eq!(get(&put, "ShardId").as_text(), Some("shardId-000000000000"));
    let (_, iterator) = call(
        endpoint,
        "GetShardIterator",
        map(vec![
            ("StreamName", Value::Text("c".into())),
            ("ShardId", Value::Text("shardId-000000000000".into())),
            ("ShardIteratorType", Value::Text("AT_TIMESTAMP".into())),
            // Java SDK style: tag 1 around epoch milliseconds
            (
                "Timestamp",
                Value::Tag(1, Box::new(Value::Integer(1_000.into()))),
            ),
        ]),
    );
    let (status, records) = call(
        endpoint,
        "GetRecords",
        map(vec![(
            "ShardIterator",
            get(&iterator, "ShardIterator").clone(),
        )]),
    );
    assert_eq!(status, 200);
    let records = get(&records, "Records").as_array().expect("list").clone();
    assert_eq!(records.len(), 1);
    assert_eq!(get(&records[0], "Data").as_bytes(), Some(&payload));
    let Value::Tag(1, arrival) = get(&records[0], "ApproximateArrivalTimestamp") else {
        panic!("timestamp is not tagged");
    };
    let arrival_ms: i128 = arrival.as_integer().expect("integer").into();
    assert!(
        arrival_ms > 1_600_000_000_000,
        "milliseconds since the epoch, got {arrival_ms}"
    );

    let (status, error) = call(
        endpoint,
        "DescribeStream",
        map(vec![("StreamName", Value::Text("missing".into()))]),
    );
    assert_eq!(status, 400);
    assert_eq!(
        get(&error, "__type").as_text(),
        Some("ResourceNotFoundException")
    );
}

#[test]
fn malformed_bodies_get_a_serialization_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let send = |content_type: &str, operation: &str, body: &[u8]| {
        let (status, bytes) = kinesis_raw(&server.endpoint, content_type, operation, body.to_vec());
        (status, String::from_utf8_lossy(&bytes).to_string())
    };
    for (content_type, body) in [
        ("application/x-amz-json-1.1", &b"{not json"[..]),
        ("application/x-amz-cbor-1.1", &[0xff, 0x00][..]),
        ("application/x-amz-json-1.1", &b"[1,2]"[..]),
    ] {
        let (status, answer) = send(content_type, "ListStreams", body);
        assert_eq!(status, 400);
        assert!(
            answer.contains("SerializationException"),
            "{content_type}: {answer}"
        );
    }
    let json = "application/x-amz-json-1.1";
    // a wrong type names the member
    let (_, answer) = send(
        json,
        "CreateStream",
        br#"{"StreamName": 5, "ShardCount": 1}"#,
    );
    assert!(answer.contains("StreamName must be a string"), "{answer}");
    // a missing member is named
    let (_, answer) = send(json, "CreateStream", br#"{"ShardCount": 1}"#);
    assert!(
        answer.contains("ValidationException") && answer.contains("'streamName'"),
        "{answer}"
    );
    // an unknown operation
    let (_, answer) = send(json, "Frobnicate", b"{}");
    assert!(
        answer.contains("UnknownOperationException") && answer.contains("Frobnicate"),
        "{answer}"
    );
}
