//! `/v1/partners`: the admin creates partners and issues their keys.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Admin;
use super::extract::{Json, NoParams, OptionalJson, Path, Query};
use super::{ApiError, AppState, Routes};
use crate::partners;

pub(super) fn router() -> Routes {
    Routes::new()
        .route("/v1/partners", post(create).get(list))
        .route("/v1/partners/{name}/keys", post(issue_key))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPartner {
    name: String,
    display_name: String,
}

async fn create(
    _: Admin,
    State(state): State<AppState>,
    body: Json<NewPartner>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(body) = body;
    let (partner, key) = partners::create(&state.store, &body.name, &body.display_name).await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({ "partner": partner, "api_key": key.key, "note": "the key is shown once; store it now" }),
        ),
    ))
}

async fn list(
    _: Admin,
    State(state): State<AppState>,
    _: Query<NoParams>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        json!({ "partners": partners::list(&state.store).await? }),
    ))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct KeyRequest {
    #[serde(default)]
    revoke_others: bool,
}

async fn issue_key(
    _: Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
    OptionalJson(body): OptionalJson<KeyRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let request = body.unwrap_or_default();
    let key = partners::issue_key(&state.store, &name, request.revoke_others).await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({ "api_key": key.key, "prefix": key.prefix, "revoked_others": request.revoke_others }),
        ),
    ))
}
