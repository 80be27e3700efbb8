//! A Kinesis data stream as a pipeline's stream, the producer's side (aws
//! feature): the NDJSON ingest, the prediction log and dead-letter streams
//! put through it when their stream is `kinesis://NAME`.
//!
//! PutRecords takes at most 500 records and 5 MiB a request and may refuse
//! some records of a request (throttled shards) while taking the others;
//! only those are sent again, after a pause that doubles each time (with
//! jitter, as the AWS SDKs and the KPL back off). A retried record can land
//! after later records of its partition key, as with the KPL.

use std::future::Future;
use std::time::Duration;

use aws_sdk_kinesis::operation::put_records::PutRecordsError;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use driftline_log::{NewRecord, PutError, PutPosition, StreamWriter};

/// PutRecords' limits per request.
const MAX_RECORDS: usize = 500;
const MAX_BYTES: usize = 5 * 1024 * 1024;

/// How often and how long a failed record is tried again.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    /// Requests a record is part of, at most (the first included).
    pub attempts: u32,
    /// The pause before the first retry; it doubles up to `max`.
    pub first: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    /// About 20 s in all before a record is given up.
    fn default() -> Backoff {
        Backoff {
            attempts: 10,
            first: Duration::from_millis(50),
            max: Duration::from_secs(5),
        }
    }
}

impl Backoff {
    /// The pause before retry `n` (1-based): half fixed, half random.
    fn pause(&self, n: u32) -> Duration {
        let full = self
            .first
            .saturating_mul(1u32 << n.saturating_sub(1).min(20))
            .min(self.max);
        full / 2 + full.mul_f64(rand::random::<f64>() / 2.0)
    }
}

/// What one request did with one record.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    Put(PutPosition),
    /// Refused for now (throttling, an internal failure): worth another try.
    Retry(String),
    /// Refused for good.
    Fail(String),
}

/// Per-record error codes of PutRecords that another try can cure.
fn retryable_code(code: &str) -> bool {
    matches!(
        code,
        "ProvisionedThroughputExceededException" | "InternalFailure" | "KMSThrottlingException"
    )
}

/// Puts `records` through `call` (one PutRecords request each time), in
/// requests within PutRecords' limits, sending again only the records that
/// came back retryable, until they are put or `backoff.attempts` is spent;
/// a record outside PutRecords' limits is not sent. One outcome per record,
/// in order.
pub async fn put_with_retries<F, Fut>(
    records: Vec<NewRecord>,
    backoff: Backoff,
    mut call: F,
) -> Vec<Result<PutPosition, PutError>>
where
    F: FnMut(Vec<NewRecord>) -> Fut,
    Fut: Future<Output = Vec<Answer>>,
{
    let mut outcomes: Vec<Option<Result<PutPosition, PutError>>> = vec![None; records.len()];
    // A record Kinesis would refuse fails alone, not its whole request.
    let mut pending = Vec::with_capacity(records.len());
    for (index, record) in records.into_iter().enumerate() {
        match check_record(&record) {
            Ok(()) => pending.push((index, record)),
            Err(reason) => outcomes[index] = Some(Err(PutError(reason))),
        }
    }
    for attempt in 1..=backoff.attempts.max(1) {
        if pending.is_empty() {
            break;
        }
        if attempt > 1 {
            tokio::time::sleep(backoff.pause(attempt - 1)).await;
        }
        let mut again = Vec::new();
        for request in requests(std::mem::take(&mut pending)) {
            let (indices, batch): (Vec<usize>, Vec<NewRecord>) = request.into_iter().unzip();
            let answers = call(batch.clone()).await;
            for ((index, record), answer) in
                indices
                    .into_iter()
                    .zip(batch)
                    .zip(answers.into_iter().chain(std::iter::repeat(Answer::Retry(
                        "no answer for the record".into(),
                    ))))
            {
                match answer {
                    Answer::Put(position) => outcomes[index] = Some(Ok(position)),
                    Answer::Fail(reason) => outcomes[index] = Some(Err(PutError(reason))),
                    Answer::Retry(reason) => {
                        outcomes[index] = Some(Err(PutError(format!(
                            "{reason} (after {attempt} attempts)"
                        ))));
                        again.push((index, record));
                    }
                }
            }
        }
        if again.is_empty() {
            break;
        }
        pending = again;
    }
    outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Err(PutError("not sent".into()))))
        .collect()
}

/// Splits records into requests of at most 500 records and 5 MiB (data
/// and partition keys, as Kinesis counts them), keeping their order.
fn requests(records: Vec<(usize, NewRecord)>) -> Vec<Vec<(usize, NewRecord)>> {
    let mut requests = Vec::new();
    let mut current: Vec<(usize, NewRecord)> = Vec::new();
    let mut bytes = 0;
    for (index, record) in records {
        let size = record.data.len() + record.partition_key.len();
        if !current.is_empty() && (current.len() == MAX_RECORDS || bytes + size > MAX_BYTES) {
            requests.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.push((index, record));
    }
    if !current.is_empty() {
        requests.push(current);
    }
    requests
}

/// The runtime Kinesis producers run their requests on: their own, so
/// that a producer blocked by a throttled stream never needs a worker of
/// the runtime that serves requests (which may all be waiting on it).
pub struct WriterRuntime(Option<tokio::runtime::Runtime>);

impl WriterRuntime {
    pub fn new() -> std::io::Result<std::sync::Arc<WriterRuntime>> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("kinesis-producer")
            .enable_all()
            .build()?;
        Ok(std::sync::Arc::new(WriterRuntime(Some(runtime))))
    }

    /// Runs `future` there, from a thread outside any runtime (or in
    /// `block_in_place`).
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        match &self.0 {
            Some(runtime) => runtime.block_on(future),
            None => unreachable!("the runtime is only taken when dropped"),
        }
    }

    /// Runs `future` there and waits for it from async code.
    pub async fn run<F>(&self, future: F) -> crate::Result<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match &self.0 {
            Some(runtime) => Ok(runtime.spawn(future).await?),
            None => Err(crate::Error::invalid("the producer runtime is gone")),
        }
    }
}

impl Drop for WriterRuntime {
    fn drop(&mut self) {
        // Dropped wherever the last producer goes, maybe inside async code.
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// A client for producers: no retries of its own (`put_with_retries` is
/// the one retry policy) and a bound on each call.
pub fn producer_client(config: &aws_config::SdkConfig) -> aws_sdk_kinesis::Client {
    let config = aws_sdk_kinesis::config::Builder::from(config)
        .retry_config(aws_sdk_kinesis::config::retry::RetryConfig::disabled())
        .timeout_config(
            aws_sdk_kinesis::config::timeout::TimeoutConfig::builder()
                .operation_timeout(Duration::from_secs(30))
                .build(),
        )
        .build();
    aws_sdk_kinesis::Client::from_conf(config)
}

/// A Kinesis data stream that a pipeline puts records on.
pub struct KinesisWriter {
    client: aws_sdk_kinesis::Client,
    /// The stream's name in the pipeline.
    name: String,
    /// Its name on Kinesis.
    kinesis_name: String,
    runtime: std::sync::Arc<WriterRuntime>,
    backoff: Backoff,
}

impl KinesisWriter {
    /// `runtime` runs the requests of `put_records`, which blocks its caller;
    /// `client` is used on that runtime only (see `producer_client`).
    pub fn new(
        client: aws_sdk_kinesis::Client,
        name: &str,
        kinesis_name: &str,
        runtime: std::sync::Arc<WriterRuntime>,
    ) -> KinesisWriter {
        KinesisWriter {
            client,
            name: name.to_string(),
            kinesis_name: kinesis_name.to_string(),
            runtime,
            backoff: Backoff::default(),
        }
    }

    /// One PutRecords request, each record's answer.
    async fn request(&self, records: Vec<NewRecord>) -> Vec<Answer> {
        let count = records.len();
        let entries: Vec<PutRecordsRequestEntry> = records
            .into_iter()
            .filter_map(|record| {
                PutRecordsRequestEntry::builder()
                    .data(Blob::new(record.data))
                    .partition_key(record.partition_key)
                    .set_explicit_hash_key(record.explicit_hash_key.map(|k| k.to_string()))
                    .build()
                    .ok()
            })
            .collect();
        if entries.len() != count {
            return vec![Answer::Fail("a record without data or partition key".into()); count];
        }
        let sent = self
            .client
            .put_records()
            .stream_name(&self.kinesis_name)
            .set_records(Some(entries))
            .send()
            .await;
        match sent {
            Ok(answer) => answer
                .records
                .into_iter()
                .map(|entry| match (entry.error_code, entry.sequence_number) {
                    (Some(code), _) => {
                        let reason = format!("{code}: {}", entry.error_message.unwrap_or_default());
                        if retryable_code(&code) {
                            Answer::Retry(reason)
                        } else {
                            Answer::Fail(reason)
                        }
                    }
                    (None, Some(sequence_number)) => Answer::Put(PutPosition {
                        shard: entry.shard_id.unwrap_or_default(),
                        sequence_number,
                    }),
                    (None, None) => Answer::Retry("an answer without a sequence number".into()),
                })
                .collect(),
            Err(error) => {
                let retry = match &error {
                    aws_sdk_kinesis::error::SdkError::ServiceError(e) => {
                        matches!(
                            e.err(),
                            PutRecordsError::ProvisionedThroughputExceededException(_)
                                | PutRecordsError::KmsThrottlingException(_)
                        ) || e.raw().status().is_server_error()
                    }
                    // Timeouts and connections that failed: the network's, not the request's.
                    _ => true,
                };
                let reason = format!(
                    "PutRecords to Kinesis stream {}: {}",
                    self.kinesis_name,
                    aws_sdk_kinesis::error::DisplayErrorContext(&error)
                );
                let answer = if retry {
                    Answer::Retry(reason)
                } else {
                    Answer::Fail(reason)
                };
                vec![answer; count]
            }
        }
    }
}

impl StreamWriter for KinesisWriter {
    fn stream_name(&self) -> &str {
        &self.name
    }

    fn put_records(&self, records: Vec<NewRecord>) -> Vec<Result<PutPosition, PutError>> {
        self.runtime
            .block_on(put_with_retries(records, self.backoff, |batch| {
                self.request(batch)
            }))
    }
}

/// PutRecords' limits on one record: a partition key of 1-256 characters,
/// and at most 1 MiB of data and key together.
fn check_record(record: &NewRecord) -> Result<(), String> {
    let key = record.partition_key.chars().count();
    if !(1..=256).contains(&key) {
        return Err(format!(
            "a partition key has 1 to 256 characters, this one {key}"
        ));
    }
    let size = record.data.len() + record.partition_key.len();
    if size > 1024 * 1024 {
        return Err(format!(
            "a Kinesis record holds at most 1 MiB of data and partition key, this one {size} bytes"
        ));
    }
    Ok(())
}

/// The producers of a pipeline's streams on Kinesis: one client on its own
/// runtime, shared by every writer.
#[derive(Clone)]
pub struct KinesisProducers {
    client: aws_sdk_kinesis::Client,
    runtime: std::sync::Arc<WriterRuntime>,
}

impl KinesisProducers {
    /// Connects with this process's AWS chain and checks that each stream of
    /// `on_kinesis` (what uses it, its Kinesis name) exists: refused at the
    /// start rather than record by record.
    pub async fn connect(on_kinesis: &[(String, String)]) -> crate::Result<KinesisProducers> {
        // Their own configuration (and so HTTP client): producers run on their runtime.
        let aws = aws_config::load_from_env().await;
        let client = producer_client(&aws);
        let runtime = WriterRuntime::new()?;
        let region = aws.region().map_or("unset".to_string(), |r| r.to_string());
        for (what, kinesis) in on_kinesis {
            let request = client.describe_stream_summary().stream_name(kinesis).send();
            if let Err(error) = runtime.run(request).await? {
                return Err(crate::Error::invalid(format!(
                    "{what} is kinesis://{kinesis}, and Kinesis (region {region}) cannot describe it: {} (`driftline aws template` makes the streams a pipeline declares)",
                    aws_sdk_kinesis::error::DisplayErrorContext(&error)
                )));
            }
        }
        Ok(KinesisProducers { client, runtime })
    }

    /// A writer of Kinesis stream `kinesis`, known in the pipeline as `name`.
    pub fn writer(&self, name: &str, kinesis: &str) -> std::sync::Arc<dyn StreamWriter> {
        std::sync::Arc::new(KinesisWriter::new(
            self.client.clone(),
            name,
            kinesis,
            self.runtime.clone(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn record(data: &str) -> NewRecord {
        NewRecord {
            partition_key: "k".into(),
            explicit_hash_key: None,
            data: data.as_bytes().to_vec(),
        }
    }

    fn quick(attempts: u32) -> Backoff {
        Backoff {
            attempts,
            first: Duration::from_millis(1),
            max: Duration::from_millis(4),
        }
    }

    fn put_at(n: usize) -> Answer {
        Answer::Put(PutPosition {
            shard: "shardId-000000000000".into(),
            sequence_number: n.to_string(),
        })
    }

    #[tokio::test]
    async fn only_the_records_that_failed_are_sent_again() {
        // Records starting with "t" are throttled twice, then put.
        let sent: Mutex<Vec<Vec<String>>> = Mutex::default();
        let throttled = Mutex::new(0);
        let records = ["a", "t1", "b", "t2", "c"].map(record).to_vec();
        let outcomes = put_with_retries(records, quick(5), |batch| {
            let data: Vec<String> = batch
                .iter()
                .map(|r| String::from_utf8_lossy(&r.data).into_owned())
                .collect();
            sent.lock().expect("lock").push(data.clone());
            let mut throttled = throttled.lock().expect("lock");
            let answers = data
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    if d.starts_with('t') && *throttled < 4 {
                        *throttled += 1;
                        Answer::Retry("ProvisionedThroughputExceededException: slow down".into())
                    } else {
                        put_at(i)
                    }
                })
                .collect::<Vec<_>>();
            async move { answers }
        })
        .await;
        assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
        assert_eq!(
            *sent.lock().expect("lock"),
            vec![
                vec!["a", "t1", "b", "t2", "c"],
                vec!["t1", "t2"],
                vec!["t1", "t2"],
            ]
        );
    }

    #[tokio::test]
    async fn a_record_refused_for_good_or_too_often_fails_alone() {
        let calls = Mutex::new(0);
        let records = ["ok", "bad", "always"].map(record).to_vec();
        let outcomes = put_with_retries(records, quick(3), |batch| {
            *calls.lock().expect("lock") += 1;
            let answers: Vec<Answer> = batch
                .iter()
                .map(|r| match r.data.as_slice() {
                    b"bad" => Answer::Fail("AccessDenied: no".into()),
                    b"always" => Answer::Retry("InternalFailure: again".into()),
                    _ => put_at(7),
                })
                .collect();
            async move { answers }
        })
        .await;
        assert!(outcomes[0].is_ok());
        assert_eq!(outcomes[1], Err(PutError("AccessDenied: no".into())));
        let Err(PutError(reason)) = &outcomes[2] else {
            panic!("{outcomes:?}")
        };
        assert!(reason.contains("InternalFailure") && reason.contains("after 3 attempts"));
        assert_eq!(*calls.lock().expect("lock"), 3);
    }

    #[test]
    fn requests_keep_to_500_records_and_5_mib() {
        let many: Vec<(usize, NewRecord)> = (0..1201).map(|i| (i, record("x"))).collect();
        let sizes: Vec<usize> = requests(many).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![500, 500, 201]);
        let big: Vec<(usize, NewRecord)> = (0..12)
            .map(|i| (i, record(&"y".repeat(600 * 1024))))
            .collect();
        let split = requests(big);
        assert_eq!(split.iter().map(Vec::len).collect::<Vec<_>>(), vec![8, 4]);
        let order: Vec<usize> = split.iter().flatten().map(|(i, _)| *i).collect();
        assert_eq!(order, (0..12).collect::<Vec<_>>());
        assert!(requests(Vec::new()).is_empty());
    }

    #[tokio::test]
    async fn a_record_kinesis_would_refuse_is_never_sent() {
        let sent = Mutex::new(0);
        let keyless = NewRecord {
            partition_key: String::new(),
            ..record("x")
        };
        let outcomes = put_with_retries(vec![record("a"), keyless], quick(3), |batch| {
            *sent.lock().expect("lock") += batch.len();
            let answers: Vec<Answer> = batch.iter().map(|_| put_at(1)).collect();
            async move { answers }
        })
        .await;
        assert!(outcomes[0].is_ok());
        assert!(outcomes[1]
            .as_ref()
            .is_err_and(|e| e.0.contains("1 to 256")));
        assert_eq!(*sent.lock().expect("lock"), 1);
    }

    #[test]
    fn records_kinesis_would_refuse_are_found_before_sending() {
        assert!(check_record(&record("x")).is_ok());
        let keyless = NewRecord {
            partition_key: String::new(),
            ..record("x")
        };
        assert!(check_record(&keyless).is_err_and(|e| e.contains("1 to 256")));
        let big = record(&"y".repeat(1024 * 1024));
        assert!(check_record(&big).is_err_and(|e| e.contains("1 MiB")));
    }

    #[test]
    fn pauses_grow_and_stay_under_the_cap() {
        let backoff = Backoff::default();
        for n in 1..12 {
            let pause = backoff.pause(n);
            let full = (backoff.first * (1 << (n - 1))).min(backoff.max);
            assert!(pause >= full / 2 && pause <= full, "{n}: {pause:?}");
        }
    }
}
