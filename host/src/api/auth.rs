//! Who may call which route. Every route but `/healthz` needs `Authorization: Bearer
//! <token>`:
//!
//! - the operator token (`weft serve --admin-token`) reaches every route;
//! - an installation's token reaches that installation's own routes (intake, event status)
//!   and nothing else.
//!
//! No token, or one that is nobody's, is `401`. A valid token of installation A asking for
//! anything of B gets exactly the `404` an unknown id gets, so a tenant cannot even learn
//! which other installations exist.
//!
//! Installation tokens are known only by their hashes ([`TokenHash`]).

use std::sync::Arc;

use axum::extract::{RawPathParams, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use super::ApiState;
use super::intake::{error, unknown_installation};
use crate::token::TokenHash;

/// The bearer token of a request, if it sent one.
fn bearer(request: &Request) -> Option<&str> {
    request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

fn unauthorized(what: &str) -> Response {
    let mut response = error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        format!("send Authorization: Bearer <{what}>"),
    );
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// Layer of the routes under `/v1/installations/{id}`: the operator token, or the token of
/// installation `{id}`.
pub(super) async fn installation_access(
    State(state): State<Arc<ApiState>>,
    params: RawPathParams,
    request: Request,
    next: Next,
) -> Response {
    let Some(presented) = bearer(&request) else {
        return unauthorized("the installation's token");
    };
    if state
        .admin_token
        .as_ref()
        .is_some_and(|admin| admin.matches(presented.as_bytes()))
    {
        return next.run(request).await;
    }
    let presented = TokenHash::of(presented);
    let id = params
        .iter()
        .find_map(|(name, value)| (name == "id").then_some(value))
        .unwrap_or_default();
    let own = state.directory.get(id);
    if own.is_some_and(|tenant| tenant.is_token(&presented)) {
        return next.run(request).await;
    }
    if state.directory.is_anyones_token(&presented) {
        // Another installation's token: answer as if `id` did not exist.
        tracing::warn!(path = %request.uri().path(), "request refused: another installation's token");
        unknown_installation(id)
    } else {
        tracing::warn!(path = %request.uri().path(), "request refused: unknown bearer token");
        unauthorized("the installation's token")
    }
}

/// Layer of the operator's routes (admin API, metrics): the operator token only. A host
/// started without one answers `403` there.
pub(super) async fn operator_access(
    State(state): State<Arc<ApiState>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = &state.admin_token else {
        return error(
            StatusCode::FORBIDDEN,
            "admin_disabled",
            "the operator routes are off: start weft serve with --admin-token or WEFT_ADMIN_TOKEN"
                .into(),
        );
    };
    match bearer(&request) {
        Some(presented) if token.matches(presented.as_bytes()) => next.run(request).await,
        _ => {
            tracing::warn!(path = %request.uri().path(), "operator request refused: missing or wrong bearer token");
            unauthorized("the host's admin token")
        }
    }
}
