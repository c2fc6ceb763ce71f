//! `[schedule]`: the push scheduler's settings: firing schedules and fanning
//! runs out. The time zone schedules default to is the platform's
//! (`[platform] time_zone`, [`crate::clock`]).

use serde::{Deserialize, Serialize};

/// The push scheduler: firing schedules and fanning runs out.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// Run the scheduler in this process (every replica may; firings and runs are
    /// claimed, so none is done twice).
    pub enabled: bool,
    /// How often due schedules and claimable runs are looked for.
    pub tick_ms: u64,
    /// Subscriptions fanned out per transaction. Large on purpose: on SQLite every
    /// transaction queues for the one write lock behind the relay's, and SQLite's
    /// busy handler waits in growing sleeps, so fewer, larger batches go faster.
    pub batch: u32,
    /// How long a run's claim holds without progress before another replica resumes it.
    pub lease_secs: u64,
    /// A firing noticed later than this after its time counts as missed (downtime),
    /// and the schedule's missed-run policy applies.
    pub grace_secs: u64,
    /// A paused run (partner or service suspended) resumes from its cursor only this
    /// long after its firing; later it ends as `expired` (yesterday's bulletin stays unsent).
    pub resume_within_secs: u64,
    /// How often a paused run checks whether it may go on.
    pub paused_recheck_secs: u64,
    /// Runs one process fans out at once.
    pub concurrent_runs: u32,
    /// Retired: the time zone moved to `[platform] time_zone`, which sets months,
    /// quiet hours and the modules' clock too. Any value is refused at start with
    /// that message (a silent alias would move billing months).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Most "push now" runs per service per platform day (issue 10 item 3); 0 = no
    /// limit. Scheduled firings do not count.
    pub push_now_daily_limit: u32,
    /// Bulletin calls a run makes before it gives up on a transient fault
    /// (`cpu-limit`, `timeout`, `unavailable`, `concurrency-limit`).
    pub bulletin_attempts: u32,
    /// Pause before the second attempt; it doubles up to `bulletin_retry_max_ms`.
    pub bulletin_retry_initial_ms: u64,
    pub bulletin_retry_max_ms: u64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            tick_ms: 1000,
            batch: 10_000,
            lease_secs: 30,
            grace_secs: 300,
            resume_within_secs: 6 * 3600,
            paused_recheck_secs: 30,
            concurrent_runs: 2,
            time_zone: None,
            push_now_daily_limit: 10,
            bulletin_attempts: 5,
            bulletin_retry_initial_ms: 1000,
            bulletin_retry_max_ms: 60_000,
        }
    }
}

impl ScheduleConfig {
    /// # Errors
    /// The key (`schedule…`) and why its value is refused.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.tick_ms == 0
            || self.batch == 0
            || self.lease_secs == 0
            || self.concurrent_runs == 0
            || self.bulletin_attempts == 0
        {
            return Err((
                "schedule",
                "tick_ms, batch, lease_secs, concurrent_runs and bulletin_attempts must be greater than 0"
                    .into(),
            ));
        }
        if self.batch > 50_000 {
            return Err((
                "schedule.batch",
                "at most 50000 subscriptions per transaction".into(),
            ));
        }
        if let Some(zone) = &self.time_zone {
            return Err((
                "schedule.time_zone",
                format!(
                    "moved to `[platform] time_zone`, which sets billing months, quiet hours and the modules' clock as well as schedules; write `[platform] time_zone = \"{zone}\"` (and remove it here) if that is what you mean"
                ),
            ));
        }
        Ok(())
    }
}
