//! Reconciliation: the platform's figures are the basis; the
//! partner's own monthly figures are the second check. Where a line (service ×
//! operator) differs by more than X% in count or amount — or the partner objects —
//! that line settles on the mean of both, and a discrepancy case records both
//! figures and the message-level differences the platform can show, until someone
//! records how it was resolved.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::billing::BillingError;
use crate::billing::calendar::Month;
use crate::billing::money::{difference_bp, differs_beyond, mean};
use crate::billing::terms::terms_for;
use crate::store::{Store, now_ms};

/// One line of the platform's own figures: charge events of a service on an operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformLine {
    pub operator: String,
    pub service: String,
    /// `per-message`, `monthly` (or both joined by `+` if the service changed type).
    pub fee_type: String,
    /// Charged messages or subscription-months (events with an amount).
    pub count: i64,
    pub amount_fen: i64,
}

/// One line of the partner's upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartnerLine {
    pub service: String,
    pub operator: String,
    pub count: i64,
    pub amount_fen: i64,
    /// The message ids (as the platform's API gave them) the partner counted as
    /// charged; optional, for message-level differences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_ids: Option<Vec<i64>>,
}

/// The partner's upload for a month.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FiguresInput {
    pub lines: Vec<PartnerLine>,
    /// An objection opens a case and settles every differing line on the mean
    /// (R-4.2 "or either side objects").
    #[serde(default)]
    pub objection: Option<String>,
}

/// How a statement line was settled, with both sides' figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    pub service: String,
    pub fee_type: String,
    pub platform_count: i64,
    pub platform_fen: i64,
    pub partner_count: Option<i64>,
    pub partner_fen: Option<i64>,
    /// Partner − platform, in basis points of the platform's figure.
    pub count_difference_bp: Option<i64>,
    pub amount_difference_bp: Option<i64>,
    /// More than X% apart (count or amount), or differing under an objection.
    pub on_mean: bool,
    pub settled_count: i64,
    pub settled_fen: i64,
}

/// Compare one operator's lines. Lines come out sorted by service.
pub fn compare(
    platform: &[PlatformLine],
    partner: &[PartnerLine],
    threshold_bp: i64,
    objection: bool,
) -> Vec<Line> {
    let mut keys: BTreeMap<&str, (Option<&PlatformLine>, Option<&PartnerLine>)> = BTreeMap::new();
    for p in platform {
        keys.entry(p.service.as_str()).or_default().0 = Some(p);
    }
    for p in partner {
        keys.entry(p.service.as_str()).or_default().1 = Some(p);
    }
    keys.into_iter()
        .map(|(service, (ours, theirs))| {
            let (pc, pf, fee_type) = ours.map_or((0, 0, String::from("unknown")), |l| {
                (l.count, l.amount_fen, l.fee_type.clone())
            });
            let Some(theirs) = theirs else {
                return Line {
                    service: service.to_string(),
                    fee_type,
                    platform_count: pc,
                    platform_fen: pf,
                    partner_count: None,
                    partner_fen: None,
                    count_difference_bp: None,
                    amount_difference_bp: None,
                    on_mean: false,
                    settled_count: pc,
                    settled_fen: pf,
                };
            };
            let beyond = differs_beyond(pc, theirs.count, threshold_bp)
                || differs_beyond(pf, theirs.amount_fen, threshold_bp);
            let differs = pc != theirs.count || pf != theirs.amount_fen;
            let on_mean = beyond || (objection && differs);
            Line {
                service: service.to_string(),
                fee_type,
                platform_count: pc,
                platform_fen: pf,
                partner_count: Some(theirs.count),
                partner_fen: Some(theirs.amount_fen),
                count_difference_bp: difference_bp(pc, theirs.count),
                amount_difference_bp: difference_bp(pf, theirs.amount_fen),
                on_mean,
                settled_count: if on_mean { mean(pc, theirs.count) } else { pc },
                settled_fen: if on_mean {
                    mean(pf, theirs.amount_fen)
                } else {
                    pf
                },
            }
        })
        .collect()
}

/// The platform's lines of a partner's month, by operator and service.
pub async fn platform_lines(
    store: &Store,
    partner_id: i64,
    month: Month,
) -> Result<Vec<PlatformLine>, BillingError> {
    let rows: Vec<(String, String, String, i64, i64)> = sqlx::query_as(
        "SELECT operator, service, kind, COUNT(CASE WHEN amount_fen > 0 THEN 1 END),
                CAST(COALESCE(SUM(amount_fen), 0) AS BIGINT)
         FROM charge_events WHERE partner_id = $1 AND month = $2
         GROUP BY operator, service, kind ORDER BY operator, service, kind",
    )
    .bind(partner_id)
    .bind(month.to_string())
    .fetch_all(store.pool())
    .await?;
    let mut lines: Vec<PlatformLine> = Vec::new();
    for (operator, service, kind, count, amount) in rows {
        match lines.last_mut() {
            Some(l) if l.operator == operator && l.service == service => {
                l.fee_type = format!("{}+{kind}", l.fee_type);
                l.count += count;
                l.amount_fen += amount;
            }
            _ => lines.push(PlatformLine {
                operator,
                service,
                fee_type: kind,
                count,
                amount_fen: amount,
            }),
        }
    }
    Ok(lines)
}

/// The upload that counts for a month: the latest.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    pub id: i64,
    pub lines: Vec<PartnerLine>,
    pub objection: Option<String>,
}

pub async fn latest_figures(
    store: &Store,
    partner_id: i64,
    month: Month,
) -> Result<Option<Figures>, BillingError> {
    let row: Option<(i64, String, Option<String>)> = sqlx::query_as(
        "SELECT id, lines, objection FROM partner_figures WHERE partner_id = $1 AND month = $2
         ORDER BY id DESC LIMIT 1",
    )
    .bind(partner_id)
    .bind(month.to_string())
    .fetch_optional(store.pool())
    .await?;
    match row {
        None => Ok(None),
        Some((id, lines, objection)) => Ok(Some(Figures {
            id,
            lines: serde_json::from_str(&lines).map_err(|e| {
                BillingError::conflict("corrupt-figures", format!("stored figures {id}: {e}"))
            })?,
            objection,
        })),
    }
}

/// Message-level differences of one line (R-4.2: find the cause).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessageDifferences {
    pub service: String,
    pub operator: String,
    /// Ids the partner counted that the platform did not charge on this line, with
    /// what the platform knows of each (`not found`, `failed`, `charged on …`).
    pub partner_only: Vec<(i64, String)>,
    /// Ids the platform charged on this line that the partner did not list.
    pub platform_only: Vec<i64>,
}

/// What the case records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaseDetail {
    pub threshold_bp: i64,
    pub objection: Option<String>,
    /// Every compared line, operator first: both figures and the outcome.
    pub lines: Vec<(String, serde_json::Value)>,
    pub message_differences: Vec<MessageDifferences>,
}

/// A discrepancy case.
#[derive(Debug, Clone, Serialize)]
pub struct Case {
    pub id: i64,
    pub month: String,
    pub figures_id: i64,
    pub status: String,
    pub detail: serde_json::Value,
    pub opened_at: i64,
    pub resolution: Option<String>,
    pub resolved_by: Option<String>,
    pub resolved_at: Option<i64>,
}

/// What an upload found.
#[derive(Debug, Clone, Serialize)]
pub struct UploadOutcome {
    pub figures_id: i64,
    pub month: Month,
    pub threshold_bp: i64,
    pub lines: Vec<(String, Line)>,
    pub case_id: Option<i64>,
}

/// Most lines and message ids one upload may carry.
const MAX_LINES: usize = 1000;
const MAX_IDS: usize = 200_000;

fn validate(input: &FiguresInput) -> Result<(), BillingError> {
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
        if l.service.trim().is_empty() || l.service.len() > 64 {
            return Err(BillingError::invalid(
                "lines",
                format!("line {}: service must be 1-64 characters", i + 1),
            ));
        }
        crate::billing::terms::valid_operator(&l.operator)?;
        if l.count < 0 || l.amount_fen < 0 {
            return Err(BillingError::invalid(
                "lines",
                format!("line {}: count and amount_fen cannot be negative", i + 1),
            ));
        }
        if !seen.insert((l.service.as_str(), l.operator.as_str())) {
            return Err(BillingError::invalid(
                "lines",
                format!(
                    "line {}: service `{}` on `{}` appears twice",
                    i + 1,
                    l.service,
                    l.operator
                ),
            ));
        }
        ids += l.message_ids.as_ref().map_or(0, Vec::len);
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

/// Store the partner's figures for a month, compare them with the platform's now,
/// and open a case when a line is beyond X% or the partner objects.
pub async fn upload(
    store: &Store,
    partner_id: i64,
    month: Month,
    input: FiguresInput,
) -> Result<UploadOutcome, BillingError> {
    validate(&input)?;
    let terms = terms_for(store, partner_id, month).await?.ok_or_else(|| {
        BillingError::conflict(
            "no-terms",
            format!("no agreement terms are in force for {month}"),
        )
    })?;
    // A line on an operator without terms for the month could never be settled.
    let with_terms: BTreeSet<String> =
        crate::billing::terms::operator_terms_for(store, partner_id, month)
            .await?
            .into_iter()
            .map(|t| t.operator)
            .collect();
    if let Some(l) = input
        .lines
        .iter()
        .find(|l| !with_terms.contains(&l.operator))
    {
        return Err(BillingError::invalid(
            "lines",
            format!(
                "operator `{}` has no terms with this partner for {month}",
                l.operator
            ),
        ));
    }
    let platform = platform_lines(store, partner_id, month).await?;
    let operators: BTreeSet<&str> = platform
        .iter()
        .map(|l| l.operator.as_str())
        .chain(input.lines.iter().map(|l| l.operator.as_str()))
        .collect();
    let objection = input.objection.is_some();
    let mut lines = Vec::new();
    for op in operators {
        let ours: Vec<PlatformLine> = platform
            .iter()
            .filter(|l| l.operator == op)
            .cloned()
            .collect();
        let theirs: Vec<PartnerLine> = input
            .lines
            .iter()
            .filter(|l| l.operator == op)
            .cloned()
            .collect();
        for line in compare(&ours, &theirs, terms.discrepancy_bp, objection) {
            lines.push((op.to_string(), line));
        }
    }
    let open_case = objection || lines.iter().any(|(_, l)| l.on_mean);
    let differences = if open_case {
        message_differences(store, partner_id, month, &input.lines).await?
    } else {
        Vec::new()
    };
    let now = now_ms();
    let mut tx = store.begin_write().await?;
    let stored = serde_json::to_string(&input.lines)
        .map_err(|e| BillingError::invalid("lines", e.to_string()))?;
    let (figures_id,): (i64,) = sqlx::query_as(
        "INSERT INTO partner_figures (partner_id, month, lines, objection, uploaded_at)
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(partner_id)
    .bind(month.to_string())
    .bind(&stored)
    .bind(&input.objection)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    let mut case_id = None;
    if open_case {
        let detail = CaseDetail {
            threshold_bp: terms.discrepancy_bp,
            objection: input.objection.clone(),
            lines: lines
                .iter()
                .map(|(op, l)| (op.clone(), serde_json::to_value(l).unwrap_or_default()))
                .collect(),
            message_differences: differences,
        };
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO discrepancy_cases (partner_id, month, figures_id, status, detail, opened_at)
             VALUES ($1, $2, $3, 'open', $4, $5) RETURNING id",
        )
        .bind(partner_id)
        .bind(month.to_string())
        .bind(figures_id)
        .bind(serde_json::to_string(&detail).unwrap_or_default())
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        case_id = Some(id);
    }
    tx.commit().await?;
    Ok(UploadOutcome {
        figures_id,
        month,
        threshold_bp: terms.discrepancy_bp,
        lines,
        case_id,
    })
}

/// For every line where the partner listed message ids: which of them the platform
/// did not charge on that line, and which the platform charged that they left out.
async fn message_differences(
    store: &Store,
    partner_id: i64,
    month: Month,
    lines: &[PartnerLine],
) -> Result<Vec<MessageDifferences>, BillingError> {
    let mut out = Vec::new();
    for line in lines {
        let Some(ids) = &line.message_ids else {
            continue;
        };
        let charged: Vec<(i64,)> = sqlx::query_as(
            "SELECT message_id FROM charge_events
             WHERE partner_id = $1 AND month = $2 AND operator = $3 AND service = $4
               AND kind = 'per-message' ORDER BY message_id",
        )
        .bind(partner_id)
        .bind(month.to_string())
        .bind(&line.operator)
        .bind(&line.service)
        .fetch_all(store.pool())
        .await?;
        let ours: BTreeSet<i64> = charged.into_iter().map(|(id,)| id).collect();
        let theirs: BTreeSet<i64> = ids.iter().copied().collect();
        let mut partner_only = Vec::new();
        for id in theirs.difference(&ours) {
            partner_only.push((*id, what_we_know(store, partner_id, *id).await?));
        }
        let platform_only: Vec<i64> = ours.difference(&theirs).copied().collect();
        if !partner_only.is_empty() || !platform_only.is_empty() {
            out.push(MessageDifferences {
                service: line.service.clone(),
                operator: line.operator.clone(),
                partner_only,
                platform_only,
            });
        }
    }
    Ok(out)
}

/// What the platform knows of a message id the partner counted (never another
/// partner's message: ).
async fn what_we_know(store: &Store, partner_id: i64, id: i64) -> Result<String, BillingError> {
    let row: Option<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT m.status, m.charge_plan, (SELECT e.month || ' ' || e.operator || ' ' || e.service
                                          FROM charge_events e WHERE e.message_id = m.id)
         FROM messages m WHERE m.id = $1 AND m.partner_id = $2",
    )
    .bind(id)
    .bind(partner_id)
    .fetch_optional(store.pool())
    .await?;
    Ok(match row {
        None => "no such message of this partner".into(),
        Some((_, _, Some(charged))) => format!("charged on another line: {charged}"),
        Some((status, plan, None)) if status == "delivered" => {
            format!("delivered, not charged (charge plan {plan})")
        }
        Some((status, _, None)) => format!("not delivered: {status}"),
    })
}

type CaseRow = (
    i64,
    String,
    i64,
    String,
    String,
    i64,
    Option<String>,
    Option<String>,
    Option<i64>,
);

fn case_from_row(r: CaseRow) -> Case {
    Case {
        id: r.0,
        month: r.1,
        figures_id: r.2,
        status: r.3,
        detail: serde_json::from_str(&r.4).unwrap_or_default(),
        opened_at: r.5,
        resolution: r.6,
        resolved_by: r.7,
        resolved_at: r.8,
    }
}

const CASE_COLUMNS: &str =
    "id, month, figures_id, status, detail, opened_at, resolution, resolved_by, resolved_at";

/// A partner's cases, newest first.
pub async fn cases(store: &Store, partner_id: i64) -> Result<Vec<Case>, BillingError> {
    let rows: Vec<CaseRow> = sqlx::query_as(&format!(
        "SELECT {CASE_COLUMNS} FROM discrepancy_cases WHERE partner_id = $1 ORDER BY id DESC"
    ))
    .bind(partner_id)
    .fetch_all(store.pool())
    .await?;
    Ok(rows.into_iter().map(case_from_row).collect())
}

/// One case; `partner_id` walls off other partners' cases.
pub async fn case(
    store: &Store,
    id: i64,
    partner_id: Option<i64>,
) -> Result<Option<(i64, Case)>, BillingError> {
    let row: Option<(i64,)> =
        sqlx::query_as("SELECT partner_id FROM discrepancy_cases WHERE id = $1")
            .bind(id)
            .fetch_optional(store.pool())
            .await?;
    let Some((owner,)) = row else {
        return Ok(None);
    };
    if partner_id.is_some_and(|p| p != owner) {
        return Ok(None);
    }
    let row: CaseRow = sqlx::query_as(&format!(
        "SELECT {CASE_COLUMNS} FROM discrepancy_cases WHERE id = $1"
    ))
    .bind(id)
    .fetch_one(store.pool())
    .await?;
    Ok(Some((owner, case_from_row(row))))
}

/// The case of a month's latest upload, if one was opened.
pub async fn case_of_figures(
    store: &Store,
    figures_id: i64,
) -> Result<Option<(i64, String)>, BillingError> {
    Ok(
        sqlx::query_as("SELECT id, status FROM discrepancy_cases WHERE figures_id = $1")
            .bind(figures_id)
            .fetch_optional(store.pool())
            .await?,
    )
}

/// Record how a case was resolved (once).
pub async fn resolve(
    store: &Store,
    id: i64,
    resolution: &str,
    actor: &str,
) -> Result<Case, BillingError> {
    if resolution.trim().is_empty() || resolution.chars().count() > 4000 {
        return Err(BillingError::invalid("resolution", "1-4000 characters"));
    }
    let done = sqlx::query(
        "UPDATE discrepancy_cases SET status = 'resolved', resolution = $2, resolved_by = $3, resolved_at = $4
         WHERE id = $1 AND status = 'open'",
    )
    .bind(id)
    .bind(resolution)
    .bind(actor)
    .bind(now_ms())
    .execute(store.pool())
    .await?;
    let found = case(store, id, None).await?;
    match (found, done.rows_affected()) {
        (None, _) => Err(BillingError::NotFound(format!("no discrepancy case {id}"))),
        (Some(_), 0) => Err(BillingError::conflict(
            "case-resolved",
            format!("case {id} is resolved already"),
        )),
        (Some((_, c)), _) => Ok(c),
    }
}
