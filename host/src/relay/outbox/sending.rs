//! Sending: claims with a lease, the outcome of every submit, retries, expiry,
//! releases at shutdown and receipts applied, each a state change of the outbox.

use std::time::Duration;

use super::{Claimed, Failure, OutboxError, SubmitResult, event};
use crate::relay::settings::RelayConfig;
use crate::store::{Store, now_ms};

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
    let lock = store.skip_locked();
    let sql = format!(
        "UPDATE messages SET status = 'submitting', lease_until = $3, attempts = attempts + 1, updated_at = $4
         WHERE id IN (SELECT id FROM messages
                      WHERE operator = $1 AND status = 'queued' AND next_attempt_at <= $4
                      ORDER BY next_attempt_at, id LIMIT $2 {lock})
         RETURNING id, recipient, text, attempts, expires_at, sender"
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
            let canonical = tongdao_smpp::canonical_message_id(operator_id);
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
            Some(Failure::NotSent(reason)) => {
                release(&mut tx, message.id, reason, now).await?;
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

/// Put a claimed MT none of whose remaining segments was sent back in the queue at
/// once, unmarked: nothing of it is at the SMSC that is not recorded, so sending it
/// later cannot duplicate anything. The claim does not count as an attempt.
async fn release(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    message_id: i64,
    reason: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    let done = sqlx::query(
        "UPDATE messages SET status = 'queued', lease_until = NULL, next_attempt_at = $2,
            attempts = attempts - 1, updated_at = $2
         WHERE id = $1 AND status = 'submitting'",
    )
    .bind(message_id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() == 1 {
        event(tx, message_id, "released", Some(reason), now).await?;
    }
    Ok(())
}

/// Release claimed MTs that were never handed to a submit (a bind stopping between
/// its claim and its sends): back to the queue, unmarked (see [`record_submits`]).
///
/// # Errors
/// A store failure; the leases then run out and the sweep re-queues the rows under
/// the unknown-outcome rule.
pub async fn release_unsent(
    store: &Store,
    messages: &[Claimed],
    reason: &str,
) -> Result<(), OutboxError> {
    let now = now_ms();
    let mut tx = store.begin_write().await?;
    for message in messages {
        release(&mut tx, message.id, reason, now).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Apply a delivery receipt to the segment `(message id, seq)` it was matched to (see
/// `relay::inbound::receipts`), inside `tx`. Replayed receipts change nothing.
///
/// # Errors
/// A store failure.
pub async fn apply_receipt(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    (message_id, seq): (i64, i64),
    delivered: bool,
    state: &str,
    error: Option<&str>,
    now: i64,
) -> Result<(), OutboxError> {
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
    Ok(())
}
