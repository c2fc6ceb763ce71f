//! The partners' content libraries: items uploaded over the API, read by modules
//! through `tongdao:partner/content` (R-1.1: the partner decides content).

use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError, now_ms};

/// One item to add.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewItem {
    /// Unique within the collection; generated when absent.
    pub id: Option<String>,
    pub text: String,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// One stored item.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Item {
    pub id: String,
    pub position: i64,
    pub text: String,
    pub tags: Vec<String>,
}

/// Why a content operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("collection name must be 1-64 characters of a-z, 0-9, '_' and '-'")]
    InvalidCollection,
    #[error("item {index}: {reason}")]
    InvalidItem { index: usize, reason: String },
    #[error("item id `{0}` already exists in this collection")]
    Duplicate(String),
    #[error("at most {0} items per request")]
    TooMany(usize),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for ContentError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

const MAX_ITEMS_PER_REQUEST: usize = 1000;
const MAX_TEXT_BYTES: usize = 4096;

/// An item id or tag: 1 to `max` bytes of visible characters (no whitespace, no
/// control characters), so `"   "`, `" a"` or `"a\u{0}"` are refused, not stored.
fn valid_key(key: &str, max: usize) -> bool {
    !key.is_empty()
        && key.len() <= max
        && !key
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || is_format_char(c))
}

/// Zero-width and bidirectional formatting characters (they render as nothing).
fn is_format_char(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

fn valid_collection(name: &str) -> bool {
    crate::runtime::host::valid_attribute_name(name)
}

/// Append `items` to `collection` of `partner_id`, all or nothing.
pub async fn add(
    store: &Store,
    partner_id: i64,
    collection: &str,
    items: Vec<NewItem>,
) -> Result<Vec<Item>, ContentError> {
    if !valid_collection(collection) {
        return Err(ContentError::InvalidCollection);
    }
    if items.len() > MAX_ITEMS_PER_REQUEST {
        return Err(ContentError::TooMany(MAX_ITEMS_PER_REQUEST));
    }
    for (index, item) in items.iter().enumerate() {
        let reason = if item.text.trim().is_empty() {
            Some("text is empty".to_string())
        } else if item.text.len() > MAX_TEXT_BYTES {
            Some(format!("text is over {MAX_TEXT_BYTES} bytes"))
        } else if item.text.contains('\0') {
            // PostgreSQL cannot store a NUL in text, and no SMS carries one: refused
            // alike on both stores rather than failing on one.
            Some("text contains a NUL character".to_string())
        } else if item.id.as_ref().is_some_and(|id| !valid_key(id, 64)) {
            Some("id must be 1-64 bytes of visible characters (no spaces)".to_string())
        } else if item.tags.len() > 16 || item.tags.iter().any(|t| !valid_key(t, 32)) {
            Some("at most 16 tags of 1-32 bytes of visible characters (no spaces)".to_string())
        } else if items[..index]
            .iter()
            .any(|other| other.id.is_some() && other.id == item.id)
        {
            Some("the same id appears twice in this request".to_string())
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(ContentError::InvalidItem { index, reason });
        }
    }
    let mut tx = store.begin_write().await?;
    let (mut position,): (i64,) = sqlx::query_as(
        "SELECT COALESCE(MAX(position), -1) + 1 FROM content_items WHERE partner_id = $1 AND collection = $2",
    )
    .bind(partner_id)
    .bind(collection)
    .fetch_one(&mut *tx)
    .await?;
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let id = item.id.unwrap_or_else(|| format!("item-{position}"));
        let done = sqlx::query(
            "INSERT INTO content_items (partner_id, collection, position, item_key, text, tags, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(partner_id)
        .bind(collection)
        .bind(position)
        .bind(&id)
        .bind(&item.text)
        .bind(serde_json::to_string(&item.tags).unwrap_or_else(|_| "[]".into()))
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(ContentError::Duplicate(id));
        }
        out.push(Item {
            id,
            position,
            text: item.text,
            tags: item.tags,
        });
        position += 1;
    }
    tx.commit().await?;
    Ok(out)
}

/// Items of `collection`, in upload order: at most `limit` (1-1000) after
/// `after_position`.
///
/// # Errors
/// [`ContentError::InvalidCollection`] for a bad name; store failures.
pub async fn list(
    store: &Store,
    partner_id: i64,
    collection: &str,
    after_position: i64,
    limit: i64,
) -> Result<Vec<Item>, ContentError> {
    if !valid_collection(collection) {
        return Err(ContentError::InvalidCollection);
    }
    let rows: Vec<(String, i64, String, String)> = sqlx::query_as(
        "SELECT item_key, position, text, tags FROM content_items
         WHERE partner_id = $1 AND collection = $2 AND position > $4 ORDER BY position LIMIT $3",
    )
    .bind(partner_id)
    .bind(collection)
    .bind(limit.clamp(1, 1000))
    .bind(after_position)
    .fetch_all(store.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, position, text, tags)| Item {
            id,
            position,
            text,
            tags: serde_json::from_str(&tags).unwrap_or_default(),
        })
        .collect())
}
