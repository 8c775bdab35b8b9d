//! The status figures as Prometheus series, one set per running installation (labels:
//! the installation, and for inbound figures the object its spec names, so label sets
//! stay bounded), and the scheduler's own counters. Rendered when scraped, from the same
//! [`Supervisor::statuses`] the status route answers with: an idle host that nobody
//! scrapes spends nothing on them.

use std::fmt::Write as _;

use super::status::Status;
use super::supervisor::Supervisor;
use crate::telemetry::escape;

const HEALTH_STATES: [&str; 4] = ["healthy", "degraded", "failing", "paused"];

/// Every family, in Prometheus text exposition format (0.0.4).
pub async fn render(supervisor: &Supervisor) -> String {
    let statuses = supervisor.statuses().await;
    let mut out = String::new();
    render_statuses(&mut out, &statuses);
    render_scheduler(&mut out, supervisor);
    out
}

/// A gauge family read off each status: its name, its help text, and how to read it.
type Gauge<T, V> = (&'static str, &'static str, fn(&T) -> V);

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn render_statuses(out: &mut String, statuses: &[Status]) {
    let ids: Vec<String> = statuses.iter().map(|s| escape(&s.installation)).collect();
    family(
        out,
        "weft_installation_health",
        "gauge",
        "1 for the installation's health state (healthy, degraded, failing, paused), 0 for the others.",
    );
    for (id, status) in ids.iter().zip(statuses) {
        for state in HEALTH_STATES {
            let value = u8::from(status.health.state == state);
            let _ = writeln!(
                out,
                "weft_installation_health{{installation=\"{id}\",state=\"{state}\"}} {value}"
            );
        }
    }
    let per_installation: [Gauge<Status, f64>; 4] = [
        (
            "weft_installation_ongoing_credential",
            "1 once the installation logs in with its ongoing (API-only) credential.",
            |s| f64::from(u8::from(s.credential.in_use == "ongoing")),
        ),
        (
            "weft_outbound_backlog_events",
            "Accepted events waiting for outbound.",
            |s| s.outbound.backlog as f64,
        ),
        (
            "weft_outbound_oldest_pending_age_seconds",
            "Age of the oldest event waiting for outbound (0 when none waits).",
            |s| s.outbound.oldest_pending_age_secs.unwrap_or(0) as f64,
        ),
        (
            "weft_dlq_open_entries",
            "DLQ entries waiting for a fix.",
            |s| s.dlq_open as f64,
        ),
    ];
    for (name, help, value) in per_installation {
        family(out, name, "gauge", help);
        for (id, status) in ids.iter().zip(statuses) {
            let _ = writeln!(out, "{name}{{installation=\"{id}\"}} {}", value(status));
        }
    }
    let per_object: [Gauge<super::status::InboundObject, Option<f64>>; 4] = [
        (
            "weft_inbound_lag_seconds",
            "Seconds since the object's last successful pass.",
            |o| o.lag_secs.map(|s| s as f64),
        ),
        (
            "weft_inbound_failing",
            "1 while the object's latest pass failed.",
            |o| Some(f64::from(u8::from(o.failing_since.is_some()))),
        ),
        (
            "weft_inbound_backfill_done_records",
            "Records the object's current or last backfill has delivered.",
            |o| o.backfill.as_ref().map(|b| b.done as f64),
        ),
        (
            "weft_inbound_backfill_total_records",
            "Records the object's current or last backfill reads in all.",
            |o| o.backfill.as_ref().map(|b| b.total as f64),
        ),
    ];
    for (name, help, value) in per_object {
        family(out, name, "gauge", help);
        for (id, status) in ids.iter().zip(statuses) {
            for (object, figures) in &status.inbound {
                if let Some(value) = value(figures) {
                    let _ = writeln!(
                        out,
                        "{name}{{installation=\"{id}\",object=\"{}\"}} {value}",
                        escape(object)
                    );
                }
            }
        }
    }
}

fn render_scheduler(out: &mut String, supervisor: &Supervisor) {
    let scheduler = supervisor.scheduler();
    let stats = scheduler.stats();
    let seconds = |ns: u64| ns as f64 / 1e9;
    for (name, kind, help, value) in [
        (
            "weft_scheduler_workers",
            "gauge",
            "Units the pool runs at once.",
            scheduler.config().workers as f64,
        ),
        (
            "weft_scheduler_busy_units",
            "gauge",
            "Units running now.",
            scheduler.busy() as f64,
        ),
        (
            "weft_scheduler_turns_total",
            "counter",
            "Units that took a turn.",
            stats.turns as f64,
        ),
        (
            "weft_scheduler_waited_turns_total",
            "counter",
            "Turns that waited for a worker.",
            stats.waited as f64,
        ),
        (
            "weft_scheduler_wait_seconds_total",
            "counter",
            "Time units spent waiting for a turn.",
            seconds(stats.wait_ns),
        ),
        (
            "weft_scheduler_overhead_seconds_total",
            "counter",
            "Time spent in the scheduler's own bookkeeping, waits excluded.",
            seconds(stats.overhead_ns),
        ),
    ] {
        family(out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }
}
