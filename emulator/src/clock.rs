//! Simulated time and Salesforce's date/time text formats.
//!
//! Owns the org's notion of "now": a clock that starts at a chosen instant and runs
//! `scale` times faster than the wall clock (so a simulated day can pass in a minute), plus an
//! offset tests can push forward. Everything the org stamps (audit fields, limit windows, job
//! dates, change events) reads this clock; it must never read the wall clock directly, or an
//! accelerated run would mix two timelines.
//!
//! Also owns the text formats: `2013-05-20T20:49:32.000+0000` (REST out), `...Z` (Bulk CSV
//! out), and the ISO-8601 forms accepted on input.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub const MS_PER_DAY: i64 = 86_400_000;

/// A scaled clock. Cheap to read from many threads.
#[derive(Debug)]
pub struct SimClock {
    real_start: Instant,
    sim_start_ms: i64,
    scale: f64,
    offset_ms: AtomicI64,
}

impl SimClock {
    /// `scale` = simulated seconds per real second (1.0 = real time; 1440 = a day a minute).
    pub fn new(sim_start_ms: i64, scale: f64) -> Self {
        SimClock {
            real_start: Instant::now(),
            sim_start_ms,
            scale: if scale.is_finite() && scale > 0.0 {
                scale
            } else {
                1.0
            },
            offset_ms: AtomicI64::new(0),
        }
    }

    /// Epoch milliseconds of the wall clock, for the default start instant.
    pub fn wall_now_ms() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }

    pub fn now_ms(&self) -> i64 {
        let real = self.real_start.elapsed().as_secs_f64() * 1000.0;
        self.sim_start_ms + (real * self.scale) as i64 + self.offset_ms.load(Ordering::Relaxed)
    }

    /// Now truncated to whole seconds: Salesforce audit fields carry second precision.
    pub fn now_audit_ms(&self) -> i64 {
        let n = self.now_ms();
        n - n.rem_euclid(1000)
    }

    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// Jump simulated time forward (tests: expire a window without waiting).
    pub fn advance_ms(&self, ms: i64) {
        self.offset_ms.fetch_add(ms.max(0), Ordering::Relaxed);
    }
}

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn push_2(out: &mut Vec<u8>, v: u32) {
    out.push(b'0' + (v / 10 % 10) as u8);
    out.push(b'0' + (v % 10) as u8);
}

/// Appends `yyyy-MM-dd`.
pub fn write_date(out: &mut Vec<u8>, days: i64) {
    let (y, m, d) = civil_from_days(days);
    let y = y.clamp(0, 9999) as u32;
    push_2(out, y / 100);
    push_2(out, y % 100);
    out.push(b'-');
    push_2(out, m);
    out.push(b'-');
    push_2(out, d);
}

/// Appends `yyyy-MM-ddTHH:mm:ss.SSS` followed by `suffix` (`+0000` for REST, `Z` for CSV).
pub fn write_datetime(out: &mut Vec<u8>, ms: i64, suffix: &[u8]) {
    let days = ms.div_euclid(MS_PER_DAY);
    let rem = ms.rem_euclid(MS_PER_DAY);
    write_date(out, days);
    out.push(b'T');
    let secs = (rem / 1000) as u32;
    push_2(out, secs / 3600);
    out.push(b':');
    push_2(out, secs / 60 % 60);
    out.push(b':');
    push_2(out, secs % 60);
    out.push(b'.');
    let millis = (rem % 1000) as u32;
    out.push(b'0' + (millis / 100) as u8);
    push_2(out, millis % 100);
    out.extend_from_slice(suffix);
}

/// REST rendering: `2013-05-20T20:49:32.000+0000`.
pub fn format_datetime(ms: i64) -> String {
    let mut v = Vec::with_capacity(28);
    write_datetime(&mut v, ms, b"+0000");
    String::from_utf8(v).unwrap_or_default()
}

#[cfg(test)]
pub fn format_date(days: i64) -> String {
    let mut v = Vec::with_capacity(10);
    write_date(&mut v, days);
    String::from_utf8(v).unwrap_or_default()
}

fn num(s: &[u8]) -> Option<u32> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.iter().try_fold(0u32, |a, &c| {
        a.checked_mul(10)?.checked_add((c - b'0') as u32)
    })
}

/// Parses `yyyy-MM-dd` into days since the epoch.
pub fn parse_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, m, d) = (num(&b[0..4])?, num(&b[5..7])?, num(&b[8..10])?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let days = days_from_civil(y as i64, m, d);
    // Reject 2023-02-31 and friends by round-tripping.
    (civil_from_days(days) == (y as i64, m, d)).then_some(days)
}

/// Parses `yyyy-MM-ddTHH:mm:ss[.SSS](Z|±HH:mm|±HHmm)` into epoch milliseconds.
pub fn parse_datetime(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || (b[10] != b'T' && b[10] != b't' && b[10] != b' ') {
        return None;
    }
    let days = parse_date(s.get(..10)?)?;
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, mi, se) = (num(&b[11..13])?, num(&b[14..16])?, num(&b[17..19])?);
    if h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut i = 19;
    let mut millis = 0u32;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        let mut end = start;
        while end < b.len() && b[end].is_ascii_digit() {
            end += 1;
        }
        if end == start {
            return None;
        }
        let frac = &b[start..end.min(start + 3)];
        millis = num(frac)? * 10u32.pow(3 - frac.len() as u32);
        i = end;
    }
    let offset_min: i64 = match b.get(i) {
        Some(b'Z') | Some(b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) => {
            let rest = &b[i + 1..];
            let (oh, om) = match rest.len() {
                5 if rest[2] == b':' => (num(&rest[0..2])?, num(&rest[3..5])?),
                4 => (num(&rest[0..2])?, num(&rest[2..4])?),
                2 => (num(rest)?, 0),
                _ => return None,
            };
            let m = (oh * 60 + om) as i64;
            if sign == b'+' { m } else { -m }
        }
        _ => return None,
    };
    Some(
        days * MS_PER_DAY + (h as i64 * 3600 + mi as i64 * 60 + se as i64) * 1000 + millis as i64
            - offset_min * 60_000,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let ms = parse_datetime("2013-05-20T20:49:32.000+0000").unwrap_or(0);
        assert_eq!(format_datetime(ms), "2013-05-20T20:49:32.000+0000");
        assert_eq!(parse_datetime("2013-05-20T22:49:32+02:00"), Some(ms));
        assert_eq!(parse_datetime("2013-05-20T20:49:32Z"), Some(ms));
        assert_eq!(parse_date("2023-02-31"), None);
        assert_eq!(
            parse_datetime("2013-05-2é20:49:32.000Z"),
            None,
            "no panic on multi-byte input"
        );
        assert_eq!(
            format_date(parse_date("2024-02-29").unwrap_or(0)),
            "2024-02-29"
        );
    }
}
