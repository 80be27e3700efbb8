//! `driftline aws template`: for each example pipeline, a CloudFormation
//! template that `cfn-lint` passes, with least-privilege roles (one per
//! component, no wildcard actions or resources but the one ECR requires), an
//! encrypted bucket with public access blocked, and event-source mappings
//! with bisect, bounded retries and an on-failure destination. The
//! quickstart's template is a golden file.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

fn template(pipeline: &Path, out: &Path) -> Value {
    let status = Command::new(env!("CARGO_BIN_EXE_driftline"))
        .args(["aws", "template"])
        .arg(pipeline)
        .arg("--out")
        .arg(out)
        .status()
        .expect("driftline aws template");
    assert!(status.success());
    serde_json::from_slice(&std::fs::read(out).expect("template")).expect("JSON")
}

fn of_type<'a>(template: &'a Value, kind: &str) -> Vec<(&'a String, &'a Value)> {
    template["Resources"]
        .as_object()
        .expect("resources")
        .iter()
        .filter(|(_, r)| r["Type"] == kind)
        .collect()
}

fn as_list(value: &Value) -> Vec<&Value> {
    match value {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    }
}

#[test]
fn every_example_becomes_a_template_cfn_lint_passes_with_least_privilege() {
    let dir = tempfile::tempdir().expect("dir");
    for pipeline in examples() {
        let out = dir.path().join(format!(
            "{}.json",
            pipeline.file_stem().expect("stem").to_string_lossy()
        ));
        let template = template(&pipeline, &out);
        let lint = Command::new("cfn-lint")
            .arg(&out)
            .output()
            .expect("cfn-lint (installed with moto[server] by .ci/run, or pip install cfn-lint)");
        assert!(
            lint.status.success(),
            "{}: {}{}",
            pipeline.display(),
            String::from_utf8_lossy(&lint.stdout),
            String::from_utf8_lossy(&lint.stderr)
        );

        // the bucket: encrypted, no public access
        let (_, bucket) = of_type(&template, "AWS::S3::Bucket")[0];
        let properties = &bucket["Properties"];
        assert!(properties["BucketEncryption"].is_object());
        let block = &properties["PublicAccessBlockConfiguration"];
        for key in [
            "BlockPublicAcls",
            "BlockPublicPolicy",
            "IgnorePublicAcls",
            "RestrictPublicBuckets",
        ] {
            assert_eq!(block[key], true, "{key}");
        }
        // roles: only named actions, on named resources (ECR's token call aside)
        let roles = of_type(&template, "AWS::IAM::Role");
        for (id, role) in &roles {
            for policy in role["Properties"]["Policies"].as_array().expect("policies") {
                for statement in policy["PolicyDocument"]["Statement"]
                    .as_array()
                    .expect("statements")
                {
                    for action in as_list(&statement["Action"]) {
                        let action = action.as_str().expect("action");
                        assert!(!action.contains('*'), "{id}: {action}");
                    }
                    if statement["Action"] != "ecr:GetAuthorizationToken" {
                        assert_ne!(statement["Resource"], "*", "{id}: {statement}");
                    }
                }
            }
        }
        // one function per processor, each with a role of its own and a safe mapping
        let functions = of_type(&template, "AWS::Lambda::Function");
        let mut function_roles: Vec<String> = functions
            .iter()
            .map(|(_, f)| {
                f["Properties"]["Role"]["Fn::GetAtt"][0]
                    .as_str()
                    .expect("role")
                    .to_string()
            })
            .collect();
        function_roles.sort();
        function_roles.dedup();
        assert_eq!(
            function_roles.len(),
            functions.len(),
            "{}",
            pipeline.display()
        );
        let mappings = of_type(&template, "AWS::Lambda::EventSourceMapping");
        assert_eq!(mappings.len(), functions.len());
        for (id, mapping) in mappings {
            let p = &mapping["Properties"];
            assert_eq!(p["BisectBatchOnFunctionError"], true, "{id}");
            assert!(
                p["MaximumRetryAttempts"].as_u64().is_some_and(|n| n <= 10),
                "{id}"
            );
            assert!(
                p["DestinationConfig"]["OnFailure"]["Destination"].is_object(),
                "{id}"
            );
            assert_eq!(p["FunctionResponseTypes"][0], "ReportBatchItemFailures");
        }
    }
}

#[test]
fn the_quickstart_template_matches_its_golden_file() {
    let golden =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/quickstart.template.json");
    let dir = tempfile::tempdir().expect("dir");
    let out = dir.path().join("quickstart.json");
    let quickstart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart.toml");
    template(&quickstart, &out);
    let made = std::fs::read_to_string(&out).expect("made");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden.parent().expect("dir")).expect("golden dir");
        std::fs::write(&golden, &made).expect("write golden");
    }
    let expected =
        std::fs::read_to_string(&golden).expect("the golden file (UPDATE_GOLDEN=1 writes it)");
    assert_eq!(
        made, expected,
        "the template changed: review it, then UPDATE_GOLDEN=1"
    );
}

#[test]
fn the_lambda_package_holds_an_executable_bootstrap_and_the_pipeline() {
    let dir = tempfile::tempdir().expect("dir");
    let function = dir.path().join("driftline-lambda");
    let binary: Vec<u8> = (0..200_000u32)
        .flat_map(|i| (i % 251).to_le_bytes())
        .collect();
    std::fs::write(&function, &binary).expect("stand-in binary");
    let out = dir.path().join("function.zip");
    let quickstart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart.toml");
    let status = Command::new(env!("CARGO_BIN_EXE_driftline"))
        .args(["aws", "package"])
        .arg(&quickstart)
        .arg("--function")
        .arg(&function)
        .arg("--out")
        .arg(&out)
        .status()
        .expect("driftline aws package");
    assert!(status.success());
    // Python's zipfile, a reader nobody here wrote, checks the CRCs and modes
    let script = format!(
        "import zipfile\n\
         z = zipfile.ZipFile('{}')\n\
         assert z.testzip() is None\n\
         print([(i.filename, oct(i.external_attr >> 16)) for i in z.infolist()])\n\
         print(len(z.read('bootstrap')), z.read('pipeline.toml') == open('{}', 'rb').read())",
        out.display(),
        quickstart.display()
    );
    let output = Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        printed.trim(),
        format!(
            "[('bootstrap', '0o100755'), ('pipeline.toml', '0o100644')]\n{} True",
            binary.len()
        )
    );
    // a pipeline that does not validate is not packaged
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[stream]]\nnme = \"x\"\n").expect("bad");
    let status = Command::new(env!("CARGO_BIN_EXE_driftline"))
        .args(["aws", "package"])
        .arg(&bad)
        .arg("--function")
        .arg(&function)
        .arg("--out")
        .arg(dir.path().join("bad.zip"))
        .status()
        .expect("driftline aws package");
    assert!(!status.success());
}

/// The statements of a role's inline policies.
fn statements<'a>(template: &'a Value, role: &str) -> Vec<&'a Value> {
    template["Resources"][role]["Properties"]["Policies"]
        .as_array()
        .expect("policies")
        .iter()
        .flat_map(|p| {
            p["PolicyDocument"]["Statement"]
                .as_array()
                .expect("statements")
        })
        .collect()
}

fn statement<'a>(template: &'a Value, role: &str, sid: &str) -> &'a Value {
    statements(template, role)
        .into_iter()
        .find(|s| s["Sid"] == sid)
        .unwrap_or_else(|| panic!("{role} has no statement {sid}"))
}

/// The service listens beyond loopback only with keys from its secret and
/// over TLS, reachable from one address range; only ECS reads the secrets.
fn secured_as_documented(made: &Value, container: &Value) {
    let command: Vec<&str> = container["Command"]
        .as_array()
        .expect("command")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(command[1], "env:DRIFTLINE_PIPELINE");
    for pair in [
        ["--auth", "env:DRIFTLINE_AUTH_KEYS"],
        ["--tls-cert", "env:DRIFTLINE_TLS_PEM"],
        ["--tls-key", "env:DRIFTLINE_TLS_PEM"],
    ] {
        assert!(command.windows(2).any(|w| w == pair), "{command:?}");
    }
    assert_eq!(
        container["Secrets"],
        serde_json::json!([
            {"Name": "DRIFTLINE_AUTH_KEYS", "ValueFrom": {"Ref": "AuthKeysSecretArn"}},
            {"Name": "DRIFTLINE_TLS_PEM", "ValueFrom": {"Ref": "TlsCertificateSecretArn"}}
        ])
    );
    let read = statement(made, "DriftlineExecutionRole", "ReadItsSecrets");
    assert_eq!(read["Action"], "secretsmanager:GetSecretValue");
    assert_eq!(
        read["Resource"][0],
        serde_json::json!({"Ref": "AuthKeysSecretArn"})
    );
    assert!(
        !statements(made, "DriftlineTaskRole")
            .iter()
            .any(|s| s["Action"].to_string().contains("secretsmanager")),
        "the task role reads no secret"
    );
    let group = &made["Resources"]["DriftlineSecurityGroup"]["Properties"];
    assert_eq!(
        group["SecurityGroupIngress"],
        serde_json::json!([{"IpProtocol": "tcp", "FromPort": 4567, "ToPort": 4567,
            "CidrIp": {"Ref": "AllowedCidr"},
            "Description": "the Kinesis API, NDJSON ingest and the models API, over TLS with keys"}])
    );
    assert!(
        !made.to_string().contains("secret = "),
        "no key in the template's text"
    );
}

/// `examples/aws.toml` runs its processor in `driftline run` (its stream is
/// on Kinesis): no function, but a Fargate service whose task role reads that
/// stream and puts on both, with the pipeline in its environment; a model
/// mirrored to SageMaker lets the service pass only its own SageMaker role.
#[test]
fn a_pipeline_on_kinesis_runs_as_a_service_with_a_role_of_its_own() {
    let dir = tempfile::tempdir().expect("dir");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/aws.toml");
    let made = template(&example, &dir.path().join("aws.json"));
    assert!(of_type(&made, "AWS::Lambda::Function").is_empty());
    assert!(made["Parameters"]["CodeBucket"].is_null());
    let names: Vec<&Value> = of_type(&made, "AWS::Kinesis::Stream")
        .into_iter()
        .map(|(_, s)| &s["Properties"]["Name"])
        .collect();
    assert_eq!(names, vec!["events-dlq", "events"], "named as their urls");
    assert_eq!(of_type(&made, "AWS::ECS::Service").len(), 1);
    let reads = statement(&made, "DriftlineTaskRole", "ReadStreams");
    assert_eq!(
        reads["Resource"],
        serde_json::json!([{"Fn::GetAtt": ["EventsStream", "Arn"]}])
    );
    let puts = statement(&made, "DriftlineTaskRole", "PutOnStreams");
    assert_eq!(puts["Resource"].as_array().map(Vec::len), Some(2));
    let container = &made["Resources"]["DriftlineTask"]["Properties"]["ContainerDefinitions"][0];
    let text = std::fs::read_to_string(&example).expect("example");
    assert_eq!(container["Environment"][0]["Value"], text.as_str());
    secured_as_documented(&made, container);

    // a processor may ask for Lambda instead
    let lambda = dir.path().join("lambda.toml");
    std::fs::write(
        &lambda,
        text.replace(
            "on_failure = \"events-dlq\"",
            "on_failure = \"events-dlq\"\nruns_on = \"lambda\"",
        ),
    )
    .expect("write");
    let made = template(&lambda, &dir.path().join("lambda.json"));
    assert_eq!(of_type(&made, "AWS::Lambda::Function").len(), 1);
    assert!(
        of_type(&made, "AWS::ECS::Service").is_empty(),
        "nothing left for driftline run"
    );

    // a model mirrored to SageMaker
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/model.toml");
    let with_sagemaker = std::fs::read_to_string(&model).expect("model").replace(
        "promotion = { mode = \"direct\", min_gain = 0.005 }",
        "promotion = { mode = \"direct\", min_gain = 0.005 }\n\
         sagemaker = { image = \"x.dkr.ecr.us-east-1.amazonaws.com/driftline:1\", endpoint = \"fraud\", train = true }",
    );
    let sm = dir.path().join("sm.toml");
    std::fs::write(&sm, with_sagemaker).expect("write");
    let out = dir.path().join("sm.json");
    let made = template(&sm, &out);
    let lint = Command::new("cfn-lint")
        .arg(&out)
        .output()
        .expect("cfn-lint");
    assert!(
        lint.status.success(),
        "{}",
        String::from_utf8_lossy(&lint.stdout)
    );
    // its processor of an embedded stream is a function, which the service skips
    let container = &made["Resources"]["DriftlineTask"]["Properties"]["ContainerDefinitions"][0];
    let command: Vec<&str> = container["Command"]
        .as_array()
        .expect("command")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        command.windows(2).any(|w| w == ["--skip", "history"]),
        "{command:?}"
    );
    // and its streams are the stack's Kinesis streams, not the task's disk
    let moved: Vec<&Value> = container["Command"]
        .as_array()
        .expect("command")
        .iter()
        .filter_map(|v| v.get("Fn::Sub"))
        .collect();
    assert!(
        moved.contains(&&serde_json::json!(
            "history=kinesis://${AWS::StackName}-history"
        )) && moved.contains(&&serde_json::json!(
            "fraud-labels=kinesis://${AWS::StackName}-fraud-labels"
        )),
        "{moved:?}"
    );
    let reads = statement(&made, "DriftlineTaskRole", "ReadStreams");
    assert_eq!(
        reads["Resource"],
        serde_json::json!([{"Fn::GetAtt": ["FraudLabelsStream", "Arn"]}]),
        "its labels only"
    );
    // no role_arn in the pipeline: the service is told the template's role
    let role = container["Environment"]
        .as_array()
        .expect("environment")
        .iter()
        .find(|v| v["Name"] == "DRIFTLINE_SAGEMAKER_ROLE_FRAUD")
        .expect("the role's variable");
    assert_eq!(
        role["Value"],
        serde_json::json!({"Fn::GetAtt": ["FraudSageMakerRole", "Arn"]})
    );
    let deployment =
        &made["Resources"]["DriftlineService"]["Properties"]["DeploymentConfiguration"];
    assert_eq!(deployment["MaximumPercent"], 100, "one task at a time");
    let pass = statement(&made, "DriftlineTaskRole", "PassTheSageMakerRoles");
    assert_eq!(
        pass["Resource"],
        serde_json::json!([{"Fn::GetAtt": ["FraudSageMakerRole", "Arn"]}])
    );
    assert_eq!(
        pass["Condition"]["StringEquals"]["iam:PassedToService"],
        "sagemaker.amazonaws.com"
    );
    let calls = statement(&made, "DriftlineTaskRole", "SageMakerFraud");
    let actions: Vec<&str> = calls["Action"]
        .as_array()
        .expect("actions")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        actions.contains(&"sagemaker:UpdateEndpoint")
            && actions.contains(&"sagemaker:CreateTrainingJob"),
        "{actions:?}"
    );
}
