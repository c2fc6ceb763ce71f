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

/// Store a receipt and apply it to its MT if the MT is known yet.
pub async fn receipt(
    store: &Store,
    operator: &str,
    receipt: &Receipt,
) -> Result<bool, OutboxError> {
    let state = receipt.state.stat();
    let (receipt_id,): (i64,) = sqlx::query_as(
        "INSERT INTO receipts (operator, operator_message_id, state, error_code, raw, received_at)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(operator)
    .bind(&receipt.message_id)
    .bind(state)
    .bind(&receipt.error_code)
    .bind(&receipt.raw)
    .bind(now_ms())
    .fetch_one(store.pool())
    .await?;
    if !receipt.state.is_final() || receipt.message_id.is_empty() {
        // Intermediate states (ENROUTE, ACCEPTD) and unreadable receipts are kept
        // for the record; they change no message.
        return Ok(false);
    }
    match_receipt(
        store,
        receipt_id,
        operator,
        &receipt.message_id,
        receipt.state.is_success(),
        state,
        receipt.error_code.as_deref(),
    )
    .await
}

async fn match_receipt(
    store: &Store,
    receipt_id: i64,
    operator: &str,
    operator_message_id: &str,
    delivered: bool,
    state: &str,
    error: Option<&str>,
) -> Result<bool, OutboxError> {
    let candidates = normalize_message_id(operator_message_id);
    let Some((message_id, seq)) =
        outbox::apply_receipt(store, operator, &candidates, delivered, state, error).await?
    else {
        return Ok(false);
    };
    sqlx::query(
        "UPDATE receipts SET message_id = $2, segment_seq = $3, matched_at = $4 WHERE id = $1",
    )
    .bind(receipt_id)
    .bind(message_id)
    .bind(seq)
    .bind(now_ms())
    .execute(store.pool())
    .await?;
    Ok(true)
}

/// Try again to match final receipts that arrived before their MT's submit was
/// stored. Returns how many matched now.
pub async fn rematch(store: &Store) -> Result<u64, OutboxError> {
    let since = now_ms() - MATCH_RETRY_WINDOW_MS;
    let pending: Vec<(i64, String, String, String, Option<String>)> = sqlx::query_as(
        "SELECT id, operator, operator_message_id, state, error_code FROM receipts
         WHERE matched_at IS NULL AND received_at > $1 AND operator_message_id <> ''
           AND state IN ('DELIVRD', 'EXPIRED', 'DELETED', 'UNDELIV', 'REJECTD')
         ORDER BY id LIMIT 1000",
    )
    .bind(since)
    .fetch_all(store.pool())
    .await?;
    let mut matched = 0;
    for (id, operator, operator_message_id, state, error) in pending {
        let delivered = state == "DELIVRD";
        if match_receipt(
            store,
            id,
            &operator,
            &operator_message_id,
            delivered,
            &state,
            error.as_deref(),
        )
        .await?
        {
            matched += 1;
        }
    }
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
    let mut tx = store.pool().begin().await?;
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
