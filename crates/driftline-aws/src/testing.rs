//! For tests of the AWS adapters on `moto_server` (here and in `driftline`)
//! (`driftline_testkit::Moto`): an AWS configuration and a lake for it.

pub use driftline_testkit::Moto;

/// The AWS configuration of a client of `moto`.
pub async fn sdk_config(moto: &Moto) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(moto.endpoint())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_kinesis::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .load()
        .await
}

/// A lake in a new bucket of `moto`: `s3://BUCKET/prod`.
pub fn lake(moto: &Moto, bucket: &str) -> driftline_lake::Lake {
    moto.create_bucket(bucket);
    let owned = moto.s3_options();
    let options: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    driftline_lake::Lake::open_with(&format!("s3://{bucket}/prod"), &options).expect("lake")
}
