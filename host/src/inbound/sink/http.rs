//! Delivery to the vendor's HTTP endpoint: batches POSTed as JSON, retried with backoff.
//!
//! Body: `{"installation": "...", "records": [Delivery, …]}`, each record as the NDJSON sink
//! writes it. Each record carries its
//! idempotency key and the request carries one for the batch (`Idempotency-Key`, a hash of
//! the records' keys), so an endpoint can drop a retried batch or record it already has.
//! Retried: connection failures, timeouts, 408, 429 and 5xx (honouring `Retry-After`);
//! any other status is a refusal that stops the sync with the endpoint's answer, since
//! retrying cannot fix it and skipping would lose records.

use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::watch;

use super::{Deliveries, DeliveryRef, SinkError};
use crate::retry::{BackoffPolicy, Jitter, parse_retry_after};

/// Attempts per batch before the sync stops (and resumes from its checkpoint later). 8
/// attempts with doubling waits span about two minutes: a deploy or a brief outage on the
/// vendor's side, not a long one.
const ATTEMPTS: u32 = 8;

/// Waits from 250 ms doubling to 30 s; see [`crate::retry`].
fn policy() -> BackoffPolicy {
    BackoffPolicy {
        base: Duration::from_millis(250),
        cap: Duration::from_secs(30),
        max_attempts: ATTEMPTS,
    }
}

pub struct HttpSink {
    http: reqwest::Client,
    url: String,
    token: Option<String>,
    batch: usize,
    installation: String,
    /// Once true, a wait before a retry ends at once with [`SinkError::Stopped`]: an
    /// endpoint's `Retry-After` of an hour must not hold up the host's stop.
    stop: Option<watch::Receiver<bool>>,
}

impl HttpSink {
    pub fn new(
        url: &str,
        token: Option<String>,
        batch: usize,
        installation: &str,
    ) -> Result<Self, SinkError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("weft/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SinkError::Unavailable {
                attempts: 0,
                last: format!("HTTP client: {e}"),
            })?;
        Ok(HttpSink {
            http,
            url: url.to_owned(),
            token,
            batch: batch.max(1),
            installation: installation.to_owned(),
            stop: None,
        })
    }

    /// Ends retry waits when `stop` turns true, with [`SinkError::Stopped`].
    pub fn stop_on(&mut self, stop: watch::Receiver<bool>) {
        self.stop = Some(stop);
    }

    pub async fn deliver(&mut self, deliveries: &Deliveries) -> Result<(), SinkError> {
        let all: Vec<DeliveryRef<'_>> = deliveries.iter().collect();
        for chunk in all.chunks(self.batch) {
            self.post(chunk).await?;
        }
        Ok(())
    }

    async fn post(&self, chunk: &[DeliveryRef<'_>]) -> Result<(), SinkError> {
        // The records are already JSON: the body is put together around them.
        let mut body = b"{\"installation\":".to_vec();
        serde_json::to_writer(&mut body, &self.installation)?;
        body.extend_from_slice(b",\"records\":[");
        let mut hasher = blake3::Hasher::new();
        for (i, d) in chunk.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(d.json);
            hasher.update(d.idempotency_key.as_bytes());
            hasher.update(b"\n");
        }
        body.extend_from_slice(b"]}");
        let body = bytes::Bytes::from(body);
        let batch_key = hasher.finalize().to_hex().to_string();
        let mut last = String::new();
        let policy = policy();
        let mut jitter = Jitter::from_clock();
        for attempt in 0..ATTEMPTS {
            let mut request = self
                .http
                .post(&self.url)
                .header("content-type", "application/json")
                .header("idempotency-key", &batch_key)
                .body(body.clone());
            if let Some(token) = &self.token {
                request = request.bearer_auth(token);
            }
            let retry_after = match request.send().await {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response) => {
                    let status = response.status().as_u16();
                    let retry_after = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| parse_retry_after(v, Timestamp::now()));
                    let text = response.text().await.unwrap_or_default();
                    let text: String = text.chars().take(500).collect();
                    if !(status == 408 || status == 429 || status >= 500) {
                        return Err(SinkError::Refused { status, body: text });
                    }
                    last = format!("{status}: {text}");
                    retry_after
                }
                Err(e) => {
                    last = e.to_string();
                    None
                }
            };
            if attempt + 1 < ATTEMPTS {
                // Full jitter, so many installations retrying one endpoint spread out;
                // `Retry-After` (seconds or a date) is a floor, as for Salesforce.
                let wait = policy.delay(attempt, retry_after, &mut jitter);
                tracing::warn!(attempt = attempt + 1, error = %last, wait_ms = wait.as_millis() as u64, "sink endpoint failed; retrying");
                self.wait(wait).await?;
            }
        }
        Err(SinkError::Unavailable {
            attempts: ATTEMPTS,
            last,
        })
    }

    /// Sleeps `wait` before a retry, or less when the sync is asked to stop meanwhile.
    async fn wait(&self, wait: Duration) -> Result<(), SinkError> {
        let Some(mut stop) = self.stop.clone() else {
            tokio::time::sleep(wait).await;
            return Ok(());
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => Ok(()),
            _ = stop.wait_for(|stopping| *stopping) => Err(SinkError::Stopped),
        }
    }
}
