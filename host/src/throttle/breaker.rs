//! The circuit breaker of one installation.
//!
//! Owns the closed → open → half-open state machine: after `failure_threshold` consecutive
//! retryable failures (5xx, 429, resets, timeouts) the circuit opens and no request goes out
//! for `open_for`; then one probe request is let through (half-open). A success closes the
//! circuit; a failure re-opens it for twice as long, up to `max_open_for`. It never fails a
//! request by itself: while open, callers wait (the governor), so nothing is dropped.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

/// Breaker knobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Consecutive retryable failures that open the circuit. 5: independent transient faults
    /// at a few percent almost never line up five in a row, while a real outage does at once.
    pub failure_threshold: u32,
    /// How long the circuit stays open before the first probe, in seconds. 30 s: short
    /// enough to notice recovery quickly, long enough not to hammer a struggling org.
    pub open_for_secs: u64,
    /// Longest open spell after repeated failed probes, in seconds (10 min).
    pub max_open_for_secs: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            open_for_secs: 30,
            max_open_for_secs: 600,
        }
    }
}

/// Where the breaker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

/// The breaker's state, to carry across a restart: an org in an outage should not be
/// hammered again just because the host restarted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BreakerSnapshot {
    pub state: BreakerState,
    pub consecutive_failures: u32,
    /// While open: when the next probe may go.
    pub open_until: Timestamp,
    /// The current open spell (it doubles on each failed probe), in milliseconds.
    pub open_spell_ms: u64,
}

/// What a request may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Go,
    /// Go, as the half-open probe.
    Probe,
    Wait(Duration),
}

#[derive(Debug, Clone)]
pub struct Breaker {
    cfg: BreakerConfig,
    state: BreakerState,
    consecutive: u32,
    open_until: Timestamp,
    open_spell: Duration,
    probe_in_flight: bool,
}

/// A transition worth reporting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Opened { after_failures: u32, for_secs: u64 },
    Closed,
}

impl Breaker {
    pub fn new(cfg: BreakerConfig) -> Self {
        let open_spell = Duration::from_secs(cfg.open_for_secs.max(1));
        Breaker {
            cfg,
            state: BreakerState::Closed,
            consecutive: 0,
            open_until: Timestamp::UNIX_EPOCH,
            open_spell,
            probe_in_flight: false,
        }
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// How long the breaker stays open from `now`; `None` when a request could try now.
    pub fn open_for(&self, now: Timestamp) -> Option<Duration> {
        (self.state == BreakerState::Open && now < self.open_until).then(|| {
            Duration::try_from(self.open_until.duration_since(now))
                .unwrap_or(Duration::from_secs(1))
        })
    }

    pub fn gate(&mut self, now: Timestamp) -> Gate {
        match self.state {
            BreakerState::Closed => Gate::Go,
            BreakerState::Open if now < self.open_until => Gate::Wait(
                Duration::try_from(self.open_until.duration_since(now))
                    .unwrap_or(Duration::from_secs(1)),
            ),
            BreakerState::Open | BreakerState::HalfOpen => {
                self.state = BreakerState::HalfOpen;
                if self.probe_in_flight {
                    // Re-check soon: the probe's outcome decides for everyone.
                    Gate::Wait(Duration::from_millis(500))
                } else {
                    self.probe_in_flight = true;
                    Gate::Probe
                }
            }
        }
    }

    pub fn success(&mut self) -> Option<Transition> {
        self.consecutive = 0;
        self.probe_in_flight = false;
        if self.state != BreakerState::Closed {
            self.state = BreakerState::Closed;
            self.open_spell = Duration::from_secs(self.cfg.open_for_secs.max(1));
            return Some(Transition::Closed);
        }
        None
    }

    pub fn failure(&mut self, now: Timestamp) -> Option<Transition> {
        self.consecutive = self.consecutive.saturating_add(1);
        let reopen = self.state == BreakerState::HalfOpen;
        if reopen
            || (self.state == BreakerState::Closed
                && self.consecutive >= self.cfg.failure_threshold.max(1))
        {
            if reopen {
                let max = Duration::from_secs(
                    self.cfg
                        .max_open_for_secs
                        .max(self.cfg.open_for_secs)
                        .max(1),
                );
                self.open_spell = self.open_spell.saturating_mul(2).min(max);
            }
            self.state = BreakerState::Open;
            self.probe_in_flight = false;
            let spell =
                SignedDuration::try_from(self.open_spell).unwrap_or(SignedDuration::from_secs(30));
            self.open_until = now.checked_add(spell).unwrap_or(now);
            return Some(Transition::Opened {
                after_failures: self.consecutive,
                for_secs: self.open_spell.as_secs(),
            });
        }
        None
    }

    pub fn snapshot(&self) -> BreakerSnapshot {
        BreakerSnapshot {
            state: self.state,
            consecutive_failures: self.consecutive,
            open_until: self.open_until,
            open_spell_ms: u64::try_from(self.open_spell.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// Takes over a previous breaker's state. A half-open breaker comes back open with its
    /// deadline passed: its probe died with the old process, so the next request probes.
    /// The open spell is kept within the configured bounds, and a deadline further away than
    /// one spell from `now` (a clock that jumped) is brought back to one spell.
    pub fn restore(&mut self, s: &BreakerSnapshot, now: Timestamp) {
        self.state = match s.state {
            BreakerState::HalfOpen => BreakerState::Open,
            other => other,
        };
        self.consecutive = s.consecutive_failures;
        self.open_until = s.open_until;
        let min = Duration::from_secs(self.cfg.open_for_secs.max(1));
        let max = Duration::from_secs(
            self.cfg
                .max_open_for_secs
                .max(self.cfg.open_for_secs)
                .max(1),
        );
        self.open_spell = Duration::from_millis(s.open_spell_ms).clamp(min, max);
        let latest = SignedDuration::try_from(self.open_spell)
            .ok()
            .and_then(|d| now.checked_add(d).ok())
            .unwrap_or(now);
        if self.open_until > latest {
            self.open_until = latest;
        }
        self.probe_in_flight = false;
    }

    /// A probe ended without a verdict (e.g. a non-retryable client error): free the slot.
    pub fn release_probe(&mut self) {
        self.probe_in_flight = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_half_opens_and_closes() {
        let mut b = Breaker::new(BreakerConfig {
            failure_threshold: 3,
            open_for_secs: 10,
            max_open_for_secs: 40,
        });
        let t0 = Timestamp::UNIX_EPOCH;
        assert_eq!(b.failure(t0), None);
        assert_eq!(b.failure(t0), None);
        assert_eq!(
            b.failure(t0),
            Some(Transition::Opened {
                after_failures: 3,
                for_secs: 10
            })
        );
        assert!(matches!(
            b.gate(t0 + SignedDuration::from_secs(5)),
            Gate::Wait(_)
        ));
        let t1 = t0 + SignedDuration::from_secs(10);
        assert_eq!(b.gate(t1), Gate::Probe);
        assert!(
            matches!(b.gate(t1), Gate::Wait(_)),
            "only one probe at a time"
        );
        // Probe fails: open again for twice as long.
        assert_eq!(
            b.failure(t1),
            Some(Transition::Opened {
                after_failures: 4,
                for_secs: 20
            })
        );
        let t2 = t1 + SignedDuration::from_secs(20);
        assert_eq!(b.gate(t2), Gate::Probe);
        assert_eq!(b.success(), Some(Transition::Closed));
        assert_eq!(b.gate(t2), Gate::Go);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn successes_reset_the_count() {
        let mut b = Breaker::new(BreakerConfig {
            failure_threshold: 2,
            ..Default::default()
        });
        let t = Timestamp::UNIX_EPOCH;
        assert_eq!(b.failure(t), None);
        b.success();
        assert_eq!(b.failure(t), None);
        assert!(b.failure(t).is_some());
    }
}
