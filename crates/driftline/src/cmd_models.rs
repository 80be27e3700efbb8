//! `driftline models list|show|promote|rollback`: the registry read from the
//! lake, steered through the server that serves the model (the swap must
//! happen where the model serves).

use anyhow::Context;
use driftline_lake::{Lake, Registry};
use serde_json::json;

use crate::client::{Client, EndpointArgs};

#[derive(clap::Subcommand)]
pub enum ModelsCommand {
    /// The models in the registry, or one model's versions.
    List {
        model: Option<String>,
        #[arg(long, default_value = "./lake")]
        lake: String,
    },
    /// One version: parameters, training data, metrics, parent, status and decisions.
    Show {
        model: String,
        version: u64,
        #[arg(long, default_value = "./lake")]
        lake: String,
    },
    /// Makes a registered version the champion of a running server.
    Promote {
        model: String,
        version: u64,
        #[arg(long, default_value = "promoted by hand")]
        reason: String,
        #[command(flatten)]
        endpoint: EndpointArgs,
    },
    /// Brings back the previous champion on a running server.
    Rollback {
        model: String,
        #[arg(long, default_value = "rolled back by hand")]
        reason: String,
        #[command(flatten)]
        endpoint: EndpointArgs,
    },
}

pub fn run(command: ModelsCommand) -> anyhow::Result<()> {
    match command {
        ModelsCommand::List { model: None, lake } => {
            let lake = Lake::open(&lake)?;
            let paths = crate::listen::runtime()?.block_on(lake.list("registry"))?;
            let mut names: Vec<&str> = paths.iter().filter_map(|p| p.split('/').nth(1)).collect();
            names.dedup();
            for name in names {
                println!("{name}");
            }
        }
        ModelsCommand::List {
            model: Some(model),
            lake,
        } => {
            let registry = Registry::new(Lake::open(&lake)?, &model)?;
            let versions = crate::listen::runtime()?.block_on(registry.versions())?;
            println!(
                "{:>7}  {:<9}  {:>6}  {:<7}  {:>9}  reason",
                "version", "status", "parent", "learner", "accuracy"
            );
            for v in versions {
                let accuracy = v
                    .record
                    .metrics
                    .get("holdout_accuracy")
                    .or(v.record.metrics.get("training_accuracy"));
                println!(
                    "{:>7}  {:<9}  {:>6}  {:<7}  {:>9}  {}",
                    v.record.version,
                    format!("{:?}", v.status).to_lowercase(),
                    v.record.parent.map_or("-".into(), |p| p.to_string()),
                    v.record.learner,
                    accuracy.map_or("-".into(), |a| format!("{a:.4}")),
                    v.decisions.last().map_or("", |d| d.reason.as_str()),
                );
            }
        }
        ModelsCommand::Show {
            model,
            version,
            lake,
        } => {
            let registry = Registry::new(Lake::open(&lake)?, &model)?;
            let versions = crate::listen::runtime()?.block_on(registry.versions())?;
            let state = versions
                .into_iter()
                .find(|v| v.record.version == version)
                .with_context(|| format!("model {model} has no version {version}"))?;
            println!("{}", serde_json::to_string_pretty(&state)?);
        }
        ModelsCommand::Promote {
            model,
            version,
            reason,
            endpoint,
        } => {
            let answer = Client::new(&endpoint)?.post_json(
                &format!("/v1/models/{model}/promote"),
                json!({"version": version, "reason": reason}),
            )?;
            println!("{answer}");
        }
        ModelsCommand::Rollback {
            model,
            reason,
            endpoint,
        } => {
            let answer = Client::new(&endpoint)?.post_json(
                &format!("/v1/models/{model}/rollback"),
                json!({"reason": reason}),
            )?;
            println!("{answer}");
        }
    }
    Ok(())
}
