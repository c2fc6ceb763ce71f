//! The module registry: upload with validation, versions identified by
//! partner and described name, activation of one version, rollback to the previous
//! one, and faults recorded against partner and version.
//!
//! The first version of a module is activated on upload; later versions wait for an
//! explicit activation, so an upload never changes what is live.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::partners::Partner;
use crate::runtime::limits::CallErrorBody;
use crate::runtime::{
    BulletinContent, BulletinRequest, CallError, CallOutcome, LoadedModule, MoMessage,
    ModuleDescription, PartnerScope, Runtime, SubscriptionChange, ValidationError, bindings,
};
use crate::store::{Store, StoreError, now_ms};

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("module rejected: {0}")]
    Invalid(#[from] ValidationError),
    #[error("no module `{0}`")]
    NotFound(String),
    #[error("module `{module}` has no version {version}")]
    NoSuchVersion { module: String, version: i64 },
    #[error("module `{0}` has no active version")]
    NoActiveVersion(String),
    #[error("module `{0}` has no earlier version to roll back to")]
    NothingToRollBack(String),
    #[error("version {version} of `{module}` is already active")]
    AlreadyActive { module: String, version: i64 },
    #[error("the call failed: {0}")]
    Call(CallError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for RegistryError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

/// One stored version of a module.
#[derive(Debug, Clone, Serialize)]
pub struct VersionInfo {
    pub number: i64,
    pub label: String,
    pub description: String,
    pub services: Vec<String>,
    pub wit_version: String,
    pub sha256: String,
    pub size_bytes: i64,
    pub uploaded_at: i64,
    pub active: bool,
    pub fault_count: i64,
}

/// A module with its versions and fault figures.
#[derive(Debug, Clone, Serialize)]
pub struct ModuleInfo {
    pub name: String,
    pub partner: String,
    pub active_version: Option<i64>,
    pub versions: Vec<VersionInfo>,
    pub fault_count: i64,
    pub last_fault: Option<Fault>,
    pub created_at: i64,
}

/// A fault recorded against a module version.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Fault {
    pub id: i64,
    pub version: i64,
    pub export: String,
    pub kind: String,
    pub message: String,
    pub at: i64,
}

/// What an upload did.
#[derive(Debug, Clone, Serialize)]
pub struct Uploaded {
    pub module: String,
    pub version: i64,
    /// False when the same bytes were already stored as this version.
    pub created: bool,
    pub activated: bool,
    pub sha256: String,
    pub description: ModuleDescription,
}

#[derive(sqlx::FromRow)]
struct ModuleRow {
    id: i64,
    name: String,
    active_version_id: Option<i64>,
    created_at: i64,
}

#[derive(sqlx::FromRow)]
struct VersionRow {
    id: i64,
    seq: i64,
    label: String,
    description: String,
    services: String,
    wit_version: String,
    sha256: String,
    size_bytes: i64,
    uploaded_at: i64,
}

const VERSION_COLUMNS: &str =
    "id, seq, label, description, services, wit_version, sha256, size_bytes, uploaded_at";

/// The registry: stored modules plus the loaded (compiled, linked) versions.
pub struct Registry {
    store: Store,
    runtime: Arc<Runtime>,
    loaded: Mutex<HashMap<i64, Arc<LoadedModule>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

impl Registry {
    pub fn new(store: Store, runtime: Arc<Runtime>) -> Self {
        Self {
            store,
            runtime,
            loaded: Mutex::new(HashMap::new()),
        }
    }

    /// The runtime calls run on.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Validate and store an uploaded component for `partner`.
    pub async fn upload(
        &self,
        partner: &Partner,
        wasm: &[u8],
        actor: &str,
    ) -> Result<Uploaded, RegistryError> {
        let (loaded, description) = self.runtime.validate(wasm).await?;
        let mut tx = self.store.begin_write().await?;
        let now = now_ms();
        sqlx::query(
            "INSERT INTO modules (partner_id, name, created_at, updated_at) VALUES ($1, $2, $3, $3)
             ON CONFLICT (partner_id, name) DO NOTHING",
        )
        .bind(partner.id)
        .bind(&description.name)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        // Touching the row takes its lock on both backends, so concurrent uploads of
        // one module get distinct version numbers.
        let module: ModuleRow = sqlx::query_as(
            "UPDATE modules SET updated_at = $3 WHERE partner_id = $1 AND name = $2
             RETURNING id, name, active_version_id, created_at",
        )
        .bind(partner.id)
        .bind(&description.name)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let existing: Option<(i64,)> =
            sqlx::query_as("SELECT seq FROM module_versions WHERE module_id = $1 AND sha256 = $2")
                .bind(module.id)
                .bind(&loaded.sha256)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some((seq,)) = existing {
            tx.rollback().await?;
            return Ok(Uploaded {
                module: module.name,
                version: seq,
                created: false,
                activated: false,
                sha256: loaded.sha256.clone(),
                description,
            });
        }
        let (next,): (i64,) = sqlx::query_as(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM module_versions WHERE module_id = $1",
        )
        .bind(module.id)
        .fetch_one(&mut *tx)
        .await?;
        let services = serde_json::to_string(&description.services).unwrap_or_else(|_| "[]".into());
        let (version_id,): (i64,) = sqlx::query_as(
            "INSERT INTO module_versions
             (module_id, seq, label, description, services, wit_version, sha256, size_bytes, wasm, uploaded_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
        )
        .bind(module.id)
        .bind(next)
        .bind(&description.version)
        .bind(&description.description)
        .bind(services)
        .bind(bindings::LATEST_WIT_VERSION)
        .bind(&loaded.sha256)
        .bind(i64::try_from(wasm.len()).unwrap_or(i64::MAX))
        .bind(wasm)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let activated = module.active_version_id.is_none();
        if activated {
            set_active(&mut tx, module.id, version_id, None, "activate", actor).await?;
        }
        tx.commit().await?;
        self.remember(version_id, loaded.clone());
        Ok(Uploaded {
            module: module.name,
            version: next,
            created: true,
            activated,
            sha256: loaded.sha256.clone(),
            description,
        })
    }

    /// Every module of `partner`.
    pub async fn list(&self, partner: &Partner) -> Result<Vec<ModuleInfo>, RegistryError> {
        let rows: Vec<ModuleRow> = sqlx::query_as(
            "SELECT id, name, active_version_id, created_at FROM modules WHERE partner_id = $1 ORDER BY name",
        )
        .bind(partner.id)
        .fetch_all(self.store.pool())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(self.info(partner, row).await?);
        }
        Ok(out)
    }

    /// One module of `partner`, with versions and fault figures.
    pub async fn get(&self, partner: &Partner, name: &str) -> Result<ModuleInfo, RegistryError> {
        let row = self.module_row(partner, name).await?;
        self.info(partner, row).await
    }

    /// Make version `number` the active one.
    pub async fn activate(
        &self,
        partner: &Partner,
        name: &str,
        number: i64,
        actor: &str,
    ) -> Result<ModuleInfo, RegistryError> {
        let row = self.module_row(partner, name).await?;
        let mut tx = self.store.begin_write().await?;
        let current = lock_module(&mut tx, row.id).await?;
        let version: Option<(i64,)> =
            sqlx::query_as("SELECT id FROM module_versions WHERE module_id = $1 AND seq = $2")
                .bind(row.id)
                .bind(number)
                .fetch_optional(&mut *tx)
                .await?;
        let (version_id,) = version.ok_or_else(|| RegistryError::NoSuchVersion {
            module: name.to_string(),
            version: number,
        })?;
        if current == Some(version_id) {
            return Err(RegistryError::AlreadyActive {
                module: name.to_string(),
                version: number,
            });
        }
        set_active(&mut tx, row.id, version_id, current, "activate", actor).await?;
        tx.commit().await?;
        self.get(partner, name).await
    }

    /// Go back to the version that was active before the current one.
    pub async fn rollback(
        &self,
        partner: &Partner,
        name: &str,
        actor: &str,
    ) -> Result<ModuleInfo, RegistryError> {
        let row = self.module_row(partner, name).await?;
        let mut tx = self.store.begin_write().await?;
        let current = lock_module(&mut tx, row.id).await?;
        let latest: Option<(i64, Option<i64>)> = sqlx::query_as(
            "SELECT id, previous_version_id FROM module_activations WHERE module_id = $1 ORDER BY id DESC LIMIT 1",
        )
        .bind(row.id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((latest_id, Some(target))) = latest else {
            return Err(RegistryError::NothingToRollBack(name.to_string()));
        };
        // What was active before `target` became active: a second rollback goes one
        // step further back.
        let before_target: Option<(Option<i64>,)> = sqlx::query_as(
            "SELECT previous_version_id FROM module_activations
             WHERE module_id = $1 AND version_id = $2 AND id < $3 ORDER BY id DESC LIMIT 1",
        )
        .bind(row.id)
        .bind(target)
        .bind(latest_id)
        .fetch_optional(&mut *tx)
        .await?;
        let previous = before_target.and_then(|(p,)| p);
        set_active(&mut tx, row.id, target, previous, "rollback", actor).await?;
        debug_assert_ne!(current, Some(target));
        tx.commit().await?;
        self.get(partner, name).await
    }

    /// The most recent faults of a module, newest first.
    pub async fn faults(
        &self,
        partner: &Partner,
        name: &str,
        limit: i64,
    ) -> Result<Vec<Fault>, RegistryError> {
        let row = self.module_row(partner, name).await?;
        Ok(sqlx::query_as(
            "SELECT f.id, v.seq AS version, f.export, f.kind, f.message, f.at
             FROM module_faults f JOIN module_versions v ON v.id = f.version_id
             WHERE f.module_id = $1 ORDER BY f.id DESC LIMIT $2",
        )
        .bind(row.id)
        .bind(limit.clamp(1, 1000))
        .fetch_all(self.store.pool())
        .await?)
    }

    /// Call `bulletin` on the active version of `name`, recording a fault on failure.
    pub async fn bulletin(
        &self,
        partner: &Partner,
        name: &str,
        request: &BulletinRequest,
    ) -> Result<CallOutcome<BulletinContent>, RegistryError> {
        let active = self.active(partner, name).await?;
        let outcome = self
            .runtime
            .bulletin(&active.loaded, self.scope(partner), request)
            .await;
        self.record_outcome(partner, &active, "bulletin", &outcome)
            .await?;
        Ok(outcome)
    }

    /// Call `on-mo` on the active version of `name`, recording a fault on failure.
    pub async fn on_mo(
        &self,
        partner: &Partner,
        name: &str,
        message: &MoMessage,
    ) -> Result<CallOutcome<Option<String>>, RegistryError> {
        let active = self.active(partner, name).await?;
        let outcome = self
            .runtime
            .on_mo(&active.loaded, self.scope(partner), message)
            .await;
        self.record_outcome(partner, &active, "on-mo", &outcome)
            .await?;
        Ok(outcome)
    }

    /// Call `on-subscribe` / `on-unsubscribe` on the active version of `name`.
    pub async fn on_subscription(
        &self,
        partner: &Partner,
        name: &str,
        change: &SubscriptionChange,
    ) -> Result<CallOutcome<Option<String>>, RegistryError> {
        let active = self.active(partner, name).await?;
        let outcome = self
            .runtime
            .on_subscription(&active.loaded, self.scope(partner), change)
            .await;
        let export = if change.joined {
            "on-subscribe"
        } else {
            "on-unsubscribe"
        };
        self.record_outcome(partner, &active, export, &outcome)
            .await?;
        Ok(outcome)
    }

    /// The id of the active version of `name` (violations name the version).
    pub async fn active_version_id(
        &self,
        partner: &Partner,
        name: &str,
    ) -> Result<i64, RegistryError> {
        self.module_row(partner, name)
            .await?
            .active_version_id
            .ok_or_else(|| RegistryError::NoActiveVersion(name.to_string()))
    }

    fn scope(&self, partner: &Partner) -> PartnerScope {
        PartnerScope {
            store: self.store.clone(),
            partner_id: partner.id,
        }
    }

    async fn record_outcome<T>(
        &self,
        partner: &Partner,
        active: &ActiveVersion,
        export: &str,
        outcome: &CallOutcome<T>,
    ) -> Result<(), RegistryError> {
        for line in &outcome.logs {
            tracing::info!(partner = %partner.name, module_version = active.version_id, export, level = line.level, "module log: {}", line.message);
        }
        let Err(error) = &outcome.result else {
            return Ok(());
        };
        if !error.is_module_fault() {
            tracing::warn!(partner = %partner.name, export, %error, "module call could not run");
            return Ok(());
        }
        let body = CallErrorBody::from(error);
        tracing::warn!(partner = %partner.name, module_version = active.version_id, export, kind = body.kind, "module fault: {}", body.message);
        sqlx::query(
            "INSERT INTO module_faults (partner_id, module_id, version_id, export, kind, message, at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(partner.id)
        .bind(active.module_id)
        .bind(active.version_id)
        .bind(export)
        .bind(body.kind)
        .bind(&body.message)
        .bind(now_ms())
        .execute(self.store.pool())
        .await?;
        Ok(())
    }

    /// The active version of `name`, compiled and linked (cached by version id).
    async fn active(&self, partner: &Partner, name: &str) -> Result<ActiveVersion, RegistryError> {
        let row = self.module_row(partner, name).await?;
        let version_id = row
            .active_version_id
            .ok_or_else(|| RegistryError::NoActiveVersion(name.to_string()))?;
        if let Some(loaded) = self.cached(version_id) {
            return Ok(ActiveVersion {
                module_id: row.id,
                version_id,
                loaded,
            });
        }
        let (wasm,): (Vec<u8>,) = sqlx::query_as("SELECT wasm FROM module_versions WHERE id = $1")
            .bind(version_id)
            .fetch_one(self.store.pool())
            .await?;
        let runtime = self.runtime.clone();
        // Compiling takes milliseconds to seconds: keep it off the async workers.
        let loaded = tokio::task::spawn_blocking(move || runtime.load(&wasm))
            .await
            .map_err(|e| RegistryError::Call(CallError::Unavailable(e.to_string())))??;
        self.remember(version_id, loaded.clone());
        Ok(ActiveVersion {
            module_id: row.id,
            version_id,
            loaded,
        })
    }

    fn cached(&self, version_id: i64) -> Option<Arc<LoadedModule>> {
        self.loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&version_id)
            .cloned()
    }

    fn remember(&self, version_id: i64, loaded: Arc<LoadedModule>) {
        self.loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(version_id, loaded);
    }

    async fn module_row(&self, partner: &Partner, name: &str) -> Result<ModuleRow, RegistryError> {
        sqlx::query_as("SELECT id, name, active_version_id, created_at FROM modules WHERE partner_id = $1 AND name = $2")
            .bind(partner.id)
            .bind(name)
            .fetch_optional(self.store.pool())
            .await?
            .ok_or_else(|| RegistryError::NotFound(name.to_string()))
    }

    async fn info(&self, partner: &Partner, row: ModuleRow) -> Result<ModuleInfo, RegistryError> {
        let versions: Vec<VersionRow> = sqlx::query_as(&format!(
            "SELECT {VERSION_COLUMNS} FROM module_versions WHERE module_id = $1 ORDER BY seq"
        ))
        .bind(row.id)
        .fetch_all(self.store.pool())
        .await?;
        let counts: Vec<(i64, i64)> =
            sqlx::query_as("SELECT version_id, COUNT(*) FROM module_faults WHERE module_id = $1 GROUP BY version_id")
                .bind(row.id)
                .fetch_all(self.store.pool())
                .await?;
        let counts: HashMap<i64, i64> = counts.into_iter().collect();
        let last_fault: Option<Fault> = sqlx::query_as(
            "SELECT f.id, v.seq AS version, f.export, f.kind, f.message, f.at
             FROM module_faults f JOIN module_versions v ON v.id = f.version_id
             WHERE f.module_id = $1 ORDER BY f.id DESC LIMIT 1",
        )
        .bind(row.id)
        .fetch_optional(self.store.pool())
        .await?;
        let active_version = versions
            .iter()
            .find(|v| Some(v.id) == row.active_version_id)
            .map(|v| v.seq);
        let versions: Vec<VersionInfo> = versions
            .into_iter()
            .map(|v| VersionInfo {
                number: v.seq,
                active: Some(v.id) == row.active_version_id,
                fault_count: counts.get(&v.id).copied().unwrap_or(0),
                label: v.label,
                description: v.description,
                services: serde_json::from_str(&v.services).unwrap_or_default(),
                wit_version: v.wit_version,
                sha256: v.sha256,
                size_bytes: v.size_bytes,
                uploaded_at: v.uploaded_at,
            })
            .collect();
        Ok(ModuleInfo {
            name: row.name,
            partner: partner.name.clone(),
            active_version,
            fault_count: counts.values().sum(),
            versions,
            last_fault,
            created_at: row.created_at,
        })
    }
}

struct ActiveVersion {
    module_id: i64,
    version_id: i64,
    loaded: Arc<LoadedModule>,
}

/// Take the module row's lock (both backends) and read the active version.
async fn lock_module(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    module_id: i64,
) -> Result<Option<i64>, RegistryError> {
    let (active,): (Option<i64>,) = sqlx::query_as(
        "UPDATE modules SET updated_at = $2 WHERE id = $1 RETURNING active_version_id",
    )
    .bind(module_id)
    .bind(now_ms())
    .fetch_one(&mut **tx)
    .await?;
    Ok(active)
}

async fn set_active(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    module_id: i64,
    version_id: i64,
    previous: Option<i64>,
    action: &str,
    actor: &str,
) -> Result<(), RegistryError> {
    sqlx::query(
        "INSERT INTO module_activations (module_id, version_id, previous_version_id, action, actor, at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(module_id)
    .bind(version_id)
    .bind(previous)
    .bind(action)
    .bind(actor)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE modules SET active_version_id = $2 WHERE id = $1")
        .bind(module_id)
        .bind(version_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
