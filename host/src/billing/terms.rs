//! The money terms of an agreement and of each operator, each
//! in force from a billing month on: a later row never changes an earlier month
//! . Rows are only ever inserted.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::BillingError;
use super::calendar::Month;
use super::money::{BP, Overflow, mul_div_round, sub};
use crate::relay::Routes;
use crate::store::{Store, StoreError, now_ms};

/// How a tier's rates apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TierMode {
    /// The agreement's rule: the rates of the tier the whole amount falls in apply to
    /// the whole amount.
    Whole,
    /// Each band of the amount at its own tier's rates (like income tax).
    Marginal,
}

/// What a monthly subscription costs in the month it was activated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ActivationRule {
    /// The full monthly price.
    Full,
    /// The price × days from the activation day to the month's end ÷ days in month.
    ProRata,
    /// Nothing; the next month is the first charged.
    FreeFirstMonth,
}

impl ActivationRule {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::ProRata => "pro-rata",
            Self::FreeFirstMonth => "free-first-month",
        }
    }
}

fn parse_enum<T: for<'de> Deserialize<'de>>(
    field: &'static str,
    s: &str,
) -> Result<T, BillingError> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| BillingError::invalid(field, format!("`{s}` is not a known value")))
}

/// One tier's split, in basis points (they add up to 100.00 %).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TierRates {
    pub platform_bp: i64,
    pub partner_bp: i64,
}

/// An agreement's money terms, in force from `effective_from`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgreementTerms {
    pub effective_from: Month,
    pub tier_mode: TierMode,
    /// Tier 2 starts here (inclusive), in fen of distributable income.
    pub t1_fen: i64,
    /// Tier 3 starts here (inclusive).
    pub t2_fen: i64,
    /// Rates below T1, from T1 below T2, from T2.
    pub tiers: [TierRates; 3],
    pub tax_bp: i64,
    /// X% of.
    pub discrepancy_bp: i64,
    /// N working days of R-4.6 / clause 3.4-3.5.
    pub payment_days: i64,
    pub activation_rule: ActivationRule,
}

/// The outcome of the tiered split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Split {
    /// 1, 2 or 3: the tier the whole distributable income falls in.
    pub tier: u8,
    pub platform_fen: i64,
    pub partner_fen: i64,
}

impl AgreementTerms {
    pub fn validate(&self) -> Result<(), BillingError> {
        if self.t1_fen <= 0 {
            return Err(BillingError::invalid("t1_fen", "must be more than 0"));
        }
        if self.t2_fen <= self.t1_fen {
            return Err(BillingError::invalid("t2_fen", "must be more than t1_fen"));
        }
        if self.t2_fen > MAX_TIER_FEN {
            return Err(BillingError::invalid(
                "t2_fen",
                format!("at most {MAX_TIER_FEN} fen"),
            ));
        }
        for (i, t) in self.tiers.iter().enumerate() {
            if !(0..=BP).contains(&t.platform_bp) || !(0..=BP).contains(&t.partner_bp) {
                return Err(BillingError::invalid(
                    "tiers",
                    format!("tier {}: rates are basis points from 0 to 10000", i + 1),
                ));
            }
            if t.platform_bp + t.partner_bp != BP {
                return Err(BillingError::invalid(
                    "tiers",
                    format!(
                        "tier {}: platform_bp + partner_bp must be 10000 (100.00%), not {}",
                        i + 1,
                        t.platform_bp + t.partner_bp
                    ),
                ));
            }
        }
        for (field, v) in [
            ("tax_bp", self.tax_bp),
            ("discrepancy_bp", self.discrepancy_bp),
        ] {
            if !(0..=BP).contains(&v) {
                return Err(BillingError::invalid(field, "basis points from 0 to 10000"));
            }
        }
        if !(0..=60).contains(&self.payment_days) {
            return Err(BillingError::invalid(
                "payment_days",
                "working days from 0 to 60",
            ));
        }
        Ok(())
    }

    /// Which tier an amount falls in: below T1 → 1, from T1 below T2 → 2, from T2 → 3.
    pub fn tier_of(&self, distributable_fen: i64) -> u8 {
        if distributable_fen < self.t1_fen {
            1
        } else if distributable_fen < self.t2_fen {
            2
        } else {
            3
        }
    }

    /// Split the month's distributable income. The partner's share is rounded
    /// half away from zero once; the platform gets the rest, so the two add up to
    /// the income exactly. Nothing to split (zero or less): the partner gets nothing.
    ///
    /// # Errors
    /// [`Overflow`] if a share would not fit in `i64` fen.
    pub fn split(&self, distributable_fen: i64) -> Result<Split, Overflow> {
        let tier = self.tier_of(distributable_fen);
        if distributable_fen <= 0 {
            return Ok(Split {
                tier,
                platform_fen: distributable_fen,
                partner_fen: 0,
            });
        }
        let partner_fen = match self.tier_mode {
            TierMode::Whole => mul_div_round(
                "partner share",
                distributable_fen,
                self.tiers[usize::from(tier - 1)].partner_bp,
                BP,
            )?,
            TierMode::Marginal => {
                let d = i128::from(distributable_fen);
                let (t1, t2) = (i128::from(self.t1_fen), i128::from(self.t2_fen));
                let bands = [d.min(t1), (d.min(t2) - t1).max(0), (d - t2).max(0)];
                let weighted: i128 = bands
                    .iter()
                    .zip(&self.tiers)
                    .map(|(band, rates)| band * i128::from(rates.partner_bp))
                    .sum();
                // One rounding for the whole sum of bands.
                let (q, r) = (weighted / i128::from(BP), weighted % i128::from(BP));
                let rounded = if 2 * r >= i128::from(BP) { q + 1 } else { q };
                i64::try_from(rounded).map_err(|_| Overflow {
                    what: "partner share",
                })?
            }
        };
        Ok(Split {
            tier,
            platform_fen: sub("platform share", distributable_fen, partner_fen)?,
            partner_fen,
        })
    }
}

/// When the partner is settled for a month's traffic of one operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// M + this many months.
    pub months_after: u8,
    /// That month's day; `None`: its last day.
    pub day: Option<u8>,
}

impl Schedule {
    /// The settle-by day for `month`'s traffic, before moving it to a working day.
    pub fn date_for(self, month: Month) -> jiff::civil::Date {
        let target = month.plus(i32::from(self.months_after));
        match self.day {
            Some(d) => {
                let last = target.last_day();
                target
                    .first_day()
                    .with()
                    .day(i8::try_from(d).unwrap_or(1).min(last.day()))
                    .build()
                    .unwrap_or(last)
            }
            None => target.last_day(),
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.day {
            Some(d) => write!(f, "M+{} day {d}", self.months_after),
            None => write!(f, "end of M+{}", self.months_after),
        }
    }
}

impl FromStr for Schedule {
    type Err = BillingError;

    /// `M+2 day 15` or `end of M+2`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            BillingError::invalid(
                "schedule",
                format!("`{s}` is not a schedule: `M+<months> day <1-31>` or `end of M+<months>`"),
            )
        };
        let months = |m: &str| -> Result<u8, BillingError> {
            let n: u8 = m
                .strip_prefix("M+")
                .ok_or_else(bad)?
                .parse()
                .map_err(|_| bad())?;
            if (1..=12).contains(&n) {
                Ok(n)
            } else {
                Err(bad())
            }
        };
        let words: Vec<&str> = s.split_whitespace().collect();
        match words.as_slice() {
            ["end", "of", m] => Ok(Self {
                months_after: months(m)?,
                day: None,
            }),
            [m, "day", d] => {
                let day: u8 = d.parse().map_err(|_| bad())?;
                if !(1..=31).contains(&day) {
                    return Err(bad());
                }
                Ok(Self {
                    months_after: months(m)?,
                    day: Some(day),
                })
            }
            _ => Err(bad()),
        }
    }
}

impl Serialize for Schedule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// One operator's terms under an agreement, from `effective_from`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OperatorTerms {
    pub operator: String,
    pub effective_from: Month,
    /// Collection fee (代收服务费), of the information fee.
    pub collection_bp: i64,
    /// Imbalance channel fee per imbalanced MT, within the operator's range.
    pub imbalance_rate_fen: i64,
    /// Traffic is balanced while MT ≤ MO × balance_mt ÷ balance_mo.
    pub balance_mt: i64,
    pub balance_mo: i64,
    pub schedule: Schedule,
}

impl OperatorTerms {
    pub fn validate(&self, range: Option<&OperatorBilling>) -> Result<(), BillingError> {
        if !(0..=BP).contains(&self.collection_bp) {
            return Err(BillingError::invalid(
                "collection_bp",
                "basis points from 0 to 10000",
            ));
        }
        if !(0..=1000).contains(&self.balance_mt) || !(1..=1000).contains(&self.balance_mo) {
            return Err(BillingError::invalid(
                "balance_mt",
                "the balanced ratio needs 0 <= balance_mt <= 1000 and 1 <= balance_mo <= 1000",
            ));
        }
        let Some(range) = range else {
            return Err(BillingError::conflict(
                "operator-not-configured",
                format!(
                    "operator `{}` has no billing settings; PUT /v1/admin/operators/{}/billing first",
                    self.operator, self.operator
                ),
            ));
        };
        if !(range.imbalance_min_fen..=range.imbalance_max_fen).contains(&self.imbalance_rate_fen) {
            return Err(BillingError::invalid(
                "imbalance_rate_fen",
                format!(
                    "{} fen is outside operator `{}`'s range {}-{} fen per message",
                    self.imbalance_rate_fen,
                    self.operator,
                    range.imbalance_min_fen,
                    range.imbalance_max_fen
                ),
            ));
        }
        Ok(())
    }

    /// Balanced MTs for `mo` MOs, and the imbalanced rest of `mt` MTs.
    ///
    /// # Errors
    /// [`Overflow`] if the balanced count would not fit in `i64`.
    pub fn imbalanced(&self, mt: i64, mo: i64) -> Result<(i64, i64), Overflow> {
        let balanced = i64::try_from(
            i128::from(mo) * i128::from(self.balance_mt) / i128::from(self.balance_mo.max(1)),
        )
        .map_err(|_| Overflow {
            what: "balanced MT count",
        })?;
        Ok((balanced, sub("imbalanced MT count", mt, balanced)?.max(0)))
    }
}

/// What an operator allows, and the calendar its dates follow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct OperatorBilling {
    #[serde(default)]
    pub operator: String,
    pub imbalance_min_fen: i64,
    pub imbalance_max_fen: i64,
    pub calendar: String,
}

/// Highest imbalance fee per MT an operator range may reach: 10 元, far above any
/// real channel fee (a few fen).
pub const MAX_IMBALANCE_RATE_FEN: i64 = 1000;

/// Highest tier boundary: 10^12 fen (10 billion yuan of distributable income a
/// month), so no product with a rate can overflow.
pub const MAX_TIER_FEN: i64 = 1_000_000_000_000;

/// The default working-day calendar when an operator names none.
pub use super::calendar::DEFAULT_CALENDAR;

fn store_err(e: sqlx::Error) -> BillingError {
    BillingError::Store(StoreError::from(e))
}

/// Whether `name` is an operator of the platform: configured in `[[operators]]`
/// now, or given billing settings while it was (so old months stay reachable after
/// an operator leaves the configuration).
pub async fn known_operator(
    store: &Store,
    routes: &Routes,
    name: &str,
) -> Result<bool, BillingError> {
    if routes.has_operator(name) {
        return Ok(true);
    }
    Ok(operator_billing(store, name).await?.is_some())
}

/// A known operator, or a 404 naming it (admin routes with `{operator}` in the path).
///
/// # Errors
/// `Invalid` for a malformed name, `NotFound` for an unknown one.
pub async fn require_operator(
    store: &Store,
    routes: &Routes,
    name: &str,
) -> Result<(), BillingError> {
    valid_operator(name)?;
    if known_operator(store, routes, name).await? {
        Ok(())
    } else {
        Err(BillingError::NotFound(format!(
            "no operator `{name}`: operators are {}",
            routes.operators().join(", ")
        )))
    }
}

/// Set an operator's billing settings (R-4.3 b, R-4.6). The operator must be
/// configured now, and the calendar one the platform keeps.
///
/// # Errors
/// `NotFound` for an operator that is not configured; `Invalid` for a bad range or
/// an unknown calendar.
pub async fn set_operator_billing(
    store: &Store,
    routes: &Routes,
    o: &OperatorBilling,
) -> Result<(), BillingError> {
    valid_operator(&o.operator)?;
    if !routes.has_operator(&o.operator) {
        return Err(BillingError::NotFound(format!(
            "no operator `{}` is configured: operators are {}",
            o.operator,
            routes.operators().join(", ")
        )));
    }
    super::calendar::valid_calendar_name(&o.calendar)?;
    if !super::calendar::exists(store, &o.calendar).await? {
        return Err(BillingError::invalid(
            "calendar",
            format!(
                "no calendar `{}`; list its holidays first (PUT /v1/admin/calendars/{}/days/{{day}})",
                o.calendar, o.calendar
            ),
        ));
    }
    if o.imbalance_min_fen < 0
        || o.imbalance_max_fen < o.imbalance_min_fen
        || o.imbalance_max_fen > MAX_IMBALANCE_RATE_FEN
    {
        return Err(BillingError::invalid(
            "imbalance_max_fen",
            format!(
                "the range needs 0 <= imbalance_min_fen <= imbalance_max_fen <= {MAX_IMBALANCE_RATE_FEN}"
            ),
        ));
    }
    sqlx::query(
        "INSERT INTO billing_operators (operator, imbalance_min_fen, imbalance_max_fen, calendar, updated_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (operator) DO UPDATE SET imbalance_min_fen = EXCLUDED.imbalance_min_fen,
            imbalance_max_fen = EXCLUDED.imbalance_max_fen, calendar = EXCLUDED.calendar,
            updated_at = EXCLUDED.updated_at",
    )
    .bind(&o.operator)
    .bind(o.imbalance_min_fen)
    .bind(o.imbalance_max_fen)
    .bind(&o.calendar)
    .bind(now_ms())
    .execute(store.pool())
    .await
    .map_err(store_err)?;
    Ok(())
}

pub async fn operator_billing(
    store: &Store,
    operator: &str,
) -> Result<Option<OperatorBilling>, BillingError> {
    sqlx::query_as(
        "SELECT operator, imbalance_min_fen, imbalance_max_fen, calendar FROM billing_operators WHERE operator = $1",
    )
    .bind(operator)
    .fetch_optional(store.pool())
    .await
    .map_err(store_err)
}

pub(crate) fn valid_operator(name: &str) -> Result<(), BillingError> {
    let ok = (1..=32).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(BillingError::invalid(
            "operator",
            format!("`{name}` is not an operator name (1-32 of a-z, A-Z, 0-9, '-', '_')"),
        ))
    }
}

/// What a bad-debt report changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BadDebtChange {
    /// The ratio in force before (`None`: first report).
    pub previous_bp: Option<i64>,
    pub ratio_bp: i64,
    /// Whether anything was recorded (reporting the same ratio again is not a change).
    pub changed: bool,
}

/// One report in a month's bad-debt history.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct BadDebtReport {
    pub id: i64,
    pub ratio_bp: i64,
    pub reason: Option<String>,
    pub recorded_by: String,
    #[serde(serialize_with = "crate::api::time::ms")]
    pub recorded_at: i64,
}

/// Record the bad-debt ratio an operator reported for a month (R-4.3 c). Every
/// report is kept in order (`bad_debt_reports`); the latest is in force. The first
/// report of a month may come without a reason; a change needs one (1–500
/// characters), so the history says why a partner's share moved. Callers that
/// must not rewrite an issued statement go through
/// [`crate::settlement::issue::report_bad_debt`].
///
/// # Errors
/// `NotFound` for an unknown operator; `Invalid` for a ratio outside 0–10000 bp, a
/// missing or oversized reason; `Conflict` `month-open` for a month not ended.
pub async fn record_bad_debt(
    store: &Store,
    routes: &Routes,
    operator: &str,
    month: Month,
    ratio_bp: i64,
    reason: Option<&str>,
    actor: &str,
) -> Result<BadDebtChange, BillingError> {
    require_operator(store, routes, operator).await?;
    if !(0..=BP).contains(&ratio_bp) {
        return Err(BillingError::invalid(
            "ratio_bp",
            "basis points from 0 to 10000",
        ));
    }
    let now = now_ms();
    if month.end_ms() > now {
        return Err(BillingError::conflict(
            "month-open",
            format!("{month} has not ended; its bad-debt ratio is reported after it"),
        ));
    }
    let reason = reason.map(str::trim);
    if reason.is_some_and(|r| r.is_empty() || r.chars().count() > 500) {
        return Err(BillingError::invalid("reason", "1-500 characters"));
    }
    let mut tx = store.begin_write().await?;
    let previous: Option<(i64,)> =
        sqlx::query_as("SELECT ratio_bp FROM bad_debt_ratios WHERE operator = $1 AND month = $2")
            .bind(operator)
            .bind(month.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(store_err)?;
    let previous_bp = previous.map(|(r,)| r);
    if previous_bp == Some(ratio_bp) {
        return Ok(BadDebtChange {
            previous_bp,
            ratio_bp,
            changed: false,
        });
    }
    if previous_bp.is_some() && reason.is_none() {
        return Err(BillingError::invalid(
            "reason",
            format!(
                "{operator} reported {} bp for {month} already; a change needs a reason",
                previous_bp.unwrap_or_default()
            ),
        ));
    }
    sqlx::query(
        "INSERT INTO bad_debt_reports (operator, month, ratio_bp, reason, recorded_by, recorded_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(operator)
    .bind(month.to_string())
    .bind(ratio_bp)
    .bind(reason)
    .bind(actor)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(store_err)?;
    sqlx::query(
        "INSERT INTO bad_debt_ratios (operator, month, ratio_bp, recorded_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (operator, month) DO UPDATE SET ratio_bp = EXCLUDED.ratio_bp, recorded_at = EXCLUDED.recorded_at",
    )
    .bind(operator)
    .bind(month.to_string())
    .bind(ratio_bp)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(store_err)?;
    tx.commit().await?;
    Ok(BadDebtChange {
        previous_bp,
        ratio_bp,
        changed: true,
    })
}

/// Every bad-debt report of an operator's month, oldest first.
pub async fn bad_debt_history(
    store: &Store,
    operator: &str,
    month: Month,
) -> Result<Vec<BadDebtReport>, BillingError> {
    sqlx::query_as(
        "SELECT id, ratio_bp, reason, recorded_by, recorded_at FROM bad_debt_reports
         WHERE operator = $1 AND month = $2 ORDER BY id",
    )
    .bind(operator)
    .bind(month.to_string())
    .fetch_all(store.pool())
    .await
    .map_err(store_err)
}

/// The reported bad-debt ratio of an operator's month, if reported yet.
pub async fn bad_debt(
    store: &Store,
    operator: &str,
    month: Month,
) -> Result<Option<i64>, BillingError> {
    let row: Option<(i64,)> =
        sqlx::query_as("SELECT ratio_bp FROM bad_debt_ratios WHERE operator = $1 AND month = $2")
            .bind(operator)
            .bind(month.to_string())
            .fetch_optional(store.pool())
            .await
            .map_err(store_err)?;
    Ok(row.map(|(r,)| r))
}

type TermsRow = (
    String,
    String,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    String,
);

fn terms_from_row(row: TermsRow) -> Result<AgreementTerms, BillingError> {
    let (from, mode, t1, t2, p1, q1, p2, q2, p3, q3, tax, x, days, rule) = row;
    Ok(AgreementTerms {
        effective_from: from.parse()?,
        tier_mode: parse_enum("tier_mode", &mode)?,
        t1_fen: t1,
        t2_fen: t2,
        tiers: [
            TierRates {
                platform_bp: p1,
                partner_bp: q1,
            },
            TierRates {
                platform_bp: p2,
                partner_bp: q2,
            },
            TierRates {
                platform_bp: p3,
                partner_bp: q3,
            },
        ],
        tax_bp: tax,
        discrepancy_bp: x,
        payment_days: days,
        activation_rule: parse_enum("activation_rule", &rule)?,
    })
}

const TERMS_COLUMNS: &str = "effective_from, tier_mode, t1_fen, t2_fen, tier1_platform_bp, tier1_partner_bp,
    tier2_platform_bp, tier2_partner_bp, tier3_platform_bp, tier3_partner_bp, tax_bp, discrepancy_bp,
    payment_days, activation_rule";

/// Add terms in force from their month on. A month that already has terms is a
/// conflict: terms are never rewritten, so every statement stays reproducible.
pub async fn add_terms(
    store: &Store,
    partner_id: i64,
    t: &AgreementTerms,
) -> Result<(), BillingError> {
    t.validate()?;
    let done = sqlx::query(&format!(
        "INSERT INTO agreement_terms (partner_id, {TERMS_COLUMNS}, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
         ON CONFLICT (partner_id, effective_from) DO NOTHING"
    ))
    .bind(partner_id)
    .bind(t.effective_from.to_string())
    .bind(match t.tier_mode {
        TierMode::Whole => "whole",
        TierMode::Marginal => "marginal",
    })
    .bind(t.t1_fen)
    .bind(t.t2_fen)
    .bind(t.tiers[0].platform_bp)
    .bind(t.tiers[0].partner_bp)
    .bind(t.tiers[1].platform_bp)
    .bind(t.tiers[1].partner_bp)
    .bind(t.tiers[2].platform_bp)
    .bind(t.tiers[2].partner_bp)
    .bind(t.tax_bp)
    .bind(t.discrepancy_bp)
    .bind(t.payment_days)
    .bind(t.activation_rule.as_str())
    .bind(now_ms())
    .execute(store.pool())
    .await
    .map_err(store_err)?;
    if done.rows_affected() == 0 {
        return Err(BillingError::conflict(
            "terms-exist",
            format!(
                "terms from {} exist already; terms are never rewritten, add terms from a later month",
                t.effective_from
            ),
        ));
    }
    Ok(())
}

/// The terms in force for `month`: the latest from that month or before.
pub async fn terms_for(
    store: &Store,
    partner_id: i64,
    month: Month,
) -> Result<Option<AgreementTerms>, BillingError> {
    let row: Option<TermsRow> = sqlx::query_as(&format!(
        "SELECT {TERMS_COLUMNS} FROM agreement_terms
         WHERE partner_id = $1 AND effective_from <= $2 ORDER BY effective_from DESC LIMIT 1"
    ))
    .bind(partner_id)
    .bind(month.to_string())
    .fetch_optional(store.pool())
    .await
    .map_err(store_err)?;
    row.map(terms_from_row).transpose()
}

/// Every terms row of a partner, oldest first.
pub async fn all_terms(
    store: &Store,
    partner_id: i64,
) -> Result<Vec<AgreementTerms>, BillingError> {
    let rows: Vec<TermsRow> = sqlx::query_as(&format!(
        "SELECT {TERMS_COLUMNS} FROM agreement_terms WHERE partner_id = $1 ORDER BY effective_from"
    ))
    .bind(partner_id)
    .fetch_all(store.pool())
    .await
    .map_err(store_err)?;
    rows.into_iter().map(terms_from_row).collect()
}

/// Add an operator's terms under a partner's agreement, from a month on.
pub async fn add_operator_terms(
    store: &Store,
    partner_id: i64,
    t: &OperatorTerms,
) -> Result<(), BillingError> {
    valid_operator(&t.operator)?;
    let range = operator_billing(store, &t.operator).await?;
    t.validate(range.as_ref())?;
    let done = sqlx::query(
        "INSERT INTO operator_terms (partner_id, operator, effective_from, collection_bp, imbalance_rate_fen,
            balance_mt, balance_mo, schedule, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (partner_id, operator, effective_from) DO NOTHING",
    )
    .bind(partner_id)
    .bind(&t.operator)
    .bind(t.effective_from.to_string())
    .bind(t.collection_bp)
    .bind(t.imbalance_rate_fen)
    .bind(t.balance_mt)
    .bind(t.balance_mo)
    .bind(t.schedule.to_string())
    .bind(now_ms())
    .execute(store.pool())
    .await
    .map_err(store_err)?;
    if done.rows_affected() == 0 {
        return Err(BillingError::conflict(
            "terms-exist",
            format!(
                "terms of operator `{}` from {} exist already; add terms from a later month",
                t.operator, t.effective_from
            ),
        ));
    }
    Ok(())
}

type OperatorRow = (String, String, i64, i64, i64, i64, String);

/// Each operator's terms in force for `month`, by operator name.
pub async fn operator_terms_for(
    store: &Store,
    partner_id: i64,
    month: Month,
) -> Result<Vec<OperatorTerms>, BillingError> {
    let rows: Vec<OperatorRow> = sqlx::query_as(
        "SELECT t.operator, t.effective_from, t.collection_bp, t.imbalance_rate_fen, t.balance_mt,
                t.balance_mo, t.schedule
         FROM operator_terms t
         WHERE t.partner_id = $1 AND t.effective_from = (
            SELECT MAX(u.effective_from) FROM operator_terms u
            WHERE u.partner_id = t.partner_id AND u.operator = t.operator AND u.effective_from <= $2)
         ORDER BY t.operator",
    )
    .bind(partner_id)
    .bind(month.to_string())
    .fetch_all(store.pool())
    .await
    .map_err(store_err)?;
    rows.into_iter()
        .map(|(operator, from, c, rate, mt, mo, schedule)| {
            Ok(OperatorTerms {
                operator,
                effective_from: from.parse()?,
                collection_bp: c,
                imbalance_rate_fen: rate,
                balance_mt: mt,
                balance_mo: mo,
                schedule: schedule.parse()?,
            })
        })
        .collect()
}

/// In the OpenAPI document a schedule is its text: `M+2 day 15` or `end of M+2`.
impl utoipa::PartialSchema for Schedule {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::RefOr::T(utoipa::openapi::schema::Schema::Object(
            utoipa::openapi::ObjectBuilder::new()
                .schema_type(utoipa::openapi::schema::Type::String)
                .description(Some(
                    "When a month's traffic is settled: `M+<1-12> day <1-31>` or `end of M+<1-12>`",
                ))
                .examples([serde_json::json!("M+2 day 15")])
                .build(),
        ))
    }
}

impl utoipa::ToSchema for Schedule {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_parse_and_fall_on_the_right_day_r_4_6() {
        let m: Month = "2026-01".parse().unwrap();
        let s: Schedule = "M+2 day 15".parse().unwrap();
        assert_eq!(s.date_for(m).to_string(), "2026-03-15");
        let e: Schedule = "end of M+2".parse().unwrap();
        assert_eq!(e.date_for(m).to_string(), "2026-03-31");
        assert_eq!(e.to_string(), "end of M+2");
        let late: Schedule = "M+1 day 31".parse().unwrap();
        assert_eq!(late.date_for(m).to_string(), "2026-02-28");
        assert!("M+2 day 32".parse::<Schedule>().is_err());
        assert!("next month".parse::<Schedule>().is_err());
    }
}
