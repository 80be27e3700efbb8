//! `driftline aws template PIPELINE.toml`: the pipeline as a CloudFormation
//! template. Each stream becomes a Kinesis stream (encrypted); the lake a
//! bucket (encryption on, public access blocked, TLS only); each processor a
//! Lambda function with its event-source mapping (partial batch failure,
//! bisect, bounded retries, an SQS on-failure destination), its log group and
//! its own role allowed only the calls it makes on only its resources; each
//! model a SageMaker execution role limited to its part of the bucket; and
//! what is left for `driftline run` (models, sources, processors of streams
//! on Kinesis) a Fargate service (`service`).

use std::collections::BTreeSet;

use anyhow::bail;
use driftline_pipeline::config::ProcessorConfig;
use driftline_pipeline::PipelineConfig;
use serde_json::{json, Map, Value};

use super::{arn_of, assume, bucket_objects, logical};

/// Lambda's batching window is in whole seconds (0..=300).
fn window_seconds(processor: &ProcessorConfig) -> u64 {
    processor.maximum_batching_window_ms.div_ceil(1000).min(300)
}

/// The processors that become Lambda functions: those of a stream on
/// Kinesis that ask for it (the others run in `driftline run`), and those
/// of an embedded stream, which becomes a Kinesis stream here.
fn lambda_processors(config: &PipelineConfig) -> Vec<&ProcessorConfig> {
    config
        .processors
        .iter()
        .filter(|p| {
            let on_kinesis = config
                .streams
                .iter()
                .any(|s| s.name.get_ref() == p.stream.get_ref() && s.kinesis().is_some());
            !on_kinesis || p.runs_on_lambda()
        })
        .collect()
}

/// The template of `config`, whose text `text` the `driftline run` service gets.
pub fn template(config: &PipelineConfig, name: &str, text: &str) -> anyhow::Result<Value> {
    let functions = lambda_processors(config);
    let mut resources = Map::new();
    let mut outputs = Map::new();
    let mut ids = BTreeSet::new();
    let mut claim = |id: String| -> anyhow::Result<String> {
        if !ids.insert(id.clone()) {
            bail!("two names of the pipeline become the same CloudFormation id {id:?}: rename one");
        }
        Ok(id)
    };

    resources.insert(
        "LakeBucket".into(),
        json!({
            "Type": "AWS::S3::Bucket",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "BucketEncryption": {"ServerSideEncryptionConfiguration": [
                    {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}, "BucketKeyEnabled": true}
                ]},
                "PublicAccessBlockConfiguration": {
                    "BlockPublicAcls": true, "BlockPublicPolicy": true,
                    "IgnorePublicAcls": true, "RestrictPublicBuckets": true
                },
                "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
                "VersioningConfiguration": {"Status": "Enabled"}
            }
        }),
    );
    claim("LakeBucket".into())?;
    resources.insert(
        "LakeBucketPolicy".into(),
        json!({
            "Type": "AWS::S3::BucketPolicy",
            "Properties": {
                "Bucket": {"Ref": "LakeBucket"},
                "PolicyDocument": {"Version": "2012-10-17", "Statement": [{
                    "Sid": "TlsOnly", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
                    "Resource": [arn_of("LakeBucket"), bucket_objects("*")],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}}
                }]}
            }
        }),
    );
    claim("LakeBucketPolicy".into())?;
    outputs.insert(
        "Lake".into(),
        json!({"Description": "driftline run --lake", "Value": {"Fn::Sub": "s3://${LakeBucket}"}}),
    );

    // The declared streams, and those each model makes for itself.
    // A stream the pipeline puts on `kinesis://NAME` gets that name, so that
    // `driftline run` finds it; the others are named after the stack.
    let streams: Vec<(String, u32, Option<String>)> = config
        .streams
        .iter()
        .map(|s| {
            let kinesis = s.kinesis().map(str::to_string);
            (s.name.get_ref().clone(), s.shards, kinesis)
        })
        // A model's prediction log, when it asks for Kinesis (its joined
        // examples stay in its process, on their way to the lake).
        .chain(config.models.iter().filter_map(|m| {
            let kinesis = m.prediction_log_stream()?;
            Some((m.predictions_stream(), 1, Some(kinesis.to_string())))
        }))
        .collect();
    let mut stream_ids = Vec::new();
    for (stream, shards, kinesis) in &streams {
        let id = claim(format!("{}Stream", logical(stream)))?;
        stream_ids.push((stream.clone(), id.clone()));
        let name = match kinesis {
            Some(kinesis) => json!(kinesis),
            None => json!({"Fn::Sub": format!("${{AWS::StackName}}-{stream}")}),
        };
        resources.insert(
            id.clone(),
            json!({
                "Type": "AWS::Kinesis::Stream",
                "Properties": {
                    "Name": name,
                    "ShardCount": shards,
                    "RetentionPeriodHours": 24,
                    "StreamEncryption": {"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"}
                }
            }),
        );
        outputs.insert(
            id.clone(),
            json!({"Description": format!("stream {stream}"), "Value": {"Ref": id}}),
        );
    }

    for processor in &functions {
        let base = logical(processor.name.get_ref());
        let (function, role, logs, queue, mapping) = (
            claim(format!("{base}Function"))?,
            claim(format!("{base}Role"))?,
            claim(format!("{base}Logs"))?,
            claim(format!("{base}Failures"))?,
            claim(format!("{base}Mapping"))?,
        );
        let stream = format!("{}Stream", logical(processor.stream.get_ref()));
        let table = processor.table();
        resources.insert(
            logs.clone(),
            json!({
                "Type": "AWS::Logs::LogGroup",
                "Properties": {
                    "LogGroupName": {"Fn::Sub": format!("/aws/lambda/${{AWS::StackName}}-{}", processor.name.get_ref())},
                    "RetentionInDays": 30
                }
            }),
        );
        resources.insert(
            queue.clone(),
            json!({
                "Type": "AWS::SQS::Queue",
                "Properties": {"SqsManagedSseEnabled": true, "MessageRetentionPeriod": 1_209_600}
            }),
        );
        // Only what the function calls, on only its resources.
        let mut statements = vec![
            json!({
                "Sid": "ReadItsStream",
                "Effect": "Allow",
                "Action": ["kinesis:DescribeStream", "kinesis:DescribeStreamSummary",
                           "kinesis:GetRecords", "kinesis:GetShardIterator", "kinesis:ListShards"],
                "Resource": arn_of(&stream)
            }),
            json!({
                "Sid": "WriteItsTable",
                "Effect": "Allow",
                "Action": ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"],
                "Resource": bucket_objects(&format!("{table}/*"))
            }),
            json!({
                "Sid": "ListItsTable",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": arn_of("LakeBucket"),
                "Condition": {"StringLike": {"s3:prefix": [format!("{table}/*")]}}
            }),
            json!({
                "Sid": "ReportFailures",
                "Effect": "Allow",
                "Action": "sqs:SendMessage",
                "Resource": arn_of(&queue)
            }),
            json!({
                "Sid": "Log",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": {"Fn::Sub": format!("${{{logs}.Arn}}:*")}
            }),
        ];
        if processor.on_failure.is_some() {
            // driftline-lambda keeps refused records under the lake's dead-letter prefix.
            statements.push(json!({
                "Sid": "DeadLetters",
                "Effect": "Allow",
                "Action": "s3:PutObject",
                "Resource": bucket_objects(&format!("_dead_letters/{}/*", processor.name.get_ref()))
            }));
        }
        resources.insert(
            role.clone(),
            json!({
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "AssumeRolePolicyDocument": assume("lambda.amazonaws.com"),
                    "Policies": [{"PolicyName": "processor", "PolicyDocument": {
                        "Version": "2012-10-17", "Statement": statements
                    }}]
                }
            }),
        );
        resources.insert(
            function.clone(),
            json!({
                "Type": "AWS::Lambda::Function",
                "Properties": {
                    "FunctionName": {"Fn::Sub": format!("${{AWS::StackName}}-{}", processor.name.get_ref())},
                    "Description": format!("driftline processor {} of pipeline {name}", processor.name.get_ref()),
                    "Runtime": "provided.al2023",
                    "Architectures": ["x86_64"],
                    "Handler": "bootstrap",
                    "Code": {"S3Bucket": {"Ref": "CodeBucket"}, "S3Key": {"Ref": "CodeKey"}},
                    "MemorySize": 1024,
                    "Timeout": 300,
                    "Role": arn_of(&role),
                    "LoggingConfig": {"LogGroup": {"Ref": logs}, "LogFormat": "JSON"},
                    "Environment": {"Variables": {
                        "DRIFTLINE_PROCESSOR": processor.name.get_ref(),
                        "DRIFTLINE_LAKE": {"Fn::Sub": "s3://${LakeBucket}"}
                    }}
                }
            }),
        );
        let mut properties = json!({
            "EventSourceArn": arn_of(&stream),
            "FunctionName": {"Ref": function},
            "StartingPosition": match processor.starting_position {
                driftline_pipeline::config::StartingPosition::TrimHorizon => "TRIM_HORIZON",
                driftline_pipeline::config::StartingPosition::Latest => "LATEST",
            },
            "BatchSize": processor.batch_size,
            "MaximumBatchingWindowInSeconds": window_seconds(processor),
            "ParallelizationFactor": processor.parallelization_factor,
            "MaximumRetryAttempts": processor.maximum_retry_attempts,
            "BisectBatchOnFunctionError": processor.bisect_batch_on_error,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "DestinationConfig": {"OnFailure": {"Destination": arn_of(&queue)}}
        });
        if let Some(age) = processor.maximum_record_age_s {
            // Lambda accepts 60..=604800 seconds.
            properties["MaximumRecordAgeInSeconds"] = json!(age.clamp(60, 604_800));
        }
        resources.insert(
            mapping,
            json!({"Type": "AWS::Lambda::EventSourceMapping", "Properties": properties}),
        );
    }

    let mut model_roles = Vec::new();
    for model in &config.models {
        let base = logical(model.name());
        let role = claim(format!("{base}SageMakerRole"))?;
        model_roles.push((model.name().to_string(), role.clone()));
        let model_name = model.name();
        resources.insert(
            role.clone(),
            json!({
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "AssumeRolePolicyDocument": assume("sagemaker.amazonaws.com"),
                    "Policies": [{"PolicyName": "training-and-serving", "PolicyDocument": {
                        "Version": "2012-10-17",
                        "Statement": [
                            {"Sid": "ReadTrainingData", "Effect": "Allow", "Action": "s3:GetObject",
                             "Resource": bucket_objects(&format!("{}/*", model.joined_table()))},
                            {"Sid": "Registry", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
                             "Resource": bucket_objects(&format!("registry/{model_name}/*"))},
                            {"Sid": "JobsAndModels", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
                             "Resource": bucket_objects(&format!("_sagemaker/{model_name}/*"))},
                            {"Sid": "ListItsData", "Effect": "Allow", "Action": "s3:ListBucket",
                             "Resource": arn_of("LakeBucket"),
                             "Condition": {"StringLike": {"s3:prefix": [
                                 format!("{}/*", model.joined_table()), format!("registry/{model_name}/*"),
                                 format!("_sagemaker/{model_name}/*")
                             ]}}},
                            {"Sid": "PullImage", "Effect": "Allow",
                             "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                             "Resource": {"Fn::Sub": "arn:${AWS::Partition}:ecr:${AWS::Region}:${AWS::AccountId}:repository/${ImageRepository}"}},
                            {"Sid": "EcrToken", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
                            {"Sid": "Log", "Effect": "Allow",
                             "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                             "Resource": {"Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:/aws/sagemaker/*"}}
                        ]
                    }}]
                }
            }),
        );
        outputs.insert(
            role.clone(),
            json!({"Description": format!("SageMaker execution role of model {model_name}"), "Value": arn_of(&role)}),
        );
    }

    let mut parameters = Map::new();
    if !functions.is_empty() {
        parameters.insert(
            "CodeBucket".into(),
            json!({"Type": "String", "Description": "bucket holding the driftline-lambda zip"}),
        );
        parameters.insert(
            "CodeKey".into(),
            json!({"Type": "String", "Description": "key of the driftline-lambda zip"}),
        );
    }
    if super::service::needed(config, functions.len()) {
        for id in [
            "DriftlineTaskRole",
            "DriftlineExecutionRole",
            "DriftlineLogs",
            "DriftlineCluster",
            "DriftlineTask",
            "DriftlineService",
            "DriftlineSecurityGroup",
        ] {
            claim(id.into())?;
        }
        let lambda: Vec<String> = functions.iter().map(|p| p.name.get_ref().clone()).collect();
        let service = super::service::Service {
            pipeline_name: name,
            pipeline_text: text,
            lambda_processors: &lambda,
            stream_ids: &stream_ids,
            model_roles: &model_roles,
        };
        super::service::add(config, &service, &mut resources, &mut parameters)?;
    }
    if !config.models.is_empty() || super::service::needed(config, functions.len()) {
        parameters.insert(
            "ImageRepository".into(),
            json!({"Type": "String", "Default": "driftline", "Description": "ECR repository of the driftline image (Dockerfile)"}),
        );
    }
    let mut template = json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": format!("driftline pipeline {name}"),
        "Resources": resources,
        "Outputs": outputs,
    });
    if !parameters.is_empty() {
        template["Parameters"] = Value::Object(parameters);
    }
    Ok(template)
}

#[cfg(test)]
mod tests {
    use super::logical;

    #[test]
    fn logical_ids_are_camel_case_letters_and_digits() {
        assert_eq!(logical("events-dlq"), "EventsDlq");
        assert_eq!(logical("fraud_joined.v2"), "FraudJoinedV2");
    }
}
