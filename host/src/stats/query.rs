//! Reading the aggregates (`GET /v1/stats`): per hour, platform day or month, per
//! partner, service and operator, between two platform days.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::store::{Store, StoreError};

/// The length of one period of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    /// UTC hours, named by their start (`2026-11-30T03:00:00.000Z`).
    Hour,
    /// Platform days (`YYYY-MM-DD`, `[platform] time_zone`).
    Day,
    /// Platform months (`YYYY-MM`): the billing months of the statements.
    Month,
}

impl Granularity {
    /// `hour`, `day` or `month`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "hour" => Some(Self::Hour),
            "day" => Some(Self::Day),
            "month" => Some(Self::Month),
            _ => None,
        }
    }
}

/// Which aggregates to read.
#[derive(Debug, Clone)]
pub struct StatsFilter {
    /// One partner, or every partner (the admin).
    pub partner_id: Option<i64>,
    pub granularity: Granularity,
    /// First and last platform day, inclusive (`YYYY-MM-DD`).
    pub from_day: String,
    pub to_day: String,
    pub service_id: Option<i64>,
    pub operator: Option<String>,
}

/// One period of one partner, service and operator. Counts are of records; money
/// is integer fen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StatsRow {
    /// The hour (RFC 3339 UTC), day (`YYYY-MM-DD`) or month (`YYYY-MM`).
    pub period: String,
    pub partner: String,
    /// The service code; `null` for records of no service (host notices).
    pub service: Option<String>,
    /// The operator; `null` where none is known.
    pub operator: Option<String>,
    /// MTs admitted to the outbox.
    pub mt_queued: i64,
    /// Submits the SMSC accepted (a resend after an unknown outcome counts again).
    pub mt_sent: i64,
    /// MTs delivered (their receipts said so), in the period they were.
    pub mt_delivered: i64,
    /// MTs that ended without delivery: failed, expired or withdrawn.
    pub mt_failed: i64,
    /// `mt_failed` by reason code (`receipt-UNDELIV`, `ESME_RINVDSTADR`,
    /// `expired`, `withdrawn`, …).
    pub failed_by_reason: BTreeMap<String, i64>,
    /// MOs routed to the partner's services, in the period they were received.
    pub mo: i64,
    pub subscriptions_new: i64,
    pub subscriptions_cancelled: i64,
    /// Charge events accrued, in fen, and how many.
    pub revenue_fen: i64,
    pub charges: i64,
    pub complaints: i64,
}

type Raw = (
    i64,
    String,
    String,
    i64,
    Option<String>,
    String,
    String,
    String,
    i64,
    i64,
);

/// The aggregates matching `filter`, ordered by period, partner, service and
/// operator.
///
/// # Errors
/// A store failure, or a sum beyond `i64` (`StoreError::Corrupt`).
pub async fn read(store: &Store, filter: &StatsFilter) -> Result<Vec<StatsRow>, StoreError> {
    let mut sql = String::from(
        "SELECT h.hour_ms, h.day, p.name, h.service_id, s.code, h.operator, h.metric, h.reason, h.count, h.amount_fen
         FROM stats_hourly h JOIN partners p ON p.id = h.partner_id
         LEFT JOIN services s ON s.id = h.service_id
         WHERE h.day >= $1 AND h.day <= $2",
    );
    let mut n = 2;
    let mut next = || {
        n += 1;
        n
    };
    if filter.partner_id.is_some() {
        sql.push_str(&format!(" AND h.partner_id = ${}", next()));
    }
    if filter.service_id.is_some() {
        sql.push_str(&format!(" AND h.service_id = ${}", next()));
    }
    if filter.operator.is_some() {
        sql.push_str(&format!(" AND h.operator = ${}", next()));
    }
    let mut query = sqlx::query_as::<_, Raw>(&sql)
        .bind(&filter.from_day)
        .bind(&filter.to_day);
    if let Some(p) = filter.partner_id {
        query = query.bind(p);
    }
    if let Some(s) = filter.service_id {
        query = query.bind(s);
    }
    if let Some(o) = &filter.operator {
        query = query.bind(o);
    }
    let raw = query.fetch_all(store.pool()).await?;
    let mut rows: BTreeMap<(String, String, Option<String>, String), StatsRow> = BTreeMap::new();
    let overflow = || StoreError::Corrupt("a statistics sum overflows".into());
    for (hour_ms, day, partner, service_id, code, operator, metric, reason, count, amount) in raw {
        let period = match filter.granularity {
            Granularity::Hour => crate::api::time::format(hour_ms),
            Granularity::Day => day,
            Granularity::Month => day.get(..7).unwrap_or(&day).to_string(),
        };
        let service = if service_id == 0 { None } else { code };
        let key = (period, partner, service, operator);
        let row = rows.entry(key.clone()).or_insert_with(|| StatsRow {
            period: key.0.clone(),
            partner: key.1.clone(),
            service: key.2.clone(),
            operator: (!key.3.is_empty()).then(|| key.3.clone()),
            ..StatsRow::default()
        });
        let add = |field: &mut i64, v: i64| -> Result<(), StoreError> {
            *field = field.checked_add(v).ok_or_else(overflow)?;
            Ok(())
        };
        match metric.as_str() {
            "mt_queued" => add(&mut row.mt_queued, count)?,
            "mt_sent" => add(&mut row.mt_sent, count)?,
            "mt_delivered" => add(&mut row.mt_delivered, count)?,
            "mt_failed" => {
                add(&mut row.mt_failed, count)?;
                add(row.failed_by_reason.entry(reason).or_insert(0), count)?;
            }
            "mo" => add(&mut row.mo, count)?,
            "subscriptions_new" => add(&mut row.subscriptions_new, count)?,
            "subscriptions_cancelled" => add(&mut row.subscriptions_cancelled, count)?,
            "revenue" => {
                add(&mut row.revenue_fen, amount)?;
                add(&mut row.charges, count)?;
            }
            "complaints" => add(&mut row.complaints, count)?,
            _ => {}
        }
    }
    Ok(rows.into_values().collect())
}

/// The rows as CSV (RFC 4180): one line per row, `failed_by_reason` as
/// `code=n;code=n`.
pub fn csv(rows: &[StatsRow]) -> String {
    fn field(out: &mut String, s: &str) {
        if s.contains([',', '"', '\n', '\r']) {
            out.push('"');
            out.push_str(&s.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(s);
        }
    }
    let mut out = String::from(
        "period,partner,service,operator,mt_queued,mt_sent,mt_delivered,mt_failed,mo,subscriptions_new,subscriptions_cancelled,revenue_fen,charges,complaints,failed_by_reason\r\n",
    );
    for r in rows {
        for (i, s) in [
            r.period.as_str(),
            r.partner.as_str(),
            r.service.as_deref().unwrap_or(""),
            r.operator.as_deref().unwrap_or(""),
        ]
        .iter()
        .enumerate()
        {
            if i > 0 {
                out.push(',');
            }
            field(&mut out, s);
        }
        for n in [
            r.mt_queued,
            r.mt_sent,
            r.mt_delivered,
            r.mt_failed,
            r.mo,
            r.subscriptions_new,
            r.subscriptions_cancelled,
            r.revenue_fen,
            r.charges,
            r.complaints,
        ] {
            out.push(',');
            out.push_str(&n.to_string());
        }
        out.push(',');
        let reasons: Vec<String> = r
            .failed_by_reason
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        field(&mut out, &reasons.join(";"));
        out.push_str("\r\n");
    }
    out
}

/// The id of the service with `code` (of `partner_id`, when given).
///
/// # Errors
/// A store failure.
pub async fn service_id(
    store: &Store,
    partner_id: Option<i64>,
    code: &str,
) -> Result<Option<i64>, StoreError> {
    let row: Option<(i64, i64)> =
        sqlx::query_as("SELECT id, partner_id FROM services WHERE code = $1")
            .bind(code)
            .fetch_optional(store.pool())
            .await?;
    Ok(row
        .filter(|(_, owner)| partner_id.is_none_or(|p| p == *owner))
        .map(|(id, _)| id))
}
