//! HTTP plumbing shared by every endpoint: the parsed request, response builders, and the
//! body type.
//!
//! Owns how a request is seen by handlers (method, path segments, decoded query pairs,
//! headers, collected body) and how JSON/CSV/empty responses are built with Salesforce's
//! content types. It must never contain endpoint logic.

use crate::error::ApiError;
use axum::body::Body;
use bytes::Bytes;
use hyper::{HeaderMap, Method, Response, StatusCode};

pub type Resp = Response<Body>;

/// A request after routing has split it up.
#[derive(Debug)]
pub struct Req {
    pub method: Method,
    /// Path segments after the route prefix, percent-decoded, without empty segments.
    pub segs: Vec<String>,
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Req {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as a JSON value, or Salesforce's `JSON_PARSER_ERROR`.
    pub fn json(&self) -> Result<serde_json::Value, ApiError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            ApiError::json_parser(format!(
                "Unexpected character ('{}'): {e}",
                self.body.first().map(|&b| b as char).unwrap_or(' ')
            ))
        })
    }
}

pub const JSON: &str = "application/json;charset=UTF-8";

pub fn bytes_response(status: u16, content_type: &str, body: impl Into<Body>) -> Resp {
    let mut r = Response::new(body.into());
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

pub fn json_bytes(status: u16, body: Vec<u8>) -> Resp {
    bytes_response(status, JSON, body)
}

pub fn json(status: u16, v: &serde_json::Value) -> Resp {
    json_bytes(status, serde_json::to_vec(v).unwrap_or_default())
}

pub fn empty(status: u16) -> Resp {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::NO_CONTENT);
    r
}

pub fn error(e: &ApiError) -> Resp {
    let mut r = json_bytes(e.status, e.body());
    for (k, v) in &e.headers {
        if let (Ok(k), Ok(v)) = (k.parse::<hyper::header::HeaderName>(), v.parse()) {
            r.headers_mut().insert(k, v);
        }
    }
    r
}

pub fn set_header(r: &mut Resp, name: &'static str, value: &str) {
    if let Ok(v) = value.parse() {
        r.headers_mut().insert(name, v);
    }
}

/// Splits a path into percent-decoded segments, dropping empty ones (so trailing slashes and
/// doubled slashes route the same).
pub fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect()
}

pub fn query_pairs(q: Option<&str>) -> Vec<(String, String)> {
    q.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// `Method` is not `Copy`; handlers compare against these.
pub fn is(m: &Method, name: &str) -> bool {
    m.as_str() == name
}
