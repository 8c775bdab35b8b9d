//! Typed errors of the Salesforce transport.
//!
//! Owns [`SalesforceError`] and the classification every retry decision branches on: which
//! failures are transient (retry with backoff), which mean the session must be renewed, and
//! which are final. Salesforce's own `errorCode`, `message` and `fields` are kept verbatim so
//! the DLQ and operators see what Salesforce said. No variant ever carries a credential.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One entry of Salesforce's error array `[{"message","errorCode","fields"}]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiErrorItem {
    #[serde(rename = "errorCode", alias = "statusCode", default)]
    pub error_code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
}

/// Everything that can go wrong talking to an org.
#[derive(Debug, thiserror::Error)]
pub enum SalesforceError {
    /// The org answered with an error status; `errors` is its error array.
    #[error("Salesforce answered {status}: {}", summary(.errors))]
    Api {
        status: u16,
        errors: Vec<ApiErrorItem>,
        retry_after: Option<Duration>,
    },
    /// The token endpoint refused the login (`invalid_grant`, `invalid_client`, …).
    #[error("login refused ({status}): {error}: {description}")]
    Auth {
        status: u16,
        error: String,
        description: String,
    },
    /// No response: connect failure, reset, timeout, or the body broke off.
    #[error("transport failure ({kind}): {message}")]
    Transport {
        kind: TransportKind,
        message: String,
    },
    /// A response we could not understand.
    #[error("unexpected response from {context}: {message}")]
    Decode { context: String, message: String },
    /// A Bulk API 2.0 job ended `Failed` or `Aborted`.
    #[error("Bulk job {job_id} ended {state}: {message}")]
    BulkJob {
        job_id: String,
        state: String,
        message: String,
    },
    /// A Bulk job did not finish within the configured time; it was aborted.
    #[error("Bulk job {job_id} still {state} after {waited:?}; aborted")]
    BulkTimeout {
        job_id: String,
        state: String,
        waited: Duration,
    },
    /// Retries used up: the last failure is kept. Send the work to the DLQ.
    #[error("gave up after {attempts} attempts: {last}")]
    RetriesExhausted {
        attempts: u32,
        last: Box<SalesforceError>,
    },
    /// The client's configuration cannot work (bad URL, unreadable key, …).
    #[error("configuration: {0}")]
    Config(String),
    /// The installation is stopping; the request was not sent (see
    /// [`crate::throttle::Governor::stop`]). Not a failure of the org or of the work:
    /// callers leave the work where it was, for the next run.
    #[error("not sent: the installation is stopping")]
    Stopped,
}

/// Kinds of transport failure, for metrics and retry reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    Timeout,
    Connect,
    /// Connection reset or closed mid-request / mid-body.
    Reset,
    Other,
}

impl std::fmt::Display for TransportKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TransportKind::Timeout => "timeout",
            TransportKind::Connect => "connect",
            TransportKind::Reset => "reset",
            TransportKind::Other => "io",
        })
    }
}

fn summary(errors: &[ApiErrorItem]) -> String {
    errors
        .iter()
        .map(|e| {
            if e.fields.is_empty() {
                format!("{}: {}", e.error_code, e.message)
            } else {
                format!(
                    "{}: {} (fields: {})",
                    e.error_code,
                    e.message,
                    e.fields.join(", ")
                )
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// What the retry loop does with a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Renew the session once and resend.
    Reauthenticate,
    /// Back off and resend; `reason` names the cause in metrics.
    Retry {
        reason: String,
    },
    /// The org's daily allocation is spent: pause the installation, then resend.
    QuotaExhausted,
    Final,
}

/// Error codes that are transient by nature.
const RETRYABLE_CODES: [&str; 4] = [
    "REQUEST_LIMIT_EXCEEDED",
    "SERVER_UNAVAILABLE",
    "UNABLE_TO_LOCK_ROW",
    "UNKNOWN_EXCEPTION",
];

impl SalesforceError {
    /// The first `errorCode`, if Salesforce gave one.
    pub fn error_code(&self) -> Option<&str> {
        match self {
            SalesforceError::Api { errors, .. } => errors.first().map(|e| e.error_code.as_str()),
            SalesforceError::Auth { error, .. } => Some(error),
            SalesforceError::RetriesExhausted { last, .. } => last.error_code(),
            _ => None,
        }
    }

    /// A short label for metrics: the `errorCode`, `HTTP_<status>` or the transport kind.
    pub fn metric_code(&self) -> String {
        match self {
            SalesforceError::Api { status, errors, .. } => match errors.first() {
                Some(e) if !e.error_code.is_empty() => e.error_code.clone(),
                _ => format!("HTTP_{status}"),
            },
            SalesforceError::Auth { error, .. } => format!("oauth_{error}"),
            SalesforceError::Transport { kind, .. } => kind.to_string(),
            SalesforceError::Decode { .. } => "decode".into(),
            SalesforceError::BulkJob { state, .. } => format!("bulk_{}", state.to_lowercase()),
            SalesforceError::BulkTimeout { .. } => "bulk_timeout".into(),
            SalesforceError::RetriesExhausted { last, .. } => last.metric_code(),
            SalesforceError::Config(_) => "config".into(),
            SalesforceError::Stopped => "stopped".into(),
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SalesforceError::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// How the retry loop treats this failure.
    pub fn disposition(&self) -> Disposition {
        match self {
            SalesforceError::Api { status, errors, .. } => {
                let code = errors.first().map(|e| e.error_code.as_str()).unwrap_or("");
                let message = errors.first().map(|e| e.message.as_str()).unwrap_or("");
                if *status == 401 && code == "INVALID_SESSION_ID" {
                    return Disposition::Reauthenticate;
                }
                // A 403 REQUEST_LIMIT_EXCEEDED is either the daily total (nothing to do but
                // wait for usage to roll off) or the concurrent long-running cap (transient).
                if *status == 403
                    && code == "REQUEST_LIMIT_EXCEEDED"
                    && message.contains("TotalRequests")
                {
                    return Disposition::QuotaExhausted;
                }
                if matches!(status, 420 | 429 | 502 | 503 | 504) || RETRYABLE_CODES.contains(&code)
                {
                    let reason = if code.is_empty() {
                        format!("HTTP_{status}")
                    } else {
                        code.to_string()
                    };
                    return Disposition::Retry { reason };
                }
                Disposition::Final
            }
            SalesforceError::Transport { kind, .. } => Disposition::Retry {
                reason: kind.to_string(),
            },
            SalesforceError::Auth { status, .. } if *status >= 500 => Disposition::Retry {
                reason: format!("oauth_http_{status}"),
            },
            _ => Disposition::Final,
        }
    }

    pub(crate) fn transport(e: &reqwest::Error) -> Self {
        let kind = if e.is_timeout() {
            TransportKind::Timeout
        } else if e.is_connect() {
            TransportKind::Connect
        } else if e.is_request() || e.is_body() || e.is_decode() {
            TransportKind::Reset
        } else {
            TransportKind::Other
        };
        // reqwest's Display includes the URL, which never holds a secret in our requests
        // (tokens travel in headers and form bodies only).
        let mut message = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            message.push_str(": ");
            message.push_str(&s.to_string());
            src = s.source();
        }
        SalesforceError::Transport { kind, message }
    }

    /// Builds the error for an error response body (JSON array, single object, or text).
    pub(crate) fn from_response(status: u16, body: &[u8], retry_after: Option<Duration>) -> Self {
        let errors = if let Ok(v) = serde_json::from_slice::<Vec<ApiErrorItem>>(body) {
            v
        } else if let Ok(v) = serde_json::from_slice::<ApiErrorItem>(body) {
            vec![v]
        } else {
            let text = String::from_utf8_lossy(&body[..body.len().min(500)])
                .trim()
                .to_string();
            vec![ApiErrorItem {
                error_code: String::new(),
                message: text,
                fields: Vec::new(),
            }]
        };
        SalesforceError::Api {
            status,
            errors,
            retry_after,
        }
    }
}

/// A per-record error in sObject Collections and Bulk results (`statusCode` on the wire).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordError {
    #[serde(rename = "statusCode", alias = "errorCode", default)]
    pub status_code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub fields: Vec<String>,
}

impl RecordError {
    /// Row locks clear on their own: the record is worth resending.
    pub fn is_retryable(&self) -> bool {
        self.status_code == "UNABLE_TO_LOCK_ROW"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_salesforce_error_fields_and_classifies() {
        let body = br#"[{"message":"Required fields are missing: [Name]","errorCode":"REQUIRED_FIELD_MISSING","fields":["Name"]}]"#;
        let e = SalesforceError::from_response(400, body, None);
        assert_eq!(e.error_code(), Some("REQUIRED_FIELD_MISSING"));
        assert_eq!(e.disposition(), Disposition::Final);
        assert!(e.to_string().contains("fields: Name"));

        let e = SalesforceError::from_response(
            401,
            br#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#,
            None,
        );
        assert_eq!(e.disposition(), Disposition::Reauthenticate);
        let e = SalesforceError::from_response(403, br#"[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#, None);
        assert_eq!(e.disposition(), Disposition::QuotaExhausted);
        let e = SalesforceError::from_response(
            403,
            br#"[{"message":"ConcurrentRequests (Concurrent API Requests) Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#,
            None,
        );
        assert!(matches!(e.disposition(), Disposition::Retry { .. }));
        let e =
            SalesforceError::from_response(503, b"<html>down</html>", Some(Duration::from_secs(2)));
        assert_eq!(
            e.disposition(),
            Disposition::Retry {
                reason: "HTTP_503".into()
            }
        );
        assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
        let e = SalesforceError::from_response(
            404,
            br#"[{"message":"The requested resource does not exist","errorCode":"NOT_FOUND"}]"#,
            None,
        );
        assert_eq!(e.disposition(), Disposition::Final);
    }
}
