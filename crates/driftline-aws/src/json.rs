//! Signed calls to an AWS service that speaks JSON 1.1 (SageMaker's control
//! plane), written here instead of depending on aws-sdk-sagemaker: that one
//! crate takes 2-5 minutes to build (../shared/notes/build-cost.md) for the
//! handful of calls the model mirror and the trainer make. Signing is
//! aws-sigv4's, credentials and region come from the standard chain
//! (aws-config), requests go through reqwest: all three are already in the
//! aws build.

use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use serde_json::Value;

/// An error answer, in the service's words.
#[derive(Debug)]
pub struct AwsError {
    pub operation: String,
    /// HTTP status (0 when no answer came).
    pub status: u16,
    /// The error's type, e.g. `ValidationException`.
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for AwsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} failed ({} {}): {}",
            self.operation, self.status, self.code, self.message
        )
    }
}

impl std::error::Error for AwsError {}

/// A JSON 1.1 service: its endpoint, signing name and target prefix.
#[derive(Clone)]
pub struct AwsJson {
    /// Signing name, e.g. `sagemaker`.
    service: &'static str,
    /// `X-Amz-Target` prefix, e.g. `SageMaker`.
    target: &'static str,
    endpoint: String,
    region: String,
    credentials: SharedCredentialsProvider,
    /// The provider's answer, kept until shortly before it expires (the
    /// provider itself may ask the network each time).
    cached: std::sync::Arc<std::sync::Mutex<Option<Credentials>>>,
    http: reqwest::Client,
}

impl AwsJson {
    /// SageMaker's control plane, configured like the AWS tools: region and
    /// credentials from the chain, `AWS_ENDPOINT_URL_SAGEMAKER` or
    /// `AWS_ENDPOINT_URL` to point elsewhere.
    pub async fn sagemaker() -> crate::Result<AwsJson> {
        AwsJson::sagemaker_with(&crate::config::load().await)
    }

    /// SageMaker's control plane as `config` (region, credentials, endpoint) says.
    pub fn sagemaker_with(config: &aws_config::SdkConfig) -> crate::Result<AwsJson> {
        let region = config
            .region()
            .map(|r| r.as_ref().to_string())
            .ok_or_else(|| crate::Error::invalid("no AWS region: set AWS_REGION"))?;
        let endpoint = std::env::var("AWS_ENDPOINT_URL_SAGEMAKER")
            .ok()
            .or_else(|| config.endpoint_url().map(str::to_string))
            .unwrap_or_else(|| format!("https://api.sagemaker.{region}.amazonaws.com"));
        let credentials = config
            .credentials_provider()
            .ok_or_else(|| crate::Error::invalid("no AWS credentials provider"))?;
        Ok(AwsJson {
            service: "sagemaker",
            target: "SageMaker",
            endpoint: endpoint.trim_end_matches('/').to_string(),
            region,
            credentials,
            cached: Default::default(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()?,
        })
    }

    /// Calls `operation` with `input`; its answer, or the service's error.
    /// Throttling, server errors and failed connections are tried again,
    /// four attempts in all, after a pause that doubles from 200 ms.
    pub async fn call(&self, operation: &str, input: &Value) -> Result<Value, AwsError> {
        let mut pause = Duration::from_millis(200);
        let mut attempt = 1;
        loop {
            match self.call_once(operation, input).await {
                Err(error) if attempt < 4 && transient(&error) => {
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                    attempt += 1;
                }
                answer => return answer,
            }
        }
    }

    async fn credentials(&self) -> Result<Credentials, String> {
        let fresh = |c: &Credentials| {
            c.expiry().is_none_or(|at| {
                at.duration_since(SystemTime::now())
                    .is_ok_and(|left| left > Duration::from_secs(300))
            })
        };
        if let Some(cached) = self
            .cached
            .lock()
            .map_err(|e| e.to_string())?
            .clone()
            .filter(fresh)
        {
            return Ok(cached);
        }
        let credentials = self
            .credentials
            .provide_credentials()
            .await
            .map_err(|e| e.to_string())?;
        *self.cached.lock().map_err(|e| e.to_string())? = Some(credentials.clone());
        Ok(credentials)
    }

    async fn call_once(&self, operation: &str, input: &Value) -> Result<Value, AwsError> {
        let error = |status: u16, code: &str, message: String| AwsError {
            operation: operation.to_string(),
            status,
            code: code.to_string(),
            message,
        };
        let credentials = self
            .credentials()
            .await
            .map_err(|e| error(0, "Credentials", e))?;
        let body = input.to_string().into_bytes();
        let url = format!("{}/", self.endpoint);
        let target = format!("{}.{operation}", self.target);
        let headers = [
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", target.as_str()),
        ];
        let signature = crate::sigv4::post_headers(
            credentials,
            &self.region,
            self.service,
            &url,
            &headers,
            &body,
        )
        .map_err(|e| error(0, "Signing", e))?;
        let mut request = self.http.post(&url).body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        for (name, value) in signature {
            request = request.header(name, value);
        }
        let response = request
            .send()
            .await
            .map_err(|e| error(0, "Http", e.to_string()))?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|e| error(status, "Http", e.to_string()))?;
        let answer: Option<Value> = serde_json::from_str(&text).ok();
        if (200..300).contains(&status) {
            return answer.ok_or_else(|| error(status, "Answer", format!("not JSON: {text:.200}")));
        }
        // JSON 1.1 errors: {"__type": "...#Code", "message": "..."}.
        let (code, message) = match &answer {
            Some(answer) => (
                answer["__type"]
                    .as_str()
                    .map_or("Unknown", |t| t.rsplit('#').next().unwrap_or(t))
                    .to_string(),
                answer["message"]
                    .as_str()
                    .or(answer["Message"].as_str())
                    .unwrap_or_default()
                    .to_string(),
            ),
            None => ("Unknown".to_string(), format!("{text:.200}")),
        };
        Err(error(status, &code, message))
    }
}

/// Worth another try: no answer, a server error, or throttling.
fn transient(error: &AwsError) -> bool {
    (error.status == 0 && error.code == "Http")
        || error.status >= 500
        || error.code.contains("Throttl")
}
