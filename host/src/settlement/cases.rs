//! Discrepancy cases: what an upload opened, the admin's decisions on
//! held lines, and how each case was resolved. Cases are opened by
//! [`super::reconcile::upload`]; this module reads them and records what happens
//! to them afterwards.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::reconcile::{CaseDetail, Line, SettleOn};
use crate::billing::BillingError;
use crate::store::{Store, now_ms};

/// A discrepancy case.
#[derive(Debug, Clone, Serialize)]
pub struct Case {
    pub id: i64,
    pub month: String,
    pub figures_id: i64,
    pub status: String,
    pub detail: serde_json::Value,
    #[serde(serialize_with = "crate::api::time::ms")]
    pub opened_at: i64,
    pub resolution: Option<String>,
    pub resolved_by: Option<String>,
    #[serde(serialize_with = "crate::api::time::opt_ms")]
    pub resolved_at: Option<i64>,
}

type CaseRow = (
    i64,
    String,
    i64,
    String,
    String,
    i64,
    Option<String>,
    Option<String>,
    Option<i64>,
);

fn case_from_row(r: CaseRow) -> Case {
    Case {
        id: r.0,
        month: r.1,
        figures_id: r.2,
        status: r.3,
        detail: serde_json::from_str(&r.4).unwrap_or_default(),
        opened_at: r.5,
        resolution: r.6,
        resolved_by: r.7,
        resolved_at: r.8,
    }
}

const CASE_COLUMNS: &str =
    "id, month, figures_id, status, detail, opened_at, resolution, resolved_by, resolved_at";

/// Every case (the admin's view), newest first; one partner's, one status's.
pub async fn all_cases(
    store: &Store,
    partner_id: Option<i64>,
    status: Option<&str>,
) -> Result<Vec<Case>, BillingError> {
    let rows: Vec<CaseRow> = sqlx::query_as(&format!(
        "SELECT {CASE_COLUMNS} FROM discrepancy_cases
         WHERE ($1 = 0 OR partner_id = $1) AND ($2 = '' OR status = $2) ORDER BY id DESC"
    ))
    .bind(partner_id.unwrap_or(0))
    .bind(status.unwrap_or(""))
    .fetch_all(store.pool())
    .await?;
    Ok(rows.into_iter().map(case_from_row).collect())
}

/// A partner's cases, newest first.
pub async fn cases(store: &Store, partner_id: i64) -> Result<Vec<Case>, BillingError> {
    let rows: Vec<CaseRow> = sqlx::query_as(&format!(
        "SELECT {CASE_COLUMNS} FROM discrepancy_cases WHERE partner_id = $1 ORDER BY id DESC"
    ))
    .bind(partner_id)
    .fetch_all(store.pool())
    .await?;
    Ok(rows.into_iter().map(case_from_row).collect())
}

/// One case; `partner_id` walls off other partners' cases.
pub async fn case(
    store: &Store,
    id: i64,
    partner_id: Option<i64>,
) -> Result<Option<(i64, Case)>, BillingError> {
    let row: Option<(i64,)> =
        sqlx::query_as("SELECT partner_id FROM discrepancy_cases WHERE id = $1")
            .bind(id)
            .fetch_optional(store.pool())
            .await?;
    let Some((owner,)) = row else {
        return Ok(None);
    };
    if partner_id.is_some_and(|p| p != owner) {
        return Ok(None);
    }
    let row: CaseRow = sqlx::query_as(&format!(
        "SELECT {CASE_COLUMNS} FROM discrepancy_cases WHERE id = $1"
    ))
    .bind(id)
    .fetch_one(store.pool())
    .await?;
    Ok(Some((owner, case_from_row(row))))
}

/// The case of a month's latest upload, if one was opened.
pub async fn case_of_figures(
    store: &Store,
    figures_id: i64,
) -> Result<Option<(i64, String)>, BillingError> {
    Ok(
        sqlx::query_as("SELECT id, status FROM discrepancy_cases WHERE figures_id = $1")
            .bind(figures_id)
            .fetch_optional(store.pool())
            .await?,
    )
}

/// Record how a case was resolved (once).
pub async fn resolve(
    store: &Store,
    id: i64,
    resolution: &str,
    actor: &str,
) -> Result<Case, BillingError> {
    if resolution.trim().is_empty() || resolution.chars().count() > 4000 {
        return Err(BillingError::invalid("resolution", "1-4000 characters"));
    }
    if case(store, id, None)
        .await?
        .is_some_and(|(_, c)| c.status == "held")
    {
        return Err(BillingError::conflict(
            "case-held",
            format!("case {id} has held lines; decide them first (POST …/decision)"),
        ));
    }
    let done = sqlx::query(
        "UPDATE discrepancy_cases SET status = 'resolved', resolution = $2, resolved_by = $3, resolved_at = $4
         WHERE id = $1 AND status = 'open'",
    )
    .bind(id)
    .bind(resolution)
    .bind(actor)
    .bind(now_ms())
    .execute(store.pool())
    .await?;
    let found = case(store, id, None).await?;
    match (found, done.rows_affected()) {
        (None, _) => Err(BillingError::NotFound(format!("no discrepancy case {id}"))),
        (Some(_), 0) => Err(BillingError::conflict(
            "case-resolved",
            format!("case {id} is resolved already"),
        )),
        (Some((_, c)), _) => Ok(c),
    }
}

/// The admin's decisions on a case's held lines, by (operator, service).
pub async fn decisions(
    store: &Store,
    case_id: i64,
) -> Result<BTreeMap<(String, String), SettleOn>, BillingError> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT operator, service, settle_on FROM discrepancy_decisions WHERE case_id = $1",
    )
    .bind(case_id)
    .fetch_all(store.pool())
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(op, service, on)| SettleOn::parse(&on).map(|on| ((op, service), on)))
        .collect())
}

/// One line's decision in [`DecisionInput`].
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LineDecision {
    pub service: String,
    pub operator: String,
    pub settle_on: SettleOn,
}

/// The admin's decision on a held case: `settle_on` for every held line, or per
/// line in `lines` (both: `lines` first, `settle_on` for the rest).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionInput {
    #[serde(default)]
    pub settle_on: Option<SettleOn>,
    #[serde(default)]
    pub lines: Vec<LineDecision>,
    pub reason: String,
}

/// Decide every held line of a case (once). The case stays open until its cause is
/// recorded with [`resolve`]; the month's statement settles the held lines as
/// decided from now on.
///
/// # Errors
/// `NotFound`; `Conflict` `case-not-held` when nothing waits for a decision;
/// `Invalid` for a missing reason, a line that is not held, or a held line left
/// undecided.
pub async fn decide(
    store: &Store,
    id: i64,
    input: &DecisionInput,
    actor: &str,
) -> Result<Case, BillingError> {
    let reason = input.reason.trim();
    if reason.is_empty() || reason.chars().count() > 2000 {
        return Err(BillingError::invalid("reason", "1-2000 characters"));
    }
    let Some((_, found)) = case(store, id, None).await? else {
        return Err(BillingError::NotFound(format!("no discrepancy case {id}")));
    };
    if found.status != "held" {
        return Err(BillingError::conflict(
            "case-not-held",
            format!(
                "case {id} is {}: no line waits for a decision",
                found.status
            ),
        ));
    }
    let detail: CaseDetail = serde_json::from_value(found.detail.clone())
        .map_err(|e| BillingError::conflict("corrupt-case", format!("stored case {id}: {e}")))?;
    let held: Vec<(String, String)> = detail
        .lines
        .iter()
        .filter_map(|l| {
            let line: Line =
                serde_json::from_value(serde_json::Value::Object(l.line.clone())).ok()?;
            line.held.then(|| (l.operator.clone(), line.service))
        })
        .collect();
    for l in &input.lines {
        if !held.contains(&(l.operator.clone(), l.service.clone())) {
            return Err(BillingError::invalid(
                "lines",
                format!(
                    "{} on {} is not a held line of case {id}",
                    l.service, l.operator
                ),
            ));
        }
    }
    let mut chosen = Vec::with_capacity(held.len());
    for (op, service) in &held {
        let on = input
            .lines
            .iter()
            .find(|l| &l.operator == op && &l.service == service)
            .map(|l| l.settle_on)
            .or(input.settle_on)
            .ok_or_else(|| {
                BillingError::invalid(
                    "settle_on",
                    format!("held line {service} on {op} needs a decision: `platform` or `mean`"),
                )
            })?;
        chosen.push((op, service, on));
    }
    let now = now_ms();
    let mut tx = store.begin_write().await?;
    let done = sqlx::query(
        "UPDATE discrepancy_cases SET status = 'open' WHERE id = $1 AND status = 'held'",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        return Err(BillingError::conflict(
            "case-not-held",
            format!("case {id} was decided meanwhile"),
        ));
    }
    for (op, service, on) in chosen {
        sqlx::query(
            "INSERT INTO discrepancy_decisions (case_id, operator, service, settle_on, reason, decided_by, decided_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id)
        .bind(op)
        .bind(service)
        .bind(on.as_str())
        .bind(reason)
        .bind(actor)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    case(store, id, None)
        .await?
        .map(|(_, c)| c)
        .ok_or_else(|| BillingError::NotFound(format!("no discrepancy case {id}")))
}
