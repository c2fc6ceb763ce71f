//! `Idempotency-Key` on the POST routes that create or send (issue 10 item 3), as
//! Stripe and Twilio do it: a client that retries a request it never saw answered
//! sends the same key, and the platform does the work once.
//!
//! - The first request with a key claims it (`idempotency_keys`, one row per caller
//!   and key) and runs; its answer is stored with a fingerprint of the request
//!   (method, path and the parsed body, so whitespace and key order do not matter).
//! - The same key with the same request again answers the stored response, with
//!   `Idempotent-Replayed: true`; nothing is done twice.
//! - The same key with a different request: 422 `idempotency-key-reused`.
//! - The same key while the first request still runs: 409 `idempotency-key-in-use`
//!   (retry later). A claim left by a crashed request is taken over after a minute.
//! - Answers that may change on a retry (409 conflicts, 429 limits, 5xx) are not
//!   stored: the key is released. Keys are kept 24 hours.

use std::future::Future;

use axum::Json;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::auth::Caller;
use super::{ApiError, AppState};
use crate::store::{StoreError, now_ms};

/// How long a key is remembered.
const KEEP_MS: i64 = 24 * 3600 * 1000;
/// A claim older than this without an answer belongs to a request that died.
const ABANDONED_MS: i64 = 60 * 1000;

/// The request's `Idempotency-Key` header, if any: 1-255 visible ASCII characters.
#[derive(Debug, Clone)]
pub struct IdempotencyKey(pub Option<String>);

impl FromRequestParts<AppState> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get("idempotency-key") else {
            return Ok(Self(None));
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
        Ok(Self(Some(key.to_string())))
    }
}

/// Run `work` once per caller and key: the first time it runs and its answer is
/// kept; a repeat of the same request gets that answer; see the module docs.
pub async fn once<F, Fut>(
    state: &AppState,
    caller: &Caller,
    key: &IdempotencyKey,
    route: &str,
    request: &impl Serialize,
    work: F,
) -> Result<Response, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<(StatusCode, Value), ApiError>>,
{
    let Some(key) = &key.0 else {
        return work()
            .await
            .map(|(status, body)| (status, Json(body)).into_response());
    };
    let scope = caller.actor();
    let body = serde_json::to_string(request).unwrap_or_default();
    let fingerprint = hex::encode(Sha256::digest(format!("{route}\n{body}").as_bytes()));
    if let Some(replay) = claim(state, &scope, key, &fingerprint).await? {
        return Ok(replay);
    }
    let result = work().await;
    let keep = match &result {
        Ok((status, body)) => Some((*status, body.clone())),
        Err(e)
            if e.status.is_client_error()
                && e.status != StatusCode::CONFLICT
                && e.status != StatusCode::TOO_MANY_REQUESTS =>
        {
            Some((e.status, error_body(e)))
        }
        Err(_) => None,
    };
    let stored = match keep {
        Some((status, body)) => sqlx::query(
            "UPDATE idempotency_keys SET status_code = $1, response = $2 WHERE scope = $3 AND key = $4",
        )
        .bind(i64::from(status.as_u16()))
        .bind(body.to_string())
        .bind(&scope)
        .bind(key)
        .execute(state.store.pool())
        .await,
        None => sqlx::query("DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2")
            .bind(&scope)
            .bind(key)
            .execute(state.store.pool())
            .await,
    };
    stored.map_err(StoreError::from)?;
    result.map(|(status, body)| (status, Json(body)).into_response())
}

fn error_body(e: &ApiError) -> Value {
    serde_json::json!({ "error": { "code": e.code, "message": e.message } })
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
    let mut answer = (status, Json(body)).into_response();
    answer
        .headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    Ok(Some(answer))
}
