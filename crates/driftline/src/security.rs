//! The options that protect a server (`--auth`, `--tls-*`,
//! `--insecure-no-auth`) and the rule that no one listens beyond loopback
//! without keys.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{bail, Context};
use driftline_server::auth::KeyRing;
use driftline_server::tls::Tls;

#[derive(clap::Args, Clone, Default)]
pub struct SecurityArgs {
    /// Access keys every request must prove: a credentials file readable by
    /// its owner only (see `driftline auth new-key`), or `env:VAR` for its text.
    #[arg(long, value_name = "FILE")]
    pub auth: Option<String>,
    /// Listen beyond loopback without keys: every route is open to whoever
    /// reaches the port. Logged as a warning at every start.
    #[arg(long)]
    pub insecure_no_auth: bool,
    /// Serve over TLS with this certificate chain (PEM, leaf first; or
    /// `env:VAR` for the PEM text, as a container's secret arrives).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<String>,
    /// The private key of --tls-cert (PEM file or `env:VAR`; may be the same
    /// as --tls-cert when one PEM holds both).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<String>,
    /// Serve over TLS with a certificate made at start, for development: its
    /// SHA-256 fingerprint is printed and its PEM written beside the data.
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key"])]
    pub tls_self_signed: bool,
}

/// What a server starts with.
pub struct Security {
    pub keys: Option<KeyRing>,
    pub tls: Option<Tls>,
}

impl Security {
    /// `http` or `https`, for the addresses printed.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

impl SecurityArgs {
    /// Loads keys and certificates, and refuses a listen address beyond
    /// loopback without keys. `declared` is a pipeline's `[auth] keys`;
    /// `--auth` wins over it. A self-signed certificate's PEM goes in `pem_dir`.
    pub fn resolve(
        &self,
        listen: SocketAddr,
        declared: Option<String>,
        pem_dir: &Path,
    ) -> anyhow::Result<Security> {
        let source = self.auth.clone().or(declared);
        let keys = match &source {
            Some(source) => Some(KeyRing::load(source)?),
            None => None,
        };
        if keys.is_none() && !listen.ip().is_loopback() {
            if !self.insecure_no_auth {
                bail!(
                    "refusing to listen on {listen} without keys: anyone who reaches it could write streams and promote or roll back models. \
                     Give --auth FILE (make one with `driftline auth new-key --scope ... --file FILE`), \
                     listen on 127.0.0.1, or pass --insecure-no-auth to accept the risk"
                );
            }
            tracing::warn!(%listen, "--insecure-no-auth: listening beyond loopback with every route open to anyone");
            eprintln!("WARNING: --insecure-no-auth: {listen} is open to anyone who reaches it, without keys");
        }
        if keys.is_some()
            && !listen.ip().is_loopback()
            && self.tls_cert.is_none()
            && !self.tls_self_signed
        {
            // Signatures hide secrets, but bearer keys and data would cross the network in clear.
            eprintln!("WARNING: {listen} without TLS: bearer keys and records cross the network unencrypted (--tls-cert/--tls-key)");
        }
        if let Some(keys) = &keys {
            eprintln!(
                "auth: {} access key{} from {}",
                keys.len(),
                if keys.len() == 1 { "" } else { "s" },
                source.as_deref().unwrap_or_default()
            );
        }
        let tls = if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            let tls = Tls::from_pem(&pem_text(cert)?, cert, &pem_text(key)?, key)?;
            eprintln!("TLS: certificate {cert} (SHA-256 {})", tls.fingerprint());
            Some(tls)
        } else if self.tls_self_signed {
            let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
            if !listen.ip().is_unspecified() && !listen.ip().is_loopback() {
                names.push(listen.ip().to_string());
            }
            let (tls, pem) = Tls::self_signed(names)?;
            std::fs::create_dir_all(pem_dir)
                .with_context(|| format!("cannot create {}", pem_dir.display()))?;
            let pem_path = pem_dir.join("self-signed-cert.pem");
            std::fs::write(&pem_path, pem)
                .with_context(|| format!("cannot write {}", pem_path.display()))?;
            println!(
                "TLS: self-signed certificate SHA-256 {} (its PEM, for clients' --ca: {})",
                tls.fingerprint(),
                pem_path.display()
            );
            Some(tls)
        } else {
            None
        };
        Ok(Security { keys, tls })
    }
}

/// A PEM file's bytes, or with `env:VAR` the text of that variable.
fn pem_text(source: &str) -> anyhow::Result<Vec<u8>> {
    match source.strip_prefix("env:") {
        Some(var) => std::env::var(var)
            .map(String::into_bytes)
            .with_context(|| format!("environment variable {var} (the TLS PEM) is not set")),
        None => std::fs::read(source).with_context(|| format!("cannot read {source}")),
    }
}
