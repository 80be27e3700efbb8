//! driftline's HTTP edge: the Kinesis API and the NDJSON ingest path over one
//! [`driftline_log::LogStore`].

pub mod auth;
pub mod ingest;
pub mod kinesis;
pub mod models;
pub mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use driftline_log::{LogConfig, LogStore, StreamWriter};

use kinesis::iterator::IteratorSigner;
use kinesis::KinesisState;

/// Requests larger than this are refused before they are read: a PutRecords of
/// 5 MiB grows by a third in base64, plus JSON overhead.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;
/// NDJSON bodies are raw: allow more lines per request.
pub const MAX_INGEST_BYTES: usize = 64 * 1024 * 1024;

pub struct AppState {
    pub kinesis: Arc<KinesisState>,
    /// The models served by the prediction API (none for a bare stream server).
    pub models: models::Models,
    /// Streams that live elsewhere (a pipeline's `kinesis://` streams), by
    /// their pipeline name: the NDJSON ingest writes to them there.
    pub remote_streams: std::sync::RwLock<HashMap<String, Arc<dyn StreamWriter>>>,
    /// The keys requests must prove; `None` lets every request through
    /// (loopback only: the CLI refuses other addresses without keys).
    pub auth: Option<auth::KeyRing>,
}

impl AppState {
    /// Where the NDJSON ingest of stream `name` writes.
    pub fn writer(&self, name: &str) -> Result<Arc<dyn StreamWriter>, driftline_log::LogError> {
        let remote = self
            .remote_streams
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .cloned();
        match remote {
            Some(writer) => Ok(writer),
            None => Ok(self.kinesis.store.stream(name)?),
        }
    }

    /// Makes the ingest of stream `name` write to `writer`.
    pub fn add_remote_stream(&self, name: &str, writer: Arc<dyn StreamWriter>) {
        self.remote_streams
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name.to_string(), writer);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Log(#[from] driftline_log::LogError),
    #[error("cannot use iterator key {path}: {source}")]
    Key {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Serve(std::io::Error),
}

/// Opens the store in `data_dir` and builds the application state.
pub fn open_state(
    data_dir: &std::path::Path,
    config: LogConfig,
    auth: Option<auth::KeyRing>,
) -> Result<Arc<AppState>, ServeError> {
    let store = Arc::new(LogStore::open(data_dir, config)?);
    let key_path = data_dir.join("iterator.key");
    let signer = IteratorSigner::load_or_create(&key_path).map_err(|source| ServeError::Key {
        path: key_path,
        source,
    })?;
    Ok(Arc::new(AppState {
        models: models::Models::default(),
        remote_streams: Default::default(),
        auth,
        kinesis: Arc::new(KinesisState {
            store,
            signer,
            region: "us-east-1".into(),
            account: "000000000000".into(),
        }),
    }))
}

pub fn router(state: Arc<AppState>) -> Router {
    use auth::native::{require, Need};
    use auth::Scope;
    use axum::middleware::from_fn_with_state;
    // A signed body is read (for its hash) up to the route's own limit.
    let need = |need: Need| from_fn_with_state((state.clone(), need, MAX_REQUEST_BYTES), require);
    let ingest_need =
        |need: Need| from_fn_with_state((state.clone(), need, MAX_INGEST_BYTES), require);
    // The Kinesis API checks its own signatures and scopes (AWS's error shape).
    let kinesis = Router::new()
        .route("/", post(kinesis::handle))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES));
    let ingest = Router::new()
        .route(
            "/v1/streams/{name}/records",
            post(ingest::ingest).route_layer(ingest_need(Need::Named(Scope::StreamsWrite))),
        )
        .layer(DefaultBodyLimit::max(MAX_INGEST_BYTES));
    let models = Router::new()
        .route(
            "/v1/models",
            get(models::list).route_layer(need(Need::Any(Scope::ModelsPredict))),
        )
        .route(
            "/v1/models/{name}",
            get(models::show).route_layer(need(Need::ModelState)),
        )
        .route(
            "/v1/models/{name}/predict",
            post(models::predict).route_layer(need(Need::Named(Scope::ModelsPredict))),
        )
        .route(
            "/v1/models/{name}/labels",
            post(models::labels).route_layer(need(Need::Named(Scope::ModelsLabel))),
        )
        .route(
            "/v1/models/{name}/promote",
            post(models::promote).route_layer(need(Need::Named(Scope::ModelsAdmin))),
        )
        .route(
            "/v1/models/{name}/rollback",
            post(models::rollback).route_layer(need(Need::Named(Scope::ModelsAdmin))),
        )
        .route("/ping", get(models::ping))
        .route(
            "/invocations",
            post(models::invocations).route_layer(need(Need::Invocations)),
        )
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES));
    kinesis
        .merge(ingest)
        .merge(models)
        .route("/health", get(|| async { "ok" }))
        .with_state(state)
}

/// Serves until `shutdown` resolves (over TLS when `tls` is given), applying
/// retention once a minute.
pub async fn serve(
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    tls: Option<tls::Tls>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let store = state.kinesis.store.clone();
    let retention = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            let store = store.clone();
            let outcome = tokio::task::spawn_blocking(move || {
                store.enforce_retention(driftline_log::now_ms())
            })
            .await;
            match outcome {
                Ok(Ok(removed)) if removed > 0 => {
                    tracing::info!(removed, "retention deleted expired segments")
                }
                Ok(Err(error)) => tracing::warn!(%error, "retention failed"),
                _ => {}
            }
        }
    });
    let app = router(state);
    let result = match tls {
        None => axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(ServeError::Serve),
        Some(tls) => {
            let listener = tls::TlsListener::new(listener, &tls).map_err(ServeError::Serve)?;
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
                .map_err(ServeError::Serve)
        }
    };
    retention.abort();
    result
}
