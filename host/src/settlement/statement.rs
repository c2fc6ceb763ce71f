//! A partner's monthly statement, computed only from stored records
//! so generating it again gives the same document to the byte.
//!
//! Per operator, in this order:
//! 1. gross information fee = Σ settled lines (platform figures; the mean of both
//!    sides on lines more than X% apart, R-4.2)
//! 2. − collection fee = gross × collection %
//! 3. − imbalance fee = max(0, MT − ⌊MO × balance_mt ÷ balance_mo⌋) × rate
//! 4. − bad debt = gross × the operator's reported ratio for the month
//! 5. = actual received fee; − tax = max(received, 0) × tax %; = distributable income
//!
//! Then the month's distributable income (Σ operators) picks the tier and is split
//! the partner's share is divided over the operators in proportion to their
//! distributable income (largest remainder), and each part is due on that
//! operator's schedule. Every percentage is applied with one rounding, half
//! away from zero.

use std::collections::{BTreeMap, BTreeSet};

use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use super::reconcile::{self, Figures, Line, PartnerLine, PlatformLine, Rules, SettleOn};
use crate::billing::BillingError;
use crate::billing::calendar::{Calendar, Month};
use crate::billing::money::{add, allocate, apply_bp, mul, sub, sum};
use crate::billing::terms::{
    self, AgreementTerms, DEFAULT_CALENDAR, OperatorTerms, Schedule, TierMode,
};
use crate::store::Store;

/// One operator's records for the month.
#[derive(Debug, Clone)]
pub struct OperatorInput {
    pub terms: OperatorTerms,
    pub lines: Vec<PlatformLine>,
    /// The partner's delivered MTs and its MOs on this operator (imbalance, R-4.3 b).
    pub mt_count: i64,
    pub mo_count: i64,
    /// `None`: not reported yet (the statement is provisional).
    pub bad_debt_bp: Option<i64>,
    pub calendar_name: String,
    pub calendar: Calendar,
    pub operator_paid_on: Option<Date>,
    /// What was paid to the partner.
    pub payments: Vec<Payment>,
}

/// A payment to the partner against a month's traffic on one operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
#[serde(from = "PaymentRepr")]
pub struct Payment {
    pub amount_fen: i64,
    /// `YYYY-MM-DD`.
    pub paid_on: String,
    /// The bank's or the payer's reference.
    pub reference: String,
}

/// How a [`Payment`] is read: named, or the `[amount, paid_on, reference]` tuple
/// of statements issued before issue 14.
#[derive(Deserialize)]
#[serde(untagged)]
enum PaymentRepr {
    Named {
        amount_fen: i64,
        paid_on: String,
        reference: String,
    },
    Tuple(i64, String, String),
}

impl From<PaymentRepr> for Payment {
    fn from(r: PaymentRepr) -> Self {
        match r {
            PaymentRepr::Named {
                amount_fen,
                paid_on,
                reference,
            }
            | PaymentRepr::Tuple(amount_fen, paid_on, reference) => Self {
                amount_fen,
                paid_on,
                reference,
            },
        }
    }
}

/// Everything a statement is computed from.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub partner: String,
    pub month: Month,
    pub terms: AgreementTerms,
    pub operators: Vec<OperatorInput>,
    pub figures: Option<Figures>,
    /// (id, status) of the discrepancy case opened for `figures`.
    pub case: Option<(i64, String)>,
    /// The admin's decisions on the case's held lines, by (operator, service).
    pub decisions: BTreeMap<(String, String), SettleOn>,
}

/// The month of a statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    pub from: String,
    pub until: String,
    pub time_zone: String,
}

/// One operator's part of the statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorStatement {
    pub operator: String,
    pub terms_from: Month,
    pub lines: Vec<Line>,
    pub gross_fen: i64,
    pub collection_bp: i64,
    pub collection_fen: i64,
    pub mt_count: i64,
    pub mo_count: i64,
    pub balance: String,
    pub balanced_mt: i64,
    pub imbalanced_mt: i64,
    pub imbalance_rate_fen: i64,
    pub imbalance_fen: i64,
    pub bad_debt_bp: Option<i64>,
    pub bad_debt_fen: i64,
    pub received_fen: i64,
    pub tax_fen: i64,
    pub distributable_fen: i64,
    pub partner_fen: i64,
    pub platform_fen: i64,
}

/// Sums over the operators.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub gross_fen: i64,
    pub collection_fen: i64,
    pub imbalance_fen: i64,
    pub bad_debt_fen: i64,
    pub received_fen: i64,
    pub tax_fen: i64,
    pub distributable_fen: i64,
}

/// The tiered split of the month's distributable income.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitView {
    pub tier: u8,
    pub tier_mode: TierMode,
    pub t1_fen: i64,
    pub t2_fen: i64,
    /// The tier's rates (whole mode: applied to the whole amount).
    pub platform_bp: i64,
    pub partner_bp: i64,
    pub platform_fen: i64,
    pub partner_fen: i64,
}

/// What is due to the partner for one operator's traffic, and by when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Due {
    pub operator: String,
    pub amount_fen: i64,
    pub schedule: Schedule,
    pub calendar: String,
    /// The schedule's day, moved to the next working day if it is not one.
    pub due_on: String,
    /// The last day of the N working days' grace after `due_on`; unpaid after it, the
    /// settlement is in breach (agreement 3.5).
    pub breach_after: String,
    pub operator_paid_on: Option<String>,
    /// N working days after the operator's money arrived (agreement 3.4).
    pub pay_by: Option<String>,
    pub paid_fen: i64,
    /// Σ adjustments opened after the statement was issued (negative: less due).
    #[serde(default)]
    pub adjustment_fen: i64,
    /// amount + adjustments − paid, never below 0.
    pub outstanding_fen: i64,
    pub payments: Vec<Payment>,
}

/// A change to an issued month's money inputs: what it does to the partner's
/// share on one operator, settled beside the issued statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Adjustment {
    pub id: i64,
    pub operator: String,
    /// What changed (`bad-debt 250 → 600 bp`).
    pub cause: String,
    pub reason: String,
    /// The partner's share on this operator before and after the change.
    pub issued_partner_fen: i64,
    pub revised_partner_fen: i64,
    pub delta_fen: i64,
    pub opened_by: String,
    #[serde(with = "crate::api::time::rfc3339")]
    pub opened_at: i64,
}

/// When and by whom a statement was issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issued {
    #[serde(with = "crate::api::time::rfc3339")]
    pub issued_at: i64,
    pub issued_by: String,
}

/// The partner's upload behind the statement, if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconciliation {
    pub figures_id: i64,
    pub objection: Option<String>,
    pub lines_on_mean: i64,
    /// Lines held for the admin's decision (beyond the hard bound), and how many of
    /// them are still undecided (the statement is provisional until none are).
    #[serde(default)]
    pub lines_held: i64,
    #[serde(default)]
    pub lines_undecided: i64,
    pub case_id: Option<i64>,
    pub case_status: Option<String>,
}

/// A partner's monthly statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    pub partner: String,
    pub month: Month,
    pub period: Period,
    /// Some operator has not reported its bad-debt ratio yet, or a held line waits
    /// for the admin's decision: figures may change, it cannot be issued.
    pub provisional: bool,
    /// Set once the statement is issued: its figures are then frozen.
    #[serde(default)]
    pub issued: Option<Issued>,
    pub terms: AgreementTerms,
    pub operators: Vec<OperatorStatement>,
    pub totals: Totals,
    pub split: SplitView,
    pub due: Vec<Due>,
    pub reconciliation: Option<Reconciliation>,
    /// Changes to the month's money inputs after it was issued.
    #[serde(default)]
    pub adjustments: Vec<Adjustment>,
    /// What the documents name beside the codes (issue 14): not figures, so filled
    /// when the statement is read, issued or not.
    #[serde(default)]
    pub names: Names,
}

/// The names a reader needs beside the codes: the partner's display name (乐游,
/// not the login `leyou`) and each service's name, fee type and unit price.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Names {
    pub partner_display_name: String,
    /// By code.
    pub services: Vec<ServiceName>,
}

/// One service as a statement names it (its live terms, else its draft's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ServiceName {
    pub code: String,
    pub name: String,
    /// `free`, `per-message` or `monthly`.
    pub fee_type: String,
    /// Per message or per month, by `fee_type`.
    pub unit_price_fen: i64,
}

impl Names {
    /// The service with this code, if the partner has it.
    pub fn service(&self, code: &str) -> Option<&ServiceName> {
        self.services.iter().find(|s| s.code == code)
    }
}

/// The names of a partner's statement.
pub(super) async fn names(store: &Store, partner_id: i64) -> Result<Names, BillingError> {
    let (partner_display_name,): (String,) =
        sqlx::query_as("SELECT display_name FROM partners WHERE id = $1")
            .bind(partner_id)
            .fetch_one(store.pool())
            .await?;
    let services = sqlx::query_as(
        "SELECT s.code, r.name, r.fee_type, r.price_fen AS unit_price_fen
         FROM services s JOIN service_revisions r
           ON r.id = COALESCE(s.live_revision_id, s.pending_revision_id)
         WHERE s.partner_id = $1 ORDER BY s.code",
    )
    .bind(partner_id)
    .fetch_all(store.pool())
    .await?;
    Ok(Names {
        partner_display_name,
        services,
    })
}

fn period(month: Month) -> Period {
    Period {
        from: format!("{} 00:00", month.first_day()),
        until: format!("{} 00:00", month.plus(1).first_day()),
        time_zone: crate::clock::time_zone_name().to_string(),
    }
}

/// Compute a statement from its inputs (no clock, no database).
///
/// # Errors
/// `Overflow` (→ `amount-out-of-range`) when a figure would not fit in `i64` fen:
/// never a wrapped or saturated figure.
pub fn compute(inputs: &Inputs) -> Result<Statement, BillingError> {
    let terms = &inputs.terms;
    let partner_lines: Vec<PartnerLine> = inputs
        .figures
        .as_ref()
        .map(|f| f.lines.clone())
        .unwrap_or_default();
    let rules = Rules {
        threshold_bp: terms.discrepancy_bp,
        hold_bp: inputs.figures.as_ref().and_then(|f| f.hold_bp),
        objection: inputs
            .figures
            .as_ref()
            .is_some_and(|f| f.objection.is_some()),
    };
    let mut operators = Vec::new();
    let mut totals = Totals::default();
    let (mut lines_on_mean, mut lines_held, mut lines_undecided) = (0i64, 0i64, 0i64);
    for op in &inputs.operators {
        let name = &op.terms.operator;
        let theirs: Vec<PartnerLine> = partner_lines
            .iter()
            .filter(|l| &l.operator == name)
            .cloned()
            .collect();
        let decisions: BTreeMap<String, SettleOn> = inputs
            .decisions
            .iter()
            .filter(|((o, _), _)| o == name)
            .map(|((_, service), on)| (service.clone(), *on))
            .collect();
        let lines = reconcile::compare(&op.lines, &theirs, rules, &decisions)?;
        for l in &lines {
            lines_on_mean += i64::from(l.on_mean);
            lines_held += i64::from(l.held);
            lines_undecided += i64::from(l.held && l.decision.is_none());
        }
        let gross = sum("gross information fee", lines.iter().map(|l| l.settled_fen))?;
        let collection = apply_bp("collection fee", gross, op.terms.collection_bp)?;
        let (balanced, imbalanced) = op.terms.imbalanced(op.mt_count, op.mo_count)?;
        let imbalance = mul("imbalance fee", imbalanced, op.terms.imbalance_rate_fen)?;
        let bad_debt = apply_bp("bad debt", gross, op.bad_debt_bp.unwrap_or(0))?;
        let received = sum(
            "actual received fee",
            [gross, -collection, -imbalance, -bad_debt],
        )?;
        let tax = apply_bp("tax", received.max(0), terms.tax_bp)?;
        let distributable = sub("distributable income", received, tax)?;
        totals = Totals {
            gross_fen: add("total gross", totals.gross_fen, gross)?,
            collection_fen: add("total collection fee", totals.collection_fen, collection)?,
            imbalance_fen: add("total imbalance fee", totals.imbalance_fen, imbalance)?,
            bad_debt_fen: add("total bad debt", totals.bad_debt_fen, bad_debt)?,
            received_fen: add("total received", totals.received_fen, received)?,
            tax_fen: add("total tax", totals.tax_fen, tax)?,
            distributable_fen: add(
                "total distributable income",
                totals.distributable_fen,
                distributable,
            )?,
        };
        operators.push(OperatorStatement {
            operator: name.clone(),
            terms_from: op.terms.effective_from,
            lines,
            gross_fen: gross,
            collection_bp: op.terms.collection_bp,
            collection_fen: collection,
            mt_count: op.mt_count,
            mo_count: op.mo_count,
            balance: format!("{}:{}", op.terms.balance_mt, op.terms.balance_mo),
            balanced_mt: balanced,
            imbalanced_mt: imbalanced,
            imbalance_rate_fen: op.terms.imbalance_rate_fen,
            imbalance_fen: imbalance,
            bad_debt_bp: op.bad_debt_bp,
            bad_debt_fen: bad_debt,
            received_fen: received,
            tax_fen: tax,
            distributable_fen: distributable,
            partner_fen: 0,
            platform_fen: 0,
        });
    }
    let split = terms.split(totals.distributable_fen)?;
    let weights: Vec<i64> = operators
        .iter()
        .map(|o| o.distributable_fen.max(0))
        .collect();
    let parts = allocate(split.partner_fen, &weights);
    for (o, part) in operators.iter_mut().zip(&parts) {
        o.partner_fen = *part;
        o.platform_fen = sub("platform share", o.distributable_fen, *part)?;
    }
    let rates = terms.tiers[usize::from(split.tier - 1)];
    let mut due = Vec::with_capacity(operators.len());
    for (input, o) in inputs.operators.iter().zip(&operators) {
        let days = u32::try_from(terms.payment_days).unwrap_or(0);
        let cal = &input.calendar;
        let due_on = cal.on_or_after(input.terms.schedule.date_for(inputs.month));
        due.push(Due {
            operator: o.operator.clone(),
            amount_fen: o.partner_fen,
            schedule: input.terms.schedule,
            calendar: input.calendar_name.clone(),
            due_on: due_on.to_string(),
            breach_after: cal.add_working_days(due_on, days).to_string(),
            operator_paid_on: input.operator_paid_on.map(|d| d.to_string()),
            pay_by: input
                .operator_paid_on
                .map(|d| cal.add_working_days(d, days).to_string()),
            paid_fen: 0,
            adjustment_fen: 0,
            outstanding_fen: 0,
            payments: input.payments.clone(),
        });
    }
    settle_payments(&mut due, &[])?;
    Ok(Statement {
        partner: inputs.partner.clone(),
        month: inputs.month,
        period: period(inputs.month),
        provisional: inputs.operators.iter().any(|o| o.bad_debt_bp.is_none())
            || lines_undecided > 0,
        issued: None,
        terms: terms.clone(),
        operators,
        totals,
        split: SplitView {
            tier: split.tier,
            tier_mode: terms.tier_mode,
            t1_fen: terms.t1_fen,
            t2_fen: terms.t2_fen,
            platform_bp: rates.platform_bp,
            partner_bp: rates.partner_bp,
            platform_fen: split.platform_fen,
            partner_fen: split.partner_fen,
        },
        due,
        reconciliation: inputs.figures.as_ref().map(|f| Reconciliation {
            figures_id: f.id,
            objection: f.objection.clone(),
            lines_on_mean,
            lines_held,
            lines_undecided,
            case_id: inputs.case.as_ref().map(|c| c.0),
            case_status: inputs.case.as_ref().map(|c| c.1.clone()),
        }),
        adjustments: Vec::new(),
        names: Names::default(),
    })
}

/// Paid, adjusted and outstanding amounts of each operator's part, from its
/// payments and the adjustments opened on it.
///
/// # Errors
/// `Overflow` if a sum would not fit in `i64` fen.
pub fn settle_payments(due: &mut [Due], adjustments: &[Adjustment]) -> Result<(), BillingError> {
    for d in due {
        d.paid_fen = sum(
            "paid to the partner",
            d.payments.iter().map(|p| p.amount_fen),
        )?;
        d.adjustment_fen = sum(
            "adjustments",
            adjustments
                .iter()
                .filter(|a| a.operator == d.operator)
                .map(|a| a.delta_fen),
        )?;
        let owed = add("amount due", d.amount_fen, d.adjustment_fen)?;
        d.outstanding_fen = sub("outstanding amount", owed, d.paid_fen)?.max(0);
    }
    Ok(())
}

/// Gather a statement's inputs from the store.
pub async fn load(
    store: &Store,
    partner_id: i64,
    partner_name: &str,
    month: Month,
) -> Result<Inputs, BillingError> {
    let terms = terms::terms_for(store, partner_id, month)
        .await?
        .ok_or_else(|| {
            BillingError::conflict(
                "no-terms",
                format!("no agreement terms are in force for {month}"),
            )
        })?;
    let op_terms = terms::operator_terms_for(store, partner_id, month).await?;
    let lines = reconcile::platform_lines(store, partner_id, month).await?;
    let (start, end) = (month.start_ms(), month.end_ms());
    let mt: Vec<(String, i64)> = sqlx::query_as(
        "SELECT operator, COUNT(*) FROM messages
         WHERE partner_id = $1 AND status = 'delivered' AND is_test = 0 AND done_at >= $2 AND done_at < $3
         GROUP BY operator",
    )
    .bind(partner_id)
    .bind(start)
    .bind(end)
    .fetch_all(store.pool())
    .await?;
    let mo: Vec<(String, i64)> = sqlx::query_as(
        "SELECT mo.operator, COUNT(*) FROM mo_messages mo JOIN services s ON s.id = mo.service_id
         WHERE s.partner_id = $1 AND mo.received_at >= $2 AND mo.received_at < $3
         GROUP BY mo.operator",
    )
    .bind(partner_id)
    .bind(start)
    .bind(end)
    .fetch_all(store.pool())
    .await?;
    let mut mt: BTreeMap<String, i64> = mt.into_iter().collect();
    let mut mo: BTreeMap<String, i64> = mo.into_iter().collect();
    // Rows the history purge removed were counted into `purged_traffic`
    // as they went, so a purged month reads the same figures.
    let purged: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT kind, operator, count FROM purged_traffic WHERE partner_id = $1 AND month = $2",
    )
    .bind(partner_id)
    .bind(month.to_string())
    .fetch_all(store.pool())
    .await?;
    for (kind, operator, n) in purged {
        let counts = if kind == "mo" { &mut mo } else { &mut mt };
        let count = counts.entry(operator).or_default();
        *count = add("purged traffic", *count, n)?;
    }
    // Every operator with terms, traffic or charges is on the statement.
    let names: BTreeSet<String> = op_terms
        .iter()
        .map(|t| t.operator.clone())
        .chain(lines.iter().map(|l| l.operator.clone()))
        .chain(mt.keys().cloned())
        .collect();
    let figures = reconcile::latest_figures(store, partner_id, month).await?;
    let mut operators = Vec::new();
    for name in names {
        let Some(t) = op_terms.iter().find(|t| t.operator == name) else {
            return Err(BillingError::conflict(
                "no-operator-terms",
                format!(
                    "operator `{name}` carried this partner's traffic in {month} but has no terms in force for it"
                ),
            ));
        };
        let calendar_name = terms::operator_billing(store, &name)
            .await?
            .map_or_else(|| DEFAULT_CALENDAR.to_string(), |b| b.calendar);
        let calendar = Calendar::load(store, &calendar_name).await?;
        let paid_on: Option<(String,)> = sqlx::query_as(
            "SELECT received_on FROM operator_payments WHERE operator = $1 AND month = $2",
        )
        .bind(&name)
        .bind(month.to_string())
        .fetch_optional(store.pool())
        .await?;
        let payments = payments(store, partner_id, month, &name).await?;
        operators.push(OperatorInput {
            terms: t.clone(),
            lines: lines
                .iter()
                .filter(|l| l.operator == name)
                .cloned()
                .collect(),
            mt_count: mt.get(&name).copied().unwrap_or(0),
            mo_count: mo.get(&name).copied().unwrap_or(0),
            bad_debt_bp: terms::bad_debt(store, &name, month).await?,
            calendar_name,
            calendar,
            operator_paid_on: paid_on.and_then(|(d,)| d.parse().ok()),
            payments,
        });
    }
    let case = match &figures {
        Some(f) => super::cases::case_of_figures(store, f.id).await?,
        None => None,
    };
    let decisions = match &case {
        Some((id, _)) => super::cases::decisions(store, *id).await?,
        None => BTreeMap::new(),
    };
    Ok(Inputs {
        partner: partner_name.to_string(),
        month,
        terms,
        operators,
        figures,
        case,
        decisions,
    })
}

/// The statement as the stored records give it now (what issuing freezes).
pub async fn current(
    store: &Store,
    partner_id: i64,
    partner_name: &str,
    month: Month,
) -> Result<Statement, BillingError> {
    compute(&load(store, partner_id, partner_name, month).await?)
}

/// The month's statement as the partner gets it: once issued, the document as it
/// was issued (its figures never change), with the payments made against it and
/// the adjustments opened since; before, [`current`].
pub async fn generate(
    store: &Store,
    partner_id: i64,
    partner_name: &str,
    month: Month,
) -> Result<Statement, BillingError> {
    let mut s = match super::issue::issued(store, partner_id, month).await? {
        Some(mut s) => {
            let adjustments = super::issue::adjustments(store, partner_id, month).await?;
            for d in &mut s.due {
                d.payments = payments(store, partner_id, month, &d.operator).await?;
            }
            settle_payments(&mut s.due, &adjustments)?;
            s.adjustments = adjustments;
            s
        }
        None => current(store, partner_id, partner_name, month).await?,
    };
    s.names = names(store, partner_id).await?;
    Ok(s)
}

/// What was paid to the partner for a month's traffic on one operator.
async fn payments(
    store: &Store,
    partner_id: i64,
    month: Month,
    operator: &str,
) -> Result<Vec<Payment>, BillingError> {
    Ok(sqlx::query_as(
        "SELECT amount_fen, paid_on, reference FROM partner_payments
         WHERE partner_id = $1 AND month = $2 AND operator = $3 ORDER BY paid_on, id",
    )
    .bind(partner_id)
    .bind(month.to_string())
    .bind(operator)
    .fetch_all(store.pool())
    .await?)
}
