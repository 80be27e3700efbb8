//! `driftline models list|show|promote|rollback`: the registry read from the
//! lake, steered through the server that serves the model (the swap must
//! happen where the model serves).

use anyhow::Context;
use driftline_lake::{Lake, Registry};
use serde_json::json;

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
        #[arg(
            long,
            env = "DRIFTLINE_ENDPOINT",
            default_value = "http://127.0.0.1:4567"
        )]
        endpoint: String,
    },
    /// Brings back the previous champion on a running server.
    Rollback {
        model: String,
        #[arg(long, default_value = "rolled back by hand")]
        reason: String,
        #[arg(
            long,
            env = "DRIFTLINE_ENDPOINT",
            default_value = "http://127.0.0.1:4567"
        )]
        endpoint: String,
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
            let answer = post(
                &format!("{endpoint}/v1/models/{model}/promote"),
                json!({"version": version, "reason": reason}),
            )?;
            println!("{answer}");
        }
        ModelsCommand::Rollback {
            model,
            reason,
            endpoint,
        } => {
            let answer = post(
                &format!("{endpoint}/v1/models/{model}/rollback"),
                json!({"reason": reason}),
            )?;
            println!("{answer}");
        }
    }
    Ok(())
}

fn post(url: &str, body: serde_json::Value) -> anyhow::Result<serde_json::Value> {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build(),
    );
    let mut response = agent
        .post(url)
        .header("content-type", "application/json")
        .send(body.to_string())
        .with_context(|| format!("cannot reach {url}"))?;
    let ok = response.status().is_success();
    let answer: serde_json::Value = response.body_mut().read_json()?;
    if !ok {
        anyhow::bail!("{url}: {}", answer["error"].as_str().unwrap_or("failed"));
    }
    Ok(answer)
}
