//! `GET /v1/admin/history`: the regulator's question — what did number X
//! receive (and send), from which partner and service, when, with what text —
//! across the retention window, as JSON pages or CSV. Admin only.
//!
//! Each item is an MT to the number (`direction: "mt"`) or an MO from it
//! (`"mo"`), newest first, with its text, the SHA-256 of the text, and for MTs the
//! module version (id and SHA-256 of its component) that wrote it.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

use super::auth::Admin;
use super::extract::{Json, Query};
use super::page::{Page, PageQuery};
use super::{ApiError, AppState, Routes};
use crate::store::now_ms;

pub(super) fn router() -> Routes {
    Routes::new().route("/v1/admin/history", get(history))
}

/// The query of `GET /v1/admin/history`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct HistoryQuery {
    /// The number (required): 11 digits starting with 1, optionally +86.
    msisdn: Option<String>,
    /// RFC 3339, inclusive; default: the beginning.
    from: Option<String>,
    /// RFC 3339, exclusive; default: now.
    to: Option<String>,
    /// Only this partner's MTs and MOs.
    partner: Option<String>,
    /// Items per page, 1-500 (default 50); CSV 1-10000 (default 10000).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<u32>,
    /// The `next` cursor of the previous page (CSV: the `x-next-cursor` header).
    after: Option<String>,
    /// `json` (default) or `csv`.
    format: Option<String>,
}

/// One MT or MO of the number.
#[derive(Debug, Serialize)]
struct HistoryItem {
    /// `mt` (the number received it) or `mo` (the number sent it).
    direction: String,
    id: i64,
    msisdn: String,
    /// When it was queued (MT) or received (MO).
    at: String,
    partner: Option<String>,
    /// The service code.
    service: Option<String>,
    /// The service number it came from (MT) or was sent to (MO).
    service_number: Option<String>,
    text: String,
    content_sha256: Option<String>,
    module_version_id: Option<i64>,
    /// SHA-256 of the module version's component.
    module_sha256: Option<String>,
    operator: String,
    status: String,
    /// When it was final (MT: delivered, failed…; MO: routed).
    done_at: Option<String>,
}

type Row = (
    String,
    i64,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    Option<i64>,
    Option<String>,
    String,
    String,
    Option<i64>,
);

fn parse_time(raw: Option<&str>, field: &str, default: i64) -> Result<i64, ApiError> {
    match raw {
        None => Ok(default),
        Some(s) => s
            .parse::<jiff::Timestamp>()
            .map(|t| t.as_millisecond())
            .map_err(|_| {
                ApiError::bad_request(
                    "invalid-time",
                    format!(
                        "{field} `{s}` is not an RFC 3339 time such as 2026-11-30T03:12:00.000Z"
                    ),
                )
            }),
    }
}

/// `GET /v1/admin/history?msisdn=`: every MT and MO of one number, newest
/// first, as JSON pages or CSV (admin only, R-3.6).
#[utoipa::path(
    get,
    path = "/v1/admin/history",
    tag = "audit",
    params(HistoryQuery),
    responses(
        (status = 200, description = "A page of MTs and MOs, newest first (or CSV)", body = Page<serde_json::Value>),
        (status = 400, description = "`msisdn-required`, `invalid-msisdn`, `invalid-time`, `invalid-range`, `invalid-format`"),
    ),
)]
pub(super) async fn history(
    _: Admin,
    State(state): State<AppState>,
    Query(query): Query<HistoryQuery>,
) -> Result<Response, ApiError> {
    let csv = match query.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid-format",
                format!("format `{other}` is not json or csv"),
            ));
        }
    };
    // The paging input first, so a bad one is its own 400 whatever else is wrong.
    // The key of an item: `(at, direction, id)`.
    let cursor: Option<(i64, String, i64)> = PageQuery::new(None, query.after.clone()).after()?;
    if cursor.as_ref().is_some_and(|c| c.1 != "mt" && c.1 != "mo") {
        return Err(ApiError::bad_request(
            "invalid-cursor",
            "`after` must be the `next` of a previous page of this list",
        ));
    }
    // A CSV export takes up to 10,000 rows a request; JSON pages up to 500.
    let limit = if csv {
        match query.limit {
            None => 10_000,
            Some(n) if (1..=10_000).contains(&n) => i64::from(n),
            Some(n) => {
                return Err(ApiError::bad_request(
                    "invalid-limit",
                    format!("limit {n} is not between 1 and 10000"),
                ));
            }
        }
    } else {
        PageQuery::new(query.limit, None).limit()?
    };
    let raw = query
        .msisdn
        .as_deref()
        .ok_or_else(|| ApiError::bad_request("msisdn-required", "name the number with ?msisdn="))?;
    let msisdn = crate::relay::routing::normalize_msisdn(raw).map_err(|_| {
        ApiError::bad_request(
            "invalid-msisdn",
            "msisdn is a mainland mobile number: 11 digits starting with 1, optionally +86",
        )
    })?;
    let from = parse_time(query.from.as_deref(), "from", 0)?;
    let to = parse_time(query.to.as_deref(), "to", now_ms().saturating_add(1))?;
    if from >= to {
        return Err(ApiError::bad_request(
            "invalid-range",
            "`from` must be before `to`",
        ));
    }
    let partner = match &query.partner {
        Some(name) => Some(crate::partners::get(&state.store, name).await?.id),
        None => None,
    };
    let (c_at, c_dir, c_id) = cursor.unwrap_or((i64::MAX, String::new(), 0));
    let mut rows: Vec<Row> = sqlx::query_as(
        "SELECT h.direction, h.id, h.at, h.partner, h.service, h.service_number, h.text,
                h.content_sha256, h.module_version_id, h.module_sha256, h.operator, h.status, h.done_at
         FROM (
           SELECT 'mt' AS direction, m.id AS id, m.created_at AS at, p.name AS partner,
                  COALESCE(s.code, m.service) AS service, m.sender AS service_number, m.text AS text,
                  m.content_sha256 AS content_sha256, m.module_version_id AS module_version_id,
                  m.module_sha256 AS module_sha256, m.operator AS operator, m.status AS status,
                  m.done_at AS done_at
           FROM messages m LEFT JOIN partners p ON p.id = m.partner_id
                LEFT JOIN services s ON s.id = m.service_id
           WHERE m.recipient = $1 AND m.created_at >= $2 AND m.created_at < $3
             AND ($8 IS NULL OR m.partner_id = $8)
           UNION ALL
           SELECT 'mo', mo.id, mo.received_at, p.name, s.code, mo.destination, mo.text,
                  mo.content_sha256, NULL, NULL, mo.operator, mo.status, mo.routed_at
           FROM mo_messages mo LEFT JOIN services s ON s.id = mo.service_id
                LEFT JOIN partners p ON p.id = s.partner_id
           WHERE mo.source = $1 AND mo.received_at >= $2 AND mo.received_at < $3
             AND ($8 IS NULL OR s.partner_id = $8)
         ) h
         WHERE h.at < $4 OR (h.at = $4 AND (h.direction < $5 OR (h.direction = $5 AND h.id < $6)))
         ORDER BY h.at DESC, h.direction DESC, h.id DESC LIMIT $7",
    )
    .bind(&msisdn)
    .bind(from)
    .bind(to)
    .bind(c_at)
    .bind(&c_dir)
    .bind(c_id)
    .bind(limit + 1)
    .bind(partner)
    .fetch_all(state.store.pool())
    .await
    .map_err(crate::store::StoreError::from)?;
    let next = if rows.len() > usize::try_from(limit).unwrap_or(usize::MAX) {
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        rows.last()
            .map(|r| crate::api::page::cursor(&(r.2, r.0.clone(), r.1)))
    } else {
        None
    };
    let items: Vec<HistoryItem> = rows
        .into_iter()
        .map(|r| HistoryItem {
            direction: r.0,
            id: r.1,
            msisdn: msisdn.clone(),
            at: crate::api::time::format(r.2),
            partner: r.3,
            service: r.4,
            service_number: r.5,
            text: r.6,
            content_sha256: r.7,
            module_version_id: r.8,
            module_sha256: r.9,
            operator: r.10,
            status: r.11,
            done_at: r.12.map(crate::api::time::format),
        })
        .collect();
    if !csv {
        return Ok(Json(Page { items, next }).into_response());
    }
    let mut response = (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"history-{msisdn}.csv\""),
            ),
        ],
        render_csv(&items),
    )
        .into_response();
    if let Some(next) = next
        && let Ok(value) = axum::http::HeaderValue::from_str(&next)
    {
        response.headers_mut().insert("x-next-cursor", value);
    }
    Ok(response)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// RFC 4180 with a UTF-8 byte-order mark (spreadsheets read the Chinese text
/// right), CRLF line ends, one header line.
fn render_csv(items: &[HistoryItem]) -> String {
    let mut out = String::from("\u{feff}");
    out.push_str(
        "direction,at,msisdn,partner,service,service_number,text,content_sha256,module_version_id,module_sha256,operator,status,done_at\r\n",
    );
    let o = |v: &Option<String>| v.clone().unwrap_or_default();
    for i in items {
        let fields = [
            i.direction.clone(),
            i.at.clone(),
            i.msisdn.clone(),
            o(&i.partner),
            o(&i.service),
            o(&i.service_number),
            i.text.clone(),
            o(&i.content_sha256),
            i.module_version_id
                .map(|v| v.to_string())
                .unwrap_or_default(),
            o(&i.module_sha256),
            i.operator.clone(),
            i.status.clone(),
            o(&i.done_at),
        ];
        let row: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&row.join(","));
        out.push_str("\r\n");
    }
    out
}
