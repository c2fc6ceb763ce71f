//! The complaints register over HTTP and partner contacts.
//!
//! - `POST /v1/admin/complaints`: the platform's staff file a complaint (admin).
//! - `GET /v1/complaints`, `GET /v1/complaints/{id}`: a partner its own, the admin
//!   all (or one partner's with `?partner=`); `?overdue=true` those past due.
//! - `POST /v1/complaints/{id}/{acknowledge|resolve|reject}`: the party the
//!   complaint is routed to acts on it (the partner, or the admin for channel
//!   causes); resolve and reject need a `resolution`.
//! - `GET /v1/complaints/rates`: complaints per 10,000 MTs, the detector's input.
//! - `GET`, `PUT /v1/contacts`: a partner's customer-service and
//!   technical-support contacts, set by the partner or the admin (`?partner=`).
//!
//! Every complaint answer names who handles it with their contacts (`handler`)
//! and the partner's contacts.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::auth::{Admin, Caller, PartnerContext, scope};
use super::extract::{Json, PartnerParam, Path, Query};
use super::page::{Page, PageQuery};
use super::{ApiError, AppState, Routes};
use crate::api::time::format as rfc3339;
use crate::complaints::{
    self, CAUSES, Complaint, ComplaintError, ComplaintEvent, Contacts, Handler, NewComplaint,
};
use crate::compliance::detectors;
use crate::store::now_ms;

pub(super) fn router() -> Routes {
    Routes::new()
        .route("/v1/admin/complaints", post(file))
        .route("/v1/complaints", get(list))
        .route("/v1/complaints/rates", get(rates))
        .route("/v1/complaints/{id}", get(detail))
        .route("/v1/complaints/{id}/{action}", post(act))
        .route("/v1/contacts", get(contacts).put(set_contacts))
}

impl From<ComplaintError> for ApiError {
    fn from(e: ComplaintError) -> Self {
        match e {
            ComplaintError::Invalid(code, message) => ApiError::bad_request(code, message),
            ComplaintError::NotFound(message) => ApiError::not_found(message),
            ComplaintError::Conflict(code, message) => {
                ApiError::new(StatusCode::CONFLICT, code, message)
            }
            ComplaintError::Store(e) => e.into(),
        }
    }
}

fn parse_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse().ok().filter(|id: &i64| *id > 0).ok_or_else(|| {
        ApiError::bad_request("invalid-id", format!("`{raw}` is not a complaint id"))
    })
}

/// An id given in a body: positive, or a 400 naming the field.
fn positive_id(id: i64, field: &str) -> Result<i64, ApiError> {
    if id > 0 {
        Ok(id)
    } else {
        Err(ApiError::bad_request(
            "invalid-id",
            format!("{field} {id} is not an id"),
        ))
    }
}

/// Who handles a complaint, with their contacts.
#[derive(Debug, Serialize)]
pub(super) struct HandlerView {
    /// `partner` or `platform`.
    party: String,
    /// The partner's name, or `platform`.
    name: String,
    contacts: Contacts,
}

/// A complaint as the API shows it.
#[derive(Debug, Serialize)]
pub(super) struct ComplaintView {
    id: i64,
    partner: String,
    service_id: Option<i64>,
    msisdn: Option<String>,
    message_id: Option<i64>,
    /// How it came: `10086`, `10010`, `12321`, `miit`, `app`, `email`…
    channel: String,
    /// `content`, `channel`, `billing` or `unsubscribe`.
    cause: String,
    note: String,
    /// `open`, `acknowledged`, `resolved` or `rejected`.
    status: String,
    /// `partner` (first line) or `platform` (channel causes).
    routed_to: String,
    handler: HandlerView,
    partner_contacts: Contacts,
    due_at: String,
    overdue: bool,
    resolution: Option<String>,
    created_at: String,
    updated_at: String,
    closed_at: Option<String>,
    /// Every status change, oldest first (in single-complaint answers).
    #[serde(skip_serializing_if = "Option::is_none")]
    history: Option<Vec<EventView>>,
}

#[derive(Debug, Serialize)]
pub(super) struct EventView {
    status: String,
    actor: String,
    note: String,
    at: String,
}

fn view(
    state: &AppState,
    c: Complaint,
    partner_contacts: Contacts,
    history: Option<Vec<ComplaintEvent>>,
) -> ComplaintView {
    let now = now_ms();
    let overdue = c.overdue(now);
    let handler = if c.routed_to == "platform" {
        HandlerView {
            party: "platform".into(),
            name: "platform".into(),
            contacts: state.complaints.platform_contacts.clone(),
        }
    } else {
        HandlerView {
            party: "partner".into(),
            name: c.partner.clone(),
            contacts: partner_contacts.clone(),
        }
    };
    ComplaintView {
        id: c.id,
        partner: c.partner,
        service_id: c.service_id,
        msisdn: c.msisdn,
        message_id: c.message_id,
        channel: c.channel,
        cause: c.cause,
        note: c.note,
        status: c.status,
        routed_to: c.routed_to,
        handler,
        partner_contacts,
        due_at: rfc3339(c.due_at),
        overdue,
        resolution: c.resolution,
        created_at: rfc3339(c.at),
        updated_at: rfc3339(c.updated_at),
        closed_at: c.closed_at.map(rfc3339),
        history: history.map(|h| {
            h.into_iter()
                .map(|e| EventView {
                    status: e.status,
                    actor: e.actor,
                    note: e.note,
                    at: rfc3339(e.at),
                })
                .collect()
        }),
    }
}

async fn full_view(state: &AppState, c: Complaint) -> Result<ComplaintView, ApiError> {
    let contacts = complaints::contacts(&state.store, c.partner_id).await?;
    let history = complaints::history(&state.store, c.id).await?;
    Ok(view(state, c, contacts, Some(history)))
}

/// A complaint as the platform received it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"partner": "acme", "service_id": 1, "msisdn": "13800138000", "channel": "hotline", "cause": "content", "note": "unwanted jokes"}))]
pub(super) struct FileComplaint {
    partner: String,
    service_id: Option<i64>,
    msisdn: Option<String>,
    message_id: Option<i64>,
    /// How it came (one of `[complaints] channels`); default `other`.
    channel: Option<String>,
    /// `content`, `channel`, `billing` or `unsubscribe`.
    cause: String,
    #[serde(default)]
    note: String,
}

/// `POST /v1/admin/complaints`: file a complaint; 201 with the complaint, routed
/// and due.
#[utoipa::path(
    post,
    path = "/v1/admin/complaints",
    tag = "complaints",
    request_body = FileComplaint,
    responses(
        (status = 201, description = "The complaint, routed and due", body = serde_json::Value),
        (status = 400, description = "`invalid-cause`, `invalid-note`, `invalid-msisdn`, `invalid-id`, `invalid-channel`"),
        (status = 404, description = "`not-found`: no such partner, service or message"),
    ),
)]
pub(super) async fn file(
    _: Admin,
    State(state): State<AppState>,
    body: Json<FileComplaint>,
) -> Result<(StatusCode, Json<ComplaintView>), ApiError> {
    let Json(body) = body;
    if !CAUSES.contains(&body.cause.as_str()) {
        return Err(ApiError::bad_request(
            "invalid-cause",
            format!("cause is one of {}", CAUSES.join(", ")),
        ));
    }
    if body.note.chars().count() > 2000 {
        return Err(ApiError::bad_request(
            "invalid-note",
            "a note is at most 2000 characters",
        ));
    }
    let msisdn = match &body.msisdn {
        None => None,
        Some(raw) => Some(crate::relay::routing::normalize_msisdn(raw).map_err(|_| {
            ApiError::bad_request(
                "invalid-msisdn",
                "msisdn is a mainland mobile number: 11 digits starting with 1, optionally +86",
            )
        })?),
    };
    let partner = crate::partners::get(&state.store, &body.partner).await?;
    if let Some(service_id) = body.service_id {
        let service_id = positive_id(service_id, "service_id")?;
        crate::services::get(&state.store, Some(partner.id), service_id).await?;
    }
    if let Some(message_id) = body.message_id {
        let message_id = positive_id(message_id, "message_id")?;
        crate::relay::messages::get(&state.store, message_id, Some(partner.id))
            .await?
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "no message {message_id} of partner {}",
                    partner.name
                ))
            })?;
    }
    let complaint = complaints::file(
        &state.store,
        &state.complaints,
        NewComplaint {
            partner_id: partner.id,
            service_id: body.service_id,
            msisdn,
            message_id: body.message_id,
            channel: body.channel.unwrap_or_else(|| "other".into()),
            cause: body.cause,
            note: body.note,
        },
        "admin",
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(full_view(&state, complaint).await?),
    ))
}

/// The query of `GET /v1/complaints`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// The admin's choice of partner (a partner key may name only itself).
    partner: Option<String>,
    /// `open`, `acknowledged`, `resolved` or `rejected`.
    status: Option<String>,
    /// `content`, `channel`, `billing` or `unsubscribe`.
    cause: Option<String>,
    /// `partner` or `platform`.
    routed_to: Option<String>,
    /// `true`: only complaints open or acknowledged past their due time.
    overdue: Option<bool>,
    /// Items per page, 1-500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// The `next` cursor of the previous page.
    after: Option<String>,
}

/// A query value that must be one of `allowed`: else 400 `code`.
fn one_of(
    value: Option<&str>,
    allowed: &[&str],
    code: &'static str,
    what: &str,
) -> Result<(), ApiError> {
    match value {
        Some(v) if !allowed.contains(&v) => Err(ApiError::bad_request(
            code,
            format!("{what} is one of {}", allowed.join(", ")),
        )),
        _ => Ok(()),
    }
}

/// `GET /v1/complaints`: newest first; a partner sees its own, the admin all.
#[utoipa::path(
    get,
    path = "/v1/complaints",
    tag = "complaints",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of complaints, newest first", body = Page<serde_json::Value>),
        (status = 400, description = "`invalid-status`, `invalid-cause`, `invalid-routed-to`"),
    ),
)]
pub(super) async fn list(
    caller: Caller,
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Page<ComplaintView>>, ApiError> {
    let page = PageQuery::new(query.limit, query.after.clone());
    page.check()?;
    let partner_id = scope(&state, &caller, query.partner.as_deref()).await?;
    let before = page.after::<i64>()?;
    let limit = page.fetch()?;
    one_of(
        query.status.as_deref(),
        &["open", "acknowledged", "resolved", "rejected"],
        "invalid-status",
        "status",
    )?;
    one_of(query.cause.as_deref(), &CAUSES, "invalid-cause", "cause")?;
    one_of(
        query.routed_to.as_deref(),
        &["partner", "platform"],
        "invalid-routed-to",
        "routed_to",
    )?;
    let rows = complaints::list(
        &state.store,
        &complaints::Filter {
            partner_id,
            status: query.status.as_deref(),
            cause: query.cause.as_deref(),
            routed_to: query.routed_to.as_deref(),
            overdue: query.overdue.unwrap_or(false),
            before,
            limit,
        },
    )
    .await?;
    let Page { items: rows, next } = Page::from_rows(rows, &page, |c| c.id)?;
    let mut known: HashMap<i64, Contacts> = HashMap::new();
    let mut items = Vec::with_capacity(rows.len());
    for c in rows {
        let contacts = match known.get(&c.partner_id) {
            Some(c) => c.clone(),
            None => {
                let found = complaints::contacts(&state.store, c.partner_id).await?;
                known.insert(c.partner_id, found.clone());
                found
            }
        };
        items.push(view(&state, c, contacts, None));
    }
    Ok(Json(Page { items, next }))
}

/// The partner a caller is limited to (`None`: the admin sees all).
fn own(caller: &Caller) -> Option<i64> {
    match caller {
        Caller::Admin => None,
        Caller::Partner(p) => Some(p.id),
    }
}

/// `GET /v1/complaints/{id}`: one complaint with its history.
#[utoipa::path(
    get,
    path = "/v1/complaints/{id}",
    tag = "complaints",
    params(("id" = String, Path, description = "The complaint id"), PartnerParam),
    responses(
        (status = 200, description = "The complaint with its history", body = serde_json::Value),
        (status = 400, description = "`invalid-id`"),
    ),
)]
pub(super) async fn detail(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<PartnerParam>,
) -> Result<Json<ComplaintView>, ApiError> {
    let id = parse_id(&id)?;
    // A partner naming another partner is refused (403); the admin may narrow.
    let scoped = scope(&state, &caller, query.partner.as_deref()).await?;
    let complaint = complaints::get(&state.store, id, scoped.or(own(&caller))).await?;
    Ok(Json(full_view(&state, complaint).await?))
}

/// What the handler says when it acts on a complaint.
#[derive(Debug, Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"resolution": "refunded and unsubscribed"}))]
pub(super) struct Action {
    /// How it was resolved (or why it was rejected); required for both.
    #[serde(default)]
    resolution: String,
    /// A note for `acknowledge`.
    #[serde(default)]
    note: String,
}

/// `POST /v1/complaints/{id}/{acknowledge|resolve|reject}`: the party it is
/// routed to acts on it.
#[utoipa::path(
    post,
    path = "/v1/complaints/{id}/{action}",
    tag = "complaints",
    params(
        ("id" = String, Path, description = "The complaint id"),
        ("action" = String, Path, description = "`acknowledge`, `resolve` or `reject`"),
    ),
    request_body = Action,
    responses(
        (status = 200, description = "The complaint after the action", body = serde_json::Value),
        (status = 400, description = "`invalid-id`, `invalid-resolution`, `invalid-note`, `invalid-action`"),
        (status = 409, description = "`wrong-state`: the complaint cannot take this action now"),
    ),
)]
pub(super) async fn act(
    caller: Caller,
    State(state): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    body: Json<Action>,
) -> Result<Json<ComplaintView>, ApiError> {
    let id = parse_id(&id)?;
    let Json(body) = body;
    let handler = match &caller {
        Caller::Admin => Handler::Platform,
        Caller::Partner(p) => Handler::Partner(p.id),
    };
    let text = if action == "acknowledge" {
        if !body.resolution.is_empty() {
            return Err(ApiError::bad_request(
                "invalid-resolution",
                "acknowledge takes a `note`; a `resolution` belongs to resolve or reject",
            ));
        }
        body.note
    } else {
        if !body.note.is_empty() {
            return Err(ApiError::bad_request(
                "invalid-note",
                format!("{action} takes a `resolution`, not a `note`"),
            ));
        }
        body.resolution
    };
    let complaint =
        complaints::act(&state.store, id, handler, &action, &text, &caller.actor()).await?;
    Ok(Json(full_view(&state, complaint).await?))
}

#[derive(Debug, Serialize)]
pub(super) struct RateView {
    partner: String,
    /// `null`: complaints that name no service, against all the partner's MTs.
    service_id: Option<i64>,
    complaints: i64,
    mts: i64,
    per_10k: i64,
    threshold_per_10k: i64,
    /// Fewest complaints before the rate is judged.
    min_complaints: i64,
    window_secs: u64,
    /// Whether the complaint-spike detector fires on it.
    spike: bool,
}

/// `GET /v1/complaints/rates`: complaints (channel causes aside) per 10,000 MTs
/// over `[compliance.detectors] complaint_window_secs`, per partner and service.
#[utoipa::path(
    get,
    path = "/v1/complaints/rates",
    tag = "complaints",
    params(PartnerParam),
    responses((status = 200, description = "Every rate, one page", body = Page<serde_json::Value>)),
)]
pub(super) async fn rates(
    caller: Caller,
    State(state): State<AppState>,
    Query(query): Query<PartnerParam>,
) -> Result<Json<Page<RateView>>, ApiError> {
    let partner_id = scope(&state, &caller, query.partner.as_deref()).await?;
    let config = &state.compliance.config().detectors;
    let mut names: HashMap<i64, String> = HashMap::new();
    let mut items = Vec::new();
    for rate in detectors::complaint_rates(&state.compliance, now_ms()).await? {
        if partner_id.is_some_and(|p| p != rate.partner_id) {
            continue;
        }
        let partner = match names.get(&rate.partner_id) {
            Some(n) => n.clone(),
            None => {
                let n = crate::partners::by_id(&state.store, rate.partner_id)
                    .await?
                    .name;
                names.insert(rate.partner_id, n.clone());
                n
            }
        };
        items.push(RateView {
            partner,
            service_id: rate.service_id,
            complaints: rate.complaints,
            mts: rate.mts,
            per_10k: rate.per_10k,
            threshold_per_10k: config.complaint_rate_per_10k,
            min_complaints: config.complaints,
            window_secs: config.complaint_window_secs,
            spike: rate.complaints >= config.complaints
                && rate.per_10k_reached(config.complaint_rate_per_10k),
        });
    }
    Ok(Json(Page { items, next: None }))
}

/// `GET /v1/contacts`: the partner's contacts (the admin names it with `?partner=`).
#[utoipa::path(
    get,
    path = "/v1/contacts",
    tag = "complaints",
    params(PartnerParam),
    responses((status = 200, description = "The partner's contacts", body = serde_json::Value)),
)]
pub(super) async fn contacts(
    ctx: PartnerContext,
    State(state): State<AppState>,
    _: Query<PartnerParam>,
) -> Result<Json<Contacts>, ApiError> {
    Ok(Json(
        complaints::contacts(&state.store, ctx.partner.id).await?,
    ))
}

/// `PUT /v1/contacts` `{customer_service: {name, phone, email}, technical_support:
/// {…}}`: set them (the partner itself, or the admin with `?partner=`).
#[utoipa::path(
    put,
    path = "/v1/contacts",
    tag = "complaints",
    params(PartnerParam),
    request_body(content = serde_json::Value, description = "`{customer_service: {name, phone, email}, technical_support: {name, phone, email}}`"),
    responses(
        (status = 200, description = "The contacts as stored", body = serde_json::Value),
        (status = 400, description = "`invalid-contacts`"),
    ),
)]
pub(super) async fn set_contacts(
    ctx: PartnerContext,
    State(state): State<AppState>,
    _: Query<PartnerParam>,
    body: Json<Contacts>,
) -> Result<Json<Contacts>, ApiError> {
    let Json(body) = body;
    Ok(Json(
        complaints::set_contacts(&state.store, ctx.partner.id, &body, &ctx.caller.actor()).await?,
    ))
}
