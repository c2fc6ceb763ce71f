//! The web console (issue 14 item 3; ): server-rendered
//! HTML pages (maud) with htmx for the live parts, served by `tongdao serve` under
//! `/console`. No build step and no CDN: the templates compile into the binary and
//! the one script, `assets/htmx.min.js`, is embedded with `include_bytes!`.
//!
//! # Rules
//! - Pages read through the same domain functions the JSON API handlers call
//!   (`services`, `schedule`, `relay::messages`, `settlement`, `modules::Registry`,
//!   …), never over HTTP and never with SQL of their own.
//! - Mutations call the same domain functions as the API routes and are refused
//!   with 403 unless the form carries the session's CSRF token; the session cookie
//!   is `HttpOnly; SameSite=Strict`.
//! - Login takes an API key and checks it with [`crate::api::authenticate`]; the
//!   cookie holds only a random session id (the key is never stored or sent back).
//! - A partner sees only its own data: another partner's service, run, module or
//!   message answers 404, as in the API.
//! - Labels in Chinese (default) and English (`?lang=en`, remembered in a cookie);
//!   times in the platform time zone ([`crate::clock`]).
//!
//! # Layout
//! One file per page family: [`session`] (login, cookies, CSRF), [`page`] (layout,
//! errors, formatting), [`i18n`], [`charts`] (inline SVG), [`dashboard`],
//! [`modules`], [`services`] (services, approvals, schedules, runs), [`messages`],
//! [`billing`] (statements, reconciliation, obligations), [`platform`] (partners
//! and keys, binds and queue depth, violations, complaints).

mod billing;
mod charts;
mod dashboard;
mod i18n;
mod messages;
mod modules;
mod page;
mod platform;
mod services;
mod session;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};

use crate::api::AppState;

pub use session::Sessions;

/// What every console handler reaches: the API's state (the same domain parts)
/// and the console's sessions.
#[derive(Clone, Debug)]
pub struct ConsoleState {
    pub app: AppState,
    pub sessions: Arc<Sessions>,
}

/// htmx 2.0.11 (Zero-Clause BSD, `assets/htmx-LICENSE`), served from the binary.
const HTMX: &[u8] = include_bytes!("../assets/htmx.min.js");

/// The console's router, to be nested under `/console` (its paths are relative).
/// Uploads take up to the API's `max_module_bytes` plus room for the form.
pub fn router(app: AppState) -> Router {
    let upload_limit = app.max_module_bytes.saturating_add(64 * 1024);
    let state = ConsoleState {
        app,
        sessions: Arc::new(Sessions::default()),
    };
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/dashboard") }))
        .route("/assets/htmx.min.js", get(htmx))
        .route("/login", get(session::login_page).post(session::login))
        .route("/logout", post(session::logout))
        .route("/dashboard", get(dashboard::page))
        .route(
            "/modules",
            get(modules::list)
                .post(modules::upload)
                .layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route("/modules/{name}", get(modules::detail))
        .route("/modules/{name}/activate", post(modules::activate))
        .route("/modules/{name}/rollback", post(modules::rollback))
        .route("/services", get(services::list))
        .route("/services/{id}", get(services::detail))
        .route("/services/{id}/push", post(services::push))
        .route("/runs/{id}", get(services::run))
        .route("/runs/{id}/counters", get(services::run_counters))
        .route("/messages", get(messages::list))
        .route("/messages/{id}", get(messages::detail))
        .route("/violations", get(platform::violations))
        .route("/statements", get(billing::statements))
        .route("/statements/{month}/document", get(billing::document))
        .route("/admin/approvals", get(services::approvals))
        .route("/admin/services/{id}/{action}", post(services::decide))
        .route(
            "/admin/partners",
            get(platform::partners).post(platform::create_partner),
        )
        .route("/admin/partners/{name}/keys", post(platform::issue_key))
        .route(
            "/admin/partners/{name}/activation-approval",
            post(platform::activation_approval),
        )
        .route(
            "/admin/activations/{id}/{action}",
            post(platform::decide_activation),
        )
        .route(
            "/admin/partners/{name}/{action}",
            post(platform::partner_action),
        )
        .route("/admin/relay", get(platform::relay))
        .route("/admin/relay/live", get(platform::relay_live))
        .route("/admin/complaints", get(platform::complaints))
        .route("/admin/billing", get(billing::admin))
        .fallback(page::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            session::audit_admin_forms,
        ))
        .layer(axum::middleware::from_fn(i18n::remember_lang))
        .with_state(state)
}

async fn htmx() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        HTMX,
    )
}
