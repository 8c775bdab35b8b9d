//! The quota governor: how fast, how much and when Weft may call one customer's org.
//!
//! Owns everything that decides *whether a request may go now*: the ceiling schedule in the
//! customer's time zone ([`schedule`]), pacing that spreads each window's budget evenly
//! ([`pacing`]), per-project ceilings, the org-headroom guard, the cap on concurrent requests,
//! the circuit breaker ([`breaker`]), retry timing ([`backoff`]), the injectable clock
//! ([`clock`]), giving a unit's scheduler worker back while it waits ([`held`]) and the
//! snapshot that carries spend across a restart ([`snapshot`]). One
//! [`Governor`] per installation.
//!
//! It never drops a request: it delays it, and the transport either gets it through or hands
//! its caller a final typed error. It knows nothing of HTTP or Salesforce payloads (the
//! transport tells it what it learned) and nothing of sync logic.

pub mod breaker;
pub mod clock;
mod governor;
pub mod held;
pub mod pacing;
pub mod schedule;
pub mod snapshot;

pub use crate::retry::BackoffPolicy;
pub use breaker::{BreakerConfig, BreakerSnapshot, BreakerState};
pub use clock::{Clock, ScaledClock, SystemClock};
pub use governor::{
    Governor, GovernorConfig, GovernorConfigError, GovernorSettings, Permit, Stopped, WindowRecord,
};
pub use pacing::PacerSnapshot;
pub use schedule::{ActiveWindow, Schedule, ScheduleConfig, ScheduleError, WindowConfig};
pub use snapshot::{GovernorSnapshot, MinuteUsage, RestoreError};

use serde::{Deserialize, Serialize};

/// Which part of the product a request serves; each may have its own ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Project {
    /// Initial and repair loads (Bulk queries, big REST queries).
    Backfill,
    /// Ongoing inbound changes (watermark queries, `queryAll` for deletes).
    Incremental,
    /// Writes from the product to Salesforce.
    Outbound,
}

impl Project {
    pub fn as_str(self) -> &'static str {
        match self {
            Project::Backfill => "backfill",
            Project::Incremental => "incremental",
            Project::Outbound => "outbound",
        }
    }
}
