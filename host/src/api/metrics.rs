//! `GET /metrics`: Prometheus text (issue 15 item 1), unauthenticated on the API
//! listener like `/healthz` (it carries counts by partner, service and operator, no
//! numbers or texts; keep the listener private or filter the path at the proxy).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::extract::{NoParams, Query};
use super::{AppState, Routes};

pub(super) fn router() -> Routes {
    Routes::new().route("/metrics", get(metrics))
}

/// `GET /metrics`: every metric in the Prometheus text exposition format 0.0.4;
/// the list with its labels is in the README (no key needed).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "platform",
    security(()),
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain", body = String)),
)]
pub(super) async fn metrics(State(state): State<AppState>, _: Query<NoParams>) -> Response {
    // The bind gauges are read at scrape time from the relay's in-memory state.
    let mut up: BTreeMap<String, f64> = BTreeMap::new();
    for bind in state.relay.binds() {
        *up.entry(bind.operator).or_default() += if bind.state == "bound" { 1.0 } else { 0.0 };
    }
    for (operator, n) in up {
        metrics::gauge!("tongdao_binds_up", "operator" => operator).set(n);
    }
    let mut response = crate::telemetry::render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
