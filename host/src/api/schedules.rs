//! Push schedules and runs: schedules CRUD per service, "push now", runs
//! with their counters. A partner reaches only its own services: another
//! partner's service, schedule or run answers 404, as if it did not exist.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::auth::{Caller, scope};
use super::extract::{Json, OptionalJson, PartnerParam, Path, Query};
use super::page::{Order, Page, PartnerPageQuery};
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
/// partner is not found, as for a partner key. `named` is the [`scope`] of the
/// request, taken before anything is looked up (a partner naming another partner
/// is a 403 whatever the id).
fn named_partner(named: Option<i64>, owner: i64, what: String) -> Result<(), ApiError> {
    match named {
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
/// its own error code. Give `cron` (repeating, in `time_zone`) or `at` (once).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"cron": "0 8 * * *", "time_zone": "Asia/Shanghai", "missed": "run-once", "enabled": true}))]
pub(super) struct ScheduleBody {
    /// Five-field cron expression, e.g. `0 8 * * *` (08:00 daily).
    cron: Option<String>,
    /// A one-off push: RFC 3339 with an offset, e.g. `2026-12-01T08:00:00.000+08:00`.
    at: Option<String>,
    /// IANA zone of `cron` (default the platform's).
    time_zone: Option<String>,
    /// `run-once` (default) or `skip`: what a firing missed while down does.
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

/// `GET /v1/services/{id}/schedules`: a service's schedules, oldest first.
#[utoipa::path(
    get,
    path = "/v1/services/{id}/schedules",
    tag = "pushes",
    params(("id" = String, Path, description = "The service id"), PartnerPageQuery),
    responses(
        (status = 200, description = "A page of schedules, oldest first", body = Page<serde_json::Value>),
        (status = 400, description = "`invalid-id`"),
    ),
)]
pub(super) async fn list_schedules(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<PartnerPageQuery>,
) -> Result<Json<Page<schedules::Schedule>>, ApiError> {
    query.page().check()?;
    let named = scope(&state, &caller, query.partner.as_deref()).await?;
    let (service_id, owner) = service_of(&state, &caller, &id).await?;
    named_partner(named, owner, format!("no service {service_id}"))?;
    let list = schedules::list(&state.store, service_id).await?;
    Ok(Json(Page::from_sorted(
        list,
        &query.page(),
        Order::Ascending,
        |s| s.id,
    )?))
}

/// `POST /v1/services/{id}/schedules`: a new schedule.
#[utoipa::path(
    post,
    path = "/v1/services/{id}/schedules",
    tag = "pushes",
    params(("id" = String, Path, description = "The service id")),
    request_body = ScheduleBody,
    responses(
        (status = 201, description = "The schedule, with its next firing", body = serde_json::Value),
        (status = 400, description = "`invalid-id`, `invalid-cron`, `invalid-time`, `invalid-time-zone`, `invalid-missed-policy`, `invalid-schedule`"),
    ),
)]
pub(super) async fn create_schedule(
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

/// `GET /v1/schedules/{id}`: one schedule.
#[utoipa::path(
    get,
    path = "/v1/schedules/{id}",
    tag = "pushes",
    params(("id" = String, Path, description = "The schedule id"), PartnerParam),
    responses(
        (status = 200, description = "The schedule", body = serde_json::Value),
        (status = 400, description = "`invalid-id`"),
    ),
)]
pub(super) async fn get_schedule(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<PartnerParam>,
) -> Result<Json<Value>, ApiError> {
    let named = scope(&state, &caller, query.partner.as_deref()).await?;
    let schedule = schedule_of(&state, &caller, &id).await?;
    let what = format!("no schedule {}", schedule.id);
    named_partner(named, schedule.partner_id, what)?;
    Ok(Json(json!(schedule)))
}

/// `PATCH /v1/schedules/{id}`: change a schedule (the next firing is computed again).
#[utoipa::path(
    patch,
    path = "/v1/schedules/{id}",
    tag = "pushes",
    params(("id" = String, Path, description = "The schedule id")),
    request_body = ScheduleBody,
    responses(
        (status = 200, description = "The schedule as changed", body = serde_json::Value),
        (status = 400, description = "`invalid-id`, `invalid-cron`, `invalid-time`, `invalid-time-zone`, `invalid-missed-policy`, `invalid-schedule`"),
    ),
)]
pub(super) async fn update_schedule(
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

/// `DELETE /v1/schedules/{id}`: delete a schedule (its runs stay).
#[utoipa::path(
    delete,
    path = "/v1/schedules/{id}",
    tag = "pushes",
    params(("id" = String, Path, description = "The schedule id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "`invalid-id`"),
    ),
)]
pub(super) async fn delete_schedule(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let schedule = schedule_of(&state, &caller, &id).await?;
    schedules::delete(&state.store, schedule.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What to push.
#[derive(Deserialize, Serialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"date": "2026-11-30"}))]
pub(super) struct PushBody {
    /// The date the bulletin is for (`YYYY-MM-DD`); default today.
    date: Option<String>,
}

/// Push the service's bulletin now: a run is queued and answered at once (202);
/// follow it at `/v1/runs/{id}`. 409 `run-in-progress` while a run of the service
/// has not finished, 429 `push-limit` past the daily limit; honours
/// `Idempotency-Key` (issue 10 item 3).
#[utoipa::path(
    post,
    path = "/v1/services/{id}/push",
    tag = "pushes",
    params(("id" = String, Path, description = "The service id")),
    request_body(content = Option<PushBody>, description = "Optional; an empty body pushes today's bulletin"),
    responses(
        (status = 202, description = "The run, queued; follow it at `/v1/runs/{id}`", body = serde_json::Value),
        (status = 400, description = "`invalid-id`, `invalid-date`"),
        (status = 409, description = "`not-sendable` (suspended), `run-in-progress`"),
        (status = 429, description = "`push-limit`"),
    ),
)]
pub(super) async fn push_now(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<PushBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (service_id, partner_id) = service_of(&state, &caller, &id).await?;
    let body = body.unwrap_or_default();
    let run = state
        .scheduler
        .push_now(partner_id, service_id, body.date, &caller.actor())
        .await?;
    let view = runs::view(&state.store, run).await?;
    Ok((StatusCode::ACCEPTED, Json(json!(view))))
}

/// `GET /v1/services/{id}/runs`: a service's runs, newest first, with counters.
#[utoipa::path(
    get,
    path = "/v1/services/{id}/runs",
    tag = "pushes",
    params(("id" = String, Path, description = "The service id"), PartnerPageQuery),
    responses(
        (status = 200, description = "A page of runs, newest first", body = Page<serde_json::Value>),
        (status = 400, description = "`invalid-id`"),
    ),
)]
pub(super) async fn list_runs(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<PartnerPageQuery>,
) -> Result<Json<Page<runs::RunView>>, ApiError> {
    let page = query.page();
    page.check()?;
    let named = scope(&state, &caller, query.partner.as_deref()).await?;
    let (service_id, owner) = service_of(&state, &caller, &id).await?;
    named_partner(named, owner, format!("no service {service_id}"))?;
    let list = runs::list(
        &state.store,
        service_id,
        page.after::<i64>()?,
        page.fetch()?,
    )
    .await?;
    let page = Page::from_rows(list, &page, |r| r.id)?;
    let mut views = Vec::with_capacity(page.items.len());
    for run in page.items {
        views.push(runs::view(&state.store, run).await?);
    }
    Ok(Json(Page {
        items: views,
        next: page.next,
    }))
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

/// `GET /v1/runs/{id}`: one run with its counters and `delivery`.
#[utoipa::path(
    get,
    path = "/v1/runs/{id}",
    tag = "pushes",
    params(("id" = String, Path, description = "The run id"), PartnerParam),
    responses(
        (status = 200, description = "The run", body = serde_json::Value),
        (status = 400, description = "`invalid-id`"),
    ),
)]
pub(super) async fn get_run(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<PartnerParam>,
) -> Result<Json<Value>, ApiError> {
    let named = scope(&state, &caller, query.partner.as_deref()).await?;
    let run = run_of(&state, &caller, &id).await?;
    let what = format!("no push run {}", run.id);
    named_partner(named, run.partner_id, what)?;
    Ok(Json(json!(runs::view(&state.store, run).await?)))
}

/// Stop a run that has not finished; what it already queued stays queued.
#[utoipa::path(
    post,
    path = "/v1/runs/{id}/cancel",
    tag = "pushes",
    params(("id" = String, Path, description = "The run id")),
    responses(
        (status = 200, description = "The run, cancelled", body = serde_json::Value),
        (status = 400, description = "`invalid-id`"),
        (status = 409, description = "`run-finished`"),
    ),
)]
pub(super) async fn cancel_run(
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
