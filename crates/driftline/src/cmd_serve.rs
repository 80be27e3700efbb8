use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use driftline_log::{Durability, LogConfig};

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
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = LogConfig {
        durability: args.durability,
        segment_bytes: args.segment_bytes,
        max_shard_bytes: args.max_shard_bytes,
        ..LogConfig::default()
    };
    let state = driftline_server::open_state(&args.data_dir, config)
        .with_context(|| format!("cannot open data directory {}", args.data_dir.display()))?;
    crate::listen::runtime()?.block_on(async move {
        let (listener, addr) = crate::listen::bind(args.listen).await?;
        println!(
            "driftline listening on http://{addr} (data in {}, durability {:?})",
            args.data_dir.display(),
            args.durability
        );
        std::io::stdout().flush()?;
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        driftline_server::serve(state, listener, shutdown).await?;
        Ok(())
    })
}
