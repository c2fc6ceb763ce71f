//! Push schedules and runs: schedules CRUD per service, "push now", runs
//! with their counters. A partner reaches only its own services: another
//! partner's service, schedule or run answers 404, as if it did not exist.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::auth::{Caller, scope};
use super::extract::{Json, OptionalJson, PartnerParam, Path, Query};
use super::idempotency::{self, IdempotencyKey};
use super::{ApiError, AppState, Routes};
use crate::schedule::schedules::{self, ScheduleInput};
use crate::schedule::{MissedPolicy, ScheduleError, TimingError, runs};

pub(super) fn router() -> Routes {
    Routes::new()
        .route(
            "/v1/services/{id}/schedules",
            get(list_schedules).post(create_schedule),
        )
        .route(
            "/v1/schedules/{id}",
            get(get_schedule)
                .patch(update_schedule)
                .delete(delete_schedule),
        )
        .route("/v1/services/{id}/push", post(push_now))
        .route("/v1/services/{id}/runs", get(list_runs))
        .route("/v1/runs/{id}", get(get_run))
        .route("/v1/runs/{id}/cancel", post(cancel_run))
}

fn parse_id(raw: &str, what: &str) -> Result<i64, ApiError> {
    raw.parse()
        .ok()
        .filter(|id: &i64| *id > 0)
        .ok_or_else(|| ApiError::bad_request("invalid-id", format!("`{raw}` is not a {what} id")))
}

/// The caller may reach data of `partner_id`.
fn reaches(caller: &Caller, partner_id: i64) -> bool {
    match caller {
        Caller::Admin => true,
        Caller::Partner(p) => p.id == partner_id,
    }
}

/// A list or detail read with the admin's `?partner=NAME`: what belongs to another
/// partner is not found, as for a partner key.
async fn named_partner(
    state: &AppState,
    caller: &Caller,
    partner: Option<&str>,
    owner: i64,
    what: String,
) -> Result<(), ApiError> {
    match scope(state, caller, partner).await? {
        Some(p) if p != owner => Err(ApiError::not_found(what)),
        _ => Ok(()),
    }
}

/// The service `raw` names, if the caller may reach it: (service id, partner id).
async fn service_of(state: &AppState, caller: &Caller, raw: &str) -> Result<(i64, i64), ApiError> {
    let id = parse_id(raw, "service")?;
    let row: Option<(i64,)> = sqlx::query_as("SELECT partner_id FROM services WHERE id = $1")
        .bind(id)
        .fetch_optional(state.store.pool())
        .await
        .map_err(crate::store::StoreError::from)?;
    match row {
        Some((partner_id,)) if reaches(caller, partner_id) => Ok((id, partner_id)),
        _ => Err(ApiError::not_found(format!("no service {id}"))),
    }
}

/// A schedule as the client writes it; the policy is a string so a bad one gets
/// its own error code.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleBody {
    cron: Option<String>,
    at: Option<String>,
    time_zone: Option<String>,
    missed: Option<String>,
    enabled: Option<bool>,
}

impl TryFrom<ScheduleBody> for ScheduleInput {
    type Error = ApiError;

    fn try_from(b: ScheduleBody) -> Result<Self, ApiError> {
        let missed = match b.missed.as_deref() {
            None => None,
            Some(m) => Some(MissedPolicy::parse(m).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid-missed-policy",
                    format!("`{m}` is not a missed-run policy: use `run-once` or `skip`"),
                )
            })?),
        };
        Ok(ScheduleInput {
            cron: b.cron,
            at: b.at,
            time_zone: b.time_zone,
            missed,
            enabled: b.enabled,
        })
    }
}

async fn list_schedules(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<PartnerParam>,
) -> Result<Json<Value>, ApiError> {
    let (service_id, owner) = service_of(&state, &caller, &id).await?;
    let what = format!("no service {service_id}");
    named_partner(&state, &caller, query.partner.as_deref(), owner, what).await?;
    let list = schedules::list(&state.store, service_id).await?;
    Ok(Json(json!({ "schedules": list })))
}

async fn create_schedule(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Json<ScheduleBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (service_id, partner_id) = service_of(&state, &caller, &id).await?;
    let Json(body) = body;
    let schedule = schedules::create(
        &state.store,
        partner_id,
        service_id,
        body.try_into()?,
        state.scheduler.default_time_zone(),
        &caller.actor(),
    )
    .await?;
    state.scheduler.wake();
    Ok((StatusCode::CREATED, Json(json!(schedule))))
}

/// The schedule `raw` names, if the caller may reach it.
async fn schedule_of(
    state: &AppState,
    caller: &Caller,
    raw: &str,
) -> Result<schedules::Schedule, ApiError> {
    let id = parse_id(raw, "schedule")?;
    match schedules::get(&state.store, id).await {
        Ok(s) if reaches(caller, s.partner_id) => Ok(s),
        Ok(_) | Err(ScheduleError::NotFound(_)) => {
            Err(ApiError::not_found(format!("no schedule {id}")))
        }
        Err(e) => Err(e.into()),
    }
}

async fn get_schedule(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<PartnerParam>,
) -> Result<Json<Value>, ApiError> {
    let schedule = schedule_of(&state, &caller, &id).await?;
    let what = format!("no schedule {}", schedule.id);
    named_partner(
        &state,
        &caller,
        query.partner.as_deref(),
        schedule.partner_id,
        what,
    )
    .await?;
    Ok(Json(json!(schedule)))
}

async fn update_schedule(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Json<ScheduleBody>,
) -> Result<Json<Value>, ApiError> {
    let schedule = schedule_of(&state, &caller, &id).await?;
    let Json(body) = body;
    let updated = schedules::update(&state.store, schedule.id, body.try_into()?).await?;
    state.scheduler.wake();
    Ok(Json(json!(updated)))
}

async fn delete_schedule(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let schedule = schedule_of(&state, &caller, &id).await?;
    schedules::delete(&state.store, schedule.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
struct PushBody {
    /// The date the bulletin is for (`YYYY-MM-DD`); default today.
    date: Option<String>,
}

/// Push the service's bulletin now: a run is queued and answered at once (202);
/// follow it at `/v1/runs/{id}`. 409 `run-in-progress` while a run of the service
/// has not finished, 429 `push-limit` past the daily limit; honours
/// `Idempotency-Key` (issue 10 item 3).
async fn push_now(
    caller: Caller,
    key: IdempotencyKey,
    State(state): State<AppState>,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<PushBody>,
) -> Result<Response, ApiError> {
    let (service_id, partner_id) = service_of(&state, &caller, &id).await?;
    let body = body.unwrap_or_default();
    let route = format!("POST /v1/services/{service_id}/push");
    idempotency::once(&state, &caller, &key, &route, &body, || async {
        let run = state
            .scheduler
            .push_now(partner_id, service_id, body.date.clone(), &caller.actor())
            .await?;
        let view = runs::view(&state.store, run).await?;
        Ok((StatusCode::ACCEPTED, json!(view)))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunsQuery {
    partner: Option<String>,
    before: Option<i64>,
    limit: Option<i64>,
}

async fn list_runs(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Query<RunsQuery>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query;
    let (service_id, owner) = service_of(&state, &caller, &id).await?;
    let what = format!("no service {service_id}");
    named_partner(&state, &caller, query.partner.as_deref(), owner, what).await?;
    let list = runs::list(
        &state.store,
        service_id,
        query.before,
        query.limit.unwrap_or(20),
    )
    .await?;
    let mut views = Vec::with_capacity(list.len());
    for run in list {
        views.push(runs::view(&state.store, run).await?);
    }
    Ok(Json(json!({ "runs": views })))
}

/// The run `raw` names, if the caller may reach it.
async fn run_of(state: &AppState, caller: &Caller, raw: &str) -> Result<runs::Run, ApiError> {
    let id = parse_id(raw, "run")?;
    match runs::get(&state.store, id).await {
        Ok(r) if reaches(caller, r.partner_id) => Ok(r),
        Ok(_) | Err(ScheduleError::RunNotFound(_)) => {
            Err(ApiError::not_found(format!("no push run {id}")))
        }
        Err(e) => Err(e.into()),
    }
}

async fn get_run(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<PartnerParam>,
) -> Result<Json<Value>, ApiError> {
    let run = run_of(&state, &caller, &id).await?;
    let what = format!("no push run {}", run.id);
    named_partner(
        &state,
        &caller,
        query.partner.as_deref(),
        run.partner_id,
        what,
    )
    .await?;
    Ok(Json(json!(runs::view(&state.store, run).await?)))
}

/// Stop a run that has not finished; what it already queued stays queued.
async fn cancel_run(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let run = run_of(&state, &caller, &id).await?;
    let run = runs::cancel(&state.store, run.id, &caller.actor()).await?;
    Ok(Json(json!(runs::view(&state.store, run).await?)))
}

impl From<ScheduleError> for ApiError {
    fn from(e: ScheduleError) -> Self {
        let message = e.to_string();
        match e {
            ScheduleError::Timing(TimingError::BadCron { .. } | TimingError::NeverFires(_)) => {
                ApiError::bad_request("invalid-cron", message)
            }
            ScheduleError::Timing(TimingError::BadTimeZone(_)) => {
                ApiError::bad_request("invalid-time-zone", message)
            }
            ScheduleError::Timing(TimingError::BadTime(_)) | ScheduleError::InPast => {
                ApiError::bad_request("invalid-time", message)
            }
            ScheduleError::Invalid(_) => ApiError::bad_request("invalid-schedule", message),
            ScheduleError::InvalidDate(_) => ApiError::bad_request("invalid-date", message),
            ScheduleError::NotFound(_) | ScheduleError::RunNotFound(_) => {
                ApiError::not_found(message)
            }
            ScheduleError::RunFinished { .. } => {
                ApiError::new(StatusCode::CONFLICT, "run-finished", message)
            }
            ScheduleError::Blocked(_) => {
                ApiError::new(StatusCode::CONFLICT, "not-sendable", message)
            }
            ScheduleError::RunInProgress { .. } => {
                ApiError::new(StatusCode::CONFLICT, "run-in-progress", message)
            }
            ScheduleError::PushLimit(_) => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "push-limit", message)
            }
            ScheduleError::Corrupt(_) => {
                tracing::error!(error = %message, "internal error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; it has been logged",
                )
            }
            ScheduleError::Store(e) => e.into(),
        }
    }
}
