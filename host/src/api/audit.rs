//! The audit log over HTTP (R-3.6, issue 15 item 6): the layer that records every
//! mutating request made with the admin key, `GET /v1/admin/audit` (the chain,
//! newest first) and `GET /v1/admin/audit/verify` (the same check as `tongdao
//! audit verify`).
//!
//! Also the list shape this branch's new lists share (`Page`: `{"items": [...],
//! "next": cursor | null}`, `?limit=` 1..=500, default 50) and RFC 3339 times.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::auth::Admin;
use super::extract::{Json, Query};
use super::{ApiError, AppState, Routes};
use crate::audit::{self, NewEntry, Verdict};
use crate::partners;

pub(super) fn router() -> Routes {
    Routes::new()
        .route("/v1/admin/audit", get(list))
        .route("/v1/admin/audit/verify", get(verify))
}

/// One page of a list: `items` newest first and the cursor of the next page
/// (`?after=`), `null` on the last. (The shared `api/page.rs` type replaces it
/// once merged.)
#[derive(Debug, Serialize)]
pub(super) struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// `?limit=`: default 50, 1 to 500, else 400 `invalid-limit`.
pub(super) fn page_limit(raw: Option<i64>) -> Result<i64, ApiError> {
    match raw {
        None => Ok(50),
        Some(n) if (1..=500).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad_request(
            "invalid-limit",
            format!("limit {n} is not between 1 and 500"),
        )),
    }
}

/// An id cursor (`?after=` from a previous page): 400 `invalid-cursor` if it is
/// not one.
pub(super) fn id_cursor(raw: Option<&str>) -> Result<Option<i64>, ApiError> {
    raw.map(|c| {
        c.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
            ApiError::bad_request(
                "invalid-cursor",
                format!("`{c}` is not a cursor of this list"),
            )
        })
    })
    .transpose()
}

/// Unix ms as RFC 3339 in UTC with milliseconds: `2026-11-30T03:12:00.123Z`.
pub(super) fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    limit: Option<i64>,
    after: Option<String>,
}

/// One audit row as the API shows it.
#[derive(Debug, Serialize)]
struct AuditItem {
    id: i64,
    at: String,
    actor: String,
    action: String,
    method: Option<String>,
    path: Option<String>,
    status: Option<i64>,
    body_sha256: Option<String>,
    request_id: Option<String>,
    detail: String,
    prev_hash: String,
    hash: String,
}

/// `GET /v1/admin/audit?limit=&after=`: the chain newest first (admin only).
async fn list(
    _: Admin,
    State(state): State<AppState>,
    Query(query): Query<AuditQuery>,
) -> Result<Json<Page<AuditItem>>, ApiError> {
    let limit = page_limit(query.limit)?;
    let before = id_cursor(query.after.as_deref())?;
    let rows = audit::list(&state.store, before, limit).await?;
    let next = (i64::try_from(rows.len()).unwrap_or(0) == limit)
        .then(|| rows.last().map(|r| r.id.to_string()))
        .flatten();
    let items = rows
        .into_iter()
        .map(|e| AuditItem {
            id: e.id,
            at: rfc3339(e.at),
            actor: e.actor,
            action: e.action,
            method: e.method,
            path: e.path,
            status: e.status,
            body_sha256: e.body_sha256,
            request_id: e.request_id,
            detail: e.detail,
            prev_hash: e.prev_hash,
            hash: e.hash,
        })
        .collect();
    Ok(Json(Page { items, next }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoQuery {}

/// `GET /v1/admin/audit/verify`: `{"result":"intact","rows","last_hash"}` or
/// `{"result":"broken","row","reason"}` (both 200: the check ran).
async fn verify(
    _: Admin,
    State(state): State<AppState>,
    _: Query<NoQuery>,
) -> Result<Json<Verdict>, ApiError> {
    Ok(Json(audit::verify(&state.store).await?))
}

/// A request body that feeds every data frame it yields to a SHA-256, so the
/// audit layer knows the digest of what the handler read without buffering the
/// body or hiding its length (the body limits still answer 413 from it).
struct HashingBody {
    inner: Body,
    hasher: Arc<Mutex<Sha256>>,
}

impl HttpBody for HashingBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let poll = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &poll
            && let Some(data) = frame.data_ref()
            && let Ok(mut h) = self.hasher.lock()
        {
            h.update(data);
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

fn is_admin(state: &AppState, request: &Request) -> bool {
    request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .is_some_and(|key| partners::hash_key(key) == state.admin_key_hash)
}

/// The audit layer: after the handler answered a `POST`, `PUT`, `PATCH` or
/// `DELETE` made with the admin key, append method, matched route, the real
/// path and query, caller, body SHA-256, status and `x-request-id` to the chain.
/// A failed append is logged as an error; the answer stands (the action is done).
pub(super) async fn record(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let mutating = matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    if !mutating || !is_admin(&state, &request) {
        return next.run(request).await;
    }
    let method = request.method().to_string();
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let detail = request
        .uri()
        .path_and_query()
        .map(ToString::to_string)
        .unwrap_or_default();
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let hasher = Arc::new(Mutex::new(Sha256::new()));
    let (parts, body) = request.into_parts();
    let body = Body::new(HashingBody {
        inner: body,
        hasher: hasher.clone(),
    });
    let response = next.run(Request::from_parts(parts, body)).await;
    let body_sha256 = hasher
        .lock()
        .ok()
        .map(|h| hex::encode(h.clone().finalize()));
    let status = response.status();
    let entry = NewEntry {
        actor: "admin".into(),
        action: "http".into(),
        method: Some(method),
        path,
        status: Some(i64::from(status.as_u16())),
        body_sha256,
        request_id,
        detail,
    };
    if let Err(e) = audit::append(&state.store, entry).await {
        tracing::error!(error = %e, "audit log append failed");
    }
    response
}
