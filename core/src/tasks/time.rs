//! Meilisearch's timestamp and duration formats, written and read without a date crate.
//!
//! - Timestamps are RFC 3339 in UTC with up to nine fractional digits and the trailing zeros of the
//!   fraction removed (no fraction at all on a whole second), as the `time` crate writes them:
//!   `2026-11-27T09:16:21.219831259Z`, `2026-11-27T09:16:29.1151116Z`, `2026-11-27T09:16:29Z`.
//! - Durations are ISO 8601 as Meilisearch's `serialize_duration` writes them: `P[nD]T<secs>[.fff|.ffffff|.fffffffff]S`,
//!   with three, six or nine fractional digits depending on the precision (`PT0.008829239S`, `PT1.5` is
//!   `PT1.500S`, `PT2S`), `P1D` for a whole day, and nothing (`null`) for a negative duration.
//!
//! Instants are [`UnixNanos`]: signed nanoseconds since the Unix epoch, wide enough for every year
//! Meilisearch accepts in filters. Dates use the proleptic Gregorian calendar (civil-from-days).

use crate::Millis;

/// Nanoseconds since the Unix epoch (negative before 1970).
pub type UnixNanos = i128;

const NANOS_PER_SEC: i128 = 1_000_000_000;
const SECS_PER_DAY: i128 = 86_400;

/// Converts Miroir's milliseconds to nanoseconds.
pub fn millis_to_nanos(ms: Millis) -> UnixNanos {
    ms as i128 * 1_000_000
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date `(year, month, day)` of a day count since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Formats an instant as Meilisearch does: `2026-11-27T09:16:21.219831259Z`, trailing zeros trimmed.
pub fn format_rfc3339(t: UnixNanos) -> String {
    let secs = t.div_euclid(NANOS_PER_SEC);
    let nanos = t.rem_euclid(NANOS_PER_SEC) as u32;
    let days = secs.div_euclid(SECS_PER_DAY);
    let sod = secs.rem_euclid(SECS_PER_DAY) as u32;
    let (y, m, d) = civil_from_days(days as i64);
    let mut out = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    );
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    b.iter().try_fold(0u32, |acc, c| {
        acc.checked_mul(10)?.checked_add((c - b'0') as u32)
    })
}

fn parse_ymd(b: &[u8]) -> Option<i64> {
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y = digits(&b[0..4])? as i64;
    let m = digits(&b[5..7])?;
    let d = digits(&b[8..10])?;
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

/// Parses an RFC 3339 date-time (`T` or `t` separator; `Z`, `z` or a `±HH:MM` offset; optional
/// fraction of one or more digits, truncated to nanoseconds). `None` when it is not one.
pub fn parse_rfc3339(s: &str) -> Option<UnixNanos> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let days = parse_ymd(&b[0..10])?;
    if !matches!(b[10], b'T' | b't') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let h = digits(&b[11..13])?;
    let mi = digits(&b[14..16])?;
    let sec = digits(&b[17..19])?;
    if h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let mut i = 19;
    let mut nanos: i128 = 0;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let frac = &b[start..i];
        if frac.is_empty() {
            return None;
        }
        for (k, c) in frac.iter().take(9).enumerate() {
            nanos += (c - b'0') as i128 * 10i128.pow(8 - k as u32);
        }
    }
    let offset_secs: i128 = match &b[i..] {
        [b'Z'] | [b'z'] => 0,
        [sign @ (b'+' | b'-'), oh1, oh2, b':', om1, om2] => {
            let oh = digits(&[*oh1, *oh2])?;
            let om = digits(&[*om1, *om2])?;
            if oh > 23 || om > 59 {
                return None;
            }
            let o = (oh * 3600 + om * 60) as i128;
            if *sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    let secs = days as i128 * SECS_PER_DAY + (h * 3600 + mi * 60 + sec) as i128 - offset_secs;
    Some(secs * NANOS_PER_SEC + nanos)
}

/// Parses a `YYYY-MM-DD` date as midnight UTC.
pub fn parse_date(s: &str) -> Option<UnixNanos> {
    let days = parse_ymd(s.as_bytes())?;
    Some(days as i128 * SECS_PER_DAY * NANOS_PER_SEC)
}

/// Formats a duration as Meilisearch does (`PT0.008829239S`); `None` (JSON `null`) when negative.
pub fn format_duration(d: UnixNanos) -> Option<String> {
    if d < 0 {
        return None;
    }
    let total_secs = d / NANOS_PER_SEC;
    let nanos = d % NANOS_PER_SEC;
    let days = total_secs / SECS_PER_DAY;
    let secs = total_secs % SECS_PER_DAY;
    let mut out = String::from("P");
    if days != 0 {
        out.push_str(&format!("{days}D"));
    }
    if secs != 0 || nanos != 0 || days == 0 {
        if nanos == 0 {
            out.push_str(&format!("T{secs}S"));
        } else if nanos % 1_000_000 == 0 {
            out.push_str(&format!("T{secs}.{:03}S", nanos / 1_000_000));
        } else if nanos % 1_000 == 0 {
            out.push_str(&format!("T{secs}.{:06}S", nanos / 1_000));
        } else {
            out.push_str(&format!("T{secs}.{nanos:09}S"));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_fixture_timestamps() {
        for s in [
            "2026-11-27T09:16:21.219831259Z",
            "2026-11-27T09:16:29.1151116Z",
            "2026-11-27T09:16:21.26951096Z",
            "2026-11-27T09:16:21Z",
            "1970-01-01T00:00:00Z",
            "2000-02-29T23:59:59.000000001Z",
            "1969-12-31T23:59:59.5Z",
        ] {
            let t = parse_rfc3339(s).unwrap_or_else(|| panic!("{s}"));
            assert_eq!(format_rfc3339(t), s);
        }
    }

    #[test]
    fn known_instants() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            format_rfc3339(millis_to_nanos(1_000)),
            "1970-01-01T00:00:01Z"
        );
        assert_eq!(
            format_rfc3339(millis_to_nanos(1_795_770_981_219)),
            "2026-11-27T09:16:21.219Z"
        );
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59.999999999Z");
        assert_eq!(
            parse_rfc3339("2026-11-27T10:16:21+01:00"),
            parse_rfc3339("2026-11-27T09:16:21Z")
        );
        assert_eq!(
            parse_rfc3339("2026-11-27t08:46:21-00:30"),
            parse_rfc3339("2026-11-27T09:16:21z")
        );
        assert_eq!(
            parse_rfc3339("2026-11-27T09:16:21.1234567891Z"),
            parse_rfc3339("2026-11-27T09:16:21.123456789Z")
        );
        assert_eq!(parse_date("1970-01-02"), Some(86_400 * 1_000_000_000));
    }

    #[test]
    fn civil_conversions_agree() {
        for days in [-719_468i64, -1, 0, 1, 59, 365, 10_957, 20_784, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn rejects_malformed() {
        for s in [
            "",
            "doggo",
            "2026-11-27",
            "2026-11-27 09:16:21Z",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-11-31T00:00:00Z",
            "2026-11-27T24:00:00Z",
            "2026-11-27T09:60:00Z",
            "2026-11-27T09:16:60Z",
            "2026-11-27T09:16:21.Z",
            "2026-11-27T09:16:21",
            "2026-11-27T09:16:21+0100",
            "2026-11-27T09:16:21+24:00",
            "2026-11-27T09:16:21Zjunk",
            "+026-11-27T09:16:21Z",
            "2026-1a-27T09:16:21Z",
        ] {
            assert_eq!(parse_rfc3339(s), None, "{s}");
        }
        for s in [
            "",
            "2026-11-27T00:00:00Z",
            "2026-02-30",
            "26-11-27",
            "2026/11/27",
        ] {
            assert_eq!(parse_date(s), None, "{s}");
        }
    }

    #[test]
    fn durations_match_meilisearch() {
        assert_eq!(format_duration(8_829_239).unwrap(), "PT0.008829239S");
        assert_eq!(format_duration(770_898_510).unwrap(), "PT0.770898510S");
        assert_eq!(format_duration(9_330_000).unwrap(), "PT0.009330S");
        assert_eq!(format_duration(1_500_000_000).unwrap(), "PT1.500S");
        assert_eq!(format_duration(1_000_000_000).unwrap(), "PT1S");
        assert_eq!(format_duration(0).unwrap(), "PT0S");
        assert_eq!(format_duration(86_400 * 1_000_000_000).unwrap(), "P1D");
        assert_eq!(
            format_duration((86_400 + 2) * 1_000_000_000).unwrap(),
            "P1DT2S"
        );
        assert_eq!(format_duration(-1), None);
    }
}
