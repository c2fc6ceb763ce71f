//! Module faults, bounded: every fault is counted per version,
//! export, kind and window (`module_fault_windows`), and only the first
//! `fault_samples` of each window are kept whole (`module_faults`). Windows older
//! than `fault_retention_days` are deleted when a new one opens. A module that
//! fails a million times an hour writes a handful of rows, not a million.

use serde::Serialize;

use super::{RegistryConfig, RegistryError};
use crate::store::Store;

/// A fault kept as a sample.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Fault {
    pub id: i64,
    pub version: i64,
    pub export: String,
    pub kind: String,
    pub message: String,
    #[serde(serialize_with = "crate::api::time::ms")]
    pub at: i64,
}

/// How often one kind of fault happened in one window.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct FaultWindow {
    pub version: i64,
    pub export: String,
    pub kind: String,
    /// Start of the window (RFC 3339 UTC); it lasts `[modules] fault_window_secs`.
    #[serde(serialize_with = "crate::api::time::ms")]
    pub window_start: i64,
    pub count: i64,
    #[serde(serialize_with = "crate::api::time::ms")]
    pub first_at: i64,
    #[serde(serialize_with = "crate::api::time::ms")]
    pub last_at: i64,
    pub last_message: String,
}

/// One fault to record.
pub(super) struct NewFault<'a> {
    pub partner_id: i64,
    pub module_id: i64,
    pub version_id: i64,
    pub export: &'a str,
    pub kind: &'a str,
    pub message: &'a str,
    pub at: i64,
}

/// Count a fault in its window and keep it as a sample while the window has
/// fewer than `fault_samples`.
pub(super) async fn record(
    store: &Store,
    config: &RegistryConfig,
    fault: &NewFault<'_>,
) -> Result<(), RegistryError> {
    let window_ms = i64::try_from(config.fault_window_secs.saturating_mul(1000))
        .unwrap_or(i64::MAX)
        .max(1);
    let window_start = fault.at - fault.at.rem_euclid(window_ms);
    let mut tx = store.begin_write().await?;
    let (count,): (i64,) = sqlx::query_as(
        "INSERT INTO module_fault_windows (partner_id, module_id, version_id, export, kind,
            window_start, count, first_at, last_at, last_message)
         VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $7, $8)
         ON CONFLICT (version_id, export, kind, window_start) DO UPDATE
            SET count = module_fault_windows.count + 1, last_at = excluded.last_at,
                last_message = excluded.last_message
         RETURNING count",
    )
    .bind(fault.partner_id)
    .bind(fault.module_id)
    .bind(fault.version_id)
    .bind(fault.export)
    .bind(fault.kind)
    .bind(window_start)
    .bind(fault.at)
    .bind(fault.message)
    .fetch_one(&mut *tx)
    .await?;
    if count <= i64::from(config.fault_samples) {
        sqlx::query(
            "INSERT INTO module_faults (partner_id, module_id, version_id, export, kind, message, at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(fault.partner_id)
        .bind(fault.module_id)
        .bind(fault.version_id)
        .bind(fault.export)
        .bind(fault.kind)
        .bind(fault.message)
        .bind(fault.at)
        .execute(&mut *tx)
        .await?;
    }
    if count == 1 {
        // A new window: the module's windows and samples past retention go.
        let retention_ms = i64::try_from(config.fault_retention_days.saturating_mul(86_400_000))
            .unwrap_or(i64::MAX);
        let cutoff = fault.at.saturating_sub(retention_ms);
        sqlx::query("DELETE FROM module_fault_windows WHERE module_id = $1 AND last_at < $2")
            .bind(fault.module_id)
            .bind(cutoff)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM module_faults WHERE module_id = $1 AND at < $2")
            .bind(fault.module_id)
            .bind(cutoff)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The most recent samples of a module, newest first.
pub(super) async fn samples(
    store: &Store,
    module_id: i64,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<Fault>, RegistryError> {
    Ok(sqlx::query_as(
        "SELECT f.id, v.seq AS version, f.export, f.kind, f.message, f.at
         FROM module_faults f JOIN module_versions v ON v.id = f.version_id
         WHERE f.module_id = $1 AND f.id < $3 ORDER BY f.id DESC LIMIT $2",
    )
    .bind(module_id)
    .bind(limit.clamp(1, 1000))
    .bind(before.unwrap_or(i64::MAX))
    .fetch_all(store.pool())
    .await?)
}

/// A module's fault windows, newest first.
pub(super) async fn windows(
    store: &Store,
    module_id: i64,
    limit: i64,
) -> Result<Vec<FaultWindow>, RegistryError> {
    Ok(sqlx::query_as(
        "SELECT v.seq AS version, w.export, w.kind, w.window_start, w.count, w.first_at,
            w.last_at, w.last_message
         FROM module_fault_windows w JOIN module_versions v ON v.id = w.version_id
         WHERE w.module_id = $1 ORDER BY w.window_start DESC, w.kind, w.export LIMIT $2",
    )
    .bind(module_id)
    .bind(limit.clamp(1, 1000))
    .fetch_all(store.pool())
    .await?)
}

/// Faults per version id (every fault counted, not only samples).
pub(super) async fn counts(
    store: &Store,
    module_id: i64,
) -> Result<std::collections::HashMap<i64, i64>, RegistryError> {
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT version_id, CAST(SUM(count) AS BIGINT) FROM module_fault_windows
         WHERE module_id = $1 GROUP BY version_id",
    )
    .bind(module_id)
    .fetch_all(store.pool())
    .await?;
    Ok(rows.into_iter().collect())
}

/// The newest sample of a module.
pub(super) async fn last(store: &Store, module_id: i64) -> Result<Option<Fault>, RegistryError> {
    Ok(samples(store, module_id, None, 1).await?.into_iter().next())
}
