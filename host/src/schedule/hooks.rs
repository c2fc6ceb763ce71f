//! Where runs meet services and compliance (issue 4): the service's live terms,
//! whether it may send, the content policy and signature, quiet
//! hours and caps (applied by the outbox's gate, R-8.4, R-4.7), and waking the relay.

use super::fanout::Terms;
use super::{Inner, ScheduleError};
use crate::compliance::Blocked;
use crate::relay::ChargePlan;
use crate::relay::outbox::Gate;
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
    refusal(inner.compliance.may_send(partner_id, service_id).await)
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
            .compliance
            .check_content(&service.live, module_version_id, text)
            .await,
    )
}

/// The outbox's gate, with the scheduler's compliance service.
pub(super) fn gate(inner: &Inner) -> Gate<'_> {
    Gate {
        routes: inner.relay.routes(),
        relay: inner.relay.config(),
        compliance: &inner.compliance,
    }
}

/// Wake the relay's binds: rows were queued.
pub(super) fn wake_relay(inner: &Inner) {
    inner.relay.wake();
}
