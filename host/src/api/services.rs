//! Services, subscriptions, violations and suspensions.
//!
//! Partners declare services and revisions, submit them, manage subscriptions
//! made on their users' behalf, and see their violations; the admin approves or
//! rejects, suspends and resumes (complaints: `api/complaints.rs`). A partner
//! reaches only its own services (another partner's id answers 404, R-7.1).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, get, post, put};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::auth::{Admin, Caller, PartnerContext, scope};
use super::extract::{Json, PartnerParam, Path, Query};
use super::idempotency::{self, IdempotencyKey};
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewService {
    code: String,
    /// The partner's module that drives the service.
    module: Option<String>,
    #[serde(flatten)]
    terms: ServiceTerms,
}

async fn create(
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    partner: Option<String>,
    status: Option<String>,
}

async fn list(
    caller: Caller,
    State(state): State<AppState>,
    query: Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
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
    let views = services::list(&state.store, partner, status).await?;
    Ok(Json(json!({ "services": views })))
}

async fn detail(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<PartnerParam>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id, "service")?;
    let partner = scope(&state, &caller, query.partner.as_deref()).await?;
    Ok(Json(json!(services::get(&state.store, partner, id).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Revise {
    module: Option<String>,
    #[serde(flatten)]
    terms: ServiceTerms,
}

async fn revise(
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

async fn submit(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id, "service")?;
    let current = services::get(&state.store, own(&caller), id).await?;
    let view = services::submit(&state.store, current.partner_id, id, &caller.actor()).await?;
    Ok(Json(json!(view)))
}

async fn audit(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<PartnerParam>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id, "service")?;
    let partner = scope(&state, &caller, query.partner.as_deref()).await?;
    let entries = services::audit(&state.store, partner, id).await?;
    Ok(Json(json!({ "audit": entries })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reason {
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
async fn admin_service(
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
async fn admin_partner(
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

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct NewSubscription {
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
async fn subscribe(
    caller: Caller,
    key: IdempotencyKey,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<NewSubscription>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, "service")?;
    let route = format!("POST /v1/services/{id}/subscriptions");
    idempotency::once(&state, &caller, &key, &route, &body, || {
        subscribe_once(&state, &caller, id, &body)
    })
    .await
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscriptionQuery {
    partner: Option<String>,
    status: Option<String>,
    after: Option<i64>,
    limit: Option<i64>,
}

async fn subscriptions_list(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Query<SubscriptionQuery>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id, "service")?;
    let Query(query) = query;
    let partner = scope(&state, &caller, query.partner.as_deref()).await?;
    services::get(&state.store, partner, id).await?;
    let items = subscriptions::list(
        &state.store,
        id,
        query.status.as_deref(),
        query.after.unwrap_or(0),
        query.limit.unwrap_or(100),
    )
    .await?;
    Ok(Json(json!({ "subscriptions": items })))
}

/// End a subscription on the user's behalf (e.g. they asked the partner's hotline).
async fn unsubscribe(
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ViolationQuery {
    partner: Option<String>,
    limit: Option<i64>,
}

async fn violations(
    caller: Caller,
    State(state): State<AppState>,
    query: Query<ViolationQuery>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query;
    let partner = scope(&state, &caller, query.partner.as_deref()).await?;
    let items = state
        .compliance
        .violations(partner, query.limit.unwrap_or(100))
        .await?;
    Ok(Json(json!({ "violations": items })))
}

/// Run the detectors now (they also run on their own every interval).
async fn run_detectors(_: Admin, State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let findings = detectors::run_once(&state.compliance).await?;
    let findings: Vec<Value> = findings
        .into_iter()
        .map(|f| json!({ "rule": f.rule, "partner_id": f.partner_id, "service_id": f.service_id, "detail": f.detail }))
        .collect();
    Ok(Json(json!({ "findings": findings })))
}
