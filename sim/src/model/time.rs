//! Timestamp and duration rendering: Meilisearch prints RFC 3339 dates with nanosecond precision
//! (trailing zeros trimmed) and ISO 8601 durations (`PT0.0123S`). The model has no clock: every time
//! is a `Millis` handed in by the caller.

use miroir_core::Millis;

/// Formats `ms` (milliseconds since the Unix epoch) as RFC 3339 with a fractional part, as Meilisearch
/// does (`2026-11-27T09:16:21.219Z`).
pub fn rfc3339(ms: Millis) -> String {
    let secs = ms / 1000;
    let frac_ms = ms % 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    let (y, mo, d) = civil_from_days(days as i64);
    let mut frac = format!("{:09}", frac_ms * 1_000_000);
    while frac.len() > 1 && frac.ends_with('0') {
        frac.pop();
    }
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}.{frac}Z")
}

/// Formats a duration in milliseconds as an ISO 8601 duration (`PT0.012S`).
pub fn iso_duration(ms: Millis) -> String {
    let secs = ms / 1000;
    let frac = ms % 1000;
    if frac == 0 {
        format!("PT{secs}S")
    } else {
        let mut f = format!("{frac:03}");
        while f.ends_with('0') {
            f.pop();
        }
        format!("PT{secs}.{f}S")
    }
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_dates_like_meilisearch() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.0Z");
        assert_eq!(rfc3339(1_795_771_381_219), "2026-11-27T09:23:01.219Z");
        assert_eq!(rfc3339(951_782_400_500), "2000-02-29T00:00:00.5Z");
    }

    #[test]
    fn formats_durations() {
        assert_eq!(iso_duration(0), "PT0S");
        assert_eq!(iso_duration(12), "PT0.012S");
        assert_eq!(iso_duration(1500), "PT1.5S");
    }
}
