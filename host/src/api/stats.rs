//! `GET /v1/stats`: a partner's statistics per hour, day or month,
//! per service and operator, as JSON or CSV (`Accept: text/csv` or `?format=csv`).
//! A partner reads its own; the admin one partner (`?partner=`) or every partner.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use super::auth::{Caller, scope};
use super::extract::{Json, Query};
use super::page::{Page, PageQuery, cursor};
use super::{ApiError, AppState, Routes};
use crate::stats::query::{self, Granularity, StatsFilter, StatsRow};

pub(super) fn router() -> Routes {
    Routes::new().route("/v1/stats", get(stats))
}

/// The query string of `GET /v1/stats`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatsParams {
    /// `hour`, `day` (default) or `month`.
    pub granularity: Option<String>,
    /// First platform day (`YYYY-MM-DD`) or month (`YYYY-MM`, from its first day).
    /// Default: `to` for hours, 29 days before `to` for days, the first day of
    /// `to`'s month for months.
    pub from: Option<String>,
    /// Last platform day or month (to its last day), inclusive. Default: today.
    pub to: Option<String>,
    /// A service code of the partner.
    pub service: Option<String>,
    /// An operator name.
    pub operator: Option<String>,
    /// The admin: one partner's statistics (default every partner's).
    pub partner: Option<String>,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
    /// Rows per page, 1–500 (default 50); CSV has every row.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// The `next` cursor of the previous page.
    pub after: Option<String>,
}

/// One page of statistics rows (`items`), oldest period first, and the cursor of
/// the next page (`null` on the last): the shared [`Page`] with the range it
/// covers beside it.
#[derive(Debug, Serialize)]
pub struct StatsPage {
    pub granularity: &'static str,
    /// The platform days covered, inclusive.
    pub from: String,
    pub to: String,
    /// The platform time zone days and months are in.
    pub time_zone: &'static str,
    /// `items` and `next`.
    #[serde(flatten)]
    pub page: Page<StatsRow>,
}

/// The longest range of one request, in days.
const MAX_DAYS_HOURLY: i32 = 31;
const MAX_DAYS: i32 = 1100;

fn parse_bound(field: &'static str, s: &str, end: bool) -> Result<Date, ApiError> {
    let bad = || {
        ApiError::bad_request(
            "invalid-date",
            format!("`{field}` must be a day YYYY-MM-DD or a month YYYY-MM, not `{s}`"),
        )
    };
    if s.len() == 7 {
        let first: Date = format!("{s}-01").parse().map_err(|_| bad())?;
        return Ok(if end { first.last_of_month() } else { first });
    }
    if s.len() != 10 {
        return Err(bad());
    }
    s.parse().map_err(|_| bad())
}

/// `GET /v1/stats`: statistics per period, service and operator, as JSON pages
/// or CSV (`Accept: text/csv` or `?format=csv`).
#[utoipa::path(
    get,
    path = "/v1/stats",
    tag = "stats",
    params(StatsParams),
    responses(
        (status = 200, description = "`{granularity, from, to, time_zone, items, next}`, oldest period first (or CSV with every row)", body = serde_json::Value),
        (status = 400, description = "`invalid-granularity`, `invalid-format`, `invalid-date`, `invalid-range`, `invalid-operator`"),
    ),
)]
pub(super) async fn stats(
    caller: Caller,
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<StatsParams>,
) -> Result<Response, ApiError> {
    let granularity = match params.granularity.as_deref() {
        None => Granularity::Day,
        Some(g) => Granularity::parse(g).ok_or_else(|| {
            ApiError::bad_request(
                "invalid-granularity",
                format!("granularity must be hour, day or month, not `{g}`"),
            )
        })?,
    };
    let csv = match params.format.as_deref() {
        Some("csv") => true,
        Some("json") => false,
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid-format",
                format!("format must be json or csv, not `{other}`"),
            ));
        }
        None => headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/csv")),
    };
    // The rows are computed whole; the cursor is the offset of the next row.
    let paging = PageQuery::new(params.limit, params.after.clone());
    let limit = paging.limit()?;
    let offset: usize = paging.after()?.unwrap_or(0);
    let to = match params.to.as_deref() {
        Some(s) => parse_bound("to", s, true)?,
        None => crate::clock::day_of_ms(crate::store::now_ms()),
    };
    let from = match params.from.as_deref() {
        Some(s) => parse_bound("from", s, false)?,
        None => match granularity {
            Granularity::Hour => to,
            Granularity::Day => to.saturating_sub(jiff::Span::new().days(29)),
            Granularity::Month => to.first_of_month(),
        },
    };
    let days = (to - from).get_days();
    if days < 0 {
        return Err(ApiError::bad_request(
            "invalid-range",
            format!("`from` ({from}) is after `to` ({to})"),
        ));
    }
    let max = if granularity == Granularity::Hour {
        MAX_DAYS_HOURLY
    } else {
        MAX_DAYS
    };
    if days >= max {
        return Err(ApiError::bad_request(
            "invalid-range",
            format!("at most {max} days per request at this granularity"),
        ));
    }
    let partner_id = scope(&state, &caller, params.partner.as_deref()).await?;
    let service_id = match params.service.as_deref() {
        None => None,
        Some(code) => Some(
            query::service_id(&state.store, partner_id, code)
                .await?
                .ok_or_else(|| ApiError::not_found(format!("no service `{code}`")))?,
        ),
    };
    if let Some(op) = &params.operator
        && (op.is_empty() || op.len() > 64)
    {
        return Err(ApiError::bad_request(
            "invalid-operator",
            "operator must be 1 to 64 characters",
        ));
    }
    let filter = StatsFilter {
        partner_id,
        granularity,
        from_day: from.to_string(),
        to_day: to.to_string(),
        service_id,
        operator: params.operator,
    };
    let rows = query::read(&state.store, &filter).await?;
    if csv {
        let mut response = query::csv(&rows).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/csv; charset=utf-8"),
        );
        return Ok(response);
    }
    let limit = usize::try_from(limit).unwrap_or(50);
    let end = offset.saturating_add(limit).min(rows.len());
    let next = (end < rows.len()).then(|| cursor(&end));
    let items = rows
        .into_iter()
        .skip(offset)
        .take(limit)
        .collect::<Vec<_>>();
    Ok(Json(StatsPage {
        granularity: match granularity {
            Granularity::Hour => "hour",
            Granularity::Day => "day",
            Granularity::Month => "month",
        },
        from: from.to_string(),
        to: to.to_string(),
        time_zone: crate::clock::time_zone_name(),
        page: Page { items, next },
    })
    .into_response())
}
