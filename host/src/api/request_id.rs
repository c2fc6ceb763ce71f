//! A request id on every answer and an access-log line per request (issue 14
//! item 1), with `tower-http`'s request-id and trace layers.
//!
//! - `x-request-id`: a client-sent id is kept when it is sane (1-128 characters of
//!   `A-Z a-z 0-9 - _ . : /`), otherwise replaced by a fresh UUID; the answer
//!   carries it back, and it is a field of every log line of the request.
//! - one INFO line per request (target `tongdao::access`): method, matched path
//!   (the route template, e.g. `/v1/services/{id}`), status, latency in ms, request
//!   id and caller (`admin`, `partner:NAME`, or `-` before authentication).

use std::time::Duration;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, Response};
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;
use tracing::Span;

/// The header.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// A client's id is kept when it is this kind of string.
fn sane(id: &[u8]) -> bool {
    (1..=128).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/".contains(b))
}

/// Drop a client-sent id that is not [`sane`], so a fresh one is made.
async fn drop_insane(mut request: Request) -> Request {
    if request
        .headers()
        .get(&HEADER)
        .is_some_and(|v| !sane(v.as_bytes()))
    {
        request.headers_mut().remove(&HEADER);
    }
    request
}

fn span(request: &Request) -> Span {
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("-", MatchedPath::as_str);
    let id = request
        .extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .unwrap_or("-");
    tracing::info_span!(
        target: "tongdao::access",
        "request",
        method = %request.method(),
        path,
        request_id = id,
        caller = tracing::field::Empty,
    )
}

fn on_response<B>(response: &Response<B>, latency: Duration, _: &Span) {
    tracing::info!(
        target: "tongdao::access",
        status = response.status().as_u16(),
        latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
        "answered"
    );
}

/// Record who called in the request's span (the `Caller` extractor calls this).
pub fn record_caller(actor: &str) {
    Span::current().record("caller", actor);
}

/// Wrap the whole API in the request-id and access-log layers (outermost last).
pub fn wrap<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router
        .layer(PropagateRequestIdLayer::new(HEADER))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(span)
                .on_response(on_response),
        )
        .layer(SetRequestIdLayer::new(HEADER, MakeRequestUuid))
        .layer(axum::middleware::map_request(drop_insane))
}

#[cfg(test)]
mod tests {
    use super::sane;

    #[test]
    fn only_sane_ids_are_kept() {
        assert!(sane(b"3f2a-9c.x_y:1/2"));
        assert!(!sane(b""));
        assert!(!sane(b"has space"));
        assert!(!sane("中文".as_bytes()));
        assert!(!sane(&[b'a'; 129]));
    }
}
