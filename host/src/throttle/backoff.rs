//! Retry timing: exponential backoff with full jitter, and `Retry-After`.
//!
//! Owns the policy (base, cap, attempts) and the delay for the n-th retry. It decides only
//! how long to wait and whether another attempt is allowed; which failures are retryable is
//! the transport's call (`salesforce::error`), and the waiting itself goes through the clock.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

/// Backoff knobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackoffPolicy {
    /// First retry waits up to this. 500 ms: long enough for a 503 blip or a row lock to
    /// clear, short enough that one transient fault costs little.
    #[serde(with = "millis")]
    pub base: Duration,
    /// No single wait exceeds this (unless `Retry-After` asks for more). 60 s: past that, an
    /// outage is the circuit breaker's business, not one request's.
    #[serde(with = "millis")]
    pub cap: Duration,
    /// Attempts per request, the first included, before the caller gets a final error for
    /// its DLQ. 10 attempts with the defaults span several minutes of trying, which rides out
    /// ordinary Salesforce hiccups without holding a batch hostage for hours.
    pub max_attempts: u32,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(60),
            max_attempts: 10,
        }
    }
}

impl BackoffPolicy {
    /// The exponential ceiling for retry number `retry` (0 = first retry):
    /// `min(cap, base × 2^retry)`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.min(30));
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// Full jitter: uniform in `[0, ceiling(retry)]`, so many clients retrying the same
    /// outage spread out instead of returning in lockstep. `Retry-After` is a floor: the wait
    /// is at least what the server asked for, plus up to one `base` of jitter.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>, rng: &mut Jitter) -> Duration {
        match retry_after {
            Some(ra) => ra + self.base.mul_f64(rng.unit()),
            None => self.ceiling(retry).mul_f64(rng.unit()),
        }
    }
}

/// The randomness behind jitter. Seedable so tests are repeatable.
#[derive(Debug)]
pub struct Jitter(StdRng);

impl Jitter {
    pub fn seeded(seed: u64) -> Self {
        Jitter(StdRng::seed_from_u64(seed))
    }

    fn unit(&mut self) -> f64 {
        self.0.random_range(0.0..=1.0)
    }
}

/// Parses `Retry-After` given in seconds. The HTTP-date form is not used by Salesforce's
/// edges and is ignored (the exponential delay applies instead).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let secs: f64 = value.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)))
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_up_to_cap() {
        let p = BackoffPolicy::default();
        assert_eq!(p.ceiling(0), Duration::from_millis(500));
        assert_eq!(p.ceiling(3), Duration::from_secs(4));
        assert_eq!(p.ceiling(20), Duration::from_secs(60));
        assert_eq!(p.ceiling(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn full_jitter_stays_in_range_and_spreads() {
        let p = BackoffPolicy::default();
        let mut j = Jitter::seeded(1);
        let ds: Vec<Duration> = (0..200).map(|_| p.delay(2, None, &mut j)).collect();
        assert!(ds.iter().all(|d| *d <= Duration::from_secs(2)));
        assert!(ds.iter().any(|d| *d < Duration::from_millis(500)));
        assert!(ds.iter().any(|d| *d > Duration::from_millis(1500)));
    }

    #[test]
    fn retry_after_is_a_floor() {
        let p = BackoffPolicy::default();
        let mut j = Jitter::seeded(2);
        for _ in 0..50 {
            let d = p.delay(0, Some(Duration::from_secs(3)), &mut j);
            assert!(d >= Duration::from_secs(3) && d <= Duration::from_millis(3500));
        }
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }
}
