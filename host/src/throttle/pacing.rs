//! Pacing: spend a window's budget evenly instead of bursting to the ceiling and stalling.
//!
//! Owns the token bucket behind every ceiling. Its refill rate is recomputed on every look as
//! (budget left in the window) / (time left in the window), so a slow start is made up
//! smoothly and a fast start slows down, and the window ends with its budget spent when work
//! was waiting. The bucket holds a share of the window's budget (`burst_share`, never less
//! than `burst_min_calls`) and starts each window full, so a short job (a sync of a few
//! hundred records, a retry round) runs at the org's speed instead of waiting on pacing; it
//! never holds more than what is left of the window's budget, so a long job still paces to
//! the ceiling and never crosses it. A window first seen part-way through (at start-up, after a restart, or when work
//! arrives mid-window) counts its elapsed share as already spent: what happened earlier in the
//! window is unknown, and assuming the worst keeps the ceiling. Pure arithmetic over instants
//! handed in: it never sleeps and never reads a clock.

use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::schedule::ActiveWindow;

/// Default share of a window's budget the bucket holds. 2%: a 24-hour window at 80% of a
/// 100,000-call org holds 1,600 calls, enough for a typical short job to go at once, while a
/// spike the customer sees in their API usage is at most a fiftieth of the window's budget.
/// Larger shares make more jobs instant and the spikes larger; 0 leaves only the floor.
pub const DEFAULT_BURST_SHARE: f64 = 0.02;

/// Default floor of the bucket, in calls. 250: on a small org (15,000 calls a day, where 2%
/// of a short window is a few dozen calls) a job of a few hundred calls still runs without
/// waiting on pacing; it is under 2% of the smallest allocation an org with API access has.
/// The floor never lifts the bucket above what is left of the window's budget.
pub const DEFAULT_BURST_MIN_CALLS: u64 = 250;

/// Longest single wait the pacer asks for. Waiting in slices keeps a waiter responsive to a
/// raised ceiling or a newly learned daily maximum instead of sleeping through it.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// One ceiling's bucket: what has been spent in the current window and what may go next.
#[derive(Debug, Clone)]
pub struct Pacer {
    burst_share: f64,
    burst_min: f64,
    window_start: Option<Timestamp>,
    /// Share of the window presumed spent before this pacer first saw it.
    presumed: f64,
    spent: u64,
    tokens: f64,
    /// The bucket's size at the last look; it grows when the org's real allocation is learned.
    capacity: f64,
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
    /// A bucket holding `burst_share` of each window's budget, and at least `burst_min_calls`
    /// (at least one). Out-of-range values are clamped; configuration validates them first.
    pub fn new(burst_share: f64, burst_min_calls: u64) -> Self {
        let burst_share = if burst_share.is_finite() {
            burst_share.clamp(0.0, 1.0)
        } else {
            0.0
        };
        Pacer {
            burst_share,
            burst_min: burst_min_calls.max(1) as f64,
            window_start: None,
            presumed: 0.0,
            spent: 0,
            tokens: 0.0,
            capacity: 0.0,
            last: None,
        }
    }

    /// Brings the bucket up to `now` inside `window`; returns how long until one request may
    /// go (zero if now).
    pub fn wait(&mut self, now: Timestamp, window: &ActiveWindow, daily_max: u64) -> Duration {
        let fresh = self.window_start != Some(window.start);
        if fresh {
            // A new window starts with nothing spent and a full bucket (filled below, once
            // the budget is known): a short job goes at once, and `remaining` still caps it
            // by the window's budget. Before the org's real allocation is learned (from the
            // first response) the budget is the cautious assumed one.
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
            self.last = Some(now.max(window.start));
        }
        let whole = window.budget(daily_max);
        let budget = whole * (1.0 - self.presumed);
        let remaining = (budget - self.spent as f64).max(0.0);
        // The bucket's size is a share of the whole window's budget, not of what is left of
        // it: a host that first sees the window late (started at 21:00 into a day-long one)
        // still lets a short job go at once; `remaining` below keeps it inside the ceiling.
        let capacity = (self.burst_share * whole).max(self.burst_min);
        if fresh {
            self.tokens = capacity;
        } else if capacity > self.capacity {
            // The budget grew (the org's real allocation learned from the first response, or
            // a raised ceiling): the bucket grows by as much, so a short job that started on
            // the cautious assumed allocation is not held to its smaller bucket.
            self.tokens += capacity - self.capacity;
        }
        self.capacity = capacity;
        let left = window.end.duration_since(now).as_secs_f64().max(1e-3);
        let rate = remaining / left;
        let last = self.last.unwrap_or(now);
        let dt = now.duration_since(last).as_secs_f64().max(0.0);
        self.tokens = (self.tokens + rate * dt).min(capacity).min(remaining);
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
        // Nothing to grow from: the empty bucket refills at the pacing rate only.
        self.capacity = f64::INFINITY;
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
        let mut p = Pacer::new(DEFAULT_BURST_SHARE, DEFAULT_BURST_MIN_CALLS);
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
    fn past_the_bucket_it_spends_evenly() {
        let w = window(10, 0.5);
        let max = 24_000; // budget 5,000 over 10 h; the bucket holds the 250-call floor
        let mut p = Pacer::new(DEFAULT_BURST_SHARE, DEFAULT_BURST_MIN_CALLS);
        let mut now = w.start;
        let mut first_hour = 0;
        while now < w.start + SignedDuration::from_hours(1) {
            while p.wait(now, &w, max).is_zero() {
                p.take();
                first_hour += 1;
            }
            now += SignedDuration::from_secs(1);
        }
        // The bucket at once, then a tenth of the other 4,750.
        assert!((715..=735).contains(&first_hour), "{first_hour}");
    }

    #[test]
    fn idle_time_fills_the_bucket_and_no_more() {
        let w = window(10, 0.5);
        let mut p = Pacer::new(DEFAULT_BURST_SHARE, DEFAULT_BURST_MIN_CALLS);
        let later = w.start + SignedDuration::from_hours(5);
        let mut n = 0;
        while p.wait(w.start, &w, 24_000).is_zero() {
            p.take();
            n += 1;
        }
        assert_eq!(
            n, DEFAULT_BURST_MIN_CALLS,
            "the window starts with a full bucket"
        );
        assert!(p.wait(w.start, &w, 24_000) > Duration::ZERO);
        let mut n = 0;
        while p.wait(later, &w, 24_000).is_zero() {
            p.take();
            n += 1;
        }
        assert_eq!(
            n, DEFAULT_BURST_MIN_CALLS,
            "five idle hours refill one bucket"
        );
    }

    #[test]
    fn a_short_job_goes_at_once() {
        // 80% of 100,000 over a day: 80,000 calls, a 2% bucket of 1,600.
        let w = window(24, 0.8);
        let mut p = Pacer::new(DEFAULT_BURST_SHARE, DEFAULT_BURST_MIN_CALLS);
        for i in 0..1_600 {
            assert!(p.wait(w.start, &w, 100_000).is_zero(), "call {i} waited");
            p.take();
        }
        assert!(p.wait(w.start, &w, 100_000) > Duration::ZERO);
    }

    #[test]
    fn learning_a_larger_allocation_grows_the_bucket() {
        let w = window(24, 0.8);
        let mut p = Pacer::new(DEFAULT_BURST_SHARE, DEFAULT_BURST_MIN_CALLS);
        // Assumed 15,000: the 250 floor. Learned 100,000 after the first call: 1,600.
        assert!(p.wait(w.start, &w, 15_000).is_zero());
        p.take();
        let mut n = 1;
        while p.wait(w.start, &w, 100_000).is_zero() {
            p.take();
            n += 1;
        }
        assert_eq!(n, 1_600);
    }

    #[test]
    fn the_bucket_never_holds_more_than_the_window_has_left() {
        // 1% of 15,000 over one hour: a budget of 6.25, far under the 250-call floor.
        let w = window(1, 0.01);
        let mut p = Pacer::new(DEFAULT_BURST_SHARE, DEFAULT_BURST_MIN_CALLS);
        let mut now = w.start;
        while now < w.end {
            while p.wait(now, &w, 15_000).is_zero() {
                p.take();
            }
            now += SignedDuration::from_secs(10);
        }
        assert_eq!(p.spent, 6);
    }

    #[test]
    fn a_window_seen_late_only_grants_what_is_left_of_it() {
        let w = window(10, 0.5); // 5,000 over 10 h at 24,000/day
        let mut p = Pacer::new(DEFAULT_BURST_SHARE, DEFAULT_BURST_MIN_CALLS);
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
    fn a_window_seen_late_still_lets_a_short_job_go_at_once() {
        // 80% of 100,000 over a day, first seen at 21:00: 10,000 calls left, and the bucket
        // still holds 2% of the day's 80,000.
        let w = window(24, 0.8);
        let mut p = Pacer::new(DEFAULT_BURST_SHARE, DEFAULT_BURST_MIN_CALLS);
        let late = w.start + SignedDuration::from_hours(21);
        for i in 0..1_600 {
            assert!(p.wait(late, &w, 100_000).is_zero(), "call {i} waited");
            p.take();
        }
        assert!(p.wait(late, &w, 100_000) > Duration::ZERO);
    }

    #[test]
    fn wait_is_about_one_interval() {
        let w = window(1, 0.24); // 24,000/day × 0.24 / 24 = 240 per hour = one per 15 s
        let mut p = Pacer::new(0.0, 1);
        assert!(
            p.wait(w.start, &w, 24_000).is_zero(),
            "the first request goes at once"
        );
        p.take();
        let d = p.wait(w.start, &w, 24_000);
        assert!((14.0..=16.0).contains(&d.as_secs_f64()), "{d:?}");
    }
}
