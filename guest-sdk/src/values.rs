//! Value helpers plugin authors reach for: calendar dates without a clock or time-zone
//! database, Salesforce's date/time text forms, numbers written the way people write them,
//! picklist synonyms and website domains.
//!
//! Every parser returns `None` on text it does not fully understand — never a guess.

use std::collections::BTreeMap;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(year: i32, month: u32, day: u32) -> i32 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400) as u32;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe as i32 - 719_468
}

/// The (year, month, day) of a day count since 1970-01-01.
pub fn civil_from_days(days: i32) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097) as u32;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe as i32 + era * 400 + i32::from(month <= 2);
    (year, month, day)
}

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since the epoch of a valid calendar date; `None` for 2023-02-30 and friends.
pub fn date(year: i32, month: u32, day: u32) -> Option<i32> {
    let valid = (1..=9999).contains(&year)
        && (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day);
    valid.then(|| days_from_civil(year, month, day))
}

/// `str::trim`, answered without decoding characters when the text starts and ends with
/// a visible ASCII character, which is nearly always: inside the sandbox, per-character
/// loops are several times slower than natively, and trimming runs for most values.
#[inline]
pub fn trim(s: &str) -> &str {
    let bytes = s.as_bytes();
    let visible = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_graphic());
    if visible(bytes.first()) && visible(bytes.last()) {
        s
    } else {
        s.trim()
    }
}

/// Exactly `width` ASCII digits (at most 9, so the value fits). Byte arithmetic rather than
/// `str::parse`, which dates call several times per value.
fn number<T: From<u32>>(s: &str, width: usize) -> Option<T> {
    if s.len() != width || width > 9 {
        return None;
    }
    s.bytes()
        .try_fold(0u32, |n, b| {
            b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
        })
        .map(T::from)
}

/// Three parts of `s` separated by the ASCII byte `sep`, found byte-wise.
fn three_parts(s: &str, sep: u8) -> Option<(&str, &str, &str)> {
    let first = s.bytes().position(|b| b == sep)?;
    let (a, rest) = (s.get(..first)?, s.get(first + 1..)?);
    let second = rest.bytes().position(|b| b == sep)?;
    let (b, c) = (rest.get(..second)?, rest.get(second + 1..)?);
    (!c.bytes().any(|x| x == sep)).then_some((a, b, c))
}

fn year(s: &str) -> Option<i32> {
    number::<u32>(s, 4).and_then(|y| i32::try_from(y).ok())
}

/// `YYYY-MM-DD`.
pub fn parse_iso_date(s: &str) -> Option<i32> {
    fixed_date(s, b'-', [0, 5, 8]).or_else(|| {
        let (y, m, d) = three_parts(s, b'-')?;
        date(year(y)?, number(m, 2)?, number(d, 2)?)
    })
}

/// `MM/DD/YYYY` (US style; one-digit month and day allowed).
pub fn parse_us_date(s: &str) -> Option<i32> {
    fixed_date(s, b'/', [6, 0, 3]).or_else(|| {
        let (m, d, y) = three_parts(s, b'/')?;
        date(year(y)?, short_number(m)?, short_number(d)?)
    })
}

/// `DD.MM.YYYY` (European style; one-digit day and month allowed).
pub fn parse_eu_date(s: &str) -> Option<i32> {
    fixed_date(s, b'.', [6, 3, 0]).or_else(|| {
        let (d, m, y) = three_parts(s, b'.')?;
        date(year(y)?, short_number(m)?, short_number(d)?)
    })
}

// Fast paths for the fixed-width forms nearly every value takes: fields read at known
// positions, with no scanning. Each returns `None` for anything else, and the general
// parser then decides, so they can only ever agree with it.

fn digit(b: u8) -> Option<u32> {
    b.is_ascii_digit().then(|| u32::from(b - b'0'))
}

/// The number in `b[at..at + width]`, all digits.
fn digits_at(b: &[u8], at: usize, width: usize) -> Option<u32> {
    let field = b.get(at..at + width)?;
    match *field {
        [a, b] => Some(digit(a)? * 10 + digit(b)?),
        [a, b, c] => Some(digit(a)? * 100 + digit(b)? * 10 + digit(c)?),
        [a, b, c, d] => Some(digit(a)? * 1000 + digit(b)? * 100 + digit(c)? * 10 + digit(d)?),
        _ => None,
    }
}

/// A 10-byte date of two-digit day and month and a four-digit year separated by `sep`;
/// `at` gives where the year, month and day start.
fn fixed_date(s: &str, sep: u8, [y, m, d]: [usize; 3]) -> Option<i32> {
    let b = s.as_bytes();
    let separators_at =
        |first: usize, second: usize| b.get(first) == Some(&sep) && b.get(second) == Some(&sep);
    let placed = if y == 0 {
        separators_at(4, 7)
    } else {
        separators_at(2, 5)
    };
    if b.len() != 10 || !placed {
        return None;
    }
    let year = i32::try_from(digits_at(b, y, 4)?).ok()?;
    date(year, digits_at(b, m, 2)?, digits_at(b, d, 2)?)
}

/// `YYYY-MM-DDTHH:MM:SS` followed by `Z`, `.sssZ` or `.sss±hhmm` (Salesforce's own form).
fn fixed_datetime(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let (head, rest) = b.split_first_chunk::<19>()?;
    let [
        _,
        _,
        _,
        _,
        b'-',
        _,
        _,
        b'-',
        _,
        _,
        b'T',
        _,
        _,
        b':',
        _,
        _,
        b':',
        _,
        _,
    ] = *head
    else {
        return None;
    };
    let (millis, offset_ms) = match *rest {
        [b'Z'] => (0, 0),
        [b'.', _, _, _, b'Z'] => (digits_at(rest, 1, 3)?, 0),
        [b'.', _, _, _, sign @ (b'+' | b'-'), _, _, _, _] => {
            let (hours, minutes) = (digits_at(rest, 5, 2)?, digits_at(rest, 7, 2)?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = i64::from(hours * 60 + minutes) * 60_000;
            (
                digits_at(rest, 1, 3)?,
                if sign == b'-' { -offset } else { offset },
            )
        }
        _ => return None,
    };
    let days = fixed_date(s.get(..10)?, b'-', [0, 5, 8])?;
    let (h, m, sec) = (
        digits_at(b, 11, 2)?,
        digits_at(b, 14, 2)?,
        digits_at(b, 17, 2)?,
    );
    if h > 23 || m > 59 || sec > 59 {
        return None;
    }
    let ms = ((h * 60 + m) * 60 + sec) * 1000 + millis;
    Some(i64::from(days) * 86_400_000 + i64::from(ms) - offset_ms)
}

fn short_number(s: &str) -> Option<u32> {
    number(s, 1).or_else(|| number(s, 2))
}

/// `YYYY-MM-DD`.
pub fn format_date(days: i32) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// An ISO 8601 / Salesforce datetime: `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM|±HHMM)`.
/// Without an offset the text is taken as UTC, as Salesforce does.
pub fn parse_iso_datetime(s: &str) -> Option<i64> {
    fixed_datetime(s).or_else(|| general_datetime(s))
}

fn general_datetime(s: &str) -> Option<i64> {
    let (date_part, rest) = s.split_once(['T', ' '])?;
    let days = parse_iso_date(date_part)?;
    let (clock, offset_ms) = split_offset(rest)?;
    let ms = parse_clock(clock)?;
    Some(i64::from(days) * 86_400_000 + i64::from(ms) - offset_ms)
}

fn split_offset(s: &str) -> Option<(&str, i64)> {
    if let Some(clock) = s.strip_suffix('Z') {
        return Some((clock, 0));
    }
    let Some(pos) = s.rfind(['+', '-']) else {
        return Some((s, 0));
    };
    let (clock, offset) = s.split_at(pos);
    let sign = if offset.starts_with('-') { -1 } else { 1 };
    let digits: String = offset[1..].chars().filter(|c| *c != ':').collect();
    let hours = i64::from(number::<u32>(digits.get(0..2)?, 2)?);
    let minutes = i64::from(number::<u32>(digits.get(2..4)?, 2)?);
    if digits.len() != 4 || hours > 23 || minutes > 59 {
        return None;
    }
    Some((clock, sign * (hours * 60 + minutes) * 60_000))
}

/// `HH:MM[:SS[.fff]]` → milliseconds since midnight.
fn parse_clock(s: &str) -> Option<u32> {
    let (hms, frac) = match s.split_once('.') {
        Some((hms, frac)) => (hms, Some(frac)),
        None => (s, None),
    };
    let mut parts = hms.split(':');
    let h: u32 = number(parts.next()?, 2)?;
    let m: u32 = number(parts.next()?, 2)?;
    let sec: u32 = match parts.next() {
        Some(p) => number(p, 2)?,
        None => 0,
    };
    if parts.next().is_some() || h > 23 || m > 59 || sec > 59 {
        return None;
    }
    let ms = match frac {
        None => 0,
        Some(f) if !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) => {
            let padded = format!("{f:0<3}");
            padded.get(0..3)?.parse::<u32>().ok()?
        }
        Some(_) => return None,
    };
    Some(((h * 60 + m) * 60 + sec) * 1000 + ms)
}

/// `HH:MM:SS.sssZ`-style time of day → milliseconds since midnight.
pub fn parse_time(s: &str) -> Option<u32> {
    parse_clock(s.strip_suffix('Z').unwrap_or(s))
}

/// `YYYY-MM-DDTHH:MM:SS.sssZ`.
pub fn format_datetime(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    let (y, mo, d) = civil_from_days(days as i32);
    let (h, mi, s, milli) = (
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000,
    );
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

/// `HH:MM:SS.sssZ`.
pub fn format_time(ms: u32) -> String {
    let (h, m, s, milli) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    format!("{h:02}:{m:02}:{s:02}.{milli:03}Z")
}

/// A number as people write it: `1234.5`, `1,234.50`, `1.234,50`, `€ 1 234,5`, `-12`.
///
/// When both `.` and `,` appear, the last one is the decimal separator. When only one kind
/// appears: several of them are thousands separators; a single `.` is a decimal point; a
/// single `,` is a decimal comma unless exactly three digits follow (`1,234` is 1234).
pub fn parse_number(s: &str) -> Option<f64> {
    // Most amounts are plain: digits with at most one `.`. Those need none of the cleaning
    // below, and give the same number through `f64`'s own parser.
    let plain = trim(s);
    let body = plain.strip_prefix('-').unwrap_or(plain);
    let mut dots = 0;
    if body.bytes().any(|b| b.is_ascii_digit())
        && body.bytes().all(|b| {
            dots += usize::from(b == b'.');
            b.is_ascii_digit() || b == b'.'
        })
        && dots <= 1
    {
        return plain.parse().ok();
    }
    let cleaned: String = s
        .trim()
        .chars()
        .filter(|c| !matches!(c, '$' | '€' | '£' | '¥' | ' ' | '\u{a0}' | '\''))
        .collect();
    let (negative, body) = match cleaned.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, cleaned.as_str()),
    };
    if !body.bytes().any(|b| b.is_ascii_digit())
        || !body
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b',')
    {
        return None;
    }
    let (dots, commas) = (body.matches('.').count(), body.matches(',').count());
    let decimal_at = match (dots, commas) {
        (0, 0) => None,
        (_, 0) if dots > 1 => None,
        (0, _) if commas > 1 => None,
        (1, 0) => body.find('.'),
        (0, 1) => body.find(',').filter(|pos| body.len() - pos - 1 != 3),
        _ => body.rfind(['.', ',']),
    };
    let mut normal = String::with_capacity(body.len() + 1);
    if negative {
        normal.push('-');
    }
    for (i, c) in body.char_indices() {
        match c {
            '.' | ',' if Some(i) == decimal_at => normal.push('.'),
            '.' | ',' => {}
            digit => normal.push(digit),
        }
    }
    normal.parse().ok()
}

/// Picklist synonyms: maps the ways people write a value onto the org's value.
/// Matching ignores case and surrounding space.
#[derive(Debug, Default, Clone)]
pub struct Synonyms {
    map: BTreeMap<String, String>,
}

impl Synonyms {
    /// From `synonym → canonical` pairs, e.g. a configuration section.
    pub fn new<K: AsRef<str>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Self {
            map: pairs
                .into_iter()
                .map(|(k, v)| (k.as_ref().trim().to_lowercase(), v.into()))
                .collect(),
        }
    }

    /// The canonical value for `value`, or `value` itself when it has no synonym.
    pub fn canonical<'a>(&'a self, value: &'a str) -> &'a str {
        self.get(value).unwrap_or(value)
    }

    /// The canonical value `value` is a synonym of, if it is one. Borrows only from the
    /// synonyms, so the answer outlives `value`.
    pub fn get(&self, value: &str) -> Option<&str> {
        if self.map.is_empty() {
            return None;
        }
        let key = trim(value);
        // Short ASCII keys are lowercased on the stack: this runs for every value of a
        // picklist field, and an allocation per value is most of its cost in the sandbox.
        let mut buf = [0u8; 64];
        let found = match buf.get_mut(..key.len()) {
            Some(lower) if key.is_ascii() => {
                lower.copy_from_slice(key.as_bytes());
                lower.make_ascii_lowercase();
                std::str::from_utf8(lower)
                    .ok()
                    .and_then(|k| self.map.get(k))
            }
            _ => self.map.get(&key.to_lowercase()),
        };
        found.map(String::as_str)
    }
}

/// The host name of a website without scheme, port, path and a leading `www.`:
/// `https://WWW.Acme.com:443/about` → `acme.com`. Other subdomains are kept
/// (`shop.acme.co.uk` stays as it is): there is no public-suffix list in a plugin.
pub fn website_domain(url: &str) -> Option<String> {
    let s = url.trim();
    let s = s.split_once("://").map_or(s, |(_, rest)| rest);
    let host = s.split(['/', '?', '#']).next()?;
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let mut host = host.split(':').next()?.trim_end_matches('.').to_lowercase();
    if host.starts_with("www.") {
        host.drain(..4);
    }
    (host.contains('.') && !host.starts_with('.')).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        for days in [-719_468, -1, 0, 1, 10_957, 19_723, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(parse_iso_date("2024-02-29"), Some(19_782));
        assert_eq!(parse_iso_date("2023-02-29"), None);
    }

    #[test]
    fn dates_in_people_formats() {
        assert_eq!(parse_us_date("02/29/2024"), parse_iso_date("2024-02-29"));
        assert_eq!(parse_eu_date("29.02.2024"), parse_iso_date("2024-02-29"));
        assert_eq!(parse_us_date("13/01/2024"), None);
        assert_eq!(parse_eu_date("1.2.2024"), parse_iso_date("2024-02-01"));
        assert_eq!(format_date(19_782), "2024-02-29");
    }

    #[test]
    fn datetimes_with_offsets() {
        let utc = parse_iso_datetime("2013-05-20T20:49:32.000+0000");
        assert_eq!(utc, Some(1_369_082_972_000));
        assert_eq!(parse_iso_datetime("2013-05-20T22:49:32+02:00"), utc);
        assert_eq!(parse_iso_datetime("2013-05-20T20:49:32Z"), utc);
        assert_eq!(
            format_datetime(1_369_082_972_000),
            "2013-05-20T20:49:32.000Z"
        );
        assert_eq!(parse_iso_datetime("2013-05-20T25:00:00Z"), None);
        assert_eq!(parse_time("03:04:05.000Z"), Some(11_045_000));
    }

    #[test]
    fn fixed_width_dates_and_datetimes_agree_with_the_general_parsers() {
        let general_date = |s: &str, sep: u8, order: [usize; 3]| {
            let (a, b, c) = three_parts(s, sep)?;
            let parts = [a, b, c];
            let (y, m, d) = (parts[order[0]], parts[order[1]], parts[order[2]]);
            let short = |p: &str| number::<u32>(p, 1).or_else(|| number(p, 2));
            let (m, d) = if sep == b'-' {
                (number(m, 2)?, number(d, 2)?)
            } else {
                (short(m)?, short(d)?)
            };
            date(year(y)?, m, d)
        };
        for s in [
            "2024-02-29",
            "2023-02-29",
            "2024-13-01",
            "2024-00-10",
            "0000-01-01",
            "2024-1-01",
            "2024/02/29",
            "20240229",
            "2024-02-2x",
            "9999-12-31",
        ] {
            assert_eq!(parse_iso_date(s), general_date(s, b'-', [0, 1, 2]), "{s:?}");
        }
        for s in [
            "02/29/2024",
            "2/29/2024",
            "13/01/2024",
            "02/30/2024",
            "0x/01/2024",
        ] {
            assert_eq!(parse_us_date(s), general_date(s, b'/', [2, 0, 1]), "{s:?}");
        }
        for s in ["29.02.2024", "1.2.2024", "32.01.2024", "01.13.2024"] {
            assert_eq!(parse_eu_date(s), general_date(s, b'.', [2, 1, 0]), "{s:?}");
        }
        for s in [
            "2026-01-02T03:04:05Z",
            "2026-01-02T03:04:05.678Z",
            "2013-05-20T20:49:32.000+0000",
            "2013-05-20T22:49:32.000+0200",
            "2013-05-20T15:49:32.123-0500",
            "2013-05-20T24:00:00Z",
            "2013-05-20T23:60:00Z",
            "2013-05-20T23:59:60Z",
            "2013-02-30T00:00:00Z",
            "2013-05-20T20:49:32.000+2400",
            "2013-05-20T20:49:32.0a0Z",
            "2013-05-20 20:49:32Z",
            "2013-05-20T20:49:32+02:00",
            "2013-05-20T20:49:32.5Z",
        ] {
            assert_eq!(parse_iso_datetime(s), general_datetime(s), "{s:?}");
        }
    }

    #[test]
    fn the_fast_paths_agree_with_the_general_ones() {
        for s in [
            "",
            " ",
            "a",
            " a",
            "a ",
            "\u{a0}x\u{a0}",
            "x\u{3000}",
            "\tx\n",
            "é",
            " é ",
            "a b",
        ] {
            assert_eq!(trim(s), s.trim(), "{s:?}");
        }
        for s in [
            "2024-02-29",
            "2024-2-29",
            "2024-02-29-",
            "2024--02",
            "２０２４-02-29",
            "-",
        ] {
            let general = s.split('-').collect::<Vec<_>>();
            let expected = match general.as_slice() {
                [y, m, d] if y.len() == 4 && m.len() == 2 && d.len() == 2 => {
                    match (y.parse::<i32>(), m.parse::<u32>(), d.parse::<u32>()) {
                        (Ok(y), Ok(m), Ok(d)) if y > 0 => date(y, m, d),
                        _ => None,
                    }
                }
                _ => None,
            };
            assert_eq!(parse_iso_date(s), expected, "{s:?}");
        }
        // Plain amounts take the fast path; each answer matches the separator rules.
        for (s, n) in [
            ("1234", Some(1234.0)),
            ("  -12.5 ", Some(-12.5)),
            (".5", Some(0.5)),
            ("5.", Some(5.0)),
            ("1.234.567", Some(1_234_567.0)),
            ("1e5", None),
            ("inf", None),
            ("+1", None),
            ("-", None),
        ] {
            assert_eq!(parse_number(s), n, "{s:?}");
        }
        let synonyms = Synonyms::new([("Acct Mgr", "Account Manager"), ("Gérant", "Manager")]);
        assert_eq!(synonyms.canonical(" ACCT mgr "), "Account Manager");
        assert_eq!(synonyms.canonical("GÉRANT"), "Manager");
        assert_eq!(synonyms.canonical(&"x".repeat(100)), "x".repeat(100));
        assert_eq!(synonyms.canonical("Sales Rep"), "Sales Rep");
        assert_eq!(Synonyms::default().canonical(" as is "), " as is ");
    }

    #[test]
    fn numbers_as_people_write_them() {
        assert_eq!(parse_number("1234.5"), Some(1234.5));
        assert_eq!(parse_number("1,234.50"), Some(1234.5));
        assert_eq!(parse_number("1.234,50"), Some(1234.5));
        assert_eq!(parse_number("€ 1 234,5"), Some(1234.5));
        assert_eq!(parse_number("1,234"), Some(1234.0));
        assert_eq!(parse_number("-0.75"), Some(-0.75));
        assert_eq!(parse_number("12abc"), None);
        assert_eq!(parse_number(""), None);
    }

    #[test]
    fn synonyms_and_domains() {
        let s = Synonyms::new([("Acct Mgr", "Account Manager")]);
        assert_eq!(s.canonical(" acct mgr "), "Account Manager");
        assert_eq!(s.canonical("Other"), "Other");
        assert_eq!(
            website_domain("https://WWW.Acme.com:443/about").as_deref(),
            Some("acme.com")
        );
        assert_eq!(website_domain("acme.co.uk").as_deref(), Some("acme.co.uk"));
        assert_eq!(website_domain("localhost"), None);
    }
}
