//! `/v1/content/{collection}`: a partner's content library, which its modules read.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::PartnerContext;
use super::extract::{Json, Path, Query};
use super::page::{Page, PageQuery, PartnerPageQuery};
use super::{ApiError, AppState, Routes};
use crate::content::{self, Item, NewItem};

pub(super) fn router() -> Routes {
    Routes::new().route("/v1/content/{collection}", post(add).get(list))
}

/// Items to add to a collection.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"items": [{"id": "joke-1", "text": "今天的笑话……", "tags": ["daily"]}]}))]
pub(super) struct AddItems {
    items: Vec<NewItem>,
}

/// The items just added.
#[derive(Serialize, ToSchema)]
pub(super) struct Added {
    collection: String,
    items: Vec<Item>,
}

/// `POST /v1/content/{collection}`: add items (admin: `?partner=`).
#[utoipa::path(
    post,
    path = "/v1/content/{collection}",
    tag = "content",
    params(
        ("collection" = String, Path, description = "1-64 characters of a-z, 0-9, `_`, `-`"),
        ("partner" = Option<String>, Query, description = "The admin names the partner"),
    ),
    request_body = AddItems,
    responses(
        (status = 201, description = "Added", body = Added),
        (status = 400, description = "`invalid-content`, `partner-required`"),
        (status = 409, description = "`duplicate-item`"),
    ),
)]
pub(super) async fn add(
    ctx: PartnerContext,
    State(state): State<AppState>,
    Path(collection): Path<String>,
    body: Json<AddItems>,
) -> Result<(StatusCode, Json<Added>), ApiError> {
    let Json(body) = body;
    let items = content::add(&state.store, ctx.partner.id, &collection, body.items).await?;
    Ok((StatusCode::CREATED, Json(Added { collection, items })))
}

/// `GET /v1/content/{collection}`: the items in upload order, paged.
#[utoipa::path(
    get,
    path = "/v1/content/{collection}",
    tag = "content",
    params(
        ("collection" = String, Path, description = "1-64 characters of a-z, 0-9, `_`, `-`"),
        PartnerPageQuery,
    ),
    responses(
        (status = 200, description = "A page of items, in upload order", body = Page<Item>),
        (status = 400, description = "`invalid-content`, `partner-required`"),
    ),
)]
pub(super) async fn list(
    ctx: PartnerContext,
    State(state): State<AppState>,
    Path(collection): Path<String>,
    Query(query): Query<PartnerPageQuery>,
) -> Result<Json<Page<Item>>, ApiError> {
    let page: PageQuery = query.page();
    let items = content::list(
        &state.store,
        ctx.partner.id,
        &collection,
        page.after::<i64>()?.unwrap_or(i64::MIN),
        page.fetch()?,
    )
    .await?;
    Ok(Json(Page::from_rows(items, &page, |i| i.position)?))
}
