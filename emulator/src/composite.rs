//! The Composite API: `POST /composite` runs up to 25 REST subrequests in order, with
//! `@{referenceId.path}` references to earlier results and `allOrNone`.
//!
//! Owns subrequest parsing, reference substitution, the response envelope
//! (`{"compositeResponse":[{body, httpHeaders, httpStatusCode, referenceId}]}`, always `200`)
//! and the transaction: with `allOrNone` every write of the request is undone when one
//! subrequest fails, and change events are only published once everything has committed.
//! Subrequests go through the same handlers as top-level calls; they are not counted as
//! separate API calls (Salesforce counts the composite request once).

use crate::auth::Session;
use crate::error::ApiError;
use crate::http::{self, Req, Resp};
use crate::org::Org;
use crate::rest;
use crate::writes;
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// Subrequests per composite request (Salesforce's limit).
pub const MAX_SUBREQUESTS: usize = 25;

fn halted(message: &str) -> Value {
    json!([{"errorCode": "PROCESSING_HALTED", "message": message}])
}

/// Resolves `ref.a.b[0].c` against the stored bodies.
fn lookup<'a>(results: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut cur = results.get(parts.next()?)?;
    for p in parts {
        let (key, idx) = match p.split_once('[') {
            Some((k, rest)) => (k, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (p, None),
        };
        if !key.is_empty() {
            cur = cur.get(key)?;
        }
        if let Some(i) = idx {
            cur = cur.get(i)?;
        }
    }
    Some(cur)
}

/// Replaces every `@{…}` in `text`; `Err(name)` names the first unresolvable reference.
fn substitute(text: &str, results: &Map<String, Value>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("@{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let name = &after[..end];
        match lookup(results, name) {
            Some(Value::String(s)) => out.push_str(s),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => out.push_str(&v.to_string()),
            _ => return Err(name.to_string()),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

pub async fn run(
    org: &Arc<Org>,
    req: &Req,
    session: &Session,
    origin: &str,
) -> Result<Resp, ApiError> {
    let body = req.json()?;
    let all_or_none = body["allOrNone"].as_bool().unwrap_or(false);
    let subs = body["compositeRequest"]
        .as_array()
        .cloned()
        .ok_or_else(|| ApiError::json_parser("compositeRequest is required"))?;
    if subs.len() > MAX_SUBREQUESTS {
        return Err(ApiError::new(
            400,
            "INVALID_BATCH_REQUEST",
            format!(
                "Composite request has {} subrequests; the limit is {MAX_SUBREQUESTS}",
                subs.len()
            ),
        ));
    }
    let org2 = org.clone();
    let session2 = session.clone();
    let origin2 = origin.to_string();
    let (responses, tx) = writes::transaction(async move {
        let mut results = Map::new();
        let mut responses: Vec<Value> = Vec::new();
        let mut failed = false;
        for sub in &subs {
            let reference = sub["referenceId"].as_str().unwrap_or_default().to_string();
            if failed && all_or_none {
                responses.push(json!({"body": halted("The transaction was rolled back since another operation in the same transaction failed."),
                    "httpHeaders": {}, "httpStatusCode": 400, "referenceId": reference}));
                continue;
            }
            let (status, out) = match one(&org2, sub, &results, &session2, &origin2).await {
                Ok(x) => x,
                Err((status, v)) => (status, v),
            };
            if status >= 400 {
                failed = true;
            } else if !reference.is_empty() {
                results.insert(reference.clone(), out.clone());
            }
            responses.push(json!({"body": out, "httpHeaders": {}, "httpStatusCode": status, "referenceId": reference}));
        }
        (responses, failed)
    })
    .await;
    let (mut responses, failed) = responses;
    let mut store = org
        .store
        .write()
        .map_err(|_| ApiError::new(500, "UNKNOWN_EXCEPTION", "store lock poisoned"))?;
    if failed && all_or_none {
        writes::rollback(&mut store, tx.undo);
        for r in responses.iter_mut() {
            if r["httpStatusCode"].as_u64().is_some_and(|s| s < 400) {
                r["httpStatusCode"] = json!(400);
                r["body"] = halted(
                    "The transaction was rolled back since another operation in the same transaction failed.",
                );
            }
        }
    } else {
        for (change, origin, user) in &tx.deferred {
            org.committed(&store, std::slice::from_ref(change), origin, *user);
        }
    }
    drop(store);
    Ok(http::json(200, &json!({"compositeResponse": responses})))
}

type SubResult = Result<(u16, Value), (u16, Value)>;

async fn one(
    org: &Arc<Org>,
    sub: &Value,
    results: &Map<String, Value>,
    session: &Session,
    origin: &str,
) -> SubResult {
    let bad = |status: u16, code: &str, msg: String| {
        Err((status, json!([{"errorCode": code, "message": msg}])))
    };
    let method = sub["method"].as_str().unwrap_or("GET").to_ascii_uppercase();
    let raw_url = sub["url"].as_str().unwrap_or_default();
    let url = match substitute(raw_url, results) {
        Ok(u) => u,
        Err(name) => {
            return bad(
                400,
                "PROCESSING_HALTED",
                format!("Invalid reference specified. No value for {name} found"),
            );
        }
    };
    let body_text = match sub.get("body") {
        Some(b) if !b.is_null() => match substitute(&b.to_string(), results) {
            Ok(t) => t,
            Err(name) => {
                return bad(
                    400,
                    "PROCESSING_HALTED",
                    format!("Invalid reference specified. No value for {name} found"),
                );
            }
        },
        _ => String::new(),
    };
    let (path, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
    let segs = http::segments(path);
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let (major, version, rest_segs) = match s.as_slice() {
        ["services", "data", v, rest @ ..] => match rest::parse_version(v) {
            Some((m, ver)) => (
                m,
                ver,
                rest.iter().map(|x| x.to_string()).collect::<Vec<_>>(),
            ),
            None => {
                return bad(
                    404,
                    "NOT_FOUND",
                    "The requested resource does not exist".into(),
                );
            }
        },
        _ => {
            return bad(
                400,
                "INVALID_BATCH_REQUEST",
                format!("Invalid subrequest url: {url}"),
            );
        }
    };
    if rest_segs.first().map(String::as_str) == Some("composite") && rest_segs.len() == 1 {
        return bad(
            400,
            "INVALID_BATCH_REQUEST",
            "Composite requests cannot be nested".into(),
        );
    }
    let mut headers = hyper::HeaderMap::new();
    if let Some(h) = sub["httpHeaders"].as_object() {
        for (k, v) in h {
            if let (Ok(k), Some(Ok(v))) = (
                k.parse::<hyper::header::HeaderName>(),
                v.as_str().map(|v| v.parse()),
            ) {
                headers.insert(k, v);
            }
        }
    }
    let req = Req {
        method: method.parse().unwrap_or(hyper::Method::GET),
        segs: rest_segs,
        query: http::query_pairs(Some(query)),
        headers,
        body: bytes::Bytes::from(body_text),
    };
    let resp = match Box::pin(rest::dispatch(org, req, major, &version, session, origin)).await {
        Ok(r) => r,
        Err(e) => {
            return Err((
                e.status,
                serde_json::from_slice(&e.body()).unwrap_or(Value::Null),
            ));
        }
    };
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), 64 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let v = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    };
    if status >= 400 {
        Err((status, v))
    } else {
        Ok((status, v))
    }
}
