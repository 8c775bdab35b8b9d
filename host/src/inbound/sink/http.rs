//! Delivery to the vendor's HTTP endpoint: batches POSTed as JSON, retried with backoff.
//!
//! Body: `{"installation": "...", "records": [Delivery, …]}`. Each record carries its
//! idempotency key and the request carries one for the batch (`Idempotency-Key`, a hash of
//! the records' keys), so an endpoint can drop a retried batch or record it already has.
//! Retried: connection failures, timeouts, 408, 429 and 5xx (honouring `Retry-After`);
//! any other status is a refusal that stops the sync with the endpoint's answer, since
//! retrying cannot fix it and skipping would lose records.

use std::time::Duration;

use serde_json::json;

use super::{Delivery, SinkError};

/// Attempts per batch before the sync stops (and resumes from its checkpoint later). 8
/// attempts with doubling waits span about two minutes: a deploy or a brief outage on the
/// vendor's side, not a long one.
const ATTEMPTS: u32 = 8;
const FIRST_WAIT: Duration = Duration::from_millis(250);
const MAX_WAIT: Duration = Duration::from_secs(30);

pub struct HttpSink {
    http: reqwest::Client,
    url: String,
    token: Option<String>,
    batch: usize,
    installation: String,
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
        })
    }

    pub async fn deliver(&mut self, deliveries: &[Delivery]) -> Result<(), SinkError> {
        for chunk in deliveries.chunks(self.batch) {
            self.post(chunk).await?;
        }
        Ok(())
    }

    async fn post(&self, chunk: &[Delivery]) -> Result<(), SinkError> {
        let body = serde_json::to_vec(&json!({
            "installation": self.installation,
            "records": chunk,
        }))?;
        let mut hasher = blake3::Hasher::new();
        for d in chunk {
            hasher.update(d.idempotency_key.as_bytes());
            hasher.update(b"\n");
        }
        let batch_key = hasher.finalize().to_hex().to_string();
        let mut last = String::new();
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
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(|s| Duration::from_secs(s.min(300)));
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
                let ceiling = FIRST_WAIT
                    .saturating_mul(1 << attempt.min(16))
                    .min(MAX_WAIT);
                // Full jitter, so many installations retrying one endpoint spread out; drawn
                // from the batch key, which differs per batch and installation.
                let jittered = ceiling.mul_f64(jitter(&batch_key, attempt));
                let wait = retry_after.unwrap_or(jittered);
                tracing::warn!(attempt = attempt + 1, error = %last, wait_ms = wait.as_millis() as u64, "sink endpoint failed; retrying");
                tokio::time::sleep(wait).await;
            }
        }
        Err(SinkError::Unavailable {
            attempts: ATTEMPTS,
            last,
        })
    }
}

/// A fraction in [0, 1) derived from the batch key and the attempt.
fn jitter(batch_key: &str, attempt: u32) -> f64 {
    let hash = blake3::hash(format!("{batch_key}/{attempt}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&hash.as_bytes()[..8]);
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}
