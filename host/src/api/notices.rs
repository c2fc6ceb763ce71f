//! `/v1/notices`: what the platform told a partner (a push run that gave up…).
//! A partner reads its own; the admin reads everyone's, or one partner's with
//! `?partner=`.

use axum::extract::State;
use axum::routing::get;

use super::auth::{Caller, scope};
use super::extract::{Json, Query};
use super::page::{Page, PartnerPageQuery};
use super::{ApiError, AppState, Routes};
use crate::notices::{self, Notice};

pub(super) fn router() -> Routes {
    Routes::new().route("/v1/notices", get(list))
}

/// `GET /v1/notices`: notices, newest first.
#[utoipa::path(
    get,
    path = "/v1/notices",
    tag = "messages",
    params(PartnerPageQuery),
    responses((status = 200, description = "A page of notices, newest first", body = Page<serde_json::Value>)),
)]
pub(super) async fn list(
    caller: Caller,
    State(state): State<AppState>,
    Query(query): Query<PartnerPageQuery>,
) -> Result<Json<Page<Notice>>, ApiError> {
    let page = query.page();
    let partner_id = scope(&state, &caller, query.partner.as_deref()).await?;
    let notices = notices::list(
        &state.store,
        partner_id,
        page.after::<i64>()?,
        page.fetch()?,
    )
    .await?;
    Ok(Json(Page::from_rows(notices, &page, |n| n.id)?))
}
