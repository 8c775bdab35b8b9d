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
//! - `GET /v1/installations?after=ID&limit=N&paused=BOOL&health=STATE` — records by id,
//!   `limit` (default 100, at most 1,000) at a time, optionally only the paused (or not
//!   paused) ones, or those in one health state: `{"installations": [...], "next_after":
//!   id | null}`;
//! - `GET /v1/installations/{id}` — the record: `{id, version, running_version, created_at,
//!   updated_at, paused, spec}` (the document holds secrets only as references);
//! - `PUT /v1/installations/{id}?base_dir=DIR` — the declarative way in (`weft apply`):
//!   the whole document, created or replaced whatever the stored version, checked exactly
//!   as a create; a document already stored as it is changes nothing and keeps its
//!   version. `base_dir` (absolute) is where its relative paths resolve (the file's
//!   directory); default: the host's working directory. `201` created, `200` otherwise,
//!   with `"applied": "created" | "updated" | "unchanged"`;
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
//! - `PUT /v1/installations/{id}/credentials` — body `{"client_secret", "refresh_token",
//!   "private_key_pem", "client_id", "username"}` (any of them): the new credential is
//!   tried first (one token request, then the objects described); a credential the org
//!   refuses is `422 credential_refused` and the old one stays in use. Secrets are sealed
//!   under the host's key (see [`crate::secrets`]; `409 no_secrets_key` when the host has
//!   none) and never returned: every view shows a sealed value as `"(sealed)"`;
//! - `POST /v1/installations/{id}/pause` — body (optional) `{"objects": [...], "note":
//!   text}`: without objects the whole installation stops at its next unit, both
//!   directions (intake still accepts its events, which wait); with objects, those inbound
//!   objects are left out of its passes. The pause survives restarts and does not change
//!   the spec's version;
//! - `POST /v1/installations/{id}/resume` — body (optional) `{"objects": [...]}`: resumes
//!   the named objects, or everything; inbound carries on from its checkpoints;
//! - `POST /v1/installations/{id}/sync` — starts an inbound pass and an outbound round now
//!   (`409` while paused).
//!
//! Every response carrying a record has `ETag: "<version>"`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiState;
use super::auth::operator_access;
use super::intake::error;
use crate::registry::{Applied, Pause, RegistryError, SpecRecord};
use crate::runtime::{InstallationError, Refused, Supervisor};
use crate::token::new_token;

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1_000;

pub(super) fn routes(state: Arc<ApiState>) -> Router<Arc<ApiState>> {
    Router::new()
        .route("/v1/installations", post(create).get(list))
        .route(
            "/v1/installations/{id}",
            get(show).put(apply).patch(update).delete(remove),
        )
        .route("/v1/installations/{id}/token", post(issue_token))
        .route(
            "/v1/installations/{id}/credentials",
            put(rotate_credentials),
        )
        .route("/v1/installations/{id}/pause", post(pause))
        .route("/v1/installations/{id}/resume", post(resume))
        .route("/v1/installations/{id}/sync", post(sync_now))
        .route_layer(middleware::from_fn_with_state(state, operator_access))
}

/// What a handler answers: its response, or the refusal a check returned early (`?`).
type Answer = Result<Response, Refusal>;

/// An early answer: any error response, boxed (a response is large, and every handler's
/// `Result` carries this).
struct Refusal(Box<Response>);

impl From<Response> for Refusal {
    fn from(response: Response) -> Self {
        Refusal(Box::new(response))
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        *self.0
    }
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

async fn create(State(state): State<Arc<ApiState>>, body: Bytes) -> Answer {
    let supervisor = supervisor(&state)?.clone();
    let document = json_object(&body)?;
    let Some(id) = document
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return Err(invalid("id", "the document needs a string `id`".into()).into());
    };
    // Refuse a taken id before spending describe calls on it (the create below checks
    // again, in the transaction that writes).
    match registry_call(&supervisor, {
        let id = id.clone();
        move |s| s.registry().get(&id)
    })
    .await
    {
        Ok(Some(_)) => return Err(exists(&id).into()),
        Ok(None) => {}
        Err(r) => return Err(r.into()),
    }
    let base = supervisor.base_dir().to_owned();
    let prepared = match supervisor.prepare(&id, &document, &base).await {
        Ok(p) => p,
        Err(refused) => return Err(refusal(refused).into()),
    };
    let record = registry_call(&supervisor, {
        let id = id.clone();
        move |s| s.registry().create(&id, document, base, Timestamp::now())
    })
    .await?;
    supervisor.run_saved(prepared, &record).await;
    tracing::info!(installation = %id, version = record.version, "installation created through the API");
    Ok(with_etag(
        StatusCode::CREATED,
        &record,
        Some(record.version),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    after: Option<String>,
    limit: Option<usize>,
    /// `true`: only installations paused (wholly or in part); `false`: only the others.
    paused: Option<bool>,
    /// Only installations in this health state (see the status route).
    health: Option<String>,
}

async fn list(
    State(state): State<Arc<ApiState>>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Answer {
    let supervisor = supervisor(&state)?.clone();
    let Query(query) = match query {
        Ok(q) => q,
        Err(e) => {
            return Err(error(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()).into());
        }
    };
    let limit = query.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    if let Some(health) = &query.health
        && !["healthy", "degraded", "failing", "paused"].contains(&health.as_str())
    {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "invalid_filter",
            format!("health {health:?}: expected healthy, degraded, failing or paused"),
        )
        .into());
    }
    let records = registry_call(&supervisor, |s| s.registry().list()).await?;
    let running = supervisor.running().await;
    let mut page = Vec::with_capacity(limit.min(records.len()));
    let mut next_after = None;
    for record in records {
        let (id, entry) = match record {
            Ok(record) => {
                if query.paused.is_some_and(|p| p != record.paused.is_some()) {
                    continue;
                }
                if let Some(wanted) = &query.health {
                    let state = supervisor.status(&record.id).await.map(|s| s.health.state);
                    if state != Some(wanted.as_str()) {
                        continue;
                    }
                }
                let running = running.get(&record.id).copied();
                (record.id.clone(), view(&record, running))
            }
            Err(RegistryError::Unreadable { id, reason }) => {
                (id.clone(), json!({"id": id, "unreadable": reason}))
            }
            Err(other) => return Err(registry_error(other).into()),
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
    Ok((
        StatusCode::OK,
        axum::Json(json!({"installations": page, "next_after": next_after})),
    )
        .into_response())
}

async fn show(State(state): State<Arc<ApiState>>, Path(id): Path<String>) -> Answer {
    let supervisor = supervisor(&state)?.clone();
    let record = stored(&supervisor, &id).await?;
    let running = supervisor.running().await.get(&id).copied();
    Ok(with_etag(StatusCode::OK, &record, running))
}

async fn update(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let supervisor = supervisor(&state)?.clone();
    let expected = if_match(&headers)?;
    let patch = json_object(&body)?;
    let current = stored(&supervisor, &id).await?;
    if current.version != expected {
        return Err(stale(&id, expected, current.version).into());
    }
    let mut document = current.spec.clone();
    merge_patch(&mut document, &patch);
    if document.get("id").and_then(Value::as_str) != Some(id.as_str()) {
        return Err(invalid("id", format!("cannot be changed (installation {id:?})")).into());
    }
    if document == current.spec {
        return Ok(with_etag(
            StatusCode::OK,
            &current,
            supervisor.running().await.get(&id).copied(),
        ));
    }
    let prepared = match supervisor.prepare(&id, &document, &current.base_dir).await {
        Ok(p) => p,
        Err(refused) => return Err(refusal(refused).into()),
    };
    let record = registry_call(&supervisor, {
        let id = id.clone();
        move |s| {
            s.registry()
                .update(&id, expected, document, Timestamp::now())
        }
    })
    .await?;
    supervisor.run_saved(prepared, &record).await;
    tracing::info!(installation = %id, version = record.version, "installation changed through the API");
    Ok(with_etag(StatusCode::OK, &record, Some(record.version)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplyQuery {
    base_dir: Option<std::path::PathBuf>,
}

async fn apply(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    query: Result<Query<ApplyQuery>, axum::extract::rejection::QueryRejection>,
    body: Bytes,
) -> Answer {
    let supervisor = supervisor(&state)?.clone();
    let Query(query) = match query {
        Ok(q) => q,
        Err(e) => {
            return Err(error(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()).into());
        }
    };
    let base = match query.base_dir {
        Some(dir) if dir.is_absolute() => dir,
        Some(dir) => {
            return Err(invalid(
                "base_dir",
                format!("{} is not an absolute path", dir.display()),
            )
            .into());
        }
        None => supervisor.base_dir().to_owned(),
    };
    let document = json_object(&body)?;
    if document.get("id").and_then(Value::as_str) != Some(id.as_str()) {
        return Err(invalid("id", format!("the document must carry id {id:?}")).into());
    }
    let current = registry_call(&supervisor, {
        let id = id.clone();
        move |s| s.registry().get(&id)
    })
    .await?;
    if let Some(current) = current.filter(|c| c.spec == document && c.base_dir == base) {
        let running = supervisor.running().await.get(&id).copied();
        return Ok(applied(StatusCode::OK, "unchanged", &current, running));
    }
    let prepared = match supervisor.prepare(&id, &document, &base).await {
        Ok(p) => p,
        Err(refused) => return Err(refusal(refused).into()),
    };
    let (record, outcome) = registry_call(&supervisor, {
        let id = id.clone();
        move |s| {
            s.registry()
                .apply_declared(&id, document, base, Timestamp::now())
        }
    })
    .await?;
    let (status, word) = match outcome {
        Applied::Created => (StatusCode::CREATED, "created"),
        Applied::Updated => (StatusCode::OK, "updated"),
        Applied::Unchanged => (StatusCode::OK, "unchanged"),
    };
    if outcome != Applied::Unchanged {
        supervisor.run_saved(prepared, &record).await;
        tracing::info!(installation = %id, version = record.version, outcome = word, "installation applied through the API");
    }
    Ok(applied(status, word, &record, Some(record.version)))
}

fn applied(status: StatusCode, word: &str, record: &SpecRecord, running: Option<u64>) -> Response {
    let mut body = view(record, running);
    body["applied"] = json!(word);
    let mut response = (status, axum::Json(body)).into_response();
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", record.version)) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
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
) -> Answer {
    let supervisor = supervisor(&state)?.clone();
    let Query(query) = match query {
        Ok(q) => q,
        Err(e) => {
            return Err(error(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()).into());
        }
    };
    stored(&supervisor, &id).await?;
    // Stop first: a worker must not write for an installation whose data is being purged.
    supervisor.remove(&id).await;
    let purged = registry_call(&supervisor, {
        let id = id.clone();
        move |s| s.registry().delete(&id, query.purge)
    })
    .await?;
    tracing::info!(installation = %id, purge = query.purge, "installation deleted through the API");
    Ok((
        StatusCode::OK,
        axum::Json(json!({"id": id, "deleted": true, "purged": purged})),
    )
        .into_response())
}

async fn issue_token(State(state): State<Arc<ApiState>>, Path(id): Path<String>) -> Answer {
    let supervisor = supervisor(&state)?.clone();
    let current = stored(&supervisor, &id).await?;
    let (token, hash) = match new_token() {
        Ok(t) => t,
        Err(_) => {
            return Err(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the system random source failed".into(),
            )
            .into());
        }
    };
    let mut document = current.spec.clone();
    merge_patch(
        &mut document,
        &json!({"intake": {"token_sha256": hash.to_hex()}}),
    );
    let record = registry_call(&supervisor, {
        let id = id.clone();
        move |s| {
            s.registry()
                .update(&id, current.version, document, Timestamp::now())
        }
    })
    .await?;
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
    Ok(response)
}

/// A new credential. `Debug` is not derived: it holds secrets.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsBody {
    client_secret: Option<String>,
    refresh_token: Option<String>,
    private_key_pem: Option<String>,
    client_id: Option<String>,
    username: Option<String>,
}

async fn rotate_credentials(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Answer {
    let supervisor = supervisor(&state)?.clone();
    // Parsed by hand so a malformed body's error never echoes a secret back.
    let Ok(body) = serde_json::from_slice::<CredentialsBody>(&body) else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "expected a JSON object with any of client_secret, refresh_token, private_key_pem, \
             client_id, username (strings)"
                .into(),
        )
        .into());
    };
    let Some(keyring) = supervisor.keyring() else {
        return Err(error(
            StatusCode::CONFLICT,
            "no_secrets_key",
            "this host has no secrets key to seal credentials with: start weft serve with \
             --secrets-key-file or WEFT_SECRETS_KEY"
                .into(),
        )
        .into());
    };
    let current = stored(&supervisor, &id).await?;
    let mut salesforce = serde_json::Map::new();
    for (name, value) in [
        ("client_secret", &body.client_secret),
        ("refresh_token", &body.refresh_token),
        ("private_key", &body.private_key_pem),
    ] {
        let Some(value) = value else { continue };
        let sealed = match keyring.seal(&id, name, value.trim()) {
            Ok(sealed) => sealed,
            Err(e) => {
                return Err(
                    error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()).into(),
                );
            }
        };
        salesforce.insert(format!("{name}_sealed"), json!(sealed));
        salesforce.insert(format!("{name}_env"), Value::Null);
        salesforce.insert(format!("{name}_file"), Value::Null);
    }
    for (name, value) in [("client_id", &body.client_id), ("username", &body.username)] {
        if let Some(value) = value {
            salesforce.insert(name.to_owned(), json!(value));
        }
    }
    if salesforce.is_empty() {
        return Err(invalid("-", "the body names no credential".into()).into());
    }
    let mut document = current.spec.clone();
    merge_patch(&mut document, &json!({"salesforce": salesforce}));
    let prepared = match supervisor.prepare(&id, &document, &current.base_dir).await {
        Ok(p) => p,
        Err(refused) => {
            tracing::warn!(installation = %id, "credential rotation refused; the old credential stays");
            return Err(refusal(refused).into());
        }
    };
    let record = registry_call(&supervisor, {
        let id = id.clone();
        move |s| {
            s.registry()
                .update(&id, current.version, document, Timestamp::now())
        }
    })
    .await?;
    supervisor.run_saved(prepared, &record).await;
    tracing::info!(installation = %id, version = record.version, "credentials rotated through the API");
    Ok(with_etag(StatusCode::OK, &record, Some(record.version)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PauseBody {
    #[serde(default)]
    objects: Vec<String>,
    note: Option<String>,
}

/// An optional JSON body (`{}` when empty).
#[allow(clippy::result_large_err)]
fn optional_body<T: Default + serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body does not fit: {e}"),
        )
    })
}

async fn pause(State(state): State<Arc<ApiState>>, Path(id): Path<String>, body: Bytes) -> Answer {
    let supervisor = supervisor(&state)?.clone();
    let body: PauseBody = optional_body(&body)?;
    let current = stored(&supervisor, &id).await?;
    let configured = inbound_objects(&current.spec);
    if let Some(unknown) = body.objects.iter().find(|o| !configured.contains(o)) {
        return Err(invalid(
            "objects",
            format!("{unknown} is not an inbound object of installation {id:?}"),
        )
        .into());
    }
    let mut objects = body.objects;
    // Pausing more objects adds to an object pause; a whole pause stays whole.
    if let Some(previous) = &current.paused
        && !objects.is_empty()
    {
        if previous.whole() {
            objects.clear();
        } else {
            for object in &previous.objects {
                if !objects.contains(object) {
                    objects.push(object.clone());
                }
            }
        }
    }
    let paused = Pause {
        objects,
        note: body.note,
        since: Timestamp::now(),
    };
    set_pause(&supervisor, &id, Some(paused)).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResumeBody {
    #[serde(default)]
    objects: Vec<String>,
}

async fn resume(State(state): State<Arc<ApiState>>, Path(id): Path<String>, body: Bytes) -> Answer {
    let supervisor = supervisor(&state)?.clone();
    let body: ResumeBody = optional_body(&body)?;
    let current = stored(&supervisor, &id).await?;
    let remaining = match (current.paused, body.objects.is_empty()) {
        (None, _) | (_, true) => None,
        (Some(pause), false) if pause.whole() => {
            return Err(invalid(
                "objects",
                "the whole installation is paused: resume it without naming objects".into(),
            )
            .into());
        }
        (Some(mut pause), false) => {
            pause.objects.retain(|o| !body.objects.contains(o));
            (!pause.objects.is_empty()).then_some(pause)
        }
    };
    set_pause(&supervisor, &id, remaining).await
}

async fn set_pause(supervisor: &Arc<Supervisor>, id: &str, paused: Option<Pause>) -> Answer {
    let record = registry_call(supervisor, {
        let (id, paused) = (id.to_owned(), paused.clone());
        move |s| s.registry().set_pause(&id, paused)
    })
    .await?;
    if let Err(reason) = supervisor.reload(id).await {
        tracing::error!(installation = %id, error = %reason, "installation not restarted after a pause change");
        return Err(error(StatusCode::INTERNAL_SERVER_ERROR, "not_restarted", reason).into());
    }
    tracing::info!(installation = %id, paused = ?paused, "installation pause changed");
    let running = supervisor.running().await.get(id).copied();
    Ok(with_etag(StatusCode::OK, &record, running))
}

async fn sync_now(State(state): State<Arc<ApiState>>, Path(id): Path<String>) -> Answer {
    let supervisor = supervisor(&state)?.clone();
    stored(&supervisor, &id).await?;
    if !supervisor.sync_now(&id).await {
        return Err(error(
            StatusCode::CONFLICT,
            "not_running",
            format!("installation {id:?} is paused or did not start; see its status"),
        )
        .into());
    }
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({"id": id, "sync": "started"})),
    )
        .into_response())
}

/// The inbound object names of a stored document.
fn inbound_objects(spec: &Value) -> Vec<String> {
    spec["inbound"]["objects"]
        .as_object()
        .map(|objects| objects.keys().cloned().collect())
        .unwrap_or_default()
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

/// A record as the API shows it: sealed secrets replaced by `"(sealed)"`.
fn view(record: &SpecRecord, running: Option<u64>) -> Value {
    let mut spec = record.spec.clone();
    if let Some(salesforce) = spec.get_mut("salesforce").and_then(Value::as_object_mut) {
        for (key, value) in salesforce.iter_mut() {
            if key.ends_with("_sealed") {
                *value = json!("(sealed)");
            }
        }
    }
    json!({
        "id": record.id,
        "version": record.version,
        "running_version": running,
        "created_at": record.created_at.to_string(),
        "updated_at": record.updated_at.to_string(),
        "paused": record.paused,
        "spec": spec,
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
        Refused::Invalid(ref e @ InstallationError::Plugin { key, .. }) => {
            invalid(key, super::intake::error_chain(e))
        }
        Refused::Invalid(
            ref e @ (InstallationError::Artifact { .. } | InstallationError::NoCatalog { .. }),
        ) => invalid("plugin.artifact", super::intake::error_chain(e)),
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
        Refused::Credential(_) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(json!({
                "error": "credential_refused",
                "key": "salesforce",
                "message": refused.to_string(),
            })),
        )
            .into_response(),
        Refused::Join(message) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", message),
    }
}
