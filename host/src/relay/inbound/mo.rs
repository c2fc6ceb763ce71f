//! MO intake: every `deliver_sm` MO is stored once, long ones re-assembled
//! from their parts, before the SMSC gets its `deliver_sm_resp`.
//!
//! # De-duplication
//! An SMSC that misses our answer (a link drop between its `deliver_sm` and our
//! `deliver_sm_resp`) delivers the MO again, maybe on another bind while the first copy
//! is still being stored. Each `deliver_sm` has a fingerprint: operator, sender, service
//! number, data coding, `esm_class` and the exact bytes (the UDH with its concatenation
//! reference included, or the `sar_*` values). Its row in `mo_seen` (with the SMPP
//! session it came on) is written in the transaction that stores the MO. A copy within
//! `mo_dedup_window_secs` is a redelivery, answered without being stored or routed
//! again, when
//! * it is a part of a long MO (the same reference and bytes are the same message;
//!   for parts the window is at least `mo_part_window_secs`), or
//! * the session that brought the first copy is gone (closed, or another process's):
//!   our answer may never have reached the SMSC. While that session is still up, our
//!   answer went out on it, so the same text again is the user writing again ("A" to
//!   two quiz questions) and is a new MO.
//!
//! Copies are looked at one at a time (the write lock on SQLite, an advisory lock per
//! fingerprint on PostgreSQL), so two concurrent copies are one.
//!
//! # Re-assembly
//! Parts of one message share (operator, sender, reference, total). A part joins the
//! open message of its reference unless
//! * the open message began more than `mo_part_window_secs` ago (it is closed as
//!   incomplete first), or
//! * the open message already has that part number with other text, or another
//!   service number: the reference was reused, so the open message is closed as
//!   incomplete and this part starts a new one.
//!
//! A part numbered 0 or above its total is stored at once as an MO of its own.
//! A part number it already has with the same text is a redelivery and changes
//! nothing. Messages whose window ran out are closed by the relay's sweep too, so a
//! lost part never holds its message back for good. A closed incomplete message is
//! stored with the parts that arrived, in order, and `missing_parts` (`2/3`): routed
//! like any MO (`incomplete_mo = "route"`) or kept with status `incomplete`
//! (`"record"`); its parts are cleared either way.

use serde::Serialize;
use sha2::{Digest, Sha256};
use tongdao_smpp::{ConcatInfo, MoPdu};

use super::super::outbox::OutboxError;
use crate::relay::settings::{IncompleteMo, RelayConfig};
use crate::store::{Backend, Store, now_ms};

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

/// An MO text as it can be stored: a NUL (UCS-2 `0x0000` from a handset or a
/// peer) becomes U+FFFD on both stores, since PostgreSQL cannot keep a NUL in
/// text and an MO that cannot be stored would be redelivered without end.
pub fn storable(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        std::borrow::Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// Store one MO with its status and, for an incomplete one, the parts it misses.
async fn insert(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    operator: &str,
    source: &str,
    destination: &str,
    text: &str,
    (status, missing_parts): (&str, Option<&str>),
    (received_at, link_id): (i64, Option<&str>),
) -> Result<MoRecord, OutboxError> {
    let text = storable(text);
    Ok(sqlx::query_as(
        "INSERT INTO mo_messages (operator, source, destination, text, status, received_at, missing_parts,
            content_sha256, link_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         RETURNING id, operator, source, destination, text, status, received_at",
    )
    .bind(operator)
    .bind(source)
    .bind(destination)
    .bind(text.as_ref())
    .bind(status)
    .bind(received_at)
    .bind(missing_parts)
    // Kept for the regulator's history, as on every MT.
    .bind(hex::encode(Sha256::digest(text.as_bytes())))
    .bind(link_id)
    .fetch_one(&mut **tx)
    .await?)
}

/// What became of one `deliver_sm` MO.
#[derive(Debug, Clone, Default)]
pub struct MoIntake {
    /// A redelivery of one already stored: answered, nothing stored.
    pub duplicate: bool,
    /// MOs stored by this delivery, in order: a complete message, and any earlier
    /// message of the same reference it closed as incomplete.
    pub stored: Vec<MoRecord>,
}

impl MoIntake {
    /// The stored MOs the keyword router should see (status `received`).
    pub fn to_route(&self) -> impl Iterator<Item = &MoRecord> {
        self.stored.iter().filter(|m| m.status == "received")
    }
}

/// Store an MO (or one part of a long one) unless it is a redelivery.
///
/// # Errors
/// A store failure: nothing is stored and the caller must not acknowledge the MO (the
/// SMSC delivers it again).
///
/// `session` names the SMPP session it came on; `alive` tells whether a session
/// (of a first copy) is still up.
pub async fn mo(
    store: &Store,
    relay: &RelayConfig,
    (operator, session): (&str, &str),
    alive: &(dyn Fn(&str) -> bool + Sync),
    pdu: &MoPdu,
) -> Result<MoIntake, OutboxError> {
    let now = now_ms();
    let source = super::super::routing::normalize_msisdn(&pdu.source_addr)
        .unwrap_or_else(|_| pdu.source_addr.clone());
    // A part numbered 0 or above its total cannot be placed in its message: it is
    // stored at once as itself, as the in-memory re-assembler does (it used to count
    // towards its message, completing it without its last part; found by the
    // `long_mo` fuzz target, issue 18).
    let concat = pdu
        .concat
        .filter(|c| c.total > 1 && (1..=c.total).contains(&c.seq));
    let window_ms = dedup_window_ms(relay, concat.is_some());
    let fingerprint = fingerprint(&source, pdu);
    let mut tx = store.begin_write().await?;
    if store.backend() == Backend::Postgres {
        // Copies of one MO, and parts of one message, on two binds at once: one after
        // the other.
        let reference = concat.map_or(0, |c| c.reference);
        sqlx::query(
            "SELECT pg_advisory_xact_lock(hashtext($1)), pg_advisory_xact_lock(hashtext($2))",
        )
        .bind(format!("mo:{operator}:{source}:{reference}"))
        .bind(format!("mo-seen:{operator}:{fingerprint}"))
        .execute(&mut *tx)
        .await?;
    }
    let seen: Option<(String, i64)> = sqlx::query_as(
        "SELECT session, received_at FROM mo_seen WHERE operator = $1 AND fingerprint = $2",
    )
    .bind(operator)
    .bind(&fingerprint)
    .fetch_optional(&mut *tx)
    .await?;
    let redelivery = seen.is_some_and(|(first_session, at)| {
        at >= now - window_ms && (concat.is_some() || !alive(&first_session))
    });
    if redelivery {
        tx.rollback().await?;
        return Ok(MoIntake {
            duplicate: true,
            stored: Vec::new(),
        });
    }
    sqlx::query(
        "INSERT INTO mo_seen (operator, fingerprint, received_at, session) VALUES ($1, $2, $3, $4)
         ON CONFLICT (operator, fingerprint) DO UPDATE
            SET received_at = excluded.received_at, session = excluded.session",
    )
    .bind(operator)
    .bind(&fingerprint)
    .bind(now)
    .bind(session)
    .execute(&mut *tx)
    .await?;
    let Some(concat) = concat else {
        let record = insert(
            &mut tx,
            operator,
            &source,
            &pdu.destination_addr,
            &pdu.text,
            ("received", None),
            (now, pdu.link_id.as_deref()),
        )
        .await?;
        tx.commit().await?;
        return Ok(MoIntake {
            duplicate: false,
            stored: vec![record],
        });
    };
    let key = GroupKey {
        operator,
        source: &source,
        reference: i64::from(concat.reference),
        total: i64::from(concat.total),
    };
    let mut intake = MoIntake::default();
    let parts = key.parts(&mut tx).await?;
    let seq = i64::from(concat.seq);
    let same_part = parts.iter().find(|p| p.seq == seq);
    if same_part.is_some_and(|p| p.text == pdu.text && p.destination == pdu.destination_addr) {
        // The same part again, outside the de-duplication window: nothing new.
        tx.commit().await?;
        intake.duplicate = true;
        return Ok(intake);
    }
    let first = parts.iter().map(|p| p.first_received_at).min();
    let stale = first.is_some_and(|f| f < now - part_window_ms(relay));
    let reused = same_part.is_some() || parts.iter().any(|p| p.destination != pdu.destination_addr);
    let parts = if !parts.is_empty() && (stale || reused) {
        intake
            .stored
            .push(key.close_incomplete(&mut tx, relay, &parts).await?);
        Vec::new()
    } else {
        parts
    };
    sqlx::query(
        "INSERT INTO mo_parts (operator, source, ref, total, seq, destination, text, received_at, first_received_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(operator)
    .bind(&source)
    .bind(key.reference)
    .bind(key.total)
    .bind(seq)
    .bind(&pdu.destination_addr)
    .bind(storable(&pdu.text).as_ref())
    .bind(now)
    .bind(parts.iter().map(|p| p.first_received_at).min().unwrap_or(now))
    .execute(&mut *tx)
    .await?;
    if i64::try_from(parts.len()).unwrap_or(i64::MAX) + 1 >= key.total {
        let mut all = parts;
        all.push(Part {
            seq,
            destination: pdu.destination_addr.clone(),
            text: pdu.text.clone(),
            first_received_at: now,
        });
        all.sort_by_key(|p| p.seq);
        let text: String = all.iter().map(|p| p.text.as_str()).collect();
        key.clear(&mut tx).await?;
        let record = insert(
            &mut tx,
            operator,
            &source,
            &pdu.destination_addr,
            &text,
            ("received", None),
            // Every part of a CMPP long MO carries the same LinkID.
            (now, pdu.link_id.as_deref()),
        )
        .await?;
        intake.stored.push(record);
    }
    tx.commit().await?;
    Ok(intake)
}

/// Close every long MO whose part window ran out (stored incomplete, parts cleared),
/// and forget fingerprints older than the de-duplication windows. Returns the MOs
/// stored.
///
/// # Errors
/// A store failure.
pub async fn sweep(store: &Store, relay: &RelayConfig) -> Result<Vec<MoRecord>, OutboxError> {
    let now = now_ms();
    let groups: Vec<(String, String, i64, i64)> = sqlx::query_as(
        "SELECT operator, source, ref, total FROM mo_parts
         GROUP BY operator, source, ref, total
         HAVING MIN(COALESCE(first_received_at, received_at)) < $1",
    )
    .bind(now - part_window_ms(relay))
    .fetch_all(store.pool())
    .await?;
    let mut stored = Vec::new();
    for (operator, source, reference, total) in groups {
        let key = GroupKey {
            operator: &operator,
            source: &source,
            reference,
            total,
        };
        let mut tx = store.begin_write().await?;
        let parts = key.parts(&mut tx).await?;
        // Looked at again under the write lock: a part may have completed it meanwhile.
        if parts
            .iter()
            .any(|p| p.first_received_at < now - part_window_ms(relay))
        {
            stored.push(key.close_incomplete(&mut tx, relay, &parts).await?);
        }
        tx.commit().await?;
    }
    let keep_ms = dedup_window_ms(relay, true).max(dedup_window_ms(relay, false));
    sqlx::query("DELETE FROM mo_seen WHERE received_at < $1")
        .bind(now - keep_ms)
        .execute(store.pool())
        .await?;
    Ok(stored)
}

/// History retention: delete at most `batch` MO fingerprints (`mo_seen`)
/// received before `cutoff_ms` (Unix ms); returns how many went. (Each stored MO
/// also prunes those older than the de-duplication window; this catches an
/// operator whose MOs stopped.)
///
/// # Errors
/// A store failure.
pub async fn purge_seen_batch(
    store: &Store,
    cutoff_ms: i64,
    batch: i64,
) -> Result<u64, crate::store::StoreError> {
    store
        .delete_batch(
            "mo_seen",
            "operator, fingerprint",
            "received_at < $1",
            cutoff_ms,
            batch,
        )
        .await
}

fn dedup_window_ms(relay: &RelayConfig, part: bool) -> i64 {
    let secs = if part {
        relay.mo_dedup_window_secs.max(relay.mo_part_window_secs)
    } else {
        relay.mo_dedup_window_secs
    };
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

fn part_window_ms(relay: &RelayConfig) -> i64 {
    i64::try_from(relay.mo_part_window_secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// The fingerprint of one `deliver_sm` MO (see the module docs).
fn fingerprint(source: &str, pdu: &MoPdu) -> String {
    let mut hash = Sha256::new();
    for field in [source.as_bytes(), pdu.destination_addr.as_bytes()] {
        hash.update((field.len() as u64).to_be_bytes());
        hash.update(field);
    }
    hash.update([pdu.data_coding, pdu.esm_class]);
    hash.update((pdu.short_message.len() as u64).to_be_bytes());
    hash.update(&pdu.short_message);
    if let Some(ConcatInfo {
        reference,
        total,
        seq,
    }) = pdu.concat
    {
        hash.update(reference.to_be_bytes());
        hash.update([total, seq]);
    }
    hex::encode(hash.finalize())
}

/// The open long MO of one reference.
struct GroupKey<'a> {
    operator: &'a str,
    source: &'a str,
    reference: i64,
    total: i64,
}

#[derive(sqlx::FromRow)]
struct Part {
    seq: i64,
    destination: String,
    text: String,
    first_received_at: i64,
}

impl GroupKey<'_> {
    async fn parts(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    ) -> Result<Vec<Part>, OutboxError> {
        Ok(sqlx::query_as(
            "SELECT seq, destination, text, COALESCE(first_received_at, received_at) AS first_received_at
             FROM mo_parts WHERE operator = $1 AND source = $2 AND ref = $3 AND total = $4 ORDER BY seq",
        )
        .bind(self.operator)
        .bind(self.source)
        .bind(self.reference)
        .bind(self.total)
        .fetch_all(&mut **tx)
        .await?)
    }

    async fn clear(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    ) -> Result<(), OutboxError> {
        sqlx::query(
            "DELETE FROM mo_parts WHERE operator = $1 AND source = $2 AND ref = $3 AND total = $4",
        )
        .bind(self.operator)
        .bind(self.source)
        .bind(self.reference)
        .bind(self.total)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Store what arrived of this message as one incomplete MO and clear its parts.
    async fn close_incomplete(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        relay: &RelayConfig,
        parts: &[Part],
    ) -> Result<MoRecord, OutboxError> {
        let text: String = parts.iter().map(|p| p.text.as_str()).collect();
        let missing: Vec<String> = (1..=self.total)
            .filter(|seq| !parts.iter().any(|p| p.seq == *seq))
            .map(|seq| seq.to_string())
            .collect();
        let missing = format!("{}/{}", missing.join(","), self.total);
        let status = match relay.incomplete_mo {
            IncompleteMo::Route => "received",
            IncompleteMo::Record => "incomplete",
        };
        let destination = parts.first().map_or("", |p| p.destination.as_str());
        let first = parts.iter().map(|p| p.first_received_at).min().unwrap_or(0);
        self.clear(tx).await?;
        let record = insert(
            tx,
            self.operator,
            self.source,
            destination,
            &text,
            (status, Some(&missing)),
            (first, None),
        )
        .await?;
        tracing::warn!(
            operator = self.operator,
            mo = record.id,
            missing = %missing,
            status,
            "long MO closed incomplete: its parts did not all arrive in time"
        );
        Ok(record)
    }
}
