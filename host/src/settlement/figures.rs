//! Which of a partner's own figures are admissible at all.
//!
//! The partner's figures are a second check on the platform's (clause 3.1); they
//! can move a line towards the mean (3.2), so a figure that could not be a count of
//! real traffic must never reach the comparison. A line is admitted only when:
//!
//! - its service is one of the caller's own, with approved paid terms in force at
//!   some time in the month (a free service has nothing to settle);
//! - its operator is a known one (configured, or holding billing settings) that the
//!   service was registered with in that month;
//! - the month has ended (Asia/Shanghai) — nobody can count a month still running;
//! - count and amount are within range and consistent with the prices in force:
//!   per-message, `amount = count × price` (between `count × lowest` and `count ×
//!   highest` if the price changed in the month); monthly, `count ≤ amount ≤ count ×
//!   price` (a pro-rata first month charges less than the price, never nothing).
//!
//! Anything else is a 400 naming the line and the rule.

use std::collections::{BTreeMap, BTreeSet};

use super::reconcile::FiguresInput;
use crate::billing::BillingError;
use crate::billing::calendar::Month;
use crate::billing::money::mul;
use crate::relay::Routes;
use crate::services::FeeType;
use crate::store::Store;

/// Most lines and message ids one upload may carry.
pub const MAX_LINES: usize = 1000;
pub const MAX_IDS: usize = 200_000;
/// Most messages or subscription-months one line may count: far above any real
/// month of one service on one operator, far below anything that could overflow.
pub const MAX_COUNT: i64 = 1_000_000_000;

/// The terms of one service in force at some time in a month.
#[derive(Debug, Clone, Default)]
struct InForce {
    fee_types: BTreeSet<&'static str>,
    /// Prices of the paid revisions in force (fen per message or per month).
    per_message: BTreeSet<i64>,
    monthly: BTreeSet<i64>,
    operators: BTreeSet<String>,
}

fn line_error(i: usize, reason: impl std::fmt::Display) -> BillingError {
    BillingError::invalid("lines", format!("line {}: {reason}", i + 1))
}

/// The shape of an upload: sizes, signs, ranges, duplicates.
fn check_shape(input: &FiguresInput) -> Result<(), BillingError> {
    if input.lines.is_empty() {
        return Err(BillingError::invalid("lines", "at least one line"));
    }
    if input.lines.len() > MAX_LINES {
        return Err(BillingError::invalid(
            "lines",
            format!("at most {MAX_LINES} lines"),
        ));
    }
    let mut seen = BTreeSet::new();
    let mut ids = 0usize;
    for (i, l) in input.lines.iter().enumerate() {
        if !(0..=MAX_COUNT).contains(&l.count) {
            return Err(line_error(
                i,
                format!("count must be 0 to {MAX_COUNT}, not {}", l.count),
            ));
        }
        if l.amount_fen < 0 {
            return Err(line_error(i, "amount_fen cannot be negative"));
        }
        if !seen.insert((l.service.as_str(), l.operator.as_str())) {
            return Err(line_error(
                i,
                format!("service `{}` on `{}` appears twice", l.service, l.operator),
            ));
        }
        if let Some(list) = &l.message_ids {
            ids += list.len();
            if let Some(bad) = list.iter().find(|id| **id <= 0) {
                return Err(line_error(i, format!("message id {bad} is not an id")));
            }
        }
    }
    if ids > MAX_IDS {
        return Err(BillingError::invalid(
            "message_ids",
            format!("at most {MAX_IDS} message ids per upload"),
        ));
    }
    if let Some(o) = &input.objection
        && (o.trim().is_empty() || o.chars().count() > 2000)
    {
        return Err(BillingError::invalid("objection", "1-2000 characters"));
    }
    Ok(())
}

/// The terms of the partner's service `code` in force at any time in `month`
/// (`None`: no such service of this partner).
async fn in_force(
    store: &Store,
    partner_id: i64,
    code: &str,
    month: Month,
) -> Result<Option<InForce>, BillingError> {
    let found: Option<(i64,)> =
        sqlx::query_as("SELECT id FROM services WHERE partner_id = $1 AND code = $2")
            .bind(partner_id)
            .bind(code)
            .fetch_optional(store.pool())
            .await?;
    let Some((service_id,)) = found else {
        return Ok(None);
    };
    // Approved revisions in the order they came into force; each is in force until
    // the next one's approval.
    let revisions: Vec<(String, i64, String, i64)> = sqlx::query_as(
        "SELECT fee_type, price_fen, operators, decided_at FROM service_revisions
         WHERE service_id = $1 AND status IN ('approved', 'superseded') AND decided_at IS NOT NULL
         ORDER BY decided_at, id",
    )
    .bind(service_id)
    .fetch_all(store.pool())
    .await?;
    let (start, end) = (month.start_ms(), month.end_ms());
    let mut terms = InForce::default();
    for (i, (fee_type, price, operators, from)) in revisions.iter().enumerate() {
        let until = revisions.get(i + 1).map_or(i64::MAX, |r| r.3);
        if *from >= end || until <= start {
            continue;
        }
        let Some(fee) = FeeType::parse(fee_type) else {
            continue;
        };
        terms.fee_types.insert(fee.as_str());
        match fee {
            FeeType::PerMessage => {
                terms.per_message.insert(*price);
            }
            FeeType::Monthly => {
                terms.monthly.insert(*price);
            }
            FeeType::Free => {}
        }
        let names: Vec<String> = serde_json::from_str(operators).unwrap_or_default();
        terms.operators.extend(names);
    }
    Ok(Some(terms))
}

/// Admit an upload for `month` or say which line breaks which rule. Service codes
/// are folded to their stored form (`xz` → `XZ`) in place.
///
/// # Errors
/// `Invalid` (400) naming the line; `Conflict` `month-open` (409) for a month that
/// has not ended at `now_ms`.
pub async fn admit(
    store: &Store,
    routes: &Routes,
    partner_id: i64,
    month: Month,
    input: &mut FiguresInput,
    now_ms: i64,
) -> Result<(), BillingError> {
    if month.end_ms() > now_ms {
        return Err(BillingError::conflict(
            "month-open",
            format!(
                "{month} has not ended (it ends {} 00:00 Asia/Shanghai); figures are for closed months",
                month.plus(1).first_day()
            ),
        ));
    }
    for (i, l) in input.lines.iter_mut().enumerate() {
        l.service = crate::services::normalize_code(&l.service)
            .map_err(|_| line_error(i, format!("`{}` is not a service code", l.service)))?;
        crate::billing::terms::valid_operator(&l.operator)?;
    }
    check_shape(input)?;
    let mut services: BTreeMap<String, Option<InForce>> = BTreeMap::new();
    for l in &input.lines {
        if !services.contains_key(&l.service) {
            let terms = in_force(store, partner_id, &l.service, month).await?;
            services.insert(l.service.clone(), terms);
        }
    }
    for (i, l) in input.lines.iter().enumerate() {
        // Another partner's service is "not a service of yours", exactly as one that
        // does not exist.
        let Some(Some(terms)) = services.get(&l.service) else {
            return Err(line_error(
                i,
                format!("`{}` is not a service of yours", l.service),
            ));
        };
        if terms.fee_types.is_empty() {
            return Err(line_error(
                i,
                format!(
                    "service `{}` had no approved terms in force in {month}",
                    l.service
                ),
            ));
        }
        if terms.per_message.is_empty() && terms.monthly.is_empty() {
            return Err(line_error(
                i,
                format!(
                    "service `{}` was free in {month}: there is nothing to settle",
                    l.service
                ),
            ));
        }
        if !crate::billing::terms::known_operator(store, routes, &l.operator).await? {
            return Err(line_error(
                i,
                format!("`{}` is not an operator of the platform", l.operator),
            ));
        }
        if !terms.operators.contains(&l.operator) {
            return Err(line_error(
                i,
                format!(
                    "service `{}` was not registered with `{}` in {month}",
                    l.service, l.operator
                ),
            ));
        }
        check_amount(i, l.count, l.amount_fen, terms)?;
    }
    Ok(())
}

/// `amount_fen` must be what `count` charges could amount to under the prices in
/// force.
fn check_amount(i: usize, count: i64, amount: i64, terms: &InForce) -> Result<(), BillingError> {
    let overflow = |_| line_error(i, "count × price is out of range");
    // Per-message charges are exactly the price; a monthly charge is at least 1 fen
    // (a pro-rata month) and at most the price.
    let lowest = terms
        .per_message
        .iter()
        .copied()
        .chain((!terms.monthly.is_empty()).then_some(1))
        .min()
        .unwrap_or(0);
    let highest = terms
        .per_message
        .iter()
        .chain(&terms.monthly)
        .copied()
        .max()
        .unwrap_or(0);
    let low = mul("line amount", count, lowest).map_err(overflow)?;
    let high = mul("line amount", count, highest).map_err(overflow)?;
    if (low..=high).contains(&amount) {
        return Ok(());
    }
    let rule = if terms.monthly.is_empty() && terms.per_message.len() == 1 {
        format!("{count} × {highest} fen = {high} fen")
    } else {
        format!("between {low} and {high} fen for {count} at the prices in force")
    };
    Err(line_error(
        i,
        format!("amount_fen {amount} does not match the count: it must be {rule}"),
    ))
}
