//! `/v1/modules`: upload (`application/wasm`, with its admission report), list,
//! get, activate (or request it), rollback, faults, a version's admission report,
//! the bulletin preview and dry runs of `on-mo`, `on-subscribe`, `on-unsubscribe`;
//! `/v1/admin/activations`: the activations waiting for the admin;
//! `/v1/modules/{name}/calls` and `/v1/calls/{id}/replay`: recorded calls and
//! their replay (issue 17).

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::auth::{Admin, Caller, PartnerContext};
use super::extract::{Json, OptionalJson, PartnerParam, Path, Query};
use super::page::{Order, Page, PageQuery, PartnerPageQuery};
use super::{ApiError, AppState, Routes};
use crate::modules::{
    Activation, ActivationRequest, AdmissionReport, DryCall, Fault, FaultWindow, ModuleInfo,
    RecordedCall, RegistryError, ReplayReport,
};
use crate::runtime::limits::CallErrorBody;
use crate::runtime::{
    BulletinRequest, DryRun, HostCallRecord, LogLine, MoMessage, SubscriptionChange,
};

pub(super) fn router() -> Routes {
    Routes::new()
        .route("/v1/modules", post(upload).get(list))
        .route("/v1/modules/{name}", get(detail))
        .route("/v1/modules/{name}/activate", post(activate))
        .route("/v1/modules/{name}/rollback", post(rollback))
        .route("/v1/modules/{name}/faults", get(faults))
        .route("/v1/modules/{name}/bulletin", post(bulletin))
        .route(
            "/v1/modules/{name}/versions/{version}/admission",
            get(admission),
        )
        .route("/v1/modules/{name}/mo", post(dry_mo))
        .route("/v1/modules/{name}/subscribe", post(dry_subscribe))
        .route("/v1/modules/{name}/unsubscribe", post(dry_unsubscribe))
        .route("/v1/modules/{name}/calls", get(calls))
        .route("/v1/calls/{id}/replay", post(replay))
        .route("/v1/admin/activations", get(activations))
        .route("/v1/admin/activations/{id}/approve", post(approve))
        .route("/v1/admin/activations/{id}/refuse", post(refuse))
}

/// `POST /v1/modules`: upload a component (`Content-Type: application/wasm`).
#[utoipa::path(
    post,
    path = "/v1/modules",
    tag = "modules",
    params(("partner" = Option<String>, Query, description = "The admin names the partner")),
    request_body(content = Vec<u8>, content_type = "application/wasm", description = "The component's bytes"),
    responses(
        (status = 201, description = "A new version, with its admission report (`admission`); a version that failed admission is stored but cannot be activated. The first version goes live if admitted, or waits as `activation_request` for partners whose activations need approval", body = serde_json::Value),
        (status = 200, description = "The same bytes again: the same version and its report", body = serde_json::Value),
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

/// `POST /v1/modules/{name}/activate`: make a version live, or, for a partner
/// whose activations need the admin's approval, ask for it (issue 17 item 1).
#[utoipa::path(
    post,
    path = "/v1/modules/{name}/activate",
    tag = "modules",
    params(("name" = String, Path, description = "The module's name"), PartnerParam),
    request_body = Activate,
    responses(
        (status = 200, description = "The module, the version live", body = serde_json::Value),
        (status = 202, description = "The activation waits for the admin: the request", body = ActivationRequest),
        (status = 400, description = "`partner-required`"),
        (status = 404, description = "`not-found`: no such module or version"),
        (status = 409, description = "`already-active`, `version-pruned`, `activation-pending`"),
        (status = 422, description = "`admission-failed`: the version failed admission; the message names its report"),
    ),
)]
pub(super) async fn activate(
    ctx: PartnerContext,
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Json<Activate>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(body) = body;
    let activation = state
        .registry
        .request_activation(&ctx.partner, &name, body.version, &ctx.caller.actor())
        .await?;
    Ok(match activation {
        Activation::Live(info) => (StatusCode::OK, Json(json!(info))),
        Activation::Pending(request) => (StatusCode::ACCEPTED, Json(json!(request))),
    })
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
    let service = preview_service(&state, &ctx, &module, None, preview.service).await?;
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

/// The service code a preview or dry run passes to the module (see
/// [`bulletin`]); the codes declared are those of `version` (default the active
/// one).
async fn preview_service(
    state: &AppState,
    ctx: &PartnerContext,
    module: &crate::modules::ModuleInfo,
    version: Option<i64>,
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
        .find(|v| Some(v.number) == version.or(module.active_version))
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

/// `GET /v1/modules/{name}/versions/{version}/admission`: the admission report of
/// a version (issue 17 item 1).
#[utoipa::path(
    get,
    path = "/v1/modules/{name}/versions/{version}/admission",
    tag = "modules",
    params(
        ("name" = String, Path, description = "The module's name"),
        ("version" = i64, Path, description = "The version number"),
        PartnerParam,
    ),
    responses(
        (status = 200, description = "The report: checks, figures, policy hits, every corpus call", body = AdmissionReport),
        (status = 400, description = "`partner-required`"),
        (status = 404, description = "`not-found`: no such module or version, or a version stored before admission existed"),
    ),
)]
pub(super) async fn admission(
    ctx: PartnerContext,
    State(state): State<AppState>,
    Path((name, version)): Path<(String, i64)>,
    _: Query<PartnerParam>,
) -> Result<Json<AdmissionReport>, ApiError> {
    state
        .registry
        .admission(&ctx.partner, &name, version)
        .await?
        .map(Json)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "version {version} of `{name}` was stored before admission existed; upload its bytes again to admit it"
            ))
        })
}

/// Which version a dry run runs.
#[derive(Deserialize, Default, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct DryRunQuery {
    /// The admin's choice of partner (a partner key may name only itself). Read
    /// by the `PartnerContext` extractor; declared here for the document and so
    /// `deny_unknown_fields` accepts it.
    #[allow(dead_code)]
    partner: Option<String>,
    /// A version number; default the active version.
    version: Option<i64>,
}

/// The input of a dry run (issue 17 item 2).
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"text": "白羊", "attributes": {"sign": "aries"}}))]
pub(super) struct DryRunInput {
    /// The user's text (`/mo` only; at most 2,000 characters).
    text: Option<String>,
    /// A service the module serves (default the first).
    service: Option<String>,
    /// The subscriber id the module sees (default `dry-run`); one of the
    /// partner's own ids lets the module read that subscriber's stored attributes.
    subscriber: Option<String>,
    /// Subscriber attributes as the module should see them (name `a-z0-9_-`, value
    /// at most 256 bytes); they are not stored.
    #[serde(default)]
    attributes: std::collections::BTreeMap<String, String>,
}

/// What a dry run did. Nothing was sent or stored.
#[derive(Serialize, ToSchema)]
pub(super) struct DryRunAnswer {
    module: String,
    /// The version that ran.
    version: i64,
    /// `on-mo`, `on-subscribe`, `on-unsubscribe`.
    export: &'static str,
    /// The text the module answered (`null`: silent, or it failed).
    reply: Option<String>,
    /// What the content policy says of the reply: `null` when it passes or there
    /// is none, else `{rule, detail}`.
    #[schema(value_type = Option<Object>)]
    policy: Option<Value>,
    /// The failure, if the call failed: `{kind, message}`.
    #[schema(value_type = Option<Object>)]
    error: Option<Value>,
    /// Every data call, in order: key-value reads and the writes attempted
    /// (kept in the dry run, never stored), content reads, attribute reads and
    /// writes.
    host_calls: Vec<HostCallRecord>,
    #[schema(value_type = Vec<Object>)]
    logs: Vec<LogLine>,
    logs_dropped: u32,
    /// CPU time of the module's code, in microseconds.
    cpu_us: u64,
    /// Wall time of the call, in microseconds.
    wall_us: u64,
    /// SHA-256 of the call's inputs (what an MT would record).
    input_sha256: String,
    /// Always `false`: a dry run sends nothing, stores nothing, charges nothing.
    sent: bool,
}

async fn dry_run(
    ctx: PartnerContext,
    state: AppState,
    (name, query): (String, DryRunQuery),
    input: DryRunInput,
    export: &'static str,
) -> Result<Json<DryRunAnswer>, ApiError> {
    let text = match (export, input.text) {
        ("on-mo", Some(text)) if text.chars().count() <= 2000 => text,
        ("on-mo", Some(_)) => {
            return Err(ApiError::bad_request(
                "invalid-text",
                "`text` may be at most 2,000 characters",
            ));
        }
        ("on-mo", None) => {
            return Err(ApiError::bad_request(
                "invalid-text",
                "`text` is required: the user's message",
            ));
        }
        (_, Some(_)) => {
            return Err(ApiError::bad_request(
                "invalid-text",
                "`text` is for /mo only",
            ));
        }
        (_, None) => String::new(),
    };
    for (attribute, value) in &input.attributes {
        if !crate::runtime::host::valid_attribute_name(attribute) || value.len() > 256 {
            return Err(ApiError::bad_request(
                "invalid-attribute",
                format!(
                    "attribute `{attribute}`: names are 1-64 bytes of a-z, 0-9, '_' and '-'; values at most 256 bytes"
                ),
            ));
        }
    }
    let subscriber = input.subscriber.unwrap_or_else(|| "dry-run".into());
    if subscriber.is_empty() || subscriber.len() > 64 {
        return Err(ApiError::bad_request(
            "invalid-subscriber",
            "`subscriber` must be 1-64 bytes",
        ));
    }
    let module = state.registry.get(&ctx.partner, &name).await?;
    if query.version.is_none() && module.active_version.is_none() {
        return Err(RegistryError::NoActiveVersion(name).into());
    }
    let service = preview_service(&state, &ctx, &module, query.version, input.service).await?;
    let call = match export {
        "on-mo" => DryCall::Mo(MoMessage {
            subscriber: subscriber.clone(),
            service,
            text,
            received_at_ms: crate::store::now_ms(),
        }),
        _ => DryCall::Subscription(SubscriptionChange {
            subscriber: subscriber.clone(),
            service,
            joined: export == "on-subscribe",
        }),
    };
    let dry = DryRun::over_store().with_subscriber(
        &subscriber,
        input
            .attributes
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    let (version, outcome) = state
        .registry
        .dry_run(&ctx.partner, &name, query.version, &call, dry)
        .await?;
    let (reply, error) = match outcome.result {
        Ok(reply) => (reply, None),
        Err(e) if !e.is_module_fault() => return Err(RegistryError::Call(e).into()),
        Err(e) => (None, Some(json!(CallErrorBody::from(&e)))),
    };
    let policy = match &reply {
        Some(text) => {
            let operators: Vec<String> = state
                .compliance
                .config()
                .operators
                .keys()
                .cloned()
                .collect();
            state
                .compliance
                .judge_text(text, &ctx.partner.display_name, &operators)
                .err()
                .map(|v| json!({"rule": v.rule, "detail": v.detail}))
        }
        None => None,
    };
    Ok(Json(DryRunAnswer {
        module: name,
        version,
        export,
        reply,
        policy,
        error,
        host_calls: outcome.host_calls,
        logs: outcome.logs,
        logs_dropped: outcome.logs_dropped,
        cpu_us: u64::try_from(outcome.cpu.as_micros()).unwrap_or(u64::MAX),
        wall_us: u64::try_from(outcome.wall.as_micros()).unwrap_or(u64::MAX),
        input_sha256: outcome.input_sha256,
        sent: false,
    }))
}

/// `POST /v1/modules/{name}/mo`: run `on-mo` of the live or a named version on a
/// text and attributes; send nothing, store nothing (issue 17 item 2, R-2.4).
#[utoipa::path(
    post,
    path = "/v1/modules/{name}/mo",
    tag = "modules",
    params(("name" = String, Path, description = "The module's name"), DryRunQuery),
    request_body = DryRunInput,
    responses(
        (status = 200, description = "The reply, the host calls made, logs, CPU and wall time; nothing sent or stored. A module failure is in `error`", body = DryRunAnswer),
        (status = 400, description = "`invalid-text`, `invalid-attribute`, `invalid-subscriber`, `invalid-service`, `partner-required`"),
        (status = 404, description = "`not-found`: no such module or version"),
        (status = 409, description = "`no-active-version`, `version-pruned`"),
        (status = 429, description = "`concurrency-limit`"),
        (status = 503, description = "`unavailable`"),
    ),
)]
pub(super) async fn dry_mo(
    ctx: PartnerContext,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<DryRunQuery>,
    body: Json<DryRunInput>,
) -> Result<Json<DryRunAnswer>, ApiError> {
    let Json(input) = body;
    dry_run(ctx, state, (name, query), input, "on-mo").await
}

/// `POST /v1/modules/{name}/subscribe`: run `on-subscribe` as a dry run (see
/// `/mo`): the welcome the module would write.
#[utoipa::path(
    post,
    path = "/v1/modules/{name}/subscribe",
    tag = "modules",
    params(("name" = String, Path, description = "The module's name"), DryRunQuery),
    request_body(content = Option<DryRunInput>, description = "Optional: service, subscriber, attributes"),
    responses(
        (status = 200, description = "The welcome, the host calls made; nothing sent or stored", body = DryRunAnswer),
        (status = 400, description = "`invalid-text`, `invalid-attribute`, `invalid-subscriber`, `invalid-service`, `partner-required`"),
        (status = 404, description = "`not-found`: no such module or version"),
        (status = 409, description = "`no-active-version`, `version-pruned`"),
        (status = 429, description = "`concurrency-limit`"),
        (status = 503, description = "`unavailable`"),
    ),
)]
pub(super) async fn dry_subscribe(
    ctx: PartnerContext,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<DryRunQuery>,
    OptionalJson(body): OptionalJson<DryRunInput>,
) -> Result<Json<DryRunAnswer>, ApiError> {
    dry_run(
        ctx,
        state,
        (name, query),
        body.unwrap_or_default(),
        "on-subscribe",
    )
    .await
}

/// `POST /v1/modules/{name}/unsubscribe`: run `on-unsubscribe` as a dry run (see
/// `/mo`): the farewell the module would write.
#[utoipa::path(
    post,
    path = "/v1/modules/{name}/unsubscribe",
    tag = "modules",
    params(("name" = String, Path, description = "The module's name"), DryRunQuery),
    request_body(content = Option<DryRunInput>, description = "Optional: service, subscriber, attributes"),
    responses(
        (status = 200, description = "The farewell, the host calls made; nothing sent or stored", body = DryRunAnswer),
        (status = 400, description = "`invalid-text`, `invalid-attribute`, `invalid-subscriber`, `invalid-service`, `partner-required`"),
        (status = 404, description = "`not-found`: no such module or version"),
        (status = 409, description = "`no-active-version`, `version-pruned`"),
        (status = 429, description = "`concurrency-limit`"),
        (status = 503, description = "`unavailable`"),
    ),
)]
pub(super) async fn dry_unsubscribe(
    ctx: PartnerContext,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<DryRunQuery>,
    OptionalJson(body): OptionalJson<DryRunInput>,
) -> Result<Json<DryRunAnswer>, ApiError> {
    dry_run(
        ctx,
        state,
        (name, query),
        body.unwrap_or_default(),
        "on-unsubscribe",
    )
    .await
}

/// The query of `GET /v1/admin/activations`.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ActivationQuery {
    /// `pending`, `approved`, `refused` (default every status).
    status: Option<String>,
    /// Items per page, 1-500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// The `next` cursor of the previous page.
    after: Option<String>,
}

/// `GET /v1/admin/activations`: activation requests, newest first (admin).
#[utoipa::path(
    get,
    path = "/v1/admin/activations",
    tag = "modules",
    params(ActivationQuery),
    responses(
        (status = 200, description = "A page of requests, newest first", body = Page<ActivationRequest>),
        (status = 400, description = "`invalid-status`"),
        (status = 403, description = "`forbidden`: admin only"),
    ),
)]
pub(super) async fn activations(
    _: Admin,
    State(state): State<AppState>,
    Query(query): Query<ActivationQuery>,
) -> Result<Json<Page<ActivationRequest>>, ApiError> {
    if let Some(status) = &query.status
        && !["pending", "approved", "refused"].contains(&status.as_str())
    {
        return Err(ApiError::bad_request(
            "invalid-status",
            "`status` is one of pending, approved, refused",
        ));
    }
    let page = PageQuery::new(query.limit, query.after);
    page.check()?;
    let items = crate::modules::approval::list(
        &state.store,
        query.status.as_deref(),
        page.after::<i64>()?,
        page.fetch()?,
    )
    .await?;
    Ok(Json(Page::from_rows(items, &page, |r| r.id)?))
}

/// The admin's reason.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"reason": "the quiz answers are not checked"}))]
pub(super) struct Decision {
    /// Required to refuse; optional to approve. At most 500 characters.
    reason: Option<String>,
}

fn reason_of(decision: Option<Decision>, required: bool) -> Result<Option<String>, ApiError> {
    let reason = decision
        .and_then(|d| d.reason)
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty());
    match &reason {
        None if required => Err(ApiError::bad_request(
            "reason-required",
            "a refusal needs a `reason` the partner reads",
        )),
        Some(r) if r.chars().count() > 500 => Err(ApiError::bad_request(
            "invalid-reason",
            "`reason` may be at most 500 characters",
        )),
        _ => Ok(reason),
    }
}

/// `POST /v1/admin/activations/{id}/approve`: the version goes live now (admin).
#[utoipa::path(
    post,
    path = "/v1/admin/activations/{id}/approve",
    tag = "modules",
    params(("id" = i64, Path, description = "The request's id")),
    request_body(content = Option<Decision>, description = "Optional reason"),
    responses(
        (status = 200, description = "The request, approved; the version is live", body = ActivationRequest),
        (status = 403, description = "`forbidden`: admin only"),
        (status = 404, description = "`not-found`"),
        (status = 409, description = "`already-decided`, `already-active`, `version-pruned`"),
        (status = 422, description = "`admission-failed`"),
    ),
)]
pub(super) async fn approve(
    caller: Caller,
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<i64>,
    OptionalJson(body): OptionalJson<Decision>,
) -> Result<Json<ActivationRequest>, ApiError> {
    let reason = reason_of(body, false)?;
    Ok(Json(
        state
            .registry
            .decide_activation(id, true, &caller.actor(), reason.as_deref())
            .await?,
    ))
}

/// `POST /v1/admin/activations/{id}/refuse`: the version stays as it is (admin).
#[utoipa::path(
    post,
    path = "/v1/admin/activations/{id}/refuse",
    tag = "modules",
    params(("id" = i64, Path, description = "The request's id")),
    request_body = Decision,
    responses(
        (status = 200, description = "The request, refused", body = ActivationRequest),
        (status = 400, description = "`reason-required`, `invalid-reason`"),
        (status = 403, description = "`forbidden`: admin only"),
        (status = 404, description = "`not-found`"),
        (status = 409, description = "`already-decided`"),
    ),
)]
pub(super) async fn refuse(
    caller: Caller,
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<i64>,
    OptionalJson(body): OptionalJson<Decision>,
) -> Result<Json<ActivationRequest>, ApiError> {
    let reason = reason_of(body, true)?;
    Ok(Json(
        state
            .registry
            .decide_activation(id, false, &caller.actor(), reason.as_deref())
            .await?,
    ))
}

/// `GET /v1/modules/{name}/calls`: the module's recorded calls, newest first,
/// paged (issue 17 item 7): every call that wrote a text within `[modules]
/// complaint_window_days`, a sample of the others, and those behind a complaint.
#[utoipa::path(
    get,
    path = "/v1/modules/{name}/calls",
    tag = "modules",
    params(("name" = String, Path, description = "The module's name"), PartnerPageQuery),
    responses(
        (status = 200, description = "Recorded calls, newest first: id (for replay), version, contract version, export, request, output", body = Page<RecordedCall>),
        (status = 400, description = "`invalid-limit`, `invalid-cursor`, `partner-required`"),
        (status = 404, description = "`not-found`: no such module"),
    ),
)]
pub(super) async fn calls(
    ctx: PartnerContext,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<PartnerPageQuery>,
) -> Result<Json<Page<RecordedCall>>, ApiError> {
    let page: PageQuery = query.page();
    page.check()?;
    let calls = state
        .registry
        .recorded_calls(&ctx.partner, &name, page.after::<i64>()?, page.fetch()?)
        .await?;
    Ok(Json(Page::from_rows(calls, &page, |c| c.id)?))
}

/// Which version a replay runs.
#[derive(Deserialize, Default, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ReplayQuery {
    /// The admin's choice of partner (read by the `PartnerContext` extractor).
    #[allow(dead_code)]
    partner: Option<String>,
    /// A version number of the same module; default the version that made the call.
    version: Option<i64>,
}

/// `POST /v1/calls/{id}/replay`: run a recorded call again with the host's
/// recorded answers (clock, random, key-value, content, attributes), on the
/// version that made it or another version of the module; show both outputs and
/// every difference. Nothing is read from the store, written or sent (issue 17
/// item 7).
#[utoipa::path(
    post,
    path = "/v1/calls/{id}/replay",
    tag = "modules",
    params(("id" = i64, Path, description = "The recorded call's id"), ReplayQuery),
    responses(
        (status = 200, description = "Recorded and replayed output, `identical`, the differences", body = ReplayReport),
        (status = 400, description = "`partner-required`"),
        (status = 404, description = "`not-found`: no such recorded call (of this partner) or version"),
        (status = 409, description = "`version-pruned`"),
        (status = 422, description = "`bad-recording`"),
        (status = 429, description = "`concurrency-limit`"),
        (status = 503, description = "`unavailable`"),
    ),
)]
pub(super) async fn replay(
    ctx: PartnerContext,
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Query(query): Query<ReplayQuery>,
) -> Result<Json<ReplayReport>, ApiError> {
    Ok(Json(
        state
            .registry
            .replay(&ctx.partner, id, query.version)
            .await?,
    ))
}
