//! The prediction API: `POST /v1/models/{name}/predict` (one event, or a
//! batch as `{"instances": [...]}` or an array), `POST /v1/models/{name}/labels`
//! (`{"request_id": ..., "label": ...}` or an array of them), `GET
//! /v1/models` and `GET /v1/models/{name}` (the registry and the live state),
//! and SageMaker's container routes `GET /ping` and `POST /invocations`
//! (served by the only model, or the one named by `DRIFTLINE_MODEL`).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use driftline_pipeline::lifecycle::{LifecycleError, ModelService, Prediction};
use serde_json::{json, Value};

use crate::auth::{Caller, Scope};
use crate::AppState;

/// The models this server serves, by name.
#[derive(Clone, Default)]
pub struct Models {
    services: Arc<RwLock<BTreeMap<String, Arc<ModelService>>>>,
}

impl Models {
    pub fn add(&self, service: Arc<ModelService>) {
        if let Ok(mut services) = self.services.write() {
            services.insert(service.name().to_string(), service);
        }
    }

    pub fn get(&self, name: &str) -> Option<Arc<ModelService>> {
        self.services.read().ok()?.get(name).cloned()
    }

    /// Every model served, by name.
    pub fn all(&self) -> Vec<Arc<ModelService>> {
        self.services
            .read()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default()
    }

    fn names(&self) -> Vec<String> {
        self.services
            .read()
            .map(|s| s.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The name of the model `/invocations` serves, if one does.
    pub fn invocations_model_name(&self) -> Option<String> {
        self.default_model().map(|s| s.name().to_string())
    }

    /// The model `/invocations` serves: `DRIFTLINE_MODEL`, or the only one.
    fn default_model(&self) -> Option<Arc<ModelService>> {
        if let Ok(name) = std::env::var("DRIFTLINE_MODEL") {
            return self.get(&name);
        }
        let services = self.services.read().ok()?;
        (services.len() == 1)
            .then(|| services.values().next().cloned())
            .flatten()
    }
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(json!({"error": message.to_string()}))).into_response()
}

fn not_found(name: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("no model named {name:?} is served"),
    )
}

// The error is the answer itself (axum's `Result<Response, Response>` idiom):
// it is built once per failed request, so its size does not matter.
/// The model `name` serves, or the 404 that says it does not.
#[allow(clippy::result_large_err)]
fn served(state: &AppState, name: &str) -> Result<Arc<ModelService>, Response> {
    state.models.get(name).ok_or_else(|| not_found(name))
}

/// A request's JSON body, or the 400 that says it is missing.
#[allow(clippy::result_large_err)]
fn json_body(body: Option<Json<Value>>) -> Result<Value, Response> {
    body.map(|Json(b)| b).ok_or_else(|| {
        error(
            StatusCode::BAD_REQUEST,
            "the body must be JSON (content-type: application/json)",
        )
    })
}

fn lifecycle_error(e: LifecycleError) -> Response {
    let status = match e {
        LifecycleError::NoChampion => StatusCode::SERVICE_UNAVAILABLE,
        LifecycleError::Encode(_) | LifecycleError::BadLabel { .. } => StatusCode::BAD_REQUEST,
        LifecycleError::Unmatched(_) => StatusCode::NOT_FOUND,
        LifecycleError::Lake(_) | LifecycleError::Artifact(_) | LifecycleError::Training(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    error(status, e)
}

/// The events of a request body: one object, `{"instances": [...]}` or an
/// array; the flag says whether it was a batch. `Err` is what was wrong.
fn instances(body: Value) -> Result<(Vec<Value>, bool), String> {
    match body {
        Value::Array(items) => Ok((items, true)),
        Value::Object(mut map) if map.contains_key("instances") => match map.remove("instances") {
            Some(Value::Array(items)) => Ok((items, true)),
            _ => Err("\"instances\" must be an array of events".into()),
        },
        Value::Object(map) => Ok((vec![Value::Object(map)], false)),
        other => Err(format!(
            "expected an event object, an array of them or {{\"instances\": [...]}}, got {other}"
        )),
    }
}

fn predict_with(service: &Arc<ModelService>, body: Value) -> Response {
    let (events, batch) = match instances(body) {
        Ok(parsed) => parsed,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let mut predictions = Vec::with_capacity(events.len());
    for (i, event) in events.iter().enumerate() {
        match service.predict(event) {
            Ok(p) => predictions.push(p),
            Err(e) if batch => {
                return error(StatusCode::BAD_REQUEST, format!("instance {i}: {e}"));
            }
            Err(e) => return lifecycle_error(e),
        }
    }
    // Serialized from the predictions themselves, without a JSON tree.
    #[derive(serde::Serialize)]
    struct Batch<'a> {
        model: &'a str,
        predictions: &'a [Prediction],
    }
    #[derive(serde::Serialize)]
    struct One<'a> {
        model: &'a str,
        #[serde(flatten)]
        prediction: &'a Prediction,
    }
    if batch {
        Json(Batch {
            model: service.name(),
            predictions: &predictions,
        })
        .into_response()
    } else {
        Json(One {
            model: service.name(),
            prediction: &predictions[0],
        })
        .into_response()
    }
}

pub async fn predict(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Option<Json<Value>>,
) -> Result<Response, Response> {
    let service = served(&state, &name)?;
    Ok(predict_with(&service, json_body(body)?))
}

pub async fn labels(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Option<Json<Value>>,
) -> Result<Response, Response> {
    let service = served(&state, &name)?;
    let items = match json_body(body)? {
        Value::Array(items) => items,
        one @ Value::Object(_) => vec![one],
        other => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                format!("expected a label object or an array, got {other}"),
            ))
        }
    };
    let (mut joined, mut unmatched) = (0, Vec::new());
    for (i, item) in items.iter().enumerate() {
        let (Some(id), Some(label)) = (
            item["request_id"].as_str(),
            driftline_pipeline::labels::label_of(&item["label"]),
        ) else {
            return Err(error(
                StatusCode::BAD_REQUEST,
                format!("label {i}: needs \"request_id\" (a string) and \"label\" (a class number or a boolean), got {item}"),
            ));
        };
        match service.label(id, label) {
            Ok(_) => joined += 1,
            Err(LifecycleError::Unmatched(id)) => unmatched.push(id),
            Err(e) => return Err(lifecycle_error(e)),
        }
    }
    Ok(Json(json!({"model": name, "joined": joined, "unmatched": unmatched})).into_response())
}

/// The models served, those the caller may use only.
pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Option<Extension<Caller>>,
) -> Response {
    let visible = |name: &String| {
        caller.as_ref().is_none_or(|Extension(c)| {
            [Scope::ModelsPredict, Scope::ModelsLabel, Scope::ModelsAdmin]
                .iter()
                .any(|s| c.allows(*s, name))
        })
    };
    let names: Vec<String> = state.models.names().into_iter().filter(visible).collect();
    Json(json!({"models": names})).into_response()
}

pub async fn show(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Response, Response> {
    let service = served(&state, &name)?;
    let versions = service
        .registry()
        .versions()
        .await
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    Ok(Json(json!({
        "model": name,
        "champion": service.champion_version(),
        "live_accuracy": service.live_accuracy(),
        "counters": service.counters(),
        "versions": versions,
    }))
    .into_response())
}

/// SageMaker's health check: 200 once a model serves.
pub async fn ping(State(state): State<Arc<AppState>>) -> Response {
    match state.models.default_model() {
        Some(_) => StatusCode::OK.into_response(),
        None => error(StatusCode::SERVICE_UNAVAILABLE, "no model is loaded"),
    }
}

/// SageMaker's inference route.
pub async fn invocations(
    State(state): State<Arc<AppState>>,
    body: Option<Json<Value>>,
) -> Response {
    let Some(service) = state.models.default_model() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no model is loaded (set DRIFTLINE_MODEL when several are)",
        );
    };
    match json_body(body) {
        Ok(body) => predict_with(&service, body),
        Err(response) => response,
    }
}

/// `POST /v1/models/{name}/promote` with `{"version": N, "reason": "..."}`.
pub async fn promote(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    caller: Option<Extension<Caller>>,
    body: Option<Json<Value>>,
) -> Result<Response, Response> {
    let service = served(&state, &name)?;
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let Some(version) = body["version"].as_u64() else {
        return Err(error(StatusCode::BAD_REQUEST, "needs {\"version\": N}"));
    };
    let reason = body["reason"].as_str().unwrap_or("promoted by hand");
    let by = caller.as_ref().and_then(|Extension(c)| c.key_id());
    match service.promote(version, reason, by).await {
        Ok(()) => {
            audit("promote", &name, version, by, reason);
            Ok(Json(json!({"model": name, "champion": version})).into_response())
        }
        Err(e) => Err(error(StatusCode::BAD_REQUEST, e)),
    }
}

/// `POST /v1/models/{name}/rollback`: the previous champion serves again.
pub async fn rollback(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    caller: Option<Extension<Caller>>,
    body: Option<Json<Value>>,
) -> Result<Response, Response> {
    let service = served(&state, &name)?;
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let reason = body["reason"].as_str().unwrap_or("rolled back by hand");
    let by = caller.as_ref().and_then(|Extension(c)| c.key_id());
    match service.rollback(reason, by).await {
        Ok(version) => {
            audit("rollback", &name, version, by, reason);
            Ok(Json(json!({"model": name, "champion": version})).into_response())
        }
        Err(e) => Err(error(StatusCode::BAD_REQUEST, e)),
    }
}

/// Admin actions on models, with the key that asked, in the audit log.
fn audit(action: &str, model: &str, champion: u64, by: Option<&str>, reason: &str) {
    tracing::info!(
        target: "driftline::audit",
        key = by.unwrap_or("-"),
        action,
        model,
        champion,
        reason,
        "model administered"
    );
}
