//! One MO's conversation with the platform: the host's answers to commands,
//! subscribe and confirm, and the hand-over to the module of the user's service.
//! Every text the platform sends is written in [`super::notices`].
//!
//! The contract's promises about subscriptions (`wit/v1.0.0/partner.wit`) are kept
//! here: `on-subscribe` runs once a subscription is active (after the user's
//! confirmation for paid services) and its welcome goes out free with the host's
//! stop instruction appended; `on-unsubscribe` runs for a user who was active and
//! left, and its farewell goes out once, free, after the platform's confirmation.

use super::notices;
use super::router::{RouteError, RouterContext};
use crate::partners;
use crate::relay::{Basis, ChargePlan, MoRecord, NewMessage};
use crate::runtime::{MoMessage, SubscriptionChange};
use crate::services::{self, FeeType, LiveService, ServiceStatus};
use crate::store::now_ms;
use crate::subscriptions::{self, Requested, Source};

/// One MO's conversation.
pub(super) struct Dialogue<'a> {
    pub ctx: &'a RouterContext,
    pub mo: &'a MoRecord,
    pub by_number: Option<&'a LiveService>,
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

    /// The module version that wrote a text (violations name it).
    async fn set_service(&self, service: &LiveService) -> Result<(), RouteError> {
        sqlx::query("UPDATE mo_messages SET service_id = $1 WHERE id = $2")
            .bind(service.id)
            .bind(self.mo.id)
            .execute(self.ctx.store.pool())
            .await?;
        Ok(())
    }

    pub async fn stop(
        &self,
        service: Option<&LiveService>,
        code: &str,
    ) -> Result<String, RouteError> {
        let Some(service) = service else {
            return self
                .notice(notices::no_such_service(code), "stop-unknown-service")
                .await;
        };
        self.set_service(service).await?;
        let open =
            subscriptions::open_ids(&self.ctx.store, &self.mo.source, Some(service.id)).await?;
        let cancelled =
            subscriptions::cancel(&self.ctx.store, &open, "user sent a stop command").await?;
        if cancelled.is_empty() {
            return self
                .notice(notices::not_subscribed(service), "stop-not-subscribed")
                .await;
        }
        let outcome = self
            .notice(notices::stopped(&service.revision.name), "stop")
            .await?;
        self.farewell(&cancelled).await;
        Ok(outcome)
    }

    pub async fn stop_all(&self) -> Result<String, RouteError> {
        let open = subscriptions::open_ids(&self.ctx.store, &self.mo.source, None).await?;
        let cancelled =
            subscriptions::cancel(&self.ctx.store, &open, "user cancelled everything").await?;
        if cancelled.is_empty() {
            return self
                .notice(notices::no_subscriptions(), "stop-all-none")
                .await;
        }
        let outcome = self
            .notice(notices::stopped_all(cancelled.len()), "stop-all")
            .await?;
        self.farewell(&cancelled).await;
        Ok(outcome)
    }

    /// Tell the modules their users left: `on-unsubscribe` runs for every
    /// subscription that was active (a pending one never reached the module), and
    /// its farewell is sent once and free, after the platform's confirmation. The
    /// outbox holds it to that ([`Basis::Farewell`]): free, to that subscriber, once.
    async fn farewell(&self, cancelled: &[subscriptions::Subscription]) {
        for sub in cancelled.iter().filter(|s| s.activated_at.is_some()) {
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
            let (text, version, input) = match self
                .ctx
                .registry
                .on_subscription_for(&partner, module, &change, sub.id)
                .await
            {
                Ok(call) => match call.result {
                    Ok(Some(text)) => (text, call.version_id, call.input_sha256),
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::warn!(service = %service.code, error = %e, "on-unsubscribe failed");
                        continue;
                    }
                },
                Err(e) => {
                    tracing::warn!(service = %service.code, error = %e, "on-unsubscribe could not run");
                    continue;
                }
            };
            let message = NewMessage {
                partner_id: Some(service.partner_id),
                service: Some(service.code.clone()),
                service_id: Some(service.id),
                recipient: sub.msisdn.clone(),
                text,
                charge_plan: ChargePlan::Free,
                price_fen: 0,
                basis: Basis::Farewell(sub.id),
                sender: Some(service.sender(&self.ctx.config.short_code)),
                module_version_id: version,
                input_sha256: Some(input),
                operator: None,
            };
            if let Err(e) = self.ctx.relay.enqueue(message).await {
                tracing::warn!(service = %service.code, error = %e, "farewell not queued");
            }
        }
    }

    pub async fn menu(&self) -> Result<String, RouteError> {
        let active = subscriptions::active_for_msisdn(&self.ctx.store, &self.mo.source).await?;
        if active.is_empty() {
            return self.notice(notices::no_subscriptions(), "menu-empty").await;
        }
        let ids: Vec<i64> = active.iter().map(|(s, _, _)| s.id).collect();
        let items: Vec<(String, String, FeeType, i64)> = active
            .iter()
            .map(|(sub, code, name)| {
                let fee = FeeType::parse(&sub.fee_type).unwrap_or(FeeType::Free);
                (code.clone(), name.clone(), fee, sub.price_fen)
            })
            .collect();
        let text = notices::menu(&items);
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
    pub async fn menu_choice(&self, n: u32) -> Result<Option<String>, RouteError> {
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
                        .notice(notices::menu_bad_choice(n, ids.len()), "menu-bad-choice")
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
        let outcome = self
            .notice(notices::menu_done(cancelled.len()), "menu-choice")
            .await?;
        self.farewell(&cancelled).await;
        Ok(Some(outcome))
    }

    pub async fn help(&self, service: Option<&LiveService>) -> Result<String, RouteError> {
        let Some(service) = service else {
            return self.notice(notices::platform_help(), "help").await;
        };
        self.set_service(service).await?;
        self.notice(notices::service_help(service), "help").await
    }

    pub async fn subscribe(&self, service: &LiveService) -> Result<String, RouteError> {
        self.set_service(service).await?;
        if service.status != ServiceStatus::Approved {
            return self
                .notice(notices::unavailable(service), "subscribe-unavailable")
                .await;
        }
        let partner = partners::by_id(&self.ctx.store, service.partner_id).await?;
        if partner.status != "active" {
            return self
                .notice(notices::unavailable(service), "subscribe-unavailable")
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
            // The user asked themselves: always answered, with a fresh window.
            0,
        )
        .await?;
        match requested {
            // The user asked (again) themselves: the request is their own message's answer.
            Requested::Pending { .. } => {
                let hours = self.ctx.config.confirm_window_secs / 3600;
                self.notice(
                    notices::confirm_request(service, &partner.display_name, hours),
                    "subscribe-pending",
                )
                .await
            }
            Requested::AlreadyActive(_) => {
                self.notice(notices::already_subscribed(service), "already-subscribed")
                    .await
            }
            Requested::Active(sub) => self.welcome(service, &sub, "subscribe-active").await,
        }
    }

    /// The user confirmed a pending paid subscription: the one to this service's
    /// number, else their newest pending one. `None` if nothing is pending.
    pub async fn confirm(&self, live: &[LiveService]) -> Result<Option<String>, RouteError> {
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
            .compliance
            .may_send(service.partner_id, service.id)
            .await
        {
            return self
                .notice(
                    notices::confirm_refused(service),
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
    /// welcome (its own content, checked like any other, free, with the host's
    /// stop instruction appended).
    async fn welcome(
        &self,
        service: &LiveService,
        sub: &subscriptions::Subscription,
        outcome: &str,
    ) -> Result<String, RouteError> {
        let outcome = self.notice(notices::subscribed(service), outcome).await?;
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
            .on_subscription_for(&partner, module, &change, sub.id)
            .await;
        if let Ok(outcome_call) = call
            && let Ok(Some(text)) = outcome_call.result
        {
            // The welcome answers the user's own message and is never charged.
            let text = notices::with_stop_instruction(&text, &service.code);
            let message = self.module_message(
                service,
                text,
                (ChargePlan::Free, 0),
                (outcome_call.version_id, outcome_call.input_sha256),
            );
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
        (charge_plan, price_fen): (ChargePlan, i64),
        (module_version_id, input_sha256): (Option<i64>, String),
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
            input_sha256: Some(input_sha256),
            operator: None,
        }
    }

    /// Not a command nor a keyword: the module of the service the user holds (the
    /// one whose number they wrote to, or their only one) answers, else help.
    pub async fn to_module(&self, live: &[LiveService]) -> Result<String, RouteError> {
        let active = subscriptions::active_for_msisdn(&self.ctx.store, &self.mo.source).await?;
        let held: Vec<i64> = active.iter().map(|(s, _, _)| s.service_id).collect();
        let service = super::router::module_target(self.by_number, &held, live);
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
        let (reply, provenance) = match self
            .ctx
            .registry
            .on_mo_for(&partner, module, &message, sub.id)
            .await
        {
            Ok(call) => (call.result, (call.version_id, call.input_sha256)),
            Err(e) => {
                tracing::warn!(service = %service.code, error = %e, "on-mo could not run");
                return self
                    .notice(notices::module_unavailable(service), "module-unavailable")
                    .await;
            }
        };
        let text = match reply {
            Ok(Some(text)) => text,
            Ok(None) => return Ok("module-silent".into()),
            Err(e) => {
                tracing::warn!(service = %service.code, error = %e, "on-mo failed");
                return self
                    .notice(notices::module_unavailable(service), "module-failed")
                    .await;
            }
        };
        let (plan, price) = match service.revision.fee_type {
            FeeType::PerMessage => (ChargePlan::PerMessage, service.revision.price_fen),
            FeeType::Monthly => (ChargePlan::Monthly, 0),
            FeeType::Free => (ChargePlan::Free, 0),
        };
        let message = self.module_message(service, text, (plan, price), provenance);
        match self.ctx.relay.enqueue(message).await {
            Ok(_) => Ok("module-reply".into()),
            Err(e) => Ok(format!("module-reply-blocked: {e}")),
        }
    }
}
