//! Issue 10 items 3, 4, 5, 6, 8 and 10, end to end: the real platform over HTTP,
//! the real SMSC simulator over SMPP on loopback, real modules, SQLite and
//! PostgreSQL. Consent cannot be turned into a loudspeaker, the platform's own
//! instructions work as typed, the host checks its own inputs, the contract's
//! promises hold, invisible characters never reach a phone, and approval refuses
//! keywords nobody could use.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::env::{Env, SHORT_CODE, free, per_message};
use common::{ADMIN_KEY, Server, databases, error_code, guest};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Messages the outbox holds for `recipient`: (text, charge plan, price, basis), by id.
async fn outbox(env: &Env, recipient: &str) -> Vec<(String, String, i64, String)> {
    sqlx::query_as(
        "SELECT text, charge_plan, price_fen, basis FROM messages WHERE recipient = $1 ORDER BY id",
    )
    .bind(recipient)
    .fetch_all(env.server.platform.store.pool())
    .await
    .unwrap()
}

/// Wait until nothing for `recipient` is waiting in the outbox, then return what
/// reached the phone: a count that could still grow is never asserted.
async fn settled_inbox(env: &Env, recipient: &str) -> Vec<String> {
    common::poll_until(Duration::from_secs(20), async || {
        env.wait_routed().await;
        let (open,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM messages WHERE recipient = $1 AND status NOT IN ('delivered', 'failed', 'expired', 'cancelled')",
        )
        .bind(recipient)
        .fetch_one(env.server.platform.store.pool())
        .await
        .unwrap();
        let (queued,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM messages WHERE recipient = $1")
                .bind(recipient)
                .fetch_one(env.server.platform.store.pool())
                .await
                .unwrap();
        let inbox = env.inbox(recipient);
        if open == 0 && inbox.len() as i64 >= queued {
            Ok(inbox)
        } else {
            Err(format!("{recipient}: outbox not settled ({open} open)"))
        }
    })
    .await
}

/// Issue 10 item 3: 20 parallel API calls for one number send one confirmation;
/// the same `Idempotency-Key` does the work once (a different body with it: 422);
/// the number's daily cap of unsolicited notices holds across services; push now
/// refuses a second run while one is open, and stops at its daily limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item3_no_partner_can_make_the_platform_text_anyone_repeatedly() {
    for db in databases().await {
        let env = Env::start(db, |c| {
            c.compliance.notice_daily_cap = 3;
            c.schedule.push_now_daily_limit = 2;
            // Runs stay pending (no scheduler here), so the race is only between requests.
            c.schedule.enabled = false;
        })
        .await;
        let dt = env
            .approved_service(&env.acme, "DT", "quiz", per_message(10, "答题", "03"))
            .await;
        let path = format!("/v1/services/{dt}/subscriptions");

        // 20 parallel calls, no key: one pending subscription, one text.
        let user = "13800001001";
        let calls = (0..20).map(|_| env.subscribe(dt, user));
        let answers = futures_join(calls).await;
        assert!(
            answers.iter().all(|(s, _)| *s == StatusCode::ACCEPTED),
            "{answers:?}"
        );
        let sent = answers
            .iter()
            .filter(|(_, b)| b["confirmation_sent"] == true)
            .count();
        assert_eq!(sent, 1, "{answers:?}");
        let ids: Vec<&Value> = answers
            .iter()
            .map(|(_, b)| &b["subscription"]["id"])
            .collect();
        assert!(
            ids.iter().all(|id| *id == ids[0]),
            "one subscription: {ids:?}"
        );
        assert_eq!(env.subscriptions(dt).await.len(), 1);
        let inbox = settled_inbox(&env, user).await;
        assert_eq!(inbox.len(), 1, "{inbox:?}");
        assert!(inbox[0].contains("回复Y确认订购") && inbox[0].contains("TDDT"));

        // The same key, 10 times in parallel, then once more: the work is done once.
        let other = "13800001002";
        let keyed = |body: Value| {
            env.server.send(
                env.server
                    .http
                    .post(env.server.url(&path))
                    .header("Idempotency-Key", "sub-13800001002")
                    .json(&body),
                Some(&env.acme),
            )
        };
        let answers = futures_join((0..10).map(|_| keyed(json!({"msisdn": other})))).await;
        let done: Vec<&Value> = answers
            .iter()
            .filter(|(s, _)| *s == StatusCode::ACCEPTED)
            .map(|(_, b)| b)
            .collect();
        assert!(!done.is_empty(), "{answers:?}");
        assert!(
            answers.iter().all(|(s, b)| *s == StatusCode::ACCEPTED
                || (*s == StatusCode::CONFLICT && error_code(b) == "idempotency-key-in-use")),
            "{answers:?}"
        );
        let (status, again) = keyed(json!({"msisdn": other})).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(&again, done[0], "the stored answer, replayed");
        let (status, body) = keyed(json!({"msisdn": "13800001003"})).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::UNPROCESSABLE_ENTITY, "idempotency-key-reused")
        );
        assert_eq!(settled_inbox(&env, other).await.len(), 1);
        assert_eq!(settled_inbox(&env, "13800001003").await.len(), 0);

        // One number, five paid services asked in parallel: three texts (the cap).
        let mut services = Vec::new();
        for (i, code) in ["QA", "QB", "QC", "QD", "QE"].iter().enumerate() {
            let terms = per_message(10, &format!("题{code}"), &format!("1{i}"));
            services.push(env.approved_service(&env.acme, code, "quiz", terms).await);
        }
        let target = "13800001004";
        let answers = futures_join(services.iter().map(|s| env.subscribe(*s, target))).await;
        let capped = answers
            .iter()
            .filter(|(s, b)| *s == StatusCode::TOO_MANY_REQUESTS && error_code(b) == "notice-cap")
            .count();
        assert_eq!(capped, 2, "{answers:?}");
        assert_eq!(settled_inbox(&env, target).await.len(), 3);
        // Answers to the user's own messages are not capped.
        env.mo(target, SHORT_CODE, "HELP");
        assert_eq!(env.wait_inbox(target, 4).await.len(), 4);

        // Push now: one run at a time, however many ask at once.
        let xh = env
            .approved_service(&env.acme, "XH", "jokes", free("笑话", "02"))
            .await;
        let push = format!("/v1/services/{xh}/push");
        let answers =
            futures_join((0..10).map(|_| env.server.post(&push, &env.acme, json!({})))).await;
        let started: Vec<&Value> = answers
            .iter()
            .filter(|(s, _)| *s == StatusCode::ACCEPTED)
            .map(|(_, b)| b)
            .collect();
        assert_eq!(started.len(), 1, "{answers:?}");
        assert!(
            answers.iter().all(|(s, b)| *s == StatusCode::ACCEPTED
                || (*s == StatusCode::CONFLICT && error_code(b) == "run-in-progress")),
            "{answers:?}"
        );
        let env_ref = &env;
        let cancel = |id: i64| async move {
            let path = format!("/v1/runs/{id}/cancel");
            let (status, body) = env_ref.server.post(&path, &env_ref.acme, json!({})).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        };
        cancel(started[0]["id"].as_i64().unwrap()).await;
        let (status, body) = env.server.post(&push, &env.acme, json!({})).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        cancel(body["id"].as_i64().unwrap()).await;
        let (status, body) = env.server.post(&push, &env.acme, json!({})).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::TOO_MANY_REQUESTS, "push-limit"),
            "{body}"
        );
        env.stop().await;
    }
}

/// Put a joke into acme's content library (the `jokes` module reads it).
async fn add_joke(env: &Env, text: &str) {
    let (status, body) = env
        .server
        .post(
            "/v1/content/jokes",
            &env.acme,
            json!({"items": [{"text": text}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// Every request in flight at once, answers in order.
async fn futures_join<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    futures_util::future::join_all(futures).await
}

/// Issue 10 item 4: the platform's own instruction works as users type it, glued
/// or bare, with ASCII or full-width punctuation, through the simulator; a stop word
/// inside a sentence does not stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item4_typed_stop_instructions_stop_the_service() {
    for db in databases().await {
        let env = Env::start(db, |_| {}).await;
        let xh = env
            .approved_service(&env.acme, "XH", "jokes", free("笑话", "02"))
            .await;
        let number = format!("{SHORT_CODE}02");
        let typed = [
            ("TDXH", SHORT_CODE),
            ("tdxh", SHORT_CODE),
            ("Td。", number.as_str()),
            ("TD.", number.as_str()),
            ("退订！", number.as_str()),
            ("退订。", number.as_str()),
        ];
        for (i, (text, to)) in typed.iter().enumerate() {
            let user = format!("1380000200{i}");
            let (status, _) = env.subscribe(xh, &user).await;
            assert_eq!(status, StatusCode::CREATED);
            env.mo(&user, to, text);
            let inbox = env.wait_inbox(&user, 1).await;
            assert!(inbox[0].contains("已退订"), "{text}: {inbox:?}");
        }
        let subs = env.subscriptions(xh).await;
        assert!(subs.iter().all(|s| s["status"] == "cancelled"), "{subs:?}");
        // The outcome is written once the router has finished with the MO.
        env.wait_routed().await;
        let (outcomes,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM mo_messages WHERE outcome = 'stop'")
                .fetch_one(env.server.platform.store.pool())
                .await
                .unwrap();
        assert_eq!(outcomes, 6);
        // A stop word inside a sentence goes to the module, and stops nothing.
        let user = "13800002010";
        env.subscribe(xh, user).await;
        env.mo(user, &number, "我不想退订。");
        let inbox = env.wait_inbox(user, 1).await;
        assert!(
            inbox[0].contains("再来"),
            "the jokes module answered: {inbox:?}"
        );
        let subs = env.subscriptions(xh).await;
        let active = subs.iter().find(|s| s["msisdn"] == user).unwrap();
        assert_eq!(active["status"], "active");
        env.stop().await;
    }
}

/// Issue 10 item 6: each promise of `wit/v1.0.0/partner.wit` about subscriptions,
/// through the real router: `on-subscribe` only after the confirmation, its welcome
/// free and with the stop instruction appended; commands never reach `on-mo`; a
/// reply to `on-mo` billed per message; after a stop the platform's confirmation
/// first, then the farewell once and free, even on a paid service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item6_contract_promises_hold_through_the_router() {
    for db in databases().await {
        let env = Env::start(db, |_| {}).await;
        add_joke(&env, "一个笑话").await;
        env.approved_service(&env.acme, "XH", "jokes", per_message(10, "笑话", "02"))
            .await;
        let number = format!("{SHORT_CODE}02");
        let user = "13800003001";
        env.mo(user, &number, "笑话");
        env.wait_inbox(user, 1).await;
        let inbox = settled_inbox(&env, user).await;
        assert_eq!(
            inbox.len(),
            1,
            "no welcome before the confirmation: {inbox:?}"
        );
        env.mo(user, &number, "Y");
        let inbox = env.wait_inbox(user, 3).await;
        assert!(inbox[1].contains("成功订购"), "{inbox:?}");
        assert!(
            inbox[2].starts_with("欢迎订阅每日笑话") && inbox[2].contains("退订回复TDXH。"),
            "the host appends how to unsubscribe: {inbox:?}"
        );
        let rows = outbox(&env, user).await;
        assert_eq!(
            (rows[2].1.as_str(), rows[2].2),
            ("free", 0),
            "welcome is free"
        );

        env.mo(user, &number, "再来");
        let inbox = env.wait_inbox(user, 4).await;
        assert!(inbox[3].contains("一个笑话"), "{inbox:?}");
        let rows = outbox(&env, user).await;
        assert_eq!((rows[3].1.as_str(), rows[3].2), ("per-message", 10));

        env.mo(user, &number, "TDXH");
        let inbox = env.wait_inbox(user, 6).await;
        let rows = outbox(&env, user).await;
        assert!(rows[4].0.contains("已退订"), "confirmation first: {rows:?}");
        assert!(inbox[5].starts_with("感谢您一直以来的陪伴"), "{inbox:?}");
        assert_eq!(
            (rows[5].1.as_str(), rows[5].2, rows[5].3.as_str()),
            ("free", 0, "farewell"),
            "the farewell is free"
        );
        env.wait_routed().await;
        let (module_calls,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM mo_messages WHERE text = 'TDXH' AND outcome LIKE 'module%'",
        )
        .fetch_one(env.server.platform.store.pool())
        .await
        .unwrap();
        assert_eq!(module_calls, 0, "commands never reach on-mo");
        // A second stop: "not subscribed", and no second farewell.
        env.mo(user, &number, "TD");
        let inbox = env.wait_inbox(user, 7).await;
        assert!(inbox[6].contains("无需退订"), "{inbox:?}");
        let farewells = settled_inbox(&env, user)
            .await
            .iter()
            .filter(|t| t.starts_with("感谢"))
            .count();
        assert_eq!(farewells, 1, "sent once");
        env.stop().await;
    }
}

/// Issue 10 item 5: the host checks what it passes to modules before calling them,
/// and records no fault against a module for its own bad input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item5_host_inputs_are_checked_before_any_module_call() {
    for db in databases().await {
        let server = Server::start(db).await;
        let acme = server.new_partner("acme").await;
        server.upload(&acme, guest("horoscope")).await;
        let bulletin = "/v1/modules/horoscope/bulletin";
        for (body, code) in [
            (json!({"date": "2026-02-30"}), "invalid-date"),
            (json!({"date": "2026-13-01"}), "invalid-date"),
            (json!({"date": "2026-2-3"}), "invalid-date"),
            (json!({"service": "NOSUCH"}), "invalid-service"),
        ] {
            let (status, resp) = server.post(bulletin, &acme, body.clone()).await;
            assert_eq!(
                (status, error_code(&resp)),
                (StatusCode::BAD_REQUEST, code),
                "{body}"
            );
        }
        let (status, body) = server
            .post(
                bulletin,
                &acme,
                json!({"date": "2028-02-29", "service": "xz"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (_, module) = server.get("/v1/modules/horoscope", &acme).await;
        assert_eq!(
            module["fault_count"], 0,
            "no fault for the host's own input"
        );
        server.stop().await;
    }
}

/// Issue 10 item 8: invisible characters never reach a phone: names are refused at
/// the API, and a real push whose bulletin carries them is refused by the content
/// policy with a named reason, while a clean one is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item8_invisible_characters_are_refused_before_the_outbox() {
    for db in databases().await {
        let env = Env::start(db, |c| c.schedule.tick_ms = 50).await;
        for name in ["acme\u{202e}moc", "a\u{0}b", "a\u{200b}b", "【x】"] {
            let (status, body) = env
                .server
                .post(
                    "/v1/partners",
                    ADMIN_KEY,
                    json!({"name": "evil", "display_name": name}),
                )
                .await;
            assert_eq!(
                (status, error_code(&body)),
                (StatusCode::BAD_REQUEST, "invalid-partner"),
                "{name:?}"
            );
        }
        let mut terms = free("笑话", "02");
        terms["name"] = json!("每日\u{1b}[2J笑话");
        terms["code"] = json!("XH");
        terms["module"] = json!("jokes");
        let (status, body) = env.server.post("/v1/services", &env.acme, terms).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::BAD_REQUEST, "invalid-service"),
            "{body}"
        );

        let xh = env
            .approved_service(&env.acme, "XH", "jokes", free("笑话", "02"))
            .await;
        let user = "13800004001";
        env.subscribe(xh, user).await;
        add_joke(&env, "今天\u{1b}[31m的笑话\u{202e}好笑").await;
        let (status, run) = env
            .server
            .post(&format!("/v1/services/{xh}/push"), &env.acme, json!({}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{run}");
        let run = env.wait_run_final(run["id"].as_i64().unwrap()).await;
        assert_eq!(run["queued"], 0, "{run}");
        let (_, body) = env.server.get("/v1/violations", &env.acme).await;
        let named = body["items"].as_array().unwrap().iter().any(|v| {
            v["rule"] == "control-character" && v["detail"].as_str().unwrap().contains("U+202E")
        });
        assert!(named, "{body}");
        assert!(settled_inbox(&env, user).await.is_empty());
        env.stop().await;
    }
}

/// Issue 10 item 10: a keyword the router would never deliver to its service is
/// refused, with the reason: at declaration when the service alone shows it, at
/// approval against the live services.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item10_unreachable_keywords_are_refused_with_the_reason() {
    for db in databases().await {
        let env = Env::start(db, |_| {}).await;
        let (server, acme) = (&env.server, &env.acme);
        // The reported input: keyword `YB` for service `YB`.
        let (status, body) = declare(server, acme, "YB", "yb", "01").await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::BAD_REQUEST, "invalid-service")
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("this service's code"),
            "{body}"
        );
        let (status, body) = declare(server, acme, "YB", "TDYB", "01").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

        let (status, _) = declare_and_approve(server, acme, "XZ", "星座", "02").await;
        assert_eq!(status, StatusCode::OK);
        for (code, keyword, ext, why) in [
            ("YB", "xz", "03", "code of service XZ"),
            ("YC", "QXXZ", "04", "stop command for service XZ"),
            ("YD", "星座", "05", "used by service XZ"),
            ("TDXZ", "运势", "06", "code `TDXZ`"),
        ] {
            let (status, body) = declare_and_approve(server, acme, code, keyword, ext).await;
            assert_eq!(
                (status, error_code(&body)),
                (StatusCode::CONFLICT, "unreachable-keyword"),
                "{code}/{keyword}: {body}"
            );
            assert!(
                body["error"]["message"].as_str().unwrap().contains(why),
                "{body}"
            );
        }
        env.stop().await;
    }
}

async fn declare(
    server: &Server,
    key: &str,
    code: &str,
    keyword: &str,
    ext: &str,
) -> (StatusCode, Value) {
    let mut body = free(keyword, ext);
    body["code"] = json!(code);
    server.post("/v1/services", key, body).await
}

async fn declare_and_approve(
    server: &Server,
    key: &str,
    code: &str,
    keyword: &str,
    ext: &str,
) -> (StatusCode, Value) {
    let (status, body) = declare(server, key, code, keyword, ext).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_i64().unwrap();
    server
        .post(&format!("/v1/services/{id}/submit"), key, json!({}))
        .await;
    server
        .post(
            &format!("/v1/admin/services/{id}/approve"),
            ADMIN_KEY,
            json!({"reason": "reviewed"}),
        )
        .await
}
