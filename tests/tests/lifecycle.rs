//! Issue 17 over the HTTP API, end to end: admission reports and the activation
//! they block, activations the admin approves, dry runs that send and store
//! nothing, shadow runs that are diffed and never sent, a canary that reaches
//! exactly its cohort, the automatic rollback of a version that breaks the content
//! policy, and the provenance of every MT.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

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

/// How long a test waits for the platform to reach a state.
const WAIT: Duration = Duration::from_secs(30);

/// The id of module version `number` of `module` (partner `acme`).
async fn version_id(env: &Env, module: &str, number: i64) -> i64 {
    let (id,): (i64,) = sqlx::query_as(
        "SELECT v.id FROM module_versions v JOIN modules m ON m.id = v.module_id
         WHERE m.name = $1 AND v.seq = $2",
    )
    .bind(module)
    .bind(number)
    .fetch_one(env.server.platform.store.pool())
    .await
    .unwrap();
    id
}

/// Item 3: a shadow candidate runs beside the active version on real MOs and
/// pushes; its output is recorded and diffed against the active output, its policy
/// hits shown, and nothing it writes is sent, stored as an MT, charged or counted
/// as a violation. The routes are walled per partner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_3_a_shadow_run_produces_a_diff_and_sends_nothing() {
    for db in databases().await {
        let env = Env::start(db, |_| {}).await;
        let server = &env.server;
        // Version 1 of `sly-words` answers digits cleanly and goes live; version 2
        // writes a prohibited word for them (it fails admission: only a shadow).
        let (status, body) = server.upload(&env.acme, guest("sly-words-clean")).await;
        assert_eq!(
            (status, &body["activated"]),
            (StatusCode::CREATED, &json!(true)),
            "{body}"
        );
        let (status, body) = server.upload(&env.acme, guest("sly-words")).await;
        assert_eq!((status, &body["version"]), (StatusCode::CREATED, &json!(2)));
        assert_eq!(body["admission"]["passed"], false, "{body}");
        let service = env
            .approved_service(&env.acme, "SW", "sly-words", free("幸运", "05"))
            .await;

        // Refusals first, each precise; another partner's module is not found.
        let shadow = "/v1/modules/sly-words/shadow";
        for (version, status, code) in [
            (1, StatusCode::CONFLICT, "already-active"),
            (9, StatusCode::NOT_FOUND, "not-found"),
        ] {
            let (got, body) = server
                .put(shadow, &env.acme, json!({ "version": version }))
                .await;
            assert_eq!((got, error_code(&body)), (status, code), "{body}");
        }
        let (status, body) = server.delete(shadow, &env.acme).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::CONFLICT, "no-shadow")
        );
        let rival = server.new_partner("rival").await;
        let (status, _) = server.put(shadow, &rival, json!({"version": 2})).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = server.get(shadow, &rival).await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        let (status, body) = server.put(shadow, &env.acme, json!({"version": 2})).await;
        assert_eq!(
            (status, &body["shadow_version"], &body["active_version"]),
            (StatusCode::OK, &json!(2), &json!(1)),
            "{body}"
        );
        let candidate = version_id(&env, "sly-words", 2).await;

        // A user subscribes (the welcome is shadowed too) and texts digits.
        let user = "13800000071";
        let number = format!("{SHORT_CODE}05");
        env.mo(user, &number, "幸运");
        env.wait_mo(user, "幸运").await;
        env.mo(user, &number, "8888");
        let mo = env.wait_mo(user, "8888").await;
        let diffs = common::poll_until(WAIT, async || {
            let (_, page) = server
                .get(&format!("{shadow}?differing=true"), &env.acme)
                .await;
            let items = page["items"].as_array().cloned().unwrap_or_default();
            if items.iter().any(|r| r["export"] == "on-mo") {
                Ok(page)
            } else {
                Err(format!("no differing on-mo shadow run yet: {page}"))
            }
        })
        .await;
        assert_eq!(diffs["shadow_version"], 2, "{diffs}");
        let run = diffs["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["export"] == "on-mo")
            .unwrap()
            .clone();
        assert_eq!(
            (&run["active_version"], &run["candidate_version"]),
            (&json!(1), &json!(2))
        );
        assert_eq!(run["same"], false);
        assert_eq!(run["input"]["text"], "8888", "{run}");
        let diff = run["diff"].as_array().unwrap();
        assert_eq!(diff.len(), 1, "{run}");
        assert_eq!(diff[0]["key"], "reply");
        assert_eq!(diff[0]["active"], "幸运号码 8888，祝您好运。");
        assert_eq!(diff[0]["candidate"], "幸运号码 8888 来赌博赢大奖");
        assert_eq!(run["policy_hits"][0]["rule"], "prohibited-word", "{run}");
        assert_eq!(run["active_output"]["ok"], "幸运号码 8888，祝您好运。");

        // The run's inputs are those the live reply records (provenance).
        let reply = common::poll_until(WAIT, async || {
            let got: Vec<String> = env
                .inbox(user)
                .into_iter()
                .filter(|t| t.contains("8888"))
                .collect();
            if got.is_empty() {
                Err(format!("no reply to 8888 yet: {:?}", env.inbox(user)))
            } else {
                Ok(got)
            }
        })
        .await;
        assert_eq!(reply.len(), 1, "{reply:?}");
        assert!(reply[0].contains("祝您好运"), "{reply:?}");
        let (reply_id, input): (i64, String) = sqlx::query_as(
            "SELECT id, input_sha256 FROM messages WHERE mo_id = $1 AND module_version_id IS NOT NULL",
        )
        .bind(mo)
        .fetch_one(server.platform.store.pool())
        .await
        .unwrap();
        assert_eq!(run["input_sha256"], input.as_str(), "MT {reply_id}");

        // A push: the candidate writes the same bulletin, recorded as the same.
        let (status, pushed) = server
            .post(
                &format!("/v1/services/{service}/push"),
                &env.acme,
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{pushed}");
        env.wait_run_final(pushed["id"].as_i64().unwrap()).await;
        let page = common::poll_until(WAIT, async || {
            let (_, page) = server.get(shadow, &env.acme).await;
            let items = page["items"].as_array().cloned().unwrap_or_default();
            if items.iter().any(|r| r["export"] == "bulletin") {
                Ok(page)
            } else {
                Err(format!("no bulletin shadow run yet: {page}"))
            }
        })
        .await;
        let bulletin = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["export"] == "bulletin")
            .unwrap()
            .clone();
        assert_eq!(
            (&bulletin["same"], &bulletin["diff"]),
            (&json!(true), &json!([]))
        );
        assert!(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["export"] == "on-subscribe" && r["same"] == true),
            "{page}"
        );

        // Nothing of the candidate left: no MT, no violation names it, and the
        // handset never saw its text.
        env.wait_outbox_settled(user).await;
        let store = server.platform.store.pool();
        for table in ["messages", "violations"] {
            let (n,): (i64,) = sqlx::query_as(&format!(
                "SELECT COUNT(*) FROM {table} WHERE module_version_id = $1"
            ))
            .bind(candidate)
            .fetch_one(store)
            .await
            .unwrap();
            assert_eq!(n, 0, "{table}");
        }
        assert!(
            env.inbox(user).iter().all(|t| !t.contains("赌博")),
            "{:?}",
            env.inbox(user)
        );

        // Stopped: the runs recorded stay readable.
        let (status, body) = server.delete(shadow, &env.acme).await;
        assert_eq!(
            (status, &body["shadow_version"]),
            (StatusCode::OK, &Value::Null)
        );
        let (_, page) = server.get(&format!("{shadow}?limit=1"), &env.acme).await;
        assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
        assert!(page["next"].is_string(), "{page}");
        env.stop().await;
    }
}

/// The cohort rule, written here from its documentation: subscription `id` is in
/// a canary of `percent` percent when `((id × 2654435761) mod 2³²) × 100 div 2³²`
/// is below it.
fn in_cohort(id: i64, percent: u64) -> bool {
    let hashed = (u64::try_from(id).unwrap() * 2_654_435_761) % (1 << 32);
    hashed * 100 / (1 << 32) < percent
}

/// Item 4: a canary at 10 % of a real push reaches exactly its cohort: every MT's
/// provenance names the canary's digest exactly when its subscription is in the
/// cohort computed here; a user's MO is answered by the version of its cohort;
/// promotion makes the canary the active version; precise refusals, tenant walls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_4_a_canary_at_10_percent_reaches_exactly_its_cohort() {
    for db in databases().await {
        let env = Env::start(db, |_| {}).await;
        let server = &env.server;
        let store = server.platform.store.clone();
        let xz = env
            .approved_service(&env.acme, "XZ", "horoscope", free("星座", "01"))
            .await;
        let v2 = tongdao_test_programs::byte_different_copy(&guest("horoscope"), 2, 16);
        let digest_1 = hex::encode(sha2::Sha256::digest(guest("horoscope")));
        let digest_2 = hex::encode(sha2::Sha256::digest(&v2));
        let (status, body) = server.upload(&env.acme, v2).await;
        assert_eq!((status, &body["version"]), (StatusCode::CREATED, &json!(2)));
        let (partner_id,): (i64,) = sqlx::query_as("SELECT id FROM partners WHERE name = 'acme'")
            .fetch_one(store.pool())
            .await
            .unwrap();
        tongdao::subscriptions::bulk::seed(
            &store,
            &tongdao::subscriptions::bulk::Cohort {
                partner_id,
                service_id: xz,
                first: 13_900_000_000,
                n: 300,
                id_prefix: "canary-",
                fee_type: tongdao::services::FeeType::Free,
                price_fen: 0,
                source: "test",
                activated_at: tongdao::store::now_ms(),
                signs: true,
            },
        )
        .await
        .unwrap();

        let canary = "/v1/modules/horoscope/canary";
        for (body, status, code) in [
            (
                json!({"version": 2, "percent": 0}),
                StatusCode::BAD_REQUEST,
                "invalid-percent",
            ),
            (
                json!({"version": 2, "percent": 100}),
                StatusCode::BAD_REQUEST,
                "invalid-percent",
            ),
            (
                json!({"version": 1, "percent": 10}),
                StatusCode::CONFLICT,
                "already-active",
            ),
            (
                json!({"version": 7, "percent": 10}),
                StatusCode::NOT_FOUND,
                "not-found",
            ),
        ] {
            let (got, answer) = server.put(canary, &env.acme, body.clone()).await;
            assert_eq!(
                (got, error_code(&answer)),
                (status, code),
                "{body}: {answer}"
            );
        }
        let rival = server.new_partner("rival").await;
        let (status, _) = server
            .put(canary, &rival, json!({"version": 2, "percent": 10}))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, body) = server
            .put(canary, &env.acme, json!({"version": 2, "percent": 10}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            (&body["canary"]["version"], &body["canary"]["percent"]),
            (&json!(2), &json!(10))
        );

        // A push to the 300 subscribers.
        let (status, run) = server
            .post(&format!("/v1/services/{xz}/push"), &env.acme, json!({}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{run}");
        let run_id = run["id"].as_i64().unwrap();
        let run = env.wait_run_final(run_id).await;
        assert_eq!(run["queued"], 300, "{run}");
        assert_eq!(run["canary_percent"], 10, "{run}");
        let mts: Vec<(i64, i64, String, i64)> = sqlx::query_as(
            "SELECT id, subscription_id, module_sha256, module_version_id FROM messages
             WHERE push_run_id = $1 ORDER BY subscription_id",
        )
        .bind(run_id)
        .fetch_all(store.pool())
        .await
        .unwrap();
        assert_eq!(mts.len(), 300);
        let v1_id = version_id(&env, "horoscope", 1).await;
        let v2_id = version_id(&env, "horoscope", 2).await;
        let mut cohort = 0;
        for (id, subscription, sha, version) in &mts {
            let expected = if in_cohort(*subscription, 10) {
                cohort += 1;
                (digest_2.as_str(), v2_id)
            } else {
                (digest_1.as_str(), v1_id)
            };
            assert_eq!(
                (sha.as_str(), *version),
                expected,
                "MT {id} to subscription {subscription}"
            );
        }
        assert!((20..=40).contains(&cohort), "{cohort} of 300 in the cohort");
        eprintln!("canary at 10 %: {cohort} of 300 MTs written by the canary, each in its cohort");
        // The API shows it per message too.
        let (in_id, in_sub) = mts
            .iter()
            .find(|m| in_cohort(m.1, 10))
            .map(|m| (m.0, m.1))
            .unwrap();
        let (_, shown) = server
            .get(&format!("/v1/messages/{in_id}"), &env.acme)
            .await;
        assert_eq!(shown["provenance"]["module_version"], 2, "{shown}");
        assert_eq!(shown["provenance"]["module_sha256"], digest_2.as_str());

        // An MO of a subscriber in the cohort is answered by the canary, one
        // outside it by the active version.
        let out_sub = mts.iter().find(|m| !in_cohort(m.1, 10)).unwrap().1;
        let number = format!("{SHORT_CODE}01");
        for (subscription, version) in [(in_sub, v2_id), (out_sub, v1_id)] {
            let (msisdn,): (String,) =
                sqlx::query_as("SELECT msisdn FROM subscriptions WHERE id = $1")
                    .bind(subscription)
                    .fetch_one(store.pool())
                    .await
                    .unwrap();
            env.mo(&msisdn, &number, "白羊");
            let mo = env.wait_mo(&msisdn, "白羊").await;
            let (replied,): (i64,) = common::poll_until(WAIT, async || {
                sqlx::query_as::<_, (i64,)>(
                    "SELECT module_version_id FROM messages WHERE mo_id = $1 AND module_version_id IS NOT NULL",
                )
                .bind(mo)
                .fetch_optional(store.pool())
                .await
                .unwrap()
                .ok_or(format!("no reply to MO {mo} yet"))
            })
            .await;
            assert_eq!(replied, version, "subscription {subscription}");
        }

        // Promoted: version 2 is live for everyone and the canary is over.
        let (status, body) = server
            .post(&format!("{canary}/promote"), &env.acme, json!({}))
            .await;
        assert_eq!(
            (status, &body["active_version"], &body["canary"]),
            (StatusCode::OK, &json!(2), &Value::Null),
            "{body}"
        );
        let (status, body) = server.delete(canary, &env.acme).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::CONFLICT, "no-canary")
        );
        // A canary rolled back by the partner: everyone keeps the active version.
        let (status, _) = server
            .put(canary, &env.acme, json!({"version": 1, "percent": 50}))
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = server.delete(canary, &env.acme).await;
        assert_eq!(
            (status, &body["canary"], &body["active_version"]),
            (StatusCode::OK, &Value::Null, &json!(2)),
            "{body}"
        );
        env.stop().await;
    }
}

/// Item 5: a live version whose policy-violation rate crosses the configured
/// threshold (with its minimum sample) is rolled back to the last good version by
/// the platform, and the partner's event inbox has the evidence: the rule, the
/// rate and its threshold, the counts and the window. The same version run again
/// as a canary is ended the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_5_a_version_crossing_the_violation_rate_is_rolled_back_with_evidence() {
    for db in databases().await {
        let env = Env::start(db, |config| {
            // `sly-words` fails admission: reported only, so it can go live here.
            config.modules.admission = tongdao::modules::AdmissionMode::Report;
            config.modules.rollback_interval_ms = 50;
            config.modules.rollback_min_calls = 8;
            config.modules.rollback_max_violation_permille = 100;
        })
        .await;
        let server = &env.server;
        let (status, body) = server.upload(&env.acme, guest("sly-words-clean")).await;
        assert_eq!(
            (status, &body["activated"]),
            (StatusCode::CREATED, &json!(true))
        );
        let (status, _) = server.upload(&env.acme, guest("sly-words")).await;
        assert_eq!(status, StatusCode::CREATED);
        env.approved_service(&env.acme, "SW", "sly-words", free("幸运", "05"))
            .await;
        let (status, body) = server
            .post(
                "/v1/modules/sly-words/activate",
                &env.acme,
                json!({"version": 2}),
            )
            .await;
        assert_eq!(
            (status, &body["active_version"]),
            (StatusCode::OK, &json!(2))
        );

        // Users text: half of the answers would carry a prohibited word.
        let number = format!("{SHORT_CODE}05");
        let users: Vec<String> = (0..4).map(|i| format!("1380000008{i}")).collect();
        for user in &users {
            env.mo(user, &number, "幸运");
        }
        for user in &users {
            env.wait_mo(user, "幸运").await;
        }
        for user in &users {
            env.mo(user, &number, "7777");
            env.mo(user, &number, "你好");
        }
        let module = common::poll_until(WAIT, async || {
            let (_, module) = server.get("/v1/modules/sly-words", &env.acme).await;
            if module["active_version"] == 1 {
                Ok(module)
            } else {
                let v2 = version_id(&env, "sly-words", 2).await;
                let figures = server.platform.registry.figures(v2, 0).await.unwrap();
                Err(format!("not rolled back yet: {figures:?}"))
            }
        })
        .await;
        assert_eq!(module["canary"], Value::Null);

        // The evidence in the inbox.
        let (status, events) = server
            .get("/v1/events?kinds=module.rollback", &env.acme)
            .await;
        assert_eq!(status, StatusCode::OK, "{events}");
        let items = events["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{events}");
        let e = &items[0]["data"];
        assert_eq!(
            (
                &e["module"],
                &e["phase"],
                &e["rule"],
                &e["from_version"],
                &e["to_version"]
            ),
            (
                &json!("sly-words"),
                &json!("active"),
                &json!("violation-rate"),
                &json!(2),
                &json!(1)
            ),
            "{e}"
        );
        assert_eq!(e["threshold_permille"], 100);
        assert_eq!(e["min_calls"], 8);
        let figures = &e["figures"];
        let calls = figures["calls"].as_i64().unwrap();
        let violations = figures["violations"].as_i64().unwrap();
        assert!(calls >= 8, "{e}");
        assert!(violations >= 1, "{e}");
        assert_eq!(
            figures["violation_permille"],
            violations * 1000 / calls,
            "{e}"
        );
        assert!(figures["violation_permille"].as_i64().unwrap() > 100, "{e}");
        eprintln!(
            "rolled back: {violations} refused of {calls} calls ({} ‰ > 100 ‰) in {} s of traffic",
            figures["violation_permille"], e["window"]["secs"]
        );
        assert!(
            e["window"]["from"].is_string() && e["window"]["to"].is_string(),
            "{e}"
        );
        // The violations counted are the gate's records of the refused replies.
        let (recorded,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM violations WHERE module_version_id = $1 AND kind = 'policy'",
        )
        .bind(version_id(&env, "sly-words", 2).await)
        .fetch_one(server.platform.store.pool())
        .await
        .unwrap();
        assert!(
            recorded >= violations,
            "{recorded} recorded, {violations} counted"
        );
        let (actor,): (String,) =
            sqlx::query_as("SELECT actor FROM module_activations ORDER BY id DESC LIMIT 1")
                .fetch_one(server.platform.store.pool())
                .await
                .unwrap();
        assert_eq!(actor, "platform (automatic rollback)");
        // Another partner's inbox has nothing of it.
        let rival = server.new_partner("rival").await;
        let (_, theirs) = server.get("/v1/events?kinds=module.rollback", &rival).await;
        assert_eq!(theirs["items"], json!([]), "{theirs}");

        // The same version as a canary for 99 % of the subscribers: its cohort's
        // refused replies end the canary the same way; version 1 stays live.
        let (status, body) = server
            .put(
                "/v1/modules/sly-words/canary",
                &env.acme,
                json!({"version": 2, "percent": 99}),
            )
            .await;
        assert_eq!(
            (status, &body["canary"]["version"]),
            (StatusCode::OK, &json!(2)),
            "{body}"
        );
        for user in &users {
            env.mo(user, &number, "6666");
            env.mo(user, &number, "5555");
        }
        let events = common::poll_until(WAIT, async || {
            let (_, events) = server
                .get("/v1/events?kinds=module.rollback", &env.acme)
                .await;
            if events["items"].as_array().map_or(0, Vec::len) == 2 {
                Ok(events)
            } else {
                Err(format!("the canary is not rolled back yet: {events}"))
            }
        })
        .await;
        let e = &events["items"][1]["data"];
        assert_eq!(
            (
                &e["phase"],
                &e["rule"],
                &e["from_version"],
                &e["to_version"]
            ),
            (
                &json!("canary"),
                &json!("violation-rate"),
                &json!(2),
                &json!(1)
            ),
            "{e}"
        );
        let (_, module) = server.get("/v1/modules/sly-words", &env.acme).await;
        assert_eq!(
            (&module["canary"], &module["active_version"]),
            (&Value::Null, &json!(1)),
            "{module}"
        );

        // No handset ever got the prohibited word: the gate refused each.
        for user in &users {
            assert!(env.inbox(user).iter().all(|t| !t.contains("赌博")));
        }
        env.stop().await;
    }
}
