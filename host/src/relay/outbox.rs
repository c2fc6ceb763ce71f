//! The durable outbox: every MT is a row before anything is sent, and every
//! step (claim, submit, receipt) is a state change in the database, so a crash at
//! any point resumes.
//!
//! Statuses: `queued` → `submitting` (claimed, leased) → `submitted` → `delivered`
//! | `failed` | `expired`. A temporary failure puts the row back to `queued` with a
//! later `next_attempt_at`; past `expires_at` it becomes `expired`.
//!
//! **Unknown-outcome rule.** SMPP has no idempotency key: when the link is lost (or
//! the process dies) after a `submit_sm` was written but before its response, the
//! SMSC may or may not have the segment. Tongdao resends such segments (at least
//! once, never lost) and marks the message `resent_unknown = 1`, so possible
//! duplicates are counted, never hidden. Segments whose `submit_sm_resp` was stored
//! are never sent again.

use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::routing::{RouteError, Routes};
use crate::config::RelayConfig;
use crate::store::{Backend, Store, StoreError, now_ms};

/// Who pays for an MT; decided by the service (billing reads it later).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChargePlan {
    Free,
    PerMessage,
    Monthly,
    /// A test send (agreement 7.3): never billed.
    Test,
}

impl ChargePlan {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Free => "free",
            Self::PerMessage => "per-message",
            Self::Monthly => "monthly",
            Self::Test => "test",
        }
    }
}

/// An MT to queue.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub partner_id: Option<i64>,
    pub service: Option<String>,
    pub recipient: String,
    pub text: String,
    pub charge_plan: ChargePlan,
    /// Send through this operator rather than the routed one (test sends).
    pub operator: Option<String>,
}

/// Why an MT was not queued.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error("the text is empty")]
    EmptyText,
    #[error("the text needs {0} segments; at most 255 fit one concatenated message")]
    TooLong(usize),
    #[error("no operator named `{0}`")]
    UnknownOperator(String),
    #[error("{0} is not in [relay] test_numbers; test sends go only to listed numbers")]
    NotATestNumber(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for OutboxError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

/// A queued message as a relay worker sees it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub id: i64,
    pub recipient: String,
    pub text: String,
    pub attempts: i64,
    pub expires_at: i64,
}

/// How one claimed message's submit attempt ended.
#[derive(Debug, Clone)]
pub enum SubmitResult {
    /// Every segment was accepted: (seq, operator message id) per segment sent now.
    Accepted(Vec<(i64, String)>),
    /// Some segments were accepted, then a failure of `class` stopped the rest.
    Failed {
        accepted: Vec<(i64, String)>,
        failure: Failure,
    },
}

/// What stopped a submit.
#[derive(Debug, Clone)]
pub enum Failure {
    /// Worth retrying later (throttling, SMSC busy, link down before sending).
    Temporary(String),
    /// Sent but no response: resend under the unknown-outcome rule.
    Unknown(String),
    /// Never deliverable (bad number, refused content…).
    Permanent(String),
}

/// The text's segment count and content hash (R-2.5: integrity is provable).
pub fn fingerprint(text: &str) -> (usize, String) {
    (
        tongdao_smpp::encode::segment_count(text),
        hex::encode(Sha256::digest(text.as_bytes())),
    )
}

/// Queue one MT: the message, its segments and its first event, all or nothing.
pub async fn enqueue(
    store: &Store,
    routes: &Routes,
    relay: &RelayConfig,
    message: NewMessage,
) -> Result<i64, OutboxError> {
    if message.text.trim().is_empty() {
        return Err(OutboxError::EmptyText);
    }
    let (number, routed) = routes.route(&message.recipient)?;
    let operator = match message.operator {
        Some(name) if routes.has_operator(&name) => name,
        Some(name) => return Err(OutboxError::UnknownOperator(name)),
        None => routed,
    };
    let (segments, sha) = fingerprint(&message.text);
    if segments > 255 {
        return Err(OutboxError::TooLong(segments));
    }
    let now = now_ms();
    let expires_at = now.saturating_add(
        i64::try_from(relay.validity_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
    );
    let mut tx = store.begin_write().await?;
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO messages (partner_id, service, recipient, operator, text, content_sha256, segments,
            charge_plan, is_test, status, attempts, next_attempt_at, expires_at, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'queued', 0, $10, $11, $10, $10) RETURNING id",
    )
    .bind(message.partner_id)
    .bind(&message.service)
    .bind(&number)
    .bind(&operator)
    .bind(&message.text)
    .bind(&sha)
    .bind(i64::try_from(segments).unwrap_or(i64::MAX))
    .bind(message.charge_plan.as_str())
    .bind(i64::from(message.charge_plan == ChargePlan::Test))
    .bind(now)
    .bind(expires_at)
    .fetch_one(&mut *tx)
    .await?;
    for seq in 1..=i64::try_from(segments).unwrap_or(1) {
        sqlx::query(
            "INSERT INTO message_segments (message_id, seq, operator, status) VALUES ($1, $2, $3, 'queued')",
        )
        .bind(id)
        .bind(seq)
        .bind(&operator)
        .execute(&mut *tx)
        .await?;
    }
    event(&mut tx, id, "queued", None, now).await?;
    tx.commit().await?;
    Ok(id)
}

/// Queue a test MT (agreement 7.3): only to a number in `[relay] test_numbers`,
/// marked as test and never billed, through the same outbox as everything else.
pub async fn enqueue_test(
    store: &Store,
    routes: &Routes,
    relay: &RelayConfig,
    to: &str,
    text: &str,
    operator: Option<String>,
) -> Result<i64, OutboxError> {
    let number = super::routing::normalize_msisdn(to)?;
    let listed = relay
        .test_numbers
        .iter()
        .any(|n| super::routing::normalize_msisdn(n).is_ok_and(|n| n == number));
    if !listed {
        return Err(OutboxError::NotATestNumber(number));
    }
    let message = NewMessage {
        partner_id: None,
        service: None,
        recipient: number,
        text: text.to_string(),
        charge_plan: ChargePlan::Test,
        operator,
    };
    enqueue(store, routes, relay, message).await
}

async fn event(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    message_id: i64,
    status: &str,
    detail: Option<&str>,
    at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO message_events (message_id, status, detail, at) VALUES ($1, $2, $3, $4)",
    )
    .bind(message_id)
    .bind(status)
    .bind(detail)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Claim up to `limit` queued MTs of `operator` whose time has come. On PostgreSQL
/// rows locked by another replica are skipped, so no two replicas send one row.
pub async fn claim(
    store: &Store,
    operator: &str,
    limit: u32,
    lease: Duration,
) -> Result<Vec<Claimed>, OutboxError> {
    let now = now_ms();
    let lease_until = now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
    let lock = match store.backend() {
        Backend::Postgres => "FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let sql = format!(
        "UPDATE messages SET status = 'submitting', lease_until = $3, attempts = attempts + 1, updated_at = $4
         WHERE id IN (SELECT id FROM messages
                      WHERE operator = $1 AND status = 'queued' AND next_attempt_at <= $4
                      ORDER BY next_attempt_at, id LIMIT $2 {lock})
         RETURNING id, recipient, text, attempts, expires_at"
    );
    let mut claimed: Vec<Claimed> = sqlx::query_as(&sql)
        .bind(operator)
        .bind(i64::from(limit))
        .bind(lease_until)
        .bind(now)
        .fetch_all(store.pool())
        .await?;
    claimed.sort_by_key(|c| c.id);
    Ok(claimed)
}

/// Segments of `message_id` already accepted by the SMSC (never sent again).
pub async fn accepted_segments(store: &Store, message_id: i64) -> Result<Vec<i64>, OutboxError> {
    let rows: Vec<(i64,)> = sqlx::query_as(
        "SELECT seq FROM message_segments WHERE message_id = $1 AND operator_message_id IS NOT NULL",
    )
    .bind(message_id)
    .fetch_all(store.pool())
    .await?;
    Ok(rows.into_iter().map(|(s,)| s).collect())
}

/// Store the outcomes of one batch of submits in one transaction.
pub async fn record_submits(
    store: &Store,
    relay: &RelayConfig,
    results: &[(Claimed, SubmitResult)],
) -> Result<(), OutboxError> {
    let now = now_ms();
    let mut tx = store.begin_write().await?;
    for (message, result) in results {
        let (accepted, failure) = match result {
            SubmitResult::Accepted(a) => (a, None),
            SubmitResult::Failed { accepted, failure } => (accepted, Some(failure)),
        };
        for (seq, operator_id) in accepted {
            let canonical = tongdao_smpp::normalize_message_id(operator_id)
                .into_iter()
                .next()
                .unwrap_or_default();
            sqlx::query(
                "UPDATE message_segments SET operator_message_id = $3, status = 'submitted', submitted_at = $4
                 WHERE message_id = $1 AND seq = $2 AND operator_message_id IS NULL",
            )
            .bind(message.id)
            .bind(seq)
            .bind(&canonical)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        match failure {
            None => {
                // A receipt may already have finished the message; keep that.
                let done = sqlx::query(
                    "UPDATE messages SET status = 'submitted', lease_until = NULL, updated_at = $2
                     WHERE id = $1 AND status = 'submitting'",
                )
                .bind(message.id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 1 {
                    event(&mut tx, message.id, "submitted", None, now).await?;
                }
            }
            Some(Failure::Permanent(reason)) => {
                finish(&mut tx, message.id, "failed", Some(reason), now).await?;
            }
            Some(Failure::Temporary(reason) | Failure::Unknown(reason)) => {
                let unknown = matches!(failure, Some(Failure::Unknown(_)));
                let delay = if unknown {
                    // Resend soon: the link is usually back within seconds.
                    0
                } else {
                    backoff_ms(relay, message.attempts)
                };
                let next = now.saturating_add(delay);
                if next > message.expires_at {
                    let reason = format!(
                        "validity period ended after {} attempts; last: {reason}",
                        message.attempts
                    );
                    finish(&mut tx, message.id, "expired", Some(&reason), now).await?;
                } else {
                    let sql = if unknown {
                        "UPDATE messages SET status = 'queued', lease_until = NULL, next_attempt_at = $2,
                            failure_reason = $3, resent_unknown = 1, updated_at = $4
                         WHERE id = $1 AND status = 'submitting'"
                    } else {
                        "UPDATE messages SET status = 'queued', lease_until = NULL, next_attempt_at = $2,
                            failure_reason = $3, updated_at = $4
                         WHERE id = $1 AND status = 'submitting'"
                    };
                    sqlx::query(sql)
                        .bind(message.id)
                        .bind(next)
                        .bind(reason)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    let status = if unknown {
                        "retry-unknown-outcome"
                    } else {
                        "retry"
                    };
                    event(&mut tx, message.id, status, Some(reason), now).await?;
                }
            }
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Exponential back-off: `retry_initial_ms` doubling per attempt up to `retry_max_ms`.
fn backoff_ms(relay: &RelayConfig, attempts: i64) -> i64 {
    let exponent = u32::try_from(attempts.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
    let delay = relay
        .retry_initial_ms
        .saturating_mul(1u64 << exponent)
        .min(relay.retry_max_ms);
    i64::try_from(delay).unwrap_or(i64::MAX)
}

/// Put a message in a final state (once), with its reason and an event.
async fn finish(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    message_id: i64,
    status: &str,
    reason: Option<&str>,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE messages SET status = $2, failure_reason = $3, lease_until = NULL, done_at = $4, updated_at = $4
         WHERE id = $1 AND status NOT IN ('delivered', 'failed', 'expired')",
    )
    .bind(message_id)
    .bind(status)
    .bind(reason)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() == 1 {
        event(tx, message_id, status, reason, now).await?;
    }
    Ok(done.rows_affected() == 1)
}

/// Housekeeping: expired leases go back to the queue under the unknown-outcome
/// rule (their worker died mid-submit), and queued rows past validity expire.
/// Returns (leases recovered, messages expired).
pub async fn sweep(store: &Store) -> Result<(u64, u64), OutboxError> {
    let now = now_ms();
    let recovered = sqlx::query(
        "UPDATE messages SET status = 'queued', lease_until = NULL, resent_unknown = 1, next_attempt_at = $1,
            failure_reason = 'claim lease ran out (worker stopped mid-submit)', updated_at = $1
         WHERE status = 'submitting' AND lease_until < $1",
    )
    .bind(now)
    .execute(store.pool())
    .await?
    .rows_affected();
    let expired = sqlx::query(
        "UPDATE messages SET status = 'expired', done_at = $1, updated_at = $1,
            failure_reason = COALESCE(failure_reason, 'validity period ended before it could be sent')
         WHERE status = 'queued' AND expires_at < $1",
    )
    .bind(now)
    .execute(store.pool())
    .await?
    .rows_affected();
    Ok((recovered, expired))
}

/// Apply a delivery receipt to the segment it belongs to, inside `tx`; returns
/// (message id, segment) when matched. Replayed receipts change nothing.
pub async fn apply_receipt(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    operator: &str,
    candidates: &[String],
    delivered: bool,
    state: &str,
    error: Option<&str>,
    now: i64,
) -> Result<Option<(i64, i64)>, OutboxError> {
    let mut found: Option<(i64, i64)> = None;
    for candidate in candidates {
        found = sqlx::query_as(
            "SELECT message_id, seq FROM message_segments WHERE operator = $1 AND operator_message_id = $2",
        )
        .bind(operator)
        .bind(candidate)
        .fetch_optional(&mut **tx)
        .await?;
        if found.is_some() {
            break;
        }
    }
    let Some((message_id, seq)) = found else {
        return Ok(None);
    };
    let segment_status = if delivered { "delivered" } else { "failed" };
    let changed = sqlx::query(
        "UPDATE message_segments SET status = $3, error = $4, done_at = $5
         WHERE message_id = $1 AND seq = $2 AND done_at IS NULL",
    )
    .bind(message_id)
    .bind(seq)
    .bind(segment_status)
    .bind(
        error
            .map(|e| format!("{state} err:{e}"))
            .unwrap_or_else(|| state.to_string()),
    )
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if changed == 1 {
        let statuses: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT status, error FROM message_segments WHERE message_id = $1")
                .bind(message_id)
                .fetch_all(&mut **tx)
                .await?;
        let all_final = statuses
            .iter()
            .all(|(s, _)| s == "delivered" || s == "failed");
        if all_final {
            match statuses.iter().find(|(s, _)| s == "failed") {
                None => {
                    finish(tx, message_id, "delivered", None, now).await?;
                }
                Some((_, error)) => {
                    let reason = format!(
                        "the operator reported {}",
                        error.as_deref().unwrap_or("a failed delivery")
                    );
                    finish(tx, message_id, "failed", Some(&reason), now).await?;
                }
            }
        }
    }
    Ok(Some((message_id, seq)))
}
