//! The agreement itself: start date, term, status, notice and remedy
//! periods. Its money terms are in [`super::terms`]; what happens when it ends is
//! in [`crate::settlement::obligations`].

use serde::{Deserialize, Serialize};

use super::BillingError;
use super::calendar::parse_day;
use crate::store::{Store, StoreError, now_ms};

/// Where an agreement stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AgreementStatus {
    Active,
    Suspended,
    /// Termination was given with notice; it takes effect on `ends_on`.
    InNotice,
    Terminated,
}

impl AgreementStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::InNotice => "in-notice",
            Self::Terminated => "terminated",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "suspended" => Self::Suspended,
            "in-notice" => Self::InNotice,
            "terminated" => Self::Terminated,
            _ => Self::Active,
        }
    }
}

/// An agreement with one partner.
#[derive(Debug, Clone, Serialize)]
pub struct Agreement {
    pub partner_id: i64,
    pub start_date: String,
    pub term_months: i64,
    /// The last day of the term.
    pub end_date: String,
    pub status: AgreementStatus,
    /// Months of written notice a termination on request needs.
    pub notice_months: i64,
    /// Days a breach notice gives to remedy.
    pub remedy_days: i64,
    pub notice_given_on: Option<String>,
    pub ends_on: Option<String>,
    pub terminated_on: Option<String>,
    pub termination_reason: Option<String>,
}

/// What the admin sets.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgreementInput {
    pub start_date: String,
    pub term_months: i64,
    pub notice_months: i64,
    pub remedy_days: i64,
}

type Row = (
    i64,
    String,
    i64,
    String,
    i64,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn store_err(e: sqlx::Error) -> BillingError {
    BillingError::Store(StoreError::from(e))
}

fn from_row(r: Row) -> Agreement {
    let end_date =
        r.1.parse::<jiff::civil::Date>()
            .ok()
            .and_then(|d| {
                d.checked_add(jiff::Span::new().months(r.2))
                    .ok()
                    .and_then(|d| d.yesterday().ok())
            })
            .map(|d| d.to_string())
            .unwrap_or_default();
    Agreement {
        partner_id: r.0,
        start_date: r.1,
        term_months: r.2,
        end_date,
        status: AgreementStatus::parse(&r.3),
        notice_months: r.4,
        remedy_days: r.5,
        notice_given_on: r.6,
        ends_on: r.7,
        terminated_on: r.8,
        termination_reason: r.9,
    }
}

/// Create the agreement, or change its dates and periods (status is kept).
pub async fn set(
    store: &Store,
    partner_id: i64,
    a: &AgreementInput,
) -> Result<Agreement, BillingError> {
    parse_day("start_date", &a.start_date)?;
    if !(1..=600).contains(&a.term_months) {
        return Err(BillingError::invalid("term_months", "months from 1 to 600"));
    }
    // A notice or a remedy period of nothing is no period at all: written
    // notice takes at least a month, a breach notice gives at least a day.
    if !(1..=60).contains(&a.notice_months) {
        return Err(BillingError::invalid(
            "notice_months",
            "months from 1 to 60",
        ));
    }
    if !(1..=365).contains(&a.remedy_days) {
        return Err(BillingError::invalid("remedy_days", "days from 1 to 365"));
    }
    let now = now_ms();
    sqlx::query(
        "INSERT INTO agreements (partner_id, start_date, term_months, status, notice_months, remedy_days,
            created_at, updated_at)
         VALUES ($1, $2, $3, 'active', $4, $5, $6, $6)
         ON CONFLICT (partner_id) DO UPDATE SET start_date = EXCLUDED.start_date,
            term_months = EXCLUDED.term_months, notice_months = EXCLUDED.notice_months,
            remedy_days = EXCLUDED.remedy_days, updated_at = EXCLUDED.updated_at",
    )
    .bind(partner_id)
    .bind(&a.start_date)
    .bind(a.term_months)
    .bind(a.notice_months)
    .bind(a.remedy_days)
    .bind(now)
    .execute(store.pool())
    .await
    .map_err(store_err)?;
    get(store, partner_id)
        .await?
        .ok_or_else(|| BillingError::NotFound("agreement vanished".into()))
}

/// A partner's agreement, if one was made.
pub async fn get(store: &Store, partner_id: i64) -> Result<Option<Agreement>, BillingError> {
    let row: Option<Row> = sqlx::query_as(
        "SELECT partner_id, start_date, term_months, status, notice_months, remedy_days, notice_given_on,
                ends_on, terminated_on, termination_reason
         FROM agreements WHERE partner_id = $1",
    )
    .bind(partner_id)
    .fetch_optional(store.pool())
    .await
    .map_err(store_err)?;
    Ok(row.map(from_row))
}

/// The agreement, or a 404-style error naming what is missing.
pub async fn require(store: &Store, partner_id: i64) -> Result<Agreement, BillingError> {
    get(store, partner_id).await?.ok_or_else(|| {
        BillingError::NotFound("this partner has no agreement; PUT …/agreement first".into())
    })
}

/// Suspend or resume an agreement. Notice and termination have their own
/// routes, because they carry dates and reasons.
pub async fn set_status(
    store: &Store,
    partner_id: i64,
    status: AgreementStatus,
) -> Result<Agreement, BillingError> {
    let current = require(store, partner_id).await?;
    if !matches!(status, AgreementStatus::Active | AgreementStatus::Suspended) {
        return Err(BillingError::invalid(
            "status",
            "only `active` or `suspended` here; notice and termination go through /termination",
        ));
    }
    if matches!(
        current.status,
        AgreementStatus::Terminated | AgreementStatus::InNotice
    ) {
        return Err(BillingError::conflict(
            "agreement-ending",
            format!(
                "the agreement is {}; its status follows the termination",
                current.status.as_str()
            ),
        ));
    }
    sqlx::query("UPDATE agreements SET status = $2, updated_at = $3 WHERE partner_id = $1")
        .bind(partner_id)
        .bind(status.as_str())
        .bind(now_ms())
        .execute(store.pool())
        .await
        .map_err(store_err)?;
    require(store, partner_id).await
}
