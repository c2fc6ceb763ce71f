//! Compliance: what the platform enforces before and while a partner's MT leaves
//! (R-3.1 content policy, R-3.4 detectors, R-3.5 suspension, R-4.7 caps, R-8.4 quiet
//! hours).
//!
//! - [`policy`]: prohibited words/patterns, signature, length, links.
//! - [`caps`]: the monthly and daily caps, counted where MTs are queued.
//! - [`quiet`]: the quiet-hours window.
//! - [`detectors`]: periodic checks for bulk, fee-only, over-count and complaint spikes.
//! - [`settings`]: the `[compliance]` section.
//!
//! [`Compliance`] is a service of its own (a cheap `Clone` handle), held by the API,
//! the keyword router and the scheduler, and handed to the outbox's gate
//! (`relay::outbox::admit`), which applies these rules to every MT it queues, so no
//! code path bypasses them. Messages held or released by a suspension change state
//! through the outbox's own functions.

pub mod blocked;
pub mod caps;
pub mod detectors;
pub mod policy;
pub mod quiet;
pub mod settings;

use std::sync::Arc;

use serde::Serialize;

pub use crate::clock::{day_key, month_key};
use crate::relay::outbox::{self, Holder};
use crate::services::{FeeType, LiveService, ServiceError};
use crate::store::{Backend, Store, StoreError, now_ms};
pub use blocked::Blocked;
pub use caps::{Caps, Counted};
use policy::{Policy, PolicyError};
use quiet::QuietHours;
pub use settings::ComplianceConfig;

/// Why compliance could not start.
#[derive(Debug, thiserror::Error)]
pub enum ComplianceError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("compliance.quiet_hours: {0}")]
    QuietHours(String),
    #[error("{0}")]
    WrongState(String),
    #[error("no such partner or service")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for ComplianceError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

impl From<ServiceError> for ComplianceError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Store(s) => Self::Store(s),
            ServiceError::NotFound => Self::NotFound,
            other => Self::WrongState(other.to_string()),
        }
    }
}

/// A recorded violation, as partners and admins see it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Violation {
    pub id: i64,
    pub partner_id: i64,
    pub service_id: Option<i64>,
    pub module_version_id: Option<i64>,
    pub kind: String,
    pub rule: String,
    pub detail: String,
    pub excerpt: Option<String>,
    #[serde(serialize_with = "crate::api::time::ms")]
    pub at: i64,
}

/// A complaint about a partner: content, channel or billing.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Complaint {
    pub id: i64,
    pub partner_id: i64,
    pub service_id: Option<i64>,
    pub msisdn: Option<String>,
    pub message_id: Option<i64>,
    /// `content`, `channel` or `billing`.
    pub cause: String,
    pub note: String,
    /// Unix ms.
    pub at: i64,
}

/// A violation to record.
#[derive(Debug, Clone)]
pub struct NewViolation<'a> {
    pub partner_id: i64,
    pub service_id: Option<i64>,
    pub module_version_id: Option<i64>,
    /// `policy`, `opt-in`, `cap`, `detector`.
    pub kind: &'a str,
    pub rule: &'a str,
    pub detail: &'a str,
    pub excerpt: Option<&'a str>,
}

struct Inner {
    store: Store,
    config: ComplianceConfig,
    policy: Policy,
    quiet: Option<QuietHours>,
}

/// The compliance checks, shared by the outbox, the keyword router and pushes.
#[derive(Clone)]
pub struct Compliance {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Compliance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compliance").finish_non_exhaustive()
    }
}

impl Compliance {
    pub fn new(store: Store, config: ComplianceConfig) -> Result<Self, ComplianceError> {
        let policy = Policy::compile(&config)?;
        let quiet = QuietHours::parse(&config.quiet_hours).map_err(ComplianceError::QuietHours)?;
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                config,
                policy,
                quiet,
            }),
        })
    }

    pub fn config(&self) -> &ComplianceConfig {
        &self.inner.config
    }

    fn store(&self) -> &Store {
        &self.inner.store
    }

    /// the partner is active and the service approved (not suspended).
    pub async fn may_send(&self, partner_id: i64, service_id: i64) -> Result<(), Blocked> {
        let row: Option<(String, String)> = sqlx::query_as(
            "SELECT p.status, s.status FROM services s JOIN partners p ON p.id = s.partner_id
             WHERE s.id = $1 AND p.id = $2",
        )
        .bind(service_id)
        .bind(partner_id)
        .fetch_optional(self.store().pool())
        .await?;
        let (partner, service) = row.ok_or(Blocked::UnknownService)?;
        status_allows(&partner, &service)
    }

    /// inside a write transaction: on PostgreSQL the rows are share-locked, so
    /// a suspension committing meanwhile waits for this MT and then holds it.
    pub(crate) async fn may_send_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        partner_id: i64,
        service_id: i64,
    ) -> Result<(), Blocked> {
        let lock = match self.store().backend() {
            Backend::Postgres => "FOR SHARE",
            Backend::Sqlite => "",
        };
        let row: Option<(String, String)> = sqlx::query_as(&format!(
            "SELECT p.status, s.status FROM services s JOIN partners p ON p.id = s.partner_id
             WHERE s.id = $1 AND p.id = $2 {lock}"
        ))
        .bind(service_id)
        .bind(partner_id)
        .fetch_optional(&mut **tx)
        .await?;
        let (partner, service) = row.ok_or(Blocked::UnknownService)?;
        status_allows(&partner, &service)
    }

    /// check one text of `service` and return the text to send (signed).
    /// A violation is recorded against the partner, service and module version,
    /// and the text is blocked.
    pub async fn check_content(
        &self,
        service: &LiveService,
        module_version_id: Option<i64>,
        text: &str,
    ) -> Result<String, Blocked> {
        let (signature,): (String,) =
            sqlx::query_as("SELECT display_name FROM partners WHERE id = $1")
                .bind(service.partner_id)
                .fetch_one(self.store().pool())
                .await?;
        let violation = match self
            .inner
            .policy
            .check(text, &signature, &service.revision.operators)
        {
            Ok(signed) => return Ok(signed),
            Err(violation) => violation,
        };
        self.record_violation(NewViolation {
            partner_id: service.partner_id,
            service_id: Some(service.id),
            module_version_id,
            kind: "policy",
            rule: violation.rule,
            detail: &violation.detail,
            excerpt: Some(text),
        })
        .await?;
        Err(Blocked::Policy {
            rule: violation.rule,
            detail: violation.detail,
        })
    }

    /// without consequences: what [`Self::check_content`] would decide for
    /// `text` of a partner signing `signature`, bound for `operators`, recording
    /// nothing (the admission corpus, issue 17 item 1). Returns the text that would
    /// be sent.
    ///
    /// # Errors
    /// The [`PolicyViolation`](policy::PolicyViolation) naming the rule and why.
    pub fn judge_text(
        &self,
        text: &str,
        signature: &str,
        operators: &[String],
    ) -> Result<String, policy::PolicyViolation> {
        self.inner.policy.check(text, signature, operators)
    }

    /// The platform's own texts (notices, test sends) at the last gate: control and
    /// invisible characters refused or stripped as configured (issue 10 item 8).
    /// Partner texts get the same check inside [`Self::check_content`].
    pub fn check_invisible(&self, text: &str) -> Result<String, Blocked> {
        self.inner
            .policy
            .invisible(text)
            .map_err(|v| Blocked::Policy {
                rule: v.rule,
                detail: v.detail,
            })
    }

    /// when a push queued at `now_ms` may leave (the end of quiet hours).
    pub fn push_release_at(&self, now_ms: i64) -> i64 {
        self.inner
            .quiet
            .map_or(now_ms, |quiet| quiet.release_at(now_ms))
    }

    /// The caps `service`'s MTs are under (R-4.7, agreement 3.6): per subscription
    /// and month the declared maximum, and for monthly services no more than the
    /// price buys in imbalance fees; per partner and day `[compliance]
    /// partner_daily_cap` (0: none).
    pub fn caps(&self, service: &LiveService) -> Caps {
        Caps {
            monthly: self.monthly_cap(service),
            daily: Some(self.inner.config.partner_daily_cap).filter(|cap| *cap > 0),
        }
    }

    fn monthly_cap(&self, service: &LiveService) -> Option<i64> {
        let declared = service.revision.monthly_max_messages;
        if service.revision.fee_type != FeeType::Monthly {
            return declared;
        }
        let rate = self.inner.config.max_imbalance_fee_fen;
        let by_price = (rate > 0).then(|| service.revision.price_fen / rate);
        match (declared, by_price) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Count one platform notice the recipient did not ask for by a message of their
    /// own (a confirmation request started through the API) against the number's
    /// `notice_daily_cap`, inside the transaction that queues it (issue 10 item 3).
    pub(crate) async fn take_notice_cap_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        msisdn: &str,
        now: i64,
    ) -> Result<(), Blocked> {
        let cap = self.inner.config.notice_daily_cap;
        if cap <= 0 {
            return Ok(());
        }
        let day = day_key(now);
        // Count first, then compare: the row's write lock orders racing notices.
        let (used,): (i64,) = sqlx::query_as(
            "INSERT INTO notice_daily_usage (msisdn, day, notices) VALUES ($1, $2, 1)
             ON CONFLICT (msisdn, day) DO UPDATE SET notices = notice_daily_usage.notices + 1
             RETURNING notices",
        )
        .bind(msisdn)
        .bind(&day)
        .fetch_one(&mut **tx)
        .await?;
        if used > cap {
            // Refused: the gate goes on with the rest of its batch, so the count
            // taken above is given back.
            sqlx::query(
                "UPDATE notice_daily_usage SET notices = notices - 1 WHERE msisdn = $1 AND day = $2",
            )
            .bind(msisdn)
            .bind(&day)
            .execute(&mut **tx)
            .await?;
            return Err(Blocked::NoticeCap(cap));
        }
        Ok(())
    }

    /// Record a violation (visible to the partner).
    pub async fn record_violation(&self, v: NewViolation<'_>) -> Result<(), StoreError> {
        violation_query(&v).execute(self.store().pool()).await?;
        Ok(())
    }

    /// Record a violation inside the transaction that refused the MTs, so the
    /// refusal and its record commit together.
    pub async fn record_violation_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        v: NewViolation<'_>,
    ) -> Result<(), StoreError> {
        violation_query(&v).execute(&mut **tx).await?;
        Ok(())
    }

    /// Violations, newest first: one partner's, or everyone's for the admin; only
    /// ids below `before` when given (paging).
    ///
    /// # Errors
    /// Store failures.
    pub async fn violations(
        &self,
        partner_id: Option<i64>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Violation>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, partner_id, service_id, module_version_id, kind, rule, detail, excerpt, at
             FROM violations WHERE ($1 IS NULL OR partner_id = $1) AND id < $3
             ORDER BY id DESC LIMIT $2",
        )
        .bind(partner_id)
        .bind(limit.clamp(1, 1000))
        .bind(before.unwrap_or(i64::MAX))
        .fetch_all(self.store().pool())
        .await?)
    }

    /// Complaints recorded by the admin, newest first: one partner's, or
    /// everyone's.
    ///
    /// # Errors
    /// A store error.
    pub async fn complaints(
        &self,
        partner_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Complaint>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, partner_id, service_id, msisdn, message_id, cause, note, at
             FROM complaints WHERE (CAST($1 AS BIGINT) = 0 OR partner_id = $2)
             ORDER BY id DESC LIMIT $3",
        )
        .bind(i64::from(partner_id.is_some()))
        .bind(partner_id.unwrap_or(0))
        .bind(limit.clamp(1, 1000))
        .fetch_all(self.store().pool())
        .await?)
    }

    /// suspend a partner at once. Its queued MTs are held (not lost).
    pub async fn suspend_partner(
        &self,
        partner_id: i64,
        actor: &str,
        reason: &str,
    ) -> Result<u64, ComplianceError> {
        self.set_partner(partner_id, true, actor, reason).await
    }

    /// Resume a suspended partner; its held MTs are released (those past their
    /// validity expire).
    pub async fn resume_partner(
        &self,
        partner_id: i64,
        actor: &str,
        reason: &str,
    ) -> Result<u64, ComplianceError> {
        self.set_partner(partner_id, false, actor, reason).await
    }

    async fn set_partner(
        &self,
        partner_id: i64,
        suspend: bool,
        actor: &str,
        reason: &str,
    ) -> Result<u64, ComplianceError> {
        let now = now_ms();
        let mut tx = self.store().begin_write().await?;
        let status: Option<(String,)> = sqlx::query_as("SELECT status FROM partners WHERE id = $1")
            .bind(partner_id)
            .fetch_optional(&mut *tx)
            .await?;
        let (status,) = status.ok_or(ComplianceError::NotFound)?;
        let (from, to) = if suspend {
            ("active", "suspended")
        } else {
            ("suspended", "active")
        };
        if status != from {
            return Err(ComplianceError::WrongState(format!(
                "the partner is {status}, not {from}"
            )));
        }
        sqlx::query("UPDATE partners SET status = $1 WHERE id = $2")
            .bind(to)
            .bind(partner_id)
            .execute(&mut *tx)
            .await?;
        let moved = if suspend {
            outbox::hold_in(&mut tx, Holder::Partner(partner_id), now).await?
        } else {
            outbox::release_in(&mut tx, Holder::Partner(partner_id), now).await?
        };
        record_suspension(&mut tx, partner_id, None, suspend, actor, reason, now).await?;
        tx.commit().await?;
        tracing::warn!(
            partner_id,
            suspend,
            actor,
            reason,
            moved,
            "partner suspension changed"
        );
        Ok(moved)
    }

    /// suspend one service at once; its queued MTs are held.
    pub async fn suspend_service(
        &self,
        service_id: i64,
        actor: &str,
        reason: &str,
    ) -> Result<u64, ComplianceError> {
        self.set_service(service_id, true, actor, reason).await
    }

    /// Resume a suspended service and release its held MTs (unless the partner is
    /// itself suspended).
    pub async fn resume_service(
        &self,
        service_id: i64,
        actor: &str,
        reason: &str,
    ) -> Result<u64, ComplianceError> {
        self.set_service(service_id, false, actor, reason).await
    }

    async fn set_service(
        &self,
        service_id: i64,
        suspend: bool,
        actor: &str,
        reason: &str,
    ) -> Result<u64, ComplianceError> {
        let now = now_ms();
        let mut tx = self.store().begin_write().await?;
        crate::services::set_suspended_in(&mut tx, service_id, suspend, actor, reason, now).await?;
        let (partner_id, partner_status): (i64, String) = sqlx::query_as(
            "SELECT p.id, p.status FROM services s JOIN partners p ON p.id = s.partner_id WHERE s.id = $1",
        )
        .bind(service_id)
        .fetch_one(&mut *tx)
        .await?;
        let moved = if suspend {
            outbox::hold_in(&mut tx, Holder::Service(service_id), now).await?
        } else if partner_status == "active" {
            outbox::release_in(&mut tx, Holder::Service(service_id), now).await?
        } else {
            0
        };
        record_suspension(
            &mut tx,
            partner_id,
            Some(service_id),
            suspend,
            actor,
            reason,
            now,
        )
        .await?;
        tx.commit().await?;
        tracing::warn!(
            service_id,
            suspend,
            actor,
            reason,
            moved,
            "service suspension changed"
        );
        Ok(moved)
    }
}

fn status_allows(partner: &str, service: &str) -> Result<(), Blocked> {
    if partner != "active" {
        return Err(Blocked::PartnerNotActive(partner.to_string()));
    }
    if service != "approved" {
        return Err(Blocked::ServiceNotApproved(service.to_string()));
    }
    Ok(())
}

/// The INSERT of one violation, bound.
fn violation_query<'q>(
    v: &'q NewViolation<'q>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    let excerpt: Option<String> = v.excerpt.map(|t| t.chars().take(200).collect());
    tracing::warn!(partner = v.partner_id, service = ?v.service_id, rule = v.rule, "violation: {}", v.detail);
    sqlx::query(
        "INSERT INTO violations (partner_id, service_id, module_version_id, kind, rule, detail, excerpt, at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(v.partner_id)
    .bind(v.service_id)
    .bind(v.module_version_id)
    .bind(v.kind)
    .bind(v.rule)
    .bind(v.detail)
    .bind(excerpt)
    .bind(now_ms())
}

async fn record_suspension(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    partner_id: i64,
    service_id: Option<i64>,
    suspend: bool,
    actor: &str,
    reason: &str,
    at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO suspensions (partner_id, service_id, action, actor, reason, at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(partner_id)
    .bind(service_id)
    .bind(if suspend { "suspend" } else { "resume" })
    .bind(actor)
    .bind(reason)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
