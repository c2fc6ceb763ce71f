//! Scheduled pushes: schedules fire runs, a run calls the module's
//! `bulletin` once and fans it out to the service's active subscriptions, once per
//! subscription, on one machine or many.
//!
//! - [`cron`]: when a schedule fires (cron in a time zone, one-off, missed runs).
//! - [`schedules`]: schedule rows, and firing the due ones into runs.
//! - [`runs`]: run rows: claim with a lease, status, counters, pause, finish.
//! - [`fanout`]: one batch of a run into the outbox, in one transaction.
//! - `retry`: a failed bulletin retried with back-off, or the run given up with a
//!   notice to the partner.
//!
//! [`Scheduler`] is the background task every `tongdao serve` runs: each tick it
//! fires due schedules and claims runs (PostgreSQL: `FOR UPDATE SKIP LOCKED`), so
//! with N replicas a firing becomes one run and a run is fanned out by one replica
//! at a time; the outbox rows it writes are then sent by every replica's binds.

pub mod cron;
pub mod fanout;
mod hooks;
mod retry;
pub mod runs;
pub mod schedules;
pub mod settings;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};

use crate::compliance::Compliance;
use crate::modules::{PushBulletin, Registry, RegistryError};
use crate::partners::Partner;
use crate::relay::Relay;
use crate::runtime::{BulletinContent, BulletinRequest};
use crate::store::{Store, StoreError, now_ms};
pub use cron::{MissedPolicy, TimingError};
use fanout::{Plan, Step};
use runs::{NewRun, Run};
pub use settings::ScheduleConfig;

/// Why a schedule or run operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error(transparent)]
    Timing(#[from] TimingError),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    InvalidDate(String),
    #[error("the time is in the past")]
    InPast,
    #[error("no schedule {0}")]
    NotFound(i64),
    #[error("no push run {0}")]
    RunNotFound(i64),
    #[error("push run {id} is already {status}")]
    RunFinished { id: i64, status: String },
    #[error("the service may not send now: {0}")]
    Blocked(String),
    #[error("push run {id} of this service is still {status}; push again once it has finished")]
    RunInProgress { id: i64, status: String },
    #[error(
        "the service was pushed now {0} times today, the daily limit ([schedule] push_now_daily_limit)"
    )]
    PushLimit(u32),
    #[error("stored bulletin of a run is unreadable: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for ScheduleError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

/// What the scheduler's tasks share.
struct Inner {
    store: Store,
    registry: Arc<Registry>,
    relay: Arc<Relay>,
    /// The rules the gate applies, and the content check of each bulletin.
    compliance: Compliance,
    config: ScheduleConfig,
    tz: jiff::tz::TimeZone,
    /// The platform short code; a service's sender is it plus the extension.
    short_code: String,
    /// This process's name on the runs it claims.
    owner: String,
    wake: Notify,
    stopping: AtomicBool,
    runs: Mutex<JoinSet<()>>,
}

/// The push scheduler of one process.
pub struct Scheduler {
    inner: Arc<Inner>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("owner", &self.inner.owner)
            .finish_non_exhaustive()
    }
}

impl Scheduler {
    /// Start the tick loop (unless `[schedule] enabled = false`, which leaves the
    /// API working and the firing to other replicas).
    pub fn start(
        store: Store,
        registry: Arc<Registry>,
        relay: Arc<Relay>,
        compliance: Compliance,
        config: ScheduleConfig,
        short_code: String,
    ) -> Result<Self, ScheduleError> {
        let tz = crate::clock::time_zone();
        let owner = format!("{}-{:08x}", std::process::id(), rand::random::<u32>());
        let enabled = config.enabled;
        let inner = Arc::new(Inner {
            store,
            registry,
            relay,
            compliance,
            config,
            tz,
            short_code,
            owner,
            wake: Notify::new(),
            stopping: AtomicBool::new(false),
            runs: Mutex::new(JoinSet::new()),
        });
        let task = enabled.then(|| tokio::spawn(tick_loop(inner.clone())));
        Ok(Self {
            inner,
            task: Mutex::new(task),
        })
    }

    /// The name this process claims runs under.
    pub fn owner(&self) -> &str {
        &self.inner.owner
    }

    /// The platform time zone schedules default to (`[platform] time_zone`).
    pub fn default_time_zone(&self) -> &'static str {
        crate::clock::time_zone_name()
    }

    /// Look for due schedules and runs now rather than at the next tick.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// "Push now": a run of the service's bulletin for `date` (default: today in
    /// the platform time zone), refused at once if the service may not send.
    pub async fn push_now(
        &self,
        partner_id: i64,
        service_id: i64,
        date: Option<String>,
        actor: &str,
    ) -> Result<Run, ScheduleError> {
        let now = now_ms();
        let push_date = match date {
            Some(d) => crate::clock::parse_date(&d).map_err(ScheduleError::InvalidDate)?,
            None => cron::local_date(now, &self.inner.tz),
        };
        if let Err(reason) = hooks::may_send(&self.inner, partner_id, service_id).await? {
            return Err(ScheduleError::Blocked(reason));
        }
        let mut tx = self.inner.store.begin_write().await?;
        self.may_push_now_in(&mut tx, service_id, now).await?;
        let id = runs::insert(
            &mut tx,
            &NewRun {
                schedule_id: None,
                partner_id,
                service_id,
                origin: "now".into(),
                fire_at: now,
                push_date,
                status: "pending",
                late_ms: 0,
                reason: None,
                actor: actor.to_string(),
            },
            now,
        )
        .await?
        .ok_or_else(|| ScheduleError::Invalid("the run was not created".into()))?;
        tx.commit().await?;
        self.wake();
        runs::get(&self.inner.store, id).await
    }

    /// Issue 10 item 3: a push now waits for the service's unfinished run (any
    /// origin: pending, running or paused), and a service is pushed now at most
    /// `push_now_daily_limit` times per platform day. Checked in the transaction
    /// that inserts the run, with the service row locked on PostgreSQL (SQLite's
    /// write lock does the same), so racing requests queue one run at most.
    async fn may_push_now_in(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        service_id: i64,
        now: i64,
    ) -> Result<(), ScheduleError> {
        if self.inner.store.backend() == crate::store::Backend::Postgres {
            sqlx::query("SELECT id FROM services WHERE id = $1 FOR UPDATE")
                .bind(service_id)
                .execute(&mut **tx)
                .await?;
        }
        let open: Option<(i64, String)> = sqlx::query_as(
            "SELECT id, status FROM push_runs WHERE service_id = $1
             AND status IN ('pending', 'running', 'paused') ORDER BY id LIMIT 1",
        )
        .bind(service_id)
        .fetch_optional(&mut **tx)
        .await?;
        if let Some((id, status)) = open {
            return Err(ScheduleError::RunInProgress { id, status });
        }
        let limit = self.inner.config.push_now_daily_limit;
        if limit == 0 {
            return Ok(());
        }
        let day_start = jiff::Timestamp::from_millisecond(now)
            .map_err(|e| ScheduleError::Invalid(e.to_string()))?
            .to_zoned(self.inner.tz.clone())
            .start_of_day()
            .map_err(|e| ScheduleError::Invalid(e.to_string()))?
            .timestamp()
            .as_millisecond();
        let (today,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM push_runs WHERE service_id = $1 AND origin = 'now' AND created_at >= $2",
        )
        .bind(service_id)
        .bind(day_start)
        .fetch_one(&mut **tx)
        .await?;
        if today >= i64::from(limit) {
            return Err(ScheduleError::PushLimit(limit));
        }
        Ok(())
    }

    /// Stop firing and fanning out; give this process's claims back so a restart
    /// or another replica resumes them at once.
    pub async fn stop(&self) {
        self.abort();
        match runs::release_all(&self.inner.store, &self.inner.owner).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(runs = n, "push runs released for another replica"),
            Err(e) => {
                tracing::warn!(error = %e, "could not release push runs; their leases will run out")
            }
        }
    }

    fn abort(&self) {
        self.inner.stopping.store(true, Ordering::Relaxed);
        self.inner.wake.notify_one();
        if let Some(task) = self
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
        self.inner
            .runs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .abort_all();
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.abort();
    }
}

async fn tick_loop(inner: Arc<Inner>) {
    let tick = Duration::from_millis(inner.config.tick_ms);
    let grace_ms = i64::try_from(inner.config.grace_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let lease_ms = lease_ms(&inner.config);
    loop {
        if inner.stopping.load(Ordering::Relaxed) {
            return;
        }
        if let Err(e) = schedules::fire_due(&inner.store, now_ms(), grace_ms).await {
            tracing::error!(error = %e, "firing schedules failed");
        }
        loop {
            let active = {
                let mut set = inner
                    .runs
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                while set.try_join_next().is_some() {}
                set.len()
            };
            if active >= inner.config.concurrent_runs as usize {
                break;
            }
            match runs::claim(&inner.store, &inner.owner, lease_ms, now_ms()).await {
                Ok(Some(run)) => {
                    let task_inner = inner.clone();
                    inner
                        .runs
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .spawn({
                            // Every log line of the run carries its ids (issue 15).
                            let span = tracing::info_span!(
                                "push_run",
                                run = run.id,
                                partner = run.partner_id,
                                service = run.service_id
                            );
                            tracing::Instrument::instrument(
                                async move {
                                    let id = run.id;
                                    if let Err(e) = drive(&task_inner, run).await {
                                        tracing::error!(run = id, error = %e, "push run stopped; it resumes when its claim runs out");
                                    }
                                    // A slot is free: look for more work at once.
                                    task_inner.wake.notify_one();
                                },
                                span,
                            )
                        });
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(error = %e, "claiming push runs failed");
                    break;
                }
            }
        }
        tokio::select! {
            () = inner.wake.notified() => {}
            () = tokio::time::sleep(tick) => {}
        }
    }
}

fn lease_ms(config: &ScheduleConfig) -> i64 {
    i64::try_from(config.lease_secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// Take a claimed run as far as it can go: bulletin (once), then batches until
/// done, paused, or no longer ours.
async fn drive(inner: &Inner, run: Run) -> Result<(), ScheduleError> {
    let store = &inner.store;
    let owner = inner.owner.as_str();
    let config = &inner.config;
    let now = now_ms();
    let resume_ms =
        i64::try_from(config.resume_within_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    if now.saturating_sub(run.fire_at.max(run.created_at)) > resume_ms {
        runs::finish(
            store,
            run.id,
            owner,
            "expired",
            Some(&format!(
                "not finished within {} s of its firing ([schedule] resume_within_secs); the rest was not sent",
                config.resume_within_secs
            )),
        )
        .await?;
        return Ok(());
    }
    let recheck_ms =
        i64::try_from(config.paused_recheck_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    if let Err(reason) = hooks::may_send(inner, run.partner_id, run.service_id).await? {
        runs::pause(store, run.id, owner, &reason, recheck_ms).await?;
        tracing::info!(run = run.id, %reason, "push run paused");
        return Ok(());
    }
    let Some(service) = hooks::service(inner, run.service_id).await? else {
        runs::finish(
            store,
            run.id,
            owner,
            "failed",
            Some("the service has no approved terms"),
        )
        .await?;
        return Ok(());
    };

    // The version that wrote the bulletin: the run's stored one when resumed, the
    // one just called when prepared now (every MT records it, R-3.6).
    let (content, blocked, high_water, module_version_id, canary) =
        match (&run.content, run.high_water) {
            (Some(json), Some(high_water)) => {
                let content: BulletinContent = serde_json::from_str(json)
                    .map_err(|e| ScheduleError::Corrupt(e.to_string()))?;
                let mut blocked = parse_blocked(run.blocked_variants.as_deref())?;
                // Resumed: the policy may have changed meanwhile (a suspension is
                // often about content), so the variants still allowed are checked
                // again.
                if recheck(
                    inner,
                    &service,
                    (run.id, run.module_version_id),
                    &content,
                    &mut blocked,
                )
                .await?
                {
                    let json = serde_json::to_string(&blocked).unwrap_or_default();
                    runs::store_blocked(store, run.id, owner, &json).await?;
                }
                let canary = match (
                    &run.canary_content,
                    run.canary_version_id,
                    run.canary_percent,
                ) {
                    (Some(json), Some(version_id), Some(percent)) => {
                        let content: BulletinContent = serde_json::from_str(json)
                            .map_err(|e| ScheduleError::Corrupt(e.to_string()))?;
                        let mut blocked = parse_blocked(run.canary_blocked.as_deref())?;
                        recheck(
                            inner,
                            &service,
                            (run.id, Some(version_id)),
                            &content,
                            &mut blocked,
                        )
                        .await?;
                        Some(RunCanary {
                            version_id,
                            percent: u32::try_from(percent).unwrap_or(0),
                            content,
                            blocked,
                        })
                    }
                    _ => None,
                };
                (content, blocked, high_water, run.module_version_id, canary)
            }
            _ => match prepare(inner, &run, &service).await? {
                Some(prepared) => prepared,
                None => return Ok(()),
            },
        };

    let mut plan = Plan::new(
        run.id,
        owner.to_string(),
        service.terms.clone(),
        &content,
        &blocked,
        module_version_id,
        high_water,
        config.batch,
        lease_ms(config),
    );
    if let Some(canary) = &canary {
        plan = plan.with_canary(
            canary.version_id,
            canary.percent,
            &canary.content,
            &canary.blocked,
        );
    }
    loop {
        if inner.stopping.load(Ordering::Relaxed) {
            return Ok(());
        }
        match fanout::step(
            store,
            hooks::gate(inner),
            &service.live,
            &mut plan,
            now_ms(),
        )
        .await?
        {
            Step::Lost => return Ok(()),
            Step::Blocked(reason) => {
                runs::pause(store, run.id, owner, &reason, recheck_ms).await?;
                tracing::info!(run = run.id, %reason, "push run paused mid-fan-out; its cursor is kept");
                return Ok(());
            }
            Step::More(_) => hooks::wake_relay(inner),
            Step::Done(_) => {
                hooks::wake_relay(inner);
                runs::finish(store, run.id, owner, "completed", None).await?;
                tracing::info!(run = run.id, "push run completed");
                return Ok(());
            }
        }
    }
}

/// A canary's bulletin in a run (issue 17 item 4).
struct RunCanary {
    version_id: i64,
    percent: u32,
    content: BulletinContent,
    blocked: Vec<String>,
}

/// What a run fans out: the bulletin, its refused variants, the subscriber range's
/// end, the version that wrote it, and a canary's bulletin.
type PreparedRun = (
    BulletinContent,
    Vec<String>,
    i64,
    Option<i64>,
    Option<RunCanary>,
);

fn parse_blocked(json: Option<&str>) -> Result<Vec<String>, ScheduleError> {
    Ok(json
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| ScheduleError::Corrupt(e.to_string()))?
        .unwrap_or_default())
}

/// Check the variants of `content` not yet in `blocked` against the content
/// policy again (a resumed run); true when one more was refused.
async fn recheck(
    inner: &Inner,
    service: &hooks::Service,
    (run_id, version_id): (i64, Option<i64>),
    content: &BulletinContent,
    blocked: &mut Vec<String>,
) -> Result<bool, ScheduleError> {
    let before = blocked.len();
    for (key, text) in variant_texts(content) {
        if !blocked.contains(&key)
            && let Err(reason) = hooks::check_content(inner, service, version_id, text).await?
        {
            tracing::warn!(run = run_id, variant = %key, %reason, "bulletin variant refused by policy on resume");
            blocked.push(key);
        }
    }
    Ok(blocked.len() != before)
}

/// Check every variant of `content` (written by `version_id`) against the content
/// policy: the bulletin with each allowed text as it will be sent
/// (signed), and the keys refused.
async fn judged(
    inner: &Inner,
    service: &hooks::Service,
    (run_id, version_id): (i64, Option<i64>),
    content: BulletinContent,
) -> Result<(BulletinContent, Vec<String>), ScheduleError> {
    let mut blocked = Vec::new();
    let mut signed = HashMap::new();
    for (key, text) in variant_texts(&content) {
        match hooks::check_content(inner, service, version_id, text).await? {
            Ok(text) => {
                signed.insert(key, text);
            }
            Err(reason) => {
                tracing::warn!(run = run_id, variant = %key, %reason, "bulletin variant refused by policy");
                blocked.push(key);
            }
        }
    }
    Ok((with_texts(content, &signed), blocked))
}

/// Every text of a bulletin with the key it has in `blocked_variants`.
fn variant_texts(content: &BulletinContent) -> Vec<(String, &str)> {
    match content {
        BulletinContent::Single { text } => vec![(fanout::SINGLE_KEY.to_string(), text.as_str())],
        BulletinContent::Keyed {
            variants, fallback, ..
        }
        | BulletinContent::PerOperator { variants, fallback } => variants
            .iter()
            .map(|(k, t)| (k.clone(), t.as_str()))
            .chain(
                fallback
                    .as_deref()
                    .map(|t| (fanout::FALLBACK_KEY.to_string(), t)),
            )
            .collect(),
    }
}

/// The bulletin with the texts of `signed` (by variant key) in place.
fn with_texts(content: BulletinContent, signed: &HashMap<String, String>) -> BulletinContent {
    let pick = |key: &str, text: String| signed.get(key).cloned().unwrap_or(text);
    match content {
        BulletinContent::Single { text } => BulletinContent::Single {
            text: pick(fanout::SINGLE_KEY, text),
        },
        BulletinContent::Keyed {
            attribute,
            variants,
            fallback,
        } => BulletinContent::Keyed {
            attribute,
            variants: variants
                .into_iter()
                .map(|(k, t)| {
                    let t = pick(&k, t);
                    (k, t)
                })
                .collect(),
            fallback: fallback.map(|t| pick(fanout::FALLBACK_KEY, t)),
        },
        BulletinContent::PerOperator { variants, fallback } => BulletinContent::PerOperator {
            variants: variants
                .into_iter()
                .map(|(k, t)| {
                    let t = pick(&k, t);
                    (k, t)
                })
                .collect(),
            fallback: fallback.map(|t| pick(fanout::FALLBACK_KEY, t)),
        },
    }
}

/// Call the module's `bulletin` (once per run; under a canary once on each
/// version), check every variant against the content policy, and store both with
/// the run. None: the run ended or is not ours.
async fn prepare(
    inner: &Inner,
    run: &Run,
    service: &hooks::Service,
) -> Result<Option<PreparedRun>, ScheduleError> {
    let store = &inner.store;
    let owner = inner.owner.as_str();
    let fail = |reason: String| async move {
        tracing::warn!(run = run.id, %reason, "push run failed");
        runs::finish(store, run.id, owner, "failed", Some(&reason)).await
    };
    let Some(module) = service.module() else {
        let failure =
            retry::Failure::Setup("the service has no module to write its bulletin".into());
        retry::bulletin_failed(inner, run, "", failure).await?;
        return Ok(None);
    };
    let partner: Option<Partner> = sqlx::query_as(
        "SELECT id, name, display_name, status, created_at FROM partners WHERE id = $1",
    )
    .bind(run.partner_id)
    .fetch_optional(store.pool())
    .await?;
    let Some(partner) = partner else {
        fail(format!("no partner {}", run.partner_id)).await?;
        return Ok(None);
    };
    let version: Option<(Option<i64>,)> =
        sqlx::query_as("SELECT active_version_id FROM modules WHERE partner_id = $1 AND name = $2")
            .bind(partner.id)
            .bind(module)
            .fetch_optional(store.pool())
            .await?;
    let module_version_id = version.and_then(|(v,)| v);
    let request = BulletinRequest {
        service: service.code().to_string(),
        push_id: format!("run-{}", run.id),
        date: run.push_date.clone(),
    };
    let (outcome, canary) = match inner
        .registry
        .push_bulletin(&partner, module, &request)
        .await
    {
        Ok(PushBulletin { active, canary }) => (active, canary),
        Err(RegistryError::Store(e)) => return Err(e.into()),
        Err(RegistryError::Call(e)) => {
            retry::bulletin_failed(inner, run, module, retry::Failure::Call(e)).await?;
            return Ok(None);
        }
        Err(e) => {
            let failure = retry::Failure::Setup(e.to_string());
            retry::bulletin_failed(inner, run, module, failure).await?;
            return Ok(None);
        }
    };
    // The version that really ran (an activation may have come between the read
    // above and the call).
    let module_version_id = outcome.version_id.or(module_version_id);
    let input_sha256 = outcome.input_sha256;
    let content = match outcome.result {
        Ok(content) => content,
        Err(e) => {
            retry::bulletin_failed(inner, run, module, retry::Failure::Call(e)).await?;
            return Ok(None);
        }
    };
    // Each variant is checked and kept as it will be sent (signed).
    let (content, blocked) = judged(inner, service, (run.id, module_version_id), content).await?;
    // A canary that failed is its own fault (counted against it): its cohort gets
    // the active version's text.
    let canary = match canary {
        Some(c) => match c.outcome.result {
            Ok(content) => {
                let (content, blocked) =
                    judged(inner, service, (run.id, Some(c.version_id)), content).await?;
                Some(RunCanary {
                    version_id: c.version_id,
                    percent: c.percent,
                    content,
                    blocked,
                })
            }
            Err(e) => {
                tracing::warn!(run = run.id, error = %e, "the canary's bulletin failed; its cohort gets the active version's");
                None
            }
        },
        None => None,
    };
    let variants = match &content {
        BulletinContent::Single { .. } => 1,
        BulletinContent::Keyed { variants, .. } | BulletinContent::PerOperator { variants, .. } => {
            variants.len()
        }
    };
    let prepared = runs::Prepared {
        content_json: serde_json::to_string(&content)
            .map_err(|e| ScheduleError::Corrupt(e.to_string()))?,
        blocked_json: serde_json::to_string(&blocked)
            .map_err(|e| ScheduleError::Corrupt(e.to_string()))?,
        module_version_id,
        input_sha256,
        variants: i64::try_from(variants).unwrap_or(i64::MAX),
        canary: match &canary {
            Some(c) => Some(runs::PreparedCanary {
                version_id: c.version_id,
                percent: i64::from(c.percent),
                content_json: serde_json::to_string(&c.content)
                    .map_err(|e| ScheduleError::Corrupt(e.to_string()))?,
                blocked_json: serde_json::to_string(&c.blocked)
                    .map_err(|e| ScheduleError::Corrupt(e.to_string()))?,
            }),
            None => None,
        },
    };
    match runs::store_prepared(store, run, owner, &prepared).await? {
        Some(high_water) => Ok(Some((
            content,
            blocked,
            high_water,
            module_version_id,
            canary,
        ))),
        None => Ok(None),
    }
}
