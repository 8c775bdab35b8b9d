//! The HTTP(S) server: accept loop, per-request pipeline, connection resets.
//!
//! Owns the order in which every API request is treated — version check, session, the
//! concurrent long-running cap, injected faults (delay, reset, error), the daily allocation,
//! the per-client count, dispatch, and `Sforce-Limit-Info: api-usage=N/M` on the way out —
//! and the unauthenticated edges (`/services/data/` version list, OAuth, identity, admin).
//! Each request first finds its org (`orgs`): an API call by the org id its token starts
//! with, a login by its credential, an admin call by its `/__admin/orgs/{k}` prefix.
//! Any Host header is accepted; trailing slashes do not matter. A reset fault closes the TCP
//! connection with RST before any response byte; a body-reset fault (Bulk result downloads)
//! does the same once part of the body is out. Every connection's response heads go out
//! with Salesforce's header-name spelling (`header_case`). It never holds the store lock
//! itself.

use crate::error::ApiError;
use crate::faults::BodyReset;
use crate::header_case::{HeaderCase, PendingRequests};
use crate::http::{self, Req, Resp, is};
use crate::org::Org;
use crate::orgs::Orgs;
use crate::rest;
use crate::stats::client_name;
use axum::body::Body;
use futures_util::StreamExt;
use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio_rustls::TlsAcceptor;

/// Largest request body accepted: Bulk ingest uploads may be 150 MB after encoding; clients
/// cap raw CSV at 100 MB, so this leaves room without letting a runaway client exhaust memory.
const MAX_BODY: usize = 160 * 1024 * 1024;

pub async fn serve(
    listener: TcpListener,
    orgs: Arc<Orgs>,
    tls: Option<TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                match accepted {
                    Ok((stream, peer)) => {
                        tokio::spawn(connection(stream, peer, orgs.clone(), tls.clone(), shutdown.clone()));
                    }
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    }
                }
            }
            _ = shutdown.changed() => break,
        }
    }
}

/// Serves one connection until the client closes it, a reset fault fires, or the org shuts
/// down (so a dropped handle frees its org even while clients keep idle connections).
async fn connection(
    stream: TcpStream,
    _peer: SocketAddr,
    orgs: Arc<Orgs>,
    tls: Option<TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    // A duplicate of the socket lets a reset fault set SO_LINGER=0 after hyper owns the
    // stream, so the close turns into a real RST.
    let (stream, dup) = match stream.into_std().and_then(|s| {
        let d = s.try_clone()?;
        Ok((s, d))
    }) {
        Ok((s, d)) => match TcpStream::from_std(s) {
            Ok(s) => (s, d),
            Err(_) => return,
        },
        Err(_) => return,
    };
    let kill = Arc::new(Notify::new());
    let k2 = kill.clone();
    let pending = Arc::new(PendingRequests::default());
    let p2 = pending.clone();
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        p2.push(req.method());
        let orgs = orgs.clone();
        let kill = k2.clone();
        async move { Ok::<_, Infallible>(handle(orgs, kill, req).await) }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let reset = || {
        let _ = socket2::SockRef::from(&dup).set_linger(Some(std::time::Duration::ZERO));
    };
    match tls {
        None => {
            let conn =
                builder.serve_connection(TokioIo::new(HeaderCase::new(stream, pending)), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = kill.notified() => reset(),
                _ = shutdown.changed() => {}
            }
        }
        Some(acceptor) => {
            let Ok(tls_stream) = acceptor.accept(stream).await else {
                return;
            };
            let conn =
                builder.serve_connection(TokioIo::new(HeaderCase::new(tls_stream, pending)), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = kill.notified() => reset(),
                _ = shutdown.changed() => {}
            }
        }
    }
    drop(dup);
}

async fn handle(orgs: Arc<Orgs>, kill: Arc<Notify>, req: Request<Incoming>) -> Resp {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(Body::new(body), MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return http::error(&ApiError::new(
                413,
                "REQUEST_TOO_LARGE",
                "request body too large",
            ));
        }
    };
    // Salesforce accepts gzip-compressed request bodies (`Content-Encoding: gzip`), which
    // clients use for large Bulk uploads.
    let gzipped = parts
        .headers
        .get(hyper::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    let body = if gzipped && !body.is_empty() {
        let mut out = Vec::new();
        let mut dec = flate2::read::GzDecoder::new(&body[..]).take(MAX_BODY as u64 + 1);
        match std::io::Read::read_to_end(&mut dec, &mut out) {
            Ok(n) if n <= MAX_BODY => {
                let org = orgs
                    .by_token(
                        parts
                            .headers
                            .get(hyper::header::AUTHORIZATION)
                            .and_then(|v| v.to_str().ok()),
                    )
                    .unwrap_or_else(|| orgs.first().clone());
                org.stats.gzip_request_body();
                bytes::Bytes::from(out)
            }
            _ => {
                return http::error(&ApiError::new(
                    400,
                    "INVALID_CONTENT_ENCODING",
                    "the request body is not valid gzip",
                ));
            }
        }
    } else {
        body
    };
    let segs = http::segments(parts.uri.path());
    let req = Req {
        method: parts.method,
        segs: Vec::new(),
        query: http::query_pairs(parts.uri.query()),
        headers: parts.headers,
        body,
    };
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    match s.as_slice() {
        ["services", "data"] => rest::versions(),
        ["services", "data", v, rest @ ..] => {
            let rest: Vec<String> = rest.iter().map(|x| x.to_string()).collect();
            api(&orgs, &kill, req, v, rest).await
        }
        ["services", "oauth2", "token"] if is(&req.method, "POST") => token(&orgs, &req).await,
        ["services", "oauth2", "revoke"] if is(&req.method, "POST") || is(&req.method, "GET") => {
            let revoke = |t: &str| {
                if let Some(org) = orgs.by_bare_token(t.trim()) {
                    org.auth.revoke(t);
                }
            };
            if let Some(t) = req.param("token") {
                revoke(t);
            } else if let Ok(s) = std::str::from_utf8(&req.body) {
                for (k, v) in form_urlencoded::parse(s.as_bytes()) {
                    if k == "token" {
                        revoke(&v);
                    }
                }
            }
            http::empty(200)
        }
        ["services", "oauth2", "userinfo"] | ["id", _, _] => {
            match orgs.by_token(req.header("authorization")) {
                Some(org) => identity(&org, &req),
                None => http::error(&ApiError::invalid_session()),
            }
        }
        ["services", "Soap", "u", v, ..] if is(&req.method, "POST") => {
            let body = String::from_utf8_lossy(&req.body);
            let Some(org) = orgs.get_async(orgs.soap_login_index(&body)).await else {
                return http::error(&ApiError::not_found());
            };
            org.stats.token();
            let (status, xml) = org.auth.soap_login(&body, &org.base_url(), v);
            http::bytes_response(status, "text/xml;charset=UTF-8", xml)
        }
        ["__admin", "orgs"] if is(&req.method, "GET") => crate::admin::list_orgs(&orgs),
        ["__admin", "orgs", k, rest @ ..] => {
            let found = match k.parse::<usize>() {
                Ok(k) => orgs.get_async(k).await,
                Err(_) => None,
            };
            let Some(org) = found else {
                return http::error(&ApiError::new(
                    404,
                    "ADMIN_ERROR",
                    format!(
                        "unknown org {k} (this emulator serves orgs 0..{})",
                        orgs.len()
                    ),
                ));
            };
            let rest: Vec<String> = rest.iter().map(|x| x.to_string()).collect();
            crate::admin::handle(&org, req, rest).await
        }
        ["__admin", rest @ ..] => {
            let rest: Vec<String> = rest.iter().map(|x| x.to_string()).collect();
            crate::admin::handle(orgs.first(), req, rest).await
        }
        _ => http::error(&ApiError::not_found()),
    }
}

/// The token endpoint: the grant's credential picks the org (built now if first used),
/// whose `Auth` then checks the whole request.
async fn token(orgs: &Arc<Orgs>, req: &Req) -> Resp {
    let form: std::collections::HashMap<String, String> =
        form_urlencoded::parse(&req.body).into_owned().collect();
    let mut form = form;
    for (k, v) in &req.query {
        form.entry(k.clone()).or_insert_with(|| v.clone());
    }
    let basic = crate::auth::basic_pair(req.header("authorization"));
    let Some(org) = orgs
        .get_async(orgs.login_index(&form, basic.as_ref()))
        .await
    else {
        return http::error(&ApiError::not_found());
    };
    org.stats.token();
    match org.auth.token(&form, basic, &org.base_url()) {
        Ok(v) => {
            let grant = form.get("grant_type").map_or("", String::as_str);
            org.stats.granted(grant);
            http::json(200, &v)
        }
        Err(e) => http::json(e.status, &e.body()),
    }
}

fn identity(org: &Arc<Org>, req: &Req) -> Resp {
    match org.auth.validate(req.header("authorization")) {
        Ok(s) => {
            let user = crate::ids::make_id(b"005", s.user_row);
            let base = org.base_url();
            http::json(
                200,
                &serde_json::json!({
                    "sub": format!("{base}/id/{}/{user}", org.org_id),
                    "user_id": user,
                    "organization_id": org.org_id,
                    "preferred_username": org.cfg.credentials.username,
                    "email": org.cfg.credentials.username,
                    "id": format!("{base}/id/{}/{user}", org.org_id),
                    "username": org.cfg.credentials.username,
                    "active": true,
                    "user_type": "STANDARD",
                    "urls": {
                        "rest": format!("{base}/services/data/v{{version}}/"),
                        "query": format!("{base}/services/data/v{{version}}/query/"),
                        "sobjects": format!("{base}/services/data/v{{version}}/sobjects/"),
                    },
                }),
            )
        }
        Err(e) => http::error(&e),
    }
}

async fn api(
    orgs: &Orgs,
    kill: &Arc<Notify>,
    mut req: Req,
    version_seg: &str,
    rest_segs: Vec<String>,
) -> Resp {
    let Some((major, version)) = rest::parse_version(version_seg) else {
        return http::error(&ApiError::not_found());
    };
    // The token names its org; every check below (session, quota, faults) is that org's.
    let Some(org) = orgs.by_token(req.header("authorization")) else {
        return http::error(&ApiError::invalid_session());
    };
    let org = &org;
    let session = match org.auth.validate(req.header("authorization")) {
        Ok(s) => s,
        Err(e) => return http::error(&e),
    };
    let client = client_name(
        req.header("sforce-call-options"),
        req.header("user-agent"),
        &session.client_id,
    );
    let kind = rest::classify(req.method.as_str(), &rest_segs);
    let _guard = match org.limits.enter() {
        Ok(g) => g,
        Err(e) => {
            org.stats.limit_rejected(true);
            return with_usage(org, http::error(&e));
        }
    };
    let faults = org.faults.draw_request();
    if let Some(d) = faults.delay {
        org.stats.fault("slow");
        tokio::time::sleep(d).await;
    }
    if faults.reset {
        org.stats.fault("reset");
        kill.notify_one();
        std::future::pending::<()>().await;
    }
    if let Some((k, e)) = faults.error {
        org.stats.fault(k);
        return with_usage(org, http::error(&e));
    }
    let served_at = org.clock.now_ms();
    let (used, max) = match org.limits.consume(served_at) {
        Ok(x) => x,
        Err(e) => {
            org.stats.limit_rejected(false);
            return with_usage(org, http::error(&e));
        }
    };
    org.stats.call(kind, &client, served_at);
    org.age_recycle_bin();
    let origin = format!("com/salesforce/api/rest/{version};client={client}");
    let accepts_gzip = req
        .header("accept-encoding")
        .is_some_and(|a| a.split(',').any(|e| e.trim().starts_with("gzip")));
    req.segs = rest_segs;
    let mut resp = match rest::dispatch(org, req, major, &version, &session, &origin).await {
        Ok(r) => r,
        Err(e) => http::error(&e),
    };
    if org.cfg.gzip_responses && accepts_gzip {
        resp = gzip_json(resp).await;
    }
    if resp.extensions().get::<BodyReset>().is_some() {
        resp = reset_on_body_error(resp, kill.clone());
    }
    http::set_header(
        &mut resp,
        "Sforce-Limit-Info",
        &format!("api-usage={used}/{max}"),
    );
    resp
}

/// Turns the planned error at the end of a cut body into a connection reset. The short pause
/// first lets the bytes already written reach the client: an RST discards whatever is still
/// in the socket's send buffer, and the point of the fault is a body that breaks off part-way.
fn reset_on_body_error(resp: Resp, kill: Arc<Notify>) -> Resp {
    let (parts, body) = resp.into_parts();
    let stream = body.into_data_stream().then(move |item| {
        let kill = kill.clone();
        async move {
            match item {
                Ok(b) => Ok::<_, std::io::Error>(b),
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    kill.notify_one();
                    std::future::pending().await
                }
            }
        }
    });
    hyper::Response::from_parts(parts, Body::from_stream(stream))
}

fn with_usage(org: &Org, mut r: Resp) -> Resp {
    let now = org.clock.now_ms();
    http::set_header(
        &mut r,
        "Sforce-Limit-Info",
        &format!("api-usage={}/{}", org.limits.usage(now), org.limits.max()),
    );
    r
}

/// Compresses a JSON response body (responses that already chose an encoding, CSV streams
/// and empty bodies pass through untouched).
async fn gzip_json(resp: Resp) -> Resp {
    let is_json = resp
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json || resp.headers().contains_key(hyper::header::CONTENT_ENCODING) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return http::error(&ApiError::new(
            500,
            "UNKNOWN_EXCEPTION",
            "response body lost",
        ));
    };
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    if std::io::Write::write_all(&mut enc, &bytes).is_err() {
        return hyper::Response::from_parts(parts, Body::from(bytes));
    }
    match enc.finish() {
        Ok(gz) => {
            parts.headers.insert(
                hyper::header::CONTENT_ENCODING,
                hyper::header::HeaderValue::from_static("gzip"),
            );
            parts.headers.remove(hyper::header::CONTENT_LENGTH);
            hyper::Response::from_parts(parts, Body::from(gz))
        }
        Err(_) => hyper::Response::from_parts(parts, Body::from(bytes)),
    }
}
