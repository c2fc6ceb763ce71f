//! `/v1/messages`: MTs with their segments and status history (partner-scoped),
//! `/v1/admin/test-messages`: test sends through the same outbox (agreement 7.3), and
//! `/v1/admin/relay/binds`: the state of every operator bind.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::{Admin, Caller, scope};
use super::extract::{Json, NoParams, PartnerParam, Path, Query};
use super::{ApiError, AppState, Routes};
use crate::relay::OutboxError;
use crate::relay::messages::{self, MessageFilter};

pub(super) fn router() -> Routes {
    Routes::new()
        .route("/v1/messages", get(list))
        .route("/v1/messages/{id}", get(detail))
        .route("/v1/admin/test-messages", post(test_send))
        .route("/v1/admin/relay/binds", get(binds))
}

/// Every operator bind: link state, attempts since it was last stable, binds so far.
async fn binds(
    _admin: Admin,
    State(state): State<AppState>,
    Query(_): Query<NoParams>,
) -> Json<Value> {
    Json(json!({ "binds": state.relay.binds() }))
}

/// The query string. Not `#[serde(flatten)]`: flattened fields lose their types
/// in query strings (`limit=30` would not parse as a number).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    partner: Option<String>,
    status: Option<String>,
    recipient: Option<String>,
    before: Option<i64>,
    limit: Option<i64>,
}

async fn list(
    caller: Caller,
    State(state): State<AppState>,
    query: Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query;
    let partner = scope(&state, &caller, query.partner.as_deref()).await?;
    let filter = MessageFilter {
        status: query.status,
        recipient: query.recipient,
        before: query.before,
        limit: query.limit,
    };
    let items = messages::list(&state.store, partner, &filter).await?;
    Ok(Json(json!({ "messages": items })))
}

async fn detail(
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
        Some(message) => Ok(Json(json!(message))),
        None => Err(ApiError::not_found(format!("no message {id}"))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestSend {
    to: String,
    text: String,
    operator: Option<String>,
}

/// Queue a test MT (admin only, listed numbers only, never billed).
async fn test_send(
    _: Admin,
    State(state): State<AppState>,
    body: Json<TestSend>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(body) = body;
    let id = state
        .relay
        .enqueue_test(&body.to, &body.text, body.operator)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": id, "status": "queued" })),
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
