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
//! Each source is one row of `SOURCES` (its cursor, how it is read, the query,
//! and a function from a row to its event); one loop reads them all.
//!
//! Nothing here writes another part's tables; the hot paths write nothing more.

use serde_json::{Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{NewEvent, WebhooksConfig, append_in, lock_feed};
use crate::store::{Backend, Store, StoreError, now_ms};

/// Rows read per source per round.
const BATCH: i64 = 500;

/// How a source is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    /// By id: `$1` the last id read, `$2` the batch size; a row younger than the
    /// lag (PostgreSQL) holds back the ones after it.
    Id,
    /// By time: `$1` the last time read, `$2` its tiebreak, `$3` until when rows
    /// are ready, `$4` the batch size.
    Time,
}

/// What one row of a source gives: where the cursor moves to, when it happened,
/// whether it holds the rows after it back (an MO the router has not handled),
/// and the event, if it makes one.
struct Step {
    cursor: (i64, i64),
    at: i64,
    hold: bool,
    event: Option<NewEvent>,
}

/// One source of partner events: its cursor name (the table), how it is read,
/// the query, and what a row makes.
struct Source {
    name: &'static str,
    order: Order,
    sql: &'static str,
    step: fn(&AnyRow) -> Result<Step, sqlx::Error>,
}

/// Every source, in the order they are read.
const SOURCES: &[Source] = &[
    Source {
        name: "message_events",
        order: Order::Id,
        sql: "SELECT e.id, e.at, e.status, m.id, m.partner_id, m.service_id, m.recipient, m.operator,
                     m.failure_reason, m.segments
              FROM message_events e JOIN messages m ON m.id = e.message_id
              WHERE e.id > $1 ORDER BY e.id LIMIT $2",
        step: receipt,
    },
    Source {
        name: "mo_messages",
        order: Order::Id,
        sql: "SELECT mo.id, mo.received_at, mo.status, mo.source, mo.destination, mo.text, mo.service_id,
                     mo.outcome, mo.routed_at, s.partner_id, s.code
              FROM mo_messages mo LEFT JOIN services s ON s.id = mo.service_id
              WHERE mo.id > $1 ORDER BY mo.id LIMIT $2",
        step: mo,
    },
    Source {
        name: "push_runs",
        order: Order::Time,
        sql: "SELECT id, finished_at, partner_id, service_id, status, subscribers, queued, blocked, held,
                     skipped, reason
              FROM push_runs
              WHERE finished_at IS NOT NULL AND finished_at <= $3
                AND (finished_at > $1 OR (finished_at = $1 AND id > $2))
              ORDER BY finished_at, id LIMIT $4",
        step: run,
    },
    Source {
        name: "module_faults",
        order: Order::Id,
        sql: "SELECT f.id, f.at, f.partner_id, m.name, f.version_id, f.export, f.kind, f.message
              FROM module_faults f JOIN modules m ON m.id = f.module_id
              WHERE f.id > $1 ORDER BY f.id LIMIT $2",
        step: fault,
    },
    Source {
        name: "suspensions",
        order: Order::Id,
        sql: "SELECT id, at, partner_id, service_id, action, actor, reason FROM suspensions
              WHERE id > $1 ORDER BY id LIMIT $2",
        step: suspension,
    },
    Source {
        name: "partner_notices",
        order: Order::Id,
        sql: "SELECT id, at, partner_id, kind, subject, message, run_id FROM partner_notices
              WHERE id > $1 ORDER BY id LIMIT $2",
        step: notice,
    },
    Source {
        name: "agreement_terms",
        order: Order::Id,
        sql: "SELECT id, created_at, partner_id, effective_from, tier_mode, tax_bp, payment_days,
                     activation_rule
              FROM agreement_terms WHERE id > $1 ORDER BY id LIMIT $2",
        step: agreement_terms,
    },
    Source {
        name: "operator_terms",
        order: Order::Id,
        sql: "SELECT id, created_at, partner_id, operator, effective_from, collection_bp,
                     imbalance_rate_fen, schedule
              FROM operator_terms WHERE id > $1 ORDER BY id LIMIT $2",
        step: operator_terms,
    },
    // The tiebreak of this time cursor is the partner id.
    Source {
        name: "statement_issues",
        order: Order::Time,
        sql: "SELECT issued_at, partner_id, month FROM statement_issues
              WHERE issued_at <= $3 AND (issued_at > $1 OR (issued_at = $1 AND partner_id > $2))
              ORDER BY issued_at, partner_id, month LIMIT $4",
        step: statement,
    },
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
    source: &Source,
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
    .bind(source.name)
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
    source: &Source,
    ready: Ready,
) -> Result<Read, StoreError> {
    let (position, tiebreak): (i64, i64) =
        sqlx::query_as("SELECT position, tiebreak FROM event_cursors WHERE source = $1")
            .bind(source.name)
            .fetch_optional(&mut *conn)
            .await?
            .unwrap_or((0, 0));
    let query = sqlx::query(source.sql).bind(position);
    let (rows, ready_before) = match source.order {
        Order::Id => (query.bind(BATCH).fetch_all(&mut *conn).await?, ready.id),
        Order::Time => (
            query
                .bind(tiebreak)
                .bind(ready.time)
                .bind(BATCH)
                .fetch_all(&mut *conn)
                .await?,
            ready.time,
        ),
    };
    let mut events = Vec::new();
    let mut last = None;
    for row in &rows {
        let step = (source.step)(row)?;
        if step.at > ready_before || step.hold {
            break;
        }
        last = Some(step.cursor);
        events.extend(step.event);
    }
    Ok((events, last))
}

/// An event of `kind` for `partner_id` from the record `source_key`.
fn event(
    partner_id: i64,
    kind: &'static str,
    source_key: String,
    data: Value,
    at: i64,
) -> NewEvent {
    NewEvent {
        partner_id: Some(partner_id),
        kind,
        source_key,
        data,
        at,
    }
}

fn time(ms: i64) -> String {
    crate::api::time::format(ms)
}

/// MTs in a final state: `message.receipt`.
fn receipt(r: &AnyRow) -> Result<Step, sqlx::Error> {
    let (id, at, status): (i64, i64, String) = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
    let partner: Option<i64> = r.try_get(4)?;
    let event = partner
        .filter(|_| matches!(status.as_str(), "delivered" | "failed" | "expired"))
        .map(|partner_id| -> Result<NewEvent, sqlx::Error> {
            let reason: Option<String> = r.try_get(8)?;
            Ok(event(
                partner_id,
                "message.receipt",
                format!("me:{id}"),
                json!({
                    "message_id": r.try_get::<i64, _>(3)?,
                    "service_id": r.try_get::<Option<i64>, _>(5)?,
                    "recipient": r.try_get::<String, _>(6)?,
                    "operator": r.try_get::<String, _>(7)?, "status": status,
                    "failure_reason": if status == "delivered" { None } else { reason },
                    "segments": r.try_get::<i64, _>(9)?, "at": time(at),
                }),
                at,
            ))
        })
        .transpose()?;
    Ok(Step {
        cursor: (id, 0),
        at,
        hold: false,
        event,
    })
}

/// MOs routed to a partner's service: `mo.received`. An MO still waiting for the
/// router holds the ones after it back.
fn mo(r: &AnyRow) -> Result<Step, sqlx::Error> {
    let (id, received_at, status): (i64, i64, String) =
        (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
    let partner: Option<i64> = r.try_get(9)?;
    let routed_at: Option<i64> = r.try_get(8)?;
    let event = partner
        .filter(|_| status == "routed")
        .map(|partner_id| -> Result<NewEvent, sqlx::Error> {
            Ok(event(
                partner_id,
                "mo.received",
                format!("mo:{id}"),
                json!({
                    "mo_id": id, "service_id": r.try_get::<Option<i64>, _>(6)?,
                    "service_code": r.try_get::<Option<String>, _>(10)?,
                    "from": r.try_get::<String, _>(3)?, "to": r.try_get::<String, _>(4)?,
                    "text": r.try_get::<String, _>(5)?,
                    "outcome": r.try_get::<Option<String>, _>(7)?,
                    "received_at": time(received_at), "routed_at": routed_at.map(time),
                }),
                routed_at.unwrap_or(received_at),
            ))
        })
        .transpose()?;
    Ok(Step {
        cursor: (id, 0),
        at: received_at,
        hold: matches!(status.as_str(), "received" | "routing"),
        event,
    })
}

/// Push runs that ended: `run.finished`.
fn run(r: &AnyRow) -> Result<Step, sqlx::Error> {
    let (id, at): (i64, i64) = (r.try_get(0)?, r.try_get(1)?);
    let data = json!({
        "run_id": id, "service_id": r.try_get::<i64, _>(3)?, "status": r.try_get::<String, _>(4)?,
        "subscribers": r.try_get::<i64, _>(5)?, "queued": r.try_get::<i64, _>(6)?,
        "blocked": r.try_get::<i64, _>(7)?, "held": r.try_get::<i64, _>(8)?,
        "skipped": r.try_get::<i64, _>(9)?, "reason": r.try_get::<Option<String>, _>(10)?,
        "finished_at": time(at),
    });
    Ok(Step {
        cursor: (at, id),
        at,
        hold: false,
        event: Some(event(
            r.try_get(2)?,
            "run.finished",
            format!("run:{id}"),
            data,
            at,
        )),
    })
}

/// Module fault samples (the first few of each window): `module.fault`.
fn fault(r: &AnyRow) -> Result<Step, sqlx::Error> {
    let (id, at): (i64, i64) = (r.try_get(0)?, r.try_get(1)?);
    let data = json!({
        "module": r.try_get::<String, _>(3)?, "version_id": r.try_get::<i64, _>(4)?,
        "export": r.try_get::<String, _>(5)?, "fault": r.try_get::<String, _>(6)?,
        "message": r.try_get::<String, _>(7)?, "at": time(at),
    });
    Ok(Step {
        cursor: (id, 0),
        at,
        hold: false,
        event: Some(event(
            r.try_get(2)?,
            "module.fault",
            format!("fault:{id}"),
            data,
            at,
        )),
    })
}

/// Suspensions and resumptions of the partner or a service: `suspension`.
fn suspension(r: &AnyRow) -> Result<Step, sqlx::Error> {
    let (id, at): (i64, i64) = (r.try_get(0)?, r.try_get(1)?);
    let data = json!({
        "service_id": r.try_get::<Option<i64>, _>(3)?, "action": r.try_get::<String, _>(4)?,
        "actor": r.try_get::<String, _>(5)?, "reason": r.try_get::<String, _>(6)?,
        "at": time(at),
    });
    Ok(Step {
        cursor: (id, 0),
        at,
        hold: false,
        event: Some(event(
            r.try_get(2)?,
            "suspension",
            format!("suspension:{id}"),
            data,
            at,
        )),
    })
}

/// The platform's notices to the partner: `notice`.
fn notice(r: &AnyRow) -> Result<Step, sqlx::Error> {
    let (id, at): (i64, i64) = (r.try_get(0)?, r.try_get(1)?);
    let data = json!({
        "notice_id": id, "notice": r.try_get::<String, _>(3)?,
        "subject": r.try_get::<String, _>(4)?, "message": r.try_get::<String, _>(5)?,
        "run_id": r.try_get::<Option<i64>, _>(6)?, "at": time(at),
    });
    Ok(Step {
        cursor: (id, 0),
        at,
        hold: false,
        event: Some(event(
            r.try_get(2)?,
            "notice",
            format!("notice:{id}"),
            data,
            at,
        )),
    })
}

/// New money terms of the agreement: `terms.changed`.
fn agreement_terms(r: &AnyRow) -> Result<Step, sqlx::Error> {
    let (id, at): (i64, i64) = (r.try_get(0)?, r.try_get(1)?);
    let data = json!({
        "terms": "agreement", "effective_from": r.try_get::<String, _>(3)?,
        "tier_mode": r.try_get::<String, _>(4)?, "tax_bp": r.try_get::<i64, _>(5)?,
        "payment_days": r.try_get::<i64, _>(6)?,
        "activation_rule": r.try_get::<String, _>(7)?, "at": time(at),
    });
    Ok(Step {
        cursor: (id, 0),
        at,
        hold: false,
        event: Some(event(
            r.try_get(2)?,
            "terms.changed",
            format!("agreement-terms:{id}"),
            data,
            at,
        )),
    })
}

/// New terms of an operator for the partner (its fee policy, R-4.8): `terms.changed`.
fn operator_terms(r: &AnyRow) -> Result<Step, sqlx::Error> {
    let (id, at): (i64, i64) = (r.try_get(0)?, r.try_get(1)?);
    let data = json!({
        "terms": "operator", "operator": r.try_get::<String, _>(3)?,
        "effective_from": r.try_get::<String, _>(4)?,
        "collection_bp": r.try_get::<i64, _>(5)?,
        "imbalance_rate_fen": r.try_get::<i64, _>(6)?,
        "schedule": r.try_get::<String, _>(7)?, "at": time(at),
    });
    Ok(Step {
        cursor: (id, 0),
        at,
        hold: false,
        event: Some(event(
            r.try_get(2)?,
            "terms.changed",
            format!("operator-terms:{id}"),
            data,
            at,
        )),
    })
}

/// Issued statements: `statement.ready`.
fn statement(r: &AnyRow) -> Result<Step, sqlx::Error> {
    let (at, partner_id, month): (i64, i64, String) = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
    let data = json!({
        "month": month, "issued_at": time(at), "path": format!("/v1/statements/{month}"),
    });
    Ok(Step {
        cursor: (at, partner_id),
        at,
        hold: false,
        event: Some(event(
            partner_id,
            "statement.ready",
            format!("statement:{month}"),
            data,
            at,
        )),
    })
}
