//! Installations managed at run time (operator token): create, read, change, delete, and
//! the installation's own API token.
//!
//! Routes (JSON in and out; errors are `{"error": code, "message": text}`, plus `key` when
//! one key of the document is at fault):
//!
//! - `POST /v1/installations` — body: the installation's document, the same keys as its
//!   TOML file (`id`, `salesforce`, `plugin`, `inbound`, `outbound`, `throttle`, `intake`).
//!   Checked offline (`422 invalid_spec` naming the key), its plugin compiled, then its
//!   org described (`422 org_check_failed` naming each object or field the org lacks);
//!   only then saved at version 1 and started. `201` with the record; `409` when the id
//!   exists;
//! - `GET /v1/installations?after=ID&limit=N` — records by id, `limit` (default 100, at
//!   most 1,000) at a time: `{"installations": [...], "next_after": id | null}`;
//! - `GET /v1/installations/{id}` — the record: `{id, version, running_version, created_at,
//!   updated_at, spec}` (the document holds secrets only as references);
//! - `PATCH /v1/installations/{id}` — a JSON merge patch (RFC 7386) over the stored
//!   document, with `If-Match: <version>` (required: `428` without; `412` when the stored
//!   version differs, nothing changed). Checked exactly as a create; the saved change runs
//!   from the installation's next unit of work, without a restart;
//! - `DELETE /v1/installations/{id}[?purge=true]` — stops the installation and forgets its
//!   spec; its DLQ and audit stay unless `purge=true` removes everything the store holds
//!   for it;
//! - `POST /v1/installations/{id}/token` — makes a new API token for the installation,
//!   stores only its hash (replacing the previous one, which stops working at once) and
//!   returns the token, this once.
//!
//! Every response carrying a record has `ETag: "<version>"`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiState;
use super::auth::operator_access;
use super::intake::error;
use crate::registry::{RegistryError, SpecRecord};
use crate::runtime::{InstallationError, Refused, Supervisor};
use crate::token::new_token;

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1_000;

pub(super) fn routes(state: Arc<ApiState>) -> Router<Arc<ApiState>> {
    Router::new()
        .route("/v1/installations", post(create).get(list))
        .route(
            "/v1/installations/{id}",
            get(show).patch(update).delete(remove),
        )
        .route("/v1/installations/{id}/token", post(issue_token))
        .route_layer(middleware::from_fn_with_state(state, operator_access))
}

/// The supervisor, or the `404` of a host whose installations are fixed.
#[allow(clippy::result_large_err)]
fn supervisor(state: &ApiState) -> Result<&Arc<Supervisor>, Response> {
    state.supervisor.as_ref().ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            "not_managed",
            "this host's installations are fixed at start-up".into(),
        )
    })
}

async fn create(State(state): State<Arc<ApiState>>, body: Bytes) -> Response {
    let supervisor = match supervisor(&state) {
        Ok(s) => s.clone(),
        Err(r) => return r,
    };
    let document = match json_object(&body) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let Some(id) = document
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return invalid("id", "the document needs a string `id`".into());
    };
    // Refuse a taken id before spending describe calls on it (the create below checks
    // again, in the transaction that writes).
    match registry_call(&supervisor, {
        let id = id.clone();
        move |s| s.registry().get(&id)
    })
    .await
    {
        Ok(Some(_)) => return exists(&id),
        Ok(None) => {}
        Err(r) => return r,
    }
    let base = supervisor.base_dir().to_owned();
    let prepared = match supervisor.prepare(&id, &document, &base).await {
        Ok(p) => p,
        Err(refused) => return refusal(refused),
    };
    let record = match registry_call(&supervisor, {
        let id = id.clone();
        move |s| s.registry().create(&id, document, base, Timestamp::now())
    })
    .await
    {
        Ok(record) => record,
        Err(r) => return r,
    };
    supervisor.run(prepared, record.version).await;
    tracing::info!(installation = %id, version = record.version, "installation created through the API");
    with_etag(StatusCode::CREATED, &record, Some(record.version))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    after: Option<String>,
    limit: Option<usize>,
}

async fn list(
    State(state): State<Arc<ApiState>>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let supervisor = match supervisor(&state) {
        Ok(s) => s.clone(),
        Err(r) => return r,
    };
    let Query(query) = match query {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()),
    };
    let limit = query.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let records = match registry_call(&supervisor, |s| s.registry().list()).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let running = supervisor.running().await;
    let mut page = Vec::with_capacity(limit.min(records.len()));
    let mut next_after = None;
    for record in records {
        let (id, entry) = match record {
            Ok(record) => {
                let running = running.get(&record.id).copied();
                (record.id.clone(), view(&record, running))
            }
            Err(RegistryError::Unreadable { id, reason }) => {
                (id.clone(), json!({"id": id, "unreadable": reason}))
            }
            Err(other) => return registry_error(other),
        };
        if query
            .after
            .as_ref()
            .is_some_and(|after| id.as_str() <= after.as_str())
        {
            continue;
        }
        if page.len() == limit {
            next_after = page
                .last()
                .and_then(|e: &Value| e["id"].as_str().map(str::to_owned));
            break;
        }
        page.push(entry);
    }
    (
        StatusCode::OK,
        axum::Json(json!({"installations": page, "next_after": next_after})),
    )
        .into_response()
}

async fn show(State(state): State<Arc<ApiState>>, Path(id): Path<String>) -> Response {
    let supervisor = match supervisor(&state) {
        Ok(s) => s.clone(),
        Err(r) => return r,
    };
    match stored(&supervisor, &id).await {
        Ok(record) => {
            let running = supervisor.running().await.get(&id).copied();
            with_etag(StatusCode::OK, &record, running)
        }
        Err(r) => r,
    }
}

async fn update(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let supervisor = match supervisor(&state) {
        Ok(s) => s.clone(),
        Err(r) => return r,
    };
    let expected = match if_match(&headers) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let patch = match json_object(&body) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let current = match stored(&supervisor, &id).await {
        Ok(record) => record,
        Err(r) => return r,
    };
    if current.version != expected {
        return stale(&id, expected, current.version);
    }
    let mut document = current.spec.clone();
    merge_patch(&mut document, &patch);
    if document.get("id").and_then(Value::as_str) != Some(id.as_str()) {
        return invalid("id", format!("cannot be changed (installation {id:?})"));
    }
    if document == current.spec {
        return with_etag(
            StatusCode::OK,
            &current,
            supervisor.running().await.get(&id).copied(),
        );
    }
    let prepared = match supervisor.prepare(&id, &document, &current.base_dir).await {
        Ok(p) => p,
        Err(refused) => return refusal(refused),
    };
    let record = match registry_call(&supervisor, {
        let id = id.clone();
        move |s| {
            s.registry()
                .update(&id, expected, document, Timestamp::now())
        }
    })
    .await
    {
        Ok(record) => record,
        Err(r) => return r,
    };
    supervisor.run(prepared, record.version).await;
    tracing::info!(installation = %id, version = record.version, "installation changed through the API");
    with_etag(StatusCode::OK, &record, Some(record.version))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteQuery {
    #[serde(default)]
    purge: bool,
}

async fn remove(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    query: Result<Query<DeleteQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let supervisor = match supervisor(&state) {
        Ok(s) => s.clone(),
        Err(r) => return r,
    };
    let Query(query) = match query {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()),
    };
    if let Err(r) = stored(&supervisor, &id).await {
        return r;
    }
    // Stop first: a worker must not write for an installation whose data is being purged.
    supervisor.remove(&id).await;
    let purged = match registry_call(&supervisor, {
        let id = id.clone();
        move |s| s.registry().delete(&id, query.purge)
    })
    .await
    {
        Ok(purged) => purged,
        Err(r) => return r,
    };
    tracing::info!(installation = %id, purge = query.purge, "installation deleted through the API");
    (
        StatusCode::OK,
        axum::Json(json!({"id": id, "deleted": true, "purged": purged})),
    )
        .into_response()
}

async fn issue_token(State(state): State<Arc<ApiState>>, Path(id): Path<String>) -> Response {
    let supervisor = match supervisor(&state) {
        Ok(s) => s.clone(),
        Err(r) => return r,
    };
    let current = match stored(&supervisor, &id).await {
        Ok(record) => record,
        Err(r) => return r,
    };
    let (token, hash) = match new_token() {
        Ok(t) => t,
        Err(_) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the system random source failed".into(),
            );
        }
    };
    let mut document = current.spec.clone();
    merge_patch(
        &mut document,
        &json!({"intake": {"token_sha256": hash.to_hex()}}),
    );
    let record = match registry_call(&supervisor, {
        let id = id.clone();
        move |s| {
            s.registry()
                .update(&id, current.version, document, Timestamp::now())
        }
    })
    .await
    {
        Ok(record) => record,
        Err(r) => return r,
    };
    supervisor.set_token(&id, record.version, hash).await;
    tracing::info!(installation = %id, version = record.version, "installation token issued");
    let mut response = (
        StatusCode::CREATED,
        axum::Json(json!({
            "id": id,
            "version": record.version,
            "token": token,
            "token_sha256": hash.to_hex(),
        })),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// RFC 7386: objects merge key by key, `null` removes a key, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(target) = target {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

fn view(record: &SpecRecord, running: Option<u64>) -> Value {
    json!({
        "id": record.id,
        "version": record.version,
        "running_version": running,
        "created_at": record.created_at.to_string(),
        "updated_at": record.updated_at.to_string(),
        "spec": record.spec,
    })
}

fn with_etag(status: StatusCode, record: &SpecRecord, running: Option<u64>) -> Response {
    let mut response = (status, axum::Json(view(record, running))).into_response();
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", record.version)) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

/// `If-Match: 3` or `If-Match: "3"` (the `ETag` as sent).
#[allow(clippy::result_large_err)]
fn if_match(headers: &HeaderMap) -> Result<u64, Response> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Err(error(
            StatusCode::PRECONDITION_REQUIRED,
            "if_match_required",
            "send If-Match: <version> (the record's ETag) so a change never overwrites one you have not seen".into(),
        ));
    };
    value
        .to_str()
        .ok()
        .map(|v| v.trim().trim_start_matches("W/").trim_matches('"'))
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| {
            error(
                StatusCode::BAD_REQUEST,
                "invalid_if_match",
                "If-Match must be a version number, e.g. If-Match: \"3\"".into(),
            )
        })
}

#[allow(clippy::result_large_err)]
fn json_object(body: &[u8]) -> Result<Value, Response> {
    match serde_json::from_slice::<Value>(body) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err(error(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "the body must be a JSON object".into(),
        )),
        Err(e) => Err(error(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not JSON: {e}"),
        )),
    }
}

async fn stored(supervisor: &Arc<Supervisor>, id: &str) -> Result<SpecRecord, Response> {
    let lookup = id.to_owned();
    match registry_call(supervisor, move |s| s.registry().get(&lookup)).await? {
        Some(record) => Ok(record),
        None => Err(super::intake::unknown_installation(id)),
    }
}

/// Runs a registry call off the async threads (every one is a store transaction).
async fn registry_call<T: Send + 'static>(
    supervisor: &Arc<Supervisor>,
    work: impl FnOnce(&Supervisor) -> Result<T, RegistryError> + Send + 'static,
) -> Result<T, Response> {
    let supervisor = supervisor.clone();
    match tokio::task::spawn_blocking(move || work(&supervisor)).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(registry_error(e)),
        Err(join) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            join.to_string(),
        )),
    }
}

fn registry_error(e: RegistryError) -> Response {
    match e {
        RegistryError::Exists(id) => exists(&id),
        RegistryError::NotFound(id) => super::intake::unknown_installation(&id),
        RegistryError::Stale {
            id,
            expected,
            current,
        } => stale(&id, expected, current),
        RegistryError::Unreadable { .. } => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "unreadable_spec",
            e.to_string(),
        ),
        RegistryError::Store(ref store) => {
            tracing::error!(error = %super::intake::error_chain(store), "registry: store unavailable");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                super::intake::error_chain(store),
            )
        }
    }
}

fn exists(id: &str) -> Response {
    error(
        StatusCode::CONFLICT,
        "installation_exists",
        format!("installation {id:?} already exists; change it with PATCH"),
    )
}

fn stale(id: &str, expected: u64, current: u64) -> Response {
    error(
        StatusCode::PRECONDITION_FAILED,
        "stale_version",
        format!(
            "installation {id:?} is at version {current}, not {expected}: read it again and \
             send the change against the current version; nothing was changed"
        ),
    )
}

fn invalid(key: &str, message: String) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        axum::Json(json!({"error": "invalid_spec", "key": key, "message": message})),
    )
        .into_response()
}

fn refusal(refused: Refused) -> Response {
    match refused {
        Refused::Invalid(InstallationError::Config(e)) => invalid(&e.key, e.to_string()),
        Refused::Invalid(e @ InstallationError::Plugin { .. }) => {
            invalid("plugin.component", super::intake::error_chain(&e))
        }
        Refused::Invalid(e @ InstallationError::Client { .. }) => {
            invalid("salesforce", super::intake::error_chain(&e))
        }
        Refused::IdMismatch { .. } => invalid("id", refused.to_string()),
        Refused::Org(ref reports) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(json!({
                "error": "org_check_failed",
                "message": refused.to_string(),
                "objects": reports,
            })),
        )
            .into_response(),
        Refused::Join(message) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", message),
    }
}
