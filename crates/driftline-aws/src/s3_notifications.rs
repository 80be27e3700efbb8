//! S3 "object created" notifications through SQS, for landing sources: each
//! message naming an object under the source's prefix wakes the source, which
//! then looks at once (its markers keep every object processed once, and its
//! regular look catches what a lost message would miss). Messages are
//! deleted once handed over. The queue client takes the region, credentials
//! and endpoint from the standard AWS chain.

use std::sync::Arc;

use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;

/// The object keys of an S3 event notification (URL-decoded); none for the
/// test event S3 sends when notifications are set up.
pub fn created_keys(body: &str) -> Vec<String> {
    let Ok(event) = serde_json::from_str::<serde_json::Value>(body) else {
        return Vec::new();
    };
    event["Records"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| {
            r["eventName"]
                .as_str()
                .is_some_and(|n| n.starts_with("ObjectCreated"))
        })
        .filter_map(|r| r["s3"]["object"]["key"].as_str())
        .map(url_decode)
        .collect()
}

/// S3 event keys are URL-encoded, with '+' for a space.
fn url_decode(key: &str) -> String {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 2;
            }
            (other, _) => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Receives from `queue_url` until `stop`, waking the source for each object
/// under `prefix` (a prefix of the lake: `lake_prefix` is the lake's own
/// prefix inside its bucket).
pub async fn run(
    queue_url: String,
    lake_prefix: String,
    prefix: String,
    wake: Arc<tokio::sync::Notify>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> crate::Result<()> {
    let config = crate::config::load().await;
    let client = aws_sdk_sqs::Client::new(&config);
    let watched = [lake_prefix.trim_matches('/'), prefix.trim_matches('/')]
        .iter()
        .filter(|p| !p.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("/")
        + "/";
    while !*stop.borrow() {
        let receive = client
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send();
        let answer = tokio::select! {
            answer = receive => answer,
            _ = stop.changed() => break,
        };
        let messages = match answer {
            Ok(answer) => answer.messages.unwrap_or_default(),
            Err(error) => {
                tracing::warn!(queue = %queue_url, error = %aws_sdk_sqs::error::DisplayErrorContext(&error), "cannot receive notifications");
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                continue;
            }
        };
        if messages.is_empty() {
            continue;
        }
        let ours = messages.iter().any(|m| {
            created_keys(m.body().unwrap_or_default())
                .iter()
                .any(|k| k.starts_with(&watched))
        });
        if ours {
            wake.notify_one();
        }
        let entries: Vec<DeleteMessageBatchRequestEntry> = messages
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle()?)
                    .build()
                    .ok()
            })
            .collect();
        if let Err(error) = client
            .delete_message_batch()
            .queue_url(&queue_url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            tracing::warn!(queue = %queue_url, error = %aws_sdk_sqs::error::DisplayErrorContext(&error), "cannot delete notifications");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_created_objects_are_decoded_and_the_test_event_is_ignored() {
        let event = r#"{"Records": [
            {"eventName": "ObjectCreated:Put", "s3": {"object": {"key": "landing/uploads/day+one%3A1.csv"}}},
            {"eventName": "ObjectRemoved:Delete", "s3": {"object": {"key": "landing/uploads/gone.csv"}}}
        ]}"#;
        assert_eq!(created_keys(event), ["landing/uploads/day one:1.csv"]);
        assert!(created_keys(r#"{"Service": "Amazon S3", "Event": "s3:TestEvent"}"#).is_empty());
        assert!(created_keys("not json").is_empty());
    }
}
