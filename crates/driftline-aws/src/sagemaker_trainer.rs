//! Retrains as SageMaker training jobs (aws feature), for models whose
//! `sagemaker` section says `train = true`: the examples go to the lake as
//! the job's `train` channel (CSV of the encoded columns `x0..`, and
//! `label`), the job runs the image's `driftline sagemaker train`, and its
//! `model.tar.gz` comes back as the challenger, which the lifecycle then
//! scores and gates like any other.

use std::time::{Duration, Instant};

use driftline_lake::Lake;
use driftline_ml::learn::{artifact, Classifier};
use driftline_pipeline::config::model::SagemakerConfig;
use driftline_pipeline::trainer::{FitError, FitFuture, FitJob, Trainer};
use serde_json::json;

use crate::json::AwsJson;
use crate::sagemaker_mirror::{artifact_of_tarball, lake_path, s3_uri};

pub struct SagemakerTrainer {
    api: AwsJson,
    lake: Lake,
    config: SagemakerConfig,
    /// The execution role jobs run as.
    role: String,
    /// Between two looks at a running job.
    pub poll: Duration,
    /// How long a completed job's artifact may take to appear.
    pub artifact_wait: Duration,
}

/// The job's train channel: a header, then one row per example.
fn channel_csv(job: &FitJob) -> String {
    let mut csv: String = (0..job.width).map(|i| format!("x{i},")).collect();
    csv.push_str("label\n");
    for (x, y) in job.xs.iter().zip(&job.ys) {
        for value in x {
            csv.push_str(&format!("{value},"));
        }
        csv.push_str(&format!("{y}\n"));
    }
    csv
}

/// A SageMaker name from the model's: 1-63 of a-z, A-Z, 0-9 and -.
fn job_name(model: &str, now_ms: i64) -> String {
    let base: String = model
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    format!("{}-{now_ms}", base.trim_matches('-'))
}

impl SagemakerTrainer {
    pub fn new(
        api: AwsJson,
        lake: Lake,
        model: &str,
        config: SagemakerConfig,
    ) -> crate::Result<Self> {
        s3_uri(&lake, "")?;
        Ok(SagemakerTrainer {
            api,
            lake,
            role: config.role(model).map_err(crate::Error::invalid)?,
            config,
            poll: Duration::from_secs(10),
            artifact_wait: Duration::from_secs(60),
        })
    }

    async fn stop(&self, name: &str) {
        if let Err(error) = self
            .api
            .call("StopTrainingJob", &json!({"TrainingJobName": name}))
            .await
        {
            tracing::warn!(job = %name, %error, "cannot stop the training job");
        }
    }

    async fn run_job(&self, job: FitJob) -> crate::Result<Box<dyn Classifier>> {
        let name = job_name(&job.model, driftline_log::now_ms());
        let prefix = format!("_sagemaker/{}/jobs/{name}", job.model);
        self.lake
            .write(
                &format!("{prefix}/train/train.csv"),
                channel_csv(&job).into_bytes(),
            )
            .await?;
        let output = s3_uri(&self.lake, &format!("{prefix}/output"))?;
        let created = self
            .api
            .call(
                "CreateTrainingJob",
                &json!({
                    "TrainingJobName": name,
                    "AlgorithmSpecification": {
                        "TrainingImage": self.config.image.get_ref(),
                        "TrainingInputMode": "File",
                    },
                    "RoleArn": self.role,
                    "HyperParameters": {
                        "target": "label",
                        "learner": job.learner,
                        "seed": job.seed.to_string(),
                        "classes": job.n_classes.to_string(),
                        "holdout_fraction": "0",
                    },
                    "InputDataConfig": [{
                        "ChannelName": "train",
                        "ContentType": "text/csv",
                        "DataSource": {"S3DataSource": {
                            "S3DataType": "S3Prefix",
                            "S3Uri": s3_uri(&self.lake, &format!("{prefix}/train/"))?,
                            "S3DataDistributionType": "FullyReplicated",
                        }},
                    }],
                    "OutputDataConfig": {"S3OutputPath": output},
                    "ResourceConfig": {
                        "InstanceType": self.config.training_instance_type,
                        "InstanceCount": 1,
                        "VolumeSizeInGB": 10,
                    },
                    "StoppingCondition": {"MaxRuntimeInSeconds": self.config.max_runtime_seconds},
                }),
            )
            .await;
        match created {
            Ok(_) => {}
            // A retried call whose answer was lost: the job is there.
            Err(error) if error.message.to_ascii_lowercase().contains("already exist") => {}
            Err(error) => return Err(error.into()),
        }
        tracing::info!(model = %job.model, job = %name, examples = job.xs.len(), "submitted a SageMaker training job");
        // Bounded: the job's own limit, plus time to start and to upload.
        let deadline = Instant::now()
            + Duration::from_secs(self.config.max_runtime_seconds)
            + Duration::from_secs(900);
        let described = loop {
            let described = match self
                .api
                .call("DescribeTrainingJob", &json!({"TrainingJobName": name}))
                .await
            {
                Ok(described) => described,
                Err(error) => {
                    // Not left running unwatched.
                    self.stop(&name).await;
                    return Err(error.into());
                }
            };
            match described["TrainingJobStatus"].as_str() {
                Some("Completed") => break described,
                Some(status @ ("Failed" | "Stopped")) => {
                    return Err(crate::Error::invalid(format!(
                        "SageMaker training job {name} {status}: {}",
                        described["FailureReason"]
                            .as_str()
                            .unwrap_or("no reason given")
                    )))
                }
                _ if Instant::now() > deadline => {
                    // Not left running (and billing) after we gave up on it.
                    self.stop(&name).await;
                    return Err(crate::Error::invalid(format!(
                        "SageMaker training job {name} did not finish in time"
                    )));
                }
                _ => tokio::time::sleep(self.poll).await,
            }
        };
        let uri = described["ModelArtifacts"]["S3ModelArtifacts"]
            .as_str()
            .ok_or_else(|| {
                crate::Error::invalid(format!(
                    "training job {name} completed without ModelArtifacts"
                ))
            })?;
        let path = lake_path(&self.lake, uri).ok_or_else(|| {
            crate::Error::invalid(format!("the artifact {uri} is outside the lake"))
        })?;
        // SageMaker uploads before it says Completed; a stand-in may be later.
        let waited = Instant::now();
        let tarball = loop {
            if let Some(bytes) = self.lake.read(&path).await? {
                break bytes;
            }
            if waited.elapsed() > self.artifact_wait {
                return Err(crate::Error::invalid(format!(
                    "training job {name} completed, but {uri} is not there"
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let (model, _) = artifact::load(&artifact_of_tarball(&tarball)?)?;
        let answers = model.predict_proba_one(&vec![0.0; job.width]).len();
        if answers != job.n_classes {
            return Err(crate::Error::invalid(format!(
                "the model of job {name} answers {answers} classes, not {}",
                job.n_classes
            )));
        }
        tracing::info!(model = %job.model, job = %name, "the SageMaker training job's model is the challenger");
        Ok(model)
    }
}

impl Trainer for SagemakerTrainer {
    fn remote(&self) -> bool {
        true
    }

    fn place(&self) -> String {
        format!("SageMaker ({})", self.config.training_instance_type)
    }

    fn fit(&self, job: FitJob) -> FitFuture<'_> {
        Box::pin(async move {
            self.run_job(job)
                .await
                .map_err(|e| FitError(format!("{e:#}")))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_channel_is_a_csv_of_encoded_columns_and_the_label() {
        let job = FitJob {
            model: "m".into(),
            learner: "gbt".into(),
            seed: 1,
            n_classes: 2,
            width: 2,
            xs: std::sync::Arc::new(vec![vec![0.5, 1.0], vec![-2.0, 0.0]]),
            ys: vec![1, 0],
        };
        assert_eq!(channel_csv(&job), "x0,x1,label\n0.5,1,1\n-2,0,0\n");
    }

    #[test]
    fn job_names_are_sagemaker_names() {
        assert_eq!(
            job_name("fraud_model", 1764000000000),
            "fraud-model-1764000000000"
        );
        let long = job_name(&"m".repeat(100), 1764000000000);
        assert!(long.len() <= 63, "{long}");
    }
}
