//! `/v1/partners`: the admin creates partners and issues their keys.

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Admin;
use super::extract::{Json, OptionalJson, Path, Query};
use super::idempotency::ShownOnce;
use super::page::{Order, Page, PageQuery};
use super::{ApiError, AppState, Routes};
use crate::partners::{self, Partner};

pub(super) fn router() -> Routes {
    Routes::new()
        .route("/v1/partners", post(create).get(list))
        .route("/v1/partners/{name}/keys", post(issue_key))
        .route(
            "/v1/partners/{name}/activation-approval",
            axum::routing::put(set_activation_approval),
        )
}

/// A new partner.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "leyou", "display_name": "乐游"}))]
pub(super) struct NewPartner {
    /// Login name: 2-32 characters of `a-z`, `0-9` and `-`, starting with a letter.
    name: String,
    /// The name people read, e.g. 乐游.
    display_name: String,
}

/// A partner just created, with its first key (shown once).
#[derive(Serialize, ToSchema)]
pub(super) struct CreatedPartner {
    partner: Partner,
    /// The partner's API key; only its hash is kept.
    api_key: String,
    note: &'static str,
}

/// `POST /v1/partners`: create a partner and its first key.
#[utoipa::path(
    post,
    path = "/v1/partners",
    tag = "partners",
    request_body = NewPartner,
    responses(
        (status = 201, description = "Created; the key is in the answer, once", body = CreatedPartner),
        (status = 400, description = "`invalid-partner`: a bad name or display name"),
        (status = 409, description = "`partner-exists`; `idempotency-secret-shown-once`: a replay of a creation already done (the key is not kept)"),
    ),
)]
pub(super) async fn create(
    _: Admin,
    State(state): State<AppState>,
    body: Json<NewPartner>,
) -> Result<(StatusCode, Extension<ShownOnce>, Json<CreatedPartner>), ApiError> {
    let Json(body) = body;
    let (partner, key) = partners::create(&state.store, &body.name, &body.display_name).await?;
    Ok((
        StatusCode::CREATED,
        Extension(ShownOnce),
        Json(CreatedPartner {
            partner,
            api_key: key.key,
            note: "the key is shown once; store it now",
        }),
    ))
}

/// `GET /v1/partners`: every partner, oldest first.
#[utoipa::path(
    get,
    path = "/v1/partners",
    tag = "partners",
    params(PageQuery),
    responses((status = 200, description = "A page of partners", body = Page<Partner>)),
)]
pub(super) async fn list(
    _: Admin,
    State(state): State<AppState>,
    Query(page): Query<PageQuery>,
) -> Result<Json<Page<Partner>>, ApiError> {
    let all = partners::list(&state.store).await?;
    Ok(Json(Page::from_sorted(
        all,
        &page,
        Order::Ascending,
        |p| p.id,
    )?))
}

/// A new key for a partner.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"revoke_others": true}))]
pub(super) struct KeyRequest {
    /// Revoke every other key of the partner (default false).
    #[serde(default)]
    revoke_others: bool,
}

/// A key just issued (shown once).
#[derive(Serialize, ToSchema)]
pub(super) struct IssuedKey {
    api_key: String,
    /// The key's first characters, to tell keys apart later.
    prefix: String,
    revoked_others: bool,
}

/// `POST /v1/partners/{name}/keys`: issue a key, optionally revoking the others.
#[utoipa::path(
    post,
    path = "/v1/partners/{name}/keys",
    tag = "partners",
    params(("name" = String, Path, description = "The partner's login name")),
    request_body(content = Option<KeyRequest>, description = "Optional; an empty body is `{}`"),
    responses(
        (status = 201, description = "The new key, shown once", body = IssuedKey),
        (status = 409, description = "`idempotency-secret-shown-once`: a replay of an issue already done (the key is not kept)"),
    ),
)]
pub(super) async fn issue_key(
    _: Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
    OptionalJson(body): OptionalJson<KeyRequest>,
) -> Result<(StatusCode, Extension<ShownOnce>, Json<IssuedKey>), ApiError> {
    let request = body.unwrap_or_default();
    let key = partners::issue_key(&state.store, &name, request.revoke_others).await?;
    Ok((
        StatusCode::CREATED,
        Extension(ShownOnce),
        Json(IssuedKey {
            api_key: key.key,
            prefix: key.prefix,
            revoked_others: request.revoke_others,
        }),
    ))
}

/// Whether a partner's module activations wait for the admin's approval.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"required": true}))]
pub(super) struct ActivationApproval {
    required: bool,
}

/// `PUT /v1/partners/{name}/activation-approval`: require (or stop requiring) the
/// admin's approval of the partner's module activations (issue 17 item 1). A
/// request already pending stays pending.
#[utoipa::path(
    put,
    path = "/v1/partners/{name}/activation-approval",
    tag = "partners",
    params(("name" = String, Path, description = "The partner's login name")),
    request_body = ActivationApproval,
    responses(
        (status = 200, description = "The setting now", body = ActivationApproval),
        (status = 403, description = "`forbidden`: admin only"),
        (status = 404, description = "`not-found`: no such partner"),
    ),
)]
pub(super) async fn set_activation_approval(
    _: Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Json<ActivationApproval>,
) -> Result<Json<ActivationApproval>, ApiError> {
    let Json(body) = body;
    if !crate::modules::approval::set_required(&state.store, &name, body.required).await? {
        return Err(ApiError::not_found(format!("no partner `{name}`")));
    }
    Ok(Json(body))
}
