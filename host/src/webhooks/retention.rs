//! History retention for the partner event feed: deliveries and
//! events older than the retention window go, a small batch per statement. Only
//! this module and its siblings write `partner_events` and `webhook_deliveries`.
//!
//! A delivery goes once it was created before the cutoff and is no longer
//! `pending` (a pending one is still being sent: it stays, and so does its
//! event). An event goes once it happened (`at`) before the cutoff and no
//! delivery refers to it any more. A partner's inbox cursor stays valid: ids only
//! grow, so `after=` an id that is gone simply starts at the next one kept.

use crate::store::{Store, StoreError};

/// Delete at most `batch` deliveries created before `cutoff_ms` (Unix ms) that
/// are not pending; returns how many went.
///
/// # Errors
/// A store failure.
pub async fn purge_deliveries_batch(
    store: &Store,
    cutoff_ms: i64,
    batch: i64,
) -> Result<u64, StoreError> {
    store
        .delete_batch(
            "webhook_deliveries",
            "id",
            "created_at < $1 AND status <> 'pending'",
            cutoff_ms,
            batch,
        )
        .await
}

/// Delete at most `batch` events that happened before `cutoff_ms` (Unix ms) and
/// that no delivery refers to; returns how many went. Run after
/// [`purge_deliveries_batch`] has drained.
///
/// # Errors
/// A store failure.
pub async fn purge_events_batch(
    store: &Store,
    cutoff_ms: i64,
    batch: i64,
) -> Result<u64, StoreError> {
    store
        .delete_batch(
            "partner_events",
            "id",
            "at < $1 AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = partner_events.id)",
            cutoff_ms,
            batch,
        )
        .await
}
