//! What one partner may keep in the registry: an upload rate,
//! a number of stored versions and a number of stored bytes, and the retention
//! rule that prunes old versions (keep the newest `keep_versions` of a module, the
//! active one, the shadow and canary versions, the one a rollback would return to,
//! and every version that wrote a stored message: a push run or a violation names
//! it). A pruned version keeps its
//! row and history, not its bytes or its compiled code.

use serde::{Deserialize, Serialize};

use super::RegistryError;
use crate::store::Store;

/// Registry settings (`[modules]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// Newest versions of each module kept whole; older ones are pruned unless
    /// active, the rollback target, or named by a push run or violation.
    pub keep_versions: u32,
    /// Stored (not pruned) versions one partner may have across its modules.
    pub max_versions: u32,
    /// Bytes of stored versions one partner may have.
    pub max_stored_bytes: u64,
    /// Uploads one partner may attempt per hour (0: no limit).
    pub uploads_per_hour: u32,
    /// Compiled versions kept in memory, least recently called evicted first.
    pub loaded_versions: usize,
    /// Length of a fault-counting window, in seconds.
    pub fault_window_secs: u64,
    /// Faults kept whole per version, export, kind and window.
    pub fault_samples: u32,
    /// Days fault windows and samples are kept.
    pub fault_retention_days: u64,
    /// How long a call trusts the active version it read, in milliseconds, before
    /// reading it again: the longest another replica's activation or rollback goes
    /// unseen here (this process's own are seen by the next call). 0: every call
    /// reads it from the store.
    pub active_recheck_ms: u64,
    /// `enforce`: a version that fails admission cannot be activated; `report`:
    /// the report is made and stored but never blocks (issue 17 item 1).
    pub admission: super::admission::AdmissionMode,
    /// Calls of the admission corpus that may write a text the content policy
    /// refuses, per thousand calls (0: none may).
    pub admission_max_violation_permille: u32,
    /// Calls of the corpus that may fault (trap, limit), per thousand (0: none).
    pub admission_max_fault_permille: u32,
    /// CPU time the longest corpus call may use, in milliseconds (the sandbox's
    /// `[runtime] call_timeout_ms` still ends a call at its own limit).
    pub admission_max_cpu_ms: u64,
    /// Shadow runs (issue 17 item 3) running at once in this process; a shadow
    /// run that finds none free is skipped (counted), never queued behind the
    /// active path.
    pub shadow_concurrency: u32,
    /// Shadow runs kept per module (older ones are deleted).
    pub shadow_keep: u32,
    /// Automatic rollback (issue 17 item 5): how often the watcher looks, in ms
    /// (0: never; no automatic rollback).
    pub rollback_interval_ms: u64,
    /// How long after its activation an active version is watched, in seconds (a
    /// canary is watched as long as it runs).
    pub rollback_watch_secs: u64,
    /// Faulting calls per thousand calls that roll a version back.
    pub rollback_max_fault_permille: u32,
    /// Texts refused by the content policy per thousand calls that roll a
    /// version back.
    pub rollback_max_violation_permille: u32,
    /// Complaints per thousand MTs the version wrote that roll it back.
    pub rollback_max_complaint_permille: u32,
    /// Calls a version must have made before its fault and violation rates count.
    pub rollback_min_calls: u64,
    /// MTs a version must have written before its complaint rate counts.
    pub rollback_min_mts: u64,
    /// Calls kept for replay by sampling, per thousand (issue 17 item 7): on top
    /// of every call that wrote a text, which is kept for `complaint_window_days`.
    pub record_permille: u32,
    /// Days the recording of a call that wrote a text is kept, so a complaint
    /// about its MT can be replayed; a complaint keeps it longer.
    pub complaint_window_days: u64,
    /// Days a sampled recording is kept.
    pub record_retention_days: u64,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            keep_versions: 5,
            max_versions: 50,
            max_stored_bytes: 256 * 1024 * 1024,
            uploads_per_hour: 60,
            loaded_versions: 32,
            fault_window_secs: 3600,
            fault_samples: 5,
            fault_retention_days: 30,
            active_recheck_ms: 1000,
            admission: super::admission::AdmissionMode::Enforce,
            admission_max_violation_permille: 0,
            admission_max_fault_permille: 0,
            admission_max_cpu_ms: 50,
            shadow_concurrency: 2,
            shadow_keep: 1000,
            rollback_interval_ms: 5000,
            rollback_watch_secs: 86_400,
            rollback_max_fault_permille: 50,
            rollback_max_violation_permille: 20,
            rollback_max_complaint_permille: 10,
            rollback_min_calls: 100,
            rollback_min_mts: 200,
            record_permille: 10,
            complaint_window_days: 30,
            record_retention_days: 90,
        }
    }
}

impl RegistryConfig {
    /// The local runner's registry: one partner trying modules on a laptop, so no
    /// upload rate and admission only reported; everything else as on the platform.
    pub fn local() -> Self {
        Self {
            uploads_per_hour: 0,
            // A module tried locally runs whatever its report says; the report is
            // still made (`module check` shows it).
            admission: super::admission::AdmissionMode::Report,
            // No platform watches the local runner's versions.
            rollback_interval_ms: 0,
            ..Self::default()
        }
    }

    /// The first key whose value cannot work, with why.
    pub fn invalid(&self) -> Option<(&'static str, &'static str)> {
        if self.keep_versions == 0 {
            return Some(("modules.keep_versions", "must be at least 1"));
        }
        if self.max_versions < self.keep_versions {
            return Some(("modules.max_versions", "must be at least keep_versions"));
        }
        if self.loaded_versions == 0 {
            return Some(("modules.loaded_versions", "must be at least 1"));
        }
        if self.fault_window_secs == 0 {
            return Some(("modules.fault_window_secs", "must be greater than 0"));
        }
        if self.rollback_max_violation_permille > 1000
            || self.rollback_max_fault_permille > 1000
            || self.rollback_max_complaint_permille > 1000
        {
            return Some((
                "modules.rollback_max_violation_permille",
                "rollback rates are per thousand: at most 1000",
            ));
        }
        if self.record_permille > 1000 {
            return Some((
                "modules.record_permille",
                "a share per thousand: at most 1000",
            ));
        }
        if self.admission_max_violation_permille > 1000 || self.admission_max_fault_permille > 1000
        {
            return Some((
                "modules.admission_max_violation_permille",
                "shares are per thousand: at most 1000",
            ));
        }
        None
    }
}

const HOUR_MS: i64 = 3_600_000;

/// Count an upload attempt, refusing it when the partner is over its rate.
pub(super) async fn count_upload(
    store: &Store,
    config: &RegistryConfig,
    partner_id: i64,
    bytes: usize,
    now: i64,
) -> Result<(), RegistryError> {
    if config.uploads_per_hour == 0 {
        return Ok(());
    }
    let mut tx = store.begin_write().await?;
    sqlx::query("DELETE FROM module_uploads WHERE partner_id = $1 AND at <= $2")
        .bind(partner_id)
        .bind(now - HOUR_MS)
        .execute(&mut *tx)
        .await?;
    let (recent, oldest): (i64, Option<i64>) =
        sqlx::query_as("SELECT COUNT(*), MIN(at) FROM module_uploads WHERE partner_id = $1")
            .bind(partner_id)
            .fetch_one(&mut *tx)
            .await?;
    if recent >= i64::from(config.uploads_per_hour) {
        tx.rollback().await?;
        let retry_after_secs = oldest.map_or(0, |o| (o + HOUR_MS - now).max(0) / 1000 + 1);
        return Err(RegistryError::UploadRate {
            limit: config.uploads_per_hour,
            retry_after_secs,
        });
    }
    sqlx::query("INSERT INTO module_uploads (partner_id, bytes, at) VALUES ($1, $2, $3)")
        .bind(partner_id)
        .bind(i64::try_from(bytes).unwrap_or(i64::MAX))
        .bind(now)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Prune what the retention rule lets go in `module_id`; returns the SHA-256 of
/// each version pruned (their compiled code may go too).
pub(super) async fn prune(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    config: &RegistryConfig,
    module_id: i64,
    now: i64,
) -> Result<Vec<String>, RegistryError> {
    let doomed: Vec<(i64, String)> = sqlx::query_as(
        "SELECT v.id, v.sha256 FROM module_versions v
         WHERE v.module_id = $1 AND v.pruned_at IS NULL
           AND v.seq <= (SELECT MAX(seq) FROM module_versions WHERE module_id = $1) - $2
           AND v.id <> COALESCE((SELECT active_version_id FROM modules WHERE id = $1), -1)
           AND v.id <> COALESCE((SELECT shadow_version_id FROM modules WHERE id = $1), -1)
           AND v.id <> COALESCE((SELECT canary_version_id FROM modules WHERE id = $1), -1)
           AND v.id NOT IN (SELECT COALESCE(a.previous_version_id, -1) FROM module_activations a
                            WHERE a.module_id = $1 ORDER BY a.id DESC LIMIT 1)
           AND NOT EXISTS (SELECT 1 FROM push_runs r WHERE r.module_version_id = v.id)
           AND NOT EXISTS (SELECT 1 FROM violations x WHERE x.module_version_id = v.id)",
    )
    .bind(module_id)
    .bind(i64::from(config.keep_versions))
    .fetch_all(&mut **tx)
    .await?;
    for (id, _) in &doomed {
        sqlx::query("UPDATE module_versions SET wasm = $2, pruned_at = $3 WHERE id = $1")
            .bind(id)
            .bind(Vec::<u8>::new())
            .bind(now)
            .execute(&mut **tx)
            .await?;
    }
    Ok(doomed.into_iter().map(|(_, sha)| sha).collect())
}

/// Refuse the upload being stored in `tx` when the partner would keep more
/// versions or bytes than allowed (after pruning).
pub(super) async fn check_stored(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    config: &RegistryConfig,
    partner_id: i64,
) -> Result<(), RegistryError> {
    let (versions, bytes): (i64, Option<i64>) = sqlx::query_as(
        "SELECT COUNT(*), CAST(SUM(v.size_bytes) AS BIGINT) FROM module_versions v
         JOIN modules m ON m.id = v.module_id
         WHERE m.partner_id = $1 AND v.pruned_at IS NULL",
    )
    .bind(partner_id)
    .fetch_one(&mut **tx)
    .await?;
    if versions > i64::from(config.max_versions) {
        return Err(RegistryError::VersionQuota {
            limit: config.max_versions,
        });
    }
    let bytes = u64::try_from(bytes.unwrap_or(0)).unwrap_or(0);
    if bytes > config.max_stored_bytes {
        return Err(RegistryError::StorageQuota {
            limit: config.max_stored_bytes,
            would_be: bytes,
        });
    }
    Ok(())
}

/// Whether any stored version still has these bytes (another module or partner
/// may have uploaded the same component).
pub(super) async fn bytes_still_stored(store: &Store, sha256: &str) -> Result<bool, RegistryError> {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM module_versions WHERE sha256 = $1 AND pruned_at IS NULL",
    )
    .bind(sha256)
    .fetch_one(store.pool())
    .await?;
    Ok(n > 0)
}
