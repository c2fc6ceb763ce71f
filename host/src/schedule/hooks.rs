//! Where runs meet services and compliance (issue 4): the service's live terms,
//! whether it may send, the content policy, quiet hours, caps and
//! their calendar keys, and waking the relay. Each is one plain call here.
//!
//! TODO(issue 4): these are stand-ins until `services::live`, `Compliance` and
//! `Relay::wake` land on main; they are replaced by calls to them at the merge.

use super::fanout::Terms;
use super::{Inner, ScheduleError, cron};
use crate::relay::ChargePlan;

/// What a run needs of its service.
#[derive(Debug, Clone)]
pub(super) struct Service {
    pub terms: Terms,
    pub module: Option<String>,
    pub code: String,
}

/// The service's live terms (None: not found or no approved terms).
pub(super) async fn service(
    inner: &Inner,
    service_id: i64,
) -> Result<Option<Service>, ScheduleError> {
    let row: Option<(i64, String, Option<String>)> =
        sqlx::query_as("SELECT partner_id, code, module FROM services WHERE id = $1")
            .bind(service_id)
            .fetch_optional(inner.store.pool())
            .await?;
    Ok(row.map(|(partner_id, code, module)| Service {
        terms: Terms {
            partner_id,
            service_id,
            service_code: code.clone(),
            charge_plan: ChargePlan::Free,
            price_fen: 0,
            sender: None,
            monthly_cap: None,
            daily_cap: None,
        },
        module,
        code,
    }))
}

/// Ok, or why the partner or service may not send now.
pub(super) async fn may_send(
    _inner: &Inner,
    _partner_id: i64,
    _service_id: i64,
) -> Result<Result<(), String>, ScheduleError> {
    Ok(Ok(()))
}

/// Ok, or why the content policy refuses `text`.
pub(super) async fn check_content(
    _inner: &Inner,
    _service: &Service,
    _module_version_id: Option<i64>,
    _text: &str,
) -> Result<Result<(), String>, ScheduleError> {
    Ok(Ok(()))
}

/// When a push queued at `now` may leave (quiet hours).
pub(super) fn release_at(_inner: &Inner, now: i64) -> i64 {
    now
}

/// `subscription_usage.month` of `now`.
pub(super) fn month_key(inner: &Inner, now: i64) -> String {
    cron::local_date(now, &inner.tz)[..7].to_string()
}

/// `partner_daily_usage.day` of `now`.
pub(super) fn day_key(inner: &Inner, now: i64) -> String {
    cron::local_date(now, &inner.tz)
}

/// Wake the relay's binds: new rows are queued.
pub(super) fn wake_relay(_inner: &Inner) {}
