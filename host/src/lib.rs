//! Tongdao: a WebAssembly plug-in host for partner content services over SMS.
//!
//! # Layout
//! Top to bottom; a module imports only modules listed below it (README, "Layout").
//! - [`server`]: start-up; composes the parts from [`config`] and serves them.
//!   [`demo`]: what `serve --demo` adds (simulator, example modules, services).
//!   [`tools`], [`runner`]: the CLI's operator tools and the partner's local runner.
//!   [`cli`]: the CLI over a running server's API (it imports no other module).
//! - [`config`]: one typed configuration (file + environment); it only composes the
//!   settings types each module owns, and checks them at start.
//! - [`console`]: the web console under `/console` (HTML, htmx); it reads and
//!   changes through the same domain functions and key check as [`api`].
//! - [`api`]: the HTTP API (axum): auth, routes, JSON errors.
//! - [`alerts`]: anomaly alerts over the records and the binds.
//! - [`schedule`]: push schedules, runs claimed once, fan-out to subscribers.
//!   [`retention`]: `[retention]` and the history purge's task; the
//!   deletes are the tables' owners' (`relay::outbox::retention`, `mo::retention`).
//! - [`mo`]: the keyword router: host commands first, then modules.
//! - [`modules`]: the module registry: upload, validation, versions, activation,
//!   rollback, and faults recorded against partner and version. [`content`]: the
//!   partners' content libraries that modules read.
//! - [`runtime`]: the wasmtime sandbox: engine, compiled-module cache, limits, and
//!   the host side of every imported capability.
//! - [`settlement`]: monthly statements, reconciliation, obligations.
//! - [`billing`]: agreements, money terms, calendars, charge events.
//! - [`relay`]: the gate and the durable outbox, SMPP links, receipts, MO intake.
//! - [`compliance`]: content policy, caps, quiet hours, detectors, suspension.
//! - [`subscriptions`]: opt-in with double confirmation, cancellation.
//! - [`services`]: declared services, revisions and their approval.
//! - [`commands`]: the host's reserved user commands (`TD`, `0000`, `Y`…).
//! - [`partners`], [`notices`]: partners and their keys; notices to partners.
//!   [`webhooks`]: the partner event feed, the inbox and signed webhooks.
//!   [`complaints`]: the complaints register and partner contacts.
//! - [`audit`]: the hash-chained audit log of administrative actions.
//! - [`clock`]: the one platform clock and time zone (`[platform] time_zone`):
//!   months, days, quiet hours, schedules, the offset modules see. [`text`]: text
//!   folding for matching.
//! - [`store`]: the sqlx pool over SQLite or PostgreSQL, and migrations.
//! - [`fuzzing`]: the entry points of the fuzz targets (`host/fuzz`), shared with the
//!   stable test that replays their corpus; it only calls the modules above.

pub mod alerts;
pub mod api;
pub mod audit;
pub mod billing;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod complaints;
pub mod compliance;
pub mod config;
pub mod console;
pub mod content;
pub mod demo;
pub mod fuzzing;
pub mod mo;
pub mod modules;
pub mod notices;
pub mod partners;
pub mod relay;
pub mod retention;
pub mod runner;
pub mod runtime;
pub mod schedule;
pub mod server;
pub mod services;
pub mod settlement;
pub mod stats;
pub mod store;
pub mod subscriptions;
pub mod telemetry;
pub mod text;
pub mod tools;
pub mod webhooks;
