//! The HTTP API (axum). Every route but `/healthz` and `/metrics` needs `Authorization: Bearer
//! <key>`; errors are `{"error":{"code","message"}}` with the right status.

mod alerts;
mod audit;
mod auth;
mod billing;
mod complaints;
mod content;
mod error;
mod extract;
mod history;
mod idempotency;
mod messages;
mod metrics;
mod modules;
mod notices;
pub mod openapi;
pub mod page;
mod partners;
mod rate;
mod release;
mod request_id;
mod schedules;
mod services;
mod settings;
mod stats;
pub mod time;
mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{MethodRouter, get};

pub(crate) use audit::record_admin_request;
pub use auth::{Caller, authenticate};
pub use error::ApiError;
pub use rate::KeyRates;
pub use services::check_reason;
pub use settings::{AdminConfig, HttpConfig};

use crate::modules::Registry;
use crate::relay::Relay;
use crate::schedule::Scheduler;
use crate::store::Store;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub registry: Arc<Registry>,
    pub relay: Arc<Relay>,
    pub scheduler: Arc<Scheduler>,
    /// The compliance service (policy, suspension, violations, detectors).
    pub compliance: crate::compliance::Compliance,
    /// SHA-256 (hex) of the admin key.
    pub admin_key_hash: String,
    pub max_module_bytes: usize,
    /// Short code and confirmation window for subscriptions made through the API.
    pub dialogue: crate::mo::DialogueConfig,
    /// How far partner figures are trusted (the hold bound).
    pub settlement: crate::settlement::SettlementConfig,
    /// Endpoint URL rule and rotation grace of webhooks.
    pub webhooks: crate::webhooks::WebhooksConfig,
    /// Due hours, channels and the platform's contacts for complaints.
    pub complaints: crate::complaints::ComplaintsConfig,
    /// Request rate per API key (`[http] rate_per_key_per_second`, `rate_burst`).
    pub rates: Arc<KeyRates>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

/// Routes with the paths they were registered under, so the API can say which
/// routes it has (`paths`; the route test walks every one with malformed input).
pub(crate) struct Routes {
    router: Router<AppState>,
    paths: Vec<&'static str>,
}

impl Routes {
    pub(crate) fn new() -> Self {
        Self {
            router: Router::new(),
            paths: Vec::new(),
        }
    }

    pub(crate) fn route(mut self, path: &'static str, method: MethodRouter<AppState>) -> Self {
        self.router = self.router.route(path, method);
        self.paths.push(path);
        self
    }

    fn merge(mut self, other: Routes) -> Self {
        self.router = self.router.merge(other.router);
        self.paths.extend(other.paths);
        self
    }

    fn layer_body_limit(mut self, bytes: usize) -> Self {
        self.router = self.router.layer(DefaultBodyLimit::max(bytes));
        self
    }
}

fn json_routes() -> Routes {
    Routes::new()
        .route("/healthz", get(healthz))
        .merge(partners::router())
        .merge(content::router())
        .merge(messages::router())
        .merge(schedules::router())
        .merge(services::router())
        .merge(billing::router())
        // The module upload reads its body itself, up to `max_module_bytes`; its
        // other routes take JSON like every route.
        .merge(modules::router())
        .merge(release::router())
        .merge(notices::router())
        .merge(stats::router())
        .merge(metrics::router())
        .merge(alerts::router())
        .merge(webhooks::router())
        .merge(complaints::router())
        .merge(history::router())
        .merge(audit::router())
        .merge(openapi::router())
}

/// Every path template the API serves (`/v1/services/{id}`, …), each once.
pub fn paths() -> Vec<&'static str> {
    let mut paths = json_routes().paths;
    paths.sort_unstable();
    paths.dedup();
    paths
}

/// The whole API.
///
/// Layers, innermost first: `Idempotency-Key` on `POST`s (`idempotency::layer`),
/// the JSON error gate, then the request id and the access log (`request_id`):
/// every answer carries `x-request-id`, and one INFO line per request names the
/// method, matched path, status, latency, request id and caller.
pub fn router(state: AppState, max_json_bytes: usize) -> Router {
    let router = json_routes()
        .layer_body_limit(max_json_bytes)
        .router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            idempotency::layer,
        ))
        .layer(axum::middleware::map_response(extract::json_errors))
        // Outside the error gate, so it records the status the caller got; inside
        // the request id, so it records that too.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            audit::record,
        ));
    request_id::wrap(router).with_state(state)
}

/// The store answers.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(example = json!({"status": "ok"}))]
struct Health {
    /// Always `ok` with a 200.
    status: &'static str,
}

/// `GET /healthz`: the store is reachable (no key needed).
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "platform",
    security(()),
    responses(
        (status = 200, description = "The store answers", body = Health),
        (status = 503, description = "`store-unavailable`", body = openapi::ErrorBody),
    ),
)]
async fn healthz(
    axum::extract::State(state): axum::extract::State<AppState>,
    _: extract::Query<extract::NoParams>,
) -> Result<extract::Json<Health>, ApiError> {
    sqlx::query("SELECT 1")
        .execute(state.store.pool())
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store-unavailable",
                e.to_string(),
            )
        })?;
    Ok(extract::Json(Health { status: "ok" }))
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "method not allowed on this route",
    )
}
