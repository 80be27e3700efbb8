//! The Kinesis Data Streams API over HTTP: `POST /` with
//! `X-Amz-Target: Kinesis_20131202.<Operation>`, in JSON 1.1 or CBOR.
//!
//! With a key ring, every request must be signed with AWS Signature Version 4
//! by a listed key (service `kinesis`, any region) and the key must hold the
//! operation's scope on its stream; without one, requests are not
//! authenticated and the server listens on loopback only.

pub mod error;
mod fast;
pub mod iterator;
pub mod ops;
pub mod wire;

use std::sync::Arc;

use axum::body::Bytes;
use std::time::SystemTime;

use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use driftline_log::LogStore;

use crate::auth::sigv4::{Rules, Signed};
use crate::auth::Caller;
use error::ApiError;
use iterator::IteratorSigner;
use wire::{Protocol, Req};

pub const TARGET_PREFIX: &str = "Kinesis_20131202.";

pub struct KinesisState {
    pub store: Arc<LogStore>,
    pub signer: IteratorSigner,
    pub region: String,
    pub account: String,
}

impl KinesisState {
    pub fn arn(&self, stream: &str) -> String {
        format!(
            "arn:aws:kinesis:{}:{}:stream/{stream}",
            self.region, self.account
        )
    }
}

/// The axum handler for `POST /`.
pub async fn handle(
    state: axum::extract::State<Arc<crate::AppState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let protocol = match headers.get("content-type").and_then(|v| v.to_str().ok()) {
        Some(ct) if ct.starts_with(wire::CBOR_CONTENT_TYPE) => Protocol::Cbor,
        _ => Protocol::Json,
    };
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let app = state.0.clone();
    let result = tokio::task::spawn_blocking(move || {
        // Authenticated first, as AWS does: a stranger learns nothing else.
        let caller = authenticate(&app, &uri, &headers, &body)?;
        let Some(operation) = target.strip_prefix(TARGET_PREFIX) else {
            return Err(ApiError::new(
                "UnknownOperationException",
                format!("X-Amz-Target {target:?} does not name a Kinesis_20131202 operation"),
            ));
        };
        let kinesis = &app.kinesis;
        let now_ms = driftline_log::now_ms();
        if protocol == Protocol::Json && operation == "PutRecords" {
            if let Some(result) = fast::put_records_json(kinesis, &body, now_ms, &caller) {
                return result;
            }
        }
        let request = wire::decode_request(protocol, &body)?;
        let req = Req::new(&request, protocol);
        // Encoded here, off the async workers.
        ops::dispatch(kinesis, operation, &req, now_ms, &caller)
            .map(|out| wire::encode_response(protocol, out))
    })
    .await
    .unwrap_or_else(|e| Err(ApiError::internal(format!("request handler failed: {e}"))));
    if let Err(error) = &result {
        tracing::debug!(code = error.code, message = %error.message, "kinesis request refused");
    }
    respond(protocol, result)
}

/// Who signed the request; everyone when the server has no key ring.
fn authenticate(
    app: &crate::AppState,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Caller, ApiError> {
    let Some(keys) = app.auth.as_ref() else {
        return Ok(Caller::Anyone);
    };
    let request = Signed {
        method: "POST",
        path: uri.path(),
        query: uri.query().unwrap_or_default(),
        headers,
        body,
    };
    // The target picks the operation: it must be covered by the signature.
    let rules = Rules {
        service: Some("kinesis"),
        must_sign: &["x-amz-target"],
    };
    crate::auth::authenticate(keys, &request, &rules, false, SystemTime::now())
        .map(Caller::Key)
        .map_err(|failure| {
            tracing::info!(target: "driftline::audit", refused = %failure, "kinesis request refused: not authenticated");
            ApiError::auth(&failure)
        })
}

fn respond(protocol: Protocol, result: Result<Vec<u8>, ApiError>) -> Response {
    let (status, body) = match result {
        Ok(body) => (StatusCode::OK, body),
        Err(error) => (
            StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_REQUEST),
            wire::encode_error(protocol, &error),
        ),
    };
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        "content-type",
        HeaderValue::from_static(protocol.content_type()),
    );
    response.headers_mut().insert(
        "x-amzn-requestid",
        HeaderValue::from_static("00000000-0000-0000-0000-000000000000"),
    );
    response
}
