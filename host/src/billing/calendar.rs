//! Billing months and working days. A billing month is the calendar month in the
//! platform time zone ([`crate::clock`], `[platform] time_zone`, default
//! Asia/Shanghai), from the 1st 00:00 to the next 1st 00:00 (R-4.5); payment terms count
//! working days: Monday to Friday, minus holidays, plus make-up working days (调休),
//! per named calendar (R-4.6).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use jiff::civil::{Date, Weekday};
use serde::{Deserialize, Serialize};

use super::BillingError;
use crate::store::Store;

/// The platform's days, from the one platform clock.
pub use crate::clock::{day_of_ms, day_start_ms};

/// A billing month (`YYYY-MM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    year: i16,
    month: i8,
}

impl Month {
    pub fn new(year: i16, month: i8) -> Result<Self, BillingError> {
        if !(2000..=2999).contains(&year) || !(1..=12).contains(&month) {
            return Err(BillingError::invalid(
                "month",
                format!("{year:04}-{month:02} is not a month between 2000-01 and 2999-12"),
            ));
        }
        Ok(Self { year, month })
    }

    /// The month a Unix-millisecond instant falls in, in the platform time zone.
    pub fn of_ms(ms: i64) -> Self {
        let date = day_of_ms(ms);
        Self {
            year: date.year(),
            month: date.month(),
        }
    }

    pub fn first_day(self) -> Date {
        Date::constant(self.year, self.month, 1)
    }

    pub fn last_day(self) -> Date {
        self.first_day().last_of_month()
    }

    pub fn days(self) -> i64 {
        i64::from(self.first_day().days_in_month())
    }

    /// The month `n` months later (earlier for negative `n`).
    pub fn plus(self, n: i32) -> Self {
        let index = i32::from(self.year) * 12 + i32::from(self.month) - 1 + n;
        Self {
            year: i16::try_from(index.div_euclid(12)).unwrap_or(i16::MAX),
            month: i8::try_from(index.rem_euclid(12) + 1).unwrap_or(1),
        }
    }

    /// Unix ms of the month's first instant in the platform time zone.
    pub fn start_ms(self) -> i64 {
        day_start_ms(self.first_day())
    }

    /// Unix ms of the next month's first instant: the month is `[start, end)`.
    pub fn end_ms(self) -> i64 {
        self.plus(1).start_ms()
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl FromStr for Month {
    type Err = BillingError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BillingError::invalid("month", format!("`{s}` is not a month (YYYY-MM)"));
        let (y, m) = s.split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 {
            return Err(bad());
        }
        Self::new(y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?)
    }
}

impl Serialize for Month {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Month {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Parse a `YYYY-MM-DD` day, naming the field when it is wrong.
pub fn parse_day(field: &'static str, s: &str) -> Result<Date, BillingError> {
    let date: Date = s
        .parse()
        .map_err(|_| BillingError::invalid(field, format!("`{s}` is not a date (YYYY-MM-DD)")))?;
    if s.len() != 10 || !(2000..=2999).contains(&date.year()) {
        return Err(BillingError::invalid(
            field,
            format!("`{s}` is not a date between 2000-01-01 and 2999-12-31 (YYYY-MM-DD)"),
        ));
    }
    Ok(date)
}

/// The default working-day calendar when an operator names none (China's).
pub const DEFAULT_CALENDAR: &str = "cn";

/// What a listed day is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DayKind {
    /// No work although it is a weekday.
    Holiday,
    /// Work although it is a weekend day (调休).
    Workday,
}

impl DayKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Holiday => "holiday",
            Self::Workday => "workday",
        }
    }
}

/// A working-day calendar: weekends off, with listed exceptions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Calendar {
    exceptions: BTreeMap<Date, DayKind>,
}

impl Calendar {
    pub fn new(exceptions: impl IntoIterator<Item = (Date, DayKind)>) -> Self {
        Self {
            exceptions: exceptions.into_iter().collect(),
        }
    }

    pub fn is_working_day(&self, day: Date) -> bool {
        match self.exceptions.get(&day) {
            Some(DayKind::Holiday) => false,
            Some(DayKind::Workday) => true,
            None => !matches!(day.weekday(), Weekday::Saturday | Weekday::Sunday),
        }
    }

    /// `day` itself when it is a working day, else the next one: a deadline that
    /// falls on a day off moves to the next working day.
    pub fn on_or_after(&self, day: Date) -> Date {
        let mut d = day;
        // A year of days off in a row does not happen; the bound keeps this total.
        for _ in 0..366 {
            if self.is_working_day(d) {
                return d;
            }
            d = d.tomorrow().unwrap_or(d);
        }
        d
    }

    /// The `n`th working day after `day` (`n = 0`: `day` moved to a working day).
    pub fn add_working_days(&self, day: Date, n: u32) -> Date {
        if n == 0 {
            return self.on_or_after(day);
        }
        let mut d = day;
        let mut left = n;
        for _ in 0..(n * 7 + 366) {
            d = d.tomorrow().unwrap_or(d);
            if self.is_working_day(d) {
                left -= 1;
                if left == 0 {
                    return d;
                }
            }
        }
        d
    }

    /// Load a named calendar.
    pub async fn load(store: &Store, name: &str) -> Result<Self, BillingError> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT day, kind FROM calendar_days WHERE calendar = $1")
                .bind(name)
                .fetch_all(store.pool())
                .await
                .map_err(crate::store::StoreError::from)?;
        let mut exceptions = BTreeMap::new();
        for (day, kind) in rows {
            let Ok(date) = day.parse::<Date>() else {
                continue;
            };
            let kind = if kind == "workday" {
                DayKind::Workday
            } else {
                DayKind::Holiday
            };
            exceptions.insert(date, kind);
        }
        Ok(Self { exceptions })
    }
}

/// A listed day, as the API shows it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct CalendarDay {
    pub day: String,
    pub kind: String,
    pub note: String,
}

/// Whether the platform keeps a calendar of that name: the default (`cn`), or one
/// with listed days or named by an operator. A calendar comes into being with its
/// first listed day.
pub async fn exists(store: &Store, name: &str) -> Result<bool, BillingError> {
    if name == DEFAULT_CALENDAR {
        return Ok(true);
    }
    let (n,): (i64,) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM calendar_days WHERE calendar = $1)
              + (SELECT COUNT(*) FROM billing_operators WHERE calendar = $1)",
    )
    .bind(name)
    .fetch_one(store.pool())
    .await
    .map_err(crate::store::StoreError::from)?;
    Ok(n > 0)
}

/// A calendar the platform keeps, or a 404 naming it.
///
/// # Errors
/// `Invalid` for a malformed name, `NotFound` for an unknown calendar.
pub async fn require(store: &Store, name: &str) -> Result<(), BillingError> {
    valid_calendar_name(name)?;
    if exists(store, name).await? {
        Ok(())
    } else {
        Err(BillingError::NotFound(format!(
            "no calendar `{name}`; a calendar starts with its first listed day"
        )))
    }
}

/// Put a day on a calendar (or change what it is); the first day of a new name
/// creates the calendar. `note` is up to 200 characters.
pub async fn set_day(
    store: &Store,
    calendar: &str,
    day: &str,
    kind: DayKind,
    note: &str,
) -> Result<(), BillingError> {
    valid_calendar_name(calendar)?;
    let date = parse_day("day", day)?;
    if note.chars().count() > 200 {
        return Err(BillingError::invalid("note", "at most 200 characters"));
    }
    sqlx::query(
        "INSERT INTO calendar_days (calendar, day, kind, note) VALUES ($1, $2, $3, $4)
         ON CONFLICT (calendar, day) DO UPDATE SET kind = EXCLUDED.kind, note = EXCLUDED.note",
    )
    .bind(calendar)
    .bind(date.to_string())
    .bind(kind.as_str())
    .bind(note)
    .execute(store.pool())
    .await
    .map_err(crate::store::StoreError::from)?;
    Ok(())
}

/// Take a day off a calendar; returns whether it was listed.
pub async fn remove_day(store: &Store, calendar: &str, day: &str) -> Result<bool, BillingError> {
    require(store, calendar).await?;
    let date = parse_day("day", day)?;
    let done = sqlx::query("DELETE FROM calendar_days WHERE calendar = $1 AND day = $2")
        .bind(calendar)
        .bind(date.to_string())
        .execute(store.pool())
        .await
        .map_err(crate::store::StoreError::from)?;
    Ok(done.rows_affected() == 1)
}

/// The listed days of a calendar, in order.
pub async fn list_days(store: &Store, calendar: &str) -> Result<Vec<CalendarDay>, BillingError> {
    require(store, calendar).await?;
    Ok(
        sqlx::query_as(
            "SELECT day, kind, note FROM calendar_days WHERE calendar = $1 ORDER BY day",
        )
        .bind(calendar)
        .fetch_all(store.pool())
        .await
        .map_err(crate::store::StoreError::from)?,
    )
}

pub(crate) fn valid_calendar_name(name: &str) -> Result<(), BillingError> {
    let ok = (1..=32).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(BillingError::invalid(
            "calendar",
            format!("`{name}` is not a calendar name (1-32 of a-z, 0-9, '-')"),
        ))
    }
}

/// In the OpenAPI document a month is a `YYYY-MM` string.
impl utoipa::PartialSchema for Month {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::RefOr::T(utoipa::openapi::schema::Schema::Object(
            utoipa::openapi::ObjectBuilder::new()
                .schema_type(utoipa::openapi::schema::Type::String)
                .pattern(Some(r"^[0-9]{4}-(0[1-9]|1[0-2])$"))
                .description(Some("A calendar month, `YYYY-MM`"))
                .examples([serde_json::json!("2026-08")])
                .build(),
        ))
    }
}

impl utoipa::ToSchema for Month {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holidays_and_make_up_days_count_r_4_6() {
        let d = |s: &str| s.parse::<Date>().unwrap();
        let cal = Calendar::new([
            (d("2026-10-01"), DayKind::Holiday),
            (d("2026-10-02"), DayKind::Holiday),
            (d("2026-10-05"), DayKind::Holiday),
            (d("2026-10-10"), DayKind::Workday),
        ]);
        // Wednesday 30 September + 2 working days: 1 and 2 Oct are holidays, 3-4 a
        // weekend, 5 a holiday: Tuesday 6, Wednesday 7.
        assert_eq!(cal.add_working_days(d("2026-09-30"), 2), d("2026-10-07"));
        assert!(cal.is_working_day(d("2026-10-10")));
        assert_eq!(cal.on_or_after(d("2026-10-03")), d("2026-10-06"));
        assert_eq!(cal.on_or_after(d("2026-10-06")), d("2026-10-06"));
    }

    #[test]
    fn months_are_shanghai_months_r_4_5() {
        let m: Month = "2026-10".parse().unwrap();
        // 2026-10-01 00:00 +08:00 = 2026-09-30 16:00 UTC.
        assert_eq!(m.start_ms(), 1_790_784_000_000);
        assert_eq!(Month::of_ms(m.start_ms()), m);
        assert_eq!(Month::of_ms(m.start_ms() - 1), "2026-09".parse().unwrap());
        assert_eq!(m.plus(3).to_string(), "2027-01");
        assert_eq!(m.plus(-10).to_string(), "2025-12");
        assert!("2026-13".parse::<Month>().is_err());
        assert!("2026-1".parse::<Month>().is_err());
    }
}
