use serde_json::{json, Value};

use crate::client::{Client, EndpointArgs};

#[derive(clap::Subcommand)]
pub enum StreamCommand {
    /// Create a stream.
    Create {
        name: String,
        /// Number of shards (provisioned mode).
        #[arg(long, default_value_t = 4)]
        shards: u32,
        #[command(flatten)]
        endpoint: EndpointArgs,
    },
    /// List the streams.
    List {
        #[command(flatten)]
        endpoint: EndpointArgs,
    },
    /// Show a stream's shards and settings (JSON).
    Describe {
        name: String,
        #[command(flatten)]
        endpoint: EndpointArgs,
    },
    /// Delete a stream and its data.
    Delete {
        name: String,
        #[command(flatten)]
        endpoint: EndpointArgs,
    },
}

pub fn run(command: StreamCommand) -> anyhow::Result<()> {
    match command {
        StreamCommand::Create {
            name,
            shards,
            endpoint,
        } => {
            Client::new(&endpoint)?.kinesis(
                "CreateStream",
                json!({"StreamName": name, "ShardCount": shards}),
            )?;
            println!("created stream {name} with {shards} shards");
        }
        StreamCommand::List { endpoint } => {
            let client = Client::new(&endpoint)?;
            let mut start: Option<String> = None;
            loop {
                let mut request = json!({"Limit": 1000});
                if let Some(after) = &start {
                    request["ExclusiveStartStreamName"] = json!(after);
                }
                let page = client.kinesis("ListStreams", request)?;
                let names: Vec<String> = page["StreamNames"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|n| n.as_str().map(str::to_string))
                    .collect();
                for name in &names {
                    println!("{name}");
                }
                if page["HasMoreStreams"] != Value::Bool(true) || names.is_empty() {
                    break;
                }
                start = names.last().cloned();
            }
        }
        StreamCommand::Describe { name, endpoint } => {
            let client = Client::new(&endpoint)?;
            let summary = client.kinesis("DescribeStreamSummary", json!({"StreamName": name}))?;
            let shards = client.kinesis("ListShards", json!({"StreamName": name}))?;
            let mut out = summary["StreamDescriptionSummary"].clone();
            out["Shards"] = shards["Shards"].clone();
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        StreamCommand::Delete { name, endpoint } => {
            Client::new(&endpoint)?.kinesis("DeleteStream", json!({"StreamName": name}))?;
            println!("deleted stream {name}");
        }
    }
    Ok(())
}
