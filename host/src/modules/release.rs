//! Releasing a version gradually (issue 17 items 3 and 4, R-8.1, R-8.2): a
//! **shadow** candidate runs beside the active version on real pushes and MOs
//! (see [`super::shadow`]); a **canary** is live for a percentage of the
//! subscribers, then promoted (it becomes the active version) or rolled back.
//!
//! The canary's cohort is stable and computable by anyone from the subscription
//! id: the rule of [`crate::subscriptions::cohort`] (`bucket(id) < percent`).
//!
//! Calls with a subscription (an MO, a welcome, a farewell) run the canary for its
//! cohort; a push calls `bulletin` once on each version and the fan-out gives each
//! subscription the text of its version. Every MT records the version that wrote
//! it (`messages.module_version_id`, `module_sha256`).

use serde::Serialize;
use utoipa::ToSchema;

use super::{
    ModuleInfo, Registry, RegistryError, active, lock_module, set_active, shadow::ShadowCall,
};
use crate::partners::Partner;
use crate::runtime::{
    BulletinContent, BulletinRequest, CallOutcome, MoMessage, SubscriptionChange,
};
use crate::store::now_ms;

pub use crate::subscriptions::cohort::{bucket as cohort_bucket, cohort_sql, in_cohort};

/// A module's canary, as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CanaryInfo {
    /// The version number live for the cohort.
    pub version: i64,
    /// The share of subscribers in the cohort, 1‥99 (see [`in_cohort`]).
    pub percent: i64,
    /// When the canary started (RFC 3339).
    #[serde(serialize_with = "crate::api::time::ms")]
    #[schema(value_type = String)]
    pub since: i64,
}

/// The bulletins of one push run: the active version's and, under a canary, the
/// canary's (see [`Registry::push_bulletin`]).
#[derive(Debug)]
pub struct PushBulletin {
    pub active: CallOutcome<BulletinContent>,
    pub canary: Option<CanaryBulletin>,
}

/// The canary's bulletin of a push run.
#[derive(Debug)]
pub struct CanaryBulletin {
    /// `module_versions.id` of the canary.
    pub version_id: i64,
    pub percent: u32,
    pub outcome: CallOutcome<BulletinContent>,
}

impl Registry {
    /// The version a call for `subscription` runs: the canary for its cohort,
    /// else the active one.
    fn version_for(row: &active::Active, subscription: Option<i64>) -> Option<i64> {
        match (row.canary, subscription) {
            (Some((canary, percent)), Some(id)) if in_cohort(id, percent) => Some(canary),
            _ => row.version_id,
        }
    }

    /// `bulletin` for a push run: the active version's, and the canary's
    /// when the module has one; the candidate of a shadow runs beside (never
    /// awaited). A failed canary call is recorded as its fault and the run goes
    /// on with the active version's text for everyone.
    ///
    /// # Errors
    /// Those of [`Registry::bulletin`].
    pub async fn push_bulletin(
        &self,
        partner: &Partner,
        name: &str,
        request: &BulletinRequest,
    ) -> Result<PushBulletin, RegistryError> {
        let row = self.active_row(partner, name).await?;
        let active = self.active(partner, name).await?;
        let started = std::time::Instant::now();
        let mut outcome = self
            .runtime
            .bulletin(&active.loaded, self.scope(partner), request)
            .await;
        outcome.version_id = Some(active.version_id);
        self.record_outcome(
            partner,
            &active,
            (name, "bulletin", started.elapsed()),
            request,
            &mut outcome,
        )
        .await?;
        self.shadow_after(
            partner,
            &row,
            active.version_id,
            &outcome,
            ShadowCall::Bulletin(request.clone()),
        );
        let canary = match row.canary {
            Some((version_id, percent)) if Some(version_id) != row.version_id => {
                match self.load(version_id).await {
                    Ok(loaded) => {
                        let canary = super::ActiveVersion {
                            module_id: row.module_id,
                            version_id,
                            loaded,
                        };
                        let started = std::time::Instant::now();
                        let mut outcome = self
                            .runtime
                            .bulletin(&canary.loaded, self.scope(partner), request)
                            .await;
                        outcome.version_id = Some(version_id);
                        self.record_outcome(
                            partner,
                            &canary,
                            (name, "bulletin", started.elapsed()),
                            request,
                            &mut outcome,
                        )
                        .await?;
                        Some(CanaryBulletin {
                            version_id,
                            percent,
                            outcome,
                        })
                    }
                    // The canary cannot run: its cohort gets the active version.
                    Err(e) => {
                        tracing::warn!(partner = %partner.name, module = name, error = %e, "the canary could not be loaded");
                        None
                    }
                }
            }
            _ => None,
        };
        Ok(PushBulletin {
            active: outcome,
            canary,
        })
    }

    /// `on-mo` for a user's MO on subscription `subscription` (the keyword
    /// router): the canary for its cohort, else the active version; a shadow
    /// candidate runs beside, never awaited.
    ///
    /// # Errors
    /// Those of [`Registry::on_mo`].
    pub async fn on_mo_for(
        &self,
        partner: &Partner,
        name: &str,
        message: &MoMessage,
        subscription: i64,
    ) -> Result<CallOutcome<Option<String>>, RegistryError> {
        let row = self.active_row(partner, name).await?;
        let version = self.live_version(name, &row, Some(subscription)).await?;
        let started = std::time::Instant::now();
        let mut outcome = self
            .runtime
            .on_mo(&version.loaded, self.scope(partner), message)
            .await;
        outcome.version_id = Some(version.version_id);
        self.record_outcome(
            partner,
            &version,
            (name, "on-mo", started.elapsed()),
            message,
            &mut outcome,
        )
        .await?;
        self.shadow_after(
            partner,
            &row,
            version.version_id,
            &outcome,
            ShadowCall::Mo(message.clone()),
        );
        Ok(outcome)
    }

    /// `on-subscribe` / `on-unsubscribe` for subscription `subscription`: the
    /// canary for its cohort, else the active version; a shadow runs beside.
    ///
    /// # Errors
    /// Those of [`Registry::on_subscription`].
    pub async fn on_subscription_for(
        &self,
        partner: &Partner,
        name: &str,
        change: &SubscriptionChange,
        subscription: i64,
    ) -> Result<CallOutcome<Option<String>>, RegistryError> {
        let row = self.active_row(partner, name).await?;
        let version = self.live_version(name, &row, Some(subscription)).await?;
        let started = std::time::Instant::now();
        let mut outcome = self
            .runtime
            .on_subscription(&version.loaded, self.scope(partner), change)
            .await;
        outcome.version_id = Some(version.version_id);
        let export = change.export();
        self.record_outcome(
            partner,
            &version,
            (name, export, started.elapsed()),
            change,
            &mut outcome,
        )
        .await?;
        self.shadow_after(
            partner,
            &row,
            version.version_id,
            &outcome,
            ShadowCall::Subscription(change.clone()),
        );
        Ok(outcome)
    }

    /// The version a live call for `subscription` runs, loaded.
    async fn live_version(
        &self,
        name: &str,
        row: &active::Active,
        subscription: Option<i64>,
    ) -> Result<super::ActiveVersion, RegistryError> {
        let version_id = Self::version_for(row, subscription)
            .ok_or_else(|| RegistryError::NoActiveVersion(name.to_string()))?;
        let loaded = match self.load(version_id).await {
            Ok(loaded) => loaded,
            // A canary that cannot be loaded: its cohort gets the active version.
            Err(e) if Some(version_id) != row.version_id => {
                tracing::warn!(module = name, error = %e, "the canary could not be loaded");
                let active = row
                    .version_id
                    .ok_or_else(|| RegistryError::NoActiveVersion(name.to_string()))?;
                return Ok(super::ActiveVersion {
                    module_id: row.module_id,
                    version_id: active,
                    loaded: self.load(active).await?,
                });
            }
            Err(e) => return Err(e),
        };
        Ok(super::ActiveVersion {
            module_id: row.module_id,
            version_id,
            loaded,
        })
    }

    /// The id of version `number` of module `module_id`, if stored whole.
    async fn stored_version(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        (module_id, name): (i64, &str),
        number: i64,
    ) -> Result<(i64, Option<i64>), RegistryError> {
        let found: Option<(i64, Option<i64>, Option<i64>)> = sqlx::query_as(
            "SELECT id, pruned_at, admission_passed FROM module_versions WHERE module_id = $1 AND seq = $2",
        )
        .bind(module_id)
        .bind(number)
        .fetch_optional(&mut **tx)
        .await?;
        let (id, pruned_at, passed) = found.ok_or_else(|| RegistryError::NoSuchVersion {
            module: name.to_string(),
            version: number,
        })?;
        if pruned_at.is_some() {
            return Err(RegistryError::VersionPruned {
                module: name.to_string(),
                version: number,
            });
        }
        Ok((id, passed))
    }

    /// Run version `number` as the shadow of `name`: beside the active version on
    /// every real push and MO from now on, its output recorded and diffed, never
    /// sent (issue 17 item 3). A version that failed admission may run as a
    /// shadow: nothing it writes leaves.
    ///
    /// # Errors
    /// [`RegistryError::NotFound`], [`RegistryError::NoSuchVersion`],
    /// [`RegistryError::VersionPruned`], [`RegistryError::AlreadyActive`] (the
    /// active version cannot shadow itself).
    pub async fn set_shadow(
        &self,
        partner: &Partner,
        name: &str,
        number: i64,
    ) -> Result<ModuleInfo, RegistryError> {
        let row = self.module_row(partner, name).await?;
        let mut tx = self.store.begin_write().await?;
        let current = lock_module(&mut tx, row.id).await?;
        let (version_id, _) = self.stored_version(&mut tx, (row.id, name), number).await?;
        if current == Some(version_id) {
            return Err(RegistryError::AlreadyActive {
                module: name.to_string(),
                version: number,
            });
        }
        sqlx::query("UPDATE modules SET shadow_version_id = $2 WHERE id = $1")
            .bind(row.id)
            .bind(version_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.active.forget(partner.id, name);
        self.get(partner, name).await
    }

    /// Stop the shadow runs of `name` (the runs recorded stay readable).
    ///
    /// # Errors
    /// [`RegistryError::NotFound`], [`RegistryError::NoShadow`].
    pub async fn stop_shadow(
        &self,
        partner: &Partner,
        name: &str,
    ) -> Result<ModuleInfo, RegistryError> {
        let row = self.module_row(partner, name).await?;
        let done = sqlx::query(
            "UPDATE modules SET shadow_version_id = NULL WHERE id = $1 AND shadow_version_id IS NOT NULL",
        )
        .bind(row.id)
        .execute(self.store.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(RegistryError::NoShadow(name.to_string()));
        }
        self.active.forget(partner.id, name);
        self.get(partner, name).await
    }

    /// Make version `number` live for `percent` (1‥99) percent of the
    /// subscribers, the cohort of [`in_cohort`]; the same version again changes
    /// the percentage (issue 17 item 4).
    ///
    /// # Errors
    /// [`RegistryError::NotFound`], [`RegistryError::NoSuchVersion`],
    /// [`RegistryError::VersionPruned`], [`RegistryError::AlreadyActive`],
    /// [`RegistryError::AdmissionFailed`] (it would send),
    /// [`RegistryError::CanaryRunning`] (another version is the canary),
    /// [`RegistryError::CanaryNeedsApproval`] (the partner's activations wait
    /// for the admin).
    pub async fn start_canary(
        &self,
        partner: &Partner,
        name: &str,
        number: i64,
        percent: u32,
    ) -> Result<ModuleInfo, RegistryError> {
        let row = self.module_row(partner, name).await?;
        let mut tx = self.store.begin_write().await?;
        let current = lock_module(&mut tx, row.id).await?;
        if super::approval::required(&mut tx, partner.id).await? {
            return Err(RegistryError::CanaryNeedsApproval(name.to_string()));
        }
        let (version_id, passed) = self.stored_version(&mut tx, (row.id, name), number).await?;
        if current == Some(version_id) {
            return Err(RegistryError::AlreadyActive {
                module: name.to_string(),
                version: number,
            });
        }
        if current.is_none() {
            return Err(RegistryError::NoActiveVersion(name.to_string()));
        }
        if !self.admitted(passed) {
            return Err(RegistryError::AdmissionFailed {
                module: name.to_string(),
                version: number,
            });
        }
        let (running,): (Option<i64>,) =
            sqlx::query_as("SELECT canary_version_id FROM modules WHERE id = $1")
                .bind(row.id)
                .fetch_one(&mut *tx)
                .await?;
        if let Some(other) = running.filter(|v| *v != version_id) {
            let (seq,): (i64,) = sqlx::query_as("SELECT seq FROM module_versions WHERE id = $1")
                .bind(other)
                .fetch_one(&mut *tx)
                .await?;
            return Err(RegistryError::CanaryRunning {
                module: name.to_string(),
                version: seq,
            });
        }
        sqlx::query(
            "UPDATE modules SET canary_version_id = $2, canary_percent = $3,
                canary_since = CASE WHEN canary_version_id = $2 THEN canary_since ELSE $4 END
             WHERE id = $1",
        )
        .bind(row.id)
        .bind(version_id)
        .bind(i64::from(percent))
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.active.forget(partner.id, name);
        self.get(partner, name).await
    }

    /// Make the canary the active version for everyone (it ends the canary).
    ///
    /// # Errors
    /// [`RegistryError::NotFound`], [`RegistryError::NoCanary`], and those of an
    /// activation for the version now (pruned, failed admission).
    pub async fn promote_canary(
        &self,
        partner: &Partner,
        name: &str,
        actor: &str,
    ) -> Result<ModuleInfo, RegistryError> {
        let row = self.module_row(partner, name).await?;
        let mut tx = self.store.begin_write().await?;
        let current = lock_module(&mut tx, row.id).await?;
        let (canary,): (Option<i64>,) =
            sqlx::query_as("SELECT canary_version_id FROM modules WHERE id = $1")
                .bind(row.id)
                .fetch_one(&mut *tx)
                .await?;
        let canary = canary.ok_or_else(|| RegistryError::NoCanary(name.to_string()))?;
        let (seq,): (i64,) = sqlx::query_as("SELECT seq FROM module_versions WHERE id = $1")
            .bind(canary)
            .fetch_one(&mut *tx)
            .await?;
        let version_id = self
            .activatable(&mut tx, (row.id, name), seq, current)
            .await?;
        // `set_active` ends the canary of the version it makes live.
        set_active(&mut tx, row.id, version_id, current, "promote", actor).await?;
        tx.commit().await?;
        self.active.forget(partner.id, name);
        self.get(partner, name).await
    }

    /// Roll the canary back: everyone gets the active version again.
    ///
    /// # Errors
    /// [`RegistryError::NotFound`], [`RegistryError::NoCanary`].
    pub async fn stop_canary(
        &self,
        partner: &Partner,
        name: &str,
    ) -> Result<ModuleInfo, RegistryError> {
        let row = self.module_row(partner, name).await?;
        let mut tx = self.store.begin_write().await?;
        lock_module(&mut tx, row.id).await?;
        if !end_canary_in(&mut tx, row.id).await? {
            return Err(RegistryError::NoCanary(name.to_string()));
        }
        tx.commit().await?;
        self.active.forget(partner.id, name);
        self.get(partner, name).await
    }
}

/// End the canary of module `module_id` in `tx`; false if it had none.
pub(super) async fn end_canary_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    module_id: i64,
) -> Result<bool, RegistryError> {
    let done = sqlx::query(
        "UPDATE modules SET canary_version_id = NULL, canary_percent = NULL, canary_since = NULL
         WHERE id = $1 AND canary_version_id IS NOT NULL",
    )
    .bind(module_id)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() > 0)
}
