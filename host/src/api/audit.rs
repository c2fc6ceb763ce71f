//! The audit log over HTTP (R-3.6, issue 15 item 6): the layer that records every
//! mutating request made with the admin key, `GET /v1/admin/audit` (the chain,
//! newest first) and `GET /v1/admin/audit/verify` (the same check as `tongdao
//! audit verify`).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::auth::Admin;
use super::extract::{Json, NoParams, Query};
use super::page::{Page, PageQuery};
use super::{ApiError, AppState, Routes};
use crate::audit::{self, NewEntry, Verdict};
use crate::partners;

pub(super) fn router() -> Routes {
    Routes::new()
        .route("/v1/admin/audit", get(list))
        .route("/v1/admin/audit/verify", get(verify))
}

/// One audit row as the API shows it.
#[derive(Debug, Serialize)]
pub(super) struct AuditItem {
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
#[utoipa::path(
    get,
    path = "/v1/admin/audit",
    tag = "audit",
    params(PageQuery),
    responses((status = 200, description = "A page of the audit chain, newest first", body = Page<serde_json::Value>)),
)]
pub(super) async fn list(
    _: Admin,
    State(state): State<AppState>,
    Query(query): Query<PageQuery>,
) -> Result<Json<Page<AuditItem>>, ApiError> {
    query.check()?;
    let rows = audit::list(&state.store, query.after::<i64>()?, query.fetch()?).await?;
    let page = Page::from_rows(rows, &query, |r| r.id)?;
    Ok(Json(page.map(|e| AuditItem {
        id: e.id,
        at: crate::api::time::format(e.at),
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
    })))
}

/// `GET /v1/admin/audit/verify`: `{"result":"intact","rows","last_hash"}` or
/// `{"result":"broken","row","reason"}` (both 200: the check ran).
#[utoipa::path(
    get,
    path = "/v1/admin/audit/verify",
    tag = "audit",
    responses((status = 200, description = "The verdict on the chain", body = serde_json::Value)),
)]
pub(super) async fn verify(
    _: Admin,
    State(state): State<AppState>,
    _: Query<NoParams>,
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
    record_admin_request(&state.store, "", request, next).await
}

/// Run a mutating request the admin made (through the API or the console) and
/// append it to the chain: method, matched route, the real path and query (behind
/// `mount`, where the router is nested: `/console`), body SHA-256, status and
/// `x-request-id`. A failed append is logged as an error; the answer stands (the
/// action is done).
pub(crate) async fn record_admin_request(
    store: &crate::store::Store,
    mount: &str,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().to_string();
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let detail = request
        .uri()
        .path_and_query()
        .map(|p| format!("{mount}{p}"))
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
    if let Err(e) = audit::append(store, entry).await {
        tracing::error!(error = %e, "audit log append failed");
    }
    response
}
