//! What a governor carries across a restart.
//!
//! Owns [`GovernorSnapshot`], the serialisable record of what one installation's governor has
//! spent and learned: the current window's spend per ceiling, the rolling 24 h admission
//! counts, the window ledger, the learned daily maximum and org usage, a pause, and the
//! breaker. The governor takes and restores it (`Governor::snapshot`, `Governor::restore`);
//! storing it is the caller's business. It never holds a clock, a lock or anything live.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::Project;
use super::breaker::BreakerSnapshot;
use super::governor::WindowRecord;
use super::pacing::PacerSnapshot;

/// The snapshot format this build writes and reads.
pub const SNAPSHOT_VERSION: u32 = 1;

/// A governor's spend and learned state at one instant. Serialise it with serde (JSON,
/// bincode, a redb value); see `Governor::snapshot` for when to take it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GovernorSnapshot {
    /// [`SNAPSHOT_VERSION`] of the build that wrote it.
    pub version: u32,
    pub taken_at: Timestamp,
    /// `DailyApiRequests.Max` as learned, so pacing uses the real allocation from the first
    /// request after a restart instead of the cautious assumption.
    pub daily_max: Option<u64>,
    /// The org's usage as last reported (by anyone: Weft and every other client).
    pub org_used: Option<u64>,
    /// Why the governor was paused (`org_headroom`, `quota_exhausted`), if it was.
    pub paused: Option<String>,
    /// When the last headroom probe went out while paused.
    pub last_probe: Option<Timestamp>,
    /// Admissions per minute over the last 24 hours.
    pub usage: Vec<MinuteUsage>,
    /// The installation ceiling's spend in its current window.
    pub installation: PacerSnapshot,
    /// Each project ceiling's spend in its current window.
    pub projects: BTreeMap<Project, PacerSnapshot>,
    /// Recent windows: what each granted and what was spent.
    pub ledger: Vec<WindowRecord>,
    pub breaker: BreakerSnapshot,
}

/// Requests admitted in one minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinuteUsage {
    /// Minutes since the Unix epoch (UTC).
    pub minute: i64,
    pub admitted: u64,
}

/// Why a snapshot was not restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    #[error(
        "governor snapshot version {found} is not supported (this build reads version {expected})"
    )]
    UnsupportedVersion { found: u32, expected: u32 },
}
