//! `/v1/modules/{name}/shadow` and `/v1/modules/{name}/canary`: releasing a
//! version gradually (issue 17 items 3 and 4). A shadow candidate runs beside the
//! active version on real pushes and MOs and its diffs are listed; a canary is
//! live for a percentage of the subscribers, then promoted or rolled back.

use axum::extract::State;
use axum::routing::{post, put};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::auth::PartnerContext;
use super::extract::{Json, PartnerParam, Path, Query};
use super::page::{Page, PageQuery};
use super::{ApiError, AppState, Routes};
use crate::modules::ShadowRun;

pub(super) fn router() -> Routes {
    Routes::new()
        .route(
            "/v1/modules/{name}/shadow",
            put(set_shadow).get(shadow_runs).delete(stop_shadow),
        )
        .route(
            "/v1/modules/{name}/canary",
            put(start_canary).delete(stop_canary),
        )
        .route("/v1/modules/{name}/canary/promote", post(promote_canary))
}

/// The version to run as the shadow.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"version": 2}))]
pub(super) struct Shadow {
    /// A stored version other than the active one.
    version: i64,
}

/// `PUT /v1/modules/{name}/shadow`: run a version beside the active one on every
/// real push and MO, its output recorded and diffed, never sent (issue 17 item 3).
#[utoipa::path(
    put,
    path = "/v1/modules/{name}/shadow",
    tag = "modules",
    params(("name" = String, Path, description = "The module's name"), PartnerParam),
    request_body = Shadow,
    responses(
        (status = 200, description = "The module, with `shadow_version`", body = serde_json::Value),
        (status = 400, description = "`partner-required`"),
        (status = 404, description = "`not-found`: no such module or version"),
        (status = 409, description = "`already-active` (the active version cannot shadow itself), `version-pruned`"),
    ),
)]
pub(super) async fn set_shadow(
    ctx: PartnerContext,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Json(body): Json<Shadow>,
) -> Result<Json<Value>, ApiError> {
    let info = state
        .registry
        .set_shadow(&ctx.partner, &name, body.version)
        .await?;
    Ok(Json(json!(info)))
}

/// `DELETE /v1/modules/{name}/shadow`: stop the shadow runs (those recorded stay).
#[utoipa::path(
    delete,
    path = "/v1/modules/{name}/shadow",
    tag = "modules",
    params(("name" = String, Path, description = "The module's name"), PartnerParam),
    responses(
        (status = 200, description = "The module, without a shadow", body = serde_json::Value),
        (status = 400, description = "`partner-required`"),
        (status = 404, description = "`not-found`: no such module"),
        (status = 409, description = "`no-shadow`"),
    ),
)]
pub(super) async fn stop_shadow(
    ctx: PartnerContext,
    State(state): State<AppState>,
    Path(name): Path<String>,
    _: Query<PartnerParam>,
) -> Result<Json<Value>, ApiError> {
    let info = state.registry.stop_shadow(&ctx.partner, &name).await?;
    Ok(Json(json!(info)))
}

/// `?partner=&limit=&after=&differing=`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ShadowQuery {
    /// The admin's choice of partner (a partner key may name only itself).
    #[expect(
        dead_code,
        reason = "read by the `PartnerContext` extractor; declared for the document and `deny_unknown_fields`"
    )]
    partner: Option<String>,
    /// Only the runs whose outputs differ (default false: every run).
    differing: Option<bool>,
    /// Items per page, 1-500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// The `next` cursor of the previous page.
    after: Option<String>,
}

/// The shadow runs of a module and what the shadow is now.
#[derive(Serialize, ToSchema)]
pub(super) struct ShadowPage {
    /// The version running as the shadow now (`null`: none).
    shadow_version: Option<i64>,
    /// The runs, newest first: both outputs, the texts that differ, the
    /// candidate's policy hits.
    items: Vec<ShadowRun>,
    /// The `after` of the next page; `null` on the last.
    next: Option<String>,
}

/// `GET /v1/modules/{name}/shadow`: the shadow runs, newest first, with the diffs.
#[utoipa::path(
    get,
    path = "/v1/modules/{name}/shadow",
    tag = "modules",
    params(("name" = String, Path, description = "The module's name"), ShadowQuery),
    responses(
        (status = 200, description = "The shadow runs, newest first", body = ShadowPage),
        (status = 400, description = "`partner-required`, `invalid-limit`, `invalid-cursor`"),
        (status = 404, description = "`not-found`: no such module"),
    ),
)]
pub(super) async fn shadow_runs(
    ctx: PartnerContext,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<ShadowQuery>,
) -> Result<Json<ShadowPage>, ApiError> {
    let page = PageQuery::new(query.limit, query.after.clone());
    page.check()?;
    let module = state.registry.get(&ctx.partner, &name).await?;
    let runs = state
        .registry
        .shadow_runs(
            &ctx.partner,
            &name,
            page.after::<i64>()?,
            query.differing.unwrap_or(false),
            page.fetch()?,
        )
        .await?;
    let Page { items, next } = Page::from_rows(runs, &page, |r| r.id)?;
    Ok(Json(ShadowPage {
        shadow_version: module.shadow_version,
        items,
        next,
    }))
}

/// The canary to run. Only a JSON object is one (an array of two numbers is not).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, try_from = "serde_json::Map<String, Value>")]
#[schema(example = json!({"version": 2, "percent": 10}))]
pub(super) struct Canary {
    /// A stored version that passed admission, other than the active one.
    version: i64,
    /// The share of subscribers who get it, 1-99: subscription `id` is in the
    /// cohort when `((id × 2654435761) mod 2³²) × 100 div 2³² < percent`.
    percent: i64,
}

/// [`Canary`]'s fields, read from an object only.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CanaryFields {
    version: i64,
    percent: i64,
}

impl TryFrom<serde_json::Map<String, Value>> for Canary {
    type Error = serde_json::Error;

    fn try_from(object: serde_json::Map<String, Value>) -> Result<Self, Self::Error> {
        let CanaryFields { version, percent } = serde_json::from_value(Value::Object(object))?;
        Ok(Self { version, percent })
    }
}

/// `PUT /v1/modules/{name}/canary`: make a version live for a percentage of the
/// subscribers (the same version again changes the percentage; issue 17 item 4).
#[utoipa::path(
    put,
    path = "/v1/modules/{name}/canary",
    tag = "modules",
    params(("name" = String, Path, description = "The module's name"), PartnerParam),
    request_body = Canary,
    responses(
        (status = 200, description = "The module, with `canary`", body = serde_json::Value),
        (status = 400, description = "`invalid-percent`, `partner-required`"),
        (status = 404, description = "`not-found`: no such module or version"),
        (status = 409, description = "`already-active`, `version-pruned`, `no-active-version`, `canary-running` (another version is the canary), `approval-required` (the partner's activations wait for the admin)"),
        (status = 422, description = "`admission-failed`"),
    ),
)]
pub(super) async fn start_canary(
    ctx: PartnerContext,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Json(body): Json<Canary>,
) -> Result<Json<Value>, ApiError> {
    let percent = u32::try_from(body.percent)
        .ok()
        .filter(|p| (1..=99).contains(p))
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid-percent",
                format!(
                    "percent {} is outside 1-99 (100 is an activation: POST /v1/modules/{name}/activate)",
                    body.percent
                ),
            )
        })?;
    let info = state
        .registry
        .start_canary(&ctx.partner, &name, body.version, percent)
        .await?;
    Ok(Json(json!(info)))
}

/// `POST /v1/modules/{name}/canary/promote`: the canary becomes the active
/// version for everyone.
#[utoipa::path(
    post,
    path = "/v1/modules/{name}/canary/promote",
    tag = "modules",
    params(("name" = String, Path, description = "The module's name"), PartnerParam),
    responses(
        (status = 200, description = "The module, the canary's version active", body = serde_json::Value),
        (status = 400, description = "`partner-required`"),
        (status = 404, description = "`not-found`: no such module"),
        (status = 409, description = "`no-canary`, `version-pruned`"),
        (status = 422, description = "`admission-failed`"),
    ),
)]
pub(super) async fn promote_canary(
    ctx: PartnerContext,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let info = state
        .registry
        .promote_canary(&ctx.partner, &name, &ctx.caller.actor())
        .await?;
    Ok(Json(json!(info)))
}

/// `DELETE /v1/modules/{name}/canary`: roll the canary back; everyone gets the
/// active version again.
#[utoipa::path(
    delete,
    path = "/v1/modules/{name}/canary",
    tag = "modules",
    params(("name" = String, Path, description = "The module's name"), PartnerParam),
    responses(
        (status = 200, description = "The module, without a canary", body = serde_json::Value),
        (status = 400, description = "`partner-required`"),
        (status = 404, description = "`not-found`: no such module"),
        (status = 409, description = "`no-canary`"),
    ),
)]
pub(super) async fn stop_canary(
    ctx: PartnerContext,
    State(state): State<AppState>,
    Path(name): Path<String>,
    _: Query<PartnerParam>,
) -> Result<Json<Value>, ApiError> {
    let info = state.registry.stop_canary(&ctx.partner, &name).await?;
    Ok(Json(json!(info)))
}
