//! The protocol's clock: CMPP times are China Standard Time (UTC+8, no daylight saving),
//! written as digits.

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::Offset;

/// `time` as civil time in China (UTC+8).
pub fn china(time: Timestamp) -> DateTime {
    Offset::constant(8).to_datetime(time)
}

/// `MMDDHHMMSS` as the integer `CMPP_CONNECT` carries in `Timestamp` (§8.4.1.1), e.g.
/// 1231235959 for 31 December 23:59:59.
pub fn connect_timestamp(time: Timestamp) -> u32 {
    let t = china(time);
    let (mo, d, h, mi, s) = (
        t.month() as u32,
        t.day() as u32,
        t.hour() as u32,
        t.minute() as u32,
        t.second() as u32,
    );
    (((mo * 100 + d) * 100 + h) * 100 + mi) * 100 + s
}

/// The 10 digits of a `CMPP_CONNECT` timestamp, zero-padded on the left ("0102030405"),
/// as they enter `AuthenticatorSource`.
pub fn timestamp_digits(timestamp: u32) -> String {
    format!("{timestamp:010}")
}

/// `YYMMDDHHMM`, the report's `Submit_time`/`Done_time` (§8.4.5.1).
pub fn yymmddhhmm(time: Timestamp) -> String {
    let t = china(time);
    format!(
        "{:02}{:02}{:02}{:02}{:02}",
        t.year().rem_euclid(100),
        t.month(),
        t.day(),
        t.hour(),
        t.minute()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn china_time_digits() {
        // 2024-12-31 23:59:59 UTC is 2025-01-01 07:59:59 in Beijing.
        let t: Timestamp = "2024-12-31T23:59:59Z".parse().expect("timestamp");
        assert_eq!(connect_timestamp(t), 101_075_959);
        assert_eq!(timestamp_digits(connect_timestamp(t)), "0101075959");
        assert_eq!(yymmddhhmm(t), "2501010759");
    }
}
