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
         RETURNING id, recipient, text, attempts, expires_at, sender, charge_plan, price_fen,
                   service, basis, mo_id, subscription_id"
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

/// Store the outcomes of one batch of submits in one transaction. The common
/// case is bulk: every accepted segment's operator id in one multi-row statement,
/// every fully accepted MT marked `submitted` in one, and their events in one; the
/// rare failures (retry, expiry, release) go one by one.
///
/// # Errors
/// A store failure; nothing of the batch is stored then (the leases run out and the
/// sweep re-queues the rows under the unknown-outcome rule).
pub async fn record_submits(
    store: &Store,
    relay: &RelayConfig,
    results: &[(Claimed, SubmitResult)],
) -> Result<(), OutboxError> {
    if results.is_empty() {
        return Ok(());
    }
    let mut tx = store.begin_write().await?;
    record_submits_in(&mut tx, relay, results, now_ms()).await?;
    tx.commit().await?;
    Ok(())
}

/// [`record_submits`] inside `tx` (the relay's writer stores submit outcomes and
/// receipt bursts in one transaction).
///
/// # Errors
/// A store failure.
pub async fn record_submits_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    relay: &RelayConfig,
    results: &[(Claimed, SubmitResult)],
    now: i64,
) -> Result<(), OutboxError> {
    let mut segments: Vec<(i64, i64, String)> = Vec::with_capacity(results.len());
    let mut submitted: Vec<i64> = Vec::with_capacity(results.len());
    let mut recorded: Vec<i64> = Vec::new();
    for (message, result) in results {
        let accepted = match result {
            SubmitResult::Accepted(a) => {
                submitted.push(message.id);
                a
            }
            SubmitResult::Recorded(a) => {
                submitted.push(message.id);
                recorded.push(message.id);
                a
            }
            SubmitResult::Failed { accepted, .. } => accepted,
        };
        for (seq, operator_id) in accepted {
            segments.push((
                message.id,
                *seq,
                tongdao_smpp::canonical_message_id(operator_id),
            ));
        }
    }
    set_operator_ids(tx, &segments, now).await?;
    // A receipt may already have finished a message; keep that (only `submitting`
    // rows move, and only those get the event).
    let mut events: Vec<(i64, &str, Option<String>)> = Vec::with_capacity(submitted.len());
    for ids in submitted.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "UPDATE messages SET status = 'submitted', lease_until = NULL, updated_at = $1
             WHERE id IN ({}) AND status = 'submitting' RETURNING id",
            id_list(ids)
        );
        let moved: Vec<(i64,)> = sqlx::query_as(&sql)
            .persistent(false)
            .bind(now)
            .fetch_all(&mut **tx)
            .await?;
        events.extend(moved.into_iter().map(|(id,)| (id, "submitted", None)));
    }
    events_bulk(tx, &events, now).await?;
    // Billing records no report will follow: final once the gateway has them.
    for id in recorded {
        sqlx::query(
            "UPDATE message_segments SET status = 'delivered', error = $2, done_at = $3
             WHERE message_id = $1 AND done_at IS NULL",
        )
        .bind(id)
        .bind(RECORDED)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        finish(tx, id, "delivered", None, now).await?;
    }
    for (message, result) in results {
        let SubmitResult::Failed { failure, .. } = result else {
            continue;
        };
        record_failure(tx, relay, message, failure, now).await?;
    }
    Ok(())
}

/// The state a billing record's segments are finished with, in place of a report's
/// `stat` (the gateway sends none for records).
const RECORDED: &str = "RECORDED";

/// Bound parameters a multi-row statement uses at most per row is 8; 500 rows stay
/// far below SQLite's 32,766 and PostgreSQL's 65,535.
const ROWS_PER_STATEMENT: usize = 500;

/// Ids the host made, as an SQL list (`1,2,3`): integers only, never user input.
fn id_list(ids: &[i64]) -> String {
    let mut out = String::with_capacity(ids.len() * 8);
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&id.to_string());
    }
    out
}

/// Store the operator ids (canonical) of accepted segments `(message id, seq, id)`,
/// each once: a segment that already has one keeps it. One statement per
/// [`ROWS_PER_STATEMENT`] segments.
async fn set_operator_ids(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    segments: &[(i64, i64, String)],
    now: i64,
) -> Result<(), sqlx::Error> {
    for chunk in segments.chunks(ROWS_PER_STATEMENT) {
        let mut values = String::with_capacity(chunk.len() * 24);
        for (i, (message_id, seq, _)) in chunk.iter().enumerate() {
            if i > 0 {
                values.push(',');
            }
            values.push_str(&format!("({message_id},{seq},${})", i + 2));
        }
        let sql = format!(
            "WITH v(mid, sq, oid) AS (VALUES {values})
             UPDATE message_segments SET operator_message_id = v.oid, status = 'submitted', submitted_at = $1
             FROM v WHERE message_segments.message_id = v.mid AND message_segments.seq = v.sq
               AND message_segments.operator_message_id IS NULL"
        );
        let mut query = sqlx::query(&sql).persistent(false).bind(now);
        for (_, _, operator_id) in chunk {
            query = query.bind(operator_id);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// History events `(message id, status, detail)` at `at`, one multi-row INSERT per
/// [`ROWS_PER_STATEMENT`].
async fn events_bulk(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    events: &[(i64, &str, Option<String>)],
    at: i64,
) -> Result<(), sqlx::Error> {
    for chunk in events.chunks(ROWS_PER_STATEMENT) {
        let mut sql = String::with_capacity(80 + chunk.len() * 32);
        sql.push_str("INSERT INTO message_events (message_id, status, detail, at) VALUES ");
        for (i, (message_id, _, _)) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!("({message_id},${},${},$1)", 2 * i + 2, 2 * i + 3));
        }
        let mut query = sqlx::query(&sql).persistent(false).bind(at);
        for (_, status, detail) in chunk {
            query = query.bind(*status).bind(detail.as_deref());
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// The outcome of a submit that did not go through: final failure, retry later
/// (or expiry), or release unsent.
async fn record_failure(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    relay: &RelayConfig,
    message: &Claimed,
    failure: &Failure,
    now: i64,
) -> Result<(), sqlx::Error> {
    match failure {
        Failure::Permanent(reason) => {
            finish(tx, message.id, "failed", Some(reason), now).await?;
        }
        Failure::NotSent(reason) => {
            release(tx, message.id, reason, now).await?;
        }
        Failure::Temporary(reason) | Failure::Unknown(reason) => {
            let unknown = matches!(failure, Failure::Unknown(_));
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
                finish(tx, message.id, "expired", Some(&reason), now).await?;
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
                    .execute(&mut **tx)
                    .await?;
                let status = if unknown {
                    "retry-unknown-outcome"
                } else {
                    "retry"
                };
                event(tx, message.id, status, Some(reason), now).await?;
            }
        }
    }
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
/// Extend the leases of `ids` still `submitting` to `lease` from now: the claims a
/// live process holds (its relay renews them while it runs, so only a dead worker's
/// leases run out). Returns how many were renewed.
///
/// # Errors
/// A store failure; the leases then run as they were.
pub async fn renew_leases(store: &Store, ids: &[i64], lease: Duration) -> Result<u64, OutboxError> {
    let until = now_ms().saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
    let mut renewed = 0;
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "UPDATE messages SET lease_until = $1 WHERE id IN ({}) AND status = 'submitting'",
            id_list(chunk)
        );
        renewed += sqlx::query(&sql)
            .persistent(false)
            .bind(until)
            .execute(store.pool())
            .await?
            .rows_affected();
    }
    Ok(renewed)
}

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
    // Each expiry gets its history event in the same transaction (the statistics
    // count final states from the events).
    let mut tx = store.begin_write().await?;
    let expired: Vec<(i64, Option<String>)> = sqlx::query_as(
        "UPDATE messages SET status = 'expired', done_at = $1, updated_at = $1,
            failure_reason = COALESCE(failure_reason, 'validity period ended before it could be sent')
         WHERE status = 'queued' AND expires_at < $1
         RETURNING id, failure_reason",
    )
    .bind(now)
    .fetch_all(&mut *tx)
    .await?;
    let events: Vec<(i64, &str, Option<String>)> = expired
        .into_iter()
        .map(|(id, reason)| (id, "expired", reason))
        .collect();
    events_bulk(&mut tx, &events, now).await?;
    tx.commit().await?;
    let expired = u64::try_from(events.len()).unwrap_or(u64::MAX);
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

/// A final receipt matched to one MT segment (see `relay::inbound::receipts`).
#[derive(Debug, Clone)]
pub struct SegmentReceipt {
    /// The segment: (message id, seq).
    pub segment: (i64, i64),
    pub delivered: bool,
    /// The receipt's `stat` (`DELIVRD`, `UNDELIV`…).
    pub state: String,
    /// The receipt's `err`, if any.
    pub error: Option<String>,
}

/// Apply delivery receipts to the segments they were matched to, inside `tx`, in
/// bulk: one statement finishes the segments, one puts every MT whose
/// segments are now all final in its final state (`delivered`, or `failed` with the
/// first failed segment's error), one writes their events. Replayed receipts change
/// nothing: a segment is finished once, an MT once; of two receipts for one segment
/// in `receipts`, the first counts.
///
/// # Errors
/// A store failure.
pub async fn apply_receipts(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    receipts: &[SegmentReceipt],
    now: i64,
) -> Result<(), OutboxError> {
    let mut seen = std::collections::HashSet::with_capacity(receipts.len());
    let unique: Vec<&SegmentReceipt> = receipts.iter().filter(|r| seen.insert(r.segment)).collect();
    let mut changed: Vec<i64> = Vec::with_capacity(unique.len());
    for chunk in unique.chunks(ROWS_PER_STATEMENT) {
        let mut values = String::with_capacity(chunk.len() * 32);
        for (i, r) in chunk.iter().enumerate() {
            if i > 0 {
                values.push(',');
            }
            let status = if r.delivered { "delivered" } else { "failed" };
            let (message_id, seq) = r.segment;
            values.push_str(&format!("({message_id},{seq},'{status}',${})", i + 2));
        }
        let sql = format!(
            "WITH v(mid, sq, st, er) AS (VALUES {values})
             UPDATE message_segments SET status = v.st, error = v.er, done_at = $1
             FROM v WHERE message_segments.message_id = v.mid AND message_segments.seq = v.sq
               AND message_segments.done_at IS NULL
             RETURNING message_id"
        );
        let mut query = sqlx::query_as::<_, (i64,)>(&sql)
            .persistent(false)
            .bind(now);
        for r in chunk {
            query = query.bind(
                r.error
                    .as_ref()
                    .map(|e| format!("{} err:{e}", r.state))
                    .unwrap_or_else(|| r.state.clone()),
            );
        }
        changed.extend(
            query
                .fetch_all(&mut **tx)
                .await?
                .into_iter()
                .map(|(id,)| id),
        );
    }
    changed.sort_unstable();
    changed.dedup();
    let mut events: Vec<(i64, &str, Option<String>)> = Vec::with_capacity(changed.len());
    for ids in changed.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "UPDATE messages SET
                status = CASE WHEN EXISTS (SELECT 1 FROM message_segments s
                                           WHERE s.message_id = messages.id AND s.status = 'failed')
                         THEN 'failed' ELSE 'delivered' END,
                failure_reason = (SELECT 'the operator reported ' || COALESCE(s.error, 'a failed delivery')
                                  FROM message_segments s
                                  WHERE s.message_id = messages.id AND s.status = 'failed'
                                  ORDER BY s.seq LIMIT 1),
                lease_until = NULL, done_at = $1, updated_at = $1
             WHERE id IN ({}) AND status NOT IN ('delivered', 'failed', 'expired')
               AND NOT EXISTS (SELECT 1 FROM message_segments s
                               WHERE s.message_id = messages.id AND s.status NOT IN ('delivered', 'failed'))
             RETURNING id, status, failure_reason",
            id_list(ids)
        );
        let finished: Vec<(i64, String, Option<String>)> = sqlx::query_as(&sql)
            .persistent(false)
            .bind(now)
            .fetch_all(&mut **tx)
            .await?;
        events.extend(finished.into_iter().map(|(id, status, reason)| {
            let status = if status == "failed" {
                "failed"
            } else {
                "delivered"
            };
            (id, status, reason)
        }));
    }
    events_bulk(tx, &events, now).await?;
    Ok(())
}
