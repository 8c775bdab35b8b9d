//! Fault injection.
//!
//! Owns the switchboard of deliberate failures (503, 429 + `Retry-After`, connection resets
//! before the response or part-way through a Bulk result body, slow responses, spurious
//! `INVALID_SESSION_ID`, per-record `UNABLE_TO_LOCK_ROW`, Bulk jobs that end `Failed`) and the
//! seeded random draws that decide when they fire. It only decides; the server and handlers
//! carry the faults out and `stats` counts them.

use crate::config::FaultConfig;
use crate::error::ApiError;
use crate::seed::Rng;
use std::sync::{Mutex, RwLock};
use std::time::Duration;

/// What to do to one request, decided before it is served.
#[derive(Debug, Default)]
pub struct RequestFaults {
    pub delay: Option<Duration>,
    pub reset: bool,
    pub error: Option<(&'static str, ApiError)>,
}

#[derive(Debug)]
pub struct Faults {
    cfg: RwLock<FaultConfig>,
    rng: Mutex<Rng>,
}

impl Faults {
    pub fn new(cfg: FaultConfig, seed: u64) -> Self {
        Faults {
            cfg: RwLock::new(cfg),
            rng: Mutex::new(Rng::new(seed ^ 0xFA17)),
        }
    }

    pub fn get(&self) -> FaultConfig {
        self.cfg.read().map(|c| c.clone()).unwrap_or_default()
    }

    pub fn set(&self, cfg: FaultConfig) {
        if let Ok(mut c) = self.cfg.write() {
            *c = cfg;
        }
    }

    fn roll(&self, p: f64) -> bool {
        p > 0.0 && self.rng.lock().map(|mut r| r.chance(p)).unwrap_or(false)
    }

    /// Draws the faults for one API request.
    pub fn draw_request(&self) -> RequestFaults {
        let c = self.get();
        let mut out = RequestFaults::default();
        if self.roll(c.slow_rate) {
            out.delay = Some(Duration::from_millis(c.slow_ms));
        }
        if self.roll(c.reset_rate) {
            out.reset = true;
            return out;
        }
        if self.roll(c.error_503_rate) {
            out.error = Some((
                "503",
                ApiError::new(
                    503,
                    "SERVER_UNAVAILABLE",
                    "Service Unavailable: the server is temporarily overloaded",
                ),
            ));
        } else if self.roll(c.error_429_rate) {
            out.error = Some((
                "429",
                ApiError::new(429, "REQUEST_LIMIT_EXCEEDED", "Too many requests")
                    .with_header("Retry-After", retry_after(&c)),
            ));
        } else if self.roll(c.error_420_rate) {
            out.error = Some((
                "420",
                ApiError::new(
                    420,
                    "SERVER_UNAVAILABLE",
                    "Salesforce Edge is setting things up for this org; retry shortly",
                ),
            ));
        } else if self.roll(c.invalid_session_rate) {
            out.error = Some(("401", ApiError::invalid_session()));
        }
        out
    }

    /// Whether one record of a batch write hits a row lock.
    pub fn lock_row(&self) -> bool {
        let p = self.cfg.read().map(|c| c.lock_row_rate).unwrap_or(0.0);
        self.roll(p)
    }

    /// Whether a Bulk result download is cut, and where: the share of the body (0.0..1.0)
    /// sent before the reset.
    pub fn body_reset(&self) -> Option<f64> {
        let p = self.cfg.read().map(|c| c.body_reset_rate).unwrap_or(0.0);
        if !self.roll(p) {
            return None;
        }
        let at = self.rng.lock().map(|mut r| r.below(1_000_000)).unwrap_or(0);
        Some(at as f64 / 1_000_000.0)
    }

    /// Whether a Bulk query job gets stuck `InProgress`.
    pub fn bulk_stuck(&self) -> bool {
        let p = self.cfg.read().map(|c| c.bulk_stuck_rate).unwrap_or(0.0);
        self.roll(p)
    }

    /// Whether a Bulk job fails.
    pub fn bulk_fail(&self) -> bool {
        let p = self.cfg.read().map(|c| c.bulk_fail_rate).unwrap_or(0.0);
        self.roll(p)
    }
}

/// The `Retry-After` value of an injected 429, in the configured form.
fn retry_after(c: &FaultConfig) -> String {
    let secs = c.retry_after_secs.max(1);
    if c.retry_after_http_date {
        httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(secs))
    } else {
        secs.to_string()
    }
}

/// Set on a response whose body stream ends in an error on purpose (a `body_reset` fault):
/// the server then resets the connection instead of ending the body cleanly.
#[derive(Debug, Clone, Copy)]
pub struct BodyReset;

/// The error a cut body stream ends with.
pub fn body_reset_error() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionReset,
        "injected reset part-way through the body",
    )
}

/// A body that sends `data[..cut]` and then fails (the server turns that into a reset).
pub fn cut_body(data: Vec<u8>, cut: usize) -> axum::body::Body {
    let mut data = data;
    data.truncate(cut);
    let items: Vec<Result<bytes::Bytes, std::io::Error>> =
        vec![Ok(bytes::Bytes::from(data)), Err(body_reset_error())];
    axum::body::Body::from_stream(futures_util::stream::iter(items))
}
