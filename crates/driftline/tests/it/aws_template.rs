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
