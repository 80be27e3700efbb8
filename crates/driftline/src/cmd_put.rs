use std::io::BufRead;

use anyhow::Context;

use crate::client::{Client, EndpointArgs};

#[derive(clap::Args)]
pub struct PutArgs {
    /// The stream to write to.
    stream: String,
    /// Top-level field whose value is the partition key (random when absent).
    #[arg(long)]
    partition_key: Option<String>,
    /// Lines per request.
    #[arg(long, default_value_t = 10_000)]
    batch_lines: usize,
    #[command(flatten)]
    endpoint: EndpointArgs,
}

const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;

pub fn run(args: PutArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.endpoint)?;
    let stdin = std::io::stdin().lock();
    let (mut written, mut rejected, mut failed) = (0u64, 0u64, 0u64);
    let mut batch = Vec::new();
    let mut lines = 0usize;
    let mut line_base = 0usize;
    let mut send = |batch: &mut Vec<u8>, line_base: usize| -> anyhow::Result<()> {
        let answer = client.ingest(
            &args.stream,
            args.partition_key.as_deref(),
            std::mem::take(batch),
        )?;
        written += answer["records"].as_u64().unwrap_or(0);
        rejected += answer["rejected"].as_u64().unwrap_or(0);
        failed += answer["failed"].as_u64().unwrap_or(0);
        for error in answer["errors"].as_array().into_iter().flatten() {
            let line = error["line"].as_u64().unwrap_or(0) as usize;
            let reason = error["error"].as_str().unwrap_or_default();
            if line > 0 {
                eprintln!("line {}: {reason}", line_base + line);
            } else {
                eprintln!("{reason}");
            }
        }
        Ok(())
    };
    for line in stdin.split(b'\n') {
        let line = line.context("cannot read standard input")?;
        batch.extend_from_slice(&line);
        batch.push(b'\n');
        lines += 1;
        if lines >= args.batch_lines || batch.len() >= MAX_BATCH_BYTES {
            send(&mut batch, line_base)?;
            line_base += lines;
            lines = 0;
        }
    }
    if !batch.is_empty() {
        send(&mut batch, line_base)?;
    }
    eprintln!(
        "wrote {written} records to {} ({rejected} rejected, {failed} failed)",
        args.stream
    );
    if rejected > 0 || failed > 0 {
        anyhow::bail!("{} lines were not written", rejected + failed);
    }
    Ok(())
}
