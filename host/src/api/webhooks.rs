//! Webhooks and the inbox: a partner registers endpoints (`url`, the event
//! kinds it wants), rotates its signing secret, reads each endpoint's delivery log
//! and replays events to it; the same events are pollable at `GET /v1/events`. The
//! admin works on a partner's with `?partner=NAME`. Another partner's endpoint
//! answers 404.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::alerts::{before_cursor, page_limit};
use super::auth::{Caller, PartnerContext, scope};
use super::extract::{Json, PartnerParam, Path, Query};
use super::{ApiError, AppState, Routes};
use crate::webhooks::{self, Delivery, Endpoint, EndpointChange, Event, WebhookError, rfc3339_ms};

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
struct EndpointView {
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
            created_at: rfc3339_ms(e.created_at),
            updated_at: rfc3339_ms(e.updated_at),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    url: String,
    #[serde(default)]
    events: Vec<String>,
    #[serde(default)]
    description: String,
}

/// A new endpoint; `secret` only when the partner had none (shown once).
#[derive(Debug, Serialize)]
struct Created {
    #[serde(flatten)]
    endpoint: EndpointView,
    secret: Option<String>,
}

async fn create(
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    partner: Option<String>,
    limit: Option<i64>,
    after: Option<String>,
}

#[derive(Debug, Serialize)]
struct EndpointPage {
    items: Vec<EndpointView>,
    next: Option<String>,
}

async fn list(
    caller: Caller,
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<Json<EndpointPage>, ApiError> {
    let partner_id = scope(&state, &caller, query.partner.as_deref()).await?;
    let limit = page_limit(query.limit)?;
    let before = before_cursor(query.after.as_deref())?;
    let found = webhooks::endpoints(&state.store, partner_id, before, limit).await?;
    let next = (i64::try_from(found.len()).unwrap_or(0) == limit)
        .then(|| found.last().map(|e| e.id.to_string()))
        .flatten();
    Ok(Json(EndpointPage {
        items: found.into_iter().map(EndpointView::from).collect(),
        next,
    }))
}

fn parse_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse()
        .ok()
        .filter(|id: &i64| *id > 0)
        .ok_or_else(|| ApiError::bad_request("invalid-id", format!("`{raw}` is not a webhook id")))
}

async fn show(
    ctx: PartnerContext,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(_): Query<PartnerParam>,
) -> Result<Json<EndpointView>, ApiError> {
    let endpoint = webhooks::endpoint(&state.store, ctx.partner.id, parse_id(&id)?).await?;
    Ok(Json(endpoint.into()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    url: Option<String>,
    events: Option<Vec<String>>,
    description: Option<String>,
    enabled: Option<bool>,
}

async fn update(
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
struct Deleted {
    id: i64,
    deleted: bool,
}

async fn remove(
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
struct DeliveryView {
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
            next_attempt_at: (d.status == "pending").then(|| rfc3339_ms(d.next_attempt_at)),
            kind: d.kind,
            status: d.status,
            attempts: d.attempts,
            response_code: d.last_status_code,
            last_error: d.last_error,
            replays: d.replays,
            created_at: rfc3339_ms(d.created_at),
            last_attempt_at: d.last_attempt_at.map(rfc3339_ms),
            delivered_at: d.delivered_at.map(rfc3339_ms),
        }
    }
}

#[derive(Debug, Serialize)]
struct DeliveryPage {
    items: Vec<DeliveryView>,
    next: Option<String>,
}

async fn deliveries(
    ctx: PartnerContext,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<ListQuery>,
) -> Result<Json<DeliveryPage>, ApiError> {
    let endpoint = webhooks::endpoint(&state.store, ctx.partner.id, parse_id(&id)?).await?;
    let limit = page_limit(query.limit)?;
    let before = before_cursor(query.after.as_deref())?;
    let found = webhooks::deliveries(&state.store, endpoint.id, before, limit).await?;
    let next = (i64::try_from(found.len()).unwrap_or(0) == limit)
        .then(|| found.last().map(|d| d.id.to_string()))
        .flatten();
    Ok(Json(DeliveryPage {
        items: found.into_iter().map(DeliveryView::from).collect(),
        next,
    }))
}

/// Replay from an event id (inclusive) or from a time (RFC 3339): exactly one.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayBody {
    from_event_id: Option<i64>,
    since: Option<String>,
}

#[derive(Debug, Serialize)]
struct Replayed {
    /// Events that will be sent again (or for the first time) to the endpoint.
    replayed: i64,
}

async fn replay(
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
struct Rotated {
    secret: String,
    previous_retire_at: String,
}

async fn rotate(
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
        previous_retire_at: rfc3339_ms(retires_at),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    /// Read by [`PartnerContext`]; listed so that it is not an unknown parameter.
    #[allow(dead_code)]
    partner: Option<String>,
    /// The `next` of a previous page (an event id); events after it.
    after: Option<String>,
    limit: Option<i64>,
    /// Comma-separated event kinds; all when absent.
    kinds: Option<String>,
}

/// A page of the inbox, oldest first; `next` is the id of its last event (keep
/// it and poll with `?after=`), `null` when the page is empty.
#[derive(Debug, Serialize)]
struct EventPage {
    items: Vec<Event>,
    next: Option<String>,
}

async fn events(
    ctx: PartnerContext,
    State(state): State<AppState>,
    Query(query): Query<EventsQuery>,
) -> Result<Json<EventPage>, ApiError> {
    let after = match query.after.as_deref() {
        None => 0,
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|id| *id >= 0)
            .ok_or_else(|| {
                ApiError::bad_request("invalid-cursor", format!("`{raw}` is not an event id"))
            })?,
    };
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
    let limit = page_limit(query.limit)?;
    let items = webhooks::events(&state.store, ctx.partner.id, after, limit, &kinds).await?;
    let next = items.last().map(|e| e.id.to_string());
    Ok(Json(EventPage { items, next }))
}
