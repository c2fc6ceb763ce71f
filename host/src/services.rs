//! Declared services and their approval.
//!
//! A service's terms (keywords, fee type, price, operators, monthly maximum) live in
//! revisions. A partner drafts a revision and submits it; an admin approves or
//! rejects it. The approved revision in force (`live`) keeps applying while a
//! change waits, so a new price is never used before it is approved. Every
//! transition is written to `service_audit` with who, when and why.

mod terms;

use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError, now_ms};
pub use terms::{Routable, ServiceTerms, check_reachable, normalize_code, validate_terms};

/// How a service charges the user (agreement 3.3, operator `FeeType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum FeeType {
    Free,
    PerMessage,
    Monthly,
}

impl FeeType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Free => "free",
            Self::PerMessage => "per-message",
            Self::Monthly => "monthly",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "free" => Some(Self::Free),
            "per-message" => Some(Self::PerMessage),
            "monthly" => Some(Self::Monthly),
            _ => None,
        }
    }

    /// Paid services need the user's double confirmation before charging.
    pub fn is_paid(self) -> bool {
        self != Self::Free
    }
}

/// Where a service stands. Only `approved` services send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceStatus {
    Draft,
    Submitted,
    Approved,
    Rejected,
    Suspended,
}

impl ServiceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Submitted => "submitted",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Suspended => "suspended",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "draft" => Some(Self::Draft),
            "submitted" => Some(Self::Submitted),
            "approved" => Some(Self::Approved),
            "rejected" => Some(Self::Rejected),
            "suspended" => Some(Self::Suspended),
            _ => None,
        }
    }
}

/// One revision of a service's terms.
#[derive(Debug, Clone, Serialize)]
pub struct Revision {
    pub id: i64,
    pub seq: i64,
    pub name: String,
    pub description: String,
    pub keywords: Vec<String>,
    pub fee_type: FeeType,
    pub price_fen: i64,
    pub operators: Vec<String>,
    pub monthly_max_messages: Option<i64>,
    pub number_ext: String,
    /// draft | submitted | approved | rejected | superseded | withdrawn
    pub status: String,
    #[serde(serialize_with = "crate::api::time::ms")]
    pub created_at: i64,
    #[serde(serialize_with = "crate::api::time::opt_ms")]
    pub submitted_at: Option<i64>,
    #[serde(serialize_with = "crate::api::time::opt_ms")]
    pub decided_at: Option<i64>,
    pub decided_by: Option<String>,
    pub decision_reason: Option<String>,
}

/// A service with its approved terms in force.
#[derive(Debug, Clone, Serialize)]
pub struct LiveService {
    pub id: i64,
    pub partner_id: i64,
    pub code: String,
    pub module: Option<String>,
    pub status: ServiceStatus,
    pub revision: Revision,
}

impl LiveService {
    /// The service's own number: the platform short code plus its extension. MTs
    /// come from it, and a bare `TD` sent to it ends this service.
    pub fn sender(&self, short_code: &str) -> String {
        format!("{short_code}{}", self.revision.number_ext)
    }
}

/// A service as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceView {
    pub id: i64,
    pub partner_id: i64,
    pub code: String,
    pub module: Option<String>,
    pub status: ServiceStatus,
    /// The approved terms in force, if any.
    pub live: Option<Revision>,
    /// A revision waiting to be submitted or decided.
    pub pending: Option<Revision>,
    #[serde(serialize_with = "crate::api::time::ms")]
    pub created_at: i64,
    #[serde(serialize_with = "crate::api::time::ms")]
    pub updated_at: i64,
}

/// One audit record.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AuditEntry {
    pub id: i64,
    pub revision_id: Option<i64>,
    pub action: String,
    pub from_status: Option<String>,
    pub to_status: String,
    pub actor: String,
    pub reason: Option<String>,
    #[serde(serialize_with = "crate::api::time::ms")]
    pub at: i64,
}

/// Why a service operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("no such service")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    WrongState(String),
    /// The router would never deliver a keyword or code to the service (issue 10
    /// item 10); the reason names it.
    #[error("{0}")]
    Unreachable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for ServiceError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

type Tx = sqlx::Transaction<'static, sqlx::Any>;

#[derive(sqlx::FromRow)]
struct ServiceRow {
    id: i64,
    partner_id: i64,
    code: String,
    module: Option<String>,
    status: String,
    live_revision_id: Option<i64>,
    pending_revision_id: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

#[derive(sqlx::FromRow)]
struct RevisionRow {
    id: i64,
    seq: i64,
    name: String,
    description: String,
    keywords: String,
    fee_type: String,
    price_fen: i64,
    operators: String,
    monthly_max_messages: Option<i64>,
    number_ext: String,
    status: String,
    created_at: i64,
    submitted_at: Option<i64>,
    decided_at: Option<i64>,
    decided_by: Option<String>,
    decision_reason: Option<String>,
}

impl TryFrom<RevisionRow> for Revision {
    type Error = ServiceError;

    fn try_from(r: RevisionRow) -> Result<Self, ServiceError> {
        let corrupt = |what: &str| {
            ServiceError::Store(StoreError::Corrupt(format!(
                "service revision {}: bad {what}",
                r.id
            )))
        };
        Ok(Self {
            id: r.id,
            seq: r.seq,
            keywords: serde_json::from_str(&r.keywords).map_err(|_| corrupt("keywords"))?,
            fee_type: FeeType::parse(&r.fee_type).ok_or_else(|| corrupt("fee_type"))?,
            operators: serde_json::from_str(&r.operators).map_err(|_| corrupt("operators"))?,
            name: r.name,
            description: r.description,
            price_fen: r.price_fen,
            monthly_max_messages: r.monthly_max_messages,
            number_ext: r.number_ext,
            status: r.status,
            created_at: r.created_at,
            submitted_at: r.submitted_at,
            decided_at: r.decided_at,
            decided_by: r.decided_by,
            decision_reason: r.decision_reason,
        })
    }
}

const SERVICE_COLUMNS: &str = "id, partner_id, code, module, status, live_revision_id, pending_revision_id, created_at, updated_at";
const REVISION_COLUMNS: &str = "id, seq, name, description, keywords, fee_type, price_fen, operators, monthly_max_messages, number_ext, status, created_at, submitted_at, decided_at, decided_by, decision_reason";

fn status_of(row: &ServiceRow) -> Result<ServiceStatus, ServiceError> {
    ServiceStatus::parse(&row.status).ok_or_else(|| {
        ServiceError::Store(StoreError::Corrupt(format!(
            "service {}: bad status `{}`",
            row.id, row.status
        )))
    })
}

async fn revision<'e, E>(executor: E, id: Option<i64>) -> Result<Option<Revision>, ServiceError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let Some(id) = id else { return Ok(None) };
    let row: Option<RevisionRow> = sqlx::query_as(&format!(
        "SELECT {REVISION_COLUMNS} FROM service_revisions WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(executor)
    .await?;
    row.map(Revision::try_from).transpose()
}

async fn view(store: &Store, row: ServiceRow) -> Result<ServiceView, ServiceError> {
    Ok(ServiceView {
        status: status_of(&row)?,
        live: revision(store.pool(), row.live_revision_id).await?,
        pending: revision(store.pool(), row.pending_revision_id).await?,
        id: row.id,
        partner_id: row.partner_id,
        code: row.code,
        module: row.module,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

/// Read a service, as `partner_id` (None: the admin, who sees every service).
async fn row(store: &Store, partner_id: Option<i64>, id: i64) -> Result<ServiceRow, ServiceError> {
    let row: Option<ServiceRow> = sqlx::query_as(&format!(
        "SELECT {SERVICE_COLUMNS} FROM services WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(store.pool())
    .await?;
    row.filter(|r| partner_id.is_none_or(|p| p == r.partner_id))
        .ok_or(ServiceError::NotFound)
}

/// Lock and read a service inside a write transaction.
async fn row_in(tx: &mut Tx, id: i64) -> Result<ServiceRow, ServiceError> {
    let row: Option<ServiceRow> = sqlx::query_as(&format!(
        "SELECT {SERVICE_COLUMNS} FROM services WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    row.ok_or(ServiceError::NotFound)
}

/// Record one transition.
#[allow(clippy::too_many_arguments)]
async fn audit_in(
    tx: &mut Tx,
    service_id: i64,
    revision_id: Option<i64>,
    action: &str,
    from: Option<&str>,
    to: &str,
    actor: &str,
    reason: Option<&str>,
    at: i64,
) -> Result<(), ServiceError> {
    sqlx::query(
        "INSERT INTO service_audit (service_id, revision_id, action, from_status, to_status, actor, reason, at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(service_id)
    .bind(revision_id)
    .bind(action)
    .bind(from)
    .bind(to)
    .bind(actor)
    .bind(reason)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_revision(
    tx: &mut Tx,
    service_id: i64,
    terms: &ServiceTerms,
    at: i64,
) -> Result<i64, ServiceError> {
    let (seq,): (i64,) = sqlx::query_as(
        "SELECT COALESCE(MAX(seq), 0) + 1 FROM service_revisions WHERE service_id = $1",
    )
    .bind(service_id)
    .fetch_one(&mut **tx)
    .await?;
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO service_revisions (service_id, seq, name, description, keywords, fee_type, price_fen,
            operators, monthly_max_messages, number_ext, status, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'draft', $11) RETURNING id",
    )
    .bind(service_id)
    .bind(seq)
    .bind(&terms.name)
    .bind(&terms.description)
    .bind(serde_json::to_string(&terms.keywords).unwrap_or_default())
    .bind(terms.fee_type.as_str())
    .bind(terms.price_fen)
    .bind(serde_json::to_string(&terms.operators).unwrap_or_default())
    .bind(terms.monthly_max_messages)
    .bind(&terms.number_ext)
    .bind(at)
    .fetch_one(&mut **tx)
    .await?;
    Ok(id)
}

/// Declare a new service (status `draft`) with its first revision.
pub async fn create(
    store: &Store,
    partner_id: i64,
    actor: &str,
    code: &str,
    module: Option<&str>,
    terms: &ServiceTerms,
    known_operators: &[String],
) -> Result<ServiceView, ServiceError> {
    let code = normalize_code(code)?;
    let terms = validate_terms(terms, known_operators)?;
    reachable_alone(&code, &terms)?;
    let now = now_ms();
    let mut tx = store.begin_write().await?;
    let taken: Option<(i64,)> = sqlx::query_as("SELECT id FROM services WHERE code = $1")
        .bind(&code)
        .fetch_optional(&mut *tx)
        .await?;
    if taken.is_some() {
        return Err(ServiceError::Conflict(format!(
            "the service code `{code}` is taken"
        )));
    }
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO services (partner_id, code, module, status, created_at, updated_at)
         VALUES ($1, $2, $3, 'draft', $4, $4) RETURNING id",
    )
    .bind(partner_id)
    .bind(&code)
    .bind(module)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    let revision_id = insert_revision(&mut tx, id, &terms, now).await?;
    sqlx::query("UPDATE services SET pending_revision_id = $1 WHERE id = $2")
        .bind(revision_id)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    audit_in(
        &mut tx,
        id,
        Some(revision_id),
        "create",
        None,
        "draft",
        actor,
        None,
        now,
    )
    .await?;
    tx.commit().await?;
    get(store, Some(partner_id), id).await
}

/// Propose new terms (and optionally a new module): a new draft revision that
/// replaces any undecided one. The approved terms stay in force until it is approved.
pub async fn revise(
    store: &Store,
    partner_id: i64,
    id: i64,
    actor: &str,
    module: Option<&str>,
    terms: &ServiceTerms,
    known_operators: &[String],
) -> Result<ServiceView, ServiceError> {
    let terms = validate_terms(terms, known_operators)?;
    let now = now_ms();
    let current = row(store, Some(partner_id), id).await?;
    reachable_alone(&current.code, &terms)?;
    let mut tx = store.begin_write().await?;
    let service = row_in(&mut tx, id).await?;
    if let Some(old) = service.pending_revision_id {
        sqlx::query("UPDATE service_revisions SET status = 'withdrawn' WHERE id = $1")
            .bind(old)
            .execute(&mut *tx)
            .await?;
    }
    let revision_id = insert_revision(&mut tx, id, &terms, now).await?;
    let status = if service.live_revision_id.is_some() {
        service.status.clone()
    } else {
        "draft".to_string()
    };
    sqlx::query(
        "UPDATE services SET pending_revision_id = $1, status = $2, module = COALESCE($3, module), updated_at = $4 WHERE id = $5",
    )
    .bind(revision_id)
    .bind(&status)
    .bind(module)
    .bind(now)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    audit_in(
        &mut tx,
        id,
        Some(revision_id),
        "revise",
        Some(&service.status),
        &status,
        actor,
        None,
        now,
    )
    .await?;
    tx.commit().await?;
    get(store, Some(partner_id), id).await
}

/// Submit the pending draft for approval.
pub async fn submit(
    store: &Store,
    partner_id: i64,
    id: i64,
    actor: &str,
) -> Result<ServiceView, ServiceError> {
    row(store, Some(partner_id), id).await?;
    let now = now_ms();
    let mut tx = store.begin_write().await?;
    let service = row_in(&mut tx, id).await?;
    let pending = revision(&mut *tx, service.pending_revision_id)
        .await?
        .filter(|r| r.status == "draft")
        .ok_or_else(|| ServiceError::WrongState("there is no draft revision to submit".into()))?;
    sqlx::query(
        "UPDATE service_revisions SET status = 'submitted', submitted_at = $1 WHERE id = $2",
    )
    .bind(now)
    .bind(pending.id)
    .execute(&mut *tx)
    .await?;
    let status = if service.live_revision_id.is_some() {
        service.status.clone()
    } else {
        "submitted".to_string()
    };
    sqlx::query("UPDATE services SET status = $1, updated_at = $2 WHERE id = $3")
        .bind(&status)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    audit_in(
        &mut tx,
        id,
        Some(pending.id),
        "submit",
        Some(&service.status),
        &status,
        actor,
        None,
        now,
    )
    .await?;
    tx.commit().await?;
    get(store, Some(partner_id), id).await
}

/// Approve (`approve = true`) or reject the submitted revision. Approval puts it in
/// force; keywords, code and number must not clash with another live service.
pub async fn decide(
    store: &Store,
    id: i64,
    approve: bool,
    actor: &str,
    reason: &str,
) -> Result<ServiceView, ServiceError> {
    let now = now_ms();
    let mut tx = store.begin_write().await?;
    let service = row_in(&mut tx, id).await?;
    let pending = revision(&mut *tx, service.pending_revision_id)
        .await?
        .filter(|r| r.status == "submitted")
        .ok_or_else(|| {
            ServiceError::WrongState("there is no submitted revision to decide".into())
        })?;
    if approve {
        check_clashes(&mut tx, &service, &pending).await?;
    }
    let (revision_status, action) = if approve {
        ("approved", "approve")
    } else {
        ("rejected", "reject")
    };
    sqlx::query(
        "UPDATE service_revisions SET status = $1, decided_at = $2, decided_by = $3, decision_reason = $4 WHERE id = $5",
    )
    .bind(revision_status)
    .bind(now)
    .bind(actor)
    .bind(reason)
    .bind(pending.id)
    .execute(&mut *tx)
    .await?;
    let status = match (approve, service.status.as_str(), service.live_revision_id) {
        (_, "suspended", _) => "suspended",
        (true, _, _) => "approved",
        (false, _, Some(_)) => "approved",
        (false, _, None) => "rejected",
    };
    if approve {
        if let Some(old) = service.live_revision_id {
            sqlx::query("UPDATE service_revisions SET status = 'superseded' WHERE id = $1")
                .bind(old)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "UPDATE services SET live_revision_id = $1, pending_revision_id = NULL, status = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(pending.id)
        .bind(status)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    } else {
        sqlx::query(
            "UPDATE services SET pending_revision_id = NULL, status = $1, updated_at = $2 WHERE id = $3",
        )
        .bind(status)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    }
    audit_in(
        &mut tx,
        id,
        Some(pending.id),
        action,
        Some(&service.status),
        status,
        actor,
        Some(reason),
        now,
    )
    .await?;
    tx.commit().await?;
    get(store, None, id).await
}

/// What a declaration can be refused for on its own, before any approval: a keyword
/// equal to its own code, or one that reads as a host command with it.
fn reachable_alone(code: &str, terms: &ServiceTerms) -> Result<(), ServiceError> {
    let own = Routable {
        code,
        keywords: &terms.keywords,
    };
    check_reachable(own, &[]).map_err(|reason| ServiceError::Invalid {
        field: "keywords",
        reason,
    })
}

/// Keywords, codes and numbers are how MOs find a service: no two live services
/// may share one, and every keyword and the code must reach this service through
/// the router ([`check_reachable`], issue 10 item 10).
async fn check_clashes(
    tx: &mut Tx,
    service: &ServiceRow,
    pending: &Revision,
) -> Result<(), ServiceError> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT s.code, r.keywords, r.number_ext FROM services s
         JOIN service_revisions r ON r.id = s.live_revision_id WHERE s.id <> $1",
    )
    .bind(service.id)
    .fetch_all(&mut **tx)
    .await?;
    let mut others = Vec::with_capacity(rows.len());
    for (code, keywords, number_ext) in rows {
        if number_ext == pending.number_ext {
            return Err(ServiceError::Conflict(format!(
                "number extension {} is used by service {code}",
                pending.number_ext
            )));
        }
        let keywords: Vec<String> = serde_json::from_str(&keywords).unwrap_or_default();
        others.push((code, keywords));
    }
    let others: Vec<Routable<'_>> = others
        .iter()
        .map(|(code, keywords)| Routable { code, keywords })
        .collect();
    let own = Routable {
        code: &service.code,
        keywords: &pending.keywords,
    };
    check_reachable(own, &others).map_err(ServiceError::Unreachable)
}

/// Suspend or resume a service in an open transaction (used by compliance, which
/// also holds and releases its queued MTs in the same transaction).
pub(crate) async fn set_suspended_in(
    tx: &mut Tx,
    id: i64,
    suspended: bool,
    actor: &str,
    reason: &str,
    at: i64,
) -> Result<(), ServiceError> {
    let service = row_in(tx, id).await?;
    let to = match (suspended, service.live_revision_id) {
        (true, _) => "suspended",
        (false, Some(_)) => "approved",
        (false, None) => "draft",
    };
    if suspended == (service.status == "suspended") {
        return Err(ServiceError::WrongState(format!(
            "the service is already {}",
            service.status
        )));
    }
    sqlx::query("UPDATE services SET status = $1, updated_at = $2 WHERE id = $3")
        .bind(to)
        .bind(at)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    let action = if suspended { "suspend" } else { "resume" };
    audit_in(
        tx,
        id,
        None,
        action,
        Some(&service.status),
        to,
        actor,
        Some(reason),
        at,
    )
    .await?;
    Ok(())
}

/// One service, as `partner_id` (None: the admin).
pub async fn get(
    store: &Store,
    partner_id: Option<i64>,
    id: i64,
) -> Result<ServiceView, ServiceError> {
    let row = row(store, partner_id, id).await?;
    view(store, row).await
}

/// Services of a partner (or all, for the admin), optionally with one status.
pub async fn list(
    store: &Store,
    partner_id: Option<i64>,
    status: Option<ServiceStatus>,
) -> Result<Vec<ServiceView>, ServiceError> {
    let rows: Vec<ServiceRow> = sqlx::query_as(&format!(
        "SELECT {SERVICE_COLUMNS} FROM services
         WHERE ($1 IS NULL OR partner_id = $1) AND ($2 IS NULL OR status = $2) ORDER BY id"
    ))
    .bind(partner_id)
    .bind(status.map(ServiceStatus::as_str))
    .fetch_all(store.pool())
    .await?;
    let mut views = Vec::with_capacity(rows.len());
    for row in rows {
        views.push(view(store, row).await?);
    }
    Ok(views)
}

/// The audit trail of a service.
pub async fn audit(
    store: &Store,
    partner_id: Option<i64>,
    id: i64,
) -> Result<Vec<AuditEntry>, ServiceError> {
    row(store, partner_id, id).await?;
    Ok(sqlx::query_as(
        "SELECT id, revision_id, action, from_status, to_status, actor, reason, at
         FROM service_audit WHERE service_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(store.pool())
    .await?)
}

/// A service with its terms in force; `None` if it has never been approved.
pub async fn live(store: &Store, service_id: i64) -> Result<Option<LiveService>, ServiceError> {
    let row: Option<ServiceRow> = sqlx::query_as(&format!(
        "SELECT {SERVICE_COLUMNS} FROM services WHERE id = $1"
    ))
    .bind(service_id)
    .fetch_optional(store.pool())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let Some(revision) = revision(store.pool(), row.live_revision_id).await? else {
        return Ok(None);
    };
    Ok(Some(LiveService {
        status: status_of(&row)?,
        id: row.id,
        partner_id: row.partner_id,
        code: row.code,
        module: row.module,
        revision,
    }))
}

/// Every service with terms in force (what the keyword router matches against, on
/// each MO): two queries however many services there are.
pub async fn all_live(store: &Store) -> Result<Vec<LiveService>, ServiceError> {
    let rows: Vec<ServiceRow> = sqlx::query_as(&format!(
        "SELECT {SERVICE_COLUMNS} FROM services WHERE live_revision_id IS NOT NULL ORDER BY id"
    ))
    .fetch_all(store.pool())
    .await?;
    let revisions: Vec<RevisionRow> = sqlx::query_as(&format!(
        "SELECT {REVISION_COLUMNS} FROM service_revisions
         WHERE id IN (SELECT live_revision_id FROM services WHERE live_revision_id IS NOT NULL)"
    ))
    .fetch_all(store.pool())
    .await?;
    let mut revisions: std::collections::HashMap<i64, Revision> = revisions
        .into_iter()
        .map(|r| Revision::try_from(r).map(|r| (r.id, r)))
        .collect::<Result<_, _>>()?;
    let mut services = Vec::with_capacity(rows.len());
    for row in rows {
        let Some(revision) = row.live_revision_id.and_then(|id| revisions.remove(&id)) else {
            continue;
        };
        services.push(LiveService {
            status: status_of(&row)?,
            id: row.id,
            partner_id: row.partner_id,
            code: row.code,
            module: row.module,
            revision,
        });
    }
    Ok(services)
}
