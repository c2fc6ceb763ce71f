//! Pushes with real `tongdao serve` processes: `kill -9` in the
//! middle of a fan-out and a restart leave exact totals and no subscriber twice;
//! three replicas on one PostgreSQL database fire a schedule once and every
//! subscriber gets one message, with the sending spread over the replicas.

#![allow(clippy::unwrap_used)]

#[path = "common/bulk.rs"]
mod bulk;
mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use tongdao::partners;
use tongdao::schedule::runs;
use tongdao::store::Store;
use tongdao_smpp::sim::{Sim, SimConfig, SimHandle};

const ADMIN_KEY: &str = "push-process-admin-key";
const FIRST_NUMBER: i64 = 13_900_000_000;

fn config(sim: &SimHandle, system_id: &str, extra: &str) -> String {
    format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n[admin]\nkey = \"{ADMIN_KEY}\"\n\
         [relay]\nlease_secs = 2\nretry_initial_ms = 100\nretry_max_ms = 1000\n\
         [compliance]\nquiet_hours = \"\"\n\
         {extra}\n\
         [[operators]]\nname = \"mobile\"\naddress = \"{}\"\nsystem_id = \"{system_id}\"\npassword = \"pw\"\n\
         binds = 2\nwindow = 20\nprefixes = [\"13\"]\nsource_addr = \"10661234\"\n",
        sim.local_addr()
    )
}

/// A partner with the horoscope module, an approved service and `n` subscribers.
async fn seed(store: &Store, n: i64) -> (String, i64) {
    let (partner, key) = partners::create(store, "stars", "Stars").await.unwrap();
    common::registry(store)
        .upload(&partner, &common::guest("horoscope"), "test")
        .await
        .unwrap();
    let service = bulk::approved_service(store, partner.id, "XZ", "horoscope").await;
    bulk::subscribers(store, partner.id, service, FIRST_NUMBER, n).await;
    (key.key, service)
}

/// Wait until the run is final and all its MTs are final.
async fn wait_done(store: &Store, run_id: i64, timeout: Duration) -> (runs::Run, runs::Delivery) {
    let started = Instant::now();
    loop {
        let run = runs::get(store, run_id).await.unwrap();
        let delivery = runs::delivery(store, run_id).await.unwrap();
        if runs::FINAL.contains(&run.status.as_str()) && delivery.pending == 0 {
            return (run, delivery);
        }
        assert!(
            started.elapsed() < timeout,
            "run not done after {timeout:?}: {run:?} {delivery:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The run's MTs: (rows, distinct subscriptions).
async fn outbox_rows(store: &Store, run_id: i64) -> (i64, i64) {
    sqlx::query_as(
        "SELECT COUNT(*), COUNT(DISTINCT subscription_id) FROM messages WHERE push_run_id = $1",
    )
    .bind(run_id)
    .fetch_one(store.pool())
    .await
    .unwrap()
}

/// At the SMSC: every subscriber reached, and duplicates no more than the MTs the
/// relay resent under its unknown-outcome rule (the link died with a submit open).
async fn check_smsc(store: &Store, sim: &SimHandle, run_id: i64, n: i64) -> usize {
    let per_destination = sim.per_destination();
    assert_eq!(
        per_destination.len(),
        n as usize,
        "every subscriber reached"
    );
    let (other_runs,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM messages WHERE push_run_id IS NULL OR push_run_id <> $1",
    )
    .bind(run_id)
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(other_runs, 0, "only this run's MTs are in the outbox");
    common::assert_duplicates_are_marked(store, &per_destination).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_fan_out_and_restart_totals_exact_no_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(SimConfig {
        dlr_delay: Duration::from_millis(5),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    // Small batches and a short lease: the fan-out takes many transactions, and the
    // restarted process takes the dead one's run over quickly.
    std::fs::write(
        dir.path().join("tongdao.toml"),
        config(
            &sim,
            "td",
            "[schedule]\ntick_ms = 100\nbatch = 40\nlease_secs = 2\n",
        ),
    )
    .unwrap();
    let url = format!(
        "sqlite://{}",
        dir.path().join("tongdao-data/tongdao.db").display()
    );
    let store = Store::connect(&url, 2).await.unwrap();
    store.migrate().await.unwrap();
    let n = 20_000;
    let (key, service) = seed(&store, n).await;

    let (mut server, base) = common::start_server(dir.path());
    let response = common::post_json(
        &reqwest::Client::new(),
        &format!("{base}/v1/services/{service}/push"),
        &key,
        &serde_json::json!({}),
    )
    .await;
    let run_id = response["id"].as_i64().unwrap();

    // Kill it hard once the fan-out is under way.
    let started = Instant::now();
    loop {
        let run = runs::get(&store, run_id).await.unwrap();
        if run.queued >= 2_000 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the fan-out did not start: {run:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();
    let at_kill = runs::get(&store, run_id).await.unwrap();
    assert_eq!(
        at_kill.status, "running",
        "the kill came too late to test anything"
    );
    assert!(at_kill.queued < n, "{at_kill:?}");

    let (mut server, _) = common::start_server(dir.path());
    let (run, delivery) = wait_done(&store, run_id, Duration::from_secs(240)).await;
    server.kill().unwrap();
    server.wait().unwrap();

    assert_eq!(run.status, "completed", "{run:?}");
    assert!(run.attempts >= 2, "claimed again after the kill: {run:?}");
    assert_eq!((run.subscribers, run.queued), (n, n), "{run:?}");
    assert_eq!(outbox_rows(&store, run_id).await, (n, n));
    assert_eq!(delivery.delivered, n, "{delivery:?}");
    let duplicates = check_smsc(&store, &sim, run_id, n).await;
    eprintln!(
        "kill -9 at {} of {n} queued (cursor {}); after restart {n} queued once each, {n} delivered; \
         SMSC duplicates under the relay's unknown-outcome rule: {duplicates}",
        at_kill.queued, at_kill.cursor_id
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_postgres_fire_a_schedule_once() {
    let Ok(base_url) = std::env::var("TONGDAO_TEST_DATABASE_URL") else {
        common::skip("the three-replica test: TONGDAO_TEST_DATABASE_URL is not set");
        return;
    };
    // A database of its own.
    let name = format!("tongdao_replicas_{:08x}", rand::random::<u32>());
    let admin = Store::connect(&base_url, 1).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(admin.pool())
        .await
        .unwrap();
    admin.close().await;
    let url = format!("{}/{name}", base_url.rsplit_once('/').unwrap().0);
    let store = Store::connect(&url, 2).await.unwrap();
    store.migrate().await.unwrap();
    let n = 6_000;
    let (key, service) = seed(&store, n).await;

    let sim = Sim::start(SimConfig {
        dlr_delay: Duration::from_millis(5),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut servers = Vec::new();
    for (k, dir) in dirs.iter().enumerate() {
        std::fs::write(
            dir.path().join("tongdao.toml"),
            config(
                &sim,
                &format!("replica{k}"),
                &format!(
                    "[store]\nurl = \"{url}\"\n[schedule]\ntick_ms = 200\nbatch = 500\nlease_secs = 5\n"
                ),
            ),
        )
        .unwrap();
        servers.push(common::start_server(dir.path()));
    }

    // One cron schedule matching a second a few seconds from now (Asia/Shanghai).
    let at = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(6))
        .unwrap()
        .to_zoned(tongdao::schedule::cron::time_zone("Asia/Shanghai").unwrap());
    let cron = format!(
        "{} {} {} {} {} *",
        at.second(),
        at.minute(),
        at.hour(),
        at.day(),
        at.month()
    );
    let created = common::post_json(
        &reqwest::Client::new(),
        &format!("{}/v1/services/{service}/schedules", servers[0].1),
        &key,
        &serde_json::json!({ "cron": cron }),
    )
    .await;
    let schedule_id = created["id"].as_i64().unwrap();
    let fire_at = at.timestamp().as_millisecond() / 1000 * 1000;
    assert_eq!(
        created["next_fire_at"],
        tongdao::api::time::format(fire_at),
        "{created}"
    );

    // Wait for the firing's run, then for every MT of it.
    let started = Instant::now();
    let run_id = loop {
        let found: Option<(i64,)> =
            sqlx::query_as("SELECT id FROM push_runs WHERE schedule_id = $1")
                .bind(schedule_id)
                .fetch_optional(store.pool())
                .await
                .unwrap();
        if let Some((id,)) = found {
            break id;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the schedule never fired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (run, delivery) = wait_done(&store, run_id, Duration::from_secs(240)).await;
    for (mut server, _) in servers {
        server.kill().unwrap();
        server.wait().unwrap();
    }

    // Fired once, by three replicas ticking many times since.
    let (runs_of_schedule,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM push_runs WHERE schedule_id = $1")
            .bind(schedule_id)
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!(runs_of_schedule, 1);
    assert_eq!(run.fire_at, fire_at);
    assert_eq!(run.status, "completed", "{run:?}");
    assert_eq!((run.subscribers, run.queued), (n, n), "{run:?}");
    assert_eq!(outbox_rows(&store, run_id).await, (n, n));
    assert_eq!(delivery.delivered, n, "{delivery:?}");
    let duplicates = check_smsc(&store, &sim, run_id, n).await;
    // Every replica's binds send from the shared outbox.
    let mut by_replica: HashMap<String, usize> = HashMap::new();
    for submit in sim.received() {
        *by_replica.entry(submit.system_id).or_default() += 1;
    }
    let replicas: HashSet<&String> = by_replica.keys().collect();
    assert!(
        replicas.len() >= 2,
        "the relay work was not spread: {by_replica:?}"
    );
    eprintln!(
        "three replicas: schedule fired once (run {run_id}); {n} delivered; submits per replica {by_replica:?}; \
         SMSC duplicates: {duplicates}"
    );
}
