//! Dates on the proleptic Gregorian calendar as Spark 3 computes them (`java.time`), for the
//! whole range of `DateType` (about ±5.8 million years, beyond `chrono`'s): days since the
//! epoch to and from year, month and day, Spark's date strings, and session time zones.

use std::str::FromStr;

use chrono::{NaiveDate, NaiveDateTime, Offset, TimeZone};
use chrono_tz::Tz;

use super::string_parse::is_spark_trim_byte;

/// `(year, month, day)` of `days` since 1970-01-01 (H. Hinnant's `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of a valid `(year, month, day)` (H. Hinnant's `days_from_civil`).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(month);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn is_leap(year: i64) -> bool {
    year.rem_euclid(4) == 0 && (year.rem_euclid(100) != 0 || year.rem_euclid(400) == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Spark's `stringToDate`: after trimming (see [`is_spark_trim_byte`]), an optional sign,
/// then `yyyy`, `yyyy-[m]m` or `yyyy-[m]m-[d]d` with 4 to 7 year digits; the full form may be
/// followed by `T` or a space and anything. Invalid dates and days outside `i32` are `None`.
pub fn parse_date(s: &str) -> Option<i32> {
    let bytes = s.as_bytes();
    let start = bytes.iter().position(|b| !is_spark_trim_byte(*b))?;
    let end = bytes.iter().rposition(|b| !is_spark_trim_byte(*b))? + 1;
    let bytes = &bytes[start..end];
    let (sign, mut j) = match bytes.first() {
        Some(b'-') => (-1, 1),
        Some(b'+') => (1, 1),
        _ => (1, 0),
    };
    let valid_digits = |segment: usize, digits: u32| {
        (segment == 0 && (4..=7).contains(&digits)) || (segment != 0 && (1..=2).contains(&digits))
    };
    let mut segments = [1_i64; 3];
    let mut i = 0;
    let mut value: i64 = 0;
    let mut digits = 0;
    while j < bytes.len() && i < 3 && bytes[j] != b' ' && bytes[j] != b'T' {
        let b = bytes[j];
        if i < 2 && b == b'-' {
            if !valid_digits(i, digits) {
                return None;
            }
            segments[i] = value;
            value = 0;
            digits = 0;
            i += 1;
        } else if b.is_ascii_digit() {
            value = value * 10 + i64::from(b - b'0');
            digits += 1;
            if digits > 7 {
                return None;
            }
        } else {
            return None;
        }
        j += 1;
    }
    if !valid_digits(i, digits) || (i < 2 && j < bytes.len()) {
        return None;
    }
    segments[i] = value;
    let (year, month, day) = (sign * segments[0], segments[1], segments[2]);
    let month = u32::try_from(month).ok().filter(|m| (1..=12).contains(m))?;
    let day = u32::try_from(day)
        .ok()
        .filter(|d| (1..=days_in_month(year, month)).contains(d))?;
    i32::try_from(days_from_civil(year, month, day)).ok()
}

/// Spark's `yyyy-MM-dd` for a date: four digits at least, `+` before years above 9999 and
/// `-` before years below 0 (year 0 is 1 BC), as `java.time`'s `uuuu` prints them.
pub fn format_date(days: i32) -> String {
    let (year, month, day) = civil_from_days(i64::from(days));
    format!("{}-{month:02}-{day:02}", format_year(year))
}

fn format_year(year: i64) -> String {
    if year > 9999 {
        format!("+{year}")
    } else if year < 0 {
        format!("-{:04}", -year)
    } else {
        format!("{year:04}")
    }
}

/// A session time zone (`spark.sql.session.timeZone` as Spark normalizes it, a region such
/// as `America/Los_Angeles` or an offset such as `+08:00`), with `java.time`'s rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionZone {
    Region(Tz),
    Fixed(i32),
}

impl SessionZone {
    /// Parses a zone id as Spark passes it; `None` for ids this crate does not know.
    pub fn parse(id: &str) -> Option<Self> {
        match id {
            "Z" | "UTC" | "GMT" => return Some(Self::Fixed(0)),
            _ => {}
        }
        if let Ok(tz) = Tz::from_str(id) {
            return Some(Self::Region(tz));
        }
        let rest = id
            .strip_prefix("UTC")
            .or_else(|| id.strip_prefix("GMT"))
            .unwrap_or(id);
        let (sign, rest) = match rest.as_bytes().first() {
            Some(b'+') => (1, &rest[1..]),
            Some(b'-') => (-1, &rest[1..]),
            _ => return None,
        };
        let parts = rest
            .split(':')
            .map(|p| (p.len() == 2).then(|| p.parse::<i32>().ok()).flatten())
            .collect::<Option<Vec<_>>>()?;
        let seconds = match parts.as_slice() {
            [h] => h * 3600,
            [h, m] => h * 3600 + m * 60,
            [h, m, s] => h * 3600 + m * 60 + s,
            _ => return None,
        };
        (seconds <= 18 * 3600).then_some(Self::Fixed(sign * seconds))
    }

    /// The offset from UTC, in seconds, at `utc_seconds` since the epoch; `None` outside
    /// `chrono`'s range (about ±262,000 years).
    pub fn offset_at(&self, utc_seconds: i64) -> Option<i64> {
        match self {
            Self::Fixed(s) => Some(i64::from(*s)),
            Self::Region(tz) => {
                let utc = chrono::DateTime::from_timestamp(utc_seconds, 0)?.naive_utc();
                Some(i64::from(
                    tz.offset_from_utc_datetime(&utc).fix().local_minus_utc(),
                ))
            }
        }
    }

    /// Seconds since the epoch (UTC) of the start of local day `days`, as
    /// `LocalDate.atStartOfDay(zone)`: in a gap, the first valid local time after it; in an
    /// overlap, the earlier instant.
    pub fn start_of_day(&self, days: i64) -> Option<i64> {
        let local_midnight = days.checked_mul(86_400)?;
        let Self::Region(tz) = self else {
            return self.offset_at(local_midnight).map(|o| local_midnight - o);
        };
        let (y, m, d) = civil_from_days(days);
        let date = NaiveDate::from_ymd_opt(i32::try_from(y).ok()?, m, d)?;
        let resolve = |seconds_after_midnight: i64| -> Option<i64> {
            let local: NaiveDateTime =
                date.and_hms_opt(0, 0, 0)? + chrono::Duration::seconds(seconds_after_midnight);
            tz.from_local_datetime(&local)
                .earliest()
                .map(|t| t.timestamp())
        };
        if let Some(t) = resolve(0) {
            return Some(t);
        }
        // Midnight falls in a gap: the transition's local time after it is the first valid
        // second after midnight (gaps end on whole seconds and last less than two days).
        let (mut invalid, mut valid) = (0_i64, 2 * 86_400);
        resolve(valid)?;
        while valid - invalid > 1 {
            let mid = (invalid + valid) / 2;
            if resolve(mid).is_some() {
                valid = mid;
            } else {
                invalid = mid;
            }
        }
        resolve(valid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trips() {
        for days in [
            -719_528_i64,
            -141_428,
            -1,
            0,
            1,
            19_782,
            2_932_896,
            i32::MAX as i64,
        ] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-719_528), (0, 1, 1));
        assert_eq!(civil_from_days(i64::from(i32::MAX)), (5_881_580, 7, 11));
    }

    #[test]
    fn dates_parse_like_spark() {
        let p = |s| parse_date(s).map(format_date);
        assert_eq!(p(" 2024-1-5 ").as_deref(), Some("2024-01-05"));
        assert_eq!(p("2024").as_deref(), Some("2024-01-01"));
        assert_eq!(p("2024-02").as_deref(), Some("2024-02-01"));
        assert_eq!(p("2024-02-30"), None);
        assert_eq!(p("2024-02-03T12:00").as_deref(), Some("2024-02-03"));
        assert_eq!(p("2024-02-03 junk").as_deref(), Some("2024-02-03"));
        assert_eq!(p("2024-02-03junk"), None);
        assert_eq!(p("+2024-02-03").as_deref(), Some("2024-02-03"));
        assert_eq!(p("-0001-02-03").as_deref(), Some("-0001-02-03"));
        assert_eq!(p("12345-01-01").as_deref(), Some("+12345-01-01"));
        assert_eq!(p("02024-01-01").as_deref(), Some("2024-01-01"));
        assert_eq!(p("1500-02-29"), None);
        assert_eq!(p("1600-02-29").as_deref(), Some("1600-02-29"));
        assert_eq!(p("2024T"), None);
        assert_eq!(p("2024-01-01\u{0}").as_deref(), Some("2024-01-01"));
        assert_eq!(p("0000-01-01").as_deref(), Some("0000-01-01"));
        assert_eq!(p("5881580-07-11").as_deref(), Some("+5881580-07-11"));
        assert_eq!(p("5881580-07-12"), None);
        assert_eq!(p("12345678-01-01"), None);
        assert_eq!(p("+"), None);
        assert_eq!(p("2024-"), None);
    }

    #[test]
    fn start_of_day_follows_java_time() {
        let la = SessionZone::parse("America/Los_Angeles").unwrap();
        // 2024-03-10 00:00 PST = 08:00 UTC.
        let day = days_from_civil(2024, 3, 10);
        assert_eq!(la.start_of_day(day), Some(day * 86_400 + 8 * 3600));
        // America/Sao_Paulo skipped 2018-11-04 00:00..01:00: the day starts at 01:00 -02.
        let sp = SessionZone::parse("America/Sao_Paulo").unwrap();
        let day = days_from_civil(2018, 11, 4);
        assert_eq!(sp.start_of_day(day), Some(day * 86_400 + 3 * 3600));
        assert_eq!(
            SessionZone::parse("+05:30").unwrap().start_of_day(0),
            Some(-19_800)
        );
        assert_eq!(SessionZone::parse("Not/AZone"), None);
    }
}
