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
