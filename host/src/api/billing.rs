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
use utoipa::{IntoParams, ToSchema};

use super::auth::{Admin, PartnerContext};
use super::extract::{Json, PartnerParam, Path, Query};
use super::page::{Order, Page, PageQuery, PartnerPageQuery};
use super::{ApiError, AppState, Routes};
use crate::billing::agreement::{self, AgreementInput, AgreementStatus};
use crate::billing::calendar::{self, DayKind, Month};
use crate::billing::charges::ChargeEvent;
use crate::billing::terms::{
    self, AgreementTerms, DEFAULT_CALENDAR, OperatorBilling, OperatorTerms,
};
use crate::billing::{BillingError, charges};
use crate::partners;
use crate::settlement::cases::{self, Case, DecisionInput};
use crate::settlement::issue;
use crate::settlement::obligations::Alert;
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

#[utoipa::path(
    get,
    path = "/v1/agreement",
    tag = "billing",
    params(PartnerParam),
    responses(
        (status = 200, description = "The agreement, its terms by month and breach notices", body = serde_json::Value),
        (status = 400, description = "`partner-required`"),
    ),
)]
pub(super) async fn my_agreement(
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

/// `?month=YYYY-MM&partner=&limit=&after=`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ChargeQuery {
    /// The billing month, `YYYY-MM`.
    month: String,
    /// The admin names the partner.
    #[serde(rename = "partner")]
    _partner: Option<String>,
    /// Items per page, 1-500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// The `next` cursor of the previous page.
    after: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/charges",
    tag = "billing",
    params(ChargeQuery),
    responses(
        (status = 200, description = "A page of charge events of the month, in order", body = Page<serde_json::Value>),
        (status = 400, description = "`invalid-month`, `partner-required`"),
    ),
)]
pub(super) async fn my_charges(
    ctx: PartnerContext,
    State(state): State<AppState>,
    query: Query<ChargeQuery>,
) -> Result<Json<Page<ChargeEvent>>, ApiError> {
    let Query(q) = query;
    let m = month(&q.month)?;
    let page = PageQuery::new(q.limit, q.after);
    let after = page.after::<i64>()?.unwrap_or(0);
    let events = charges::page(&state.store, ctx.partner.id, m, after, page.fetch()?).await?;
    Ok(Json(Page::from_rows(events, &page, |e| e.id)?))
}

/// `?format=json|csv|html&partner=`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct StatementQuery {
    /// `json` (default), `csv` or `html`.
    format: Option<String>,
    /// The admin names the partner.
    #[serde(rename = "partner")]
    _partner: Option<String>,
}

/// `GET /v1/statements/{month}?format=json|csv|html`.
#[utoipa::path(
    get,
    path = "/v1/statements/{month}",
    tag = "billing",
    params(("month" = String, Path, description = "`YYYY-MM`"), StatementQuery),
    responses(
        (status = 200, description = "The statement (JSON, CSV or HTML by `format`)", content(
            (serde_json::Value = "application/json"),
            (String = "text/csv"),
            (String = "text/html"),
        )),
        (status = 400, description = "`invalid-month`, `invalid-format`, `partner-required`"),
        (status = 409, description = "`no-terms`, `month-open`"),
    ),
)]
pub(super) async fn my_statement(
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
#[utoipa::path(
    post,
    path = "/v1/statements/{month}/figures",
    tag = "billing",
    params(("month" = String, Path, description = "`YYYY-MM`"), ("partner" = Option<String>, Query, description = "The admin names the partner")),
    request_body = FiguresInput,
    responses(
        (status = 201, description = "What the comparison found", body = serde_json::Value),
        (status = 400, description = "`invalid-month`, `invalid-input`, `partner-required`"),
        (status = 409, description = "`no-terms`, `month-open`, `statement-issued`"),
        (status = 422, description = "`amount-out-of-range`"),
    ),
)]
pub(super) async fn upload_figures(
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

#[utoipa::path(
    get,
    path = "/v1/discrepancies",
    tag = "billing",
    params(PartnerPageQuery),
    responses(
        (status = 200, description = "A page of discrepancy cases, newest first", body = Page<serde_json::Value>),
        (status = 400, description = "`partner-required`"),
    ),
)]
pub(super) async fn my_cases(
    ctx: PartnerContext,
    State(state): State<AppState>,
    Query(query): Query<PartnerPageQuery>,
) -> Result<Json<Page<Case>>, ApiError> {
    let cases = cases::cases(&state.store, ctx.partner.id).await?;
    Ok(Json(Page::from_sorted(
        cases,
        &query.page(),
        Order::Descending,
        |c| c.id,
    )?))
}

#[utoipa::path(
    get,
    path = "/v1/discrepancies/{id}",
    tag = "billing",
    params(("id" = String, Path, description = "The id"), PartnerParam),
    responses(
        (status = 200, description = "The case", body = serde_json::Value),
        (status = 400, description = "`invalid-id`, `partner-required`"),
    ),
)]
pub(super) async fn my_case(
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

#[utoipa::path(
    get,
    path = "/v1/billing/alerts",
    tag = "billing",
    params(PartnerPageQuery),
    responses(
        (status = 200, description = "A page of billing alerts, newest first", body = Page<serde_json::Value>),
        (status = 400, description = "`partner-required`"),
    ),
)]
pub(super) async fn my_alerts(
    ctx: PartnerContext,
    State(state): State<AppState>,
    Query(query): Query<PartnerPageQuery>,
) -> Result<Json<Page<Alert>>, ApiError> {
    let alerts = obligations::alerts(&state.store, Some(ctx.partner.id)).await?;
    Ok(Json(Page::from_sorted(
        alerts,
        &query.page(),
        Order::Descending,
        |a| a.id,
    )?))
}

// ---- the admin's side ----

#[utoipa::path(
    put,
    path = "/v1/admin/partners/{name}/agreement",
    tag = "billing",
    params(("name" = String, Path, description = "The partner's login name")),
    request_body = AgreementInput,
    responses(
        (status = 200, description = "The agreement", body = serde_json::Value),
        (status = 400, description = "`invalid-input`"),
        (status = 409, description = "the agreement's state refuses it"),
    ),
)]
pub(super) async fn set_agreement(
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

/// The agreement's new status.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"status": "suspended"}))]
pub(super) struct StatusInput {
    status: AgreementStatus,
}

#[utoipa::path(
    post,
    path = "/v1/admin/partners/{name}/agreement/status",
    tag = "billing",
    params(("name" = String, Path, description = "The partner's login name")),
    request_body = StatusInput,
    responses(
        (status = 200, description = "The agreement", body = serde_json::Value),
        (status = 409, description = "`no-agreement` and state conflicts"),
    ),
)]
pub(super) async fn set_status(
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

#[utoipa::path(
    post,
    path = "/v1/admin/partners/{name}/terms",
    tag = "billing",
    params(("name" = String, Path, description = "The partner's login name")),
    request_body = AgreementTerms,
    responses(
        (status = 201, description = "The terms as stored", body = serde_json::Value),
        (status = 400, description = "`invalid-input`"),
        (status = 409, description = "`no-agreement`, terms of an issued month"),
    ),
)]
pub(super) async fn add_terms(
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

#[utoipa::path(
    post,
    path = "/v1/admin/partners/{name}/operator-terms",
    tag = "billing",
    params(("name" = String, Path, description = "The partner's login name")),
    request_body = OperatorTerms,
    responses(
        (status = 201, description = "The terms as stored", body = serde_json::Value),
        (status = 400, description = "`invalid-input`"),
        (status = 409, description = "`no-agreement`"),
    ),
)]
pub(super) async fn add_operator_terms(
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

/// The operator's imbalance fee range and working calendar.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"imbalance_min_fen": 1, "imbalance_max_fen": 5, "calendar": "cn"}))]
pub(super) struct OperatorBillingInput {
    imbalance_min_fen: i64,
    imbalance_max_fen: i64,
    calendar: Option<String>,
}

#[utoipa::path(
    put,
    path = "/v1/admin/operators/{operator}/billing",
    tag = "billing",
    params(("operator" = String, Path, description = "An operator of `[relay]` (e.g. `mobile`)")),
    request_body = OperatorBillingInput,
    responses(
        (status = 200, description = "The operator's billing settings", body = serde_json::Value),
        (status = 400, description = "`invalid-input`"),
    ),
)]
pub(super) async fn operator_billing(
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

/// A month's bad-debt ratio in basis points.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"ratio_bp": 250}))]
pub(super) struct BadDebtInput {
    ratio_bp: i64,
    /// Required to change a ratio already reported.
    #[serde(default)]
    reason: Option<String>,
}

/// Report (or correct, with a reason) a month's bad-debt ratio; issued statements
/// of the month get adjustments instead of being rewritten.
#[utoipa::path(
    put,
    path = "/v1/admin/operators/{operator}/bad-debt/{month}",
    tag = "billing",
    params(("operator" = String, Path, description = "An operator of `[relay]` (e.g. `mobile`)"), ("month" = String, Path, description = "`YYYY-MM`")),
    request_body = BadDebtInput,
    responses(
        (status = 200, description = "The report and the adjustments it opened", body = serde_json::Value),
        (status = 400, description = "`invalid-month`, `invalid-input`"),
        (status = 409, description = "a change without a reason"),
        (status = 422, description = "`amount-out-of-range`"),
    ),
)]
pub(super) async fn bad_debt(
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
#[utoipa::path(
    get,
    path = "/v1/admin/operators/{operator}/bad-debt/{month}",
    tag = "billing",
    params(("operator" = String, Path, description = "An operator of `[relay]` (e.g. `mobile`)"), ("month" = String, Path, description = "`YYYY-MM`"), PageQuery),
    responses(
        (status = 200, description = "A page of reports, oldest first (the last is in force)", body = Page<serde_json::Value>),
        (status = 400, description = "`invalid-month`"),
    ),
)]
pub(super) async fn bad_debt_history(
    _: Admin,
    State(state): State<AppState>,
    Path((operator, m)): Path<(String, String)>,
    Query(page): Query<PageQuery>,
) -> Result<Json<Page<terms::BadDebtReport>>, ApiError> {
    let m = month(&m)?;
    page.check()?;
    terms::require_operator(&state.store, state.relay.routes(), &operator).await?;
    let history = terms::bad_debt_history(&state.store, &operator, m).await?;
    Ok(Json(Page::from_sorted(
        history,
        &page,
        Order::Ascending,
        |r| r.id,
    )?))
}

/// The operator's settlement money for a month arrived.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"month": "2026-08", "received_on": "2026-10-20"}))]
pub(super) struct OperatorPaymentInput {
    month: String,
    received_on: String,
}

#[utoipa::path(
    post,
    path = "/v1/admin/operators/{operator}/payments",
    tag = "billing",
    params(("operator" = String, Path, description = "An operator of `[relay]` (e.g. `mobile`)")),
    request_body = OperatorPaymentInput,
    responses(
        (status = 200, description = "Recorded", body = serde_json::Value),
        (status = 400, description = "`invalid-month`, `invalid-input`"),
        (status = 409, description = "state conflicts"),
    ),
)]
pub(super) async fn operator_payment(
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

#[utoipa::path(
    get,
    path = "/v1/admin/calendars/{calendar}",
    tag = "billing",
    params(("calendar" = String, Path, description = "A calendar name (e.g. `cn`)"), PageQuery),
    responses(
        (status = 200, description = "A page of listed days, by date", body = Page<serde_json::Value>),
        (status = 400, description = "`invalid-input`"),
    ),
)]
pub(super) async fn calendar_days(
    _: Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(page): Query<PageQuery>,
) -> Result<Json<Page<calendar::CalendarDay>>, ApiError> {
    page.check()?;
    let days = calendar::list_days(&state.store, &name).await?;
    Ok(Json(Page::from_sorted(
        days,
        &page,
        Order::Ascending,
        |d| d.day.clone(),
    )?))
}

/// A holiday or a make-up working day.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"kind": "holiday", "note": "国庆节 National Day"}))]
pub(super) struct DayInput {
    kind: DayKind,
    #[serde(default)]
    note: String,
}

#[utoipa::path(
    put,
    path = "/v1/admin/calendars/{calendar}/days/{day}",
    tag = "billing",
    params(("calendar" = String, Path, description = "A calendar name (e.g. `cn`)"), ("day" = String, Path, description = "`YYYY-MM-DD`")),
    request_body = DayInput,
    responses(
        (status = 200, description = "The day as listed", body = serde_json::Value),
        (status = 400, description = "`invalid-input`"),
    ),
)]
pub(super) async fn set_day(
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

#[utoipa::path(
    delete,
    path = "/v1/admin/calendars/{calendar}/days/{day}",
    tag = "billing",
    params(("calendar" = String, Path, description = "A calendar name (e.g. `cn`)"), ("day" = String, Path, description = "`YYYY-MM-DD`")),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "`invalid-input`"),
    ),
)]
pub(super) async fn remove_day(
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

#[utoipa::path(
    post,
    path = "/v1/admin/partners/{name}/payments",
    tag = "billing",
    params(("name" = String, Path, description = "The partner's login name")),
    request_body = PaymentInput,
    responses(
        (status = 201, description = "Recorded", body = serde_json::Value),
        (status = 400, description = "`invalid-input`, `invalid-month`"),
        (status = 409, description = "state conflicts (e.g. overpaid)"),
    ),
)]
pub(super) async fn partner_payment(
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

#[utoipa::path(
    post,
    path = "/v1/admin/partners/{name}/breach-notices",
    tag = "billing",
    params(("name" = String, Path, description = "The partner's login name")),
    request_body = BreachInput,
    responses(
        (status = 201, description = "The notice with its remedy deadline", body = serde_json::Value),
        (status = 400, description = "`invalid-input`"),
        (status = 409, description = "state conflicts"),
    ),
)]
pub(super) async fn breach_notice(
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

/// The day the breach was remedied.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"remedied_on": "2026-10-05"}))]
pub(super) struct RemedyInput {
    remedied_on: String,
}

#[utoipa::path(
    post,
    path = "/v1/admin/partners/{name}/breach-notices/{id}/remedy",
    tag = "billing",
    params(("name" = String, Path, description = "The partner's login name"), ("id" = String, Path, description = "The id")),
    request_body = RemedyInput,
    responses(
        (status = 200, description = "The notice, remedied", body = serde_json::Value),
        (status = 400, description = "`invalid-id`, `invalid-input`"),
        (status = 409, description = "state conflicts"),
    ),
)]
pub(super) async fn remedy(
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

#[utoipa::path(
    post,
    path = "/v1/admin/partners/{name}/termination",
    tag = "billing",
    params(("name" = String, Path, description = "The partner's login name")),
    request_body = TerminationInput,
    responses(
        (status = 200, description = "The agreement, terminating", body = serde_json::Value),
        (status = 400, description = "`invalid-input`"),
        (status = 409, description = "state conflicts"),
    ),
)]
pub(super) async fn terminate(
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

/// How the case was resolved.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"resolution": "partner agreed to the platform's figures"}))]
pub(super) struct ResolutionInput {
    resolution: String,
}

#[utoipa::path(
    post,
    path = "/v1/admin/discrepancies/{id}/resolution",
    tag = "billing",
    params(("id" = String, Path, description = "The id")),
    request_body = ResolutionInput,
    responses(
        (status = 200, description = "The case, resolved", body = serde_json::Value),
        (status = 400, description = "`invalid-id`, `invalid-input`"),
        (status = 409, description = "resolved already, or lines still held"),
    ),
)]
pub(super) async fn resolve(
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

/// `?partner=&status=held|open|resolved&limit=&after=`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct CaseQuery {
    /// One partner's cases.
    partner: Option<String>,
    /// `held`, `open` or `resolved`.
    status: Option<String>,
    /// Items per page, 1-500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// The `next` cursor of the previous page.
    after: Option<String>,
}

/// Every discrepancy case (`?partner=`, `?status=held|open|resolved`): the held
/// ones wait for the admin's decision.
#[utoipa::path(
    get,
    path = "/v1/admin/discrepancies",
    tag = "billing",
    params(CaseQuery),
    responses(
        (status = 200, description = "A page of cases, newest first", body = Page<serde_json::Value>),
        (status = 400, description = "`invalid-query` (status)"),
    ),
)]
pub(super) async fn all_cases(
    _: Admin,
    State(state): State<AppState>,
    Query(q): Query<CaseQuery>,
) -> Result<Json<Page<Case>>, ApiError> {
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
    let page = PageQuery::new(q.limit, q.after.clone());
    page.check()?;
    let cases = cases::all_cases(&state.store, pid, q.status.as_deref()).await?;
    Ok(Json(Page::from_sorted(
        cases,
        &page,
        Order::Descending,
        |c| c.id,
    )?))
}

/// Decide the held lines of a case: the platform's figure or the mean.
#[utoipa::path(
    post,
    path = "/v1/admin/discrepancies/{id}/decision",
    tag = "billing",
    params(("id" = String, Path, description = "The id")),
    request_body = DecisionInput,
    responses(
        (status = 200, description = "The case after the decision", body = serde_json::Value),
        (status = 400, description = "`invalid-id`, `invalid-input`"),
        (status = 409, description = "nothing held, or decided already"),
    ),
)]
pub(super) async fn decide(
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
#[utoipa::path(
    post,
    path = "/v1/admin/partners/{name}/statements/{month}/issue",
    tag = "billing",
    params(("name" = String, Path, description = "The partner's login name"), ("month" = String, Path, description = "`YYYY-MM`")),
    responses(
        (status = 201, description = "The issued statement", body = serde_json::Value),
        (status = 400, description = "`invalid-month`"),
        (status = 409, description = "`month-open`, `statement-issued`, `no-terms`"),
        (status = 422, description = "`amount-out-of-range`"),
    ),
)]
pub(super) async fn issue_statement(
    _: Admin,
    State(state): State<AppState>,
    Path((name, m)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let m = month(&m)?;
    let partner = partners::get(&state.store, &name).await?;
    let s = issue::issue(&state.store, partner.id, &partner.name, m, "admin").await?;
    Ok((StatusCode::CREATED, Json(json!(s))))
}

#[utoipa::path(
    get,
    path = "/v1/admin/billing/alerts",
    tag = "billing",
    params(PartnerPageQuery),
    responses(
        (status = 200, description = "A page of alerts, newest first", body = Page<serde_json::Value>),
    ),
)]
pub(super) async fn all_alerts(
    _: Admin,
    State(state): State<AppState>,
    query: Query<PartnerPageQuery>,
) -> Result<Json<Page<Alert>>, ApiError> {
    let Query(q) = query;
    let page = q.page();
    let pid = match q.partner {
        Some(name) => Some(partner_id(&state, &name).await?),
        None => None,
    };
    let alerts = obligations::alerts(&state.store, pid).await?;
    Ok(Json(Page::from_sorted(
        alerts,
        &page,
        Order::Descending,
        |a| a.id,
    )?))
}

/// `?scan=incremental|full`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct PassQuery {
    /// `incremental` (default: recent MTs) or `full` (every delivered MT).
    scan: Option<String>,
}

/// Run a charge pass now (the background task runs one every few seconds);
/// `?scan=full` looks at every delivered MT, not only the recent ones.
#[utoipa::path(
    post,
    path = "/v1/admin/billing/charge-pass",
    tag = "billing",
    params(PassQuery),
    responses(
        (status = 200, description = "What the pass charged", body = serde_json::Value),
        (status = 400, description = "`invalid-scan`"),
    ),
)]
pub(super) async fn charge_pass(
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
