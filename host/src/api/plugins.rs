//! Plugins as managed artifacts (operator token); see [`crate::artifacts`].
//!
//! Routes:
//!
//! - `PUT /v1/plugins/{name}/{version}` — body: the component's bytes (at most
//!   [`MAX_COMPONENT_BYTES`]). Checked as `weft plugin check` does (`422 invalid_component`
//!   with the reason) and compiled, then stored by content hash: `201` with the record and
//!   the component's report; `200` when the version already holds these bytes; `409
//!   version_taken` when it holds others (versions are immutable);
//! - `GET /v1/plugins` — every version: `{"plugins": [{name, version, hash, size,
//!   uploaded_at, used_by}]}`;
//! - `GET /v1/plugins/{name}/{version}` — one version, with `used_by` (the installations
//!   whose spec names it);
//! - `DELETE /v1/plugins/{name}/{version}` — `204`; `409 in_use` while an installation's
//!   spec names it.
//!
//! An installation uses a version with `"plugin": {"artifact": "name@version"}`; changing
//! that key with `PATCH` swaps the plugin at the installation's next batch.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use jiff::Timestamp;
use serde_json::json;

use super::ApiState;
use super::auth::operator_access;
use super::intake::{error, error_chain};
use crate::artifacts::{
    ArtifactError, ArtifactRecord, ArtifactRef, MAX_COMPONENT_BYTES, Uploaded, used_by,
};
use crate::runtime::Supervisor;

pub(super) fn routes(state: Arc<ApiState>) -> Router<Arc<ApiState>> {
    Router::new()
        .route("/v1/plugins", get(list))
        .route(
            "/v1/plugins/{name}/{version}",
            put(upload).get(show).delete(remove),
        )
        .route_layer(middleware::from_fn_with_state(state, operator_access))
}

/// Why a plugin request was answered with an error.
enum Failure {
    /// Boxed: a response is large, and every handler's `Result` carries this.
    Response(Box<Response>),
    Artifact(ArtifactError),
}

impl Failure {
    fn answer(status: StatusCode, code: &str, message: String) -> Failure {
        Failure::Response(Box::new(error(status, code, message)))
    }
}

impl From<ArtifactError> for Failure {
    fn from(e: ArtifactError) -> Self {
        Failure::Artifact(e)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let e = match self {
            Failure::Response(r) => return *r,
            Failure::Artifact(e) => e,
        };
        let message = e.to_string();
        match e {
            ArtifactError::NotFound(reference) => not_found(&reference),
            ArtifactError::VersionTaken { .. } => {
                error(StatusCode::CONFLICT, "version_taken", message)
            }
            ArtifactError::InUse { used_by, .. } => (
                StatusCode::CONFLICT,
                axum::Json(json!({"error": "in_use", "message": message, "used_by": used_by})),
            )
                .into_response(),
            ArtifactError::BytesMissing { .. }
            | ArtifactError::Unreadable { .. }
            | ArtifactError::Store(_) => {
                tracing::error!(error = %message, "plugin catalog");
                error(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
            }
        }
    }
}

fn not_found(reference: &ArtifactRef) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "unknown_plugin",
        format!("plugin {reference} was not uploaded to this host"),
    )
}

fn managed(state: &ApiState) -> Result<Arc<Supervisor>, Failure> {
    state.supervisor.clone().ok_or_else(|| {
        Failure::answer(
            StatusCode::NOT_FOUND,
            "not_managed",
            "this host's installations are fixed at start-up".into(),
        )
    })
}

fn reference(name: &str, version: &str) -> Result<ArtifactRef, Failure> {
    ArtifactRef::new(name, version)
        .map_err(|e| Failure::answer(StatusCode::BAD_REQUEST, "invalid_reference", e.to_string()))
}

/// Runs catalog work off the async threads (it reads and writes the store).
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Failure> + Send + 'static,
) -> Result<T, Failure> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|join| {
            Err(Failure::answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                join.to_string(),
            ))
        })
}

/// Which installations name each version, from the registry's specs.
fn usage(supervisor: &Supervisor) -> Result<BTreeMap<String, Vec<String>>, Failure> {
    let records = supervisor.registry().list().map_err(|e| {
        Failure::answer(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
    })?;
    let records: Vec<_> = records.into_iter().filter_map(Result::ok).collect();
    Ok(used_by(records.iter().map(|r| (r.id.as_str(), &r.spec))))
}

fn view(record: &ArtifactRecord, usage: &BTreeMap<String, Vec<String>>) -> serde_json::Value {
    let mut v = json!(record);
    v["used_by"] = json!(usage.get(&record.reference()).cloned().unwrap_or_default());
    v
}

async fn upload(
    State(state): State<Arc<ApiState>>,
    Path((name, version)): Path<(String, String)>,
    body: Body,
) -> Result<Response, Failure> {
    // The body is read before anything is judged: answering early would leave it unread
    // on a keep-alive connection the client may send its next request on.
    let wasm = match axum::body::to_bytes(body, MAX_COMPONENT_BYTES).await {
        Ok(bytes) => bytes,
        Err(e) if super::conn::is_body_timeout(&e) => {
            return Err(Failure::answer(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                error_chain(&e),
            ));
        }
        Err(e) => {
            return Err(Failure::answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "a component is at most {MAX_COMPONENT_BYTES} bytes ({})",
                    error_chain(&e)
                ),
            ));
        }
    };
    let supervisor = managed(&state)?;
    let reference = reference(&name, &version)?;
    let (uploaded, record, report) = blocking(move || {
        // Compiling is CPU work, and what makes the upload the check: a component the
        // runtime refuses is never stored.
        let plugin = supervisor.plugin_runtime().load(&wasm).map_err(|e| {
            Failure::answer(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_component",
                error_chain(&e),
            )
        })?;
        let (uploaded, record) = supervisor
            .artifacts()
            .put(&reference, &wasm, Timestamp::now())?;
        Ok((uploaded, record, plugin.report().clone()))
    })
    .await?;
    let status = match uploaded {
        Uploaded::Created => {
            tracing::info!(plugin = %record.reference(), hash = %record.hash, size = record.size, "plugin uploaded");
            StatusCode::CREATED
        }
        Uploaded::Unchanged => StatusCode::OK,
    };
    let mut body = json!(record);
    body["wit_version"] = json!(report.wit_version);
    body["exports"] = json!(report.exports);
    body["imports"] = json!(report.imports);
    Ok((status, axum::Json(body)).into_response())
}

async fn list(State(state): State<Arc<ApiState>>) -> Result<Response, Failure> {
    let supervisor = managed(&state)?;
    let plugins = blocking(move || {
        let usage = usage(&supervisor)?;
        let records = supervisor.artifacts().list()?;
        Ok(records.iter().map(|r| view(r, &usage)).collect::<Vec<_>>())
    })
    .await?;
    Ok(axum::Json(json!({ "plugins": plugins })).into_response())
}

async fn show(
    State(state): State<Arc<ApiState>>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response, Failure> {
    let supervisor = managed(&state)?;
    let reference = reference(&name, &version)?;
    let body = blocking(move || {
        let record = supervisor
            .artifacts()
            .get(&reference)?
            .ok_or(ArtifactError::NotFound(reference))?;
        Ok(view(&record, &usage(&supervisor)?))
    })
    .await?;
    Ok(axum::Json(body).into_response())
}

async fn remove(
    State(state): State<Arc<ApiState>>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response, Failure> {
    let supervisor = managed(&state)?;
    let reference = reference(&name, &version)?;
    blocking(move || {
        let users = usage(&supervisor)?
            .remove(&reference.key())
            .unwrap_or_default();
        if supervisor.artifacts().delete(&reference, users)? {
            tracing::info!(plugin = %reference, "plugin deleted");
            Ok(())
        } else {
            Err(ArtifactError::NotFound(reference).into())
        }
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
