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

/// Which code wrote an MT, from what (issue 17 item 6, R-3.6): any message leads
/// to the exact module version and the inputs of the call that wrote it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Provenance {
    /// The module's name (`null`: a platform text, or a module since deleted).
    pub module: Option<String>,
    /// The version number within the module.
    pub module_version: Option<i64>,
    /// The stored version's id (`module_versions.id`).
    pub module_version_id: Option<i64>,
    /// SHA-256 of the component's bytes: the exact code.
    pub module_sha256: Option<String>,
    /// SHA-256 of the call's inputs: the export's name, a newline, the request as
    /// JSON (`bulletin` with service, push id and date; `on-mo` with subscriber,
    /// service, text and time; `on-subscribe`/`on-unsubscribe`).
    pub input_sha256: Option<String>,
    /// The push run the MT belongs to.
    pub push_run_id: Option<i64>,
    /// The MO the MT answered (replies, welcomes, notices).
    pub mo_id: Option<i64>,
}

/// One MT with its segments, history and provenance.
#[derive(Debug, Clone, Serialize)]
pub struct MessageDetail {
    #[serde(flatten)]
    pub message: MessageSummary,
    pub provenance: Provenance,
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
    let provenance = sqlx::query_as(
        "SELECT mo.name AS module, v.seq AS module_version, m.module_version_id, m.module_sha256,
            m.input_sha256, m.push_run_id, m.mo_id
         FROM messages m
         LEFT JOIN module_versions v ON v.id = m.module_version_id
         LEFT JOIN modules mo ON mo.id = v.module_id
         WHERE m.id = $1",
    )
    .bind(id)
    .fetch_one(store.pool())
    .await?;
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
        provenance,
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
    // Only the filters given are in the statement, so the store reads the index that
    // fits (`messages_partner`, `messages_recipient`): a filter that "matches
    // everything when empty" makes it walk every MT (1.0 s per page under a push of
    // a million, for a partner with few MTs). The values are bound.
    // An empty filter is no filter (as `?status=` reads).
    let status = filter.status.as_deref().filter(|s| !s.is_empty());
    let recipient = filter.recipient.as_deref().filter(|r| !r.is_empty());
    let mut clauses: Vec<String> = Vec::new();
    let mut clause = |column: &'static str| {
        clauses.push(format!("{column} = ${}", clauses.len() + 1));
    };
    if partner.is_some() {
        clause("partner_id");
    }
    if status.is_some() {
        clause("status");
    }
    if recipient.is_some() {
        clause("recipient");
    }
    let before = clauses.len() + 1;
    clauses.push(format!("id < ${before}"));
    let sql = format!(
        "SELECT {COLUMNS} FROM messages WHERE {} ORDER BY id DESC LIMIT ${}",
        clauses.join(" AND "),
        before + 1
    );
    let mut query = sqlx::query_as(&sql);
    if let Some(partner) = partner {
        query = query.bind(partner);
    }
    if let Some(status) = status {
        query = query.bind(status.to_string());
    }
    if let Some(recipient) = recipient {
        query = query.bind(recipient.to_string());
    }
    Ok(query
        .bind(filter.before.unwrap_or(i64::MAX))
        .bind(filter.limit.unwrap_or(50).clamp(1, 501))
        .fetch_all(store.pool())
        .await?)
}

/// One platform day of MT traffic (issue 14 item 3: the console's volume and
/// delivery-rate charts, R-1.3).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct DayVolume {
    /// `YYYY-MM-DD` in the platform time zone.
    pub day: String,
    /// MTs created that day.
    pub total: i64,
    pub delivered: i64,
    /// Failed, undeliverable or expired.
    pub failed: i64,
}

/// MTs per platform day for the last `days` days (oldest first, today last, days
/// without traffic included): one partner's, or every MT for `None`. Counted in
/// hour buckets by the store and folded into platform days here, so any whole-hour
/// time zone is exact.
///
/// # Errors
/// A store error.
pub async fn daily_volume(
    store: &Store,
    partner: Option<i64>,
    days: u16,
) -> Result<Vec<DayVolume>, StoreError> {
    let (keys, since) = last_days(days);
    let rows: Vec<(i64, String, i64)> = sqlx::query_as(
        "SELECT created_at / 3600000, status, COUNT(*) FROM messages
         WHERE created_at >= $1 AND (CAST($2 AS BIGINT) = 0 OR partner_id = $3)
         GROUP BY created_at / 3600000, status",
    )
    .bind(since)
    .bind(i64::from(partner.is_some()))
    .bind(partner.unwrap_or(0))
    .fetch_all(store.pool())
    .await?;
    let mut out: Vec<DayVolume> = keys
        .into_iter()
        .map(|day| DayVolume {
            day,
            ..DayVolume::default()
        })
        .collect();
    for (hour, status, count) in rows {
        let day = crate::clock::day_key(hour.saturating_mul(3_600_000));
        if let Some(d) = out.iter_mut().find(|d| d.day == day) {
            d.total += count;
            match status.as_str() {
                "delivered" => d.delivered += count,
                "failed" | "undeliverable" | "expired" => d.failed += count,
                _ => {}
            }
        }
    }
    Ok(out)
}

/// The last `days` platform days (`YYYY-MM-DD`, oldest first) and the Unix ms the
/// first of them starts at.
pub fn last_days(days: u16) -> (Vec<String>, i64) {
    let today = crate::clock::day_of_ms(crate::store::now_ms());
    let first = today
        .checked_sub(jiff::Span::new().days(i64::from(days.max(1)) - 1))
        .unwrap_or(today);
    let keys = (0..i64::from(days.max(1)))
        .filter_map(|i| first.checked_add(jiff::Span::new().days(i)).ok())
        .map(|d| d.to_string())
        .collect();
    (keys, crate::clock::day_start_ms(first))
}

/// MTs waiting in the outbox of one operator in one state (the console's queue
/// depth beside the binds).
#[derive(Debug, Clone, Serialize, sqlx::FromRow, PartialEq, Eq)]
pub struct QueueDepth {
    pub operator: String,
    /// `queued`, `submitting`, `held` or `submitted` (waiting for a receipt).
    pub status: String,
    pub count: i64,
}

/// The outbox's unfinished MTs by operator and state.
///
/// # Errors
/// A store error.
pub async fn queue_depth(store: &Store) -> Result<Vec<QueueDepth>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT operator, status, COUNT(*) AS count FROM messages
         WHERE status IN ('queued', 'submitting', 'held', 'submitted')
         GROUP BY operator, status ORDER BY operator, status",
    )
    .fetch_all(store.pool())
    .await?)
}
