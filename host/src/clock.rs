//! The platform's calendar: time zone, billing months and days.
//!
//! Every month and day key is taken in the platform time zone, so a cap counted per
//! month resets at 00:00 on the 1st in Asia/Shanghai, not in UTC.

//! The platform clock and time zone: the one definition of
//! "platform time". `[platform] time_zone` (IANA name, default Asia/Shanghai) sets
//! billing months and days (caps, charges, statements, settlement), quiet hours,
//! the default zone of push schedules, the `date` of a push, and the UTC offset
//! modules see through their `clock` import. A cap counted per month resets at
//! 00:00 on the 1st in that zone, not in UTC.
//!
//! One process keeps one platform time zone: the first start (or the first read,
//! which takes the default) fixes it, and a later attempt to use another one is
//! refused ([`ClockError::AlreadyInUse`]) instead of silently moving months under
//! data already written.

use std::sync::OnceLock;

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

/// The platform time zone when `[platform] time_zone` is not set.
pub const DEFAULT_TIME_ZONE: &str = "Asia/Shanghai";

/// `[platform]`: what the whole platform shares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlatformConfig {
    /// IANA name of the platform time zone, e.g. `Asia/Shanghai` or `UTC`.
    pub time_zone: String,
}

impl Default for PlatformConfig {
    fn default() -> Self {
        Self {
            time_zone: DEFAULT_TIME_ZONE.into(),
        }
    }
}

impl PlatformConfig {
    /// # Errors
    /// Why `time_zone` cannot be used: not a zone this machine knows.
    pub fn validate(&self) -> Result<(), String> {
        zone_by_name(&self.time_zone).map(|_| ())
    }
}

/// Why the platform time zone could not be set.
#[derive(Debug, thiserror::Error)]
pub enum ClockError {
    #[error("[platform] time_zone: {0}")]
    UnknownZone(String),
    #[error(
        "[platform] time_zone: this process already keeps platform time in `{in_use}`; one process serves one platform time zone, so `{asked}` cannot be used"
    )]
    AlreadyInUse { in_use: String, asked: String },
}

#[derive(Debug)]
struct PlatformZone {
    name: String,
    tz: TimeZone,
}

static ZONE: OnceLock<PlatformZone> = OnceLock::new();

fn zone() -> &'static PlatformZone {
    ZONE.get_or_init(|| PlatformZone {
        name: DEFAULT_TIME_ZONE.into(),
        tz: default_zone(),
    })
}

/// Asia/Shanghai is UTC+8 all year, which stands in when the machine has no tz
/// database.
fn default_zone() -> TimeZone {
    TimeZone::get(DEFAULT_TIME_ZONE).unwrap_or_else(|_| TimeZone::fixed(jiff::tz::offset(8)))
}

/// A time zone by IANA name (for the platform and for a schedule's own zone).
/// `Asia/Shanghai` and `UTC` work without a tz database, so a bare container still
/// runs with either.
///
/// # Errors
/// `` `name` is not a known time zone ``.
pub fn zone_by_name(name: &str) -> Result<TimeZone, String> {
    match TimeZone::get(name) {
        Ok(tz) => Ok(tz),
        Err(_) if name == DEFAULT_TIME_ZONE => Ok(default_zone()),
        Err(_) if matches!(name, "UTC" | "Etc/UTC") => Ok(TimeZone::UTC),
        Err(_) => Err(format!("`{name}` is not a known time zone")),
    }
}

/// Make `config.time_zone` this process's platform time zone. Called once at start
/// (`server::Platform::open`, the CLI commands); calling it again with the same
/// zone is a no-op.
///
/// # Errors
/// [`ClockError::UnknownZone`], or [`ClockError::AlreadyInUse`] when the process
/// already keeps another zone (set before, or read before with the default).
pub fn use_time_zone(config: &PlatformConfig) -> Result<(), ClockError> {
    let tz = zone_by_name(&config.time_zone).map_err(ClockError::UnknownZone)?;
    let in_use = ZONE.get_or_init(|| PlatformZone {
        name: config.time_zone.clone(),
        tz,
    });
    if in_use.name == config.time_zone {
        Ok(())
    } else {
        Err(ClockError::AlreadyInUse {
            in_use: in_use.name.clone(),
            asked: config.time_zone.clone(),
        })
    }
}

/// The platform time zone's IANA name (as statements print it).
pub fn time_zone_name() -> &'static str {
    &zone().name
}

/// The platform time zone.
pub fn time_zone() -> TimeZone {
    zone().tz.clone()
}

fn zoned(ms: i64) -> jiff::Zoned {
    Timestamp::from_millisecond(ms)
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_zoned(time_zone())
}

/// The platform zone's offset from UTC at a moment, in seconds east of UTC: what a
/// module's `clock.utc-offset-seconds` answers during a call starting then.
pub fn utc_offset_seconds(ms: i64) -> i32 {
    zoned(ms).offset().seconds()
}

/// The billing month of a moment, `YYYY-MM`.
pub fn month_key(ms: i64) -> String {
    zoned(ms).strftime("%Y-%m").to_string()
}

/// The platform day of a moment.
pub fn day_of_ms(ms: i64) -> Date {
    zoned(ms).date()
}

/// The platform day of a moment, `YYYY-MM-DD`.
pub fn day_key(ms: i64) -> String {
    day_of_ms(ms).to_string()
}

/// Unix ms of a day's first instant in the platform time zone.
pub fn day_start_ms(day: Date) -> i64 {
    day.to_zoned(time_zone())
        .map(|z| z.timestamp().as_millisecond())
        .unwrap_or(0)
}

/// Today in the platform time zone, `YYYY-MM-DD`.
pub fn today() -> String {
    day_key(crate::store::now_ms())
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

/// Seconds since midnight of a moment in the platform time zone (quiet hours).
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
        // The unit tests never set another zone: the default holds.
        assert_eq!(time_zone_name(), DEFAULT_TIME_ZONE);
        // 2026-11-30T15:59:59Z is 23:59:59 on the 30th in Shanghai; a second later the
        // month is December there while UTC is still in November.
        let last = Timestamp::from_second(1_796_054_399).unwrap();
        assert_eq!(last.to_string(), "2026-11-30T15:59:59Z");
        assert_eq!(month_key(last.as_millisecond()), "2026-11");
        assert_eq!(month_key(last.as_millisecond() + 1000), "2026-12");
        assert_eq!(day_key(last.as_millisecond() + 1000), "2026-12-01");
        assert_eq!(local_seconds_of_day(last.as_millisecond() + 1000), 0);
        assert_eq!(utc_offset_seconds(last.as_millisecond()), 8 * 3600);
        assert_eq!(
            day_start_ms(day_of_ms(last.as_millisecond() + 1000)),
            last.as_millisecond() + 1000
        );
        // A second platform zone in the same process is refused, not mixed in.
        let utc = PlatformConfig {
            time_zone: "UTC".into(),
        };
        assert!(matches!(
            use_time_zone(&utc),
            Err(ClockError::AlreadyInUse { .. })
        ));
        assert!(use_time_zone(&PlatformConfig::default()).is_ok());
        assert!(zone_by_name("Mars/Olympus").is_err());
    }
}
