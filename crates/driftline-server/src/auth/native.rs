//! Auth on the native routes (NDJSON ingest, the models API, `/metrics`): a
//! route layer that authenticates the request (SigV4 or a bearer key), checks
//! the scope the route needs, and hands the [`Caller`] to the handler. 401
//! without valid credentials, 403 outside the key's scopes; both in the
//! native routes' JSON shape, `{"error": ...}`.

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::{RawPathParams, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::sigv4::{Rules, Signed};
use super::{authenticate, Caller, Denied, Failure, Scope};
use crate::AppState;

/// What a route needs of its caller.
#[derive(Clone, Copy, Debug)]
pub enum Need {
    /// The scope on the resource named by the route's `{name}`.
    Named(Scope),
    /// The scope on at least one resource (a listing).
    Any(Scope),
    /// Reading a model's state: any models scope on it.
    ModelState,
    /// `models:predict` on the model that `/invocations` serves.
    Invocations,
}

/// The route layer: `from_fn_with_state((state, need, body_limit), require)`;
/// a signed request's body is read (for its hash) up to `body_limit` bytes.
pub async fn require(
    State((state, need, body_limit)): State<(Arc<AppState>, Need, usize)>,
    params: RawPathParams,
    request: Request,
    next: Next,
) -> Response {
    let (request, caller) = match identify(&state, request, body_limit).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let name = params
        .iter()
        .find(|(key, _)| *key == "name")
        .map(|(_, value)| value.to_string());
    if let Err(denied) = check(&state, &caller, need, name.as_deref()) {
        return forbidden(&denied);
    }
    let mut request = request;
    request.extensions_mut().insert(caller);
    next.run(request).await
}

fn check(state: &AppState, caller: &Caller, need: Need, name: Option<&str>) -> Result<(), Denied> {
    match need {
        Need::Named(scope) => caller.check(scope, name.unwrap_or_default()),
        Need::Any(scope) if caller.holds(scope) => Ok(()),
        Need::Any(scope) => caller.check(scope, "*"),
        Need::ModelState => {
            let name = name.unwrap_or_default();
            let scopes = [Scope::ModelsPredict, Scope::ModelsLabel, Scope::ModelsAdmin];
            if scopes.iter().any(|s| caller.allows(*s, name)) {
                Ok(())
            } else {
                caller.check(Scope::ModelsPredict, name)
            }
        }
        Need::Invocations => {
            let model = state
                .models
                .invocations_model_name()
                .unwrap_or_else(|| "*".to_string());
            caller.check(Scope::ModelsPredict, &model)
        }
    }
}

/// The request (its body read back in when SigV4 needed it) and its caller.
async fn identify(
    state: &AppState,
    request: Request,
    body_limit: usize,
) -> Result<(Request, Caller), Response> {
    let Some(keys) = state.auth.as_ref() else {
        return Ok((request, Caller::Anyone));
    };
    let rules = Rules {
        service: None,
        must_sign: &[],
    };
    let signature = request
        .headers()
        .get("authorization")
        .filter(|v| v.as_bytes().starts_with(super::sigv4::ALGORITHM.as_bytes()))
        .filter(|v| v.len() <= super::MAX_AUTHORIZATION_BYTES)
        .and_then(|v| v.to_str().ok());
    // A stranger's body is never read: the header, its date and its key
    // are checked first.
    if let Some(authorization) = signature {
        super::sigv4::precheck(
            keys,
            authorization,
            request.headers(),
            &rules,
            SystemTime::now(),
        )
        .map_err(|failure| unauthorized(&failure))?;
    }
    let signed = signature.is_some();
    let (parts, body) = request.into_parts();
    // Only a signature covers the body; a bearer key leaves it unread.
    let (bytes, body) = if signed {
        let bytes = axum::body::to_bytes(body, body_limit).await.map_err(|e| {
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("cannot read the request body: {e}"),
            )
        })?;
        (bytes.clone(), Body::from(bytes))
    } else {
        (axum::body::Bytes::new(), body)
    };
    let outcome = {
        let signed_request = Signed {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query().unwrap_or_default(),
            headers: &parts.headers,
            body: &bytes,
        };
        authenticate(keys, &signed_request, &rules, true, SystemTime::now())
    };
    match outcome {
        Ok(key) => Ok((Request::from_parts(parts, body), Caller::Key(key))),
        Err(failure) => Err(unauthorized(&failure)),
    }
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

pub fn unauthorized(failure: &Failure) -> Response {
    tracing::info!(target: "driftline::audit", refused = %failure, "request refused: not authenticated");
    let mut response = error(StatusCode::UNAUTHORIZED, failure.to_string());
    response.headers_mut().insert(
        "www-authenticate",
        HeaderValue::from_static("Bearer realm=\"driftline\""),
    );
    response
}

pub fn forbidden(denied: &Denied) -> Response {
    tracing::info!(target: "driftline::audit", key = %denied.key_id, scope = %denied.scope, resource = %denied.resource, "request refused: scope missing");
    (
        StatusCode::FORBIDDEN,
        Json(json!({
            "error": denied.to_string(),
            "missing_scope": denied.scope.as_str(),
            "resource": denied.resource,
        })),
    )
        .into_response()
}
