//! The Kinesis Data Streams API over HTTP: `POST /` with
//! `X-Amz-Target: Kinesis_20131202.<Operation>`, in JSON 1.1 or CBOR.
//!
//! Requests are not authenticated: SigV4 headers are accepted and ignored, as
//! kinesalite does; the server binds to loopback by default.

pub mod error;
mod fast;
pub mod iterator;
pub mod ops;
pub mod wire;

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use driftline_log::LogStore;

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
    let Some(operation) = target.strip_prefix(TARGET_PREFIX).map(str::to_string) else {
        let error = ApiError::new(
            "UnknownOperationException",
            format!("X-Amz-Target {target:?} does not name a Kinesis_20131202 operation"),
        );
        return respond(protocol, Err(error));
    };
    let kinesis = state.kinesis.clone();
    let result = tokio::task::spawn_blocking(move || {
        let now_ms = driftline_log::now_ms();
        if protocol == Protocol::Json && operation == "PutRecords" {
            if let Some(result) = fast::put_records_json(&kinesis, &body, now_ms) {
                return result;
            }
        }
        let request = wire::decode_request(protocol, &body)?;
        let req = Req::new(&request, protocol);
        // Encoded here, off the async workers.
        ops::dispatch(&kinesis, &operation, &req, now_ms)
            .map(|out| wire::encode_response(protocol, out))
    })
    .await
    .unwrap_or_else(|e| Err(ApiError::internal(format!("request handler failed: {e}"))));
    if let Err(error) = &result {
        tracing::debug!(target = %target, code = error.code, message = %error.message, "kinesis request refused");
    }
    respond(protocol, result)
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
