//! The platform's clock, and calendar dates in the platform's time zone.
//!
//! Use this clock, not `std::time`: it is the time the platform schedules pushes
//! by, and it is the only one a module can rely on.
//!
//! ```no_run
//! use tongdao_sdk::clock;
//!
//! let today = clock::local_date(); // e.g. 2025-03-01 in Asia/Shanghai
//! let key = format!("answered:{today}:{}", "subscriber-id");
//! # let _ = key;
//! ```

use core::fmt;

use crate::bindings::tongdao::partner::clock as host;

/// Milliseconds since the Unix epoch, from the platform's clock.
pub fn now_ms() -> i64 {
    host::now_ms()
}

/// The platform's time-zone offset from UTC in seconds (e.g. 28800 for
/// Asia/Shanghai).
pub fn utc_offset_seconds() -> i32 {
    host::utc_offset_seconds()
}

/// Today's date in the platform's time zone (two host calls).
pub fn local_date() -> Date {
    local_date_at(now_ms(), utc_offset_seconds())
}

/// The local date at `unix_ms` (milliseconds since the Unix epoch) in a time zone
/// `utc_offset_seconds` east of UTC. Makes no host call.
///
/// ```
/// use tongdao_sdk::clock::{local_date_at, Date};
///
/// // 2025-01-01T20:00:00Z is already 2 January in Shanghai (UTC+8).
/// let d = local_date_at(1_735_761_600_000, 8 * 3600);
/// assert_eq!(d, Date { year: 2025, month: 1, day: 2 });
/// ```
pub fn local_date_at(unix_ms: i64, utc_offset_seconds: i32) -> Date {
    let local_ms = unix_ms.saturating_add(i64::from(utc_offset_seconds) * 1000);
    Date::from_days_since_epoch(local_ms.div_euclid(86_400_000))
}

/// A calendar date (proleptic Gregorian). Formats as `YYYY-MM-DD`, the form of
/// [`BulletinRequest::date`](crate::BulletinRequest::date).
///
/// ```
/// use tongdao_sdk::clock::Date;
///
/// let d = Date::parse("2025-03-01").expect("a valid date");
/// assert_eq!(d.to_string(), "2025-03-01");
/// assert_eq!(d.days_since_epoch(), 20148);
/// assert_eq!(Date::from_days_since_epoch(20147).to_string(), "2025-02-28");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    /// The year, e.g. 2025.
    pub year: i32,
    /// The month, 1–12.
    pub month: u8,
    /// The day of the month, 1–31.
    pub day: u8,
}

impl Date {
    /// Parse `YYYY-MM-DD` (exactly four, two and two digits). Returns `None` for
    /// anything else, including dates that do not exist such as `2025-02-30`.
    pub fn parse(text: &str) -> Option<Date> {
        let bytes = text.as_bytes();
        if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
            return None;
        }
        let number = |range: core::ops::Range<usize>| -> Option<u32> {
            let part = &bytes[range];
            if !part.iter().all(u8::is_ascii_digit) {
                return None;
            }
            Some(part.iter().fold(0, |n, b| n * 10 + u32::from(b - b'0')))
        };
        let year = i32::try_from(number(0..4)?).ok()?;
        let month = u8::try_from(number(5..7)?).ok()?;
        let day = u8::try_from(number(8..10)?).ok()?;
        if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
            return None;
        }
        Some(Date { year, month, day })
    }

    /// The date `days` days after 1970-01-01 (negative: before).
    pub fn from_days_since_epoch(days: i64) -> Date {
        // Howard Hinnant's `civil_from_days`, in eras of 400 years.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097); // day of era, [0, 146096]
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from 1 March
        let mp = (5 * doy + 2) / 153; // month from March, [0, 11]
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        Date {
            year: year as i32,
            month: month as u8,
            day: day as u8,
        }
    }

    /// Days since 1970-01-01 (negative before it). Consecutive dates give
    /// consecutive numbers, which makes it a good index to rotate through a list
    /// of texts day by day (see [`crate::content::index_for_day`]).
    pub fn days_since_epoch(self) -> i64 {
        // Howard Hinnant's `days_from_civil`.
        let month = i64::from(self.month);
        let year = i64::from(self.year) - i64::from(month <= 2);
        let era = year.div_euclid(400);
        let yoe = year.rem_euclid(400);
        let mp = (month + 9) % 12;
        let doy = (153 * mp + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// The day of the week, 1 = Monday … 7 = Sunday (ISO 8601).
    pub fn weekday(self) -> u8 {
        // 1970-01-01 was a Thursday (4).
        ((self.days_since_epoch() + 3).rem_euclid(7) + 1) as u8
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_day_over_centuries() {
        let mut expected = Date::parse("1900-01-01").expect("valid");
        for days in expected.days_since_epoch()
            ..Date::parse("2400-12-31").expect("valid").days_since_epoch()
        {
            let date = Date::from_days_since_epoch(days);
            assert_eq!(date, expected, "days {days}");
            assert_eq!(date.days_since_epoch(), days);
            assert_eq!(Date::parse(&date.to_string()), Some(date));
            // Step `expected` to the next day by hand.
            expected = if expected.day < days_in_month(expected.year, expected.month) {
                Date {
                    day: expected.day + 1,
                    ..expected
                }
            } else if expected.month < 12 {
                Date {
                    month: expected.month + 1,
                    day: 1,
                    ..expected
                }
            } else {
                Date {
                    year: expected.year + 1,
                    month: 1,
                    day: 1,
                }
            };
        }
    }

    #[test]
    fn known_dates() {
        assert_eq!(Date::from_days_since_epoch(0).to_string(), "1970-01-01");
        assert_eq!(Date::from_days_since_epoch(-1).to_string(), "1969-12-31");
        assert_eq!(
            Date::parse("2000-02-29").map(Date::days_since_epoch),
            Some(11_016)
        );
        assert_eq!(Date::parse("2024-02-29").map(Date::weekday), Some(4));
        assert_eq!(Date::parse("1970-01-01").map(Date::weekday), Some(4));
        assert_eq!(Date::parse("2025-03-02").map(Date::weekday), Some(7));
    }

    #[test]
    fn rejects_malformed_dates() {
        for bad in [
            "",
            "2025-1-01",
            "2025-13-01",
            "2025-00-10",
            "2025-02-29",
            "1900-02-29",
            "2025-04-31",
            "2025/01/01",
            "+025-01-01",
            "2025-01-0x",
            "2025-01-01 ",
        ] {
            assert_eq!(Date::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn local_dates_follow_the_offset() {
        // 2024-12-31T23:30:00Z
        let ms = Date::parse("2024-12-31").expect("valid").days_since_epoch() * 86_400_000
            + (23 * 60 + 30) * 60_000;
        assert_eq!(local_date_at(ms, 0).to_string(), "2024-12-31");
        assert_eq!(local_date_at(ms, 8 * 3600).to_string(), "2025-01-01");
        assert_eq!(local_date_at(ms, -24 * 3600).to_string(), "2024-12-30");
        assert_eq!(local_date_at(-1, 0).to_string(), "1969-12-31");
    }
}
