//! 包月 billing records (包月扣费记录, issue 16 item 4, R-1.2): where an operator's
//! protocol has a submit the operator bills from but never delivers (CMPP 2.0
//! `Registered_Delivery` 2, "产生SMC话单"; SGIP 1.2 `ReportFlag` 3, "仅携带包月计费信息，
//! 不下发给用户"), every monthly charge event of a subscriber on that operator is
//! carried to it by one such record, so that what the operator bills equals what the
//! charge events say.
//!
//! The rule, once per charge event (so once per subscription and month):
//!
//! - a `monthly` charge event with an amount above 0 (a free first month bills
//!   nothing), of the current or the previous month, whose operator speaks such a
//!   protocol, gets one MT with basis [`Basis::FeeRecord`], charge plan `monthly`,
//!   `price_fen` = the event's amount, to the subscriber, through that operator;
//! - it goes through the gate like every MT ([`admit`]), which checks it against the
//!   charge event and writes it once (`messages.charge_event_id` is unique);
//! - it belongs to no partner and no service id (only the service's code, its
//!   `Service_Id`): it is in no partner's statistics, statement, caps or detectors,
//!   no suspension holds it and no unsubscription withdraws it (the month is charged);
//! - the connector sends it as `FeeType::MonthlyRecordOnly` with that amount; it is
//!   never charged itself (only `per-message` MTs are).
//!
//! CMPP 3.0 has no such submit (its `Registered_Delivery` is 0 or 1 only; §8.4.3.1):
//! there the ISMG bills 包月 from the subscription relation it keeps, and SMPP 3.4
//! has no fee fields at all, so neither gets records.

use super::{Basis, ChargePlan, Gate, NewMessage, OutboxError, admit};
use crate::store::Store;

/// Charge events looked at per batch.
const BATCH: i64 = 500;

/// A monthly charge event still without its record:
/// (id, subscription, service code, operator, month, amount in fen, the number).
type Pending = (i64, i64, String, String, String, i64, String);

/// The text of a record (never shown to the user; the gateway keeps it with the
/// bill).
fn record_text(service: &str, month: &str, amount_fen: i64) -> String {
    format!("包月扣费 {service} {month} {amount_fen}分")
}

/// Queue the billing record of every monthly charge event of `months` (`YYYY-MM`)
/// whose operator is one of `operators` (those whose protocol has records) and that
/// has none yet. Safe to run any number of times, on any number of replicas.
/// Returns how many were queued.
///
/// # Errors
/// A store failure (nothing of the failed batch is written; the next pass queues it).
pub async fn admit_fee_records(
    store: &Store,
    gate: Gate<'_>,
    operators: &[String],
    months: &[String],
) -> Result<u64, OutboxError> {
    if operators.is_empty() || months.is_empty() {
        return Ok(0);
    }
    let mut queued = 0u64;
    let mut after = 0i64;
    loop {
        let operator_list = placeholders(3, operators.len());
        let month_list = placeholders(3 + operators.len(), months.len());
        let sql = format!(
            "SELECT e.id, e.subscription_id, e.service, e.operator, e.month, e.amount_fen, s.msisdn
             FROM charge_events e JOIN subscriptions s ON s.id = e.subscription_id
             WHERE e.id > $1 AND e.kind = 'monthly' AND e.amount_fen > 0
               AND e.operator IN ({operator_list}) AND e.month IN ({month_list})
               AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.charge_event_id = e.id)
             ORDER BY e.id LIMIT $2"
        );
        let mut query = sqlx::query_as::<_, Pending>(&sql)
            .persistent(false)
            .bind(after)
            .bind(BATCH);
        for o in operators {
            query = query.bind(o);
        }
        for m in months {
            query = query.bind(m);
        }
        let rows = query.fetch_all(store.pool()).await?;
        let Some(last) = rows.last() else {
            break;
        };
        after = last.0;
        let full = i64::try_from(rows.len()).unwrap_or(0) == BATCH;
        let batch: Vec<NewMessage> = rows
            .into_iter()
            .map(
                |(charge_event_id, subscription_id, service, operator, month, amount, msisdn)| {
                    NewMessage {
                        partner_id: None,
                        text: record_text(&service, &month, amount),
                        service: Some(service),
                        service_id: None,
                        recipient: msisdn,
                        charge_plan: ChargePlan::Monthly,
                        price_fen: amount,
                        basis: Basis::FeeRecord {
                            charge_event_id,
                            subscription_id,
                        },
                        sender: None,
                        module_version_id: None,
                        input_sha256: None,
                        operator: Some(operator),
                    }
                },
            )
            .collect();
        for outcome in admit(store, gate, batch).await? {
            match outcome {
                Ok(_) => queued += 1,
                Err(e) => tracing::warn!(error = %e, "billing record not queued"),
            }
        }
        if !full {
            break;
        }
    }
    Ok(queued)
}

/// `$from, $from+1, …` (`n` of them).
fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_follow_the_fixed_parameters() {
        assert_eq!(placeholders(3, 2), "$3, $4");
        assert_eq!(placeholders(5, 1), "$5");
    }

    #[test]
    fn a_record_fits_one_segment() {
        let text = record_text("XZABCDEFGH", "2026-11", 999_999);
        assert_eq!(tongdao_smpp::encode::segment_count(&text), 1);
    }
}
