//! Tongdao: a WebAssembly plug-in host for partner content services over SMS.
//!
//! # Layout
//! - [`config`]: one typed configuration (file + environment), validated at start.
//! - [`store`]: the sqlx pool over SQLite or PostgreSQL, and migrations.
//! - [`runtime`]: the wasmtime sandbox: engine, compiled-module cache, limits, and
//!   the host side of every imported capability.
//! - [`modules`]: the module registry: upload, validation, versions, activation,
//!   rollback, and faults recorded against partner and version.
//! - [`partners`]: partners and their API keys.
//! - [`services`]: declared services, revisions and their approval.
//! - [`subscriptions`]: opt-in with double confirmation, cancellation.
//! - [`mo`]: the keyword router: host commands first, then modules.
//! - [`compliance`]: content policy, caps, quiet hours, detectors, suspension.
//! - [`relay`]: the durable outbox, SMPP links, receipts, MO intake.
//! - [`clock`] and [`text`]: the platform calendar; text folding for matching.
//! - [`content`]: the partners' content libraries that modules read.
//! - [`billing`]: agreements, money terms, calendars, charge events.
//! - [`settlement`]: monthly statements, reconciliation, obligations.
//! - [`schedule`]: push schedules, runs claimed once, fan-out to subscribers.
//! - [`api`]: the HTTP API (axum): auth, routes, JSON errors.
//! - [`server`]: start-up: configuration to a running platform.
//! - [`guests`]: the example modules built with the SDK, bundled for `serve --demo`.

pub mod api;
pub mod billing;
pub mod clock;
pub mod compliance;
pub mod config;
pub mod content;
pub mod guests;
pub mod mo;
pub mod modules;
pub mod notices;
pub mod partners;
pub mod relay;
pub mod runner;
pub mod runtime;
pub mod schedule;
pub mod server;
pub mod services;
pub mod settlement;
pub mod store;
pub mod subscriptions;
pub mod text;
pub mod tools;
