//! The `driftline run` part of the CloudFormation template: an ECS Fargate
//! service running the pipeline (its models, landing and AWS sources, and
//! the processors that do not run on Lambda), with the pipeline in its
//! environment, its log group, and a task role allowed only the calls it
//! makes on only its resources.

use driftline_pipeline::PipelineConfig;

use super::{arn_of, assume, bucket_objects, logical};
use serde_json::{json, Map, Value};

/// The pipeline needs a `driftline run` somewhere: models, landing or AWS
/// sources, or processors that are not Lambda functions.
pub fn needed(config: &PipelineConfig, lambda_processors: usize) -> bool {
    !config.models.is_empty()
        || !config.sources.is_empty()
        || !config.kinesis.is_empty()
        || !config.dynamodb.is_empty()
        || config.processors.len() > lambda_processors
}

fn kinesis_arn(name: &str) -> Value {
    json!({"Fn::Sub": format!("arn:${{AWS::Partition}}:kinesis:${{AWS::Region}}:${{AWS::AccountId}}:stream/{name}")})
}

/// A queue URL (`https://sqs.REGION.amazonaws.com/ACCOUNT/NAME`, or the
/// older `https://REGION.queue.amazonaws.com/ACCOUNT/NAME`) as an ARN.
fn queue_arn(url: &str) -> Option<Value> {
    let rest = url.split("://").nth(1)?;
    let mut parts = rest.split('/');
    let host = parts.next()?;
    let (account, name) = (parts.next()?, parts.next()?);
    let region = match host.strip_prefix("sqs.") {
        Some(rest) => rest.split('.').next()?,
        None => host.strip_suffix(".queue.amazonaws.com")?,
    };
    let valid = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    if !(valid(region) && valid(account) && valid(name)) {
        return None;
    }
    Some(json!({"Fn::Sub": format!("arn:${{AWS::Partition}}:sqs:{region}:{account}:{name}")}))
}

/// What the service is made from, beside the pipeline's configuration.
pub struct Service<'a> {
    pub pipeline_name: &'a str,
    /// The pipeline file's text, handed to the task.
    pub pipeline_text: &'a str,
    /// Processors deployed as Lambda functions, which it skips.
    pub lambda_processors: &'a [String],
    /// Pipeline stream -> logical id of its Kinesis stream.
    pub stream_ids: &'a [(String, String)],
    /// Model -> logical id of the SageMaker execution role it may pass.
    pub model_roles: &'a [(String, String)],
}

/// Adds the service, its roles and its parameters.
pub fn add(
    config: &PipelineConfig,
    service: &Service<'_>,
    resources: &mut Map<String, Value>,
    parameters: &mut Map<String, Value>,
) -> anyhow::Result<()> {
    let Service {
        pipeline_name,
        pipeline_text,
        lambda_processors,
        stream_ids,
        model_roles,
    } = *service;
    let stream_id = |name: &str| {
        stream_ids
            .iter()
            .find(|(stream, _)| stream == name)
            .map(|(_, id)| arn_of(id))
    };
    // In the stack every declared stream is a Kinesis stream (the service is
    // told so with --stream-url). It reads the streams of the processors it
    // runs, the Kinesis sources and the models' labels; it puts on every
    // stream (the NDJSON ingest, dead letters) and the prediction logs.
    let mut reads: Vec<Value> = config
        .processors
        .iter()
        .filter(|p| !lambda_processors.contains(p.name.get_ref()))
        .filter_map(|p| stream_id(p.stream.get_ref()))
        .collect();
    reads.extend(
        config
            .models
            .iter()
            .filter_map(|m| m.labels.as_ref())
            .filter_map(|l| stream_id(l.get_ref())),
    );
    reads.sort_by_key(Value::to_string);
    reads.dedup();
    reads.extend(
        config
            .kinesis
            .iter()
            .map(|k| kinesis_arn(k.stream.get_ref())),
    );
    let mut writes: Vec<Value> = config
        .streams
        .iter()
        .filter_map(|s| stream_id(s.name.get_ref()))
        .collect();
    writes.extend(
        config
            .models
            .iter()
            .filter(|m| m.prediction_log.is_some())
            .filter_map(|m| stream_id(&m.predictions_stream())),
    );
    let (lake, objects) = (arn_of("LakeBucket"), bucket_objects("*"));
    let mut statements = vec![
        // The lake holds its tables, registry, checkpoints and leases.
        json!({"Sid": "Lake", "Effect": "Allow",
               "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], "Resource": objects}),
        json!({"Sid": "ListLake", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": lake}),
    ];
    if !reads.is_empty() {
        statements.push(json!({"Sid": "ReadStreams", "Effect": "Allow",
            "Action": ["kinesis:DescribeStream", "kinesis:DescribeStreamSummary", "kinesis:GetRecords",
                       "kinesis:GetShardIterator", "kinesis:ListShards"],
            "Resource": reads}));
    }
    if !writes.is_empty() {
        statements.push(json!({"Sid": "PutOnStreams", "Effect": "Allow",
            "Action": ["kinesis:DescribeStreamSummary", "kinesis:PutRecord", "kinesis:PutRecords"],
            "Resource": writes}));
    }
    let tables: Vec<Value> = config
        .dynamodb
        .iter()
        .map(|d| json!(d.stream_arn.get_ref()))
        .collect();
    if !tables.is_empty() {
        statements.push(json!({"Sid": "ReadTableStreams", "Effect": "Allow",
            "Action": ["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"],
            "Resource": tables}));
    }
    let queues = config
        .sources
        .iter()
        .filter_map(|s| s.notifications.as_ref())
        .map(|q| {
            queue_arn(q.get_ref()).ok_or_else(|| {
                anyhow::anyhow!(
                    "notifications {:?} is not an SQS queue URL the template can name",
                    q.get_ref()
                )
            })
        })
        .collect::<anyhow::Result<Vec<Value>>>()?;
    if !queues.is_empty() {
        statements.push(
            json!({"Sid": "ObjectCreatedNotifications", "Effect": "Allow",
            "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage"], "Resource": queues}),
        );
    }
    let sagemaker = |kind: &str, name: &str| json!({"Fn::Sub": format!("arn:${{AWS::Partition}}:sagemaker:${{AWS::Region}}:${{AWS::AccountId}}:{kind}/{name}")});
    for model in &config.models {
        let Some(sm) = &model.sagemaker else { continue };
        let group = sm.model_package_group(model.name()).to_lowercase();
        let mut resources = vec![
            sagemaker("model-package-group", &group),
            sagemaker("model-package", &format!("{group}/*")),
        ];
        let mut actions = vec![
            "sagemaker:CreateModelPackageGroup",
            "sagemaker:DescribeModelPackageGroup",
            "sagemaker:CreateModelPackage",
            "sagemaker:UpdateModelPackage",
        ];
        if let Some(endpoint) = &sm.endpoint {
            let endpoint = endpoint.get_ref().to_lowercase();
            resources.extend([
                sagemaker("endpoint", &endpoint),
                sagemaker("endpoint-config", &format!("{endpoint}-*")),
                sagemaker("model", &format!("{endpoint}-*")),
            ]);
            actions.extend([
                "sagemaker:CreateModel",
                "sagemaker:DescribeModel",
                "sagemaker:CreateEndpointConfig",
                "sagemaker:DescribeEndpointConfig",
                "sagemaker:CreateEndpoint",
                "sagemaker:UpdateEndpoint",
                "sagemaker:DeleteEndpoint",
                "sagemaker:DescribeEndpoint",
            ]);
        }
        if sm.train {
            resources.push(sagemaker("training-job", "*"));
            actions.extend([
                "sagemaker:CreateTrainingJob",
                "sagemaker:DescribeTrainingJob",
                "sagemaker:StopTrainingJob",
            ]);
        }
        statements.push(json!({"Sid": format!("SageMaker{}", logical(model.name())),
            "Effect": "Allow", "Action": actions, "Resource": resources}));
    }
    // The roles the template made, or those the pipeline names instead.
    let passed: Vec<Value> = model_roles
        .iter()
        .filter(|(model, _)| {
            config
                .models
                .iter()
                .any(|m| m.name() == model && m.sagemaker.is_some())
        })
        .map(|(model, role)| {
            let named = config
                .models
                .iter()
                .find(|m| m.name() == model)
                .and_then(|m| m.sagemaker.as_ref())
                .and_then(|s| s.role_arn.as_ref());
            match named {
                Some(arn) => json!(arn.get_ref()),
                None => arn_of(role),
            }
        })
        .collect();
    if !passed.is_empty() {
        statements.push(
            json!({"Sid": "PassTheSageMakerRoles", "Effect": "Allow", "Action": "iam:PassRole",
            "Resource": passed,
            "Condition": {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}}),
        );
    }
    let assume = assume("ecs-tasks.amazonaws.com");
    resources.insert("DriftlineTaskRole".into(), json!({
        "Type": "AWS::IAM::Role",
        "Properties": {
            "AssumeRolePolicyDocument": assume,
            "Policies": [{"PolicyName": "driftline-run", "PolicyDocument": {"Version": "2012-10-17", "Statement": statements}}]
        }
    }));
    // What ECS needs to start the task: its image and its log stream.
    resources.insert("DriftlineExecutionRole".into(), json!({
        "Type": "AWS::IAM::Role",
        "Properties": {
            "AssumeRolePolicyDocument": assume,
            "Policies": [{"PolicyName": "start-driftline", "PolicyDocument": {"Version": "2012-10-17", "Statement": [
                {"Sid": "PullImage", "Effect": "Allow",
                 "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                 "Resource": {"Fn::Sub": "arn:${AWS::Partition}:ecr:${AWS::Region}:${AWS::AccountId}:repository/${ImageRepository}"}},
                {"Sid": "EcrToken", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
                {"Sid": "Log", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                 "Resource": {"Fn::Sub": "${DriftlineLogs.Arn}:*"}},
                // ECS reads the service's own secrets into its environment at
                // start; the task role, which driftline runs with, reads none.
                {"Sid": "ReadItsSecrets", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
                 "Resource": [{"Ref": "AuthKeysSecretArn"}, {"Ref": "TlsCertificateSecretArn"}]}
            ]}}]
        }
    }));
    resources.insert("DriftlineLogs".into(), json!({
        "Type": "AWS::Logs::LogGroup",
        "Properties": {"LogGroupName": {"Fn::Sub": "/driftline/${AWS::StackName}"}, "RetentionInDays": 30}
    }));
    resources.insert(
        "DriftlineCluster".into(),
        json!({
            "Type": "AWS::ECS::Cluster",
            "Properties": {"ClusterSettings": [{"Name": "containerInsights", "Value": "enabled"}]}
        }),
    );
    // The processors deployed as functions are left to them.
    let mut command = vec![
        json!("run"),
        json!("env:DRIFTLINE_PIPELINE"),
        json!("--lake"),
        json!({"Fn::Sub": "s3://${LakeBucket}"}),
        json!("--listen"),
        json!("0.0.0.0:4567"),
        // Beyond loopback only with keys: the access keys come from Secrets
        // Manager through the task's environment, never in this template.
        json!("--auth"),
        json!("env:DRIFTLINE_AUTH_KEYS"),
        json!("--metrics"),
        json!("emf"),
        json!("--data-dir"),
        json!("/var/lib/driftline"),
    ];
    for name in lambda_processors {
        command.extend([json!("--skip"), json!(name)]);
    }
    // The streams it would keep on its own disk are the stack's Kinesis streams.
    for stream in config.streams.iter().filter(|s| s.kinesis().is_none()) {
        let name = stream.name.get_ref();
        command.extend([
            json!("--stream-url"),
            json!({"Fn::Sub": format!("{name}=kinesis://${{AWS::StackName}}-{name}")}),
        ]);
    }
    // TLS in the task, with the certificate parameter's PEM (chain and key in
    // one secret): a certificate made at start would name no address clients use.
    command.extend([
        json!("--tls-cert"),
        json!("env:DRIFTLINE_TLS_PEM"),
        json!("--tls-key"),
        json!("env:DRIFTLINE_TLS_PEM"),
    ]);
    let secrets = json!([
        {"Name": "DRIFTLINE_AUTH_KEYS", "ValueFrom": {"Ref": "AuthKeysSecretArn"}},
        {"Name": "DRIFTLINE_TLS_PEM", "ValueFrom": {"Ref": "TlsCertificateSecretArn"}}
    ]);
    let mut environment = vec![
        json!({"Name": "DRIFTLINE_PIPELINE", "Value": pipeline_text}),
        json!({"Name": "DRIFTLINE_PIPELINE_NAME", "Value": pipeline_name}),
        json!({"Name": "AWS_REGION", "Value": {"Ref": "AWS::Region"}}),
    ];
    // Each model's SageMaker execution role, unless the pipeline names one.
    let mut variables = std::collections::BTreeSet::new();
    for (model, role) in model_roles {
        let unnamed = config.models.iter().any(|m| {
            m.name() == model && m.sagemaker.as_ref().is_some_and(|s| s.role_arn.is_none())
        });
        if unnamed {
            let variable = driftline_pipeline::config::model::SagemakerConfig::role_variable(model);
            if !variables.insert(variable.clone()) {
                anyhow::bail!("two models' SageMaker roles would both be {variable}: rename one, or give it sagemaker.role_arn");
            }
            environment.push(json!({
                "Name": variable,
                "Value": arn_of(role)
            }));
        }
    }
    resources.insert("DriftlineTask".into(), json!({
        "Type": "AWS::ECS::TaskDefinition",
        "Properties": {
            "RequiresCompatibilities": ["FARGATE"],
            "NetworkMode": "awsvpc",
            "Cpu": "1024",
            "Memory": "4096",
            "ExecutionRoleArn": {"Fn::GetAtt": ["DriftlineExecutionRole", "Arn"]},
            "TaskRoleArn": {"Fn::GetAtt": ["DriftlineTaskRole", "Arn"]},
            "ContainerDefinitions": [{
                "Name": "driftline",
                "Image": {"Fn::Sub": "${AWS::AccountId}.dkr.ecr.${AWS::Region}.${AWS::URLSuffix}/${ImageRepository}:${ImageTag}"},
                "Essential": true,
                "EntryPoint": ["/usr/local/bin/driftline"],
                "Command": command,
                "Environment": environment,
                "Secrets": secrets,
                "PortMappings": [{"ContainerPort": 4567, "Protocol": "tcp"}],
                "StopTimeout": 120,
                "LogConfiguration": {"LogDriver": "awslogs", "Options": {
                    "awslogs-group": {"Ref": "DriftlineLogs"},
                    "awslogs-region": {"Ref": "AWS::Region"},
                    "awslogs-stream-prefix": "driftline"
                }}
            }]
        }
    }));
    resources.insert(
        "DriftlineService".into(),
        json!({
            "Type": "AWS::ECS::Service",
            "Properties": {
                "Cluster": {"Ref": "DriftlineCluster"},
                "TaskDefinition": {"Ref": "DriftlineTask"},
                "LaunchType": "FARGATE",
                "DesiredCount": 1,
                // One task at a time, also while deploying: two would both
                // run the models' retrains and mirrors.
                "DeploymentConfiguration": {"MaximumPercent": 100, "MinimumHealthyPercent": 0},
                "NetworkConfiguration": {"AwsvpcConfiguration": {
                    "Subnets": {"Ref": "Subnets"},
                    "SecurityGroups": [{"Ref": "DriftlineSecurityGroup"}],
                    "AssignPublicIp": {"Ref": "AssignPublicIp"}
                }}
            }
        }),
    );
    parameters.insert(
        "ImageTag".into(),
        json!({"Type": "String", "Default": "latest",
        "Description": "tag of the driftline image that driftline run starts from"}),
    );
    parameters.insert(
        "Subnets".into(),
        json!({"Type": "List<AWS::EC2::Subnet::Id>",
        "Description": "subnets of the driftline run service"}),
    );
    // Port 4567 (the Kinesis API, ingest and predictions) from one range only.
    resources.insert("DriftlineSecurityGroup".into(), json!({
        "Type": "AWS::EC2::SecurityGroup",
        "Properties": {
            "GroupDescription": "driftline run: port 4567 (TLS) from AllowedCidr only",
            "VpcId": {"Ref": "VpcId"},
            "SecurityGroupIngress": [{"IpProtocol": "tcp", "FromPort": 4567, "ToPort": 4567,
                "CidrIp": {"Ref": "AllowedCidr"},
                "Description": "the Kinesis API, NDJSON ingest and the models API, over TLS with keys"}]
        }
    }));
    parameters.insert(
        "VpcId".into(),
        json!({"Type": "AWS::EC2::VPC::Id",
        "Description": "VPC of the subnets of the driftline run service"}),
    );
    parameters.insert("AllowedCidr".into(), json!({"Type": "String",
        "AllowedPattern": "^\\d{1,3}(\\.\\d{1,3}){3}/\\d{1,2}$",
        "Description": "the only addresses that may reach port 4567 (for example your VPC's range)"}));
    parameters.insert("AuthKeysSecretArn".into(), json!({"Type": "String",
        "AllowedPattern": "^arn:aws[a-z-]*:secretsmanager:.+$",
        "Description": "Secrets Manager secret whose text is the access keys file (driftline auth new-key); read by ECS at start"}));
    parameters.insert("TlsCertificateSecretArn".into(), json!({"Type": "String",
        "AllowedPattern": "^arn:aws[a-z-]*:secretsmanager:.+$",
        "Description": "Secrets Manager secret with the PEM certificate chain (for the name clients use) and its private key; read by ECS at start"}));
    parameters.insert("AssignPublicIp".into(), json!({"Type": "String", "Default": "DISABLED",
        "AllowedValues": ["ENABLED", "DISABLED"],
        "Description": "ENABLED where the subnets have no NAT gateway or VPC endpoints to reach ECR and AWS"}));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::queue_arn;

    #[test]
    fn a_queue_url_becomes_its_arn() {
        let arn = |url: &str| queue_arn(url).map(|v| v["Fn::Sub"].clone());
        assert_eq!(
            arn("https://sqs.eu-west-1.amazonaws.com/123456789012/uploads"),
            Some(serde_json::json!(
                "arn:${AWS::Partition}:sqs:eu-west-1:123456789012:uploads"
            ))
        );
        assert_eq!(
            arn("https://eu-west-1.queue.amazonaws.com/123456789012/uploads"),
            Some(serde_json::json!(
                "arn:${AWS::Partition}:sqs:eu-west-1:123456789012:uploads"
            ))
        );
        assert_eq!(arn("not a url"), None);
        assert_eq!(arn("http://127.0.0.1:5000/123456789012/q"), None);
    }
}
