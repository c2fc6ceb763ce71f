//! Activations the admin approves (issue 17 item 1): per partner, the platform may
//! require the admin's approval of every activation (`partners.activation_approval`,
//! a setting the admin toggles). An activation of such a partner is then a pending
//! request, at most one per module; the admin approves it (the version goes live
//! in the same transaction) or refuses it with a reason. A rollback needs no
//! approval: it returns to a version that was live before.

use serde::Serialize;

use super::RegistryError;
use crate::store::{Store, now_ms};

/// An activation waiting for, or decided by, the admin.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ActivationRequest {
    pub id: i64,
    /// The partner's name.
    pub partner: String,
    pub module: String,
    /// The version number to make live.
    pub version: i64,
    /// `pending`, `approved`, `refused`.
    pub status: String,
    pub requested_by: String,
    #[serde(serialize_with = "crate::api::time::ms")]
    #[schema(value_type = String, format = DateTime)]
    pub requested_at: i64,
    pub decided_by: Option<String>,
    #[serde(serialize_with = "crate::api::time::opt_ms")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub decided_at: Option<i64>,
    /// The admin's reason (a refusal needs one).
    pub reason: Option<String>,
}

/// What an activation did: the version is live, or it waits for the admin.
#[derive(Debug, Clone)]
pub enum Activation {
    Live(Box<super::ModuleInfo>),
    Pending(ActivationRequest),
}

#[derive(sqlx::FromRow)]
pub(super) struct RequestRow {
    pub id: i64,
    pub partner_id: i64,
    pub partner: String,
    pub module_id: i64,
    pub module: String,
    pub version_id: i64,
    pub version: i64,
    pub status: String,
    pub requested_by: String,
    pub requested_at: i64,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub reason: Option<String>,
}

impl From<RequestRow> for ActivationRequest {
    fn from(r: RequestRow) -> Self {
        Self {
            id: r.id,
            partner: r.partner,
            module: r.module,
            version: r.version,
            status: r.status,
            requested_by: r.requested_by,
            requested_at: r.requested_at,
            decided_by: r.decided_by,
            decided_at: r.decided_at,
            reason: r.reason,
        }
    }
}

const SELECT: &str = "SELECT r.id, r.partner_id, p.name AS partner, r.module_id, m.name AS module,
    r.version_id, v.seq AS version, r.status, r.requested_by, r.requested_at, r.decided_by,
    r.decided_at, r.reason
    FROM activation_requests r
    JOIN partners p ON p.id = r.partner_id
    JOIN modules m ON m.id = r.module_id
    JOIN module_versions v ON v.id = r.version_id";

/// Whether the partner's activations wait for the admin.
pub(super) async fn required(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    partner_id: i64,
) -> Result<bool, RegistryError> {
    let (flag,): (i64,) = sqlx::query_as("SELECT activation_approval FROM partners WHERE id = $1")
        .bind(partner_id)
        .fetch_one(&mut **tx)
        .await?;
    Ok(flag != 0)
}

/// Open a pending request (in the caller's transaction, which holds the module's
/// lock).
///
/// # Errors
/// [`RegistryError::ActivationPending`] when the module already has one.
pub(super) async fn open(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    partner_id: i64,
    (module_id, module): (i64, &str),
    version_id: i64,
    actor: &str,
) -> Result<ActivationRequest, RegistryError> {
    let waiting: Option<(i64,)> = sqlx::query_as(
        "SELECT id FROM activation_requests WHERE module_id = $1 AND status = 'pending'",
    )
    .bind(module_id)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some((request,)) = waiting {
        return Err(RegistryError::ActivationPending {
            module: module.to_string(),
            request,
        });
    }
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO activation_requests (partner_id, module_id, version_id, status, requested_by, requested_at)
         VALUES ($1, $2, $3, 'pending', $4, $5) RETURNING id",
    )
    .bind(partner_id)
    .bind(module_id)
    .bind(version_id)
    .bind(actor)
    .bind(now_ms())
    .fetch_one(&mut **tx)
    .await?;
    let row: RequestRow = sqlx::query_as(&format!("{SELECT} WHERE r.id = $1"))
        .bind(id)
        .fetch_one(&mut **tx)
        .await?;
    Ok(row.into())
}

/// One request, locked for its decision.
pub(super) async fn lock(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: i64,
) -> Result<RequestRow, RegistryError> {
    // Touching the row takes its lock on both backends.
    let touched = sqlx::query("UPDATE activation_requests SET status = status WHERE id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    if touched.rows_affected() == 0 {
        return Err(RegistryError::NoSuchRequest(id));
    }
    Ok(sqlx::query_as(&format!("{SELECT} WHERE r.id = $1"))
        .bind(id)
        .fetch_one(&mut **tx)
        .await?)
}

/// Record the decision of a locked request.
pub(super) async fn decide(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: i64,
    status: &str,
    actor: &str,
    reason: Option<&str>,
) -> Result<ActivationRequest, RegistryError> {
    sqlx::query(
        "UPDATE activation_requests SET status = $2, decided_by = $3, decided_at = $4, reason = $5
         WHERE id = $1",
    )
    .bind(id)
    .bind(status)
    .bind(actor)
    .bind(now_ms())
    .bind(reason)
    .execute(&mut **tx)
    .await?;
    let row: RequestRow = sqlx::query_as(&format!("{SELECT} WHERE r.id = $1"))
        .bind(id)
        .fetch_one(&mut **tx)
        .await?;
    Ok(row.into())
}

/// The pending request of a module, if any.
pub(super) async fn pending_of(
    store: &Store,
    module_id: i64,
) -> Result<Option<ActivationRequest>, RegistryError> {
    let row: Option<RequestRow> = sqlx::query_as(&format!(
        "{SELECT} WHERE r.module_id = $1 AND r.status = 'pending'"
    ))
    .bind(module_id)
    .fetch_optional(store.pool())
    .await?;
    Ok(row.map(Into::into))
}

/// Requests with `status` (every status for `None`), newest first, ids below
/// `before`: the admin's queue.
///
/// # Errors
/// Store failures.
pub async fn list(
    store: &Store,
    status: Option<&str>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<ActivationRequest>, RegistryError> {
    let rows: Vec<RequestRow> = sqlx::query_as(&format!(
        "{SELECT} WHERE ($1 = '' OR r.status = $1) AND r.id < $2 ORDER BY r.id DESC LIMIT $3"
    ))
    .bind(status.unwrap_or(""))
    .bind(before.unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(store.pool())
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// Turn the approval requirement of partner `name` on or off (the admin's
/// setting); returns false when there is no such partner.
///
/// # Errors
/// Store failures.
pub async fn set_required(
    store: &Store,
    name: &str,
    required: bool,
) -> Result<bool, RegistryError> {
    let done = sqlx::query("UPDATE partners SET activation_approval = $2 WHERE name = $1")
        .bind(name)
        .bind(i64::from(required))
        .execute(store.pool())
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Whether partner `partner_id`'s activations wait for the admin.
///
/// # Errors
/// Store failures.
pub async fn is_required(store: &Store, partner_id: i64) -> Result<bool, RegistryError> {
    let row: Option<(i64,)> =
        sqlx::query_as("SELECT activation_approval FROM partners WHERE id = $1")
            .bind(partner_id)
            .fetch_optional(store.pool())
            .await?;
    Ok(row.is_some_and(|(flag,)| flag != 0))
}
