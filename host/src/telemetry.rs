//! Per-installation telemetry of the Salesforce transport: what Weft did to each org.
//!
//! Owns the in-process registry of counters and gauges — API calls by kind, errors by
//! Salesforce `errorCode`, retries by reason, throttle events (pauses, backoffs, breaker
//! opens) with their reasons, the ceiling and utilisation, the 24 h peak — and its two
//! renderings: Prometheus text exposition ([`Telemetry::render_prometheus`]) and a serde JSON
//! status ([`InstallationStatus`]) that `weft status` prints. Recording never fails and never
//! blocks on I/O; it must never see credentials (callers pass codes and reasons, not bodies).

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Throttle events kept for the status view. 50 is enough to see what happened in the last
/// stretch of trouble without letting the status grow.
const RECENT_EVENTS: usize = 50;

/// All installations' telemetry in this process.
#[derive(Debug, Default)]
pub struct Telemetry {
    installations: RwLock<BTreeMap<String, Arc<InstallationTelemetry>>>,
}

/// One installation's counters.
#[derive(Debug)]
pub struct InstallationTelemetry {
    id: String,
    inner: Mutex<Counters>,
    /// Bumped on every change, so the status writer can tell an idle host from a busy one.
    changes: std::sync::atomic::AtomicU64,
}

/// Kinds of throttle event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The governor stopped sending (org headroom, quota exhausted).
    Pause,
    /// The governor resumed after a pause.
    Resume,
    /// One request waits before a retry.
    Backoff,
    BreakerOpen,
    BreakerClose,
}

impl EventKind {
    fn as_str(self) -> &'static str {
        match self {
            EventKind::Pause => "pause",
            EventKind::Resume => "resume",
            EventKind::Backoff => "backoff",
            EventKind::BreakerOpen => "breaker_open",
            EventKind::BreakerClose => "breaker_close",
        }
    }
}

/// One throttle event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThrottleEvent {
    pub at: Timestamp,
    pub kind: EventKind,
    pub reason: String,
    pub detail: String,
}

/// The governor's gauges, set by `throttle`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GovernorGauges {
    /// Active ceiling as a fraction of `DailyApiRequests.Max`.
    pub ceiling: f64,
    pub window_start: Option<Timestamp>,
    pub window_end: Option<Timestamp>,
    /// Requests the active window grants, and how many Weft spent in it.
    pub window_budget: f64,
    pub window_spent: u64,
    /// Spent in the window / what even pacing would have spent by now (1.0 = using all the
    /// ceiling allows).
    pub utilisation: f64,
    /// Weft's own requests in the last 24 h (clock time).
    pub usage_24h: u64,
    /// `DailyApiRequests.Max` as last learned (None until the first response).
    pub daily_max: Option<u64>,
    /// Org-wide usage as last learned from `Sforce-Limit-Info` or `/limits`.
    pub org_used: Option<u64>,
    pub paused: bool,
    pub breaker: String,
    pub in_flight: u64,
}

#[derive(Debug, Default)]
struct Counters {
    calls_by_kind: BTreeMap<String, u64>,
    errors_by_code: BTreeMap<String, u64>,
    retries_by_reason: BTreeMap<String, u64>,
    final_failures: u64,
    record_retries: u64,
    events_by_kind_reason: BTreeMap<(EventKind, String), u64>,
    recent_events: VecDeque<ThrottleEvent>,
    gauges: GovernorGauges,
    /// (minute since epoch, highest utilisation seen in it), last 24 h.
    peak: VecDeque<(i64, f64)>,
}

/// A Prometheus gauge: name, help text, and how to read it from a status.
type Gauge = (&'static str, &'static str, fn(&InstallationStatus) -> f64);

/// The JSON status of one installation (`weft status`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstallationStatus {
    pub installation: String,
    pub generated_at: Timestamp,
    pub api_calls_total: u64,
    pub api_calls_by_kind: BTreeMap<String, u64>,
    pub errors_by_code: BTreeMap<String, u64>,
    /// Error responses per API call.
    pub error_rate: f64,
    pub retries_by_reason: BTreeMap<String, u64>,
    /// Records re-sent after a per-record retryable error (row locks).
    pub record_retries: u64,
    /// Requests that ended in a final error handed to the caller (DLQ material).
    pub final_failures: u64,
    pub throttle: GovernorGauges,
    pub peak_utilisation_24h: f64,
    /// `kind:reason` → count.
    pub throttle_events: BTreeMap<String, u64>,
    pub recent_events: Vec<ThrottleEvent>,
}

/// What `weft status` reads: every installation of a running host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusFile {
    pub generated_at: Timestamp,
    pub installations: Vec<InstallationStatus>,
}

/// Why the status file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum StatusFileError {
    #[error("writing status file {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("reading status file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("status file {path} is not a Weft status: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
}

impl Telemetry {
    pub fn new() -> Arc<Self> {
        Arc::new(Telemetry::default())
    }

    /// The telemetry of `installation`, created on first use.
    pub fn installation(&self, installation: &str) -> Arc<InstallationTelemetry> {
        if let Ok(m) = self.installations.read()
            && let Some(t) = m.get(installation)
        {
            return t.clone();
        }
        let mut m = match self.installations.write() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        m.entry(installation.to_string())
            .or_insert_with(|| Arc::new(InstallationTelemetry::new(installation)))
            .clone()
    }

    /// Changes to any installation's counters so far, and how many installations there
    /// are: equal between two reads when nothing was recorded in between.
    pub fn generation(&self) -> (u64, usize) {
        let all = self.all();
        let changes = all
            .iter()
            .map(|t| t.changes.load(std::sync::atomic::Ordering::Relaxed))
            .fold(0u64, u64::wrapping_add);
        (changes, all.len())
    }

    /// Drops a removed installation's series, so a deleted tenant does not stay in every
    /// scrape.
    pub fn forget(&self, installation: &str) {
        let mut m = match self.installations.write() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        m.remove(installation);
    }

    fn all(&self) -> Vec<Arc<InstallationTelemetry>> {
        self.installations
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    pub fn status(&self, now: Timestamp) -> StatusFile {
        StatusFile {
            generated_at: now,
            installations: self.all().iter().map(|t| t.status(now)).collect(),
        }
    }

    /// Writes the status JSON atomically (temp file + rename), so `weft status` never reads
    /// half a file.
    pub fn write_status_file(&self, path: &Path, now: Timestamp) -> Result<(), StatusFileError> {
        let err = |source| StatusFileError::Write {
            path: path.display().to_string(),
            source,
        };
        let json = serde_json::to_vec_pretty(&self.status(now))
            .map_err(|e| err(std::io::Error::other(e)))?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, json).map_err(err)?;
        std::fs::rename(&tmp, path).map_err(err)
    }

    /// Prometheus text exposition format (version 0.0.4).
    pub fn render_prometheus(&self) -> String {
        let mut out = String::new();
        let all = self.all();
        let snaps: Vec<(String, InstallationStatus)> = all
            .iter()
            .map(|t| (escape(&t.id), t.status(Timestamp::now())))
            .collect();
        let mut family = |name: &str, kind: &str, help: &str, rows: &mut dyn FnMut(&mut String)| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            rows(&mut out);
        };
        family(
            "weft_api_calls_total",
            "counter",
            "Salesforce API calls sent, by kind.",
            &mut |o| {
                for (i, s) in &snaps {
                    for (k, v) in &s.api_calls_by_kind {
                        let _ = writeln!(
                            o,
                            "weft_api_calls_total{{installation=\"{i}\",kind=\"{}\"}} {v}",
                            escape(k)
                        );
                    }
                }
            },
        );
        family(
            "weft_api_errors_total",
            "counter",
            "Error responses and transport failures, by Salesforce errorCode.",
            &mut |o| {
                for (i, s) in &snaps {
                    for (k, v) in &s.errors_by_code {
                        let _ = writeln!(
                            o,
                            "weft_api_errors_total{{installation=\"{i}\",code=\"{}\"}} {v}",
                            escape(k)
                        );
                    }
                }
            },
        );
        family(
            "weft_api_retries_total",
            "counter",
            "Requests retried, by reason.",
            &mut |o| {
                for (i, s) in &snaps {
                    for (k, v) in &s.retries_by_reason {
                        let _ = writeln!(
                            o,
                            "weft_api_retries_total{{installation=\"{i}\",reason=\"{}\"}} {v}",
                            escape(k)
                        );
                    }
                }
            },
        );
        family(
            "weft_throttle_events_total",
            "counter",
            "Pauses, backoffs and breaker transitions, by reason.",
            &mut |o| {
                for (i, s) in &snaps {
                    for (k, v) in &s.throttle_events {
                        let (kind, reason) = k.split_once(':').unwrap_or((k.as_str(), ""));
                        let _ = writeln!(
                            o,
                            "weft_throttle_events_total{{installation=\"{i}\",event=\"{}\",reason=\"{}\"}} {v}",
                            escape(kind),
                            escape(reason)
                        );
                    }
                }
            },
        );
        let gauges: [Gauge; 9] = [
            (
                "weft_final_failures_total",
                "Requests that ended in a final error for the DLQ.",
                |s| s.final_failures as f64,
            ),
            (
                "weft_record_retries_total",
                "Records re-sent after a retryable per-record error.",
                |s| s.record_retries as f64,
            ),
            (
                "weft_ceiling_ratio",
                "Active ceiling as a fraction of DailyApiRequests.Max.",
                |s| s.throttle.ceiling,
            ),
            (
                "weft_window_budget_requests",
                "Requests the active schedule window grants.",
                |s| s.throttle.window_budget,
            ),
            (
                "weft_window_spent_requests",
                "Requests Weft spent in the active window.",
                |s| s.throttle.window_spent as f64,
            ),
            (
                "weft_utilisation_ratio",
                "Spent in the window / what even pacing allows by now.",
                |s| s.throttle.utilisation,
            ),
            (
                "weft_utilisation_peak_24h_ratio",
                "Highest utilisation in the last 24 h.",
                |s| s.peak_utilisation_24h,
            ),
            (
                "weft_api_usage_24h_requests",
                "Weft's own API requests in the last 24 h.",
                |s| s.throttle.usage_24h as f64,
            ),
            (
                "weft_paused",
                "1 while the governor pauses for org headroom.",
                |s| f64::from(u8::from(s.throttle.paused)),
            ),
        ];
        for (name, help, f) in gauges {
            let kind = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            family(name, kind, help, &mut |o| {
                for (i, s) in &snaps {
                    let _ = writeln!(o, "{name}{{installation=\"{i}\"}} {}", f(s));
                }
            });
        }
        out
    }
}

/// A Prometheus label value, escaped.
pub(crate) fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl InstallationTelemetry {
    pub fn new(id: &str) -> Self {
        InstallationTelemetry {
            id: id.to_string(),
            inner: Mutex::new(Counters::default()),
            changes: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    fn with<R>(&self, f: impl FnOnce(&mut Counters) -> R) -> R {
        self.changes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut g = match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        f(&mut g)
    }

    /// One API request sent (every attempt counts: Salesforce counts them too).
    pub fn api_call(&self, kind: &str) {
        self.with(|c| *c.calls_by_kind.entry(kind.to_string()).or_default() += 1);
    }

    /// An error response or transport failure, by `errorCode` (or `HTTP_503`, `reset`, …).
    pub fn api_error(&self, code: &str) {
        self.with(|c| *c.errors_by_code.entry(code.to_string()).or_default() += 1);
    }

    pub fn retry(&self, reason: &str) {
        self.with(|c| *c.retries_by_reason.entry(reason.to_string()).or_default() += 1);
    }

    pub fn record_retries(&self, n: u64) {
        self.with(|c| c.record_retries += n);
    }

    pub fn final_failure(&self) {
        self.with(|c| c.final_failures += 1);
    }

    pub fn event(&self, at: Timestamp, kind: EventKind, reason: &str, detail: String) {
        self.with(|c| {
            *c.events_by_kind_reason
                .entry((kind, reason.to_string()))
                .or_default() += 1;
            if c.recent_events.len() >= RECENT_EVENTS {
                c.recent_events.pop_front();
            }
            c.recent_events.push_back(ThrottleEvent {
                at,
                kind,
                reason: reason.to_string(),
                detail,
            });
        });
    }

    pub fn set_gauges(&self, now: Timestamp, g: GovernorGauges) {
        self.with(|c| {
            let minute = now.as_second().div_euclid(60);
            while c.peak.front().is_some_and(|&(m, _)| m <= minute - 24 * 60) {
                c.peak.pop_front();
            }
            // The first minutes of a window say little (a single request is a big share of a
            // tiny allowance), so the peak only counts once a window is a minute old.
            let mature = g
                .window_start
                .is_some_and(|s| now.duration_since(s).as_secs() >= 60);
            if mature {
                match c.peak.back_mut() {
                    Some((m, v)) if *m == minute => *v = v.max(g.utilisation),
                    _ => c.peak.push_back((minute, g.utilisation)),
                }
            }
            c.gauges = g;
        });
    }

    /// Breaker transitions happen after a response, between admissions.
    pub fn set_breaker(&self, state: &str) {
        self.with(|c| c.gauges.breaker = state.to_string());
    }

    pub fn gauges(&self) -> GovernorGauges {
        self.with(|c| c.gauges.clone())
    }

    pub fn status(&self, now: Timestamp) -> InstallationStatus {
        self.with(|c| {
            let total: u64 = c.calls_by_kind.values().sum();
            let errors: u64 = c.errors_by_code.values().sum();
            InstallationStatus {
                installation: self.id.clone(),
                generated_at: now,
                api_calls_total: total,
                api_calls_by_kind: c.calls_by_kind.clone(),
                errors_by_code: c.errors_by_code.clone(),
                error_rate: if total == 0 {
                    0.0
                } else {
                    errors as f64 / total as f64
                },
                retries_by_reason: c.retries_by_reason.clone(),
                record_retries: c.record_retries,
                final_failures: c.final_failures,
                throttle: c.gauges.clone(),
                peak_utilisation_24h: c.peak.iter().map(|p| p.1).fold(0.0, f64::max),
                throttle_events: c
                    .events_by_kind_reason
                    .iter()
                    .map(|((k, r), v)| (format!("{}:{r}", k.as_str()), *v))
                    .collect(),
                recent_events: c.recent_events.iter().cloned().collect(),
            }
        })
    }
}

/// Keeps the status file fresh for `weft status`: rewrites it every `every` until the task is
/// aborted. 5 s is a good interval: fresh enough for a person at a terminal, negligible I/O.
/// A failed write is logged and retried on the next tick; it never stops the host.
pub fn spawn_status_writer(
    telemetry: Arc<Telemetry>,
    path: std::path::PathBuf,
    every: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every.max(std::time::Duration::from_millis(100)));
        let mut written: Option<((u64, usize), std::time::Instant)> = None;
        loop {
            tick.tick().await;
            // Nothing recorded since the last write: the file stands (rewritten once a
            // minute all the same, for the figures that age), so an idle host with a
            // thousand installations does not re-render them all every few seconds.
            let generation = telemetry.generation();
            if written
                .is_some_and(|(at, when)| at == generation && when.elapsed() < STATUS_FILE_REFRESH)
            {
                continue;
            }
            // Rendering every installation and writing the file is blocking work.
            let (t, p) = (telemetry.clone(), path.clone());
            match tokio::task::spawn_blocking(move || t.write_status_file(&p, Timestamp::now()))
                .await
            {
                Ok(Ok(())) => written = Some((generation, std::time::Instant::now())),
                Ok(Err(e)) => tracing::warn!(error = %e, "status file not written"),
                Err(e) => tracing::warn!(error = %e, "status file writer failed"),
            }
        }
    })
}

/// How often the status file is rewritten while nothing changes.
const STATUS_FILE_REFRESH: std::time::Duration = std::time::Duration::from_secs(60);

/// Reads a status file written by [`Telemetry::write_status_file`].
pub fn read_status_file(path: &Path) -> Result<StatusFile, StatusFileError> {
    let p = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| StatusFileError::Read {
        path: p.clone(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| StatusFileError::Parse { path: p, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn status_writer_keeps_the_file_fresh() {
        let t = Telemetry::new();
        t.installation("a").api_call("limits");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.json");
        let task = spawn_status_writer(
            t.clone(),
            path.clone(),
            std::time::Duration::from_millis(100),
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let first = read_status_file(&path).expect("written at once");
        assert_eq!(first.installations[0].api_calls_total, 1);
        t.installation("a").api_call("limits");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        assert_eq!(
            read_status_file(&path).expect("rewritten").installations[0].api_calls_total,
            2
        );
        task.abort();
    }

    #[test]
    fn prometheus_text_and_status_agree() {
        let t = Telemetry::new();
        let i = t.installation("acme-prod");
        i.api_call("query");
        i.api_call("query");
        i.api_call("collections.upsert");
        i.api_error("SERVER_UNAVAILABLE");
        i.retry("SERVER_UNAVAILABLE");
        i.event(
            Timestamp::UNIX_EPOCH,
            EventKind::BreakerOpen,
            "consecutive_failures",
            "5 failures".into(),
        );
        let text = t.render_prometheus();
        assert!(
            text.contains("weft_api_calls_total{installation=\"acme-prod\",kind=\"query\"} 2"),
            "{text}"
        );
        assert!(text.contains("weft_throttle_events_total{installation=\"acme-prod\",event=\"breaker_open\",reason=\"consecutive_failures\"} 1"));
        assert!(text.contains("# TYPE weft_ceiling_ratio gauge"));
        let s = i.status(Timestamp::UNIX_EPOCH);
        assert_eq!(s.api_calls_total, 3);
        assert!((s.error_rate - 1.0 / 3.0).abs() < 1e-9);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("status.json");
        t.write_status_file(&path, Timestamp::UNIX_EPOCH)
            .expect("write");
        let back = read_status_file(&path).expect("read");
        assert_eq!(back.installations[0], s);
    }
}
