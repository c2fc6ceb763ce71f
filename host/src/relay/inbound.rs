//! What operators send us: delivery receipts (matched to MTs, or kept unmatched and
//! matched later when they raced ahead of the `submit_sm_resp`) and MOs (long ones
//! re-assembled from stored parts). Each is durable before the SMSC gets its
//! `deliver_sm_resp`, so nothing an operator hands over is lost.

use serde::Serialize;
use tongdao_smpp::{MoPdu, Receipt, normalize_message_id};

use super::outbox::{self, OutboxError};
use crate::store::{Store, now_ms};

/// Keep trying to match an unmatched receipt this long after it arrived.
const MATCH_RETRY_WINDOW_MS: i64 = 10 * 60 * 1000;

/// Store receipts and apply each to its MT if the MT is known yet, all in one
/// transaction (receipts arrive in bursts; one commit per burst keeps up with them).
/// Returns how many matched.
pub async fn receipts(
    store: &Store,
    operator: &str,
    receipts: &[Receipt],
) -> Result<usize, OutboxError> {
    let now = now_ms();
    let mut matched = 0;
    let mut tx = store.begin_write().await?;
    for receipt in receipts {
        let state = receipt.state.stat();
        // Intermediate states (ENROUTE, ACCEPTD) and unreadable receipts are kept for
        // the record; they change no message.
        let hit = if receipt.state.is_final() && !receipt.message_id.is_empty() {
            let candidates = normalize_message_id(&receipt.message_id);
            let success = receipt.state.is_success();
            let error = receipt.error_code.as_deref();
            outbox::apply_receipt(&mut tx, operator, &candidates, success, state, error, now)
                .await?
        } else {
            None
        };
        matched += usize::from(hit.is_some());
        sqlx::query(
            "INSERT INTO receipts (operator, operator_message_id, state, error_code, raw, received_at,
                message_id, segment_seq, matched_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(operator)
        .bind(&receipt.message_id)
        .bind(state)
        .bind(&receipt.error_code)
        .bind(&receipt.raw)
        .bind(now)
        .bind(hit.map(|h| h.0))
        .bind(hit.map(|h| h.1))
        .bind(hit.map(|_| now))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(matched)
}

/// Try again to match final receipts that arrived before their MT's submit was
/// stored. Returns how many matched now.
pub async fn rematch(store: &Store) -> Result<u64, OutboxError> {
    let now = now_ms();
    let pending: Vec<(i64, String, String, String, Option<String>)> = sqlx::query_as(
        "SELECT id, operator, operator_message_id, state, error_code FROM receipts
         WHERE matched_at IS NULL AND received_at > $1 AND operator_message_id <> ''
           AND state IN ('DELIVRD', 'EXPIRED', 'DELETED', 'UNDELIV', 'REJECTD')
         ORDER BY id LIMIT 1000",
    )
    .bind(now - MATCH_RETRY_WINDOW_MS)
    .fetch_all(store.pool())
    .await?;
    if pending.is_empty() {
        return Ok(0);
    }
    let mut matched = 0;
    let mut tx = store.begin_write().await?;
    for (id, operator, operator_message_id, state, error) in pending {
        let candidates = normalize_message_id(&operator_message_id);
        let delivered = state == "DELIVRD";
        let hit = outbox::apply_receipt(
            &mut tx,
            &operator,
            &candidates,
            delivered,
            &state,
            error.as_deref(),
            now,
        )
        .await?;
        if let Some((message_id, seq)) = hit {
            sqlx::query("UPDATE receipts SET message_id = $2, segment_seq = $3, matched_at = $4 WHERE id = $1")
                .bind(id)
                .bind(message_id)
                .bind(seq)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            matched += 1;
        }
    }
    tx.commit().await?;
    Ok(matched)
}

/// One inbound MO as stored.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct MoRecord {
    pub id: i64,
    pub operator: String,
    pub source: String,
    pub destination: String,
    pub text: String,
    pub status: String,
    pub received_at: i64,
}

/// Store an MO (or one part of a long one). Returns the MO record once complete.
pub async fn mo(
    store: &Store,
    operator: &str,
    pdu: &MoPdu,
) -> Result<Option<MoRecord>, OutboxError> {
    let now = now_ms();
    let source = super::routing::normalize_msisdn(&pdu.source_addr)
        .unwrap_or_else(|_| pdu.source_addr.clone());
    let Some(concat) = pdu.concat.filter(|c| c.total > 1) else {
        return Ok(Some(
            insert_mo(
                store,
                operator,
                &source,
                &pdu.destination_addr,
                &pdu.text,
                now,
            )
            .await?,
        ));
    };
    let mut tx = store.begin_write().await?;
    sqlx::query(
        "INSERT INTO mo_parts (operator, source, ref, total, seq, destination, text, received_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
    )
    .bind(operator)
    .bind(&source)
    .bind(i64::from(concat.reference))
    .bind(i64::from(concat.total))
    .bind(i64::from(concat.seq))
    .bind(&pdu.destination_addr)
    .bind(&pdu.text)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let parts: Vec<(String,)> = sqlx::query_as(
        "SELECT text FROM mo_parts WHERE operator = $1 AND source = $2 AND ref = $3 AND total = $4 ORDER BY seq",
    )
    .bind(operator)
    .bind(&source)
    .bind(i64::from(concat.reference))
    .bind(i64::from(concat.total))
    .fetch_all(&mut *tx)
    .await?;
    if parts.len() < usize::from(concat.total) {
        tx.commit().await?;
        return Ok(None);
    }
    let text: String = parts.into_iter().map(|(t,)| t).collect();
    sqlx::query(
        "DELETE FROM mo_parts WHERE operator = $1 AND source = $2 AND ref = $3 AND total = $4",
    )
    .bind(operator)
    .bind(&source)
    .bind(i64::from(concat.reference))
    .bind(i64::from(concat.total))
    .execute(&mut *tx)
    .await?;
    let record: MoRecord = sqlx::query_as(
        "INSERT INTO mo_messages (operator, source, destination, text, status, received_at)
         VALUES ($1, $2, $3, $4, 'received', $5)
         RETURNING id, operator, source, destination, text, status, received_at",
    )
    .bind(operator)
    .bind(&source)
    .bind(&pdu.destination_addr)
    .bind(&text)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(record))
}

async fn insert_mo(
    store: &Store,
    operator: &str,
    source: &str,
    destination: &str,
    text: &str,
    now: i64,
) -> Result<MoRecord, OutboxError> {
    Ok(sqlx::query_as(
        "INSERT INTO mo_messages (operator, source, destination, text, status, received_at)
         VALUES ($1, $2, $3, $4, 'received', $5)
         RETURNING id, operator, source, destination, text, status, received_at",
    )
    .bind(operator)
    .bind(source)
    .bind(destination)
    .bind(text)
    .bind(now)
    .fetch_one(store.pool())
    .await?)
}
