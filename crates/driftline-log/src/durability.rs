use serde::{Deserialize, Serialize};

/// When an append is acknowledged, as data rather than code paths.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// Acknowledge only once the frame is fsynced. Concurrent appends to a
    /// shard share one fsync (group commit). Survives power loss.
    #[default]
    Fsync,
    /// Acknowledge once the frame is written to the OS; flushing is left to the
    /// kernel. Survives a crash of the process, not of the machine.
    Os,
}

impl std::str::FromStr for Durability {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "fsync" | "durable" => Ok(Durability::Fsync),
            "os" | "fast" => Ok(Durability::Os),
            other => Err(format!(
                "durability {other:?} is not one of \"fsync\" (the default) or \"os\""
            )),
        }
    }
}
