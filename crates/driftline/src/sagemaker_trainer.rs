//! Retrains as SageMaker training jobs (aws feature), for models whose
//! `sagemaker` section says `train = true`: the examples go to the lake as
//! the job's `train` channel (CSV of the encoded columns `x0..`, and
//! `label`), the job runs the image's `driftline sagemaker train`, and its
//! `model.tar.gz` comes back as the challenger, which the lifecycle then
//! scores and gates like any other.

use std::time::{Duration, Instant};

use driftline_lake::Lake;
use driftline_ml::learn::{artifact, Classifier};
use driftline_pipeline::model_config::SagemakerConfig;
use driftline_pipeline::trainer::{FitError, FitFuture, FitJob, Trainer};
use serde_json::json;

use crate::aws_json::AwsJson;
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
    ) -> anyhow::Result<Self> {
        s3_uri(&lake, "")?;
        Ok(SagemakerTrainer {
            api,
            lake,
            role: config.role(model).map_err(anyhow::Error::msg)?,
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

    async fn run_job(&self, job: FitJob) -> anyhow::Result<Box<dyn Classifier>> {
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
                Some(status @ ("Failed" | "Stopped")) => anyhow::bail!(
                    "SageMaker training job {name} {status}: {}",
                    described["FailureReason"]
                        .as_str()
                        .unwrap_or("no reason given")
                ),
                _ if Instant::now() > deadline => {
                    // Not left running (and billing) after we gave up on it.
                    self.stop(&name).await;
                    anyhow::bail!("SageMaker training job {name} did not finish in time")
                }
                _ => tokio::time::sleep(self.poll).await,
            }
        };
        let uri = described["ModelArtifacts"]["S3ModelArtifacts"]
            .as_str()
            .ok_or_else(|| {
                anyhow::anyhow!("training job {name} completed without ModelArtifacts")
            })?;
        let path = lake_path(&self.lake, uri)
            .ok_or_else(|| anyhow::anyhow!("the artifact {uri} is outside the lake"))?;
        // SageMaker uploads before it says Completed; a stand-in may be later.
        let waited = Instant::now();
        let tarball = loop {
            if let Some(bytes) = self.lake.read(&path).await? {
                break bytes;
            }
            if waited.elapsed() > self.artifact_wait {
                anyhow::bail!("training job {name} completed, but {uri} is not there");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let (model, _) = artifact::load(&artifact_of_tarball(&tarball)?)?;
        let answers = model.predict_proba_one(&vec![0.0; job.width]).len();
        anyhow::ensure!(
            answers == job.n_classes,
            "the model of job {name} answers {answers} classes, not {}",
            job.n_classes
        );
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

    /// What SageMaker's compute does with a job, which moto does not do
    /// (its jobs are Completed at once, with nothing run): the job's channel
    /// and hyperparameters into an `/opt/ml`-shaped directory, the image's
    /// `driftline sagemaker train` on it, the model directory as
    /// `model.tar.gz` where the job's ModelArtifacts say.
    async fn run_jobs_like_sagemaker(
        api: AwsJson,
        lake: Lake,
        stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut done = std::collections::BTreeSet::new();
        while !*stop.borrow() {
            let listed = api
                .call("ListTrainingJobs", &json!({}))
                .await
                .expect("list");
            for summary in listed["TrainingJobSummaries"]
                .as_array()
                .cloned()
                .unwrap_or_default()
            {
                let name = summary["TrainingJobName"]
                    .as_str()
                    .expect("name")
                    .to_string();
                if !done.insert(name.clone()) {
                    continue;
                }
                let job = api
                    .call("DescribeTrainingJob", &json!({"TrainingJobName": name}))
                    .await
                    .expect("describe");
                let in_lake = |uri: &str| lake_path(&lake, uri).expect("in the lake");
                let root = tempfile::tempdir().expect("root");
                let config = root.path().join("input/config");
                let channel = root.path().join("input/data/train");
                std::fs::create_dir_all(&config).expect("config");
                std::fs::create_dir_all(&channel).expect("channel");
                std::fs::write(
                    config.join("hyperparameters.json"),
                    job["HyperParameters"].to_string(),
                )
                .expect("hyperparameters");
                let data = in_lake(
                    job["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"]
                        .as_str()
                        .expect("uri"),
                );
                for path in lake.list(&data).await.expect("channel") {
                    let bytes = lake.read(&path).await.expect("read").expect("object");
                    let file = path.rsplit('/').next().expect("file name");
                    std::fs::write(channel.join(file), bytes).expect("write");
                }
                let dir = root.path().to_path_buf();
                let trained = tokio::task::spawn_blocking(move || {
                    crate::cmd_sagemaker::run(crate::cmd_sagemaker::SagemakerCommand::Train {
                        root: dir,
                    })
                })
                .await
                .expect("train");
                if trained.is_err() {
                    continue; // a failed job leaves no artifact
                }
                let model = root.path().join("model");
                let tarball = crate::sagemaker_mirror::model_tarball(
                    &std::fs::read(model.join("model.bin")).expect("model.bin"),
                    &serde_json::from_slice(
                        &std::fs::read(model.join("model.json")).expect("json"),
                    )
                    .expect("json"),
                )
                .expect("tar");
                let artifact = in_lake(
                    job["ModelArtifacts"]["S3ModelArtifacts"]
                        .as_str()
                        .expect("artifacts"),
                );
                lake.write(&artifact, tarball).await.expect("upload");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn training_on_sagemaker_conforms() {
        let moto = crate::test_moto::Moto::start();
        let lake = crate::test_moto::lake(&moto, "lake");
        let api = AwsJson::sagemaker_with(&crate::test_moto::sdk_config(&moto).await).expect("api");
        let pipeline = driftline_pipeline::PipelineConfig::parse(
            "[[model]]\nname = \"conformance\"\nfeatures = [\"a\"]\n\
             sagemaker = { image = \"123456789012.dkr.ecr.us-east-1.amazonaws.com/driftline:1\", role_arn = \"arn:aws:iam::123456789012:role/sm\", train = true }\n[lake]\n",
            std::path::Path::new("t.toml"),
        )
        .expect("pipeline");
        let config = pipeline.models[0].sagemaker.clone().expect("sagemaker");
        let mut trainer = SagemakerTrainer::new(api.clone(), lake.clone(), "conformance", config)
            .expect("trainer");
        trainer.poll = Duration::from_millis(100);
        trainer.artifact_wait = Duration::from_secs(5);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let compute = tokio::spawn(run_jobs_like_sagemaker(api.clone(), lake.clone(), stopped));
        driftline_pipeline::trainer::conformance(&trainer).await;
        let _ = stop.send(true);
        compute.await.expect("compute");
        // the jobs as SageMaker has them: the channel in the lake, the learner asked for
        let jobs = api
            .call("ListTrainingJobs", &json!({}))
            .await
            .expect("list");
        assert_eq!(
            jobs["TrainingJobSummaries"].as_array().map(Vec::len),
            Some(2)
        );
        let channels = lake
            .list("_sagemaker/conformance/jobs/")
            .await
            .expect("list");
        assert!(
            channels.iter().any(|p| p.ends_with("/train/train.csv")),
            "{channels:?}"
        );
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
