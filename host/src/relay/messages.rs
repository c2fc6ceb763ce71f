//! What the API shows of MTs: the row, its segments with operator ids, and its
//! status history. Partner-scoped: a partner sees only its own messages.

use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError};

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct MessageSummary {
    pub id: i64,
    pub partner_id: Option<i64>,
    pub service: Option<String>,
    pub recipient: String,
    pub operator: String,
    pub text: String,
    pub content_sha256: String,
    pub segments: i64,
    pub charge_plan: String,
    pub is_test: i64,
    pub status: String,
    pub attempts: i64,
    pub resent_unknown: i64,
    pub failure_reason: Option<String>,
    #[serde(serialize_with = "crate::api::time::ms")]
    pub created_at: i64,
    #[serde(serialize_with = "crate::api::time::opt_ms")]
    pub done_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct SegmentView {
    pub seq: i64,
    pub operator_message_id: Option<String>,
    pub status: String,
    pub error: Option<String>,
    #[serde(serialize_with = "crate::api::time::opt_ms")]
    pub submitted_at: Option<i64>,
    #[serde(serialize_with = "crate::api::time::opt_ms")]
    pub done_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct EventView {
    pub status: String,
    pub detail: Option<String>,
    #[serde(serialize_with = "crate::api::time::ms")]
    pub at: i64,
}

/// One MT with its segments and history.
#[derive(Debug, Clone, Serialize)]
pub struct MessageDetail {
    #[serde(flatten)]
    pub message: MessageSummary,
    pub segment_status: Vec<SegmentView>,
    pub history: Vec<EventView>,
}

/// Filters of the message list.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct MessageFilter {
    pub status: Option<String>,
    pub recipient: Option<String>,
    /// Only ids below this (paging backwards from the newest).
    pub before: Option<i64>,
    /// At most this many (1-501: a page and one more).
    pub limit: Option<i64>,
}

const COLUMNS: &str =
    "id, partner_id, service, recipient, operator, text, content_sha256, segments, charge_plan,
    is_test, status, attempts, resent_unknown, failure_reason, created_at, done_at";

/// One message; `partner` None means any (the admin).
pub async fn get(
    store: &Store,
    id: i64,
    partner: Option<i64>,
) -> Result<Option<MessageDetail>, StoreError> {
    let message: Option<MessageSummary> = match partner {
        Some(p) => {
            sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM messages WHERE id = $1 AND partner_id = $2"
            ))
            .bind(id)
            .bind(p)
            .fetch_optional(store.pool())
            .await?
        }
        None => {
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM messages WHERE id = $1"))
                .bind(id)
                .fetch_optional(store.pool())
                .await?
        }
    };
    let Some(message) = message else {
        return Ok(None);
    };
    let segment_status = sqlx::query_as(
        "SELECT seq, operator_message_id, status, error, submitted_at, done_at
         FROM message_segments WHERE message_id = $1 ORDER BY seq",
    )
    .bind(id)
    .fetch_all(store.pool())
    .await?;
    let history = sqlx::query_as(
        "SELECT status, detail, at FROM message_events WHERE message_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(store.pool())
    .await?;
    Ok(Some(MessageDetail {
        message,
        segment_status,
        history,
    }))
}

/// The newest messages matching `filter`; `partner` None means every partner's
/// and the platform's own (test sends).
pub async fn list(
    store: &Store,
    partner: Option<i64>,
    filter: &MessageFilter,
) -> Result<Vec<MessageSummary>, StoreError> {
    // Each filter is always bound; an absent one compares against a value that
    // matches everything, so the statement text stays fixed.
    let sql = format!(
        "SELECT {COLUMNS} FROM messages
         WHERE (CAST($1 AS BIGINT) = 0 OR partner_id = $2)
           AND ($3 = '' OR status = $3)
           AND ($4 = '' OR recipient = $4)
           AND id < $5
         ORDER BY id DESC LIMIT $6"
    );
    Ok(sqlx::query_as(&sql)
        .bind(i64::from(partner.is_some()))
        .bind(partner.unwrap_or(0))
        .bind(filter.status.clone().unwrap_or_default())
        .bind(filter.recipient.clone().unwrap_or_default())
        .bind(filter.before.unwrap_or(i64::MAX))
        .bind(filter.limit.unwrap_or(50).clamp(1, 501))
        .fetch_all(store.pool())
        .await?)
}
