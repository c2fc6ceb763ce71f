//! Services, subscriptions, violations and suspensions.
//!
//! Partners declare services and revisions, submit them, manage subscriptions
//! made on their users' behalf, and see their violations; the admin approves or
//! rejects, suspends and resumes (complaints: `api/complaints.rs`). A partner
//! reaches only its own services (another partner's id answers 404, R-7.1).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::auth::{Admin, Caller, PartnerContext, scope};
use super::extract::{Json, NoParams, PartnerParam, Path, Query};
use super::page::{Order, Page, PageQuery, PartnerPageQuery};
use super::{ApiError, AppState, Routes};
use crate::compliance::detectors;
use crate::mo::notices;
use crate::relay::NewMessage;
use crate::runtime::host::valid_attribute_name;
use crate::services::{self, ServiceStatus, ServiceTerms};
use crate::store::now_ms;
use crate::subscriptions::{self, Requested, Source};

pub(super) fn router() -> Routes {
    Routes::new()
        .route("/v1/services", post(create).get(list))
        .route("/v1/services/{id}", get(detail))
        .route("/v1/services/{id}/terms", put(revise))
        .route("/v1/services/{id}/submit", post(submit))
        .route("/v1/services/{id}/audit", get(audit))
        .route(
            "/v1/services/{id}/subscriptions",
            post(subscribe).get(subscriptions_list),
        )
        .route("/v1/subscriptions/{id}", delete(unsubscribe))
        .route("/v1/violations", get(violations))
        .route("/v1/admin/services/{id}/{action}", post(admin_service))
        .route("/v1/admin/partners/{name}/{action}", post(admin_partner))
        .route("/v1/admin/detectors/run", post(run_detectors))
}

fn parse_id(raw: &str, what: &str) -> Result<i64, ApiError> {
    raw.parse()
        .ok()
        .filter(|id: &i64| *id > 0)
        .ok_or_else(|| ApiError::bad_request("invalid-id", format!("`{raw}` is not a {what} id")))
}

/// The partner a caller is limited to (None: the admin sees all).
fn own(caller: &Caller) -> Option<i64> {
    match caller {
        Caller::Admin => None,
        Caller::Partner(p) => Some(p.id),
    }
}

/// A new service: its code, module and terms.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"code": "XZ", "module": "horoscope", "name": "星座运势", "description": "每日星座运势",
    "keywords": ["XZ"], "fee_type": "monthly", "price_fen": 200, "operators": ["mobile", "unicom"],
    "monthly_max_messages": 31, "number_ext": "01"}))]
pub(super) struct NewService {
    code: String,
    /// The partner's module that drives the service.
    module: Option<String>,
    #[serde(flatten)]
    terms: ServiceTerms,
}

/// `POST /v1/services`: declare a service (a draft).
#[utoipa::path(
    post,
    path = "/v1/services",
    tag = "services",
    params(("partner" = Option<String>, Query, description = "The admin names the partner")),
    request_body = NewService,
    responses(
        (status = 201, description = "The draft service", body = serde_json::Value),
        (status = 400, description = "`invalid-service`, `partner-required`"),
        (status = 409, description = "`conflict`, `unreachable-keyword`"),
    ),
)]
pub(super) async fn create(
    ctx: PartnerContext,
    State(state): State<AppState>,
    body: Json<NewService>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(body) = body;
    if let Some(module) = &body.module {
        // The module must be the partner's own.
        state.registry.get(&ctx.partner, module).await?;
    }
    let view = services::create(
        &state.store,
        ctx.partner.id,
        &ctx.caller.actor(),
        &body.code,
        body.module.as_deref(),
        &body.terms,
        &state.relay.routes().operators(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(json!(view))))
}

/// `?partner=&status=&limit=&after=`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// The admin's choice of partner (a partner key may name only itself).
    partner: Option<String>,
    /// `draft`, `submitted`, `approved`, `rejected` or `suspended`.
    status: Option<String>,
    /// Items per page, 1-500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// The `next` cursor of the previous page.
    after: Option<String>,
}

/// `GET /v1/services`: services with live and pending terms, oldest first.
#[utoipa::path(
    get,
    path = "/v1/services",
    tag = "services",
    params(ListQuery),
    responses((status = 200, description = "A page of services, oldest first", body = Page<serde_json::Value>)),
)]
pub(super) async fn list(
    caller: Caller,
    State(state): State<AppState>,
    query: Query<ListQuery>,
) -> Result<Json<Page<services::ServiceView>>, ApiError> {
    let Query(query) = query;
    let status = match query.status.as_deref() {
        None => None,
        Some(s) => Some(ServiceStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request(
                "invalid-query",
                "status is one of draft, submitted, approved, rejected, suspended",
            )
        })?),
    };
    let partner = scope(&state, &caller, query.partner.as_deref()).await?;
    let page = PageQuery::new(query.limit, query.after);
    page.check()?;
    let views = services::list(&state.store, partner, status).await?;
    Ok(Json(Page::from_sorted(
        views,
        &page,
        Order::Ascending,
        |v| v.id,
    )?))
}

/// `GET /v1/services/{id}`: one service with its live and pending terms.
#[utoipa::path(
    get,
    path = "/v1/services/{id}",
    tag = "services",
    params(("id" = String, Path, description = "The service id"), PartnerParam),
    responses(
        (status = 200, description = "The service", body = serde_json::Value),
        (status = 400, description = "`invalid-id`"),
    ),
)]
pub(super) async fn detail(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<PartnerParam>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id, "service")?;
    let partner = scope(&state, &caller, query.partner.as_deref()).await?;
    Ok(Json(json!(services::get(&state.store, partner, id).await?)))
}

/// New terms (a draft revision).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "星座运势", "keywords": ["XZ"], "fee_type": "monthly", "price_fen": 300,
    "operators": ["mobile"], "monthly_max_messages": 31, "number_ext": "01"}))]
pub(super) struct Revise {
    module: Option<String>,
    #[serde(flatten)]
    terms: ServiceTerms,
}

/// `PUT /v1/services/{id}/terms`: a new draft revision; the live terms stay in force.
#[utoipa::path(
    put,
    path = "/v1/services/{id}/terms",
    tag = "services",
    params(("id" = String, Path, description = "The service id")),
    request_body = Revise,
    responses(
        (status = 200, description = "The service with its draft", body = serde_json::Value),
        (status = 400, description = "`invalid-id`, `invalid-service`"),
        (status = 409, description = "`wrong-state`, `conflict`, `unreachable-keyword`"),
    ),
)]
pub(super) async fn revise(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Json<Revise>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id, "service")?;
    let Json(body) = body;
    let current = services::get(&state.store, own(&caller), id).await?;
    if let Some(module) = &body.module {
        let partner = crate::partners::by_id(&state.store, current.partner_id).await?;
        state.registry.get(&partner, module).await?;
    }
    let view = services::revise(
        &state.store,
        current.partner_id,
        id,
        &caller.actor(),
        body.module.as_deref(),
        &body.terms,
        &state.relay.routes().operators(),
    )
    .await?;
    Ok(Json(json!(view)))
}

/// `POST /v1/services/{id}/submit`: submit the draft for approval.
#[utoipa::path(
    post,
    path = "/v1/services/{id}/submit",
    tag = "services",
    params(("id" = String, Path, description = "The service id")),
    responses(
        (status = 200, description = "The service, submitted", body = serde_json::Value),
        (status = 400, description = "`invalid-id`"),
        (status = 409, description = "`wrong-state`"),
    ),
)]
pub(super) async fn submit(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id, "service")?;
    let current = services::get(&state.store, own(&caller), id).await?;
    let view = services::submit(&state.store, current.partner_id, id, &caller.actor()).await?;
    Ok(Json(json!(view)))
}

/// `GET /v1/services/{id}/audit`: every transition (who, when, why), oldest first.
#[utoipa::path(
    get,
    path = "/v1/services/{id}/audit",
    tag = "services",
    params(("id" = String, Path, description = "The service id"), PartnerPageQuery),
    responses(
        (status = 200, description = "A page of audit entries, oldest first", body = Page<serde_json::Value>),
        (status = 400, description = "`invalid-id`"),
    ),
)]
pub(super) async fn audit(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<PartnerPageQuery>,
) -> Result<Json<Page<services::AuditEntry>>, ApiError> {
    let id = parse_id(&id, "service")?;
    query.page().check()?;
    let partner = scope(&state, &caller, query.partner.as_deref()).await?;
    let entries = services::audit(&state.store, partner, id).await?;
    Ok(Json(Page::from_sorted(
        entries,
        &query.page(),
        Order::Ascending,
        |e| e.id,
    )?))
}

/// Why (kept in the audit trail).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"reason": "terms checked against the operator filing"}))]
pub(super) struct Reason {
    /// 1-500 characters.
    reason: String,
}

fn reason(body: Json<Reason>) -> Result<String, ApiError> {
    let Json(body) = body;
    check_reason(&body.reason)
}

/// The reason an admin gives for a decision or suspension (API and console):
/// 1-500 characters after trimming.
///
/// # Errors
/// 400 `invalid-reason`.
pub fn check_reason(reason: &str) -> Result<String, ApiError> {
    let reason = reason.trim().to_string();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(ApiError::bad_request(
            "invalid-reason",
            "a reason of 1-500 characters is required",
        ));
    }
    Ok(reason)
}

/// `approve`, `reject`, `suspend` or `resume` a service.
#[utoipa::path(
    post,
    path = "/v1/admin/services/{id}/{action}",
    tag = "services",
    params(
        ("id" = String, Path, description = "The service id"),
        ("action" = String, Path, description = "`approve`, `reject`, `suspend` or `resume`"),
    ),
    request_body = Reason,
    responses(
        (status = 200, description = "The service after the action (suspend: `held_messages`; resume: `released_messages`)", body = serde_json::Value),
        (status = 400, description = "`invalid-id`, `invalid-reason`"),
        (status = 404, description = "`not-found`: no such service or action"),
        (status = 409, description = "`wrong-state`"),
    ),
)]
pub(super) async fn admin_service(
    _: Admin,
    State(state): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    body: Json<Reason>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id, "service")?;
    let reason = reason(body)?;
    let compliance = &state.compliance;
    match action.as_str() {
        "approve" | "reject" => {
            let view =
                services::decide(&state.store, id, action == "approve", "admin", &reason).await?;
            Ok(Json(json!(view)))
        }
        "suspend" => {
            let held = compliance.suspend_service(id, "admin", &reason).await?;
            Ok(Json(
                json!({ "service": id, "status": "suspended", "held_messages": held }),
            ))
        }
        "resume" => {
            let released = compliance.resume_service(id, "admin", &reason).await?;
            state.relay.wake();
            Ok(Json(
                json!({ "service": id, "status": "approved", "released_messages": released }),
            ))
        }
        other => Err(ApiError::not_found(format!(
            "no service action `{other}` (approve, reject, suspend, resume)"
        ))),
    }
}

/// `suspend` or `resume` a partner.
#[utoipa::path(
    post,
    path = "/v1/admin/partners/{name}/{action}",
    tag = "partners",
    params(
        ("name" = String, Path, description = "The partner's login name"),
        ("action" = String, Path, description = "`suspend` or `resume`"),
    ),
    request_body = Reason,
    responses(
        (status = 200, description = "The partner's status and the MTs held or released", body = serde_json::Value),
        (status = 400, description = "`invalid-reason`"),
        (status = 404, description = "`not-found`: no such partner or action"),
        (status = 409, description = "`wrong-state`"),
    ),
)]
pub(super) async fn admin_partner(
    _: Admin,
    State(state): State<AppState>,
    Path((name, action)): Path<(String, String)>,
    body: Json<Reason>,
) -> Result<Json<Value>, ApiError> {
    let reason = reason(body)?;
    let partner = crate::partners::get(&state.store, &name).await?;
    let compliance = &state.compliance;
    match action.as_str() {
        "suspend" => {
            let held = compliance
                .suspend_partner(partner.id, "admin", &reason)
                .await?;
            Ok(Json(
                json!({ "partner": name, "status": "suspended", "held_messages": held }),
            ))
        }
        "resume" => {
            let released = compliance
                .resume_partner(partner.id, "admin", &reason)
                .await?;
            state.relay.wake();
            Ok(Json(
                json!({ "partner": name, "status": "active", "released_messages": released }),
            ))
        }
        other => Err(ApiError::not_found(format!(
            "no partner action `{other}` (suspend, resume)"
        ))),
    }
}

/// A subscription made on a user's behalf.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"msisdn": "13800138000", "source": "web", "attributes": {"sign": "aries"}}))]
pub(super) struct NewSubscription {
    msisdn: String,
    /// `api` (default) or `web`.
    #[serde(default)]
    source: Option<Source>,
    /// Subscriber attributes for the modules (e.g. `{"sign": "aries"}`).
    #[serde(default)]
    attributes: BTreeMap<String, String>,
}

/// Subscribe a user on their behalf. Paid services still need the user's own
/// confirming reply: the platform texts the confirmation request itself, at most
/// once per `[dialogue] confirm_resend_secs` per number and service, and the number
/// receives at most `[compliance] notice_daily_cap` such requests a day. Honours
/// `Idempotency-Key` (issue 10 item 3).
#[utoipa::path(
    post,
    path = "/v1/services/{id}/subscriptions",
    tag = "services",
    params(("id" = String, Path, description = "The service id")),
    request_body = NewSubscription,
    responses(
        (status = 201, description = "Active at once (a free service)", body = serde_json::Value),
        (status = 202, description = "Pending the user's confirming reply (paid)", body = serde_json::Value),
        (status = 200, description = "Already active", body = serde_json::Value),
        (status = 400, description = "`invalid-id`, `invalid-source`, `invalid-attributes`, `invalid-msisdn`"),
        (status = 409, description = "`service-not-approved`"),
        (status = 422, description = "the compliance codes (suspended, …)"),
        (status = 429, description = "`notice-cap`"),
    ),
)]
pub(super) async fn subscribe(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<NewSubscription>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let id = parse_id(&id, "service")?;
    let (status, body) = subscribe_once(&state, &caller, id, &body).await?;
    Ok((status, Json(body)))
}

async fn subscribe_once(
    state: &AppState,
    caller: &Caller,
    id: i64,
    body: &NewSubscription,
) -> Result<(StatusCode, Value), ApiError> {
    let view = services::get(&state.store, own(caller), id).await?;
    let service = services::live(&state.store, view.id)
        .await?
        .filter(|s| s.status == ServiceStatus::Approved)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "service-not-approved",
                "only approved services take subscriptions",
            )
        })?;
    state
        .compliance
        .may_send(service.partner_id, service.id)
        .await?;
    let source = body.source.unwrap_or(Source::Api);
    if source == Source::Mo {
        return Err(ApiError::bad_request(
            "invalid-source",
            "source is `api` or `web`; MO subscriptions come from the user's own message",
        ));
    }
    // Attributes are what modules read (`subscribers.get-attribute`): the WIT's
    // name rule holds here too, so a module never sees a name it could not write.
    if body.attributes.len() > 20
        || body
            .attributes
            .iter()
            .any(|(k, v)| !valid_attribute_name(k) || v.len() > 256)
    {
        return Err(ApiError::bad_request(
            "invalid-attributes",
            "at most 20 attributes; names 1-64 bytes of a-z, 0-9, `_` and `-`; values up to 256 bytes",
        ));
    }
    let (msisdn, _) = state
        .relay
        .routes()
        .route(&body.msisdn)
        .map_err(|e| ApiError::bad_request("invalid-msisdn", e.to_string()))?;
    let dialogue = &state.dialogue;
    let window =
        i64::try_from(dialogue.confirm_window_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let resend =
        i64::try_from(dialogue.confirm_resend_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let requested =
        subscriptions::request(&state.store, &service, &msisdn, source, window, resend).await?;
    let (status, sub, confirmation_due) = match requested {
        Requested::Active(s) => (StatusCode::CREATED, s, false),
        Requested::Pending {
            subscription,
            confirmation_due,
        } => (StatusCode::ACCEPTED, subscription, confirmation_due),
        Requested::AlreadyActive(s) => (StatusCode::OK, s, false),
    };
    if !body.attributes.is_empty() {
        let now = now_ms();
        for (name, value) in &body.attributes {
            sqlx::query(
                "INSERT INTO subscriber_attributes (partner_id, subscriber_id, name, value, updated_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (partner_id, subscriber_id, name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            )
            .bind(sub.partner_id)
            .bind(&sub.subscriber_id)
            .bind(name)
            .bind(value)
            .bind(now)
            .execute(state.store.pool())
            .await
            .map_err(crate::store::StoreError::from)?;
        }
    }
    if confirmation_due {
        let partner = crate::partners::by_id(&state.store, service.partner_id).await?;
        let text = notices::confirm_request(
            &service,
            &partner.display_name,
            dialogue.confirm_window_secs / 3600,
        );
        let sender = service.sender(&dialogue.short_code);
        let queued = state
            .relay
            .enqueue(NewMessage::notice(
                &msisdn,
                text,
                Some(sender),
                None,
                Some(sub.id),
            ))
            .await;
        if let Err(e) = queued {
            subscriptions::confirmation_not_sent(&state.store, sub.id).await?;
            return Err(e.into());
        }
    }
    Ok((
        status,
        json!({ "subscription": sub, "confirmation_sent": confirmation_due }),
    ))
}

/// `?partner=&status=&limit=&after=`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct SubscriptionQuery {
    /// The admin's choice of partner (a partner key may name only itself).
    partner: Option<String>,
    /// `pending`, `active`, `cancelled`, `expired`, …
    status: Option<String>,
    /// Items per page, 1-500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// The `next` cursor of the previous page.
    after: Option<String>,
}

/// `GET /v1/services/{id}/subscriptions`: subscriptions, oldest first.
#[utoipa::path(
    get,
    path = "/v1/services/{id}/subscriptions",
    tag = "services",
    params(("id" = String, Path, description = "The service id"), SubscriptionQuery),
    responses(
        (status = 200, description = "A page of subscriptions, oldest first", body = Page<serde_json::Value>),
        (status = 400, description = "`invalid-id`"),
    ),
)]
pub(super) async fn subscriptions_list(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Query<SubscriptionQuery>,
) -> Result<Json<Page<subscriptions::Subscription>>, ApiError> {
    let id = parse_id(&id, "service")?;
    let Query(query) = query;
    let page = PageQuery::new(query.limit, query.after);
    page.check()?;
    let partner = scope(&state, &caller, query.partner.as_deref()).await?;
    services::get(&state.store, partner, id).await?;
    let items = subscriptions::list(
        &state.store,
        id,
        query.status.as_deref(),
        page.after::<i64>()?.unwrap_or(0),
        page.fetch()?,
    )
    .await?;
    Ok(Json(Page::from_rows(items, &page, |s| s.id)?))
}

/// End a subscription on the user's behalf (e.g. they asked the partner's hotline).
#[utoipa::path(
    delete,
    path = "/v1/subscriptions/{id}",
    tag = "services",
    params(("id" = String, Path, description = "The subscription id")),
    responses(
        (status = 200, description = "The subscription, ended", body = serde_json::Value),
        (status = 400, description = "`invalid-id`"),
        (status = 409, description = "`wrong-state`: already ended"),
    ),
)]
pub(super) async fn unsubscribe(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id, "subscription")?;
    subscriptions::get(&state.store, own(&caller), id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no subscription {id}")))?;
    let reason = format!("cancelled through the API by {}", caller.actor());
    let cancelled = subscriptions::cancel(&state.store, &[id], &reason).await?;
    match cancelled.into_iter().next() {
        Some(sub) => Ok(Json(json!({ "subscription": sub }))),
        None => Err(ApiError::new(
            StatusCode::CONFLICT,
            "wrong-state",
            "the subscription has already ended",
        )),
    }
}

/// `GET /v1/violations`: policy, opt-in, cap and detector violations, newest first.
#[utoipa::path(
    get,
    path = "/v1/violations",
    tag = "services",
    params(PartnerPageQuery),
    responses((status = 200, description = "A page of violations, newest first", body = Page<serde_json::Value>)),
)]
pub(super) async fn violations(
    caller: Caller,
    State(state): State<AppState>,
    Query(query): Query<PartnerPageQuery>,
) -> Result<Json<Page<crate::compliance::Violation>>, ApiError> {
    let page = query.page();
    let partner = scope(&state, &caller, query.partner.as_deref()).await?;
    let items = state
        .compliance
        .violations(partner, page.after::<i64>()?, page.fetch()?)
        .await?;
    Ok(Json(Page::from_rows(items, &page, |v| v.id)?))
}

/// Run the detectors now (they also run on their own every interval).
#[utoipa::path(
    post,
    path = "/v1/admin/detectors/run",
    tag = "services",
    responses((status = 200, description = "What the detectors found", body = serde_json::Value)),
)]
pub(super) async fn run_detectors(
    _: Admin,
    State(state): State<AppState>,
    _: Query<NoParams>,
) -> Result<Json<Value>, ApiError> {
    let findings = detectors::run_once(&state.compliance).await?;
    let findings: Vec<Value> = findings
        .into_iter()
        .map(|f| json!({ "rule": f.rule, "partner_id": f.partner_id, "service_id": f.service_id, "detail": f.detail }))
        .collect();
    Ok(Json(json!({ "findings": findings })))
}
