//! The prediction log: a bounded queue to a thread that writes batches.

use super::*;

/// A bounded queue to a thread that writes its records to `stream`.
pub(super) fn log_writer(stream: Arc<dyn StreamWriter>) -> std::sync::mpsc::SyncSender<NewRecord> {
    let (sender, receiver) = std::sync::mpsc::sync_channel::<NewRecord>(10_000);
    std::thread::spawn(move || write_prediction_log(stream.as_ref(), &receiver));
    sender
}

/// Writes logged records to the stream in batches, until every sender is gone.
fn write_prediction_log(
    stream: &dyn StreamWriter,
    receiver: &std::sync::mpsc::Receiver<NewRecord>,
) {
    while let Ok(first) = receiver.recv() {
        let mut batch = vec![first];
        while batch.len() < 500 {
            match receiver.try_recv() {
                Ok(record) => batch.push(record),
                Err(_) => break,
            }
        }
        for result in stream.put_records(batch) {
            if let Err(error) = result {
                tracing::warn!(stream = stream.stream_name(), %error, "cannot log a record");
            }
        }
    }
}

impl ModelService {
    /// Logs a prediction without waiting: a request runs on the serving
    /// runtime, and a throttled log stream must not stall every request.
    pub(super) fn log_prediction(
        &self,
        log: &std::sync::mpsc::SyncSender<NewRecord>,
        prediction: &Prediction,
        features: &serde_json::Value,
        at_ms: i64,
    ) {
        // Written straight from borrowed fields: no JSON tree per request.
        #[derive(Serialize)]
        struct Logged<'a> {
            request_id: &'a str,
            model: &'a str,
            version: u64,
            class: usize,
            probabilities: &'a [f64],
            features: &'a serde_json::Value,
            at_ms: i64,
        }
        let record = Logged {
            request_id: &prediction.request_id,
            model: &self.name,
            version: prediction.version,
            class: prediction.class,
            probabilities: &prediction.probabilities,
            features,
            at_ms,
        };
        let Ok(data) = serde_json::to_vec(&record) else {
            return;
        };
        let logged = log.try_send(NewRecord {
            partition_key: prediction.request_id.clone(),
            explicit_hash_key: None,
            data,
        });
        if let Err(std::sync::mpsc::TrySendError::Full(_)) = logged {
            let dropped = self.log_dropped.fetch_add(1, Ordering::Relaxed);
            if dropped.is_multiple_of(10_000) {
                tracing::warn!(model = %self.name, dropped = dropped + 1, "the prediction log is behind: predictions go unlogged");
            }
        }
    }

    /// Logs a joined example; blocks when the writer is behind (the queue is
    /// bounded), so the caller holds no lock.
    pub(super) fn log_joined(
        &self,
        log: &std::sync::mpsc::SyncSender<NewRecord>,
        request_id: &str,
        pending: &Pending,
        label: usize,
    ) {
        let champion = self.champion.load();
        let features: serde_json::Map<String, serde_json::Value> = champion
            .encoder
            .feature_names()
            .into_iter()
            .zip(&pending.x)
            .map(|(name, value)| (name, serde_json::json!(value)))
            .collect();
        let record = serde_json::json!({
            "request_id": request_id,
            "model": self.name,
            "version": pending.version,
            "class": pending.class,
            "label": label,
            "joined_ms": driftline_log::now_ms(),
            "features": features,
        });
        let _ = log.send(NewRecord {
            partition_key: request_id.to_string(),
            explicit_hash_key: None,
            data: record.to_string().into_bytes(),
        });
    }
}
