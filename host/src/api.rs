//! The HTTP API (axum). Every route but `/healthz` needs `Authorization: Bearer
//! <key>`; errors are `{"error":{"code","message"}}` with the right status.

mod auth;
mod billing;
mod content;
mod error;
mod messages;
mod modules;
mod notices;
mod partners;
mod schedules;
mod services;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::json;

pub use auth::Caller;
pub use error::ApiError;

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
    /// SHA-256 (hex) of the admin key.
    pub admin_key_hash: String,
    pub max_module_bytes: usize,
    /// Short code and confirmation window for subscriptions made through the API.
    pub dialogue: crate::mo::DialogueConfig,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

/// The whole API.
pub fn router(state: AppState, max_json_bytes: usize) -> Router {
    let upload_limit = state.max_module_bytes;
    Router::new()
        .route("/healthz", get(healthz))
        .merge(partners::router())
        .merge(content::router())
        .merge(messages::router())
        .merge(schedules::router())
        .merge(services::router())
        .merge(billing::router())
        .merge(notices::router())
        .layer(DefaultBodyLimit::max(max_json_bytes))
        // Module uploads are bigger than JSON bodies; their routes get their own limit.
        .merge(modules::router().layer(DefaultBodyLimit::max(upload_limit)))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

async fn healthz(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
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
    Ok(axum::Json(json!({ "status": "ok" })))
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
