//! Push runs: one durable row per firing, claimed by exactly one replica
//! with a lease, with its status, the bulletin as the module wrote it once, the
//! fan-out cursor and counters.
//!
//! Statuses: `pending` → `running` (claimed) → `completed` | `failed` | `expired` |
//! `cancelled`; `running` ⇄ `paused` while the partner or service may not send
//! `running` → `retrying` when the bulletin failed transiently (a deadline,
//! a busy host), claimed again when its back-off ends; `skipped` for a firing
//! missed under the `skip` policy. A `running` run whose lease ran out (its replica
//! died) is claimed again and resumes at its cursor.

use serde::Serialize;

use super::ScheduleError;
use crate::store::{Store, now_ms};

/// Statuses in which a run will do nothing more.
pub const FINAL: [&str; 5] = ["completed", "failed", "skipped", "cancelled", "expired"];

/// A run to insert.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub schedule_id: Option<i64>,
    pub partner_id: i64,
    pub service_id: i64,
    /// `cron`, `once` or `now`.
    pub origin: String,
    pub fire_at: i64,
    /// The local date the bulletin is for (`YYYY-MM-DD`).
    pub push_date: String,
    /// `pending`, or `skipped` to record a missed firing.
    pub status: &'static str,
    pub late_ms: i64,
    pub reason: Option<String>,
    pub actor: String,
}

/// A run as stored.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Run {
    pub id: i64,
    pub schedule_id: Option<i64>,
    pub partner_id: i64,
    pub service_id: i64,
    pub origin: String,
    #[serde(serialize_with = "crate::api::time::ms")]
    pub fire_at: i64,
    pub push_date: String,
    pub status: String,
    #[serde(skip)]
    pub owner: Option<String>,
    #[serde(skip)]
    #[serde(serialize_with = "crate::api::time::opt_ms")]
    pub lease_until: Option<i64>,
    pub attempts: i64,
    /// The bulletin (JSON of `BulletinContent`) once the module was called.
    #[serde(skip)]
    pub content: Option<String>,
    /// Variant keys refused by the content policy (JSON array).
    #[serde(skip)]
    pub blocked_variants: Option<String>,
    pub module_version_id: Option<i64>,
    /// Under a canary (issue 17 item 4): the canary's version and percentage;
    /// the subscriptions of its cohort got the canary's bulletin.
    pub canary_version_id: Option<i64>,
    pub canary_percent: Option<i64>,
    /// The canary's bulletin (JSON of `BulletinContent`) and its refused variants.
    #[serde(skip)]
    pub canary_content: Option<String>,
    #[serde(skip)]
    pub canary_blocked: Option<String>,
    /// The last subscription id this run covers (fixed when the bulletin is taken).
    pub high_water: Option<i64>,
    /// The last subscription id fanned out.
    pub cursor_id: i64,
    /// When the MTs queued last may leave (quiet hours).
    #[serde(serialize_with = "crate::api::time::opt_ms")]
    pub release_at: Option<i64>,
    pub subscribers: i64,
    pub variants: i64,
    pub queued: i64,
    pub blocked: i64,
    pub held: i64,
    pub skipped: i64,
    /// How late the run was created after its firing time (missed-run policy).
    pub late_ms: i64,
    pub reason: Option<String>,
    pub actor: String,
    #[serde(serialize_with = "crate::api::time::ms")]
    pub created_at: i64,
    #[serde(serialize_with = "crate::api::time::opt_ms")]
    pub started_at: Option<i64>,
    #[serde(serialize_with = "crate::api::time::opt_ms")]
    pub finished_at: Option<i64>,
    #[serde(serialize_with = "crate::api::time::ms")]
    pub updated_at: i64,
}

const COLUMNS: &str =
    "id, schedule_id, partner_id, service_id, origin, fire_at, push_date, status, owner,
    lease_until, attempts, content, blocked_variants, module_version_id, canary_version_id,
    canary_percent, canary_content, canary_blocked, high_water, cursor_id,
    release_at, subscribers, variants, queued, blocked, held, skipped, late_ms, reason, actor,
    created_at, started_at, finished_at, updated_at";

/// What the outbox says about a run's MTs (R-1.3: visible per message).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Delivery {
    /// Accepted by the operator's SMSC (at least one segment has an operator id).
    pub sent: i64,
    pub delivered: i64,
    /// Failed, undeliverable or expired.
    pub failed: i64,
    /// Still in the outbox (queued, submitting, held) or submitted without a receipt yet.
    pub pending: i64,
}

/// A run with its delivery counters and failed bulletin attempts, as the API
/// shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RunView {
    #[serde(flatten)]
    pub run: Run,
    pub delivery: Delivery,
    pub faults: Vec<RunFault>,
}

/// Insert a run unless the firing already has one; returns its id when inserted.
pub async fn insert(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    run: &NewRun,
    now: i64,
) -> Result<Option<i64>, ScheduleError> {
    let finished = (run.status != "pending").then_some(now);
    let id: Option<(i64,)> = sqlx::query_as(
        "INSERT INTO push_runs (schedule_id, partner_id, service_id, origin, fire_at, push_date, status,
            late_ms, reason, actor, created_at, finished_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $11)
         ON CONFLICT (schedule_id, fire_at) DO NOTHING RETURNING id",
    )
    .bind(run.schedule_id)
    .bind(run.partner_id)
    .bind(run.service_id)
    .bind(&run.origin)
    .bind(run.fire_at)
    .bind(&run.push_date)
    .bind(run.status)
    .bind(run.late_ms)
    .bind(&run.reason)
    .bind(&run.actor)
    .bind(now)
    .bind(finished)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(id.map(|(id,)| id))
}

/// One run.
pub async fn get(store: &Store, id: i64) -> Result<Run, ScheduleError> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM push_runs WHERE id = $1"))
        .bind(id)
        .fetch_optional(store.pool())
        .await?
        .ok_or(ScheduleError::RunNotFound(id))
}

/// A service's runs, newest first, `before` a run id for paging.
pub async fn list(
    store: &Store,
    service_id: i64,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<Run>, ScheduleError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM push_runs WHERE service_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
    ))
    .bind(service_id)
    .bind(before.unwrap_or(i64::MAX))
    .bind(limit.clamp(1, 501))
    .fetch_all(store.pool())
    .await?)
}

/// Sent / delivered / failed, counted from the run's MTs in the outbox.
pub async fn delivery(store: &Store, run_id: i64) -> Result<Delivery, ScheduleError> {
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT m.status, COUNT(*),
            SUM(CASE WHEN m.status IN ('failed', 'undeliverable', 'expired') AND EXISTS (
                SELECT 1 FROM message_segments s
                WHERE s.message_id = m.id AND s.operator_message_id IS NOT NULL) THEN 1 ELSE 0 END)
         FROM messages m WHERE m.push_run_id = $1 GROUP BY m.status",
    )
    .bind(run_id)
    .fetch_all(store.pool())
    .await?;
    let mut d = Delivery::default();
    for (status, count, accepted) in rows {
        match status.as_str() {
            "delivered" => {
                d.delivered += count;
                d.sent += count;
            }
            "submitted" => {
                d.sent += count;
                d.pending += count;
            }
            "failed" | "undeliverable" | "expired" => {
                d.failed += count;
                d.sent += accepted;
            }
            _ => d.pending += count,
        }
    }
    Ok(d)
}

/// When a run's delivery count is shared instead of made again (issue 18 item 2).
///
/// Counting a run's MTs is a pass over all of them: about a second for a
/// 1,000,000-subscriber push on SQLite, longer on a busy machine. Partners poll
/// their running pushes (`GET /v1/runs/{id}`, `GET /v1/services/{id}/runs`, `tongdao
/// run wait`), and under the load benchmark eight of them counting over and over
/// took the store from the relay: receipts fell to 45 a second. A count that took
/// at least `from` is therefore reused for `factor` times as long as it took (at
/// most `max`), so however many callers poll, a big run costs the store about
/// 1/`factor` of its time; callers that arrive while it is counted wait for that
/// count (after its first slow count). A quicker count is never reused: small
/// runs are exact on every call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sharing {
    pub from: std::time::Duration,
    pub factor: u32,
    pub max: std::time::Duration,
}

/// What the API and the console use: counts that took 100 ms or more are reused
/// for ten times as long, at most 5 s.
pub const SHARING: Sharing = Sharing {
    from: std::time::Duration::from_millis(100),
    factor: 10,
    max: std::time::Duration::from_secs(5),
};

/// The last slow count of a run.
#[derive(Debug, Clone)]
struct Counted {
    delivery: Delivery,
    at: std::time::Instant,
    took: std::time::Duration,
}

/// Per (store, run): the last slow count, behind a lock that callers of one run
/// queue on while it is counted. Slots of counts older than a minute are dropped
/// whenever a slot is added, so the map holds only the runs counted slowly lately.
type Slots =
    std::collections::HashMap<(u64, i64), std::sync::Arc<tokio::sync::Mutex<Option<Counted>>>>;

static SHARED: std::sync::LazyLock<std::sync::Mutex<Slots>> =
    std::sync::LazyLock::new(|| std::sync::Mutex::new(Slots::new()));

/// [`delivery`], with slow counts shared as `sharing` says.
///
/// # Errors
/// A store error.
pub async fn delivery_shared(
    store: &Store,
    run_id: i64,
    sharing: Sharing,
) -> Result<Delivery, ScheduleError> {
    let key = (store.id(), run_id);
    let reusable = |c: &Counted| {
        c.took >= sharing.from
            && c.at.elapsed() < c.took.saturating_mul(sharing.factor).min(sharing.max)
    };
    let slot = SHARED
        .lock()
        .map_err(|_| ScheduleError::Corrupt("the shared run counts were poisoned".into()))?
        .get(&key)
        .cloned();
    let Some(slot) = slot else {
        // Never counted slowly: count, and keep it only if it was slow.
        let started = std::time::Instant::now();
        let counted = delivery(store, run_id).await?;
        let took = started.elapsed();
        if took >= sharing.from {
            let mut slots = SHARED.lock().map_err(|_| {
                ScheduleError::Corrupt("the shared run counts were poisoned".into())
            })?;
            slots.retain(|_, s| {
                s.try_lock().map_or(true, |c| {
                    c.as_ref()
                        .is_some_and(|c| c.at.elapsed() < std::time::Duration::from_secs(60))
                })
            });
            slots.insert(
                key,
                std::sync::Arc::new(tokio::sync::Mutex::new(Some(Counted {
                    delivery: counted.clone(),
                    at: std::time::Instant::now(),
                    took,
                }))),
            );
        }
        return Ok(counted);
    };
    let mut last = slot.lock().await;
    if let Some(c) = last.as_ref().filter(|c| reusable(c)) {
        return Ok(c.delivery.clone());
    }
    let started = std::time::Instant::now();
    let counted = delivery(store, run_id).await?;
    *last = Some(Counted {
        delivery: counted.clone(),
        at: std::time::Instant::now(),
        took: started.elapsed(),
    });
    Ok(counted)
}

/// A run with its delivery counters ([`SHARING`]: a big run's count may be up to
/// 5 s old).
pub async fn view(store: &Store, run: Run) -> Result<RunView, ScheduleError> {
    let delivery = delivery_shared(store, run.id, SHARING).await?;
    let faults = faults(store, run.id).await?;
    Ok(RunView {
        run,
        delivery,
        faults,
    })
}

/// Claim the oldest run that is pending, or whose lease ran out (its replica died
/// mid-run, or it is paused and due for a re-check). On PostgreSQL rows another
/// replica is claiming are skipped.
pub async fn claim(
    store: &Store,
    owner: &str,
    lease_ms: i64,
    now: i64,
) -> Result<Option<Run>, ScheduleError> {
    let lock = store.skip_locked();
    let mut tx = store.begin_write().await?;
    let run: Option<Run> = sqlx::query_as(&format!(
        "UPDATE push_runs SET status = 'running', owner = $1, lease_until = $2, attempts = attempts + 1,
            started_at = COALESCE(started_at, $3), updated_at = $3
         WHERE id = (SELECT id FROM push_runs
                     WHERE status = 'pending'
                        OR (status IN ('running', 'paused', 'retrying') AND lease_until < $3)
                     ORDER BY id LIMIT 1 {lock})
         RETURNING {COLUMNS}"
    ))
    .bind(owner)
    .bind(now.saturating_add(lease_ms))
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    if run.as_ref().is_some_and(|r| r.attempts == 1) {
        crate::telemetry::push_run(true, "running");
    }
    Ok(run)
}

/// Keep the claim alive; false when the run is no longer this owner's.
pub async fn renew(
    store: &Store,
    id: i64,
    owner: &str,
    lease_ms: i64,
) -> Result<bool, ScheduleError> {
    let now = now_ms();
    let done = sqlx::query(
        "UPDATE push_runs SET lease_until = $3, updated_at = $4 WHERE id = $1 AND owner = $2 AND status = 'running'",
    )
    .bind(id)
    .bind(owner)
    .bind(now.saturating_add(lease_ms))
    .bind(now)
    .execute(store.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// What the bulletin call settled, stored once so a resumed run sends the same.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub content_json: String,
    pub blocked_json: String,
    pub module_version_id: Option<i64>,
    /// SHA-256 of the bulletin call's inputs (`crate::runtime::input_sha256`).
    pub input_sha256: String,
    pub variants: i64,
    /// The canary's bulletin, if the module had a canary that answered.
    pub canary: Option<PreparedCanary>,
}

/// The canary's part of a prepared run (issue 17 item 4).
#[derive(Debug, Clone)]
pub struct PreparedCanary {
    pub version_id: i64,
    pub percent: i64,
    pub content_json: String,
    pub blocked_json: String,
}

/// Store the bulletin and fix the run's subscriber range (`high_water`: the last
/// subscription id of the service now; later opt-ins wait for the next push).
/// Returns the range's end, or None when the run is no longer this owner's.
pub async fn store_prepared(
    store: &Store,
    run: &Run,
    owner: &str,
    prepared: &Prepared,
) -> Result<Option<i64>, ScheduleError> {
    let now = now_ms();
    let mut tx = store.begin_write().await?;
    let (high_water,): (Option<i64>,) =
        sqlx::query_as("SELECT MAX(id) FROM subscriptions WHERE service_id = $1")
            .bind(run.service_id)
            .fetch_one(&mut *tx)
            .await?;
    let done = sqlx::query(
        "UPDATE push_runs SET content = $3, blocked_variants = $4, module_version_id = $5, variants = $6,
            high_water = $7, updated_at = $8, input_sha256 = $9, canary_version_id = $10,
            canary_percent = $11, canary_content = $12, canary_blocked = $13
         WHERE id = $1 AND owner = $2 AND status = 'running' AND content IS NULL",
    )
    .bind(run.id)
    .bind(owner)
    .bind(&prepared.content_json)
    .bind(&prepared.blocked_json)
    .bind(prepared.module_version_id)
    .bind(prepared.variants)
    .bind(high_water.unwrap_or(0))
    .bind(now)
    .bind(&prepared.input_sha256)
    .bind(prepared.canary.as_ref().map(|c| c.version_id))
    .bind(prepared.canary.as_ref().map(|c| c.percent))
    .bind(prepared.canary.as_ref().map(|c| c.content_json.clone()))
    .bind(prepared.canary.as_ref().map(|c| c.blocked_json.clone()))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((done.rows_affected() == 1).then_some(high_water.unwrap_or(0)))
}

/// Record more variants refused by policy on resume (the policy may have changed).
pub async fn store_blocked(
    store: &Store,
    id: i64,
    owner: &str,
    blocked_json: &str,
) -> Result<(), ScheduleError> {
    sqlx::query(
        "UPDATE push_runs SET blocked_variants = $3, updated_at = $4 WHERE id = $1 AND owner = $2",
    )
    .bind(id)
    .bind(owner)
    .bind(blocked_json)
    .bind(now_ms())
    .execute(store.pool())
    .await?;
    Ok(())
}

/// End a run this owner holds (`completed`, `failed`, `expired`).
pub async fn finish(
    store: &Store,
    id: i64,
    owner: &str,
    status: &str,
    reason: Option<&str>,
) -> Result<bool, ScheduleError> {
    let mut conn = store.pool().acquire().await?;
    let finished = finish_on(&mut conn, id, owner, status, reason).await?;
    if finished {
        crate::telemetry::push_run(false, status);
    }
    Ok(finished)
}

/// [`finish`] on a connection or inside a transaction (`&mut *tx`), so what else
/// records the end (a notice) commits with it.
pub async fn finish_on(
    conn: &mut sqlx::AnyConnection,
    id: i64,
    owner: &str,
    status: &str,
    reason: Option<&str>,
) -> Result<bool, ScheduleError> {
    let now = now_ms();
    let done = sqlx::query(
        "UPDATE push_runs SET status = $3, reason = COALESCE($4, reason), owner = NULL, lease_until = NULL,
            finished_at = $5, updated_at = $5
         WHERE id = $1 AND owner = $2 AND status = 'running'",
    )
    .bind(id)
    .bind(owner)
    .bind(status)
    .bind(reason)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Pause a run that may not send now; it is looked at again after `recheck_ms`.
/// The cursor stays: on resume it goes on from the next subscription.
pub async fn pause(
    store: &Store,
    id: i64,
    owner: &str,
    reason: &str,
    recheck_ms: i64,
) -> Result<bool, ScheduleError> {
    let until = now_ms().saturating_add(recheck_ms);
    set_aside(store, id, owner, "paused", reason, until).await
}

/// Hand a run this owner holds back as `status` (`paused`, `retrying`) with its
/// reason; any replica claims it again after `until`. False when it is no longer
/// this owner's.
async fn set_aside(
    store: &Store,
    id: i64,
    owner: &str,
    status: &str,
    reason: &str,
    until: i64,
) -> Result<bool, ScheduleError> {
    let done = sqlx::query(
        "UPDATE push_runs SET status = $3, reason = $4, owner = NULL, lease_until = $5, updated_at = $6
         WHERE id = $1 AND owner = $2 AND status = 'running'",
    )
    .bind(id)
    .bind(owner)
    .bind(status)
    .bind(reason)
    .bind(until)
    .bind(now_ms())
    .execute(store.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// One failed bulletin attempt of a run.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct RunFault {
    pub attempt: i64,
    pub kind: String,
    pub message: String,
    /// When the run tries again; None when it gave up.
    #[serde(serialize_with = "crate::api::time::opt_ms")]
    pub retry_at: Option<i64>,
    #[serde(serialize_with = "crate::api::time::ms")]
    pub at: i64,
}

/// Record a failed bulletin attempt; returns its number (1 for the first).
pub async fn record_fault(
    store: &Store,
    id: i64,
    kind: &str,
    message: &str,
    retry_at: Option<i64>,
) -> Result<i64, ScheduleError> {
    let mut tx = store.begin_write().await?;
    let (previous,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM push_run_faults WHERE run_id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
    let attempt = previous + 1;
    sqlx::query(
        "INSERT INTO push_run_faults (run_id, attempt, kind, message, retry_at, at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(attempt)
    .bind(kind)
    .bind(message)
    .bind(retry_at)
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(attempt)
}

/// How many bulletin attempts of a run failed so far.
pub async fn fault_count(store: &Store, id: i64) -> Result<i64, ScheduleError> {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM push_run_faults WHERE run_id = $1")
        .bind(id)
        .fetch_one(store.pool())
        .await?;
    Ok(n)
}

/// A run's failed bulletin attempts, in order.
pub async fn faults(store: &Store, id: i64) -> Result<Vec<RunFault>, ScheduleError> {
    Ok(sqlx::query_as(
        "SELECT attempt, kind, message, retry_at, at FROM push_run_faults WHERE run_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(store.pool())
    .await?)
}

/// Put a run this owner holds aside until `retry_at` (its bulletin failed
/// transiently); any replica claims it again then.
pub async fn retry_later(
    store: &Store,
    id: i64,
    owner: &str,
    reason: &str,
    retry_at: i64,
) -> Result<bool, ScheduleError> {
    set_aside(store, id, owner, "retrying", reason, retry_at).await
}

/// Give up this owner's claims at once (graceful stop), so a restart or another
/// replica resumes them without waiting for the lease.
pub async fn release_all(store: &Store, owner: &str) -> Result<u64, ScheduleError> {
    Ok(sqlx::query(
        "UPDATE push_runs SET lease_until = 0, updated_at = $2 WHERE owner = $1 AND status = 'running'",
    )
    .bind(owner)
    .bind(now_ms())
    .execute(store.pool())
    .await?
    .rows_affected())
}

/// Cancel a run that has not finished. MTs it already queued stay in the outbox.
pub async fn cancel(store: &Store, id: i64, actor: &str) -> Result<Run, ScheduleError> {
    let now = now_ms();
    let done = sqlx::query(
        "UPDATE push_runs SET status = 'cancelled', reason = $2, owner = NULL, lease_until = NULL,
            finished_at = $3, updated_at = $3
         WHERE id = $1 AND status IN ('pending', 'running', 'paused', 'retrying')",
    )
    .bind(id)
    .bind(format!("cancelled by {actor}"))
    .bind(now)
    .execute(store.pool())
    .await?;
    let run = get(store, id).await?;
    if done.rows_affected() == 0 {
        return Err(ScheduleError::RunFinished {
            id,
            status: run.status,
        });
    }
    Ok(run)
}
