//! Retry timing for every caller: exponential backoff with full jitter, and `Retry-After`.
//!
//! The one place that says how long to wait before a retry: the Salesforce transport (via
//! its governor), the outbound pipeline's retry rounds and the inbound HTTP sink all draw
//! their waits here, and every `Retry-After` the host reads is parsed by
//! [`parse_retry_after`]. It owns the policy (base, cap, attempts) and the delay for the
//! n-th retry; which failures are retryable is each caller's call (`salesforce::error`, the
//! sink's status rules), and the waiting itself is the caller's (the governor's clock, a
//! round's due time, a sleep).

use std::time::Duration;

use jiff::Timestamp;
use jiff::fmt::{rfc2822, strtime};
use jiff::tz::TimeZone;
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

    /// Seeded from the clock: jitter only has to differ between hosts, installations and
    /// restarts, not be unpredictable.
    pub fn from_clock() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Jitter::seeded(seed)
    }

    fn unit(&mut self) -> f64 {
        self.0.random_range(0.0..=1.0)
    }
}

/// Longest `Retry-After` honoured. An hour: a server that wants more is in an outage the
/// breaker handles, and a mis-set clock or proxy (a date a year out, `Retry-After:
/// 99999999`) must not park a request, and the batch behind it, for that long. The request is
/// simply retried after an hour and told again if need be.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Parses `Retry-After` (RFC 9110 §10.2.3): delta-seconds, or an HTTP-date.
///
/// A date is turned into a wait measured from `reference`: pass the response's `Date`
/// header when it has one, so the wait is the server's own arithmetic and immune to skew
/// between its clock and ours; otherwise our clock's now. A date already past means "now"
/// (zero). Waits beyond [`MAX_RETRY_AFTER`] are clamped to it. A value that is neither form
/// is ignored (`None`): the exponential delay applies instead.
pub fn parse_retry_after(value: &str, reference: Timestamp) -> Option<Duration> {
    let v = value.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        // All digits but too large for u64 is still "a very long time", not garbage.
        let secs = v.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    let at = parse_http_date(v)?;
    let wait = Duration::try_from(at.duration_since(reference)).unwrap_or(Duration::ZERO);
    Some(wait.min(MAX_RETRY_AFTER))
}

/// `t` as an HTTP-date (IMF-fixdate, RFC 9110 §5.6.7): `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn format_http_date(t: Timestamp) -> String {
    t.to_zoned(TimeZone::UTC)
        .strftime("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

/// Parses an HTTP-date (RFC 9110 §5.6.7): the preferred IMF-fixdate
/// (`Sun, 06 Nov 1994 08:49:37 GMT`) and the two obsolete forms recipients must still
/// accept, RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime
/// (`Sun Nov  6 08:49:37 1994`). All three are UTC.
pub fn parse_http_date(value: &str) -> Option<Timestamp> {
    let v = value.trim();
    // IMF-fixdate is a profile of RFC 2822, which jiff parses (GMT included).
    if let Ok(ts) = RFC2822.parse_timestamp(v) {
        return Some(ts);
    }
    let utc = |tm: strtime::BrokenDownTime| {
        tm.to_datetime()
            .ok()?
            .to_zoned(TimeZone::UTC)
            .ok()
            .map(|z| z.timestamp())
    };
    if let Some(rest) = v.strip_suffix(" GMT")
        && let Ok(tm) = strtime::parse("%A, %d-%b-%y %H:%M:%S", rest)
    {
        return utc(tm);
    }
    // asctime pads a one-digit day with a space; collapse runs of spaces so `%d` reads it.
    let collapsed = v.split_ascii_whitespace().collect::<Vec<_>>().join(" ");
    strtime::parse("%a %b %d %H:%M:%S %Y", &collapsed)
        .ok()
        .and_then(utc)
}

static RFC2822: rfc2822::DateTimeParser = rfc2822::DateTimeParser::new();

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
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn retry_after_in_seconds() {
        let now = ts("2015-10-21T07:28:00Z");
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("86400", now), Some(MAX_RETRY_AFTER));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(MAX_RETRY_AFTER)
        );
        for bad in ["-1", "1.5", "", "soon", "7s", "+7"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn an_http_date_is_written_as_imf_fixdate_and_read_back() {
        let t = ts("1994-11-06T08:49:37Z");
        assert_eq!(format_http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(parse_http_date(&format_http_date(t)), Some(t));
    }

    #[test]
    fn retry_after_as_an_http_date_in_all_three_forms() {
        let now = ts("1994-11-06T08:49:07Z");
        for form in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(
                parse_http_date(form),
                Some(ts("1994-11-06T08:49:37Z")),
                "{form}"
            );
            assert_eq!(
                parse_retry_after(form, now),
                Some(Duration::from_secs(30)),
                "{form}"
            );
        }
        // A date in the past: retry now. A date far ahead: clamped.
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("Mon, 06 Nov 1995 08:49:37 GMT", now),
            Some(MAX_RETRY_AFTER)
        );
        for bad in [
            "Sun, 06 Nov 1994 25:49:37 GMT",
            "Sun, 31 Feb 1994 08:49:37 GMT",
            "06 Nov 1994",
            "Sunday, 06-Nov-94 08:49:37",
            "Sun Nov  6 08:49:37",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad:?}");
        }
    }
}
