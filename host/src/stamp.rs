//! Salesforce's datetime text, read and written once per record: `2026-11-23T18:20:58.000+0000`
//! (REST, Bulk) or with `Z`, and a delivery's stamp `2026-11-23T18:20:58.000Z` (UTC,
//! milliseconds).
//!
//! Every row of a page goes through both, so the exact forms Salesforce sends are read and
//! written by hand; anything else goes through `jiff`'s general parser and printer.

use jiff::Timestamp;

const MS_PER_DAY: i64 = 86_400_000;

/// A Salesforce datetime.
pub fn parse(s: &str) -> Option<Timestamp> {
    if let Some(t) = exact(s.as_bytes()).and_then(|ms| Timestamp::from_millisecond(ms).ok()) {
        return Some(t);
    }
    if let Ok(t) = s.parse::<Timestamp>() {
        return Some(t);
    }
    // `+0000` → `+00:00`: RFC 3339 wants the colon.
    let (head, offset) = s.split_at(s.len().checked_sub(5)?);
    if offset.starts_with(['+', '-']) && offset[1..].bytes().all(|b| b.is_ascii_digit()) {
        format!("{head}{}:{}", &offset[..3], &offset[3..])
            .parse()
            .ok()
    } else {
        None
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmm` then `Z` or `+0000`, as milliseconds since the epoch.
fn exact(s: &[u8]) -> Option<i64> {
    let utc = match s.len() {
        24 => s[23] == b'Z',
        28 => &s[23..] == b"+0000",
        _ => false,
    };
    let shape = [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
    ];
    if !utc || shape.iter().any(|&(at, c)| s[at] != c) {
        return None;
    }
    let number = |from: usize, to: usize| {
        s[from..to].iter().try_fold(0i64, |n, &b| {
            b.is_ascii_digit().then(|| n * 10 + i64::from(b - b'0'))
        })
    };
    let (year, month, day) = (number(0, 4)?, number(5, 7)?, number(8, 10)?);
    let (hour, minute, second, ms) = (
        number(11, 13)?,
        number(14, 16)?,
        number(17, 19)?,
        number(20, 23)?,
    );
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days * MS_PER_DAY + ((hour * 60 + minute) * 60 + second) * 1000 + ms)
}

/// A delivery's stamp: UTC, milliseconds, `Z`.
pub fn format(t: Timestamp) -> String {
    format_ms(t.as_millisecond())
}

/// [`format`] of milliseconds since the epoch (a plugin's `datetime` value).
pub fn format_ms(ms: i64) -> String {
    with_text(ms, str::to_owned)
}

/// Calls `f` with [`format_ms`]'s text of `ms`, written on the stack: every row of a page
/// has a stamp or two, and none of them needs a `String` of its own.
pub fn with_text<R>(ms: i64, f: impl FnOnce(&str) -> R) -> R {
    match ascii(ms) {
        // Only ASCII digits and separators were written.
        Some(text) => f(std::str::from_utf8(&text).unwrap_or("invalid-datetime")),
        None => f(&Timestamp::from_millisecond(ms).map_or_else(
            |_| format!("invalid-datetime({ms})"),
            |t| t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        )),
    }
}

/// [`format_ms`]'s text of `ms` as bytes, for the years 0 to 9999 (`None` outside them).
/// Each number goes to its fixed places: the encoder writes one or two per row.
pub fn ascii(ms: i64) -> Option<[u8; 24]> {
    let (days, in_day) = (ms.div_euclid(MS_PER_DAY), ms.rem_euclid(MS_PER_DAY));
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return None;
    }
    let mut text = *b"0000-00-00T00:00:00.000Z";
    let mut put = |end: usize, places: usize, mut n: i64| {
        for place in text[end - places..end].iter_mut().rev() {
            *place = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(4, 4, year);
    put(7, 2, month);
    put(10, 2, day);
    put(13, 2, in_day / 3_600_000);
    put(16, 2, in_day / 60_000 % 60);
    put(19, 2, in_day / 1000 % 60);
    put(23, 3, in_day % 1000);
    Some(text)
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `days` after 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn salesforce_datetimes_parse_with_either_offset_form() {
        let a = parse("2026-11-23T18:20:58.000+0000");
        let b = parse("2026-11-23T18:20:58Z");
        assert!(a.is_some());
        assert_eq!(a, b);
        assert_eq!(parse("2026-11-23T20:20:58.000+0200"), b);
        assert_eq!(parse("yesterday"), None);
        assert_eq!(parse("2026-02-30T00:00:00.000Z"), None);
        assert_eq!(parse("2026-13-01T00:00:00.000+0000"), None);
    }

    #[test]
    fn the_hand_written_forms_agree_with_jiff_across_four_centuries() {
        let general = |t: Timestamp| t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
        // Every day boundary ± a little, and odd milliseconds, from 1900 to 2300.
        let mut ms = Timestamp::from_second(-2_208_988_800)
            .expect("1900")
            .as_millisecond();
        let end = Timestamp::from_second(10_413_792_000)
            .expect("2300")
            .as_millisecond();
        let mut step = 0i64;
        while ms < end {
            let t = Timestamp::from_millisecond(ms).expect("in range");
            let text = format(t);
            assert_eq!(text, general(t), "{ms}");
            assert_eq!(exact(text.as_bytes()), Some(ms), "{text}");
            let rest = format!("{}+0000", &text[..23]);
            assert_eq!(exact(rest.as_bytes()), Some(ms), "{rest}");
            step = (step * 7 + 12_345_677) % 90_000_000;
            ms += MS_PER_DAY / 3 + step;
        }
        // The ends of the four-digit years (as far as `jiff` reaches), each number at its
        // widest and narrowest.
        for text in [
            "0000-01-01T00:00:00.000Z",
            "0001-02-03T04:05:06.007Z",
            "0999-12-31T23:59:59.999Z",
            "9999-12-30T21:59:59.999Z",
        ] {
            let t: Timestamp = text.parse().expect("a timestamp");
            assert_eq!(format(t), text);
            assert_eq!(
                ascii(t.as_millisecond()).as_ref().map(|b| &b[..]),
                Some(text.as_bytes())
            );
        }
        let before_year_zero = Timestamp::from_millisecond(-62_167_219_200_001).expect("-0001");
        assert_eq!(ascii(before_year_zero.as_millisecond()), None);
        assert_eq!(format(before_year_zero), general(before_year_zero));
    }
}
