//! `/v1/modules`: upload (`application/wasm`), list, get, activate, rollback,
//! faults, and a bulletin preview that runs the active version in the sandbox.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::PartnerContext;
use super::extract::{Json, OptionalJson, PartnerParam, Path, Query};
use super::{ApiError, AppState, Routes};
use crate::modules::RegistryError;
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

async fn upload(
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

async fn list(
    ctx: PartnerContext,
    State(state): State<AppState>,
    _: Query<PartnerParam>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        json!({ "modules": state.registry.list(&ctx.partner).await? }),
    ))
}

async fn detail(
    ctx: PartnerContext,
    State(state): State<AppState>,
    Path(name): Path<String>,
    _: Query<PartnerParam>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(state.registry.get(&ctx.partner, &name).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Activate {
    version: i64,
}

async fn activate(
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

async fn rollback(
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultQuery {
    #[serde(rename = "partner")]
    _partner: Option<String>,
    limit: Option<i64>,
}

async fn faults(
    ctx: PartnerContext,
    State(state): State<AppState>,
    Path(name): Path<String>,
    query: Query<FaultQuery>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query;
    let limit = query.limit.unwrap_or(50);
    let faults = state.registry.faults(&ctx.partner, &name, limit).await?;
    let windows = state
        .registry
        .fault_windows(&ctx.partner, &name, limit)
        .await?;
    Ok(Json(
        json!({ "module": name, "faults": faults, "windows": windows }),
    ))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Preview {
    service: Option<String>,
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
async fn bulletin(
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
