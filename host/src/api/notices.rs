//! `/v1/notices`: what the platform told a partner (a push run that gave up…).
//! A partner reads its own; the admin reads everyone's, or one partner's with
//! `?partner=`.

use axum::extract::State;
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::{Caller, scope};
use super::extract::{Json, Query};
use super::{ApiError, AppState, Routes};
use crate::notices;

pub(super) fn router() -> Routes {
    Routes::new().route("/v1/notices", get(list))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoticeQuery {
    partner: Option<String>,
    before: Option<i64>,
    limit: Option<i64>,
}

async fn list(
    caller: Caller,
    State(state): State<AppState>,
    Query(query): Query<NoticeQuery>,
) -> Result<Json<Value>, ApiError> {
    let partner_id = scope(&state, &caller, query.partner.as_deref()).await?;
    let notices = notices::list(
        &state.store,
        partner_id,
        query.before,
        query.limit.unwrap_or(50),
    )
    .await?;
    Ok(Json(json!({ "notices": notices })))
}
