//! Automatic rollback (issue 17 item 5, R-8.2, R-3.1): a version whose fault
//! rate, policy-violation rate or complaint rate crosses the `[modules]
//! rollback_*` thresholds is taken off the air, and the partner is told with the
//! evidence.
//!
//! Every `rollback_interval_ms` the watcher looks at the versions under watch: a
//! running canary (as long as it runs) and an active version for
//! `rollback_watch_secs` after it went live. Per version, counted since then:
//!
//! | rate | numerator | denominator | counts once the denominator reaches |
//! |---|---|---|---|
//! | fault | calls that faulted (trap, limits, timeouts) | calls | `rollback_min_calls` |
//! | policy violation | texts the content policy refused (`violations` of kind `policy` naming the version) | calls | `rollback_min_calls` |
//! | complaint | complaints about MTs the version wrote | MTs it wrote | `rollback_min_mts` |
//!
//! A rate above its threshold (per thousand) rolls the version back: a canary
//! ends (everyone gets the active version again); an active version gives way to
//! the version active before it (the last good one), as `POST …/rollback` would,
//! with the actor `platform (automatic rollback)`. In the same transaction the
//! rollback is recorded in `module_rollbacks` and a `module.rollback` event with
//! the evidence (the rate, its threshold, every count, the window) is appended
//! to the partner's feed, which its inbox and webhooks carry. An active version
//! with no earlier version to return to is left live (nothing is better known).
//!
//! Calls and faults are counted in memory per version and minute as calls end
//! ([`CallCounts`], nothing on the hot path touches the store) and added to
//! `module_call_counts` at the start of each round, so replicas add up; a window
//! starts at the minute its version went live.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use serde_json::json;

use super::{Registry, RegistryError, lock_module, release, rollback_in};
use crate::store::now_ms;
use crate::webhooks::{self, NewEvent};

/// The actor of an automatic rollback.
pub const ACTOR: &str = "platform (automatic rollback)";

const MINUTE_MS: i64 = 60_000;

/// Calls and faults per (version, minute), not yet added to the store.
#[derive(Debug, Default)]
pub(super) struct CallCounts(Mutex<HashMap<(i64, i64), (i64, i64)>>);

impl CallCounts {
    /// Count one call of `version_id` ending at `at` (Unix ms).
    pub(super) fn add(&self, version_id: i64, fault: bool, at: i64) {
        let minute = at - at.rem_euclid(MINUTE_MS);
        let mut counts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = counts.entry((version_id, minute)).or_default();
        entry.0 += 1;
        entry.1 += i64::from(fault);
    }

    fn take(&self) -> HashMap<(i64, i64), (i64, i64)> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Put counts back that could not be stored.
    fn restore(&self, counts: HashMap<(i64, i64), (i64, i64)>) {
        let mut held = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        for (key, (calls, faults)) in counts {
            let entry = held.entry(key).or_default();
            entry.0 += calls;
            entry.1 += faults;
        }
    }
}

/// The figures of one version over its window (the evidence of a rollback).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Figures {
    pub calls: i64,
    pub faults: i64,
    pub fault_permille: i64,
    pub violations: i64,
    pub violation_permille: i64,
    pub mts: i64,
    pub complaints: i64,
    pub complaint_permille: i64,
}

/// A rollback the watcher made.
#[derive(Debug, Clone, Serialize)]
pub struct RolledBack {
    pub partner_id: i64,
    pub module: String,
    /// `canary` or `active`.
    pub phase: &'static str,
    /// `fault-rate`, `violation-rate`, `complaint-rate`.
    pub rule: &'static str,
    pub from_version: i64,
    /// The version everyone gets now.
    pub to_version: Option<i64>,
    /// The evidence sent to the partner (`module.rollback` event's `data`).
    pub evidence: serde_json::Value,
}

#[derive(sqlx::FromRow)]
struct Watched {
    id: i64,
    partner_id: i64,
    name: String,
    active_version_id: Option<i64>,
    active_since: Option<i64>,
    canary_version_id: Option<i64>,
    canary_since: Option<i64>,
}

/// Per thousand, rounded down (0 for no sample).
fn permille(part: i64, whole: i64) -> i64 {
    if whole <= 0 {
        0
    } else {
        part.saturating_mul(1000) / whole
    }
}

/// Start the watcher (`[modules] rollback_interval_ms`; 0: none).
pub fn spawn(registry: Arc<Registry>) -> Option<tokio::task::JoinHandle<()>> {
    let interval = registry.config.rollback_interval_ms;
    if interval == 0 {
        return None;
    }
    Some(tokio::spawn(async move {
        let every = std::time::Duration::from_millis(interval);
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = registry.watch_once().await {
                tracing::error!(error = %e, "automatic rollback round failed");
            }
        }
    }))
}

impl Registry {
    /// Add the calls counted in memory to `module_call_counts`.
    async fn flush_counts(&self) -> Result<(), RegistryError> {
        let counts = self.counts.take();
        if counts.is_empty() {
            return Ok(());
        }
        let stored = async {
            let mut tx = self.store.begin_write().await?;
            for ((version_id, minute), (calls, faults)) in &counts {
                sqlx::query(
                    "INSERT INTO module_call_counts (version_id, minute_start, calls, faults)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (version_id, minute_start) DO UPDATE
                     SET calls = module_call_counts.calls + excluded.calls,
                         faults = module_call_counts.faults + excluded.faults",
                )
                .bind(version_id)
                .bind(minute)
                .bind(calls)
                .bind(faults)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok::<(), RegistryError>(())
        }
        .await;
        if stored.is_err() {
            self.counts.restore(counts);
        }
        stored
    }

    /// Version `version_id`'s figures since `since` (Unix ms).
    pub async fn figures(&self, version_id: i64, since: i64) -> Result<Figures, RegistryError> {
        let pool = self.store.pool();
        let minute = since - since.rem_euclid(MINUTE_MS);
        let (calls, faults): (i64, i64) = sqlx::query_as(
            "SELECT CAST(COALESCE(SUM(calls), 0) AS BIGINT), CAST(COALESCE(SUM(faults), 0) AS BIGINT)
             FROM module_call_counts
             WHERE version_id = $1 AND minute_start >= $2",
        )
        .bind(version_id)
        .bind(minute)
        .fetch_one(pool)
        .await?;
        let (violations,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM violations WHERE module_version_id = $1 AND kind = 'policy' AND at >= $2",
        )
        .bind(version_id)
        .bind(since)
        .fetch_one(pool)
        .await?;
        let (mts,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM messages WHERE module_version_id = $1 AND created_at >= $2",
        )
        .bind(version_id)
        .bind(since)
        .fetch_one(pool)
        .await?;
        let (complaints,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM complaints c JOIN messages m ON m.id = c.message_id
             WHERE m.module_version_id = $1 AND m.created_at >= $2",
        )
        .bind(version_id)
        .bind(since)
        .fetch_one(pool)
        .await?;
        Ok(Figures {
            calls,
            faults,
            fault_permille: permille(faults, calls),
            violations,
            violation_permille: permille(violations, calls),
            mts,
            complaints,
            complaint_permille: permille(complaints, mts),
        })
    }

    /// The first rule `figures` break, with its threshold (per thousand).
    fn broken(&self, f: &Figures) -> Option<(&'static str, u32)> {
        let c = &self.config;
        let enough_calls = u64::try_from(f.calls).unwrap_or(0) >= c.rollback_min_calls;
        let enough_mts = u64::try_from(f.mts).unwrap_or(0) >= c.rollback_min_mts;
        if enough_calls && f.fault_permille > i64::from(c.rollback_max_fault_permille) {
            return Some(("fault-rate", c.rollback_max_fault_permille));
        }
        if enough_calls && f.violation_permille > i64::from(c.rollback_max_violation_permille) {
            return Some(("violation-rate", c.rollback_max_violation_permille));
        }
        if enough_mts && f.complaint_permille > i64::from(c.rollback_max_complaint_permille) {
            return Some(("complaint-rate", c.rollback_max_complaint_permille));
        }
        None
    }

    /// One round of the watcher (see the module docs): returns what it rolled back.
    ///
    /// # Errors
    /// Store failures.
    pub async fn watch_once(&self) -> Result<Vec<RolledBack>, RegistryError> {
        self.flush_counts().await?;
        let now = now_ms();
        let watch_ms =
            i64::try_from(self.config.rollback_watch_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let watched: Vec<Watched> = sqlx::query_as(
            "SELECT id, partner_id, name, active_version_id, active_since, canary_version_id, canary_since
             FROM modules
             WHERE canary_version_id IS NOT NULL
                OR (active_version_id IS NOT NULL AND active_since >= $1)
             ORDER BY id",
        )
        .bind(now.saturating_sub(watch_ms))
        .fetch_all(self.store.pool())
        .await?;
        let mut done = Vec::new();
        for m in watched {
            if let (Some(canary), Some(since)) = (m.canary_version_id, m.canary_since) {
                let figures = self.figures(canary, since).await?;
                if let Some(rule) = self.broken(&figures) {
                    if let Some(r) = self
                        .roll_back(&m, ("canary", canary, since), rule, &figures)
                        .await?
                    {
                        done.push(r);
                    }
                    continue;
                }
            }
            if let (Some(active), Some(since)) = (m.active_version_id, m.active_since)
                && since >= now.saturating_sub(watch_ms)
            {
                let figures = self.figures(active, since).await?;
                if let Some(rule) = self.broken(&figures)
                    && let Some(r) = self
                        .roll_back(&m, ("active", active, since), rule, &figures)
                        .await?
                {
                    done.push(r);
                }
            }
        }
        Ok(done)
    }

    /// Roll `version_id` of `m` back (if the module is still as read), record it
    /// and tell the partner, in one transaction.
    async fn roll_back(
        &self,
        m: &Watched,
        (phase, version_id, since): (&'static str, i64, i64),
        (rule, threshold): (&'static str, u32),
        figures: &Figures,
    ) -> Result<Option<RolledBack>, RegistryError> {
        let mut tx = self.store.begin_write().await?;
        let current = lock_module(&mut tx, m.id).await?;
        let (canary,): (Option<i64>,) =
            sqlx::query_as("SELECT canary_version_id FROM modules WHERE id = $1")
                .bind(m.id)
                .fetch_one(&mut *tx)
                .await?;
        let (from_seq,): (i64,) = sqlx::query_as("SELECT seq FROM module_versions WHERE id = $1")
            .bind(version_id)
            .fetch_one(&mut *tx)
            .await?;
        let to = match phase {
            "canary" => {
                if canary != Some(version_id) {
                    return Ok(None);
                }
                release::end_canary_in(&mut tx, m.id).await?;
                match current {
                    Some(id) => {
                        let (seq,): (i64,) =
                            sqlx::query_as("SELECT seq FROM module_versions WHERE id = $1")
                                .bind(id)
                                .fetch_one(&mut *tx)
                                .await?;
                        Some((id, seq))
                    }
                    None => None,
                }
            }
            _ => {
                if current != Some(version_id) {
                    return Ok(None);
                }
                match rollback_in(&mut tx, (m.id, &m.name), current, ("rollback", ACTOR)).await {
                    Ok(target) => Some(target),
                    // Nothing earlier (or it was pruned): the version stays live.
                    Err(
                        RegistryError::NothingToRollBack(_) | RegistryError::VersionPruned { .. },
                    ) => {
                        return Ok(None);
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        let now = now_ms();
        let evidence = json!({
            "module": m.name,
            "phase": phase,
            "from_version": from_seq,
            "to_version": to.map(|(_, seq)| seq),
            "rule": rule,
            "threshold_permille": threshold,
            "min_calls": self.config.rollback_min_calls,
            "min_mts": self.config.rollback_min_mts,
            "window": {
                "from": crate::api::time::format(since),
                "to": crate::api::time::format(now),
                "secs": (now - since) / 1000,
            },
            "figures": figures,
            "actor": ACTOR,
        });
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO module_rollbacks (partner_id, module_id, from_version_id, to_version_id,
                phase, rule, evidence, at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(m.partner_id)
        .bind(m.id)
        .bind(version_id)
        .bind(to.map(|(id, _)| id))
        .bind(phase)
        .bind(rule)
        .bind(evidence.to_string())
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        webhooks::lock_feed(&mut tx).await?;
        webhooks::append_in(
            &mut tx,
            &[NewEvent {
                partner_id: Some(m.partner_id),
                kind: "module.rollback",
                source_key: format!("rollback:{id}"),
                data: evidence.clone(),
                at: now,
            }],
        )
        .await?;
        tx.commit().await?;
        self.active.forget(m.partner_id, &m.name);
        tracing::warn!(partner = m.partner_id, module = %m.name, phase, rule, from_version = from_seq, "version rolled back automatically");
        Ok(Some(RolledBack {
            partner_id: m.partner_id,
            module: m.name.clone(),
            phase,
            rule,
            from_version: from_seq,
            to_version: to.map(|(_, seq)| seq),
            evidence,
        }))
    }
}
