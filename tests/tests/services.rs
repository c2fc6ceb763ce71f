//! Services, subscriptions, the keyword router and compliance, end to end: the real
//! platform serving HTTP, a real SMSC simulator over SMPP on loopback, real modules.
//! Users are the simulator's handsets: they send MOs and we read what reached them.

#![allow(clippy::unwrap_used)]

mod common;

use common::env::{Env, SHORT_CODE, free, monthly, per_message};
use common::{ADMIN_KEY, databases, error_code, guest};
use reqwest::StatusCode;
use serde_json::json;
use tongdao::compliance::Blocked;
use tongdao::relay::{Basis, ChargePlan, NewMessage, OutboxError};

/// A push under `subscription` of `service`, as the scheduler queues it.
fn push(service: i64, code: &str, subscription: i64, to: &str, text: &str) -> NewMessage {
    NewMessage {
        partner_id: None,
        service: Some(code.into()),
        service_id: Some(service),
        recipient: to.into(),
        text: text.into(),
        charge_plan: ChargePlan::Monthly,
        price_fen: 0,
        basis: Basis::Subscription(subscription),
        sender: Some(format!("{SHORT_CODE}01")),
        module_version_id: None,
        input_sha256: None,
        operator: None,
    }
}

async fn partner_id(env: &Env, name: &str) -> i64 {
    tongdao::partners::get(&env.server.platform.store, name)
        .await
        .unwrap()
        .id
}

/// MIIT Order 31: a paid service's first MO gets a confirmation request
/// with price and how to stop; only `Y` within the window activates it; after the
/// window a `Y` activates nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_confirmation_happy_path_and_timeout() {
    for db in databases().await {
        let env = Env::start(db, |c| c.dialogue.confirm_window_secs = 3).await;
        let xz = env
            .approved_service(&env.acme, "XZ", "horoscope", monthly(200, "星座", "01"))
            .await;
        let service_number = format!("{SHORT_CODE}01");

        // Full-width, lower-case keyword with spaces still subscribes.
        env.mo("13800000001", &service_number, " 星座 ");
        let inbox = env.wait_inbox("13800000001", 1).await;
        assert!(
            inbox[0].contains("2元/月")
                && inbox[0].contains("回复Y确认")
                && inbox[0].contains("TDXZ"),
            "{inbox:?}"
        );
        let subs = env.subscriptions(xz).await;
        assert_eq!(
            subs[0]["status"], "pending",
            "no billing before the confirmation"
        );

        env.mo("13800000001", &service_number, "ｙ");
        let inbox = env.wait_inbox("13800000001", 3).await;
        assert!(inbox[1].contains("成功订购"), "{inbox:?}");
        assert!(
            inbox[2].contains("欢迎订阅"),
            "the module's welcome: {inbox:?}"
        );
        let subs = env.subscriptions(xz).await;
        assert_eq!(subs[0]["status"], "active");
        assert!(subs[0]["activated_at"].as_str().is_some());

        // Timeout: a second user confirms too late.
        env.mo("13800000002", &service_number, "星座");
        env.wait_inbox("13800000002", 1).await;
        env.wait_confirm_window_over("13800000002", xz).await;
        env.mo("13800000002", &service_number, "Y");
        let inbox = env.wait_inbox("13800000002", 2).await;
        assert!(
            inbox[1].contains("未能识别"),
            "a late Y is not a confirmation: {inbox:?}"
        );
        let subs = env.subscriptions(xz).await;
        let late = subs.iter().find(|s| s["msisdn"] == "13800000002").unwrap();
        assert_ne!(late["status"], "active");
        env.stop().await;
    }
}

/// `TD` ends the service at once: queued pushes are withdrawn, the module is
/// not asked, and the user gets exactly one message (the platform's confirmation),
/// even when the module traps on every call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn td_stops_everything_of_that_service_within_one_message() {
    for db in databases().await {
        // Pushes wait in quiet hours, so they are still queued when TD arrives.
        // `hostile-trap` runs live: admission reports it, never blocks here.
        let env = Env::start(db, |c| {
            c.compliance.quiet_hours = "00:00-23:59:59".into();
            c.modules.admission = tongdao::modules::AdmissionMode::Report;
        })
        .await;
        let (status, body) = env.server.upload(&env.acme, guest("hostile-trap")).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let module = body["module"].as_str().unwrap().to_string();
        let xh = env
            .approved_service(&env.acme, "XH", &module, free("笑话", "02"))
            .await;
        let number = format!("{SHORT_CODE}02");
        let user = "13800000003";
        let (status, body) = env.subscribe(xh, user).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let sub = body["subscription"]["id"].as_i64().unwrap();
        let acme_id = partner_id(&env, "acme").await;
        for i in 0..5 {
            let mut message = push(xh, "XH", sub, user, &format!("第{i}条笑话"));
            message.partner_id = Some(acme_id);
            message.charge_plan = ChargePlan::Free;
            env.server.platform.relay.enqueue(message).await.unwrap();
        }
        env.mo(user, &number, "td");
        let inbox = env.wait_inbox(user, 1).await;
        env.wait_routed().await;
        env.wait_outbox_settled(user).await;
        let inbox_after = env.inbox(user);
        assert_eq!(inbox_after.len(), 1, "{inbox_after:?}");
        assert!(inbox[0].contains("已退订"), "{inbox:?}");
        let (cancelled,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM messages WHERE service_id = $1 AND status = 'cancelled'",
        )
        .bind(xh)
        .fetch_one(env.server.platform.store.pool())
        .await
        .unwrap();
        assert_eq!(cancelled, 5);
        assert_eq!(env.subscriptions(xh).await[0]["status"], "cancelled");
        // After TD nothing of the service can reach the user.
        let mut message = push(xh, "XH", sub, user, "再来一条");
        message.partner_id = Some(acme_id);
        let refused = env.server.platform.relay.enqueue(message).await;
        assert!(
            matches!(refused, Err(OutboxError::Blocked(Blocked::NoOptIn(_)))),
            "{refused:?}"
        );
        env.stop().await;
    }
}

/// a reply may go only to the user whose MO it answers; a push only under an
/// active subscription. Refusals are violations the partner sees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_to_non_subscribers_who_did_not_write_are_refused() {
    for db in databases().await {
        let env = Env::start(db, |_| {}).await;
        let dt = env
            .approved_service(&env.acme, "DT", "quiz", per_message(10, "答题", "03"))
            .await;
        let number = format!("{SHORT_CODE}03");
        let writer = "13800000004";
        let stranger = "13800000005";
        env.mo(writer, &number, "答题");
        env.wait_inbox(writer, 1).await;
        env.mo(writer, &number, "Y");
        env.wait_inbox(writer, 2).await;
        env.mo(writer, &number, "A");
        let mo_id = env.wait_mo(writer, "A").await;
        let acme_id = partner_id(&env, "acme").await;
        let forged = NewMessage {
            partner_id: Some(acme_id),
            service: Some("DT".into()),
            service_id: Some(dt),
            recipient: stranger.into(),
            text: "【acme】中奖了".into(),
            charge_plan: ChargePlan::PerMessage,
            price_fen: 10,
            basis: Basis::Reply(mo_id),
            sender: None,
            module_version_id: None,
            input_sha256: None,
            operator: None,
        };
        let refused = env.server.platform.relay.enqueue(forged).await;
        assert!(
            matches!(refused, Err(OutboxError::Blocked(Blocked::NoOptIn(_)))),
            "{refused:?}"
        );
        // The stranger writing free text to the number is not routed to the module.
        env.mo(stranger, &number, "A");
        let inbox = env.wait_inbox(stranger, 1).await;
        assert_eq!(inbox.len(), 1);
        assert!(inbox[0].contains("未能识别"), "{inbox:?}");
        let (_, body) = env.server.get("/v1/violations", &env.acme).await;
        let rules: Vec<&str> = body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["rule"].as_str().unwrap())
            .collect();
        assert!(rules.contains(&"no-subscription"), "{rules:?}");
        let rival = env.server.new_partner("rival").await;
        let (_, body) = env.server.get("/v1/violations", &rival).await;
        assert_eq!(body["items"].as_array().unwrap().len(), 0, "R-7.1");
        env.stop().await;
    }
}

/// every evasion of the prohibited-word list is caught after folding, the
/// violation is recorded against the service and visible to the partner, and only
/// the clean text reaches the phone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_evasions_are_caught_and_only_clean_text_is_sent() {
    let env = Env::start(None, |c| {
        c.compliance.prohibited_words = vec!["赌博".into(), "viagra".into()];
    })
    .await;
    let xh = env
        .approved_service(&env.acme, "XH", "jokes", free("笑话", "02"))
        .await;
    let user = "13800000006";
    let (_, body) = env.subscribe(xh, user).await;
    let sub = body["subscription"]["id"].as_i64().unwrap();
    let acme_id = partner_id(&env, "acme").await;
    let evasions = [
        "网上赌博",
        "网上赌 博",
        "网上赌.博",
        "网上赌\u{200b}博",
        "buy ＶＩＡＧＲＡ",
        "buy v-i-a-g-r-a",
        "buy viаgra", // Cyrillic а
        "buy VIΑGRA", // Greek Α
        "详见 www . x . com",
    ];
    for text in evasions {
        let mut message = push(xh, "XH", sub, user, text);
        message.partner_id = Some(acme_id);
        let result = env.server.platform.relay.enqueue(message).await;
        assert!(
            matches!(result, Err(OutboxError::Blocked(Blocked::Policy { .. }))),
            "{text}: {result:?}"
        );
    }
    let mut clean = push(xh, "XH", sub, user, "今天天气不错");
    clean.partner_id = Some(acme_id);
    env.server.platform.relay.enqueue(clean).await.unwrap();
    let inbox = env.wait_inbox(user, 1).await;
    assert_eq!(
        inbox,
        vec!["今天天气不错【acme】".to_string()],
        "signed, nothing else"
    );
    let (_, body) = env.server.get("/v1/violations", &env.acme).await;
    let policy = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["kind"] == "policy" && v["service_id"] == xh)
        .count();
    assert_eq!(policy, evasions.len());
    env.stop().await;
}

/// a monthly service's pushes per subscriber stop at the cap derived from its
/// price (imbalance fees never exceed it); last month's count does not carry over:
/// the cap is per Asia/Shanghai month.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monthly_cap_stops_sends_and_resets_with_the_month() {
    for db in databases().await {
        // 10 fen a month at up to 5 fen imbalance fee per MT: at most 2 pushes.
        let env = Env::start(db, |c| c.compliance.max_imbalance_fee_fen = 5).await;
        let xz = env
            .approved_service(&env.acme, "XZ", "horoscope", monthly(10, "星座", "01"))
            .await;
        let number = format!("{SHORT_CODE}01");
        let user = "13800000007";
        env.mo(user, &number, "星座");
        env.wait_inbox(user, 1).await;
        env.mo(user, &number, "Y");
        env.wait_inbox(user, 2).await;
        let sub = env.subscriptions(xz).await[0]["id"].as_i64().unwrap();
        let store = env.server.platform.store.clone();
        // Last month this subscription hit its cap.
        let now = tongdao::store::now_ms();
        let last_month = tongdao::compliance::month_key(now - 32 * 24 * 3600 * 1000);
        sqlx::query(
            "INSERT INTO subscription_usage (subscription_id, month, messages) VALUES ($1, $2, 2)",
        )
        .bind(sub)
        .bind(&last_month)
        .execute(store.pool())
        .await
        .unwrap();
        let acme_id = partner_id(&env, "acme").await;
        let mut results = Vec::new();
        for i in 0..3 {
            let mut message = push(xz, "XZ", sub, user, &format!("第{i}期运势"));
            message.partner_id = Some(acme_id);
            results.push(env.server.platform.relay.enqueue(message).await);
        }
        assert!(results[0].is_ok() && results[1].is_ok(), "{results:?}");
        assert!(
            matches!(
                results[2],
                Err(OutboxError::Blocked(Blocked::MonthlyCap(2)))
            ),
            "{:?}",
            results[2]
        );
        let (used,): (i64,) = sqlx::query_as(
            "SELECT messages FROM subscription_usage WHERE subscription_id = $1 AND month = $2",
        )
        .bind(sub)
        .bind(tongdao::compliance::month_key(now))
        .fetch_one(store.pool())
        .await
        .unwrap();
        assert_eq!(used, 2);
        let inbox = env.wait_inbox(user, 5).await;
        assert_eq!(
            inbox.len(),
            5,
            "2 pushes after the confirmation request, confirmation and welcome"
        );
        env.stop().await;
    }
}

/// a push queued in quiet hours waits for the window's end; a reply to the
/// user's own MO goes at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_hours_hold_a_push_and_release_it_at_the_end() {
    // A window from now until 6 s from now, in Shanghai time.
    let tz = jiff_tz();
    let now = tongdao::store::now_ms();
    let fmt = |ms: i64| {
        let secs = (ms / 1000 + tz).rem_euclid(86_400);
        format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
    };
    let window = format!("{}-{}", fmt(now - 1000), fmt(now + 6000));
    let env = Env::start(None, |c| c.compliance.quiet_hours = window.clone()).await;
    let xh = env
        .approved_service(&env.acme, "XH", "jokes", free("笑话", "02"))
        .await;
    let user = "13800000008";
    let (_, body) = env.subscribe(xh, user).await;
    let sub = body["subscription"]["id"].as_i64().unwrap();
    let acme_id = partner_id(&env, "acme").await;
    let mut message = push(xh, "XH", sub, user, "早安笑话");
    message.partner_id = Some(acme_id);
    let id = env.server.platform.relay.enqueue(message).await.unwrap();
    let (release,): (i64,) = sqlx::query_as("SELECT next_attempt_at FROM messages WHERE id = $1")
        .bind(id)
        .fetch_one(env.server.platform.store.pool())
        .await
        .unwrap();
    assert!(release > now + 4000, "held until the window ends");
    // The user asks for help meanwhile: the answer is not held.
    env.mo(user, SHORT_CODE, "HELP");
    let inbox = env.wait_inbox(user, 1).await;
    assert!(inbox[0].contains("0000"), "{inbox:?}");
    let (status,): (String,) = sqlx::query_as("SELECT status FROM messages WHERE id = $1")
        .bind(id)
        .fetch_one(env.server.platform.store.pool())
        .await
        .unwrap();
    assert_eq!(
        status, "queued",
        "the push still waits while the reply went"
    );
    let inbox = env.wait_inbox(user, 2).await;
    assert!(inbox[1].starts_with("早安笑话"));
    // The phone may have the text before the relay stored the submit's answer.
    env.wait_outbox_settled(user).await;
    let (submitted,): (i64,) =
        sqlx::query_as("SELECT MIN(submitted_at) FROM message_segments WHERE message_id = $1")
            .bind(id)
            .fetch_one(env.server.platform.store.pool())
            .await
            .unwrap();
    assert!(submitted >= release, "sent only after the window");
    env.stop().await;
}

/// Shanghai's offset in seconds (UTC+8, no DST).
fn jiff_tz() -> i64 {
    8 * 3600
}

/// suspending a partner holds its queued MTs and refuses new ones at once;
/// resuming releases them and they are all delivered, none lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspension_holds_queued_mts_and_resume_releases_them() {
    for db in databases().await {
        let env = Env::start(db, |c| c.compliance.quiet_hours = "00:00-23:59:59".into()).await;
        let xh = env
            .approved_service(&env.acme, "XH", "jokes", free("笑话", "02"))
            .await;
        let acme_id = partner_id(&env, "acme").await;
        let mut subs = Vec::new();
        for i in 0..20 {
            let user = format!("1390000{i:04}");
            let (status, body) = env.subscribe(xh, &user).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            subs.push((user, body["subscription"]["id"].as_i64().unwrap()));
        }
        for (user, sub) in &subs {
            let mut message = push(xh, "XH", *sub, user, "今日笑话");
            message.partner_id = Some(acme_id);
            env.server.platform.relay.enqueue(message).await.unwrap();
        }
        let (status, body) = env
            .server
            .post(
                "/v1/admin/partners/acme/suspend",
                ADMIN_KEY,
                json!({"reason": "complaints"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["held_messages"], 20);
        let (user, sub) = &subs[0];
        let mut message = push(xh, "XH", *sub, user, "又一条");
        message.partner_id = Some(acme_id);
        let refused = env.server.platform.relay.enqueue(message).await;
        assert!(
            matches!(
                refused,
                Err(OutboxError::Blocked(Blocked::PartnerNotActive(_)))
            ),
            "{refused:?}"
        );
        // A partner key cannot lift it, and the bad input gets a clear 4xx.
        let (status, _) = env
            .server
            .post(
                "/v1/admin/partners/acme/resume",
                &env.acme,
                json!({"reason": "x"}),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, body) = env
            .server
            .post(
                "/v1/admin/partners/acme/resume",
                ADMIN_KEY,
                json!({"reason": ""}),
            )
            .await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::BAD_REQUEST, "invalid-reason")
        );
        // Quiet hours off again by releasing into a plain queue: resume.
        sqlx::query("UPDATE messages SET next_attempt_at = 0 WHERE status = 'held'")
            .execute(env.server.platform.store.pool())
            .await
            .unwrap();
        let (status, body) = env
            .server
            .post(
                "/v1/admin/partners/acme/resume",
                ADMIN_KEY,
                json!({"reason": "remedied"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["released_messages"], 20);
        for (user, _) in &subs {
            let inbox = env.wait_inbox(user, 1).await;
            assert_eq!(inbox.len(), 1, "{user}: {inbox:?}");
        }
        env.stop().await;
    }
}

/// The host's commands: `0000` lists subscriptions with "cancel all" first and a
/// number cancels that one; `00000` cancels everything; HELP and the service code
/// answer with price and how to stop; anything unknown gets the help reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn menu_cancel_all_help_and_unknown() {
    let env = Env::start(None, |_| {}).await;
    let xh = env
        .approved_service(&env.acme, "XH", "jokes", free("笑话", "02"))
        .await;
    let dt = env
        .approved_service(&env.acme, "DT", "quiz", free("答题", "03"))
        .await;
    let user = "13800000009";
    for service in [xh, dt] {
        let (status, _) = env.subscribe(service, user).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    env.mo(user, SHORT_CODE, "0000");
    let inbox = env.wait_inbox(user, 1).await;
    assert!(
        inbox[0].contains("1.全部退订") && inbox[0].contains("2.XH") && inbox[0].contains("3.DT"),
        "{inbox:?}"
    );
    env.mo(user, SHORT_CODE, "2");
    // The platform's confirmation, then the jokes module's farewell (free, once).
    let inbox = env.wait_inbox(user, 3).await;
    assert!(inbox[1].contains("退订1项"), "{inbox:?}");
    assert!(inbox[2].starts_with("感谢您一直以来的陪伴"), "{inbox:?}");
    assert_eq!(env.subscriptions(xh).await[0]["status"], "cancelled");
    assert_eq!(env.subscriptions(dt).await[0]["status"], "active");

    env.mo(user, SHORT_CODE, "xh");
    let inbox = env.wait_inbox(user, 4).await;
    assert!(
        inbox[3].contains("免费") && inbox[3].contains("TDXH"),
        "{inbox:?}"
    );
    // With one subscription left, free text goes to that service's module.
    env.mo(user, SHORT_CODE, "你好吗在吗");
    let inbox = env.wait_inbox(user, 5).await;
    assert!(
        inbox[4].contains("回复 A、B、C 或 D"),
        "the quiz module answered: {inbox:?}"
    );
    env.mo(user, SHORT_CODE, "00000");
    let inbox = env.wait_inbox(user, 6).await;
    assert!(inbox[5].contains("退订全部1项"), "{inbox:?}");
    // With none, it gets the configured help reply.
    env.mo(user, SHORT_CODE, "你好吗在吗");
    let inbox = env.wait_inbox(user, 7).await;
    assert!(inbox[6].contains("未能识别"), "{inbox:?}");
    env.wait_routed().await;
    assert_eq!(env.subscriptions(dt).await[0]["status"], "cancelled");
    env.stop().await;
}

/// declared, submitted, approved; a price change is a new revision and the
/// approved terms stay in force until it is approved; every step is audited; bad
/// input and other partners' services get clear 4xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_approval_revisions_and_audit() {
    for db in databases().await {
        let env = Env::start(db, |_| {}).await;
        let xz = env
            .approved_service(&env.acme, "XZ", "horoscope", monthly(200, "星座", "01"))
            .await;
        let (status, body) = env
            .server
            .put(
                &format!("/v1/services/{xz}/terms"),
                &env.acme,
                monthly(300, "星座", "01"),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["live"]["price_fen"], 200, "old price in force");
        assert_eq!(body["pending"]["price_fen"], 300);
        assert_eq!(body["status"], "approved");
        env.server
            .post(&format!("/v1/services/{xz}/submit"), &env.acme, json!({}))
            .await;
        let (status, _) = env
            .server
            .post(
                &format!("/v1/admin/services/{xz}/approve"),
                &env.acme,
                json!({"reason": "me"}),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "partners cannot approve");
        let (status, body) = env
            .server
            .post(
                &format!("/v1/admin/services/{xz}/approve"),
                ADMIN_KEY,
                json!({"reason": "ok"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["live"]["price_fen"], 300);
        let (_, body) = env
            .server
            .get(&format!("/v1/services/{xz}/audit"), &env.acme)
            .await;
        let actions: Vec<&str> = body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["action"].as_str().unwrap())
            .collect();
        assert_eq!(
            actions,
            ["create", "submit", "approve", "revise", "submit", "approve"]
        );

        let bad = [(json!({"code": "TD", "module": "horoscope"}), "invalid-json")];
        for (body, code) in bad {
            let (status, resp) = env.server.post("/v1/services", &env.acme, body).await;
            assert_eq!(
                (status.as_u16() / 100, error_code(&resp)),
                (4, code),
                "{resp}"
            );
        }
        let mut reserved = monthly(100, "TD", "05");
        reserved["code"] = json!("YY");
        let (status, resp) = env.server.post("/v1/services", &env.acme, reserved).await;
        assert_eq!(
            (status, error_code(&resp)),
            (StatusCode::BAD_REQUEST, "invalid-service")
        );
        let mut taken = monthly(100, "运势", "06");
        taken["code"] = json!("xz");
        let (status, resp) = env.server.post("/v1/services", &env.acme, taken).await;
        assert_eq!(
            (status, error_code(&resp)),
            (StatusCode::CONFLICT, "conflict")
        );
        let rival = env.server.new_partner("rival").await;
        let (status, _) = env.server.get(&format!("/v1/services/{xz}"), &rival).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "R-7.1");
        let (status, _) = env
            .server
            .post(
                &format!("/v1/services/{xz}/subscriptions"),
                &rival,
                json!({"msisdn": "13800000010"}),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        env.stop().await;
    }
}

/// paid MTs with the same content to one user are fee-only traffic; the
/// detector records it and (as configured) suspends the service at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fee_only_detector_suspends_the_service() {
    let env = Env::start(None, |c| {
        c.compliance.detectors.fee_only_repeats = 3;
        c.compliance.detectors.auto_suspend = vec!["fee-only".into()];
    })
    .await;
    let dt = env
        .approved_service(&env.acme, "DT", "quiz", per_message(100, "答题", "03"))
        .await;
    let user = "13800000011";
    let number = format!("{SHORT_CODE}03");
    env.mo(user, &number, "答题");
    env.wait_inbox(user, 1).await;
    env.mo(user, &number, "Y");
    env.wait_inbox(user, 2).await;
    let sub = env.subscriptions(dt).await[0]["id"].as_i64().unwrap();
    let acme_id = partner_id(&env, "acme").await;
    for i in 0..3 {
        // Near-identical: only the digits differ.
        let mut message = push(dt, "DT", sub, user, &format!("谢谢支持{i}"));
        message.partner_id = Some(acme_id);
        message.charge_plan = ChargePlan::PerMessage;
        message.price_fen = 100;
        env.server.platform.relay.enqueue(message).await.unwrap();
    }
    let (status, body) = env
        .server
        .post("/v1/admin/detectors/run", ADMIN_KEY, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rules: Vec<&str> = body["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules, ["fee-only"]);
    let (_, body) = env
        .server
        .get(&format!("/v1/services/{dt}"), &env.acme)
        .await;
    assert_eq!(body["status"], "suspended");
    // A second run within the window does not repeat the finding.
    let (_, body) = env
        .server
        .post("/v1/admin/detectors/run", ADMIN_KEY, json!({}))
        .await;
    assert_eq!(body["findings"].as_array().unwrap().len(), 0);
    env.stop().await;
}

/// The per-partner daily volume cap: the partner's MTs stop at the cap for the day.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partner_daily_cap_stops_the_partners_mts() {
    let env = Env::start(None, |c| c.compliance.partner_daily_cap = 3).await;
    let xh = env
        .approved_service(&env.acme, "XH", "jokes", free("笑话", "02"))
        .await;
    let acme_id = partner_id(&env, "acme").await;
    let mut results = Vec::new();
    for i in 0..4 {
        let user = format!("1370000{i:04}");
        let (_, body) = env.subscribe(xh, &user).await;
        let sub = body["subscription"]["id"].as_i64().unwrap();
        let mut message = push(xh, "XH", sub, &user, "今日笑话");
        message.partner_id = Some(acme_id);
        message.charge_plan = ChargePlan::Free;
        results.push(env.server.platform.relay.enqueue(message).await);
    }
    assert!(results[..3].iter().all(Result::is_ok), "{results:?}");
    assert!(
        matches!(results[3], Err(OutboxError::Blocked(Blocked::DailyCap(3)))),
        "{:?}",
        results[3]
    );
    env.stop().await;
}

/// Push now (the real scheduler and fan-out) and wait until the run is final.
async fn push_and_wait(env: &Env, service: i64) -> serde_json::Value {
    let (status, run) = env
        .server
        .post(
            &format!("/v1/services/{service}/push"),
            &env.acme,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{run}");
    let id = run["id"].as_i64().unwrap();
    let body = env.wait_run_final(id).await;
    assert_eq!(body["status"], "completed", "{body}");
    body
}

/// The user writes `text` to the service's number; the module answers through the
/// real keyword router. Returns the MO's stored outcome.
async fn reply_outcome(env: &Env, user: &str, number: &str, text: &str) -> String {
    env.mo(user, number, text);
    let mo = env.wait_mo(user, text).await;
    let (outcome,): (Option<String>,) =
        sqlx::query_as("SELECT outcome FROM mo_messages WHERE id = $1")
            .bind(mo)
            .fetch_one(env.server.platform.store.pool())
            .await
            .unwrap();
    outcome.unwrap_or_default()
}

/// The partner's violations of `rule` for `service`: their details.
async fn violations_of(env: &Env, service: i64, rule: &str) -> Vec<String> {
    let (status, body) = env.server.get("/v1/violations", &env.acme).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["rule"] == rule && v["service_id"] == service && v["kind"] == "cap")
        .map(|v| v["detail"].as_str().unwrap().to_string())
        .collect()
}

/// With `user` subscribed to `service` and exactly two MTs of the cap left: a push
/// and a reply take them; then a reply and a push are both refused by `cap`, each
/// with a violation of `rule` giving the same reason. Returns what reached `user`.
async fn push_and_reply_spend_one_cap(
    env: &Env,
    service: i64,
    user: &str,
    number: &str,
    cap: &Blocked,
    rule: &str,
) -> Vec<String> {
    let cap = cap.to_string();
    assert_eq!(push_and_wait(env, service).await["queued"], 1);
    assert_eq!(
        reply_outcome(env, user, number, "你好一").await,
        "module-reply"
    );
    assert_eq!(push_and_wait(env, service).await["queued"], 1);
    // The cap is spent: the reply is refused…
    let refused = reply_outcome(env, user, number, "你好二").await;
    assert!(
        refused.starts_with("module-reply-blocked") && refused.contains(&cap),
        "{refused}"
    );
    // …and so is the next push, counted as held.
    let run = push_and_wait(env, service).await;
    assert_eq!(
        (run["queued"].as_i64(), run["held"].as_i64()),
        (Some(0), Some(1)),
        "{run}"
    );
    let violations = violations_of(env, service, rule).await;
    assert_eq!(violations.len(), 2, "{violations:?}");
    assert!(
        violations.iter().all(|d| d.starts_with(&cap)),
        "{violations:?}"
    );
    env.wait_outbox_settled(user).await;
    env.inbox(user)
}

/// Issue 13, R-4.7, R-3.2: one gate, one cap. A paid monthly service (包月) whose
/// cap is 3 MTs per subscription and month: pushes (scheduler, fan-out) and the
/// module's replies to the same subscriber count against the same counter, and
/// past it both are refused with the same reason and a recorded violation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_and_reply_share_the_monthly_cap() {
    for db in databases().await {
        // 15 fen a month at up to 5 fen imbalance fee per MT: at most 3 MTs.
        let env = Env::start(db, |c| c.compliance.max_imbalance_fee_fen = 5).await;
        let xz = env
            .approved_service(&env.acme, "XZ", "horoscope", monthly(15, "星座", "01"))
            .await;
        let number = format!("{SHORT_CODE}01");
        let user = "13800000031";
        env.mo(user, &number, "星座");
        env.wait_inbox(user, 1).await;
        env.mo(user, &number, "Y");
        // Confirmation request, confirmation, welcome: free, so not counted. One
        // more push than the cap would be left if the replies were not counted.
        env.wait_inbox(user, 3).await;
        let cap = Blocked::MonthlyCap(3);
        let inbox =
            push_and_reply_spend_one_cap(&env, xz, user, &number, &cap, "monthly-over-count").await;
        assert_eq!(inbox.len(), 6, "{inbox:?}");
        let sub = env.subscriptions(xz).await[0]["id"].as_i64().unwrap();
        let (used,): (i64,) = sqlx::query_as(
            "SELECT messages FROM subscription_usage WHERE subscription_id = $1 AND month = $2",
        )
        .bind(sub)
        .bind(tongdao::compliance::month_key(tongdao::store::now_ms()))
        .fetch_one(env.server.platform.store.pool())
        .await
        .unwrap();
        assert_eq!(used, 3);
        env.stop().await;
    }
}

/// Issue 13, R-4.7: the partner's daily cap counts pushes and replies alike; past
/// it both are refused with the same reason and a recorded violation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_and_reply_share_the_partner_daily_cap() {
    for db in databases().await {
        let env = Env::start(db, |c| c.compliance.partner_daily_cap = 4).await;
        let xz = env
            .approved_service(&env.acme, "XZ", "horoscope", free("星座", "01"))
            .await;
        let number = format!("{SHORT_CODE}01");
        let user = "13800000032";
        env.mo(user, &number, "星座");
        // The platform's confirmation (not the partner's) and the module's
        // welcome (the partner's first MT of the day).
        env.wait_inbox(user, 2).await;
        let cap = Blocked::DailyCap(4);
        let inbox =
            push_and_reply_spend_one_cap(&env, xz, user, &number, &cap, "daily-over-count").await;
        assert_eq!(inbox.len(), 5, "{inbox:?}");
        env.stop().await;
    }
}
