//! Billing and settlement routes. The admin keeps the agreements,
//! terms, operator settings, calendars, bad-debt ratios, payments, breach notices and
//! terminations; a partner reads its own agreement, charges, statements (JSON, CSV,
//! HTML), uploads its own figures and reads its discrepancy cases. The admin reaches
//! a partner's side with `?partner=NAME`.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::{Admin, PartnerContext};
use super::extract::{Json, NoParams, PartnerParam, Path, Query};
use super::{ApiError, AppState, Routes};
use crate::billing::agreement::{self, AgreementInput, AgreementStatus};
use crate::billing::calendar::{self, DayKind, Month};
use crate::billing::terms::{
    self, AgreementTerms, DEFAULT_CALENDAR, OperatorBilling, OperatorTerms,
};
use crate::billing::{BillingError, charges};
use crate::partners;
use crate::settlement::cases::{self, DecisionInput};
use crate::settlement::issue;
use crate::settlement::obligations::{self, BreachInput, PaymentInput, TerminationInput};
use crate::settlement::reconcile::{self, FiguresInput};
use crate::settlement::render::{self, Format};
use crate::settlement::statement;

pub(super) fn router() -> Routes {
    Routes::new()
        .route("/v1/agreement", get(my_agreement))
        .route("/v1/charges", get(my_charges))
        .route("/v1/statements/{month}", get(my_statement))
        .route("/v1/statements/{month}/figures", post(upload_figures))
        .route("/v1/discrepancies", get(my_cases))
        .route("/v1/discrepancies/{id}", get(my_case))
        .route("/v1/billing/alerts", get(my_alerts))
        .route("/v1/admin/partners/{name}/agreement", put(set_agreement))
        .route(
            "/v1/admin/partners/{name}/agreement/status",
            post(set_status),
        )
        .route("/v1/admin/partners/{name}/terms", post(add_terms))
        .route(
            "/v1/admin/partners/{name}/operator-terms",
            post(add_operator_terms),
        )
        .route("/v1/admin/partners/{name}/payments", post(partner_payment))
        .route(
            "/v1/admin/partners/{name}/breach-notices",
            post(breach_notice),
        )
        .route(
            "/v1/admin/partners/{name}/breach-notices/{id}/remedy",
            post(remedy),
        )
        .route("/v1/admin/partners/{name}/termination", post(terminate))
        .route(
            "/v1/admin/operators/{operator}/billing",
            put(operator_billing),
        )
        .route(
            "/v1/admin/operators/{operator}/bad-debt/{month}",
            put(bad_debt).get(bad_debt_history),
        )
        .route(
            "/v1/admin/operators/{operator}/payments",
            post(operator_payment),
        )
        .route("/v1/admin/calendars/{calendar}", get(calendar_days))
        .route(
            "/v1/admin/calendars/{calendar}/days/{day}",
            put(set_day).delete(remove_day),
        )
        .route("/v1/admin/discrepancies", get(all_cases))
        .route("/v1/admin/discrepancies/{id}/decision", post(decide))
        .route("/v1/admin/discrepancies/{id}/resolution", post(resolve))
        .route(
            "/v1/admin/partners/{name}/statements/{month}/issue",
            post(issue_statement),
        )
        .route("/v1/admin/billing/alerts", get(all_alerts))
        .route("/v1/admin/billing/charge-pass", post(charge_pass))
}

impl From<BillingError> for ApiError {
    fn from(e: BillingError) -> Self {
        let message = e.to_string();
        match e {
            BillingError::Invalid { .. } => ApiError::bad_request("invalid-input", message),
            BillingError::NotFound(_) => ApiError::not_found(message),
            BillingError::Conflict { code, .. } => {
                ApiError::new(StatusCode::CONFLICT, code, message)
            }
            BillingError::Overflow(_) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "amount-out-of-range",
                message,
            ),
            BillingError::Store(e) => e.into(),
        }
    }
}

fn month(s: &str) -> Result<Month, ApiError> {
    s.parse::<Month>().map_err(|_| {
        ApiError::bad_request("invalid-month", format!("`{s}` is not a month (YYYY-MM)"))
    })
}

fn id(s: &str) -> Result<i64, ApiError> {
    s.parse::<i64>()
        .ok()
        .filter(|i| *i > 0)
        .ok_or_else(|| ApiError::bad_request("invalid-id", format!("`{s}` is not an id")))
}

async fn partner_id(state: &AppState, name: &str) -> Result<i64, ApiError> {
    Ok(partners::get(&state.store, name).await?.id)
}

// ---- the partner's side ----

async fn my_agreement(
    ctx: PartnerContext,
    State(state): State<AppState>,
    _: Query<PartnerParam>,
) -> Result<Json<Value>, ApiError> {
    let id = ctx.partner.id;
    let agreement = agreement::get(&state.store, id).await?;
    let terms = terms::all_terms(&state.store, id).await?;
    let notices = obligations::notices(&state.store, id).await?;
    Ok(Json(json!({
        "partner": ctx.partner.name,
        "agreement": agreement,
        "terms": terms,
        "breach_notices": notices,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MonthQuery {
    month: String,
    #[serde(rename = "partner")]
    _partner: Option<String>,
}

async fn my_charges(
    ctx: PartnerContext,
    State(state): State<AppState>,
    query: Query<MonthQuery>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query;
    let m = month(&q.month)?;
    let events = charges::list(&state.store, ctx.partner.id, m).await?;
    Ok(Json(json!({ "month": m, "charges": events })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatementQuery {
    format: Option<String>,
    #[serde(rename = "partner")]
    _partner: Option<String>,
}

/// `GET /v1/statements/{month}?format=json|csv|html`.
async fn my_statement(
    ctx: PartnerContext,
    State(state): State<AppState>,
    Path(m): Path<String>,
    query: Query<StatementQuery>,
) -> Result<Response, ApiError> {
    let Query(q) = query;
    let m = month(&m)?;
    let format = match q.format.as_deref() {
        None => Format::Json,
        Some(f) => Format::parse(f).ok_or_else(|| {
            ApiError::bad_request("invalid-format", format!("`{f}` is not json, csv or html"))
        })?,
    };
    let s = statement::generate(&state.store, ctx.partner.id, &ctx.partner.name, m).await?;
    let body = render::render(&s, format);
    let filename = format!("statement-{}-{m}.{}", ctx.partner.name, format.extension());
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type().to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"{filename}\""),
            ),
        ],
        body,
    )
        .into_response())
}

/// `POST /v1/statements/{month}/figures`: the partner's own figures.
async fn upload_figures(
    ctx: PartnerContext,
    State(state): State<AppState>,
    Path(m): Path<String>,
    body: Json<FiguresInput>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let m = month(&m)?;
    let Json(input) = body;
    let outcome = reconcile::upload(
        &state.store,
        state.relay.routes(),
        state.settlement,
        ctx.partner.id,
        m,
        input,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(json!(outcome))))
}

async fn my_cases(
    ctx: PartnerContext,
    State(state): State<AppState>,
    _: Query<PartnerParam>,
) -> Result<Json<Value>, ApiError> {
    let cases = cases::cases(&state.store, ctx.partner.id).await?;
    Ok(Json(json!({ "cases": cases })))
}

async fn my_case(
    ctx: PartnerContext,
    State(state): State<AppState>,
    Path(case): Path<String>,
    _: Query<PartnerParam>,
) -> Result<Json<Value>, ApiError> {
    let case = id(&case)?;
    // Another partner's case is "not found", never "forbidden": its existence is
    // not the caller's business.
    match cases::case(&state.store, case, Some(ctx.partner.id)).await? {
        Some((_, c)) => Ok(Json(json!(c))),
        None => Err(ApiError::not_found(format!("no discrepancy case {case}"))),
    }
}

async fn my_alerts(
    ctx: PartnerContext,
    State(state): State<AppState>,
    _: Query<PartnerParam>,
) -> Result<Json<Value>, ApiError> {
    let alerts = obligations::alerts(&state.store, Some(ctx.partner.id)).await?;
    Ok(Json(json!({ "alerts": alerts })))
}

// ---- the admin's side ----

async fn set_agreement(
    _: Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Json<AgreementInput>,
) -> Result<Json<Value>, ApiError> {
    let Json(input) = body;
    let pid = partner_id(&state, &name).await?;
    let a = agreement::set(&state.store, pid, &input).await?;
    Ok(Json(json!(a)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusInput {
    status: AgreementStatus,
}

async fn set_status(
    _: Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Json<StatusInput>,
) -> Result<Json<Value>, ApiError> {
    let Json(input) = body;
    let pid = partner_id(&state, &name).await?;
    Ok(Json(json!(
        agreement::set_status(&state.store, pid, input.status).await?
    )))
}

async fn add_terms(
    _: Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Json<AgreementTerms>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(t) = body;
    let pid = partner_id(&state, &name).await?;
    agreement::require(&state.store, pid).await?;
    terms::add_terms(&state.store, pid, &t).await?;
    Ok((StatusCode::CREATED, Json(json!(t))))
}

async fn add_operator_terms(
    _: Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Json<OperatorTerms>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(t) = body;
    let pid = partner_id(&state, &name).await?;
    agreement::require(&state.store, pid).await?;
    terms::add_operator_terms(&state.store, pid, &t).await?;
    Ok((StatusCode::CREATED, Json(json!(t))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OperatorBillingInput {
    imbalance_min_fen: i64,
    imbalance_max_fen: i64,
    calendar: Option<String>,
}

async fn operator_billing(
    _: Admin,
    State(state): State<AppState>,
    Path(operator): Path<String>,
    body: Json<OperatorBillingInput>,
) -> Result<Json<Value>, ApiError> {
    let Json(input) = body;
    let o = OperatorBilling {
        operator,
        imbalance_min_fen: input.imbalance_min_fen,
        imbalance_max_fen: input.imbalance_max_fen,
        calendar: input.calendar.unwrap_or_else(|| DEFAULT_CALENDAR.into()),
    };
    terms::set_operator_billing(&state.store, state.relay.routes(), &o).await?;
    Ok(Json(json!(o)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BadDebtInput {
    ratio_bp: i64,
    /// Required to change a ratio already reported.
    #[serde(default)]
    reason: Option<String>,
}

/// Report (or correct, with a reason) a month's bad-debt ratio; issued statements
/// of the month get adjustments instead of being rewritten.
async fn bad_debt(
    caller: Admin,
    State(state): State<AppState>,
    Path((operator, m)): Path<(String, String)>,
    body: Json<BadDebtInput>,
) -> Result<Json<Value>, ApiError> {
    let _ = caller;
    let m = month(&m)?;
    let Json(input) = body;
    let outcome = issue::report_bad_debt(
        &state.store,
        state.relay.routes(),
        &operator,
        m,
        input.ratio_bp,
        input.reason.as_deref(),
        "admin",
    )
    .await?;
    Ok(Json(json!(outcome)))
}

/// Every report of a month's bad-debt ratio, oldest first (the last is in force).
async fn bad_debt_history(
    _: Admin,
    State(state): State<AppState>,
    Path((operator, m)): Path<(String, String)>,
    _: Query<NoParams>,
) -> Result<Json<Value>, ApiError> {
    let m = month(&m)?;
    terms::require_operator(&state.store, state.relay.routes(), &operator).await?;
    let history = terms::bad_debt_history(&state.store, &operator, m).await?;
    Ok(Json(
        json!({ "operator": operator, "month": m, "reports": history }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OperatorPaymentInput {
    month: String,
    received_on: String,
}

async fn operator_payment(
    _: Admin,
    State(state): State<AppState>,
    Path(operator): Path<String>,
    body: Json<OperatorPaymentInput>,
) -> Result<Json<Value>, ApiError> {
    let Json(input) = body;
    let m = month(&input.month)?;
    obligations::record_operator_payment(
        &state.store,
        state.relay.routes(),
        &operator,
        m,
        &input.received_on,
    )
    .await?;
    Ok(Json(
        json!({ "operator": operator, "month": m, "received_on": input.received_on }),
    ))
}

async fn calendar_days(
    _: Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
    _: Query<NoParams>,
) -> Result<Json<Value>, ApiError> {
    let days = calendar::list_days(&state.store, &name).await?;
    Ok(Json(json!({ "calendar": name, "days": days })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DayInput {
    kind: DayKind,
    #[serde(default)]
    note: String,
}

async fn set_day(
    _: Admin,
    State(state): State<AppState>,
    Path((name, day)): Path<(String, String)>,
    body: Json<DayInput>,
) -> Result<Json<Value>, ApiError> {
    let Json(input) = body;
    calendar::set_day(&state.store, &name, &day, input.kind, &input.note).await?;
    Ok(Json(
        json!({ "calendar": name, "day": day, "kind": input.kind, "note": input.note }),
    ))
}

async fn remove_day(
    _: Admin,
    State(state): State<AppState>,
    Path((name, day)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    if calendar::remove_day(&state.store, &name, &day).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!(
            "{day} is not listed on calendar `{name}`"
        )))
    }
}

async fn partner_payment(
    _: Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Json<PaymentInput>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(input) = body;
    let pid = partner_id(&state, &name).await?;
    let id = obligations::record_partner_payment(&state.store, state.relay.routes(), pid, &input)
        .await?;
    Ok((StatusCode::CREATED, Json(json!({ "id": id }))))
}

async fn breach_notice(
    _: Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Json<BreachInput>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(input) = body;
    let pid = partner_id(&state, &name).await?;
    let n = obligations::issue_breach_notice(&state.store, pid, &input).await?;
    Ok((StatusCode::CREATED, Json(json!(n))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RemedyInput {
    remedied_on: String,
}

async fn remedy(
    _: Admin,
    State(state): State<AppState>,
    Path((name, notice)): Path<(String, String)>,
    body: Json<RemedyInput>,
) -> Result<Json<Value>, ApiError> {
    let notice = id(&notice)?;
    let Json(input) = body;
    let pid = partner_id(&state, &name).await?;
    Ok(Json(json!(
        obligations::remedy(&state.store, pid, notice, &input.remedied_on).await?
    )))
}

async fn terminate(
    _: Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Json<TerminationInput>,
) -> Result<Json<Value>, ApiError> {
    let Json(input) = body;
    let pid = partner_id(&state, &name).await?;
    Ok(Json(json!(
        obligations::terminate(&state.store, pid, &input).await?
    )))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolutionInput {
    resolution: String,
}

async fn resolve(
    caller: Admin,
    State(state): State<AppState>,
    Path(case): Path<String>,
    body: Json<ResolutionInput>,
) -> Result<Json<Value>, ApiError> {
    let _ = caller;
    let case = id(&case)?;
    let Json(input) = body;
    Ok(Json(json!(
        cases::resolve(&state.store, case, &input.resolution, "admin").await?
    )))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseQuery {
    partner: Option<String>,
    status: Option<String>,
}

/// Every discrepancy case (`?partner=`, `?status=held|open|resolved`): the held
/// ones wait for the admin's decision.
async fn all_cases(
    _: Admin,
    State(state): State<AppState>,
    Query(q): Query<CaseQuery>,
) -> Result<Json<Value>, ApiError> {
    let pid = match q.partner {
        Some(name) => Some(partner_id(&state, &name).await?),
        None => None,
    };
    if let Some(s) = q.status.as_deref()
        && !matches!(s, "held" | "open" | "resolved")
    {
        return Err(ApiError::bad_request(
            "invalid-query",
            format!("status `{s}` is not held, open or resolved"),
        ));
    }
    let cases = cases::all_cases(&state.store, pid, q.status.as_deref()).await?;
    Ok(Json(json!({ "cases": cases })))
}

/// Decide the held lines of a case: the platform's figure or the mean.
async fn decide(
    _: Admin,
    State(state): State<AppState>,
    Path(case): Path<String>,
    Json(input): Json<DecisionInput>,
) -> Result<Json<Value>, ApiError> {
    let case = id(&case)?;
    Ok(Json(json!(
        cases::decide(&state.store, case, &input, "admin").await?
    )))
}

/// Issue a partner's statement for a closed month: its figures are frozen.
async fn issue_statement(
    _: Admin,
    State(state): State<AppState>,
    Path((name, m)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let m = month(&m)?;
    let partner = partners::get(&state.store, &name).await?;
    let s = issue::issue(&state.store, partner.id, &partner.name, m, "admin").await?;
    Ok((StatusCode::CREATED, Json(json!(s))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertQuery {
    partner: Option<String>,
}

async fn all_alerts(
    _: Admin,
    State(state): State<AppState>,
    query: Query<AlertQuery>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query;
    let pid = match q.partner {
        Some(name) => Some(partner_id(&state, &name).await?),
        None => None,
    };
    Ok(Json(
        json!({ "alerts": obligations::alerts(&state.store, pid).await? }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PassQuery {
    scan: Option<String>,
}

/// Run a charge pass now (the background task runs one every few seconds);
/// `?scan=full` looks at every delivered MT, not only the recent ones.
async fn charge_pass(
    _: Admin,
    State(state): State<AppState>,
    query: Query<PassQuery>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query;
    let scan = match q.scan.as_deref() {
        None | Some("incremental") => charges::Scan::Incremental,
        Some("full") => charges::Scan::Full,
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid-scan",
                format!("`{other}` is not `full` or `incremental`"),
            ));
        }
    };
    let report = charges::charge(
        &state.store,
        state.relay.routes(),
        crate::store::now_ms(),
        scan,
    )
    .await?;
    Ok(Json(json!(report)))
}
