//! The keyword router: every stored MO is claimed once, answered, and marked
//! `routed` with its outcome.
//!
//! Order (host first, always): stop commands, `00000`, `0000` and its numbered
//! reply, help and service codes, a confirming `Y` for a pending paid subscription,
//! the subscribe keywords of approved services; only then does the text reach the
//! module of the service the user is subscribed to (`on-mo`), and what nobody
//! understood gets the configured help reply. No module can override a command,
//! and a module only ever answers the user who wrote.
//!
//! # Claims with a backlog
//! MOs are claimed [`CLAIM_BATCH`] at a time, oldest first, so the MOs of one number
//! are answered in arrival order. A claim reads the index `mo_messages(status, id)`
//! from its start: first the MOs whose router died mid-way (status `routing`, lease
//! run out: a handful at most), then `received` ones. Neither query sorts or scans
//! the waiting MOs, so a claim costs the same with 10 or 100,000 waiting (issue 13:
//! with 70,000 waiting the old claim, one `OR` over both states, read every MO).
//!
//! The MOs of a batch are grouped by number: each number's MOs are routed one
//! after the other, in arrival order, and up to [`ROUTE_CONCURRENCY`] numbers at
//! once, so the router does not idle through each MO's store round trips and
//! module call one at a time. The next batch is claimed when the whole batch is
//! done, so a number's later MOs never overtake its earlier ones. Module calls
//! still queue in their partner's lane of the runtime (its share of instances).
//!
//! Only a re-claimed MO can have been answered already (its router died between
//! the answer and the `routed` mark); only those are looked up in `messages`
//! (index `messages_mo`), and they are marked `already-answered` instead of being
//! answered twice.

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use tokio::task::JoinHandle;

use super::commands::{self, Command};
use super::dialogue::Dialogue;
use super::settings::DialogueConfig;
use crate::modules::Registry;
use crate::partners;
use crate::relay::{MoRecord, Relay};
use crate::services::{self, LiveService};
use crate::store::{Store, StoreError, now_ms};
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

/// MOs claimed at once. A claim holds them for `lease_secs`; a batch whose every
/// module call ran to the wall-clock backstop must still end within it.
pub const CLAIM_BATCH: i64 = 32;

/// Numbers whose MOs are routed at the same time.
pub const ROUTE_CONCURRENCY: usize = 4;

/// Claim and route every MO that is ready; returns how many were routed.
///
/// # Errors
/// A store failure; what was claimed and not routed is claimed again once its
/// lease runs out.
pub async fn route_ready(ctx: &RouterContext) -> Result<usize, StoreError> {
    let mut routed = 0;
    loop {
        let batch = claim(ctx, CLAIM_BATCH).await?;
        if batch.is_empty() {
            return Ok(routed);
        }
        // The live services, read once per batch, after the claim: a service
        // approved before an MO arrived is seen by it. On failure the batch is
        // claimed again when its lease runs out, as an MO that failed to route.
        let live = match services::all_live(&ctx.store).await {
            Ok(live) => live,
            Err(services::ServiceError::Store(e)) => return Err(e),
            Err(e) => return Err(StoreError::Corrupt(e.to_string())),
        };
        // Per number, in arrival order (the batch is sorted by id).
        let mut by_number: Vec<Vec<Claimed>> = Vec::new();
        for claimed in batch {
            match by_number
                .iter_mut()
                .find(|g| g[0].mo.source == claimed.mo.source)
            {
                Some(group) => group.push(claimed),
                None => by_number.push(vec![claimed]),
            }
        }
        let live = &live;
        let mut groups = stream::iter(by_number)
            .map(|group| route_number(ctx, live, group))
            .buffer_unordered(ROUTE_CONCURRENCY);
        let mut failed = None;
        while let Some(result) = groups.next().await {
            match result {
                Ok(n) => routed += n,
                Err(e) => failed = Some(e),
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
    }
}

/// Route the MOs of one number, one after the other; returns how many were routed.
async fn route_number(
    ctx: &RouterContext,
    live: &[LiveService],
    group: Vec<Claimed>,
) -> Result<usize, StoreError> {
    let mut routed = 0;
    for Claimed { mo, reclaimed } in group {
        // Every log line of routing this MO carries its id (issue 15).
        let span = tracing::info_span!("mo", mo = mo.id, operator = %mo.operator);
        let routed_one =
            tracing::Instrument::instrument(route_one(ctx, &mo, live, reclaimed), span).await;
        let outcome = match routed_one {
            Ok(outcome) => outcome,
            Err(e) => {
                // The lease runs out and another round tries again; this number's
                // later MOs wait for it.
                tracing::error!(mo = mo.id, error = %e, "cannot route MO");
                return Ok(routed);
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
    Ok(routed)
}

/// One claimed MO.
struct Claimed {
    mo: MoRecord,
    /// Claimed before by a router that died mid-way: it may have been answered.
    reclaimed: bool,
}

/// Claim up to `limit` MOs, oldest first: those whose router died mid-way (lease
/// run out), then received ones. Each query walks `mo_messages(status, id)` from
/// the start of its status and stops at `limit`.
async fn claim(ctx: &RouterContext, limit: i64) -> Result<Vec<Claimed>, StoreError> {
    let now = now_ms();
    let lease = i64::try_from(ctx.config.lease_secs.saturating_mul(1000)).unwrap_or(60_000);
    let lock = ctx.store.skip_locked();
    let claim = |waiting: &str| {
        format!(
            "UPDATE mo_messages SET status = 'routing', lease_until = $1
             WHERE id IN (SELECT id FROM mo_messages WHERE {waiting} ORDER BY id LIMIT $2 {lock})
             RETURNING id, operator, source, destination, text, status, received_at"
        )
    };
    let reclaimed: Vec<MoRecord> =
        sqlx::query_as(&claim("status = 'routing' AND lease_until < $3"))
            .bind(now + lease)
            .bind(limit)
            .bind(now)
            .fetch_all(ctx.store.pool())
            .await?;
    let room = limit - i64::try_from(reclaimed.len()).unwrap_or(limit);
    let received: Vec<MoRecord> = if room > 0 {
        sqlx::query_as(&claim("status = 'received'"))
            .bind(now + lease)
            .bind(room)
            .fetch_all(ctx.store.pool())
            .await?
    } else {
        Vec::new()
    };
    let mut claimed: Vec<Claimed> = reclaimed
        .into_iter()
        .map(|mo| Claimed {
            mo,
            reclaimed: true,
        })
        .chain(received.into_iter().map(|mo| Claimed {
            mo,
            reclaimed: false,
        }))
        .collect();
    claimed.sort_by_key(|c| c.mo.id);
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

/// Route one MO against the `live` services; returns the outcome recorded on it.
async fn route_one(
    ctx: &RouterContext,
    mo: &MoRecord,
    live: &[LiveService],
    reclaimed: bool,
) -> Result<String, RouteError> {
    // A router that died after answering must not answer twice.
    if reclaimed {
        let answered: Option<(i64,)> =
            sqlx::query_as("SELECT id FROM messages WHERE mo_id = $1 LIMIT 1")
                .bind(mo.id)
                .fetch_optional(ctx.store.pool())
                .await?;
        if answered.is_some() {
            return Ok("already-answered".into());
        }
    }
    let key = text::route_key(&mo.text);
    let codes: Vec<&str> = live.iter().map(|s| s.code.as_str()).collect();
    let by_number = by_number(&mo.destination, live, &ctx.config.short_code);
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
            if let Some(outcome) = dialogue.confirm(live).await? {
                return Ok(outcome);
            }
        }
        None => {}
    }
    match by_word(&key, live) {
        Some(ByWord::Help(service)) => dialogue.help(Some(service)).await,
        Some(ByWord::Subscribe(service)) => dialogue.subscribe(service).await,
        None => dialogue.to_module(live).await,
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

/// The live service whose own number (short code plus extension) an MO was sent to.
pub fn by_number<'a>(
    destination: &str,
    live: &'a [LiveService],
    short_code: &str,
) -> Option<&'a LiveService> {
    live.iter().find(|s| destination == s.sender(short_code))
}

/// Whose module answers a message that is no command nor keyword: the service whose
/// number it was sent to, if the user holds it, else the user's only service (`active`:
/// the ids of the services the user holds). A module never sees a message written to
/// another service's number, and never one of a user who does not hold its service.
pub fn module_target<'a>(
    by_number: Option<&'a LiveService>,
    active: &[i64],
    live: &'a [LiveService],
) -> Option<&'a LiveService> {
    match by_number {
        Some(service) => active.contains(&service.id).then_some(service),
        None => match active {
            [only] => live.iter().find(|s| s.id == *only),
            _ => None,
        },
    }
}
