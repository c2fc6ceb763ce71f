//! Issue 15 items 5 and 6, end to end on SQLite and PostgreSQL: the complaints
//! register with partner contacts and the complaint-spike
//! auto-suspension; history retention, the regulator's history query and
//! its CSV export; the audit log of admin requests.

#![allow(clippy::unwrap_used)]

mod common;

use common::env::{Env, SHORT_CODE, free};
use common::{ADMIN_KEY, Server, databases, error_code};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::time::Duration;
use tongdao::relay::{Basis, ChargePlan, NewMessage};
use tongdao_smpp::sim::{Sim, SimConfig};

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn contacts(tag: &str) -> Value {
    json!({
        "customer_service": {"name": format!("{tag} 客服"), "phone": "400-800-1234", "email": format!("cs@{tag}.example")},
        "technical_support": {"name": format!("{tag} 技术"), "phone": "010-1234-5678", "email": format!("tech@{tag}.example")}
    })
}

/// a complaint is routed to the partner first and to
/// the platform for channel causes, each answer naming the handler's contacts; a
/// partner sees and acts on its own complaints only; open → acknowledged →
/// resolved with a resolution and a history; the wrong party is refused; overdue
/// complaints are listed; lists page with a cursor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item5_complaint_lifecycle_routing_and_contacts() {
    for db in databases().await {
        let server = Server::start_with(db, |c| {
            c.complaints.platform_contacts.customer_service.phone = "10661234".into();
            c.complaints.platform_contacts.technical_support.email = "noc@platform.example".into();
        })
        .await;
        let acme = server.new_partner("acme").await;
        let rival = server.new_partner("rival").await;

        // Contacts: the partner sets its own; the admin sets another's.
        let (status, body) = server.put("/v1/contacts", &acme, contacts("acme")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body, contacts("acme"));
        let (status, body) = server
            .put("/v1/contacts?partner=rival", ADMIN_KEY, contacts("rival"))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (_, body) = server.get("/v1/contacts", &rival).await;
        assert_eq!(body, contacts("rival"));
        let (status, body) = server
            .put("/v1/contacts?partner=rival", &acme, contacts("x"))
            .await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::FORBIDDEN, "forbidden")
        );
        let mut no_way = contacts("acme");
        no_way["customer_service"]["phone"] = json!("");
        no_way["customer_service"]["email"] = json!("");
        let (status, body) = server.put("/v1/contacts", &acme, no_way).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::BAD_REQUEST, "invalid-contacts")
        );

        // Filing: content → the partner, channel → the platform.
        let file = async |partner: &str, cause: &str, channel: &str| -> Value {
            let (status, body) = server
                .post(
                    "/v1/admin/complaints",
                    ADMIN_KEY,
                    json!({"partner": partner, "msisdn": "+86 138 0013 8000", "channel": channel,
                           "cause": cause, "note": "用户称未订购却收到短信"}),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            body
        };
        let content = file("acme", "content", "10086").await;
        assert_eq!(content["status"], "open");
        assert_eq!(content["routed_to"], "partner");
        assert_eq!(content["handler"]["party"], "partner");
        assert_eq!(content["handler"]["name"], "acme");
        assert_eq!(content["handler"]["contacts"], contacts("acme"));
        assert_eq!(content["partner_contacts"], contacts("acme"));
        assert_eq!(content["msisdn"], "13800138000");
        assert_eq!(content["overdue"], false);
        let created: jiff::Timestamp = content["created_at"].as_str().unwrap().parse().unwrap();
        let due: jiff::Timestamp = content["due_at"].as_str().unwrap().parse().unwrap();
        assert_eq!(
            due.as_millisecond() - created.as_millisecond(),
            24 * 3_600_000
        );
        assert!(content["created_at"].as_str().unwrap().ends_with('Z'));
        assert_eq!(content["history"].as_array().unwrap().len(), 1);

        let channel = file("acme", "channel", "miit").await;
        assert_eq!(channel["routed_to"], "platform");
        assert_eq!(channel["handler"]["party"], "platform");
        assert_eq!(
            channel["handler"]["contacts"]["customer_service"]["phone"],
            "10661234"
        );
        assert_eq!(channel["partner_contacts"], contacts("acme"));
        let due: jiff::Timestamp = channel["due_at"].as_str().unwrap().parse().unwrap();
        let created: jiff::Timestamp = channel["created_at"].as_str().unwrap().parse().unwrap();
        assert_eq!(
            due.as_millisecond() - created.as_millisecond(),
            4 * 3_600_000
        );
        let others = file("rival", "billing", "app").await;

        for (body, code) in [
            (
                json!({"partner": "acme", "cause": "weather"}),
                "invalid-cause",
            ),
            (
                json!({"partner": "acme", "cause": "content", "channel": "pigeon"}),
                "invalid-channel",
            ),
        ] {
            let (status, answer) = server.post("/v1/admin/complaints", ADMIN_KEY, body).await;
            assert_eq!(
                (status, error_code(&answer)),
                (StatusCode::BAD_REQUEST, code)
            );
        }
        let (status, answer) = server
            .post(
                "/v1/admin/complaints",
                &acme,
                json!({"partner": "acme", "cause": "content"}),
            )
            .await;
        assert_eq!(
            (status, error_code(&answer)),
            (StatusCode::FORBIDDEN, "forbidden")
        );

        // A partner sees its own, not another's.
        let ids = |body: &Value| -> Vec<i64> {
            body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["id"].as_i64().unwrap())
                .collect()
        };
        let (status, mine) = server.get("/v1/complaints", &acme).await;
        assert_eq!(status, StatusCode::OK, "{mine}");
        assert_eq!(
            ids(&mine),
            [
                channel["id"].as_i64().unwrap(),
                content["id"].as_i64().unwrap()
            ]
        );
        assert_eq!(mine["next"], Value::Null);
        let (_, theirs) = server.get("/v1/complaints", &rival).await;
        assert_eq!(ids(&theirs), [others["id"].as_i64().unwrap()]);
        let (status, body) = server
            .get(&format!("/v1/complaints/{}", others["id"]), &acme)
            .await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::NOT_FOUND, "not-found")
        );
        let (status, body) = server
            .post(
                &format!("/v1/complaints/{}/acknowledge", others["id"]),
                &acme,
                json!({}),
            )
            .await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::NOT_FOUND, "not-found")
        );
        let (_, all) = server.get("/v1/complaints", ADMIN_KEY).await;
        assert_eq!(all["items"].as_array().unwrap().len(), 3);
        let (_, page) = server.get("/v1/complaints?limit=2", ADMIN_KEY).await;
        assert_eq!(page["items"].as_array().unwrap().len(), 2);
        let next = page["next"].as_str().unwrap().to_string();
        let (_, rest) = server
            .get(&format!("/v1/complaints?limit=2&after={next}"), ADMIN_KEY)
            .await;
        assert_eq!(ids(&rest), [content["id"].as_i64().unwrap()]);
        assert_eq!(rest["next"], Value::Null);
        let (_, routed) = server
            .get("/v1/complaints?routed_to=platform", ADMIN_KEY)
            .await;
        assert_eq!(ids(&routed), [channel["id"].as_i64().unwrap()]);

        // The lifecycle, by the party it is routed to.
        let act = async |id: &Value, action: &str, key: &str, body: Value| {
            server
                .post(&format!("/v1/complaints/{id}/{action}"), key, body)
                .await
        };
        let (status, body) = act(
            &content["id"],
            "resolve",
            ADMIN_KEY,
            json!({"resolution": "x"}),
        )
        .await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::CONFLICT, "routed-to-partner")
        );
        let (status, body) = act(&channel["id"], "acknowledge", &acme, json!({})).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::CONFLICT, "routed-to-platform")
        );
        let (status, body) = act(
            &content["id"],
            "acknowledge",
            &acme,
            json!({"note": "核查中"}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "acknowledged");
        let (status, body) = act(&content["id"], "acknowledge", &acme, json!({})).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::CONFLICT, "already-acknowledged")
        );
        let (status, body) = act(&content["id"], "resolve", &acme, json!({})).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::BAD_REQUEST, "resolution-required")
        );
        let (status, body) = act(&content["id"], "close", &acme, json!({})).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::BAD_REQUEST, "invalid-action")
        );
        let (status, body) = act(
            &content["id"],
            "resolve",
            &acme,
            json!({"resolution": "已退订并致歉，退还信息费"}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "resolved");
        assert_eq!(body["resolution"], "已退订并致歉，退还信息费");
        assert!(body["closed_at"].is_string());
        let history: Vec<(String, String)> = body["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["status"].as_str().unwrap().to_string(),
                    e["actor"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            history,
            [
                ("open".to_string(), "admin".to_string()),
                ("acknowledged".into(), "partner:acme".into()),
                ("resolved".into(), "partner:acme".into())
            ]
        );
        let (status, body) = act(&content["id"], "reject", &acme, json!({"resolution": "x"})).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::CONFLICT, "complaint-closed")
        );
        let (status, body) = act(
            &channel["id"],
            "resolve",
            ADMIN_KEY,
            json!({"resolution": "运营商网关故障已修复"}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "resolved");

        // Overdue: an hour past its due time (the clock moved by rewriting the
        // stored due time), the rival's open complaint is listed as overdue.
        sqlx::query("UPDATE complaints SET due_at = $1 WHERE id = $2")
            .bind(tongdao::store::now_ms() - 3_600_000)
            .bind(others["id"].as_i64().unwrap())
            .execute(server.platform.store.pool())
            .await
            .unwrap();
        let (_, overdue) = server.get("/v1/complaints?overdue=true", ADMIN_KEY).await;
        assert_eq!(ids(&overdue), [others["id"].as_i64().unwrap()]);
        assert_eq!(overdue["items"][0]["overdue"], true);
        let (_, overdue) = server.get("/v1/complaints?overdue=true", &acme).await;
        assert_eq!(ids(&overdue), Vec::<i64>::new());
        let (status, body) = server.get("/v1/complaints?status=lost", ADMIN_KEY).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::BAD_REQUEST, "invalid-status")
        );
        let (status, body) = server.get("/v1/complaints?limit=501", ADMIN_KEY).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::BAD_REQUEST, "invalid-limit")
        );
        let (status, body) = server.get("/v1/complaints?after=zz", ADMIN_KEY).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::BAD_REQUEST, "invalid-cursor")
        );
        server.stop().await;
    }
}

/// A push under `subscription`, as the scheduler queues it, through the gate.
fn push(partner: i64, service: i64, subscription: i64, to: &str, text: &str) -> NewMessage {
    NewMessage {
        partner_id: Some(partner),
        service: None,
        service_id: Some(service),
        recipient: to.into(),
        text: text.into(),
        charge_plan: ChargePlan::Free,
        price_fen: 0,
        basis: Basis::Subscription(subscription),
        sender: None,
        module_version_id: None,
        input_sha256: None,
        operator: None,
    }
}

/// Subscribe `n` numbers from `first` to `service` and send each one MT through
/// the gate; wait until the SMSC has them all. Returns the numbers.
async fn delivered_mts(env: &Env, partner: i64, service: i64, first: u64, n: u64) -> Vec<String> {
    let mut users = Vec::new();
    for i in 0..n {
        let user = format!("{}", 13_900_000_000u64 + first + i);
        let (status, body) = env.subscribe(service, &user).await;
        assert!(status.is_success(), "{body}");
        let sub = body["subscription"]["id"].as_i64().unwrap();
        env.server
            .platform
            .relay
            .enqueue(push(
                partner,
                service,
                sub,
                &user,
                "今日笑话：一只企鹅走进了酒吧",
            ))
            .await
            .unwrap();
        users.push(user);
    }
    for user in &users {
        env.wait_outbox_settled(user).await;
    }
    // Settled in the outbox is `submitted`; these MTs are counted as delivered, so
    // wait for every receipt too.
    let store = &env.server.platform.store;
    common::poll_until(Duration::from_secs(20), async || {
        let (waiting,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM messages WHERE service_id = $1 AND status = 'submitted'",
        )
        .bind(service)
        .fetch_one(store.pool())
        .await
        .unwrap();
        if waiting == 0 {
            Ok(())
        } else {
            Err(format!("{waiting} MTs still wait for their receipt"))
        }
    })
    .await;
    users
}

/// the complaint rate per 10,000 MTs is the detector's input. After
/// real MTs reached the SMSC and complaints were filed over the API, the detectors
/// suspend the service whose rate is over the threshold (a violation recorded,
/// the suspension on the audit chain), not one with as many complaints over more
/// MTs, and not for channel-cause complaints (the platform's own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item5_complaint_spike_suspends_the_service() {
    for db in databases().await {
        let env = Env::start(db, |c| {
            c.compliance.detectors.complaints = 3;
            c.compliance.detectors.complaint_rate_per_10k = 2000;
            c.compliance.detectors.auto_suspend = vec!["complaint-spike".into()];
        })
        .await;
        let xh = env
            .approved_service(&env.acme, "XH", "jokes", free("笑话", "02"))
            .await;
        let dt = env
            .approved_service(&env.acme, "DT", "quiz", free("答题", "03"))
            .await;
        let acme_id = tongdao::partners::get(&env.server.platform.store, "acme")
            .await
            .unwrap()
            .id;
        let xh_users = delivered_mts(&env, acme_id, xh, 0, 10).await;
        delivered_mts(&env, acme_id, dt, 100, 30).await;
        let count_mts = async |service: i64| -> i64 {
            let (n,): (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM messages WHERE service_id = $1 AND status = 'delivered'",
            )
            .bind(service)
            .fetch_one(env.server.platform.store.pool())
            .await
            .unwrap();
            n
        };
        assert!(count_mts(xh).await >= 10);
        assert!(count_mts(dt).await >= 30);

        let file = async |service: i64, cause: &str, user: &str| {
            let (status, body) = env
                .server
                .post(
                    "/v1/admin/complaints",
                    ADMIN_KEY,
                    json!({"partner": "acme", "service_id": service, "msisdn": user,
                           "channel": "10086", "cause": cause}),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        };
        for user in &xh_users[..5] {
            file(xh, "content", user).await;
        }
        for i in 0..5 {
            file(dt, "billing", &format!("{}", 13_900_000_100u64 + i)).await;
            // The channel's fault, not the partner's: not in its rate.
            file(dt, "channel", &format!("{}", 13_900_000_100u64 + i)).await;
        }

        let (status, rates) = env.server.get("/v1/complaints/rates", &env.acme).await;
        assert_eq!(status, StatusCode::OK, "{rates}");
        let rate_of = |service: i64| -> Value {
            rates["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["service_id"] == service)
                .unwrap()
                .clone()
        };
        let (xh_rate, dt_rate) = (rate_of(xh), rate_of(dt));
        assert_eq!(xh_rate["complaints"], 5);
        assert_eq!(
            dt_rate["complaints"], 5,
            "channel causes left out: {dt_rate}"
        );
        for rate in [&xh_rate, &dt_rate] {
            let (c, m) = (
                rate["complaints"].as_i64().unwrap(),
                rate["mts"].as_i64().unwrap(),
            );
            assert_eq!(rate["per_10k"].as_i64().unwrap(), c * 10_000 / m, "{rate}");
        }
        assert_eq!(xh_rate["spike"], true, "{xh_rate}");
        assert_eq!(dt_rate["spike"], false, "{dt_rate}");

        let (status, body) = env
            .server
            .post("/v1/admin/detectors/run", ADMIN_KEY, json!({}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let findings: Vec<(String, Option<i64>)> = body["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["rule"].as_str().unwrap().to_string(),
                    f["service_id"].as_i64(),
                )
            })
            .collect();
        assert_eq!(findings, [("complaint-spike".to_string(), Some(xh))]);
        let (_, service) = env
            .server
            .get(&format!("/v1/services/{xh}"), &env.acme)
            .await;
        assert_eq!(service["status"], "suspended");
        let (_, service) = env
            .server
            .get(&format!("/v1/services/{dt}"), &env.acme)
            .await;
        assert_eq!(service["status"], "approved");
        let (_, violations) = env.server.get("/v1/violations", &env.acme).await;
        let spike: Vec<&Value> = violations["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["rule"] == "complaint-spike")
            .collect();
        assert_eq!(spike.len(), 1, "{violations}");
        assert_eq!(spike[0]["kind"], "detector");
        assert_eq!(spike[0]["service_id"], xh);
        // The platform's own action is on the audit chain.
        let (_, audit) = env.server.get("/v1/admin/audit", ADMIN_KEY).await;
        let suspension = audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["actor"] == "rule:complaint-spike")
            .unwrap_or_else(|| panic!("no auto-suspension in {audit}"));
        assert_eq!(suspension["action"], "suspend-service");
        // The suspended service sends nothing more.
        let sub = env.subscriptions(xh).await[0]["id"].as_i64().unwrap();
        let refused = env
            .server
            .platform
            .relay
            .enqueue(push(acme_id, xh, sub, &xh_users[0], "还有一条"))
            .await;
        assert!(refused.is_err(), "{refused:?}");
        env.stop().await;
    }
}

/// the regulator's question. What did a number receive (and send), from
/// which partner and service, when, with what text: every MT with the SHA-256 of
/// its text and of the module version that wrote it (a real push through the
/// scheduler and a real reply through the keyword router), MOs beside them; pages
/// with a cursor; the same as CSV; admin only; bad input a precise 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item6_history_query_json_and_csv() {
    for db in databases().await {
        let env = Env::start(db, |_| {}).await;
        let xz = env
            .approved_service(&env.acme, "XZ", "horoscope", free("星座", "01"))
            .await;
        let user = "13800000051";
        let (status, body) = env.subscribe(xz, user).await;
        assert!(status.is_success(), "{body}");
        let number = format!("{SHORT_CODE}01");
        env.mo(user, &number, "白羊");
        env.wait_mo(user, "白羊").await;
        let (status, run) = env
            .server
            .post(&format!("/v1/services/{xz}/push"), &env.acme, json!({}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{run}");
        env.wait_run_final(run["id"].as_i64().unwrap()).await;
        env.wait_outbox_settled(user).await;
        // And every receipt is in.
        common::poll_until(Duration::from_secs(20), async || {
            let (open,): (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM messages WHERE recipient = $1 AND status <> 'delivered'",
            )
            .bind(user)
            .fetch_one(env.server.platform.store.pool())
            .await
            .unwrap();
            if open == 0 {
                Ok(())
            } else {
                Err(format!("{open} MTs not delivered yet"))
            }
        })
        .await;
        let inbox = env.inbox(user);
        let (version_id, version_sha): (i64, String) = sqlx::query_as(
            "SELECT v.id, v.sha256 FROM module_versions v JOIN modules m ON m.id = v.module_id
             WHERE m.name = 'horoscope' ORDER BY v.id DESC LIMIT 1",
        )
        .fetch_one(env.server.platform.store.pool())
        .await
        .unwrap();

        let (status, body) = env
            .server
            .get(&format!("/v1/admin/history?msisdn=%2B86{user}"), ADMIN_KEY)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let items = body["items"].as_array().unwrap();
        let mts: Vec<&Value> = items.iter().filter(|i| i["direction"] == "mt").collect();
        let mos: Vec<&Value> = items.iter().filter(|i| i["direction"] == "mo").collect();
        assert_eq!(mts.len(), inbox.len(), "{body}");
        assert!(mts.len() >= 2, "a reply and a push: {inbox:?}");
        for mt in &mts {
            let text = mt["text"].as_str().unwrap();
            assert!(inbox.iter().any(|t| t == text), "{text} not in {inbox:?}");
            assert_eq!(mt["content_sha256"], sha256(text.as_bytes()));
            assert_eq!(mt["partner"], "acme");
            assert_eq!(mt["service"], "XZ");
            assert_eq!(mt["msisdn"], user);
            assert_eq!(mt["status"], "delivered");
            assert!(mt["at"].as_str().unwrap().ends_with('Z'));
        }
        // The reply (router → gate) and the push (scheduler → gate) carry the
        // module version that wrote them.
        let written: Vec<&&Value> = mts
            .iter()
            .filter(|m| m["module_version_id"] == version_id)
            .collect();
        assert!(written.len() >= 2, "{body}");
        for mt in written {
            assert_eq!(mt["module_sha256"], version_sha);
        }
        assert_eq!(mos.len(), 1, "{body}");
        assert_eq!(mos[0]["text"], "白羊");
        assert_eq!(mos[0]["content_sha256"], sha256("白羊".as_bytes()));
        assert_eq!(mos[0]["service"], "XZ");
        assert_eq!(mos[0]["service_number"], number.as_str());
        // Newest first; pages of one follow each other to the same list.
        let mut paged = Vec::new();
        let mut url = format!("/v1/admin/history?msisdn={user}&limit=1");
        loop {
            let (status, page) = env.server.get(&url, ADMIN_KEY).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            paged.extend(page["items"].as_array().unwrap().iter().cloned());
            match page["next"].as_str() {
                Some(next) => url = format!("/v1/admin/history?msisdn={user}&limit=1&after={next}"),
                None => break,
            }
            assert!(paged.len() <= items.len(), "pages do not end");
        }
        assert_eq!(&paged, items);
        let ats: Vec<&str> = items.iter().map(|i| i["at"].as_str().unwrap()).collect();
        let mut sorted = ats.clone();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        assert_eq!(ats, sorted);
        // A window that ends before the first: nothing.
        let (_, none) = env
            .server
            .get(
                &format!("/v1/admin/history?msisdn={user}&to=2020-01-01T00:00:00.000Z"),
                ADMIN_KEY,
            )
            .await;
        assert_eq!(none["items"].as_array().unwrap().len(), 0);

        // CSV: a header and one line per item, the text intact.
        let response = env
            .server
            .http
            .get(
                env.server
                    .url(&format!("/v1/admin/history?msisdn={user}&format=csv")),
            )
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["content-type"],
            "text/csv; charset=utf-8"
        );
        let csv = response.text().await.unwrap();
        let lines: Vec<&str> = csv
            .trim_start_matches('\u{feff}')
            .split("\r\n")
            .filter(|l| !l.is_empty())
            .collect();
        assert!(
            lines[0].starts_with("direction,at,msisdn,partner,service"),
            "{csv}"
        );
        assert_eq!(lines.len(), items.len() + 1, "{csv}");
        for mt in &mts {
            assert!(csv.contains(mt["text"].as_str().unwrap()), "{csv}");
        }

        for (url, status, code) in [
            (
                "/v1/admin/history",
                StatusCode::BAD_REQUEST,
                "msisdn-required",
            ),
            (
                "/v1/admin/history?msisdn=12345",
                StatusCode::BAD_REQUEST,
                "invalid-msisdn",
            ),
            (
                "/v1/admin/history?msisdn=13800000051&from=yesterday",
                StatusCode::BAD_REQUEST,
                "invalid-time",
            ),
            (
                "/v1/admin/history?msisdn=13800000051&from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z",
                StatusCode::BAD_REQUEST,
                "invalid-range",
            ),
            (
                "/v1/admin/history?msisdn=13800000051&after=nonsense",
                StatusCode::BAD_REQUEST,
                "invalid-cursor",
            ),
            (
                "/v1/admin/history?msisdn=13800000051&format=xml",
                StatusCode::BAD_REQUEST,
                "invalid-format",
            ),
            (
                "/v1/admin/history?msisdn=13800000051&partner=nobody",
                StatusCode::NOT_FOUND,
                "not-found",
            ),
        ] {
            let (got, body) = env.server.get(url, ADMIN_KEY).await;
            assert_eq!((got, error_code(&body)), (status, code), "{url}");
        }
        let (status, body) = env
            .server
            .get(&format!("/v1/admin/history?msisdn={user}"), &env.acme)
            .await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::FORBIDDEN, "forbidden")
        );
        env.stop().await;
    }
}

/// Issue 15 item 6: every mutating request made with the admin key is on the
/// audit chain (method, matched route, status, SHA-256 of the body, request id),
/// a partner's are not, and the chain verifies over the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item6_admin_requests_are_on_the_audit_chain() {
    for db in databases().await {
        let server = Server::start(db).await;
        let body = json!({"name": "acme", "display_name": "Acme"});
        let response = server
            .http
            .post(server.url("/v1/partners"))
            .bearer_auth(ADMIN_KEY)
            .header("x-request-id", "req-42")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let acme = response.json::<Value>().await.unwrap()["api_key"]
            .as_str()
            .unwrap()
            .to_string();
        // Refused requests are recorded too, with their status.
        let (status, _) = server
            .post(
                "/v1/admin/partners/nobody/suspend",
                ADMIN_KEY,
                json!({"reason": "test"}),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        // A partner's request and the admin's reads are not administrative actions.
        server.put("/v1/contacts", &acme, contacts("acme")).await;
        server.get("/v1/partners", ADMIN_KEY).await;

        let (status, audit) = server.get("/v1/admin/audit", ADMIN_KEY).await;
        assert_eq!(status, StatusCode::OK, "{audit}");
        let items = audit["items"].as_array().unwrap();
        assert_eq!(items.len(), 2, "{audit}");
        let (second, first) = (&items[0], &items[1]);
        assert_eq!(first["method"], "POST");
        assert_eq!(first["path"], "/v1/partners");
        assert_eq!(first["status"], 201);
        assert_eq!(first["request_id"], "req-42");
        assert_eq!(first["actor"], "admin");
        assert_eq!(first["body_sha256"], sha256(body.to_string().as_bytes()));
        assert_eq!(second["path"], "/v1/admin/partners/{name}/{action}");
        assert_eq!(second["detail"], "/v1/admin/partners/nobody/suspend");
        assert_eq!(second["status"], 404);
        assert_eq!(second["prev_hash"], first["hash"]);
        let (_, verdict) = server.get("/v1/admin/audit/verify", ADMIN_KEY).await;
        assert_eq!(verdict["result"], "intact", "{verdict}");
        assert_eq!(verdict["rows"], 2);
        let (status, body) = server.get("/v1/admin/audit", &acme).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::FORBIDDEN, "forbidden")
        );

        // An edited row is found.
        sqlx::query("UPDATE audit_log SET status = 200 WHERE id = 2")
            .execute(server.platform.store.pool())
            .await
            .unwrap();
        let (_, verdict) = server.get("/v1/admin/audit/verify", ADMIN_KEY).await;
        assert_eq!(
            (verdict["result"].as_str(), verdict["row"].as_i64()),
            (Some("broken"), Some(2)),
            "{verdict}"
        );
        server.stop().await;
    }
}

/// Day `day` (YYYY-MM-DD) at `hour` in the platform time zone, Unix ms.
fn ms(day: &str, hour: i64) -> i64 {
    tongdao::billing::calendar::day_start_ms(day.parse().unwrap()) + hour * 3_600_000
}

/// the purge removes exactly what was created before now − N
/// months (a row at the boundary stays), with its segments and events, in
/// batches; an uncharged paid MT and an MO the router has not handled stay; and
/// the statement of a purged month is the same bytes before and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item6_purge_removes_exactly_what_is_older_than_n_months() {
    for db in databases().await {
        let sim = Sim::start(SimConfig::default()).await.unwrap();
        let address = sim.local_addr().to_string();
        let server = Server::start_with(db, |c| {
            // The feeder reads once at start, then sleeps: the partner events here
            // are exactly the ones this test writes.
            c.webhooks.poll_ms = 3_600_000;
            c.operators = [("mobile", "138"), ("unicom", "130")]
                .map(|(name, prefix)| {
                    let mut op = common::sim_operator(address.clone());
                    op.name = name.into();
                    op.prefixes = vec![prefix.into()];
                    op
                })
                .to_vec();
        })
        .await;
        let acme = server.new_partner("acme").await;
        agreed(&server).await;
        let store = server.platform.store.clone();
        let partner_id = tongdao::partners::get(&store, "acme").await.unwrap().id;
        let service = server
            .approved_service(
                &acme,
                json!({"code": "XZ", "name": "星座", "keywords": ["星座"], "fee_type": "per-message",
                       "price_fen": 200, "operators": ["mobile", "unicom"], "number_ext": "01"}),
            )
            .await;

        // N = 6 months at 2027-02-10 00:00 (platform time): the boundary is
        // 2026-08-10 00:00.
        let config = tongdao::retention::RetentionConfig {
            months: 6,
            batch: 4,
            pause_ms: 0,
            ..Default::default()
        };
        let now = ms("2027-02-10", 0);
        let cutoff = tongdao::retention::cutoff_ms(now, 6);
        assert_eq!(cutoff, ms("2026-08-10", 0));

        // MTs written as the outbox writes them, each with a segment and an event.
        let insert = async |operator: &str, status: &str, at: i64| -> i64 {
            let recipient = if operator == "mobile" {
                "13800000010"
            } else {
                "13000000011"
            };
            let (id,): (i64,) = sqlx::query_as(
                "INSERT INTO messages (partner_id, service, recipient, operator, text, content_sha256, segments,
                    charge_plan, is_test, status, attempts, next_attempt_at, expires_at, created_at, updated_at,
                    done_at, service_id, price_fen, basis)
                 VALUES ($1, 'XZ', $2, $3, 'text', 'sha', 1, 'per-message', 0, $4, 1, $5, $5, $5, $5, $5, $6,
                    200, 'reply') RETURNING id",
            )
            .bind(partner_id)
            .bind(recipient)
            .bind(operator)
            .bind(status)
            .bind(at)
            .bind(service)
            .fetch_one(store.pool())
            .await
            .unwrap();
            sqlx::query("INSERT INTO message_segments (message_id, seq, operator, status) VALUES ($1, 1, $2, $3)")
                .bind(id)
                .bind(operator)
                .bind(status)
                .execute(store.pool())
                .await
                .unwrap();
            sqlx::query("INSERT INTO message_events (message_id, status, at) VALUES ($1, $2, $3)")
                .bind(id)
                .bind(status)
                .bind(at)
                .execute(store.pool())
                .await
                .unwrap();
            id
        };
        let mut old = Vec::new();
        for _ in 0..10 {
            old.push(insert("mobile", "delivered", cutoff - 1).await);
        }
        for _ in 0..3 {
            old.push(insert("unicom", "failed", ms("2026-08-01", 12)).await);
        }
        let mut kept = Vec::new();
        for _ in 0..5 {
            kept.push(insert("mobile", "delivered", cutoff).await);
        }
        for _ in 0..4 {
            kept.push(insert("unicom", "delivered", ms("2026-08-20", 12)).await);
        }
        let mo = async |status: &str, at: i64| {
            sqlx::query(
                "INSERT INTO mo_messages (operator, source, destination, text, status, received_at, service_id,
                    lease_until)
                 VALUES ('mobile', '13800000010', '1066123401', 'XZ', $1, $2, $3, $4)",
            )
            .bind(status)
            .bind(at)
            .bind(service)
            // A router holds it (its lease runs for an hour): not yet handled.
            .bind(tongdao::store::now_ms() + 3_600_000)
            .execute(store.pool())
            .await
            .unwrap();
        };
        for _ in 0..6 {
            mo("routed", ms("2026-08-05", 9)).await;
        }
        for _ in 0..2 {
            mo("routed", cutoff).await;
        }
        mo("routing", ms("2026-08-05", 9)).await;

        // The other tables the window covers, each with rows just before the
        // cutoff (go) and at or after it (stay).
        let pool = store.pool();
        let one = async |sql: &str, binds: &[i64]| -> i64 {
            let mut q = sqlx::query_as::<_, (i64,)>(sql);
            for b in binds {
                q = q.bind(*b);
            }
            q.fetch_one(pool).await.unwrap().0
        };
        let receipt = async |at: i64| {
            one(
                "INSERT INTO receipts (operator, operator_message_id, state, raw, received_at)
                 VALUES ('mobile', 'x', 'DELIVRD', 'raw', $1) RETURNING id",
                &[at],
            )
            .await
        };
        let old_receipts = [
            receipt(cutoff - 1).await,
            receipt(ms("2026-03-01", 0)).await,
            receipt(ms("2026-08-09", 23)).await,
        ];
        let kept_receipts = [receipt(cutoff).await, receipt(now).await];
        for (i, at) in [cutoff - 1, ms("2026-05-01", 0), cutoff].iter().enumerate() {
            sqlx::query("INSERT INTO mo_seen (operator, fingerprint, received_at, session) VALUES ('mobile', $1, $2, 's')")
                .bind(format!("fp{i}"))
                .bind(at)
                .execute(pool)
                .await
                .unwrap();
        }
        let (status, hook) = server
            .post(
                "/v1/webhooks",
                &acme,
                json!({"url": "https://example.com/hook"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{hook}");
        let endpoint = hook["id"].as_i64().unwrap();
        let event = async |n: i64, at: i64| {
            one(
                &format!(
                    "INSERT INTO partner_events (partner_id, kind, source_key, payload, at)
                 VALUES ($1, 'notice', 'test:{n}', '{{}}', $2) RETURNING id"
                ),
                &[partner_id, at],
            )
            .await
        };
        let delivery = async |event: i64, status: &str, created: i64| {
            sqlx::query(
                "INSERT INTO webhook_deliveries (endpoint_id, event_id, status, next_attempt_at, created_at)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(endpoint)
            .bind(event)
            .bind(status)
            // A pending one is not due for a long time: the sender leaves it be.
            .bind(now + 86_400_000 * 365)
            .bind(created)
            .execute(pool)
            .await
            .unwrap();
        };
        let e_delivered = event(1, cutoff - 1).await;
        delivery(e_delivered, "delivered", cutoff - 1).await;
        let e_failed = event(2, ms("2026-06-01", 0)).await;
        delivery(e_failed, "failed", ms("2026-06-01", 0)).await;
        let e_pending = event(3, ms("2026-06-01", 0)).await;
        delivery(e_pending, "pending", ms("2026-06-01", 0)).await;
        let e_bare = [
            event(4, ms("2026-07-01", 0)).await,
            event(5, cutoff - 1000).await,
        ];
        let e_kept = event(6, cutoff).await;
        delivery(e_kept, "delivered", cutoff).await;
        let e_recent = event(7, now).await;
        let complaint = async |status: &str, at: i64, closed: Option<i64>| -> i64 {
            let id = one(
                &format!(
                    "INSERT INTO complaints (partner_id, msisdn, cause, note, at, channel, routed_to, status,
                        due_at, updated_at, closed_at)
                     VALUES ($1, '13800000010', 'content', 'n', $2, '10086', 'partner', '{status}', $2, $2, {})
                     RETURNING id",
                    closed.map_or("NULL".to_string(), |c| c.to_string())
                ),
                &[partner_id, at],
            )
            .await;
            for _ in 0..2 {
                sqlx::query("INSERT INTO complaint_events (complaint_id, status, actor, note, at) VALUES ($1, $2, 'admin', 'n', $3)")
                    .bind(id)
                    .bind(status)
                    .bind(at)
                    .execute(pool)
                    .await
                    .unwrap();
            }
            id
        };
        let c_gone = [
            complaint("resolved", ms("2026-07-01", 0), Some(cutoff - 1)).await,
            complaint("rejected", ms("2026-02-01", 0), Some(ms("2026-02-03", 0))).await,
        ];
        let c_kept = [
            complaint("open", ms("2026-02-01", 0), None).await,
            complaint("acknowledged", ms("2026-02-01", 0), None).await,
            complaint("resolved", ms("2026-07-01", 0), Some(cutoff)).await,
            complaint("resolved", ms("2026-03-01", 0), Some(ms("2026-09-01", 0))).await,
        ];
        tongdao::billing::charges::charge(
            &store,
            &tongdao::relay::Routes::default(),
            ms("2026-08-31", 23),
            tongdao::billing::charges::Scan::Full,
        )
        .await
        .unwrap();
        // Delivered and paid but not charged yet: settlement still needs it.
        let uncharged = insert("mobile", "delivered", ms("2026-07-15", 12)).await;

        let statement = async || {
            let response = server
                .http
                .get(server.url("/v1/statements/2026-08"))
                .bearer_auth(&acme)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            response.text().await.unwrap()
        };
        let before = statement().await;
        let figures: Value = serde_json::from_str(&before).unwrap();
        assert!(
            figures["operators"][0]["gross_fen"].as_i64().unwrap() > 0,
            "{before}"
        );

        let purged = tongdao::retention::purge_once(&store, &config, now)
            .await
            .unwrap();
        assert_eq!((purged.mts, purged.mos), (13, 6));
        assert_eq!(
            (
                purged.receipts,
                purged.deliveries,
                purged.events,
                purged.complaints
            ),
            (3, 2, 4, 2),
            "{purged:?}"
        );
        // The server's relay also forgets MO fingerprints past the de-duplication
        // window (its sweep, every half second), so it may have taken some of these
        // months-old ones first: the purge takes at most the two before the cutoff.
        assert!(purged.mo_seen <= 2, "{purged:?}");
        let list = |v: &[i64]| v.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let count = async |table: &str, column: &str, ids: &[i64]| -> i64 {
            one(
                &format!(
                    "SELECT COUNT(*) FROM {table} WHERE {column} IN ({})",
                    list(ids)
                ),
                &[],
            )
            .await
        };
        assert_eq!(count("receipts", "id", &old_receipts).await, 0);
        assert_eq!(count("receipts", "id", &kept_receipts).await, 2);
        assert_eq!(one("SELECT COUNT(*) FROM receipts", &[]).await, 2);
        let seen: Vec<(String,)> = sqlx::query_as("SELECT fingerprint FROM mo_seen")
            .fetch_all(pool)
            .await
            .unwrap();
        assert!(
            seen.iter().all(|(fp,)| fp == "fp2"),
            "no fingerprint from before the cutoff stays (the one at it may, unless the relay's sweep forgot it): {seen:?}"
        );
        let gone_events = [e_delivered, e_failed, e_bare[0], e_bare[1]];
        assert_eq!(count("partner_events", "id", &gone_events).await, 0);
        assert_eq!(
            count("partner_events", "id", &[e_pending, e_kept, e_recent]).await,
            3
        );
        assert_eq!(one("SELECT COUNT(*) FROM partner_events", &[]).await, 3);
        assert_eq!(
            count("webhook_deliveries", "event_id", &[e_delivered, e_failed]).await,
            0
        );
        assert_eq!(
            count("webhook_deliveries", "event_id", &[e_pending, e_kept]).await,
            2
        );
        assert_eq!(count("complaints", "id", &c_gone).await, 0);
        assert_eq!(count("complaint_events", "complaint_id", &c_gone).await, 0);
        assert_eq!(count("complaints", "id", &c_kept).await, 4);
        assert_eq!(count("complaint_events", "complaint_id", &c_kept).await, 8);
        let left = async |sql: &str| -> i64 {
            let (n,): (i64,) = sqlx::query_as(sql).fetch_one(store.pool()).await.unwrap();
            n
        };
        let ids = |v: &[i64]| v.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let (old_ids, kept_ids) = (ids(&old), ids(&kept));
        assert_eq!(
            left(&format!(
                "SELECT COUNT(*) FROM messages WHERE id IN ({old_ids})"
            ))
            .await,
            0
        );
        assert_eq!(
            left(&format!(
                "SELECT COUNT(*) FROM message_segments WHERE message_id IN ({old_ids})"
            ))
            .await,
            0
        );
        assert_eq!(
            left(&format!(
                "SELECT COUNT(*) FROM message_events WHERE message_id IN ({old_ids})"
            ))
            .await,
            0
        );
        assert_eq!(
            left(&format!(
                "SELECT COUNT(*) FROM messages WHERE id IN ({kept_ids})"
            ))
            .await,
            9
        );
        assert_eq!(
            left(&format!(
                "SELECT COUNT(*) FROM message_segments WHERE message_id IN ({kept_ids})"
            ))
            .await,
            9
        );
        assert_eq!(
            left(&format!(
                "SELECT COUNT(*) FROM messages WHERE id = {uncharged}"
            ))
            .await,
            1
        );
        assert_eq!(left("SELECT COUNT(*) FROM mo_messages WHERE received_at = (SELECT MIN(received_at) FROM mo_messages) AND status = 'routing'").await, 1);
        assert_eq!(left("SELECT COUNT(*) FROM mo_messages").await, 3);
        assert_eq!(
            left("SELECT CAST(COALESCE(SUM(count), 0) AS BIGINT) FROM purged_traffic WHERE kind = 'mt-delivered'").await,
            10
        );
        assert_eq!(left("SELECT CAST(COALESCE(SUM(count), 0) AS BIGINT) FROM purged_traffic WHERE kind = 'mo'").await, 6);

        assert_eq!(
            statement().await,
            before,
            "the statement of a purged month changed"
        );
        // Nothing more to purge at the same moment.
        let again = tongdao::retention::purge_once(&store, &config, now)
            .await
            .unwrap();
        assert_eq!(again.total(), 0, "{again:?}");
        assert_eq!(statement().await, before);
        server.stop().await;
        sim.shutdown();
    }
}

/// The billing settings a statement needs for August 2026 (as `billing_api.rs`).
async fn agreed(s: &Server) {
    for (op, min, max) in [("mobile", 3, 8), ("unicom", 1, 5)] {
        let (st, body) = s
            .put(
                &format!("/v1/admin/operators/{op}/billing"),
                ADMIN_KEY,
                json!({"imbalance_min_fen": min, "imbalance_max_fen": max}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{body}");
    }
    let (st, body) = s
        .put(
            "/v1/admin/partners/acme/agreement",
            ADMIN_KEY,
            json!({"start_date": "2026-07-01", "term_months": 24, "notice_months": 3, "remedy_days": 10}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let (st, body) = s
        .post(
            "/v1/admin/partners/acme/terms",
            ADMIN_KEY,
            json!({
                "effective_from": "2026-07", "tier_mode": "whole", "t1_fen": 5000, "t2_fen": 10000,
                "tiers": [
                    {"platform_bp": 5000, "partner_bp": 5000},
                    {"platform_bp": 4000, "partner_bp": 6000},
                    {"platform_bp": 3000, "partner_bp": 7000}
                ],
                "tax_bp": 600, "discrepancy_bp": 200, "payment_days": 5, "activation_rule": "pro-rata"
            }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    for (op, c, rate, mt, schedule) in [
        ("mobile", 1500, 5, 2, "M+2 day 15"),
        ("unicom", 1200, 3, 1, "end of M+2"),
    ] {
        let (st, body) = s
            .post(
                "/v1/admin/partners/acme/operator-terms",
                ADMIN_KEY,
                json!({"operator": op, "effective_from": "2026-07", "collection_bp": c,
                       "imbalance_rate_fen": rate, "balance_mt": mt, "balance_mo": 1, "schedule": schedule}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{body}");
    }
    for (op, bp) in [("mobile", 250), ("unicom", 175)] {
        let (st, body) = s
            .put(
                &format!("/v1/admin/operators/{op}/bad-debt/2026-08"),
                ADMIN_KEY,
                json!({"ratio_bp": bp}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{body}");
    }
}
