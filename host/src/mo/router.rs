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
use super::settings::DialogueConfig;
use crate::modules::Registry;
use crate::partners;
use crate::relay::{Basis, ChargePlan, MoRecord, NewMessage, Relay};
use crate::runtime::{MoMessage, SubscriptionChange};
use crate::services::{self, FeeType, LiveService, ServiceStatus};
use crate::store::{Backend, Store, StoreError, now_ms};
use crate::subscriptions::{self, Requested, Source, price_text};
use crate::text;

/// What the router needs.
pub struct RouterContext {
    pub store: Store,
    pub registry: Arc<Registry>,
    pub relay: Arc<Relay>,
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
    let folded = text::command(&mo.text);
    let live = services::all_live(&ctx.store).await?;
    let by_number = live
        .iter()
        .find(|s| mo.destination == s.sender(&ctx.config.short_code));
    let by_code = |code: &str| live.iter().find(|s| s.code == code);
    let dialogue = Dialogue { ctx, mo, by_number };

    match commands::parse(&folded) {
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
    if let Some(service) = by_code(&folded) {
        return dialogue.help(Some(service)).await;
    }
    if let Some(service) = live.iter().find(|s| s.revision.keywords.contains(&folded)) {
        return dialogue.subscribe(service).await;
    }
    dialogue.to_module(&live).await
}

/// One MO's conversation.
struct Dialogue<'a> {
    ctx: &'a RouterContext,
    mo: &'a MoRecord,
    by_number: Option<&'a LiveService>,
}

impl Dialogue<'_> {
    /// Replies come from the number the user wrote to.
    fn sender(&self) -> String {
        self.mo.destination.clone()
    }

    /// Send a free platform notice answering this MO. A notice that cannot be
    /// queued is logged with the outcome, never retried forever.
    async fn notice(&self, text: String, outcome: &str) -> Result<String, RouteError> {
        let message = NewMessage::notice(
            &self.mo.source,
            text,
            Some(self.sender()),
            Some(self.mo.id),
            None,
        );
        match self.ctx.relay.enqueue(message).await {
            Ok(_) => Ok(outcome.to_string()),
            Err(e) => {
                tracing::error!(mo = self.mo.id, error = %e, "cannot queue the reply notice");
                Ok(format!("{outcome}; reply not queued: {e}"))
            }
        }
    }

    async fn set_service(&self, service: &LiveService) -> Result<(), RouteError> {
        sqlx::query("UPDATE mo_messages SET service_id = $1 WHERE id = $2")
            .bind(service.id)
            .bind(self.mo.id)
            .execute(self.ctx.store.pool())
            .await?;
        Ok(())
    }

    async fn stop(&self, service: Option<&LiveService>, code: &str) -> Result<String, RouteError> {
        let Some(service) = service else {
            return self
                .notice(
                    format!("【通道】没有代码为{code}的业务。回复0000查询您订购的业务。"),
                    "stop-unknown-service",
                )
                .await;
        };
        self.set_service(service).await?;
        let open =
            subscriptions::open_ids(&self.ctx.store, &self.mo.source, Some(service.id)).await?;
        let cancelled =
            subscriptions::cancel(&self.ctx.store, &open, "user sent a stop command").await?;
        if cancelled.is_empty() {
            return self
                .notice(
                    format!("【通道】您未订购“{}”，无需退订。", service.revision.name),
                    "stop-not-subscribed",
                )
                .await;
        }
        self.farewell(&cancelled).await;
        self.notice(
            format!(
                "【通道】您已退订“{}”，将不再收到该业务消息，也不再收费。",
                service.revision.name
            ),
            "stop",
        )
        .await
    }

    async fn stop_all(&self) -> Result<String, RouteError> {
        let open = subscriptions::open_ids(&self.ctx.store, &self.mo.source, None).await?;
        let cancelled =
            subscriptions::cancel(&self.ctx.store, &open, "user cancelled everything").await?;
        if cancelled.is_empty() {
            return self
                .notice("【通道】您当前没有订购任何业务。".into(), "stop-all-none")
                .await;
        }
        self.farewell(&cancelled).await;
        self.notice(
            format!(
                "【通道】您已退订全部{}项业务，将不再收到这些业务的消息，也不再收费。",
                cancelled.len()
            ),
            "stop-all",
        )
        .await
    }

    /// Tell the modules their users left (their bookkeeping); their farewell texts
    /// are not sent: after a stop the user gets exactly one message, the platform's.
    async fn farewell(&self, cancelled: &[subscriptions::Subscription]) {
        for sub in cancelled {
            let Ok(Some(service)) = services::live(&self.ctx.store, sub.service_id).await else {
                continue;
            };
            let Some(module) = &service.module else {
                continue;
            };
            let Ok(partner) = partners::by_id(&self.ctx.store, service.partner_id).await else {
                continue;
            };
            let change = SubscriptionChange {
                subscriber: sub.subscriber_id.clone(),
                service: service.code.clone(),
                joined: false,
            };
            if let Err(e) = self
                .ctx
                .registry
                .on_subscription(&partner, module, &change)
                .await
            {
                tracing::warn!(service = %service.code, error = %e, "on-unsubscribe could not run");
            }
        }
    }

    async fn menu(&self) -> Result<String, RouteError> {
        let active = subscriptions::active_for_msisdn(&self.ctx.store, &self.mo.source).await?;
        if active.is_empty() {
            return self
                .notice(
                    "【通道】您当前没有订购任何业务。本消息免费。".into(),
                    "menu-empty",
                )
                .await;
        }
        let ids: Vec<i64> = active.iter().map(|(s, _, _)| s.id).collect();
        let mut text = String::from("【通道】回复序号退订：1.全部退订");
        for (i, (sub, code, name)) in active.iter().enumerate() {
            let fee = FeeType::parse(&sub.fee_type).unwrap_or(FeeType::Free);
            text.push_str(&format!(
                " {}.{code} {name}({})",
                i + 2,
                price_text(fee, sub.price_fen)
            ));
        }
        text.push_str("。本消息免费。");
        sqlx::query(
            "INSERT INTO cancel_menus (msisdn, items, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (msisdn) DO UPDATE SET items = excluded.items, created_at = excluded.created_at",
        )
        .bind(&self.mo.source)
        .bind(serde_json::to_string(&ids).unwrap_or_default())
        .bind(now_ms())
        .execute(self.ctx.store.pool())
        .await?;
        self.notice(text, "menu").await
    }

    /// A numbered reply to an open `0000` menu; `None` if no menu is open (the
    /// number then goes on to the module, e.g. a quiz answer).
    async fn menu_choice(&self, n: u32) -> Result<Option<String>, RouteError> {
        let window = i64::try_from(self.ctx.config.menu_window_secs.saturating_mul(1000))
            .unwrap_or(i64::MAX);
        let menu: Option<(String, i64)> =
            sqlx::query_as("SELECT items, created_at FROM cancel_menus WHERE msisdn = $1")
                .bind(&self.mo.source)
                .fetch_optional(self.ctx.store.pool())
                .await?;
        let Some((items, created_at)) = menu.filter(|(_, at)| now_ms() - at <= window) else {
            return Ok(None);
        };
        let _ = created_at;
        let ids: Vec<i64> = serde_json::from_str(&items).unwrap_or_default();
        let chosen: Vec<i64> = match n {
            1 => ids.clone(),
            n => match ids.get(n as usize - 2) {
                Some(id) if n >= 2 => vec![*id],
                _ => {
                    return self
                        .notice(
                            format!(
                                "【通道】序号{n}不在列表中，请回复1到{}之间的序号。",
                                ids.len() + 1
                            ),
                            "menu-bad-choice",
                        )
                        .await
                        .map(Some);
                }
            },
        };
        sqlx::query("DELETE FROM cancel_menus WHERE msisdn = $1")
            .bind(&self.mo.source)
            .execute(self.ctx.store.pool())
            .await?;
        let cancelled =
            subscriptions::cancel(&self.ctx.store, &chosen, "user chose it in the 0000 menu")
                .await?;
        self.farewell(&cancelled).await;
        let text = if cancelled.is_empty() {
            "【通道】所选业务已不在订购中。".to_string()
        } else {
            format!("【通道】已为您退订{}项业务，不再收费。", cancelled.len())
        };
        self.notice(text, "menu-choice").await.map(Some)
    }

    async fn help(&self, service: Option<&LiveService>) -> Result<String, RouteError> {
        let Some(service) = service else {
            return self
                .notice(
                    "【通道】回复0000查询或退订业务，回复00000退订全部业务，回复业务代码获取该业务说明。本消息免费。".into(),
                    "help",
                )
                .await;
        };
        self.set_service(service).await?;
        let r = &service.revision;
        let keyword = r.keywords.first().cloned().unwrap_or_default();
        self.notice(
            format!(
                "【通道】{}：{}。资费{}。订购回复{keyword}，退订回复TD{}。本消息免费。",
                r.name,
                if r.description.is_empty() {
                    &r.name
                } else {
                    &r.description
                },
                price_text(r.fee_type, r.price_fen),
                service.code
            ),
            "help",
        )
        .await
    }

    async fn subscribe(&self, service: &LiveService) -> Result<String, RouteError> {
        self.set_service(service).await?;
        let r = &service.revision;
        if service.status != ServiceStatus::Approved {
            return self
                .notice(
                    format!("【通道】“{}”暂停订购。", r.name),
                    "subscribe-unavailable",
                )
                .await;
        }
        let partner = partners::by_id(&self.ctx.store, service.partner_id).await?;
        if partner.status != "active" {
            return self
                .notice(
                    format!("【通道】“{}”暂停订购。", r.name),
                    "subscribe-unavailable",
                )
                .await;
        }
        let window_ms = i64::try_from(self.ctx.config.confirm_window_secs.saturating_mul(1000))
            .unwrap_or(i64::MAX);
        let requested = subscriptions::request(
            &self.ctx.store,
            service,
            &self.mo.source,
            Source::Mo,
            window_ms,
        )
        .await?;
        match requested {
            Requested::Pending(_) => {
                let hours = self.ctx.config.confirm_window_secs / 3600;
                self.notice(
                    format!(
                        "【通道】您将订购{}的“{}”，资费{}，由运营商代收。回复Y确认订购（{hours}小时内有效），不回复不订购、不收费。退订回复TD{}。",
                        partner.display_name,
                        r.name,
                        price_text(r.fee_type, r.price_fen),
                        service.code
                    ),
                    "subscribe-pending",
                )
                .await
            }
            Requested::AlreadyActive(_) => {
                self.notice(
                    format!(
                        "【通道】您已订购“{}”，无需重复订购。退订回复TD{}。",
                        r.name, service.code
                    ),
                    "already-subscribed",
                )
                .await
            }
            Requested::Active(sub) => self.welcome(service, &sub, "subscribe-active").await,
        }
    }

    /// The user confirmed a pending paid subscription: the one to this service's
    /// number, else their newest pending one. `None` if nothing is pending.
    async fn confirm(&self, live: &[LiveService]) -> Result<Option<String>, RouteError> {
        let pending = subscriptions::pending_for(&self.ctx.store, &self.mo.source).await?;
        let chosen = match self.by_number {
            Some(service) => pending.iter().find(|s| s.service_id == service.id),
            None => pending.first(),
        };
        let Some(sub) = chosen else { return Ok(None) };
        let Some(service) = live.iter().find(|s| s.id == sub.service_id) else {
            return Ok(None);
        };
        self.set_service(service).await?;
        if let Err(blocked) = self
            .ctx
            .relay
            .compliance()
            .may_send(service.partner_id, service.id)
            .await
        {
            return self
                .notice(
                    format!("【通道】“{}”暂停订购，未扣费。", service.revision.name),
                    &format!("confirm-refused: {blocked}"),
                )
                .await
                .map(Some);
        }
        match subscriptions::confirm(&self.ctx.store, sub.id, service).await? {
            Some(active) => self.welcome(service, &active, "confirm").await.map(Some),
            None => Ok(None),
        }
    }

    /// An active subscription: the platform's confirmation, then the module's
    /// welcome (its own content, checked like any other).
    async fn welcome(
        &self,
        service: &LiveService,
        sub: &subscriptions::Subscription,
        outcome: &str,
    ) -> Result<String, RouteError> {
        let r = &service.revision;
        let outcome = self
            .notice(
                format!(
                    "【通道】您已成功订购“{}”，资费{}。退订回复TD{}，查询回复0000。",
                    r.name,
                    price_text(r.fee_type, r.price_fen),
                    service.code
                ),
                outcome,
            )
            .await?;
        let Some(module) = &service.module else {
            return Ok(outcome);
        };
        let partner = partners::by_id(&self.ctx.store, service.partner_id).await?;
        let change = SubscriptionChange {
            subscriber: sub.subscriber_id.clone(),
            service: service.code.clone(),
            joined: true,
        };
        let call = self
            .ctx
            .registry
            .on_subscription(&partner, module, &change)
            .await;
        if let Ok(outcome_call) = call
            && let Ok(Some(text)) = outcome_call.result
        {
            let version = self
                .ctx
                .registry
                .active_version_id(&partner, module)
                .await
                .ok();
            // The welcome answers the user's own message and is never charged.
            let message = self.module_message(service, text, ChargePlan::Free, 0, version);
            if let Err(e) = self.ctx.relay.enqueue(message).await {
                tracing::warn!(service = %service.code, error = %e, "welcome text not queued");
            }
        }
        Ok(outcome)
    }

    fn module_message(
        &self,
        service: &LiveService,
        text: String,
        charge_plan: ChargePlan,
        price_fen: i64,
        module_version_id: Option<i64>,
    ) -> NewMessage {
        NewMessage {
            partner_id: Some(service.partner_id),
            service: Some(service.code.clone()),
            service_id: Some(service.id),
            recipient: self.mo.source.clone(),
            text,
            charge_plan,
            price_fen,
            basis: Basis::Reply(self.mo.id),
            sender: Some(service.sender(&self.ctx.config.short_code)),
            module_version_id,
            operator: None,
        }
    }

    /// Not a command nor a keyword: the module of the service the user holds (the
    /// one whose number they wrote to, or their only one) answers, else help.
    async fn to_module(&self, live: &[LiveService]) -> Result<String, RouteError> {
        let active = subscriptions::active_for_msisdn(&self.ctx.store, &self.mo.source).await?;
        let service = match self.by_number {
            Some(service) => active
                .iter()
                .any(|(s, _, _)| s.service_id == service.id)
                .then_some(service),
            None if active.len() == 1 => live.iter().find(|s| s.id == active[0].0.service_id),
            None => None,
        };
        let sub = service.and_then(|svc| active.iter().find(|(s, _, _)| s.service_id == svc.id));
        let (Some(service), Some((sub, _, _))) = (service, sub) else {
            return self
                .notice(self.ctx.config.unknown_reply.clone(), "unknown")
                .await;
        };
        let Some(module) = &service.module else {
            return self
                .notice(self.ctx.config.unknown_reply.clone(), "unknown")
                .await;
        };
        self.set_service(service).await?;
        let partner = partners::by_id(&self.ctx.store, service.partner_id).await?;
        let message = MoMessage {
            subscriber: sub.subscriber_id.clone(),
            service: service.code.clone(),
            text: self.mo.text.clone(),
            received_at_ms: self.mo.received_at,
        };
        let reply = match self.ctx.registry.on_mo(&partner, module, &message).await {
            Ok(call) => call.result,
            Err(e) => {
                tracing::warn!(service = %service.code, error = %e, "on-mo could not run");
                return self
                    .notice(
                        format!(
                            "【通道】“{}”暂时无法回复，请稍后再试。",
                            service.revision.name
                        ),
                        "module-unavailable",
                    )
                    .await;
            }
        };
        let text = match reply {
            Ok(Some(text)) => text,
            Ok(None) => return Ok("module-silent".into()),
            Err(e) => {
                tracing::warn!(service = %service.code, error = %e, "on-mo failed");
                return self
                    .notice(
                        format!(
                            "【通道】“{}”暂时无法回复，请稍后再试。",
                            service.revision.name
                        ),
                        "module-failed",
                    )
                    .await;
            }
        };
        let (plan, price) = match service.revision.fee_type {
            FeeType::PerMessage => (ChargePlan::PerMessage, service.revision.price_fen),
            FeeType::Monthly => (ChargePlan::Monthly, 0),
            FeeType::Free => (ChargePlan::Free, 0),
        };
        let version = self
            .ctx
            .registry
            .active_version_id(&partner, module)
            .await
            .ok();
        let message = self.module_message(service, text, plan, price, version);
        match self.ctx.relay.enqueue(message).await {
            Ok(_) => Ok("module-reply".into()),
            Err(e) => Ok(format!("module-reply-blocked: {e}")),
        }
    }
}
