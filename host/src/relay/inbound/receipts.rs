//! Delivery receipts: each is stored, and applied to exactly one MT
//! segment by an unambiguous rule, or kept unmatched and tried again later.
//!
//! # The matching rule
//! SMSCs write a receipt's message id either as in their `submit_sm_resp`, or in the
//! other base (hex in the response, decimal in the receipt, or the reverse). Trying
//! every spelling at once is ambiguous: receipt `0000000136` (decimal) read as hex
//! `88` is also the id of an older MT of a decimal SMSC, and a receipt that raced
//! ahead of its own `submit_sm_resp` was applied to that MT. So:
//!
//! 1. Each operator has **one id format** ([`ReceiptIds`]): configured
//!    (`[[operators]] receipt_ids`), or learned and stored in `operator_receipt_ids`.
//!    With a format, a receipt id maps to exactly one submit id (compared without case
//!    and leading zeros) and matches that segment or nothing; an early receipt stays
//!    unmatched until its segment's id is stored.
//! 2. While the format is being learned, a candidate counts only if its MT went to the
//!    handset the receipt names. The **exact** spelling wins. A **cross-base** spelling
//!    is used only when an exact one can no longer arrive (no MT of that operator
//!    claimed before the receipt arrived is still waiting for its `submit_sm_resp`), and
//!    only if it is the one candidate left.
//! 3. A match where only one spelling found anything is evidence for that format; after
//!    [`LEARN_AFTER`] pieces of evidence for one format and none for another, the format
//!    is learned. Contradicting evidence keeps the operator in learning mode (and says
//!    so in the log): configure it.

use tongdao_smpp::{Receipt, canonical_message_id};

use super::super::outbox::{self, OutboxError};
use super::super::routing::normalize_msisdn;
use crate::relay::settings::ReceiptIds;
use crate::store::{Store, now_ms};

/// Keep trying to match an unmatched receipt this long after it arrived.
const MATCH_RETRY_WINDOW_MS: i64 = 10 * 60 * 1000;

/// Unambiguous matches of one format (and none of another) before it is learned.
pub const LEARN_AFTER: i64 = 10;

/// Unmatched receipts looked at again per page of [`rematch`].
const REMATCH_PAGE: i64 = 1000;

/// The formats a receipt id may be in, in the order tried while learning.
const FORMATS: [ReceiptIds; 3] = [
    ReceiptIds::Same,
    ReceiptIds::HexToDecimal,
    ReceiptIds::DecimalToHex,
];

/// The canonical `submit_sm_resp` id a receipt id stands for under `format`, if it
/// can be read that way (`None` for a decimal reading of a non-decimal id…).
pub fn submit_id_for(receipt_id: &str, format: ReceiptIds) -> Option<String> {
    let canonical = canonical_message_id(receipt_id);
    match format {
        ReceiptIds::Same | ReceiptIds::Auto => Some(canonical),
        ReceiptIds::HexToDecimal => canonical
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| canonical.parse::<u128>().ok())
            .flatten()
            .map(|v| format!("{v:x}")),
        ReceiptIds::DecimalToHex => u128::from_str_radix(&canonical, 16)
            .ok()
            .map(|v| v.to_string()),
    }
}

/// History retention: delete at most `batch` stored receipts received
/// before `cutoff_ms` (Unix ms), matched or not (an unmatched one is only
/// matched again within minutes); returns how many went.
///
/// # Errors
/// A store failure.
pub async fn purge_batch(
    store: &Store,
    cutoff_ms: i64,
    batch: i64,
) -> Result<u64, crate::store::StoreError> {
    store
        .delete_batch("receipts", "id", "received_at < $1", cutoff_ms, batch)
        .await
}

/// Store receipts and apply each to its MT when it can be matched now, all in one
/// transaction (receipts arrive in bursts; one commit per burst keeps up with them).
/// `configured` is the operator's `receipt_ids` setting. Returns how many matched.
///
/// Once the operator's id format is known (configured or learned) the burst is
/// handled set-wise: one lookup of every receipt's segment, one bulk apply
/// ([`outbox::apply_receipts`]), one multi-row INSERT of the receipts. While the
/// format is being learned, receipts are matched and applied one by one, in order.
///
/// # Errors
/// A store failure; nothing of the burst is stored then (the SMSC redelivers).
pub async fn receipts(
    store: &Store,
    operator: &str,
    configured: ReceiptIds,
    receipts: &[Receipt],
) -> Result<usize, OutboxError> {
    let mut tx = store.begin_write().await?;
    let matched = receipts_in(&mut tx, operator, configured, receipts, now_ms()).await?;
    tx.commit().await?;
    Ok(matched)
}

/// [`receipts`] inside `tx` (the relay's writer stores receipt bursts and submit
/// outcomes in one transaction, outcomes first).
///
/// # Errors
/// A store failure.
pub async fn receipts_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    operator: &str,
    configured: ReceiptIds,
    receipts: &[Receipt],
    now: i64,
) -> Result<usize, OutboxError> {
    let mut matcher = Matcher::load(tx, operator, configured).await?;
    // Intermediate states (ENROUTE, ACCEPTD) and unreadable receipts are kept for
    // the record; they change no message.
    let matchable = |r: &Receipt| r.state.is_final() && !r.message_id.is_empty();
    let applied = |r: &Receipt, segment: (i64, i64)| outbox::SegmentReceipt {
        segment,
        delivered: r.state.is_success(),
        state: r.state.stat().to_string(),
        error: r.error_code.clone(),
    };
    let mut hits: Vec<Option<(i64, i64)>> = vec![None; receipts.len()];
    if let Some(format) = matcher.format {
        let wanted: Vec<(usize, String)> = receipts
            .iter()
            .enumerate()
            .filter(|(_, r)| matchable(r))
            .filter_map(|(k, r)| submit_id_for(&r.message_id, format).map(|id| (k, id)))
            .collect();
        let ids: Vec<&str> = wanted.iter().map(|(_, id)| id.as_str()).collect();
        let found = segments_by_id(tx, operator, &ids).await?;
        let mut batch = Vec::with_capacity(wanted.len());
        for (k, id) in &wanted {
            if let Some(segment) = found.get(id) {
                hits[*k] = Some(*segment);
                batch.push(applied(&receipts[*k], *segment));
            }
        }
        outbox::apply_receipts(tx, &batch, now).await?;
    } else {
        for (k, receipt) in receipts.iter().enumerate() {
            if !matchable(receipt) {
                continue;
            }
            let handset = Handset::of(&receipt.source_addr, &receipt.destination_addr);
            if let Some(found) = matcher.find(tx, &receipt.message_id, &handset, now).await? {
                outbox::apply_receipts(tx, &[applied(receipt, found)], now).await?;
                hits[k] = Some(found);
            }
        }
    }
    insert_receipts(tx, operator, receipts, &hits, now).await?;
    matcher.save(tx, now).await?;
    Ok(hits.iter().filter(|h| h.is_some()).count())
}

/// Receipt rows per multi-row INSERT (7 bound parameters each).
const RECEIPT_ROWS_PER_STATEMENT: usize = 400;

/// Store `receipts` (with the segment each matched, if any) in multi-row INSERTs.
async fn insert_receipts(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    operator: &str,
    receipts: &[Receipt],
    hits: &[Option<(i64, i64)>],
    now: i64,
) -> Result<(), OutboxError> {
    let rows: Vec<(&Receipt, Option<(i64, i64)>)> =
        receipts.iter().zip(hits.iter().copied()).collect();
    for chunk in rows.chunks(RECEIPT_ROWS_PER_STATEMENT) {
        let mut sql = String::with_capacity(300 + chunk.len() * 64);
        sql.push_str(
            "INSERT INTO receipts (operator, operator_message_id, state, error_code, raw, received_at,
                message_id, segment_seq, matched_at, source_addr, destination_addr) VALUES ",
        );
        for (i, (_, hit)) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            let p = 3 + 6 * i;
            let (message_id, seq, matched_at) = match hit {
                Some((m, s)) => (m.to_string(), s.to_string(), now.to_string()),
                None => ("NULL".into(), "NULL".into(), "NULL".into()),
            };
            sql.push_str(&format!(
                "($1,${p},${},${},${},$2,{message_id},{seq},{matched_at},${},${})",
                p + 1,
                p + 2,
                p + 3,
                p + 4,
                p + 5
            ));
        }
        let mut query = sqlx::query(&sql).persistent(false).bind(operator).bind(now);
        for (receipt, _) in chunk {
            query = query
                .bind(&receipt.message_id)
                .bind(receipt.state.stat())
                .bind(&receipt.error_code)
                .bind(&receipt.raw)
                .bind(&receipt.source_addr)
                .bind(&receipt.destination_addr);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Segments of `operator` by stored (canonical) operator id, for a burst: one
/// query per [`RECEIPT_ROWS_PER_STATEMENT`] ids. Of two segments with one id (an
/// SMSC that reused it), the first found counts, as for a single receipt.
async fn segments_by_id(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    operator: &str,
    ids: &[&str],
) -> Result<std::collections::HashMap<String, (i64, i64)>, OutboxError> {
    let mut found = std::collections::HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(RECEIPT_ROWS_PER_STATEMENT) {
        let placeholders: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "SELECT operator_message_id, message_id, seq FROM message_segments
             WHERE operator = $1 AND operator_message_id IN ({})",
            placeholders.join(",")
        );
        let mut query = sqlx::query_as::<_, (String, i64, i64)>(&sql)
            .persistent(false)
            .bind(operator);
        for id in chunk {
            query = query.bind(*id);
        }
        for (id, message_id, seq) in query.fetch_all(&mut **tx).await? {
            found.entry(id).or_insert((message_id, seq));
        }
    }
    Ok(found)
}

/// Try again to match final receipts that arrived before their MT's submit was
/// stored (within [`MATCH_RETRY_WINDOW_MS`]), page by page so old receipts that
/// never match do not hide newer ones. `configured` gives each operator's setting.
/// Returns how many matched now. Receipts of an operator whose format is known are
/// matched and applied set-wise per page; while a format is learned, one by one.
///
/// # Errors
/// A store failure.
pub async fn rematch(
    store: &Store,
    configured: &(dyn Fn(&str) -> ReceiptIds + Sync),
) -> Result<u64, OutboxError> {
    let now = now_ms();
    let mut matched = 0;
    let mut after = 0i64;
    loop {
        let pending: Vec<PendingReceipt> = sqlx::query_as(
            "SELECT id, operator, operator_message_id, state, error_code, received_at,
                    source_addr, destination_addr
             FROM receipts
             WHERE matched_at IS NULL AND id > $1 AND received_at > $2 AND operator_message_id <> ''
               AND state IN ('DELIVRD', 'EXPIRED', 'DELETED', 'UNDELIV', 'REJECTD', 'ACCEPTD', 'UNKNOWN')
             ORDER BY id LIMIT $3",
        )
        .bind(after)
        .bind(now - MATCH_RETRY_WINDOW_MS)
        .bind(REMATCH_PAGE)
        .fetch_all(store.pool())
        .await?;
        let Some(last) = pending.last() else {
            return Ok(matched);
        };
        after = last.id;
        let full_page = pending.len() == usize::try_from(REMATCH_PAGE).unwrap_or(usize::MAX);
        let mut tx = store.begin_write().await?;
        let mut matchers: Vec<Matcher> = Vec::new();
        let mut operators: Vec<&str> = pending.iter().map(|r| r.operator.as_str()).collect();
        operators.sort_unstable();
        operators.dedup();
        for operator in &operators {
            matchers.push(Matcher::load(&mut tx, operator, configured(operator)).await?);
        }
        let applied = |receipt: &PendingReceipt, segment: (i64, i64)| outbox::SegmentReceipt {
            segment,
            delivered: matches!(receipt.state.as_str(), "DELIVRD" | "ACCEPTD"),
            state: receipt.state.clone(),
            error: receipt.error_code.clone(),
        };
        // (receipt id, segment) of every match, in receipt order.
        let mut hits: Vec<(i64, (i64, i64))> = Vec::new();
        for matcher in &mut matchers {
            let operator = matcher.operator.clone();
            let mine = pending.iter().filter(|r| r.operator == operator);
            if let Some(format) = matcher.format {
                let wanted: Vec<(&PendingReceipt, String)> = mine
                    .filter_map(|r| submit_id_for(&r.operator_message_id, format).map(|id| (r, id)))
                    .collect();
                let ids: Vec<&str> = wanted.iter().map(|(_, id)| id.as_str()).collect();
                let found = segments_by_id(&mut tx, &matcher.operator, &ids).await?;
                let mut batch = Vec::new();
                for (receipt, id) in &wanted {
                    if let Some(segment) = found.get(id) {
                        hits.push((receipt.id, *segment));
                        batch.push(applied(receipt, *segment));
                    }
                }
                outbox::apply_receipts(&mut tx, &batch, now).await?;
                continue;
            }
            for receipt in mine {
                let handset = Handset::of(
                    receipt.source_addr.as_deref().unwrap_or(""),
                    receipt.destination_addr.as_deref().unwrap_or(""),
                );
                if let Some(found) = matcher
                    .find(
                        &mut tx,
                        &receipt.operator_message_id,
                        &handset,
                        receipt.received_at,
                    )
                    .await?
                {
                    outbox::apply_receipts(&mut tx, &[applied(receipt, found)], now).await?;
                    hits.push((receipt.id, found));
                }
            }
        }
        for chunk in hits.chunks(RECEIPT_ROWS_PER_STATEMENT) {
            let values: Vec<String> = chunk
                .iter()
                .map(|(id, (m, s))| format!("({id},{m},{s})"))
                .collect();
            let sql = format!(
                "WITH v(rid, mid, sq) AS (VALUES {})
                 UPDATE receipts SET message_id = v.mid, segment_seq = v.sq, matched_at = $1
                 FROM v WHERE receipts.id = v.rid",
                values.join(",")
            );
            sqlx::query(&sql)
                .persistent(false)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        matched += u64::try_from(hits.len()).unwrap_or(u64::MAX);
        for matcher in &mut matchers {
            matcher.save(&mut tx, now).await?;
        }
        tx.commit().await?;
        if !full_page {
            return Ok(matched);
        }
    }
}

#[derive(sqlx::FromRow)]
struct PendingReceipt {
    id: i64,
    operator: String,
    operator_message_id: String,
    state: String,
    error_code: Option<String>,
    received_at: i64,
    source_addr: Option<String>,
    destination_addr: Option<String>,
}

/// The handset a receipt names (its `source_addr`; some SMSCs swap the addresses, so
/// either may be it). Empty when neither is a valid number: then it cannot disagree.
struct Handset(Vec<String>);

impl Handset {
    fn of(source: &str, destination: &str) -> Self {
        Self(
            [source, destination]
                .into_iter()
                .filter_map(|a| normalize_msisdn(a).ok())
                .collect(),
        )
    }

    fn agrees(&self, recipient: &str) -> bool {
        self.0.is_empty() || self.0.iter().any(|n| n == recipient)
    }
}

/// One operator's format and the evidence gathered in this transaction.
struct Matcher {
    operator: String,
    /// Configured or learned.
    format: Option<ReceiptIds>,
    /// Evidence per format (same, hex-to-decimal, decimal-to-hex), as stored.
    evidence: [i64; 3],
    changed: bool,
}

impl Matcher {
    async fn load(
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        operator: &str,
        configured: ReceiptIds,
    ) -> Result<Self, OutboxError> {
        let row: Option<(String, i64, i64, i64)> = sqlx::query_as(
            "SELECT format, same, hex_to_decimal, decimal_to_hex FROM operator_receipt_ids WHERE operator = $1",
        )
        .bind(operator)
        .fetch_optional(&mut **tx)
        .await?;
        let (learned, evidence) = match row {
            Some((format, a, b, c)) => (ReceiptIds::parse(&format), [a, b, c]),
            None => (None, [0; 3]),
        };
        let format = match configured {
            ReceiptIds::Auto => learned.filter(|f| *f != ReceiptIds::Auto),
            fixed => Some(fixed),
        };
        Ok(Self {
            operator: operator.to_string(),
            format,
            evidence,
            changed: false,
        })
    }

    /// The segment `(message id, seq)` this receipt id belongs to, by the rule of
    /// the module docs; `None`: keep it unmatched for now.
    async fn find(
        &mut self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        receipt_id: &str,
        handset: &Handset,
        received_at: i64,
    ) -> Result<Option<(i64, i64)>, OutboxError> {
        if let Some(format) = self.format {
            let Some(id) = submit_id_for(receipt_id, format) else {
                return Ok(None);
            };
            return Ok(segment(tx, &self.operator, &id)
                .await?
                .map(|(m, s, _)| (m, s)));
        }
        // Learning: every reading, with the handset check.
        let mut hits: [Option<(i64, i64)>; 3] = [None; 3];
        let mut seen: Vec<String> = Vec::new();
        for (k, format) in FORMATS.iter().enumerate() {
            let Some(id) = submit_id_for(receipt_id, *format) else {
                continue;
            };
            // Two readings giving the same id are one candidate, found by the first.
            if seen.contains(&id) {
                continue;
            }
            seen.push(id.clone());
            if let Some((m, s, recipient)) = segment(tx, &self.operator, &id).await?
                && handset.agrees(&recipient)
            {
                hits[k] = Some((m, s));
            }
        }
        let found: Vec<usize> = (0..3).filter(|k| hits[*k].is_some()).collect();
        let chosen = if hits[0].is_some() {
            Some(0)
        } else if found.is_empty() || exact_may_arrive(tx, &self.operator, received_at).await? {
            None
        } else if found.len() == 1 {
            Some(found[0])
        } else {
            None
        };
        let Some(k) = chosen else {
            return Ok(None);
        };
        if found.len() == 1 {
            self.evidence[k] += 1;
            self.changed = true;
            self.learn();
        }
        Ok(hits[k])
    }

    fn learn(&mut self) {
        let Some(k) = (0..3).find(|k| self.evidence[*k] >= LEARN_AFTER) else {
            return;
        };
        if (0..3).any(|j| j != k && self.evidence[j] > 0) {
            tracing::warn!(
                operator = %self.operator,
                evidence = ?self.evidence,
                "receipt ids of this operator read more than one way; set [[operators]] receipt_ids"
            );
            return;
        }
        self.format = Some(FORMATS[k]);
        tracing::info!(operator = %self.operator, format = FORMATS[k].as_str(), "receipt id format learned");
    }

    async fn save(
        &mut self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        now: i64,
    ) -> Result<(), OutboxError> {
        if !self.changed {
            return Ok(());
        }
        self.changed = false;
        let format = self.format.unwrap_or(ReceiptIds::Auto);
        let learned_at = self.format.map(|_| now);
        sqlx::query(
            "INSERT INTO operator_receipt_ids (operator, format, same, hex_to_decimal, decimal_to_hex, learned_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (operator) DO UPDATE SET format = excluded.format, same = excluded.same,
                hex_to_decimal = excluded.hex_to_decimal, decimal_to_hex = excluded.decimal_to_hex,
                learned_at = COALESCE(operator_receipt_ids.learned_at, excluded.learned_at)",
        )
        .bind(&self.operator)
        .bind(format.as_str())
        .bind(self.evidence[0])
        .bind(self.evidence[1])
        .bind(self.evidence[2])
        .bind(learned_at)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

/// The segment whose stored (canonical) operator id is `id`, with its MT's recipient.
async fn segment(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    operator: &str,
    id: &str,
) -> Result<Option<(i64, i64, String)>, OutboxError> {
    Ok(sqlx::query_as(
        "SELECT s.message_id, s.seq, m.recipient FROM message_segments s JOIN messages m ON m.id = s.message_id
         WHERE s.operator = $1 AND s.operator_message_id = $2",
    )
    .bind(operator)
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?)
}

/// Could the exact id of a receipt received at `received_at` still be stored? Yes
/// while an MT of the operator claimed no later than that waits for its responses.
async fn exact_may_arrive(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    operator: &str,
    received_at: i64,
) -> Result<bool, OutboxError> {
    let row: Option<(i64,)> = sqlx::query_as(
        "SELECT id FROM messages WHERE operator = $1 AND status = 'submitting' AND updated_at <= $2 LIMIT 1",
    )
    .bind(operator)
    .bind(received_at)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_format_reads_an_id_one_way() {
        assert_eq!(
            submit_id_for("0000000136", ReceiptIds::Same).unwrap(),
            "136"
        );
        assert_eq!(
            submit_id_for("0000000136", ReceiptIds::HexToDecimal).unwrap(),
            "88"
        );
        assert_eq!(
            submit_id_for("1A2B", ReceiptIds::DecimalToHex).unwrap(),
            "6699"
        );
        assert_eq!(submit_id_for("1A2B", ReceiptIds::HexToDecimal), None);
        assert_eq!(submit_id_for("msg-1", ReceiptIds::DecimalToHex), None);
    }
}
