//! When a run's bulletin call fails: a transient fault (`cpu-limit`,
//! `timeout`, `unavailable`, `concurrency-limit`) is retried with back-off
//! (`bulletin_retry_initial_ms` doubling to `bulletin_retry_max_ms`) while the run
//! has attempts left (`bulletin_attempts`) and is still within its validity
//! (`resume_within_secs` after its firing). Every failed attempt is recorded on
//! the run; when the run gives up it fails, and the partner gets a notice.

use super::{Inner, ScheduleError, runs};
use crate::notices::{self, NewNotice};
use crate::runtime::CallError;
use crate::store::now_ms;

/// Why a bulletin attempt failed.
pub(super) enum Failure {
    /// The call ran and failed (its kind decides whether to retry).
    Call(CallError),
    /// The run cannot call the module at all (no module, no active version…).
    Setup(String),
}

impl Failure {
    fn kind(&self) -> &'static str {
        match self {
            Self::Call(e) => e.kind(),
            Self::Setup(_) => "no-bulletin",
        }
    }

    fn message(&self) -> String {
        match self {
            Self::Call(e) => e.to_string(),
            Self::Setup(m) => m.clone(),
        }
    }

    fn transient(&self) -> bool {
        matches!(self, Self::Call(e) if e.is_transient())
    }
}

/// The pause before attempt `attempt + 1`, after `attempt` failed ones.
fn back_off_ms(inner: &Inner, attempt: i64) -> i64 {
    let initial = inner.config.bulletin_retry_initial_ms;
    let shift = u32::try_from(attempt.saturating_sub(1))
        .unwrap_or(u32::MAX)
        .min(20);
    let ms = initial
        .saturating_mul(1u64 << shift)
        .min(inner.config.bulletin_retry_max_ms.max(initial));
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// Record the failed attempt and either put the run aside until its next
/// attempt, or fail it and tell the partner.
pub(super) async fn bulletin_failed(
    inner: &Inner,
    run: &runs::Run,
    module: &str,
    failure: Failure,
) -> Result<(), ScheduleError> {
    let store = &inner.store;
    let owner = inner.owner.as_str();
    let now = now_ms();
    let attempt = runs::fault_count(store, run.id).await? + 1;
    let valid_until = run.fire_at.max(run.created_at).saturating_add(
        i64::try_from(inner.config.resume_within_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
    );
    let retry_at = now.saturating_add(back_off_ms(inner, attempt));
    let attempts = i64::from(inner.config.bulletin_attempts);
    let retry = failure.transient() && attempt < attempts && retry_at < valid_until;
    let (kind, message) = (failure.kind(), failure.message());
    runs::record_fault(store, run.id, kind, &message, retry.then_some(retry_at)).await?;
    if retry {
        let reason = format!(
            "bulletin attempt {attempt} of {attempts} failed ({kind}: {message}); trying again in {} ms",
            retry_at - now
        );
        tracing::warn!(run = run.id, %reason, "push run retrying");
        runs::retry_later(store, run.id, owner, &reason, retry_at).await?;
        return Ok(());
    }
    let why = if !failure.transient() {
        "the fault is not transient"
    } else if attempt >= attempts {
        "no attempts left ([schedule] bulletin_attempts)"
    } else {
        "the next attempt would fall after the run's validity ([schedule] resume_within_secs)"
    };
    let reason = format!(
        "module `{module}` failed its bulletin after {attempt} attempt(s), last: {kind}: {message}; gave up: {why}"
    );
    tracing::warn!(run = run.id, %reason, "push run failed");
    // The run fails and the partner is told in one transaction: whoever sees
    // the run failed can read the notice.
    let mut tx = store.begin_write().await?;
    let finished = runs::finish_on(&mut tx, run.id, owner, "failed", Some(&reason)).await?;
    if finished {
        let subject = format!(
            "push run {} for {} was not sent: its bulletin failed",
            run.id, run.push_date
        );
        notices::raise(
            &mut tx,
            &NewNotice {
                partner_id: run.partner_id,
                kind: "push-run-failed",
                subject: &subject,
                message: &reason,
                run_id: Some(run.id),
            },
        )
        .await?;
    }
    tx.commit().await?;
    if finished {
        crate::telemetry::push_run(false, "failed");
    }
    Ok(())
}
