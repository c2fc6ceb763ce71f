//! Issue 17 items 1, 2 and 6 over the HTTP API, end to end: admission reports and
//! the activation they block, activations the admin approves, dry runs that send
//! and store nothing, and the provenance of every MT.

#![allow(clippy::unwrap_used)]

mod common;

use common::env::{Env, SHORT_CODE, free};
use common::{ADMIN_KEY, Server, databases, error_code, guest};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Digest;
use tongdao::runtime::{BulletinRequest, MoMessage, SubscriptionChange, input_sha256};

/// Item 1: the upload answers the report; a failed version is refused activation
/// with a 422 naming its report; for a partner whose activations need approval an
/// activation is a pending request the admin refuses (with a reason) or approves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_1_admission_blocks_activation_and_the_admin_approves_activations() {
    for db in databases().await {
        let server = Server::start(db).await;
        let acme = server.new_partner("acme").await;

        let (status, body) = server.upload(&acme, guest("sly-words")).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["admission"]["passed"], false, "{body}");
        assert_eq!(body["admission"]["figures"]["violation_permille"], 50);
        assert_eq!(body["activated"], false);
        let (status, refused) = server
            .post(
                "/v1/modules/sly-words/activate",
                &acme,
                json!({"version": 1}),
            )
            .await;
        assert_eq!(
            (status, error_code(&refused)),
            (StatusCode::UNPROCESSABLE_ENTITY, "admission-failed"),
            "{refused}"
        );
        let message = refused["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("/v1/modules/sly-words/versions/1/admission"),
            "{message}"
        );
        let (status, report) = server
            .get("/v1/modules/sly-words/versions/1/admission", &acme)
            .await;
        assert_eq!(status, StatusCode::OK, "{report}");
        assert_eq!(report["policy_hits"][0]["rule"], "prohibited-word");
        assert!(
            report["policy_hits"][0]["text"]
                .as_str()
                .unwrap()
                .contains("赌博")
        );
        let (status, _) = server
            .get("/v1/modules/sly-words/versions/7/admission", &acme)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // The admin requires approval of acme's activations.
        let (status, body) = server
            .put(
                "/v1/partners/acme/activation-approval",
                &acme,
                json!({"required": true}),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        let (status, body) = server
            .put(
                "/v1/partners/acme/activation-approval",
                ADMIN_KEY,
                json!({"required": true}),
            )
            .await;
        assert_eq!((status, &body["required"]), (StatusCode::OK, &json!(true)));

        // A first version that passes now waits for the admin instead of going live.
        let (status, body) = server.upload(&acme, guest("horoscope")).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["admission"]["passed"], true, "{body}");
        assert_eq!(body["activated"], false);
        assert_eq!(body["activation_request"]["status"], "pending");
        let first = body["activation_request"]["id"].as_i64().unwrap();
        let (_, module) = server.get("/v1/modules/horoscope", &acme).await;
        assert_eq!(module["active_version"], Value::Null);
        assert_eq!(module["pending_activation"]["id"], first);
        assert_eq!(module["versions"][0]["admission_passed"], true);
        let (status, body) = server
            .post("/v1/modules/horoscope/mo", &acme, json!({"text": "白羊"}))
            .await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::CONFLICT, "no-active-version"),
            "{body}"
        );
        // A version waiting for approval can be tried in a dry run by number.
        let (status, body) = server
            .post(
                "/v1/modules/horoscope/mo?version=1",
                &acme,
                json!({"text": "白羊"}),
            )
            .await;
        assert_eq!(
            (status, &body["version"]),
            (StatusCode::OK, &json!(1)),
            "{body}"
        );
        let (status, body) = server
            .post(
                "/v1/modules/horoscope/activate",
                &acme,
                json!({"version": 1}),
            )
            .await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::CONFLICT, "activation-pending")
        );

        // The admin's queue; a partner may not read it.
        let (status, _) = server.get("/v1/admin/activations", &acme).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, queue) = server
            .get("/v1/admin/activations?status=pending", ADMIN_KEY)
            .await;
        assert_eq!(status, StatusCode::OK, "{queue}");
        let items = queue["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{queue}");
        assert_eq!(
            (
                &items[0]["partner"],
                &items[0]["module"],
                &items[0]["version"]
            ),
            (&json!("acme"), &json!("horoscope"), &json!(1))
        );

        // Refusing needs a reason; a refused request changes nothing.
        let refuse = format!("/v1/admin/activations/{first}/refuse");
        let (status, body) = server.post(&refuse, ADMIN_KEY, json!({})).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::BAD_REQUEST, "reason-required")
        );
        let (status, body) = server
            .post(
                &refuse,
                ADMIN_KEY,
                json!({"reason": "test the texts first"}),
            )
            .await;
        assert_eq!(
            (status, &body["status"]),
            (StatusCode::OK, &json!("refused"))
        );
        assert_eq!(body["reason"], "test the texts first");
        let (_, module) = server.get("/v1/modules/horoscope", &acme).await;
        assert_eq!(module["active_version"], Value::Null);
        assert_eq!(module["pending_activation"], Value::Null);

        // Asked again and approved: the version is live.
        let (status, body) = server
            .post(
                "/v1/modules/horoscope/activate",
                &acme,
                json!({"version": 1}),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        let second = body["id"].as_i64().unwrap();
        let approve = format!("/v1/admin/activations/{second}/approve");
        let (status, body) = server.post(&approve, ADMIN_KEY, json!({})).await;
        assert_eq!(
            (status, &body["status"]),
            (StatusCode::OK, &json!("approved")),
            "{body}"
        );
        let (status, body) = server.post(&approve, ADMIN_KEY, json!({})).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::CONFLICT, "already-decided")
        );
        let (_, module) = server.get("/v1/modules/horoscope", &acme).await;
        assert_eq!(module["active_version"], 1);
        let (status, body) = server
            .post("/v1/modules/horoscope/bulletin", &acme, json!({}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");

        // Approval off again: an activation is immediate.
        server
            .put(
                "/v1/partners/acme/activation-approval",
                ADMIN_KEY,
                json!({"required": false}),
            )
            .await;
        let v2 = tongdao_test_programs::byte_different_copy(&guest("horoscope"), 2, 16);
        let (status, body) = server.upload(&acme, v2).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, body) = server
            .post(
                "/v1/modules/horoscope/activate",
                &acme,
                json!({"version": 2}),
            )
            .await;
        assert_eq!(
            (status, &body["active_version"]),
            (StatusCode::OK, &json!(2)),
            "{body}"
        );
        server.stop().await;
    }
}

/// Rows in `table` now.
async fn rows(env: &Env, table: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(env.server.platform.store.pool())
        .await
        .unwrap();
    n
}

const DURABLE: [&str; 7] = [
    "messages",
    "mo_messages",
    "kv_entries",
    "subscriber_attributes",
    "charge_events",
    "module_faults",
    "violations",
];

/// Item 2: dry runs of `on-mo`, `on-subscribe` and `on-unsubscribe`, of the live or
/// a named version, answer the reply and the host calls made, and send, store and
/// charge nothing: no MT, no key-value or attribute write, no fault, the
/// simulator's handsets receive nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_2_dry_runs_send_and_store_nothing() {
    for db in databases().await {
        let env = Env::start(db, |_| {}).await;
        env.approved_service(&env.acme, "DT", "quiz", free("答题", "02"))
            .await;
        let mut before = Vec::new();
        for table in DURABLE {
            before.push(rows(&env, table).await);
        }
        let server = &env.server;

        // The quiz keeps scores in the key-value store: its writes are shown, not made.
        let (status, body) = server
            .post("/v1/modules/quiz/mo", &env.acme, json!({"text": "A"}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["version"], 1);
        assert_eq!(body["sent"], false);
        assert!(body["reply"].as_str().is_some(), "{body}");
        let calls = body["host_calls"].as_array().unwrap();
        assert!(
            calls.iter().any(|c| c["interface"] == "kv"
                && matches!(c["op"].as_str(), Some("set" | "incr"))
                && c["outcome"].as_str().unwrap().contains("not stored")),
            "{body}"
        );
        assert_eq!(body["input_sha256"].as_str().unwrap().len(), 64, "{body}");

        // The horoscope sets the sign as an attribute: shown, not stored; the
        // attributes given are what the module reads.
        let (status, body) = server
            .post(
                "/v1/modules/horoscope/mo",
                &env.acme,
                json!({"text": "白羊"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body["reply"].as_str().unwrap().contains("白羊"), "{body}");
        assert!(
            body["host_calls"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["op"] == "set-attribute" && c["target"] == "dry-run.sign"),
            "{body}"
        );
        let (status, body) = server
            .post("/v1/modules/quiz/subscribe", &env.acme, json!({}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body["reply"].as_str().unwrap().contains("欢迎"), "{body}");
        let (status, body) = server
            .post("/v1/modules/quiz/unsubscribe", &env.acme, json!({}))
            .await;
        assert_eq!(
            (status, &body["export"]),
            (StatusCode::OK, &json!("on-unsubscribe")),
            "{body}"
        );

        // A named version that is not live.
        let v2 = tongdao_test_programs::byte_different_copy(&guest("quiz"), 2, 16);
        let (status, body) = server.upload(&env.acme, v2).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, body) = server
            .post(
                "/v1/modules/quiz/mo?version=2",
                &env.acme,
                json!({"text": "TOP"}),
            )
            .await;
        assert_eq!(
            (status, &body["version"]),
            (StatusCode::OK, &json!(2)),
            "{body}"
        );
        let (status, _) = server
            .post(
                "/v1/modules/quiz/mo?version=9",
                &env.acme,
                json!({"text": "A"}),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // Bad input is refused before any module runs.
        for (path, body, code) in [
            ("/v1/modules/quiz/mo", json!({}), "invalid-text"),
            (
                "/v1/modules/quiz/subscribe",
                json!({"text": "A"}),
                "invalid-text",
            ),
            (
                "/v1/modules/quiz/mo",
                json!({"text": "A", "attributes": {"Bad Name": "x"}}),
                "invalid-attribute",
            ),
            (
                "/v1/modules/quiz/mo",
                json!({"text": "A", "service": "ZZ"}),
                "invalid-service",
            ),
        ] {
            let (status, answer) = server.post(path, &env.acme, body).await;
            assert_eq!(
                (status, error_code(&answer)),
                (StatusCode::BAD_REQUEST, code),
                "{path}: {answer}"
            );
        }

        // Nothing durable was written, nothing reached a handset.
        for (table, n) in DURABLE.iter().zip(before) {
            assert_eq!(rows(&env, table).await, n, "{table}");
        }
        assert!(env.sim.messages().is_empty(), "{:?}", env.sim.messages());
        env.stop().await;
    }
}

/// `GET /v1/messages/{id}` as JSON.
async fn message(env: &Env, id: i64) -> Value {
    let (status, body) = env
        .server
        .get(&format!("/v1/messages/{id}"), &env.acme)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// The id of the MT to `user` matching `filter`, once queued.
async fn mt_where(env: &Env, user: &str, basis: &str) -> i64 {
    common::poll_until(std::time::Duration::from_secs(20), async || {
        let row: Option<(i64,)> = sqlx::query_as(
            "SELECT id FROM messages WHERE recipient = $1 AND basis = $2 ORDER BY id DESC LIMIT 1",
        )
        .bind(user)
        .bind(basis)
        .fetch_optional(env.server.platform.store.pool())
        .await
        .unwrap();
        row.map(|(id,)| id)
            .ok_or(format!("no {basis} MT to {user} yet"))
    })
    .await
}

/// Item 6: one MT from a push and one from an MO reply (and the welcome) lead
/// back to the exact version digest (the SHA-256 of the uploaded bytes) and the
/// hash of the call's inputs, recomputed here from the stored MO and run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_6_every_mt_leads_to_the_code_and_the_input_that_wrote_it() {
    for db in databases().await {
        let env = Env::start(db, |_| {}).await;
        let xz = env
            .approved_service(&env.acme, "XZ", "horoscope", free("星座", "01"))
            .await;
        let number = format!("{SHORT_CODE}01");
        let user = "13800000061";
        let digest = hex::encode(sha2::Sha256::digest(guest("horoscope")));
        let store = env.server.platform.store.clone();

        // Subscribe (the welcome answers this MO), then an MO the module answers.
        env.mo(user, &number, "星座");
        let subscribe_mo = env.wait_mo(user, "星座").await;
        env.mo(user, &number, "白羊");
        let reply_mo = env.wait_mo(user, "白羊").await;
        let (subscriber,): (String,) = sqlx::query_as(
            "SELECT subscriber_id FROM subscriptions WHERE service_id = $1 AND msisdn = $2",
        )
        .bind(xz)
        .bind(user)
        .fetch_one(store.pool())
        .await
        .unwrap();

        let reply_id = mt_where(&env, user, "reply").await;
        let (received_at,): (i64,) =
            sqlx::query_as("SELECT received_at FROM mo_messages WHERE id = $1")
                .bind(reply_mo)
                .fetch_one(store.pool())
                .await
                .unwrap();
        // The newest reply answers `白羊`; the welcome answered `星座`.
        let reply = message(&env, reply_id).await;
        let p = &reply["provenance"];
        assert_eq!(p["module"], "horoscope", "{reply}");
        assert_eq!(p["module_version"], 1);
        assert_eq!(p["module_sha256"], digest.as_str());
        assert_eq!(p["mo_id"], reply_mo);
        assert_eq!(p["push_run_id"], Value::Null);
        let expected = input_sha256(
            "on-mo",
            &MoMessage {
                subscriber: subscriber.clone(),
                service: "XZ".into(),
                text: "白羊".into(),
                received_at_ms: received_at,
            },
        );
        assert_eq!(p["input_sha256"], expected.as_str(), "{reply}");

        let (welcome_id,): (i64,) = sqlx::query_as(
            "SELECT id FROM messages WHERE recipient = $1 AND mo_id = $2 AND module_version_id IS NOT NULL",
        )
        .bind(user)
        .bind(subscribe_mo)
        .fetch_one(store.pool())
        .await
        .unwrap();
        let welcome = message(&env, welcome_id).await;
        let expected = input_sha256(
            "on-subscribe",
            &SubscriptionChange {
                subscriber: subscriber.clone(),
                service: "XZ".into(),
                joined: true,
            },
        );
        assert_eq!(welcome["provenance"]["input_sha256"], expected.as_str());
        assert_eq!(welcome["provenance"]["module_sha256"], digest.as_str());

        // A push: the MT names its run, and the run's bulletin call's inputs.
        let (status, run) = env
            .server
            .post(&format!("/v1/services/{xz}/push"), &env.acme, json!({}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{run}");
        let run_id = run["id"].as_i64().unwrap();
        env.wait_run_final(run_id).await;
        let push_id = mt_where(&env, user, "subscription").await;
        let (push_date,): (String,) =
            sqlx::query_as("SELECT push_date FROM push_runs WHERE id = $1")
                .bind(run_id)
                .fetch_one(store.pool())
                .await
                .unwrap();
        let pushed = message(&env, push_id).await;
        let p = &pushed["provenance"];
        assert_eq!(p["push_run_id"], run_id, "{pushed}");
        assert_eq!(p["module_sha256"], digest.as_str());
        assert_eq!(p["module_version"], 1);
        let expected = input_sha256(
            "bulletin",
            &BulletinRequest {
                service: "XZ".into(),
                push_id: format!("run-{run_id}"),
                date: push_date,
            },
        );
        assert_eq!(p["input_sha256"], expected.as_str(), "{pushed}");
        // The pushed text is the variant for the sign the reply set.
        assert!(
            pushed["text"].as_str().unwrap().contains("白羊座"),
            "{pushed}"
        );
        env.stop().await;
    }
}
