//! The roll-up: each source read by its durable cursor, added to `stats_hourly` in
//! the transaction that moves the cursor (see the module documentation of
//! [`crate::stats`] for why this is exact). Only this file writes `stats_hourly`
//! and `stats_cursors`.

use std::collections::HashMap;

use crate::relay::Routes;
use crate::store::{Backend, Store, StoreError, now_ms};

/// Rows read per source and transaction.
const BATCH: i64 = 5000;
/// Aggregate rows per multi-row upsert (9 parameters each).
const ROWS_PER_STATEMENT: usize = 100;
const HOUR_MS: i64 = 3_600_000;

/// What one [`roll_up`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RollupReport {
    /// Source rows read (counted or skipped) across every source.
    pub rows: u64,
    /// Transactions committed.
    pub batches: u64,
}

/// One aggregate row's key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    partner_id: i64,
    hour_ms: i64,
    day: String,
    service_id: i64,
    operator: String,
    metric: &'static str,
    reason: String,
}

/// Count and money added to one key.
#[derive(Debug, Clone, Copy, Default)]
struct Add {
    count: i64,
    amount_fen: i64,
}

#[derive(Default)]
struct Batch {
    adds: HashMap<Key, Add>,
    /// The cursor after this batch.
    last_id: i64,
    /// Rows read.
    read: u64,
}

impl Batch {
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        partner_id: i64,
        at: i64,
        service_id: Option<i64>,
        operator: &str,
        metric: &'static str,
        reason: String,
        amount_fen: i64,
    ) -> Result<(), StoreError> {
        let key = Key {
            partner_id,
            hour_ms: at - at.rem_euclid(HOUR_MS),
            day: crate::clock::day_key(at),
            service_id: service_id.unwrap_or(0),
            operator: operator.to_string(),
            metric,
            reason,
        };
        let entry = self.adds.entry(key).or_default();
        entry.count = entry
            .count
            .checked_add(1)
            .ok_or_else(|| StoreError::Corrupt("statistics count overflows".into()))?;
        entry.amount_fen = entry
            .amount_fen
            .checked_add(amount_fen)
            .ok_or_else(|| StoreError::Corrupt("statistics revenue overflows".into()))?;
        Ok(())
    }
}

/// The sources, in the order a pass reads them.
const SOURCES: [&str; 5] = [
    "message_events",
    "mo_messages",
    "charge_events",
    "complaints",
    "subscription_changes",
];

/// Read every source to its end (in batches of 5,000 rows, one transaction each)
/// and add what was read to the hourly aggregates.
///
/// # Errors
/// A store failure; what was committed before it stays counted, the rest is read
/// again by the next pass.
pub async fn roll_up(store: &Store, routes: &Routes) -> Result<RollupReport, StoreError> {
    let mut report = RollupReport::default();
    for source in SOURCES {
        loop {
            let read = pass(store, routes, source).await?;
            if read > 0 {
                report.batches += 1;
                report.rows += read;
            }
            if read < BATCH as u64 {
                break;
            }
        }
    }
    Ok(report)
}

/// The highest id of `table` below which every id is committed or never will be.
/// PostgreSQL hands out ids when rows are inserted, not when they commit: a row with
/// a lower id can become visible after one with a higher id was counted. A `SHARE`
/// lock waits for every transaction that is writing the table (an INSERT takes its
/// `ROW EXCLUSIVE` lock before it draws an id), so the largest id visible once it is
/// granted can no longer be undercut. The lock is released at once. On SQLite the
/// single writer commits ids in order: no watermark is needed.
async fn watermark(store: &Store, table: &str) -> Result<i64, StoreError> {
    if store.backend() == Backend::Sqlite {
        return Ok(i64::MAX);
    }
    let mut tx = store.pool().begin().await?;
    sqlx::query("SET LOCAL lock_timeout = '5s'")
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!("LOCK TABLE {table} IN SHARE MODE"))
        .execute(&mut *tx)
        .await?;
    let (max,): (i64,) = sqlx::query_as(&format!("SELECT COALESCE(MAX(id), 0) FROM {table}"))
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(max)
}

/// One batch of one source in one transaction; returns the rows read.
async fn pass(store: &Store, routes: &Routes, source: &'static str) -> Result<u64, StoreError> {
    let upto = watermark(store, source).await?;
    let mut tx = store.begin_write().await?;
    let lock = match store.backend() {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    };
    let (after,): (i64,) = sqlx::query_as(&format!(
        "SELECT last_id FROM stats_cursors WHERE source = $1{lock}"
    ))
    .bind(source)
    .fetch_one(&mut *tx)
    .await?;
    if after >= upto {
        return Ok(0);
    }
    let batch = match source {
        "message_events" => message_events(&mut tx, after, upto).await?,
        "mo_messages" => mo_messages(&mut tx, after, upto).await?,
        "charge_events" => charge_events(&mut tx, after, upto).await?,
        "complaints" => complaints(&mut tx, routes, after, upto).await?,
        _ => subscription_changes(&mut tx, routes, after, upto).await?,
    };
    if batch.last_id <= after {
        return Ok(0);
    }
    let adds: Vec<(Key, Add)> = batch.adds.into_iter().collect();
    for chunk in adds.chunks(ROWS_PER_STATEMENT) {
        let mut sql = String::from(
            "INSERT INTO stats_hourly (partner_id, hour_ms, day, service_id, operator, metric, reason, count, amount_fen) VALUES ",
        );
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push(',');
            }
            let b = i * 9;
            sql.push_str(&format!(
                "(${},${},${},${},${},${},${},${},${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5,
                b + 6,
                b + 7,
                b + 8,
                b + 9
            ));
        }
        sql.push_str(
            " ON CONFLICT (partner_id, hour_ms, day, service_id, operator, metric, reason)
              DO UPDATE SET count = stats_hourly.count + excluded.count,
                            amount_fen = stats_hourly.amount_fen + excluded.amount_fen",
        );
        let mut query = sqlx::query(&sql).persistent(false);
        for (key, add) in chunk {
            query = query
                .bind(key.partner_id)
                .bind(key.hour_ms)
                .bind(key.day.clone())
                .bind(key.service_id)
                .bind(key.operator.clone())
                .bind(key.metric)
                .bind(key.reason.clone())
                .bind(add.count)
                .bind(add.amount_fen);
        }
        query.execute(&mut *tx).await?;
    }
    sqlx::query("UPDATE stats_cursors SET last_id = $1, updated_at = $2 WHERE source = $3")
        .bind(batch.last_id)
        .bind(now_ms())
        .bind(source)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    // Counted once, after the commit: the metrics match the records.
    count_metrics(store, &adds).await;
    Ok(batch.read)
}

/// Names of partners and services for metric labels, loaded when an id is new.
static NAMES: std::sync::Mutex<Option<Names>> = std::sync::Mutex::new(None);

#[derive(Default, Clone)]
struct Names {
    partners: HashMap<i64, String>,
    services: HashMap<i64, String>,
}

async fn names_for(store: &Store, adds: &[(Key, Add)]) -> Names {
    let cached = NAMES.lock().ok().and_then(|n| n.clone());
    if let Some(names) = cached
        && adds.iter().all(|(k, _)| {
            names.partners.contains_key(&k.partner_id)
                && (k.service_id == 0 || names.services.contains_key(&k.service_id))
        })
    {
        return names;
    }
    let partners: Vec<(i64, String)> = sqlx::query_as("SELECT id, name FROM partners")
        .fetch_all(store.pool())
        .await
        .unwrap_or_default();
    let services: Vec<(i64, String)> = sqlx::query_as("SELECT id, code FROM services")
        .fetch_all(store.pool())
        .await
        .unwrap_or_default();
    let names = Names {
        partners: partners.into_iter().collect(),
        services: services.into_iter().collect(),
    };
    if let Ok(mut cache) = NAMES.lock() {
        *cache = Some(names.clone());
    }
    names
}

/// The Prometheus counters of what a committed batch added (see
/// [`crate::telemetry`]): MTs queued, sent, delivered and failed (by reason), MOs,
/// revenue, subscriptions and complaints, by partner, service and operator.
async fn count_metrics(store: &Store, adds: &[(Key, Add)]) {
    if adds.is_empty() {
        return;
    }
    let names = names_for(store, adds).await;
    for (key, add) in adds {
        let partner = names
            .partners
            .get(&key.partner_id)
            .cloned()
            .unwrap_or_else(|| key.partner_id.to_string());
        let service = names
            .services
            .get(&key.service_id)
            .cloned()
            .unwrap_or_default();
        let labels = vec![
            ("partner", partner),
            ("service", service),
            ("operator", key.operator.clone()),
        ];
        let count = u64::try_from(add.count).unwrap_or(0);
        match key.metric {
            "mt_queued" => metrics::counter!("tongdao_mt_queued_total", &labels).increment(count),
            "mt_sent" => metrics::counter!("tongdao_mt_sent_total", &labels).increment(count),
            "mt_delivered" => {
                metrics::counter!("tongdao_mt_delivered_total", &labels).increment(count);
            }
            "mt_failed" => {
                let mut labels = labels;
                labels.push(("reason", key.reason.clone()));
                metrics::counter!("tongdao_mt_failed_total", &labels).increment(count);
            }
            "mo" => metrics::counter!("tongdao_mo_total", &labels).increment(count),
            "revenue" => metrics::counter!("tongdao_revenue_fen_total", &labels)
                .increment(u64::try_from(add.amount_fen).unwrap_or(0)),
            "complaints" => metrics::counter!("tongdao_complaints_total", &labels).increment(count),
            "subscriptions_new" | "subscriptions_cancelled" => {
                let mut labels = labels;
                labels.push((
                    "change",
                    if key.metric == "subscriptions_new" {
                        "new"
                    } else {
                        "cancelled"
                    }
                    .to_string(),
                ));
                metrics::counter!("tongdao_subscriptions_total", &labels).increment(count);
            }
            _ => {}
        }
    }
}

type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// MT history: `queued` → mt_queued; `submitted` → mt_sent; `delivered` → mt_delivered; `failed`,
/// `expired` and `cancelled` (withdrawn) → mt_failed with a reason code. Test sends
/// and MTs of no partner are not a partner's statistics.
async fn message_events(tx: &mut Tx, after: i64, upto: i64) -> Result<Batch, StoreError> {
    type Row = (
        i64,
        String,
        Option<String>,
        i64,
        Option<i64>,
        Option<i64>,
        String,
        i64,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT e.id, e.status, e.detail, e.at, m.partner_id, m.service_id, m.operator, m.is_test
         FROM message_events e JOIN messages m ON m.id = e.message_id
         WHERE e.id > $1 AND e.id <= $2 ORDER BY e.id LIMIT $3",
    )
    .bind(after)
    .bind(upto)
    .bind(BATCH)
    .fetch_all(&mut **tx)
    .await?;
    let mut batch = Batch::default();
    for (id, status, detail, at, partner, service, operator, is_test) in rows {
        batch.last_id = id;
        batch.read += 1;
        let Some(partner) = partner.filter(|_| is_test == 0) else {
            continue;
        };
        let (metric, reason) = match status.as_str() {
            "queued" => ("mt_queued", String::new()),
            "submitted" => ("mt_sent", String::new()),
            "delivered" => ("mt_delivered", String::new()),
            "failed" | "expired" | "cancelled" => {
                ("mt_failed", reason_code(&status, detail.as_deref()))
            }
            _ => continue,
        };
        batch.add(partner, at, service, &operator, metric, reason, 0)?;
    }
    Ok(batch)
}

/// A bounded code for why an MT failed (the free text stays on the message):
/// `expired`, `withdrawn` (the user unsubscribed), `receipt-<STATE>` (the
/// operator's delivery report, e.g. `receipt-UNDELIV`), `ESME_R…` (the SMSC refused
/// the submit), `agreement-ended`, or `other`.
pub fn reason_code(status: &str, detail: Option<&str>) -> String {
    fn token(s: &str, max: usize) -> Option<String> {
        let t: String = s
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .take(max)
            .collect();
        (!t.is_empty()).then_some(t)
    }
    match status {
        "expired" => return "expired".into(),
        "cancelled" => return "withdrawn".into(),
        _ => {}
    }
    let detail = detail.unwrap_or("");
    if let Some(rest) = detail.strip_prefix("the operator reported ") {
        return token(rest, 16).map_or_else(|| "receipt".into(), |t| format!("receipt-{t}"));
    }
    if let Some(at) = detail.find("ESME_R")
        && let Some(t) = token(&detail[at..], 24)
    {
        return t;
    }
    if detail.contains("agreement") {
        return "agreement-ended".into();
    }
    "other".into()
}

/// MOs routed to a partner's service, in the hour they were received (as the
/// statement counts them). The cursor stops at the first MO the router has not
/// finished: its service is not known yet.
async fn mo_messages(tx: &mut Tx, after: i64, upto: i64) -> Result<Batch, StoreError> {
    type Row = (i64, String, i64, String, Option<i64>, Option<i64>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT mo.id, mo.status, mo.received_at, mo.operator, mo.service_id, s.partner_id
         FROM mo_messages mo LEFT JOIN services s ON s.id = mo.service_id
         WHERE mo.id > $1 AND mo.id <= $2 ORDER BY mo.id LIMIT $3",
    )
    .bind(after)
    .bind(upto)
    .bind(BATCH)
    .fetch_all(&mut **tx)
    .await?;
    let mut batch = Batch::default();
    for (id, status, received_at, operator, service, partner) in rows {
        if status == "received" || status == "routing" {
            break;
        }
        batch.last_id = id;
        batch.read += 1;
        if let Some(partner) = partner {
            batch.add(
                partner,
                received_at,
                service,
                &operator,
                "mo",
                String::new(),
                0,
            )?;
        }
    }
    Ok(batch)
}

/// Revenue accrued: each charge event's amount in the hour it occurred.
async fn charge_events(tx: &mut Tx, after: i64, upto: i64) -> Result<Batch, StoreError> {
    let rows: Vec<(i64, i64, Option<i64>, String, i64, i64)> = sqlx::query_as(
        "SELECT id, partner_id, service_id, operator, amount_fen, occurred_at FROM charge_events
         WHERE id > $1 AND id <= $2 ORDER BY id LIMIT $3",
    )
    .bind(after)
    .bind(upto)
    .bind(BATCH)
    .fetch_all(&mut **tx)
    .await?;
    let mut batch = Batch::default();
    for (id, partner, service, operator, amount, at) in rows {
        batch.last_id = id;
        batch.read += 1;
        batch.add(
            partner,
            at,
            service,
            &operator,
            "revenue",
            String::new(),
            amount,
        )?;
    }
    Ok(batch)
}

/// The operator that serves a number, or none.
fn operator_of(routes: &Routes, msisdn: Option<&str>) -> String {
    msisdn
        .and_then(|n| routes.route(n).ok())
        .map(|(_, op)| op)
        .unwrap_or_default()
}

/// Complaints, on the operator that serves the complaining number.
async fn complaints(
    tx: &mut Tx,
    routes: &Routes,
    after: i64,
    upto: i64,
) -> Result<Batch, StoreError> {
    type Row = (i64, i64, Option<i64>, Option<String>, i64);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, partner_id, service_id, msisdn, at FROM complaints
         WHERE id > $1 AND id <= $2 ORDER BY id LIMIT $3",
    )
    .bind(after)
    .bind(upto)
    .bind(BATCH)
    .fetch_all(&mut **tx)
    .await?;
    let mut batch = Batch::default();
    for (id, partner, service, msisdn, at) in rows {
        batch.last_id = id;
        batch.read += 1;
        let operator = operator_of(routes, msisdn.as_deref());
        batch.add(
            partner,
            at,
            service,
            &operator,
            "complaints",
            String::new(),
            0,
        )?;
    }
    Ok(batch)
}

/// New (activated) and cancelled subscriptions.
async fn subscription_changes(
    tx: &mut Tx,
    routes: &Routes,
    after: i64,
    upto: i64,
) -> Result<Batch, StoreError> {
    let rows: Vec<(i64, i64, i64, String, String, i64)> = sqlx::query_as(
        "SELECT id, partner_id, service_id, msisdn, kind, at FROM subscription_changes
         WHERE id > $1 AND id <= $2 ORDER BY id LIMIT $3",
    )
    .bind(after)
    .bind(upto)
    .bind(BATCH)
    .fetch_all(&mut **tx)
    .await?;
    let mut batch = Batch::default();
    for (id, partner, service, msisdn, kind, at) in rows {
        batch.last_id = id;
        batch.read += 1;
        let metric = match kind.as_str() {
            "activated" => "subscriptions_new",
            "cancelled" => "subscriptions_cancelled",
            _ => continue,
        };
        let operator = operator_of(routes, Some(&msisdn));
        batch.add(
            partner,
            at,
            Some(service),
            &operator,
            metric,
            String::new(),
            0,
        )?;
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::reason_code;

    #[test]
    fn failure_reasons_have_bounded_codes() {
        assert_eq!(
            reason_code("failed", Some("the operator reported UNDELIV err:013")),
            "receipt-UNDELIV"
        );
        assert_eq!(
            reason_code("failed", Some("submit refused: ESME_RINVDSTADR (0x0b)")),
            "ESME_RINVDSTADR"
        );
        assert_eq!(reason_code("expired", None), "expired");
        assert_eq!(
            reason_code("cancelled", Some("the user unsubscribed")),
            "withdrawn"
        );
        assert_eq!(reason_code("failed", Some("who knows")), "other");
    }
}
