//! The feeder: reads the records other parts write, by durable cursors, and
//! appends partner events in the transaction that moves each cursor.
//!
//! Sources read by id (`message_events`, `mo_messages`, `module_faults`,
//! `suspensions`, `partner_notices`, `agreement_terms`, `operator_terms`) are taken
//! in id order up to the first row that is not ready: on PostgreSQL a row younger
//! than `[webhooks] feed_lag_ms` (ids are drawn before commit, so a lower id may
//! still commit), for `mo_messages` an MO not routed yet. On SQLite every write
//! transaction holds the one write lock, so ids commit in order and there is no
//! lag. Sources read by time (`push_runs.finished_at`, `statement_issues.issued_at`)
//! take rows older than the lag on both stores.
//!
//! Nothing here writes another part's tables; the hot paths write nothing more.

use serde_json::json;

use super::{NewEvent, WebhooksConfig, append_in, lock_feed};
use crate::store::{Backend, Store, StoreError, now_ms};

/// Rows read per source per round.
const BATCH: i64 = 500;

/// Every source, in the order they are read.
const SOURCES: &[&str] = &[
    "message_events",
    "mo_messages",
    "push_runs",
    "module_faults",
    "suspensions",
    "partner_notices",
    "agreement_terms",
    "operator_terms",
    "statement_issues",
];

/// What one source read gives: events, and the new cursor if it moved.
type Read = (Vec<NewEvent>, Option<(i64, i64)>);

/// Read every source once; returns how many events were appended.
///
/// # Errors
/// [`StoreError`] when the store fails (the round is retried next time; a failed
/// source appends nothing and keeps its cursor).
pub async fn feed_once(store: &Store, config: &WebhooksConfig) -> Result<usize, StoreError> {
    let mut total = 0;
    for source in SOURCES {
        // A source that is full keeps its turn until it is drained.
        loop {
            let (appended, moved) = feed_source(store, config, source).await?;
            total += appended;
            if !moved {
                break;
            }
        }
    }
    Ok(total)
}

async fn feed_source(
    store: &Store,
    config: &WebhooksConfig,
    source: &str,
) -> Result<(usize, bool), StoreError> {
    let now = now_ms();
    let lag = i64::try_from(config.feed_lag_ms).unwrap_or(i64::MAX);
    // Ids commit in order on SQLite (one writer); on PostgreSQL wait out the lag.
    let id_ready_before = match store.backend() {
        Backend::Sqlite => i64::MAX,
        Backend::Postgres => now - lag,
    };
    let time_ready_before = now - lag;
    let ready = Ready {
        id: id_ready_before,
        time: time_ready_before,
    };
    // Look without the write lock first: an idle source costs one read, not a
    // write transaction beside the relay's writer.
    {
        let mut conn = store.pool().acquire().await?;
        if read(&mut conn, source, ready).await?.1.is_none() {
            return Ok((0, false));
        }
    }
    let mut tx = store.begin_write().await?;
    lock_feed(&mut tx).await?;
    let (events, cursor) = read(&mut tx, source, ready).await?;
    let Some((new_position, new_tiebreak)) = cursor else {
        return Ok((0, false));
    };
    let appended = append_in(&mut tx, &events).await?;
    sqlx::query(
        "INSERT INTO event_cursors (source, position, tiebreak) VALUES ($1, $2, $3)
         ON CONFLICT (source) DO UPDATE SET position = $2, tiebreak = $3",
    )
    .bind(source)
    .bind(new_position)
    .bind(new_tiebreak)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((appended, true))
}

/// Until when rows are ready: by id (`i64::MAX` on SQLite), by time.
#[derive(Debug, Clone, Copy)]
struct Ready {
    id: i64,
    time: i64,
}

/// Read one source from its stored cursor: the events and the new cursor.
async fn read(
    conn: &mut sqlx::AnyConnection,
    source: &str,
    ready: Ready,
) -> Result<Read, StoreError> {
    let (position, tiebreak): (i64, i64) =
        sqlx::query_as("SELECT position, tiebreak FROM event_cursors WHERE source = $1")
            .bind(source)
            .fetch_optional(&mut *conn)
            .await?
            .unwrap_or((0, 0));
    let id = ready.id;
    Ok(match source {
        "message_events" => receipts(conn, position, id).await?,
        "mo_messages" => mos(conn, position, id).await?,
        "push_runs" => runs(conn, position, tiebreak, ready.time).await?,
        "module_faults" => faults(conn, position, id).await?,
        "suspensions" => suspensions(conn, position, id).await?,
        "partner_notices" => notices(conn, position, id).await?,
        "agreement_terms" => agreement_terms(conn, position, id).await?,
        "operator_terms" => operator_terms(conn, position, id).await?,
        "statement_issues" => statements(conn, position, tiebreak, ready.time).await?,
        _ => (Vec::new(), None),
    })
}

type ReceiptRow = (
    i64,
    i64,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    String,
    String,
    Option<String>,
    i64,
);

/// MTs in a final state: `message.receipt`.
async fn receipts(
    conn: &mut sqlx::AnyConnection,
    position: i64,
    ready_before: i64,
) -> Result<Read, StoreError> {
    let rows: Vec<ReceiptRow> = sqlx::query_as(
        "SELECT e.id, e.at, e.status, m.id, m.partner_id, m.service_id, m.recipient, m.operator,
                m.failure_reason, m.segments
         FROM message_events e JOIN messages m ON m.id = e.message_id
         WHERE e.id > $1 ORDER BY e.id LIMIT $2",
    )
    .bind(position)
    .bind(BATCH)
    .fetch_all(&mut *conn)
    .await?;
    let mut events = Vec::new();
    let mut last = None;
    for (id, at, status, message_id, partner, service, recipient, operator, reason, segments) in
        rows
    {
        if at > ready_before {
            break;
        }
        last = Some((id, 0));
        let Some(partner_id) = partner else { continue };
        if !matches!(status.as_str(), "delivered" | "failed" | "expired") {
            continue;
        }
        events.push(NewEvent {
            partner_id: Some(partner_id),
            kind: "message.receipt",
            source_key: format!("me:{id}"),
            data: json!({
                "message_id": message_id, "service_id": service, "recipient": recipient,
                "operator": operator, "status": status,
                "failure_reason": if status == "delivered" { None } else { reason },
                "segments": segments, "at": crate::api::time::format(at),
            }),
            at,
        });
    }
    Ok((events, last))
}

type MoRow = (
    i64,
    i64,
    String,
    String,
    String,
    String,
    Option<i64>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<String>,
);

/// MOs routed to a partner's service: `mo.received`.
async fn mos(
    conn: &mut sqlx::AnyConnection,
    position: i64,
    ready_before: i64,
) -> Result<Read, StoreError> {
    let rows: Vec<MoRow> = sqlx::query_as(
        "SELECT mo.id, mo.received_at, mo.status, mo.source, mo.destination, mo.text, mo.service_id,
                mo.outcome, mo.routed_at, s.partner_id, s.code
         FROM mo_messages mo LEFT JOIN services s ON s.id = mo.service_id
         WHERE mo.id > $1 ORDER BY mo.id LIMIT $2",
    )
    .bind(position)
    .bind(BATCH)
    .fetch_all(&mut *conn)
    .await?;
    let mut events = Vec::new();
    let mut last = None;
    for (id, received_at, status, from, to, text, service, outcome, routed_at, partner, code) in
        rows
    {
        // An MO still waiting for the router holds the ones after it back.
        if received_at > ready_before || matches!(status.as_str(), "received" | "routing") {
            break;
        }
        last = Some((id, 0));
        let (Some(partner_id), "routed") = (partner, status.as_str()) else {
            continue;
        };
        events.push(NewEvent {
            partner_id: Some(partner_id),
            kind: "mo.received",
            source_key: format!("mo:{id}"),
            data: json!({
                "mo_id": id, "service_id": service, "service_code": code, "from": from,
                "to": to, "text": text, "outcome": outcome,
                "received_at": crate::api::time::format(received_at),
                "routed_at": routed_at.map(crate::api::time::format),
            }),
            at: routed_at.unwrap_or(received_at),
        });
    }
    Ok((events, last))
}

type RunRow = (
    i64,
    i64,
    i64,
    i64,
    String,
    i64,
    i64,
    i64,
    i64,
    i64,
    Option<String>,
);

/// Push runs that ended: `run.finished`.
async fn runs(
    conn: &mut sqlx::AnyConnection,
    position: i64,
    tiebreak: i64,
    ready_before: i64,
) -> Result<Read, StoreError> {
    let rows: Vec<RunRow> = sqlx::query_as(
        "SELECT id, finished_at, partner_id, service_id, status, subscribers, queued, blocked, held,
                skipped, reason
         FROM push_runs
         WHERE finished_at IS NOT NULL AND finished_at <= $3
           AND (finished_at > $1 OR (finished_at = $1 AND id > $2))
         ORDER BY finished_at, id LIMIT $4",
    )
    .bind(position)
    .bind(tiebreak)
    .bind(ready_before)
    .bind(BATCH)
    .fetch_all(&mut *conn)
    .await?;
    let mut events = Vec::new();
    let mut last = None;
    for (
        id,
        at,
        partner_id,
        service,
        status,
        subscribers,
        queued,
        blocked,
        held,
        skipped,
        reason,
    ) in rows
    {
        last = Some((at, id));
        events.push(NewEvent {
            partner_id: Some(partner_id),
            kind: "run.finished",
            source_key: format!("run:{id}"),
            data: json!({
                "run_id": id, "service_id": service, "status": status,
                "subscribers": subscribers, "queued": queued, "blocked": blocked,
                "held": held, "skipped": skipped, "reason": reason,
                "finished_at": crate::api::time::format(at),
            }),
            at,
        });
    }
    Ok((events, last))
}

type FaultRow = (i64, i64, i64, String, i64, String, String, String);
type SuspensionRow = (i64, i64, i64, Option<i64>, String, String, String);
type NoticeRow = (i64, i64, i64, String, String, String, Option<i64>);
/// Agreement terms and operator terms alike: id, created_at, partner, five values.
type TermsRow = (i64, i64, i64, String, String, i64, i64, String);

/// Module fault samples (the first few of each window): `module.fault`.
async fn faults(
    conn: &mut sqlx::AnyConnection,
    position: i64,
    ready_before: i64,
) -> Result<Read, StoreError> {
    let rows: Vec<FaultRow> = sqlx::query_as(
        "SELECT f.id, f.at, f.partner_id, m.name, f.version_id, f.export, f.kind, f.message
         FROM module_faults f JOIN modules m ON m.id = f.module_id
         WHERE f.id > $1 ORDER BY f.id LIMIT $2",
    )
    .bind(position)
    .bind(BATCH)
    .fetch_all(&mut *conn)
    .await?;
    let mut events = Vec::new();
    let mut last = None;
    for (id, at, partner_id, module, version_id, export, kind, message) in rows {
        if at > ready_before {
            break;
        }
        last = Some((id, 0));
        events.push(NewEvent {
            partner_id: Some(partner_id),
            kind: "module.fault",
            source_key: format!("fault:{id}"),
            data: json!({
                "module": module, "version_id": version_id, "export": export,
                "fault": kind, "message": message, "at": crate::api::time::format(at),
            }),
            at,
        });
    }
    Ok((events, last))
}

/// Suspensions and resumptions of the partner or a service: `suspension`.
async fn suspensions(
    conn: &mut sqlx::AnyConnection,
    position: i64,
    ready_before: i64,
) -> Result<Read, StoreError> {
    let rows: Vec<SuspensionRow> = sqlx::query_as(
        "SELECT id, at, partner_id, service_id, action, actor, reason FROM suspensions
         WHERE id > $1 ORDER BY id LIMIT $2",
    )
    .bind(position)
    .bind(BATCH)
    .fetch_all(&mut *conn)
    .await?;
    let mut events = Vec::new();
    let mut last = None;
    for (id, at, partner_id, service, action, actor, reason) in rows {
        if at > ready_before {
            break;
        }
        last = Some((id, 0));
        events.push(NewEvent {
            partner_id: Some(partner_id),
            kind: "suspension",
            source_key: format!("suspension:{id}"),
            data: json!({
                "service_id": service, "action": action, "actor": actor, "reason": reason,
                "at": crate::api::time::format(at),
            }),
            at,
        });
    }
    Ok((events, last))
}

/// The platform's notices to the partner: `notice`.
async fn notices(
    conn: &mut sqlx::AnyConnection,
    position: i64,
    ready_before: i64,
) -> Result<Read, StoreError> {
    let rows: Vec<NoticeRow> = sqlx::query_as(
        "SELECT id, at, partner_id, kind, subject, message, run_id FROM partner_notices
         WHERE id > $1 ORDER BY id LIMIT $2",
    )
    .bind(position)
    .bind(BATCH)
    .fetch_all(&mut *conn)
    .await?;
    let mut events = Vec::new();
    let mut last = None;
    for (id, at, partner_id, kind, subject, message, run_id) in rows {
        if at > ready_before {
            break;
        }
        last = Some((id, 0));
        events.push(NewEvent {
            partner_id: Some(partner_id),
            kind: "notice",
            source_key: format!("notice:{id}"),
            data: json!({
                "notice_id": id, "notice": kind, "subject": subject, "message": message,
                "run_id": run_id, "at": crate::api::time::format(at),
            }),
            at,
        });
    }
    Ok((events, last))
}

/// New money terms of the agreement: `terms.changed`.
async fn agreement_terms(
    conn: &mut sqlx::AnyConnection,
    position: i64,
    ready_before: i64,
) -> Result<Read, StoreError> {
    let rows: Vec<TermsRow> = sqlx::query_as(
        "SELECT id, created_at, partner_id, effective_from, tier_mode, tax_bp, payment_days,
                activation_rule
         FROM agreement_terms WHERE id > $1 ORDER BY id LIMIT $2",
    )
    .bind(position)
    .bind(BATCH)
    .fetch_all(&mut *conn)
    .await?;
    let mut events = Vec::new();
    let mut last = None;
    for (id, at, partner_id, effective_from, tier_mode, tax_bp, payment_days, activation) in rows {
        if at > ready_before {
            break;
        }
        last = Some((id, 0));
        events.push(NewEvent {
            partner_id: Some(partner_id),
            kind: "terms.changed",
            source_key: format!("agreement-terms:{id}"),
            data: json!({
                "terms": "agreement", "effective_from": effective_from, "tier_mode": tier_mode,
                "tax_bp": tax_bp, "payment_days": payment_days, "activation_rule": activation,
                "at": crate::api::time::format(at),
            }),
            at,
        });
    }
    Ok((events, last))
}

/// New terms of an operator for the partner (its fee policy, R-4.8): `terms.changed`.
async fn operator_terms(
    conn: &mut sqlx::AnyConnection,
    position: i64,
    ready_before: i64,
) -> Result<Read, StoreError> {
    let rows: Vec<TermsRow> = sqlx::query_as(
        "SELECT id, created_at, partner_id, operator, effective_from, collection_bp,
                imbalance_rate_fen, schedule
         FROM operator_terms WHERE id > $1 ORDER BY id LIMIT $2",
    )
    .bind(position)
    .bind(BATCH)
    .fetch_all(&mut *conn)
    .await?;
    let mut events = Vec::new();
    let mut last = None;
    for (id, at, partner_id, operator, effective_from, collection_bp, imbalance, schedule) in rows {
        if at > ready_before {
            break;
        }
        last = Some((id, 0));
        events.push(NewEvent {
            partner_id: Some(partner_id),
            kind: "terms.changed",
            source_key: format!("operator-terms:{id}"),
            data: json!({
                "terms": "operator", "operator": operator, "effective_from": effective_from,
                "collection_bp": collection_bp, "imbalance_rate_fen": imbalance,
                "schedule": schedule, "at": crate::api::time::format(at),
            }),
            at,
        });
    }
    Ok((events, last))
}

/// Issued statements: `statement.ready`. The tiebreak of the time cursor is the
/// partner id.
async fn statements(
    conn: &mut sqlx::AnyConnection,
    position: i64,
    tiebreak: i64,
    ready_before: i64,
) -> Result<Read, StoreError> {
    let rows: Vec<(i64, i64, String)> = sqlx::query_as(
        "SELECT issued_at, partner_id, month FROM statement_issues
         WHERE issued_at <= $3 AND (issued_at > $1 OR (issued_at = $1 AND partner_id > $2))
         ORDER BY issued_at, partner_id, month LIMIT $4",
    )
    .bind(position)
    .bind(tiebreak)
    .bind(ready_before)
    .bind(BATCH)
    .fetch_all(&mut *conn)
    .await?;
    let mut events = Vec::new();
    let mut last = None;
    for (at, partner_id, month) in rows {
        last = Some((at, partner_id));
        events.push(NewEvent {
            partner_id: Some(partner_id),
            kind: "statement.ready",
            source_key: format!("statement:{month}"),
            data: json!({
                "month": month, "issued_at": crate::api::time::format(at),
                "path": format!("/v1/statements/{month}"),
            }),
            at,
        });
    }
    Ok((events, last))
}
