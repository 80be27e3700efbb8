//! A small client of the server's own APIs, for the CLI verbs.

use anyhow::{bail, Context};
use serde_json::Value;

pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:4567";

#[derive(clap::Args, Clone)]
pub struct EndpointArgs {
    /// The driftline server to talk to.
    #[arg(long, env = "DRIFTLINE_ENDPOINT", default_value = DEFAULT_ENDPOINT)]
    pub endpoint: String,
}

pub struct Client {
    endpoint: String,
    agent: ureq::Agent,
}

impl Client {
    pub fn new(args: &EndpointArgs) -> Client {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build();
        Client {
            endpoint: args.endpoint.trim_end_matches('/').to_string(),
            agent: ureq::Agent::new_with_config(config),
        }
    }

    /// Calls a Kinesis operation in JSON 1.1; an AWS error becomes an error naming its code.
    pub fn kinesis(&self, operation: &str, request: Value) -> anyhow::Result<Value> {
        let mut response = self
            .agent
            .post(&self.endpoint)
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", &format!("Kinesis_20131202.{operation}"))
            .send(request.to_string())
            .with_context(|| format!("cannot reach driftline at {}", self.endpoint))?;
        let status = response.status();
        let body: Value = response
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_json()
            .with_context(|| format!("{operation}: the server's answer is not JSON"))?;
        if !status.is_success() {
            let code = body
                .get("__type")
                .and_then(Value::as_str)
                .unwrap_or("error");
            let message = body
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default();
            bail!("{operation} failed: {code}: {message}");
        }
        Ok(body)
    }

    /// Posts NDJSON lines to the native ingest path.
    pub fn ingest(
        &self,
        stream: &str,
        partition_key: Option<&str>,
        body: Vec<u8>,
    ) -> anyhow::Result<Value> {
        let mut url = format!("{}/v1/streams/{stream}/records", self.endpoint);
        if let Some(field) = partition_key {
            url.push_str("?partition_key=");
            url.push_str(field);
        }
        let mut response = self
            .agent
            .post(&url)
            .header("content-type", "application/x-ndjson")
            .send(body)
            .with_context(|| format!("cannot reach driftline at {}", self.endpoint))?;
        let status = response.status();
        let body: Value = response
            .body_mut()
            .read_json()
            .context("the server's answer is not JSON")?;
        if !status.is_success() && body.get("records").is_none() {
            let message = body
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("unknown error");
            bail!("put to {stream} failed: {message}");
        }
        Ok(body)
    }
}
