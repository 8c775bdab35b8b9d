//! Pacing: spend a window's budget evenly instead of bursting to the ceiling and stalling.
//!
//! Owns the token bucket behind every ceiling. Its refill rate is recomputed on every look as
//! (budget left in the window) / (time left in the window), so a slow start is made up
//! smoothly and a fast start slows down, and the window ends with its budget spent when work
//! was waiting. The bucket holds at most `burst` tokens, so idle time never turns into a
//! burst. A window first seen part-way through (at start-up, after a restart, or when work
//! arrives mid-window) counts its elapsed share as already spent: what happened earlier in the
//! window is unknown, and assuming the worst keeps the ceiling. Pure arithmetic over instants
//! handed in: it never sleeps and never reads a clock.

use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::schedule::ActiveWindow;

/// Default bucket size. A handful of tokens lets a few concurrent workers start together
/// without waiting on each other; anything larger would let an idle spell become a burst that
/// the customer sees as a spike in their API usage.
pub const DEFAULT_BURST: f64 = 5.0;

/// Longest single wait the pacer asks for. Waiting in slices keeps a waiter responsive to a
/// raised ceiling or a newly learned daily maximum instead of sleeping through it.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// One ceiling's bucket: what has been spent in the current window and what may go next.
#[derive(Debug, Clone)]
pub struct Pacer {
    burst: f64,
    window_start: Option<Timestamp>,
    /// Share of the window presumed spent before this pacer first saw it.
    presumed: f64,
    spent: u64,
    tokens: f64,
    last: Option<Timestamp>,
}

/// What a pacer knows of its current window, to carry across a restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PacerSnapshot {
    /// Start of the window the pacer was in (`None`: it had not seen one).
    pub window_start: Option<Timestamp>,
    /// Share of that window presumed spent before the pacer first saw it (0.0..=1.0).
    pub presumed: f64,
    /// Requests admitted in that window.
    pub spent: u64,
}

/// The pacer's view of its current window, for telemetry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PacerView {
    pub budget: f64,
    /// The budget minus the share presumed spent before the pacer saw the window.
    pub available: f64,
    pub spent: u64,
    /// The part of the budget that even pacing would have spent by now.
    pub allowed_so_far: f64,
}

impl Pacer {
    pub fn new(burst: f64) -> Self {
        let burst = if burst.is_finite() && burst >= 1.0 {
            burst
        } else {
            1.0
        };
        Pacer {
            burst,
            window_start: None,
            presumed: 0.0,
            spent: 0,
            tokens: 0.0,
            last: None,
        }
    }

    /// Brings the bucket up to `now` inside `window`; returns how long until one request may
    /// go (zero if now).
    pub fn wait(&mut self, now: Timestamp, window: &ActiveWindow, daily_max: u64) -> Duration {
        if self.window_start != Some(window.start) {
            // A new window starts with nothing spent and one token: the first request of a
            // process goes at once (it is the one that learns the org's real allocation —
            // until then the rate is the cautious assumed one, a token every few seconds),
            // and `remaining` below still caps it by the window's budget.
            self.window_start = Some(window.start);
            let len = window
                .end
                .duration_since(window.start)
                .as_secs_f64()
                .max(1e-3);
            let elapsed = now
                .duration_since(window.start)
                .as_secs_f64()
                .clamp(0.0, len);
            self.presumed = elapsed / len;
            self.spent = 0;
            self.tokens = 1.0;
            self.last = Some(now.max(window.start));
        }
        let budget = window.budget(daily_max) * (1.0 - self.presumed);
        let remaining = (budget - self.spent as f64).max(0.0);
        let left = window.end.duration_since(now).as_secs_f64().max(1e-3);
        let rate = remaining / left;
        let last = self.last.unwrap_or(now);
        let dt = now.duration_since(last).as_secs_f64().max(0.0);
        self.tokens = (self.tokens + rate * dt).min(self.burst).min(remaining);
        self.last = Some(now.max(last));
        if self.tokens >= 1.0 && remaining >= 1.0 {
            return Duration::ZERO;
        }
        let secs = if remaining < 1.0 || rate <= 0.0 {
            left
        } else {
            ((1.0 - self.tokens) / rate).min(left)
        };
        Duration::from_secs_f64(secs.max(0.001)).min(MAX_WAIT)
    }

    pub fn snapshot(&self) -> PacerSnapshot {
        PacerSnapshot {
            window_start: self.window_start,
            presumed: self.presumed,
            spent: self.spent,
        }
    }

    /// Takes over what a previous pacer spent in its window. If that window is over by the
    /// next `wait`, the pacer moves on as usual and the snapshot no longer matters. The bucket
    /// restarts empty at `now`: tokens saved before a crash may already have been spent by
    /// requests the snapshot never saw.
    pub fn restore(&mut self, s: &PacerSnapshot, now: Timestamp) {
        self.window_start = s.window_start;
        self.presumed = if s.presumed.is_finite() {
            s.presumed.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.spent = s.spent;
        self.tokens = 0.0;
        self.last = Some(now);
    }

    /// Spends one token; call only right after `wait` returned zero.
    pub fn take(&mut self) {
        self.tokens = (self.tokens - 1.0).max(0.0);
        self.spent += 1;
    }

    pub fn view(&self, now: Timestamp, window: &ActiveWindow, daily_max: u64) -> PacerView {
        let budget = window.budget(daily_max);
        let len = window
            .end
            .duration_since(window.start)
            .as_secs_f64()
            .max(1e-3);
        let elapsed = now
            .duration_since(window.start)
            .as_secs_f64()
            .clamp(0.0, len);
        let (spent, presumed) = if self.window_start == Some(window.start) {
            (self.spent, self.presumed)
        } else {
            (0, 0.0)
        };
        let allowed_so_far = (budget * (elapsed / len - presumed)).max(0.0);
        PacerView {
            budget,
            available: budget * (1.0 - presumed),
            spent,
            allowed_so_far,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::SignedDuration;

    fn window(hours: i64, ceiling: f64) -> ActiveWindow {
        let start = Timestamp::UNIX_EPOCH;
        ActiveWindow {
            start,
            end: start + SignedDuration::from_hours(hours),
            ceiling,
            rule: None,
        }
    }

    /// Simulates an always-busy caller: returns requests admitted per window.
    fn run(w: &ActiveWindow, max: u64, step: SignedDuration) -> u64 {
        let mut p = Pacer::new(DEFAULT_BURST);
        let mut now = w.start;
        while now < w.end {
            while p.wait(now, w, max).is_zero() {
                p.take();
            }
            now += step;
        }
        p.spent
    }

    #[test]
    fn busy_caller_spends_the_budget_and_never_more() {
        let w = window(9, 0.30);
        let budget = w.budget(10_000); // 1125
        for step_ms in [100, 1_000, 7_000, 30_000] {
            let spent = run(&w, 10_000, SignedDuration::from_millis(step_ms));
            assert!(spent as f64 <= budget, "{spent} > {budget}");
            assert!(
                spent as f64 >= 0.99 * budget - 1.0,
                "step {step_ms}: {spent} < 99% of {budget}"
            );
        }
    }

    #[test]
    fn spends_evenly_not_in_a_burst() {
        let w = window(10, 0.5);
        let max = 24_000; // budget 5,000 over 10 h
        let mut p = Pacer::new(DEFAULT_BURST);
        let mut now = w.start;
        let mut first_hour = 0;
        while now < w.start + SignedDuration::from_hours(1) {
            while p.wait(now, &w, max).is_zero() {
                p.take();
                first_hour += 1;
            }
            now += SignedDuration::from_secs(1);
        }
        assert!((490..=510).contains(&first_hour), "{first_hour}");
    }

    #[test]
    fn idle_time_does_not_become_a_burst() {
        let w = window(10, 0.5);
        let mut p = Pacer::new(DEFAULT_BURST);
        let later = w.start + SignedDuration::from_hours(5);
        // The window's first request goes at once; the next one waits.
        assert!(p.wait(w.start, &w, 24_000).is_zero());
        p.take();
        assert!(p.wait(w.start, &w, 24_000) > Duration::ZERO);
        let mut n = 0;
        while p.wait(later, &w, 24_000).is_zero() {
            p.take();
            n += 1;
        }
        assert_eq!(n, DEFAULT_BURST as u64);
    }

    #[test]
    fn a_window_seen_late_only_grants_what_is_left_of_it() {
        let w = window(10, 0.5); // 5,000 over 10 h at 24,000/day
        let mut p = Pacer::new(DEFAULT_BURST);
        let mut now = w.start + SignedDuration::from_hours(8);
        while now < w.end {
            while p.wait(now, &w, 24_000).is_zero() {
                p.take();
            }
            now += SignedDuration::from_secs(1);
        }
        assert!(p.spent <= 1_000 && p.spent >= 990, "{}", p.spent);
    }

    #[test]
    fn wait_is_about_one_interval() {
        let w = window(1, 0.24); // 24,000/day × 0.24 / 24 = 240 per hour = one per 15 s
        let mut p = Pacer::new(1.0);
        assert!(
            p.wait(w.start, &w, 24_000).is_zero(),
            "the first request goes at once"
        );
        p.take();
        let d = p.wait(w.start, &w, 24_000);
        assert!((14.0..=16.0).contains(&d.as_secs_f64()), "{d:?}");
    }
}
