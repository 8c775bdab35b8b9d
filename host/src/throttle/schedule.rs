//! Ceiling schedules: which share of the org's daily API allocation Weft may use, when.
//!
//! Owns the customer-facing schedule (windows in the customer's IANA time zone, each with its
//! own ceiling, and a default ceiling for the rest of the time), its validation, and the one
//! question the governor asks: "which window is active at instant t, where does it start and
//! end, and what is its ceiling?". Windows are cut where the active rule changes and at every
//! local midnight — except inside a rule that crosses midnight (`22:00`–`06:00`), which is one
//! window from its start on one day to its end the next, so its budget is paced over the whole
//! night. Every edge is computed in the customer's zone with `jiff`, so a 23-hour or 25-hour
//! day, or a 7-hour or 9-hour night, around a daylight-saving change gets windows of their true
//! length. It never counts requests or sleeps; pacing lives in `pacing`.
//!
//! Meaning of a ceiling: a window of length `L` with ceiling `c` grants
//! `c × DailyApiRequests.Max × L / 24 h` requests. A constant 80% therefore lets Weft use 80%
//! of the org's daily allocation per day; "09:00–18:00 at 30%" lets Weft spend during business
//! hours at the rate that would use 30% of the allocation over a whole day.

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};
use serde::{Deserialize, Serialize};

/// Default ceiling: 80% of `DailyApiRequests.Max`. Leaves a fifth of the org's allocation to
/// the customer's other integrations and people; lower it for orgs that run close to their
/// limit, raise it for dedicated integration orgs.
pub const DEFAULT_CEILING_PERCENT: f64 = 80.0;

const MINUTES_PER_DAY: u16 = 24 * 60;

/// A schedule as written in an installation's configuration (no I/O, not yet validated).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// IANA zone of the customer, e.g. `Europe/Berlin`.
    pub time_zone: String,
    /// Ceiling outside every window, percent of `DailyApiRequests.Max`.
    #[serde(default = "default_ceiling")]
    pub default_ceiling_percent: f64,
    /// Windows, first match wins.
    #[serde(default)]
    pub windows: Vec<WindowConfig>,
}

fn default_ceiling() -> f64 {
    DEFAULT_CEILING_PERCENT
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            time_zone: "UTC".into(),
            default_ceiling_percent: DEFAULT_CEILING_PERCENT,
            windows: Vec::new(),
        }
    }
}

/// One window rule: `days` `start`–`end` (local time) at `ceiling_percent`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    /// `mon-fri`, `sat,sun`, `daily`, `mon,wed,fri`, … — the days the window *starts* on.
    pub days: String,
    /// `HH:MM`, local time.
    pub start: String,
    /// `HH:MM`, local time; `24:00` means the end of the day. An `end` earlier than `start`
    /// crosses midnight: `days = "fri"`, `22:00`–`06:00` runs from Friday 22:00 to Saturday
    /// 06:00. `end` equal to `start` is refused (neither empty nor a full day is meant).
    pub end: String,
    pub ceiling_percent: f64,
}

/// Why a schedule was refused; each names the offending key and value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScheduleError {
    #[error("time_zone: unknown IANA time zone {0:?}")]
    UnknownTimeZone(String),
    #[error("windows[{index}].days: {value:?} is not a day list like \"mon-fri\" or \"sat,sun\"")]
    BadDays { index: usize, value: String },
    #[error("windows[{index}].{key}: {value:?} is not a time HH:MM between 00:00 and 24:00")]
    BadTime {
        index: usize,
        key: &'static str,
        value: String,
    },
    #[error(
        "windows[{index}].end: {end:?} equals start {start:?}; a window needs a length (write \"00:00\" to \"24:00\" for a whole day, or an end before the start to cross midnight)"
    )]
    EmptyWindow {
        index: usize,
        start: String,
        end: String,
    },
    #[error("{key}: ceiling {value} must be a percentage in 0..=100")]
    BadCeiling { key: String, value: f64 },
}

/// A validated schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    tz: TimeZone,
    default_ceiling: f64,
    rules: Vec<Rule>,
    /// Every rule's per-day segments, in rule order (first match wins).
    segments: Vec<Segment>,
}

#[derive(Debug, Clone)]
struct Rule {
    ceiling: f64,
    /// Ends the morning after it starts.
    crosses_midnight: bool,
}

/// The part of a rule that lies within one local day: a rule that crosses midnight becomes
/// an evening segment on its days and a morning segment on the days after.
#[derive(Debug, Clone)]
struct Segment {
    /// Bit i set ⇒ active on the weekday with Monday-zero offset i.
    days: u8,
    start_min: u16,
    end_min: u16,
    rule: usize,
}

/// The days after `days` (Sunday's next day is Monday).
fn next_days(days: u8) -> u8 {
    ((days << 1) | (days >> 6)) & 0x7f
}

/// A stretch of one local day under one rule (`None` = the default ceiling), in minutes.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Piece {
    lo: u16,
    hi: u16,
    rule: Option<usize>,
}

/// The window active at some instant.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveWindow {
    pub start: Timestamp,
    pub end: Timestamp,
    /// Fraction of `DailyApiRequests.Max` (0.0..=1.0).
    pub ceiling: f64,
    /// Which rule: `Some(i)` for `windows[i]`, `None` for the default ceiling.
    pub rule: Option<usize>,
}

impl ActiveWindow {
    /// Requests this window grants for an org whose daily allocation is `daily_max`.
    pub fn budget(&self, daily_max: u64) -> f64 {
        let secs = self.end.duration_since(self.start).as_secs_f64().max(0.0);
        self.ceiling * daily_max as f64 * secs / 86_400.0
    }
}

fn check_ceiling(key: String, value: f64) -> Result<f64, ScheduleError> {
    if value.is_finite() && (0.0..=100.0).contains(&value) {
        Ok(value / 100.0)
    } else {
        Err(ScheduleError::BadCeiling { key, value })
    }
}

fn parse_day(s: &str) -> Option<u8> {
    let d = match s.trim().to_ascii_lowercase().get(..3)? {
        "mon" => 0,
        "tue" => 1,
        "wed" => 2,
        "thu" => 3,
        "fri" => 4,
        "sat" => 5,
        "sun" => 6,
        _ => return None,
    };
    Some(d)
}

fn parse_days(s: &str) -> Option<u8> {
    let s = s.trim().to_ascii_lowercase();
    if s == "daily" || s == "all" || s == "mon-sun" {
        return Some(0x7f);
    }
    let mut bits = 0u8;
    for part in s.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (parse_day(a)?, parse_day(b)?);
                if a > b {
                    return None;
                }
                for d in a..=b {
                    bits |= 1 << d;
                }
            }
            None => bits |= 1 << parse_day(part)?,
        }
    }
    (bits != 0).then_some(bits)
}

fn parse_hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    let v = h.checked_mul(60)?.checked_add(m)?;
    (m < 60 && v <= MINUTES_PER_DAY).then_some(v)
}

impl ScheduleConfig {
    /// A schedule with one ceiling all the time.
    pub fn constant(time_zone: &str, ceiling_percent: f64) -> Self {
        ScheduleConfig {
            time_zone: time_zone.into(),
            default_ceiling_percent: ceiling_percent,
            windows: Vec::new(),
        }
    }

    /// Validates into a [`Schedule`].
    pub fn validate(&self) -> Result<Schedule, ScheduleError> {
        let tz = TimeZone::get(&self.time_zone)
            .map_err(|_| ScheduleError::UnknownTimeZone(self.time_zone.clone()))?;
        let default_ceiling = check_ceiling(
            "default_ceiling_percent".into(),
            self.default_ceiling_percent,
        )?;
        let mut rules = Vec::with_capacity(self.windows.len());
        let mut segments = Vec::with_capacity(self.windows.len() * 2);
        for (index, w) in self.windows.iter().enumerate() {
            let days = parse_days(&w.days).ok_or_else(|| ScheduleError::BadDays {
                index,
                value: w.days.clone(),
            })?;
            let start_min = parse_hhmm(&w.start)
                .filter(|&m| m < MINUTES_PER_DAY)
                .ok_or_else(|| ScheduleError::BadTime {
                    index,
                    key: "start",
                    value: w.start.clone(),
                })?;
            let end_min = parse_hhmm(&w.end).ok_or_else(|| ScheduleError::BadTime {
                index,
                key: "end",
                value: w.end.clone(),
            })?;
            if end_min == start_min {
                return Err(ScheduleError::EmptyWindow {
                    index,
                    start: w.start.clone(),
                    end: w.end.clone(),
                });
            }
            let ceiling = check_ceiling(
                format!("windows[{index}].ceiling_percent"),
                w.ceiling_percent,
            )?;
            let crosses_midnight = end_min < start_min;
            if crosses_midnight {
                segments.push(Segment {
                    days,
                    start_min,
                    end_min: MINUTES_PER_DAY,
                    rule: index,
                });
                if end_min > 0 {
                    segments.push(Segment {
                        days: next_days(days),
                        start_min: 0,
                        end_min,
                        rule: index,
                    });
                }
            } else {
                segments.push(Segment {
                    days,
                    start_min,
                    end_min,
                    rule: index,
                });
            }
            rules.push(Rule {
                ceiling,
                crosses_midnight,
            });
        }
        Ok(Schedule {
            tz,
            default_ceiling,
            rules,
            segments,
        })
    }
}

/// The instant of local minute-of-day `min` on `date` (1440 = next midnight). A local time
/// that does not exist (spring-forward gap) maps to the first instant after the gap, and an
/// ambiguous one (fall-back) to the earlier instant — jiff's "compatible" rule, as calendars do.
fn instant_at(tz: &TimeZone, date: Date, min: u16) -> Option<Timestamp> {
    let (date, min) = if min >= MINUTES_PER_DAY {
        (date.tomorrow().ok()?, 0)
    } else {
        (date, min)
    };
    let dt = date.at((min / 60) as i8, (min % 60) as i8, 0, 0);
    dt.to_zoned(tz.clone()).ok().map(|z| z.timestamp())
}

impl Schedule {
    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    fn rule_for(&self, day: u8, minute: u16) -> Option<usize> {
        self.segments
            .iter()
            .find(|g| g.days & day != 0 && g.start_min <= minute && minute < g.end_min)
            .map(|g| g.rule)
    }

    fn ceiling_of(&self, rule: Option<usize>) -> f64 {
        rule.and_then(|i| self.rules.get(i))
            .map_or(self.default_ceiling, |r| r.ceiling)
    }

    /// The stretch of `weekday` around `minute` under one rule: the day is cut at every
    /// segment edge, and neighbouring cuts under the same rule are joined again (a rule
    /// shadowed by an earlier one leaves no seam).
    fn piece(&self, weekday: Weekday, minute: u16) -> Piece {
        let day = 1u8 << weekday.to_monday_zero_offset();
        let mut edges: Vec<u16> = vec![0, MINUTES_PER_DAY];
        for g in self.segments.iter().filter(|g| g.days & day != 0) {
            edges.push(g.start_min);
            edges.push(g.end_min);
        }
        edges.sort_unstable();
        edges.dedup();
        // Elementary stretches between edges, each under the rule active at its start.
        let stretches: Vec<Piece> = edges
            .windows(2)
            .filter_map(|w| match *w {
                [lo, hi] => Some(Piece {
                    lo,
                    hi,
                    rule: self.rule_for(day, lo),
                }),
                _ => None,
            })
            .collect();
        let Some(k) = stretches
            .iter()
            .position(|p| p.lo <= minute && minute < p.hi)
        else {
            return Piece {
                lo: 0,
                hi: MINUTES_PER_DAY,
                rule: self.rule_for(day, minute),
            };
        };
        let rule = stretches.get(k).and_then(|p| p.rule);
        let same = |p: &Piece| p.rule == rule;
        let first = stretches[..k]
            .iter()
            .rposition(|p| !same(p))
            .map_or(0, |i| i + 1);
        let last = stretches[k..]
            .iter()
            .position(|p| !same(p))
            .map_or(stretches.len() - 1, |i| k + i - 1);
        let lo = stretches.get(first).map_or(0, |p| p.lo);
        let hi = stretches.get(last).map_or(MINUTES_PER_DAY, |p| p.hi);
        Piece { lo, hi, rule }
    }

    /// The window active at `at`.
    pub fn window_at(&self, at: Timestamp) -> ActiveWindow {
        let z: Zoned = at.to_zoned(self.tz.clone());
        let date = z.date();
        let weekday = z.weekday();
        let minute = z.hour() as u16 * 60 + z.minute() as u16;
        let here = self.piece(weekday, minute);
        let crosses = here
            .rule
            .and_then(|i| self.rules.get(i))
            .is_some_and(|r| r.crosses_midnight);
        let (mut lo_date, mut lo) = (date, here.lo);
        let (mut hi_date, mut hi) = (date, here.hi);
        // A rule that crosses midnight is one window across it: from its evening stretch
        // yesterday, or on to its morning stretch tomorrow, when the same rule holds there.
        if crosses && here.lo == 0 {
            let before = self.piece(weekday.previous(), MINUTES_PER_DAY - 1);
            if before.rule == here.rule
                && before.hi == MINUTES_PER_DAY
                && let Ok(d) = date.yesterday()
            {
                (lo_date, lo) = (d, before.lo);
            }
        }
        if crosses && here.hi == MINUTES_PER_DAY {
            let after = self.piece(weekday.next(), 0);
            if after.rule == here.rule
                && after.lo == 0
                && let Ok(d) = date.tomorrow()
            {
                (hi_date, hi) = (d, after.hi);
            }
        }
        let fallback_end = at
            .checked_add(jiff::SignedDuration::from_hours(1))
            .unwrap_or(at);
        let mut start = instant_at(&self.tz, lo_date, lo).unwrap_or(at);
        let mut end = instant_at(&self.tz, hi_date, hi).unwrap_or(fallback_end);
        // In a spring-forward gap the local edge may map after `at`, or the window may be
        // empty; clamp so that start <= at < end always holds.
        if start > at {
            start = at;
        }
        if end <= at {
            end = fallback_end;
        }
        ActiveWindow {
            start,
            end,
            ceiling: self.ceiling_of(here.rule),
            rule: here.rule,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn business(tz: &str) -> Schedule {
        ScheduleConfig {
            time_zone: tz.into(),
            default_ceiling_percent: 90.0,
            windows: vec![WindowConfig {
                days: "mon-fri".into(),
                start: "09:00".into(),
                end: "18:00".into(),
                ceiling_percent: 30.0,
            }],
        }
        .validate()
        .expect("valid schedule")
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn weekday_business_hours_and_nights() {
        let s = business("Europe/Berlin");
        // Monday 2025-06-02 10:00 Berlin = 08:00 UTC.
        let w = s.window_at(ts("2025-06-02T08:00:00Z"));
        assert_eq!(w.ceiling, 0.30);
        assert_eq!(w.start, ts("2025-06-02T07:00:00Z"));
        assert_eq!(w.end, ts("2025-06-02T16:00:00Z"));
        // Monday 20:00 Berlin: the evening default window ends at local midnight.
        let w = s.window_at(ts("2025-06-02T18:00:00Z"));
        assert_eq!(w.ceiling, 0.90);
        assert_eq!(w.start, ts("2025-06-02T16:00:00Z"));
        assert_eq!(w.end, ts("2025-06-02T22:00:00Z"));
        // Saturday noon: a whole-day default window.
        let w = s.window_at(ts("2025-06-07T10:00:00Z"));
        assert_eq!(w.ceiling, 0.90);
        assert_eq!(w.end.duration_since(w.start).as_hours(), 24);
    }

    #[test]
    fn spring_forward_day_is_23_hours() {
        // 2025-03-30: Berlin jumps from 02:00 to 03:00.
        let s = business("Europe/Berlin");
        let w = s.window_at(ts("2025-03-30T12:00:00Z"));
        assert_eq!(w.end.duration_since(w.start).as_hours(), 23);
        assert_eq!(w.budget(24_000), 0.9 * 24_000.0 * 23.0 / 24.0);
        // The next Monday morning window 00:00–09:00 is 9 hours, now at UTC+2.
        let w = s.window_at(ts("2025-03-31T03:00:00Z"));
        assert_eq!(w.start, ts("2025-03-30T22:00:00Z"));
        assert_eq!(w.end, ts("2025-03-31T07:00:00Z"));
    }

    #[test]
    fn fall_back_day_is_25_hours_and_business_hours_shift_in_utc() {
        let s = business("America/New_York");
        // 2025-11-02 (Sunday): New York falls back from 02:00 EDT to 01:00 EST.
        let w = s.window_at(ts("2025-11-02T15:00:00Z"));
        assert_eq!(w.end.duration_since(w.start).as_hours(), 25);
        // Friday before: 09:00 EDT = 13:00 UTC. Monday after: 09:00 EST = 14:00 UTC.
        assert_eq!(
            s.window_at(ts("2025-10-31T15:00:00Z")).start,
            ts("2025-10-31T13:00:00Z")
        );
        assert_eq!(
            s.window_at(ts("2025-11-03T15:00:00Z")).start,
            ts("2025-11-03T14:00:00Z")
        );
    }

    #[test]
    fn window_in_a_dst_gap_still_contains_the_instant() {
        let cfg = ScheduleConfig {
            time_zone: "Europe/Berlin".into(),
            default_ceiling_percent: 80.0,
            windows: vec![WindowConfig {
                days: "daily".into(),
                start: "02:15".into(),
                end: "02:45".into(),
                ceiling_percent: 10.0,
            }],
        };
        let s = cfg.validate().expect("valid");
        for t in [
            "2025-03-30T00:30:00Z",
            "2025-03-30T01:10:00Z",
            "2025-03-30T01:50:00Z",
        ] {
            let at = ts(t);
            let w = s.window_at(at);
            assert!(w.start <= at && at < w.end, "{t}: {w:?}");
        }
    }

    #[test]
    fn validation_names_the_key() {
        let mut cfg = ScheduleConfig::constant("Mars/Olympus", 80.0);
        assert_eq!(
            cfg.validate().err(),
            Some(ScheduleError::UnknownTimeZone("Mars/Olympus".into()))
        );
        cfg.time_zone = "UTC".into();
        cfg.default_ceiling_percent = 120.0;
        assert!(matches!(
            cfg.validate(),
            Err(ScheduleError::BadCeiling { .. })
        ));
        cfg.default_ceiling_percent = 80.0;
        cfg.windows.push(WindowConfig {
            days: "weekdays".into(),
            start: "09:00".into(),
            end: "18:00".into(),
            ceiling_percent: 30.0,
        });
        assert!(matches!(
            cfg.validate(),
            Err(ScheduleError::BadDays { index: 0, .. })
        ));
        cfg.windows[0].days = "mon-fri".into();
        cfg.windows[0].end = "09:00".into();
        let e = cfg.validate().err();
        assert!(
            matches!(e, Some(ScheduleError::EmptyWindow { index: 0, .. })),
            "{e:?}"
        );
        assert!(
            e.map(|e| e.to_string())
                .unwrap_or_default()
                .starts_with("windows[0].end: ")
        );
        cfg.windows[0].end = "08:00".into();
        assert!(cfg.validate().is_ok(), "crosses midnight");
        cfg.windows[0].end = "24:00".into();
        assert!(cfg.validate().is_ok());
        cfg.windows[0].start = "24:00".into();
        let e = cfg
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.starts_with("windows[0].start: "), "{e}");
        cfg.windows[0].start = "22:00".into();
        cfg.windows[0].end = "6:75".into();
        let e = cfg
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.starts_with("windows[0].end: "), "{e}");
        cfg.windows[0].end = "06:00".into();
        cfg.windows[0].ceiling_percent = -1.0;
        let e = cfg
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.starts_with("windows[0].ceiling_percent: "), "{e}");
    }

    /// Nights at 90% from 22:00 to 06:00, Berlin time; 30% the rest of the day.
    fn nights(days: &str) -> Schedule {
        ScheduleConfig {
            time_zone: "Europe/Berlin".into(),
            default_ceiling_percent: 30.0,
            windows: vec![WindowConfig {
                days: days.into(),
                start: "22:00".into(),
                end: "06:00".into(),
                ceiling_percent: 90.0,
            }],
        }
        .validate()
        .expect("valid schedule")
    }

    #[test]
    fn a_night_window_is_one_window_across_midnight() {
        let s = nights("daily");
        // Summer (UTC+2): Monday 22:00 to Tuesday 06:00 local = 20:00Z to 04:00Z.
        for t in [
            "2025-06-02T20:00:00Z",
            "2025-06-02T21:59:59Z",
            "2025-06-02T22:00:00Z",
            "2025-06-03T03:59:59Z",
        ] {
            let w = s.window_at(ts(t));
            assert_eq!(w.ceiling, 0.90, "{t}");
            assert_eq!(w.rule, Some(0));
            assert_eq!(w.start, ts("2025-06-02T20:00:00Z"), "{t}");
            assert_eq!(w.end, ts("2025-06-03T04:00:00Z"), "{t}");
        }
        assert_eq!(
            s.window_at(ts("2025-06-02T20:00:00Z")).budget(24_000),
            0.9 * 24_000.0 * 8.0 / 24.0
        );
        // The day between two nights: 06:00 to 22:00 at the default.
        let w = s.window_at(ts("2025-06-03T04:00:00Z"));
        assert_eq!((w.ceiling, w.rule), (0.30, None));
        assert_eq!(w.start, ts("2025-06-03T04:00:00Z"));
        assert_eq!(w.end, ts("2025-06-03T20:00:00Z"));
    }

    #[test]
    fn night_windows_keep_their_true_length_across_daylight_saving_changes() {
        let s = nights("daily");
        // 2025-03-30: Berlin springs forward at 02:00 CET. Saturday 22:00 CET (21:00Z) to
        // Sunday 06:00 CEST (04:00Z) is a 7-hour night.
        for t in [
            "2025-03-29T21:30:00Z",
            "2025-03-30T00:59:59Z", // 01:59:59 CET, just before the jump
            "2025-03-30T01:00:00Z", // 03:00 CEST, just after
            "2025-03-30T03:30:00Z",
        ] {
            let w = s.window_at(ts(t));
            assert_eq!(w.ceiling, 0.90, "{t}");
            assert_eq!(w.start, ts("2025-03-29T21:00:00Z"), "{t}");
            assert_eq!(w.end, ts("2025-03-30T04:00:00Z"), "{t}");
        }
        let w = s.window_at(ts("2025-03-30T01:00:00Z"));
        assert_eq!(w.budget(24_000), 0.9 * 24_000.0 * 7.0 / 24.0);

        // 2025-10-26: Berlin falls back at 03:00 CEST to 02:00 CET. Saturday 22:00 CEST
        // (20:00Z) to Sunday 06:00 CET (05:00Z) is a 9-hour night, and both passes through
        // 02:30 local belong to it.
        for t in [
            "2025-10-25T20:00:00Z",
            "2025-10-26T00:30:00Z", // 02:30 CEST
            "2025-10-26T01:30:00Z", // 02:30 CET
            "2025-10-26T04:59:59Z",
        ] {
            let w = s.window_at(ts(t));
            assert_eq!(w.ceiling, 0.90, "{t}");
            assert_eq!(w.start, ts("2025-10-25T20:00:00Z"), "{t}");
            assert_eq!(w.end, ts("2025-10-26T05:00:00Z"), "{t}");
        }
        assert_eq!(
            s.window_at(ts("2025-10-26T05:00:00Z")).start,
            ts("2025-10-26T05:00:00Z"),
            "Sunday's day window starts at 06:00 CET"
        );
    }

    #[test]
    fn a_night_belongs_to_the_day_it_starts_and_yields_to_earlier_rules() {
        let s = nights("fri");
        // Friday 22:00 to Saturday 06:00.
        let w = s.window_at(ts("2025-06-07T02:00:00Z")); // Saturday 04:00
        assert_eq!(w.ceiling, 0.90);
        assert_eq!(w.start, ts("2025-06-06T20:00:00Z"));
        assert_eq!(w.end, ts("2025-06-07T04:00:00Z"));
        // Friday 04:00 follows Thursday, which has no night window.
        let w = s.window_at(ts("2025-06-06T02:00:00Z"));
        assert_eq!((w.ceiling, w.rule), (0.30, None));
        assert_eq!(
            w.start,
            ts("2025-06-05T22:00:00Z"),
            "Friday's local midnight"
        );

        // Weekends are 50% all day and listed first, so they win over the night rule: the
        // Friday night stops at Saturday's midnight, and Sunday's night only starts to count
        // at Monday's midnight.
        let s = ScheduleConfig {
            time_zone: "Europe/Berlin".into(),
            default_ceiling_percent: 30.0,
            windows: vec![
                WindowConfig {
                    days: "sat,sun".into(),
                    start: "00:00".into(),
                    end: "24:00".into(),
                    ceiling_percent: 50.0,
                },
                WindowConfig {
                    days: "daily".into(),
                    start: "22:00".into(),
                    end: "06:00".into(),
                    ceiling_percent: 90.0,
                },
            ],
        }
        .validate()
        .expect("valid");
        let w = s.window_at(ts("2025-06-06T21:00:00Z")); // Friday 23:00
        assert_eq!((w.ceiling, w.rule), (0.90, Some(1)));
        assert_eq!(w.start, ts("2025-06-06T20:00:00Z"));
        assert_eq!(w.end, ts("2025-06-06T22:00:00Z"));
        let w = s.window_at(ts("2025-06-08T21:00:00Z")); // Sunday 23:00
        assert_eq!((w.ceiling, w.rule), (0.50, Some(0)));
        let w = s.window_at(ts("2025-06-09T01:00:00Z")); // Monday 03:00
        assert_eq!((w.ceiling, w.rule), (0.90, Some(1)));
        assert_eq!(w.start, ts("2025-06-08T22:00:00Z"));
        assert_eq!(w.end, ts("2025-06-09T04:00:00Z"));
    }
}
