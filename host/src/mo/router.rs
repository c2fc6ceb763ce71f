//! The keyword router: every stored MO is claimed once, answered, and marked
//! `routed` with its outcome.
//!
//! Order (host first, always): stop commands, `00000`, `0000` and its numbered
//! reply, help and service codes, a confirming `Y` for a pending paid subscription,
//! the subscribe keywords of approved services; only then does the text reach the
//! module of the service the user is subscribed to (`on-mo`), and what nobody
//! understood gets the configured help reply. No module can override a command,
//! and a module only ever answers the user who wrote.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::commands::{self, Command};
use super::dialogue::Dialogue;
use super::settings::DialogueConfig;
use crate::modules::Registry;
use crate::partners;
use crate::relay::{MoRecord, Relay};
use crate::services::{self, LiveService};
use crate::store::{Backend, Store, StoreError, now_ms};
use crate::subscriptions;
use crate::text;

/// What the router needs.
pub struct RouterContext {
    pub store: Store,
    pub registry: Arc<Registry>,
    pub relay: Arc<Relay>,
    /// The compliance service (R-3.5 checks before a confirmation).
    pub compliance: crate::compliance::Compliance,
    pub config: DialogueConfig,
}

impl std::fmt::Debug for RouterContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouterContext").finish_non_exhaustive()
    }
}

/// Start the router task: it routes what is waiting, then whatever arrives.
pub fn start(ctx: Arc<RouterContext>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut arrivals = ctx.relay.subscribe_mo();
        let poll = Duration::from_millis(ctx.config.poll_ms.max(10));
        let mut last_expiry = 0;
        loop {
            match route_ready(&ctx).await {
                Ok(0) => {
                    tokio::select! {
                        _ = arrivals.recv() => {}
                        () = tokio::time::sleep(poll) => {}
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "MO routing failed; retrying");
                    tokio::time::sleep(poll).await;
                }
            }
            let now = now_ms();
            if now - last_expiry > 10_000 {
                last_expiry = now;
                match subscriptions::expire_pending(&ctx.store).await {
                    Ok(n) if n > 0 => {
                        tracing::info!(expired = n, "unconfirmed subscriptions expired")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "cannot expire pending subscriptions"),
                }
            }
        }
    })
}

/// Claim and route every MO that is ready; returns how many were routed.
pub async fn route_ready(ctx: &RouterContext) -> Result<usize, StoreError> {
    let mut routed = 0;
    loop {
        let batch = claim(ctx, 32).await?;
        if batch.is_empty() {
            return Ok(routed);
        }
        for mo in batch {
            let outcome = match route_one(ctx, &mo).await {
                Ok(outcome) => outcome,
                Err(e) => {
                    // The lease runs out and another round tries again.
                    tracing::error!(mo = mo.id, error = %e, "cannot route MO");
                    continue;
                }
            };
            sqlx::query(
                "UPDATE mo_messages SET status = 'routed', outcome = $1, routed_at = $2, lease_until = NULL WHERE id = $3",
            )
            .bind(&outcome)
            .bind(now_ms())
            .bind(mo.id)
            .execute(ctx.store.pool())
            .await?;
            tracing::info!(mo = mo.id, outcome, "MO routed");
            routed += 1;
        }
    }
}

/// Claim received MOs (or ones whose router died mid-way), oldest first.
async fn claim(ctx: &RouterContext, limit: i64) -> Result<Vec<MoRecord>, StoreError> {
    let now = now_ms();
    let lease = i64::try_from(ctx.config.lease_secs.saturating_mul(1000)).unwrap_or(60_000);
    let lock = match ctx.store.backend() {
        Backend::Postgres => "FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let mut claimed: Vec<MoRecord> = sqlx::query_as(&format!(
        "UPDATE mo_messages SET status = 'routing', lease_until = $1
         WHERE id IN (SELECT id FROM mo_messages
                      WHERE status = 'received' OR (status = 'routing' AND lease_until < $2)
                      ORDER BY id LIMIT $3 {lock})
         RETURNING id, operator, source, destination, text, status, received_at"
    ))
    .bind(now + lease)
    .bind(now)
    .bind(limit)
    .fetch_all(ctx.store.pool())
    .await?;
    claimed.sort_by_key(|m| m.id);
    Ok(claimed)
}

/// Why one MO could not be routed (it is retried).
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Service(#[from] services::ServiceError),
    #[error(transparent)]
    Partner(#[from] partners::PartnerError),
}

impl From<sqlx::Error> for RouteError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

/// Route one MO; returns the outcome recorded on it.
async fn route_one(ctx: &RouterContext, mo: &MoRecord) -> Result<String, RouteError> {
    // A router that died after answering must not answer twice.
    let (answered,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM messages WHERE mo_id = $1")
        .bind(mo.id)
        .fetch_one(ctx.store.pool())
        .await?;
    if answered > 0 {
        return Ok("already-answered".into());
    }
    let key = text::route_key(&mo.text);
    let live = services::all_live(&ctx.store).await?;
    let codes: Vec<&str> = live.iter().map(|s| s.code.as_str()).collect();
    let by_number = live
        .iter()
        .find(|s| mo.destination == s.sender(&ctx.config.short_code));
    let by_code = |code: &str| live.iter().find(|s| s.code == code);
    let dialogue = Dialogue { ctx, mo, by_number };

    match commands::parse(&key, &codes) {
        Some(Command::Stop { code: Some(code) }) => {
            return dialogue.stop(by_code(&code), &code).await;
        }
        Some(Command::Stop { code: None }) => {
            return match by_number {
                Some(service) => dialogue.stop(Some(service), &service.code).await,
                None => dialogue.stop_all().await,
            };
        }
        Some(Command::StopAll) => return dialogue.stop_all().await,
        Some(Command::Menu) => return dialogue.menu().await,
        Some(Command::Help { code }) => {
            let service = code.as_deref().and_then(by_code).or(by_number);
            return dialogue.help(service).await;
        }
        Some(Command::Choice(n)) => {
            if let Some(outcome) = dialogue.menu_choice(n).await? {
                return Ok(outcome);
            }
        }
        Some(Command::Confirm) => {
            if let Some(outcome) = dialogue.confirm(&live).await? {
                return Ok(outcome);
            }
        }
        None => {}
    }
    match by_word(&key, &live) {
        Some(ByWord::Help(service)) => dialogue.help(Some(service)).await,
        Some(ByWord::Subscribe(service)) => dialogue.subscribe(service).await,
        None => dialogue.to_module(&live).await,
    }
}

/// What a message that is no host command does with a service.
#[derive(Debug, Clone, Copy)]
pub enum ByWord<'a> {
    /// It is the service's code: its help.
    Help(&'a LiveService),
    /// It is one of the service's subscribe keywords.
    Subscribe(&'a LiveService),
}

/// After the host commands, the router reads a message key as a service code, then
/// as a subscribe keyword (the first live service that has it); `None` goes on to
/// the user's module.
pub fn by_word<'a>(key: &str, live: &'a [LiveService]) -> Option<ByWord<'a>> {
    if let Some(service) = live.iter().find(|s| s.code == key) {
        return Some(ByWord::Help(service));
    }
    live.iter()
        .find(|s| s.revision.keywords.iter().any(|k| k == key))
        .map(ByWord::Subscribe)
}
