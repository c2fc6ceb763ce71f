//! Subscriptions: one user's opt-in to one service, with double
//! confirmation for paid services (MIIT Order 31: price and how to stop are stated
//! before any charge; only the user's confirming reply starts billing).
//!
//! `pending` → (confirming reply within the window) → `active` → `cancelled`;
//! a pending one not confirmed in time becomes `expired`. Free services go straight
//! to `active`. Cancelling also withdraws every MT of that service still queued for
//! the user, so `TD` stops everything at once.

pub mod bulk;
pub mod cohort;

use serde::{Deserialize, Serialize};

use crate::services::{FeeType, LiveService};
use crate::store::{Store, StoreError, now_ms};

/// How the opt-in arrived (kept as consent evidence).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// The user sent the service's keyword.
    Mo,
    /// The partner's API call on the user's behalf.
    Api,
    /// A web sign-up relayed by the partner.
    Web,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mo => "mo",
            Self::Api => "api",
            Self::Web => "web",
        }
    }
}

/// A subscription as stored.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Subscription {
    pub id: i64,
    pub partner_id: i64,
    pub service_id: i64,
    pub subscriber_id: String,
    pub msisdn: String,
    pub status: String,
    pub source: String,
    pub fee_type: String,
    pub price_fen: i64,
    #[serde(serialize_with = "crate::api::time::ms")]
    pub requested_at: i64,
    #[serde(serialize_with = "crate::api::time::opt_ms")]
    pub confirm_by: Option<i64>,
    #[serde(serialize_with = "crate::api::time::opt_ms")]
    pub activated_at: Option<i64>,
    #[serde(serialize_with = "crate::api::time::opt_ms")]
    pub ended_at: Option<i64>,
    pub end_reason: Option<String>,
}

const COLUMNS: &str = "id, partner_id, service_id, subscriber_id, msisdn, status, source, fee_type, price_fen, requested_at, confirm_by, activated_at, ended_at, end_reason";

/// What a subscribe request led to.
#[derive(Debug, Clone)]
pub enum Requested {
    /// A free service: active now.
    Active(Subscription),
    /// A paid service: waits for the confirming reply. `confirmation_due`: the
    /// confirmation request is to be sent now (new, or the last one is older than
    /// the resend interval); otherwise one was sent recently and is not repeated.
    Pending {
        subscription: Subscription,
        confirmation_due: bool,
    },
    /// The user already holds this service.
    AlreadyActive(Subscription),
}

/// Find or create the partner's opaque subscriber id for a number (modules never
/// see numbers, only these ids).
pub async fn subscriber_id_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    partner_id: i64,
    msisdn: &str,
    now: i64,
) -> Result<String, StoreError> {
    let existing: Option<(String,)> =
        sqlx::query_as("SELECT id FROM subscribers WHERE partner_id = $1 AND msisdn = $2")
            .bind(partner_id)
            .bind(msisdn)
            .fetch_optional(&mut **tx)
            .await?;
    if let Some((id,)) = existing {
        return Ok(id);
    }
    let id = format!("sub_{}", &crate::partners::generate_secret("x")[5..25]);
    // A racing request may have created it meanwhile (PostgreSQL): then its id holds.
    sqlx::query(
        "INSERT INTO subscribers (id, partner_id, msisdn, created_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT DO NOTHING",
    )
    .bind(&id)
    .bind(partner_id)
    .bind(msisdn)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    let (id,): (String,) =
        sqlx::query_as("SELECT id FROM subscribers WHERE partner_id = $1 AND msisdn = $2")
            .bind(partner_id)
            .bind(msisdn)
            .fetch_one(&mut **tx)
            .await?;
    Ok(id)
}

/// Ask for a subscription of `msisdn` (already normalised) to `service`.
///
/// One open (pending or active) subscription per number and service, however many
/// requests race (a unique index; the loser reads the winner's row). A pending one
/// asked for again gets a fresh window and a new confirmation request only when the
/// last request is at least `resend_after_ms` old (issue 10 item 3): a partner
/// calling the API in a loop cannot make the platform text anyone repeatedly.
pub async fn request(
    store: &Store,
    service: &LiveService,
    msisdn: &str,
    source: Source,
    confirm_window_ms: i64,
    resend_after_ms: i64,
) -> Result<Requested, StoreError> {
    let now = now_ms();
    let mut tx = store.begin_write().await?;
    let paid = service.revision.fee_type.is_paid();
    let mut created: Option<Subscription> = None;
    if open_in(&mut tx, service.id, msisdn).await?.is_none() {
        let subscriber = subscriber_id_in(&mut tx, service.partner_id, msisdn, now).await?;
        created = sqlx::query_as(&format!(
            "INSERT INTO subscriptions (partner_id, service_id, subscriber_id, msisdn, status, source, fee_type,
                price_fen, requested_at, confirm_by, activated_at, confirm_sent_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT DO NOTHING RETURNING {COLUMNS}"
        ))
        .bind(service.partner_id)
        .bind(service.id)
        .bind(&subscriber)
        .bind(msisdn)
        .bind(if paid { "pending" } else { "active" })
        .bind(source.as_str())
        .bind(service.revision.fee_type.as_str())
        .bind(service.revision.price_fen)
        .bind(now)
        .bind(paid.then_some(now + confirm_window_ms))
        .bind((!paid).then_some(now))
        .bind(paid.then_some(now))
        .fetch_optional(&mut *tx)
        .await?;
    }
    if let Some(sub) = created.as_ref().filter(|s| s.status == "active") {
        change_in(&mut tx, sub, "activated", now).await?;
    }
    let requested = match created {
        Some(sub) if paid => Requested::Pending {
            subscription: sub,
            confirmation_due: true,
        },
        Some(sub) => Requested::Active(sub),
        // Open already (or created by a racing request meanwhile).
        None => {
            let open = open_in(&mut tx, service.id, msisdn)
                .await?
                .ok_or_else(|| StoreError::Corrupt("an open subscription vanished".into()))?;
            if open.status == "active" {
                Requested::AlreadyActive(open)
            } else {
                let refreshed: Option<Subscription> = sqlx::query_as(&format!(
                    "UPDATE subscriptions SET confirm_by = $1, confirm_sent_at = $2
                     WHERE id = $3 AND status = 'pending'
                       AND (confirm_sent_at IS NULL OR confirm_sent_at <= $4) RETURNING {COLUMNS}"
                ))
                .bind(now + confirm_window_ms)
                .bind(now)
                .bind(open.id)
                .bind(now - resend_after_ms)
                .fetch_optional(&mut *tx)
                .await?;
                match refreshed {
                    Some(sub) => Requested::Pending {
                        subscription: sub,
                        confirmation_due: true,
                    },
                    None => Requested::Pending {
                        subscription: open,
                        confirmation_due: false,
                    },
                }
            }
        }
    };
    tx.commit().await?;
    Ok(requested)
}

/// The open (pending or active) subscription of a number to a service.
async fn open_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    service_id: i64,
    msisdn: &str,
) -> Result<Option<Subscription>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM subscriptions WHERE service_id = $1 AND msisdn = $2 AND status IN ('pending', 'active')"
    ))
    .bind(service_id)
    .bind(msisdn)
    .fetch_optional(&mut **tx)
    .await?)
}

/// The confirmation request for a pending subscription could not be queued (e.g.
/// the number's daily notice cap): the next request may send it.
pub async fn confirmation_not_sent(store: &Store, subscription_id: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE subscriptions SET confirm_sent_at = NULL WHERE id = $1")
        .bind(subscription_id)
        .execute(store.pool())
        .await?;
    Ok(())
}

/// Pending subscriptions of a number still within their window, newest first.
pub async fn pending_for(store: &Store, msisdn: &str) -> Result<Vec<Subscription>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM subscriptions WHERE msisdn = $1 AND status = 'pending' AND confirm_by >= $2
         ORDER BY id DESC"
    ))
    .bind(msisdn)
    .bind(now_ms())
    .fetch_all(store.pool())
    .await?)
}

/// The user confirmed: activate with the terms in force now. `None` if it was no
/// longer pending (expired or cancelled meanwhile).
pub async fn confirm(
    store: &Store,
    subscription_id: i64,
    service: &LiveService,
) -> Result<Option<Subscription>, StoreError> {
    let now = now_ms();
    let mut tx = store.begin_write().await?;
    let activated: Option<Subscription> = sqlx::query_as(&format!(
        "UPDATE subscriptions SET status = 'active', activated_at = $1, confirm_by = NULL, fee_type = $2, price_fen = $3
         WHERE id = $4 AND status = 'pending' AND confirm_by >= $1 RETURNING {COLUMNS}"
    ))
    .bind(now)
    .bind(service.revision.fee_type.as_str())
    .bind(service.revision.price_fen)
    .bind(subscription_id)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(sub) = &activated {
        change_in(&mut tx, sub, "activated", now).await?;
    }
    tx.commit().await?;
    Ok(activated)
}

/// Append an activation or cancellation to `subscription_changes` in the
/// transaction of the change: the statistics roll-up counts new and cancelled
/// subscriptions from it.
async fn change_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    sub: &Subscription,
    kind: &str,
    at: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO subscription_changes (subscription_id, partner_id, service_id, msisdn, kind, at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(sub.id)
    .bind(sub.partner_id)
    .bind(sub.service_id)
    .bind(&sub.msisdn)
    .bind(kind)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Cancel subscriptions (active or pending) and withdraw their queued MTs. Returns
/// those actually cancelled.
pub async fn cancel(
    store: &Store,
    ids: &[i64],
    reason: &str,
) -> Result<Vec<Subscription>, StoreError> {
    let now = now_ms();
    let mut tx = store.begin_write().await?;
    let mut cancelled = Vec::new();
    for id in ids {
        let row: Option<Subscription> = sqlx::query_as(&format!(
            "UPDATE subscriptions SET status = 'cancelled', ended_at = $1, end_reason = $2
             WHERE id = $3 AND status IN ('pending', 'active') RETURNING {COLUMNS}"
        ))
        .bind(now)
        .bind(reason)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { continue };
        if row.activated_at.is_some() {
            change_in(&mut tx, &row, "cancelled", now).await?;
        }
        // Everything of that service still waiting for this user is withdrawn:
        // pushes and module replies alike (host notices have no service_id).
        crate::relay::outbox::withdraw_in(
            &mut tx,
            row.service_id,
            &row.msisdn,
            "the user unsubscribed",
            now,
        )
        .await?;
        cancelled.push(row);
    }
    tx.commit().await?;
    Ok(cancelled)
}

/// A number's active subscriptions with each service's code and name, oldest first
/// (the order of the `0000` menu).
pub async fn active_for_msisdn(
    store: &Store,
    msisdn: &str,
) -> Result<Vec<(Subscription, String, String)>, StoreError> {
    let rows: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT sub.id, s.code, r.name FROM subscriptions sub
         JOIN services s ON s.id = sub.service_id
         JOIN service_revisions r ON r.id = s.live_revision_id
         WHERE sub.msisdn = $1 AND sub.status = 'active' ORDER BY sub.id",
    )
    .bind(msisdn)
    .fetch_all(store.pool())
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for (id, code, name) in rows {
        if let Some(sub) = get(store, None, id).await? {
            out.push((sub, code, name));
        }
    }
    Ok(out)
}

/// Ids of a number's pending or active subscriptions (of one service, or all).
pub async fn open_ids(
    store: &Store,
    msisdn: &str,
    service_id: Option<i64>,
) -> Result<Vec<i64>, StoreError> {
    let rows: Vec<(i64,)> = sqlx::query_as(
        "SELECT id FROM subscriptions WHERE msisdn = $1 AND ($2 IS NULL OR service_id = $2)
         AND status IN ('pending', 'active') ORDER BY id",
    )
    .bind(msisdn)
    .bind(service_id)
    .fetch_all(store.pool())
    .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// The user's active subscription to a service.
pub async fn active(
    store: &Store,
    service_id: i64,
    msisdn: &str,
) -> Result<Option<Subscription>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM subscriptions WHERE service_id = $1 AND msisdn = $2 AND status = 'active'"
    ))
    .bind(service_id)
    .bind(msisdn)
    .fetch_optional(store.pool())
    .await?)
}

/// One subscription, as `partner_id` (None: the admin).
pub async fn get(
    store: &Store,
    partner_id: Option<i64>,
    id: i64,
) -> Result<Option<Subscription>, StoreError> {
    let row: Option<Subscription> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM subscriptions WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(store.pool())
    .await?;
    Ok(row.filter(|s| partner_id.is_none_or(|p| p == s.partner_id)))
}

/// A service's subscriptions, after `after_id`, optionally of one status.
pub async fn list(
    store: &Store,
    service_id: i64,
    status: Option<&str>,
    after_id: i64,
    limit: i64,
) -> Result<Vec<Subscription>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM subscriptions WHERE service_id = $1 AND ($2 IS NULL OR status = $2) AND id > $3
         ORDER BY id LIMIT $4"
    ))
    .bind(service_id)
    .bind(status)
    .bind(after_id)
    .bind(limit.clamp(1, 1000))
    .fetch_all(store.pool())
    .await?)
}

/// Active subscriptions at the end of each platform day (issue 14 item 3: the
/// console's subscriber chart, R-3.2): `days` as `relay::messages::last_days`
/// gives them (oldest first), one partner's (and optionally one service's), or
/// everyone's. A subscription counts from its activation until it ended.
///
/// # Errors
/// A store error.
pub async fn active_by_day(
    store: &Store,
    partner_id: Option<i64>,
    service_id: Option<i64>,
    days: &[String],
) -> Result<Vec<(String, i64)>, StoreError> {
    let Some(first) = days.first() else {
        return Ok(Vec::new());
    };
    let since = first
        .parse::<jiff::civil::Date>()
        .map(crate::clock::day_start_ms)
        .unwrap_or(0);
    let rows: Vec<(i64, Option<i64>)> = sqlx::query_as(
        "SELECT activated_at, ended_at FROM subscriptions
         WHERE activated_at IS NOT NULL AND (ended_at IS NULL OR ended_at >= $1)
           AND (CAST($2 AS BIGINT) = 0 OR partner_id = $3)
           AND (CAST($4 AS BIGINT) = 0 OR service_id = $5)",
    )
    .bind(since)
    .bind(i64::from(partner_id.is_some()))
    .bind(partner_id.unwrap_or(0))
    .bind(i64::from(service_id.is_some()))
    .bind(service_id.unwrap_or(0))
    .fetch_all(store.pool())
    .await?;
    Ok(days
        .iter()
        .map(|day| {
            let end = day
                .parse::<jiff::civil::Date>()
                .ok()
                .and_then(|d| d.tomorrow().ok())
                .map(crate::clock::day_start_ms)
                .unwrap_or(i64::MAX);
            let active = rows
                .iter()
                .filter(|(from, to)| *from < end && to.is_none_or(|t| t >= end))
                .count();
            (day.clone(), i64::try_from(active).unwrap_or(i64::MAX))
        })
        .collect())
}

/// Pending subscriptions past their window become `expired` (never billed).
pub async fn expire_pending(store: &Store) -> Result<u64, StoreError> {
    let now = now_ms();
    Ok(sqlx::query(
        "UPDATE subscriptions SET status = 'expired', ended_at = $1, end_reason = 'not confirmed in time'
         WHERE status = 'pending' AND confirm_by < $1",
    )
    .bind(now)
    .execute(store.pool())
    .await?
    .rows_affected())
}

/// The price as users read it: `2元/月`, `0.1元/条`, `免费`.
pub fn price_text(fee_type: FeeType, price_fen: i64) -> String {
    let yuan = if price_fen % 100 == 0 {
        format!("{}", price_fen / 100)
    } else if price_fen % 10 == 0 {
        format!("{}.{}", price_fen / 100, (price_fen % 100) / 10)
    } else {
        format!("{}.{:02}", price_fen / 100, price_fen % 100)
    };
    match fee_type {
        FeeType::Free => "免费".into(),
        FeeType::PerMessage => format!("{yuan}元/条"),
        FeeType::Monthly => format!("{yuan}元/月"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_read_in_yuan() {
        assert_eq!(price_text(FeeType::Monthly, 200), "2元/月");
        assert_eq!(price_text(FeeType::PerMessage, 10), "0.1元/条");
        assert_eq!(price_text(FeeType::PerMessage, 5), "0.05元/条");
        assert_eq!(price_text(FeeType::PerMessage, 150), "1.5元/条");
        assert_eq!(price_text(FeeType::Free, 0), "免费");
    }
}
