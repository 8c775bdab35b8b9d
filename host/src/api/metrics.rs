//! `GET /metrics`: intake counters in Prometheus text, followed by whatever the host
//! adds (the transport telemetry) and, under `weft serve`, each installation's status
//! figures and the scheduler's counters. Only those status figures read the store, and
//! only index counts (outbound backlog, open DLQ), off the async workers.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::ApiState;

/// Per-installation intake counters.
#[derive(Debug, Default)]
pub struct IntakeCounters {
    /// Requests answered `202`.
    pub requests: AtomicU64,
    /// Events newly made durable.
    pub accepted: AtomicU64,
    /// Events whose id was already accepted.
    pub duplicates: AtomicU64,
    /// Requests answered `400`.
    pub invalid: AtomicU64,
    /// Requests answered `413`.
    pub too_large: AtomicU64,
    /// Requests answered `503` because the store could not commit.
    pub store_errors: AtomicU64,
}

pub(super) async fn render(State(state): State<Arc<ApiState>>) -> Response {
    let mut out = String::new();
    type Counter = fn(&IntakeCounters) -> &AtomicU64;
    let families: [(&str, &str, Counter); 6] = [
        (
            "weft_intake_requests_total",
            "Intake requests answered 202.",
            |c| &c.requests,
        ),
        (
            "weft_intake_events_accepted_total",
            "Outbound events made durable.",
            |c| &c.accepted,
        ),
        (
            "weft_intake_events_duplicate_total",
            "Outbound events already accepted earlier.",
            |c| &c.duplicates,
        ),
        (
            "weft_intake_rejected_invalid_total",
            "Intake requests answered 400.",
            |c| &c.invalid,
        ),
        (
            "weft_intake_rejected_too_large_total",
            "Intake requests answered 413.",
            |c| &c.too_large,
        ),
        (
            "weft_intake_store_errors_total",
            "Intake requests answered 503 (store could not commit).",
            |c| &c.store_errors,
        ),
    ];
    let tenants = state.directory.snapshot();
    for (name, help, field) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (installation, tenant) in &tenants {
            let value = field(&tenant.counters).load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}{{installation=\"{installation}\"}} {value}");
        }
    }
    let stats = state.writer.stats();
    for (name, help, value) in [
        (
            "weft_intake_commits_total",
            "Group commits of the intake writer.",
            &stats.commits,
        ),
        (
            "weft_intake_commit_failures_total",
            "Failed group commits.",
            &stats.failed_commits,
        ),
        (
            "weft_intake_committed_requests_total",
            "Requests committed by the writer.",
            &stats.requests,
        ),
        (
            "weft_intake_committed_events_total",
            "Events offered in committed groups (duplicates included).",
            &stats.events,
        ),
        (
            "weft_intake_commit_microseconds_total",
            "Time spent in group commits, fsync included.",
            &stats.commit_micros,
        ),
    ] {
        let value = value.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    }
    if let Some(extra) = &state.extra_metrics {
        out.push_str(&extra());
    }
    if let Some(supervisor) = &state.supervisor {
        out.push_str(&crate::runtime::metrics::render(supervisor).await);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
