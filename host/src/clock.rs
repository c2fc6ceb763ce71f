//! The platform's calendar: time zone, billing months and days.
//!
//! Every month and day key is taken in the platform time zone, so a cap counted per
//! month resets at 00:00 on the 1st in Asia/Shanghai, not in UTC.

use jiff::Timestamp;
use jiff::tz::TimeZone;

/// The platform's time zone.
pub const PLATFORM_TIME_ZONE: &str = "Asia/Shanghai";

/// The platform time zone; Asia/Shanghai is UTC+8 all year, which stands in when the
/// machine has no tz database.
pub fn platform_tz() -> TimeZone {
    TimeZone::get(PLATFORM_TIME_ZONE).unwrap_or_else(|_| TimeZone::fixed(jiff::tz::offset(8)))
}

fn zoned(ms: i64) -> jiff::Zoned {
    Timestamp::from_millisecond(ms)
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_zoned(platform_tz())
}

/// The billing month of a moment, `YYYY-MM`.
pub fn month_key(ms: i64) -> String {
    zoned(ms).strftime("%Y-%m").to_string()
}

/// The platform day of a moment, `YYYY-MM-DD`.
pub fn day_key(ms: i64) -> String {
    zoned(ms).date().to_string()
}

/// Today in the platform time zone, `YYYY-MM-DD`.
pub fn today() -> String {
    day_key(Timestamp::now().as_millisecond())
}

/// A calendar date as the host passes it to modules (`bulletin-request.date`):
/// exactly `YYYY-MM-DD` and a day that exists (`2026-02-30` does not). The error
/// says why, for a 400 `invalid-date` (issue 10 item 5: the host checks its own
/// inputs before any module call, so a module is never blamed for them).
pub fn parse_date(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let shape = b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        });
    if !shape {
        return Err(format!("`{s}` is not a YYYY-MM-DD date"));
    }
    let date: jiff::civil::Date = s
        .parse()
        .map_err(|_| format!("`{s}` is not a day of the calendar"))?;
    Ok(date.to_string())
}

/// Seconds since local midnight of a moment.
pub fn local_seconds_of_day(ms: i64) -> i64 {
    let t = zoned(ms).time();
    i64::from(t.hour()) * 3600 + i64::from(t.minute()) * 60 + i64::from(t.second())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item5_dates_are_checked_against_the_calendar() {
        assert_eq!(parse_date("2026-02-28"), Ok("2026-02-28".into()));
        assert_eq!(parse_date("2028-02-29"), Ok("2028-02-29".into()));
        for bad in [
            "2026-02-30",
            "2026-02-29",
            "2026-13-01",
            "2026-04-31",
            "2026-00-10",
            "2026-2-3",
            "26-02-03",
            "2026/02/03",
            "",
            "2026-02-03T00:00",
        ] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn months_turn_at_midnight_in_shanghai_not_utc() {
        // 2026-11-30T15:59:59Z is 23:59:59 on the 30th in Shanghai; a second later the
        // month is December there while UTC is still in November.
        let last = Timestamp::from_second(1_796_054_399).unwrap();
        assert_eq!(last.to_string(), "2026-11-30T15:59:59Z");
        assert_eq!(month_key(last.as_millisecond()), "2026-11");
        assert_eq!(month_key(last.as_millisecond() + 1000), "2026-12");
        assert_eq!(day_key(last.as_millisecond() + 1000), "2026-12-01");
        assert_eq!(local_seconds_of_day(last.as_millisecond() + 1000), 0);
    }
}
