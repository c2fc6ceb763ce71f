//! What the platform tells a partner about its own services (R-7.1: each partner
//! reads only its own): today, a push run that gave up on its bulletin, with why.
//! Read with `GET /v1/notices`.

use serde::Serialize;

use crate::store::{Store, StoreError, now_ms};

/// A notice as stored.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Notice {
    pub id: i64,
    pub partner_id: i64,
    /// e.g. `push-run-failed`.
    pub kind: String,
    /// A one-line summary.
    pub subject: String,
    pub message: String,
    /// The push run it is about, if any.
    pub run_id: Option<i64>,
    #[serde(serialize_with = "crate::api::time::ms")]
    pub at: i64,
}

/// A notice to raise.
#[derive(Debug, Clone)]
pub struct NewNotice<'a> {
    pub partner_id: i64,
    pub kind: &'a str,
    pub subject: &'a str,
    pub message: &'a str,
    pub run_id: Option<i64>,
}

/// Record a notice for a partner, on a connection or inside the transaction that
/// records what it is about (`&mut *tx`).
///
/// # Errors
/// [`StoreError`] when the store fails.
pub async fn raise(
    conn: &mut sqlx::AnyConnection,
    notice: &NewNotice<'_>,
) -> Result<i64, StoreError> {
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO partner_notices (partner_id, kind, subject, message, run_id, at)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(notice.partner_id)
    .bind(notice.kind)
    .bind(notice.subject)
    .bind(notice.message)
    .bind(notice.run_id)
    .bind(now_ms())
    .fetch_one(&mut *conn)
    .await?;
    Ok(id)
}

/// A partner's notices (or everyone's, for `None`), newest first; `before` a
/// notice id for paging, at most `limit` (1-500).
///
/// # Errors
/// [`StoreError`] when the store fails.
pub async fn list(
    store: &Store,
    partner_id: Option<i64>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<Notice>, StoreError> {
    const COLUMNS: &str = "id, partner_id, kind, subject, message, run_id, at";
    let query = match partner_id {
        Some(_) => format!(
            "SELECT {COLUMNS} FROM partner_notices WHERE partner_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
        ),
        // $1 is the same placeholder, always true, so both queries bind alike.
        None => format!(
            "SELECT {COLUMNS} FROM partner_notices WHERE $1 = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
        ),
    };
    Ok(sqlx::query_as(&query)
        .bind(partner_id.unwrap_or(0))
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit.clamp(1, 501))
        .fetch_all(store.pool())
        .await?)
}
