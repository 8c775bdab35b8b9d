//! `POST /v1/installations/{id}/events`: product change events in, durable before `202`.
//!
//! Body (JSON), either an object with an `events` array or a bare array:
//!
//! ```json
//! {"events": [
//!   {"id": "evt-1", "object": "company", "operation": "upsert",
//!    "occurred_at": "2026-01-01T00:00:00Z", "record": {"id": "c-42", "name": "Acme"}}
//! ]}
//! ```
//!
//! - `id`: the event's id, 1–256 characters; an id the installation already accepted is
//!   reported as a duplicate and not stored again (posting the same batch twice is safe),
//!   unless the content differs from what was accepted under it (see `409`);
//! - `object`: the product object kind (non-empty); the plugin maps it to Salesforce;
//! - `operation`: `"upsert"` or `"delete"`;
//! - `occurred_at`: RFC 3339 with an offset, e.g. `2026-01-01T00:00:00Z`;
//! - `record`: a JSON object (for a delete, at least the record's key fields) of at most
//!   [`MAX_EVENT_FIELDS`] fields and [`MAX_RECORD_DEPTH`] levels of nesting.
//!
//! Other members are ignored, so senders can add fields before the host reads them.
//!
//! Answers, in the order they are checked:
//! - `401` `unauthorized` — no bearer token, or one that is nobody's (see [`super::auth`]);
//! - `404` `unknown_installation` — the id is not one this host serves, or the token is
//!   another installation's;
//! - `415` `unsupported_media_type` — the `Content-Type` is missing or not JSON
//!   (`application/json`, or an `application/…+json` type);
//! - `413` `payload_too_large` — the raw body exceeds [`MAX_BODY_BYTES`] (checked before
//!   parsing, from `Content-Length` and again while reading);
//! - `408` `body_timeout` — the body did not arrive within the server's body timeout
//!   (see [`super::conn`]); nothing of the batch was stored;
//! - `400` `malformed_json` (with line and column) or `invalid_event` (with `index` and
//!   `field`, e.g. `events[3].occurred_at: expected an RFC 3339 timestamp …`); nothing of
//!   the batch is stored — a batch is accepted whole or not at all;
//! - `503` `store_unavailable` — the store could not commit; nothing new was acknowledged,
//!   retry the same batch;
//! - `409` `event_id_conflict` with `conflicts`, `accepted` and `duplicates` — some events
//!   reuse an id the installation already accepted with different content (or repeat an
//!   id of the same batch with different content). Those are not stored: the first content
//!   stays, and a changed event needs a new id. The batch's other events are handled as
//!   in a `202` and are durable (ids make that safe: sending the batch again after fixing
//!   the ids reports them as duplicates);
//! - `202` `{"accepted": [ids], "duplicates": [ids]}` — every listed event is durable.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use jiff::Timestamp;
use serde_json::{Map, Value, json};

use super::ApiState;
use crate::store::{EncodedEvent, Operation, OutboundEvent};

/// The largest request body accepted: 300 KiB (307,200 bytes). It bounds the memory one
/// request can pin while it waits for the group commit (queue depth × this is the worst
/// case) and keeps any one request's share of a group small; senders with more split it
/// into several requests, which costs them nothing since commits are grouped anyway.
pub const MAX_BODY_BYTES: usize = 300 * 1024;

/// The longest event id accepted, in bytes. Ids are keys of the idempotency index;
/// bounding them keeps one sender from bloating it. 256 fits UUIDs, ULIDs and composite ids.
pub const MAX_EVENT_ID_BYTES: usize = 256;

/// The most fields (top-level keys of `record`) one event may carry: 1,000. An sObject has
/// at most 800 custom fields plus its standard ones, so a record with more cannot map
/// onto one; and the outbound batch is as wide as its events' fields together, so this
/// bounds what one event can cost the host. Nested objects count as one field (they reach
/// the plugin as one JSON value).
pub const MAX_EVENT_FIELDS: usize = 1_000;

/// The deepest nesting of objects and arrays accepted inside `record`: 32 levels. Product
/// records nest a few levels; the store wraps a record in a few more (outbox, DLQ entry)
/// and must read every one of them back, and its decoder stops at 128 levels, so intake
/// stays far below that.
pub const MAX_RECORD_DEPTH: usize = 32;

/// The highest `max_record_depth` allowed: what the store's decoder reads (128 levels)
/// less room for the envelopes it wraps around a record.
pub const MAX_RECORD_DEPTH_LIMIT: usize = 100;

/// Intake limits; see the constants for the reasoning behind each default.
#[derive(Debug, Clone)]
pub struct IntakeLimits {
    pub max_body_bytes: usize,
    /// Fields one event's record may carry ([`MAX_EVENT_FIELDS`]).
    pub max_event_fields: usize,
    /// Nesting levels one event's record may have ([`MAX_RECORD_DEPTH`]); at most
    /// [`MAX_RECORD_DEPTH_LIMIT`].
    pub max_record_depth: usize,
}

impl Default for IntakeLimits {
    fn default() -> Self {
        IntakeLimits {
            max_body_bytes: MAX_BODY_BYTES,
            max_event_fields: MAX_EVENT_FIELDS,
            max_record_depth: MAX_RECORD_DEPTH,
        }
    }
}

pub(super) async fn post_events(
    State(state): State<Arc<ApiState>>,
    Path(installation): Path<String>,
    request: Request,
) -> Response {
    let Some(tenant) = state.directory.get(&installation) else {
        return unknown_installation(&installation);
    };
    let counters = &tenant.counters;
    if !is_json(request.headers()) {
        counters.invalid.fetch_add(1, Ordering::Relaxed);
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the batch as JSON with `Content-Type: application/json`".into(),
        );
    }
    let limit = state.limits.max_body_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        counters.too_large.fetch_add(1, Ordering::Relaxed);
        return too_large(limit);
    }
    let body = match read_body(request.into_body(), limit).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            counters.too_large.fetch_add(1, Ordering::Relaxed);
            return too_large(limit);
        }
        Err(BodyError::TimedOut(message)) => {
            counters.invalid.fetch_add(1, Ordering::Relaxed);
            return error(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!("{message}; nothing of the batch was stored, send it again"),
            );
        }
        Err(BodyError::Read(message)) => {
            counters.invalid.fetch_add(1, Ordering::Relaxed);
            return error(
                StatusCode::BAD_REQUEST,
                "unreadable_body",
                format!("reading the request body: {message}"),
            );
        }
    };
    let events = match parse_batch(&body, &state.limits) {
        Ok(events) => events,
        Err(problem) => {
            counters.invalid.fetch_add(1, Ordering::Relaxed);
            return problem.into_response();
        }
    };
    // Encoded here, on the HTTP workers (one per core), so the single store writer only
    // copies bytes; the parsed events are freed here too.
    let encoded = match events
        .iter()
        .map(EncodedEvent::new)
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(encoded) => encoded,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                error_chain(&e),
            );
        }
    };
    drop(events);
    match state.writer.submit(installation, encoded).await {
        Ok(committed) => {
            let mut answer = Answer {
                accepted: Vec::with_capacity(committed.events.len()),
                duplicates: Vec::new(),
                conflicts: Vec::new(),
            };
            for (event, admitted) in committed.events.iter().zip(&committed.admitted) {
                if admitted.conflict {
                    answer.conflicts.push(event.id());
                } else if admitted.duplicate {
                    answer.duplicates.push(event.id());
                } else {
                    answer.accepted.push(event.id());
                }
            }
            if !answer.accepted.is_empty() {
                tenant.wake();
            }
            counters.requests.fetch_add(1, Ordering::Relaxed);
            counters
                .accepted
                .fetch_add(answer.accepted.len() as u64, Ordering::Relaxed);
            counters
                .duplicates
                .fetch_add(answer.duplicates.len() as u64, Ordering::Relaxed);
            if !answer.conflicts.is_empty() {
                counters.invalid.fetch_add(1, Ordering::Relaxed);
                return conflict(&answer);
            }
            (StatusCode::ACCEPTED, axum::Json(answer)).into_response()
        }
        Err(store_error) => {
            counters.store_errors.fetch_add(1, Ordering::Relaxed);
            let message = error_chain(&store_error);
            tracing::error!(error = %message, "intake: store unavailable");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                message,
            )
        }
    }
}

/// The `202` body, serialised straight from the ids (no intermediate JSON tree).
#[derive(serde::Serialize)]
struct Answer<'a> {
    accepted: Vec<&'a str>,
    duplicates: Vec<&'a str>,
    /// Only in a `409`; a `202` has none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    conflicts: Vec<&'a str>,
}

/// The `409`: which ids were reused with different content, and what became of the rest.
fn conflict(answer: &Answer<'_>) -> Response {
    (
        StatusCode::CONFLICT,
        axum::Json(json!({
            "error": "event_id_conflict",
            "message": format!(
                "{} event(s) reuse an id already accepted with different content; they were \
                 not stored (the first content stays): send a changed event under a new id. \
                 The batch's other events were handled as listed.",
                answer.conflicts.len()
            ),
            "conflicts": answer.conflicts,
            "accepted": answer.accepted,
            "duplicates": answer.duplicates,
        })),
    )
        .into_response()
}

pub(super) async fn event_status(
    State(state): State<Arc<ApiState>>,
    Path((installation, event_id)): Path<(String, String)>,
) -> Response {
    if !state.directory.contains(&installation) {
        return unknown_installation(&installation);
    }
    let store = state.store.clone();
    let lookup_installation = installation.clone();
    let lookup_event = event_id.clone();
    let found = tokio::task::spawn_blocking(move || {
        store.event_status(&lookup_installation, &lookup_event)
    })
    .await;
    match found {
        Ok(Ok(Some(status))) => (
            StatusCode::OK,
            axum::Json(json!({
                "event_id": status.event_id,
                "seq": status.seq,
                "status": status.state,
            })),
        )
            .into_response(),
        Ok(Ok(None)) => error(
            StatusCode::NOT_FOUND,
            "unknown_event",
            format!("installation {installation:?} has not accepted an event with id {event_id:?}"),
        ),
        Ok(Err(store_error)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            error_chain(&store_error),
        ),
        Err(join) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            join.to_string(),
        ),
    }
}

enum BodyError {
    TooLarge,
    /// The body missed the connection's body deadline ([`super::conn::BodyTimedOut`]).
    TimedOut(String),
    Read(String),
}

/// Whether the request says its body is JSON: `application/json` or a structured
/// `application/…+json` type, any parameters (`charset`) aside. Anything else is refused
/// before the body is read, so a form post or a text upload never reaches the parser.
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    let Some(subtype) = essence
        .split_once('/')
        .filter(|(kind, _)| kind.eq_ignore_ascii_case("application"))
        .map(|(_, subtype)| subtype.to_ascii_lowercase())
    else {
        return false;
    };
    subtype == "json" || subtype.ends_with("+json")
}

/// Reads the body but never more than `limit` bytes: a sender that lies in (or omits)
/// `Content-Length` is cut off as soon as it crosses the limit.
async fn read_body(body: Body, limit: usize) -> Result<Vec<u8>, BodyError> {
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            if super::conn::is_body_timeout(&e) {
                BodyError::TimedOut(e.to_string())
            } else {
                BodyError::Read(e.to_string())
            }
        })?;
        if out.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// A 400: what is wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchProblem {
    pub code: &'static str,
    /// Index of the offending event in the batch, when the problem is in one event.
    pub index: Option<usize>,
    /// The offending field, when there is one.
    pub field: Option<&'static str>,
    pub message: String,
}

impl IntoResponse for BatchProblem {
    fn into_response(self) -> Response {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({
                "error": self.code,
                "message": self.message,
                "index": self.index,
                "field": self.field,
            })),
        )
            .into_response()
    }
}

/// Parses and validates a request body into events; see the module docs for the shape.
pub fn parse_batch(body: &[u8], limits: &IntakeLimits) -> Result<Vec<OutboundEvent>, BatchProblem> {
    let value: Value = serde_json::from_slice(body).map_err(|e| BatchProblem {
        code: "malformed_json",
        index: None,
        field: None,
        message: format!("malformed JSON: {e}"),
    })?;
    let items = match value {
        Value::Array(items) => items,
        Value::Object(mut top) => match top.remove("events") {
            Some(Value::Array(items)) => items,
            Some(other) => {
                return Err(batch_problem(
                    "events",
                    format!("events: expected an array, got {}", kind(&other)),
                ));
            }
            None => {
                return Err(batch_problem(
                    "events",
                    "missing field \"events\" (send {\"events\": [...]} or a bare array)".into(),
                ));
            }
        },
        other => {
            return Err(batch_problem(
                "events",
                format!(
                    "expected an object with an \"events\" array, or an array; got {}",
                    kind(&other)
                ),
            ));
        }
    };
    if items.is_empty() {
        return Err(batch_problem(
            "events",
            "events: the batch is empty; send at least one event".into(),
        ));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| parse_event(index, item, limits))
        .collect()
}

fn batch_problem(field: &'static str, message: String) -> BatchProblem {
    BatchProblem {
        code: "invalid_batch",
        index: None,
        field: Some(field),
        message,
    }
}

fn parse_event(
    index: usize,
    item: Value,
    limits: &IntakeLimits,
) -> Result<OutboundEvent, BatchProblem> {
    let invalid = |field: Option<&'static str>, problem: String| BatchProblem {
        code: "invalid_event",
        index: Some(index),
        field,
        message: match field {
            Some(field) => format!("events[{index}].{field}: {problem}"),
            None => format!("events[{index}]: {problem}"),
        },
    };
    let mut event = match item {
        Value::Object(event) => event,
        other => {
            return Err(invalid(
                None,
                format!("expected an event object, got {}", kind(&other)),
            ));
        }
    };
    let mut take = |field: &'static str| {
        event
            .remove(field)
            .filter(|v| !v.is_null())
            .ok_or_else(|| invalid(Some(field), "missing required field".into()))
    };
    let id = take("id")?;
    let object = take("object")?;
    let operation = take("operation")?;
    let occurred_at = take("occurred_at")?;
    let record = take("record")?;

    let id = match id {
        Value::String(id) if id.is_empty() => {
            return Err(invalid(Some("id"), "must not be empty".into()));
        }
        Value::String(id) if id.len() > MAX_EVENT_ID_BYTES => {
            return Err(invalid(
                Some("id"),
                format!("is {} bytes; the limit is {MAX_EVENT_ID_BYTES}", id.len()),
            ));
        }
        Value::String(id) => id,
        other => {
            return Err(invalid(
                Some("id"),
                format!("expected a string, got {}", kind(&other)),
            ));
        }
    };
    let object = match object {
        Value::String(object) if !object.trim().is_empty() => object,
        Value::String(_) => return Err(invalid(Some("object"), "must not be empty".into())),
        other => {
            return Err(invalid(
                Some("object"),
                format!("expected a string, got {}", kind(&other)),
            ));
        }
    };
    let operation = match operation.as_str() {
        Some("upsert") => Operation::Upsert,
        Some("delete") => Operation::Delete,
        _ => {
            return Err(invalid(
                Some("operation"),
                format!("expected \"upsert\" or \"delete\", got {operation}"),
            ));
        }
    };
    let occurred_at = match occurred_at.as_str().map(str::parse::<Timestamp>) {
        Some(Ok(at)) => at,
        _ => {
            return Err(invalid(
                Some("occurred_at"),
                format!(
                    "expected an RFC 3339 timestamp with an offset such as \
                     \"2026-01-01T00:00:00Z\", got {occurred_at}"
                ),
            ));
        }
    };
    let record: Map<String, Value> = match record {
        Value::Object(record) => record,
        other => {
            return Err(invalid(
                Some("record"),
                format!("expected an object, got {}", kind(&other)),
            ));
        }
    };
    if record.len() > limits.max_event_fields {
        return Err(invalid(
            Some("record"),
            format!(
                "has {} fields; the limit is {} (an sObject has at most 800 custom fields)",
                record.len(),
                limits.max_event_fields
            ),
        ));
    }
    let depth = nesting_depth(&record);
    if depth > limits.max_record_depth {
        return Err(invalid(
            Some("record"),
            format!(
                "nests {depth} levels deep; the limit is {}",
                limits.max_record_depth
            ),
        ));
    }
    Ok(OutboundEvent {
        id,
        object,
        operation,
        occurred_at,
        record,
    })
}

/// Levels of objects and arrays in `record`, itself counting as one. Iterative, so no input
/// can exhaust the stack.
fn nesting_depth(record: &Map<String, Value>) -> usize {
    let mut deepest = 1;
    let mut pending: Vec<(&Value, usize)> = record.values().map(|v| (v, 2)).collect();
    while let Some((value, depth)) = pending.pop() {
        match value {
            Value::Object(map) => {
                deepest = deepest.max(depth);
                pending.extend(map.values().map(|v| (v, depth + 1)));
            }
            Value::Array(items) => {
                deepest = deepest.max(depth);
                pending.extend(items.iter().map(|v| (v, depth + 1)));
            }
            _ => {}
        }
    }
    deepest
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub(super) fn unknown_installation(installation: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "unknown_installation",
        format!("this host serves no installation {installation:?}"),
    )
}

fn too_large(limit: usize) -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the request body exceeds {limit} bytes; split the batch into smaller requests"),
    )
}

pub(super) fn error(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        axum::Json(json!({"error": code, "message": message})),
    )
        .into_response()
}

pub(super) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
