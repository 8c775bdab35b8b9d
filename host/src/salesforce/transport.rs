//! The request loop every API call goes through.
//!
//! Owns, for one request: admission by the governor, the session (login on first use, one
//! re-login on `INVALID_SESSION_ID`), building and sending the HTTP request (gzip body,
//! `Sforce-Call-Options`), learning `Sforce-Limit-Info`, and the retry decision (backoff with
//! jitter and `Retry-After`, pause on an exhausted quota, breaker reporting). It returns the
//! response or a final typed error; it never returns "nothing".

use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderValue};
use tracing::Instrument;

use super::Inner;
use super::auth::{self, Session};
use super::error::{Disposition, SalesforceError};
use crate::retry::{parse_http_date, parse_retry_after};
use crate::throttle::{Permit, Project};

/// One logical API request (re-sent as-is on retry).
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub project: Project,
    /// Metric label, e.g. `query`, `collections.upsert`, `bulk.query.results`.
    pub kind: &'static str,
    pub method: Method,
    /// Absolute path under the instance URL, starting `/services/`.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub body: Option<(Bytes, &'static str)>,
    pub accept: Option<&'static str>,
    pub headers: Vec<(&'static str, String)>,
}

impl Call {
    pub fn new(project: Project, kind: &'static str, method: Method, path: String) -> Self {
        Call {
            project,
            kind,
            method,
            path,
            query: Vec::new(),
            body: None,
            accept: None,
            headers: Vec::new(),
        }
    }

    pub fn query(mut self, k: &str, v: impl Into<String>) -> Self {
        self.query.push((k.to_string(), v.into()));
        self
    }

    pub fn json(mut self, v: &serde_json::Value) -> Self {
        self.body = Some((Bytes::from(v.to_string()), "application/json"));
        self
    }

    pub fn body(mut self, b: Bytes, content_type: &'static str) -> Self {
        self.body = Some((b, content_type));
        self
    }

    pub fn accept(mut self, a: &'static str) -> Self {
        self.accept = Some(a);
        self
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Whether a `304 Not Modified` is an answer to this call rather than an error.
    fn is_conditional(&self) -> bool {
        self.headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("if-modified-since"))
    }
}

/// A fully read response.
#[derive(Debug)]
pub(crate) struct Reply {
    pub body: Bytes,
    /// `304`: the call was conditional and the resource has not changed (empty body).
    pub not_modified: bool,
    /// The org's `Date` header.
    pub date: Option<String>,
}

impl Reply {
    pub fn json<T: serde::de::DeserializeOwned>(
        &self,
        context: &str,
    ) -> Result<T, SalesforceError> {
        serde_json::from_slice(&self.body).map_err(|e| SalesforceError::Decode {
            context: context.to_string(),
            message: e.to_string(),
        })
    }
}

/// A response whose body is still on the wire; `permit` is held until it is dropped.
#[derive(Debug)]
pub(crate) struct StreamReply {
    pub response: reqwest::Response,
    pub permit: Permit,
}

enum Got {
    Full(Reply),
    Stream(reqwest::Response),
}

/// Parses `Sforce-Limit-Info: api-usage=18/5000; per-app-api-usage=…` into (used, max).
pub fn parse_limit_info(v: &str) -> Option<(u64, u64)> {
    v.split(';').find_map(|part| {
        let (used, max) = part.trim().strip_prefix("api-usage=")?.split_once('/')?;
        Some((used.trim().parse().ok()?, max.trim().parse().ok()?))
    })
}

impl Inner {
    pub(crate) async fn session(&self) -> Result<Session, SalesforceError> {
        if let Some(s) = self.current_session() {
            return Ok(s);
        }
        let _g = self.login_lock.lock().await;
        if let Some(s) = self.current_session() {
            return Ok(s);
        }
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        let s = auth::login(
            &self.http,
            &self.config.login_url,
            &self.config.credentials,
            generation,
            self.config.request_timeout,
        )
        .instrument(
            tracing::info_span!("salesforce.login", installation = %self.config.installation),
        )
        .await?;
        tracing::info!(installation = %self.config.installation, instance_url = %s.instance_url, "logged in");
        if let Ok(mut w) = self.session.write() {
            *w = Some(s.clone());
        }
        Ok(s)
    }

    fn current_session(&self) -> Option<Session> {
        self.session.read().ok().and_then(|s| s.clone())
    }

    /// Drops the session `generation` (if still current) so the next request logs in again.
    fn invalidate(&self, generation: u64) {
        if let Ok(mut w) = self.session.write()
            && w.as_ref().is_some_and(|s| s.generation == generation)
        {
            *w = None;
        }
    }

    fn build(
        &self,
        call: &Call,
        session: &Session,
    ) -> Result<reqwest::RequestBuilder, SalesforceError> {
        let url = format!("{}{}", session.instance_url, call.path);
        let mut rb = self
            .http
            .request(call.method.clone(), url)
            .bearer_auth(session.access_token.expose())
            .header(
                "Sforce-Call-Options",
                format!("client={}", self.config.client_name),
            );
        if !call.query.is_empty() {
            rb = rb.query(&call.query);
        }
        if let Some(a) = call.accept {
            rb = rb.header(reqwest::header::ACCEPT, a);
        }
        for (k, v) in &call.headers {
            rb = rb.header(*k, v);
        }
        if let Some((body, ct)) = &call.body {
            rb = rb.header(reqwest::header::CONTENT_TYPE, HeaderValue::from_static(ct));
            if self.config.gzip_requests && body.len() >= self.config.gzip_min_bytes {
                let mut enc = flate2::write::GzEncoder::new(
                    Vec::with_capacity(body.len() / 4),
                    flate2::Compression::fast(),
                );
                let gz = enc
                    .write_all(body)
                    .and_then(|_| enc.finish())
                    .map_err(|e| SalesforceError::Config(format!("gzip: {e}")))?;
                rb = rb
                    .header(reqwest::header::CONTENT_ENCODING, "gzip")
                    .body(gz);
            } else {
                rb = rb.body(body.clone());
            }
        }
        Ok(rb)
    }

    fn learn(&self, headers: &HeaderMap) {
        if let Some((used, max)) = headers
            .get("sforce-limit-info")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_limit_info)
        {
            self.governor.observe_usage(used, max);
        }
    }

    /// `Retry-After` of an error response. An HTTP-date is measured from the response's own
    /// `Date` (the server's clock) when present, so skew between our clock and the org's
    /// cannot stretch or cancel the wait.
    fn retry_after(&self, headers: &HeaderMap) -> Option<Duration> {
        let value = headers.get("retry-after")?.to_str().ok()?;
        let reference = headers
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_http_date)
            .unwrap_or_else(|| self.governor.clock().now());
        parse_retry_after(value, reference)
    }

    /// Sends `call` and reads the whole body (a broken-off body is retried too).
    pub(crate) async fn execute(&self, call: &Call) -> Result<Reply, SalesforceError> {
        match self.run(call, false).await? {
            (Got::Full(r), permit) => {
                permit.success();
                Ok(r)
            }
            (Got::Stream(_), _) => Err(SalesforceError::Config(
                "internal: streamed reply to a full request".into(),
            )),
        }
    }

    /// Sends `call` and returns as soon as the headers are in; the caller streams the body.
    pub(crate) async fn execute_stream(&self, call: &Call) -> Result<StreamReply, SalesforceError> {
        match self.run(call, true).await? {
            (Got::Stream(response), permit) => Ok(StreamReply { response, permit }),
            (Got::Full(_), _) => Err(SalesforceError::Config(
                "internal: full reply to a streamed request".into(),
            )),
        }
    }

    async fn run(&self, call: &Call, stream: bool) -> Result<(Got, Permit), SalesforceError> {
        let span = tracing::debug_span!("salesforce.request", installation = %self.config.installation, kind = call.kind, project = call.project.as_str());
        async {
            let gov = &self.governor;
            let telemetry = gov.telemetry().clone();
            let max_attempts = gov.backoff_policy().max_attempts.max(1);
            let mut attempts = 0u32;
            let mut reauthed = false;
            loop {
                let permit = gov
                    .admit(call.project)
                    .await
                    .map_err(|_| SalesforceError::Stopped)?;
                attempts += 1;
                let mut generation = None;
                let outcome: Result<Got, SalesforceError> = async {
                    let session = self.session().await?;
                    generation = Some(session.generation);
                    let mut rb = self.build(call, &session)?;
                    if !stream {
                        rb = rb.timeout(self.config.request_timeout);
                    }
                    telemetry.api_call(call.kind);
                    let resp = rb.send().await.map_err(|e| SalesforceError::transport(&e))?;
                    self.learn(resp.headers());
                    let status = resp.status().as_u16();
                    let date = resp
                        .headers()
                        .get(reqwest::header::DATE)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    if status == 304 && call.is_conditional() {
                        return Ok(Got::Full(Reply { body: Bytes::new(), not_modified: true, date }));
                    }
                    if !(200..300).contains(&status) {
                        let ra = self.retry_after(resp.headers());
                        let body = resp.bytes().await.map_err(|e| SalesforceError::transport(&e))?;
                        return Err(SalesforceError::from_response(status, &body, ra));
                    }
                    if stream {
                        return Ok(Got::Stream(resp));
                    }
                    let body = resp.bytes().await.map_err(|e| SalesforceError::transport(&e))?;
                    Ok(Got::Full(Reply { body, not_modified: false, date }))
                }
                .await;
                let e = match outcome {
                    Ok(got) => return Ok((got, permit)),
                    Err(e) => e,
                };
                telemetry.api_error(&e.metric_code());
                let disposition = e.disposition();
                if disposition == Disposition::Reauthenticate && !reauthed {
                    reauthed = true;
                    permit.success();
                    if let Some(g) = generation {
                        self.invalidate(g);
                    }
                    telemetry.retry("INVALID_SESSION_ID");
                    tracing::info!("session expired; logging in again");
                    // Re-login is immediate and does not use up an attempt.
                    attempts -= 1;
                    continue;
                }
                let reason = match disposition {
                    Disposition::Retry { reason } => {
                        permit.failure(&reason);
                        reason
                    }
                    Disposition::QuotaExhausted => {
                        gov.observe_quota_exhausted();
                        permit.success();
                        "quota_exhausted".to_string()
                    }
                    Disposition::Reauthenticate | Disposition::Final => {
                        // A client error says nothing about the org's health.
                        permit.success();
                        telemetry.final_failure();
                        return Err(e);
                    }
                };
                if attempts >= max_attempts {
                    telemetry.final_failure();
                    tracing::warn!(attempts, error = %e, "giving up");
                    return Err(SalesforceError::RetriesExhausted { attempts, last: Box::new(e) });
                }
                let delay = gov.backoff(attempts - 1, e.retry_after(), &reason);
                tracing::warn!(reason = %reason, attempt = attempts, delay_ms = delay.as_millis() as u64, error = %e, "retrying");
                gov.pause(delay).await;
            }
        }
        .instrument(span)
        .await
    }

    /// Sleeps on the governor's clock (poll intervals and record-level retries), without
    /// the unit's scheduler worker when long.
    pub(crate) async fn sleep(&self, d: Duration) {
        self.governor.pause(d).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_info_parsing() {
        assert_eq!(parse_limit_info("api-usage=18/5000"), Some((18, 5000)));
        assert_eq!(
            parse_limit_info(
                "api-usage=25/5000; per-app-api-usage=17/250(appName=sample-connected-app)"
            ),
            Some((25, 5000))
        );
        assert_eq!(
            parse_limit_info("per-app-api-usage=17/250(appName=x); api-usage=3/9"),
            Some((3, 9))
        );
        assert_eq!(parse_limit_info("api-usage=x/5000"), None);
        assert_eq!(parse_limit_info(""), None);
    }
}
