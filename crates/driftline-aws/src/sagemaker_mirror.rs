//! The registry of a model mirrored to SageMaker (aws feature), for teams
//! whose deployment tooling reads SageMaker's model registry and endpoints:
//!
//! - every version becomes a model package in the model's package group,
//!   its artifact packed as SageMaker's `model.tar.gz` (`model.bin`,
//!   `model.json`) beside the registry in the lake; its approval follows the
//!   registry: `Approved` once champion, `Rejected` when refused, else
//!   `PendingManualApproval`;
//! - with an `endpoint`, each new champion gets a SageMaker model and an
//!   endpoint configuration, and the endpoint is created or updated to it
//!   (the image's `driftline sagemaker serve` answers there), looked at until
//!   it is `InService` on that configuration (a failed endpoint is deleted and
//!   made again; an update rolled back is asked again, three times at most).
//!
//! The registry stays the source of truth: the mirror looks at it every two
//! seconds and records what it did under `_sagemaker/MODEL/` in the lake
//! (read back once per version at start, then kept in memory), so a restart
//! goes on where it stopped and nothing is mirrored twice.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::Context;
use driftline_lake::{Lake, Registry, Status, VersionState};
use driftline_pipeline::config::model::SagemakerConfig;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::json::{AwsError, AwsJson};

/// What was mirrored of one version.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Mirrored {
    model_package_arn: String,
    approval: String,
    model_data_url: String,
}

/// What the endpoint serves: the model and configuration of `version`
/// (named `ENDPOINT-vN` and `ENDPOINT-vN-config`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Deployed {
    version: u64,
    /// Its SageMaker model and endpoint configuration exist.
    #[serde(default)]
    prepared: bool,
    /// Seen `InService` on its configuration (else still to be looked at).
    #[serde(default)]
    in_service: bool,
    /// Updates asked for this version; after three the endpoint is left as it is.
    #[serde(default)]
    attempts: u32,
}

/// Updates of an endpoint to one version asked for at most (SageMaker rolls
/// a failed update back, so without a bound it would be asked forever).
const MAX_ENDPOINT_ATTEMPTS: u32 = 3;

pub struct Mirror {
    api: AwsJson,
    lake: Lake,
    registry: Registry,
    model: String,
    config: SagemakerConfig,
    /// The execution role of its SageMaker models.
    role: String,
    group_ready: bool,
    /// What the lake says was mirrored, read once per version.
    mirrored: BTreeMap<u64, Mirrored>,
    /// What the lake says the endpoint serves, read once.
    deployed: Option<Deployed>,
}

/// The package approval a registry status stands for; `None` keeps what a
/// package has (an archived champion stays approved).
fn approval(status: Status) -> Option<&'static str> {
    match status {
        Status::Champion => Some("Approved"),
        Status::Rejected => Some("Rejected"),
        Status::Archived => None,
        Status::Candidate | Status::Shadow | Status::Canary => Some("PendingManualApproval"),
    }
}

/// SageMaker's `model.tar.gz`: the artifact as `model.bin` and its description.
pub fn model_tarball(artifact: &[u8], description: &Value) -> crate::Result<Vec<u8>> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let json = serde_json::to_vec_pretty(description)?;
    for (name, bytes) in [("model.bin", artifact), ("model.json", json.as_slice())] {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, bytes)?;
    }
    Ok(tar.into_inner()?.finish()?)
}

/// The `model.bin` of a `model.tar.gz`.
pub fn artifact_of_tarball(tarball: &[u8]) -> crate::Result<Vec<u8>> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tarball));
    for entry in archive.entries().context("not a model.tar.gz")? {
        let mut entry = entry.context("not a model.tar.gz")?;
        let path = entry.path()?.to_string_lossy().into_owned();
        if path.trim_start_matches("./") == "model.bin" {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut bytes)?;
            return Ok(bytes);
        }
    }
    Err(crate::Error::invalid("the model.tar.gz holds no model.bin"))
}

/// Whether an error says the thing described does not exist (SageMaker
/// answers a ValidationException "Could not find ..."), rather than that
/// the call failed (throttling, permissions), which must not lead to a
/// Create of something that may exist.
fn is_absent(error: &AwsError) -> bool {
    let message = error.message.to_ascii_lowercase();
    error.status == 400
        && (error.code.contains("NotFound")
            || message.contains("could not find")
            || message.contains("does not exist")
            || message.contains("not found"))
}

/// `Ok(true)` when what was described does not exist, `Ok(false)` when it does.
fn absent(described: Result<Value, AwsError>) -> crate::Result<bool> {
    match described {
        Ok(_) => Ok(false),
        Err(error) if is_absent(&error) => Ok(true),
        Err(error) => Err(error.into()),
    }
}

/// The idempotency token of a version's package: at most 36 of [a-zA-Z0-9-].
fn client_token(model: &str, version: u64) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    model.hash(&mut hasher);
    format!("dl-{:016x}-{version}", hasher.finish())
        .chars()
        .take(36)
        .collect()
}

/// The lake path of an `s3://` URI SageMaker gives back, if it is in the lake.
pub fn lake_path(lake: &Lake, uri: &str) -> Option<String> {
    uri.strip_prefix(lake.location().trim_end_matches('/'))
        .map(|p| p.trim_start_matches('/').to_string())
}

/// The `s3://` URI of a lake path, which SageMaker reads.
pub fn s3_uri(lake: &Lake, path: &str) -> crate::Result<String> {
    if !lake.location().starts_with("s3://") {
        return Err(crate::Error::invalid(format!(
            "SageMaker reads models and data from S3: the lake {} is not an s3:// lake",
            lake.location()
        )));
    }
    Ok(format!("{}/{path}", lake.location().trim_end_matches('/')))
}

impl Mirror {
    pub fn new(
        api: AwsJson,
        registry: Registry,
        lake: Lake,
        model: &str,
        config: SagemakerConfig,
    ) -> crate::Result<Mirror> {
        s3_uri(&lake, "")?;
        Ok(Mirror {
            api,
            lake,
            registry,
            model: model.to_string(),
            role: config.role(model).map_err(crate::Error::invalid)?,
            config,
            group_ready: false,
            mirrored: BTreeMap::new(),
            deployed: None,
        })
    }

    /// Describes a resource with `describe`/`key`; when SageMaker has none,
    /// creates it with `create`/`input`.
    async fn ensure(
        &self,
        describe: &str,
        key: Value,
        create: &str,
        input: Value,
    ) -> crate::Result<()> {
        if absent(self.api.call(describe, &key).await)? {
            self.api.call(create, &input).await?;
        }
        Ok(())
    }

    fn state_path(&self, name: &str) -> String {
        format!("_sagemaker/{}/{name}", self.model)
    }

    async fn read_state<T: for<'de> Deserialize<'de>>(
        &self,
        name: &str,
    ) -> crate::Result<Option<T>> {
        match self.lake.read(&self.state_path(name)).await? {
            Some(bytes) => {
                Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
                    format!("{} is not readable", self.state_path(name))
                })?))
            }
            None => Ok(None),
        }
    }

    async fn write_state(&self, name: &str, value: &impl Serialize) -> crate::Result<()> {
        self.lake
            .write(&self.state_path(name), serde_json::to_vec_pretty(value)?)
            .await?;
        Ok(())
    }

    /// Mirrors until `stop`, then once more.
    pub async fn run(mut self, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            let stopping = *stop.borrow();
            if let Err(error) = self.turn().await {
                tracing::warn!(model = %self.model, error = %format!("{error:#}"), "cannot mirror the registry to SageMaker; trying again");
            }
            if stopping {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// One look at the registry: new versions become packages, changed
    /// statuses change approvals, a new champion goes to the endpoint.
    pub async fn turn(&mut self) -> crate::Result<()> {
        let versions = self.registry.versions().await?;
        if versions.is_empty() {
            return Ok(());
        }
        self.ensure_group().await?;
        for version in &versions {
            self.mirror_version(version).await?;
        }
        if self.config.endpoint.is_some() {
            if let Some(champion) = versions.iter().find(|v| v.status == Status::Champion) {
                self.deploy(champion).await?;
            }
        }
        Ok(())
    }

    async fn ensure_group(&mut self) -> crate::Result<()> {
        if self.group_ready {
            return Ok(());
        }
        let group = self.config.model_package_group(&self.model).to_string();
        self.ensure(
            "DescribeModelPackageGroup",
            json!({"ModelPackageGroupName": group}),
            "CreateModelPackageGroup",
            json!({
                "ModelPackageGroupName": group,
                "ModelPackageGroupDescription": format!("driftline model {}", self.model),
            }),
        )
        .await?;
        self.group_ready = true;
        Ok(())
    }

    async fn mirror_version(&mut self, version: &VersionState) -> crate::Result<()> {
        let number = version.record.version;
        let name = format!("v{number:010}.json");
        let mirrored = match self.mirrored.get(&number) {
            Some(state) => Some(state.clone()),
            None => self.read_state::<Mirrored>(&name).await?,
        };
        let wanted = approval(version.status);
        match mirrored {
            None => {
                let artifact = self.registry.artifact(&version.record).await?;
                let description = json!({
                    "model": self.model,
                    "version": number,
                    "learner": version.record.learner,
                    "metrics": version.record.metrics,
                });
                let path = self.state_path(&format!("v{number:010}/model.tar.gz"));
                self.lake
                    .write(&path, model_tarball(&artifact, &description)?)
                    .await?;
                let model_data_url = s3_uri(&self.lake, &path)?;
                let approval = wanted.unwrap_or("Approved");
                let answer = self
                    .api
                    .call(
                        "CreateModelPackage",
                        &json!({
                            "ModelPackageGroupName": self.config.model_package_group(&self.model),
                            "ModelPackageDescription": format!("driftline {} v{number} ({})", self.model, version.record.learner),
                            "ModelApprovalStatus": approval,
                            "InferenceSpecification": {
                                "Containers": [{"Image": self.config.image.get_ref(), "ModelDataUrl": model_data_url}],
                                "SupportedContentTypes": ["application/json"],
                                "SupportedResponseMIMETypes": ["application/json"],
                            },
                            "CustomerMetadataProperties": {
                                "driftline_model": self.model,
                                "driftline_version": number.to_string(),
                            },
                            // A retried call whose answer was lost makes no second package.
                            "ClientToken": client_token(&self.model, number),
                        }),
                    )
                    .await?;
                let arn = answer["ModelPackageArn"]
                    .as_str()
                    .context("CreateModelPackage answered without ModelPackageArn")?;
                tracing::info!(model = %self.model, version = number, package = arn, approval, "mirrored to a SageMaker model package");
                let state = Mirrored {
                    model_package_arn: arn.to_string(),
                    approval: approval.to_string(),
                    model_data_url,
                };
                self.write_state(&name, &state).await?;
                self.mirrored.insert(number, state);
            }
            Some(mut state) => {
                if let Some(approval) = wanted.filter(|a| *a != state.approval) {
                    self.api
                        .call(
                            "UpdateModelPackage",
                            &json!({
                                "ModelPackageArn": state.model_package_arn,
                                "ModelApprovalStatus": approval,
                            }),
                        )
                        .await?;
                    state.approval = approval.to_string();
                    self.write_state(&name, &state).await?;
                }
                self.mirrored.insert(number, state);
            }
        }
        Ok(())
    }

    /// Points the endpoint at `champion` unless it serves it already.
    async fn deploy(&mut self, champion: &VersionState) -> crate::Result<()> {
        let Some(endpoint) = self.config.endpoint.as_ref().map(|e| e.get_ref().clone()) else {
            return Ok(());
        };
        let number = champion.record.version;
        let mut deployed = match self.deployed.take() {
            Some(deployed) => deployed,
            None => self.read_state("endpoint.json").await?.unwrap_or_default(),
        };
        if deployed.version != number {
            deployed = Deployed {
                version: number,
                ..Deployed::default()
            };
        }
        let result = self.move_endpoint(&endpoint, &mut deployed).await;
        self.deployed = Some(deployed);
        result
    }

    /// One step of moving `endpoint` to `deployed.version`, recorded in the lake.
    async fn move_endpoint(&self, endpoint: &str, deployed: &mut Deployed) -> crate::Result<()> {
        if deployed.in_service || deployed.attempts >= MAX_ENDPOINT_ATTEMPTS {
            return Ok(());
        }
        let number = deployed.version;
        // Names of at most 63 characters, unique per version.
        let model_name = format!("{endpoint}-v{number}");
        let endpoint_config = format!("{model_name}-config");
        if !deployed.prepared {
            let model_data_url = &self
                .mirrored
                .get(&number)
                .context("the champion is not mirrored yet")?
                .model_data_url;
            self.ensure(
                "DescribeModel",
                json!({"ModelName": model_name}),
                "CreateModel",
                json!({
                    "ModelName": model_name,
                    "PrimaryContainer": {"Image": self.config.image.get_ref(), "ModelDataUrl": model_data_url},
                    "ExecutionRoleArn": self.role,
                }),
            )
            .await?;
            self.ensure(
                "DescribeEndpointConfig",
                json!({"EndpointConfigName": endpoint_config}),
                "CreateEndpointConfig",
                json!({
                    "EndpointConfigName": endpoint_config,
                    "ProductionVariants": [{
                        "VariantName": format!("v{number}"),
                        "ModelName": model_name,
                        "InitialInstanceCount": 1,
                        "InstanceType": self.config.instance_type,
                    }],
                }),
            )
            .await?;
            deployed.prepared = true;
        }
        let described = self
            .api
            .call("DescribeEndpoint", &json!({"EndpointName": endpoint}))
            .await;
        let operation = match described {
            Ok(answer) => match answer["EndpointStatus"].as_str() {
                // Done: it serves this version.
                Some("InService") if answer["EndpointConfigName"] == endpoint_config.as_str() => {
                    deployed.in_service = true;
                    tracing::info!(model = %self.model, version = number, endpoint, "the SageMaker endpoint serves the champion");
                    return self.write_state("endpoint.json", deployed).await;
                }
                // Another version (or an update rolled back).
                Some("InService") => "UpdateEndpoint",
                // A failed endpoint cannot be updated: it is made again.
                Some("Failed") => {
                    self.api
                        .call("DeleteEndpoint", &json!({"EndpointName": endpoint}))
                        .await?;
                    return Ok(()); // created on a later turn, once it is gone
                }
                // Creating, Updating, Deleting...: looked at again next turn.
                _ => return Ok(()),
            },
            Err(error) if is_absent(&error) => "CreateEndpoint",
            Err(error) => return Err(error.into()),
        };
        self.api
            .call(
                operation,
                &json!({"EndpointName": endpoint, "EndpointConfigName": endpoint_config}),
            )
            .await?;
        deployed.attempts += 1;
        if deployed.attempts == MAX_ENDPOINT_ATTEMPTS {
            tracing::warn!(model = %self.model, version = number, endpoint, "last attempt to move the endpoint to this version");
        }
        tracing::info!(model = %self.model, version = number, endpoint, operation, "the SageMaker endpoint follows the champion");
        self.write_state("endpoint.json", deployed).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_tarball_holds_the_artifact_as_model_bin() {
        let tarball = model_tarball(b"artifact bytes", &json!({"version": 3})).expect("tar");
        assert_eq!(
            artifact_of_tarball(&tarball).expect("model.bin"),
            b"artifact bytes"
        );
        assert!(artifact_of_tarball(b"not gzip").is_err());
    }

    #[test]
    fn approvals_follow_the_registry() {
        assert_eq!(approval(Status::Champion), Some("Approved"));
        assert_eq!(approval(Status::Rejected), Some("Rejected"));
        assert_eq!(approval(Status::Candidate), Some("PendingManualApproval"));
        assert_eq!(approval(Status::Archived), None);
    }
}
