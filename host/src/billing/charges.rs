//! Charge events: the platform bills the information fee on the
//! partner's behalf. A per-message service charges when its MT is delivered (the
//! DLR); a monthly service once per subscription and month; a free service never.
//! Each charge is one immutable `charge_events` row, and the unique keys
//! (`message_id`; `subscription_id, month`) make every pass idempotent: a replayed
//! receipt or a second pass over the same records charges nothing twice.

use std::collections::HashMap;

use serde::Serialize;

use super::BillingError;
use super::calendar::{Month, day_of_ms};
use super::money::mul_div_round;
use super::terms::{ActivationRule, terms_for};
use crate::relay::Routes;
use crate::store::{Store, StoreError, now_ms};

/// Which delivered MTs a pass looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// Those finished since the last pass (with an hour's overlap for late commits).
    Incremental,
    /// Every delivered MT (at start-up, and in tests).
    Full,
}

/// What one pass charged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ChargeReport {
    pub per_message: u64,
    pub monthly: u64,
    /// Monthly subscriptions whose number no operator serves: not charged, logged.
    pub unroutable: u64,
}

const WATERMARK: &str = "billing.charged_through_ms";
const LOOKBACK_MS: i64 = 60 * 60 * 1000;
const BATCH: i64 = 500;

fn store_err(e: sqlx::Error) -> BillingError {
    BillingError::Store(StoreError::from(e))
}

/// Turn delivered per-message MTs and the monthly subscriptions of this month and
/// the last one into charge events. Safe to run any number of times, on any
/// number of replicas at once.
pub async fn charge(
    store: &Store,
    routes: &Routes,
    now: i64,
    scan: Scan,
) -> Result<ChargeReport, BillingError> {
    let since = match scan {
        Scan::Full => 0,
        Scan::Incremental => store
            .setting(WATERMARK)
            .await?
            .and_then(|v| v.parse::<i64>().ok())
            .map_or(0, |w| (w - LOOKBACK_MS).max(0)),
    };
    let per_message = charge_messages(store, since).await?;
    let current = Month::of_ms(now);
    let mut report = ChargeReport {
        per_message,
        ..ChargeReport::default()
    };
    // Last month too: a platform that was down at the turn of the month catches up.
    for month in [current.plus(-1), current] {
        let (charged, unroutable) = charge_monthly(store, routes, month, now).await?;
        report.monthly += charged;
        report.unroutable += unroutable;
    }
    sqlx::query(
        "INSERT INTO settings (key, value) VALUES ($1, $2)
         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
    )
    .bind(WATERMARK)
    .bind(now_ms().to_string())
    .execute(store.pool())
    .await
    .map_err(store_err)?;
    Ok(report)
}

/// The months whose monthly charge events get 包月 billing records where the
/// operator's protocol has them (`relay::outbox::records`): the ones a charge pass
/// charges, the previous month and the current one (`YYYY-MM`).
pub fn record_months(now: i64) -> Vec<String> {
    let current = Month::of_ms(now);
    vec![current.plus(-1).to_string(), current.to_string()]
}

type DeliveredRow = (i64, i64, Option<i64>, String, String, Option<i64>, i64, i64);

async fn charge_messages(store: &Store, since: i64) -> Result<u64, BillingError> {
    let mut charged = 0;
    let mut after = 0i64;
    loop {
        let rows: Vec<DeliveredRow> = sqlx::query_as(
            "SELECT m.id, m.partner_id, m.service_id, COALESCE(s.code, m.service, ''), m.operator,
                    m.subscription_id, m.price_fen, m.done_at
             FROM messages m LEFT JOIN services s ON s.id = m.service_id
             WHERE m.status = 'delivered' AND m.done_at >= $1 AND m.id > $2
               AND m.charge_plan = 'per-message' AND m.is_test = 0 AND m.price_fen > 0
               AND m.partner_id IS NOT NULL AND m.done_at IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM charge_events e WHERE e.message_id = m.id)
             ORDER BY m.id LIMIT $3",
        )
        .bind(since)
        .bind(after)
        .bind(BATCH)
        .fetch_all(store.pool())
        .await
        .map_err(store_err)?;
        let Some(last) = rows.last() else {
            break;
        };
        after = last.0;
        let full = i64::try_from(rows.len()).unwrap_or(0) == BATCH;
        let mut tx = store.begin_write().await?;
        let now = now_ms();
        for (id, partner, service_id, service, operator, subscription, price, done_at) in rows {
            let done = sqlx::query(
                "INSERT INTO charge_events (partner_id, service_id, service, operator, kind, message_id,
                    subscription_id, month, list_price_fen, amount_fen, basis, occurred_at, created_at)
                 VALUES ($1, $2, $3, $4, 'per-message', $5, $6, $7, $8, $8, 'delivered', $9, $10)
                 ON CONFLICT DO NOTHING",
            )
            .bind(partner)
            .bind(service_id)
            .bind(&service)
            .bind(&operator)
            .bind(id)
            .bind(subscription)
            .bind(Month::of_ms(done_at).to_string())
            .bind(price)
            .bind(done_at)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(store_err)?;
            charged += done.rows_affected();
        }
        tx.commit().await.map_err(store_err)?;
        if !full {
            break;
        }
    }
    Ok(charged)
}

type SubscriptionRow = (i64, i64, i64, String, String, i64, i64, Option<String>);

/// The amount and basis of a monthly charge for `month` (R-4.5: a partial first
/// month follows the activation rule).
pub fn monthly_amount(
    price_fen: i64,
    activated_at: i64,
    month: Month,
    rule: ActivationRule,
) -> (i64, String) {
    if Month::of_ms(activated_at) != month {
        return (price_fen, "full".into());
    }
    match rule {
        ActivationRule::Full => (price_fen, "full".into()),
        ActivationRule::FreeFirstMonth => (0, "free-first-month".into()),
        ActivationRule::ProRata => {
            let first = i64::from(day_of_ms(activated_at).day());
            let days = month.days();
            let remaining = days - first + 1;
            // remaining <= days, so the result is at most the price: it cannot
            // overflow, and if it could the full price would be the bound.
            let amount =
                mul_div_round("pro-rata price", price_fen, remaining, days).unwrap_or(price_fen);
            (amount, format!("pro-rata {remaining}/{days} days"))
        }
    }
}

async fn charge_monthly(
    store: &Store,
    routes: &Routes,
    month: Month,
    now: i64,
) -> Result<(u64, u64), BillingError> {
    let start = month.start_ms();
    let until = month.end_ms().min(now.saturating_add(1));
    if until <= start {
        return Ok((0, 0));
    }
    let mut rules: HashMap<(i64, Month), ActivationRule> = HashMap::new();
    let (mut charged, mut unroutable) = (0u64, 0u64);
    let mut after = 0i64;
    loop {
        let rows: Vec<SubscriptionRow> = sqlx::query_as(
            "SELECT s.id, s.partner_id, s.service_id, sv.code, s.msisdn, s.price_fen, s.activated_at,
                    (SELECT m.operator FROM messages m WHERE m.subscription_id = s.id ORDER BY m.id DESC LIMIT 1)
             FROM subscriptions s JOIN services sv ON sv.id = s.service_id
             WHERE s.id > $1 AND s.fee_type = 'monthly' AND s.price_fen > 0
               AND s.activated_at IS NOT NULL AND s.activated_at < $2
               AND (s.ended_at IS NULL OR s.ended_at > $3)
               AND NOT EXISTS (SELECT 1 FROM charge_events e
                               WHERE e.kind = 'monthly' AND e.subscription_id = s.id AND e.month = $4)
               AND NOT EXISTS (SELECT 1 FROM agreements a
                               WHERE a.partner_id = s.partner_id AND a.terminated_at IS NOT NULL
                                 AND a.terminated_at <= $3)
             ORDER BY s.id LIMIT $5",
        )
        .bind(after)
        .bind(until)
        .bind(start)
        .bind(month.to_string())
        .bind(BATCH)
        .fetch_all(store.pool())
        .await
        .map_err(store_err)?;
        let Some(last) = rows.last() else {
            break;
        };
        after = last.0;
        let full = i64::try_from(rows.len()).unwrap_or(0) == BATCH;
        let mut tx = store.begin_write().await?;
        let created = now_ms();
        for (id, partner, service_id, code, msisdn, price, activated_at, last_operator) in rows {
            let operator = match routes.route(&msisdn) {
                Ok((_, operator)) => operator,
                Err(e) => match last_operator {
                    Some(op) => op,
                    None => {
                        tracing::warn!(subscription = id, error = %e, "monthly charge skipped: no operator serves the number");
                        unroutable += 1;
                        continue;
                    }
                },
            };
            // The rule of the terms in force in the activation month.
            let key = (partner, Month::of_ms(activated_at));
            let rule = match rules.get(&key) {
                Some(r) => *r,
                None => {
                    let rule = terms_for(store, partner, key.1)
                        .await?
                        .map_or(ActivationRule::Full, |t| t.activation_rule);
                    rules.insert(key, rule);
                    rule
                }
            };
            let (amount, basis) = monthly_amount(price, activated_at, month, rule);
            let done = sqlx::query(
                "INSERT INTO charge_events (partner_id, service_id, service, operator, kind, message_id,
                    subscription_id, month, list_price_fen, amount_fen, basis, occurred_at, created_at)
                 VALUES ($1, $2, $3, $4, 'monthly', NULL, $5, $6, $7, $8, $9, $10, $11)
                 ON CONFLICT DO NOTHING",
            )
            .bind(partner)
            .bind(service_id)
            .bind(&code)
            .bind(&operator)
            .bind(id)
            .bind(month.to_string())
            .bind(price)
            .bind(amount)
            .bind(&basis)
            .bind(activated_at.max(start))
            .bind(created)
            .execute(&mut *tx)
            .await
            .map_err(store_err)?;
            charged += done.rows_affected();
        }
        tx.commit().await.map_err(store_err)?;
        if !full {
            break;
        }
    }
    Ok((charged, unroutable))
}

/// One charge event, as a partner sees it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ChargeEvent {
    pub id: i64,
    pub service: String,
    pub operator: String,
    pub kind: String,
    pub message_id: Option<i64>,
    pub subscription_id: Option<i64>,
    pub month: String,
    pub list_price_fen: i64,
    pub amount_fen: i64,
    pub basis: String,
    #[serde(serialize_with = "crate::api::time::ms")]
    pub occurred_at: i64,
}

/// A partner's charge events of a month, in order.
pub async fn list(
    store: &Store,
    partner_id: i64,
    month: Month,
) -> Result<Vec<ChargeEvent>, BillingError> {
    sqlx::query_as(
        "SELECT id, service, operator, kind, message_id, subscription_id, month, list_price_fen,
                amount_fen, basis, occurred_at
         FROM charge_events WHERE partner_id = $1 AND month = $2 ORDER BY id",
    )
    .bind(partner_id)
    .bind(month.to_string())
    .fetch_all(store.pool())
    .await
    .map_err(store_err)
}

/// Charged amounts per platform day (issue 14 item 3: the console's revenue
/// chart, R-4): `days` is a list of `YYYY-MM-DD` keys starting at Unix ms `since`
/// (oldest first, as `relay::messages::last_days` gives them); one partner's
/// charges, or everyone's for `None`. Sums are checked (R-4.9: no wrapping).
///
/// # Errors
/// A store error, or `Overflow` if a day's sum leaves `i64`.
pub async fn revenue_by_day(
    store: &Store,
    partner_id: Option<i64>,
    days: &[String],
    since: i64,
) -> Result<Vec<(String, i64)>, BillingError> {
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT occurred_at, amount_fen FROM charge_events
         WHERE occurred_at >= $1 AND (CAST($2 AS BIGINT) = 0 OR partner_id = $3)",
    )
    .bind(since)
    .bind(i64::from(partner_id.is_some()))
    .bind(partner_id.unwrap_or(0))
    .fetch_all(store.pool())
    .await
    .map_err(store_err)?;
    let mut out: Vec<(String, i64)> = days.iter().map(|d| (d.clone(), 0)).collect();
    for (at, amount) in rows {
        let day = crate::clock::day_key(at);
        if let Some(slot) = out.iter_mut().find(|(d, _)| *d == day) {
            slot.1 = super::money::add("revenue of a day", slot.1, amount)?;
        }
    }
    Ok(out)
}

/// One page of a partner's charge events of a month, in order: at most `limit`
/// (1-1001) with ids above `after_id` (`GET /v1/charges`, which once answered
/// 75,000 events in one body).
///
/// # Errors
/// Store failures.
pub async fn page(
    store: &Store,
    partner_id: i64,
    month: Month,
    after_id: i64,
    limit: i64,
) -> Result<Vec<ChargeEvent>, BillingError> {
    sqlx::query_as(
        "SELECT id, service, operator, kind, message_id, subscription_id, month, list_price_fen,
                amount_fen, basis, occurred_at
         FROM charge_events WHERE partner_id = $1 AND month = $2 AND id > $3 ORDER BY id LIMIT $4",
    )
    .bind(partner_id)
    .bind(month.to_string())
    .bind(after_id)
    .bind(limit.clamp(1, 1001))
    .fetch_all(store.pool())
    .await
    .map_err(store_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_month_follows_the_activation_rule() {
        let m: Month = "2026-08".parse().unwrap();
        // 20 August 2026, 10:00 in Shanghai: 12 of 31 days left.
        let at = m.start_ms() + 19 * 86_400_000 + 10 * 3_600_000;
        assert_eq!(monthly_amount(1000, at, m, ActivationRule::Full).0, 1000);
        assert_eq!(
            monthly_amount(1000, at, m, ActivationRule::FreeFirstMonth).0,
            0
        );
        // 1000 × 12 / 31 = 387.09… → 387
        assert_eq!(
            monthly_amount(1000, at, m, ActivationRule::ProRata),
            (387, "pro-rata 12/31 days".to_string())
        );
        assert_eq!(
            monthly_amount(1000, at, m.plus(1), ActivationRule::ProRata).0,
            1000
        );
    }
}
