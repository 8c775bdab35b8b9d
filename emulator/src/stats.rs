//! What the org saw: API calls by kind and by client, refusals, injected faults, writes and
//! change-event delivery.
//!
//! Owns the counters behind `GET /__admin/stats` and `EmulatorHandle::stats`, so a test can
//! prove what the host did to the org. A client is named by `Sforce-Call-Options: client=…`
//! when sent, else by the product token of its `User-Agent`. Counting never fails a request.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct StatsSnapshot {
    /// API requests served (counted against the daily allocation).
    pub api_calls: u64,
    pub by_kind: BTreeMap<String, u64>,
    pub by_client: BTreeMap<String, u64>,
    /// client → kind → calls.
    pub by_client_kind: BTreeMap<String, BTreeMap<String, u64>>,
    /// Requests refused with `REQUEST_LIMIT_EXCEEDED` (daily allocation).
    pub limit_rejections: u64,
    /// Requests refused for too many concurrent long-running requests.
    pub concurrency_rejections: u64,
    /// Faults fired, by kind (`503`, `429`, `401`, `reset`, `body_reset`, `slow`, `lock_row`,
    /// `bulk_failed`).
    pub faults_injected: BTreeMap<String, u64>,
    /// Records created/updated/deleted through any API.
    pub records_written: u64,
    pub token_requests: u64,
    /// Access tokens issued, by OAuth grant type (`client_credentials`, `refresh_token`,
    /// `password`, the JWT bearer URN).
    pub tokens_by_grant: BTreeMap<String, u64>,
    /// Request bodies that arrived gzip-compressed (`Content-Encoding: gzip`) and were decoded.
    pub gzip_request_bodies: u64,
    pub change_events_published: u64,
    pub webhook_delivered: u64,
    pub webhook_failed: u64,
    /// Filled in by the org at snapshot time.
    pub api_usage: u64,
    pub api_max: u64,
    pub jobs: Vec<serde_json::Value>,
}

/// How far back (org time) the per-minute ledger keeps calls: two days, enough to check any
/// window of a day against the org's own clock, bounded however long the org runs.
const LEDGER_KEEP_MS: i64 = 2 * 24 * 3_600_000;
const MINUTE_MS: i64 = 60_000;

#[derive(Debug, Default)]
pub struct Stats {
    inner: Mutex<StatsSnapshot>,
    /// (client, org-clock minute) → calls served in it. Lets a test count what the org saw
    /// inside a time window by the org's clock rather than by sampling the totals.
    minutes: Mutex<BTreeMap<(String, i64), u64>>,
}

impl Stats {
    fn with(&self, f: impl FnOnce(&mut StatsSnapshot)) {
        if let Ok(mut s) = self.inner.lock() {
            f(&mut s);
        }
    }

    /// One API request served at `at_ms` on the org's clock.
    pub fn call(&self, kind: &str, client: &str, at_ms: i64) {
        if let Ok(mut m) = self.minutes.lock() {
            let minute = at_ms.div_euclid(MINUTE_MS);
            *m.entry((client.to_string(), minute)).or_default() += 1;
            // Ledger entries are ordered by client first, so prune per client only when this
            // one's oldest minute has aged out.
            let horizon = minute - LEDGER_KEEP_MS / MINUTE_MS;
            let stale: Vec<_> = m
                .range((client.to_string(), i64::MIN)..(client.to_string(), horizon))
                .map(|(k, _)| k.clone())
                .collect();
            for k in stale {
                m.remove(&k);
            }
        }
        self.with(|s| {
            s.api_calls += 1;
            *s.by_kind.entry(kind.to_string()).or_default() += 1;
            *s.by_client.entry(client.to_string()).or_default() += 1;
            *s.by_client_kind
                .entry(client.to_string())
                .or_default()
                .entry(kind.to_string())
                .or_default() += 1;
        });
    }

    pub fn fault(&self, kind: &str) {
        self.with(|s| *s.faults_injected.entry(kind.to_string()).or_default() += 1);
    }

    pub fn limit_rejected(&self, concurrency: bool) {
        self.with(|s| {
            if concurrency {
                s.concurrency_rejections += 1
            } else {
                s.limit_rejections += 1
            }
        });
    }

    pub fn written(&self, n: u64) {
        self.with(|s| s.records_written += n);
    }

    pub fn gzip_request_body(&self) {
        self.with(|s| s.gzip_request_bodies += 1);
    }

    pub fn token(&self) {
        self.with(|s| s.token_requests += 1);
    }

    pub fn granted(&self, grant: &str) {
        self.with(|s| *s.tokens_by_grant.entry(grant.to_string()).or_default() += 1);
    }

    pub fn events(&self, published: u64, delivered: u64, failed: u64) {
        self.with(|s| {
            s.change_events_published += published;
            s.webhook_delivered += delivered;
            s.webhook_failed += failed;
        });
    }

    /// Calls by `client` served in whole org-clock minutes from `from_ms` (inclusive) to
    /// `to_ms` (exclusive), both rounded down to the minute; only the last two days are kept.
    pub fn client_calls_between(&self, client: &str, from_ms: i64, to_ms: i64) -> u64 {
        let Ok(m) = self.minutes.lock() else { return 0 };
        let (from, to) = (from_ms.div_euclid(MINUTE_MS), to_ms.div_euclid(MINUTE_MS));
        m.range((client.to_string(), from)..(client.to_string(), to))
            .map(|(_, n)| n)
            .sum()
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        self.inner.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn reset(&self) {
        self.with(|s| *s = StatsSnapshot::default());
        if let Ok(mut m) = self.minutes.lock() {
            m.clear();
        }
    }
}

/// Names the client of a request (see module docs).
pub fn client_name(call_options: Option<&str>, user_agent: Option<&str>, fallback: &str) -> String {
    if let Some(opts) = call_options {
        for part in opts.split(',') {
            if let Some(c) = part.trim().strip_prefix("client=")
                && !c.is_empty()
            {
                return c.to_string();
            }
        }
    }
    user_agent
        .and_then(|ua| ua.split_whitespace().next())
        .map(|p| p.split('/').next().unwrap_or(p).to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| fallback.to_string())
}
