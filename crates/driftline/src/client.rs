//! A small client of the server's own APIs, for the CLI verbs: every call is
//! signed with AWS Signature Version 4 when a key is in the environment
//! (`DRIFTLINE_ACCESS_KEY_ID` / `DRIFTLINE_SECRET_ACCESS_KEY`, else the AWS
//! variables), so no secret ever travels, even over plain HTTP; `--ca` trusts
//! a server's own certificate for https.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use aws_credential_types::Credentials;
use serde_json::Value;

pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:4567";

#[derive(clap::Args, Clone)]
pub struct EndpointArgs {
    /// The driftline server to talk to.
    #[arg(long, env = "DRIFTLINE_ENDPOINT", default_value = DEFAULT_ENDPOINT)]
    pub endpoint: String,
    /// Trust this certificate (PEM) for an https endpoint, such as the one a
    /// server started with --tls-self-signed writes.
    #[arg(long, env = "DRIFTLINE_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,
}

/// An access key from the environment.
#[derive(Clone)]
pub struct Key {
    id: String,
    secret: String,
}

impl Key {
    pub fn from_env() -> Option<Key> {
        let pair = |id: &str, secret: &str| {
            let id = std::env::var(id).ok().filter(|v| !v.is_empty())?;
            let secret = std::env::var(secret).ok().filter(|v| !v.is_empty())?;
            Some(Key { id, secret })
        };
        pair("DRIFTLINE_ACCESS_KEY_ID", "DRIFTLINE_SECRET_ACCESS_KEY")
            .or_else(|| pair("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"))
    }
}

pub struct Client {
    endpoint: String,
    agent: ureq::Agent,
    key: Option<Key>,
}

/// An agent that answers errors as responses, trusting `ca` when given.
pub fn agent(ca: Option<&std::path::Path>) -> anyhow::Result<ureq::Agent> {
    use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};
    let mut tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(
            Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        );
    if let Some(ca) = ca {
        let pem =
            std::fs::read(ca).with_context(|| format!("cannot read --ca {}", ca.display()))?;
        let certificates = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            })
            .collect::<Result<Vec<Certificate<'static>>, _>>()
            .with_context(|| format!("--ca {} is not PEM", ca.display()))?;
        anyhow::ensure!(
            !certificates.is_empty(),
            "--ca {} holds no certificate",
            ca.display()
        );
        tls = tls.root_certs(RootCerts::new_with_certs(&certificates));
    }
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(tls.build())
        .build();
    Ok(ureq::Agent::new_with_config(config))
}

impl Client {
    pub fn new(args: &EndpointArgs) -> anyhow::Result<Client> {
        Ok(Client {
            endpoint: args.endpoint.trim_end_matches('/').to_string(),
            agent: agent(args.ca.as_deref())?,
            key: Key::from_env(),
        })
    }

    /// Calls a Kinesis operation in JSON 1.1; an AWS error becomes an error naming its code.
    pub fn kinesis(&self, operation: &str, request: Value) -> anyhow::Result<Value> {
        let body = request.to_string();
        let target = format!("Kinesis_20131202.{operation}");
        let mut call = self
            .agent
            .post(&self.endpoint)
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", &target);
        if let Some(key) = &self.key {
            let headers = [
                ("content-type", "application/x-amz-json-1.1"),
                ("x-amz-target", target.as_str()),
            ];
            let url = format!("{}/", self.endpoint);
            for (name, value) in sign_request(key, "kinesis", &url, &headers, body.as_bytes())? {
                call = call.header(name, value);
            }
        }
        let mut response = call
            .send(body)
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

    /// A POST to a native route, signed (service `driftline`) when a key is set.
    fn post_signed(
        &self,
        url: &str,
        content_type: &str,
        body: &[u8],
    ) -> anyhow::Result<ureq::RequestBuilder<ureq::typestate::WithBody>> {
        let mut call = self.agent.post(url).header("content-type", content_type);
        if let Some(key) = &self.key {
            let headers = [("content-type", content_type)];
            for (name, value) in sign_request(key, "driftline", url, &headers, body)? {
                call = call.header(name, value);
            }
        }
        Ok(call)
    }

    /// POSTs JSON to a native route; a refusal becomes an error with its reason.
    pub fn post_json(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.endpoint);
        let body = body.to_string();
        let mut response = self
            .post_signed(&url, "application/json", body.as_bytes())?
            .send(body)
            .with_context(|| format!("cannot reach {url}"))?;
        let status = response.status();
        let answer: Value = response
            .body_mut()
            .read_json()
            .with_context(|| format!("{url}: the answer is not JSON"))?;
        if !status.is_success() {
            let message = answer
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("unknown error");
            bail!("{url}: {status}: {message}");
        }
        Ok(answer)
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
            .post_signed(&url, "application/x-ndjson", &body)?
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

/// The SigV4 headers of a POST to `url` (region us-east-1).
fn sign_request(
    key: &Key,
    service: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<Vec<(String, String)>> {
    let credentials = Credentials::new(&key.id, &key.secret, None, None, "driftline-cli");
    driftline_aws::sigv4::post_headers(credentials, "us-east-1", service, url, headers, body)
        .map_err(|e| anyhow::anyhow!("cannot sign the request: {e}"))
}
