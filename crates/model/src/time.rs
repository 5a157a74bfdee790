//! Time for the whole project: the one civil-date (proleptic Gregorian)
//! conversion, the formats built on it, and the one read of the system clock.
//!
//! It lives in `model` rather than in `openvpc-sigv4` because dates are not a
//! signature concern: the EC2 and ELBv2 responses stamp records with them, and
//! the signature crate needs them only to read and write `X-Amz-Date`. `model`
//! is the leaf crate every other one already depends on, so SigV4, the API
//! actions and later the edge share this code without a new dependency edge.
//!
//! Everything here is pure arithmetic except [`now_secs`] (and [`timestamp`],
//! which formats it): callers that must not read a clock, such as SigV4's
//! verification, take the time as an argument and use only the conversions.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now in seconds since the Unix epoch: what records store to compute
/// time-driven states (expiry, how long an ended resource stays visible).
/// A clock set before 1970 reads as 0.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Now in ISO 8601 (UTC, milliseconds), as EC2 writes timestamps.
pub fn timestamp() -> String {
    format_time(now_secs())
}

/// Seconds since the Unix epoch in ISO 8601 (UTC, milliseconds), as EC2
/// writes timestamps: `2015-08-30T12:36:00.000Z`.
pub fn format_time(secs: u64) -> String {
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.000Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Seconds since the epoch (any `i64`) as `(year, month, day, hour, minute, second)`.
pub fn civil_time(unix: i64) -> (i64, i64, i64, i64, i64, i64) {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    (year, month, day, secs / 3_600, secs % 3_600 / 60, secs % 60)
}

/// Whether `year` is a Gregorian leap year.
pub fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// The number of days in `month` (1 to 12) of `year`.
pub fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`]: `(year, month, day)`; total for every `i64 / 86400`.
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
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
    fn ec2_timestamps_are_iso_8601_with_milliseconds() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_time(951_868_799), "2000-02-29T23:59:59.000Z");
        assert_eq!(format_time(1_440_938_160), "2015-08-30T12:36:00.000Z");
        assert_eq!(format_time(253_402_300_799), "9999-12-31T23:59:59.000Z");
    }

    #[test]
    fn civil_dates_round_trip() {
        for days in (-1_000_000..1_000_000).step_by(997) {
            let (year, month, day) = civil_from_days(days);
            assert!((1..=12).contains(&month));
            assert!((1..=days_in_month(year, month)).contains(&day));
            assert_eq!(days_from_civil(year, month, day), days);
        }
        assert_eq!(civil_time(-1), (1969, 12, 31, 23, 59, 59));
    }
}
