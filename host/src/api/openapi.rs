//! The OpenAPI 3.1 document of the API, generated from the handlers with `utoipa`
//! (issue 14 item 2, R-2.8), served at `GET /v1/openapi.json`, and its reference
//! page at `GET /docs` (RapiDoc, embedded in the binary: no CDN at run time).
//!
//! Adding a route to the document is one step: put `#[utoipa::path(...)]` on the
//! handler (method, path, params, request body with an example, the route's own
//! responses) and name the handler in [`ApiDoc`]'s `paths(...)`. The errors every
//! route shares are added here by [`CommonErrors`], by rule:
//!
//! | when | status | codes |
//! |---|---|---|
//! | always | 400 | `invalid-path`, `invalid-query`, `invalid-limit`, `invalid-cursor`, the route's own |
//! | the route needs a key (all but `/healthz`, the document and the page) | 401, 429 | `unauthorized`, `rate-limited` (with `Retry-After`) |
//! | an admin route, or one that takes `?partner=` | 403 | `forbidden` |
//! | a path parameter, or `?partner=` | 404 | `not-found` |
//! | a JSON body | 400, 413, 415, 422 | `malformed-json`, `body-too-large`, `unsupported-media-type`, `invalid-json` |
//! | a creating `POST` (`Idempotency-Key`) | 409, 422 | `idempotency-key-in-use`, `idempotency-key-reused` |
//!
//! The route test (`tests/tests/api.rs` `item14_*`) proves the document lists
//! exactly the routes the server serves, and that every route that answers 401
//! without a key declares it.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr};
use utoipa::{Modify, OpenApi, ToSchema};

use super::extract::{NoParams, Query};
use super::{AppState, Routes};

pub(super) fn router() -> Routes {
    Routes::new()
        .route("/v1/openapi.json", get(document))
        .route("/docs", get(page))
        .route("/docs/rapidoc-min.js", get(script))
}

/// Every error answer: `{"error": {"code", "message"}}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"error": {"code": "not-found", "message": "no service 7"}}))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong: a stable machine-readable `code` and a sentence for people.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, kebab-case (`invalid-json`, `not-found`, `run-in-progress`, …).
    pub code: String,
    /// A human-readable explanation; wording may change.
    pub message: String,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tongdao API",
        description = "The Tongdao SMS content platform: partners, modules, services, \
            subscriptions, pushes, messages, billing and settlement.\n\n\
            Conventions: every error is `{\"error\":{\"code\",\"message\"}}`; lists take \
            `?limit=` (1-500, default 50) and `?after=<cursor>` and answer \
            `{\"items\":[…],\"next\":cursor|null}`; timestamps are RFC 3339 UTC with \
            milliseconds (`2026-11-30T03:12:00.123Z`), days `YYYY-MM-DD`, months `YYYY-MM`; \
            money is integer fen in `*_fen` fields; creating `POST`s honour \
            `Idempotency-Key`; every answer carries `x-request-id`.",
        license(name = "Apache-2.0"),
    ),
    paths(
        super::healthz,
        document,
        page,
        script,
        super::partners::create,
        super::partners::list,
        super::partners::issue_key,
        super::partners::set_activation_approval,
        super::content::add,
        super::content::list,
        super::messages::list,
        super::messages::detail,
        super::messages::test_send,
        super::messages::binds,
        super::schedules::list_schedules,
        super::schedules::create_schedule,
        super::schedules::get_schedule,
        super::schedules::update_schedule,
        super::schedules::delete_schedule,
        super::schedules::push_now,
        super::schedules::list_runs,
        super::schedules::get_run,
        super::schedules::cancel_run,
        super::services::create,
        super::services::list,
        super::services::detail,
        super::services::revise,
        super::services::submit,
        super::services::audit,
        super::services::subscribe,
        super::services::subscriptions_list,
        super::services::unsubscribe,
        super::services::violations,
        super::services::admin_service,
        super::services::admin_partner,
        super::services::run_detectors,
        super::billing::my_agreement,
        super::billing::my_charges,
        super::billing::my_statement,
        super::billing::upload_figures,
        super::billing::my_cases,
        super::billing::my_case,
        super::billing::my_alerts,
        super::billing::set_agreement,
        super::billing::set_status,
        super::billing::add_terms,
        super::billing::add_operator_terms,
        super::billing::partner_payment,
        super::billing::breach_notice,
        super::billing::remedy,
        super::billing::terminate,
        super::billing::operator_billing,
        super::billing::bad_debt,
        super::billing::bad_debt_history,
        super::billing::operator_payment,
        super::billing::calendar_days,
        super::billing::set_day,
        super::billing::remove_day,
        super::billing::all_cases,
        super::billing::decide,
        super::billing::resolve,
        super::billing::issue_statement,
        super::billing::all_alerts,
        super::billing::charge_pass,
        super::modules::upload,
        super::modules::list,
        super::modules::detail,
        super::modules::activate,
        super::modules::rollback,
        super::modules::faults,
        super::modules::bulletin,
        super::modules::admission,
        super::modules::dry_mo,
        super::modules::dry_subscribe,
        super::modules::dry_unsubscribe,
        super::modules::calls,
        super::modules::replay,
        super::modules::activations,
        super::modules::approve,
        super::modules::refuse,
        super::release::set_shadow,
        super::release::shadow_runs,
        super::release::stop_shadow,
        super::release::start_canary,
        super::release::promote_canary,
        super::release::stop_canary,
        super::notices::list,
        super::stats::stats,
        super::metrics::metrics,
        super::alerts::list,
        super::webhooks::create,
        super::webhooks::list,
        super::webhooks::show,
        super::webhooks::update,
        super::webhooks::remove,
        super::webhooks::deliveries,
        super::webhooks::replay,
        super::webhooks::rotate,
        super::webhooks::events,
        super::complaints::file,
        super::complaints::list,
        super::complaints::rates,
        super::complaints::detail,
        super::complaints::act,
        super::complaints::contacts,
        super::complaints::set_contacts,
        super::history::history,
        super::audit::list,
        super::audit::verify,
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&Bearer, &CommonErrors),
    security(("bearer" = [])),
    tags(
        (name = "platform", description = "Health and this document"),
        (name = "partners", description = "Partners and their API keys (admin)"),
        (name = "modules", description = "Wasm modules: upload, versions, activation, faults (R-8)"),
        (name = "content", description = "A partner's content library"),
        (name = "services", description = "Services, terms, approval, subscriptions, compliance (R-3)"),
        (name = "pushes", description = "Schedules and push runs (R-8.3, R-8.4)"),
        (name = "messages", description = "MTs, their status history, test sends, binds"),
        (name = "billing", description = "Agreements, charges, statements, reconciliation (R-4, R-5)"),
        (name = "stats", description = "Statistics per period, service and operator (R-2.8, R-3.1)"),
        (name = "alerts", description = "Anomaly alerts (R-2.6)"),
        (name = "webhooks", description = "Signed webhooks and the event inbox (R-2.7)"),
        (name = "complaints", description = "Complaints register and contacts (R-6)"),
        (name = "audit", description = "Number history and the audit chain (R-3.6)"),
    )
)]
pub struct ApiDoc;

/// The `bearer` security scheme: `Authorization: Bearer <key>` (admin or partner key).
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("td_pk_… (a partner key) or the admin key")
                    .description(Some(
                        "A partner key reaches only its own partner's data (R-7.1); the admin \
                         key reaches everything, a partner's side with `?partner=NAME`.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The errors every route shares, added by rule (see the module docs).
struct CommonErrors;

impl Modify for CommonErrors {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        for (path, item) in doc.paths.paths.iter_mut() {
            let has_path_params = path.contains('{');
            let admin_only = path.starts_with("/v1/admin") || path.starts_with("/v1/partners");
            for (method, op) in [
                ("get", &mut item.get),
                ("post", &mut item.post),
                ("put", &mut item.put),
                ("patch", &mut item.patch),
                ("delete", &mut item.delete),
            ] {
                if let Some(op) = op {
                    add_common(op, method, has_path_params, admin_only);
                }
            }
        }
    }
}

/// Whether an operation needs a key: it inherits the document's bearer
/// requirement unless it declares `security(())`.
pub fn needs_key(op: &Operation) -> bool {
    match &op.security {
        None => true,
        Some(list) => list
            .iter()
            .any(|r| serde_json::to_value(r).is_ok_and(|v| v != serde_json::json!({}))),
    }
}

fn add_common(op: &mut Operation, method: &str, has_path_params: bool, admin_only: bool) {
    let secured = needs_key(op);
    let params = op.parameters.as_deref().unwrap_or_default();
    let takes_partner = params
        .iter()
        .any(|p| p.name == "partner" && matches!(p.parameter_in, ParameterIn::Query));
    let idempotent = params.iter().any(|p| p.name == "Idempotency-Key");
    let body = op.request_body.is_some();
    let mut add = |status: &str, codes: &str| {
        let response = op
            .responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| {
                RefOr::T(
                    ResponseBuilder::new()
                        .description("")
                        .content(
                            "application/json",
                            Content::new(Some(RefOr::Ref(Ref::from_schema_name("ErrorBody")))),
                        )
                        .build(),
                )
            });
        if let RefOr::T(response) = response {
            if response.content.is_empty() {
                response.content.insert(
                    "application/json".into(),
                    Content::new(Some(RefOr::Ref(Ref::from_schema_name("ErrorBody")))),
                );
            }
            let sep = if response.description.is_empty() {
                ""
            } else {
                "; "
            };
            response.description = format!("{}{sep}{codes}", response.description);
        }
    };
    let mut bad = vec!["`invalid-path`"];
    if method == "get" {
        bad.push("`invalid-query`");
    }
    if body {
        bad.push("`malformed-json`");
    }
    add("400", &bad.join(", "));
    if secured {
        add(
            "401",
            "`unauthorized`: no key, or an unknown or revoked one",
        );
        add(
            "429",
            "`rate-limited`: the key is over `[http] rate_per_key_per_second`; `Retry-After` says when to come back",
        );
    }
    if secured && (admin_only || takes_partner) {
        add(
            "403",
            "`forbidden`: an admin route with a partner key, or a partner naming another partner",
        );
    }
    if has_path_params || takes_partner {
        add("404", "`not-found`: no such object (or another partner's)");
    }
    if body {
        add("413", "`body-too-large`");
        add(
            "415",
            "`unsupported-media-type`: send `Content-Type: application/json`",
        );
        add("422", "`invalid-json`: JSON of the wrong shape");
    }
    if idempotent {
        add(
            "409",
            "`idempotency-key-in-use`: the first request with this key still runs",
        );
        add(
            "422",
            "`idempotency-key-reused`: the key was used with another request",
        );
    }
}

/// `GET /v1/openapi.json`: this document (no key needed).
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "platform",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object)),
)]
async fn document(State(_): State<AppState>, _: Query<NoParams>) -> Response {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let json = DOC.get_or_init(document_json);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        json.clone(),
    )
        .into_response()
}

/// The reference page: RapiDoc reading `/v1/openapi.json`, fonts from the system.
const PAGE: &str = r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Tongdao API 通道接口</title>
<script type="module" src="/docs/rapidoc-min.js"></script>
</head>
<body>
<rapi-doc spec-url="/v1/openapi.json" render-style="read" show-header="false"
  allow-server-selection="false" regular-font="system-ui, sans-serif"
  mono-font="ui-monospace, monospace" schema-description-expanded="true"
  primary-color="#b3262b"></rapi-doc>
</body>
</html>
"##;

/// `GET /docs`: the API reference, rendered in the browser from the document.
#[utoipa::path(
    get,
    path = "/docs",
    tag = "platform",
    security(()),
    responses((status = 200, description = "The API reference page", content_type = "text/html", body = String)),
)]
async fn page(_: Query<NoParams>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        PAGE,
    )
        .into_response()
}

/// RapiDoc 9.3.8 (MIT, `host/assets/rapidoc/LICENSE.txt`), from npm, embedded.
static RAPIDOC: &[u8] = include_bytes!("../../assets/rapidoc/rapidoc-min.js");

/// `GET /docs/rapidoc-min.js`: the renderer the page loads.
#[utoipa::path(
    get,
    path = "/docs/rapidoc-min.js",
    tag = "platform",
    security(()),
    responses((status = 200, description = "RapiDoc's standalone script", content_type = "text/javascript", body = String)),
)]
async fn script(_: Query<NoParams>) -> Response {
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/javascript; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=86400"),
            ),
        ],
        RAPIDOC,
    )
        .into_response()
}

/// The document as JSON, as served.
pub fn document_json() -> String {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    merge_all_of(&mut doc);
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// A request body with `#[serde(flatten)]` (`NewService`: `code`, `module` and the
/// flattened `ServiceTerms`) comes out of utoipa as `allOf` of two closed objects
/// (`additionalProperties: false` each), which no value satisfies. Merge each such
/// schema into one closed object with the properties and `required` of both, as
/// serde reads it.
fn merge_all_of(doc: &mut serde_json::Value) {
    use serde_json::{Map, Value};
    let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    let snapshot = schemas.clone();
    for schema in schemas.values_mut() {
        let Some(parts) = schema.get("allOf").and_then(Value::as_array).cloned() else {
            continue;
        };
        let mut properties = Map::new();
        let mut required: Vec<Value> = Vec::new();
        let mut closed = false;
        for part in parts {
            let part = match part.get("$ref").and_then(Value::as_str) {
                Some(r) => r
                    .strip_prefix("#/components/schemas/")
                    .and_then(|name| snapshot.get(name))
                    .cloned()
                    .unwrap_or_default(),
                None => part,
            };
            if let Some(p) = part.get("properties").and_then(Value::as_object) {
                properties.extend(p.clone());
            }
            if let Some(r) = part.get("required").and_then(Value::as_array) {
                required.extend(r.iter().cloned());
            }
            closed |= part.get("additionalProperties") == Some(&Value::Bool(false));
        }
        let Some(object) = schema.as_object_mut() else {
            continue;
        };
        object.remove("allOf");
        object.insert("type".into(), Value::from("object"));
        object.insert("properties".into(), Value::Object(properties));
        object.insert("required".into(), Value::Array(required));
        if closed {
            object.insert("additionalProperties".into(), Value::Bool(false));
        }
    }
}
