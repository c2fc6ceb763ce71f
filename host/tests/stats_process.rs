//! Issue 15: statistics and metrics of a real `tongdao serve`, on SQLite and
//! PostgreSQL (when `TONGDAO_TEST_DATABASE_URL` is set).
//!
//! - item 2: after a mixed scenario (undeliverable receipts, refused
//!   submits, a `kill -9` in the middle of a push and a restart, MOs, subscriptions
//!   made and cancelled, complaints, charges) `GET /v1/stats` equals the records
//!   exactly, per service and operator, by hour, day and month, as JSON and CSV.
//! - item 1: `/metrics` parses with a Prometheus text parser and its MT counters
//!   equal the records after a run.

#![allow(clippy::unwrap_used)]

#[path = "common/bulk.rs"]
mod bulk;
mod common;
#[path = "common/figures.rs"]
mod figures;

use std::time::{Duration, Instant};

use figures::{ByKey, Figures};
use serde_json::{Value, json};
use tongdao::partners;
use tongdao::schedule::runs;
use tongdao::services::FeeType;
use tongdao::store::Store;
use tongdao_smpp::sim::{Faults, Sim, SimConfig, SimHandle};

const ADMIN_KEY: &str = "stats-process-admin-key";
const FIRST_NUMBER: i64 = 13_900_000_000;

fn config(sim: &SimHandle, store_url: &str) -> String {
    format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n[admin]\nkey = \"{ADMIN_KEY}\"\n\
         [store]\nurl = \"{store_url}\"\n\
         [relay]\nlease_secs = 2\nretry_initial_ms = 100\nretry_max_ms = 1000\n\
         [compliance]\nquiet_hours = \"\"\n\
         [schedule]\ntick_ms = 100\nbatch = 100\nlease_secs = 2\n\
         [log]\nformat = \"json\"\n\
         [[operators]]\nname = \"mobile\"\naddress = \"{}\"\nsystem_id = \"st\"\npassword = \"pw\"\n\
         binds = 2\nwindow = 20\nprefixes = [\"13\"]\nsource_addr = \"10661234\"\n",
        sim.local_addr()
    )
}

/// A fresh store for a server process: a SQLite file in `dir`, or a database of
/// its own on the test PostgreSQL server. `None` when PostgreSQL is not configured.
async fn fresh_store(dir: &std::path::Path, postgres: bool) -> Option<(Store, String)> {
    let url = if postgres {
        let Ok(base) = std::env::var("TONGDAO_TEST_DATABASE_URL") else {
            common::skip("the PostgreSQL half: TONGDAO_TEST_DATABASE_URL is not set");
            return None;
        };
        let name = format!("tongdao_stats_{:08x}", rand::random::<u32>());
        let admin = Store::connect(&base, 1).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(admin.pool())
            .await
            .unwrap();
        admin.close().await;
        format!("{}/{name}", base.rsplit_once('/').unwrap().0)
    } else {
        format!("sqlite://{}", dir.join("tongdao-data/tongdao.db").display())
    };
    let store = Store::connect(&url, 2).await.unwrap();
    store.migrate().await.unwrap();
    Some((store, url))
}

/// The CSV export's `mt_queued`, `mt_delivered` and `mt_failed`, summed.
async fn csv_totals(base: &str) -> (i64, i64, i64) {
    let month = tongdao::clock::month_key(tongdao::store::now_ms());
    let text = reqwest::Client::new()
        .get(format!(
            "{base}/v1/stats?partner=stars&granularity=month&from={month}&to={month}"
        ))
        .header("accept", "text/csv")
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (q, d, f) = (col("mt_queued"), col("mt_delivered"), col("mt_failed"));
    let mut totals = (0, 0, 0);
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        totals.0 += cells[q].parse::<i64>().unwrap();
        totals.1 += cells[d].parse::<i64>().unwrap();
        totals.2 += cells[f].parse::<i64>().unwrap();
    }
    totals
}

/// Every MT of the partner final (nothing queued, in flight or held).
async fn all_final(store: &Store) -> bool {
    common::count_where(
        store,
        "status NOT IN ('delivered', 'failed', 'expired', 'cancelled')",
    )
    .await
        == 0
}

async fn post(base: &str, key: &str, path: &str, body: Value) -> Value {
    let response = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "POST {path}: {status} {body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item2_statistics_equal_the_records_after_failures_and_a_kill_9() {
    for postgres in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let Some((store, url)) = fresh_store(dir.path(), postgres).await else {
            continue;
        };
        let backend = if postgres { "postgres" } else { "sqlite" };
        scenario(dir.path(), &store, &url, backend).await;
        store.close().await;
    }
}

async fn scenario(dir: &std::path::Path, store: &Store, url: &str, backend: &str) {
    let sim = Sim::start(SimConfig {
        dlr_delay: Duration::from_millis(5),
        faults: Faults {
            undeliverable: 0.1,
            reject: 0.05,
            ..Faults::default()
        },
        ..SimConfig::default()
    })
    .await
    .unwrap();
    std::fs::write(dir.join("tongdao.toml"), config(&sim, url)).unwrap();
    let n = 3_000;
    let (partner, key) = partners::create(store, "stars", "Stars").await.unwrap();
    common::registry(store)
        .upload(&partner, &common::guest("horoscope"), "test")
        .await
        .unwrap();
    // A paid per-message push service (revenue from receipts) and a free one that
    // users join and leave through the API.
    let paid = bulk::approved_service_with(
        store,
        partner.id,
        "XZ",
        "horoscope",
        FeeType::PerMessage,
        10,
        None,
    )
    .await;
    let free = bulk::approved_service(store, partner.id, "XH", "horoscope").await;
    bulk::subscribers(store, partner.id, paid, FIRST_NUMBER, n).await;

    let (mut server, base) = common::start_server(dir);
    let run_id = post(
        &base,
        &key.key,
        &format!("/v1/services/{paid}/push"),
        json!({}),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    // Kill it hard in the middle of the fan-out, with receipts being applied.
    let started = Instant::now();
    loop {
        let run = runs::get(store, run_id).await.unwrap();
        if run.queued >= 1_000 && common::count_messages(store, "delivered").await > 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the fan-out did not start: {run:?}"
        );
        tokio::time::sleep(common::POLL).await;
    }
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();
    let at_kill = runs::get(store, run_id).await.unwrap();
    let delivered_at_kill = common::count_messages(store, "delivered").await;

    let (mut server, base) = common::start_server(dir);
    // Subscriptions through the API: 12 join the free service, 5 of them leave.
    let mut joined = Vec::new();
    for i in 0..12 {
        let body = post(
            &base,
            &key.key,
            &format!("/v1/services/{free}/subscriptions"),
            json!({ "msisdn": format!("1370000{i:04}") }),
        )
        .await;
        joined.push(body["subscription"]["id"].as_i64().unwrap());
    }
    for id in &joined[..5] {
        let response = reqwest::Client::new()
            .delete(format!("{base}/v1/subscriptions/{id}"))
            .bearer_auth(&key.key)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
    }
    // MOs to the paid service's number, and complaints.
    for i in 0..20 {
        sim.send_mo(&bulk::number(FIRST_NUMBER, i), "1066123401", "hello")
            .unwrap();
    }
    for i in 0..3 {
        post(
            &base,
            ADMIN_KEY,
            "/v1/admin/complaints",
            json!({"partner": "stars", "service_id": paid, "msisdn": bulk::number(FIRST_NUMBER, i), "cause": "content"}),
        )
        .await;
    }
    // The push finishes after the restart; every MT ends.
    common::wait_until("every MT final", Duration::from_secs(240), || async {
        let run = runs::get(store, run_id).await.unwrap();
        runs::FINAL.contains(&run.status.as_str()) && all_final(store).await
    })
    .await;
    common::wait_until("every MO routed", Duration::from_secs(60), || async {
        let (waiting,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM mo_messages WHERE status IN ('received', 'routing')",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        waiting == 0
    })
    .await;
    post(
        &base,
        ADMIN_KEY,
        "/v1/admin/billing/charge-pass?scan=full",
        json!({}),
    )
    .await;

    let want = figures::records(store, partner.id).await;
    let total = |k: &ByKey, f: fn(&Figures) -> i64| k.values().map(f).sum::<i64>();
    assert!(total(&want, |f| f.mt_queued) >= n, "{want:?}");
    assert!(
        total(&want, |f| f.mt_failed) > 0,
        "failures in the scenario"
    );
    assert!(total(&want, |f| f.mo) >= 20, "{want:?}");
    assert!(total(&want, |f| f.revenue_fen) > 0, "{want:?}");
    assert_eq!(total(&want, |f| f.subscriptions_new), 12);
    assert_eq!(total(&want, |f| f.subscriptions_cancelled), 5);
    assert_eq!(total(&want, |f| f.complaints), 3);
    // The roll-up catches up within seconds; then every granularity equals the
    // records exactly.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = figures::api_stats(&base, "stars", ADMIN_KEY, "day").await;
    while got != want && Instant::now() < deadline {
        tokio::time::sleep(common::POLL).await;
        got = figures::api_stats(&base, "stars", ADMIN_KEY, "day").await;
    }
    assert_eq!(got, want, "{backend}: daily statistics against the records");
    assert_eq!(
        figures::api_stats(&base, "stars", ADMIN_KEY, "hour").await,
        want,
        "{backend}: hourly"
    );
    assert_eq!(
        figures::api_stats(&base, "stars", ADMIN_KEY, "month").await,
        want,
        "{backend}: monthly"
    );
    let csv = csv_totals(&base).await;
    assert_eq!(
        csv,
        (
            total(&want, |f| f.mt_queued),
            total(&want, |f| f.mt_delivered),
            total(&want, |f| f.mt_failed)
        ),
        "{backend}: CSV"
    );
    server.kill().unwrap();
    server.wait().unwrap();
    eprintln!(
        "{backend}: kill -9 at {} of {n} queued, {delivered_at_kill} delivered; after the restart the \
         statistics equal the records: {:?}",
        at_kill.queued,
        want.iter()
            .map(|(k, f)| (
                k,
                f.mt_queued,
                f.mt_delivered,
                f.mt_failed,
                f.mo,
                f.revenue_fen
            ))
            .collect::<Vec<_>>()
    );
    sim.shutdown();
}

/// Every MT of the platform.
async fn count_all(store: &Store) -> i64 {
    common::count_where(store, "is_test = 0 AND partner_id IS NOT NULL").await
}

/// The value of every sample of `name`, summed over its labels.
fn metric_sum(scrape: &prometheus_parse::Scrape, name: &str) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

async fn scrape(base: &str) -> prometheus_parse::Scrape {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item1_metrics_parse_and_mt_counters_equal_the_records() {
    for postgres in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let Some((store, url)) = fresh_store(dir.path(), postgres).await else {
            continue;
        };
        let sim = Sim::start(SimConfig {
            dlr_delay: Duration::from_millis(5),
            faults: Faults {
                undeliverable: 0.1,
                ..Faults::default()
            },
            ..SimConfig::default()
        })
        .await
        .unwrap();
        std::fs::write(dir.path().join("tongdao.toml"), config(&sim, &url)).unwrap();
        let (partner, key) = partners::create(&store, "stars", "Stars").await.unwrap();
        common::registry(&store)
            .upload(&partner, &common::guest("horoscope"), "test")
            .await
            .unwrap();
        let service = bulk::approved_service(&store, partner.id, "XZ", "horoscope").await;
        let n = 400;
        bulk::subscribers(&store, partner.id, service, FIRST_NUMBER, n).await;
        let (mut server, base) = common::start_server(dir.path());
        let run_id = post(
            &base,
            &key.key,
            &format!("/v1/services/{service}/push"),
            json!({}),
        )
        .await["id"]
            .as_i64()
            .unwrap();
        common::wait_until("the push final", Duration::from_secs(120), || async {
            let run = runs::get(&store, run_id).await.unwrap();
            runs::FINAL.contains(&run.status.as_str()) && all_final(&store).await
        })
        .await;
        let count = |status: &'static str| {
            let store = store.clone();
            async move { common::count_messages(&store, status).await }
        };
        #[allow(clippy::cast_precision_loss)]
        let want = (
            count_all(&store).await as f64,
            count("delivered").await as f64,
            count("failed").await as f64,
        );
        assert!(want.2 > 0.0, "some receipts said UNDELIV");
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = scrape(&base).await;
        loop {
            let got = (
                metric_sum(&last, "tongdao_mt_queued_total"),
                metric_sum(&last, "tongdao_mt_delivered_total"),
                metric_sum(&last, "tongdao_mt_failed_total"),
            );
            if got == want {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "MT counters {got:?}, records {want:?}"
            );
            tokio::time::sleep(common::POLL).await;
            last = scrape(&base).await;
        }
        // The other families are there, with bounded labels.
        for name in [
            "tongdao_binds_up",
            "tongdao_mt_sent_total",
            "tongdao_submit_latency_seconds",
            "tongdao_module_calls_total",
            "tongdao_module_call_seconds",
            "tongdao_push_runs_started_total",
            "tongdao_push_runs_finished_total",
            "tongdao_queue_depth",
            "tongdao_db_probe_seconds",
        ] {
            assert!(
                last.samples.iter().any(|s| s.metric.starts_with(name)),
                "{name} missing from /metrics"
            );
        }
        assert_eq!(metric_sum(&last, "tongdao_binds_up"), 2.0);
        for sample in &last.samples {
            for (label, value) in sample.labels.iter() {
                assert!(
                    !(value.len() >= 11 && value.bytes().all(|b| b.is_ascii_digit())),
                    "{}: label {label} carries a number: {value}",
                    sample.metric
                );
            }
        }
        server.kill().unwrap();
        server.wait().unwrap();
        sim.shutdown();
        store.close().await;
    }
}

/// Issue 15 item 1: `[log] format = "json"` writes one JSON object per line, with no
/// ANSI colours when stderr is not a terminal.
#[test]
fn item1_json_log_lines_without_colours() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tongdao.toml"),
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[admin]\nkey = \"{ADMIN_KEY}\"\n[log]\nformat = \"json\"\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tongdao"))
        .args(["serve", "--config"])
        .arg(dir.path().join("tongdao.toml"))
        .current_dir(dir.path())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = lines
        .find(|l| l.as_ref().is_ok_and(|l| l.contains("tongdao is serving")))
        .expect("the server logged its start")
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!line.contains('\u{1b}'), "ANSI colours in {line}");
    let value: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(value["level"], "INFO", "{line}");
    assert_eq!(value["fields"]["message"], "tongdao is serving", "{line}");
    assert!(value["timestamp"].is_string(), "{line}");
}
