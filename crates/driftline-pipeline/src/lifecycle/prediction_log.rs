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
