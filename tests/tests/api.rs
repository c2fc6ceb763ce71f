//! The HTTP API over a real socket: auth, partner keys, module routes, tenant
//! isolation (R-7.1), JSON errors, body limits, on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used)]

mod common;

use common::{ADMIN_KEY, Server, databases, error_code, guest};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partners_modules_and_isolation() {
    for db in databases().await {
        // `hostile-loop` runs live below: admission reports it, never blocks here.
        let server = Server::start_with(db.clone(), |config| {
            config.modules.admission = tongdao::modules::AdmissionMode::Report;
        })
        .await;
        let label = if db.is_some() { "postgres" } else { "sqlite" };

        // Health needs no key; everything else does.
        let (status, body) = server
            .send(server.http.get(server.url("/healthz")), None)
            .await;
        assert_eq!(
            (status, &body["status"]),
            (StatusCode::OK, &json!("ok")),
            "{label}"
        );
        let (status, body) = server
            .send(server.http.get(server.url("/v1/modules")), None)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(error_code(&body), "unauthorized");
        let (status, _) = server.get("/v1/modules", "td_pk_not-a-real-key").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        let acme = server.new_partner("acme").await;
        let rival = server.new_partner("rival").await;
        // Partners cannot create partners; duplicate names conflict; bad names are 400.
        let (status, body) = server
            .post(
                "/v1/partners",
                &acme,
                json!({"name": "x1", "display_name": "x"}),
            )
            .await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::FORBIDDEN, "forbidden")
        );
        let (status, body) = server
            .post(
                "/v1/partners",
                ADMIN_KEY,
                json!({"name": "acme", "display_name": "again"}),
            )
            .await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::CONFLICT, "partner-exists")
        );
        let (status, body) = server
            .post(
                "/v1/partners",
                ADMIN_KEY,
                json!({"name": "Bad Name!", "display_name": "x"}),
            )
            .await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::BAD_REQUEST, "invalid-partner")
        );
        let (status, body) = server
            .post("/v1/partners", ADMIN_KEY, json!({"name": "ok-name"}))
            .await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid-json")
        );

        // Upload: created, then the same bytes again is 200 with the same version.
        let (status, body) = server.upload(&acme, guest("horoscope")).await;
        assert_eq!(status, StatusCode::CREATED, "{label}: {body}");
        assert_eq!(
            (body["module"].as_str(), body["version"].as_i64()),
            (Some("horoscope"), Some(1))
        );
        let (status, body) = server.upload(&acme, guest("horoscope")).await;
        assert_eq!(
            (status, body["created"].as_bool()),
            (StatusCode::OK, Some(false))
        );

        // Bad uploads: each with its precise code, nothing stored.
        let (status, body) = server.upload(&acme, guest("wrong_world")).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::UNPROCESSABLE_ENTITY, "wrong-world")
        );
        let (status, body) = server.upload(&acme, b"definitely not wasm".to_vec()).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::UNPROCESSABLE_ENTITY, "not-wasm")
        );
        let (status, body) = server
            .send(
                server
                    .http
                    .post(server.url("/v1/modules"))
                    .header("content-type", "text/plain")
                    .body("x"),
                Some(&acme),
            )
            .await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type")
        );
        let (status, body) = server.oversize_upload(&acme, 5 * 1024 * 1024).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::PAYLOAD_TOO_LARGE, "body-too-large")
        );

        // The rival sees none of acme's modules, by list, by name, or by naming acme.
        let (status, body) = server.get("/v1/modules", &rival).await;
        assert_eq!(
            (status, body["items"].as_array().unwrap().len()),
            (StatusCode::OK, 0)
        );
        let (status, body) = server.get("/v1/modules/horoscope", &rival).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::NOT_FOUND, "not-found")
        );
        let (status, _) = server.get("/v1/modules?partner=acme", &rival).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = server
            .post("/v1/modules/horoscope/rollback", &rival, json!({}))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = server
            .post(
                "/v1/modules/horoscope/activate",
                &rival,
                json!({"version": 1}),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = server
            .post("/v1/modules/horoscope/bulletin", &rival, json!({}))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        // The admin sees acme's modules when naming the partner, and must name one.
        let (status, body) = server.get("/v1/modules?partner=acme", ADMIN_KEY).await;
        assert_eq!(
            (status, body["items"][0]["name"].as_str()),
            (StatusCode::OK, Some("horoscope"))
        );
        let (status, body) = server.get("/v1/modules", ADMIN_KEY).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::BAD_REQUEST, "partner-required")
        );

        // Activation errors and the bulletin preview.
        let (status, body) = server
            .post(
                "/v1/modules/horoscope/activate",
                &acme,
                json!({"version": 1}),
            )
            .await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::CONFLICT, "already-active")
        );
        let (status, body) = server
            .post(
                "/v1/modules/horoscope/activate",
                &acme,
                json!({"version": "one"}),
            )
            .await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid-json")
        );
        let (status, body) = server
            .post("/v1/modules/horoscope/rollback", &acme, json!({}))
            .await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::CONFLICT, "nothing-to-roll-back")
        );
        let (status, body) = server
            .post(
                "/v1/modules/horoscope/bulletin",
                &acme,
                json!({"service": "XZ", "date": "2026-11-28"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["content"]["kind"], "keyed");
        assert_eq!(body["content"]["variants"].as_array().unwrap().len(), 12);
        let (status, body) = server
            .post(
                "/v1/modules/horoscope/bulletin",
                &acme,
                json!({"date": "28/11/2026"}),
            )
            .await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::BAD_REQUEST, "invalid-date")
        );

        // A hostile module's fault shows in the API, and the host keeps serving.
        let (status, _) = server.upload(&acme, guest("hostile_loop")).await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, body) = server
            .post("/v1/modules/hostile-loop/bulletin", &acme, json!({}))
            .await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::UNPROCESSABLE_ENTITY, "cpu-limit")
        );
        let (status, body) = server.get("/v1/modules/hostile-loop/faults", &acme).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["items"][0]["kind"], "cpu-limit");
        assert_eq!(body["items"][0]["version"], 1);
        let (_, body) = server.get("/v1/modules/hostile-loop", &acme).await;
        assert_eq!(body["fault_count"], 1);
        let (status, _) = server
            .post("/v1/modules/horoscope/bulletin", &acme, json!({}))
            .await;
        assert_eq!(status, StatusCode::OK);

        // A new key can replace the old ones.
        let (status, body) = server
            .post(
                "/v1/partners/acme/keys",
                ADMIN_KEY,
                json!({"revoke_others": true}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let fresh = body["api_key"].as_str().unwrap().to_string();
        assert_eq!(
            server.get("/v1/modules", &acme).await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(server.get("/v1/modules", &fresh).await.0, StatusCode::OK);

        // Unknown routes answer JSON too.
        let (status, body) = server.get("/v1/nothing-here", &fresh).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::NOT_FOUND, "not-found")
        );
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_library_is_per_partner() {
    let server = Server::start(None).await;
    let acme = server.new_partner("acme").await;
    let rival = server.new_partner("rival").await;
    let (status, body) = server
        .post(
            "/v1/content/jokes",
            &acme,
            json!({"items": [{"text": "一"}, {"id": "j2", "text": "二", "tags": ["x"]}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = server
        .post(
            "/v1/content/jokes",
            &acme,
            json!({"items": [{"id": "j2", "text": "dup"}]}),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::CONFLICT, "duplicate-item")
    );
    let (status, body) = server
        .post(
            "/v1/content/jokes",
            &acme,
            json!({"items": [{"text": "  "}]}),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "invalid-content")
    );
    let (status, body) = server
        .post("/v1/content/BAD%20NAME", &acme, json!({"items": []}))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "invalid-content")
    );
    let (_, body) = server.get("/v1/content/jokes", &acme).await;
    assert_eq!(body["items"].as_array().unwrap().len(), 2);
    let (_, body) = server.get("/v1/content/jokes", &rival).await;
    assert_eq!(body["items"].as_array().unwrap().len(), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_sends_and_message_routes() {
    let sim = tongdao_smpp::sim::Sim::start(tongdao_smpp::sim::SimConfig::default())
        .await
        .unwrap();
    for db in databases().await {
        let address = sim.local_addr().to_string();
        let server = Server::start_with(db.clone(), |config| {
            config.relay.test_numbers = vec!["13800138000".into()];
            config.operators = vec![common::sim_operator(address)];
        })
        .await;
        let label = if db.is_some() { "postgres" } else { "sqlite" };
        let acme = server.new_partner("acme").await;

        // Only the admin, only listed numbers, only routable, non-empty texts.
        let send = |to: &str, text: &str| json!({"to": to, "text": text});
        let (status, _) = server
            .post("/v1/admin/test-messages", &acme, send("13800138000", "x"))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, body) = server
            .post(
                "/v1/admin/test-messages",
                ADMIN_KEY,
                send("13900139000", "x"),
            )
            .await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::FORBIDDEN, "forbidden")
        );
        let (status, body) = server
            .post(
                "/v1/admin/test-messages",
                ADMIN_KEY,
                send("not a number", "x"),
            )
            .await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::UNPROCESSABLE_ENTITY, "unroutable")
        );
        let (status, body) = server
            .post(
                "/v1/admin/test-messages",
                ADMIN_KEY,
                send("13800138000", " "),
            )
            .await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::BAD_REQUEST, "invalid-text")
        );

        let (status, body) = server
            .post(
                "/v1/admin/test-messages",
                ADMIN_KEY,
                send("+86 138 0013 8000", "【测试】通道连通"),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{label}: {body}");
        let id = body["id"].as_i64().unwrap();
        let mut detail = Value::Null;
        for _ in 0..100 {
            let (status, body) = server.get(&format!("/v1/messages/{id}"), ADMIN_KEY).await;
            assert_eq!(status, StatusCode::OK);
            detail = body;
            if detail["status"] == "delivered" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(detail["status"], "delivered", "{label}: {detail}");
        assert_eq!(detail["recipient"], "13800138000");
        assert_eq!(detail["charge_plan"], "test");
        let history: Vec<&str> = detail["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["status"].as_str().unwrap())
            .collect();
        assert_eq!(history, ["queued", "submitted", "delivered"], "{label}");

        // A partner sees none of the platform's (or another partner's) messages.
        let (status, _) = server.get(&format!("/v1/messages/{id}"), &acme).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (_, body) = server.get("/v1/messages", &acme).await;
        assert_eq!(body["items"].as_array().unwrap().len(), 0);
        let (status, body) = server
            .get("/v1/messages?status=delivered&limit=30", ADMIN_KEY)
            .await;
        assert_eq!(status, StatusCode::OK, "numbers in the query parse: {body}");
        assert_eq!(body["items"][0]["id"], id);
        let (status, body) = server.get("/v1/messages?limit=many", ADMIN_KEY).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::BAD_REQUEST, "invalid-query")
        );
        let (status, body) = server.get("/v1/messages/abc", ADMIN_KEY).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::BAD_REQUEST, "invalid-id")
        );
        server.stop().await;
    }
}

/// Who a route is called as in the walk.
#[derive(Clone, Copy, PartialEq)]
enum Who {
    Nobody,
    Admin,
    Partner,
}

/// Every route of the API: path, methods (`*` takes a JSON body, `?` an optional
/// JSON body, `!` a wasm body) and who calls it. The walk below fails when a route
/// is added without a line here.
const ROUTES: &[(&str, &str, Who)] = &[
    ("/healthz", "GET", Who::Nobody),
    ("/metrics", "GET", Who::Nobody),
    ("/v1/stats", "GET", Who::Partner),
    ("/v1/openapi.json", "GET", Who::Nobody),
    ("/docs", "GET", Who::Nobody),
    ("/docs/rapidoc-min.js", "GET", Who::Nobody),
    ("/v1/partners", "POST* GET", Who::Admin),
    ("/v1/partners/{name}/keys", "POST?", Who::Admin),
    ("/v1/content/{collection}", "POST* GET", Who::Partner),
    ("/v1/messages", "GET", Who::Partner),
    ("/v1/messages/{id}", "GET", Who::Partner),
    ("/v1/admin/test-messages", "POST*", Who::Admin),
    ("/v1/services/{id}/schedules", "GET POST*", Who::Partner),
    ("/v1/schedules/{id}", "GET PATCH* DELETE", Who::Partner),
    ("/v1/services/{id}/push", "POST?", Who::Partner),
    ("/v1/services/{id}/runs", "GET", Who::Partner),
    ("/v1/runs/{id}", "GET", Who::Partner),
    ("/v1/runs/{id}/cancel", "POST", Who::Partner),
    ("/v1/services", "POST* GET", Who::Partner),
    ("/v1/services/{id}", "GET", Who::Partner),
    ("/v1/services/{id}/terms", "PUT*", Who::Partner),
    ("/v1/services/{id}/submit", "POST", Who::Partner),
    ("/v1/services/{id}/audit", "GET", Who::Partner),
    ("/v1/services/{id}/subscriptions", "POST* GET", Who::Partner),
    ("/v1/subscriptions/{id}", "DELETE", Who::Partner),
    ("/v1/violations", "GET", Who::Partner),
    ("/v1/notices", "GET", Who::Partner),
    ("/v1/alerts", "GET", Who::Partner),
    ("/v1/webhooks", "POST* GET", Who::Partner),
    ("/v1/webhooks/{id}", "GET PATCH* DELETE", Who::Partner),
    ("/v1/webhooks/{id}/deliveries", "GET", Who::Partner),
    ("/v1/webhooks/{id}/replay", "POST*", Who::Partner),
    ("/v1/webhook-secret/rotate", "POST", Who::Partner),
    ("/v1/events", "GET", Who::Partner),
    ("/v1/admin/relay/binds", "GET", Who::Admin),
    ("/v1/admin/services/{id}/{action}", "POST*", Who::Admin),
    ("/v1/admin/partners/{name}/{action}", "POST*", Who::Admin),
    ("/v1/admin/complaints", "POST*", Who::Admin),
    ("/v1/complaints", "GET", Who::Partner),
    ("/v1/complaints/rates", "GET", Who::Partner),
    ("/v1/complaints/{id}", "GET", Who::Partner),
    ("/v1/complaints/{id}/{action}", "POST*", Who::Partner),
    ("/v1/contacts", "GET PUT*", Who::Partner),
    ("/v1/admin/history", "GET", Who::Admin),
    ("/v1/admin/audit", "GET", Who::Admin),
    ("/v1/admin/audit/verify", "GET", Who::Admin),
    ("/v1/admin/detectors/run", "POST", Who::Admin),
    ("/v1/agreement", "GET", Who::Partner),
    ("/v1/charges", "GET", Who::Partner),
    ("/v1/statements/{month}", "GET", Who::Partner),
    ("/v1/statements/{month}/figures", "POST*", Who::Partner),
    ("/v1/discrepancies", "GET", Who::Partner),
    ("/v1/discrepancies/{id}", "GET", Who::Partner),
    ("/v1/billing/alerts", "GET", Who::Partner),
    ("/v1/admin/partners/{name}/agreement", "PUT*", Who::Admin),
    (
        "/v1/admin/partners/{name}/agreement/status",
        "POST*",
        Who::Admin,
    ),
    ("/v1/admin/partners/{name}/terms", "POST*", Who::Admin),
    (
        "/v1/admin/partners/{name}/operator-terms",
        "POST*",
        Who::Admin,
    ),
    ("/v1/admin/partners/{name}/payments", "POST*", Who::Admin),
    (
        "/v1/admin/partners/{name}/breach-notices",
        "POST*",
        Who::Admin,
    ),
    (
        "/v1/admin/partners/{name}/breach-notices/{id}/remedy",
        "POST*",
        Who::Admin,
    ),
    ("/v1/admin/partners/{name}/termination", "POST*", Who::Admin),
    (
        "/v1/admin/partners/{name}/statements/{month}/issue",
        "POST",
        Who::Admin,
    ),
    ("/v1/admin/operators/{operator}/billing", "PUT*", Who::Admin),
    (
        "/v1/admin/operators/{operator}/bad-debt/{month}",
        "PUT* GET",
        Who::Admin,
    ),
    (
        "/v1/admin/operators/{operator}/payments",
        "POST*",
        Who::Admin,
    ),
    ("/v1/admin/calendars/{calendar}", "GET", Who::Admin),
    (
        "/v1/admin/calendars/{calendar}/days/{day}",
        "PUT* DELETE",
        Who::Admin,
    ),
    ("/v1/admin/discrepancies", "GET", Who::Admin),
    ("/v1/admin/discrepancies/{id}/decision", "POST*", Who::Admin),
    (
        "/v1/admin/discrepancies/{id}/resolution",
        "POST*",
        Who::Admin,
    ),
    ("/v1/admin/billing/alerts", "GET", Who::Admin),
    ("/v1/admin/billing/charge-pass", "POST", Who::Admin),
    ("/v1/modules", "POST! GET", Who::Partner),
    ("/v1/modules/{name}", "GET", Who::Partner),
    ("/v1/modules/{name}/activate", "POST*", Who::Partner),
    ("/v1/modules/{name}/rollback", "POST", Who::Partner),
    ("/v1/modules/{name}/faults", "GET", Who::Partner),
    ("/v1/modules/{name}/bulletin", "POST?", Who::Partner),
    (
        "/v1/modules/{name}/versions/{version}/admission",
        "GET",
        Who::Partner,
    ),
    ("/v1/modules/{name}/mo", "POST*", Who::Partner),
    ("/v1/modules/{name}/subscribe", "POST?", Who::Partner),
    ("/v1/modules/{name}/unsubscribe", "POST?", Who::Partner),
    ("/v1/modules/{name}/shadow", "PUT* GET DELETE", Who::Partner),
    ("/v1/modules/{name}/canary", "PUT* DELETE", Who::Partner),
    ("/v1/modules/{name}/canary/promote", "POST", Who::Partner),
    ("/v1/modules/{name}/calls", "GET", Who::Partner),
    ("/v1/calls/{id}/replay", "POST", Who::Partner),
    ("/v1/admin/activations", "GET", Who::Admin),
    ("/v1/admin/activations/{id}/approve", "POST?", Who::Admin),
    ("/v1/admin/activations/{id}/refuse", "POST?", Who::Admin),
    (
        "/v1/partners/{name}/activation-approval",
        "PUT*",
        Who::Admin,
    ),
];

/// A body sent to a JSON route: content type, bytes, expected status and code.
type BodyCase = (Option<&'static str>, Vec<u8>, (StatusCode, &'static str));

/// A well-formed value for each path parameter, so a request gets past the path.
fn fill(path: &str, broken: Option<usize>) -> String {
    let mut out = String::new();
    for (i, segment) in path.split('/').enumerate().skip(1) {
        out.push('/');
        let value = match segment {
            _ if !segment.starts_with('{') => segment,
            _ if broken.is_some_and(|b| b == i) => "%ff",
            "{id}" => "1",
            "{name}" => "acme",
            "{action}" => "suspend",
            "{month}" => "2026-08",
            "{operator}" => "mobile",
            "{calendar}" => "cn",
            "{day}" => "2026-10-01",
            "{collection}" => "jokes",
            "{version}" => "1",
            other => panic!("no value for {other}"),
        };
        out.push_str(value);
    }
    out
}

/// The error must be the documented shape and nothing else.
fn assert_json_error(what: &str, status: StatusCode, ct: &str, text: &str) -> String {
    assert!(
        ct.starts_with("application/json"),
        "{what}: {status} answered `{ct}`: {text}"
    );
    let body: Value =
        serde_json::from_str(text).unwrap_or_else(|_| panic!("{what}: not JSON: {text}"));
    let object = body.as_object().unwrap();
    assert_eq!(object.len(), 1, "{what}: {body}");
    let error = body["error"].as_object().unwrap();
    assert_eq!(error.len(), 2, "{what}: {body}");
    assert!(
        !body["error"]["message"].as_str().unwrap().is_empty(),
        "{what}: {body}"
    );
    body["error"]["code"].as_str().unwrap().to_string()
}

/// Issue 10 item 7: every route answers every kind of malformed input with one
/// JSON error and one status per kind: a path segment that is not UTF-8 (400
/// `invalid-path`), JSON that does not parse (400 `malformed-json`), JSON of the
/// wrong shape (422 `invalid-json`), a body without its content type (415), a body
/// over the limit (413), an unknown query parameter on any GET (400
/// `invalid-query`), a method the route does not have (405), a path it does not
/// have (404). Issue 14 item 2: every list's bad `limit` and `after` (400
/// `invalid-limit`, `invalid-cursor`), and every status answered in the walk is one
/// the route declares in the OpenAPI document.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item7_every_route_answers_malformed_input_with_the_json_error() {
    // The table covers exactly the routes the API serves.
    let mut listed: Vec<&str> = ROUTES.iter().map(|r| r.0).collect();
    listed.sort_unstable();
    assert_eq!(
        listed,
        tongdao::api::paths(),
        "a route without a case here, or a case without a route"
    );
    for db in databases().await {
        // Hundreds of malformed requests back to back with two keys: the per-key
        // rate limit (proved by `rate_limit_per_key_walls_partners_off`) is off.
        let server = Server::start_with(db, |c| c.http.rate_per_key_per_second = 0).await;
        let acme = server.new_partner("acme").await;
        let (status, doc) = server
            .send(server.http.get(server.url("/v1/openapi.json")), None)
            .await;
        assert_eq!(status, StatusCode::OK);
        let call = async |method: &str,
                          url: String,
                          who: Who,
                          content_type: Option<&str>,
                          body: Option<Vec<u8>>|
               -> (StatusCode, String, String) {
            let mut req = server
                .http
                .request(method.parse().unwrap(), server.url(&url));
            req = match who {
                Who::Admin => req.bearer_auth(ADMIN_KEY),
                Who::Partner => req.bearer_auth(&acme),
                Who::Nobody => req,
            };
            if let Some(ct) = content_type {
                req = req.header("content-type", ct);
            }
            if let Some(b) = body {
                req = req.body(b);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status();
            let ct = resp
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            (status, ct, resp.text().await.unwrap())
        };
        let mut checked = 0;
        for &(path, methods, who) in ROUTES {
            let methods: Vec<(&str, Option<char>)> = methods
                .split(' ')
                .map(|m| match m.strip_suffix(['*', '?', '!']) {
                    Some(name) => (name, m.chars().last()),
                    None => (m, None),
                })
                .collect();
            let params: Vec<usize> = path
                .split('/')
                .enumerate()
                .filter(|(_, s)| s.starts_with('{'))
                .map(|(i, _)| i)
                .collect();
            let mut expect = |what: String,
                              (status, ct, text): (StatusCode, String, String),
                              want: (StatusCode, &str)| {
                let code = assert_json_error(&what, status, &ct, &text);
                assert_eq!((status, code.as_str()), want, "{what}: {text}");
                checked += 1;
            };
            for &(method, body) in &methods {
                // The document declares what the walk below meets.
                let op = &doc["paths"][path][method.to_lowercase()];
                let declared = |status: StatusCode| {
                    op["responses"]
                        .get(status.as_str())
                        .is_some_and(|r| r["content"]["application/json"].is_object())
                };
                assert!(
                    declared(StatusCode::BAD_REQUEST),
                    "{method} {path}: 400 undeclared"
                );
                if body.is_some_and(|b| b != '!') {
                    for status in [
                        StatusCode::PAYLOAD_TOO_LARGE,
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        StatusCode::UNPROCESSABLE_ENTITY,
                    ] {
                        assert!(declared(status), "{method} {path}: {status} undeclared");
                    }
                }
                let takes = |name: &str| {
                    op["parameters"].as_array().is_some_and(|ps| {
                        ps.iter().any(|p| p["name"] == name && p["in"] == "query")
                    })
                };
                if method == "GET" && takes("limit") {
                    let mut url = fill(path, None);
                    if takes("month") {
                        url.push_str("?month=2026-08");
                    }
                    for (query, code) in [
                        ("limit=0", "invalid-limit"),
                        ("limit=501", "invalid-limit"),
                        ("after=not-a-cursor!", "invalid-cursor"),
                        ("after=bm90IGpzb24", "invalid-cursor"),
                    ] {
                        let sep = if url.contains('?') { '&' } else { '?' };
                        let url = format!("{url}{sep}{query}");
                        let what = format!("GET {url}");
                        let answer = call("GET", url, who, None, None).await;
                        expect(what, answer, (StatusCode::BAD_REQUEST, code));
                    }
                }
                // Every path parameter that is not UTF-8.
                for &i in &params {
                    let url = fill(path, Some(i));
                    let what = format!("{method} {url}");
                    let answer = call(method, url, who, None, None).await;
                    expect(what, answer, (StatusCode::BAD_REQUEST, "invalid-path"));
                }
                let url = fill(path, None);
                if method == "GET" {
                    let what = format!("GET {url}?bogus=1");
                    let answer = call("GET", format!("{url}?bogus=1"), who, None, None).await;
                    expect(what, answer, (StatusCode::BAD_REQUEST, "invalid-query"));
                }
                let json = Some("application/json");
                match body {
                    Some('*' | '?') => {
                        let cases: [BodyCase; 4] = [
                            (
                                json,
                                b"{,}".to_vec(),
                                (StatusCode::BAD_REQUEST, "malformed-json"),
                            ),
                            (
                                json,
                                b"[1, 2]".to_vec(),
                                (StatusCode::UNPROCESSABLE_ENTITY, "invalid-json"),
                            ),
                            (
                                None,
                                b"{}".to_vec(),
                                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type"),
                            ),
                            (
                                json,
                                vec![b' '; 70 * 1024],
                                (StatusCode::PAYLOAD_TOO_LARGE, "body-too-large"),
                            ),
                        ];
                        for (ct, bytes, want) in cases {
                            let what =
                                format!("{method} {url} with {} bytes ({ct:?})", bytes.len());
                            let answer = call(method, url.clone(), who, ct, Some(bytes)).await;
                            expect(what, answer, want);
                        }
                    }
                    Some('!') => {
                        let what = format!("{method} {url} with JSON");
                        let answer =
                            call(method, url.clone(), who, json, Some(b"{}".to_vec())).await;
                        expect(
                            what,
                            answer,
                            (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type"),
                        );
                    }
                    _ => {}
                }
            }
            // Methods the route does not have.
            for other in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
                if methods.iter().any(|(m, _)| *m == other) {
                    continue;
                }
                let url = fill(path, None);
                let what = format!("{other} {url}");
                let answer = call(other, url, who, None, None).await;
                expect(
                    what,
                    answer,
                    (StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed"),
                );
            }
        }
        let answer = call("GET", "/v1/nothing-here".into(), Who::Partner, None, None).await;
        let code = assert_json_error("GET /v1/nothing-here", answer.0, &answer.1, &answer.2);
        assert_eq!(
            (answer.0, code.as_str()),
            (StatusCode::NOT_FOUND, "not-found")
        );
        assert!(checked > 300, "only {checked} checks");
        server.stop().await;
    }
}

/// Issue 10 item 7: the admin's `?partner=` works on every admin list; a partner
/// naming another partner is refused (403), not ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item7_admin_lists_take_partner() {
    let server = Server::start(None).await;
    let acme = server.new_partner("acme").await;
    server.new_partner("rival").await;
    for list in [
        "/v1/services",
        "/v1/violations",
        "/v1/notices",
        "/v1/messages",
        "/v1/modules",
        "/v1/discrepancies",
        "/v1/billing/alerts",
        "/v1/admin/billing/alerts",
        "/v1/admin/discrepancies",
        "/v1/content/jokes",
        "/v1/stats",
        "/v1/alerts",
        "/v1/webhooks",
        "/v1/events",
        "/v1/complaints",
        "/v1/complaints/rates",
    ] {
        let sep = if list.contains('?') { '&' } else { '?' };
        let (status, body) = server
            .get(&format!("{list}{sep}partner=acme"), ADMIN_KEY)
            .await;
        assert_eq!(status, StatusCode::OK, "{list}: {body}");
        let (status, body) = server
            .get(&format!("{list}{sep}partner=nobody"), ADMIN_KEY)
            .await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::NOT_FOUND, "not-found"),
            "{list}"
        );
        if !list.starts_with("/v1/admin") {
            let (status, body) = server
                .get(&format!("{list}{sep}partner=rival"), &acme)
                .await;
            assert_eq!(
                (status, error_code(&body)),
                (StatusCode::FORBIDDEN, "forbidden"),
                "{list}"
            );
        }
    }
    server.stop().await;
}

/// The methods of a `ROUTES` line, without their body marks.
fn methods_of(methods: &str) -> impl Iterator<Item = &str> {
    methods
        .split(' ')
        .map(|m| m.trim_end_matches(['*', '?', '!']))
}

/// Issue 14 item 2: the OpenAPI 3.1 document lists exactly the routes the server
/// serves (every path and method of `ROUTES`, which item7 proves equal to
/// `api::paths()`); every route that answers 401 without a key declares 401 and
/// the bearer scheme, and those that need none declare `security: [{}]`; every
/// admin route answers a partner key with 403, declared; every route that takes
/// `?partner=` answers a partner naming another partner with 403, declared. The
/// reference page and its renderer come from the binary, no CDN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item14_openapi_documents_every_route_with_its_auth_errors() {
    let server = Server::start(None).await;
    let acme = server.new_partner("acme").await;
    server.new_partner("rival").await;
    let (status, doc) = server
        .send(server.http.get(server.url("/v1/openapi.json")), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());

    let mut documented = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                documented.insert((path.clone(), method.to_uppercase()));
            }
        }
    }
    let served: std::collections::BTreeSet<(String, String)> = ROUTES
        .iter()
        .flat_map(|(path, methods, _)| {
            methods_of(methods).map(|m| (path.to_string(), m.to_string()))
        })
        .collect();
    assert_eq!(
        documented, served,
        "a route served but not documented, or documented but not served"
    );

    let mut checked = 0;
    for &(path, methods, who) in ROUTES {
        for method in methods_of(methods) {
            let op = &doc["paths"][path][method.to_lowercase()];
            let what = format!("{method} {path}");
            assert!(op["responses"].is_object(), "{what}: {op}");
            let open = op["security"] == json!([{}]);
            let url = fill(path, None);
            let answer = server
                .http
                .request(method.parse().unwrap(), server.url(&url))
                .send()
                .await
                .unwrap();
            if who == Who::Nobody {
                assert!(open, "{what} needs no key but does not say so");
                assert_ne!(answer.status(), StatusCode::UNAUTHORIZED, "{what}");
                continue;
            }
            assert_eq!(answer.status(), StatusCode::UNAUTHORIZED, "{what}");
            assert!(!open, "{what} needs a key but declares none");
            assert!(
                op["responses"]["401"]["content"]["application/json"].is_object(),
                "{what}: 401 undeclared"
            );
            let with = |key: &str, url: &str| {
                server
                    .http
                    .request(method.parse().unwrap(), server.url(url))
                    .bearer_auth(key)
                    .header("content-type", "application/json")
                    .body("{}")
            };
            if who == Who::Admin {
                let (status, body) = server.send(with(&acme, &url), None).await;
                assert_eq!(
                    (status, error_code(&body)),
                    (StatusCode::FORBIDDEN, "forbidden"),
                    "{what} with a partner key"
                );
                assert!(op["responses"]["403"].is_object(), "{what}: 403 undeclared");
            }
            let takes_partner = op["parameters"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["name"] == "partner"));
            if who == Who::Partner && takes_partner {
                let mut url = format!("{url}?partner=rival");
                if path == "/v1/charges" {
                    url.push_str("&month=2026-08");
                }
                let request = if method == "POST" && path == "/v1/modules" {
                    server
                        .http
                        .post(server.url(&url))
                        .bearer_auth(&acme)
                        .header("content-type", "application/wasm")
                        .body(b"\0asm".to_vec())
                } else {
                    with(&acme, &url)
                };
                let (status, body) = server.send(request, None).await;
                assert_eq!(
                    (status, error_code(&body)),
                    (StatusCode::FORBIDDEN, "forbidden"),
                    "{what} naming another partner"
                );
                assert!(op["responses"]["403"].is_object(), "{what}: 403 undeclared");
            }
            checked += 1;
        }
    }
    assert!(checked > 60, "only {checked} routes checked");

    // The reference page and its renderer, from the binary.
    let page = server.http.get(server.url("/docs")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"src="/docs/rapidoc-min.js""#), "{html}");
    assert!(html.contains(r#"spec-url="/v1/openapi.json""#), "{html}");
    assert!(!html.contains("https://"), "no CDN: {html}");
    let script = server
        .http
        .get(server.url("/docs/rapidoc-min.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), StatusCode::OK);
    assert!(script.bytes().await.unwrap().len() > 500_000);
    server.stop().await;
}

/// Issue 14 item 1: every answer carries `x-request-id`: a sane client id comes
/// back as sent, anything else is replaced by a fresh UUID; errors carry it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item14_every_answer_has_a_request_id() {
    let server = Server::start(None).await;
    let id_of = |r: &reqwest::Response| {
        r.headers()
            .get("x-request-id")
            .map(|v| v.to_str().unwrap().to_string())
    };
    let plain = server
        .http
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    let generated = id_of(&plain).expect("an id on a plain answer");
    assert_eq!(generated.len(), 36, "a UUID: {generated}");
    let other = server
        .http
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_ne!(id_of(&other).unwrap(), generated, "one id per request");
    for (path, sent) in [
        ("/healthz", "trace-42.a:b/c"),
        ("/v1/nothing-here", "client-7"),
        ("/v1/modules", "no-key"),
    ] {
        let answer = server
            .http
            .get(server.url(path))
            .header("x-request-id", sent)
            .send()
            .await
            .unwrap();
        assert_eq!(id_of(&answer).as_deref(), Some(sent), "{path}");
    }
    let insane = server
        .http
        .get(server.url("/healthz"))
        .header("x-request-id", "two words")
        .send()
        .await
        .unwrap();
    let replaced = id_of(&insane).unwrap();
    assert_eq!(replaced.len(), 36, "{replaced}");
    server.stop().await;
}

/// Issue 14 item 1: `Idempotency-Key` works on every creating `POST`, not only the
/// two routes of issue 10: a partner and a content item are created once however
/// often the request is retried; the same key with another request is 422.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item14_idempotency_key_on_creating_posts() {
    for db in databases().await {
        let server = Server::start(db).await;
        let create = |key: &'static str, name: &str| {
            server
                .http
                .post(server.url("/v1/partners"))
                .bearer_auth(ADMIN_KEY)
                .header("idempotency-key", key)
                .json(&json!({"name": name, "display_name": "乐游"}))
        };
        let first = create("k-1", "leyou").send().await.unwrap();
        assert_eq!(first.status(), StatusCode::CREATED);
        let first: Value = first.json().await.unwrap();
        // Done once; the key it issued is shown once and kept nowhere, so the
        // replay says so instead of repeating it.
        let again = create("k-1", "leyou").send().await.unwrap();
        assert_eq!(again.status(), StatusCode::CONFLICT);
        assert_eq!(again.headers()["idempotent-replayed"], "true");
        let again: Value = again.json().await.unwrap();
        assert_eq!(
            error_code(&again),
            "idempotency-secret-shown-once",
            "{again}"
        );
        let issue = || {
            server
                .http
                .post(server.url("/v1/partners/leyou/keys"))
                .bearer_auth(ADMIN_KEY)
                .header("idempotency-key", "k-2")
                .json(&json!({}))
        };
        let (status, issued) = server.send(issue(), None).await;
        assert_eq!(status, StatusCode::CREATED, "{issued}");
        let (status, again) = server.send(issue(), None).await;
        assert_eq!(
            (status, error_code(&again)),
            (StatusCode::CONFLICT, "idempotency-secret-shown-once")
        );
        for plain in [&first["api_key"], &issued["api_key"]] {
            let plain = plain.as_str().unwrap();
            let found = columns_containing(&server.platform.store, plain).await;
            assert!(found.is_empty(), "a plain API key is stored in {found:?}");
        }
        let (status, body) = server.send(create("k-1", "other"), None).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::UNPROCESSABLE_ENTITY, "idempotency-key-reused")
        );
        let (_, list) = server.get("/v1/partners", ADMIN_KEY).await;
        assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");

        let key = first["api_key"].as_str().unwrap();
        let add = || {
            server
                .http
                .post(server.url("/v1/content/jokes"))
                .bearer_auth(key)
                .header("idempotency-key", "add-1")
                .json(&json!({"items": [{"id": "j1", "text": "一"}]}))
        };
        for _ in 0..3 {
            let (status, body) = server.send(add(), None).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
        let (status, body) = server
            .post(
                "/v1/content/jokes",
                key,
                json!({"items": [{"id": "j1", "text": "一"}]}),
            )
            .await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::CONFLICT, "duplicate-item"),
            "without a key the second add is a duplicate"
        );
        // Keys are per caller (SECURITY.md): another partner sending the same key
        // with its own body gets its own answer, neither leyou's nor a 422.
        let rival = server.new_partner("rival").await;
        let (status, body) = server
            .send(
                server
                    .http
                    .post(server.url("/v1/content/jokes"))
                    .bearer_auth(&rival)
                    .header("idempotency-key", "add-1")
                    .json(&json!({"items": [{"id": "r1", "text": "二"}]})),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert!(!body.to_string().contains("j1"), "{body}");
        let (_, rival_items) = server.get("/v1/content/jokes", &rival).await;
        let ids: Vec<&str> = rival_items["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["r1"], "{rival_items}");
        server.stop().await;
    }
}

/// SECURITY.md gap 2 (issue 18 item 4): a webhook signing secret shown in the
/// answer of `POST /v1/webhooks` or `POST /v1/webhook-secret/rotate` made with an
/// `Idempotency-Key` is kept with that key, so a retry gets the same answer (the
/// same endpoint and the same secret), nothing is created or rotated twice, and
/// another partner retrying with the same key gets its own endpoint and secret,
/// never this one. Unlike API keys (only hashes at rest), the secret is kept in
/// plain text: in `webhook_secrets` to sign, and in the idempotency record. Both
/// stores. R-2.7.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item18_webhook_secrets_are_kept_with_their_idempotency_key() {
    for db in databases().await {
        let server = Server::start(db).await;
        let acme = server.new_partner("acme").await;
        let rival = server.new_partner("rival").await;
        let create = |key: &str, idem: &'static str| {
            server
                .http
                .post(server.url("/v1/webhooks"))
                .bearer_auth(key)
                .header("idempotency-key", idem)
                .json(&json!({"url": "https://example.com/hook"}))
        };
        let first = create(&acme, "w-1").send().await.unwrap();
        assert_eq!(first.status(), StatusCode::CREATED);
        let first: Value = first.json().await.unwrap();
        let secret = first["secret"].as_str().unwrap().to_string();
        assert!(secret.starts_with("whsec_"), "{first}");
        let again = create(&acme, "w-1").send().await.unwrap();
        assert_eq!(again.status(), StatusCode::CREATED);
        assert_eq!(again.headers()["idempotent-replayed"], "true");
        let again: Value = again.json().await.unwrap();
        assert_eq!(
            again, first,
            "the replay is the same answer, secret included"
        );
        let (_, list) = server.get("/v1/webhooks", &acme).await;
        assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");

        let rotate = || {
            server
                .http
                .post(server.url("/v1/webhook-secret/rotate"))
                .bearer_auth(&acme)
                .header("idempotency-key", "r-1")
        };
        let (status, rotated) = server.send(rotate(), None).await;
        assert_eq!(status, StatusCode::OK, "{rotated}");
        let new_secret = rotated["secret"].as_str().unwrap().to_string();
        assert_ne!(new_secret, secret);
        let (status, again) = server.send(rotate(), None).await;
        assert_eq!((status, &again), (StatusCode::OK, &rotated));
        let (secrets,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM webhook_secrets s JOIN partners p ON p.id = s.partner_id
             WHERE p.name = 'acme'",
        )
        .fetch_one(server.platform.store.pool())
        .await
        .unwrap();
        assert_eq!(secrets, 2, "created once and rotated once");
        for plain in [&secret, &new_secret] {
            let mut found = columns_containing(&server.platform.store, plain).await;
            found.sort();
            assert_eq!(
                found,
                ["idempotency_keys.response", "webhook_secrets.secret"],
                "where a webhook secret is kept"
            );
        }

        // Another partner's retry with the same key is its own request.
        let theirs = create(&rival, "w-1").send().await.unwrap();
        assert_eq!(theirs.status(), StatusCode::CREATED);
        assert!(theirs.headers().get("idempotent-replayed").is_none());
        let theirs: Value = theirs.json().await.unwrap();
        assert_ne!(theirs["id"], first["id"]);
        let their_secret = theirs["secret"].as_str().unwrap();
        assert!(their_secret != secret && their_secret != new_secret);
        server.stop().await;
    }
}

/// SECURITY.md gap 3 (issue 18 item 4): a key issued without `revoke_others`
/// (absent or `false`) leaves the partner's older keys working; with it, every
/// older key is 401 at once and only the newest works. R-7.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item18_a_key_issued_without_revoke_others_leaves_older_keys_working() {
    for db in databases().await {
        let server = Server::start(db).await;
        let first = server.new_partner("acme").await;
        let mut keys = vec![first];
        for body in [json!({}), json!({"revoke_others": false})] {
            let (status, issued) = server.post("/v1/partners/acme/keys", ADMIN_KEY, body).await;
            assert_eq!(status, StatusCode::CREATED, "{issued}");
            keys.push(issued["api_key"].as_str().unwrap().to_string());
        }
        for key in &keys {
            let (status, body) = server.get("/v1/modules", key).await;
            assert_eq!(
                status,
                StatusCode::OK,
                "an older key stopped working: {body}"
            );
        }
        let (status, issued) = server
            .post(
                "/v1/partners/acme/keys",
                ADMIN_KEY,
                json!({"revoke_others": true}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{issued}");
        for key in &keys {
            let (status, body) = server.get("/v1/modules", key).await;
            assert_eq!(
                (status, error_code(&body)),
                (StatusCode::UNAUTHORIZED, "unauthorized")
            );
        }
        let newest = issued["api_key"].as_str().unwrap();
        assert_eq!(server.get("/v1/modules", newest).await.0, StatusCode::OK);
        server.stop().await;
    }
}

/// Every `table.column` of the database whose text holds `needle` (SECURITY.md:
/// API keys are kept only as hashes; this looks everywhere, not only in
/// `api_keys`).
async fn columns_containing(store: &tongdao::store::Store, needle: &str) -> Vec<String> {
    let catalog = match store.backend() {
        tongdao::store::Backend::Sqlite => {
            "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p
             WHERE m.type = 'table'"
        }
        tongdao::store::Backend::Postgres => {
            "SELECT table_name::text, column_name::text FROM information_schema.columns
             WHERE table_schema = current_schema()"
        }
    };
    let columns: Vec<(String, String)> = sqlx::query_as(catalog)
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert!(
        columns.len() > 50,
        "the catalog lists the tables: {columns:?}"
    );
    let mut found = Vec::new();
    for (table, column) in columns {
        let (hits,): (i64,) = sqlx::query_as(&format!(
            "SELECT COUNT(*) FROM \"{table}\" WHERE CAST(\"{column}\" AS TEXT) LIKE $1"
        ))
        .bind(format!("%{needle}%"))
        .fetch_one(store.pool())
        .await
        .unwrap();
        if hits > 0 {
            found.push(format!("{table}.{column}"));
        }
    }
    found
}

/// Issue 14 item 1: one pagination style: `?limit=&after=` walks a list page by
/// page, each item once and in order, the last page's `next` is null; the same
/// on a newest-first list (messages) and an upload-order one (content).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item14_lists_page_with_limit_and_after() {
    for db in databases().await {
        let server = Server::start(db).await;
        let acme = server.new_partner("acme").await;
        let items: Vec<Value> = (1..=7)
            .map(|i| json!({"id": format!("j{i}"), "text": format!("笑话 {i}")}))
            .collect();
        let (status, body) = server
            .post("/v1/content/jokes", &acme, json!({ "items": items }))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let mut seen = Vec::new();
        let mut url = "/v1/content/jokes?limit=3".to_string();
        let mut pages = 0;
        loop {
            let (status, page) = server.get(&url, &acme).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            assert_eq!(page.as_object().unwrap().len(), 2, "items and next: {page}");
            pages += 1;
            for item in page["items"].as_array().unwrap() {
                seen.push(item["id"].as_str().unwrap().to_string());
            }
            match page["next"].as_str() {
                Some(next) => url = format!("/v1/content/jokes?limit=3&after={next}"),
                None => break,
            }
        }
        assert_eq!(pages, 3);
        assert_eq!(seen, (1..=7).map(|i| format!("j{i}")).collect::<Vec<_>>());

        // A page exactly full at the end says so with a null `next` after it.
        let (_, page) = server.get("/v1/content/jokes?limit=7", &acme).await;
        assert_eq!(page["items"].as_array().unwrap().len(), 7);
        assert!(page["next"].is_null(), "{page}");
        let (_, page) = server.get("/v1/partners?limit=1", ADMIN_KEY).await;
        assert_eq!(page["items"][0]["name"], "acme");
        assert!(
            page["items"][0]["created_at"]
                .as_str()
                .unwrap()
                .ends_with('Z')
        );
        assert!(page["next"].is_null(), "{page}");
        server.stop().await;
    }
}

/// Issue 14 item 2, a schemathesis finding: a body with flattened fields
/// (`NewService`, `Revise`: code and module beside the service terms) came out as
/// `allOf` of two closed objects, which no value satisfies. It is one closed
/// object now, and the documented example parses as the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item14_flattened_bodies_are_one_satisfiable_schema() {
    let server = Server::start(None).await;
    let acme = server.new_partner("acme").await;
    let (status, _) = server.upload(&acme, guest("horoscope")).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, doc) = server
        .send(server.http.get(server.url("/v1/openapi.json")), None)
        .await;
    for name in ["NewService", "Revise"] {
        let schema = &doc["components"]["schemas"][name];
        assert!(schema.get("allOf").is_none(), "{name}: {schema}");
        assert_eq!(schema["additionalProperties"], false, "{name}");
        for field in ["module", "name", "keywords", "fee_type", "price_fen"] {
            assert!(schema["properties"][field].is_object(), "{name}.{field}");
        }
    }
    let schema = &doc["components"]["schemas"]["NewService"];
    let example = match schema.get("example") {
        Some(e) => e.clone(),
        None => schema["examples"][0].clone(),
    };
    assert!(example.is_object(), "an example: {schema}");
    // The example parses as the body (no 422); the route's rules then judge it
    // (this server has no operators configured, so `operators` may be refused).
    let (status, body) = server.post("/v1/services", &acme, example).await;
    assert_ne!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        status == StatusCode::CREATED || error_code(&body) == "invalid-service",
        "the documented example: {status} {body}"
    );
    server.stop().await;
}

/// Issue 14 item 2, a schemathesis finding: filing a complaint against a partner,
/// service or message that does not exist answers 404 `not-found`, and the
/// document declares that 404 (it did not; the walk of `item7_*` never names a
/// missing partner in a body).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item14_complaint_for_an_unknown_partner_is_a_declared_404() {
    let server = Server::start(None).await;
    let (_, doc) = server
        .send(server.http.get(server.url("/v1/openapi.json")), None)
        .await;
    assert!(
        doc["paths"]["/v1/admin/complaints"]["post"]["responses"]["404"].is_object(),
        "404 declared"
    );
    let (status, body) = server
        .post(
            "/v1/admin/complaints",
            ADMIN_KEY,
            json!({"partner": "nobody", "cause": "content", "channel": "hotline"}),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "not-found"),
        "{body}"
    );
    server.stop().await;
}

/// SECURITY.md (a hostile partner API client, R-7.1): each key has its own request
/// rate. A partner firing 60 requests at once at 5/s (bursts of 10) gets 429
/// `rate-limited` with `Retry-After` for those over its bucket, nothing more; another
/// partner's key and the admin's are served as if nothing happened; an unknown key
/// is 401 and counts against nobody; once the bucket refills the partner is served
/// again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_per_key_walls_partners_off() {
    for db in databases().await {
        let server = Server::start_with(db, |c| {
            c.http.rate_per_key_per_second = 5;
            c.http.rate_burst = 10;
        })
        .await;
        let storm = server.new_partner("storm").await;
        let calm = server.new_partner("calm").await;
        let answers = futures_util::future::join_all(
            (0..60).map(|_| server.send(server.http.get(server.url("/v1/modules")), Some(&storm))),
        )
        .await;
        let served = answers.iter().filter(|(s, _)| *s == StatusCode::OK).count();
        let limited: Vec<&Value> = answers
            .iter()
            .filter(|(s, _)| *s == StatusCode::TOO_MANY_REQUESTS)
            .map(|(_, b)| b)
            .collect();
        assert_eq!(served + limited.len(), 60, "{answers:?}");
        assert!((10..60).contains(&served), "served {served} of 60");
        assert!(limited.iter().all(|b| error_code(b) == "rate-limited"));
        let refused = server
            .http
            .get(server.url("/v1/modules"))
            .bearer_auth(&storm)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        let wait: u64 = refused.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=2).contains(&wait), "Retry-After {wait}");
        // The others' buckets are untouched: a burst each is served whole (the
        // admin's bucket already paid for creating the two partners).
        for (key, path) in [
            (calm.as_str(), "/v1/modules"),
            (ADMIN_KEY, "/v1/modules?partner=storm"),
        ] {
            for i in 0..8 {
                let (status, body) = server.get(path, key).await;
                assert_eq!(status, StatusCode::OK, "{path} #{i}: {body}");
            }
        }
        let (status, _) = server.get("/v1/modules", "td_partner_unknown").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        // The bucket refills: the storm partner is served again.
        common::poll_until(std::time::Duration::from_secs(20), async || {
            match server.get("/v1/modules", &storm).await {
                (StatusCode::OK, _) => Ok(()),
                other => Err(format!("still limited: {other:?}")),
            }
        })
        .await;
        server.stop().await;
    }
}

/// How partner B's call on partner A's object must end (issue 18 item 4).
#[derive(Clone, Copy, PartialEq, Debug)]
enum Wall {
    /// The path names A's object: B gets 404 `not-found`, as if it did not exist.
    NotFound,
    /// The path names something relative to the caller (a collection, a month): B
    /// reaches its own, never A's; B's answer holds nothing of A's.
    Own,
    /// A's object of this kind is not made here; the named test proves B's 404 on
    /// it. B's call here must still be 404.
    Elsewhere(&'static str),
}

/// One call B makes on A's objects: method, the route template, the URL naming A's
/// object, the body (a valid one, so the ownership check is what answers), the wall.
struct Attempt {
    method: &'static str,
    route: &'static str,
    url: String,
    body: Option<Value>,
    wall: Wall,
}

/// SECURITY.md gap 1 (issue 18 item 4), R-7.1: cross-tenant access by id on every
/// route. Partner A (`acme`, on a real SMSC simulator) creates one object of every
/// kind a partner route addresses by id or name: a service with a subscription, a
/// schedule, a finished push run and its MT, a webhook endpoint, a complaint routed
/// to it, its modules with their versions, admission reports and recorded calls.
/// Partner B (`rival`) then calls every method of every id-bearing partner route
/// on them: every one answers 404 `not-found` (or, for the routes whose parameter
/// is relative to the caller, B's own data and none of A's), and A reads every
/// object back unchanged. The walk is derived from the served OpenAPI document:
/// an id-bearing partner route (or method) without an attempt here fails the test.
/// B's dry run of its own module naming A's subscriber id sees none of A's data.
/// Both stores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item18_no_partner_reaches_another_partners_objects_by_id() {
    use common::env::{Env, free};
    for db in databases().await {
        let env = Env::start(db, |c| c.http.rate_per_key_per_second = 0).await;
        let server = &env.server;
        let a = env.acme.clone();
        let b = server.new_partner("rival").await;
        let call = async |method: &str, url: &str, key: &str, body: Option<&Value>| {
            let mut req = server
                .http
                .request(method.parse().unwrap(), server.url(url))
                .bearer_auth(key);
            if let Some(body) = body {
                req = req.json(body);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status();
            let text = resp.text().await.unwrap();
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
            (status, body)
        };

        // A's objects.
        let marker = "只属于acme的笑话：程序员的键盘没有退格键。";
        let (status, body) = server
            .post(
                "/v1/content/jokes",
                &a,
                json!({"items": [{"text": marker}]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let service = env
            .approved_service(&a, "XH", "jokes", free("笑话", "02"))
            .await;
        let (status, subscription) = server
            .post(
                &format!("/v1/services/{service}/subscriptions"),
                &a,
                json!({"msisdn": "13800000101", "attributes": {"sign": "aries"}}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{subscription}");
        let subscription_id = subscription["subscription"]["id"].as_i64().unwrap();
        let subscriber = subscription["subscription"]["subscriber_id"]
            .as_str()
            .unwrap()
            .to_string();
        let (status, schedule) = server
            .post(
                &format!("/v1/services/{service}/schedules"),
                &a,
                json!({"cron": "0 8 * * *", "enabled": false}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{schedule}");
        let schedule = schedule["id"].as_i64().unwrap();
        let (status, run) = server
            .post(&format!("/v1/services/{service}/push"), &a, json!({}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{run}");
        let run = run["id"].as_i64().unwrap();
        let final_run = env.wait_run_final(run).await;
        assert_eq!(final_run["status"], "completed", "{final_run}");
        let (status, webhook) = server
            .post(
                "/v1/webhooks",
                &a,
                json!({"url": "https://example.com/hook", "events": ["terms.changed"]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{webhook}");
        let webhook = webhook["id"].as_i64().unwrap();
        let (status, complaint) = server
            .post(
                "/v1/admin/complaints",
                ADMIN_KEY,
                json!({"partner": "acme", "msisdn": "13800000101", "channel": "10086",
                       "cause": "content", "note": "用户投诉内容"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{complaint}");
        assert_eq!(complaint["routed_to"], "partner", "{complaint}");
        let complaint = complaint["id"].as_i64().unwrap();
        let (status, calls) = server.get("/v1/modules/jokes/calls", &a).await;
        assert_eq!(status, StatusCode::OK, "{calls}");
        let recorded = calls["items"][0]["id"]
            .as_i64()
            .unwrap_or_else(|| panic!("the push's bulletin call is recorded: {calls}"));
        // Every MT of A final (delivered), so nothing moves while B walks.
        let message = common::poll_until(std::time::Duration::from_secs(30), async || {
            let (_, list) = server.get("/v1/messages", &a).await;
            let items = list["items"].as_array().unwrap();
            let pending: Vec<&Value> = items
                .iter()
                .filter(|m| m["status"] != "delivered")
                .collect();
            match items.first() {
                Some(m) if pending.is_empty() => Ok(m["id"].as_i64().unwrap()),
                _ => Err(format!("A's MTs not all delivered: {list}")),
            }
        })
        .await;
        let month = tongdao::api::time::format(tongdao::store::now_ms())[..7].to_string();

        // Every call B makes, one per method of every id-bearing partner route.
        // Discrepancy cases come only from a paid service's statement figures under
        // an agreement, which this walk does not set up: `Elsewhere`.
        use Wall::{Elsewhere, NotFound, Own};
        let at = |method, route, url: String, body: Option<Value>, wall| Attempt {
            method,
            route,
            url,
            body,
            wall,
        };
        let terms = json!({"module": "jokes", "name": "改名", "keywords": ["笑话"], "fee_type": "free",
                           "price_fen": 0, "operators": ["mobile"], "number_ext": "02"});
        let s = format!("/v1/services/{service}");
        let attempts = vec![
            at(
                "GET",
                "/v1/content/{collection}",
                "/v1/content/jokes".into(),
                None,
                Own,
            ),
            at(
                "POST",
                "/v1/content/{collection}",
                "/v1/content/jokes".into(),
                Some(json!({"items": [{"text": "rival 的笑话"}]})),
                Own,
            ),
            at(
                "GET",
                "/v1/messages/{id}",
                format!("/v1/messages/{message}"),
                None,
                NotFound,
            ),
            at("GET", "/v1/services/{id}", s.clone(), None, NotFound),
            at(
                "GET",
                "/v1/services/{id}/schedules",
                format!("{s}/schedules"),
                None,
                NotFound,
            ),
            at(
                "POST",
                "/v1/services/{id}/schedules",
                format!("{s}/schedules"),
                Some(json!({"cron": "0 9 * * *"})),
                NotFound,
            ),
            at(
                "GET",
                "/v1/schedules/{id}",
                format!("/v1/schedules/{schedule}"),
                None,
                NotFound,
            ),
            at(
                "PATCH",
                "/v1/schedules/{id}",
                format!("/v1/schedules/{schedule}"),
                Some(json!({"enabled": true})),
                NotFound,
            ),
            at(
                "DELETE",
                "/v1/schedules/{id}",
                format!("/v1/schedules/{schedule}"),
                None,
                NotFound,
            ),
            at(
                "POST",
                "/v1/services/{id}/push",
                format!("{s}/push"),
                Some(json!({})),
                NotFound,
            ),
            at(
                "GET",
                "/v1/services/{id}/runs",
                format!("{s}/runs"),
                None,
                NotFound,
            ),
            at(
                "GET",
                "/v1/runs/{id}",
                format!("/v1/runs/{run}"),
                None,
                NotFound,
            ),
            at(
                "POST",
                "/v1/runs/{id}/cancel",
                format!("/v1/runs/{run}/cancel"),
                None,
                NotFound,
            ),
            at(
                "PUT",
                "/v1/services/{id}/terms",
                format!("{s}/terms"),
                Some(terms),
                NotFound,
            ),
            at(
                "POST",
                "/v1/services/{id}/submit",
                format!("{s}/submit"),
                None,
                NotFound,
            ),
            at(
                "GET",
                "/v1/services/{id}/audit",
                format!("{s}/audit"),
                None,
                NotFound,
            ),
            at(
                "GET",
                "/v1/services/{id}/subscriptions",
                format!("{s}/subscriptions"),
                None,
                NotFound,
            ),
            at(
                "POST",
                "/v1/services/{id}/subscriptions",
                format!("{s}/subscriptions"),
                Some(json!({"msisdn": "13800000102"})),
                NotFound,
            ),
            at(
                "DELETE",
                "/v1/subscriptions/{id}",
                format!("/v1/subscriptions/{subscription_id}"),
                None,
                NotFound,
            ),
            at(
                "GET",
                "/v1/webhooks/{id}",
                format!("/v1/webhooks/{webhook}"),
                None,
                NotFound,
            ),
            at(
                "PATCH",
                "/v1/webhooks/{id}",
                format!("/v1/webhooks/{webhook}"),
                Some(json!({"enabled": false})),
                NotFound,
            ),
            at(
                "DELETE",
                "/v1/webhooks/{id}",
                format!("/v1/webhooks/{webhook}"),
                None,
                NotFound,
            ),
            at(
                "GET",
                "/v1/webhooks/{id}/deliveries",
                format!("/v1/webhooks/{webhook}/deliveries"),
                None,
                NotFound,
            ),
            at(
                "POST",
                "/v1/webhooks/{id}/replay",
                format!("/v1/webhooks/{webhook}/replay"),
                Some(json!({"since": "2026-01-01T00:00:00.000Z"})),
                NotFound,
            ),
            at(
                "GET",
                "/v1/complaints/{id}",
                format!("/v1/complaints/{complaint}"),
                None,
                NotFound,
            ),
            at(
                "POST",
                "/v1/complaints/{id}/{action}",
                format!("/v1/complaints/{complaint}/acknowledge"),
                Some(json!({"note": "rival"})),
                NotFound,
            ),
            at(
                "POST",
                "/v1/complaints/{id}/{action}",
                format!("/v1/complaints/{complaint}/resolve"),
                Some(json!({"resolution": "rival"})),
                NotFound,
            ),
            at(
                "POST",
                "/v1/complaints/{id}/{action}",
                format!("/v1/complaints/{complaint}/reject"),
                Some(json!({"resolution": "rival"})),
                NotFound,
            ),
            at(
                "GET",
                "/v1/statements/{month}",
                format!("/v1/statements/{month}"),
                None,
                Own,
            ),
            at(
                "POST",
                "/v1/statements/{month}/figures",
                format!("/v1/statements/{month}/figures"),
                Some(
                    json!({"lines": [{"service": "XH", "operator": "mobile", "count": 1, "amount_fen": 0}]}),
                ),
                Own,
            ),
            at(
                "GET",
                "/v1/discrepancies/{id}",
                "/v1/discrepancies/1".into(),
                None,
                Elsewhere(
                    "tests/tests/billing_api.rs statements_reconciliation_and_tenant_isolation_over_http_r_4_2_r_7_1",
                ),
            ),
            at(
                "GET",
                "/v1/modules/{name}",
                "/v1/modules/jokes".into(),
                None,
                NotFound,
            ),
            at(
                "POST",
                "/v1/modules/{name}/activate",
                "/v1/modules/jokes/activate".into(),
                Some(json!({"version": 1})),
                NotFound,
            ),
            at(
                "POST",
                "/v1/modules/{name}/rollback",
                "/v1/modules/jokes/rollback".into(),
                None,
                NotFound,
            ),
            at(
                "GET",
                "/v1/modules/{name}/faults",
                "/v1/modules/jokes/faults".into(),
                None,
                NotFound,
            ),
            at(
                "POST",
                "/v1/modules/{name}/bulletin",
                "/v1/modules/jokes/bulletin".into(),
                Some(json!({})),
                NotFound,
            ),
            at(
                "GET",
                "/v1/modules/{name}/versions/{version}/admission",
                "/v1/modules/jokes/versions/1/admission".into(),
                None,
                NotFound,
            ),
            at(
                "POST",
                "/v1/modules/{name}/mo",
                "/v1/modules/jokes/mo".into(),
                Some(json!({"text": "笑话", "subscriber": subscriber})),
                NotFound,
            ),
            at(
                "POST",
                "/v1/modules/{name}/subscribe",
                "/v1/modules/jokes/subscribe".into(),
                Some(json!({"subscriber": subscriber})),
                NotFound,
            ),
            at(
                "POST",
                "/v1/modules/{name}/unsubscribe",
                "/v1/modules/jokes/unsubscribe".into(),
                Some(json!({"subscriber": subscriber})),
                NotFound,
            ),
            at(
                "GET",
                "/v1/modules/{name}/shadow",
                "/v1/modules/jokes/shadow".into(),
                None,
                NotFound,
            ),
            at(
                "PUT",
                "/v1/modules/{name}/shadow",
                "/v1/modules/jokes/shadow".into(),
                Some(json!({"version": 1})),
                NotFound,
            ),
            at(
                "DELETE",
                "/v1/modules/{name}/shadow",
                "/v1/modules/jokes/shadow".into(),
                None,
                NotFound,
            ),
            at(
                "PUT",
                "/v1/modules/{name}/canary",
                "/v1/modules/jokes/canary".into(),
                Some(json!({"version": 1, "percent": 10})),
                NotFound,
            ),
            at(
                "DELETE",
                "/v1/modules/{name}/canary",
                "/v1/modules/jokes/canary".into(),
                None,
                NotFound,
            ),
            at(
                "POST",
                "/v1/modules/{name}/canary/promote",
                "/v1/modules/jokes/canary/promote".into(),
                None,
                NotFound,
            ),
            at(
                "GET",
                "/v1/modules/{name}/calls",
                "/v1/modules/jokes/calls".into(),
                None,
                NotFound,
            ),
            at(
                "POST",
                "/v1/calls/{id}/replay",
                format!("/v1/calls/{recorded}/replay"),
                None,
                NotFound,
            ),
        ];

        // The walk covers every id-bearing partner route and method the server
        // documents (the document equals the served routes:
        // `item14_openapi_documents_every_route_with_its_auth_errors`).
        let (status, doc) = server
            .send(server.http.get(server.url("/v1/openapi.json")), None)
            .await;
        assert_eq!(status, StatusCode::OK);
        let mut missing = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            if !path.contains('{') {
                continue;
            }
            let who = ROUTES
                .iter()
                .find(|r| r.0 == path.as_str())
                .unwrap_or_else(|| panic!("{path} is served but not in ROUTES"))
                .2;
            if who != Who::Partner {
                continue;
            }
            for method in item.as_object().unwrap().keys() {
                if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                    continue;
                }
                let method = method.to_uppercase();
                if !attempts
                    .iter()
                    .any(|t| t.route == path.as_str() && t.method == method)
                {
                    missing.push(format!("{method} {path}"));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "id-bearing partner routes without a cross-tenant attempt: {missing:?}"
        );

        // What A sees before B walks: every object B's calls name.
        let snapshot_urls: Vec<String> = [
            format!("/v1/messages/{message}"),
            "/v1/messages".into(),
            s.clone(),
            format!("{s}/schedules"),
            format!("{s}/runs"),
            format!("{s}/audit"),
            format!("{s}/subscriptions"),
            "/v1/services".into(),
            format!("/v1/schedules/{schedule}"),
            format!("/v1/runs/{run}"),
            format!("/v1/webhooks/{webhook}"),
            format!("/v1/webhooks/{webhook}/deliveries"),
            "/v1/webhooks".into(),
            format!("/v1/complaints/{complaint}"),
            "/v1/content/jokes".into(),
            "/v1/modules".into(),
            "/v1/modules/jokes".into(),
            "/v1/modules/jokes/faults".into(),
            "/v1/modules/jokes/shadow".into(),
            "/v1/modules/jokes/calls".into(),
            "/v1/modules/jokes/versions/1/admission".into(),
            format!("/v1/statements/{month}"),
        ]
        .into();
        let snapshot = async || {
            let mut seen = Vec::new();
            for url in &snapshot_urls {
                seen.push((url.clone(), call("GET", url, &a, None).await));
            }
            seen
        };
        let before = snapshot().await;
        // Every object B is refused exists for A.
        for t in attempts
            .iter()
            .filter(|t| t.method == "GET" && t.wall == NotFound)
        {
            let (status, body) = call("GET", &t.url, &a, None).await;
            assert!(
                status == StatusCode::OK || t.url.ends_with("/shadow"),
                "A cannot read its own {}: {status} {body}",
                t.url
            );
        }

        for t in &attempts {
            let (status, body) = call(t.method, &t.url, &b, t.body.as_ref()).await;
            let what = format!("B: {} {} (route {})", t.method, t.url, t.route);
            match t.wall {
                NotFound | Elsewhere(_) => assert_eq!(
                    (status, body["error"]["code"].as_str()),
                    (StatusCode::NOT_FOUND, Some("not-found")),
                    "{what}: {body}"
                ),
                Own => {
                    assert!(!status.is_server_error(), "{what}: {status} {body}");
                    let text = body.to_string();
                    assert!(
                        !text.contains(marker) && !text.contains("acme"),
                        "{what}: {text}"
                    );
                }
            }
        }

        // A's objects are as they were.
        let after = snapshot().await;
        for ((url, was), (_, now)) in before.iter().zip(&after) {
            assert_eq!(was, now, "A's {url} changed while B walked");
        }
        // B's own content is B's; A's collection does not hold it.
        let (_, theirs) = server.get("/v1/content/jokes", &b).await;
        assert_eq!(theirs["items"].as_array().unwrap().len(), 1, "{theirs}");

        // B's dry run of its own module, naming A's subscriber id, sees nothing of
        // A's (its attributes stay A's and unread) and stores nothing.
        let (status, body) = server.upload(&b, guest("horoscope")).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, dry) = server
            .post(
                "/v1/modules/horoscope/mo",
                &b,
                json!({"text": "金牛", "subscriber": subscriber}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{dry}");
        assert!(!dry.to_string().contains("aries"), "{dry}");
        let attributes: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT partner_id, name, value FROM subscriber_attributes WHERE subscriber_id = $1",
        )
        .bind(&subscriber)
        .fetch_all(server.platform.store.pool())
        .await
        .unwrap();
        assert_eq!(attributes.len(), 1, "{attributes:?}");
        assert_eq!(
            (attributes[0].1.as_str(), attributes[0].2.as_str()),
            ("sign", "aries")
        );
        env.stop().await;
    }
}

/// Strings that break naive SQL (and naive text handling): quotes, comments,
/// statement separators, placeholders of every driver, LIKE wildcards,
/// backslashes, a NUL, right-to-left overrides with Arabic and emoji, a long one.
fn hostile_strings() -> Vec<(&'static str, String)> {
    vec![
        ("quote", "O'Brien'); DROP TABLE partners; --".to_string()),
        ("comment", "乐游 -- /* 注释 */ #".to_string()),
        ("semicolon", "a; DELETE FROM messages; SELECT 1".to_string()),
        ("placeholders", "$1 $2 ?1 ? :name @p %s {}".to_string()),
        ("wildcards", "100% _x_ \\' \\\" \\\\ \"q\"".to_string()),
        ("nul", "笑\u{0}话".to_string()),
        (
            "rtl-emoji",
            "مرحبا \u{202E}txet\u{202C} 👨‍👩‍👧 🎉 שלום".to_string(),
        ),
        ("long", "长'\"--;$1".repeat(500)),
    ]
}

/// Whether `value` is `target` or holds it somewhere inside.
fn holds(value: &Value, target: &Value) -> bool {
    value == target
        || match value {
            Value::Array(items) => items.iter().any(|v| holds(v, target)),
            Value::Object(map) => map.values().any(|v| holds(v, target)),
            _ => false,
        }
}

/// SECURITY.md gap 10 (issue 18 item 4), R-7.1: hostile strings round-trip through
/// partner display names, service keywords, content items and MO texts (from a
/// handset, through the SMSC simulator): each is either stored and read back
/// byte-identical, or refused with a precise 4xx naming the field, never a 5xx
/// and never stored altered. Text fields (content items, MO texts) take every one
/// of the SQL-breaking strings as they are. One exception, the same on both
/// stores: a NUL in an MO is kept as U+FFFD (PostgreSQL cannot store a NUL in
/// text; a content item with one is refused). Both stores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item18_hostile_strings_round_trip_byte_identical() {
    use common::env::{Env, free};
    for db in databases().await {
        let env = Env::start(db, |c| c.http.rate_per_key_per_second = 0).await;
        let server = &env.server;
        let a = env.acme.clone();
        let mut seen = Vec::new();
        let refused_precisely = |what: &str, status: StatusCode, body: &Value| {
            assert!(
                status.is_client_error() && status != StatusCode::NOT_FOUND,
                "{what}: {status} {body}"
            );
            // A precise refusal names what is wrong with the value.
            assert!(!error_code(body).is_empty(), "{what}: {body}");
            assert!(
                !body["error"]["message"].as_str().unwrap().is_empty(),
                "{what}: {body}"
            );
        };

        for (i, (label, text)) in hostile_strings().into_iter().enumerate() {
            // Partner display name (the SMS signature).
            let name = format!("p{i}");
            let (status, body) = server
                .post(
                    "/v1/partners",
                    ADMIN_KEY,
                    json!({"name": name, "display_name": text}),
                )
                .await;
            if status == StatusCode::CREATED {
                let (_, list) = server.get("/v1/partners?limit=500", ADMIN_KEY).await;
                let stored = list["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|p| p["name"] == name.as_str())
                    .unwrap_or_else(|| panic!("{label}: created but not listed"));
                assert_eq!(
                    stored["display_name"].as_str(),
                    Some(text.as_str()),
                    "{label}"
                );
                seen.push(format!("display_name {label}: stored"));
            } else {
                refused_precisely(&format!("display_name {label}"), status, &body);
                seen.push(format!("display_name {label}: {}", error_code(&body)));
            }

            // A service keyword.
            let mut terms = free("笑话", &format!("{:02}", 10 + i));
            terms["code"] = json!(format!("H{i}"));
            terms["module"] = json!("jokes");
            terms["keywords"] = json!([text]);
            let (status, body) = server.post("/v1/services", &a, terms).await;
            if status == StatusCode::CREATED {
                let id = body["id"].as_i64().unwrap();
                let (_, service) = server.get(&format!("/v1/services/{id}"), &a).await;
                assert!(
                    holds(&service, &json!([text])),
                    "{label}: keyword not read back identical: {service}"
                );
                seen.push(format!("keyword {label}: stored"));
            } else {
                refused_precisely(&format!("keyword {label}"), status, &body);
                seen.push(format!("keyword {label}: {}", error_code(&body)));
            }

            // A content item.
            let collection = format!("hostile{i}");
            let (status, body) = server
                .post(
                    &format!("/v1/content/{collection}"),
                    &a,
                    json!({"items": [{"text": text}]}),
                )
                .await;
            if status == StatusCode::CREATED {
                let (_, items) = server.get(&format!("/v1/content/{collection}"), &a).await;
                assert_eq!(
                    items["items"][0]["text"].as_str(),
                    Some(text.as_str()),
                    "{label}"
                );
                seen.push(format!("content {label}: stored"));
            } else {
                refused_precisely(&format!("content {label}"), status, &body);
                seen.push(format!("content {label}: {}", error_code(&body)));
                assert!(
                    ![
                        "quote",
                        "comment",
                        "semicolon",
                        "placeholders",
                        "wildcards",
                        "rtl-emoji"
                    ]
                    .contains(&label),
                    "content {label} must be taken as it is: {body}"
                );
            }
        }

        // MO texts, each from its own handset to a live service's number.
        env.approved_service(&a, "XH", "jokes", free("笑话", "02"))
            .await;
        let hostile: Vec<(&str, String)> = hostile_strings()
            .into_iter()
            .map(|(l, t)| {
                (
                    l,
                    if l == "long" {
                        t.chars().take(300).collect()
                    } else {
                        t
                    },
                )
            })
            .collect();
        for (i, (_, text)) in hostile.iter().enumerate() {
            env.mo(&format!("1390000{i:04}"), "1066123402", text);
        }
        for (i, (label, text)) in hostile.iter().enumerate() {
            let source = format!("1390000{i:04}");
            let stored = common::poll_until(std::time::Duration::from_secs(30), async || {
                let row: Option<(String,)> =
                    sqlx::query_as("SELECT text FROM mo_messages WHERE source = $1")
                        .bind(&source)
                        .fetch_optional(server.platform.store.pool())
                        .await
                        .unwrap();
                row.map(|(t,)| t).ok_or(format!("MO {label} not stored"))
            })
            .await;
            // A NUL is kept as U+FFFD on both stores (PostgreSQL cannot keep it).
            let expected = text.replace('\0', "\u{FFFD}");
            assert_eq!(stored, expected, "MO {label}");
            seen.push(format!("mo {label}: stored"));
        }
        eprintln!("hostile strings: {seen:?}");
        env.stop().await;
    }
}
