//! `Idempotency-Key` on every `POST` (issue 10 item 3, issue 14 item 1), as Stripe
//! and Twilio do it: a client that retries a request it never saw answered sends
//! the same key, and the platform does the work once. One middleware over the
//! whole API ([`layer`]), so no route can forget it; a module upload is the one
//! `POST` it leaves alone (the same bytes again already answer the same version).
//!
//! - The first request with a key claims it (`idempotency_keys`, one row per caller
//!   and key) and runs; its answer is stored with a fingerprint of the request
//!   (method, path with query, and the body with its JSON keys sorted, so
//!   whitespace and key order do not matter).
//! - The same key with the same request again answers the stored response, with
//!   `Idempotent-Replayed: true`; nothing is done twice.
//! - The same key with a different request: 422 `idempotency-key-reused`.
//! - The same key while the first request still runs: 409 `idempotency-key-in-use`
//!   (retry later). A claim left by a crashed request is taken over after a minute.
//! - Answers that may change on a retry (409 conflicts, 429 limits, 5xx) are not
//!   stored: the key is released. Keys are kept 24 hours.
//! - An answer that holds a secret shown once (a partner's API key: only its hash
//!   is kept anywhere, SECURITY.md) is never stored: its handler marks it
//!   [`ShownOnce`], and a replay answers 409 `idempotency-secret-shown-once`
//!   (the work was done once; a new key is one `POST /v1/partners/{name}/keys`
//!   away).

use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::auth::Caller;
use super::{ApiError, AppState};
use crate::store::{StoreError, now_ms};

/// How long a key is remembered.
const KEEP_MS: i64 = 24 * 3600 * 1000;
/// A claim older than this without an answer belongs to a request that died.
const ABANDONED_MS: i64 = 60 * 1000;

/// Requests with a key are buffered up to this many bytes (the JSON limit is
/// smaller; module uploads, the only larger bodies, are not covered).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// The one route whose POST is not covered: a module upload is idempotent by its
/// bytes already (the same bytes again answer the same version).
const NOT_COVERED: &[&str] = &["/v1/modules"];

/// A response extension for answers that carry a secret shown once: the layer
/// keeps the fact that the request was done, never the answer.
#[derive(Clone, Copy, Debug)]
pub struct ShownOnce;

/// What a replay of a [`ShownOnce`] answer says instead of the secret.
fn shown_once(status: StatusCode) -> Value {
    serde_json::json!({"error": {
        "code": "idempotency-secret-shown-once",
        "message": format!(
            "this request was already done (it answered {}); the key it issued is shown only once and is not kept: issue a new key with POST /v1/partners/{{name}}/keys",
            status.as_u16()
        ),
    }})
}

/// The request's `Idempotency-Key` header, if any: 1-255 visible ASCII characters.
fn key_of(parts: &Parts) -> Result<Option<String>, ApiError> {
    let Some(value) = parts.headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid-idempotency-key",
                "Idempotency-Key must be 1-255 visible ASCII characters (e.g. a UUID)",
            )
        })?;
    Ok(Some(key.to_string()))
}

/// JSON with its object keys sorted, so key order and whitespace do not change a
/// fingerprint; any other body as it is.
fn canonical(body: &[u8]) -> Vec<u8> {
    fn sort(v: Value) -> Value {
        match v {
            Value::Object(map) => {
                let sorted: std::collections::BTreeMap<String, Value> =
                    map.into_iter().map(|(k, v)| (k, sort(v))).collect();
                Value::Object(sorted.into_iter().collect())
            }
            Value::Array(items) => Value::Array(items.into_iter().map(sort).collect()),
            other => other,
        }
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => serde_json::to_vec(&sort(v)).unwrap_or_default(),
        Err(_) => body.to_vec(),
    }
}

/// The middleware over every `POST` (but a module upload): without the header it
/// does nothing; with one it does the request once per caller and key, see the
/// module docs.
pub async fn layer(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.method() != Method::POST || NOT_COVERED.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let key = match key_of(&parts) {
        Ok(Some(key)) => key,
        Ok(None) => return next.run(Request::from_parts(parts, body)).await,
        Err(e) => return e.into_response(),
    };
    let caller = match Caller::from_request_parts(&mut parts, &state).await {
        Ok(caller) => caller,
        Err(e) => return e.into_response(),
    };
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            "the request body is too large",
        )
        .into_response();
    };
    match once(&state, &caller, &key, &parts, &bytes, next).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn once(
    state: &AppState,
    caller: &Caller,
    key: &str,
    parts: &Parts,
    bytes: &axum::body::Bytes,
    next: Next,
) -> Result<Response, ApiError> {
    let scope = caller.actor();
    let mut hasher = Sha256::new();
    hasher.update(format!("{} {}\n", parts.method, parts.uri).as_bytes());
    hasher.update(canonical(bytes));
    let fingerprint = hex::encode(hasher.finalize());
    if let Some(replay) = claim(state, &scope, key, &fingerprint).await? {
        return Ok(replay);
    }
    let request = Request::from_parts(parts.clone(), Body::from(bytes.clone()));
    let response = next.run(request).await;
    let status = response.status();
    let (head, body) = response.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY)
        .await
        .unwrap_or_default();
    // Answers that may change on a retry are not kept: the key is released.
    let keep = !(status == StatusCode::CONFLICT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error())
        && serde_json::from_slice::<Value>(&body).is_ok();
    // A secret shown once is not kept: what a replay answers instead.
    let (kept_status, kept_body) = if head.extensions.get::<ShownOnce>().is_some() {
        (StatusCode::CONFLICT, shown_once(status).to_string())
    } else {
        (status, String::from_utf8_lossy(&body).into_owned())
    };
    let stored = if keep {
        sqlx::query(
            "UPDATE idempotency_keys SET status_code = $1, response = $2 WHERE scope = $3 AND key = $4",
        )
        .bind(i64::from(kept_status.as_u16()))
        .bind(kept_body)
        .bind(&scope)
        .bind(key)
        .execute(state.store.pool())
        .await
    } else {
        sqlx::query("DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2")
            .bind(&scope)
            .bind(key)
            .execute(state.store.pool())
            .await
    };
    stored.map_err(StoreError::from)?;
    Ok(Response::from_parts(head, Body::from(body)))
}

/// Claim the key for this request; `Some` is the answer to give instead of running.
async fn claim(
    state: &AppState,
    scope: &str,
    key: &str,
    fingerprint: &str,
) -> Result<Option<Response>, ApiError> {
    let pool = state.store.pool();
    let now = now_ms();
    sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
        .bind(now - KEEP_MS)
        .execute(pool)
        .await
        .map_err(StoreError::from)?;
    let claimed: Option<(String,)> = sqlx::query_as(
        "INSERT INTO idempotency_keys (scope, key, fingerprint, created_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (scope, key) DO NOTHING RETURNING key",
    )
    .bind(scope)
    .bind(key)
    .bind(fingerprint)
    .bind(now)
    .fetch_optional(pool)
    .await
    .map_err(StoreError::from)?;
    if claimed.is_some() {
        return Ok(None);
    }
    let (stored, status, response): (String, Option<i64>, Option<String>) = sqlx::query_as(
        "SELECT fingerprint, status_code, response FROM idempotency_keys
             WHERE scope = $1 AND key = $2",
    )
    .bind(scope)
    .bind(key)
    .fetch_one(pool)
    .await
    .map_err(StoreError::from)?;
    if stored != fingerprint {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency-key-reused",
            "this Idempotency-Key was used with a different request; use a new key for a new request",
        ));
    }
    let (Some(status), Some(response)) = (status, response) else {
        let taken_over = sqlx::query(
            "UPDATE idempotency_keys SET created_at = $1
             WHERE scope = $2 AND key = $3 AND status_code IS NULL AND created_at < $4",
        )
        .bind(now)
        .bind(scope)
        .bind(key)
        .bind(now - ABANDONED_MS)
        .execute(pool)
        .await
        .map_err(StoreError::from)?
        .rows_affected();
        if taken_over == 1 {
            return Ok(None);
        }
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "idempotency-key-in-use",
            "a request with this Idempotency-Key is still being processed; retry in a moment",
        ));
    };
    let status = u16::try_from(status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let body: Value = serde_json::from_str(&response).unwrap_or(Value::Null);
    // The stored bytes were JSON when kept (see `once`).
    let mut answer = (status, Json(body)).into_response();
    answer
        .headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    Ok(Some(answer))
}
