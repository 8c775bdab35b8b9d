//! The org's API allocation: a rolling 24-hour request counter and the cap on concurrent
//! long-running requests.
//!
//! Owns the numbers behind `Sforce-Limit-Info: api-usage=N/M`, `/limits` and
//! `403 REQUEST_LIMIT_EXCEEDED`. The window is kept in simulated time (one bucket per
//! simulated minute), so with a clock scale a day's allocation frees up in minutes. Usage by
//! "other integrations" is a steady-state load: their calls over the last 24 h, spread evenly,
//! plus any bursts added at run time. A rejected request is never counted.

use crate::error::ApiError;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const MINUTE_MS: i64 = 60_000;
const WINDOW_MINUTES: i64 = 24 * 60;

#[derive(Debug, Default)]
struct Window {
    /// (simulated minute, requests in it), oldest first.
    buckets: VecDeque<(i64, u64)>,
    sum: u64,
}

impl Window {
    fn expire(&mut self, minute: i64) {
        while let Some(&(m, c)) = self.buckets.front() {
            if m > minute - WINDOW_MINUTES {
                break;
            }
            self.sum -= c;
            self.buckets.pop_front();
        }
    }

    fn add(&mut self, minute: i64, n: u64) {
        match self.buckets.back_mut() {
            Some((m, c)) if *m == minute => *c += n,
            _ => self.buckets.push_back((minute, n)),
        }
        self.sum += n;
    }
}

#[derive(Debug)]
pub struct Limits {
    max: AtomicU64,
    other_per_day: AtomicU64,
    ours: Mutex<Window>,
    bursts: Mutex<Window>,
    long_max: AtomicU64,
    long_threshold: Duration,
    inflight: Mutex<HashMap<u64, Instant>>,
    next_id: AtomicU64,
}

/// Held for the life of a request; drops its in-flight entry.
pub struct InflightGuard<'a> {
    limits: &'a Limits,
    id: u64,
}

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut m) = self.limits.inflight.lock() {
            m.remove(&self.id);
        }
    }
}

impl Limits {
    pub fn new(max: u64, other_per_day: u64, long_max: usize, long_threshold: Duration) -> Self {
        Limits {
            max: AtomicU64::new(max),
            other_per_day: AtomicU64::new(other_per_day),
            ours: Mutex::new(Window::default()),
            bursts: Mutex::new(Window::default()),
            long_max: AtomicU64::new(long_max as u64),
            long_threshold,
            inflight: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        }
    }

    pub fn max(&self) -> u64 {
        self.max.load(Ordering::Relaxed)
    }

    pub fn set_max(&self, v: u64) {
        self.max.store(v, Ordering::Relaxed);
    }

    pub fn set_other_per_day(&self, v: u64) {
        self.other_per_day.store(v, Ordering::Relaxed);
    }

    pub fn other_per_day(&self) -> u64 {
        self.other_per_day.load(Ordering::Relaxed)
    }

    /// Records a one-off burst of other integrations' requests at `now_ms`.
    pub fn add_other_usage(&self, now_ms: i64, n: u64) {
        if let Ok(mut w) = self.bursts.lock() {
            w.add(now_ms.div_euclid(MINUTE_MS), n);
        }
    }

    /// Requests made by Weft's clients (everything authenticated against this org) in the
    /// window ending at `now_ms`.
    pub fn ours(&self, now_ms: i64) -> u64 {
        let minute = now_ms.div_euclid(MINUTE_MS);
        self.ours
            .lock()
            .map(|mut w| {
                w.expire(minute);
                w.sum
            })
            .unwrap_or(0)
    }

    /// Total org usage in the window ending at `now_ms`.
    pub fn usage(&self, now_ms: i64) -> u64 {
        let minute = now_ms.div_euclid(MINUTE_MS);
        let bursts = self
            .bursts
            .lock()
            .map(|mut w| {
                w.expire(minute);
                w.sum
            })
            .unwrap_or(0);
        self.ours(now_ms) + self.other_per_day() + bursts
    }

    /// Counts one request, or refuses it when the allocation is spent.
    /// Returns (used, max) after counting.
    pub fn consume(&self, now_ms: i64) -> Result<(u64, u64), ApiError> {
        let max = self.max();
        let used = self.usage(now_ms);
        if used >= max {
            return Err(ApiError::new(
                403,
                "REQUEST_LIMIT_EXCEEDED",
                "TotalRequests Limit exceeded.",
            ));
        }
        if let Ok(mut w) = self.ours.lock() {
            w.add(now_ms.div_euclid(MINUTE_MS), 1);
        }
        Ok((used + 1, max))
    }

    pub fn set_long_running_max(&self, v: usize) {
        self.long_max.store(v as u64, Ordering::Relaxed);
    }

    /// Registers an in-flight request; refuses it when the org already has the maximum
    /// number of requests running past the long-running threshold.
    pub fn enter(&self) -> Result<InflightGuard<'_>, ApiError> {
        let mut m = self
            .inflight
            .lock()
            .map_err(|_| ApiError::new(500, "UNKNOWN_EXCEPTION", "limits lock poisoned"))?;
        let long = m
            .values()
            .filter(|t| t.elapsed() >= self.long_threshold)
            .count() as u64;
        if long >= self.long_max.load(Ordering::Relaxed) {
            return Err(ApiError::new(
                403,
                "REQUEST_LIMIT_EXCEEDED",
                "ConcurrentRequests (Concurrent API Requests) Limit exceeded.",
            ));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        m.insert(id, Instant::now());
        Ok(InflightGuard { limits: self, id })
    }

    /// Requests running now, and how many of them count as long-running.
    pub fn inflight(&self) -> (usize, usize) {
        self.inflight
            .lock()
            .map(|m| {
                (
                    m.len(),
                    m.values()
                        .filter(|t| t.elapsed() >= self.long_threshold)
                        .count(),
                )
            })
            .unwrap_or((0, 0))
    }
}
