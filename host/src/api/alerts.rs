//! `GET /v1/alerts`: anomaly alerts. A partner reads its own and the
//! platform's (an operator's link or delivery rate, which concern every partner);
//! the admin reads every alert, or one partner's with `?partner=`. The billing
//! alerts (`/v1/billing/alerts`, `/v1/admin/billing/alerts`) are another list.

use axum::extract::State;
use axum::routing::get;
use serde::{Deserialize, Serialize};

use super::auth::{Caller, scope};
use super::extract::{Json, Query};
use super::{ApiError, AppState, Routes};
use crate::alerts::{self, Alert};

pub(super) fn router() -> Routes {
    Routes::new().route("/v1/alerts", get(list))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertQuery {
    partner: Option<String>,
    /// `true`: open alerts only; `false`: ended ones only.
    active: Option<bool>,
    /// 1-500, default 50.
    limit: Option<i64>,
    /// The `next` of a previous page.
    after: Option<String>,
}

/// A page of alerts, newest first (`next`: the cursor of the following page).
#[derive(Debug, Serialize)]
struct AlertPage {
    items: Vec<Alert>,
    next: Option<String>,
}

/// The cursor of a list paged by descending id.
pub(super) fn before_cursor(after: Option<&str>) -> Result<i64, ApiError> {
    match after {
        None => Ok(i64::MAX),
        Some(raw) => raw.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| {
            ApiError::bad_request(
                "invalid-cursor",
                format!("`{raw}` is not a cursor of this list"),
            )
        }),
    }
}

/// A page's limit: default 50, 1-500.
pub(super) fn page_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit {
        None => Ok(50),
        Some(n) if (1..=500).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad_request(
            "invalid-limit",
            format!("limit {n}: between 1 and 500"),
        )),
    }
}

async fn list(
    caller: Caller,
    State(state): State<AppState>,
    Query(query): Query<AlertQuery>,
) -> Result<Json<AlertPage>, ApiError> {
    let partner_id = scope(&state, &caller, query.partner.as_deref()).await?;
    let limit = page_limit(query.limit)?;
    let before = before_cursor(query.after.as_deref())?;
    let items = alerts::list(&state.store, partner_id, query.active, before, limit).await?;
    let next = (i64::try_from(items.len()).unwrap_or(0) == limit)
        .then(|| items.last().map(|a| a.id.to_string()))
        .flatten();
    Ok(Json(AlertPage { items, next }))
}
