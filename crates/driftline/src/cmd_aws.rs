//! `driftline aws ...`: what running a pipeline on AWS needs from this side.

use std::path::PathBuf;

use anyhow::Context;
use driftline_pipeline::PipelineConfig;

#[derive(clap::Subcommand)]
pub enum AwsCommand {
    /// Write the pipeline's CloudFormation template (JSON): streams, the lake
    /// bucket, one Lambda function per processor with its event-source
    /// mapping, least-privilege roles, log groups, SageMaker roles.
    Template {
        /// The pipeline file.
        pipeline: PathBuf,
        /// Where to write it (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write the Lambda deployment package: the driftline-lambda binary as
    /// `bootstrap` and the pipeline as `pipeline.toml`, zipped (upload it as the
    /// template's CodeBucket/CodeKey).
    Package {
        /// The pipeline file.
        pipeline: PathBuf,
        /// The function binary (default: driftline-lambda beside this program).
        #[arg(long)]
        function: Option<PathBuf>,
        #[arg(long, default_value = "function.zip")]
        out: PathBuf,
    },
}

pub fn run(command: AwsCommand) -> anyhow::Result<()> {
    match command {
        AwsCommand::Template { pipeline, out } => {
            let config = PipelineConfig::load(&pipeline)?;
            let text = std::fs::read_to_string(&pipeline)
                .with_context(|| format!("cannot read {}", pipeline.display()))?;
            let name = pipeline
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "pipeline".into());
            let template = crate::deploy::template::template(&config, &name, &text)?;
            let text = serde_json::to_string_pretty(&template)? + "\n";
            match out {
                Some(path) => std::fs::write(&path, text)
                    .with_context(|| format!("cannot write {}", path.display()))?,
                None => print!("{text}"),
            }
            Ok(())
        }
        AwsCommand::Package {
            pipeline,
            function,
            out,
        } => {
            // Refuse a pipeline that would fail in the function.
            PipelineConfig::load(&pipeline)?;
            let function = match function {
                Some(path) => path,
                None => std::env::current_exe()?.with_file_name("driftline-lambda"),
            };
            let binary = std::fs::read(&function).with_context(|| {
                format!(
                    "cannot read the function {} (cargo build --release --features aws --bin driftline-lambda)",
                    function.display()
                )
            })?;
            let text = std::fs::read(&pipeline)?;
            let bytes = crate::deploy::lambda_zip::zip(&[
                ("bootstrap", 0o755, &binary),
                ("pipeline.toml", 0o644, &text),
            ])?;
            std::fs::write(&out, &bytes)
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!(
                "{}: bootstrap ({} bytes) and pipeline.toml, {} bytes zipped",
                out.display(),
                binary.len(),
                bytes.len()
            );
            Ok(())
        }
    }
}
