//! One conformance suite for every `StreamWriter` (the seam producers put
//! through): the embedded stream, and a Kinesis data stream on a
//! `moto_server` started on a free loopback port (aws feature).

use std::collections::BTreeMap;

use driftline_log::Position;
use driftline_log::{NewRecord, StreamWriter};

/// A record as read back: shard, sequence number, partition key, data.
pub type ReadBack = (String, String, String, Vec<u8>);

fn record(key: &str, data: String) -> NewRecord {
    NewRecord {
        partition_key: key.to_string(),
        explicit_hash_key: None,
        data: data.into_bytes(),
    }
}

/// What every writer must do: each record put once, where its outcome
/// says, in order within its shard and its key, in requests of any size.
pub fn suite(writer: &dyn StreamWriter, read_all: impl Fn() -> Vec<ReadBack>) {
    assert!(writer.put_records(Vec::new()).is_empty());

    // More records than one PutRecords request takes, over seven keys.
    let records: Vec<NewRecord> = (0..1201)
        .map(|i| record(&format!("key-{}", i % 7), format!("{{\"n\":{i}}}")))
        .collect();
    let outcomes = writer.put_records(records.clone());
    assert_eq!(outcomes.len(), records.len());
    let mut where_put = BTreeMap::new();
    for (record, outcome) in records.iter().zip(&outcomes) {
        let position = outcome.as_ref().expect("every record is put");
        where_put.insert(
            (position.shard.clone(), position.sequence_number.clone()),
            record.data.clone(),
        );
    }
    let read = read_all();
    assert_eq!(read.len(), records.len(), "each record read back once");
    let mut last_in_shard: BTreeMap<&str, &str> = BTreeMap::new();
    let mut by_key: BTreeMap<&str, Vec<&[u8]>> = BTreeMap::new();
    for (shard, sequence, key, data) in &read {
        assert_eq!(
            where_put.get(&(shard.clone(), sequence.clone())),
            Some(data),
            "read at the position its put answered"
        );
        if let Some(before) = last_in_shard.insert(shard, sequence) {
            assert!(
                Position::parse(before) < Position::parse(sequence),
                "{before} then {sequence}"
            );
        }
        by_key.entry(key).or_default().push(data);
    }
    for (key, data) in by_key {
        let put: Vec<&[u8]> = records
            .iter()
            .filter(|r| r.partition_key == key)
            .map(|r| r.data.as_slice())
            .collect();
        assert_eq!(data, put, "key {key} in the order put");
    }

    // More bytes than one request takes: 9 records of 700 KiB.
    let big: Vec<NewRecord> = (0..9)
        .map(|i| record("big", format!("{i}{}", "x".repeat(700 * 1024))))
        .collect();
    assert!(writer.put_records(big).iter().all(Result::is_ok));
    assert_eq!(read_all().len(), 1201 + 9);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_stream_conforms() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = driftline_log::LogStore::open(dir.path(), driftline_log::LogConfig::default())
            .expect("store");
        let stream =
            crate::assembly::streams::stream_or_create(&store, "events", 3).expect("stream");
        suite(stream.as_ref(), || {
            stream
                .read_all()
                .expect("read")
                .into_iter()
                .map(|(shard, r)| {
                    (
                        driftline_log::shard_id(shard),
                        driftline_log::SequenceNumber::new(shard, r.offset).to_string(),
                        r.partition_key,
                        r.data,
                    )
                })
                .collect()
        });
    }

    #[cfg(feature = "aws")]
    #[test]
    fn a_kinesis_stream_conforms() {
        use driftline_aws::kinesis_source::KinesisStream;
        use driftline_aws::sharded_source::ShardedStream;
        use driftline_pipeline::config::StartingPosition;

        let moto = driftline_aws::testing::Moto::start();
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let config = runtime.block_on(driftline_aws::testing::sdk_config(&moto));
        let client = aws_sdk_kinesis::Client::new(&config);
        runtime
            .block_on(
                client
                    .create_stream()
                    .stream_name("events-prod")
                    .shard_count(3)
                    .send(),
            )
            .expect("create stream");
        let writer = driftline_aws::kinesis_writer::KinesisWriter::new(
            driftline_aws::kinesis_writer::producer_client(&config),
            "events",
            "events-prod",
            driftline_aws::kinesis_writer::WriterRuntime::new().expect("producer runtime"),
        );
        assert_eq!(writer.stream_name(), "events");
        let stream = KinesisStream {
            client,
            name: "events-prod".into(),
            batch_size: 10_000,
        };
        suite(&writer, || {
            runtime.block_on(async {
                let mut all = Vec::new();
                for shard in stream.shards().await.expect("shards") {
                    let mut iterator = stream
                        .iterator(&shard.id, None, StartingPosition::TrimHorizon)
                        .await
                        .expect("iterator");
                    while let Some(current) = iterator.take() {
                        let (events, next) = stream
                            .records(&shard.id, current, u32::MAX)
                            .await
                            .expect("records");
                        if events.is_empty() {
                            break; // caught up (moto never ends an open shard's iterator)
                        }
                        all.extend(events.into_iter().map(|e| {
                            (
                                e.shard,
                                e.sequence_number.to_string(),
                                e.partition_key,
                                e.data,
                            )
                        }));
                        iterator = next;
                    }
                }
                all
            })
        });
    }
}
