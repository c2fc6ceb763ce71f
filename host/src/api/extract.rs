//! The request extractors every route uses, so that every rejection is an
//! [`ApiError`] with the documented JSON body (axum's `customize-extractor-error`
//! pattern), plus a last-resort layer for rejections that happen outside them.
//!
//! One status per kind of error:
//!
//! | what is wrong | status | code |
//! |---|---|---|
//! | body is not JSON at all (syntax, truncated, not UTF-8) | 400 | `malformed-json` |
//! | JSON of the wrong shape (wrong types, missing or unknown fields) | 422 | `invalid-json` |
//! | body without `Content-Type: application/json` | 415 | `unsupported-media-type` |
//! | body over `[http] max_json_bytes` | 413 | `body-too-large` |
//! | a path segment that does not decode (`/v1/services/%ff`) or parse | 400 | `invalid-path` |
//! | a query string with unknown parameters or wrong types | 400 | `invalid-query` |
//!
//! Values that are well-formed but refused by a rule (an unknown operator, a month
//! that has not ended) are the route's own precise 4xx.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::ApiError;

/// A JSON request body (and response body): rejections are [`ApiError`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "send the body as `Content-Type: application/json`",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|r| body_error(r.status(), r.body_text()))?;
        parse(&bytes).map(Self)
    }
}

/// `application/json` or `application/<anything>+json`, any parameters.
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mime = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// One rule, whatever serde's own categories say: a body that is not JSON at all
/// is 400 `malformed-json`; JSON that does not fit the shape is 422 `invalid-json`.
fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice::<T>(bytes).map_err(|e| {
        if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-json",
                format!("the JSON body does not fit this route: {e}"),
            )
        } else {
            ApiError::bad_request("malformed-json", format!("the body is not JSON: {e}"))
        }
    })
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// A JSON body that may be left out: an empty (or all-whitespace) body is `None`
/// whatever its content type; anything else must be JSON of the right shape, with
/// the same rejections as [`Json`].
#[derive(Debug, Clone, Default)]
pub struct OptionalJson<T>(pub Option<T>);

impl<T, S> FromRequest<S> for OptionalJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = is_json(req.headers());
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|r| body_error(r.status(), r.body_text()))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(None));
        }
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "send the body as `Content-Type: application/json`",
            ));
        }
        parse(&bytes).map(|v| Self(Some(v)))
    }
}

/// Query parameters: unknown or ill-typed ones are a 400 `invalid-query` (every
/// query type denies unknown fields: one policy for every route).
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(rejection.into()),
        }
    }
}

/// Path parameters: a segment that is not UTF-8 after percent-decoding, or does
/// not parse, is a 400 `invalid-path`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(rejection.into()),
        }
    }
}

/// The query of a route with no parameters of its own: only the admin's
/// `?partner=NAME` (a partner may name itself). Anything else is refused.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PartnerParam {
    /// The admin's choice of partner (a partner key may name only itself).
    pub partner: Option<String>,
}

/// The query of a route that takes no parameters: any is refused.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

fn body_error(status: StatusCode, message: String) -> ApiError {
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "body-too-large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid-json",
        _ => "malformed-json",
    };
    ApiError::new(status, code, message)
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::bad_request("invalid-query", r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        if r.status().is_server_error() {
            // A route whose handler asks for parameters it does not have: our bug.
            return Self::internal(&r.body_text());
        }
        Self::bad_request("invalid-path", r.body_text())
    }
}

/// Most of a non-JSON error body kept as the message.
const MAX_PASSED_MESSAGE: usize = 300;

/// The last gate (a `map_response` layer over the whole API): an error answered
/// by anything but our extractors and handlers (a body limit hit by another
/// extractor, a framework rejection) still leaves as `{"error":{"code","message"}}`,
/// never as plain text.
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let mut message: String = String::from_utf8_lossy(&body).trim().to_string();
    if message.len() > MAX_PASSED_MESSAGE {
        let mut end = MAX_PASSED_MESSAGE;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
    }
    if message.is_empty() {
        message = status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_string();
    }
    let code = match status {
        StatusCode::BAD_REQUEST => "bad-request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not-found",
        StatusCode::METHOD_NOT_ALLOWED => "method-not-allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "body-too-large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid-json",
        s if s.is_server_error() => "internal",
        _ => "request-refused",
    };
    let mut response = ApiError::new(status, code, message).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
