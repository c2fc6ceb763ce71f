//! End-to-end relay throughput: N MTs queued in the outbox, sent over loopback SMPP
//! to the simulator by two operators' binds, every receipt matched. Ends with one
//! summary line for scripts: `relay: mt=… seconds=… mt_per_s=… store=…`.
//!
//! `cargo bench -p tongdao --bench relay [-- N]` (default 20,000). The store is a
//! temporary SQLite file, or a fresh database on the PostgreSQL server of
//! `TONGDAO_BENCH_DATABASE_URL` (e.g. `postgres://postgres@127.0.0.1:5432/test`;
//! the database is created beside the named one and dropped at the end).

#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use tongdao::config::{OperatorConfig, RelayConfig};
use tongdao::relay::{Relay, Routes, outbox};
use tongdao::store::Store;
use tongdao_smpp::sim::{Sim, SimConfig};

fn main() {
    let n: i64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(n));
}

async fn count(store: &Store, status: &str) -> i64 {
    let (c,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM messages WHERE status = $1")
        .bind(status)
        .fetch_one(store.pool())
        .await
        .unwrap();
    c
}

/// A fresh store: SQLite in `dir`, or a new database on the PostgreSQL server of
/// `TONGDAO_BENCH_DATABASE_URL` (returned with its name and the server's URL, to drop).
async fn bench_store(dir: &std::path::Path) -> (Store, &'static str, Option<(String, String)>) {
    let Ok(base) = std::env::var("TONGDAO_BENCH_DATABASE_URL") else {
        let url = format!("sqlite://{}", dir.join("bench.db").display());
        let store = Store::connect(&url, 8).await.unwrap();
        store.migrate().await.unwrap();
        return (store, "sqlite", None);
    };
    let name = format!("tongdao_bench_{}", std::process::id());
    let admin = Store::connect(&base, 1).await.unwrap();
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
        .execute(admin.pool())
        .await
        .unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(admin.pool())
        .await
        .unwrap();
    admin.close().await;
    let (prefix, _) = base.rsplit_once('/').unwrap();
    let store = Store::connect(&format!("{prefix}/{name}"), 8)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    (store, "postgres", Some((base, name)))
}

async fn run(n: i64) {
    let dir = tempfile::tempdir().unwrap();
    let (store, store_name, created) = bench_store(dir.path()).await;
    let sim = Sim::start(SimConfig {
        dlr_delay: Duration::from_millis(1),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let operators: Vec<OperatorConfig> = [("mobile", "138"), ("unicom", "130")]
        .iter()
        .map(|(name, prefix)| OperatorConfig {
            name: (*name).into(),
            address: sim.local_addr().to_string(),
            system_id: format!("bench-{name}"),
            password: "pw".into(),
            system_type: String::new(),
            binds: 2,
            window: 50,
            tps: 0,
            prefixes: vec![(*prefix).into()],
            source_addr: "10661234".into(),
            concat: tongdao::config::ConcatMode::Udh,
            ..Default::default()
        })
        .collect();
    let relay_config = RelayConfig {
        batch: 512,
        ..RelayConfig::default()
    };

    // Queue everything first (not timed), then start the relay and time it.
    let routes = Routes::new(&operators);
    let compliance = common::relay_compliance(&store);
    let gate = outbox::Gate {
        routes: &routes,
        relay: &relay_config,
        compliance: &compliance,
    };
    let audience = common::Audience::new(&store, &["mobile", "unicom"]).await;
    let queue_started = Instant::now();
    for i in 0..n {
        let prefix = if i % 2 == 0 { "138" } else { "130" };
        let message = audience
            .mt(
                &store,
                format!("{prefix}{i:08}"),
                format!("【星座】第{i}条运势：今日宜出行"),
            )
            .await;
        outbox::enqueue(&store, gate, message).await.unwrap();
    }
    let queued_in = queue_started.elapsed();

    let started = Instant::now();
    let relay = Relay::start(store.clone(), relay_config, &operators, compliance);
    let mut submitted_at = None;
    loop {
        let delivered = count(&store, "delivered").await;
        if submitted_at.is_none()
            && count(&store, "queued").await == 0
            && count(&store, "submitting").await == 0
        {
            submitted_at = Some(started.elapsed());
        }
        if delivered >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    relay.stop();
    let (receipts, on_arrival): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COALESCE(SUM(CASE WHEN matched_at = received_at THEN 1 ELSE 0 END), 0)
         FROM receipts",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    let stats = sim.stats();
    println!(
        "queued {n} MTs in {:.1} s (one transaction each, not timed below)",
        queued_in.as_secs_f64()
    );
    println!(
        "all submitted after {:.2} s; all receipts matched (delivered) after {seconds:.2} s",
        submitted_at.unwrap_or_default().as_secs_f64()
    );
    println!(
        "simulator: {} submits accepted, {} receipts sent",
        stats.accepted, stats.receipts_sent
    );
    println!(
        "receipts stored: {receipts}, matched on arrival: {on_arrival}, matched later: {}",
        receipts - on_arrival
    );
    println!(
        "relay: mt={n} seconds={seconds:.2} mt_per_s={:.0} store={store_name}",
        n as f64 / seconds
    );
    store.close().await;
    if let Some((base, name)) = created {
        let admin = Store::connect(&base, 1).await.unwrap();
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
            .execute(admin.pool())
            .await
            .unwrap();
    }
}
