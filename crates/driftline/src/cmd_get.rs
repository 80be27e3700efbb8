use std::io::Write;

use anyhow::Context;
use base64::Engine;
use serde_json::{json, Value};

use crate::client::{Client, EndpointArgs};

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum From {
    TrimHorizon,
    Latest,
}

#[derive(clap::Args)]
pub struct GetArgs {
    /// The stream to read.
    stream: String,
    /// Where to start in each shard.
    #[arg(long, value_enum, default_value = "trim-horizon")]
    from: From,
    /// Keep reading as new records arrive (until interrupted).
    #[arg(long)]
    follow: bool,
    /// Print every record with its shard, sequence number, key and time,
    /// rather than its data alone.
    #[arg(long)]
    envelope: bool,
    #[command(flatten)]
    endpoint: EndpointArgs,
}

pub fn run(args: GetArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.endpoint)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    // Shard index order puts parents before their children.
    let shards = client.kinesis("ListShards", json!({"StreamName": args.stream}))?;
    let mut iterators: Vec<(String, Option<String>)> = Vec::new();
    let kind = match args.from {
        From::TrimHorizon => "TRIM_HORIZON",
        From::Latest => "LATEST",
    };
    for shard in shards["Shards"].as_array().into_iter().flatten() {
        let shard_id = shard["ShardId"].as_str().unwrap_or_default().to_string();
        let iterator = client.kinesis(
            "GetShardIterator",
            json!({"StreamName": args.stream, "ShardId": shard_id, "ShardIteratorType": kind}),
        )?;
        iterators.push((
            shard_id,
            iterator["ShardIterator"].as_str().map(str::to_string),
        ));
    }
    loop {
        let mut any = false;
        let mut new_children = Vec::new();
        for (shard_id, iterator) in iterators.iter_mut() {
            while let Some(current) = iterator.clone() {
                let page = client.kinesis("GetRecords", json!({"ShardIterator": current}))?;
                let records = page["Records"].as_array().cloned().unwrap_or_default();
                for record in &records {
                    print_record(&mut out, shard_id, record, args.envelope)?;
                }
                any |= !records.is_empty();
                *iterator = page["NextShardIterator"].as_str().map(str::to_string);
                if iterator.is_none() {
                    for child in page["ChildShards"].as_array().into_iter().flatten() {
                        new_children
                            .push(child["ShardId"].as_str().unwrap_or_default().to_string());
                    }
                }
                if records.is_empty() || page["MillisBehindLatest"].as_i64() == Some(0) {
                    break;
                }
            }
        }
        for child in new_children {
            if iterators.iter().any(|(id, _)| *id == child) {
                continue;
            }
            let iterator = client.kinesis(
                "GetShardIterator",
                json!({"StreamName": args.stream, "ShardId": child, "ShardIteratorType": "TRIM_HORIZON"}),
            )?;
            iterators.push((
                child,
                iterator["ShardIterator"].as_str().map(str::to_string),
            ));
        }
        out.flush()?;
        if !args.follow && !any {
            return Ok(());
        }
        if args.follow && !any {
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}

fn print_record(
    out: &mut impl Write,
    shard_id: &str,
    record: &Value,
    envelope: bool,
) -> anyhow::Result<()> {
    let data = base64::engine::general_purpose::STANDARD
        .decode(record["Data"].as_str().unwrap_or_default())
        .context("the server sent a record whose Data is not base64")?;
    let is_json_line =
        !data.contains(&b'\n') && serde_json::from_slice::<serde::de::IgnoredAny>(&data).is_ok();
    if !envelope && is_json_line {
        out.write_all(&data)?;
        out.write_all(b"\n")?;
        return Ok(());
    }
    let data_field = if is_json_line {
        ("data", serde_json::from_slice::<Value>(&data)?)
    } else {
        (
            "data_base64",
            Value::String(base64::engine::general_purpose::STANDARD.encode(&data)),
        )
    };
    let mut line = json!({
        "shard_id": shard_id,
        "sequence_number": record["SequenceNumber"],
        "partition_key": record["PartitionKey"],
        "arrival_timestamp": record["ApproximateArrivalTimestamp"],
    });
    line[data_field.0] = data_field.1;
    writeln!(out, "{line}")?;
    Ok(())
}
