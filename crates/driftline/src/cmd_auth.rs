//! `driftline auth new-key`: an access key with a random secret, appended to
//! a credentials file (made readable by its owner only) or printed.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use driftline_server::auth::keys::key_toml;
use driftline_server::auth::{AccessKey, Grant, KeyRing};
use rand::Rng;

#[derive(clap::Subcommand)]
pub enum AuthCommand {
    /// Makes an access key with a random secret.
    NewKey(NewKeyArgs),
}

#[derive(clap::Args)]
pub struct NewKeyArgs {
    /// A scope the key holds, optionally on some resources:
    /// `streams:write`, `streams:read:events,clicks-*`, `models:admin:fraud`
    /// (streams:read|write|admin, models:predict|label|admin, metrics:read); repeatable.
    #[arg(long = "scope", required = true)]
    scopes: Vec<String>,
    /// Append the key to this credentials file (created with mode 600);
    /// without it, the key is printed.
    #[arg(long)]
    file: Option<PathBuf>,
    /// The key's id (default: a random one).
    #[arg(long)]
    id: Option<String>,
}

const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const UPPER_AND_DIGITS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

fn random_text(alphabet: &[u8], len: usize) -> String {
    // ThreadRng is a CSPRNG seeded from the OS.
    let mut rng = rand::rng();
    (0..len)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
        .collect()
}

pub fn run(command: AuthCommand) -> anyhow::Result<()> {
    match command {
        AuthCommand::NewKey(args) => new_key(args),
    }
}

fn new_key(args: NewKeyArgs) -> anyhow::Result<()> {
    let grants = args
        .scopes
        .iter()
        .map(|s| Grant::parse(s).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let id = args
        .id
        .unwrap_or_else(|| format!("DLK{}", random_text(UPPER_AND_DIGITS, 17)));
    let key =
        AccessKey::new(&id, &random_text(ALPHANUMERIC, 40), grants).map_err(anyhow::Error::msg)?;
    let text = key_toml(&key);
    let Some(path) = args.file else {
        print!("{text}");
        return Ok(());
    };
    let existing = match std::fs::read_to_string(&path) {
        Ok(existing) if existing.trim().is_empty() => existing,
        Ok(existing) => {
            // Checked as a server would read it: private, valid, no id twice.
            let ring = KeyRing::load(&path.display().to_string())?;
            anyhow::ensure!(
                ring.get(&id).is_none(),
                "{} already holds a key {id}",
                path.display()
            );
            existing
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut options = std::fs::OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    let separator = if existing.is_empty() || existing.ends_with("\n\n") {
        ""
    } else if existing.ends_with('\n') {
        "\n"
    } else {
        "\n\n"
    };
    file.write_all(format!("{separator}{text}").as_bytes())?;
    file.sync_all()?;
    println!("key {id} added to {}", path.display());
    println!("clients: export DRIFTLINE_ACCESS_KEY_ID={id} and DRIFTLINE_SECRET_ACCESS_KEY from the file");
    Ok(())
}
