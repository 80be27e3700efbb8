//! TLS through rustls: a certificate and key from PEM files, or one made at
//! start for development, and a listener that hands axum connections whose
//! handshake has finished. Handshakes run in tasks of their own, bounded in
//! time and number, so that a slow or silent client holds up no one else.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How long a client may take over its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Handshakes under way at once (each a small task); further connections
/// wait to be accepted.
const MAX_HANDSHAKES: usize = 1024;
/// Finished handshakes waiting for the server to take them.
const READY_QUEUE: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} from {path}: {message}")]
    Pem {
        what: &'static str,
        path: String,
        message: String,
    },
    #[error("{path} holds no {what}")]
    Empty { what: &'static str, path: String },
    #[error("the certificate and key do not make a TLS configuration: {0}")]
    Config(String),
    #[error("cannot make a self-signed certificate: {0}")]
    SelfSigned(String),
}

/// A server's TLS configuration and the certificate it presents.
#[derive(Clone)]
pub struct Tls {
    pub config: Arc<ServerConfig>,
    /// The leaf certificate, DER.
    pub certificate: CertificateDer<'static>,
}

impl Tls {
    /// From PEM files: the certificate chain, leaf first, and its private key
    /// (both may be in one file).
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Tls, TlsError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|e| TlsError::Pem {
                what: "PEM",
                path: path.display().to_string(),
                message: e.to_string(),
            })
        };
        Tls::from_pem(
            &read(cert)?,
            &cert.display().to_string(),
            &read(key)?,
            &key.display().to_string(),
        )
    }

    /// From PEM text; the origins name it in errors.
    pub fn from_pem(
        cert: &[u8],
        cert_origin: &str,
        key: &[u8],
        key_origin: &str,
    ) -> Result<Tls, TlsError> {
        let pem_error = |what, path: &str, e: rustls_pki_types::pem::Error| TlsError::Pem {
            what,
            path: path.to_string(),
            message: e.to_string(),
        };
        let chain = CertificateDer::pem_slice_iter(cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_error("certificates", cert_origin, e))?;
        let Some(leaf) = chain.first().cloned() else {
            return Err(TlsError::Empty {
                what: "certificate",
                path: cert_origin.to_string(),
            });
        };
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| match e {
            rustls_pki_types::pem::Error::NoItemsFound => TlsError::Empty {
                what: "private key",
                path: key_origin.to_string(),
            },
            other => pem_error("a private key", key_origin, other),
        })?;
        Tls::build(chain, key, leaf)
    }

    /// A certificate made now for `names` (DNS names or IP addresses), with a
    /// key that lives only in this process; and the certificate's PEM, for
    /// clients to trust (`--ca`).
    pub fn self_signed(names: Vec<String>) -> Result<(Tls, String), TlsError> {
        let made = rcgen::generate_simple_self_signed(names)
            .map_err(|e| TlsError::SelfSigned(e.to_string()))?;
        let leaf = made.cert.der().clone();
        let key = PrivateKeyDer::try_from(made.signing_key.serialize_der())
            .map_err(|e| TlsError::SelfSigned(e.to_string()))?;
        let tls = Tls::build(vec![leaf.clone()], key, leaf)?;
        Ok((tls, made.cert.pem()))
    }

    fn build(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        certificate: CertificateDer<'static>,
    ) -> Result<Tls, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            config: Arc::new(config),
            certificate,
        })
    }

    /// SHA-256 of the certificate, as `openssl x509 -fingerprint -sha256` prints it.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.certificate)
    }
}

pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Accepts TCP connections and hands over those whose TLS handshake finished.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    acceptor_task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(listener: TcpListener, tls: &Tls) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let acceptor = TlsAcceptor::from(tls.config.clone());
        let (sender, ready) = mpsc::channel(READY_QUEUE);
        let acceptor_task = tokio::spawn(accept_loop(listener, acceptor, sender));
        Ok(TlsListener {
            ready,
            local,
            acceptor_task,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor_task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: wait, as axum does.
                tracing::debug!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = ready.send((tls, peer)).await;
                }
                Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept loop ended (it never does while the runtime runs).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_certificate_reads_back_from_its_pem() {
        let (tls, pem) =
            Tls::self_signed(vec!["localhost".into(), "127.0.0.1".into()]).expect("valid");
        let again = CertificateDer::from_pem_slice(pem.as_bytes()).expect("valid");
        assert_eq!(again, tls.certificate);
        let fp = tls.fingerprint();
        assert_eq!(fp.len(), 32 * 3 - 1);
        assert_eq!(fp, fingerprint(&again));
    }

    #[test]
    fn a_certificate_and_key_in_one_pem_file_load() {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("made");
        let dir = tempfile::tempdir().expect("dir");
        let pem = dir.path().join("both.pem");
        std::fs::write(
            &pem,
            format!("{}{}", made.cert.pem(), made.signing_key.serialize_pem()),
        )
        .expect("write");
        let tls = Tls::from_pem_files(&pem, &pem).expect("loads");
        assert_eq!(tls.certificate.as_ref(), made.cert.der().as_ref());
    }

    #[test]
    fn missing_or_empty_pem_files_are_named() {
        let dir = tempfile::tempdir().expect("valid");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a pem\n").expect("valid");
        let error = Tls::from_pem_files(&empty, &empty)
            .err()
            .expect("valid")
            .to_string();
        assert!(error.contains("empty.pem"), "{error}");
        let missing = dir.path().join("missing.pem");
        let error = Tls::from_pem_files(&missing, &missing)
            .err()
            .expect("valid")
            .to_string();
        assert!(error.contains("missing.pem"), "{error}");

        let (_, pem) = Tls::self_signed(vec!["localhost".into()]).expect("valid");
        let cert = dir.path().join("cert.pem");
        std::fs::write(&cert, &pem).expect("valid");
        let error = Tls::from_pem_files(&cert, &cert)
            .err()
            .expect("refused")
            .to_string();
        assert!(error.contains("private key"), "{error}");
    }
}
