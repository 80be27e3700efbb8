use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use driftline_lake::{Lake, Registry};
use driftline_log::{Durability, LogConfig};
use driftline_pipeline::lifecycle::{LifecycleConfig, ModelService};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Where the streams are stored.
    #[arg(long, default_value = "driftline-data")]
    data_dir: PathBuf,
    /// Address to listen on (port 0 picks a free port and prints it).
    #[arg(long, default_value = "127.0.0.1:4567")]
    listen: SocketAddr,
    /// When a write is acknowledged: "fsync" (on disk, the default) or "os" (written to the OS).
    #[arg(long, default_value = "fsync")]
    durability: Durability,
    /// Size at which a shard's segment file rolls.
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    segment_bytes: u64,
    /// Retention by size: the most bytes a shard keeps (default: by time only).
    #[arg(long)]
    max_shard_bytes: Option<u64>,
    /// The lake whose registry holds the models to serve.
    #[arg(long, default_value = "./lake")]
    lake: String,
    /// Serve this model's champion from the registry on /v1/models/NAME
    /// (repeatable); its predictions are logged to stream NAME-predictions.
    #[arg(long = "model")]
    models: Vec<String>,
    #[command(flatten)]
    security: crate::security::SecurityArgs,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = LogConfig {
        durability: args.durability,
        segment_bytes: args.segment_bytes,
        max_shard_bytes: args.max_shard_bytes,
        ..LogConfig::default()
    };
    let security = args.security.resolve(args.listen, None, &args.data_dir)?;
    let scheme = security.scheme();
    let state = driftline_server::open_state(&args.data_dir, config, security.keys)
        .with_context(|| format!("cannot open data directory {}", args.data_dir.display()))?;
    crate::listen::runtime()?.block_on(async move {
        for name in &args.models {
            let service = load_model(&state, &args.lake, name).await?;
            state.models.add(service);
        }
        let (listener, addr) = crate::listen::bind(args.listen).await?;
        println!(
            "driftline listening on {scheme}://{addr} (data in {}, durability {:?})",
            args.data_dir.display(),
            args.durability
        );
        for name in &args.models {
            if let Some(service) = state.models.get(name) {
                eprintln!(
                    "serving model {name} v{} on {scheme}://{addr}/v1/models/{name}/predict",
                    service.champion_version()
                );
            }
        }
        std::io::stdout().flush()?;
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        driftline_server::serve(state, listener, security.tls, shutdown).await?;
        Ok(())
    })
}

/// A model's champion from the lake's registry, ready to serve and learn.
async fn load_model(
    state: &driftline_server::AppState,
    lake: &str,
    name: &str,
) -> anyhow::Result<std::sync::Arc<ModelService>> {
    let registry = Registry::new(Lake::open(lake)?, name)?;
    let served = ModelService::load_champion(&registry)
        .await?
        .with_context(|| format!("model {name:?} has no champion in the registry of {lake}"))?;
    let n_classes = served
        .model
        .predict_proba_one(&vec![0.0; served.encoder.width()])
        .len();
    let store = &state.kinesis.store;
    let log = crate::assembly::streams::stream_or_create(store, &format!("{name}-predictions"), 1)?;
    let config = LifecycleConfig {
        learner: served.learner.clone(),
        ..LifecycleConfig::default()
    };
    Ok(ModelService::new(
        name,
        config,
        n_classes,
        registry,
        served,
        Some(log),
    ))
}
