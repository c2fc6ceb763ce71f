//! The append-only, hash-chained audit log of administrative actions (R-3.6,
//! issue 15 item 6).
//!
//! Every row stores `hash = SHA-256(prev_hash ‖ "\n" ‖ canonical content)`, where
//! the canonical content is the JSON array `[id, at, actor, action, method, path,
//! status, body_sha256, request_id, detail]` and `prev_hash` is the previous row's
//! hash (64 zeros before the first). Ids follow one another without gaps, and the
//! one-row table `audit_head` holds the last id and hash, so [`verify`] finds an
//! edited row (its hash no longer matches), a deleted row (a gap, or a head that
//! names a row that is gone) and a re-hashed tail (the head disagrees).
//!
//! Appends take the head row's lock (`FOR UPDATE` on PostgreSQL, the write lock
//! on SQLite) in the transaction that writes the row, so concurrent appends from
//! any number of replicas form one chain.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::store::{Backend, Store, StoreError, now_ms};

/// The hash before the first row.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One action to record. `method`, `path`, `status`, `body_sha256` and
/// `request_id` describe an HTTP request (the API's audit layer); domain actions
/// that are not a request (a detector's auto-suspension) leave them `None`.
#[derive(Debug, Clone, Default)]
pub struct NewEntry {
    /// Who: `admin`, or `rule:<detector rule>` for the platform's own actions.
    pub actor: String,
    /// What: `http` for a request, else a verb such as `suspend-service`.
    pub action: String,
    pub method: Option<String>,
    /// The matched route template (`/v1/admin/services/{id}/{action}`).
    pub path: Option<String>,
    pub status: Option<i64>,
    /// SHA-256 (hex) of the request body.
    pub body_sha256: Option<String>,
    /// The `x-request-id` header, when the caller sent one.
    pub request_id: Option<String>,
    /// Free text: the request's real path and query, or what the action did.
    pub detail: String,
}

/// A stored row, as the API shows it (`at` is Unix milliseconds here; the API
/// turns it into RFC 3339).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Entry {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub method: Option<String>,
    pub path: Option<String>,
    pub status: Option<i64>,
    pub body_sha256: Option<String>,
    pub request_id: Option<String>,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

const COLUMNS: &str =
    "id, at, actor, action, method, path, status, body_sha256, request_id, detail, prev_hash, hash";

/// The canonical content a row's hash covers.
fn canonical(e: &Entry) -> String {
    serde_json::json!([
        e.id,
        e.at,
        e.actor,
        e.action,
        e.method,
        e.path,
        e.status,
        e.body_sha256,
        e.request_id,
        e.detail
    ])
    .to_string()
}

/// `SHA-256(prev_hash ‖ "\n" ‖ canonical)`, hex.
fn chain_hash(prev_hash: &str, e: &Entry) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    h.update(canonical(e).as_bytes());
    hex::encode(h.finalize())
}

/// SHA-256 (hex) of some bytes: a request body's digest.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Append one entry to the chain; returns its id.
///
/// # Errors
/// A store failure; nothing is written then.
pub async fn append(store: &Store, new: NewEntry) -> Result<i64, StoreError> {
    let lock = match store.backend() {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    };
    let mut tx = store.begin_write().await?;
    let (last_id, last_hash): (i64, String) = sqlx::query_as(&format!(
        "SELECT last_id, last_hash FROM audit_head WHERE id = 1{lock}"
    ))
    .fetch_one(&mut *tx)
    .await?;
    let id = last_id
        .checked_add(1)
        .ok_or_else(|| StoreError::Corrupt("audit log id overflow".into()))?;
    let mut entry = Entry {
        id,
        at: now_ms(),
        actor: new.actor,
        action: new.action,
        method: new.method,
        path: new.path,
        status: new.status,
        body_sha256: new.body_sha256,
        request_id: new.request_id,
        detail: new.detail,
        prev_hash: last_hash,
        hash: String::new(),
    };
    entry.hash = chain_hash(&entry.prev_hash, &entry);
    sqlx::query(&format!(
        "INSERT INTO audit_log ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
    ))
    .bind(entry.id)
    .bind(entry.at)
    .bind(&entry.actor)
    .bind(&entry.action)
    .bind(&entry.method)
    .bind(&entry.path)
    .bind(entry.status)
    .bind(&entry.body_sha256)
    .bind(&entry.request_id)
    .bind(&entry.detail)
    .bind(&entry.prev_hash)
    .bind(&entry.hash)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE audit_head SET last_id = $1, last_hash = $2 WHERE id = 1")
        .bind(entry.id)
        .bind(&entry.hash)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(id)
}

/// Entries newest first, those with an id below `before` when given; at most
/// `limit` (clamped to 1..=500).
///
/// # Errors
/// A store failure.
pub async fn list(
    store: &Store,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<Entry>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM audit_log WHERE id < $1 ORDER BY id DESC LIMIT $2"
    ))
    .bind(before.unwrap_or(i64::MAX))
    .bind(limit.clamp(1, 500))
    .fetch_all(store.pool())
    .await?)
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Verdict {
    /// Every row's hash is right, ids follow without gaps and the head names the last.
    Intact { rows: i64, last_hash: String },
    /// The first bad row (`row`: its id, or the id that should be there) and why.
    Broken { row: i64, reason: String },
}

/// Walk the whole chain in id order, in batches, and check every link.
///
/// # Errors
/// A store failure (not a broken chain: that is a [`Verdict::Broken`]).
pub async fn verify(store: &Store) -> Result<Verdict, StoreError> {
    const BATCH: i64 = 1000;
    let mut prev_hash = GENESIS.to_string();
    let mut expected = 1i64;
    loop {
        let rows: Vec<Entry> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM audit_log WHERE id >= $1 ORDER BY id LIMIT $2"
        ))
        .bind(expected)
        .bind(BATCH)
        .fetch_all(store.pool())
        .await?;
        let n = i64::try_from(rows.len()).unwrap_or(BATCH);
        for row in rows {
            if row.id != expected {
                return Ok(Verdict::Broken {
                    row: expected,
                    reason: format!("row {expected} is missing (the next row is {})", row.id),
                });
            }
            if row.prev_hash != prev_hash {
                return Ok(Verdict::Broken {
                    row: row.id,
                    reason: "its prev_hash is not the previous row's hash".into(),
                });
            }
            if chain_hash(&prev_hash, &row) != row.hash {
                return Ok(Verdict::Broken {
                    row: row.id,
                    reason: "its content does not match its hash (edited)".into(),
                });
            }
            prev_hash = row.hash;
            expected += 1;
        }
        if n < BATCH {
            break;
        }
    }
    let (last_id, last_hash): (i64, String) =
        sqlx::query_as("SELECT last_id, last_hash FROM audit_head WHERE id = 1")
            .fetch_one(store.pool())
            .await?;
    let rows = expected - 1;
    if last_id != rows {
        return Ok(Verdict::Broken {
            row: rows + 1,
            reason: format!(
                "the chain ends at row {rows} but its head names row {last_id} (rows deleted at the end)"
            ),
        });
    }
    if last_hash != prev_hash {
        return Ok(Verdict::Broken {
            row: rows,
            reason: "the last row's hash is not the one the head recorded".into(),
        });
    }
    Ok(Verdict::Intact {
        rows,
        last_hash: prev_hash,
    })
}
