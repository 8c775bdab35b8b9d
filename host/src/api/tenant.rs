//! An installation's own read routes, reached by its token (or the operator's):
//!
//! - `GET /v1/installations/{id}/status` — health (`healthy` / `degraded` / `failing` /
//!   `paused`, with reason and since when), quota used against the ceiling, backfill
//!   progress and lag per inbound object, outbound backlog and the oldest event's age,
//!   open DLQ entries (see [`crate::runtime::status`]);
//! - `GET /v1/installations/{id}/dlq?status=open|replayed|discarded|all` — the
//!   installation's DLQ entries, oldest first (`open` by default);
//! - `GET /v1/installations/{id}/audit?after=N&limit=M` — its audit log, oldest first,
//!   `limit` (default 100, at most 1,000) entries after id `after`:
//!   `{"entries": [{"id", ...entry}], "next_after": id | null}`.
//!
//! An installation the host does not run answers `404`, as an unknown id does.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;

use super::ApiState;
use super::auth::installation_access;
use super::intake::{error, error_chain, unknown_installation};
use crate::store::{DlqFilter, StoreError};

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1_000;

pub(super) fn routes(state: Arc<ApiState>) -> Router<Arc<ApiState>> {
    Router::new()
        .route("/v1/installations/{id}/status", get(status))
        .route("/v1/installations/{id}/dlq", get(dlq))
        .route("/v1/installations/{id}/audit", get(audit))
        .route_layer(middleware::from_fn_with_state(state, installation_access))
}

async fn status(State(state): State<Arc<ApiState>>, Path(id): Path<String>) -> Response {
    let status = match &state.supervisor {
        Some(supervisor) => supervisor.status(&id).await,
        None => None,
    };
    match status {
        Some(status) => (StatusCode::OK, axum::Json(status)).into_response(),
        None => unknown_installation(&id),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DlqQuery {
    status: Option<String>,
}

async fn dlq(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    query: Result<Query<DlqQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if !state.directory.contains(&id) {
        return unknown_installation(&id);
    }
    let Query(query) = match query {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()),
    };
    let status = match super::admin::status_filter(query.status.as_deref()) {
        Ok(status) => status,
        Err(response) => return response,
    };
    let filter = DlqFilter {
        installation: Some(id),
        status,
        ..DlqFilter::default()
    };
    let store = state.store.clone();
    match tokio::task::spawn_blocking(move || store.dlq_list(&filter)).await {
        Ok(Ok(listing)) => (StatusCode::OK, axum::Json(listing)).into_response(),
        Ok(Err(e)) => store_unavailable(&e),
        Err(join) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            join.to_string(),
        ),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    after: Option<u64>,
    limit: Option<usize>,
}

async fn audit(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if !state.directory.contains(&id) {
        return unknown_installation(&id);
    }
    let Query(query) = match query {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()),
    };
    let limit = query.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let store = state.store.clone();
    let read = tokio::task::spawn_blocking(move || store.audit(&id, query.after, limit)).await;
    match read {
        Ok(Ok(entries)) => {
            let next_after = (entries.len() == limit)
                .then(|| entries.last().map(|(id, _)| *id))
                .flatten();
            let entries: Vec<_> = entries
                .into_iter()
                .map(|(id, entry)| {
                    let mut value = serde_json::to_value(entry).unwrap_or_default();
                    value["id"] = json!(id);
                    value
                })
                .collect();
            (
                StatusCode::OK,
                axum::Json(json!({"entries": entries, "next_after": next_after})),
            )
                .into_response()
        }
        Ok(Err(e)) => store_unavailable(&e),
        Err(join) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            join.to_string(),
        ),
    }
}

fn store_unavailable(e: &StoreError) -> Response {
    tracing::error!(error = %error_chain(e), "store unavailable");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        error_chain(e),
    )
}
