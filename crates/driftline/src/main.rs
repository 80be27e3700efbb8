//! The `driftline` command: every role of the system in one binary.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod assembly;
mod client;
mod cmd_auth;
mod cmd_aws;
mod cmd_backtest;
mod cmd_backtest_model;
mod cmd_bench;
mod cmd_demo;
mod cmd_get;
mod cmd_models;
mod cmd_put;
mod cmd_run;
mod cmd_sagemaker;
mod cmd_serve;
mod cmd_stream;
mod dataset;
mod deploy;
mod emf_report;
mod listen;
mod report;
#[cfg(all(test, feature = "aws"))]
mod sagemaker_conformance;
mod security;
#[cfg(test)]
mod writer_conformance;

use clap::{Parser, Subcommand};

/// driftline keeps machine-learning models fresh while their data drifts.
#[derive(Parser)]
#[command(name = "driftline", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The whole loop on a built-in drifting fraud stream: ingest, lake,
    /// serving, late labels, drift alarms, retraining, promotion.
    Demo(cmd_demo::DemoArgs),
    /// Run the stream server: the Kinesis API and NDJSON ingest on one port.
    Serve(cmd_serve::ServeArgs),
    /// Create, list, describe and delete streams on a running server.
    #[command(subcommand)]
    Stream(cmd_stream::StreamCommand),
    /// Write NDJSON from standard input to a stream.
    Put(cmd_put::PutArgs),
    /// Read a stream's records to standard output as NDJSON.
    Get(cmd_get::GetArgs),
    /// Read and steer the model registry.
    #[command(subcommand)]
    Models(cmd_models::ModelsCommand),
    /// Run a pipeline: its streams (with the Kinesis API), processors and delivery to the lake.
    Run(cmd_run::RunArgs),
    /// Check a pipeline file without running it.
    Validate(cmd_run::ValidateArgs),
    /// Replay a recorded stream through models and retraining policies.
    Backtest(cmd_backtest::BacktestArgs),
    /// Running on AWS: `driftline aws template PIPELINE.toml` (CloudFormation).
    #[command(subcommand)]
    Aws(cmd_aws::AwsCommand),
    /// The SageMaker container contract: train on /opt/ml, serve /ping and /invocations.
    #[command(subcommand)]
    Sagemaker(cmd_sagemaker::SagemakerCommand),
    /// Access keys for `--auth`: `driftline auth new-key --scope ... --file keys.toml`.
    #[command(subcommand)]
    Auth(cmd_auth::AuthCommand),
    /// Timings of driftline's own parts, for the peer benchmarks in bench/.
    #[command(subcommand)]
    Bench(cmd_bench::BenchCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DRIFTLINE_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Demo(args) => cmd_demo::run(args),
        Command::Serve(args) => cmd_serve::run(args),
        Command::Stream(command) => cmd_stream::run(command),
        Command::Put(args) => cmd_put::run(args),
        Command::Get(args) => cmd_get::run(args),
        Command::Models(command) => cmd_models::run(command),
        Command::Run(args) => cmd_run::run(args),
        Command::Validate(args) => cmd_run::validate(args),
        Command::Backtest(args) => match args.pipeline.clone() {
            Some(pipeline) => cmd_backtest_model::run(&args, &pipeline),
            None => cmd_backtest::run_backtest(args),
        },
        Command::Sagemaker(command) => cmd_sagemaker::run(command),
        Command::Aws(command) => cmd_aws::run(command),
        Command::Auth(command) => cmd_auth::run(command),
        Command::Bench(command) => cmd_bench::run(command),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // A closed pipe (`driftline get | head`) is not a failure.
            if error
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            {
                return std::process::ExitCode::SUCCESS;
            }
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
