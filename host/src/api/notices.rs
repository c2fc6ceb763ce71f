//! `/v1/notices`: what the platform told a partner (a push run that gave up…).
//! A partner reads its own; the admin reads everyone's, or one partner's with
//! `?partner=`.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Caller;
use super::{ApiError, AppState};
use crate::notices;

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/v1/notices", get(list))
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
    query: Result<Query<NoticeQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query?;
    let partner_id = match (&caller, &query.partner) {
        (Caller::Admin, None) => None,
        (Caller::Admin, Some(name)) => Some(crate::partners::get(&state.store, name).await?.id),
        (Caller::Partner(partner), Some(name)) if *name != partner.name => {
            return Err(ApiError::forbidden(
                "a partner key reads only its own notices; leave out `partner`",
            ));
        }
        (Caller::Partner(partner), _) => Some(partner.id),
    };
    let notices = notices::list(
        &state.store,
        partner_id,
        query.before,
        query.limit.unwrap_or(50),
    )
    .await?;
    Ok(Json(json!({ "notices": notices })))
}
