//! `GET /v1/alerts`: anomaly alerts. A partner reads its own and the
//! platform's (an operator's link or delivery rate, which concern every partner);
//! the admin reads every alert, or one partner's with `?partner=`. The billing
//! alerts (`/v1/billing/alerts`, `/v1/admin/billing/alerts`) are another list.

use axum::extract::State;
use axum::routing::get;
use serde::Deserialize;

use super::auth::{Caller, scope};
use super::extract::{Json, Query};
use super::page::{Page, PageQuery};
use super::{ApiError, AppState, Routes};
use crate::alerts::{self, Alert};

pub(super) fn router() -> Routes {
    Routes::new().route("/v1/alerts", get(list))
}

/// The query of `GET /v1/alerts`.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct AlertQuery {
    /// The admin's choice of partner (a partner key may name only itself).
    partner: Option<String>,
    /// `true`: open alerts only; `false`: ended ones only.
    active: Option<bool>,
    /// Items per page, 1-500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// The `next` cursor of the previous page.
    after: Option<String>,
}

/// `GET /v1/alerts`: anomaly alerts, newest first.
#[utoipa::path(
    get,
    path = "/v1/alerts",
    tag = "alerts",
    params(AlertQuery),
    responses((status = 200, description = "A page of alerts, newest first", body = Page<serde_json::Value>)),
)]
pub(super) async fn list(
    caller: Caller,
    State(state): State<AppState>,
    Query(query): Query<AlertQuery>,
) -> Result<Json<Page<Alert>>, ApiError> {
    let page = PageQuery::new(query.limit, query.after);
    page.check()?;
    let partner_id = scope(&state, &caller, query.partner.as_deref()).await?;
    let before = page.after::<i64>()?.unwrap_or(i64::MAX);
    let items = alerts::list(
        &state.store,
        partner_id,
        query.active,
        before,
        page.fetch()?,
    )
    .await?;
    Ok(Json(Page::from_rows(items, &page, |a| a.id)?))
}
