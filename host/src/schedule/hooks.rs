//! Where runs meet services and compliance (issue 4): the service's live terms,
//! whether it may send, the content policy and signature, quiet
//! hours, caps and their calendar keys, and waking the relay.

use super::fanout::Terms;
use super::{Inner, ScheduleError};
use crate::compliance::{self, Blocked};
use crate::relay::ChargePlan;
use crate::services::{self, FeeType, LiveService, ServiceError};

/// What a run needs of its service.
#[derive(Debug, Clone)]
pub(super) struct Service {
    pub live: LiveService,
    pub terms: Terms,
}

impl Service {
    pub fn module(&self) -> Option<&str> {
        self.live.module.as_deref()
    }

    pub fn code(&self) -> &str {
        &self.live.code
    }
}

/// The service's terms in force (None: unknown, or never approved).
pub(super) async fn service(
    inner: &Inner,
    service_id: i64,
) -> Result<Option<Service>, ScheduleError> {
    let live = match services::live(&inner.store, service_id).await {
        Ok(Some(live)) => live,
        Ok(None) | Err(ServiceError::NotFound) => return Ok(None),
        Err(ServiceError::Store(e)) => return Err(e.into()),
        Err(e) => return Err(ScheduleError::Invalid(e.to_string())),
    };
    let compliance = inner.relay.compliance();
    let revision = &live.revision;
    let (charge_plan, price_fen) = match revision.fee_type {
        FeeType::Free => (ChargePlan::Free, 0),
        FeeType::PerMessage => (ChargePlan::PerMessage, revision.price_fen),
        FeeType::Monthly => (ChargePlan::Monthly, 0),
    };
    let terms = Terms {
        partner_id: live.partner_id,
        service_id: live.id,
        service_code: live.code.clone(),
        charge_plan,
        price_fen,
        sender: Some(live.sender(&inner.short_code)),
        monthly_cap: compliance.monthly_cap(&live),
        daily_cap: compliance.partner_daily_cap(),
    };
    Ok(Some(Service { live, terms }))
}

/// Split a compliance answer: a refusal is a value, a store failure an error.
fn refusal<T>(result: Result<T, Blocked>) -> Result<Result<T, String>, ScheduleError> {
    match result {
        Ok(v) => Ok(Ok(v)),
        Err(Blocked::Store(e)) => Err(e.into()),
        Err(blocked) => Ok(Err(blocked.to_string())),
    }
}

/// Ok, or why the partner or service may not send now.
pub(super) async fn may_send(
    inner: &Inner,
    partner_id: i64,
    service_id: i64,
) -> Result<Result<(), String>, ScheduleError> {
    refusal(
        inner
            .relay
            .compliance()
            .may_send(partner_id, service_id)
            .await,
    )
}

/// The text to send (signed), or why the content policy refuses it (recorded as
/// a violation of the partner by compliance).
pub(super) async fn check_content(
    inner: &Inner,
    service: &Service,
    module_version_id: Option<i64>,
    text: &str,
) -> Result<Result<String, String>, ScheduleError> {
    refusal(
        inner
            .relay
            .compliance()
            .check_content(&service.live, module_version_id, text)
            .await,
    )
}

/// When a push queued at `now` may leave (quiet hours).
pub(super) fn release_at(inner: &Inner, now: i64) -> i64 {
    inner.relay.compliance().push_release_at(now)
}

/// `subscription_usage.month` of `now` (platform time zone).
pub(super) fn month_key(now: i64) -> String {
    compliance::month_key(now)
}

/// `partner_daily_usage.day` of `now` (platform time zone).
pub(super) fn day_key(now: i64) -> String {
    compliance::day_key(now)
}

/// Wake the relay's binds: rows were queued.
pub(super) fn wake_relay(inner: &Inner) {
    inner.relay.wake();
}
