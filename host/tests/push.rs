//! Scheduled pushes end to end: a real compiled module
//! writes the bulletin, the scheduler fans it out to the active subscriptions, the
//! relay sends it over SMPP to the SMSC simulator, receipts come back; schedules and
//! runs through the HTTP API with partners kept apart. Issue 17: modules
//! built against contract 1.0.0 and 1.1.0 push side by side (item 9); recorded
//! calls replay (item 7). SQLite and PostgreSQL.

#![allow(clippy::unwrap_used)]

#[path = "common/bulk.rs"]
mod bulk;
mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tongdao::api::{self, AppState};
use tongdao::compliance::Compliance;
use tongdao::config::{ConcatMode, OperatorConfig, RelayConfig, ScheduleConfig};
use tongdao::mo::DialogueConfig;
use tongdao::modules::Registry;
use tongdao::partners::{self, Partner};
use tongdao::relay::Relay;
use tongdao::runtime::BulletinRequest;
use tongdao::schedule::{Scheduler, runs, schedules};
use tongdao::store::{Store, now_ms};
use tongdao_smpp::sim::{Sim, SimConfig, SimHandle};

const ADMIN_KEY: &str = "push-test-admin-key-0123";
const FIRST_NUMBER: i64 = 13_800_000_000;

fn operator(sim: &SimHandle) -> OperatorConfig {
    OperatorConfig {
        name: "mobile".into(),
        address: sim.local_addr().to_string(),
        system_id: "td".into(),
        password: "pw".into(),
        system_type: String::new(),
        binds: 2,
        window: 50,
        tps: 0,
        prefixes: vec!["13".into()],
        source_addr: "10661234".into(),
        concat: ConcatMode::Udh,
        ..Default::default()
    }
}

fn schedule_config() -> ScheduleConfig {
    ScheduleConfig {
        tick_ms: 100,
        batch: 500,
        lease_secs: 5,
        ..ScheduleConfig::default()
    }
}

/// The platform pieces a push goes through, with the HTTP API on loopback.
struct Rig {
    store: Store,
    registry: Arc<Registry>,
    scheduler: Arc<Scheduler>,
    relay: Arc<Relay>,
    base: String,
    http: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
}

impl Rig {
    async fn start(store: &Store, sim: Option<&SimHandle>, schedule: ScheduleConfig) -> Self {
        Self::start_with(store, sim, schedule, common::relay_compliance(store)).await
    }

    async fn start_with(
        store: &Store,
        sim: Option<&SimHandle>,
        schedule: ScheduleConfig,
        compliance: Compliance,
    ) -> Self {
        // Item 7 runs hostile fixtures live: admission reports, never blocks here.
        let registry = Arc::new(tongdao::modules::Registry::with_config(
            store.clone(),
            common::runtime(),
            common::reporting(),
        ));
        let operators: Vec<OperatorConfig> = sim.map(operator).into_iter().collect();
        let relay = Arc::new(Relay::start(
            store.clone(),
            RelayConfig {
                retry_initial_ms: 50,
                retry_max_ms: 500,
                lease_secs: 5,
                ..RelayConfig::default()
            },
            &operators,
            compliance.clone(),
        ));
        let dialogue = DialogueConfig::default();
        let scheduler = Arc::new(
            Scheduler::start(
                store.clone(),
                registry.clone(),
                relay.clone(),
                compliance.clone(),
                schedule,
                dialogue.short_code.clone(),
            )
            .unwrap(),
        );
        let app = api::router(
            AppState {
                store: store.clone(),
                registry: registry.clone(),
                relay: relay.clone(),
                scheduler: scheduler.clone(),
                compliance,
                admin_key_hash: partners::hash_key(ADMIN_KEY),
                max_module_bytes: 4 << 20,
                dialogue,
                settlement: Default::default(),
                webhooks: Default::default(),
                complaints: Default::default(),
                rates: std::sync::Arc::new(api::KeyRates::new(
                    tongdao::config::HttpConfig::default().rate_per_key_per_second,
                    tongdao::config::HttpConfig::default().rate_burst,
                )),
            },
            1 << 20,
        );
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            store: store.clone(),
            registry,
            scheduler,
            relay,
            base,
            http: reqwest::Client::new(),
            server,
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "GET" => self.http.get(url),
            "POST" => self.http.post(url),
            "PATCH" => self.http.patch(url),
            "DELETE" => self.http.delete(url),
            other => panic!("method {other}"),
        }
        .bearer_auth(key);
        let req = match body {
            Some(b) => req.json(&b),
            None => req,
        };
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn stop(self) {
        self.scheduler.stop().await;
        self.relay.stop();
        self.server.abort();
    }
}

/// A partner with the horoscope module uploaded through the registry, and its key.
async fn horoscope_partner(rig: &Rig, name: &str) -> (Partner, String) {
    let (partner, key) = partners::create(&rig.store, name, name).await.unwrap();
    rig.registry
        .upload(&partner, &common::guest("horoscope"), "test")
        .await
        .unwrap();
    (partner, key.key)
}

/// Wait until the run is final and every MT it queued is final; returns the run view.
async fn wait_run_done(rig: &Rig, key: &str, run_id: i64, timeout: Duration) -> Value {
    let started = Instant::now();
    loop {
        let (status, view) = rig
            .call("GET", &format!("/v1/runs/{run_id}"), key, None)
            .await;
        assert_eq!(status, StatusCode::OK, "{view}");
        let finished = runs::FINAL.contains(&view["status"].as_str().unwrap_or(""));
        let d = &view["delivery"];
        if finished && d["pending"] == 0 {
            return view;
        }
        assert!(
            started.elapsed() < timeout,
            "run {run_id} not done after {timeout:?}: {view}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The horoscope's text per sign for `date`, asked of the module directly.
async fn expected_texts(rig: &Rig, partner: &Partner, date: &str) -> HashMap<String, String> {
    let outcome = rig
        .registry
        .bulletin(
            partner,
            "horoscope",
            &BulletinRequest {
                service: "XZ".into(),
                push_id: "expected".into(),
                date: date.into(),
            },
        )
        .await
        .unwrap();
    let content = outcome.result.unwrap();
    bulk::SIGNS
        .iter()
        .map(|s| {
            (
                s.to_string(),
                content.text_for(Some(s)).unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_now_to_10000_subscribers_each_gets_its_own_variant_once() {
    for db in common::stores().await {
        let sim = Sim::start(SimConfig {
            dlr_delay: Duration::from_millis(5),
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let rig = Rig::start(&db.store, Some(&sim), schedule_config()).await;
        let (partner, key) = horoscope_partner(&rig, "stars").await;
        let service = bulk::approved_service(&db.store, partner.id, "XZ", "horoscope").await;
        let n = 10_000;
        bulk::subscribers(&db.store, partner.id, service, FIRST_NUMBER, n).await;

        // "push now" through the API; the run is queued and answered at once.
        let (status, run) = rig
            .call("POST", &format!("/v1/services/{service}/push"), &key, None)
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{run}");
        let run_id = run["id"].as_i64().unwrap();
        let view = wait_run_done(&rig, &key, run_id, Duration::from_secs(240)).await;
        assert_eq!(view["status"], "completed", "{} {view}", db.name);
        for (counter, value) in [
            ("subscribers", n),
            ("variants", 12),
            ("queued", n),
            ("blocked", 0),
            ("held", 0),
            ("skipped", 0),
        ] {
            assert_eq!(view[counter], value, "{} {counter}: {view}", db.name);
        }
        assert_eq!(view["delivery"]["sent"], n, "{view}");
        assert_eq!(view["delivery"]["delivered"], n, "{view}");
        assert_eq!(view["delivery"]["failed"], 0, "{view}");

        // Each subscriber received exactly its sign's text, once, at the SMSC.
        let date = view["push_date"].as_str().unwrap().to_string();
        let expected = expected_texts(&rig, &partner, &date).await;
        let mut seen: HashMap<String, usize> = HashMap::new();
        for message in sim.messages() {
            let i = message.destination_addr.parse::<i64>().unwrap() - FIRST_NUMBER;
            assert_eq!(
                message.text,
                expected[bulk::sign(i)],
                "{}: subscriber {i} got another sign's text",
                db.name
            );
            *seen.entry(message.destination_addr).or_default() += 1;
        }
        assert_eq!(
            seen.len(),
            n as usize,
            "{}: every subscriber got it",
            db.name
        );
        assert!(
            seen.values().all(|&c| c == 1),
            "{}: someone got it twice",
            db.name
        );

        // The outbox rows carry their basis and run: one per subscription.
        let (rows, distinct, basis_ok): (i64, i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), COUNT(DISTINCT subscription_id),
                SUM(CASE WHEN basis = 'subscription' AND service_id = $2 AND partner_id = $3 THEN 1 ELSE 0 END)
             FROM messages WHERE push_run_id = $1",
        )
        .bind(run_id)
        .bind(service)
        .bind(partner.id)
        .fetch_one(db.store.pool())
        .await
        .unwrap();
        assert_eq!((rows, distinct, basis_ok), (n, n, n), "{}", db.name);
        // A free service with no declared maximum and no partner daily cap is under
        // no cap, so the gate keeps no counters for it (capped pushes are counted:
        // `push_and_reply_share_the_monthly_cap` and `…_partner_daily_cap` in
        // tests/tests/services.rs).
        let (usage,): (i64,) = sqlx::query_as(
            "SELECT CAST(COALESCE(SUM(messages), 0) AS BIGINT) FROM subscription_usage",
        )
        .fetch_one(db.store.pool())
        .await
        .unwrap();
        assert_eq!(usage, 0, "{}", db.name);
        eprintln!("{}: push to {n} subscribers delivered, each once", db.name);
        rig.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_api_validates_input_and_keeps_partners_apart() {
    for db in common::stores().await {
        let rig = Rig::start(&db.store, None, schedule_config()).await;
        let (alice, alice_key) = horoscope_partner(&rig, "alice").await;
        let (bob, bob_key) = horoscope_partner(&rig, "bob").await;
        let service = bulk::approved_service(&db.store, alice.id, "XZ", "horoscope").await;
        let bobs = bulk::approved_service(&db.store, bob.id, "BB", "horoscope").await;
        let path = format!("/v1/services/{service}/schedules");

        // Create, list, read, change, delete.
        let (status, created) = rig
            .call(
                "POST",
                &path,
                &alice_key,
                Some(json!({"cron": "0 8 * * *", "missed": "skip"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{}: {created}", db.name);
        assert_eq!(created["kind"], "cron");
        assert_eq!(created["time_zone"], "Asia/Shanghai");
        assert_eq!(created["missed"], "skip");
        let next = tongdao::api::time::parse(created["next_fire_at"].as_str().unwrap()).unwrap();
        assert!(next > now_ms(), "{created}");
        let id = created["id"].as_i64().unwrap();
        let (status, list) = rig.call("GET", &path, &alice_key, None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(list["items"].as_array().unwrap().len(), 1);
        let (status, changed) = rig
            .call(
                "PATCH",
                &format!("/v1/schedules/{id}"),
                &alice_key,
                Some(json!({"cron": "30 7 * * MON-FRI", "missed": "run-once", "enabled": false})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{changed}");
        assert_eq!(changed["cron"], "30 7 * * MON-FRI");
        assert_eq!(changed["enabled"], false);
        let at = "2099-01-01T08:00:00+08:00";
        let (status, once) = rig
            .call("POST", &path, &alice_key, Some(json!({"at": at})))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{once}");
        assert_eq!(once["kind"], "once");
        assert_eq!(once["next_fire_at"], "2099-01-01T00:00:00.000Z");

        // Bad input: each with its code.
        for (body, code) in [
            (json!({"cron": "61 * * * *"}), "invalid-cron"),
            (json!({"cron": "every morning"}), "invalid-cron"),
            (json!({"cron": "0 0 30 2 *"}), "invalid-cron"),
            (json!({}), "invalid-schedule"),
            (json!({"cron": "0 8 * * *", "at": at}), "invalid-schedule"),
            (json!({"at": "2001-01-01T08:00"}), "invalid-time"),
            (json!({"at": "soon"}), "invalid-time"),
            (
                json!({"cron": "0 8 * * *", "time_zone": "Mars/Base"}),
                "invalid-time-zone",
            ),
            (
                json!({"cron": "0 8 * * *", "missed": "maybe"}),
                "invalid-missed-policy",
            ),
        ] {
            let (status, error) = rig
                .call("POST", &path, &alice_key, Some(body.clone()))
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {error}");
            assert_eq!(error["error"]["code"], code, "{body}: {error}");
        }
        let (status, error) = rig
            .call(
                "POST",
                &path,
                &alice_key,
                Some(json!({"cron": "0 8 * * *", "colour": "red"})),
            )
            .await;
        assert!(status.is_client_error(), "{error}");

        // another partner's service, schedule and run are not there at all.
        let (status, error) = rig
            .call(
                "GET",
                &format!("/v1/services/{service}/schedules"),
                &bob_key,
                None,
            )
            .await;
        assert_eq!(
            (status, &error["error"]["code"]),
            (StatusCode::NOT_FOUND, &json!("not-found"))
        );
        for (method, path) in [
            ("POST", format!("/v1/services/{service}/schedules")),
            ("POST", format!("/v1/services/{service}/push")),
            ("GET", format!("/v1/services/{service}/runs")),
            ("GET", format!("/v1/schedules/{id}")),
            ("PATCH", format!("/v1/schedules/{id}")),
            ("DELETE", format!("/v1/schedules/{id}")),
            ("GET", "/v1/services/999999/schedules".to_string()),
            ("POST", "/v1/services/999999/push".to_string()),
        ] {
            // A body of the route's own shape: a malformed one is refused before
            // anything is looked up (422), which says nothing of whose service it is.
            let body = match (method, path.ends_with("/push")) {
                ("GET" | "DELETE", _) => None,
                (_, true) => Some(json!({})),
                _ => Some(json!({"cron": "0 9 * * *"})),
            };
            let (status, error) = rig.call(method, &path, &bob_key, body).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {error}");
        }
        let (status, error) = rig
            .call("GET", "/v1/services/xyz/runs", &bob_key, None)
            .await;
        assert_eq!(
            (status, &error["error"]["code"]),
            (StatusCode::BAD_REQUEST, &json!("invalid-id"))
        );
        // Bob's own service works for Bob; a run of Alice's is not his to see.
        let (status, _) = rig
            .call(
                "GET",
                &format!("/v1/services/{bobs}/schedules"),
                &bob_key,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, run) = rig
            .call(
                "POST",
                &format!("/v1/services/{service}/push"),
                &alice_key,
                Some(json!({"date": "2026-05-01"})),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{run}");
        let run_id = run["id"].as_i64().unwrap();
        assert_eq!(run["push_date"], "2026-05-01");
        for path in [
            format!("/v1/runs/{run_id}"),
            format!("/v1/runs/{run_id}/cancel"),
        ] {
            let method = if path.ends_with("cancel") {
                "POST"
            } else {
                "GET"
            };
            let (status, _) = rig.call(method, &path, &bob_key, None).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        }
        let (status, error) = rig
            .call(
                "POST",
                &format!("/v1/services/{service}/push"),
                &alice_key,
                Some(json!({"date": "May 1st"})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
        // The admin reaches everyone's.
        let (status, runs_list) = rig
            .call(
                "GET",
                &format!("/v1/services/{service}/runs"),
                ADMIN_KEY,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert!(!runs_list["items"].as_array().unwrap().is_empty());

        let (status, _) = rig
            .call("DELETE", &format!("/v1/schedules/{id}"), &alice_key, None)
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _) = rig
            .call("GET", &format!("/v1/schedules/{id}"), &alice_key, None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        rig.stop().await;
    }
}

/// Downtime: a schedule whose firing is found long past its time runs once
/// late under `run-once` (earlier missed firings collapse into it) and is recorded
/// as skipped under `skip`; either way the next firing is in the future. Also: a
/// firing is turned into a run once, however often it is looked at.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_firings_run_once_late_or_are_skipped() {
    for db in common::stores().await {
        let store = &db.store;
        let partner = common::partner(store, "late").await;
        let service = bulk::approved_service(store, partner.id, "LT", "horoscope").await;
        let mut ids = HashMap::new();
        for policy in [schedules_policy("run-once"), schedules_policy("skip")] {
            let schedule = schedules::create(
                store,
                partner.id,
                service,
                schedules::ScheduleInput {
                    cron: Some("0 8 * * *".into()),
                    missed: Some(policy),
                    ..Default::default()
                },
                "Asia/Shanghai",
                "test",
            )
            .await
            .unwrap();
            ids.insert(policy.as_str(), schedule.id);
        }
        // The platform was down for three days: the stored next firing is old.
        let day = 86_400_000;
        let now = now_ms();
        let due = schedules::get(store, ids["skip"])
            .await
            .unwrap()
            .next_fire_at
            .unwrap()
            - 4 * day;
        sqlx::query("UPDATE push_schedules SET next_fire_at = $1")
            .bind(due)
            .execute(store.pool())
            .await
            .unwrap();
        let created = schedules::fire_due(store, now, 300_000).await.unwrap();
        assert_eq!(created.len(), 1, "{}: one late run (run-once)", db.name);
        // Looking again changes nothing: each firing is one run.
        assert!(
            schedules::fire_due(store, now, 300_000)
                .await
                .unwrap()
                .is_empty()
        );

        let late = runs::get(store, created[0]).await.unwrap();
        assert_eq!(late.schedule_id, Some(ids["run-once"]));
        assert_eq!(late.status, "pending");
        assert!(
            late.fire_at > due + 2 * day,
            "the latest missed firing, not the first"
        );
        assert!(late.late_ms > 0);
        let skipped: Vec<runs::Run> = runs::list(store, service, None, 10)
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.schedule_id == Some(ids["skip"]))
            .collect();
        assert_eq!(skipped.len(), 1, "{}", db.name);
        assert_eq!(skipped[0].status, "skipped");
        assert!(skipped[0].reason.as_deref().unwrap().contains("skip"));
        for id in ids.values() {
            let s = schedules::get(store, *id).await.unwrap();
            assert!(
                s.next_fire_at.unwrap() > now,
                "{}: next firing in the future",
                db.name
            );
        }
    }
}

fn schedules_policy(s: &str) -> tongdao::schedule::MissedPolicy {
    tongdao::schedule::MissedPolicy::parse(s).unwrap()
}

/// Wait until the run reaches `status`.
async fn wait_status(store: &Store, run_id: i64, status: &str) -> runs::Run {
    let started = Instant::now();
    loop {
        let run = runs::get(store, run_id).await.unwrap();
        if run.status == status {
            return run;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "run never became {status}: {run:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// a push fanned out during quiet hours is queued at once but may leave
/// only when the window ends: every MT's next attempt is the window's end, its
/// validity counts from there, and the SMSC sees nothing meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_hours_hold_a_pushed_bulletin_until_the_window_ends() {
    for db in common::stores().await {
        let sim = Sim::start(SimConfig::default()).await.unwrap();
        // A window from an hour ago to two hours ahead, local time.
        let local = tongdao::clock::local_seconds_of_day(now_ms());
        let hhmm = |s: i64| {
            let s = s.rem_euclid(86_400);
            format!("{:02}:{:02}", s / 3600, s / 60 % 60)
        };
        let compliance = Compliance::new(
            db.store.clone(),
            tongdao::compliance::ComplianceConfig {
                quiet_hours: format!("{}-{}", hhmm(local - 3600), hhmm(local + 7200)),
                signature: tongdao::compliance::settings::SignatureMode::Off,
                ..Default::default()
            },
        )
        .unwrap();
        let release = compliance.push_release_at(now_ms());
        assert!(release > now_ms() + 3_600_000, "the window is open now");
        let rig = Rig::start_with(&db.store, Some(&sim), schedule_config(), compliance).await;
        let (partner, key) = horoscope_partner(&rig, "night").await;
        let service = bulk::approved_service(&db.store, partner.id, "XZ", "horoscope").await;
        let n = 600;
        bulk::subscribers(&db.store, partner.id, service, FIRST_NUMBER, n).await;

        let (status, run) = rig
            .call("POST", &format!("/v1/services/{service}/push"), &key, None)
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{run}");
        let run_id = run["id"].as_i64().unwrap();
        let run = wait_status(&db.store, run_id, "completed").await;
        assert_eq!((run.queued, run.release_at), (n, Some(release)), "{run:?}");

        let validity = 36_000_000; // [relay] validity_secs default, in ms
        let (rows, held_to_release, valid_after): (i64, i64, i64) = sqlx::query_as(
            "SELECT COUNT(*),
                SUM(CASE WHEN status = 'queued' AND next_attempt_at = $2 THEN 1 ELSE 0 END),
                SUM(CASE WHEN expires_at = $3 THEN 1 ELSE 0 END)
             FROM messages WHERE push_run_id = $1",
        )
        .bind(run_id)
        .bind(release)
        .bind(release + validity)
        .fetch_one(db.store.pool())
        .await
        .unwrap();
        assert_eq!(
            (rows, held_to_release, valid_after),
            (n, n, n),
            "{}",
            db.name
        );
        let (quiet_events,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM message_events e JOIN messages m ON m.id = e.message_id
             WHERE m.push_run_id = $1 AND e.detail LIKE '%quiet hours%'",
        )
        .bind(run_id)
        .fetch_one(db.store.pool())
        .await
        .unwrap();
        assert_eq!(quiet_events, n, "the history says why they wait");
        // The binds look at the queue (twice, after the run completed) and find
        // nothing due.
        let looked = rig.relay.binds().iter().map(|b| b.claims).sum::<u64>();
        let binds = rig.relay.binds().len() as u64;
        common::wait_until(
            "the binds looked at the queue",
            Duration::from_secs(20),
            || async {
                rig.relay.binds().iter().map(|b| b.claims).sum::<u64>() >= looked + 2 * binds
            },
        )
        .await;
        assert_eq!(
            sim.stats().accepted,
            0,
            "{}: sent during quiet hours",
            db.name
        );
        let (_, view) = rig
            .call("GET", &format!("/v1/runs/{run_id}"), &key, None)
            .await;
        assert_eq!(view["delivery"]["pending"], n, "{view}");
        assert_eq!(view["delivery"]["sent"], 0, "{view}");
        rig.stop().await;
    }
}

/// suspending the partner in the middle of a fan-out stops it at a batch
/// boundary: the run pauses with its cursor, what it had queued is held, "push
/// now" is refused. On resume the held MTs are released and the run goes on from
/// its cursor: every subscriber gets the bulletin exactly once in the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspension_pauses_a_run_mid_fan_out_and_resume_completes_it_once() {
    for db in common::stores().await {
        let sim = Sim::start(SimConfig {
            dlr_delay: Duration::from_millis(5),
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let compliance = common::relay_compliance(&db.store);
        let schedule = ScheduleConfig {
            batch: 25,
            paused_recheck_secs: 1,
            ..schedule_config()
        };
        let rig = Rig::start_with(&db.store, Some(&sim), schedule, compliance.clone()).await;
        let (partner, key) = horoscope_partner(&rig, "pause").await;
        let service = bulk::approved_service(&db.store, partner.id, "XZ", "horoscope").await;
        let n = 5_000;
        bulk::subscribers(&db.store, partner.id, service, FIRST_NUMBER, n).await;

        let (status, run) = rig
            .call("POST", &format!("/v1/services/{service}/push"), &key, None)
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{run}");
        let run_id = run["id"].as_i64().unwrap();
        let started = Instant::now();
        while runs::get(&db.store, run_id).await.unwrap().queued < 100 {
            assert!(started.elapsed() < Duration::from_secs(60), "no fan-out");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        compliance
            .suspend_partner(partner.id, "admin", "test: content complaint")
            .await
            .unwrap();
        let paused = wait_status(&db.store, run_id, "paused").await;
        assert!(
            paused.queued < n,
            "{}: the suspension came too late to test anything",
            db.name
        );
        assert!(
            paused.reason.as_deref().unwrap().contains("suspended"),
            "{paused:?}"
        );
        // Nothing of the partner stays queued: the run's MTs are held or were sent.
        let (queued,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM messages WHERE push_run_id = $1 AND status = 'queued'",
        )
        .bind(run_id)
        .fetch_one(db.store.pool())
        .await
        .unwrap();
        assert_eq!(queued, 0, "{}", db.name);
        let (status, error) = rig
            .call("POST", &format!("/v1/services/{service}/push"), &key, None)
            .await;
        assert_eq!(
            (status, &error["error"]["code"]),
            (StatusCode::CONFLICT, &json!("not-sendable")),
            "{error}"
        );
        // Re-checked while suspended: still paused, cursor unchanged.
        let started = Instant::now();
        loop {
            let run = runs::get(&db.store, run_id).await.unwrap();
            assert_eq!(run.cursor_id, paused.cursor_id, "{run:?}");
            if run.attempts > paused.attempts && run.status == "paused" {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "{run:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        compliance
            .resume_partner(partner.id, "admin", "test: resolved")
            .await
            .unwrap();
        let view = wait_run_done(&rig, &key, run_id, Duration::from_secs(180)).await;
        assert_eq!(view["status"], "completed", "{view}");
        assert_eq!(view["queued"], n, "{view}");
        assert_eq!(view["delivery"]["delivered"], n, "{view}");
        let per_destination = sim.per_destination();
        assert_eq!(per_destination.len(), n as usize, "{}", db.name);
        assert!(
            per_destination.values().all(|&c| c == 1),
            "{}: twice",
            db.name
        );
        eprintln!(
            "{}: paused at {} of {n} queued; resumed from the cursor; {n} delivered once each",
            db.name, paused.queued
        );
        rig.stop().await;
    }
}

/// Issue 11 item 7: a bulletin lost to a transient fault. `hostile-flaky` runs past
/// its CPU budget on its first two bulletins and answers on the third: the run
/// retries with back-off, records both faults, and sends the third answer once.
/// `hostile-loop` never answers: the run gives up after `bulletin_attempts`, fails
/// with the reason, and the partner reads a notice over the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_7_a_push_run_retries_transient_faults_and_tells_the_partner_when_it_gives_up() {
    for db in common::stores().await {
        let sim = Sim::start(SimConfig {
            dlr_delay: Duration::from_millis(5),
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let schedule = ScheduleConfig {
            bulletin_attempts: 3,
            bulletin_retry_initial_ms: 50,
            bulletin_retry_max_ms: 200,
            ..schedule_config()
        };
        let rig = Rig::start(&db.store, Some(&sim), schedule).await;
        let mut keys = Vec::new();
        let mut services = Vec::new();
        for (name, fixture, code) in [
            ("flaky", "hostile-flaky", "FL"),
            ("looping", "hostile-loop", "LP"),
        ] {
            let (partner, key) = partners::create(&rig.store, name, name).await.unwrap();
            rig.registry
                .upload(&partner, &common::guest(fixture), "test")
                .await
                .unwrap();
            let service = bulk::approved_service(&db.store, partner.id, code, fixture).await;
            bulk::subscribers(
                &db.store,
                partner.id,
                service,
                FIRST_NUMBER + 10 * services.len() as i64,
                3,
            )
            .await;
            keys.push(key.key);
            services.push(service);
        }
        let (key, flaky) = (keys[0].clone(), services[0]);
        let (loop_key, looping) = (keys[1].clone(), services[1]);

        // Transient twice, then it answers: the run completes with both faults kept.
        let (status, run) = rig
            .call("POST", &format!("/v1/services/{flaky}/push"), &key, None)
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{run}");
        let view = wait_run_done(
            &rig,
            &key,
            run["id"].as_i64().unwrap(),
            Duration::from_secs(60),
        )
        .await;
        assert_eq!(
            view["status"],
            "completed",
            "{db_name}: {view}",
            db_name = db.name
        );
        assert_eq!(
            (
                view["queued"].as_i64(),
                view["delivery"]["delivered"].as_i64()
            ),
            (Some(3), Some(3))
        );
        let faults = view["faults"].as_array().unwrap();
        assert_eq!(faults.len(), 2, "{view}");
        for (i, fault) in faults.iter().enumerate() {
            assert_eq!(fault["attempt"], i as i64 + 1);
            assert_eq!(fault["kind"], "cpu-limit");
            let ms = |v: &Value| tongdao::api::time::parse(v.as_str().unwrap()).unwrap();
            assert!(ms(&fault["retry_at"]) >= ms(&fault["at"]), "{fault}");
        }
        let first = bulk::number(FIRST_NUMBER, 0);
        let texts: Vec<String> = sim
            .messages()
            .into_iter()
            .filter(|m| m.destination_addr.ends_with(&first))
            .map(|m| m.text)
            .collect();
        assert_eq!(texts.len(), 1, "{texts:?}");
        assert!(texts[0].contains("第 3 次尝试成功"), "{texts:?}");

        // Never answers: three attempts, then the run fails and the partner is told.
        let (status, run) = rig
            .call(
                "POST",
                &format!("/v1/services/{looping}/push"),
                &loop_key,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{run}");
        let run_id = run["id"].as_i64().unwrap();
        let view = wait_run_done(&rig, &loop_key, run_id, Duration::from_secs(60)).await;
        assert_eq!(view["status"], "failed", "{view}");
        assert_eq!(view["queued"], 0);
        let faults = view["faults"].as_array().unwrap();
        assert_eq!(faults.len(), 3, "{view}");
        assert!(faults[..2].iter().all(|f| f["retry_at"].is_string()));
        assert!(
            faults[2]["retry_at"].is_null(),
            "the last attempt is not retried"
        );
        let reason = view["reason"].as_str().unwrap();
        assert!(
            reason.contains("after 3 attempt(s)") && reason.contains("cpu-limit"),
            "{reason}"
        );
        let (status, notices) = rig.call("GET", "/v1/notices", &loop_key, None).await;
        assert_eq!(status, StatusCode::OK, "{notices}");
        let notices = notices["items"].as_array().unwrap();
        assert_eq!(notices.len(), 1, "{notices:?}");
        assert_eq!(notices[0]["kind"], "push-run-failed");
        assert_eq!(notices[0]["run_id"], run_id);
        assert_eq!(notices[0]["message"], reason);
        // The other partner reads none of it.
        let (status, theirs) = rig.call("GET", "/v1/notices", &key, None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(theirs["items"].as_array().unwrap().len(), 0, "{theirs}");
        rig.stop().await;
    }
}

/// The number blocks of the per-operator test: 138 is China Mobile's, 130 China
/// Unicom's, 133 China Telecom's (`tongdao::relay::numbering`); the simulator's
/// one operator serves every `13…` number.
const MOBILE_FIRST: i64 = 13_800_100_000;
const UNICOM_FIRST: i64 = 13_000_100_000;
const TELECOM_FIRST: i64 = 13_300_100_000;

/// Two subscribers of `service` in each of the three operators' blocks.
async fn subscribers_per_operator(store: &Store, partner_id: i64, service_id: i64) {
    for (prefix, first) in [
        ("m-", MOBILE_FIRST),
        ("u-", UNICOM_FIRST),
        ("t-", TELECOM_FIRST),
    ] {
        tongdao::subscriptions::bulk::seed(
            store,
            &tongdao::subscriptions::bulk::Cohort {
                partner_id,
                service_id,
                first,
                n: 2,
                id_prefix: prefix,
                fee_type: tongdao::services::FeeType::Free,
                price_fen: 0,
                source: "test",
                activated_at: 0,
                signs: false,
            },
        )
        .await
        .unwrap();
    }
}

/// A partner with three jokes in its content library (added over the API).
async fn jokes_partner(rig: &Rig, name: &str) -> (Partner, String) {
    let (partner, key) = partners::create(&rig.store, name, name).await.unwrap();
    let items: Vec<Value> = [
        "程序员的三大谎言：马上就好、这个很简单、我没改过那段代码。",
        "我问手机：我胖吗？它说：请勿遮挡屏幕。",
        "同事问我为什么总是笑，我说因为工资太少，哭不起。",
    ]
    .iter()
    .enumerate()
    .map(|(i, text)| json!({"id": format!("j{i}"), "text": text}))
    .collect();
    let (status, added) = rig
        .call(
            "POST",
            "/v1/content/jokes",
            &key.key,
            Some(json!({ "items": items })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    (partner, key.key)
}

/// Issue 17 item 9: a module built against `tongdao:partner@1.0.0` (the
/// horoscope example) and one built against `@1.1.0` (`contract-v1-1-0`: jokes
/// 2.0.0, whose bulletin is worded per operator) serve side by side in one
/// server, each through its own bindings and reported with its real contract
/// version (upload, admission report, module view). Both push through the relay
/// to the SMSC simulator, and the 1.1.0 addition takes effect: each subscriber
/// gets the text of the operator its number block belongs to, the rest the
/// fallback. SQLite and PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_17_item_9_a_1_0_0_and_a_1_1_0_module_serve_side_by_side() {
    for db in common::stores().await {
        let sim = Sim::start(SimConfig {
            dlr_delay: Duration::from_millis(5),
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let rig = Rig::start(&db.store, Some(&sim), schedule_config()).await;
        let (stars, stars_key) = horoscope_partner(&rig, "stars").await;
        let (jester, jester_key) = jokes_partner(&rig, "jester").await;
        let uploaded = rig
            .registry
            .upload(&jester, &common::guest("contract-v1-1-0"), "test")
            .await
            .unwrap();
        assert_eq!(
            (uploaded.module.as_str(), uploaded.wit_version.as_str()),
            ("jokes", "1.1.0")
        );
        let report = uploaded.admission.as_ref().unwrap();
        assert_eq!(report.contract, "1.1.0");
        assert!(report.passed, "{}: {report:?}", db.name);
        assert!(uploaded.activated);

        // Each module is reported with the version it was built against.
        for (name, key, version) in [
            ("horoscope", &stars_key, "1.0.0"),
            ("jokes", &jester_key, "1.1.0"),
        ] {
            let (status, view) = rig
                .call("GET", &format!("/v1/modules/{name}"), key, None)
                .await;
            assert_eq!(status, StatusCode::OK, "{view}");
            assert_eq!(view["versions"][0]["wit_version"], version, "{view}");
            let (status, admission) = rig
                .call(
                    "GET",
                    &format!("/v1/modules/{name}/versions/1/admission"),
                    key,
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{admission}");
            assert_eq!(admission["contract"], version, "{admission}");
        }

        let xz = bulk::approved_service(&db.store, stars.id, "XZ", "horoscope").await;
        bulk::subscribers(&db.store, stars.id, xz, FIRST_NUMBER, 24).await;
        let xh = bulk::approved_service(&db.store, jester.id, "XH", "jokes").await;
        subscribers_per_operator(&db.store, jester.id, xh).await;

        // Both push in the same server, at the same time.
        let mut runs = Vec::new();
        for (service, key) in [(xz, &stars_key), (xh, &jester_key)] {
            let (status, run) = rig
                .call("POST", &format!("/v1/services/{service}/push"), key, None)
                .await;
            assert_eq!(status, StatusCode::ACCEPTED, "{run}");
            runs.push((run["id"].as_i64().unwrap(), key));
        }
        let mut views = Vec::new();
        for (run_id, key) in runs {
            let view = wait_run_done(&rig, key, run_id, Duration::from_secs(120)).await;
            assert_eq!(view["status"], "completed", "{} {view}", db.name);
            views.push(view);
        }
        assert_eq!(views[0]["queued"], 24, "{}", views[0]);
        assert_eq!(views[0]["delivery"]["delivered"], 24, "{}", views[0]);
        // Jokes: a text for 移动 and one for 联通 (and the fallback, for 电信).
        assert_eq!(views[1]["variants"], 2, "{}", views[1]);
        assert_eq!(views[1]["queued"], 6, "{}", views[1]);
        assert_eq!(views[1]["delivery"]["delivered"], 6, "{}", views[1]);

        let date = views[0]["push_date"].as_str().unwrap().to_string();
        let signs = expected_texts(&rig, &stars, &date).await;
        let messages = sim.messages();
        let horoscope = messages
            .iter()
            .filter(|m| m.destination_addr.parse::<i64>().unwrap() < FIRST_NUMBER + 24)
            .filter(|m| m.destination_addr.parse::<i64>().unwrap() >= FIRST_NUMBER);
        let mut horoscope_count = 0;
        for message in horoscope {
            let i = message.destination_addr.parse::<i64>().unwrap() - FIRST_NUMBER;
            assert_eq!(message.text, signs[bulk::sign(i)], "{}", db.name);
            horoscope_count += 1;
        }
        assert_eq!(horoscope_count, 24, "{}", db.name);
        for (first, greeting) in [
            (MOBILE_FIRST, "移动用户您好！"),
            (UNICOM_FIRST, "联通用户您好！"),
            (TELECOM_FIRST, "您好！"),
        ] {
            for i in 0..2 {
                let number = bulk::number(first, i);
                let texts: Vec<&str> = messages
                    .iter()
                    .filter(|m| m.destination_addr.ends_with(&number))
                    .map(|m| m.text.as_str())
                    .collect();
                assert_eq!(texts.len(), 1, "{}: {number} got {texts:?}", db.name);
                assert!(
                    texts[0].starts_with(&format!("{greeting}今日笑话 joke j")),
                    "{}: {number} got {texts:?}",
                    db.name
                );
            }
        }
        rig.stop().await;
    }
}

/// The CLI against the rig's API with `key`; its standard output (it must succeed).
async fn cli(rig: &Rig, key: &str, args: &[&str]) -> String {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tongdao"));
    for (name, _) in std::env::vars() {
        if name.starts_with("TONGDAO_") {
            command.env_remove(name);
        }
    }
    command
        .env("RUST_LOG", "warn")
        .env("TONGDAO_KEY", key)
        .args(["--url", &rig.base])
        .args(args);
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "tongdao {args:?}: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Issue 17 item 7: live calls are recorded with the host's
/// answers (clock, random, key-value, content, attributes); a replay of a recorded
/// call gives identical output, whatever the store holds meanwhile; the same call
/// replayed on another version (the module's 1.1.0 rebuild) shows the
/// differences, through the API and `tongdao module replay`. A recording behind a
/// complaint outlives the complaint window; others go. SQLite and PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_17_item_7_a_recorded_call_replays_identically_and_another_version_differs() {
    for db in common::stores().await {
        let sim = Sim::start(SimConfig {
            dlr_delay: Duration::from_millis(5),
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let rig = Rig::start(&db.store, Some(&sim), schedule_config()).await;
        let (jester, key) = jokes_partner(&rig, "jester").await;
        let uploaded = rig
            .registry
            .upload(&jester, &common::guest("jokes"), "test")
            .await
            .unwrap();
        assert_eq!(uploaded.wit_version, "1.0.0");
        let xh = bulk::approved_service(&db.store, jester.id, "XH", "jokes").await;
        subscribers_per_operator(&db.store, jester.id, xh).await;

        // A live MO: a random joke (random, content count and get).
        let message = tongdao::runtime::MoMessage {
            subscriber: "m-0".into(),
            service: "XH".into(),
            text: "再来".into(),
            received_at_ms: now_ms(),
        };
        let outcome = rig
            .registry
            .on_mo(&jester, "jokes", &message)
            .await
            .unwrap();
        let reply = outcome.result.unwrap().unwrap();
        let call = outcome
            .call_id
            .expect("a call that wrote a text is recorded");
        let recording = outcome.recording.unwrap();
        let asked: Vec<&str> = recording.answers.iter().map(|a| a.call.as_str()).collect();
        assert!(
            asked.contains(&"random.next-u64")
                && asked.contains(&"content.count")
                && asked.contains(&"content.get"),
            "{asked:?}"
        );

        // Listed with the module's calls.
        let (status, calls) = rig.call("GET", "/v1/modules/jokes/calls", &key, None).await;
        assert_eq!(status, StatusCode::OK, "{calls}");
        let listed = &calls["items"][0];
        assert_eq!(
            (listed["id"].as_i64(), listed["export"].as_str()),
            (Some(call), Some("on-mo"))
        );
        assert_eq!(listed["output"]["ok"], reply.as_str());

        // The library changes (every joke goes): the replay still reads what the
        // call read, and answers the same, every time.
        sqlx::query("DELETE FROM content_items WHERE partner_id = $1")
            .bind(jester.id)
            .execute(db.store.pool())
            .await
            .unwrap();
        for _ in 0..2 {
            let started = Instant::now();
            let (status, replay) = rig
                .call("POST", &format!("/v1/calls/{call}/replay"), &key, None)
                .await;
            let took = started.elapsed();
            assert_eq!(status, StatusCode::OK, "{replay}");
            assert_eq!(replay["identical"], true, "{}: {replay}", db.name);
            assert_eq!(replay["replayed_output"]["ok"], reply.as_str(), "{replay}");
            assert_eq!(replay["replayed_output"], replay["recorded_output"]);
            assert_eq!(replay["differences"].as_array().unwrap().len(), 0);
            assert_eq!(
                (
                    replay["recorded_version"].as_i64(),
                    replay["replayed_version"].as_i64()
                ),
                (Some(1), Some(1))
            );
            assert_eq!(replay["sent"], false);
            let (bytes,): (i64,) = sqlx::query_as(
                "SELECT CAST(LENGTH(recording) + LENGTH(request) + LENGTH(output) AS BIGINT)
                 FROM call_recordings WHERE id = $1",
            )
            .bind(call)
            .fetch_one(db.store.pool())
            .await
            .unwrap();
            eprintln!(
                "{}: on-mo recording: {} answers, {bytes} bytes of JSON; replay over the API {took:?}",
                db.name,
                recording.answers.len()
            );
        }

        // Version 2: the module rebuilt against 1.1.0 (it counts jokes told in the
        // key-value store and says so). Replayed on it, the call differs.
        let second = rig
            .registry
            .upload(&jester, &common::guest("contract-v1-1-0"), "test")
            .await
            .unwrap();
        assert_eq!((second.version, second.wit_version.as_str()), (2, "1.1.0"));
        let (status, replay) = rig
            .call(
                "POST",
                &format!("/v1/calls/{call}/replay?version=2"),
                &key,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{replay}");
        assert_eq!(replay["identical"], false, "{replay}");
        assert_eq!(
            (
                replay["replayed_version"].as_i64(),
                replay["replayed_wit_version"].as_str(),
                replay["recorded_wit_version"].as_str()
            ),
            (Some(2), Some("1.1.0"), Some("1.0.0"))
        );
        let whats: Vec<&str> = replay["differences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["what"].as_str().unwrap())
            .collect();
        assert!(whats.contains(&"output"), "{replay}");
        assert!(whats.contains(&"unrecorded-call"), "kv.incr: {replay}");
        let replayed = replay["replayed_output"].to_string();
        assert_ne!(replay["replayed_output"], replay["recorded_output"]);
        // Its `kv.incr` was not in the recording: `unavailable`, a host failure.
        assert!(replayed.contains("not in the recording"), "{replayed}");
        // Nothing was written: the rebuild's counter is not in the store.
        let (kv,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM kv_entries WHERE partner_id = $1")
            .bind(jester.id)
            .fetch_one(db.store.pool())
            .await
            .unwrap();
        assert_eq!(kv, 0, "{}", db.name);

        // The same through the CLI.
        let out = cli(&rig, &key, &["module", "replay", &call.to_string()]).await;
        assert!(
            out.lines()
                .any(|l| l.starts_with("identical") && l.ends_with("yes")),
            "{out}"
        );
        let out = cli(
            &rig,
            &key,
            &["module", "replay", &call.to_string(), "--with-version", "2"],
        )
        .await;
        assert!(out.contains("differs (output)"), "{out}");
        assert!(out.contains("differs (unrecorded-call)"), "{out}");
        let out = cli(&rig, &key, &["module", "calls", "jokes"]).await;
        assert!(out.contains("on-mo"), "{out}");
        // Another partner cannot replay it.
        let (_, other_key) = horoscope_partner(&rig, "stars").await;
        let (status, refused) = rig
            .call(
                "POST",
                &format!("/v1/calls/{call}/replay"),
                &other_key,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{refused}");
        assert_eq!(refused["error"]["code"], "not-found");

        // A push: its bulletin call is recorded; a complaint names one of its MTs.
        // (The library is empty now: a joke goes back in first.)
        let (status, _) = rig
            .call(
                "POST",
                "/v1/content/jokes",
                &key,
                Some(json!({"items": [{"id": "j9", "text": "今天的笑话：周一。"}]})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, run) = rig
            .call("POST", &format!("/v1/services/{xh}/push"), &key, None)
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{run}");
        let run_id = run["id"].as_i64().unwrap();
        let view = wait_run_done(&rig, &key, run_id, Duration::from_secs(60)).await;
        assert_eq!(view["status"], "completed", "{}: {view}", db.name);
        let (message_id,): (i64,) =
            sqlx::query_as("SELECT id FROM messages WHERE push_run_id = $1 ORDER BY id LIMIT 1")
                .bind(run_id)
                .fetch_one(db.store.pool())
                .await
                .unwrap();
        tongdao::complaints::file(
            &db.store,
            &tongdao::complaints::ComplaintsConfig::default(),
            tongdao::complaints::NewComplaint {
                partner_id: jester.id,
                service_id: Some(xh),
                msisdn: None,
                message_id: Some(message_id),
                channel: "10086".into(),
                cause: "content".into(),
                note: "不好笑".into(),
            },
            "test",
        )
        .await
        .unwrap();
        // Long after every window: only the recording behind the complaint stays.
        let config = tongdao::modules::RegistryConfig::default();
        let later = now_ms() + 400 * 86_400_000;
        tongdao::modules::recordings::purge_batch(&db.store, &config, later, 1000)
            .await
            .unwrap();
        let kept: Vec<(String,)> =
            sqlx::query_as("SELECT export FROM call_recordings WHERE partner_id = $1")
                .bind(jester.id)
                .fetch_all(db.store.pool())
                .await
                .unwrap();
        assert_eq!(kept, vec![("bulletin".to_string(),)], "{}", db.name);
        rig.stop().await;
    }
}

/// Issue 18 item 2: a run's delivery counts under many pollers. A
/// count that was slow is shared: within its reuse window every caller gets that
/// count, even after the MTs moved on; a quick count is never reused, so small runs
/// stay exact on every call (`runs::view`, which the API and the console use).
/// The MTs are queued by a relay with no binds, then sent by one that has them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue18_item2_slow_run_counts_are_shared_quick_ones_exact() {
    for db in common::stores().await {
        let sim = Sim::start(SimConfig {
            dlr_delay: Duration::from_millis(5),
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let store = &db.store;
        let (partner, _) = partners::create(store, "stars", "Stars").await.unwrap();
        let registry = Arc::new(common::registry(store));
        registry
            .upload(&partner, &common::guest("horoscope"), "test")
            .await
            .unwrap();
        let service = bulk::approved_service(store, partner.id, "XZ", "horoscope").await;
        let n = 300;
        bulk::subscribers(store, partner.id, service, FIRST_NUMBER, n).await;
        let compliance = common::relay_compliance(store);
        let no_binds = Arc::new(Relay::start(
            store.clone(),
            RelayConfig::default(),
            &[OperatorConfig {
                binds: 0,
                ..operator(&sim)
            }],
            compliance.clone(),
        ));
        let scheduler = Scheduler::start(
            store.clone(),
            registry,
            no_binds.clone(),
            compliance.clone(),
            schedule_config(),
            DialogueConfig::default().short_code,
        )
        .unwrap();
        let run = scheduler
            .push_now(partner.id, service, None, "test")
            .await
            .unwrap();
        common::wait_until("the fan-out done", Duration::from_secs(60), || async {
            runs::get(store, run.id).await.unwrap().status == "completed"
        })
        .await;
        scheduler.stop().await;
        no_binds.stop();

        // Counted as if slow, and kept for good.
        let always = runs::Sharing {
            from: Duration::ZERO,
            factor: u32::MAX,
            max: Duration::from_secs(3600),
        };
        let before = runs::delivery_shared(store, run.id, always).await.unwrap();
        assert_eq!((before.pending, before.delivered), (n, 0), "{}", db.name);

        let relay = Relay::start(
            store.clone(),
            RelayConfig::default(),
            &[operator(&sim)],
            compliance,
        );
        common::wait_until("every MT delivered", Duration::from_secs(120), || async {
            runs::delivery(store, run.id).await.unwrap().delivered == n
        })
        .await;
        relay.stop();

        // The shared count is reused within its window, by any number of callers.
        let shared = futures_util::future::join_all(
            (0..8).map(|_| runs::delivery_shared(store, run.id, always)),
        )
        .await;
        for counted in shared {
            assert_eq!(counted.unwrap(), before, "{}", db.name);
        }
        // A quick count is made again on every call: exact.
        let exact = runs::delivery_shared(store, run.id, runs::SHARING)
            .await
            .unwrap();
        assert_eq!((exact.pending, exact.delivered), (0, n), "{}", db.name);
        let run = runs::get(store, run.id).await.unwrap();
        let view = runs::view(store, run).await.unwrap();
        assert_eq!(view.delivery, exact, "{}", db.name);
        sim.shutdown();
    }
}
