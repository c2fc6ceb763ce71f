//! The HTTP API over a real socket: auth, partner keys, module routes, tenant
//! isolation, JSON errors, body limits, on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used)]

mod common;

use common::{ADMIN_KEY, Server, databases, error_code, guest};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partners_modules_and_isolation() {
    for db in databases().await {
        let server = Server::start(db.clone()).await;
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
            (status, body["modules"].as_array().unwrap().len()),
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
            (status, body["modules"][0]["name"].as_str()),
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
        assert_eq!(body["faults"][0]["kind"], "cpu-limit");
        assert_eq!(body["faults"][0]["version"], 1);
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
            config.operators = vec![tongdao::config::OperatorConfig {
                name: "mobile".into(),
                address,
                system_id: "td".into(),
                password: "pw".into(),
                system_type: String::new(),
                binds: 1,
                window: 10,
                tps: 0,
                prefixes: vec!["13".into()],
                source_addr: "10661234".into(),
                concat: tongdao::config::ConcatMode::Udh,
                ..Default::default()
            }];
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
        assert_eq!(body["messages"].as_array().unwrap().len(), 0);
        let (status, body) = server
            .get("/v1/messages?status=delivered&limit=30", ADMIN_KEY)
            .await;
        assert_eq!(status, StatusCode::OK, "numbers in the query parse: {body}");
        assert_eq!(body["messages"][0]["id"], id);
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
