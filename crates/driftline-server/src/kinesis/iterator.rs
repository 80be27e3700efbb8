//! Shard iterators: opaque tokens that carry a read position, signed so a
//! forged or altered iterator is refused, and stamped so they expire after
//! five minutes, as in Kinesis. The signing key lives in the data directory,
//! so iterators stay valid across a restart of the server.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::error::ApiError;

pub const ITERATOR_LIFETIME_MS: i64 = 300_000;
const MAC_LEN: usize = 16;
const VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IteratorPosition {
    pub stream: String,
    /// When the stream was created: an iterator of a deleted and re-created stream is refused.
    pub stream_created_ms: i64,
    pub shard_index: u32,
    pub offset: u64,
    pub issued_ms: i64,
}

pub struct IteratorSigner {
    key: Vec<u8>,
}

impl IteratorSigner {
    pub fn new(key: Vec<u8>) -> IteratorSigner {
        IteratorSigner { key }
    }

    /// Loads the key from `path`, creating it on first use.
    pub fn load_or_create(path: &std::path::Path) -> std::io::Result<IteratorSigner> {
        match std::fs::read(path) {
            Ok(key) if key.len() >= 32 => Ok(IteratorSigner::new(key)),
            _ => {
                let key: [u8; 32] = rand::random();
                let tmp = path.with_extension("tmp");
                std::fs::write(&tmp, key)?;
                std::fs::File::open(&tmp)?.sync_all()?;
                std::fs::rename(&tmp, path)?;
                Ok(IteratorSigner::new(key.to_vec()))
            }
        }
    }

    pub fn encode(&self, position: &IteratorPosition) -> String {
        let mut payload = Vec::with_capacity(40 + position.stream.len());
        payload.push(VERSION);
        payload.extend_from_slice(&position.stream_created_ms.to_le_bytes());
        payload.extend_from_slice(&position.shard_index.to_le_bytes());
        payload.extend_from_slice(&position.offset.to_le_bytes());
        payload.extend_from_slice(&position.issued_ms.to_le_bytes());
        payload.extend_from_slice(position.stream.as_bytes());
        let mac = self.mac(&payload);
        payload.extend_from_slice(&mac);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload)
    }

    /// Reads an iterator, refusing forged, altered or expired ones.
    pub fn decode(&self, token: &str, now_ms: i64) -> Result<IteratorPosition, ApiError> {
        let invalid =
            || ApiError::invalid_argument(format!("Invalid ShardIterator: {}", shorten(token)));
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| invalid())?;
        if raw.len() < 1 + 8 + 4 + 8 + 8 + MAC_LEN || raw[0] != VERSION {
            return Err(invalid());
        }
        let (payload, mac) = raw.split_at(raw.len() - MAC_LEN);
        if !constant_time_eq(&self.mac(payload), mac) {
            return Err(invalid());
        }
        let word = |at: usize| -> [u8; 8] { payload[at..at + 8].try_into().unwrap_or([0; 8]) };
        let stream_created_ms = i64::from_le_bytes(word(1));
        let shard_index = u32::from_le_bytes(payload[9..13].try_into().unwrap_or([0; 4]));
        let offset = u64::from_le_bytes(word(13));
        let issued_ms = i64::from_le_bytes(word(21));
        let stream = String::from_utf8(payload[29..].to_vec()).map_err(|_| invalid())?;
        if now_ms - issued_ms > ITERATOR_LIFETIME_MS {
            return Err(ApiError::new(
                "ExpiredIteratorException",
                format!(
                    "Iterator expired. The iterator was created at time {issued_ms} while right now it is {now_ms} which is further in the future than the tolerated delay of {ITERATOR_LIFETIME_MS} milliseconds."
                ),
            ));
        }
        Ok(IteratorPosition {
            stream,
            stream_created_ms,
            shard_index,
            offset,
            issued_ms,
        })
    }

    fn mac(&self, payload: &[u8]) -> [u8; MAC_LEN] {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).unwrap_or_else(|_| {
            <Hmac<Sha256> as Mac>::new_from_slice(&[0u8; 32]).unwrap_or_else(|_| unreachable!())
        });
        mac.update(payload);
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn shorten(token: &str) -> String {
    if token.len() > 40 {
        format!(
            "{}...",
            &token[..token.char_indices().nth(40).map_or(token.len(), |(i, _)| i)]
        )
    } else {
        token.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position() -> IteratorPosition {
        IteratorPosition {
            stream: "orders".into(),
            stream_created_ms: 7,
            shard_index: 3,
            offset: 99,
            issued_ms: 1_000,
        }
    }

    #[test]
    fn an_iterator_round_trips() {
        let signer = IteratorSigner::new(vec![1; 32]);
        let token = signer.encode(&position());
        assert!(token.len() <= 512);
        assert_eq!(signer.decode(&token, 2_000), Ok(position()));
    }

    #[test]
    fn an_altered_or_foreign_iterator_is_refused() {
        let signer = IteratorSigner::new(vec![1; 32]);
        let token = signer.encode(&position());
        let mut altered = token.clone().into_bytes();
        altered[10] = if altered[10] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).expect("ascii");
        assert_eq!(
            signer.decode(&altered, 2_000).map_err(|e| e.code),
            Err("InvalidArgumentException")
        );
        let other = IteratorSigner::new(vec![2; 32]);
        assert_eq!(
            other.decode(&token, 2_000).map_err(|e| e.code),
            Err("InvalidArgumentException")
        );
        assert_eq!(
            signer.decode("not-an-iterator", 2_000).map_err(|e| e.code),
            Err("InvalidArgumentException")
        );
    }

    #[test]
    fn an_iterator_expires_after_five_minutes() {
        let signer = IteratorSigner::new(vec![1; 32]);
        let token = signer.encode(&position());
        assert!(signer.decode(&token, 1_000 + ITERATOR_LIFETIME_MS).is_ok());
        assert_eq!(
            signer
                .decode(&token, 1_001 + ITERATOR_LIFETIME_MS)
                .map_err(|e| e.code),
            Err("ExpiredIteratorException")
        );
    }
}
