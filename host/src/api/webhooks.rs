//! Webhooks and the inbox: a partner registers endpoints (`url`, the event
//! kinds it wants), rotates its signing secret, reads each endpoint's delivery log
//! and replays events to it; the same events are pollable at `GET /v1/events`. The
//! admin works on a partner's with `?partner=NAME`. Another partner's endpoint
//! answers 404.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::auth::{Caller, PartnerContext, scope};
use super::extract::{Json, PartnerParam, Path, Query};
use super::page::{Page, PageQuery, PartnerPageQuery};
use super::{ApiError, AppState, Routes};
use crate::webhooks::{self, Delivery, Endpoint, EndpointChange, Event, WebhookError};

pub(super) fn router() -> Routes {
    Routes::new()
        .route("/v1/webhooks", get(list).post(create))
        .route("/v1/webhooks/{id}", get(show).patch(update).delete(remove))
        .route("/v1/webhooks/{id}/deliveries", get(deliveries))
        .route("/v1/webhooks/{id}/replay", post(replay))
        .route("/v1/webhook-secret/rotate", post(rotate))
        .route("/v1/events", get(events))
}

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::InvalidUrl(_) => Self::bad_request("invalid-url", e.to_string()),
            WebhookError::PrivateAddress(_) => Self::bad_request("private-address", e.to_string()),
            WebhookError::UnknownKind(_) => Self::bad_request("invalid-event-kind", e.to_string()),
            WebhookError::InvalidInput(_) => Self::bad_request("invalid-input", e.to_string()),
            WebhookError::NotFound => Self::not_found(e.to_string()),
            WebhookError::Store(e) => e.into(),
        }
    }
}

/// An endpoint as the API shows it.
#[derive(Debug, Serialize)]
pub(super) struct EndpointView {
    id: i64,
    url: String,
    /// Event kinds sent to it; empty: every kind.
    events: Vec<String>,
    description: String,
    enabled: bool,
    created_at: String,
    updated_at: String,
}

impl From<Endpoint> for EndpointView {
    fn from(e: Endpoint) -> Self {
        Self {
            id: e.id,
            url: e.url,
            events: e.events,
            description: e.description,
            enabled: e.enabled,
            created_at: crate::api::time::format(e.created_at),
            updated_at: crate::api::time::format(e.updated_at),
        }
    }
}

/// A new endpoint: its URL, the event kinds it wants (empty: every kind) and a
/// description.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"url": "https://hooks.example.com/tongdao", "events": ["alert", "mt.status"], "description": "ops"}))]
pub(super) struct CreateBody {
    url: String,
    #[serde(default)]
    events: Vec<String>,
    #[serde(default)]
    description: String,
}

/// A new endpoint; `secret` only when the partner had none (shown once).
#[derive(Debug, Serialize)]
pub(super) struct Created {
    #[serde(flatten)]
    endpoint: EndpointView,
    secret: Option<String>,
}

/// `POST /v1/webhooks`: register an endpoint (201).
#[utoipa::path(
    post,
    path = "/v1/webhooks",
    tag = "webhooks",
    params(PartnerParam),
    request_body = CreateBody,
    responses(
        (status = 201, description = "The endpoint; `secret` only when the partner had none (shown once)", body = serde_json::Value),
        (status = 400, description = "`invalid-url`, `private-address`, `invalid-event-kind`, `invalid-input`"),
    ),
)]
pub(super) async fn create(
    ctx: PartnerContext,
    State(state): State<AppState>,
    Json(body): Json<CreateBody>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    let (endpoint, secret) = webhooks::create_endpoint(
        &state.store,
        ctx.partner.id,
        &body.url,
        &body.events,
        &body.description,
        state.webhooks.allow_private,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(Created {
            endpoint: endpoint.into(),
            secret,
        }),
    ))
}

/// `GET /v1/webhooks`: endpoints, newest first.
#[utoipa::path(
    get,
    path = "/v1/webhooks",
    tag = "webhooks",
    params(PartnerPageQuery),
    responses((status = 200, description = "A page of endpoints, newest first", body = Page<serde_json::Value>)),
)]
pub(super) async fn list(
    caller: Caller,
    State(state): State<AppState>,
    Query(query): Query<PartnerPageQuery>,
) -> Result<Json<Page<EndpointView>>, ApiError> {
    let page = query.page();
    page.check()?;
    let partner_id = scope(&state, &caller, query.partner.as_deref()).await?;
    let before = page.after::<i64>()?.unwrap_or(i64::MAX);
    let found = webhooks::endpoints(&state.store, partner_id, before, page.fetch()?).await?;
    Ok(Json(
        Page::from_rows(found, &page, |e| e.id)?.map(EndpointView::from),
    ))
}

fn parse_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse()
        .ok()
        .filter(|id: &i64| *id > 0)
        .ok_or_else(|| ApiError::bad_request("invalid-id", format!("`{raw}` is not a webhook id")))
}

/// `GET /v1/webhooks/{id}`: one endpoint.
#[utoipa::path(
    get,
    path = "/v1/webhooks/{id}",
    tag = "webhooks",
    params(("id" = String, Path, description = "The endpoint id"), PartnerParam),
    responses(
        (status = 200, description = "The endpoint", body = serde_json::Value),
        (status = 400, description = "`invalid-id`"),
    ),
)]
pub(super) async fn show(
    ctx: PartnerContext,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(_): Query<PartnerParam>,
) -> Result<Json<EndpointView>, ApiError> {
    let endpoint = webhooks::endpoint(&state.store, ctx.partner.id, parse_id(&id)?).await?;
    Ok(Json(endpoint.into()))
}

/// A change to an endpoint: only the fields given change.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"enabled": false}))]
pub(super) struct UpdateBody {
    url: Option<String>,
    events: Option<Vec<String>>,
    description: Option<String>,
    enabled: Option<bool>,
}

/// `PATCH /v1/webhooks/{id}`: change an endpoint.
#[utoipa::path(
    patch,
    path = "/v1/webhooks/{id}",
    tag = "webhooks",
    params(("id" = String, Path, description = "The endpoint id"), PartnerParam),
    request_body = UpdateBody,
    responses(
        (status = 200, description = "The endpoint as changed", body = serde_json::Value),
        (status = 400, description = "`invalid-id`, `invalid-url`, `private-address`, `invalid-event-kind`, `invalid-input`"),
    ),
)]
pub(super) async fn update(
    ctx: PartnerContext,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<UpdateBody>,
) -> Result<Json<EndpointView>, ApiError> {
    let endpoint = webhooks::update_endpoint(
        &state.store,
        ctx.partner.id,
        parse_id(&id)?,
        EndpointChange {
            url: body.url,
            events: body.events,
            description: body.description,
            enabled: body.enabled,
        },
        state.webhooks.allow_private,
    )
    .await?;
    Ok(Json(endpoint.into()))
}

/// The answer of a delete.
#[derive(Debug, Serialize)]
pub(super) struct Deleted {
    id: i64,
    deleted: bool,
}

/// `DELETE /v1/webhooks/{id}`: remove an endpoint.
#[utoipa::path(
    delete,
    path = "/v1/webhooks/{id}",
    tag = "webhooks",
    params(("id" = String, Path, description = "The endpoint id"), PartnerParam),
    responses(
        (status = 200, description = "`{id, deleted: true}`", body = serde_json::Value),
        (status = 400, description = "`invalid-id`"),
    ),
)]
pub(super) async fn remove(
    ctx: PartnerContext,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Deleted>, ApiError> {
    let id = parse_id(&id)?;
    webhooks::delete_endpoint(&state.store, ctx.partner.id, id).await?;
    Ok(Json(Deleted { id, deleted: true }))
}

/// A delivery as the log shows it.
#[derive(Debug, Serialize)]
pub(super) struct DeliveryView {
    id: i64,
    event_id: i64,
    kind: String,
    /// `pending`, `delivered`, `failed` (gave up; replayable) or `cancelled`.
    status: String,
    attempts: i64,
    /// HTTP status of the last answer, if any.
    response_code: Option<i64>,
    last_error: Option<String>,
    /// While pending: when it is tried next.
    next_attempt_at: Option<String>,
    replays: i64,
    created_at: String,
    last_attempt_at: Option<String>,
    delivered_at: Option<String>,
}

impl From<Delivery> for DeliveryView {
    fn from(d: Delivery) -> Self {
        Self {
            id: d.id,
            event_id: d.event_id,
            next_attempt_at: (d.status == "pending")
                .then(|| crate::api::time::format(d.next_attempt_at)),
            kind: d.kind,
            status: d.status,
            attempts: d.attempts,
            response_code: d.last_status_code,
            last_error: d.last_error,
            replays: d.replays,
            created_at: crate::api::time::format(d.created_at),
            last_attempt_at: d.last_attempt_at.map(crate::api::time::format),
            delivered_at: d.delivered_at.map(crate::api::time::format),
        }
    }
}

/// `GET /v1/webhooks/{id}/deliveries`: the endpoint's delivery log, newest first.
#[utoipa::path(
    get,
    path = "/v1/webhooks/{id}/deliveries",
    tag = "webhooks",
    params(("id" = String, Path, description = "The endpoint id"), PartnerPageQuery),
    responses(
        (status = 200, description = "A page of deliveries, newest first", body = Page<serde_json::Value>),
        (status = 400, description = "`invalid-id`"),
    ),
)]
pub(super) async fn deliveries(
    ctx: PartnerContext,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<PartnerPageQuery>,
) -> Result<Json<Page<DeliveryView>>, ApiError> {
    let page = query.page();
    page.check()?;
    let endpoint = webhooks::endpoint(&state.store, ctx.partner.id, parse_id(&id)?).await?;
    let before = page.after::<i64>()?.unwrap_or(i64::MAX);
    let found = webhooks::deliveries(&state.store, endpoint.id, before, page.fetch()?).await?;
    Ok(Json(
        Page::from_rows(found, &page, |d| d.id)?.map(DeliveryView::from),
    ))
}

/// Replay from an event id (inclusive) or from a time (RFC 3339): exactly one.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"since": "2026-11-30T03:12:00.000Z"}))]
pub(super) struct ReplayBody {
    from_event_id: Option<i64>,
    since: Option<String>,
}

#[derive(Debug, Serialize)]
pub(super) struct Replayed {
    /// Events that will be sent again (or for the first time) to the endpoint.
    replayed: i64,
}

/// `POST /v1/webhooks/{id}/replay`: send events again to the endpoint.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{id}/replay",
    tag = "webhooks",
    params(("id" = String, Path, description = "The endpoint id"), PartnerParam),
    request_body = ReplayBody,
    responses(
        (status = 200, description = "`{replayed}`: events queued for the endpoint", body = serde_json::Value),
        (status = 400, description = "`invalid-id`, `invalid-time`, `invalid-input`"),
    ),
)]
pub(super) async fn replay(
    ctx: PartnerContext,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<ReplayBody>,
) -> Result<Json<Replayed>, ApiError> {
    let id = parse_id(&id)?;
    let since = match (&body.from_event_id, &body.since) {
        (Some(from), None) if *from > 0 => None,
        (None, Some(since)) => Some(
            since
                .parse::<jiff::Timestamp>()
                .map_err(|e| {
                    ApiError::bad_request("invalid-time", format!("since `{since}`: {e}"))
                })?
                .as_millisecond(),
        ),
        _ => {
            return Err(ApiError::bad_request(
                "invalid-input",
                "give exactly one of `from_event_id` (a positive event id) and `since` (RFC 3339)",
            ));
        }
    };
    let replayed =
        webhooks::replay(&state.store, ctx.partner.id, id, body.from_event_id, since).await?;
    Ok(Json(Replayed { replayed }))
}

/// A new signing secret (shown once) and when the previous ones stop signing.
#[derive(Debug, Serialize)]
pub(super) struct Rotated {
    secret: String,
    previous_retire_at: String,
}

/// `POST /v1/webhook-secret/rotate`: a new signing secret (shown once).
#[utoipa::path(
    post,
    path = "/v1/webhook-secret/rotate",
    tag = "webhooks",
    params(PartnerParam),
    responses((status = 200, description = "`{secret, previous_retire_at}`", body = serde_json::Value)),
)]
pub(super) async fn rotate(
    ctx: PartnerContext,
    State(state): State<AppState>,
    Query(_): Query<PartnerParam>,
) -> Result<Json<Rotated>, ApiError> {
    let (secret, retires_at) = webhooks::rotate_secret(
        &state.store,
        ctx.partner.id,
        state.webhooks.rotation_grace_secs,
    )
    .await?;
    Ok(Json(Rotated {
        secret,
        previous_retire_at: crate::api::time::format(retires_at),
    }))
}

/// The query of `GET /v1/events`.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct EventsQuery {
    /// The admin's choice of partner (read by [`PartnerContext`]).
    #[allow(dead_code)]
    partner: Option<String>,
    /// The `next` of a previous page; events after it.
    after: Option<String>,
    /// Items per page, 1-500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// Comma-separated event kinds; all when absent.
    kinds: Option<String>,
}

/// `GET /v1/events`: the inbox, oldest first; `next` is the cursor of its last
/// event (keep it and poll with `?after=`), `null` when the page is empty.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "webhooks",
    params(EventsQuery),
    responses(
        (status = 200, description = "A page of events, oldest first", body = Page<serde_json::Value>),
        (status = 400, description = "`invalid-event-kind`"),
    ),
)]
pub(super) async fn events(
    ctx: PartnerContext,
    State(state): State<AppState>,
    Query(query): Query<EventsQuery>,
) -> Result<Json<Page<Event>>, ApiError> {
    let page = PageQuery::new(query.limit, query.after.clone());
    page.check()?;
    let after = page.after::<i64>()?.unwrap_or(0);
    let kinds: Vec<String> = query
        .kinds
        .as_deref()
        .map(|k| {
            k.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if let Some(kind) = kinds
        .iter()
        .find(|k| !webhooks::KINDS.contains(&k.as_str()))
    {
        return Err(WebhookError::UnknownKind(kind.clone()).into());
    }
    let items =
        webhooks::events(&state.store, ctx.partner.id, after, page.limit()?, &kinds).await?;
    let next = items.last().map(|e| crate::api::page::cursor(&e.id));
    Ok(Json(Page { items, next }))
}
