//! The operator fee fields of an MT (issue 16 item 4, R-1.2): what CMPP and SGIP
//! gateways bill the user on the platform's behalf (代计费), filled from the service
//! and the MT's charge plan so that what the operator bills equals what the charge
//! events say (`billing::charges`: one event per delivered per-message MT at its
//! price, one per monthly subscription and month).
//!
//! | charge plan | `FeeType` | fee (fen) | segments |
//! |---|---|---|---|
//! | `per-message` | per message (CMPP 02, SGIP 2) | the MT's `price_fen` | first segment only; the others go free, so a long MT is billed once, as it is charged once |
//! | `monthly` | monthly (CMPP 03, SGIP 3) | the subscription's monthly price | every segment (informative: billed per month, not per MT) |
//! | `free`, `test` | free (CMPP 01, SGIP 1) | 0 | every segment |
//! | `monthly`, basis `fee-record` | 包月扣费记录 (CMPP 2.0 03 + `Registered_Delivery` 2, SGIP 3 + `ReportFlag` 3) | the monthly charge event's amount | its one segment (`relay::outbox::records`) |
//!
//! The billed number is the recipient (`Fee_UserType` 0, `Fee_terminal_Id` /
//! `ChargeNumber` = the recipient). `Service_Id` is the service's code, or the
//! operator's default for MTs without a service (notices, tests). An MT answering an
//! MO (a reply, or a notice about it) carries the MO's `LinkID` where the operator
//! sent one (CMPP 3.0) and is flagged as MO-related (SGIP `MorelatetoMTFlag` 0).
//! SMPP operators get no fee fields at all (SMPP 3.4 has none).

use std::collections::HashMap;

use tongdao_link::{Fee, FeeType, FeeUserType};

use super::outbox::{Basis, ChargePlan, Claimed};
use crate::store::{Store, StoreError};

/// What the fee of one MT is made from, beyond its row: looked up once per claim
/// for operators whose protocol carries fees.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeeContext {
    /// The `LinkID` of the MO the MT answers (`mo_messages.link_id`).
    pub link_id: Option<String>,
    /// The monthly price of the subscription a monthly MT was pushed under, in fen.
    pub monthly_price_fen: Option<i64>,
}

/// The [`FeeContext`] of each claimed MT that needs one (a reply's MO `LinkID`, a
/// monthly MT's subscription price), by message id; two reads per claim at most.
///
/// # Errors
/// A store failure (the caller sends nothing without its fee fields).
pub async fn contexts(
    store: &Store,
    claimed: &[Claimed],
) -> Result<HashMap<i64, FeeContext>, StoreError> {
    let mut out: HashMap<i64, FeeContext> = HashMap::new();
    let mo_ids: Vec<i64> = claimed.iter().filter_map(|m| m.mo_id).collect();
    if !mo_ids.is_empty() {
        let links: HashMap<i64, Option<String>> =
            select_by_ids(store, "SELECT id, link_id FROM mo_messages", &mo_ids)
                .await?
                .into_iter()
                .collect();
        for m in claimed {
            if let Some(Some(link)) = m.mo_id.and_then(|id| links.get(&id)) {
                out.entry(m.id).or_default().link_id = Some(link.clone());
            }
        }
    }
    let monthly = ChargePlan::Monthly.as_str();
    let subscription_ids: Vec<i64> = claimed
        .iter()
        .filter(|m| m.charge_plan == monthly)
        .filter_map(|m| m.subscription_id)
        .collect();
    if !subscription_ids.is_empty() {
        let prices: HashMap<i64, i64> = select_by_ids(
            store,
            "SELECT id, price_fen FROM subscriptions",
            &subscription_ids,
        )
        .await?
        .into_iter()
        .collect();
        for m in claimed {
            if let Some(price) = m.subscription_id.and_then(|id| prices.get(&id)) {
                out.entry(m.id).or_default().monthly_price_fen = Some(*price);
            }
        }
    }
    Ok(out)
}

/// `select` (two columns, the first `id`) for the rows whose id is in `ids`.
async fn select_by_ids<T>(
    store: &Store,
    select: &str,
    ids: &[i64],
) -> Result<Vec<(i64, T)>, StoreError>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any> + Send + Unpin,
{
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let placeholders: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
    let sql = format!("{select} WHERE id IN ({})", placeholders.join(", "));
    let mut query = sqlx::query_as::<_, (i64, T)>(&sql);
    for id in &ids {
        query = query.bind(*id);
    }
    Ok(query.persistent(false).fetch_all(store.pool()).await?)
}

/// `messages.basis` of a 包月 billing record ([`Basis::FeeRecord`]).
const FEE_RECORD: &str = Basis::FeeRecord {
    charge_event_id: 0,
    subscription_id: 0,
}
.as_str();

/// Whether `message` is a 包月 billing record ([`Basis::FeeRecord`]).
pub fn is_fee_record(message: &Claimed) -> bool {
    message.basis == FEE_RECORD
}

/// Why an MT's fee fields cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeeError {
    /// The amount does not fit the protocol's field (negative, or above `u32`).
    #[error("fee of {0} fen cannot be sent to the operator")]
    Amount(i64),
    /// A charge plan this module does not know (a newer row than this binary).
    #[error("unknown charge plan `{0}`")]
    Plan(String),
}

/// The fee fields of segment `seq` (1-based) of `message`.
///
/// # Errors
/// [`FeeError`] when the row's amount or charge plan cannot be put on the wire; the
/// relay fails such an MT permanently rather than send a wrong bill.
pub fn fee_for(
    message: &Claimed,
    context: &FeeContext,
    default_service_id: &str,
    seq: i64,
) -> Result<Fee, FeeError> {
    let fen = |amount: i64| u32::try_from(amount).map_err(|_| FeeError::Amount(amount));
    let record = message.basis == FEE_RECORD;
    let (fee_type, fee_code_fen) = match message.charge_plan.as_str() {
        p if record && p == ChargePlan::Monthly.as_str() => {
            (FeeType::MonthlyRecordOnly, fen(message.price_fen)?)
        }
        p if p == ChargePlan::PerMessage.as_str() && seq == 1 => {
            (FeeType::PerMessage, fen(message.price_fen)?)
        }
        p if p == ChargePlan::PerMessage.as_str() => (FeeType::Free, 0),
        p if p == ChargePlan::Monthly.as_str() => (
            FeeType::Monthly,
            fen(context.monthly_price_fen.unwrap_or(0))?,
        ),
        p if p == ChargePlan::Free.as_str() || p == ChargePlan::Test.as_str() => (FeeType::Free, 0),
        other => return Err(FeeError::Plan(other.to_string())),
    };
    let answers_mo = message.mo_id.is_some()
        && (message.basis == Basis::Reply(0).as_str()
            || message.basis
                == Basis::Notice {
                    mo_id: None,
                    subscription_id: None,
                }
                .as_str());
    Ok(Fee {
        fee_type,
        fee_code_fen,
        fee_user_type: FeeUserType::Destination,
        charge_number: message.recipient.clone(),
        service_id: message
            .service
            .clone()
            .unwrap_or_else(|| default_service_id.to_string()),
        link_id: if answers_mo {
            context.link_id.clone()
        } else {
            None
        },
        in_reply_to_mo: answers_mo,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mt(plan: ChargePlan, price_fen: i64, basis: &str, mo_id: Option<i64>) -> Claimed {
        Claimed {
            id: 1,
            recipient: "13800138000".into(),
            text: "今日天气".into(),
            attempts: 1,
            expires_at: 0,
            sender: Some("1066881201".into()),
            charge_plan: plan.as_str().into(),
            price_fen,
            service: Some("TQ".into()),
            basis: basis.into(),
            mo_id,
            subscription_id: None,
        }
    }

    /// issue 16 item 4: a per-message MT bills its price once, on its first
    /// segment, to the recipient, under the service's code.
    #[test]
    fn per_message_bills_the_price_once() {
        let m = mt(ChargePlan::PerMessage, 200, "subscription", None);
        let first = fee_for(&m, &FeeContext::default(), "DEFAULT", 1).expect("fee");
        assert_eq!(
            first,
            Fee {
                fee_type: FeeType::PerMessage,
                fee_code_fen: 200,
                fee_user_type: FeeUserType::Destination,
                charge_number: "13800138000".into(),
                service_id: "TQ".into(),
                link_id: None,
                in_reply_to_mo: false,
            }
        );
        let second = fee_for(&m, &FeeContext::default(), "DEFAULT", 2).expect("fee");
        assert_eq!((second.fee_type, second.fee_code_fen), (FeeType::Free, 0));
    }

    /// Issue 16 item 4: a billing record carries its charge event's amount as a
    /// record the user does not see (not as a delivered 包月 MT).
    #[test]
    fn a_fee_record_carries_the_monthly_charge() {
        let m = mt(ChargePlan::Monthly, 300, "fee-record", None);
        assert!(is_fee_record(&m));
        let fee = fee_for(&m, &FeeContext::default(), "DEFAULT", 1).expect("fee");
        assert_eq!(
            (fee.fee_type, fee.fee_code_fen, fee.in_reply_to_mo),
            (FeeType::MonthlyRecordOnly, 300, false)
        );
        assert_eq!(fee.service_id, "TQ");
    }

    /// a monthly MT is marked 包月 with the subscription's monthly price on
    /// every segment (billed per month, never per message).
    #[test]
    fn monthly_carries_the_subscription_price() {
        let m = mt(ChargePlan::Monthly, 0, "subscription", None);
        let context = FeeContext {
            link_id: None,
            monthly_price_fen: Some(500),
        };
        for seq in [1, 2] {
            let fee = fee_for(&m, &context, "DEFAULT", seq).expect("fee");
            assert_eq!((fee.fee_type, fee.fee_code_fen), (FeeType::Monthly, 500));
        }
    }

    /// Free services, notices and test sends bill nothing; without a service the
    /// operator's default `Service_Id` is used.
    #[test]
    fn free_and_test_bill_nothing() {
        for plan in [ChargePlan::Free, ChargePlan::Test] {
            let mut m = mt(plan, 0, "test", None);
            m.service = None;
            let fee = fee_for(&m, &FeeContext::default(), "HELP", 1).expect("fee");
            assert_eq!((fee.fee_type, fee.fee_code_fen), (FeeType::Free, 0));
            assert_eq!(fee.service_id, "HELP");
            assert!(!fee.in_reply_to_mo);
        }
    }

    /// 点播: a reply to a user's MO carries that MO's LinkID and is MO-related; a push
    /// never carries one, even with a LinkID in its context.
    #[test]
    fn a_reply_carries_the_mo_link_id() {
        let context = FeeContext {
            link_id: Some("0123456789ABCDEF0123".into()),
            monthly_price_fen: None,
        };
        let reply = mt(ChargePlan::PerMessage, 100, "reply", Some(42));
        let fee = fee_for(&reply, &context, "DEFAULT", 1).expect("fee");
        assert_eq!(fee.link_id.as_deref(), Some("0123456789ABCDEF0123"));
        assert!(fee.in_reply_to_mo);
        assert_eq!((fee.fee_type, fee.fee_code_fen), (FeeType::PerMessage, 100));
        let push = mt(ChargePlan::PerMessage, 100, "subscription", None);
        let fee = fee_for(&push, &context, "DEFAULT", 1).expect("fee");
        assert_eq!(fee.link_id, None);
        assert!(!fee.in_reply_to_mo);
    }

    /// Bad rows get a clear error, never a wrapped number.
    #[test]
    fn amounts_that_do_not_fit_are_errors() {
        let m = mt(ChargePlan::PerMessage, -1, "subscription", None);
        assert_eq!(
            fee_for(&m, &FeeContext::default(), "D", 1),
            Err(FeeError::Amount(-1))
        );
        let m = mt(
            ChargePlan::PerMessage,
            i64::from(u32::MAX) + 1,
            "reply",
            None,
        );
        assert!(fee_for(&m, &FeeContext::default(), "D", 1).is_err());
        let mut m = mt(ChargePlan::Free, 0, "reply", None);
        m.charge_plan = "bartered".into();
        assert_eq!(
            fee_for(&m, &FeeContext::default(), "D", 1),
            Err(FeeError::Plan("bartered".into()))
        );
    }
}
