//! One installation's status, as `GET /v1/installations/{id}/status` answers it: health
//! with its reason and since when, quota used against the ceiling, backfill progress and
//! lag per inbound object, the outbound backlog and the open DLQ.
//!
//! Health, worst first:
//! - `paused` — an operator paused the whole installation;
//! - `failing` — every inbound object's latest pass failed, the circuit breaker is open, or
//!   the oldest outbound event has waited longer than [`STUCK_AFTER`];
//! - `degraded` — some objects fail or are paused, the ongoing credential was refused,
//!   the governor has paused for headroom, or DLQ entries are open;
//! - `healthy` — none of that.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use super::inbound_worker::ObjectPasses;
use crate::inbound::ObjectProgress;
use crate::registry::Pause;
use crate::store::Backlog;
use crate::telemetry::InstallationStatus;

/// An outbound event older than this means the installation is not delivering.
pub const STUCK_AFTER: SignedDuration = SignedDuration::from_mins(15);

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub installation: String,
    pub version: u64,
    pub health: Health,
    pub credential: Credential,
    pub quota: Quota,
    /// `kind:reason` → count since the host started (pauses, pacing waits, breaker).
    pub throttle_events: BTreeMap<String, u64>,
    pub inbound: BTreeMap<String, InboundObject>,
    pub outbound: Outbound,
    pub dlq_open: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Health {
    /// `healthy`, `degraded`, `failing` or `paused`.
    pub state: &'static str,
    pub reason: Option<String>,
    pub since: Option<String>,
}

/// Which credential the installation logs in with.
#[derive(Debug, Clone, Serialize)]
pub struct Credential {
    /// `setup` (describe and the first backfill) or `ongoing`.
    pub in_use: &'static str,
    /// Whether the spec has an ongoing credential to switch to.
    pub ongoing_configured: bool,
    /// Why the last switch failed; the setup credential stays in use.
    pub switch_error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Quota {
    /// Weft's calls in the last 24 h.
    pub used_24h: u64,
    pub daily_max: Option<u64>,
    /// The ceiling in force now, as a percentage of the daily maximum.
    pub ceiling_percent: f64,
    pub peak_utilisation_24h: f64,
    pub breaker: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct InboundObject {
    pub paused: bool,
    pub backfill: Option<BackfillProgress>,
    pub last_success: Option<String>,
    /// Seconds since the last successful pass.
    pub lag_secs: Option<i64>,
    pub failing_since: Option<String>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BackfillProgress {
    pub reason: String,
    pub done: u64,
    pub total: u64,
    pub failed: u64,
    pub finished: bool,
    pub records_per_sec: f64,
    pub eta_secs: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Outbound {
    pub backlog: u64,
    pub oldest_pending_age_secs: Option<i64>,
}

/// What the status is made of, gathered by the supervisor.
pub struct Parts<'a> {
    pub installation: &'a str,
    pub version: u64,
    pub paused: Option<&'a Pause>,
    /// The inbound objects the spec names.
    pub objects: &'a [String],
    pub passes: BTreeMap<String, ObjectPasses>,
    pub progress: BTreeMap<String, ObjectProgress>,
    pub telemetry: InstallationStatus,
    pub backlog: Backlog,
    pub dlq_open: u64,
    pub running_since: Timestamp,
    pub credential: Credential,
    pub now: Timestamp,
}

pub fn compose(parts: Parts<'_>) -> Status {
    let now = parts.now;
    let paused_objects: &[String] = parts.paused.map_or(&[], |p| &p.objects);
    let mut inbound = BTreeMap::new();
    for object in parts.objects {
        let passes = parts.passes.get(object).cloned().unwrap_or_default();
        let backfill = parts.progress.get(object).map(|p| BackfillProgress {
            reason: p.reason.clone(),
            done: p.done,
            total: p.total,
            failed: p.failed,
            finished: p.finished,
            records_per_sec: p.rate(),
            eta_secs: p.eta_secs(),
        });
        inbound.insert(
            object.clone(),
            InboundObject {
                paused: parts.paused.is_some_and(|p| p.whole()) || paused_objects.contains(object),
                backfill,
                last_success: passes.last_success.map(|t| t.to_string()),
                lag_secs: passes.last_success.map(|t| now.duration_since(t).as_secs()),
                failing_since: passes.failing_since.map(|t| t.to_string()),
                last_error: passes.last_error,
            },
        );
    }
    let oldest_age = parts
        .backlog
        .oldest_accepted_at
        .map(|t| now.duration_since(t));
    let gauges = &parts.telemetry.throttle;
    let health = health(&parts, &inbound, oldest_age);
    Status {
        installation: parts.installation.to_owned(),
        version: parts.version,
        health,
        credential: parts.credential.clone(),
        quota: Quota {
            used_24h: gauges.usage_24h,
            daily_max: gauges.daily_max,
            ceiling_percent: gauges.ceiling * 100.0,
            peak_utilisation_24h: parts.telemetry.peak_utilisation_24h,
            breaker: gauges.breaker.clone(),
        },
        throttle_events: parts.telemetry.throttle_events.clone(),
        inbound,
        outbound: Outbound {
            backlog: parts.backlog.pending,
            oldest_pending_age_secs: oldest_age.map(|d| d.as_secs()),
        },
        dlq_open: parts.dlq_open,
    }
}

fn health(
    parts: &Parts<'_>,
    inbound: &BTreeMap<String, InboundObject>,
    oldest_pending: Option<SignedDuration>,
) -> Health {
    let at = |t: Option<Timestamp>| t.map(|t| t.to_string());
    if let Some(pause) = parts.paused.filter(|p| p.whole()) {
        return Health {
            state: "paused",
            reason: Some(
                pause
                    .note
                    .clone()
                    .unwrap_or_else(|| "paused by the operator".into()),
            ),
            since: at(Some(pause.since)),
        };
    }
    let failing: Vec<(&String, &InboundObject)> = inbound
        .iter()
        .filter(|(_, o)| o.failing_since.is_some() && !o.paused)
        .collect();
    let earliest_failure = failing
        .iter()
        .filter_map(|(_, o)| o.failing_since.clone())
        .min();
    let active = inbound.values().filter(|o| !o.paused).count();
    let gauges = &parts.telemetry.throttle;
    if active > 0 && failing.len() == active {
        let (object, first) = failing[0];
        return Health {
            state: "failing",
            reason: Some(format!(
                "every inbound object fails; {object}: {}",
                first.last_error.as_deref().unwrap_or("failed")
            )),
            since: earliest_failure,
        };
    }
    if gauges.breaker == "open" {
        return Health {
            state: "failing",
            reason: Some("the circuit breaker to Salesforce is open".into()),
            since: None,
        };
    }
    if let Some(age) = oldest_pending.filter(|age| *age > STUCK_AFTER) {
        return Health {
            state: "failing",
            reason: Some(format!(
                "the oldest outbound event has waited {} s",
                age.as_secs()
            )),
            since: at(parts.backlog.oldest_accepted_at.map(|t| t + STUCK_AFTER)),
        };
    }
    if let Some((object, first)) = failing.first() {
        return Health {
            state: "degraded",
            reason: Some(format!(
                "{} of {active} inbound objects fail; {object}: {}",
                failing.len(),
                first.last_error.as_deref().unwrap_or("failed")
            )),
            since: earliest_failure,
        };
    }
    if let Some(refused) = &parts.credential.switch_error {
        return Health {
            state: "degraded",
            reason: Some(format!(
                "backfills are complete but the ongoing credential was refused (the setup one stays in use): {refused}"
            )),
            since: None,
        };
    }
    if let Some(pause) = parts.paused {
        return Health {
            state: "degraded",
            reason: Some(format!("paused objects: {}", pause.objects.join(", "))),
            since: at(Some(pause.since)),
        };
    }
    if gauges.paused {
        return Health {
            state: "degraded",
            reason: Some("the governor paused for the org's headroom".into()),
            since: None,
        };
    }
    if parts.dlq_open > 0 {
        return Health {
            state: "degraded",
            reason: Some(format!("{} DLQ entries are open", parts.dlq_open)),
            since: None,
        };
    }
    Health {
        state: "healthy",
        reason: None,
        since: at(Some(parts.running_since)),
    }
}
