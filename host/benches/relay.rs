//! End-to-end relay throughput: N MTs queued in the outbox, sent over loopback SMPP
//! to the simulator by two operators' binds, every receipt matched. Ends with one
//! summary line for scripts: `relay: mt=… seconds=… mt_per_s=… store=…`.
//!
//! `cargo bench -p tongdao --bench relay [-- N] [--protocol smpp|cmpp3|sgip12] [--max-awaited=A]`
//! (default 20,000 over SMPP). Over CMPP 3.0 both operators bind to one ISMG
//! simulator; over SGIP 1.2 each operator has its own SMG simulator, which connects
//! back to that operator's listener, and one bind (SGIP links are one per operator).
//! The summary line names the protocol. The store is a
//! temporary SQLite file, or a fresh database on the PostgreSQL server of
//! `TONGDAO_BENCH_DATABASE_URL` (e.g. `postgres://postgres@127.0.0.1:5432/test`;
//! the database is created beside the named one and dropped at the end).

#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use tongdao::config::{OperatorConfig, RelayConfig};
use tongdao::relay::settings::{CmppSettings, Protocol, SgipSettings};
use tongdao::relay::{Relay, Routes, outbox};
use tongdao::store::Store;
use tongdao_smpp::sim::{Sim, SimConfig};

fn main() {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: i64 = args.iter().find_map(|a| a.parse().ok()).unwrap_or(20_000);
    let protocol = args
        .iter()
        .position(|a| a == "--protocol")
        .and_then(|i| args.get(i + 1))
        .map_or(Some(Protocol::Smpp), |p| Protocol::parse(p))
        .expect("--protocol smpp|cmpp3|sgip12");
    // `[relay] max_awaited_receipts` (flow control; 0: no bound).
    let max_awaited = args
        .iter()
        .find_map(|a| a.strip_prefix("--max-awaited=")?.parse().ok())
        .unwrap_or(RelayConfig::default().max_awaited_receipts);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(n, protocol, max_awaited));
}

/// The simulators of one run (kept alive until it ends), and how many submits they
/// accepted.
enum Gateways {
    Smpp(tongdao_smpp::sim::SimHandle),
    Cmpp(tongdao_cmpp::sim::SimHandle),
    Sgip(Vec<tongdao_sgip::sim::SimHandle>),
}

impl Gateways {
    fn accepted(&self) -> u64 {
        match self {
            Gateways::Smpp(sim) => sim.stats().accepted,
            Gateways::Cmpp(sim) => sim.stats().accepted,
            Gateways::Sgip(sims) => sims.iter().map(|s| s.stats().accepted).sum(),
        }
    }
}

/// Start the gateway simulators for `protocol` and point `operators` at them.
async fn gateways(protocol: Protocol, operators: &mut [OperatorConfig]) -> Gateways {
    match protocol {
        Protocol::Smpp => {
            let sim = Sim::start(SimConfig {
                dlr_delay: Duration::from_millis(1),
                ..SimConfig::default()
            })
            .await
            .unwrap();
            for op in operators.iter_mut() {
                op.address = sim.local_addr().to_string();
            }
            Gateways::Smpp(sim)
        }
        Protocol::Cmpp3 | Protocol::Cmpp2 => {
            let sim = tongdao_cmpp::sim::Sim::start(tongdao_cmpp::sim::SimConfig {
                report_delay: Duration::from_millis(1),
                deliver_window: 100,
                ..Default::default()
            })
            .await
            .unwrap();
            // One SP_Id per operator: the ISMG sends each report to a link of the
            // SP_Id that submitted it.
            for (i, op) in operators.iter_mut().enumerate() {
                op.protocol = protocol;
                op.address = sim.local_addr().to_string();
                op.system_id = format!("90123{i}");
                // The simulator takes any SP_Id and signs with an empty secret.
                op.password = String::new();
                op.cmpp = Some(CmppSettings {
                    service_id: "HELP".into(),
                    ..CmppSettings::default()
                });
            }
            Gateways::Cmpp(sim)
        }
        Protocol::Sgip12 => {
            let mut sims = Vec::new();
            for op in operators.iter_mut() {
                let listen = std::net::TcpListener::bind("127.0.0.1:0")
                    .unwrap()
                    .local_addr()
                    .unwrap();
                let sim = tongdao_sgip::sim::Sim::start(tongdao_sgip::sim::SimConfig {
                    sp_address: Some(listen),
                    sp_credentials: ("smg".into(), "smg-pw".into()),
                    report_delay: Duration::from_millis(1),
                    window: 100,
                    idle_timeout: Duration::from_secs(300),
                    ..Default::default()
                })
                .await
                .unwrap();
                op.protocol = protocol;
                op.binds = 1;
                op.address = sim.local_addr().to_string();
                op.sgip = Some(SgipSettings {
                    node_id: 3_010_099_001,
                    corp_id: "12345".into(),
                    service_type: "HELP".into(),
                    listen: listen.to_string(),
                    smg_login: "smg".into(),
                    smg_password: "smg-pw".into(),
                    ..SgipSettings::default()
                });
                sims.push(sim);
            }
            Gateways::Sgip(sims)
        }
    }
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

async fn run(n: i64, protocol: Protocol, max_awaited: u64) {
    let dir = tempfile::tempdir().unwrap();
    let (store, store_name, created) = bench_store(dir.path()).await;
    let mut operators: Vec<OperatorConfig> = [("mobile", "138"), ("unicom", "130")]
        .iter()
        .map(|(name, prefix)| OperatorConfig {
            name: (*name).into(),
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
    let gateways = gateways(protocol, &mut operators).await;
    let relay_config = RelayConfig {
        batch: 512,
        max_awaited_receipts: max_awaited,
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
    println!(
        "queued {n} MTs in {:.1} s (one transaction each, not timed below)",
        queued_in.as_secs_f64()
    );
    println!(
        "all submitted after {:.2} s; all receipts matched (delivered) after {seconds:.2} s",
        submitted_at.unwrap_or_default().as_secs_f64()
    );
    println!(
        "simulator: {} submits accepted ({})",
        gateways.accepted(),
        protocol.as_str()
    );
    println!(
        "receipts stored: {receipts}, matched on arrival: {on_arrival}, matched later: {}",
        receipts - on_arrival
    );
    println!(
        "relay: mt={n} seconds={seconds:.2} mt_per_s={:.0} store={store_name} protocol={}",
        n as f64 / seconds,
        protocol.as_str()
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
