//! When a schedule fires: cron expressions evaluated in a time zone (croner
//! on jiff's zoned times, so daylight-saving gaps and folds are handled where a zone
//! has them), one-off instants, and what happens to firings missed during downtime.

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

/// A timing that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TimingError {
    #[error("`{expr}` is not a cron expression: {reason}")]
    BadCron { expr: String, reason: String },
    #[error("cron expression `{0}` never fires")]
    NeverFires(String),
    #[error("`{0}` is not a known time zone")]
    BadTimeZone(String),
    #[error(
        "`{0}` is not a time: use RFC 3339 (2026-05-01T08:00:00+08:00) or a local date-time (2026-05-01T08:00)"
    )]
    BadTime(String),
}

/// What a schedule does with a firing it notices only after downtime, later than
/// `[schedule] grace_secs`. Either way earlier missed firings collapse into the
/// latest one: a subscriber never gets three stale bulletins at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum MissedPolicy {
    /// Run the latest missed firing once, late.
    #[default]
    RunOnce,
    /// Do not run it; record it as `skipped` and wait for the next firing.
    Skip,
}

impl MissedPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RunOnce => "run-once",
            Self::Skip => "skip",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "run-once" => Some(Self::RunOnce),
            "skip" => Some(Self::Skip),
            _ => None,
        }
    }
}

/// When a schedule fires.
#[derive(Debug, Clone)]
pub enum Timing {
    /// Every time the expression matches, in the schedule's time zone.
    Cron(Box<Cron>),
    /// Once, at this instant (ms).
    Once(i64),
}

/// A schedule's time zone by IANA name ([`crate::clock::zone_by_name`]: the
/// platform's zones work without a tz database too).
pub fn time_zone(name: &str) -> Result<TimeZone, TimingError> {
    crate::clock::zone_by_name(name).map_err(|_| TimingError::BadTimeZone(name.to_string()))
}

/// Parse a cron expression: 5 fields (minute hour day-of-month month day-of-week)
/// or 6 with seconds first; names (`MON`, `JAN`), ranges, steps, `L`, `W`, `#`.
/// One that never matches (`0 0 30 2 *`) is refused.
pub fn parse_cron(expr: &str) -> Result<Cron, TimingError> {
    let cron = CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
        .parse(expr)
        .map_err(|e| TimingError::BadCron {
            expr: expr.to_string(),
            reason: e.to_string(),
        })?;
    let tz = TimeZone::UTC;
    if next_after(&cron, crate::store::now_ms(), &tz).is_none() {
        return Err(TimingError::NeverFires(expr.to_string()));
    }
    Ok(cron)
}

/// Parse a one-off time: RFC 3339 with an offset, or a local date-time read in `tz`.
pub fn parse_at(s: &str, tz: &TimeZone) -> Result<i64, TimingError> {
    let s = s.trim();
    if let Ok(ts) = s.parse::<Timestamp>() {
        return Ok(ts.as_millisecond());
    }
    let local: jiff::civil::DateTime =
        s.parse().map_err(|_| TimingError::BadTime(s.to_string()))?;
    let zoned = local
        .to_zoned(tz.clone())
        .map_err(|_| TimingError::BadTime(s.to_string()))?;
    Ok(zoned.timestamp().as_millisecond())
}

/// The first firing strictly after `after_ms`.
pub fn next_after(cron: &Cron, after_ms: i64, tz: &TimeZone) -> Option<i64> {
    let zoned = Timestamp::from_millisecond(after_ms)
        .ok()?
        .to_zoned(tz.clone());
    cron.find_next_occurrence(&zoned, false)
        .ok()
        .map(|z| z.timestamp().as_millisecond())
}

/// The last firing at or before `at_ms`.
pub fn latest_until(cron: &Cron, at_ms: i64, tz: &TimeZone) -> Option<i64> {
    let zoned = Timestamp::from_millisecond(at_ms)
        .ok()?
        .to_zoned(tz.clone());
    cron.find_previous_occurrence(&zoned, true)
        .ok()
        .map(|z| z.timestamp().as_millisecond())
}

/// The local date of `ms` in `tz`, `YYYY-MM-DD` (the date a bulletin is for).
pub fn local_date(ms: i64, tz: &TimeZone) -> String {
    Timestamp::from_millisecond(ms)
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_zoned(tz.clone())
        .date()
        .to_string()
}

/// What to do about a schedule whose next firing `due_at` has come at `now`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firing {
    /// A run to create: (fire_at, how late it starts in ms).
    pub run: Option<(i64, i64)>,
    /// A firing not run because it was missed under `skip`.
    pub skipped: Option<i64>,
    /// The schedule's next firing (None: nothing left).
    pub next: Option<i64>,
}

/// Decide a due firing. A firing is *missed* when `now` is more than `grace_ms` past
/// it. Only the latest firing up to `now` may run; earlier ones are collapsed.
/// `run-once` runs it however late; `skip` runs it only if it is not missed.
pub fn decide(
    timing: &Timing,
    due_at: i64,
    now: i64,
    grace_ms: i64,
    policy: MissedPolicy,
    tz: &TimeZone,
) -> Firing {
    let (latest, next) = match timing {
        Timing::Cron(cron) => {
            let latest = latest_until(cron, now, tz).unwrap_or(due_at).max(due_at);
            (latest, next_after(cron, latest, tz))
        }
        Timing::Once(at) => (*at, None),
    };
    let late = now.saturating_sub(latest).max(0);
    let missed = late > grace_ms;
    if missed && policy == MissedPolicy::Skip {
        Firing {
            run: None,
            skipped: Some(latest),
            next,
        }
    } else {
        Firing {
            run: Some((latest, late)),
            skipped: None,
            next,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn shanghai() -> TimeZone {
        time_zone(crate::clock::DEFAULT_TIME_ZONE).unwrap()
    }

    fn ms(rfc3339: &str) -> i64 {
        rfc3339.parse::<Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn cron_fires_in_the_platform_time_zone() {
        let cron = parse_cron("0 8 * * *").unwrap();
        // 08:00 in Shanghai is 00:00 UTC.
        let next = next_after(&cron, ms("2026-03-01T01:00:00Z"), &shanghai()).unwrap();
        assert_eq!(next, ms("2026-03-02T00:00:00Z"));
        assert_eq!(local_date(next, &shanghai()), "2026-03-02");
        // Six fields: seconds first.
        let cron = parse_cron("30 0 8 * * MON").unwrap();
        let next = next_after(&cron, ms("2026-03-01T01:00:00Z"), &shanghai()).unwrap();
        assert_eq!(next, ms("2026-03-02T00:00:30Z"), "2026-03-02 is a Monday");
    }

    #[test]
    fn bad_expressions_are_refused_with_a_reason() {
        for bad in [
            "",
            "* * *",
            "61 * * * *",
            "0 8 * * FUNDAY",
            "hello",
            "0 0 30 2 *",
        ] {
            assert!(parse_cron(bad).is_err(), "{bad:?} accepted");
        }
        assert!(time_zone("Mars/Olympus").is_err());
    }

    #[test]
    fn one_off_times_take_an_offset_or_the_zone() {
        let tz = shanghai();
        assert_eq!(
            parse_at("2026-05-01T08:00", &tz).unwrap(),
            ms("2026-05-01T00:00:00Z")
        );
        assert_eq!(
            parse_at("2026-05-01T08:00:00+08:00", &tz).unwrap(),
            ms("2026-05-01T00:00:00Z")
        );
        assert!(parse_at("tomorrow", &tz).is_err());
    }

    #[test]
    fn missed_firings_collapse_and_follow_the_policy() {
        let tz = shanghai();
        let cron = Timing::Cron(Box::new(parse_cron("0 8 * * *").unwrap()));
        let due = ms("2026-03-01T00:00:00Z");
        // On time (within grace): runs at its time.
        let on_time = decide(&cron, due, due + 2_000, 60_000, MissedPolicy::Skip, &tz);
        assert_eq!(on_time.run, Some((due, 2_000)));
        assert_eq!(on_time.next, Some(ms("2026-03-02T00:00:00Z")));
        // Down for three days: only the latest firing (03-04 08:00) is considered.
        let now = ms("2026-03-04T02:00:00Z");
        let latest = ms("2026-03-04T00:00:00Z");
        let late = decide(&cron, due, now, 60_000, MissedPolicy::RunOnce, &tz);
        assert_eq!(late.run, Some((latest, now - latest)));
        assert_eq!(late.next, Some(ms("2026-03-05T00:00:00Z")));
        let skipped = decide(&cron, due, now, 60_000, MissedPolicy::Skip, &tz);
        assert_eq!(skipped.run, None);
        assert_eq!(skipped.skipped, Some(latest));
        assert_eq!(skipped.next, Some(ms("2026-03-05T00:00:00Z")));
        // A one-off, late: runs once or is skipped; nothing follows.
        let once = Timing::Once(due);
        assert_eq!(
            decide(&once, due, now, 60_000, MissedPolicy::RunOnce, &tz).run,
            Some((due, now - due))
        );
        let f = decide(&once, due, now, 60_000, MissedPolicy::Skip, &tz);
        assert_eq!((f.run, f.skipped, f.next), (None, Some(due), None));
    }
}
