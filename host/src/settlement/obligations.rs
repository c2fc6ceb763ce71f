//! Obligations with dates: payments to the partner against
//! the schedule and the N-working-day terms, breach notices and their remedy
//! periods, termination with notice or for an unremedied breach. Whatever comes due
//! unmet is raised once as an alert. Termination stops the partner's sending
//! (`partners.status = 'terminated'`: the outbox gate refuses non-active partners,
//! and its MTs still waiting end failed with the reason) but never its billing: the
//! remaining months still settle.

use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use super::statement;
use crate::billing::BillingError;
use crate::billing::agreement::{self, AgreementStatus};
use crate::billing::calendar::{Month, day_start_ms, parse_day};
use crate::billing::terms::require_operator;
use crate::relay::Routes;
use crate::store::{Store, now_ms};

/// Most one payment may carry: 10^12 fen (10 billion yuan), far above any month.
pub const MAX_PAYMENT_FEN: i64 = 1_000_000_000_000;

/// Record the day an operator's money for a month arrived.
pub async fn record_operator_payment(
    store: &Store,
    routes: &Routes,
    operator: &str,
    month: Month,
    received_on: &str,
) -> Result<(), BillingError> {
    require_operator(store, routes, operator).await?;
    let day = parse_day("received_on", received_on)?;
    if day < month.plus(1).first_day() {
        return Err(BillingError::invalid(
            "received_on",
            format!("money for {month} cannot arrive before the month is over"),
        ));
    }
    sqlx::query(
        "INSERT INTO operator_payments (operator, month, received_on, recorded_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (operator, month) DO UPDATE SET received_on = EXCLUDED.received_on,
            recorded_at = EXCLUDED.recorded_at",
    )
    .bind(operator)
    .bind(month.to_string())
    .bind(day.to_string())
    .bind(now_ms())
    .execute(store.pool())
    .await?;
    Ok(())
}

/// A payment to the partner.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentInput {
    pub month: Month,
    pub operator: String,
    pub amount_fen: i64,
    pub paid_on: String,
    pub reference: String,
}

/// Record a payment to the partner for a month's traffic of one operator.
///
/// # Errors
/// `Invalid` for an operator that is not the platform's (the body names it, so it
/// is a 400, not a 404), an amount outside 1–[`MAX_PAYMENT_FEN`], a day before the
/// month ended, or an empty reference.
pub async fn record_partner_payment(
    store: &Store,
    routes: &Routes,
    partner_id: i64,
    p: &PaymentInput,
) -> Result<i64, BillingError> {
    match require_operator(store, routes, &p.operator).await {
        Err(BillingError::NotFound(m)) => return Err(BillingError::invalid("operator", m)),
        other => other?,
    }
    let day = parse_day("paid_on", &p.paid_on)?;
    if !(1..=MAX_PAYMENT_FEN).contains(&p.amount_fen) {
        return Err(BillingError::invalid(
            "amount_fen",
            format!("fen from 1 to {MAX_PAYMENT_FEN}"),
        ));
    }
    if day < p.month.plus(1).first_day() {
        return Err(BillingError::invalid(
            "paid_on",
            format!("{} is paid after the month is over", p.month),
        ));
    }
    if p.reference.trim().is_empty() || p.reference.chars().count() > 200 {
        return Err(BillingError::invalid("reference", "1-200 characters"));
    }
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO partner_payments (partner_id, month, operator, amount_fen, paid_on, reference, recorded_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(partner_id)
    .bind(p.month.to_string())
    .bind(&p.operator)
    .bind(p.amount_fen)
    .bind(day.to_string())
    .bind(&p.reference)
    .bind(now_ms())
    .fetch_one(store.pool())
    .await?;
    Ok(id)
}

/// A written breach notice.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct BreachNotice {
    pub id: i64,
    /// Who is in breach: `partner` or `platform`.
    pub breaching: String,
    pub issued_on: String,
    pub reason: String,
    pub remedy_by: String,
    pub remedied_on: Option<String>,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BreachInput {
    pub breaching: String,
    pub issued_on: String,
    pub reason: String,
}

/// Issue a breach notice: the breaching side has the agreement's remedy days.
pub async fn issue_breach_notice(
    store: &Store,
    partner_id: i64,
    input: &BreachInput,
) -> Result<BreachNotice, BillingError> {
    let a = agreement::require(store, partner_id).await?;
    if !matches!(input.breaching.as_str(), "partner" | "platform") {
        return Err(BillingError::invalid(
            "breaching",
            "`partner` or `platform`: the side in breach",
        ));
    }
    let issued = parse_day("issued_on", &input.issued_on)?;
    if input.reason.trim().is_empty() || input.reason.chars().count() > 2000 {
        return Err(BillingError::invalid("reason", "1-2000 characters"));
    }
    let remedy_by = issued
        .checked_add(jiff::Span::new().days(a.remedy_days))
        .map_err(|e| BillingError::invalid("issued_on", e.to_string()))?;
    let notice: BreachNotice = sqlx::query_as(
        "INSERT INTO breach_notices (partner_id, breaching, issued_on, reason, remedy_by, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         RETURNING id, breaching, issued_on, reason, remedy_by, remedied_on",
    )
    .bind(partner_id)
    .bind(&input.breaching)
    .bind(issued.to_string())
    .bind(&input.reason)
    .bind(remedy_by.to_string())
    .bind(now_ms())
    .fetch_one(store.pool())
    .await?;
    Ok(notice)
}

/// Record that a breach was remedied.
pub async fn remedy(
    store: &Store,
    partner_id: i64,
    notice_id: i64,
    remedied_on: &str,
) -> Result<BreachNotice, BillingError> {
    let day = parse_day("remedied_on", remedied_on)?;
    let notice = notice(store, partner_id, notice_id).await?;
    if notice.remedied_on.is_some() {
        return Err(BillingError::conflict(
            "already-remedied",
            format!("breach notice {notice_id} was remedied already"),
        ));
    }
    sqlx::query("UPDATE breach_notices SET remedied_on = $2 WHERE id = $1")
        .bind(notice_id)
        .bind(day.to_string())
        .execute(store.pool())
        .await?;
    self::notice(store, partner_id, notice_id).await
}

async fn notice(store: &Store, partner_id: i64, id: i64) -> Result<BreachNotice, BillingError> {
    sqlx::query_as(
        "SELECT id, breaching, issued_on, reason, remedy_by, remedied_on FROM breach_notices
         WHERE id = $1 AND partner_id = $2",
    )
    .bind(id)
    .bind(partner_id)
    .fetch_optional(store.pool())
    .await?
    .ok_or_else(|| BillingError::NotFound(format!("no breach notice {id} for this partner")))
}

pub async fn notices(store: &Store, partner_id: i64) -> Result<Vec<BreachNotice>, BillingError> {
    Ok(sqlx::query_as(
        "SELECT id, breaching, issued_on, reason, remedy_by, remedied_on FROM breach_notices
         WHERE partner_id = $1 ORDER BY id",
    )
    .bind(partner_id)
    .fetch_all(store.pool())
    .await?)
}

/// How an agreement is ended.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TerminationInput {
    /// `notice`: on request, effective after the notice months; `breach`: at once,
    /// for a breach notice whose remedy period ran out unremedied.
    pub kind: String,
    /// The day the written notice is given (or the termination declared).
    pub given_on: String,
    pub reason: String,
    #[serde(default)]
    pub breach_notice_id: Option<i64>,
}

/// Give notice of termination or terminate for an unremedied breach.
pub async fn terminate(
    store: &Store,
    partner_id: i64,
    input: &TerminationInput,
) -> Result<agreement::Agreement, BillingError> {
    let a = agreement::require(store, partner_id).await?;
    if matches!(
        a.status,
        AgreementStatus::Terminated | AgreementStatus::InNotice
    ) {
        return Err(BillingError::conflict(
            "agreement-ending",
            format!("the agreement is {} already", a.status.as_str()),
        ));
    }
    let given = parse_day("given_on", &input.given_on)?;
    if input.reason.trim().is_empty() || input.reason.chars().count() > 2000 {
        return Err(BillingError::invalid("reason", "1-2000 characters"));
    }
    match input.kind.as_str() {
        "notice" => {
            let ends = given
                .checked_add(jiff::Span::new().months(a.notice_months))
                .map_err(|e| BillingError::invalid("given_on", e.to_string()))?;
            sqlx::query(
                "UPDATE agreements SET status = 'in-notice', notice_given_on = $2, ends_on = $3,
                    termination_reason = $4, updated_at = $5 WHERE partner_id = $1",
            )
            .bind(partner_id)
            .bind(given.to_string())
            .bind(ends.to_string())
            .bind(&input.reason)
            .bind(now_ms())
            .execute(store.pool())
            .await?;
        }
        "breach" => {
            let id = input.breach_notice_id.ok_or_else(|| {
                BillingError::invalid("breach_notice_id", "a breach termination names its notice")
            })?;
            let n = notice(store, partner_id, id).await?;
            let remedy_by: Date = n.remedy_by.parse().unwrap_or(given);
            if n.remedied_on.is_some() {
                return Err(BillingError::conflict(
                    "breach-remedied",
                    format!("breach notice {id} was remedied"),
                ));
            }
            if given <= remedy_by {
                return Err(BillingError::conflict(
                    "remedy-period-running",
                    format!("the remedy period of notice {id} runs until {remedy_by}"),
                ));
            }
            end_agreement(store, partner_id, given, &input.reason).await?;
        }
        other => {
            return Err(BillingError::invalid(
                "kind",
                format!("`{other}` is not `notice` or `breach`"),
            ));
        }
    }
    agreement::require(store, partner_id).await
}

/// The agreement ends on `day`: the partner stops sending; billing goes on.
async fn end_agreement(
    store: &Store,
    partner_id: i64,
    day: Date,
    reason: &str,
) -> Result<(), BillingError> {
    let now = now_ms();
    let mut tx = store.begin_write().await?;
    sqlx::query(
        "UPDATE agreements SET status = 'terminated', terminated_on = $2, terminated_at = $3,
            termination_reason = COALESCE(termination_reason, $4), updated_at = $5
         WHERE partner_id = $1",
    )
    .bind(partner_id)
    .bind(day.to_string())
    .bind(day_start_ms(day))
    .bind(reason)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE partners SET status = 'terminated' WHERE id = $1")
        .bind(partner_id)
        .execute(&mut *tx)
        .await?;
    // What was still waiting to leave never will: it ends failed, with the reason
    // visible per message, not silently dropped.
    let reason = format!("the agreement was terminated on {day}");
    crate::relay::outbox::fail_queued_in(&mut tx, partner_id, &reason, now).await?;
    tx.commit().await?;
    Ok(())
}

/// An obligation that came due unmet.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Alert {
    pub id: i64,
    pub partner_id: i64,
    pub kind: String,
    pub subject: String,
    pub due_on: String,
    pub detail: String,
    #[serde(serialize_with = "crate::api::time::ms")]
    pub raised_at: i64,
}

async fn raise(
    store: &Store,
    partner_id: i64,
    kind: &str,
    subject: &str,
    due_on: &str,
    detail: &str,
) -> Result<Option<Alert>, BillingError> {
    Ok(sqlx::query_as(
        "INSERT INTO billing_alerts (partner_id, kind, subject, due_on, detail, raised_at)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (partner_id, kind, subject) DO NOTHING
         RETURNING id, partner_id, kind, subject, due_on, detail, raised_at",
    )
    .bind(partner_id)
    .bind(kind)
    .bind(subject)
    .bind(due_on)
    .bind(detail)
    .bind(now_ms())
    .fetch_optional(store.pool())
    .await?)
}

/// Alerts, newest first; one partner's or all.
pub async fn alerts(store: &Store, partner_id: Option<i64>) -> Result<Vec<Alert>, BillingError> {
    Ok(sqlx::query_as(
        "SELECT id, partner_id, kind, subject, due_on, detail, raised_at FROM billing_alerts
         WHERE $1 = 0 OR partner_id = $1 ORDER BY id DESC",
    )
    .bind(partner_id.unwrap_or(0))
    .fetch_all(store.pool())
    .await?)
}

/// Check every obligation as of `today` and raise what came due unmet; returns the
/// alerts raised now. Notices that ran out end their agreements.
///
/// - `notice-ended`: an agreement in notice reached its end day → terminated.
/// - `remedy-lapsed`: a breach notice's remedy period passed unremedied.
/// - `settlement-overdue`: a month's amount for an operator is unpaid after its due
///   day; `payment-late`: unpaid N working days after the operator's money
///   arrived; `settlement-breach`: unpaid after the grace of agreement 3.5.
pub async fn check(store: &Store, today: Date) -> Result<Vec<Alert>, BillingError> {
    let mut raised = Vec::new();
    let ending: Vec<(i64, String)> = sqlx::query_as(
        "SELECT partner_id, ends_on FROM agreements WHERE status = 'in-notice' AND ends_on <= $1",
    )
    .bind(today.to_string())
    .fetch_all(store.pool())
    .await?;
    for (partner, ends_on) in ending {
        let day: Date = ends_on.parse().unwrap_or(today);
        end_agreement(store, partner, day, "notice period ended").await?;
        raised.extend(
            raise(
                store,
                partner,
                "notice-ended",
                &ends_on,
                &ends_on,
                "the termination notice ran out; the agreement is terminated and the partner stopped",
            )
            .await?,
        );
    }
    let lapsed: Vec<(i64, i64, String, String)> = sqlx::query_as(
        "SELECT id, partner_id, remedy_by, breaching FROM breach_notices
         WHERE remedied_on IS NULL AND remedy_by < $1",
    )
    .bind(today.to_string())
    .fetch_all(store.pool())
    .await?;
    for (id, partner, remedy_by, breaching) in lapsed {
        raised.extend(
            raise(
                store,
                partner,
                "remedy-lapsed",
                &format!("breach-notice-{id}"),
                &remedy_by,
                &format!("the {breaching} did not remedy breach notice {id} by {remedy_by}; the agreement may be terminated"),
            )
            .await?,
        );
    }
    // Months whose settlement may be due: anything charged before this month.
    let months: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT DISTINCT e.partner_id, p.name, e.month FROM charge_events e
         JOIN partners p ON p.id = e.partner_id WHERE e.month < $1 ORDER BY e.partner_id, e.month",
    )
    .bind(Month::of_ms(day_start_ms(today)).to_string())
    .fetch_all(store.pool())
    .await?;
    for (partner, name, month) in months {
        let Ok(month) = month.parse::<Month>() else {
            continue;
        };
        let statement = match statement::generate(store, partner, &name, month).await {
            Ok(s) => s,
            Err(BillingError::Conflict { message, .. }) => {
                raised.extend(
                    raise(
                        store,
                        partner,
                        "statement-blocked",
                        &month.to_string(),
                        &month.plus(1).first_day().to_string(),
                        &message,
                    )
                    .await?,
                );
                continue;
            }
            Err(e) => return Err(e),
        };
        for due in &statement.due {
            if due.outstanding_fen <= 0 {
                continue;
            }
            let subject = format!("{month}/{}", due.operator);
            let checks = [
                ("settlement-overdue", Some(&due.due_on), "due"),
                (
                    "payment-late",
                    due.pay_by.as_ref(),
                    "to be paid after the operator's money arrived",
                ),
                (
                    "settlement-breach",
                    Some(&due.breach_after),
                    "settled at the latest (agreement 3.5)",
                ),
            ];
            for (kind, day, what) in checks {
                let Some(day) = day else { continue };
                if day.as_str() < today.to_string().as_str() {
                    let detail = format!(
                        "{} fen for {month} via {} was {what} by {day}; {} fen outstanding",
                        due.amount_fen, due.operator, due.outstanding_fen
                    );
                    raised.extend(raise(store, partner, kind, &subject, day, &detail).await?);
                }
            }
        }
    }
    Ok(raised)
}
