//! Issuing a month's statement, and what happens when its money inputs change
//! afterwards.
//!
//! Issuing freezes a statement: the document as issued is stored and served as it
//! was from then on (with the payments made against it). A statement can be issued
//! once the month has ended and it is no longer provisional (every operator's
//! bad-debt ratio reported, no held line undecided). After that, a change to one of
//! the month's money inputs — a corrected bad-debt ratio — never rewrites it: it
//! opens an **adjustment** per operator whose partner share moves, with the cause,
//! the reason and both amounts; the amount due on that operator moves by the
//! difference, beside the issued figures.

use super::statement::{self, Adjustment, Issued, Statement};
use crate::billing::BillingError;
use crate::billing::calendar::Month;
use crate::billing::money::{add, sub, sum};
use crate::billing::terms::{self, BadDebtChange};
use crate::relay::Routes;
use crate::store::{Store, now_ms};

/// The issued statement of a partner's month, as issued.
///
/// # Errors
/// `Conflict` `corrupt-statement` if the stored document does not read back.
pub async fn issued(
    store: &Store,
    partner_id: i64,
    month: Month,
) -> Result<Option<Statement>, BillingError> {
    let row: Option<(String,)> = sqlx::query_as(
        "SELECT document FROM statement_issues WHERE partner_id = $1 AND month = $2",
    )
    .bind(partner_id)
    .bind(month.to_string())
    .fetch_optional(store.pool())
    .await?;
    row.map(|(doc,)| {
        serde_json::from_str(&doc).map_err(|e| {
            BillingError::conflict(
                "corrupt-statement",
                format!("issued statement {month}: {e}"),
            )
        })
    })
    .transpose()
}

/// Issue a month's statement: freeze it as it stands now.
///
/// # Errors
/// `Conflict`: `month-open` (the month has not ended), `statement-provisional`
/// (a bad-debt ratio is missing or a held line is undecided), `statement-issued`
/// (issued already), `no-terms`.
pub async fn issue(
    store: &Store,
    partner_id: i64,
    partner_name: &str,
    month: Month,
    actor: &str,
) -> Result<Statement, BillingError> {
    let now = now_ms();
    if month.end_ms() > now {
        return Err(BillingError::conflict(
            "month-open",
            format!("{month} has not ended; its statement is issued after it"),
        ));
    }
    if issued(store, partner_id, month).await?.is_some() {
        return Err(BillingError::conflict(
            "statement-issued",
            format!("the statement for {month} is issued already"),
        ));
    }
    let mut s = statement::current(store, partner_id, partner_name, month).await?;
    s.names = statement::names(store, partner_id).await?;
    if s.provisional {
        let missing: Vec<&str> = s
            .operators
            .iter()
            .filter(|o| o.bad_debt_bp.is_none())
            .map(|o| o.operator.as_str())
            .collect();
        let undecided = s.reconciliation.as_ref().map_or(0, |r| r.lines_undecided);
        return Err(BillingError::conflict(
            "statement-provisional",
            format!(
                "the statement for {month} is provisional: bad-debt ratio not reported for [{}], {undecided} held line(s) undecided",
                missing.join(", ")
            ),
        ));
    }
    s.issued = Some(Issued {
        issued_at: now,
        issued_by: actor.to_string(),
    });
    let document = serde_json::to_string(&s)
        .map_err(|e| BillingError::conflict("corrupt-statement", e.to_string()))?;
    let done = sqlx::query(
        "INSERT INTO statement_issues (partner_id, month, document, issued_by, issued_at)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (partner_id, month) DO NOTHING",
    )
    .bind(partner_id)
    .bind(month.to_string())
    .bind(&document)
    .bind(actor)
    .bind(now)
    .execute(store.pool())
    .await?;
    if done.rows_affected() == 0 {
        return Err(BillingError::conflict(
            "statement-issued",
            format!("the statement for {month} is issued already"),
        ));
    }
    Ok(s)
}

/// The adjustments opened on a partner's issued month, in order.
pub async fn adjustments(
    store: &Store,
    partner_id: i64,
    month: Month,
) -> Result<Vec<Adjustment>, BillingError> {
    Ok(sqlx::query_as(
        "SELECT id, operator, cause, reason, issued_partner_fen, revised_partner_fen, delta_fen,
                opened_by, opened_at
         FROM statement_adjustments WHERE partner_id = $1 AND month = $2 ORDER BY id",
    )
    .bind(partner_id)
    .bind(month.to_string())
    .fetch_all(store.pool())
    .await?)
}

/// What reporting a bad-debt ratio did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BadDebtOutcome {
    pub operator: String,
    pub month: Month,
    #[serde(flatten)]
    pub change: BadDebtChange,
    /// Adjustments opened on issued statements of the month.
    pub adjustments: Vec<PartnerAdjustment>,
}

/// An adjustment opened on one partner's issued statement: `partner` (login
/// name) beside the [`Adjustment`]'s fields.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PartnerAdjustment {
    pub partner: String,
    #[serde(flatten)]
    pub adjustment: Adjustment,
}

/// Report (or correct, with a reason) an operator's bad-debt ratio for a month
/// (R-4.3 c). Statements of the month not issued yet simply use the new ratio;
/// every issued one gets an adjustment per operator whose partner share moves.
///
/// # Errors
/// What [`terms::record_bad_debt`] refuses.
pub async fn report_bad_debt(
    store: &Store,
    routes: &Routes,
    operator: &str,
    month: Month,
    ratio_bp: i64,
    reason: Option<&str>,
    actor: &str,
) -> Result<BadDebtOutcome, BillingError> {
    let change =
        terms::record_bad_debt(store, routes, operator, month, ratio_bp, reason, actor).await?;
    let mut opened = Vec::new();
    if change.changed && change.previous_bp.is_some() {
        let cause = format!(
            "bad-debt ratio of {operator} for {month}: {} → {ratio_bp} bp",
            change.previous_bp.unwrap_or_default()
        );
        let reason = reason.map(str::trim).unwrap_or_default();
        let issued_months: Vec<(i64, String)> = sqlx::query_as(
            "SELECT i.partner_id, p.name FROM statement_issues i JOIN partners p ON p.id = i.partner_id
             WHERE i.month = $1 ORDER BY i.partner_id",
        )
        .bind(month.to_string())
        .fetch_all(store.pool())
        .await?;
        for (partner_id, name) in issued_months {
            for a in adjust(store, partner_id, &name, month, &cause, reason, actor).await? {
                opened.push(PartnerAdjustment {
                    partner: name.clone(),
                    adjustment: a,
                });
            }
        }
    }
    Ok(BadDebtOutcome {
        operator: operator.to_string(),
        month,
        change,
        adjustments: opened,
    })
}

/// Open an adjustment on every operator of an issued month whose partner share,
/// computed from the records now, differs from what was issued plus the
/// adjustments already opened.
async fn adjust(
    store: &Store,
    partner_id: i64,
    partner_name: &str,
    month: Month,
    cause: &str,
    reason: &str,
    actor: &str,
) -> Result<Vec<Adjustment>, BillingError> {
    let Some(was) = issued(store, partner_id, month).await? else {
        return Ok(Vec::new());
    };
    let now = statement::current(store, partner_id, partner_name, month).await?;
    let before = adjustments(store, partner_id, month).await?;
    let mut opened = Vec::new();
    for o in &was.operators {
        let adjusted = sum(
            "adjustments",
            before
                .iter()
                .filter(|a| a.operator == o.operator)
                .map(|a| a.delta_fen),
        )?;
        let prior = add("adjusted partner share", o.partner_fen, adjusted)?;
        let revised = now
            .operators
            .iter()
            .find(|n| n.operator == o.operator)
            .map_or(0, |n| n.partner_fen);
        let delta = sub("adjustment", revised, prior)?;
        if delta == 0 {
            continue;
        }
        let a: Adjustment = sqlx::query_as(
            "INSERT INTO statement_adjustments (partner_id, month, operator, cause, reason,
                issued_partner_fen, revised_partner_fen, delta_fen, opened_by, opened_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             RETURNING id, operator, cause, reason, issued_partner_fen, revised_partner_fen, delta_fen,
                opened_by, opened_at",
        )
        .bind(partner_id)
        .bind(month.to_string())
        .bind(&o.operator)
        .bind(cause)
        .bind(reason)
        .bind(prior)
        .bind(revised)
        .bind(delta)
        .bind(actor)
        .bind(now_ms())
        .fetch_one(store.pool())
        .await?;
        opened.push(a);
    }
    Ok(opened)
}
