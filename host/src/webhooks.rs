//! Notifications to partners: the partner event feed, the inbox, and
//! signed webhooks.
//!
//! - **The feed** (`partner_events`): every event a partner is told about, each
//!   once, in commit order. [`feed`] reads the records other parts write
//!   (`message_events`, `mo_messages`, `push_runs`, `module_faults`, `suspensions`,
//!   `partner_notices`, `agreement_terms`, `operator_terms`, `statement_issues`) by
//!   durable cursors and appends the events in the transaction that moves the
//!   cursor, so nothing is added to the hot paths and a `kill -9` repeats or loses
//!   nothing. The alert evaluator appends its own events ([`append_in`]). Every
//!   writer holds the feed lock ([`lock_feed`]), so ids are in commit order and
//!   the inbox (`GET /v1/events?after=`) never skips one.
//! - **Deliveries** (`webhook_deliveries`): one row per event and endpoint whose
//!   filter takes it, written with the event. [`sender`] POSTs them, signed
//!   ([`sign`]), retried with exponential back-off and jitter until
//!   `[webhooks] give_up_secs`, then `failed` (still replayable).
//! - **Endpoints and secrets** (`webhook_endpoints`, `webhook_secrets`): per
//!   partner; the newest secret signs, the previous one beside it for
//!   `rotation_grace_secs` after a rotation.

pub mod feed;
pub mod retention;
pub mod sender;
pub mod settings;
pub mod sign;

use serde::Serialize;
use serde_json::Value;

use crate::store::{Store, StoreError, now_ms};
pub use settings::WebhooksConfig;

/// Every event kind, as named in `events` filters and in `kind`.
///
/// | kind | from |
/// |---|---|
/// | `message.receipt` | an MT reached its final state (delivered, failed, expired) |
/// | `mo.received` | a user's MO was routed to one of the partner's services |
/// | `run.finished` | a push run ended (completed, failed, cancelled, expired, skipped) |
/// | `alert` | an anomaly alert of the partner, or of the platform, opened or cleared |
/// | `module.fault` | a fault sample of one of the partner's modules |
/// | `module.rollback` | a version of one of its modules was rolled back automatically, with the evidence (issue 17 item 5) |
/// | `suspension` | the partner or one of its services was suspended or resumed |
/// | `terms.changed` | new money terms of the agreement or of an operator (R-4.8) |
/// | `statement.ready` | a monthly statement was issued |
/// | `notice` | a notice of the platform (e.g. `push-run-failed`) |
pub const KINDS: &[&str] = &[
    "message.receipt",
    "mo.received",
    "run.finished",
    "alert",
    "module.fault",
    "module.rollback",
    "suspension",
    "terms.changed",
    "statement.ready",
    "notice",
];

/// An event to append.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// The partner told; `None`: every partner (a platform alert).
    pub partner_id: Option<i64>,
    pub kind: &'static str,
    /// Names the record it comes from (`me:17`, `alert:3:opened`): an event is
    /// appended once per partner and source key.
    pub source_key: String,
    /// The `data` of the event.
    pub data: Value,
    /// Unix ms of what happened.
    pub at: i64,
}

/// A stored event, as the inbox and the webhook body show it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Event {
    /// The event id: the same in the inbox, the body and `Tongdao-Event-Id`.
    pub id: i64,
    pub kind: String,
    /// RFC 3339, UTC, milliseconds.
    pub created_at: String,
    pub data: Value,
}

impl Event {
    /// The event as stored: `(id, kind, payload, at)`.
    pub fn from_row((id, kind, payload, at): (i64, String, String, i64)) -> Self {
        Self {
            id,
            kind,
            created_at: crate::api::time::format(at),
            data: serde_json::from_str(&payload).unwrap_or(Value::Null),
        }
    }
}

/// Take the feed lock inside a write transaction: every writer of
/// `partner_events` holds it, so event ids are in commit order (on PostgreSQL a
/// row lock; on SQLite the write transaction is the lock already).
///
/// # Errors
/// [`StoreError`] when the store fails.
pub async fn lock_feed(conn: &mut sqlx::AnyConnection) -> Result<(), StoreError> {
    sqlx::query("UPDATE event_cursors SET position = position WHERE source = 'lock'")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// An endpoint as the delivery fan-out sees it.
struct Target {
    id: i64,
    partner_id: i64,
    kinds: Vec<String>,
}

/// Append events (the caller holds the feed lock in its transaction), with one
/// pending delivery per endpoint whose filter takes each. An event whose partner
/// and source key are stored already is skipped. Returns how many were appended.
///
/// # Errors
/// [`StoreError`] when the store fails.
pub async fn append_in(
    conn: &mut sqlx::AnyConnection,
    events: &[NewEvent],
) -> Result<usize, StoreError> {
    if events.is_empty() {
        return Ok(0);
    }
    let endpoints: Vec<(i64, i64, String)> = sqlx::query_as(
        "SELECT id, partner_id, events FROM webhook_endpoints WHERE deleted_at IS NULL AND enabled = 1",
    )
    .fetch_all(&mut *conn)
    .await?;
    let targets: Vec<Target> = endpoints
        .into_iter()
        .map(|(id, partner_id, kinds)| Target {
            id,
            partner_id,
            kinds: serde_json::from_str(&kinds).unwrap_or_default(),
        })
        .collect();
    let everyone: Vec<i64> = if events.iter().any(|e| e.partner_id.is_none()) {
        sqlx::query_as::<_, (i64,)>("SELECT id FROM partners ORDER BY id")
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .map(|(id,)| id)
            .collect()
    } else {
        Vec::new()
    };
    let now = now_ms();
    let mut appended = 0;
    for event in events {
        let partners = match event.partner_id {
            Some(id) => std::slice::from_ref(&id).to_vec(),
            None => everyone.clone(),
        };
        let payload = event.data.to_string();
        for partner_id in partners {
            let id: Option<(i64,)> = sqlx::query_as(
                "INSERT INTO partner_events (partner_id, kind, source_key, payload, at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (partner_id, source_key) DO NOTHING RETURNING id",
            )
            .bind(partner_id)
            .bind(event.kind)
            .bind(&event.source_key)
            .bind(&payload)
            .bind(event.at)
            .fetch_optional(&mut *conn)
            .await?;
            let Some((event_id,)) = id else { continue };
            appended += 1;
            for target in targets.iter().filter(|t| {
                t.partner_id == partner_id
                    && (t.kinds.is_empty() || t.kinds.iter().any(|k| k == event.kind))
            }) {
                sqlx::query(
                    "INSERT INTO webhook_deliveries (endpoint_id, event_id, status, next_attempt_at, created_at)
                     VALUES ($1, $2, 'pending', $3, $3)",
                )
                .bind(target.id)
                .bind(event_id)
                .bind(now)
                .execute(&mut *conn)
                .await?;
            }
        }
    }
    Ok(appended)
}

/// A partner's events after event `after` (oldest first), at most `limit`
/// (1-500), optionally of some kinds only.
///
/// # Errors
/// [`StoreError`] when the store fails.
pub async fn events(
    store: &Store,
    partner_id: i64,
    after: i64,
    limit: i64,
    kinds: &[String],
) -> Result<Vec<Event>, StoreError> {
    let limit = limit.clamp(1, 500);
    let mut out = Vec::new();
    let mut after = after;
    // Filtering by kind in Rust keeps one query for both stores; a page is refilled
    // until it is full or the feed ends.
    loop {
        let rows: Vec<(i64, String, String, i64)> = sqlx::query_as(
            "SELECT id, kind, payload, at FROM partner_events WHERE partner_id = $1 AND id > $2
             ORDER BY id LIMIT $3",
        )
        .bind(partner_id)
        .bind(after)
        .bind(limit)
        .fetch_all(store.pool())
        .await?;
        let done = i64::try_from(rows.len()).unwrap_or(0) < limit;
        for row in rows {
            after = row.0;
            if kinds.is_empty() || kinds.contains(&row.1) {
                out.push(Event::from_row(row));
                if i64::try_from(out.len()).unwrap_or(i64::MAX) >= limit {
                    return Ok(out);
                }
            }
        }
        if done {
            return Ok(out);
        }
    }
}

/// Why an endpoint operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("{0}")]
    InvalidUrl(String),
    #[error("the URL's host is a private, loopback or otherwise non-public address: {0}")]
    PrivateAddress(String),
    #[error("unknown event kind `{0}`; kinds: {kinds}", kinds = KINDS.join(", "))]
    UnknownKind(String),
    #[error("no such webhook endpoint")]
    NotFound,
    #[error("{0}")]
    InvalidInput(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for WebhookError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

/// A partner's webhook endpoint.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Endpoint {
    pub id: i64,
    pub partner_id: i64,
    pub url: String,
    /// Event kinds sent; empty: all.
    #[sqlx(skip)]
    pub events: Vec<String>,
    #[serde(skip)]
    #[sqlx(rename = "events")]
    pub events_json: String,
    pub description: String,
    #[serde(skip)]
    #[sqlx(rename = "enabled")]
    pub enabled_flag: i64,
    #[sqlx(skip)]
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Endpoint {
    fn finish(mut self) -> Self {
        self.events = serde_json::from_str(&self.events_json).unwrap_or_default();
        self.enabled = self.enabled_flag != 0;
        self
    }
}

const ENDPOINT_COLUMNS: &str =
    "id, partner_id, url, events, description, enabled, created_at, updated_at";

/// Check an endpoint URL: `http` or `https`, a host, no credentials; unless
/// `allow_private`, a literal address must be public and `localhost` is refused
/// (names are checked again when they are resolved, at every delivery).
///
/// # Errors
/// [`WebhookError::InvalidUrl`] or [`WebhookError::PrivateAddress`].
pub fn check_url(url: &str, allow_private: bool) -> Result<reqwest::Url, WebhookError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| WebhookError::InvalidUrl(format!("`{url}` is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(WebhookError::InvalidUrl(format!(
            "`{url}`: only http and https URLs are accepted"
        )));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(WebhookError::InvalidUrl(
            "the URL must not carry credentials".into(),
        ));
    }
    if url.len() > 2048 {
        return Err(WebhookError::InvalidUrl(
            "the URL is longer than 2048 bytes".into(),
        ));
    }
    let Some(host) = parsed.host_str().map(str::to_string) else {
        return Err(WebhookError::InvalidUrl(format!("`{url}` has no host")));
    };
    if !allow_private {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let private = match bare.parse::<std::net::IpAddr>() {
            Ok(ip) => !sign::is_public(ip),
            Err(_) => {
                let name = bare.trim_end_matches('.').to_ascii_lowercase();
                name == "localhost" || name.ends_with(".localhost")
            }
        };
        if private {
            return Err(WebhookError::PrivateAddress(host));
        }
    }
    Ok(parsed)
}

fn check_kinds(kinds: &[String]) -> Result<(), WebhookError> {
    match kinds.iter().find(|k| !KINDS.contains(&k.as_str())) {
        Some(kind) => Err(WebhookError::UnknownKind(kind.clone())),
        None => Ok(()),
    }
}

/// A new endpoint. Returns it and, when the partner had no signing secret yet,
/// the secret created for it (shown once).
///
/// # Errors
/// [`WebhookError`]: a refused URL or kind, or the store.
pub async fn create_endpoint(
    store: &Store,
    partner_id: i64,
    url: &str,
    kinds: &[String],
    description: &str,
    allow_private: bool,
) -> Result<(Endpoint, Option<String>), WebhookError> {
    check_url(url, allow_private)?;
    check_kinds(kinds)?;
    if description.chars().count() > 200 {
        return Err(WebhookError::InvalidInput(
            "description: at most 200 characters".into(),
        ));
    }
    let now = now_ms();
    let mut tx = store.begin_write().await?;
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO webhook_endpoints (partner_id, url, events, description, enabled, created_at, updated_at)
         VALUES ($1, $2, $3, $4, 1, $5, $5) RETURNING id",
    )
    .bind(partner_id)
    .bind(url)
    .bind(serde_json::to_string(kinds).unwrap_or_else(|_| "[]".into()))
    .bind(description)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    let (secrets,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM webhook_secrets WHERE partner_id = $1 AND (retires_at IS NULL OR retires_at > $2)",
    )
    .bind(partner_id)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    let secret = if secrets == 0 {
        Some(insert_secret(&mut tx, partner_id, now).await?)
    } else {
        None
    };
    tx.commit().await?;
    Ok((endpoint(store, partner_id, id).await?, secret))
}

async fn insert_secret(
    conn: &mut sqlx::AnyConnection,
    partner_id: i64,
    now: i64,
) -> Result<String, StoreError> {
    let secret = format!("whsec_{}", hex::encode(rand::random::<[u8; 32]>()));
    sqlx::query("INSERT INTO webhook_secrets (partner_id, secret, created_at) VALUES ($1, $2, $3)")
        .bind(partner_id)
        .bind(&secret)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(secret)
}

/// Rotate the partner's signing secret: a new one signs from now on; the
/// previous ones keep signing beside it for `grace_secs`, then retire. Returns
/// the new secret (shown once) and when the old ones retire (Unix ms).
///
/// # Errors
/// [`StoreError`] when the store fails.
pub async fn rotate_secret(
    store: &Store,
    partner_id: i64,
    grace_secs: u64,
) -> Result<(String, i64), StoreError> {
    let now = now_ms();
    let retires_at =
        now.saturating_add(i64::try_from(grace_secs.saturating_mul(1000)).unwrap_or(i64::MAX));
    let mut tx = store.begin_write().await?;
    sqlx::query(
        "UPDATE webhook_secrets SET retires_at = $2
         WHERE partner_id = $1 AND (retires_at IS NULL OR retires_at > $2)",
    )
    .bind(partner_id)
    .bind(retires_at)
    .execute(&mut *tx)
    .await?;
    let secret = insert_secret(&mut tx, partner_id, now).await?;
    tx.commit().await?;
    Ok((secret, retires_at))
}

/// The secrets that sign now, newest first.
///
/// # Errors
/// [`StoreError`] when the store fails.
pub async fn signing_secrets(store: &Store, partner_id: i64) -> Result<Vec<String>, StoreError> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT secret FROM webhook_secrets WHERE partner_id = $1 AND (retires_at IS NULL OR retires_at > $2)
         ORDER BY id DESC",
    )
    .bind(partner_id)
    .bind(now_ms())
    .fetch_all(store.pool())
    .await?;
    Ok(rows.into_iter().map(|(s,)| s).collect())
}

/// One endpoint of a partner (another partner's is not found).
///
/// # Errors
/// [`WebhookError::NotFound`], or the store.
pub async fn endpoint(store: &Store, partner_id: i64, id: i64) -> Result<Endpoint, WebhookError> {
    let found: Option<Endpoint> = sqlx::query_as(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1 AND partner_id = $2 AND deleted_at IS NULL"
    ))
    .bind(id)
    .bind(partner_id)
    .fetch_optional(store.pool())
    .await?;
    found.map(Endpoint::finish).ok_or(WebhookError::NotFound)
}

/// A partner's endpoints (all partners' for `None`), newest first, with ids
/// below `before`, at most `limit`.
///
/// # Errors
/// [`StoreError`] when the store fails.
pub async fn endpoints(
    store: &Store,
    partner_id: Option<i64>,
    before: i64,
    limit: i64,
) -> Result<Vec<Endpoint>, StoreError> {
    let rows: Vec<Endpoint> = sqlx::query_as(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints
         WHERE deleted_at IS NULL AND ($1 = 0 OR partner_id = $1) AND id < $2 ORDER BY id DESC LIMIT $3"
    ))
    .bind(partner_id.unwrap_or(0))
    .bind(before)
    .bind(limit.clamp(1, 500))
    .fetch_all(store.pool())
    .await?;
    Ok(rows.into_iter().map(Endpoint::finish).collect())
}

/// What an update changes; `None` keeps the value.
#[derive(Debug, Clone, Default)]
pub struct EndpointChange {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

/// Change an endpoint. A new filter applies to events appended from now on.
///
/// # Errors
/// [`WebhookError`]: not found, a refused URL or kind, or the store.
pub async fn update_endpoint(
    store: &Store,
    partner_id: i64,
    id: i64,
    change: EndpointChange,
    allow_private: bool,
) -> Result<Endpoint, WebhookError> {
    let current = endpoint(store, partner_id, id).await?;
    if let Some(url) = &change.url {
        check_url(url, allow_private)?;
    }
    if let Some(kinds) = &change.events {
        check_kinds(kinds)?;
    }
    let events = change.events.unwrap_or(current.events);
    sqlx::query(
        "UPDATE webhook_endpoints SET url = $1, events = $2, description = $3, enabled = $4, updated_at = $5
         WHERE id = $6",
    )
    .bind(change.url.unwrap_or(current.url))
    .bind(serde_json::to_string(&events).unwrap_or_else(|_| "[]".into()))
    .bind(change.description.unwrap_or(current.description))
    .bind(i64::from(change.enabled.unwrap_or(current.enabled)))
    .bind(now_ms())
    .bind(id)
    .execute(store.pool())
    .await?;
    endpoint(store, partner_id, id).await
}

/// Delete an endpoint: nothing more is sent to it (its pending deliveries are
/// `cancelled`); its delivery log stays.
///
/// # Errors
/// [`WebhookError::NotFound`], or the store.
pub async fn delete_endpoint(store: &Store, partner_id: i64, id: i64) -> Result<(), WebhookError> {
    endpoint(store, partner_id, id).await?;
    let now = now_ms();
    let mut tx = store.begin_write().await?;
    sqlx::query("UPDATE webhook_endpoints SET deleted_at = $1, updated_at = $1 WHERE id = $2")
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "UPDATE webhook_deliveries SET status = 'cancelled', lease_until = NULL
         WHERE endpoint_id = $1 AND status = 'pending'",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// One delivery of one event to one endpoint.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Delivery {
    pub id: i64,
    pub event_id: i64,
    pub kind: String,
    /// `pending`, `delivered`, `failed` (gave up; replayable) or `cancelled`.
    pub status: String,
    pub attempts: i64,
    /// HTTP status of the last attempt, if one was answered.
    pub last_status_code: Option<i64>,
    /// Why the last attempt failed (no answer, a timeout, a non-2xx status).
    pub last_error: Option<String>,
    /// Unix ms of the next attempt while pending.
    pub next_attempt_at: i64,
    pub replays: i64,
    pub created_at: i64,
    pub last_attempt_at: Option<i64>,
    pub delivered_at: Option<i64>,
}

/// An endpoint's deliveries, newest first, ids below `before`, at most `limit`.
///
/// # Errors
/// [`StoreError`] when the store fails.
pub async fn deliveries(
    store: &Store,
    endpoint_id: i64,
    before: i64,
    limit: i64,
) -> Result<Vec<Delivery>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT d.id, d.event_id, e.kind, d.status, d.attempts, d.last_status_code, d.last_error,
                d.next_attempt_at, d.replays, d.created_at, d.last_attempt_at, d.delivered_at
         FROM webhook_deliveries d JOIN partner_events e ON e.id = d.event_id
         WHERE d.endpoint_id = $1 AND d.id < $2 ORDER BY d.id DESC LIMIT $3",
    )
    .bind(endpoint_id)
    .bind(before)
    .bind(limit.clamp(1, 500))
    .fetch_all(store.pool())
    .await?)
}

/// The most events one replay sends again.
pub const MAX_REPLAY: i64 = 10_000;

/// Send the partner's events again to an endpoint, from event `from_event`
/// (inclusive) or from `since_ms` on, those its filter takes, at most
/// [`MAX_REPLAY`]: each becomes `pending` again with its attempt count reset
/// (a delivery still pending stays as it is), and events the endpoint never had
/// (older than it, or filtered then) get a delivery. Returns how many events
/// will be sent.
///
/// # Errors
/// [`WebhookError`]: not found, or the store.
pub async fn replay(
    store: &Store,
    partner_id: i64,
    endpoint_id: i64,
    from_event: Option<i64>,
    since_ms: Option<i64>,
) -> Result<i64, WebhookError> {
    let target = endpoint(store, partner_id, endpoint_id).await?;
    let now = now_ms();
    let mut tx = store.begin_write().await?;
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "SELECT id, kind FROM partner_events WHERE partner_id = $1 AND id >= $2 AND at >= $3
         ORDER BY id LIMIT $4",
    )
    .bind(partner_id)
    .bind(from_event.unwrap_or(0))
    .bind(since_ms.unwrap_or(0))
    .bind(MAX_REPLAY)
    .fetch_all(&mut *tx)
    .await?;
    let mut count = 0;
    for (event_id, kind) in rows {
        if !(target.events.is_empty() || target.events.contains(&kind)) {
            continue;
        }
        count += 1;
        sqlx::query(
            "INSERT INTO webhook_deliveries (endpoint_id, event_id, status, next_attempt_at, created_at, replays)
             VALUES ($1, $2, 'pending', $3, $3, 1)
             ON CONFLICT (endpoint_id, event_id) DO UPDATE SET
               status = 'pending', attempts = 0, next_attempt_at = $3, lease_until = NULL,
               first_attempt_at = NULL, replays = webhook_deliveries.replays + 1
             WHERE webhook_deliveries.status <> 'pending'",
        )
        .bind(endpoint_id)
        .bind(event_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(count)
}
