//! History retention for stored MOs: MOs received before the retention
//! window go, a small batch per transaction. The MOs a statement counts (those
//! routed to a partner's service) are added to `purged_traffic` in the same
//! transaction, so statements of purged months stay the same.

use crate::relay::outbox::retention::{PurgedCounts, add_purged_in};
use crate::store::{Store, StoreError};

/// Purge at most `batch` MOs received before `cutoff_ms` (Unix ms); returns how
/// many went (fewer than `batch`: nothing older is left). MOs still waiting for
/// the router (`received`, `routing`) stay.
///
/// # Errors
/// A store failure; the batch is then left whole.
pub async fn purge_mo_batch(store: &Store, cutoff_ms: i64, batch: i64) -> Result<u64, StoreError> {
    let mut tx = store.begin_write().await?;
    let rows: Vec<(i64, Option<i64>, String, i64)> = sqlx::query_as(
        "SELECT mo.id, s.partner_id, mo.operator, mo.received_at
         FROM mo_messages mo LEFT JOIN services s ON s.id = mo.service_id
         WHERE mo.received_at < $1 AND mo.status NOT IN ('received', 'routing')
         ORDER BY mo.received_at, mo.id LIMIT $2",
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
    for (_, partner, operator, received_at) in &rows {
        // Exactly what a statement counts (settlement::statement::load).
        if let Some(partner) = partner {
            *counts
                .entry((
                    *partner,
                    crate::clock::month_key(*received_at),
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
    let gone = sqlx::query(&format!("DELETE FROM mo_messages WHERE id IN ({ids})"))
        .execute(&mut *tx)
        .await?
        .rows_affected();
    add_purged_in(&mut tx, "mo", &counts).await?;
    tx.commit().await?;
    Ok(gone)
}
