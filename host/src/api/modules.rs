//! `/v1/modules`: upload (`application/wasm`), list, get, activate, rollback,
//! faults, and a bulletin preview that runs the active version in the sandbox.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::auth::PartnerContext;
use super::extract::{Json, OptionalJson, PartnerParam, Path, Query};
use super::page::{Order, Page, PageQuery, PartnerPageQuery};
use super::{ApiError, AppState, Routes};
use crate::modules::{Fault, FaultWindow, ModuleInfo, RegistryError};
use crate::runtime::BulletinRequest;

pub(super) fn router() -> Routes {
    Routes::new()
        .route("/v1/modules", post(upload).get(list))
        .route("/v1/modules/{name}", get(detail))
        .route("/v1/modules/{name}/activate", post(activate))
        .route("/v1/modules/{name}/rollback", post(rollback))
        .route("/v1/modules/{name}/faults", get(faults))
        .route("/v1/modules/{name}/bulletin", post(bulletin))
}

/// `POST /v1/modules`: upload a component (`Content-Type: application/wasm`).
#[utoipa::path(
    post,
    path = "/v1/modules",
    tag = "modules",
    params(("partner" = Option<String>, Query, description = "The admin names the partner")),
    request_body(content = Vec<u8>, content_type = "application/wasm", description = "The component's bytes"),
    responses(
        (status = 201, description = "A new version", body = serde_json::Value),
        (status = 200, description = "The same bytes again: the same version", body = serde_json::Value),
        (status = 400, description = "`empty-body`, `partner-required`", body = super::openapi::ErrorBody),
        (status = 409, description = "`version-quota`, `storage-quota`", body = super::openapi::ErrorBody),
        (status = 413, description = "`body-too-large`", body = super::openapi::ErrorBody),
        (status = 415, description = "`unsupported-media-type`: send `application/wasm`", body = super::openapi::ErrorBody),
        (status = 422, description = "rejected: `not-wasm`, `core-module`, `invalid-component`, `unsupported-import`, `unsupported-version`, `wrong-world`, `describe-failed`, `bad-description`", body = super::openapi::ErrorBody),
        (status = 429, description = "`upload-rate-limit`", body = super::openapi::ErrorBody),
    ),
)]
pub(super) async fn upload(
    ctx: PartnerContext,
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type != "application/wasm" {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "upload the component as the request body with `Content-Type: application/wasm`",
        ));
    }
    let limit = state.max_module_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            format!("a module may be at most {limit} bytes"),
        )
    };
    // Refuse by the announced length before reading anything, then enforce the
    // limit while reading (chunked bodies announce nothing).
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if announced.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let wasm = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large())?;
    if wasm.is_empty() {
        return Err(ApiError::bad_request(
            "empty-body",
            "the request body is empty",
        ));
    }
    let uploaded = state
        .registry
        .upload(&ctx.partner, &wasm, &ctx.caller.actor())
        .await?;
    let status = if uploaded.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!(uploaded))))
}

/// `GET /v1/modules`: the partner's modules by name, with versions and fault counts.
#[utoipa::path(
    get,
    path = "/v1/modules",
    tag = "modules",
    params(PartnerPageQuery),
    responses(
        (status = 200, description = "A page of modules, by name", body = Page<serde_json::Value>),
        (status = 400, description = "`partner-required`"),
    ),
)]
pub(super) async fn list(
    ctx: PartnerContext,
    State(state): State<AppState>,
    Query(query): Query<PartnerPageQuery>,
) -> Result<Json<Page<ModuleInfo>>, ApiError> {
    let mut all = state.registry.list(&ctx.partner).await?;
    all.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(Page::from_sorted(
        all,
        &query.page(),
        Order::Ascending,
        |m| m.name.clone(),
    )?))
}

/// `GET /v1/modules/{name}`: one module, its versions, the active one, fault counts.
#[utoipa::path(
    get,
    path = "/v1/modules/{name}",
    tag = "modules",
    params(("name" = String, Path, description = "The module's name"), PartnerParam),
    responses(
        (status = 200, description = "The module", body = serde_json::Value),
        (status = 400, description = "`partner-required`"),
    ),
)]
pub(super) async fn detail(
    ctx: PartnerContext,
    State(state): State<AppState>,
    Path(name): Path<String>,
    _: Query<PartnerParam>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(state.registry.get(&ctx.partner, &name).await?)))
}

/// The version to make live.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"version": 2}))]
pub(super) struct Activate {
    version: i64,
}

/// `POST /v1/modules/{name}/activate`: make a version live.
#[utoipa::path(
    post,
    path = "/v1/modules/{name}/activate",
    tag = "modules",
    params(("name" = String, Path, description = "The module's name"), PartnerParam),
    request_body = Activate,
    responses(
        (status = 200, description = "The module, the version live", body = serde_json::Value),
        (status = 400, description = "`partner-required`"),
        (status = 409, description = "`already-active`, `version-pruned`"),
    ),
)]
pub(super) async fn activate(
    ctx: PartnerContext,
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Json<Activate>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body;
    let info = state
        .registry
        .activate(&ctx.partner, &name, body.version, &ctx.caller.actor())
        .await?;
    Ok(Json(json!(info)))
}

/// `POST /v1/modules/{name}/rollback`: back to the version active before.
#[utoipa::path(
    post,
    path = "/v1/modules/{name}/rollback",
    tag = "modules",
    params(("name" = String, Path, description = "The module's name"), PartnerParam),
    responses(
        (status = 200, description = "The module, the earlier version live", body = serde_json::Value),
        (status = 400, description = "`partner-required`"),
        (status = 409, description = "`nothing-to-roll-back`, `no-active-version`, `version-pruned`"),
    ),
)]
pub(super) async fn rollback(
    ctx: PartnerContext,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let info = state
        .registry
        .rollback(&ctx.partner, &name, &ctx.caller.actor())
        .await?;
    Ok(Json(json!(info)))
}

/// A page of fault samples, with the newest per-window counts beside it.
#[derive(Serialize, ToSchema)]
pub(super) struct FaultsPage {
    /// Fault samples, newest first.
    #[schema(value_type = Vec<Object>)]
    items: Vec<Fault>,
    /// The `after` of the next page of samples; `null` on the last.
    next: Option<String>,
    /// Every fault counted per version, export, kind and window (the newest
    /// `limit` windows), newest first.
    #[schema(value_type = Vec<Object>)]
    windows: Vec<FaultWindow>,
}

/// `GET /v1/modules/{name}/faults`: fault samples (paged) and per-window counts.
#[utoipa::path(
    get,
    path = "/v1/modules/{name}/faults",
    tag = "modules",
    params(("name" = String, Path, description = "The module's name"), PartnerPageQuery),
    responses(
        (status = 200, description = "Samples, newest first, and windows", body = FaultsPage),
        (status = 400, description = "`partner-required`"),
    ),
)]
pub(super) async fn faults(
    ctx: PartnerContext,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<PartnerPageQuery>,
) -> Result<Json<FaultsPage>, ApiError> {
    let page: PageQuery = query.page();
    page.check()?;
    let faults = state
        .registry
        .faults_before(&ctx.partner, &name, page.after::<i64>()?, page.fetch()?)
        .await?;
    let windows = state
        .registry
        .fault_windows(&ctx.partner, &name, page.limit()?)
        .await?;
    let Page { items, next } = Page::from_rows(faults, &page, |f| f.id)?;
    Ok(Json(FaultsPage {
        items,
        next,
        windows,
    }))
}

/// What to preview.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"service": "XZ", "date": "2026-11-30"}))]
pub(super) struct Preview {
    /// A service the module serves (default the first).
    service: Option<String>,
    /// The bulletin's day, `YYYY-MM-DD` (default today).
    date: Option<String>,
}

/// Run `bulletin` of the active version, as a push would, and show the content.
/// Nothing is sent; a failure is recorded as a fault like any other call.
///
/// The host checks its own inputs first (issue 10 item 5), so a module is never
/// blamed for them: `date` must be a real `YYYY-MM-DD` day (400 `invalid-date`),
/// and `service` one the module serves: a service of the partner bound to it or a
/// code its description names (400 `invalid-service`); without one, the first of
/// those.
#[utoipa::path(
    post,
    path = "/v1/modules/{name}/bulletin",
    tag = "modules",
    params(("name" = String, Path, description = "The module's name"), PartnerParam),
    request_body(content = Option<Preview>, description = "Optional; an empty body previews the first service today"),
    responses(
        (status = 200, description = "The content and the module's logs; nothing is sent", body = serde_json::Value),
        (status = 400, description = "`invalid-date`, `invalid-service`, `partner-required`"),
        (status = 409, description = "`no-active-version`"),
        (status = 422, description = "the module failed: its fault kind (`trap`, `cpu-limit`, `timeout`, …)"),
        (status = 429, description = "`concurrency-limit`"),
        (status = 503, description = "`unavailable`"),
    ),
)]
pub(super) async fn bulletin(
    ctx: PartnerContext,
    State(state): State<AppState>,
    Path(name): Path<String>,
    OptionalJson(body): OptionalJson<Preview>,
) -> Result<Json<Value>, ApiError> {
    let preview = body.unwrap_or_default();
    let date = match preview.date {
        Some(d) => crate::clock::parse_date(&d)
            .map_err(|reason| ApiError::bad_request("invalid-date", reason))?,
        None => crate::clock::today(),
    };
    let module = state.registry.get(&ctx.partner, &name).await?;
    let service = preview_service(&state, &ctx, &module, preview.service).await?;
    let request = BulletinRequest {
        service,
        push_id: format!("preview-{}", crate::store::now_ms()),
        date,
    };
    let outcome = state
        .registry
        .bulletin(&ctx.partner, &name, &request)
        .await?;
    match outcome.result {
        Ok(content) => Ok(Json(json!({ "content": content, "logs": outcome.logs }))),
        // Already recorded as a fault by the registry; the caller gets its kind.
        Err(error) => Err(RegistryError::Call(error).into()),
    }
}

/// The service code a preview passes to the module (see [`bulletin`]).
async fn preview_service(
    state: &AppState,
    ctx: &PartnerContext,
    module: &crate::modules::ModuleInfo,
    asked: Option<String>,
) -> Result<String, ApiError> {
    let bound: Vec<(String,)> = sqlx::query_as(
        "SELECT code FROM services WHERE partner_id = $1 AND module = $2 ORDER BY id",
    )
    .bind(ctx.partner.id)
    .bind(&module.name)
    .fetch_all(state.store.pool())
    .await
    .map_err(crate::store::StoreError::from)?;
    let declared = module
        .versions
        .iter()
        .find(|v| Some(v.number) == module.active_version)
        .map(|v| v.services.clone())
        .unwrap_or_default();
    let served: Vec<String> = bound
        .into_iter()
        .map(|(code,)| code)
        .chain(declared)
        .collect();
    let chosen = match asked {
        Some(code) => {
            let code = crate::text::route_key(&code);
            served.iter().find(|s| **s == code).cloned()
        }
        None => served.first().cloned(),
    };
    chosen.ok_or_else(|| {
        ApiError::bad_request(
            "invalid-service",
            format!(
                "name a service module `{}` serves: {}",
                module.name,
                if served.is_empty() {
                    "it declares none and no service is bound to it".to_string()
                } else {
                    served.join(", ")
                }
            ),
        )
    })
}
