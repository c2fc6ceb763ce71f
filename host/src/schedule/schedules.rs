//! Push schedules per service: create, change, delete, and firing the due
//! ones into runs. A firing becomes a run once, however many replicas see it: the
//! schedule's `next_fire_at` is advanced in the same transaction that inserts the
//! run, the row is locked (PostgreSQL: `FOR UPDATE SKIP LOCKED`; SQLite: the write
//! lock), and `push_runs` has UNIQUE (schedule_id, fire_at).

use serde::{Deserialize, Serialize};

use super::ScheduleError;
use super::cron::{self, MissedPolicy, Timing};
use super::runs::{self, NewRun};
use crate::store::{Store, now_ms};

/// A schedule as stored and shown.
#[derive(Debug, Clone, Serialize)]
pub struct Schedule {
    pub id: i64,
    pub service_id: i64,
    pub partner_id: i64,
    /// `cron` or `once`.
    pub kind: String,
    pub cron: Option<String>,
    /// For `once`: when (RFC 3339 UTC).
    #[serde(serialize_with = "crate::api::time::opt_ms")]
    pub at: Option<i64>,
    pub time_zone: String,
    pub missed: MissedPolicy,
    pub enabled: bool,
    /// The next firing not yet turned into a run.
    #[serde(serialize_with = "crate::api::time::opt_ms")]
    pub next_fire_at: Option<i64>,
    #[serde(serialize_with = "crate::api::time::opt_ms")]
    pub last_fire_at: Option<i64>,
    pub created_by: String,
    #[serde(serialize_with = "crate::api::time::ms")]
    pub created_at: i64,
    #[serde(serialize_with = "crate::api::time::ms")]
    pub updated_at: i64,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    service_id: i64,
    partner_id: i64,
    kind: String,
    cron: Option<String>,
    run_at: Option<i64>,
    time_zone: String,
    missed: String,
    enabled: i64,
    next_fire_at: Option<i64>,
    last_fire_at: Option<i64>,
    created_by: String,
    created_at: i64,
    updated_at: i64,
}

const COLUMNS: &str = "id, service_id, partner_id, kind, cron, run_at, time_zone, missed, enabled, \
     next_fire_at, last_fire_at, created_by, created_at, updated_at";

impl From<Row> for Schedule {
    fn from(r: Row) -> Self {
        Self {
            id: r.id,
            service_id: r.service_id,
            partner_id: r.partner_id,
            kind: r.kind,
            cron: r.cron,
            at: r.run_at,
            time_zone: r.time_zone,
            missed: MissedPolicy::parse(&r.missed).unwrap_or_default(),
            enabled: r.enabled != 0,
            next_fire_at: r.next_fire_at,
            last_fire_at: r.last_fire_at,
            created_by: r.created_by,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

impl Row {
    fn timing(&self) -> Result<Timing, ScheduleError> {
        match (self.kind.as_str(), &self.cron, self.run_at) {
            ("cron", Some(expr), _) => Ok(Timing::Cron(Box::new(cron::parse_cron(expr)?))),
            ("once", _, Some(at)) => Ok(Timing::Once(at)),
            _ => Err(ScheduleError::Invalid(format!(
                "schedule {} has neither a cron expression nor a time",
                self.id
            ))),
        }
    }
}

/// What a client asks for. On create, exactly one of `cron` / `at`; on update, any
/// field given replaces the stored one.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleInput {
    /// 5 fields, or 6 with seconds first.
    pub cron: Option<String>,
    /// A one-off time: RFC 3339, or a local date-time in the time zone.
    pub at: Option<String>,
    /// IANA name; default the platform time zone (`[platform] time_zone`).
    pub time_zone: Option<String>,
    pub missed: Option<MissedPolicy>,
    pub enabled: Option<bool>,
}

/// The timing fields after validation.
struct Resolved {
    kind: &'static str,
    cron: Option<String>,
    run_at: Option<i64>,
    time_zone: String,
    next_fire_at: Option<i64>,
}

fn resolve(
    cron_expr: Option<String>,
    at: Option<&str>,
    stored_at: Option<i64>,
    time_zone: String,
    now: i64,
) -> Result<Resolved, ScheduleError> {
    let tz = cron::time_zone(&time_zone)?;
    match (cron_expr, at, stored_at) {
        (Some(_), Some(_), _) => Err(ScheduleError::Invalid(
            "give either `cron` or `at`, not both".into(),
        )),
        (Some(expr), None, _) => {
            let parsed = cron::parse_cron(&expr)?;
            Ok(Resolved {
                kind: "cron",
                next_fire_at: cron::next_after(&parsed, now, &tz),
                cron: Some(expr),
                run_at: None,
                time_zone,
            })
        }
        (None, Some(at), _) => {
            let at = cron::parse_at(at, &tz)?;
            if at <= now {
                return Err(ScheduleError::InPast);
            }
            Ok(Resolved {
                kind: "once",
                cron: None,
                run_at: Some(at),
                next_fire_at: Some(at),
                time_zone,
            })
        }
        (None, None, Some(at)) => Ok(Resolved {
            kind: "once",
            cron: None,
            run_at: Some(at),
            next_fire_at: (at > now).then_some(at),
            time_zone,
        }),
        (None, None, None) => Err(ScheduleError::Invalid(
            "a schedule needs `cron` (e.g. \"0 8 * * *\") or `at` (a time)".into(),
        )),
    }
}

/// Create a schedule for a service.
pub async fn create(
    store: &Store,
    partner_id: i64,
    service_id: i64,
    input: ScheduleInput,
    default_time_zone: &str,
    actor: &str,
) -> Result<Schedule, ScheduleError> {
    let now = now_ms();
    let time_zone = input
        .time_zone
        .unwrap_or_else(|| default_time_zone.to_string());
    let r = resolve(input.cron, input.at.as_deref(), None, time_zone, now)?;
    let row: Row = sqlx::query_as(&format!(
        "INSERT INTO push_schedules (partner_id, service_id, kind, cron, run_at, time_zone, missed,
            enabled, next_fire_at, created_by, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) RETURNING {COLUMNS}"
    ))
    .bind(partner_id)
    .bind(service_id)
    .bind(r.kind)
    .bind(&r.cron)
    .bind(r.run_at)
    .bind(&r.time_zone)
    .bind(input.missed.unwrap_or_default().as_str())
    .bind(i64::from(input.enabled.unwrap_or(true)))
    .bind(r.next_fire_at)
    .bind(actor)
    .bind(now)
    .fetch_one(store.pool())
    .await?;
    Ok(row.into())
}

async fn row(store: &Store, id: i64) -> Result<Row, ScheduleError> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM push_schedules WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(store.pool())
    .await?
    .ok_or(ScheduleError::NotFound(id))
}

/// One schedule.
pub async fn get(store: &Store, id: i64) -> Result<Schedule, ScheduleError> {
    Ok(row(store, id).await?.into())
}

/// A service's schedules, oldest first.
pub async fn list(store: &Store, service_id: i64) -> Result<Vec<Schedule>, ScheduleError> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM push_schedules WHERE service_id = $1 ORDER BY id"
    ))
    .bind(service_id)
    .fetch_all(store.pool())
    .await?;
    Ok(rows.into_iter().map(Schedule::from).collect())
}

/// Change a schedule. The next firing is computed again from now, so a change
/// never makes a past firing due.
pub async fn update(
    store: &Store,
    id: i64,
    input: ScheduleInput,
) -> Result<Schedule, ScheduleError> {
    let now = now_ms();
    let current = row(store, id).await?;
    let time_zone = input.time_zone.unwrap_or(current.time_zone.clone());
    let (cron_expr, stored_at) = match (&input.cron, &input.at) {
        (None, None) => (current.cron.clone(), current.run_at),
        _ => (input.cron.clone(), None),
    };
    // A one-off that already fired keeps nothing to fire.
    let stored_at = stored_at.filter(|_| current.last_fire_at.is_none());
    let r = if cron_expr.is_none() && input.at.is_none() && stored_at.is_none() {
        Resolved {
            kind: "once",
            cron: None,
            run_at: current.run_at,
            next_fire_at: None,
            time_zone: time_zone.clone(),
        }
    } else {
        resolve(cron_expr, input.at.as_deref(), stored_at, time_zone, now)?
    };
    let missed = input
        .missed
        .or(MissedPolicy::parse(&current.missed))
        .unwrap_or_default();
    let enabled = input.enabled.unwrap_or(current.enabled != 0);
    let updated: Option<Row> = sqlx::query_as(&format!(
        "UPDATE push_schedules SET kind = $2, cron = $3, run_at = $4, time_zone = $5, missed = $6,
            enabled = $7, next_fire_at = $8, updated_at = $9
         WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(r.kind)
    .bind(&r.cron)
    .bind(r.run_at)
    .bind(&r.time_zone)
    .bind(missed.as_str())
    .bind(i64::from(enabled))
    .bind(r.next_fire_at)
    .bind(now)
    .fetch_optional(store.pool())
    .await?;
    updated
        .map(Schedule::from)
        .ok_or(ScheduleError::NotFound(id))
}

/// Delete a schedule. Runs it already fired stay (with their messages).
pub async fn delete(store: &Store, id: i64) -> Result<(), ScheduleError> {
    let done = sqlx::query("DELETE FROM push_schedules WHERE id = $1")
        .bind(id)
        .execute(store.pool())
        .await?;
    if done.rows_affected() == 0 {
        return Err(ScheduleError::NotFound(id));
    }
    Ok(())
}

/// Turn every due firing into a run (or a `skipped` record); returns the ids of
/// the runs created by this call.
pub async fn fire_due(store: &Store, now: i64, grace_ms: i64) -> Result<Vec<i64>, ScheduleError> {
    let due: Vec<(i64,)> = sqlx::query_as(
        "SELECT id FROM push_schedules WHERE enabled = 1 AND next_fire_at <= $1
         ORDER BY next_fire_at LIMIT 200",
    )
    .bind(now)
    .fetch_all(store.pool())
    .await?;
    let mut created = Vec::new();
    for (id,) in due {
        match fire_one(store, id, now, grace_ms).await {
            Ok(Some(run)) => created.push(run),
            Ok(None) => {}
            // One broken schedule must not stop the others.
            Err(e) => tracing::error!(schedule = id, error = %e, "firing a schedule failed"),
        }
    }
    Ok(created)
}

async fn fire_one(
    store: &Store,
    id: i64,
    now: i64,
    grace_ms: i64,
) -> Result<Option<i64>, ScheduleError> {
    let lock = store.skip_locked();
    let mut tx = store.begin_write().await?;
    let row: Option<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM push_schedules
         WHERE id = $1 AND enabled = 1 AND next_fire_at <= $2 {lock}"
    ))
    .bind(id)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    // Another replica fired it (or holds it right now).
    let Some(row) = row else {
        return Ok(None);
    };
    let Some(due_at) = row.next_fire_at else {
        return Ok(None);
    };
    let tz = cron::time_zone(&row.time_zone)?;
    let policy = MissedPolicy::parse(&row.missed).unwrap_or_default();
    let firing = cron::decide(&row.timing()?, due_at, now, grace_ms, policy, &tz);
    let mut created = None;
    if let Some((fire_at, late_ms)) = firing.run {
        created = runs::insert(
            &mut tx,
            &NewRun {
                schedule_id: Some(row.id),
                partner_id: row.partner_id,
                service_id: row.service_id,
                origin: row.kind.clone(),
                fire_at,
                push_date: cron::local_date(fire_at, &tz),
                status: "pending",
                late_ms,
                reason: None,
                actor: format!("schedule:{}", row.id),
            },
            now,
        )
        .await?;
    }
    if let Some(fire_at) = firing.skipped {
        runs::insert(
            &mut tx,
            &NewRun {
                schedule_id: Some(row.id),
                partner_id: row.partner_id,
                service_id: row.service_id,
                origin: row.kind.clone(),
                fire_at,
                push_date: cron::local_date(fire_at, &tz),
                status: "skipped",
                late_ms: now - fire_at,
                reason: Some(format!(
                    "missed while the platform was down (due {} ms ago, grace {} ms); policy `skip`",
                    now - fire_at,
                    grace_ms
                )),
                actor: format!("schedule:{}", row.id),
            },
            now,
        )
        .await?;
    }
    let fired_at = firing.run.map(|(at, _)| at).or(firing.skipped);
    sqlx::query(
        "UPDATE push_schedules SET next_fire_at = $2, last_fire_at = COALESCE($3, last_fire_at), updated_at = $4
         WHERE id = $1",
    )
    .bind(row.id)
    .bind(firing.next)
    .bind(fired_at)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    if let Some(run) = created {
        tracing::info!(schedule = row.id, run, "schedule fired");
    }
    Ok(created)
}
