//! History retention for the outbox's tables: MTs older than the
//! retention window go, a small batch per transaction. Only the outbox writes
//! `messages`, `message_segments` and `message_events`, so their purge lives here.
//!
//! What settlement still needs stays: a delivered paid per-message MT that has no
//! charge event yet is never purged, and the delivered MTs a statement counts are
//! added to `purged_traffic` (per partner, platform month and operator) in the
//! transaction that deletes them, so a statement of a purged month is the same.

use std::collections::BTreeMap;

use crate::store::{Store, StoreError};

/// Counts of purged rows a statement reads: (partner id, `YYYY-MM`, operator) → n.
pub type PurgedCounts = BTreeMap<(i64, String, String), i64>;

/// Add `counts` of `kind` (`mt-delivered` or `mo`) to `purged_traffic` inside `tx`.
///
/// # Errors
/// A store failure.
pub async fn add_purged_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    kind: &str,
    counts: &PurgedCounts,
) -> Result<(), StoreError> {
    for ((partner_id, month, operator), n) in counts {
        sqlx::query(
            "INSERT INTO purged_traffic (partner_id, month, operator, kind, count)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (partner_id, month, operator, kind)
             DO UPDATE SET count = purged_traffic.count + excluded.count",
        )
        .bind(partner_id)
        .bind(month)
        .bind(operator)
        .bind(kind)
        .bind(n)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// `(id, partner, operator, status, is_test, done_at)` of an MT about to go.
type Doomed = (i64, Option<i64>, String, String, i64, Option<i64>);

/// Purge at most `batch` MTs created before `cutoff_ms` (Unix ms) with their
/// segments and events, in one short transaction; returns how many went (fewer
/// than `batch`: nothing older is left).
///
/// # Errors
/// A store failure; the batch is then left whole.
pub async fn purge_mt_batch(store: &Store, cutoff_ms: i64, batch: i64) -> Result<u64, StoreError> {
    let mut tx = store.begin_write().await?;
    let rows: Vec<Doomed> = sqlx::query_as(
        "SELECT m.id, m.partner_id, m.operator, m.status, m.is_test, m.done_at FROM messages m
         WHERE m.created_at < $1
           AND NOT (m.status = 'delivered' AND m.charge_plan = 'per-message' AND m.price_fen > 0
                    AND m.is_test = 0 AND m.partner_id IS NOT NULL
                    AND NOT EXISTS (SELECT 1 FROM charge_events e WHERE e.message_id = m.id))
         ORDER BY m.created_at, m.id LIMIT $2",
    )
    .bind(cutoff_ms)
    .bind(batch.max(1))
    .fetch_all(&mut *tx)
    .await?;
    if rows.is_empty() {
        tx.commit().await?;
        return Ok(0);
    }
    let mut counts = PurgedCounts::new();
    for (_, partner, operator, status, is_test, done_at) in &rows {
        // Exactly what a statement counts (settlement::statement::load).
        if let (Some(partner), Some(done_at), "delivered", 0) =
            (partner, done_at, status.as_str(), is_test)
        {
            *counts
                .entry((
                    *partner,
                    crate::clock::month_key(*done_at),
                    operator.clone(),
                ))
                .or_default() += 1;
        }
    }
    // Integers from the store: safe to write into the statement.
    let ids = rows
        .iter()
        .map(|r| r.0.to_string())
        .collect::<Vec<_>>()
        .join(",");
    for table in ["message_events", "message_segments"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE message_id IN ({ids})"))
            .execute(&mut *tx)
            .await?;
    }
    let gone = sqlx::query(&format!("DELETE FROM messages WHERE id IN ({ids})"))
        .execute(&mut *tx)
        .await?
        .rows_affected();
    add_purged_in(&mut tx, "mt-delivered", &counts).await?;
    tx.commit().await?;
    Ok(gone)
}
