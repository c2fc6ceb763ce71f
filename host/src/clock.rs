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

/// Seconds since local midnight of a moment.
pub fn local_seconds_of_day(ms: i64) -> i64 {
    let t = zoned(ms).time();
    i64::from(t.hour()) * 3600 + i64::from(t.minute()) * 60 + i64::from(t.second())
}

#[cfg(test)]
mod tests {
    use super::*;

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
