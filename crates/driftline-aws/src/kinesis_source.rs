//! A Kinesis data stream as a source of `driftline run` (aws feature), read
//! by the loop of `sharded_source`: each record's data is an event, as it is
//! for the embedded stream and for `driftline-lambda`.

use aws_sdk_kinesis::types::ShardIteratorType;
use driftline_lake::Position;
use driftline_pipeline::config::StartingPosition;
use driftline_pipeline::Event;

use crate::sharded_source::{ShardInfo, ShardedStream};

fn error(e: impl std::error::Error + Send + Sync + 'static) -> crate::Error {
    crate::Error::Aws(aws_sdk_kinesis::error::DisplayErrorContext(e).to_string())
}

/// A Kinesis stream, by its name.
pub struct KinesisStream {
    pub client: aws_sdk_kinesis::Client,
    pub name: String,
    /// Records per GetRecords call.
    pub batch_size: u32,
}

crate::sharded_source::shard_reader!(KinesisStream, name);

impl ShardedStream for KinesisStream {
    async fn shards(&self) -> crate::Result<Vec<ShardInfo>> {
        let mut all = Vec::new();
        let mut token: Option<String> = None;
        loop {
            // AWS takes either the stream's name or the page token, not both.
            let request = match &token {
                Some(token) => self.client.list_shards().next_token(token),
                None => self.client.list_shards().stream_name(&self.name),
            };
            let answer = request.max_results(1000).send().await.map_err(error)?;
            for shard in answer.shards.unwrap_or_default() {
                all.push(ShardInfo {
                    id: shard.shard_id().to_string(),
                    parent: shard.parent_shard_id().map(str::to_string),
                    ending: shard
                        .sequence_number_range()
                        .and_then(|r| r.ending_sequence_number())
                        .and_then(Position::parse),
                });
            }
            token = answer.next_token;
            if token.is_none() {
                return Ok(all);
            }
        }
    }

    async fn iterator(
        &self,
        shard: &str,
        after: Option<&str>,
        start: StartingPosition,
    ) -> crate::Result<Option<String>> {
        let request = self
            .client
            .get_shard_iterator()
            .stream_name(&self.name)
            .shard_id(shard);
        let request = match after {
            Some(last) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(last),
            None => request.shard_iterator_type(match start {
                StartingPosition::TrimHorizon => ShardIteratorType::TrimHorizon,
                StartingPosition::Latest => ShardIteratorType::Latest,
            }),
        };
        Ok(request.send().await.map_err(error)?.shard_iterator)
    }

    async fn records(
        &self,
        shard: &str,
        iterator: String,
        limit: u32,
    ) -> crate::Result<(Vec<Event>, Option<String>)> {
        let answer = self
            .client
            .get_records()
            .shard_iterator(iterator)
            .limit(i32::try_from(self.batch_size.min(limit)).unwrap_or(10_000))
            .send()
            .await
            .map_err(error)?;
        let mut events = Vec::with_capacity(answer.records.len());
        for record in answer.records {
            let sequence = record.sequence_number();
            let sequence_number = Position::parse(sequence).ok_or_else(|| {
                crate::Error::invalid(format!("record with sequence number {sequence:?}"))
            })?;
            events.push(Event {
                shard: shard.to_string(),
                sequence_number,
                arrival_ms: record
                    .approximate_arrival_timestamp()
                    .map_or(0, |t| t.to_millis().unwrap_or(0)),
                partition_key: record.partition_key().unwrap_or_default().to_string(),
                data: record.data.into_inner(),
            });
        }
        Ok((events, answer.next_shard_iterator))
    }
}

/// Reads Kinesis stream `kinesis` (GetRecords of at most `batch_size`)
/// into the lake until `stop`, with this process's AWS configuration.
pub async fn run(
    source: crate::sharded_source::SourceParts,
    kinesis: String,
    batch_size: u32,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), driftline_pipeline::MappingError> {
    let stream = KinesisStream {
        client: aws_sdk_kinesis::Client::new(&crate::config::load().await),
        name: kinesis,
        batch_size,
    };
    crate::sharded_source::run(source, stream, stop).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_kinesis_stream_is_a_reader_like_the_embedded_log() {
        let moto = crate::testing::Moto::start();
        let config = crate::testing::sdk_config(&moto).await;
        let client = aws_sdk_kinesis::Client::new(&config);
        client
            .create_stream()
            .stream_name("clicks")
            .shard_count(3)
            .send()
            .await
            .expect("create stream");
        let reader = KinesisStream {
            client: client.clone(),
            name: "clicks".into(),
            batch_size: 10_000,
        };
        let put = move |records: Vec<(String, Vec<u8>)>| {
            let entries: Vec<_> = records
                .into_iter()
                .map(|(key, data)| {
                    aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                        .partition_key(key)
                        .data(aws_sdk_kinesis::primitives::Blob::new(data))
                        .build()
                        .expect("entry")
                })
                .collect();
            let request = client
                .put_records()
                .stream_name("clicks")
                .set_records(Some(entries))
                .send();
            let answer = tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current()
                    .block_on(request)
                    .map_err(|e| e.to_string())
            })
            .expect("put records");
            assert_eq!(answer.failed_record_count(), Some(0));
        };
        driftline_pipeline::read::conformance(
            &reader,
            put,
            |e| (e.partition_key.clone(), e.data.clone()),
            3,
        )
        .await;
    }
}
