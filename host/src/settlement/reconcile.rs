//! Reconciliation: the platform's figures are the basis; the
//! partner's own monthly figures are the second check. Where a line (service ×
//! operator) differs by more than X% in count or amount — or the partner objects —
//! that line settles on the mean of both, and a discrepancy case records both
//! figures and the message-level differences the platform can show, until someone
//! records how it was resolved.
//!
//! Clause 3.2 (the mean) is read with 3.1 (the platform's statistics are the
//! basis): the mean is for two honest counts that differ, not for a claim. A line
//! where the partner's count or amount is above the platform's by more than the
//! hard bound (`[settlement] hold_above_bp`, 50 % by default, stored with the
//! upload), or where the platform has nothing, is **held**: it settles on the
//! platform's figure and the case waits for the admin's decision (`platform` or
//! `mean`, per line, with a reason), and the month's statement cannot be issued
//! until then. Otherwise a partner claiming 100,000,000 fen on a line where the
//! platform counted nothing would be paid half of it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::billing::BillingError;
use crate::billing::calendar::Month;
use crate::billing::money::{Overflow, add, difference_bp, differs_beyond, mean};
use crate::billing::terms::terms_for;
use crate::relay::Routes;
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FiguresInput {
    pub lines: Vec<PartnerLine>,
    /// An objection opens a case and settles every differing line on the mean
    /// (R-4.2 "or either side objects").
    #[serde(default)]
    pub objection: Option<String>,
}

/// The admin's decision on a held line.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum SettleOn {
    /// The platform's figure stands (clause 3.1).
    Platform,
    /// The mean of both after all (clause 3.2).
    Mean,
}

impl SettleOn {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Platform => "platform",
            Self::Mean => "mean",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "platform" => Some(Self::Platform),
            "mean" => Some(Self::Mean),
            _ => None,
        }
    }
}

/// The rules a comparison applies, as stored with the upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// X% of, in basis points.
    pub threshold_bp: i64,
    /// The hard bound above which a line is held (`None`: uploads from before it).
    pub hold_bp: Option<i64>,
    pub objection: bool,
}

/// How a statement line was settled, with both sides' figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// More than X% apart (count or amount), or differing under an objection, and
    /// not held (or held and decided `mean`).
    pub on_mean: bool,
    /// Beyond the hard bound or where the platform has nothing: held for the
    /// admin's decision; the platform's figure stands until it is made.
    #[serde(default)]
    pub held: bool,
    /// The admin's decision on a held line.
    #[serde(default)]
    pub decision: Option<SettleOn>,
    pub settled_count: i64,
    pub settled_fen: i64,
}

/// `other` is above `base` by more than `bound_bp` of it (any amount above 0).
fn above_bound(base: i64, other: i64, bound_bp: i64) -> bool {
    other > base && differs_beyond(base, other, bound_bp)
}

/// Compare one operator's lines; `decisions` are the admin's on held lines, by
/// service. Lines come out sorted by service.
///
/// # Errors
/// [`Overflow`] if a mean would not fit in `i64` fen.
pub fn compare(
    platform: &[PlatformLine],
    partner: &[PartnerLine],
    rules: Rules,
    decisions: &BTreeMap<String, SettleOn>,
) -> Result<Vec<Line>, Overflow> {
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
                return Ok(Line {
                    service: service.to_string(),
                    fee_type,
                    platform_count: pc,
                    platform_fen: pf,
                    partner_count: None,
                    partner_fen: None,
                    count_difference_bp: None,
                    amount_difference_bp: None,
                    on_mean: false,
                    held: false,
                    decision: None,
                    settled_count: pc,
                    settled_fen: pf,
                });
            };
            let (tc, tf) = (theirs.count, theirs.amount_fen);
            let held = rules
                .hold_bp
                .is_some_and(|h| above_bound(pc, tc, h) || above_bound(pf, tf, h));
            let decision = if held {
                decisions.get(service).copied()
            } else {
                None
            };
            let beyond = differs_beyond(pc, tc, rules.threshold_bp)
                || differs_beyond(pf, tf, rules.threshold_bp);
            let differs = pc != tc || pf != tf;
            let on_mean = if held {
                decision == Some(SettleOn::Mean)
            } else {
                beyond || (rules.objection && differs)
            };
            let (settled_count, settled_fen) = if on_mean {
                (
                    mean("settled count", pc, tc)?,
                    mean("settled amount", pf, tf)?,
                )
            } else {
                (pc, pf)
            };
            Ok(Line {
                service: service.to_string(),
                fee_type,
                platform_count: pc,
                platform_fen: pf,
                partner_count: Some(tc),
                partner_fen: Some(tf),
                count_difference_bp: difference_bp(pc, tc),
                amount_difference_bp: difference_bp(pf, tf),
                on_mean,
                held,
                decision,
                settled_count,
                settled_fen,
            })
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
                l.count = add("platform count", l.count, count)?;
                l.amount_fen = add("platform amount", l.amount_fen, amount)?;
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
    /// The hard bound in force at upload (`None`: uploaded before there was one).
    pub hold_bp: Option<i64>,
}

pub async fn latest_figures(
    store: &Store,
    partner_id: i64,
    month: Month,
) -> Result<Option<Figures>, BillingError> {
    let row: Option<(i64, String, Option<String>, Option<i64>)> = sqlx::query_as(
        "SELECT id, lines, objection, hold_bp FROM partner_figures WHERE partner_id = $1 AND month = $2
         ORDER BY id DESC LIMIT 1",
    )
    .bind(partner_id)
    .bind(month.to_string())
    .fetch_optional(store.pool())
    .await?;
    match row {
        None => Ok(None),
        Some((id, lines, objection, hold_bp)) => Ok(Some(Figures {
            id,
            lines: serde_json::from_str(&lines).map_err(|e| {
                BillingError::conflict("corrupt-figures", format!("stored figures {id}: {e}"))
            })?,
            objection,
            hold_bp,
        })),
    }
}

/// A message the partner counted that the platform did not charge on the line,
/// with what the platform knows of it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(from = "PartnerOnlyRepr")]
pub struct PartnerOnly {
    pub message_id: i64,
    /// `no such message of this partner`, `not delivered: failed`, `charged on …`.
    pub platform_knows: String,
}

/// How a [`PartnerOnly`] is read: named, or the `[id, text]` pair stored before
/// issue 14.
#[derive(Deserialize)]
#[serde(untagged)]
enum PartnerOnlyRepr {
    Named {
        message_id: i64,
        platform_knows: String,
    },
    Pair(i64, String),
}

impl From<PartnerOnlyRepr> for PartnerOnly {
    fn from(r: PartnerOnlyRepr) -> Self {
        match r {
            PartnerOnlyRepr::Named {
                message_id,
                platform_knows,
            }
            | PartnerOnlyRepr::Pair(message_id, platform_knows) => Self {
                message_id,
                platform_knows,
            },
        }
    }
}

/// Message-level differences of one line (R-4.2: find the cause).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessageDifferences {
    pub service: String,
    pub operator: String,
    /// Ids the partner counted that the platform did not charge on this line, with
    /// what the platform knows of each (`not found`, `failed`, `charged on …`).
    pub partner_only: Vec<PartnerOnly>,
    /// Ids the platform charged on this line that the partner did not list.
    pub platform_only: Vec<i64>,
}

/// What the case records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaseDetail {
    pub threshold_bp: i64,
    /// The hard bound of the upload (held lines are above it).
    #[serde(default)]
    pub hold_bp: Option<i64>,
    pub objection: Option<String>,
    /// Every compared line: its operator, both figures and the outcome.
    pub lines: Vec<CaseLine>,
    pub message_differences: Vec<MessageDifferences>,
}

/// One compared line of a case as stored: `operator` beside the [`Line`]'s fields.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(from = "CaseLineRepr")]
pub struct CaseLine {
    pub operator: String,
    #[serde(flatten)]
    pub line: serde_json::Map<String, serde_json::Value>,
}

/// How a [`CaseLine`] is read: named, or the `[operator, {…}]` pair stored before
/// issue 14.
#[derive(Deserialize)]
#[serde(untagged)]
enum CaseLineRepr {
    Pair(String, serde_json::Map<String, serde_json::Value>),
    Named {
        operator: String,
        #[serde(flatten)]
        line: serde_json::Map<String, serde_json::Value>,
    },
}

impl From<CaseLineRepr> for CaseLine {
    fn from(r: CaseLineRepr) -> Self {
        match r {
            CaseLineRepr::Pair(operator, line) | CaseLineRepr::Named { operator, line } => {
                Self { operator, line }
            }
        }
    }
}

/// One compared line of an upload: `operator` beside the [`Line`]'s fields.
#[derive(Debug, Clone, Serialize)]
pub struct OperatorLine {
    pub operator: String,
    #[serde(flatten)]
    pub line: Line,
}

/// What an upload found.
#[derive(Debug, Clone, Serialize)]
pub struct UploadOutcome {
    pub figures_id: i64,
    pub month: Month,
    pub threshold_bp: i64,
    pub hold_bp: i64,
    pub lines: Vec<OperatorLine>,
    pub case_id: Option<i64>,
}

/// Store the partner's figures for a month, compare them with the platform's now,
/// and open a case when a line is beyond X%, held, or the partner objects.
///
/// # Errors
/// What [`super::figures::admit`] refuses (400, `month-open`); `no-terms` (409);
/// `statement-issued` (409) once the month's statement is issued.
pub async fn upload(
    store: &Store,
    routes: &Routes,
    settings: crate::settlement::SettlementConfig,
    partner_id: i64,
    month: Month,
    mut input: FiguresInput,
) -> Result<UploadOutcome, BillingError> {
    super::figures::admit(store, routes, partner_id, month, &mut input, now_ms()).await?;
    if super::issue::issued(store, partner_id, month)
        .await?
        .is_some()
    {
        return Err(BillingError::conflict(
            "statement-issued",
            format!(
                "the statement for {month} is issued; raise a difference with the platform as an objection to the adjustment"
            ),
        ));
    }
    let hold_bp = settings.hold_above_bp;
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
    let rules = Rules {
        threshold_bp: terms.discrepancy_bp,
        hold_bp: Some(hold_bp),
        objection: input.objection.is_some(),
    };
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
        for line in compare(&ours, &theirs, rules, &BTreeMap::new())? {
            lines.push(OperatorLine {
                operator: op.to_string(),
                line,
            });
        }
    }
    let any_held = lines.iter().any(|l| l.line.held);
    let open_case = rules.objection || any_held || lines.iter().any(|l| l.line.on_mean);
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
        "INSERT INTO partner_figures (partner_id, month, lines, objection, uploaded_at, hold_bp)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(partner_id)
    .bind(month.to_string())
    .bind(&stored)
    .bind(&input.objection)
    .bind(now)
    .bind(hold_bp)
    .fetch_one(&mut *tx)
    .await?;
    let mut case_id = None;
    if open_case {
        let detail = CaseDetail {
            threshold_bp: terms.discrepancy_bp,
            hold_bp: Some(hold_bp),
            objection: input.objection.clone(),
            lines: lines
                .iter()
                .map(|l| CaseLine {
                    operator: l.operator.clone(),
                    line: match serde_json::to_value(&l.line) {
                        Ok(serde_json::Value::Object(map)) => map,
                        _ => serde_json::Map::new(),
                    },
                })
                .collect(),
            message_differences: differences,
        };
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO discrepancy_cases (partner_id, month, figures_id, status, detail, opened_at)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(partner_id)
        .bind(month.to_string())
        .bind(figures_id)
        .bind(if any_held { "held" } else { "open" })
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
        hold_bp,
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
            partner_only.push(PartnerOnly {
                message_id: *id,
                platform_knows: what_we_know(store, partner_id, *id).await?,
            });
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
