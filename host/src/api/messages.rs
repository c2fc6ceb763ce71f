//! `/v1/messages`: MTs with their segments and status history (partner-scoped),
//! `/v1/admin/test-messages`: test sends through the same outbox (agreement 7.3), and
//! `/v1/admin/relay/binds`: the state of every operator bind.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::auth::{Admin, Caller, scope};
use super::extract::{Json, NoParams, PartnerParam, Path, Query};
use super::page::{Page, PageQuery};
use super::{ApiError, AppState, Routes};
use crate::relay::OutboxError;
use crate::relay::messages::{self, MessageFilter, MessageSummary};

pub(super) fn router() -> Routes {
    Routes::new()
        .route("/v1/messages", get(list))
        .route("/v1/messages/{id}", get(detail))
        .route("/v1/admin/test-messages", post(test_send))
        .route("/v1/admin/relay/binds", get(binds))
}

/// Every operator bind.
#[derive(Serialize, ToSchema)]
pub(super) struct Binds {
    #[schema(value_type = Vec<Object>)]
    binds: Vec<crate::relay::BindStatus>,
}

/// `GET /v1/admin/relay/binds`: every operator bind: link state, attempts since it
/// was last stable, binds so far.
#[utoipa::path(
    get,
    path = "/v1/admin/relay/binds",
    tag = "messages",
    responses((status = 200, description = "Every bind", body = Binds)),
)]
pub(super) async fn binds(
    _admin: Admin,
    State(state): State<AppState>,
    Query(_): Query<NoParams>,
) -> Json<Binds> {
    Json(Binds {
        binds: state.relay.binds(),
    })
}

/// The query string. Not `#[serde(flatten)]`: flattened fields lose their types
/// in query strings (`limit=30` would not parse as a number).
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// The admin's choice of partner (a partner key may name only itself).
    partner: Option<String>,
    /// `queued`, `submitted`, `delivered`, `failed`, …
    status: Option<String>,
    /// One recipient (MSISDN as stored: 11 digits).
    recipient: Option<String>,
    /// Items per page, 1-500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// The `next` cursor of the previous page.
    after: Option<String>,
}

/// `GET /v1/messages`: MTs, newest first.
#[utoipa::path(
    get,
    path = "/v1/messages",
    tag = "messages",
    params(ListQuery),
    responses((status = 200, description = "A page of MTs, newest first", body = Page<serde_json::Value>)),
)]
pub(super) async fn list(
    caller: Caller,
    State(state): State<AppState>,
    query: Query<ListQuery>,
) -> Result<Json<Page<MessageSummary>>, ApiError> {
    let Query(query) = query;
    let page = PageQuery::new(query.limit, query.after);
    let partner = scope(&state, &caller, query.partner.as_deref()).await?;
    let filter = MessageFilter {
        status: query.status,
        recipient: query.recipient,
        before: page.after::<i64>()?,
        limit: Some(page.fetch()?),
    };
    let items = messages::list(&state.store, partner, &filter).await?;
    Ok(Json(Page::from_rows(items, &page, |m| m.id)?))
}

/// `GET /v1/messages/{id}`: one MT with its segments and status history.
#[utoipa::path(
    get,
    path = "/v1/messages/{id}",
    tag = "messages",
    params(("id" = String, Path, description = "The message id"), PartnerParam),
    responses(
        (status = 200, description = "The MT, its segments, operator ids and history", body = serde_json::Value),
        (status = 400, description = "`invalid-id`"),
    ),
)]
pub(super) async fn detail(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<PartnerParam>,
) -> Result<Json<Value>, ApiError> {
    let id: i64 = id.parse().ok().filter(|id: &i64| *id > 0).ok_or_else(|| {
        ApiError::bad_request("invalid-id", format!("`{id}` is not a message id"))
    })?;
    let partner = scope(&state, &caller, query.partner.as_deref()).await?;
    match messages::get(&state.store, id, partner).await? {
        Some(message) => Ok(Json(serde_json::json!(message))),
        None => Err(ApiError::not_found(format!("no message {id}"))),
    }
}

/// A test MT.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"to": "13800138000", "text": "通道测试 test", "operator": "mobile"}))]
pub(super) struct TestSend {
    /// A number on the test list.
    to: String,
    text: String,
    /// Force an operator (default: by the number's prefix).
    operator: Option<String>,
}

/// A queued test MT.
#[derive(Serialize, ToSchema)]
pub(super) struct Queued {
    id: i64,
    status: &'static str,
}

/// `POST /v1/admin/test-messages`: queue a test MT (listed numbers only, never billed).
#[utoipa::path(
    post,
    path = "/v1/admin/test-messages",
    tag = "messages",
    request_body = TestSend,
    responses(
        (status = 201, description = "Queued", body = Queued),
        (status = 400, description = "`invalid-text`, `unknown-operator`"),
        (status = 403, description = "`forbidden`: not a listed test number"),
        (status = 422, description = "`unroutable` and the compliance codes"),
        (status = 429, description = "`notice-cap`"),
    ),
)]
pub(super) async fn test_send(
    _: Admin,
    State(state): State<AppState>,
    body: Json<TestSend>,
) -> Result<(StatusCode, Json<Queued>), ApiError> {
    let Json(body) = body;
    let id = state
        .relay
        .enqueue_test(&body.to, &body.text, body.operator)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(Queued {
            id,
            status: "queued",
        }),
    ))
}

impl From<OutboxError> for ApiError {
    fn from(e: OutboxError) -> Self {
        let message = e.to_string();
        match e {
            OutboxError::Route(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unroutable", message)
            }
            OutboxError::EmptyText | OutboxError::TooLong(_) => {
                ApiError::bad_request("invalid-text", message)
            }
            OutboxError::UnknownOperator(_) => ApiError::bad_request("unknown-operator", message),
            OutboxError::NotATestNumber(_) => ApiError::forbidden(message),
            OutboxError::Blocked(b) => b.into(),
            OutboxError::Store(e) => e.into(),
        }
    }
}
