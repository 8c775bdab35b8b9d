//! The admin API: the dead-letter queue of a running host, for `weft dlq --url` and for
//! operators' own tooling. redb lets one process open the store file, so while `weft serve`
//! runs this is the only way to reach its DLQ.
//!
//! Every route needs `Authorization: Bearer <token>` with the token `weft serve` was started
//! with (`--admin-token` or `WEFT_ADMIN_TOKEN`); a host started without one answers `403`
//! on every admin route. The admin routes share the intake listener, so the token is what
//! keeps a product sender (or anyone who can reach the port) from replaying or discarding.
//! Still, do not expose the admin API publicly: put the listener behind a proxy that
//! forwards only `/v1/installations/*` to the outside.
//!
//! Routes (JSON in and out; errors are `{"error": code, "message": text}`):
//!
//! - `GET /v1/admin/dlq?installation=&stage=&error_code=&status=` — entries oldest first, as
//!   `{"entries": [entry, …], "unreadable": [{"id", "installation", "status", "error"}, …]}`;
//!   `status` is `open` (the default), `replayed`, `discarded` or `all`. `unreadable` lists
//!   entries the store cannot decode, so one bad entry never hides the rest;
//! - `GET /v1/admin/dlq/{id}` — one entry in full, original event included; for an
//!   unreadable entry `{"id", "unreadable": reason, "raw": the stored text}`;
//! - `POST /v1/admin/dlq/{id}/replay` — re-enqueues the original event (the running
//!   outbound worker picks it up) and marks the entry replayed:
//!   `{"id", "installation", "event_id", "replayed_as_seq"}` (`replayed_as_seq` is null for
//!   an inbound record, which is replayed by re-running its sync);
//! - `POST /v1/admin/dlq/{id}/discard` — marks the entry discarded: `{"id", "status"}`.
//!
//! `404` `unknown_dlq_entry` for an id the store does not have, `409` `dlq_entry_not_open`
//! when the entry was already replayed or discarded, `409` `dlq_entry_unreadable` when
//! replaying an entry that cannot be decoded (discard it instead), `400` `invalid_filter` for a bad
//! query, `503` `store_unavailable` when the store fails.

use std::fmt;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::json;

use super::ApiState;
use super::auth::operator_access;
use super::intake::{error, error_chain};
use crate::store::{DlqFilter, DlqStatus, Stage, Store, StoreError, StoreExt};

/// The shortest admin token accepted. 16 bytes of random text is beyond guessing over HTTP;
/// shorter tokens are usually placeholders ("admin", "changeme") left in a deployment.
pub const MIN_ADMIN_TOKEN_BYTES: usize = 16;

/// The bearer token that unlocks the admin routes. Its `Debug` never shows the value, so it
/// cannot leak into logs through a config dump.
#[derive(Clone)]
pub struct AdminToken(Arc<str>);

/// Why a token was refused at start-up.
#[derive(Debug, thiserror::Error)]
pub enum AdminTokenError {
    #[error(
        "the admin token is {0} bytes; use at least {MIN_ADMIN_TOKEN_BYTES} random characters (e.g. `openssl rand -hex 32`)"
    )]
    TooShort(usize),
    #[error(
        "the admin token must be printable ASCII without spaces (it travels in an HTTP header)"
    )]
    NotPrintable,
}

impl AdminToken {
    pub fn new(token: &str) -> Result<AdminToken, AdminTokenError> {
        if token.len() < MIN_ADMIN_TOKEN_BYTES {
            return Err(AdminTokenError::TooShort(token.len()));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(AdminTokenError::NotPrintable);
        }
        Ok(AdminToken(Arc::from(token)))
    }

    /// The token itself, for a client to send; never log it.
    pub fn reveal(&self) -> &str {
        &self.0
    }

    /// Compares in constant time (BLAKE3 digests, whose equality is constant-time), so the
    /// answer's timing does not reveal how much of a guess was right.
    pub(super) fn matches(&self, presented: &[u8]) -> bool {
        blake3::hash(self.0.as_bytes()) == blake3::hash(presented)
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

/// The admin routes, behind the bearer-token check.
pub(super) fn routes(state: Arc<ApiState>) -> Router<Arc<ApiState>> {
    Router::new()
        .route("/v1/admin/dlq", get(list))
        .route("/v1/admin/dlq/{id}", get(show))
        .route("/v1/admin/dlq/{id}/replay", post(replay))
        .route("/v1/admin/dlq/{id}/discard", post(discard))
        .route_layer(middleware::from_fn_with_state(state, operator_access))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    installation: Option<String>,
    stage: Option<String>,
    error_code: Option<String>,
    status: Option<String>,
}

async fn list(State(state): State<Arc<ApiState>>, Query(query): Query<ListQuery>) -> Response {
    let stage = match query.stage.as_deref().map(str::parse::<Stage>).transpose() {
        Ok(stage) => stage,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_filter", e.to_string()),
    };
    let status = match status_filter(query.status.as_deref()) {
        Ok(status) => status,
        Err(response) => return response,
    };
    let filter = DlqFilter {
        installation: query.installation,
        stage,
        error_code: query.error_code,
        status,
    };
    match blocking(&state, move |store| store.dlq_list(&filter)).await {
        Ok(listing) => (StatusCode::OK, axum::Json(listing)).into_response(),
        Err(response) => response,
    }
}

/// The `status` query of a DLQ listing: `open` (the default), `replayed`, `discarded`, or
/// `all` (`None`).
#[allow(clippy::result_large_err)]
pub(super) fn status_filter(status: Option<&str>) -> Result<Option<DlqStatus>, Response> {
    match status.unwrap_or("open") {
        "open" => Ok(Some(DlqStatus::Open)),
        "replayed" => Ok(Some(DlqStatus::Replayed)),
        "discarded" => Ok(Some(DlqStatus::Discarded)),
        "all" => Ok(None),
        other => Err(error(
            StatusCode::BAD_REQUEST,
            "invalid_filter",
            format!("status {other:?}: expected open, replayed, discarded or all"),
        )),
    }
}

async fn show(State(state): State<Arc<ApiState>>, Path(id): Path<u64>) -> Response {
    let found = blocking(&state, move |store| match store.dlq_get(id) {
        Ok(entry) => Ok(Ok(entry)),
        // Shown as stored, so an operator can see what it is before discarding it.
        Err(StoreError::DlqUnreadable { reason, .. }) => {
            let raw = store.dlq_raw(id)?.unwrap_or_default();
            Ok(Err((reason, String::from_utf8_lossy(&raw).into_owned())))
        }
        Err(other) => Err(other),
    })
    .await;
    match found {
        Ok(Ok(Some(entry))) => (StatusCode::OK, axum::Json(entry)).into_response(),
        Ok(Ok(None)) => store_error(&StoreError::DlqNotFound(id)),
        Ok(Err((reason, raw))) => (
            StatusCode::OK,
            axum::Json(json!({"id": id, "unreadable": reason, "raw": raw})),
        )
            .into_response(),
        Err(response) => response,
    }
}

async fn replay(State(state): State<Arc<ApiState>>, Path(id): Path<u64>) -> Response {
    let done = blocking(&state, move |store| {
        let seq = store.replay_dlq(id, Timestamp::now())?;
        // Read back after the commit, for the answer only.
        Ok((seq, store.dlq_get(id)?))
    })
    .await;
    match done {
        Ok((seq, entry)) => {
            let installation = entry.as_ref().map(|e| e.installation.clone());
            let event_id = entry
                .as_ref()
                .and_then(|e| e.original.event_id().map(str::to_owned));
            tracing::info!(
                installation = installation.as_deref().unwrap_or(""),
                dlq_id = id,
                replayed_as_seq = seq,
                "DLQ entry replayed through the admin API"
            );
            if seq.is_some()
                && let Some(tenant) = installation
                    .as_deref()
                    .and_then(|id| state.directory.get(id))
            {
                tenant.wake();
            }
            (
                StatusCode::OK,
                axum::Json(json!({
                    "id": id,
                    "installation": installation,
                    "event_id": event_id,
                    "replayed_as_seq": seq,
                })),
            )
                .into_response()
        }
        Err(response) => response,
    }
}

async fn discard(State(state): State<Arc<ApiState>>, Path(id): Path<u64>) -> Response {
    match blocking(&state, move |store| {
        store.discard_dlq(id)?;
        store.dlq_get(id)
    })
    .await
    {
        Ok(entry) => {
            tracing::info!(
                installation = entry.as_ref().map_or("", |e| e.installation.as_str()),
                dlq_id = id,
                "DLQ entry discarded through the admin API"
            );
            (
                StatusCode::OK,
                axum::Json(json!({"id": id, "status": DlqStatus::Discarded})),
            )
                .into_response()
        }
        Err(response) => response,
    }
}

/// Runs a store call off the async workers (redb reads and commits block).
async fn blocking<T: Send + 'static>(
    state: &ApiState,
    work: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Response> {
    let store = state.store.clone();
    match tokio::task::spawn_blocking(move || work(&*store)).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(store_error(&e)),
        Err(join) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            join.to_string(),
        )),
    }
}

fn store_error(e: &StoreError) -> Response {
    match e {
        StoreError::DlqNotFound(_) => {
            error(StatusCode::NOT_FOUND, "unknown_dlq_entry", e.to_string())
        }
        StoreError::DlqNotOpen { .. } => {
            error(StatusCode::CONFLICT, "dlq_entry_not_open", e.to_string())
        }
        StoreError::DlqUnreadable { .. } => {
            error(StatusCode::CONFLICT, "dlq_entry_unreadable", e.to_string())
        }
        other => {
            let message = error_chain(other);
            tracing::error!(error = %message, "admin API: store unavailable");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                message,
            )
        }
    }
}
