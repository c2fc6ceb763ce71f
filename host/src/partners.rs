//! Partners and their API keys. Keys are random, shown once, and stored only as
//! SHA-256 hashes (they carry 256 bits of entropy, so a slow hash adds nothing).

use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::store::{Store, StoreError, now_ms};

/// A content partner (乙方).
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[schema(example = json!({"id": 1, "name": "leyou", "display_name": "乐游", "status": "active", "created_at": "2026-11-30T03:12:00.123Z"}))]
pub struct Partner {
    pub id: i64,
    /// The login name (`a-z0-9-`), used in paths and `?partner=`.
    pub name: String,
    /// The name people read (乐游).
    pub display_name: String,
    /// `active` or `suspended`.
    pub status: String,
    /// RFC 3339 UTC.
    #[serde(serialize_with = "crate::api::time::ms")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
}

/// Why a partner operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PartnerError {
    #[error("partner name must be 2-32 characters of a-z, 0-9 and '-', starting with a letter")]
    InvalidName,
    #[error("display name: {0}")]
    InvalidDisplayName(String),
    #[error("a partner named `{0}` already exists")]
    Exists(String),
    #[error("no partner `{0}`")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for PartnerError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

/// A freshly issued key: the only time its plain text exists.
#[derive(Debug, Clone, Serialize)]
pub struct IssuedKey {
    pub key: String,
    pub prefix: String,
}

/// Make a new random secret with a readable prefix (`td_<kind>_…`).
pub fn generate_secret(kind: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("td_{kind}_{}", hex::encode(bytes))
}

/// The stored form of a key.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn valid_name(name: &str) -> bool {
    (2..=32).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The display name is the SMS signature (`【display name】`) on every MT of the
/// partner: 1-100 characters, no control or invisible characters (issue 10 item 8:
/// a bidi override or zero-width character in the signature would disguise who
/// sent a message), and no `【` `】`, which delimit it.
pub fn validate_display_name(display_name: &str) -> Result<(), PartnerError> {
    let invalid = |reason: String| Err(PartnerError::InvalidDisplayName(reason));
    if display_name.is_empty() || display_name.chars().count() > 100 {
        return invalid("1-100 characters".into());
    }
    let hidden = crate::text::invisible_chars(display_name, false);
    if !hidden.is_empty() {
        return invalid(format!(
            "it is the SMS signature and may not contain control or invisible characters ({})",
            crate::text::describe_chars(&hidden)
        ));
    }
    if display_name.contains(['【', '】']) {
        return invalid("it is the SMS signature `【…】` and may not contain `【` or `】`".into());
    }
    Ok(())
}

/// Create a partner and its first API key.
pub async fn create(
    store: &Store,
    name: &str,
    display_name: &str,
) -> Result<(Partner, IssuedKey), PartnerError> {
    if !valid_name(name) {
        return Err(PartnerError::InvalidName);
    }
    let display_name = display_name.trim();
    validate_display_name(display_name)?;
    let mut tx = store.begin_write().await?;
    let inserted: Option<Partner> = sqlx::query_as(
        "INSERT INTO partners (name, display_name, status, created_at) VALUES ($1, $2, 'active', $3)
         ON CONFLICT (name) DO NOTHING
         RETURNING id, name, display_name, status, created_at",
    )
    .bind(name)
    .bind(display_name)
    .bind(now_ms())
    .fetch_optional(&mut *tx)
    .await?;
    let partner = inserted.ok_or_else(|| PartnerError::Exists(name.to_string()))?;
    let key = insert_key(&mut tx, partner.id).await?;
    tx.commit().await?;
    Ok((partner, key))
}

async fn insert_key(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    partner_id: i64,
) -> Result<IssuedKey, PartnerError> {
    let key = generate_secret("pk");
    let prefix: String = key.chars().take(14).collect();
    sqlx::query(
        "INSERT INTO api_keys (partner_id, key_hash, prefix, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(partner_id)
    .bind(hash_key(&key))
    .bind(&prefix)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(IssuedKey { key, prefix })
}

/// Issue a new key for a partner; with `revoke_others`, every older key stops working.
pub async fn issue_key(
    store: &Store,
    name: &str,
    revoke_others: bool,
) -> Result<IssuedKey, PartnerError> {
    let partner = get(store, name).await?;
    let mut tx = store.begin_write().await?;
    if revoke_others {
        sqlx::query(
            "UPDATE api_keys SET revoked_at = $1 WHERE partner_id = $2 AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(partner.id)
        .execute(&mut *tx)
        .await?;
    }
    let key = insert_key(&mut tx, partner.id).await?;
    tx.commit().await?;
    Ok(key)
}

/// A partner by name.
pub async fn get(store: &Store, name: &str) -> Result<Partner, PartnerError> {
    sqlx::query_as(
        "SELECT id, name, display_name, status, created_at FROM partners WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(store.pool())
    .await?
    .ok_or_else(|| PartnerError::NotFound(name.to_string()))
}

/// A partner by id.
pub async fn by_id(store: &Store, id: i64) -> Result<Partner, PartnerError> {
    sqlx::query_as("SELECT id, name, display_name, status, created_at FROM partners WHERE id = $1")
        .bind(id)
        .fetch_optional(store.pool())
        .await?
        .ok_or_else(|| PartnerError::NotFound(format!("#{id}")))
}

/// Every partner, by id.
pub async fn list(store: &Store) -> Result<Vec<Partner>, PartnerError> {
    Ok(sqlx::query_as(
        "SELECT id, name, display_name, status, created_at FROM partners ORDER BY id",
    )
    .fetch_all(store.pool())
    .await?)
}

/// The partner a presented key belongs to, if the key is valid and not revoked.
///
/// # Errors
/// A store failure.
pub async fn authenticate(store: &Store, key: &str) -> Result<Option<Partner>, PartnerError> {
    authenticate_hash(store, &hash_key(key)).await
}

/// The partner whose live (not revoked) key has this [`hash_key`] digest: how a
/// console session re-checks, on every page, the key it was opened with.
///
/// # Errors
/// A store failure.
pub async fn authenticate_hash(
    store: &Store,
    key_hash: &str,
) -> Result<Option<Partner>, PartnerError> {
    Ok(sqlx::query_as(
        "SELECT p.id, p.name, p.display_name, p.status, p.created_at
         FROM api_keys k JOIN partners p ON p.id = k.partner_id
         WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
    )
    .bind(key_hash)
    .fetch_optional(store.pool())
    .await?)
}
