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
}

pub fn run(command: AwsCommand) -> anyhow::Result<()> {
    match command {
        AwsCommand::Template { pipeline, out } => {
            let config = PipelineConfig::load(&pipeline)?;
            let name = pipeline
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "pipeline".into());
            let template = crate::cfn::template(&config, &name)?;
            let text = serde_json::to_string_pretty(&template)? + "\n";
            match out {
                Some(path) => std::fs::write(&path, text)
                    .with_context(|| format!("cannot write {}", path.display()))?,
                None => print!("{text}"),
            }
            Ok(())
        }
    }
}
