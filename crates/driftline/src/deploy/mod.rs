//! Deployment to AWS: the pipeline as a CloudFormation template
//! (`template`, with the Fargate service of `driftline run` in `service`)
//! and the Lambda function's package (`lambda_zip`); the resource helpers
//! both parts of the template use are here.

use serde_json::{json, Value};

pub mod lambda_zip;
pub mod service;
pub mod template;

/// A CloudFormation logical id from a name: letters and digits, CamelCase.
pub fn logical(name: &str) -> String {
    name.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

pub fn arn_of(resource: &str) -> Value {
    json!({"Fn::GetAtt": [resource, "Arn"]})
}

pub fn assume(service: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]
    })
}

/// `arn:aws:s3:::BUCKET/PATH` of the lake bucket.
pub fn bucket_objects(path: &str) -> Value {
    json!({"Fn::Sub": format!("arn:${{AWS::Partition}}:s3:::${{LakeBucket}}/{path}")})
}
