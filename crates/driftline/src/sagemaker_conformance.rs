//! SageMaker training through the image's own `driftline sagemaker train`:
//! the trainer conformance suite run against `SagemakerTrainer` on moto,
//! with this binary playing SageMaker's compute (moto runs no job).

use std::time::Duration;

use driftline_aws::json::AwsJson;
use driftline_aws::sagemaker_mirror::lake_path;
use driftline_aws::sagemaker_trainer::SagemakerTrainer;
use driftline_lake::Lake;
use serde_json::json;

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
            let tarball = driftline_aws::sagemaker_mirror::model_tarball(
                &std::fs::read(model.join("model.bin")).expect("model.bin"),
                &serde_json::from_slice(&std::fs::read(model.join("model.json")).expect("json"))
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
    let moto = driftline_aws::testing::Moto::start();
    let lake = driftline_aws::testing::lake(&moto, "lake");
    let api =
        AwsJson::sagemaker_with(&driftline_aws::testing::sdk_config(&moto).await).expect("api");
    let pipeline = driftline_pipeline::PipelineConfig::parse(
        "[[model]]\nname = \"conformance\"\nfeatures = [\"a\"]\n\
         sagemaker = { image = \"123456789012.dkr.ecr.us-east-1.amazonaws.com/driftline:1\", role_arn = \"arn:aws:iam::123456789012:role/sm\", train = true }\n[lake]\n",
        std::path::Path::new("t.toml"),
    )
    .expect("pipeline");
    let config = pipeline.models[0].sagemaker.clone().expect("sagemaker");
    let mut trainer =
        SagemakerTrainer::new(api.clone(), lake.clone(), "conformance", config).expect("trainer");
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
