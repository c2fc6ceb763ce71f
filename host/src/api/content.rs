//! `/v1/content/{collection}`: a partner's content library, which its modules read.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::PartnerContext;
use super::extract::{Json, Path, Query};
use super::{ApiError, AppState, Routes};
use crate::content::{self, NewItem};

pub(super) fn router() -> Routes {
    Routes::new().route("/v1/content/{collection}", post(add).get(list))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddItems {
    items: Vec<NewItem>,
}

async fn add(
    ctx: PartnerContext,
    State(state): State<AppState>,
    Path(collection): Path<String>,
    body: Json<AddItems>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(body) = body;
    let items = content::add(&state.store, ctx.partner.id, &collection, body.items).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "collection": collection, "items": items })),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    #[serde(rename = "partner")]
    _partner: Option<String>,
    #[serde(default)]
    offset: i64,
    #[serde(default = "default_limit")]
    limit: i64,
}

fn default_limit() -> i64 {
    100
}

async fn list(
    ctx: PartnerContext,
    State(state): State<AppState>,
    Path(collection): Path<String>,
    page: Query<Page>,
) -> Result<Json<Value>, ApiError> {
    let Query(page) = page;
    let items = content::list(
        &state.store,
        ctx.partner.id,
        &collection,
        page.offset,
        page.limit,
    )
    .await?;
    Ok(Json(json!({ "collection": collection, "items": items })))
}
