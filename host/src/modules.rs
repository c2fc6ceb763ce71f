//! The module registry: upload with validation, versions identified by
//! partner and described name, activation of one version, rollback to the previous
//! one, and faults recorded against partner and version.
//!
//! The first version of a module is activated on upload; later versions wait for an
//! explicit activation, so an upload never changes what is live.
//!
//! - [`quota`]: upload rate, stored versions and bytes per partner, retention.
//! - [`faults`]: faults counted per window, a few kept as samples.
//! - `loaded`: compiled versions in memory, least recently called evicted.
//! - `active`: which version of each module is active, kept in memory and
//!   dropped on activation, rollback and first upload.
//! - [`admission`]: the conformance corpus every upload runs before it may be
//!   activated (issue 17 item 1).
//! - [`approval`]: activations waiting for the admin, for partners who need it.
//! - [`release`]: shadow candidates and canaries, started, promoted and rolled
//!   back (issue 17 items 3 and 4); the cohort rule ([`release::in_cohort`]).
//! - [`shadow`]: a candidate run beside the active version on real calls, its
//!   output recorded and diffed, never sent (issue 17 item 3).
//! - [`watch`]: calls and faults counted per version, and the automatic rollback
//!   of a version whose rates cross `[modules] rollback_*` (issue 17 item 5).
//! - [`recordings`]: live calls recorded for replay (issue 17 item 7).

mod active;
pub mod admission;
pub mod approval;
mod faults;
mod loaded;
pub mod quota;
pub mod recordings;
pub mod release;
pub mod shadow;
pub mod watch;

use std::sync::Arc;

use serde::Serialize;

pub use admission::{AdmissionMode, AdmissionReport};
pub use approval::{Activation, ActivationRequest};
pub use faults::{Fault, FaultWindow};
pub use quota::RegistryConfig;
pub use recordings::{Difference, RecordedCall, ReplayReport};
pub use release::{CanaryInfo, PushBulletin, in_cohort};
pub use shadow::ShadowRun;
pub use watch::RolledBack;

use crate::compliance::{Compliance, ComplianceConfig};
use crate::partners::Partner;
use crate::runtime::limits::CallErrorBody;
use crate::runtime::{
    BulletinContent, BulletinRequest, CallError, CallOutcome, DryRun, Lane, LoadedModule,
    MoMessage, ModuleDescription, PartnerScope, Runtime, SubscriptionChange, ValidationError,
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
    #[error(
        "version {version} of `{module}` was pruned by the retention rule; upload it again to use it"
    )]
    VersionPruned { module: String, version: i64 },
    #[error("at most {limit} uploads per hour; try again in {retry_after_secs} s")]
    UploadRate { limit: u32, retry_after_secs: i64 },
    #[error(
        "at most {limit} stored versions per partner, counting every module; versions beyond the newest [modules] keep_versions of a module are pruned unless active or used by a push"
    )]
    VersionQuota { limit: u32 },
    #[error(
        "at most {limit} bytes of stored versions per partner; with this upload it would be {would_be}"
    )]
    StorageQuota { limit: u64, would_be: u64 },
    #[error(
        "version {version} of `{module}` failed admission and cannot be activated; its report: GET /v1/modules/{module}/versions/{version}/admission"
    )]
    AdmissionFailed { module: String, version: i64 },
    #[error(
        "activations of this partner wait for the admin's approval: request one (POST /v1/modules/{0}/activate answers 202 with the request)"
    )]
    ApprovalRequired(String),
    #[error("module `{module}` already has activation request {request} waiting for the admin")]
    ActivationPending { module: String, request: i64 },
    #[error("no activation request {0}")]
    NoSuchRequest(i64),
    #[error("activation request {id} was already {status}")]
    RequestDecided { id: i64, status: String },
    #[error("the call failed: {0}")]
    Call(CallError),
    #[error("no recorded call {0}")]
    NoSuchCall(i64),
    #[error("the recording cannot be replayed: {0}")]
    BadRecording(String),
    #[error("the content policy cannot be compiled: {0}")]
    Policy(String),
    #[error("module `{0}` has no shadow version")]
    NoShadow(String),
    #[error("module `{0}` has no canary")]
    NoCanary(String),
    #[error(
        "module `{module}` already has version {version} as its canary: promote it or roll it back first"
    )]
    CanaryRunning { module: String, version: i64 },
    #[error(
        "activations of this partner wait for the admin's approval, so it cannot run a canary: ask for an activation (POST /v1/modules/{0}/activate)"
    )]
    CanaryNeedsApproval(String),
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
    #[serde(serialize_with = "crate::api::time::ms")]
    pub uploaded_at: i64,
    pub active: bool,
    /// Pruned by the retention rule: listed, but its bytes are gone.
    pub pruned: bool,
    pub fault_count: i64,
    /// The admission verdict (issue 17 item 1): `null` for versions stored before
    /// admission existed; the report is at `…/versions/{number}/admission`.
    pub admission_passed: Option<bool>,
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
    /// An activation waiting for the admin's approval, if any.
    pub pending_activation: Option<ActivationRequest>,
    /// The version run beside the active one on real calls, never sent (issue
    /// 17 item 3); its runs: `GET /v1/modules/{name}/shadow`.
    pub shadow_version: Option<i64>,
    /// The version live for a percentage of the subscribers (issue 17 item 4).
    pub canary: Option<CanaryInfo>,
    #[serde(serialize_with = "crate::api::time::ms")]
    pub created_at: i64,
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
    /// The version of `tongdao:partner` the component was built against.
    pub wit_version: String,
    pub description: ModuleDescription,
    /// The admission report (issue 17 item 1); `null` only for bytes stored before
    /// admission existed.
    pub admission: Option<AdmissionReport>,
    /// The first version's activation waits for the admin (partners who need
    /// approval): the request.
    pub activation_request: Option<ActivationRequest>,
}

#[derive(sqlx::FromRow)]
struct ModuleRow {
    id: i64,
    name: String,
    active_version_id: Option<i64>,
    created_at: i64,
    shadow_version_id: Option<i64>,
    canary_version_id: Option<i64>,
    canary_percent: Option<i64>,
    canary_since: Option<i64>,
}

impl ModuleRow {
    fn active(&self) -> active::Active {
        active::Active {
            module_id: self.id,
            version_id: self.active_version_id,
            shadow_version_id: self.shadow_version_id,
            canary: self.canary_version_id.map(|v| {
                let percent = self.canary_percent.unwrap_or(0).clamp(0, 100);
                (v, u32::try_from(percent).unwrap_or(0))
            }),
        }
    }
}

const MODULE_COLUMNS: &str = "id, name, active_version_id, created_at, shadow_version_id, canary_version_id, canary_percent, canary_since";

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
    pruned_at: Option<i64>,
    admission_passed: Option<i64>,
}

const VERSION_COLUMNS: &str = "id, seq, label, description, services, wit_version, sha256, size_bytes, uploaded_at, pruned_at, admission_passed";

/// The registry: stored modules plus the loaded (compiled, linked) versions.
pub struct Registry {
    store: Store,
    runtime: Arc<Runtime>,
    config: RegistryConfig,
    loaded: Arc<loaded::LoadedVersions>,
    active: active::ActiveVersions,
    /// Shadow runs running now (at most `[modules] shadow_concurrency`).
    shadow_slots: Arc<tokio::sync::Semaphore>,
    /// Calls and faults per version, added to the store by the watcher.
    counts: watch::CallCounts,
    /// The content policy the admission corpus is judged by; `None`: the default
    /// `[compliance]` settings.
    compliance: Option<Compliance>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

impl Registry {
    /// A registry with the default `[modules]` settings.
    pub fn new(store: Store, runtime: Arc<Runtime>) -> Self {
        Self::with_config(store, runtime, RegistryConfig::default())
    }

    pub fn with_config(store: Store, runtime: Arc<Runtime>, config: RegistryConfig) -> Self {
        Self {
            store,
            loaded: Arc::new(loaded::LoadedVersions::new(config.loaded_versions)),
            shadow_slots: Arc::new(tokio::sync::Semaphore::new(
                config.shadow_concurrency as usize,
            )),
            counts: watch::CallCounts::default(),
            active: active::ActiveVersions::new(std::time::Duration::from_millis(
                config.active_recheck_ms,
            )),
            runtime,
            config,
            compliance: None,
        }
    }

    /// Judge admission corpora by `compliance`'s content policy (the one the gate
    /// applies) rather than the default `[compliance]` settings.
    #[must_use]
    pub fn with_compliance(mut self, compliance: Compliance) -> Self {
        self.compliance = Some(compliance);
        self
    }

    /// Run the admission corpus on a validated version (see [`admission`]).
    async fn admit(
        &self,
        partner: &Partner,
        loaded: &LoadedModule,
        description: &ModuleDescription,
    ) -> Result<AdmissionReport, RegistryError> {
        let default;
        let compliance = match &self.compliance {
            Some(c) => c,
            None => {
                default = Compliance::new(self.store.clone(), ComplianceConfig::default())
                    .map_err(|e| RegistryError::Policy(e.to_string()))?;
                &default
            }
        };
        let admission = admission::Admission {
            runtime: &self.runtime,
            store: &self.store,
            compliance,
            config: &self.config,
        };
        Ok(admission.run(partner, loaded, description).await)
    }

    /// Whether a version with this verdict may go live.
    fn admitted(&self, passed: Option<i64>) -> bool {
        passed != Some(0) || self.config.admission == AdmissionMode::Report
    }

    /// Compiled versions held in memory now (at most `[modules] loaded_versions`).
    pub fn loaded_count(&self) -> usize {
        self.loaded.len()
    }

    /// The runtime calls run on.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Validate and store an uploaded component for `partner`, within its quotas;
    /// older versions the retention rule lets go are pruned.
    ///
    /// # Errors
    /// [`RegistryError::UploadRate`], [`RegistryError::VersionQuota`],
    /// [`RegistryError::StorageQuota`] over a quota; [`RegistryError::Invalid`]
    /// for a component the platform refuses.
    pub async fn upload(
        &self,
        partner: &Partner,
        wasm: &[u8],
        actor: &str,
    ) -> Result<Uploaded, RegistryError> {
        quota::count_upload(&self.store, &self.config, partner.id, wasm.len(), now_ms()).await?;
        let (loaded, description) =
            validate(&self.runtime, wasm.to_vec(), Lane::Partner(partner.id)).await?;
        // The same bytes keep their report; new bytes run the corpus, outside the
        // write transaction (it takes milliseconds to seconds).
        let report = match self
            .stored_report(partner, &description.name, &loaded.sha256)
            .await?
        {
            Some(report) => report,
            None => self.admit(partner, &loaded, &description).await?,
        };
        let report_json = serde_json::to_string(&report)
            .map_err(|e| RegistryError::Store(StoreError::Corrupt(e.to_string())))?;
        let passed = i64::from(report.passed);
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
        let module: ModuleRow = sqlx::query_as(&format!(
            "UPDATE modules SET updated_at = $3 WHERE partner_id = $1 AND name = $2
             RETURNING {MODULE_COLUMNS}"
        ))
        .bind(partner.id)
        .bind(&description.name)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let existing: Option<(i64, i64, Option<i64>)> = sqlx::query_as(
            "SELECT id, seq, pruned_at FROM module_versions WHERE module_id = $1 AND sha256 = $2",
        )
        .bind(module.id)
        .bind(&loaded.sha256)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((id, seq, pruned_at)) = existing {
            if pruned_at.is_some() {
                // The same bytes again bring a pruned version back.
                sqlx::query("UPDATE module_versions SET wasm = $2, pruned_at = NULL WHERE id = $1")
                    .bind(id)
                    .bind(wasm)
                    .execute(&mut *tx)
                    .await?;
                quota::check_stored(&mut tx, &self.config, partner.id).await?;
            }
            // A version stored before admission existed gets its report now.
            sqlx::query(
                "UPDATE module_versions SET admission = $2, admission_passed = $3
                 WHERE id = $1 AND admission IS NULL",
            )
            .bind(id)
            .bind(&report_json)
            .bind(passed)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(Uploaded {
                module: module.name,
                version: seq,
                created: false,
                activated: false,
                sha256: loaded.sha256.clone(),
                wit_version: loaded.wit_version.clone(),
                description,
                admission: Some(report),
                activation_request: None,
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
             (module_id, seq, label, description, services, wit_version, sha256, size_bytes, wasm, uploaded_at,
              admission, admission_passed)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
        )
        .bind(module.id)
        .bind(next)
        .bind(&description.version)
        .bind(&description.description)
        .bind(services)
        .bind(&loaded.wit_version)
        .bind(&loaded.sha256)
        .bind(i64::try_from(wasm.len()).unwrap_or(i64::MAX))
        .bind(wasm)
        .bind(now)
        .bind(&report_json)
        .bind(passed)
        .fetch_one(&mut *tx)
        .await?;
        // The first version goes live on upload if admitted, unless the partner's
        // activations wait for the admin: then it is a request.
        let first = module.active_version_id.is_none() && self.admitted(Some(passed));
        let mut activation_request = None;
        if first && approval::required(&mut tx, partner.id).await? {
            activation_request = Some(
                approval::open(
                    &mut tx,
                    partner.id,
                    (module.id, &module.name),
                    version_id,
                    actor,
                )
                .await?,
            );
        }
        let activated = first && activation_request.is_none();
        if activated {
            set_active(&mut tx, module.id, version_id, None, "activate", actor).await?;
        }
        let pruned = quota::prune(&mut tx, &self.config, module.id, now).await?;
        quota::check_stored(&mut tx, &self.config, partner.id).await?;
        tx.commit().await?;
        if activated {
            self.active.forget(partner.id, &module.name);
        }
        self.forget_compiled(pruned).await?;
        Ok(Uploaded {
            module: module.name,
            version: next,
            created: true,
            activated,
            sha256: loaded.sha256.clone(),
            wit_version: loaded.wit_version.clone(),
            description,
            admission: Some(report),
            activation_request,
        })
    }

    /// The report stored with these bytes of module `name`, if they were admitted
    /// before.
    async fn stored_report(
        &self,
        partner: &Partner,
        name: &str,
        sha256: &str,
    ) -> Result<Option<AdmissionReport>, RegistryError> {
        let row: Option<(Option<String>,)> = sqlx::query_as(
            "SELECT v.admission FROM module_versions v JOIN modules m ON m.id = v.module_id
             WHERE m.partner_id = $1 AND m.name = $2 AND v.sha256 = $3",
        )
        .bind(partner.id)
        .bind(name)
        .bind(sha256)
        .fetch_optional(self.store.pool())
        .await?;
        Ok(row
            .and_then(|(json,)| json)
            .and_then(|json| serde_json::from_str(&json).ok()))
    }

    /// The admission report of version `number` of `name` (`None`: stored before
    /// admission existed).
    ///
    /// # Errors
    /// [`RegistryError::NotFound`], [`RegistryError::NoSuchVersion`], store failures.
    pub async fn admission(
        &self,
        partner: &Partner,
        name: &str,
        number: i64,
    ) -> Result<Option<AdmissionReport>, RegistryError> {
        let row = self.module_row(partner, name).await?;
        let found: Option<(Option<String>,)> = sqlx::query_as(
            "SELECT admission FROM module_versions WHERE module_id = $1 AND seq = $2",
        )
        .bind(row.id)
        .bind(number)
        .fetch_optional(self.store.pool())
        .await?;
        let (json,) = found.ok_or_else(|| RegistryError::NoSuchVersion {
            module: name.to_string(),
            version: number,
        })?;
        json.map(|json| {
            serde_json::from_str(&json)
                .map_err(|e| RegistryError::Store(StoreError::Corrupt(e.to_string())))
        })
        .transpose()
    }

    /// Drop the compiled code of pruned versions whose bytes no version keeps.
    async fn forget_compiled(&self, pruned: Vec<String>) -> Result<(), RegistryError> {
        for sha in pruned {
            if !quota::bytes_still_stored(&self.store, &sha).await? {
                self.runtime.forget_compiled(&sha);
            }
        }
        Ok(())
    }

    /// Every module of `partner`.
    pub async fn list(&self, partner: &Partner) -> Result<Vec<ModuleInfo>, RegistryError> {
        let rows: Vec<ModuleRow> = sqlx::query_as(&format!(
            "SELECT {MODULE_COLUMNS} FROM modules WHERE partner_id = $1 ORDER BY name"
        ))
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

    /// Make version `number` the active one, for a partner whose activations need
    /// no approval.
    ///
    /// # Errors
    /// [`RegistryError::ApprovalRequired`] for a partner whose activations wait
    /// for the admin (use [`Self::request_activation`]); those of
    /// [`Self::request_activation`].
    pub async fn activate(
        &self,
        partner: &Partner,
        name: &str,
        number: i64,
        actor: &str,
    ) -> Result<ModuleInfo, RegistryError> {
        match self.activation(partner, name, number, actor, false).await? {
            Activation::Live(info) => Ok(*info),
            Activation::Pending(_) => Err(RegistryError::ApprovalRequired(name.to_string())),
        }
    }

    /// Make version `number` the active one, or, for a partner whose activations
    /// wait for the admin, open a pending request (issue 17 item 1).
    ///
    /// # Errors
    /// [`RegistryError::NoSuchVersion`], [`RegistryError::VersionPruned`],
    /// [`RegistryError::AlreadyActive`], [`RegistryError::AdmissionFailed`] (the
    /// version failed admission and `[modules] admission = "enforce"`),
    /// [`RegistryError::ActivationPending`] (a request already waits).
    pub async fn request_activation(
        &self,
        partner: &Partner,
        name: &str,
        number: i64,
        actor: &str,
    ) -> Result<Activation, RegistryError> {
        self.activation(partner, name, number, actor, true).await
    }

    async fn activation(
        &self,
        partner: &Partner,
        name: &str,
        number: i64,
        actor: &str,
        may_request: bool,
    ) -> Result<Activation, RegistryError> {
        let row = self.module_row(partner, name).await?;
        let mut tx = self.store.begin_write().await?;
        let current = lock_module(&mut tx, row.id).await?;
        let version_id = self
            .activatable(&mut tx, (row.id, name), number, current)
            .await?;
        if approval::required(&mut tx, partner.id).await? {
            if !may_request {
                return Err(RegistryError::ApprovalRequired(name.to_string()));
            }
            let request =
                approval::open(&mut tx, partner.id, (row.id, name), version_id, actor).await?;
            tx.commit().await?;
            return Ok(Activation::Pending(request));
        }
        set_active(&mut tx, row.id, version_id, current, "activate", actor).await?;
        tx.commit().await?;
        self.active.forget(partner.id, name);
        Ok(Activation::Live(Box::new(self.get(partner, name).await?)))
    }

    /// The id of version `number` if it may go live now (in the transaction that
    /// holds the module's lock).
    async fn activatable(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        (module_id, name): (i64, &str),
        number: i64,
        current: Option<i64>,
    ) -> Result<i64, RegistryError> {
        let version: Option<(i64, Option<i64>, Option<i64>)> = sqlx::query_as(
            "SELECT id, pruned_at, admission_passed FROM module_versions WHERE module_id = $1 AND seq = $2",
        )
        .bind(module_id)
        .bind(number)
        .fetch_optional(&mut **tx)
        .await?;
        let (version_id, pruned_at, passed) =
            version.ok_or_else(|| RegistryError::NoSuchVersion {
                module: name.to_string(),
                version: number,
            })?;
        if pruned_at.is_some() {
            return Err(RegistryError::VersionPruned {
                module: name.to_string(),
                version: number,
            });
        }
        if current == Some(version_id) {
            return Err(RegistryError::AlreadyActive {
                module: name.to_string(),
                version: number,
            });
        }
        if !self.admitted(passed) {
            return Err(RegistryError::AdmissionFailed {
                module: name.to_string(),
                version: number,
            });
        }
        Ok(version_id)
    }

    /// The admin approves (`approve`) or refuses a pending activation request;
    /// an approved version goes live in the same transaction.
    ///
    /// # Errors
    /// [`RegistryError::NoSuchRequest`], [`RegistryError::RequestDecided`]; on
    /// approval, those of [`Self::request_activation`] for the version now (it
    /// may have been pruned, or made live meanwhile).
    pub async fn decide_activation(
        &self,
        id: i64,
        approve: bool,
        actor: &str,
        reason: Option<&str>,
    ) -> Result<ActivationRequest, RegistryError> {
        let mut tx = self.store.begin_write().await?;
        let request = approval::lock(&mut tx, id).await?;
        if request.status != "pending" {
            return Err(RegistryError::RequestDecided {
                id,
                status: request.status,
            });
        }
        if !approve {
            let decided = approval::decide(&mut tx, id, "refused", actor, reason).await?;
            tx.commit().await?;
            return Ok(decided);
        }
        let current = lock_module(&mut tx, request.module_id).await?;
        let version_id = self
            .activatable(
                &mut tx,
                (request.module_id, &request.module),
                request.version,
                current,
            )
            .await?;
        debug_assert_eq!(version_id, request.version_id);
        set_active(
            &mut tx,
            request.module_id,
            version_id,
            current,
            "activate",
            &format!("{actor} (approving {})", request.requested_by),
        )
        .await?;
        let decided = approval::decide(&mut tx, id, "approved", actor, reason).await?;
        tx.commit().await?;
        self.active.forget(request.partner_id, &request.module);
        Ok(decided)
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
        rollback_in(&mut tx, (row.id, name), current, ("rollback", actor)).await?;
        tx.commit().await?;
        self.active.forget(partner.id, name);
        self.get(partner, name).await
    }

    /// The most recent fault samples of a module, newest first (the first
    /// `[modules] fault_samples` of each kind per window).
    pub async fn faults(
        &self,
        partner: &Partner,
        name: &str,
        limit: i64,
    ) -> Result<Vec<Fault>, RegistryError> {
        self.faults_before(partner, name, None, limit).await
    }

    /// Fault samples older than fault id `before` (all for `None`), newest first:
    /// the pages of `GET /v1/modules/{name}/faults`.
    ///
    /// # Errors
    /// [`RegistryError::NotFound`] for another partner's or no module; store failures.
    pub async fn faults_before(
        &self,
        partner: &Partner,
        name: &str,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Fault>, RegistryError> {
        let row = self.module_row(partner, name).await?;
        faults::samples(&self.store, row.id, before, limit).await
    }

    /// Every fault of a module counted per version, export, kind and window,
    /// newest window first.
    pub async fn fault_windows(
        &self,
        partner: &Partner,
        name: &str,
        limit: i64,
    ) -> Result<Vec<FaultWindow>, RegistryError> {
        let row = self.module_row(partner, name).await?;
        faults::windows(&self.store, row.id, limit).await
    }

    /// Call `bulletin` on the active version of `name`, recording a fault on failure.
    pub async fn bulletin(
        &self,
        partner: &Partner,
        name: &str,
        request: &BulletinRequest,
    ) -> Result<CallOutcome<BulletinContent>, RegistryError> {
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
        let started = std::time::Instant::now();
        let mut outcome = self
            .runtime
            .on_mo(&active.loaded, self.scope(partner), message)
            .await;
        outcome.version_id = Some(active.version_id);
        self.record_outcome(
            partner,
            &active,
            (name, "on-mo", started.elapsed()),
            message,
            &mut outcome,
        )
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
        let started = std::time::Instant::now();
        let mut outcome = self
            .runtime
            .on_subscription(&active.loaded, self.scope(partner), change)
            .await;
        outcome.version_id = Some(active.version_id);
        let took = started.elapsed();
        let export = change.export();
        self.record_outcome(partner, &active, (name, export, took), change, &mut outcome)
            .await?;
        Ok(outcome)
    }

    /// The id of the active version of `name` (violations name the version), as
    /// calls see it (see [`active`](self::active)).
    ///
    /// # Errors
    /// [`RegistryError::NotFound`], [`RegistryError::NoActiveVersion`], or a store error.
    pub async fn active_version_id(
        &self,
        partner: &Partner,
        name: &str,
    ) -> Result<i64, RegistryError> {
        self.active_row(partner, name)
            .await?
            .version_id
            .ok_or_else(|| RegistryError::NoActiveVersion(name.to_string()))
    }

    /// The module's id and active version: from memory while fresh, else from the
    /// store (and kept).
    async fn active_row(
        &self,
        partner: &Partner,
        name: &str,
    ) -> Result<active::Active, RegistryError> {
        let generation = match self.active.lookup(partner.id, name) {
            active::Lookup::Hit(found) => return Ok(found),
            active::Lookup::Miss { generation } => generation,
        };
        let row = self.module_row(partner, name).await?;
        let found = row.active();
        self.active.keep(partner.id, name, generation, found);
        Ok(found)
    }

    fn scope(&self, partner: &Partner) -> PartnerScope {
        PartnerScope {
            store: self.store.clone(),
            partner_id: partner.id,
            dry: None,
        }
    }

    /// After a live call: metrics, the rollback's counts, the module's logs, a
    /// fault on failure, and the call's recording kept if the rule keeps it
    /// (its id in `outcome.call_id`). Every live call path ends here, so none
    /// goes unrecorded.
    async fn record_outcome<T: Serialize>(
        &self,
        partner: &Partner,
        active: &ActiveVersion,
        (module, export, took): (&str, &str, std::time::Duration),
        request: &impl Serialize,
        outcome: &mut CallOutcome<T>,
    ) -> Result<(), RegistryError> {
        outcome.call_id = self
            .keep_recording(partner, active, export, request, outcome)
            .await;
        // Calls, latency and faults by kind for `/metrics` (issue 15 item 1).
        let fault = match &outcome.result {
            Err(error) if error.is_module_fault() => Some(CallErrorBody::from(error).kind),
            _ => None,
        };
        // The automatic rollback's denominators (issue 17 item 5), kept only when
        // a watcher adds them to the store.
        if self.config.rollback_interval_ms > 0 {
            self.counts
                .add(active.version_id, fault.is_some(), now_ms());
        }
        crate::telemetry::module_call(&partner.name, module, export, took, fault);
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
        faults::record(
            &self.store,
            &self.config,
            &faults::NewFault {
                partner_id: partner.id,
                module_id: active.module_id,
                version_id: active.version_id,
                export,
                kind: body.kind,
                message: &body.message,
                at: now_ms(),
            },
        )
        .await
    }

    /// Keep the recording of a live call if the rule does (see [`recordings`]);
    /// its id. A failure to store it is logged: the call itself stands.
    async fn keep_recording<T: Serialize>(
        &self,
        partner: &Partner,
        active: &ActiveVersion,
        export: &str,
        request: &impl Serialize,
        outcome: &CallOutcome<T>,
    ) -> Option<i64> {
        let recording = outcome.recording.as_ref()?;
        let new = recordings::NewRecording {
            partner_id: partner.id,
            module_id: active.module_id,
            version_id: active.version_id,
            export,
            request: serde_json::to_value(request).unwrap_or_default(),
            recording,
            output: crate::runtime::output_json(&outcome.result),
            input_sha256: &outcome.input_sha256,
            at: now_ms(),
        };
        match recordings::keep(&self.store, &self.config, new).await {
            Ok(id) => id,
            Err(e) => {
                tracing::warn!(partner = %partner.name, export, error = %e, "cannot store a call recording");
                None
            }
        }
    }

    /// Up to `limit` recorded calls of module `name` with an id below `before`,
    /// newest first (issue 17 item 7).
    ///
    /// # Errors
    /// [`RegistryError::NotFound`], or a store error.
    pub async fn recorded_calls(
        &self,
        partner: &Partner,
        name: &str,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<RecordedCall>, RegistryError> {
        let row = self.module_row(partner, name).await?;
        recordings::list(&self.store, row.id, before, limit).await
    }

    /// Replay recorded call `id` on the version that made it, or on version
    /// `number` of the same module, with every host answer taken from the
    /// recording; report both outputs and every difference (issue 17 item 7).
    /// Nothing is read from the store but the recording, nothing is written, no
    /// fault is recorded.
    ///
    /// # Errors
    /// [`RegistryError::NoSuchCall`] (not this partner's either),
    /// [`RegistryError::NoSuchVersion`], [`RegistryError::VersionPruned`],
    /// [`RegistryError::BadRecording`], a call that could not run
    /// ([`RegistryError::Call`]: concurrency, unavailable), or a store error.
    pub async fn replay(
        &self,
        partner: &Partner,
        id: i64,
        number: Option<i64>,
    ) -> Result<ReplayReport, RegistryError> {
        let stored = recordings::get(&self.store, partner.id, id)
            .await?
            .ok_or(RegistryError::NoSuchCall(id))?;
        let number = number.unwrap_or(stored.call.version);
        let found: Option<(i64, i64, String, Option<i64>)> = sqlx::query_as(
            "SELECT id, seq, wit_version, pruned_at FROM module_versions
             WHERE module_id = $1 AND seq = $2",
        )
        .bind(stored.module_id)
        .bind(number)
        .fetch_optional(self.store.pool())
        .await?;
        let (version_id, seq, wit_version, pruned_at) =
            found.ok_or_else(|| RegistryError::NoSuchVersion {
                module: stored.module.clone(),
                version: number,
            })?;
        if pruned_at.is_some() {
            return Err(RegistryError::VersionPruned {
                module: stored.module.clone(),
                version: seq,
            });
        }
        let loaded = self.load(version_id).await?;
        // Belt and braces: the tape answers every data call, and the isolated
        // dry run would keep any write that slipped past it.
        let scope = PartnerScope {
            dry: Some(DryRun::isolated()),
            ..self.scope(partner)
        };
        let replayed = self
            .runtime
            .replay(
                &loaded,
                scope,
                &stored.call.export,
                &stored.call.request,
                &stored.recording,
            )
            .await
            .map_err(RegistryError::BadRecording)?;
        // The replay could not run (a busy host): no answer to compare.
        if let Some(error) = replayed.output.get("error")
            && let Some(kind) = error.get("kind").and_then(serde_json::Value::as_str)
        {
            let message = error["message"].as_str().unwrap_or(kind).to_string();
            match kind {
                "concurrency-limit" => {
                    return Err(RegistryError::Call(CallError::ConcurrencyLimit(message)));
                }
                "unavailable" => return Err(RegistryError::Call(CallError::Unavailable(message))),
                _ => {}
            }
        }
        let differences = recordings::differences(&stored.call.output, &replayed);
        Ok(ReplayReport {
            call: id,
            module: stored.module,
            export: stored.call.export,
            request: stored.call.request,
            recorded_version: stored.call.version,
            recorded_wit_version: stored.call.wit_version,
            replayed_version: seq,
            replayed_wit_version: wit_version,
            recorded_output: stored.call.output,
            replayed_output: replayed.output,
            identical: differences.is_empty(),
            differences,
            logs: replayed.logs,
            sent: false,
        })
    }

    /// The active version of `name`, compiled and linked: what every call runs.
    /// Neither lookup touches the store once warm (the active version is kept in
    /// memory, compiled versions are cached by version id).
    async fn active(&self, partner: &Partner, name: &str) -> Result<ActiveVersion, RegistryError> {
        let row = self.active_row(partner, name).await?;
        let version_id = row
            .version_id
            .ok_or_else(|| RegistryError::NoActiveVersion(name.to_string()))?;
        Ok(ActiveVersion {
            module_id: row.module_id,
            version_id,
            loaded: self.load(version_id).await?,
        })
    }

    /// Version `version_id` compiled and linked: from the cache of loaded
    /// versions, else from its stored bytes.
    async fn load(&self, version_id: i64) -> Result<Arc<LoadedModule>, RegistryError> {
        load_version(&self.store, &self.runtime, &self.loaded, version_id).await
    }

    /// Run `on-mo`, `on-subscribe` or `on-unsubscribe` of version `number` of
    /// `name` (the active one for `None`) in `dry`, so nothing it writes is stored
    /// and its data calls are recorded (issue 17 item 2). No fault is recorded
    /// either: a dry run leaves no trace. Returns the version number that ran.
    ///
    /// # Errors
    /// [`RegistryError::NotFound`], [`RegistryError::NoActiveVersion`],
    /// [`RegistryError::NoSuchVersion`], [`RegistryError::VersionPruned`].
    pub async fn dry_run(
        &self,
        partner: &Partner,
        name: &str,
        number: Option<i64>,
        call: &DryCall,
        dry: DryRun,
    ) -> Result<(i64, CallOutcome<Option<String>>), RegistryError> {
        let row = self.module_row(partner, name).await?;
        let found: Option<(i64, i64, Option<i64>)> = match number {
            Some(n) => sqlx::query_as(
                "SELECT id, seq, pruned_at FROM module_versions WHERE module_id = $1 AND seq = $2",
            )
            .bind(row.id)
            .bind(n)
            .fetch_optional(self.store.pool())
            .await?,
            None => {
                let active = row
                    .active_version_id
                    .ok_or_else(|| RegistryError::NoActiveVersion(name.to_string()))?;
                sqlx::query_as("SELECT id, seq, pruned_at FROM module_versions WHERE id = $1")
                    .bind(active)
                    .fetch_optional(self.store.pool())
                    .await?
            }
        };
        let (version_id, seq, pruned_at) = found.ok_or_else(|| RegistryError::NoSuchVersion {
            module: name.to_string(),
            version: number.unwrap_or(0),
        })?;
        if pruned_at.is_some() {
            return Err(RegistryError::VersionPruned {
                module: name.to_string(),
                version: seq,
            });
        }
        let loaded = self.load(version_id).await?;
        let scope = PartnerScope {
            dry: Some(dry),
            ..self.scope(partner)
        };
        let mut outcome = match call {
            DryCall::Mo(message) => self.runtime.on_mo(&loaded, scope, message).await,
            DryCall::Subscription(change) => {
                self.runtime.on_subscription(&loaded, scope, change).await
            }
        };
        outcome.version_id = Some(version_id);
        Ok((seq, outcome))
    }

    async fn module_row(&self, partner: &Partner, name: &str) -> Result<ModuleRow, RegistryError> {
        sqlx::query_as(&format!(
            "SELECT {MODULE_COLUMNS} FROM modules WHERE partner_id = $1 AND name = $2"
        ))
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
        let counts = faults::counts(&self.store, row.id).await?;
        let last_fault = faults::last(&self.store, row.id).await?;
        let active_version = versions
            .iter()
            .find(|v| Some(v.id) == row.active_version_id)
            .map(|v| v.seq);
        let versions_by_id: Vec<(i64, i64)> = versions.iter().map(|v| (v.id, v.seq)).collect();
        let versions: Vec<VersionInfo> = versions
            .into_iter()
            .map(|v| VersionInfo {
                number: v.seq,
                active: Some(v.id) == row.active_version_id,
                pruned: v.pruned_at.is_some(),
                fault_count: counts.get(&v.id).copied().unwrap_or(0),
                label: v.label,
                description: v.description,
                services: serde_json::from_str(&v.services).unwrap_or_default(),
                wit_version: v.wit_version,
                sha256: v.sha256,
                size_bytes: v.size_bytes,
                uploaded_at: v.uploaded_at,
                admission_passed: v.admission_passed.map(|p| p != 0),
            })
            .collect();
        let pending_activation = approval::pending_of(&self.store, row.id).await?;
        let number_of = |id: Option<i64>| {
            versions_by_id
                .iter()
                .find(|(v, _)| Some(*v) == id)
                .map(|(_, seq)| *seq)
        };
        let shadow_version = number_of(row.shadow_version_id);
        let canary = number_of(row.canary_version_id).map(|version| CanaryInfo {
            version,
            percent: row.canary_percent.unwrap_or(0),
            since: row.canary_since.unwrap_or(0),
        });
        Ok(ModuleInfo {
            shadow_version,
            canary,
            name: row.name,
            partner: partner.name.clone(),
            active_version,
            fault_count: counts.values().sum(),
            versions,
            last_fault,
            pending_activation,
            created_at: row.created_at,
        })
    }
}

/// What a dry run calls (see [`Registry::dry_run`]).
#[derive(Debug, Clone)]
pub enum DryCall {
    Mo(MoMessage),
    Subscription(SubscriptionChange),
}

struct ActiveVersion {
    module_id: i64,
    version_id: i64,
    loaded: Arc<LoadedModule>,
}

/// Version `version_id` compiled and linked: from the cache of loaded versions,
/// else from its stored bytes (kept in the cache).
async fn load_version(
    store: &Store,
    runtime: &Arc<Runtime>,
    cache: &loaded::LoadedVersions,
    version_id: i64,
) -> Result<Arc<LoadedModule>, RegistryError> {
    if let Some(loaded) = cache.get(version_id) {
        return Ok(loaded);
    }
    let (wasm,): (Vec<u8>,) = sqlx::query_as("SELECT wasm FROM module_versions WHERE id = $1")
        .bind(version_id)
        .fetch_one(store.pool())
        .await?;
    let runtime = runtime.clone();
    // Compiling takes milliseconds to seconds: keep it off the async workers.
    let loaded = tokio::task::spawn_blocking(move || runtime.load(&wasm))
        .await
        .map_err(|e| RegistryError::Call(CallError::Unavailable(e.to_string())))??;
    cache.insert(version_id, loaded.clone());
    Ok(loaded)
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

/// Make the version active before the current one live again, in `tx` (which
/// holds the module's lock); returns its id and number. A second rollback goes
/// one step further back.
async fn rollback_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    (module_id, name): (i64, &str),
    current: Option<i64>,
    (action, actor): (&str, &str),
) -> Result<(i64, i64), RegistryError> {
    let latest: Option<(i64, Option<i64>)> = sqlx::query_as(
            "SELECT id, previous_version_id FROM module_activations WHERE module_id = $1 ORDER BY id DESC LIMIT 1",
        )
        .bind(module_id)
        .fetch_optional(&mut **tx)
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
    .bind(module_id)
    .bind(target)
    .bind(latest_id)
    .fetch_optional(&mut **tx)
    .await?;
    let previous = before_target.and_then(|(p,)| p);
    let (target_seq, target_pruned): (i64, Option<i64>) =
        sqlx::query_as("SELECT seq, pruned_at FROM module_versions WHERE id = $1")
            .bind(target)
            .fetch_one(&mut **tx)
            .await?;
    if target_pruned.is_some() {
        return Err(RegistryError::VersionPruned {
            module: name.to_string(),
            version: target_seq,
        });
    }
    set_active(tx, module_id, target, previous, action, actor).await?;
    debug_assert_ne!(current, Some(target));
    Ok((target, target_seq))
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
    // A version going live is no longer a shadow or a canary of itself.
    sqlx::query(
        "UPDATE modules SET active_version_id = $2, active_since = $3,
            shadow_version_id = CASE WHEN shadow_version_id = $2 THEN NULL ELSE shadow_version_id END,
            canary_percent = CASE WHEN canary_version_id = $2 THEN NULL ELSE canary_percent END,
            canary_since = CASE WHEN canary_version_id = $2 THEN NULL ELSE canary_since END,
            canary_version_id = CASE WHEN canary_version_id = $2 THEN NULL ELSE canary_version_id END
         WHERE id = $1",
    )
    .bind(module_id)
    .bind(version_id)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Compile and link `wasm` off the async workers, then call `describe` in `lane`
/// and check the answer: what an upload and `tongdao module check` both do.
///
/// # Errors
/// The [`ValidationError`] naming why the component is refused.
pub async fn validate(
    runtime: &Arc<Runtime>,
    wasm: Vec<u8>,
    lane: Lane,
) -> Result<(Arc<LoadedModule>, ModuleDescription), ValidationError> {
    let compiling = runtime.clone();
    // Compiling takes milliseconds (Rust) to seconds (Python, JavaScript).
    let loaded = tokio::task::spawn_blocking(move || compiling.load(&wasm))
        .await
        .map_err(|e| ValidationError::Invalid(format!("compilation did not finish: {e}")))??;
    let description = runtime.checked_description(&loaded, lane).await?;
    Ok((loaded, description))
}
